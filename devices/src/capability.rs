//! What instruments can do, as small traits, and the one entry point that runs a task on any instrument.
//!
//! The controller never knows a vendor. It holds a `Box<dyn Instrument>` and a [`Task`], and [`execute`] finds the
//! capability the task needs ([`Dispense`], [`Heat`], [`Stir`], [`Measure`], [`Transfer`], [`Weigh`], [`Select`],
//! [`ReadTemperature`], [`HoldTemperature`]) through the instrument's `as_*` getters, which return `None` unless
//! the driver implements that capability. [`Stop`] is the one capability no task asks for: it halts whatever the
//! instrument is doing, for drivers' safe states and for tools that need an immediate stop.
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
}

/// Moves vessels between deck places.
pub trait Transfer: Send {
    /// Picks the vessel at `from` and places it at `to`.
    fn transfer<'a>(&'a mut self, from: &'a Place, to: &'a Place) -> BoxFuture<'a, Result<(), DeviceError>>;
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
}

/// Stops whatever the instrument is doing physically, at once.
pub trait Stop: Send {
    /// Stops motion, heating or flow; safe to call at any time and to repeat.
    fn stop(&mut self) -> BoxFuture<'_, Result<(), DeviceError>>;
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
    }
}
