//! Running a campaign: the one place that owns the runtime, the ports, the world and the record.
//!
//! [`run_campaign`] checks the inputs, opens the record, starts the simulators the lab asks for, opens and
//! identifies every instrument (recording who each one says it is), spawns one I/O task per instrument and one
//! learner thread, then runs the ECS world frame by frame as facts arrive, until the budget is spent or the
//! operator stops it. On the way out every instrument is put in its safe state and the record is flushed.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bevy_ecs::prelude::*;
use crossbeam_channel::{RecvTimeoutError, Sender};
use devices::capability::Instrument as DeviceInstrument;
use devices::{Clock, Lab, PortSpec};
use protocols::{Destination, Op, Protocol};
use tokio::sync::{mpsc, watch};

use crate::load::{Inputs, LoadError, load_campaign_inputs};
use crate::record::{CampaignRow, Record as RecordFile, RecordError, RecordEvent, Recorder};
use crate::schedule::bridge::{Bridge, Dispatch, Inbound, Interrupt, LearnerRequest, StepError};
use crate::schedule::components::{Availability, Instrument};
use crate::schedule::resources::{Best, CampaignState, DeckState, LabClock, Plan, Progress, RackState, Record};
use crate::schedule::{install, systems};

/// How to run a campaign.
#[derive(Debug, Clone)]
pub struct CampaignOptions {
    /// The campaign file.
    pub campaign: PathBuf,
    /// The record to append to.
    pub db: PathBuf,
    /// A lab file to use instead of the one the campaign names.
    pub lab: Option<PathBuf>,
    /// Lab seconds per wall second, overriding the lab file's simulation setting (simulated labs only).
    pub time_scale: Option<f64>,
    /// Whether to print progress lines.
    pub progress: bool,
}

/// What a finished campaign did.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The campaign's id in the record.
    pub campaign_id: i64,
    /// Its name.
    pub name: String,
    /// The record.
    pub db: PathBuf,
    /// Experiments started.
    pub started: usize,
    /// Experiments that succeeded.
    pub succeeded: usize,
    /// Experiments that failed.
    pub failed: usize,
    /// The most experiments that ran at once.
    pub peak_in_flight: usize,
    /// The best experiment.
    pub best: Option<Best>,
    /// The objective's name and unit.
    pub objective: (String, String),
    /// Each parameter's unit, by name.
    pub units: BTreeMap<String, String>,
    /// Lab seconds the campaign took.
    pub lab_seconds: f64,
    /// Wall seconds it took.
    pub wall_seconds: f64,
    /// How it ended: `finished`, `aborted`.
    pub status: &'static str,
    /// Why it stopped early, if it did.
    pub stop_reason: Option<String>,
    /// Instruments that were offline, with the reason.
    pub offline: Vec<(String, String)>,
}

/// Why a campaign could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The input files are wrong.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The record could not be opened.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The lab cannot run the protocol with the instruments that answered.
    #[error("{0}")]
    Lab(String),
    /// Something the operating system refused (threads, runtime).
    #[error("{0}")]
    System(String),
}

/// Runs a campaign to its end.
pub fn run_campaign(opts: &CampaignOptions) -> Result<Summary, RunError> {
    let inputs = load_campaign_inputs(&opts.campaign, opts.lab.as_deref())?;
    run_inputs(inputs, opts)
}

/// Runs an already-loaded campaign.
pub fn run_inputs(inputs: Inputs, opts: &CampaignOptions) -> Result<Summary, RunError> {
    let wall = Instant::now();
    let lab = Arc::clone(&inputs.lab);
    let protocol = Arc::clone(&inputs.protocol);
    let campaign = inputs.campaign.clone();
    // Accelerated time is for simulators only: a real instrument would hold its heat for a fraction of the time
    // the protocol asks. A real instrument that answers in an accelerated run is therefore refused (see
    // `connect_all`); one that is absent does no harm.
    let scale = opts.time_scale.unwrap_or(if lab.all_simulated() { lab.simulation.time_scale } else { 1.0 });
    if !(scale.is_finite() && scale > 0.0) {
        return Err(RunError::Lab(format!("time scale must be positive, not {scale}")));
    }
    let clock = Clock::scaled(scale);

    let mut record = RecordFile::open(&opts.db)?;
    let ids = record.begin_campaign(&CampaignRow {
        name: campaign.name.clone(),
        started_at: clock.epoch(),
        time_scale: scale,
        seed: campaign.seed,
        objective_output: campaign.objective.output.clone(),
        objective_direction: match campaign.objective.direction {
            experiments::Direction::Maximize => "maximize",
            experiments::Direction::Minimize => "minimize",
        },
        budget: campaign.budget,
        in_flight: campaign.in_flight,
        campaign: (inputs.campaign_path.display().to_string(), campaign.source.text.clone()),
        protocol: (inputs.protocol_path.display().to_string(), protocol.source().text.clone()),
        lab: (inputs.lab_path.display().to_string(), lab.source.text.clone()),
    })?;
    let (recorder, writer) = record.start_writer();
    let campaign_id = ids.campaign;
    let say = |level: &'static str, instrument: Option<&str>, message: String| {
        recorder.send(RecordEvent::Event {
            campaign: campaign_id,
            at: clock.now(),
            level,
            instrument: instrument.map(str::to_owned),
            message,
        });
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("lab-io")
        .build()
        .map_err(|e| RunError::System(format!("cannot start the I/O runtime: {e}")))?;

    // Simulators first, so their ports exist when the instruments are opened.
    let sims = if lab.instruments.iter().any(|i| i.port == PortSpec::Simulated) {
        match runtime.block_on(devices::sim::start(&lab, clock.clone())) {
            Ok(s) => Some(s),
            Err(e) => {
                say("error", None, format!("cannot start the simulators: {e}"));
                finish_record(&recorder, campaign_id, clock.now(), "failed", Some(e.to_string()));
                drop(recorder);
                let _ = writer.finish();
                return Err(RunError::Lab(format!("cannot start the simulators: {e}")));
            }
        }
    } else {
        None
    };
    let ports: BTreeMap<String, String> = lab
        .instruments
        .iter()
        .filter_map(|i| match &i.port {
            PortSpec::Serial(p) => Some((i.name.clone(), p.clone())),
            PortSpec::Simulated => {
                sims.as_ref().and_then(|s| s.ports.get(&i.name)).map(|p| (i.name.clone(), p.clone()))
            }
        })
        .collect();

    let connected = runtime.block_on(connect_all(&lab, &ports, &clock, &recorder, campaign_id));
    let mut offline = Vec::new();
    let mut ready = Vec::new();
    for (name, result) in connected {
        match result {
            Ok(inst) => ready.push((name, inst)),
            Err(e) => offline.push((name, e)),
        }
    }
    if opts.progress {
        for (name, _) in &ready {
            let spec = lab.instrument(name).expect("connected instruments come from the lab");
            eprintln!(
                "  ready    {name:<12} {} on {}",
                spec.driver.name(),
                ports.get(name).map_or("-", String::as_str)
            );
        }
        for (name, e) in &offline {
            eprintln!("  OFFLINE  {name:<12} {e}");
        }
    }
    if let Some(problem) = missing_capability(&protocol, &lab, &ready) {
        say("error", None, problem.clone());
        let mut instruments: Vec<Box<dyn DeviceInstrument>> = ready.into_iter().map(|(_, i)| i).collect();
        runtime.block_on(async {
            for i in &mut instruments {
                let _ = i.safe_state().await;
            }
        });
        // The instruments' exchange sinks hold the record open; they must go before the writer can finish.
        drop(instruments);
        finish_record(&recorder, campaign_id, clock.now(), "failed", Some(problem.clone()));
        drop(recorder);
        let _ = writer.finish();
        if let Some(s) = sims {
            runtime.block_on(s.stop());
        }
        return Err(RunError::Lab(problem));
    }

    // The bridge: one inbound channel for every fact from outside the world.
    let (inbound_tx, inbound_rx) = crossbeam_channel::unbounded::<Inbound>();
    let (abort_tx, abort_rx) = watch::channel(false);
    let mut world = World::new();
    let mut schedule = Schedule::default();
    install(&mut world, &mut schedule);
    let mut senders = HashMap::new();
    let mut tasks = Vec::new();
    for (name, inst) in ready {
        let spec = lab.instrument(&name).expect("connected instruments come from the lab");
        let entity = world
            .spawn((
                Instrument { name: name.clone(), kind: spec.kind(), position: spec.position.clone() },
                Availability::Idle,
            ))
            .id();
        let (tx, rx) = mpsc::unbounded_channel();
        senders.insert(entity, tx);
        tasks.push(runtime.spawn(instrument_task(
            inst,
            rx,
            inbound_tx.clone(),
            clock.clone(),
            recorder.clone(),
            campaign_id,
            abort_rx.clone(),
        )));
    }
    for (name, reason) in &offline {
        let spec = lab.instrument(name).expect("offline instruments come from the lab");
        world.spawn((
            Instrument { name: name.clone(), kind: spec.kind(), position: spec.position.clone() },
            Availability::Offline { reason: reason.clone() },
        ));
    }

    let (learner_tx, learner) = spawn_learner(&campaign, inbound_tx.clone())?;
    let transfer_positions = protocol
        .steps()
        .iter()
        .enumerate()
        .filter(|(_, s)| matches!(s.op, Op::Transfer { to: Destination::Kind(_) | Destination::Named(_) }))
        .map(|(i, _)| (i, lab.transfer_positions(&protocol, i)))
        .collect();
    world.insert_resource(Bridge { backlog: Vec::new(), inbox: inbound_rx, instruments: senders, learner: learner_tx });
    world.insert_resource(LabClock(clock.clone()));
    world.insert_resource(Record { recorder: recorder.clone(), campaign: campaign_id });
    world.insert_resource(Plan {
        protocol: Arc::clone(&protocol),
        lab: Arc::clone(&lab),
        transfer_positions,
        fixed: campaign.fixed.clone(),
        objective: campaign.objective.output.clone(),
        direction: campaign.objective.direction,
    });
    world.insert_resource(DeckState::default());
    world.insert_resource(RackState { fresh: (0..lab.deck.rack.slots()).collect::<VecDeque<_>>() });
    world.insert_resource(CampaignState {
        budget: campaign.budget,
        in_flight: campaign.in_flight,
        started: 0,
        running: 0,
        succeeded: 0,
        failed: 0,
        requested: 0,
        queue: VecDeque::new(),
        stopping: false,
        aborted: false,
        stop_reason: None,
        best: None,
        next_experiment: ids.first_experiment,
        next_step: ids.first_step,
        next_proposal: ids.first_proposal,
        peak_in_flight: 0,
    });

    // Ctrl-C once pauses (running experiments finish); twice aborts (every instrument to its safe state).
    let signals = {
        let inbound = inbound_tx.clone();
        let abort = abort_tx.clone();
        runtime.spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("\npausing: running experiments will finish, no new ones start (Ctrl-C again to abort)");
                let _ = inbound.send(Inbound::Interrupt(Interrupt::Pause));
            }
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("\naborting: cancelling running steps and putting every instrument in its safe state");
                let _ = abort.send(true);
                let _ = inbound.send(Inbound::Interrupt(Interrupt::Abort));
            }
        })
    };
    drop(inbound_tx);

    let mut reported = 0usize;
    loop {
        schedule.run(&mut world);
        if opts.progress {
            reported = print_progress(&world, reported);
        }
        let state = world.resource::<CampaignState>();
        if state.is_finished() {
            break;
        }
        if std::mem::take(&mut world.resource_mut::<Progress>().0) {
            continue;
        }
        let inbox = world.resource::<Bridge>().inbox.clone();
        match inbox.recv_timeout(Duration::from_millis(250)) {
            Ok(item) => world.resource_mut::<Bridge>().backlog.push(item),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }

    let state = world.remove_resource::<CampaignState>().expect("inserted above");
    let lab_seconds = clock.now();
    // Dropping the bridge closes every instrument's channel: each task puts its instrument in its safe state and ends.
    drop(world.remove_resource::<Bridge>());
    drop(world);
    if state.aborted {
        let _ = abort_tx.send(true);
    }
    signals.abort();
    runtime.block_on(async {
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
        }
    });
    let _ = learner.join();
    if let Some(s) = sims {
        runtime.block_on(s.stop());
    }
    let status = if state.aborted { "aborted" } else { "finished" };
    finish_record(&recorder, campaign_id, lab_seconds, status, state.stop_reason.clone());
    drop(recorder);
    writer.finish().map_err(RunError::System)?;
    runtime.shutdown_timeout(Duration::from_secs(5));

    let objective_unit =
        protocol.output(&campaign.objective.output).map(|o| o.unit.symbol.to_owned()).unwrap_or_default();
    Ok(Summary {
        campaign_id,
        name: campaign.name.clone(),
        db: opts.db.clone(),
        started: state.started,
        succeeded: state.succeeded,
        failed: state.failed,
        peak_in_flight: state.peak_in_flight,
        best: state.best.clone(),
        objective: (campaign.objective.output.clone(), objective_unit),
        units: protocol.parameters().iter().map(|p| (p.name.clone(), p.unit.symbol.to_owned())).collect(),
        lab_seconds,
        wall_seconds: wall.elapsed().as_secs_f64(),
        status,
        stop_reason: state.stop_reason,
        offline,
    })
}

fn finish_record(recorder: &Recorder, campaign: i64, at: f64, status: &'static str, note: Option<String>) {
    recorder.send(RecordEvent::CampaignFinished { campaign, at, status, note });
    recorder.flush();
}

/// Opens, identifies and initializes every instrument, all at once.
async fn connect_all(
    lab: &Lab,
    ports: &BTreeMap<String, String>,
    clock: &Clock,
    recorder: &Recorder,
    campaign: i64,
) -> Vec<(String, Result<Box<dyn DeviceInstrument>, String>)> {
    let mut handles = Vec::new();
    // Exchanges reach the record's writer in batches: waking the writer for every command would cost as much as
    // the command's round trip.
    let exchanges = devices::transport::batching(recorder.exchange_sink(campaign), Duration::from_millis(5));
    for spec in &lab.instruments {
        let spec = spec.clone();
        let deck = lab.deck.clone();
        let path = ports.get(&spec.name).cloned();
        let clock = clock.clone();
        let recorder = recorder.clone();
        let sink = Arc::clone(&exchanges);
        handles.push(tokio::spawn(async move {
            let name = spec.name.clone();
            let Some(path) = path else {
                return (name, Err("no port: its simulator did not start".to_owned()));
            };
            let mut identity = None;
            let result = async {
                // The driver's link reopens `path` itself, with the lab file's backoff, if the port disappears.
                let mut inst =
                    devices::drivers::connect(&spec, &deck, &path, clock.clone(), sink).map_err(|e| e.to_string())?;
                if spec.port != PortSpec::Simulated && clock.scale() != 1.0 {
                    return Err(format!(
                        "a real instrument cannot run in accelerated time ({}x); run this lab at time scale 1",
                        clock.scale()
                    ));
                }
                let id = inst.identify().await.map_err(|e| e.to_string())?;
                identity = Some(id);
                inst.initialize().await.map_err(|e| e.to_string())?;
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
                identity,
                error: result.as_ref().err().cloned(),
            });
            if let Err(e) = &result {
                recorder.send(RecordEvent::Event {
                    campaign,
                    at: clock.now(),
                    level: "error",
                    instrument: Some(name.clone()),
                    message: format!("{name} is offline: {e}"),
                });
            }
            (name, result)
        }));
    }
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
fn missing_capability(protocol: &Protocol, lab: &Lab, ready: &[(String, Box<dyn DeviceInstrument>)]) -> Option<String> {
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

/// One instrument's I/O task: runs dispatched steps one at a time and reports each end.
async fn instrument_task(
    mut inst: Box<dyn DeviceInstrument>,
    mut rx: mpsc::UnboundedReceiver<Dispatch>,
    inbound: Sender<Inbound>,
    clock: Clock,
    recorder: Recorder,
    campaign: i64,
    mut abort: watch::Receiver<bool>,
) {
    let name = inst.name().to_owned();
    loop {
        let next = tokio::select! {
            d = rx.recv() => d,
            _ = abort.wait_for(|a| *a) => None,
        };
        let Some(d) = next else { break };
        inst.set_tag(Some(d.step_id as u64));
        let started = clock.now();
        let result = tokio::select! {
            r = devices::execute(&mut *inst, &d.task) => r.map_err(|e| systems::step_error(&e)),
            _ = abort.wait_for(|a| *a) => Err(StepError {
                message: format!("{name}: cancelled by the operator's abort"),
                may_have_acted: true,
                instrument_fault: false,
            }),
        };
        if let Err(e) = &result {
            // A failed step may have left heat on or a motor running: make the instrument safe before anything else.
            let outcome = inst.safe_state().await;
            recorder.send(RecordEvent::Event {
                campaign,
                at: clock.now(),
                level: if outcome.is_ok() { "warning" } else { "error" },
                instrument: Some(name.clone()),
                message: match outcome {
                    Ok(()) => format!("{name} put in its safe state after: {}", e.message),
                    Err(s) => format!("{name} could NOT be put in its safe state ({s}) after: {}", e.message),
                },
            });
        }
        inst.set_tag(None);
        let ended = clock.now();
        if inbound.send(Inbound::StepEnded { step: d.step, result, started, ended }).is_err() {
            break;
        }
    }
    let outcome = inst.safe_state().await;
    recorder.send(RecordEvent::Event {
        campaign,
        at: clock.now(),
        level: if outcome.is_ok() { "info" } else { "error" },
        instrument: Some(name.clone()),
        message: match outcome {
            Ok(()) => format!("{name} left in its safe state"),
            Err(e) => format!("{name} could NOT be put in its safe state at the end: {e}"),
        },
    });
}

/// The learner thread: holds the proposer, answers asks in order with what it has been told.
fn spawn_learner(
    campaign: &experiments::Campaign,
    inbound: Sender<Inbound>,
) -> Result<(Sender<LearnerRequest>, std::thread::JoinHandle<()>), RunError> {
    let (tx, rx) = crossbeam_channel::unbounded::<LearnerRequest>();
    let mut proposer = campaign.build_proposer();
    let handle = std::thread::Builder::new()
        .name("lab-learner".into())
        .spawn(move || {
            while let Ok(req) = rx.recv() {
                match req {
                    LearnerRequest::Tell(o) => proposer.tell(o),
                    LearnerRequest::Ask { n, pending } => {
                        let proposals = proposer.ask(n, &pending);
                        if inbound.send(Inbound::Proposals { asked: n, proposals }).is_err() {
                            break;
                        }
                    }
                }
            }
        })
        .map_err(|e| RunError::System(format!("cannot start the learner thread: {e}")))?;
    Ok((tx, handle))
}

fn print_progress(world: &World, reported: usize) -> usize {
    let state = world.resource::<CampaignState>();
    let done = state.succeeded + state.failed;
    if done > reported {
        eprintln!(
            "  {done:>3}/{} done  {} running  best {}",
            state.budget,
            state.running,
            state.best.as_ref().map_or("-".to_owned(), |b| format!("{:.4} (#{})", b.objective, b.seq))
        );
    }
    done
}
