//! Components: instruments, experiments and steps as entities.
//!
//! Every instrument of the lab is an entity with an [`Instrument`], its [`Availability`] and its [`Holds`]. Every
//! experiment is an entity with an [`Experiment`], its [`ExperimentState`], its [`Readings`] and, when it has a
//! vessel, a [`Vessel`]; each of its steps is an entity with a [`Step`], a [`StepState`] and the [`Dependents`]
//! that wait for it.

use std::collections::BTreeMap;

use bevy_ecs::prelude::*;
use devices::Place;
use protocols::{Action, InstrumentKind, InstrumentRef, Operation, StepRules};

/// An instrument of the lab.
#[derive(Component, Debug, Clone)]
pub struct Instrument {
    /// Its name in the lab file.
    pub name: String,
    /// Its kind (none for a benchmark workload's devices, which are only ever named).
    pub kind: Option<InstrumentKind>,
    /// The deck position where it acts on vessels.
    pub position: Option<String>,
    /// Its index among the lab's instruments (the planner's resource number).
    pub index: usize,
}

impl Instrument {
    /// Whether this instrument can run a step that asks for `on`.
    pub fn matches(&self, on: &InstrumentRef) -> bool {
        match on {
            InstrumentRef::Kind(k) => self.kind == Some(*k),
            InstrumentRef::Named(n) => &self.name == n,
        }
    }

    /// Whether the instrument stands at `place`.
    pub fn is_at(&self, place: &Place) -> bool {
        matches!(place, Place::Position(p) if self.position.as_deref() == Some(p.as_str()))
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
    /// A step on it may have acted and failed, or its outcome was never recorded: nothing runs on it until it is
    /// reconciled (probed and re-initialized, or confirmed by an operator).
    Unknown {
        /// Why.
        reason: String,
    },
    /// Out of service for the rest of the campaign: it could not be opened, or it stopped answering.
    Offline {
        /// Why.
        reason: String,
    },
}

/// Time windows in which an instrument is promised to a step: one that must start soon after another step ends (a
/// maximum wait), or the next step of an experiment whose previous step on the instrument said `keep`. Other steps
/// may use the instrument only if they are expected to be done before the first window.
#[derive(Component, Debug, Clone, Default)]
pub struct Holds(pub Vec<Hold>);

/// One promise of an instrument to a step.
#[derive(Debug, Clone, PartialEq)]
pub struct Hold {
    /// The step the instrument is kept for.
    pub step: Entity,
    /// The lab time from which the step may need it (its predecessor's earliest expected end).
    pub from: f64,
    /// The step's expected duration.
    pub duration: f64,
    /// The instrument is kept for the step because the experiment's previous step on it said `keep`: the step runs
    /// here and nowhere else, and nothing else runs here before it.
    pub kept: bool,
}

impl Holds {
    /// The earliest time the instrument is promised from, if it is promised at all.
    pub fn first(&self) -> Option<f64> {
        self.0.iter().map(|h| h.from).reduce(f64::min)
    }
}

/// One experiment: one binding of the protocol to parameter values, in one vessel (or one job of a workload).
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
    /// Its rack slot, if it has a vessel.
    pub slot: Option<usize>,
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
    /// Whether its place is known. After a transfer that may have acted and failed, it is not.
    pub known: bool,
}

/// The outputs an experiment has measured so far.
#[derive(Component, Debug, Clone, Default)]
pub struct Readings(pub BTreeMap<String, f64>);

/// What a step does.
#[derive(Debug, Clone, PartialEq)]
pub enum Work {
    /// A protocol action, run on an instrument.
    Action(Action),
    /// Work with no meaning beyond its duration (a benchmark workload's step).
    Abstract,
}

impl Work {
    /// The protocol action, if it is one.
    pub fn action(&self) -> Option<&Action> {
        match self {
            Work::Action(a) => Some(a),
            Work::Abstract => None,
        }
    }

    /// Whether it acts on the vessel at the instrument's position.
    pub fn acts_on_vessel(&self) -> bool {
        self.action().is_some_and(Operation::acts_on_vessel)
    }

    /// Whether repeating it is physically harmless.
    pub fn repeat_safe(&self) -> bool {
        self.action().is_none_or(Operation::repeat_safe)
    }

    /// The operation's name.
    pub fn name(&self) -> &'static str {
        self.action().map_or("Work", Operation::name)
    }
}

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
    pub work: Work,
    /// Its timing, retry and hold rules.
    pub rules: StepRules,
    /// Expected duration in lab seconds.
    pub estimate: f64,
    /// Expected lab seconds from this step's start to the end of its experiment along the longest path (the
    /// critical-path priority).
    pub tail: f64,
    /// The steps it runs after.
    pub after: Vec<Entity>,
    /// Whether a step after it must start within a maximum wait of it, so starting it may need instruments held
    /// (known when it is made, so dispatching a step without one never looks at its dependents).
    pub leads_within: bool,
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
        /// Lab time it became ready (its dependencies' end).
        since: f64,
        /// It may not start before this (a minimum wait).
        not_before: f64,
        /// It should start by this (a maximum wait).
        deadline: Option<f64>,
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
    /// It may have acted, but its outcome is not known; waits for reconciliation.
    Unknown {
        /// The instrument it was on, if known.
        instrument: Option<Entity>,
    },
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
            StepState::Unknown { .. } => "unknown",
        }
    }

    /// Whether the step has yet to start (it waits for its dependencies or is ready).
    pub fn is_pending(&self) -> bool {
        matches!(self, StepState::Waiting { .. } | StepState::Ready { .. })
    }

    /// Whether the step will never change again.
    pub fn is_terminal(&self) -> bool {
        matches!(self, StepState::Succeeded | StepState::Failed | StepState::Skipped)
    }
}

/// How many times a step has been started.
#[derive(Component, Debug, Clone, Copy, Default)]
pub struct Attempts(pub u32);

/// The steps that wait for this one.
#[derive(Component, Debug, Clone, Default)]
pub struct Dependents(pub Vec<Entity>);

/// What the last step on an instrument left it in, as far as the next step's duration goes: a plate's set point and
/// when its heater went off (a heat at 30 degC after one at 90 waits for the plate to cool). A step's default
/// timeout is built from it ([`super::systems::step_timeout`]); an instrument without one is taken as `lab plan`
/// takes it at the start of a run (a plate at room temperature).
#[derive(Component, Debug, Clone, Copy, Default, PartialEq)]
pub struct Condition(pub crate::schedule::estimate::State);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_is_one_the_record_accepts() {
        let states = [
            StepState::Waiting { remaining: 1 },
            StepState::Ready { since: 0.0, not_before: 0.0, deadline: None },
            StepState::Running { instrument: Entity::PLACEHOLDER, destination: None, started: 0.0 },
            StepState::Succeeded,
            StepState::Failed,
            StepState::Skipped,
            StepState::Unknown { instrument: None },
        ];
        let labels: Vec<&str> = states.iter().map(StepState::label).collect();
        assert_eq!(labels, crate::record::events::STEP_STATES);
    }
}

/// A step whose outcome is in doubt (its state is `Unknown`), with what settling it from its instrument needs: the
/// task the instrument was sent, when, and what the record held of the step's exchanges when the controller stopped.
#[derive(Component, Debug, Clone)]
pub struct InDoubt {
    /// The task as sent.
    pub task: devices::Task,
    /// The task the step asked for (`task`, unless `task` carries it on after a read-back).
    pub asked: devices::Task,
    /// Lab time its intent was recorded.
    pub started: f64,
    /// The step's recorded exchanges, when the controller stopped while it ran; `None` when it failed in this run
    /// (its exchanges are still on their way to the record).
    pub exchanges: Option<Vec<devices::readback::RecordedExchange>>,
    /// The instrument's exchanges just before the step, from the record, when the controller stopped while it ran.
    pub before: Option<Vec<devices::readback::RecordedExchange>>,
    /// How many times it was carried on already after being read back.
    pub carried_on: u32,
}

/// Marks an instrument whose driver can read its physical state back.
#[derive(Component, Debug, Clone, Copy)]
pub struct ReadsBack;

/// Marks an instrument that was not initialized in this run (a step on it was in doubt when the controller stopped,
/// so it was read back first): once it is free, it is put in its safe state and initialized before other work.
#[derive(Component, Debug, Clone, Copy)]
pub struct Unrestored;

/// Marks a failed experiment whose vessel is being returned to the rack.
#[derive(Component, Debug, Clone, Copy)]
pub struct CleaningUp;
