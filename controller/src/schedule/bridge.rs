//! The one bridge between the synchronous ECS world and everything asynchronous.
//!
//! Instrument tasks, the learner thread, operator requests and signal handlers never touch the world. They send
//! [`Inbound`] facts over one channel; the main loop waits on it between frames, and the first system of each frame
//! drains it into messages. The world talks back only by sending: [`Dispatch`]es to an [`Executor`] (instrument tasks
//! in a real run, a discrete-event simulation when planning), [`LearnerRequest`]s to the learner, and record events.
//! Nothing in a system blocks or awaits.

use bevy_ecs::prelude::*;
use crossbeam_channel::{Receiver, Sender};
use devices::{Outcome, Task};
use experiments::{Outcome as Result_, Point, Proposal};

/// Something that happened outside the world.
#[derive(Debug)]
pub enum Inbound {
    /// An instrument finished a step.
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
        /// Why the proposer thinks the campaign should stop (a target reached, no improvement left), if it does.
        stop: Option<String>,
        /// The fleet claim each proposal carries, by position (empty when the campaign's own learner proposed them).
        claims: Vec<crate::record::FleetClaim>,
    },
    /// An operator's request, from the terminal or from another process.
    Operator(OperatorRequest),
    /// An instrument in the unknown state was reconciled (safe state, identify, initialize), or could not be.
    Reconciled {
        /// The instrument entity.
        instrument: Entity,
        /// What came of it.
        result: Result<(), String>,
    },
    /// An instrument with a step in doubt was read back (its physical state, or why it could not be read).
    Observed {
        /// The instrument entity.
        instrument: Entity,
        /// What it reported.
        result: Result<devices::readback::Observed, String>,
        /// Lab time the read-back began.
        from: f64,
    },
    /// Nothing happened, but time passed (a minimum wait may have ended).
    Tick,
}

/// A request from a person.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorRequest {
    /// Its id in `operator_requests`, if it came through the record.
    pub id: Option<i64>,
    /// What is asked.
    pub action: OperatorAction,
    /// Who asked.
    pub who: String,
    /// Why.
    pub reason: String,
}

/// What an operator can ask.
#[derive(Debug, Clone, PartialEq)]
pub enum OperatorAction {
    /// Start nothing new; let running steps finish.
    Pause,
    /// Start new work again after a pause.
    Resume,
    /// Stop everything now and leave every instrument in its safe state.
    Abort,
    /// Settle a step whose outcome is unknown.
    Confirm {
        /// The step's record id.
        step: i64,
        /// What happened to it.
        verdict: Verdict,
        /// Where the vessel is now, for transfers (a deck position name or `rack`).
        place: Option<String>,
    },
    /// A person has looked at a deck place the controller keeps blocked for a vessel it lost track of, and removed
    /// whatever stood there: vessels may be brought to it again.
    Clear {
        /// The deck position.
        place: String,
    },
    /// A technician refilled a bottle: by `volume` microlitres (a top-up), or to `volume` (`absolute`).
    Restock {
        /// The bottle: its key (`pump_a`, `valve:2`), or the reagent it holds if one bottle holds it.
        bottle: String,
        /// Microlitres, never negative.
        volume: f64,
        /// Whether `volume` is what the bottle now holds above its dead volume, rather than what was added.
        absolute: bool,
    },
}

impl OperatorAction {
    /// The action as written in `operator_requests`.
    pub fn name(&self) -> &'static str {
        match self {
            OperatorAction::Pause => "pause",
            OperatorAction::Resume => "resume",
            OperatorAction::Abort => "abort",
            OperatorAction::Confirm { .. } => "confirm",
            OperatorAction::Clear { .. } => "clear",
            OperatorAction::Restock { .. } => "restock",
        }
    }
}

/// An operator's finding about a step whose outcome was unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It happened, completely.
    Done,
    /// It did not happen at all; it is safe to run it.
    NotDone,
    /// It happened partly or wrongly; the experiment cannot be trusted.
    Failed,
}

impl Verdict {
    /// The verdict as written in `operator_requests`.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Done => "done",
            Verdict::NotDone => "not_done",
            Verdict::Failed => "failed",
        }
    }

    /// Parses a verdict as written in `operator_requests`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "done" => Some(Verdict::Done),
            "not_done" => Some(Verdict::NotDone),
            "failed" => Some(Verdict::Failed),
            _ => None,
        }
    }
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

/// A step sent to an instrument.
#[derive(Debug, Clone)]
pub struct Dispatch {
    /// The step entity, returned in [`Inbound::StepEnded`].
    pub step: Entity,
    /// The record's step id, tagged on the wire exchanges.
    pub step_id: i64,
    /// What to do; `None` for abstract work, which only takes time.
    pub task: Option<Task>,
    /// Expected lab seconds.
    pub estimate: f64,
    /// The most lab seconds it may take before it counts as failed.
    pub timeout: f64,
    /// For a dispense through a selector valve: the valve, claimed with the pump, and the port it turns to first.
    pub turn: Option<(Entity, u32)>,
    /// For a dispense through a valve whose line holds another reagent: the waste port, and the microlitres to draw
    /// from the port and push out there before the dispense.
    pub prime: Option<(u32, f64)>,
}

/// Where dispatched steps go.
pub trait Executor: Send + Sync {
    /// Sends `dispatch` to `instrument`; false if the instrument can no longer take work.
    fn dispatch(&self, instrument: Entity, dispatch: Dispatch) -> bool;

    /// Reconciles an instrument whose state is unknown: safe state, identify, initialize. The result comes back as
    /// [`Inbound::Reconciled`].
    fn reconcile(&self, instrument: Entity);

    /// Reads back the physical state of an instrument with a step in doubt, tagging the exchanges with the step's
    /// id, without changing anything. The result comes back as [`Inbound::Observed`]. An executor whose instruments
    /// cannot be read reconciles them instead.
    fn observe(&self, instrument: Entity, step_id: i64) {
        let _ = step_id;
        self.reconcile(instrument);
    }

    /// Cancels every running step (an abort); each reports back as failed.
    fn abort(&self) {}
}

/// A request to the learner thread.
#[derive(Debug)]
pub enum LearnerRequest {
    /// A result to learn from: every output measured, or none if the experiment failed.
    Tell(Result_),
    /// Propose `n` points, avoiding `pending`, and where it can, the levels in `unavailable`.
    Ask {
        /// How many.
        n: usize,
        /// Points already running or queued.
        pending: Vec<Point>,
        /// Levels (parameter, level number) of reagent parameters whose reagent the bottles cannot give until a
        /// restock: proposals that use one would wait.
        unavailable: Vec<(String, f64)>,
        /// Keeps a discrete-event clock's lab time still until the answer is in the inbox: proposals asked at a lab
        /// time arrive at that lab time, however long the model takes.
        hold: devices::clock::Hold,
    },
}

/// The world's ends of the channels.
#[derive(Resource)]
pub struct Bridge {
    /// Inbound facts not yet turned into messages; the main loop appends what it received while waiting.
    pub backlog: Vec<Inbound>,
    /// The inbound channel.
    pub inbox: Receiver<Inbound>,
    /// Where steps go.
    pub executor: Box<dyn Executor>,
    /// The learner thread, when experiments come from proposals.
    pub learner: Option<Sender<LearnerRequest>>,
}

/// Marks a step error as an instrument fault when the instrument itself stopped working. A port that closed and
/// was reopened (`Reconnected`) is working again, so it fails only its step.
pub fn step_error(e: &devices::DeviceError) -> StepError {
    use devices::DeviceErrorKind as K;
    StepError {
        message: e.to_string(),
        may_have_acted: e.may_have_acted,
        instrument_fault: matches!(
            e.kind,
            K::Timeout { .. } | K::Disconnected | K::Io(_) | K::Open { .. } | K::Garbled { .. } | K::Checksum { .. }
        ),
    }
}
