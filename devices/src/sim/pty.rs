//! Pseudo-terminals for simulators, and the one path every simulated byte takes.
//!
//! Each simulator owns the master side of a pseudo-terminal pair; the controller opens the slave by its path
//! (`/dev/pts/N`) through [`crate::transport::open_serial`], as it would a USB adapter. The slave half that
//! [`open`] returns must be kept open for as long as the simulator runs: while no process holds a slave, reads on
//! the master fail with EIO, so without it the simulator would see its port vanish whenever the controller closes
//! and reopens it.
//!
//! A simulator reads through [`Wire::fill`] and answers through [`Wire::reply`]. `reply` is the seam for fault
//! injection (latency, silence, garbled bytes, disconnects): every answer of every simulator passes through it.

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_serial::SerialPort;

use crate::error::{DeviceError, DeviceErrorKind};
use crate::transport::SerialStream;

/// Input a simulator has not framed yet is dropped beyond this many bytes, as a real instrument's receive buffer
/// overflows.
pub const MAX_INPUT: usize = 4096;

/// A new pseudo-terminal pair for `instrument`.
pub struct Pty {
    /// The simulator's side.
    pub master: SerialStream,
    /// The instrument side, held open by the simulator's owner (see the module doc).
    pub slave: SerialStream,
    /// The slave's path, which the controller opens.
    pub path: String,
}

/// Opens a pseudo-terminal pair for `instrument`.
pub fn open(instrument: &str) -> Result<Pty, DeviceError> {
    let failed = |message: String| {
        DeviceError::before_acting(instrument, DeviceErrorKind::Open { port: "a new pseudo-terminal".into(), message })
    };
    let (master, slave) = SerialStream::pair().map_err(|e| failed(e.description))?;
    let path = slave.name().ok_or_else(|| failed("the pseudo-terminal has no slave path".into()))?;
    Ok(Pty { master, slave, path })
}

/// A simulator's end of its serial line: the bytes received and not yet framed, and the way out for replies.
pub struct Wire {
    port: SerialStream,
    /// Received bytes not yet taken as commands.
    pub input: BytesMut,
}

impl Wire {
    /// Wraps the master side of a pseudo-terminal.
    pub fn new(master: SerialStream) -> Self {
        Wire { port: master, input: BytesMut::with_capacity(256) }
    }

    /// Waits for more bytes and appends them to [`Wire::input`]; false once the line is gone.
    pub async fn fill(&mut self) -> bool {
        if self.input.len() > MAX_INPUT {
            self.input.clear();
        }
        matches!(self.port.read_buf(&mut self.input).await, Ok(n) if n > 0)
    }

    /// Sends a reply. Every byte a simulator sends goes through here; false once the line is gone.
    pub async fn reply(&mut self, bytes: &[u8]) -> bool {
        self.port.write_all(bytes).await.is_ok() && self.port.flush().await.is_ok()
    }
}
