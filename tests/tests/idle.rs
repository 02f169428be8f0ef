//! An instrument never stands idle while the vessel on it has a step ready to run there.
//!
//! The planner does not see which deck places are taken. It may plan another experiment's heat first on a hotplate
//! whose place a vial already holds; that heat cannot start until the vial has left, and the vial leaves only after
//! its own heat. The dispatcher must not wait for the planned order then. The `load` campaign (96 experiments on 96
//! hotplates) met it with seed 2: a vial stood on `hotplate_14` ready to heat from 558 to 3,940 lab s, the plate idle.

use std::collections::HashMap;

use tests::{CampaignTest, replace_field, repo_root};

/// The repository's `load` campaign with `seed`, its protocol and lab by absolute path.
fn load_campaign(seed: u64) -> CampaignTest {
    let root = repo_root();
    let text = std::fs::read_to_string(root.join("experiments/campaigns/load.campaign.ron")).expect("the campaign");
    let protocol = root.join("protocols/library/condensation.protocol.ron");
    let lab = root.join("devices/labs/load.lab.ron");
    let text = replace_field(&text, "protocol", &format!("{:?}", protocol.display().to_string()));
    let text = replace_field(&text, "lab", &format!("{:?}", lab.display().to_string()));
    let text = replace_field(&text, "seed", &seed.to_string());
    CampaignTest::from_text(&text)
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
