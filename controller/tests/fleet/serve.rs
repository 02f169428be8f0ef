//! `lab serve --hub`: a real fleet (a throwaway PostgreSQL, a learner, two workcells on simulators) served in a
//! browser's stead by curl (Debian's; `.ci/run` installs it): every workcell on one page, the fleet campaign's
//! experiments from both workcells following the hub as results arrive, the drill-down to an exchange whose bytes
//! are the hub's, the hub's heads on the health page, actions refused with nothing written, and the hub's password
//! never printed. Debian's Chromium takes pictures of the workcells' page and the health page for people to look at.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::{self, Cell, client, kill9, lab, learner, write_campaign};
use crate::pg::{self, PgCluster};
use crate::process::wait_for;

/// `curl` on `url` (at most 20 s): (HTTP status, body).
fn curl(url: &str, extra: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "20", "--write-out", "\n%{http_code}"])
        .args(extra)
        .arg(url)
        .output()
        .unwrap_or_else(|e| panic!("curl runs (`apt-get install -y curl`, as .ci/run does): {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// The `lab serve` this test started, stopped however the test ends.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        kill9(&mut self.0);
    }
}

#[test]
fn lab_serve_hub_shows_every_workcell_and_takes_no_action() {
    let Some(pg) = PgCluster::start() else { return };
    let url = pg.url();
    assert!(lab(&["fleet", "init"], &url).0);
    let dir = tempfile::tempdir().unwrap();
    let campaign = write_campaign(dir.path(), "served", 6, 1, "Random");
    let mut learner = learner(&campaign, &url, "l1", &dir.path().join("learner.log"));
    let mut cells = [
        Cell::new("wc-a", dir.path(), &harness::demo_lab(), pg.port, 1000.0),
        Cell::new("wc-b", dir.path(), &harness::demo_lab(), pg.port, 1000.0),
    ];
    for c in cells.iter_mut() {
        let via = pg.url_via(c.proxy.port);
        c.start(&via);
    }

    // `--hub` without a URL reads LAB_HUB, so the password is on no command line.
    let mut child = Command::new(harness::LAB)
        .args(["serve", "--hub", "--addr", "127.0.0.1:0"])
        .env("LAB_HUB", &url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let server = Server(child);
    let (tx, rx) = std::sync::mpsc::channel();
    let tx2 = tx.clone();
    std::thread::spawn(move || BufReader::new(stdout).lines().map_while(Result::ok).for_each(|l| drop(tx.send(l))));
    std::thread::spawn(move || BufReader::new(stderr).lines().map_while(Result::ok).for_each(|l| drop(tx2.send(l))));
    let mut said = Vec::new();
    let link = wait_for("lab serve to print its link", Duration::from_secs(60), || {
        let line = rx.try_recv().ok()?;
        said.push(line.clone());
        line.trim().strip_prefix("open ").map(str::to_owned)
    });
    let base = link.split("/?token=").next().unwrap().to_owned();

    // While the campaign runs, the live page's stream sends frames of the fleet campaign.
    let (code, _) = wait_for("the fleet campaign on the server", Duration::from_secs(60), || {
        Some(curl(&format!("{base}/campaigns/1"), &[])).filter(|(c, _)| *c == 200)
    });
    assert_eq!(code, 200);
    let (_, frame) = curl(&format!("{base}/campaigns/1/live"), &["--max-time", "3"]);
    assert!(frame.contains("data:"), "the live stream sent no frame: {frame}");

    // The workcells finish the campaign; the served copy follows the hub to its last result.
    let hub = client(&pg);
    wait_for("the workcells to finish the campaign", Duration::from_secs(240), || {
        let done = cells.iter_mut().all(|c| c.process.is_none() || c.poll().is_some());
        done.then_some(())
    });
    let experiments = hub.count(
        "SELECT count(*) FROM record.experiments e JOIN record.campaigns k ON k.workcell = e.workcell
         AND k.id = e.campaign_id WHERE k.name = 'served'",
    );
    assert!(experiments >= 6, "{experiments} experiments at the hub");
    let csv = wait_for("the served copy to hold every experiment", Duration::from_secs(30), || {
        let (code, csv) = curl(&format!("{base}/campaigns/1/experiments.csv"), &[]);
        (code == 200 && csv.lines().count() as i64 - 1 == experiments).then_some(csv)
    });
    assert!(csv.lines().count() > 1);

    // Each experiment is numbered by its fleet proposal, and its lab time counts from the first workcell's start.
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').map(|h| h.trim_matches('"')).collect();
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (seq_at, started_at) = (column("seq"), column("started_at"));
    let served: std::collections::HashMap<i64, f64> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect::<Vec<_>>())
        .map(|c| (c[seq_at].parse().unwrap(), c[started_at].parse().unwrap()))
        .collect();
    let expected = hub.query(
        "SELECT l.seq, e.started_at + extract(epoch FROM (k.started_at::timestamptz - f.first))::float8 * k.time_scale
         FROM fleet.links l JOIN record.experiments e ON e.workcell = l.workcell AND e.id = l.local_experiment
         JOIN record.campaigns k ON k.workcell = e.workcell AND k.id = e.campaign_id,
              (SELECT min(started_at::timestamptz) AS first FROM record.campaigns WHERE name = 'served') f
         WHERE l.campaign = 'served'",
        &[],
    );
    assert_eq!(expected.len(), served.len());
    for r in &expected {
        let (seq, at): (i64, f64) = (r.get(0), r.get(1));
        let got = served[&seq];
        assert!((got - at).abs() < 1e-3 * at.abs().max(1.0), "experiment {seq}: started at {got}, expected {at}");
    }

    // One page for every workcell; the campaign's experiments from both, numbered by the fleet.
    let (code, index) = curl(&format!("{base}/"), &[]);
    assert_eq!(code, 200);
    assert!(index.contains("id=\"workcells\"") && index.contains("wc-a") && index.contains("wc-b"), "{index}");
    assert!(index.contains("served"), "{index}");
    let (_, table) = curl(&format!("{base}/campaigns/1/experiments"), &[]);
    for wc in ["wc-a", "wc-b"] {
        let ran = hub.count(&format!("SELECT count(*) FROM record.experiments WHERE workcell = '{wc}'"));
        if ran > 0 {
            assert!(table.contains(&format!("{wc}/")), "{wc}'s instruments on the experiments page: {table}");
        }
    }
    let seqs = hub.query("SELECT seq FROM fleet.links WHERE campaign = 'served' ORDER BY seq", &[]);
    let seq: i64 = seqs[0].get(0);
    let (code, experiment) = curl(&format!("{base}/campaigns/1/experiments/{seq}"), &[]);
    assert_eq!(code, 200, "{experiment}");

    // An exchange, by the id the copy gives it, shows the bytes the hub holds.
    let order: Vec<String> = hub
        .query("SELECT name FROM fleet.workcells ORDER BY registered_at, name", &[])
        .iter()
        .map(|r| r.get(0))
        .collect();
    let row = &hub.query(
        "SELECT workcell, id, instrument, octet_length(sent), octet_length(received) FROM record.commands
         WHERE step_id IS NOT NULL ORDER BY workcell, id LIMIT 1",
        &[],
    )[0];
    let (wc, local, instrument): (String, i64, String) = (row.get(0), row.get(1), row.get(2));
    let number = order.iter().position(|n| *n == wc).unwrap() as i64 + 1;
    let (code, exchange) = curl(&format!("{base}/exchanges/{}", (number << 40) | local), &[]);
    assert_eq!(code, 200, "{exchange}");
    assert!(exchange.contains(&format!("with {wc}/{instrument}</h1>")), "{exchange}");
    assert!(exchange.contains(&format!("Sent: {} bytes", row.get::<_, i32>(3))), "{exchange}");
    assert!(exchange.contains(&format!("Received: {} bytes", row.get::<_, i32>(4))), "{exchange}");

    // A step's page shows where and why the workcell's scheduler placed it, as on that workcell's own server.
    let row = &hub
        .query("SELECT workcell, step_id, instrument, reason FROM record.decisions ORDER BY workcell, id LIMIT 1", &[])
        [0];
    let (wc, local, instrument, reason): (String, i64, String, String) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    let number = order.iter().position(|n| *n == wc).unwrap() as i64 + 1;
    let (code, step) = curl(&format!("{base}/steps/{}", (number << 40) | local), &[]);
    assert_eq!(code, 200, "{step}");
    assert!(step.contains("The scheduler's decisions"), "{step}");
    assert!(step.contains(&format!("{wc}/{instrument}")), "{step}");
    let shown = reason.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('\'', "&#39;");
    assert!(step.contains(&shown), "the decision's reason `{reason}`: {step}");

    // The health page shows each workcell's head at the hub, hash for hash, once the server has read the last rows
    // the workcells shipped as they ended.
    let heads: Vec<(String, String)> = hub
        .query("SELECT DISTINCT ON (workcell) workcell, hash FROM fleet.journal ORDER BY workcell, id DESC", &[])
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(heads.len(), 2, "both workcells shipped: {heads:?}");
    let health = wait_for("the health page to show every head", Duration::from_secs(30), || {
        let (_, health) = curl(&format!("{base}/health"), &[]);
        heads.iter().all(|(_, hash)| health.contains(hash)).then_some(health)
    });
    assert!(health.contains("id=\"no-rejections\""), "{health}");

    // Pictures of the workcells' page and the health page, for people to look at (target/tmp/serve-screenshots/).
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    for (name, path) in [("8-fleet-workcells", "/"), ("9-fleet-health", "/health")] {
        let png = shots.join(format!("{name}.png"));
        let profile = tempfile::tempdir().unwrap();
        let out = Command::new(std::env::var("LAB_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()))
            .args(controller::serve::bench::HEADLESS_CHROMIUM)
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(["--window-size=1440,1000", "--hide-scrollbars"])
            .arg(format!("--screenshot={}", png.display()))
            .arg(format!("{base}{path}"))
            .output()
            .expect("Debian's chromium runs (`apt-get install -y chromium`, as .ci/run does)");
        let bytes = std::fs::read(&png).unwrap_or_default();
        assert!(bytes.starts_with(b"\x89PNG"), "{name}: {}", String::from_utf8_lossy(&out.stderr));
    }

    // Actions, even with the token, are refused with where to act, and nothing is written anywhere.
    let before = hub.count("SELECT count(*) FROM fleet.proposals WHERE state IN ('settled', 'withdrawn')");
    let jar = dir.path().join("cookies");
    let jar = jar.to_str().unwrap();
    let (code, _) = curl(&link, &["--cookie-jar", jar]);
    assert_eq!(code, 303, "the link signs in");
    let origin = format!("Origin: {base}");
    let (code, refused) = curl(
        &format!("{base}/campaigns/1/pause"),
        &["--cookie", jar, "-H", &origin, "--data", "who=ana&reason=test&csrf=x"],
    );
    assert_eq!(code, 409, "{refused}");
    assert!(refused.contains("takes no actions") && refused.contains("lab serve --db lab.db"), "{refused}");
    assert_eq!(hub.count("SELECT count(*) FROM fleet.proposals WHERE state IN ('settled', 'withdrawn')"), before);
    assert!(!link.contains(pg::PASSWORD));

    // A hub that cannot be read is said before anything listens, without the password; `--hub` alone needs LAB_HUB.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = Command::new(harness::LAB)
        .args(["serve", "--addr", "127.0.0.1:0", "--hub", &pg.url_via(closed)])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("cannot reach the hub") && !err.contains(pg::PASSWORD), "{err}");
    let out = Command::new(harness::LAB).args(["serve", "--hub"]).env_remove("LAB_HUB").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("LAB_HUB, which is not set"));

    // Stopping the server ends the test; what it said never held the password.
    drop(server);
    said.extend(rx.try_iter());
    let said = said.join("\n");
    assert!(said.contains("fleet hub") && !said.contains(pg::PASSWORD), "{said}");
    kill9(&mut learner);
}
