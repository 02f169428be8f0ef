//! How a proposal's candidates are scored: the acquisition function of a model (with its beliefs about experiments
//! in flight) over coordinates, weighted by the probability of success, and kept away from the experiments in
//! flight and the batch's other proposals.

use super::super::search::{Scorer, best_within_bounds, first_best};
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

/// How many candidates' exact variances [`ModelScorer`]'s `best` computes at a time, best bound first.
const EXACT_AT_ONCE: usize = 64;

impl ModelScorer<'_> {
    /// Whether `unit` is not to be proposed now: an avoided level, or too close to a point in flight.
    fn excluded(&self, unit: &[f64]) -> bool {
        let avoided = self
            .avoid
            .iter()
            .any(|&(j, u)| unit.get(j).is_some_and(|&v| (self.space.dims()[j].snap(v) - u).abs() < 1e-9));
        avoided || self.crowd.iter().any(|c| distance2(unit, c) < CROWD * CROWD)
    }

    /// The acquisition value of a prediction, weighted by the log-probability of success `log_feasible`, if any.
    fn value(&self, mean: f64, variance: f64, log_feasible: Option<f64>) -> f64 {
        let a = self.acquisition.value(mean, variance, self.best);
        log_feasible.map_or(a, |lp| combine(self.acquisition, a, lp))
    }

    /// Each point's log-probability of success, if the model has a feasibility classifier.
    fn log_feasible(&self, features: &[Vec<f64>]) -> Option<Vec<f64>> {
        self.feasibility.map(|f| f.probability(features).into_iter().map(|p| p.max(1e-300).ln()).collect())
    }
}

impl Scorer for ModelScorer<'_> {
    fn score(&self, units: &[Vec<f64>]) -> Vec<f64> {
        let features: Vec<Vec<f64>> = units.iter().map(|u| self.space.features(u)).collect();
        let predictions = self.gp.predict(&features);
        let feasible = self.log_feasible(&features);
        predictions
            .iter()
            .enumerate()
            .map(|(i, (m, v))| {
                if self.excluded(&units[i]) {
                    return f64::NEG_INFINITY;
                }
                self.value(*m, *v, feasible.as_ref().map(|p| p[i]))
            })
            .collect()
    }

    /// Over a pool of thousands of rows the variances' solves are most of the work, so when the acquisition grows
    /// with the variance, each point's value is first bounded with its variance's bound
    /// ([`Bounded`](crate::surrogate::gp::Bounded)), and exact variances are computed best bound first until no
    /// bound left can beat the best exact value. The point found is the one [`Scorer::score`] would give.
    fn best(&self, units: &[Vec<f64>]) -> Option<(usize, f64)> {
        if !self.acquisition.grows_with_variance() {
            return first_best(self.score(units).into_iter().enumerate());
        }
        let features: Vec<Vec<f64>> = units.iter().map(|u| self.space.features(u)).collect();
        let predictions = self.gp.predict_bounded(&features);
        let (means, variances) = (predictions.means(), predictions.variance_bounds());
        let feasible = self.log_feasible(&features);
        let lp = |i: usize| feasible.as_ref().map(|p| p[i]);
        let bounds: Vec<(usize, f64)> = (0..units.len())
            .filter(|&i| !self.excluded(&units[i]))
            .map(|i| (i, self.value(means[i], variances[i], lp(i))))
            .collect();
        best_within_bounds(bounds, EXACT_AT_ONCE, |which| {
            let exact = predictions.variances(which);
            which.iter().zip(exact).map(|(&i, v)| self.value(means[i], v, lp(i))).collect()
        })
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
