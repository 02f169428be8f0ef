//! The one transport layer: opening serial ports, and every byte to and from an instrument.
//!
//! Drivers never open ports and never touch a stream directly. [`open_serial`] is the only place in the workspace
//! that opens a serial port (real hardware and simulators on pseudo-terminals alike go through it), and a
//! [`Link`] is the only thing a driver reads and writes through. A link frames replies with the driver's
//! [`Decoder`], enforces a wall-clock timeout on every reply, and reports every exchange (bytes sent, bytes
//! received, the parsed reply or the error, with lab times) to an [`ExchangeSink`], so the record holds the exact
//! bytes of every command an instrument ever received.

use std::fmt::{Debug, Display};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_serial::SerialPortBuilderExt;
use tokio_util::codec::Decoder;

use crate::clock::Clock;
use crate::error::{DeviceError, DeviceErrorKind};

/// Parity of a serial line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Parity {
    /// No parity bit.
    None,
    /// Even parity.
    Even,
    /// Odd parity.
    Odd,
}

/// Serial line settings. Each driver has defaults; the lab file may override any of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineSettings {
    /// Bits per second.
    pub baud: u32,
    /// Data bits per character: 7 or 8.
    pub data_bits: u8,
    /// Parity.
    pub parity: Parity,
    /// Stop bits: 1 or 2.
    pub stop_bits: u8,
    /// How long to wait for a reply before the instrument counts as not answering.
    pub timeout: Duration,
}

impl LineSettings {
    /// 9600 baud, 8 data bits, no parity, 1 stop bit, 1 s reply timeout.
    pub const fn n81(baud: u32) -> Self {
        LineSettings { baud, data_bits: 8, parity: Parity::None, stop_bits: 1, timeout: Duration::from_secs(1) }
    }
}

impl Display for LineSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = match self.parity {
            Parity::None => 'N',
            Parity::Even => 'E',
            Parity::Odd => 'O',
        };
        write!(f, "{} {}{}{}", self.baud, self.data_bits, p, self.stop_bits)
    }
}

/// The async serial stream type instruments are driven over.
pub type SerialStream = tokio_serial::SerialStream;

/// Opens a serial port (a real device or a simulator's pseudo-terminal) with the given settings.
///
/// This is the only function in the workspace that opens a port. It must be called inside a tokio runtime.
pub fn open_serial(instrument: &str, path: &str, settings: &LineSettings) -> Result<SerialStream, DeviceError> {
    let data_bits = match settings.data_bits {
        7 => tokio_serial::DataBits::Seven,
        _ => tokio_serial::DataBits::Eight,
    };
    let parity = match settings.parity {
        Parity::None => tokio_serial::Parity::None,
        Parity::Even => tokio_serial::Parity::Even,
        Parity::Odd => tokio_serial::Parity::Odd,
    };
    let stop_bits = match settings.stop_bits {
        2 => tokio_serial::StopBits::Two,
        _ => tokio_serial::StopBits::One,
    };
    tokio_serial::new(path, settings.baud)
        .data_bits(data_bits)
        .parity(parity)
        .stop_bits(stop_bits)
        .flow_control(tokio_serial::FlowControl::None)
        .timeout(settings.timeout)
        .open_native_async()
        .map_err(|e| {
            DeviceError::before_acting(
                instrument,
                DeviceErrorKind::Open { port: path.to_owned(), message: e.description },
            )
        })
}

/// A serial port present on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    /// The device path.
    pub path: String,
    /// What kind of port it is (USB with vendor and product, PCI, Bluetooth, unknown).
    pub description: String,
}

/// Lists the machine's serial ports. Pseudo-terminals (and so simulators) are not listed.
pub fn list_ports() -> Result<Vec<PortInfo>, std::io::Error> {
    let ports = tokio_serial::available_ports().map_err(std::io::Error::other)?;
    Ok(ports
        .into_iter()
        .map(|p| PortInfo {
            path: p.port_name,
            description: match p.port_type {
                tokio_serial::SerialPortType::UsbPort(u) => format!(
                    "USB {:04x}:{:04x} {} {}",
                    u.vid,
                    u.pid,
                    u.manufacturer.unwrap_or_default(),
                    u.product.unwrap_or_default()
                )
                .trim_end()
                .to_owned(),
                tokio_serial::SerialPortType::PciPort => "PCI".to_owned(),
                tokio_serial::SerialPortType::BluetoothPort => "Bluetooth".to_owned(),
                tokio_serial::SerialPortType::Unknown => "unknown".to_owned(),
            },
        })
        .collect())
}

/// One command and its reply, as they crossed the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct Exchange {
    /// The instrument's name.
    pub instrument: Arc<str>,
    /// An opaque tag set by whoever drives the instrument (the controller uses its step id).
    pub tag: Option<u64>,
    /// Lab time when the command was written.
    pub sent_at: f64,
    /// The command's bytes, exactly as written.
    pub sent: Vec<u8>,
    /// Lab time when the reply was complete (or the wait ended).
    pub replied_at: Option<f64>,
    /// The reply's bytes, exactly as read; empty for commands that have no reply.
    pub received: Vec<u8>,
    /// The reply as the driver understood it.
    pub parsed: Option<String>,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

/// Where exchanges go. The controller sends them to the record; tests collect them.
pub type ExchangeSink = Arc<dyn Fn(Exchange) + Send + Sync>;

/// A sink that drops everything.
pub fn discard() -> ExchangeSink {
    Arc::new(|_| {})
}

/// An instrument's serial line as drivers see it: framed requests with timeouts, every exchange reported.
pub struct Link<T> {
    io: T,
    buf: BytesMut,
    instrument: Arc<str>,
    clock: Clock,
    sink: ExchangeSink,
    tag: Option<u64>,
    timeout: Duration,
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Link<T> {
    /// Wraps a stream for `instrument`, with a default reply timeout.
    pub fn new(io: T, instrument: &str, clock: Clock, sink: ExchangeSink, timeout: Duration) -> Self {
        Link { io, buf: BytesMut::with_capacity(256), instrument: instrument.into(), clock, sink, tag: None, timeout }
    }

    /// The instrument's name.
    pub fn instrument(&self) -> &str {
        &self.instrument
    }

    /// The lab clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The default reply timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sets the tag recorded with the following exchanges.
    pub fn set_tag(&mut self, tag: Option<u64>) {
        self.tag = tag;
    }

    /// Sends `command` and waits for one reply framed by `decoder`, within the default timeout.
    pub async fn request<D>(&mut self, command: &[u8], decoder: &mut D) -> Result<D::Item, DeviceError>
    where
        D: Decoder,
        D::Item: Debug,
        D::Error: Display + From<std::io::Error>,
    {
        let timeout = self.timeout;
        self.request_within(command, decoder, timeout).await
    }

    /// Sends `command` and waits up to `timeout` for one reply framed by `decoder`.
    pub async fn request_within<D>(
        &mut self,
        command: &[u8],
        decoder: &mut D,
        timeout: Duration,
    ) -> Result<D::Item, DeviceError>
    where
        D: Decoder,
        D::Item: Debug,
        D::Error: Display + From<std::io::Error>,
    {
        self.discard_stale();
        let sent_at = self.clock.now();
        if let Err(e) = self.write(command).await {
            self.report(sent_at, command, None, &[], None, Some(e.to_string()));
            return Err(e);
        }
        let result = self.read_frame(command, decoder, timeout).await;
        let replied_at = Some(self.clock.now());
        match result {
            Ok((item, raw)) => {
                self.report(sent_at, command, replied_at, &raw, Some(format!("{item:?}")), None);
                Ok(item)
            }
            Err((e, raw)) => {
                self.report(sent_at, command, replied_at, &raw, None, Some(e.kind.to_string()));
                Err(e)
            }
        }
    }

    /// Sends `command`, which the instrument does not answer.
    pub async fn send(&mut self, command: &[u8]) -> Result<(), DeviceError> {
        self.discard_stale();
        let sent_at = self.clock.now();
        let r = self.write(command).await;
        self.report(sent_at, command, None, &[], None, r.as_ref().err().map(ToString::to_string));
        r
    }

    /// Waits up to `timeout` for an unrequested frame (a second reply line, a stream), reported as an exchange with
    /// nothing sent.
    pub async fn receive<D>(&mut self, decoder: &mut D, timeout: Duration) -> Result<D::Item, DeviceError>
    where
        D: Decoder,
        D::Item: Debug,
        D::Error: Display + From<std::io::Error>,
    {
        let at = self.clock.now();
        match self.read_frame(&[], decoder, timeout).await {
            Ok((item, raw)) => {
                self.report(at, &[], Some(self.clock.now()), &raw, Some(format!("{item:?}")), None);
                Ok(item)
            }
            Err((e, raw)) => {
                self.report(at, &[], Some(self.clock.now()), &raw, None, Some(e.kind.to_string()));
                Err(e)
            }
        }
    }

    /// Reads and discards whatever the instrument sent unasked; logged so nothing on the wire goes unrecorded.
    fn discard_stale(&mut self) {
        if !self.buf.is_empty() {
            let stale = self.buf.split().to_vec();
            let now = self.clock.now();
            self.report(now, &[], Some(now), &stale, None, Some("unsolicited bytes discarded".to_owned()));
        }
    }

    async fn write(&mut self, command: &[u8]) -> Result<(), DeviceError> {
        let r = async {
            self.io.write_all(command).await?;
            self.io.flush().await
        }
        .await;
        r.map_err(|e| self.io_error(e, false))
    }

    fn io_error(&self, e: std::io::Error, acted: bool) -> DeviceError {
        // A closed pseudo-terminal shows as EIO, a pulled USB adapter as EIO or EOF: both mean the port is gone.
        let kind = if e.raw_os_error() == Some(5)
            || matches!(e.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::UnexpectedEof)
        {
            DeviceErrorKind::Disconnected
        } else {
            DeviceErrorKind::Io(e)
        };
        DeviceError { instrument: self.instrument.to_string(), kind, may_have_acted: acted }
    }

    async fn read_frame<D>(
        &mut self,
        sent: &[u8],
        decoder: &mut D,
        timeout: Duration,
    ) -> Result<(D::Item, Vec<u8>), (DeviceError, Vec<u8>)>
    where
        D: Decoder,
        D::Error: Display + From<std::io::Error>,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if !self.buf.is_empty() {
                let before = self.buf.to_vec();
                match decoder.decode(&mut self.buf) {
                    Ok(Some(item)) => {
                        let used = before.len() - self.buf.len();
                        return Ok((item, before[..used].to_vec()));
                    }
                    Ok(None) => {}
                    Err(e) => {
                        let received = before;
                        self.buf.clear();
                        let kind = DeviceErrorKind::Garbled {
                            sent: sent.to_vec(),
                            received: received.clone(),
                            reason: e.to_string(),
                        };
                        return Err((DeviceError::after_acting(&*self.instrument, kind), received));
                    }
                }
            }
            let read = tokio::time::timeout_at(deadline, self.io.read_buf(&mut self.buf)).await;
            match read {
                Err(_) => {
                    let received = self.buf.split().to_vec();
                    let kind = DeviceErrorKind::Timeout { sent: sent.to_vec(), received: received.clone(), timeout };
                    return Err((DeviceError::after_acting(&*self.instrument, kind), received));
                }
                Ok(Ok(0)) => {
                    let received = self.buf.split().to_vec();
                    return Err((
                        DeviceError::after_acting(&*self.instrument, DeviceErrorKind::Disconnected),
                        received,
                    ));
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    let received = self.buf.split().to_vec();
                    return Err((self.io_error(e, true), received));
                }
            }
        }
    }

    fn report(
        &self,
        sent_at: f64,
        sent: &[u8],
        replied_at: Option<f64>,
        received: &[u8],
        parsed: Option<String>,
        error: Option<String>,
    ) {
        (self.sink)(Exchange {
            instrument: Arc::clone(&self.instrument),
            tag: self.tag,
            sent_at,
            sent: sent.to_vec(),
            replied_at,
            received: received.to_vec(),
            parsed,
            error,
        });
    }
}

/// A decoder for replies terminated by a fixed byte sequence (`\r\n`, `\x03\r\n`); yields the reply without it.
#[derive(Debug, Clone)]
pub struct Terminated {
    terminator: &'static [u8],
    max_len: usize,
}

impl Terminated {
    /// Replies end with `terminator` and are at most `max_len` bytes long.
    pub const fn new(terminator: &'static [u8], max_len: usize) -> Self {
        Terminated { terminator, max_len }
    }
}

impl Decoder for Terminated {
    type Item = Vec<u8>;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Vec<u8>>, std::io::Error> {
        if let Some(i) = src.windows(self.terminator.len()).position(|w| w == self.terminator) {
            let frame = src.split_to(i + self.terminator.len());
            return Ok(Some(frame[..i].to_vec()));
        }
        if src.len() > self.max_len {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("no terminator within {} bytes", self.max_len),
            ));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn collector() -> (ExchangeSink, Arc<Mutex<Vec<Exchange>>>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = Arc::clone(&log);
        (Arc::new(move |e| l.lock().unwrap().push(e)), log)
    }

    #[tokio::test]
    async fn a_request_logs_both_directions_and_frames_split_replies() {
        let mock = tokio_test::io::Builder::new().write(b"IN_PV_2\r\n").read(b"25.").read(b"3 2\r\n").build();
        let (sink, log) = collector();
        let mut link = Link::new(mock, "hp", Clock::manual(), sink, Duration::from_millis(200));
        link.set_tag(Some(7));
        let reply = link.request(b"IN_PV_2\r\n", &mut Terminated::new(b"\r\n", 80)).await.unwrap();
        assert_eq!(reply, b"25.3 2");
        let log = log.lock().unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].sent, b"IN_PV_2\r\n");
        assert_eq!(log[0].received, b"25.3 2\r\n");
        assert_eq!(log[0].tag, Some(7));
        assert!(log[0].error.is_none());
    }

    #[tokio::test]
    async fn a_silent_instrument_times_out_with_the_command_in_the_error() {
        let (client, _server) = tokio::io::duplex(64);
        let (sink, log) = collector();
        let mut link = Link::new(client, "hp", Clock::manual(), sink, Duration::from_millis(30));
        let err = link.request(b"FOO_1\r\n", &mut Terminated::new(b"\r\n", 80)).await.unwrap_err();
        assert!(matches!(err.kind, DeviceErrorKind::Timeout { .. }), "{err}");
        assert_eq!(err.to_string(), "hp: no reply to \"FOO_1\\r\\n\" within 30 ms");
        assert_eq!(log.lock().unwrap()[0].error.as_deref(), Some("no reply to \"FOO_1\\r\\n\" within 30 ms"));
    }

    #[tokio::test]
    async fn a_closed_port_is_a_disconnect() {
        let (client, server) = tokio::io::duplex(64);
        drop(server);
        let mut link = Link::new(client, "hp", Clock::manual(), discard(), Duration::from_millis(30));
        let err = link.request(b"IN_NAME\r\n", &mut Terminated::new(b"\r\n", 80)).await.unwrap_err();
        assert!(matches!(err.kind, DeviceErrorKind::Disconnected | DeviceErrorKind::Io(_)), "{err:?}");
    }

    #[tokio::test]
    async fn an_overlong_reply_is_garbled() {
        let mock = tokio_test::io::Builder::new().write(b"X\r\n").read(&[b'a'; 100]).build();
        let mut link = Link::new(mock, "hp", Clock::manual(), discard(), Duration::from_millis(200));
        let err = link.request(b"X\r\n", &mut Terminated::new(b"\r\n", 80)).await.unwrap_err();
        assert!(matches!(err.kind, DeviceErrorKind::Garbled { .. }), "{err:?}");
    }
}
