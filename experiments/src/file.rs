//! The campaign file format, as written: a serde mirror of the RON.
//!
//! These types say exactly what a technician may write (`deny_unknown_fields` everywhere, no `untagged` or
//! `flatten`, which would turn typos into silence or vague errors). They hold what the file says, unchecked;
//! [`crate::campaign`] reads them section by section and turns them into a checked [`crate::Campaign`].
//!
//! A campaign file looks like this:
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
//! )
//! ```

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
    pub objective: IgnoredAny,
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
    /// Upper confidence bound: predicted value plus `sqrt(beta)` standard deviations.
    UpperConfidenceBound {
        /// How much to favour uncertainty; must be positive.
        beta: f64,
    },
}
