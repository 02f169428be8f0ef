//! `lab serve` in a real browser, on a real campaign: `lab init` makes a lab folder, `lab campaign` runs it on its
//! simulators in one process, `lab serve` serves its record from another, and headless Chromium (Debian's package;
//! `.ci/run` installs it) is driven over the DevTools protocol from this test.
//!
//! One campaign is shared by every check, in order: the live page updates without reloading; a browser without the
//! token sees no actions and its posted action is refused, with nothing written; a pause from the page pauses the
//! campaign and is recorded with the operator's name (then a resume); the drill-down goes from the campaign to an
//! exchange on the wire, whose bytes match the record; and an abort from the page ends the campaign. Screenshots of
//! each page are written to `target/tmp/serve-screenshots/` for people to look at.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

mod process;

use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::{Browser, LaunchOptions, Tab};
use process::wait_for;
use rusqlite::{Connection, OpenFlags, OptionalExtension};

const LAB: &str = env!("CARGO_BIN_EXE_lab");

/// The processes this test starts, stopped when it ends however it ends.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn record(db: &Path) -> Connection {
    Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).expect("the record opens")
}

fn js(tab: &Tab, expression: &str) -> serde_json::Value {
    tab.evaluate(expression, true)
        .unwrap_or_else(|e| panic!("evaluating `{expression}`: {e}"))
        .value
        .unwrap_or(serde_json::Value::Null)
}

fn js_str(tab: &Tab, expression: &str) -> String {
    match js(tab, expression) {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}

fn screenshot(tab: &Tab, name: &str) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-screenshots");
    std::fs::create_dir_all(&dir).expect("a folder for screenshots");
    let png = tab.capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true).expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "{name} is a PNG");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("writing the screenshot");
}

fn open(tab: &Tab, url: &str) {
    tab.navigate_to(url).and_then(|t| t.wait_until_navigated()).unwrap_or_else(|e| panic!("opening {url}: {e}"));
}

/// Runs an interaction with an element, again if the live page replaced the element in between (at most five
/// times).
fn with_element(tab: &Tab, selector: &str, act: impl Fn(&headless_chrome::Element<'_>) -> Result<(), String>) {
    let mut last = String::new();
    for _ in 0..5 {
        match tab.wait_for_element(selector).map_err(|e| e.to_string()).and_then(|e| act(&e)) {
            Ok(()) => return,
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{selector}: {last}");
}

fn click(tab: &Tab, selector: &str) {
    with_element(tab, selector, |e| e.click().map(|_| ()).map_err(|e| e.to_string()));
}

fn type_into(tab: &Tab, selector: &str, text: &str) {
    with_element(tab, selector, |e| e.click().and_then(|e| e.type_into(text)).map(|_| ()).map_err(|e| e.to_string()));
}

/// The Chromium this machine has: `LAB_CHROMIUM`, or Debian's.
fn chromium() -> PathBuf {
    let path = std::env::var_os("LAB_CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        path.exists(),
        "these tests drive a real browser and there is none at {}: install Debian's (`apt-get install -y chromium`, \
         as .ci/run does) or point LAB_CHROMIUM at one",
        path.display()
    );
    path
}

fn requests(db: &Path) -> i64 {
    record(db).query_row("SELECT count(*) FROM operator_requests", [], |r| r.get(0)).expect("counting requests")
}

#[test]
fn the_lab_in_a_browser() {
    let chromium = chromium();
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let dir = tmp.path().join("mylab");
    let db = dir.join("lab.db");
    let ok = Command::new(LAB).args(["init"]).arg(&dir).output().expect("lab init runs").status.success();
    assert!(ok, "lab init");
    // As many experiments as the rack holds, two at a time: long enough to stay running through every check (the
    // last one aborts it).
    let campaign = dir.join("first.campaign.ron");
    let text = std::fs::read_to_string(&campaign).expect("the campaign file").replace("budget: 12", "budget: 24");
    std::fs::write(&campaign, text).expect("writing the campaign");
    let log = |name: &str| std::fs::File::create(tmp.path().join(name)).expect("a log file");
    let mut processes = Processes(Vec::new());
    processes.0.push(
        Command::new(LAB)
            .arg("campaign")
            .arg(&campaign)
            .arg("--db")
            .arg(&db)
            .args(["--time-scale", "100"])
            .stdout(log("campaign.out"))
            .stderr(log("campaign.err"))
            .spawn()
            .expect("lab campaign starts"),
    );
    let campaign_err = tmp.path().join("campaign.err");
    wait_for("the campaign's first step to start", Duration::from_secs(60), || {
        if let Ok(Some(status)) = processes.0[0].try_wait() {
            panic!("lab campaign stopped ({status}): {}", std::fs::read_to_string(&campaign_err).unwrap_or_default());
        }
        db.exists()
            .then(|| {
                Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY)
                    .ok()?
                    .query_row("SELECT count(*) FROM steps WHERE started_at IS NOT NULL", [], |r| r.get::<_, i64>(0))
                    .ok()
                    .filter(|n| *n > 0)
            })
            .flatten()
    });

    let mut serve = Command::new(LAB)
        .args(["serve", "--addr", "127.0.0.1:0", "--db"])
        .arg(&db)
        .stdout(Stdio::piped())
        .stderr(log("serve.err"))
        .spawn()
        .expect("lab serve starts");
    let stdout = serve.stdout.take().expect("its output");
    processes.0.push(serve);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let link = wait_for("lab serve to print its link", Duration::from_secs(30), || {
        rx.try_recv().ok().and_then(|l| l.trim().strip_prefix("open ").map(str::to_owned))
    });
    let base = link.split("/?token=").next().expect("a link with a token").to_owned();
    assert!(base.starts_with("http://127.0.0.1:"), "{link}");

    let profile = tmp.path().join("chromium-profile");
    let args: Vec<&std::ffi::OsStr> =
        controller::serve::bench::HEADLESS_CHROMIUM.iter().map(std::ffi::OsStr::new).collect();
    let browser = Browser::new(
        LaunchOptions::default_builder()
            .path(Some(chromium))
            .headless(true)
            .sandbox(false)
            .user_data_dir(Some(profile))
            .window_size(Some((1440, 2000)))
            .args(args)
            .idle_browser_timeout(Duration::from_secs(300))
            .build()
            .expect("launch options"),
    )
    .expect("Chromium starts");

    let watcher = browser.new_tab().expect("a tab");
    live_page_updates_without_reload(&watcher, &base, &db);
    an_action_without_the_token_is_refused_and_changes_nothing(&browser, &base, &db);
    let tab = browser.new_tab().expect("a tab");
    // The printed link signs the browser in and leaves the token out of the address.
    open(&tab, &link);
    assert!(!tab.get_url().contains("token"), "the token left the address: {}", tab.get_url());
    a_pause_from_the_page_pauses_the_campaign_and_is_recorded(&tab, &base, &db);
    drill_down_from_the_campaign_to_an_exchange(&tab, &base, &db);
    an_abort_from_the_page_ends_the_campaign(&tab, &base, &db, &mut processes.0[0]);
}

fn live_page_updates_without_reload(tab: &Arc<Tab>, base: &str, db: &Path) {
    open(tab, &format!("{base}/campaigns/1"));
    js(tab, "window.__sameDocument = 'yes'; true");
    let first_version = js_str(tab, "document.body.dataset.version || '0'");
    let first_summary = js_str(tab, "document.getElementById('live-summary').innerText");
    // The record changes as steps run; the page must follow it within a few frames, and must not reload.
    let (summary, gantt) = wait_for("the live page to show a change in the record", Duration::from_secs(60), || {
        let frames: i64 = js_str(tab, "document.body.dataset.frames || '0'").parse().unwrap_or(0);
        let summary = js_str(tab, "document.getElementById('live-summary').innerText");
        let gantt = js_str(tab, "document.getElementById('img-gantt').getAttribute('src')");
        (frames >= 2 && summary != first_summary && !gantt.ends_with("v=0")).then_some((summary, gantt))
    });
    assert_eq!(js_str(tab, "window.__sameDocument"), "yes", "the page reloaded");
    assert_eq!(js(tab, "performance.getEntriesByType('navigation').length"), serde_json::json!(1));
    assert_ne!(js_str(tab, "document.body.dataset.version"), first_version);
    assert!(summary.contains("running"), "{summary}");
    assert!(gantt.contains("/campaigns/1/plots/instruments.svg?recent=1&v="), "{gantt}");
    // What the page says agrees with the record: the number of finished experiments never runs ahead of it.
    let shown: i64 = js_str(tab, "document.getElementById('done').innerText").parse().expect("a count on the page");
    let recorded: i64 = record(db)
        .query_row("SELECT count(*) FROM experiments WHERE status != 'running'", [], |r| r.get(0))
        .expect("counting");
    assert!(shown <= recorded, "the page shows {shown} done, the record {recorded}");
    // The plot the page points at is drawn.
    let loaded =
        js(tab, "(() => { const i = document.getElementById('img-gantt'); return i.complete && i.naturalWidth; })()");
    assert_eq!(loaded, serde_json::json!(960), "the Gantt chart loads");
    assert_eq!(js(tab, "document.getElementById('form-pause') === null"), serde_json::json!(true));
    screenshot(tab, "1-live-campaign-without-token");
}

fn an_action_without_the_token_is_refused_and_changes_nothing(browser: &Browser, base: &str, db: &Path) {
    let context = browser.new_context().expect("a fresh browser context, without cookies");
    let tab = context.new_tab().expect("a tab");
    open(&tab, &format!("{base}/campaigns/1"));
    let text = js_str(&tab, "document.getElementById('live-actions').innerText");
    assert!(text.contains("Sign in with the token"), "{text}");
    let before = requests(db);
    // A form posted without the token (as a script or a page elsewhere would), and one with a made-up token.
    let status = js(
        &tab,
        "fetch('/campaigns/1/pause', { method: 'POST', \
         headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, \
         body: 'csrf=guess&who=Mallory&reason=no+token' }).then(r => r.status)",
    );
    assert_eq!(status, serde_json::json!(403), "an action without the token");
    open(&tab, &format!("{base}/campaigns/1?token=not-the-token"));
    assert!(js_str(&tab, "document.title").starts_with("Refused"), "a wrong token is refused");
    assert!(js_str(&tab, "document.getElementById('error-message').innerText").contains("not this server's"));
    screenshot(&tab, "2-wrong-token-refused");
    assert_eq!(requests(db), before, "nothing was written to the record");
    let paused = record(db)
        .query_row("SELECT count(*) FROM events WHERE message LIKE 'paused:%Mallory%'", [], |r| r.get::<_, i64>(0))
        .expect("reading events");
    assert_eq!(paused, 0);
}

fn a_pause_from_the_page_pauses_the_campaign_and_is_recorded(tab: &Arc<Tab>, base: &str, db: &Path) {
    open(tab, &format!("{base}/campaigns/1"));
    type_into(tab, "#form-pause input[name=who]", "Ada Lovelace");
    type_into(tab, "#form-pause input[name=reason]", "refilling reservoir B");
    click(tab, "#form-pause button[type=submit]");
    wait_for("the page to come back from the pause", Duration::from_secs(20), || {
        let url = tab.get_url();
        assert!(url.contains("/campaigns/1"), "left the campaign: {url}");
        if url.ends_with("/pause") {
            panic!("the pause was refused: {}", js_str(tab, "document.body.innerText"));
        }
        url.contains("sent=").then_some(())
    });
    assert!(js_str(tab, "document.getElementById('flash').innerText").contains("(pause) is in the record"));
    wait_for("the page to show the campaign paused", Duration::from_secs(30), || {
        (js_str(tab, "document.getElementById('state').dataset.state") == "paused").then_some(())
    });
    let (who, reason, handled): (String, String, Option<String>) = record(db)
        .query_row(
            "SELECT who, reason, handled_at FROM operator_requests WHERE action = 'pause' ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("the pause is in the record");
    assert_eq!((who.as_str(), reason.as_str()), ("Ada Lovelace", "refilling reservoir B"));
    assert!(handled.is_some(), "the controller carried the pause out");
    let said: Option<String> = record(db)
        .query_row("SELECT message FROM events WHERE message LIKE 'paused:%' ORDER BY id DESC LIMIT 1", [], |r| {
            r.get(0)
        })
        .optional()
        .expect("reading events");
    assert!(said.is_some_and(|m| m.contains("asked by Ada Lovelace")), "the controller recorded who paused");
    let status = Command::new(LAB).args(["status", "--db"]).arg(db).output().expect("lab status runs");
    assert!(String::from_utf8_lossy(&status.stdout).contains("PAUSED"), "lab status agrees");
    screenshot(tab, "3-paused-from-the-page");

    type_into(tab, "#form-resume input[name=reason]", "reservoir refilled");
    // The operator's name was remembered from the last form.
    assert_eq!(js_str(tab, "document.querySelector('#form-resume input[name=who]').value"), "Ada Lovelace");
    click(tab, "#form-resume button[type=submit]");
    wait_for("the page to show the campaign running again", Duration::from_secs(30), || {
        (js_str(tab, "document.getElementById('state') && document.getElementById('state').dataset.state") == "running")
            .then_some(())
    });
}

fn drill_down_from_the_campaign_to_an_exchange(tab: &Arc<Tab>, base: &str, db: &Path) {
    open(tab, &format!("{base}/campaigns/1"));
    click(tab, "header nav a[href='/campaigns/1/experiments']");
    wait_for("the experiment table", Duration::from_secs(20), || {
        tab.get_url().ends_with("/campaigns/1/experiments").then_some(())
    });
    click(tab, "#experiments a[href='/campaigns/1/experiments/1']");
    wait_for("experiment #1", Duration::from_secs(20), || tab.get_url().ends_with("/experiments/1").then_some(()));
    let reason = js_str(tab, "document.getElementById('proposal').innerText");
    assert!(reason.contains("Reason"), "the proposal and why: {reason}");
    assert!(js_str(tab, "document.getElementById('parameters').innerText").contains("volume_b"));
    screenshot(tab, "4-experiment");
    // The first step that talked to an instrument: a dispense.
    let step: i64 = record(db)
        .query_row(
            "SELECT s.id FROM steps s JOIN experiments e ON e.id = s.experiment_id
             WHERE e.seq = 1 AND e.campaign_id = 1 AND EXISTS (SELECT 1 FROM commands k WHERE k.step_id = s.id)
             ORDER BY s.started_at LIMIT 1",
            [],
            |r| r.get(0),
        )
        .expect("a step with exchanges");
    click(tab, &format!("#steps a[href='/steps/{step}']"));
    wait_for("the step's page", Duration::from_secs(20), || {
        tab.get_url().ends_with(&format!("/steps/{step}")).then_some(())
    });
    assert!(js_str(tab, "document.getElementById('states').innerText").contains("running"));
    screenshot(tab, "5-step");
    let exchange: i64 = record(db)
        .query_row("SELECT min(id) FROM commands WHERE step_id = ?1", [step], |r| r.get(0))
        .expect("the step's first exchange");
    click(tab, &format!("#exchanges a[href='/exchanges/{exchange}']"));
    wait_for("the exchange's page", Duration::from_secs(20), || {
        tab.get_url().ends_with(&format!("/exchanges/{exchange}")).then_some(())
    });
    let (sent_text, received, parsed): (String, Vec<u8>, Option<String>) = record(db)
        .query_row("SELECT sent_text, received, parsed FROM commands WHERE id = ?1", [exchange], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .expect("the exchange in the record");
    assert_eq!(js_str(tab, "document.getElementById('sent-text').innerText"), sent_text);
    let hex = js_str(tab, "document.getElementById('received-hex').innerText");
    let first: Vec<String> = received.iter().take(4).map(|b| format!("{b:02x}")).collect();
    assert!(hex.contains(&first.join(" ")), "the received bytes in hex: {hex}");
    let shown = js_str(tab, "document.getElementById('parsed').innerText");
    assert_eq!(shown, parsed.unwrap_or_else(|| "nothing".to_owned()));
    screenshot(tab, "6-exchange");
    let _ = base;
}

fn an_abort_from_the_page_ends_the_campaign(tab: &Arc<Tab>, base: &str, db: &Path, controller: &mut Child) {
    open(tab, &format!("{base}/campaigns/1"));
    type_into(tab, "#form-abort input[name=reason]", "the browser test is done");
    click(tab, "#form-abort input[name=sure]");
    click(tab, "#form-abort button[type=submit]");
    let status = wait_for("the controller to stop", Duration::from_secs(60), || controller.try_wait().ok().flatten());
    assert_eq!(status.code(), Some(4), "the controller exits as aborted");
    let (status, who): (String, String) = record(db)
        .query_row(
            "SELECT c.status, r.who FROM campaigns c, operator_requests r WHERE c.id = 1 AND r.action = 'abort'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("the abort is in the record");
    assert_eq!((status.as_str(), who.as_str()), ("aborted", "Ada Lovelace"));
    wait_for("the page to show the campaign aborted", Duration::from_secs(30), || {
        (js_str(tab, "document.getElementById('state').dataset.state") == "aborted").then_some(())
    });
    screenshot(tab, "7-aborted");
}

/// Runs a command of Debian's (`openssl`, `curl`) that `.ci/run` installs, failing the test with what it said.
fn tool(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs (`apt-get install -y {program}`, as .ci/run does): {e}"));
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Starts `lab serve` with `args` and returns it with the link it printed.
fn serve(args: &[&str]) -> (Processes, String) {
    let mut child = Command::new(LAB)
        .arg("serve")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("lab serve starts");
    let stdout = child.stdout.take().expect("its output");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let processes = Processes(vec![child]);
    let link = wait_for("lab serve to print its link", Duration::from_secs(30), || {
        rx.try_recv().ok().and_then(|l| l.trim().strip_prefix("open ").map(str::to_owned))
    });
    (processes, link)
}

#[test]
fn a_given_certificate_serves_over_tls_and_bad_starts_are_refused() {
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let path = |name: &str| tmp.path().join(name).to_str().expect("a UTF-8 path").to_owned();
    let db = path("lab.db");
    let out = Command::new(LAB)
        .args(["bench", "load", "--instruments", "10", "--experiments", "20", "--in-flight", "4", "--db", &db])
        .output()
        .expect("lab bench load runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (cert, key) = (path("cert.pem"), path("key.pem"));
    tool(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &cert,
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
    );
    let (_server, link) = serve(&["--db", &db, "--addr", "127.0.0.1:0", "--tls-cert", &cert, "--tls-key", &key]);
    assert!(link.starts_with("https://127.0.0.1:"), "{link}");
    let base = link.split("/?token=").next().expect("a link with a token").to_owned();
    let page = tool("curl", &["--silent", "--show-error", "--cacert", &cert, &format!("{base}/campaigns/1")]);
    assert!(page.contains("Campaign 1: bench"), "{page}");
    // Under TLS the sign-in cookie is marked Secure, so a browser never sends it in clear.
    let head = tool("curl", &["--silent", "--show-error", "--cacert", &cert, "--head", &link]);
    let cookie = head.lines().find(|l| l.to_ascii_lowercase().starts_with("set-cookie")).expect("a cookie");
    assert!(cookie.contains("; Secure") && cookie.contains("HttpOnly"), "{cookie}");
    let plain = Command::new("curl").args(["--silent", "--max-time", "5", &base.replace("https", "http")]).output();
    assert!(!plain.expect("curl runs").status.success(), "the TLS port speaks no plain HTTP");

    // An address other machines reach needs --allow-remote; nothing listens without it.
    let refused = Command::new(LAB).args(["serve", "--db", &db, "--addr", "0.0.0.0:0"]).output().expect("lab serve");
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("can be reached from other machines"));
    // Files that are not records, or are missing, are refused before anything listens, and left as they were.
    let notes = path("notes.db");
    std::fs::write(&notes, "shopping list\n").expect("writing a file");
    for (db, says) in [(notes.as_str(), "is not a lab record"), (&path("missing.db"), "there is no record at")] {
        let out = Command::new(LAB).args(["serve", "--db", db]).output().expect("lab serve");
        assert_eq!(out.status.code(), Some(3), "{db}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(says), "{db}: {}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(std::fs::read_to_string(&notes).expect("the file"), "shopping list\n");
    assert!(!tmp.path().join("missing.db").exists());
}
