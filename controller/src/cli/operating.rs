//! Operating a running campaign: `lab pause`, `lab resume`, `lab abort`, `lab confirm` and `lab clear` write a request
//! to the record, which the controller carries out and records.

use super::args::*;
use super::exit_code;
use controller::schedule::bridge::{OperatorAction, Verdict};

/// Writes an operator request to the record, for the controller that runs (or next resumes) the campaign.
pub fn operator_command(a: &OperatorArgs, action: OperatorAction) -> u8 {
    match controller::run::operator::request(&a.db, &action, &a.by, &a.reason) {
        Ok((id, Some(campaign))) => {
            println!("request {id} sent to campaign {campaign}; the controller carries it out within a second");
            exit_code::OK
        }
        Ok((id, None)) => {
            println!("request {id} recorded; no campaign is running, so it applies when one resumes");
            exit_code::OK
        }
        Err(e) => {
            eprintln!("lab: {e}");
            exit_code::CANNOT_RUN
        }
    }
}

/// `lab restock BOTTLE VOLUME`: counts a bottle refilled, for the running campaign (or the next to resume).
pub fn restock(who: &OperatorArgs, bottle: &str, volume: &str, set: bool) -> u8 {
    let microlitres = match controller::run::operator::restock_volume(volume) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("lab: {e}");
            return exit_code::USAGE;
        }
    };
    match controller::run::operator::restock(&who.db, bottle, microlitres, set, &who.by, &who.reason) {
        Ok((id, Some(campaign))) => {
            println!(
                "request {id} sent to campaign {campaign}; the controller counts `{bottle}` refilled within a second"
            );
            exit_code::OK
        }
        Ok((id, None)) => {
            println!("request {id} recorded; no campaign is running, so it applies when one resumes");
            exit_code::OK
        }
        Err(e) => {
            eprintln!("lab: {e}");
            exit_code::CANNOT_RUN
        }
    }
}

/// `lab confirm STEP`: settles a step in doubt with what a person saw.
pub fn confirm(
    who: &OperatorArgs,
    step: i64,
    done: bool,
    not_done: bool,
    failed: bool,
    vessel_at: Option<String>,
) -> u8 {
    let verdict = match (done, not_done, failed) {
        (true, _, _) => Verdict::Done,
        (_, true, _) => Verdict::NotDone,
        (_, _, true) => Verdict::Failed,
        _ => {
            eprintln!("lab: say what happened: --done, --not-done or --failed");
            return exit_code::USAGE;
        }
    };
    operator_command(who, OperatorAction::Confirm { step, verdict, place: vessel_at })
}
