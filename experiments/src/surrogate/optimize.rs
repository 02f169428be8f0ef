//! Local minimisation with gradients over a convex set: projected limited-memory BFGS.
//!
//! Both things a Bayesian optimiser tunes are smooth and cheap to differentiate: a model's hyperparameters
//! (the log posterior's gradient is exact) and the point an acquisition function is maximised at (the model's
//! mean and variance have exact gradients). Quasi-Newton steps need far fewer evaluations there than a
//! derivative-free search, which matters at hundreds of observations where one evaluation costs a triangular
//! solve. The feasible set (a box, possibly cut by linear constraints) enters only through a projection, so the
//! same routine serves every space: each trial point is projected, and the Armijo condition is tested along the
//! projected path, which keeps the method monotone even when bounds are active.

/// Settings of [`minimize`].
#[derive(Debug, Clone, Copy)]
pub struct Lbfgs {
    /// The largest number of iterations.
    pub iterations: usize,
    /// How many past steps the inverse-Hessian approximation keeps.
    pub memory: usize,
    /// The largest coordinate change of a first step, which keeps the first trial inside the region of interest.
    pub first_step: f64,
    /// Iteration stops once a step moves no coordinate by more than this.
    pub x_tolerance: f64,
    /// Iteration stops once a step lowers the value by less than this (relative to its size plus one).
    pub f_tolerance: f64,
}

impl Default for Lbfgs {
    fn default() -> Self {
        Lbfgs { iterations: 60, memory: 6, first_step: 0.1, x_tolerance: 1e-9, f_tolerance: 1e-12 }
    }
}

/// The result of [`minimize`].
#[derive(Debug, Clone)]
pub struct Minimum {
    /// Where the search ended.
    pub x: Vec<f64>,
    /// The value there.
    pub value: f64,
    /// How many times the function was evaluated.
    pub evaluations: usize,
}

/// Minimises `f` (value and gradient, or `None` where it is undefined) from `x0`, keeping every iterate in the set
/// `project` maps onto. `None` when `f` is undefined at the projected start.
pub fn minimize(
    f: &mut dyn FnMut(&[f64]) -> Option<(f64, Vec<f64>)>,
    x0: &[f64],
    project: &dyn Fn(&mut [f64]),
    settings: Lbfgs,
) -> Option<Minimum> {
    let mut x = x0.to_vec();
    project(&mut x);
    let mut evaluations = 1;
    let (mut fx, mut g) = f(&x).filter(|(v, g)| v.is_finite() && g.iter().all(|x| x.is_finite()))?;
    let mut memory: Vec<(Vec<f64>, Vec<f64>, f64)> = Vec::new();
    for _ in 0..settings.iterations {
        let mut d = direction(&g, &memory);
        let mut slope = dot(&g, &d);
        if slope >= 0.0 || !slope.is_finite() {
            memory.clear();
            d = g.iter().map(|v| -v).collect();
            slope = dot(&g, &d);
        }
        if slope == 0.0 {
            break;
        }
        let mut step = if memory.is_empty() {
            let largest = d.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            if largest > 0.0 { (settings.first_step / largest).min(1.0) } else { 1.0 }
        } else {
            1.0
        };
        let mut accepted = None;
        for _ in 0..30 {
            let mut trial: Vec<f64> = x.iter().zip(&d).map(|(a, b)| a + step * b).collect();
            project(&mut trial);
            let moved: Vec<f64> = trial.iter().zip(&x).map(|(a, b)| a - b).collect();
            if moved.iter().all(|m| m.abs() <= settings.x_tolerance * 1e-3) {
                break;
            }
            evaluations += 1;
            if let Some((ft, gt)) = f(&trial).filter(|(v, g)| v.is_finite() && g.iter().all(|x| x.is_finite()))
                && ft <= fx + 1e-4 * dot(&g, &moved)
            {
                accepted = Some((trial, ft, gt, moved));
                break;
            }
            step *= 0.5;
        }
        let Some((trial, ft, gt, moved)) = accepted else { break };
        let change = gt.iter().zip(&g).map(|(a, b)| a - b).collect::<Vec<f64>>();
        let curvature = dot(&moved, &change);
        if curvature > 1e-12 * dot(&change, &change).sqrt() * dot(&moved, &moved).sqrt() && curvature > 0.0 {
            if memory.len() == settings.memory {
                memory.remove(0);
            }
            memory.push((moved.clone(), change, 1.0 / curvature));
        }
        let small_step = moved.iter().all(|m| m.abs() <= settings.x_tolerance);
        let small_gain = fx - ft <= settings.f_tolerance * (1.0 + fx.abs());
        x = trial;
        fx = ft;
        g = gt;
        if small_step || small_gain {
            break;
        }
    }
    Some(Minimum { x, value: fx, evaluations })
}

/// The quasi-Newton direction `-H g` by the two-loop recursion.
fn direction(g: &[f64], memory: &[(Vec<f64>, Vec<f64>, f64)]) -> Vec<f64> {
    let mut q: Vec<f64> = g.to_vec();
    let mut alphas = Vec::with_capacity(memory.len());
    for (s, y, rho) in memory.iter().rev() {
        let a = rho * dot(s, &q);
        for (qi, yi) in q.iter_mut().zip(y) {
            *qi -= a * yi;
        }
        alphas.push(a);
    }
    if let Some((s, y, _)) = memory.last() {
        let gamma = dot(s, y) / dot(y, y);
        if gamma.is_finite() && gamma > 0.0 {
            for qi in &mut q {
                *qi *= gamma;
            }
        }
    }
    for ((s, y, rho), a) in memory.iter().zip(alphas.into_iter().rev()) {
        let b = rho * dot(y, &q);
        for (qi, si) in q.iter_mut().zip(s) {
            *qi += (a - b) * si;
        }
    }
    q.iter().map(|v| -v).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rosenbrock(x: &[f64]) -> Option<(f64, Vec<f64>)> {
        let (a, b) = (x[0], x[1]);
        let v = (1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2);
        Some((v, vec![-2.0 * (1.0 - a) - 400.0 * a * (b - a * a), 200.0 * (b - a * a)]))
    }

    #[test]
    fn finds_the_rosenbrock_minimum() {
        let free = |_: &mut [f64]| {};
        let settings = Lbfgs { iterations: 500, ..Lbfgs::default() };
        let m = minimize(&mut rosenbrock, &[-1.2, 1.0], &free, settings).unwrap();
        assert!((m.x[0] - 1.0).abs() < 1e-5 && (m.x[1] - 1.0).abs() < 1e-5, "{:?}", m.x);
    }

    #[test]
    fn stays_inside_a_box_and_reaches_its_edge() {
        let bowl = |x: &[f64]| {
            Some(((x[0] - 2.0).powi(2) + (x[1] - 0.3).powi(2), vec![2.0 * (x[0] - 2.0), 2.0 * (x[1] - 0.3)]))
        };
        let mut f = bowl;
        let unit = |x: &mut [f64]| x.iter_mut().for_each(|v| *v = v.clamp(0.0, 1.0));
        let m = minimize(&mut f, &[0.1, 0.9], &unit, Lbfgs::default()).unwrap();
        assert!((m.x[0] - 1.0).abs() < 1e-12 && (m.x[1] - 0.3).abs() < 1e-6, "{:?}", m.x);
    }

    #[test]
    fn an_undefined_start_gives_nothing() {
        let mut f = |_: &[f64]| None;
        assert!(minimize(&mut f, &[0.0], &|_: &mut [f64]| {}, Lbfgs::default()).is_none());
    }
}
