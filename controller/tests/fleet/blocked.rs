//! A workcell that lost track of a vial: killed while its gantry carried one from the dispense station to a
//! hotplate, it comes back with both places blocked (the vial may stand at either). Reading the gantry back would
//! find the vial in its gripper and carry the transfer on, so the workcell comes back with `--read-back off`, as one
//! whose gantry cannot be read back would. Every experiment of the demo
//! protocol starts at the dispense station, so a workcell that failed each experiment it could not take there would
//! claim and fail the fleet's proposals one after another (the long soak's seed 102 did: 39 of 48). It waits instead,
//! holding what it claimed, until a technician has looked, taken the vial away and run `lab clear PLACE`.

use std::time::{Duration, Instant};

use super::harness::{self, Cell, learner, write_campaign};
use super::pg::PgCluster;

/// Reads one column of text from the record, or nothing while it cannot be read.
fn read(db: &std::path::Path, sql: &str) -> Vec<String> {
    rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|c| c.prepare(sql)?.query_map([], |r| r.get(0))?.collect())
        .unwrap_or_default()
}

/// Waits, at most `bound`, until `sql` finds something in the record.
fn wait_for(db: &std::path::Path, sql: &str, bound: Duration) -> Option<String> {
    let t0 = Instant::now();
    while t0.elapsed() < bound {
        if let Some(v) = read(db, sql).into_iter().next() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn a_workcell_waits_for_a_place_a_lost_vial_blocks_instead_of_failing_what_it_claimed() {
    let Some(pg) = PgCluster::start() else { return };
    let url = pg.url();
    assert!(harness::lab(&["fleet", "init"], &url).0);
    let dir = tempfile::tempdir().unwrap();
    let campaign = write_campaign(dir.path(), "lost", 6, 2, "SpaceFilling");
    // The gantry answers slowly (40 ms a reply), so a transfer can be caught in the act.
    let gantry = "grip: 90, release: 0),\n            port: Simulated,";
    let lab = harness::demo_lab();
    assert!(lab.contains(gantry), "the demo lab's gantry changed; update this test");
    let lab = lab.replace(gantry, &format!("{gantry}\n            faults: (latency: Fixed(\"40 ms\")),"));
    let mut cell = Cell::new("wc-a", dir.path(), &lab, pg.port, 1500.0);
    let mut learner = learner(&campaign, &url, "learner", &dir.path().join("learner.log"));
    let via = cell.hub_url(&pg);
    cell.start(&via);
    let db = cell.db();
    wait_for(
        &db,
        "SELECT CAST(id AS TEXT) FROM steps WHERE step = 'to_hotplate' AND status = 'running'",
        Duration::from_secs(120),
    )
    .expect("a vial on its way to a hotplate");
    assert!(cell.kill());
    cell.start_with(&via, &["--read-back", "off"]);

    // Back, it blocks the places, and the next experiment waits at the dispense station rather than failing.
    let waits =
        "SELECT message FROM events WHERE message LIKE 'experiment #% waits: `load` can take its vessel only to%'";
    let waiting = wait_for(&db, waits, Duration::from_secs(120));
    let failed = read(&db, "SELECT coalesce(error, '') FROM experiments WHERE status = 'failed'");
    assert!(
        waiting.is_some(),
        "no experiment waited for the blocked dispense station; failed: {failed:?}\n{}",
        cell.log()
    );
    assert!(failed.iter().all(|e| !e.contains("could not be removed")), "{failed:?}");
    // It claims nothing more while it waits: the hub shows it holding no more than its campaign's two in flight and
    // one claimed ahead, and nothing fails meanwhile.
    std::thread::sleep(Duration::from_secs(3));
    let hub = harness::client(&pg);
    let held =
        hub.count("SELECT count(*) FROM fleet.proposals WHERE workcell = 'wc-a' AND state IN ('claimed', 'started')");
    assert!(held <= 3, "the workcell holds {held} proposals while it waits");
    let failed = read(&db, "SELECT coalesce(error, '') FROM experiments WHERE status = 'failed'");
    assert!(failed.iter().all(|e| !e.contains("could not be removed")), "{failed:?}");

    // The technician clears the places; the fleet finishes its budget with only the experiment in doubt failed.
    let t0 = Instant::now();
    while cell.poll().is_none() {
        assert!(t0.elapsed() < Duration::from_secs(300), "the workcell did not finish:\n{}", cell.log());
        cell.attend();
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(cell.cleared >= 1, "no place was cleared");
    let t0 = Instant::now();
    while learner.try_wait().unwrap().is_none() {
        assert!(t0.elapsed() < Duration::from_secs(60), "the learner did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
    let failed = read(&db, "SELECT coalesce(error, '') FROM experiments WHERE status = 'failed'");
    assert!(failed.iter().all(|e| e.contains("may have acted but its outcome is unknown")), "{failed:?}");
    let done = read(&db, "SELECT CAST(count(*) AS TEXT) FROM experiments WHERE status IN ('succeeded', 'failed')");
    assert_eq!(done, ["6"], "the campaign's budget ran");
    let report = controller::record::verify::verify(&db).unwrap();
    assert!(report.is_intact(), "{:#?}", report.problems);
}
