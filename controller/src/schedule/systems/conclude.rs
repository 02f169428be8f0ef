//! The *Conclude* set: finished steps are applied and finished experiments concluded.
//!
//! [`apply_step_results`] frees instruments, moves vessels, keeps readings, releases the steps that waited, retries
//! what is safe to retry and puts what may have acted and failed into the unknown state; [`settle_observed`] settles
//! steps in doubt from what their instrument reported when read back (carrying on, done, partly done, never done,
//! or still in doubt); [`settle_reconciled`] settles what is still in doubt by policy once its instrument is
//! reconciled; [`fail_stranded_steps`] fails steps that no working instrument or usable place can serve (or, by
//! default, lets those that wait for a blocked place wait for a person); [`conclude_experiments`] tells the learner
//! and carries failed experiments' vessels back to the rack. [`settle_draws`] frees the valve a dispense claimed and
//! gives back a draw that never acted, and [`release_reservations`] lets go of what concluded experiments reserved.
//!
//! One file because the file a system lives in says when it runs: these are the *Conclude* set's systems, in its
//! order; what they share lives in `systems/mod.rs`, and the stock's bookkeeping in `schedule::stock`.

use std::collections::HashSet;

use bevy_ecs::prelude::*;
use devices::{Outcome, Place};
use protocols::{Action, Destination, InstrumentRef};

use super::dispatch::task_for;
use super::{
    condition_after, position_usable, record_step, release_dependents, skip_unstarted, skip_unstarted_entities,
    step_timeout, still_running,
};
use crate::record::{RecordEvent, StepRow};
use crate::schedule::bridge::{Bridge, Dispatch, LearnerRequest};
use crate::schedule::components::CleaningUp;
use crate::schedule::components::{
    Attempts, Availability, Dependents, Experiment, ExperimentState, Hold, Holds, InDoubt, Instrument, Readings, Step,
    StepState, Unrestored, Vessel, Work,
};
use crate::schedule::messages::{ExperimentConcluded, Observed, Reconciled, StepEnded};
use crate::schedule::resources::{
    Best, CampaignState, DeckState, Estimates, LabClock, Policy, ReadyIndex, Record, Schedule, Source,
};
use crate::schedule::resources::{BlockedPolicy, UnknownPolicy, Varied};
use crate::schedule::settle::{Told, tell_actual};
use crate::schedule::stock::Stock;

/// Applies finished steps.
pub fn apply_step_results(
    mut ended: MessageReader<StepEnded>,
    mut concluded: MessageWriter<ExperimentConcluded>,
    mut steps: Query<(Entity, &Step, &mut StepState)>,
    attempts: Query<&mut Attempts>,
    dependents: Query<&Dependents>,
    mut instruments: Query<(&Instrument, &mut Availability, &mut Holds, Has<Unrestored>)>,
    mut experiments: Query<(&mut Experiment, &mut ExperimentState, Option<&mut Vessel>, &mut Readings)>,
    doubts: Query<&InDoubt>,
    mut deck: ResMut<DeckState>,
    mut estimates: ResMut<Estimates>,
    mut schedule: ResMut<Schedule>,
    mut state: ResMut<CampaignState>,
    mut index: ResMut<ReadyIndex>,
    policy: Res<Policy>,
    record: Res<Record>,
    mut commands: Commands,
) {
    for ev in ended.read() {
        let Ok((_, step, st)) = steps.get(ev.step) else { continue };
        let StepState::Running { instrument, destination, started } = st.clone() else { continue };
        let step = step.clone();
        let mut instrument_name = None;
        if let Ok((inst, mut avail, mut holds, unrestored)) = instruments.get_mut(instrument) {
            instrument_name = Some(inst.name.clone());
            match &ev.result {
                Err(e) if e.instrument_fault => {
                    *avail = Availability::Offline { reason: e.message.clone() };
                    record.recorder.send(RecordEvent::say(
                        record.campaign,
                        ev.ended,
                        "error",
                        Some(&inst.name),
                        format!("{} is offline for the rest of the campaign: {}", inst.name, e.message),
                    ));
                }
                Err(e) if e.may_have_acted && !step.work.repeat_safe() => {
                    *avail = Availability::Unknown { reason: e.message.clone() };
                }
                // An instrument that was read back instead of initialized after the controller restarted is
                // restored (safe state, identify, initialize) before anything else runs on it.
                _ if unrestored => {
                    *avail = Availability::Unknown {
                        reason: "not initialized since the controller restarted; it is restored before other work"
                            .to_owned(),
                    };
                }
                _ => *avail = Availability::Idle,
            }
            // `keep`: the instrument is kept for the experiment's next step that can run on it and has yet to start.
            if ev.result.is_ok()
                && step.rules.keep
                && let Ok((exp, ..)) = experiments.get(step.experiment)
            {
                let next = exp.steps.iter().find_map(|&e| {
                    let (_, s, st) = steps.get(e).ok()?;
                    (s.index > step.index && st.is_pending() && inst.matches(&s.on)).then_some((e, s.estimate))
                });
                // A promise already made to another step with a maximum wait (of another experiment, or a later step of
                // this one) comes first: keeping the instrument for the next step would break it.
                let promised = holds.0.iter().any(|h| !h.kept && next.is_none_or(|(n, _)| h.step != n));
                match next {
                    Some(_) if promised => record.recorder.send(RecordEvent::say(
                        record.campaign,
                        ev.ended,
                        "warning",
                        Some(&inst.name),
                        format!(
                            "`{}` asked to keep {} for its experiment, but the keep was let go: {} is promised to \
                             another step that must start within its maximum wait",
                            step.name, inst.name, inst.name
                        ),
                    )),
                    Some((next, estimate)) => {
                        holds.0.push(Hold { step: next, from: ev.ended, duration: estimate, kept: true });
                    }
                    None => {}
                }
            }
            if let Some(condition) = condition_after(step.work.action(), ev.ended) {
                commands.entity(instrument).insert(condition);
            }
            if ev.result.is_ok() {
                let surprised = estimates.observe(step.work.name(), &inst.name, step.estimate, ev.ended - ev.started);
                if surprised && matches!(*policy, Policy::Planned { replan: true, .. }) {
                    schedule.dirty = true;
                }
            }
        }
        let Ok((mut exp, mut exp_state, mut vessel, mut readings)) = experiments.get_mut(step.experiment) else {
            continue;
        };
        match &ev.result {
            Ok(outcome) => {
                if let Ok((_, _, mut st)) = steps.get_mut(ev.step) {
                    *st = StepState::Succeeded;
                }
                record.recorder.send(RecordEvent::StepStatus {
                    step: step.id,
                    at: ev.ended,
                    status: "succeeded".into(),
                    instrument: instrument_name,
                    task: None,
                    attempt: None,
                    outcome: serde_json::to_string(outcome).ok(),
                    error: None,
                });
                if let (Some(Action::Transfer { .. }), Some(dest), Some(v)) =
                    (step.work.action(), &destination, vessel.as_mut())
                {
                    if let Place::Position(p) = &v.at {
                        deck.occupant.remove(p);
                    }
                    if let Place::Position(p) = dest {
                        deck.reserved.remove(p);
                        deck.occupant.insert(p.clone(), step.experiment);
                    }
                    v.at = dest.clone();
                    // A transfer that was in doubt and carried on (its vessel read back in the gripper) ends with
                    // the vessel's place known again.
                    v.known = true;
                }
                if let (Some(output), Outcome::Measured { value, unit }) =
                    (step.work.action().and_then(Action::output), outcome)
                {
                    readings.0.insert(output.to_owned(), *value);
                    record.recorder.send(RecordEvent::Measurement {
                        experiment: exp.id,
                        step: step.id,
                        name: output.to_owned(),
                        value: *value,
                        unit: (*unit).to_owned(),
                        at: ev.ended,
                    });
                }
                exp.unfinished = exp.unfinished.saturating_sub(1);
                if *exp_state == ExperimentState::Running {
                    release_dependents(ev.step, ev.ended, &mut steps, &dependents, &record, &mut index.fresh);
                    if exp.unfinished == 0 {
                        *exp_state = ExperimentState::Succeeded;
                        concluded.write(ExperimentConcluded { experiment: step.experiment });
                    }
                } else if still_running(&exp.steps, &steps) == 0 {
                    concluded.write(ExperimentConcluded { experiment: step.experiment });
                }
            }
            Err(e) => {
                schedule.dirty = true;
                let tries = attempts.get(ev.step).map_or(1, |a| a.0);
                let retry =
                    step.work.repeat_safe() && tries <= step.rules.retry && *exp_state == ExperimentState::Running;
                if retry {
                    if let Ok((_, _, mut st)) = steps.get_mut(ev.step) {
                        *st = StepState::Ready { since: ev.ended, not_before: ev.ended, deadline: None };
                    }
                    index.fresh.push(ev.step);
                    record_step(
                        &record,
                        step.id,
                        ev.ended,
                        "ready",
                        instrument_name.as_deref(),
                        Some(format!(
                            "attempt {tries} failed: {}; retrying (the operation is safe to repeat)",
                            e.message
                        )),
                    );
                    continue;
                }
                if e.may_have_acted
                    && !step.work.repeat_safe()
                    && !e.instrument_fault
                    && *exp_state == ExperimentState::Running
                {
                    // It may have acted: never repeat it, and hold the experiment until someone or something
                    // establishes what happened. Its instrument is read back if it can be, with the task it was
                    // sent (a continuation keeps the task it was carrying on).
                    if let Ok((_, _, mut st)) = steps.get_mut(ev.step) {
                        *st = StepState::Unknown { instrument: Some(instrument) };
                    }
                    let doubt = match doubts.get(ev.step) {
                        Ok(d) => Some(InDoubt { started, exchanges: None, before: None, ..d.clone() }),
                        Err(_) => step.work.action().map(|a| {
                            let task = task_for(a, vessel.as_ref().map(|v| &v.at), destination.clone());
                            InDoubt { asked: task.clone(), task, started, exchanges: None, before: None, carried_on: 0 }
                        }),
                    };
                    if let Some(doubt) = doubt {
                        commands.entity(ev.step).insert(doubt);
                    }
                    state.unknown += 1;
                    if let (Some(Action::Transfer { .. }), Some(v)) = (step.work.action(), vessel.as_mut()) {
                        v.known = false;
                        if let Some(Place::Position(p)) = &destination {
                            deck.reserved.remove(p);
                            deck.occupant.insert(p.clone(), step.experiment);
                        }
                    }
                    record_step(
                        &record,
                        step.id,
                        ev.ended,
                        "unknown",
                        instrument_name.as_deref(),
                        Some(format!(
                            "{}; the step may have acted, so it is not repeated: it waits for reconciliation",
                            e.message
                        )),
                    );
                    continue;
                }
                if let Ok((_, _, mut st)) = steps.get_mut(ev.step) {
                    *st = StepState::Failed;
                }
                // A failed transfer settles the place it was taking the vessel to. If it never moved, the vessel
                // still stands where it was and the place is released; if it may have moved, the vessel may stand at
                // either end (or be anywhere between), so both stay held for it and its whereabouts are no longer
                // known: nothing will carry it back, and a person clears the places once they have looked.
                if let (Some(Action::Transfer { .. }), Some(Place::Position(dest))) = (step.work.action(), &destination)
                {
                    if e.may_have_acted {
                        deck.reserved.remove(dest);
                        deck.occupant.insert(dest.clone(), step.experiment);
                        if let Some(v) = vessel.as_mut() {
                            v.known = false;
                        }
                    } else if deck.reserved.get(dest) == Some(&step.experiment) {
                        deck.reserved.remove(dest);
                    }
                }
                let note = if e.may_have_acted {
                    " The instrument may have acted before failing; the step is not repeated."
                } else {
                    ""
                };
                record_step(
                    &record,
                    step.id,
                    ev.ended,
                    "failed",
                    instrument_name.as_deref(),
                    Some(format!("{}{note}", e.message)),
                );
                if *exp_state == ExperimentState::Running {
                    *exp_state = ExperimentState::Failed(format!("step `{}` failed: {}", step.name, e.message));
                    skip_unstarted_entities(
                        &exp.steps,
                        &mut steps,
                        &record,
                        ev.ended,
                        "an earlier step of this experiment failed",
                    );
                }
                if still_running(&exp.steps, &steps) == 0 {
                    concluded.write(ExperimentConcluded { experiment: step.experiment });
                }
            }
        }
    }
}

/// How many times a step in doubt is carried on after being read back before it is left to the policy: a
/// continuation that fails puts the step in doubt again, and an instrument that keeps failing must not loop.
const CARRY_ON_AT_MOST: u32 = 2;

/// Settles the steps in doubt on instruments that were read back, from what each reported: the instrument's driver
/// says whether the step carries on (a plate still heating: its continuation is sent, its intent recorded first),
/// is done (with its outcome, and for a transfer where the vessel stands), came out other than asked (a partial
/// stroke: the learner is told the actual value if it can be), never happened (it runs again), or is still in doubt
/// (a contradiction is a warning naming both sides). Every decision is recorded with what the instrument reported
/// and the exchanges it rests on. An instrument that carries nothing on is then reconciled (safe state, identify,
/// initialize), and what is still in doubt on it goes to the policy.
pub fn settle_observed(
    mut observed: MessageReader<Observed>,
    mut instruments: Query<(&Instrument, &mut Availability)>,
    mut steps: Query<(Entity, &Step, &mut StepState)>,
    mut doubts: Query<&mut InDoubt>,
    mut experiments: Query<(&mut Experiment, &mut ExperimentState, Option<&mut Vessel>, Has<CleaningUp>)>,
    mut attempts: Query<&mut Attempts>,
    dependents: Query<&Dependents>,
    mut deck: ResMut<DeckState>,
    mut state: ResMut<CampaignState>,
    mut index: ResMut<ReadyIndex>,
    mut concluded: MessageWriter<ExperimentConcluded>,
    source: Res<Source>,
    varied: Option<Res<Varied>>,
    bridge: Res<Bridge>,
    record: Res<Record>,
    clock: Res<LabClock>,
) {
    for o in observed.read() {
        let now = clock.now();
        let Ok((inst, _)) = instruments.get(o.instrument) else { continue };
        let name = inst.name.clone();
        let in_doubt: Vec<Entity> = steps
            .iter()
            .filter(|(e, _, st)| {
                matches!(st, StepState::Unknown { instrument: Some(i) } if *i == o.instrument) && doubts.contains(*e)
            })
            .map(|(e, _, _)| e)
            .collect();
        let mut carrying_on = None;
        for e in in_doubt {
            let (step, doubt) = match (steps.get(e), doubts.get(e)) {
                (Ok((_, step, _)), Ok(d)) => (step.clone(), d.clone()),
                _ => continue,
            };
            let settled = |decision: &str, observed: Option<String>, reason: String, evidence: Vec<i64>, actual| {
                RecordEvent::Settled {
                    step: step.id,
                    at: now,
                    instrument: name.clone(),
                    decision: decision.to_owned(),
                    observed,
                    reason,
                    evidence,
                    read_from: o.from,
                    actual,
                }
            };
            let reading = match &o.result {
                Ok(reading) => reading,
                Err(e) => {
                    record.recorder.send(settled(
                        "unanswered",
                        None,
                        format!("{name} could not be read back ({e}); the step stays in doubt"),
                        Vec::new(),
                        None,
                    ));
                    continue;
                }
            };
            let verdict = match &*source {
                Source::Campaign(c) => match c.lab.instrument(&name) {
                    Some(spec) => devices::drivers::settle(
                        spec,
                        clock.0.scale(),
                        &devices::readback::Doubt {
                            task: &doubt.task,
                            asked: &doubt.asked,
                            started: doubt.started,
                            exchanges: doubt.exchanges.as_deref(),
                            before: doubt.before.as_deref(),
                        },
                        reading,
                        now,
                    ),
                    None => continue,
                },
                Source::Jobs(_) => continue,
            };
            let Ok((mut exp, mut exp_state, mut vessel, cleaning)) = experiments.get_mut(step.experiment) else {
                continue;
            };
            // An experiment that failed meanwhile (another of its steps) carries nothing on and runs nothing again,
            // except a vessel's way back to the rack; what the instrument still does is stopped when it is restored.
            // A vessel in the gripper is put down all the same: the gantry cannot be restored holding it.
            let holding = matches!(
                &verdict.settlement,
                devices::readback::Settlement::Continue { task: devices::Task::Deliver { .. }, .. }
            );
            let going_on = *exp_state == ExperimentState::Running || cleaning || holding;
            let mut settlement = verdict.settlement;
            match &settlement {
                devices::readback::Settlement::Continue { why, .. }
                    if doubt.carried_on >= CARRY_ON_AT_MOST || carrying_on.is_some() =>
                {
                    settlement = devices::readback::Settlement::InDoubt {
                        why: format!("{why}; but it was carried on {} times already", doubt.carried_on),
                        contradiction: None,
                    };
                }
                devices::readback::Settlement::Continue { why, .. }
                | devices::readback::Settlement::NotDone { why, .. }
                    if !going_on =>
                {
                    settlement = devices::readback::Settlement::InDoubt {
                        why: format!("{why}; but its experiment has failed meanwhile, so nothing of it goes on"),
                        contradiction: None,
                    };
                }
                _ => {}
            }
            let label = settlement.label();
            let observed_text = Some(reading.to_string());
            use devices::readback::Settlement as S;
            match settlement {
                S::Continue { task, why } => {
                    record.recorder.send(settled(label, observed_text, why, verdict.evidence, None));
                    state.unknown = state.unknown.saturating_sub(1);
                    let destination = match &task {
                        devices::Task::Deliver { to } => Some(to.clone()),
                        _ => None,
                    };
                    if let Ok((_, _, mut st)) = steps.get_mut(e) {
                        *st = StepState::Running { instrument: o.instrument, destination, started: now };
                    }
                    if let Ok(mut d) = doubts.get_mut(e) {
                        d.task = task.clone();
                        d.started = now;
                        d.exchanges = None;
                        d.before = None;
                        d.carried_on += 1;
                    }
                    let attempt = attempts.get_mut(e).map(|mut a| {
                        a.0 += 1;
                        a.0
                    });
                    record.recorder.send(RecordEvent::StepStatus {
                        step: step.id,
                        at: now,
                        status: "running".into(),
                        instrument: Some(name.clone()),
                        task: serde_json::to_string(&task).ok(),
                        attempt: attempt.ok(),
                        outcome: None,
                        error: None,
                    });
                    // What the plate was left in before is no guide to a heat that carries on where it stood.
                    let timeout = step_timeout(&step, &source, &name, None, Some(&task), now);
                    // What carries on is a hold or a delivery; a pump's stroke is settled done, partial or never sent,
                    // so no valve is turned for it.
                    carrying_on = Some((
                        e,
                        Dispatch {
                            step: e,
                            step_id: step.id,
                            task: Some(task),
                            estimate: step.estimate,
                            timeout,
                            turn: None,
                            prime: None,
                        },
                    ));
                }
                S::Done { outcome, why, place, actual } => {
                    let told = actual.map(|a| match &*source {
                        Source::Campaign(c) => {
                            tell_actual(&c.protocol, varied.as_deref().map(|v| &v.0), step.index, &exp.values, &a)
                        }
                        Source::Jobs(_) => Told::OffProtocol("a workload has no parameters".to_owned()),
                    });
                    let actual_row = match &told {
                        Some(Told::Parameter { parameter, value }) => Some((exp.id, parameter.clone(), *value)),
                        _ => None,
                    };
                    record.recorder.send(settled(label, observed_text, why.clone(), verdict.evidence, actual_row));
                    state.unknown = state.unknown.saturating_sub(1);
                    if let (Some(place), Some(v)) = (place, vessel.as_mut()) {
                        place_vessel(&mut deck, step.experiment, v, place);
                    }
                    if let Some(Told::OffProtocol(off)) = told {
                        let why = format!("{why}; {off}, so the experiment no longer matches its protocol");
                        if let Ok((_, _, mut st)) = steps.get_mut(e) {
                            *st = StepState::Failed;
                        }
                        record_step(&record, step.id, now, "failed", Some(&name), Some(why.clone()));
                        if *exp_state == ExperimentState::Running {
                            *exp_state = ExperimentState::Failed(format!("step `{}`: {why}", step.name));
                            skip_unstarted_entities(
                                &exp.steps,
                                &mut steps,
                                &record,
                                now,
                                "an earlier step came out other than asked",
                            );
                        }
                        if still_running(&exp.steps, &steps) == 0 {
                            concluded.write(ExperimentConcluded { experiment: step.experiment });
                        }
                        continue;
                    }
                    if let Some(Told::Parameter { parameter, value }) = told {
                        exp.values.insert(parameter, value);
                    }
                    if let Ok((_, _, mut st)) = steps.get_mut(e) {
                        *st = StepState::Succeeded;
                    }
                    record.recorder.send(RecordEvent::StepStatus {
                        step: step.id,
                        at: now,
                        status: "succeeded".into(),
                        instrument: Some(name.clone()),
                        task: None,
                        attempt: None,
                        outcome: serde_json::to_string(&outcome).ok(),
                        error: None,
                    });
                    exp.unfinished = exp.unfinished.saturating_sub(1);
                    if *exp_state == ExperimentState::Running {
                        release_dependents(e, now, &mut steps, &dependents, &record, &mut index.fresh);
                        if exp.unfinished == 0 {
                            *exp_state = ExperimentState::Succeeded;
                            concluded.write(ExperimentConcluded { experiment: step.experiment });
                        }
                    } else if still_running(&exp.steps, &steps) == 0 {
                        concluded.write(ExperimentConcluded { experiment: step.experiment });
                    }
                }
                S::NotDone { why, place } => {
                    record.recorder.send(settled(label, observed_text, why.clone(), verdict.evidence, None));
                    state.unknown = state.unknown.saturating_sub(1);
                    if let (Some(place), Some(v)) = (place, vessel.as_mut()) {
                        place_vessel(&mut deck, step.experiment, v, place);
                    }
                    if let Ok((_, _, mut st)) = steps.get_mut(e) {
                        *st = StepState::Ready { since: now, not_before: now, deadline: None };
                    }
                    index.fresh.push(e);
                    record_step(&record, step.id, now, "ready", None, Some(format!("read back: {why}; it runs")));
                }
                S::InDoubt { why, contradiction } => {
                    if let Some(both) = &contradiction {
                        record.recorder.send(RecordEvent::say(
                            record.campaign,
                            now,
                            "warning",
                            Some(&name),
                            format!(
                                "{name} contradicts the record for step `{}` of experiment #{}: {both}; the step is \
                                 not settled as done",
                                step.name, exp.seq
                            ),
                        ));
                    }
                    record.recorder.send(settled(label, observed_text, why, verdict.evidence, None));
                }
            }
        }
        match carrying_on {
            Some((step, dispatch)) => {
                if let Ok((_, mut avail)) = instruments.get_mut(o.instrument) {
                    *avail = Availability::Busy { step };
                }
                bridge.executor.dispatch(o.instrument, dispatch);
            }
            // Nothing carries on: the instrument is put in its safe state and initialized, and whatever is still in
            // doubt on it goes to the policy when that comes back.
            None => bridge.executor.reconcile(o.instrument),
        }
    }
}

/// Records that the vessel of `experiment` stands at `place`: the places it may have stood at while it was in doubt
/// are freed, and the one it stands at is held for it.
fn place_vessel(deck: &mut DeckState, experiment: Entity, vessel: &mut Vessel, place: Place) {
    deck.occupant.retain(|_, e| *e != experiment);
    deck.reserved.retain(|_, e| *e != experiment);
    if let Place::Position(p) = &place {
        deck.occupant.insert(p.clone(), experiment);
    }
    vessel.at = place;
    vessel.known = true;
}

/// Handles instruments that came back from reconciliation, and settles the unknown steps on them by policy.
pub fn settle_reconciled(
    mut commands: Commands,
    mut reconciled: MessageReader<Reconciled>,
    mut instruments: Query<(&Instrument, &mut Availability)>,
    mut steps: Query<(Entity, &Step, &mut StepState)>,
    mut experiments: Query<(Entity, &mut Experiment, &mut ExperimentState)>,
    mut concluded: MessageWriter<ExperimentConcluded>,
    mut state: ResMut<CampaignState>,
    settle: Res<UnknownPolicy>,
    record: Res<Record>,
    clock: Res<LabClock>,
) {
    for r in reconciled.read() {
        let now = clock.now();
        let Ok((inst, mut avail)) = instruments.get_mut(r.instrument) else { continue };
        let name = inst.name.clone();
        match &r.result {
            Ok(()) => {
                *avail = Availability::Idle;
                commands.entity(r.instrument).remove::<Unrestored>();
                record.recorder.send(RecordEvent::say(
                    record.campaign,
                    now,
                    "warning",
                    Some(&name),
                    format!("{name} reconciled: put in its safe state, identified and re-initialized"),
                ));
            }
            Err(e) => {
                *avail = Availability::Offline { reason: format!("could not be reconciled: {e}") };
                record.recorder.send(RecordEvent::say(
                    record.campaign,
                    now,
                    "error",
                    Some(&name),
                    format!("{name} could not be reconciled and is offline: {e}"),
                ));
            }
        }
        if *settle != UnknownPolicy::Fail && r.result.is_ok() {
            continue;
        }
        // Steps left unknown on this instrument: their outcome cannot be established automatically, so the
        // experiment's result cannot be trusted.
        let unknown: Vec<(Entity, Step)> = steps
            .iter()
            .filter(|(_, _, st)| matches!(st, StepState::Unknown { instrument: Some(i) } if *i == r.instrument))
            .map(|(e, s, _)| (e, s.clone()))
            .collect();
        for (e, s) in unknown {
            if let Ok((_, _, mut st)) = steps.get_mut(e) {
                *st = StepState::Failed;
            }
            state.unknown = state.unknown.saturating_sub(1);
            record_step(
                &record,
                s.id,
                now,
                "failed",
                Some(&name),
                Some(format!(
                    "outcome unknown after {name} was reconciled; the experiment is not trusted (policy: fail unknown steps)"
                )),
            );
            if let Ok((exp_entity, exp, mut exp_state)) = experiments.get_mut(s.experiment) {
                if *exp_state == ExperimentState::Running {
                    *exp_state =
                        ExperimentState::Failed(format!("step `{}` may have acted but its outcome is unknown", s.name));
                    skip_unstarted_entities(
                        &exp.steps,
                        &mut steps,
                        &record,
                        now,
                        "an earlier step's outcome is unknown",
                    );
                }
                if still_running(&exp.steps, &steps) == 0 {
                    concluded.write(ExperimentConcluded { experiment: exp_entity });
                }
            }
        }
    }
}

/// Fails ready steps that no working instrument can ever run (every candidate is offline), so a broken
/// instrument stops its experiments with a clear message instead of leaving them waiting forever.
pub fn fail_stranded_steps(
    mut steps: Query<(Entity, &Step, &mut StepState)>,
    instruments: Query<(&Instrument, &Availability)>,
    mut experiments: Query<(Entity, &Experiment, &mut ExperimentState, Option<&Vessel>, Has<CleaningUp>)>,
    source: Res<Source>,
    deck: Res<DeckState>,
    mut concluded: MessageWriter<ExperimentConcluded>,
    record: Res<Record>,
    clock: Res<LabClock>,
    blocked_places: Res<BlockedPolicy>,
    mut waiting: Local<HashSet<Entity>>,
) {
    let offline: HashSet<&str> = instruments
        .iter()
        .filter(|(_, a)| matches!(a, Availability::Offline { .. }))
        .map(|(i, _)| i.name.as_str())
        .collect();
    // Places held by a vessel whose experiment is gone (a vessel that could not be returned, or whose place is
    // unknown) stay blocked until an operator clears them.
    let dead: HashSet<&str> = deck
        .occupant
        .iter()
        .chain(deck.reserved.iter())
        .filter(|(_, e)| !experiments.contains(**e))
        .map(|(p, _)| p.as_str())
        .collect();
    if offline.is_empty() && dead.is_empty() {
        return;
    }
    for (entity, exp, mut exp_state, vessel, cleaning) in &mut experiments {
        if cleaning {
            // A failed experiment's vessel on its way back to the rack: if nothing can carry it any more, it stays
            // where it is (its place stays blocked until someone clears it) and the cleanup ends, rather than the
            // campaign waiting for a carry that can never happen.
            for &s in &exp.steps {
                let Ok((_, step, mut st)) = steps.get_mut(s) else { continue };
                let carried = instruments
                    .iter()
                    .any(|(inst, avail)| !matches!(avail, Availability::Offline { .. }) && inst.matches(&step.on));
                if matches!(*st, StepState::Ready { .. }) && !carried {
                    *st = StepState::Failed;
                    let why = format!(
                        "step `{}` cannot run: nothing that could carry the vessel back is working; it stays where it \
                         is",
                        step.name
                    );
                    record_step(&record, step.id, clock.now(), "failed", None, Some(why));
                    concluded.write(ExperimentConcluded { experiment: entity });
                }
            }
            continue;
        }
        if *exp_state != ExperimentState::Running {
            continue;
        }
        let mut stranded: Option<String> = None;
        for &s in &exp.steps {
            let Ok((_, step, st)) = steps.get(s) else { continue };
            if !matches!(st, StepState::Ready { .. }) {
                continue;
            }
            let usable = instruments.iter().any(|(inst, avail)| {
                !matches!(avail, Availability::Offline { .. })
                    && inst.matches(&step.on)
                    && (!step.work.acts_on_vessel() || vessel.is_some_and(|v| inst.is_at(&v.at)))
            });
            if !usable {
                let who = match &step.on {
                    InstrumentRef::Kind(k) => format!("every {} that could run it is offline", k.name()),
                    InstrumentRef::Named(n) => format!("`{n}` is offline"),
                };
                stranded = Some(format!("step `{}` cannot run: {who}", step.name));
                break;
            }
            // For a transfer to the deck: the places it could take the vessel to whose instruments work, and which
            // of those are blocked. It can run if one of them is free.
            let places: Option<(Vec<&str>, Vec<&str>)> = match (step.work.action(), &*source) {
                (Some(Action::Transfer { to: Destination::Rack }), _) => None,
                (Some(Action::Transfer { .. }), Source::Campaign(c)) => {
                    let working: Vec<&str> = c
                        .transfer_positions
                        .get(&step.index)
                        .map(|ps| ps.iter().filter(|p| position_usable(c, p, &offline)).map(String::as_str).collect())
                        .unwrap_or_default();
                    let blocked = working.iter().copied().filter(|p| dead.contains(p)).collect();
                    Some((working, blocked))
                }
                _ => None,
            };
            let reachable = places.as_ref().is_none_or(|(working, blocked)| working.len() > blocked.len());
            // A step whose only places are blocked by a lost vessel waits for a person to clear them, and the record
            // says which and how, so no experiment is spent on a place nobody has looked at; with `--blocked fail` it
            // fails like any other it cannot run.
            if let Some((working, blocked)) = &places
                && !reachable
                && !working.is_empty()
                && *blocked_places == BlockedPolicy::Wait
            {
                if waiting.insert(s) {
                    record.recorder.send(RecordEvent::say(
                        record.campaign,
                        clock.now(),
                        "warning",
                        None,
                        format!(
                            "experiment #{} waits: `{}` can take its vessel only to {}, blocked by a vessel the \
                             controller lost track of; look, remove it, then `lab clear PLACE` for each",
                            exp.seq,
                            step.name,
                            quoted_places(blocked)
                        ),
                    ));
                }
                continue;
            }
            if !reachable {
                stranded = Some(format!(
                    "step `{}` cannot run: every place it could take the vessel to has an offline instrument or a \
                     vessel that could not be removed",
                    step.name
                ));
                break;
            }
        }
        if let Some(why) = stranded {
            let now = clock.now();
            *exp_state = ExperimentState::Failed(why.clone());
            for &s in &exp.steps {
                if let Ok((_, step, mut st)) = steps.get_mut(s)
                    && matches!(*st, StepState::Ready { .. })
                {
                    *st = StepState::Failed;
                    record_step(&record, step.id, now, "failed", None, Some(why.clone()));
                }
            }
            if skip_unstarted(exp, &mut steps, &record, now, "an earlier step of this experiment failed") == 0 {
                concluded.write(ExperimentConcluded { experiment: entity });
            }
        }
    }
}

/// Records finished experiments, tells the learner, and clears them from the world.
pub fn conclude_experiments(
    mut concluded: MessageReader<ExperimentConcluded>,
    mut experiments: Query<(&mut Experiment, &ExperimentState, &Readings, Option<&Vessel>, Has<CleaningUp>)>,
    mut state: ResMut<CampaignState>,
    source: Res<Source>,
    bridge: Res<Bridge>,
    record: Res<Record>,
    clock: Res<LabClock>,
    mut index: ResMut<ReadyIndex>,
    deck: Res<DeckState>,
    mut commands: Commands,
) {
    let mut seen = HashSet::new();
    for c in concluded.read() {
        if !seen.insert(c.experiment) {
            continue;
        }
        let Ok((mut exp, exp_state, readings, vessel, cleaning)) = experiments.get_mut(c.experiment) else { continue };
        let now = clock.now();
        if cleaning {
            // The failed experiment's vessel is back in the rack (or could not be moved, which the record says).
            state.cleanups = state.cleanups.saturating_sub(1);
            for &s in &exp.steps {
                commands.entity(s).despawn();
            }
            say_places_left_blocked(&deck, c.experiment, exp.seq, &record, now);
            commands.entity(c.experiment).despawn();
            continue;
        }
        let objectives: &[String] = match &*source {
            Source::Campaign(cs) => &cs.objectives,
            Source::Jobs(_) => &[],
        };
        let missing = objectives.iter().find(|o| !readings.0.get(*o).is_some_and(|v| v.is_finite()));
        let (objective, error) = match (exp_state, missing) {
            (ExperimentState::Succeeded, None) => (objectives.first().and_then(|o| readings.0.get(o)).copied(), None),
            (ExperimentState::Succeeded, Some(name)) => (None, Some(format!("no reading of `{name}` was taken"))),
            (ExperimentState::Failed(why), _) => (None, Some(why.clone())),
            (ExperimentState::Running, _) => continue,
        };
        record.recorder.send(RecordEvent::ExperimentFinished { id: exp.id, at: now, objective, error: error.clone() });
        if let Some(learner) = &bridge.learner {
            let outputs = error.is_none().then(|| readings.0.clone());
            let _ = learner.send(LearnerRequest::Tell(experiments::Outcome { values: exp.values.clone(), outputs }));
            state.told.push(exp.id);
        }
        state.running = state.running.saturating_sub(1);
        if error.is_some() {
            state.failed += 1;
        } else {
            state.succeeded += 1;
        }
        if let (Some(v), Source::Campaign(cs)) = (objective, &*source) {
            let better = state.best.as_ref().is_none_or(|b| match cs.direction {
                experiments::Direction::Maximize => v > b.objective,
                experiments::Direction::Minimize => v < b.objective,
            });
            if better {
                state.best = Some(Best { seq: exp.seq, values: exp.values.clone(), objective: v });
            }
        }
        for &s in &exp.steps {
            commands.entity(s).despawn();
        }
        // A failed experiment's vessel, left at a deck place, would block that place for the rest of the campaign:
        // it goes back to its rack slot first (not after an abort, when nothing more may move).
        let stranded_vessel = vessel.filter(|v| v.known && matches!(v.at, Place::Position(_)));
        if let (Some(_), Some(slot), false, Source::Campaign(_)) = (stranded_vessel, exp.slot, state.aborted, &*source)
        {
            let id = state.next_step;
            state.next_step += 1;
            let step = commands
                .spawn((
                    return_vessel_step(c.experiment, id, &return_vessel_name(0)),
                    StepState::Ready { since: now, not_before: now, deadline: None },
                    Attempts(0),
                    Dependents::default(),
                ))
                .id();
            let _ = slot;
            exp.steps = vec![step];
            commands.entity(c.experiment).insert(CleaningUp);
            index.fresh.push(step);
            state.cleanups += 1;
            record.recorder.send(RecordEvent::StepAdded {
                experiment: exp.id,
                at: now,
                step: return_vessel_row(id, &return_vessel_name(0)),
                why:
                    "the experiment failed with its vessel on the deck; it goes back to its rack slot to free the place"
                        .to_owned(),
            });
            continue;
        }
        say_places_left_blocked(&deck, c.experiment, exp.seq, &record, now);
        commands.entity(c.experiment).despawn();
    }
}

/// Says which deck places an experiment that is going away leaves blocked: places its vessel stands at or may stand
/// at, which nothing will carry it from (its whereabouts were lost, or carrying it back failed). They stay blocked
/// until a person has looked and run `lab clear`.
fn say_places_left_blocked(deck: &DeckState, experiment: Entity, seq: usize, record: &Record, now: f64) {
    let mut places: Vec<&str> = deck
        .occupant
        .iter()
        .chain(deck.reserved.iter())
        .filter(|(_, e)| **e == experiment)
        .map(|(p, _)| p.as_str())
        .collect();
    if places.is_empty() {
        return;
    }
    places.sort_unstable();
    places.dedup();
    record.recorder.send(RecordEvent::say(record.campaign, now, "warning", None, lost_vessel_warning(seq, &places)));
}

/// The record's warning that a lost vessel blocks `places`. `lab status` reads the places back from it (with the
/// operator's "`PLACE` cleared by ..." that frees one), so this is the one place its wording is made.
pub fn lost_vessel_warning(seq: usize, places: &[&str]) -> String {
    format!(
        "the vessel of experiment #{seq} may still stand at {}; blocked until someone looks, removes it and runs \
         `lab clear PLACE` for each",
        quoted_places(places)
    )
}

/// Deck places as the record's messages name them: `a` or `b`.
fn quoted_places(places: &[&str]) -> String {
    places.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(" or ")
}

/// The step `name` that carries a failed experiment's vessel back to its rack slot (`return_vessel`, or
/// `return_vessel_2` and so on when an earlier one was cut short by a stop of the controller: step names are unique
/// within an experiment).
pub fn return_vessel_step(experiment: Entity, id: i64, name: &str) -> Step {
    Step {
        id,
        experiment,
        index: usize::MAX,
        name: name.to_owned(),
        on: InstrumentRef::Kind(protocols::InstrumentKind::Gantry),
        work: Work::Action(Action::Transfer { to: Destination::Rack }),
        rules: protocols::StepRules::default(),
        estimate: 30.0,
        tail: 30.0,
        after: Vec::new(),
        leads_within: false,
    }
}

/// The record's row for a [`return_vessel_step`].
pub fn return_vessel_row(id: i64, name: &str) -> StepRow {
    StepRow {
        id,
        step: name.to_owned(),
        op: "Transfer".to_owned(),
        action: serde_json::to_string(&Action::Transfer { to: Destination::Rack }).unwrap_or_default(),
        after: Vec::new(),
        repeat_safe: false,
        ready: true,
    }
}

/// The name of an experiment's return step after `earlier` ones: `return_vessel`, then `return_vessel_2`, and so on
/// (a step's name is unique within its experiment).
pub fn return_vessel_name(earlier: usize) -> String {
    match earlier {
        0 => "return_vessel".to_owned(),
        n => format!("return_vessel_{}", n + 1),
    }
}

/// Settles the bottles of finished dispenses: the valve a dispense claimed is free again; a dispense that failed
/// before it could act gives its charge back (with its prime's) and leaves the line as it was; one whose outcome is
/// unknown stays charged in full, the record says the bottle may hold more than the controller counts, and what
/// the line holds is not known (the next dispense through it primes). One that succeeded left its reagent in the
/// line.
pub fn settle_draws(
    mut ended: MessageReader<StepEnded>,
    mut stock: ResMut<Stock>,
    mut instruments: Query<(&Instrument, &mut Availability)>,
    steps: Query<&Step>,
    experiments: Query<&Experiment>,
    record: Res<Record>,
) {
    for ev in ended.read() {
        let Some(draw) = stock.draws.remove(&ev.step) else { continue };
        if let Some(v) = draw.valve
            && let Ok((_, mut a)) = instruments.get_mut(v)
            && *a == (Availability::Busy { step: ev.step })
        {
            *a = Availability::Idle;
        }
        let line = stock.bottles.get(&draw.key).and_then(|b| Some((b.source.valve()?.0.to_owned(), b.reagent.clone())));
        let (kind, volume, unknown, note) = match &ev.result {
            Ok(_) => {
                if let Some((valve, reagent)) = line
                    && let Some(l) = stock.lines.get_mut(&valve)
                {
                    l.holds = Some(reagent);
                }
                continue;
            }
            Err(e) if !e.may_have_acted => {
                stock.refund(&draw.key, draw.experiment, draw.volume + draw.primed);
                if let Some((valve, _)) = line
                    && let Some(l) = stock.lines.get_mut(&valve)
                {
                    l.holds = draw.line_before.clone();
                }
                (
                    "adjusted",
                    draw.volume + draw.primed,
                    false,
                    format!("given back: the dispense failed before it acted ({})", e.message),
                )
            }
            Err(e) => {
                stock.charge(&draw.key, draw.experiment, 0.0, true);
                ("adjusted", 0.0, true, format!("charged in full: the dispense may have acted ({})", e.message))
            }
        };
        let Some(b) = stock.bottles.get(&draw.key) else { continue };
        record.recorder.send(RecordEvent::Stock {
            campaign: record.campaign,
            at: ev.ended,
            bottle: draw.key.clone(),
            reagent: b.reagent.clone(),
            kind: kind.into(),
            volume,
            experiment: experiments.get(draw.experiment).ok().map(|e| e.id),
            step: steps.get(ev.step).ok().map(|s| s.id),
            unknown,
            left: b.left(),
            note,
        });
    }
}

/// Lets go of what concluded experiments reserved and did not draw.
pub fn release_reservations(
    mut concluded: MessageReader<ExperimentConcluded>,
    mut stock: ResMut<Stock>,
    experiments: Query<&Experiment>,
    record: Res<Record>,
    clock: Res<LabClock>,
) {
    for c in concluded.read() {
        for (key, volume) in stock.release(c.experiment) {
            let b = &stock.bottles[&key];
            record.recorder.send(RecordEvent::Stock {
                campaign: record.campaign,
                at: clock.now(),
                bottle: key.clone(),
                reagent: b.reagent.clone(),
                kind: "released".into(),
                volume,
                experiment: experiments.get(c.experiment).ok().map(|e| e.id),
                step: None,
                unknown: false,
                left: None,
                note: "the experiment ended without drawing it".into(),
            });
        }
    }
}
