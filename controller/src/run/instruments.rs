//! The instruments of a real run: opening and identifying each one, and the task that runs its work.
//!
//! [`connect_all`] opens every instrument's port, reads what a newly opened port already holds, and asks each who
//! it is (retrying a few times, since an instrument may still be waking), recording every answer. Each instrument
//! then gets one tokio task ([`instrument_task`]) that owns its driver and runs one piece of work at a time: a step,
//! within its timeout, a read-back of its physical state (for a step in doubt), or a reconciliation (safe state,
//! identify, initialize); it puts the instrument in its safe
//! state after a failed step and at the end, and reports every outcome over the bridge. [`TaskExecutor`] is the
//! scheduler's executor in a real run: it sends a step to its task only once the step's intent is committed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bevy_ecs::prelude::*;
use crossbeam_channel::Sender;
use devices::capability::Instrument as DeviceInstrument;
use devices::{Clock, Lab};
use protocols::Protocol;
use tokio::sync::{mpsc, oneshot, watch};

use crate::record::{RecordEvent, Recorder};
use crate::schedule::bridge::step_error;
use crate::schedule::bridge::{Dispatch, Executor, Inbound, StepError};

/// What a real instrument task is asked to do.
pub(super) enum Work {
    /// A step; for a dispense through a selector valve, with the valve's task, which the pump's task asks to turn
    /// first (the scheduler claimed the valve with the pump, so nothing else turns it meanwhile).
    Step(Dispatch, Option<WorkSender>),
    /// Safe state, identify, initialize; for a pump fed by a selector valve, with that valve, so that a syringe that
    /// may hold liquid is emptied through the waste port first.
    Reconcile(Option<Feeder>),
    /// Turn this valve to a port for the step tagged `tag` (running on the pump the valve feeds), and answer.
    Turn { position: u32, tag: i64, reply: Answer },
    /// Read the instrument's physical state back, tagging the exchanges with a step in doubt's id.
    Observe(i64),
    /// Turn this valve to a port for the pump it feeds, answer, and then turn nothing else until `release` is
    /// dropped (the pump pushes through the port meanwhile).
    Hold { position: u32, reply: Answer, release: oneshot::Receiver<()> },
    /// The run is over: put the instrument in its safe state and stop. Sent when the executor goes, with a hold as
    /// any work is, so that a discrete-event clock's lab time cannot move on between the run's end and the task's
    /// waking to it (a closed channel wakes the task with no hold, and lab time would then move to whatever is due
    /// next as the threads happen to run, so the final safe states would start at a different lab time from run
    /// to run).
    End,
}

/// A valve task's answer to a turn, with the hold that keeps a discrete-event clock's lab time still until the pump
/// that asked has taken it up.
type Answer = oneshot::Sender<(Result<(), String>, devices::clock::Hold)>;

/// The selector valve that feeds a pump's input: its name, its task (none if it is offline), and its waste port.
#[derive(Clone)]
pub(super) struct Feeder {
    pub(super) valve: String,
    pub(super) sender: Option<WorkSender>,
    pub(super) waste: Option<u32>,
}

/// The valve feeding each pump of the lab that one feeds, by the pump's entity.
pub(super) fn feeders(
    lab: &Lab,
    entities: &HashMap<String, Entity>,
    senders: &HashMap<Entity, WorkSender>,
) -> HashMap<Entity, Feeder> {
    let mut out = HashMap::new();
    for spec in &lab.instruments {
        let devices::lab::DriverConfig::ViciValve(v) = &spec.driver else { continue };
        let Some(pump) = v.feeds.as_ref().and_then(|p| entities.get(p)) else { continue };
        let sender = entities.get(&spec.name).and_then(|e| senders.get(e)).cloned();
        out.insert(*pump, Feeder { valve: spec.name.clone(), sender, waste: v.waste });
    }
    out
}

/// Work for an instrument's task, with the hold that keeps a discrete-event clock's lab time still until the task
/// has taken it up (see `devices::clock::events`).
pub(super) type WorkSender = mpsc::UnboundedSender<(Work, devices::clock::Hold)>;

/// The executor of a real run: steps go to instrument tasks, each only after its intent is committed to the record.
pub(super) struct TaskExecutor {
    pub(super) senders: HashMap<Entity, WorkSender>,
    pub(super) feeders: HashMap<Entity, Feeder>,
    pub(super) recorder: Recorder,
    pub(super) abort: watch::Sender<bool>,
    pub(super) clock: Clock,
}

impl TaskExecutor {
    /// Sends `work` to `instrument`'s task once everything recorded so far is committed.
    fn send_after_commit(&self, tx: WorkSender, work: Work) {
        let hold = self.clock.hold();
        self.recorder.after_commit(move || {
            let _ = tx.send((work, hold));
        });
    }
}

impl Drop for TaskExecutor {
    /// Ends every instrument's task, each after everything recorded so far is committed (after any work sent
    /// before it).
    fn drop(&mut self) {
        for tx in self.senders.values() {
            self.send_after_commit(tx.clone(), Work::End);
        }
    }
}

impl Executor for TaskExecutor {
    fn dispatch(&self, instrument: Entity, dispatch: Dispatch) -> bool {
        let Some(tx) = self.senders.get(&instrument).cloned() else { return false };
        if tx.is_closed() {
            return false;
        }
        let valve = dispatch.turn.and_then(|(v, _)| self.senders.get(&v).cloned());
        self.send_after_commit(tx, Work::Step(dispatch, valve));
        true
    }

    fn reconcile(&self, instrument: Entity) {
        if let Some(tx) = self.senders.get(&instrument).cloned() {
            let feeder = self.feeders.get(&instrument).cloned();
            self.send_after_commit(tx, Work::Reconcile(feeder));
        }
    }

    fn observe(&self, instrument: Entity, step_id: i64) {
        if let Some(tx) = self.senders.get(&instrument).cloned() {
            self.send_after_commit(tx, Work::Observe(step_id));
        }
    }

    fn abort(&self) {
        let _ = self.abort.send(true);
    }
}

/// Gives a spectrometer whose holder a vessel may occupy the reference its predecessor took with the holder empty
/// (`reference`, from the record), so that initializing takes none through the vessel; says so in the record. Without
/// one the instrument is not used: a reading against a reference taken through a vessel would be wrong unseen.
fn reuse_reference(
    inst: &mut dyn DeviceInstrument,
    reference: crate::run::reference::RecordedReference,
    recorder: &Recorder,
    campaign: i64,
    now: f64,
) -> Result<(), String> {
    let name = inst.name().to_owned();
    let Some(measure) = inst.as_measure() else { return Ok(()) };
    let why = "the campaign stopped with vessels on the deck, so one may stand in its holder";
    let Some((exchange, received)) = reference else {
        return Err(format!(
            "{why}, and the record holds no reference spectrum taken with the holder empty; it is left out of this \
             run, as a reference taken now could be taken through a vessel"
        ));
    };
    measure.restore_reference(&received).map_err(|e| {
        format!(
            "{why}, and the reference spectrum taken with the holder empty (exchange {exchange}) cannot be used: {e}"
        )
    })?;
    recorder.send(RecordEvent::say(
        campaign,
        now,
        "info",
        Some(&name),
        format!(
            "{name}: {why}; no reference spectrum is taken through it: the one taken with the holder empty (exchange \
             {exchange}) is used"
        ),
    ));
    Ok(())
}

/// How many times an instrument is asked who it is before it counts as offline.
pub(super) const IDENTIFY_ATTEMPTS: u32 = 3;

/// How long a port is left before it is reopened to ask again: longer than any reply a working instrument keeps
/// waiting.
pub(super) const IDENTIFY_SETTLE: Duration = Duration::from_millis(500);

/// Opens, identifies and initializes every instrument, all at once, except that the instruments named in
/// `read_first` (a step on them was in doubt when the controller stopped) are only opened: initializing would stop a
/// plate that still heats or move a pump, and any command restarts a plate's watchdog, so they are identified and
/// read back together, before anything changes them.
pub(super) async fn connect_all(
    lab: &Lab,
    ports: &BTreeMap<String, String>,
    clock: &Clock,
    recorder: &Recorder,
    campaign: i64,
    read_first: &[String],
    references: &BTreeMap<String, crate::run::reference::RecordedReference>,
    setup: devices::clock::Hold,
) -> Vec<(String, Result<Box<dyn DeviceInstrument>, String>)> {
    let mut handles = Vec::new();
    // Exchanges are gathered with the record's other events: waking the writer for every command would cost as much
    // as the command's round trip.
    let exchanges = recorder.exchange_sink(campaign);
    for spec in &lab.instruments {
        let spec = spec.clone();
        let deck = lab.deck.clone();
        let path = ports.get(&spec.name).cloned();
        let clock = clock.clone();
        let recorder = recorder.clone();
        let sink = Arc::clone(&exchanges);
        let read_first = read_first.contains(&spec.name);
        let reference = references.get(&spec.name).cloned();
        // Each start-up holds lab time from the outset, as a party of the lab (the controller's hold goes after).
        let holds = vec![clock.hold()];
        handles.push(tokio::spawn(devices::clock::party(holds, async move {
            let name = spec.name.clone();
            let Some(path) = path else {
                return (name, Err("no port: its simulator did not start".to_owned()));
            };
            if read_first {
                // Every command restarts a hotplate's watchdog, and a plate left heating past its hold must not be
                // kept going by questions: an instrument a step was in doubt on is asked who it is only when it is
                // read back, just before it is read (its row of `instruments` keeps the identity it gave before).
                let opened = devices::drivers::connect(&spec, &deck, &path, clock.clone(), Arc::clone(&sink));
                return (name, opened.map_err(|e| e.to_string()));
            }
            let mut identity = None;
            let result = async {
                let mut attempt = 1;
                let mut inst = loop {
                    // The driver's link reopens `path` itself, with the lab file's backoff, if the port disappears.
                    let mut inst = devices::drivers::connect(&spec, &deck, &path, clock.clone(), Arc::clone(&sink))
                        .map_err(|e| e.to_string())?;
                    if !spec.port.is_simulated() && clock.scale() != 1.0 {
                        return Err(format!(
                            "a real instrument cannot run in accelerated time ({}x); run this lab at time scale 1",
                            clock.scale()
                        ));
                    }
                    match inst.identify().await {
                        Ok(id) => {
                            identity = Some(id);
                            break inst;
                        }
                        // A controller that stopped mid-command can leave its instrument's answer still on its way
                        // (a slow instrument answers after the new link has drained the port), and the identity
                        // request then reads that answer. Asking who an instrument is moves nothing, so it is asked
                        // again on a freshly opened port once the answer has had time to arrive.
                        Err(e) if attempt < IDENTIFY_ATTEMPTS => {
                            recorder.send(RecordEvent::say(
                                campaign,
                                clock.now(),
                                "warning",
                                Some(&name),
                                format!(
                                    "{name} did not identify itself ({e}); asking again on a reopened port \
                                     (attempt {} of {IDENTIFY_ATTEMPTS})",
                                    attempt + 1
                                ),
                            ));
                            drop(inst);
                            clock.wall_wait(IDENTIFY_SETTLE).await;
                            attempt += 1;
                        }
                        Err(e) => return Err(e.to_string()),
                    }
                };
                if let Some(reference) = reference {
                    reuse_reference(inst.as_mut(), reference, &recorder, campaign, clock.now())?;
                }
                // Initializing drives an instrument to a known state (a pump's plunger home, a gantry homed, a valve
                // to its first port), so doing it again reaches the same state: a reply lost on the way (no answer,
                // a garbled one, a port that blinked) is asked again rather than taking the instrument offline, and
                // so is a refusal as busy that ran nothing (a plunger still moving), after a pause.
                let mut attempt = 1;
                loop {
                    match inst.initialize().await {
                        Ok(()) => break,
                        Err(e) if attempt < IDENTIFY_ATTEMPTS && (e.reply_was_lost() || e.refused_as_busy()) => {
                            let what = if e.refused_as_busy() { "answered busy to" } else { "did not confirm" };
                            recorder.send(RecordEvent::say(
                                campaign,
                                clock.now(),
                                "warning",
                                Some(&name),
                                format!(
                                    "{name} {what} its initialization ({e}); initializing again (attempt {} of \
                                     {IDENTIFY_ATTEMPTS})",
                                    attempt + 1
                                ),
                            ));
                            clock.wall_wait(IDENTIFY_SETTLE).await;
                            attempt += 1;
                        }
                        Err(e) => return Err(e.to_string()),
                    }
                }
                Ok::<_, String>(inst)
            }
            .await;
            recorder.send(RecordEvent::Instrument {
                campaign,
                name: name.clone(),
                kind: spec.kind().name().to_owned(),
                driver: spec.driver.name().to_owned(),
                port: path.clone(),
                line: spec.line.to_string(),
                identity: identity.as_ref().map(|i| Box::new(crate::record::IdentityRow::from(i))),
                error: result.as_ref().err().cloned(),
            });
            if let Err(e) = &result {
                recorder.send(RecordEvent::Event {
                    campaign,
                    at: clock.now(),
                    level: "error".to_owned(),
                    instrument: Some(name.clone()),
                    message: format!("{name} is offline: {e}"),
                });
            }
            (name, result)
        })));
    }
    drop(setup);
    let mut out = Vec::new();
    for h in handles {
        match h.await {
            Ok(r) => out.push(r),
            Err(e) => tracing::error!("an instrument's start-up task failed: {e}"),
        }
    }
    out
}

/// Says which kind or named instrument the protocol needs that no working instrument provides, if any.
pub(super) fn missing_capability(
    protocol: &Protocol,
    lab: &Lab,
    ready: &[(String, Box<dyn DeviceInstrument>)],
) -> Option<String> {
    let working: Vec<&str> = ready.iter().map(|(n, _)| n.as_str()).collect();
    for step in protocol.steps() {
        let ok = lab.candidates(&step.on).any(|c| working.contains(&c.name.as_str()));
        if !ok {
            return Some(format!(
                "step `{}` needs {} and none is working ({}); nothing was run",
                step.id,
                step.on,
                lab.candidates(&step.on).map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
            ));
        }
    }
    None
}

/// One instrument's I/O task: runs dispatched steps one at a time (each within its timeout) and reports each end;
/// reconciles the instrument when asked. It runs as a party of the lab's time (`devices::clock::party`).
pub(super) async fn instrument_task(
    mut inst: Box<dyn DeviceInstrument>,
    entity: Entity,
    mut rx: mpsc::UnboundedReceiver<(Work, devices::clock::Hold)>,
    inbound: Sender<Inbound>,
    clock: Clock,
    recorder: Recorder,
    campaign: i64,
    mut abort: watch::Receiver<bool>,
) {
    let name = inst.name().to_owned();
    let say = |level: &str, message: String| {
        recorder.send(RecordEvent::say(campaign, clock.now(), level, Some(&name), message))
    };
    loop {
        let next = devices::clock::waiting(async {
            tokio::select! {
                w = rx.recv() => w,
                _ = abort.wait_for(|a| *a) => None,
            }
        })
        .await;
        let Some((work, hold)) = next else { break };
        devices::clock::adopt(hold);
        let (d, valve) = match work {
            Work::Step(d, valve) => (d, valve),
            Work::End => break,
            Work::Turn { position, tag, reply } => {
                inst.set_tag(Some(tag as u64));
                let r = devices::execute(&mut *inst, &devices::Task::Select { position }).await;
                inst.set_tag(None);
                let _ = reply.send((r.map(|_| ()).map_err(|e| e.to_string()), clock.hold()));
                continue;
            }
            Work::Observe(step_id) => {
                // Only queries go out, who it is first and then its state; the exchanges carry the step's id, so the
                // record keeps them as its evidence.
                let from = clock.now();
                inst.set_tag(Some(step_id as u64));
                // A slow instrument's late answer to the dead controller's last command can still arrive; asking who
                // it is again, after it has had time to come, moves nothing.
                let mut identified = inst.identify().await;
                for _ in 1..IDENTIFY_ATTEMPTS {
                    if identified.is_ok() {
                        break;
                    }
                    clock.wall_wait(IDENTIFY_SETTLE).await;
                    identified = inst.identify().await;
                }
                let result = match identified {
                    Err(e) => Err(format!("it did not identify itself: {e}")),
                    Ok(_) => match inst.as_read_back() {
                        Some(r) => r.observe().await.map_err(|e| e.to_string()),
                        None => Err(format!("{name} cannot be read back")),
                    },
                };
                inst.set_tag(None);
                if inbound.send(Inbound::Observed { instrument: entity, result, from }).is_err() {
                    break;
                }
                continue;
            }
            Work::Hold { position, reply, release } => {
                let r = devices::execute(&mut *inst, &devices::Task::Select { position }).await;
                let turned = r.is_ok();
                let _ = reply.send((r.map(|_| ()).map_err(|e| e.to_string()), clock.hold()));
                if turned {
                    // Nothing else turns the valve until the pump has pushed through it (or the run aborts). The
                    // valve waits meanwhile, so a discrete-event clock's lab time goes on for the pump's push.
                    devices::clock::waiting(async {
                        tokio::select! {
                            _ = release => {}
                            _ = abort.wait_for(|a| *a) => {}
                        }
                    })
                    .await;
                }
                continue;
            }
            Work::Reconcile(feeder) => {
                let result = async {
                    inst.safe_state().await.map_err(|e| e.to_string())?;
                    inst.identify().await.map_err(|e| e.to_string())?;
                    match (feeder, inst.as_prime()) {
                        (Some(feeder), Some(pump)) if pump.may_hold() => {
                            let said = empty_to_waste(pump, &feeder, &name, &clock).await?;
                            say("warning", said);
                            Ok(())
                        }
                        _ => inst.initialize().await.map_err(|e| e.to_string()),
                    }
                }
                .await;
                if inbound.send(Inbound::Reconciled { instrument: entity, result }).is_err() {
                    break;
                }
                continue;
            }
        };
        inst.set_tag(Some(d.step_id as u64));
        let started = clock.now();
        let result = match &d.task {
            None => Err(StepError {
                message: format!("{name}: abstract work cannot run on an instrument"),
                may_have_acted: false,
                instrument_fault: false,
            }),
            Some(task) => tokio::select! {
                r = async {
                    if let (Some((_, port)), Some(valve)) = (d.turn, &valve) {
                        turn_valve(valve, port, d.step_id, &name, &clock).await?;
                        if let Some((waste, volume)) = d.prime {
                            prime_line(&mut *inst, valve, port, waste, volume, d.step_id, &clock).await?;
                            say("info", format!(
                                "{name}: primed the line from port {port}: drew {volume:.1} uL and pushed it out to \
                                 waste port {waste}"
                            ));
                        }
                    }
                    devices::execute(&mut *inst, task).await.map_err(|e| step_error(&e))
                } => r,
                () = step_timeout(&clock, d.timeout) => Err(StepError {
                    message: format!("{name}: the step did not finish within its timeout of {:.0} s (lab time)", d.timeout),
                    may_have_acted: true,
                    instrument_fault: false,
                }),
                _ = abort.wait_for(|a| *a) => Err(StepError {
                    message: format!("{name}: cancelled by an abort"),
                    may_have_acted: true,
                    instrument_fault: false,
                }),
            },
        };
        if let Err(e) = &result {
            // A failed step may have left heat on or a motor running: make the instrument safe before anything else.
            match inst.safe_state().await {
                Ok(()) => say("warning", format!("{name} put in its safe state after: {}", e.message)),
                Err(s) => say("error", format!("{name} could NOT be put in its safe state ({s}) after: {}", e.message)),
            }
        }
        inst.set_tag(None);
        let ended = clock.now();
        if inbound.send(Inbound::StepEnded { step: d.step, result, started, ended }).is_err() {
            break;
        }
    }
    // Nothing more is taken: work still queued goes now, its hold taken up, so that it cannot keep a discrete-event
    // clock's lab time still while the instrument is made safe (its replies' timeouts are waits on that time).
    rx.close();
    while let Ok((_, hold)) = rx.try_recv() {
        devices::clock::adopt(hold);
    }
    match inst.safe_state().await {
        Ok(()) => say("info", format!("{name} left in its safe state")),
        Err(e) => say("error", format!("{name} could NOT be put in its safe state at the end: {e}")),
    }
}

/// Waits out a step's timeout of `lab_seconds`: lab time, but on a clock paced against the wall never less than
/// [`STEP_TIMEOUT_FLOOR`] of wall time, since on a fast clock the serial exchanges themselves (which are never
/// accelerated) would otherwise eat it. A discrete-event clock has no such jitter and stands for the real lab, so
/// its bound is the timeout alone, which the scheduler builds from what the step is expected to take in its
/// instrument's condition (`schedule::systems::step_timeout`). The bound is armed when this is called, before the
/// step starts (`Clock::sleep` says why).
fn step_timeout(clock: &Clock, lab_seconds: f64) -> impl std::future::Future<Output = ()> + Send + '_ {
    let deadline = clock.is_discrete().then(|| clock.deadline(clock.now() + lab_seconds.max(0.0)));
    async move {
        match deadline {
            Some(deadline) => deadline.await,
            None => tokio::time::sleep(clock.wall(lab_seconds).max(STEP_TIMEOUT_FLOOR)).await,
        }
    }
}

/// The least wall time a step's timeout lasts.
const STEP_TIMEOUT_FLOOR: Duration = Duration::from_secs(30);

/// Primes the line between a valve and pump `inst` (the valve already at `port`): draws `volume` through it, turns
/// the valve to `waste`, pushes everything back out there, and turns the valve back to `port`. Once the pump has
/// been asked to draw, any failure may have moved liquid.
async fn prime_line(
    inst: &mut dyn DeviceInstrument,
    valve: &WorkSender,
    port: u32,
    waste: u32,
    volume: f64,
    tag: i64,
    clock: &Clock,
) -> Result<(), StepError> {
    let name = inst.name().to_owned();
    let acted = |mut e: StepError| {
        e.may_have_acted = true;
        e
    };
    let Some(pump) = inst.as_prime() else {
        return Err(StepError {
            message: format!("{name}: cannot prime the line (it cannot push back through its input)"),
            may_have_acted: false,
            instrument_fault: false,
        });
    };
    pump.fill(protocols::units::Volume(volume)).await.map_err(|e| step_error(&e))?;
    turn_valve(valve, waste, tag, &name, clock).await.map_err(acted)?;
    pump.empty_to_input().await.map_err(|e| acted(step_error(&e)))?;
    turn_valve(valve, port, tag, &name, clock).await.map_err(acted)
}

/// Empties the syringe of a pump fed by a selector valve through the valve's waste port, as it is initialized: the
/// valve is turned to waste and confirmed there (the driver reads its position back) and held there while the pump
/// initializes through its input; the valve's line then holds what the syringe held last. Without a waste port, a
/// valve that is offline or does not confirm the turn, nothing is pushed: the error says why, and the pump goes
/// offline with its syringe as it was. Returns what the record says on success.
async fn empty_to_waste(
    pump: &mut dyn devices::capability::Prime,
    feeder: &Feeder,
    name: &str,
    clock: &Clock,
) -> Result<String, String> {
    let valve = &feeder.valve;
    let why =
        "its syringe may hold liquid that is not the vessel's (a prime, or a draw whose push was never confirmed)";
    let Some(waste) = feeder.waste else {
        return Err(format!(
            "{why}, and `{valve}`, which feeds it, has no waste port to empty it through; it was not initialized \
             (initializing pushes the syringe out), so it holds what it held"
        ));
    };
    let Some(sender) = &feeder.sender else {
        return Err(format!(
            "{why}, and `{valve}`, which feeds it, is offline, so it cannot be turned to its waste port {waste}; it was \
             not initialized (initializing pushes the syringe out), so it holds what it held"
        ));
    };
    let not_turned = |e: String| {
        format!(
            "{why}, and `{valve}`, which feeds it, was not confirmed at its waste port {waste} ({e}); it was not \
             initialized (initializing pushes the syringe out), so it holds what it held"
        )
    };
    // Turning the valve moves no liquid while the pump stands still, so a turn that was not confirmed (a reply
    // lost) is asked again, a bounded number of times; the pump pushes only once the valve is confirmed at waste.
    let mut attempt = 1;
    let _release = loop {
        let (reply, turned) = oneshot::channel();
        let (release, held) = oneshot::channel::<()>();
        sender
            .send((Work::Hold { position: waste, reply, release: held }, clock.hold()))
            .map_err(|_| not_turned("its task has stopped".to_owned()))?;
        let answer = devices::clock::waiting(turned).await.map(|(answer, hold)| {
            devices::clock::adopt(hold);
            answer
        });
        let e = match answer {
            Ok(Ok(())) => break release,
            Ok(Err(e)) => e,
            Err(_) => "its task stopped before turning".to_owned(),
        };
        if attempt >= IDENTIFY_ATTEMPTS {
            return Err(not_turned(format!("{e}; tried {attempt} times")));
        }
        attempt += 1;
        clock.wall_wait(IDENTIFY_SETTLE).await;
    };
    pump.empty_to_waste().await.map_err(|e| {
        format!("{why}; `{valve}` was confirmed at its waste port {waste}, but emptying through it failed: {e}")
    })?;
    let tries = if attempt > 1 {
        format!(" (on attempt {attempt}: a turn that is not confirmed is asked again)")
    } else {
        String::new()
    };
    Ok(format!(
        "{name}: {why}, so before it was initialized `{valve}` was turned to its waste port {waste}, confirmed \
         there{tries}, and the syringe was emptied through it"
    ))
}

/// Asks the task of the valve feeding pump `pump` to turn to `port`, and waits for it. A valve that does not turn
/// fails the step before the pump has moved, so nothing was drawn.
async fn turn_valve(valve: &WorkSender, port: u32, tag: i64, pump: &str, clock: &Clock) -> Result<(), StepError> {
    let failed = |message: String| StepError { message, may_have_acted: false, instrument_fault: false };
    let (tx, rx) = oneshot::channel();
    valve
        .send((Work::Turn { position: port, tag, reply: tx }, clock.hold()))
        .map_err(|_| failed(format!("{pump}: the valve feeding it is not running")))?;
    let answer = devices::clock::waiting(rx).await.map(|(answer, hold)| {
        devices::clock::adopt(hold);
        answer
    });
    match answer {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(failed(format!("{pump}: the valve feeding it did not turn to port {port}: {e}"))),
        Err(_) => Err(failed(format!("{pump}: the valve feeding it stopped before turning to port {port}"))),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use devices::{DeviceError, Identity};
    use protocols::kind::InstrumentKind;

    use super::*;

    type Answer<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, DeviceError>> + Send + 'a>>;

    /// An instrument that notes the lab time of every safe state it is put in, and answers everything else at once.
    struct Noted {
        clock: Clock,
        safe: Arc<Mutex<Vec<f64>>>,
    }

    impl DeviceInstrument for Noted {
        fn name(&self) -> &str {
            "noted"
        }

        fn kind(&self) -> InstrumentKind {
            InstrumentKind::Hotplate
        }

        fn identify(&mut self) -> Answer<'_, Identity> {
            let id = Identity { model: "noted".into(), serial: None, firmware: None, raw: String::new() };
            Box::pin(async move { Ok(id) })
        }

        fn initialize(&mut self) -> Answer<'_, ()> {
            Box::pin(async { Ok(()) })
        }

        fn safe_state(&mut self) -> Answer<'_, ()> {
            self.safe.lock().unwrap().push(self.clock.now());
            Box::pin(async { Ok(()) })
        }

        fn set_tag(&mut self, _: Option<u64>) {}
    }

    /// The end of a run on a discrete-event clock: lab time stands still from the main loop's last frame until the
    /// instrument's task has woken to the end, so its final safe state starts at the run's end. The task is made to
    /// wake late (this runtime has one thread and runs it only when the test waits), the order a loaded machine may
    /// give; before the end carried a hold, lab time moved on to the next thing due meanwhile (here 5 s).
    #[tokio::test]
    async fn the_final_safe_state_starts_when_the_run_ends_however_late_the_task_wakes() {
        let clock = Clock::discrete();
        let last_frame = clock.hold();
        let safe = Arc::new(Mutex::new(Vec::new()));
        let entity = World::new().spawn_empty().id();
        let (tx, rx) = mpsc::unbounded_channel();
        let (inbound, _inbox) = crossbeam_channel::unbounded();
        let (abort, abort_rx) = watch::channel(false);
        let inst = Box::new(Noted { clock: clock.clone(), safe: Arc::clone(&safe) });
        let task = tokio::spawn(devices::clock::party(
            Vec::new(),
            instrument_task(inst, entity, rx, inbound, clock.clone(), Recorder::null(), 1, abort_rx),
        ));
        tokio::task::yield_now().await;
        let _due_later = clock.alarm(5.0, drop);
        let executor = TaskExecutor {
            senders: HashMap::from([(entity, tx)]),
            feeders: HashMap::new(),
            recorder: Recorder::null(),
            abort,
            clock: clock.clone(),
        };
        drop(executor);
        drop(last_frame);
        tokio::time::timeout(Duration::from_secs(10), task).await.expect("the task ends").expect("it did not panic");
        assert_eq!(*safe.lock().unwrap(), [0.0], "the final safe state started at the run's end");
    }

    #[tokio::test]
    async fn a_step_that_never_ends_is_cut_at_its_timeout_on_a_discrete_clock_without_a_floor() {
        // A plate stuck short of its set point never ends its step; the bound fires at the step's own timeout in
        // lab time, as on the real lab, not at 30 s of wall time times the lab's scale.
        let clock = Clock::discrete();
        let never = std::future::pending::<()>();
        tokio::select! {
            () = never => unreachable!("a pending future never ends"),
            () = step_timeout(&clock, 12.5) => {}
        }
        assert_eq!(clock.now(), 12.5);
    }
}
