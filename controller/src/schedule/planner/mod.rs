//! The planner: a schedule for known work, computed fast enough to redo whenever reality changes.
//!
//! The scheduling problem is a flexible job shop with precedence DAGs: each operation belongs to a job (an
//! experiment), has an expected duration, runs on one of a set of candidate resources (instruments), may start only
//! after its predecessors end (plus an optional minimum wait), should start within a maximum wait of them, and never
//! shares a resource. [`plan`] builds active schedules with the Giffler–Thompson algorithm driven by priority keys,
//! starting from several classic rules (longest remaining path, most remaining work, bottleneck-weighted paths) and
//! from the best of them with each job in turn put first. Without maximum waits, a tabu search then reorders the
//! operations of critical blocks on their resources (moves ranked by an estimate from longest-path heads and tails,
//! so an iteration costs a few passes over the operations); with maximum waits, an iterated local search improves the
//! priority keys instead. Both run a fixed number of steps, so the result is deterministic for a given seed and its
//! cost is bounded. Operations already running are fixed in place, so the same code replans in the middle of a run.
//!
//! The planner is pure: it knows nothing of instruments, the ECS or time beyond the numbers it is given. The
//! scheduler (`crate::schedule`) turns its per-resource sequences into dispatch decisions.

mod tabu;

use tabu::{TABU_ITERATIONS, TABU_MAX_OPS, pick_critical, tabu};

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// One operation to schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    /// The job (experiment) it belongs to.
    pub job: usize,
    /// Expected duration.
    pub duration: f64,
    /// The resources that can run it; never empty.
    pub candidates: Vec<usize>,
    /// Operations that must end before it starts.
    pub preds: Vec<usize>,
    /// The earliest time it may start (the plan's "now", or later).
    pub release: f64,
    /// The least time to wait after the predecessors end.
    pub min_wait: f64,
    /// The most time it should wait after the predecessors end.
    pub max_wait: Option<f64>,
    /// For an operation already running: its resource and start time.
    pub fixed: Option<(usize, f64)>,
}

/// A scheduling problem.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Problem {
    /// How many resources there are (ids `0..resources`).
    pub resources: usize,
    /// When each resource is first free (empty means all free at 0).
    pub available: Vec<f64>,
    /// The operations.
    pub ops: Vec<Operation>,
}

/// A schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Start time of each operation.
    pub start: Vec<f64>,
    /// The resource of each operation.
    pub resource: Vec<usize>,
    /// The time the last operation ends.
    pub makespan: f64,
    /// Total time by which operations exceed their maximum waits.
    pub lateness: f64,
    /// For each resource, its operations in start order.
    pub sequences: Vec<Vec<usize>>,
    /// How many schedules were evaluated to find this one.
    pub evaluations: usize,
    /// The planner's work to find it, in operations touched: a measure of its time that does not depend on the
    /// machine (a simulation turns it into lab time, as a simulated lab's acceleration does with the wall time).
    pub work: u64,
}

impl Plan {
    /// End time of operation `i`.
    pub fn end(&self, p: &Problem, i: usize) -> f64 {
        self.start[i] + p.ops[i].duration
    }
}

/// Lower bounds on the makespan: the longest path through any job, and the most work any single resource must do
/// (counting each operation on its only candidate; flexible operations are left out, so the bound stays valid).
pub fn lower_bound(p: &Problem) -> (f64, f64) {
    let order = topological(p);
    let mut finish = vec![0.0f64; p.ops.len()];
    for &i in &order {
        let op = &p.ops[i];
        let ready = op.preds.iter().map(|&q| finish[q] + op.min_wait).fold(op.release, f64::max);
        finish[i] = op.fixed.map_or(ready, |(_, s)| s) + op.duration;
    }
    let path = finish.iter().copied().fold(0.0, f64::max);
    let mut load = vec![0.0f64; p.resources];
    for op in &p.ops {
        if op.candidates.len() == 1 && op.fixed.is_none() {
            load[op.candidates[0]] += op.duration;
        }
    }
    let available = |r: usize| p.available.get(r).copied().unwrap_or(0.0);
    let busiest = (0..p.resources).map(|r| load[r] + available(r)).fold(0.0, f64::max);
    (path, busiest)
}

/// Operations in an order where each comes after its predecessors.
fn topological(p: &Problem) -> Vec<usize> {
    let n = p.ops.len();
    let mut pending: Vec<usize> = p.ops.iter().map(|o| o.preds.len()).collect();
    let succ = successors(p);
    let mut order: Vec<usize> = (0..n).filter(|&i| pending[i] == 0).collect();
    let mut k = 0;
    while k < order.len() {
        let i = order[k];
        for &s in &succ[i] {
            pending[s] -= 1;
            if pending[s] == 0 {
                order.push(s);
            }
        }
        k += 1;
    }
    order
}

fn successors(p: &Problem) -> Vec<Vec<usize>> {
    let mut succ = vec![Vec::new(); p.ops.len()];
    for (i, op) in p.ops.iter().enumerate() {
        for &q in &op.preds {
            succ[q].push(i);
        }
    }
    succ
}

/// Precomputed structure shared by every evaluation of one problem.
struct Shape {
    succ: Vec<Vec<usize>>,
    order: Vec<usize>,
    /// Each operation's duration, and its resource if it has only one (else [`NONE`]), kept apart from the
    /// operations so the builder's inner loops read two flat arrays.
    duration: Vec<f64>,
    single: Vec<usize>,
}

impl Shape {
    fn new(p: &Problem) -> Self {
        Shape {
            succ: successors(p),
            order: topological(p),
            duration: p.ops.iter().map(|o| o.duration).collect(),
            single: p.ops.iter().map(|o| if o.candidates.len() == 1 { o.candidates[0] } else { NONE }).collect(),
        }
    }
}

/// Builds the active schedule the priority `keys` give (larger key first) with the Giffler–Thompson algorithm.
pub fn schedule_with(p: &Problem, keys: &[f64]) -> Plan {
    let shape = Shape::new(p);
    evaluate(p, &shape, keys)
}

fn evaluate(p: &Problem, shape: &Shape, keys: &[f64]) -> Plan {
    let n = p.ops.len();
    let mut free: Vec<f64> = (0..p.resources).map(|r| p.available.get(r).copied().unwrap_or(0.0)).collect();
    let mut est: Vec<f64> = p.ops.iter().map(|o| o.release).collect();
    // When the predecessors of each operation end (for maximum waits).
    let mut preds_end: Vec<f64> = vec![f64::NEG_INFINITY; n];
    let mut pending: Vec<usize> = p.ops.iter().map(|o| o.preds.len()).collect();
    let mut start = vec![0.0; n];
    let mut resource = vec![usize::MAX; n];
    let mut done = 0;
    let mut ready: Vec<usize> = Vec::with_capacity(n);
    // Operations in the order they are placed, which on each resource is the order of their start times.
    let mut placed: Vec<usize> = Vec::with_capacity(n);

    let mut finish = |i: usize,
                      s: f64,
                      r: usize,
                      start: &mut Vec<f64>,
                      resource: &mut Vec<usize>,
                      free: &mut Vec<f64>,
                      est: &mut Vec<f64>,
                      preds_end: &mut Vec<f64>,
                      pending: &mut Vec<usize>,
                      ready: &mut Vec<usize>| {
        start[i] = s;
        resource[i] = r;
        placed.push(i);
        let end = s + p.ops[i].duration;
        free[r] = later(free[r], end);
        for &q in &shape.succ[i] {
            preds_end[q] = later(preds_end[q], end);
            est[q] = later(est[q], end + p.ops[q].min_wait);
            pending[q] -= 1;
            if pending[q] == 0 && p.ops[q].fixed.is_none() {
                ready.push(q);
            }
        }
    };

    // Running operations first, in their real places.
    let mut fixed: Vec<usize> = (0..n).filter(|&i| p.ops[i].fixed.is_some()).collect();
    fixed.sort_by(|&a, &b| {
        p.ops[a].fixed.map(|f| f.1).partial_cmp(&p.ops[b].fixed.map(|f| f.1)).unwrap_or(std::cmp::Ordering::Equal)
    });
    for &i in &fixed {
        let (r, s) = p.ops[i].fixed.expect("filtered");
        finish(i, s, r, &mut start, &mut resource, &mut free, &mut est, &mut preds_end, &mut pending, &mut ready);
        done += 1;
    }
    for &i in &shape.order {
        if pending[i] == 0 && p.ops[i].fixed.is_none() && !ready.contains(&i) && resource[i] == usize::MAX {
            ready.push(i);
        }
    }
    // Ready operations by the resources that could run them, with each resource's earliest completion among them
    // (recomputed only when it may have changed: the resource was used, or one of its operations went elsewhere).
    let cands = |i: usize| -> &[usize] {
        if shape.single[i] != NONE { std::slice::from_ref(&shape.single[i]) } else { &p.ops[i].candidates }
    };
    let mut ready_on: Vec<Vec<usize>> = vec![Vec::new(); p.resources];
    let mut earliest = vec![f64::INFINITY; p.resources];
    let mut stale = vec![false; p.resources];
    while done < n {
        for i in ready.drain(..) {
            for &r in cands(i) {
                ready_on[r].push(i);
                if !stale[r] {
                    let c = later(est[i], free[r]) + shape.duration[i];
                    if c < earliest[r] {
                        earliest[r] = c;
                    }
                }
            }
        }
        let mut best_c = f64::INFINITY;
        let mut best_r = usize::MAX;
        for r in 0..p.resources {
            if stale[r] {
                earliest[r] = ready_on[r]
                    .iter()
                    .map(|&i| later(est[i], free[r]) + shape.duration[i])
                    .fold(f64::INFINITY, |a, b| if b < a { b } else { a });
                stale[r] = false;
            }
            if earliest[r] < best_c {
                best_c = earliest[r];
                best_r = r;
            }
        }
        if best_r == usize::MAX {
            // Nothing ready: only possible with a cycle, which validated protocols never have; stop rather than spin.
            break;
        }
        let mut chosen = usize::MAX;
        let mut chosen_key = f64::NEG_INFINITY;
        for &i in &ready_on[best_r] {
            // The conflict set: operations on that resource that could start before the earliest completion, and
            // the operation that completes then, which starts exactly then if it takes no time at all.
            let start = later(est[i], free[best_r]);
            if start < best_c || start + shape.duration[i] <= best_c {
                let k = keys[i];
                if k > chosen_key || (k == chosen_key && i < chosen) {
                    chosen = i;
                    chosen_key = k;
                }
            }
        }
        for &r in cands(chosen) {
            if let Some(pos) = ready_on[r].iter().position(|&i| i == chosen) {
                ready_on[r].swap_remove(pos);
            }
            stale[r] = true;
        }
        let s = later(est[chosen], free[best_r]);
        finish(
            chosen,
            s,
            best_r,
            &mut start,
            &mut resource,
            &mut free,
            &mut est,
            &mut preds_end,
            &mut pending,
            &mut ready,
        );
        done += 1;
    }
    let mut makespan = 0.0f64;
    let mut lateness = 0.0;
    for i in 0..n {
        makespan = later(makespan, start[i] + p.ops[i].duration);
        if let Some(w) = p.ops[i].max_wait
            && preds_end[i].is_finite()
        {
            lateness += (start[i] - preds_end[i] - w).max(0.0);
        }
    }
    let mut sequences = vec![Vec::new(); p.resources];
    for &i in &placed {
        sequences[resource[i]].push(i);
    }
    // Each placement scans every resource, and the chosen resource's ready operations.
    let work = (n * (p.resources + 1)) as u64;
    Plan { start, resource, makespan, lateness, sequences, evaluations: 1, work }
}

/// How a plan is scored: makespan, with lateness against maximum waits weighted so heavily that any plan meeting
/// them beats any plan that does not.
fn cost(plan: &Plan) -> f64 {
    plan.makespan + 1e3 * plan.lateness
}

/// The classic priority rules the search starts from.
fn rules(p: &Problem, shape: &Shape) -> Vec<Vec<f64>> {
    let n = p.ops.len();
    // Longest path from each operation to the end of its job, counting its own duration.
    let mut tail = vec![0.0f64; n];
    for &i in shape.order.iter().rev() {
        let after = shape.succ[i].iter().map(|&s| tail[s] + p.ops[s].min_wait).fold(0.0, f64::max);
        tail[i] = p.ops[i].duration + after;
    }
    // Work left in each job from each operation on (its descendants and itself).
    let mut job_work = vec![0.0f64; n];
    for &i in shape.order.iter().rev() {
        job_work[i] = p.ops[i].duration + shape.succ[i].iter().map(|&s| job_work[s]).sum::<f64>();
    }
    // Resource load, to weight work on the busiest resources.
    let mut load = vec![0.0f64; p.resources];
    for op in &p.ops {
        for &r in &op.candidates {
            load[r] += op.duration / op.candidates.len() as f64;
        }
    }
    let max_load = load.iter().copied().fold(f64::EPSILON, f64::max);
    let mut weighted = vec![0.0f64; n];
    for &i in shape.order.iter().rev() {
        let op = &p.ops[i];
        let w = op.candidates.iter().map(|&r| load[r] / max_load).fold(0.0, f64::max);
        let after = shape.succ[i].iter().map(|&s| weighted[s]).fold(0.0, f64::max);
        weighted[i] = op.duration * (0.5 + w) + after;
    }
    // Urgency for maximum waits: an operation whose successor must follow quickly goes first.
    let urgent: Vec<f64> =
        (0..n).map(|i| if shape.succ[i].iter().any(|&s| p.ops[s].max_wait.is_some()) { 1e6 } else { 0.0 }).collect();
    vec![
        tail.iter().zip(&urgent).map(|(t, u)| t + u).collect(),
        job_work.iter().zip(&urgent).map(|(t, u)| t + u).collect(),
        weighted.iter().zip(&urgent).map(|(t, u)| t + u).collect(),
        (0..n).map(|i| -(i as f64) + urgent[i]).collect(),
    ]
}

/// How many schedules [`plan`] evaluates for a problem of `n` operations: about a thousand operation-placements per
/// evaluation budget unit, so planning time grows linearly with the work and stays near a few microseconds per
/// operation.
pub fn default_budget(n: usize) -> usize {
    (12_000 / n.max(1)).clamp(8, 400)
}

/// Finds a good schedule. It builds the classic rules' plans and, from the best, one plan per job with that job put
/// first (at most `budget` of them). Without maximum waits it then improves the best plan's resource sequences by
/// [`tabu`] search; with them, by an iterated local search on the priority keys that evaluates at most `budget`
/// schedules. Deterministic for a given `seed`.
pub fn plan(p: &Problem, budget: usize, seed: u64) -> Plan {
    let n = p.ops.len();
    let shape = Shape::new(p);
    if n == 0 {
        return Plan {
            start: Vec::new(),
            resource: Vec::new(),
            makespan: 0.0,
            lateness: 0.0,
            sequences: vec![Vec::new(); p.resources],
            evaluations: 0,
            work: 0,
        };
    }
    let mut evaluations = 0;
    let mut work = 0;
    let mut best: Option<(Vec<f64>, Plan)> = None;
    for keys in rules(p, &shape) {
        let plan = evaluate(p, &shape, &keys);
        evaluations += 1;
        work += plan.work;
        if best.as_ref().is_none_or(|(_, b)| cost(&plan) < cost(b)) {
            best = Some((keys, plan));
        }
    }
    let (mut best_keys, mut best_plan) = best.expect("at least one rule");
    // One job first: the bottleneck resource often waits at the start for the one job that can reach it soonest, and
    // putting a job first changes every resource's order at once, which moves of single operations cannot find.
    {
        let jobs = p.ops.iter().map(|o| o.job).max().map_or(0, |j| j + 1);
        let lift = best_keys.iter().map(|k| k.abs()).fold(0.0, f64::max) + 1.0;
        let base = best_keys.clone();
        for j in 0..jobs.min(budget) {
            let keys: Vec<f64> = base.iter().zip(&p.ops).map(|(k, o)| if o.job == j { k + lift } else { *k }).collect();
            let plan = evaluate(p, &shape, &keys);
            evaluations += 1;
            work += plan.work;
            if cost(&plan) < cost(&best_plan) {
                best_keys = keys;
                best_plan = plan;
            }
        }
    }
    // Without maximum waits, the best plan's resource sequences are improved directly by the tabu search; with them,
    // the search stays in the space of priority keys, where every plan the Giffler–Thompson builder makes respects
    // them as well as it can.
    if n <= TABU_MAX_OPS && p.ops.iter().all(|o| o.max_wait.is_none()) {
        if let Some(better) = tabu(p, &shape, &best_plan, TABU_ITERATIONS, seed, &mut work) {
            evaluations += better.evaluations;
            best_plan = better;
        }
        best_plan.evaluations = evaluations;
        best_plan.work = work;
        return best_plan;
    }
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut current_keys = best_keys.clone();
    let mut current_plan = best_plan.clone();
    let scale = best_keys.iter().map(|k| k.abs()).filter(|k| *k < 1e5).fold(1.0, f64::max);
    while evaluations < budget {
        let mut keys = current_keys.clone();
        // Perturb: mostly nudge operations on the current plan's critical chain, sometimes shake at random.
        let moves = 1 + rng.gen_range(0..3usize.min(n));
        for _ in 0..moves {
            let i = if rng.gen_bool(0.7) { pick_critical(p, &current_plan, &mut rng) } else { rng.gen_range(0..n) };
            keys[i] += scale * rng.gen_range(-0.6..0.6);
        }
        let plan = evaluate(p, &shape, &keys);
        evaluations += 1;
        work += plan.work;
        if cost(&plan) <= cost(&current_plan) || rng.gen_bool(0.05) {
            // Equal moves are taken to drift across plateaus; an occasional step uphill leaves a local optimum.
            if cost(&plan) < cost(&best_plan) {
                best_keys = keys.clone();
                best_plan = plan.clone();
            }
            current_keys = keys;
            current_plan = plan;
        }
    }
    let _ = best_keys;
    best_plan.evaluations = evaluations;
    best_plan.work = work;
    best_plan
}

/// How many tabu iterations a warm replan runs: the previous plan is already good, and reality moved it only a
/// little, so a short search repairs it.
const WARM_ITERATIONS: usize = 25;

/// Replans from a previous plan, for when reality departed from it (a duration surprised) but the work is the same:
/// each operation's previous planned start (`previous`, `None` for one the plan did not cover) becomes its priority,
/// so the Giffler–Thompson builder keeps the previous order where it still fits; a short tabu search then repairs
/// it. The best classic rule is built too, and the better of the two is kept. Falls back to [`plan`] when the
/// problem has maximum waits or an operation the previous plan did not cover. Deterministic for a given `seed`.
pub fn replan(p: &Problem, previous: &[Option<f64>], budget: usize, seed: u64) -> Plan {
    let n = p.ops.len();
    let covered = previous.len() == n && p.ops.iter().zip(previous).all(|(o, s)| o.fixed.is_some() || s.is_some());
    if n == 0 || n > TABU_MAX_OPS || !covered || p.ops.iter().any(|o| o.max_wait.is_some()) {
        return plan(p, budget, seed);
    }
    let shape = Shape::new(p);
    let keys: Vec<f64> = previous.iter().map(|s| -s.unwrap_or(0.0)).collect();
    let mut best = evaluate(p, &shape, &keys);
    let by_rule = evaluate(p, &shape, &rules(p, &shape)[0]);
    let by_rule_work = by_rule.work;
    if cost(&by_rule) < cost(&best) {
        best = by_rule;
    }
    let mut evaluations = 2;
    let mut work = best.work + by_rule_work;
    if let Some(better) = tabu(p, &shape, &best, WARM_ITERATIONS, seed, &mut work) {
        evaluations += better.evaluations;
        best = better;
    }
    best.evaluations = evaluations;
    best.work = work;
    best
}

/// The later of two times. Times here are never NaN, so this skips the NaN handling of `f64::max`, which costs a
/// third of the planner's time in its inner loops.
#[inline(always)]
fn later(a: f64, b: f64) -> f64 {
    if a > b { a } else { b }
}

/// Sentinel for "no operation" in the tabu search's links.
const NONE: usize = usize::MAX;

#[cfg(test)]
mod tests {
    use super::*;

    fn op(job: usize, duration: f64, r: usize, preds: &[usize]) -> Operation {
        Operation {
            job,
            duration,
            candidates: vec![r],
            preds: preds.to_vec(),
            release: 0.0,
            min_wait: 0.0,
            max_wait: None,
            fixed: None,
        }
    }

    fn valid(p: &Problem, plan: &Plan) {
        for (i, o) in p.ops.iter().enumerate() {
            assert!(o.candidates.contains(&plan.resource[i]), "op {i} on a resource it cannot use");
            for &q in &o.preds {
                assert!(plan.start[i] + 1e-9 >= plan.end(p, q) + o.min_wait, "op {i} starts before pred {q} ends");
            }
        }
        for seq in &plan.sequences {
            for w in seq.windows(2) {
                assert!(plan.start[w[1]] + 1e-9 >= plan.end(p, w[0]), "overlap on a resource: {w:?}");
            }
        }
    }

    #[test]
    fn a_two_job_flow_shop_is_solved_optimally() {
        // Johnson's rule puts job 1 first (its first operation is short): 1 + 5 + 2 = 8 on the first resource's
        // path... the optimum is 9: r0 runs job 1 (0-1) then job 0 (1-6); r1 runs job 1 (1-7) then job 0 (7-9).
        let p = Problem {
            resources: 2,
            available: vec![],
            ops: vec![op(0, 5.0, 0, &[]), op(0, 2.0, 1, &[0]), op(1, 1.0, 0, &[]), op(1, 6.0, 1, &[2])],
        };
        let plan = plan(&p, 50, 1);
        valid(&p, &plan);
        assert_eq!(plan.makespan, 9.0);
        assert_eq!(lower_bound(&p), (7.0, 8.0));
    }

    #[test]
    fn flexible_operations_use_every_candidate() {
        let p = Problem {
            resources: 3,
            available: vec![],
            ops: (0..6).map(|j| Operation { candidates: vec![0, 1, 2], ..op(j, 10.0, 0, &[]) }).collect(),
        };
        let plan = plan(&p, 20, 1);
        valid(&p, &plan);
        assert_eq!(plan.makespan, 20.0);
    }

    #[test]
    fn running_operations_stay_where_they_are() {
        let mut ops = vec![op(0, 10.0, 0, &[]), op(0, 5.0, 1, &[0]), op(1, 3.0, 0, &[])];
        ops[0].fixed = Some((0, 2.0));
        let p = Problem { resources: 2, available: vec![], ops };
        let plan = plan(&p, 20, 1);
        valid(&p, &plan);
        assert_eq!(plan.start[0], 2.0);
        assert_eq!(plan.start[2], 12.0, "the resource is busy until the running operation ends");
    }

    #[test]
    fn generated_workloads_are_planned_to_their_lower_bound() {
        // These workloads (the benchmark generator's shape: 20 jobs on 8 instruments) all have a plan at the lower
        // bound; the rules alone miss it on most of them, so this fails if the search stops finding it.
        for seed in 0..4 {
            let p = crate::plan::workload::generate(20, 8, seed).problem();
            let (path, busiest) = lower_bound(&p);
            let plan = plan(&p, default_budget(p.ops.len()), seed);
            valid(&p, &plan);
            assert_eq!(plan.makespan, path.max(busiest), "seed {seed}");
        }
    }

    #[test]
    fn a_bottleneck_fed_by_one_quick_job_starts_with_it() {
        // Resource 2 is the bottleneck, last in every job. Job 3 reaches it soonest (after 10 + 10), but only if it
        // goes first on resources 0 and 1, which no classic rule does (its remaining work is the least). The optimum,
        // 230 (checked by enumerating every order on every resource), starts with it.
        let mut ops = Vec::new();
        let jobs = [(40.0, 30.0, 50.0), (35.0, 40.0, 50.0), (30.0, 45.0, 50.0), (10.0, 10.0, 50.0)];
        for (j, &(a, b, c)) in jobs.iter().enumerate() {
            let base = ops.len();
            ops.push(op(j, a, 0, &[]));
            ops.push(op(j, b, 1, &[base]));
            ops.push(op(j, c, 2, &[base + 1]));
        }
        let p = Problem { resources: 3, available: vec![], ops };
        let shape = Shape::new(&p);
        let by_rules = rules(&p, &shape).iter().map(|k| evaluate(&p, &shape, k).makespan).fold(f64::INFINITY, f64::min);
        assert!(by_rules > 230.0, "the rules alone find it ({by_rules}), so this tests nothing");
        let plan = plan(&p, default_budget(p.ops.len()), 0);
        valid(&p, &plan);
        assert_eq!(plan.makespan, 230.0, "{plan:?}");
    }

    #[test]
    fn a_warm_replan_keeps_a_good_plan_and_covers_new_work_in_full() {
        let p = crate::plan::workload::generate(20, 8, 1).problem();
        let first = plan(&p, default_budget(p.ops.len()), 0);
        // The same work, with every duration a little off: the repaired plan is valid and as good as planning anew.
        let mut moved = p.clone();
        for (k, o) in moved.ops.iter_mut().enumerate() {
            o.duration *= if k % 2 == 0 { 1.1 } else { 0.9 };
        }
        let previous: Vec<Option<f64>> = first.start.iter().map(|&s| Some(s)).collect();
        let warm = replan(&moved, &previous, default_budget(p.ops.len()), 1);
        valid(&moved, &warm);
        let cold = plan(&moved, default_budget(p.ops.len()), 1);
        assert!(warm.makespan <= cold.makespan * 1.02, "warm {} against cold {}", warm.makespan, cold.makespan);
        assert!(warm.evaluations < cold.evaluations, "a warm replan is the cheaper search");
        // An operation the previous plan did not cover means new work: a full plan.
        let mut partial = previous.clone();
        partial[3] = None;
        let full = replan(&moved, &partial, default_budget(p.ops.len()), 1);
        valid(&moved, &full);
        assert_eq!(full.evaluations, cold.evaluations);
    }

    #[test]
    fn maximum_waits_are_met_when_they_can_be() {
        // Job 0: a long heat then a read that must follow within 1 s; job 1 wants the reader for 20 s.
        let mut ops = vec![op(0, 30.0, 0, &[]), op(0, 2.0, 1, &[0]), op(1, 20.0, 1, &[])];
        ops[1].max_wait = Some(1.0);
        ops[2].release = 25.0;
        let p = Problem { resources: 2, available: vec![], ops };
        let plan = plan(&p, 30, 1);
        valid(&p, &plan);
        assert_eq!(plan.lateness, 0.0, "{plan:?}");
    }
}
