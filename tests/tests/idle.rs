//! An instrument never stands idle while the vessel on it has a step ready to run there.
//!
//! The planner does not see which deck places are taken. It may plan another experiment's heat first on a hotplate
//! whose place a vial already holds; that heat cannot start until the vial has left, and the vial leaves only after
//! its own heat. The dispatcher must not wait for the planned order then. The `load` campaign (96 experiments on 96
//! hotplates) met it with seed 2: a vial stood on `hotplate_14` ready to heat from 558 to 3,940 lab s, the plate idle.
//!
//! Maximum waits (`within`) promise instruments to steps to come, and a promise must not stop the lab: the demo's
//! protocol with GUIDE.md's "read within two minutes of the end of heating" runs to its end, every step within its
//! maximum wait, on the demo's bench at 8 in flight and on `load`'s at 96.

use std::collections::HashMap;

use tests::{CampaignTest, replace_field, repo_root};

/// The repository's `load` campaign with `seed`, on its own protocol and lab.
fn load_campaign(seed: u64) -> CampaignTest {
    let root = repo_root();
    let text = std::fs::read_to_string(root.join("experiments/campaigns/load.campaign.ron")).expect("the campaign");
    let protocol =
        std::fs::read_to_string(root.join("protocols/library/condensation.protocol.ron")).expect("its protocol");
    CampaignTest::on_lab(
        &root.join("devices/labs/load.lab.ron"),
        &protocol,
        &replace_field(&text, "seed", &seed.to_string()),
    )
}

/// For each step that ran on an instrument with a place (not a move), the lab seconds between its being ready and
/// its start during which its instrument ran nothing: `(experiment, step, instrument, idle seconds)`.
fn idle_while_ready(t: &CampaignTest) -> Vec<(i64, String, String, f64)> {
    let db = t.record();
    let mut q = db
        .prepare(
            "SELECT e.seq, s.step, s.instrument, s.ready_at, s.started_at, s.finished_at, s.task FROM steps s \
             JOIN experiments e ON e.id = s.experiment_id WHERE s.started_at IS NOT NULL AND s.instrument IS NOT NULL",
        )
        .expect("a query of the steps");
    type Ran = (i64, String, String, f64, f64, f64, String);
    let ran: Vec<Ran> = q
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get::<_, Option<f64>>(3)?.unwrap_or(0.0),
                r.get(4)?,
                r.get::<_, Option<f64>>(5)?.unwrap_or(f64::INFINITY),
                r.get::<_, Option<String>>(6)?.unwrap_or_default(),
            ))
        })
        .expect("the steps")
        .collect::<Result<_, _>>()
        .expect("every row reads");
    let mut busy: HashMap<&str, Vec<(f64, f64)>> = HashMap::new();
    for (_, _, inst, _, start, end, _) in &ran {
        busy.entry(inst.as_str()).or_default().push((*start, *end));
    }
    ran.iter()
        .filter(|(_, _, inst, ..)| inst.starts_with("hotplate_") || inst.starts_with("pump_"))
        .filter(|(.., task)| !task.contains("Transfer"))
        .map(|(seq, step, inst, ready, start, ..)| {
            let covered: f64 = busy[inst.as_str()].iter().map(|(s, e)| (e.min(*start) - s.max(*ready)).max(0.0)).sum();
            (*seq, step.clone(), inst.clone(), (start - ready) - covered)
        })
        .filter(|(.., idle)| *idle > 1.0)
        .collect()
}

#[test]
fn a_hotplate_holding_a_vial_ready_to_heat_heats_it() {
    let t = load_campaign(2);
    let summary = t.run();
    assert_eq!(summary.failed, 0, "every experiment succeeds");
    let idle = idle_while_ready(&t);
    assert!(
        idle.is_empty(),
        "instruments stood idle while a step ready on them waited (experiment, step, instrument, idle lab s): {idle:?}"
    );
}

/// The demo's protocol with maximum waits (`within`), as GUIDE.md suggests them: the vial taken to the spectrometer
/// within two minutes of its heat's end, and read within a minute of arriving.
fn with_maximum_waits(lab: &str, in_flight: usize, budget: usize, seed: u64) -> CampaignTest {
    let root = repo_root();
    let protocol = std::fs::read_to_string(root.join("protocols/library/condensation.protocol.ron")).unwrap();
    let protocol = protocol
        .replace("after: [\"react\"])", "after: [\"react\"], within: \"2 min\")")
        .replace("after: [\"to_uvvis\"])", "after: [\"to_uvvis\"], within: \"1 min\")");
    assert_eq!(protocol.matches("within").count(), 2, "both maximum waits are in");
    let campaign = std::fs::read_to_string(root.join("experiments/campaigns/demo.campaign.ron")).unwrap();
    let campaign = replace_field(&campaign, "proposer", "SpaceFilling");
    let campaign = replace_field(&campaign, "in_flight", &in_flight.to_string());
    let campaign = replace_field(&campaign, "budget", &budget.to_string());
    let campaign = replace_field(&campaign, "seed", &seed.to_string());
    CampaignTest::on_lab(&root.join(lab), &protocol, &campaign)
}

/// Steps that started after their maximum wait: `(experiment, step, lab s after its dependency ended)`.
fn late(t: &CampaignTest) -> Vec<(i64, String, f64)> {
    t.record()
        .prepare(
            "SELECT e.seq, s.step, s.started_at - p.finished_at FROM steps s JOIN experiments e ON e.id = \
             s.experiment_id JOIN steps p ON p.experiment_id = s.experiment_id AND ((s.step = 'to_uvvis' AND \
             p.step = 'react') OR (s.step = 'read' AND p.step = 'to_uvvis')) WHERE s.started_at - p.finished_at > \
             CASE s.step WHEN 'to_uvvis' THEN 120 ELSE 60 END",
        )
        .expect("a query of the steps")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("the steps")
        .collect::<Result<_, _>>()
        .expect("every row reads")
}

/// Runs `t` to its end, failing the test if it has not ended within two minutes of wall time (a few seconds in a
/// debug build when nothing is wrong): a lab that stopped for good would otherwise wait for ever.
fn run_to_its_end(t: &CampaignTest, budget: usize) {
    let s = t.run_within(std::time::Duration::from_secs(120)).expect("the campaign runs");
    assert_eq!((s.status, s.started, s.failed), ("finished", budget, 0), "{s:?}");
    let late = late(t);
    assert!(late.is_empty(), "steps started after their maximum wait: {late:?}");
}

#[test]
fn a_gantry_held_for_a_move_to_the_spectrometer_first_takes_the_vial_standing_there_away() {
    // Eight vials in flight on the demo's four hotplates: a vial's heat ends while another's stands at the
    // spectrometer, read, waiting to go back to the rack. The gantry, held for the move to the spectrometer,
    // would take nothing else, so the vial there never left and the lab stopped for good at 5,828 lab s.
    run_to_its_end(&with_maximum_waits("devices/labs/sim.lab.ron", 8, 24, 1), 24);
}

#[test]
fn a_gantry_held_for_steps_far_down_its_queue_runs_them() {
    // 96 vials in flight on `load`'s 96 hotplates: the gantry's queue holds the loads of 73 experiments before the
    // first move to the spectrometer it is held for, and its search stopped after 32 it could not start, so it
    // never reached the moves it was held for, and the lab stopped for good at 6,548 lab s.
    run_to_its_end(&with_maximum_waits("devices/labs/load.lab.ron", 96, 96, 1), 96);
}
