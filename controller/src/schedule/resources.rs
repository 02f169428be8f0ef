//! Resources: where experiments come from, the plan, the deck, the campaign's progress, the clock and the record.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bevy_ecs::entity::EntityHashMap;
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

/// Where experiments come from.
#[derive(Resource)]
pub enum Source {
    /// A campaign: the learner proposes parameter values, each binds the protocol.
    Campaign(CampaignSource),
    /// A fixed list of jobs (a benchmark workload, or `lab plan` of a protocol).
    Jobs(VecDeque<Job>),
}

/// What a campaign's experiments are made of.
pub struct CampaignSource {
    /// The protocol every experiment binds.
    pub protocol: Arc<Protocol>,
    /// The lab, for positions and duration estimates.
    pub lab: Arc<Lab>,
    /// For each transfer step (by protocol index), the deck positions it may take the vessel to.
    pub transfer_positions: HashMap<usize, Vec<String>>,
    /// Parameter values fixed by the campaign.
    pub fixed: Point,
    /// The first objective's output name (the one "best" refers to).
    pub objective: String,
    /// Whether larger is better for the first objective.
    pub direction: Direction,
    /// Every objective's output name; an experiment succeeds only if it measured all of them.
    pub objectives: Vec<String>,
    /// When to stop early.
    pub stop: experiments::StopRules,
    /// The reagent each level of a reagent parameter dispenses, by parameter, in level order (the level's number
    /// is its place here, from 1).
    pub reagents: BTreeMap<String, Vec<String>>,
}

impl CampaignSource {
    /// The reagent each reagent parameter dispenses for an experiment's values.
    pub fn reagents_at(&self, values: &experiments::Point) -> BTreeMap<String, String> {
        experiments::reagents_at(&self.reagents, values)
    }
}

/// One job of a fixed list: steps on named instruments with known durations.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// A name for people.
    pub name: String,
    /// Its steps.
    pub steps: Vec<JobStep>,
}

/// One step of a job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobStep {
    /// Its name within the job.
    pub name: String,
    /// Which instruments may run it.
    pub on: protocols::InstrumentRef,
    /// What it does; `None` for abstract work.
    pub action: Option<protocols::Action>,
    /// Expected lab seconds.
    pub duration: f64,
    /// Indices of the steps it runs after.
    pub after: Vec<usize>,
    /// Its rules.
    pub rules: protocols::StepRules,
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
    /// Whether a vessel may be brought to `position` now by experiment `by`.
    pub fn is_free_for(&self, position: &str, by: Entity) -> bool {
        !self.occupant.contains_key(position) && self.reserved.get(position).is_none_or(|e| *e == by)
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
    /// No new experiments start (paused, aborted, out of proposals or vessels).
    pub stopping: bool,
    /// Paused by an operator (may resume).
    pub paused: bool,
    /// Everything is to stop now.
    pub aborted: bool,
    /// Why the campaign stopped early, if it did.
    pub stop_reason: Option<String>,
    /// The best experiment so far.
    pub best: Option<Best>,
    /// The record ids of the experiments the learner has been told, in order.
    pub told: Vec<i64>,
    /// The next experiment id to assign.
    pub next_experiment: i64,
    /// The next step id to assign.
    pub next_step: i64,
    /// The next proposal id to assign.
    pub next_proposal: i64,
    /// The most experiments that ran at once.
    pub peak_in_flight: usize,
    /// Steps whose outcome is unknown, waiting for reconciliation.
    pub unknown: usize,
    /// Failed experiments whose vessels are being returned to the rack.
    pub cleanups: usize,
    /// Why no new experiment may start until the controller runs again: an instrument a step needs is offline for
    /// the rest of this run. The run then ends without finishing the campaign, so `lab resume` carries it on.
    pub halted: Option<String>,
}

impl CampaignState {
    /// A fresh campaign.
    pub fn new(budget: usize, in_flight: usize, ids: crate::record::CampaignIds) -> Self {
        CampaignState {
            budget,
            in_flight,
            started: 0,
            running: 0,
            succeeded: 0,
            failed: 0,
            requested: 0,
            queue: VecDeque::new(),
            stopping: false,
            paused: false,
            aborted: false,
            stop_reason: None,
            best: None,
            told: Vec::new(),
            next_experiment: ids.first_experiment,
            next_step: ids.first_step,
            next_proposal: ids.first_proposal,
            peak_in_flight: 0,
            unknown: 0,
            cleanups: 0,
            halted: None,
        }
    }

    /// Whether the campaign has nothing left to do.
    pub fn is_finished(&self) -> bool {
        self.running == 0
            && self.cleanups == 0
            && !self.paused
            && (self.stopping || self.halted.is_some() || self.started >= self.budget)
    }

    /// Whether new experiments may start.
    pub fn may_start(&self) -> bool {
        !self.stopping && !self.paused && self.halted.is_none() && self.started < self.budget
    }
}

/// How the scheduler chooses.
#[derive(Resource, Debug, Clone, Copy, PartialEq)]
pub enum Policy {
    /// Each idle instrument takes the ready step with the longest remaining path (critical path first), aged by how
    /// long it has waited.
    Greedy,
    /// Follow a plan from the planner; replan whenever the work or the expected durations change (unless `replan`
    /// is false: the plan is then executed blindly, as a baseline).
    Planned {
        /// Whether to replan as reality departs from the plan.
        replan: bool,
        /// Schedules the planner may evaluate (None: its default for the problem's size).
        budget: Option<usize>,
    },
}

/// The current plan: for each instrument, the steps it should run, in order.
#[derive(Resource, Debug, Default)]
pub struct Schedule {
    /// Each instrument's planned steps, in order.
    pub queues: EntityHashMap<VecDeque<Entity>>,
    /// Each planned step's instrument and planned start.
    pub assigned: EntityHashMap<(Entity, f64)>,
    /// The plan's expected makespan.
    pub makespan: f64,
    /// Whether the plan no longer describes the work (new experiments, a surprise duration, a failure).
    pub dirty: bool,
    /// How many plans were made.
    pub plans: usize,
    /// Wall time spent planning.
    pub planning: Duration,
    /// The planner's work so far, in operations touched (`planner::Plan::work`): its time, independent of the
    /// machine.
    pub work: u64,
    /// Just after the earliest time an idle instrument waits for, because its plan has it wait for a step due then.
    /// A real run looks again every quarter second of wall time anyway; a simulation moves its clock to this time
    /// if nothing happens before, so that it too stops waiting for a step that is late.
    pub idle_until: Option<f64>,
}

/// What the scheduler learns about durations: for each operation on each instrument, how real durations compare
/// with estimates, so later estimates (and plans) improve as the campaign runs.
#[derive(Resource, Debug, Default)]
pub struct Estimates {
    ratios: HashMap<(String, String), (f64, u32)>,
}

impl Estimates {
    /// The factor to apply to an estimate of `op` on `instrument`.
    pub fn factor(&self, op: &str, instrument: &str) -> f64 {
        self.ratios.get(&(op.to_owned(), instrument.to_owned())).map_or(1.0, |(r, _)| *r)
    }

    /// Learns from one real duration; returns whether it surprised (differed from the estimate by more than 10%).
    pub fn observe(&mut self, op: &str, instrument: &str, estimate: f64, actual: f64) -> bool {
        if estimate <= 0.0 || !actual.is_finite() {
            return false;
        }
        let ratio = (actual / estimate).clamp(0.05, 20.0);
        let e = self.ratios.entry((op.to_owned(), instrument.to_owned())).or_insert((1.0, 0));
        let predicted = e.0;
        // An exponentially weighted mean, so the model follows drift but is not thrown by one outlier.
        e.1 += 1;
        let w = (1.0 / f64::from(e.1)).max(0.2);
        e.0 = e.0 * (1.0 - w) + ratio * w;
        (ratio / predicted - 1.0).abs() > 0.1
    }
}

/// Set by any system that changed what the scheduler could do next, so the main loop runs another frame before
/// waiting for news from outside.
#[derive(Resource, Debug, Default)]
pub struct Progress(pub bool);

/// How long the main loop waits for news before it runs a frame anyway: an instrument its plan holds for a step
/// that is now late stops waiting at the next frame. `lab plan` follows the same rhythm in lab time.
pub const IDLE_TICK: Duration = Duration::from_millis(250);

/// The earliest lab time at which a waiting step may start (a minimum wait), so the main loop can wake then.
#[derive(Resource, Debug, Default)]
pub struct NextWake(pub Option<f64>);

/// Ready steps, indexed by the instruments that could run them, best first; the scheduler's hot path reads this
/// instead of scanning every step.
///
/// Systems that make a step ready push it onto `fresh`; `index_ready_steps` files it under each instrument that
/// could run it (for a step on the vessel, only those at the vessel's place), or under `later` while a minimum wait
/// runs. Entries are removed lazily: a popped entry whose step is no longer ready is simply dropped.
#[derive(Resource, Debug, Default)]
pub struct ReadyIndex {
    /// Steps that became ready and are not yet filed.
    pub fresh: Vec<Entity>,
    /// Ready steps waiting for a minimum wait to end, by the time it ends.
    pub later: std::collections::BTreeSet<(OrderedTime, Entity)>,
    /// For each instrument, the ready steps it could run, best first.
    pub queues: EntityHashMap<std::collections::BTreeSet<ReadyKey>>,
    /// Each filed step's key and the instruments it is filed under.
    pub filed: EntityHashMap<(ReadyKey, Vec<Entity>)>,
}

impl ReadyIndex {
    /// Unfiles a step (it started, or stopped being ready).
    pub fn remove(&mut self, step: Entity) {
        if let Some((key, instruments)) = self.filed.remove(&step) {
            for i in instruments {
                if let Some(q) = self.queues.get_mut(&i) {
                    q.remove(&key);
                }
            }
        }
    }
}

/// A ready step's place in a queue: longest remaining path first, then older experiments, then protocol order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReadyKey {
    /// The negated remaining path, so larger paths sort first.
    pub priority: OrderedTime,
    /// The experiment's number.
    pub seq: usize,
    /// The step's index in its protocol.
    pub index: usize,
    /// The step.
    pub step: Entity,
}

/// A time (or any float) with a total order, for keys.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OrderedTime(pub f64);

impl Eq for OrderedTime {}

impl PartialOrd for OrderedTime {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrderedTime {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

impl std::hash::Hash for OrderedTime {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.to_bits().hash(state);
    }
}

/// The campaign's search space: which parameters the learner varies, and the values it can be told.
#[derive(Resource, Debug, Clone)]
pub struct Varied(pub experiments::Space);

/// What happens to an experiment whose next step can only take its vessel to places a lost vessel blocks.
#[derive(Resource, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BlockedPolicy {
    /// It waits for a person to look and `lab clear` the place; the record and `lab status` say so. Nothing of the
    /// budget is spent meanwhile.
    #[default]
    Wait,
    /// It fails as stranded, so an unattended lab goes on with what it can do.
    Fail,
}

/// What to do with a step whose outcome is unknown once its instrument is reconciled.
#[derive(Resource, Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownPolicy {
    /// Fail the step (and its experiment): unattended labs keep going, and the record says why.
    Fail,
    /// Wait for an operator's verdict (`lab confirm`).
    Wait,
}
