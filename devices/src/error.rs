//! Errors from instruments and their transports.
//!
//! Every error names the instrument and says what went wrong at the level a technician can act on: the port did
//! not open, the instrument did not answer, it answered with bytes that do not parse (and which bytes), or it
//! reported a firmware error (and which). Each error also says whether the instrument may already have acted
//! physically, because a step that may have dispensed must never be retried blindly.

use std::fmt;
use std::time::Duration;

/// An error from one instrument.
#[derive(Debug, thiserror::Error)]
#[error("{instrument}: {kind}")]
pub struct DeviceError {
    /// The instrument's name in the lab file.
    pub instrument: String,
    /// What went wrong.
    #[source]
    pub kind: DeviceErrorKind,
    /// Whether the instrument may have acted physically before the error (a command was sent and may have run).
    pub may_have_acted: bool,
}

impl DeviceError {
    /// An error for `instrument` that happened before anything was sent.
    pub fn before_acting(instrument: impl Into<String>, kind: DeviceErrorKind) -> Self {
        DeviceError { instrument: instrument.into(), kind, may_have_acted: false }
    }

    /// An error for `instrument` after a command that may have acted was sent.
    pub fn after_acting(instrument: impl Into<String>, kind: DeviceErrorKind) -> Self {
        DeviceError { instrument: instrument.into(), kind, may_have_acted: true }
    }

    /// Marks the error as possibly after a physical action.
    pub fn acted(mut self, may_have_acted: bool) -> Self {
        self.may_have_acted |= may_have_acted;
        self
    }
    /// Whether the instrument's answer went missing on the wire (no reply, a garbled one, or a port that closed and
    /// reopened mid-command), as opposed to an answer that refused or reported a fault.
    pub fn reply_was_lost(&self) -> bool {
        matches!(
            self.kind,
            DeviceErrorKind::Timeout { .. } | DeviceErrorKind::Garbled { .. } | DeviceErrorKind::Reconnected { .. }
        )
    }

    /// Whether the instrument refused the command as busy and ran none of it (a pump still moving answers so), which
    /// makes asking again later as safe as not having asked.
    pub fn refused_as_busy(&self) -> bool {
        matches!(self.kind, DeviceErrorKind::Busy { .. }) && !self.may_have_acted
    }
}

/// The kinds of instrument error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceErrorKind {
    /// The serial port could not be opened (absent, busy, or no permission).
    #[error("cannot open serial port `{port}`: {message}")]
    Open {
        /// The port path.
        port: String,
        /// What the operating system said.
        message: String,
    },
    /// Reading or writing the port failed.
    #[error("serial I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// The port closed (USB unplugged, simulator gone) and could not be opened again.
    #[error("the port closed")]
    Disconnected,
    /// The port closed while a command was under way and was opened again; whether the command ran is unknown.
    #[error(
        "the port closed during the command and was reopened after {attempts} attempt(s); the command's outcome is unknown"
    )]
    Reconnected {
        /// How many attempts reopening took.
        attempts: u32,
    },
    /// No complete reply arrived in time.
    #[error("no reply to {} within {} ms{}", Printable(sent), timeout.as_millis(), partial_note(received))]
    Timeout {
        /// The bytes of the command that went unanswered.
        sent: Vec<u8>,
        /// Bytes that did arrive, not forming a complete reply.
        received: Vec<u8>,
        /// How long the driver waited.
        timeout: Duration,
    },
    /// A reply arrived but does not parse.
    #[error("reply {} to {} does not parse: {reason}", Printable(received), Printable(sent))]
    Garbled {
        /// The command.
        sent: Vec<u8>,
        /// The reply as received.
        received: Vec<u8>,
        /// Why it does not parse.
        reason: String,
    },
    /// A reply arrived whose checksum (an XOR byte, a CRC) does not match its contents.
    #[error("reply {} to {} has a bad checksum: {reason}", Printable(received), Printable(sent))]
    Checksum {
        /// The command.
        sent: Vec<u8>,
        /// The reply as received.
        received: Vec<u8>,
        /// The checksum expected and the one found.
        reason: String,
    },
    /// The instrument reported an error of its own.
    #[error("instrument error{}: {message}", code.map(|c| format!(" {c}")).unwrap_or_default())]
    Firmware {
        /// The instrument's error code, if it has one.
        code: Option<i64>,
        /// What the code means.
        message: String,
        /// The reply that carried the error.
        received: Vec<u8>,
    },
    /// The instrument is busy and cannot take the command now.
    #[error("instrument busy: {message}{}", reply_note(received))]
    Busy {
        /// What the instrument was busy with, or how it said so.
        message: String,
        /// The reply that said so; empty when the driver concluded it from waiting.
        received: Vec<u8>,
    },
    /// The instrument does not know the command: it said so, or (for instruments that ignore what they do not
    /// know) it stayed silent.
    #[error("does not know the command {}{}", Printable(sent), unknown_note(received))]
    UnknownCommand {
        /// The command.
        sent: Vec<u8>,
        /// What the instrument answered; empty if it stayed silent.
        received: Vec<u8>,
    },
    /// The request is outside the instrument's limits and was not sent.
    #[error("outside the instrument's limits: {0}")]
    Limit(String),
    /// The instrument cannot do what was asked.
    #[error("this instrument cannot {0}")]
    Unsupported(String),
    /// The instrument identified itself as something other than the lab file says.
    #[error("identifies as `{found}`, but the lab file says it is {expected}")]
    WrongIdentity {
        /// What the lab file says.
        expected: String,
        /// What the instrument said.
        found: String,
    },
    /// A physical outcome that contradicts what was commanded (a vessel missing from where it should stand).
    #[error("{0}")]
    Physical(String),
    /// The instrument is not ready for the request (no reference spectrum yet, axes not homed); initializing it
    /// makes it ready.
    #[error("not ready: {0}")]
    NotReady(String),
}

fn reply_note(received: &[u8]) -> String {
    if received.is_empty() { String::new() } else { format!(" (reply {})", Printable(received)) }
}

fn unknown_note(received: &[u8]) -> String {
    if received.is_empty() {
        " (it stayed silent)".to_owned()
    } else {
        format!(" (it answered {})", Printable(received))
    }
}

fn partial_note(received: &[u8]) -> String {
    if received.is_empty() { String::new() } else { format!(" (got only {})", Printable(received)) }
}

/// Shows bytes as a quoted string with control bytes escaped: `"/0`\x03\r\n"`.
pub struct Printable<'a>(pub &'a [u8]);

impl fmt::Display for Printable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        let shown = &self.0[..self.0.len().min(96)];
        // Runs of plain characters are written whole: this runs for every exchange the record keeps.
        let plain = |b: u8| (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\';
        let mut rest = shown;
        while !rest.is_empty() {
            let run = rest.iter().position(|&b| !plain(b)).unwrap_or(rest.len());
            if run > 0 {
                // Printable ASCII is valid UTF-8.
                f.write_str(std::str::from_utf8(&rest[..run]).unwrap_or_default())?;
                rest = &rest[run..];
                continue;
            }
            match rest[0] {
                b'\r' => f.write_str("\\r")?,
                b'\n' => f.write_str("\\n")?,
                b'"' => f.write_str("\\\"")?,
                b'\\' => f.write_str("\\\\")?,
                b => write!(f, "\\x{b:02X}")?,
            }
            rest = &rest[1..];
        }
        if self.0.len() > 96 {
            write!(f, "...({} bytes)", self.0.len())?;
        }
        f.write_str("\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_show_bytes_readably() {
        let e = DeviceError::after_acting(
            "pump_a",
            DeviceErrorKind::Timeout {
                sent: b"/1ZR\r".to_vec(),
                received: b"/0".to_vec(),
                timeout: Duration::from_millis(500),
            },
        );
        assert_eq!(e.to_string(), "pump_a: no reply to \"/1ZR\\r\" within 500 ms (got only \"/0\")");
        assert_eq!(Printable(b"/0`\x03\r\n").to_string(), "\"/0`\\x03\\r\\n\"");
    }
}
