//! Every proposer `build_for` can build, run on odd problems drawn from a seeded generator, keeps its promises.
//!
//! Users will bring spaces and data sets no benchmark has: a dozen mixed parameters, a categorical with forty
//! levels or one, a table of one row or of thousands with duplicates, results that are all equal, differ by
//! 1e-12, reach 1e12, fail, or come back twice for one point with different values, batches with experiments in
//! flight and results told out of order. This test draws such problems (spaces from what [`Space`] accepts, which
//! is a little more than a campaign file may give: a dimension without width, a categorical of one level; pools,
//! budgets, results, asks and tells), runs the random, space-filling and Gaussian-process proposers on each, and
//! checks every proposal against the promises of [`experiments::proposer`]: it lies inside the space and, with a
//! pool, is one of the pool's rows; its values are finite; it is apart from every told point, every pending one and
//! the rest of its batch (so an untried row is always preferred to a measured one); per-batch parameters take one
//! value per ask; fewer points than asked come back only when no untried point is left; the run spends its budget
//! or stops cleanly within a bounded number of asks; and a Gaussian process whose results vary, on whatever scale,
//! proposes from its model once its design is measured. The generator is seeded, so a failure names the problem's
//! number and reproduces; every failure of every run is collected before the test fails, so one run lists them all.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use experiments::bench::default_gp;
use experiments::proposer::{ENUMERATION_LIMIT, MIN_DISTANCE, build_for};
use experiments::{
    Acquisition, Dim, Encoding, Level, LinearConstraint, Objective, Observation, Outcome, Point, Problem, Proposal,
    Proposer, ProposerConfig, Space, StopRules,
};

/// How many problems are drawn; each is run by all three proposers.
const PROBLEMS: u64 = 120;

/// How the told results are odd.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Results {
    /// A smooth function of the coordinates.
    Smooth,
    /// The same value everywhere.
    Constant,
    /// A smooth function with a spread of 1e-12 on top of a value of order one.
    NearlyConstant,
    /// A smooth function scaled to about 1e12.
    Huge,
    /// A smooth function scaled to about 1e-12.
    Tiny,
    /// A smooth function shifted far below zero.
    Negative,
    /// A smooth function with a few results a billion times larger.
    Outliers,
    /// A smooth function plus noise as large as its spread.
    Noisy,
}

const RESULTS: [Results; 8] = [
    Results::Smooth,
    Results::Constant,
    Results::NearlyConstant,
    Results::Huge,
    Results::Tiny,
    Results::Negative,
    Results::Outliers,
    Results::Noisy,
];

/// One drawn problem and how the lab answers it.
struct Case {
    number: u64,
    problem: Problem,
    results: Results,
    /// The chance that an experiment fails.
    failure_rate: f64,
    /// The chance that a result is told a second time, with another value.
    repeat_rate: f64,
    /// The chance, each round, of a result told for a point nobody asked for.
    stray_rate: f64,
    /// The largest ask.
    batch: usize,
    /// The most experiments in flight.
    in_flight: usize,
    /// Whether one-objective results are told with `tell_outcome` rather than `tell`.
    outcomes: bool,
    /// The pool's usable rows (inside the space), as coordinates.
    pool_units: Option<Vec<Vec<f64>>>,
    /// Whether every untried point can be listed (a pool, or a small all-discrete space), so that a short ask can be
    /// checked against what is left.
    finite: Option<Vec<Vec<f64>>>,
    /// Whether the space is one whose room for new points this test does not judge (dimensions without width
    /// and nothing else to vary, or per-batch parameters over a finite set).
    unjudged: bool,
}

impl Case {
    fn describe(&self) -> String {
        let dims: Vec<String> = self
            .problem
            .space
            .dims()
            .iter()
            .map(|d| match d.levels() {
                Some(l) => format!("{}: {} levels", d.name, l.len()),
                None => format!("{}: {:?} {}..{}", d.name, d.kind, d.min, d.max),
            })
            .collect();
        format!(
            "problem {}: [{}], {} constraint(s), per batch {:?}, pool {:?}, budget {}, objectives {}, results {:?}, failures {}, repeats {}, strays {}, batch {}, in flight {}",
            self.number,
            dims.join("; "),
            self.problem.space.constraints().len(),
            self.problem.space.per_batch(),
            self.problem.pool.as_ref().map(Vec::len),
            self.problem.budget,
            self.problem.objectives.len(),
            self.results,
            self.failure_rate,
            self.repeat_rate,
            self.stray_rate,
            self.batch,
            self.in_flight,
        )
    }
}

/// A range of a continuous or integer parameter: ordinary, far from zero, very narrow or very wide (the span a
/// log-scale parameter would have, which the space holds as a plain range).
fn range(rng: &mut Xoshiro256PlusPlus) -> (f64, f64) {
    match rng.gen_range(0..6) {
        0 => (1e9, 1e9 + rng.gen_range(0.5..2.0)),
        1 => {
            let lo = rng.gen_range(-1.0..1.0);
            (lo, lo + 10f64.powf(rng.gen_range(-9.0..-5.0)))
        }
        2 => (1e-6, 10f64.powf(rng.gen_range(2.0..6.0))),
        _ => {
            let lo = rng.gen_range(-100.0..100.0);
            (lo, lo + 10f64.powf(rng.gen_range(-2.0..3.0)))
        }
    }
}

fn categorical(name: String, count: usize, rng: &mut Xoshiro256PlusPlus) -> Dim {
    let offset = if rng.gen_bool(0.5) { 0.0 } else { rng.gen_range(-50.0..50.0) };
    let levels: Vec<Level> = (0..count).map(|i| Level::new(format!("L{i}"), offset + i as f64)).collect();
    let encoding = if rng.gen_bool(0.3) {
        let width = rng.gen_range(1..=3);
        // Some descriptor tables have a constant column or two levels alike, which a model must survive.
        let constant = rng.gen_bool(0.3);
        let mut table: Vec<Vec<f64>> = (0..count)
            .map(|_| (0..width).map(|c| if constant && c == 0 { 1.0 } else { rng.gen_range(-5.0..5.0) }).collect())
            .collect();
        if count > 1 && rng.gen_bool(0.3) {
            table[1] = table[0].clone();
        }
        Encoding::Descriptors(table)
    } else {
        Encoding::OneHot
    };
    Dim::categorical(name, levels, encoding)
}

/// One to twelve parameters of every kind, sometimes with a constraint or a per-batch parameter. `edge` allows
/// what [`Space`] holds but a campaign file cannot give: a dimension without width and a categorical of one level.
fn space(rng: &mut Xoshiro256PlusPlus, edge: bool) -> Space {
    let d = if rng.gen_bool(0.6) { rng.gen_range(1..=3) } else { rng.gen_range(4..=12) };
    let mut dims = Vec::with_capacity(d);
    for j in 0..d {
        let name = format!("p{j}");
        let dim = match rng.gen_range(0..10) {
            _ if edge && rng.gen_bool(0.2) => {
                if rng.gen_bool(0.5) {
                    Dim::new(name, 3.0, 3.0)
                } else {
                    categorical(name, 1, rng)
                }
            }
            0..=3 => {
                let (lo, hi) = range(rng);
                Dim::new(name, lo, hi)
            }
            4..=5 => {
                let step = [1.0, 0.5, 0.1, 2.5, 7.0][rng.gen_range(0..5)];
                let count = if rng.gen_bool(0.1) { 1_000_000 } else { rng.gen_range(2..=40) };
                let lo = f64::from(rng.gen_range(-50..50));
                // The top of the range need not be on the grid.
                let slack = if rng.gen_bool(0.3) { 0.4 * step } else { 0.0 };
                Dim::integer(name, lo, lo + step * (count - 1) as f64 + slack, step)
            }
            _ => {
                let count = match rng.gen_range(0..4) {
                    0 | 1 => 2,
                    2 => rng.gen_range(3..=6),
                    _ => rng.gen_range(38..=42),
                };
                categorical(name, count, rng)
            }
        };
        dims.push(dim);
    }
    let mut space = Space::new(dims.clone());
    let summable: Vec<&Dim> = dims.iter().filter(|d| !d.is_categorical() && d.width() > 0.0).collect();
    if summable.len() >= 2 && rng.gen_bool(0.2) {
        let (a, b) = (summable[0], summable[1]);
        let constraint = if rng.gen_bool(0.7) || a.kind != experiments::Kind::Continuous {
            // At most the sum of the two midpoints: half the box is cut off.
            let mid = (a.min + a.max) / 2.0 + (b.min + b.max) / 2.0;
            LinearConstraint::at_most(vec![(a.name.clone(), 1.0), (b.name.clone(), 1.0)], mid)
        } else {
            // A total that holds with `a` at its midpoint and `b` at its minimum, so the space is not empty
            // whatever `b`'s grid.
            let total = (a.min + a.max) / 2.0 + b.min;
            LinearConstraint::equal(vec![(a.name.clone(), 1.0), (b.name.clone(), 1.0)], total)
        };
        if let Ok(s) = space.clone().with_constraints(vec![constraint]) {
            space = s;
        }
    }
    if rng.gen_bool(0.15) {
        let name = dims[rng.gen_range(0..dims.len())].name.clone();
        if let Ok(s) = space.clone().with_per_batch(&[name]) {
            space = s;
        }
    }
    space
}

/// A feasible point of `space`, if the generator finds one.
fn draw(space: &Space, rng: &mut Xoshiro256PlusPlus) -> Option<Point> {
    let u = space.repair(&space.random(rng), &[])?;
    let p = space.from_unit(&u);
    space.contains(&p).then_some(p)
}

/// A pool of one row, a few, a few with duplicates, dozens, or about three thousand; some rows lie outside the
/// space, as rows of a table made for another campaign do.
fn pool(space: &Space, rng: &mut Xoshiro256PlusPlus) -> Vec<Point> {
    let size = match rng.gen_range(0..8) {
        0 | 1 => 1,
        2 | 3 => rng.gen_range(2..=6),
        // Scoring thousands of rows with a model of many features is slow in a debug build, and adds nothing a
        // smaller space's thousands of rows do not.
        6 | 7 if space.feature_len() <= 24 => rng.gen_range(2900..=3100),
        _ => rng.gen_range(20..=60),
    };
    let mut rows: Vec<Point> = (0..size).filter_map(|_| draw(space, rng)).collect();
    if !rows.is_empty() && rng.gen_bool(0.4) {
        for _ in 0..rng.gen_range(1..=rows.len().min(20)) {
            let copy = rows[rng.gen_range(0..rows.len())].clone();
            rows.push(copy);
        }
    }
    if rng.gen_bool(0.2) {
        let outside: Point = space.dims().iter().map(|d| (d.name.clone(), d.max + 1.0 + d.width())).collect();
        rows.push(outside);
    }
    rows.shuffle(rng);
    rows
}

/// Problem `number`, drawn from its own seed so that any one can be rerun alone.
fn case(number: u64) -> Case {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0x5eed_0000 + number);
    let edge = rng.gen_bool(0.15);
    let space = space(&mut rng, edge);
    let pool = rng.gen_bool(0.45).then(|| pool(&space, &mut rng)).filter(|p| !p.is_empty());
    let pool_units: Option<Vec<Vec<f64>>> = pool.as_ref().map(|rows| {
        rows.iter().filter(|p| space.contains(p)).filter_map(|p| space.to_unit(p).ok()).fold(Vec::new(), |mut a, u| {
            if !near(&u, &a) {
                a.push(u);
            }
            a
        })
    });
    let enumerated = (pool.is_none()
        && !space.has_continuous()
        && space.discrete_count().is_some_and(|c| c <= ENUMERATION_LIMIT as u128))
    .then(|| space.enumerate(ENUMERATION_LIMIT));
    let finite = pool_units.clone().or(enumerated);
    let continuous_width = space.dims().iter().any(|d| d.kind == experiments::Kind::Continuous && d.width() > 0.0);
    let large_discrete = space.discrete_count().is_none_or(|c| c > 1_000);
    // A per-batch parameter leaves a batch only the other parameters to vary, which may have no room for it.
    let free_width = space
        .dims()
        .iter()
        .enumerate()
        .any(|(j, d)| d.kind == experiments::Kind::Continuous && d.width() > 0.0 && !space.is_per_batch(j));
    let unjudged = (finite.is_none() && !continuous_width && !large_discrete)
        || (!space.per_batch().is_empty() && (finite.is_some() || !free_width));
    let initial = 2 * space.len() + 1;
    let room = finite.as_ref().map_or(usize::MAX, Vec::len);
    // The Gaussian process's fits are the cost of this test, so budgets stay small: below the design, just past
    // it, or past what the pool holds.
    let budget = match rng.gen_range(0..4) {
        0 => rng.gen_range(1..=initial.min(6)),
        1 | 2 => initial + rng.gen_range(1..=10),
        _ => room.saturating_add(rng.gen_range(1..=5)).min(initial + 14),
    }
    .min(36);
    let objectives: Vec<Objective> = (0..if rng.gen_bool(0.2) { rng.gen_range(2..=3) } else { 1 })
        .map(|k| {
            if rng.gen_bool(0.5) { Objective::maximize(format!("y{k}")) } else { Objective::minimize(format!("y{k}")) }
        })
        .collect();
    let stop = match rng.gen_range(0..8) {
        0 => StopRules { min_expected_improvement: Some(1e-3), patience: 2, ..StopRules::default() },
        1 => StopRules { target: Some(0.5), ..StopRules::default() },
        _ => StopRules::default(),
    };
    let results = RESULTS[rng.gen_range(0..RESULTS.len())];
    let failure_rate = [0.0, 0.0, 0.1, 0.3, 0.9][rng.gen_range(0..5)];
    let repeat_rate = [0.0, 0.0, 0.2, 0.5][rng.gen_range(0..4)];
    let batch = if rng.gen_bool(0.4) { 1 } else { rng.gen_range(2..=8) };
    let in_flight = batch.max(rng.gen_range(1..=8));
    Case {
        number,
        problem: Problem { space, objectives, budget, stop, pool },
        results,
        failure_rate,
        repeat_rate,
        stray_rate: [0.0, 0.0, 0.1][rng.gen_range(0..3)],
        batch,
        in_flight,
        outcomes: rng.gen_bool(0.5),
        pool_units,
        finite,
        unjudged,
    }
}

/// Whether `u` is within [`MIN_DISTANCE`] of one of `others`.
fn near(u: &[f64], others: &[Vec<f64>]) -> bool {
    others.iter().any(|o| u.iter().zip(o).map(|(a, b)| (a - b) * (a - b)).sum::<f64>() < MIN_DISTANCE * MIN_DISTANCE)
}

/// The `k`th objective's value at coordinates `u` for `results`, with `draw` a uniform number for noise and
/// outliers.
fn value(results: Results, k: usize, u: &[f64], draw: f64) -> f64 {
    let smooth: f64 =
        u.iter().enumerate().map(|(j, x)| ((1.0 + j as f64) * 1.7 * x + k as f64).sin() / (1.0 + j as f64)).sum();
    match results {
        Results::Smooth => smooth,
        Results::Constant => 4.0,
        Results::NearlyConstant => 1.0 + 1e-12 * smooth,
        Results::Huge => 1e12 * smooth,
        Results::Tiny => 1e-12 * smooth,
        Results::Negative => -1e6 + smooth,
        Results::Outliers if draw < 0.1 => 1e9 * (1.0 + smooth.abs()),
        Results::Outliers => smooth,
        Results::Noisy => smooth + 2.0 * (draw - 0.5),
    }
}

/// Tells `proposer` the result at `point`: each objective's value, or a failure (sometimes told as a value that is
/// not finite, which counts as one). Returns whether the one objective of a single-objective problem got a value.
fn tell(proposer: &mut dyn Proposer, case: &Case, point: &Point, rng: &mut Xoshiro256PlusPlus) -> bool {
    let space = &case.problem.space;
    let u = space.to_unit(point).unwrap_or_default();
    let failed = rng.gen_bool(case.failure_rate);
    let values: Vec<f64> =
        (0..case.problem.objectives.len()).map(|k| value(case.results, k, &u, rng.r#gen())).collect();
    let not_finite = if rng.gen_bool(0.5) { f64::NAN } else { f64::INFINITY };
    let single = case.problem.objectives.len() == 1;
    if !single && rng.gen_bool(0.1) {
        // One objective of several: the point is measured, but trains nothing.
        proposer.tell(Observation { values: point.clone(), objective: Some(values[0]) });
    } else if !single && rng.gen_bool(0.05) {
        // An outcome without one of the objectives counts as a failure.
        let outputs = case.problem.objectives.iter().zip(&values).skip(1).map(|(o, v)| (o.output.clone(), *v));
        proposer.tell_outcome(Outcome { values: point.clone(), outputs: Some(outputs.collect()) });
    } else if single && !case.outcomes {
        let objective = if failed { rng.gen_bool(0.7).then_some(not_finite) } else { Some(values[0]) };
        proposer.tell(Observation { values: point.clone(), objective });
    } else {
        let outputs = if failed {
            rng.gen_bool(0.7).then(|| case.problem.objectives.iter().map(|o| (o.output.clone(), not_finite)).collect())
        } else {
            Some(case.problem.objectives.iter().zip(&values).map(|(o, v)| (o.output.clone(), *v)).collect())
        };
        proposer.tell_outcome(Outcome { values: point.clone(), outputs });
    }
    single && !failed
}

/// Tells a result the proposer did not ask for, as a lab resuming an older campaign or adding a colleague's
/// data does: a row of the pool or a point of the space (recorded in `told`, since it is measured now), or a point
/// that cannot be placed or lies outside the ranges, which must change nothing the checks see.
fn tell_stray(proposer: &mut dyn Proposer, case: &Case, told: &mut Vec<Point>, rng: &mut Xoshiro256PlusPlus) {
    let space = &case.problem.space;
    let row =
        case.problem.pool.as_ref().filter(|_| rng.gen_bool(0.5)).map(|rows| rows[rng.gen_range(0..rows.len())].clone());
    let Some(mut point) = row.or_else(|| draw(space, rng)) else { return };
    let dims = space.dims();
    let j = rng.gen_range(0..dims.len());
    match rng.gen_range(0..4) {
        0 => {
            point.remove(&dims[j].name);
        }
        1 => {
            point.insert(dims[j].name.clone(), dims[j].max + 1.0 + dims[j].width());
        }
        _ if space.contains(&point) => told.push(point.clone()),
        _ => {}
    }
    let objective = Some(value(case.results, 0, &space.to_unit(&point).unwrap_or_default(), rng.r#gen()));
    proposer.tell(Observation { values: point, objective });
}

/// Checks one ask's proposals against the promises; returns the broken ones.
fn check_ask(case: &Case, proposals: &[Proposal], told: &[Point], pending: &[Point], asked: usize) -> Vec<String> {
    let space = &case.problem.space;
    let mut broken = Vec::new();
    let taken: Vec<Vec<f64>> = told.iter().chain(pending).filter_map(|p| space.to_unit(p).ok()).collect();
    let mut batch: Vec<Vec<f64>> = Vec::new();
    for p in proposals {
        let values = &p.values;
        if let Some((name, v)) = values.iter().find(|(_, v)| !v.is_finite()) {
            broken.push(format!("{name} = {v} is not finite in {values:?}"));
            continue;
        }
        if !space.contains(values) {
            broken.push(format!("{values:?} is outside the space"));
            continue;
        }
        let Ok(u) = space.to_unit(values) else {
            broken.push(format!("{values:?} has no coordinates"));
            continue;
        };
        if let Some(pool) = &case.pool_units
            && !near(&u, pool)
        {
            broken.push(format!("{values:?} is not a row of the pool"));
        }
        if near(&u, &taken) {
            broken.push(format!("{values:?} repeats a told or pending point"));
        }
        if near(&u, &batch) {
            broken.push(format!("{values:?} repeats a point of its own batch"));
        }
        // Per-batch values agree as the proposers compare coordinates: within [`MIN_DISTANCE`].
        let first = space.to_unit(&proposals[0].values).unwrap_or_default();
        for (j, d) in space.dims().iter().enumerate() {
            if space.is_per_batch(j) && first.get(j).is_none_or(|f| (f - u[j]).abs() >= MIN_DISTANCE) {
                broken.push(format!("per-batch `{}` differs within one ask: {values:?}", d.name));
            }
        }
        for (what, v) in [("mean", p.predicted_mean), ("sd", p.predicted_sd), ("acquisition", p.acquisition)] {
            if v.is_some_and(|v| !v.is_finite()) {
                broken.push(format!("predicted {what} {v:?} is not finite ({})", p.strategy));
            }
        }
        batch.push(u);
    }
    if let Some(finite) = &case.finite
        && !case.unjudged
    {
        let after: Vec<Vec<f64>> = taken.iter().chain(&batch).cloned().collect();
        let left = finite.iter().filter(|u| !near(u, &after)).count();
        if proposals.len() < asked && left > 0 {
            broken.push(format!("{} of {asked} proposed while {left} untried point(s) remain", proposals.len()));
        }
    } else if case.finite.is_none() && !case.unjudged && proposals.len() < asked {
        broken.push(format!("{} of {asked} proposed in a space with room", proposals.len()));
    }
    broken
}

/// Runs `config` on `case` to its budget, asking batches with experiments in flight and telling results in a
/// shuffled order; returns every broken promise.
fn run(config: &ProposerConfig, case: &Case) -> Vec<String> {
    let mut proposer = build_for(config, &case.problem, case.number);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0xca5e_0000 + case.number);
    let budget = case.problem.budget;
    let mut told: Vec<Point> = Vec::new();
    let mut pending: Vec<Point> = Vec::new();
    let mut asked = 0;
    let mut broken = Vec::new();
    let mut stopped = false;
    // Successful results at different points, and the proposals of the asks made once a model was due.
    let mut successes = 0;
    let (mut due, mut modelled) = (0, 0);
    let model_after = model_after(config, case);
    // Every round either asks or tells at least one result, so this bounds a run that makes progress.
    for _ in 0..4 * budget + 16 {
        if (asked >= budget || stopped) && pending.is_empty() {
            break;
        }
        let mut short = false;
        if rng.gen_bool(0.05) && !proposer.ask(0, &pending).is_empty() {
            broken.push("an ask of 0 gave proposals".into());
        }
        if !stopped && asked < budget && pending.len() < case.in_flight {
            let q = rng.gen_range(1..=case.batch).min(budget - asked).min(case.in_flight - pending.len());
            let proposals = proposer.ask(q, &pending);
            if proposals.len() > q {
                broken.push(format!("{} proposals for an ask of {q}", proposals.len()));
            }
            broken.extend(check_ask(case, &proposals, &told, &pending, q));
            if model_after.is_some_and(|m| successes >= m) && !proposals.is_empty() {
                due += 1;
                modelled += proposals.iter().filter(|p| p.predicted_mean.is_some()).count();
            }
            short = proposals.len() < q;
            asked += proposals.len();
            if proposals.is_empty() && pending.is_empty() {
                stopped = true;
                if proposer.should_stop().is_none() && !case.unjudged {
                    broken
                        .push("an ask came back empty with nothing in flight, and should_stop gives no reason".into());
                }
            }
            pending.extend(proposals.into_iter().map(|p| p.values));
        }
        if rng.gen_bool(case.stray_rate) {
            tell_stray(proposer.as_mut(), case, &mut told, &mut rng);
        }
        if !pending.is_empty() {
            let full = short || asked >= budget || stopped || pending.len() >= case.in_flight;
            let k = if full { rng.gen_range(1..=pending.len()) } else { rng.gen_range(0..=pending.len()) };
            for _ in 0..k {
                let point = pending.swap_remove(rng.gen_range(0..pending.len()));
                let mut success = tell(proposer.as_mut(), case, &point, &mut rng);
                if rng.gen_bool(case.repeat_rate) {
                    success |= tell(proposer.as_mut(), case, &point, &mut rng);
                }
                successes += usize::from(success);
                told.push(point);
            }
        }
        if proposer.should_stop().is_some() {
            stopped = true;
        }
        if !broken.is_empty() {
            break;
        }
    }
    if broken.is_empty() && !stopped && (asked < budget || !pending.is_empty()) {
        broken.push(format!("{asked} of {budget} asked and {} in flight after the last round", pending.len()));
    }
    // One ask may fall back for want of improvement; three in a row are a model that is never used.
    if broken.is_empty() && due >= 3 && modelled == 0 {
        broken
            .push(format!("no proposal of {due} asks past the design came from a model of {:?} results", case.results));
    }
    broken
}

/// After how many successful results at different points a run of `config` on `case` must propose from a model,
/// if it must at all: a Gaussian process with one objective whose results vary (on whatever scale: the scale is
/// the user's choice of units, so it must not decide whether a model is used), in a space with room, has a model
/// once its design has been measured.
fn model_after(config: &ProposerConfig, case: &Case) -> Option<usize> {
    let ProposerConfig::GaussianProcess { initial, .. } = config else { return None };
    let varied = !matches!(case.results, Results::Constant | Results::NearlyConstant);
    let room = case.finite.as_ref().is_none_or(|f| f.len() > case.problem.budget + 4);
    (varied && room && case.problem.objectives.len() == 1 && !case.unjudged).then_some(*initial)
}

#[test]
fn every_proposer_keeps_its_promises_on_odd_problems() {
    let mut failures: Vec<String> = Vec::new();
    for number in 0..PROBLEMS {
        let case = case(number);
        let gp = match number % 7 {
            // Now and then another acquisition function, since a campaign may name any.
            3 => ProposerConfig::GaussianProcess {
                initial: case.problem.space.len() * 2 + 1,
                acquisition: Acquisition::UpperConfidenceBound { beta: 4.0 },
            },
            5 => ProposerConfig::GaussianProcess {
                initial: case.problem.space.len() * 2 + 1,
                acquisition: Acquisition::ExpectedImprovement,
            },
            _ => default_gp(case.problem.space.len()),
        };
        for config in [ProposerConfig::Random, ProposerConfig::SpaceFilling, gp] {
            let outcome = catch_unwind(AssertUnwindSafe(|| run(&config, &case)));
            let broken = match outcome {
                Ok(broken) => broken,
                Err(panic) => {
                    let message = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_default();
                    vec![format!("panicked: {message}")]
                }
            };
            failures.extend(broken.into_iter().take(3).map(|b| format!("{config:?} on {}: {b}", case.describe())));
        }
    }
    assert!(failures.is_empty(), "{} broken promise(s):\n{}", failures.len(), failures.join("\n"));
}

/// The generator's odd values really are drawn: a test that never draws them checks nothing.
#[test]
fn the_generator_draws_every_kind_of_oddity() {
    let cases: Vec<Case> = (0..PROBLEMS).map(case).collect();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &cases {
        let dims = c.problem.space.dims();
        let mut count = |what: &'static str, yes: bool| *seen.entry(what).or_default() += usize::from(yes);
        count("pool of one row", c.problem.pool.as_ref().is_some_and(|p| p.len() == 1));
        count("pool of thousands", c.problem.pool.as_ref().is_some_and(|p| p.len() > 2000));
        count("categorical of ~40 levels", dims.iter().any(|d| d.levels().is_some_and(|l| l.len() >= 38)));
        count("categorical of one level", dims.iter().any(|d| d.levels().is_some_and(|l| l.len() == 1)));
        count("ten or more parameters", dims.len() >= 10);
        count("constraint", !c.problem.space.constraints().is_empty());
        count("per batch", !c.problem.space.per_batch().is_empty());
        count("several objectives", c.problem.objectives.len() > 1);
        count("budget below the design", c.problem.budget < 2 * dims.len() + 1);
        count("budget past the pool", c.pool_units.as_ref().is_some_and(|p| c.problem.budget > p.len()));
        count("constant results", c.results == Results::Constant);
        count("nearly constant results", c.results == Results::NearlyConstant);
        count("dimension without width", dims.iter().any(|d| !d.is_categorical() && d.width() == 0.0));
        count("tiny results", c.results == Results::Tiny);
        count("huge results", c.results == Results::Huge);
        count("batches", c.batch > 1);
        count("stray results", c.stray_rate > 0.0);
        count("failures", c.failure_rate > 0.0);
        count("repeats", c.repeat_rate > 0.0);
    }
    let missing: Vec<&&str> = seen.iter().filter(|(_, n)| **n == 0).map(|(k, _)| k).collect();
    assert!(missing.is_empty(), "never drawn: {missing:?} ({seen:?})");
}
