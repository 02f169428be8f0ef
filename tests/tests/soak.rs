//! Fault soak: campaigns on the rehearsal bench whose simulators inject every fault kind at a high rate
//! (`devices/labs/faulty.lab.ron`: lost, late, garbled, truncated and badly checksummed replies, busy instruments,
//! firmware errors, pumps stopping halfway, a USB cable pulled every 25 commands), each checked against the
//! simulators' ledger:
//!
//! - the campaign ends within a bound and without a panic, and finishes what it can: every experiment and every step
//!   ends in a final state, and a failed one says why;
//! - every injected fault is in the record: a spoiled reply as an exchange with an error, a lost port as a
//!   reconnection note; a refusal (busy, a firmware error) or a stroke stopped halfway, which the wire carries whole,
//!   as the error that ended the attempt of the step whose exchange carried it (or, outside any step, as the next
//!   warning or error about that instrument); and a step running on the instrument then ends with its reason;
//! - every step that failed on an instrument (failed, retried or left unknown) was followed by putting that
//!   instrument in its safe state, recorded with the failure's own text before the step's end and so before that
//!   instrument's next step; and every instrument was left in its safe state at the end;
//! - the record agrees with what the ledger says physically happened (what was poured into each vial, what each
//!   vial weighed).
//!
//! A campaign that cannot start fails the soak: it would test nothing. `cargo test` runs a short soak (seconds) that
//! must inject every kind of fault; the long one is ignored by default, and its test's name and documentation give
//! the command (RELIABILITY.md records its figures).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use devices::sim::bench::{DENSITY, vial_mass};
use devices::sim::{Event, InjectedFault, WireFault};
use rusqlite::Connection;
use tests::CampaignTest;

use crate::faults::query;

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
pub(crate) struct Soaked {
    faults: BTreeMap<String, usize>,
    pub(crate) experiments: usize,
    succeeded: usize,
    steps: usize,
    steps_failed: usize,
    steps_unknown: usize,
    retries: usize,
    pub(crate) wire_errors: usize,
    safe_states: usize,
}

/// One row of `commands`.
#[derive(Debug)]
struct Command {
    instrument: String,
    /// The step it was sent for, if any.
    step: Option<i64>,
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
    soak_on(seed, budget, in_flight, |lab| lab)
}

/// [`soak`] on the faulty bench as `edit` changes its lab file.
fn soak_on(seed: u64, budget: usize, in_flight: usize, edit: impl FnOnce(String) -> String) -> Soaked {
    soak_campaign(seed, budget, in_flight, edit).1
}

/// [`soak_on`], with the campaign kept for more questions.
fn soak_campaign(
    seed: u64,
    budget: usize,
    in_flight: usize,
    edit: impl FnOnce(String) -> String,
) -> (CampaignTest, Soaked) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let lab_text =
        edit(std::fs::read_to_string(tests::repo_root().join("devices/labs/faulty.lab.ron")).expect("the lab"));
    let reseeded = lab_text.replacen("simulation: (seed: 11,", &format!("simulation: (seed: {seed},"), 1);
    assert_ne!(reseeded, lab_text, "the faulty lab has `simulation: (seed: 11,`");
    let lab = dir.path().join("faulty.lab.ron");
    std::fs::write(&lab, reseeded).expect("writing the lab");
    let mut t = CampaignTest::on_lab(&lab, PROTOCOL, &campaign(budget, in_flight, seed));
    if std::env::var_os("LAB_SOAK_KEEP").is_some() {
        t.keep();
    }
    let soaked = check(&t, t.run_within(BOUND), budget);
    (t, soaked)
}

/// A reply lost while an instrument is initialized is asked again, since initializing drives it to a known state
/// whatever happened before: on fault seed 121 the faulty bench's only valve loses its answer to initialization,
/// which took it offline and left the campaign unable to start.
#[test]
fn a_reply_lost_while_initializing_is_asked_again() {
    let (t, soaked) = soak_campaign(121, 4, 4, |lab| lab);
    assert_eq!(soaked.experiments, 4, "{soaked:?}");
    let again: Vec<String> = query(&t.record(), "SELECT message FROM events WHERE message LIKE '%initializing again%'");
    assert!(!again.is_empty(), "seed 121 no longer loses an initialization reply: choose another seed");
}

/// A refusal as busy while an instrument is initialized (a Cavro's error 15, which runs nothing) is asked again
/// too: on fault seed 38 of the short soak's bench, two of the three pumps answered busy to initialization and the
/// third lost its port, and the campaign could not start, with no pump left for its first step.
#[test]
fn a_busy_refusal_while_initializing_is_asked_again() {
    let (t, soaked) = soak_campaign(38, 4, 4, short_soak_bench);
    assert_eq!(soaked.experiments, 4, "{soaked:?}");
    let again: Vec<String> =
        query(&t.record(), "SELECT message FROM events WHERE message LIKE '%answered busy to its initialization%'");
    assert!(!again.is_empty(), "seed 38 no longer meets a busy answer to an initialization: choose another seed");
}

/// Checks a campaign on the faulty bench (its result, its record and its simulators' ledger) against every promise
/// of this file's documentation, and counts what it did.
pub(crate) fn check(
    t: &CampaignTest,
    summary: Result<controller::run::Summary, controller::run::RunError>,
    budget: usize,
) -> Soaked {
    // A campaign that could not start tests nothing: it fails the soak, with what the record says about why.
    let summary = summary.unwrap_or_else(|e| {
        let said: Vec<String> = if t.db.exists() {
            query(&t.record(), "SELECT level || ' ' || coalesce(instrument, '') || ': ' || message FROM events")
        } else {
            Vec::new()
        };
        panic!("the campaign could not start: {e}\n{}", said.join("\n"))
    });
    let conn = t.record();
    let status: String = conn.query_row("SELECT status FROM campaigns", [], |r| r.get(0)).unwrap();
    // A run whose faults took every instrument of a step offline stops without finishing, for `lab resume`, and
    // says so; any other run finishes.
    if summary.status == "stopped" {
        assert_eq!(status, "running", "{summary:?}");
        let said: Vec<String> =
            query(&conn, "SELECT message FROM events WHERE message LIKE 'the controller stopped without finishing%'");
        assert_eq!(said.len(), 1, "{summary:?}");
    } else {
        assert_eq!(status, "finished", "{summary:?}");
    }
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
    let steps: Vec<(i64, String, String, Option<String>)> = {
        let mut stmt = conn.prepare("SELECT id, op, status, error FROM steps").unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).unwrap().map(Result::unwrap).collect()
    };
    out.steps = steps.len();
    for (id, op, status, error) in &steps {
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

    let running = attempts(&conn, &mut out);
    let commands = commands(&conn);
    let events: Vec<Said> = {
        let mut stmt = conn.prepare("SELECT at, level, instrument, message FROM events ORDER BY id").unwrap();
        stmt.query_map([], |r| Ok(Said { at: r.get(0)?, level: r.get(1)?, instrument: r.get(2)?, message: r.get(3)? }))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    out.wire_errors = commands.iter().filter(|c| c.error.is_some()).count();
    assert!(!ledger.faults.is_empty(), "the simulators injected faults");
    for f in &ledger.faults {
        *out.faults.entry(format!("{:?}", f.fault)).or_default() += 1;
        check_fault(f, &ledger.faults, &commands, &running, &events);
    }

    // A step that failed on an instrument was followed by its safe state, before that instrument's next step: the
    // instrument's task records it between the failure and the step's end, naming the failure.
    for r in running.iter().filter(|r| r.outcome != "succeeded") {
        let next = running
            .iter()
            .filter(|n| n.instrument == r.instrument && n.from >= r.to && !std::ptr::eq(*n, r))
            .map(|n| n.from)
            .fold(f64::INFINITY, f64::min);
        let error = r.detail.as_deref().unwrap_or_default();
        let made_safe = events.iter().any(|e| {
            e.instrument.as_deref() == Some(r.instrument.as_str())
                && r.from - TOLERANCE <= e.at
                && e.at <= r.to.min(next)
                && (e.message.contains("put in its safe state after: ")
                    || e.message.contains("could NOT be put in its safe state"))
                && e.message
                    .split_once(") after: ")
                    .or_else(|| e.message.split_once(" after: "))
                    .is_some_and(|(_, cause)| error.contains(cause))
        });
        assert!(
            made_safe,
            "{} was not made safe after step {} ended {} at {} ({error}) and before its next step at {next}",
            r.instrument, r.step, r.outcome, r.to
        );
    }
    let ready: Vec<String> = query(&conn, "SELECT name FROM instruments WHERE status = 'ready'");
    for name in &ready {
        let last = events.iter().filter(|e| e.instrument.as_deref() == Some(name.as_str())).any(|e| {
            e.message.contains("left in its safe state")
                || e.message.contains("could NOT be put in its safe state at the end")
        });
        assert!(last, "{name} was not left in its safe state at the end");
    }
    out.safe_states = events.iter().filter(|e| e.message.contains("safe state")).count();

    check_ledger(&conn, &ledger);
    out
}

/// One row of `events`.
#[derive(Debug)]
struct Said {
    at: f64,
    level: String,
    instrument: Option<String>,
    message: String,
}

/// Each time a step ran on an instrument, from the step's own history; counts the retries.
fn attempts(conn: &Connection, out: &mut Soaked) -> Vec<Running> {
    let mut running = Vec::new();
    let mut stmt = conn.prepare("SELECT step_id, at, status, instrument, detail FROM step_events ORDER BY id").unwrap();
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
            running.push(Running { step, instrument, from, to: at, outcome: status.clone(), detail: detail.clone() });
        }
        if status == "running" {
            open.insert(step, (instrument.expect("a running step names its instrument"), at));
        }
    }
    assert!(open.is_empty(), "steps still running at the end: {open:?}");
    running
}

fn commands(conn: &Connection) -> Vec<Command> {
    let mut stmt = conn
        .prepare("SELECT instrument, step_id, sent_at, replied_at, sent, parsed, error FROM commands ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| {
        Ok(Command {
            instrument: r.get(0)?,
            step: r.get(1)?,
            sent_at: r.get(2)?,
            replied_at: r.get(3)?,
            sent: r.get(4)?,
            parsed: r.get(5)?,
            error: r.get(6)?,
        })
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// Checks that the record accounts for one injected fault (of `faults`, all the simulators injected): it is
/// attached to the exchange it spoiled, and the error is said where it struck.
///
/// - A spoiled reply (dropped, garbled, truncated, a bad checksum) shows as an exchange with an error, and a lost
///   port as a reconnection note (unless the controller never spoke to the instrument again).
/// - A refusal (busy, a firmware error) or a pump's stroke stopped halfway is a reply the wire carried whole, so the
///   error is the instrument's: the exchange that carried it belongs to a step whose attempt ended in an error (failed,
///   retried or unknown) that names the fault when it was the attempt's only one (`instrument busy`, `instrument
///   error`, the pump's `overload`); outside any step (starting, reconciling, the final safe state), the next thing
///   the record says about that instrument is a warning or an error.
/// - Whichever it was, a step running on that instrument at that moment ended with its reason if it did not succeed.
fn check_fault(
    f: &InjectedFault,
    faults: &[InjectedFault],
    commands: &[Command],
    running: &[Running],
    events: &[Said],
) {
    let on = |c: &&Command| c.instrument == f.instrument;
    let covers = |c: &&Command| c.sent_at - TOLERANCE <= f.at && f.at <= c.replied_at.unwrap_or(c.sent_at) + TOLERANCE;
    let attempt_of = |c: &Command| {
        running.iter().find(|r| {
            Some(r.step) == c.step
                && r.instrument == c.instrument
                && r.from - TOLERANCE <= c.sent_at
                && c.sent_at <= r.to + TOLERANCE
        })
    };
    let names = |text: &str| match f.fault {
        WireFault::Busy => text.contains("instrument busy"),
        WireFault::Firmware => text.contains("instrument error"),
        _ => text.contains("overload"),
    };
    let said_in = |r: &Running| {
        let detail = r.detail.as_deref().unwrap_or_default();
        let alone = faults
            .iter()
            .filter(|g| g.instrument == f.instrument && r.from - TOLERANCE <= g.at && g.at <= r.to + TOLERANCE)
            .count()
            == 1;
        r.outcome != "succeeded" && !detail.is_empty() && (!alone || names(detail))
    };
    let attached = match f.fault {
        WireFault::Dropped | WireFault::Garbled | WireFault::Truncated | WireFault::BadChecksum => {
            commands.iter().filter(on).filter(covers).any(|c| c.error.is_some())
        }
        // A port lost after the controller's last word to the instrument (its final safe state) is never noticed.
        WireFault::Disconnected => {
            commands.iter().filter(on).any(|c| {
                c.sent.is_empty()
                    && c.sent_at + TOLERANCE >= f.at
                    && c.parsed.iter().chain(&c.error).any(|text| text.contains("the port was lost"))
            }) || !commands.iter().filter(on).any(|c| c.sent_at + TOLERANCE >= f.at)
        }
        WireFault::Busy | WireFault::Firmware | WireFault::Partial => {
            commands.iter().filter(on).filter(covers).any(|c| match c.step {
                Some(_) => attempt_of(c).is_some_and(said_in),
                None => events
                    .iter()
                    .find(|e| e.instrument.as_deref() == Some(f.instrument.as_str()) && e.at + TOLERANCE >= f.at)
                    .is_some_and(|e| e.level != "info"),
            })
        }
    };
    assert!(attached, "no exchange in the record carries {f:?} with its error");
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

/// The record agrees with the ledger: every dispense the record calls a success poured the volume its outcome says
/// (what was asked, or what a stroke settled as partial moved), nothing was poured that the record did not ask for,
/// and every weight read is the vial and what the ledger says is in it.
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
    for (vessel, op, instrument, status, action, outcome) in &rows {
        let (Some(instrument), "Dispense") = (instrument, op.as_str()) else { continue };
        let action: serde_json::Value = serde_json::from_str(action).unwrap();
        let key = (instrument.clone(), *vessel as usize);
        *asked.entry(key.clone()).or_default() += action["volume"].as_f64().unwrap();
        // What the record says was poured: the outcome's volume (a stroke that stopped partway and was settled from
        // the pump's read-back moved less than asked), or what was asked.
        let outcome: Option<serde_json::Value> = outcome.as_deref().and_then(|o| serde_json::from_str(o).ok());
        let poured_volume = outcome.as_ref().and_then(|o| o["Dispensed"]["volume"].as_f64());
        let volume = poured_volume.unwrap_or_else(|| action["volume"].as_f64().unwrap());
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

/// The short soak's variant of the faulty bench: pump_2 loses its port every 8 commands instead of 25, and pump_1
/// stops a stroke halfway three times as often.
fn short_soak_bench(lab: String) -> String {
    let edited = lab
        .replace("disconnect: (after: 25,", "disconnect: (after: 8,")
        .replace("busy: 0.05,\n                partial: 0.1,", "busy: 0.05,\n                partial: 0.3,");
    assert_eq!(
        edited.matches("after: 8,").count() + edited.matches("partial: 0.3,").count(),
        2,
        "the faulty lab changed"
    );
    edited
}

/// The short soak CI runs: two campaigns of 12 experiments on a variant of the faulty bench whose pump_2 loses its
/// port every 8 commands instead of 25 and whose pump_1 stops a stroke halfway three times as often, so that the
/// fault seeds 27 and 32 inject every kind of fault (each at least three times in every run seen; chosen again when
/// a lost reply came to cost its own second of lab time on the discrete-event clock, not 400). It must have
/// tested what it is for: every kind of fault was injected and accounted for, the campaigns ran their budget (or
/// stopped, saying why, when no instrument was left for a step), and steps failed and were followed by their
/// instruments' safe states.
#[test]
fn a_short_fault_soak_injects_every_kind_of_fault_and_accounts_for_each() {
    let mut total = Soaked::default();
    let mut ran = Vec::new();
    for seed in [27, 32] {
        let s = soak_on(seed, 12, 4, short_soak_bench);
        eprintln!("seed {seed}: {s:?}");
        ran.push(s.experiments);
        total.add(s);
    }
    for kind in ["Dropped", "Garbled", "Truncated", "BadChecksum", "Busy", "Firmware", "Partial", "Disconnected"] {
        assert!(total.faults.get(kind).is_some_and(|n| *n >= 1), "no {kind} fault was injected: {total:?}");
    }
    // Each campaign runs its budget, or stops once faults have taken every instrument of a step offline (`check`
    // requires the record to say so), rather than starting experiments that could only fail; with seeds 27 and 32
    // both run their budget.
    assert!(ran[0] >= 5 && ran[1] == 12, "experiments run with seeds 27 and 32: {ran:?}; {total:?}");
    assert!(total.steps_failed >= 1 && total.safe_states > total.steps_failed, "{total:?}");
}

/// The long soak, ignored by default: campaigns on the faulty bench as the repository has it, a new fault seed each
/// (from 100), for `LAB_SOAK_MINUTES` minutes (default 8). Run it with
/// `LAB_SOAK_MINUTES=8 cargo test -p tests --test integration long_fault_soak -- --ignored --nocapture`;
/// `LAB_SOAK_KEEP=1` keeps every campaign's folder; `LAB_SOAK_FROM=N` starts at seed N (`LAB_SOAK_MINUTES=0.01` then
/// runs that one seed).
#[test]
#[ignore = "long: LAB_SOAK_MINUTES=8 cargo test -p tests --test integration long_fault_soak -- --ignored --nocapture"]
fn long_fault_soak_run_with_ignored() {
    let minutes: f64 =
        std::env::var("LAB_SOAK_MINUTES").map_or(8.0, |m| m.parse().expect("LAB_SOAK_MINUTES is a number"));
    let until = Instant::now() + Duration::from_secs_f64(minutes * 60.0);
    let mut total = Soaked::default();
    let mut campaigns = 0;
    // `LAB_SOAK_FROM` starts elsewhere than seed 100: to run one seed that failed again, with a minute that short.
    let mut seed: u64 = std::env::var("LAB_SOAK_FROM").map_or(100, |s| s.parse().expect("LAB_SOAK_FROM is a seed"));
    while Instant::now() < until {
        let s = soak(seed, 12, 4);
        eprintln!("seed {seed}: {s:?}");
        total.add(s);
        campaigns += 1;
        seed += 1;
    }
    println!("{campaigns} campaigns in {minutes} min: {total:?}");
}

impl Soaked {
    /// Adds what another campaign did.
    fn add(&mut self, s: Soaked) {
        for (k, n) in s.faults {
            *self.faults.entry(k).or_default() += n;
        }
        self.experiments += s.experiments;
        self.succeeded += s.succeeded;
        self.steps += s.steps;
        self.steps_failed += s.steps_failed;
        self.steps_unknown += s.steps_unknown;
        self.retries += s.retries;
        self.wire_errors += s.wire_errors;
        self.safe_states += s.safe_states;
    }
}
