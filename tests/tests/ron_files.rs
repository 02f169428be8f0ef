//! Every RON file a technician may edit, in every folder of the repository, validates.

use controller::load::check::{CheckError, check_file};

#[test]
fn every_ron_file_in_the_repository_validates() {
    let files = tests::ron_files();
    let names: Vec<String> =
        files.iter().map(|f| f.strip_prefix(tests::repo_root()).unwrap().display().to_string()).collect();
    for expected in [
        "protocols/library/condensation.protocol.ron",
        "devices/labs/sim.lab.ron",
        "devices/labs/declared.lab.ron",
        "devices/instruments/new_era_ne1000.instrument.ron",
        "devices/instruments/huber_pilot_one.instrument.ron",
        "devices/instruments/sartorius_entris_ii.instrument.ron",
        "devices/instruments/alicat_mc.instrument.ron",
        "protocols/library/sparged_hold.protocol.ron",
        "experiments/campaigns/declared.campaign.ron",
        "devices/maps/omron_e5cc.modbus.ron",
        "experiments/campaigns/demo.campaign.ron",
    ] {
        assert!(names.iter().any(|n| n == expected), "{expected} is missing from {names:?}");
    }
    let mut failures = Vec::new();
    for f in &files {
        match check_file(f) {
            Ok((_, warnings)) if warnings.is_empty() => {}
            Ok((_, warnings)) => failures.push(format!("{}: warnings:\n{warnings}", f.display())),
            Err(CheckError::Invalid(d)) => failures.push(format!("{}:\n{d}", f.display())),
            Err(CheckError::Other(e)) => failures.push(format!("{}: {e}", f.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
