//! The `lab` command: run campaigns, check files, start simulators, look at instruments.
//!
//! Every subcommand is a thin layer over the library: parse arguments, call it, print for people, and exit with a
//! documented code ([`exit_code`]).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use controller::check::{CheckError, check_file};
use controller::diagnostics::render;
use controller::load::LoadError;
use controller::run::{CampaignOptions, RunError, Summary, run_campaign};
use protocols::Diagnostics;

/// Exit codes, stable for scripts.
mod exit_code {
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
}

#[derive(Parser)]
#[command(
    name = "lab",
    version,
    about = "Run self-driving-lab campaigns on serial instruments, and keep every result."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a closed-loop campaign: propose experiments, run them on the lab's instruments, learn, repeat.
    ///
    /// Example: lab campaign experiments/campaigns/demo.campaign.ron --db lab.db
    Campaign {
        /// The campaign file (`*.campaign.ron`).
        campaign: PathBuf,
        /// The record to append to; created if missing.
        #[arg(long, default_value = "lab.db")]
        db: PathBuf,
        /// Use this lab file instead of the one the campaign names.
        #[arg(long)]
        lab: Option<PathBuf>,
        /// Lab seconds per wall second (simulated labs only); overrides the lab file.
        #[arg(long)]
        time_scale: Option<f64>,
        /// Print only the final summary.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Check protocol, lab and campaign files without running anything; exit 0 if all are valid, 1 if not.
    ///
    /// Example: lab check protocols/library/*.protocol.ron devices/labs/sim.lab.ron
    Check {
        /// Files to check; the kind is read from each file's first word (`Protocol(`, `Lab(`, `Campaign(`).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Start a lab's simulators and print their serial port paths, so any program can talk to them.
    ///
    /// Example: lab sim devices/labs/sim.lab.ron   (then: minicom -D /dev/pts/5)
    Sim {
        /// The lab file.
        lab: PathBuf,
    },
    /// Look at serial ports and instruments.
    Devices {
        #[command(subcommand)]
        command: DevicesCommand,
    },
}

#[derive(Subcommand)]
enum DevicesCommand {
    /// List the serial ports of this machine.
    List,
    /// Open every instrument of a lab, ask who it is, and print a table (starts simulators for simulated ports).
    Probe {
        /// The lab file.
        lab: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit_code::USAGE } else { exit_code::OK });
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    ExitCode::from(match cli.command {
        Command::Campaign { campaign, db, lab, time_scale, quiet } => {
            campaign_command(CampaignOptions { campaign, db, lab, time_scale, progress: !quiet })
        }
        Command::Check { files } => check_command(&files),
        Command::Sim { lab } => sim_command(&lab),
        Command::Devices { command: DevicesCommand::List } => list_command(),
        Command::Devices { command: DevicesCommand::Probe { lab } } => probe_command(&lab),
    })
}

fn color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

fn print_diagnostics(d: &Diagnostics) {
    eprint!("{}", render(d, color()));
}

fn campaign_command(opts: CampaignOptions) -> u8 {
    if opts.progress {
        eprintln!("lab: campaign {} -> {}", opts.campaign.display(), opts.db.display());
    }
    match run_campaign(&opts) {
        Ok(summary) => {
            print_summary(&summary);
            if summary.status == "aborted" { exit_code::ABORTED } else { exit_code::OK }
        }
        Err(RunError::Load(LoadError::Invalid(d))) => {
            print_diagnostics(&d);
            eprintln!(
                "lab: {} problem(s); nothing was run",
                d.iter().filter(|d| d.severity == protocols::Severity::Error).count()
            );
            exit_code::INVALID_INPUT
        }
        Err(e) => {
            eprintln!("lab: {e}");
            exit_code::CANNOT_RUN
        }
    }
}

fn print_summary(s: &Summary) {
    let hours = s.lab_seconds / 3600.0;
    println!();
    println!("campaign `{}` {} (record {}, campaign {})", s.name, s.status, s.db.display(), s.campaign_id);
    if let Some(reason) = &s.stop_reason {
        println!("  stopped early: {reason}");
    }
    println!(
        "  experiments run   {} ({} succeeded, {} failed), at most {} at once",
        s.started, s.succeeded, s.failed, s.peak_in_flight
    );
    println!("  time              {:.1} h of lab time in {:.1} s of wall time", hours, s.wall_seconds);
    for (name, why) in &s.offline {
        println!("  offline           {name}: {why}");
    }
    match &s.best {
        Some(b) => {
            println!("  best              experiment #{}", b.seq);
            for (name, value) in &b.values {
                println!("    {name:<16} {:>10.3} {}", value, s.units.get(name).map_or("", String::as_str));
            }
            println!("    {:<16} {:>10.4} {}", s.objective.0, b.objective, s.objective.1);
        }
        None => println!("  best              none: no experiment succeeded"),
    }
}

fn check_command(files: &[PathBuf]) -> u8 {
    let mut all = Diagnostics::new();
    let mut ok = 0;
    for path in files {
        match check_file(path) {
            Ok((line, warnings)) => {
                ok += 1;
                println!("ok  {}  {line}", path.display());
                all.extend(warnings);
            }
            Err(CheckError::Invalid(d)) => all.extend(d),
            Err(CheckError::Other(msg)) => {
                eprintln!("lab: {}: {msg}", path.display());
                all.push(protocols::Diagnostic::error(
                    "L0000",
                    &protocols::SourceFile::new(path.display().to_string(), ""),
                    0..0,
                    msg,
                ));
            }
        }
    }
    print_diagnostics(&all);
    let errors = all.iter().filter(|d| d.severity == protocols::Severity::Error).count();
    if errors > 0 {
        eprintln!("lab: {errors} problem(s) in {} of {} file(s)", files.len() - ok, files.len());
        exit_code::INVALID_INPUT
    } else {
        exit_code::OK
    }
}

/// Loads a lab file and starts an I/O runtime, or prints why not and gives the exit code.
fn lab_and_runtime(path: &Path) -> Result<(devices::Lab, tokio::runtime::Runtime), u8> {
    let lab = match controller::load::load_lab_file(path) {
        Ok(l) => l,
        Err(LoadError::Invalid(d)) => {
            print_diagnostics(&d);
            return Err(exit_code::INVALID_INPUT);
        }
        Err(e) => {
            eprintln!("lab: {e}");
            return Err(exit_code::CANNOT_RUN);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().map_err(|e| {
        eprintln!("lab: cannot start the I/O runtime: {e}");
        exit_code::CANNOT_RUN
    })?;
    Ok((lab, rt))
}

fn sim_command(path: &Path) -> u8 {
    let (lab, rt) = match lab_and_runtime(path) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let clock = devices::Clock::scaled(lab.simulation.time_scale);
    rt.block_on(async {
        let sims = match devices::sim::start(&lab, clock).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("lab: cannot start the simulators: {e}");
                return exit_code::CANNOT_RUN;
            }
        };
        println!("simulators of lab `{}` (time scale {}x); Ctrl-C stops them", lab.name, lab.simulation.time_scale);
        println!("{:<12} {:<14} {:<14} port", "instrument", "driver", "line");
        for spec in &lab.instruments {
            if let Some(port) = sims.ports.get(&spec.name) {
                println!("{:<12} {:<14} {:<14} {port}", spec.name, spec.driver.name(), spec.line.to_string());
            }
        }
        let _ = tokio::signal::ctrl_c().await;
        sims.stop().await;
        exit_code::OK
    })
}

fn list_command() -> u8 {
    match devices::transport::list_ports() {
        Ok(ports) if ports.is_empty() => {
            println!("no serial ports found (simulators use pseudo-terminals, which are not listed; see `lab sim`)");
            exit_code::OK
        }
        Ok(ports) => {
            for p in ports {
                println!("{:<24} {}", p.path, p.description);
            }
            exit_code::OK
        }
        Err(e) => {
            eprintln!("lab: cannot list serial ports: {e}");
            exit_code::CANNOT_RUN
        }
    }
}

fn probe_command(path: &Path) -> u8 {
    let (lab, rt) = match lab_and_runtime(path) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let clock = devices::Clock::scaled(lab.simulation.time_scale);
    rt.block_on(async {
        let sims = if lab.instruments.iter().any(|i| i.port == devices::PortSpec::Simulated) {
            match devices::sim::start(&lab, clock.clone()).await {
                Ok(s) => Some(s),
                Err(e) => {
                    eprintln!("lab: cannot start the simulators: {e}");
                    return exit_code::CANNOT_RUN;
                }
            }
        } else {
            None
        };
        let mut failures = 0;
        println!("{:<12} {:<13} {:<22} {:<24} firmware / problem", "instrument", "kind", "port", "model");
        for spec in &lab.instruments {
            let port = match &spec.port {
                devices::PortSpec::Serial(p) => Some(p.clone()),
                devices::PortSpec::Simulated => sims.as_ref().and_then(|s| s.ports.get(&spec.name).cloned()),
            };
            let Some(port) = port else { continue };
            let result = async {
                let stream =
                    devices::transport::open_serial(&spec.name, &port, &spec.line).map_err(|e| e.to_string())?;
                let mut inst =
                    devices::drivers::build(spec, &lab.deck, stream, clock.clone(), devices::transport::discard());
                inst.identify().await.map_err(|e| e.to_string())
            }
            .await;
            match result {
                Ok(id) => println!(
                    "{:<12} {:<13} {:<22} {:<24} {}",
                    spec.name,
                    spec.kind().name(),
                    port,
                    id.model,
                    id.firmware.unwrap_or_default()
                ),
                Err(e) => {
                    failures += 1;
                    println!("{:<12} {:<13} {:<22} {:<24} {e}", spec.name, spec.kind().name(), port, "-");
                }
            }
        }
        if let Some(s) = sims {
            s.stop().await;
        }
        if failures > 0 { exit_code::CANNOT_RUN } else { exit_code::OK }
    })
}
