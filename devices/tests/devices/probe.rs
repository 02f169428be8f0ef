//! `lab devices probe PORT`: the known identity queries against simulators of every family on pseudo-terminals,
//! each recognised as what it is, and nothing recognised on a silent port.

use std::time::Duration;

use devices::lab::Lab;
use devices::probe::{ProbeOptions, probe_port};

use crate::common;

const QUICK: ProbeOptions = ProbeOptions { timeout: Duration::from_millis(200), quiet: Duration::from_millis(40) };

/// Probes the simulated port of each `(instrument, driver the probe should name)` of `lab`: the driver must be among
/// what answered, and nothing of another family.
async fn probe_each(lab: Lab, expected: &[(&str, &str)]) {
    let (sims, _clock) = common::start(&lab).await;
    let probes = expected.iter().map(|(name, _)| probe_port(&sims.ports[*name], QUICK));
    let reports = futures::future::join_all(probes).await;
    for ((name, driver), report) in expected.iter().zip(reports) {
        let report = report.unwrap();
        let found: Vec<&str> = report.found().filter_map(|a| a.found.as_ref()).map(|r| r.driver.as_str()).collect();
        // An MT-SICS balance is also what the declared MT-SICS level 0 is; nothing else may claim it.
        let fits = |d: &&str| d.starts_with(driver) || d.starts_with("Declared(instrument: \"mettler_sics_level0\"");
        assert!(
            found.iter().any(|d| d.starts_with(driver)) && found.iter().all(fits),
            "{name}: expected {driver}, found {found:?}\n{report}"
        );
    }
    sims.stop().await;
}

#[tokio::test]
async fn the_probe_recognises_each_declared_instrument() {
    let lab = crate::declared::declared_lab();
    probe_each(
        lab,
        &[
            ("syringe", "Declared(instrument: \"new_era_ne1000\", model: \"NE-1000\")"),
            ("mfc", "Declared(instrument: \"alicat_mc\", model: \"MC-100SCCM-D\")"),
            ("circulator", "Declared(instrument: \"huber_pilot_one\""),
            ("balance", "Declared(instrument: \"sartorius_entris_ii\", model: \"BCE224I-1S\")"),
        ],
    )
    .await;
}

#[tokio::test]
async fn the_probe_recognises_each_family_with_a_rust_driver() {
    let lab = common::clean_lab_with(&["balance_1", "block_1", "probe_3", "valve"]);
    probe_each(
        lab,
        &[
            ("balance_1", "MettlerBalance(model: \"XS205\""),
            ("block_1", "ModbusTemperature"),
            ("probe_3", "ScpiThermometer(model: \"MODEL 2000\")"),
            ("valve", "ViciValve"),
        ],
    )
    .await;
    // The Cavro query asks address 1, which `pump_a` has.
    let lab = common::lab_with(&["hotplate_1", "gantry", "uvvis", "pump_a"]);
    probe_each(
        lab,
        &[
            ("hotplate_1", "IkaHotplate(model: \"RCT digital\""),
            ("gantry", "GcodeGantry"),
            ("uvvis", "OceanFlame"),
            ("pump_a", "CavroXCalibur"),
        ],
    )
    .await;
}

#[tokio::test]
async fn a_silent_port_is_reported_with_every_attempt_and_nothing_found() {
    let pty = devices::sim::pty::open("nothing").unwrap();
    let report = probe_port(&pty.path, QUICK).await.unwrap();
    assert_eq!(report.found().count(), 0);
    assert!(report.attempts.len() > 10 && report.attempts.iter().all(|a| a.received.is_empty()));
    assert!(report.to_string().ends_with(&format!("nothing on {} answered a known identity query", pty.path)));
    assert!(probe_port("/dev/no-such-port", QUICK).await.is_err());
}
