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
}

impl InstrumentKind {
    /// Every kind, in a stable order.
    pub const ALL: [InstrumentKind; 4] =
        [InstrumentKind::SyringePump, InstrumentKind::Hotplate, InstrumentKind::Spectrometer, InstrumentKind::Gantry];

    /// The name as written in files.
    pub fn name(self) -> &'static str {
        match self {
            InstrumentKind::SyringePump => "SyringePump",
            InstrumentKind::Hotplate => "Hotplate",
            InstrumentKind::Spectrometer => "Spectrometer",
            InstrumentKind::Gantry => "Gantry",
        }
    }

    /// A lower-case phrase for messages ("a syringe pump").
    pub fn phrase(self) -> &'static str {
        match self {
            InstrumentKind::SyringePump => "a syringe pump",
            InstrumentKind::Hotplate => "a hotplate",
            InstrumentKind::Spectrometer => "a spectrometer",
            InstrumentKind::Gantry => "a gantry",
        }
    }

    /// Parses the name as written in files.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether the instrument acts on the vessel standing at its own deck position (a gantry does not: it moves
    /// vessels wherever they are).
    pub fn has_position(self) -> bool {
        !matches!(self, InstrumentKind::Gantry)
    }
}

impl fmt::Display for InstrumentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
