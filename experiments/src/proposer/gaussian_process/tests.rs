//! The Gaussian-process proposer's unit tests: its model, its noise check, its start and its provenance.

use serde_json::json;

use super::super::search::{Scorer, first_best};
use super::*;
use crate::objective::Direction;
use crate::space::{Dim, Level};

fn proposer(points: &[(f64, f64)], objective: Objective) -> GpProposer {
    let space = Space::new(vec![Dim::new("x", 0.0, 10.0), Dim::new("y", 0.0, 1.0)]);
    let mut p = GpProposer::new(space, objective, 0, Acquisition::LogExpectedImprovement, 1);
    for (x, y) in points {
        let f = (x * 0.6).sin() + 0.1 * y;
        p.tell(Observation { values: [("x".to_owned(), *x), ("y".to_owned(), *y)].into(), objective: Some(f) });
    }
    p
}

#[test]
fn the_fitted_model_interpolates_and_finds_the_irrelevant_parameter() {
    let points = [(0.0, 0.1), (1.5, 0.9), (3.0, 0.4), (4.5, 0.7), (6.0, 0.2), (7.5, 0.5), (9.0, 0.8), (10.0, 0.3)];
    let mut p = proposer(&points, Objective::maximize("f"));
    let model = p.fit(None).unwrap();
    let x: Vec<Vec<f64>> = model.inputs.iter().map(|u| p.history.space.features(u)).collect();
    let (_, values) = p.training(None);
    for ((m, _), y) in model.gp.predict(&x).iter().zip(&values) {
        assert!((model.internal(*m) - y).abs() < 1e-2, "{m} vs {y}");
    }
    let scales = p.provenance(&model, &model.gp)["length_scales"].clone();
    // The objective barely depends on `y`, so its length scale (relative to its range) is the longer one.
    let (lx, ly) = (scales["x"].as_f64().unwrap() / 10.0, scales["y"].as_f64().unwrap());
    assert!(ly > lx, "x {lx}, y {ly}");
}

#[test]
fn maximisation_is_fitted_as_minimisation_of_the_negative() {
    let pts = [(1.0, 0.5), (5.0, 0.5), (8.0, 0.5)];
    let max = proposer(&pts, Objective::maximize("f")).fit(None).unwrap();
    let min = proposer(&pts, Objective::minimize("f")).fit(None).unwrap();
    assert!((max.y_mean + min.y_mean).abs() < 1e-15);
    // The best internal value is the largest objective value when maximising.
    let largest = [1.0f64, 5.0, 8.0].map(|x| (x * 0.6).sin() + 0.05).into_iter().fold(f64::MIN, f64::max);
    let best = Direction::Maximize.external(max.internal(max.best));
    assert!((best - largest).abs() < 1e-3, "{best} vs {largest}");
}

/// A proposer told `f` at 30 scattered points of the unit square, each result plus `noise` times a fixed
/// draw from a standard normal.
fn told_square(noise: f64) -> GpProposer {
    let space = Space::new(vec![Dim::new("x", 0.0, 1.0), Dim::new("y", 0.0, 1.0)]);
    let mut p = GpProposer::new(space, Objective::maximize("f"), 0, Acquisition::LogExpectedImprovement, 3);
    let draws = crate::bench::landscape::noise_draws(11, 30);
    for (i, z) in draws.iter().enumerate() {
        let (x, y) = ((i as f64 * 0.618_034) % 1.0, (i as f64 * 0.754_878 + 0.3) % 1.0);
        let f = (3.0 * x).sin() + (2.0 * y).cos() + noise * z;
        p.tell(Observation { values: [("x".to_owned(), x), ("y".to_owned(), y)].into(), objective: Some(f) });
    }
    p
}

#[test]
fn a_table_of_one_hot_levels_alone_gets_botorchs_model_and_says_why() {
    // Noise-free results: the noise check would keep the interpolating model, but over levels alone it cannot
    // tell noise from differences between conditions, so the space decides.
    let levels = |n: usize| (0..n).map(|i| Level::new(format!("l{i}"), i as f64)).collect::<Vec<_>>();
    let tell = |space: Space| {
        let mut p = GpProposer::new(space, Objective::maximize("f"), 0, Acquisition::LogExpectedImprovement, 3);
        // Eight of the twelve conditions, so that some are left to propose.
        for i in 0..8 {
            let (a, b) = (i % 4, (i * 7 + 1) % 3);
            let values: Point = [("a".to_owned(), a as f64), ("b".to_owned(), b as f64)].into();
            p.tell(Observation { values, objective: Some(a as f64 * 2.0 + (b as f64 - 1.0).powi(2)) });
        }
        p
    };
    let one_hot = Space::new(vec![
        Dim::categorical("a", levels(4), Encoding::OneHot),
        Dim::categorical("b", levels(3), Encoding::OneHot),
    ]);
    let mut table = tell(one_hot);
    let model = table.fit(None).unwrap();
    assert!(model.noisy && table.one_hot_only);
    assert_eq!(model.gp.hyper().log_signal, 0.0);
    let provenance = table.provenance(&model, &model.gp);
    assert_eq!(provenance["noise_check"]["one_hot_only"], json!(true));
    // The interpolating model, whose noise would decide nothing here, is not fitted at all.
    assert_eq!(model.fitted_noise, None);
    assert_eq!(provenance["noise_check"]["interpolating_fit_noise"], json!(null));
    assert!(provenance["priors"].as_str().unwrap().contains("every parameter is categorical"));
    assert!(provenance["kernel"].as_str().unwrap().contains("each level its own"));
    // Half its correlation comes from the levels two conditions share, parameter by parameter.
    assert_eq!(model.gp.hyper().additive.as_ref().map(Additive::weight), Some(ADDITIVE_WEIGHT));
    assert_eq!(provenance["hyperparameters"]["additive_weight"], json!(ADDITIVE_WEIGHT));
    assert!(provenance["kernel"].as_str().unwrap().contains("over each parameter alone"));
    let proposal = table.ask(1, &[]).pop().unwrap();
    assert!(proposal.reason.contains("every parameter is categorical"), "{}", proposal.reason);
    // An ordered parameter beside the levels gives the noise check something to go by again.
    let mixed = Space::new(vec![Dim::categorical("a", levels(4), Encoding::OneHot), Dim::integer("b", 0.0, 2.0, 1.0)]);
    let mut mixed = tell(mixed);
    let model = mixed.fit(None).unwrap();
    assert!(!mixed.one_hot_only && !model.noisy, "{:?}", model.fitted_noise);
    assert!(model.gp.hyper().additive.is_none());
    assert_eq!(mixed.provenance(&model, &model.gp)["hyperparameters"]["additive_weight"], json!(null));
}

#[test]
fn the_additive_part_carries_a_levels_results_to_untried_conditions_that_share_it() {
    // A table whose yield is the sum of each parameter's effect, as a screening table's largely is: measured on 18
    // scattered rows of its 216, the model with the additive part predicts the untried rows better (its error is
    // about a fifth lower), and ranks the best untried row (the best level of each parameter together) near the
    // top.
    let levels = |n: usize| (0..n).map(|i| Level::new(format!("l{i}"), i as f64)).collect::<Vec<_>>();
    let names = ["a", "b", "c"];
    let space = Space::new(names.iter().map(|n| Dim::categorical(*n, levels(6), Encoding::OneHot)).collect());
    let effect = |j: usize, l: usize| ((l * (3 + 2 * j) + j) % 6) as f64 * [1.0, 0.6, 0.3][j];
    let rows: Vec<[usize; 3]> = (0..216).map(|i| [i % 6, (i / 6) % 6, i / 36]).collect();
    let value = |r: &[usize; 3]| (0..3).map(|j| effect(j, r[j])).sum::<f64>();
    let mut p = GpProposer::new(space.clone(), Objective::maximize("f"), 0, Acquisition::LogExpectedImprovement, 5);
    let measured: Vec<&[usize; 3]> = (0..18).map(|i| &rows[(i * 97 + 5) % 216]).collect();
    for r in &measured {
        let values: Point = names.iter().zip(r.iter()).map(|(n, l)| (n.to_string(), *l as f64)).collect();
        p.tell(Observation { values, objective: Some(value(r)) });
    }
    let model = p.fit(None).unwrap();
    let untried: Vec<&[usize; 3]> = rows.iter().filter(|r| !measured.contains(r)).collect();
    let features: Vec<Vec<f64>> =
        untried.iter().map(|r| space.features(&r.iter().map(|l| *l as f64).collect::<Vec<_>>())).collect();
    let truth: Vec<f64> = untried.iter().map(|r| value(r)).collect();
    let error = |gp: &Gp| {
        let predicted = gp.predict(&features);
        let external = |m: f64| Direction::Maximize.external(model.internal(m));
        let squares: f64 = predicted.iter().zip(&truth).map(|((m, _), t)| (external(*m) - t).powi(2)).sum();
        (squares / truth.len() as f64).sqrt()
    };
    // The same model without the additive part, refitted from the same start as the proposer fits it.
    let (x, y): (Vec<Vec<f64>>, Vec<f64>) = {
        let (inputs, values) = p.training(None);
        let x = inputs.iter().map(|u| space.features(u)).collect();
        (x, values.iter().map(|v| (v - model.y_mean) / model.y_std).collect())
    };
    let (length, noise) = Priors::NOISY.mode(x[0].len());
    let start = Hyper::new(x[0].len(), length, noise).with_kernel(Kernel::SquaredExponential);
    let sharing = Sharing::separate(x[0].len());
    let kernels = [Kernel::SquaredExponential];
    let product = Gp::fit_map_shared(&x, &y, &[start], &kernels, 100, &sharing, &Priors::NOISY).unwrap().0;
    let (with, without) = (error(&model.gp), error(&product));
    assert!(with < 0.9 * without, "root-mean-square error with the additive part {with}, without {without}");
    // The best untried row is among the additive model's five most promising.
    let best = truth.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
    let predicted: Vec<f64> =
        model.gp.predict(&features).iter().map(|(m, _)| Direction::Maximize.external(model.internal(*m))).collect();
    let above = predicted.iter().filter(|m| **m > predicted[best]).count();
    assert!(above < 5, "{above} untried rows predicted above the best one");
}

#[test]
fn a_table_of_one_hot_levels_starts_from_random_rows_and_others_from_spread_ones() {
    let levels = |n: usize| (0..n).map(|i| Level::new(format!("l{i}"), i as f64)).collect::<Vec<_>>();
    let one_hot = Space::new(vec![
        Dim::categorical("a", levels(4), Encoding::OneHot),
        Dim::categorical("b", levels(5), Encoding::OneHot),
    ]);
    let rows: Vec<Point> =
        (0..20).map(|i| [("a".to_owned(), f64::from(i % 4)), ("b".to_owned(), f64::from(i / 4))].into()).collect();
    let start = |space: &Space, pool: &[Point]| {
        let problem = Problem { pool: Some(pool.to_vec()), ..Problem::new(space.clone(), Objective::maximize("f"), 9) };
        let p = GpProposer::for_problem(&problem, 6, Acquisition::LogExpectedImprovement, 7);
        (p.design.clone(), p.history.pool.clone().unwrap())
    };
    let (design, pool) = start(&one_hot, &rows);
    let mut r = rng(7);
    assert_eq!(design, random_pool_design(&one_hot, &pool, 6, &mut r));
    // The same rows with an ordered parameter keep the k-means++ start.
    let ordered =
        Space::new(vec![Dim::categorical("a", levels(4), Encoding::OneHot), Dim::integer("b", 0.0, 4.0, 1.0)]);
    let (design, pool) = start(&ordered, &rows);
    assert_eq!(design, super::super::space_filling::pool_design(&ordered, &pool, 6, &mut rng(7)));
}

#[test]
fn noisy_results_get_the_noisy_model_and_noise_free_ones_the_interpolating_one() {
    let mut clean = told_square(0.0);
    let model = clean.fit(None).unwrap();
    assert!(!model.noisy && model.fitted_noise.is_some_and(|v| v <= NOISY_ABOVE), "{:?}", model.fitted_noise);
    assert_eq!(clean.provenance(&model, &model.gp)["noise_check"]["noisy"], json!(false));
    // Noise of a tenth of the results' spread (about 1.5): far above the threshold, and decisive.
    let mut noisy = told_square(0.15);
    let model = noisy.fit(None).unwrap();
    assert!(model.noisy && model.fitted_noise.is_some_and(|v| v > NOISY_ABOVE), "{:?}", model.fitted_noise);
    let hyper = model.gp.hyper();
    assert_eq!((hyper.kernel, hyper.log_signal), (Kernel::SquaredExponential, 0.0));
    assert!(hyper.noise() >= 1e-4);
    let provenance = noisy.provenance(&model, &model.gp);
    assert_eq!(provenance["noise_check"]["noisy"], json!(true));
    assert!(provenance["priors"].as_str().unwrap().starts_with("noisy (BoTorch"));
    // The noise the reason names is the noisy model's, in the objective's units: about the 0.15 added.
    let sd = hyper.noise().sqrt() * model.y_std;
    assert!((0.05..0.3).contains(&sd), "{sd}");
    // The noisy model's proposals come from its own search, without candidates near the best results.
    let proposal = noisy.ask(1, &[]).pop().unwrap();
    assert!(proposal.reason.contains("the results look noisy"), "{}", proposal.reason);
    assert_eq!(proposal.model.unwrap()["candidates_evaluated"].as_u64().map(|n| n >= 256), Some(true));
    let proposal = clean.ask(1, &[]).pop().unwrap();
    assert!(!proposal.reason.contains("noisy"), "{}", proposal.reason);
}

#[test]
fn an_ordered_space_gets_the_additive_part_where_the_results_are_additive_and_not_where_they_interact() {
    // `sin 3x + cos 2y`, told at 30 points: a sum of one function of each parameter.
    let mut additive = told_square(0.0);
    let model = additive.fit(None).unwrap();
    assert_eq!(model.gp.hyper().additive.as_ref().map(Additive::weight), Some(ADDITIVE_WEIGHT));
    let provenance = additive.provenance(&model, &model.gp);
    assert_eq!(provenance["hyperparameters"]["additive_weight"], json!(ADDITIVE_WEIGHT));
    assert!(provenance["kernel"].as_str().unwrap().contains("which the posterior preferred"), "{provenance}");
    // A narrow ridge along the diagonal: neither parameter means anything without the other.
    let space = Space::new(vec![Dim::new("x", 0.0, 1.0), Dim::new("y", 0.0, 1.0)]);
    let mut ridge = GpProposer::new(space, Objective::maximize("f"), 0, Acquisition::LogExpectedImprovement, 3);
    for i in 0..30 {
        let (x, y) = ((i as f64 * 0.618_034) % 1.0, (i as f64 * 0.754_878 + 0.3) % 1.0);
        let f = (-(x - y).powi(2) / 0.02).exp();
        ridge.tell(Observation { values: [("x".to_owned(), x), ("y".to_owned(), y)].into(), objective: Some(f) });
    }
    let model = ridge.fit(None).unwrap();
    assert!(model.gp.hyper().additive.is_none());
}

#[test]
fn over_a_pool_the_start_proposes_rows_as_they_are_and_shares_the_per_batch_value() {
    // Every `x` appears with one temperature only, so a design row held at another row's temperature is a
    // point the table does not have.
    let space = Space::new(vec![Dim::new("x", 0.0, 1.0), Dim::integer("t", 0.0, 3.0, 1.0)])
        .with_per_batch(&["t".to_owned()])
        .unwrap();
    let pool: Vec<Point> =
        (0..12).map(|i| [("x".to_owned(), f64::from(i) / 11.0), ("t".to_owned(), f64::from(i % 4))].into()).collect();
    let problem = Problem { pool: Some(pool.clone()), ..Problem::new(space, Objective::maximize("f"), 12) };
    let mut p = GpProposer::for_problem(&problem, 8, Acquisition::LogExpectedImprovement, 5);
    let mut proposed = 0;
    for _ in 0..3 {
        let batch = p.ask(3, &[]);
        assert!(!batch.is_empty());
        for q in &batch {
            assert!(pool.contains(&q.values), "{:?} is not a row", q.values);
            assert_eq!(q.values["t"], batch[0].values["t"], "{batch:?}");
            p.tell(Observation { values: q.values.clone(), objective: Some(q.values["x"]) });
        }
        proposed += batch.len();
    }
    assert!(proposed >= 3);
}

#[test]
fn results_on_a_tiny_scale_get_a_model_and_equal_ones_on_a_huge_scale_do_not() {
    // A rate constant of 1e-13 per second varies as much, relative to itself, as a yield of 50 % does.
    let space = Space::new(vec![Dim::new("x", 0.0, 1.0)]);
    let tell = |scale: f64, f: &dyn Fn(f64) -> f64| {
        let mut p = GpProposer::new(space.clone(), Objective::maximize("k"), 0, Acquisition::default(), 1);
        for x in [0.1, 0.3, 0.5, 0.7, 0.9] {
            p.tell(Observation { values: [("x".to_owned(), x)].into(), objective: Some(scale * f(x)) });
        }
        p
    };
    let wave = |x: f64| 2.0 + (6.0 * x).sin();
    assert!(tell(1e-13, &wave).fit(None).is_ok());
    assert!(tell(-1e-100, &wave).fit(None).is_ok());
    // Equal but for the last digits the floating point keeps: nothing to rank.
    assert_eq!(tell(1e12, &|x| 1.0 + 1e-15 * x).fit(None).unwrap_err(), ModelError::Flat);
    assert_eq!(tell(1e-13, &|x| 1.0 + 1e-15 * x).fit(None).unwrap_err(), ModelError::Flat);
}

#[test]
fn too_few_or_equal_results_give_no_model() {
    assert_eq!(
        proposer(&[(1.0, 0.5)], Objective::maximize("f")).fit(None).unwrap_err(),
        ModelError::TooFewResults { successes: 1, needed: 2 }
    );
    let space = Space::new(vec![Dim::new("x", 0.0, 1.0)]);
    let mut p = GpProposer::new(space, Objective::maximize("f"), 0, Acquisition::LogExpectedImprovement, 1);
    for x in [0.2, 0.8] {
        p.tell(Observation { values: [("x".to_owned(), x)].into(), objective: Some(4.0) });
    }
    assert_eq!(p.fit(None).unwrap_err(), ModelError::Flat);
}

#[test]
fn over_a_pool_bounding_the_variances_finds_the_point_scoring_every_one_would() {
    // A one-hot table of 864 rows with interacting effects, measured on a growing number of rows: for every
    // acquisition, the best untried row found by bounding (exact variances only where a bound could still win) is
    // the one found by scoring every row exactly, ties and exclusions included.
    let levels = |n: usize| (0..n).map(|i| Level::new(format!("l{i}"), i as f64)).collect::<Vec<_>>();
    let names = ["a", "b", "c", "d"];
    let counts = [6, 6, 6, 4];
    let space =
        Space::new(names.iter().zip(counts).map(|(n, c)| Dim::categorical(*n, levels(c), Encoding::OneHot)).collect());
    let rows: Vec<[usize; 4]> = (0..864).map(|i| [i % 6, (i / 6) % 6, (i / 36) % 6, i / 216]).collect();
    let value = |r: &[usize; 4]| ((r[0] * 7 + r[1] * 3 + r[2] * r[0] + r[3]) % 11) as f64 + 0.1 * r[2] as f64;
    let units: Vec<Vec<f64>> = rows
        .iter()
        .map(|r| space.to_unit(&names.iter().zip(r).map(|(n, l)| (n.to_string(), *l as f64)).collect()).unwrap())
        .collect();
    let acquisitions = [
        Acquisition::LogExpectedImprovement,
        Acquisition::ExpectedImprovement,
        Acquisition::UpperConfidenceBound { beta: 2.0 },
        Acquisition::ProbabilityOfImprovement,
    ];
    for told in [10, 25, 60] {
        let mut p = GpProposer::new(space.clone(), Objective::maximize("f"), 0, Acquisition::LogExpectedImprovement, 7);
        let measured: Vec<usize> = (0..told).map(|i| (i * 389 + 5) % 864).collect();
        for &i in &measured {
            let values: Point = names.iter().zip(&rows[i]).map(|(n, l)| (n.to_string(), *l as f64)).collect();
            p.tell(Observation { values, objective: Some(value(&rows[i])) });
        }
        let model = p.fit(None).unwrap();
        let untried: Vec<Vec<f64>> =
            units.iter().enumerate().filter(|(i, _)| !measured.contains(i)).map(|(_, u)| u.clone()).collect();
        // Two untried rows in flight, which neither way may propose.
        let crowd = vec![untried[3].clone(), untried[40].clone()];
        for acquisition in acquisitions {
            let scorer = ModelScorer {
                space: &space,
                gp: &model.gp,
                best: model.best,
                acquisition,
                feasibility: None,
                coordinate_features: Vec::new(),
                avoid: &[],
                crowd: &crowd,
            };
            let every = first_best(scorer.score(&untried).into_iter().enumerate());
            let bounded = scorer.best(&untried);
            assert!(every.is_some(), "{told} told, {acquisition:?}");
            assert_eq!(
                bounded.map(|(i, v)| (i, v.to_bits())),
                every.map(|(i, v)| (i, v.to_bits())),
                "{told}, {acquisition:?}"
            );
        }
    }
}
