//! The Gaussian-process proposer: Bayesian optimisation with a space-filling start.
//!
//! The first `initial` proposals are a space-filling design (a scrambled Sobol sequence, or over a pool a
//! k-means++-weighted draw of its members, or random members when every parameter is one-hot categorical), handed
//! out in order across asks. After that, and once enough successful
//! results at different points exist (one more than the number of parameters, or the design's size if that is
//! smaller, and at least two), every proposal comes from a Gaussian-process model of the results
//! ([`crate::surrogate::gp`]: one length scale per feature, a categorical parameter's levels pooled around one
//! ([`Sharing::pooled`]), learned noise, and the kernel, Matérn 5/2 or squared exponential, chosen by the
//! posterior) and an acquisition function (log expected improvement by default). When that model's fit finds the
//! results noisy (noise above `NOISY_ABOVE` of their variance, and decisively more probable than the best
//! noise-free fit, `NOISE_EVIDENCE`), the model is refitted with BoTorch's priors ([`Priors::NOISY`]: the
//! squared-exponential kernel, no output scale, a noise prior and floor, from the priors' modes) and searched as
//! BoTorch searches (`NOISY_SEARCH`). When every parameter is categorical and one-hot, the model is BoTorch's from
//! the start, with a length scale per level: any two conditions differ in whole levels, so a fit can explain every
//! result exactly and the noise check has nothing to go by, while a measured table of such conditions is noisy.
//! (The interpolating model is then fitted only if BoTorch's cannot be.)
//! Its kernel there also has an additive part ([`Additive`], weight `ADDITIVE_WEIGHT`): half of two conditions'
//! correlation comes from the levels they share, parameter by parameter, so a ligand's results inform every untried
//! condition with that ligand (BENCHMARKS.md, "Reaction tables the proposer was not tuned on"). When every parameter
//! is ordered (continuous or integer), each fit is made with an additive part over each parameter alone and
//! without, and the more probable kept (`AdditiveChoice`; "Why the GP got stuck", point 11). Each proposal's
//! provenance says which model it came from and why (`noise_check`, `priors`, `kernel`):
//! - in a continuous or mixed space, maximised by multi-start L-BFGS from scrambled Sobol candidates
//!   (the private `search` module); over a pool or a small discrete space, by taking the best untried point
//!   (its exact variance computed only where a bound says it could win);
//! - experiments in flight and points already chosen for the same ask are added to the model as if measured at
//!   its predicted mean (the Kriging believer): the model's uncertainty collapses around them, so the next point
//!   goes elsewhere and a lab with eight hotplates gets eight different, useful experiments; and no proposal comes
//!   within `scorer::CROWD` of one of them, since a confident model's improvement stays slightly positive right
//!   beside a believed point and filled whole batches with twins of one experiment;
//! - failed experiments train a feasibility classifier ([`crate::surrogate::classifier`]) once there is one, and
//!   the acquisition is weighted by the probability of success (multiplied for EI, added as `ln P` on log
//!   scales), so the search steers away from where experiments fail; a failed point is also believed at the
//!   model's prediction, since otherwise the model's uncertainty there (it never learns the value) keeps
//!   inviting experiments right next to it;
//! - with several objectives, each proposal draws random weights and models their augmented Chebyshev
//!   scalarisation of the normalised objectives (ParEGO, Knowles 2006), so successive proposals aim at
//!   different parts of the Pareto front.
//!
//! Conventions, all in this module: outputs are flipped to minimisation ([`crate::Direction::internal`]) and
//! standardised; repeated measurements of one point are averaged into one training point; the incumbent is the
//! lowest posterior mean at a measured point (with noise, the best *measured* value is optimistic).
//! Hyperparameters are re-estimated after every new result while there are at most [`FULL_REFIT_UNTIL`]
//! training points, and after that whenever the training set has grown by an eighth since the last estimate;
//! in between, the model is refactorised with the last estimate, which keeps a proposal at hundreds of results
//! within tens of milliseconds.
//!
//! When no model can be used (too few results, all results equal, a failed fit, or an acquisition that is
//! flat everywhere), the proposer falls back to the emptiest point and says why in the proposal's reason.

use rand::Rng;
use rand_xoshiro::Xoshiro256PlusPlus;

use super::acquisition::expected_improvement;
use super::random::fits_batch;
use super::search::{Search, around, best_in_pool, maximize};
use super::space_filling::{maximin_point, maximin_reason, random_pool_design, sobol_design, start_reason};
use super::{
    Acquisition, History, MIN_DISTANCE, Observation, Outcome, Point, Problem, Proposal, Proposer, Status, distance2,
    rng, too_close,
};
use crate::objective::Objective;
use crate::pareto::pareto_front;
use crate::space::{Encoding, Kind, Space};
use crate::stop::{StopReason, StopTracker};
use crate::surrogate::classifier::Feasibility;
use crate::surrogate::gp::{Additive, Gp, GpError, Hyper, Kernel, Mean, Priors, Sharing};

mod provenance;
mod scorer;

use provenance::Context;
use scorer::ModelScorer;

/// The kernels a model chooses among by their posterior probability.
const KERNELS: [Kernel; 2] = [Kernel::Matern52, Kernel::SquaredExponential];

/// Up to this many training points, hyperparameters are re-estimated after every new result.
pub const FULL_REFIT_UNTIL: usize = 64;
/// The augmentation weight of ParEGO's Chebyshev scalarisation.
const PAREGO_RHO: f64 = 0.05;
/// How many of the best results get local candidates around them, and how many at each of two radii.
const LOCAL_CENTRES: usize = 3;
const LOCAL_CANDIDATES: usize = 24;
const LOCAL_RADII: [f64; 2] = [0.1, 0.01];
/// About how many multiply-adds the quasi-random candidates of one proposal may cost (candidates × training
/// points²).
const CANDIDATE_WORK: f64 = 2e7;
/// The range of the feasibility classifier's length scales, taken from the objective model's.
const CLASSIFIER_LENGTH: (f64, f64) = (0.05, 1.0);
/// The spread, in `ln ℓ`, of a categorical parameter's per-level length scales around the parameter's own
/// ([`Sharing::pooled`]); chosen on the learning benchmark's categorical landscapes against 0.25, 0.5 and 2, and
/// against tying the levels or leaving them apart (BENCHMARKS.md, "Why the GP got stuck").
const LEVEL_SPREAD: f64 = 1.0;

/// Above this noise variance, as a fraction of the results' variance, the interpolating model's fit says the results
/// may be noisy: a noise-free function usually fits far below it (the noise falls towards its numerical floor), and
/// measurement noise a lab would notice, a standard deviation of a few per cent of the results' spread, fits above
/// it. When the evidence for the noise is also decisive ([`NOISE_EVIDENCE`]), the model is refitted with BoTorch's
/// priors ([`Priors::NOISY`]) and searched as BoTorch searches ([`NOISY_SEARCH`]). BENCHMARKS.md, "Why the GP got
/// stuck", point 10, has the measurements behind both figures.
const NOISY_ABOVE: f64 = 1e-3;
/// How much more probable (as a natural logarithm of the ratio of posterior densities) the fit with noise must be
/// than the best fit with its noise held below 1e-6 ([`Priors::NOISE_FREE`]) for the results to count as noisy:
/// 3, a ratio of 20, "strong" evidence on Kass and Raftery's scale. Without it, Branin's fits found noise at a few
/// steps in 12 seeds of 60, and one seed missed its target.
const NOISE_EVIDENCE: f64 = 3.0;
/// The acquisition's search when the model is the noisy one, as BoTorch's `optimize_acqf` is usually called: 256
/// quasi-random candidates, the best 4 climbed, and no candidates near the best results, whose measured values may
/// owe their rank to noise.
const NOISY_SEARCH: Search = Search { candidates: 256, starts: 4, iterations: 50 };

/// The weight of the kernel's additive part ([`Additive`], [`AdditiveChoice`]): half the correlation of two
/// conditions comes from what they share parameter by parameter. Chosen on the six reaction tables and the needle's
/// two against 0.25 and 0.75, and against choosing between 0 and 0.5 by the posterior there, which chose 0 too
/// often (BENCHMARKS.md, "Reaction tables the proposer was not tuned on").
const ADDITIVE_WEIGHT: f64 = 0.5;

/// Why no model could be used for a proposal.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// Too few successful results at different points: at least two, and one more than the number of
    /// parameters unless the space-filling design is smaller.
    #[error("{successes} successful result(s) at different points so far, and a model needs {needed}")]
    TooFewResults {
        /// How many distinct successful points there are.
        successes: usize,
        /// How many the model needs.
        needed: usize,
    },
    /// Every successful result has the same value, so a model cannot rank points.
    #[error("every successful result so far has the same value, so a model cannot rank points")]
    Flat,
    /// The model could not be fitted.
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
    /// How many observations had been told when it was fitted.
    told: usize,
    /// The distinct training points, as coordinates.
    inputs: Vec<Vec<f64>>,
    /// Internal value = output * `y_std` + `y_mean`.
    y_mean: f64,
    y_std: f64,
    /// The spread (largest minus smallest) of the model's training outputs.
    range: f64,
    /// Whether the hyperparameters were re-estimated for this model.
    refit: bool,
    /// Whether the results looked noisy, so the model has BoTorch's priors ([`Priors::NOISY`]).
    noisy: bool,
    /// The noise variance (of the standardised outputs) the interpolating model fitted when the hyperparameters
    /// were last re-estimated, on which `noisy` was decided; none over one-hot levels alone, where nothing is
    /// decided on it and the interpolating model is fitted only if the noisy one cannot be.
    fitted_noise: Option<f64>,
    /// A hash of the data the model was fitted on.
    data_hash: String,
    /// ParEGO's weights, with several objectives.
    weights: Option<Vec<f64>>,
    /// The lowest posterior mean at a training point (standardised), the incumbent improvements are measured from.
    best: f64,
    /// The training point where that is.
    best_input: usize,
}

/// The hyperparameters of the last re-estimate.
#[derive(Debug, Clone)]
struct Estimate {
    /// The interpolating model's, where its next fit starts, if it was fitted.
    ours: Option<Hyper>,
    /// The model's that was used: the interpolating one's, or the noisy one's when the results looked noisy.
    used: Hyper,
    /// Whether the results looked noisy.
    noisy: bool,
    /// The training size then.
    at: usize,
}

impl Model {
    /// The internal value (objective, minimised) of a model output.
    fn internal(&self, output: f64) -> f64 {
        output * self.y_std + self.y_mean
    }
}

/// Proposes by Bayesian optimisation: a space-filling start of `initial` points, then a Gaussian-process model
/// and an acquisition function. See the [module documentation](self) for the details.
#[derive(Debug, Clone)]
pub struct GpProposer {
    name: String,
    history: History,
    acquisition: Acquisition,
    design: Vec<Vec<f64>>,
    next_design: usize,
    rng: Xoshiro256PlusPlus,
    search: Search,
    /// The last re-estimated hyperparameters.
    estimate: Option<Estimate>,
    /// The single-objective model for the data told so far.
    model: Option<Model>,
    /// The feasibility classifier for the data told so far (by number of observations told).
    feasibility: Option<(usize, Option<Feasibility>)>,
    stop: StopTracker,
    seed: u64,
    /// Levels of categorical parameters not to propose for now (dimension, level's unit value), from
    /// [`Proposer::avoid`].
    avoid: Vec<(usize, f64)>,
    /// Whether every parameter is categorical and one-hot ([`one_hot_only`]), so the start is random rows and the
    /// model BoTorch's whatever the noise check would say, with a length scale per level.
    one_hot_only: bool,
    /// Which additive parts the model is offered.
    additive: AdditiveChoice,
}

/// Which additive parts ([`Additive`], weight [`ADDITIVE_WEIGHT`]) the model's kernel is offered, decided once from
/// the space.
#[derive(Debug, Clone)]
enum AdditiveChoice {
    /// A table of one-hot conditions: the noisy model, which is every model there, always has one over the
    /// parameters' levels.
    Held(Additive),
    /// Every parameter ordered (continuous or integer): each fit is made with one over each parameter alone and
    /// without, and the more probable kept, as the kernel is chosen.
    Offered(Additive),
    /// Categorical and ordered parameters together: none.
    Without,
}

impl AdditiveChoice {
    fn for_space(space: &Space, one_hot_only: bool) -> Self {
        if one_hot_only {
            AdditiveChoice::Held(Additive::new(&space.feature_groups(), ADDITIVE_WEIGHT))
        } else if space.dims().iter().all(|d| !d.is_categorical()) {
            let each: Vec<usize> = (0..space.feature_len()).collect();
            AdditiveChoice::Offered(Additive::new(&each, ADDITIVE_WEIGHT))
        } else {
            AdditiveChoice::Without
        }
    }

    /// Why a model has the additive part, for its provenance.
    fn why(&self) -> &'static str {
        match self {
            AdditiveChoice::Held(_) => "so a level's results inform every condition that shares it",
            AdditiveChoice::Offered(_) => "which the posterior preferred to the kernel alone",
            AdditiveChoice::Without => "",
        }
    }

    /// The additive parts the interpolating model (and its noise-free check) is fitted with, the first preferred
    /// on a tie.
    fn interpolating(&self) -> Vec<Option<Additive>> {
        match self {
            AdditiveChoice::Offered(a) => vec![Some(a.clone()), None],
            AdditiveChoice::Held(_) | AdditiveChoice::Without => vec![None],
        }
    }

    /// The additive parts the noisy model is fitted with, the first preferred on a tie.
    fn noisy(&self) -> Vec<Option<Additive>> {
        match self {
            AdditiveChoice::Held(a) => vec![Some(a.clone())],
            AdditiveChoice::Offered(a) => vec![Some(a.clone()), None],
            AdditiveChoice::Without => vec![None],
        }
    }
}

/// The most probable of `fits` (each a model and its log posterior density; the first on a tie), or the last error
/// if none succeeded.
fn most_probable(fits: impl Iterator<Item = Result<(Gp, f64), GpError>>) -> Result<(Gp, f64), GpError> {
    let mut best: Result<(Gp, f64), GpError> = Err(GpError::NoLikelihood);
    for fitted in fits {
        best = match (best, fitted) {
            (Ok(b), Ok(f)) => Ok(if f.1 > b.1 { f } else { b }),
            (Ok(b), Err(_)) => Ok(b),
            (Err(_), f) => f,
        };
    }
    best
}

/// Whether every parameter of `space` is categorical with one-hot levels. There any two conditions differ in whole
/// levels, so the interpolating fit explains every result exactly and the noise check has nothing to go by, while a
/// measured table of such conditions is noisy; BoTorch's recipe (its model, a length scale per level, random rows to
/// start) measured best on real reaction tables (BENCHMARKS.md, "Reaction tables the proposer was not tuned on").
fn one_hot_only(space: &Space) -> bool {
    space.dims().iter().all(|d| matches!(&d.kind, Kind::Categorical { encoding: Encoding::OneHot, .. }))
}

impl GpProposer {
    /// A proposer over `space` optimising `objective`, starting with an `initial`-point Sobol design, choosing
    /// later points by `acquisition`, seeded with `seed`.
    pub fn new(space: Space, objective: Objective, initial: usize, acquisition: Acquisition, seed: u64) -> Self {
        GpProposer::for_problem(&Problem::new(space, objective, 0), initial, acquisition, seed)
    }

    /// A proposer for `problem`, starting with `initial` space-filling points, choosing later points by
    /// `acquisition`, seeded with `seed`.
    pub fn for_problem(problem: &Problem, initial: usize, acquisition: Acquisition, seed: u64) -> Self {
        let mut rng = rng(seed);
        let history = History::new(problem);
        let one_hot = one_hot_only(&history.space);
        let additive = AdditiveChoice::for_space(&history.space, one_hot);
        // A table of one-hot conditions starts from random rows, as BoTorch's users start (see `one_hot_only`).
        let design = match history.pool.as_deref() {
            Some(pool) if one_hot => random_pool_design(&history.space, pool, initial, &mut rng),
            pool => sobol_design(&history.space, pool, initial, &mut rng),
        };
        let name = if problem.objectives.len() > 1 {
            format!("gaussian process (ParEGO, {})", acquisition.short_name())
        } else {
            format!("gaussian process ({})", acquisition.short_name())
        };
        let stop = super::stop_tracker(problem);
        GpProposer {
            name,
            history,
            acquisition,
            design,
            next_design: 0,
            rng,
            search: Search::default(),
            estimate: None,
            model: None,
            feasibility: None,
            stop,
            seed,
            avoid: Vec::new(),
            one_hot_only: one_hot,
            additive,
        }
    }

    fn multi(&self) -> bool {
        self.history.objectives.len() > 1
    }

    /// The training data: distinct points and their internal values (averaged over repeats), for the single
    /// objective or ParEGO's scalarisation with `weights`.
    fn training(&self, weights: Option<&[f64]>) -> (Vec<Vec<f64>>, Vec<f64>) {
        let successes: Vec<(&Vec<f64>, &Vec<f64>)> = self
            .history
            .told
            .iter()
            .filter_map(|t| match &t.result {
                Status::Values(v) => Some((&t.unit, v)),
                _ => None,
            })
            .collect();
        let objectives = &self.history.objectives;
        let internal: Vec<Vec<f64>> = successes
            .iter()
            .map(|(_, v)| objectives.iter().zip(v.iter()).map(|(o, x)| o.direction.internal(*x)).collect())
            .collect();
        let targets: Vec<f64> = match weights {
            None => internal.iter().map(|v| v[0]).collect(),
            Some(w) => {
                let m = objectives.len();
                let lo: Vec<f64> =
                    (0..m).map(|j| internal.iter().map(|v| v[j]).fold(f64::INFINITY, f64::min)).collect();
                let hi: Vec<f64> =
                    (0..m).map(|j| internal.iter().map(|v| v[j]).fold(f64::NEG_INFINITY, f64::max)).collect();
                internal
                    .iter()
                    .map(|v| {
                        let f: Vec<f64> = (0..m)
                            .map(|j| if hi[j] > lo[j] { (v[j] - lo[j]) / (hi[j] - lo[j]) } else { 0.0 })
                            .collect();
                        let max = f.iter().zip(w).map(|(f, w)| f * w).fold(f64::NEG_INFINITY, f64::max);
                        max + PAREGO_RHO * f.iter().zip(w).map(|(f, w)| f * w).sum::<f64>()
                    })
                    .collect()
            }
        };
        let mut groups: Vec<(Vec<f64>, f64, usize)> = Vec::new();
        for ((u, _), y) in successes.iter().zip(targets) {
            match groups.iter_mut().find(|(g, _, _)| distance2(g, u) < MIN_DISTANCE * MIN_DISTANCE) {
                Some((_, sum, count)) => {
                    *sum += y;
                    *count += 1;
                }
                None => groups.push(((*u).clone(), y, 1)),
            }
        }
        groups.into_iter().map(|(u, sum, count)| (u, sum / count as f64)).unzip()
    }

    /// Fits a model to the data told so far (for the single objective, or ParEGO's scalarisation with `weights`).
    fn fit(&mut self, weights: Option<Vec<f64>>) -> Result<Model, ModelError> {
        if weights.is_none()
            && let Some(m) = &self.model
            && m.told == self.history.told.len()
        {
            return Ok(m.clone());
        }
        let (inputs, values) = self.training(weights.as_deref());
        // A length scale per parameter needs about one result more than there are parameters; the design, when
        // it is smaller, is taken to be what the campaign's author judged enough.
        let needed = (self.history.space.len() + 1).min(self.design.len()).max(2);
        if inputs.len() < needed {
            return Err(ModelError::TooFewResults { successes: inputs.len(), needed });
        }
        let n = values.len() as f64;
        let y_mean = values.iter().sum::<f64>() / n;
        let y_std = (values.iter().map(|v| (v - y_mean).powi(2)).sum::<f64>() / n).sqrt();
        // Flat when the spread is lost in the rounding of the values themselves: relative to their size, so that
        // results on a scale of 1e-13 are modelled as those on a scale of 1 are.
        if y_std.is_nan() || y_std <= 1e-12 * y_mean.abs() || y_std < f64::MIN_POSITIVE {
            return Err(ModelError::Flat);
        }
        let outputs: Vec<f64> = values.iter().map(|v| (v - y_mean) / y_std).collect();
        let range = outputs.iter().fold(f64::NEG_INFINITY, |a, b| a.max(*b))
            - outputs.iter().fold(f64::INFINITY, |a, b| a.min(*b));
        let features: Vec<Vec<f64>> = inputs.iter().map(|u| self.history.space.features(u)).collect();
        let size = inputs.len();
        let due = match &self.estimate {
            None => true,
            Some(e) => size <= FULL_REFIT_UNTIL || size >= e.at + (e.at / 8).max(1),
        };
        let reuse = match (&self.estimate, due) {
            (Some(e), false) => Gp::fit(&features, &outputs, &e.used, Mean::Profiled).ok().map(|gp| (gp, e.clone())),
            _ => None,
        };
        let (gp, refit, estimate) = match reuse {
            Some((gp, e)) => (gp, false, e),
            None => {
                let d = features[0].len();
                // Over one-hot levels alone the noise check has nothing to go by (see `one_hot_only`): BoTorch's
                // model, with a length scale per level, from the start.
                let sharing = if self.one_hot_only {
                    Sharing::separate(d)
                } else {
                    Sharing::pooled(&self.history.space.feature_groups(), LEVEL_SPREAD)
                };
                let mut starts: Vec<Hyper> = self.estimate.iter().filter_map(|e| e.ours.clone()).collect();
                let (kernels, iterations) = if size <= FULL_REFIT_UNTIL || starts.is_empty() {
                    // Besides the last estimate, fixed starts from short to long length scales, so that a model
                    // which once wrongly found a parameter irrelevant is not stuck with that; both kernels.
                    let root = (d as f64).sqrt();
                    starts.extend([0.1, 0.3, 1.0].map(|l| Hyper::new(d, l * root, 1e-4)));
                    (KERNELS.to_vec(), 100)
                } else {
                    // With many results the estimate moves little between refits: one climb from the last one.
                    (vec![starts[0].kernel], 30)
                };
                // The model is fitted with each additive part on offer (see `AdditiveChoice`) and the most probable
                // kept, as the kernel is chosen.
                let fit = |priors: &Priors, offered: &[Option<Additive>]| {
                    most_probable(offered.iter().map(|additive| {
                        let starts: Vec<Hyper> =
                            starts.iter().map(|h| h.clone().with_additive(additive.clone())).collect();
                        Gp::fit_map_shared(&features, &outputs, &starts, &kernels, iterations, &sharing, priors)
                    }))
                };
                // Noisy results: BoTorch's model, fitted afresh from its priors' modes as BoTorch fits it, with
                // the squared-exponential kernel.
                let fit_noisy = || {
                    let kernel = Kernel::SquaredExponential;
                    let (length, noise) = Priors::NOISY.mode(sharing.group_count());
                    let start = Hyper::new(d, length, noise).with_kernel(kernel);
                    most_probable(self.additive.noisy().into_iter().map(|additive| {
                        let start = start.clone().with_additive(additive);
                        Gp::fit_map_shared(&features, &outputs, &[start], &[kernel], 100, &sharing, &Priors::NOISY)
                    }))
                    .ok()
                    .map(|(gp, _)| gp)
                };
                // The interpolating model's hyperparameters (if it was fitted), the model, and whether it is the
                // noisy one.
                let (ours, gp, noisy) = if self.one_hot_only {
                    // Over one-hot levels alone the noise check has nothing to go by (see `one_hot_only`): BoTorch's
                    // model always, and the interpolating one only if that cannot be fitted.
                    match fit_noisy() {
                        Some(noisy) => (None, noisy, true),
                        None => {
                            let ours = fit(&Priors::INTERPOLATING, &self.additive.interpolating())?.0;
                            (Some(ours.hyper().clone()), ours, false)
                        }
                    }
                } else {
                    let (ours, score) = fit(&Priors::INTERPOLATING, &self.additive.interpolating())?;
                    // A fit with noise may have found only one of two explanations the data allow equally: on a
                    // noise-free function with few results, a smooth trend plus noise can be as probable as short
                    // length scales without it. Noise counts when the best noise-free explanation is decisively
                    // less probable. If BoTorch's model then cannot be fitted, the interpolating one stands.
                    let noisy_data = ours.hyper().noise() > NOISY_ABOVE
                        && fit(&Priors::NOISE_FREE, &self.additive.interpolating())
                            .map_or(true, |(_, free)| score - free > NOISE_EVIDENCE);
                    let hyper = Some(ours.hyper().clone());
                    match noisy_data.then(fit_noisy).flatten() {
                        Some(noisy) => (hyper, noisy, true),
                        None => (hyper, ours, false),
                    }
                };
                let estimate = Estimate { ours, used: gp.hyper().clone(), noisy, at: size };
                self.estimate = Some(estimate.clone());
                (gp, true, estimate)
            }
        };
        let means = gp.training_means();
        let (best_input, best) =
            means.iter().enumerate().fold((0, f64::INFINITY), |(bi, b), (i, m)| if *m < b { (i, *m) } else { (bi, b) });
        let model = Model {
            gp,
            told: self.history.told.len(),
            inputs,
            y_mean,
            y_std,
            range,
            refit,
            noisy: estimate.noisy,
            fitted_noise: estimate.ours.as_ref().map(Hyper::noise),
            data_hash: super::data_hash(&self.history.told),
            weights,
            best,
            best_input,
        };
        if model.weights.is_none() {
            self.model = Some(model.clone());
        }
        Ok(model)
    }

    /// The feasibility classifier for the data told so far, once an experiment has failed.
    fn feasibility(&mut self, model: &Model) -> Option<Feasibility> {
        if let Some((told, f)) = &self.feasibility
            && *told == self.history.told.len()
        {
            return f.clone();
        }
        let labelled: Vec<(&Vec<f64>, bool)> =
            self.history.told.iter().map(|t| (&t.unit, t.result != Status::Failed)).collect();
        let classifier = if labelled.iter().any(|(_, ok)| !ok) {
            let x: Vec<Vec<f64>> = labelled.iter().map(|(u, _)| self.history.space.features(u)).collect();
            let ok: Vec<bool> = labelled.iter().map(|(_, ok)| *ok).collect();
            let scales: Vec<f64> = model
                .gp
                .hyper()
                .length_scales()
                .iter()
                .map(|l| l.clamp(CLASSIFIER_LENGTH.0, CLASSIFIER_LENGTH.1))
                .collect();
            Feasibility::fit(&x, &ok, &scales).ok()
        } else {
            None
        };
        self.feasibility = Some((self.history.told.len(), classifier.clone()));
        classifier
    }

    /// Candidates near the best results, so the search looks closely where the optimum probably is.
    fn local_candidates(&mut self, model: &Model) -> Vec<Vec<f64>> {
        let means = model.gp.training_means();
        let mut order: Vec<usize> = (0..model.inputs.len()).collect();
        order.sort_by(|a, b| means[*a].total_cmp(&means[*b]).then(a.cmp(b)));
        let mut out = Vec::with_capacity(LOCAL_CENTRES * LOCAL_CANDIDATES * LOCAL_RADII.len());
        for &i in order.iter().take(LOCAL_CENTRES) {
            for radius in LOCAL_RADII {
                for _ in 0..LOCAL_CANDIDATES {
                    out.push(around(&self.history.space, &model.inputs[i], radius, &mut self.rng));
                }
            }
        }
        out
    }

    /// Random weights on the simplex (uniform), for one ParEGO proposal.
    fn weights(&mut self) -> Vec<f64> {
        let m = self.history.objectives.len();
        let draws: Vec<f64> = (0..m).map(|_| -(1.0 - self.rng.r#gen::<f64>()).ln()).collect();
        let total: f64 = draws.iter().sum();
        draws.iter().map(|d| d / total).collect()
    }

    /// Fills `out` up to `n` proposals with emptiest points, explaining that `why` no model was used.
    fn fill_space(
        &mut self,
        n: usize,
        taken: &mut Vec<Vec<f64>>,
        batch: &mut Batch,
        out: &mut Vec<Proposal>,
        why: &ModelError,
    ) {
        while out.len() < n {
            let pool = self.history.untaken_pool(taken);
            let frozen = batch.frozen.clone();
            let Some((unit, distance)) = maximin_point(
                &self.history.space,
                taken,
                pool.as_deref(),
                (batch.shared.as_deref(), &frozen),
                &mut self.rng,
            ) else {
                if pool.is_some_and(|p| p.is_empty()) {
                    self.stop.exhausted();
                }
                break;
            };
            batch.fix(&self.history.space, &unit);
            taken.push(unit.clone());
            let reason = format!("No model this time ({why}). {}", maximin_reason(distance, pool.is_some()));
            out.push(self.history.proposal(&unit, "space-filling (maximin)", reason));
        }
    }
}

/// The per-batch parameters of one ask: which dimensions are held, and at which coordinates.
struct Batch {
    frozen: Vec<bool>,
    shared: Option<Vec<f64>>,
}

impl Batch {
    fn new(space: &Space) -> Self {
        Batch { frozen: vec![false; space.len()], shared: None }
    }

    /// Holds the per-batch dimensions at `unit`'s values, if this is the ask's first point.
    fn fix(&mut self, space: &Space, unit: &[f64]) {
        if self.shared.is_none() {
            self.frozen = (0..space.len()).map(|j| space.is_per_batch(j)).collect();
            self.shared = Some(unit.to_vec());
        }
    }

    fn hold(&self, u: &mut [f64]) {
        if let Some(s) = &self.shared {
            for (j, f) in self.frozen.iter().enumerate() {
                if *f {
                    u[j] = s[j];
                }
            }
        }
    }
}

/// Adds `u` to `gp` as if measured at the model's prediction there (the Kriging believer). Returns the believed
/// value, or `None` (leaving `gp` unchanged) when the update is numerically impossible.
fn believe(gp: &mut Gp, x: &[f64]) -> Option<f64> {
    let (mean, _) = gp.predict(&[x.to_vec()])[0];
    if !mean.is_finite() {
        return None;
    }
    *gp = gp.condition(x, mean).ok()?;
    Some(mean)
}

impl Proposer for GpProposer {
    fn name(&self) -> &str {
        &self.name
    }

    fn tell(&mut self, observation: Observation) {
        self.history.tell(observation);
        if let Some(Status::Values(v)) = self.history.told.last().map(|t| &t.result) {
            self.stop.told(v[0]);
        }
    }

    fn tell_outcome(&mut self, outcome: Outcome) {
        self.history.tell_outcome(outcome);
        if let Some(Status::Values(v)) = self.history.told.last().map(|t| &t.result) {
            self.stop.told(v[0]);
        }
    }

    fn avoid(&mut self, levels: &[(String, f64)]) {
        let space = &self.history.space;
        self.avoid = levels
            .iter()
            .filter_map(|(name, level)| {
                let j = space.index_of(name)?;
                Some((j, space.dims()[j].to_unit(*level)?))
            })
            .collect();
    }

    fn ask(&mut self, n: usize, pending: &[Point]) -> Vec<Proposal> {
        if self.stop.no_point() {
            return Vec::new();
        }
        let mut taken = self.history.taken(pending);
        let told = self.history.told.len();
        let space = self.history.space.clone();
        let mut batch = Batch::new(&space);
        let mut out = Vec::with_capacity(n);
        while out.len() < n && self.next_design < self.design.len() {
            let index = self.next_design;
            // Over a pool, a design point is a row and must be proposed as it is: holding it at the batch's
            // per-batch values would make it a point the pool does not have. The first design point that already
            // shares them is taken instead, and the others wait for a later ask.
            if self.history.pool.is_some() {
                let fits = |u: &Vec<f64>| fits_batch(u, batch.shared.as_deref(), &batch.frozen);
                let Some(k) = self.design[index..].iter().position(fits) else { break };
                self.design.swap(index, index + k);
            }
            self.next_design += 1;
            let mut u = self.design[index].clone();
            batch.hold(&mut u);
            // A design point already measured or in flight (after a restart, say) has been handed out before.
            let Some(unit) = space.repair(&u, &batch.frozen).filter(|u| !too_close(u, &taken)) else { continue };
            batch.fix(&space, &unit);
            taken.push(unit.clone());
            let (strategy, reason) = start_reason(index, self.design.len(), self.history.pool.is_some());
            out.push(self.history.proposal(&unit, strategy, reason));
        }
        if out.len() == n {
            return out;
        }
        if self.history.untaken_pool(&taken).is_some_and(|p| p.is_empty()) {
            self.stop.exhausted();
            return out;
        }
        let coordinate_features = space.coordinate_features();
        // Experiments in flight and this ask's design points, to be believed at the model's prediction.
        let in_flight: Vec<Vec<f64>> = taken[told..].to_vec();
        let failed: Vec<Vec<f64>> =
            self.history.told.iter().filter(|t| t.result == Status::Failed).map(|t| t.unit.clone()).collect();
        let mut single: Option<(Model, Gp, f64, usize)> = None;
        while out.len() < n {
            let fitted = if self.multi() {
                let w = self.weights();
                self.fit(Some(w)).map(|m| (m, None))
            } else {
                match single.take() {
                    Some((m, gp, best, believed)) => Ok((m, Some((gp, best, believed)))),
                    None => self.fit(None).map(|m| (m, None)),
                }
            };
            let (model, state) = match fitted {
                Ok(f) => f,
                Err(why) => {
                    self.fill_space(n, &mut taken, &mut batch, &mut out, &why);
                    break;
                }
            };
            let (mut gp, mut best, believed) = match state {
                Some(s) => s,
                None => {
                    let mut gp = model.gp.clone();
                    let mut best = model.best;
                    let mut believed = 0;
                    // A failed experiment's value is unknown, but its point is measured: believed at the model's
                    // prediction, it stops the model's uncertainty there from inviting the same experiment again,
                    // while the classifier lowers the chance of success around it. It never moves the incumbent.
                    for u in &failed {
                        if !too_close(u, &model.inputs) {
                            believe(&mut gp, &space.features(u));
                        }
                    }
                    for u in &in_flight {
                        if too_close(u, &model.inputs) {
                            continue;
                        }
                        if let Some(v) = believe(&mut gp, &space.features(u)) {
                            best = best.min(v);
                            believed += 1;
                        }
                    }
                    // With several objectives each proposal has its own model, so this ask's earlier proposals
                    // are believed afresh.
                    if self.multi() {
                        for u in taken[told + in_flight.len()..].iter() {
                            if let Some(v) = believe(&mut gp, &space.features(u)) {
                                best = best.min(v);
                                believed += 1;
                            }
                        }
                    }
                    (gp, best, believed)
                }
            };
            let feasibility = self.feasibility(&model);
            let avoid = self.avoid.clone();
            let scorer = ModelScorer {
                space: &space,
                gp: &gp,
                best,
                acquisition: self.acquisition,
                feasibility: feasibility.as_ref(),
                coordinate_features: coordinate_features.clone(),
                avoid: &avoid,
                crowd: &taken[told..],
            };
            let frozen = batch.frozen.clone();
            let found = match &self.history.pool {
                Some(pool) => best_in_pool(pool, &scorer, &taken, (batch.shared.as_deref(), &frozen)),
                None => {
                    let (extra, search) = if model.noisy {
                        let search = Search {
                            candidates: NOISY_SEARCH.candidates.min(self.search.candidates),
                            starts: NOISY_SEARCH.starts.min(self.search.starts),
                            ..self.search
                        };
                        (Vec::new(), search)
                    } else {
                        // Scoring a candidate costs a triangular solve with the training set, so with many results
                        // fewer quasi-random candidates are scored (the local ones and the climbs stay).
                        let size = gp.len() as f64;
                        let candidates =
                            (CANDIDATE_WORK / (size * size)).clamp(256.0, self.search.candidates as f64) as usize;
                        (self.local_candidates(&model), Search { candidates, ..self.search })
                    };
                    let mut rng = self.rng.clone();
                    let found =
                        maximize(&space, &scorer, &taken, (batch.shared.as_deref(), &frozen), extra, search, &mut rng);
                    self.rng = rng;
                    found
                }
            };
            let Some(found) = found.filter(|f| f.value.is_finite() && !too_close(&f.unit, &taken)) else {
                self.fill_space(n, &mut taken, &mut batch, &mut out, &ModelError::NoImprovement);
                break;
            };
            let x = space.features(&found.unit);
            let feasible = feasibility.as_ref().map(|f| f.probability(std::slice::from_ref(&x))[0]);
            let front = if self.multi() { self.front().len() } else { 0 };
            let context =
                Context { pending: pending.len(), believed, batch_position: out.len(), best, feasible, front };
            let proposal = self.proposal(&model, &gp, &found, &context);
            let (mean, variance) = gp.predict(std::slice::from_ref(&x))[0];
            // The expected improvement as a fraction of the range of results, both on the model's scale.
            let improvement = expected_improvement(mean, variance.max(0.0).sqrt(), best);
            if model.range > 0.0 {
                self.stop.proposed(improvement / model.range);
            }
            out.push(proposal);
            batch.fix(&space, &found.unit);
            taken.push(found.unit.clone());
            if !self.multi() {
                let mut believed = believed;
                if let Some(v) = believe(&mut gp, &x) {
                    best = best.min(v);
                    believed += 1;
                }
                single = Some((model, gp, best, believed));
            }
        }
        out
    }

    fn should_stop(&self) -> Option<StopReason> {
        self.stop.should_stop()
    }
}

impl GpProposer {
    /// The indices (into the told observations) of the Pareto front of the successful results.
    pub fn front(&self) -> Vec<usize> {
        let indexed: Vec<(usize, &Vec<f64>)> = self
            .history
            .told
            .iter()
            .enumerate()
            .filter_map(|(i, t)| match &t.result {
                Status::Values(v) => Some((i, v)),
                _ => None,
            })
            .collect();
        let values: Vec<Vec<f64>> = indexed.iter().map(|(_, v)| (*v).clone()).collect();
        pareto_front(&self.history.objectives, &values).into_iter().map(|k| indexed[k].0).collect()
    }

    /// The probability of success the feasibility classifier gives each point, once an experiment has failed and
    /// a model exists; `None` before that (every point is then taken to succeed).
    pub fn probability_of_success(&mut self, points: &[Point]) -> Option<Vec<f64>> {
        let model = self.fit(None).ok()?;
        let classifier = self.feasibility(&model)?;
        let x: Option<Vec<Vec<f64>>> = points
            .iter()
            .map(|p| self.history.space.to_unit(p).ok().map(|u| self.history.space.features(&u)))
            .collect();
        Some(classifier.probability(&x?))
    }

    /// The point the model currently believes best: the measured point with the best posterior mean (with a
    /// noisy objective, a better recommendation than the best single measurement). `None` without a model.
    pub fn recommendation(&mut self) -> Option<Point> {
        if self.multi() {
            return None;
        }
        let model = self.fit(None).ok()?;
        Some(self.history.space.from_unit(&model.inputs[model.best_input]))
    }
}

#[cfg(test)]
mod tests;
