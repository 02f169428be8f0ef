//! Predictions at many points whose variances are computed only where they are needed.
//!
//! A mean costs one pass over the cross-covariances, a variance a triangular solve against every training point
//! (`n²/2` operations each): over a table of thousands of rows, the solves are most of a proposal. But an
//! acquisition that grows with the variance (expected improvement, its logarithm, the upper confidence bound)
//! only needs exact variances where an upper bound could still win. A point's variance given all the results is
//! at most its variance given any one of them, `s² − k_i² / K_ii`, so the training point it is most correlated
//! with bounds it for free ([`Bounded::variance_bounds`]); the caller computes exact variances, best bound first,
//! until no remaining bound can beat the best exact value. An exact variance here is the same, to the bit, as
//! [`Gp::predict`]'s for that point.

use super::Gp;
use crate::surrogate::linalg::solve_lower_many;

/// How far above the single-point bound a computed variance may come by rounding, relative to the signal
/// variance: the solve's rounding is about `n` units in the last place, far below this.
const ROUNDING: f64 = 1e-9;

/// The predictions of one model at many points: every mean, and variances on demand.
pub struct Bounded<'a> {
    gp: &'a Gp,
    m: usize,
    /// The cross-covariances, `n`×`m` row-major (as [`Gp::cross_matrix`]).
    ks: Vec<f64>,
    means: Vec<f64>,
}

impl Gp {
    /// The model's predictions at `points`, means now and variances on demand.
    pub fn predict_bounded(&self, points: &[Vec<f64>]) -> Bounded<'_> {
        let m = points.len();
        let ks = self.cross_matrix(points);
        let mut means = vec![self.mean; m];
        for i in 0..self.n {
            let a = self.alpha[i];
            for (mu, k) in means.iter_mut().zip(&ks[i * m..(i + 1) * m]) {
                *mu += a * k;
            }
        }
        Bounded { gp: self, m, ks, means }
    }
}

impl Bounded<'_> {
    /// The posterior mean at each point.
    pub fn means(&self) -> &[f64] {
        &self.means
    }

    /// An upper bound on each point's latent variance: its variance given only the training point it is most
    /// correlated with, and a margin for rounding.
    pub fn variance_bounds(&self) -> Vec<f64> {
        let (gp, m, n) = (self.gp, self.m, self.gp.n);
        // The diagonal of K = L Lᵀ: each training point's prior variance with its noise.
        let diagonal: Vec<f64> = (0..n).map(|i| gp.l[i * n..i * n + i + 1].iter().map(|v| v * v).sum()).collect();
        let mut explained = vec![0.0_f64; m];
        for (i, kii) in diagonal.iter().enumerate() {
            for (e, k) in explained.iter_mut().zip(&self.ks[i * m..(i + 1) * m]) {
                *e = e.max(k * k / kii);
            }
        }
        explained.iter().map(|e| (gp.signal - e + ROUNDING * gp.signal).clamp(0.0, gp.signal)).collect()
    }

    /// Every point's mean and latent variance, with one solve for all of them.
    pub(super) fn all(mut self) -> Vec<(f64, f64)> {
        let vars = latent_variances(self.gp, &mut self.ks, self.m);
        self.means.into_iter().zip(vars).collect()
    }

    /// The latent variances at the points `which` (indices into the points given), exactly as [`Gp::predict`]
    /// computes them.
    pub fn variances(&self, which: &[usize]) -> Vec<f64> {
        let (gp, m, n, w) = (self.gp, self.m, self.gp.n, which.len());
        let mut ks = vec![0.0; n * w];
        for i in 0..n {
            let row = &self.ks[i * m..(i + 1) * m];
            for (k, &j) in ks[i * w..(i + 1) * w].iter_mut().zip(which) {
                *k = row[j];
            }
        }
        latent_variances(gp, &mut ks, w)
    }
}

/// The latent variances of the `m` points whose cross-covariances are `ks` (`n`×`m`, solved in place).
fn latent_variances(gp: &Gp, ks: &mut [f64], m: usize) -> Vec<f64> {
    let n = gp.n;
    // Columns are points: one blocked triangular solve gives every variance.
    solve_lower_many(&gp.l, n, ks, m);
    let mut vars = vec![gp.signal; m];
    for i in 0..n {
        for (v, k) in vars.iter_mut().zip(&ks[i * m..(i + 1) * m]) {
            *v -= k * k;
        }
    }
    vars.into_iter().map(|v| v.max(0.0)).collect()
}

#[cfg(test)]
mod tests {
    use crate::surrogate::gp::{Gp, Hyper, Mean};

    #[test]
    fn exact_variances_match_the_predictions_and_stay_under_their_bounds() {
        let x: Vec<Vec<f64>> = (0..30).map(|i| vec![(i as f64 * 0.37) % 1.0, (i as f64 * 0.61) % 1.0]).collect();
        let y: Vec<f64> = x.iter().map(|p| (5.0 * p[0]).sin() + p[1] * p[1]).collect();
        let gp = Gp::fit(&x, &y, &Hyper::new(2, 0.3, 1e-4), Mean::Profiled).unwrap();
        let points: Vec<Vec<f64>> = (0..200).map(|i| vec![(i as f64 * 0.013) % 1.0, (i as f64 * 0.29) % 1.0]).collect();
        let full = gp.predict(&points);
        let bounded = gp.predict_bounded(&points);
        let which: Vec<usize> = (0..points.len()).rev().step_by(3).collect();
        let exact = bounded.variances(&which);
        let bounds = bounded.variance_bounds();
        for (j, v) in which.iter().zip(&exact) {
            assert_eq!(full[*j].0.to_bits(), bounded.means()[*j].to_bits());
            assert_eq!(full[*j].1.to_bits(), v.to_bits());
        }
        for (j, (_, v)) in full.iter().enumerate() {
            assert!(*v <= bounds[j], "point {j}: variance {v} above its bound {}", bounds[j]);
        }
        // The bound is informative: near a training point it is far below the prior variance.
        let near = gp.predict_bounded(&x[..1]).variance_bounds()[0];
        assert!(near < 1e-2 * gp.signal, "{near}");
    }
}
