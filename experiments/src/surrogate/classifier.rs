//! The feasibility classifier: the probability that an experiment at a point succeeds, learned from failures.
//!
//! A failed experiment (an instrument fault, a mixture that would not dissolve, a reading out of range) says
//! something about its neighbourhood, so it is data, not noise to drop. This module fits a Gaussian-process
//! classifier with a probit link, `P(success | f) = Φ(f)`, by the Laplace approximation (Rasmussen & Williams,
//! "Gaussian Processes for Machine Learning", algorithm 3.1). A linear classifier (logistic regression) cannot
//! say "failures happen near here" about a pocket inside the space; a Gaussian process can.
//!
//! At the Laplace mode, the latent posterior equals a Gaussian-process regression on pseudo-targets
//! `f̂ + W⁻¹∇log p(y|f̂)` with per-point noise `W⁻¹`, so the classifier reuses [`Gp`] for prediction and its
//! exact gradients. The predictive probability is `Φ(μ / √(1 + σ²))`.
//!
//! The kernel's length scales come from the caller (the objective model's, which are estimated from many more
//! results than there are failures); the latent prior has variance [`SIGNAL`] and a constant mean at the probit
//! of the smoothed success rate, so far from every experiment the probability of success is the rate seen so far.

use super::gp::{Gp, GpError, Hyper, Mean};
use crate::proposer::acquisition::{inverse_normal_cdf, log_normal_cdf, normal_pdf};

/// The latent prior variance: probits within about ±2 standard deviations, so probabilities from 0.02 to 0.98.
pub const SIGNAL: f64 = 4.0;
/// The largest pseudo-noise, for points the classifier is certain about.
const MAX_NOISE: f64 = 1e8;
/// Newton iterations of the mode search.
const ITERATIONS: usize = 30;

/// A fitted feasibility classifier.
#[derive(Debug, Clone)]
pub struct Feasibility {
    latent: Gp,
    prior_mean: f64,
}

/// `φ(z)/Φ(z)`, without overflow for very negative `z`.
fn mills(z: f64) -> f64 {
    (normal_pdf(z).ln() - log_normal_cdf(z)).exp()
}

impl Feasibility {
    /// Fits the classifier to points `x` and whether each succeeded, with kernel length scales `length_scales`.
    pub fn fit(x: &[Vec<f64>], succeeded: &[bool], length_scales: &[f64]) -> Result<Feasibility, GpError> {
        let n = x.len();
        if n == 0 || succeeded.len() != n {
            return Err(GpError::Data(format!("{n} points, {} labels", succeeded.len())));
        }
        let successes = succeeded.iter().filter(|s| **s).count();
        // Far from every point the predictive probability is Φ(m / √(1 + s²)); m makes that the smoothed rate.
        let prior_mean = (1.0 + SIGNAL).sqrt() * inverse_normal_cdf((successes as f64 + 1.0) / (n as f64 + 2.0));
        let hyper = Hyper {
            kernel: super::gp::Kernel::Matern52,
            log_length_scales: length_scales.iter().map(|l| l.ln()).collect(),
            log_signal: SIGNAL.ln(),
            log_noise: (1e-6f64).ln(),
            additive: None,
        };
        let labels: Vec<f64> = succeeded.iter().map(|s| if *s { 1.0 } else { -1.0 }).collect();
        // Newton's method on the latent deviations from the prior mean. Each step is
        // f ← K (K + W⁻¹)⁻¹ (f + W⁻¹ ∇log p(y|f)): a regression on pseudo-targets with per-point noise W⁻¹, whose
        // posterior mean at the training points is the new f. The probit likelihood is log-concave, so the steps
        // converge without a line search.
        let mut f = vec![0.0; n];
        for _ in 0..ITERATIONS {
            let (grad, w) = newton_terms(&f, &labels, prior_mean);
            let targets: Vec<f64> = (0..n).map(|i| f[i] + grad[i] / w[i]).collect();
            let noise: Vec<f64> = w.iter().map(|w| 1.0 / w).collect();
            let next = Gp::fit_with_noise(x, &targets, &hyper, noise, Mean::Fixed(0.0))?.training_means();
            let change = next.iter().zip(&f).fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
            f = next;
            if change < 1e-9 {
                break;
            }
        }
        let (grad, w) = newton_terms(&f, &labels, prior_mean);
        let targets: Vec<f64> = (0..n).map(|i| f[i] + prior_mean + grad[i] / w[i]).collect();
        let noise: Vec<f64> = w.iter().map(|w| 1.0 / w).collect();
        let latent = Gp::fit_with_noise(x, &targets, &hyper, noise, Mean::Fixed(prior_mean))?;
        Ok(Feasibility { latent, prior_mean })
    }

    /// The probability of success at each point.
    pub fn probability(&self, points: &[Vec<f64>]) -> Vec<f64> {
        self.latent.predict(points).into_iter().map(|(m, v)| log_normal_cdf(m / (1.0 + v).sqrt()).exp()).collect()
    }

    /// The natural logarithm of the probability of success at `p`, and its gradient.
    pub fn log_probability_gradient(&self, p: &[f64]) -> (f64, Vec<f64>) {
        let g = self.latent.predict_gradient(p);
        let s = (1.0 + g.variance).sqrt();
        let a = g.mean / s;
        let ratio = mills(a);
        let grad = g
            .d_mean
            .iter()
            .zip(&g.d_variance)
            .map(|(dm, dv)| ratio * (dm / s - g.mean * dv / (2.0 * s * s * s)))
            .collect();
        (log_normal_cdf(a), grad)
    }

    /// The probability of success far from every experiment: the smoothed success rate.
    pub fn prior_probability(&self) -> f64 {
        log_normal_cdf(self.prior_mean / (1.0 + SIGNAL).sqrt()).exp()
    }
}

/// The likelihood's gradient and negative Hessian (diagonal) at latent deviations `f` from `prior_mean`.
fn newton_terms(f: &[f64], labels: &[f64], prior_mean: f64) -> (Vec<f64>, Vec<f64>) {
    f.iter()
        .zip(labels)
        .map(|(f, y)| {
            let z = y * (f + prior_mean);
            let r = mills(z);
            (y * r, (r * r + z * r).max(1.0 / MAX_NOISE))
        })
        .unzip()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_lower_the_probability_of_success_near_them() {
        // Successes along a line, failures clustered around (0.8, 0.8).
        let mut x = Vec::new();
        let mut ok = Vec::new();
        for i in 0..10 {
            x.push(vec![i as f64 / 9.0, 0.2]);
            ok.push(true);
        }
        for (a, b) in [(0.8, 0.8), (0.75, 0.85), (0.85, 0.75)] {
            x.push(vec![a, b]);
            ok.push(false);
        }
        let c = Feasibility::fit(&x, &ok, &[0.2, 0.2]).unwrap();
        let p = c.probability(&[vec![0.8, 0.8], vec![0.5, 0.2], vec![0.1, 0.9]]);
        assert!(p[0] < 0.3, "{p:?}");
        assert!(p[1] > 0.8, "{p:?}");
        assert!(p[0] < p[2] && p[2] < p[1], "{p:?}");
        let (lp, grad) = c.log_probability_gradient(&[0.7, 0.7]);
        assert!((lp.exp() - c.probability(&[vec![0.7, 0.7]])[0]).abs() < 1e-12);
        // Moving away from the failures (down and left) raises the probability.
        assert!(grad[0] < 0.0 && grad[1] < 0.0, "{grad:?}");
        let h = 1e-6;
        let up = c.log_probability_gradient(&[0.7 + h, 0.7]).0;
        let down = c.log_probability_gradient(&[0.7 - h, 0.7]).0;
        assert!(((up - down) / (2.0 * h) - grad[0]).abs() < 1e-4 * (1.0 + grad[0].abs()));
    }

    #[test]
    fn without_failures_everything_is_likely_feasible() {
        let x: Vec<Vec<f64>> = (0..5).map(|i| vec![i as f64 / 4.0]).collect();
        let c = Feasibility::fit(&x, &[true; 5], &[0.3]).unwrap();
        assert!(c.probability(&[vec![0.5], vec![3.0]]).iter().all(|p| *p > 0.7));
        assert!((c.prior_probability() - 6.0 / 7.0).abs() < 1e-6);
    }
}
