//! The record in a browser: `lab serve`, and its benchmark, `lab bench serve`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::exit_code;
use controller::serve::{Listening, ServeError, ServeOptions, serve as run};

/// `lab serve`: serves the record until interrupted, after printing the link to open (with its token).
pub fn serve(
    db: PathBuf,
    hub: Option<String>,
    addr: SocketAddr,
    allow_remote: bool,
    tls: Option<(PathBuf, PathBuf)>,
    public_key: Option<String>,
) -> u8 {
    // `--hub` without a URL takes the one in LAB_HUB, so a password stays off the command line.
    let hub = match hub.as_deref() {
        Some("") => match std::env::var("LAB_HUB") {
            Ok(url) if !url.is_empty() => Some(url),
            _ => {
                eprintln!("lab: --hub without a URL reads the hub's URL from LAB_HUB, which is not set");
                return exit_code::USAGE;
            }
        },
        _ => hub,
    };
    let what = match &hub {
        Some(url) => format!(
            "the fleet hub {} (read-only: every workcell's record as the hub holds it; actions are taken on each \
             workcell)",
            controller::fleet::hub::redact(url)
        ),
        None => format!("{} (read-only; actions go to the controller as operator requests)", db.display()),
    };
    let fleet = hub.is_some();
    let opts = ServeOptions { db, hub, addr, allow_remote, tls, public_key };
    let announce = |l: &Listening| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "lab serve: {what}");
        let _ = writeln!(out, "  open {}", l.url);
        if l.remote {
            let _ = writeln!(
                out,
                "  WARNING: listening on {}, which other machines can reach: anyone with the link can {}{}",
                l.addr,
                if fleet { "read every workcell's record" } else { "pause and abort campaigns" },
                if l.tls { "" } else { ", and without TLS the token crosses the network in clear" }
            );
        } else if fleet {
            let _ = writeln!(out, "  listening on {} only: this machine can look without the token", l.addr);
        } else {
            let _ = writeln!(
                out,
                "  listening on {} only: this machine can look without the token; pausing, resuming, aborting, \
                 confirming, clearing and restocking need the link above",
                l.addr
            );
        }
        let _ = writeln!(out, "  stop with Ctrl-C");
        let _ = out.flush();
    };
    match run(&opts, announce) {
        Ok(()) => exit_code::OK,
        Err(e @ ServeError::Remote(_)) => {
            eprintln!("lab: refusing to listen: {e}");
            exit_code::USAGE
        }
        Err(ServeError::Hub(e @ controller::fleet::FleetError::Url { .. })) => {
            eprintln!("lab: {e}");
            exit_code::USAGE
        }
        Err(e) => {
            eprintln!("lab: {e}");
            exit_code::CANNOT_RUN
        }
    }
}

/// `lab bench serve`: the pages' times and the server's memory on a large record, then the dispatch comparison.
pub fn bench_serve(
    db: &std::path::Path,
    rounds: usize,
    dispatch_rounds: usize,
    experiments: usize,
    browser: Option<PathBuf>,
) -> u8 {
    use controller::serve::bench;
    match bench::pages(db, rounds.max(1)) {
        Ok(text) => print!("{text}"),
        Err(e) => {
            eprintln!("lab: {e}");
            return exit_code::CANNOT_RUN;
        }
    }
    let updates =
        tempfile::tempdir().map_err(|e| e.to_string()).and_then(|dir| bench::updates(db, dir.path(), rounds.max(1)));
    match updates {
        Ok(text) => print!("{text}"),
        Err(e) => {
            eprintln!("lab: {e}");
            return exit_code::CANNOT_RUN;
        }
    }
    if dispatch_rounds == 0 {
        return exit_code::OK;
    }
    let watcher = browser.map_or(bench::Watcher::Stream, bench::Watcher::Browser);
    match bench::dispatch(experiments.max(1), dispatch_rounds, &watcher) {
        Ok(text) => {
            print!("{text}");
            exit_code::OK
        }
        Err(e) => {
            eprintln!("lab: {e}");
            exit_code::CANNOT_RUN
        }
    }
}
