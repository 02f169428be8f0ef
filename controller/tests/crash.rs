//! Crash injection: a simulated campaign whose controller is killed (SIGKILL) at random points and resumed from
//! `lab.db` each time, checked against the simulators' own ledger of what physically happened. One file because
//! every test here shares the harness (a `lab sim` process that outlives the controllers it serves, controllers
//! killed and resumed) and the ledger audit.
//!
//! The simulators run in their own `lab sim` process, so the simulated bench (vessels, what is in them, where they
//! stand) outlives every controller, as a real bench would. After the last resume lets the campaign finish, the
//! test checks that nothing recorded was lost (the hash chain is unbroken and every table matches the journal), that
//! the campaign ran its whole budget, and that the ledger and the record agree in both directions ([`audit`]): every
//! dispense, placement, heat, stir and measurement on the bench was asked for by a step of that vessel's experiment
//! whose intent is in the record, none was repeated, nothing was spilled, dropped, knocked over or gripped empty, and
//! every step the record calls done happened on the bench, once. The short round also requires that at least one
//! kill caught the campaign running and at least one step was left in doubt, so it cannot pass without testing what
//! it is for.
//!
//! `cargo test` runs the short round (up to three kills). The long one is ignored by default; its test's name and
//! documentation give the command (RELIABILITY.md records its figures).
//!
//! Every process these tests start is a [`Process`] (`tests/process/mod.rs`), killed when dropped, so a failed
//! assertion never leaves a `lab sim` or a controller running; every wait on one is bounded.
#![cfg(unix)]

mod process;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Output, Stdio};
use std::time::{Duration, Instant};

use devices::sim::{Event, LedgerFile};
use devices::{Place, Task};
use nix::sys::signal::Signal;
use process::{Process, STOP_BOUND, output};
use rusqlite::Connection;

const LAB: &str = env!("CARGO_BIN_EXE_lab");

/// How long a resumed campaign may take to finish.
const FINISH_BOUND: Duration = Duration::from_secs(180);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// A small deterministic generator for kill times.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A demo's files, and what the crash tests change in its campaign.
struct Demo {
    lab: &'static str,
    campaign: &'static str,
    protocol: &'static str,
    /// The campaign's budget line, replaced by the test's.
    budget: &'static str,
    /// A proposer to put in place of the campaign's, if any.
    proposer: Option<(&'static str, &'static str)>,
}

/// The first demo: the condensation on the simulated bench.
const DEMO: Demo = Demo {
    lab: "sim.lab.ron",
    campaign: "demo.campaign.ron",
    protocol: "condensation.protocol.ron",
    budget: "budget: 24",
    proposer: None,
};

/// The catalyst demo on the bench with a valve-fed catalyst pump, proposing at random (so the catalyst changes
/// often).
const CATALYSTS: Demo = Demo {
    lab: "catalysts.lab.ron",
    campaign: "catalysts.campaign.ron",
    protocol: "catalysed.protocol.ron",
    budget: "budget: 32",
    proposer: Some(("proposer: GaussianProcess(initial: 8, acquisition: LogExpectedImprovement)", "proposer: Random")),
};

struct Bench {
    /// Declared first, so it is stopped before the folder it writes to is removed.
    sim: Process,
    /// The simulators' standard input: `remove PLACE` takes a vessel off the simulated deck by hand.
    hands: std::sync::Mutex<Option<ChildStdin>>,
    dir: tempfile::TempDir,
}

impl Bench {
    /// Starts the simulators of the demo lab in their own process, writing their ledger when stopped.
    fn start(budget: usize) -> Bench {
        Bench::start_with(budget, |lab| lab)
    }

    /// [`Bench::start`] on the demo lab as `edit` changes it.
    fn start_with(budget: usize, edit: impl FnOnce(String) -> String) -> Bench {
        Bench::start_demo(&DEMO, budget, edit)
    }

    /// The simulators of `demo`'s lab as `edit` changes it, and its campaign with `budget` experiments.
    fn start_demo(demo: &Demo, budget: usize, edit: impl FnOnce(String) -> String) -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let ledger = dir.path().join("ledger.ron");
        let lab = edit(std::fs::read_to_string(repo().join(format!("devices/labs/{}", demo.lab))).unwrap()).replace(
            "simulation: (seed: 7, time_scale: 400)",
            &format!("simulation: (seed: 7, time_scale: 1000, ledger: {:?})", ledger.display().to_string()),
        );
        assert!(lab.contains("ledger:"), "the demo lab's simulation line changed; update this test");
        std::fs::write(dir.path().join("base.lab.ron"), lab).unwrap();
        let out = dir.path().join("ext.lab.ron");
        let mut sim = Process::spawn(
            Command::new(LAB)
                .args(["sim", "base.lab.ron", "--lab-out", "ext.lab.ron", "--hands"])
                .current_dir(dir.path())
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
            "lab sim",
        );
        let t0 = Instant::now();
        while !out.exists() {
            assert!(sim.running(), "`lab sim` stopped before writing its lab file");
            assert!(t0.elapsed() < STOP_BOUND, "`lab sim` did not write its lab file");
            std::thread::sleep(Duration::from_millis(50));
        }
        let campaign =
            std::fs::read_to_string(repo().join(format!("experiments/campaigns/{}", demo.campaign))).unwrap();
        let protocol = format!("protocols/library/{}", demo.protocol);
        let campaign = campaign
            .replace(&format!("\"../../{protocol}\""), &format!("{:?}", repo().join(&protocol).display().to_string()))
            .replace(&format!("\"../../devices/labs/{}\"", demo.lab), &format!("{:?}", out.display().to_string()))
            .replace(demo.budget, &format!("budget: {budget}"));
        let campaign = match demo.proposer {
            Some((from, to)) => campaign.replace(from, to),
            None => campaign,
        };
        assert!(campaign.contains(&format!("budget: {budget}")), "the demo campaign changed; update this test");
        std::fs::write(dir.path().join("c.campaign.ron"), campaign).unwrap();
        let hands = std::sync::Mutex::new(sim.child.stdin.take());
        Bench { sim, hands, dir }
    }

    /// Takes whatever vessel stands at deck place `place` off the simulated deck, as a person would.
    fn remove(&self, place: &str) {
        self.hand(&format!("remove {place}"));
    }

    /// Tells the simulators' hands to do `what` (`lab sim --hands`).
    fn hand(&self, what: &str) {
        use std::io::Write;
        let mut hands = self.hands.lock().unwrap();
        let stdin = hands.as_mut().expect("the simulators' standard input");
        writeln!(stdin, "{what}").unwrap();
        stdin.flush().unwrap();
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("lab.db")
    }

    /// Starts the controller: the campaign the first time, `lab resume` after.
    fn controller(&self, first: bool) -> Process {
        self.controller_with(first, &[])
    }

    /// [`Bench::controller`] with more arguments.
    fn controller_with(&self, first: bool, more: &[&str]) -> Process {
        let mut cmd = Command::new(LAB);
        if first {
            cmd.args(["campaign", "c.campaign.ron", "--db", "lab.db", "-q"]);
        } else {
            cmd.args(["resume", "--db", "lab.db", "-q"]);
        }
        cmd.args(more);
        // With `LAB_CRASH_KEEP`, what each controller said goes to `controllers.log` beside the record.
        let stderr = if std::env::var_os("LAB_CRASH_KEEP").is_some() {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.path().join("controllers.log"))
                .unwrap();
            Stdio::from(log)
        } else {
            Stdio::null()
        };
        let what = if first { "lab campaign" } else { "lab resume" };
        Process::spawn(cmd.current_dir(self.dir.path()).stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr), what)
    }

    /// Runs a `lab` command on the bench's folder to its end.
    fn lab(&self, args: &[&str]) -> Output {
        output(Command::new(LAB).args(args).current_dir(self.dir.path()))
    }

    /// Stops the simulators with Ctrl-C (they write their ledger) and reads the ledger.
    fn stop(self) -> (tempfile::TempDir, LedgerFile) {
        let Bench { mut sim, hands, dir } = self;
        drop(hands);
        sim.signal(Signal::SIGINT);
        let ledger = LedgerFile::read(&dir.path().join("ledger.ron")).expect("the simulators wrote their ledger");
        (dir, ledger)
    }
}

/// Keeps the folder of a finished bench for a look when `LAB_CRASH_KEEP` is set (the record, the ledger and the
/// controllers' logs); otherwise it is removed when dropped.
fn keep_if_asked(dir: tempfile::TempDir, what: &str) -> Option<tempfile::TempDir> {
    if std::env::var_os("LAB_CRASH_KEEP").is_some() {
        eprintln!("{what}: kept {}", dir.keep().display());
        None
    } else {
        Some(dir)
    }
}

/// What one crash round did.
#[derive(Debug)]
struct Round {
    /// Kills that caught the controller running.
    kills: usize,
    /// Steps left in doubt by a kill and settled on resume.
    in_doubt: i64,
    /// Experiments that failed (by policy, mostly: a heat in doubt fails its experiment).
    failed: i64,
    /// Journal rows `lab verify` found intact.
    journal_rows: i64,
    /// What the ledger held, every item matched to the record.
    audit: Audit,
}

/// Runs a campaign of `budget` experiments, killing its controller up to `rounds` times at random moments (0.3 to
/// 2.8 s of wall time after each start), then lets it finish, and checks the record against the ledger.
fn crash_rounds(rounds: usize, budget: usize, seed: u64) -> Round {
    let bench = Bench::start(budget);
    let mut rng = Lcg(seed);
    let mut kills = Vec::new();
    for round in 0..rounds {
        let mut c = bench.controller(round == 0);
        let wait = Duration::from_secs_f64(0.3 + 2.5 * rng.next());
        let ended = c.wait_for(wait);
        if ended.is_none() {
            c.kill();
        }
        kills.push((wait, ended));
        if ended.is_some() {
            break;
        }
    }
    // The last controller runs to the end.
    let last = bench.controller(false).wait_for(FINISH_BOUND);
    assert!(last.is_some(), "the resumed campaign did not finish within {FINISH_BOUND:?} (kills {kills:?})");
    let db = bench.db();
    let (dir, ledger) = bench.stop();
    let dir = keep_if_asked(dir, &format!("seed {seed}"));

    // Nothing recorded was lost or altered.
    let report = controller::record::verify::verify(&db).unwrap();
    assert!(report.is_intact(), "{:#?}", report.problems);

    // The campaign ran its whole budget, and nothing is left running.
    let conn = Connection::open(&db).unwrap();
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    let (status, experiments): (String, i64) = conn
        .query_row("SELECT c.status, (SELECT count(*) FROM experiments) FROM campaigns c", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((status.as_str(), experiments), ("finished", budget as i64), "after kills {kills:?}");
    assert_eq!(count("SELECT count(*) FROM experiments WHERE status = 'running'"), 0);
    assert_eq!(
        count("SELECT count(*) FROM steps WHERE status IN ('running', 'unknown')"),
        0,
        "every step in doubt was settled"
    );
    // A step in doubt says why, in one sentence a person can read.
    let reasons: Vec<String> = conn
        .prepare("SELECT DISTINCT detail FROM step_events WHERE status = 'unknown'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for reason in &reasons {
        assert!(reason.starts_with("in doubt: ") && !reason.contains(['\\', '\n']), "{reason:?}");
    }

    let audit = audit(&conn, &ledger);
    assert_eq!(audit.held, None, "a vessel was left in the gripper");
    let round = Round {
        kills: kills.iter().filter(|k| k.1.is_none()).count(),
        in_doubt: count("SELECT count(DISTINCT step_id) FROM step_events WHERE status = 'unknown'"),
        failed: count("SELECT count(*) FROM experiments WHERE status = 'failed'"),
        journal_rows: report.journal_rows,
        audit,
    };
    eprintln!("seed {seed}: {round:?}");
    drop(dir);
    round
}

/// The short round CI runs: three kill times from seed 1. It must have tested what it is for: at least one kill
/// caught the campaign running, and at least one step was left in doubt and settled.
#[test]
fn a_campaign_killed_three_times_finishes_without_repeating_or_losing_anything() {
    let round = crash_rounds(3, 10, 1);
    assert!(round.kills >= 1, "no kill caught the campaign running: {round:?}");
    assert!(round.in_doubt >= 1, "no kill left a step in doubt: {round:?}");
    assert!(round.audit.dispenses > 0 && round.audit.placements > 0 && round.audit.heats > 0, "{round:?}");
}

/// The long run, ignored by default: `LAB_CRASH_ROUNDS` kills per campaign (default 10) over the seeds of
/// `LAB_CRASH_SEEDS=a,b,…` (default 100 to 104). Run it with
/// `LAB_CRASH_ROUNDS=10 cargo test --release -p controller --test crash long_crash_rounds -- --ignored --nocapture`;
/// `LAB_CRASH_KEEP=1` keeps each campaign's record, ledger and controller logs.
#[test]
#[ignore = "long: LAB_CRASH_ROUNDS=10 cargo test --release -p controller --test crash long_crash_rounds -- --ignored --nocapture"]
fn long_crash_rounds_run_with_ignored() {
    let rounds = std::env::var("LAB_CRASH_ROUNDS").map_or(10, |r| r.parse().expect("LAB_CRASH_ROUNDS is a number"));
    // Enough experiments that the campaign is still running at the last kill (each kill costs the experiments in
    // flight, and a round lasts up to 2.8 s), up to the 48 vials of the demo rack.
    let seeds: Vec<u64> = std::env::var("LAB_CRASH_SEEDS").map_or_else(
        |_| (100..105).collect(),
        |s| s.split(',').map(|x| x.trim().parse().expect("LAB_CRASH_SEEDS is a list of numbers")).collect(),
    );
    let mut total = (0, 0, 0, 0, 0, 0);
    for &seed in &seeds {
        let round = crash_rounds(rounds, (rounds * 4).clamp(10, 48), seed);
        total.0 += round.kills;
        total.1 += round.in_doubt;
        total.2 += round.failed;
        total.3 += round.journal_rows;
        total.4 += round.audit.dispenses;
        total.5 += round.audit.placements;
    }
    println!(
        "{} campaigns: {} kills, {} steps in doubt settled, {} experiments failed, {} journal rows intact, \
         {} dispenses and {} placements on the bench each matched to the record",
        seeds.len(),
        total.0,
        total.1,
        total.2,
        total.3,
        total.4,
        total.5
    );
}

/// One step as the record has it, with what [`audit`] needs.
#[derive(Debug)]
struct StepRow {
    id: i64,
    vessel: usize,
    name: String,
    op: String,
    instrument: Option<String>,
    status: String,
    action: serde_json::Value,
    /// Every task it was sent, in order, from the journal: a transfer carried on after a kill is sent as a
    /// delivery of the vessel the gripper holds, so its row's task no longer says where the vessel was picked.
    tasks: Vec<Task>,
    /// Whether its intent (`running`) was recorded: only such a step may have acted.
    dispatched: bool,
}

fn step_rows(conn: &Connection) -> Vec<StepRow> {
    let mut sent: HashMap<i64, Vec<Task>> = HashMap::new();
    let mut bodies = conn.prepare("SELECT body FROM journal WHERE kind = 'StepStatus' ORDER BY id").unwrap();
    for body in bodies.query_map([], |r| r.get::<_, String>(0)).unwrap() {
        let body: serde_json::Value = serde_json::from_str(&body.unwrap()).expect("a journal body is JSON");
        if let (Some(step), Some(task)) = (body["step"].as_i64(), body["task"].as_str()) {
            sent.entry(step).or_default().push(serde_json::from_str(task).expect("a sent task is a Task"));
        }
    }
    let mut stmt = conn
        .prepare(
            "SELECT s.id, e.vessel, s.step, s.op, s.instrument, s.status, s.action,
             EXISTS (SELECT 1 FROM step_events v WHERE v.step_id = s.id AND v.status = 'running')
             FROM steps s JOIN experiments e ON e.id = s.experiment_id ORDER BY s.id",
        )
        .unwrap();
    stmt.query_map([], |r| {
        let action: String = r.get(6)?;
        let id = r.get(0)?;
        Ok(StepRow {
            id,
            tasks: sent.get(&id).cloned().unwrap_or_default(),
            vessel: r.get::<_, i64>(1)? as usize,
            name: r.get(2)?,
            op: r.get(3)?,
            instrument: r.get(4)?,
            status: r.get(5)?,
            action: serde_json::from_str(&action).expect("a step's action is JSON"),
            dispatched: r.get(7)?,
        })
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// What [`audit`] found on the bench, each matched to the record.
#[derive(Debug, Default)]
struct Audit {
    dispenses: usize,
    placements: usize,
    heats: usize,
    stirs: usize,
    measurements: usize,
    removals: usize,
    /// The vessel the gripper held when the ledger ended, if any.
    held: Option<usize>,
}

/// Compares the simulators' ledger with the record in both directions, failing the test on any difference:
///
/// - every dispense, pick, placement, heat, stir and measurement on the bench was asked for by a step of the
///   vessel's own experiment, on that instrument, whose intent (`running`) is in the record; a placement by a
///   transfer from that place to that place;
/// - nothing was repeated: one dispense step per vessel and pump in the record, and the bench never poured more than
///   it asked; a transfer moved its vessel once, a heat heated once, at the temperature it asked for;
/// - nothing went astray: no spill, no liquid drawn back, no grip on nothing, no vessel dropped or knocked over;
/// - every step the record calls done happened on the bench, once: its dispense whole, its placement, its heat,
///   its measurement.
///
/// Steps that may have acted without a recorded outcome (in doubt, then failed) may show part of their action on
/// the bench, or none of it, but never more than all of it.
fn audit(conn: &Connection, ledger: &LedgerFile) -> Audit {
    let steps = step_rows(conn);
    let mut out = Audit::default();
    // Where each vessel moved to, replayed from the ledger (a vessel not moved stands in its own rack slot), and
    // which are out of play (taken off the deck by a person).
    let mut at: HashMap<usize, Place> = HashMap::new();
    let mut gone: BTreeSet<usize> = BTreeSet::new();
    let standing_at = |at: &HashMap<usize, Place>, gone: &BTreeSet<usize>, position: &str| {
        at.iter().find(|(v, p)| !gone.contains(v) && matches!(p, Place::Position(q) if q == position)).map(|(v, _)| *v)
    };
    let mut set_point: BTreeMap<String, f64> = BTreeMap::new();
    // What the bench did for each step, by step id.
    let mut poured: HashMap<i64, (usize, f64)> = HashMap::new();
    let mut moved: HashMap<i64, usize> = HashMap::new();
    let mut heated: HashMap<i64, usize> = HashMap::new();
    let mut stirred: HashMap<i64, usize> = HashMap::new();
    let mut measured: HashMap<i64, usize> = HashMap::new();
    // The one step of `vessel`'s experiment that ran `op` on `instrument`.
    let the_step = |what: &str, vessel: usize, instrument: &str, op: &str| -> &StepRow {
        let found: Vec<&StepRow> = steps
            .iter()
            .filter(|s| s.dispatched && s.vessel == vessel && s.op == op && s.instrument.as_deref() == Some(instrument))
            .collect();
        match found[..] {
            [one] => one,
            [] => panic!("{what}: no `{op}` step of vessel {vessel}'s experiment ran on {instrument} in the record"),
            _ => panic!(
                "{what}: the record has {} `{op}` steps of vessel {vessel} on {instrument}: {found:#?}",
                found.len()
            ),
        }
    };
    for e in &ledger.ledger {
        let what = format!("the bench at lab {:.1} s: {} ({})", e.at, e.event, e.instrument);
        match &e.event {
            Event::Dispensed { vessel, volume, .. } => {
                let step = the_step(&what, *vessel, &e.instrument, "Dispense");
                let p = poured.entry(step.id).or_default();
                p.0 += 1;
                p.1 += volume;
                out.dispenses += 1;
            }
            Event::Picked { vessel, from } => {
                assert_eq!(out.held, None, "{what}: the gripper already held a vessel");
                assert!(
                    steps.iter().any(|s| s.dispatched
                        && s.vessel == *vessel
                        && s.tasks.iter().any(|t| matches!(t, Task::Transfer { from: f, .. } if f == from))),
                    "{what}: no transfer of vessel {vessel} from {from} ran in the record"
                );
                out.held = Some(*vessel);
            }
            Event::Placed { vessel, from, to } => {
                // Two transfers of a vessel between the same places (an `unload` that failed, the `return_vessel`
                // that replaced it) cannot be told apart on the bench: a move goes to one the record calls done
                // first, as that one must have moved the vessel.
                let candidates = steps.iter().filter(|s| {
                    s.dispatched
                        && s.vessel == *vessel
                        && s.instrument.as_deref() == Some(e.instrument.as_str())
                        && s.tasks
                            .iter()
                            .any(|t| matches!(t, Task::Transfer { from: f, to: t } if f == from && t == to))
                        && !moved.contains_key(&s.id)
                });
                let step = candidates.min_by_key(|s| s.status != "succeeded").unwrap_or_else(|| {
                    panic!("{what}: no transfer of vessel {vessel} from {from} to {to} that had not already moved it")
                });
                moved.insert(step.id, 1);
                at.insert(*vessel, to.clone());
                out.held = None;
                out.placements += 1;
            }
            Event::Removed { vessel, .. } => {
                gone.insert(*vessel);
                out.removals += 1;
            }
            Event::HeaterSetPoint { position, set_point: t } => {
                set_point.insert(position.clone(), *t);
            }
            Event::Heater { position, on: true } => {
                let vessel = standing_at(&at, &gone, position)
                    .unwrap_or_else(|| panic!("{what}: a hotplate heated with no vessel on it"));
                let step = the_step(&what, vessel, &e.instrument, "Heat");
                let asked = step.action["temperature"].as_f64().expect("a heat's temperature");
                let set = set_point.get(position).copied().unwrap_or(f64::NAN);
                assert!(
                    (set - asked).abs() <= 0.05,
                    "{what}: heating to {set} degC; step {} asked {asked} degC",
                    step.id
                );
                let n = heated.entry(step.id).or_default();
                *n += 1;
                assert_eq!(*n, 1, "{what}: step {} (`{}`) heated vessel {vessel} again", step.id, step.name);
                out.heats += 1;
            }
            Event::Motor { position, on: true } => {
                let vessel = standing_at(&at, &gone, position)
                    .unwrap_or_else(|| panic!("{what}: a hotplate stirred with no vessel on it"));
                let step = the_step(&what, vessel, &e.instrument, "Heat");
                assert!(!step.action["stir"].is_null(), "{what}: step {} asked for no stirring", step.id);
                let n = stirred.entry(step.id).or_default();
                *n += 1;
                assert_eq!(*n, 1, "{what}: step {} (`{}`) stirred vessel {vessel} again", step.id, step.name);
                out.stirs += 1;
            }
            Event::Measured { vessel: Some(vessel), .. } => {
                let step = the_step(&what, *vessel, &e.instrument, "Measure");
                *measured.entry(step.id).or_default() += 1;
                out.measurements += 1;
            }
            // Reading the empty holder moves and pours nothing (the spectrometer reads it when it starts).
            Event::Measured { vessel: None, .. } => {}
            // Switching off, a speed set point and a watchdog that switched a plate off after a kill change no vessel.
            Event::Heater { on: false, .. }
            | Event::Motor { on: false, .. }
            | Event::SpeedSetPoint { .. }
            | Event::WatchdogTripped { .. } => {}
            Event::Spilled { .. }
            | Event::Withdrew { .. }
            | Event::GrippedNothing { .. }
            | Event::Dropped { .. }
            | Event::Collided { .. }
            | Event::Weighed { .. }
            | Event::ValveMoved { .. }
            | Event::Sparged { .. }
            | Event::Drew { .. }
            | Event::DryDraw { .. }
            | Event::Returned { .. }
            | Event::Drained { .. }
            | Event::Refilled { .. } => panic!("{what}: this must never happen on this bench"),
        }
    }
    // The other way: every step the record calls done happened on the bench, once, whole; one that may have acted
    // did at most what it asked.
    for s in &steps {
        let done = s.status == "succeeded";
        match s.op.as_str() {
            "Dispense" => {
                let asked = s.action["volume"].as_f64().expect("a dispense's volume");
                let (n, total) = poured.get(&s.id).copied().unwrap_or_default();
                if done {
                    assert!(
                        n == 1 && (total - asked).abs() < 1.0,
                        "step {} dispensed {asked} uL into vessel {} by the record; the bench poured {total} uL in {n} \
                         strokes",
                        s.id,
                        s.vessel
                    );
                } else {
                    assert!(
                        total <= asked + 1.0,
                        "step {} ({}) asked {asked} uL; the bench poured {total} uL",
                        s.id,
                        s.status
                    );
                }
            }
            "Transfer" if done => {
                assert!(
                    moved.contains_key(&s.id),
                    "step {} (`{}`) moved vessel {} by the record, not on the bench",
                    s.id,
                    s.name,
                    s.vessel
                );
            }
            "Heat" if done => {
                assert_eq!(heated.get(&s.id), Some(&1), "step {} heated vessel {} by the record", s.id, s.vessel);
                if !s.action["stir"].is_null() {
                    assert_eq!(stirred.get(&s.id), Some(&1), "step {} stirred vessel {} by the record", s.id, s.vessel);
                }
            }
            "Measure" if done => {
                assert!(measured.contains_key(&s.id), "step {} measured vessel {} by the record", s.id, s.vessel);
            }
            _ => {}
        }
    }
    out
}

/// Polls `query` (one integer or NULL) on the record until it gives a value, for at most `bound`.
fn wait_for(db: &Path, query: &str, bound: Duration) -> Option<i64> {
    let t0 = Instant::now();
    while t0.elapsed() < bound {
        if let Ok(conn) = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            && let Ok(Some(v)) = conn.query_row(query, [], |r| r.get::<_, Option<i64>>(0))
        {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

/// An eight-experiment demo campaign whose instrument (the lab file's text `instrument`, ending at its `port` line)
/// answers every command after `latency`, so its steps last long enough to be caught; its controller is killed as
/// soon as `running` (a query for one step id) finds a step in the act. Returns the bench and that step.
fn killed_during(instrument: &str, latency: &str, running: &str) -> (Bench, i64) {
    let bench = Bench::start_with(8, |lab| {
        assert!(lab.contains(instrument), "the demo lab changed at {instrument:?}; update this test");
        lab.replace(instrument, &format!("{instrument}\n            faults: (latency: Fixed({latency:?})),"))
    });
    let mut first = bench.controller(true);
    let step = wait_for(&bench.db(), running, Duration::from_secs(60)).expect("the step to interrupt started");
    first.kill();
    (bench, step)
}

/// What `lab status` says about the bench's record.
fn lab_status(bench: &Bench) -> String {
    String::from_utf8_lossy(&bench.lab(&["status", "--db", "lab.db"]).stdout).into_owned()
}

/// What the technician does while a resumed campaign runs with `--unknown wait`, until it ends: every step the
/// controller holds for a person is settled with `lab confirm ID --failed`, and, with `clear`, every deck place a
/// warning says is blocked by a lost vessel is emptied by hand on the simulated deck and then cleared with `lab clear
/// PLACE`. Returns the steps confirmed and the places cleared.
fn attend(
    bench: &Bench,
    resumed: &mut Process,
    clear: bool,
) -> (std::collections::BTreeSet<i64>, std::collections::BTreeSet<String>) {
    let db = bench.db();
    let mut confirmed = std::collections::BTreeSet::new();
    let mut cleared = std::collections::BTreeSet::new();
    // The deck's places, from the lab file's `positions` (lines like `"dispense": (x: …`).
    let lab = std::fs::read_to_string(bench.dir.path().join("base.lab.ron")).unwrap();
    let positions: Vec<&str> =
        lab.lines().filter(|l| l.contains("\": (x:")).filter_map(|l| l.trim().split('"').nth(1)).collect();
    let operator = |args: &[&str]| {
        let out = output(
            Command::new(LAB)
                .args(args)
                .args(["--db", "lab.db", "--by", "A. Technician", "--reason", "vial checked: half dispensed"])
                .current_dir(bench.dir.path()),
        );
        assert!(out.status.success(), "lab {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let t0 = Instant::now();
    while resumed.running() {
        if t0.elapsed() > FINISH_BOUND {
            let status = lab_status(bench);
            let log = std::fs::read_to_string(bench.dir.path().join("controllers.log")).unwrap_or_default();
            panic!("the resumed campaign did not finish:\n{status}\ncontrollers (with LAB_CRASH_KEEP=1):\n{log}");
        }
        let read = |sql: &str| -> Vec<String> {
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .and_then(|c| c.prepare(sql)?.query_map([], |r| r.get(0))?.collect::<Result<Vec<String>, _>>())
                .unwrap_or_default()
        };
        for id in read("SELECT CAST(id AS TEXT) FROM steps WHERE status = 'unknown'") {
            if confirmed.insert(id.parse::<i64>().unwrap()) {
                operator(&["confirm", &id, "--failed"]);
            }
        }
        if clear {
            for message in read("SELECT message FROM events WHERE message LIKE '%`lab clear PLACE`%'") {
                let before = message.split("`lab clear PLACE`").next().unwrap_or_default();
                // The quoted names that are deck places (a message also quotes step names).
                for place in before.split('`').skip(1).step_by(2).filter(|p| positions.iter().any(|q| q == p)) {
                    if cleared.insert(place.to_owned()) {
                        // `lab status` names the place for the person, who looks, takes the vial away, and only then
                        // says the place is clear.
                        let status = lab_status(bench);
                        assert!(
                            status.contains("BLOCKED places") && status.contains(&format!("\n  {place} ")),
                            "`lab status` lists `{place}` as blocked:\n{status}"
                        );
                        bench.remove(place);
                        std::thread::sleep(Duration::from_millis(100));
                        operator(&["clear", place]);
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (confirmed, cleared)
}

/// The technician's path through a dispense left in doubt: the controller dies while pump B dispenses, `lab resume
/// --unknown wait` reconciles the pump and holds the step for a person, `lab confirm --failed` (written to the
/// record from another process) settles it, and the campaign finishes its budget with the step failed, the reason
/// recorded, the request marked handled and the journal intact. Pump B answers slowly (150 ms a reply), so a
/// dispense lasts long enough to be caught in the act.
#[test]
fn an_operator_settles_a_dispense_left_in_doubt() {
    let (bench, step) = killed_during(
        "reservoir: \"B\"),\n            port: Simulated,",
        "150 ms",
        "SELECT min(id) FROM steps WHERE op = 'Dispense' AND instrument = 'pump_b' AND status = 'running'",
    );
    let db = bench.db();

    // Without reading the instruments back, so the step stays in doubt for a person (reading back would settle it).
    let mut resumed = bench.controller_with(false, &["--unknown", "wait", "--read-back", "off"]);
    let unknown = wait_for(
        &db,
        &format!("SELECT id FROM steps WHERE id = {step} AND status = 'unknown'"),
        Duration::from_secs(60),
    );
    if unknown != Some(step) {
        let conn = Connection::open(&db).unwrap();
        let events: Vec<String> = conn
            .prepare("SELECT status || ' ' || coalesce(detail, '') FROM step_events WHERE step_id = ?1 ORDER BY id")
            .unwrap()
            .query_map([step], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let log = std::fs::read_to_string(bench.dir.path().join("controllers.log")).unwrap_or_default();
        panic!("step {step} did not wait for a person: {events:#?}\ncontrollers (with LAB_CRASH_KEEP=1):\n{log}");
    }
    // The technician settles every step the controller holds for a person (the kill may have caught pump A's
    // dispense into the same vial too), as `lab status` lists them, until the campaign ends.
    // The kill may also have caught the gantry carrying another vial: its places are emptied and cleared too.
    let (confirmed, _) = attend(&bench, &mut resumed, true);
    assert!(confirmed.contains(&step), "{confirmed:?}");
    let (dir, ledger) = bench.stop();

    let report = controller::record::verify::verify(&db).unwrap();
    assert!(report.is_intact(), "{:#?}", report.problems);
    let conn = Connection::open(&db).unwrap();
    let (status, error, experiment): (String, String, String) = conn
        .query_row(
            "SELECT s.status, s.error, e.status FROM steps s JOIN experiments e ON e.id = s.experiment_id WHERE s.id = ?1",
            [step],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((status.as_str(), experiment.as_str()), ("failed", "failed"));
    assert!(error.contains("confirmed failed by A. Technician (vial checked: half dispensed)"), "{error}");
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    let settled = confirmed.len() as i64;
    assert_eq!(
        count("SELECT count(*) FROM operator_requests WHERE action = 'confirm' AND handled_at IS NOT NULL"),
        settled,
        "every request is marked handled"
    );
    assert_eq!(
        count("SELECT count(*) FROM steps WHERE status = 'failed' AND error LIKE 'confirmed failed by A. Technician%'"),
        settled,
        "every confirmed step failed, with who said so"
    );
    assert_eq!(
        count("SELECT count(*) FROM journal WHERE kind = 'RequestHandled' AND body LIKE '%A. Technician%'"),
        settled,
        "the journal keeps who asked and why"
    );
    let (campaign, experiments): (String, i64) = conn
        .query_row("SELECT status, (SELECT count(*) FROM experiments) FROM campaigns", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((campaign.as_str(), experiments), ("finished", 8));
    // The dispense in doubt was never repeated, and everything else on the bench matches the record.
    let audit = audit(&conn, &ledger);
    assert_eq!(audit.held, None, "a vessel was left in the gripper");
    let dir = keep_if_asked(dir, "the dispense in doubt");
    drop(dir);
}

/// The technician's path through a vial lost in transit: the controller dies while the gantry carries a vial from the
/// dispense station to a hotplate, so the vial may be at either. `lab resume --unknown wait` holds the transfer for a
/// person; confirmed failed without saying where the vial is, its experiment ends with both places blocked, and every
/// other experiment, which all need the dispense station, waits instead of failing. Once `lab clear` frees the places
/// the campaign goes on, uses them again, and finishes its budget. The gantry answers slowly (40 ms a reply), so a
/// transfer can be caught in the act.
#[test]
fn an_operator_clears_the_places_of_a_vial_lost_in_transit() {
    let (bench, step) = killed_during(
        "grip: 90, release: 0),\n            port: Simulated,",
        "40 ms",
        "SELECT min(id) FROM steps WHERE step = 'to_hotplate' AND status = 'running'",
    );
    let db = bench.db();

    // Without reading the instruments back, so the step stays in doubt for a person (reading back would settle it).
    let mut resumed = bench.controller_with(false, &["--unknown", "wait", "--read-back", "off"]);
    let (confirmed, cleared) = attend(&bench, &mut resumed, true);
    let status = lab_status(&bench);
    assert!(
        !status.contains("BLOCKED places") && !status.contains("places left blocked"),
        "every blocked place was cleared:\n{status}"
    );
    let (dir, ledger) = bench.stop();

    assert!(confirmed.contains(&step), "the transfer in doubt waited for a person: {confirmed:?}");
    assert!(cleared.contains("dispense"), "the dispense station was blocked and cleared: {cleared:?}");
    let report = controller::record::verify::verify(&db).unwrap();
    assert!(report.is_intact(), "{:#?}", report.problems);
    let conn = Connection::open(&db).unwrap();
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(
        count("SELECT count(*) FROM journal WHERE kind = 'RequestHandled' AND body LIKE '%cleared by A. Technician%'"),
        cleared.len() as i64,
        "each clear was carried out and journalled"
    );
    // The places were used again after they were cleared: a vial was carried to the dispense station later.
    let cleared_at = count(
        "SELECT CAST(max(at) AS INTEGER) FROM journal WHERE kind = 'RequestHandled' AND body LIKE '%`dispense` cleared%'",
    );
    assert!(
        count(&format!(
            "SELECT count(*) FROM steps WHERE status = 'succeeded' AND task LIKE '%\"to\":{{\"Position\":\"dispense\"}}%'
             AND started_at >= {cleared_at}"
        )) > 0,
        "a vial went to the dispense station after it was cleared"
    );
    // Only experiments a person settled as failed failed: the rest waited for the places instead of failing.
    let failed = count("SELECT count(*) FROM experiments WHERE status = 'failed'");
    assert!(failed as usize <= confirmed.len(), "{failed} failed, {} settled by a person", confirmed.len());
    assert_eq!(
        count("SELECT count(*) FROM experiments WHERE status IN ('succeeded', 'failed')"),
        8,
        "the campaign finished its budget"
    );
    // Nothing was dispensed twice into one vial, and everything else on the bench matches the record; the vial the
    // technician took away was the one lost in transit.
    let audit = audit(&conn, &ledger);
    assert_eq!(audit.held, None, "a vessel was left in the gripper");
    assert!(audit.removals >= 1, "{audit:?}");
    let dir = keep_if_asked(dir, "the vial lost in transit");
    drop(dir);
}

/// A controller killed while the spectrometer measures leaves the vial in its holder. The resumed one must not take
/// its reference spectrum through that vial (every absorbance after it would be wrong, unseen): it reuses the
/// reference its predecessor took with the holder empty, says so in the record, measures the vial again (a reading
/// is safe to repeat), and the campaign loses nothing. On the bench, the holder was read empty exactly once.
/// The spectrometer answers slowly (150 ms a reply), so a measurement can be caught in the act.
#[test]
fn a_resume_with_a_vial_in_the_spectrometer_takes_no_reference_through_it() {
    let (bench, step) = killed_during(
        "calibration: [339.2, 0.2737, -1.2e-5, 0]),\n            port: Simulated,",
        "150 ms",
        "SELECT min(id) FROM steps WHERE op = 'Measure' AND status = 'running'",
    );
    let db = bench.db();
    let ended = bench.controller(false).wait_for(FINISH_BOUND);
    assert!(ended.is_some(), "the resumed campaign did not finish:\n{}", lab_status(&bench));
    let (dir, ledger) = bench.stop();
    let dir = keep_if_asked(dir, "the vial in the spectrometer");
    let report = controller::record::verify::verify(&db).unwrap();
    assert!(report.is_intact(), "{:#?}", report.problems);
    let conn = Connection::open(&db).unwrap();
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    // Heats caught by the kill may be lost to their plates' watchdogs while the slow spectrometer starts (a second
    // of wall time is a quarter of an hour of lab time here); the measurement's experiment is not.
    let (status, error): (String, Option<String>) = conn
        .query_row(
            "SELECT e.status, e.error FROM experiments e JOIN steps s ON s.experiment_id = e.id WHERE s.id = ?1",
            [step],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(status, "succeeded", "measuring step {step} again: {error:?}");
    assert_eq!(count("SELECT count(*) FROM steps WHERE op = 'Measure' AND status NOT IN ('succeeded', 'skipped')"), 0);
    let empty_reads = ledger.ledger.iter().filter(|e| matches!(e.event, Event::Measured { vessel: None, .. })).count();
    assert_eq!(empty_reads, 1, "the holder was read empty once, for the first controller's reference");
    // Each vial was read once, and the one in the holder at the kill twice (the reading cut short, and its repeat):
    // a reference taken through it would be a third.
    let interrupted: i64 = conn
        .query_row(
            "SELECT e.vessel FROM experiments e JOIN steps s ON s.experiment_id = e.id WHERE s.id = ?1",
            [step],
            |r| r.get(0),
        )
        .unwrap();
    let mut reads: BTreeMap<usize, usize> = BTreeMap::new();
    for e in &ledger.ledger {
        if let Event::Measured { vessel: Some(v), .. } = e.event {
            *reads.entry(v).or_default() += 1;
        }
    }
    for (v, n) in &reads {
        let most = if *v as i64 == interrupted { 2 } else { 1 };
        assert!(*n <= most, "vessel {v} was read {n} times in the spectrometer: {reads:?}");
    }
    // One reference in the record (the spectrometer's `S` outside any step): the first controller's.
    assert_eq!(
        count("SELECT count(*) FROM commands WHERE instrument = 'uvvis' AND step_id IS NULL AND sent = X'53'"),
        1,
        "the resumed controller took no reference of its own"
    );
    assert_eq!(
        count("SELECT count(*) FROM events WHERE message LIKE '%no reference spectrum is taken through it%'"),
        1,
        "the record says the resumed controller reused the reference"
    );
    audit(&conn, &ledger);
    drop(dir);
}

/// A gantry that stops answering for good in the middle of a campaign (its cable pulled and not put back): nothing can
/// be carried any more, so no experiment starts, every running one ends, failed with its reason, including those whose
/// vials wait on the hotplates to be carried back; the run stops instead of waiting for a carry that can never
/// happen, leaving the campaign for `lab resume` after the repair, and `lab status` names the places where vials were
/// left.
#[test]
fn a_campaign_whose_gantry_goes_silent_ends_and_names_the_vials_left_on_the_deck() {
    let bench = Bench::start(8);
    let db = bench.db();
    let mut controller = bench.controller(true);
    wait_for(&db, "SELECT min(id) FROM steps WHERE step = 'react' AND status = 'running'", Duration::from_secs(60))
        .expect("a vial is heating on a hotplate");
    bench.hand("mute gantry");
    if controller.wait_for(FINISH_BOUND).is_none() {
        panic!("the campaign did not end after its gantry went silent:\n{}", lab_status(&bench));
    }
    let status = lab_status(&bench);
    let (dir, ledger) = bench.stop();
    let report = controller::record::verify::verify(&db).unwrap();
    assert!(report.is_intact(), "{:#?}", report.problems);
    let conn = Connection::open(&db).unwrap();
    let running: i64 =
        conn.query_row("SELECT count(*) FROM experiments WHERE status = 'running'", [], |r| r.get(0)).unwrap();
    assert_eq!(running, 0, "every experiment ended:\n{status}");
    assert!(status.contains("BLOCKED places"), "`lab status` names the vials left on the deck:\n{status}");
    assert!(status.contains("the controller stopped without finishing the campaign"), "{status}");
    let (campaign, started): (String, i64) = conn
        .query_row("SELECT status, (SELECT count(*) FROM experiments) FROM campaigns", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(campaign, "running", "the campaign is left for `lab resume`:\n{status}");
    assert!(started < 8, "no experiment started once nothing could carry a vial:\n{status}");
    // A muted gantry still moves: only its answers are lost. So the bench may hold moves that the record calls
    // failed, and the gripper may still hold the vial it had when the answers stopped; everything else matches.
    audit(&conn, &ledger);
    let dir = keep_if_asked(dir, "the silent gantry");
    drop(dir);
}

/// `lab verify` as a person runs it: its exit status and what it printed.
fn lab_verify(bench: &Bench, public_key: &str) -> (bool, String) {
    let out = bench.lab(&["verify", "--db", "lab.db", "--public-key", public_key]);
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A signed campaign killed after its first hourly checkpoint: the rows after that checkpoint are named as unproven;
/// resumed without the key, it says so in the record and the rows stay unproven; resumed with the key to its end,
/// the whole record is proven by the lab's public key.
#[test]
fn a_signed_campaign_killed_and_resumed_is_proven_to_its_end_only_when_resumed_with_its_key() {
    let bench = Bench::start(8);
    let db = bench.db();
    let made = bench.lab(&["key", "new", "keys/lab.key"]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let signed = "SELECT max(journal_id) FROM checkpoints WHERE signature IS NOT NULL";

    let mut first = bench.controller_with(true, &["--sign-with", "keys/lab.key"]);
    let checkpointed = wait_for(&db, signed, Duration::from_secs(120)).expect("an hourly signed checkpoint");
    wait_for(
        &db,
        &format!("SELECT max(id) FROM journal HAVING max(id) > {}", checkpointed + 20),
        Duration::from_secs(60),
    )
    .expect("rows after the checkpoint");
    first.kill();
    let (ok, said) = lab_verify(&bench, "keys/lab.key.pub");
    assert!(!ok && said.contains("after the last checkpoint signed by the key given"), "{said}");

    // Resumed without the key: the record says what that means, and what it writes is not signed.
    let mut unsigned = bench.controller(false);
    wait_for(&db, "SELECT max(id) FROM events WHERE message LIKE '%resumed without a key%'", Duration::from_secs(60))
        .expect("the resumed campaign warns that it no longer signs");
    unsigned.kill();
    let (ok, said) = lab_verify(&bench, "keys/lab.key.pub");
    assert!(!ok, "{said}");

    // Resumed with the key to the end: its final checkpoint is signed, and proves everything before it.
    let mut last = bench.controller_with(false, &["--sign-with", "keys/lab.key"]);
    last.wait_within(FINISH_BOUND);
    let (ok, said) = lab_verify(&bench, "keys/lab.key.pub");
    assert!(ok && said.contains("signed by the key given up to the last journal row"), "{said}");
    let (dir, ledger) = bench.stop();
    let conn = Connection::open(&db).unwrap();
    let audit = audit(&conn, &ledger);
    assert_eq!(audit.held, None, "a vessel was left in the gripper");
    let dir = keep_if_asked(dir, "the signed campaign");
    drop(dir);
}

/// The catalyst demo killed while its valve-fed pump dispenses, with other experiments started and not yet served:
/// the resumed campaign reserves again what the experiments it carries on still need (their reservations died with
/// the controller), keeps the dispense in doubt charged in full, and finishes its budget with no bottle drawn dry,
/// every vessel holding only its own catalyst (the line primed again, as what it holds is not known after a
/// resume), and the stock counted never more than what the bench's bottles hold.
#[test]
fn a_resumed_catalyst_campaign_reserves_again_for_the_experiments_it_carries_on() {
    // pump_c answers slowly, so a dispense lasts long enough to be caught.
    let pump_c =
        "driver: CavroXCalibur(address: 2, syringe: \"250 uL\", top_speed: 400),\n            port: Simulated,";
    let bench = Bench::start_demo(&CATALYSTS, 8, |lab| {
        assert!(lab.contains(pump_c), "the catalyst lab changed at pump_c; update this test");
        lab.replace(pump_c, &format!("{pump_c}\n            faults: (latency: Fixed(\"60 ms\")),"))
    });
    let mut first = bench.controller(true);
    let running = "SELECT s.id FROM steps s WHERE s.instrument = 'pump_c' AND s.status = 'running' \
                   AND (SELECT count(*) FROM experiments WHERE status = 'running') >= 3";
    let step = wait_for(&bench.db(), running, Duration::from_secs(60)).expect("a catalyst dispense started");
    first.kill();
    let last = bench.controller(false).wait_for(FINISH_BOUND);
    assert!(last.is_some(), "the resumed campaign did not finish within {FINISH_BOUND:?}");
    let db = bench.db();
    let (dir, ledger) = bench.stop();
    let dir = keep_if_asked(dir, "catalysts");
    let report = controller::record::verify::verify(&db).unwrap();
    assert!(report.is_intact(), "{:#?}", report.problems);
    let conn = Connection::open(&db).unwrap();
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(count("SELECT count(*) FROM experiments"), 8);
    assert!(
        count(
            "SELECT count(*) FROM stock_events WHERE kind = 'reserved' AND note LIKE '%again as the campaign resumed'"
        ) >= 1,
        "the experiments carried on reserved their draws again"
    );
    let charged = format!(
        "SELECT count(*) FROM stock_events WHERE step_id = {step} AND unknown = 1 AND note LIKE '%in doubt when the \
         controller stopped'"
    );
    assert_eq!(count(&charged), 1, "the dispense in doubt stays charged in full");
    // Against the bench: each vessel's catalyst is its experiment's, nothing ran dry, and the bottles hold at least
    // what the controller counts.
    let catalyst: HashMap<usize, String> = conn
        .prepare(
            "SELECT e.vessel, p.value FROM experiments e JOIN parameters p ON p.experiment_id = e.id \
             WHERE p.name = 'catalyst'",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get::<_, i64>(0)? as usize, format!("C{}", r.get::<_, f64>(1)?.round() as i64))))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut bench_drew: BTreeMap<String, f64> = BTreeMap::new();
    for e in &ledger.ledger {
        match &e.event {
            Event::Dispensed { reservoir, vessel, .. } if e.instrument == "pump_c" => {
                assert_eq!(Some(reservoir), catalyst.get(vessel), "vessel {vessel} got {reservoir}");
            }
            Event::DryDraw { source, .. } => panic!("`{source}` ran dry"),
            Event::Drew { source, volume, .. } => *bench_drew.entry(source.clone()).or_default() += volume,
            Event::Returned { source, volume } => *bench_drew.entry(source.clone()).or_default() -= volume,
            _ => {}
        }
    }
    for (bottle, drew) in &bench_drew {
        let counted: f64 = conn
            .query_row(
                "SELECT coalesce(sum(CASE WHEN kind = 'drawn' THEN volume_ul WHEN kind = 'adjusted' AND unknown = 0 \
                 THEN -volume_ul ELSE 0 END), 0) FROM stock_events WHERE bottle = ?1",
                [bottle],
                |r| r.get(0),
            )
            .unwrap();
        assert!(counted + 0.5 >= *drew, "`{bottle}`: the controller counts {counted} uL drawn, the bench drew {drew}");
    }
    drop(dir);
}
