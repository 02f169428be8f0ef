//! A whole campaign on the rehearsal bench whose simulators inject faults at a high rate
//! (`devices/labs/faulty.lab.ron`, as the repository has it), without a valve step: it must start, and it keeps every
//! promise the fault soak checks (`soak.rs`): it ends, every experiment and step ends in a final state with its
//! reason, every injected fault is accounted for, every failed step is followed by its instrument's safe state, and
//! the record agrees with what the simulators' ledger says physically happened.

use std::time::Duration;

use rusqlite::Connection;
use tests::CampaignTest;

/// Dispense into a vial at a pump's station, weigh it, warm it on a heating block, read its temperature.
const PROTOCOL: &str = r#"Protocol(
    format: 1,
    name: "weigh_and_warm",
    description: "Dispense into a vial, weigh it, hold it warm on a block and read its temperature.",
    parameters: {
        "volume": (unit: "uL", min: 100, max: 800),
        "set_point": (unit: "degC", min: 30, max: 50),
    },
    outputs: {
        "mass": (unit: "g"),
        "temperature": (unit: "degC"),
    },
    steps: [
        (id: "load", op: Transfer(to: Kind(SyringePump))),
        (id: "add", op: Dispense(volume: "$volume"), after: ["load"]),
        (id: "to_scale", op: Transfer(to: Kind(Balance)), after: ["add"]),
        (id: "weigh", op: Weigh(output: "mass"), after: ["to_scale"]),
        (id: "to_block", op: Transfer(to: Kind(TemperatureController)), after: ["weigh"]),
        (id: "warm", op: HoldTemperature(temperature: "$set_point", duration: "2 min"), after: ["to_block"]),
        (id: "to_probe", op: Transfer(to: Kind(Thermometer)), after: ["warm"]),
        (id: "read", op: ReadTemperature(output: "temperature"), after: ["to_probe"]),
        (id: "unload", op: Transfer(to: Rack), after: ["read"]),
    ],
)
"#;

/// Three experiments, as many as the bench has places of each kind: a failed experiment leaves its vial where it
/// failed, and that place stays blocked for the rest of the campaign, so a fourth could wait forever.
const CAMPAIGN: &str = r#"Campaign(
    format: 1,
    name: "faults",
    description: "Rehearse faults: every experiment must end, failed or not, and the record must match the bench.",
    protocol: "",
    lab: "",
    vary: {
        "volume": (min: 100, max: 800),
        "set_point": (min: 30, max: 50),
    },
    fixed: {},
    objective: Maximize("temperature"),
    budget: 3,
    in_flight: 3,
    proposer: Random,
    seed: 4,
)
"#;

pub(crate) fn query<T: rusqlite::types::FromSql>(conn: &Connection, sql: &str) -> Vec<T> {
    let mut stmt = conn.prepare(sql).unwrap();
    stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
}

/// A step as recorded: its experiment's vessel, op, instrument, status, action and outcome.
pub(crate) struct StepRow {
    pub vessel: usize,
    pub op: String,
    pub instrument: Option<String>,
    pub status: String,
    pub action: serde_json::Value,
    pub outcome: Option<serde_json::Value>,
    pub error: Option<String>,
}

pub(crate) fn steps(conn: &Connection) -> Vec<StepRow> {
    let mut stmt = conn
        .prepare(
            "SELECT e.vessel, s.op, s.instrument, s.status, s.action, s.outcome, s.error
             FROM steps s JOIN experiments e ON e.id = s.experiment_id ORDER BY s.id",
        )
        .unwrap();
    stmt.query_map([], |r| {
        let action: String = r.get(4)?;
        let outcome: Option<String> = r.get(5)?;
        Ok(StepRow {
            vessel: r.get::<_, i64>(0)? as usize,
            op: r.get(1)?,
            instrument: r.get(2)?,
            status: r.get(3)?,
            action: serde_json::from_str(&action).unwrap(),
            outcome: outcome.map(|o| serde_json::from_str(&o).unwrap()),
            error: r.get(6)?,
        })
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

#[test]
fn a_campaign_on_the_faulty_bench_ends_and_its_record_matches_the_ledger() {
    let lab = tests::repo_root().join("devices/labs/faulty.lab.ron");
    let t = CampaignTest::on_lab(&lab, PROTOCOL, CAMPAIGN);
    // Every promise the soak checks (a campaign that cannot start fails it), on this protocol and the lab as it is.
    let soaked = crate::soak::check(&t, t.run_within(Duration::from_secs(300)), 3);
    assert_eq!(soaked.experiments, 3, "{soaked:?}");
    assert!(soaked.wire_errors > 0, "the injected faults show in the commands table: {soaked:?}");
    // The campaign got going: the gantry injects only latency, so every vial left the rack.
    let loaded: i64 = t
        .record()
        .query_row("SELECT count(*) FROM steps WHERE step = 'load' AND status = 'succeeded'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(loaded, 3);
}

/// The only spectrometer goes for good (its cable pulled, every reconnection refused) in the middle of the demo
/// campaign: no experiment starts after that (each would dispense and heat, then fail at the measurement), the ones
/// running end, and the run stops without finishing the campaign, so `lab resume` carries it on after a repair.
#[test]
fn an_instrument_offline_for_good_stops_new_experiments_and_leaves_the_campaign_to_resume() {
    let root = tests::repo_root();
    let lab_text = std::fs::read_to_string(root.join("devices/labs/sim.lab.ron")).unwrap();
    let uvvis = "            position: \"uvvis\",\n";
    assert!(lab_text.contains(uvvis), "the demo lab's spectrometer stands at `uvvis`");
    let lab_text = lab_text.replacen(
        uvvis,
        &format!(
            "{uvvis}            faults: (disconnect: (after: 12, down: \"10 min\")),\n            serial: (reconnect: \
             (attempts: 2, delay: \"20 ms\")),\n"
        ),
        1,
    );
    let scratch = tempfile::tempdir().unwrap();
    let lab = scratch.path().join("sim.lab.ron");
    std::fs::write(&lab, lab_text).unwrap();
    let protocol = std::fs::read_to_string(root.join("protocols/library/condensation.protocol.ron")).unwrap();
    let campaign = std::fs::read_to_string(root.join("experiments/campaigns/demo.campaign.ron")).unwrap();
    let campaign = tests::replace_field(&campaign, "budget", "16");
    let campaign = tests::replace_field(&campaign, "in_flight", "2");
    let t = CampaignTest::on_lab(&lab, &protocol, &campaign);
    let s = t.run_within(Duration::from_secs(300)).expect("the run ends safely");
    assert_eq!(s.status, "stopped", "{s:?}");
    assert!(s.started < 16, "the budget was not spent on experiments that could only fail: {s:?}");
    let reason = s.stop_reason.clone().unwrap_or_default();
    assert!(reason.contains("`uvvis`"), "{reason}");
    let conn = t.record();
    let status: String = conn.query_row("SELECT status FROM campaigns", [], |r| r.get(0)).unwrap();
    assert_eq!(status, "running", "the campaign is left for `lab resume`");
    let halted_at: f64 = conn
        .query_row("SELECT at FROM events WHERE message LIKE 'no new experiment starts: %uvvis%'", [], |r| r.get(0))
        .expect("the record says why nothing more starts");
    let later: i64 =
        conn.query_row("SELECT count(*) FROM experiments WHERE started_at > ?1", [halted_at], |r| r.get(0)).unwrap();
    assert_eq!(later, 0, "no experiment started after the spectrometer went");
    let said: i64 = conn
        .query_row(
            "SELECT count(*) FROM events WHERE message LIKE 'the controller stopped without finishing%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(said, 1);
    let (last_id, last_at): (i64, f64) =
        conn.query_row("SELECT MAX(id), MAX(at) FROM journal", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    drop(conn);

    // The spectrometer repaired (the lab file without the fault), `lab resume` carries the campaign to its budget.
    let test_lab = t.dir.path().join("test.lab.ron");
    let repaired = scratch.path().join("repaired.lab.ron");
    let text = std::fs::read_to_string(&test_lab).unwrap();
    let fault = text.lines().find(|l| l.contains("disconnect: (after: 12")).expect("the fault's line").to_owned();
    std::fs::write(&repaired, text.replace(&format!("{fault}\n"), "")).unwrap();
    let resume = controller::run::ResumeOptions { db: t.db.clone(), campaign: None, lab: Some(repaired) };
    let mut opts = controller::run::CampaignOptions::new(std::path::PathBuf::new(), t.db.clone());
    opts.time_scale = Some(400.0);
    opts.blocked = controller::schedule::resources::BlockedPolicy::Fail;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || drop(tx.send(controller::run::resume_campaign(&resume, &opts))));
    let resumed = rx.recv_timeout(Duration::from_secs(300)).expect("the resumed run ends").expect("it resumes");
    assert_eq!(resumed.status, "finished", "{resumed:?}");
    let conn = t.record();
    let (status, experiments): (String, i64) = conn
        .query_row("SELECT status, (SELECT count(*) FROM experiments) FROM campaigns", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((status.as_str(), experiments), ("finished", 16));
    // The resumed run's lab time goes on from where the record stopped, never from before: the first run, on the
    // discrete-event clock, was far ahead of the wall at the lab's scale.
    let first_after: f64 =
        conn.query_row("SELECT MIN(at) FROM journal WHERE id > ?1", [last_id], |r| r.get(0)).unwrap();
    assert!(first_after >= last_at, "the resumed run recorded at {first_after} lab s, after {last_at} before it");
}
