//! Mettler Toledo balance, MT-SICS.
//!
//! Commands are upper-case ASCII ending CR LF, one at a time (the manual warns that commands sent back to back may
//! be reordered or lost). Replies are `ID STATUS [parameters]` CR LF; the reply's ID need not echo the command
//! (`@` answers `I4`). A weight is a number right-aligned in a 10-character field and its unit; [`SicsDecoder`]
//! splits on whitespace rather than on columns, and keeps quoted parameters whole. Errors come as a status
//! (`I` busy or unstable for too long, `L` logical error, `+` overload, `-` underload) or as a line of their own
//! (`ES` syntax, `ET` transmission, `EL` logical), each a named [`SicsError`].
//!
//! Identification reads `I2` (type and capacity) and `I4` (serial number) and refuses a balance whose type is
//! not the lab file's `model`. Initialization resets with `@`, asks `I0` which commands the balance implements (a
//! level-0 command every balance answers, line by line: `I0 B <level> "<command>"` until the last, `I0 A ...`), sets
//! the host unit to grams with `M21 0 0` only if the list has `M21` (a balance without it answers `ES`), and zeroes
//! the empty pan with `Z` (nothing stands on a balance when the lab starts). A weighing is `S`, which the balance
//! answers once the reading is stable: the driver waits for it the line's timeout plus the lab file's `settle` time
//! on the lab clock. The mass returned is the gross load on the pan (vessel and contents) in grams; a weight in
//! `mg` or `kg` is converted, so a balance left in another host unit still weighs right. Nothing here moves
//! anything, so every error carries `may_have_acted = false`.
//!
//! [`crate::models::sics::PROFILES`] records, for each model the simulator can be, the commands of that model this project has evidence
//! for (the level-0 and level-1 sets every MT-SICS balance implements, and the level-2 commands the driver uses),
//! which is what the simulator lists for `I0` and answers; a real balance lists more.
//!
//! Choices where the notes leave the hardware unverified [U]:
//! - `I2` is taken to answer one quoted parameter, `"<type> <capacity> <unit>"`, whose first word is the type.
//! - `I3` (the software version) is read for the record; a balance that refuses it with `ES` still identifies.
//! - `S I` is reported as `Busy` (the balance could not give a stable weight in time); a weight in any unit other
//!   than `g`, `mg` or `kg` is a garbled reply.
//! - The host unit codes of `M21` are taken as 0 g, 1 kg, 3 mg; the driver only ever sends `M21 0 0` (grams).

use bytes::{Buf, BytesMut};
use futures::future::BoxFuture;
use protocols::InstrumentKind;
use protocols::units::Mass;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::Decoder;

use super::{FrameError, error, garbled, not_acted};
use crate::capability::{Identity, Instrument, Weigh};
use crate::error::{DeviceError, DeviceErrorKind};
use crate::lab::BalanceConfig;
pub use crate::models::sics::MAX_LINES;
use crate::transport::Link;

/// The longest reply line accepted.
const MAX_LINE: usize = 256;

/// One MT-SICS reply line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SicsReply {
    /// The reply's ID (`S`, `Z`, `I4`, `ES`...).
    pub id: String,
    /// The status (`S`, `D`, `A`, `B`, `I`, `L`, `+`, `-`); empty for `ES`, `ET`, `EL`.
    pub status: String,
    /// The parameters, quoted ones without their quotes.
    pub params: Vec<String>,
}

impl SicsReply {
    /// The error the reply reports, if it is one.
    pub fn error(&self) -> Option<SicsError> {
        match (self.id.as_str(), self.status.as_str()) {
            ("ES", "") => Some(SicsError::Syntax),
            ("ET", "") => Some(SicsError::Transmission),
            ("EL", "") => Some(SicsError::Logical),
            (_, "I") => Some(SicsError::NotExecutable),
            (_, "L") => Some(SicsError::Parameter),
            (_, "+") => Some(SicsError::Overload),
            (_, "-") => Some(SicsError::Underload),
            _ => None,
        }
    }
}

/// An MT-SICS error reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SicsError {
    /// `ES`: the command was not recognised.
    Syntax,
    /// `ET`: a transmission error (parity, a break).
    Transmission,
    /// `EL`: the command cannot be executed.
    Logical,
    /// Status `I`: understood but not executable now (busy, or no stable reading in time).
    NotExecutable,
    /// Status `L`: a parameter is not allowed.
    Parameter,
    /// Status `+`: overload, above the weighing range (or above the zero range for `Z`).
    Overload,
    /// Status `-`: underload (the pan missing, or below the zero range).
    Underload,
}

impl SicsError {
    /// What the error means, in words.
    pub fn message(self) -> &'static str {
        match self {
            SicsError::Syntax => "syntax error: command not recognised (ES)",
            SicsError::Transmission => "transmission error (ET)",
            SicsError::Logical => "logical error: command cannot be executed (EL)",
            SicsError::NotExecutable => "not executable now: busy or no stable reading in time (I)",
            SicsError::Parameter => "parameter not allowed (L)",
            SicsError::Overload => "overload: above the weighing range (+)",
            SicsError::Underload => "underload: below the weighing range, is the pan in place? (-)",
        }
    }
}

/// Frames MT-SICS reply lines (ending LF, a CR before it dropped) and splits them into ID, status and parameters.
#[derive(Debug, Clone, Default)]
pub struct SicsDecoder;

impl Decoder for SicsDecoder {
    type Item = SicsReply;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<SicsReply>, FrameError> {
        let Some(end) = src.iter().position(|&b| b == b'\n') else {
            if src.len() > MAX_LINE {
                return Err(FrameError::Malformed(format!("no line end within {MAX_LINE} bytes")));
            }
            return Ok(None);
        };
        let line = src.split_to(end + 1);
        parse_line(&line[..end]).map(Some)
    }
}

/// One reply line without its LF (a CR before it is dropped), split into ID, status and parameters.
fn parse_line(line: &[u8]) -> Result<SicsReply, FrameError> {
    let text = line.strip_suffix(b"\r").unwrap_or(line);
    if let Some(b) = text.iter().find(|b| !(0x20..=0x7e).contains(*b)) {
        return Err(FrameError::Malformed(format!("the line holds the byte 0x{b:02X}")));
    }
    let text = String::from_utf8_lossy(text);
    let mut tokens = tokens(&text).into_iter();
    let Some(id) = tokens.next() else { return Err(FrameError::Malformed("an empty line".into())) };
    let status = tokens.next().unwrap_or_default();
    Ok(SicsReply { id, status, params: tokens.collect() })
}

/// Frames a multi-line reply (`I0`) as one: lines with status `B` up to the first line with another status (or an
/// error line), all yielded together once that last line has come, so the record keeps the whole reply as one
/// exchange. At most [`MAX_LINES`] lines.
#[derive(Debug, Clone, Default)]
pub struct SicsListDecoder;

impl Decoder for SicsListDecoder {
    type Item = Vec<SicsReply>;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Vec<SicsReply>>, FrameError> {
        let mut lines = Vec::new();
        let mut start = 0;
        while let Some(end) = src[start..].iter().position(|&b| b == b'\n').map(|e| start + e) {
            let reply = parse_line(&src[start..end])?;
            let last = reply.status != "B";
            lines.push(reply);
            start = end + 1;
            if last {
                src.advance(start);
                return Ok(Some(lines));
            }
            if lines.len() >= MAX_LINES {
                return Err(FrameError::Malformed(format!("more than {MAX_LINES} lines without a last one")));
            }
        }
        if src.len() - start > MAX_LINE {
            return Err(FrameError::Malformed(format!("no line end within {MAX_LINE} bytes")));
        }
        Ok(None)
    }
}

/// Splits a line on spaces, keeping `"quoted text"` as one token without its quotes.
fn tokens(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c == ' ' {
            chars.next();
        } else if c == '"' {
            chars.next();
            out.push(chars.by_ref().take_while(|&c| c != '"').collect());
        } else {
            let mut t = String::new();
            while let Some(&c) = chars.peek().filter(|&&c| c != ' ') {
                t.push(c);
                chars.next();
            }
            out.push(t);
        }
    }
    out
}

/// A weight and unit from a reply's parameters, in grams.
pub fn grams(params: &[String]) -> Option<f64> {
    let value: f64 = params.first()?.parse().ok()?;
    let scale = match params.get(1)?.as_str() {
        "g" => 1.0,
        "mg" => 1e-3,
        "kg" => 1e3,
        _ => return None,
    };
    // Checked after scaling: `1e308 kg` is a finite number of kilograms but not of grams.
    let grams = value * scale;
    (grams.is_finite() && params.len() == 2).then_some(grams)
}

/// A Mettler Toledo balance on a serial line.
pub struct MettlerBalance<T> {
    name: String,
    config: BalanceConfig,
    link: Link<T>,
    /// The commands the balance listed for `I0` at the last initialization.
    commands: Vec<String>,
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> MettlerBalance<T> {
    /// A driver for the balance `name` with the lab file's settings, talking over `link`.
    pub fn new(name: &str, config: BalanceConfig, link: Link<T>) -> Self {
        MettlerBalance { name: name.to_owned(), config, link, commands: Vec::new() }
    }

    /// The commands the balance listed for `I0` when it was last initialized.
    pub fn commands(&self) -> &[String] {
        &self.commands
    }

    /// Asks `I0` for the implemented commands: `I0 B` lines, then the last as `I0 A`, at most [`MAX_LINES`], read
    /// as one reply.
    async fn implemented(&mut self) -> Result<Vec<String>, DeviceError> {
        let lines = self.link.request(b"I0\r\n", &mut SicsListDecoder).await.map_err(not_acted)?;
        let mut commands = Vec::new();
        for (i, reply) in lines.iter().enumerate() {
            if let Some(e) = reply.error() {
                return Err(self.refused("I0", reply, e));
            }
            let last = i + 1 == lines.len();
            match (reply.id.as_str(), reply.status.as_str(), reply.params.as_slice()) {
                ("I0", "A" | "B", [level, command]) if level.parse::<u8>().is_ok() => commands.push(command.clone()),
                // Some balances end the list with a bare `I0 A` (a third-party parser's tests show one).
                ("I0", "A", []) if last => {}
                _ => return Err(self.garbled("I0", reply, "expected `I0 B|A <level> \"<command>\"`")),
            }
        }
        Ok(commands)
    }

    /// Sends `command` and returns its reply, waiting up to `extra` lab seconds beyond the line's timeout.
    async fn ask(&mut self, command: &str, extra: f64) -> Result<SicsReply, DeviceError> {
        let timeout = self.link.timeout() + self.link.clock().wall(extra);
        let bytes = format!("{command}\r\n");
        self.link.request_within(bytes.as_bytes(), &mut SicsDecoder, timeout).await.map_err(not_acted)
    }

    /// Sends `command` and returns its reply, which must carry one of `ok` as its status and no error.
    async fn expect(&mut self, command: &str, ok: &[&str], extra: f64) -> Result<SicsReply, DeviceError> {
        let reply = self.ask(command, extra).await?;
        if let Some(e) = reply.error() {
            return Err(self.refused(command, &reply, e));
        }
        if !ok.contains(&reply.status.as_str()) {
            return Err(self.garbled(command, &reply, &format!("expected status {}", ok.join(" or "))));
        }
        Ok(reply)
    }

    fn line(reply: &SicsReply) -> Vec<u8> {
        let mut parts = vec![reply.id.clone()];
        if !reply.status.is_empty() {
            parts.push(reply.status.clone());
        }
        parts.extend(reply.params.iter().cloned());
        format!("{}\r\n", parts.join(" ")).into_bytes()
    }

    fn refused(&self, command: &str, reply: &SicsReply, e: SicsError) -> DeviceError {
        let received = Self::line(reply);
        let kind = match e {
            SicsError::NotExecutable => {
                DeviceErrorKind::Busy { message: format!("`{command}`: {}", e.message()), received }
            }
            _ => DeviceErrorKind::Firmware { code: None, message: e.message().into(), received },
        };
        error(&self.name, kind, false)
    }

    fn garbled(&self, command: &str, reply: &SicsReply, why: &str) -> DeviceError {
        garbled(&self.name, format!("{command}\r\n").as_bytes(), &Self::line(reply), why, false)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Instrument for MettlerBalance<T> {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> InstrumentKind {
        InstrumentKind::Balance
    }

    fn identify(&mut self) -> BoxFuture<'_, Result<Identity, DeviceError>> {
        Box::pin(async move {
            let data = self.expect("I2", &["A"], 0.0).await?;
            let text = data.params.join(" ");
            let model = text.split_whitespace().next().unwrap_or_default().to_owned();
            if model != self.config.model {
                return Err(error(
                    &self.name,
                    DeviceErrorKind::WrongIdentity {
                        expected: format!("a Mettler Toledo `{}` balance", self.config.model),
                        found: text,
                    },
                    false,
                ));
            }
            let serial = self.expect("I4", &["A"], 0.0).await?.params.first().cloned();
            let firmware = match self.expect("I3", &["A"], 0.0).await {
                Ok(r) => r.params.first().cloned(),
                Err(e) if matches!(e.kind, DeviceErrorKind::Firmware { .. }) => None,
                Err(e) => return Err(e),
            };
            Ok(Identity { model, serial, firmware, raw: text })
        })
    }

    fn initialize(&mut self) -> BoxFuture<'_, Result<(), DeviceError>> {
        Box::pin(async move {
            let reset = self.ask("@", 0.0).await?;
            if reset.id != "I4" || reset.status != "A" {
                return Err(self.garbled("@", &reset, "expected the serial number, `I4 A`"));
            }
            self.commands = self.implemented().await?;
            if self.commands.iter().any(|c| c == "M21") {
                self.expect("M21 0 0", &["A"], 0.0).await?;
            }
            let settle = self.config.settle.0;
            self.expect("Z", &["A"], settle).await?;
            Ok(())
        })
    }

    fn safe_state(&mut self) -> BoxFuture<'_, Result<(), DeviceError>> {
        // A balance does nothing physical that could need stopping.
        Box::pin(async { Ok(()) })
    }

    fn set_tag(&mut self, tag: Option<u64>) {
        self.link.set_tag(tag);
    }

    fn as_weigh(&mut self) -> Option<&mut dyn Weigh> {
        Some(self)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Weigh for MettlerBalance<T> {
    fn weigh(&mut self) -> BoxFuture<'_, Result<Mass, DeviceError>> {
        Box::pin(async move {
            let settle = self.config.settle.0;
            let reply = self.expect("S", &["S"], settle).await?;
            if reply.id != "S" {
                return Err(self.garbled("S", &reply, "expected a weight, `S S`"));
            }
            let g =
                grams(&reply.params).ok_or_else(|| self.garbled("S", &reply, "expected a weight and g, mg or kg"))?;
            if g > self.config.capacity.0 {
                return Err(self.refused("S", &reply, SicsError::Overload));
            }
            Ok(Mass(g))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> Result<Option<SicsReply>, FrameError> {
        SicsDecoder.decode(&mut BytesMut::from(bytes))
    }

    #[test]
    fn replies_split_into_id_status_and_parameters() {
        let r = decode(b"S S     100.00 g\r\n").unwrap().unwrap();
        assert_eq!((r.id.as_str(), r.status.as_str()), ("S", "S"));
        assert_eq!(grams(&r.params), Some(100.0));
        let r = decode(b"I4 A \"1126493049\"\r\n").unwrap().unwrap();
        assert_eq!(r.params, vec!["1126493049"]);
        let r = decode(b"I2 A \"XS205 220.0000 g\"\r\n").unwrap().unwrap();
        assert_eq!(r.params, vec!["XS205 220.0000 g"]);
        assert_eq!(decode(b"ES\r\n").unwrap().unwrap().error(), Some(SicsError::Syntax));
        assert_eq!(decode(b"S +\r\n").unwrap().unwrap().error(), Some(SicsError::Overload));
        assert_eq!(decode(b"S I\r\n").unwrap().unwrap().error(), Some(SicsError::NotExecutable));
        assert_eq!(decode(b"S S   12.3").unwrap(), None, "a partial line waits");
        assert!(decode(b"S S \xFF1.0 g\r\n").is_err());
    }

    #[test]
    fn units_convert_to_grams() {
        let p = |v: &str, u: &str| vec![v.to_owned(), u.to_owned()];
        assert_eq!(grams(&p("1500", "mg")), Some(1.5));
        assert_eq!(grams(&p("0.25", "kg")), Some(250.0));
        assert_eq!(grams(&p("1", "lb")), None);
        assert_eq!(grams(&p("x", "g")), None);
    }
}
