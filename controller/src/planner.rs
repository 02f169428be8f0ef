//! The planner: a schedule for known work, computed fast enough to redo whenever reality changes.
//!
//! The scheduling problem is a flexible job shop with precedence DAGs: each operation belongs to a job (an
//! experiment), has an expected duration, runs on one of a set of candidate resources (instruments), may start only
//! after its predecessors end (plus an optional minimum wait), should start within a maximum wait of them, and never
//! shares a resource. [`plan`] builds active schedules with the Giffler–Thompson algorithm driven by priority keys,
//! starting from several classic rules (longest remaining path, most remaining work, bottleneck-weighted paths) and
//! improving the keys by an iterated local search within a fixed evaluation budget, so the result is deterministic
//! for a given seed and its cost is bounded. Operations already running are fixed in place, so the same code replans
//! in the middle of a run.
//!
//! The planner is pure: it knows nothing of instruments, the ECS or time beyond the numbers it is given. The
//! scheduler (`crate::schedule`) turns its per-resource sequences into dispatch decisions.

use std::collections::VecDeque;

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
}

/// Builds the active schedule the priority `keys` give (larger key first) with the Giffler–Thompson algorithm.
pub fn schedule_with(p: &Problem, keys: &[f64]) -> Plan {
    let shape = Shape { succ: successors(p), order: topological(p) };
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

    let finish = |i: usize,
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
        let end = s + p.ops[i].duration;
        free[r] = free[r].max(end);
        for &q in &shape.succ[i] {
            preds_end[q] = preds_end[q].max(end);
            est[q] = est[q].max(end + p.ops[q].min_wait);
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
    while done < n {
        if ready.is_empty() {
            // Only possible with a cycle, which validated protocols never have; stop rather than spin.
            break;
        }
        let mut best_c = f64::INFINITY;
        let mut best_r = usize::MAX;
        for &i in &ready {
            let op = &p.ops[i];
            for &r in &op.candidates {
                let c = est[i].max(free[r]) + op.duration;
                if c < best_c {
                    best_c = c;
                    best_r = r;
                }
            }
        }
        let mut chosen = usize::MAX;
        let mut chosen_key = f64::NEG_INFINITY;
        for &i in &ready {
            let op = &p.ops[i];
            // The conflict set: operations on that resource that could start before the earliest completion, and
            // the operation that completes then, which starts exactly then if it takes no time at all.
            let start = est[i].max(free[best_r]);
            if op.candidates.contains(&best_r) && (start < best_c || start + op.duration <= best_c) {
                let k = keys[i];
                if k > chosen_key || (k == chosen_key && i < chosen) {
                    chosen = i;
                    chosen_key = k;
                }
            }
        }
        let pos = ready.iter().position(|&i| i == chosen).expect("chosen from ready");
        ready.swap_remove(pos);
        let s = est[chosen].max(free[best_r]);
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
        makespan = makespan.max(start[i] + p.ops[i].duration);
        if let Some(w) = p.ops[i].max_wait
            && preds_end[i].is_finite()
        {
            lateness += (start[i] - preds_end[i] - w).max(0.0);
        }
    }
    let mut sequences = vec![Vec::new(); p.resources];
    for i in 0..n {
        if resource[i] != usize::MAX {
            sequences[resource[i]].push(i);
        }
    }
    for s in &mut sequences {
        s.sort_by(|&a, &b| start[a].partial_cmp(&start[b]).unwrap_or(std::cmp::Ordering::Equal).then(a.cmp(&b)));
    }
    Plan { start, resource, makespan, lateness, sequences, evaluations: 1 }
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

/// Finds a good schedule: the best of the classic rules, improved by an iterated local search on the priority keys
/// that evaluates at most `budget` schedules. Deterministic for a given `seed`.
pub fn plan(p: &Problem, budget: usize, seed: u64) -> Plan {
    let n = p.ops.len();
    let shape = Shape { succ: successors(p), order: topological(p) };
    if n == 0 {
        return Plan {
            start: Vec::new(),
            resource: Vec::new(),
            makespan: 0.0,
            lateness: 0.0,
            sequences: vec![Vec::new(); p.resources],
            evaluations: 0,
        };
    }
    let mut evaluations = 0;
    let mut best: Option<(Vec<f64>, Plan)> = None;
    for keys in rules(p, &shape) {
        let plan = evaluate(p, &shape, &keys);
        evaluations += 1;
        if best.as_ref().is_none_or(|(_, b)| cost(&plan) < cost(b)) {
            best = Some((keys, plan));
        }
    }
    let (mut best_keys, mut best_plan) = best.expect("at least one rule");
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
    // On problems where every operation has one resource, the machine sequences can be improved directly.
    if p.ops.iter().all(|o| o.candidates.len() == 1 && o.max_wait.is_none()) {
        let extra = budget * 4;
        if let Some(better) = tabu(p, &shape, &best_plan, extra) {
            evaluations += better.evaluations;
            best_plan = better;
        }
    }
    best_plan.evaluations = evaluations;
    best_plan
}

/// Longest-path start times for fixed machine sequences; `None` if the sequences and precedences form a cycle.
fn semi_active(p: &Problem, shape: &Shape, seqs: &[Vec<usize>], scratch: &mut Scratch) -> Option<f64> {
    let n = p.ops.len();
    let Scratch { machine_next, machine_prev, indegree, start, queue } = scratch;
    machine_next.iter_mut().for_each(|x| *x = usize::MAX);
    machine_prev.iter_mut().for_each(|x| *x = usize::MAX);
    for seq in seqs {
        for w in seq.windows(2) {
            machine_next[w[0]] = w[1];
            machine_prev[w[1]] = w[0];
        }
    }
    for i in 0..n {
        indegree[i] = p.ops[i].preds.len() + usize::from(machine_prev[i] != usize::MAX);
        start[i] = p.ops[i].fixed.map_or(p.ops[i].release, |f| f.1);
        let r = p.ops[i].candidates[0];
        if machine_prev[i] == usize::MAX {
            start[i] = start[i].max(p.available.get(r).copied().unwrap_or(0.0));
        }
    }
    queue.clear();
    queue.extend((0..n).filter(|&i| indegree[i] == 0));
    let mut head = 0;
    let mut makespan = 0.0f64;
    while head < queue.len() {
        let i = queue[head];
        head += 1;
        let end = start[i] + p.ops[i].duration;
        makespan = makespan.max(end);
        for &s in &shape.succ[i] {
            start[s] = start[s].max(end + p.ops[s].min_wait);
            indegree[s] -= 1;
            if indegree[s] == 0 {
                queue.push(s);
            }
        }
        let m = machine_next[i];
        if m != usize::MAX {
            start[m] = start[m].max(end);
            indegree[m] -= 1;
            if indegree[m] == 0 {
                queue.push(m);
            }
        }
    }
    (queue.len() == n).then_some(makespan)
}

struct Scratch {
    machine_next: Vec<usize>,
    machine_prev: Vec<usize>,
    indegree: Vec<usize>,
    start: Vec<f64>,
    queue: Vec<usize>,
}

/// Improves a plan's machine sequences by tabu search over swaps of adjacent operations at the ends of critical
/// blocks (the Nowicki–Smutnicki neighbourhood), evaluating at most `budget` sequences. For problems where every
/// operation has a single resource.
fn tabu(p: &Problem, shape: &Shape, plan: &Plan, budget: usize) -> Option<Plan> {
    let n = p.ops.len();
    let mut scratch = Scratch {
        machine_next: vec![usize::MAX; n],
        machine_prev: vec![usize::MAX; n],
        indegree: vec![0; n],
        start: vec![0.0; n],
        queue: Vec::with_capacity(n),
    };
    // Running operations stay first on their resources.
    let movable = |i: usize| p.ops[i].fixed.is_none();
    let mut seqs = plan.sequences.clone();
    let mut current = semi_active(p, shape, &seqs, &mut scratch)?;
    let mut best = (current, seqs.clone());
    let mut tabu_list: VecDeque<(usize, usize)> = VecDeque::new();
    let tenure = 8usize;
    let mut evaluations = 0;
    let mut since_best = 0;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(plan.evaluations as u64);
    while evaluations < budget {
        if since_best >= 25 {
            // Stuck: restart from the best sequences shaken by a few random swaps of neighbours on one resource.
            seqs = best.1.clone();
            // Every kick counts against the budget, so a problem with nothing to swap ends the search.
            evaluations += 1;
            for _ in 0..rng.gen_range(2..6) {
                let r = rng.gen_range(0..seqs.len());
                if seqs[r].len() < 2 {
                    continue;
                }
                let at = rng.gen_range(0..seqs[r].len() - 1);
                let (a, b) = (seqs[r][at], seqs[r][at + 1]);
                if !movable(a) || !movable(b) {
                    continue;
                }
                seqs[r].swap(at, at + 1);
                evaluations += 1;
                if semi_active(p, shape, &seqs, &mut scratch).is_none() {
                    seqs[r].swap(at, at + 1);
                }
            }
            tabu_list.clear();
            since_best = 0;
            continue;
        }
        // The critical path of the current sequences, as (resource, position) pairs.
        semi_active(p, shape, &seqs, &mut scratch)?;
        let start = scratch.start.clone();
        let end = |i: usize| start[i] + p.ops[i].duration;
        let mut i = (0..n).max_by(|&a, &b| end(a).total_cmp(&end(b)))?;
        let mut path = vec![i];
        loop {
            let s = start[i];
            let mp = scratch.machine_prev[i];
            let next = if mp != usize::MAX && (end(mp) - s).abs() < 1e-9 {
                Some(mp)
            } else {
                p.ops[i].preds.iter().copied().find(|&q| (end(q) + p.ops[i].min_wait - s).abs() < 1e-9)
            };
            match next {
                Some(q) => {
                    i = q;
                    path.push(q);
                }
                None => break,
            }
        }
        path.reverse();
        // Blocks: runs of consecutive path operations on one resource; candidate swaps at each block's ends.
        let mut moves: Vec<(usize, usize)> = Vec::new();
        let mut k = 0;
        while k < path.len() {
            let r = p.ops[path[k]].candidates[0];
            let mut j = k;
            while j + 1 < path.len()
                && p.ops[path[j + 1]].candidates[0] == r
                && scratch.machine_prev[path[j + 1]] == path[j]
            {
                j += 1;
            }
            // Every adjacent pair of the block: with precedence DAGs (not chains) some swaps close a cycle, so the
            // block's ends alone (the classic neighbourhood) can leave no feasible move.
            for q in k..j {
                moves.push((path[q], path[q + 1]));
            }
            k = j + 1;
        }
        moves.retain(|&(a, b)| movable(a) && movable(b));
        if moves.is_empty() {
            since_best = usize::MAX / 2;
            continue;
        }
        let mut chosen: Option<((usize, usize), f64)> = None;
        for &(a, b) in &moves {
            let r = p.ops[a].candidates[0];
            let seq = &mut seqs[r];
            let pa = seq.iter().position(|&x| x == a)?;
            seq.swap(pa, pa + 1);
            let value = semi_active(p, shape, &seqs, &mut scratch);
            seqs[r].swap(pa, pa + 1);
            evaluations += 1;
            let Some(value) = value else { continue };
            let forbidden = tabu_list.contains(&(b, a));
            if (!forbidden || value < best.0 - 1e-9) && chosen.is_none_or(|(_, v)| value < v) {
                chosen = Some(((a, b), value));
            }
        }
        let Some(((a, b), value)) = chosen else {
            since_best = usize::MAX / 2;
            continue;
        };
        let r = p.ops[a].candidates[0];
        let pa = seqs[r].iter().position(|&x| x == a)?;
        seqs[r].swap(pa, pa + 1);
        current = value;
        tabu_list.push_back((a, b));
        if tabu_list.len() > tenure {
            tabu_list.pop_front();
        }
        if current < best.0 - 1e-9 {
            best = (current, seqs.clone());
            since_best = 0;
        } else {
            since_best += 1;
        }
    }
    let _ = current;
    if best.0 >= plan.makespan - 1e-9 {
        return None;
    }
    semi_active(p, shape, &best.1, &mut scratch)?;
    let mut sequences = best.1;
    let start = scratch.start.clone();
    for s in &mut sequences {
        s.sort_by(|&a, &b| start[a].total_cmp(&start[b]).then(a.cmp(&b)));
    }
    let resource = (0..n).map(|i| p.ops[i].candidates[0]).collect();
    Some(Plan { start, resource, makespan: best.0, lateness: 0.0, sequences, evaluations })
}

/// An operation on the critical chain of `plan`: walk back from the operation that ends last through whichever
/// constraint (a predecessor or the previous operation on the resource) determined each start.
fn pick_critical(p: &Problem, plan: &Plan, rng: &mut Xoshiro256PlusPlus) -> usize {
    let n = p.ops.len();
    let mut i = (0..n)
        .max_by(|&a, &b| plan.end(p, a).partial_cmp(&plan.end(p, b)).unwrap_or(std::cmp::Ordering::Equal))
        .unwrap_or(0);
    let mut chain = vec![i];
    for _ in 0..n {
        let s = plan.start[i];
        let by_pred = p.ops[i].preds.iter().copied().find(|&q| (plan.end(p, q) + p.ops[i].min_wait - s).abs() < 1e-9);
        let by_res = plan.sequences[plan.resource[i]]
            .iter()
            .copied()
            .take_while(|&q| q != i)
            .filter(|&q| (plan.end(p, q) - s).abs() < 1e-9)
            .last();
        match (by_pred, by_res) {
            (_, Some(q)) if rng.gen_bool(0.5) => i = q,
            (Some(q), _) => i = q,
            (None, Some(q)) => i = q,
            (None, None) => break,
        }
        chain.push(i);
    }
    chain[rng.gen_range(0..chain.len())]
}

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
