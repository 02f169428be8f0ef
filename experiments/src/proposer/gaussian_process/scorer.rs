//! How a proposal's candidates are scored: the acquisition function of a model (with its beliefs about experiments
//! in flight) over coordinates, weighted by the probability of success, and kept away from the experiments in
//! flight and the batch's other proposals.

use super::super::search::Scorer;
use super::super::{Acquisition, distance2};
use crate::space::Space;
use crate::surrogate::classifier::Feasibility;
use crate::surrogate::gp::Gp;

/// The acquisition function of a model (with its fantasies) over coordinates, weighted by feasibility.
pub(super) struct ModelScorer<'a> {
    pub(super) space: &'a Space,
    pub(super) gp: &'a Gp,
    pub(super) best: f64,
    pub(super) acquisition: Acquisition,
    pub(super) feasibility: Option<&'a Feasibility>,
    pub(super) coordinate_features: Vec<Option<usize>>,
    /// Levels not to propose now (dimension, level's unit value): they score minus infinity.
    pub(super) avoid: &'a [(usize, f64)],
    /// Experiments in flight and proposals of this ask: a point within [`CROWD`] of one scores minus infinity.
    pub(super) crowd: &'a [Vec<f64>],
}

/// How close (in coordinates) a proposal may come to an experiment in flight or another proposal of its batch: 2 %
/// of a parameter's range. Closer, the two are one experiment as far as a lab can tell (48.0 and 48.4 uL of a
/// 10 to 100 uL range), and a confident model's expected improvement, which the believed pending points leave
/// slightly positive beside each of them, filled whole batches with such twins.
pub(super) const CROWD: f64 = 0.02;

impl ModelScorer<'_> {
    fn avoided(&self, unit: &[f64]) -> bool {
        self.avoid.iter().any(|&(j, u)| unit.get(j).is_some_and(|&v| (self.space.dims()[j].snap(v) - u).abs() < 1e-9))
    }
}

impl Scorer for ModelScorer<'_> {
    fn score(&self, units: &[Vec<f64>]) -> Vec<f64> {
        let features: Vec<Vec<f64>> = units.iter().map(|u| self.space.features(u)).collect();
        let predictions = self.gp.predict(&features);
        let feasible = self.feasibility.map(|f| f.probability(&features));
        predictions
            .iter()
            .enumerate()
            .map(|(i, (m, v))| {
                if self.avoided(&units[i]) || self.crowd.iter().any(|c| distance2(&units[i], c) < CROWD * CROWD) {
                    return f64::NEG_INFINITY;
                }
                let a = self.acquisition.value(*m, *v, self.best);
                match &feasible {
                    None => a,
                    Some(p) => combine(self.acquisition, a, p[i].max(1e-300).ln()),
                }
            })
            .collect()
    }

    fn score_gradient(&self, unit: &[f64]) -> (f64, Vec<f64>) {
        let x = self.space.features(unit);
        let g = self.gp.predict_gradient(&x);
        let (mut value, grad) =
            self.acquisition.value_gradient(g.mean, g.variance, &g.d_mean, &g.d_variance, self.best);
        let mut grad = grad;
        if let Some(f) = self.feasibility {
            let (lp, dlp) = f.log_probability_gradient(&x);
            let a = value;
            value = combine(self.acquisition, a, lp);
            if self.acquisition.is_log_scale() || matches!(self.acquisition, Acquisition::UpperConfidenceBound { .. }) {
                grad.iter_mut().zip(&dlp).for_each(|(g, d)| *g += d);
            } else {
                // d(EI P) = P dEI + EI P d ln P.
                let p = lp.exp();
                grad.iter_mut().zip(&dlp).for_each(|(g, d)| *g = p * *g + a * p * d);
            }
        }
        let out = self.coordinate_features.iter().map(|f| f.map_or(0.0, |k| grad[k])).collect();
        (value, out)
    }
}

/// An acquisition value `a` weighted by the log-probability of success `lp`.
fn combine(acquisition: Acquisition, a: f64, lp: f64) -> f64 {
    match acquisition {
        Acquisition::ExpectedImprovement => a * lp.exp(),
        // On log scales the weight adds; UCB has no natural zero, so the log-probability acts as a penalty in
        // standardised units.
        _ => a + lp,
    }
}
