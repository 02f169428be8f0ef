//! Tecan Cavro XCalibur syringe pump, DT (data terminal) or OEM protocol.
//!
//! In DT a command is `/`, the address character (`'0' + address`), ASCII command data, CR, and every command is
//! answered `/0`, a status byte, data for report commands, ETX, CR, LF ([`DtDecoder`]). In OEM (the lab file's
//! `protocol: Oem`) a command is STX, the address, a sequence byte, the data, ETX and the XOR of every byte from STX
//! to ETX; the answer is STX, `0`, the status byte, data, ETX, XOR ([`OemDecoder`]). The sequence byte is
//! `0011 R S2 S1 S0`: the driver counts S from 1 to 7, and when an answer does not come within [`OEM_REPEAT`] (or
//! comes with a bad checksum) sends the same frame again with the repeat bit R set, which the pump answers without
//! running the command a second time; after [`OEM_ATTEMPTS`] tries the command fails. The status byte is
//! `0 1 X 0 E3 E2 E1 E0`: bit 5 set means ready, bits 0 to 3 are an error code ([`CavroError`]). Only `Q` reports
//! busy reliably, so the driver polls `Q` after every move.
//!
//! A dispense fills and empties the syringe once per stroke with one command string, `I A{n} O A0 R`: valve to
//! the reservoir, plunger to `n` increments (3000 per full stroke), valve to the output, plunger home. A stroke that
//! starts with the valve already to the output ends by turning it back to the input (`I A{n} O A0 I R`), so every
//! stroke leaves the valve the other way than it found it: a pump read back after its controller stopped then shows
//! whether the stroke ran, which an empty syringe alone cannot (it is empty before a stroke and after one). The
//! volume returned is what was commanded, quantised to whole increments.
//!
//! Priming a line shared through a selector valve ([`Prime`]) is two strings with the valve turned between them:
//! `I A{n} R` draws through the input and keeps the liquid, and `I A0 R` pushes it all back out through the input
//! (to the selector's waste port). Neither is a stroke, and both leave the valve to the input.
//!
//! Choices where the notes leave the hardware unverified [U]:
//! - The `&` firmware report is taken as free text and recorded as the firmware version; the pump does not report
//!   its model, so the identity's model is always `Cavro XCalibur`.
//! - An error code in the immediate answer to a command string means the pump rejected the string and cleared its
//!   buffer before moving (the manual's `A4000R` example), so such errors carry `may_have_acted = false` unless an
//!   earlier stroke of the same dispense ran. Errors seen by `Q` after a move carry `may_have_acted = true`.
//! - A valve switch is expected to take about [`VALVE_SWITCH`] lab seconds; the driver only uses this to decide
//!   when to start polling.
//! - Identification requires the `&` report to name the XCalibur (case-insensitively), so a pump of another
//!   family on the port is refused with `WrongIdentity`; what a real XCalibur's report holds beyond its name is
//!   not checked.
//! - Error 15 (command overflow: the pump was still moving) is reported as `Busy`, with the pump having run
//!   nothing; every other code is a `Firmware` error.
//! - `W` homes the plunger through the valve as it stands and leaves the valve working, as the notes give the
//!   XCalibur's command set (and as Tricontinent's drivers use it: `w`, a valve move, `W`). The older XP 3000's manual
//!   warns that after `W` on a pump with a valve the valve does not move until the power is cycled; if an XCalibur
//!   did the same, a pump emptied to waste this way would need a power cycle before its next dispense.
//! - In OEM the driver repeats a frame at most [`OEM_ATTEMPTS`] times, 100 ms apart as the manual says, whatever
//!   the line timeout; a frame to the broadcast address is never sent.
//!
//! Reading back ([`ReadBack`]): `Q` (busy and error; polled until a move under way ends, within a bound), `?`
//! (the plunger's position) and `?6` (the valve). [`recorded_strokes`] reads the stroke commands a dispense sent from
//! the record, and [`strokes`] the strokes a volume takes.
//!
//! Initializing: `Z` homes the plunger through the output (into the vessel at the pump's position) and the valve,
//! so it is sent only when the syringe is known to be empty. The driver counts the syringe as possibly holding
//! liquid from the moment it sends a string that draws until a push out finishes well (or a read-back of the pump at
//! rest says otherwise), whether or not any read-back ever comes. Such a pump is initialized with its valve to the
//! input first (`w`, then `W`, which homes the plunger through the valve as it stands [U]): its own reservoir takes
//! the liquid back. A pump fed by a selector valve ([`CavroConfig::fed`]) refuses to initialize then, since through
//! its input the liquid would reach whichever bottle the selector stands at: the caller turns the selector to its
//! waste port, confirms it there, and asks for [`Prime::empty_to_waste`], which initializes through the input.

use bytes::BytesMut;
use futures::future::BoxFuture;
use protocols::InstrumentKind;
use protocols::units::Volume;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::Decoder;

use super::{Deadline, FrameError, error, garbled, not_acted, pause, with_acted};
use crate::capability::{Dispense, Identity, Instrument, Prime, Stop};
use crate::error::{DeviceError, DeviceErrorKind};
use crate::lab::{CavroConfig, CavroProtocol};
use crate::readback::{Observed, PumpState, ReadBack, RecordedExchange, RecordedStroke, Valve};
use crate::transport::Link;

/// Plunger increments in one full stroke (standard resolution, `N0`).
pub const FULL_STROKE: u32 = 3000;

/// The lab seconds a valve switch is expected to take [U].
pub const VALVE_SWITCH: f64 = 0.25;

/// The most strokes one dispense may take; larger volumes are refused as a likely unit mistake.
pub const MAX_STROKES: u32 = 100;

/// Lab seconds between two status polls.
const POLL: f64 = 0.25;

/// Lab seconds an initialization may take before the driver gives up.
const INIT_BUDGET: f64 = 30.0;

/// The longest answer the decoder accepts before it gives up looking for the terminator.
const MAX_ANSWER: usize = 300;

/// Starts an OEM frame.
pub const STX: u8 = 0x02;

/// Ends an OEM frame's data (and a DT answer's).
pub const ETX: u8 = 0x03;

/// How long an OEM frame waits for its answer before it is repeated (XCalibur manual, 3.2.1).
pub const OEM_REPEAT: std::time::Duration = std::time::Duration::from_millis(100);

/// Tries of one OEM frame: the first and its repeats.
pub const OEM_ATTEMPTS: u32 = 5;

/// The OEM checksum: the XOR of every byte.
pub fn xor(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0, |a, b| a ^ b)
}

/// The bytes of an OEM command frame to `address` (the wire character) with sequence number `seq` (1 to 7).
pub fn oem_frame(address: u8, seq: u8, repeat: bool, data: &[u8]) -> Vec<u8> {
    let mut v = vec![STX, address, 0x30 | (u8::from(repeat) << 3) | (seq & 0x07)];
    v.extend_from_slice(data);
    v.push(ETX);
    v.push(xor(&v));
    v
}

/// A firmware error code from the status byte (XCalibur manual, table 3-8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CavroError {
    /// 1: initialization failed; the pump must be initialized again.
    InitializationError,
    /// 2: the command is not recognised.
    InvalidCommand,
    /// 3: an operand is out of range.
    InvalidOperand,
    /// 4: an invalid command sequence.
    InvalidSequence,
    /// 6: the EEPROM failed.
    Eeprom,
    /// 7: the pump has not been initialized.
    NotInitialized,
    /// 9: the plunger is overloaded; the pump must be initialized again.
    PlungerOverload,
    /// 10: the valve is overloaded; the pump must be initialized again.
    ValveOverload,
    /// 11: plunger moves are not allowed with the valve in bypass or throughput.
    PlungerMoveNotAllowed,
    /// 15: a command arrived while the plunger was moving and was ignored.
    CommandOverflow,
    /// A code the manual does not list (5, 8, 12, 13, 14).
    Undocumented(u8),
}

impl CavroError {
    /// The error for a status code; `None` for 0, no error.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code & 0x0F {
            0 => return None,
            1 => CavroError::InitializationError,
            2 => CavroError::InvalidCommand,
            3 => CavroError::InvalidOperand,
            4 => CavroError::InvalidSequence,
            6 => CavroError::Eeprom,
            7 => CavroError::NotInitialized,
            9 => CavroError::PlungerOverload,
            10 => CavroError::ValveOverload,
            11 => CavroError::PlungerMoveNotAllowed,
            15 => CavroError::CommandOverflow,
            other => CavroError::Undocumented(other),
        })
    }

    /// The numeric code.
    pub fn code(self) -> u8 {
        match self {
            CavroError::InitializationError => 1,
            CavroError::InvalidCommand => 2,
            CavroError::InvalidOperand => 3,
            CavroError::InvalidSequence => 4,
            CavroError::Eeprom => 6,
            CavroError::NotInitialized => 7,
            CavroError::PlungerOverload => 9,
            CavroError::ValveOverload => 10,
            CavroError::PlungerMoveNotAllowed => 11,
            CavroError::CommandOverflow => 15,
            CavroError::Undocumented(c) => c,
        }
    }

    /// What the code means, in words.
    pub fn message(self) -> &'static str {
        match self {
            CavroError::InitializationError => "initialization error",
            CavroError::InvalidCommand => "invalid command",
            CavroError::InvalidOperand => "invalid operand",
            CavroError::InvalidSequence => "invalid command sequence",
            CavroError::Eeprom => "EEPROM failure",
            CavroError::NotInitialized => "pump not initialized",
            CavroError::PlungerOverload => "plunger overload",
            CavroError::ValveOverload => "valve overload",
            CavroError::PlungerMoveNotAllowed => "plunger move not allowed with the valve in bypass",
            CavroError::CommandOverflow => "command overflow: sent while the plunger was moving",
            CavroError::Undocumented(_) => "undocumented error code",
        }
    }
}

/// One DT or OEM answer: the status byte and the report data, without framing.
#[derive(Clone, PartialEq, Eq)]
pub struct DtAnswer {
    /// The status byte.
    pub status: u8,
    /// The report data (empty for non-report commands).
    pub data: Vec<u8>,
}

/// Shown as the record's parsed reply: the status byte and the data as text, `DtAnswer(0x60, "3000")`.
impl std::fmt::Debug for DtAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DtAnswer(0x{:02X}", self.status)?;
        if !self.data.is_empty() {
            write!(f, ", {}", crate::error::Printable(&self.data))?;
        }
        f.write_str(")")
    }
}

impl DtAnswer {
    /// Whether the pump is ready (not busy).
    pub fn ready(&self) -> bool {
        self.status & 0x20 != 0
    }

    /// The error the status byte reports, if any.
    pub fn error(&self) -> Option<CavroError> {
        CavroError::from_code(self.status & 0x0F)
    }

    /// The answer's bytes as they were on the wire in DT.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = vec![b'/', b'0', self.status];
        v.extend_from_slice(&self.data);
        v.extend_from_slice(b"\x03\r\n");
        v
    }

    /// The answer's bytes as they were on the wire in OEM.
    pub fn to_oem_bytes(&self) -> Vec<u8> {
        let mut v = vec![STX, b'0', self.status];
        v.extend_from_slice(&self.data);
        v.push(ETX);
        v.push(xor(&v));
        v
    }

    /// The report data as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

/// Frames DT answers: `/0` status data ETX CR LF.
#[derive(Debug, Clone, Default)]
pub struct DtDecoder;

impl Decoder for DtDecoder {
    type Item = DtAnswer;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<DtAnswer>, FrameError> {
        let Some(end) = src.windows(3).position(|w| w == b"\x03\r\n") else {
            if src.len() > MAX_ANSWER {
                return Err(FrameError::Malformed(format!("no ETX CR LF within {MAX_ANSWER} bytes")));
            }
            return Ok(None);
        };
        let frame = src.split_to(end + 3);
        let answer = &frame[..end];
        if answer.len() < 3 || &answer[..2] != b"/0" {
            return Err(FrameError::Malformed("an answer starts with `/0` and a status byte".into()));
        }
        body(answer[2], &answer[3..]).map(Some)
    }
}

/// Checks the body of an answer (status byte and data) and makes it one.
fn body(status: u8, data: &[u8]) -> Result<DtAnswer, FrameError> {
    // Status bits 7, 6 and 4 are fixed at 0, 1 and 0.
    if status & 0xD0 != 0x40 {
        return Err(FrameError::Malformed(format!("0x{status:02X} is not a status byte")));
    }
    if let Some(b) = data.iter().find(|b| !(0x20..=0x7e).contains(*b)) {
        return Err(FrameError::Malformed(format!("report data holds the control byte 0x{b:02X}")));
    }
    Ok(DtAnswer { status, data: data.to_vec() })
}

/// Frames OEM answers: STX, `0`, status, data, ETX, XOR checksum. Bytes before STX are line noise and are
/// consumed with the answer, so the record keeps them.
#[derive(Debug, Clone, Default)]
pub struct OemDecoder;

impl Decoder for OemDecoder {
    type Item = DtAnswer;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<DtAnswer>, FrameError> {
        let Some(start) = src.iter().position(|&b| b == STX) else {
            if src.len() > MAX_ANSWER {
                return Err(FrameError::Malformed(format!("no STX within {MAX_ANSWER} bytes")));
            }
            return Ok(None);
        };
        let Some(etx) = src[start..].iter().position(|&b| b == ETX).map(|i| start + i) else {
            if src.len() > MAX_ANSWER {
                return Err(FrameError::Malformed(format!("no ETX within {MAX_ANSWER} bytes")));
            }
            return Ok(None);
        };
        if src.len() < etx + 2 {
            return Ok(None);
        }
        let frame = src.split_to(etx + 2);
        let frame = &frame[start..];
        let (sum, found) = (xor(&frame[..frame.len() - 1]), frame[frame.len() - 1]);
        if sum != found {
            return Err(FrameError::Checksum(format!("checksum 0x{found:02X}, expected 0x{sum:02X}")));
        }
        if frame.len() < 5 || frame[1] != b'0' {
            return Err(FrameError::Malformed("an answer starts with STX, `0` and a status byte".into()));
        }
        body(frame[2], &frame[3..frame.len() - 2]).map(Some)
    }
}

/// The plunger increments a volume is on the configured syringe, rounded (unchecked: see [`XCalibur::increments`]).
pub fn increments_of(config: &CavroConfig, volume: Volume) -> f64 {
    (volume.0 * f64::from(FULL_STROKE) / config.syringe.0).round()
}

/// The strokes, in plunger increments, that a dispense of `total` increments takes: full strokes, then the rest.
pub fn strokes(total: u32) -> Vec<u32> {
    let mut out = vec![FULL_STROKE; (total / FULL_STROKE) as usize];
    if !total.is_multiple_of(FULL_STROKE) {
        out.push(total % FULL_STROKE);
    }
    out
}

/// The command string of a stroke of `n` increments with the valve at `valve` before it, and where the valve stands
/// after it: the other way (a valve not known is taken to be to the input, as after initializing).
pub fn stroke_command(n: u32, valve: Option<Valve>) -> (String, Valve) {
    match valve {
        Some(Valve::Output) => (format!("IA{n}OA0IR"), Valve::Input),
        _ => (format!("IA{n}OA0R"), Valve::Output),
    }
}

/// A command string as sent, without its framing, and whether it was an OEM repeat; `None` if the bytes are not a
/// command frame.
fn command_data(sent: &[u8]) -> Option<(&str, bool)> {
    let (data, repeat) = match sent.first() {
        Some(&STX) if sent.len() >= 5 => (&sent[3..sent.len() - 2], sent[2] & 0x08 != 0),
        Some(b'/') if sent.len() >= 3 => (&sent[2..sent.len() - 1], false),
        _ => return None,
    };
    std::str::from_utf8(data).ok().map(|d| (d, repeat))
}

/// Whether a recorded answer accepted its command: it decodes, with no error code.
fn accepted(sent: &[u8], received: &[u8]) -> bool {
    let mut bytes = bytes::BytesMut::from(received);
    let answer = match sent.first() {
        Some(&STX) => OemDecoder.decode(&mut bytes).ok().flatten(),
        _ => DtDecoder.decode(&mut bytes).ok().flatten(),
    };
    answer.is_some_and(|a| a.error().is_none())
}

/// Where the valve stood after the last accepted command that set it, among a pump's recorded exchanges: a stroke
/// ([`stroke_command`]), or an initialization (`Z`, `Y`, `w`: to the input); `None` if none is recorded.
pub fn valve_after(exchanges: &[RecordedExchange]) -> Option<Valve> {
    exchanges.iter().rev().filter(|e| accepted(&e.sent, &e.received)).find_map(|e| {
        let (data, _) = command_data(&e.sent)?;
        if data.starts_with("IA") && data.ends_with("OA0IR") {
            Some(Valve::Input)
        } else if data.starts_with("IA") && data.ends_with("OA0R") {
            Some(Valve::Output)
        } else if data.starts_with('Z') || data.starts_with('Y') || data.starts_with('w') || is_prime(data) {
            Some(Valve::Input)
        } else {
            None
        }
    })
}

/// Whether a command string is half of a prime ([`Prime`]): `IA{n}R`, the valve to the input and the plunger moved.
fn is_prime(data: &str) -> bool {
    data.strip_prefix("IA").and_then(|d| d.strip_suffix('R')).is_some_and(|n| n.parse::<u32>().is_ok())
}

/// The ids of the accepted commands of a prime (`IA{n}R`, `IA0R`) among a dispense's recorded exchanges.
pub fn recorded_primes(exchanges: &[RecordedExchange]) -> Vec<i64> {
    exchanges
        .iter()
        .filter(|e| command_data(&e.sent).is_some_and(|(d, _)| is_prime(d)) && accepted(&e.sent, &e.received))
        .map(|e| e.id)
        .collect()
}

/// The stroke commands (`IA{n}OA0R` or `IA{n}OA0IR`) a dispense sent, from its recorded exchanges, in order, each with
/// whether the pump's answer accepted it. An OEM frame repeated with the repeat bit is the same command, not another
/// stroke.
pub fn recorded_strokes(exchanges: &[RecordedExchange]) -> Vec<RecordedStroke> {
    let mut out: Vec<RecordedStroke> = Vec::new();
    for e in exchanges {
        let Some((data, repeat)) = command_data(&e.sent) else { continue };
        let Some(n) = data
            .strip_prefix("IA")
            .and_then(|d| d.strip_suffix("OA0IR").or_else(|| d.strip_suffix("OA0R")))
            .and_then(|d| d.parse::<u32>().ok())
        else {
            continue;
        };
        let accepted = accepted(&e.sent, &e.received);
        match out.last_mut() {
            Some(last) if repeat && last.increments == n => last.accepted |= accepted,
            _ => out.push(RecordedStroke { id: e.id, increments: n, accepted }),
        }
    }
    out
}

/// A Cavro XCalibur on a serial line.
pub struct XCalibur<T> {
    name: String,
    config: CavroConfig,
    link: Link<T>,
    /// The last OEM sequence number used, 1 to 7.
    seq: u8,
    /// Increments of liquid the syringe held when last read back.
    held: u32,
    /// Whether a draw was sent whose push out has not been confirmed since (a fill, a stroke that did not end
    /// well): the syringe may then hold liquid, whatever the last read-back said, and initializing must not push it
    /// through the output. Only a finished push, an initialization through the input, or a read-back of a pump at
    /// rest clears it.
    unconfirmed: bool,
    /// Where the valve stands, when the driver knows (after initializing, a stroke, or a read-back).
    valve: Option<Valve>,
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> XCalibur<T> {
    /// A driver for the pump `name` with the lab file's settings, talking over `link`.
    pub fn new(name: &str, config: CavroConfig, link: Link<T>) -> Self {
        XCalibur { name: name.to_owned(), config, link, seq: 0, held: 0, unconfirmed: false, valve: None }
    }

    /// Whether the syringe may hold liquid: a read-back found some, or a draw was sent whose push out was not
    /// confirmed.
    fn may_hold(&self) -> bool {
        self.held > 0 || self.unconfirmed
    }

    /// Why the syringe may hold liquid, for messages.
    fn holding(&self) -> String {
        if self.held > 0 {
            let ul = f64::from(self.held) * self.config.syringe.0 / f64::from(FULL_STROKE);
            format!("it was read back holding {ul:.1} uL")
        } else {
            "a draw was sent and its push out was never confirmed".to_owned()
        }
    }

    /// Sends a command string that draws into the syringe: from then on the syringe may hold liquid, unless the pump
    /// refused the string outright (an answer with an error code: it cleared its buffer before moving).
    async fn draw_command(&mut self, data: &str, acted_if_refused: bool) -> Result<DtAnswer, DeviceError> {
        let before = self.unconfirmed;
        self.unconfirmed = true;
        let result = self.exchange(data, true, acted_if_refused).await;
        if let Err(e) = &result
            && matches!(e.kind, DeviceErrorKind::Firmware { .. } | DeviceErrorKind::Busy { .. })
        {
            self.unconfirmed = before;
        }
        result
    }

    /// Initializes with the valve to the input first (`w`, then `W`, which homes the plunger through the valve as it
    /// stands [U]), so what the syringe holds leaves through the input, never through the output to the vessel.
    async fn initialize_through_input(&mut self) -> Result<(), DeviceError> {
        self.valve = None;
        self.exchange("wR", true, false).await?;
        self.wait_ready(INIT_BUDGET, "initializing the valve").await?;
        self.exchange("WR", true, true).await?;
        self.wait_ready(INIT_BUDGET, "initializing the plunger through the input").await?;
        self.held = 0;
        self.unconfirmed = false;
        let speed = format!("V{}R", self.config.top_speed);
        self.exchange(&speed, true, true).await?;
        self.valve = Some(Valve::Input);
        Ok(())
    }

    /// Sends `data` in the configured framing and returns the answer, repeating OEM frames as the protocol says.
    async fn request(&mut self, data: &str) -> Result<DtAnswer, DeviceError> {
        if self.config.protocol == CavroProtocol::Dt {
            let bytes = self.frame(data);
            return self.link.request(&bytes, &mut DtDecoder).await;
        }
        self.seq = self.seq % 7 + 1;
        let address = b'0'.saturating_add(self.config.address);
        let mut last = None;
        for attempt in 0..OEM_ATTEMPTS {
            let bytes = oem_frame(address, self.seq, attempt > 0, data.as_bytes());
            match self.link.request_within(&bytes, &mut OemDecoder, OEM_REPEAT).await {
                Ok(answer) => return Ok(answer),
                // A lost or corrupted answer is asked for again; the repeat bit keeps the pump from running the
                // command twice.
                Err(e) if matches!(e.kind, DeviceErrorKind::Timeout { .. } | DeviceErrorKind::Checksum { .. }) => {
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| error(&self.name, DeviceErrorKind::Disconnected, true)))
    }

    /// The answer's bytes in the configured framing.
    fn wire_bytes(&self, answer: &DtAnswer) -> Vec<u8> {
        match self.config.protocol {
            CavroProtocol::Dt => answer.to_bytes(),
            CavroProtocol::Oem => answer.to_oem_bytes(),
        }
    }

    /// The bytes of a command: `/`, the address character, the data, CR.
    pub fn frame(&self, data: &str) -> Vec<u8> {
        let mut v = vec![b'/', b'0'.saturating_add(self.config.address)];
        v.extend_from_slice(data.as_bytes());
        v.push(b'\r');
        v
    }

    /// Sends `data` and returns the answer. A link failure carries `acted_if_lost` (whether the command may have
    /// run unseen); an error code in the answer carries `acted_if_refused`.
    async fn exchange(
        &mut self,
        data: &str,
        acted_if_lost: bool,
        acted_if_refused: bool,
    ) -> Result<DtAnswer, DeviceError> {
        let answer = self.request(data).await.map_err(|e| with_acted(e, acted_if_lost))?;
        match answer.error() {
            Some(code) => Err(self.firmware(code, &answer, acted_if_refused)),
            None => Ok(answer),
        }
    }

    fn firmware(&self, code: CavroError, answer: &DtAnswer, acted: bool) -> DeviceError {
        let received = self.wire_bytes(answer);
        if code == CavroError::CommandOverflow {
            // The pump refused the command because it was still moving: nothing of it ran.
            let message = format!("{} (error 15)", code.message());
            return error(&self.name, DeviceErrorKind::Busy { message, received }, false);
        }
        error(
            &self.name,
            DeviceErrorKind::Firmware { code: Some(code.code().into()), message: code.message().into(), received },
            acted,
        )
    }

    /// Polls `Q` until the pump is ready, for at most `budget` lab seconds. Every error here follows a command
    /// that may have moved something.
    async fn wait_ready(&mut self, budget: f64, what: &str) -> Result<(), DeviceError> {
        let deadline = Deadline::after(self.link.clock(), budget);
        loop {
            let answer = self.exchange("Q", true, true).await?;
            if answer.ready() {
                return Ok(());
            }
            if deadline.expired() {
                return Err(error(
                    &self.name,
                    DeviceErrorKind::Busy {
                        message: format!("still busy {budget:.0} lab s after {what}"),
                        received: Vec::new(),
                    },
                    true,
                ));
            }
            pause(self.link.clock(), POLL).await;
        }
    }

    /// The plunger increments for `volume`, or why it cannot be dispensed.
    pub fn increments(&self, volume: Volume) -> Result<u32, DeviceError> {
        let syringe = self.config.syringe.0;
        let limit = |msg: String| error(&self.name, DeviceErrorKind::Limit(msg), false);
        if !(volume.0.is_finite() && volume.0 >= 0.0) {
            return Err(limit(format!("cannot dispense {volume}")));
        }
        if !(syringe.is_finite() && syringe > 0.0) {
            return Err(limit(format!("the syringe volume {} is not positive", self.config.syringe)));
        }
        let n = increments_of(&self.config, volume);
        if n > f64::from(FULL_STROKE * MAX_STROKES) {
            return Err(limit(format!(
                "{volume} takes more than {MAX_STROKES} strokes of the {} syringe",
                self.config.syringe
            )));
        }
        if n == 0.0 && volume.0 > 0.0 {
            let step = syringe / f64::from(FULL_STROKE);
            return Err(limit(format!("{volume} is less than half an increment ({step:.3} uL)")));
        }
        // The bound above keeps `n` within u32.
        Ok(n as u32)
    }

    /// Reads the pump back: waits (within a bound) for a move under way to end, then the plunger and the valve.
    async fn read_back(&mut self) -> Result<PumpState, DeviceError> {
        let started = self.link.clock().now();
        let deadline = Deadline::after(self.link.clock(), 2.0 * self.move_time(FULL_STROKE) + 10.0);
        let mut status = self.request("Q").await.map_err(not_acted)?;
        while !status.ready() && !deadline.expired() {
            pause(self.link.clock(), POLL).await;
            status = self.request("Q").await.map_err(not_acted)?;
        }
        let waited = self.link.clock().now() - started;
        let plunger = self.request("?").await.map_err(not_acted)?;
        let valve = self.request("?6").await.map_err(not_acted)?;
        let position: u32 = plunger.text().trim().parse().ok().filter(|p| *p <= FULL_STROKE * 8).ok_or_else(|| {
            garbled(&self.name, &self.frame("?"), &self.wire_bytes(&plunger), "not a plunger position", false)
        })?;
        let valve = match valve.text().trim() {
            "i" => Some(Valve::Input),
            "o" => Some(Valve::Output),
            "b" => Some(Valve::Bypass),
            _ => None,
        };
        self.held = position;
        // A pump at rest without error holds what its plunger says; one still moving or in error may hold more.
        if status.ready() && status.error().is_none() {
            self.unconfirmed = false;
        }
        self.valve = valve;
        Ok(PumpState {
            plunger: position,
            microlitres_per_increment: self.config.syringe.0 / f64::from(FULL_STROKE),
            valve,
            ready: status.ready(),
            error: status.error().map(|e| (e.code(), e.message().to_owned())),
            waited: if status.ready() && waited <= POLL { 0.0 } else { waited },
        })
    }

    /// The lab seconds a plunger move of `increments` takes at the configured top speed.
    fn move_time(&self, increments: u32) -> f64 {
        f64::from(increments) / f64::from(self.config.top_speed.max(1))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Instrument for XCalibur<T> {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> InstrumentKind {
        InstrumentKind::SyringePump
    }

    fn identify(&mut self) -> BoxFuture<'_, Result<Identity, DeviceError>> {
        Box::pin(async move {
            let answer = self.request("&").await.map_err(super::not_acted)?;
            // An uninitialized pump still answers reports; only a refused report means `&` is not understood.
            if let Some(code) =
                answer.error().filter(|c| !matches!(c, CavroError::NotInitialized | CavroError::InitializationError))
            {
                return Err(self.firmware(code, &answer, false));
            }
            let firmware = answer.text();
            if !firmware.to_ascii_lowercase().contains("xcalibur") {
                return Err(error(
                    &self.name,
                    DeviceErrorKind::WrongIdentity { expected: "a Cavro XCalibur pump".into(), found: firmware },
                    false,
                ));
            }
            Ok(Identity {
                model: "Cavro XCalibur".into(),
                serial: None,
                firmware: Some(firmware.clone()),
                raw: firmware,
            })
        })
    }

    fn initialize(&mut self) -> BoxFuture<'_, Result<(), DeviceError>> {
        Box::pin(async move {
            if self.may_hold() && self.config.fed {
                // Through the input the syringe would empty into whatever port the selector valve stands at (another
                // catalyst's bottle), and `Z` pushes through the output into the vessel: only the caller can turn
                // the valve to waste first ([`Prime::empty_to_waste`]).
                return Err(error(
                    &self.name,
                    DeviceErrorKind::Limit(format!(
                        "its syringe may hold liquid drawn through the valve feeding it ({}), and initializing would                          push it out; it is emptied only through the valve's waste port, once the valve is confirmed                          there",
                        self.holding()
                    )),
                    false,
                ));
            }
            if self.may_hold() {
                // Its input leads back to its own reservoir: the syringe empties there, not into the vessel.
                return self.initialize_through_input().await;
            }
            self.exchange("ZR", true, false).await?;
            self.wait_ready(INIT_BUDGET, "initialization").await?;
            let speed = format!("V{}R", self.config.top_speed);
            self.exchange(&speed, true, true).await?;
            self.valve = Some(Valve::Input);
            Ok(())
        })
    }

    fn safe_state(&mut self) -> BoxFuture<'_, Result<(), DeviceError>> {
        Box::pin(async move {
            // `T` stops the plunger at once; the error bits of its answer describe what was stopped, not the stop.
            self.request("T").await?;
            Ok(())
        })
    }

    fn set_tag(&mut self, tag: Option<u64>) {
        self.link.set_tag(tag);
    }

    fn as_dispense(&mut self) -> Option<&mut dyn Dispense> {
        Some(self)
    }

    fn as_stop(&mut self) -> Option<&mut dyn Stop> {
        Some(self)
    }

    fn as_read_back(&mut self) -> Option<&mut dyn ReadBack> {
        Some(self)
    }

    fn as_prime(&mut self) -> Option<&mut dyn Prime> {
        Some(self)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Prime for XCalibur<T> {
    fn fill(&mut self, volume: Volume) -> BoxFuture<'_, Result<(), DeviceError>> {
        Box::pin(async move {
            let n = self.increments(volume)?;
            if n > FULL_STROKE {
                let limit =
                    format!("a prime of {volume} is more than one stroke of the {} syringe", self.config.syringe);
                return Err(error(&self.name, DeviceErrorKind::Limit(limit), false));
            }
            self.valve = None;
            self.draw_command(&format!("IA{n}R"), false).await?;
            let expected = self.move_time(n) + VALVE_SWITCH;
            pause(self.link.clock(), expected).await;
            self.wait_ready(expected.max(10.0), &format!("drawing {n} increments to prime")).await?;
            self.valve = Some(Valve::Input);
            Ok(())
        })
    }

    fn empty_to_input(&mut self) -> BoxFuture<'_, Result<(), DeviceError>> {
        Box::pin(async move {
            // The syringe holds what the fill drew: whatever this does, liquid may have moved.
            self.valve = None;
            self.exchange("IA0R", true, true).await?;
            let expected = self.move_time(FULL_STROKE) + VALVE_SWITCH;
            pause(self.link.clock(), VALVE_SWITCH).await;
            self.wait_ready(expected.max(10.0), "pushing the prime back out through the input").await?;
            self.valve = Some(Valve::Input);
            self.held = 0;
            self.unconfirmed = false;
            Ok(())
        })
    }

    fn may_hold(&self) -> bool {
        XCalibur::may_hold(self)
    }

    fn empty_to_waste(&mut self) -> BoxFuture<'_, Result<(), DeviceError>> {
        Box::pin(self.initialize_through_input())
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> ReadBack for XCalibur<T> {
    fn observe(&mut self) -> BoxFuture<'_, Result<Observed, DeviceError>> {
        Box::pin(async move { self.read_back().await.map(Observed::Pump) })
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stop for XCalibur<T> {
    fn stop(&mut self) -> BoxFuture<'_, Result<(), DeviceError>> {
        self.safe_state()
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Dispense for XCalibur<T> {
    fn dispense(&mut self, volume: Volume) -> BoxFuture<'_, Result<Volume, DeviceError>> {
        Box::pin(async move {
            let total = self.increments(volume)?;
            for (k, n) in strokes(total).into_iter().enumerate() {
                let (string, after) = stroke_command(n, self.valve);
                // Where the valve stands is not known once a stroke string was sent, until it has finished.
                self.valve = None;
                // A refused first stroke has moved nothing; a refused later one follows strokes that did.
                self.draw_command(&string, k > 0).await?;
                let expected = 2.0 * self.move_time(n) + 2.0 * VALVE_SWITCH;
                pause(self.link.clock(), expected).await;
                self.wait_ready(expected.max(10.0), &format!("a stroke of {n} increments")).await?;
                // The stroke ended with the plunger home and the pump at rest without error: the syringe is empty.
                self.unconfirmed = false;
                self.held = 0;
                self.valve = Some(after);
            }
            Ok(Volume(f64::from(total) * self.config.syringe.0 / f64::from(FULL_STROKE)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::transport::discard;
    use std::time::Duration;

    fn config() -> CavroConfig {
        CavroConfig {
            address: 1,
            syringe: Volume(1000.0),
            top_speed: 400,
            reservoir: crate::lab::Bottle { reagent: "A".into(), volume: None, dead: Volume(0.0) },
            protocol: CavroProtocol::Dt,
            fed: false,
        }
    }

    fn decode(bytes: &[u8]) -> Result<Option<DtAnswer>, FrameError> {
        DtDecoder.decode(&mut BytesMut::from(bytes))
    }

    #[test]
    fn answers_decode_with_status_and_data() {
        let a = decode(b"/0`3000\x03\r\n").unwrap().unwrap();
        assert!(a.ready());
        assert_eq!(a.error(), None);
        assert_eq!(a.text(), "3000");
        let busy = decode(b"/0@\x03\r\n").unwrap().unwrap();
        assert!(!busy.ready());
        let err = decode(b"/0c\x03\r\n").unwrap().unwrap();
        assert_eq!(err.error(), Some(CavroError::InvalidOperand));
        assert_eq!(decode(b"/0`30").unwrap(), None, "a partial answer waits for more bytes");
    }

    #[test]
    fn bad_bytes_are_rejected_not_misread() {
        assert!(decode(b"/1`\x03\r\n").is_err(), "the master address is 0");
        assert!(decode(b"/0\x10\x03\r\n").is_err(), "not a status byte");
        assert!(decode(b"/0`\x01\x03\r\n").is_err(), "control byte in the data");
        assert!(decode(&[b'x'; 400]).is_err(), "no terminator");
    }

    #[test]
    fn oem_frames_match_the_notes() {
        assert_eq!(oem_frame(b'1', 1, false, b"ZR"), [0x02, 0x31, 0x31, 0x5A, 0x52, 0x03, 0x09]);
        assert_eq!(oem_frame(b'1', 1, true, b"ZR"), [0x02, 0x31, 0x39, 0x5A, 0x52, 0x03, 0x01]);
        assert_eq!(oem_frame(b'1', 2, false, b"Q"), [0x02, 0x31, 0x32, 0x51, 0x03, 0x53]);
        assert_eq!(oem_frame(b'1', 3, false, b"?"), [0x02, 0x31, 0x33, 0x3F, 0x03, 0x3C]);
        let mut d = OemDecoder;
        let a = d.decode(&mut BytesMut::from(&[0x02, 0x30, 0x60, 0x03, 0x51][..])).unwrap().unwrap();
        assert!(a.ready() && a.error().is_none());
        let busy = d.decode(&mut BytesMut::from(&[0x02, 0x30, 0x40, 0x03, 0x71][..])).unwrap().unwrap();
        assert!(!busy.ready());
        let report = [0x02, 0x30, 0x60, 0x33, 0x30, 0x30, 0x30, 0x03, 0x52];
        assert_eq!(d.decode(&mut BytesMut::from(&report[..])).unwrap().unwrap().text(), "3000");
        assert_eq!(busy.to_oem_bytes(), [0x02, 0x30, 0x40, 0x03, 0x71]);
    }

    #[test]
    fn oem_answers_check_their_checksum_and_wait_for_it() {
        let mut d = OemDecoder;
        assert!(matches!(
            d.decode(&mut BytesMut::from(&[0x02, 0x30, 0x60, 0x03, 0x50][..])),
            Err(FrameError::Checksum(_))
        ));
        assert_eq!(d.decode(&mut BytesMut::from(&[0x02, 0x30, 0x60, 0x03][..])).unwrap(), None);
        let mut noisy = BytesMut::from(&[0x0A, 0xFF, 0x02, 0x30, 0x60, 0x03, 0x51][..]);
        assert!(d.decode(&mut noisy).unwrap().is_some());
        assert!(noisy.is_empty(), "the noise is consumed with the answer");
    }

    #[test]
    fn every_documented_code_has_a_name() {
        for code in 0..16u8 {
            match CavroError::from_code(code) {
                None => assert_eq!(code, 0),
                Some(e) => assert_eq!(e.code(), code),
            }
        }
        assert_eq!(CavroError::from_code(0x63), Some(CavroError::InvalidOperand));
    }

    #[test]
    fn volumes_become_whole_increments_within_limits() {
        let (client, _server) = tokio::io::duplex(8);
        let pump =
            XCalibur::new("p", config(), Link::new(client, "p", Clock::manual(), discard(), Duration::from_millis(10)));
        assert_eq!(pump.increments(Volume(250.0)).unwrap(), 750);
        assert_eq!(pump.increments(Volume(0.2)).unwrap(), 1, "0.2 uL rounds to one 0.333 uL increment");
        assert!(matches!(pump.increments(Volume(0.1)).unwrap_err().kind, DeviceErrorKind::Limit(_)));
        assert!(matches!(pump.increments(Volume(-1.0)).unwrap_err().kind, DeviceErrorKind::Limit(_)));
        assert!(matches!(pump.increments(Volume(f64::NAN)).unwrap_err().kind, DeviceErrorKind::Limit(_)));
        assert!(matches!(pump.increments(Volume(1e6)).unwrap_err().kind, DeviceErrorKind::Limit(_)));
        assert_eq!(pump.frame("ZR"), b"/1ZR\r");
    }
}
