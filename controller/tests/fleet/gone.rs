//! A workcell whose only spectrometer is unplugged for good, in the middle of a fleet campaign: it starts nothing
//! more (each experiment would dispense and heat, then fail at the measurement), gives back what it claimed and had
//! not started, and stops, leaving its campaign for `lab resume` after the repair; another workcell runs the rest of
//! the budget.

use std::time::{Duration, Instant};

use super::harness::{self, Cell, learner, write_campaign};
use super::pg::PgCluster;

#[test]
fn a_workcell_whose_spectrometer_is_gone_stops_and_the_fleet_runs_the_rest() {
    let Some(pg) = PgCluster::start() else { return };
    let url = pg.url();
    assert!(harness::lab(&["fleet", "init"], &url).0);
    let dir = tempfile::tempdir().unwrap();
    let campaign = write_campaign(dir.path(), "gone", 8, 2, "SpaceFilling");
    let lab = harness::demo_lab();
    let uvvis = "            position: \"uvvis\",\n";
    assert!(lab.contains(uvvis), "the demo lab's spectrometer changed; update this test");
    let broken = lab.replacen(
        uvvis,
        &format!(
            "{uvvis}            faults: (disconnect: (after: 6, down: \"10 min\")),\n            serial: (reconnect: \
             (attempts: 2, delay: \"20 ms\")),\n"
        ),
        1,
    );
    let mut a = Cell::new("wc-a", dir.path(), &broken, pg.port, 1000.0);
    let mut b = Cell::new("wc-b", dir.path(), &lab, pg.port, 1000.0);
    let mut learner = learner(&campaign, &url, "learner", &dir.path().join("learner.log"));
    let via = a.hub_url(&pg);
    a.start(&via);

    // wc-a stops on its own once the spectrometer is gone, with the exit code of a run left for `lab resume`.
    let t0 = Instant::now();
    let code = loop {
        if let Some(code) = a.poll() {
            break code;
        }
        assert!(t0.elapsed() < Duration::from_secs(180), "wc-a did not stop:\n{}", a.log());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, 3, "{}", a.log());
    assert!(a.log().contains("stops: step `read` needs a Spectrometer"), "{}", a.log());
    let db = a.db();
    let conn = rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let (status, ran): (String, i64) = conn
        .query_row("SELECT status, (SELECT count(*) FROM experiments) FROM campaigns", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(status, "running", "wc-a's campaign is left for `lab resume`");
    assert!(ran < 8, "wc-a did not spend the budget on experiments that could only fail ({ran} ran)");
    let hub = harness::client(&pg);
    let held = hub.count("SELECT count(*) FROM fleet.proposals WHERE workcell = 'wc-a' AND state = 'claimed'");
    assert_eq!(held, 0, "wc-a gave back what it claimed and had not started");

    // A healthy workcell runs what is left; the fleet's budget is spent.
    let via = b.hub_url(&pg);
    b.start(&via);
    let t0 = Instant::now();
    while b.poll().is_none() {
        assert!(t0.elapsed() < Duration::from_secs(240), "wc-b did not finish:\n{}", b.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let t0 = Instant::now();
    while learner.try_wait().unwrap().is_none() {
        assert!(t0.elapsed() < Duration::from_secs(60), "the learner did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
    let open =
        hub.count("SELECT count(*) FROM fleet.proposals WHERE campaign = 'gone' AND state IN ('open', 'claimed')");
    assert_eq!(open, 0, "every proposal of the fleet's budget is final");
    let by_b = hub.count("SELECT count(*) FROM fleet.proposals WHERE campaign = 'gone' AND workcell = 'wc-b'");
    assert!(by_b >= 8 - ran, "wc-b ran the rest ({by_b} of {})", 8 - ran);
}
