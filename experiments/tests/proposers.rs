//! The proposers' promises, checked through the public ask/tell interface: proposals stay in the box, keep away
//! from told, pending and each other's points, a failed point is never proposed again, a seed reproduces a run,
//! and the Gaussian-process proposer beats random search on Branin for a fixed seed.

use experiments::proposer::{MIN_DISTANCE, build};
use experiments::{Acquisition, Dim, Objective, Observation, Point, Proposal, ProposerConfig, Space};

const GP: ProposerConfig =
    ProposerConfig::GaussianProcess { initial: 5, acquisition: Acquisition::LogExpectedImprovement };

fn branin_space() -> Space {
    Space::new(vec![Dim::new("x1", -5.0, 10.0), Dim::new("x2", 0.0, 15.0)])
}

/// The Branin function; its global minimum is 0.397887, reached at three points.
fn branin(p: &Point) -> f64 {
    let (x1, x2) = (p["x1"], p["x2"]);
    let pi = std::f64::consts::PI;
    let b = 5.1 / (4.0 * pi * pi);
    let c = 5.0 / pi;
    let t = 1.0 / (8.0 * pi);
    (x2 - b * x1 * x1 + c * x1 - 6.0).powi(2) + 10.0 * (1.0 - t) * x1.cos() + 10.0
}

const BRANIN_MIN: f64 = 0.397_887;

/// The unit-cube distance between two points of `space`.
fn distance(space: &Space, a: &Point, b: &Point) -> f64 {
    let (a, b) = (space.to_unit(a).unwrap(), space.to_unit(b).unwrap());
    a.iter().zip(&b).map(|(x, y)| (x - y).powi(2)).sum::<f64>().sqrt()
}

/// Asserts every promise about `batch`, asked for `n` points with `pending` in flight after `told`.
#[track_caller]
fn assert_promises(space: &Space, batch: &[Proposal], n: usize, told: &[Point], pending: &[Point]) {
    assert_eq!(batch.len(), n, "asked for {n}, got {}", batch.len());
    for (i, p) in batch.iter().enumerate() {
        assert!(space.contains(&p.values), "{:?} is outside the space", p.values);
        assert_eq!(p.values.len(), space.len());
        for other in told.iter().chain(pending).chain(batch[..i].iter().map(|q| &q.values)) {
            assert!(distance(space, &p.values, other) >= MIN_DISTANCE, "{:?} repeats {other:?}", p.values);
        }
        assert!(!p.reason.is_empty() && !p.strategy.is_empty());
    }
}

/// Runs `evaluations` experiments of `f` (minimised) in batches of `batch`, with the last batch's points still in
/// flight when the next is asked for, checking the promises on every ask. Returns every proposal in order.
fn run(
    config: &ProposerConfig,
    seed: u64,
    evaluations: usize,
    batch: usize,
    f: impl Fn(&Point) -> Option<f64>,
) -> Vec<Proposal> {
    let space = branin_space();
    let mut proposer = build(config, &space, &Objective::minimize("f"), evaluations, seed);
    let mut told: Vec<Point> = Vec::new();
    let mut pending: Vec<Point> = Vec::new();
    let mut all = Vec::new();
    while all.len() < evaluations {
        let n = batch.min(evaluations - all.len());
        let proposals = proposer.ask(n, &pending);
        assert_promises(&space, &proposals, n, &told, &pending);
        // The oldest in-flight experiments finish; the new ones take their place.
        for p in pending.drain(..) {
            proposer.tell(Observation { objective: f(&p), values: p.clone() });
            told.push(p);
        }
        pending = proposals.iter().map(|p| p.values.clone()).collect();
        all.extend(proposals);
    }
    all
}

fn best(proposals: &[Proposal]) -> f64 {
    proposals.iter().map(|p| branin(&p.values)).fold(f64::INFINITY, f64::min)
}

#[test]
fn every_proposer_keeps_its_promises_in_batches_with_failures() {
    // One experiment in five fails; its point must never come back.
    let flaky = |p: &Point| if (p["x1"] * 7.0).rem_euclid(5.0) < 1.0 { None } else { Some(branin(p)) };
    for config in [ProposerConfig::Random, ProposerConfig::SpaceFilling, GP] {
        let proposals = run(&config, 3, 20, 4, flaky);
        assert_eq!(proposals.len(), 20);
    }
    let acquisitions = [Acquisition::ExpectedImprovement, Acquisition::UpperConfidenceBound { beta: 4.0 }];
    for acquisition in acquisitions {
        run(&ProposerConfig::GaussianProcess { initial: 4, acquisition }, 5, 12, 3, |p| Some(branin(p)));
    }
}

#[test]
fn the_same_seed_reproduces_the_same_proposals() {
    for config in [ProposerConfig::Random, ProposerConfig::SpaceFilling, GP] {
        let a = run(&config, 42, 12, 3, |p| Some(branin(p)));
        let b = run(&config, 42, 12, 3, |p| Some(branin(p)));
        assert_eq!(a, b, "{config:?} is not reproducible");
        let c = run(&config, 43, 12, 3, |p| Some(branin(p)));
        assert_ne!(a, c, "{config:?} ignores its seed");
    }
}

#[test]
fn maximising_an_output_is_minimising_its_negative() {
    let space = branin_space();
    let mut max = build(&GP, &space, &Objective::maximize("f"), 12, 9);
    let mut min = build(&GP, &space, &Objective::minimize("f"), 12, 9);
    for _ in 0..8 {
        let a = max.ask(1, &[]);
        let b = min.ask(1, &[]);
        assert_eq!(a[0].values, b[0].values);
        assert_eq!(a[0].predicted_mean.map(|m| -m), b[0].predicted_mean);
        let y = branin(&a[0].values);
        max.tell(Observation { values: a[0].values.clone(), objective: Some(-y) });
        min.tell(Observation { values: b[0].values.clone(), objective: Some(y) });
    }
}

/// A one-dimensional objective whose maximum is at 0.5.
fn peak_space() -> Space {
    Space::new(vec![Dim::new("x", 0.0, 1.0)])
}

fn at(x: f64) -> Point {
    [("x".to_owned(), x)].into()
}

#[test]
fn a_failed_point_is_never_proposed_again_even_where_the_model_is_most_hopeful() {
    let space = peak_space();
    let config = ProposerConfig::GaussianProcess { initial: 1, acquisition: Acquisition::LogExpectedImprovement };
    let mut proposer = build(&config, &space, &Objective::maximize("y"), 20, 1);
    proposer.ask(1, &[]);
    for x in [0.1, 0.3, 0.7, 0.9] {
        proposer.tell(Observation { values: at(x), objective: Some(1.0 - (x - 0.5f64).powi(2)) });
    }
    // The experiment at the model's most promising point failed.
    proposer.tell(Observation { values: at(0.5), objective: None });
    let batch = proposer.ask(3, &[at(0.45)]);
    let told = [0.1, 0.3, 0.7, 0.9, 0.5].map(at);
    assert_promises(&space, &batch, 3, &told, &[at(0.45)]);
    assert!(batch.iter().all(|p| p.strategy == "GP LogEI"), "{batch:#?}");
    // The model still looks near the peak, but not right next to the failed point.
    let gap = (batch[0].values["x"] - 0.5).abs();
    assert!(gap > 0.005 && gap < 0.25, "{:?}", batch[0].values);
    let model = batch[1].model.as_ref().unwrap();
    assert_eq!(model["training_size"], 4);
    assert_eq!(model["failed"], 1);
    assert_eq!(model["pending"], 1);
    // The pending point and the batch's first proposal are believed; the failure trains the classifier instead.
    assert_eq!(model["believed"], 2);
    assert!(batch[1].reason.contains("Kriging believer"), "{}", batch[1].reason);
    let success = model["probability_of_success"].as_f64().unwrap();
    assert!(success > 0.0 && success < 1.0, "{success}");
}

#[test]
fn unusable_observations_are_ignored_and_non_finite_results_count_as_failures() {
    let space = peak_space();
    let mut proposer = build(&GP, &space, &Objective::maximize("y"), 20, 1);
    proposer.tell(Observation { values: Point::new(), objective: Some(1.0) });
    proposer.tell(Observation { values: at(f64::NAN), objective: Some(1.0) });
    proposer.tell(Observation { values: at(0.25), objective: Some(f64::NAN) });
    proposer.tell(Observation { values: at(0.75), objective: Some(f64::INFINITY) });
    let batch = proposer.ask(8, &[]);
    assert_promises(&space, &batch, 8, &[at(0.25), at(0.75)], &[]);
    // Five design points, then no model: the only results were not numbers.
    assert!(batch[5].reason.starts_with("No model this time (0 successful result(s)"), "{}", batch[5].reason);
}

#[test]
fn equal_results_and_repeated_points_do_not_break_the_model() {
    let space = peak_space();
    let config = ProposerConfig::GaussianProcess { initial: 2, acquisition: Acquisition::LogExpectedImprovement };
    let mut proposer = build(&config, &space, &Objective::minimize("y"), 20, 1);
    let first = proposer.ask(2, &[]);
    for p in &first {
        proposer.tell(Observation { values: p.values.clone(), objective: Some(3.0) });
    }
    let flat = proposer.ask(1, &[]);
    assert!(flat[0].reason.contains("the same value"), "{}", flat[0].reason);
    // Replicates of one point, with different results, are averaged rather than breaking the fit.
    for y in [1.0, 1.5, 0.5] {
        proposer.tell(Observation { values: first[0].values.clone(), objective: Some(y) });
    }
    proposer.tell(Observation { values: at(0.123_456_7), objective: Some(2.0) });
    proposer.tell(Observation { values: at(0.123_456_8), objective: Some(2.5) });
    let batch = proposer.ask(4, &[]);
    assert_eq!(batch[0].strategy, "GP LogEI", "{}", batch[0].reason);
    assert_eq!(batch.len(), 4);
}

#[test]
fn a_restarted_proposer_skips_design_points_already_measured() {
    let space = branin_space();
    let mut first = build(&GP, &space, &Objective::minimize("f"), 30, 8);
    let design: Vec<Proposal> = first.ask(3, &[]);
    let mut restarted = build(&GP, &space, &Objective::minimize("f"), 30, 8);
    restarted.tell(Observation { values: design[0].values.clone(), objective: Some(1.0) });
    let next = restarted.ask(2, &[design[1].values.clone()]);
    assert_eq!(next[0].values, design[2].values);
    assert!(next[1].reason.starts_with("Point 4 of a 5-point scrambled Sobol design"), "{}", next[1].reason);
}

#[test]
fn a_space_with_no_room_returns_what_fits() {
    let space = Space::new(vec![Dim::new("x", 2.0, 2.0)]);
    for config in [ProposerConfig::Random, ProposerConfig::SpaceFilling, GP] {
        let mut proposer = build(&config, &space, &Objective::minimize("y"), 5, 1);
        let batch = proposer.ask(3, &[]);
        assert_eq!(batch.len(), 1, "{config:?}");
        assert_eq!(batch[0].values["x"], 2.0);
        assert!(proposer.ask(0, &[]).is_empty());
    }
}

#[test]
fn the_gaussian_process_beats_random_search_on_branin() {
    let gp = run(&GP, 1, 30, 1, |p| Some(branin(p)));
    let random = run(&ProposerConfig::Random, 1, 30, 1, |p| Some(branin(p)));
    let (gp_regret, random_regret) = (best(&gp) - BRANIN_MIN, best(&random) - BRANIN_MIN);
    println!("Branin, 30 evaluations, seed 1: GP LogEI regret {gp_regret:.3e}, random regret {random_regret:.3e}");
    assert!(gp_regret < 0.05, "GP regret {gp_regret}");
    assert!(random_regret > 0.05, "random regret {random_regret}");
    // The first five points are the design; every later one is chosen by the model, with provenance.
    assert!(gp[..5].iter().all(|p| p.strategy == "space-filling (Sobol)"));
    for p in &gp[5..] {
        assert_eq!(p.strategy, "GP LogEI", "{}", p.reason);
        let model = p.model.as_ref().expect("provenance");
        let kernel = model["kernel"].as_str().unwrap();
        assert!(
            kernel.starts_with("Matern 5/2, one length scale per feature") || kernel.starts_with("squared exponential")
        );
        assert!(model["length_scales"]["x1"].as_f64().is_some_and(|l| l > 0.0));
        assert!(p.predicted_mean.is_some() && p.predicted_sd.is_some() && p.acquisition.is_some());
    }
}

#[test]
fn batches_with_experiments_in_flight_still_find_the_optimum() {
    let proposals = run(&GP, 2, 32, 4, |p| Some(branin(p)));
    let regret = best(&proposals) - BRANIN_MIN;
    println!("Branin, 32 evaluations in batches of 4 with 4 in flight, seed 2: GP LogEI regret {regret:.3e}");
    assert!(regret < 0.5, "batch regret {regret}");
}

/// With fifty results told (as in the latency benchmark, whose timings are in BENCHMARKS.md: `LEARN_ONLY=latency
/// cargo bench -p experiments --bench learn`), a proposal after the space-filling start is the model's, fitted on every
/// one of them, and keeps every promise; four asked with three in flight believe those three and each other.
#[test]
fn a_proposal_after_fifty_results_is_fitted_on_all_of_them() {
    let space = Space::new(vec![Dim::new("a", 0.0, 1.0), Dim::new("b", 0.0, 1.0), Dim::new("c", 0.0, 1.0)]);
    let f = |p: &Point| (p["a"] - 0.3).powi(2) + (p["b"] - 0.6).powi(2) + 0.5 * (5.0 * p["c"]).sin();
    let mut proposer = build(&GP, &space, &Objective::minimize("f"), 60, 4);
    let told: Vec<Point> = build(&ProposerConfig::Random, &space, &Objective::minimize("f"), 60, 4)
        .ask(50, &[])
        .into_iter()
        .map(|p| p.values)
        .collect();
    for p in &told {
        proposer.tell(Observation { objective: Some(f(p)), values: p.clone() });
    }
    // The space-filling start comes first, whatever was told (its points are asked for and dropped here).
    let design = proposer.ask(5, &[]);
    assert!(design.iter().all(|p| p.strategy == "space-filling (Sobol)"), "{design:#?}");
    let one = proposer.ask(1, &[]);
    assert_promises(&space, &one, 1, &told, &[]);
    let model = one[0].model.as_ref().expect("a model-based proposal says what model chose it");
    assert_eq!(one[0].strategy, "GP LogEI", "{}", one[0].reason);
    assert_eq!(model["training_size"], 50, "{model}");
    assert!(one[0].predicted_mean.is_some() && one[0].predicted_sd.is_some_and(|sd| sd > 0.0));
    let pending: Vec<Point> = proposer.ask(3, &[]).into_iter().map(|p| p.values).collect();
    let batch = proposer.ask(4, &pending);
    assert_promises(&space, &batch, 4, &told, &pending);
    for (i, p) in batch.iter().enumerate() {
        let model = p.model.as_ref().expect("a model");
        assert_eq!((model["training_size"].as_u64(), model["pending"].as_u64()), (Some(50), Some(3)), "{model}");
        assert_eq!(model["believed"].as_u64(), Some(3 + i as u64), "proposal {i} of the batch: {model}");
    }
}
