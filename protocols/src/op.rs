//! The step vocabulary: checked operations, and actions with every value bound.
//!
//! An [`Op`] is an operation as validated from a protocol: quantities are typed, but may still refer to a
//! parameter. Binding a protocol to parameter values turns each op into an [`Action`], which holds only concrete
//! quantities. Actions are inert data: they describe what an instrument should do and never do it themselves.
//! The controller hands them to drivers, and `lab plan` can walk them without touching an instrument.

use std::fmt;

use serde::Serialize;

use crate::kind::InstrumentKind;
use crate::units::{Duration, Speed, Temperature, Volume, Wavelength};

/// A quantity argument: a literal, or a reference to a protocol parameter bound per experiment.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg<T> {
    /// A literal value.
    Value(T),
    /// The value of the named parameter.
    Param(String),
}

/// Which instrument a step runs on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub enum InstrumentRef {
    /// Any instrument of this kind.
    Kind(InstrumentKind),
    /// The instrument with this name.
    Named(String),
}

impl fmt::Display for InstrumentRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InstrumentRef::Kind(k) => write!(f, "any {}", k.name()),
            InstrumentRef::Named(n) => write!(f, "`{n}`"),
        }
    }
}

/// Where a transfer takes the experiment's vessel.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub enum Destination {
    /// The vessel's own slot in the rack.
    Rack,
    /// The position of an instrument of this kind.
    Kind(InstrumentKind),
    /// The position of the named instrument.
    Named(String),
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Rack => f.write_str("the rack"),
            Destination::Kind(k) => write!(f, "{}", k.phrase()),
            Destination::Named(n) => write!(f, "`{n}`"),
        }
    }
}

/// A checked operation whose quantities may still name parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Move the vessel to another deck position.
    Transfer {
        /// Where to.
        to: Destination,
    },
    /// Dispense into the vessel at the pump's position.
    Dispense {
        /// How much.
        volume: Arg<Volume>,
        /// Which reagent, if the step names one; otherwise whatever the pump's bottle holds.
        reagent: Option<Arg<String>>,
    },
    /// Heat the vessel, hold, and optionally stir.
    Heat {
        /// The set point.
        temperature: Arg<Temperature>,
        /// The hold time at the set point.
        duration: Arg<Duration>,
        /// Stirring speed while heating.
        stir: Option<Arg<Speed>>,
    },
    /// Stir without heating.
    Stir {
        /// The stirring speed.
        speed: Arg<Speed>,
        /// How long.
        duration: Arg<Duration>,
    },
    /// Read the vessel's absorbance.
    Measure {
        /// The wavelength.
        wavelength: Arg<Wavelength>,
        /// The output the reading is recorded as.
        output: String,
    },
    /// Weigh the vessel on a balance.
    Weigh {
        /// The output the mass is recorded as.
        output: String,
    },
    /// Turn a selector valve to a port.
    Select {
        /// The port, from 1.
        position: u32,
    },
    /// Read the vessel's temperature with a thermometer.
    ReadTemperature {
        /// The output the temperature is recorded as.
        output: String,
    },
    /// Hold the vessel at a temperature with a temperature controller (a heating block or jacket).
    HoldTemperature {
        /// The set point.
        temperature: Arg<Temperature>,
        /// The hold time at the set point.
        duration: Arg<Duration>,
    },
}

impl Op {
    /// The declared output the operation's reading is recorded as, if it reads one.
    pub fn output(&self) -> Option<&str> {
        match self {
            Op::Measure { output, .. } | Op::Weigh { output } | Op::ReadTemperature { output } => Some(output),
            _ => None,
        }
    }
}

/// What an operation needs and how it behaves, independent of its arguments.
pub trait Operation {
    /// The operation's name as written in files.
    fn name(&self) -> &'static str;
    /// The kind of instrument that can run it.
    fn kind(&self) -> InstrumentKind;
    /// Whether it acts on the vessel at the instrument's deck position (so the vessel must be there).
    fn acts_on_vessel(&self) -> bool {
        self.kind().has_position()
    }
    /// Whether running it twice has the same physical effect as running it once, so it may be retried after a
    /// failure that left its effect unknown. Only reads are; anything that moves liquid, heat or vessels is not.
    fn repeat_safe(&self) -> bool;
}

impl Operation for Op {
    fn name(&self) -> &'static str {
        match self {
            Op::Transfer { .. } => "Transfer",
            Op::Dispense { .. } => "Dispense",
            Op::Heat { .. } => "Heat",
            Op::Stir { .. } => "Stir",
            Op::Measure { .. } => "Measure",
            Op::Weigh { .. } => "Weigh",
            Op::Select { .. } => "Select",
            Op::ReadTemperature { .. } => "ReadTemperature",
            Op::HoldTemperature { .. } => "HoldTemperature",
        }
    }

    fn kind(&self) -> InstrumentKind {
        match self {
            Op::Transfer { .. } => InstrumentKind::Gantry,
            Op::Dispense { .. } => InstrumentKind::SyringePump,
            Op::Heat { .. } | Op::Stir { .. } => InstrumentKind::Hotplate,
            Op::Measure { .. } => InstrumentKind::Spectrometer,
            Op::Weigh { .. } => InstrumentKind::Balance,
            Op::Select { .. } => InstrumentKind::Valve,
            Op::ReadTemperature { .. } => InstrumentKind::Thermometer,
            Op::HoldTemperature { .. } => InstrumentKind::TemperatureController,
        }
    }

    fn repeat_safe(&self) -> bool {
        // Turning a valve to a port twice leaves it at that port, so a selection is as safe to repeat as a reading.
        matches!(self, Op::Measure { .. } | Op::Weigh { .. } | Op::ReadTemperature { .. } | Op::Select { .. })
    }
}

/// An operation with every quantity bound: what one step of one experiment asks an instrument to do.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op")]
pub enum Action {
    /// Move the vessel.
    Transfer {
        /// Where to.
        to: Destination,
    },
    /// Dispense into the vessel.
    Dispense {
        /// How much, in microlitres.
        volume: Volume,
        /// Which reagent, if the step names one: the controller resolves it to a bottle the pump reaches.
        #[serde(skip_serializing_if = "Option::is_none")]
        reagent: Option<String>,
    },
    /// Heat, hold and optionally stir.
    Heat {
        /// The set point, in degrees Celsius.
        temperature: Temperature,
        /// The hold time, in seconds.
        duration: Duration,
        /// Stirring speed, in rpm.
        stir: Option<Speed>,
    },
    /// Stir without heating.
    Stir {
        /// In rpm.
        speed: Speed,
        /// In seconds.
        duration: Duration,
    },
    /// Read absorbance.
    Measure {
        /// In nanometres.
        wavelength: Wavelength,
        /// The output name.
        output: String,
    },
    /// Weigh the vessel.
    Weigh {
        /// The output name.
        output: String,
    },
    /// Turn a selector valve to a port.
    Select {
        /// The port, from 1.
        position: u32,
    },
    /// Read the vessel's temperature.
    ReadTemperature {
        /// The output name.
        output: String,
    },
    /// Hold the vessel at a temperature.
    HoldTemperature {
        /// The set point, in degrees Celsius.
        temperature: Temperature,
        /// The hold time, in seconds.
        duration: Duration,
    },
}

impl Action {
    /// The declared output the action's reading is recorded as: `Measure`, `Weigh` and `ReadTemperature` carry
    /// one, and each finishes with a measured value when it succeeds.
    pub fn output(&self) -> Option<&str> {
        match self {
            Action::Measure { output, .. } | Action::Weigh { output } | Action::ReadTemperature { output } => {
                Some(output)
            }
            _ => None,
        }
    }
}

impl Operation for Action {
    fn name(&self) -> &'static str {
        match self {
            Action::Transfer { .. } => "Transfer",
            Action::Dispense { .. } => "Dispense",
            Action::Heat { .. } => "Heat",
            Action::Stir { .. } => "Stir",
            Action::Measure { .. } => "Measure",
            Action::Weigh { .. } => "Weigh",
            Action::Select { .. } => "Select",
            Action::ReadTemperature { .. } => "ReadTemperature",
            Action::HoldTemperature { .. } => "HoldTemperature",
        }
    }

    fn kind(&self) -> InstrumentKind {
        match self {
            Action::Transfer { .. } => InstrumentKind::Gantry,
            Action::Dispense { .. } => InstrumentKind::SyringePump,
            Action::Heat { .. } | Action::Stir { .. } => InstrumentKind::Hotplate,
            Action::Measure { .. } => InstrumentKind::Spectrometer,
            Action::Weigh { .. } => InstrumentKind::Balance,
            Action::Select { .. } => InstrumentKind::Valve,
            Action::ReadTemperature { .. } => InstrumentKind::Thermometer,
            Action::HoldTemperature { .. } => InstrumentKind::TemperatureController,
        }
    }

    fn repeat_safe(&self) -> bool {
        // Turning a valve to a port twice leaves it at that port, so a selection is as safe to repeat as a reading.
        matches!(
            self,
            Action::Measure { .. } | Action::Weigh { .. } | Action::ReadTemperature { .. } | Action::Select { .. }
        )
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Transfer { to } => write!(f, "Transfer to {to}"),
            Action::Dispense { volume, reagent: None } => write!(f, "Dispense {volume}"),
            Action::Dispense { volume, reagent: Some(r) } => write!(f, "Dispense {volume} of {r}"),
            Action::Heat { temperature, duration, stir: Some(s) } => {
                write!(f, "Heat {temperature} for {duration} at {s}")
            }
            Action::Heat { temperature, duration, stir: None } => write!(f, "Heat {temperature} for {duration}"),
            Action::Stir { speed, duration } => write!(f, "Stir {speed} for {duration}"),
            Action::Measure { wavelength, output } => write!(f, "Measure {output} at {wavelength}"),
            Action::Weigh { output } => write!(f, "Weigh {output}"),
            Action::Select { position } => write!(f, "Select port {position}"),
            Action::ReadTemperature { output } => write!(f, "Read temperature {output}"),
            Action::HoldTemperature { temperature, duration } => write!(f, "Hold {temperature} for {duration}"),
        }
    }
}
