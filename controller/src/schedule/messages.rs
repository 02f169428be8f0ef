//! Messages: facts systems pass to each other within a frame, named in the past tense.

use bevy_ecs::prelude::*;
use devices::Outcome;
use experiments::Proposal;

use super::bridge::{OperatorRequest, StepError};

/// An instrument finished a step, well or badly.
#[derive(Message, Debug)]
pub struct StepEnded {
    /// The step entity.
    pub step: Entity,
    /// What came of it.
    pub result: Result<Outcome, StepError>,
    /// Lab time the instrument started.
    pub started: f64,
    /// Lab time it ended.
    pub ended: f64,
}

/// An experiment succeeded or failed.
#[derive(Message, Debug, Clone, Copy)]
pub struct ExperimentConcluded {
    /// The experiment entity.
    pub experiment: Entity,
}

/// The learner answered.
#[derive(Message, Debug)]
pub struct ProposalsArrived {
    /// How many were asked for.
    pub asked: usize,
    /// What it proposed.
    pub proposals: Vec<Proposal>,
    /// Why the proposer thinks the campaign should stop, if it does.
    pub stop: Option<String>,
    /// The fleet claim each proposal carries, by position (empty for the campaign's own learner).
    pub claims: Vec<crate::record::FleetClaim>,
}

/// An operator asked for something.
#[derive(Message, Debug, Clone)]
pub struct OperatorAsked(pub OperatorRequest);

/// An instrument with a step in doubt was read back, or did not answer.
#[derive(Message, Debug, Clone)]
pub struct Observed {
    /// The instrument entity.
    pub instrument: Entity,
    /// What it reported, or why it could not be read.
    pub result: Result<devices::readback::Observed, String>,
    /// Lab time the read-back began.
    pub from: f64,
}

/// An instrument in the unknown state was reconciled, or could not be.
#[derive(Message, Debug, Clone)]
pub struct Reconciled {
    /// The instrument entity.
    pub instrument: Entity,
    /// What came of it.
    pub result: Result<(), String>,
}
