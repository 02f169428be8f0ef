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
//! Every proposer works in the coordinates of its [`Space`] and keeps these promises: proposals lie inside the
//! space (allowed values, every constraint satisfied, and with a pool, one of the pool's points); no proposal is
//! within [`MIN_DISTANCE`] (in coordinates) of a told point, a pending point or another proposal of the same
//! batch; the parameters the space shares per batch take one value across the proposals of one ask; a failed
//! experiment's point counts as measured; and the same seed with the same sequence of calls gives the same
//! proposals, since all randomness comes from one seeded generator.
//!
//! A [`Problem`] may give a finite pool (the rows of a lookup table, for backtests); a space whose every dimension
//! is discrete and which has at most [`ENUMERATION_LIMIT`] points is enumerated into one. Proposers then choose
//! among the pool's untried points only, and say so with [`Proposer::should_stop`] once none is left.

pub mod acquisition;
pub mod gaussian_process;
pub mod random;
mod search;
pub mod space_filling;

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

use crate::Objective;
pub use crate::space::Point;
use crate::space::Space;
use crate::stop::{StopReason, StopRules, StopTracker};
pub use acquisition::{expected_improvement, log_expected_improvement, log_h, normal_cdf, normal_pdf};
pub use gaussian_process::{GpProposer, ModelError};
pub use random::RandomProposer;
pub(crate) use search::sobol as sobol_points;
pub use space_filling::{SpaceFillingProposer, latin_hypercube};

/// The smallest distance, in coordinates, between a proposal and any told point, pending point or other
/// proposal of the same batch.
pub const MIN_DISTANCE: f64 = 1e-6;

/// The most points of an all-discrete space that are enumerated and scored one by one; larger discrete spaces
/// are searched like continuous ones, with rounding.
pub const ENUMERATION_LIMIT: usize = 20_000;

/// The result of one experiment, for a campaign with one objective.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// The parameter values the experiment ran with (at least every dimension of the space).
    pub values: Point,
    /// The objective's value, or `None` if the experiment failed (an instrument fault, a missing reading).
    pub objective: Option<f64>,
}

/// The result of one experiment with every output it measured, for campaigns with one objective or several.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The parameter values the experiment ran with (at least every dimension of the space).
    pub values: Point,
    /// Every output measured, by name; `None` if the experiment failed. An experiment that lacks one of the
    /// objectives' outputs, or whose value is not finite, counts as failed.
    pub outputs: Option<BTreeMap<String, f64>>,
}

/// One proposed experiment, with the provenance of the choice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    /// The varied parameters' values, in each parameter's own unit (a categorical parameter's value is its
    /// level's number). Fixed parameters are not included; see [`crate::Campaign::parameters`].
    pub values: Point,
    /// How the point was chosen, such as `"space-filling (Sobol)"` or `"GP LogEI"`.
    pub strategy: String,
    /// The model's prediction of the objective at this point, in the objective's units, if a model was used
    /// (for several objectives: of the scalarised objective the point was chosen for).
    pub predicted_mean: Option<f64>,
    /// The model's standard deviation at this point, in the objective's units, if a model was used.
    pub predicted_sd: Option<f64>,
    /// The value of the acquisition function that chose the point, if one did. It is computed on the model's
    /// standardised scale: a natural logarithm for LogEI and PI, a multiple of the objective's spread for EI and
    /// UCB.
    pub acquisition: Option<f64>,
    /// The model's provenance: the data it was fitted on (size and hash), its hyperparameters, the acquisition
    /// function and its value, pending points, feasibility, and for several objectives the scalarisation.
    pub model: Option<serde_json::Value>,
    /// One sentence saying why this point.
    pub reason: String,
    /// The level names of the categorical parameters' values, by parameter name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// Chooses experiments from results: the ask/tell interface of the active-learning loop.
///
/// An implementation must keep the promises listed in the [module documentation](self). It must not block on
/// anything but computation, read files or clocks, or start threads of its own.
pub trait Proposer: Send {
    /// A short name for logs and the record, such as `"gaussian process (LogEI)"`.
    fn name(&self) -> &str;

    /// Records one experiment's result for the first objective.
    ///
    /// The values are taken as the experiment ran: a continuous or integer value outside its range or off its grid
    /// (a plate that settled a little past the range, a volume the pump rounded) is a real result and is kept, at
    /// coordinates outside `[0, 1]` or between grid values. Only an observation that cannot be placed is ignored:
    /// one without a value for some dimension, with a value that is not a finite number, or with a categorical
    /// value that is no level's. A failed one (`objective: None`) still marks its point measured. With several
    /// objectives, an observation of the first alone marks its point measured but trains nothing; use
    /// [`Proposer::tell_outcome`].
    fn tell(&mut self, observation: Observation);

    /// Records one experiment's result with every output it measured; its values are placed, or ignored, as
    /// [`Proposer::tell`] says.
    fn tell_outcome(&mut self, outcome: Outcome);

    /// Proposes `n` new points, distinct from every told point, from `pending` (experiments in flight whose
    /// results are not yet told) and from each other. Fewer than `n` come back only when the space has no room
    /// left: every point of a finite space or pool tried, a space whose every dimension has zero width, or a space
    /// whose constraints leave no point (which [`Proposer::should_stop`] reports from the start).
    fn ask(&mut self, n: usize, pending: &[Point]) -> Vec<Proposal>;

    /// Levels (parameter name, level number) of categorical parameters that later asks should not propose, until
    /// the next call: a reagent that ran out, say. A proposer that can steer its search away from them does; the
    /// others ignore it (the default), and their caller filters what they propose.
    fn avoid(&mut self, _levels: &[(String, f64)]) {}

    /// Whether the campaign should stop before its budget: a result reached the target, the model expects no
    /// worthwhile improvement anywhere, or no untried point is left. The time limit is the controller's to check
    /// ([`StopRules::check_time`]).
    fn should_stop(&self) -> Option<StopReason> {
        None
    }
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
    /// The probability of improving on the best result so far (computed as its logarithm): greedier than
    /// expected improvement, since it ignores by how much.
    ProbabilityOfImprovement,
    /// Upper confidence bound: the predicted value plus `sqrt(beta)` predicted standard deviations (the BoTorch
    /// convention), improved in the objective's direction.
    UpperConfidenceBound {
        /// How much to favour uncertainty; positive.
        beta: f64,
    },
}

impl Acquisition {
    /// The short name used in strategies and provenance: `"LogEI"`, `"EI"`, `"PI"` or `"UCB"`.
    pub fn short_name(&self) -> &'static str {
        match self {
            Acquisition::LogExpectedImprovement => "LogEI",
            Acquisition::ExpectedImprovement => "EI",
            Acquisition::ProbabilityOfImprovement => "PI",
            Acquisition::UpperConfidenceBound { .. } => "UCB",
        }
    }
}

/// Everything a proposer is built for: the space, what to optimise, the budget, the stop rules, and, for
/// offline use, the finite pool of points that may be proposed (the rows of a lookup table).
#[derive(Debug, Clone)]
pub struct Problem {
    /// The space searched.
    pub space: Space,
    /// What is optimised: one objective, or several (then the Pareto front is sought).
    pub objectives: Vec<Objective>,
    /// The total number of experiments, which the space-filling proposer spreads its design over.
    pub budget: usize,
    /// When to stop early.
    pub stop: StopRules,
    /// If given, every proposal is one of these points (each inside the space); otherwise any point of the space.
    pub pool: Option<Vec<Point>>,
}

impl Problem {
    /// A problem over `space` with one objective, no stop rules and no pool.
    pub fn new(space: Space, objective: Objective, budget: usize) -> Self {
        Problem { space, objectives: vec![objective], budget, stop: StopRules::default(), pool: None }
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
    build_for(config, &Problem::new(space.clone(), objective.clone(), budget), seed)
}

/// Builds the proposer `config` describes for `problem`, seeded with `seed`.
pub fn build_for(config: &ProposerConfig, problem: &Problem, seed: u64) -> Box<dyn Proposer> {
    match config {
        ProposerConfig::Random => Box::new(RandomProposer::for_problem(problem, seed)),
        ProposerConfig::SpaceFilling => Box::new(SpaceFillingProposer::for_problem(problem, seed)),
        ProposerConfig::GaussianProcess { initial, acquisition } => {
            Box::new(GpProposer::for_problem(problem, *initial, *acquisition, seed))
        }
    }
}

/// What a proposer for `problem` remembers to answer [`Proposer::should_stop`]: the problem's stop rules and first
/// objective, and whether the space has any point at all.
///
/// A pool decides what may be proposed, and an empty one says so at the first ask ([`StopReason::Exhausted`]), so
/// only a space searched without one is checked; a space whose constraints leave no point makes every ask come back
/// empty, and the proposer says why from the start ([`StopReason::Infeasible`]). The check finds a point at once in
/// any usual space, so it costs little.
pub(crate) fn stop_tracker(problem: &Problem) -> StopTracker {
    let mut stop = StopTracker::new(problem.stop.clone(), problem.objectives.first().cloned());
    if problem.pool.is_none() && problem.space.feasible_point().is_none() {
        stop.infeasible();
    }
    stop
}

/// The random generator every proposer draws from.
pub(crate) fn rng(seed: u64) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(seed)
}

/// What became of one told experiment.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Status {
    /// Every objective's value, in the objectives' own units and order.
    Values(Vec<f64>),
    /// The experiment failed.
    Failed,
    /// It succeeded, but not every objective was reported (a one-objective observation in a multi-objective
    /// campaign): the point is measured, but trains nothing.
    Incomplete,
}

/// One told experiment.
#[derive(Debug, Clone)]
pub(crate) struct Told {
    pub unit: Vec<f64>,
    pub result: Status,
}

/// What a proposer has been told, in coordinates.
#[derive(Debug, Clone)]
pub(crate) struct History {
    pub space: Space,
    pub objectives: Vec<Objective>,
    pub told: Vec<Told>,
    /// The points a proposal must come from, as coordinates, when the problem has a finite pool or the space is
    /// small enough to enumerate.
    pub pool: Option<Vec<Vec<f64>>>,
}

impl History {
    pub fn new(problem: &Problem) -> Self {
        let space = problem.space.clone();
        let pool = match &problem.pool {
            Some(points) => {
                let mut units: Vec<Vec<f64>> = Vec::new();
                for p in points {
                    if let Ok(u) = space.to_unit(p)
                        && space.contains(p)
                        && !too_close(&u, &units)
                    {
                        units.push(u);
                    }
                }
                Some(units)
            }
            None if !space.has_continuous()
                && space.discrete_count().is_some_and(|c| c <= ENUMERATION_LIMIT as u128) =>
            {
                Some(space.enumerate(ENUMERATION_LIMIT))
            }
            None => None,
        };
        History { space, objectives: problem.objectives.clone(), told: Vec::new(), pool }
    }

    pub fn tell(&mut self, observation: Observation) {
        // `to_unit` keeps values outside the box (see `Proposer::tell`): the model, the search and the distances
        // between points all take coordinates outside `[0, 1]`, and only proposals must lie inside.
        let Ok(unit) = self.space.to_unit(&observation.values) else { return };
        let result = match observation.objective {
            Some(v) if v.is_finite() && self.objectives.len() == 1 => Status::Values(vec![v]),
            Some(v) if v.is_finite() => Status::Incomplete,
            _ => Status::Failed,
        };
        self.told.push(Told { unit, result });
    }

    pub fn tell_outcome(&mut self, outcome: Outcome) {
        let Ok(unit) = self.space.to_unit(&outcome.values) else { return };
        let result = match &outcome.outputs {
            None => Status::Failed,
            Some(outputs) => {
                let values: Option<Vec<f64>> =
                    self.objectives.iter().map(|o| outputs.get(&o.output).copied().filter(|v| v.is_finite())).collect();
                values.map_or(Status::Failed, Status::Values)
            }
        };
        self.told.push(Told { unit, result });
    }

    /// The coordinates of every point a proposal must keep away from: told points, then pending ones.
    pub fn taken(&self, pending: &[Point]) -> Vec<Vec<f64>> {
        let mut taken: Vec<Vec<f64>> = self.told.iter().map(|t| t.unit.clone()).collect();
        taken.extend(pending.iter().filter_map(|p| self.space.to_unit(p).ok()));
        taken
    }

    pub fn failures(&self) -> usize {
        self.told.iter().filter(|t| t.result == Status::Failed).count()
    }

    /// The pool's members not yet taken, if there is a pool.
    pub fn untaken_pool(&self, taken: &[Vec<f64>]) -> Option<Vec<Vec<f64>>> {
        let pool = self.pool.as_ref()?;
        Some(untaken(pool, taken).cloned().collect())
    }

    /// The proposal for coordinates `unit`, with the labels of its categorical values.
    pub fn proposal(&self, unit: &[f64], strategy: &str, reason: String) -> Proposal {
        let values = self.space.from_unit(unit);
        let labels = self.space.labels(&values);
        Proposal {
            values,
            strategy: strategy.to_owned(),
            predicted_mean: None,
            predicted_sd: None,
            acquisition: None,
            model: None,
            reason,
            labels,
        }
    }
}

/// A hash of everything told, in order (coordinates, and each result or failure), as 16 hex digits of 64-bit
/// FNV-1a: two proposals with the same hash were made from the same data, whatever the record says.
pub(crate) fn data_hash(told: &[Told]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bits: u64| {
        for b in bits.to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for t in told {
        for u in &t.unit {
            eat(u.to_bits());
        }
        match &t.result {
            Status::Values(v) => {
                eat(1);
                v.iter().for_each(|x| eat(x.to_bits()));
            }
            Status::Failed => eat(2),
            Status::Incomplete => eat(3),
        }
    }
    format!("{h:016x}")
}

/// The squared Euclidean distance between two points of the unit cube.
pub(crate) fn distance2(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Whether `u` is within [`MIN_DISTANCE`] of any of `others`.
pub(crate) fn too_close(u: &[f64], others: &[Vec<f64>]) -> bool {
    others.iter().any(|o| distance2(u, o) < MIN_DISTANCE * MIN_DISTANCE)
}

/// The members of `pool` not within [`MIN_DISTANCE`] of any of `taken`, as [`too_close`] decides, but with
/// `taken` sorted by its first coordinate, so each member is compared only with the few that could be that close:
/// a table of thousands of rows against hundreds of results is otherwise a million comparisons a proposal.
pub(crate) fn untaken<'a>(pool: &'a [Vec<f64>], taken: &[Vec<f64>]) -> impl Iterator<Item = &'a Vec<f64>> {
    // A point whose first coordinate is not a number is at no distance from anything, as `distance2` is NaN.
    let mut sorted: Vec<&Vec<f64>> = taken.iter().filter(|t| !first(t).is_nan()).collect();
    sorted.sort_by(|a, b| first(a).total_cmp(&first(b)));
    // The window is twice as wide as needed, so that rounding at its edges cannot leave a close point out.
    let window = 2.0 * MIN_DISTANCE;
    pool.iter().filter(move |u| {
        let from = sorted.partition_point(|t| first(t) <= first(u) - window);
        let mut near = sorted[from..].iter().take_while(|t| first(t) < first(u) + window);
        !near.any(|t| distance2(u, t) < MIN_DISTANCE * MIN_DISTANCE)
    })
}

/// A point's first coordinate (zero for a point of none).
fn first(u: &[f64]) -> f64 {
    u.first().copied().unwrap_or(0.0)
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
    fn told_values_outside_the_box_are_kept_and_unplaceable_ones_ignored() {
        use crate::space::{Dim, Encoding, Level};
        let levels = vec![Level::new("DBU", 1.0), Level::new("MTBD", 2.0)];
        let space = Space::new(vec![
            Dim::new("t", 30.0, 150.0),
            Dim::integer("n", 0.0, 10.0, 2.0),
            Dim::categorical("base", levels, Encoding::OneHot),
        ]);
        let mut history = History::new(&Problem::new(space, Objective::maximize("y"), 5));
        let point = |t: f64, n: f64, base: f64| -> Point {
            [("t".to_owned(), t), ("n".to_owned(), n), ("base".to_owned(), base)].into()
        };
        // A plate that settled past its range, and an odd number of drops: real results, kept where they were.
        history.tell(Observation { values: point(156.0, 3.0, 2.0), objective: Some(1.0) });
        assert_eq!(history.told.len(), 1);
        assert_eq!(history.told[0].unit, vec![1.05, 0.3, 1.0]);
        // What cannot be placed: no value, a value that is no number, a level that does not exist.
        let mut missing = point(90.0, 2.0, 1.0);
        missing.remove("n");
        history.tell(Observation { values: missing, objective: Some(1.0) });
        history.tell(Observation { values: point(f64::NAN, 2.0, 1.0), objective: Some(1.0) });
        history.tell(Observation { values: point(90.0, 2.0, 3.0), objective: Some(1.0) });
        assert_eq!(history.told.len(), 1);
    }

    #[test]
    fn the_untaken_members_of_a_pool_are_those_not_too_close_to_a_taken_point() {
        // A grid of rows, some taken exactly, some within and some just beyond the distance, and one not a number.
        let pool: Vec<Vec<f64>> = (0..200).map(|i| vec![f64::from(i % 10) / 9.0, f64::from(i / 10) / 19.0]).collect();
        let mut taken: Vec<Vec<f64>> = pool.iter().step_by(7).cloned().collect();
        taken.push(vec![pool[3][0] + 0.5 * MIN_DISTANCE, pool[3][1]]);
        taken.push(vec![pool[5][0], pool[5][1] + 0.5 * MIN_DISTANCE]);
        taken.push(vec![pool[8][0] + 1.5 * MIN_DISTANCE, pool[8][1]]);
        taken.push(vec![f64::NAN, 0.5]);
        let want: Vec<&Vec<f64>> = pool.iter().filter(|u| !too_close(u, &taken)).collect();
        let got: Vec<&Vec<f64>> = untaken(&pool, &taken).collect();
        assert_eq!(got, want);
        assert!(!got.contains(&&pool[3]) && !got.contains(&&pool[5]) && got.contains(&&pool[8]));
        assert_eq!(untaken(&pool, &[]).count(), pool.len());
    }

    #[test]
    fn short_numbers_read_well() {
        assert_eq!(short(0.123456), "0.1235");
        assert_eq!(short(1234.5678), "1235");
        assert_eq!(short(2.5), "2.5");
        assert_eq!(short(-0.000123456), "-0.0001235");
        assert_eq!(short(0.0), "0");
    }
}
