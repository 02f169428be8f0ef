//! `lab workcell --instant` on a real hub: workcells whose steps run on the planner's simulation take a fleet
//! campaign to its end. The last proposals of a budget are all claimed while a workcell still holds experiments in
//! flight; the hub gives nothing more until their results arrive, so a simulation that held its lab time for an
//! answer would wait for ever (it did, and aborted the campaign with its experiments still running).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::harness::{self, learner, write_campaign};
use super::pg::PgCluster;

#[test]
fn instant_workcells_finish_a_fleet_campaign_whose_last_proposals_are_all_claimed() {
    let Some(pg) = PgCluster::start() else { return };
    let url = pg.url();
    assert!(harness::lab(&["fleet", "init"], &url).0);
    let dir = tempfile::tempdir().unwrap();
    let budget = 40;
    let campaign = write_campaign(dir.path(), "rehearsal", budget, 16, "Random");
    let mut learner = learner(&campaign, &url, "learner", &dir.path().join("learner.log"));
    let mut cells = Vec::new();
    for name in ["i-1", "i-2"] {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("lab.ron"), harness::demo_lab()).unwrap();
        let log = std::fs::File::create(d.join("workcell.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_lab"))
            .args(["workcell", "--lab", "lab.ron", "--db", "lab.db", "--name", name, "-q", "--instant"])
            .env("LAB_HUB", &url)
            .current_dir(&d)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        cells.push((d, child));
    }
    let log = |d: &std::path::Path| std::fs::read_to_string(d.join("workcell.log")).unwrap_or_default();
    let t0 = Instant::now();
    while learner.try_wait().unwrap().is_none() {
        if t0.elapsed() > Duration::from_secs(120) {
            let logs: Vec<String> = cells.iter().map(|(d, _)| log(d)).collect();
            for (_, c) in cells.iter_mut() {
                let _ = c.kill();
            }
            let _ = learner.kill();
            panic!("the fleet campaign did not finish within two minutes; workcells said:\n{}", logs.join("\n---\n"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let hub = harness::client(&pg);
    let told = hub.count("SELECT count(*) FROM fleet.results WHERE campaign = 'rehearsal' AND told IS NOT NULL");
    assert_eq!(told, budget as i64, "every proposal's result reached the learner");
    let mut succeeded = 0;
    for (d, child) in cells.iter_mut() {
        let t0 = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if t0.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                panic!("an instant workcell did not stop after the campaign ended:\n{}", log(d));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let conn = rusqlite::Connection::open(d.join("lab.db")).unwrap();
        let unfinished: i64 = conn
            .query_row("SELECT count(*) FROM experiments WHERE status NOT IN ('succeeded', 'failed')", [], |r| r.get(0))
            .unwrap();
        assert_eq!(unfinished, 0, "no experiment is left unfinished in {}", d.display());
        let aborted: i64 =
            conn.query_row("SELECT count(*) FROM campaigns WHERE status <> 'finished'", [], |r| r.get(0)).unwrap();
        assert_eq!(aborted, 0, "every campaign of {} finished:\n{}", d.display(), log(d));
        succeeded += conn
            .query_row("SELECT count(*) FROM experiments WHERE status = 'succeeded'", [], |r| r.get::<_, i64>(0))
            .unwrap();
    }
    assert_eq!(succeeded, budget as i64, "the two workcells ran the budget between them");
}
