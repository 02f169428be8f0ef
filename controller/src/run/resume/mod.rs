//! Resuming a campaign from its record after the controller stopped (a crash, a power cut, a kill).
//!
//! Everything the world held is in `lab.db`: the campaign's own files (as they were when it started), every
//! experiment with its parameters, every step's last state, every reading, and every proposal. [`read`] gathers it;
//! [`apply`] rebuilds the world: steps that succeeded stay done; a step whose intent was recorded but not its outcome
//! is in doubt and, unless it is safe to repeat, goes to the unknown state (never repeated blindly: its instrument is
//! reconciled and the step settled by policy or by an operator); pending steps run; proposals not yet started are
//! queued again; and the learner is told every recorded result, in order, before it proposes again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

use bevy_ecs::prelude::*;
use bevy_ecs::world::CommandQueue;
use devices::readback::RecordedExchange;
use devices::{Lab, Place, Task};
use experiments::{Campaign, Point, Proposal};
use protocols::{Action, Protocol, SourceFile};
use rusqlite::{Connection, OptionalExtension};

use self::stock::{Carried, reserve_again};
use crate::load::Inputs;
use crate::record::{CampaignIds, RecordEvent, Recorder};
use crate::schedule::components::CleaningUp;
use crate::schedule::components::{
    Attempts, Availability, Dependents, Experiment, ExperimentState, InDoubt, Instrument, Readings, Step, StepState,
    Vessel, Work,
};
use crate::schedule::messages::{ExperimentConcluded, Reconciled};
use crate::schedule::resources::{Best, CampaignState, DeckState, RackState, ReadyIndex, Source};
use crate::schedule::stock::Stock;
use crate::schedule::systems::conclude::{return_vessel_name, return_vessel_row, return_vessel_step};
use crate::schedule::systems::dispatch::task_for;

/// An unfinished campaign, as the record holds it.
#[derive(Debug, Clone)]
pub struct Restore {
    /// The campaign's id.
    pub campaign: i64,
    /// The wall-clock time lab time began.
    pub started_at: SystemTime,
    /// Lab seconds per wall second.
    pub time_scale: f64,
    /// The last lab time the campaign's journal holds: a resumed run's lab time goes on from no earlier.
    pub last_at: f64,
    /// The campaign, protocol and lab, from the texts recorded when it started.
    pub inputs: Inputs,
    /// Experiments still running when the controller stopped.
    pub running: Vec<RunningExperiment>,
    /// Concluded experiments, in the order they finished: id, parameters, outputs (None if failed), objective.
    pub concluded: Vec<(i64, Point, Option<BTreeMap<String, f64>>, Option<f64>, usize)>,
    /// Proposals recorded but never started, in order.
    pub queued: Vec<(i64, Proposal)>,
    /// Experiments started so far.
    pub started: usize,
    /// Rack slots already used.
    pub used_slots: HashSet<usize>,
    /// Vessels of concluded experiments that were not back in the rack when the controller stopped.
    pub left_on_deck: Vec<LeftVessel>,
    /// Steps in doubt (their intent recorded, not their outcome, and not safe to repeat), by step id: what the
    /// record holds of them, for settling them from a read-back.
    pub doubts: HashMap<i64, Recorded>,
    /// The next free ids.
    pub ids: CampaignIds,
    /// What each tracked bottle held by the record (microlitres left, and whether a draw of unknown outcome was
    /// charged in full), by bottle key.
    pub stock: BTreeMap<String, (f64, bool)>,
    /// The references the spectrometers are given instead of taking new ones, as a vessel may stand in a holder.
    pub references: BTreeMap<String, crate::run::reference::RecordedReference>,
    /// The bottle each dispense drew from, by step id (its `drawn` row, written before the pump moved).
    pub drawn_by_step: HashMap<i64, String>,
}

/// An experiment that was running.
#[derive(Debug, Clone)]
pub struct RunningExperiment {
    /// Record id.
    pub id: i64,
    /// Number in the campaign.
    pub seq: usize,
    /// The proposal it came from.
    pub proposal: Option<i64>,
    /// Its parameters (protocol parameters, in their units).
    pub values: Point,
    /// Its rack slot.
    pub slot: usize,
    /// Lab time it started.
    pub started_at: f64,
    /// Its steps by protocol step id: record id, status, instrument, task as sent, attempt.
    pub steps: HashMap<String, (i64, String, Option<String>, Option<Task>, u32)>,
    /// Its readings.
    pub readings: BTreeMap<String, f64>,
}

/// The vessel of a concluded experiment (failed, say, and waiting to be carried back) that was still on the deck,
/// or somewhere unknown, when the controller stopped.
#[derive(Debug, Clone)]
pub struct LeftVessel {
    /// The experiment's id.
    pub id: i64,
    /// The experiment's sequence number.
    pub seq: usize,
    /// Its rack slot.
    pub slot: usize,
    /// How many `return_vessel` steps it has had already (cut short by a stop of the controller, or never started).
    pub returns: usize,
    /// Its `return_vessel` steps that never started (step id, step name): the resumed campaign settles them as skipped
    /// and decides anew how the vessel goes back.
    pub unstarted_returns: Vec<(i64, String)>,
    /// The deck positions it may stand at: one if it is known, the ends of a transfer in doubt or failed otherwise
    /// (its rack slot, which is never used again, is not listed).
    pub places: Vec<String>,
    /// Whether its place is known: false when a transfer of it failed or was in doubt, even if one of its ends is
    /// the rack.
    pub known: bool,
    /// The experiment's transfers that were running when the controller stopped (step id, step name, instrument,
    /// the task as sent).
    pub in_doubt: Vec<(i64, String, Option<String>, Task)>,
}

/// What the record holds of a step in doubt.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Lab time its intent was last recorded.
    pub started: f64,
    /// Its exchanges, in order.
    pub exchanges: Vec<RecordedExchange>,
    /// Its instrument's exchanges just before the intent, in order.
    pub before: Vec<RecordedExchange>,
}

/// How many of an instrument's exchanges before a step in doubt are read: enough to find the last command that set
/// its state (a pump's last stroke), as a step runs at most a few before it.
const EXCHANGES_BEFORE: i64 = 32;

/// Why a campaign cannot be resumed.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    /// SQLite refused.
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The recorded files no longer load with this version of lab.
    #[error("the files recorded with campaign {campaign} no longer load:\n{problems}")]
    Files {
        /// The campaign.
        campaign: i64,
        /// What is wrong.
        problems: protocols::Diagnostics,
    },
    /// Nothing to resume.
    #[error("{0}")]
    Nothing(String),
}

/// The latest campaign that did not finish (optionally only one whose campaign file has the hash `sha256`).
pub fn unfinished(conn: &Connection, sha256: Option<&str>) -> rusqlite::Result<Option<i64>> {
    match sha256 {
        Some(h) => conn
            .query_row("SELECT max(id) FROM campaigns WHERE status = 'running' AND campaign_sha256 = ?1", [h], |r| {
                r.get(0)
            })
            .optional()
            .map(Option::flatten),
        None => conn
            .query_row("SELECT max(id) FROM campaigns WHERE status = 'running'", [], |r| r.get(0))
            .optional()
            .map(Option::flatten),
    }
}

/// Reads everything needed to resume `campaign`; `lab_override` replaces the recorded lab (instruments moved to
/// other ports, say).
pub fn read(conn: &Connection, campaign: i64, lab_override: Option<Arc<SourceFile>>) -> Result<Restore, ResumeError> {
    let row = conn
        .query_row(
            "SELECT started_at, time_scale, campaign_path, campaign_text, protocol_path, protocol_text, lab_path, lab_text, status
             FROM campaigns WHERE id = ?1",
            [campaign],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, f64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, String>(7)?,
                    r.get::<_, String>(8)?,
                ))
            },
        )
        .optional()?
        .ok_or_else(|| ResumeError::Nothing(format!("the record has no campaign {campaign}")))?;
    let (
        started_at,
        time_scale,
        campaign_path,
        campaign_text,
        protocol_path,
        protocol_text,
        lab_path,
        lab_text,
        status,
    ) = row;
    if status != "running" {
        return Err(ResumeError::Nothing(format!("campaign {campaign} is {status}; there is nothing to resume")));
    }
    let files = |problems| ResumeError::Files { campaign, problems };
    let campaign_source = SourceFile::new(campaign_path.clone(), campaign_text);
    let (camp, _) = experiments::load_campaign(Arc::clone(&campaign_source)).map_err(files)?;
    let (protocol, _) =
        protocols::load_protocol(SourceFile::new(protocol_path.clone(), protocol_text)).map_err(files)?;
    let lab_source = lab_override.unwrap_or_else(|| SourceFile::new(lab_path.clone(), lab_text));
    let lab = devices::load_lab(Arc::clone(&lab_source)).map_err(files)?;
    let started_at = humantime::parse_rfc3339(&started_at).unwrap_or_else(|_| SystemTime::now());
    let last_at: f64 =
        conn.query_row("SELECT COALESCE(MAX(at), 0.0) FROM journal WHERE campaign_id = ?1", [campaign], |r| r.get(0))?;

    // Experiments.
    let mut stmt = conn.prepare(
        "SELECT id, seq, proposal_id, vessel, status, started_at, objective FROM experiments WHERE campaign_id = ?1 ORDER BY seq",
    )?;
    let rows: Vec<(i64, i64, Option<i64>, i64, String, f64, Option<f64>)> = stmt
        .query_map([campaign], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)))?
        .collect::<Result<_, _>>()?;
    let values_of = |id: i64| -> rusqlite::Result<Point> {
        // A value that came out other than asked (a partial stroke) is what the experiment ran with, and what the
        // learner was told.
        let mut s =
            conn.prepare_cached("SELECT name, coalesce(actual, value) FROM parameters WHERE experiment_id = ?1")?;
        s.query_map([id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)?)))?.collect()
    };
    let readings_of = |id: i64| -> rusqlite::Result<BTreeMap<String, f64>> {
        let mut s = conn.prepare_cached("SELECT name, value FROM measurements WHERE experiment_id = ?1 ORDER BY id")?;
        s.query_map([id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)?)))?.collect()
    };
    let mut running = Vec::new();
    let mut used_slots = HashSet::new();
    for (id, seq, proposal, vessel, status, started, _) in &rows {
        if *vessel >= 0 {
            used_slots.insert(*vessel as usize);
        }
        if status != "running" {
            continue;
        }
        let mut s = conn
            .prepare_cached("SELECT step, id, status, instrument, task, attempt FROM steps WHERE experiment_id = ?1")?;
        let steps = s
            .query_map([id], |r| {
                let task: Option<String> = r.get(4)?;
                Ok((
                    r.get::<_, String>(0)?,
                    (
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        task.and_then(|t| serde_json::from_str::<Task>(&t).ok()),
                        r.get::<_, i64>(5)? as u32,
                    ),
                ))
            })?
            .collect::<Result<HashMap<_, _>, _>>()?;
        running.push(RunningExperiment {
            id: *id,
            seq: *seq as usize,
            proposal: *proposal,
            values: values_of(*id)?,
            slot: (*vessel).max(0) as usize,
            started_at: *started,
            steps,
            readings: readings_of(*id)?,
        });
    }
    let mut stmt = conn.prepare(
        "SELECT id, seq, status, objective FROM experiments WHERE campaign_id = ?1 AND status != 'running'
         ORDER BY finished_at, id",
    )?;
    let finished: Vec<(i64, i64, String, Option<f64>)> =
        stmt.query_map([campaign], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?.collect::<Result<_, _>>()?;
    let mut concluded = Vec::new();
    let mut left_on_deck = Vec::new();
    let slot_of: HashMap<i64, i64> = rows.iter().map(|r| (r.0, r.3)).collect();
    for (id, seq, status, objective) in finished {
        let outputs = (status == "succeeded").then(|| readings_of(id)).transpose()?;
        concluded.push((id, values_of(id)?, outputs, objective, seq as usize));
        if let Some(left) = left_vessel(conn, id, seq as usize, slot_of.get(&id).copied().unwrap_or(-1))? {
            left_on_deck.push(left);
        }
    }
    // What the record holds of every step in doubt, to settle it from what its instrument reports.
    let mut doubtful: Vec<i64> = running
        .iter()
        .flat_map(|x| x.steps.values())
        .filter(|(_, status, _, task, _)| {
            (status == "running" || status == "unknown") && task.as_ref().is_some_and(|t| !repeat_safe(t))
        })
        .map(|s| s.0)
        .collect();
    doubtful.extend(left_on_deck.iter().flat_map(|l| l.in_doubt.iter().map(|d| d.0)));
    let mut doubts = HashMap::new();
    for step in doubtful {
        doubts.insert(step, recorded_exchanges(conn, campaign, step)?);
    }
    // Proposals never started.
    let mut stmt = conn.prepare(
        "SELECT p.id, p.strategy, p.params, p.predicted_mean, p.predicted_sd, p.acquisition, p.model, p.reason
         FROM proposals p WHERE p.campaign_id = ?1 AND NOT EXISTS (SELECT 1 FROM experiments e WHERE e.proposal_id = p.id)
         ORDER BY p.id",
    )?;
    let queued = stmt
        .query_map([campaign], |r| {
            let params: String = r.get(2)?;
            let model: Option<String> = r.get(6)?;
            Ok((
                r.get::<_, i64>(0)?,
                Proposal {
                    values: serde_json::from_str(&params).unwrap_or_default(),
                    strategy: r.get(1)?,
                    predicted_mean: r.get(3)?,
                    predicted_sd: r.get(4)?,
                    acquisition: r.get(5)?,
                    model: model.and_then(|m| serde_json::from_str(&m).ok()),
                    reason: r.get(7)?,
                    labels: Default::default(),
                },
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let next = |table: &str| -> rusqlite::Result<i64> {
        conn.query_row(&format!("SELECT coalesce(max(id), 0) + 1 FROM {table}"), [], |r| r.get(0))
    };
    let ids = CampaignIds {
        campaign,
        first_experiment: next("experiments")?,
        first_step: next("steps")?,
        first_proposal: next("proposals")?,
    };
    let inputs = Inputs {
        campaign: camp,
        campaign_path: campaign_path.into(),
        protocol: Arc::new(protocol),
        protocol_path: protocol_path.into(),
        lab: Arc::new(lab),
        lab_path: lab_source.name.clone().into(),
        warnings: Default::default(),
    };
    // Every draw was charged before its dispense was sent, so a dispense cut off by the stop is already counted.
    let mut stmt =
        conn.prepare("SELECT bottle, left_ul, unknown FROM stock_events WHERE campaign_id = ?1 ORDER BY id")?;
    let mut stock: BTreeMap<String, (f64, bool)> = BTreeMap::new();
    for row in
        stmt.query_map([campaign], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<f64>>(1)?, r.get::<_, i64>(2)?)))?
    {
        let (bottle, left, unknown) = row?;
        let entry = stock.entry(bottle).or_insert((0.0, false));
        if let Some(l) = left {
            entry.0 = l;
        }
        entry.1 |= unknown != 0;
    }
    let mut stmt = conn.prepare(
        "SELECT step_id, bottle FROM stock_events WHERE campaign_id = ?1 AND kind = 'drawn' AND step_id IS NOT NULL \
         ORDER BY id",
    )?;
    let drawn_by_step =
        stmt.query_map([campaign], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?.collect::<Result<_, _>>()?;
    let occupied = !running.is_empty() || !left_on_deck.is_empty();
    let references = crate::run::reference::recorded(conn, campaign, &inputs.lab, occupied)?;
    Ok(Restore {
        stock,
        drawn_by_step,
        references,
        campaign,
        started_at,
        time_scale,
        last_at,
        inputs,
        running,
        concluded,
        queued,
        started: rows.len(),
        used_slots,
        left_on_deck,
        doubts,
        ids,
    })
}

/// Whether running a task again is physically harmless (a reading).
fn repeat_safe(task: &Task) -> bool {
    matches!(task, Task::Measure { .. } | Task::Weigh | Task::ReadTemperature)
}

/// What the record holds of step `step`: when its intent was last recorded, its exchanges, and its instrument's
/// exchanges just before it.
fn recorded_exchanges(conn: &Connection, campaign: i64, step: i64) -> rusqlite::Result<Recorded> {
    let (started, instrument): (Option<f64>, Option<String>) = conn
        .prepare_cached("SELECT started_at, instrument FROM steps WHERE id = ?1")?
        .query_row([step], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .unwrap_or_default();
    let row = |r: &rusqlite::Row<'_>| {
        Ok(RecordedExchange {
            id: r.get(0)?,
            sent_at: r.get(1)?,
            sent: r.get(2)?,
            replied_at: r.get(3)?,
            received: r.get(4)?,
        })
    };
    let mut stmt = conn.prepare_cached(
        "SELECT id, sent_at, sent, replied_at, received FROM commands WHERE step_id = ?1 ORDER BY id",
    )?;
    let exchanges = stmt.query_map([step], row)?.collect::<Result<Vec<_>, _>>()?;
    let first = exchanges.first().map_or(i64::MAX, |e| e.id);
    let mut stmt = conn.prepare_cached(
        "SELECT id, sent_at, sent, replied_at, received FROM commands
         WHERE campaign_id = ?1 AND instrument = ?2 AND id < ?3 AND (step_id IS NULL OR step_id != ?4)
         ORDER BY id DESC LIMIT ?5",
    )?;
    let mut before = stmt
        .query_map(rusqlite::params![campaign, instrument, first, step, EXCHANGES_BEFORE], row)?
        .collect::<Result<Vec<_>, _>>()?;
    before.reverse();
    Ok(Recorded { started: started.unwrap_or(0.0), exchanges, before })
}

impl Restore {
    /// The instruments a step was in doubt on when the controller stopped: they are read back before anything
    /// changes them, so they are identified but not initialized at start.
    pub fn in_doubt_instruments(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .running
            .iter()
            .flat_map(|x| x.steps.values())
            .filter(|(id, _, _, _, _)| self.doubts.contains_key(id))
            .filter_map(|s| s.2.clone())
            .chain(self.left_on_deck.iter().flat_map(|l| l.in_doubt.iter().filter_map(|d| d.2.clone())))
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

/// Spawns a concluded experiment whose vessel stands at `place` with one step, `return_vessel`, which carries it back
/// to its rack slot (the cleanup [`crate::schedule::systems::conclude::conclude_experiments`] gives a failed experiment).
fn return_vessel(world: &mut World, left: &LeftVessel, place: &str, recorder: &Recorder, now: f64) -> Entity {
    let id = world.resource::<CampaignState>().next_step;
    world.resource_mut::<CampaignState>().next_step += 1;
    let name = return_vessel_name(left.returns);
    let ready = StepState::Ready { since: now, not_before: now, deadline: None };
    let vessel = Vessel { at: Place::Position(place.to_owned()), known: true };
    let (exp, step) = cleanup(world, left, id, &name, (ready, Attempts(0)), vessel, now);
    world.resource_mut::<ReadyIndex>().fresh.push(step);
    recorder.send(RecordEvent::StepAdded {
        experiment: left.id,
        at: now,
        step: return_vessel_row(id, &name),
        why: format!(
            "the campaign resumed with experiment #{}'s vessel still at {place}; it goes back to its rack slot",
            left.seq
        ),
    });
    exp
}

/// Spawns a concluded experiment whose vessel was being carried back when the controller stopped, with that carry in
/// doubt: it is settled from what the gantry reports, and carried on, run again or left to the policy from there.
fn unfinished_return(world: &mut World, left: &LeftVessel, id: i64, name: &str, task: &Task, rec: &Recorded) -> Entity {
    let from = match task {
        Task::Transfer { from, .. } => from.clone(),
        _ => Place::Rack(left.slot),
    };
    let doubt = InDoubt {
        task: task.clone(),
        asked: task.clone(),
        started: rec.started,
        exchanges: Some(rec.exchanges.clone()),
        before: Some(rec.before.clone()),
        carried_on: 0,
    };
    let state = (StepState::Unknown { instrument: None }, Attempts(1), doubt);
    cleanup(world, left, id, name, state, Vessel { at: from, known: false }, rec.started).0
}

/// Spawns a concluded experiment cleaning up after itself: its one step, `return_vessel` named `name` with record id
/// `id` and the components `state`, carries `vessel` back to its rack slot. Returns the experiment and the step.
fn cleanup(
    world: &mut World,
    left: &LeftVessel,
    id: i64,
    name: &str,
    state: impl Bundle,
    vessel: Vessel,
    started_at: f64,
) -> (Entity, Entity) {
    world.resource_mut::<CampaignState>().cleanups += 1;
    let exp = world.spawn_empty().id();
    let step = world.spawn((return_vessel_step(exp, id, name), Dependents::default(), state)).id();
    world.entity_mut(exp).insert((
        Experiment {
            id: left.id,
            seq: left.seq,
            values: BTreeMap::new(),
            proposal: None,
            slot: Some(left.slot),
            steps: vec![step],
            unfinished: 1,
            started_at,
        },
        ExperimentState::Failed("concluded before the controller stopped".to_owned()),
        Readings::default(),
        vessel,
        CleaningUp,
    ));
    (exp, step)
}

/// Where a concluded experiment's vessel was left, from its recorded transfers, if not in the rack: a transfer that
/// succeeded moved it; one that was running or in doubt may have left it at either end (or in the gripper); one that
/// failed may have left it anywhere along the way, so both ends count too.
fn left_vessel(conn: &Connection, experiment: i64, seq: usize, slot: i64) -> rusqlite::Result<Option<LeftVessel>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, step, status, task, instrument FROM steps WHERE experiment_id = ?1
         ORDER BY coalesce(started_at, 1e300), id",
    )?;
    let rows: Vec<(i64, String, String, Option<String>, Option<String>)> = stmt
        .query_map([experiment], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?
        .collect::<Result<_, _>>()?;
    let mut at: Vec<Place> = vec![Place::Rack(slot.max(0) as usize)];
    // Before the rack slot is known (slot -1) the vessel never left the rack.
    let mut in_doubt = Vec::new();
    // Every return step counts, started or not (a step has no task until it runs): each new one needs a new name, as a
    // step's name is unique within its experiment.
    let returning = rows.iter().filter(|r| r.1.starts_with("return_vessel"));
    let returns = returning.clone().count();
    let unstarted_returns: Vec<(i64, String)> =
        returning.filter(|r| r.2 == "waiting" || r.2 == "ready").map(|r| (r.0, r.1.clone())).collect();
    let mut known = true;
    for (id, name, status, task, instrument) in rows {
        // A transfer carried on after a kill was sent as a delivery of the vessel already in the gripper: it was at
        // neither end but in the gripper, and a delivery goes to one place.
        let (task, ends) = match task.map(|t| serde_json::from_str::<Task>(&t)) {
            Some(Ok(Task::Transfer { from, to })) => {
                (Task::Transfer { from: from.clone(), to: to.clone() }, vec![from, to])
            }
            Some(Ok(Task::Deliver { to })) => (Task::Deliver { to: to.clone() }, vec![to]),
            _ => continue,
        };
        match status.as_str() {
            "succeeded" => {
                at = vec![ends.last().cloned().expect("a transfer has an end")];
                known = true;
            }
            "running" | "unknown" => {
                in_doubt.push((id, name, instrument, task));
                at = ends;
                known = false;
            }
            "failed" => {
                at = ends;
                known = false;
            }
            _ => {}
        }
    }
    let known = known && at.len() == 1;
    let places: Vec<String> = at
        .into_iter()
        .filter_map(|p| match p {
            Place::Position(p) => Some(p),
            Place::Rack(_) => None,
        })
        .collect();
    let slot = slot.max(0) as usize;
    Ok((!places.is_empty() || !in_doubt.is_empty()).then_some(LeftVessel {
        id: experiment,
        seq,
        slot,
        returns,
        unstarted_returns,
        known,
        places,
        in_doubt,
    }))
}

/// The campaign's counters and best result, rebuilt from the record.
pub fn state(r: &Restore, campaign: &Campaign) -> CampaignState {
    let mut state = CampaignState::new(campaign.budget, campaign.in_flight, r.ids);
    state.started = r.started;
    state.running = r.running.len();
    for (id, values, outputs, objective, seq) in &r.concluded {
        state.told.push(*id);
        match outputs {
            Some(_) => {
                state.succeeded += 1;
                if let Some(v) = objective {
                    let better =
                        state.best.as_ref().is_none_or(|b| campaign.objective.direction.better(*v, b.objective));
                    if better {
                        state.best = Some(Best { seq: *seq, values: values.clone(), objective: *v });
                    }
                }
            }
            None => state.failed += 1,
        }
    }
    state.queue = r.queued.iter().cloned().collect();
    state.peak_in_flight = r.running.len();
    state
}

/// Rebuilds the running experiments in `world` (whose campaign resources are already inserted) and returns the names
/// of instruments with steps in doubt, which must be reconciled before they run anything.
pub fn apply(
    world: &mut World,
    r: &Restore,
    protocol: &Protocol,
    lab: &Lab,
    recorder: &Recorder,
    now: f64,
) -> Vec<String> {
    let mut in_doubt_instruments = Vec::new();
    let mut concluded = Vec::new();
    let levels = match world.get_resource::<Source>() {
        Some(Source::Campaign(cs)) => cs.reagents.clone(),
        _ => BTreeMap::new(),
    };
    if let Some(mut stock) = world.get_resource_mut::<Stock>() {
        stock.restore(&r.stock);
    }
    let mut doubts = Vec::new();
    let mut carried: Vec<Carried> = Vec::new();
    let mut queue = CommandQueue::default();
    let mut fresh = Vec::new();
    let mut deck = DeckState::default();
    {
        let mut commands = Commands::new(&mut queue, world);
        for x in &r.running {
            let Ok(bound) = protocol.bind_with(&x.values, &experiments::reagents_at(&levels, &x.values)) else {
                recorder.send(RecordEvent::say(
                    r.campaign,
                    now,
                    "error",
                    None,
                    format!("experiment {} cannot be rebuilt: its parameters no longer bind", x.seq),
                ));
                continue;
            };
            let exp_entity = commands.spawn_empty().id();
            let entities: Vec<Entity> = bound.steps.iter().map(|_| commands.spawn_empty().id()).collect();
            let mut dependents: Vec<Vec<Entity>> = vec![Vec::new(); bound.steps.len()];
            for (j, s) in bound.steps.iter().enumerate() {
                for &a in &s.after {
                    dependents[a].push(entities[j]);
                }
            }
            let est: Vec<f64> =
                bound.steps.iter().map(|s| crate::schedule::estimate::action(lab, &s.on, &s.action)).collect();
            let mut tail = est.clone();
            for j in (0..bound.steps.len()).rev() {
                let after = dependents[j]
                    .iter()
                    .filter_map(|d| entities.iter().position(|e| e == d))
                    .map(|k| tail[k])
                    .fold(0.0, f64::max);
                tail[j] = est[j] + after;
            }
            let status_of = |name: &str| x.steps.get(name).map_or("waiting", |s| s.1.as_str());
            let succeeded: Vec<bool> = bound.steps.iter().map(|s| status_of(&s.id) == "succeeded").collect();
            let mut vessel = Vessel { at: Place::Rack(x.slot), known: true };
            let mut failed: Option<String> = None;
            let mut unfinished = 0;
            for (i, s) in bound.steps.iter().enumerate() {
                let Some((id, status, instrument, task, attempt)) = x.steps.get(&s.id).cloned() else { continue };
                let work = Work::Action(s.action.clone());
                let state = match status.as_str() {
                    "succeeded" => {
                        if let Some(Task::Transfer { to, .. } | Task::Deliver { to }) = &task {
                            vessel.at = to.clone();
                        }
                        StepState::Succeeded
                    }
                    "running" | "unknown" if work.repeat_safe() => {
                        unfinished += 1;
                        fresh.push(entities[i]);
                        recorder.send(RecordEvent::StepStatus {
                            step: id,
                            at: now,
                            status: "ready".into(),
                            instrument: None,
                            task: None,
                            attempt: None,
                            outcome: None,
                            error: Some(
                                "in doubt after the controller stopped; safe to repeat, so it runs again".to_owned(),
                            ),
                        });
                        StepState::Ready { since: now, not_before: now, deadline: None }
                    }
                    "running" | "unknown" => {
                        unfinished += 1;
                        if let Some(name) = &instrument {
                            in_doubt_instruments.push(name.clone());
                        }
                        let ends = match &task {
                            // The vessel may be at either place, or in the gripper: both places stay blocked (the
                            // place it left as much as the one it was going to; a vial may still stand there).
                            Some(Task::Transfer { from, to }) => vec![from, to],
                            // A delivery carried on a transfer with the vessel already in the gripper.
                            Some(Task::Deliver { to }) => vec![to],
                            _ => Vec::new(),
                        };
                        if !ends.is_empty() {
                            vessel.known = false;
                        }
                        for place in ends {
                            if let Place::Position(p) = place {
                                deck.occupant.insert(p.clone(), exp_entity);
                            }
                        }
                        if status == "running" {
                            recorder.send(RecordEvent::StepStatus {
                                step: id,
                                at: now,
                                status: "unknown".into(),
                                instrument: instrument.clone(),
                                task: None,
                                attempt: None,
                                outcome: None,
                                error: Some(
                                    "in doubt: its intent was recorded but not its outcome when the controller stopped; \
                                     it may have acted, so it is not repeated"
                                        .to_owned(),
                                ),
                            });
                        }
                        if let (Some(task), Some(rec)) = (&task, r.doubts.get(&id)) {
                            // A continuation in doubt carries on what the step's own action asked.
                            let asked = match &s.action {
                                a @ (Action::Heat { .. } | Action::HoldTemperature { .. }) => task_for(a, None, None),
                                _ => task.clone(),
                            };
                            doubts.push((
                                entities[i],
                                InDoubt {
                                    task: task.clone(),
                                    asked,
                                    started: rec.started,
                                    exchanges: Some(rec.exchanges.clone()),
                                    before: Some(rec.before.clone()),
                                    carried_on: 0,
                                },
                            ));
                        }
                        StepState::Unknown { instrument: None }
                    }
                    "failed" | "skipped" => {
                        failed.get_or_insert_with(|| format!("step `{}` failed before the controller stopped", s.id));
                        StepState::Failed
                    }
                    _ => {
                        unfinished += 1;
                        let remaining = s.after.iter().filter(|&&a| !succeeded[a]).count();
                        if remaining == 0 {
                            fresh.push(entities[i]);
                            StepState::Ready { since: now, not_before: now, deadline: None }
                        } else {
                            StepState::Waiting { remaining }
                        }
                    }
                };
                commands.entity(entities[i]).insert((
                    Step {
                        id,
                        experiment: exp_entity,
                        index: i,
                        name: s.id.clone(),
                        // As when it started: a dispense of a reagent only one pump reaches runs on that pump.
                        on: crate::schedule::systems::propose::reagent_pump(lab, &s.on, &s.action),
                        work,
                        rules: s.rules,
                        estimate: est[i],
                        tail: tail[i],
                        after: s.after.iter().map(|&a| entities[a]).collect(),
                        leads_within: bound.steps.iter().any(|t| t.rules.within.is_some() && t.after.contains(&i)),
                    },
                    state,
                    Attempts(attempt),
                    Dependents(std::mem::take(&mut dependents[i])),
                ));
            }
            if vessel.known
                && let Place::Position(p) = &vessel.at
            {
                deck.occupant.insert(p.clone(), exp_entity);
            }
            let exp_state = match &failed {
                Some(why) => ExperimentState::Failed(why.clone()),
                None => ExperimentState::Running,
            };
            if failed.is_some() {
                concluded.push(exp_entity);
            } else {
                let mut pending = Vec::new();
                let mut in_doubt = Vec::new();
                for (i, s) in bound.steps.iter().enumerate() {
                    let Action::Dispense { reagent: Some(_), .. } = &s.action else { continue };
                    match x.steps.get(&s.id) {
                        Some((_, status, ..)) if status == "succeeded" => {}
                        Some((id, status, ..)) if status == "running" || status == "unknown" => in_doubt.push(*id),
                        _ => pending.push((i, s.action.clone())),
                    }
                }
                carried.push(Carried { entity: exp_entity, id: x.id, seq: x.seq, pending, in_doubt });
            }
            commands.entity(exp_entity).insert((
                Experiment {
                    id: x.id,
                    seq: x.seq,
                    values: bound.values.clone(),
                    proposal: x.proposal,
                    slot: Some(x.slot),
                    steps: entities,
                    unfinished,
                    started_at: x.started_at,
                },
                exp_state,
                Readings(x.readings.clone()),
                vessel,
            ));
        }
    }
    queue.apply(world);
    for (step, doubt) in doubts {
        world.entity_mut(step).insert(doubt);
    }
    if let Some(mut stock) = world.get_resource_mut::<Stock>() {
        reserve_again(&mut stock, &carried, r, recorder, now);
    }
    // Vessels concluded experiments left on the deck keep their places: nothing may be put where a vessel may stand.
    // The places stay blocked until a person clears them (an entity that is no experiment holds them), and a
    // transfer that was under way is settled as failed, never repeated.
    for left in &r.left_on_deck {
        for (step, name) in &left.unstarted_returns {
            recorder.send(RecordEvent::StepStatus {
                step: *step,
                at: now,
                status: "skipped".into(),
                instrument: None,
                task: None,
                attempt: None,
                outcome: None,
                error: Some(format!(
                    "`{name}` of experiment #{} had not started when the controller stopped; the resumed campaign \
                     decides anew how its vessel goes back",
                    left.seq
                )),
            });
        }
        if let ([place], [], true) = (&left.places[..], &left.in_doubt[..], left.known) {
            // Its place is known: it is carried back to its rack slot, as when it failed.
            let holder = return_vessel(world, left, place, recorder, now);
            deck.occupant.entry(place.clone()).or_insert(holder);
            continue;
        }
        // One transfer in doubt on an instrument that can be read back: its vessel is settled from what the
        // instrument reports, as a running experiment's would be (its places stay held meanwhile).
        if let [(step, name, Some(instrument), task)] = &left.in_doubt[..]
            && lab.instrument(instrument).is_some_and(devices::drivers::reads_back)
            && let Some(rec) = r.doubts.get(step)
        {
            in_doubt_instruments.push(instrument.clone());
            let holder = unfinished_return(world, left, *step, name, task, rec);
            for p in &left.places {
                deck.occupant.entry(p.clone()).or_insert(holder);
            }
            continue;
        }
        let holder = world.spawn_empty().id();
        for p in &left.places {
            deck.occupant.entry(p.clone()).or_insert(holder);
        }
        for (step, name, instrument, _) in &left.in_doubt {
            // The instrument stopped mid-transfer: it is reconciled (safe state, identify, initialize) before use.
            in_doubt_instruments.extend(instrument.iter().cloned());
            recorder.send(RecordEvent::StepStatus {
                step: *step,
                at: now,
                status: "failed".into(),
                instrument: instrument.clone(),
                task: None,
                attempt: None,
                outcome: None,
                error: Some(format!(
                    "in doubt after the controller stopped: `{name}` of experiment #{} may have moved its vessel; \
                     never repeated",
                    left.seq
                )),
            });
        }
        if !left.places.is_empty() {
            let places: Vec<&str> = left.places.iter().map(String::as_str).collect();
            recorder.send(RecordEvent::say(
                r.campaign,
                now,
                "warning",
                None,
                crate::schedule::systems::conclude::lost_vessel_warning(left.seq, &places),
            ));
        }
    }
    world.insert_resource(deck);
    world.resource_mut::<ReadyIndex>().fresh.extend(fresh);
    let slots = lab.deck.rack.slots();
    world.insert_resource(RackState { fresh: (0..slots).filter(|s| !r.used_slots.contains(s)).collect() });
    for e in concluded {
        world.write_message(ExperimentConcluded { experiment: e });
    }
    // Instruments with steps in doubt are reconciled before they take anything else.
    in_doubt_instruments.sort();
    in_doubt_instruments.dedup();
    let mut q = world.query::<(Entity, &Instrument, &mut Availability)>();
    let mut unreachable = Vec::new();
    for (e, inst, mut a) in q.iter_mut(world) {
        if !in_doubt_instruments.contains(&inst.name) {
            continue;
        }
        match &*a {
            Availability::Idle => {
                *a = Availability::Unknown {
                    reason: "a step on it was in doubt when the controller stopped".to_owned(),
                };
            }
            // An instrument that did not answer at start cannot be reconciled, so its steps in doubt are settled as
            // a failed reconciliation would settle them; otherwise they would wait for it forever.
            Availability::Offline { reason } => unreachable.push((e, reason.clone())),
            _ => {}
        }
    }
    for (instrument, reason) in unreachable {
        world.write_message(Reconciled { instrument, result: Err(format!("it is offline: {reason}")) });
    }
    // Steps in doubt remember their instrument, so settling the instrument settles them.
    let names: HashMap<String, Entity> =
        world.query::<(Entity, &Instrument)>().iter(world).map(|(e, i)| (i.name.clone(), e)).collect();
    let mut q = world.query::<(&Step, &mut StepState)>();
    for (step, mut st) in q.iter_mut(world) {
        if let StepState::Unknown { instrument: None } = *st {
            let running = r.running.iter().flat_map(|x| x.steps.values()).find(|v| v.0 == step.id).map(|v| &v.2);
            let left = r.left_on_deck.iter().flat_map(|l| l.in_doubt.iter()).find(|d| d.0 == step.id).map(|d| &d.2);
            if let Some(Some(name)) = running.or(left) {
                *st = StepState::Unknown { instrument: names.get(name).copied() };
            }
        }
    }
    let unknown = world.query::<&StepState>().iter(world).filter(|s| matches!(s, StepState::Unknown { .. })).count();
    world.resource_mut::<CampaignState>().unknown = unknown;
    in_doubt_instruments
}

mod stock;
#[cfg(test)]
mod tests;
