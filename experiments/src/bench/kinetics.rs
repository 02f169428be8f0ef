//! Mixed categorical and continuous kinetics: a catalyst among six, with temperature, time and concentration,
//! where each catalyst has its own optimum.
//!
//! The product B forms from A and degrades to C, both first order: `A → B` at rate `k1`, `B → C` at rate `k2`, so
//! the yield of B after time `t` is `s · k1 / (k2 - k1) · (e^{-k1 t} - e^{-k2 t})` (the closed form of the two
//! consecutive reactions), with `s` the catalyst's selectivity. Each catalyst sets `k1` at 80 °C, its activation
//! energy (so how fast `k1` grows with temperature), the temperature above which it decomposes, and its
//! saturation constant (`k1` grows with concentration as
//! `c / (K + c)`); the degradation is the same for all, with a higher activation energy and faster at high
//! concentration. So a catalyst with a low activation energy wants mild, long runs, one with a high activation
//! energy short, hot ones, and the best catalyst's optimum is a narrow corner while the others give broad, lower
//! plateaus.

use super::landscape::{Landscape, maximise, sobol_table};
use crate::{Dim, Encoding, Level, Point, Space};

/// The noise of the noisy version, in yield percent.
pub const NOISE: f64 = 2.0;
/// The optimum, found once (a grid and a compass search).
static OPTIMUM: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
/// The experiments a run may use.
pub const BUDGET: usize = 60;

/// Per catalyst: name, `k1` at 80 °C and saturation (1/min), activation energy (kJ/mol), saturation constant
/// (mol/L), selectivity, and the temperature (°C) around which it decomposes.
const CATALYSTS: [(&str, f64, f64, f64, f64, f64); 6] = [
    ("Pd(OAc)2", 0.020, 45.0, 0.05, 0.80, 100.0),
    ("Pd2dba3", 0.050, 60.0, 0.30, 0.86, 95.0),
    ("PEPPSI-IPr", 0.080, 110.0, 0.80, 0.97, 118.0),
    ("NiCl2(dme)", 0.010, 50.0, 0.10, 0.90, 90.0),
    ("CuI", 0.300, 30.0, 0.50, 0.70, 80.0),
    ("Pd-G3", 0.010, 130.0, 0.20, 0.93, 130.0),
];
/// The degradation's rate at 80 °C and no concentration (1/min), its activation energy, and how it grows with
/// concentration (per mol/L).
const DEGRADATION: (f64, f64, f64) = (0.002, 95.0, 1.5);
/// How sharply (°C) a catalyst dies above its decomposition temperature.
const DECOMPOSITION_WIDTH: f64 = 6.0;
const GAS_CONSTANT: f64 = 8.314e-3;
const REFERENCE_K: f64 = 353.15;

/// Catalyst, temperature (40–140 °C), time (1–120 min), concentration (0.05–1 M).
pub fn space() -> Space {
    let levels = CATALYSTS.iter().enumerate().map(|(i, c)| Level::new(c.0, i as f64)).collect();
    Space::new(vec![
        Dim::categorical("catalyst", levels, Encoding::OneHot),
        Dim::new("temperature", 40.0, 140.0),
        Dim::new("time", 1.0, 120.0),
        Dim::new("concentration", 0.05, 1.0),
    ])
}

/// The yield of B (percent) at `p`.
pub fn value(p: &Point) -> f64 {
    let (_, k80, ea, saturation, selectivity, dies) = CATALYSTS[(p["catalyst"].round().max(0.0) as usize).min(5)];
    let (t, c) = (p["time"], p["concentration"]);
    let arrhenius = |ea: f64| (-ea / GAS_CONSTANT * (1.0 / (p["temperature"] + 273.15) - 1.0 / REFERENCE_K)).exp();
    let alive = 1.0 / (1.0 + ((p["temperature"] - dies) / DECOMPOSITION_WIDTH).exp());
    let k1 = k80 * arrhenius(ea) * c / (saturation + c) * alive;
    let k2 = DEGRADATION.0 * arrhenius(DEGRADATION.1) * (1.0 + DEGRADATION.2 * c);
    let b = if (k2 - k1).abs() < 1e-9 * k1 {
        k1 * t * (-k1 * t).exp()
    } else {
        k1 / (k2 - k1) * ((-k1 * t).exp() - (-k2 * t).exp())
    };
    100.0 * selectivity * b
}

/// The mixed form: reach 95% of the optimum in 60 experiments.
pub fn landscape() -> Landscape {
    let space = space();
    let optimum = *OPTIMUM.get_or_init(|| maximise(&space, value, 41).0);
    Landscape::continuous("kinetics", space, value, BUDGET, optimum, 0.95)
}

/// The table-restricted form: 300 conditions per catalyst (a fixed scrambled Sobol set), reach a top-1% row in 60.
pub fn table() -> Landscape {
    let rows = sobol_table(&space(), 300, 0x4B49_4E45);
    landscape().tabled(rows, BUDGET)
}

/// Each catalyst's best yield and where, for the tests and the notes.
pub fn optima() -> Vec<(f64, Point)> {
    (0..CATALYSTS.len())
        .map(|i| {
            let space = Space::new(space().dims()[1..].to_vec());
            let value = match i {
                0 => (|p: &Point| value(&with(p, 0))) as fn(&Point) -> f64,
                1 => |p: &Point| value(&with(p, 1)),
                2 => |p: &Point| value(&with(p, 2)),
                3 => |p: &Point| value(&with(p, 3)),
                4 => |p: &Point| value(&with(p, 4)),
                _ => |p: &Point| value(&with(p, 5)),
            };
            maximise(&space, value, 41)
        })
        .collect()
}

fn with(p: &Point, catalyst: usize) -> Point {
    let mut p = p.clone();
    p.insert("catalyst".to_owned(), catalyst as f64);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_catalyst_has_its_own_optimum_and_one_is_best() {
        let optima = optima();
        for (i, (v, p)) in optima.iter().enumerate() {
            println!("{}: {v:.2} at {p:?}", CATALYSTS[i].0);
        }
        let best = landscape().optimum;
        assert_eq!(optima.iter().map(|o| o.0).fold(0.0, f64::max), best);
        let runner_up = optima.iter().map(|o| o.0).filter(|v| *v < best).fold(0.0, f64::max);
        assert!(best - runner_up > 3.0, "{best} vs {runner_up}");
    }
}
