//! A narrow curved ridge beside a broad, lower decoy: a product that forms only in a thin band of conditions
//! (temperature and time must match along a curve), and a side reaction that gives a wide hill elsewhere.
//!
//! In unit coordinates `u` (temperature 20–120 °C, time 1–60 min, concentration 0.1–1 M), the ridge follows
//! `u_time = 0.85 - 0.6 u_T²` with a Gaussian cross-section of width 0.04 and peaks at 100 near `u_T = 0.75`,
//! `u_c = 0.6`; the decoy is a Gaussian hill of height 65 and width 0.2 at `(0.2, 0.2, 0.3)`. About 2% of the
//! cube lies on the ridge above the decoy's height, so a space-filling start of 7 points usually misses it and a
//! model fitted to that start sees only the decoy: the ridge is found by exploring where the model is unsure,
//! and then climbed along a curved, narrow crest.

use super::landscape::{Landscape, maximise, sobol_table};
use crate::{Dim, Point, Space};

/// The noise of the noisy version, in yield percent.
pub const NOISE: f64 = 3.0;
/// The optimum, found once (a grid and a compass search).
static OPTIMUM: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
/// The experiments a run may use.
pub const BUDGET: usize = 60;

/// Temperature, time and concentration.
pub fn space() -> Space {
    Space::new(vec![
        Dim::new("temperature", 20.0, 120.0),
        Dim::new("time", 1.0, 60.0),
        Dim::new("concentration", 0.1, 1.0),
    ])
}

/// The yield (percent) at `p`.
pub fn value(p: &Point) -> f64 {
    let u = [(p["temperature"] - 20.0) / 100.0, (p["time"] - 1.0) / 59.0, (p["concentration"] - 0.1) / 0.9];
    let centre = 0.85 - 0.6 * u[0] * u[0];
    let along = (-((u[0] - 0.75) / 0.35).powi(2) - ((u[2] - 0.6) / 0.5).powi(2)).exp();
    let ridge = 100.0 * along * (-0.5 * ((u[1] - centre) / 0.04).powi(2)).exp();
    let decoy = 65.0 * (-((u[0] - 0.2).powi(2) + (u[1] - 0.2).powi(2) + (u[2] - 0.3).powi(2)) / (2.0 * 0.04)).exp();
    ridge + decoy
}

/// The continuous form: reach 95% of the optimum in 60 experiments.
pub fn landscape() -> Landscape {
    let space = space();
    let optimum = *OPTIMUM.get_or_init(|| maximise(&space, value, 41).0);
    Landscape::continuous("ridge", space, value, BUDGET, optimum, 0.95)
}

/// The table-restricted form: 1,000 conditions (a fixed scrambled Sobol set), reach a top-1% row in 60.
pub fn table() -> Landscape {
    let space = space();
    let rows = sobol_table(&space, 1000, 0x5249_4447);
    landscape().tabled(rows, BUDGET)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ridge_beats_the_decoy_only_in_a_thin_band() {
        let l = landscape();
        assert!(l.optimum > 95.0 && l.optimum < 101.0, "{}", l.optimum);
        let decoy = value(&space().from_unit(&[0.2, 0.2, 0.3]));
        assert!((decoy - 65.0).abs() < 0.5, "{decoy}");
        // The share of a fine grid above the decoy's height.
        let n = 40;
        let mut above = 0;
        for i in 0..n {
            for j in 0..n {
                for k in 0..n {
                    let u = [i as f64 / (n - 1) as f64, j as f64 / (n - 1) as f64, k as f64 / (n - 1) as f64];
                    above += usize::from(value(&space().from_unit(&u)) > 65.0);
                }
            }
        }
        let share = above as f64 / (n * n * n) as f64;
        assert!(share > 0.005 && share < 0.05, "{share}");
    }
}
