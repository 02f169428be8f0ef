//! What a plan cannot know, drawn: the proposers a simulated campaign runs instead of, or around, its own.
//!
//! A simulated run measures nothing, so a proposer that chooses from results cannot choose there as it will in the
//! run. A model-free proposer (`SpaceFilling`, `Random`) chooses from its seed and from which points are taken,
//! never from values, so the plan runs it as it is and knows every experiment the run will make ([`Planned`]). A
//! Gaussian-process proposer starts with a space-filling design of its own, also fixed by its seed; after that
//! its model chooses. The plan runs the proposer itself throughout, but tells it results from a landscape it draws:
//! one smooth peak at a random place ([`Landscape`]), so the model's choices gather around a region as they do in a
//! run, and which region (long holds or short, hot or cool) is what the draws vary ([`Drawn`]). The plan draws
//! several landscapes and gives the spread of the results. Choices drawn uniformly over the space instead averaged
//! the model's wish away: on the demo campaign the run took longer than every draw.
//!
//! A simulated lab is the exception: its chemistry is fixed by its file, so the plan measures each experiment on a
//! simulated bench of its own (`devices::sim::DryBench`) and tells the model those results ([`Planned::measured`]).
//! Drawn landscapes were 11% to 25% off the run on the `plate` campaign, whose model settles on long holds or short
//! by what it measures. What the plan still cannot know is the third decimal of each reading: it is the
//! spectrometer's noise, and a plan's steps end seconds away from the run's while the product goes on forming. A
//! model's choices follow that decimal once its design is measured, so the plan draws both ([`BenchDraws`]): the
//! first draw reads with the run's own noise and its steps end as estimated, the others read with other seeds and
//! their steps end a little earlier or later, and the plan gives the median and the spread. The noise alone was not
//! enough: the `first` campaign's draws came out alike and 0.5% longer than every run (the durations' own error), and
//! `demo` seed 3's lay around 26,900 lab s where its runs, whatever the noise, took 23,200 to 23,400 (BENCHMARKS.md,
//! "Planning").
//!
//! With placeholder results the proposer's wish to stop is ignored, except when no untried point is left: a target
//! reached or an improvement no longer expected would be noise. With measured results it is honoured.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use experiments::{Direction, Observation, Outcome, Point, Problem, Proposal, Proposer, Space, StopReason};
use rand::{Rng, SeedableRng};

use crate::plan::simulate::Noise;

/// What a plan of a simulated lab draws for a model that chooses from what the plan's bench measures: the noise its
/// spectrometers read with (the first draw the run's own, the others other seeds of the simulation), and when each
/// step ends (every draw but the first): all steps longer or shorter by a fraction within `bias`, and each within
/// `spread` of that.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchDraws {
    /// The lab's simulation seed, whose noise the run's spectrometers read with.
    pub seed: u64,
    /// How many draws.
    pub count: usize,
    /// The fraction within which all of a draw's steps are longer or shorter than expected.
    pub bias: f64,
    /// The fraction within which each step's duration is drawn around that.
    pub spread: f64,
}

impl BenchDraws {
    /// `count` draws for a lab simulated with `seed`.
    pub fn new(seed: u64, count: usize) -> Self {
        BenchDraws { seed, count, bias: STEP_BIAS, spread: STEP_SPREAD }
    }

    /// The simulation seed whose noise draw `draw`'s spectrometers read with.
    pub fn noise(&self, draw: usize) -> u64 {
        if draw == 0 { self.seed } else { mix(self.seed ^ mix(draw as u64)) }
    }

    /// How draw `draw`'s steps last.
    pub fn steps(&self, draw: usize) -> Noise {
        if draw == 0 {
            return Noise::NONE;
        }
        let seed = mix(!(draw as u64));
        let u = (mix(seed) >> 11) as f64 / (1u64 << 53) as f64;
        Noise { spread: self.spread, seed, bias: self.bias * (2.0 * u - 1.0) }
    }
}

/// The fraction within which all of a draw's steps are longer or shorter than expected: the error common to a
/// plan's durations, which put the model-free plans of the repository's simulated campaigns 0.1% to 1.1% above
/// their runs.
const STEP_BIAS: f64 = 0.01;

/// The fraction within which each of a draw's steps lasts around that: a plan's first reading of `demo` comes about
/// 1% of the lab time so far after the run's. Twice as much did no better on the fifteen model-based runs of
/// BENCHMARKS.md (13 medians within 10% and 11 runs inside the draws, against 12 and 12, from half as many draws).
const STEP_SPREAD: f64 = 0.015;

/// SplitMix64's finaliser: well-spread seeds from small numbers.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `f` of `0..n`, in that order, computed on as many threads as the machine has cores (at most `n`): a plan's draws
/// are independent simulations, each deterministic on its own.
pub fn each<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from).clamp(1, n.max(1));
    let next = AtomicUsize::new(0);
    let mut out: Vec<(usize, T)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            break mine;
                        }
                        mine.push((i, f(i)));
                    }
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    });
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, t)| t).collect()
}

/// Every proposal a planned run received, in order, and how many of them the plan knew (the rest were drawn).
#[derive(Debug, Clone, Default)]
pub struct Proposed {
    /// Each proposal's values, and whether the run will propose the same (false: drawn in place of a model).
    pub points: Vec<(Point, bool)>,
}

/// Shared between a planned run's proposer (on the learner's thread) and the plan.
pub type ProposedLog = Arc<Mutex<Proposed>>;

/// The campaign's own proposer, run as it is, its proposals logged. Told placeholder results ([`Planned::new`]), it
/// is a model-free proposer, whose every proposal the run makes too; told what a simulated bench measured
/// ([`Planned::measured`]), it is a model whose design the run makes too and whose later choices the plan expects.
pub struct Planned {
    inner: Box<dyn Proposer>,
    /// Proposals the run is sure to make as well (the rest are the model's expected choices).
    known: usize,
    /// Whether its wish to stop is honoured (the results it stops on are measured, not placeholders).
    stops: bool,
    log: ProposedLog,
}

impl Planned {
    /// Wraps `inner`, a proposer that never looks at values, logging its proposals to `log`.
    pub fn new(inner: Box<dyn Proposer>, log: ProposedLog) -> Self {
        Planned { inner, known: usize::MAX, stops: false, log }
    }

    /// Wraps `inner`, a model told what a simulated bench measured (`devices::sim::DryBench`): the results the run's
    /// own simulators will give, with their noise. Its first `design` proposals are the run's own; its wish to
    /// stop is honoured, as the run's will be.
    pub fn measured(inner: Box<dyn Proposer>, design: usize, log: ProposedLog) -> Self {
        Planned { inner, known: design, stops: true, log }
    }
}

impl Proposer for Planned {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn tell(&mut self, observation: Observation) {
        self.inner.tell(observation);
    }

    fn tell_outcome(&mut self, outcome: Outcome) {
        self.inner.tell_outcome(outcome);
    }

    fn ask(&mut self, n: usize, pending: &[Point]) -> Vec<Proposal> {
        let out = self.inner.ask(n, pending);
        let known = out.len().min(self.known);
        self.known -= known;
        log(&self.log, &out[..known], true);
        log(&self.log, &out[known..], false);
        out
    }

    fn should_stop(&self) -> Option<StopReason> {
        if self.stops { self.inner.should_stop() } else { exhausted(self.inner.should_stop()) }
    }
}

/// Results a plan cannot know, drawn: one smooth peak of unit height at a random place of the space's unit cube,
/// of a random width, for every output.
#[derive(Debug, Clone)]
pub struct Landscape {
    space: Space,
    centre: Vec<f64>,
    width: f64,
    /// Outputs to make small (they get the peak upside down, so a model seeks its centre either way).
    minimized: Vec<String>,
}

impl Landscape {
    /// A landscape over `problem`'s space drawn from `seed`.
    pub fn draw(problem: &Problem, seed: u64) -> Self {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
        let centre = (0..problem.space.len()).map(|_| rng.gen_range(0.0..1.0)).collect();
        let minimized = problem
            .objectives
            .iter()
            .filter(|o| o.direction == Direction::Minimize)
            .map(|o| o.output.clone())
            .collect();
        Landscape { space: problem.space.clone(), centre, width: rng.gen_range(0.15..0.5), minimized }
    }

    /// The value of `output` at `point` (0 for a point outside the space).
    pub fn at(&self, output: &str, point: &Point) -> f64 {
        let Ok(u) = self.space.to_unit(point) else { return 0.0 };
        let d2: f64 = u.iter().zip(&self.centre).map(|(a, b)| (a - b).powi(2)).sum();
        let peak = (-d2 / (2.0 * self.width * self.width)).exp();
        if self.minimized.iter().any(|m| m == output) { -peak } else { peak }
    }
}

/// A model-based proposer run as it is, told results from a drawn [`Landscape`] in place of the placeholders a
/// simulated run measures. Its first `design` proposals (its space-filling start, fixed by its seed) are the run's
/// own; the rest are the model's choices on the drawn landscape.
pub struct Drawn {
    inner: Box<dyn Proposer>,
    /// Proposals still from the design.
    left: usize,
    landscape: Landscape,
    objective: String,
    log: ProposedLog,
}

impl Drawn {
    /// `proposer`, whose first `design` proposals are its design, told results from a landscape drawn for `problem`
    /// from `seed`.
    pub fn new(proposer: Box<dyn Proposer>, design: usize, problem: &Problem, seed: u64, log: ProposedLog) -> Self {
        let objective = problem.objectives.first().map(|o| o.output.clone()).unwrap_or_default();
        Drawn { inner: proposer, left: design, landscape: Landscape::draw(problem, seed), objective, log }
    }
}

impl Proposer for Drawn {
    fn name(&self) -> &str {
        "the proposer on a drawn landscape"
    }

    fn tell(&mut self, observation: Observation) {
        let objective = observation.objective.map(|_| self.landscape.at(&self.objective, &observation.values));
        self.inner.tell(Observation { objective, ..observation });
    }

    fn tell_outcome(&mut self, outcome: Outcome) {
        let outputs = outcome.outputs.map(|outputs| {
            outputs.into_keys().map(|name| (name.clone(), self.landscape.at(&name, &outcome.values))).collect()
        });
        self.inner.tell_outcome(Outcome { outputs, ..outcome });
    }

    fn ask(&mut self, n: usize, pending: &[Point]) -> Vec<Proposal> {
        let out = self.inner.ask(n, pending);
        let known = out.len().min(self.left);
        self.left -= known;
        log(&self.log, &out[..known], true);
        log(&self.log, &out[known..], false);
        out
    }

    fn should_stop(&self) -> Option<StopReason> {
        exhausted(self.inner.should_stop())
    }
}

fn log(log: &ProposedLog, proposals: &[Proposal], known: bool) {
    let mut l = log.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    l.points.extend(proposals.iter().map(|p| (p.values.clone(), known)));
}

/// Only "no untried point is left" and "no point at all" stop a planned run; every other reason comes from
/// placeholder results.
fn exhausted(reason: Option<StopReason>) -> Option<StopReason> {
    reason.filter(|r| matches!(r, StopReason::Exhausted | StopReason::Infeasible))
}
