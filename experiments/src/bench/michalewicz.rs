//! Michalewicz's function in three dimensions (steepness `m = 10`), turned into a maximum: a flat floor crossed
//! by steep, narrow ridges, one family per coordinate, whose crossings are the local optima.
//!
//! `f(x) = Σ_i sin(x_i) sin²⁰(i x_i² / π)` on `[0, π]³`. Each term is a spike a few percent of the range wide, and
//! the second coordinate's crossing with the third's has two rivals (the third coordinate also peaks, lower, at
//! 2.22 and 2.87), so most of the space is flat and a model sees almost nothing until it lands on a ridge. The
//! optimum is 2.7603 (the sum of each term's largest value, since the terms are separate).

use super::landscape::{Landscape, maximise, sobol_table};
use crate::{Dim, Point, Space};

/// The dimension.
pub const D: usize = 3;
/// The noise of the noisy version.
pub const NOISE: f64 = 0.08;
/// The optimum, found once (a grid and a compass search).
static OPTIMUM: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
/// The experiments a run may use.
pub const BUDGET: usize = 60;

/// `x1`…`x3` on `[0, π]`.
pub fn space() -> Space {
    Space::new((1..=D).map(|i| Dim::new(format!("x{i}"), 0.0, std::f64::consts::PI)).collect())
}

/// The function's value at `p` (larger is better).
pub fn value(p: &Point) -> f64 {
    (1..=D)
        .map(|i| {
            let x = p[&format!("x{i}")];
            x.sin() * (i as f64 * x * x / std::f64::consts::PI).sin().powi(20)
        })
        .sum()
}

/// The continuous form: reach 95% of the optimum in 60 experiments.
pub fn landscape() -> Landscape {
    let space = space();
    let optimum = *OPTIMUM.get_or_init(|| maximise(&space, value, 61).0);
    Landscape::continuous("michalewicz", space, value, BUDGET, optimum, 0.95)
}

/// The table-restricted form: 1,000 conditions (a fixed scrambled Sobol set), reach a top-1% row in 60.
pub fn table() -> Landscape {
    let rows = sobol_table(&space(), 1000, 0x4D49_4348);
    landscape().tabled(rows, BUDGET)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_optimum_is_the_sum_of_each_terms_peak() {
        // Each term's peak on a fine one-dimensional grid.
        let peaks: f64 = (1..=D)
            .map(|i| {
                (0..=200_000)
                    .map(|k| {
                        let x = std::f64::consts::PI * k as f64 / 200_000.0;
                        x.sin() * (i as f64 * x * x / std::f64::consts::PI).sin().powi(20)
                    })
                    .fold(0.0, f64::max)
            })
            .sum();
        let l = landscape();
        assert!((l.optimum - peaks).abs() < 1e-6, "{} vs {peaks}", l.optimum);
        assert!((l.optimum - 2.7603).abs() < 1e-3, "{}", l.optimum);
    }
}
