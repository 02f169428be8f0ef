//! Tecan Cavro XCalibur syringe pump, DT (data terminal) protocol.
//!
//! A command is `/`, the address character (`'0' + address`), ASCII command data, CR. Every command is answered
//! `/0`, a status byte, data for report commands, ETX, CR, LF. The status byte is `0 1 X 0 E3 E2 E1 E0`: bit 5 set
//! means ready, bits 0 to 3 are an error code ([`CavroError`]). Only `Q` reports busy reliably, so the driver polls
//! `Q` after every move.
//!
//! A dispense fills and empties the syringe once per stroke with one command string, `I A{n} O A0 R`: valve to
//! the reservoir, plunger to `n` increments (3000 per full stroke), valve to the output, plunger home. The volume
//! returned is what was commanded, quantised to whole increments.
//!
//! Choices where the notes leave the hardware unverified [U]:
//! - The `&` firmware report is taken as free text and recorded as the firmware version; the pump does not report
//!   its model, so the identity's model is always `Cavro XCalibur`.
//! - An error code in the immediate answer to a command string means the pump rejected the string and cleared its
//!   buffer before moving (the manual's `A4000R` example), so such errors carry `may_have_acted = false` unless an
//!   earlier stroke of the same dispense ran. Errors seen by `Q` after a move carry `may_have_acted = true`.
//! - A valve switch is expected to take about [`VALVE_SWITCH`] lab seconds; the driver only uses this to decide
//!   when to start polling.

use bytes::BytesMut;
use futures::future::BoxFuture;
use protocols::InstrumentKind;
use protocols::units::Volume;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::Decoder;

use super::{Deadline, FrameError, error, pause, with_acted};
use crate::capability::{Dispense, Identity, Instrument};
use crate::error::{DeviceError, DeviceErrorKind};
use crate::lab::CavroConfig;
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

/// One DT answer: the status byte and the report data, without framing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DtAnswer {
    /// The status byte.
    pub status: u8,
    /// The report data (empty for non-report commands).
    pub data: Vec<u8>,
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

    /// The answer's bytes as they were on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = vec![b'/', b'0', self.status];
        v.extend_from_slice(&self.data);
        v.extend_from_slice(b"\x03\r\n");
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
        let body = &frame[..end];
        if body.len() < 3 || &body[..2] != b"/0" {
            return Err(FrameError::Malformed("an answer starts with `/0` and a status byte".into()));
        }
        let status = body[2];
        // Status bits 7, 6 and 4 are fixed at 0, 1 and 0.
        if status & 0xD0 != 0x40 {
            return Err(FrameError::Malformed(format!("0x{status:02X} is not a status byte")));
        }
        let data = &body[3..];
        if let Some(b) = data.iter().find(|b| !(0x20..=0x7e).contains(*b)) {
            return Err(FrameError::Malformed(format!("report data holds the control byte 0x{b:02X}")));
        }
        Ok(Some(DtAnswer { status, data: data.to_vec() }))
    }
}

/// A Cavro XCalibur on a serial line.
pub struct XCalibur<T> {
    name: String,
    config: CavroConfig,
    link: Link<T>,
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> XCalibur<T> {
    /// A driver for the pump `name` with the lab file's settings, talking over `link`.
    pub fn new(name: &str, config: CavroConfig, link: Link<T>) -> Self {
        XCalibur { name: name.to_owned(), config, link }
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
        let bytes = self.frame(data);
        let answer = self.link.request(&bytes, &mut DtDecoder).await.map_err(|e| with_acted(e, acted_if_lost))?;
        match answer.error() {
            Some(code) => Err(self.firmware(code, &answer, acted_if_refused)),
            None => Ok(answer),
        }
    }

    fn firmware(&self, code: CavroError, answer: &DtAnswer, acted: bool) -> DeviceError {
        error(
            &self.name,
            DeviceErrorKind::Firmware {
                code: Some(code.code().into()),
                message: code.message().into(),
                received: answer.to_bytes(),
            },
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
                    DeviceErrorKind::Busy(format!("still busy {budget:.0} lab s after {what}")),
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
        let n = (volume.0 * f64::from(FULL_STROKE) / syringe).round();
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
            let bytes = self.frame("&");
            let answer = self.link.request(&bytes, &mut DtDecoder).await.map_err(super::not_acted)?;
            // An uninitialized pump still answers reports; only a refused report means `&` is not understood.
            if let Some(code) =
                answer.error().filter(|c| !matches!(c, CavroError::NotInitialized | CavroError::InitializationError))
            {
                return Err(self.firmware(code, &answer, false));
            }
            let firmware = answer.text();
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
            self.exchange("ZR", true, false).await?;
            self.wait_ready(INIT_BUDGET, "initialization").await?;
            let speed = format!("V{}R", self.config.top_speed);
            self.exchange(&speed, true, true).await?;
            Ok(())
        })
    }

    fn safe_state(&mut self) -> BoxFuture<'_, Result<(), DeviceError>> {
        Box::pin(async move {
            // `T` stops the plunger at once; the error bits of its answer describe what was stopped, not the stop.
            let bytes = self.frame("T");
            self.link.request(&bytes, &mut DtDecoder).await?;
            Ok(())
        })
    }

    fn set_tag(&mut self, tag: Option<u64>) {
        self.link.set_tag(tag);
    }

    fn as_dispense(&mut self) -> Option<&mut dyn Dispense> {
        Some(self)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Dispense for XCalibur<T> {
    fn dispense(&mut self, volume: Volume) -> BoxFuture<'_, Result<Volume, DeviceError>> {
        Box::pin(async move {
            let total = self.increments(volume)?;
            let mut done = 0;
            while done < total {
                let n = (total - done).min(FULL_STROKE);
                self.exchange(&format!("IA{n}OA0R"), true, done > 0).await?;
                let expected = 2.0 * self.move_time(n) + 2.0 * VALVE_SWITCH;
                pause(self.link.clock(), expected).await;
                self.wait_ready(expected.max(10.0), &format!("a stroke of {n} increments")).await?;
                done += n;
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
        CavroConfig { address: 1, syringe: Volume(1000.0), top_speed: 400, reservoir: "A".into() }
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
