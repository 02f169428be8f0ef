//! What a model-based proposal says about itself: its reason in words, its prediction, and the model's provenance
//! (kernel, priors and the noise check, hyperparameters in the parameters' units, the data it was fitted on), which
//! the record keeps with the proposal.

use serde_json::json;

use super::super::acquisition::expected_improvement;
use super::super::search::Found;
use super::super::{Acquisition, Proposal, short};
use super::{GpProposer, Model, NOISY_ABOVE, PAREGO_RHO};
use crate::surrogate::gp::{Additive, Gp};

/// Facts about one model-based proposal, for its provenance.
pub(super) struct Context {
    pub pending: usize,
    pub believed: usize,
    pub batch_position: usize,
    pub best: f64,
    pub feasible: Option<f64>,
    pub front: usize,
}

impl GpProposer {
    pub(super) fn proposal(&self, model: &Model, gp: &Gp, found: &Found, context: &Context) -> Proposal {
        let objectives = &self.history.objectives;
        let x = self.history.space.features(&found.unit);
        let (mean, variance) = gp.predict(&[x])[0];
        let sd = variance.max(0.0).sqrt();
        // With one objective, predictions go back to its units; with several, they stay on the scalarised scale.
        let direction = objectives[0].direction;
        let external = |internal: f64| if model.weights.is_some() { internal } else { direction.external(internal) };
        let predicted_mean = Some(external(model.internal(mean))).filter(|m| m.is_finite());
        let predicted_sd = Some(sd * model.y_std).filter(|s| s.is_finite());
        let best_observed = external(model.internal(model.best));
        let improvement = expected_improvement(mean, sd, context.best) * model.y_std;
        let mut provenance = self.provenance(model, gp);
        if let Some(map) = provenance.as_object_mut() {
            map.insert("acquisition".into(), json!(self.acquisition.short_name()));
            map.insert("acquisition_value".into(), json!(found.value));
            if let Acquisition::UpperConfidenceBound { beta } = self.acquisition {
                map.insert("beta".into(), json!(beta));
            }
            map.insert("best_observed".into(), json!(best_observed));
            map.insert("expected_improvement".into(), json!(improvement));
            map.insert("observations".into(), json!(self.history.told.len()));
            map.insert("failed".into(), json!(self.history.failures()));
            map.insert("pending".into(), json!(context.pending));
            map.insert("believed".into(), json!(context.believed));
            map.insert("batch_position".into(), json!(context.batch_position));
            map.insert("candidates_evaluated".into(), json!(found.evaluations));
            map.insert("seed".into(), json!(self.seed));
            if let Some(p) = context.feasible {
                map.insert("probability_of_success".into(), json!(p));
            }
            if let Some(w) = &model.weights {
                map.insert(
                    "scalarisation".into(),
                    json!({"method": "ParEGO augmented Chebyshev", "weights": w, "rho": PAREGO_RHO}),
                );
                map.insert("pareto_front_size".into(), json!(context.front));
            }
        }
        let what = match self.acquisition {
            Acquisition::LogExpectedImprovement => "log expected improvement",
            Acquisition::ExpectedImprovement => "expected improvement",
            Acquisition::ProbabilityOfImprovement => "log probability of improvement",
            Acquisition::UpperConfidenceBound { .. } => "upper confidence bound",
        };
        let target = match &model.weights {
            Some(w) => format!(
                "the weighted objectives ({})",
                objectives
                    .iter()
                    .zip(w)
                    .map(|(o, w)| format!("{} {}", o.output, short(*w)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => objectives[0].output.clone(),
        };
        let prediction = match (predicted_mean, predicted_sd) {
            (Some(m), Some(s)) => format!("predicted {target} {} ± {}", short(m), short(s)),
            _ => format!("no prediction of {target}"),
        };
        let believed = match context.believed {
            0 => String::new(),
            1 => "; 1 point in flight or earlier in this batch counts as measured at its predicted value (Kriging believer)"
                .to_owned(),
            k => format!(
                "; {k} points in flight or earlier in this batch count as measured at their predicted values (Kriging \
                 believer)"
            ),
        };
        let feasible = match context.feasible {
            Some(p) => format!(
                "; {} failed experiment(s) make the chance of success here {}",
                self.history.failures(),
                short(p)
            ),
            None => String::new(),
        };
        // A technician reading the reason learns that the model treats the results as noisy, and how noisy.
        let noisy = if model.noisy {
            let why = if self.one_hot_only {
                "every parameter is categorical, so the model takes the results to be noisy"
            } else {
                "the results look noisy"
            };
            format!(
                "; {why}, and the model takes their noise's standard deviation to be about {} {}",
                short(gp.hyper().noise().sqrt() * model.y_std),
                if model.weights.is_some() { "on the weighted scale" } else { "in the objective's units" }
            )
        } else {
            String::new()
        };
        let reason = format!(
            "Highest {what} ({}) found by the model: {prediction}, best so far {}{believed}{feasible}{noisy}.",
            short(found.value),
            short(best_observed)
        );
        let strategy = if model.weights.is_some() {
            format!("ParEGO {}", self.acquisition.short_name())
        } else {
            format!("GP {}", self.acquisition.short_name())
        };
        let mut proposal = self.history.proposal(&found.unit, &strategy, reason);
        proposal.predicted_mean = predicted_mean;
        proposal.predicted_sd = predicted_sd;
        proposal.acquisition = Some(found.value);
        proposal.model = Some(provenance);
        proposal
    }

    /// The model's description for a proposal's provenance.
    pub(super) fn provenance(&self, model: &Model, gp: &Gp) -> serde_json::Value {
        let space = &self.history.space;
        let hyper = gp.hyper();
        let scales = hyper.length_scales();
        let names = space.feature_names();
        let by_feature: serde_json::Map<String, serde_json::Value> =
            names.iter().zip(&scales).map(|(n, l)| (n.clone(), json!(l))).collect();
        // Continuous and integer length scales also in the parameter's own unit.
        let by_parameter: serde_json::Map<String, serde_json::Value> = space
            .dims()
            .iter()
            .zip(space.coordinate_features())
            .filter_map(|(d, f)| f.map(|k| (d.name.clone(), json!(scales[k] * d.width()))))
            .collect();
        let objectives: Vec<serde_json::Value> = self
            .history
            .objectives
            .iter()
            .map(|o| json!({"output": o.output, "direction": o.direction.verb()}))
            .collect();
        json!({
            "surrogate": "Gaussian process (lab experiments crate)",
            "kernel": format!(
                "{}, one length scale per feature ({}){}",
                hyper.kernel.name(),
                if self.one_hot_only {
                    "each level its own"
                } else {
                    "a categorical parameter's levels pooled around one"
                },
                match &hyper.additive {
                    Some(a) => format!(
                        ", mixed with the mean of the same kernel over each parameter alone (weight {}), {}",
                        a.weight(),
                        self.additive.why()
                    ),
                    None => String::new(),
                }
            ),
            "priors": if self.one_hot_only && model.noisy {
                "noisy (BoTorch SingleTaskGP's: no output scale, LogNormal(-4, 1) noise of at least 1e-4, length \
                 scales of at least 0.025), since every parameter is categorical: any two conditions differ in whole \
                 levels, so a fit could explain every result exactly and its noise cannot be checked"
                    .to_owned()
            } else if model.noisy {
                format!(
                    "noisy (BoTorch SingleTaskGP's: no output scale, LogNormal(-4, 1) noise of at least 1e-4, length \
                     scales of at least 0.025), since the interpolating fit's noise was {} of the results' variance, \
                     above {NOISY_ABOVE}",
                    model.fitted_noise.map_or_else(|| "not measured".to_owned(), short)
                )
            } else {
                format!(
                    "interpolating (the interpolating fit's noise was {} of the results' variance, at most \
                     {NOISY_ABOVE})",
                    model.fitted_noise.map_or_else(|| "not measured".to_owned(), short)
                )
            },
            "mean": "constant (generalised least squares)",
            "training_size": model.inputs.len(),
            "data_hash": model.data_hash,
            "hyperparameters": {
                "length_scales": by_feature,
                "signal_variance": hyper.signal() * model.y_std * model.y_std,
                "noise_variance": hyper.noise() * model.y_std * model.y_std,
                "additive_weight": hyper.additive.as_ref().map(Additive::weight),
                "mean": model.internal(gp.mean()),
                "re_estimated": model.refit,
                "log_likelihood": gp.log_likelihood(),
            },
            "noise_check": {
                "interpolating_fit_noise": model.fitted_noise,
                "noisy_above": NOISY_ABOVE,
                "noisy": model.noisy,
                "one_hot_only": self.one_hot_only,
            },
            "length_scales": by_parameter,
            "objective": objectives[0],
            "objectives": objectives,
        })
    }
}
