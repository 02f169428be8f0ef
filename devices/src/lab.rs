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
//!
//! It is one file because every check reports its diagnostic at the setting's span: the file type, its validation
//! and the checks against a protocol all read the one span index built here.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use protocols::diagnostic::{Diagnostic, Diagnostics, SourceFile};
use protocols::ron_file::{check_syntax, parse_section, suggest};
use protocols::source::{Node, Seg, index};
use protocols::units::{Dimension, Duration, Mass, Quantity, Speed, Temperature, Volume, Wavelength, trim_float};
use protocols::validate::valid_name;
use protocols::{Destination, InstrumentKind, InstrumentRef, Op, Operation, Protocol};
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::capability::Place;
use crate::transport::{LineSettings, Parity, Reconnect};

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
    /// What the reservoir on the pump's input port holds.
    pub reservoir: String,
    /// The framing: DT (the default) or OEM.
    pub protocol: CavroProtocol,
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
    /// What the reservoir on each port holds, for a valve that feeds a pump.
    pub ports: BTreeMap<u32, String>,
}

/// Settings of a temperature controller on Modbus RTU (a heating block or jacket).
#[derive(Debug, Clone, PartialEq)]
pub struct ModbusConfig {
    /// The slave address, 1 to 247.
    pub address: u8,
    /// The model code the controller holds in its identity register.
    pub model_code: u16,
    /// The highest set point the driver will send.
    pub max_temperature: Temperature,
    /// How close to the set point the process value must be to count as having reached it.
    pub tolerance: Temperature,
}

impl ModbusConfig {
    /// The model code assumed when the lab file gives none.
    pub const DEFAULT_MODEL_CODE: u16 = 7001;
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
            // The Modbus serial line specification's default: 19200 baud, even parity [U].
            DriverConfig::ModbusTemperature(_) => LineSettings { parity: Parity::Even, ..LineSettings::n81(19_200) },
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

    /// The deck positions a transfer may take the vessel to: positions allowed by its destination where every step
    /// it serves has a candidate instrument standing there. Rack destinations return an empty list.
    pub fn transfer_positions(&self, protocol: &Protocol, transfer: usize) -> Vec<String> {
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

    /// Checks that this lab can run `protocol`. Diagnostics point into the protocol file.
    pub fn check_protocol(&self, protocol: &Protocol) -> Diagnostics {
        let src = protocol.source();
        let tree = index(&src.text);
        let mut diags = Diagnostics::new();
        let step_span = |i: usize, field: &str| tree.span_of(&[Seg::Field("steps"), Seg::Index(i), Seg::Field(field)]);
        let names: Vec<&str> = self.instruments.iter().map(|i| i.name.as_str()).collect();
        let mut refs_ok = true;
        for (i, step) in protocol.steps().iter().enumerate() {
            match &step.on {
                InstrumentRef::Named(n) => match self.instrument(n) {
                    None => {
                        refs_ok = false;
                        let help = match suggest(n, &names) {
                            Some(s) => format!("did you mean `{s}`? Lab `{}` has: {}", self.name, names.join(", ")),
                            None => format!("lab `{}` has: {}", self.name, names.join(", ")),
                        };
                        diags.push(
                            Diagnostic::error(
                                codes::UNKNOWN_INSTRUMENT,
                                src,
                                step_span(i, "on"),
                                format!("step `{}` runs on `{n}`, which lab `{}` does not have", step.id, self.name),
                            )
                            .with_help(help),
                        );
                    }
                    Some(spec) if spec.kind() != step.op.kind() => {
                        refs_ok = false;
                        diags.push(
                            Diagnostic::error(
                                codes::UNKNOWN_INSTRUMENT,
                                src,
                                step_span(i, "on"),
                                format!(
                                    "step `{}` needs {} to {}, but `{n}` is {}",
                                    step.id,
                                    step.op.kind().phrase(),
                                    step.op.name(),
                                    spec.kind().phrase()
                                ),
                            )
                            .with_help(format!(
                                "name {} of lab `{}`: {}",
                                step.op.kind().phrase(),
                                self.name,
                                self.of_kind(step.op.kind()).map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
                            )),
                        );
                    }
                    Some(_) => {}
                },
                InstrumentRef::Kind(k) => {
                    if self.of_kind(*k).next().is_none() {
                        refs_ok = false;
                        let span = if tree.get(&[Seg::Field("steps"), Seg::Index(i), Seg::Field("on")]).is_some() {
                            step_span(i, "on")
                        } else {
                            step_span(i, "op")
                        };
                        diags.push(
                            Diagnostic::error(
                                codes::MISSING_KIND,
                                src,
                                span,
                                format!("step `{}` needs {}, and lab `{}` has none", step.id, k.phrase(), self.name),
                            )
                            .with_help(format!(
                                "add {} to the lab file, or run the protocol in a lab that has one",
                                k.phrase()
                            )),
                        );
                    }
                }
            }
            if let Op::Transfer { to: Destination::Named(n) } = &step.op
                && self.instrument(n).and_then(|s| s.position.as_ref()).is_none()
            {
                refs_ok = false;
                diags.push(
                    Diagnostic::error(
                        codes::UNKNOWN_INSTRUMENT,
                        src,
                        tree.span_of(&[Seg::Field("steps"), Seg::Index(i), Seg::Field("op"), Seg::Field("to")]),
                        format!(
                            "transfer `{}` goes to `{n}`, which is not an instrument with a deck position in lab `{}`",
                            step.id, self.name
                        ),
                    )
                    .with_help(format!(
                        "positioned instruments: {}",
                        self.instruments
                            .iter()
                            .filter(|s| s.position.is_some())
                            .map(|s| s.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                );
            }
        }
        if refs_ok {
            for (t, served) in protocol.vessel_segments() {
                let step = &protocol.steps()[*t];
                if matches!(step.op, Op::Transfer { to: Destination::Rack }) {
                    continue;
                }
                if self.transfer_positions(protocol, *t).is_empty() {
                    let needs: Vec<String> = served
                        .iter()
                        .map(|&s| {
                            let st = &protocol.steps()[s];
                            format!("`{}` ({})", st.id, st.on)
                        })
                        .collect();
                    diags.push(
                        Diagnostic::error(
                            codes::NO_POSITION,
                            src,
                            step_span(*t, "id"),
                            format!(
                                "no deck position in lab `{}` has the instruments for every step after transfer `{}`: {}",
                                self.name,
                                step.id,
                                needs.join(", ")
                            ),
                        )
                        .with_help("put those instruments at one position in the lab file, or add a transfer between the steps"),
                    );
                }
            }
        }
        self.check_limits(protocol, &tree, &mut diags);
        diags
    }

    /// Why no instrument of this lab that could run a step on `on` accepts `action`'s values (a temperature above
    /// every candidate hotplate's limit, say), or `None` if one does. [`Lab::check_protocol`] checks a protocol's
    /// whole parameter ranges; this checks one experiment's bound values, for a lab that can run only part of the
    /// ranges (a fleet's workcell refuses the proposals beyond its limits instead of failing them).
    pub fn action_beyond_limits(&self, on: &InstrumentRef, action: &protocols::Action) -> Option<String> {
        use protocols::Action as A;
        let candidates: Vec<&InstrumentSpec> = self.candidates(on).collect();
        let within = |value: f64, limit: &dyn Fn(&InstrumentSpec) -> Option<(f64, f64)>| {
            candidates.iter().any(|c| limit(c).is_none_or(|(a, b)| value >= a && value <= b))
        };
        let hotplate_temperature = |c: &InstrumentSpec| match &c.driver {
            DriverConfig::IkaHotplate(h) => Some((-273.15, h.max_temperature.0)),
            _ => None,
        };
        let hotplate_speed = |c: &InstrumentSpec| match &c.driver {
            DriverConfig::IkaHotplate(h) => Some((0.0, h.max_speed.0)),
            _ => None,
        };
        let (what, value, unit, ok) = match action {
            A::Heat { temperature, stir, .. } => {
                if !within(temperature.0, &hotplate_temperature) {
                    ("temperature", temperature.0, "degC", false)
                } else if let Some(s) = stir
                    && !within(s.0, &hotplate_speed)
                {
                    ("stirring speed", s.0, "rpm", false)
                } else {
                    return None;
                }
            }
            A::Stir { speed, .. } => ("stirring speed", speed.0, "rpm", within(speed.0, &hotplate_speed)),
            A::Measure { wavelength, .. } => {
                let ok = within(wavelength.0, &|c: &InstrumentSpec| match &c.driver {
                    DriverConfig::OceanFlame(f) => {
                        let (a, b) = f.range();
                        Some((a.0, b.0))
                    }
                    _ => None,
                });
                ("wavelength", wavelength.0, "nm", ok)
            }
            A::HoldTemperature { temperature, .. } => {
                let ok = within(temperature.0, &|c: &InstrumentSpec| match &c.driver {
                    DriverConfig::ModbusTemperature(m) => Some((-273.15, m.max_temperature.0)),
                    _ => None,
                });
                ("temperature", temperature.0, "degC", ok)
            }
            A::Select { position } => {
                let ok = within(f64::from(*position), &|c: &InstrumentSpec| match &c.driver {
                    DriverConfig::ViciValve(v) => Some((1.0, f64::from(v.positions))),
                    _ => None,
                });
                ("position", f64::from(*position), "", ok)
            }
            A::Transfer { .. } | A::Dispense { .. } | A::Weigh { .. } | A::ReadTemperature { .. } => return None,
        };
        (!ok).then(|| {
            let names: Vec<&str> = candidates.iter().map(|c| c.name.as_str()).collect();
            format!(
                "{what} {} {unit} is beyond the limits of {} in lab `{}`",
                trim_float(value),
                if names.is_empty() { "every instrument".to_owned() } else { names.join(", ") },
                self.name
            )
        })
    }

    fn check_limits(&self, protocol: &Protocol, tree: &Node, diags: &mut Diagnostics) {
        let src = protocol.source();
        // The largest canonical value an argument can take: the literal, or the parameter's maximum.
        let max_of = |arg: &protocols::Arg<f64>| -> f64 {
            match arg {
                protocols::Arg::Value(v) => *v,
                protocols::Arg::Param(p) => {
                    let p = protocol.parameter(p).expect("validated");
                    p.to_canonical(p.max).value.max(p.to_canonical(p.min).value)
                }
            }
        };
        let min_of = |arg: &protocols::Arg<f64>| -> f64 {
            match arg {
                protocols::Arg::Value(v) => *v,
                protocols::Arg::Param(p) => {
                    let p = protocol.parameter(p).expect("validated");
                    p.to_canonical(p.max).value.min(p.to_canonical(p.min).value)
                }
            }
        };
        for (i, step) in protocol.steps().iter().enumerate() {
            let candidates: Vec<&InstrumentSpec> = self.candidates(&step.on).collect();
            if candidates.is_empty() {
                continue;
            }
            let mut check = |field: &str,
                             arg: protocols::Arg<f64>,
                             dim: Dimension,
                             limit: &dyn Fn(&InstrumentSpec) -> Option<(f64, f64)>| {
                let (lo, hi) = (min_of(&arg), max_of(&arg));
                let ok = candidates.iter().any(|c| limit(c).is_none_or(|(a, b)| lo >= a && hi <= b));
                if ok {
                    return;
                }
                let ranges: Vec<String> = candidates
                    .iter()
                    .filter_map(|c| {
                        limit(c).map(|(a, b)| {
                            format!("{} {}..={} {}", c.name, trim_float(a), trim_float(b), dim.canonical_symbol())
                        })
                    })
                    .collect();
                let what = match &arg {
                    protocols::Arg::Param(p) => format!(
                        "parameter `{p}` allows {}..={} {}",
                        trim_float(lo),
                        trim_float(hi),
                        dim.canonical_symbol()
                    ),
                    protocols::Arg::Value(v) => format!("{} {}", trim_float(*v), dim.canonical_symbol()),
                };
                diags.push(
                    Diagnostic::error(
                        codes::LIMIT,
                        src,
                        tree.span_of(&[Seg::Field("steps"), Seg::Index(i), Seg::Field("op"), Seg::Field(field)]),
                        format!("`{field}` of step `{}` is beyond what lab `{}` can do: {what}", step.id, self.name),
                    )
                    .with_help(format!(
                        "the instruments' limits are: {}; narrow the value or the parameter's range",
                        ranges.join(", ")
                    )),
                );
            };
            let q = |a: &protocols::Arg<Quantity>| -> protocols::Arg<f64> { map_arg(a) };
            match &step.op {
                Op::Heat { temperature, stir, .. } => {
                    check("temperature", q(&up(temperature)), Dimension::Temperature, &|c| match &c.driver {
                        DriverConfig::IkaHotplate(h) => Some((-273.15, h.max_temperature.0)),
                        _ => None,
                    });
                    if let Some(s) = stir {
                        check("stir", q(&up(s)), Dimension::RotationalSpeed, &|c| match &c.driver {
                            DriverConfig::IkaHotplate(h) => Some((0.0, h.max_speed.0)),
                            _ => None,
                        });
                    }
                }
                Op::Stir { speed, .. } => {
                    check("speed", q(&up(speed)), Dimension::RotationalSpeed, &|c| match &c.driver {
                        DriverConfig::IkaHotplate(h) => Some((0.0, h.max_speed.0)),
                        _ => None,
                    });
                }
                Op::Measure { wavelength, .. } => {
                    check("wavelength", q(&up(wavelength)), Dimension::Wavelength, &|c| match &c.driver {
                        DriverConfig::OceanFlame(f) => {
                            let (a, b) = f.range();
                            Some((a.0, b.0))
                        }
                        _ => None,
                    });
                }
                Op::HoldTemperature { temperature, .. } => {
                    check("temperature", q(&up(temperature)), Dimension::Temperature, &|c| match &c.driver {
                        DriverConfig::ModbusTemperature(m) => Some((-273.15, m.max_temperature.0)),
                        _ => None,
                    });
                }
                Op::Select { position } => {
                    let arg = protocols::Arg::Value(f64::from(*position));
                    check("position", arg, Dimension::Dimensionless, &|c| match &c.driver {
                        DriverConfig::ViciValve(v) => Some((1.0, f64::from(v.positions))),
                        _ => None,
                    });
                }
                Op::Transfer { .. } | Op::Dispense { .. } | Op::Weigh { .. } | Op::ReadTemperature { .. } => {}
            }
        }
    }
}

fn up<T: Into<Quantity> + Copy>(a: &protocols::Arg<T>) -> protocols::Arg<Quantity> {
    match a {
        protocols::Arg::Value(v) => protocols::Arg::Value((*v).into()),
        protocols::Arg::Param(p) => protocols::Arg::Param(p.clone()),
    }
}

fn map_arg(a: &protocols::Arg<Quantity>) -> protocols::Arg<f64> {
    match a {
        protocols::Arg::Value(q) => protocols::Arg::Value(q.value),
        protocols::Arg::Param(p) => protocols::Arg::Param(p.clone()),
    }
}

// ---- The file format -------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename = "Lab", deny_unknown_fields)]
struct LabHeader {
    format: u32,
    name: String,
    #[serde(default)]
    description: String,
    #[expect(dead_code, reason = "read section by section; named here so unknown top-level fields are refused")]
    deck: IgnoredAny,
    #[expect(dead_code, reason = "read section by section; named here so unknown top-level fields are refused")]
    instruments: IgnoredAny,
    #[serde(default)]
    simulation: Option<SimulationFile>,
}

#[derive(Debug, Deserialize)]
#[serde(rename = "Deck", deny_unknown_fields)]
struct DeckFile {
    safe_z: f64,
    rack: Rack,
    positions: BTreeMap<String, Point>,
}

#[derive(Debug, Deserialize)]
#[serde(rename = "Simulation", deny_unknown_fields)]
struct SimulationFile {
    seed: u64,
    #[serde(default = "default_scale")]
    time_scale: f64,
    #[serde(default)]
    ledger: Option<String>,
}

fn default_scale() -> f64 {
    1.0
}

#[derive(Debug, Deserialize)]
#[serde(rename = "Instrument", deny_unknown_fields)]
struct InstrumentFile {
    driver: DriverFile,
    port: PortFile,
    #[serde(default)]
    position: Option<String>,
    #[serde(default)]
    serial: Option<SerialFile>,
    #[serde(default)]
    faults: Option<FaultsFile>,
}

#[derive(Debug, Deserialize)]
#[serde(rename = "Faults", deny_unknown_fields)]
struct FaultsFile {
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    latency: Option<LatencyFile>,
    #[serde(default)]
    no_reply: f64,
    #[serde(default)]
    garbled: f64,
    #[serde(default)]
    truncated: f64,
    #[serde(default)]
    bad_checksum: f64,
    #[serde(default)]
    busy: f64,
    #[serde(default)]
    firmware_error: f64,
    #[serde(default)]
    partial: f64,
    #[serde(default)]
    disconnect: Option<DisconnectFile>,
}

#[derive(Debug, Deserialize)]
#[serde(rename = "Latency")]
enum LatencyFile {
    Fixed(String),
    Uniform { min: String, max: String },
    Exponential { mean: String },
}

#[derive(Debug, Deserialize)]
#[serde(rename = "Disconnect", deny_unknown_fields)]
struct DisconnectFile {
    after: u32,
    down: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename = "Reconnect", deny_unknown_fields)]
struct ReconnectFile {
    attempts: u32,
    #[serde(default)]
    delay: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename = "Port")]
enum PortFile {
    Simulated,
    Simulator(String),
    Serial(String),
}

#[derive(Debug, Deserialize)]
#[serde(rename = "Serial", deny_unknown_fields)]
struct SerialFile {
    #[serde(default)]
    baud: Option<u32>,
    #[serde(default)]
    data_bits: Option<u8>,
    #[serde(default)]
    parity: Option<Parity>,
    #[serde(default)]
    stop_bits: Option<u8>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    reconnect: Option<ReconnectFile>,
}

#[derive(Debug, Deserialize)]
#[serde(rename = "Driver", deny_unknown_fields)]
enum DriverFile {
    CavroXCalibur {
        address: u8,
        syringe: String,
        #[serde(default)]
        top_speed: Option<u32>,
        #[serde(default)]
        reservoir: String,
        #[serde(default)]
        protocol: CavroProtocol,
    },
    IkaHotplate {
        #[serde(default)]
        model: Option<String>,
        max_temperature: String,
        max_speed: String,
        #[serde(default)]
        tolerance: Option<String>,
        #[serde(default)]
        watchdog: Option<String>,
    },
    OceanFlame {
        integration: String,
        scans: u16,
        calibration: Vec<f64>,
        #[serde(default)]
        pixels: Option<usize>,
    },
    GcodeGantry {
        feed_rate: f64,
        travel: Point,
        grip: f64,
        release: f64,
    },
    MettlerBalance {
        model: String,
        capacity: String,
        #[serde(default)]
        settle: Option<String>,
    },
    ViciValve {
        positions: u32,
        #[serde(default)]
        id: Option<char>,
        #[serde(default)]
        feeds: Option<String>,
        #[serde(default)]
        ports: BTreeMap<u32, String>,
    },
    ModbusTemperature {
        address: u8,
        max_temperature: String,
        #[serde(default)]
        model_code: Option<u16>,
        #[serde(default)]
        tolerance: Option<String>,
    },
    ScpiThermometer {
        model: String,
        #[serde(default)]
        terminator: Terminator,
    },
}

/// Loads and validates a lab file.
pub fn load_lab(source: Arc<SourceFile>) -> Result<Lab, Diagnostics> {
    let mut diags = Diagnostics::new();
    if let Err(d) = check_syntax(&source) {
        diags.push(d);
        return Err(diags);
    }
    let tree = index(&source.text);
    let err = |diags: &mut Diagnostics, code, span: Range<usize>, msg: String, help: String| {
        diags.push(Diagnostic::error(code, &source, span, msg).with_help(help));
    };
    let header = match parse_section::<LabHeader>(&source, 0..source.text.len(), "lab") {
        Ok(h) => Some(h),
        Err(d) => {
            diags.push(d);
            None
        }
    };
    if let Some(h) = &header
        && h.format != FORMAT
    {
        err(
            &mut diags,
            codes::FORMAT,
            tree.span_of(&[Seg::Field("format")]),
            format!("unsupported lab format {}", h.format),
            format!("this version of lab reads `format: {FORMAT}`"),
        );
    }
    let deck = tree.get(&[Seg::Field("deck")]).and_then(|n| {
        match parse_section::<DeckFile>(&source, n.span.clone(), "deck") {
            Ok(d) => Some(d),
            Err(d) => {
                diags.push(d);
                None
            }
        }
    });
    let mut instruments = Vec::new();
    if let Some(node) = tree.get(&[Seg::Field("instruments")]) {
        for (key, value) in &node.entries {
            let Some(name) = key.string.clone() else { continue };
            if !valid_name(&name) {
                err(
                    &mut diags,
                    codes::NAME,
                    key.span.clone(),
                    format!("`{name}` is not a valid instrument name"),
                    "use lower-case letters, digits and `_`, starting with a letter".into(),
                );
            }
            if instruments.iter().any(|i: &InstrumentSpec| i.name == name) {
                err(
                    &mut diags,
                    codes::NAME,
                    key.span.clone(),
                    format!("instrument `{name}` is declared twice"),
                    "rename or remove one of them".into(),
                );
                continue;
            }
            match parse_section::<InstrumentFile>(&source, value.span.clone(), "instrument") {
                Ok(f) => {
                    if let Some(spec) = instrument(&source, &name, f, value, deck.as_ref(), &mut diags) {
                        instruments.push(spec);
                    }
                }
                Err(d) => diags.push(d),
            }
        }
        if node.entries.is_empty() {
            err(
                &mut diags,
                codes::NAME,
                node.span.clone(),
                "the lab has no instruments".into(),
                "add instruments under `instruments: { \"name\": (driver: ..., port: ...) }`".into(),
            );
        }
    }
    if let (Some(deck), Some(gantry)) = (&deck, instruments.iter().find(|i| i.kind() == InstrumentKind::Gantry)) {
        let DriverConfig::GcodeGantry(g) = &gantry.driver else {
            unreachable!("gantry kind implies the gantry driver")
        };
        let inside = |p: &Point| {
            p.x >= 0.0 && p.y >= 0.0 && p.z >= 0.0 && p.x <= g.travel.x && p.y <= g.travel.y && p.z <= g.travel.z
        };
        for (name, p) in &deck.positions {
            if !inside(p) || p.z >= deck.safe_z {
                err(
                    &mut diags,
                    codes::DECK,
                    tree.span_of(&[Seg::Field("deck"), Seg::Field("positions"), Seg::Key(name)]),
                    format!(
                        "position `{name}` at ({}, {}, {}) is outside the gantry's reach",
                        trim_float(p.x),
                        trim_float(p.y),
                        trim_float(p.z)
                    ),
                    format!(
                        "the gantry reaches (0..={}, 0..={}, 0..={}) and travels at z {}; positions must lie inside and below that",
                        trim_float(g.travel.x),
                        trim_float(g.travel.y),
                        trim_float(g.travel.z),
                        trim_float(deck.safe_z)
                    ),
                );
            }
        }
        let last = deck.rack.slots().saturating_sub(1);
        for (i, which) in [(0, "first"), (last, "last")] {
            if let Some(p) = deck.rack.slot(i)
                && (!inside(&p) || p.z >= deck.safe_z)
            {
                err(
                    &mut diags,
                    codes::DECK,
                    tree.span_of(&[Seg::Field("deck"), Seg::Field("rack")]),
                    format!(
                        "the rack's {which} slot at ({}, {}, {}) is outside the gantry's reach",
                        trim_float(p.x),
                        trim_float(p.y),
                        trim_float(p.z)
                    ),
                    "move the rack's origin or reduce its pitch, columns or rows".into(),
                );
            }
        }
        if deck.safe_z > g.travel.z {
            err(
                &mut diags,
                codes::DECK,
                tree.span_of(&[Seg::Field("deck"), Seg::Field("safe_z")]),
                format!("safe_z {} is above the gantry's travel {}", trim_float(deck.safe_z), trim_float(g.travel.z)),
                "lower safe_z".into(),
            );
        }
    }
    let simulation = match header.as_ref().and_then(|h| h.simulation.as_ref()) {
        Some(s) => {
            if !(s.time_scale.is_finite() && s.time_scale > 0.0) {
                err(
                    &mut diags,
                    codes::SIMULATION,
                    tree.span_of(&[Seg::Field("simulation"), Seg::Field("time_scale")]),
                    format!("time_scale must be positive, not {}", s.time_scale),
                    "1 is real time; 600 runs ten lab minutes per wall second".into(),
                );
            }
            let folder = std::path::Path::new(&source.name).parent().map(std::path::Path::to_path_buf);
            let ledger = s.ledger.as_ref().map(|l| match &folder {
                Some(f) if std::path::Path::new(l).is_relative() => f.join(l),
                _ => std::path::PathBuf::from(l),
            });
            Simulation { seed: s.seed, time_scale: s.time_scale, ledger }
        }
        None => Simulation { seed: 0, time_scale: 1.0, ledger: None },
    };
    for valve in &instruments {
        let DriverConfig::ViciValve(ValveConfig { feeds: Some(pump), .. }) = &valve.driver else { continue };
        let fed = instruments.iter().find(|i| &i.name == pump);
        let problem = match fed {
            None => Some(format!("valve `{}` feeds `{pump}`, which the lab does not have", valve.name)),
            Some(p) if p.kind() != InstrumentKind::SyringePump => Some(format!(
                "valve `{}` feeds `{pump}`, which is {}, not a syringe pump",
                valve.name,
                p.kind().phrase()
            )),
            Some(_) => None,
        };
        if let Some(msg) = problem {
            err(
                &mut diags,
                codes::SETTING,
                tree.span_of(&[
                    Seg::Field("instruments"),
                    Seg::Key(&valve.name),
                    Seg::Field("driver"),
                    Seg::Field("feeds"),
                ]),
                msg,
                "name the syringe pump whose input port the valve is plumbed to".into(),
            );
        }
    }
    let real = instruments.iter().any(|i| !i.port.is_simulated());
    if real && simulation.time_scale != 1.0 {
        err(
            &mut diags,
            codes::SIMULATION,
            tree.span_of(&[Seg::Field("simulation"), Seg::Field("time_scale")]),
            "this lab has real instruments, so it must run in real time".into(),
            "set `time_scale: 1`, or make every port `Simulated`".into(),
        );
    }
    diags.sort();
    if diags.has_errors() {
        return Err(diags);
    }
    // A section that could not be located has no diagnostic of its own; a refusal must still say why.
    let (Some(header), Some(deck)) = (header, deck) else {
        err(
            &mut diags,
            codes::DECK,
            0..0,
            "the lab's `deck` section could not be read".into(),
            "check the syntax of `deck: (rack: ..., positions: {...})`".into(),
        );
        return Err(diags);
    };
    instruments.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Lab {
        name: header.name,
        description: header.description,
        deck: Deck { safe_z: deck.safe_z, rack: deck.rack, positions: deck.positions },
        instruments,
        simulation,
        source,
    })
}

fn instrument(
    source: &Arc<SourceFile>,
    name: &str,
    f: InstrumentFile,
    node: &Node,
    deck: Option<&DeckFile>,
    diags: &mut Diagnostics,
) -> Option<InstrumentSpec> {
    let mut ok = true;
    let mut fail = |path: &[Seg<'_>], msg: String, help: String| {
        diags.push(Diagnostic::error(codes::SETTING, source, node.span_of(path), msg).with_help(help));
        ok = false;
    };
    let quantity =
        |field: &'static str, text: &str, dim: Dimension, fail: &mut dyn FnMut(&[Seg<'_>], String, String)| -> f64 {
            match Quantity::parse(text) {
                Ok(q) if q.dimension == dim => q.value,
                Ok(q) => {
                    fail(
                        &[Seg::Field("driver"), Seg::Field(field)],
                        format!("`{field}` of `{name}` needs a {}, not a {}", dim.name(), q.dimension.name()),
                        format!("use {}", dim.examples()),
                    );
                    f64::NAN
                }
                Err(e) => {
                    fail(
                        &[Seg::Field("driver"), Seg::Field(field)],
                        format!("bad quantity for `{field}` of `{name}`: {e}"),
                        format!("write a number and a unit of {}: {}", dim.name(), dim.examples()),
                    );
                    f64::NAN
                }
            }
        };
    let driver = match f.driver {
        DriverFile::CavroXCalibur { address, syringe, top_speed, reservoir, protocol } => {
            if !(1..=15).contains(&address) {
                fail(
                    &[Seg::Field("driver"), Seg::Field("address")],
                    format!("address {address} of `{name}` is not a pump address"),
                    "the address switch gives 1 to 15 (switch positions 0 to E)".into(),
                );
            }
            let syringe = quantity("syringe", &syringe, Dimension::Volume, &mut fail);
            if syringe.is_finite() && syringe <= 0.0 {
                fail(
                    &[Seg::Field("driver"), Seg::Field("syringe")],
                    format!("syringe of `{name}` must have a positive volume"),
                    "common sizes: 250 uL, 1 mL, 5 mL".into(),
                );
            }
            let top_speed = top_speed.unwrap_or(1400);
            if !(5..=6000).contains(&top_speed) {
                fail(
                    &[Seg::Field("driver"), Seg::Field("top_speed")],
                    format!("top_speed {top_speed} of `{name}` is outside 5..=6000 half-steps/s"),
                    "the XCalibur's V command takes 5 to 6000; its default is 1400".into(),
                );
            }
            DriverConfig::CavroXCalibur(CavroConfig {
                address,
                syringe: Volume(syringe),
                top_speed,
                reservoir,
                protocol,
            })
        }
        DriverFile::IkaHotplate { model, max_temperature, max_speed, tolerance, watchdog } => {
            let t = quantity("max_temperature", &max_temperature, Dimension::Temperature, &mut fail);
            let s = quantity("max_speed", &max_speed, Dimension::RotationalSpeed, &mut fail);
            let tol = tolerance.map_or(1.0, |t| quantity("tolerance", &t, Dimension::Temperature, &mut fail));
            let watchdog = watchdog.map(|w| quantity("watchdog", &w, Dimension::Duration, &mut fail));
            if let Some(w) = watchdog
                && w.is_finite()
                && !(IKA_WATCHDOG_RANGE.0..=IKA_WATCHDOG_RANGE.1).contains(&w)
            {
                fail(
                    &[Seg::Field("driver"), Seg::Field("watchdog")],
                    format!("watchdog of `{name}` is {w} s; an IKA plate's watchdog takes 20 s to 25 min"),
                    "`watchdog: \"25 min\"` lets a controller come back within 25 minutes and carry on a heat".into(),
                );
            }
            DriverConfig::IkaHotplate(IkaConfig {
                model: model.unwrap_or_else(|| "RCT digital".to_owned()),
                max_temperature: Temperature(t),
                max_speed: Speed(s),
                tolerance: Temperature(tol),
                watchdog: watchdog.map(Duration),
            })
        }
        DriverFile::OceanFlame { integration, scans, calibration, pixels } => {
            let it = quantity("integration", &integration, Dimension::Duration, &mut fail);
            if it.is_finite() && !(0.001..=65.0).contains(&it) {
                fail(
                    &[Seg::Field("driver"), Seg::Field("integration")],
                    format!("integration time of `{name}` must be 1 ms to 65 s"),
                    "100 ms suits most samples".into(),
                );
            }
            if scans == 0 {
                fail(
                    &[Seg::Field("driver"), Seg::Field("scans")],
                    format!("`{name}` must average at least one scan"),
                    "use `scans: 1` or more".into(),
                );
            }
            if calibration.is_empty() || calibration.len() > 4 {
                fail(
                    &[Seg::Field("driver"), Seg::Field("calibration")],
                    format!("calibration of `{name}` needs 1 to 4 coefficients, got {}", calibration.len()),
                    "give [c0, c1, c2, c3] of wavelength(pixel) = c0 + c1 p + c2 p^2 + c3 p^3".into(),
                );
            }
            if let Some(p) = pixels
                && !(1..=MAX_PIXELS).contains(&p)
            {
                fail(
                    &[Seg::Field("driver"), Seg::Field("pixels")],
                    format!("`{name}` has {p} pixels; a spectrometer has 1 to {MAX_PIXELS}"),
                    "leave `pixels` out for the Flame's 2048".into(),
                );
            }
            let mut c = [0.0; 4];
            for (i, v) in calibration.iter().take(4).enumerate() {
                c[i] = *v;
            }
            DriverConfig::OceanFlame(FlameConfig {
                integration: Duration(it),
                scans,
                calibration: c,
                pixels: pixels.unwrap_or(2048),
            })
        }
        DriverFile::GcodeGantry { feed_rate, travel, grip, release } => {
            if !(feed_rate.is_finite() && feed_rate > 0.0) {
                fail(
                    &[Seg::Field("driver"), Seg::Field("feed_rate")],
                    format!("feed_rate of `{name}` must be positive"),
                    "in millimetres per minute, such as 3000".into(),
                );
            }
            DriverConfig::GcodeGantry(GantryConfig { feed_rate, travel, grip, release })
        }
        DriverFile::MettlerBalance { model, capacity, settle } => {
            let capacity = quantity("capacity", &capacity, Dimension::Mass, &mut fail);
            if capacity.is_finite() && capacity <= 0.0 {
                fail(
                    &[Seg::Field("driver"), Seg::Field("capacity")],
                    format!("capacity of `{name}` must be positive"),
                    "the weighing range on the balance's label, such as \"220 g\"".into(),
                );
            }
            let settle = settle.map_or(10.0, |t| quantity("settle", &t, Dimension::Duration, &mut fail));
            if model.trim().is_empty() {
                fail(
                    &[Seg::Field("driver"), Seg::Field("model")],
                    format!("model of `{name}` is empty"),
                    "the type the balance reports to `I2`, such as \"XS205\"".into(),
                );
            }
            DriverConfig::MettlerBalance(BalanceConfig { model, capacity: Mass(capacity), settle: Duration(settle) })
        }
        DriverFile::ViciValve { positions, id, feeds, ports } => {
            if !(2..=40).contains(&positions) {
                fail(
                    &[Seg::Field("driver"), Seg::Field("positions")],
                    format!("`{name}` has {positions} positions; a VICI actuator takes 2 to 40"),
                    "the number of ports of the valve (`NP`), such as 6 or 10".into(),
                );
            }
            if let Some(c) = id
                && !(c.is_ascii_digit() || c.is_ascii_uppercase())
            {
                fail(
                    &[Seg::Field("driver"), Seg::Field("id")],
                    format!("device ID `{c}` of `{name}` is not 0-9 or A-Z"),
                    "RS-485 actuators default to 'Z'; leave `id` out on RS-232".into(),
                );
            }
            if let Some(bad) = ports.keys().find(|p| **p == 0 || **p > positions) {
                fail(
                    &[Seg::Field("driver"), Seg::Field("ports")],
                    format!("port {bad} of `{name}` is not one of its 1..={positions}"),
                    "number the ports as printed on the valve".into(),
                );
            }
            DriverConfig::ViciValve(ValveConfig { positions, id, feeds, ports })
        }
        DriverFile::ModbusTemperature { address, max_temperature, model_code, tolerance } => {
            if !(1..=247).contains(&address) {
                fail(
                    &[Seg::Field("driver"), Seg::Field("address")],
                    format!("address {address} of `{name}` is not a Modbus slave address"),
                    "Modbus RTU slaves use 1 to 247".into(),
                );
            }
            let t = quantity("max_temperature", &max_temperature, Dimension::Temperature, &mut fail);
            let tol = tolerance.map_or(1.0, |t| quantity("tolerance", &t, Dimension::Temperature, &mut fail));
            DriverConfig::ModbusTemperature(ModbusConfig {
                address,
                model_code: model_code.unwrap_or(ModbusConfig::DEFAULT_MODEL_CODE),
                max_temperature: Temperature(t),
                tolerance: Temperature(tol),
            })
        }
        DriverFile::ScpiThermometer { model, terminator } => {
            if model.trim().is_empty() {
                fail(
                    &[Seg::Field("driver"), Seg::Field("model")],
                    format!("model of `{name}` is empty"),
                    "the model field of the instrument's `*IDN?` reply, such as \"MODEL 2000\"".into(),
                );
            }
            DriverConfig::ScpiThermometer(ScpiConfig { model, terminator })
        }
    };
    let kind = driver.kind();
    match (&f.position, kind.has_position()) {
        (None, true) => fail(
            &[Seg::Field("driver")],
            format!("`{name}` is {} but has no `position`", kind.phrase()),
            "say where it acts on vessels: `position: \"...\"`, a name from `deck.positions`".into(),
        ),
        (Some(_), false) => fail(
            &[Seg::Field("position")],
            format!("`{name}` is a gantry; gantries have no position"),
            "remove `position`".into(),
        ),
        (Some(p), true) => {
            if let Some(deck) = deck
                && !deck.positions.contains_key(p)
            {
                let known: Vec<&str> = deck.positions.keys().map(String::as_str).collect();
                let help = match suggest(p, &known) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("the deck's positions are: {}", known.join(", ")),
                };
                diags.push(
                    Diagnostic::error(
                        codes::POSITION,
                        source,
                        node.span_of(&[Seg::Field("position")]),
                        format!("position `{p}` of `{name}` is not on the deck"),
                    )
                    .with_help(help),
                );
                ok = false;
            }
        }
        (None, false) => {}
    }
    let mut line = driver.default_line();
    if let Some(s) = f.serial {
        if let Some(b) = s.baud {
            line.baud = b;
        }
        if let Some(d) = s.data_bits {
            if !(d == 7 || d == 8) {
                diags.push(
                    Diagnostic::error(
                        codes::SETTING,
                        source,
                        node.span_of(&[Seg::Field("serial"), Seg::Field("data_bits")]),
                        format!("data_bits of `{name}` must be 7 or 8"),
                    )
                    .with_help(format!("{} uses {}", driver.name(), driver.default_line())),
                );
                ok = false;
            }
            line.data_bits = d;
        }
        if let Some(p) = s.parity {
            line.parity = p;
        }
        if let Some(sb) = s.stop_bits {
            if !(sb == 1 || sb == 2) {
                diags.push(
                    Diagnostic::error(
                        codes::SETTING,
                        source,
                        node.span_of(&[Seg::Field("serial"), Seg::Field("stop_bits")]),
                        format!("stop_bits of `{name}` must be 1 or 2"),
                    )
                    .with_help(format!("{} uses {}", driver.name(), driver.default_line())),
                );
                ok = false;
            }
            line.stop_bits = sb;
        }
        if let Some(r) = s.reconnect {
            let delay = match r.delay.as_deref().map(Quantity::parse) {
                None => Some(Reconnect::DEFAULT.delay),
                Some(Ok(q)) if q.dimension == Dimension::Duration && q.value >= 0.0 && q.value <= 60.0 => {
                    Some(std::time::Duration::from_secs_f64(q.value))
                }
                Some(_) => None,
            };
            match delay {
                Some(delay) if r.attempts <= 100 => {
                    line.reconnect = Reconnect { attempts: r.attempts, delay, max_delay: Reconnect::DEFAULT.max_delay }
                }
                _ => {
                    diags.push(
                        Diagnostic::error(
                            codes::SETTING,
                            source,
                            node.span_of(&[Seg::Field("serial"), Seg::Field("reconnect")]),
                            format!("reconnect of `{name}` needs 0 to 100 attempts and a delay of 0 to 60 s"),
                        )
                        .with_help("such as `reconnect: (attempts: 5, delay: \"100 ms\")`"),
                    );
                    ok = false;
                }
            }
        }
        if let Some(t) = s.timeout {
            match Quantity::parse(&t) {
                Ok(q) if q.dimension == Dimension::Duration && q.value > 0.0 => {
                    line.timeout = std::time::Duration::from_secs_f64(q.value)
                }
                _ => {
                    diags.push(
                        Diagnostic::error(
                            codes::SETTING,
                            source,
                            node.span_of(&[Seg::Field("serial"), Seg::Field("timeout")]),
                            format!("timeout of `{name}` must be a positive duration"),
                        )
                        .with_help("such as \"500 ms\" or \"2 s\""),
                    );
                    ok = false;
                }
            }
        }
    }
    let port = match f.port {
        PortFile::Simulated => PortSpec::Simulated,
        PortFile::Simulator(p) => PortSpec::Simulator(p),
        PortFile::Serial(p) => PortSpec::Serial(p),
    };
    let faults = match f.faults {
        None => None,
        Some(file) => {
            let faults = faults(source, name, &driver, &port, file, node, diags);
            ok &= faults.is_some();
            faults
        }
    };
    ok.then(|| InstrumentSpec { name: name.to_owned(), driver, port, position: f.position, line, faults })
}

/// Reads an instrument's `faults`, refusing what its simulator cannot inject.
fn faults(
    source: &Arc<SourceFile>,
    name: &str,
    driver: &DriverConfig,
    port: &PortSpec,
    f: FaultsFile,
    node: &Node,
    diags: &mut Diagnostics,
) -> Option<Faults> {
    let mut ok = true;
    let mut fail = |field: &str, msg: String, help: String| {
        let span = node.span_of(&[Seg::Field("faults"), Seg::Field(field)]);
        diags.push(Diagnostic::error(codes::FAULTS, source, span, msg).with_help(help));
        ok = false;
    };
    if *port != PortSpec::Simulated {
        fail(
            "",
            format!("`{name}` is a real instrument; only simulators inject faults"),
            "remove `faults`, or set `port: Simulated`".into(),
        );
    }
    let mut wall = |field: &str, text: &str| -> std::time::Duration {
        match Quantity::parse(text) {
            Ok(q) if q.dimension == Dimension::Duration && q.value >= 0.0 && q.value < 3600.0 => {
                std::time::Duration::from_secs_f64(q.value)
            }
            _ => {
                fail(
                    field,
                    format!("`{field}` of the faults of `{name}` must be a duration from 0 to 1 h, not `{text}`"),
                    "such as \"20 ms\" or \"1.5 s\"".into(),
                );
                std::time::Duration::ZERO
            }
        }
    };
    let latency = match f.latency {
        None => Latency::None,
        Some(LatencyFile::Fixed(t)) => Latency::Fixed(wall("latency", &t)),
        Some(LatencyFile::Uniform { min, max }) => {
            let (min, max) = (wall("latency", &min), wall("latency", &max));
            Latency::Uniform { min: min.min(max), max: max.max(min) }
        }
        Some(LatencyFile::Exponential { mean }) => Latency::Exponential { mean: wall("latency", &mean) },
    };
    let disconnect = f.disconnect.map(|d| Disconnect { after: d.after.max(1), down: wall("disconnect", &d.down) });
    let oem = matches!(driver, DriverConfig::CavroXCalibur(c) if c.protocol == CavroProtocol::Oem);
    let pump = matches!(driver, DriverConfig::CavroXCalibur(_));
    let modbus = matches!(driver, DriverConfig::ModbusTemperature(_));
    let can = |fault: &str| match fault {
        "bad_checksum" => oem || modbus,
        "busy" => pump || modbus || matches!(driver, DriverConfig::MettlerBalance(_)),
        "firmware_error" => {
            pump || modbus
                || matches!(
                    driver,
                    DriverConfig::MettlerBalance(_) | DriverConfig::ScpiThermometer(_) | DriverConfig::OceanFlame(_)
                )
        }
        "partial" => pump,
        _ => true,
    };
    for (field, p) in [
        ("no_reply", f.no_reply),
        ("garbled", f.garbled),
        ("truncated", f.truncated),
        ("bad_checksum", f.bad_checksum),
        ("busy", f.busy),
        ("firmware_error", f.firmware_error),
        ("partial", f.partial),
    ] {
        if !(0.0..=1.0).contains(&p) {
            fail(
                field,
                format!("`{field}` of `{name}` is {p}; a probability is 0 to 1"),
                "0.05 injects the fault about once in twenty commands".into(),
            );
        } else if p > 0.0 && !can(field) {
            let why = match field {
                "bad_checksum" => "only OEM-framed pumps and Modbus devices send checksums",
                "busy" => "only pumps, balances and Modbus devices answer `busy`",
                "firmware_error" => "its protocol has no error codes",
                _ => "only a syringe pump moves part of a stroke",
            };
            fail(field, format!("the simulator of `{name}` cannot inject `{field}`: {why}"), "remove it".into());
        }
    }
    ok.then_some(Faults {
        seed: f.seed,
        latency,
        no_reply: f.no_reply,
        garbled: f.garbled,
        truncated: f.truncated,
        bad_checksum: f.bad_checksum,
        busy: f.busy,
        firmware_error: f.firmware_error,
        partial: f.partial,
        disconnect,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim_lab() -> Lab {
        load_lab(SourceFile::new("sim.lab.ron", include_str!("../labs/sim.lab.ron"))).unwrap()
    }

    fn demo_protocol() -> Protocol {
        protocols::parse_protocol(
            "condensation.protocol.ron",
            include_str!("../../protocols/library/condensation.protocol.ron"),
        )
        .unwrap()
    }

    #[test]
    fn the_simulated_lab_loads_and_runs_the_demo_protocol() {
        let lab = sim_lab();
        assert_eq!(lab.instruments.len(), 8);
        assert_eq!(lab.deck.rack.slots(), 48);
        assert_eq!(lab.instrument("hotplate_1").unwrap().line.to_string(), "9600 7E1");
        let p = demo_protocol();
        let d = lab.check_protocol(&p);
        assert!(d.is_empty(), "{d}");
        let to_hotplate = p.step_index("to_hotplate").unwrap();
        assert_eq!(
            lab.transfer_positions(&p, to_hotplate),
            vec!["hotplate_1", "hotplate_2", "hotplate_3", "hotplate_4"]
        );
        let load = p.step_index("load").unwrap();
        assert_eq!(lab.transfer_positions(&p, load), vec!["dispense"]);
    }

    #[test]
    fn limits_and_missing_instruments_are_reported_against_the_protocol() {
        let lab = sim_lab();
        let text = include_str!("../../protocols/library/condensation.protocol.ron")
            .replace("max: 150, default: 80", "max: 350, default: 80")
            .replace("Named(\"pump_b\")", "Named(\"pump_c\")")
            .replace("520 nm", "1200 nm");
        let p = protocols::parse_protocol("c.protocol.ron", &text).unwrap();
        let d = lab.check_protocol(&p);
        let msgs: Vec<String> = d.iter().map(|d| format!("{} {}", d.code, d.message)).collect();
        assert_eq!(
            msgs,
            vec![
                "D0101 step `add_b` runs on `pump_c`, which lab `sim` does not have",
                "D0104 `temperature` of step `react` is beyond what lab `sim` can do: parameter `temperature` allows 30..=350 degC",
                "D0104 `wavelength` of step `read` is beyond what lab `sim` can do: 1200 nm",
            ]
        );
    }

    #[test]
    fn the_faulty_lab_loads_with_its_faults_and_new_instruments() {
        let lab = load_lab(SourceFile::new("faulty.lab.ron", include_str!("../labs/faulty.lab.ron"))).unwrap();
        let pump = lab.instrument("pump_1").unwrap();
        let DriverConfig::CavroXCalibur(c) = &pump.driver else { panic!("pump_1 is a pump") };
        assert_eq!(c.protocol, CavroProtocol::Oem);
        let f = pump.faults.as_ref().unwrap();
        assert_eq!((f.no_reply, f.partial), (0.05, 0.1));
        assert!(matches!(f.latency, Latency::Exponential { .. }));
        let pump_2 = lab.instrument("pump_2").unwrap();
        assert_eq!(pump_2.line.reconnect.attempts, 8);
        assert_eq!(pump_2.faults.as_ref().unwrap().disconnect.unwrap().after, 25);
        assert_eq!(lab.instrument("block_1").unwrap().line.to_string(), "19200 8E1");
        assert_eq!(lab.instrument("valve").unwrap().kind(), InstrumentKind::Valve);
        assert!(lab.instrument("valve").unwrap().position.is_none());
        let sim = sim_lab();
        assert!(sim.instruments.iter().all(|i| i.faults.is_none()), "the default lab is fault-free");
    }

    #[test]
    fn faults_a_simulator_cannot_inject_are_refused() {
        let text = include_str!("../labs/faulty.lab.ron")
            .replace("faults: (garbled: 0.05),", "faults: (garbled: 1.5, partial: 0.1),")
            .replace(
                "driver: ViciValve(positions: 6, feeds: \"pump_3\"",
                "driver: ViciValve(positions: 6, feeds: \"balance_1\"",
            );
        let d = load_lab(SourceFile::new("faulty.lab.ron", text)).unwrap_err();
        let msgs: Vec<String> = d.iter().map(|d| format!("{} {}", d.code, d.message)).collect();
        assert_eq!(
            msgs,
            vec![
                "D0004 valve `valve` feeds `balance_1`, which is a balance, not a syringe pump",
                "D0007 `garbled` of `probe_3` is 1.5; a probability is 0 to 1",
                "D0007 the simulator of `probe_3` cannot inject `partial`: only a syringe pump moves part of a stroke",
            ]
        );
    }

    #[test]
    fn an_ika_watchdog_outside_what_the_plate_takes_is_refused() {
        let text = include_str!("../labs/sim.lab.ron").replacen("watchdog: \"25 min\"", "watchdog: \"2 h\"", 1);
        let d = load_lab(SourceFile::new("sim.lab.ron", text)).unwrap_err();
        let msgs: Vec<String> = d.iter().map(|d| format!("{} {}", d.code, d.message)).collect();
        assert_eq!(msgs, ["D0004 watchdog of `hotplate_1` is 7200 s; an IKA plate's watchdog takes 20 s to 25 min"]);
        let lab = sim_lab();
        let DriverConfig::IkaHotplate(c) = &lab.instrument("hotplate_1").unwrap().driver else { panic!() };
        assert_eq!(c.watchdog, Some(Duration(1500.0)));
    }

    #[test]
    fn lab_file_errors_point_at_the_setting() {
        let text = include_str!("../labs/sim.lab.ron")
            .replace(
                "address: 1, syringe: \"1 mL\", top_speed: 400, reservoir: \"A\"",
                "address: 0, syringe: \"1 min\", top_speed: 400, reservoir: \"A\"",
            )
            .replace("position: \"hotplate_4\"", "position: \"hotplate_5\"")
            .replace("(seed: 7, time_scale: 400)", "(seed: 7, time_scale: 0)");
        let d = load_lab(SourceFile::new("sim.lab.ron", text)).unwrap_err();
        let msgs: Vec<String> =
            d.iter().map(|d| format!("{}:{} {} {}", d.line_col().0, d.line_col().1, d.code, d.message)).collect();
        assert_eq!(
            msgs,
            vec![
                "25:44 D0004 address 0 of `pump_a` is not a pump address",
                "25:56 D0004 `syringe` of `pump_a` needs a volume, not a duration",
                "55:23 D0003 position `hotplate_5` of `hotplate_4` is not on the deck",
                "67:39 D0006 time_scale must be positive, not 0",
            ]
        );
    }
}
