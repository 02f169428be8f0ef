//! Landscapes: problems with known answers that are shaped like the ones a chemistry lab meets, on which a
//! proposer is judged by the worst seeds as much as by the median.
//!
//! A [`Landscape`] is a yield-like function to maximise over a [`Space`], a budget of experiments, and a target: a
//! fraction of the true optimum for a continuous landscape, or a top-1% row for a table-restricted one (the
//! proposer may only choose rows of a finite table of conditions, as when a lab can run only what its stock and
//! plates allow). A run reaches the target when an experiment it ran has a *true* value at or above it; with a
//! noisy landscape the proposer sees the value plus Gaussian noise, drawn from a sequence fixed by the seed and the
//! experiment's number ([`noise_draws`]), so peers given the same seed see the same noise.
//!
//! The kinds of landscape (one file each): [`super::ridge`], a narrow curved ridge beside a broad lower decoy;
//! [`super::michalewicz`], steep narrow valleys on a flat floor; [`super::needle`], a categorical table whose best
//! conditions hide in an interaction the main effects point away from; [`super::kinetics`], a catalyst among
//! several with temperature, time and concentration, each catalyst with its own optimum. [`super::suite`] lists
//! them all, each also in a noisy version, and [`export`] writes one as JSON for the peer harness (`peers/python`).

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde_json::json;

use crate::proposer::{Observation, Problem, ProposerConfig, build_for};
use crate::space::Kind;
use crate::{Objective, Point, Space};

/// A problem with a known answer: a function to maximise, where, with what budget, and what counts as found.
#[derive(Debug, Clone)]
pub struct Landscape {
    /// A unique name: the kind, then `/table` for the table-restricted form and `/noisy` for the noisy one.
    pub name: String,
    /// The kind (`ridge`, `michalewicz`, `needle`, `kinetics`).
    pub kind: &'static str,
    /// Where the proposer searches.
    pub space: Space,
    /// The true (noise-free) value at a point of the space, maximised.
    pub value: fn(&Point) -> f64,
    /// The experiments a run may use.
    pub budget: usize,
    /// The largest true value the proposer may choose (over the table, for a table-restricted form).
    pub optimum: f64,
    /// The true value that counts as having found the optimum.
    pub target: f64,
    /// How the target was set, for the report.
    pub rule: String,
    /// The standard deviation of the measurement noise (zero for a noise-free landscape).
    pub noise: f64,
    /// The rows a table-restricted proposer must choose among.
    pub table: Option<Vec<Point>>,
}

impl Landscape {
    /// A continuous (or mixed) landscape whose target is `fraction` of its optimum `optimum` (positive).
    pub fn continuous(
        kind: &'static str,
        space: Space,
        value: fn(&Point) -> f64,
        budget: usize,
        optimum: f64,
        fraction: f64,
    ) -> Self {
        Landscape {
            name: kind.to_owned(),
            kind,
            space,
            value,
            budget,
            optimum,
            target: fraction * optimum,
            rule: format!("{}% of the optimum {:.4}", fraction * 100.0, optimum),
            noise: 0.0,
            table: None,
        }
    }

    /// The same landscape restricted to `rows`, with a top-1% row as the target.
    pub fn tabled(&self, rows: Vec<Point>, budget: usize) -> Self {
        let name = if self.table.is_some() { self.name.clone() } else { format!("{}/table", self.name) };
        table_landscape(name, self.kind, self.space.clone(), self.value, rows, budget)
    }

    /// The same landscape measured with Gaussian noise of standard deviation `sd`.
    pub fn noisy(&self, sd: f64) -> Self {
        Landscape { name: format!("{}/noisy", self.name), noise: sd, ..self.clone() }
    }

    /// The number of varied parameters, for the size of the initial design (`2d + 1`).
    pub fn dims(&self) -> usize {
        self.space.len()
    }

    /// What the `k`-th experiment (from 0) of seed `seed` measures at `point`: the true value plus that
    /// experiment's noise.
    pub fn measure(&self, point: &Point, noise: &[f64], k: usize) -> f64 {
        (self.value)(point) + self.noise * noise.get(k).copied().unwrap_or(0.0)
    }
}

/// A landscape restricted to `rows` of `space` (each a point of it), whose target is the smallest value among the
/// best 1% of rows (at least one row).
pub fn table_landscape(
    name: String,
    kind: &'static str,
    space: Space,
    value: fn(&Point) -> f64,
    rows: Vec<Point>,
    budget: usize,
) -> Landscape {
    let mut values: Vec<f64> = rows.iter().map(value).collect();
    values.sort_by(|a, b| b.total_cmp(a));
    let k = rows.len().div_ceil(100).max(1);
    let target = values.get(k - 1).copied().unwrap_or(f64::INFINITY);
    let optimum = values.first().copied().unwrap_or(f64::NAN);
    let rule = format!("top 1% of the table ({k} of {} rows, value >= {target:.4})", rows.len());
    Landscape { name, kind, space, value, budget, optimum, target, rule, noise: 0.0, table: Some(rows) }
}

/// The standard normal draws that noise the experiments of seed `seed`: the `k`-th experiment of a run gets the
/// `k`-th. The same for every method, so each sees the same noise at the same step.
pub fn noise_draws(seed: u64, n: usize) -> Vec<f64> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x006E_6F69_7365);
    (0..n)
        .map(|_| {
            // Box–Muller: 1 - u keeps the logarithm's argument in (0, 1].
            let (u, v): (f64, f64) = (rng.r#gen(), rng.r#gen());
            (-2.0 * (1.0 - u).ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        })
        .collect()
}

/// Runs `config` on `landscape` with seed `seed`, one experiment at a time; returns the experiment (from 1) whose
/// true value first reached the target, if one did within the budget.
pub fn landscape_run(config: &ProposerConfig, landscape: &Landscape, seed: u64) -> Option<usize> {
    let problem = Problem {
        space: landscape.space.clone(),
        objectives: vec![Objective::maximize("y")],
        budget: landscape.budget,
        stop: crate::StopRules::default(),
        pool: landscape.table.clone(),
    };
    let mut proposer = build_for(config, &problem, seed);
    let noise = noise_draws(seed, landscape.budget);
    for k in 0..landscape.budget {
        let proposal = proposer.ask(1, &[]).into_iter().next()?;
        if (landscape.value)(&proposal.values) >= landscape.target {
            return Some(k + 1);
        }
        let measured = landscape.measure(&proposal.values, &noise, k);
        proposer.tell(Observation { values: proposal.values, objective: Some(measured) });
    }
    None
}

/// The largest value of `value` over `space`, by a grid of `grid` values per continuous dimension (every level of
/// a categorical one) and then a compass search from the best grid point, down to steps of 1e-9 of each range.
pub fn maximise(space: &Space, value: fn(&Point) -> f64, grid: usize) -> (f64, Point) {
    let d = space.len();
    let counts: Vec<usize> =
        space.dims().iter().map(|dim| if dim.is_categorical() { dim.count().unwrap_or(1) } else { grid }).collect();
    let at =
        |index: &[usize]| -> Vec<f64> {
            (0..d)
                .map(|j| {
                    if space.dims()[j].is_categorical() { index[j] as f64 } else { index[j] as f64 / (grid - 1) as f64 }
                })
                .collect()
        };
    let mut best = (f64::NEG_INFINITY, vec![0.0; d]);
    let mut index = vec![0usize; d];
    'grid: loop {
        let u = at(&index);
        let v = value(&space.from_unit(&u));
        if v > best.0 {
            best = (v, u);
        }
        for j in 0..d {
            index[j] += 1;
            if index[j] < counts[j] {
                continue 'grid;
            }
            index[j] = 0;
        }
        break;
    }
    let (mut fx, mut x) = best;
    let mut step = 1.0 / (grid - 1) as f64;
    while step > 1e-9 {
        let mut moved = false;
        for j in (0..d).filter(|j| !space.dims()[*j].is_categorical()) {
            for sign in [1.0, -1.0] {
                let mut y = x.clone();
                y[j] = (y[j] + sign * step).clamp(0.0, 1.0);
                let v = value(&space.from_unit(&y));
                if v > fx {
                    (fx, x, moved) = (v, y, true);
                }
            }
        }
        if !moved {
            step /= 2.0;
        }
    }
    (fx, space.from_unit(&x))
}

/// A space's dimensions as the peer harness reads them: each one's name, kind, and range or levels.
pub(crate) fn export_dims(space: &Space) -> Vec<serde_json::Value> {
    space
        .dims()
        .iter()
        .map(|d| match &d.kind {
            Kind::Categorical { levels, .. } => json!({
                "name": d.name,
                "type": "categorical",
                "levels": levels.iter().map(|l| json!({"label": l.label, "value": l.value})).collect::<Vec<_>>(),
            }),
            Kind::Integer { step } => {
                json!({"name": d.name, "type": "integer", "min": d.min, "max": d.max, "step": step})
            }
            Kind::Continuous => json!({"name": d.name, "type": "continuous", "min": d.min, "max": d.max}),
        })
        .collect()
}

/// A landscape as JSON for the peer harness: the space (each dimension's name, kind, range or levels), the budget,
/// the target, the noise, the initial design size, the table's rows with their true values (in the space's
/// dimension order, categorical dimensions by level value), and each seed's noise draws.
pub fn export(landscape: &Landscape, seeds: usize) -> serde_json::Value {
    let dims = export_dims(&landscape.space);
    let names: Vec<&str> = landscape.space.dims().iter().map(|d| d.name.as_str()).collect();
    let table = landscape.table.as_ref().map(|rows| {
        json!({
            "rows": rows.iter().map(|p| names.iter().map(|n| p[*n]).collect::<Vec<f64>>()).collect::<Vec<_>>(),
            "values": rows.iter().map(landscape.value).collect::<Vec<f64>>(),
        })
    });
    json!({
        "name": landscape.name,
        "kind": landscape.kind,
        "dims": dims,
        "budget": landscape.budget,
        "initial": 2 * landscape.dims() + 1,
        "optimum": landscape.optimum,
        "target": landscape.target,
        "rule": landscape.rule,
        "noise_sd": landscape.noise,
        "table": table,
        "noise": (0..seeds as u64).map(|s| noise_draws(s, landscape.budget)).collect::<Vec<_>>(),
    })
}

/// The points of a fixed Owen-scrambled Sobol sequence over the continuous dimensions of `space`, `per_level` for
/// every level of its categorical dimension (at most one), as a table of conditions.
pub fn sobol_table(space: &Space, per_level: usize, scramble: u32) -> Vec<Point> {
    let d = space.len();
    let categorical: Vec<usize> = (0..d).filter(|j| space.dims()[*j].is_categorical()).collect();
    let levels = categorical.first().and_then(|j| space.dims()[*j].count()).unwrap_or(1);
    let continuous = d - categorical.len();
    let mut rows = Vec::with_capacity(per_level * levels);
    for level in 0..levels {
        for c in crate::proposer::sobol_points(per_level, continuous, scramble.wrapping_add(level as u32)) {
            let mut it = c.into_iter();
            let u: Vec<f64> = (0..d)
                .map(|j| if categorical.contains(&j) { level as f64 } else { it.next().unwrap_or(0.5) })
                .collect();
            rows.push(space.from_unit(&u));
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_is_standard_normal_and_fixed_by_the_seed() {
        let z = noise_draws(3, 20_000);
        assert_eq!(z, noise_draws(3, 20_000));
        assert_ne!(z[..5], noise_draws(4, 5)[..]);
        let mean = z.iter().sum::<f64>() / z.len() as f64;
        let var = z.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / z.len() as f64;
        assert!(mean.abs() < 0.03 && (var - 1.0).abs() < 0.05, "{mean} {var}");
    }

    #[test]
    fn every_landscape_has_a_reachable_target_and_a_unique_name() {
        let all = crate::bench::suite();
        assert_eq!(all.len(), 14);
        for (i, l) in all.iter().enumerate() {
            assert!(l.target <= l.optimum && l.target > 0.0, "{}: {} vs {}", l.name, l.target, l.optimum);
            assert!(all[..i].iter().all(|o| o.name != l.name), "{}", l.name);
            if let Some(rows) = &l.table {
                let hits = rows.iter().filter(|p| (l.value)(p) >= l.target).count();
                assert_eq!(hits, rows.len().div_ceil(100), "{}", l.name);
                assert!(rows.iter().all(|p| l.space.contains(p)), "{}", l.name);
            }
        }
    }

    #[test]
    fn the_export_carries_the_table_and_the_noise() {
        let l = super::super::needle::table().noisy(2.0);
        let v = export(&l, 3);
        assert_eq!(v["table"]["rows"].as_array().unwrap().len(), l.table.as_ref().unwrap().len());
        assert_eq!(v["noise"].as_array().unwrap().len(), 3);
        assert_eq!(v["noise"][1].as_array().unwrap().len(), l.budget);
        assert_eq!(v["initial"], 2 * 4 + 1);
    }
}
