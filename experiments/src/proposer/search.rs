//! Maximising a function over the unit cube, away from points already taken.
//!
//! Acquisition functions are cheap to evaluate in batches, multimodal, and flat in places, so gradients help
//! little and a global view matters more. [`maximize`] scores a pool of uniform random candidates (plus any the
//! caller adds, such as points near the best results), then refines the best few with a compass search: try a
//! step up and down along every axis, move to the best improvement, halve the step when nothing improves. Every
//! evaluation is a batch, so a model predicts many points per call. Points within [`super::MIN_DISTANCE`] of a
//! taken point score minus infinity, so they are never returned.

use rand_xoshiro::Xoshiro256PlusPlus;

use super::{distance2, too_close, uniform_point};

/// Settings of [`maximize`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Search {
    /// How many uniform random candidates are scored.
    pub pool: usize,
    /// How many of the best candidates are refined.
    pub starts: usize,
    /// The compass search's first step, in the unit cube.
    pub step: f64,
    /// The step below which a compass search stops.
    pub min_step: f64,
    /// The largest number of compass iterations per start.
    pub iterations: usize,
}

impl Default for Search {
    fn default() -> Self {
        Search { pool: 2048, starts: 5, step: 0.1, min_step: 1e-6, iterations: 80 }
    }
}

/// The best point found, its value, and how many points were evaluated.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub point: Vec<f64>,
    pub value: f64,
    pub evaluations: usize,
}

/// Maximises `f` over `[0, 1]^d`. `f` scores a batch of points; NaN counts as minus infinity. `extra` candidates
/// join the random pool. `None` when no candidate has a finite score.
pub(crate) fn maximize(
    mut f: impl FnMut(&[Vec<f64>]) -> Vec<f64>,
    d: usize,
    taken: &[Vec<f64>],
    extra: Vec<Vec<f64>>,
    settings: Search,
    rng: &mut Xoshiro256PlusPlus,
) -> Option<Found> {
    let mut evaluations = 0;
    let mut score = |points: &[Vec<f64>]| -> Vec<f64> {
        evaluations += points.len();
        let values = f(points);
        points
            .iter()
            .enumerate()
            .map(|(i, p)| match values.get(i) {
                Some(v) if !v.is_nan() && !too_close(p, taken) => *v,
                _ => f64::NEG_INFINITY,
            })
            .collect()
    };
    let mut candidates: Vec<Vec<f64>> = (0..settings.pool).map(|_| uniform_point(rng, d)).collect();
    candidates.extend(extra.into_iter().map(|p| p.into_iter().map(|x| x.clamp(0.0, 1.0)).collect()));
    let values = score(&candidates);
    let mut order: Vec<usize> = (0..candidates.len()).filter(|i| values[*i].is_finite()).collect();
    // Highest first; ties keep pool order, so the result does not depend on the sort's internals.
    order.sort_by(|a, b| values[*b].total_cmp(&values[*a]).then(a.cmp(b)));
    let mut starts: Vec<usize> = Vec::new();
    for i in order {
        if starts.len() == settings.starts {
            break;
        }
        if starts.iter().all(|s| distance2(&candidates[*s], &candidates[i]) > 1e-6) {
            starts.push(i);
        }
    }
    let mut best: Option<(Vec<f64>, f64)> = None;
    for s in starts {
        let (point, value) = compass(&mut score, candidates[s].clone(), values[s], settings);
        if best.as_ref().is_none_or(|(_, b)| value > *b) {
            best = Some((point, value));
        }
    }
    let (point, value) = best?;
    Some(Found { point, value, evaluations })
}

/// Compass search from `x` (with value `fx`), bounded to the unit cube.
pub(crate) fn compass(
    score: &mut impl FnMut(&[Vec<f64>]) -> Vec<f64>,
    mut x: Vec<f64>,
    mut fx: f64,
    settings: Search,
) -> (Vec<f64>, f64) {
    let mut step = settings.step;
    for _ in 0..settings.iterations {
        if step < settings.min_step {
            break;
        }
        let mut neighbours = Vec::with_capacity(2 * x.len());
        for j in 0..x.len() {
            for sign in [1.0, -1.0] {
                let moved = (x[j] + sign * step).clamp(0.0, 1.0);
                if moved != x[j] {
                    let mut y = x.clone();
                    y[j] = moved;
                    neighbours.push(y);
                }
            }
        }
        if neighbours.is_empty() {
            break;
        }
        let values = score(&neighbours);
        let (i, v) = values
            .iter()
            .enumerate()
            .fold((0, f64::NEG_INFINITY), |(bi, bv), (i, v)| if *v > bv { (i, *v) } else { (bi, bv) });
        if v > fx {
            x = neighbours.swap_remove(i);
            fx = v;
        } else {
            step *= 0.5;
        }
    }
    (x, fx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proposer::rng;

    fn peak(points: &[Vec<f64>]) -> Vec<f64> {
        points.iter().map(|p| -((p[0] - 0.3141).powi(2) + (p[1] - 0.7).powi(2))).collect()
    }

    #[test]
    fn finds_a_smooth_maximum_precisely() {
        let found = maximize(peak, 2, &[], Vec::new(), Search::default(), &mut rng(1)).unwrap();
        assert!((found.point[0] - 0.3141).abs() < 1e-4 && (found.point[1] - 0.7).abs() < 1e-4, "{:?}", found.point);
    }

    #[test]
    fn keeps_away_from_taken_points() {
        let taken = vec![vec![0.3141, 0.7]];
        let found = maximize(peak, 2, &taken, vec![vec![0.3141, 0.7]], Search::default(), &mut rng(1)).unwrap();
        assert!(!too_close(&found.point, &taken));
    }

    #[test]
    fn maxima_on_the_boundary_are_reached() {
        let corner = |points: &[Vec<f64>]| points.iter().map(|p| p[0] + p[1]).collect();
        let found = maximize(corner, 2, &[], Vec::new(), Search::default(), &mut rng(2)).unwrap();
        assert_eq!(found.point, vec![1.0, 1.0]);
    }

    #[test]
    fn nothing_finite_means_nothing_found() {
        let flat = |points: &[Vec<f64>]| vec![f64::NEG_INFINITY; points.len()];
        assert!(maximize(flat, 2, &[], Vec::new(), Search::default(), &mut rng(2)).is_none());
    }
}
