//! The hub's projection (`fleet/project.rs`, in PostgreSQL) against the record's own (`record/project.rs`, in SQLite):
//! a journal with every kind of row, shipped in two parts so that a step changes state within one batch and across
//! two, must leave the hub's tables equal to `lab.db`'s row by row, and `lab fleet verify` (which replays the hub's
//! journal through the record's projection) must find the hub's copy intact. A real campaign's journal is compared
//! the same way in the chain test and after every fault run.

use controller::record::{CampaignRow, FleetClaim, Hex, IdentityRow, ProposalRow, Record, RecordEvent, StepRow};
use std::collections::BTreeMap;

use super::harness::{self, lab};

fn step(id: i64, name: &str, ready: bool, after: &[&str]) -> StepRow {
    StepRow {
        id,
        step: name.to_owned(),
        op: "Heat".to_owned(),
        action: format!("{{\"heat\":{id}}}"),
        after: after.iter().map(|s| (*s).to_owned()).collect(),
        repeat_safe: id % 2 == 0,
        ready,
    }
}

#[allow(clippy::too_many_arguments)]
fn status(
    step: i64,
    at: f64,
    status: &'static str,
    instrument: Option<&str>,
    task: Option<&str>,
    attempt: Option<u32>,
    outcome: Option<&str>,
    error: Option<&str>,
) -> RecordEvent {
    RecordEvent::StepStatus {
        step,
        at,
        status: status.into(),
        instrument: instrument.map(str::to_owned),
        task: task.map(str::to_owned),
        attempt,
        outcome: outcome.map(str::to_owned),
        error: error.map(str::to_owned),
    }
}

#[test]
fn every_kind_of_journal_row_projects_at_the_hub_as_in_lab_db() {
    let Some((_pg, url, hub)) = harness::hub() else { return };
    // A fleet proposal the workcell holds, so the rows that carry it move it and bring its result to the hub.
    hub.execute(
        "INSERT INTO fleet.workcells (name, lab_name, lab_sha256, capabilities) VALUES ('wc-k', 'sim', '', '{}');
         INSERT INTO fleet.campaigns (name, campaign_path, campaign_text, campaign_sha256, protocol_path, protocol_text,
             protocol_sha256, needs, budget, in_flight) VALUES ('kinds', '-', '-', '-', '-', '-', '-', '{}', 3, 1);
         INSERT INTO fleet.proposals (campaign, seq, needs, params, proposal)
             VALUES ('kinds', 1, '{}', '{\"t\": 80}', '{}'), ('kinds', 2, '{}', '{\"t\": 90}', '{}');",
    );
    assert_eq!(hub.count("SELECT count(*) FROM fleet.claim('wc-k', 'kinds', 2)"), 2);

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("lab.db");
    let mut record = Record::open(&db).unwrap();
    let ids = record.begin_campaign(&CampaignRow::bench()).unwrap();
    let c = ids.campaign;
    let (e1, e2) = (ids.first_experiment, ids.first_experiment + 1);
    let s = ids.first_step;
    let claim = |seq| FleetClaim { campaign: "kinds".into(), seq, epoch: 1 };
    let proposal = |seq: i64, t: f64| {
        let mut p = ProposalRow {
            strategy: "random".into(),
            params: BTreeMap::from([("t".to_owned(), t)]),
            predicted_mean: Some(0.5),
            predicted_sd: None,
            acquisition: Some(f64::MIN_POSITIVE),
            model: Some(serde_json::json!({"kernel": "matern52"})),
            reason: "kinds".into(),
            trained_on: vec![1, 2],
            labels: BTreeMap::new(),
            claim: None,
        };
        if seq > 0 {
            p.claim = Some(claim(seq));
        }
        Box::new(p)
    };
    let first = vec![
        RecordEvent::Instrument {
            campaign: c,
            name: "hotplate_1".into(),
            kind: "Hotplate".into(),
            driver: "ika".into(),
            port: "/dev/pts/9".into(),
            line: "9600 8N1".into(),
            identity: Some(Box::new(IdentityRow {
                model: "RCT digital".into(),
                serial: None,
                firmware: Some("1.0".into()),
                raw: "IKARCT".into(),
            })),
            error: None,
        },
        RecordEvent::Instrument {
            campaign: c,
            name: "uvvis".into(),
            kind: "Spectrometer".into(),
            driver: "flame".into(),
            port: "/dev/pts/10".into(),
            line: "115200 8N1".into(),
            identity: None,
            error: Some("no answer".into()),
        },
        // The same instrument again (a reconnect): the later row wins, as `INSERT OR REPLACE` leaves it.
        RecordEvent::Instrument {
            campaign: c,
            name: "uvvis".into(),
            kind: "Spectrometer".into(),
            driver: "flame".into(),
            port: "/dev/pts/11".into(),
            line: "115200 8N1".into(),
            identity: None,
            error: None,
        },
        RecordEvent::Proposal { id: ids.first_proposal, campaign: c, at: 0.5, proposal: proposal(1, 80.0) },
        RecordEvent::Proposal { id: ids.first_proposal + 1, campaign: c, at: 0.5, proposal: proposal(2, 90.0) },
        RecordEvent::Proposal { id: ids.first_proposal + 2, campaign: c, at: 0.6, proposal: proposal(0, 70.0) },
        RecordEvent::ExperimentStarted {
            id: e1,
            campaign: c,
            seq: 1,
            proposal: Some(ids.first_proposal),
            params: vec![("t".into(), 80.0, "degC".into())],
            vessel: 3,
            at: 1.0,
            steps: vec![step(s, "heat", true, &[]), step(s + 1, "read", false, &["heat"])],
        },
        RecordEvent::Decision {
            campaign: c,
            at: 1.0,
            step: s,
            instrument: "hotplate_1".into(),
            place: None,
            waited: 0.0,
            reason: "critical path".into(),
        },
        status(s, 1.0, "running", Some("hotplate_1"), Some("{\"heat\":80}"), Some(1), None, None),
        RecordEvent::Command {
            campaign: c,
            instrument: "hotplate_1".into(),
            step: Some(s),
            sent_at: 1.0,
            sent: Hex(b"OUT_SP_1 80\r\n".to_vec()),
            replied_at: None,
            received: Hex(vec![0xff, 0x00, b'\n']),
            parsed: None,
            error: Some("no reply within 2 s".into()),
        },
        status(s, 3.0, "failed", None, None, None, None, Some("no reply")),
        status(s, 3.5, "running", None, Some("{\"heat\":80,\"again\":true}"), Some(2), None, None),
        status(s, 9.0, "succeeded", None, None, None, Some("{\"done\":true}"), None),
        status(s + 1, 9.0, "ready", None, None, None, None, None),
        // The second step's state changes in this batch and the next: the hub's merge must meet in the middle.
        status(s + 1, 9.5, "running", Some("uvvis"), Some("{\"read\":1}"), Some(1), None, None),
        RecordEvent::Measurement {
            experiment: e1,
            step: s + 1,
            name: "absorbance".into(),
            value: 0.25,
            unit: "AU".into(),
            at: 9.7,
        },
        RecordEvent::Stock {
            campaign: c,
            at: 1.0,
            bottle: "valve:2".into(),
            reagent: "C2".into(),
            kind: "drawn".into(),
            volume: 100.0 / 3.0,
            experiment: Some(e1),
            step: Some(s),
            unknown: false,
            left: Some(19_466.25),
            note: "by `pump_c`, charged before it acts".into(),
        },
        RecordEvent::Event {
            campaign: c,
            at: 9.8,
            level: "warning".into(),
            instrument: Some("uvvis".into()),
            message: "lamp warming".into(),
        },
    ];
    let second = vec![
        RecordEvent::Measurement {
            experiment: e1,
            step: s + 1,
            name: "absorbance".into(),
            value: 0.75,
            unit: "AU".into(),
            at: 9.9,
        },
        status(s + 1, 10.0, "succeeded", None, None, None, Some("{\"absorbance\":0.75}"), None),
        RecordEvent::ExperimentFinished { id: e1, at: 10.0, objective: Some(0.75), error: None },
        RecordEvent::ExperimentStarted {
            id: e2,
            campaign: c,
            seq: 2,
            proposal: Some(ids.first_proposal + 1),
            params: vec![("t".into(), 90.0, "degC".into())],
            vessel: 4,
            at: 11.0,
            steps: vec![step(s + 2, "heat", true, &[])],
        },
        status(s + 2, 11.0, "running", Some("hotplate_1"), None, Some(1), None, None),
        status(s + 2, 12.0, "unknown", None, None, None, None, Some("the controller stopped")),
        RecordEvent::StepAdded {
            experiment: e2,
            at: 12.5,
            step: step(s + 3, "return", true, &[]),
            why: "return the vial to the rack".into(),
        },
        RecordEvent::Stock {
            campaign: c,
            at: 12.0,
            bottle: "valve:2".into(),
            reagent: "C2".into(),
            kind: "adjusted".into(),
            volume: 0.0,
            experiment: Some(e2),
            step: None,
            unknown: true,
            left: None,
            note: "charged in full: the dispense may have acted".into(),
        },
        RecordEvent::ExperimentFinished { id: e2, at: 13.0, objective: None, error: Some("step heat in doubt".into()) },
        RecordEvent::RequestHandled {
            request: 1,
            at: 13.5,
            action: "pause".into(),
            who: "operator".into(),
            reason: "lunch".into(),
            outcome: "paused".into(),
        },
        RecordEvent::ClaimReleased {
            campaign: c,
            at: 14.0,
            claim: FleetClaim { campaign: "kinds".into(), seq: 9, epoch: 1 },
            reason: "no such claim: a conflict".into(),
            refused: false,
        },
        RecordEvent::CampaignFinished { campaign: c, at: 15.0, status: "finished".into(), note: Some("done".into()) },
    ];
    let kinds: std::collections::BTreeSet<&str> = first.iter().chain(&second).map(RecordEvent::kind).collect();
    assert_eq!(
        kinds.len() + 2,
        16,
        "every kind of row but CampaignStarted (begun above) and Settled is here: {kinds:?}"
    );

    let ship = || {
        let s = harness::ship(&url, "wc-k", &db);
        assert!(s.refused.is_none(), "{s:?}");
    };
    record.write(&first).unwrap();
    ship();
    harness::check_copy(&hub, "wc-k", &db);
    record.write(&second).unwrap();
    drop(record);
    ship();
    let rows = harness::check_copy(&hub, "wc-k", &db);
    assert!(rows >= 20, "{rows}");

    // The fleet's bookkeeping saw what the rows say: the first proposal succeeded with the measurement last
    // recorded before its result (not one after), the second failed; the release of a claim never held is a conflict.
    let states: Vec<(i64, String, Option<serde_json::Value>)> = hub
        .query("SELECT seq, state, outputs FROM fleet.proposals WHERE campaign = 'kinds' ORDER BY seq", &[])
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(states[0], (1, "succeeded".to_owned(), Some(serde_json::json!({"absorbance": 0.75}))));
    assert_eq!((states[1].0, states[1].1.as_str()), (2, "failed"));
    assert_eq!(hub.count("SELECT count(*) FROM fleet.results WHERE campaign = 'kinds'"), 2);
    assert_eq!(hub.count("SELECT count(*) FROM fleet.conflicts WHERE workcell = 'wc-k' AND seq = 9"), 1);

    let (ok, out, err) = lab(&["fleet", "verify", "--workcell", "wc-k"], &url);
    assert!(ok && out.contains("workcell wc-k: intact at the hub"), "{out}{err}");

    // The stock ledger is twinned, and the migration that brought the twin (005) fills it, on a hub that held stock
    // events only in the journal, with exactly the rows shipping writes.
    assert_eq!(hub.count("SELECT count(*) FROM record.stock_events WHERE workcell = 'wc-k'"), 2);
    let migration = include_str!("../../src/fleet/migrations/005-stock-events.sql");
    let backfill =
        migration.split("-- backfill begins").nth(1).and_then(|b| b.split("-- backfill ends").next()).unwrap();
    let select = backfill[backfill.find("SELECT").unwrap()..].trim().trim_end_matches(';');
    let text = |sql: &str| -> Vec<String> { hub.query(sql, &[]).iter().map(|r| r.get(0)).collect() };
    let replayed = text(&format!(
        "SELECT b::text FROM ({select}) AS b(workcell, id, campaign_id, at, bottle, reagent, kind, volume_ul, \
         experiment_id, step_id, unknown, left_ul, note) WHERE b.workcell = 'wc-k' ORDER BY b.id"
    ));
    let twin = text("SELECT s::text FROM record.stock_events s WHERE s.workcell = 'wc-k' ORDER BY s.id");
    assert_eq!(replayed, twin);
}
