//! The learning benchmark suite: how many experiments the proposers need, on problems with known answers.
//!
//! - Analytic test functions (Branin, 2-D, 30 evaluations; Hartmann-6, 6-D, 60 evaluations): the simple regret
//!   (best value found minus the true minimum) at the budget, and the evaluations needed to reach a regret of
//!   0.01 (Branin) or 1% of |f*| (Hartmann-6), as in the reference measurements of other tools.
//! - A chemistry lookup table (Buchwald–Hartwig couplings, 792 conditions of four categorical variables): the
//!   experiments needed to find a top-1% yield, against the exact expectation for random search.
//! - The same problems with 4 and 8 experiments in flight (asynchronous: each time the oldest finishes, its
//!   result is told and one new experiment is asked for), which measures what batching costs per evaluation.
//! - Two objectives (Branin–Currin): the hypervolume of the Pareto front found in 30 evaluations.
//! - Proposal latency with 50 and 200 observations on Hartmann-6, without noise and with it, and on the largest
//!   reaction table.
//! - Reaction tables measured in full ([`reactions`]: the five Buchwald–Hartwig tables of the whole study and a
//!   Suzuki–Miyaura table), which the proposer was not tuned on: experiments to a top-1% yield, seed by seed.
//! - Landscapes shaped like a lab's problems ([`landscape`]: a narrow ridge beside a decoy, Michalewicz, a needle in
//!   a categorical table, catalyst kinetics), continuous, table-restricted and noisy: how many seeds reach the
//!   target within the budget, and how soon.
//!
//! Every figure is a median (or a count) over seeds `0..seeds`, since single runs of any optimiser vary widely.
//! The suite is pure computation except for latency, which needs a clock: the caller passes one, so this crate
//! still reads none itself. `lab bench learn` and `cargo bench -p experiments` run it and print
//! [`LearnReport`]'s table.

pub mod kinetics;
pub mod landscape;
pub mod michalewicz;
pub mod needle;
pub mod reactions;
pub mod ridge;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Instant;

use crate::backtest::{Lookup, simulate};
use crate::proposer::{Acquisition, Problem, ProposerConfig, build_for};
use crate::space::Dim;
use crate::{Objective, Point, Space, hypervolume};
use reactions::{ReactionTable, reaction_run};

/// The Buchwald–Hartwig lookup table (see `experiments/datasets/README.md` for its source and licence).
pub const BUCHWALD_A: &str = include_str!("../../datasets/buchwald_a.csv");

/// A test function to minimise over a box.
#[derive(Debug, Clone, Copy)]
pub struct TestFunction {
    /// Its name.
    pub name: &'static str,
    /// The box, one `(min, max)` per input.
    pub bounds: &'static [(f64, f64)],
    /// The global minimum.
    pub minimum: f64,
    /// The function.
    pub f: fn(&[f64]) -> f64,
    /// The evaluation budget of the benchmark.
    pub budget: usize,
    /// The regret that counts as having found the minimum.
    pub threshold: f64,
}

/// Branin on `[-5, 10] × [0, 15]`; minimum 0.397887 at three points.
pub fn branin(x: &[f64]) -> f64 {
    let pi = std::f64::consts::PI;
    let (b, c, t) = (5.1 / (4.0 * pi * pi), 5.0 / pi, 1.0 / (8.0 * pi));
    (x[1] - b * x[0] * x[0] + c * x[0] - 6.0).powi(2) + 10.0 * (1.0 - t) * x[0].cos() + 10.0
}

/// Hartmann-6 on `[0, 1]^6`; minimum -3.322368 (with a local minimum at -3.2032 that traps many runs).
pub fn hartmann6(x: &[f64]) -> f64 {
    const ALPHA: [f64; 4] = [1.0, 1.2, 3.0, 3.2];
    const A: [[f64; 6]; 4] = [
        [10.0, 3.0, 17.0, 3.5, 1.7, 8.0],
        [0.05, 10.0, 17.0, 0.1, 8.0, 14.0],
        [3.0, 3.5, 1.7, 10.0, 17.0, 8.0],
        [17.0, 8.0, 0.05, 10.0, 0.1, 14.0],
    ];
    const P: [[f64; 6]; 4] = [
        [0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886],
        [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
        [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650],
        [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381],
    ];
    -(0..4).map(|i| ALPHA[i] * (-(0..6).map(|j| A[i][j] * (x[j] - P[i][j]).powi(2)).sum::<f64>()).exp()).sum::<f64>()
}

/// The Branin benchmark: 30 evaluations, hit at regret 0.01.
pub const BRANIN: TestFunction = TestFunction {
    name: "Branin",
    bounds: &[(-5.0, 10.0), (0.0, 15.0)],
    minimum: 0.397_887_357_729_738,
    f: branin,
    budget: 30,
    threshold: 0.01,
};

/// The Hartmann-6 benchmark: 60 evaluations, hit at 1% of |f*|.
pub const HARTMANN6: TestFunction = TestFunction {
    name: "Hartmann6",
    bounds: &[(0.0, 1.0); 6],
    minimum: -3.322_368_011_415_515,
    f: hartmann6,
    budget: 60,
    threshold: 0.033_223_680_114_155_15,
};

/// The Branin–Currin pair on `[0, 1]^2`, both minimised: Branin rescaled to the unit square, and Currin's
/// exponential function (the two-objective test problem BoTorch uses).
pub fn branin_currin(x: &[f64]) -> [f64; 2] {
    let b = branin(&[15.0 * x[0] - 5.0, 15.0 * x[1]]);
    let (x0, x1) = (x[0], x[1].max(1e-12));
    let c = (1.0 - (-1.0 / (2.0 * x1)).exp()) * (2300.0 * x0.powi(3) + 1900.0 * x0 * x0 + 2092.0 * x0 + 60.0)
        / (100.0 * x0.powi(3) + 500.0 * x0 * x0 + 4.0 * x0 + 20.0);
    [b, c]
}

/// The reference point of the Branin–Currin hypervolume (BoTorch's).
pub const BRANIN_CURRIN_REFERENCE: [f64; 2] = [18.0, 6.0];

/// What the suite runs.
#[derive(Debug, Clone)]
pub struct LearnOptions {
    /// Seeds `0..seeds` for every stochastic figure; at least 10 for the published table.
    pub seeds: usize,
    /// The numbers of experiments in flight to run each problem with (1 is sequential).
    pub in_flight: Vec<usize>,
    /// Whether to run random search as a baseline on the analytic functions.
    pub random: bool,
    /// Whether to run the analytic functions.
    pub analytic: bool,
    /// Which analytic functions to run, by name (`Branin`, `Hartmann6`); empty runs them all.
    pub functions: Vec<String>,
    /// Whether to run the lookup table.
    pub lookup: bool,
    /// Whether to run the two-objective problem.
    pub multi_objective: bool,
    /// Whether to run the reaction tables ([`reactions`]).
    pub reactions: bool,
    /// The numbers of observations to measure proposal latency at (empty for none).
    pub latency_at: Vec<usize>,
    /// Whether to run the landscapes ([`suite`]).
    pub landscapes: bool,
    /// Which landscapes to run, by name (`ridge`, `ridge/table/noisy`); empty runs them all.
    pub landscape_names: Vec<String>,
}

impl Default for LearnOptions {
    fn default() -> Self {
        LearnOptions {
            seeds: 10,
            in_flight: vec![1, 4, 8],
            random: true,
            analytic: true,
            functions: Vec::new(),
            lookup: true,
            multi_objective: true,
            reactions: true,
            latency_at: vec![50, 200],
            landscapes: true,
            landscape_names: Vec::new(),
        }
    }
}

/// The noise of the latency's noisy rows: 3 % of Hartmann-6's optimum, as the noisy landscapes have.
pub const LATENCY_NOISE: f64 = 0.1;

/// The Gaussian-process proposer as the suite runs it: the default acquisition, `2d + 1` initial points.
pub fn default_gp(d: usize) -> ProposerConfig {
    ProposerConfig::GaussianProcess { initial: 2 * d + 1, acquisition: Acquisition::LogExpectedImprovement }
}

/// One analytic problem × method × number in flight, over every seed.
#[derive(Debug, Clone)]
pub struct AnalyticRow {
    /// The problem.
    pub problem: &'static str,
    /// The method.
    pub method: String,
    /// Experiments in flight.
    pub in_flight: usize,
    /// The budget.
    pub budget: usize,
    /// The regret at the budget, per seed.
    pub regrets: Vec<f64>,
    /// The evaluation at which each seed first reached the threshold, if it did.
    pub hits: Vec<Option<usize>>,
}

impl AnalyticRow {
    /// The median regret at the budget.
    pub fn median_regret(&self) -> f64 {
        quantile(&self.regrets, 0.5)
    }

    /// How many seeds reached the threshold.
    pub fn hit_count(&self) -> usize {
        self.hits.iter().filter(|h| h.is_some()).count()
    }

    /// The median over all seeds of the evaluations to reach the threshold (`None`, shown as `>budget`, when
    /// fewer than half the seeds reached it).
    pub fn median_to_hit(&self) -> Option<f64> {
        let v: Vec<f64> = self.hits.iter().map(|h| h.map_or(f64::INFINITY, |n| n as f64)).collect();
        Some(quantile(&v, 0.5)).filter(|m| m.is_finite())
    }

    /// The mean of `log10` regret (regrets below 1e-12 count as 1e-12).
    pub fn mean_log10(&self) -> f64 {
        self.regrets.iter().map(|r| r.max(1e-12).log10()).sum::<f64>() / self.regrets.len().max(1) as f64
    }
}

/// The lookup table with one method and number in flight, over every seed.
#[derive(Debug, Clone)]
pub struct LookupRow {
    /// The method.
    pub method: String,
    /// Experiments in flight.
    pub in_flight: usize,
    /// The budget each run had.
    pub budget: usize,
    /// The experiment at which each seed first found a top-1% condition, if it did.
    pub to_top: Vec<Option<usize>>,
}

impl LookupRow {
    /// The median over seeds of the experiments to a top-1% condition (runs that never found one count as
    /// infinite).
    pub fn median(&self) -> Option<f64> {
        let v: Vec<f64> = self.to_top.iter().map(|h| h.map_or(f64::INFINITY, |n| n as f64)).collect();
        Some(quantile(&v, 0.5)).filter(|m| m.is_finite())
    }

    /// The most experiments any seed needed (`None` if a seed never found one).
    pub fn worst(&self) -> Option<usize> {
        self.to_top.iter().try_fold(0, |m, h| h.map(|h| m.max(h)))
    }

    /// How many seeds found one within `n` experiments.
    pub fn within(&self, n: usize) -> usize {
        self.to_top.iter().filter(|h| h.is_some_and(|h| h <= n)).count()
    }

    /// Each seed's experiments to a top-1% condition, `>budget` where it found none, separated by spaces.
    pub fn per_seed(&self) -> String {
        let each: Vec<String> =
            self.to_top.iter().map(|h| h.map_or(format!(">{}", self.budget), |n| n.to_string())).collect();
        each.join(" ")
    }
}

/// Two-objective results: the hypervolume after the budget, per seed.
#[derive(Debug, Clone)]
pub struct MultiRow {
    /// The method.
    pub method: String,
    /// The budget.
    pub budget: usize,
    /// The hypervolume per seed.
    pub hypervolumes: Vec<f64>,
    /// The hypervolume of the true front (approximated on a fine grid).
    pub best: f64,
}

/// Proposal latency at one number of observations.
#[derive(Debug, Clone)]
pub struct LatencyRow {
    /// The problem: Hartmann-6, or a reaction table's name.
    pub problem: String,
    /// Observations told before the timed proposals.
    pub observations: usize,
    /// The problem's dimension.
    pub dimension: usize,
    /// The standard deviation of the noise added to every result (zero: none).
    pub noise: f64,
    /// Every timed proposal, in milliseconds.
    pub samples: Vec<f64>,
    /// How many of them re-estimated the hyperparameters.
    pub refits: usize,
    /// How many of them came from the noisy model (BoTorch's priors and search).
    pub noisy: usize,
}

/// Everything the suite measured.
#[derive(Debug, Clone, Default)]
pub struct LearnReport {
    /// The seeds used.
    pub seeds: usize,
    /// Analytic problems.
    pub analytic: Vec<AnalyticRow>,
    /// The lookup table.
    pub lookup: Vec<LookupRow>,
    /// The lookup table's size and the number of top-1% conditions, for the random-search expectation.
    pub lookup_size: (usize, usize),
    /// Two objectives.
    pub multi: Vec<MultiRow>,
    /// Latency.
    pub latency: Vec<LatencyRow>,
    /// Landscapes.
    pub landscapes: Vec<LandscapeRow>,
    /// The reaction tables: each table's name, its size and number of top-1% conditions, and the runs.
    pub reactions: Vec<(String, (usize, usize), LookupRow)>,
}

/// One landscape with one method, over every seed.
#[derive(Debug, Clone)]
pub struct LandscapeRow {
    /// The landscape's name.
    pub landscape: String,
    /// The method.
    pub method: String,
    /// The budget.
    pub budget: usize,
    /// How the target was set.
    pub rule: String,
    /// The experiment at which each seed first reached the target, if it did.
    pub hits: Vec<Option<usize>>,
}

impl LandscapeRow {
    /// How many seeds reached the target.
    pub fn hit_count(&self) -> usize {
        self.hits.iter().filter(|h| h.is_some()).count()
    }

    /// The median over all seeds of the experiments to reach the target (seeds that never did count as
    /// infinite; `None` when fewer than half did).
    pub fn median(&self) -> Option<f64> {
        let v: Vec<f64> = self.hits.iter().map(|h| h.map_or(f64::INFINITY, |n| n as f64)).collect();
        Some(quantile(&v, 0.5)).filter(|m| m.is_finite())
    }
}

/// The `q`-quantile (linear interpolation) of `values`; infinite values sort last.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let pos = q * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    if lo == hi || v[lo] == v[hi] { v[lo] } else { v[lo] + (v[hi] - v[lo]) * (pos - lo as f64) }
}

/// The space of a test function: one continuous dimension per input, named `x1`, `x2`, ….
pub fn function_space(f: &TestFunction) -> Space {
    Space::new(f.bounds.iter().enumerate().map(|(i, (lo, hi))| Dim::new(format!("x{}", i + 1), *lo, *hi)).collect())
}

fn inputs(point: &Point, d: usize) -> Vec<f64> {
    (0..d).map(|i| point[&format!("x{}", i + 1)]).collect()
}

/// Runs `config` on `f` with `in_flight` experiments at once and seed `seed`; returns the simple regret after
/// each evaluation (in the order they finished).
pub fn regret_trace(config: &ProposerConfig, f: &TestFunction, in_flight: usize, seed: u64) -> Vec<f64> {
    let space = function_space(f);
    let d = f.bounds.len();
    let problem = Problem::new(space, Objective::minimize("f"), f.budget);
    let mut proposer = build_for(config, &problem, seed);
    let (steps, _) = simulate(proposer.as_mut(), f.budget, in_flight, &mut |p| {
        Some(BTreeMap::from([("f".to_owned(), (f.f)(&inputs(p, d)))]))
    });
    let mut best = f64::INFINITY;
    steps
        .iter()
        .map(|s| {
            best = best.min(s.outputs.as_ref().map_or(f64::INFINITY, |o| o["f"]));
            best - f.minimum
        })
        .collect()
}

/// The Buchwald–Hartwig table the proposer was studied on (`buchwald_a.csv`: four categorical parameters whose
/// levels are the table's SMILES, numbered in order of first appearance), with its top-1% threshold.
pub fn buchwald() -> ReactionTable {
    let names = ["aryl_halide", "additive", "base", "ligand"];
    reactions::lookup_table("buchwald_a", BUCHWALD_A, &names, "yield", &|_| true).unwrap_or_else(|| ReactionTable {
        name: "buchwald_a".to_owned(),
        space: Space::new(Vec::new()),
        lookup: Lookup { points: Vec::new(), outcomes: Vec::new(), excluded: 0, duplicates: 0 },
        output: "yield".to_owned(),
        threshold: f64::INFINITY,
        top: 0,
    })
}

/// Runs `config` on Branin–Currin for `budget` evaluations; returns the hypervolume found.
pub fn branin_currin_run(config: &ProposerConfig, budget: usize, seed: u64) -> f64 {
    let space = Space::new(vec![Dim::new("x1", 0.0, 1.0), Dim::new("x2", 0.0, 1.0)]);
    let objectives = vec![Objective::minimize("branin"), Objective::minimize("currin")];
    let problem =
        Problem { space, objectives: objectives.clone(), budget, stop: crate::StopRules::default(), pool: None };
    let mut proposer = build_for(config, &problem, seed);
    let (steps, _) = simulate(proposer.as_mut(), budget, 1, &mut |p| {
        let [b, c] = branin_currin(&inputs(p, 2));
        Some(BTreeMap::from([("branin".to_owned(), b), ("currin".to_owned(), c)]))
    });
    let values: Vec<Vec<f64>> =
        steps.iter().filter_map(|s| s.outputs.as_ref().map(|o| vec![o["branin"], o["currin"]])).collect();
    hypervolume(&objectives, &values, &BRANIN_CURRIN_REFERENCE)
}

/// The hypervolume of Branin–Currin's front, approximated from a `n`×`n` grid.
pub fn branin_currin_best(n: usize) -> f64 {
    let mut values: Vec<[f64; 2]> = Vec::with_capacity(n * n);
    for i in 0..n {
        for j in 0..n {
            values.push(branin_currin(&[i as f64 / (n - 1) as f64, j as f64 / (n - 1) as f64]));
        }
    }
    // The 2-D front by one sweep: sorted by the first objective, keep each point that lowers the second.
    values.sort_by(|a, b| a[0].total_cmp(&b[0]).then(a[1].total_cmp(&b[1])));
    let mut front: Vec<Vec<f64>> = Vec::new();
    let mut lowest = f64::INFINITY;
    for v in values {
        if v[1] < lowest {
            lowest = v[1];
            front.push(v.to_vec());
        }
    }
    let objectives = [Objective::minimize("branin"), Objective::minimize("currin")];
    hypervolume(&objectives, &front, &BRANIN_CURRIN_REFERENCE)
}

/// Times model-based proposals on Hartmann-6 with `observations` random results told first: `cycles` rounds of one
/// ask and one tell, after one untimed ask (the model at that size exists in a running campaign). Every result is
/// measured with Gaussian noise of standard deviation `noise` (zero for none). Returns the times in milliseconds,
/// how many of them re-estimated the hyperparameters, and how many came from the noisy model. `clock` reads the
/// time.
pub fn latency_run(
    observations: usize,
    cycles: usize,
    seed: u64,
    noise: f64,
    clock: &dyn Fn() -> Instant,
) -> (Vec<f64>, usize, usize) {
    let f = HARTMANN6;
    let space = function_space(&f);
    let problem = Problem::new(space.clone(), Objective::minimize("f"), observations + cycles + 1);
    let mut random = build_for(&ProposerConfig::Random, &problem, seed ^ 0xA5A5);
    // The told observations stand in for the space-filling start, so every timed proposal uses the model.
    let config = ProposerConfig::GaussianProcess { initial: 0, acquisition: Acquisition::LogExpectedImprovement };
    let mut proposer = build_for(&config, &problem, seed);
    let draws = landscape::noise_draws(seed, observations + cycles + 1);
    let mut told = 0;
    let mut tell = |p: &mut dyn crate::Proposer, point: Point| {
        let y = hartmann6(&inputs(&point, 6)) + noise * draws[told];
        told += 1;
        p.tell(crate::Observation { values: point, objective: Some(y) });
    };
    for q in random.ask(observations, &[]) {
        tell(proposer.as_mut(), q.values);
    }
    time_proposals(proposer.as_mut(), cycles, clock, &mut tell)
}

/// Times `cycles` rounds of one ask and one tell of `proposer`, after one untimed ask (the model at that size
/// exists in a running campaign), telling each proposal's result with `tell`. Returns the model-based proposals'
/// times in milliseconds, how many of them re-estimated the hyperparameters, and how many came from the noisy
/// model.
pub(crate) fn time_proposals(
    proposer: &mut dyn crate::Proposer,
    cycles: usize,
    clock: &dyn Fn() -> Instant,
    tell: &mut dyn FnMut(&mut dyn crate::Proposer, Point),
) -> (Vec<f64>, usize, usize) {
    let mut samples = Vec::with_capacity(cycles);
    let mut refits = 0;
    let mut noisy = 0;
    for i in 0..=cycles {
        let start = clock();
        let p = proposer.ask(1, &[]);
        let elapsed = clock().duration_since(start).as_secs_f64() * 1e3;
        let Some(p) = p.into_iter().next() else { break };
        if i > 0 && p.strategy.starts_with("GP") {
            samples.push(elapsed);
            let refit = p.model.as_ref().and_then(|m| m["hyperparameters"]["re_estimated"].as_bool()).unwrap_or(false);
            refits += usize::from(refit);
            noisy += usize::from(p.model.as_ref().is_some_and(|m| m["noise_check"]["noisy"] == true));
        }
        tell(proposer, p.values);
    }
    (samples, refits, noisy)
}

/// Runs the suite. `clock` is used only for the latency figures.
pub fn learn_suite(options: &LearnOptions, clock: &dyn Fn() -> Instant) -> LearnReport {
    let seeds = options.seeds as u64;
    let mut report = LearnReport { seeds: options.seeds, ..LearnReport::default() };
    if options.analytic {
        let chosen = |f: &TestFunction| options.functions.is_empty() || options.functions.iter().any(|n| n == f.name);
        for f in [BRANIN, HARTMANN6].into_iter().filter(chosen) {
            let d = f.bounds.len();
            let mut methods: Vec<(String, ProposerConfig, Vec<usize>)> =
                vec![("GP LogEI".to_owned(), default_gp(d), options.in_flight.clone())];
            if options.random {
                methods.insert(0, ("random".to_owned(), ProposerConfig::Random, vec![1]));
            }
            for (name, config, flights) in methods {
                for &q in &flights {
                    let mut row = AnalyticRow {
                        problem: f.name,
                        method: name.clone(),
                        in_flight: q,
                        budget: f.budget,
                        regrets: Vec::new(),
                        hits: Vec::new(),
                    };
                    for seed in 0..seeds {
                        let trace = regret_trace(&config, &f, q, seed);
                        row.regrets.push(trace.last().copied().unwrap_or(f64::INFINITY));
                        row.hits.push(trace.iter().position(|r| *r <= f.threshold).map(|i| i + 1));
                    }
                    report.analytic.push(row);
                }
            }
        }
    }
    if options.lookup {
        let table = buchwald();
        report.lookup_size = (table.lookup.points.len(), table.top);
        let budget = 100;
        for &q in &options.in_flight {
            let config = default_gp(4);
            let to_top = (0..seeds).map(|seed| reaction_run(&config, &table, budget, q, seed)).collect();
            report.lookup.push(LookupRow { method: "GP LogEI".to_owned(), in_flight: q, budget, to_top });
        }
        if options.random {
            let to_top = (0..seeds).map(|seed| reaction_run(&ProposerConfig::Random, &table, 400, 1, seed)).collect();
            report.lookup.insert(0, LookupRow { method: "random".to_owned(), in_flight: 1, budget: 400, to_top });
        }
    }
    if options.reactions {
        for table in reactions::reaction_tables() {
            let config = default_gp(table.space.len());
            let budget = reactions::REACTION_BUDGET;
            let to_top = (0..seeds).map(|seed| reaction_run(&config, &table, budget, 1, seed)).collect();
            let size = (table.lookup.points.len(), table.top);
            report.reactions.push((
                table.name,
                size,
                LookupRow { method: "GP LogEI".to_owned(), in_flight: 1, budget, to_top },
            ));
        }
    }
    if options.multi_objective {
        let best = branin_currin_best(401);
        let budget = 30;
        let mut methods = vec![("ParEGO LogEI".to_owned(), default_gp(2))];
        if options.random {
            methods.insert(0, ("random".to_owned(), ProposerConfig::Random));
        }
        for (method, config) in methods {
            let hypervolumes = (0..seeds).map(|seed| branin_currin_run(&config, budget, seed)).collect();
            report.multi.push(MultiRow { method, budget, hypervolumes, best });
        }
    }
    if options.landscapes {
        let chosen =
            |l: &landscape::Landscape| options.landscape_names.is_empty() || options.landscape_names.contains(&l.name);
        for l in suite().into_iter().filter(chosen) {
            let mut methods = vec![("GP LogEI".to_owned(), default_gp(l.dims()))];
            if options.random {
                methods.insert(0, ("random".to_owned(), ProposerConfig::Random));
            }
            for (method, config) in methods {
                let hits = (0..seeds).map(|seed| landscape::landscape_run(&config, &l, seed)).collect();
                let (landscape, budget, rule) = (l.name.clone(), l.budget, l.rule.clone());
                report.landscapes.push(LandscapeRow { landscape, method, budget, rule, hits });
            }
        }
    }
    // Without noise, and with noise of 3 % of Hartmann-6's optimum, where the proposer fits a second model.
    for noise in [0.0, LATENCY_NOISE] {
        for &n in &options.latency_at {
            let (mut samples, mut refits, mut noisy) = (Vec::new(), 0, 0);
            for seed in 0..3 {
                let (s, r, k) = latency_run(n, 40, seed, noise, clock);
                samples.extend(s);
                refits += r;
                noisy += k;
            }
            let problem = "Hartmann-6".to_owned();
            report.latency.push(LatencyRow { problem, observations: n, dimension: 6, noise, samples, refits, noisy });
        }
    }
    // The largest reaction table, one-hot, where every proposal scores every untried row and a re-estimation fits
    // a length scale per level with the kernel's additive part.
    if !options.latency_at.is_empty()
        && let Some(table) = reactions::reaction_tables().into_iter().find(|t| t.name == "suzuki-miyaura")
    {
        for &n in &options.latency_at {
            let (mut samples, mut refits, mut noisy) = (Vec::new(), 0, 0);
            for seed in 0..3 {
                let (s, r, k) = reactions::latency_run(&table, n, 40, seed, clock);
                samples.extend(s);
                refits += r;
                noisy += k;
            }
            let (problem, dimension) = (table.name.clone(), table.space.len());
            report.latency.push(LatencyRow { problem, observations: n, dimension, noise: 0.0, samples, refits, noisy });
        }
    }
    report
}

/// A figure as the benchmark tables print it: three decimals in the middle range, scientific notation outside it.
pub fn sci(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    if v == 0.0 {
        return "0".to_owned();
    }
    if (1e-2..1e3).contains(&v.abs()) { format!("{v:.3}") } else { format!("{v:.1e}") }
}

impl fmt::Display for LearnReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.analytic.is_empty() {
            writeln!(f, "Analytic functions (medians over {} seeds; asynchronous: q in flight)", self.seeds)?;
            writeln!(
                f,
                "| problem | method | q | budget | median regret | IQR | mean log10 | hits | median evals to hit | vs q=1 |"
            )?;
            writeln!(f, "|---|---|---|---|---|---|---|---|---|---|")?;
            for r in &self.analytic {
                let base = self
                    .analytic
                    .iter()
                    .find(|b| b.problem == r.problem && b.method == r.method && b.in_flight == 1)
                    .and_then(AnalyticRow::median_to_hit);
                let extra = match (r.in_flight, r.median_to_hit(), base) {
                    (1, _, _) => "".to_owned(),
                    (_, Some(a), Some(b)) => format!("{:+} evals", a - b),
                    _ => "n/a".to_owned(),
                };
                writeln!(
                    f,
                    "| {} | {} | {} | {} | {} | {}–{} | {:.2} | {}/{} | {} | {} |",
                    r.problem,
                    r.method,
                    r.in_flight,
                    r.budget,
                    sci(r.median_regret()),
                    sci(quantile(&r.regrets, 0.25)),
                    sci(quantile(&r.regrets, 0.75)),
                    r.mean_log10(),
                    r.hit_count(),
                    r.hits.len(),
                    r.median_to_hit().map_or(format!(">{}", r.budget), |m| format!("{m}")),
                    extra
                )?;
            }
            writeln!(f)?;
        }
        if !self.lookup.is_empty() {
            let (n, k) = self.lookup_size;
            writeln!(
                f,
                "Buchwald-Hartwig lookup ({n} conditions, {k} in the top 1%): experiments to a top-1% condition \
                 (random search, exact: {:.1} on average, P(within 50) = {:.2})",
                crate::backtest::BacktestReport::random_draws(n, k),
                random_within(n, k, 50)
            )?;
            writeln!(f, "| method | q | seeds | median | worst | within 25 | within 50 | per seed |")?;
            writeln!(f, "|---|---|---|---|---|---|---|---|")?;
            for r in &self.lookup {
                writeln!(
                    f,
                    "| {} | {} | {} | {} | {} | {}/{} | {}/{} | {} |",
                    r.method,
                    r.in_flight,
                    r.to_top.len(),
                    r.median().map_or(format!(">{}", r.budget), |m| format!("{m}")),
                    r.worst().map_or(format!(">{}", r.budget), |m| m.to_string()),
                    r.within(25),
                    r.to_top.len(),
                    r.within(50),
                    r.to_top.len(),
                    r.per_seed()
                )?;
            }
            writeln!(f)?;
        }
        if !self.reactions.is_empty() {
            writeln!(
                f,
                "Reaction tables, one experiment at a time: experiments to a top-1% condition (random search's exact \
                 expectation beside each)"
            )?;
            writeln!(f, "| table | conditions (top 1%) | random | hits | median | worst | past 40 | per seed |")?;
            writeln!(f, "|---|---|---|---|---|---|---|---|")?;
            for (name, (n, k), r) in &self.reactions {
                writeln!(
                    f,
                    "| {name} | {n} ({k}) | {:.1} | {}/{} | {} | {} | {} | {} |",
                    crate::backtest::BacktestReport::random_draws(*n, *k),
                    r.within(r.budget),
                    r.to_top.len(),
                    r.median().map_or(format!(">{}", r.budget), |m| format!("{m}")),
                    r.worst().map_or(format!(">{}", r.budget), |m| m.to_string()),
                    r.to_top.len() - r.within(40),
                    r.per_seed()
                )?;
            }
            writeln!(f)?;
        }
        if !self.multi.is_empty() {
            writeln!(f, "Branin-Currin, two objectives: hypervolume after the budget (reference point (18, 6))")?;
            writeln!(f, "| method | budget | median hypervolume | IQR | of the true front's |")?;
            writeln!(f, "|---|---|---|---|---|")?;
            for r in &self.multi {
                let m = quantile(&r.hypervolumes, 0.5);
                writeln!(
                    f,
                    "| {} | {} | {:.2} | {:.2}–{:.2} | {:.1}% of {:.2} |",
                    r.method,
                    r.budget,
                    m,
                    quantile(&r.hypervolumes, 0.25),
                    quantile(&r.hypervolumes, 0.75),
                    100.0 * m / r.best,
                    r.best
                )?;
            }
            writeln!(f)?;
        }
        if !self.landscapes.is_empty() {
            writeln!(f, "Landscapes: experiments until a true value reaches the target (one at a time)")?;
            writeln!(f, "| landscape | method | budget | target | hits | median | worst | per seed |")?;
            writeln!(f, "|---|---|---|---|---|---|---|---|")?;
            for r in &self.landscapes {
                let per_seed: Vec<String> =
                    r.hits.iter().map(|h| h.map_or("-".to_owned(), |n| n.to_string())).collect();
                let worst = r.hits.iter().try_fold(0, |m, h| h.map(|h| m.max(h)));
                writeln!(
                    f,
                    "| {} | {} | {} | {} | {}/{} | {} | {} | {} |",
                    r.landscape,
                    r.method,
                    r.budget,
                    r.rule,
                    r.hit_count(),
                    r.hits.len(),
                    r.median().map_or(format!(">{}", r.budget), |m| format!("{m}")),
                    worst.map_or(format!(">{}", r.budget), |m| m.to_string()),
                    per_seed.join(" ")
                )?;
            }
            writeln!(f)?;
        }
        if !self.latency.is_empty() {
            writeln!(f, "Proposal latency (GP LogEI, one proposal after each result)")?;
            writeln!(
                f,
                "| problem | noise sd | observations | proposals timed | p50 | p95 | max | with hyperparameter \
                 re-estimation | from the noisy model |"
            )?;
            writeln!(f, "|---|---|---|---|---|---|---|---|---|")?;
            for r in &self.latency {
                writeln!(
                    f,
                    "| {} | {} | {} | {} | {:.1} ms | {:.1} ms | {:.1} ms | {} | {} |",
                    r.problem,
                    r.noise,
                    r.observations,
                    r.samples.len(),
                    quantile(&r.samples, 0.5),
                    quantile(&r.samples, 0.95),
                    r.samples.iter().copied().fold(0.0, f64::max),
                    r.refits,
                    r.noisy
                )?;
            }
        }
        Ok(())
    }
}

/// The probability that random search without replacement hits one of `k` targets among `n` within `draws`.
pub fn random_within(n: usize, k: usize, draws: usize) -> f64 {
    let mut miss = 1.0;
    for i in 0..draws.min(n) {
        miss *= (n - k).saturating_sub(i) as f64 / (n - i) as f64;
    }
    1.0 - miss
}

/// Every landscape of the suite: each kind in its continuous (or mixed) form where it has one and its
/// table-restricted form, each also noisy.
pub fn suite() -> Vec<landscape::Landscape> {
    let clean = vec![
        ridge::landscape(),
        ridge::table(),
        michalewicz::landscape(),
        michalewicz::table(),
        needle::table(),
        kinetics::landscape(),
        kinetics::table(),
    ];
    let noisy: Vec<landscape::Landscape> = clean.iter().map(|l| l.noisy(noise_for(l.kind))).collect();
    clean.into_iter().chain(noisy).collect()
}

/// The noise of a kind's noisy version: about 3% of its optimum.
fn noise_for(kind: &str) -> f64 {
    match kind {
        "ridge" => ridge::NOISE,
        "michalewicz" => michalewicz::NOISE,
        "needle" => needle::NOISE,
        _ => kinetics::NOISE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_functions_have_their_known_minima() {
        let pi = std::f64::consts::PI;
        for x in [[-pi, 12.275], [pi, 2.275], [9.424_78, 2.475]] {
            assert!((branin(&x) - BRANIN.minimum).abs() < 1e-5, "{x:?}");
        }
        let h = [0.201_69, 0.150_011, 0.476_874, 0.275_332, 0.311_652, 0.6573];
        assert!((hartmann6(&h) - HARTMANN6.minimum).abs() < 1e-5);
        assert!((random_within(792, 8, 50) - 0.41).abs() < 0.01);
        assert_eq!(quantile(&[3.0, 1.0, 2.0, f64::INFINITY], 0.5), 2.5);
    }

    #[test]
    fn the_lookup_table_is_the_documented_one() {
        let table = buchwald();
        assert_eq!(table.lookup.points.len(), 792);
        let counts: Vec<usize> = table.space.dims().iter().map(|d| d.count().unwrap()).collect();
        assert_eq!(counts, vec![3, 22, 3, 4]);
        assert!((table.threshold - 52.673).abs() < 1e-3, "{}", table.threshold);
        assert_eq!((table.top, table.lookup.excluded + table.lookup.duplicates), (8, 0));
    }
}
