//! Fault soak: campaigns on the rehearsal bench whose simulators inject every fault kind at a high rate
//! (`devices/labs/faulty.lab.ron`: lost, late, garbled, truncated and badly checksummed replies, busy instruments,
//! firmware errors, pumps stopping halfway, a USB cable pulled every 25 commands), each checked against the
//! simulators' ledger:
//!
//! - the campaign ends within a bound and without a panic, and finishes what it can: every experiment and every step
//!   ends in a final state, and a failed one says why;
//! - every injected fault is in the record: attached to the exchange it spoiled (a wire fault as an exchange with an
//!   error, a lost port as a reconnection note), and, if a step was running, with that step's outcome (succeeded
//!   anyway, retried, failed or unknown, the last three with their error text);
//! - every step that failed on an instrument was followed by putting that instrument in its safe state, and every
//!   instrument was left in its safe state at the end;
//! - the record agrees with what the ledger says physically happened (what was poured into each vial, what each
//!   vial weighed).
//!
//! `cargo test` runs one short campaign (seconds). `LAB_SOAK_MINUTES=N` runs campaigns with fresh fault seeds for
//! about N minutes and prints what they did (RELIABILITY.md).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use devices::sim::bench::{DENSITY, vial_mass};
use devices::sim::{Event, WireFault};
use rusqlite::Connection;
use tests::CampaignTest;

/// Every instrument kind of the faulty bench: route the valve, dispense, weigh, warm on a block, read the
/// temperature, and put the vial back.
const PROTOCOL: &str = r#"Protocol(
    format: 1,
    name: "soak",
    description: "Route the valve, dispense into a vial, weigh it, hold it warm on a block, read its temperature.",
    parameters: {
        "volume": (unit: "uL", min: 100, max: 800),
        "set_point": (unit: "degC", min: 30, max: 50),
    },
    outputs: {
        "mass": (unit: "g"),
        "temperature": (unit: "degC"),
    },
    steps: [
        (id: "route", op: Select(position: 1), retry: 2),
        (id: "load", op: Transfer(to: Kind(SyringePump))),
        (id: "add", op: Dispense(volume: "$volume"), after: ["load", "route"]),
        (id: "to_scale", op: Transfer(to: Kind(Balance)), after: ["add"]),
        (id: "weigh", op: Weigh(output: "mass"), after: ["to_scale"], retry: 1),
        (id: "to_block", op: Transfer(to: Kind(TemperatureController)), after: ["weigh"]),
        (id: "warm", op: HoldTemperature(temperature: "$set_point", duration: "2 min"), after: ["to_block"]),
        (id: "to_probe", op: Transfer(to: Kind(Thermometer)), after: ["warm"]),
        (id: "read", op: ReadTemperature(output: "temperature"), after: ["to_probe"], retry: 1),
        (id: "unload", op: Transfer(to: Rack), after: ["read"]),
    ],
)
"#;

/// A campaign of `budget` experiments, `in_flight` at a time, proposed at random from `seed`.
fn campaign(budget: usize, in_flight: usize, seed: u64) -> String {
    format!(
        r#"Campaign(
    format: 1,
    name: "soak",
    description: "Soak the controller in faults: everything must end, and the record must match the bench.",
    protocol: "",
    lab: "",
    vary: {{
        "volume": (min: 100, max: 800),
        "set_point": (min: 30, max: 50),
    }},
    fixed: {{}},
    objective: Maximize("temperature"),
    budget: {budget},
    in_flight: {in_flight},
    proposer: Random,
    seed: {seed},
)
"#
    )
}

/// How long one campaign may take, in wall time, before the soak counts it as hung.
const BOUND: Duration = Duration::from_secs(300);

/// Lab seconds of slack when matching a fault's time with the exchange that carried it.
const TOLERANCE: f64 = 0.5;

/// What one soaked campaign did.
#[derive(Debug, Default)]
struct Soaked {
    faults: BTreeMap<String, usize>,
    experiments: usize,
    succeeded: usize,
    steps: usize,
    steps_failed: usize,
    steps_unknown: usize,
    retries: usize,
    wire_errors: usize,
    safe_states: usize,
}

fn query<T: rusqlite::types::FromSql>(conn: &Connection, sql: &str) -> Vec<T> {
    let mut stmt = conn.prepare(sql).unwrap();
    stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
}

/// One row of `commands`.
#[derive(Debug)]
struct Command {
    instrument: String,
    sent_at: f64,
    replied_at: Option<f64>,
    sent: Vec<u8>,
    parsed: Option<String>,
    error: Option<String>,
}

/// A stretch of time a step was running on an instrument, and the event that ended it.
#[derive(Debug)]
struct Running {
    step: i64,
    instrument: String,
    from: f64,
    to: f64,
    outcome: String,
    detail: Option<String>,
}

/// Runs one campaign of the soak protocol on the faulty bench with fault seed `seed`, and checks it.
fn soak(seed: u64, budget: usize, in_flight: usize) -> Soaked {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let lab_text = std::fs::read_to_string(tests::repo_root().join("devices/labs/faulty.lab.ron")).expect("the lab");
    let reseeded = lab_text.replacen("simulation: (seed: 11,", &format!("simulation: (seed: {seed},"), 1);
    assert_ne!(reseeded, lab_text, "the faulty lab has `simulation: (seed: 11,`");
    let lab = dir.path().join("faulty.lab.ron");
    std::fs::write(&lab, reseeded).expect("writing the lab");
    let t = CampaignTest::on_lab(&lab, PROTOCOL, &campaign(budget, in_flight, seed));
    let summary = t.run_within(BOUND);
    let conn = t.record();
    let status: String = conn.query_row("SELECT status FROM campaigns", [], |r| r.get(0)).unwrap();
    let summary = match summary {
        Ok(s) => s,
        Err(e) => {
            // An instrument that fails identification can leave a kind with nothing to run it; then nothing runs,
            // and the record says which instruments failed.
            assert_eq!(status, "failed", "{e}");
            let offline: i64 =
                conn.query_row("SELECT count(*) FROM instruments WHERE status = 'offline'", [], |r| r.get(0)).unwrap();
            assert!(offline > 0, "a campaign that could not start names the instruments that failed: {e}");
            return Soaked::default();
        }
    };
    assert_eq!(status, "finished", "{summary:?}");
    let ledger = t.ledger();
    let mut out = Soaked::default();

    // The campaign finished what it could: every experiment ended, a failed one with its reason.
    let experiments: Vec<(String, Option<String>)> = {
        let mut stmt = conn.prepare("SELECT status, error FROM experiments").unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
    };
    out.experiments = experiments.len();
    out.succeeded = experiments.iter().filter(|(s, _)| s == "succeeded").count();
    assert_eq!(summary.started, experiments.len());
    assert!(
        experiments.len() == budget || summary.stop_reason.is_some(),
        "{} of {budget} experiments ran, and nothing says why the campaign stopped",
        experiments.len()
    );
    for (s, e) in &experiments {
        assert!(s == "succeeded" || s == "failed", "an experiment left {s}");
        assert!(s == "succeeded" || e.as_deref().is_some_and(|e| !e.is_empty()), "a failed experiment says why");
    }

    // Every step ended, and one that failed or whose outcome is unknown says why.
    let steps: Vec<(i64, String, String, Option<String>, Option<String>, Option<f64>)> = {
        let mut stmt = conn.prepare("SELECT id, op, status, instrument, error, started_at FROM steps").unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    out.steps = steps.len();
    for (id, op, status, _, error, _) in &steps {
        assert!(
            ["succeeded", "failed", "skipped", "unknown"].contains(&status.as_str()),
            "step {id} ({op}) left {status}"
        );
        if status == "failed" || status == "unknown" {
            assert!(error.as_deref().is_some_and(|e| !e.is_empty()), "step {id} ({op}) is {status} without a reason");
        }
    }
    out.steps_failed = steps.iter().filter(|s| s.2 == "failed").count();
    out.steps_unknown = steps.iter().filter(|s| s.2 == "unknown").count();

    // Each time a step ran on an instrument, from the step's own history.
    let mut running: Vec<Running> = Vec::new();
    {
        let mut stmt =
            conn.prepare("SELECT step_id, at, status, instrument, detail FROM step_events ORDER BY id").unwrap();
        let events: Vec<(i64, f64, String, Option<String>, Option<String>)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let mut open: HashMap<i64, (String, f64)> = HashMap::new();
        for (step, at, status, instrument, detail) in events {
            if let Some((instrument, from)) = open.remove(&step) {
                if status == "ready" {
                    out.retries += 1;
                }
                running.push(Running {
                    step,
                    instrument,
                    from,
                    to: at,
                    outcome: status.clone(),
                    detail: detail.clone(),
                });
            }
            if status == "running" {
                open.insert(step, (instrument.expect("a running step names its instrument"), at));
            }
        }
        assert!(open.is_empty(), "steps still running at the end: {open:?}");
    }

    // Every injected fault is attached to the exchange it spoiled, and to the outcome of the step it hit.
    let commands: Vec<Command> = {
        let mut stmt = conn
            .prepare("SELECT instrument, sent_at, replied_at, sent, parsed, error FROM commands ORDER BY id")
            .unwrap();
        stmt.query_map([], |r| {
            Ok(Command {
                instrument: r.get(0)?,
                sent_at: r.get(1)?,
                replied_at: r.get(2)?,
                sent: r.get(3)?,
                parsed: r.get(4)?,
                error: r.get(5)?,
            })
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    };
    out.wire_errors = commands.iter().filter(|c| c.error.is_some()).count();
    assert!(!ledger.faults.is_empty(), "the simulators injected faults");
    for f in &ledger.faults {
        *out.faults.entry(format!("{:?}", f.fault)).or_default() += 1;
        let on = |c: &&Command| c.instrument == f.instrument;
        let covers =
            |c: &&Command| c.sent_at - TOLERANCE <= f.at && f.at <= c.replied_at.unwrap_or(c.sent_at) + TOLERANCE;
        let attached = match f.fault {
            WireFault::Dropped | WireFault::Garbled | WireFault::Truncated | WireFault::BadChecksum => {
                commands.iter().filter(on).filter(covers).any(|c| c.error.is_some())
            }
            WireFault::Disconnected => commands.iter().filter(on).any(|c| {
                c.sent.is_empty()
                    && c.sent_at + TOLERANCE >= f.at
                    && c.parsed.iter().chain(&c.error).any(|text| text.contains("the port was lost"))
            }),
            WireFault::Busy | WireFault::Firmware | WireFault::Partial => {
                commands.iter().filter(on).any(|c| covers(&c))
            }
        };
        assert!(attached, "no exchange in the record carries {f:?}");
        for r in running
            .iter()
            .filter(|r| r.instrument == f.instrument && r.from - TOLERANCE <= f.at && f.at <= r.to + TOLERANCE)
        {
            assert!(
                r.outcome == "succeeded" || r.detail.as_deref().is_some_and(|d| !d.is_empty()),
                "step {} hit by {f:?} ended {} without a reason",
                r.step,
                r.outcome
            );
        }
    }

    // A step that failed on an instrument was followed by its safe state; every instrument ended in it.
    let events: Vec<(Option<String>, String)> = {
        let mut stmt = conn.prepare("SELECT instrument, message FROM events").unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
    };
    for r in running.iter().filter(|r| r.outcome != "succeeded") {
        let made_safe = events.iter().any(|(i, m)| {
            i.as_deref() == Some(r.instrument.as_str())
                && (m.contains("put in its safe state after") || m.contains("could NOT be put in its safe state"))
        });
        assert!(made_safe, "{} was not made safe after step {} ended {}", r.instrument, r.step, r.outcome);
    }
    let ready: Vec<String> = query(&conn, "SELECT name FROM instruments WHERE status = 'ready'");
    for name in &ready {
        let last = events.iter().filter(|(i, _)| i.as_deref() == Some(name.as_str())).any(|(_, m)| {
            m.contains("left in its safe state") || m.contains("could NOT be put in its safe state at the end")
        });
        assert!(last, "{name} was not left in its safe state at the end");
    }
    out.safe_states = events.iter().filter(|(_, m)| m.contains("safe state")).count();

    check_ledger(&conn, &ledger);
    out
}

/// The record agrees with the ledger: every dispense the record calls a success poured its volume, nothing was
/// poured that the record did not ask for, and every weight read is the vial and what the ledger says is in it.
fn check_ledger(conn: &Connection, ledger: &devices::sim::LedgerFile) {
    let mut poured: BTreeMap<(String, usize), f64> = BTreeMap::new();
    for e in &ledger.ledger {
        if let Event::Dispensed { vessel, volume, .. } = &e.event {
            *poured.entry((e.instrument.clone(), *vessel)).or_default() += volume;
        }
    }
    let mut stmt = conn
        .prepare(
            "SELECT e.vessel, s.op, s.instrument, s.status, s.action, s.outcome FROM steps s
             JOIN experiments e ON e.id = s.experiment_id ORDER BY s.id",
        )
        .unwrap();
    let rows: Vec<(i64, String, Option<String>, String, String, Option<String>)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut asked: BTreeMap<(String, usize), f64> = BTreeMap::new();
    for (vessel, op, instrument, status, action, _) in &rows {
        let (Some(instrument), "Dispense") = (instrument, op.as_str()) else { continue };
        let action: serde_json::Value = serde_json::from_str(action).unwrap();
        let volume = action["volume"].as_f64().unwrap();
        let key = (instrument.clone(), *vessel as usize);
        *asked.entry(key.clone()).or_default() += volume;
        if status == "succeeded" {
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
    for (vessel, op, _, status, _, outcome) in &rows {
        if op != "Weigh" || status != "succeeded" {
            continue;
        }
        let outcome: serde_json::Value = serde_json::from_str(outcome.as_deref().unwrap()).unwrap();
        let grams = outcome["Measured"]["value"].as_f64().expect("a weight");
        let liquid: f64 = poured.iter().filter(|((_, v), _)| *v == *vessel as usize).map(|(_, ul)| ul).sum();
        let expected = vial_mass(*vessel as usize) + liquid * DENSITY;
        assert!((grams - expected).abs() < 1e-3, "vessel {vessel}: weighed {grams} g, the ledger says {expected} g");
    }
}

#[test]
fn a_short_fault_soak_ends_and_accounts_for_every_fault() {
    let soaked = soak(12, 6, 3);
    eprintln!("{soaked:?}");
}

/// `LAB_SOAK_MINUTES=N`: campaigns with a new fault seed each, until about N minutes have passed.
#[test]
fn a_long_fault_soak_runs_when_asked() {
    let Some(minutes) = std::env::var("LAB_SOAK_MINUTES").ok().and_then(|m| m.parse::<f64>().ok()) else { return };
    let until = Instant::now() + Duration::from_secs_f64(minutes * 60.0);
    let mut total = Soaked::default();
    let mut campaigns = 0;
    let mut seed = 100;
    while Instant::now() < until {
        let s = soak(seed, 12, 4);
        eprintln!("seed {seed}: {s:?}");
        for (k, n) in s.faults {
            *total.faults.entry(k).or_default() += n;
        }
        total.experiments += s.experiments;
        total.succeeded += s.succeeded;
        total.steps += s.steps;
        total.steps_failed += s.steps_failed;
        total.steps_unknown += s.steps_unknown;
        total.retries += s.retries;
        total.wire_errors += s.wire_errors;
        total.safe_states += s.safe_states;
        campaigns += 1;
        seed += 1;
    }
    eprintln!("{campaigns} campaigns in {minutes} min: {total:?}");
}
