//! The record in a browser: `lab serve`, and its benchmark, `lab bench serve`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::exit_code;
use controller::serve::{Listening, ServeError, ServeOptions, serve as run};

/// `lab serve`: serves the record until interrupted, after printing the link to open (with its token).
pub fn serve(
    db: PathBuf,
    addr: SocketAddr,
    allow_remote: bool,
    tls: Option<(PathBuf, PathBuf)>,
    public_key: Option<String>,
) -> u8 {
    let opts = ServeOptions { db: db.clone(), addr, allow_remote, tls, public_key };
    let announce = |l: &Listening| {
        let mut out = std::io::stdout().lock();
        let _ =
            writeln!(out, "lab serve: {} (read-only; actions go to the controller as operator requests)", db.display());
        let _ = writeln!(out, "  open {}", l.url);
        if l.remote {
            let _ = writeln!(
                out,
                "  WARNING: listening on {}, which other machines can reach: anyone with the link can pause and abort \
                 campaigns{}",
                l.addr,
                if l.tls { "" } else { ", and without TLS the token crosses the network in clear" }
            );
        } else {
            let _ = writeln!(
                out,
                "  listening on {} only: this machine can look without the token; pausing, resuming, aborting, \
                 confirming and clearing need the link above",
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
