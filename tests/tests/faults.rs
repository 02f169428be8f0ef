//! A whole campaign on the rehearsal bench whose simulators inject faults at a high rate
//! (`devices/labs/faulty.lab.ron`): it ends, every experiment and step ends in a final state with its reason, and
//! the record agrees with what the simulators' ledger says physically happened.

use std::collections::BTreeMap;
use std::time::Duration;

use devices::sim::Event;
use devices::sim::bench::{DENSITY, vial_mass};
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
    let summary = t.run_within(Duration::from_secs(300));
    if let Err(e) = &summary {
        assert!(t.db.exists(), "the campaign did not even start its record: {e}");
    }
    let conn = t.record();

    // The campaign ended, whether or not it could start: an instrument that fails identification may leave a
    // needed kind without a working instrument, and then nothing runs, which the record says.
    let status: String = conn.query_row("SELECT status FROM campaigns", [], |r| r.get(0)).unwrap();
    let Ok(summary) = summary else {
        assert_eq!(status, "failed");
        let offline: i64 =
            conn.query_row("SELECT count(*) FROM instruments WHERE status = 'offline'", [], |r| r.get(0)).unwrap();
        assert!(offline > 0, "a campaign that could not start names the instruments that failed");
        return;
    };
    assert_eq!(status, "finished", "{summary:?}");
    assert_eq!(summary.started, 3);

    // Every experiment ended, succeeded or failed; none is left running, and a failed one says why.
    let statuses: Vec<String> = query(&conn, "SELECT status FROM experiments");
    assert_eq!(statuses.len(), 3);
    assert!(statuses.iter().all(|s| s == "succeeded" || s == "failed"), "{statuses:?}");
    let unexplained: i64 = conn
        .query_row("SELECT count(*) FROM experiments WHERE status = 'failed' AND coalesce(error, '') = ''", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(unexplained, 0, "every failed experiment has its reason");

    // The campaign got going: the gantry injects only latency, so every vial left the rack.
    let loaded: i64 = conn
        .query_row("SELECT count(*) FROM steps WHERE step = 'load' AND status = 'succeeded'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(loaded, 3);

    // Every step ended too, and every failed step carries its error text.
    let rows = steps(&conn);
    assert!(rows.iter().all(|s| ["succeeded", "failed", "skipped"].contains(&s.status.as_str())));
    for s in rows.iter().filter(|s| s.status == "failed") {
        let e = s.error.as_deref().unwrap_or_default();
        assert!(!e.is_empty(), "a failed `{}` step has no error", s.op);
    }

    // The faults happened, and the wire errors they caused are in the record with their bytes.
    let ledger = t.ledger();
    assert!(!ledger.faults.is_empty(), "the simulators injected faults");
    let wire_errors: i64 =
        conn.query_row("SELECT count(*) FROM commands WHERE error IS NOT NULL", [], |r| r.get(0)).unwrap();
    assert!(wire_errors > 0, "the injected faults show in the commands table");

    // What the ledger says went into each vial, by pump.
    let mut poured: BTreeMap<(String, usize), f64> = BTreeMap::new();
    for e in &ledger.ledger {
        if let Event::Dispensed { vessel, volume, .. } = &e.event {
            *poured.entry((e.instrument.clone(), *vessel)).or_default() += volume;
        }
    }
    // Every dispense the record calls a success is in the ledger, whole; no pump poured into a vial more than
    // the record asked of it, or into a vial the record never asked it to fill.
    let mut asked: BTreeMap<(String, usize), f64> = BTreeMap::new();
    for s in rows.iter().filter(|s| s.op == "Dispense" && s.instrument.is_some()) {
        let volume = s.action["volume"].as_f64().unwrap();
        let key = (s.instrument.clone().unwrap(), s.vessel);
        *asked.entry(key.clone()).or_default() += volume;
        if s.status == "succeeded" {
            let got = poured.get(&key).copied().unwrap_or_default();
            assert!((got - volume).abs() < 1.0, "{key:?}: the record says {volume} uL, the ledger {got} uL");
        }
    }
    for (key, got) in &poured {
        let wanted = asked.get(key).copied();
        assert!(
            wanted.is_some_and(|w| *got <= w + 1.0),
            "{key:?}: the ledger has {got} uL, the record asked {wanted:?}"
        );
    }

    // A weight the record holds is the vial and what the ledger says is in it, at about 1 g/mL.
    for s in rows.iter().filter(|s| s.op == "Weigh" && s.status == "succeeded") {
        let grams = s.outcome.as_ref().and_then(|o| o["Measured"]["value"].as_f64()).expect("a weight");
        let liquid: f64 = poured.iter().filter(|((_, v), _)| *v == s.vessel).map(|(_, ul)| ul).sum();
        let expected = vial_mass(s.vessel) + liquid * DENSITY;
        assert!(
            (grams - expected).abs() < 1e-3,
            "vessel {}: weighed {grams} g, the ledger says {expected} g",
            s.vessel
        );
    }
}
