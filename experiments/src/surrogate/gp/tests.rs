//! The Gaussian process's tests: gradients against finite differences, the priors' bounds, sharing of length
//! scales, conditioning, and the textbook posterior.

use super::*;

fn data() -> (Vec<Vec<f64>>, Vec<f64>) {
    let x: Vec<Vec<f64>> = (0..12).map(|i| vec![i as f64 / 11.0, ((i * 7) % 12) as f64 / 11.0]).collect();
    let y: Vec<f64> = x.iter().map(|p| (6.0 * p[0]).sin() + 0.3 * p[1]).collect();
    (x, y)
}

#[test]
fn a_fit_over_repeating_levels_gives_the_same_likelihood_and_gradient_with_tables_as_without() {
    // Thirty points of two one-hot parameters (4 and 3 levels) and a third input that repeats too: the tables of
    // levels must change nothing, to the bit, in the value or the gradient the climb follows.
    let x: Vec<Vec<f64>> = (0..30)
        .map(|i| {
            let mut r = vec![0.0; 8];
            r[i % 4] = 1.0;
            r[4 + (i * 7 / 3) % 3] = 1.0;
            r[7] = (i % 5) as f64 / 4.0;
            r
        })
        .collect();
    let y: Vec<f64> = (0..30).map(|i| (i as f64 * 0.9).sin()).collect();
    let flat: Vec<f64> = x.iter().flatten().copied().collect();
    let groups = [0, 0, 0, 0, 1, 1, 1, 2];
    let additive = Additive::new(&groups, 0.5);
    let points = flat.chunks_exact(8);
    let repeats = cross::Repeats::of(&additive, 8, points.clone(), points, 30 * 29 / 2).expect("levels repeat");
    let separate = Sharing::separate(8);
    let w: Vec<f64> = (0..10).map(|k| -0.5 + 0.1 * k as f64).collect();
    for kernel in [Kernel::Matern52, Kernel::SquaredExponential] {
        for priors in [Priors::INTERPOLATING, Priors::NOISY] {
            let at =
                |r| neg_log_posterior(&flat, 30, &y, &w, &separate, (kernel, Some(&additive), r), &priors).unwrap();
            let ((f, g), (f0, g0)) = (at(Some(&repeats)), at(None));
            assert_eq!(f.to_bits(), f0.to_bits(), "{kernel:?}");
            assert!(g.iter().zip(&g0).all(|(a, b)| a.to_bits() == b.to_bits()), "{kernel:?}: {g:?} against {g0:?}");
        }
    }
}

#[test]
fn the_likelihood_gradient_matches_finite_differences() {
    let (x, y) = data();
    let flat: Vec<f64> = x.iter().flatten().copied().collect();
    let v = vec![-1.0, 0.4, 0.2, -5.0];
    let prior = length_scale_prior(2);
    let separate = Sharing::separate(2);
    let structures = [Kernel::Matern52, Kernel::SquaredExponential]
        .into_iter()
        .flat_map(|k| [(k, None), (k, Some(Additive::new(&[0, 1], 0.4)))]);
    for (kernel, additive) in structures {
        for priors in [Priors::INTERPOLATING, Priors::NOISY] {
            let structure = (kernel, additive.as_ref(), None);
            let at = |w: &[f64]| neg_log_posterior(&flat, 12, &y, w, &separate, structure, &priors).unwrap();
            let (f, g) = at(&v);
            for k in 0..4 {
                let h = 1e-6;
                let mut up = v.clone();
                up[k] += h;
                let mut down = v.clone();
                down[k] -= h;
                // The noisy priors hold the signal variance: its component is zero.
                let fd = if k == 2 && priors.signal.is_none() { 0.0 } else { (at(&up).0 - at(&down).0) / (2.0 * h) };
                assert!((fd - g[k]).abs() < 1e-5 * (1.0 + fd.abs()), "component {k}: {fd} vs {}", g[k]);
            }
            let gp = Gp::fit(&x, &y, &Hyper::from_vec(kernel, additive.clone(), &v), Mean::Profiled).unwrap();
            // Each length scale's log-normal density over ℓ, which has the `ln ℓ` term.
            let lengths =
                0.5 * ((v[0] - prior.0) / prior.1).powi(2) + v[0] + 0.5 * ((v[1] - prior.0) / prior.1).powi(2) + v[1];
            let rest = match priors.noise {
                NoisePrior::Penalty { .. } => {
                    0.5 * (v[2] / LOG_SIGNAL_PRIOR_SD).powi(2) + v[3].exp() / NOISE_PENALTY_SCALE
                }
                // LogNormal(−4, 1) over σ² itself, and no prior on a held signal variance.
                NoisePrior::LogNormal { .. } => 0.5 * (v[3] + 4.0).powi(2) + v[3],
            };
            assert!((f - lengths - rest + gp.log_likelihood()).abs() < 1e-9);
        }
    }
}

#[test]
fn the_priors_hold_their_bounds_and_a_noise_free_fit_of_noisy_data_is_far_less_probable() {
    // A sharp function sampled densely: the interpolating fit takes short length scales and almost no noise.
    let x: Vec<Vec<f64>> = (0..30).map(|i| vec![i as f64 / 29.0]).collect();
    let y: Vec<f64> = x.iter().map(|p| (40.0 * p[0]).sin()).collect();
    let sharing = Sharing::separate(1);
    let (length, noise) = Priors::NOISY.mode(1);
    let start = Hyper::new(1, length, noise).with_kernel(Kernel::SquaredExponential);
    let noisy =
        Gp::fit_map_shared(&x, &y, &[start], &[Kernel::SquaredExponential], 100, &sharing, &Priors::NOISY).unwrap().0;
    assert_eq!(noisy.hyper().log_signal, 0.0);
    assert!(noisy.hyper().noise() >= 1e-4 * (1.0 - 1e-12));
    assert!(noisy.hyper().length_scales()[0] >= 0.025 * (1.0 - 1e-12));
    let short = Hyper::new(1, 0.05, 1e-6);
    let (ours, _) =
        Gp::fit_map_shared(&x, &y, &[short], &[Kernel::SquaredExponential], 100, &sharing, &Priors::INTERPOLATING)
            .unwrap();
    assert!(ours.hyper().noise() < 1e-4, "{}", ours.hyper().noise());
    // On noisy data, the fit held noise-free keeps its noise under the cap and is far less probable.
    let draws = crate::bench::landscape::noise_draws(5, 30);
    let noisy_y: Vec<f64> = x.iter().zip(&draws).map(|(p, z)| (6.0 * p[0]).sin() + 0.2 * z).collect();
    let starts = [Hyper::new(1, 0.05, 1e-6), Hyper::new(1, 0.3, 1e-2)];
    let kernels = [Kernel::SquaredExponential];
    let fit = |priors: &Priors| Gp::fit_map_shared(&x, &noisy_y, &starts, &kernels, 100, &sharing, priors).unwrap();
    let ((capped, capped_score), (free, score)) = (fit(&Priors::NOISE_FREE), fit(&Priors::INTERPOLATING));
    assert!(capped.hyper().noise() <= 1e-6 * (1.0 + 1e-9), "{}", capped.hyper().noise());
    assert!(free.hyper().noise() > 1e-3, "{}", free.hyper().noise());
    assert!(score - capped_score > 3.0, "{score} against {capped_score}");
    // The mode of LogNormal(μ, s) over its variable is exp(μ - s²).
    assert!((Priors::NOISY.mode(1).1 - (-5f64).exp()).abs() < 1e-12);
}

/// The finite-difference check of `neg_log_posterior`'s gradient with respect to the fitted values `w`.
fn check_gradient(x: &[Vec<f64>], y: &[f64], w: &[f64], sharing: &Sharing) {
    let flat: Vec<f64> = x.iter().flatten().copied().collect();
    let at = |w: &[f64]| {
        neg_log_posterior(&flat, y.len(), y, w, sharing, (Kernel::Matern52, None, None), &Priors::INTERPOLATING)
            .unwrap()
    };
    let (_, g) = at(w);
    assert_eq!(g.len(), w.len());
    for k in 0..w.len() {
        let (mut up, mut down) = (w.to_vec(), w.to_vec());
        up[k] += 1e-6;
        down[k] -= 1e-6;
        let fd = (at(&up).0 - at(&down).0) / 2e-6;
        assert!((fd - g[k]).abs() < 1e-5 * (1.0 + fd.abs()), "component {k}: {fd} vs {}", g[k]);
    }
}

/// One continuous input and a three-level categorical one, one-hot; the first two levels are measured four
/// times each and matter, the third is measured twice.
fn categorical_data() -> (Vec<Vec<f64>>, Vec<f64>) {
    let x: Vec<Vec<f64>> = (0..10)
        .map(|i| {
            let level = [0, 1, 0, 1, 0, 1, 0, 1, 2, 2][i];
            let mut row = vec![i as f64 / 9.0, 0.0, 0.0, 0.0];
            row[1 + level] = 1.0;
            row
        })
        .collect();
    let y: Vec<f64> = x.iter().map(|p| (4.0 * p[0]).sin() + 0.8 * p[1] - 0.3 * p[3]).collect();
    (x, y)
}

#[test]
fn tied_length_scales_have_the_summed_gradient_and_fit() {
    let (x, y) = categorical_data();
    let tied = Sharing::tied(&[0, 1, 1, 1]);
    check_gradient(&x, &y, &[-0.7, 0.3, 0.1, -6.0], &tied);
    let start = Hyper::new(4, 0.5, 1e-3);
    let fitted =
        Gp::fit_map_shared(&x, &y, &[start], &[Kernel::Matern52], 80, &tied, &Priors::INTERPOLATING).unwrap().0;
    let ls = fitted.hyper().length_scales();
    assert!(ls[1] == ls[2] && ls[2] == ls[3], "{ls:?}");
    let wrong = Sharing::tied(&[0, 1]);
    assert!(
        Gp::fit_map_shared(&x, &y, &[Hyper::new(4, 0.5, 1e-3)], &[Kernel::Matern52], 5, &wrong, &Priors::INTERPOLATING)
            .is_err()
    );
}

#[test]
fn pooled_length_scales_have_the_exact_gradient_and_stay_near_their_group() {
    let (x, y) = categorical_data();
    let pooled = Sharing::pooled(&[0, 1, 1, 1], 1.0);
    // Per input, then the group's value, then the signal and the noise.
    check_gradient(&x, &y, &[-0.7, 0.3, 0.9, 2.0, 0.5, 0.1, -6.0], &pooled);
    let start = Hyper::new(4, 0.5, 1e-3);
    let fitted =
        Gp::fit_map_shared(&x, &y, &[start], &[Kernel::Matern52], 100, &pooled, &Priors::INTERPOLATING).unwrap().0;
    let ls: Vec<f64> = fitted.hyper().length_scales().iter().map(|l| l.ln()).collect();
    // The levels keep scales of their own, but within a few spreads of one another, whereas with a scale per
    // level and the plain prior nothing holds the rarely measured ones together.
    assert!(ls[1] != ls[2] && ls[2] != ls[3], "{ls:?}");
    let spread =
        |ls: &[f64]| ls[1..].iter().fold(f64::MIN, |a, b| a.max(*b)) - ls[1..].iter().fold(f64::MAX, |a, b| a.min(*b));
    assert!(spread(&ls) < 3.0, "{ls:?}");
    // Without categorical parameters, pooling changes nothing: the same fit as a scale per input.
    let (x, y) = data();
    let a = Gp::fit_map(&x, &y, &[Hyper::new(2, 0.5, 1e-3)], &[Kernel::Matern52], 60).unwrap();
    let (b, _) = Gp::fit_map_shared(
        &x,
        &y,
        &[Hyper::new(2, 0.5, 1e-3)],
        &[Kernel::Matern52],
        60,
        &Sharing::pooled(&[0, 1], 1.0),
        &Priors::INTERPOLATING,
    )
    .unwrap();
    assert_eq!(a.hyper(), b.hyper());
}

#[test]
fn with_one_point_the_length_scales_sit_at_the_priors_mode_over_l() {
    // One point says nothing about length scales, so the fit returns the prior's most probable ℓ: the mode of
    // the log-normal density over ℓ, exp(μ - s²), not its median exp(μ).
    let start = Hyper::new(3, 1.0, 1e-3);
    let fitted = Gp::fit_map(&[vec![0.2, 0.5, 0.9]], &[0.3], &[start], &[Kernel::Matern52], 100).unwrap();
    let (mu, sd) = length_scale_prior(3);
    for l in fitted.hyper().length_scales() {
        assert!((l.ln() - (mu - sd * sd)).abs() < 1e-3, "{l} vs {}", (mu - sd * sd).exp());
    }
}

#[test]
fn prediction_gradients_match_finite_differences() {
    let (x, y) = data();
    let additives = [None, Some(Additive::new(&[0, 1], 0.6))];
    for (kernel, additive) in
        [Kernel::Matern52, Kernel::SquaredExponential].into_iter().flat_map(|k| additives.clone().map(|a| (k, a)))
    {
        let h = Hyper { kernel, log_length_scales: vec![-1.2, 0.1], log_signal: 0.3, log_noise: -8.0, additive };
        let gp = Gp::fit(&x, &y, &h, Mean::Profiled).unwrap();
        let p = [0.37, 0.61];
        let g = gp.predict_gradient(&p);
        let batch = gp.predict(&[p.to_vec()]);
        assert!((batch[0].0 - g.mean).abs() < 1e-12 && (batch[0].1 - g.variance).abs() < 1e-10);
        for j in 0..2 {
            let h = 1e-6;
            let mut up = p.to_vec();
            up[j] += h;
            let mut down = p.to_vec();
            down[j] -= h;
            let (a, b) = (gp.predict(&[up])[0], gp.predict(&[down])[0]);
            let (dm, dv) = ((a.0 - b.0) / (2.0 * h), (a.1 - b.1) / (2.0 * h));
            assert!((dm - g.d_mean[j]).abs() < 1e-5 * (1.0 + dm.abs()), "mean {j}: {dm} vs {}", g.d_mean[j]);
            assert!((dv - g.d_variance[j]).abs() < 1e-5 * (1.0 + dv.abs()), "var {j}: {dv} vs {}", g.d_variance[j]);
        }
    }
}

#[test]
fn a_noise_free_fit_interpolates_and_a_map_fit_beats_its_start() {
    let (x, y) = data();
    let start = Hyper::new(2, 0.5, 1e-3);
    let fixed = Gp::fit(&x, &y, &start, Mean::Profiled).unwrap();
    let fitted = Gp::fit_map(&x, &y, &[start], &[Kernel::Matern52], 80).unwrap();
    assert!(fitted.log_likelihood() > fixed.log_likelihood());
    for ((m, _), want) in fitted.predict(&x).iter().zip(&y) {
        assert!((m - want).abs() < 1e-2, "{m} vs {want}");
    }
    // The objective barely depends on the second input, so its length scale is the longer one.
    let ls = fitted.hyper().length_scales();
    assert!(ls[1] > ls[0], "{ls:?}");
    // The variance vanishes at the data and grows away from it.
    let (_, at) = fitted.predict(&[x[3].clone()])[0];
    let (_, away) = fitted.predict(&[vec![0.5, 1.5]])[0];
    assert!(at < 1e-3 * away, "{at} vs {away}");
}

#[test]
fn conditioning_on_a_point_equals_refitting_with_it() {
    let (x, y) = data();
    let h = Hyper {
        kernel: Kernel::Matern52,
        log_length_scales: vec![-1.0, 0.0],
        log_signal: 0.0,
        log_noise: (1e-6f64).ln(),
        additive: None,
    };
    let gp = Gp::fit(&x[..11], &y[..11], &h, Mean::Fixed(0.2)).unwrap();
    let grown = gp.condition(&x[11], y[11]).unwrap();
    let refit = Gp::fit(&x, &y, &h, Mean::Fixed(0.2)).unwrap();
    let probe = vec![vec![0.3, 0.3], vec![0.9, 0.1]];
    for (a, b) in grown.predict(&probe).iter().zip(refit.predict(&probe)) {
        assert!((a.0 - b.0).abs() < 1e-9 && (a.1 - b.1).abs() < 1e-9, "{a:?} vs {b:?}");
    }
    assert_eq!(grown.len(), 12);
}

#[test]
fn a_single_point_has_the_textbook_posterior() {
    let h = Hyper {
        kernel: Kernel::Matern52,
        log_length_scales: vec![0.0],
        log_signal: 0.0,
        log_noise: (0.25f64).ln(),
        additive: None,
    };
    let gp = Gp::fit(&[vec![0.0]], &[2.0], &h, Mean::Fixed(0.0)).unwrap();
    let (m, v) = gp.predict(&[vec![0.0]])[0];
    // Posterior of a unit-variance prior after one observation with noise 0.25: mean 2/1.25, variance 1 - 1/1.25.
    assert!((m - 1.6).abs() < 1e-12 && (v - 0.2).abs() < 1e-12);
    assert!(Gp::fit(&[], &[], &h, Mean::Profiled).is_err());
    // An additive part over two inputs does not fit inputs of width one.
    let wrong = h.with_additive(Some(Additive::new(&[0, 1], 0.5)));
    assert!(matches!(Gp::fit(&[vec![0.0]], &[2.0], &wrong, Mean::Profiled), Err(GpError::Data(_))));
    assert!(matches!(Gp::fit_map(&[vec![0.0]], &[2.0], &[wrong], &[Kernel::Matern52], 5), Err(GpError::Data(_))));
}
