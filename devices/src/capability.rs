//! What instruments can do, as small traits, and the one entry point that runs a task on any instrument.
//!
//! The controller never knows a vendor. It holds a `Box<dyn Instrument>` and a [`Task`], and [`execute`] finds the
//! capability the task needs ([`Dispense`], [`Heat`], [`Stir`], [`Measure`], [`Transfer`], [`Weigh`], [`Select`],
//! [`ReadTemperature`], [`HoldTemperature`]) through the instrument's `as_*` getters, which return `None` unless
//! the driver implements that capability. [`Stop`] and [`ReadBack`] are the capabilities no task asks for: the
//! first halts whatever the instrument is doing, for drivers' safe states and for tools that need an immediate
//! stop; the second reads the instrument's physical state back, to settle a step left in doubt (see
//! [`crate::readback`]). The tasks that carry on with a step left in doubt ([`Task::ContinueHeat`],
//! [`Task::ContinueHold`], [`Task::Deliver`]) run through default methods of the capabilities they continue, which
//! refuse unless the driver implements them. What [`ReadBack`] reports ([`Observed`]) is defined here with it; how a
//! step is settled from it is [`crate::readback`]'s.
//!
//! What a new driver must provide: [`Instrument`] (name, kind, identify, initialize, safe state, tag) and the
//! capability traits for what the hardware does. Each capability method must be safe to call with any value the
//! lab file's limits allow, must refuse values outside the instrument's own limits with
//! [`DeviceErrorKind::Limit`] before sending anything, and must mark errors that happen after a command may have
//! acted with `may_have_acted`, so the scheduler never repeats a physical action blindly.

use futures::future::BoxFuture;
use protocols::InstrumentKind;
use protocols::units::{Duration, Mass, Speed, Temperature, Volume, Wavelength};
use serde::{Deserialize, Serialize};

use crate::error::{DeviceError, DeviceErrorKind};

/// Who an instrument says it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// The model, as the instrument reports it.
    pub model: String,
    /// The serial number, if the instrument reports one.
    pub serial: Option<String>,
    /// The firmware version, if the instrument reports one.
    pub firmware: Option<String>,
    /// The raw identification reply, for the record.
    pub raw: String,
}

/// A place on the deck a vessel can stand.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Place {
    /// A slot of the rack, numbered from 0.
    Rack(usize),
    /// A named deck position from the lab file.
    Position(String),
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Rack(i) => write!(f, "rack slot {i}"),
            Place::Position(p) => write!(f, "`{p}`"),
        }
    }
}

/// One unit of work for one instrument, with every value concrete and every place resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Task {
    /// Move a vessel.
    Transfer {
        /// Where it stands now.
        from: Place,
        /// Where it goes.
        to: Place,
    },
    /// Dispense into the vessel at the instrument's position.
    Dispense {
        /// How much.
        volume: Volume,
    },
    /// Heat to a set point, hold, and optionally stir.
    Heat {
        /// The set point.
        temperature: Temperature,
        /// The hold, counted from reaching the set point.
        duration: Duration,
        /// Stirring while heating.
        stir: Option<Speed>,
    },
    /// Stir without heating.
    Stir {
        /// The speed.
        speed: Speed,
        /// How long.
        duration: Duration,
    },
    /// Read absorbance.
    Measure {
        /// The wavelength.
        wavelength: Wavelength,
    },
    /// Weigh the vessel on the balance's pan.
    Weigh,
    /// Turn a selector valve to a port.
    Select {
        /// The port, from 1.
        position: u32,
    },
    /// Read the temperature of the vessel at the thermometer.
    ReadTemperature,
    /// Hold the vessel at a temperature (a heating block or jacket), then switch the control off.
    HoldTemperature {
        /// The set point.
        temperature: Temperature,
        /// The hold, counted from reaching the set point.
        duration: Duration,
    },
    /// Carry on with a heat that was left running when its step's outcome went in doubt: the plate was read back
    /// heating at `temperature` (stirring at `stir`), and nothing is written to it before that is confirmed again.
    ContinueHeat {
        /// The set point it heats at.
        temperature: Temperature,
        /// The hold still to go: from now if `at_set_point`, else from reaching the set point.
        hold: Duration,
        /// Stirring while heating.
        stir: Option<Speed>,
        /// Whether the plate had already reached its set point (the hold is under way).
        at_set_point: bool,
    },
    /// Carry on with a temperature hold that was left running, as [`Task::ContinueHeat`] does for a heat.
    ContinueHold {
        /// The set point it holds.
        temperature: Temperature,
        /// The hold still to go: from now if `at_set_point`, else from reaching the set point.
        hold: Duration,
        /// Whether the set point had already been reached.
        at_set_point: bool,
    },
    /// Put down the vessel the gripper holds at `to` (a transfer left in doubt with its vessel in the gripper).
    Deliver {
        /// Where it goes.
        to: Place,
    },
}

impl Task {
    /// The capability the task needs, in words.
    pub fn verb(&self) -> &'static str {
        match self {
            Task::Transfer { .. } => "transfer vessels",
            Task::Dispense { .. } => "dispense",
            Task::Heat { .. } => "heat",
            Task::Stir { .. } => "stir",
            Task::Measure { .. } => "measure absorbance",
            Task::Weigh => "weigh",
            Task::Select { .. } => "select a valve port",
            Task::ReadTemperature => "read a temperature",
            Task::HoldTemperature { .. } => "hold a temperature",
            Task::ContinueHeat { .. } => "carry on with a heat",
            Task::ContinueHold { .. } => "carry on with a temperature hold",
            Task::Deliver { .. } => "put down a held vessel",
        }
    }
}

/// What a finished task produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Outcome {
    /// Done; nothing to report.
    Done,
    /// A dispense, with the volume the pump reports having moved.
    Dispensed {
        /// The volume moved.
        volume: Volume,
    },
    /// A heat or stir, with what the instrument reported while holding.
    Held {
        /// The mean plate temperature over the hold, if measured.
        mean_temperature: Option<Temperature>,
        /// The lab time the instrument took to reach the set point.
        ramp: Duration,
    },
    /// A reading.
    Measured {
        /// The value.
        value: f64,
        /// Its unit.
        unit: &'static str,
    },
}

/// The common part of every instrument.
pub trait Instrument: Send {
    /// The instrument's name in the lab file.
    fn name(&self) -> &str;

    /// Its kind.
    fn kind(&self) -> InstrumentKind;

    /// Asks the instrument who it is. Must not change its state.
    fn identify(&mut self) -> BoxFuture<'_, Result<Identity, DeviceError>>;

    /// Brings the instrument to a known state before a run (homes axes, initializes a pump, takes a reference).
    fn initialize(&mut self) -> BoxFuture<'_, Result<(), DeviceError>>;

    /// Stops anything physical the instrument is doing (heater off, motion stopped). Called after a fault and on
    /// abort; must be safe to call at any time, and is safe to repeat.
    fn safe_state(&mut self) -> BoxFuture<'_, Result<(), DeviceError>>;

    /// Sets the tag recorded with the following wire exchanges (the controller passes its step id).
    fn set_tag(&mut self, tag: Option<u64>);

    /// The dispense capability, if the instrument has it.
    fn as_dispense(&mut self) -> Option<&mut dyn Dispense> {
        None
    }
    /// The heat capability, if the instrument has it.
    fn as_heat(&mut self) -> Option<&mut dyn Heat> {
        None
    }
    /// The stir capability, if the instrument has it.
    fn as_stir(&mut self) -> Option<&mut dyn Stir> {
        None
    }
    /// The measure capability, if the instrument has it.
    fn as_measure(&mut self) -> Option<&mut dyn Measure> {
        None
    }
    /// The transfer capability, if the instrument has it.
    fn as_transfer(&mut self) -> Option<&mut dyn Transfer> {
        None
    }
    /// The weigh capability, if the instrument has it.
    fn as_weigh(&mut self) -> Option<&mut dyn Weigh> {
        None
    }
    /// The select capability, if the instrument has it.
    fn as_select(&mut self) -> Option<&mut dyn Select> {
        None
    }
    /// The read-temperature capability, if the instrument has it.
    fn as_read_temperature(&mut self) -> Option<&mut dyn ReadTemperature> {
        None
    }
    /// The hold-temperature capability, if the instrument has it.
    fn as_hold_temperature(&mut self) -> Option<&mut dyn HoldTemperature> {
        None
    }
    /// The stop capability, if the instrument does anything that can be stopped.
    fn as_stop(&mut self) -> Option<&mut dyn Stop> {
        None
    }
    /// The read-back capability, if the instrument can report its physical state.
    fn as_read_back(&mut self) -> Option<&mut dyn ReadBack> {
        None
    }
    /// The prime capability, if the instrument is a pump that can push liquid back out through its input.
    fn as_prime(&mut self) -> Option<&mut dyn Prime> {
        None
    }
}

/// Primes a line shared through a selector valve: the pump draws through its input, the valve turns to waste, and
/// the pump pushes everything back out through its input. The caller turns the valve in between.
pub trait Prime: Send {
    /// Draws `volume` in through the input and keeps it in the syringe; waits until the pump is idle.
    fn fill(&mut self, volume: Volume) -> BoxFuture<'_, Result<(), DeviceError>>;
    /// Pushes everything the syringe holds back out through the input; waits until the pump is idle.
    fn empty_to_input(&mut self) -> BoxFuture<'_, Result<(), DeviceError>>;
    /// Whether the syringe may hold liquid: a draw was sent and its push out was not confirmed (a prime, a stroke
    /// that failed), or a read-back found some. Such a pump, fed by a valve, is not initialized as usual (that may
    /// push the syringe into the vessel): it is emptied to waste first ([`Prime::empty_to_waste`]).
    fn may_hold(&self) -> bool;
    /// Initializes the pump so that whatever the syringe holds leaves through the input: for a caller that has
    /// turned the selector valve feeding the pump to its waste port and confirmed it there. Waits until the pump is
    /// idle; it is then initialized.
    fn empty_to_waste(&mut self) -> BoxFuture<'_, Result<(), DeviceError>>;
}

/// Dispenses liquid into the vessel at the instrument's position.
pub trait Dispense: Send {
    /// Dispenses `volume`, refilling from the reservoir as often as needed, and waits until the pump is idle.
    fn dispense(&mut self, volume: Volume) -> BoxFuture<'_, Result<Volume, DeviceError>>;
}

/// Heats the vessel standing on the instrument.
pub trait Heat: Send {
    /// Heats to `temperature`, waits until the plate reaches it, holds for `duration` (lab time), stirring at
    /// `stir` if given, then turns heating and stirring off.
    fn heat(
        &mut self,
        temperature: Temperature,
        duration: Duration,
        stir: Option<Speed>,
    ) -> BoxFuture<'_, Result<Outcome, DeviceError>>;

    /// Carries on with a heat the plate is still running (see [`Task::ContinueHeat`]): first reads the plate back
    /// and, unless it heats at `temperature` (stirring at `stir`), fails without sending anything that acts; then
    /// holds for `hold` (after reaching the set point, unless `at_set_point`) and turns heating and stirring off.
    fn continue_heat(
        &mut self,
        temperature: Temperature,
        hold: Duration,
        stir: Option<Speed>,
        at_set_point: bool,
    ) -> BoxFuture<'_, Result<Outcome, DeviceError>> {
        let _ = (temperature, hold, stir, at_set_point);
        Box::pin(async {
            Err(DeviceError::before_acting("", DeviceErrorKind::Unsupported("carry on with a heat".into())))
        })
    }
}

/// Stirs the vessel standing on the instrument.
pub trait Stir: Send {
    /// Stirs at `speed` for `duration` (lab time), then stops.
    fn stir(&mut self, speed: Speed, duration: Duration) -> BoxFuture<'_, Result<(), DeviceError>>;
}

/// Measures the vessel in the instrument's holder.
pub trait Measure: Send {
    /// The absorbance at `wavelength`, in absorbance units.
    fn absorbance(&mut self, wavelength: Wavelength) -> BoxFuture<'_, Result<f64, DeviceError>>;

    /// Whether readings rest on a reference taken with the holder empty (a spectrometer's), which initializing takes
    /// when the driver holds none: a vessel in the holder then would spoil every reading after it.
    fn takes_reference(&self) -> bool {
        false
    }

    /// Uses the reference an earlier driver took, from the bytes the instrument answered then (a recorded reply),
    /// so that initializing takes none: what a controller resuming with a vessel perhaps in the holder does. Says
    /// why it cannot.
    fn restore_reference(&mut self, received: &[u8]) -> Result<(), String> {
        let _ = received;
        Err("it takes no reference".to_owned())
    }
}

/// Moves vessels between deck places.
pub trait Transfer: Send {
    /// Picks the vessel at `from` and places it at `to`.
    fn transfer<'a>(&'a mut self, from: &'a Place, to: &'a Place) -> BoxFuture<'a, Result<(), DeviceError>>;

    /// Puts down the vessel the gripper already holds at `to`, wherever the head stands.
    fn deliver<'a>(&'a mut self, to: &'a Place) -> BoxFuture<'a, Result<(), DeviceError>> {
        let _ = to;
        Box::pin(async {
            Err(DeviceError::before_acting("", DeviceErrorKind::Unsupported("put down a held vessel".into())))
        })
    }
}

/// Weighs the vessel standing on the instrument's pan.
pub trait Weigh: Send {
    /// The mass on the pan once the reading is stable: the vessel and its contents.
    fn weigh(&mut self) -> BoxFuture<'_, Result<Mass, DeviceError>>;
}

/// Turns a selector valve.
pub trait Select: Send {
    /// Turns to `position` (from 1) and confirms the valve is there.
    fn select(&mut self, position: u32) -> BoxFuture<'_, Result<(), DeviceError>>;
}

/// Reads the temperature of the vessel at the instrument's position.
pub trait ReadTemperature: Send {
    /// The temperature now.
    fn read_temperature(&mut self) -> BoxFuture<'_, Result<Temperature, DeviceError>>;
}

/// Holds the vessel at the instrument's position at a temperature.
pub trait HoldTemperature: Send {
    /// Sets `temperature`, waits until the instrument reaches it, holds for `duration` (lab time), then switches
    /// the control off.
    fn hold_temperature(
        &mut self,
        temperature: Temperature,
        duration: Duration,
    ) -> BoxFuture<'_, Result<Outcome, DeviceError>>;

    /// Carries on with a hold the instrument is still running, as [`Heat::continue_heat`] does for a heat.
    fn continue_hold(
        &mut self,
        temperature: Temperature,
        hold: Duration,
        at_set_point: bool,
    ) -> BoxFuture<'_, Result<Outcome, DeviceError>> {
        let _ = (temperature, hold, at_set_point);
        Box::pin(async {
            Err(DeviceError::before_acting("", DeviceErrorKind::Unsupported("carry on with a temperature hold".into())))
        })
    }
}

/// Stops whatever the instrument is doing physically, at once.
pub trait Stop: Send {
    /// Stops motion, heating or flow; safe to call at any time and to repeat.
    fn stop(&mut self) -> BoxFuture<'_, Result<(), DeviceError>>;
}

/// An error from a capability's default method, which does not know its instrument's name, named.
fn named(mut e: DeviceError, name: &str) -> DeviceError {
    if e.instrument.is_empty() {
        e.instrument = name.to_owned();
    }
    e
}

/// An instrument's physical state, as it reported it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Observed {
    /// A hotplate or a temperature controller.
    Heater(HeaterState),
    /// A syringe pump.
    Pump(PumpState),
    /// A gantry with a gripper.
    Gantry(GantryState),
}

/// Whether a heater is heating, as far as the instrument can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Heating {
    /// It is heating.
    On,
    /// It is switched off.
    Off,
    /// The instrument has no way to say.
    Unknown,
}

/// A hotplate or temperature controller, as read back.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeaterState {
    /// The temperature set point.
    pub set_point: Temperature,
    /// The temperature the driver regulates on (the plate, or the controller's process value).
    pub temperature: Temperature,
    /// Whether it heats.
    pub heating: Heating,
    /// How `heating` was read: a register, a status reply, or what it was inferred from.
    pub heating_from: String,
    /// The stirrer's actual speed, if the instrument stirs.
    pub stirring: Option<Speed>,
    /// How close to the set point counts as at it (the lab file's tolerance).
    pub tolerance: Temperature,
}

impl HeaterState {
    /// Whether the temperature is within the tolerance of the set point.
    pub fn at_set_point(&self) -> bool {
        (self.temperature.0 - self.set_point.0).abs() <= self.tolerance.0.abs()
    }
}

/// Where a pump's valve connects the syringe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Valve {
    /// To the reservoir.
    Input,
    /// To the vessel at the pump's position.
    Output,
    /// Input to output, past the syringe.
    Bypass,
}

/// A syringe pump, as read back.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PumpState {
    /// The plunger's position, in increments from home (an empty syringe).
    pub plunger: u32,
    /// Microlitres per increment of this pump's syringe.
    pub microlitres_per_increment: f64,
    /// The valve's position, if the pump reported one.
    pub valve: Option<Valve>,
    /// Whether the pump is ready (not moving).
    pub ready: bool,
    /// The error the pump reports, if any: its code and what it means.
    pub error: Option<(u8, String)>,
    /// Lab seconds the driver waited for a move still under way before reading the rest.
    pub waited: f64,
}

/// What a gantry's gripper is doing.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Gripper {
    /// Closed: holding whatever stood where it closed.
    Closed,
    /// Open: holding nothing.
    Open,
    /// The servo reports an angle that is neither the lab file's grip nor its release.
    Between(f64),
}

/// A gantry, as read back.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GantryState {
    /// Where the head is, once its queued moves have finished: X, Y and Z in millimetres, in the gantry's frame.
    pub position: (f64, f64, f64),
    /// The gripper.
    pub gripper: Gripper,
    /// The deck place the head stands over (X and Y within the gripper's reach), if any.
    pub over: Option<Place>,
}

impl std::fmt::Display for Observed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Observed::Heater(h) => {
                write!(f, "set point {}, at {}, heating ", h.set_point, h.temperature)?;
                match h.heating {
                    Heating::On => write!(f, "on ({})", h.heating_from)?,
                    Heating::Off => write!(f, "off ({})", h.heating_from)?,
                    Heating::Unknown => write!(f, "unknown ({})", h.heating_from)?,
                }
                if let Some(s) = h.stirring {
                    write!(f, ", stirrer at {s}")?;
                }
                Ok(())
            }
            Observed::Pump(p) => {
                write!(f, "plunger at {} increments", p.plunger)?;
                if let Some(v) = p.valve {
                    let v = match v {
                        Valve::Input => "input",
                        Valve::Output => "output",
                        Valve::Bypass => "bypass",
                    };
                    write!(f, ", valve to {v}")?;
                }
                f.write_str(if p.ready { ", ready" } else { ", busy" })?;
                match &p.error {
                    Some((code, message)) => write!(f, ", error {code} ({message})")?,
                    None => f.write_str(", no error")?,
                }
                if p.waited > 0.0 {
                    write!(f, ", after waiting {:.1} lab s for a move under way", p.waited)?;
                }
                Ok(())
            }
            Observed::Gantry(g) => {
                write!(f, "head at ({}, {}, {})", g.position.0, g.position.1, g.position.2)?;
                if let Some(p) = &g.over {
                    write!(f, " over {p}")?;
                }
                match g.gripper {
                    Gripper::Closed => f.write_str(", gripper closed"),
                    Gripper::Open => f.write_str(", gripper open"),
                    Gripper::Between(a) => write!(f, ", gripper servo at {a} degrees"),
                }
            }
        }
    }
}

/// Reads an instrument's physical state back without changing it.
pub trait ReadBack: Send {
    /// What the instrument reports now. Sends only queries; waits (bounded) for motion already under way to end.
    /// An instrument that does not answer, or answers with what cannot be its state, is an error.
    fn observe(&mut self) -> BoxFuture<'_, Result<Observed, DeviceError>>;
}

/// Runs `task` on `instrument` through the capability it needs.
pub async fn execute(instrument: &mut dyn Instrument, task: &Task) -> Result<Outcome, DeviceError> {
    let name = instrument.name().to_owned();
    let unsupported = || DeviceError::before_acting(name.clone(), DeviceErrorKind::Unsupported(task.verb().to_owned()));
    match task {
        Task::Transfer { from, to } => {
            instrument.as_transfer().ok_or_else(unsupported)?.transfer(from, to).await?;
            Ok(Outcome::Done)
        }
        Task::Dispense { volume } => {
            let moved = instrument.as_dispense().ok_or_else(unsupported)?.dispense(*volume).await?;
            Ok(Outcome::Dispensed { volume: moved })
        }
        Task::Heat { temperature, duration, stir } => {
            instrument.as_heat().ok_or_else(unsupported)?.heat(*temperature, *duration, *stir).await
        }
        Task::Stir { speed, duration } => {
            instrument.as_stir().ok_or_else(unsupported)?.stir(*speed, *duration).await?;
            Ok(Outcome::Done)
        }
        Task::Measure { wavelength } => {
            let value = instrument.as_measure().ok_or_else(unsupported)?.absorbance(*wavelength).await?;
            Ok(Outcome::Measured { value, unit: "AU" })
        }
        Task::Weigh => {
            let mass = instrument.as_weigh().ok_or_else(unsupported)?.weigh().await?;
            Ok(Outcome::Measured { value: mass.0, unit: "g" })
        }
        Task::Select { position } => {
            instrument.as_select().ok_or_else(unsupported)?.select(*position).await?;
            Ok(Outcome::Done)
        }
        Task::ReadTemperature => {
            let t = instrument.as_read_temperature().ok_or_else(unsupported)?.read_temperature().await?;
            Ok(Outcome::Measured { value: t.0, unit: "degC" })
        }
        Task::HoldTemperature { temperature, duration } => {
            instrument.as_hold_temperature().ok_or_else(unsupported)?.hold_temperature(*temperature, *duration).await
        }
        Task::ContinueHeat { temperature, hold, stir, at_set_point } => {
            let heat = instrument.as_heat().ok_or_else(unsupported)?;
            heat.continue_heat(*temperature, *hold, *stir, *at_set_point).await.map_err(|e| named(e, &name))
        }
        Task::ContinueHold { temperature, hold, at_set_point } => {
            let h = instrument.as_hold_temperature().ok_or_else(unsupported)?;
            h.continue_hold(*temperature, *hold, *at_set_point).await.map_err(|e| named(e, &name))
        }
        Task::Deliver { to } => {
            instrument.as_transfer().ok_or_else(unsupported)?.deliver(to).await.map_err(|e| named(e, &name))?;
            Ok(Outcome::Done)
        }
    }
}
