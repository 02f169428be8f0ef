//! A temperature controller on Modbus RTU (a heating block or jacket), driven through its register map.
//!
//! The lab file names the controller's map ([`crate::modbus_map`]): where the process value and the set point are,
//! how they are encoded, which writes run and stop control, how to check identity. The driver asks only what the
//! map has, in the map's encoding; the same driver serves a Eurotherm 3200, an Omron E5CC and a Watlow EZ-ZONE PM.
//!
//! `tokio-modbus` builds the requests and frames and checks the replies (function, CRC, exception codes). It owns
//! its stream, so each call gets an in-memory pipe: the driver polls the client once, which writes its whole
//! request into the pipe, takes those bytes and sends them through the instrument's [`Link`], and relays what the
//! instrument answers back into the pipe until the client has its reply ([`Link::relay`]). Every byte thus crosses
//! the one transport layer and is recorded, and every call is bounded by the link's reply timeout. A reply the
//! client cannot take (tokio-modbus resynchronises past a bad CRC and waits for more) ends at that timeout; the
//! driver then tells a reply whose CRC-16/MODBUS does not match from one that never finished ([`DeviceErrorKind::Checksum`]
//! or [`DeviceErrorKind::Timeout`], both with the bytes).
//!
//! Exception replies become named [`ModbusException`]s: 6 (server busy) is `Busy`, the others `Firmware` errors
//! with their code; an exception means the controller refused the request, so nothing of it was done.
//!
//! A hold is: write the set point (a point kept in EEPROM is read first and written only if it differs, as its
//! write cycles are limited), read it back, run the map's `run` sequence, poll the process value every [`POLL`] lab
//! seconds until it is within the tolerance, hold, and run `stop`; temperatures are converted from the map's units
//! (a Watlow reports degrees Fahrenheit). Initialization runs the map's `init` sequence (Omron: communications
//! writing on; Eurotherm: remote set point) and `stop`, reads the decimal-point registers the map's scales use, and
//! reads the process value. The safe state is `stop`.
//!
//! Reading back ([`ReadBack`]): the process value, the set point, and whether control runs, read from the points
//! the map's `run` and `stop` sequences write (a Eurotherm's loop mode, a Watlow's control mode): all at their `run`
//! values is heating, all at their `stop` values is not. A map whose `run` writes a point that cannot be read (an
//! Omron's write-only operation command) cannot tell, and a hold in doubt on it goes to the policy. These
//! controllers have no watchdog, so one whose controller is gone holds on until someone stops it.
//! [`recorded_temperatures`] reads the process values a hold recorded.

use std::collections::BTreeMap;

use futures::FutureExt;
use futures::future::BoxFuture;
use protocols::InstrumentKind;
use protocols::units::{Duration, Temperature};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, DuplexStream};
use tokio_modbus::client::{Reader, Writer};
use tokio_modbus::prelude::{Slave, rtu};

use super::{Hold, Probe, error, garbled, reach_and_hold, with_acted};
use crate::capability::{HoldTemperature, Identity, Instrument, Outcome, Stop};
use crate::error::{DeviceError, DeviceErrorKind};
use crate::lab::ModbusConfig;
use crate::modbus_map::{self, Kind, Point, Table};
use crate::readback::{HeaterState, Heating, Observed, ReadBack, RecordedExchange, RecordedReading};
use crate::transport::Link;

/// Lab seconds between two readings while ramping or holding.
pub const POLL: f64 = 10.0;

/// The longest RTU frame, and so the most the client can write as one request.
const MAX_FRAME: usize = 256;

/// CRC-16/MODBUS of `bytes`, as the crc crate computes it; a frame carries it low byte first.
pub fn crc(bytes: &[u8]) -> u16 {
    const CRC: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_MODBUS);
    CRC.checksum(bytes)
}

/// Whether `bytes` are a whole RTU frame whose CRC-16/MODBUS (sent low byte first) does not match: a reply that
/// came complete but damaged, as opposed to one cut short.
pub fn bad_crc(bytes: &[u8]) -> bool {
    if bytes.len() < 5 {
        return false;
    }
    // The length a reply of its function code has: an exception 5, a read 5 plus its byte count, a write 8.
    let whole = match bytes[1] {
        f if f & 0x80 != 0 => 5,
        1..=4 => 5 + usize::from(bytes[2]),
        5 | 6 | 15 | 16 => 8,
        _ => bytes.len(),
    };
    let (body, crc) = bytes.split_at(bytes.len() - 2);
    bytes.len() == whole && self::crc(body).to_le_bytes() != [crc[0], crc[1]]
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

/// A Modbus RTU temperature controller on a serial line.
pub struct ModbusTemperature<T> {
    name: String,
    config: ModbusConfig,
    link: Link<T>,
    /// The decimals read from the map's decimal-point registers, by point.
    decimals: BTreeMap<String, u16>,
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> ModbusTemperature<T> {
    /// A driver for the controller `name` with the lab file's settings, talking over `link`.
    pub fn new(name: &str, config: ModbusConfig, link: Link<T>) -> Self {
        ModbusTemperature { name: name.to_owned(), config, link, decimals: BTreeMap::new() }
    }

    /// Runs one `tokio-modbus` call against the link. `acted` marks errors after a write that may have acted.
    async fn call<R, F, Fut>(&mut self, acted: bool, f: F) -> Result<R, DeviceError>
    where
        R: std::fmt::Debug,
        F: FnOnce(tokio_modbus::client::Context) -> Fut,
        Fut: std::future::Future<Output = tokio_modbus::Result<R>>,
    {
        let (client_end, mut pipe) = tokio::io::duplex(4 * MAX_FRAME);
        let context = rtu::attach_slave(client_end, Slave(self.config.address));
        let client = f(context);
        tokio::pin!(client);
        // One poll writes the whole request (the pipe has room for any frame) and leaves the client waiting for
        // its reply; what it wrote is the request, with no framing knowledge of ours.
        if let Some(early) = (&mut client).now_or_never() {
            return Err(garbled(
                &self.name,
                &[],
                &[],
                format!("the Modbus client ended before sending: {early:?}"),
                false,
            ));
        }
        let request = drain(&mut pipe);
        if request.is_empty() {
            return Err(garbled(&self.name, &[], &[], "the Modbus client wrote no request", false));
        }
        let (result, received) = match self.link.relay(&request, &mut pipe, client).await {
            Ok(r) => r,
            Err(e) => return Err(with_acted(self.checked(e), acted)),
        };
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(code)) => {
                let e = ModbusException::from_code(u8::from(code));
                let message = format!("exception {}: {}", u8::from(code), e.message());
                let kind = match e {
                    ModbusException::ServerDeviceBusy => DeviceErrorKind::Busy { message, received },
                    _ => DeviceErrorKind::Firmware { code: Some(u8::from(code).into()), message, received },
                };
                // An exception means the controller refused the request: nothing of it was done.
                Err(error(&self.name, kind, false))
            }
            Err(e) => Err(garbled(&self.name, &request, &received, e.to_string(), acted)),
        }
    }

    /// A timeout whose bytes are a whole frame with a bad CRC is a checksum error; anything else stays as it is.
    fn checked(&self, e: DeviceError) -> DeviceError {
        match e.kind {
            DeviceErrorKind::Timeout { sent, received, .. } if bad_crc(&received) => DeviceError {
                kind: DeviceErrorKind::Checksum {
                    sent,
                    received,
                    reason: "the reply's CRC-16/MODBUS does not match its bytes".into(),
                },
                ..e
            },
            _ => e,
        }
    }

    /// The point `name` of the map; the loader checked every name the map and the driver use.
    fn point(&self, name: &str) -> Result<Point, DeviceError> {
        self.config.map.point(name).cloned().ok_or_else(|| {
            error(&self.name, DeviceErrorKind::Unsupported(format!("use the point `{name}` its map lacks")), false)
        })
    }

    /// Reads the registers (or bits, as 0 and 1) of `point`.
    async fn read_raw(&mut self, point: &Point, acted: bool) -> Result<Vec<u16>, DeviceError> {
        let (address, count) = (point.address, point.kind.width());
        let words = match point.table {
            Table::Holding => {
                self.call(acted, |mut c| async move { c.read_holding_registers(address, count).await }).await?
            }
            Table::Input => {
                self.call(acted, |mut c| async move { c.read_input_registers(address, count).await }).await?
            }
            Table::Coil => {
                let bits = self.call(acted, |mut c| async move { c.read_coils(address, count).await }).await?;
                bits.into_iter().map(u16::from).collect()
            }
            Table::Discrete => {
                let bits =
                    self.call(acted, |mut c| async move { c.read_discrete_inputs(address, count).await }).await?;
                bits.into_iter().map(u16::from).collect()
            }
        };
        if words.len() < usize::from(count) {
            return Err(garbled(&self.name, &[], &[], format!("{} values instead of {count}", words.len()), acted));
        }
        Ok(words)
    }

    /// The decimals of `point`'s scale, read once from its decimal-point register and kept.
    async fn decimals(&mut self, point: &Point, acted: bool) -> Result<u16, DeviceError> {
        let Some(dp) = self.config.map.decimals_of(point).cloned() else { return Ok(0) };
        if let Some(d) = self.decimals.get(&dp.name) {
            return Ok(*d);
        }
        let words = self.read_raw(&dp, acted).await?;
        let d = dp.decode(&words, 0).filter(|d| (0.0..=9.0).contains(d)).ok_or_else(|| {
            garbled(&self.name, &[], &[], format!("decimal-point register `{}` holds {words:?}", dp.name), acted)
        })? as u16;
        self.decimals.insert(dp.name.clone(), d);
        Ok(d)
    }

    /// The engineering value of the point `name`.
    pub async fn read_point(&mut self, name: &str) -> Result<f64, DeviceError> {
        self.read_value(name, false).await
    }

    async fn read_value(&mut self, name: &str, acted: bool) -> Result<f64, DeviceError> {
        let point = self.point(name)?;
        let decimals = self.decimals(&point, acted).await?;
        let words = self.read_raw(&point, acted).await?;
        point
            .decode(&words, decimals)
            .ok_or_else(|| garbled(&self.name, &[], &[], format!("`{name}` holds {words:?}, not a number"), acted))
    }

    /// Writes `value` to the point `name`, with its write function; a point kept in EEPROM is read first and left
    /// alone if it already holds the value.
    async fn write_value(&mut self, name: &str, value: f64) -> Result<(), DeviceError> {
        let point = self.point(name)?;
        let decimals = self.decimals(&point, true).await?;
        let limit = |msg: String| error(&self.name, DeviceErrorKind::Limit(msg), false);
        if let Some((lo, hi)) = point.range
            && !(lo..=hi).contains(&value)
        {
            return Err(limit(format!("`{name}` takes {lo} to {hi}, not {value}")));
        }
        let mut words = point.encode(value, decimals).map_err(|why| limit(format!("`{name}`: {why}")))?;
        if point.eeprom || matches!(point.kind, Kind::Bit(_)) {
            let now = self.read_raw(&point, true).await?;
            if let Kind::Bit(n) = point.kind {
                words = vec![(now[0] & !(1 << n)) | words[0]];
            }
            if point.eeprom && now == words {
                return Ok(());
            }
        }
        let address = point.address;
        match (point.table, point.multiple) {
            (Table::Holding, false) => {
                let w = words[0];
                self.call(true, |mut c| async move { c.write_single_register(address, w).await }).await
            }
            (Table::Holding, true) => {
                self.call(true, |mut c| async move { c.write_multiple_registers(address, &words).await }).await
            }
            (Table::Coil, false) => {
                let on = words[0] != 0;
                self.call(true, |mut c| async move { c.write_single_coil(address, on).await }).await
            }
            (Table::Coil, true) => {
                let bits = [words[0] != 0];
                self.call(true, |mut c| async move { c.write_multiple_coils(address, &bits).await }).await
            }
            (table, _) => Err(error(
                &self.name,
                DeviceErrorKind::Unsupported(format!("write the {} point `{name}`", table.name())),
                false,
            )),
        }
    }

    /// Runs the map's sequence `name`.
    async fn run_sequence(&mut self, name: &str) -> Result<(), DeviceError> {
        let steps = self.config.map.sequence(name).to_vec();
        for step in steps {
            self.write_value(&step.point, step.value).await?;
        }
        Ok(())
    }

    /// The process value, degC.
    async fn temperature(&mut self, acted: bool) -> Result<f64, DeviceError> {
        let pv = self.config.map.temperature.pv.clone();
        let value = self.read_value(&pv, acted).await?;
        let point = self.point(&pv)?;
        Ok(point.to_celsius(value).unwrap_or(value))
    }

    async fn stop_control(&mut self) -> Result<(), DeviceError> {
        let stop = self.config.map.temperature.stop.clone();
        self.run_sequence(&stop).await
    }

    async fn run_hold(&mut self, t: f64, hold: f64) -> Result<Outcome, DeviceError> {
        let binding = self.config.map.temperature.clone();
        let sp = self.point(&binding.sp)?;
        let sent = sp.from_celsius(t).unwrap_or(t);
        // The set point is encoded at the point's resolution; what reads back is compared at that resolution.
        let decimals = self.decimals(&sp, true).await?;
        let resolution = match &sp.scale {
            modbus_map::Scale::Fixed(f) if sp.kind != Kind::F32 => f.abs(),
            modbus_map::Scale::Decimals(_) => 10f64.powi(-i32::from(decimals)),
            _ => 1e-3 * sent.abs().max(1.0),
        };
        let rounded = if sp.kind == Kind::F32 { sent } else { (sent / resolution).round() * resolution };
        self.write_value(&binding.sp, rounded).await?;
        let back = self.read_value(&binding.sp, true).await?;
        if (back - rounded).abs() > resolution / 2.0 + 1e-9 {
            return Err(error(
                &self.name,
                DeviceErrorKind::Physical(format!(
                    "set point reads back as {back}, not the {rounded} sent ({})",
                    sp.unit.as_deref().unwrap_or("")
                )),
                true,
            ));
        }
        self.run_sequence(&binding.run).await?;
        self.reach_and_stop(t, hold, false).await
    }

    /// Reaches `t` (unless the hold is `under_way`, carried on after the controller was away), holds it for `hold`
    /// lab seconds, and stops control.
    async fn reach_and_stop(&mut self, t: f64, hold: f64, under_way: bool) -> Result<Outcome, DeviceError> {
        let clock = self.link.clock().clone();
        let tolerance = self.config.tolerance.0.abs();
        let name = self.name.clone();
        let plan = Hold { what: "", target: t, tolerance, hold, poll: POLL, under_way };
        let held = reach_and_hold(self, &name, &clock, plan).await?;
        self.stop_control().await?;
        Ok(held)
    }

    /// Reads the controller back: process value, set point (both in degC), and whether control runs.
    async fn read_back(&mut self) -> Result<HeaterState, DeviceError> {
        let binding = self.config.map.temperature.clone();
        let temperature = self.temperature(false).await?;
        let sp = self.point(&binding.sp)?;
        let raw_sp = self.read_value(&binding.sp, false).await?;
        let set_point = sp.to_celsius(raw_sp).unwrap_or(raw_sp);
        if !(-300.0..=3000.0).contains(&temperature) || !(-300.0..=3000.0).contains(&set_point) {
            return Err(garbled(
                &self.name,
                &[],
                &[],
                format!("{temperature} degC at a set point of {set_point} degC is no controller's reading"),
                false,
            ));
        }
        let (heating, heating_from) = self.run_state(&binding.run, &binding.stop).await?;
        Ok(HeaterState {
            set_point: Temperature(set_point),
            temperature: Temperature(temperature),
            heating,
            heating_from,
            stirring: None,
            tolerance: self.config.tolerance,
        })
    }

    /// Whether control runs, from the points the map's `run` and `stop` sequences write: every one at its `run`
    /// value is on, every one at its `stop` value off; anything else, or a point that cannot be read, cannot tell.
    async fn run_state(&mut self, run: &str, stop: &str) -> Result<(Heating, String), DeviceError> {
        let (run, stop) = (self.config.map.sequence(run).to_vec(), self.config.map.sequence(stop).to_vec());
        let mut read = BTreeMap::new();
        for step in run.iter().chain(&stop) {
            if read.contains_key(&step.point) {
                continue;
            }
            let point = self.point(&step.point)?;
            if !point.readable() {
                return Ok((
                    Heating::Unknown,
                    format!("its map starts and stops control through `{}`, which cannot be read", step.point),
                ));
            }
            let value = self.read_value(&step.point, false).await?;
            read.insert(step.point.clone(), value);
        }
        let holds = |steps: &[modbus_map::Step]| {
            !steps.is_empty() && steps.iter().all(|s| read.get(&s.point).is_some_and(|v| (v - s.value).abs() < 1e-6))
        };
        let found = read.iter().map(|(p, v)| format!("`{p}` reads {v}")).collect::<Vec<_>>().join(", ");
        Ok(if holds(&run) {
            (Heating::On, format!("{found}, as its map's `run` leaves it"))
        } else if holds(&stop) {
            (Heating::Off, format!("{found}, as its map's `stop` leaves it"))
        } else {
            (Heating::Unknown, format!("{found}, which is neither what its map's `run` nor its `stop` leaves"))
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
        self.reach_and_stop(t, hold, at_set_point).await
    }
}

/// The process values (degC) a step read of the controller `config` describes, from its recorded exchanges: each
/// read of the map's process value whose reply frames with a good CRC. A process value scaled by a decimal-point
/// register is read only where the exchanges hold a read of that register too.
pub fn recorded_temperatures(config: &ModbusConfig, exchanges: &[RecordedExchange]) -> Vec<RecordedReading> {
    let map = &config.map;
    let Some(pv) = map.point(&map.temperature.pv) else { return Vec::new() };
    let decimals = match map.decimals_of(pv) {
        None => Some(0),
        Some(dp) => recorded_reads(config.address, dp, exchanges)
            .last()
            .and_then(|(_, _, words)| dp.decode(words, 0))
            .filter(|d| (0.0..=9.0).contains(d))
            .map(|d| d as u16),
    };
    let Some(decimals) = decimals else { return Vec::new() };
    recorded_reads(config.address, pv, exchanges)
        .into_iter()
        .filter_map(|(id, at, words)| {
            let value = pv.decode(&words, decimals)?;
            Some(RecordedReading { id, at, value: pv.to_celsius(value).unwrap_or(value) })
        })
        .collect()
}

/// The recorded reads of `point` from the slave `address` whose replies frame with a good CRC: each exchange's id,
/// when its reply came, and the words it carried.
fn recorded_reads(address: u8, point: &Point, exchanges: &[RecordedExchange]) -> Vec<(i64, f64, Vec<u16>)> {
    let function = match point.table {
        Table::Holding => 3,
        Table::Input => 4,
        Table::Coil | Table::Discrete => return Vec::new(),
    };
    let width = point.kind.width();
    let [a_hi, a_lo] = point.address.to_be_bytes();
    let [w_hi, w_lo] = width.to_be_bytes();
    exchanges
        .iter()
        .filter(|e| e.sent.len() == 8 && e.sent[..6] == [address, function, a_hi, a_lo, w_hi, w_lo])
        .filter_map(|e| {
            let r = &e.received;
            let n = 2 * usize::from(width);
            let framed = r.len() == 5 + n
                && r[..3] == [address, function, n as u8]
                && crc(&r[..3 + n]).to_le_bytes() == [r[3 + n], r[4 + n]];
            framed.then(|| {
                let words = r[3..3 + n].chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
                (e.id, e.replied_at.unwrap_or(e.sent_at), words)
            })
        })
        .collect()
}

/// What settling a hold needs to know of this driver: it has no watchdog, and no stirrer.
pub fn heat_facts() -> crate::readback::HeatFacts {
    crate::readback::HeatFacts { watchdog: None, stirrer_tells_heater: false, poll: POLL }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Probe for ModbusTemperature<T> {
    fn celsius(&mut self) -> impl std::future::Future<Output = Result<f64, DeviceError>> + Send {
        self.temperature(true)
    }
}

/// Everything in the pipe now: the request the client just wrote.
fn drain(pipe: &mut DuplexStream) -> Vec<u8> {
    let mut request = Vec::new();
    let mut chunk = [0u8; MAX_FRAME];
    while let Some(Ok(n)) = pipe.read(&mut chunk).now_or_never() {
        if n == 0 || request.len() > MAX_FRAME {
            break;
        }
        request.extend_from_slice(&chunk[..n]);
    }
    request
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
            let map = self.config.map.clone();
            let name = self.name.clone();
            let wrong = |found: String| {
                error(&name, DeviceErrorKind::WrongIdentity { expected: format!("a {}", map.name), found }, false)
            };
            match &map.identity {
                modbus_map::Identity::None => {
                    // Nothing to check but that a controller answers at this address with the map's process value.
                    let pv = self.temperature(false).await?;
                    Ok(Identity {
                        model: map.name.clone(),
                        serial: None,
                        firmware: None,
                        raw: format!("no identity to read; the process value reads {pv:.1} degC"),
                    })
                }
                modbus_map::Identity::Fc43 { vendor, product } => {
                    let reply = self
                        .call(false, |mut c| async move {
                            c.read_device_identification(tokio_modbus::prelude::ReadCode::Basic, 0).await
                        })
                        .await?;
                    let object = |id: u8| {
                        reply
                            .device_id_objects
                            .iter()
                            .find(|o| o.id == id)
                            .and_then(|o| o.value_as_str().map(str::to_owned))
                    };
                    let (found_vendor, found_product) = (object(0).unwrap_or_default(), object(1).unwrap_or_default());
                    let raw = format!("{found_vendor} {found_product}");
                    if !found_product.starts_with(product.as_str())
                        || vendor.as_ref().is_some_and(|v| *v != found_vendor)
                    {
                        return Err(wrong(raw));
                    }
                    Ok(Identity { model: found_product, serial: None, firmware: object(2), raw })
                }
                modbus_map::Identity::Register { point, equals } => {
                    let value = self.read_value(point, false).await?;
                    if (value - equals).abs() > 1e-9 {
                        return Err(wrong(format!("`{point}` = {value}")));
                    }
                    Ok(Identity {
                        model: map.name.clone(),
                        serial: None,
                        firmware: None,
                        raw: format!("{point} = {value}"),
                    })
                }
            }
        })
    }

    fn initialize(&mut self) -> BoxFuture<'_, Result<(), DeviceError>> {
        Box::pin(async move {
            // Decimal points are read again: the controller may have been set up since.
            self.decimals.clear();
            if let Some(init) = self.config.map.temperature.init.clone() {
                self.run_sequence(&init).await?;
            }
            self.stop_control().await?;
            self.temperature(false).await?;
            Ok(())
        })
    }

    fn safe_state(&mut self) -> BoxFuture<'_, Result<(), DeviceError>> {
        Box::pin(async move { self.stop_control().await })
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
            if !(t.is_finite() && (-50.0..=max).contains(&t)) {
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
                let _ = self.stop_control().await;
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
                let _ = self.stop_control().await;
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_frame_with_a_wrong_crc_is_told_from_a_short_one() {
        let ok = [0x01, 0x03, 0x04, 0x00, 0xFA, 0x00, 0x01, 0x1B, 0xC2];
        assert!(!bad_crc(&ok), "the notes' FC3 reply is right");
        let mut bad = ok;
        bad[8] ^= 0x01;
        assert!(bad_crc(&bad));
        assert!(!bad_crc(&bad[..7]), "a reply cut short is not a checksum error");
        assert!(bad_crc(&[0x01, 0x83, 0x02, 0xC0, 0xF2]));
        assert!(!bad_crc(&[0x01, 0x83, 0x02, 0xC0, 0xF1]));
    }
}
