//! The tabu search that improves a plan without maximum waits: operations of critical blocks reordered on their
//! resources.
//!
//! A move swaps or shifts an operation within a block of consecutive operations on one resource that lies on a
//! critical path; moves are ranked by an estimate from the longest-path heads and tails of the current sequences, so
//! an iteration costs a few passes over the operations rather than a full evaluation per candidate move. A tabu list
//! keeps the search from undoing its last moves, and it runs a fixed number of iterations, so the result is
//! deterministic for a given seed.

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::*;

/// The tabu search's view of one schedule: each operation's resource and its neighbours in that resource's sequence,
/// with the longest-path heads and tails those sequences give.
struct Sequencing {
    resource: Vec<usize>,
    prev: Vec<usize>,
    next: Vec<usize>,
    /// The earliest start of each operation (longest path from the start).
    head: Vec<f64>,
    /// The longest path from each operation's end to the end of the schedule.
    tail: Vec<f64>,
    /// The start each operation's predecessors alone allow, and the path its successors alone make after it.
    from_preds: Vec<f64>,
    to_succs: Vec<f64>,
    /// Scratch for the topological order and in-degrees.
    order: Vec<usize>,
    indegree: Vec<usize>,
}

impl Sequencing {
    fn from_plan(p: &Problem, plan: &Plan) -> Self {
        let n = p.ops.len();
        let mut s = Sequencing {
            resource: plan.resource.clone(),
            prev: vec![NONE; n],
            next: vec![NONE; n],
            head: vec![0.0; n],
            tail: vec![0.0; n],
            from_preds: vec![0.0; n],
            to_succs: vec![0.0; n],
            order: Vec::with_capacity(n),
            indegree: vec![0; n],
        };
        for seq in &plan.sequences {
            for w in seq.windows(2) {
                s.next[w[0]] = w[1];
                s.prev[w[1]] = w[0];
            }
        }
        s
    }

    /// Recomputes heads and tails; returns the makespan, or `None` if the sequences and precedences form a cycle.
    fn evaluate(&mut self, p: &Problem, shape: &Shape) -> Option<f64> {
        let n = p.ops.len();
        self.order.clear();
        for i in 0..n {
            let op = &p.ops[i];
            self.indegree[i] = op.preds.len() + usize::from(self.prev[i] != NONE);
            let mut h = op.fixed.map_or(op.release, |f| f.1);
            self.from_preds[i] = h;
            if self.prev[i] == NONE {
                h = later(h, p.available.get(self.resource[i]).copied().unwrap_or(0.0));
            }
            self.head[i] = h;
            if self.indegree[i] == 0 {
                self.order.push(i);
            }
        }
        let mut k = 0;
        while k < self.order.len() {
            let i = self.order[k];
            k += 1;
            let end = self.head[i] + shape.duration[i];
            for &s in &shape.succ[i] {
                let after_pred = end + p.ops[s].min_wait;
                self.from_preds[s] = later(self.from_preds[s], after_pred);
                self.head[s] = later(self.head[s], after_pred);
                self.indegree[s] -= 1;
                if self.indegree[s] == 0 {
                    self.order.push(s);
                }
            }
            let m = self.next[i];
            if m != NONE {
                self.head[m] = later(self.head[m], end);
                self.indegree[m] -= 1;
                if self.indegree[m] == 0 {
                    self.order.push(m);
                }
            }
        }
        if self.order.len() < n {
            return None;
        }
        let mut makespan = 0.0f64;
        for &i in self.order.iter().rev() {
            let mut t = 0.0f64;
            for &s in &shape.succ[i] {
                t = later(t, p.ops[s].min_wait + p.ops[s].duration + self.tail[s]);
            }
            self.to_succs[i] = t;
            let m = self.next[i];
            if m != NONE {
                t = later(t, p.ops[m].duration + self.tail[m]);
            }
            self.tail[i] = t;
            makespan = later(makespan, self.head[i] + p.ops[i].duration);
        }
        Some(makespan)
    }

    /// A critical path of the last evaluation, from its first operation to its last: each operation's start is set
    /// by the end of the one before it. The previous operation on the resource is preferred where both bind, so the
    /// path runs in long blocks on one resource, which is where the useful moves are.
    fn critical_path(&self, p: &Problem, makespan: f64, path: &mut Vec<usize>) {
        path.clear();
        let n = p.ops.len();
        let end = |i: usize| self.head[i] + p.ops[i].duration;
        let Some(mut i) = (0..n).find(|&i| (end(i) - makespan).abs() < 1e-9) else { return };
        path.push(i);
        loop {
            let s = self.head[i];
            let m = self.prev[i];
            let next = if m != NONE && (end(m) - s).abs() < 1e-9 {
                Some(m)
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
    }

    /// The operations a move rearranges, in their new order, and the resource neighbours around them.
    fn segment(&self, m: Move, out: &mut Vec<usize>) -> (usize, usize) {
        out.clear();
        let Move { op: u, to: v, forward } = m;
        if forward {
            let mut x = self.next[u];
            loop {
                out.push(x);
                if x == v {
                    break;
                }
                x = self.next[x];
            }
            out.push(u);
            (self.prev[u], self.next[v])
        } else {
            out.push(u);
            let mut x = v;
            while x != u {
                out.push(x);
                x = self.next[x];
            }
            (self.prev[v], self.next[u])
        }
    }

    /// Estimates the makespan after a move from the heads and tails around it: the longest path through any
    /// operation it rearranges, recomputed along the new order (after Balas and Vazacopoulos). `seg` is the move's
    /// [`segment`](Self::segment), `ends` its neighbours.
    fn estimate(&self, p: &Problem, m: Move, seg: &[usize], ends: (usize, usize), heads: &mut Vec<f64>) -> f64 {
        let (a, b) = ends;
        heads.clear();
        let mut free = if a == NONE {
            p.available.get(self.resource[m.op]).copied().unwrap_or(0.0)
        } else {
            self.head[a] + p.ops[a].duration
        };
        for &x in seg {
            let h = later(self.from_preds[x], free);
            heads.push(h);
            free = h + p.ops[x].duration;
        }
        let mut after = if b == NONE { 0.0 } else { p.ops[b].duration + self.tail[b] };
        let mut longest = 0.0f64;
        for (k, &x) in seg.iter().enumerate().rev() {
            let t = later(self.to_succs[x], after);
            longest = later(longest, heads[k] + p.ops[x].duration + t);
            after = p.ops[x].duration + t;
        }
        longest
    }

    /// Makes a move: takes the operation out of its sequence and puts it back after (or before) its target.
    fn apply(&mut self, m: Move) {
        let u = m.op;
        let (a, b) = (self.prev[u], self.next[u]);
        if a != NONE {
            self.next[a] = b;
        }
        if b != NONE {
            self.prev[b] = a;
        }
        let (before, after) = if m.forward { (m.to, self.next[m.to]) } else { (self.prev[m.to], m.to) };
        self.prev[u] = before;
        self.next[u] = after;
        if before != NONE {
            self.next[before] = u;
        }
        if after != NONE {
            self.prev[after] = u;
        }
    }
}

/// A move of the tabu search: operation `op` goes right after (`forward`) or right before `to`, on its resource.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Move {
    op: usize,
    to: usize,
    forward: bool,
}

/// How many iterations [`tabu`] runs in a full plan. Each costs a few passes over the operations, so a fixed count
/// keeps the search's time per operation about constant (a few microseconds).
pub(super) const TABU_ITERATIONS: usize = 100;

/// The largest problem the tabu search takes on (its memory of recent moves is a table over pairs of operations).
pub(super) const TABU_MAX_OPS: usize = 2_000;

/// Improves a plan's resource sequences, keeping each operation on the resource the plan gave it, by tabu search:
/// each iteration moves one operation of a critical block to the front or the back of its block, or the block's
/// first or last operation into it (the neighbourhood of Zhang et al.), choosing the move with the best estimated
/// makespan; reversing a recent move's order is tabu unless it beats the best. When the search stalls it restarts
/// from the best sequences. Runs `iterations` moves. Operations already running stay first on their resources.
/// Returns `None` if it finds nothing better. Adds the operations it touched to `work` either way.
pub(super) fn tabu(
    p: &Problem,
    shape: &Shape,
    plan: &Plan,
    iterations: usize,
    seed: u64,
    work: &mut u64,
) -> Option<Plan> {
    let n = p.ops.len();
    if n > TABU_MAX_OPS {
        return None;
    }
    // The table of tabu orders is cleared a word at a time, eight entries per touch.
    let table = (n * n / 8) as u64;
    *work += table;
    let movable = |i: usize| p.ops[i].fixed.is_none();
    let mut seq = Sequencing::from_plan(p, plan);
    let mut current = seq.evaluate(p, shape)?;
    let mut best = (current, seq.prev.clone(), seq.next.clone());
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    // tabu[x * n + y] = the iteration until which putting x before y again is tabu.
    let mut tabu = vec![0u32; n * n];
    let mut path = Vec::with_capacity(n);
    let mut seg = Vec::new();
    let mut heads = Vec::new();
    let mut moves: Vec<(f64, Move)> = Vec::new();
    let mut since_best = 0usize;
    let patience = 30 + n / 4;
    for it in 0..iterations {
        let now = it as u32;
        if since_best >= patience {
            // Stalled: go back to the best sequences and shake them with a few random swaps on its critical path.
            seq.prev.clone_from(&best.1);
            seq.next.clone_from(&best.2);
            current = seq.evaluate(p, shape)?;
            for _ in 0..rng.gen_range(2..5) {
                seq.critical_path(p, current, &mut path);
                let pairs: Vec<Move> = path
                    .windows(2)
                    .filter(|w| seq.next[w[0]] == w[1] && movable(w[0]) && movable(w[1]))
                    .map(|w| Move { op: w[0], to: w[1], forward: true })
                    .collect();
                if pairs.is_empty() {
                    break;
                }
                let m = pairs[rng.gen_range(0..pairs.len())];
                seq.apply(m);
                match seq.evaluate(p, shape) {
                    Some(c) => current = c,
                    None => {
                        seq.apply(Move { op: m.op, to: m.to, forward: false });
                        current = seq.evaluate(p, shape)?;
                    }
                }
            }
            tabu.iter_mut().for_each(|t| *t = 0);
            *work += table;
            since_best = 0;
            continue;
        }
        seq.critical_path(p, current, &mut path);
        // The critical path and the evaluation of the chosen move each pass over the operations.
        *work += 2 * n as u64;
        moves.clear();
        // Blocks: runs of path operations one after another on one resource.
        let mut k = 0;
        while k < path.len() {
            let mut j = k;
            while j + 1 < path.len() && seq.next[path[j]] == path[j + 1] {
                j += 1;
            }
            if j > k {
                let block = &path[k..=j];
                let (first, last) = (k == 0, j + 1 == path.len());
                let (b0, bn) = (block[0], block[block.len() - 1]);
                for (x, &op) in block.iter().enumerate() {
                    if x > 0 && !first {
                        moves.push((0.0, Move { op, to: b0, forward: false }));
                    }
                    if x + 1 < block.len() && !last {
                        moves.push((0.0, Move { op, to: bn, forward: true }));
                    }
                    if x > 1 {
                        moves.push((0.0, Move { op: b0, to: op, forward: true }));
                    }
                    if x + 2 < block.len() {
                        moves.push((0.0, Move { op: bn, to: op, forward: false }));
                    }
                }
                if first && last {
                    moves.push((0.0, Move { op: b0, to: block[1], forward: true }));
                }
            }
            k = j + 1;
        }
        let mut chosen = None;
        let mut oldest: Option<(Move, u32)> = None;
        for entry in &mut moves {
            let m = entry.1;
            let ends = seq.segment(m, &mut seg);
            // Every operation the move passes, and whether the move breaks a direct precedence (a sure cycle).
            let passed: &[usize] = if m.forward { &seg[..seg.len() - 1] } else { &seg[1..] };
            let breaks = if m.forward {
                passed.iter().any(|&w| p.ops[w].preds.contains(&m.op))
            } else {
                passed.iter().any(|&w| p.ops[m.op].preds.contains(&w))
            };
            if !movable(m.op) || passed.iter().any(|&w| !movable(w)) || breaks {
                entry.0 = f64::INFINITY;
                continue;
            }
            // Restoring an order a recent move broke is tabu: the operation back before (forward) or after
            // (backward) any operation it passes.
            let until = passed
                .iter()
                .map(|&w| if m.forward { tabu[w * n + m.op] } else { tabu[m.op * n + w] })
                .max()
                .unwrap_or(0);
            // A tiny random share breaks ties between equal estimates, so the search does not walk the same plateau
            // in the same order each time.
            let estimate = seq.estimate(p, m, &seg, ends, &mut heads) + rng.gen_range(0.0..1e-6);
            *work += seg.len() as u64;
            entry.0 = estimate;
            if until > now && estimate >= best.0 - 1e-9 {
                if oldest.is_none_or(|(_, t)| until < t) {
                    oldest = Some((m, until));
                }
                entry.0 = f64::INFINITY;
            }
        }
        moves.retain(|e| e.0.is_finite());
        moves.sort_by(|x, y| x.0.total_cmp(&y.0));
        // The best allowed move whose result has no cycle; when every move is tabu, the one freed soonest, so the
        // search keeps moving.
        for &(_, m) in moves.iter().chain(oldest.map(|(m, _)| (0.0, m)).iter()).take(4) {
            seq.segment(m, &mut seg);
            let passed: Vec<usize> = if m.forward { seg[..seg.len() - 1].to_vec() } else { seg[1..].to_vec() };
            seq.apply(m);
            if let Some(c) = seq.evaluate(p, shape) {
                current = c;
                chosen = Some((m, passed));
                break;
            }
            // Undo: put the operation back where it was.
            let undo = if m.forward {
                Move { op: m.op, to: passed[0], forward: false }
            } else {
                Move { op: m.op, to: passed[passed.len() - 1], forward: true }
            };
            seq.apply(undo);
        }
        let Some((m, passed)) = chosen else {
            since_best = patience;
            continue;
        };
        // A short tenure: longer ones (6 or 10 plus) left small problems stuck with every useful move tabu.
        let tenure = now + 3 + rng.gen_range(0..(4 + n as u32 / 20));
        // Every order the move reversed is tabu to restore for a while. (Forbidding only the order next to the
        // operation left the search walking a plateau of equal makespans on `medium` for hundreds of iterations.)
        for &w in &passed {
            if m.forward {
                tabu[m.op * n + w] = tenure;
            } else {
                tabu[w * n + m.op] = tenure;
            }
        }
        if current < best.0 - 1e-9 {
            best = (current, seq.prev.clone(), seq.next.clone());
            since_best = 0;
        } else {
            since_best += 1;
        }
    }
    if best.0 >= plan.makespan - 1e-9 {
        return None;
    }
    seq.prev = best.1;
    seq.next = best.2;
    let makespan = seq.evaluate(p, shape)?;
    let start = seq.head.clone();
    // Each resource's sequence, read along its links from the operation with none before it.
    let mut sequences = vec![Vec::new(); p.resources];
    for first in (0..n).filter(|&i| seq.prev[i] == NONE) {
        let mut i = first;
        while i != NONE {
            sequences[seq.resource[i]].push(i);
            i = seq.next[i];
        }
    }
    Some(Plan { start, resource: seq.resource, makespan, lateness: 0.0, sequences, evaluations: iterations, work: 0 })
}

/// An operation on the critical chain of `plan`: walk back from the operation that ends last through whichever
/// constraint (a predecessor or the previous operation on the resource) determined each start.
pub(super) fn pick_critical(p: &Problem, plan: &Plan, rng: &mut Xoshiro256PlusPlus) -> usize {
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
