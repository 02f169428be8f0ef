//! Proposers: what to try next, given what has been measured. This is the active-learning loop's interface.
//!
//! A [`Proposer`] is told results ([`Proposer::tell`]) and asked for new points ([`Proposer::ask`]), in any
//! interleaving, which is how a lab runs: several experiments are in flight at once, results arrive out of
//! order, and some experiments fail. The controller owns the loop, the clock and the record; a proposer only
//! turns what it has been told into [`Proposal`]s, each carrying the strategy, the model's prediction and a
//! sentence of reasoning, so every experiment in the record says why it was run.
//!
//! Three proposers exist, chosen by [`ProposerConfig`]:
//! - [`RandomProposer`]: uniform random points, the baseline every other strategy must beat;
//! - [`SpaceFillingProposer`]: a Latin hypercube over the budget, then the emptiest regions;
//! - [`GpProposer`]: a space-filling start, then a Gaussian-process model whose acquisition function (log expected
//!   improvement by default) picks each point.
//!
//! Every proposer works in the unit cube of its [`Space`] and keeps these promises: proposals lie inside the box;
//! no proposal is within [`MIN_DISTANCE`] (in the unit cube) of a told point, a pending point or another proposal
//! of the same batch; a failed experiment's point counts as measured; and the same seed with the same sequence of
//! calls gives the same proposals, since all randomness comes from one seeded generator.

pub mod acquisition;
pub mod gaussian_process;
pub mod random;
mod search;
pub mod space_filling;

use rand::distributions::Standard;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

use crate::Objective;
pub use crate::space::Point;
use crate::space::Space;
pub use acquisition::{expected_improvement, log_expected_improvement, log_h, normal_cdf, normal_pdf};
pub use gaussian_process::{GpProposer, ModelError};
pub use random::RandomProposer;
pub use space_filling::{SpaceFillingProposer, latin_hypercube};

/// The smallest distance, in the unit cube, between a proposal and any told point, pending point or other
/// proposal of the same batch.
pub const MIN_DISTANCE: f64 = 1e-6;

/// The result of one experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// The parameter values the experiment ran with (at least every dimension of the space).
    pub values: Point,
    /// The objective's value, or `None` if the experiment failed (an instrument fault, a missing reading).
    pub objective: Option<f64>,
}

/// One proposed experiment, with the provenance of the choice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    /// The varied parameters' values, in each parameter's own unit. Fixed parameters are not included; see
    /// [`crate::Campaign::parameters`].
    pub values: Point,
    /// How the point was chosen, such as `"space-filling (LHS)"` or `"GP LogEI"`.
    pub strategy: String,
    /// The model's prediction of the objective at this point, in the objective's units, if a model was used.
    pub predicted_mean: Option<f64>,
    /// The model's standard deviation at this point, in the objective's units, if a model was used.
    pub predicted_sd: Option<f64>,
    /// The value of the acquisition function that chose the point, if one did. It is computed on the model's
    /// standardised scale: a natural logarithm for LogEI, a multiple of the objective's spread for EI and UCB.
    pub acquisition: Option<f64>,
    /// The model's provenance: kernel, hyperparameters, training size, pending count, best result so far.
    pub model: Option<serde_json::Value>,
    /// One sentence saying why this point.
    pub reason: String,
}

/// Chooses experiments from results: the ask/tell interface of the active-learning loop.
///
/// An implementation must keep the promises listed in the [module documentation](self). It must not block on
/// anything but computation, read files or clocks, or start threads of its own.
pub trait Proposer: Send {
    /// A short name for logs and the record, such as `"gaussian process (LogEI)"`.
    fn name(&self) -> &str;

    /// Records one experiment's result. An observation that does not give a finite value for every dimension of
    /// the space cannot be placed and is ignored; a failed one (`objective: None`) still marks its point measured.
    fn tell(&mut self, observation: Observation);

    /// Proposes `n` new points, distinct from every told point, from `pending` (experiments in flight whose
    /// results are not yet told) and from each other. Fewer than `n` come back only when the space has no room
    /// left, which happens only for a space whose every dimension has zero width.
    fn ask(&mut self, n: usize, pending: &[Point]) -> Vec<Proposal>;
}

/// Which proposer a campaign uses, with its settings.
#[derive(Debug, Clone, PartialEq)]
pub enum ProposerConfig {
    /// Uniformly random points.
    Random,
    /// A Latin hypercube over the budget, then the emptiest regions.
    SpaceFilling,
    /// A space-filling start of `initial` points, then a Gaussian-process model and an acquisition function.
    GaussianProcess {
        /// How many experiments the space-filling start has.
        initial: usize,
        /// How the model's predictions are turned into a choice.
        acquisition: Acquisition,
    },
}

/// How a model's prediction (mean and standard deviation) is turned into a choice of point.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Acquisition {
    /// The natural logarithm of expected improvement, computed without underflow (Ament et al. 2023), so points
    /// far from the best still rank by how promising they are instead of all scoring zero.
    #[default]
    LogExpectedImprovement,
    /// Expected improvement over the best result so far.
    ExpectedImprovement,
    /// Upper confidence bound: the predicted value plus `sqrt(beta)` predicted standard deviations (the BoTorch
    /// convention), improved in the objective's direction.
    UpperConfidenceBound {
        /// How much to favour uncertainty; positive.
        beta: f64,
    },
}

impl Acquisition {
    /// The short name used in strategies and provenance: `"LogEI"`, `"EI"` or `"UCB"`.
    pub fn short_name(&self) -> &'static str {
        match self {
            Acquisition::LogExpectedImprovement => "LogEI",
            Acquisition::ExpectedImprovement => "EI",
            Acquisition::UpperConfidenceBound { .. } => "UCB",
        }
    }
}

/// Builds the proposer `config` describes over `space`, optimising `objective`, seeded with `seed`. `budget` is
/// the total number of experiments, which the space-filling proposer spreads its design over.
pub fn build(
    config: &ProposerConfig,
    space: &Space,
    objective: &Objective,
    budget: usize,
    seed: u64,
) -> Box<dyn Proposer> {
    match config {
        ProposerConfig::Random => Box::new(RandomProposer::new(space.clone(), seed)),
        ProposerConfig::SpaceFilling => Box::new(SpaceFillingProposer::new(space.clone(), budget, seed)),
        ProposerConfig::GaussianProcess { initial, acquisition } => {
            Box::new(GpProposer::new(space.clone(), objective.clone(), *initial, *acquisition, seed))
        }
    }
}

/// The random generator every proposer draws from.
pub(crate) fn rng(seed: u64) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(seed)
}

/// A point drawn uniformly from the unit cube of dimension `d`.
pub(crate) fn uniform_point(rng: &mut Xoshiro256PlusPlus, d: usize) -> Vec<f64> {
    (0..d).map(|_| rng.sample(Standard)).collect()
}

/// What a proposer has been told, in unit-cube coordinates.
#[derive(Debug, Clone)]
pub(crate) struct History {
    pub space: Space,
    /// Every placed observation: its unit coordinates and its objective (`None` when it failed or was not finite).
    pub told: Vec<(Vec<f64>, Option<f64>)>,
}

impl History {
    pub fn new(space: Space) -> Self {
        History { space, told: Vec::new() }
    }

    pub fn tell(&mut self, observation: Observation) {
        if let Ok(u) = self.space.to_unit(&observation.values) {
            self.told.push((u, observation.objective.filter(|v| v.is_finite())));
        }
    }

    /// The unit coordinates of every point a proposal must keep away from: told points, then pending ones.
    pub fn taken(&self, pending: &[Point]) -> Vec<Vec<f64>> {
        let mut taken: Vec<Vec<f64>> = self.told.iter().map(|(u, _)| u.clone()).collect();
        taken.extend(pending.iter().filter_map(|p| self.space.to_unit(p).ok()));
        taken
    }

    /// The number of successful observations.
    pub fn successes(&self) -> usize {
        self.told.iter().filter(|(_, y)| y.is_some()).count()
    }

    pub fn failures(&self) -> usize {
        self.told.len() - self.successes()
    }
}

/// The squared Euclidean distance between two points of the unit cube.
pub(crate) fn distance2(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Whether `u` is within [`MIN_DISTANCE`] of any of `others`.
pub(crate) fn too_close(u: &[f64], others: &[Vec<f64>]) -> bool {
    others.iter().any(|o| distance2(u, o) < MIN_DISTANCE * MIN_DISTANCE)
}

/// A proposal that no model was involved in.
pub(crate) fn plain_proposal(values: Point, strategy: &str, reason: String) -> Proposal {
    Proposal {
        values,
        strategy: strategy.to_owned(),
        predicted_mean: None,
        predicted_sd: None,
        acquisition: None,
        model: None,
        reason,
    }
}

/// Formats a number for a sentence: four significant digits, without trailing zeros.
pub(crate) fn short(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let digits = (3 - v.abs().log10().floor() as i32).clamp(0, 12) as usize;
    let s = format!("{v:.digits$}");
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_owned() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_numbers_read_well() {
        assert_eq!(short(0.123456), "0.1235");
        assert_eq!(short(1234.5678), "1235");
        assert_eq!(short(2.5), "2.5");
        assert_eq!(short(-0.000123456), "-0.0001235");
        assert_eq!(short(0.0), "0");
    }
}
