//! The whole simulated bench through pseudo-terminals: the demo protocol's physical steps for two vials, checked
//! against the bench's ledger and the hidden chemistry.

use std::collections::BTreeMap;

use devices::capability::{Instrument, Outcome, Place, Task, execute};
use devices::sim::{Event, Location, expected_absorbance};
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
