//! `lab bench serve`: how fast the server's pages load on a large record, how much memory it takes, and whether an
//! open live page costs a running controller anything.
//!
//! The server runs as its own process (`lab serve`, started from this binary), as it does beside a lab. Pages are
//! fetched over loopback with hyper's HTTP/1.1 client on a new connection each, as a browser's first visit: time to
//! first byte is until the response's head has arrived, full load until the last byte of the body; the campaign
//! page's full load also fetches everything the page loads (style, script, the two plots), one after another, so it
//! is an upper bound of what a browser, which fetches them in parallel, waits. The update latency is the time from a
//! change committed to (a copy of) the record until an open live stream has a frame showing it ([`updates`]). The
//! dispatch comparison runs `lab
//! bench load`'s simulated lab (`plan::bench::load`) into fresh records, alternately with nothing watching and with a
//! live page open on the record as it is written (a `lab serve` and either a client that follows the page's stream,
//! as the page's script does, or a headless browser showing the page), in one run, so the two are measured under the
//! same conditions.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

/// What opens the live page in the dispatch comparison.
#[derive(Debug, Clone)]
pub enum Watcher {
    /// A client that follows the page's stream of updates, as the page's script does.
    Stream,
    /// A headless browser (the path to it) showing the page.
    Browser(PathBuf),
}

/// How Chromium runs headless on a machine without a display, as root, talking to nothing but the page (the
/// benchmark and the browser tests use the same flags, with a fresh `--user-data-dir` each).
pub const HEADLESS_CHROMIUM: [&str; 7] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
];

/// A `lab serve` process, stopped when dropped.
struct ServerProcess {
    child: Child,
    addr: SocketAddr,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServerProcess {
    /// Starts `lab serve` on `db` on a free loopback port and waits (at most 30 s) for its link.
    fn start(db: &Path) -> Result<ServerProcess, String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find the lab binary: {e}"))?;
        let mut child = Command::new(exe)
            .args(["serve", "--addr", "127.0.0.1:0", "--db"])
            .arg(db)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start lab serve: {e}"))?;
        let stdout = child.stdout.take().ok_or("lab serve has no output")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut server = ServerProcess { child, addr: SocketAddr::from(([127, 0, 0, 1], 0)) };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).map_err(|_| "lab serve printed no link within 30 s".to_owned())?;
            if let Some(url) = line.trim().strip_prefix("open http://") {
                let host = url.split('/').next().unwrap_or_default();
                server.addr = host.parse().map_err(|e| format!("lab serve printed `{line}`: {e}"))?;
                return Ok(server);
            }
        }
    }

    /// The server's resident memory now and at its peak, in bytes (Linux).
    fn memory(&self) -> Option<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let field = |name: &str| -> Option<u64> {
            let line = status.lines().find(|l| l.starts_with(name))?;
            Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
        };
        Some((field("VmRSS:")?, field("VmHWM:")?))
    }

    /// The processor time the server has used (user and system), from `/proc` (Linux, whose `/proc` counts in
    /// hundredths of a second).
    fn cpu(&self) -> Option<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        // The fields after the command's name (which is in parentheses and may hold spaces): utime and stime are
        // the 12th and 13th.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<u64> = rest.split_whitespace().skip(11).take(2).filter_map(|f| f.parse().ok()).collect();
        (fields.len() == 2).then(|| Duration::from_millis((fields[0] + fields[1]) * 10))
    }
}

/// Sends a GET on a new connection; returns when the response's head has arrived.
async fn send(addr: SocketAddr, path: &str) -> Result<hyper::Response<hyper::body::Incoming>, String> {
    let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("connecting to {addr}: {e}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let request = hyper::Request::get(path)
        .header("host", addr.to_string())
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender.send_request(request).await.map_err(|e| format!("GET {path}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("GET {path}: {}", response.status()));
    }
    Ok(response)
}

/// One GET on a new connection: (time to the response's head, time to its last byte, the body).
async fn get(addr: SocketAddr, path: &str) -> Result<(Duration, Duration, Bytes), String> {
    let t0 = Instant::now();
    let response = send(addr, path).await?;
    let head = t0.elapsed();
    let body = response.into_body().collect().await.map_err(|e| format!("GET {path}: {e}"))?.to_bytes();
    Ok((head, t0.elapsed(), body))
}

/// Whether a chunk of a live stream is a frame.
fn is_frame(f: &hyper::body::Frame<Bytes>) -> bool {
    f.data_ref().is_some_and(|d| d.starts_with(b"event: frame"))
}

/// The time until a stream's first event: the live page's first frame.
async fn first_frame(addr: SocketAddr, path: &str) -> Result<Duration, String> {
    let t0 = Instant::now();
    let mut body = send(addr, path).await?.into_body();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), body.frame()).await {
            Ok(Some(Ok(f))) if is_frame(&f) => return Ok(t0.elapsed()),
            Ok(Some(Ok(_))) => continue,
            _ => return Err(format!("no frame on {path} within 10 s")),
        }
    }
}

/// Follows a live stream, counting its frames, until the task is dropped.
async fn follow(addr: SocketAddr, path: String, frames: std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let Ok(response) = send(addr, &path).await else { return };
    let mut body = response.into_body();
    while let Some(Ok(f)) = body.frame().await {
        if is_frame(&f) {
            frames.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Milliseconds, for the tables.
fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The median and the largest of some times, in milliseconds.
fn median_max(v: &[Duration]) -> (f64, f64) {
    let mut v: Vec<f64> = v.iter().map(|d| ms(*d)).collect();
    v.sort_by(f64::total_cmp);
    (v.get(v.len() / 2).copied().unwrap_or(f64::NAN), v.last().copied().unwrap_or(f64::NAN))
}

/// The addresses of what a page loads: its style sheet, script and images.
fn resources(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["src=\"", "href=\"/assets/"] {
        let mut rest = html;
        while let Some(i) = rest.find(attr) {
            let after = &rest[i + attr.len()..];
            let end = after.find('"').unwrap_or(after.len());
            let prefix = if attr.starts_with("href") { "/assets/" } else { "" };
            out.push(format!("{prefix}{}", after[..end].replace("&amp;", "&")));
            rest = &after[end..];
        }
    }
    out
}

/// Times the pages of the latest campaign of `db` (a large record, as `lab bench load --db` writes) over `rounds`
/// rounds, and prints a table.
pub fn pages(db: &Path, rounds: usize) -> Result<String, String> {
    let conn = super::record::open(db).map_err(|e| e.to_string())?;
    let campaign =
        crate::record::latest_campaign(&conn).map_err(|e| e.to_string())?.ok_or("the record has no campaign")?;
    let (experiments, middle, step): (i64, i64, i64) = conn
        .query_row(
            "SELECT count(*), coalesce(max(seq) / 2, 1),
                    (SELECT min(s.id) FROM steps s JOIN experiments e ON e.id = s.experiment_id
                     WHERE e.campaign_id = ?1 AND e.seq = (SELECT max(seq) / 2 FROM experiments WHERE campaign_id = ?1))
             FROM experiments WHERE campaign_id = ?1",
            [campaign],
            |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, Option<i64>>(2)?.unwrap_or(1))),
        )
        .map_err(|e| e.to_string())?;
    drop(conn);
    let server = ServerProcess::start(db)?;
    let idle = server.memory();
    let addr = server.addr;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let pages: Vec<(String, String)> = vec![
        ("campaign page (live)".into(), format!("/campaigns/{campaign}")),
        ("experiment page".into(), format!("/campaigns/{campaign}/experiments/{middle}")),
        ("experiment table, 100 rows".into(), format!("/campaigns/{campaign}/experiments")),
        ("experiment table, by objective".into(), format!("/campaigns/{campaign}/experiments?sort=objective&dir=desc")),
        ("step page".into(), format!("/steps/{step}")),
        ("campaigns".into(), "/".into()),
    ];
    // The rows: every page, then what the campaign page loads (named by its path), each as (first bytes, full loads,
    // bytes).
    type Row = (String, Vec<Duration>, Vec<Duration>, usize);
    let (rows, campaign_full, frames) = runtime.block_on(async {
        let mut rows: Vec<Row> = pages.iter().map(|(name, _)| (name.clone(), Vec::new(), Vec::new(), 0)).collect();
        let mut campaign_full = Vec::new();
        let mut frames = Vec::new();
        let note = |rows: &mut Vec<Row>, name: String, head: Duration, full: Duration, bytes: usize| {
            let i = rows.iter().position(|r| r.0 == name).unwrap_or_else(|| {
                rows.push((name, Vec::new(), Vec::new(), 0));
                rows.len() - 1
            });
            rows[i].1.push(head);
            rows[i].2.push(full);
            rows[i].3 = bytes;
        };
        // Two rounds to warm the server's connections and the system's file cache, not counted.
        for round in 0..rounds + 2 {
            let counted = round >= 2;
            for (name, path) in &pages {
                let (head, full, body) = get(addr, path).await?;
                if counted {
                    note(&mut rows, name.clone(), head, full, body.len());
                }
                if path == &pages[0].1 {
                    // The campaign page with everything it loads, one after another.
                    let html = String::from_utf8_lossy(&body).into_owned();
                    let mut total = full;
                    for r in resources(&html) {
                        let (head, full, body) = get(addr, &r).await?;
                        total += full;
                        if counted {
                            let name = format!("  its {}", r.split('?').next().unwrap_or(&r));
                            note(&mut rows, name, head, full, body.len());
                        }
                    }
                    if counted {
                        campaign_full.push(total);
                    }
                }
            }
            let frame = first_frame(addr, &format!("/campaigns/{campaign}/live")).await?;
            if counted {
                frames.push(frame);
            }
        }
        Ok::<_, String>((rows, campaign_full, frames))
    })?;
    let peak = server.memory();
    let mut out = String::new();
    use std::fmt::Write;
    let _ = writeln!(
        out,
        "lab serve on {} (campaign {campaign}, {experiments} experiments): {rounds} rounds, each page on a new \
         connection; median and largest, ms",
        db.display()
    );
    let _ = writeln!(out, "  {:<44} {:>16} {:>16} {:>10}", "page", "first byte", "full load", "bytes");
    for (name, head, full, bytes) in &rows {
        let (h, hm) = median_max(head);
        let (f, fm) = median_max(full);
        let _ = writeln!(out, "  {name:<44} {h:>7.1} ({hm:>6.1}) {f:>7.1} ({fm:>6.1}) {bytes:>10}");
    }
    let (c, cm) = median_max(&campaign_full);
    let _ = writeln!(out, "  {:<44} {:>16} {c:>7.1} ({cm:>6.1})", "campaign page and all it loads, in turn", "");
    let (f, fm) = median_max(&frames);
    let _ = writeln!(out, "  {:<44} {:>16} {f:>7.1} ({fm:>6.1})", "live stream, first frame", "");
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    if let (Some((idle, _)), Some((now, hwm))) = (idle, peak) {
        let _ = writeln!(
            out,
            "  server memory: {:.1} MiB resident after starting, {:.1} MiB after the rounds, {:.1} MiB at its peak",
            mib(idle),
            mib(now),
            mib(hwm)
        );
    }
    Ok(out)
}

/// Update latency: how long after a change is committed to the record an open live page has it. The record at `db`
/// is copied into `dir`, and the copy's latest campaign marked running (the copy only: a finished campaign takes no
/// operator requests); a `lab serve` follows the copy, and a client follows the campaign's live stream as the page's
/// script does. Each round writes one operator request with `run::operator::request`, as `lab pause` writes it, and
/// times from its commit until a frame that shows it (`request #N`, in the page's actions section) arrives.
pub fn updates(db: &Path, dir: &Path, rounds: usize) -> Result<String, String> {
    let copy = dir.join("updates.db");
    let conn = super::record::open(db).map_err(|e| e.to_string())?;
    // `VACUUM INTO` copies the record with its write-ahead log applied, as one file.
    conn.execute("VACUUM INTO ?1", [copy.to_string_lossy()]).map_err(|e| format!("copying {}: {e}", db.display()))?;
    drop(conn);
    let campaign = {
        let c = rusqlite::Connection::open(&copy).map_err(|e| e.to_string())?;
        let id = crate::record::latest_campaign(&c).map_err(|e| e.to_string())?.ok_or("the record has no campaign")?;
        c.execute("UPDATE campaigns SET status = 'running', finished_at = NULL WHERE id = ?1", [id])
            .map_err(|e| e.to_string())?;
        id
    };
    let server = ServerProcess::start(&copy)?;
    let addr = server.addr;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let lags = runtime.block_on(async {
        let mut body = send(addr, &format!("/campaigns/{campaign}/live")).await?.into_body();
        let mut lags = Vec::new();
        for _ in 0..rounds {
            let db = copy.clone();
            let action = crate::schedule::bridge::OperatorAction::Pause;
            let (id, _) = tokio::task::spawn_blocking(move || {
                crate::run::operator::request(&db, &action, "bench", "update latency")
            })
            .await
            .map_err(|e| e.to_string())??;
            let t0 = Instant::now();
            let needle = format!("request #{id}");
            loop {
                match tokio::time::timeout(Duration::from_secs(10), body.frame()).await {
                    Ok(Some(Ok(f))) => {
                        if f.data_ref().is_some_and(|d| String::from_utf8_lossy(d).contains(&needle)) {
                            lags.push(t0.elapsed());
                            break;
                        }
                    }
                    _ => return Err(format!("no frame showed {needle} within 10 s")),
                }
            }
            // Spaced as a person's changes would be, beyond the shortest time between two frames.
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
        Ok::<_, String>(lags)
    })?;
    drop(server);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", copy.display()));
    }
    let (m, mx) = median_max(&lags);
    let mut sorted: Vec<f64> = lags.iter().map(|d| ms(*d)).collect();
    sorted.sort_by(f64::total_cmp);
    let least = sorted.first().copied().unwrap_or(f64::NAN);
    Ok(format!(
        "  update latency (a request committed to the record until an open live page has it), {rounds} changes: \
         median {m:.0} ms, least {least:.0} ms, largest {mx:.0} ms\n"
    ))
}

/// What one load run measured.
struct LoadRun {
    /// Steps per wall second of the run (scheduler and record).
    rate: f64,
    /// The scheduler's own seconds.
    scheduler: f64,
    /// Frames the watcher received.
    frames: usize,
    /// The server's processor time and the wall time the page was open, with a page open.
    server: Option<(Duration, Duration)>,
}

/// One load run into a fresh record at `db`, with a live page open on it if `watcher` says how.
fn load_run(db: &Path, experiments: usize, watcher: Option<&Watcher>) -> Result<LoadRun, String> {
    let run = {
        let db = db.to_owned();
        std::thread::spawn(move || crate::plan::bench::load(100, experiments, 60, &db))
    };
    let mut frames = 0;
    let mut server_use = None;
    if let Some(w) = watcher {
        // The page opens as soon as the campaign is in the record, as a technician's would.
        let deadline = Instant::now() + Duration::from_secs(20);
        while super::record::open(db).ok().and_then(|c| crate::record::latest_campaign(&c).ok().flatten()).is_none() {
            if Instant::now() > deadline || run.is_finished() {
                return Err("the load run's campaign did not appear in its record".to_owned());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let server = ServerProcess::start(db)?;
        let (cpu0, t0) = (server.cpu(), Instant::now());
        let url = format!("http://{}/campaigns/1", server.addr);
        match w {
            Watcher::Stream => {
                let runtime =
                    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
                let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
                let task = follow(server.addr, "/campaigns/1/live".to_owned(), count.clone());
                let finished = async {
                    while !run.is_finished() {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                };
                runtime.block_on(async {
                    tokio::select! {
                        _ = task => {}
                        _ = finished => {}
                    }
                });
                frames = count.load(std::sync::atomic::Ordering::Relaxed);
            }
            Watcher::Browser(path) => {
                let profile = db.with_extension("chromium-profile");
                let mut browser = Command::new(path)
                    .args(HEADLESS_CHROMIUM)
                    // A browser with a debugging port stays open on its page until it is stopped.
                    .arg("--remote-debugging-port=0")
                    .arg(format!("--user-data-dir={}", profile.display()))
                    .arg(&url)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .map_err(|e| format!("cannot start {}: {e}", path.display()))?;
                while !run.is_finished() {
                    std::thread::sleep(Duration::from_millis(10));
                }
                let _ = browser.kill();
                let _ = browser.wait();
                let _ = std::fs::remove_dir_all(&profile);
            }
        }
        server_use = cpu0.zip(server.cpu()).map(|(a, b)| (b.saturating_sub(a), t0.elapsed()));
        drop(server);
    }
    let report = run.join().map_err(|_| "the load run panicked".to_owned())??;
    if !report.run.completed || !report.intact {
        return Err("the load run did not complete, or its record is not intact".to_owned());
    }
    Ok(LoadRun {
        rate: report.run.steps as f64 / report.wall.as_secs_f64(),
        scheduler: report.run.decision.as_secs_f64(),
        frames,
        server: server_use,
    })
}

/// Runs `lab bench load`'s lab (`experiments` experiments) `rounds` times without and with a live page open on its
/// record, alternately, and prints the controller's dispatch rate in each.
pub fn dispatch(experiments: usize, rounds: usize, watcher: &Watcher) -> Result<String, String> {
    let dir = std::env::temp_dir().join(format!("lab-bench-serve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
    let result = dispatch_in(&dir, experiments, rounds, watcher);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn dispatch_in(dir: &Path, experiments: usize, rounds: usize, watcher: &Watcher) -> Result<String, String> {
    let mut without = Vec::new();
    let mut with = Vec::new();
    let mut frames = Vec::new();
    let mut server = Vec::new();
    for round in 0..rounds {
        // The order alternates, so a drift of the machine's speed over the run weighs on both alike.
        for open in if round % 2 == 0 { [false, true] } else { [true, false] } {
            let db = dir.join(format!("round-{round}-{open}.db"));
            let run = load_run(&db, experiments, open.then_some(watcher))?;
            if open {
                with.push((run.rate, run.scheduler));
                frames.push(run.frames);
                if let Some((cpu, wall)) = run.server {
                    server.push(cpu.as_secs_f64() / wall.as_secs_f64().max(1e-9));
                }
            } else {
                without.push((run.rate, run.scheduler));
            }
            for suffix in ["", "-wal", "-shm", ".lock"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
            }
        }
    }
    let summary = |v: &[(f64, f64)]| {
        let mut rates: Vec<f64> = v.iter().map(|r| r.0).collect();
        rates.sort_by(f64::total_cmp);
        let mut sched: Vec<f64> = v.iter().map(|r| r.1).collect();
        sched.sort_by(f64::total_cmp);
        (rates[rates.len() / 2], rates[0], rates[rates.len() - 1], sched[sched.len() / 2])
    };
    let (a, alo, ahi, asched) = summary(&without);
    let (b, blo, bhi, bsched) = summary(&with);
    let mut out = String::new();
    use std::fmt::Write;
    let what = match watcher {
        Watcher::Stream => format!("a client following the live page's stream; frames received per run: {frames:?}"),
        Watcher::Browser(p) => format!("{} showing the live page (the browser's frames are not counted)", p.display()),
    };
    let _ = writeln!(
        out,
        "the controller's dispatch rate, {experiments} experiments on 100 instruments, {rounds} rounds each way \
         (median, range; scheduler time median)"
    );
    let _ = writeln!(out, "  nothing watching      {a:>9.0} steps/s ({alo:.0} to {ahi:.0}); scheduler {asched:.2} s");
    let _ = writeln!(out, "  live page open        {b:>9.0} steps/s ({blo:.0} to {bhi:.0}); scheduler {bsched:.2} s");
    let _ = writeln!(out, "  ratio of medians      {:.3} (page open / nothing watching)", b / a);
    let _ = writeln!(out, "  the page: {what}");
    let shares: Vec<String> = server.iter().map(|s| format!("{:.0}%", 100.0 * s)).collect();
    let _ = writeln!(
        out,
        "  lab serve's processor time while the page was open, as a share of one core: {}",
        shares.join(", ")
    );
    Ok(out)
}
