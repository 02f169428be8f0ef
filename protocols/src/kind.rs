//! The kinds of instrument a protocol can ask for, and what each kind can do.
//!
//! A protocol names kinds, not vendors: "any hotplate", never "an IKA RCT digital". The lab file says which
//! driver stands behind each instrument; the mapping from kind to operations lives here so that `lab check`
//! can refuse "dispense on a hotplate" without knowing any lab.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A kind of instrument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename = "Kind")]
pub enum InstrumentKind {
    /// Dispenses liquid from a reservoir into the vessel at its deck position.
    SyringePump,
    /// Heats and stirs the vessel standing on it.
    Hotplate,
    /// Measures the absorbance of the vessel in its holder.
    Spectrometer,
    /// Moves vessels between deck positions.
    Gantry,
    /// Weighs the vessel standing on its pan.
    Balance,
    /// Selects one of several ports (a selector valve in front of a pump, say); acts on no vessel.
    Valve,
    /// Holds the vessel at its deck position at a temperature (a heating block or jacket).
    TemperatureController,
    /// Reads the temperature of the vessel at its deck position.
    Thermometer,
}

impl InstrumentKind {
    /// Every kind, in a stable order.
    pub const ALL: [InstrumentKind; 8] = [
        InstrumentKind::SyringePump,
        InstrumentKind::Hotplate,
        InstrumentKind::Spectrometer,
        InstrumentKind::Gantry,
        InstrumentKind::Balance,
        InstrumentKind::Valve,
        InstrumentKind::TemperatureController,
        InstrumentKind::Thermometer,
    ];

    /// The name as written in files.
    pub fn name(self) -> &'static str {
        match self {
            InstrumentKind::SyringePump => "SyringePump",
            InstrumentKind::Hotplate => "Hotplate",
            InstrumentKind::Spectrometer => "Spectrometer",
            InstrumentKind::Gantry => "Gantry",
            InstrumentKind::Balance => "Balance",
            InstrumentKind::Valve => "Valve",
            InstrumentKind::TemperatureController => "TemperatureController",
            InstrumentKind::Thermometer => "Thermometer",
        }
    }

    /// A lower-case phrase for messages ("a syringe pump").
    pub fn phrase(self) -> &'static str {
        match self {
            InstrumentKind::SyringePump => "a syringe pump",
            InstrumentKind::Hotplate => "a hotplate",
            InstrumentKind::Spectrometer => "a spectrometer",
            InstrumentKind::Gantry => "a gantry",
            InstrumentKind::Balance => "a balance",
            InstrumentKind::Valve => "a valve",
            InstrumentKind::TemperatureController => "a temperature controller",
            InstrumentKind::Thermometer => "a thermometer",
        }
    }

    /// Parses the name as written in files.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether the instrument acts on the vessel standing at its own deck position (a gantry does not: it moves
    /// vessels wherever they are; nor does a valve, which only routes liquid to another instrument).
    pub fn has_position(self) -> bool {
        !matches!(self, InstrumentKind::Gantry | InstrumentKind::Valve)
    }
}

impl fmt::Display for InstrumentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
