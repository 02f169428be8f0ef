//! VICI Valco selector valve on a universal electric actuator (EUH/EUD/EUT), serial command set.
//!
//! Commands are ASCII ending CR, prefixed `/` and the device ID on an RS-485 actuator with an ID; replies end CR
//! ([`ViciDecoder`]). The manual defines no error reply: an unknown command or an impossible position is ignored
//! in silence, so the driver checks every position against the lab file before sending and confirms every move by
//! asking where the valve is (act, then confirm).
//!
//! Identification reads `VR` (the firmware), `NP` (the number of ports, which must match the lab file's
//! `positions`) and `ID` (the device ID, which must match the lab file's `id` when it gives one). Initialization
//! sets the reply mode `IFM0`, so a move is never answered, and reads the position. A selection is `GOnn`, then
//! `CP` every [`POLL`] lab seconds until the valve reports the port, for at most the time the longest move takes
//! and a margin ([`MOVE_BUDGET`]).
//!
//! Choices where the notes leave the hardware unverified [U]:
//! - `IFM0` is sent without waiting for a reply, and `GOnn` takes the port without zero padding (`GO5`).
//! - `CP` is parsed leniently (`CP05`, `CP5`, `CP = 5`), as is `NP`; `ID` answers `IDZ` or `ID not used`.
//! - `VR` is taken to answer one line; further lines a real actuator may send are recorded as unsolicited bytes
//!   before the next command.
//! - A valve does nothing between moves that could need stopping, so the safe state sends nothing.

use bytes::BytesMut;
use futures::future::BoxFuture;
use protocols::InstrumentKind;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::Decoder;

use super::{Deadline, FrameError, error, garbled, not_acted, pause, with_acted};
use crate::capability::{Identity, Instrument, Select};
use crate::error::{DeviceError, DeviceErrorKind};
use crate::lab::ValveConfig;
use crate::transport::Link;

/// Lab seconds between two position queries while the valve moves.
pub const POLL: f64 = 0.1;

/// Lab seconds a move may take beyond a quarter of a second per port passed.
pub const MOVE_BUDGET: f64 = 5.0;

/// The longest reply line accepted.
const MAX_LINE: usize = 128;

/// Frames actuator replies: printable text ending CR (a LF after it, from a `DEL3` actuator, is skipped).
#[derive(Debug, Clone, Default)]
pub struct ViciDecoder;

impl Decoder for ViciDecoder {
    type Item = String;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<String>, FrameError> {
        while src.first() == Some(&b'\n') {
            let _ = src.split_to(1);
        }
        let Some(end) = src.iter().position(|&b| b == b'\r') else {
            if src.len() > MAX_LINE {
                return Err(FrameError::Malformed(format!("no CR within {MAX_LINE} bytes")));
            }
            return Ok(None);
        };
        let line = src.split_to(end + 1);
        let text = &line[..end];
        if let Some(b) = text.iter().find(|b| !(0x20..=0x7e).contains(*b)) {
            return Err(FrameError::Malformed(format!("the reply holds the byte 0x{b:02X}")));
        }
        Ok(Some(String::from_utf8_lossy(text).trim().to_owned()))
    }
}

/// The number after a reply's prefix (`CP05` with prefix `CP` is 5), leniently: spaces and `=` are skipped.
pub fn number_after(reply: &str, prefix: &str) -> Option<u32> {
    let rest = reply.strip_prefix(prefix)?.trim_start_matches([' ', '=']);
    rest.parse().ok()
}

/// A VICI selector valve on a serial line.
pub struct ViciValve<T> {
    name: String,
    config: ValveConfig,
    link: Link<T>,
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> ViciValve<T> {
    /// A driver for the valve `name` with the lab file's settings, talking over `link`.
    pub fn new(name: &str, config: ValveConfig, link: Link<T>) -> Self {
        ViciValve { name: name.to_owned(), config, link }
    }

    /// The bytes of a command, with the ID prefix the actuator needs.
    pub fn command(&self, text: &str) -> Vec<u8> {
        let prefix = self.config.id.map(|c| format!("/{c}")).unwrap_or_default();
        format!("{prefix}{text}\r").into_bytes()
    }

    async fn ask(&mut self, text: &str, acted: bool) -> Result<String, DeviceError> {
        let bytes = self.command(text);
        self.link.request(&bytes, &mut ViciDecoder).await.map_err(|e| with_acted(e, acted))
    }

    /// Where the valve is.
    async fn position(&mut self, acted: bool) -> Result<u32, DeviceError> {
        let reply = self.ask("CP", acted).await?;
        number_after(&reply, "CP")
            .ok_or_else(|| garbled(&self.name, &self.command("CP"), reply.as_bytes(), "expected `CPnn`", acted))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Instrument for ViciValve<T> {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> InstrumentKind {
        InstrumentKind::Valve
    }

    fn identify(&mut self) -> BoxFuture<'_, Result<Identity, DeviceError>> {
        Box::pin(async move {
            let version = self.ask("VR", false).await?;
            let np = self.ask("NP", false).await?;
            let positions = number_after(&np, "NP")
                .ok_or_else(|| garbled(&self.name, &self.command("NP"), np.as_bytes(), "expected `NPnn`", false))?;
            if positions != self.config.positions {
                return Err(error(
                    &self.name,
                    DeviceErrorKind::WrongIdentity {
                        expected: format!("a {}-port VICI valve", self.config.positions),
                        found: format!("a {positions}-port valve ({version})"),
                    },
                    false,
                ));
            }
            let id = self.ask("ID", false).await?;
            let found = id.strip_prefix("ID").map(str::trim).filter(|s| s.len() == 1).and_then(|s| s.chars().next());
            if self.config.id.is_some() && found != self.config.id {
                return Err(error(
                    &self.name,
                    DeviceErrorKind::WrongIdentity {
                        expected: format!("a VICI actuator with ID `{}`", self.config.id.unwrap_or('?')),
                        found: id,
                    },
                    false,
                ));
            }
            Ok(Identity {
                model: format!("VICI {positions}-port selector"),
                serial: found.map(String::from),
                firmware: Some(version.clone()),
                raw: format!("{version} | {np} | {id}"),
            })
        })
    }

    fn initialize(&mut self) -> BoxFuture<'_, Result<(), DeviceError>> {
        Box::pin(async move {
            let bytes = self.command("IFM0");
            self.link.send(&bytes).await.map_err(not_acted)?;
            self.position(false).await?;
            Ok(())
        })
    }

    fn safe_state(&mut self) -> BoxFuture<'_, Result<(), DeviceError>> {
        Box::pin(async { Ok(()) })
    }

    fn set_tag(&mut self, tag: Option<u64>) {
        self.link.set_tag(tag);
    }

    fn as_select(&mut self) -> Option<&mut dyn Select> {
        Some(self)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Select for ViciValve<T> {
    fn select(&mut self, position: u32) -> BoxFuture<'_, Result<(), DeviceError>> {
        Box::pin(async move {
            let n = self.config.positions;
            if !(1..=n).contains(&position) {
                return Err(error(
                    &self.name,
                    DeviceErrorKind::Limit(format!("port {position} is not one of the valve's 1..={n}")),
                    false,
                ));
            }
            let bytes = self.command(&format!("GO{position}"));
            self.link.send(&bytes).await.map_err(|e| with_acted(e, true))?;
            let clock = self.link.clock().clone();
            let deadline = Deadline::after(&clock, MOVE_BUDGET + 0.25 * f64::from(n));
            loop {
                let at = self.position(true).await?;
                if at == position {
                    return Ok(());
                }
                if deadline.expired() {
                    return Err(error(
                        &self.name,
                        DeviceErrorKind::Physical(format!(
                            "the valve stayed at port {at} when sent to port {position}"
                        )),
                        true,
                    ));
                }
                pause(&clock, POLL).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_end_at_cr_and_parse_leniently() {
        let mut d = ViciDecoder;
        let mut b = BytesMut::from(&b"CP05\r\nNP10\rCP"[..]);
        assert_eq!(d.decode(&mut b).unwrap().as_deref(), Some("CP05"));
        assert_eq!(d.decode(&mut b).unwrap().as_deref(), Some("NP10"));
        assert_eq!(d.decode(&mut b).unwrap(), None);
        assert_eq!(number_after("CP05", "CP"), Some(5));
        assert_eq!(number_after("CP = 12", "CP"), Some(12));
        assert_eq!(number_after("CPA", "CP"), None);
        assert!(d.decode(&mut BytesMut::from(&b"CP\xFF5\r"[..])).is_err());
    }
}
