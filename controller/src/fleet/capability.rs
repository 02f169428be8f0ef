//! What a proposal needs and what a workcell offers, as sets the hub can compare in SQL.
//!
//! A protocol's needs are tokens: `kind:Hotplate` for a step on any hotplate, `instrument:pump_a` for a step on a
//! named instrument (and the kinds and names its transfers go to). A workcell offers a token for every kind and name
//! in its lab. The hub hands a workcell only proposals whose needs its capabilities contain (`needs <@ caps`); the
//! workcell then checks each one's values against its instruments' limits, and refuses what lies beyond them.

use std::collections::BTreeSet;

use devices::Lab;
use protocols::{Destination, InstrumentRef, Op, Operation, Protocol};

/// The tokens a protocol's steps need, sorted.
pub fn needs(protocol: &Protocol) -> Vec<String> {
    let mut out = BTreeSet::new();
    for step in protocol.steps() {
        out.insert(format!("kind:{}", step.op.kind().name()));
        if let InstrumentRef::Named(n) = &step.on {
            out.insert(format!("instrument:{n}"));
        }
        match &step.op {
            Op::Transfer { to: Destination::Kind(k) } => {
                out.insert(format!("kind:{}", k.name()));
            }
            Op::Transfer { to: Destination::Named(n) } => {
                out.insert(format!("instrument:{n}"));
            }
            _ => {}
        }
    }
    out.into_iter().collect()
}

/// The tokens a lab offers, sorted.
pub fn capabilities(lab: &Lab) -> Vec<String> {
    let mut out = BTreeSet::new();
    for i in &lab.instruments {
        out.insert(format!("kind:{}", i.kind().name()));
        out.insert(format!("instrument:{}", i.name));
    }
    out.into_iter().collect()
}

/// Whether `lab` can run `protocol` for some of its parameter values: every check of `lab check` but the limits,
/// which a workcell applies to each proposal instead ([`refusal`]). The error lists the problems.
pub fn can_run(lab: &Lab, protocol: &Protocol) -> Result<(), String> {
    let problems: Vec<String> = lab
        .check_protocol(protocol)
        .iter()
        .filter(|d| d.severity == protocols::Severity::Error && d.code != devices::lab::codes::LIMIT)
        .map(|d| d.message.clone())
        .collect();
    if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) }
}

/// Why this lab cannot run the protocol at these values (fixed and proposed), if it cannot.
pub fn refusal(
    lab: &Lab,
    protocol: &Protocol,
    fixed: &experiments::Point,
    values: &experiments::Point,
) -> Option<String> {
    let mut all = fixed.clone();
    all.extend(values.iter().map(|(k, v)| (k.clone(), *v)));
    let bound = match protocol.bind(&all) {
        Ok(b) => b,
        Err(e) => return Some(format!("the values do not bind the protocol: {e}")),
    };
    bound
        .steps
        .iter()
        .find_map(|s| lab.action_beyond_limits(&s.on, &s.action).map(|why| format!("step `{}`: {why}", s.id)))
}
