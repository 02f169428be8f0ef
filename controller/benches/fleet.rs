//! The fleet's figures on a throwaway PostgreSQL cluster (BENCHMARKS.md, "Fleet"): claim latency, proposals per
//! second through the whole path, result to learner, catch-up after an outage, and learner failover.
//!
//! `cargo bench -p controller --bench fleet` runs them all (about six minutes, most of it the two 60 s outages);
//! `LAB_BENCH_OUTAGE=10` shortens the outages and `LAB_BENCH_FLEET=instant,catchup` picks figures (`serve`, after
//! `instant`, measures `lab serve --hub` on what the instant path left). Each figure is printed with what it measured
//! and the machine's load.

#[path = "../tests/fleet/pg.rs"]
mod pg;
#[path = "../tests/fleet/proxy.rs"]
mod proxy;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use controller::fleet::Hub;
use controller::fleet::ship::Shipper;
use controller::record::{Hex, Record, RecordEvent, StepRow};

const LAB: &str = env!("CARGO_BIN_EXE_lab");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn write_campaign(dir: &Path, name: &str, budget: usize, in_flight: usize) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("experiments/campaigns/demo.campaign.ron"))
        .unwrap()
        .replace("name: \"demo\"", &format!("name: {name:?}"))
        .replace(
            "\"../../protocols/library/condensation.protocol.ron\"",
            &format!("{:?}", repo().join("protocols/library/condensation.protocol.ron").display().to_string()),
        )
        .replace(
            "\"../../devices/labs/sim.lab.ron\"",
            &format!("{:?}", repo().join("devices/labs/sim.lab.ron").display().to_string()),
        )
        .replace("budget: 24", &format!("budget: {budget}"))
        .replace("in_flight: 4", &format!("in_flight: {in_flight}"))
        .replace("proposer: GaussianProcess(initial: 8, acquisition: LogExpectedImprovement)", "proposer: Random");
    let p = dir.join(format!("{name}.campaign.ron"));
    std::fs::write(&p, text).unwrap();
    p
}

fn spawn(args: &[&str], hub: &str, dir: &Path, log: &str) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join(log)).unwrap();
    Command::new(LAB)
        .args(args)
        .env("LAB_HUB", hub)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

fn wait(child: &mut Child, bound: Duration) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < bound {
        if child.try_wait().unwrap().is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

/// Claims through `fleet.claim` as a workcell does, 32 proposals kept open by a publisher: the transaction's latency,
/// and the latency from a publisher's commit (with its NOTIFY) to the claim's commit.
fn claim_latency(pg: &pg::PgCluster) {
    let url = pg.url();
    let publisher = pg::Sql::connect(&url);
    let mut claimer = pg::Sql::connect(&url);
    publisher.execute(
        "INSERT INTO fleet.campaigns (name, campaign_path, campaign_text, campaign_sha256, protocol_path, protocol_text,
             protocol_sha256, needs, budget, in_flight) VALUES ('claims', '-', '-', '-', '-', '-', '-', '{kind:Hotplate}', 100000, 32);
         INSERT INTO fleet.workcells (name, lab_name, lab_sha256, capabilities) VALUES ('bench', 'sim', '', '{kind:Hotplate}');
         INSERT INTO fleet.proposals (campaign, seq, needs, params, proposal)
             SELECT 'claims', s, '{kind:Hotplate}', '{}', '{}' FROM generate_series(1, 32) s",
    );
    claimer.execute("LISTEN fleet_open");
    let mut tx_ms = Vec::new();
    let mut notify_ms = Vec::new();
    let mut next = 33;
    for i in 0..2000 {
        let t = Instant::now();
        let n = claimer.count("SELECT count(*) FROM fleet.claim('bench', 'claims', 1)");
        tx_ms.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(n, 1);
        if i % 10 == 0 {
            // Every tenth time the claimer drains the open set and waits for the publisher's NOTIFY, so that the
            // latency is measured from the publisher's commit.
            let drained = claimer.count("SELECT count(*) FROM fleet.claim('bench', 'claims', 100)");
            let t = Instant::now();
            publisher.execute(&format!(
                "BEGIN; INSERT INTO fleet.proposals (campaign, seq, needs, params, proposal)
                 SELECT 'claims', s, '{{kind:Hotplate}}', '{{}}', '{{}}' FROM generate_series({next}, {}) s;
                 SELECT pg_notify('fleet_open', 'claims'); COMMIT",
                next + drained
            ));
            next += drained + 1;
            let note =
                claimer.rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), claimer.notes.recv()).await });
            assert!(note.is_ok());
            let n = claimer.count("SELECT count(*) FROM fleet.claim('bench', 'claims', 1)");
            assert_eq!(n, 1);
            notify_ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        // The publisher refills the open set, as the learner does.
        let k = if i % 10 == 0 { 1 } else { 0 };
        publisher.execute(&format!(
            "INSERT INTO fleet.proposals (campaign, seq, needs, params, proposal)
             SELECT 'claims', s, '{{kind:Hotplate}}', '{{}}', '{{}}' FROM generate_series({next}, {}) s",
            next + k
        ));
        next += k + 1;
    }
    // The claims campaign is no campaign a workcell could run: close it before the next figure.
    publisher.execute(
        "UPDATE fleet.proposals SET state = 'withdrawn' WHERE campaign = 'claims' AND state = 'open';
         UPDATE fleet.proposals SET state = 'succeeded' WHERE campaign = 'claims' AND state = 'claimed';
         UPDATE fleet.campaigns SET status = 'finished' WHERE name = 'claims';",
    );
    println!(
        "claim: fleet.claim transaction p50 {:.2} ms p95 {:.2} ms ({} claims, 32 open); publish+NOTIFY to claim committed p50 {:.2} ms p95 {:.2} ms ({} times)",
        percentile(&mut tx_ms.clone(), 0.5),
        percentile(&mut tx_ms, 0.95),
        2000,
        percentile(&mut notify_ms.clone(), 0.5),
        percentile(&mut notify_ms, 0.95),
        notify_ms.len()
    );
}

/// A whole fleet: a learner and three workcells of the demo lab, either on the simulators over pseudo-terminals at a
/// very high time scale, or `--instant` (every step on the planner's simulation, no wall time). Proposals per second
/// from the first publication to the last result told; and, on simulators, per result, the wall time from the
/// workcell's `ExperimentFinished` to the learner's tell.
fn whole_path(pg: &pg::PgCluster, budget: usize, instant: bool, scale: u32) {
    let url = pg.url();
    let dir = tempfile::tempdir().unwrap();
    let name = if instant { "instant".to_owned() } else { format!("at{scale}") };
    let name = name.as_str();
    let campaign = write_campaign(dir.path(), name, budget, 16);
    let sql = pg::Sql::connect(&url);
    sql.execute("ALTER TABLE fleet.results ADD COLUMN IF NOT EXISTS told_at timestamptz");
    sql.execute(
        "CREATE OR REPLACE FUNCTION bench_told() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN IF NEW.told IS NOT NULL AND OLD.told IS NULL THEN NEW.told_at := clock_timestamp(); END IF; RETURN NEW; END $$;
         DROP TRIGGER IF EXISTS bench_told ON fleet.results;
         CREATE TRIGGER bench_told BEFORE UPDATE ON fleet.results FOR EACH ROW EXECUTE FUNCTION bench_told();",
    );
    let lab_text = std::fs::read_to_string(repo().join("devices/labs/sim.lab.ron"))
        .unwrap()
        .replace("simulation: (seed: 7, time_scale: 400)", &format!("simulation: (seed: 7, time_scale: {scale})"));
    let mut cells = Vec::new();
    for name in ["1", "2", "3"] {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("lab.ron"), &lab_text).unwrap();
        cells.push(d);
    }
    let t0 = Instant::now();
    let mut learner = spawn(&["fleet", "learn", campaign.to_str().unwrap(), "-q"], &url, dir.path(), "learner.log");
    let names = ["1", "2", "3"].map(|n| format!("{name}-{n}"));
    let mut workcells: Vec<Child> = cells
        .iter()
        .zip(&names)
        .map(|(d, n)| {
            let mut args = vec!["workcell", "--lab", "lab.ron", "--db", "lab.db", "--name", n, "-q"];
            if instant {
                args.push("--instant");
            }
            spawn(&args, &url, d, "workcell.log")
        })
        .collect();
    let finished = wait(&mut learner, Duration::from_secs(900));
    let wall = t0.elapsed().as_secs_f64();
    for w in workcells.iter_mut() {
        wait(w, Duration::from_secs(120));
    }
    let told = sql.count(&format!("SELECT count(*) FROM fleet.results WHERE campaign = '{name}' AND told IS NOT NULL"));
    let span: Vec<f64> = sql.floats(&format!(
        "SELECT extract(epoch FROM max(r.told_at) - min(p.published_at))::float8 FROM fleet.results r, fleet.proposals p
         WHERE r.campaign = '{name}' AND p.campaign = '{name}'"
    ));
    let span = span.first().copied().unwrap_or(wall);
    if instant {
        let rows = sql.count("SELECT count(*) FROM fleet.journal WHERE workcell LIKE 'instant-%'");
        println!(
            "whole path, instant: {told} of {budget} proposals published, claimed, run on 3 `lab workcell --instant` \
             (the demo protocol's 8 steps each on the planner's simulation), recorded, shipped and told in {span:.1} s \
             from first publication to last tell: {:.0} proposals/s ({rows} journal rows shipped, {:.0} rows/s); \
             learner {}",
            told as f64 / span,
            rows as f64 / span,
            if finished { "finished" } else { "DID NOT FINISH" }
        );
        return;
    }
    // Each result's ExperimentFinished, in wall time: the local campaign's start plus its lab time over its scale.
    let (mut latency, mut shipped, mut heard) = (Vec::new(), Vec::new(), Vec::new());
    for (d, name) in cells.iter().zip(&names) {
        let conn = rusqlite::Connection::open(d.join("lab.db")).unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT e.id, c.started_at, e.finished_at, c.time_scale FROM experiments e JOIN campaigns c ON c.id = e.campaign_id
                 WHERE e.finished_at IS NOT NULL",
            )
            .unwrap();
        let rows: Vec<(i64, String, f64, f64)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for (id, started, at, scale) in rows {
            let start = humantime::parse_rfc3339(&started).unwrap();
            let finished = start + Duration::from_secs_f64(at / scale);
            let finished = finished.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
            let told: Vec<f64> = sql.floats(&format!(
                "SELECT unnest(ARRAY[extract(epoch FROM r.arrived_at), extract(epoch FROM r.told_at)])::float8
                 FROM fleet.results r JOIN fleet.links l
                 ON l.campaign = r.campaign AND l.seq = r.seq AND l.workcell = r.workcell
                 WHERE l.workcell = '{name}' AND l.local_experiment = {id}"
            ));
            if let [arrived, told] = told[..] {
                latency.push((told - finished) * 1e3);
                shipped.push((arrived - finished) * 1e3);
                heard.push((told - arrived) * 1e3);
            }
        }
    }
    println!(
        "whole path, simulators: {told} of {budget} proposals published, claimed, run on 3 workcells (demo lab at \
         {scale}x over pseudo-terminals), shipped and told in {span:.1} s from first publication to last tell \
         ({:.1}/s); learner {}",
        told as f64 / span,
        if finished { "finished" } else { "DID NOT FINISH" }
    );
    println!(
        "result to learner: ExperimentFinished in lab.db to the learner's tell p50 {:.0} ms p95 {:.0} ms ({} results); \
         of which to the hub (shipped) p50 {:.0} ms p95 {:.0} ms, and from the hub to the tell p50 {:.0} ms p95 {:.0} ms",
        percentile(&mut latency.clone(), 0.5),
        percentile(&mut latency, 0.95),
        latency.len(),
        percentile(&mut shipped.clone(), 0.5),
        percentile(&mut shipped, 0.95),
        percentile(&mut heard.clone(), 0.5),
        percentile(&mut heard, 0.95),
    );
}

/// `lab serve --hub` on the hub the instant whole path filled (3,000 experiments of three workcells by default): how
/// long the server's reading of every fleet campaign into its copy took (the campaigns page says), the pages' time
/// to first byte and to the last byte, and the server's memory.
fn serve_hub(pg: &pg::PgCluster) {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(LAB)
        .args(["serve", "--hub", "--addr", "127.0.0.1:0"])
        .env("LAB_HUB", pg.url())
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The link is said on standard error, with the rest of what the server tells its operator.
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        std::io::BufReader::new(stdout).lines().map_while(Result::ok).for_each(|l| drop(tx.send(l)))
    });
    std::thread::spawn(move || {
        std::io::BufReader::new(stderr).lines().map_while(Result::ok).for_each(|l| drop(tx2.send(l)))
    });
    let t0 = Instant::now();
    let mut said = Vec::new();
    let link = loop {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "lab serve --hub printed no link; it said:\n{}",
            said.join("\n")
        );
        if let Ok(l) = rx.recv_timeout(Duration::from_secs(1)) {
            if let Some(link) = l.trim().strip_prefix("open ") {
                break link.to_owned();
            }
            said.push(l);
        }
    };
    let base = link.split("/?token=").next().unwrap().to_owned();
    let curl = |path: &str| -> (f64, f64, String) {
        let out = Command::new("curl")
            .args(["-s", "-w", "\n%{time_starttransfer} %{time_total}", &format!("{base}{path}")])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, times) = text.rsplit_once('\n').unwrap_or(("", "0 0"));
        let mut t = times.split_whitespace().map(|x| x.parse::<f64>().unwrap_or(f64::NAN) * 1e3);
        (t.next().unwrap_or(f64::NAN), t.next().unwrap_or(f64::NAN), body.to_owned())
    };
    // The first reading of the hub: the campaigns page says how long it took once it has one.
    let read_ms = loop {
        assert!(t0.elapsed() < Duration::from_secs(300), "lab serve --hub never read the hub");
        let (_, _, page) = curl("/");
        if let Some(at) = page.find("reading every campaign took ") {
            let rest = &page[at + "reading every campaign took ".len()..];
            break rest.split_whitespace().next().unwrap_or("?").to_owned();
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let first = t0.elapsed().as_secs_f64();
    let experiments = {
        let (_, _, csv) = curl("/campaigns/1/experiments.csv");
        csv.lines().count().saturating_sub(1)
    };
    let mut figures = Vec::new();
    for path in ["/", "/campaigns/1", "/campaigns/1/experiments", "/campaigns/1/experiments/1"] {
        let (mut ttfb, mut total) = (Vec::new(), Vec::new());
        for _ in 0..10 {
            let (a, b, _) = curl(path);
            ttfb.push(a);
            total.push(b);
        }
        figures.push(format!(
            "{path} first byte p50 {:.0} ms, whole p50 {:.0} ms (worst {:.0})",
            percentile(&mut ttfb, 0.5),
            percentile(&mut total.clone(), 0.5),
            percentile(&mut total, 1.0)
        ));
    }
    let rss = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .map(|l| l.trim_start_matches("VmRSS:").trim().to_owned())
        .unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "lab serve --hub on {experiments} fleet experiments: first reading of the hub {read_ms} ms (pages served {first:.1} s \
         after start); {}; server memory {rss}",
        figures.join("; ")
    );
}

/// The chain check of schema version 3 (each arrived row joined to the hub's journal) against today's (each row's
/// predecessor taken from the same statement), in turn on one hub whose journal grows between runs: catch-up of
/// 100,000 wire exchanges after a 10 s outage, twice each, alternating.
fn chain_check(pg: &pg::PgCluster) {
    let sql = pg::Sql::connect(&pg.url());
    let v3 = include_str!("../src/fleet/migrations/003-batches-and-roles.sql");
    let start = v3.find("CREATE FUNCTION fleet.check_chain()").unwrap();
    let end = start + v3[start..].find("\n$$;").unwrap() + 4;
    let v3 = v3[start..end].replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION");
    let v4 = include_str!("../src/fleet/migrations/004-chain-check-per-batch.sql");
    for round in 0..2 {
        for (label, function) in [("version 3", v3.as_str()), ("version 4", v4)] {
            sql.execute(function);
            catch_up(
                pg,
                Duration::from_secs(10),
                100_000,
                Backlog::Exchanges,
                &format!(", {label}'s chain check ({round})"),
            );
        }
    }
}

/// What a workcell's record gains during an outage: wire exchanges only (the commonest row of a real journal, and
/// the cheapest to ship), or the mix of a campaign's journal.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Backlog {
    Exchanges,
    Mix,
}

/// The next `n` or so rows of a backlog; `next` holds the next experiment and step ids.
fn backlog(kind: Backlog, campaign: i64, at: f64, next: &mut (i64, i64), n: usize) -> Vec<RecordEvent> {
    let exchange = |step: Option<i64>, at: f64| RecordEvent::Command {
        campaign,
        instrument: "hotplate_1".into(),
        step,
        sent_at: at,
        sent: Hex(b"IN_PV_1\r\n".to_vec()),
        replied_at: Some(at + 0.01),
        received: Hex(b"80.0 1\r\n".to_vec()),
        parsed: Some("{\"temperature\":80.0}".into()),
        error: None,
    };
    if kind == Backlog::Exchanges {
        return (0..n).map(|i| exchange(None, at + i as f64)).collect();
    }
    // Experiments of eight steps in a chain, as the demo protocol's: each step made ready, decided, started, a few
    // exchanges, ended; a reading at the end; about 58 rows an experiment.
    let status =
        |step: i64, at: f64, s: &'static str, task: Option<&str>, outcome: Option<&str>| RecordEvent::StepStatus {
            step,
            at,
            status: s.into(),
            instrument: (s == "running").then(|| "hotplate_1".to_owned()),
            task: task.map(str::to_owned),
            attempt: (s == "running").then_some(1),
            outcome: outcome.map(str::to_owned),
            error: None,
        };
    let mut out = Vec::with_capacity(n + 64);
    while out.len() < n {
        let (e, s0) = *next;
        *next = (e + 1, s0 + 8);
        let t = at + out.len() as f64;
        let names = ["dispense_a", "dispense_b", "move_in", "heat", "stir", "move_out", "sample", "read"];
        out.push(RecordEvent::ExperimentStarted {
            id: e,
            campaign,
            seq: e,
            proposal: None,
            params: vec![("temperature".into(), 80.0, "degC".into()), ("time".into(), 600.0, "s".into())],
            vessel: e % 48,
            at: t,
            steps: (0..8)
                .map(|j| StepRow {
                    id: s0 + j,
                    step: names[j as usize].into(),
                    op: "Heat".into(),
                    action: "{\"Heat\":{\"temperature\":80.0,\"duration\":600.0}}".into(),
                    after: if j == 0 { Vec::new() } else { vec![names[j as usize - 1].to_owned()] },
                    repeat_safe: j == 7,
                    ready: j == 0,
                })
                .collect(),
        });
        for j in 0..8 {
            let step = s0 + j;
            if j > 0 {
                out.push(status(step, t, "ready", None, None));
            }
            out.push(RecordEvent::Decision {
                campaign,
                at: t,
                step,
                instrument: "hotplate_1".into(),
                place: None,
                waited: 0.0,
                reason: "first in the plan".into(),
            });
            out.push(status(step, t, "running", Some("{\"Heat\":{\"temperature\":80.0}}"), None));
            for k in 0..3 {
                out.push(exchange(Some(step), t + f64::from(k)));
            }
            out.push(status(step, t + 3.0, "succeeded", None, Some("\"Done\"")));
        }
        out.push(RecordEvent::Measurement {
            experiment: e,
            step: s0 + 7,
            name: "absorbance".into(),
            value: 0.5,
            unit: "AU".into(),
            at: t + 4.0,
        });
        out.push(RecordEvent::ExperimentFinished { id: e, at: t + 4.0, objective: Some(0.5), error: None });
    }
    out
}

/// A workcell's record grows through an outage of `outage`; then the link returns. Time to the first row at the
/// hub, and rows per second until the hub has them all.
fn catch_up(pg: &pg::PgCluster, outage: Duration, rows: usize, kind: Backlog, label: &str) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("lab.db");
    let proxy = proxy::Proxy::start(pg.port);
    let sql = pg::Sql::connect(&pg.url());
    let tag: String = label.chars().filter(char::is_ascii_alphanumeric).collect();
    let workcell = format!("outage-{kind:?}{tag}").to_lowercase();
    sql.execute(&format!(
        "INSERT INTO fleet.workcells (name, lab_name, lab_sha256, capabilities) VALUES ('{workcell}', 'sim', '', '{{}}')"
    ));
    let mut record = Record::open(&db).unwrap();
    let ids = record.begin_campaign(&controller::record::CampaignRow::bench()).unwrap();
    let shipper =
        Shipper::spawn(Hub::parse(&pg.url_via(proxy.port)).unwrap(), workcell.clone(), db.clone(), true).unwrap();
    shipper.wait_caught_up(Some(Duration::from_secs(30)), |_, _| {});
    proxy.set(proxy::Mode::Cut);
    let t0 = Instant::now();
    let mut written = 0;
    let mut next = (ids.first_experiment, ids.first_step);
    while written < rows {
        let batch = backlog(kind, ids.campaign, written as f64, &mut next, 2000);
        record.write(&batch).unwrap();
        written += batch.len();
    }
    drop(record);
    std::thread::sleep(outage.saturating_sub(t0.elapsed()));
    let before = shipper.status().hub_head;
    let target = shipper.local_head();
    let back = Instant::now();
    proxy.set(proxy::Mode::Pass);
    let mut first = None;
    loop {
        let s = shipper.status();
        if first.is_none() && s.hub_head > before {
            first = Some(back.elapsed());
        }
        if s.hub_head >= target {
            break;
        }
        assert!(back.elapsed() < Duration::from_secs(600), "catch-up did not end");
        std::thread::sleep(Duration::from_millis(5));
    }
    let all = back.elapsed();
    let first = first.unwrap_or(all);
    shipper.stop();
    let n = (target - before) as f64;
    println!(
        "catch-up after a {:.0} s outage, {}{label}: first rows at the hub {:.2} s after the link returned; {:.0} rows \
         in {:.1} s more, {:.0} rows/s (journal checked and projected, one connection)",
        outage.as_secs_f64(),
        match kind {
            Backlog::Exchanges => "wire exchanges only",
            Backlog::Mix => "a campaign's mix of rows",
        },
        first.as_secs_f64(),
        n,
        (all - first).as_secs_f64(),
        n / (all - first).as_secs_f64().max(1e-9)
    );
}

/// The leading learner is killed (SIGKILL) while workcells wait for proposals; the time until the standby has
/// published the next one.
fn failover(pg: &pg::PgCluster, rounds: usize) {
    let url = pg.url();
    let dir = tempfile::tempdir().unwrap();
    let campaign = write_campaign(dir.path(), "failover", 100_000, 4);
    let sql = pg::Sql::connect(&url);
    sql.execute("INSERT INTO fleet.workcells (name, lab_name, lab_sha256, capabilities) VALUES ('fo', 'sim', '', '{kind:Gantry,kind:Hotplate,kind:Spectrometer,kind:SyringePump,instrument:pump_a,instrument:pump_b}')");
    let mut learners =
        vec![spawn(&["fleet", "learn", campaign.to_str().unwrap(), "--name", "L0", "-q"], &url, dir.path(), "l.log")];
    let t0 = Instant::now();
    while sql.count("SELECT count(*) FROM fleet.proposals WHERE campaign = 'failover'") == 0 {
        assert!(t0.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut times = Vec::new();
    for i in 1..=rounds {
        learners.push(spawn(
            &["fleet", "learn", campaign.to_str().unwrap(), "--name", &format!("L{i}"), "-q"],
            &url,
            dir.path(),
            "l.log",
        ));
        std::thread::sleep(Duration::from_millis(500));
        // Claim everything open, so the next learner step must publish.
        sql.count("SELECT count(*) FROM fleet.claim('fo', 'failover', 1000)");
        let before = sql.count("SELECT max(seq) FROM fleet.proposals WHERE campaign = 'failover'");
        let leader = learners.len() - 2;
        let kill = Instant::now();
        let _ = learners[leader].kill();
        let _ = learners[leader].wait();
        sql.count("SELECT count(*) FROM fleet.claim('fo', 'failover', 1000)");
        loop {
            if sql.count("SELECT max(seq) FROM fleet.proposals WHERE campaign = 'failover'") > before {
                break;
            }
            assert!(kill.elapsed() < Duration::from_secs(60), "no learner took over");
            std::thread::sleep(Duration::from_millis(5));
        }
        times.push(kill.elapsed().as_secs_f64());
    }
    for mut l in learners {
        let _ = l.kill();
        let _ = l.wait();
    }
    println!(
        "learner failover: kill -9 of the leading learner to the standby's next proposal: median {:.2} s, max {:.2} s ({} times)",
        percentile(&mut times.clone(), 0.5),
        percentile(&mut times, 1.0),
        times.len()
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing and must not run for minutes.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    // `LAB_BENCH_FLEET=claim,instant,path,catchup,failover` (the default) picks the figures to measure (`serve`, after
    // `instant`, serves the hub it filled);
    // `chaincheck` compares the hub's chain check of schema version 3 with today's.
    let only = std::env::var("LAB_BENCH_FLEET").unwrap_or_else(|_| "claim,instant,path,catchup,failover".into());
    let wanted = |f: &str| only.split(',').any(|x| x.trim() == f);
    let Some(pg) = pg::PgCluster::start() else { return };
    let out = Command::new(LAB).args(["fleet", "init"]).env("LAB_HUB", pg.url()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "machine: {} cores, load average {}; PostgreSQL in a throwaway cluster on loopback, fsync on",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    if wanted("claim") {
        claim_latency(&pg);
    }
    if wanted("instant") {
        let budget = std::env::var("LAB_BENCH_INSTANT").ok().and_then(|s| s.parse().ok()).unwrap_or(3000);
        whole_path(&pg, budget, true, 1);
    }
    if wanted("serve") {
        serve_hub(&pg);
    }
    if wanted("path") {
        // As fast as the simulators go, which loads the path most; and at a lab clock still far faster than a real
        // lab's, where each result is a small round of shipping rather than the tail of a large one.
        whole_path(&pg, 300, false, 200_000);
        whole_path(&pg, 60, false, 2_000);
    }
    let outage = std::env::var("LAB_BENCH_OUTAGE").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    if wanted("catchup") {
        catch_up(&pg, Duration::from_secs(outage), 200_000, Backlog::Mix, "");
        catch_up(&pg, Duration::from_secs(outage), 200_000, Backlog::Exchanges, "");
    }
    if wanted("chaincheck") {
        chain_check(&pg);
    }
    if wanted("failover") {
        failover(&pg, 5);
    }
}
