//! A campaign on the declared instruments (`devices/labs/declared.lab.ron`): a New Era pump, an Alicat flow
//! controller, a Huber circulator and a Sartorius balance, each driven and simulated from its RON declaration, with
//! the lab file's faults (lost and damaged replies the drivers ask again). It ends, and the record agrees with what
//! the simulators' ledger says physically happened.

use std::collections::BTreeMap;
use std::time::Duration;

use devices::sim::Event;
use devices::sim::bench::{DENSITY, vial_mass};
use tests::CampaignTest;

use crate::faults::{query, steps};

#[test]
fn a_campaign_of_declared_instruments_runs_and_its_record_matches_the_ledger() {
    let root = tests::repo_root();
    let protocol = std::fs::read_to_string(root.join("protocols/library/sparged_hold.protocol.ron")).unwrap();
    let campaign = std::fs::read_to_string(root.join("experiments/campaigns/declared.campaign.ron")).unwrap();
    // A flow is integrated on lab time, read every few wall milliseconds: at 100 lab seconds per wall second a few
    // milliseconds of scheduling are a fraction of a second of nitrogen.
    let t = CampaignTest::on_lab(&root.join("devices/labs/declared.lab.ron"), &protocol, &campaign).time_scale(100.0);
    let summary = t.run_within(Duration::from_secs(300)).expect("the campaign runs");
    assert_eq!(summary.started, 3);
    let conn = t.record();
    let statuses: Vec<String> = query(&conn, "SELECT status FROM experiments");
    assert!(statuses.iter().all(|s| s == "succeeded" || s == "failed"), "{statuses:?}");
    assert!(statuses.iter().any(|s| s == "succeeded"), "asking again gets the experiments through: {statuses:?}");

    let ledger = t.ledger();
    assert!(!ledger.faults.is_empty(), "the simulators injected faults");
    let rows = steps(&conn);
    for s in rows.iter().filter(|s| s.status == "failed") {
        assert!(!s.error.as_deref().unwrap_or_default().is_empty(), "a failed `{}` step has no error", s.op);
    }
    // Liquid and gas, by instrument and vessel, as the ledger has them.
    let (mut poured, mut sparged) = (BTreeMap::new(), BTreeMap::new());
    for e in &ledger.ledger {
        match &e.event {
            Event::Dispensed { vessel, volume, reservoir } => {
                assert_eq!(reservoir, "A");
                *poured.entry(*vessel).or_insert(0.0) += volume;
            }
            Event::Sparged { vessel: Some(v), volume, gas, .. } => {
                assert_eq!(gas, "N2");
                *sparged.entry(*v).or_insert(0.0) += volume;
            }
            _ => {}
        }
    }
    for s in rows.iter().filter(|s| s.op == "Dispense" && s.status == "succeeded") {
        let asked = s.action["volume"].as_f64().unwrap();
        let moved = s.outcome.as_ref().and_then(|o| o["Dispensed"]["volume"].as_f64()).expect("a volume");
        match s.instrument.as_deref() {
            Some("syringe") => {
                let got = poured.get(&s.vessel).copied().unwrap_or_default();
                assert!(
                    (got - asked).abs() < 1.0 && (moved - got).abs() < 1.0,
                    "vessel {}: {asked} {moved} {got}",
                    s.vessel
                );
            }
            Some("mfc") => {
                let got = sparged.get(&s.vessel).copied().unwrap_or_default();
                // The driver integrates what it reads on an accelerated clock, where a loaded machine's milliseconds
                // are lab seconds of flow: its account is close to the ledger's, not exact.
                let close = (got - moved).abs() < 0.25 * moved && moved < asked * 2.0;
                assert!(moved >= asked && close, "vessel {}: asked {asked}, reported {moved}, ledger {got}", s.vessel);
            }
            other => panic!("a dispense on {other:?}"),
        }
    }
    // A weight is the vial and the liquid the ledger says went in; the gas added nothing.
    for s in rows.iter().filter(|s| s.op == "Weigh" && s.status == "succeeded") {
        let grams = s.outcome.as_ref().and_then(|o| o["Measured"]["value"].as_f64()).expect("a weight");
        let expected = vial_mass(s.vessel) + poured.get(&s.vessel).copied().unwrap_or_default() * DENSITY;
        assert!(
            (grams - expected).abs() < 2e-4,
            "vessel {}: weighed {grams} g, the ledger says {expected} g",
            s.vessel
        );
    }
    // The jacket held each vial warm: a hold that succeeded ended near its set point.
    for s in rows.iter().filter(|s| s.op == "HoldTemperature" && s.status == "succeeded") {
        let set = s.action["temperature"].as_f64().unwrap();
        let mean = s.outcome.as_ref().and_then(|o| o["Held"]["mean_temperature"].as_f64()).expect("a mean");
        assert!((mean - set).abs() < 1.0, "held at {mean} for {set}");
    }
}
