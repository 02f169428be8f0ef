//! Components: instruments, experiments and steps as entities.
//!
//! Every instrument of the lab is an entity with an [`Instrument`] and its [`Availability`]. Every running
//! experiment is an entity with an [`Experiment`], its [`Vessel`] and its [`Readings`]; each of its steps is an
//! entity with a [`Step`], a [`StepState`] and the [`Dependents`] that wait for it.

use std::collections::BTreeMap;

use bevy_ecs::prelude::*;
use devices::Place;
use protocols::{Action, InstrumentKind, InstrumentRef};

/// An instrument of the lab.
#[derive(Component, Debug, Clone)]
pub struct Instrument {
    /// Its name in the lab file.
    pub name: String,
    /// Its kind.
    pub kind: InstrumentKind,
    /// The deck position where it acts on vessels.
    pub position: Option<String>,
}

impl Instrument {
    /// Whether this instrument can run a step that asks for `on`.
    pub fn matches(&self, on: &InstrumentRef) -> bool {
        match on {
            InstrumentRef::Kind(k) => self.kind == *k,
            InstrumentRef::Named(n) => &self.name == n,
        }
    }
}

/// Whether an instrument can take a step now.
#[derive(Component, Debug, Clone, PartialEq)]
pub enum Availability {
    /// Free.
    Idle,
    /// Running a step.
    Busy {
        /// The step.
        step: Entity,
    },
    /// Out of service for the rest of the campaign: it could not be opened, or it stopped answering.
    Offline {
        /// Why.
        reason: String,
    },
}

/// One experiment: one binding of the protocol to parameter values, in one vessel.
#[derive(Component, Debug, Clone)]
pub struct Experiment {
    /// The record's experiment id.
    pub id: i64,
    /// 1-based number within the campaign.
    pub seq: usize,
    /// The parameter values, in each parameter's unit.
    pub values: BTreeMap<String, f64>,
    /// The proposal it came from.
    pub proposal: Option<i64>,
    /// Its rack slot.
    pub slot: usize,
    /// Its step entities, in protocol order.
    pub steps: Vec<Entity>,
    /// Steps not yet succeeded.
    pub unfinished: usize,
    /// Lab time it started.
    pub started_at: f64,
}

/// How an experiment stands.
#[derive(Component, Debug, Clone, PartialEq)]
pub enum ExperimentState {
    /// Steps are still to run.
    Running,
    /// Every step succeeded.
    Succeeded,
    /// A step failed; the rest were skipped.
    Failed(String),
}

/// Where an experiment's vessel is.
#[derive(Component, Debug, Clone, PartialEq)]
pub struct Vessel {
    /// Its current place; during a transfer, the place it is leaving.
    pub at: Place,
}

/// The outputs an experiment has measured so far.
#[derive(Component, Debug, Clone, Default)]
pub struct Readings(pub BTreeMap<String, f64>);

/// One step of one experiment.
#[derive(Component, Debug, Clone)]
pub struct Step {
    /// The record's step id (also the tag on its wire exchanges).
    pub id: i64,
    /// The experiment entity.
    pub experiment: Entity,
    /// The step's index in the protocol.
    pub index: usize,
    /// The protocol's id for the step.
    pub name: String,
    /// Which instruments may run it.
    pub on: InstrumentRef,
    /// What it does.
    pub action: Action,
}

/// Where a step is in its life.
#[derive(Component, Debug, Clone, PartialEq)]
pub enum StepState {
    /// Waiting for `remaining` dependencies.
    Waiting {
        /// Dependencies not yet succeeded.
        remaining: usize,
    },
    /// Every dependency has succeeded.
    Ready {
        /// Lab time it became ready.
        since: f64,
    },
    /// Running on an instrument.
    Running {
        /// The instrument.
        instrument: Entity,
        /// For a transfer, the place the vessel goes to.
        destination: Option<Place>,
        /// Lab time it was dispatched.
        started: f64,
    },
    /// Finished well.
    Succeeded,
    /// Finished badly.
    Failed,
    /// Never run, because its experiment failed or was aborted.
    Skipped,
}

impl StepState {
    /// The state's name in the record.
    pub fn label(&self) -> &'static str {
        match self {
            StepState::Waiting { .. } => "waiting",
            StepState::Ready { .. } => "ready",
            StepState::Running { .. } => "running",
            StepState::Succeeded => "succeeded",
            StepState::Failed => "failed",
            StepState::Skipped => "skipped",
        }
    }
}

/// The steps that wait for this one.
#[derive(Component, Debug, Clone, Default)]
pub struct Dependents(pub Vec<Entity>);
