//! Maximising an acquisition function over a space, away from points already taken.
//!
//! Acquisition functions are multimodal and flat in places, so a global view comes first: a scrambled Sobol
//! sequence (Owen scrambling, `sobol_burley`, seeded from the proposer's generator) spreads candidates evenly
//! over the space, candidates near the best results join them, and every candidate is scored in one batch.
//! The best few distinct candidates then start local searches: projected L-BFGS on the continuous and integer
//! coordinates with the model's exact gradients, alternating with a sweep of every level of each categorical
//! dimension. Integer coordinates are rounded at the end and the point repaired onto the constraints; a point
//! within [`super::MIN_DISTANCE`] of a taken one is never returned.
//!
//! Over a finite pool (a lookup table, or a small discrete space enumerated) there is nothing to search: the
//! untried point with the best score is taken ([`best_in_pool`]). A scorer may find it without scoring every
//! point exactly, from upper bounds on the scores ([`best_within_bounds`]).

use rand::{Rng, RngCore};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::random::fits_batch;
use super::{distance2, too_close, untaken};
use crate::space::Space;
use crate::surrogate::optimize::{Lbfgs, minimize};

/// What is maximised: values for a batch of coordinates, and the value with its gradient at one.
pub(crate) trait Scorer {
    /// The value at each point (minus infinity where undefined).
    fn score(&self, units: &[Vec<f64>]) -> Vec<f64>;
    /// The value at `unit` and its gradient with respect to the coordinates (zero for categorical ones).
    fn score_gradient(&self, unit: &[f64]) -> (f64, Vec<f64>);
    /// The point with the highest value that is neither NaN nor minus infinity (ties go to the first), with that
    /// value: what [`Scorer::score`] gives, which a scorer may find without scoring every point exactly.
    fn best(&self, units: &[Vec<f64>]) -> Option<(usize, f64)> {
        first_best(self.score(units).into_iter().enumerate())
    }
}

/// Of `(index, value)` pairs, the highest value that is neither NaN nor minus infinity, the lowest index among
/// equal ones.
pub(crate) fn first_best(values: impl Iterator<Item = (usize, f64)>) -> Option<(usize, f64)> {
    let mut best: Option<(usize, f64)> = None;
    for (i, v) in values {
        if !v.is_nan() && v > f64::NEG_INFINITY && best.is_none_or(|(bi, b)| v > b || v == b && i < bi) {
            best = Some((i, v));
        }
    }
    best
}

/// What [`first_best`] finds among points with exact values, given an upper bound on each point's value
/// (`(index, bound)`) and `exact`, which gives the exact values of the points listed: exact values are computed
/// `at_once` at a time, best bound first, until no bound left could beat the best exact value (or tie it at a
/// lower index). A NaN bound bounds nothing, so its point is computed first.
pub(crate) fn best_within_bounds(
    mut bounds: Vec<(usize, f64)>,
    at_once: usize,
    mut exact: impl FnMut(&[usize]) -> Vec<f64>,
) -> Option<(usize, f64)> {
    // A bound of minus infinity holds a value of minus infinity, which never wins.
    bounds.retain(|(_, b)| *b > f64::NEG_INFINITY || b.is_nan());
    let key = |v: f64| if v.is_nan() { f64::INFINITY } else { v };
    bounds.sort_by(|a, b| key(b.1).total_cmp(&key(a.1)).then(a.0.cmp(&b.0)));
    let mut best: Option<(usize, f64)> = None;
    for chunk in bounds.chunks(at_once.max(1)) {
        // A bound equal to the best still computes, for a tie goes to the lower index; the margin covers the
        // rounding of the values' own arithmetic.
        if let Some((_, b)) = best
            && chunk[0].1 < b - 1e-9 * b.abs()
        {
            break;
        }
        let which: Vec<usize> = chunk.iter().map(|c| c.0).collect();
        let values = exact(&which);
        best = first_best(best.into_iter().chain(which.into_iter().zip(values)));
    }
    best
}

/// Settings of [`maximize`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Search {
    /// How many Sobol candidates are scored.
    pub candidates: usize,
    /// How many of the best candidates start a local search.
    pub starts: usize,
    /// The local search's iterations.
    pub iterations: usize,
}

impl Default for Search {
    fn default() -> Self {
        Search { candidates: 1024, starts: 6, iterations: 50 }
    }
}

/// The best point found, its value, and how many points were evaluated.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub unit: Vec<f64>,
    pub value: f64,
    pub evaluations: usize,
}

/// Quasi-random points of the unit cube of dimension `d`: `n` points of an Owen-scrambled Sobol sequence with
/// scramble `seed`. Dimensions beyond the generator's 256 reuse them under another scramble.
pub(crate) fn sobol(n: usize, d: usize, seed: u32) -> Vec<Vec<f64>> {
    let n = n.min(1 << 16);
    (0..n as u32)
        .map(|i| {
            (0..d as u32)
                .map(|j| {
                    f64::from(sobol_burley::sample(i, j % 256, seed.wrapping_add((j / 256).wrapping_mul(0x9E37_79B9))))
                })
                .collect()
        })
        .collect()
}

/// The untried member of `pool` with the highest score (ties go to the first), or `None` if every member is
/// taken or scores minus infinity. Members must agree with `shared` on the `frozen` dimensions.
pub(crate) fn best_in_pool(
    pool: &[Vec<f64>],
    scorer: &dyn Scorer,
    taken: &[Vec<f64>],
    batch: (Option<&[f64]>, &[bool]),
) -> Option<Found> {
    let candidates: Vec<Vec<f64>> = untaken(pool, taken).filter(|u| fits_batch(u, batch.0, batch.1)).cloned().collect();
    let (i, value) = scorer.best(&candidates)?;
    Some(Found { unit: candidates[i].clone(), value, evaluations: candidates.len() })
}

/// Maximises `scorer` over `space`, keeping the `frozen` coordinates at `shared`'s values and away from `taken`.
/// `extra` candidates (such as points near the best results) join the Sobol ones. `None` when no feasible,
/// untaken point with a finite score is found.
pub(crate) fn maximize(
    space: &Space,
    scorer: &dyn Scorer,
    taken: &[Vec<f64>],
    batch: (Option<&[f64]>, &[bool]),
    extra: Vec<Vec<f64>>,
    settings: Search,
    rng: &mut Xoshiro256PlusPlus,
) -> Option<Found> {
    let (shared, frozen) = batch;
    let d = space.len();
    let hold = |u: &mut Vec<f64>| {
        if let Some(s) = shared {
            for (j, f) in frozen.iter().enumerate() {
                if *f {
                    u[j] = s[j];
                }
            }
        }
    };
    let seed = rng.next_u32();
    let mut candidates: Vec<Vec<f64>> = Vec::with_capacity(settings.candidates + extra.len());
    let cube = sobol(settings.candidates, d, seed).into_iter().map(|c| space.from_cube(&c));
    for mut u in cube.chain(extra) {
        hold(&mut u);
        // Categorical coordinates are levels from the start; integer ones stay relaxed until the end.
        let u = space.project(&snap_categorical(space, &u), frozen);
        if let Some(u) = u {
            candidates.push(u);
        }
    }
    let mut evaluations = candidates.len();
    let values = scorer.score(&candidates);
    let mut order: Vec<usize> = (0..candidates.len()).filter(|i| values[*i].is_finite()).collect();
    // Highest first; ties keep candidate order, so the result does not depend on the sort's internals.
    order.sort_by(|a, b| values[*b].total_cmp(&values[*a]).then(a.cmp(b)));
    let mut starts: Vec<usize> = Vec::new();
    for &i in &order {
        if starts.len() == settings.starts {
            break;
        }
        if starts.iter().all(|s| distance2(&candidates[*s], &candidates[i]) > 1e-6) {
            starts.push(i);
        }
    }
    let locked: Vec<bool> =
        (0..d).map(|j| frozen.get(j).copied().unwrap_or(false) || space.dims()[j].is_categorical()).collect();
    let categorical: Vec<usize> =
        (0..d).filter(|j| space.dims()[*j].is_categorical() && !frozen.get(*j).copied().unwrap_or(false)).collect();
    let continuous = locked.iter().any(|l| !l);
    let mut best: Option<(Vec<f64>, f64)> = None;
    // Rounds, repairs and rescores a local optimum; keeps it if it is untaken and the best so far.
    let consider = |u: Vec<f64>, evaluations: &mut usize, best: &mut Option<(Vec<f64>, f64)>| {
        let Some(u) = space.repair(&u, frozen) else { return };
        if too_close(&u, taken) {
            return;
        }
        *evaluations += 1;
        let v = scorer.score(std::slice::from_ref(&u))[0];
        if v.is_finite() && best.as_ref().is_none_or(|(_, b)| v > *b) {
            *best = Some((u, v));
        }
    };
    for s in starts {
        let mut u = candidates[s].clone();
        let mut value = values[s];
        for round in 0..3 {
            if continuous {
                let mut f = |x: &[f64]| {
                    let (v, g) = scorer.score_gradient(x);
                    let g: Vec<f64> = g.iter().zip(&locked).map(|(g, l)| if *l { 0.0 } else { -g }).collect();
                    v.is_finite().then_some((-v, g))
                };
                let project = |x: &mut [f64]| {
                    if let Some(p) = space.project(x, &locked) {
                        x.copy_from_slice(&p);
                    }
                };
                let lbfgs = Lbfgs {
                    iterations: settings.iterations,
                    memory: 6,
                    first_step: 0.05,
                    x_tolerance: 1e-10,
                    f_tolerance: 1e-13,
                };
                if let Some(m) = minimize(&mut f, &u, &project, lbfgs) {
                    evaluations += m.evaluations;
                    if -m.value >= value {
                        u = m.x;
                        value = -m.value;
                    }
                }
            }
            let mut changed = false;
            for &j in &categorical {
                let k = space.dims()[j].count().unwrap_or(1);
                let options: Vec<Vec<f64>> = (0..k)
                    .filter_map(|level| {
                        let mut v = u.clone();
                        v[j] = level as f64;
                        space.project(&v, &locked)
                    })
                    .collect();
                evaluations += options.len();
                let scores = scorer.score(&options);
                if let Some((i, v)) = scores
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| v.is_finite())
                    .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))
                    && *v > value
                {
                    u = options[i].clone();
                    value = *v;
                    changed = true;
                }
            }
            if !changed || round == 2 {
                break;
            }
        }
        consider(u, &mut evaluations, &mut best);
    }
    if best.is_none() {
        // Every local optimum rounded onto a taken point: take the best candidate that does not.
        for &i in order.iter().take(64) {
            consider(candidates[i].clone(), &mut evaluations, &mut best);
            if best.is_some() {
                break;
            }
        }
    }
    let (unit, value) = best?;
    Some(Found { unit, value, evaluations })
}

/// `u` with its categorical coordinates rounded to levels.
fn snap_categorical(space: &Space, u: &[f64]) -> Vec<f64> {
    u.iter()
        .enumerate()
        .map(|(j, v)| if space.dims()[j].is_categorical() { space.dims()[j].snap(*v) } else { *v })
        .collect()
}

/// Uniform coordinates within `radius` of `centre` on the continuous and integer dimensions (categorical ones
/// kept), for local candidates.
pub(crate) fn around(space: &Space, centre: &[f64], radius: f64, rng: &mut Xoshiro256PlusPlus) -> Vec<f64> {
    centre
        .iter()
        .enumerate()
        .map(|(j, c)| if space.dims()[j].is_categorical() { *c } else { c + (2.0 * rng.r#gen::<f64>() - 1.0) * radius })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proposer::rng;
    use crate::space::{Dim, Encoding, Level};

    struct Peak;

    impl Scorer for Peak {
        fn score(&self, units: &[Vec<f64>]) -> Vec<f64> {
            units
                .iter()
                .map(|u| -((u[0] - 0.3141).powi(2) + (u[1] - 0.7).powi(2)) + if u.len() > 2 { u[2] } else { 0.0 })
                .collect()
        }
        fn score_gradient(&self, u: &[f64]) -> (f64, Vec<f64>) {
            let mut g = vec![-2.0 * (u[0] - 0.3141), -2.0 * (u[1] - 0.7)];
            g.extend(std::iter::repeat_n(0.0, u.len() - 2));
            (self.score(&[u.to_vec()])[0], g)
        }
    }

    fn square() -> Space {
        Space::new(vec![Dim::new("a", 0.0, 1.0), Dim::new("b", 0.0, 1.0)])
    }

    #[test]
    fn finds_a_smooth_maximum_precisely() {
        let found = maximize(&square(), &Peak, &[], (None, &[]), Vec::new(), Search::default(), &mut rng(1)).unwrap();
        assert!((found.unit[0] - 0.3141).abs() < 1e-6 && (found.unit[1] - 0.7).abs() < 1e-6, "{:?}", found.unit);
    }

    #[test]
    fn keeps_away_from_taken_points_and_holds_frozen_ones() {
        let taken = vec![vec![0.3141, 0.7]];
        let found =
            maximize(&square(), &Peak, &taken, (None, &[]), vec![vec![0.3141, 0.7]], Search::default(), &mut rng(1))
                .unwrap();
        assert!(!too_close(&found.unit, &taken));
        let shared = [0.2, 0.0];
        let found = maximize(
            &square(),
            &Peak,
            &[],
            (Some(&shared), &[true, false]),
            Vec::new(),
            Search::default(),
            &mut rng(1),
        )
        .unwrap();
        assert_eq!(found.unit[0], 0.2);
        assert!((found.unit[1] - 0.7).abs() < 1e-6);
    }

    #[test]
    fn categorical_levels_are_swept() {
        let levels = vec![Level::new("x", 0.0), Level::new("y", 1.0), Level::new("z", 2.0)];
        let space = Space::new(vec![
            Dim::new("a", 0.0, 1.0),
            Dim::new("b", 0.0, 1.0),
            Dim::categorical("c", levels, Encoding::OneHot),
        ]);
        let found = maximize(
            &space,
            &Peak,
            &[],
            (None, &[]),
            Vec::new(),
            Search { candidates: 16, ..Search::default() },
            &mut rng(3),
        )
        .unwrap();
        assert_eq!(found.unit[2], 2.0);
        assert!((found.unit[0] - 0.3141).abs() < 1e-6);
    }

    #[test]
    fn sobol_points_fill_the_cube_evenly() {
        let points = sobol(256, 2, 7);
        // Every cell of a 16×16 grid holds exactly one point of the first 256 (a (0, 8, 2)-net).
        let mut cells: Vec<usize> =
            points.iter().map(|p| (p[0] * 16.0) as usize * 16 + (p[1] * 16.0) as usize).collect();
        cells.sort_unstable();
        cells.dedup();
        assert_eq!(cells.len(), 256);
        assert_ne!(sobol(4, 2, 7), sobol(4, 2, 8));
    }

    #[test]
    fn bounds_find_the_best_exact_value_computing_only_what_could_win() {
        // Exact values from a fixed generator, bounds above them by up to 3 (and two NaN bounds, one minus
        // infinity), in chunks of several sizes: the winner, ties to the lowest index included, is the one every
        // value computed would give, and far fewer are computed.
        let mut rng = rng(5);
        for round in 0..50 {
            let n = 500;
            let exact: Vec<f64> = (0..n).map(|_| (rng.r#gen::<f64>() * 40.0).round() / 4.0).collect();
            // A third of the bounds are tight, so that rows of equal value tie on their bounds too.
            let slack = |i: usize, u: f64| if i.is_multiple_of(3) { 0.0 } else { 3.0 * u };
            let mut bounds: Vec<(usize, f64)> =
                exact.iter().enumerate().map(|(i, v)| (i, v + slack(i, rng.r#gen::<f64>()))).collect();
            bounds[7].1 = f64::NAN;
            bounds[300].1 = f64::NAN;
            bounds[20].1 = f64::NEG_INFINITY;
            let mut values = exact.clone();
            values[20] = f64::NEG_INFINITY;
            let want = first_best(values.iter().copied().enumerate());
            for at_once in [1, 3, 64] {
                let mut computed = 0;
                let got = best_within_bounds(bounds.clone(), at_once, |which| {
                    computed += which.len();
                    which.iter().map(|&i| values[i]).collect()
                });
                assert_eq!(got, want, "round {round}, {at_once} at once");
                assert!(computed < n / 2, "round {round}: {computed} computed");
            }
        }
    }

    #[test]
    fn a_pool_is_scored_whole() {
        let pool = vec![vec![0.0, 0.0], vec![0.31, 0.7], vec![0.3, 0.71]];
        let found = best_in_pool(&pool, &Peak, &[vec![0.31, 0.7]], (None, &[])).unwrap();
        assert_eq!(found.unit, vec![0.3, 0.71]);
        assert!(best_in_pool(&pool, &Peak, &pool, (None, &[])).is_none());
    }
}
