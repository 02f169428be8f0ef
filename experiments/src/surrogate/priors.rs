//! The priors and bounds a Gaussian process's hyperparameters are fitted under: the proposer's own, which let a
//! noise-free function be interpolated ([`Priors::INTERPOLATING`]); BoTorch's, for results the data say are noisy
//! ([`Priors::NOISY`]); and the proposer's with the noise held near zero ([`Priors::NOISE_FREE`]), the best
//! explanation without noise, against which a fit that found noise is weighed. The length-scale prior
//! ([`length_scale_prior`]) is common to all three.

/// Bounds of the hyperparameters, as natural logarithms.
pub const LOG_LENGTH_SCALE: (f64, f64) = (-4.6, 4.6);
/// Bounds of `ln s²`.
pub const LOG_SIGNAL: (f64, f64) = (-4.6, 4.6);
/// Bounds of `ln σ²`: from about 1e-12 of the output variance (a numerical floor) to the output variance.
pub const LOG_NOISE: (f64, f64) = (-27.6, 0.0);
/// The spread of the log-normal prior on `s²`.
pub(crate) const LOG_SIGNAL_PRIOR_SD: f64 = 2.0;
/// The scale of the exponential penalty on the noise variance: flat (in `ln σ²`) well below it, growing linearly
/// in `σ²` above it.
pub(crate) const NOISE_PENALTY_SCALE: f64 = 0.1;

/// The priors and bounds of a fit. [`Priors::INTERPOLATING`] is the proposer's model; [`Priors::NOISY`] is BoTorch's
/// (`SingleTaskGP`'s defaults), which the proposer refits with when the data say the results are noisy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Priors {
    /// `Some(sd)`: the signal variance is fitted, with a log-normal prior of spread `sd` around 1; `None`: it is
    /// held at 1 (the outputs are standardised).
    pub signal: Option<f64>,
    /// The prior on the noise variance.
    pub noise: NoisePrior,
    /// The shortest length scale, as a natural logarithm.
    pub min_log_length_scale: f64,
    /// The largest noise variance, as a natural logarithm.
    pub max_log_noise: f64,
}

/// The prior on the noise variance `σ²` of standardised outputs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NoisePrior {
    /// A penalty `σ² / scale`: flat in `ln σ²` well below `scale`, so that on a noise-free function the noise falls
    /// to the numerical floor and the model interpolates, but a handful of points cannot be explained as pure noise.
    Penalty {
        /// Where the penalty starts to bite.
        scale: f64,
    },
    /// A log-normal density over `σ²` itself (as GPyTorch evaluates it), with `σ² ≥ floor`.
    LogNormal {
        /// The location of `ln σ²`.
        mu: f64,
        /// The spread of `ln σ²`.
        sd: f64,
        /// The smallest noise variance.
        floor: f64,
    },
}

impl Priors {
    /// The proposer's own model: the signal variance fitted, the noise penalised only where it is large, length
    /// scales down to about 0.01.
    pub const INTERPOLATING: Priors = Priors {
        signal: Some(LOG_SIGNAL_PRIOR_SD),
        noise: NoisePrior::Penalty { scale: NOISE_PENALTY_SCALE },
        min_log_length_scale: LOG_LENGTH_SCALE.0,
        max_log_noise: LOG_NOISE.1,
    };

    /// The interpolating model with its noise held below 1e-6 of the outputs' variance (`ln 1e-6 = −13.8`): the
    /// best explanation of the data without noise, against which a fit that found noise is weighed.
    pub const NOISE_FREE: Priors = Priors { max_log_noise: -13.815_510_557_964_274, ..Priors::INTERPOLATING };

    /// BoTorch's `SingleTaskGP` (0.12 and later): no output scale, a LogNormal(−4, 1) prior on the noise with a
    /// floor of 1e-4, and length scales of at least 0.025 (`ln 0.025 = −3.689`).
    pub const NOISY: Priors = Priors {
        signal: None,
        noise: NoisePrior::LogNormal { mu: -4.0, sd: 1.0, floor: 1e-4 },
        min_log_length_scale: -3.688_879_454_113_936,
        max_log_noise: LOG_NOISE.1,
    };

    /// Holds fitted values (`ln ℓ` per length scale, `ln s²`, `ln σ²`) within these priors' bounds.
    pub(crate) fn clamp(&self, v: &mut [f64]) {
        let d = v.len() - 2;
        for x in &mut v[..d] {
            *x = x.clamp(self.min_log_length_scale, LOG_LENGTH_SCALE.1);
        }
        v[d] = match self.signal {
            Some(_) => v[d].clamp(LOG_SIGNAL.0, LOG_SIGNAL.1),
            None => 0.0,
        };
        let floor = match self.noise {
            NoisePrior::Penalty { .. } => LOG_NOISE.0,
            NoisePrior::LogNormal { floor, .. } => floor.ln(),
        };
        v[d + 1] = v[d + 1].clamp(floor, self.max_log_noise);
    }

    /// The most probable length scale and noise variance under these priors with `groups` length-scale groups,
    /// where BoTorch starts its one fit: the length scale at its prior's mode `exp(μ - s²)`, the noise at its
    /// mode `exp(μ - s²)` (or 1e-4 with the penalty, which has none).
    pub fn mode(&self, groups: usize) -> (f64, f64) {
        let (mu, sd) = length_scale_prior(groups);
        let noise = match self.noise {
            NoisePrior::Penalty { .. } => 1e-4,
            NoisePrior::LogNormal { mu, sd, floor } => (mu - sd * sd).exp().max(floor),
        };
        ((mu - sd * sd).exp(), noise)
    }
}

/// The centre and spread of the log-normal prior on length scales for `d` inputs (Hvarfner et al. 2024).
pub fn length_scale_prior(d: usize) -> (f64, f64) {
    (std::f64::consts::SQRT_2 + (d.max(1) as f64).ln() / 2.0, 3f64.sqrt())
}
