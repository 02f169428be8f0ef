//! Gaussian-process regression with anisotropic Matérn 5/2 or squared-exponential kernels, fitted by maximum a
//! posteriori.
//!
//! The model: `f ~ GP(m, s² k(x, x'))` with `k` the Matérn 5/2 (or squared-exponential) correlation of the scaled
//! distance `r² = Σ_j (x_j - x'_j)² / ℓ_j²` (one length scale per input, so irrelevant inputs get long ones), observed
//! with Gaussian noise of variance `σ²` (one value for every point, or one per point for the feasibility
//! classifier). The constant mean `m` is profiled out (its generalised-least-squares estimate for the current
//! kernel), so it needs no search.
//!
//! Inputs may be grouped ([`Sharing`]): a categorical parameter's one-hot features then have length scales tied
//! to one value or pooled around one. The kernel may also have an additive part over groups of inputs
//! ([`Additive`], held in [`Hyper`] and not fitted): the kernel over all inputs mixed with its mean over each
//! group alone.
//!
//! The hyperparameters `ln ℓ_j`, `ln s²` and `ln σ²` are fitted by maximising the log marginal likelihood plus
//! weak log-normal priors: on the length scales the dimension-scaled prior of Hvarfner et al. (2024, "Vanilla
//! Bayesian optimization performs great in high dimensions"), which BoTorch uses by default, so that with few
//! observations in many dimensions the model prefers smooth functions. An input of its own has that prior as a
//! density over `ℓ` itself, as BoTorch (GPyTorch) evaluates it: the density in `ℓ` carries a factor `1/ℓ` that
//! the density in `ln ℓ` does not, so the most probable length scale is `exp(μ - s²)`, about 0.35 in three
//! dimensions, rather than the median `exp(μ)`, about 7. With the median as the mode, a model of a few results
//! took narrow ridges and valleys for noise on a smooth hill and never looked closely (BENCHMARKS.md, "Why the GP
//! got stuck", point 6). A categorical parameter's levels keep the prior in `ln ℓ` around their group's value
//! ([`Sharing`]), which the categorical landscapes were tuned on; on `s²` a wide prior around 1 (outputs
//! are standardised); on `σ²` a penalty `σ² / 0.1`, which leaves small noise levels equally likely (on a
//! noise-free function the noise falls to its floor, and the model interpolates) but stops a handful of points
//! from being explained as pure noise. The noise is learned between that floor, which keeps the factorisation
//! stable, and the output variance.
//! Those are the interpolating priors ([`Priors::INTERPOLATING`]). [`Priors::NOISY`] are BoTorch's instead (no
//! output scale, a LogNormal(−4, 1) prior on the noise with a floor of 1e-4, length scales of at least 0.025), for
//! results the data say are noisy; [`Priors::NOISE_FREE`] holds the noise below 1e-6, to weigh a fit that found
//! noise against the best explanation without it.
//! The gradient of that objective is exact (`½ tr((K⁻¹ - ααᵀ) ∂K/∂θ)`), and the search is projected L-BFGS
//! from a few deterministic starts, so a fit depends on the data alone. [`Gp::fit_map`] can also choose the
//! kernel by the same posterior: Matérn 5/2 suits rough functions (most experiments), the squared exponential
//! interpolates smooth ones far more precisely, and the data decide.
//!
//! Inputs are expected in (about) the unit cube, outputs standardised; the caller does both.
//!
//! Over a table of thousands of categorical conditions, predictions are made cheap without changing them:
//! `cross` computes covariances from per-parameter tables of levels, and [`Bounded`] computes a variance only
//! where a bound says it could matter.

pub use super::additive::Additive;
pub use super::kernel::Kernel;
use super::linalg::{
    NotPositiveDefinite, cholesky, extend_cholesky, inverse_from_cholesky, solve_lower, solve_lower_transposed,
};
use super::optimize::{Lbfgs, minimize};
pub use super::priors::{LOG_LENGTH_SCALE, LOG_NOISE, LOG_SIGNAL, NoisePrior, Priors, length_scale_prior};
#[cfg(test)]
use super::priors::{LOG_SIGNAL_PRIOR_SD, NOISE_PENALTY_SCALE};

/// The smallest noise, relative to the signal variance, of a point added by [`Gp::condition`].
pub const CONDITION_NOISE: f64 = 1e-6;

/// Why a model could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GpError {
    /// There is no training point, or inputs and outputs disagree in number or width.
    #[error("the training data are empty or inconsistent ({0})")]
    Data(String),
    /// The covariance matrix could not be factorised even with added jitter.
    #[error("the covariance matrix is singular: {0}")]
    Singular(#[from] NotPositiveDefinite),
    /// The hyperparameter search found no point where the likelihood is defined.
    #[error("no hyperparameters give a finite likelihood")]
    NoLikelihood,
}

/// A Gaussian process's hyperparameters, as natural logarithms, and its kernel.
#[derive(Debug, Clone, PartialEq)]
pub struct Hyper {
    /// The correlation function.
    pub kernel: Kernel,
    /// `ln ℓ_j`, one per input.
    pub log_length_scales: Vec<f64>,
    /// `ln s²`, the signal variance.
    pub log_signal: f64,
    /// `ln σ²`, the noise variance (ignored when noise is given per point).
    pub log_noise: f64,
    /// The kernel's additive part over groups of inputs, if it has one ([`Additive`]); it is not fitted.
    pub additive: Option<Additive>,
}

impl Hyper {
    /// Length scales `ℓ` for `d` inputs, unit signal variance and noise `σ² = noise`.
    pub fn new(d: usize, length_scale: f64, noise: f64) -> Self {
        Hyper {
            kernel: Kernel::Matern52,
            log_length_scales: vec![length_scale.ln(); d],
            log_signal: 0.0,
            log_noise: noise.ln(),
            additive: None,
        }
    }

    /// The same hyperparameters with another additive part (or none).
    pub fn with_additive(mut self, additive: Option<Additive>) -> Self {
        self.additive = additive;
        self
    }

    /// The same hyperparameters with another kernel.
    pub fn with_kernel(mut self, kernel: Kernel) -> Self {
        self.kernel = kernel;
        self
    }

    /// The length scales themselves.
    pub fn length_scales(&self) -> Vec<f64> {
        self.log_length_scales.iter().map(|v| v.exp()).collect()
    }

    /// The signal variance `s²`.
    pub fn signal(&self) -> f64 {
        self.log_signal.exp()
    }

    /// The noise variance `σ²`.
    pub fn noise(&self) -> f64 {
        self.log_noise.exp()
    }

    fn to_vec(&self) -> Vec<f64> {
        let mut v = self.log_length_scales.clone();
        v.push(self.log_signal);
        v.push(self.log_noise);
        v
    }

    fn from_vec(kernel: Kernel, additive: Option<Additive>, v: &[f64]) -> Self {
        let d = v.len() - 2;
        Hyper { kernel, log_length_scales: v[..d].to_vec(), log_signal: v[d], log_noise: v[d + 1], additive }
    }

    /// Scratch space for [`correlation`] under these hyperparameters.
    fn scratch(&self) -> Vec<f64> {
        vec![0.0; self.additive.as_ref().map_or(0, Additive::len)]
    }
}

/// How the constant mean is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mean {
    /// The generalised-least-squares estimate for the current kernel.
    Profiled,
    /// A given value.
    Fixed(f64),
}

/// A fitted Gaussian process: the training data, the hyperparameters and the factorised covariance.
#[derive(Debug, Clone)]
pub struct Gp {
    d: usize,
    n: usize,
    x: Vec<f64>,
    y: Vec<f64>,
    noise: Vec<f64>,
    hyper: Hyper,
    inv_ls2: Vec<f64>,
    signal: f64,
    mean: f64,
    l: Vec<f64>,
    alpha: Vec<f64>,
    log_likelihood: f64,
    jitter: f64,
}

/// A prediction at one point, with gradients with respect to the point's coordinates.
#[derive(Debug, Clone)]
pub struct Gradient {
    /// The posterior mean.
    pub mean: f64,
    /// The posterior variance of the latent function (without observation noise).
    pub variance: f64,
    /// The mean's gradient.
    pub d_mean: Vec<f64>,
    /// The variance's gradient.
    pub d_variance: Vec<f64>,
}

/// The training data of a model under construction.
struct Parts {
    d: usize,
    n: usize,
    x: Vec<f64>,
    y: Vec<f64>,
    noise: Vec<f64>,
    jitter: f64,
}

/// The correlation of `a` and `b` (with `inv_ls2[j] = 1/ℓ_j²`) under `kernel` and its `additive` part, if any, and
/// into `slopes`, when given, each input's factor `g_j` with `∂k/∂(ln ℓ_j) = g_j (a_j − b_j)² / ℓ_j²` (for the plain
/// kernel `−(dk/dr)/r`, the same for every input). `scratch` holds at least one value per input for an additive
/// part.
fn correlation(
    kernel: Kernel,
    additive: Option<&Additive>,
    (a, b): (&[f64], &[f64]),
    inv_ls2: &[f64],
    scratch: &mut [f64],
    slopes: Option<&mut [f64]>,
) -> f64 {
    match additive {
        Some(add) => add.correlation(kernel, a, b, inv_ls2, scratch, slopes),
        None => {
            let (c, slope) = kernel.eval(scaled_distance2(a, b, inv_ls2).sqrt());
            if let Some(slopes) = slopes {
                slopes.fill(slope);
            }
            c
        }
    }
}

fn scaled_distance2(a: &[f64], b: &[f64], inv_ls2: &[f64]) -> f64 {
    a.iter().zip(b).zip(inv_ls2).map(|((x, y), w)| (x - y) * (x - y) * w).sum()
}

impl Gp {
    /// Fits a model with the given hyperparameters and the homoscedastic noise they specify.
    pub fn fit(x: &[Vec<f64>], y: &[f64], hyper: &Hyper, mean: Mean) -> Result<Gp, GpError> {
        let noise = vec![hyper.noise(); y.len()];
        Gp::fit_with_noise(x, y, hyper, noise, mean)
    }

    /// Fits a model with the given hyperparameters and one noise variance per point (`hyper.log_noise` is
    /// ignored except for points added later by [`Gp::condition`]). When the covariance cannot be factorised,
    /// jitter of up to 1e-6 of the signal variance is added to the diagonal.
    pub fn fit_with_noise(
        x: &[Vec<f64>],
        y: &[f64],
        hyper: &Hyper,
        noise: Vec<f64>,
        mean: Mean,
    ) -> Result<Gp, GpError> {
        let n = y.len();
        let d = hyper.log_length_scales.len();
        if n == 0 || x.len() != n || noise.len() != n || x.iter().any(|r| r.len() != d) {
            return Err(GpError::Data(format!("{} inputs of width {d}, {n} outputs", x.len())));
        }
        if let Some(a) = hyper.additive.as_ref().filter(|a| a.len() != d) {
            return Err(GpError::Data(format!("an additive part over {} inputs, for inputs of width {d}", a.len())));
        }
        let flat: Vec<f64> = x.iter().flatten().copied().collect();
        let inv_ls2: Vec<f64> = hyper.log_length_scales.iter().map(|l| (-2.0 * l).exp()).collect();
        let signal = hyper.signal();
        let mut k = vec![0.0; n * n];
        let mut scratch = hyper.scratch();
        let additive = hyper.additive.as_ref();
        // Over a table of categorical conditions, per-parameter tables of levels give the same correlations for less.
        let points = flat.chunks_exact(d.max(1));
        let pairs = n * n.saturating_sub(1) / 2;
        let repeats = additive.and_then(|add| cross::Repeats::of(add, d, points.clone(), points, pairs));
        let levels = repeats.as_ref().map(|r| r.levels(hyper.kernel, &inv_ls2));
        for i in 0..n {
            for j in 0..i {
                let c = match &levels {
                    Some(levels) => levels.parts(i, j, &mut scratch).0,
                    None => {
                        let pair = (&flat[i * d..(i + 1) * d], &flat[j * d..(j + 1) * d]);
                        correlation(hyper.kernel, additive, pair, &inv_ls2, &mut scratch, None)
                    }
                };
                k[i * n + j] = signal * c;
            }
        }
        let mut jitter = 0.0;
        let mut last = None;
        for attempt in 0..6 {
            let mut a = k.clone();
            for i in 0..n {
                a[i * n + i] = signal + noise[i] + jitter;
            }
            match cholesky(&mut a, n) {
                Ok(()) => {
                    let noise: Vec<f64> = noise.iter().map(|v| v + jitter).collect();
                    let parts = Parts { d, n, x: flat, y: y.to_vec(), noise, jitter };
                    return Ok(Gp::finish(parts, hyper.clone(), inv_ls2, signal, mean, a));
                }
                Err(e) => {
                    last = Some(e);
                    jitter = signal * 10f64.powi(2 * attempt - 14);
                }
            }
        }
        Err(GpError::Singular(last.unwrap_or(NotPositiveDefinite { pivot: 0, value: f64::NAN })))
    }

    fn finish(parts: Parts, hyper: Hyper, inv_ls2: Vec<f64>, signal: f64, mean: Mean, l: Vec<f64>) -> Gp {
        let Parts { d, n, x, y, noise, jitter } = parts;
        let mean = match mean {
            Mean::Fixed(m) => m,
            Mean::Profiled => profiled_mean(&l, n, &y),
        };
        let mut alpha: Vec<f64> = y.iter().map(|v| v - mean).collect();
        solve_lower(&l, n, &mut alpha);
        let quad: f64 = alpha.iter().map(|v| v * v).sum();
        solve_lower_transposed(&l, n, &mut alpha);
        let log_det: f64 = (0..n).map(|i| l[i * n + i].ln()).sum::<f64>() * 2.0;
        let log_likelihood = -0.5 * quad - 0.5 * log_det - 0.5 * n as f64 * (2.0 * std::f64::consts::PI).ln();
        Gp { d, n, x, y, noise, hyper, inv_ls2, signal, mean, l, alpha, log_likelihood, jitter }
    }

    /// Fits the hyperparameters by maximum a posteriori from each of `starts` (the best four after one
    /// evaluation each, when there are more), for each of `kernels` in turn, and returns the model at the best optimum: the
    /// kernel too is chosen by the posterior, so a smooth function gets a smooth kernel and a rough one a rough
    /// kernel. Every input has its own length scale.
    pub fn fit_map(
        x: &[Vec<f64>],
        y: &[f64],
        starts: &[Hyper],
        kernels: &[Kernel],
        iterations: usize,
    ) -> Result<Gp, GpError> {
        let d = starts.first().map_or(0, |h| h.log_length_scales.len());
        Gp::fit_map_shared(x, y, starts, kernels, iterations, &Sharing::separate(d), &Priors::INTERPOLATING)
            .map(|(gp, _)| gp)
    }

    /// [`Gp::fit_map`] with inputs whose length scales are related as `sharing` says (tied to one value, or
    /// pooled around one), and the given `priors`. The length-scale prior is scaled by the number of groups. Also
    /// returns the log posterior density of the fitted hyperparameters (up to a constant that depends on the data
    /// alone), so that fits of the same data under different priors' bounds compare.
    pub fn fit_map_shared(
        x: &[Vec<f64>],
        y: &[f64],
        starts: &[Hyper],
        kernels: &[Kernel],
        iterations: usize,
        sharing: &Sharing,
        priors: &Priors,
    ) -> Result<(Gp, f64), GpError> {
        let n = y.len();
        let d = starts.first().map_or(0, |h| h.log_length_scales.len());
        if n == 0 || x.len() != n || x.iter().any(|r| r.len() != d) || sharing.groups.len() != d {
            return Err(GpError::Data(format!("{} inputs, {n} outputs, {} groups", x.len(), sharing.groups.len())));
        }
        let flat: Vec<f64> = x.iter().flatten().copied().collect();
        let settings = Lbfgs { iterations, memory: 8, first_step: 1.0, x_tolerance: 1e-6, f_tolerance: 1e-10 };
        // The first start's additive part, if any, is every start's: it is held, not fitted.
        let additive = starts.first().and_then(|h| h.additive.clone());
        if let Some(a) = additive.as_ref().filter(|a| a.len() != d) {
            return Err(GpError::Data(format!("an additive part over {} inputs, for inputs of width {d}", a.len())));
        }
        // Which inputs repeat depends on the data alone: found once, for every step of every climb.
        let points = flat.chunks_exact(d.max(1));
        let pairs = n * n.saturating_sub(1) / 2;
        let repeats = additive.as_ref().and_then(|a| cross::Repeats::of(a, d, points.clone(), points, pairs));
        let mut best: Option<(f64, Kernel, Vec<f64>)> = None;
        for &kernel in kernels {
            let structure = (kernel, additive.as_ref(), repeats.as_ref());
            let mut objective = |w: &[f64]| neg_log_posterior(&flat, n, y, w, sharing, structure, priors);
            let mut scored: Vec<(f64, Vec<f64>)> = starts
                .iter()
                .map(|h| {
                    let mut w = sharing.compress(&h.to_vec());
                    priors.clamp(&mut w);
                    (objective(&w).map_or(f64::INFINITY, |(f, _)| f), w)
                })
                .collect();
            scored.sort_by(|a, b| a.0.total_cmp(&b.0));
            for (f0, w) in scored.iter().take(4).filter(|(f, _)| f.is_finite()) {
                let found = minimize(&mut objective, w, &|w: &mut [f64]| priors.clamp(w), settings);
                let (f, w) = found.map_or((*f0, w.clone()), |m| (m.value, m.x));
                if best.as_ref().is_none_or(|(b, _, _)| f < *b) {
                    best = Some((f, kernel, w));
                }
            }
        }
        let (f, kernel, w) = best.ok_or(GpError::NoLikelihood)?;
        Ok((Gp::fit(x, y, &Hyper::from_vec(kernel, additive, &sharing.expand(&w)), Mean::Profiled)?, -f))
    }

    /// The hyperparameters.
    pub fn hyper(&self) -> &Hyper {
        &self.hyper
    }

    /// The constant mean.
    pub fn mean(&self) -> f64 {
        self.mean
    }

    /// The number of training points (fantasies included).
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether the model has no training point (never true of a fitted model).
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The log marginal likelihood of the training data.
    pub fn log_likelihood(&self) -> f64 {
        self.log_likelihood
    }

    /// The input width.
    pub fn dims(&self) -> usize {
        self.d
    }

    /// The posterior mean at every training point.
    pub fn training_means(&self) -> Vec<f64> {
        // (s²R + N) α = y - m, so the noise-free part at the training points is y - N α.
        self.y.iter().zip(&self.noise).zip(&self.alpha).map(|((y, s), a)| y - s * a).collect()
    }

    fn cross(&self, p: &[f64]) -> Vec<f64> {
        let mut scratch = self.hyper.scratch();
        let (kernel, additive) = (self.hyper.kernel, self.hyper.additive.as_ref());
        (0..self.n)
            .map(|i| {
                let pair = (p, &self.x[i * self.d..(i + 1) * self.d]);
                self.signal * correlation(kernel, additive, pair, &self.inv_ls2, &mut scratch, None)
            })
            .collect()
    }

    /// The posterior mean and latent variance at each point.
    pub fn predict(&self, points: &[Vec<f64>]) -> Vec<(f64, f64)> {
        if points.is_empty() {
            return Vec::new();
        }
        self.predict_bounded(points).all()
    }

    /// The posterior mean and latent variance at `p`, with their gradients.
    pub fn predict_gradient(&self, p: &[f64]) -> Gradient {
        let (n, d) = (self.n, self.d);
        let mut k = vec![0.0; n];
        // dk_i/dp_j = -s² g_j (p_j - x_ij) / ℓ_j², with g_j = -(dk/dr)/r for the plain kernel (`correlation`).
        let mut dk = vec![0.0; n * d];
        let mut scratch = self.hyper.scratch();
        let mut slopes = vec![0.0; d];
        let (kernel, additive) = (self.hyper.kernel, self.hyper.additive.as_ref());
        for i in 0..n {
            let xi = &self.x[i * d..(i + 1) * d];
            let c = correlation(kernel, additive, (p, xi), &self.inv_ls2, &mut scratch, Some(&mut slopes));
            k[i] = self.signal * c;
            for j in 0..d {
                dk[i * d + j] = -self.signal * slopes[j] * (p[j] - xi[j]) * self.inv_ls2[j];
            }
        }
        let mean = self.mean + k.iter().zip(&self.alpha).map(|(a, b)| a * b).sum::<f64>();
        let mut v = k.clone();
        solve_lower(&self.l, n, &mut v);
        let variance = (self.signal - v.iter().map(|x| x * x).sum::<f64>()).max(0.0);
        solve_lower_transposed(&self.l, n, &mut v);
        let mut d_mean = vec![0.0; d];
        let mut d_variance = vec![0.0; d];
        for i in 0..n {
            let (a, w) = (self.alpha[i], v[i]);
            for j in 0..d {
                let g = dk[i * d + j];
                d_mean[j] += g * a;
                d_variance[j] -= 2.0 * g * w;
            }
        }
        Gradient { mean, variance, d_mean, d_variance }
    }

    /// The model with one more observation `y` at `p`, with the same hyperparameters and mean (the factor grows by
    /// one row instead of being recomputed). The point's noise is the model's, but at least [`CONDITION_NOISE`]
    /// of the signal variance: the points added this way are beliefs, and a point the data already pin down
    /// would otherwise make the factor ill-conditioned.
    pub fn condition(&self, p: &[f64], y: f64) -> Result<Gp, GpError> {
        let noise = (self.hyper.noise() + self.jitter).max(CONDITION_NOISE * self.signal);
        let cross = self.cross(p);
        let l = extend_cholesky(&self.l, self.n, &cross, self.signal + noise)?;
        let mut x = self.x.clone();
        x.extend_from_slice(p);
        let mut ys = self.y.clone();
        ys.push(y);
        let mut noises = self.noise.clone();
        noises.push(noise);
        let parts = Parts { d: self.d, n: self.n + 1, x, y: ys, noise: noises, jitter: self.jitter };
        Ok(Gp::finish(parts, self.hyper.clone(), self.inv_ls2.clone(), self.signal, Mean::Fixed(self.mean), l))
    }
}

/// How inputs share length scales: each input belongs to a group, and the inputs of a group with several
/// members (a categorical parameter's one-hot features) either share one length scale (*tied*) or each have their
/// own, drawn from a log-normal around a fitted group value (*pooled*: a hierarchical prior). Groups of one input
/// have the plain prior either way.
///
/// Pooling is what the proposer uses. With a length scale per level and the plain prior, a level measured once
/// or twice keeps the prior's long scale, and the model takes it to behave like every other level (a catalyst
/// never tried where it is best); tied, the levels differ by one amount, and an interaction of particular levels
/// (a needle in a table) is smoothed away. Pooled, a level the data say little about keeps about its group's
/// scale, learned from the levels that were measured, while the data can still set a level apart.
#[derive(Debug, Clone, PartialEq)]
pub struct Sharing {
    groups: Vec<usize>,
    count: usize,
    /// The spread (in `ln ℓ`) of pooled levels around their group's value; `None` ties them.
    spread: Option<f64>,
    /// Per group, whether it has several members.
    several: Vec<bool>,
}

impl Sharing {
    /// Every one of `d` inputs with its own length scale and the plain prior.
    pub fn separate(d: usize) -> Self {
        Sharing { groups: (0..d).collect(), count: d, spread: None, several: vec![false; d] }
    }

    /// Input `j` in group `groups[j]` (numbered from 0, each number used); the members of a group share one length
    /// scale.
    pub fn tied(groups: &[usize]) -> Self {
        Sharing::new(groups, None)
    }

    /// Input `j` in group `groups[j]`; the members of a group have their own length scales, log-normal with spread
    /// `spread` around a group value, which has the plain prior.
    pub fn pooled(groups: &[usize], spread: f64) -> Self {
        Sharing::new(groups, Some(spread))
    }

    /// The number of length-scale groups, by which the length-scale prior is scaled.
    pub fn group_count(&self) -> usize {
        self.count
    }

    fn new(groups: &[usize], spread: Option<f64>) -> Self {
        let count = groups.iter().max().map_or(0, |m| m + 1);
        let mut members = vec![0usize; count];
        groups.iter().for_each(|k| members[*k] += 1);
        Sharing { groups: groups.to_vec(), count, spread, several: members.iter().map(|m| *m > 1).collect() }
    }

    /// The index, among the fitted values, of group `k`'s pooled value (after the inputs' own).
    fn pooled_index(&self, k: usize) -> Option<usize> {
        self.spread?;
        self.several[k].then(|| self.groups.len() + self.several[..k].iter().filter(|s| **s).count())
    }

    /// Per-input hyperparameters (`ln ℓ` per input, `ln s²`, `ln σ²`) from the fitted values.
    fn expand(&self, w: &[f64]) -> Vec<f64> {
        let tail = &w[w.len() - 2..];
        let mut v: Vec<f64> = match self.spread {
            None => self.groups.iter().map(|k| w[*k]).collect(),
            Some(_) => w[..self.groups.len()].to_vec(),
        };
        v.extend_from_slice(tail);
        v
    }

    /// The fitted values from per-input hyperparameters: a tied group's log length scale, or a pooled group's
    /// value, is the mean of its inputs'.
    fn compress(&self, v: &[f64]) -> Vec<f64> {
        let d = self.groups.len();
        let mut sums = vec![(0.0, 0usize); self.count];
        for (k, l) in self.groups.iter().zip(&v[..d]) {
            sums[*k].0 += l;
            sums[*k].1 += 1;
        }
        let means = sums.iter().map(|(s, c)| s / (*c).max(1) as f64);
        let mut w: Vec<f64> = match self.spread {
            None => means.collect(),
            Some(_) => {
                let mut w = v[..d].to_vec();
                w.extend(means.zip(&self.several).filter(|(_, s)| **s).map(|(m, _)| m));
                w
            }
        };
        w.extend_from_slice(&v[d..]);
        w
    }
}

/// The generalised-least-squares constant mean, `1ᵀK⁻¹y / 1ᵀK⁻¹1`, from the factor `l` of `K`.
fn profiled_mean(l: &[f64], n: usize, y: &[f64]) -> f64 {
    let mut ones = vec![1.0; n];
    solve_lower(l, n, &mut ones);
    let mut yy = y.to_vec();
    solve_lower(l, n, &mut yy);
    let num: f64 = ones.iter().zip(&yy).map(|(a, b)| a * b).sum();
    let den: f64 = ones.iter().map(|a| a * a).sum();
    if den > 0.0 && (num / den).is_finite() { num / den } else { 0.0 }
}

/// The negative log posterior of the fitted values `w` (per `sharing`: `ln ℓ` per tied group, or per input and
/// pooled group, then `ln s²`, `ln σ²`), and its gradient with respect to them, or `None` where the covariance
/// cannot be factorised.
fn neg_log_posterior(
    x: &[f64],
    n: usize,
    y: &[f64],
    w: &[f64],
    sharing: &Sharing,
    (kernel, additive, repeats): (Kernel, Option<&Additive>, Option<&cross::Repeats>),
    priors: &Priors,
) -> Option<(f64, Vec<f64>)> {
    let groups = &sharing.groups;
    let d = groups.len();
    let g = sharing.count;
    let v = &sharing.expand(w)[..];
    let inv_ls2: Vec<f64> = v[..d].iter().map(|l| (-2.0 * l).exp()).collect();
    let signal = v[d].exp();
    let noise = v[d + 1].exp();
    let mut k = vec![0.0; n * n];
    let mut scratch = vec![0.0; additive.map_or(0, Additive::len)];
    // Each pair's correlation and slopes, kept for the gradient below so that the kernel is evaluated once per pair:
    // the correlation, the slope of the kernel over all inputs, and each group's slope.
    let groups_slopes = additive.map_or(0, Additive::group_count);
    let stride = 2 + groups_slopes;
    let pairs = n * n.saturating_sub(1) / 2;
    let mut kept = vec![0.0; pairs * stride];
    // Over a table of categorical conditions, per-parameter tables of levels give the same parts for less.
    let levels = repeats.map(|r| r.levels(kernel, &inv_ls2));
    let mut at = 0;
    for i in 0..n {
        for j in 0..i {
            let (a, b) = (&x[i * d..(i + 1) * d], &x[j * d..(j + 1) * d]);
            let (c, whole_slope) = match (additive, &levels) {
                (Some(_), Some(levels)) => levels.parts(i, j, &mut scratch),
                (Some(add), None) => add.parts(kernel, a, b, &inv_ls2, &mut scratch),
                (None, _) => kernel.eval(scaled_distance2(a, b, &inv_ls2).sqrt()),
            };
            k[i * n + j] = signal * c;
            kept[at] = c;
            kept[at + 1] = whole_slope;
            kept[at + 2..at + stride].copy_from_slice(&scratch[..groups_slopes]);
            at += stride;
        }
        k[i * n + i] = signal + noise;
    }
    cholesky(&mut k, n).ok()?;
    let l = k;
    let mean = profiled_mean(&l, n, y);
    let mut alpha: Vec<f64> = y.iter().map(|v| v - mean).collect();
    solve_lower(&l, n, &mut alpha);
    let quad: f64 = alpha.iter().map(|v| v * v).sum();
    solve_lower_transposed(&l, n, &mut alpha);
    let log_det: f64 = (0..n).map(|i| l[i * n + i].ln()).sum::<f64>() * 2.0;
    let (mu, sd) = length_scale_prior(g);
    let mut value = 0.5 * quad + 0.5 * log_det + 0.5 * n as f64 * (2.0 * std::f64::consts::PI).ln();
    let mut grad = vec![0.0; d + 2];
    // A tied group's prior applies once, at the group's first input (whose gradient then goes to the group); a
    // pooled input's is centred on its group's value, which has the plain prior. Inputs of their own come in the
    // same order of operations as always, so a space without categorical parameters fits exactly as before.
    let mut pooled = vec![0.0; if sharing.spread.is_some() { w.len() - d - 2 } else { 0 }];
    let mut seen = vec![false; g];
    for (j, k) in groups.iter().enumerate() {
        match (sharing.pooled_index(*k), sharing.spread) {
            (Some(p), Some(tau)) => {
                let z = (v[j] - w[p]) / tau;
                value += 0.5 * z * z;
                grad[j] += z / tau;
                pooled[p - d] -= z / tau;
            }
            _ if !seen[*k] => {
                seen[*k] = true;
                value += 0.5 * ((v[j] - mu) / sd).powi(2);
                grad[j] += (v[j] - mu) / (sd * sd);
                if !sharing.several[*k] {
                    // The log-normal density over ℓ: -ln p(ℓ) = (ln ℓ - μ)² / 2s² + ln ℓ + constant.
                    value += v[j];
                    grad[j] += 1.0;
                }
            }
            _ => {}
        }
    }
    for (i, p) in pooled.iter_mut().enumerate() {
        let z = (w[d + i] - mu) / sd;
        value += 0.5 * z * z;
        *p += z / sd;
    }
    if let Some(spread) = priors.signal {
        value += 0.5 * (v[d] / spread).powi(2);
        grad[d] += v[d] / (spread * spread);
    }
    match priors.noise {
        NoisePrior::Penalty { scale } => {
            value += noise / scale;
            grad[d + 1] += noise / scale;
        }
        NoisePrior::LogNormal { mu, sd, .. } => {
            // The density over σ² itself: -ln p(σ²) = (ln σ² - μ)² / 2s² + ln σ² + constant.
            let z = (v[d + 1] - mu) / sd;
            value += 0.5 * z * z + v[d + 1];
            grad[d + 1] += z / sd + 1.0;
        }
    }
    // W = K⁻¹ - ααᵀ; the gradient is ½ tr(W ∂K/∂θ).
    let inv = inverse_from_cholesky(&l, n);
    let mut diag = 0.0;
    let mut slopes = vec![0.0; d];
    let mut at = 0;
    for i in 0..n {
        let w = inv[i * n + i] - alpha[i] * alpha[i];
        diag += w;
        let xi = &x[i * d..(i + 1) * d];
        for j in 0..i {
            let w = inv[i * n + j] - alpha[i] * alpha[j];
            let xj = &x[j * d..(j + 1) * d];
            let (c, whole_slope) = (kept[at], kept[at + 1]);
            let group_slopes = &kept[at + 2..at + stride];
            at += stride;
            // Both triangles, times ½.
            grad[d] += w * signal * c;
            let ws = w * signal;
            // Inputs the pair agrees in add nothing; over one-hot levels that is most of them, and with tables of
            // levels whole parameters are passed over at once.
            if let (Some(add), Some(levels)) = (additive, &levels) {
                for g in (0..levels.groups()).filter(|&g| !levels.agree(g, i, j)) {
                    let slope = add.group_slope(whole_slope, group_slopes, g);
                    for &q in levels.members(g) {
                        let delta = xi[q] - xj[q];
                        if delta != 0.0 {
                            grad[q] += ws * slope * delta * delta * inv_ls2[q];
                        }
                    }
                }
                continue;
            }
            match additive {
                Some(add) => add.slopes(whole_slope, group_slopes, &mut slopes),
                None => slopes.fill(whole_slope),
            }
            let inputs = grad[..d].iter_mut().zip(xi).zip(xj).zip(&slopes).zip(&inv_ls2);
            for ((((g, a), b), slope), w2) in inputs {
                let delta = a - b;
                if delta != 0.0 {
                    *g += ws * slope * delta * delta * w2;
                }
            }
        }
    }
    grad[d] += 0.5 * diag * signal;
    grad[d + 1] += 0.5 * diag * noise;
    if priors.signal.is_none() {
        // Held at 1: the search does not move it.
        grad[d] = 0.0;
    }
    if sharing.spread.is_some() {
        let tail = [grad[d], grad[d + 1]];
        grad.truncate(d);
        grad.extend(pooled);
        grad.extend(tail);
        return Some((value, grad));
    }
    // Per tied group, the inputs' gradients add up (with one input per group, exactly the input's gradient).
    let mut grouped = vec![0.0; g + 2];
    for (j, k) in groups.iter().enumerate() {
        grouped[*k] += grad[j];
    }
    grouped[g] = grad[d];
    grouped[g + 1] = grad[d + 1];
    Some((value, grouped))
}

mod bounded;
mod cross;

pub use bounded::Bounded;
#[cfg(test)]
mod tests;
