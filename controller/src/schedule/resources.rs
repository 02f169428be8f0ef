//! Resources: the campaign's plan and progress, the deck's occupancy, the clock and the record.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bevy_ecs::prelude::*;
use devices::Lab;
use experiments::{Direction, Point, Proposal};
use protocols::Protocol;

use crate::record::Recorder;

/// Lab time, shared with the instrument tasks and simulators.
#[derive(Resource, Clone)]
pub struct LabClock(pub devices::Clock);

impl LabClock {
    /// Lab seconds since the campaign started.
    pub fn now(&self) -> f64 {
        self.0.now()
    }
}

/// The record, as the world writes it.
#[derive(Resource, Clone)]
pub struct Record {
    /// The sending side.
    pub recorder: Recorder,
    /// The campaign's id.
    pub campaign: i64,
}

/// What the campaign runs, checked and fixed for its whole life.
#[derive(Resource)]
pub struct Plan {
    /// The protocol every experiment binds.
    pub protocol: Arc<Protocol>,
    /// The lab.
    pub lab: Arc<Lab>,
    /// For each transfer step (by protocol index), the deck positions it may take the vessel to.
    pub transfer_positions: HashMap<usize, Vec<String>>,
    /// Parameter values fixed by the campaign.
    pub fixed: Point,
    /// The objective's output name.
    pub objective: String,
    /// Whether larger is better.
    pub direction: Direction,
}

/// Which deck positions hold or expect a vessel.
#[derive(Resource, Debug, Default)]
pub struct DeckState {
    /// The experiment whose vessel stands at a position.
    pub occupant: HashMap<String, Entity>,
    /// The experiment whose vessel is on its way to a position.
    pub reserved: HashMap<String, Entity>,
}

impl DeckState {
    /// Whether a vessel may be brought to `position` now.
    pub fn is_free(&self, position: &str) -> bool {
        !self.occupant.contains_key(position) && !self.reserved.contains_key(position)
    }
}

/// Rack slots holding fresh vessels. Each experiment takes one and returns its vessel to it; a used slot is not
/// reused in the same campaign.
#[derive(Resource, Debug)]
pub struct RackState {
    /// Slots with a fresh vessel, in the order they are taken.
    pub fresh: VecDeque<usize>,
}

/// The best result so far.
#[derive(Debug, Clone, PartialEq)]
pub struct Best {
    /// The experiment's number in the campaign.
    pub seq: usize,
    /// Its parameters.
    pub values: Point,
    /// Its objective value.
    pub objective: f64,
}

/// The campaign's progress.
#[derive(Resource, Debug)]
pub struct CampaignState {
    /// Experiments to run in total.
    pub budget: usize,
    /// Experiments allowed at once.
    pub in_flight: usize,
    /// Experiments started so far.
    pub started: usize,
    /// Experiments running now.
    pub running: usize,
    /// Experiments that succeeded.
    pub succeeded: usize,
    /// Experiments that failed.
    pub failed: usize,
    /// Proposals asked for and not yet answered.
    pub requested: usize,
    /// Proposals received and not yet started, with their record ids.
    pub queue: VecDeque<(i64, Proposal)>,
    /// No new experiments will start (paused, aborted, or the proposer has nothing more to propose).
    pub stopping: bool,
    /// Everything is to stop now.
    pub aborted: bool,
    /// Why the campaign stopped early, if it did.
    pub stop_reason: Option<String>,
    /// The best experiment so far.
    pub best: Option<Best>,
    /// The next experiment id to assign.
    pub next_experiment: i64,
    /// The next step id to assign.
    pub next_step: i64,
    /// The next proposal id to assign.
    pub next_proposal: i64,
    /// The most experiments that ran at once.
    pub peak_in_flight: usize,
}

impl CampaignState {
    /// Whether the campaign has nothing left to do.
    pub fn is_finished(&self) -> bool {
        self.running == 0 && (self.stopping || self.started >= self.budget) && (self.queue.is_empty() || self.stopping)
    }
}

/// Set by any system that changed what the scheduler could do next, so the main loop runs another frame before
/// waiting for news from outside.
#[derive(Resource, Debug, Default)]
pub struct Progress(pub bool);
