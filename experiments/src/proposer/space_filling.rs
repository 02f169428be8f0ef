//! Space-filling designs: Latin hypercubes, the Gaussian-process proposer's Sobol start, and the emptiest point once
//! a design is used up.
//!
//! A Latin hypercube of `n` points cuts every dimension into `n` equal slices and puts exactly one point in each
//! slice of each dimension, so every parameter's range is covered evenly whatever the others do. Of the many
//! such designs, the one whose closest pair of points is farthest apart (maximin) also covers the space as a
//! whole; [`latin_hypercube`] draws several, keeps the best by the Morris–Mitchell criterion, and improves it by
//! swapping coordinates between points. When more points are wanted than the design holds,
//! the proposer takes the candidate farthest from everything already measured or in flight. Designs live in the
//! unit cube and are mapped to allowed values ([`Space::from_cube`], then [`Space::repair`] onto the constraints);
//! over a finite pool, the design is drawn from the pool itself, spread by k-means++ weighting (`pool_design`).
//!
//! The work is bounded (a few million distance computations per design), so a design for a budget of thousands
//! of experiments is still produced quickly: it is then a plain Latin hypercube, without the maximin search.

use rand::seq::SliceRandom;
use rand::{Rng, RngCore};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::random::fits_batch;
use super::search::sobol;
use super::{History, Observation, Outcome, Point, Problem, Proposal, Proposer, distance2, rng, short, too_close};
use crate::space::Space;
use crate::stop::{StopReason, StopTracker};

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

/// The candidate farthest (in model features) from every point of `taken`, among [`MAXIMIN_POOL`] random feasible
/// ones, or among `pool` when given, with its distance. Candidates must agree with `shared` on the `frozen`
/// dimensions. `None` when no candidate is at least [`super::MIN_DISTANCE`] from every taken point.
pub(crate) fn maximin_point(
    space: &Space,
    taken: &[Vec<f64>],
    pool: Option<&[Vec<f64>]>,
    batch: (Option<&[f64]>, &[bool]),
    rng: &mut Xoshiro256PlusPlus,
) -> Option<(Vec<f64>, f64)> {
    let (shared, frozen) = batch;
    let taken_features: Vec<Vec<f64>> = taken.iter().map(|u| space.features(u)).collect();
    let candidates: Vec<Vec<f64>> = match pool {
        Some(pool) => pool.iter().filter(|u| fits_batch(u, shared, frozen)).cloned().collect(),
        None => (0..MAXIMIN_POOL)
            .filter_map(|_| {
                let mut u = space.random(rng);
                if let Some(s) = shared {
                    for (j, f) in frozen.iter().enumerate() {
                        if *f {
                            u[j] = s[j];
                        }
                    }
                }
                space.repair(&u, frozen)
            })
            .collect(),
    };
    // Ties (common in a categorical pool) go to a random candidate, not the first listed.
    let offset = if candidates.is_empty() { 0 } else { rng.gen_range(0..candidates.len()) };
    let mut best: Option<(usize, f64)> = None;
    for k in 0..candidates.len() {
        let i = (k + offset) % candidates.len();
        let u = &candidates[i];
        if too_close(u, taken) {
            continue;
        }
        let f = space.features(u);
        let nearest = taken_features.iter().map(|t| distance2(&f, t)).fold(f64::INFINITY, f64::min);
        if best.is_none_or(|(_, b)| nearest > b) {
            best = Some((i, nearest));
        }
    }
    let (i, nearest) = best?;
    Some((candidates[i].clone(), nearest.sqrt()))
}

/// The sentence explaining a maximin point.
pub(crate) fn maximin_reason(distance: f64, from_pool: bool) -> String {
    let among = if from_pool {
        "the untried points of the pool".to_owned()
    } else {
        format!("{MAXIMIN_POOL} random candidates")
    };
    if distance.is_finite() {
        format!(
            "The emptiest spot found: {} (feature distance) from the nearest measured or pending point, the best of {among}.",
            short(distance)
        )
    } else {
        format!("Nothing has been measured yet, so any point is as empty as another; this one was drawn from {among}.")
    }
}

/// The Gaussian-process proposer's start: `n` points of a scrambled Sobol sequence mapped to allowed values, or with
/// a pool, [`pool_design`]. Design points that cannot be made feasible are dropped.
///
/// Not the maximin Latin hypercube [`SpaceFillingProposer`] spreads its experiments with: from a Sobol start the
/// proposer reaches the learning benchmark's noisy ridge in 48 of 400 seeds against 20 from a Latin hypercube, the
/// mixed kinetics in 48 of 60 against 28, and the noisy Michalewicz in 33 of 100 against 23, with Branin and
/// Hartmann-6 no worse (BENCHMARKS.md, "Why the GP got stuck", point 9). A start is data for a model to fit rather
/// than a design to look at, and the likely reason is that a maximin design keeps every pair of points about equally
/// far apart, so nothing in it tells a short length scale from noise; a Sobol sequence is as even over each
/// parameter's range without pushing every pair apart (designs for estimating a covariance want some close pairs:
/// Zhu and Stein 2006).
pub(crate) fn sobol_design(
    space: &Space,
    pool: Option<&[Vec<f64>]>,
    n: usize,
    rng: &mut Xoshiro256PlusPlus,
) -> Vec<Vec<f64>> {
    if let Some(pool) = pool {
        return pool_design(space, pool, n, rng);
    }
    to_space(space, sobol(n, space.len(), rng.next_u32()))
}

/// A space-filling design of `n` points for `space`: a maximin Latin hypercube mapped to allowed values. Design
/// points that cannot be made feasible are dropped.
pub(crate) fn design(space: &Space, n: usize, rng: &mut Xoshiro256PlusPlus) -> Vec<Vec<f64>> {
    to_space(space, latin_hypercube(n, space.len(), rng))
}

/// Points of the unit cube mapped to allowed values of `space` and repaired onto its constraints; a point that
/// cannot be made feasible, or lands on one kept already, is dropped.
fn to_space(space: &Space, cube: Vec<Vec<f64>>) -> Vec<Vec<f64>> {
    let mut out: Vec<Vec<f64>> = Vec::with_capacity(cube.len());
    for c in cube {
        if let Some(u) = space.repair(&space.from_cube(&c), &[])
            && !too_close(&u, &out)
        {
            out.push(u);
        }
    }
    out
}

/// `n` members of `pool` drawn as k-means++ draws its seeds (Arthur and Vassilvitskii 2007): the first uniformly,
/// each next with probability proportional to its squared feature distance from the nearest one drawn so far.
///
/// A pool's farthest-point sequence, the obvious space-filling design, picks its extremes: over a table of
/// conditions, the corners (hottest and shortest, most and least concentrated), where yields are often near zero
/// and say little about the interior; a model fitted to them saw a flat landscape and settled on the first hill it
/// met (the learning benchmark's kinetics and ridge tables, BENCHMARKS.md). Weighting by squared distance still
/// spreads the design, but draws from where the pool's conditions are, as a uniform sample would, and never twice
/// from one spot.
pub(crate) fn pool_design(space: &Space, pool: &[Vec<f64>], n: usize, rng: &mut Xoshiro256PlusPlus) -> Vec<Vec<f64>> {
    spread_pool_design(space, pool, n, true, rng)
}

/// `n` distinct members of `pool` drawn uniformly, as BoTorch's users start over a table: the start a table of
/// one-hot categorical conditions gets, where every two rows differ in whole levels and k-means++ weighting has
/// little to spread.
pub(crate) fn random_pool_design(
    space: &Space,
    pool: &[Vec<f64>],
    n: usize,
    rng: &mut Xoshiro256PlusPlus,
) -> Vec<Vec<f64>> {
    spread_pool_design(space, pool, n, false, rng)
}

/// The draw behind both: the first member uniformly, each next with weight its squared feature distance from the
/// nearest one drawn (`spread`), or weight one for every member not drawn yet.
fn spread_pool_design(
    space: &Space,
    pool: &[Vec<f64>],
    n: usize,
    spread: bool,
    rng: &mut Xoshiro256PlusPlus,
) -> Vec<Vec<f64>> {
    if pool.is_empty() || n == 0 {
        return Vec::new();
    }
    let features: Vec<Vec<f64>> = pool.iter().map(|u| space.features(u)).collect();
    let first = rng.gen_range(0..pool.len());
    let mut chosen = vec![pool[first].clone()];
    let mut d2: Vec<f64> = features.iter().map(|f| distance2(f, &features[first])).collect();
    while chosen.len() < n {
        let weights: Vec<f64> = d2.iter().map(|d| if spread || *d <= 0.0 { *d } else { 1.0 }).collect();
        let total: f64 = weights.iter().sum();
        if total.is_nan() || total <= 0.0 {
            break;
        }
        let mut r = rng.r#gen::<f64>() * total;
        // The last member with weight, should rounding leave `r` past the end.
        let mut pick = weights.iter().rposition(|w| *w > 0.0).unwrap_or(0);
        for (i, w) in weights.iter().enumerate() {
            if r < *w {
                pick = i;
                break;
            }
            r -= w;
        }
        for (w, f) in d2.iter_mut().zip(&features) {
            *w = w.min(distance2(f, &features[pick]));
        }
        chosen.push(pool[pick].clone());
    }
    chosen
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
    stop: StopTracker,
}

impl SpaceFillingProposer {
    /// A space-filling proposer over `space` whose Latin hypercube has `design_size` points, seeded with `seed`.
    pub fn new(space: Space, design_size: usize, seed: u64) -> Self {
        SpaceFillingProposer::for_problem(&Problem::new(space, crate::Objective::maximize(""), design_size), seed)
    }

    /// A space-filling proposer for `problem`, whose design spans its budget, seeded with `seed`.
    pub fn for_problem(problem: &Problem, seed: u64) -> Self {
        let mut rng = rng(seed);
        let history = History::new(problem);
        // A pool's design is built as the campaign goes (farthest from what is measured), not up front.
        let design = if history.pool.is_some() { Vec::new() } else { design(&history.space, problem.budget, &mut rng) };
        let stop = super::stop_tracker(problem);
        SpaceFillingProposer { history, rng, design, next: 0, stop }
    }
}

impl Proposer for SpaceFillingProposer {
    fn name(&self) -> &str {
        "space-filling"
    }

    fn tell(&mut self, observation: Observation) {
        if let Some(v) = observation.objective {
            self.stop.told(v);
        }
        self.history.tell(observation);
    }

    fn tell_outcome(&mut self, outcome: Outcome) {
        self.history.tell_outcome(outcome);
        if let Some(super::Status::Values(v)) = self.history.told.last().map(|t| &t.result) {
            self.stop.told(v[0]);
        }
    }

    fn ask(&mut self, n: usize, pending: &[Point]) -> Vec<Proposal> {
        if self.stop.no_point() {
            return Vec::new();
        }
        let mut taken = self.history.taken(pending);
        let space = self.history.space.clone();
        let mut frozen: Vec<bool> = vec![false; space.len()];
        let mut shared: Option<Vec<f64>> = None;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let (unit, strategy, reason) = if let Some(u) = self.design.get(self.next) {
                let index = self.next;
                self.next += 1;
                let mut u = u.clone();
                if let Some(s) = &shared {
                    for (j, f) in frozen.iter().enumerate() {
                        if *f {
                            u[j] = s[j];
                        }
                    }
                }
                // A design point already measured or in flight (after a restart, say) has been handed out before.
                let Some(u) = space.repair(&u, &frozen).filter(|u| !too_close(u, &taken)) else { continue };
                (u, "space-filling (LHS)", design_reason(index, self.design.len()))
            } else {
                let pool = self.history.untaken_pool(&taken);
                if pool.as_ref().is_some_and(Vec::is_empty) {
                    self.stop.exhausted();
                }
                let batch = (shared.as_deref(), frozen.as_slice());
                let Some((u, distance)) = maximin_point(&space, &taken, pool.as_deref(), batch, &mut self.rng) else {
                    break;
                };
                (u, "space-filling (maximin)", maximin_reason(distance, pool.is_some()))
            };
            if shared.is_none() {
                frozen = (0..space.len()).map(|j| space.is_per_batch(j)).collect();
                shared = Some(unit.clone());
            }
            taken.push(unit.clone());
            out.push(self.history.proposal(&unit, strategy, reason));
        }
        out
    }

    fn should_stop(&self) -> Option<StopReason> {
        self.stop.should_stop()
    }
}

/// The strategy and the sentence explaining point `index` of a Gaussian-process proposer's start of `size` points
/// ([`sobol_design`]), drawn from a pool or not.
pub(crate) fn start_reason(index: usize, size: usize, pool: bool) -> (&'static str, String) {
    if pool {
        let reason = format!(
            "Point {} of a {size}-point start drawn from the table's conditions, each far from those drawn before (k-means++ weighting), so the first results cover the table.",
            index + 1
        );
        ("space-filling (k-means++)", reason)
    } else {
        let reason = format!(
            "Point {} of a {size}-point scrambled Sobol design, which spreads experiments evenly over every parameter's range.",
            index + 1
        );
        ("space-filling (Sobol)", reason)
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
    fn the_gaussian_process_starts_from_a_seeded_sobol_design_even_over_each_range() {
        let space = Space::new(vec![
            crate::Dim::new("a", 0.0, 10.0),
            crate::Dim::new("b", -1.0, 1.0),
            crate::Dim::new("c", 5.0, 6.0),
        ]);
        let start = sobol_design(&space, None, 8, &mut rng(3));
        assert_eq!(start.len(), 8);
        assert_eq!(start, sobol_design(&space, None, 8, &mut rng(3)), "the seed fixes the start");
        assert_ne!(start, sobol_design(&space, None, 8, &mut rng(4)));
        // The first 2^k points of a scrambled Sobol sequence put one point in each of 2^k equal slices of every
        // coordinate, as a Latin hypercube does, without pushing every pair apart.
        for j in 0..3 {
            let mut slices: Vec<usize> = start.iter().map(|u| (u[j] * 8.0).floor() as usize).collect();
            slices.sort_unstable();
            assert_eq!(slices, (0..8).collect::<Vec<_>>(), "coordinate {j}: {start:?}");
        }
        let pool: Vec<Vec<f64>> = (0..20).map(|i| vec![i as f64 / 19.0, 0.5, 0.5]).collect();
        assert_eq!(sobol_design(&space, Some(&pool), 5, &mut rng(3)), pool_design(&space, &pool, 5, &mut rng(3)));
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

    #[test]
    fn a_pool_design_draws_distinct_members_spread_out_and_not_only_the_extremes() {
        let space = Space::new(vec![crate::space::Dim::new("a", 0.0, 1.0), crate::space::Dim::new("b", 0.0, 1.0)]);
        let pool: Vec<Vec<f64>> =
            (0..21).flat_map(|i| (0..21).map(move |j| vec![i as f64 / 20.0, j as f64 / 20.0])).collect();
        let mut interior = 0;
        for seed in 0..20 {
            let d = pool_design(&space, &pool, 9, &mut rng(seed));
            assert_eq!(d, pool_design(&space, &pool, 9, &mut rng(seed)));
            assert_eq!(d.len(), 9);
            for (i, u) in d.iter().enumerate() {
                assert!(pool.contains(u));
                assert!(d[..i].iter().all(|v| distance2(u, v) > 0.0), "{d:?}");
            }
            // Spread: no two of nine points closer than a grid step.
            assert!(min_distance(&d) >= 0.05 - 1e-12);
            interior += d.iter().filter(|u| u.iter().all(|c| *c > 0.0 && *c < 1.0)).count();
        }
        // Most of the pool is inside the square's border, and so is most of the design (a farthest-point sequence
        // starts with corners).
        assert!(interior > 20 * 9 / 2, "{interior}");
        assert!(pool_design(&space, &pool, 0, &mut rng(1)).is_empty());
        assert_eq!(pool_design(&space, &pool[..3], 9, &mut rng(1)).len(), 3);
    }
}
