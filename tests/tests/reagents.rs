//! Reagents on the bench, through pseudo-terminals: the catalyst bench (`devices/labs/catalysts.lab.ron`, a pump fed
//! by a selector valve with a catalyst on each port) runs campaigns that choose the catalyst, and each run is checked
//! against the simulators' ledger, not against the record:
//!
//! - every experiment's vessel received its own level's catalyst, from that catalyst's port, and no other (the
//!   bench's line carries the last catalyst into the next draw, so this holds only because the controller primes
//!   the line when the catalyst changes, pushing the old one out through the waste port);
//! - with faults injected at 8 experiments in flight, no dispense ever draws from another experiment's port, and
//!   the stock the controller counts drawn from each bottle equals what the bench drew (it exceeds it only where a
//!   dispense's outcome was unknown and was charged in full);
//! - no bottle is ever drawn dry, and nothing the valve-fed pump pushes back through its input reaches a bottle;
//! - a prime whose turn to waste was never confirmed is emptied through the waste port (the valve confirmed there)
//!   before the pump is initialized, or the pump is left offline: it never reaches the vessel;
//! - a bottle too small for the campaign is warned about before the run, holds the experiments that need it (the
//!   record says what for) while the others run, and `lab restock` releases them.
//!
//! The hundred seeded runs without a dry draw are ignored by default (minutes); RELIABILITY.md gives the command.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use devices::sim::{Event, LedgerFile};
use rusqlite::Connection;
use tests::{CampaignTest, repo_root};

use crate::faults::query;

/// The catalysts the campaign's levels dispense, in the order it lists them.
const ALL: [&str; 6] = ["C1", "C2", "C3", "C4", "C5", "C6"];

/// The catalyst campaign on the catalyst bench, proposed at random (so every level is tried early), with the lab
/// file changed by `edit` (faults, smaller bottles) and the campaign by `vary`.
fn catalysts(budget: usize, in_flight: usize, seed: u64, edit: impl Fn(&str) -> String) -> CampaignTest {
    let root = repo_root();
    let lab_text = edit(&std::fs::read_to_string(root.join("devices/labs/catalysts.lab.ron")).unwrap());
    let scratch = tempfile::tempdir().unwrap();
    let lab: PathBuf = scratch.path().join("catalysts.lab.ron");
    std::fs::write(&lab, lab_text).unwrap();
    let protocol = std::fs::read_to_string(root.join("protocols/library/catalysed.protocol.ron")).unwrap();
    let campaign = std::fs::read_to_string(root.join("experiments/campaigns/catalysts.campaign.ron")).unwrap();
    let campaign = tests::replace_field(&campaign, "budget", &budget.to_string());
    let campaign = tests::replace_field(&campaign, "in_flight", &in_flight.to_string());
    let campaign = tests::replace_field(&campaign, "seed", &seed.to_string());
    let campaign = tests::replace_field(&campaign, "proposer", "Random");
    CampaignTest::on_lab(&lab, &protocol, &campaign)
}

/// Starts the simulators of `t`'s lab here, outside the controller, and points the lab file at their ports, so a
/// test's hands can act on the bench (refill a bottle, change its faults) while the campaign runs; the campaign runs
/// at the lab's own time scale.
fn own_simulators(t: CampaignTest) -> (tokio::runtime::Runtime, devices::sim::SimLab, Arc<CampaignTest>) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let lab_path = t.dir.path().join("test.lab.ron");
    let lab = devices::load_lab(protocols::SourceFile::new(
        lab_path.display().to_string(),
        std::fs::read_to_string(&lab_path).unwrap(),
    ))
    .expect("the lab loads");
    let sims = rt.block_on(devices::sim::start(&lab, devices::Clock::scaled(lab.simulation.time_scale))).unwrap();
    std::fs::write(&lab_path, controller::load::with_simulator_ports(&lab, &sims.ports)).unwrap();
    (rt, sims, Arc::new(t.time_scale(lab.simulation.time_scale)))
}

/// The first message of the record of the campaign `t` runs (on another thread) LIKE `pattern`, waiting for it within
/// a bound; fails the test with `otherwise` if it never comes.
fn said_in_record(t: &CampaignTest, pattern: &str, otherwise: &str) -> String {
    let start = Instant::now();
    loop {
        assert!(start.elapsed() < Duration::from_secs(240), "{otherwise}");
        if t.db.exists()
            && let Ok(conn) = Connection::open_with_flags(&t.db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            && let Ok(found) =
                conn.query_row("SELECT message FROM events WHERE message LIKE ?1 ORDER BY id LIMIT 1", [pattern], |r| {
                    r.get::<_, String>(0)
                })
        {
            return found;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Each experiment's vessel (rack slot) and the catalyst its level dispenses: level `n` is `levels[n - 1]`.
fn catalyst_of_vessel(conn: &Connection, levels: &[&str]) -> BTreeMap<i64, String> {
    let mut stmt = conn
        .prepare(
            "SELECT e.vessel, p.value FROM experiments e JOIN parameters p ON p.experiment_id = e.id \
             WHERE p.name = 'catalyst'",
        )
        .unwrap();
    stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, f64>(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .map(|(vessel, level)| (vessel, levels[level.round() as usize - 1].to_owned()))
        .collect()
}

/// Microlitres the bench drew from each tracked bottle (less what went back).
fn bench_drawn(ledger: &LedgerFile) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for e in &ledger.ledger {
        match &e.event {
            Event::Drew { source, volume, .. } => *out.entry(source.clone()).or_default() += volume,
            Event::Returned { source, volume } => *out.entry(source.clone()).or_default() -= volume,
            _ => {}
        }
    }
    out
}

/// Microlitres the controller counts drawn from each tracked bottle, whether any draw from it had an unknown outcome,
/// and how many dispenses drew from it.
fn controller_drawn(conn: &Connection) -> BTreeMap<String, (f64, bool, usize)> {
    let mut stmt =
        conn.prepare("SELECT bottle, kind, volume_ul, unknown, left_ul FROM stock_events ORDER BY id").unwrap();
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, f64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, Option<f64>>(4)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap);
    let mut out: BTreeMap<String, (f64, bool, usize)> = BTreeMap::new();
    for (bottle, kind, volume, unknown, _) in rows {
        let e = out.entry(bottle).or_default();
        match kind.as_str() {
            "drawn" => {
                e.0 += volume;
                e.2 += 1;
            }
            "adjusted" if unknown == 0 => e.0 -= volume,
            _ => {}
        }
        e.1 |= unknown != 0;
    }
    out
}

/// The checks every catalyst run must pass against the ledger: each vessel got its own catalyst from its own port
/// and nothing else (a failed experiment's vessel included), nothing went back into a bottle, nothing was drawn dry,
/// and the stock counted matches.
fn check_against_ledger(t: &CampaignTest, levels: &[&str]) -> BTreeMap<String, f64> {
    let conn = t.record();
    let expected = catalyst_of_vessel(&conn, levels);
    let ledger = t.ledger();
    let mut per_vessel: BTreeMap<i64, BTreeMap<String, f64>> = BTreeMap::new();
    for e in &ledger.ledger {
        match &e.event {
            Event::Dispensed { reservoir, source, volume, vessel } if e.instrument == "pump_c" => {
                let vessel = *vessel as i64;
                let want = expected.get(&vessel).unwrap_or_else(|| panic!("vessel {vessel} belongs to no experiment"));
                assert_eq!(reservoir, want, "vessel {vessel} received {reservoir} but its experiment chose {want}");
                let port = format!("valve:{}", &want[1..]);
                assert_eq!(source.as_deref(), Some(port.as_str()), "vessel {vessel} was served from the wrong port");
                *per_vessel.entry(vessel).or_default().entry(reservoir.clone()).or_default() += volume;
            }
            Event::DryDraw { source, wanted, got, .. } => panic!("`{source}` ran dry: {got} of {wanted} uL"),
            Event::Drained { port, valve, .. } => assert_eq!((valve.as_str(), *port), ("valve", 10), "only to waste"),
            // What a pump fed by the valve pushes back through its input (a prime, a syringe emptied before it is
            // initialized) goes out through the waste port, never into a bottle, whose catalyst it would spoil.
            Event::Returned { source, volume } if source.starts_with("valve:") => {
                panic!("{volume} uL went back into the bottle `{source}`")
            }
            _ => {}
        }
    }
    // Every prime the record charges went out through the waste port, and nothing else did.
    let primes: f64 = conn
        .query_row(
            "SELECT coalesce(sum(volume_ul), 0) FROM stock_events WHERE note LIKE '%to prime the line%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let drained: f64 = ledger
        .ledger
        .iter()
        .filter_map(|e| match &e.event {
            Event::Drained { volume, .. } => Some(*volume),
            _ => None,
        })
        .sum();
    let unknown: bool =
        conn.query_row("SELECT count(*) > 0 FROM stock_events WHERE unknown = 1", [], |r| r.get(0)).unwrap();
    let says = format!("the record charges {primes} uL of primes, {drained} uL went to waste");
    if unknown {
        assert!(drained <= primes + 1.0, "{says}");
    } else {
        assert!((drained - primes).abs() <= 1.0, "{says}");
    }
    let counted = controller_drawn(&conn);
    let drawn = bench_drawn(&ledger);
    for (bottle, bench) in &drawn {
        let (controller, unknown, draws) = counted.get(bottle).copied().unwrap_or_default();
        // A pump moves whole plunger increments (a 250 uL syringe's are 1/12 uL), so each dispense may draw up to
        // half an increment more or less than asked.
        let slack = 0.05 * draws as f64 + 1e-6;
        let says = format!("`{bottle}`: the controller counts {controller} uL drawn, the bench drew {bench}");
        if unknown {
            assert!(controller + slack >= *bench, "{says}");
        } else {
            assert!((controller - bench).abs() <= slack, "{says}");
        }
    }
    per_vessel.values().flat_map(|m| m.iter()).fold(BTreeMap::new(), |mut acc, (r, v)| {
        *acc.entry(r.clone()).or_default() += v;
        acc
    })
}

#[test]
fn every_level_of_a_campaign_dispenses_its_own_catalyst() {
    let t = catalysts(12, 4, 3, str::to_owned);
    let s = t.run();
    assert_eq!((s.started, s.succeeded), (12, 12), "{s:?}");
    let totals = check_against_ledger(&t, &ALL);
    assert!(totals.len() >= 4, "most levels were tried: {totals:?}");
    let primes: i64 = t
        .record()
        .query_row("SELECT count(*) FROM stock_events WHERE note LIKE '%to prime the line%'", [], |r| r.get(0))
        .unwrap();
    assert!(primes >= 4, "the line was primed whenever the catalyst changed ({primes} primes)");
    // Each vessel got exactly the catalyst volume its experiment asked for, to the syringe's resolution.
    let conn = t.record();
    let asked: Vec<(i64, f64)> = {
        let mut stmt = conn
            .prepare(
                "SELECT e.vessel, p.value FROM experiments e JOIN parameters p ON p.experiment_id = e.id \
                 WHERE p.name = 'volume_cat'",
            )
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
    };
    let ledger = t.ledger();
    for (vessel, volume) in asked {
        let got: f64 = ledger
            .ledger
            .iter()
            .filter_map(|e| match &e.event {
                Event::Dispensed { vessel: v, volume, .. } if e.instrument == "pump_c" && *v as i64 == vessel => {
                    Some(*volume)
                }
                _ => None,
            })
            .sum();
        assert!((got - volume).abs() < 0.5, "vessel {vessel}: asked {volume} uL of catalyst, the bench poured {got}");
    }
    // The record keeps each draw: reagent, bottle, volume and the stock left.
    let draws: Vec<String> = query(
        &conn,
        "SELECT reagent || ' ' || bottle || ' ' || (left_ul IS NOT NULL) FROM stock_events WHERE kind = 'drawn' \
         AND bottle LIKE 'valve:%' ORDER BY id LIMIT 1",
    );
    assert!(draws[0].starts_with('C') && draws[0].contains(" valve:") && draws[0].ends_with(" 1"), "{draws:?}");
}

#[test]
fn a_fault_soak_at_eight_in_flight_never_draws_from_the_wrong_port() {
    let faulty = |text: &str| {
        text.replacen(
            "driver: CavroXCalibur(address: 2, syringe: \"250 uL\", top_speed: 400),\n            port: Simulated,",
            "driver: CavroXCalibur(address: 2, syringe: \"250 uL\", top_speed: 400),\n            port: Simulated,\n            \
             faults: (no_reply: 0.03, busy: 0.05, partial: 0.05),",
            1,
        )
        .replacen(
            "            port: Simulated,\n        ),\n        \"hotplate_1\"",
            "            port: Simulated,\n            faults: (no_reply: 0.05, latency: Uniform(min: \"0 ms\", max: \"10 ms\")),\n        ),\n        \"hotplate_1\"",
            1,
        )
    };
    let t = catalysts(16, 8, 11, faulty);
    assert!(std::fs::read_to_string(t.dir.path().join("test.lab.ron")).unwrap().contains("partial: 0.05"));
    let s = t.run_within(Duration::from_secs(600)).expect("the soak runs");
    assert_eq!(s.started, 16, "{s:?}");
    let faults = t.ledger().faults;
    assert!(faults.iter().any(|f| f.instrument == "pump_c"), "faults were injected on the valve-fed pump");
    check_against_ledger(&t, &ALL);
}

#[test]
fn an_undersized_bottle_is_warned_about_holds_its_experiments_and_restock_releases_them() {
    // C2 holds less than one experiment's worth: 100 uL usable, and every experiment adds 100 uL of its catalyst and
    // may prime the line with 80 uL first.
    let small = |text: &str| {
        text.replace(
            "2: (reagent: \"C2\", volume: \"20 mL\", dead: \"0.5 mL\")",
            "2: (reagent: \"C2\", volume: \"200 uL\", dead: \"100 uL\")",
        )
    };
    let t = catalysts(10, 2, 5, small);
    // Two catalysts, C2 and C3, each chosen about half the time, and 100 uL of catalyst in every experiment.
    let text = std::fs::read_to_string(&t.campaign).unwrap();
    let (start, end) = (text.find("\"catalyst\": Categorical(").unwrap(), text.find("\"volume_cat\": (min").unwrap());
    let text = format!(
        "{}\"catalyst\": Categorical(levels: {{\"x\": \"C2\", \"y\": \"C3\"}}),\n        {}",
        &text[..start],
        &text[end..]
    )
    .replace("\"volume_cat\": (min: 10, max: 100),", "")
    .replace("fixed: {},", "fixed: {\"volume_cat\": 100},");
    std::fs::write(&t.campaign, text).unwrap();
    let inputs = controller::load::load_campaign_inputs(&t.campaign, None).expect("the campaign loads");
    let warning = inputs.warnings.iter().find(|d| d.code == "C0103").map(|d| d.message.clone());
    assert_eq!(
        warning.as_deref(),
        Some(
            "`C2` may run out: 100 uL usable in `valve:2` is 0 experiments' worth at up to 180 uL each (80 uL of it priming the line), and the budget is 10 experiments"
        )
    );
    // `lab plan` gives the same warning before its plan.
    let options = controller::plan::PlanOptions { draws: 1, ..Default::default() };
    let plan =
        controller::plan::plan_file(&t.dir.path().join("test.lab.ron"), &t.campaign, &options).expect("it plans");
    let planned = plan.warnings.iter().find(|d| d.code == "C0103").map(|d| d.message.clone());
    assert_eq!(planned, warning, "lab plan warns as lab check does");
    // The simulators run here, outside the controller, so this test's hands can refill the bottle on the bench as a
    // technician would before telling the controller (`lab sim --hands` does the same from a terminal).
    let (rt, sims, t) = own_simulators(t);
    let runner = Arc::clone(&t);
    let run = std::thread::spawn(move || runner.run_within(Duration::from_secs(300)));
    // Wait (bounded) until the record says an experiment waits for C2, then restock it.
    let waiting = said_in_record(&t, "waiting for restock: `C2`%", "no experiment waited for C2");
    assert!(waiting.contains("the next experiment needs 180 uL"), "{waiting}");
    let started = || -> i64 { t.record().query_row("SELECT count(*) FROM experiments", [], |r| r.get(0)).unwrap() };
    // While C2 waits, the learner is steered to C3 and the instruments keep working: three more experiments start
    // before anyone restocks (bounded), rather than every in-flight place filling with experiments that need C2.
    let at_wait = started();
    let start = Instant::now();
    while started() < at_wait + 3 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no other experiment started while C2 waited ({} since)",
            started() - at_wait
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let held = started();
    assert!(sims.bench().refill("valve:2", 1000.0), "the bench has the bottle");
    controller::run::operator::restock(&t.db, "C2", 1000.0, false, "a technician", "new stock").expect("restock");
    let s = run.join().unwrap().expect("the campaign runs");
    rt.block_on(sims.stop());
    let failed: Vec<String> =
        query(&t.record(), "SELECT step || ': ' || coalesce(error, '') FROM steps WHERE status = 'failed'");
    assert_eq!((s.started, s.succeeded), (10, 10), "{s:?}; failed steps: {failed:?}");
    assert!(held < 10, "the campaign was holding experiments when C2 was restocked");
    let conn = t.record();
    let refills: Vec<String> =
        query(&conn, "SELECT bottle || ' ' || CAST(volume_ul AS INTEGER) FROM stock_events WHERE kind = 'refilled'");
    assert_eq!(refills, vec!["valve:2 1000"]);
    let c2_runs = catalyst_of_vessel(&conn, &["C2", "C3"]).values().filter(|c| *c == "C2").count();
    assert!(c2_runs >= 2, "C2 was chosen again after the restock ({c2_runs} experiments)");
    check_against_ledger(&t, &["C2", "C3"]);
    // A negative restock is refused before anything is written.
    let e = controller::run::operator::restock(&t.db, "C2", -5.0, false, "a technician", "typo").unwrap_err();
    assert!(e.contains("never negative"), "{e}");
}

/// The catalyst campaign on 100 seeds, each checked against its ledger: no bottle is ever drawn dry, and every vessel
/// got its own catalyst. Each bottle holds 1.6 mL above its dead volume, just over the worst case of eight
/// experiments choosing it (100 uL and an 80 uL prime each), so the stock is tight. Minutes: `cargo test -p tests --test integration -- --ignored no_dry_draw_in_a_hundred`.
#[test]
#[ignore = "a hundred campaigns take minutes; run with --ignored"]
fn no_dry_draw_in_a_hundred_seeded_runs() {
    for seed in 0..100 {
        let t = catalysts(8, 4, seed, |text: &str| {
            text.replace("volume: \"20 mL\", dead: \"0.5 mL\"", "volume: \"2.1 mL\", dead: \"0.5 mL\"")
        });
        let s = t.run();
        assert_eq!(s.started, 8, "seed {seed}: {s:?}");
        check_against_ledger(&t, &ALL);
    }
}

/// The defect the fault soak found under load, made to happen in every run: once the campaign runs, the valve loses a
/// quarter of its replies, so some primes are drawn into the syringe and the valve then does not confirm its turn to
/// waste; and the pump is not read back (`--no-read-back`), as when its read-back is lost too, so nothing but the
/// driver's own account says the syringe holds the prime. Restoring the pump must empty it through the waste port,
/// with the valve confirmed there, or leave it offline: never push it into the vessel (initializing with `Z` pushes
/// through the output, and did).
#[test]
fn a_prime_whose_turn_to_waste_is_not_confirmed_never_reaches_the_vessel() {
    // The valve's lost replies fall on different commands from run to run; a run in which no turn to waste was lost
    // tried nothing, so another seed runs (bounded).
    for seed in [11, 12, 13, 14] {
        let (rt, sims, t) = own_simulators(catalysts(16, 4, seed, str::to_owned));
        let runner = Arc::clone(&t);
        let run = std::thread::spawn(move || runner.try_run_with(|o| o.read_back = false));
        // Once the valve has turned for the first dispense (every instrument identified and initialized), it loses
        // replies.
        let start = Instant::now();
        let turned =
            |e: &devices::sim::LedgerEntry| e.instrument == "valve" && matches!(e.event, Event::ValveMoved { .. });
        while !sims.bench().ledger().iter().any(turned) {
            assert!(start.elapsed() < Duration::from_secs(120), "the valve never turned");
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut faults = devices::lab::Faults::none();
        faults.no_reply = 0.25;
        faults.seed = Some(seed);
        assert!(sims.set_faults("valve", Some(faults)));
        let s = run.join().unwrap().expect("the campaign runs");
        rt.block_on(sims.stop());
        assert_eq!(s.started, 16, "{s:?}");
        check_against_ledger(&t, &ALL);
        let conn = t.record();
        let lost: i64 = conn
            .query_row(
                "SELECT count(*) FROM events WHERE instrument = 'pump_c' AND message LIKE '%did not turn to port 10%'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        if lost == 0 {
            continue;
        }
        // Each such pump was emptied through the waste port, with the valve confirmed there, or left offline saying
        // why; the record says which.
        let restored: Vec<String> = query(
            &conn,
            "SELECT message FROM events WHERE instrument = 'pump_c' AND (message LIKE '%emptied through it%' \
             OR message LIKE '%not confirmed at its waste port%')",
        );
        assert!(
            !restored.is_empty(),
            "{lost} turns to waste were lost, and the record says nothing of emptying the pump"
        );
        return;
    }
    panic!("no run lost a turn to waste");
}

/// The catalyst bench with a second dispense station, `dispense_2`, as well equipped as the first: pumps of its own
/// for A and B (own bottles) and a catalyst pump fed by a second valve with the same six catalysts. Every reagent is
/// then reachable by two pumps, one at each station.
fn two_stations(text: &str) -> String {
    let pump = |name: &str, driver: &str| {
        format!(
            "        \"{name}\": (\n            driver: {driver},\n            port: Simulated,\n            position: \"dispense_2\",\n        ),\n"
        )
    };
    let mut second = pump(
        "pump_a2",
        "CavroXCalibur(address: 1, syringe: \"1 mL\", top_speed: 400, reservoir: (reagent: \"A\", volume: \"100 mL\", dead: \"5 mL\"))",
    );
    second += &pump(
        "pump_b2",
        "CavroXCalibur(address: 1, syringe: \"1 mL\", top_speed: 400, reservoir: (reagent: \"B\", volume: \"100 mL\", dead: \"5 mL\"))",
    );
    second += &pump("pump_c2", "CavroXCalibur(address: 2, syringe: \"250 uL\", top_speed: 400)");
    let ports: String = (1..=6)
        .map(|n| format!("                    {n}: (reagent: \"C{n}\", volume: \"20 mL\", dead: \"0.5 mL\"),\n"))
        .collect();
    second += &format!(
        "        \"valve_2\": (\n            driver: ViciValve(\n                positions: 10,\n                feeds: \"pump_c2\",\n                line: \"40 uL\",\n                waste: 10,\n                ports: {{\n{ports}                }},\n            ),\n            port: Simulated,\n        ),\n"
    );
    let text = text.replacen(
        "            \"dispense\": (x: 250, y: 30, z: 10),\n",
        "            \"dispense\": (x: 250, y: 30, z: 10),\n            \"dispense_2\": (x: 250, y: 90, z: 10),\n",
        1,
    );
    assert!(text.contains("dispense_2"), "the deck has a second station");
    let anchor = "        \"hotplate_1\": (\n            driver:";
    assert!(text.contains(anchor), "the lab has hotplate_1");
    text.replacen(anchor, &format!("{second}{anchor}"), 1)
}

/// What the ledger says each vessel received from the pumps: (pump, reagent, bottle, microlitres) in order.
fn dispensed_by_vessel(ledger: &LedgerFile) -> BTreeMap<i64, Vec<(String, String, String, f64)>> {
    let mut out: BTreeMap<i64, Vec<(String, String, String, f64)>> = BTreeMap::new();
    for e in &ledger.ledger {
        match &e.event {
            Event::Dispensed { reservoir, source, volume, vessel } => out.entry(*vessel as i64).or_default().push((
                e.instrument.clone(),
                reservoir.clone(),
                source.clone().unwrap_or_default(),
                *volume,
            )),
            Event::Spilled { reservoir, volume, position } => {
                panic!("{} spilled {volume} uL of {reservoir} at `{position}`: no vessel stood there", e.instrument)
            }
            Event::DryDraw { source, wanted, got, .. } => panic!("`{source}` ran dry: {got} of {wanted} uL"),
            Event::Returned { source, volume } => panic!("{volume} uL went back into the bottle `{source}`"),
            _ => {}
        }
    }
    out
}

/// Two pumps reach every reagent, one at each station, and experiments run at both at once: each dispense runs on a
/// pump standing where its vessel is (nothing spilled), each vessel got A, B and its own catalyst all from pumps of its
/// one station, both stations served, and each bottle's count in the record equals the bench's.
#[test]
fn with_two_pumps_for_each_reagent_every_dispense_uses_the_pump_where_its_vessel_stands() {
    let t = catalysts(12, 4, 21, two_stations);
    let s = t.run();
    assert_eq!((s.started, s.succeeded), (12, 12), "{s:?}");
    let conn = t.record();
    let chose = catalyst_of_vessel(&conn, &ALL);
    let station = |pump: &str| if pump.ends_with('2') { "dispense_2" } else { "dispense" };
    let ledger = t.ledger();
    let mut stations = std::collections::BTreeSet::new();
    for (vessel, got) in dispensed_by_vessel(&ledger) {
        let at: std::collections::BTreeSet<&str> = got.iter().map(|(p, ..)| station(p)).collect();
        assert_eq!(at.len(), 1, "vessel {vessel} was served at more than one station: {got:?}");
        stations.extend(at);
        let total = |r: &str| got.iter().filter(|g| g.1 == r).map(|g| g.3).sum::<f64>();
        assert!((total("A") - 250.0).abs() < 0.5 && (total("B") - 250.0).abs() < 0.5, "vessel {vessel}: {got:?}");
        let want = &chose[&vessel];
        for (pump, reagent, source, _) in got.iter().filter(|g| g.1.starts_with('C')) {
            assert_eq!(reagent, want, "vessel {vessel} received {reagent} but its experiment chose {want}");
            let valve = if pump == "pump_c2" { "valve_2" } else { "valve" };
            assert_eq!(source, &format!("{valve}:{}", &want[1..]), "vessel {vessel} was served from the wrong port");
        }
    }
    assert_eq!(stations.len(), 2, "both stations served experiments: {stations:?}");
    let counted = controller_drawn(&conn);
    for (bottle, bench) in bench_drawn(&ledger) {
        let (controller, _, draws) = counted.get(&bottle).copied().unwrap_or_default();
        let slack = 0.05 * draws as f64 + 1e-6;
        assert!(
            (controller - bench).abs() <= slack,
            "`{bottle}`: the controller counts {controller} uL, the bench drew {bench}"
        );
    }
}

/// An experiment whose vessel was taken to the station whose bottle of A is nearly empty, while its reservation of A
/// stands in the other station's bottle, does not wait in silence: the record (and so `lab status`) says what it waits
/// for and where its reservation is, and a restock of the bottle at its station lets it go on.
#[test]
fn a_dispense_stranded_away_from_its_reservation_says_so_and_a_restock_releases_it() {
    // 100 uL of A at the first station: less than one experiment's 250 uL.
    let small = |text: &str| {
        two_stations(text).replacen(
            "reservoir: (reagent: \"A\", volume: \"100 mL\", dead: \"5 mL\")",
            "reservoir: (reagent: \"A\", volume: \"600 uL\", dead: \"500 uL\")",
            1,
        )
    };
    let (rt, sims, t) = own_simulators(catalysts(6, 4, 5, small));
    let runner = Arc::clone(&t);
    let run = std::thread::spawn(move || runner.run_within(Duration::from_secs(300)));
    let said = said_in_record(
        &t,
        "waiting for `A` where its vessel stands%",
        "no dispense said it waited for A at `dispense`",
    );
    assert!(
        said.contains("at `dispense`, where `pump_a` has 100 uL free")
            && said.contains("its reservation is in `pump_a2` (reached by `pump_a2`)"),
        "{said}"
    );
    assert!(sims.bench().refill("pump_a", 5000.0), "the bench has the bottle");
    controller::run::operator::restock(&t.db, "pump_a", 5000.0, false, "a technician", "new stock").expect("restock");
    let s = run.join().unwrap().expect("the campaign runs");
    rt.block_on(sims.stop());
    assert_eq!((s.started, s.succeeded), (6, 6), "{s:?}");
    let ledger = t.ledger();
    for (vessel, got) in dispensed_by_vessel(&ledger) {
        let a: f64 = got.iter().filter(|g| g.1 == "A").map(|g| g.3).sum();
        assert!((a - 250.0).abs() < 0.5, "vessel {vessel}: {got:?}");
    }
}
