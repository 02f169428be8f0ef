//! The bodies of the fuzz targets, shared by `cargo fuzz` and by the workspace's ordinary tests.
//!
//! Each target takes arbitrary bytes and must never panic; where a function has an inverse or a simpler model,
//! the target also checks the two agree, so the fuzzer finds wrong answers as well as crashes:
//!
//! - [`protocol_text`]: `protocols::load_protocol` on any text; a protocol that loads prints ([`protocols::to_ron`])
//!   and loads back to the same protocol, and binds with its defaults.
//! - [`lab_text`], [`campaign_text`]: `devices::load_lab` and `experiments::load_campaign` on any text; what loads is
//!   checked against the repository's demo protocol.
//! - [`transcript_text`]: `devices::replay::Transcript::parse`; what parses prints and parses back to the same text.
//! - [`declaration_text`], [`map_text`]: `devices::declared::load_declaration` and `devices::modbus_map::load_map`
//!   on any text; a declaration that loads reads back every reply its simulator writes, as the loader promises.
//! - [`codec`]: every instrument's reply decoder (a `tokio_util` [`Decoder`]) on any bytes in any chunking. It never
//!   panics, never holds more than its frame limit while it waits, and yields the same replies whether the bytes
//!   come one at a time or all at once; an answer encoded by the simulators' encoders decodes to itself.
//! - [`reply_parsers`]: the small parsers drivers apply to a framed reply's text, and the checksums.
//!
//! The targets panic on a broken invariant: that is how they report to libFuzzer, and to the tests that run them
//! on seeds and pseudo-random inputs (`tests/tests/fuzz.rs`). [`mutate`] makes those inputs from seeds the way a
//! fuzzer's simplest mutations do, with [`RON_TOKENS`] (also `fuzz/ron.dict`) for structure.

use std::sync::{Arc, OnceLock};

use bytes::BytesMut;
use devices::drivers::{cavro, flame, gantry, ika, mettler, modbus, scpi, vici};
use devices::lab::Terminator;
use devices::transport::Terminated;
use protocols::{Protocol, SourceFile};
use tokio_util::codec::Decoder;

/// Longest input a text target reads; libFuzzer's `-max_len` keeps inputs shorter anyway.
const MAX_TEXT: usize = 64 * 1024;

/// The repository's demo protocol, which lab and campaign files are checked against.
fn demo_protocol() -> &'static Protocol {
    static PROTOCOL: OnceLock<Protocol> = OnceLock::new();
    PROTOCOL.get_or_init(|| {
        protocols::parse_protocol(
            "condensation.protocol.ron",
            include_str!("../../protocols/library/condensation.protocol.ron"),
        )
        .expect("the demo protocol loads")
    })
}

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(&data[..data.len().min(MAX_TEXT)]).into_owned()
}

/// Checks what a refused file's diagnostics must be: at least one error, each rendering without a panic.
fn check_refused(diags: &protocols::Diagnostics) {
    assert!(diags.has_errors(), "a refused file has an error: {diags}");
    for d in diags.iter() {
        let _ = d.to_string();
        assert!(d.span.start <= d.span.end && d.span.end <= d.source.text.len(), "span outside the file: {d}");
    }
}

/// `protocols::load_protocol` on any text.
pub fn protocol_text(data: &[u8]) {
    let source = SourceFile::new("fuzz.protocol.ron", text(data));
    match protocols::load_protocol(Arc::clone(&source)) {
        Err(diags) => check_refused(&diags),
        Ok((p, _warnings)) => {
            let printed = protocols::to_ron(&p);
            let again = match protocols::parse_protocol("printed.protocol.ron", &printed) {
                Ok(again) => again,
                Err(d) => panic!("a loaded protocol printed does not load:\n{d}\n--- input ---\n{}", source.text),
            };
            assert_same_protocol(&p, &again, &printed);
            if p.parameters().iter().all(|q| q.default.is_some())
                && let Err(e) = p.bind(&Default::default())
            {
                panic!("a protocol whose parameters all have defaults does not bind with them: {e}");
            }
        }
    }
}

/// Asserts two protocols are the same: every field a checked protocol holds, and its dependencies.
pub fn assert_same_protocol(a: &Protocol, b: &Protocol, printed: &str) {
    let same = a.name() == b.name()
        && a.description() == b.description()
        && a.parameters() == b.parameters()
        && a.outputs() == b.outputs()
        && a.steps() == b.steps()
        && (0..a.steps().len()).all(|i| a.dependencies(i) == b.dependencies(i))
        && a.vessel_segments() == b.vessel_segments();
    assert!(same, "printing changed the protocol:\n{a:#?}\n--- printed ---\n{printed}\n--- loaded again ---\n{b:#?}");
}

/// `devices::load_lab` on any text; a lab that loads is checked against the demo protocol.
pub fn lab_text(data: &[u8]) {
    match devices::load_lab(SourceFile::new("fuzz.lab.ron", text(data))) {
        Err(diags) => check_refused(&diags),
        Ok(lab) => {
            for d in lab.check_protocol(demo_protocol()).iter() {
                let _ = d.to_string();
            }
            for i in 0..demo_protocol().steps().len() {
                let _ = lab.transfer_positions(demo_protocol(), i);
            }
        }
    }
}

/// `devices::declared::load_declaration` on any text. A declaration that loads keeps the loader's promise: every
/// command's reply, as its simulator writes it for the first model, matches the command's own pattern.
pub fn declaration_text(data: &[u8]) {
    use devices::declared::{load_declaration, sample_value};
    match load_declaration(SourceFile::new("fuzz.instrument.ron", text(data))) {
        Err(diags) => check_refused(&diags),
        Ok(d) => {
            let model = d.variants.keys().next().expect("a loaded declaration has a model").clone();
            let settings = d.sample_settings(&model);
            for c in d.commands.values() {
                let Some(reply) = &c.reply else { continue };
                let look = |n: &str| settings.get(n).cloned().or_else(|| sample_value(&d, c, n));
                let written = reply.render(&look).expect("the loader checked the reply can be written");
                assert!(reply.matches(&written).is_some(), "`{}` does not read `{written}`", reply.text);
            }
        }
    }
}

/// `devices::modbus_map::load_map` on any text; every point of a map that loads encodes and decodes its initial
/// value without a panic.
pub fn map_text(data: &[u8]) {
    match devices::modbus_map::load_map(SourceFile::new("fuzz.modbus.ron", text(data))) {
        Err(diags) => check_refused(&diags),
        Ok(map) => {
            for p in map.points.values() {
                if let Ok(words) = p.encode(p.initial, 0) {
                    let _ = p.decode(&words, 0);
                }
            }
        }
    }
}

/// `experiments::load_campaign` on any text; a campaign that loads is checked against the demo protocol.
pub fn campaign_text(data: &[u8]) {
    match experiments::load_campaign(SourceFile::new("fuzz.campaign.ron", text(data))) {
        Err(diags) => check_refused(&diags),
        Ok((campaign, _warnings)) => {
            for d in campaign.check_against(demo_protocol()).iter() {
                let _ = d.to_string();
            }
        }
    }
}

/// `devices::replay::Transcript::parse` on any text; a transcript that parses prints as text that parses back to
/// the same text (compared as text, so a `NaN` time scale compares equal to itself).
pub fn transcript_text(data: &[u8]) {
    use devices::replay::Transcript;
    let Ok(t) = Transcript::parse(&text(data)) else { return };
    let printed = t.to_ron();
    match Transcript::parse(&printed) {
        Ok(again) => assert_eq!(again.to_ron(), printed, "a transcript printed and parsed again prints differently"),
        Err(e) => panic!("a parsed transcript printed does not parse: {e}\n{printed}"),
    }
}

/// How many bytes of [`codec`] input come before the reply bytes: the decoder, the chunking seed, and eight bytes
/// of decoder settings.
pub const CODEC_HEADER: usize = 10;

/// How many decoders and encoder round trips [`codec`] chooses among.
pub const CODECS: u8 = 18;

/// The most pixels `devices::load_lab` accepts for a spectrometer; a Flame decoder for more is still checked for
/// panics, but not for its bound.
const MAX_PIXELS: usize = 16_384;

/// One reply decoder on arbitrary bytes. The input is `[decoder, chunking seed, settings (8 bytes LE), bytes...]`.
pub fn codec(data: &[u8]) {
    if data.len() < CODEC_HEADER {
        return;
    }
    let (which, seed) = (data[0] % CODECS, data[1]);
    let settings = u64::from_le_bytes(data[2..CODEC_HEADER].try_into().expect("eight bytes"));
    let bytes = &data[CODEC_HEADER..];
    let chunks = chunking(seed, bytes.len());
    match which {
        0 => {
            const ENDS: [&[u8]; 4] = [b"\r\n", b"\x03\r\n", b"\r", b"\n"];
            let end = ENDS[(settings % 4) as usize];
            let max_len = ((settings >> 8) % 4096) as usize;
            framing(|| Terminated::new(end, max_len), bytes, &chunks, max_len);
        }
        1 => framing(|| cavro::DtDecoder, bytes, &chunks, 300),
        2 => framing(|| cavro::OemDecoder, bytes, &chunks, 300),
        3..=5 => {
            let expect = [flame::Expect::Ack, flame::Expect::AckWord, flame::Expect::Spectrum][usize::from(which - 3)];
            // Small counts mostly, so spectra complete; any count at all sometimes, as a lab file could give one.
            let pixels = if settings & 1 == 0 { ((settings >> 1) % 64) as usize } else { (settings >> 1) as usize };
            let bound = if pixels <= MAX_PIXELS { 2 * 7 + 4 * pixels + 3 } else { usize::MAX };
            framing(|| flame::FlameDecoder { expect, pixels }, bytes, &chunks, bound);
        }
        6 => framing(gantry::MarlinDecoder::default, bytes, &chunks, 256 * 1024 + 2 * 1024 + 2),
        7 => framing(|| ika::NamurDecoder, bytes, &chunks, 84),
        8 => framing(|| mettler::SicsDecoder, bytes, &chunks, 256),
        9 => register_round_trip(settings, bytes),
        10 => {
            let terminator = [Terminator::Lf, Terminator::Cr, Terminator::CrLf][(settings % 3) as usize];
            framing(|| scpi::ScpiDecoder::new(terminator), bytes, &chunks, 512);
        }
        11 => framing(|| vici::ViciDecoder, bytes, &chunks, 128),
        12 => dt_round_trip(settings as u8, bytes, seed, false),
        13 => dt_round_trip(settings as u8, bytes, seed, true),
        14 => spectrum_round_trip(settings, bytes, seed),
        15 => {
            let (d, c) = declared_command(settings);
            let Some(cmd) = d.commands.values().nth(c) else { return };
            let bound = match &d.frame {
                devices::declared::Frame::Terminated { max, .. }
                | devices::declared::Frame::Delimited { max, .. }
                | devices::declared::Frame::Prompt { max, .. } => *max,
                devices::declared::Frame::Fixed(n) => *n,
            };
            framing(|| devices::declared::ReplyDecoder::new(&d.frame, &cmd.lines, &d.classes), bytes, &chunks, bound);
        }
        16 => framing(|| mettler::SicsListDecoder, bytes, &chunks, mettler::MAX_LINES * 258 + 258),
        _ => frame_round_trip(settings, bytes, seed),
    }
}

/// A built-in instrument declaration and one of its commands, chosen by `settings`.
fn declared_command(settings: u64) -> (Arc<devices::declared::Declaration>, usize) {
    static ALL: OnceLock<Vec<Arc<devices::declared::Declaration>>> = OnceLock::new();
    let all = ALL.get_or_init(|| {
        devices::declared::BUILT_IN
            .iter()
            .map(|(name, _)| devices::declared::resolve(name, None).expect("a built-in declaration loads"))
            .collect()
    });
    let d = Arc::clone(&all[(settings % all.len() as u64) as usize]);
    let c = ((settings >> 8) % d.commands.len().max(1) as u64) as usize;
    (d, c)
}

/// Printable text from the input, framed as a built-in declaration's simulator frames a reply, is framed back to
/// itself in any chunking (text that holds the frame's own end cannot be one frame, and is skipped).
fn frame_round_trip(settings: u64, bytes: &[u8], seed: u8) {
    use devices::declared::{Frame, Lines, ReplyDecoder};
    let (d, _) = declared_command(settings);
    let (ends, room): (Vec<&[u8]>, usize) = match &d.frame {
        Frame::Terminated { end, max, .. } => (vec![end], max.saturating_sub(end.len())),
        Frame::Delimited { start, end, max, .. } => (vec![start, end], max.saturating_sub(start.len() + end.len())),
        Frame::Prompt { prompts, max } => (prompts.iter().map(Vec::as_slice).collect(), *max),
        Frame::Fixed(_) => return,
    };
    let room = room.saturating_sub(d.frame.checksum().map_or(0, |c| c.width()));
    let text: String = bytes.iter().map(|b| char::from(0x20 + b % 0x5F)).take(room.min(40)).collect();
    if ends.iter().any(|e| text.as_bytes().windows(e.len()).any(|w| w == *e)) {
        return;
    }
    let (wire, _) = d.frame.wrap(&text);
    let chunks = chunking(seed, wire.len());
    let decoded = decode_chunked(ReplyDecoder::new(&d.frame, &Lines::One, &[]), &wire, &chunks, usize::MAX);
    let lines: Vec<Vec<String>> = decoded.items.iter().map(|r| r.lines.clone()).collect();
    assert_eq!(lines, vec![vec![text]], "error: {:?}", decoded.error);
}

/// Chunk lengths that add up to `len`, from a seed: 0 means one chunk, anything else chunks of 1 to `seed` bytes.
pub fn chunking(seed: u8, len: usize) -> Vec<usize> {
    if seed == 0 {
        return vec![len];
    }
    let mut rng = Rng(u64::from(seed) | 0x100);
    let mut out = Vec::new();
    let mut left = len;
    while left > 0 {
        let n = (1 + rng.below(usize::from(seed))).min(left);
        out.push(n);
        left -= n;
    }
    out
}

/// What decoding a byte stream gave: the replies in order, and the error that ended it, if one did.
#[derive(Debug)]
struct Decoded<T> {
    items: Vec<T>,
    error: Option<String>,
}

/// Decodes `bytes` arriving in `chunks`, as a `Link` does: after each chunk, frames until the decoder wants more.
/// Checks that while it waits the decoder holds at most `bound` bytes beyond the chunk that just arrived.
fn decode_chunked<D: Decoder>(mut decoder: D, bytes: &[u8], chunks: &[usize], bound: usize) -> Decoded<D::Item>
where
    D::Item: std::fmt::Debug,
    D::Error: std::fmt::Display,
{
    let mut buf = BytesMut::new();
    let mut out = Decoded { items: Vec::new(), error: None };
    let mut at = 0;
    for &n in chunks {
        buf.extend_from_slice(&bytes[at..at + n]);
        at += n;
        loop {
            if buf.is_empty() {
                break;
            }
            let before = buf.len();
            match decoder.decode(&mut buf) {
                Ok(Some(item)) => {
                    // The record keeps each reply's Debug form, so it must not panic either.
                    let _ = format!("{item:?}");
                    assert!(buf.len() < before, "a reply was framed from no bytes: {item:?}");
                    out.items.push(item);
                }
                Ok(None) => {
                    assert!(
                        buf.len() <= bound.saturating_add(n),
                        "the decoder holds {} bytes waiting for more (its limit is {bound})",
                        buf.len()
                    );
                    break;
                }
                Err(e) => {
                    out.error = Some(e.to_string());
                    return out;
                }
            }
        }
    }
    out
}

/// Decodes `bytes` in `chunks` and all at once, and checks the chunked replies are a prefix of the whole ones: a
/// decoder may give up sooner on a reply that arrives slowly (its limit counts what it holds), never differently.
fn framing<D: Decoder>(make: impl Fn() -> D, bytes: &[u8], chunks: &[usize], bound: usize)
where
    D::Item: std::fmt::Debug + PartialEq,
    D::Error: std::fmt::Display,
{
    let chunked = decode_chunked(make(), bytes, chunks, bound);
    let whole = decode_chunked(make(), bytes, &[bytes.len()], usize::MAX);
    let n = chunked.items.len();
    assert!(
        n <= whole.items.len() && chunked.items[..] == whole.items[..n],
        "chunked {chunks:?} gave {chunked:?}, all at once gave {whole:?}"
    );
}

/// Register words read through a map point of any type, word order and fixed scale, written back, are the same
/// words (floats that are not numbers aside, and a float's negative zero written as zero): the driver never changes
/// a value it only reads.
fn register_round_trip(settings: u64, bytes: &[u8]) {
    use devices::modbus_map::{Kind, Point, Table, WordOrder};
    let kinds = [Kind::U16, Kind::I16, Kind::U32, Kind::I32, Kind::F32, Kind::Bit((settings >> 8) as u8 % 16)];
    let orders = [WordOrder::ABCD, WordOrder::CDAB, WordOrder::BADC, WordOrder::DCBA];
    let kind = kinds[(settings % 6) as usize];
    let point = Point { order: orders[((settings >> 4) % 4) as usize], ..Point::new("p", Table::Holding, 0, kind) };
    for chunk in bytes.chunks(4) {
        let words: Vec<u16> = chunk.chunks(2).map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])).collect();
        if words.len() < usize::from(kind.width()) {
            continue;
        }
        let words = &words[..usize::from(kind.width())];
        let Some(value) = point.decode(words, 0) else { continue };
        let again = point.encode(value, 0).expect("a value read from registers writes back");
        let expected: Vec<u16> = match kind {
            Kind::Bit(n) => vec![words[0] & (1 << n)],
            _ => words.to_vec(),
        };
        if value == 0.0 {
            // A float's negative zero reads as zero and writes back as the positive one: the same value.
            assert_eq!(point.decode(&again, 0), Some(0.0), "{kind:?}: zero writes back as zero");
            continue;
        }
        assert_eq!(again, expected, "{kind:?} {:?}: {words:04X?} read as {value}", point.order);
    }
}

/// A Cavro answer made from the input (status byte and printable data), encoded as the simulator does (DT or OEM),
/// decodes to itself in any chunking.
fn dt_round_trip(status: u8, bytes: &[u8], seed: u8, oem: bool) {
    let status = (status & 0x2F) | 0x40;
    let data: Vec<u8> = bytes.iter().map(|b| 0x20 + b % 0x5F).take(200).collect();
    let answer = cavro::DtAnswer { status, data };
    let wire = if oem { answer.to_oem_bytes() } else { answer.to_bytes() };
    let chunks = chunking(seed, wire.len());
    let decoded = if oem {
        decode_chunked(cavro::OemDecoder, &wire, &chunks, 300)
    } else {
        decode_chunked(cavro::DtDecoder, &wire, &chunks, 300)
    };
    assert_eq!(decoded.items, vec![answer], "error: {:?}", decoded.error);
}

/// A spectrum made from the input, encoded as the simulator does, decodes to itself in any chunking.
fn spectrum_round_trip(settings: u64, bytes: &[u8], seed: u8) {
    let scans = ((settings & 0xFFFF) as u16).max(1);
    let counts: Vec<u32> = bytes
        .chunks(4)
        .map(|c| {
            let mut w = [0u8; 4];
            w[..c.len()].copy_from_slice(c);
            let v = u32::from_le_bytes(w);
            if scans == 1 && settings & 0x1_0000 == 0 { v & 0xFFFF } else { v }
        })
        .collect();
    let spectrum = flame::Spectrum {
        scans,
        integration_ms: (settings >> 20) as u16,
        baseline: (settings >> 36) as u32,
        counts: counts.clone(),
    };
    let wire = spectrum.to_bytes();
    let chunks = chunking(seed, wire.len());
    let decoder = flame::FlameDecoder { expect: flame::Expect::Spectrum, pixels: counts.len() };
    let decoded = decode_chunked(decoder, &wire, &chunks, 2 * 7 + 4 * counts.len() + 3);
    assert_eq!(decoded.items, vec![flame::FlameReply::Spectrum(spectrum)], "error: {:?}", decoded.error);
}

/// The parsers drivers apply to a framed reply's text, the firmware error tables, and the checksums.
pub fn reply_parsers(data: &[u8]) {
    let line = String::from_utf8_lossy(&data[..data.len().min(1024)]);
    let first = data.first().copied().unwrap_or(0);
    let _ = ika::parse_reading(&line, first % 8);
    let _ = gantry::fields(&line);
    let _ = gantry::parse_position(&line);
    let tokens: Vec<String> = line.split(' ').map(str::to_owned).collect();
    if let Some(g) = mettler::grams(&tokens) {
        assert!(g.is_finite(), "a weight of {g} g from {line:?}");
    }
    let _ = scpi::parse_error(&line);
    let _ = vici::number_after(&line, "CP");
    let _ = vici::number_after(&line, "");
    let _ = protocols::units::Quantity::parse(&line);
    // A template read from the text, matched against the text and written back with what it captured.
    if let Ok(t) = devices::declared::Template::parse(&line)
        && let Some(captures) = t.matches(&line)
    {
        let _ = t.render(&|n| captures.get(n).cloned());
    }
    for spec in ["d2", "f", "+9.4", "sig4", "X4", "c2", "l3", "s", "*"] {
        if let Ok(t) = devices::declared::Template::parse(&format!("{{v:{spec}}}")) {
            let _ = t.matches(&line);
        }
    }
    let word = u16::from_le_bytes([first, data.get(1).copied().unwrap_or(0)]);
    let _ = flame::version(word);
    if let Some(e) = cavro::CavroError::from_code(first) {
        assert_eq!(cavro::CavroError::from_code(e.code()), Some(e), "a firmware code reads back as itself");
        let _ = e.message();
    }
    let _ = modbus::ModbusException::from_code(first).message();
    let code = i32::from_le_bytes([first, word as u8, (word >> 8) as u8, data.get(2).copied().unwrap_or(0)]);
    let _ = scpi::ScpiError::from_code(code);
    // A frame followed by its CRC (low byte first) checks to zero, whatever the frame, and never counts as a frame
    // with a bad CRC.
    let mut framed = data.to_vec();
    framed.extend_from_slice(&modbus::crc(data).to_le_bytes());
    assert_eq!(modbus::crc(&framed), 0, "the CRC of a frame with its CRC appended");
    assert!(!modbus::bad_crc(&framed), "a frame with its own CRC is not damaged");
    let _ = modbus::bad_crc(data);
    let mut oem = data.to_vec();
    oem.push(cavro::xor(data));
    assert_eq!(cavro::xor(&oem), 0, "the XOR of a frame with its XOR appended");
}

/// Fragments of the file formats, for mutations that keep inputs close to valid files. The same list is
/// `fuzz/ron.dict`, libFuzzer's dictionary.
pub const RON_TOKENS: &[&str] = &[
    "Protocol(",
    "Lab(",
    "Campaign(",
    "Transcript(",
    "Instrument(",
    "ModbusMap(",
    "format: 1,",
    "name: \"x\",",
    "description: \"\",",
    "parameters: {",
    "outputs: {",
    "steps: [",
    "(id: \"s\", op: ",
    "after: [\"s\"]",
    "on: Kind(",
    "on: Named(\"a\")",
    "Transfer(to: Rack)",
    "Transfer(to: Kind(Hotplate))",
    "Dispense(volume: \"$v\")",
    "Heat(temperature: \"80 degC\", duration: \"1 min\")",
    "Stir(speed: \"600 rpm\", duration: \"10 s\")",
    "Measure(wavelength: \"520 nm\", output: \"a\")",
    "Weigh(output: \"m\")",
    "Select(position: 2)",
    "ReadTemperature(output: \"t\")",
    "HoldTemperature(temperature: \"40 degC\", duration: \"2 min\")",
    "within: \"2 min\"",
    "wait: \"10 s\"",
    "timeout: \"1 h\"",
    "retry: 2",
    "keep: true",
    "(unit: \"uL\", min: 1, max: 10)",
    "default: NaN",
    "default: 1e308",
    "-0.0",
    "\"$",
    "\"1e-300 uL\"",
    "SyringePump",
    "Hotplate",
    "Spectrometer",
    "Gantry",
    "Balance",
    "Valve",
    "TemperatureController",
    "Thermometer",
    "deck: (",
    "positions: {",
    "instruments: {",
    "driver: ",
    "CavroXCalibur(address: 1, syringe: \"1 mL\", top_speed: 400, reservoir: \"A\")",
    "IkaHotplate(",
    "OceanFlame(",
    "pixels: 18446744073709551615",
    "GcodeGantry(",
    "MettlerBalance(",
    "ViciValve(",
    "ModbusTemperature(",
    "ScpiThermometer(",
    "Declared(instrument: \"new_era_ne1000\", settings: {\"diameter\": 14.57})",
    "commands: {",
    "(send: \"RAT{rate:sig4}UM\", reply: \"{address:d2}{state:c1}\")",
    "{x:X4}",
    "{{",
    "Terminated(end: \"\\r\")",
    "Delimited(start: \"\\u{2}\", end: \"\\u{3}\")",
    "(table: Holding, address: 0, kind: F32, order: CDAB)",
    "port: Simulated",
    "port: Serial(\"/dev/ttyUSB0\")",
    "faults: (",
    "simulation: (seed: 1, time_scale: 400)",
    "vary: {",
    "fixed: {",
    "objective: Maximize(\"a\")",
    "budget: 4",
    "in_flight: 2",
    "proposer: Random",
    "seed: 1",
    "GaussianProcess(initial: 2)",
    "\\u{0}",
    "\\\"",
    "//",
    "/*",
    "*/",
    "}",
    ")",
    "]",
    ",",
];

/// A small deterministic generator (xorshift64*), so the tests need no random-number crate and repeat exactly.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }
}

/// One mutation of `input` of the kinds a fuzzer starts with: flip, insert, delete or repeat bytes, cut the end,
/// or insert a dictionary token.
pub fn mutate(input: &[u8], rng: &mut Rng, tokens: &[&str]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(7) {
            0 if at < v.len() => v[at] ^= 1 << rng.below(8),
            1 => v.insert(at, rng.next() as u8),
            2 if at < v.len() => {
                let end = (at + 1 + rng.below(16)).min(v.len());
                v.drain(at..end);
            }
            3 if at < v.len() => {
                let end = (at + 1 + rng.below(32)).min(v.len());
                let copy = v[at..end].to_vec();
                let to = rng.below(v.len() + 1);
                v.splice(to..to, copy);
            }
            4 => v.truncate(at),
            _ if !tokens.is_empty() => {
                let t = tokens[rng.below(tokens.len())].as_bytes();
                v.splice(at..at, t.iter().copied());
            }
            _ => v.push(rng.next() as u8),
        }
    }
    v
}
