//! Running a campaign: the one place that owns the runtime, the ports, the world and the record.
//!
//! [`run_campaign`] checks the inputs, opens the record, starts the simulators the lab asks for, opens and
//! identifies every instrument (recording who each one says it is), spawns one I/O task per instrument and one
//! learner thread, then drives the ECS world ([`drive`]) frame by frame as facts arrive, until the budget is spent or
//! an operator stops it. On the way out every instrument is put in its safe state and the record is flushed.

mod instruments;
mod learner;
pub mod live;
pub mod operator;
pub mod reference;
pub mod resume;

use instruments::{TaskExecutor, connect_all, instrument_task, missing_capability};
use learner::spawn_learner;
pub use learner::{ProposalFeed, spawn_proposer};
use operator::spawn_request_poller;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bevy_ecs::prelude::*;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use devices::capability::Instrument as DeviceInstrument;
use devices::{Clock, Lab, PortSpec};
use protocols::{Destination, Op, Protocol};
use tokio::sync::{mpsc, watch};

use crate::load::{Inputs, LoadError, load_campaign_inputs};
use crate::record::{CampaignIds, CampaignRow, Record as RecordFile, RecordError, RecordEvent, Recorder};
use crate::schedule::bridge::{Bridge, Inbound, LearnerRequest, OperatorAction, OperatorRequest};
use crate::schedule::components::{Availability, Holds, Instrument, ReadsBack, Unrestored};
use crate::schedule::install;
use crate::schedule::resources::{
    Best, CampaignSource, CampaignState, LabClock, NextWake, Policy, Progress, RackState, Record, Source,
};
use crate::schedule::resources::{BlockedPolicy, UnknownPolicy};

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
    /// How the scheduler chooses.
    pub policy: Policy,
    /// What happens to a step whose outcome is unknown once its instrument is reconciled.
    pub unknown: UnknownPolicy,
    /// What happens to an experiment whose next step can only go to places a lost vessel blocks.
    pub blocked: BlockedPolicy,
    /// Whether a step in doubt is first settled from what its instrument reports when read back.
    pub read_back: bool,
    /// A key file to sign the record's checkpoints with.
    pub sign_with: Option<PathBuf>,
    /// Where proposals come from instead of the campaign's own learner (a fleet's hub), if not from it.
    pub feed: Option<Arc<dyn ProposalFeed>>,
    /// Whether a lab simulated in this process runs its lab time at its scale against the wall rather than as
    /// discrete events (see `lab_clock`): for watching a run, or stopping it part-way.
    pub paced: bool,
}

impl CampaignOptions {
    /// Options with the defaults `lab campaign` uses.
    pub fn new(campaign: PathBuf, db: PathBuf) -> Self {
        CampaignOptions {
            campaign,
            db,
            lab: None,
            time_scale: None,
            progress: false,
            policy: Policy::Planned { replan: true, budget: None },
            unknown: UnknownPolicy::Fail,
            blocked: BlockedPolicy::Wait,
            read_back: true,
            sign_with: None,
            feed: None,
            paced: false,
        }
    }
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
    /// For each categorical parameter, by name, each level's value and what a person calls it ([`level_names`]).
    pub levels: BTreeMap<String, Vec<(f64, String)>>,
    /// Lab seconds the campaign took.
    pub lab_seconds: f64,
    /// Wall seconds it took.
    pub wall_seconds: f64,
    /// How it ended: `finished`, `aborted`, or `stopped` (an instrument a step needs went offline for the rest of the
    /// run: the campaign is left for `lab resume`).
    pub status: &'static str,
    /// Why it stopped early, if it did.
    pub stop_reason: Option<String>,
    /// Instruments that were offline, with the reason.
    pub offline: Vec<(String, String)>,
    /// The head of the record's hash chain when the campaign ended.
    pub head: Option<String>,
}

/// For each categorical parameter of `campaign`, each level's value and its label, with the reagent it names where
/// it names one (`Pd2dba3/SPhos (C2)`): a summary speaks of catalysts, not of level 2.
pub fn level_names(campaign: &experiments::Campaign) -> BTreeMap<String, Vec<(f64, String)>> {
    let mut out = BTreeMap::new();
    for d in campaign.space.dims() {
        let Some(levels) = d.levels() else { continue };
        let names = levels
            .iter()
            .map(|l| {
                let point = BTreeMap::from([(d.name.clone(), l.value)]);
                match campaign.reagents_at(&point).remove(&d.name) {
                    Some(reagent) if reagent != l.label => (l.value, format!("{} ({reagent})", l.label)),
                    _ => (l.value, l.label.clone()),
                }
            })
            .collect();
        out.insert(d.name.clone(), names);
    }
    out
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
    let campaign = inputs.campaign.clone();
    // Accelerated time is for simulators only: a real instrument would hold its heat for a fraction of the time
    // the protocol asks. A real instrument that answers in an accelerated run is therefore refused (see
    // `connect_all`); one that is absent does no harm.
    let scale = opts.time_scale.unwrap_or(if lab.all_simulated() { lab.simulation.time_scale } else { 1.0 });
    if !(scale.is_finite() && scale > 0.0) {
        return Err(RunError::Lab(format!("time scale must be positive, not {scale}")));
    }
    let clock = lab_clock(&lab, scale, None, opts);

    let mut record = open_record(&opts.db, opts)?;
    // A campaign this record holds unfinished (the controller stopped) is resumed, not started again.
    let sha = crate::record::sha256_hex(campaign.source.text.as_bytes());
    if let Some(id) =
        crate::run::resume::unfinished(record.connection(), Some(&sha)).map_err(|e| RunError::System(e.to_string()))?
    {
        if opts.progress {
            eprintln!("lab: {} holds campaign {id} of this file unfinished; resuming it", opts.db.display());
        }
        return resume_in(record, id, None, opts);
    }
    let ids = record.begin_campaign(&campaign_row(&inputs, clock.epoch(), scale))?;
    execute(inputs, opts, record, ids, clock, None, None, wall)
}

/// The clock of a run of `lab` at `scale` lab seconds a wall second; `resumed` is the wall-clock time a resumed
/// campaign began and the last lab time its record holds.
///
/// A lab whose instruments are all simulated in this process runs on a discrete-event clock ([`Clock::discrete`]):
/// its lab time is the sum of its physical durations, so the same files and seeds give the same run however busy
/// the machine is, and the run takes only the wall time the controller and the simulators compute; its simulators'
/// own delays (a lost reply's timeout) last what they would on the real lab, not `scale` times more. Any other lab
/// (a real port, a simulator in another process) runs at `scale` against the wall, and so does a simulated one
/// whose options ask for it ([`CampaignOptions::paced`]: to watch or interrupt a run as it goes).
///
/// A resumed campaign's lab time goes on from where the wall says it would be at its scale, so the time it was down
/// counts; but never from before the last lab time its record holds. A run on the discrete-event clock may be far
/// ahead of the wall (a day of lab time in minutes), and going back would record new facts before old ones.
fn lab_clock(lab: &Lab, scale: f64, resumed: Option<(std::time::SystemTime, f64)>, opts: &CampaignOptions) -> Clock {
    let from = resumed.map(|(epoch, last)| {
        let since = std::time::SystemTime::now().duration_since(epoch).map_or(0.0, |d| d.as_secs_f64());
        (epoch, (since * scale).max(last))
    });
    match (lab.simulated_in_process() && !opts.paced, from) {
        (true, None) => Clock::discrete(),
        (true, Some((epoch, now))) => Clock::discrete_from(now, epoch),
        (false, None) => Clock::scaled(scale),
        (false, Some((epoch, now))) => Clock::scaled_from(now, epoch, scale),
    }
}

/// The record's row for a campaign of `inputs` that starts now, at lab time zero = `started_at`.
pub fn campaign_row(inputs: &Inputs, started_at: std::time::SystemTime, time_scale: f64) -> CampaignRow {
    let campaign = &inputs.campaign;
    CampaignRow {
        name: campaign.name.clone(),
        started_at,
        time_scale,
        seed: campaign.seed,
        objective_output: campaign.objective.output.clone(),
        objective_direction: match campaign.objective.direction {
            experiments::Direction::Maximize => "maximize",
            experiments::Direction::Minimize => "minimize",
        },
        budget: campaign.budget,
        in_flight: campaign.in_flight,
        campaign: (inputs.campaign_path.display().to_string(), campaign.source.text.clone()),
        protocol: (inputs.protocol_path.display().to_string(), inputs.protocol.source().text.clone()),
        lab: (inputs.lab_path.display().to_string(), inputs.lab.source.text.clone()),
    }
}

/// Opens the record at `db`, signing its checkpoints with the key the options name, if any. The key is read first,
/// so a wrong path stops the campaign before anything is written rather than leaving it unsigned.
fn open_record(db: &Path, opts: &CampaignOptions) -> Result<RecordFile, RunError> {
    let signer = opts.sign_with.as_deref().map(crate::record::signing::CheckpointSigner::read).transpose();
    let signer = signer.map_err(RunError::Lab)?;
    let mut record = RecordFile::open(db)?;
    if let Some(key) = signer {
        record.sign_checkpoints_with(key);
    }
    Ok(record)
}

/// The reason a campaign's checkpoint gives: `what` happened to campaign `campaign`. Resuming finds the campaign's
/// checkpoints by it (`what` = `%`).
fn checkpoint_reason(campaign: i64, what: &str) -> String {
    format!("campaign {campaign} {what}")
}

/// How to resume a campaign.
#[derive(Debug, Clone)]
pub struct ResumeOptions {
    /// The record.
    pub db: std::path::PathBuf,
    /// The campaign (the latest unfinished one if `None`).
    pub campaign: Option<i64>,
    /// A lab file to use instead of the recorded one (instruments moved to other ports).
    pub lab: Option<std::path::PathBuf>,
}

/// Resumes an unfinished campaign from its record: what the record says is done stays done, steps in doubt are
/// never repeated blindly, pending steps run, and the learner is refit from the recorded results.
pub fn resume_campaign(resume: &ResumeOptions, opts: &CampaignOptions) -> Result<Summary, RunError> {
    let record = open_record(&resume.db, opts)?;
    let id = match resume.campaign {
        Some(id) => id,
        None => crate::run::resume::unfinished(record.connection(), None)
            .map_err(|e| RunError::System(e.to_string()))?
            .ok_or_else(|| RunError::Lab(format!("{} holds no unfinished campaign", resume.db.display())))?,
    };
    let lab = match &resume.lab {
        Some(p) => Some(crate::load::read_source(p)?),
        None => None,
    };
    resume_in(record, id, lab, opts)
}

fn resume_in(
    record: RecordFile,
    id: i64,
    lab: Option<Arc<protocols::SourceFile>>,
    opts: &CampaignOptions,
) -> Result<Summary, RunError> {
    let wall = Instant::now();
    let restore = crate::run::resume::read(record.connection(), id, lab)
        .map_err(|e| RunError::Lab(format!("cannot resume campaign {id}: {e}")))?;
    let scale = opts.time_scale.unwrap_or(restore.time_scale);
    let clock = lab_clock(&restore.inputs.lab, scale, Some((restore.started_at, restore.last_at)), opts);
    let inputs = restore.inputs.clone();
    let ids = restore.ids;
    let signing = signing_change(&record, id);
    if let Some(warning) = &signing {
        eprintln!("lab: {warning}");
    }
    execute(inputs, opts, record, ids, clock, Some(restore), signing, wall)
}

/// What a resumed campaign should say if it will not sign its checkpoints with the key it signed them with before:
/// `lab verify --public-key` then proves the record only up to the last checkpoint signed with that key.
fn signing_change(record: &RecordFile, campaign: i64) -> Option<String> {
    let before: Option<String> = record
        .connection()
        .query_row(
            "SELECT public_key FROM checkpoints WHERE reason LIKE ?1 AND public_key IS NOT NULL ORDER BY id DESC LIMIT 1",
            [checkpoint_reason(campaign, "%")],
            |r| r.get(0),
        )
        .ok();
    let now = record.signing_key();
    match (before, now) {
        (Some(b), None) => Some(format!(
            "campaign {campaign} signed its checkpoints with key {b} and is resumed without a key: what it records from \
             now on is proven by the hash chain only (stop it and resume with --sign-with KEY to go on signing)"
        )),
        (Some(b), Some(n)) if b != n => Some(format!(
            "campaign {campaign} signed its checkpoints with key {b} and now signs them with key {n}: check the record \
             against the new key from now on"
        )),
        _ => None,
    }
}

/// Runs a campaign whose record row exists: new (`restore` is `None`) or resumed.
fn execute(
    inputs: Inputs,
    opts: &CampaignOptions,
    record: RecordFile,
    ids: CampaignIds,
    clock: Clock,
    restore: Option<crate::run::resume::Restore>,
    signing: Option<String>,
    wall: Instant,
) -> Result<Summary, RunError> {
    let lab = Arc::clone(&inputs.lab);
    let protocol = Arc::clone(&inputs.protocol);
    let campaign = inputs.campaign.clone();
    // Lab time stands still while the controller sets up (a discrete-event clock's; see `lab_clock`).
    let setup = clock.hold();
    let (recorder, writer) = record.start_writer();
    let campaign_id = ids.campaign;
    if let Some(r) = &restore {
        recorder.send(RecordEvent::say(
            campaign_id,
            clock.now(),
            "warning",
            None,
            format!(
                "campaign resumed from the record: {} experiments concluded, {} were running, {} proposals queued",
                r.concluded.len(),
                r.running.len(),
                r.queued.len()
            ),
        ));
    }
    if let Some(warning) = signing {
        recorder.send(RecordEvent::say(campaign_id, clock.now(), "warning", None, warning));
    }
    let say = |level: &str, instrument: Option<&str>, message: String| {
        recorder.send(RecordEvent::say(campaign_id, clock.now(), level, instrument, message));
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
            PortSpec::Serial(p) | PortSpec::Simulator(p) => Some((i.name.clone(), p.clone())),
            PortSpec::Simulated => {
                sims.as_ref().and_then(|s| s.ports.get(&i.name)).map(|p| (i.name.clone(), p.clone()))
            }
        })
        .collect();

    // Instruments a step was in doubt on are read back before anything changes them: identified, not initialized.
    let read_first = match &restore {
        Some(r) if opts.read_back => r.in_doubt_instruments(),
        _ => Vec::new(),
    };
    let no_references = BTreeMap::new();
    let references = restore.as_ref().map_or(&no_references, |r| &r.references);
    // The instruments' start-up tasks hold lab time from here; the controller waits for them.
    let connected =
        runtime.block_on(connect_all(&lab, &ports, &clock, &recorder, campaign_id, &read_first, references, setup));
    let setup = clock.hold();
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
        // Lab time moves for their safe states.
        drop(setup);
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
    world.insert_resource(opts.unknown);
    world.insert_resource(opts.blocked);
    world.insert_resource(crate::schedule::resources::Varied(campaign.space.clone()));
    let mut schedule = bevy_ecs::prelude::Schedule::default();
    install(&mut world, &mut schedule);
    let mut senders = HashMap::new();
    let mut entities = HashMap::new();
    let mut tasks = Vec::new();
    let index_of = |name: &str| lab.instruments.iter().position(|i| i.name == name).unwrap_or(usize::MAX);
    for (name, inst) in ready {
        let spec = lab.instrument(&name).expect("connected instruments come from the lab");
        let entity = world
            .spawn((
                Instrument {
                    name: name.clone(),
                    kind: Some(spec.kind()),
                    position: spec.position.clone(),
                    index: index_of(&name),
                },
                Availability::Idle,
                Holds::default(),
            ))
            .id();
        if opts.read_back && devices::drivers::reads_back(spec) {
            world.entity_mut(entity).insert(ReadsBack);
        }
        if read_first.contains(&name) {
            world.entity_mut(entity).insert(Unrestored);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        senders.insert(entity, tx);
        entities.insert(name.clone(), entity);
        tasks.push(runtime.spawn(devices::clock::party(
            Vec::new(),
            instrument_task(
                inst,
                entity,
                rx,
                inbound_tx.clone(),
                clock.clone(),
                recorder.clone(),
                campaign_id,
                abort_rx.clone(),
            ),
        )));
    }
    for (name, reason) in &offline {
        let spec = lab.instrument(name).expect("offline instruments come from the lab");
        world.spawn((
            Instrument {
                name: name.clone(),
                kind: Some(spec.kind()),
                position: spec.position.clone(),
                index: index_of(name),
            },
            Availability::Offline { reason: reason.clone() },
            Holds::default(),
        ));
    }

    let (learner_tx, learner) = match &opts.feed {
        Some(feed) => feed.spawn(inbound_tx.clone(), recorder.clone(), campaign_id, clock.clone())?,
        None => spawn_learner(&campaign, inbound_tx.clone())?,
    };
    if let Some(r) = &restore {
        // The learner is refit from the recorded results, in the order they came, before it proposes again.
        for (_, values, outputs, _, _) in &r.concluded {
            let _ = learner_tx
                .send(LearnerRequest::Tell(experiments::Outcome { values: values.clone(), outputs: outputs.clone() }));
        }
    }
    world.insert_resource(Bridge {
        backlog: Vec::new(),
        // On a discrete-event clock only the main loop reads the inbox, when nothing else in the lab has anything
        // left to do at the present instant (see `drive`).
        inbox: if clock.is_discrete() { crossbeam_channel::never() } else { inbound_rx.clone() },
        executor: Box::new(TaskExecutor {
            feeders: instruments::feeders(&lab, &entities, &senders),
            senders,
            recorder: recorder.clone(),
            abort: abort_tx.clone(),
            clock: clock.clone(),
        }),
        learner: Some(learner_tx),
    });
    insert_campaign(
        &mut world,
        &CampaignParts::from(&campaign),
        &protocol,
        &lab,
        &clock,
        Record { recorder: recorder.clone(), campaign: campaign_id },
        ids,
        opts.policy,
    );
    if restore.is_none() {
        for e in world.resource::<crate::schedule::stock::Stock>().declared(campaign_id, clock.now()) {
            recorder.send(e);
        }
    }
    if let Some(r) = &restore {
        world.insert_resource(crate::run::resume::state(r, &campaign));
        let in_doubt = crate::run::resume::apply(&mut world, r, &protocol, &lab, &recorder, clock.now());
        if opts.progress && !in_doubt.is_empty() {
            eprintln!(
                "lab: steps were in doubt on {}; they will be reconciled, never repeated blindly",
                in_doubt.join(", ")
            );
        }
    }

    // Ctrl-C once pauses (running steps finish); twice aborts (every instrument to its safe state).
    let signals = {
        let inbound = inbound_tx.clone();
        runtime.spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!(
                    "\npausing: running steps finish, nothing new starts (`lab resume` continues; Ctrl-C again aborts)"
                );
                let _ = inbound.send(Inbound::Operator(terminal(OperatorAction::Pause)));
            }
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("\naborting: cancelling running steps and putting every instrument in its safe state");
                let _ = inbound.send(Inbound::Operator(terminal(OperatorAction::Abort)));
            }
        })
    };
    // Requests from other processes (`lab pause`, `lab resume`, `lab abort`, `lab confirm`) arrive through the record.
    let requests = spawn_request_poller(opts.db.clone(), campaign_id, inbound_tx.clone());
    drop(inbound_tx);

    let mut live = crate::run::live::LiveView::for_stderr(opts.progress);
    let end = drive(&mut world, &mut schedule, &inbound_rx, &clock, &recorder, setup, |world| {
        print_progress(world, &mut live)
    });

    let state = world.remove_resource::<CampaignState>().expect("inserted above");
    let lab_seconds = clock.now();
    if state.aborted {
        let _ = abort_tx.send(true);
    }
    // Dropping the bridge tells every instrument's task the run is over: each puts its instrument in its safe state
    // and ends. Lab time stands still from the last frame until every task has taken that up (each message carries
    // its own hold), so the final safe states start at the run's end whatever the machine's load.
    drop(world.remove_resource::<Bridge>());
    drop(world);
    drop(end);
    signals.abort();
    requests.stop();
    runtime.block_on(async {
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
        }
    });
    let _ = learner.join();
    if let Some(s) = sims {
        runtime.block_on(s.stop());
    }
    let status = match (&state.halted, state.aborted) {
        (_, true) => "aborted",
        (Some(_), false) => "stopped",
        (None, false) => "finished",
    };
    let failure = recorder.failure();
    if status == "stopped" {
        // The campaign stays `running` in the record, as after a crash, so `lab resume` carries it on; the events
        // say why it stopped, and every instrument was put in its safe state above.
        recorder.send(RecordEvent::say(
            campaign_id,
            lab_seconds,
            "warning",
            None,
            format!(
                "the controller stopped without finishing the campaign: {}; `lab resume` carries it on",
                state.halted.as_deref().unwrap_or_default()
            ),
        ));
    } else {
        finish_record(&recorder, campaign_id, lab_seconds, status, state.stop_reason.clone().or(failure));
    }
    recorder.checkpoint(checkpoint_reason(campaign_id, status));
    recorder.flush();
    drop(recorder);
    writer.finish().map_err(RunError::System)?;
    runtime.shutdown_timeout(Duration::from_secs(5));
    let head = rusqlite::Connection::open(&opts.db)
        .ok()
        .and_then(|c| c.query_row("SELECT hash FROM journal ORDER BY id DESC LIMIT 1", [], |r| r.get(0)).ok());

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
        levels: level_names(&campaign),
        lab_seconds,
        wall_seconds: wall.elapsed().as_secs_f64(),
        status,
        stop_reason: state.halted.clone().or(state.stop_reason),
        offline,
        head,
    })
}

/// A request from the terminal.
fn terminal(action: OperatorAction) -> OperatorRequest {
    OperatorRequest { id: None, action, who: "operator at the terminal".to_owned(), reason: "Ctrl-C".to_owned() }
}

/// What a campaign's world needs to know about the campaign.
#[derive(Debug, Clone)]
pub struct CampaignParts {
    /// Parameter values fixed for every experiment.
    pub fixed: experiments::Point,
    /// The objective's output name.
    pub objective: String,
    /// Whether larger is better.
    pub direction: experiments::Direction,
    /// Every objective's output.
    pub objectives: Vec<String>,
    /// When to stop early.
    pub stop: experiments::StopRules,
    /// Experiments in total.
    pub budget: usize,
    /// Experiments at once.
    pub in_flight: usize,
    /// The reagent each level of a reagent parameter dispenses, by parameter, in level order.
    pub reagents: std::collections::BTreeMap<String, Vec<String>>,
}

impl From<&experiments::Campaign> for CampaignParts {
    fn from(c: &experiments::Campaign) -> Self {
        CampaignParts {
            fixed: c.fixed.clone(),
            objective: c.objective.output.clone(),
            direction: c.objective.direction,
            objectives: c.objectives.iter().map(|o| o.output.clone()).collect(),
            stop: c.stop.clone(),
            budget: c.budget,
            in_flight: c.in_flight,
            reagents: c.reagents.clone(),
        }
    }
}

/// Inserts the resources a campaign's world needs.
pub fn insert_campaign(
    world: &mut World,
    campaign: &CampaignParts,
    protocol: &Arc<Protocol>,
    lab: &Arc<Lab>,
    clock: &Clock,
    record: Record,
    ids: CampaignIds,
    policy: Policy,
) {
    let transfer_positions = protocol
        .steps()
        .iter()
        .enumerate()
        .filter(|(_, s)| matches!(s.op, Op::Transfer { to: Destination::Kind(_) | Destination::Named(_) }))
        .map(|(i, _)| (i, lab.transfer_positions(protocol, i)))
        .collect();
    world.insert_resource(LabClock(clock.clone()));
    world.insert_resource(record);
    world.insert_resource(Source::Campaign(CampaignSource {
        protocol: Arc::clone(protocol),
        lab: Arc::clone(lab),
        transfer_positions,
        fixed: campaign.fixed.clone(),
        objective: campaign.objective.clone(),
        direction: campaign.direction,
        objectives: campaign.objectives.clone(),
        stop: campaign.stop.clone(),
        reagents: campaign.reagents.clone(),
    }));
    world.insert_resource(crate::schedule::stock::Stock::for_protocol(lab, protocol));
    world.insert_resource(RackState { fresh: (0..lab.deck.rack.slots()).collect::<VecDeque<_>>() });
    world.insert_resource(CampaignState::new(campaign.budget, campaign.in_flight, ids));
    world.insert_resource(policy);
}

/// Lab seconds between the checkpoints a running campaign writes (it writes one more when it ends).
const CHECKPOINT_EVERY: f64 = 3600.0;

/// Runs the world until the campaign has nothing left to do: a frame whenever something arrives (or a minimum wait
/// ends), and again while frames make progress. `after_frame` sees the world after each frame. `hold` is the hold
/// the caller kept a discrete-event clock's lab time with, which the loop takes over; it returns the holds it keeps
/// lab time with when the campaign has finished (none if its inbox closed), for the caller to keep until the
/// instruments' tasks have been told the run is over.
///
/// On a discrete-event clock the loop keeps lab time still while it runs frames and lets go when it waits. It is
/// handed the inbox only when nothing else in the lab has anything left to do at the present instant (the idle
/// hook), and then takes everything in it at once, in an order that depends only on what arrived (`in_order`): so
/// the facts of one instant reach the world together, however the threads that sent them were scheduled.
pub fn drive(
    world: &mut World,
    schedule: &mut bevy_ecs::prelude::Schedule,
    inbox: &Receiver<Inbound>,
    clock: &Clock,
    recorder: &Recorder,
    hold: devices::clock::Hold,
    mut after_frame: impl FnMut(&World),
) -> Vec<devices::clock::Hold> {
    let mut aborted_for_record = false;
    let mut last_checkpoint = clock.now();
    let mut held = vec![hold];
    let turn = Arc::new(Turn::default());
    let _hook = clock.on_idle(
        {
            let inbox = inbox.clone();
            move || !inbox.is_empty()
        },
        {
            let turn = Arc::clone(&turn);
            move |hold| turn.give(hold, false)
        },
    );
    loop {
        schedule.run(world);
        after_frame(world);
        let now = clock.now();
        if now - last_checkpoint >= CHECKPOINT_EVERY {
            // A campaign that stops before its end still leaves its record checkpointed (and signed, with a key) up
            // to the last hour of lab time.
            let campaign = world.resource::<crate::schedule::resources::Record>().campaign;
            recorder.checkpoint(checkpoint_reason(campaign, &format!("running, lab time {now:.0} s")));
            last_checkpoint = now;
        }
        if world.resource::<CampaignState>().is_finished() {
            return held;
        }
        if let Some(failure) = recorder.failure()
            && !aborted_for_record
        {
            // Nothing may act that cannot be recorded: stop everything.
            aborted_for_record = true;
            world.resource::<Bridge>().executor.abort();
            world.resource_mut::<Bridge>().backlog.push(Inbound::Operator(OperatorRequest {
                id: None,
                action: OperatorAction::Abort,
                who: "lab".to_owned(),
                reason: format!("the record cannot be written: {failure}"),
            }));
            continue;
        }
        if world.resource::<CampaignState>().aborted {
            world.resource::<Bridge>().executor.abort();
        }
        if std::mem::take(&mut world.resource_mut::<Progress>().0) {
            continue;
        }
        if clock.is_discrete() {
            // An instrument the plan holds for a step due later looks again when it is due, as the plan does.
            let due = world.resource::<crate::schedule::resources::Schedule>().idle_until;
            let wake = match (world.resource::<NextWake>().0, due) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let alarm = wake.and_then(|t| {
                let turn = Arc::clone(&turn);
                clock.alarm(t, move |hold| turn.give(hold, true))
            });
            held.clear();
            let Some((holds, ticked, taken)) = turn.take(clock, inbox) else { return held };
            held = holds;
            drop(alarm);
            let backlog = &mut world.resource_mut::<Bridge>().backlog;
            backlog.extend(in_order(taken.into_iter().chain(inbox.try_iter()).collect()));
            if ticked {
                backlog.push(Inbound::Tick);
            }
            continue;
        }
        let wait = match world.resource::<NextWake>().0 {
            Some(t) => clock.wall(t - clock.now()).min(crate::schedule::resources::IDLE_TICK),
            None => crate::schedule::resources::IDLE_TICK,
        };
        match inbox.recv_timeout(wait) {
            Ok(item) => world.resource_mut::<Bridge>().backlog.push(item),
            Err(RecvTimeoutError::Timeout) => world.resource_mut::<Bridge>().backlog.push(Inbound::Tick),
            Err(RecvTimeoutError::Disconnected) => return held,
        }
    }
}

/// How long lab time may stand still, in wall time, while the controller waits for its turn before it says so.
const STALL: Duration = Duration::from_secs(60);

/// The main loop's turn on a discrete-event clock: the holds handed to it (by the idle hook when its inbox has
/// something, by its alarm when a wait ends), and whether an alarm woke it.
#[derive(Default)]
struct Turn {
    given: std::sync::Mutex<(Vec<devices::clock::Hold>, bool)>,
    woken: std::sync::Condvar,
}

impl Turn {
    fn give(&self, hold: devices::clock::Hold, alarm: bool) {
        let mut g = self.given.lock().unwrap_or_else(|p| p.into_inner());
        g.0.push(hold);
        g.1 |= alarm;
        self.woken.notify_one();
    }

    /// Waits for the loop's turn; `None` once nothing can send to the inbox any more and it is empty. Every idle
    /// tick of wall time it makes the clock look again, for an operator's request that came from outside the lab;
    /// what it had to take from the inbox to learn whether it is closed comes back with the turn.
    fn take(
        &self,
        clock: &Clock,
        inbox: &Receiver<Inbound>,
    ) -> Option<(Vec<devices::clock::Hold>, bool, Option<Inbound>)> {
        let mut g = self.given.lock().unwrap_or_else(|p| p.into_inner());
        // Lab time that stands still for a minute of wall time while the controller waits means something in the
        // lab holds the clock and will not let go: the run would hang without a word, so it is said, once.
        let (since, at) = (Instant::now(), clock.now());
        let mut said = false;
        loop {
            if !g.0.is_empty() {
                let (holds, ticked) = std::mem::take(&mut *g);
                return Some((holds, ticked, None));
            }
            if !said && since.elapsed() >= STALL && clock.now() == at {
                said = true;
                tracing::warn!(
                    "lab time has stood still for {} s of wall time while the controller waited for its turn ({clock:?}); \
                     something in the simulated lab holds the clock and the run cannot go on: stop it (Ctrl-C) and \
                     report this line",
                    STALL.as_secs()
                );
            }
            let (next, timeout) =
                self.woken.wait_timeout(g, crate::schedule::resources::IDLE_TICK).unwrap_or_else(|p| p.into_inner());
            g = next;
            if timeout.timed_out() && g.0.is_empty() {
                if inbox.is_empty() {
                    match inbox.try_recv() {
                        Err(crossbeam_channel::TryRecvError::Disconnected) => return None,
                        Err(crossbeam_channel::TryRecvError::Empty) => {}
                        Ok(item) => return Some((vec![clock.hold()], false, Some(item))),
                    }
                }
                drop(g);
                tracing::debug!("the controller waits for its turn: {clock:?}");
                clock.poke();
                g = self.given.lock().unwrap_or_else(|p| p.into_inner());
            }
        }
    }
}

/// The facts of one instant in an order that depends only on what they are: proposals first (in the order they
/// were asked), then instruments' results by entity, then operators' requests as they came.
fn in_order(mut items: Vec<Inbound>) -> Vec<Inbound> {
    let key = |i: &Inbound| match i {
        Inbound::Proposals { .. } => (0, 0),
        Inbound::StepEnded { step, .. } => (1, step.to_bits()),
        Inbound::Observed { instrument, .. } => (2, instrument.to_bits()),
        Inbound::Reconciled { instrument, .. } => (3, instrument.to_bits()),
        Inbound::Operator(_) => (4, 0),
        Inbound::Tick => (5, 0),
    };
    items.sort_by_key(key);
    items
}

fn finish_record(recorder: &Recorder, campaign: i64, at: f64, status: &str, note: Option<String>) {
    recorder.send(RecordEvent::CampaignFinished { campaign, at, status: status.to_owned(), note });
    recorder.flush();
}

/// Shows the campaign's progress in the live view (bars on a terminal, plain lines otherwise, or nothing).
fn print_progress(world: &World, live: &mut crate::run::live::LiveView) {
    live.update(world);
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_summary_names_a_reagent_level_by_its_label_and_reagent() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned();
        let inputs =
            super::load_campaign_inputs(&root.join("experiments/campaigns/catalysts.campaign.ron"), None).unwrap();
        let names = super::level_names(&inputs.campaign);
        let catalyst = &names["catalyst"];
        assert_eq!(catalyst.len(), 6);
        assert!(catalyst.contains(&(2.0, "Pd2dba3/SPhos (C2)".to_owned())), "{catalyst:?}");
        assert!(!names.contains_key("temperature"), "only categorical parameters have level names");
    }
}
