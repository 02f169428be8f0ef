//! Space-filling designs: Latin hypercubes, and the emptiest point once a design is used up.
//!
//! A Latin hypercube of `n` points cuts every dimension into `n` equal slices and puts exactly one point in each
//! slice of each dimension, so every parameter's range is covered evenly whatever the others do. Of the many
//! such designs, the one whose closest pair of points is farthest apart (maximin) also covers the space as a
//! whole; [`latin_hypercube`] draws several, keeps the best by the Morris–Mitchell criterion, and improves it by
//! swapping coordinates between points. When more points are wanted than the design holds,
//! the proposer takes the candidate farthest from everything already measured or in flight.
//!
//! The work is bounded (a few million distance computations per design), so a design for a budget of thousands
//! of experiments is still produced quickly: it is then a plain Latin hypercube, without the maximin search.

use rand::Rng;
use rand::seq::SliceRandom;
use rand_xoshiro::Xoshiro256PlusPlus;

use super::{
    History, MIN_DISTANCE, Observation, Point, Proposal, Proposer, distance2, plain_proposal, rng, short, too_close,
    uniform_point,
};
use crate::space::Space;

/// About how many coordinate operations building one design may take.
const WORK: usize = 4_000_000;
/// The exponent of the Morris–Mitchell criterion; large values approach pure maximin.
const PHI_P: f64 = 10.0;
/// How many random candidates [`maximin_point`] considers.
pub(crate) const MAXIMIN_POOL: usize = 1024;

/// A maximin Latin hypercube of `n` points in the unit cube of dimension `d`, from `rng`.
pub fn latin_hypercube(n: usize, d: usize, rng: &mut Xoshiro256PlusPlus) -> Vec<Vec<f64>> {
    if n == 0 {
        return Vec::new();
    }
    let pair_cost = (n * n * d.max(1)).max(1);
    if pair_cost > WORK {
        return random_lhs(n, d, rng);
    }
    let tries = (WORK / pair_cost).clamp(1, 32);
    let mut best = random_lhs(n, d, rng);
    let mut best_phi = phi(&best);
    for _ in 1..tries {
        let design = random_lhs(n, d, rng);
        let p = phi(&design);
        if p < best_phi {
            best = design;
            best_phi = p;
        }
    }
    if n >= 3 && d >= 1 {
        improve_by_swaps(&mut best, rng);
    }
    best
}

/// One random Latin hypercube: a random permutation of the slices per dimension, a random position in each slice.
fn random_lhs(n: usize, d: usize, rng: &mut Xoshiro256PlusPlus) -> Vec<Vec<f64>> {
    let mut design = vec![vec![0.0; d]; n];
    let mut slices: Vec<usize> = (0..n).collect();
    for j in 0..d {
        slices.shuffle(rng);
        for (row, slice) in design.iter_mut().zip(&slices) {
            row[j] = (*slice as f64 + rng.gen_range(0.0..1.0)) / n as f64;
        }
    }
    design
}

/// The contribution of one pair of points to the Morris–Mitchell criterion, from their squared distance.
fn pair_term(d2: f64) -> f64 {
    d2.max(1e-12).powf(-PHI_P / 2.0)
}

/// The Morris–Mitchell criterion without its final root: smaller means the closest pairs are farther apart.
fn phi(design: &[Vec<f64>]) -> f64 {
    let mut sum = 0.0;
    for (i, a) in design.iter().enumerate() {
        for b in &design[i + 1..] {
            sum += pair_term(distance2(a, b));
        }
    }
    sum
}

/// Greedy improvement: swap one coordinate between two points whenever that lowers the criterion. Swaps keep the
/// design a Latin hypercube.
fn improve_by_swaps(design: &mut [Vec<f64>], rng: &mut Xoshiro256PlusPlus) {
    let (n, d) = (design.len(), design[0].len());
    let iterations = (WORK / (2 * n * d)).min(2000);
    for _ in 0..iterations {
        let a = rng.gen_range(0..n);
        let b = rng.gen_range(0..n);
        let j = rng.gen_range(0..d);
        if a == b {
            continue;
        }
        let before = terms_of(design, a, b);
        swap_coordinate(design, a, b, j);
        let after = terms_of(design, a, b);
        if after >= before {
            swap_coordinate(design, a, b, j);
        }
    }
}

/// The criterion's terms for every pair that involves point `a` or point `b`.
fn terms_of(design: &[Vec<f64>], a: usize, b: usize) -> f64 {
    let mut sum = 0.0;
    for (i, p) in design.iter().enumerate() {
        if i != a {
            sum += pair_term(distance2(&design[a], p));
        }
        if i != a && i != b {
            sum += pair_term(distance2(&design[b], p));
        }
    }
    sum
}

fn swap_coordinate(design: &mut [Vec<f64>], a: usize, b: usize, j: usize) {
    let t = design[a][j];
    design[a][j] = design[b][j];
    design[b][j] = t;
}

/// The candidate farthest from every point of `taken`, among [`MAXIMIN_POOL`] uniform ones, with its distance.
/// `None` when even the best candidate is within [`MIN_DISTANCE`] of a taken point.
pub(crate) fn maximin_point(
    space: &Space,
    taken: &[Vec<f64>],
    rng: &mut Xoshiro256PlusPlus,
) -> Option<(Vec<f64>, Point, f64)> {
    let d = space.len();
    let mut best: Option<(Vec<f64>, f64)> = None;
    for _ in 0..MAXIMIN_POOL {
        let (u, _) = space.place(&uniform_point(rng, d));
        let nearest = taken.iter().map(|t| distance2(&u, t)).fold(f64::INFINITY, f64::min);
        if best.as_ref().is_none_or(|(_, b)| nearest > *b) {
            best = Some((u, nearest));
        }
    }
    let (u, nearest) = best?;
    if nearest < MIN_DISTANCE * MIN_DISTANCE || too_close(&u, taken) {
        return None;
    }
    let (unit, point) = space.place(&u);
    Some((unit, point, nearest.sqrt()))
}

/// The sentence explaining a maximin point.
pub(crate) fn maximin_reason(distance: f64) -> String {
    if distance.is_finite() {
        format!(
            "The emptiest spot found: {} (unit-cube distance) from the nearest measured or pending point, the best of {MAXIMIN_POOL} random candidates.",
            short(distance)
        )
    } else {
        format!(
            "Nothing has been measured yet, so any point is as empty as another; this one is the first of {MAXIMIN_POOL} random candidates."
        )
    }
}

/// Proposes a Latin hypercube spread over the whole budget, handed out in order, then the emptiest points.
///
/// With a design as large as the budget, any prefix of the campaign has covered the space about as evenly as
/// the number of experiments allows, whatever batches the controller asks for.
#[derive(Debug, Clone)]
pub struct SpaceFillingProposer {
    history: History,
    rng: Xoshiro256PlusPlus,
    design: Vec<Vec<f64>>,
    next: usize,
}

impl SpaceFillingProposer {
    /// A space-filling proposer over `space` whose Latin hypercube has `design_size` points, seeded with `seed`.
    pub fn new(space: Space, design_size: usize, seed: u64) -> Self {
        let mut rng = rng(seed);
        let design = latin_hypercube(design_size, space.len(), &mut rng);
        SpaceFillingProposer { history: History::new(space), rng, design, next: 0 }
    }
}

impl Proposer for SpaceFillingProposer {
    fn name(&self) -> &str {
        "space-filling"
    }

    fn tell(&mut self, observation: Observation) {
        self.history.tell(observation);
    }

    fn ask(&mut self, n: usize, pending: &[Point]) -> Vec<Proposal> {
        let mut taken = self.history.taken(pending);
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            if let Some(u) = self.design.get(self.next) {
                let index = self.next;
                self.next += 1;
                let (unit, point) = self.history.space.place(u);
                // A design point already measured or in flight (after a restart, say) has been handed out before.
                if too_close(&unit, &taken) {
                    continue;
                }
                taken.push(unit);
                out.push(plain_proposal(point, "space-filling (LHS)", design_reason(index, self.design.len())));
            } else {
                let Some((unit, point, distance)) = maximin_point(&self.history.space, &taken, &mut self.rng) else {
                    break;
                };
                taken.push(unit);
                out.push(plain_proposal(point, "space-filling (maximin)", maximin_reason(distance)));
            }
        }
        out
    }
}

/// The sentence explaining a point of a Latin hypercube design.
pub(crate) fn design_reason(index: usize, size: usize) -> String {
    format!(
        "Point {} of a {size}-point Latin hypercube design, which spreads experiments evenly over every parameter's range.",
        index + 1
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn min_distance(design: &[Vec<f64>]) -> f64 {
        let mut m = f64::INFINITY;
        for (i, a) in design.iter().enumerate() {
            for b in &design[i + 1..] {
                m = m.min(distance2(a, b).sqrt());
            }
        }
        m
    }

    #[test]
    fn a_latin_hypercube_has_one_point_per_slice_of_every_dimension() {
        let design = latin_hypercube(10, 3, &mut rng(7));
        assert_eq!(design.len(), 10);
        for j in 0..3 {
            let mut slices: Vec<usize> = design.iter().map(|p| (p[j] * 10.0).floor() as usize).collect();
            slices.sort_unstable();
            assert_eq!(slices, (0..10).collect::<Vec<_>>());
        }
    }

    #[test]
    fn the_maximin_search_spreads_points_better_than_one_random_design() {
        let mut r = rng(3);
        let plain: f64 = (0..20).map(|_| min_distance(&random_lhs(12, 2, &mut r))).sum::<f64>() / 20.0;
        let optimised = min_distance(&latin_hypercube(12, 2, &mut rng(3)));
        assert!(optimised > plain, "{optimised} <= {plain}");
    }

    #[test]
    fn small_and_empty_designs_are_fine() {
        assert!(latin_hypercube(0, 3, &mut rng(1)).is_empty());
        assert_eq!(latin_hypercube(1, 2, &mut rng(1)).len(), 1);
        assert_eq!(latin_hypercube(2, 0, &mut rng(1)), vec![Vec::<f64>::new(), Vec::new()]);
        assert_eq!(latin_hypercube(3000, 2, &mut rng(1)).len(), 3000);
    }

    #[test]
    fn the_same_seed_gives_the_same_design() {
        assert_eq!(latin_hypercube(8, 3, &mut rng(11)), latin_hypercube(8, 3, &mut rng(11)));
        assert_ne!(latin_hypercube(8, 3, &mut rng(11)), latin_hypercube(8, 3, &mut rng(12)));
    }
}
