//! The one bridge between the synchronous ECS world and everything asynchronous.
//!
//! Instrument tasks, the learner thread and signal handlers never touch the world. They send [`Inbound`] facts over
//! one channel; the main loop waits on it between frames, and the first system of each frame drains it into
//! messages. The world talks back only by sending: [`Dispatch`]es to instrument tasks, [`LearnerRequest`]s to the
//! learner, [`crate::record::RecordEvent`]s to the record. Nothing in a system blocks or awaits.

use std::collections::HashMap;

use bevy_ecs::prelude::*;
use crossbeam_channel::{Receiver, Sender};
use devices::{Outcome, Task};
use experiments::{Observation, Point, Proposal};

/// Something that happened outside the world.
#[derive(Debug)]
pub enum Inbound {
    /// An instrument task finished a step.
    StepEnded {
        /// The step entity.
        step: Entity,
        /// What came of it.
        result: Result<Outcome, StepError>,
        /// Lab time the instrument started it.
        started: f64,
        /// Lab time it ended.
        ended: f64,
    },
    /// The learner answered an ask.
    Proposals {
        /// How many were asked for.
        asked: usize,
        /// The proposals (possibly fewer than asked).
        proposals: Vec<Proposal>,
    },
    /// The operator asked to stop: `Pause` finishes running experiments and starts no more; `Abort` stops now.
    Interrupt(Interrupt),
}

/// An operator's request to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    /// Start nothing new; let running experiments finish.
    Pause,
    /// Stop everything now and leave every instrument in its safe state.
    Abort,
}

/// A failed step, as the world needs to know it.
#[derive(Debug, Clone)]
pub struct StepError {
    /// The message, naming the instrument.
    pub message: String,
    /// Whether the instrument may have acted before failing.
    pub may_have_acted: bool,
    /// Whether the instrument itself is unreliable now (stopped answering, port gone), so it goes offline.
    pub instrument_fault: bool,
}

/// A step sent to an instrument task.
#[derive(Debug, Clone)]
pub struct Dispatch {
    /// The step entity, returned in [`Inbound::StepEnded`].
    pub step: Entity,
    /// The record's step id, tagged on the wire exchanges.
    pub step_id: i64,
    /// What to do.
    pub task: Task,
}

/// A request to the learner thread.
#[derive(Debug, Clone)]
pub enum LearnerRequest {
    /// A result to learn from.
    Tell(Observation),
    /// Propose `n` points, avoiding `pending`.
    Ask {
        /// How many.
        n: usize,
        /// Points already running or queued.
        pending: Vec<Point>,
    },
}

/// The world's ends of the channels.
#[derive(Resource)]
pub struct Bridge {
    /// Inbound facts not yet turned into messages; the main loop appends what it received while waiting.
    pub backlog: Vec<Inbound>,
    /// The inbound channel.
    pub inbox: Receiver<Inbound>,
    /// Each instrument entity's task.
    pub instruments: HashMap<Entity, tokio::sync::mpsc::UnboundedSender<Dispatch>>,
    /// The learner thread.
    pub learner: Sender<LearnerRequest>,
}
