//! `lab plan --json`: a plan's figures for another program, the same as its text says.
//!
//! Lab times are in lab seconds. Where the plan drew what it cannot know (a model's choices), `estimate_s` is the
//! median draw's and `draws` holds every draw's figure, its lowest and highest, and what was drawn; a plan that
//! drew nothing has `draws: null`.

use serde_json::{Value, json};

use crate::plan::{Parameters, PlanResult};

/// The plan as a JSON value (see the module's documentation).
pub fn to_json(plan: &PlanResult) -> Value {
    let r = &plan.report;
    let b = &plan.bounds;
    let instruments: Vec<Value> = r
        .busy
        .iter()
        .map(|(name, busy)| {
            let utilisation = if r.makespan > 0.0 { busy / r.makespan } else { 0.0 };
            json!({ "name": name, "busy_s": busy, "utilisation": utilisation })
        })
        .collect();
    json!({
        "what": plan.what,
        "lab": plan.lab,
        "experiments": plan.experiments,
        "steps": r.steps,
        "in_flight": plan.in_flight,
        "estimate_s": plan.estimate(),
        "central": if plan.draws.len() > 1 { "median of the draws" } else { "the one simulated run" },
        "startup_s": plan.startup,
        "parameters": parameters(&plan.parameters),
        "draws": draws(plan),
        "lower_bound_s": {
            "best": b.best(),
            "longest_experiment": b.chain,
            "in_flight": b.in_flight,
            "shared_work": b.instruments.0,
            "shared_by": b.instruments.1,
            "experiments_counted": b.counted,
            "time_limit": b.limit,
        },
        "lost_replies": plan.lost_replies().map(|l| json!({
            "expected": l.expected,
            "each_s": l.each,
            "few": l.few,
            "many": l.many,
            "range_s": [l.range.0, l.range.1],
        })),
        "may_stop": plan.may_stop,
        "calibration": plan.calibration.as_ref().map(|(fit, before)| json!({
            "runs": fit.runs,
            "steps": fit.steps,
            "estimate_before_s": before,
            "changes": fit.changes,
        })),
        "instruments": instruments,
        "completed": r.completed,
    })
}

fn parameters(p: &Parameters) -> Value {
    match p {
        Parameters::Given => json!({ "source": "given" }),
        Parameters::Own(proposer) => json!({ "source": "own proposer", "proposer": proposer }),
        Parameters::Measured { proposer, known, chosen, .. } => json!({
            "source": "measured on the simulated bench",
            "proposer": proposer,
            "known": known,
            "chosen": chosen,
        }),
        Parameters::Drawn { proposer, known, drawn } => json!({
            "source": "drawn landscapes",
            "proposer": proposer,
            "known": known,
            "drawn": drawn,
        }),
    }
}

fn draws(plan: &PlanResult) -> Value {
    if plan.draws.len() < 2 {
        return Value::Null;
    }
    let lowest = plan.draws.iter().copied().fold(f64::INFINITY, f64::min);
    let highest = plan.draws.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let drawn: Value = match &plan.parameters {
        Parameters::Measured { drawn, .. } => json!({
            "spectrometer_noise": {
                "run_seed": drawn.seed,
                "seeds": (0..drawn.count).map(|d| drawn.noise(d)).collect::<Vec<_>>(),
            },
            "all_steps_within": drawn.bias,
            "each_step_within": drawn.spread,
        }),
        Parameters::Drawn { .. } => json!({ "landscapes": plan.draws.len() }),
        _ => Value::Null,
    };
    json!({
        "count": plan.draws.len(),
        "lab_s": plan.draws,
        "lowest_s": lowest,
        "highest_s": highest,
        "drawn": drawn,
    })
}
