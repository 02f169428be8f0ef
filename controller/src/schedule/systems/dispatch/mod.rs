//! The *Dispatch* set: idle instruments get their next step.
//!
//! [`reconcile_instruments`] sends instruments in an unknown state to be read back or reconciled, [`index_ready_steps`] files
//! ready steps under every instrument that can run them, [`replan`] replans when the work or the expected durations
//! changed, [`assign_instruments`] gives each idle instrument the step the plan (or, without one, the critical path)
//! says it runs next, and [`compute_next_wake`] says when the main loop must wake for a minimum wait.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

use bevy_ecs::prelude::*;
use devices::{Place, Task};
use protocols::{Action, Destination};

mod holds;
mod places;

use self::holds::{Held, follower_holds};
use self::places::{freeing_step, kept_out_by_occupant, planned_position};
use super::{position_usable, step_timeout};
use crate::record::RecordEvent;
use crate::schedule::bridge::{Bridge, Dispatch};
use crate::schedule::components::{
    Attempts, Availability, Condition, Dependents, Experiment, Hold, Holds, InDoubt, Instrument, ReadsBack, Step,
    StepState, Vessel,
};
use crate::schedule::planner;
use crate::schedule::resources::{
    CampaignState, DeckState, LabClock, NextWake, OrderedTime, Policy, Progress, ReadyIndex, ReadyKey, Record,
    Schedule, Source,
};
use crate::schedule::stock::{Draw, Stock};

/// Sends instruments in the unknown state to be read back, if they can be and a step on them is in doubt, or else
/// reconciled (safe state, identify, initialize).
pub fn reconcile_instruments(
    instruments: Query<(Entity, &Instrument, &Availability, Has<ReadsBack>)>,
    doubts: Query<(&Step, &StepState), With<InDoubt>>,
    mut pending: Local<HashSet<Entity>>,
    bridge: Res<Bridge>,
) {
    for (e, _, a, reads_back) in &instruments {
        match a {
            Availability::Unknown { .. } => {
                if pending.insert(e) {
                    let in_doubt = doubts
                        .iter()
                        .find(|(_, st)| matches!(st, StepState::Unknown { instrument: Some(i) } if *i == e))
                        .map(|(s, _)| s.id);
                    match in_doubt {
                        Some(step) if reads_back => bridge.executor.observe(e, step),
                        _ => bridge.executor.reconcile(e),
                    }
                }
            }
            _ => {
                pending.remove(&e);
            }
        }
    }
}

/// Says in the record (a warning, which `lab status` lists) when a ready dispense of a reagent cannot start because no
/// pump where its vessel stands reaches a bottle with enough of it for the experiment: its reservation is in a bottle
/// only a pump elsewhere reaches (the vessel was taken to another of the places its transfer may go to), and the
/// bottles here have too little free. It would otherwise wait in silence. Said once per step, and again if what it
/// waits for changes; a restock of a bottle here lets it start.
pub fn say_stranded_dispenses(
    instruments: Query<(Entity, &Instrument, &Availability)>,
    steps: Query<(&Step, &StepState)>,
    experiments: Query<(&Experiment, Option<&Vessel>)>,
    index: Res<ReadyIndex>,
    mut stock: ResMut<Stock>,
    record: Res<Record>,
    clock: Res<LabClock>,
) {
    if stock.bottles.is_empty() {
        return;
    }
    stock.stranded.retain(|e, _| steps.get(*e).is_ok_and(|(_, st)| matches!(st, StepState::Ready { .. })));
    let mut said = Vec::new();
    for (e, inst, a) in &instruments {
        if *a != Availability::Idle {
            continue;
        }
        let Some(queue) = index.queues.get(&e) else { continue };
        for key in queue.iter().take(8) {
            let Ok((step, StepState::Ready { .. })) = steps.get(key.step) else { continue };
            let Some(Action::Dispense { volume, reagent: Some(r) }) = step.work.action() else { continue };
            let Ok((exp, Some(vessel))) = experiments.get(step.experiment) else { continue };
            if !(vessel.known && inst.is_at(&vessel.at)) {
                continue;
            }
            let here: Vec<&str> = instruments
                .iter()
                .filter(|(_, i, a)| i.is_at(&vessel.at) && !matches!(a, Availability::Offline { .. }))
                .map(|(_, i, _)| i.name.as_str())
                .collect();
            if here.iter().any(|p| stock.pick(step.experiment, r, p, volume.0).is_some()) {
                continue;
            }
            let near: Vec<String> = stock
                .bottles
                .iter()
                .filter(|(_, b)| &b.reagent == r && here.contains(&b.source.pump()))
                .map(|(k, b)| format!("`{k}` has {:.0} uL free", b.free().unwrap_or(0.0).max(0.0)))
                .collect();
            let reserved: Vec<String> = stock
                .bottles
                .iter()
                .filter(|(_, b)| &b.reagent == r && b.reserved.contains_key(&step.experiment))
                .map(|(k, b)| format!("`{k}` (reached by `{}`)", b.source.pump()))
                .collect();
            let place = match &vessel.at {
                Place::Position(p) => p.clone(),
                other => format!("{other:?}"),
            };
            let message = format!(
                "waiting for `{r}` where its vessel stands: `{}` of experiment #{} needs {:.0} uL of `{r}` at `{place}`, \
                 where {}; its reservation is in {}, which no pump at `{place}` reaches. It starts once a bottle here \
                 is restocked (`lab restock BOTTLE VOLUME`)",
                step.name,
                exp.seq,
                volume.0,
                if near.is_empty() { "no pump reaches a bottle of it".to_owned() } else { near.join(", ") },
                if reserved.is_empty() { "no bottle".to_owned() } else { reserved.join(", ") },
            );
            if stock.stranded.get(&key.step) != Some(&message) {
                said.push((key.step, inst.name.clone(), message));
            }
        }
    }
    for (step, instrument, message) in said {
        record.recorder.send(RecordEvent::say(
            record.campaign,
            clock.now(),
            "warning",
            Some(&instrument),
            message.clone(),
        ));
        stock.stranded.insert(step, message);
    }
}

/// Makes a new plan when the work or the expected durations changed.
pub fn replan(
    policy: Res<Policy>,
    mut schedule: ResMut<Schedule>,
    steps: Query<(Entity, &Step, &StepState)>,
    instruments: Query<(Entity, &Instrument, &Availability)>,
    experiments: Query<(&Experiment, Option<&Vessel>)>,
    clock: Res<LabClock>,
) {
    let Policy::Planned { replan, budget } = *policy else { return };
    if !schedule.dirty || (!replan && schedule.plans > 0) {
        return;
    }
    let t0 = Instant::now();
    let now = clock.now();
    let mut inst: Vec<(Entity, Instrument, Availability)> =
        instruments.iter().map(|(e, i, a)| (e, i.clone(), a.clone())).collect();
    inst.sort_by_key(|(_, i, _)| i.index);
    let index_of: HashMap<Entity, usize> = inst.iter().enumerate().map(|(k, (e, _, _))| (*e, k)).collect();
    // Every step not yet finished becomes an operation; running ones are fixed where they are.
    let mut entities = Vec::new();
    let mut op_of: HashMap<Entity, usize> = HashMap::new();
    for (e, _, st) in &steps {
        if matches!(st, StepState::Waiting { .. } | StepState::Ready { .. } | StepState::Running { .. }) {
            op_of.insert(e, entities.len());
            entities.push(e);
        }
    }
    let mut problem = planner::Problem { resources: inst.len(), available: vec![now; inst.len()], ops: Vec::new() };
    for &e in &entities {
        let (_, step, st) = steps.get(e).expect("collected above");
        let vessel = experiments.get(step.experiment).ok().and_then(|(_, v)| v);
        let candidates: Vec<usize> = inst
            .iter()
            .enumerate()
            .filter(|(_, (_, i, a))| {
                !matches!(a, Availability::Offline { .. })
                    && i.matches(&step.on)
                    && (!step.work.acts_on_vessel()
                        || !vessel_settled(step, &steps)
                        || vessel.is_none_or(|v| i.is_at(&v.at)))
            })
            .map(|(k, _)| k)
            .collect();
        let (release, fixed) = match st {
            StepState::Running { instrument, started, .. } => (now, index_of.get(instrument).map(|&k| (k, *started))),
            StepState::Ready { not_before, .. } => (not_before.max(now), None),
            _ => (now, None),
        };
        let exp_seq = experiments.get(step.experiment).map_or(0, |(x, _)| x.seq);
        problem.ops.push(planner::Operation {
            job: exp_seq,
            duration: step.estimate,
            candidates: if candidates.is_empty() { vec![fixed.map_or(0, |f| f.0)] } else { candidates },
            preds: step.after.iter().filter_map(|a| op_of.get(a).copied()).collect(),
            release,
            min_wait: step.rules.wait.map_or(0.0, |w| w.0),
            max_wait: step.rules.within.map(|w| w.0),
            fixed,
        });
    }
    let n = problem.ops.len();
    // The previous plan's starts, so a replan for the same work (a duration surprised) repairs that plan instead of
    // searching from scratch; new work (steps the plan does not cover) gets a full plan.
    let previous: Vec<Option<f64>> = entities.iter().map(|e| schedule.assigned.get(e).map(|(_, s)| *s)).collect();
    let budget = budget.unwrap_or_else(|| planner::default_budget(n));
    let plan = planner::replan(&problem, &previous, budget, schedule.plans as u64);
    schedule.queues.clear();
    schedule.assigned.clear();
    for (k, seq) in plan.sequences.iter().enumerate() {
        let inst_entity = inst[k].0;
        let q: VecDeque<Entity> =
            seq.iter().filter(|&&o| problem.ops[o].fixed.is_none()).map(|&o| entities[o]).collect();
        for &o in seq {
            schedule.assigned.insert(entities[o], (inst_entity, plan.start[o]));
        }
        schedule.queues.insert(inst_entity, q);
    }
    schedule.makespan = plan.makespan;
    schedule.dirty = false;
    schedule.plans += 1;
    schedule.work += plan.work;
    schedule.planning += t0.elapsed();
}

/// Whether the vessel has reached the place where `step` acts (no transfer before it in its segment is pending).
fn vessel_settled(step: &Step, steps: &Query<(Entity, &Step, &StepState)>) -> bool {
    step.after.iter().all(|a| matches!(steps.get(*a), Ok((_, _, StepState::Succeeded))))
}

/// Files newly ready steps under the instruments that could run them (see [`ReadyIndex`]).
pub fn index_ready_steps(
    mut index: ResMut<ReadyIndex>,
    steps: Query<(&Step, &StepState)>,
    instruments: Query<(Entity, &Instrument, &Availability)>,
    experiments: Query<(&Experiment, Option<&Vessel>)>,
    policy: Res<Policy>,
    mut schedule: ResMut<Schedule>,
    clock: Res<LabClock>,
) {
    let now = clock.now();
    while let Some(&(OrderedTime(t), e)) = index.later.first() {
        if t > now + 1e-9 {
            break;
        }
        index.later.pop_first();
        index.fresh.push(e);
    }
    let fresh = std::mem::take(&mut index.fresh);
    let planned = matches!(*policy, Policy::Planned { .. });
    for e in fresh {
        let Ok((step, StepState::Ready { not_before, .. })) = steps.get(e) else { continue };
        if *not_before > now + 1e-9 {
            index.later.insert((OrderedTime(*not_before), e));
            continue;
        }
        let Ok((exp, vessel)) = experiments.get(step.experiment) else { continue };
        let candidates: Vec<Entity> = instruments
            .iter()
            .filter(|(_, i, a)| {
                i.matches(&step.on)
                    && !matches!(a, Availability::Offline { .. })
                    && (!step.work.acts_on_vessel() || vessel.is_some_and(|v| i.is_at(&v.at)))
            })
            .map(|(ie, ..)| ie)
            .collect();
        let key = ReadyKey { priority: OrderedTime(-step.tail), seq: exp.seq, index: step.index, step: e };
        index.remove(e);
        for &i in &candidates {
            index.queues.entry(i).or_default().insert(key);
        }
        // A ready step the plan does not cover, or covers on an instrument that cannot run it now (its vessel went
        // elsewhere), means the plan is stale.
        if planned && schedule.assigned.get(&e).is_none_or(|(i, _)| !candidates.contains(i)) {
            schedule.dirty = true;
        }
        index.filed.insert(e, (key, candidates));
    }
}

/// Lab seconds by which a planned step may be late before the instrument held for it stops waiting.
const DUE_SLACK: f64 = 1e-6;

/// How many ready steps that could start one instrument's search may pass over (for the plan, or for holds).
const PASSED_OVER: usize = 32;

/// Why a ready step cannot start on an instrument now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unable {
    /// Its vessel is not at the instrument or is lost, or every place it could be taken to is taken: only another
    /// step's move changes that.
    Place,
    /// It is not ready, or a hold or keep promises it (or the instrument) elsewhere for now.
    Other,
}

/// Gives each idle instrument a step: the next one in its planned sequence that is ready and can start (filling gaps
/// with later planned steps that end before the next one is due), or, with no plan, its best ready step (longest
/// remaining path first). Dispatches it, intent first.
pub fn assign_instruments(
    mut steps: Query<(Entity, &Step, &mut StepState)>,
    mut attempts: Query<&mut Attempts>,
    dependents: Query<&Dependents>,
    mut instruments: Query<(Entity, &Instrument, &mut Availability, &mut Holds)>,
    experiments: Query<(&Experiment, Option<&Vessel>)>,
    mut deck: ResMut<DeckState>,
    mut index: ResMut<ReadyIndex>,
    source: Res<Source>,
    mut schedule: ResMut<Schedule>,
    // Paired, since a system takes at most sixteen parameters.
    (policy, conditions): (Res<Policy>, Query<&Condition>),
    bridge: Res<Bridge>,
    record: Res<Record>,
    clock: Res<LabClock>,
    state: Res<CampaignState>,
    mut progress: ResMut<Progress>,
    mut stock: ResMut<Stock>,
) {
    schedule.idle_until = None;
    if state.aborted || state.paused || index.filed.is_empty() {
        return;
    }
    let now = clock.now();
    // A hold is a promise to a step that has yet to start; once that step runs, fails or is skipped (its experiment
    // failed), the promise is void wherever it was made (a step may have been held on several candidates), and a
    // void hold would keep its instrument from work forever.
    for (_, _, _, mut holds) in &mut instruments {
        if holds.0.iter().any(|h| !steps.get(h.step).is_ok_and(|(_, _, st)| st.is_pending())) {
            holds.0.retain(|h| steps.get(h.step).is_ok_and(|(_, _, st)| st.is_pending()));
        }
    }
    let mut idle: Vec<(Entity, Instrument)> = instruments
        .iter()
        .filter(|(e, _, a, _)| **a == Availability::Idle && index.queues.get(e).is_some_and(|q| !q.is_empty()))
        .map(|(e, i, _, _)| (e, i.clone()))
        .collect();
    if idle.is_empty() {
        return;
    }
    idle.sort_by_key(|(_, i)| i.index);
    let offline: HashSet<String> = instruments
        .iter()
        .filter(|(_, _, a, _)| matches!(a, Availability::Offline { .. }))
        .map(|(_, i, _, _)| i.name.clone())
        .collect();
    let offline_ref: HashSet<&str> = offline.iter().map(String::as_str).collect();
    let planned = matches!(*policy, Policy::Planned { .. }) && schedule.plans > 0 && !schedule.dirty;

    let mut chosen: Vec<(Entity, Entity, Option<Place>, String)> = Vec::new();
    // Instruments given a step in this frame, and valves a dispense chosen in this frame turns.
    let mut taken: HashSet<String> = HashSet::new();
    let mut stale = false;
    for (inst_entity, inst) in &idle {
        if taken.contains(&inst.name) {
            continue;
        }
        // A kept instrument takes nothing else, however short; a held one only what ends before its hold.
        let first_hold = instruments
            .get(*inst_entity)
            .ok()
            .and_then(|(_, _, _, h)| if h.0.iter().any(|h| h.kept) { Some(f64::NEG_INFINITY) } else { h.first() });
        let fits_before_hold = |est: f64| first_hold.is_none_or(|t| now + est * 1.25 <= t);
        let feasible = |e: Entity,
                        deck: &DeckState,
                        schedule: &Schedule,
                        past_holds: bool|
         -> Result<Option<Place>, Unable> {
            let Ok((_, step, st)) = steps.get(e) else { return Err(Unable::Other) };
            if !matches!(st, StepState::Ready { .. }) {
                return Err(Unable::Other);
            }
            let Ok((exp, vessel)) = experiments.get(step.experiment) else { return Err(Unable::Other) };
            if step.work.acts_on_vessel() && !vessel.is_some_and(|v| v.known && inst.is_at(&v.at)) {
                return Err(Unable::Place);
            }
            let held_for_me =
                instruments.get(*inst_entity).ok().is_some_and(|(_, _, _, h)| h.0.iter().any(|h| h.step == e));
            // A step an instrument is kept for runs there and nowhere else (even where it is held for a maximum wait).
            if instruments.iter().any(|(ie, _, _, h)| ie != *inst_entity && h.0.iter().any(|h| h.step == e && h.kept)) {
                return Err(Unable::Other);
            }
            if !held_for_me && !past_holds && !fits_before_hold(step.estimate) {
                return Err(Unable::Other);
            }
            if !source_ready(step, &inst.name, &stock, &instruments, &taken) {
                return Err(Unable::Other);
            }
            match step.work.action() {
                Some(Action::Transfer { to: Destination::Rack }) => Ok(exp.slot.map(Place::Rack)),
                Some(Action::Transfer { .. }) => {
                    let Source::Campaign(cs) = &*source else { return Ok(None) };
                    let Some(v) = vessel else { return Err(Unable::Other) };
                    if !v.known {
                        return Err(Unable::Place);
                    }
                    let Some(choices) = cs.transfer_positions.get(&step.index) else { return Err(Unable::Other) };
                    // Prefer where the plan put the steps this transfer serves; but first, a place where a pump reaches
                    // a bottle with enough for each dispense there (where the experiment's reservation stands), so a
                    // dispense never waits at one station while its reagent is set aside at another.
                    let preferred = planned_position(e, &steps, &dependents, schedule, &instruments);
                    let usable = |p: &String| {
                        choices.contains(p)
                            && deck.is_free_for(p, step.experiment)
                            && position_usable(cs, p, &offline_ref)
                    };
                    let ordered: Vec<String> = preferred.into_iter().chain(choices.iter().cloned()).collect();
                    let pick = ordered
                        .iter()
                        .find(|p| usable(p) && dispenses_served_at(p, e, exp, cs, &steps, &stock, &instruments))
                        .or_else(|| ordered.iter().find(|p| usable(p)))
                        .cloned();
                    pick.map(|p| Some(Place::Position(p))).ok_or(Unable::Place)
                }
                _ => Ok(None),
            }
        };
        let mut pick: Option<(Entity, Option<Place>, (Vec<(Entity, Hold)>, Held, Vec<Entity>), String)> = None;
        // A ready step this instrument is held for runs before anything else: its maximum wait is running. It may
        // stand far down the instrument's queue (a gantry's queue of 96 loads, each with a longer path ahead), past
        // where the searches below stop, and the lab stopped for good with the gantry held for steps it never saw.
        let mut held_ready: Vec<(f64, Entity)> = instruments
            .get(*inst_entity)
            .into_iter()
            .flat_map(|(_, _, _, h)| h.0.iter().map(|h| h.step))
            .filter(|e| index.filed.get(e).is_some_and(|(_, under)| under.contains(inst_entity)))
            .filter_map(|e| match steps.get(e) {
                Ok((_, _, StepState::Ready { deadline, .. })) => Some((deadline.unwrap_or(f64::INFINITY), e)),
                _ => None,
            })
            .collect();
        held_ready.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (_, e) in held_ready {
            if let Ok(dest) = feasible(e, &deck, &schedule, false)
                && let Some(holds) = follower_holds(e, now, &steps, &dependents, &instruments, &schedule, &chosen)
            {
                pick = Some((e, dest, holds, format!("`{}` was held for it", inst.name)));
                break;
            }
        }
        // Else, a held step that is ready but cannot start for want of a place waits for the step that frees the
        // place. When that step is this instrument's to run, it runs first, past the holds: the hold otherwise kept
        // the instrument from the one step that lets the held one start. A gantry held for a vial's move to the
        // spectrometer (a maximum wait after its heat) would not take the vial standing at the spectrometer back to
        // the rack, and the lab stopped for good.
        if pick.is_none()
            && let Some((freeing, place, held)) =
                freeing_step(*inst_entity, &steps, &instruments, &deck, &index, &source)
            && let Ok(dest) = feasible(freeing, &deck, &schedule, true)
            && let Some(holds) = follower_holds(freeing, now, &steps, &dependents, &instruments, &schedule, &chosen)
        {
            let held = steps.get(held).map_or_else(|_| "a step".to_owned(), |(_, s, _)| format!("`{}`", s.name));
            pick = Some((freeing, dest, holds, format!("frees {place} for {held}, which `{}` is held for", inst.name)));
        }
        // When the plan has this instrument wait for a step that is not ready yet, the time that step is due.
        let mut due: Option<f64> = None;
        if planned && pick.is_none() {
            let queue: Vec<Entity> =
                schedule.queues.get(inst_entity).map(|q| q.iter().take(8).copied().collect()).unwrap_or_default();
            // The next planned step that can start now, unless an earlier planned step that is not ready yet is due
            // before it would end (then the instrument waits for it, as planned). Earlier steps that are ready but
            // cannot start (their destination is occupied) do not hold the instrument, and neither do the steps
            // planned after one of them: the plan's order has already failed here (the planner does not see which
            // deck places are taken), and its times after that step cannot be met. Waiting for them left the gantry
            // idle while the one step that could free the place stood ready behind them.
            let mut blocked = false;
            for (k, &e) in queue.iter().enumerate() {
                let est = steps.get(e).map_or(0.0, |(_, s, _)| s.estimate);
                if !index.filed.contains_key(&e) {
                    // A planned step whose vessel must still be brought here cannot start while another
                    // experiment's vessel stands here with a ready step of its own: the planner does not see who
                    // stands where, and only that step's run frees the place. Waiting for the first step left a
                    // hotplate idle for an hour with a vial on it ready to heat (`load`, seed 2).
                    if !blocked && kept_out_by_occupant(e, inst, &deck, &steps, &index, *inst_entity) {
                        blocked = true;
                    }
                    if !blocked && let Some((_, start)) = schedule.assigned.get(&e) {
                        due = Some(due.map_or(*start, |d: f64| d.min(*start)));
                    }
                    continue;
                }
                if due.is_some_and(|t| now + est > t + DUE_SLACK) {
                    continue;
                }
                match feasible(e, &deck, &schedule, false) {
                    Ok(dest) => {
                        if let Some(holds) =
                            follower_holds(e, now, &steps, &dependents, &instruments, &schedule, &chosen)
                        {
                            pick = Some((
                                e,
                                dest,
                                holds,
                                format!("next in `{}`'s plan (place {} in its queue)", inst.name, k + 1),
                            ));
                            break;
                        }
                    }
                    Err(Unable::Place) => blocked = true,
                    Err(Unable::Other) => {}
                }
            }
        }
        if pick.is_none() {
            // No plan, or the plan has nothing this instrument can start: its best ready step by the critical path,
            // so a stale plan never leaves an instrument idle while work waits for it. A plan still on time that has
            // the instrument wait for a step due soon is not stale: only a step that ends before then may fill the gap.
            let gap_ends = due.filter(|&t| t >= now - DUE_SLACK);
            // Steps that could start here but are passed over are counted (planned on another instrument, not ending
            // before a planned step is due, held or kept elsewhere), and the search stops after `PASSED_OVER` of
            // them: reading a long queue planned on other instruments on every frame cost more than the rest of the
            // scheduler. Steps that cannot start for want of a place (their destination is occupied, their vessel is
            // elsewhere or lost) are not counted, wherever they are planned: a step that can start may stand behind
            // any number of them, and the step that frees a place (a vial's return to the rack) is often the least
            // urgent by the critical path. With a limit on those too, an instrument whose first steps all waited for
            // a place it had yet to free waited forever.
            let mut passed = 0;
            let mut gone = Vec::new();
            for key in index.queues.get(inst_entity).into_iter().flatten() {
                if passed >= PASSED_OVER {
                    break;
                }
                if !steps.get(key.step).is_ok_and(|(_, _, st)| matches!(st, StepState::Ready { .. })) {
                    gone.push(key.step);
                    continue;
                }
                let dest = match feasible(key.step, &deck, &schedule, false) {
                    Ok(dest) => dest,
                    Err(Unable::Place) => continue,
                    Err(Unable::Other) => {
                        passed += 1;
                        continue;
                    }
                };
                // A step planned elsewhere waits for its instrument, unless this one is held for it (its planned
                // instrument could not be).
                let held_here = instruments
                    .get(*inst_entity)
                    .ok()
                    .is_some_and(|(_, _, _, h)| h.0.iter().any(|h| h.step == key.step));
                let elsewhere =
                    planned && !held_here && schedule.assigned.get(&key.step).is_some_and(|(i, _)| i != inst_entity);
                let estimate = steps.get(key.step).map_or(0.0, |(_, s, _)| s.estimate);
                let in_gap = !held_here && gap_ends.is_some_and(|t| now + estimate > t + DUE_SLACK);
                let holds = if elsewhere || in_gap {
                    None
                } else {
                    follower_holds(key.step, now, &steps, &dependents, &instruments, &schedule, &chosen)
                };
                let Some(holds) = holds else {
                    passed += 1;
                    continue;
                };
                pick = Some((
                    key.step,
                    dest,
                    holds,
                    format!(
                        "longest remaining path ({:.0} s) among its ready steps (experiment #{})",
                        -key.priority.0, key.seq
                    ),
                ));
                if planned {
                    stale = true;
                }
                break;
            }
            for step in gone {
                index.remove(step);
            }
        }
        let Some((step_entity, destination, (holds, held, unheld), reason)) = pick else {
            // Held idle for a planned step due at `t`: look again just after it, when the gap is over and the
            // instrument may take other work if that step is late.
            if let Some(t) = due.filter(|&t| t >= now - DUE_SLACK) {
                let then = t + 2.0 * DUE_SLACK;
                schedule.idle_until = Some(schedule.idle_until.map_or(then, |u| u.min(then)));
            }
            continue;
        };
        // A step that must be followed within a maximum wait starts only with its followers' instruments held.
        if matches!(held, Held::Elsewhere) {
            stale = true;
        }
        // ... or, where waiting could last forever, with what it could hold: the record says which follower may
        // start late, before it does.
        if !unheld.is_empty()
            && let Ok((_, step, _)) = steps.get(step_entity)
        {
            let seq = experiments.get(step.experiment).map_or(0, |(e, _)| e.seq);
            for (_, f, _) in unheld.iter().filter_map(|&f| steps.get(f).ok()) {
                let within = f.rules.within.map_or_else(String::new, |w| w.to_string());
                let message = format!(
                    "`{}` of experiment #{seq} starts although no instrument could be held for `{}`, which must start \
                     within {within} of it: `{}` may start late",
                    step.name, f.name, f.name
                );
                record.recorder.send(RecordEvent::say(record.campaign, now, "warning", Some(&inst.name), message));
            }
        }
        for (e, h) in holds {
            if let Ok((_, _, _, mut hs)) = instruments.get_mut(e) {
                hs.0.push(h);
            }
        }
        if let Some(Place::Position(p)) = &destination {
            let exp = steps.get(step_entity).map(|(_, s, _)| s.experiment).expect("picked from the world");
            deck.reserved.insert(p.clone(), exp);
        }
        index.remove(step_entity);
        taken.insert(inst.name.clone());
        if let Ok((_, step, _)) = steps.get(step_entity)
            && let Some(Action::Dispense { volume, reagent: Some(r) }) = step.work.action()
            && let Some((valve, _)) =
                stock.pick(step.experiment, r, &inst.name, volume.0).and_then(|b| b.source.valve())
        {
            taken.insert(valve.to_owned());
        }
        chosen.push((*inst_entity, step_entity, destination, reason));
    }

    if stale {
        schedule.dirty = true;
    }
    // Instruments kept for experiments (`keep`) can wait on each other: one experiment's kept step may need an
    // instrument kept for another experiment, whose kept step needs the first. When nothing runs, nothing waits for a
    // timer and nothing can start, that is the case, and the keeps are let go rather than leaving the lab stopped.
    if chosen.is_empty()
        && index.later.is_empty()
        && instruments.iter().all(|(_, _, a, _)| !matches!(a, Availability::Busy { .. }))
        && instruments.iter().any(|(_, _, _, h)| h.0.iter().any(|h| h.kept))
    {
        for (_, inst, _, mut holds) in &mut instruments {
            if holds.0.iter().any(|h| h.kept) {
                holds.0.retain(|h| !h.kept);
                record.recorder.send(RecordEvent::say(
                    record.campaign,
                    now,
                    "warning",
                    Some(&inst.name),
                    format!(
                        "{} was kept for an experiment's next step (`keep`), but every instrument waited on another; \
                         the keep was let go so work goes on",
                        inst.name
                    ),
                ));
            }
        }
        progress.0 = true;
    }
    for (inst_entity, step_entity, destination, reason) in chosen {
        // What dispatching needs from the step, read before its state is written (no clone of the whole step: that
        // was a tenth of the scheduler's time with a long queue).
        let Ok((_, step, state)) = steps.get(step_entity) else { continue };
        let since = match state {
            StepState::Ready { since, .. } => *since,
            _ => now,
        };
        let vessel_at = experiments.get(step.experiment).ok().and_then(|(_, v)| v.map(|v| v.at.clone()));
        let task = step.work.action().map(|a| task_for(a, vessel_at.as_ref(), destination.clone()));
        let (step_id, estimate) = (step.id, step.estimate);
        let draw = match step.work.action() {
            Some(Action::Dispense { volume, reagent: Some(r) }) => {
                let exp_id = experiments.get(step.experiment).map_or(0, |(e, _)| e.id);
                Some(Wanted { reagent: r.clone(), volume: volume.0, experiment: step.experiment, exp_id })
            }
            _ => None,
        };
        let attempt = {
            let mut a = attempts.get_mut(step_entity).expect("every step has attempts");
            a.0 += 1;
            a.0
        };
        let Ok((_, inst, mut avail, _)) = instruments.get_mut(inst_entity) else { continue };
        let timeout = step_timeout(step, &source, &inst.name, conditions.get(inst_entity).ok(), task.as_ref(), now);
        *avail = Availability::Busy { step: step_entity };
        let name = inst.name.clone();
        if let Ok((_, _, mut st)) = steps.get_mut(step_entity) {
            *st = StepState::Running { instrument: inst_entity, destination: destination.clone(), started: now };
        }
        if let Some(q) = schedule.queues.get_mut(&inst_entity)
            && q.front() == Some(&step_entity)
        {
            q.pop_front();
        } else if let Some(q) = schedule.queues.get_mut(&inst_entity) {
            q.retain(|e| *e != step_entity);
        }
        let place = destination.as_ref().map(|d| d.to_string());
        // The intent goes to the record first; the executor gets the step only once the intent is on disk.
        record.recorder.send(RecordEvent::StepStatus {
            step: step_id,
            at: now,
            status: "running".into(),
            instrument: Some(name.clone()),
            task: task.as_ref().and_then(|t| serde_json::to_string(t).ok()),
            attempt: Some(attempt),
            outcome: None,
            error: None,
        });
        record.recorder.send(RecordEvent::Decision {
            campaign: record.campaign,
            at: now,
            step: step_id,
            instrument: name.clone(),
            place: place.clone(),
            waited: now - since,
            reason: format!(
                "{reason}; `{name}` was idle{}",
                place.map(|p| format!(" and {p} was free")).unwrap_or_default()
            ),
        });
        // A dispense of a reagent draws from a bottle chosen now; through a valve, the valve is claimed with the
        // pump for the whole step, so no other step can turn it between the turn and the draw.
        if draw.is_none() {
            stock.line_in_doubt(&name);
        }
        let claimed =
            draw.and_then(|w| claim_source(step_entity, step_id, &name, w, &mut stock, &mut instruments, &record, now));
        let (turn, prime) = claimed.map_or((None, None), |(turn, prime)| (Some(turn), prime));
        let dispatch = Dispatch { step: step_entity, step_id, task, estimate, timeout, turn, prime };
        bridge.executor.dispatch(inst_entity, dispatch);
        progress.0 = true;
    }
}

/// A dispense's reagent, as dispatch needs it.
struct Wanted {
    reagent: String,
    volume: f64,
    experiment: Entity,
    exp_id: i64,
}

/// Whether every dispense of a reagent that transfer `transfer` of experiment `exp` serves could draw at position
/// `position`: a pump standing there reaches a bottle holding the experiment's reservation, or enough free stock.
fn dispenses_served_at(
    position: &str,
    transfer: Entity,
    exp: &Experiment,
    cs: &crate::schedule::resources::CampaignSource,
    steps: &Query<(Entity, &Step, &mut StepState)>,
    stock: &Stock,
    instruments: &Query<(Entity, &Instrument, &mut Availability, &mut Holds)>,
) -> bool {
    let Ok((_, t, _)) = steps.get(transfer) else { return true };
    let experiment = t.experiment;
    let pumps: Vec<&str> = instruments
        .iter()
        .filter(|(_, i, a, _)| i.position.as_deref() == Some(position) && !matches!(**a, Availability::Offline { .. }))
        .map(|(_, i, _, _)| i.name.as_str())
        .collect();
    exp.steps.iter().filter_map(|&e| steps.get(e).ok()).all(|(_, s, _)| {
        let Some(Action::Dispense { volume, reagent: Some(r) }) = s.work.action() else { return true };
        cs.protocol.transfer_serving(s.index) != Some(t.index)
            || pumps.iter().any(|p| stock.pick(experiment, r, p, volume.0).is_some())
    })
}

/// Whether a dispense of a reagent can start on pump `pump` now: a bottle it reaches holds enough for the
/// experiment, and a valve in between is free (idle, promised to nothing, not taken in this frame).
fn source_ready(
    step: &Step,
    pump: &str,
    stock: &Stock,
    instruments: &Query<(Entity, &Instrument, &mut Availability, &mut Holds)>,
    taken: &HashSet<String>,
) -> bool {
    let Some(Action::Dispense { volume, reagent: Some(r) }) = step.work.action() else { return true };
    let Some(bottle) = stock.pick(step.experiment, r, pump, volume.0) else { return false };
    match bottle.source.valve() {
        None => true,
        Some((valve, _)) => {
            !taken.contains(valve)
                && instruments.iter().any(|(_, i, a, h)| i.name == valve && *a == Availability::Idle && h.0.is_empty())
        }
    }
}

/// Charges a dispense to the bottle it draws from (in full, before it acts: a dispense whose outcome is never
/// learned stays charged), records the draw, and claims the valve it turns; returns the valve and port, and the
/// prime (waste port and microlitres) when the valve's line holds another reagent or one not known. A prime is
/// charged and recorded as a draw of its own.
#[expect(clippy::too_many_arguments, reason = "a helper of one system, taking what the system holds")]
fn claim_source(
    step_entity: Entity,
    step_id: i64,
    pump: &str,
    w: Wanted,
    stock: &mut Stock,
    instruments: &mut Query<(Entity, &Instrument, &mut Availability, &mut Holds)>,
    record: &Record,
    now: f64,
) -> Option<((Entity, u32), Option<(u32, f64)>)> {
    let key = stock.pick(w.experiment, &w.reagent, pump, w.volume)?.source.key();
    let prime = stock.prime_for(&key);
    // One `drawn` row per draw, with the stock left after it.
    let drawn = |stock: &Stock, volume: f64, note: String| {
        record.recorder.send(RecordEvent::Stock {
            campaign: record.campaign,
            at: now,
            bottle: key.clone(),
            reagent: w.reagent.clone(),
            kind: "drawn".into(),
            volume,
            experiment: Some(w.exp_id),
            step: Some(step_id),
            unknown: false,
            left: stock.bottles[&key].left(),
            note,
        })
    };
    let mut line_before = None;
    if let Some((valve, waste, volume)) = &prime {
        stock.charge(&key, w.experiment, *volume, false);
        let line = stock.lines.get_mut(valve).expect("a prime comes from a line");
        // Until the dispense ends well, what the line holds is not known for certain.
        line_before = line.holds.take();
        let held = match &line_before {
            Some(r) => format!("it held `{r}`"),
            None => "what it held is not known".to_owned(),
        };
        let note = format!(
            "by `{pump}` to prime the line of `{valve}` ({held}), pushed out to waste port {waste}, charged before it acts"
        );
        drawn(stock, *volume, note);
    }
    stock.charge(&key, w.experiment, w.volume, false);
    drawn(stock, w.volume, format!("by `{pump}`, charged before it acts"));
    let valve = stock.bottles[&key].source.valve().map(|(v, p)| (v.to_owned(), p));
    let mut turn = None;
    if let Some((valve, port)) = &valve
        && let Some((e, _, mut a, _)) = instruments.iter_mut().find(|(_, i, _, _)| &i.name == valve)
    {
        *a = Availability::Busy { step: step_entity };
        turn = Some((e, *port));
    }
    let primed = prime.as_ref().map_or(0.0, |(_, _, v)| *v);
    let draw =
        Draw { experiment: w.experiment, key, valve: turn.map(|(e, _)| e), volume: w.volume, primed, line_before };
    stock.draws.insert(step_entity, draw);
    turn.map(|t| (t, prime.map(|(_, waste, v)| (waste, v))))
}

/// The earliest minimum wait still running, so the main loop wakes up then.
pub fn compute_next_wake(index: Res<ReadyIndex>, mut wake: ResMut<NextWake>) {
    wake.0 = index.later.first().map(|(t, _)| t.0);
}

/// The instrument task for a step's action, with places resolved.
pub(crate) fn task_for(action: &Action, at: Option<&Place>, destination: Option<Place>) -> Task {
    match action {
        Action::Transfer { .. } => {
            let from = at.cloned().unwrap_or(Place::Rack(0));
            Task::Transfer { to: destination.unwrap_or_else(|| from.clone()), from }
        }
        Action::Dispense { volume, .. } => Task::Dispense { volume: *volume },
        Action::Heat { temperature, duration, stir } => {
            Task::Heat { temperature: *temperature, duration: *duration, stir: *stir }
        }
        Action::Stir { speed, duration } => Task::Stir { speed: *speed, duration: *duration },
        Action::Measure { wavelength, .. } => Task::Measure { wavelength: *wavelength },
        Action::Weigh { .. } => Task::Weigh,
        Action::Select { position } => Task::Select { position: *position },
        Action::ReadTemperature { .. } => Task::ReadTemperature,
        Action::HoldTemperature { temperature, duration } => {
            Task::HoldTemperature { temperature: *temperature, duration: *duration }
        }
    }
}
