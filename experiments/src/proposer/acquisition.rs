//! Acquisition functions: expected improvement, its logarithm, and the normal distribution they rest on.
//!
//! Everything here follows the minimisation convention: `best` is the lowest value seen, and a point improves on
//! it by coming out lower. Expected improvement at a point with predicted mean `mu` and standard deviation
//! `sigma` is `sigma * h(z)` with `z = (best - mu) / sigma` and `h(z) = phi(z) + z * Phi(z)`.
//!
//! Plain expected improvement underflows to zero a few standard deviations away from the best point, so an
//! optimiser sees a flat landscape with nothing to climb. Following Ament et al. (2023, "Unexpected Improvements
//! to Expected Improvement for Bayesian Optimization"), [`log_h`] computes `ln h(z)` directly, using the scaled
//! complementary error function for negative `z`, so LogEI stays finite and informative for any `z`.
//! The error functions use W. J. Cody's rational approximations (Math. Comp. 23, 1969), accurate to double
//! precision, so no special-function crate is needed.

use std::f64::consts::FRAC_1_SQRT_2;

/// `ln(2 * pi) / 2`.
const HALF_LN_2PI: f64 = 0.918_938_533_204_672_8;
/// `ln(pi / 2) / 2`.
const HALF_LN_PI_OVER_2: f64 = 0.225_791_352_644_727_43;
/// `1 / sqrt(pi)`.
const FRAC_1_SQRT_PI: f64 = 0.564_189_583_547_756_3;

/// The standard normal density.
pub fn normal_pdf(z: f64) -> f64 {
    (-0.5 * z * z - HALF_LN_2PI).exp()
}

/// The standard normal cumulative distribution, accurate in both tails.
pub fn normal_cdf(z: f64) -> f64 {
    0.5 * erfc(-z * FRAC_1_SQRT_2)
}

/// `ln(phi(z) + z * Phi(z))`, the logarithm of expected improvement for a unit standard deviation, without
/// underflow or cancellation for very negative `z`.
pub fn log_h(z: f64) -> f64 {
    if z.is_nan() {
        return f64::NAN;
    }
    if z > -1.0 {
        // Here h(z) >= h(-1) = 0.083, so computing it directly loses nothing.
        return (normal_pdf(z) + z * normal_cdf(z)).ln();
    }
    let head = -0.5 * z * z - HALF_LN_2PI;
    if z > -1.0 / f64::EPSILON.sqrt() {
        // h(z) = phi(z) * (1 - |z| * erfcx(-z / sqrt 2) * sqrt(pi / 2)), and the bracket is computed in log space.
        head + log1mexp((erfcx(-z * FRAC_1_SQRT_2) * -z).ln() + HALF_LN_PI_OVER_2)
    } else {
        // The asymptotic form h(z) ~ phi(z) / z^2, exact to double precision this far out.
        head - 2.0 * (-z).ln()
    }
}

/// `ln Φ(z)`, accurate far into the lower tail (where `Φ` itself underflows).
pub fn log_normal_cdf(z: f64) -> f64 {
    if z.is_nan() {
        return f64::NAN;
    }
    if z > -5.0 {
        normal_cdf(z).ln()
    } else {
        // Φ(z) = erfcx(-z / √2) exp(-z² / 2) / 2.
        (0.5 * erfcx(-z * FRAC_1_SQRT_2)).ln() - 0.5 * z * z
    }
}

/// The quantile function of the standard normal distribution, for `p` in `(0, 1)` (Acklam's rational
/// approximation refined by one Halley step, accurate to about 1e-15); `p` outside `(0, 1)` is clamped.
pub fn inverse_normal_cdf(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] =
        [7.784_695_709_041_462e-3, 3.224_671_290_700_398e-1, 2.445_134_137_142_996, 3.754_408_661_907_416];
    let p = if p.is_nan() { 0.5 } else { p.clamp(1e-300, 1.0 - 1e-16) };
    let low = 0.024_25;
    let x = if p < low {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - low {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        let q = (-2.0 * (1.0 - p).ln()).sqrt();
        -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    // One Halley step on Φ(x) - p.
    let e = normal_cdf(x) - p;
    let u = e * (2.0 * std::f64::consts::PI).sqrt() * (0.5 * x * x).exp();
    x - u / (1.0 + 0.5 * x * u)
}

/// Expected improvement below `best` for a prediction with mean `mu` and standard deviation `sigma`.
pub fn expected_improvement(mu: f64, sigma: f64, best: f64) -> f64 {
    if sigma > f64::MIN_POSITIVE.sqrt() {
        let z = (best - mu) / sigma;
        sigma * (normal_pdf(z) + z * normal_cdf(z)).max(0.0)
    } else {
        (best - mu).max(0.0)
    }
}

/// The natural logarithm of [`expected_improvement`], finite wherever `sigma > 0`.
pub fn log_expected_improvement(mu: f64, sigma: f64, best: f64) -> f64 {
    if sigma > f64::MIN_POSITIVE.sqrt() { log_h((best - mu) / sigma) + sigma.ln() } else { (best - mu).max(0.0).ln() }
}

/// Below this standard deviation a prediction counts as certain.
const TINY_SD: f64 = 1e-12;

impl super::Acquisition {
    /// The acquisition value of a prediction with mean `mean` and latent variance `variance` (minimisation
    /// convention, standardised units), given the best value so far `best`. Log-scale criteria (LogEI, PI as
    /// `ln PI`) are returned as natural logarithms.
    pub fn value(&self, mean: f64, variance: f64, best: f64) -> f64 {
        let sd = variance.max(0.0).sqrt();
        match self {
            Self::LogExpectedImprovement => log_expected_improvement(mean, sd, best),
            Self::ExpectedImprovement => expected_improvement(mean, sd, best),
            Self::ProbabilityOfImprovement => {
                if sd > TINY_SD {
                    log_normal_cdf((best - mean) / sd)
                } else if mean < best {
                    0.0
                } else {
                    f64::NEG_INFINITY
                }
            }
            Self::UpperConfidenceBound { beta } => beta.max(0.0).sqrt() * sd - mean,
        }
    }

    /// [`Self::value`] and its gradient, from the prediction's gradients.
    pub fn value_gradient(
        &self,
        mean: f64,
        variance: f64,
        d_mean: &[f64],
        d_variance: &[f64],
        best: f64,
    ) -> (f64, Vec<f64>) {
        let sd = variance.max(0.0).sqrt();
        let value = self.value(mean, variance, best);
        if sd <= TINY_SD || !value.is_finite() {
            return (value, vec![0.0; d_mean.len()]);
        }
        let z = (best - mean) / sd;
        // d sd = d var / (2 sd); d z = (-d mean - z d sd) / sd.
        let grad = d_mean.iter().zip(d_variance).map(|(dm, dv)| {
            let dsd = dv / (2.0 * sd);
            let dz = (-dm - z * dsd) / sd;
            match self {
                Self::LogExpectedImprovement => (log_normal_cdf(z) - log_h(z)).exp() * dz + dsd / sd,
                Self::ExpectedImprovement => -normal_cdf(z) * dm + normal_pdf(z) * dsd,
                Self::ProbabilityOfImprovement => (normal_pdf(z).ln() - log_normal_cdf(z)).exp() * dz,
                Self::UpperConfidenceBound { beta } => beta.max(0.0).sqrt() * dsd - dm,
            }
        });
        (value, grad.collect())
    }

    /// Whether the value never falls as the variance grows at a fixed mean, so that an upper bound on a point's
    /// variance bounds its value. The probability of improvement falls with the variance where the mean is
    /// already better than the best.
    pub fn grows_with_variance(&self) -> bool {
        !matches!(self, Self::ProbabilityOfImprovement)
    }

    /// Whether the value is a logarithm, so feasibility enters by adding `ln P` rather than multiplying by `P`.
    pub fn is_log_scale(&self) -> bool {
        matches!(self, Self::LogExpectedImprovement | Self::ProbabilityOfImprovement)
    }
}

/// `ln(1 - exp(x))` for `x < 0`, accurate near zero and for very negative `x` (Maechler 2012).
fn log1mexp(x: f64) -> f64 {
    if x > -std::f64::consts::LN_2 { (-x.exp_m1()).ln() } else { (-x.exp()).ln_1p() }
}

/// The complementary error function.
fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    let y = x.abs();
    let upper = if y <= 0.468_75 { 1.0 - erf_small(y) } else { erfcx_positive(y) * exp_neg_square(y) };
    if x < 0.0 { 2.0 - upper } else { upper }
}

/// The scaled complementary error function `exp(x^2) * erfc(x)`.
fn erfcx(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x < 0.0 {
        // erfcx(-y) = 2 exp(y^2) - erfcx(y); it overflows to infinity only where exp(y^2) does.
        let y = -x;
        let low = if y <= 0.468_75 { (1.0 - erf_small(y)) * (y * y).exp() } else { erfcx_positive(y) };
        return 2.0 / exp_neg_square(y) - low;
    }
    if x <= 0.468_75 { (1.0 - erf_small(x)) * (x * x).exp() } else { erfcx_positive(x) }
}

/// `exp(-y^2)`, split so the rounding of `y^2` does not cost accuracy for large `y` (as in Cody's CALERF).
fn exp_neg_square(y: f64) -> f64 {
    let head = (y * 16.0).trunc() / 16.0;
    let del = (y - head) * (y + head);
    (-head * head).exp() * (-del).exp()
}

/// `erf(y)` for `|y| <= 0.46875`.
fn erf_small(y: f64) -> f64 {
    const A: [f64; 5] = [
        3.161_123_743_870_565_6e0,
        1.138_641_541_510_501_6e2,
        3.774_852_376_853_02e2,
        3.209_377_589_138_469_5e3,
        1.857_777_061_846_031_5e-1,
    ];
    const B: [f64; 4] =
        [2.360_129_095_234_412_1e1, 2.440_246_379_344_441_7e2, 1.282_616_526_077_372_3e3, 2.844_236_833_439_171e3];
    let z = y * y;
    let mut num = A[4] * z;
    let mut den = z;
    for i in 0..3 {
        num = (num + A[i]) * z;
        den = (den + B[i]) * z;
    }
    y * (num + A[3]) / (den + B[3])
}

/// `erfcx(y)` for `y > 0.46875`.
fn erfcx_positive(y: f64) -> f64 {
    if y <= 4.0 {
        const C: [f64; 9] = [
            5.641_884_969_886_701e-1,
            8.883_149_794_388_376e0,
            6.611_919_063_714_163e1,
            2.986_351_381_974_001e2,
            8.819_522_212_417_69e2,
            1.712_047_612_634_070_6e3,
            2.051_078_377_826_071_5e3,
            1.230_339_354_797_997_2e3,
            2.153_115_354_744_038_5e-8,
        ];
        const D: [f64; 8] = [
            1.574_492_611_070_983_5e1,
            1.176_939_508_913_125e2,
            5.371_811_018_620_099e2,
            1.621_389_574_566_690_2e3,
            3.290_799_235_733_459_6e3,
            4.362_619_090_143_247e3,
            3.439_367_674_143_721_6e3,
            1.230_339_354_803_749_5e3,
        ];
        let mut num = C[8] * y;
        let mut den = y;
        for i in 0..7 {
            num = (num + C[i]) * y;
            den = (den + D[i]) * y;
        }
        (num + C[7]) / (den + D[7])
    } else if y >= 6.71e7 {
        // Beyond here the correction term is below double precision.
        FRAC_1_SQRT_PI / y
    } else {
        const P: [f64; 6] = [
            3.053_266_349_612_323_4e-1,
            3.603_448_999_498_044_4e-1,
            1.257_817_261_112_292_5e-1,
            1.608_378_514_874_227_5e-2,
            6.587_491_615_298_378e-4,
            1.631_538_713_730_209_8e-2,
        ];
        const Q: [f64; 5] = [
            2.568_520_192_289_822e0,
            1.872_952_849_923_460_5e0,
            5.279_051_029_514_284e-1,
            6.051_834_131_244_132e-2,
            2.335_204_976_268_691_8e-3,
        ];
        let z = 1.0 / (y * y);
        let mut num = P[5] * z;
        let mut den = z;
        for i in 0..4 {
            num = (num + P[i]) * z;
            den = (den + Q[i]) * z;
        }
        let r = z * (num + P[4]) / (den + Q[4]);
        (FRAC_1_SQRT_PI - r) / y
    }
}

#[cfg(test)]
mod tests {
    use std::f64::consts::PI;

    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(f64::MIN_POSITIVE)
    }

    #[test]
    fn constants_match_their_definitions() {
        assert!(close(HALF_LN_2PI, (2.0 * PI).ln() / 2.0, 1e-15));
        assert!(close(HALF_LN_PI_OVER_2, (PI / 2.0).ln() / 2.0, 1e-15));
        assert!(close(FRAC_1_SQRT_PI, 1.0 / PI.sqrt(), 1e-15));
    }

    #[test]
    fn error_functions_match_reference_values() {
        // Reference values from Abramowitz & Stegun and mpmath.
        assert!(close(erfc(0.0), 1.0, 1e-15));
        assert!(close(erfc(0.3), 0.671_373_240_540_872_6, 1e-14));
        assert!(close(erfc(1.0), 0.157_299_207_050_285_13, 1e-14));
        assert!(close(erfc(3.0), 2.209_049_699_858_544e-5, 1e-13));
        assert!(close(erfc(-1.0), 1.842_700_792_949_715, 1e-14));
        assert!(close(erfcx(5.0), 0.110_704_637_733_068_6, 1e-13));
        assert!(close(erfcx(30.0), 0.018_795_888_861_416_75, 1e-13));
        assert!(close(erfcx(0.2), 0.809_019_519_901_580_7, 1e-14));
        assert!(close(normal_cdf(-10.0), 7.619_853_024_160_527e-24, 1e-12));
        assert!(close(normal_cdf(1.959_963_984_540_054), 0.975, 1e-14));
    }

    #[test]
    fn log_h_agrees_with_the_direct_formula_where_that_is_accurate() {
        for z in [-5.0, -3.0, -1.5, -1.0, -0.999, -0.5, 0.0, 0.7, 2.0, 6.0] {
            let direct = (normal_pdf(z) + z * normal_cdf(z)).ln();
            assert!(close(log_h(z), direct, 1e-9), "z = {z}: {} vs {direct}", log_h(z));
        }
    }

    #[test]
    fn log_h_is_finite_and_monotone_far_into_the_tail() {
        // Reference values of ln(phi(z) + z Phi(z)) from mpmath at 60 digits.
        for (z, reference) in [
            (-6.0, -22.578_879_392_169_797),
            (-20.0, -206.917_838_509_425_1),
            (-40.0, -808.298_568_356_62),
            (-200.0, -20_011.515_648_259_74),
            (-1e4, -50_000_019.339_619_31),
        ] {
            assert!(close(log_h(z), reference, 1e-13), "z = {z}: {} vs {reference}", log_h(z));
        }
        let mut previous = f64::NEG_INFINITY;
        for i in 0..4000 {
            let z = -1e9 + (i as f64).powi(3) * 1.6e-2;
            let v = log_h(z.min(10.0));
            assert!(v.is_finite() && v >= previous, "log_h not increasing at z = {z}");
            previous = v;
        }
        assert!(log_h(-1e9).is_finite());
    }

    #[test]
    fn acquisition_gradients_match_finite_differences() {
        use crate::proposer::Acquisition;
        // A prediction whose mean and variance depend on one coordinate t.
        let at = |t: f64| (0.3 * t * t - 0.5 * t, 0.04 + 0.2 * t * t);
        let d = |t: f64| (0.6 * t - 0.5, 0.4 * t);
        for acquisition in [
            Acquisition::LogExpectedImprovement,
            Acquisition::ExpectedImprovement,
            Acquisition::ProbabilityOfImprovement,
            Acquisition::UpperConfidenceBound { beta: 2.0 },
        ] {
            for (t, best) in [(0.7, -0.1), (1.5, -2.0), (-2.0, 0.3)] {
                let (m, v) = at(t);
                let (dm, dv) = d(t);
                let (value, grad) = acquisition.value_gradient(m, v, &[dm], &[dv], best);
                assert_eq!(value, acquisition.value(m, v, best));
                let h = 1e-6;
                let (mu, vu) = at(t + h);
                let (md, vd) = at(t - h);
                let fd = (acquisition.value(mu, vu, best) - acquisition.value(md, vd, best)) / (2.0 * h);
                assert!((fd - grad[0]).abs() < 1e-5 * (1.0 + fd.abs()), "{acquisition:?} at {t}: {fd} vs {}", grad[0]);
            }
        }
    }

    #[test]
    fn the_normal_quantile_inverts_the_distribution() {
        for p in [1e-12, 1e-5, 0.01, 0.2, 0.5, 0.77, 0.99, 1.0 - 1e-9] {
            let x = inverse_normal_cdf(p);
            assert!(close(normal_cdf(x), p, 1e-9), "p = {p}: x = {x}");
        }
        assert_eq!(inverse_normal_cdf(0.5), 0.0);
        for z in [-30.0, -6.0, -5.0, -4.9, -1.0, 0.0, 2.0] {
            let direct = normal_cdf(z).ln();
            assert!(close(log_normal_cdf(z), direct, 1e-10), "z = {z}");
        }
        assert!(close(log_normal_cdf(-40.0), -804.608_442_013_754_1, 1e-12));
    }

    #[test]
    fn expected_improvement_and_its_log_agree() {
        let ei = expected_improvement(1.0, 0.5, 0.8);
        assert!(close(log_expected_improvement(1.0, 0.5, 0.8), ei.ln(), 1e-12));
        assert_eq!(expected_improvement(1.0, 0.0, 2.0), 1.0);
        assert_eq!(log_expected_improvement(1.0, 0.0, 0.5), f64::NEG_INFINITY);
        // Forty standard deviations from the best, EI underflows but LogEI still ranks points.
        assert_eq!(expected_improvement(41.0, 1.0, 0.0), 0.0);
        assert!(log_expected_improvement(41.0, 1.0, 0.0) < log_expected_improvement(40.0, 1.0, 0.0));
    }
}
