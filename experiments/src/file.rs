//! The campaign file format, as written: a serde mirror of the RON.
//!
//! These types say exactly what a technician may write (`deny_unknown_fields` everywhere, no `untagged` or
//! `flatten`, which would turn typos into silence or vague errors). They hold what the file says, unchecked;
//! [`crate::campaign`] reads them section by section and turns them into a checked [`crate::Campaign`].
//!
//! A campaign file looks like this (the fields after `seed` are optional, and shown with examples):
//!
//! ```ron
//! Campaign(
//!     format: 1,
//!     name: "demo",
//!     description: "Find the conditions that give the most product.",
//!     protocol: "../../protocols/library/condensation.protocol.ron",
//!     lab: "../../devices/labs/sim.lab.ron",
//!     vary: {
//!         "volume_b": (min: 50, max: 500),
//!         "temperature": (min: 30, max: 150),
//!     },
//!     fixed: { "duration": 30 },
//!     objective: Maximize("absorbance"),
//!     budget: 24,
//!     in_flight: 4,
//!     proposer: GaussianProcess(initial: 8, acquisition: LogExpectedImprovement),
//!     seed: 1,
//!     constraints: [(terms: {"volume_a": 1, "volume_b": 1}, max: 600)],
//!     per_batch: ["temperature"],
//!     stop: (max_time: "8 h", target: 0.9, min_expected_improvement: 0.001),
//! )
//! ```
//!
//! A `vary` entry is a continuous range `(min: 50, max: 500)`, or one of the [`VaryFile`] kinds:
//! `Integer(min: 1, max: 8, step: 1)`, `Categorical(levels: {"DBU": 1, "MTBD": 2}, encoding: OneHot)`.
//! `objective: Maximize("yield")` may instead be `objectives: [Maximize("yield"), Minimize("impurity")]`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::IgnoredAny;

/// The current campaign format version. Files state theirs in `format:`.
pub const FORMAT: u32 = 1;

/// The top level of a campaign file. The entries of `vary` and `fixed`, the objective and the proposer are read
/// separately, so a mistake in one does not hide mistakes in the others; here they are only checked to be present.
#[derive(Debug, Deserialize)]
#[serde(rename = "Campaign", deny_unknown_fields)]
pub struct CampaignHeader {
    /// The format version; must be [`FORMAT`].
    pub format: u32,
    /// A short name, recorded with every experiment.
    pub name: String,
    /// What the campaign is for, for people.
    #[serde(default)]
    pub description: String,
    /// The protocol to run, relative to the campaign file's folder.
    pub protocol: String,
    /// The lab to run it in, relative to the campaign file's folder.
    pub lab: String,
    /// The parameters to vary: read separately as [`RangeFile`]s.
    pub vary: BTreeMap<String, IgnoredAny>,
    /// The parameters held at one value: read separately as numbers.
    #[serde(default)]
    pub fixed: BTreeMap<String, IgnoredAny>,
    /// The output to optimise: read separately as an [`ObjectiveFile`].
    #[serde(default)]
    pub objective: Option<IgnoredAny>,
    /// Several outputs to optimise at once, instead of `objective`: read separately as [`ObjectiveFile`]s.
    #[serde(default)]
    pub objectives: Option<IgnoredAny>,
    /// The total number of experiments to run.
    pub budget: usize,
    /// The largest number of experiments running at once.
    #[serde(default = "one")]
    pub in_flight: usize,
    /// How to choose experiments: read separately as a [`ProposerFile`].
    pub proposer: IgnoredAny,
    /// The seed of every random choice the proposer makes.
    #[serde(default)]
    pub seed: u64,
    /// Linear constraints on the varied parameters: read separately as [`ConstraintFile`]s.
    #[serde(default)]
    pub constraints: Option<IgnoredAny>,
    /// Varied parameters that take one value for every experiment proposed together.
    #[serde(default)]
    pub per_batch: Vec<String>,
    /// When to stop before the budget is spent: read separately as a [`StopFile`].
    #[serde(default)]
    pub stop: Option<IgnoredAny>,
}

fn one() -> usize {
    1
}

/// The interval a varied parameter is searched in, in the parameter's own unit.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename = "Range", deny_unknown_fields)]
pub struct RangeFile {
    /// The smallest value to try.
    pub min: f64,
    /// The largest value to try.
    pub max: f64,
}

/// A `vary` entry written with its kind: `Integer(...)`, `Categorical(...)` or `Continuous(...)`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename = "Vary", deny_unknown_fields)]
pub enum VaryFile {
    /// Any value between `min` and `max`; the same as `(min: ..., max: ...)`.
    Continuous {
        /// The smallest value to try.
        min: f64,
        /// The largest value to try.
        max: f64,
    },
    /// `min`, `min + step`, … up to `max`.
    Integer {
        /// The smallest value to try.
        min: f64,
        /// The largest value to try.
        max: f64,
        /// The spacing of the values; 1 unless given.
        #[serde(default = "unit_step")]
        step: f64,
    },
    /// One of several named levels, each with the number the protocol parameter takes for it, or, for a reagent
    /// parameter of the protocol, the reagent it dispenses.
    Categorical {
        /// Level name to protocol value (or reagent name), in the order the file lists them.
        levels: std::collections::BTreeMap<String, LevelFile>,
        /// How models see the levels.
        #[serde(default)]
        encoding: EncodingFile,
    },
}

/// What a categorical level gives the protocol: a number, or (for a reagent parameter) a reagent's name.
#[derive(Debug, Clone, PartialEq)]
pub enum LevelFile {
    /// The number a numeric parameter takes.
    Number(f64),
    /// The reagent a reagent parameter takes.
    Reagent(String),
}

impl<'de> Deserialize<'de> for LevelFile {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // A visitor rather than `untagged`, so anything else is named in the error.
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = LevelFile;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number, or a reagent's name")
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<LevelFile, E> {
                Ok(LevelFile::Number(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<LevelFile, E> {
                Ok(LevelFile::Number(v as f64))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<LevelFile, E> {
                Ok(LevelFile::Number(v as f64))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<LevelFile, E> {
                Ok(LevelFile::Reagent(v.to_owned()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

fn unit_step() -> f64 {
    1.0
}

/// The encoding of a categorical parameter as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename = "Encoding", deny_unknown_fields)]
pub enum EncodingFile {
    /// One 0/1 feature per level (the default): every pair of levels equally different.
    #[default]
    OneHot,
    /// Numbers describing each level, by level name; every level needs a list of the same length.
    Descriptors(BTreeMap<String, Vec<f64>>),
}

/// A linear constraint as written: `(terms: {"volume_a": 1, "volume_b": 1}, max: 600)`. Give `max`, `min`, both,
/// or `equals`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename = "Constraint", deny_unknown_fields)]
pub struct ConstraintFile {
    /// Parameter name to coefficient; the constrained quantity is the sum of coefficient × value.
    pub terms: BTreeMap<String, f64>,
    /// The smallest allowed sum.
    #[serde(default)]
    pub min: Option<f64>,
    /// The largest allowed sum.
    #[serde(default)]
    pub max: Option<f64>,
    /// The exact sum required.
    #[serde(default)]
    pub equals: Option<f64>,
}

/// Early-stopping rules as written: `(max_time: "8 h", target: 0.9, min_expected_improvement: 0.001, patience: 3)`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename = "Stop", deny_unknown_fields)]
pub struct StopFile {
    /// The most lab time the campaign may take, with a unit: `"90 min"`, `"8 h"`.
    #[serde(default)]
    pub max_time: Option<String>,
    /// Stop once a result reaches this value of the objective.
    #[serde(default)]
    pub target: Option<f64>,
    /// Stop once the model expects less improvement than this fraction of the range of results seen.
    #[serde(default)]
    pub min_expected_improvement: Option<f64>,
    /// How many consecutive proposals must expect that little; 3 unless given.
    #[serde(default)]
    pub patience: Option<usize>,
}

/// The objective as written: `Maximize("absorbance")` or `Minimize("impurity")`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename = "Objective")]
pub enum ObjectiveFile {
    /// Make the named output as large as possible.
    Maximize(String),
    /// Make the named output as small as possible.
    Minimize(String),
}

/// The proposer as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename = "Proposer", deny_unknown_fields)]
pub enum ProposerFile {
    /// Uniformly random points.
    Random,
    /// A Latin hypercube over the budget, then the emptiest regions.
    SpaceFilling,
    /// A space-filling start, then a Gaussian-process model and an acquisition function.
    GaussianProcess {
        /// How many experiments the space-filling start has.
        initial: usize,
        /// How the model's predictions are turned into a choice.
        #[serde(default)]
        acquisition: AcquisitionFile,
    },
}

/// The acquisition function as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename = "Acquisition", deny_unknown_fields)]
pub enum AcquisitionFile {
    /// The logarithm of expected improvement, computed stably (the default).
    #[default]
    LogExpectedImprovement,
    /// Expected improvement.
    ExpectedImprovement,
    /// The probability of improving on the best result so far.
    ProbabilityOfImprovement,
    /// Upper confidence bound: predicted value plus `sqrt(beta)` standard deviations.
    UpperConfidenceBound {
        /// How much to favour uncertainty; must be positive.
        beta: f64,
    },
}
