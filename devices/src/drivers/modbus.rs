//! A temperature controller on Modbus RTU (a heating block or jacket controller), through `tokio-modbus`.
//!
//! `tokio-modbus` builds the requests, checks the replies' headers and decodes values and exception codes. It
//! owns its stream, so each call gets an in-memory pipe: the driver reads the request the client wrote into it,
//! sends those bytes through the instrument's [`Link`] (which frames the reply with [`RtuDecoder`]: the length the
//! function code implies, then the CRC-16/MODBUS), and writes the reply back into the pipe for the client to
//! decode. Every byte thus crosses the one transport layer and is recorded, a reply with a bad CRC is a typed
//! `Checksum` error with its bytes, and every call is bounded twice: by the link's reply timeout, and by a
//! `tokio::time::timeout` around the client call itself, which has none of its own.
//!
//! Exception replies become named [`ModbusException`]s: 6 (server busy) is `Busy`, the others `Firmware` errors
//! with their code.
//!
//! Choices where the notes leave the hardware unverified [U]: controllers differ in their register maps, and
//! this driver assumes a common layout of holding registers: [`PROCESS_VALUE`] and [`SET_POINT`] in tenths of a
//! degree Celsius as signed 16-bit values, [`RUN`] (1 heats, 0 stops), and an identity block of [`MODEL`] (a
//! model code the lab file states) and [`FIRMWARE`] (the version times 100). The line defaults to 19200 baud, 8
//! data bits, even parity, 1 stop bit, the Modbus serial line specification's default. A hold is: set point,
//! read it back, run, poll the process value every [`POLL`] lab seconds until it is within the tolerance, hold,
//! stop; the safe state writes `RUN = 0`.
//!
//! Reading back ([`ReadBack`]): one read of the process value, the set point and `RUN`, which says outright
//! whether the controller heats. The controller has no watchdog, so one whose controller is gone holds on until
//! someone stops it. [`recorded_temperatures`] reads the process values a hold recorded.

use bytes::BytesMut;
use futures::future::BoxFuture;
use protocols::InstrumentKind;
use protocols::units::{Duration, Temperature};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio_modbus::client::{Reader, Writer};
use tokio_modbus::prelude::{ExceptionCode, Slave, rtu};
use tokio_util::codec::Decoder;

use super::{Deadline, FrameError, error, garbled, pause, with_acted};
use crate::capability::{HoldTemperature, Identity, Instrument, Outcome, Stop};
use crate::error::{DeviceError, DeviceErrorKind};
use crate::lab::ModbusConfig;
use crate::readback::{HeaterState, Heating, Observed, ReadBack, RecordedExchange, RecordedReading};
use crate::transport::Link;

/// Holding register: the process value, tenths of a degree Celsius.
pub const PROCESS_VALUE: u16 = 0x0000;
/// Holding register: the set point, tenths of a degree Celsius.
pub const SET_POINT: u16 = 0x0001;
/// Holding register: 1 while the controller heats, 0 when it is off.
pub const RUN: u16 = 0x0002;
/// Holding register: the model code.
pub const MODEL: u16 = 0x0100;
/// Holding register: the firmware version times 100.
pub const FIRMWARE: u16 = 0x0101;

/// Lab seconds between two readings while ramping or holding.
pub const POLL: f64 = 10.0;

/// Lab seconds a ramp may take: this much, plus [`RAMP_PER_DEGREE`] per degree to go.
const RAMP_BASE: f64 = 1800.0;

/// Lab seconds of ramp allowed per degree between the process value and the set point.
const RAMP_PER_DEGREE: f64 = 60.0;

/// The longest RTU frame.
const MAX_FRAME: usize = 256;

/// CRC-16/MODBUS of `bytes` (initial 0xFFFF, reflected polynomial 0xA001); sent low byte first.
pub fn crc16(bytes: &[u8]) -> u16 {
    let mut crc = 0xFFFF_u16;
    for &b in bytes {
        crc ^= u16::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xA001 } else { crc >> 1 };
        }
    }
    crc
}

/// A Modbus exception code from a controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModbusException {
    /// 1: the function code is not supported.
    IllegalFunction,
    /// 2: the register address is not in the controller's map.
    IllegalDataAddress,
    /// 3: the value is outside what the controller accepts.
    IllegalDataValue,
    /// 4: the controller failed while executing.
    ServerDeviceFailure,
    /// 5: accepted, but it takes long.
    Acknowledge,
    /// 6: busy with an earlier command.
    ServerDeviceBusy,
    /// 8: memory parity error.
    MemoryParityError,
    /// 10: gateway path unavailable.
    GatewayPathUnavailable,
    /// 11: the gateway's target did not respond.
    GatewayTargetDevice,
    /// Any other code.
    Other(u8),
}

impl ModbusException {
    /// The exception for a code.
    pub fn from_code(code: u8) -> Self {
        match code {
            1 => ModbusException::IllegalFunction,
            2 => ModbusException::IllegalDataAddress,
            3 => ModbusException::IllegalDataValue,
            4 => ModbusException::ServerDeviceFailure,
            5 => ModbusException::Acknowledge,
            6 => ModbusException::ServerDeviceBusy,
            8 => ModbusException::MemoryParityError,
            10 => ModbusException::GatewayPathUnavailable,
            11 => ModbusException::GatewayTargetDevice,
            c => ModbusException::Other(c),
        }
    }

    /// What the code means, in words.
    pub fn message(self) -> &'static str {
        match self {
            ModbusException::IllegalFunction => "illegal function",
            ModbusException::IllegalDataAddress => "illegal data address",
            ModbusException::IllegalDataValue => "illegal data value",
            ModbusException::ServerDeviceFailure => "server device failure",
            ModbusException::Acknowledge => "acknowledge: the command takes long",
            ModbusException::ServerDeviceBusy => "server device busy",
            ModbusException::MemoryParityError => "memory parity error",
            ModbusException::GatewayPathUnavailable => "gateway path unavailable",
            ModbusException::GatewayTargetDevice => "gateway target device failed to respond",
            ModbusException::Other(_) => "undocumented exception",
        }
    }
}

/// Frames one RTU reply to a request of function `function` from slave `address`: a normal reply of the length
/// the function implies, or a 5-byte exception, checked by its CRC.
#[derive(Debug, Clone)]
pub struct RtuDecoder {
    address: u8,
    function: u8,
}

impl RtuDecoder {
    /// A decoder for the reply to `request` (a whole request frame).
    pub fn for_request(request: &[u8]) -> Self {
        RtuDecoder { address: request.first().copied().unwrap_or(0), function: request.get(1).copied().unwrap_or(0) }
    }
}

impl Decoder for RtuDecoder {
    type Item = Vec<u8>;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Vec<u8>>, FrameError> {
        if src.len() < 2 {
            return Ok(None);
        }
        if src[0] != self.address {
            return Err(FrameError::Malformed(format!("reply from slave {}, not {}", src[0], self.address)));
        }
        let len = match src[1] {
            f if f == self.function | 0x80 => 5,
            f if f != self.function => {
                return Err(FrameError::Malformed(format!(
                    "function 0x{f:02X} in the reply to 0x{:02X}",
                    self.function
                )));
            }
            1..=4 => match src.get(2) {
                Some(&n) => 5 + usize::from(n),
                None => return Ok(None),
            },
            _ => 8,
        };
        if len > MAX_FRAME {
            return Err(FrameError::Malformed(format!("a {len}-byte frame is longer than Modbus allows")));
        }
        if src.len() < len {
            return Ok(None);
        }
        let frame = src.split_to(len).to_vec();
        let (body, crc) = frame.split_at(len - 2);
        let (want, found) = (crc16(body), u16::from_le_bytes([crc[0], crc[1]]));
        if want != found {
            return Err(FrameError::Checksum(format!("CRC 0x{found:04X}, expected 0x{want:04X}")));
        }
        Ok(Some(frame))
    }
}

/// The length of the request frame `tokio-modbus` writes for function `function`, from its first bytes.
fn request_len(head: &[u8]) -> Option<usize> {
    match head.get(1)? {
        1..=6 => Some(8),
        15 | 16 => head.get(6).map(|&n| 9 + usize::from(n)),
        _ => None,
    }
}

/// What a bridged call returned.
enum Called<R> {
    Value(R),
    Exception(ExceptionCode, Vec<u8>),
}

/// A Modbus RTU temperature controller on a serial line.
pub struct ModbusTemperature<T> {
    name: String,
    config: ModbusConfig,
    link: Link<T>,
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> ModbusTemperature<T> {
    /// A driver for the controller `name` with the lab file's settings, talking over `link`.
    pub fn new(name: &str, config: ModbusConfig, link: Link<T>) -> Self {
        ModbusTemperature { name: name.to_owned(), config, link }
    }

    /// Carries one request from the client's pipe over the link and its reply back; returns the reply's bytes.
    async fn carry(&mut self, pipe: &mut DuplexStream) -> Result<Vec<u8>, DeviceError> {
        let mut request = Vec::with_capacity(16);
        let mut chunk = [0u8; MAX_FRAME];
        let len = loop {
            if let Some(len) = request_len(&request)
                && request.len() >= len
            {
                break len;
            }
            let n = pipe.read(&mut chunk).await.unwrap_or(0);
            if n == 0 || request.len() > MAX_FRAME {
                return Err(garbled(&self.name, &request, &[], "the Modbus client wrote no whole request", false));
            }
            request.extend_from_slice(&chunk[..n]);
        };
        request.truncate(len);
        let reply = self.link.request(&request, &mut RtuDecoder::for_request(&request)).await?;
        // The pipe only fails if the client is gone, and then its result is discarded anyway.
        let _ = pipe.write_all(&reply).await;
        Ok(reply)
    }

    /// Runs one `tokio-modbus` call against the link. `acted` marks errors after a write that may have acted.
    async fn call<R, F, Fut>(&mut self, acted: bool, f: F) -> Result<R, DeviceError>
    where
        F: FnOnce(tokio_modbus::client::Context) -> Fut,
        Fut: std::future::Future<Output = Result<tokio_modbus::Result<R>, tokio::time::error::Elapsed>>,
    {
        let (client_end, mut pipe) = tokio::io::duplex(2 * MAX_FRAME);
        let context = rtu::attach_slave(client_end, Slave(self.config.address));
        let client = f(context);
        tokio::pin!(client);
        let reply = tokio::select! {
            carried = self.carry(&mut pipe) => carried.map_err(|e| with_acted(e, acted))?,
            early = &mut client => {
                let why = match early {
                    Err(_) => "the Modbus client timed out before sending".to_owned(),
                    Ok(Err(e)) => format!("the Modbus client failed before sending: {e}"),
                    Ok(Ok(_)) => "the Modbus client answered before the instrument did".to_owned(),
                };
                return Err(garbled(&self.name, &[], &[], why, acted));
            }
        };
        let called = match client.await {
            Ok(Ok(Ok(value))) => Called::Value(value),
            Ok(Ok(Err(code))) => Called::Exception(code, reply.clone()),
            Ok(Err(e)) => return Err(garbled(&self.name, &[], &reply, e.to_string(), acted)),
            Err(_) => {
                return Err(garbled(&self.name, &[], &reply, "the Modbus client did not decode the reply", acted));
            }
        };
        match called {
            Called::Value(v) => Ok(v),
            Called::Exception(code, received) => {
                let e = ModbusException::from_code(u8::from(code));
                let message = format!("exception {}: {}", u8::from(code), e.message());
                let kind = match e {
                    ModbusException::ServerDeviceBusy => DeviceErrorKind::Busy { message, received },
                    _ => DeviceErrorKind::Firmware { code: Some(u8::from(code).into()), message, received },
                };
                // An exception means the controller refused the request: nothing of it was done.
                Err(error(&self.name, kind, false))
            }
        }
    }

    /// The bound on one client call: the link's reply timeout and a margin.
    fn budget(&self) -> std::time::Duration {
        self.link.timeout() * 2 + std::time::Duration::from_millis(100)
    }

    async fn read(&mut self, register: u16, count: u16, acted: bool) -> Result<Vec<u16>, DeviceError> {
        let budget = self.budget();
        let words = self
            .call(acted, |mut c| async move {
                tokio::time::timeout(budget, c.read_holding_registers(register, count)).await
            })
            .await?;
        if words.len() != usize::from(count) {
            return Err(garbled(&self.name, &[], &[], format!("{} registers instead of {count}", words.len()), acted));
        }
        Ok(words)
    }

    async fn write(&mut self, register: u16, value: u16) -> Result<(), DeviceError> {
        let budget = self.budget();
        self.call(
            true,
            |mut c| async move { tokio::time::timeout(budget, c.write_single_register(register, value)).await },
        )
        .await
    }

    /// The process value, degC.
    async fn temperature(&mut self, acted: bool) -> Result<f64, DeviceError> {
        Ok(tenths(self.read(PROCESS_VALUE, 1, acted).await?[0]))
    }

    async fn run_hold(&mut self, t: f64, hold: f64) -> Result<Outcome, DeviceError> {
        let sent = (t * 10.0).round() as i16;
        self.write(SET_POINT, sent as u16).await?;
        let back = self.read(SET_POINT, 1, true).await?[0] as i16;
        if back != sent {
            return Err(error(
                &self.name,
                DeviceErrorKind::Physical(format!(
                    "set point reads back as {} degC, not the {} degC sent",
                    f64::from(back) / 10.0,
                    f64::from(sent) / 10.0
                )),
                true,
            ));
        }
        self.write(RUN, 1).await?;
        let ramp = self.ramp(t).await?;
        self.hold(t, hold, ramp).await
    }

    /// Waits until the process value is within the tolerance of `t`; returns the lab seconds it took.
    async fn ramp(&mut self, t: f64) -> Result<f64, DeviceError> {
        let clock = self.link.clock().clone();
        let start = clock.now();
        let tolerance = self.config.tolerance.0.abs();
        let mut pv = self.temperature(true).await?;
        let budget = RAMP_BASE + RAMP_PER_DEGREE * (t - pv).abs();
        let deadline = Deadline::after(&clock, budget);
        while (pv - t).abs() > tolerance {
            if deadline.expired() {
                return Err(error(
                    &self.name,
                    DeviceErrorKind::Physical(format!("reached only {pv:.1} degC of {t} degC in {budget:.0} lab s")),
                    true,
                ));
            }
            pause(&clock, POLL).await;
            pv = self.temperature(true).await?;
        }
        Ok(clock.now() - start)
    }

    /// Holds at `t` for `hold` lab seconds from now, then stops.
    async fn hold(&mut self, t: f64, hold: f64, ramp: f64) -> Result<Outcome, DeviceError> {
        let clock = self.link.clock().clone();
        let tolerance = self.config.tolerance.0.abs();
        let end = clock.now() + hold;
        let (mut sum, mut n) = (0.0, 0u32);
        let drift = (5.0 * tolerance).max(10.0);
        let mut pv = t;
        loop {
            let left = end - clock.now();
            if left <= 0.0 {
                break;
            }
            pause(&clock, left.min(POLL)).await;
            pv = self.temperature(true).await?;
            if (pv - t).abs() > drift {
                return Err(error(
                    &self.name,
                    DeviceErrorKind::Physical(format!("drifted to {pv:.1} degC during a hold at {t} degC")),
                    true,
                ));
            }
            sum += pv;
            n += 1;
        }
        self.write(RUN, 0).await?;
        let mean = if n == 0 { pv } else { sum / f64::from(n) };
        Ok(Outcome::Held { mean_temperature: Some(Temperature(mean)), ramp: Duration(ramp) })
    }

    /// Reads the controller back: process value, set point and run flag in one read.
    async fn read_back(&mut self) -> Result<HeaterState, DeviceError> {
        let words = self.read(PROCESS_VALUE, 3, false).await?;
        let run = words[2];
        if run > 1 {
            return Err(garbled(&self.name, &[], &[], format!("the run register holds {run}, not 0 or 1"), false));
        }
        Ok(HeaterState {
            set_point: Temperature(tenths(words[1])),
            temperature: Temperature(tenths(words[0])),
            heating: if run == 1 { Heating::On } else { Heating::Off },
            heating_from: format!("the run register reads {run}"),
            stirring: None,
            tolerance: self.config.tolerance,
        })
    }

    /// Carries on with a hold the controller still runs; see [`HoldTemperature::continue_hold`].
    async fn carry_on(&mut self, t: f64, hold: f64, at_set_point: bool) -> Result<Outcome, DeviceError> {
        let h = self.read_back().await?;
        if (h.set_point.0 - t).abs() > 0.05 || h.heating != Heating::On {
            return Err(error(
                &self.name,
                DeviceErrorKind::Physical(format!(
                    "cannot carry on the hold: the set point reads {} and {}",
                    h.set_point, h.heating_from
                )),
                false,
            ));
        }
        let ramp = if at_set_point { 0.0 } else { self.ramp(t).await? };
        self.hold(t, hold, ramp).await
    }
}

/// The process values a step read (a one-register read of [`PROCESS_VALUE`]), from its recorded exchanges.
pub fn recorded_temperatures(exchanges: &[RecordedExchange]) -> Vec<RecordedReading> {
    exchanges
        .iter()
        .filter(|e| e.sent.len() == 8 && e.sent[1] == 3 && e.sent[2..6] == [0, PROCESS_VALUE as u8, 0, 1])
        .filter_map(|e| {
            let r = &e.received;
            let crc_ok = r.len() == 7 && crc16(&r[..5]).to_le_bytes() == [r[5], r[6]];
            (crc_ok && r[0] == e.sent[0] && r[1] == 3 && r[2] == 2).then(|| RecordedReading {
                id: e.id,
                at: e.replied_at.unwrap_or(e.sent_at),
                value: tenths(u16::from_be_bytes([r[3], r[4]])),
            })
        })
        .collect()
}

/// What settling a hold needs to know of this driver: it has no watchdog, and `RUN` says whether it heats.
pub fn heat_facts() -> crate::readback::HeatFacts {
    crate::readback::HeatFacts { watchdog: None, stirrer_tells_heater: false, poll: POLL }
}

/// A register holding tenths of a degree as a signed value, in degC.
fn tenths(word: u16) -> f64 {
    f64::from(word as i16) / 10.0
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Instrument for ModbusTemperature<T> {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> InstrumentKind {
        InstrumentKind::TemperatureController
    }

    fn identify(&mut self) -> BoxFuture<'_, Result<Identity, DeviceError>> {
        Box::pin(async move {
            let words = self.read(MODEL, 2, false).await?;
            let (model, firmware) = (words[0], words[1]);
            if model != self.config.model_code {
                return Err(error(
                    &self.name,
                    DeviceErrorKind::WrongIdentity {
                        expected: format!("a temperature controller with model code {}", self.config.model_code),
                        found: format!("model code {model}"),
                    },
                    false,
                ));
            }
            Ok(Identity {
                model: format!("Modbus temperature controller {model}"),
                serial: None,
                firmware: Some(format!("{}.{:02}", firmware / 100, firmware % 100)),
                raw: format!("{words:?}"),
            })
        })
    }

    fn initialize(&mut self) -> BoxFuture<'_, Result<(), DeviceError>> {
        Box::pin(async move {
            self.write(RUN, 0).await?;
            self.temperature(false).await?;
            Ok(())
        })
    }

    fn safe_state(&mut self) -> BoxFuture<'_, Result<(), DeviceError>> {
        Box::pin(async move { self.write(RUN, 0).await })
    }

    fn set_tag(&mut self, tag: Option<u64>) {
        self.link.set_tag(tag);
    }

    fn as_hold_temperature(&mut self) -> Option<&mut dyn HoldTemperature> {
        Some(self)
    }

    fn as_stop(&mut self) -> Option<&mut dyn Stop> {
        Some(self)
    }

    fn as_read_back(&mut self) -> Option<&mut dyn ReadBack> {
        Some(self)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> ReadBack for ModbusTemperature<T> {
    fn observe(&mut self) -> BoxFuture<'_, Result<Observed, DeviceError>> {
        Box::pin(async move { self.read_back().await.map(Observed::Heater) })
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stop for ModbusTemperature<T> {
    fn stop(&mut self) -> BoxFuture<'_, Result<(), DeviceError>> {
        self.safe_state()
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> HoldTemperature for ModbusTemperature<T> {
    fn hold_temperature(
        &mut self,
        temperature: Temperature,
        duration: Duration,
    ) -> BoxFuture<'_, Result<Outcome, DeviceError>> {
        Box::pin(async move {
            let t = temperature.0;
            let max = self.config.max_temperature.0;
            if !(t.is_finite() && (-50.0..=max).contains(&t) && t * 10.0 <= f64::from(i16::MAX)) {
                return Err(error(
                    &self.name,
                    DeviceErrorKind::Limit(format!("set point {temperature} is outside -50..={max} degC")),
                    false,
                ));
            }
            if !(duration.0.is_finite() && duration.0 >= 0.0) {
                return Err(error(&self.name, DeviceErrorKind::Limit(format!("cannot hold for {duration}")), false));
            }
            let result = self.run_hold(t, duration.0).await;
            if result.as_ref().is_err_and(|e| e.may_have_acted) {
                // The hold failed with heat possibly on; the error that ended it matters more than this one's.
                let _ = self.write(RUN, 0).await;
            }
            result
        })
    }

    fn continue_hold(
        &mut self,
        temperature: Temperature,
        hold: Duration,
        at_set_point: bool,
    ) -> BoxFuture<'_, Result<Outcome, DeviceError>> {
        Box::pin(async move {
            if !(hold.0.is_finite() && hold.0 >= 0.0) {
                return Err(error(&self.name, DeviceErrorKind::Limit(format!("cannot hold for {hold}")), false));
            }
            let result = self.carry_on(temperature.0, hold.0, at_set_point).await;
            if result.as_ref().is_err_and(|e| e.may_have_acted) {
                let _ = self.write(RUN, 0).await;
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crc_matches_the_specification_vectors() {
        assert_eq!(crc16(&[0x01, 0x03, 0x00, 0x00, 0x00, 0x0A]).to_le_bytes(), [0xC5, 0xCD]);
        assert_eq!(crc16(&[0x01, 0x03, 0x08, 0x2B, 0x00, 0x02]), 0x63B6);
        assert_eq!(crc16(&[0x01, 0x03, 0x04, 0x00, 0x20, 0x00, 0x00]), 0xF9FB);
    }

    fn decode(request: &[u8], reply: &[u8]) -> Result<Option<Vec<u8>>, FrameError> {
        RtuDecoder::for_request(request).decode(&mut BytesMut::from(reply))
    }

    #[test]
    fn replies_frame_by_function_and_crc() {
        let fc3 = [0x01, 0x03, 0x00, 0x00, 0x00, 0x02, 0xC4, 0x0B];
        let ok = [0x01, 0x03, 0x04, 0x00, 0xFA, 0x00, 0x01, 0x1B, 0xC2];
        assert_eq!(decode(&fc3, &ok).unwrap().unwrap(), ok);
        assert_eq!(decode(&fc3, &ok[..6]).unwrap(), None);
        assert_eq!(decode(&fc3, &[0x01, 0x83, 0x02, 0xC0, 0xF1]).unwrap().unwrap().len(), 5);
        let mut bad = ok;
        bad[8] ^= 0x01;
        assert!(matches!(decode(&fc3, &bad), Err(FrameError::Checksum(_))));
        assert!(matches!(decode(&fc3, &[0x02, 0x03]), Err(FrameError::Malformed(_))));
        let fc6 = [0x01, 0x06, 0x00, 0x10, 0x01, 0x2C, 0x88, 0x42];
        assert_eq!(decode(&fc6, &fc6).unwrap().unwrap(), fc6);
        assert_eq!(decode(&fc6, &[0x01, 0x86, 0x03, 0x02, 0x61]).unwrap().unwrap().len(), 5);
    }

    #[test]
    fn signed_tenths_read_as_degrees() {
        assert_eq!(tenths(250), 25.0);
        assert_eq!(tenths((-105_i16) as u16), -10.5);
    }
}
