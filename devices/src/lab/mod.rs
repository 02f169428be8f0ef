//! The lab file: which instruments a lab has, how to reach them, where they stand, and their limits.
//!
//! A lab file names each instrument, its driver (with the driver's settings and limits), its port (a device
//! path, or `Simulated` for a simulator on a pseudo-terminal), and the deck position where it acts on vessels.
//! The deck gives every position (and every rack slot) in the gantry's coordinates.
//!
//! [`load_lab`] parses and validates a lab file into a [`Lab`]; [`Lab::check_protocol`] then checks that the lab can
//! run a protocol before anything moves: every named instrument exists and is of the right kind, every kind the
//! protocol needs is present, every transfer has a position where all the steps that follow it can run, and no
//! literal or parameter range asks an instrument for more than its limits.

use std::collections::BTreeMap;
use std::sync::Arc;

use protocols::diagnostic::SourceFile;
use protocols::units::{Duration, Mass, Speed, Temperature, Volume, Wavelength};
use protocols::{Destination, InstrumentKind, InstrumentRef, Op, Protocol};
use serde::Deserialize;

use crate::capability::Place;
use crate::transport::{LineSettings, Parity};

mod check;
mod file;
mod load;
mod reagents;

pub use load::load_lab;
pub use reagents::{Bottle, PRIME_LINES, Reagent, Source};

/// The current lab file format version.
pub const FORMAT: u32 = 1;

/// Diagnostic codes for lab files and for lab-against-protocol checks. Each has an entry in GUIDE.md.
pub mod codes {
    /// The file states a format version this program does not read.
    pub const FORMAT: &str = "D0001";
    /// An instrument or position name is invalid or repeated.
    pub const NAME: &str = "D0002";
    /// An instrument's position is missing, unknown, or given to a gantry.
    pub const POSITION: &str = "D0003";
    /// A driver setting is invalid (a bad quantity, an out-of-range address).
    pub const SETTING: &str = "D0004";
    /// A deck point lies outside the gantry's travel or above its travel height.
    pub const DECK: &str = "D0005";
    /// The simulation settings are invalid, or a lab with real ports is run faster than real time.
    pub const SIMULATION: &str = "D0006";
    /// An instrument's simulated faults are invalid: a probability outside 0..=1, a fault its simulator cannot
    /// inject, or faults on a real port.
    pub const FAULTS: &str = "D0007";
    /// A protocol names an instrument the lab does not have, or one of the wrong kind.
    pub const UNKNOWN_INSTRUMENT: &str = "D0101";
    /// A protocol needs a kind of instrument the lab does not have.
    pub const MISSING_KIND: &str = "D0102";
    /// A transfer has no deck position where every step that follows it can run.
    pub const NO_POSITION: &str = "D0103";
    /// A value or parameter range exceeds the limits of every instrument that could run the step.
    pub const LIMIT: &str = "D0104";
    /// The reagent inventory is wrong: an undeclared reagent in a bottle, a bad concentration or volume, more dead
    /// volume than volume, or a bottle nothing can draw from.
    pub const REAGENT: &str = "D0008";
    /// A protocol's dispense names a reagent the lab lacks, or one no pump standing where the vessel will be can
    /// reach.
    pub const REAGENT_SOURCE: &str = "D0105";
}

/// A point in the gantry's coordinates, in millimetres.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, serde::Serialize)]
#[serde(rename = "Point", deny_unknown_fields)]
pub struct Point {
    /// Millimetres along X.
    pub x: f64,
    /// Millimetres along Y.
    pub y: f64,
    /// Millimetres along Z: the height the gripper descends to to grip a vessel standing here.
    pub z: f64,
}

/// A rack of vessels: a grid of slots. Each experiment takes one vessel from its own slot and returns it there.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename = "Rack", deny_unknown_fields)]
pub struct Rack {
    /// The first slot's point.
    pub origin: Point,
    /// Spacing between columns (along X), in millimetres.
    pub pitch_x: f64,
    /// Spacing between rows (along Y), in millimetres.
    pub pitch_y: f64,
    /// Slots per row.
    pub columns: usize,
    /// Rows.
    pub rows: usize,
}

impl Rack {
    /// The number of slots.
    pub fn slots(&self) -> usize {
        self.columns * self.rows
    }

    /// The point of slot `i` (row-major from the origin), if it exists.
    pub fn slot(&self, i: usize) -> Option<Point> {
        (i < self.slots()).then(|| Point {
            x: self.origin.x + (i % self.columns) as f64 * self.pitch_x,
            y: self.origin.y + (i / self.columns) as f64 * self.pitch_y,
            z: self.origin.z,
        })
    }
}

/// The deck: the rack, the named positions, and the height the gantry travels at.
#[derive(Debug, Clone, PartialEq)]
pub struct Deck {
    /// The height in millimetres at which the gantry moves between places, clear of everything on the deck.
    pub safe_z: f64,
    /// The rack.
    pub rack: Rack,
    /// Named positions.
    pub positions: BTreeMap<String, Point>,
}

impl Deck {
    /// The point of a place, if it exists.
    pub fn point(&self, place: &Place) -> Option<Point> {
        match place {
            Place::Rack(i) => self.rack.slot(*i),
            Place::Position(p) => self.positions.get(p).copied(),
        }
    }
}

/// Where an instrument is connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortSpec {
    /// A simulator on a pseudo-terminal, started by `lab` itself.
    Simulated,
    /// A simulator already running at this pseudo-terminal path, started by `lab sim` in another process (so the
    /// simulated bench outlives a controller that stops or crashes).
    Simulator(String),
    /// A serial device path such as `/dev/ttyUSB0`.
    Serial(String),
}

impl PortSpec {
    /// Whether the port leads to a simulator rather than real hardware.
    pub fn is_simulated(&self) -> bool {
        !matches!(self, PortSpec::Serial(_))
    }
}

/// The framing a Cavro pump is driven with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename = "Protocol")]
pub enum CavroProtocol {
    /// Data terminal: `/` address data CR, answered `/0` status data ETX CR LF.
    #[default]
    Dt,
    /// OEM: STX address sequence data ETX checksum, with a repeat bit for retransmissions.
    Oem,
}

/// Settings of a Cavro XCalibur syringe pump.
#[derive(Debug, Clone, PartialEq)]
pub struct CavroConfig {
    /// The address switch setting, 1 to 15 (switch 0 to E); the wire address is `'0' + address`.
    pub address: u8,
    /// The syringe's volume (a full stroke).
    pub syringe: Volume,
    /// The top plunger speed in half-steps per second (`V`), 5 to 6000.
    pub top_speed: u32,
    /// The bottle on the pump's input port (an empty reagent name when none is plumbed there).
    pub reservoir: Bottle,
    /// The framing: DT (the default) or OEM.
    pub protocol: CavroProtocol,
    /// Whether a selector valve feeds the pump's input (the lab file says so on the valve, `feeds`): what the
    /// syringe holds may then be another reagent than the vessel's, and it leaves only through the valve's waste
    /// port, which the driver cannot turn to itself.
    pub fed: bool,
}

/// Settings of a Mettler Toledo balance (MT-SICS).
#[derive(Debug, Clone, PartialEq)]
pub struct BalanceConfig {
    /// The type the balance reports to `I2`, such as `XS205`.
    pub model: String,
    /// The weighing capacity; heavier loads read as overload.
    pub capacity: Mass,
    /// The lab time the balance may take to settle before `S` gives up.
    pub settle: Duration,
}

/// Settings of a VICI Valco selector valve on a universal electric actuator.
#[derive(Debug, Clone, PartialEq)]
pub struct ValveConfig {
    /// The number of ports (`NP`), 2 to 40.
    pub positions: u32,
    /// The device ID the actuator answers to (`/Z...` on RS-485); none on RS-232.
    pub id: Option<char>,
    /// The pump whose input the valve feeds, if any: that pump then draws from the selected port's reservoir.
    pub feeds: Option<String>,
    /// The bottle on each port, for a valve that feeds a pump.
    pub ports: BTreeMap<u32, Bottle>,
    /// The shared tubing between the valve's common port and the pump, where the last reagent drawn stays.
    pub line: Option<Volume>,
    /// The port plumbed to waste, if any.
    pub waste: Option<u32>,
}

/// Settings of a temperature controller on Modbus RTU (a heating block or jacket).
#[derive(Debug, Clone, PartialEq)]
pub struct ModbusConfig {
    /// The slave address, 1 to 247.
    pub address: u8,
    /// The controller's register map.
    pub map: Arc<crate::modbus_map::ModbusMap>,
    /// The highest set point the driver will send.
    pub max_temperature: Temperature,
    /// How close to the set point the process value must be to count as having reached it.
    pub tolerance: Temperature,
}

/// Settings of an instrument declared in RON ([`crate::declared`]).
#[derive(Debug, Clone, PartialEq)]
pub struct DeclaredConfig {
    /// The declaration.
    pub declaration: Arc<crate::declared::Declaration>,
    /// The model, one of the declaration's variants.
    pub model: String,
    /// Every setting: the declaration's defaults, then the model's, then the lab file's.
    pub settings: BTreeMap<String, crate::declared::Value>,
}

impl DeclaredConfig {
    /// A template of the declaration over this instrument's settings (a rate, a tolerance, a settling time), as a
    /// number, or why it is not one.
    pub fn number(&self, template: &crate::declared::Template) -> Result<f64, String> {
        let text = template.render(&|n| self.settings.get(n).cloned())?;
        text.trim().parse().map_err(|_| format!("`{}` gives `{text}`, not a number", template.text))
    }
}

/// Message terminator of a text protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename = "Terminator")]
pub enum Terminator {
    /// Line feed.
    #[default]
    Lf,
    /// Carriage return.
    Cr,
    /// Carriage return, line feed.
    CrLf,
}

impl Terminator {
    /// The terminator's bytes.
    pub fn bytes(self) -> &'static [u8] {
        match self {
            Terminator::Lf => b"\n",
            Terminator::Cr => b"\r",
            Terminator::CrLf => b"\r\n",
        }
    }
}

/// Settings of a SCPI thermometer or multimeter measuring temperature.
#[derive(Debug, Clone, PartialEq)]
pub struct ScpiConfig {
    /// The model field `*IDN?` must report, such as `MODEL 2000`.
    pub model: String,
    /// The message terminator the instrument is set to.
    pub terminator: Terminator,
}

/// Settings of an IKA hotplate-stirrer (NAMUR protocol).
#[derive(Debug, Clone, PartialEq)]
pub struct IkaConfig {
    /// The name the hotplate answers to `IN_NAME`, such as `RCT digital`.
    pub model: String,
    /// The highest set point the driver will send.
    pub max_temperature: Temperature,
    /// The highest stirring speed the driver will send.
    pub max_speed: Speed,
    /// How close to the set point the plate must be to count as having reached it.
    pub tolerance: Temperature,
    /// The longest the plate keeps heating and stirring without hearing from the controller, if the lab file sets
    /// it (`OUT_WD1@m`, 20 s to 25 min): within a hold the driver shortens it to the hold's time left, so a plate
    /// whose controller is gone stops at the end of its hold. Without it the driver arms a short watchdog.
    pub watchdog: Option<Duration>,
}

/// The watchdog times an IKA plate accepts (`OUT_WD1@m`), in seconds.
pub const IKA_WATCHDOG_RANGE: (f64, f64) = (20.0, 1500.0);

/// The most pixels a spectrometer's detector may have: more than any Ocean Optics detector, few enough that a
/// spectrum's size is bounded (a spectrum of `pixels` four-byte words is what the driver waits for, and what the
/// simulator builds).
pub const MAX_PIXELS: usize = 16_384;

/// Settings of an Ocean Optics Flame spectrometer (RS-232 command set).
#[derive(Debug, Clone, PartialEq)]
pub struct FlameConfig {
    /// Integration time per scan.
    pub integration: Duration,
    /// Scans averaged per reading.
    pub scans: u16,
    /// Wavelength calibration: wavelength(pixel) = c0 + c1 p + c2 p^2 + c3 p^3, in nanometres.
    pub calibration: [f64; 4],
    /// Pixels on the detector, 1 to [`MAX_PIXELS`].
    pub pixels: usize,
}

impl FlameConfig {
    /// The wavelength of pixel `p`.
    pub fn wavelength(&self, p: usize) -> f64 {
        let p = p as f64;
        let c = self.calibration;
        c[0] + c[1] * p + c[2] * p * p + c[3] * p * p * p
    }

    /// The wavelength range the detector covers.
    pub fn range(&self) -> (Wavelength, Wavelength) {
        let a = self.wavelength(0);
        let b = self.wavelength(self.pixels.saturating_sub(1));
        (Wavelength(a.min(b)), Wavelength(a.max(b)))
    }
}

/// Settings of a G-code gantry with a gripper (Marlin dialect).
#[derive(Debug, Clone, PartialEq)]
pub struct GantryConfig {
    /// Travel speed in millimetres per minute.
    pub feed_rate: f64,
    /// The far corner of the travel volume; the near corner is the origin.
    pub travel: Point,
    /// Servo angle that closes the gripper.
    pub grip: f64,
    /// Servo angle that opens the gripper.
    pub release: f64,
}

/// A driver and its settings.
#[derive(Debug, Clone, PartialEq)]
pub enum DriverConfig {
    /// Tecan Cavro XCalibur syringe pump, DT protocol.
    CavroXCalibur(CavroConfig),
    /// IKA hotplate-stirrer, NAMUR protocol.
    IkaHotplate(IkaConfig),
    /// Ocean Optics Flame spectrometer, RS-232 binary command set.
    OceanFlame(FlameConfig),
    /// G-code gantry with a servo gripper.
    GcodeGantry(GantryConfig),
    /// Mettler Toledo balance, MT-SICS.
    MettlerBalance(BalanceConfig),
    /// VICI Valco selector valve.
    ViciValve(ValveConfig),
    /// Temperature controller on Modbus RTU.
    ModbusTemperature(ModbusConfig),
    /// SCPI thermometer or multimeter.
    ScpiThermometer(ScpiConfig),
    /// An instrument declared in RON.
    Declared(DeclaredConfig),
}

impl DriverConfig {
    /// The driver's name as written in lab files.
    pub fn name(&self) -> &'static str {
        match self {
            DriverConfig::CavroXCalibur(_) => "CavroXCalibur",
            DriverConfig::IkaHotplate(_) => "IkaHotplate",
            DriverConfig::OceanFlame(_) => "OceanFlame",
            DriverConfig::GcodeGantry(_) => "GcodeGantry",
            DriverConfig::MettlerBalance(_) => "MettlerBalance",
            DriverConfig::ViciValve(_) => "ViciValve",
            DriverConfig::ModbusTemperature(_) => "ModbusTemperature",
            DriverConfig::ScpiThermometer(_) => "ScpiThermometer",
            DriverConfig::Declared(_) => "Declared",
        }
    }

    /// The kind of instrument the driver drives.
    pub fn kind(&self) -> InstrumentKind {
        match self {
            DriverConfig::CavroXCalibur(_) => InstrumentKind::SyringePump,
            DriverConfig::IkaHotplate(_) => InstrumentKind::Hotplate,
            DriverConfig::OceanFlame(_) => InstrumentKind::Spectrometer,
            DriverConfig::GcodeGantry(_) => InstrumentKind::Gantry,
            DriverConfig::MettlerBalance(_) => InstrumentKind::Balance,
            DriverConfig::ViciValve(_) => InstrumentKind::Valve,
            DriverConfig::ModbusTemperature(_) => InstrumentKind::TemperatureController,
            DriverConfig::ScpiThermometer(_) => InstrumentKind::Thermometer,
            DriverConfig::Declared(d) => d.declaration.kind,
        }
    }

    /// The line settings the instrument ships with.
    pub fn default_line(&self) -> LineSettings {
        match self {
            DriverConfig::CavroXCalibur(_)
            | DriverConfig::OceanFlame(_)
            | DriverConfig::MettlerBalance(_)
            | DriverConfig::ViciValve(_)
            | DriverConfig::ScpiThermometer(_) => LineSettings::n81(9600),
            // As the controller ships, which its map says.
            DriverConfig::ModbusTemperature(m) => m.map.line_settings(),
            DriverConfig::Declared(d) => d.declaration.line,
            // NAMUR: 9600 baud, 7 data bits, even parity, 1 stop bit.
            DriverConfig::IkaHotplate(_) => {
                LineSettings { data_bits: 7, parity: Parity::Even, ..LineSettings::n81(9600) }
            }
            DriverConfig::GcodeGantry(_) => LineSettings::n81(115_200),
        }
    }
}

/// One instrument of the lab.
#[derive(Debug, Clone, PartialEq)]
pub struct InstrumentSpec {
    /// Its name, unique in the lab.
    pub name: String,
    /// The driver and its settings.
    pub driver: DriverConfig,
    /// Where it is connected.
    pub port: PortSpec,
    /// The deck position where it acts on vessels (none for a gantry).
    pub position: Option<String>,
    /// The serial line settings.
    pub line: LineSettings,
    /// The faults its simulator injects, if any (simulated instruments only).
    pub faults: Option<Faults>,
}

/// The faults a simulator injects, each drawn per reply (or per command, for busy, firmware errors and partial
/// moves) from a generator seeded by the lab, so a run with the same seed sees the same faults.
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// Seeds the faults; by default the lab's simulation seed mixed with the instrument's name.
    pub seed: Option<u64>,
    /// Extra wall time before each reply.
    pub latency: Latency,
    /// Probability that a command gets no reply at all.
    pub no_reply: f64,
    /// Probability that a reply arrives with one byte corrupted.
    pub garbled: f64,
    /// Probability that only the first part of a reply arrives.
    pub truncated: f64,
    /// Probability that a reply's checksum is wrong (OEM pumps and Modbus only).
    pub bad_checksum: f64,
    /// Probability that the instrument answers a command as busy instead of running it.
    pub busy: f64,
    /// Probability that the instrument answers a command with a firmware error code.
    pub firmware_error: f64,
    /// Probability that a pump's move stops halfway with a plunger overload (pumps only).
    pub partial: f64,
    /// A disconnect after a number of commands, and the reconnection after a delay.
    pub disconnect: Option<Disconnect>,
}

impl Faults {
    /// Faults that never happen.
    pub fn none() -> Self {
        Faults {
            seed: None,
            latency: Latency::None,
            no_reply: 0.0,
            garbled: 0.0,
            truncated: 0.0,
            bad_checksum: 0.0,
            busy: 0.0,
            firmware_error: 0.0,
            partial: 0.0,
            disconnect: None,
        }
    }
}

/// Extra wall time before a simulator's replies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Latency {
    /// None.
    None,
    /// Always this long.
    Fixed(std::time::Duration),
    /// Uniform between two durations.
    Uniform {
        /// The shortest.
        min: std::time::Duration,
        /// The longest.
        max: std::time::Duration,
    },
    /// Exponentially distributed with this mean: mostly short, now and then long.
    Exponential {
        /// The mean.
        mean: std::time::Duration,
    },
}

impl Latency {
    /// The mean extra wall time before a reply.
    pub fn mean(&self) -> std::time::Duration {
        match *self {
            Latency::None => std::time::Duration::ZERO,
            Latency::Fixed(d) | Latency::Exponential { mean: d } => d,
            Latency::Uniform { min, max } => (min + max) / 2,
        }
    }
}

/// A simulated unplugging: the port disappears after `after` commands and comes back after `down` of wall time,
/// then counts again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Disconnect {
    /// Commands handled before the port disappears.
    pub after: u32,
    /// How long it stays away.
    pub down: std::time::Duration,
}

impl InstrumentSpec {
    /// The instrument's kind.
    pub fn kind(&self) -> InstrumentKind {
        self.driver.kind()
    }
}

/// Settings for running the lab's simulators.
#[derive(Debug, Clone, PartialEq)]
pub struct Simulation {
    /// Seeds the simulators' hidden response surface and noise.
    pub seed: u64,
    /// Lab seconds per wall second.
    pub time_scale: f64,
    /// Where the simulators write their ledger (what physically happened) and the faults they injected when they
    /// stop, as RON; relative paths are from the lab file's folder.
    pub ledger: Option<std::path::PathBuf>,
}

/// A validated lab.
#[derive(Debug, Clone)]
pub struct Lab {
    /// The lab's name.
    pub name: String,
    /// For people.
    pub description: String,
    /// The deck.
    pub deck: Deck,
    /// The instruments, sorted by name.
    pub instruments: Vec<InstrumentSpec>,
    /// The reagents, by name (empty for a lab that declares none).
    pub reagents: BTreeMap<String, Reagent>,
    /// Simulator settings.
    pub simulation: Simulation,
    /// The file it was loaded from, for provenance.
    pub source: Arc<SourceFile>,
}

impl Lab {
    /// The instrument called `name`.
    pub fn instrument(&self, name: &str) -> Option<&InstrumentSpec> {
        self.instruments.iter().find(|i| i.name == name)
    }

    /// The instruments of a kind.
    pub fn of_kind(&self, kind: InstrumentKind) -> impl Iterator<Item = &InstrumentSpec> {
        self.instruments.iter().filter(move |i| i.kind() == kind)
    }

    /// The instruments a step reference may run on.
    pub fn candidates<'a>(&'a self, on: &'a InstrumentRef) -> impl Iterator<Item = &'a InstrumentSpec> {
        self.instruments.iter().filter(move |i| match on {
            InstrumentRef::Kind(k) => i.kind() == *k,
            InstrumentRef::Named(n) => &i.name == n,
        })
    }

    /// Whether every instrument is simulated.
    pub fn all_simulated(&self) -> bool {
        self.instruments.iter().all(|i| i.port.is_simulated())
    }

    /// Whether every instrument is simulated in the controller's own process (`port: Simulated`): such a lab runs
    /// on a discrete-event clock ([`crate::Clock::discrete`]), whose lab time the controller's own pace never adds
    /// to.
    pub fn simulated_in_process(&self) -> bool {
        self.instruments.iter().all(|i| i.port == PortSpec::Simulated)
    }

    /// The deck positions a transfer may take the vessel to: positions allowed by its destination where every step
    /// it serves has a candidate instrument standing there. Rack destinations return an empty list.
    pub fn transfer_positions(&self, protocol: &Protocol, transfer: usize) -> Vec<String> {
        self.transfer_positions_with(protocol, transfer, &self.allowed_reagents(protocol, &BTreeMap::new()))
    }

    /// [`Lab::transfer_positions`] for a protocol whose reagent parameters may take the reagents in `allowed`
    /// (see [`Lab::allowed_reagents`]): a position also needs, for every dispense the transfer serves, a pump there
    /// that reaches each reagent the dispense may add.
    pub fn transfer_positions_with(
        &self,
        protocol: &Protocol,
        transfer: usize,
        allowed: &BTreeMap<String, Vec<String>>,
    ) -> Vec<String> {
        let reachable = |pos: &str| {
            let served = protocol.vessel_segments().iter().find(|(t, _)| *t == transfer).map(|(_, s)| s.as_slice());
            served.unwrap_or_default().iter().all(|&s| {
                let on = &protocol.steps()[s].on;
                protocol.reagents_of(s, allowed).iter().all(|r| {
                    self.sources_at(r, pos).iter().any(|src| self.candidates(on).any(|c| c.name == src.pump()))
                })
            })
        };
        self.transfer_positions_by_kind(protocol, transfer).into_iter().filter(|p| reachable(p)).collect()
    }

    /// The reagents each reagent parameter of `protocol` may take: the campaign's levels in `levels` where it
    /// sets them, else the reagents the parameter's role or list allows in this lab.
    pub fn allowed_reagents(
        &self,
        protocol: &Protocol,
        levels: &BTreeMap<String, Vec<String>>,
    ) -> BTreeMap<String, Vec<String>> {
        protocol
            .reagent_parameters()
            .iter()
            .map(|p| (p.name.clone(), levels.get(&p.name).cloned().unwrap_or_else(|| self.reagents_for(&p.slot))))
            .collect()
    }

    /// The bottles ([`Source::key`]) that can serve step `step` of `protocol`, a dispense of a reagent: those a pump
    /// that can run the step reaches, standing at a position the vessel may be taken to for it. A bottle elsewhere
    /// holds the reagent, but no pump where the vessel stands can draw from it.
    pub fn bottles_serving(&self, protocol: &Protocol, step: usize) -> std::collections::BTreeSet<String> {
        let Some(transfer) = protocol.transfer_serving(step) else { return Default::default() };
        let positions = self.transfer_positions(protocol, transfer);
        let on = &protocol.steps()[step].on;
        self.bottles()
            .into_iter()
            .filter(|(s, _)| {
                let pump = self.instrument(s.pump());
                self.candidates(on).any(|c| c.name == s.pump())
                    && pump.and_then(|p| p.position.as_deref()).is_some_and(|p| positions.iter().any(|q| q == p))
            })
            .map(|(s, _)| s.key())
            .collect()
    }

    /// The positions a transfer may go to by the instruments' kinds and names alone.
    fn transfer_positions_by_kind(&self, protocol: &Protocol, transfer: usize) -> Vec<String> {
        let step = &protocol.steps()[transfer];
        let Op::Transfer { to } = &step.op else { return Vec::new() };
        let served =
            protocol.vessel_segments().iter().find(|(t, _)| *t == transfer).map(|(_, s)| s.clone()).unwrap_or_default();
        let mut out = Vec::new();
        for pos in self.deck.positions.keys() {
            let here: Vec<&InstrumentSpec> =
                self.instruments.iter().filter(|i| i.position.as_deref() == Some(pos.as_str())).collect();
            let allowed = match to {
                Destination::Rack => false,
                Destination::Kind(k) => here.iter().any(|i| i.kind() == *k),
                Destination::Named(n) => here.iter().any(|i| &i.name == n),
            };
            let serves_all = served.iter().all(|&s| {
                let on = &protocol.steps()[s].on;
                here.iter().any(|i| match on {
                    InstrumentRef::Kind(k) => i.kind() == *k,
                    InstrumentRef::Named(n) => &i.name == n,
                })
            });
            if allowed && serves_all {
                out.push(pos.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
