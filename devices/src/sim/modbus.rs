//! A simulated Modbus RTU temperature controller, generated from its register map: a heating block at a deck
//! position.
//!
//! The map ([`crate::modbus_map`]) is the simulator's whole description: its points are the registers and bits
//! it serves, with the map's initial values, at the map's addresses, in the map's encodings; anything else is
//! answered with exception 2 (illegal data address). A read of a write-only point (a command register) is
//! exception 2 too, a write to a read-only one as well, and a value outside a point's range exception 3. The
//! process value is the heating block's temperature, in the point's unit and encoding; a write to the set point
//! sets the block's set point, and a write that completes the map's `run` sequence switches heating on, one that
//! completes `stop` switches it off. An identity by function 43/14 answers the map's vendor and product; one by
//! register is the register's value. A mistake in a map thus shows in simulation as it would on the controller.
//!
//! Framing is tokio-modbus's RTU server's: it runs on one side of a private pseudo-terminal pair, and the simulator
//! relays bytes between the lab's port and the other side. Requests go over as they arrive (the server frames
//! them by function code and CRC, and resynchronises past garbage as the RTU decoder does); each reply is gathered
//! until the server's side has been quiet for [`QUIET`] and sent through [`Wire::reply`], where wire faults are
//! injected. Requests for another slave address get no reply; broadcasts (address 0) are executed without one.
//! Faults: `busy` answers exception 6 (server busy) and `firmware_error` exception 4 (server device failure),
//! without acting.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio_modbus::prelude::{
    ConformityLevel, DeviceIdObject, ExceptionCode, ReadDeviceIdentificationResponse, Request, Response, SlaveRequest,
};

use super::Simulator;
use super::bench::{Bench, PlateCommand};
use super::pty::{Draws, Wire};
use crate::clock::Clock;
use crate::lab::ModbusConfig;
use crate::modbus_map::{Identity, Kind, ModbusMap, Point, Table};
use crate::transport::SerialStream;

/// How long the server's side must stay quiet for a reply to count as complete.
pub const QUIET: Duration = Duration::from_millis(2);

/// Wall time after which a request the server has not answered stops holding a discrete-event clock's lab time.
const UNANSWERED: Duration = Duration::from_millis(500);

/// The software revision a function 43/14 identity reports (object 2).
const REVISION: &str = "1.00";

/// The registers and bits the controller holds, by table and address.
type Store = BTreeMap<(Table, u16), u16>;

/// What the server asks of the simulated controller.
struct Controller {
    map: Arc<ModbusMap>,
    address: u8,
    position: String,
    bench: Bench,
    draws: Draws,
    store: Mutex<Store>,
}

impl Controller {
    /// The decimals a point's scale reads, from its decimal-point register.
    fn decimals(&self, store: &Store, point: &Point) -> u16 {
        self.map.decimals_of(point).map_or(0, |dp| {
            let words = words_of(store, dp);
            dp.decode(&words, 0).map_or(0, |d| d.clamp(0.0, 9.0) as u16)
        })
    }

    /// The words of `point` now: the process value from the heating block, anything else as stored.
    fn current(&self, store: &Store, point: &Point) -> Vec<u16> {
        if point.name == self.map.temperature.pv {
            let celsius = self.bench.plate_readings(&self.position).map_or(22.0, |r| r.temperature);
            let value = point.from_celsius(celsius).unwrap_or(celsius);
            if let Ok(words) =
                point.encode(round_to(point, value, self.decimals(store, point)), self.decimals(store, point))
            {
                return words;
            }
        }
        words_of(store, point)
    }

    /// Reads `count` registers or bits of `table` from `address`.
    fn read(&self, table: Table, address: u16, count: u16, max: u16) -> Result<Vec<u16>, ExceptionCode> {
        if !(1..=max).contains(&count) {
            return Err(ExceptionCode::IllegalDataValue);
        }
        let store = self.store.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::with_capacity(usize::from(count));
        for a in address..address.saturating_add(count) {
            let point =
                self.map.point_at(table, a).filter(|p| p.readable()).ok_or(ExceptionCode::IllegalDataAddress)?;
            let words = self.current(&store, point);
            let word = words[usize::from(a - point.address).min(words.len() - 1)];
            out.push(match point.kind {
                Kind::Bit(n) => word & (1 << n),
                _ => word,
            });
        }
        // Flags alias bits of their word: a word read whole shows every bit stored, which `current` gave.
        Ok(out)
    }

    /// Writes `words` to `table` from `address`: every address must belong to a writable point, and every value
    /// be one its point takes.
    fn write(&self, table: Table, address: u16, words: &[u16]) -> Result<(), ExceptionCode> {
        let mut store = self.store.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = store.clone();
        for (i, w) in words.iter().enumerate() {
            let a = address.checked_add(i as u16).ok_or(ExceptionCode::IllegalDataAddress)?;
            // A word may hold several points (a status word and its flags); every one at it must be writable.
            let at: Vec<&Point> = self.map.points.values().filter(|p| covers(p, table, a)).collect();
            if at.is_empty() || at.iter().any(|p| !p.writable()) {
                return Err(ExceptionCode::IllegalDataAddress);
            }
            next.insert((table, a), *w);
        }
        // Every point touched must take its new value.
        for p in self.map.points.values().filter(|p| {
            p.table == table
                && (p.address..p.address.saturating_add(p.kind.width()))
                    .any(|a| a >= address && u32::from(a) < u32::from(address) + words.len() as u32)
        }) {
            let value =
                p.decode(&words_of(&next, p), self.decimals(&next, p)).ok_or(ExceptionCode::IllegalDataValue)?;
            if p.range.is_some_and(|(lo, hi)| !(lo..=hi).contains(&value)) {
                return Err(ExceptionCode::IllegalDataValue);
            }
        }
        *store = next;
        self.act(&store, table, address, words.len());
        Ok(())
    }

    /// The physical effect of a write: a new set point, or heating switched on or off by a completed sequence.
    fn act(&self, store: &Store, table: Table, address: u16, count: usize) {
        let binding = &self.map.temperature;
        if let Some(sp) = self.map.point(&binding.sp)
            && sp.table == table
            && u32::from(sp.address) < u32::from(address) + count as u32
            && address < sp.address.saturating_add(sp.kind.width())
            && let Some(value) = sp.decode(&words_of(store, sp), self.decimals(store, sp))
        {
            self.bench.plate_command(&self.position, PlateCommand::SetPoint(sp.to_celsius(value).unwrap_or(value)));
        }
        let holds = |sequence: &str| {
            let steps = self.map.sequence(sequence);
            !steps.is_empty()
                && steps.iter().all(|s| {
                    self.map.point(&s.point).is_some_and(|p| {
                        p.encode(s.value, self.decimals(store, p)).is_ok_and(|w| match p.kind {
                            Kind::Bit(n) => words_of(store, p)[0] & (1 << n) == w[0],
                            _ => words_of(store, p) == w,
                        })
                    })
                })
        };
        if holds(&binding.run) {
            self.bench.plate_command(&self.position, PlateCommand::Heater(true));
        } else if holds(&binding.stop) {
            self.bench.plate_command(&self.position, PlateCommand::Heater(false));
        } else {
            self.bench.plate_command(&self.position, PlateCommand::Contact);
        }
    }

    /// The answer to one request addressed to this controller.
    fn answer(&self, request: Request<'_>) -> Result<Response, ExceptionCode> {
        match request {
            Request::ReadHoldingRegisters(a, n) => {
                self.read(Table::Holding, a, n, 125).map(Response::ReadHoldingRegisters)
            }
            Request::ReadInputRegisters(a, n) => self.read(Table::Input, a, n, 125).map(Response::ReadInputRegisters),
            Request::ReadCoils(a, n) => {
                self.read(Table::Coil, a, n, 2000).map(|w| Response::ReadCoils(w.iter().map(|b| *b != 0).collect()))
            }
            Request::ReadDiscreteInputs(a, n) => self
                .read(Table::Discrete, a, n, 2000)
                .map(|w| Response::ReadDiscreteInputs(w.iter().map(|b| *b != 0).collect())),
            Request::WriteSingleRegister(a, w) => {
                self.write(Table::Holding, a, &[w]).map(|()| Response::WriteSingleRegister(a, w))
            }
            Request::WriteMultipleRegisters(a, words) => {
                if !(1..=123).contains(&words.len()) {
                    return Err(ExceptionCode::IllegalDataValue);
                }
                self.write(Table::Holding, a, &words).map(|()| Response::WriteMultipleRegisters(a, words.len() as u16))
            }
            Request::WriteSingleCoil(a, on) => {
                self.write(Table::Coil, a, &[u16::from(on)]).map(|()| Response::WriteSingleCoil(a, on))
            }
            Request::WriteMultipleCoils(a, bits) => {
                let words: Vec<u16> = bits.iter().map(|b| u16::from(*b)).collect();
                self.write(Table::Coil, a, &words).map(|()| Response::WriteMultipleCoils(a, bits.len() as u16))
            }
            Request::ReadDeviceIdentification(code, _) => match &self.map.identity {
                Identity::Fc43 { vendor, product } => {
                    let object = |id: u8, text: &str| DeviceIdObject { id, value: bytes::Bytes::from(text.to_owned()) };
                    Ok(Response::ReadDeviceIdentification(ReadDeviceIdentificationResponse {
                        read_code: code,
                        conformity_level: ConformityLevel::BasicIdentificationStreamOnly,
                        more_follows: false,
                        next_object_id: 0,
                        device_id_objects: vec![
                            object(0, vendor.as_deref().unwrap_or_default()),
                            object(1, product),
                            object(2, REVISION),
                        ],
                    }))
                }
                _ => Err(ExceptionCode::IllegalFunction),
            },
            _ => Err(ExceptionCode::IllegalFunction),
        }
    }
}

/// Whether `point` holds `address` of `table`.
fn covers(point: &Point, table: Table, address: u16) -> bool {
    point.table == table
        && address >= point.address
        && u32::from(address) < u32::from(point.address) + u32::from(point.kind.width())
}

/// The stored words of `point` (zero where nothing was stored).
fn words_of(store: &Store, point: &Point) -> Vec<u16> {
    (0..point.kind.width()).map(|i| store.get(&(point.table, point.address + i)).copied().unwrap_or(0)).collect()
}

/// `value` at the resolution `point` holds it, so a live reading always encodes.
fn round_to(point: &Point, value: f64, decimals: u16) -> f64 {
    match (&point.scale, point.kind) {
        (_, Kind::F32) => value,
        (crate::modbus_map::Scale::Fixed(f), _) => (value / f).round() * f,
        (crate::modbus_map::Scale::Decimals(_), _) => {
            let k = 10f64.powi(i32::from(decimals));
            (value * k).round() / k
        }
    }
}

/// The server's service: the controller, for requests addressed to it.
#[derive(Clone)]
struct Service(Arc<Controller>);

impl tokio_modbus::server::Service for Service {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = std::future::Ready<Result<Option<Response>, ExceptionCode>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        let c = &self.0;
        let broadcast = req.slave == 0;
        if req.slave != c.address && !broadcast {
            return std::future::ready(Ok(None));
        }
        let result = if c.draws.busy() {
            Err(ExceptionCode::ServerDeviceBusy)
        } else if c.draws.firmware_error() {
            Err(ExceptionCode::ServerDeviceFailure)
        } else {
            c.answer(req.request)
        };
        // A broadcast is carried out but never answered, an exception included.
        std::future::ready(if broadcast { Ok(None) } else { result.map(Some) })
    }
}

/// The private line to the server: its pseudo-terminal pair, and the server's task.
struct Inner {
    relay: SerialStream,
    /// The server's side, kept open with it.
    task: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) struct ModbusSim {
    controller: Option<Arc<Controller>>,
    config: ModbusConfig,
    position: String,
    bench: Bench,
    inner: Option<Inner>,
}

impl ModbusSim {
    pub(crate) fn new(config: &ModbusConfig, position: &str, bench: Bench) -> Self {
        ModbusSim { controller: None, config: config.clone(), position: position.to_owned(), bench, inner: None }
    }

    /// The controller, made on first use with the wire's fault draws and the map's initial values.
    fn controller(&mut self, draws: Draws) -> Arc<Controller> {
        if let Some(c) = &self.controller {
            return Arc::clone(c);
        }
        let map = Arc::clone(&self.config.map);
        let mut store = Store::new();
        // Decimal-point registers first, so the values scaled by them encode at their decimals.
        let mut points: Vec<&Point> = map.points.values().collect();
        points.sort_by_key(|p| map.points.values().all(|q| map.decimals_of(q).is_none_or(|dp| dp.name != p.name)));
        for p in points {
            let decimals = map
                .decimals_of(p)
                .map_or(0, |dp| dp.decode(&words_of(&store, dp), 0).map_or(0, |d| d.clamp(0.0, 9.0) as u16));
            let value = match &map.identity {
                Identity::Register { point, equals } if *point == p.name => *equals,
                _ => p.initial,
            };
            if let Ok(words) = p.encode(round_to(p, value, decimals), decimals) {
                for (i, w) in words.iter().enumerate() {
                    let word = match p.kind {
                        Kind::Bit(_) => store.get(&(p.table, p.address)).copied().unwrap_or(0) | w,
                        _ => *w,
                    };
                    store.insert((p.table, p.address + i as u16), word);
                }
            }
        }
        if let Some(sp) = map.point(&map.temperature.sp) {
            let decimals = map.decimals_of(sp).map_or(0, |dp| dp.initial.clamp(0.0, 9.0) as u16);
            if let Some(v) = sp.decode(&words_of(&store, sp), decimals) {
                self.bench.plate_command(&self.position, PlateCommand::SetPoint(sp.to_celsius(v).unwrap_or(v)));
            }
        }
        let c = Arc::new(Controller {
            map,
            address: self.config.address,
            position: self.position.clone(),
            bench: self.bench.clone(),
            draws,
            store: Mutex::new(store),
        });
        self.controller = Some(Arc::clone(&c));
        c
    }

    /// Starts tokio-modbus's RTU server on a private pseudo-terminal pair; `None` if the pair cannot be opened.
    fn start_server(&mut self, controller: Arc<Controller>) -> Option<Inner> {
        let (server_side, relay) = SerialStream::pair().ok()?;
        let server = tokio_modbus::server::rtu::Server::new(server_side);
        let task = tokio::spawn(async move {
            // The server stops when its decoder gives up on garbage; the relay starts another.
            let _ = server.serve_forever(Service(controller)).await;
        });
        Some(Inner { relay, task })
    }
}

impl Simulator for ModbusSim {
    fn frame(&mut self, input: &mut BytesMut) -> Option<Vec<u8>> {
        // The server frames requests; this simulator only relays (see `serve`).
        (!input.is_empty()).then(|| input.split().to_vec())
    }

    async fn handle(&mut self, _command: Vec<u8>, _wire: &mut Wire) -> bool {
        true
    }

    async fn serve(&mut self, wire: &mut Wire) -> Option<Duration> {
        let controller = self.controller(wire.draws());
        let mut buf = [0u8; 512];
        // A request handed to the server holds a discrete-event clock's lab time until its answer is relayed (the
        // server is no party of the lab's time); one the server never answers, for a while of wall time.
        let mut answering: Option<crate::clock::Hold> = None;
        loop {
            if self.inner.as_ref().is_none_or(|i| i.task.is_finished()) {
                self.inner = Some(self.start_server(Arc::clone(&controller))?);
            }
            let inner = self.inner.as_mut()?;
            tokio::select! {
                alive = wire.fill() => {
                    if !alive {
                        return None;
                    }
                    let request = wire.input.split();
                    answering = wire.clock().map(Clock::hold);
                    if inner.relay.write_all(&request).await.is_err() {
                        self.inner = None;
                    }
                }
                () = tokio::time::sleep(UNANSWERED), if answering.is_some() => answering = None,
                read = inner.relay.read(&mut buf) => {
                    let n = match read {
                        Ok(n) if n > 0 => n,
                        _ => {
                            self.inner = None;
                            continue;
                        }
                    };
                    let mut reply = buf[..n].to_vec();
                    while let Ok(Ok(n)) = tokio::time::timeout(QUIET, inner.relay.read(&mut buf)).await {
                        if n == 0 {
                            break;
                        }
                        reply.extend_from_slice(&buf[..n]);
                    }
                    // The answer is in hand: the simulator holds lab time as any party does, until it waits again
                    // (a latency before the reply is such a wait).
                    if let Some(hold) = answering.take() {
                        crate::clock::adopt(hold);
                    }
                    wire.count_command();
                    let replied = wire.reply(&reply).await;
                    if !replied {
                        return None;
                    }
                    if let Some(down) = wire.unplugged() {
                        return Some(down);
                    }
                }
            }
        }
    }
}
