//! Planning by simulation: the scheduler's own world, run on expected durations in virtual time.
//!
//! `lab plan`, `lab bench schedule` and the dispatch benchmark use the same world, systems and policy as a real
//! campaign; only the executor differs. Here every dispatched step is "run" by a discrete-event simulation that ends
//! it after its expected duration (or a seeded perturbation of it, to study noise), and the lab clock jumps from one
//! event to the next. So what `lab plan` prints is what the scheduler would do, not a separate model of it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bevy_ecs::prelude::*;
use crossbeam_channel::{Receiver, Sender};
use devices::sim::DryBench;
use devices::{Clock, Outcome, Task};

use crate::record::Recorder;
use crate::schedule::bridge::{Bridge, Dispatch, Executor, Inbound};
use crate::schedule::components::{Availability, Experiment, Holds, Instrument, Step};
use crate::schedule::estimate::{Durations, State};
use crate::schedule::resources::{CampaignState, Job, LabClock, NextWake, Policy, Progress, Record, Source};
use crate::schedule::{install, resources};

/// How durations in a simulation relate to what the work says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Noise {
    /// Real durations are drawn uniformly within this fraction of the step's own duration (0.3 means ±30%): a job's
    /// step's `duration`, or for a campaign the estimate it starts with. 0 runs exactly those durations. What the
    /// scheduler learns from earlier steps changes its estimates, never the simulated lab.
    pub spread: f64,
    /// Seeds the draws. Each step's draw depends only on the seed and the step's id, so two runs with different
    /// policies see the same durations.
    pub seed: u64,
    /// Every step lasts this fraction longer (shorter, if negative) before its own draw: an error common to all
    /// the estimates, as a lab file's typical figures make.
    pub bias: f64,
}

impl Noise {
    /// Durations exactly as estimated.
    pub const NONE: Noise = Noise { spread: 0.0, seed: 0, bias: 0.0 };

    fn factor(&self, step_id: i64) -> f64 {
        if self.spread == 0.0 {
            return 1.0 + self.bias;
        }
        // SplitMix64 of (seed, step): a fixed, well-spread value per step.
        let mut z = self.seed ^ (step_id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let u = (z >> 11) as f64 / (1u64 << 53) as f64;
        (1.0 + self.bias) * (1.0 + self.spread * (2.0 * u - 1.0))
    }
}

/// What a simulated run did.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// When the last step ended (lab seconds).
    pub makespan: f64,
    /// Each instrument's busy time, by name.
    pub busy: Vec<(String, f64)>,
    /// Steps run.
    pub steps: usize,
    /// Experiments that finished.
    pub experiments: usize,
    /// Wall time the scheduler spent deciding (running frames), excluding the simulation's own bookkeeping.
    pub decision: Duration,
    /// Frames run.
    pub frames: usize,
    /// Plans made.
    pub plans: usize,
    /// Wall time the planner took, within `decision`.
    pub planning: Duration,
    /// Lost replies the run is expected to meet (each waited for until its line's timeout), and the lab seconds
    /// they are expected to cost, which the durations count in: their mean, not any one run's luck. A lost reply
    /// costs less than its wait where the heat it interrupts goes on meanwhile.
    pub lost: (f64, f64),
    /// The planner's work in all (`resources::Schedule::work`), which `planning` measures the pace of.
    pub work: u64,
    /// Whether it ran to the end (false: it deadlocked, which is a bug worth reporting).
    pub completed: bool,
}

/// The simulation's executor: dispatched steps wait in a queue for the event loop.
#[derive(Clone, Default)]
struct Queue(Arc<Mutex<Vec<(Entity, Dispatch)>>>);

impl Executor for Queue {
    fn dispatch(&self, instrument: Entity, dispatch: Dispatch) -> bool {
        self.0.lock().expect("queue lock").push((instrument, dispatch));
        true
    }

    fn reconcile(&self, _instrument: Entity) {}
}

/// How long the simulation waits for the proposer's answer (wall time) before it gives up and reports the run as
/// unfinished. A Gaussian process over a few hundred results answers in well under a second.
const PROPOSER_PATIENCE: Duration = Duration::from_secs(300);

/// A world ready to simulate: instruments spawned, resources inserted except the source and campaign state.
pub struct Setup {
    /// The world.
    pub world: World,
    /// The schedule.
    pub schedule: bevy_ecs::prelude::Schedule,
    /// The manual clock the simulation moves.
    pub clock: Clock,
    inbox: Receiver<Inbound>,
    inbox_tx: Sender<Inbound>,
    queue: Queue,
    names: HashMap<Entity, String>,
    /// Each job's steps' own durations, by job (the experiment's number less one) and step index: what a simulated
    /// step takes before noise, whatever the scheduler's estimate has become.
    durations: Vec<Vec<f64>>,
    physics: Option<Physics>,
    /// Replies the start-up is expected to lose, and their lab seconds ([`Durations::lost_at_startup`]).
    lost_at_startup: (f64, f64),
    /// The simulated bench the steps act on, whose measurements the run's results are (`None`: every measurement is
    /// a placeholder).
    bench: Option<DryBench>,
    /// Whether lab time stands still while a question to the proposer is unanswered (a plan's own proposer, which
    /// always answers) or goes on with what is due (a fleet's hub, which may have nothing to give until this very
    /// simulation has finished the experiments it holds).
    hold_for_answers: bool,
}

/// The simulation's prediction of how long each step takes: every instrument's rates, and its state as the run goes
/// on (how hot a plate still is, where the gantry stands). Without it, each step takes the scheduler's own estimate.
struct Physics {
    lab: Arc<devices::Lab>,
    durations: Durations,
    /// `durations` with no reply lost, and with every lost reply's wait counted whole: how much of each step is the
    /// expected cost of lost replies, and how many it is expected to meet.
    calm: Durations,
    whole: Durations,
    states: HashMap<Entity, (usize, State)>,
}

impl Setup {
    /// A world with the given instruments (name, kind, position) and policy, recording to `recorder`.
    pub fn new(
        instruments: &[(String, Option<protocols::InstrumentKind>, Option<String>)],
        policy: Policy,
        recorder: Recorder,
    ) -> Self {
        let mut world = World::new();
        let mut schedule = bevy_ecs::prelude::Schedule::default();
        install(&mut world, &mut schedule);
        let clock = Clock::manual();
        let (inbox_tx, inbox) = crossbeam_channel::unbounded();
        let queue = Queue::default();
        let mut names = HashMap::new();
        for (index, (name, kind, position)) in instruments.iter().enumerate() {
            let e = world
                .spawn((
                    Instrument { name: name.clone(), kind: *kind, position: position.clone(), index },
                    Availability::Idle,
                    Holds::default(),
                ))
                .id();
            names.insert(e, name.clone());
        }
        // The world never reads the learner's channel itself: the event loop hands each answer over at a point that
        // depends only on lab time (see `run`), so a proposer that answers faster or slower changes nothing.
        world.insert_resource(Bridge {
            backlog: Vec::new(),
            inbox: crossbeam_channel::never(),
            executor: Box::new(queue.clone()),
            learner: None,
        });
        world.insert_resource(LabClock(clock.clone()));
        world.insert_resource(Record { recorder, campaign: 0 });
        world.insert_resource(policy);
        Setup {
            world,
            schedule,
            clock,
            inbox,
            inbox_tx,
            queue,
            names,
            durations: Vec::new(),
            physics: None,
            lost_at_startup: (0.0, 0.0),
            bench: None,
            hold_for_answers: true,
        }
    }

    /// Lets lab time go on while the proposals' source has not answered, for a source that may have nothing to give
    /// for a while: a fleet's hub whose last proposals are all claimed waits for the results of the experiments this
    /// simulation holds, so holding lab time for its answer would wait for ever. The run is then no longer
    /// independent of the wall clock (when an answer arrives decides at which lab time it lands), which a rehearsal
    /// of a fleet does not need.
    pub fn go_on_without_answers(&mut self) {
        self.hold_for_answers = false;
    }

    /// The sending end of the inbox (for a learner thread).
    pub fn inbox(&self) -> Sender<Inbound> {
        self.inbox_tx.clone()
    }

    /// Adds a fixed list of jobs, all released at once up to `in_flight` at a time, numbered from 1 under campaign 0.
    pub fn jobs(&mut self, jobs: Vec<Job>, in_flight: usize) {
        let ids = crate::record::CampaignIds { campaign: 0, first_experiment: 1, first_step: 1, first_proposal: 1 };
        self.recorded_jobs(jobs, in_flight, ids);
    }

    /// Adds jobs as [`Setup::jobs`] does, numbered under the campaign a record began (`Record::begin_campaign`), so
    /// their rows land in that record.
    pub fn recorded_jobs(&mut self, jobs: Vec<Job>, in_flight: usize, ids: crate::record::CampaignIds) {
        let n = jobs.len();
        self.durations = jobs.iter().map(|j| j.steps.iter().map(|s| s.duration).collect()).collect();
        self.world.insert_resource(Source::Jobs(VecDeque::from(jobs)));
        self.world.insert_resource(CampaignState::new(n, in_flight.max(1), ids));
        self.world.resource_mut::<resources::Record>().campaign = ids.campaign;
        self.world.insert_resource(resources::RackState { fresh: VecDeque::new() });
    }

    /// The own duration of the job step `step`, if the work is a list of jobs.
    fn duration(&self, step: Entity) -> Option<f64> {
        let step = self.world.get::<Step>(step)?;
        let seq = self.world.get::<Experiment>(step.experiment)?.seq;
        self.durations.get(seq.checked_sub(1)?)?.get(step.index).copied()
    }

    /// The lab seconds a prime of `volume` microlitres adds on `instrument` ([`Durations::prime`]), with this
    /// simulation's rates (the lab file's defaults without them); zero outside a campaign.
    fn prime(&self, instrument: Entity, volume: f64) -> f64 {
        let (lab, durations) = match (&self.physics, self.world.get_resource::<Source>()) {
            (Some(p), _) => (Arc::clone(&p.lab), p.durations.clone()),
            (None, Some(Source::Campaign(cs))) => (Arc::clone(&cs.lab), Durations::of(&cs.lab)),
            _ => return 0.0,
        };
        let Some(spec) = self.names.get(&instrument).and_then(|n| lab.instrument(n)) else { return 0.0 };
        durations.prime(&lab, spec, volume)
    }

    /// Predicts each step's duration from `durations` and the state of its instrument in `lab` (see
    /// [`Durations::run`]) instead of taking the scheduler's estimate, and starts the run after `durations.startup`
    /// lab seconds, as a real run starts after opening and initializing its instruments.
    pub fn with_durations(&mut self, lab: Arc<devices::Lab>, durations: Durations) {
        let mut states = HashMap::new();
        for (e, name) in &self.names {
            if let Some(index) = lab.instruments.iter().position(|i| &i.name == name) {
                states.insert(*e, (index, durations.initial(&lab, &lab.instruments[index])));
            }
        }
        self.clock.advance(durations.startup.max(0.0));
        let (calm, whole) = (durations.calm(), durations.whole_waits());
        self.lost_at_startup = durations.lost_at_startup;
        self.physics = Some(Physics { lab, durations, calm, whole, states });
    }

    /// Makes every step act on a simulated bench of `lab` on this simulation's clock, and every measurement read
    /// there, its spectrometers drawing their noise as a run of the lab with the simulation seed `noise` would
    /// ([`DryBench::with_noise`]); false (and nothing changes) if the bench does not model the lab's instruments.
    pub fn with_bench(&mut self, lab: &devices::Lab, noise: u64) -> bool {
        self.bench = DryBench::with_noise(lab, self.clock.clone(), noise);
        self.bench.is_some()
    }

    /// Runs the world to the end in virtual time.
    pub fn run(mut self, noise: Noise) -> Report {
        let mut heap: BinaryHeap<Reverse<(Key, i64, Entity, Entity, u64)>> = BinaryHeap::new();
        let mut started: HashMap<Entity, (f64, Entity, Option<Task>)> = HashMap::new();
        let mut busy: HashMap<Entity, f64> = HashMap::new();
        let mut decision = Duration::ZERO;
        let mut frames = 0;
        let mut steps = 0;
        let mut makespan = 0.0f64;
        let mut seq = 0u64;
        let mut lost = self.lost_at_startup;
        let completed = loop {
            let t0 = Instant::now();
            let work = self.world.resource::<resources::Schedule>().work;
            self.schedule.run(&mut self.world);
            decision += t0.elapsed();
            frames += 1;
            // A frame that planned takes the planner's time, which a simulated lab's acceleration makes lab time:
            // the steps it dispatches start after it, and events meanwhile wait for the next frame.
            let thinking = match &self.physics {
                Some(p) => (self.world.resource::<resources::Schedule>().work - work) as f64 * p.durations.planner,
                None => 0.0,
            };
            if thinking > 0.0 {
                self.clock.advance(thinking);
            }
            let now = self.clock.now();
            for (instrument, d) in self.queue.0.lock().expect("queue lock").drain(..) {
                let own = self.duration(d.step).unwrap_or(d.estimate);
                let expected = match (&mut self.physics, &d.task) {
                    (Some(p), Some(task)) => match p.states.get_mut(&instrument) {
                        Some((index, state)) => {
                            let spec = &p.lab.instruments[*index];
                            let calm = p.calm.run(&p.lab, spec, &mut state.clone(), task, now);
                            let whole = p.whole.run(&p.lab, spec, &mut state.clone(), task, now);
                            let expected = p.durations.run(&p.lab, spec, state, task, now);
                            let wait = Durations::lost_reply(&p.lab, spec);
                            if whole > calm && wait > 0.0 {
                                lost.0 += (whole - calm) / wait;
                                lost.1 += expected - calm;
                            }
                            expected
                        }
                        None => own,
                    },
                    _ => own,
                };
                // A dispense that primes the line of the valve feeding its pump first (the stock's line held another
                // reagent, or one not known) takes the prime's draw, turns and push too.
                let primed = d.prime.map_or(0.0, |(_, volume)| self.prime(instrument, volume));
                let duration = ((expected + primed) * noise.factor(d.step_id)).max(0.0);
                *busy.entry(instrument).or_default() += duration;
                steps += 1;
                seq += 1;
                if let (Some(bench), Some(task), Some(name)) = (&self.bench, &d.task, self.names.get(&instrument)) {
                    // A dispense through a selector valve turns it (and primes its line) first, as the run does.
                    if let Some((valve, port)) = d.turn
                        && let Some(valve) = self.names.get(&valve)
                    {
                        bench.turn_for(name, valve, port, d.prime);
                    }
                    bench.start(name, task);
                }
                started.insert(d.step, (now, instrument, d.task.clone()));
                heap.push(Reverse((Key(now + duration), d.step_id, d.step, instrument, seq)));
            }
            if self.world.resource::<CampaignState>().is_finished() {
                break true;
            }
            if std::mem::take(&mut self.world.resource_mut::<Progress>().0) {
                continue;
            }
            let asked = self.world.resource::<CampaignState>().requested > 0;
            if asked && self.hold_for_answers {
                // The proposer has been asked and has not answered. Lab time stands still until it does, whatever
                // else is due: the answer arrives at the lab time of the question, as it does in a real run of a
                // proposer that answers within a poll. Moving on would let the wall clock decide at which lab time
                // the answer lands, and so the plan (a slow or busy machine made hotplates wait for proposals).
                match self.inbox.recv_timeout(PROPOSER_PATIENCE) {
                    Ok(item) => self.world.resource_mut::<Bridge>().backlog.push(item),
                    Err(_) => break false,
                }
                continue;
            }
            if asked && let Ok(item) = self.inbox.try_recv() {
                self.world.resource_mut::<Bridge>().backlog.push(item);
                continue;
            }
            let next_event = heap.peek().map(|Reverse((Key(t), ..))| *t);
            let wake = self.world.resource::<NextWake>().0;
            let next = earliest(next_event, wake);
            // An instrument its plan holds idle for a step due later stops waiting once that step is late, as in a
            // real run, which looks again every quarter second. Without this wake the simulation jumped to its next
            // event (a heat ending an hour later) or, with none, ended with work left. A real run notices at its
            // first frame after the step is due: a frame runs on every event and, with none, a tick after the last
            // frame; with the lab's pace known, the simulation waits for that tick too.
            let idle = self.world.resource::<resources::Schedule>().idle_until.map(|due| match &self.physics {
                Some(p) if p.durations.tick > 0.0 => {
                    let tick = p.durations.tick;
                    now + ((due - now) / tick).ceil().max(1.0) * tick
                }
                _ => due,
            });
            let next = earliest(next, idle);
            let Some(t) = next else {
                // Nothing is due: a source that was asked is waited for, as long as a plan's proposer would be.
                if asked && let Ok(item) = self.inbox.recv_timeout(PROPOSER_PATIENCE) {
                    self.world.resource_mut::<Bridge>().backlog.push(item);
                    continue;
                }
                break false;
            };
            if t > now {
                self.clock.advance(t - now);
            }
            let mut ended = Vec::new();
            while let Some(Reverse((Key(end), _, step, _, _))) = heap.peek().cloned() {
                if end > t + 1e-9 {
                    break;
                }
                heap.pop();
                makespan = makespan.max(end);
                let (start, instrument, task) = started.remove(&step).unwrap_or((end, Entity::PLACEHOLDER, None));
                let measured = match (&self.bench, &task, self.names.get(&instrument)) {
                    (Some(bench), Some(task), Some(name)) => bench.end(name, task),
                    _ => None,
                };
                let outcome = match task {
                    Some(Task::Measure { .. }) => Outcome::Measured { value: measured.unwrap_or(0.0), unit: "AU" },
                    _ => Outcome::Done,
                };
                ended.push(Inbound::StepEnded { step, result: Ok(outcome), started: start, ended: end });
            }
            let backlog = &mut self.world.resource_mut::<Bridge>().backlog;
            if ended.is_empty() {
                backlog.push(Inbound::Tick);
            }
            backlog.extend(ended);
        };
        let schedule = self.world.resource::<resources::Schedule>();
        let state = self.world.resource::<CampaignState>();
        let mut busy: Vec<(String, f64)> =
            self.names.iter().map(|(e, n)| (n.clone(), busy.get(e).copied().unwrap_or(0.0))).collect();
        busy.sort_by(|a, b| a.0.cmp(&b.0));
        Report {
            makespan,
            busy,
            steps,
            experiments: state.succeeded + state.failed,
            decision,
            frames,
            plans: schedule.plans,
            planning: schedule.planning,
            work: schedule.work,
            lost,
            completed,
        }
    }
}

/// A total order on times.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Key(f64);

impl Eq for Key {}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

impl Setup {
    /// A world for planning a campaign's experiments in `lab`, proposed by `proposer`.
    pub fn campaign(
        campaign: &crate::run::CampaignParts,
        proposer: Box<dyn experiments::Proposer>,
        protocol: &std::sync::Arc<protocols::Protocol>,
        lab: &std::sync::Arc<devices::Lab>,
        policy: Policy,
    ) -> Result<(Self, std::thread::JoinHandle<()>), String> {
        let instruments: Vec<(String, Option<protocols::InstrumentKind>, Option<String>)> =
            lab.instruments.iter().map(|i| (i.name.clone(), Some(i.kind()), i.position.clone())).collect();
        let mut setup = Setup::new(&instruments, policy, Recorder::null());
        let (tx, handle) = crate::run::spawn_proposer(proposer, setup.inbox()).map_err(|e| e.to_string())?;
        setup.world.resource_mut::<Bridge>().learner = Some(tx);
        let clock = setup.clock.clone();
        let record = setup.world.resource::<Record>().clone();
        crate::run::insert_campaign(
            &mut setup.world,
            campaign,
            protocol,
            lab,
            &clock,
            record,
            crate::record::CampaignIds { campaign: 0, first_experiment: 1, first_step: 1, first_proposal: 1 },
            policy,
        );
        Ok((setup, handle))
    }
}

/// The earlier of two optional lab times.
fn earliest(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
