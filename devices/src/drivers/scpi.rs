//! A SCPI thermometer (or a multimeter measuring temperature) over RS-232.
//!
//! Messages are text ending with the lab file's terminator (LF by default); replies end the same way, a CR before
//! an LF tolerated ([`ScpiDecoder`]). Serial SCPI has no end-or-identify line and no service request, so the only
//! error signals are the error queue and silence: a command the instrument does not understand, or cannot carry
//! out, is not answered, and queues an error that `SYSTem:ERRor?` pops as `code,"message"`. The driver therefore
//! follows every failure (silence, an unparsable reading, the overflow value `9.9E37`) with `SYST:ERR?`, and
//! reports the queued error as a named [`ScpiError`] when there is one.
//!
//! Identification reads `*IDN?` (`manufacturer,model,serial,firmware`) and refuses an instrument whose model field
//! is not the lab file's `model`. Initialization sends `*RST` and `*CLS` (neither is answered), then
//! `UNIT:TEMP C` if the model's profile ([`crate::models::scpi`]) says it has the command (a Model 2000 does; a
//! meter without a profile is left in its default unit, taken to be degrees Celsius [U]), and then empties the
//! error queue, at most [`QUEUE_DRAIN`] entries. A reading is `MEAS:TEMP?`, an NR3 number in degrees Celsius. A
//! thermometer moves nothing, so every error carries `may_have_acted = false`.
//!
//! Choices where the notes leave the hardware unverified [U]:
//! - The line defaults to 9600 8N1; a Keithley 2000's factory rate is 4800, set in the lab file's `serial`.
//! - `SYST:REM` (needed by some HP/Agilent meters before RS-232 control) is not sent.

use bytes::BytesMut;
use futures::future::BoxFuture;
use protocols::InstrumentKind;
use protocols::units::Temperature;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::Decoder;

use super::{FrameError, error, garbled, not_acted};
use crate::capability::{Identity, Instrument, ReadTemperature};
use crate::error::{DeviceError, DeviceErrorKind};
use crate::lab::{ScpiConfig, Terminator};
use crate::transport::Link;

/// Error-queue entries read at most when emptying it.
pub const QUEUE_DRAIN: usize = 32;

/// The longest reply line accepted.
const MAX_LINE: usize = 512;

/// Readings at or above this are SCPI's "not a number" (9.9E37), the overflow a meter sends when it cannot measure.
const OVERFLOW: f64 = 9.0e37;

/// Frames SCPI replies: printable text up to the terminator.
#[derive(Debug, Clone)]
pub struct ScpiDecoder {
    terminator: Terminator,
}

impl ScpiDecoder {
    /// A decoder for replies ending with `terminator`.
    pub fn new(terminator: Terminator) -> Self {
        ScpiDecoder { terminator }
    }
}

impl Decoder for ScpiDecoder {
    type Item = String;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<String>, FrameError> {
        let end_byte = match self.terminator {
            Terminator::Cr => b'\r',
            Terminator::Lf | Terminator::CrLf => b'\n',
        };
        let Some(end) = src.iter().position(|&b| b == end_byte) else {
            if src.len() > MAX_LINE {
                return Err(FrameError::Malformed(format!("no terminator within {MAX_LINE} bytes")));
            }
            return Ok(None);
        };
        let line = src.split_to(end + 1);
        let text = line[..end].strip_suffix(b"\r").unwrap_or(&line[..end]);
        if let Some(b) = text.iter().find(|b| !(0x20..=0x7e).contains(*b)) {
            return Err(FrameError::Malformed(format!("the reply holds the byte 0x{b:02X}")));
        }
        Ok(Some(String::from_utf8_lossy(text).trim().to_owned()))
    }
}

/// An entry of the SCPI error queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScpiError {
    /// -100.
    CommandError,
    /// -101.
    InvalidCharacter,
    /// -102.
    SyntaxError,
    /// -108.
    ParameterNotAllowed,
    /// -109.
    MissingParameter,
    /// -113.
    UndefinedHeader,
    /// -114.
    HeaderSuffixOutOfRange,
    /// -120.
    NumericDataError,
    /// -200.
    ExecutionError,
    /// -221.
    SettingsConflict,
    /// -230.
    DataStale,
    /// -300.
    DeviceError,
    /// -350.
    QueueOverflow,
    /// -400.
    QueryError,
    /// Any other code (positive codes are the instrument's own).
    Other(i32),
}

impl ScpiError {
    /// The error for a code; `None` for 0, no error.
    pub fn from_code(code: i32) -> Option<Self> {
        Some(match code {
            0 => return None,
            -100 => ScpiError::CommandError,
            -101 => ScpiError::InvalidCharacter,
            -102 => ScpiError::SyntaxError,
            -108 => ScpiError::ParameterNotAllowed,
            -109 => ScpiError::MissingParameter,
            -113 => ScpiError::UndefinedHeader,
            -114 => ScpiError::HeaderSuffixOutOfRange,
            -120 => ScpiError::NumericDataError,
            -200 => ScpiError::ExecutionError,
            -221 => ScpiError::SettingsConflict,
            -230 => ScpiError::DataStale,
            -300 => ScpiError::DeviceError,
            -350 => ScpiError::QueueOverflow,
            -400 => ScpiError::QueryError,
            c => ScpiError::Other(c),
        })
    }
}

/// Parses a `SYST:ERR?` reply, `code,"message"`.
pub fn parse_error(reply: &str) -> Option<(i32, String)> {
    let (code, message) = reply.split_once(',')?;
    let code: i32 = code.trim().trim_start_matches('+').parse().ok()?;
    Some((code, message.trim().trim_matches('"').to_owned()))
}

/// A SCPI thermometer on a serial line.
pub struct ScpiThermometer<T> {
    name: String,
    config: ScpiConfig,
    link: Link<T>,
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> ScpiThermometer<T> {
    /// A driver for the thermometer `name` with the lab file's settings, talking over `link`.
    pub fn new(name: &str, config: ScpiConfig, link: Link<T>) -> Self {
        ScpiThermometer { name: name.to_owned(), config, link }
    }

    fn bytes(&self, command: &str) -> Vec<u8> {
        let mut v = command.as_bytes().to_vec();
        v.extend_from_slice(self.config.terminator.bytes());
        v
    }

    async fn query(&mut self, command: &str) -> Result<String, DeviceError> {
        let bytes = self.bytes(command);
        let mut decoder = ScpiDecoder::new(self.config.terminator);
        self.link.request(&bytes, &mut decoder).await.map_err(not_acted)
    }

    /// Pops the oldest queued error, if there is one.
    async fn next_error(&mut self) -> Result<Option<(i32, String)>, DeviceError> {
        let reply = self.query("SYST:ERR?").await?;
        let parsed = parse_error(&reply).ok_or_else(|| {
            garbled(&self.name, &self.bytes("SYST:ERR?"), reply.as_bytes(), "expected `code,\"message\"`", false)
        })?;
        Ok((parsed.0 != 0).then_some(parsed))
    }

    /// The error to report for a failed `command`: the queued error if the instrument has one, else `failure`.
    async fn explain(&mut self, command: &str, failure: DeviceError) -> DeviceError {
        match self.next_error().await {
            Ok(Some((code, message))) => {
                let named = ScpiError::from_code(code).map(|e| format!("{e:?}")).unwrap_or_default();
                error(
                    &self.name,
                    DeviceErrorKind::Firmware {
                        code: Some(i64::from(code)),
                        message: format!("{message} ({named}, after `{command}`)"),
                        received: format!("{code},\"{message}\"").into_bytes(),
                    },
                    false,
                )
            }
            _ => failure,
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Instrument for ScpiThermometer<T> {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> InstrumentKind {
        InstrumentKind::Thermometer
    }

    fn identify(&mut self) -> BoxFuture<'_, Result<Identity, DeviceError>> {
        Box::pin(async move {
            let idn = self.query("*IDN?").await?;
            let fields: Vec<&str> = idn.split(',').map(str::trim).collect();
            let model = fields.get(1).copied().unwrap_or_default();
            if fields.len() < 4 || !model.eq_ignore_ascii_case(self.config.model.trim()) {
                return Err(error(
                    &self.name,
                    DeviceErrorKind::WrongIdentity {
                        expected: format!("a SCPI instrument whose model is `{}`", self.config.model),
                        found: idn,
                    },
                    false,
                ));
            }
            Ok(Identity {
                model: format!("{} {model}", fields[0]),
                serial: Some(fields[2].to_owned()),
                firmware: Some(fields[3..].join(",")),
                raw: idn.clone(),
            })
        })
    }

    fn initialize(&mut self) -> BoxFuture<'_, Result<(), DeviceError>> {
        Box::pin(async move {
            let celsius = crate::models::scpi::profile(&self.config.model).is_some_and(|p| p.unit_temperature);
            let commands: &[&str] = if celsius { &["*RST", "*CLS", "UNIT:TEMP C"] } else { &["*RST", "*CLS"] };
            for command in commands {
                let bytes = self.bytes(command);
                self.link.send(&bytes).await.map_err(not_acted)?;
            }
            for _ in 0..QUEUE_DRAIN {
                if self.next_error().await?.is_none() {
                    return Ok(());
                }
            }
            Err(error(
                &self.name,
                DeviceErrorKind::NotReady(format!("the error queue did not empty in {QUEUE_DRAIN} reads")),
                false,
            ))
        })
    }

    fn safe_state(&mut self) -> BoxFuture<'_, Result<(), DeviceError>> {
        // A thermometer does nothing physical that could need stopping.
        Box::pin(async { Ok(()) })
    }

    fn set_tag(&mut self, tag: Option<u64>) {
        self.link.set_tag(tag);
    }

    fn as_read_temperature(&mut self) -> Option<&mut dyn ReadTemperature> {
        Some(self)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> ReadTemperature for ScpiThermometer<T> {
    fn read_temperature(&mut self) -> BoxFuture<'_, Result<Temperature, DeviceError>> {
        Box::pin(async move {
            let command = "MEAS:TEMP?";
            let reply = match self.query(command).await {
                Ok(r) => r,
                Err(e) if matches!(e.kind, DeviceErrorKind::Timeout { .. } | DeviceErrorKind::Garbled { .. }) => {
                    return Err(self.explain(command, e).await);
                }
                Err(e) => return Err(e),
            };
            let value = reply.parse::<f64>().ok().filter(|v| v.is_finite() && v.abs() < OVERFLOW);
            match value {
                Some(v) => Ok(Temperature(v)),
                None => {
                    let failure =
                        garbled(&self.name, &self.bytes(command), reply.as_bytes(), "expected a temperature", false);
                    Err(self.explain(command, failure).await)
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_end_at_the_terminator() {
        let mut d = ScpiDecoder::new(Terminator::Lf);
        let mut b = BytesMut::from(&b"+2.53000000E+01\r\n0,\"No error\"\n-11"[..]);
        assert_eq!(d.decode(&mut b).unwrap().as_deref(), Some("+2.53000000E+01"));
        assert_eq!(d.decode(&mut b).unwrap().as_deref(), Some("0,\"No error\""));
        assert_eq!(d.decode(&mut b).unwrap(), None);
        let mut cr = ScpiDecoder::new(Terminator::Cr);
        assert_eq!(cr.decode(&mut BytesMut::from(&b"1\r"[..])).unwrap().as_deref(), Some("1"));
        assert!(d.decode(&mut BytesMut::from(&b"1\xFF\n"[..])).is_err());
    }

    #[test]
    fn queued_errors_parse_with_either_sign_style() {
        assert_eq!(parse_error("-113,\"Undefined header\""), Some((-113, "Undefined header".into())));
        assert_eq!(parse_error("+0,\"No error\""), Some((0, "No error".into())));
        assert_eq!(ScpiError::from_code(-350), Some(ScpiError::QueueOverflow));
        assert_eq!(ScpiError::from_code(0), None);
        assert_eq!(parse_error("garbage"), None);
    }
}
