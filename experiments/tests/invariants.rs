//! The proposers' promises in the spaces beyond a plain box: constraints hold, integer and categorical values
//! are allowed ones, a finite space or pool is never re-proposed, per-batch parameters are shared within an ask,
//! failures steer the search away, several objectives give a Pareto front, stop rules fire, provenance names the
//! data, and a seed reproduces a run. Each case is small: the regret figures are benchmarks, not tests.

use std::collections::BTreeMap;

use experiments::proposer::{MIN_DISTANCE, build_for};
use experiments::{
    Acquisition, Dim, Encoding, GpProposer, Level, LinearConstraint, Objective, Observation, Outcome, Point, Problem,
    Proposal, Proposer, ProposerConfig, Space, StopReason, StopRules, pareto_front,
};

fn gp(initial: usize) -> ProposerConfig {
    ProposerConfig::GaussianProcess { initial, acquisition: Acquisition::LogExpectedImprovement }
}

fn configs() -> [ProposerConfig; 3] {
    [ProposerConfig::Random, ProposerConfig::SpaceFilling, gp(4)]
}

fn point(pairs: &[(&str, f64)]) -> Point {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// Two volumes with a total, three fractions summing to one, and a whole number of drops.
fn constrained() -> Space {
    Space::new(vec![
        Dim::new("a", 10.0, 300.0),
        Dim::new("b", 10.0, 300.0),
        Dim::new("x", 0.0, 1.0),
        Dim::new("y", 0.0, 1.0),
        Dim::new("z", 0.0, 1.0),
        Dim::integer("n", 0.0, 5.0, 1.0),
    ])
    .with_constraints(vec![
        LinearConstraint::at_most(vec![("a".into(), 1.0), ("b".into(), 1.0), ("n".into(), 20.0)], 400.0),
        LinearConstraint::equal(vec![("x".into(), 1.0), ("y".into(), 1.0), ("z".into(), 1.0)], 1.0),
    ])
    .unwrap()
}

fn constrained_objective(p: &Point) -> f64 {
    (p["a"] - 150.0).powi(2) / 1e4 + (p["x"] - 0.6).powi(2) + p["n"] * 0.1 - p["b"] / 300.0
}

/// Runs `evaluations` experiments in asks of `batch`, the previous ask still in flight at each ask; checks that
/// every proposal is in the space and apart from everything told, pending or earlier in its ask.
fn run(
    proposer: &mut dyn Proposer,
    space: &Space,
    evaluations: usize,
    batch: usize,
    f: &dyn Fn(&Point) -> Option<f64>,
) -> Vec<Proposal> {
    let mut told: Vec<Point> = Vec::new();
    let mut pending: Vec<Point> = Vec::new();
    let mut all: Vec<Proposal> = Vec::new();
    while all.len() < evaluations {
        let n = batch.min(evaluations - all.len());
        let proposals = proposer.ask(n, &pending);
        assert_eq!(proposals.len(), n);
        for (i, p) in proposals.iter().enumerate() {
            assert!(space.contains(&p.values), "{:?} is outside the space", p.values);
            let u = space.to_unit(&p.values).unwrap();
            for other in told.iter().chain(&pending).chain(proposals[..i].iter().map(|q| &q.values)) {
                let v = space.to_unit(other).unwrap();
                let d = u.iter().zip(&v).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt();
                assert!(d >= MIN_DISTANCE, "{:?} repeats {other:?}", p.values);
            }
        }
        for p in pending.drain(..) {
            proposer.tell(Observation { objective: f(&p), values: p.clone() });
            told.push(p);
        }
        pending = proposals.iter().map(|p| p.values.clone()).collect();
        all.extend(proposals);
    }
    for p in pending {
        proposer.tell(Observation { objective: f(&p), values: p });
    }
    all
}

#[test]
fn constraints_integers_and_fractions_hold_for_every_proposer() {
    let space = constrained();
    for config in configs() {
        let problem = Problem::new(space.clone(), Objective::minimize("f"), 12);
        let mut proposer = build_for(&config, &problem, 5);
        let proposals = run(proposer.as_mut(), &space, 12, 3, &|p| Some(constrained_objective(p)));
        for p in &proposals {
            assert!(p.values["a"] + p.values["b"] + 20.0 * p.values["n"] <= 400.0 + 1e-6, "{:?}", p.values);
            assert!((p.values["x"] + p.values["y"] + p.values["z"] - 1.0).abs() < 1e-6, "{:?}", p.values);
            assert_eq!(p.values["n"].fract(), 0.0);
        }
    }
}

fn categorical() -> Space {
    let base = (0..3).map(|i| Level::new(format!("base{i}"), i as f64 + 1.0)).collect();
    let ligand = (0..4).map(|i| Level::new(format!("ligand{i}"), 10.0 * i as f64)).collect();
    let descriptors = Encoding::Descriptors(vec![vec![1.0, 0.2], vec![2.0, 0.1], vec![2.5, 0.9], vec![0.5, 0.5]]);
    Space::new(vec![Dim::categorical("base", base, Encoding::OneHot), Dim::categorical("ligand", ligand, descriptors)])
}

fn categorical_objective(p: &Point) -> f64 {
    (p["base"] - 2.0).powi(2) + (p["ligand"] - 20.0).abs() / 10.0
}

#[test]
fn a_categorical_space_is_enumerated_and_never_re_proposed() {
    let space = categorical();
    for config in configs() {
        let problem = Problem::new(space.clone(), Objective::minimize("f"), 12);
        let mut proposer = build_for(&config, &problem, 2);
        let proposals = run(proposer.as_mut(), &space, 12, 2, &|p| Some(categorical_objective(p)));
        let mut labels: Vec<String> =
            proposals.iter().map(|p| format!("{}/{}", p.labels["base"], p.labels["ligand"])).collect();
        labels.sort();
        labels.dedup();
        assert_eq!(labels.len(), 12, "{config:?}");
        assert!(proposer.ask(1, &[]).is_empty(), "{config:?}: nothing is left");
        assert_eq!(proposer.should_stop(), Some(StopReason::Exhausted), "{config:?}");
    }
}

/// Two fractions whose sum is pinned: `total` of 2 leaves one corner of the box, more than 2 leaves nothing.
fn pinned(total: f64) -> Space {
    Space::new(vec![Dim::new("a", 0.0, 1.0), Dim::new("b", 0.0, 1.0)])
        .with_constraints(vec![LinearConstraint::equal(vec![("a".into(), 1.0), ("b".into(), 1.0)], total)])
        .unwrap()
}

#[test]
fn a_space_without_a_point_stops_every_proposer_with_its_reason() {
    // Built in code, so no loader stood in the way; the space is continuous, so no enumeration finds it empty.
    let space = pinned(2.5);
    for config in configs() {
        let problem = Problem::new(space.clone(), Objective::maximize("f"), 6);
        let mut proposer = build_for(&config, &problem, 4);
        assert_eq!(proposer.should_stop(), Some(StopReason::Infeasible), "{config:?}");
        assert!(proposer.ask(2, &[]).is_empty(), "{config:?}");
        let mut proposer = build_for(&config, &problem, 4);
        let (steps, stopped) = experiments::backtest::simulate(proposer.as_mut(), 6, 2, &mut |_| None);
        assert!(steps.is_empty(), "{config:?}");
        assert_eq!(stopped, Some(StopReason::Infeasible), "{config:?}: a simulated run ends with the reason");
    }
    assert_eq!(StopReason::Infeasible.to_string(), "the constraints leave no point of the space");
}

#[test]
fn a_space_of_one_point_is_proposed_and_not_stopped() {
    let space = pinned(2.0);
    for config in configs() {
        let mut proposer = build_for(&config, &Problem::new(space.clone(), Objective::maximize("f"), 3), 4);
        assert_eq!(proposer.should_stop(), None, "{config:?}");
        let proposals = proposer.ask(1, &[]);
        assert_eq!(proposals.len(), 1, "{config:?}");
        assert!(space.contains(&proposals[0].values), "{config:?}: {:?}", proposals[0].values);
    }
}

#[test]
fn a_pool_is_never_left_nor_repeated() {
    let space = Space::new(vec![Dim::new("x", 0.0, 1.0), Dim::new("y", 0.0, 1.0)]);
    let pool: Vec<Point> =
        (0..25).map(|i| point(&[("x", (i % 5) as f64 / 4.0), ("y", (i / 5) as f64 / 4.0)])).collect();
    for config in configs() {
        let problem = Problem { pool: Some(pool.clone()), ..Problem::new(space.clone(), Objective::maximize("f"), 10) };
        let mut proposer = build_for(&config, &problem, 9);
        let proposals = run(proposer.as_mut(), &space, 10, 3, &|p| Some(p["x"] * p["y"]));
        for p in &proposals {
            assert!(pool.contains(&p.values), "{:?} is not in the pool", p.values);
        }
    }
}

#[test]
fn per_batch_parameters_take_one_value_per_ask() {
    let space = Space::new(vec![Dim::new("volume", 10.0, 100.0), Dim::new("temperature", 30.0, 90.0)])
        .with_per_batch(&["temperature".to_owned()])
        .unwrap();
    for config in configs() {
        let problem = Problem::new(space.clone(), Objective::maximize("f"), 16);
        let mut proposer = build_for(&config, &problem, 4);
        let mut temperatures = Vec::new();
        for _ in 0..3 {
            let batch = proposer.ask(4, &[]);
            assert_eq!(batch.len(), 4);
            assert!(
                batch.iter().all(|p| p.values["temperature"] == batch[0].values["temperature"]),
                "{config:?}: {batch:?}"
            );
            let volumes: Vec<f64> = batch.iter().map(|p| p.values["volume"]).collect();
            assert!(volumes.windows(2).all(|w| w[0] != w[1]), "{config:?}: the volumes differ");
            for p in batch {
                let y = -(p.values["volume"] - 40.0).powi(2) - (p.values["temperature"] - 70.0).powi(2);
                proposer.tell(Observation { values: p.values, objective: Some(y) });
            }
            temperatures.push(proposer.name().to_owned());
        }
    }
}

#[test]
fn failures_lower_the_chance_of_success_near_them_without_derailing_the_search() {
    // The objective grows toward x = 1, but every experiment beyond x = 0.7 fails: the best feasible value is 0.9.
    let space = Space::new(vec![Dim::new("x", 0.0, 1.0), Dim::new("y", 0.0, 1.0)]);
    let f = |p: &Point| (p["x"] <= 0.7).then(|| p["x"] + 0.2 * (3.0 * p["y"]).sin());
    let problem = Problem::new(space.clone(), Objective::maximize("f"), 20);
    let mut proposer = GpProposer::for_problem(&problem, 5, Acquisition::LogExpectedImprovement, 3);
    assert_eq!(proposer.probability_of_success(&[point(&[("x", 0.5), ("y", 0.5)])]), None);
    let proposals = run(&mut proposer, &space, 20, 1, &f);
    let failed = proposals.iter().filter(|p| f(&p.values).is_none()).count();
    assert!(failed > 0, "the test needs failures");
    // The design's best is what the model starts from; the search must still improve on it.
    let design_best = proposals[..5].iter().filter_map(|p| f(&p.values)).fold(f64::NEG_INFINITY, f64::max);
    let best = proposals.iter().filter_map(|p| f(&p.values)).fold(f64::NEG_INFINITY, f64::max);
    assert!(best > 0.75 && best > design_best, "best feasible result {best}, design {design_best}");
    let p = proposer
        .probability_of_success(&[point(&[("x", 0.95), ("y", 0.5)]), point(&[("x", 0.3), ("y", 0.5)])])
        .unwrap();
    assert!(p[0] < 0.3 && p[1] > 0.6 && p[0] < p[1], "{p:?}");
    let last = proposals.iter().rev().find(|p| p.strategy == "GP LogEI").unwrap();
    assert!(last.model.as_ref().unwrap()["probability_of_success"].as_f64().is_some());
    assert!(last.reason.contains("failed experiment"), "{}", last.reason);
}

#[test]
fn two_objectives_give_a_pareto_front() {
    let space = Space::new(vec![Dim::new("x", 0.0, 1.0)]);
    let objectives = vec![Objective::minimize("a"), Objective::minimize("b")];
    let problem = Problem { objectives: objectives.clone(), ..Problem::new(space.clone(), objectives[0].clone(), 10) };
    let mut proposer = GpProposer::for_problem(&problem, 3, Acquisition::LogExpectedImprovement, 1);
    let mut values = Vec::new();
    for _ in 0..10 {
        let p = proposer.ask(1, &[]).remove(0);
        assert!(space.contains(&p.values));
        let x = p.values["x"];
        let (a, b) = (x * x, (x - 1.0).powi(2));
        values.push(vec![a, b]);
        let outputs = BTreeMap::from([("a".to_owned(), a), ("b".to_owned(), b)]);
        proposer.tell_outcome(Outcome { values: p.values, outputs: Some(outputs) });
        if p.strategy.starts_with("ParEGO") {
            let w = &p.model.as_ref().unwrap()["scalarisation"]["weights"];
            let w: Vec<f64> = w.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12 && w.iter().all(|w| *w >= 0.0));
        }
    }
    // On x², (x - 1)² every point of [0, 1] is Pareto-optimal, so the front is every experiment inside it.
    let inside: Vec<usize> = (0..values.len()).filter(|i| values[*i][0] <= 1.0 && values[*i][1] <= 1.0).collect();
    assert_eq!(proposer.front(), pareto_front(&objectives, &values));
    assert_eq!(proposer.front(), inside);
}

#[test]
fn the_target_and_no_improvement_rules_stop_the_search() {
    let space = Space::new(vec![Dim::new("x", 0.0, 1.0)]);
    let f = |p: &Point| Some(1.0 - (p["x"] - 0.4).powi(2));
    let rules = StopRules { target: Some(0.99), ..StopRules::default() };
    let problem = Problem { stop: rules, ..Problem::new(space.clone(), Objective::maximize("f"), 30) };
    let mut proposer = build_for(&gp(3), &problem, 1);
    let (steps, stopped) = experiments::backtest::simulate(proposer.as_mut(), 30, 1, &mut |p| {
        f(p).map(|v| BTreeMap::from([("f".to_owned(), v)]))
    });
    assert!(matches!(stopped, Some(StopReason::Target { .. })), "{stopped:?}");
    assert!(steps.len() < 30);
    assert!(steps.last().unwrap().outputs.as_ref().unwrap()["f"] >= 0.99);
    let rules = StopRules { min_expected_improvement: Some(1e-3), patience: 2, ..StopRules::default() };
    let problem = Problem { stop: rules, ..Problem::new(space, Objective::maximize("f"), 30) };
    let mut proposer = build_for(&gp(3), &problem, 1);
    let (steps, stopped) = experiments::backtest::simulate(proposer.as_mut(), 30, 1, &mut |p| {
        f(p).map(|v| BTreeMap::from([("f".to_owned(), v)]))
    });
    assert!(matches!(stopped, Some(StopReason::NoImprovementLeft { proposals: 2, .. })), "{stopped:?}");
    assert!(steps.len() < 30, "{}", steps.len());
}

#[test]
fn provenance_names_the_data_and_the_hyperparameters_and_seeds_reproduce() {
    let space = constrained();
    let go = |seed: u64| {
        let problem = Problem::new(space.clone(), Objective::minimize("f"), 12);
        let mut proposer = build_for(&gp(4), &problem, seed);
        run(proposer.as_mut(), &space, 12, 2, &|p| Some(constrained_objective(p)))
    };
    let (a, b, c) = (go(11), go(11), go(12));
    assert_eq!(a, b, "the same seed and results give the same proposals");
    assert_ne!(a, c);
    let modelled: Vec<&Proposal> = a.iter().filter(|p| p.strategy == "GP LogEI").collect();
    assert!(modelled.len() >= 2);
    for p in &modelled {
        let m = p.model.as_ref().unwrap();
        assert_eq!(m["acquisition_value"].as_f64(), p.acquisition);
        assert_eq!(m["data_hash"].as_str().unwrap().len(), 16);
        assert!(m["training_size"].as_u64().unwrap() >= 2);
        let scales = m["hyperparameters"]["length_scales"].as_object().unwrap();
        assert_eq!(scales.len(), space.feature_len());
        assert!(m["hyperparameters"]["noise_variance"].as_f64().unwrap() >= 0.0);
        assert!(m["hyperparameters"]["re_estimated"].is_boolean());
    }
    // Proposals of one ask share the data; the next ask, with more results told, does not.
    assert_eq!(modelled[0].model.as_ref().unwrap()["data_hash"], modelled[1].model.as_ref().unwrap()["data_hash"]);
    let last = a.last().unwrap().model.as_ref().unwrap();
    assert_ne!(modelled[0].model.as_ref().unwrap()["data_hash"], last["data_hash"]);
}

/// A catalyst that ran out: while a level is avoided the model proposes none of it, and it may again after.
#[test]
fn an_avoided_level_is_not_proposed_until_it_is_allowed_again() {
    let levels = (1..=4).map(|i| Level::new(format!("C{i}"), f64::from(i))).collect();
    let space = Space::new(vec![Dim::categorical("catalyst", levels, Encoding::OneHot), Dim::new("t", 0.0, 1.0)]);
    // Level 2 is far better than the others, best at low t.
    let f = |p: &Point| -> f64 { if p["catalyst"] == 2.0 { 10.0 - p["t"] } else { p["t"] } };
    let trained = || {
        let mut proposer =
            GpProposer::new(space.clone(), Objective::maximize("y"), 8, Acquisition::LogExpectedImprovement, 3);
        run(&mut proposer, &space, 12, 1, &|p| Some(f(p)));
        proposer
    };
    let catalysts = |ps: &[Proposal]| ps.iter().map(|p| p.values["catalyst"]).collect::<Vec<_>>();
    let free = catalysts(&trained().ask(4, &[]));
    assert!(free.contains(&2.0), "the model proposes C2 when it may: {free:?}");
    let mut proposer = trained();
    proposer.avoid(&[("catalyst".to_owned(), 2.0)]);
    let avoiding = catalysts(&proposer.ask(4, &[]));
    assert_eq!(avoiding.len(), 4);
    assert!(!avoiding.contains(&2.0), "{avoiding:?}");
    proposer.avoid(&[]);
    let again = catalysts(&proposer.ask(4, &[]));
    assert!(again.contains(&2.0), "C2 is proposed again once it is back: {again:?}");
}
