//! Running campaigns: `lab campaign` (on instruments, or as a backtest against a table) and `lab resume` when no
//! controller runs it.

use std::path::{Path, PathBuf};

use super::args::*;
use super::exit_code;
use super::print_diagnostics;
use controller::load::LoadError;
use controller::run::{CampaignOptions, RunError, Summary, run_campaign};
use controller::schedule::bridge::OperatorAction;
use controller::schedule::resources::{BlockedPolicy, Policy, UnknownPolicy};

/// Runs a campaign with its options and prints its summary, or its files' problems.
pub fn campaign_command(opts: CampaignOptions) -> u8 {
    if opts.progress {
        eprintln!("lab: campaign {} -> {}", opts.campaign.display(), opts.db.display());
    }
    match run_campaign(&opts) {
        Ok(summary) => {
            print_summary(&summary);
            exit_code::of(summary.status)
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

/// Prints a campaign's summary: what ran, how long, the best experiment and the record's head.
pub fn print_summary(s: &Summary) {
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
                let level = s.levels.get(name).and_then(|l| l.iter().find(|(v, _)| (v - value).abs() < 1e-9));
                match level {
                    Some((_, label)) => println!("    {name:<16} {label}"),
                    None => println!("    {name:<16} {:>10.3} {}", value, s.units.get(name).map_or("", String::as_str)),
                }
            }
            println!("    {:<16} {:>10.4} {}", s.objective.0, b.objective, s.objective.1);
        }
        None => println!("  best              none: no experiment succeeded"),
    }
    if let Some(head) = &s.head {
        println!("  record head       {head}  (keep it: `lab verify` checks the record against it)");
    }
}

/// `lab campaign --backtest`: the campaign's proposer against a lookup table, no lab.
pub fn backtest_command(campaign: &Path, dataset: &Path, seed: Option<u64>) -> u8 {
    let inputs = match controller::load::read_source(campaign).map_err(|e| e.to_string()).and_then(|src| {
        experiments::load_campaign(src).map_err(|d| {
            print_diagnostics(&d);
            "the campaign file has problems".to_owned()
        })
    }) {
        Ok((c, _)) => c,
        Err(e) => {
            eprintln!("lab: {e}");
            return exit_code::INVALID_INPUT;
        }
    };
    let table = match std::fs::read_to_string(dataset)
        .map_err(|e| format!("cannot read {}: {e}", dataset.display()))
        .and_then(|t| experiments::backtest::Dataset::parse_csv(&t).map_err(|e| format!("{}: {e}", dataset.display())))
    {
        Ok(t) => t,
        Err(e) => {
            eprintln!("lab: {e}");
            return exit_code::INVALID_INPUT;
        }
    };
    let options = experiments::backtest::BacktestOptions { seed, budget: None, in_flight: None };
    match experiments::backtest::run_backtest(&inputs, &table, &options) {
        Ok(report) => {
            print!("{report}");
            exit_code::OK
        }
        Err(e) => {
            eprintln!("lab: {e}");
            exit_code::INVALID_INPUT
        }
    }
}

/// How steps in doubt and experiments stuck at blocked places are settled, as the command line says.
pub struct Settling<'a> {
    /// `--unknown`: `fail` or `wait`.
    pub unknown: &'a str,
    /// `--blocked`: `wait` or `fail`.
    pub blocked: &'a str,
    /// `--read-back`: `on` or `off`.
    pub read_back: &'a str,
}

impl Settling<'_> {
    fn apply(&self, opts: &mut CampaignOptions) {
        opts.unknown = if self.unknown == "wait" { UnknownPolicy::Wait } else { UnknownPolicy::Fail };
        opts.blocked = if self.blocked == "fail" { BlockedPolicy::Fail } else { BlockedPolicy::Wait };
        opts.read_back = self.read_back != "off";
    }
}

/// `lab campaign`: runs a campaign on its lab's instruments, with the scheduling and settling policies asked for.
pub fn campaign(
    campaign: PathBuf,
    db: PathBuf,
    lab: Option<PathBuf>,
    time_scale: Option<f64>,
    policy: &str,
    settling: Settling<'_>,
    sign_with: Option<PathBuf>,
    quiet: bool,
) -> u8 {
    let mut opts = CampaignOptions::new(campaign, db);
    opts.sign_with = sign_with;
    opts.lab = lab;
    opts.time_scale = time_scale;
    // A time scale asked for is a pace against the wall (to watch the run, or to stop it part-way).
    opts.paced = time_scale.is_some();
    opts.progress = !quiet;
    opts.policy = match policy {
        "greedy" => Policy::Greedy,
        "blind" => Policy::Planned { replan: false, budget: None },
        _ => Policy::Planned { replan: true, budget: None },
    };
    settling.apply(&mut opts);
    campaign_command(opts)
}

/// `lab resume`: asks a running controller to go on, or, when none runs the campaign, resumes it from the record.
pub fn resume(
    who: &OperatorArgs,
    campaign: Option<i64>,
    lab: Option<PathBuf>,
    time_scale: Option<f64>,
    settling: Settling<'_>,
    sign_with: Option<PathBuf>,
    quiet: bool,
) -> u8 {
    match controller::record::Record::open(&who.db) {
        Err(controller::record::RecordError::Locked { .. }) => {
            if sign_with.is_some() {
                eprintln!(
                    "lab: a controller is running this campaign; it goes on signing with the key it was started \
                     with (--sign-with is for resuming a stopped campaign)"
                );
            }
            super::operating::operator_command(who, OperatorAction::Resume)
        }
        Err(e) => {
            eprintln!("lab: {e}");
            exit_code::CANNOT_RUN
        }
        Ok(record) => {
            drop(record);
            let mut opts = CampaignOptions::new(PathBuf::new(), who.db.clone());
            opts.time_scale = time_scale;
            opts.paced = time_scale.is_some();
            opts.progress = !quiet;
            settling.apply(&mut opts);
            opts.sign_with = sign_with;
            let resume = controller::run::ResumeOptions { db: who.db.clone(), campaign, lab };
            match controller::run::resume_campaign(&resume, &opts) {
                Ok(summary) => {
                    print_summary(&summary);
                    exit_code::of(summary.status)
                }
                Err(e) => {
                    eprintln!("lab: {e}");
                    exit_code::CANNOT_RUN
                }
            }
        }
    }
}
