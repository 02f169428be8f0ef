//! The whole simulated bench through pseudo-terminals: the demo protocol's physical steps for two vials, checked
//! against the bench's ledger and the hidden chemistry; and the catalyst bench's shared line, which carries the last
//! reagent over until it is primed.

use std::collections::BTreeMap;

use devices::capability::{Instrument, Outcome, Place, Task, execute};
use devices::lab::load_lab;
use devices::sim::{Event, Location, expected_absorbance};
use protocols::diagnostic::SourceFile;
use protocols::units::{Duration, Speed, Temperature, Volume, Wavelength};

use crate::common;

/// Runs the demo protocol's steps for the vial of `slot` and returns the absorbance read at 520 nm.
async fn run_vial(
    bench: &mut BTreeMap<String, Box<dyn Instrument>>,
    slot: usize,
    hotplate: &str,
    volume_b: f64,
    temperature: f64,
    minutes: f64,
) -> f64 {
    let mut run = async |name: &str, task: Task| {
        let instrument = bench.get_mut(name).unwrap().as_mut();
        execute(instrument, &task).await.unwrap_or_else(|e| panic!("{name} failed {task:?}: {e}"))
    };
    let at = |p: &str| Place::Position(p.to_owned());
    run("gantry", Task::Transfer { from: Place::Rack(slot), to: at("dispense") }).await;
    run("pump_a", Task::Dispense { volume: Volume(250.0) }).await;
    run("pump_b", Task::Dispense { volume: Volume(volume_b) }).await;
    run("gantry", Task::Transfer { from: at("dispense"), to: at(hotplate) }).await;
    let heat = Task::Heat {
        temperature: Temperature(temperature),
        duration: Duration(minutes * 60.0),
        stir: Some(Speed(600.0)),
    };
    let held = run(hotplate, heat).await;
    assert!(
        matches!(held, Outcome::Held { mean_temperature: Some(t), .. } if (t.0 - temperature).abs() < 1.0),
        "{held:?}"
    );
    run("gantry", Task::Transfer { from: at(hotplate), to: at("uvvis") }).await;
    let Outcome::Measured { value, .. } = run("uvvis", Task::Measure { wavelength: Wavelength(520.0) }).await else {
        unreachable!()
    };
    run("gantry", Task::Transfer { from: at("uvvis"), to: Place::Rack(slot) }).await;
    value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_steps_run_on_the_whole_bench_and_match_its_ledger() {
    let lab = common::sim_lab();
    let (sims, clock) = common::start(&lab).await;
    let mut instruments = BTreeMap::new();
    for spec in &lab.instruments {
        let mut i = common::connect(&lab, &sims, &spec.name, &clock, devices::transport::discard());
        i.identify().await.unwrap_or_else(|e| panic!("{e}"));
        i.initialize().await.unwrap_or_else(|e| panic!("{e}"));
        instruments.insert(spec.name.clone(), i);
    }
    let seed = lab.simulation.seed;
    let good = run_vial(&mut instruments, 0, "hotplate_1", 200.0, 90.0, 20.0).await;
    let poor = run_vial(&mut instruments, 1, "hotplate_2", 200.0, 30.0, 5.0).await;
    let expected_good = expected_absorbance(seed, 200.0, 90.0, 20.0);
    let expected_poor = expected_absorbance(seed, 200.0, 30.0, 5.0);
    assert!(good.is_finite() && good > 0.0, "{good}");
    assert!(poor.is_finite() && poor > 0.0, "{poor}");
    assert_eq!(
        good > poor,
        expected_good > expected_poor,
        "read {good} vs {poor}, expected {expected_good} vs {expected_poor}"
    );
    assert!((good - expected_good).abs() < 0.05, "read {good}, expected about {expected_good}");
    assert!((poor - expected_poor).abs() < 0.05, "read {poor}, expected about {expected_poor}");

    let ledger = sims.bench().ledger();
    let into = |vessel: usize| -> Vec<(String, f64)> {
        ledger
            .iter()
            .filter_map(|e| match &e.event {
                Event::Dispensed { reservoir, volume, vessel: v, .. } if *v == vessel => {
                    Some((reservoir.clone(), *volume))
                }
                _ => None,
            })
            .collect()
    };
    assert_eq!(into(0), vec![("A".to_owned(), 250.0), ("B".to_owned(), 200.0)]);
    assert_eq!(into(1), vec![("A".to_owned(), 250.0), ("B".to_owned(), 200.0)]);
    assert!(
        !ledger.iter().any(|e| matches!(
            e.event,
            Event::Spilled { .. }
                | Event::Dropped { .. }
                | Event::Collided { .. }
                | Event::GrippedNothing { .. }
                | Event::WatchdogTripped { .. }
        )),
        "{ledger:#?}"
    );
    let measured: Vec<Option<usize>> = ledger
        .iter()
        .filter_map(|e| match e.event {
            Event::Measured { vessel, .. } => Some(vessel),
            _ => None,
        })
        .collect();
    assert_eq!(measured, vec![None, Some(0), Some(1)], "the reference of the empty holder, then each vial");
    for slot in [0, 1] {
        let v = sims.bench().vessel(slot).unwrap();
        assert_eq!(v.location, Location::At(Place::Rack(slot)));
        assert!((v.volume - 450.0).abs() < 1e-9);
    }
    let hot = sims.bench().vessel(0).unwrap().temperature_history.iter().map(|&(_, t)| t).fold(f64::MIN, f64::max);
    assert!((85.0..=91.0).contains(&hot), "vial 0 peaked at {hot} degC");
    sims.stop().await;
}

/// The catalyst bench's valve-fed pump through pseudo-terminals: the shared line carries the last reagent into the
/// next draw unless it is primed (drawn through, pushed out to the waste port), which the ledger shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_valves_line_carries_the_last_reagent_over_until_it_is_primed() {
    let lab = load_lab(SourceFile::new("catalysts.lab.ron", include_str!("../../labs/catalysts.lab.ron")))
        .expect("the catalyst lab loads");
    let (sims, clock) = common::start(&lab).await;
    let mut bench = common::ready(&lab, &sims, &clock, devices::transport::discard()).await;
    step(&mut bench, "gantry", Task::Transfer { from: Place::Rack(0), to: Place::Position("dispense".into()) }).await;
    // The line starts full of port 1's catalyst; a dispense of 30 uL from port 2 without priming gets only that.
    step(&mut bench, "valve", Task::Select { position: 2 }).await;
    step(&mut bench, "pump_c", Task::Dispense { volume: Volume(30.0) }).await;
    let first = sims.bench().vessel(0).unwrap().contents;
    assert!((first.get("C1").copied().unwrap_or(0.0) - 30.0).abs() < 0.1, "carried over: {first:?}");
    assert!(!first.contains_key("C2"), "{first:?}");
    // Priming: 80 uL (twice the 40 uL line) drawn from port 2, pushed out through waste port 10, back to port 2.
    let pump = bench.get_mut("pump_c").unwrap();
    pump.as_prime().expect("a Cavro pump primes").fill(Volume(80.0)).await.unwrap();
    step(&mut bench, "valve", Task::Select { position: 10 }).await;
    let pump = bench.get_mut("pump_c").unwrap();
    pump.as_prime().expect("a Cavro pump primes").empty_to_input().await.unwrap();
    step(&mut bench, "valve", Task::Select { position: 2 }).await;
    step(&mut bench, "pump_c", Task::Dispense { volume: Volume(30.0) }).await;
    let second = sims.bench().vessel(0).unwrap().contents;
    assert!((second.get("C2").copied().unwrap_or(0.0) - 30.0).abs() < 0.1, "primed: {second:?}");
    assert!((second["C1"] - first["C1"]).abs() < 1e-9, "no more C1 after priming: {second:?}");
    // The ledger: what went to waste (the line's C1 among it), and what the bottle gave.
    let ledger = sims.bench().ledger();
    let drained: BTreeMap<String, f64> = ledger.iter().fold(BTreeMap::new(), |mut acc, e| {
        if let Event::Drained { port: 10, reagent, volume, .. } = &e.event {
            *acc.entry(reagent.clone()).or_default() += volume;
        }
        acc
    });
    let total: f64 = drained.values().sum();
    assert!((total - 80.0).abs() < 0.1 && drained.contains_key("C1"), "{drained:?}");
    let drew: f64 = ledger
        .iter()
        .filter_map(|e| match &e.event {
            Event::Drew { source, volume, .. } if source == "valve:2" => Some(*volume),
            _ => None,
        })
        .sum();
    assert!((drew - 140.0).abs() < 0.2, "the bottle gave both dispenses and the prime: {drew}");
    sims.stop().await;
}

/// A pump fed by a valve whose syringe holds a prime (its push never confirmed) is not initialized as usual: `Z`
/// pushes through the output into the vessel, as the simulator does and as the defect did. The driver refuses, and
/// empties the syringe through its input only when asked to, after the valve was turned to waste and confirmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primed_syringe_is_emptied_only_through_the_waste_port() {
    let lab = load_lab(SourceFile::new("catalysts.lab.ron", include_str!("../../labs/catalysts.lab.ron")))
        .expect("the catalyst lab loads");
    let (sims, clock) = common::start(&lab).await;
    let mut bench = common::ready(&lab, &sims, &clock, devices::transport::discard()).await;
    step(&mut bench, "gantry", Task::Transfer { from: Place::Rack(0), to: Place::Position("dispense".into()) }).await;
    // The prime is drawn (the line's C1 and then C4), and the turn to waste is never confirmed.
    step(&mut bench, "valve", Task::Select { position: 4 }).await;
    let pump = bench.get_mut("pump_c").unwrap();
    pump.as_prime().expect("a Cavro pump primes").fill(Volume(80.0)).await.unwrap();
    assert!(pump.as_prime().unwrap().may_hold(), "the driver knows its syringe holds the prime");
    // Restoring it as any instrument (safe state, identify, initialize) moves nothing.
    pump.safe_state().await.unwrap();
    pump.identify().await.unwrap();
    let e = pump.initialize().await.expect_err("initializing would push the prime out");
    assert!(e.to_string().contains("emptied only through the valve's waste port"), "{e}");
    let moved = |ledger: &[devices::sim::LedgerEntry]| {
        ledger
            .iter()
            .filter(|e| {
                matches!(
                    e.event,
                    Event::Dispensed { .. } | Event::Spilled { .. } | Event::Returned { .. } | Event::Drained { .. }
                )
            })
            .count()
    };
    assert_eq!(moved(&sims.bench().ledger()), 0, "nothing left the syringe");
    assert!(sims.bench().vessel(0).unwrap().contents.is_empty());
    // With the valve confirmed at waste, it empties there, and is initialized.
    step(&mut bench, "valve", Task::Select { position: 10 }).await;
    let pump = bench.get_mut("pump_c").unwrap();
    pump.as_prime().unwrap().empty_to_waste().await.unwrap();
    assert!(!pump.as_prime().unwrap().may_hold());
    let ledger = sims.bench().ledger();
    let drained: f64 = ledger
        .iter()
        .filter_map(|e| match &e.event {
            Event::Drained { port: 10, volume, .. } => Some(*volume),
            _ => None,
        })
        .sum();
    assert!((drained - 80.0).abs() < 0.1, "the prime went to waste: {drained}");
    assert_eq!(moved(&ledger), ledger.iter().filter(|e| matches!(e.event, Event::Drained { .. })).count());
    assert!(sims.bench().vessel(0).unwrap().contents.is_empty(), "the vessel got nothing");
    // A dispense after it runs as usual.
    step(&mut bench, "valve", Task::Select { position: 4 }).await;
    step(&mut bench, "pump_c", Task::Dispense { volume: Volume(30.0) }).await;
    let contents = sims.bench().vessel(0).unwrap().contents;
    assert!((contents.get("C4").copied().unwrap_or(0.0) - 30.0).abs() < 0.1, "{contents:?}");
    sims.stop().await;
}

/// Runs `task` on instrument `name` of `bench`, which must succeed.
async fn step(bench: &mut BTreeMap<String, Box<dyn Instrument>>, name: &str, task: Task) {
    let instrument = bench.get_mut(name).unwrap().as_mut();
    execute(instrument, &task).await.unwrap_or_else(|e| panic!("{name} failed {task:?}: {e}"));
}
