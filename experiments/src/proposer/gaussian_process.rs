//! The Gaussian-process proposer: Bayesian optimisation with a space-filling start.
//!
//! The first `initial` proposals are a maximin Latin hypercube, generated once from the seed and handed out in
//! order across asks. After that, and once two successful results at different points exist, every ask fits a
//! Gaussian process (egobox-gp: constant mean, Matérn 5/2 kernel with one length scale per parameter, fitted by
//! maximum likelihood whenever a new result has arrived) to the successful results and picks the point that
//! maximises the acquisition function (log expected improvement by default): a pool of random candidates,
//! the best few refined by compass search.
//!
//! Conventions, all in this module:
//! - inputs are the unit cube of the space; repeated measurements of one point are averaged into one training
//!   point, since an interpolating model cannot hold two values at one place;
//! - outputs are flipped to minimisation ([`crate::Direction::internal`]) and standardised (mean 0, spread 1);
//!   predictions are converted back to the objective's units before they reach a [`Proposal`];
//! - a failed experiment is not training data, but its point counts as measured and is never proposed again;
//! - failed points, experiments in flight, and points already chosen for the same batch are added to the model
//!   as if measured at the model's predicted mean (the Kriging believer). egobox-gp's `update` adds them without
//!   re-optimising the hyperparameters, so the model's uncertainty collapses around them and the next point goes
//!   elsewhere instead of a hair's breadth away.
//!
//! When no model can be used (too few results, all results equal, a failed fit, or an acquisition that is
//! flat everywhere), the proposer falls back to the emptiest point and says why in the proposal's reason.

use egobox_gp::correlation_models::Matern52Corr;
use egobox_gp::mean_models::ConstantMean;
use egobox_gp::{GaussianProcess, GpError, ThetaTuning};
use linfa::prelude::{Dataset, Fit};
use ndarray::{Array1, Array2};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde_json::json;

use super::acquisition::{expected_improvement, log_expected_improvement};
use super::search::{Search, compass, maximize};
use super::space_filling::{design_reason, latin_hypercube, maximin_point, maximin_reason};
use super::{
    Acquisition, History, MIN_DISTANCE, Observation, Point, Proposal, Proposer, distance2, plain_proposal, rng, short,
    too_close,
};
use crate::objective::Objective;
use crate::space::Space;

type Gp = GaussianProcess<f64, ConstantMean, Matern52Corr>;

/// The nugget added to the kernel's diagonal, relative to the process variance. It keeps the factorisation
/// stable when points are close, at the price of a negligible smoothing of noise-free data.
const NUGGET: f64 = 1e-6;
/// The range searched for each `log10(theta)`, where theta is the kernel's inverse length scale on inputs divided
/// by their spread (egobox-gp's default bounds).
const LOG10_THETA: (f64, f64) = (-2.0, 1.0);
/// How many starting points the likelihood maximisation scores (a fixed Latin hypercube in `log10(theta)`, plus
/// egobox-gp's default start), and from how many of the best it climbs.
const LIKELIHOOD_STARTS: usize = 8;
const LIKELIHOOD_CLIMBS: usize = 2;
/// The seed of the likelihood starts: fixed, so the model depends on the data alone.
const LIKELIHOOD_SEED: u64 = 0x5EED;
/// How many of the best results get local candidates around them, and how many each.
const LOCAL_CENTRES: usize = 3;
const LOCAL_CANDIDATES: usize = 64;
/// The half-width, in the unit cube, of the box local candidates are drawn in.
const LOCAL_RADIUS: f64 = 0.05;

/// Why no model could be used for a proposal.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// Fewer than two successful results at different points.
    #[error("{successes} successful result(s) at different points so far, and a model needs 2")]
    TooFewResults {
        /// How many distinct successful points there are.
        successes: usize,
    },
    /// Every successful result has the same value, so a model cannot rank points.
    #[error("every successful result so far has the same value, so a model cannot rank points")]
    Flat,
    /// egobox-gp could not fit the model.
    #[error("fitting the Gaussian process failed: {0}")]
    Fit(String),
    /// The acquisition function is minus infinity or undefined everywhere the search looked.
    #[error("the model sees no chance of improvement anywhere the search looked")]
    NoImprovement,
}

impl From<GpError> for ModelError {
    fn from(e: GpError) -> Self {
        ModelError::Fit(e.to_string())
    }
}

/// A fitted model and the scales that connect it to the objective.
#[derive(Debug, Clone)]
struct Model {
    gp: Gp,
    /// The number of successful observations it was fitted on; a new success makes it stale.
    successes: usize,
    /// The distinct training points.
    inputs: Vec<Vec<f64>>,
    /// Their standardised internal values.
    outputs: Vec<f64>,
    /// Internal value = standardised * `y_std` + `y_mean`.
    y_mean: f64,
    y_std: f64,
    /// The spread of each input over the training points, which egobox-gp divides inputs by before the kernel.
    x_std: Vec<f64>,
}

impl Model {
    fn fit(history: &History, objective: &Objective) -> Result<Model, ModelError> {
        let direction = objective.direction;
        // Average repeated measurements of one point into one training point.
        let mut groups: Vec<(Vec<f64>, f64, usize)> = Vec::new();
        for (u, y) in &history.told {
            let Some(y) = y else { continue };
            let y = direction.internal(*y);
            match groups.iter_mut().find(|(g, _, _)| distance2(g, u) < MIN_DISTANCE * MIN_DISTANCE) {
                Some((_, sum, count)) => {
                    *sum += y;
                    *count += 1;
                }
                None => groups.push((u.clone(), y, 1)),
            }
        }
        if groups.len() < 2 {
            return Err(ModelError::TooFewResults { successes: groups.len() });
        }
        let values: Vec<f64> = groups.iter().map(|(_, sum, count)| sum / *count as f64).collect();
        let n = values.len() as f64;
        let y_mean = values.iter().sum::<f64>() / n;
        let y_std = (values.iter().map(|v| (v - y_mean).powi(2)).sum::<f64>() / n).sqrt();
        if y_std.is_nan() || y_std <= 1e-12 * y_mean.abs().max(1.0) {
            return Err(ModelError::Flat);
        }
        let inputs: Vec<Vec<f64>> = groups.into_iter().map(|(u, _, _)| u).collect();
        let outputs: Vec<f64> = values.iter().map(|v| (v - y_mean) / y_std).collect();
        let d = history.space.len();
        let x = matrix(&inputs, d);
        let y = Array1::from(outputs.clone());
        let gp = fit_gp(&x, &y, NUGGET).or_else(|_| fit_gp(&x, &y, 1e-4))?;
        let x_std = (0..d)
            .map(|j| {
                let mean = inputs.iter().map(|u| u[j]).sum::<f64>() / n;
                let s = (inputs.iter().map(|u| (u[j] - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
                if s > 0.0 { s } else { 1.0 }
            })
            .collect();
        Ok(Model { gp, successes: history.successes(), inputs, outputs, y_mean, y_std, x_std })
    }

    fn best(&self) -> f64 {
        self.outputs.iter().copied().fold(f64::INFINITY, f64::min)
    }

    /// The model's description for a proposal's provenance.
    fn provenance(&self, space: &Space) -> serde_json::Value {
        let theta: Vec<f64> = self.gp.theta().to_vec();
        let length_scales: serde_json::Map<String, serde_json::Value> = space
            .dims
            .iter()
            .enumerate()
            .map(|(j, dim)| {
                let ls = theta.get(j).map_or(f64::NAN, |t| self.x_std[j] / t * dim.width());
                (dim.name.clone(), json!(ls))
            })
            .collect();
        json!({
            "surrogate": "Gaussian process (egobox-gp)",
            "kernel": "Matern 5/2, one length scale per parameter",
            "mean": "constant",
            "theta": theta,
            "length_scales": length_scales,
            "variance": self.gp.variance() * self.y_std * self.y_std,
            "nugget": NUGGET,
            "training_size": self.inputs.len(),
        })
    }
}

/// Fits the Gaussian process by maximum likelihood over its length scales.
///
/// egobox-gp can optimise the hyperparameters itself, but it spreads its restarts over rayon's thread pool, and
/// this crate starts no threads. So the search is done here, single-threaded: each candidate theta is a fit with
/// fixed hyperparameters (a Cholesky factorisation), scored by egobox-gp's reduced likelihood; the best starts are
/// refined by compass search in `log10(theta)`.
fn fit_gp(x: &Array2<f64>, y: &Array1<f64>, nugget: f64) -> Result<Gp, GpError> {
    let d = x.ncols();
    let (lo, hi) = LOG10_THETA;
    let fit_at = |u: &[f64]| -> Result<Gp, GpError> {
        let theta: Array1<f64> = u.iter().map(|u| 10f64.powf(lo + u.clamp(0.0, 1.0) * (hi - lo))).collect();
        Gp::params(ConstantMean::default(), Matern52Corr::default())
            .theta_tuning(ThetaTuning::Fixed(theta))
            .nugget(nugget)
            .fit(&Dataset::new(x.clone(), y.clone()))
    };
    let mut likelihood = |points: &[Vec<f64>]| -> Vec<f64> {
        points
            .iter()
            .map(|u| fit_at(u).ok().map(|gp| gp.likelihood()).filter(|l| l.is_finite()).unwrap_or(f64::NEG_INFINITY))
            .collect()
    };
    // egobox-gp's default start, theta = 0.1, then a spread of others.
    let mut starts = vec![vec![(-1.0 - lo) / (hi - lo); d]];
    starts.extend(latin_hypercube(LIKELIHOOD_STARTS, d, &mut rng(LIKELIHOOD_SEED)));
    let values = likelihood(&starts);
    let mut order: Vec<usize> = (0..starts.len()).collect();
    order.sort_by(|a, b| values[*b].total_cmp(&values[*a]).then(a.cmp(b)));
    let climb = Search { pool: 0, starts: LIKELIHOOD_CLIMBS, step: 0.15, min_step: 0.005, iterations: 40 };
    let mut best: Option<(Vec<f64>, f64)> = None;
    for &i in order.iter().take(LIKELIHOOD_CLIMBS).filter(|i| values[**i].is_finite()) {
        let (u, value) = compass(&mut likelihood, starts[i].clone(), values[i], climb);
        if best.as_ref().is_none_or(|(_, b)| value > *b) {
            best = Some((u, value));
        }
    }
    // With no finite likelihood anywhere, the default start's error is the one worth reporting.
    let u = best.map_or_else(|| starts[0].clone(), |(u, _)| u);
    fit_at(&u)
}

fn matrix(points: &[Vec<f64>], d: usize) -> Array2<f64> {
    Array2::from_shape_fn((points.len(), d), |(i, j)| points[i].get(j).copied().unwrap_or(0.0))
}

/// Adds `u` to `gp` as if measured at the model's prediction there (the Kriging believer). Returns the believed
/// value, or `None` (leaving `gp` unchanged) when the update is numerically impossible.
fn believe(gp: &mut Gp, u: &[f64]) -> Option<f64> {
    let x = matrix(&[u.to_vec()], u.len());
    let mean = *gp.predict(&x).ok()?.first()?;
    if !mean.is_finite() {
        return None;
    }
    let updated = gp.clone().update(&x, &Array1::from_elem(1, mean)).ok()?;
    updated.predict(&x).ok().filter(|p| p.iter().all(|v| v.is_finite()))?;
    *gp = updated;
    Some(mean)
}

/// Proposes by Bayesian optimisation: a Latin hypercube of `initial` points, then a Gaussian-process model and an
/// acquisition function. See the [module documentation](self) for the details.
#[derive(Debug, Clone)]
pub struct GpProposer {
    name: String,
    history: History,
    objective: Objective,
    acquisition: Acquisition,
    design: Vec<Vec<f64>>,
    next_design: usize,
    rng: Xoshiro256PlusPlus,
    model: Option<Model>,
    search: Search,
}

impl GpProposer {
    /// A proposer over `space` optimising `objective`, starting with an `initial`-point Latin hypercube, choosing
    /// later points by `acquisition`, seeded with `seed`.
    pub fn new(space: Space, objective: Objective, initial: usize, acquisition: Acquisition, seed: u64) -> Self {
        let mut rng = rng(seed);
        let design = latin_hypercube(initial, space.len(), &mut rng);
        GpProposer {
            name: format!("gaussian process ({})", acquisition.short_name()),
            history: History::new(space),
            objective,
            acquisition,
            design,
            next_design: 0,
            rng,
            model: None,
            search: Search::default(),
        }
    }

    /// The model fitted to every successful result so far, refitted (hyperparameters included) when a new
    /// success has arrived since the last fit.
    fn model(&mut self) -> Result<Model, ModelError> {
        if let Some(m) = &self.model
            && m.successes == self.history.successes()
        {
            return Ok(m.clone());
        }
        let m = Model::fit(&self.history, &self.objective)?;
        self.model = Some(m.clone());
        Ok(m)
    }

    /// The acquisition value of each point, for a model whose best (standardised, internal) value is `best`.
    fn score(&self, gp: &Gp, best: f64, points: &[Vec<f64>]) -> Vec<f64> {
        let x = matrix(points, self.history.space.len());
        let Ok((mean, var)) = gp.predict_valvar(&x) else { return vec![f64::NEG_INFINITY; points.len()] };
        mean.iter()
            .zip(var.iter())
            .map(|(mu, v)| {
                let sigma = v.max(0.0).sqrt();
                match self.acquisition {
                    Acquisition::LogExpectedImprovement => log_expected_improvement(*mu, sigma, best),
                    Acquisition::ExpectedImprovement => expected_improvement(*mu, sigma, best),
                    Acquisition::UpperConfidenceBound { beta } => beta.max(0.0).sqrt() * sigma - mu,
                }
            })
            .collect()
    }

    /// Candidates near the best results, so the search looks closely where the optimum probably is.
    fn local_candidates(&mut self, model: &Model) -> Vec<Vec<f64>> {
        let mut order: Vec<usize> = (0..model.outputs.len()).collect();
        order.sort_by(|a, b| model.outputs[*a].total_cmp(&model.outputs[*b]).then(a.cmp(b)));
        let d = self.history.space.len();
        let mut out = Vec::with_capacity(LOCAL_CENTRES * LOCAL_CANDIDATES);
        for &i in order.iter().take(LOCAL_CENTRES) {
            for _ in 0..LOCAL_CANDIDATES {
                let offset = super::uniform_point(&mut self.rng, d);
                out.push(model.inputs[i].iter().zip(offset).map(|(c, o)| c + (2.0 * o - 1.0) * LOCAL_RADIUS).collect());
            }
        }
        out
    }

    /// Fills `out` up to `n` proposals with emptiest points, explaining that `why` no model was used.
    fn fill_space(&mut self, n: usize, taken: &mut Vec<Vec<f64>>, out: &mut Vec<Proposal>, why: &ModelError) {
        while out.len() < n {
            let Some((unit, point, distance)) = maximin_point(&self.history.space, taken, &mut self.rng) else { break };
            taken.push(unit);
            let reason = format!("No model this time ({why}). {}", maximin_reason(distance));
            out.push(plain_proposal(point, "space-filling (maximin)", reason));
        }
    }

    fn proposal(&self, model: &Model, gp: &Gp, point: Point, unit: &[f64], value: f64, context: &Context) -> Proposal {
        let direction = self.objective.direction;
        let x = matrix(&[unit.to_vec()], unit.len());
        let (mean, sd) = match gp.predict_valvar(&x) {
            Ok((m, v)) => (m.first().copied(), v.first().map(|v| v.max(0.0).sqrt())),
            Err(_) => (None, None),
        };
        let mean = mean.map(|m| direction.external(m * model.y_std + model.y_mean)).filter(|m| m.is_finite());
        let sd = sd.map(|s| s * model.y_std).filter(|s| s.is_finite());
        let best_observed = direction.external(model.best() * model.y_std + model.y_mean);
        let mut provenance = model.provenance(&self.history.space);
        if let Some(map) = provenance.as_object_mut() {
            map.insert("acquisition".into(), json!(self.acquisition.short_name()));
            if let Acquisition::UpperConfidenceBound { beta } = self.acquisition {
                map.insert("beta".into(), json!(beta));
            }
            map.insert("objective".into(), json!({ "output": self.objective.output, "direction": direction.verb() }));
            map.insert("best_observed".into(), json!(best_observed));
            map.insert("observations".into(), json!(self.history.told.len()));
            map.insert("failed".into(), json!(self.history.failures()));
            map.insert("pending".into(), json!(context.pending));
            map.insert("believed".into(), json!(context.believed));
            map.insert("batch_position".into(), json!(context.batch_position));
            map.insert("candidates_evaluated".into(), json!(context.evaluations));
        }
        let what = match self.acquisition {
            Acquisition::LogExpectedImprovement => "log expected improvement",
            Acquisition::ExpectedImprovement => "expected improvement",
            Acquisition::UpperConfidenceBound { .. } => "upper confidence bound",
        };
        let prediction = match (mean, sd) {
            (Some(m), Some(s)) => format!("predicted {} {} ± {}", self.objective.output, short(m), short(s)),
            _ => format!("no prediction of {}", self.objective.output),
        };
        let believed = match context.believed {
            0 => String::new(),
            1 => "; 1 point that failed, is in flight or is earlier in this batch counts as measured at its predicted value \
                  (Kriging believer)"
                .to_owned(),
            k => format!(
                "; {k} points that failed, are in flight or are earlier in this batch count as measured at their predicted \
                 values (Kriging believer)"
            ),
        };
        let reason = format!(
            "Highest {what} ({}) found by the model: {prediction}, best so far {}{believed}.",
            short(value),
            short(best_observed)
        );
        Proposal {
            values: point,
            strategy: format!("GP {}", self.acquisition.short_name()),
            predicted_mean: mean,
            predicted_sd: sd,
            acquisition: Some(value),
            model: Some(provenance),
            reason,
        }
    }
}

/// Facts about one model-based proposal, for its provenance.
struct Context {
    pending: usize,
    believed: usize,
    batch_position: usize,
    evaluations: usize,
}

impl Proposer for GpProposer {
    fn name(&self) -> &str {
        &self.name
    }

    fn tell(&mut self, observation: Observation) {
        self.history.tell(observation);
    }

    fn ask(&mut self, n: usize, pending: &[Point]) -> Vec<Proposal> {
        let mut taken = self.history.taken(pending);
        let told = self.history.told.len();
        let mut out = Vec::with_capacity(n);
        while out.len() < n && self.next_design < self.design.len() {
            let index = self.next_design;
            self.next_design += 1;
            let (unit, point) = self.history.space.place(&self.design[index]);
            // A design point already measured or in flight (after a restart, say) has been handed out before.
            if too_close(&unit, &taken) {
                continue;
            }
            taken.push(unit);
            out.push(plain_proposal(point, "space-filling (LHS)", design_reason(index, self.design.len())));
        }
        if out.len() == n {
            return out;
        }
        let model = match self.model() {
            Ok(m) => m,
            Err(why) => {
                self.fill_space(n, &mut taken, &mut out, &why);
                return out;
            }
        };
        // Failed points, experiments in flight and this batch's design points are believed at the model's
        // prediction, so the search does not crowd next to them. Only the ones that will yield a result may lower
        // the best value the improvement is measured from.
        let mut gp = model.gp.clone();
        let mut best = model.best();
        let mut believed: Vec<Vec<f64>> = Vec::new();
        let failed = self.history.told.iter().filter(|(_, y)| y.is_none()).map(|(u, _)| (u, false));
        for (u, will_yield) in failed.chain(taken[told..].iter().map(|u| (u, true))) {
            if too_close(u, &model.inputs) || too_close(u, &believed) {
                continue;
            }
            if let Some(v) = believe(&mut gp, u) {
                if will_yield {
                    best = best.min(v);
                }
                believed.push(u.clone());
            }
        }
        let d = self.history.space.len();
        while out.len() < n {
            let extra = self.local_candidates(&model);
            let search = self.search;
            let mut rng = self.rng.clone();
            let found = maximize(|points| self.score(&gp, best, points), d, &taken, extra, search, &mut rng);
            self.rng = rng;
            let Some(found) = found.filter(|f| f.value.is_finite()) else {
                self.fill_space(n, &mut taken, &mut out, &ModelError::NoImprovement);
                break;
            };
            let (unit, point) = self.history.space.place(&found.point);
            if too_close(&unit, &taken) {
                self.fill_space(n, &mut taken, &mut out, &ModelError::NoImprovement);
                break;
            }
            let context = Context {
                pending: pending.len(),
                believed: believed.len(),
                batch_position: out.len(),
                evaluations: found.evaluations,
            };
            out.push(self.proposal(&model, &gp, point, &unit, found.value, &context));
            if let Some(v) = believe(&mut gp, &unit) {
                best = best.min(v);
                believed.push(unit.clone());
            }
            taken.push(unit);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objective::Direction;
    use crate::space::Dim;

    fn history(points: &[(f64, f64)]) -> History {
        let mut h = History::new(Space::new(vec![Dim::new("x", 0.0, 10.0), Dim::new("y", 0.0, 1.0)]));
        for (x, y) in points {
            let f = (x * 0.6).sin() + 0.1 * y;
            h.tell(Observation { values: [("x".to_owned(), *x), ("y".to_owned(), *y)].into(), objective: Some(f) });
        }
        h
    }

    #[test]
    fn the_fitted_model_interpolates_and_beats_the_default_length_scale() {
        let points = [(0.0, 0.1), (1.5, 0.9), (3.0, 0.4), (4.5, 0.7), (6.0, 0.2), (7.5, 0.5), (9.0, 0.8), (10.0, 0.3)];
        let model = Model::fit(&history(&points), &Objective::maximize("f")).unwrap();
        let x = matrix(&model.inputs, 2);
        let predicted = model.gp.predict(&x).unwrap();
        for (p, y) in predicted.iter().zip(&model.outputs) {
            assert!((p - y).abs() < 1e-3, "{p} vs {y}");
        }
        let default = Gp::params(ConstantMean::default(), Matern52Corr::default())
            .theta_tuning(ThetaTuning::Fixed(Array1::from_elem(2, 0.1)))
            .nugget(NUGGET)
            .fit(&Dataset::new(x, Array1::from(model.outputs.clone())))
            .unwrap();
        assert!(model.gp.likelihood() >= default.likelihood());
        // The objective barely depends on `y`, so its length scale (relative to its range) is the longer one.
        let scales = model.provenance(&history(&[]).space)["length_scales"].clone();
        let (lx, ly) = (scales["x"].as_f64().unwrap() / 10.0, scales["y"].as_f64().unwrap());
        assert!(ly > lx, "x {lx}, y {ly}");
    }

    #[test]
    fn maximisation_is_fitted_as_minimisation_of_the_negative() {
        let h = history(&[(1.0, 0.5), (5.0, 0.5), (8.0, 0.5)]);
        let max = Model::fit(&h, &Objective::maximize("f")).unwrap();
        let min = Model::fit(&h, &Objective::minimize("f")).unwrap();
        assert_eq!(max.y_mean, -min.y_mean);
        assert_eq!(max.outputs, min.outputs.iter().map(|v| -v).collect::<Vec<_>>());
        // The best internal value is the largest objective value when maximising.
        let largest = [1.0f64, 5.0, 8.0].map(|x| (x * 0.6).sin() + 0.05).into_iter().fold(f64::MIN, f64::max);
        let best = Direction::Maximize.external(max.best() * max.y_std + max.y_mean);
        assert!((best - largest).abs() < 1e-12, "{best} vs {largest}");
    }

    #[test]
    fn too_few_or_equal_results_give_no_model() {
        let h = history(&[(1.0, 0.5)]);
        assert_eq!(Model::fit(&h, &Objective::maximize("f")).unwrap_err(), ModelError::TooFewResults { successes: 1 });
        let mut h = History::new(Space::new(vec![Dim::new("x", 0.0, 1.0)]));
        for x in [0.2, 0.8] {
            h.tell(Observation { values: [("x".to_owned(), x)].into(), objective: Some(4.0) });
        }
        assert_eq!(Model::fit(&h, &Objective::maximize("f")).unwrap_err(), ModelError::Flat);
    }
}
