//! The `lab` binary's commands, one module per family, each a thin layer over the library's public API.
//!
//! [`args`] holds the clap types; `main.rs` parses them and dispatches each command to its family: [`running`]
//! (campaigns, resuming from the record, backtests), [`inspecting`] (status, report, verify, export, replay),
//! [`operating`] (pause, resume, abort, confirm, clear and restock requests to a running controller), [`planning`] (plan and
//! benchmarks), [`serving`] (the record in a browser), [`devices`] (simulators and serial ports), [`fleet`] (`lab
//! fleet ...` and `lab workcell`, on a PostgreSQL hub) and [`setup`] (init, check, keys, completions). Each command
//! prints for people and returns a documented exit code ([`exit_code`]).

pub mod args;
pub mod devices;
pub mod fleet;
pub mod inspecting;
pub mod operating;
pub mod planning;
pub mod running;
pub mod serving;
pub mod setup;

use std::io::IsTerminal;

use controller::load::diagnostics::render;
use protocols::Diagnostics;

/// Exit codes, stable for scripts.
pub mod exit_code {
    /// Everything worked.
    pub const OK: u8 = 0;
    /// An input file is invalid (the diagnostics say where and why); nothing was run.
    pub const INVALID_INPUT: u8 = 1;
    /// The command line is wrong (clap prints usage).
    pub const USAGE: u8 = 2;
    /// The campaign could not run: the record or the lab refused (nothing was run, or it stopped safely).
    pub const CANNOT_RUN: u8 = 3;
    /// The operator aborted the campaign; instruments were put in their safe state.
    pub const ABORTED: u8 = 4;

    /// The exit code of a run that ended `status` (`finished`, `aborted`, or `stopped`: an instrument a step needs
    /// went offline, so the run stopped safely without finishing the campaign, for `lab resume`).
    pub fn of(status: &str) -> u8 {
        match status {
            "aborted" => ABORTED,
            "stopped" => CANNOT_RUN,
            _ => OK,
        }
    }
}

/// Whether to colour what goes to stderr: on a terminal, unless `NO_COLOR` is set.
pub fn color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Prints diagnostics to stderr, coloured where [`color`] says.
pub fn print_diagnostics(d: &Diagnostics) {
    eprint!("{}", render(d, color()));
}

/// Sends logs to stderr at the level `-q` and `-v` ask for (`RUST_LOG`, if set, wins), through the live view's
/// writer so a log line never tears the view.
pub fn init_logging(quiet: bool, verbose: u8) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| level.into()))
        .with_writer(controller::run::live::LogWriter)
        .init();
}
