//! The protocol file format, as written: a serde mirror of the RON.
//!
//! These types say exactly what a technician may write and nothing more (`deny_unknown_fields` everywhere, no
//! `untagged` or `flatten`, which would turn typos into silence or into vague errors). They hold names and strings,
//! not checked values: `"250 uL"` stays a string here and becomes a [`crate::units::Volume`] only in validation,
//! where a bad unit can be reported with its exact position alongside every other problem.
//!
//! A protocol file looks like this:
//!
//! ```ron
//! Protocol(
//!     format: 1,
//!     name: "dilution",
//!     parameters: { "volume": (unit: "uL", min: 10, max: 500, default: 100) },
//!     outputs: { "absorbance": (unit: "AU") },
//!     steps: [
//!         (id: "load", op: Transfer(to: Kind(SyringePump))),
//!         (id: "add", on: Named("pump_a"), op: Dispense(volume: "$volume"), after: ["load"]),
//!         (id: "to_uvvis", op: Transfer(to: Kind(Spectrometer)), after: ["add"]),
//!         (id: "read", op: Measure(wavelength: "520 nm", output: "absorbance"), after: ["to_uvvis"]),
//!         (id: "unload", op: Transfer(to: Rack), after: ["read"]),
//!     ],
//! )
//! ```

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::kind::InstrumentKind;

/// The current protocol format version. Files state theirs in `format:`.
pub const FORMAT: u32 = 1;

/// The top level of a protocol file. `parameters`, `outputs` and `steps` are read section by section, so a mistake
/// in one step does not hide mistakes in the others; here they are only checked to be present.
#[derive(Debug, Deserialize)]
#[serde(rename = "Protocol", deny_unknown_fields)]
pub struct ProtocolHeader {
    /// The format version; must be [`FORMAT`].
    pub format: u32,
    /// A short name, recorded with every experiment.
    pub name: String,
    /// What the protocol does, for people.
    #[serde(default)]
    pub description: String,
    /// The inputs a campaign may set: read separately as [`ParameterFile`]s.
    #[serde(default)]
    pub parameters: Option<IgnoredAny>,
    /// The reagent parameters: read separately as [`crate::reagent::ReagentParameterFile`]s.
    #[serde(default)]
    pub reagents: Option<IgnoredAny>,
    /// The results the protocol produces: read separately as [`OutputFile`]s.
    #[serde(default)]
    pub outputs: Option<IgnoredAny>,
    /// The steps: read separately as [`StepFile`]s.
    pub steps: IgnoredAny,
}

/// A parameter: a number with a unit and a range, which campaigns set per experiment.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename = "Parameter", deny_unknown_fields)]
pub struct ParameterFile {
    /// The unit values are given in, such as `"uL"` or `"degC"`.
    pub unit: String,
    /// The smallest allowed value, in `unit`.
    pub min: f64,
    /// The largest allowed value, in `unit`.
    pub max: f64,
    /// The value used when a campaign does not set the parameter.
    #[serde(default)]
    pub default: Option<f64>,
    /// What the parameter means, for people.
    #[serde(default)]
    pub description: String,
}

/// A declared result of the protocol, written by a `Measure` step.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename = "Output", deny_unknown_fields)]
pub struct OutputFile {
    /// The unit the result is recorded in, such as `"AU"`.
    pub unit: String,
    /// What the result means, for people.
    #[serde(default)]
    pub description: String,
}

/// One step: an operation on an instrument, after other steps.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename = "Step", deny_unknown_fields)]
pub struct StepFile {
    /// A name unique within the protocol, used by `after` and in the record.
    pub id: String,
    /// Which instrument runs the step; defaults to any instrument of the kind the operation needs.
    #[serde(default)]
    pub on: Option<InstrumentFile>,
    /// What the instrument does.
    pub op: OpFile,
    /// The ids of the steps that must finish before this one starts.
    #[serde(default)]
    pub after: Vec<String>,
    /// The longest the step may wait once the steps in `after` have finished ("measure within 120 s of the end of
    /// heating"). The scheduler never starts a predecessor it cannot follow up in time; it holds instruments instead.
    #[serde(default)]
    pub within: Option<String>,
    /// The shortest time to wait after the steps in `after` have finished ("let it cool at least 300 s").
    #[serde(default)]
    pub wait: Option<String>,
    /// How long the step may run before it counts as failed (lab time); by default a generous bound from its
    /// operation.
    #[serde(default)]
    pub timeout: Option<String>,
    /// How many times to retry the step after a failure. Only operations that are safe to repeat (measurements) may
    /// be retried.
    #[serde(default)]
    pub retry: u32,
    /// Keep this step's instrument reserved for the experiment until its next step on the same instrument kind
    /// (a hold), so no other experiment's step slips in between.
    #[serde(default)]
    pub keep: bool,
}

/// Which instrument a step runs on.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename = "Instrument")]
pub enum InstrumentFile {
    /// Any instrument of this kind; the scheduler picks.
    Kind(InstrumentKind),
    /// The instrument with this name in the lab file.
    Named(String),
}

/// Where a transfer takes the experiment's vessel.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename = "Destination")]
pub enum DestinationFile {
    /// Back to the vessel's own slot in the rack.
    Rack,
    /// To the deck position of an instrument of this kind; the scheduler picks a free one.
    Kind(InstrumentKind),
    /// To the deck position of the named instrument.
    Named(String),
}

/// An operation as written. Quantities are strings: a literal with a unit (`"250 uL"`) or a parameter (`"$volume"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename = "Op", deny_unknown_fields)]
pub enum OpFile {
    /// Move the experiment's vessel to another deck position (runs on a gantry).
    Transfer {
        /// The destination.
        to: DestinationFile,
    },
    /// Dispense a volume into the vessel at the pump's position (runs on a syringe pump).
    Dispense {
        /// The volume to dispense.
        volume: String,
        /// The reagent to add: a name the lab declares, or a reagent parameter (`"$catalyst"`); without it, whatever
        /// the pump's bottle holds.
        #[serde(default)]
        reagent: Option<String>,
    },
    /// Heat the vessel on a hotplate to a temperature, hold it there, and optionally stir.
    Heat {
        /// The set point.
        temperature: String,
        /// How long to hold at the set point, counted from when the plate reaches it.
        duration: String,
        /// Stirring speed while heating; no stirring if absent.
        #[serde(default)]
        stir: Option<String>,
    },
    /// Stir the vessel on a hotplate without heating.
    Stir {
        /// The stirring speed.
        speed: String,
        /// How long to stir.
        duration: String,
    },
    /// Measure the vessel's absorbance at a wavelength and record it as an output (runs on a spectrometer).
    Measure {
        /// The wavelength to read.
        wavelength: String,
        /// The declared output the reading is recorded as.
        output: String,
    },
    /// Weigh the vessel on a balance and record the mass as an output.
    Weigh {
        /// The declared output the mass is recorded as.
        output: String,
    },
    /// Turn a selector valve to a port (runs on a valve; acts on no vessel).
    Select {
        /// The port, from 1.
        position: u32,
    },
    /// Read the vessel's temperature with a thermometer and record it as an output.
    ReadTemperature {
        /// The declared output the temperature is recorded as.
        output: String,
    },
    /// Hold the vessel at a temperature with a temperature controller (a heating block or jacket).
    HoldTemperature {
        /// The set point.
        temperature: String,
        /// How long to hold at the set point, counted from when the controller reaches it.
        duration: String,
    },
}

impl OpFile {
    /// The operation's name as written in files.
    pub fn name(&self) -> &'static str {
        match self {
            OpFile::Transfer { .. } => "Transfer",
            OpFile::Dispense { .. } => "Dispense",
            OpFile::Heat { .. } => "Heat",
            OpFile::Stir { .. } => "Stir",
            OpFile::Measure { .. } => "Measure",
            OpFile::Weigh { .. } => "Weigh",
            OpFile::Select { .. } => "Select",
            OpFile::ReadTemperature { .. } => "ReadTemperature",
            OpFile::HoldTemperature { .. } => "HoldTemperature",
        }
    }
}
