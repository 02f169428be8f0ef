//! A new user's first campaign, end to end through the `lab` binary: `lab init`, `lab check`, `lab campaign`
//! watched with `lab status` from another process while it runs, then `lab status`, `lab report` and `lab verify`
//! on the finished record. The report's SVG and HTML are parsed as XML, and checked for the elements each plot
//! must have and for anything that would need a network; the page is then rendered in a headless Chromium (Debian's
//! `chromium`, which `.ci/run` installs), and the test fails if there is none, unless `LAB_REPORT_NO_BROWSER=1` says
//! to leave the browser out (`.ci/run` never sets it).
#![cfg(unix)]

mod process;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use process::{Process, output};

fn lab(args: &[&str]) -> (bool, String, String) {
    let out = output(Command::new(env!("CARGO_BIN_EXE_lab")).args(args).env_remove("RUST_LOG"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}

/// Counts the elements called `name` in an XML tree.
fn count(doc: &roxmltree::Document<'_>, name: &str) -> usize {
    doc.descendants().filter(|n| n.tag_name().name() == name).count()
}

fn check_svg(file: &Path, must_have: &[(&str, usize)]) {
    let text = std::fs::read_to_string(file).expect("the SVG was written");
    let doc =
        roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{} is not well-formed: {e}", file.display()));
    assert_eq!(doc.root_element().tag_name().name(), "svg", "{}", file.display());
    for (name, at_least) in must_have {
        let n = count(&doc, name);
        assert!(n >= *at_least, "{}: {n} <{name}> elements, expected at least {at_least}", file.display());
    }
}

fn check_png(file: &Path) {
    let bytes = std::fs::read(file).expect("the PNG was written");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{} is not a PNG", file.display());
    let width = u32::from_be_bytes(bytes[16..20].try_into().expect("an IHDR chunk"));
    assert_eq!(width, 960, "{}", file.display());
}

#[test]
fn a_new_lab_folder_runs_and_reports_from_an_empty_folder() {
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let dir = tmp.path().join("mylab");
    let db = dir.join("lab.db");

    let (ok, out, err) = lab(&["init", path(&dir)]);
    assert!(ok, "lab init: {err}");
    assert!(out.contains("first.campaign.ron"), "{out}");
    let (ok, _, err) = lab(&["init", path(&dir)]);
    assert!(!ok && err.contains("already exists"), "a second init must refuse: {err}");
    for file in ["bench.lab.ron", "reaction.protocol.ron", "first.campaign.ron"] {
        let (ok, out, err) = lab(&["check", path(&dir.join(file))]);
        assert!(ok && out.starts_with("ok"), "lab check {file}: {out}{err}");
    }

    // The campaign runs in its own process; `lab status` reads the record from this one while it runs.
    let campaign = dir.join("first.campaign.ron");
    let mut child = Process::spawn_captured(
        Command::new(env!("CARGO_BIN_EXE_lab"))
            .args(["campaign", path(&campaign), "--db", path(&db), "--time-scale", "500"])
            .stdin(Stdio::null()),
        "lab campaign",
    );
    let started = Instant::now();
    let mut seen_running = None;
    while started.elapsed() < Duration::from_secs(120) {
        if !child.running() {
            break;
        }
        if db.exists() {
            let (ok, out, _) = lab(&["status", "--db", path(&db)]);
            if ok && out.contains("running (") {
                seen_running = Some(out);
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = child.output_within(Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "lab campaign failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("campaign `first` finished"), "{stdout}");
    // Not a terminal: the live view is plain lines, one per finished experiment.
    assert!(stderr.contains("12/12 done"), "{stderr}");
    let running = seen_running.expect("lab status never saw a running step while the campaign ran");
    assert!(running.contains(": running") && running.contains("instrument"), "{running}");

    let (ok, status, err) = lab(&["status", "--db", path(&db)]);
    assert!(ok, "{err}");
    assert!(status.contains("finished") && status.contains("12/12 done"), "{status}");
    assert!(status.contains("best         absorbance"), "{status}");

    let out_dir = dir.join("report");
    let (ok, out, err) = lab(&["report", "--db", path(&db), "--out", path(&out_dir)]);
    assert!(ok, "lab report: {err}");
    assert!(out.contains("report.html"), "{out}");
    let experiments = 12;
    check_svg(&out_dir.join("objective.svg"), &[("circle", experiments), ("polyline", 1), ("text", 10)]);
    check_svg(&out_dir.join("parameters.svg"), &[("circle", 2 * experiments), ("text", 10)]);
    // Eight steps per experiment on six instruments, each a rectangle over its instrument's idle band.
    check_svg(&out_dir.join("instruments.svg"), &[("rect", 8 * experiments + 6), ("text", 6)]);
    check_svg(&out_dir.join("predicted.svg"), &[("line", 3), ("circle", 1), ("text", 5)]);
    for plot in ["objective", "parameters", "instruments", "predicted"] {
        check_png(&out_dir.join(format!("{plot}.png")));
    }

    let html = std::fs::read_to_string(out_dir.join("report.html")).expect("the page was written");
    let doc = roxmltree::Document::parse_with_options(
        &html,
        roxmltree::ParsingOptions { allow_dtd: true, ..roxmltree::ParsingOptions::default() },
    )
    .unwrap_or_else(|e| panic!("report.html is not well-formed: {e}"));
    assert_eq!(doc.root_element().tag_name().name(), "html");
    assert_eq!(count(&doc, "svg"), 4, "the four plots are inlined");
    assert_eq!(count(&doc, "table"), 2);
    let section = |id: &str| {
        doc.descendants()
            .find(|n| n.tag_name().name() == "section" && n.attribute("id") == Some(id))
            .unwrap_or_else(|| panic!("no section `{id}`"))
    };
    let rows = |id: &str| -> Vec<Vec<String>> {
        section(id)
            .descendants()
            .filter(|n| n.tag_name().name() == "tr")
            .map(|tr| tr.children().filter(|c| c.is_element()).map(|c| c.text().unwrap_or("").to_owned()).collect())
            .collect()
    };
    assert_eq!(rows("experiments").len(), experiments + 1, "a row per experiment under the header");
    // Expected against real step durations: a row per instrument (each runs one operation), and the plates' heats,
    // which the heating and cooling model follows, within a tenth of the truth.
    let durations = rows("durations");
    assert_eq!(durations.len(), 6 + 1, "{durations:?}");
    for row in durations.iter().filter(|r| r[1] == "heat") {
        let ratio: f64 = row[5].parse().expect("a ratio");
        assert!((0.9..=1.1).contains(&ratio), "heats on {} took {ratio} times the expected", row[0]);
    }
    assert!(count(&doc, "h2") >= 6);
    for node in doc.descendants().filter(|n| n.is_element()) {
        for attr in node.attributes() {
            let v = attr.value();
            let external = (attr.name() == "src" || attr.name() == "href") && v.contains("://");
            assert!(!external, "the page loads {v} from the network");
        }
    }
    assert!(!html.contains("<script"), "the page runs no script");
    screenshot(&out_dir.join("report.html"));

    let (ok, out, err) = lab(&["verify", "--db", path(&db)]);
    assert!(ok && out.contains("intact"), "lab verify: {out}{err}");
}

/// Renders the page in a headless Chromium, as a scientist's browser would, offline, and checks the screenshot is a
/// full page of pixels. `LAB_CHROMIUM` names a browser other than `chromium` on the `PATH`. A machine without one
/// fails the test, unless `LAB_REPORT_NO_BROWSER=1` asks to leave this check out (it then says so).
fn screenshot(page: &Path) {
    let browser = std::env::var("LAB_CHROMIUM").unwrap_or_else(|_| "chromium".to_owned());
    let shot = page.with_file_name("screenshot.png");
    // A profile of its own, so nothing of a person's browser is read or written, and a fresh one each run.
    let profile = tempfile::tempdir().expect("a folder for the browser's profile");
    let mut cmd = Command::new(&browser);
    // `--no-sandbox` because CI runs as root, where Chromium refuses its sandbox; the rest keep it offline and quiet.
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        "--window-size=1280,2600",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .arg(format!("--screenshot={}", shot.display()))
    .arg(format!("file://{}", page.display()))
    .stdin(Stdio::null());
    let browser_run = match Process::try_spawn_captured(&mut cmd, &browser) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let opted_out = std::env::var("LAB_REPORT_NO_BROWSER").is_ok_and(|v| v == "1");
            assert!(
                opted_out,
                "no `{browser}` on this machine to render the report (Debian: `apt-get install chromium`; `.ci/run` \
                 installs it); set LAB_REPORT_NO_BROWSER=1 to leave this check out"
            );
            eprintln!("LAB_REPORT_NO_BROWSER=1: the report was NOT rendered in a browser");
            return;
        }
        Err(e) => panic!("{browser} did not start: {e}"),
        Ok(p) => p,
    };
    let out = browser_run.output_within(Duration::from_secs(120));
    assert!(
        out.status.success(),
        "{browser} failed to render the report: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&shot).expect("the screenshot was written");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "the screenshot is not a PNG");
    let width = u32::from_be_bytes(bytes[16..20].try_into().expect("an IHDR chunk"));
    assert_eq!(width, 1280, "the screenshot has the window's width");
    // A blank page compresses to a few kilobytes; four plots, a summary and a table do not.
    assert!(bytes.len() > 100_000, "the screenshot is nearly empty ({} bytes)", bytes.len());
    if let Ok(keep) = std::env::var("LAB_REPORT_SCREENSHOT") {
        std::fs::copy(&shot, keep).expect("the screenshot is copied");
    }
}

#[test]
fn a_missing_record_is_named() {
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let db = tmp.path().join("nothing.db");
    for args in [vec!["status", "--db", path(&db)], vec!["report", "--db", path(&db), "--out", path(tmp.path())]] {
        let (ok, _, err) = lab(&args);
        assert!(!ok);
        assert!(err.contains("there is no record at"), "{err}");
    }
    assert!(!db.exists(), "reading must not create the record");
}
