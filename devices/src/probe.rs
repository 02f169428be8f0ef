//! Finding out what is on a serial port: the known identity queries, each at its instrument's usual line settings,
//! and what answered.
//!
//! [`probe_port`] opens the port once per attempt, sends one query that changes nothing on any instrument that
//! understands it (a balance's `I2`, SCPI `*IDN?`, NAMUR `IN_NAME`, a Cavro pump's `&` report, a VICI actuator's
//! `VR`, Marlin's `M115`, a Modbus slave's device identification (function 43/14), each built-in declaration's
//! identify command, and last a Flame's single-byte `v`; a text query after a lone line end that closes whatever an
//! earlier one left unfinished), reads until the line has been quiet for a moment, and
//! keeps what came back with what it recognised. It never writes a set point or starts anything. The report says
//! which attempts an instrument answered, with the lab-file driver that would drive it; the bytes of every attempt
//! are kept for a person to read when nothing is recognised.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::declared::{self, Declaration};
use crate::error::{DeviceError, Printable};
use crate::transport::{LineSettings, Parity, open_serial};

/// How a probe waits for an answer.
#[derive(Debug, Clone, Copy)]
pub struct ProbeOptions {
    /// How long to wait for the first byte of an answer.
    pub timeout: Duration,
    /// How long the line must stay quiet after a byte for the answer to count as complete.
    pub quiet: Duration,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions { timeout: Duration::from_millis(400), quiet: Duration::from_millis(60) }
    }
}

/// What answered an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recognised {
    /// The kind of instrument, in words: `Mettler Toledo balance (MT-SICS)`.
    pub instrument: String,
    /// What it said it is: a model, a firmware version.
    pub identity: String,
    /// How a lab file would name its driver.
    pub driver: String,
}

/// One query at one line setting, and what came back.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// What was tried, in words.
    pub query: String,
    /// The line settings.
    pub line: LineSettings,
    /// The bytes sent.
    pub sent: Vec<u8>,
    /// The bytes that came back (none: silence).
    pub received: Vec<u8>,
    /// What the answer is, if recognised.
    pub found: Option<Recognised>,
}

/// Everything a probe tried on one port.
#[derive(Debug, Clone)]
pub struct ProbeReport {
    /// The port.
    pub port: String,
    /// The attempts, in order.
    pub attempts: Vec<Attempt>,
}

impl ProbeReport {
    /// The attempts something recognisable answered.
    pub fn found(&self) -> impl Iterator<Item = &Attempt> {
        self.attempts.iter().filter(|a| a.found.is_some())
    }
}

impl std::fmt::Display for ProbeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{:<44} {:<12} answer", "query", "line")?;
        for a in &self.attempts {
            let answer = match (&a.found, a.received.is_empty()) {
                (Some(r), _) => format!("{}: {} (driver: {})", r.instrument, r.identity, r.driver),
                (None, true) => "silence".to_owned(),
                (None, false) => format!("not recognised: {}", Printable(&a.received)),
            };
            writeln!(f, "{:<44} {:<12} {answer}", a.query, a.line.to_string())?;
        }
        match self.found().count() {
            0 => write!(f, "nothing on {} answered a known identity query", self.port),
            n => write!(f, "{n} answer(s) recognised on {}", self.port),
        }
    }
}

/// A query to try.
struct Query {
    query: String,
    line: LineSettings,
    sent: Vec<u8>,
    /// Whether the query is text, so a line end before it closes whatever an earlier query left unfinished.
    text: bool,
    recognise: Box<dyn Fn(&[u8]) -> Option<Recognised> + Send + Sync>,
}

fn recognised(instrument: &str, identity: impl Into<String>, driver: impl Into<String>) -> Option<Recognised> {
    Some(Recognised { instrument: instrument.to_owned(), identity: identity.into(), driver: driver.into() })
}

/// The text of `bytes` up to its first line end, if it is text.
fn first_line(bytes: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(bytes).ok()?;
    Some(text.split(['\r', '\n']).next().unwrap_or_default().trim())
}

/// The queries of the Rust drivers' instruments, each at its factory line settings.
fn rust_queries() -> Vec<Query> {
    let n81 = LineSettings::n81(9600);
    let e71 = LineSettings { data_bits: 7, parity: Parity::Even, ..n81 };
    vec![
        Query {
            query: "MT-SICS I2 (balance type)".into(),
            line: n81,
            sent: b"I2\r\n".to_vec(),
            text: true,
            recognise: Box::new(|b| {
                let line = first_line(b)?;
                let rest = line.strip_prefix("I2 A ")?;
                let text = rest.trim_matches('"');
                let model = text.split_whitespace().next().unwrap_or_default();
                recognised(
                    "Mettler Toledo balance (MT-SICS)",
                    text,
                    format!("MettlerBalance(model: \"{model}\", capacity: ...)"),
                )
            }),
        },
        Query {
            query: "SCPI *IDN?".into(),
            line: n81,
            sent: b"*IDN?\n".to_vec(),
            text: true,
            recognise: Box::new(|b| {
                let line = first_line(b)?;
                let fields: Vec<&str> = line.split(',').map(str::trim).collect();
                (fields.len() == 4 && !fields[1].is_empty()).then_some(())?;
                recognised("SCPI instrument", line, format!("ScpiThermometer(model: \"{}\")", fields[1]))
            }),
        },
        Query {
            query: "NAMUR IN_NAME (IKA)".into(),
            line: e71,
            sent: b"IN_NAME\r\n".to_vec(),
            text: true,
            recognise: Box::new(|b| {
                let name = first_line(b)?;
                // The models with a profile answer their own names (`IKARET` for a RET control-visc); others are
                // taken to if they name IKA or its families.
                let profile = crate::models::namur::PROFILES.iter().find(|p| p.name == name);
                let known = ["IKA", "RCT", "RET", "C-MAG", "HS "].iter().any(|k| name.starts_with(k));
                (profile.is_some() || known).then_some(())?;
                let model = profile.map_or(name, |p| p.model);
                recognised(
                    "IKA hotplate (NAMUR)",
                    name,
                    format!("IkaHotplate(model: \"{model}\", max_temperature: ..., max_speed: ...)"),
                )
            }),
        },
        Query {
            query: "Cavro DT /1& (firmware, address 1)".into(),
            line: n81,
            sent: b"/1&\r".to_vec(),
            text: true,
            recognise: Box::new(|b| {
                let body = b.strip_prefix(b"/0")?;
                let end = body.iter().position(|&x| x == 0x03)?;
                let text = String::from_utf8_lossy(&body[1.min(end)..end]).into_owned();
                recognised("Tecan Cavro pump (DT)", text, "CavroXCalibur(address: 1, syringe: ...)")
            }),
        },
        Query {
            query: "VICI VR (firmware)".into(),
            line: n81,
            sent: b"VR\r".to_vec(),
            text: true,
            recognise: Box::new(|b| {
                let line = first_line(b)?;
                line.to_ascii_uppercase().contains("VICI").then_some(())?;
                recognised("VICI Valco actuator", line, "ViciValve(positions: ...)")
            }),
        },
        Query {
            query: "Marlin M115 (firmware)".into(),
            line: LineSettings::n81(115_200),
            sent: b"M115\n".to_vec(),
            text: true,
            recognise: Box::new(|b| {
                let text = std::str::from_utf8(b).ok()?;
                let line = text.lines().find(|l| l.contains("FIRMWARE_NAME:"))?;
                recognised("G-code firmware (a gantry)", line.trim(), "GcodeGantry(...)")
            }),
        },
    ]
}

/// The Modbus device identification request (function 43, MEI 14, basic objects) to slave 1, at the line settings
/// Modbus controllers ship with.
fn modbus_queries() -> Vec<Query> {
    let mut request = vec![0x01, 0x2B, 0x0E, 0x01, 0x00];
    request.extend_from_slice(&crate::drivers::modbus::crc(&request).to_le_bytes());
    let lines = [
        LineSettings::n81(9600),
        LineSettings { parity: Parity::Even, ..LineSettings::n81(9600) },
        LineSettings::n81(19_200),
    ];
    lines
        .into_iter()
        .map(|line| Query {
            query: "Modbus RTU slave 1, function 43/14".into(),
            line,
            sent: request.clone(),
            text: false,
            recognise: Box::new(|b| {
                // Any whole frame from slave 1 with a right CRC: an identification, or an exception from a device
                // that does not implement it.
                (b.len() >= 5 && b[0] == 0x01 && crate::drivers::modbus::crc(b) == 0).then_some(())?;
                let identity = if b[1] == 0x2B {
                    String::from_utf8_lossy(&b[8.min(b.len())..b.len() - 2])
                        .chars()
                        .map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { ' ' })
                        .collect::<String>()
                } else {
                    format!("exception {} to function {}", b.get(2).copied().unwrap_or(0), b[1] & 0x7F)
                };
                recognised("Modbus RTU device", identity.trim(), "ModbusTemperature(address: 1, map: ...)")
            }),
        })
        .collect()
}

/// The identify command of every built-in declaration, at its line settings, with its default settings.
fn declared_queries() -> Vec<Query> {
    declared::BUILT_IN
        .iter()
        .filter_map(|(name, _)| declared::resolve(name, None).ok().map(|d| (*name, d)))
        .filter_map(|(name, d)| declared_query(name, d))
        .collect()
}

fn declared_query(reference: &'static str, d: std::sync::Arc<Declaration>) -> Option<Query> {
    let model = d.variants.keys().next()?.clone();
    let settings = d.sample_settings(&model);
    let cmd = d.command(&d.identify.command)?;
    let look = |n: &str| settings.get(n).cloned();
    let mut sent = d.request.prefix.render(&look).ok()?.into_bytes();
    sent.extend(cmd.send.render(&look).ok()?.into_bytes());
    if let Some(c) = &d.request.checksum {
        let sum = c.of(&sent);
        sent.extend(sum);
    }
    sent.extend(d.request.terminator.render(&look).ok()?.into_bytes());
    Some(Query {
        query: format!("{} identify", d.name),
        line: d.line,
        sent,
        text: true,
        recognise: Box::new(move |b| {
            use tokio_util::codec::Decoder;
            let cmd = d.command(&d.identify.command)?;
            let mut buf = bytes::BytesMut::from(b);
            let reply = declared::ReplyDecoder::new(&d.frame, &cmd.lines, &d.classes).decode(&mut buf).ok()??;
            let captures = cmd.reply.as_ref()?.matches(&reply.text())?;
            let model =
                d.identify.model.render(&|n| captures.get(n).cloned().or_else(|| settings.get(n).cloned())).ok()?;
            // A pattern that reads anything (a model that is the whole reply) must still give one of its models.
            d.variants.contains_key(&model).then_some(())?;
            recognised(&d.name, &model, format!("Declared(instrument: \"{reference}\", model: \"{model}\")"))
        }),
    })
}

/// Ocean Optics Flame: `v` answers ACK and the firmware version word. Tried last: a single byte without a
/// terminator would stand in front of the next text query.
fn flame_query() -> Query {
    Query {
        query: "Ocean Optics v (version)".into(),
        line: LineSettings::n81(9600),
        sent: b"v".to_vec(),
        text: false,
        recognise: Box::new(|b| {
            (b.len() >= 3 && b[0] == crate::drivers::flame::ACK).then_some(())?;
            let word = u16::from_be_bytes([b[1], b[2]]);
            recognised("Ocean Optics spectrometer", crate::drivers::flame::version(word), "OceanFlame(...)")
        }),
    }
}

/// Sends `q` on a fresh opening of `path` at its line settings and reads until the line is quiet.
async fn exchange(path: &str, q: &Query, options: ProbeOptions) -> Result<Vec<u8>, DeviceError> {
    let mut port = open_serial("probe", path, &q.line)?;
    let failed = |e: std::io::Error| DeviceError::before_acting("probe", e.into());
    // A line end first ends what an earlier query left unfinished in a text instrument (one that waits for CR LF
    // after a query that ended with CR alone); what it answers, and what came before, is not this query's answer.
    if q.text {
        port.write_all(b"\r\n").await.map_err(failed)?;
    }
    let mut stale = [0u8; 256];
    let drain = if q.text { options.quiet } else { Duration::from_millis(5) };
    while let Ok(Ok(n)) = tokio::time::timeout(drain, port.read(&mut stale)).await {
        if n == 0 {
            break;
        }
    }
    port.write_all(&q.sent).await.map_err(failed)?;
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    let first = tokio::time::Instant::now() + options.timeout;
    loop {
        let wait = if got.is_empty() { first } else { tokio::time::Instant::now() + options.quiet };
        match tokio::time::timeout_at(wait, port.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                got.extend_from_slice(&buf[..n]);
                if got.len() > 4096 {
                    break;
                }
            }
            _ => break,
        }
    }
    Ok(got)
}

/// Tries every known identity query on the serial port at `path`, each at its instrument's usual line settings,
/// and reports what answered. Only the port failing to open is an error; an instrument that answers nothing, or
/// something unexpected, is in the report.
pub async fn probe_port(path: &str, options: ProbeOptions) -> Result<ProbeReport, DeviceError> {
    let mut queries = declared_queries();
    queries.extend(rust_queries());
    queries.extend(modbus_queries());
    queries.push(flame_query());
    let mut attempts = Vec::with_capacity(queries.len());
    for q in queries {
        let received = exchange(path, &q, options).await?;
        let found = (q.recognise)(&received);
        attempts.push(Attempt { query: q.query, line: q.line, sent: q.sent, received, found });
    }
    Ok(ProbeReport { port: path.to_owned(), attempts })
}
