//! The fleet's commands: `lab fleet init|learn|status|retire|settle|grant|verify`, `lab workcell`, and `lab report` and `lab
//! export` of a fleet campaign read from the hub. Every message names the hub by its redacted URL.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::args::{FleetCommand, HubArg};
use super::exit_code;
use controller::fleet::workcell::{WorkcellOptions, run_workcell};
use controller::fleet::{FleetError, Hub, learner, operate, verify};
use controller::schedule::resources::{Policy, UnknownPolicy};

/// The exit code for a fleet error: a refusal is the input's fault, the rest could not run.
fn fail(e: &FleetError) -> u8 {
    eprintln!("lab: {e}");
    match e {
        FleetError::Url { .. } => exit_code::USAGE,
        FleetError::Refused(_) => exit_code::INVALID_INPUT,
        _ => exit_code::CANNOT_RUN,
    }
}

fn hub(url: &str) -> Result<Hub, u8> {
    Hub::parse(url).map_err(|e| fail(&e))
}

/// `lab fleet ...`.
pub fn fleet_command(command: FleetCommand, quiet: bool) -> u8 {
    let printed = |r: Result<String, FleetError>| match r {
        Ok(text) => {
            print!("{}", if text.ends_with('\n') { text } else { format!("{text}\n") });
            exit_code::OK
        }
        Err(e) => fail(&e),
    };
    match command {
        FleetCommand::Init { hub: HubArg { url } } => match hub(&url) {
            Ok(h) => printed(operate::init(&h)),
            Err(code) => code,
        },
        FleetCommand::Status { hub: HubArg { url }, campaign } => match hub(&url) {
            Ok(h) => printed(operate::status(&h, campaign.as_deref())),
            Err(code) => code,
        },
        FleetCommand::Retire { workcell, hub: HubArg { url }, by, reason } => match hub(&url) {
            Ok(h) => printed(operate::retire(&h, &workcell, &by, &reason)),
            Err(code) => code,
        },
        FleetCommand::Settle { campaign, seq, done, not_done: _, hub: HubArg { url }, by, reason } => match hub(&url) {
            Ok(h) => printed(operate::settle(&h, &campaign, seq, done, &by, &reason)),
            Err(code) => code,
        },
        FleetCommand::Grant { login, role, password_file, hub: HubArg { url } } => {
            let h = match hub(&url) {
                Ok(h) => h,
                Err(code) => return code,
            };
            let password = match password_file.map(|p| std::fs::read_to_string(&p).map(|t| (p, t))).transpose() {
                Ok(Some((_, text))) if !text.trim().is_empty() => Some(text.trim().to_owned()),
                Ok(Some((p, _))) => {
                    eprintln!("lab: {} holds no password", p.display());
                    return exit_code::USAGE;
                }
                Ok(None) => None,
                Err(e) => {
                    eprintln!("lab: --password-file: {e}");
                    return exit_code::USAGE;
                }
            };
            printed(operate::grant(&h, &login, &role, password))
        }
        FleetCommand::Verify { hub: HubArg { url }, workcell, public_key } => {
            let h = match hub(&url) {
                Ok(h) => h,
                Err(code) => return code,
            };
            match verify::verify(&h, workcell.as_deref(), &public_key) {
                Ok(verdicts) => {
                    let (text, intact) = verify::describe(&verdicts);
                    print!("{text}");
                    if intact { exit_code::OK } else { exit_code::INVALID_INPUT }
                }
                Err(e) => fail(&e),
            }
        }
        FleetCommand::Learn { campaign, hub: HubArg { url }, name } => {
            let h = match hub(&url) {
                Ok(h) => h,
                Err(code) => return code,
            };
            let name = name.unwrap_or_else(|| {
                let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
                format!("{}:{}", host.trim(), std::process::id())
            });
            let opts = learner::LearnOptions { hub: h, campaign, name, progress: !quiet };
            match learner::learn(&opts) {
                Ok(s) => {
                    println!(
                        "campaign {}: {} succeeded, {} failed{}",
                        s.campaign,
                        s.succeeded,
                        s.failed,
                        s.stop_reason.map(|r| format!("; stopped: {r}")).unwrap_or_default()
                    );
                    exit_code::OK
                }
                Err(e) => fail(&e),
            }
        }
    }
}

/// `lab workcell`'s options beyond the hub, the lab and the record.
pub struct WorkcellRun {
    /// The workcell's name.
    pub name: Option<String>,
    /// Only this campaign.
    pub campaign: Option<String>,
    /// Claims held ahead.
    pub prefetch: usize,
    /// Lab seconds per wall second.
    pub time_scale: Option<f64>,
    /// Whether steps in doubt are first settled by reading their instruments back.
    pub read_back: bool,
    /// A key to sign checkpoints with.
    pub sign_with: Option<PathBuf>,
    /// Seconds to wait for the hub at the end.
    pub ship_wait: Option<f64>,
    /// Ship and end.
    pub ship_only: bool,
    /// Simulate the steps.
    pub instant: bool,
}

/// `lab workcell`.
pub fn workcell(hub_arg: &HubArg, lab: PathBuf, db: PathBuf, run: WorkcellRun, unknown: &str, quiet: bool) -> u8 {
    let WorkcellRun { name, campaign, prefetch, time_scale, read_back, sign_with, ship_wait, ship_only, instant } = run;
    let h = match hub(&hub_arg.url) {
        Ok(h) => h,
        Err(code) => return code,
    };
    let opts = WorkcellOptions {
        hub: h,
        lab,
        db,
        name,
        campaign,
        prefetch,
        time_scale,
        progress: !quiet,
        policy: Policy::Planned { replan: true, budget: None },
        unknown: if unknown == "wait" { UnknownPolicy::Wait } else { UnknownPolicy::Fail },
        read_back,
        sign_with,
        ship_wait: ship_wait.map(Duration::from_secs_f64),
        ship_only,
        instant,
    };
    match run_workcell(&opts) {
        Ok(s) => {
            for c in &s.campaigns {
                super::running::print_summary(c);
            }
            println!(
                "workcell {}: {} campaign(s); journal {} rows, {} at the hub{}",
                s.name,
                s.campaigns.len(),
                s.local_head,
                s.shipped.hub_head,
                s.shipped
                    .error
                    .as_deref()
                    .map(|e| format!(" (hub: {e}; the rest ships next time)"))
                    .unwrap_or_default()
            );
            // A campaign left for `lab resume` (an instrument it needs is gone) is this workcell's to repair.
            s.campaigns.iter().map(|c| exit_code::of(c.status)).max().unwrap_or(exit_code::OK)
        }
        Err(e) => fail(&e),
    }
}

/// A fleet campaign, as the hub holds it, in a temporary file shaped like `lab.db`.
fn materialized(url: &str, campaign: &str) -> Result<tempfile::TempDir, u8> {
    let h = hub(url)?;
    let dir = tempfile::tempdir().map_err(|e| {
        eprintln!("lab: cannot make a temporary folder: {e}");
        exit_code::CANNOT_RUN
    })?;
    operate::materialize(&h, campaign, &dir.path().join("fleet.db")).map_err(|e| fail(&e))?;
    Ok(dir)
}

/// `lab report --hub URL --fleet-campaign NAME`.
pub fn report(url: &str, campaign: &str, out: &Path) -> u8 {
    match materialized(url, campaign) {
        Ok(dir) => super::inspecting::report_command(&dir.path().join("fleet.db"), Some(1), out),
        Err(code) => code,
    }
}

/// `lab export --hub URL --fleet-campaign NAME`.
pub fn export(url: &str, campaign: &str, format: &str, out: &Path) -> u8 {
    match materialized(url, campaign) {
        Ok(dir) => super::inspecting::export_command(&dir.path().join("fleet.db"), Some(1), format, out),
        Err(code) => code,
    }
}
