//! Systems: what the scheduler does each frame, in order.
//!
//! A frame drains the inbox; carries out operators' requests; applies finished steps (freeing instruments, moving
//! vessels, keeping readings, releasing the steps that waited for them, retrying what is safe to retry, and putting
//! what may have acted and failed into the "unknown" state); concludes finished experiments (telling the learner);
//! takes new proposals and asks for more while experiments still run; starts experiments up to the in-flight limit;
//! replans if the work changed; and gives every idle instrument the step the plan (or, without one, the critical
//! path) says it should run next. Every decision and state change is recorded.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

use bevy_ecs::prelude::*;
use devices::{Outcome, Place, Task};
use protocols::{Action, Destination, InstrumentRef};

use super::bridge::{Bridge, Dispatch, Inbound, LearnerRequest, OperatorAction, OperatorRequest, StepError, Verdict};
use super::components::{
    Attempts, Availability, Dependents, Experiment, ExperimentState, Hold, Holds, Instrument, Readings, Step,
    StepState, Vessel, Work,
};
use super::messages::{ExperimentConcluded, OperatorAsked, ProposalsArrived, Reconciled, StepEnded};
use super::resources::{
    Best, CampaignState, DeckState, Estimates, Job, LabClock, NextWake, OrderedTime, Policy, Progress, RackState,
    ReadyIndex, ReadyKey, Record, Schedule, Source,
};
use crate::planner;
use crate::record::{ProposalRow, RecordEvent, StepRow};

/// Records a step's new state.
fn record_step(
    record: &Record,
    step: i64,
    at: f64,
    status: &'static str,
    instrument: Option<&str>,
    error: Option<String>,
) {
    record.recorder.send(RecordEvent::StepStatus {
        step,
        at,
        status: status.into(),
        instrument: instrument.map(str::to_owned),
        task: None,
        attempt: None,
        outcome: None,
        error,
    });
}

/// Turns everything that arrived from outside into messages.
pub fn drain_inbox(
    mut bridge: ResMut<Bridge>,
    mut ended: MessageWriter<StepEnded>,
    mut arrived: MessageWriter<ProposalsArrived>,
    mut asked: MessageWriter<OperatorAsked>,
    mut reconciled: MessageWriter<Reconciled>,
    mut progress: ResMut<Progress>,
) {
    let mut items = std::mem::take(&mut bridge.backlog);
    while let Ok(item) = bridge.inbox.try_recv() {
        items.push(item);
    }
    for item in items {
        progress.0 = true;
        match item {
            Inbound::StepEnded { step, result, started, ended: at } => {
                ended.write(StepEnded { step, result, started, ended: at });
            }
            Inbound::Proposals { asked: n, proposals, stop } => {
                arrived.write(ProposalsArrived { asked: n, proposals, stop });
            }
            Inbound::Operator(r) => {
                asked.write(OperatorAsked(r));
            }
            Inbound::Reconciled { instrument, result } => {
                reconciled.write(Reconciled { instrument, result });
            }
            Inbound::Tick => {}
        }
    }
}

/// Carries out operators' requests: pause, resume, abort, and verdicts on steps whose outcome is unknown.
pub fn handle_operator_requests(
    mut asked: MessageReader<OperatorAsked>,
    mut state: ResMut<CampaignState>,
    mut steps: Query<(Entity, &Step, &mut StepState)>,
    mut experiments: Query<(Entity, &mut Experiment, &mut ExperimentState, Option<&mut Vessel>)>,
    dependents: Query<&Dependents>,
    mut deck: ResMut<DeckState>,
    mut concluded: MessageWriter<ExperimentConcluded>,
    mut schedule: ResMut<Schedule>,
    mut index: ResMut<ReadyIndex>,
    source: Res<Source>,
    record: Res<Record>,
    clock: Res<LabClock>,
) {
    for OperatorAsked(req) in asked.read() {
        let now = clock.now();
        let outcome = match &req.action {
            OperatorAction::Pause => {
                state.paused = true;
                format!("paused: running steps finish, nothing new starts (asked by {})", req.who)
            }
            OperatorAction::Resume => {
                state.paused = false;
                format!("resumed (asked by {})", req.who)
            }
            OperatorAction::Abort => {
                state.stopping = true;
                state.aborted = true;
                state.paused = false;
                state.stop_reason = Some(format!("aborted by {}: {}", req.who, req.reason));
                let ids: Vec<Entity> = experiments.iter().map(|(e, ..)| e).collect();
                for e in ids {
                    let Ok((entity, exp, mut exp_state, _)) = experiments.get_mut(e) else { continue };
                    if *exp_state == ExperimentState::Running {
                        *exp_state = ExperimentState::Failed("aborted by the operator".to_owned());
                        if skip_unstarted(&exp, &mut steps, &record, now, "aborted by the operator") == 0 {
                            concluded.write(ExperimentConcluded { experiment: entity });
                        }
                    }
                }
                "aborted: running steps are cancelled and every instrument is put in its safe state".to_owned()
            }
            OperatorAction::Confirm { step, verdict, place } => confirm(
                *step,
                *verdict,
                place.as_deref(),
                req,
                &mut steps,
                &mut experiments,
                &dependents,
                &mut deck,
                &mut state,
                &mut concluded,
                &record,
                &mut index.fresh,
                now,
            ),
            OperatorAction::Clear { place } => clear(place, req, &mut deck, &experiments, &source),
        };
        schedule.dirty = true;
        record.recorder.send(RecordEvent::say(record.campaign, now, "warning", None, outcome.clone()));
        if let Some(id) = req.id {
            record.recorder.send(RecordEvent::RequestHandled {
                request: id,
                at: now,
                action: action_name(&req.action).to_owned(),
                who: req.who.clone(),
                reason: req.reason.clone(),
                outcome,
            });
        }
    }
}

fn action_name(a: &OperatorAction) -> &'static str {
    match a {
        OperatorAction::Pause => "pause",
        OperatorAction::Resume => "resume",
        OperatorAction::Abort => "abort",
        OperatorAction::Confirm { .. } => "confirm",
        OperatorAction::Clear { .. } => "clear",
    }
}

/// Carries out `lab clear PLACE`: a place held for a vessel no running experiment tracks any more is freed. A place
/// that holds a running experiment's vessel is not: the controller knows that vessel is there (or on its way), and
/// a vessel in doubt is settled with `lab confirm STEP --vessel-at`.
fn clear(
    place: &str,
    req: &OperatorRequest,
    deck: &mut DeckState,
    experiments: &Query<(Entity, &mut Experiment, &mut ExperimentState, Option<&mut Vessel>)>,
    source: &Source,
) -> String {
    let who = format!("{} ({})", req.who, req.reason);
    if let Source::Campaign(c) = source
        && !c.lab.deck.positions.contains_key(place)
    {
        let known: Vec<&str> = c.lab.deck.positions.keys().map(String::as_str).collect();
        return format!(
            "clear of `{place}` by {who} ignored: the deck has no such place (it has {})",
            known.join(", ")
        );
    }
    let holders: Vec<Entity> =
        [deck.occupant.get(place), deck.reserved.get(place)].into_iter().flatten().copied().collect();
    if holders.is_empty() {
        return format!("clear of `{place}` by {who}: it was not blocked");
    }
    if let Some((_, exp, ..)) = holders.iter().find_map(|h| experiments.get(*h).ok()) {
        return format!(
            "clear of `{place}` by {who} refused: experiment #{}'s vessel is there or on its way, and the controller \
             is tracking it (for a vessel in doubt, use `lab confirm STEP --vessel-at`)",
            exp.seq
        );
    }
    deck.occupant.remove(place);
    deck.reserved.remove(place);
    format!("`{place}` cleared by {who}: vessels may be brought to it again")
}

/// Applies an operator's verdict on a step whose outcome was unknown.
fn confirm(
    step_id: i64,
    verdict: Verdict,
    place: Option<&str>,
    req: &OperatorRequest,
    steps: &mut Query<(Entity, &Step, &mut StepState)>,
    experiments: &mut Query<(Entity, &mut Experiment, &mut ExperimentState, Option<&mut Vessel>)>,
    dependents: &Query<&Dependents>,
    deck: &mut DeckState,
    state: &mut CampaignState,
    concluded: &mut MessageWriter<ExperimentConcluded>,
    record: &Record,
    fresh: &mut Vec<Entity>,
    now: f64,
) -> String {
    let Some((entity, step)) = steps.iter().find(|(_, s, _)| s.id == step_id).map(|(e, s, _)| (e, s.clone())) else {
        return format!(
            "confirmation of step {step_id} ignored: it is not a step of this campaign's running experiments"
        );
    };
    let Ok((_, _, st)) = steps.get(entity) else { return String::new() };
    if !matches!(st, StepState::Unknown { .. }) {
        return format!("confirmation of step {step_id} ignored: it is {}, not unknown", st.label());
    }
    state.unknown = state.unknown.saturating_sub(1);
    let who = format!("{} ({})", req.who, req.reason);
    let Ok((exp_entity, mut exp, mut exp_state, vessel)) = experiments.get_mut(step.experiment) else {
        return String::new();
    };
    // Where the vessel is, if the operator says.
    if let Some(mut v) = vessel
        && let Some(p) = place
    {
        for (pos, e) in deck.occupant.clone() {
            if e == exp_entity {
                deck.occupant.remove(&pos);
            }
        }
        deck.reserved.retain(|_, e| *e != exp_entity);
        v.at = if p == "rack" { Place::Rack(exp.slot.unwrap_or(0)) } else { Place::Position(p.to_owned()) };
        v.known = true;
        if let Place::Position(pos) = &v.at {
            deck.occupant.insert(pos.clone(), exp_entity);
        }
    }
    match verdict {
        Verdict::Done => {
            if let Ok((_, _, mut st)) = steps.get_mut(entity) {
                *st = StepState::Succeeded;
            }
            record_step(record, step.id, now, "succeeded", None, Some(format!("confirmed done by {who}")));
            exp.unfinished = exp.unfinished.saturating_sub(1);
            release_dependents(entity, now, steps, dependents, record, fresh);
            if exp.unfinished == 0 && *exp_state == ExperimentState::Running {
                *exp_state = ExperimentState::Succeeded;
                concluded.write(ExperimentConcluded { experiment: exp_entity });
            }
            format!("step {step_id} (`{}`) confirmed done by {who}", step.name)
        }
        Verdict::NotDone => {
            if let Ok((_, _, mut st)) = steps.get_mut(entity) {
                *st = StepState::Ready { since: now, not_before: now, deadline: None };
            }
            fresh.push(entity);
            record_step(
                record,
                step.id,
                now,
                "ready",
                None,
                Some(format!("confirmed not done by {who}; it runs again")),
            );
            format!("step {step_id} (`{}`) confirmed not done by {who}; it will run", step.name)
        }
        Verdict::Failed => {
            if let Ok((_, _, mut st)) = steps.get_mut(entity) {
                *st = StepState::Failed;
            }
            record_step(record, step.id, now, "failed", None, Some(format!("confirmed failed by {who}")));
            if *exp_state == ExperimentState::Running {
                *exp_state = ExperimentState::Failed(format!("step `{}` failed (confirmed by {who})", step.name));
                skip_unstarted_entities(&exp.steps, steps, record, now, "an earlier step of this experiment failed");
            }
            if still_running(&exp.steps, steps) == 0 {
                concluded.write(ExperimentConcluded { experiment: exp_entity });
            }
            format!("step {step_id} (`{}`) confirmed failed by {who}", step.name)
        }
    }
}

fn skip_unstarted(
    exp: &Experiment,
    steps: &mut Query<(Entity, &Step, &mut StepState)>,
    record: &Record,
    now: f64,
    why: &str,
) -> usize {
    skip_unstarted_entities(&exp.steps, steps, record, now, why)
}

/// Skips every waiting or ready step among `list`; returns how many are still running or unknown.
fn skip_unstarted_entities(
    list: &[Entity],
    steps: &mut Query<(Entity, &Step, &mut StepState)>,
    record: &Record,
    now: f64,
    why: &str,
) -> usize {
    let mut active = 0;
    for &s in list {
        if let Ok((_, step, mut st)) = steps.get_mut(s) {
            match *st {
                StepState::Waiting { .. } | StepState::Ready { .. } => {
                    *st = StepState::Skipped;
                    record_step(record, step.id, now, "skipped", None, Some(why.to_owned()));
                }
                StepState::Running { .. } | StepState::Unknown { .. } => active += 1,
                _ => {}
            }
        }
    }
    active
}

fn still_running(list: &[Entity], steps: &Query<(Entity, &Step, &mut StepState)>) -> usize {
    list.iter()
        .filter(|&&s| matches!(steps.get(s), Ok((_, _, StepState::Running { .. } | StepState::Unknown { .. }))))
        .count()
}

/// Moves the dependents of a succeeded step towards ready.
fn release_dependents(
    step: Entity,
    at: f64,
    steps: &mut Query<(Entity, &Step, &mut StepState)>,
    dependents: &Query<&Dependents>,
    record: &Record,
    fresh: &mut Vec<Entity>,
) {
    for &d in dependents.get(step).map(|d| d.0.as_slice()).unwrap_or_default() {
        if let Ok((_, dep, mut dst)) = steps.get_mut(d)
            && let StepState::Waiting { remaining } = &mut *dst
        {
            *remaining = remaining.saturating_sub(1);
            if *remaining == 0 {
                let not_before = at + dep.rules.wait.map_or(0.0, |w| w.0);
                let deadline = dep.rules.within.map(|w| at + w.0);
                *dst = StepState::Ready { since: at, not_before, deadline };
                fresh.push(d);
                record_step(record, dep.id, at, "ready", None, None);
            }
        }
    }
}

/// Applies finished steps.
pub fn apply_step_results(
    mut ended: MessageReader<StepEnded>,
    mut concluded: MessageWriter<ExperimentConcluded>,
    mut steps: Query<(Entity, &Step, &mut StepState)>,
    attempts: Query<&mut Attempts>,
    dependents: Query<&Dependents>,
    mut instruments: Query<(&Instrument, &mut Availability, &mut Holds)>,
    mut experiments: Query<(&mut Experiment, &mut ExperimentState, Option<&mut Vessel>, &mut Readings)>,
    mut deck: ResMut<DeckState>,
    mut estimates: ResMut<Estimates>,
    mut schedule: ResMut<Schedule>,
    mut state: ResMut<CampaignState>,
    mut index: ResMut<ReadyIndex>,
    policy: Res<Policy>,
    record: Res<Record>,
) {
    for ev in ended.read() {
        let Ok((_, step, st)) = steps.get(ev.step) else { continue };
        let StepState::Running { instrument, destination, .. } = st.clone() else { continue };
        let step = step.clone();
        let mut instrument_name = None;
        if let Ok((inst, mut avail, mut holds)) = instruments.get_mut(instrument) {
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
                    // establishes what happened.
                    if let Ok((_, _, mut st)) = steps.get_mut(ev.step) {
                        *st = StepState::Unknown { instrument: Some(instrument) };
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

/// Handles instruments that came back from reconciliation, and settles the unknown steps on them by policy.
pub fn settle_reconciled(
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

/// What to do with a step whose outcome is unknown once its instrument is reconciled.
#[derive(Resource, Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownPolicy {
    /// Fail the step (and its experiment): unattended labs keep going, and the record says why.
    Fail,
    /// Wait for an operator's verdict (`lab confirm`).
    Wait,
}

/// Sends instruments in the unknown state to be reconciled (safe state, identify, initialize).
pub fn reconcile_instruments(
    instruments: Query<(Entity, &Instrument, &Availability)>,
    mut pending: Local<HashSet<Entity>>,
    bridge: Res<Bridge>,
) {
    for (e, _, a) in &instruments {
        match a {
            Availability::Unknown { .. } => {
                if pending.insert(e) {
                    bridge.executor.reconcile(e);
                }
            }
            _ => {
                pending.remove(&e);
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
    policy: Res<UnknownPolicy>,
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
            // With someone to ask (`--unknown wait`), a step whose only places are blocked by a lost vessel waits
            // for them to be cleared, and the record says which: unattended, it fails like any other it cannot run.
            if let Some((working, blocked)) = &places
                && !reachable
                && !working.is_empty()
                && *policy == UnknownPolicy::Wait
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

/// Whether the instruments standing at `position` are all working.
fn position_usable(c: &super::resources::CampaignSource, position: &str, offline: &HashSet<&str>) -> bool {
    c.lab
        .instruments
        .iter()
        .filter(|i| i.position.as_deref() == Some(position))
        .all(|i| !offline.contains(i.name.as_str()))
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

/// Marks a failed experiment whose vessel is being returned to the rack.
#[derive(Component, Debug, Clone, Copy)]
pub struct CleaningUp;

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

/// Takes the learner's proposals into the queue.
pub fn receive_proposals(
    mut arrived: MessageReader<ProposalsArrived>,
    mut state: ResMut<CampaignState>,
    record: Res<Record>,
    clock: Res<LabClock>,
) {
    for a in arrived.read() {
        state.requested = state.requested.saturating_sub(a.asked);
        if let Some(why) = &a.stop
            && !state.stopping
        {
            state.stopping = true;
            state.stop_reason = Some(why.clone());
        }
        if a.proposals.is_empty() && a.asked > 0 && !state.stopping {
            state.stopping = true;
            state.stop_reason = Some("the proposer has nothing more to propose".to_owned());
        }
        for p in &a.proposals {
            let id = state.next_proposal;
            state.next_proposal += 1;
            record.recorder.send(RecordEvent::Proposal {
                id,
                campaign: record.campaign,
                at: clock.now(),
                proposal: Box::new(ProposalRow::new(p, state.told.clone())),
            });
            state.queue.push_back((id, p.clone()));
        }
    }
}

/// Asks the learner for enough proposals to keep the in-flight limit full, while experiments still run.
pub fn request_proposals(mut state: ResMut<CampaignState>, bridge: Res<Bridge>, experiments: Query<&Experiment>) {
    let Some(learner) = &bridge.learner else { return };
    if state.stopping {
        return;
    }
    let planned = state.started + state.queue.len() + state.requested;
    let by_budget = state.budget.saturating_sub(planned);
    let by_flight = state.in_flight.saturating_sub(state.running + state.queue.len() + state.requested);
    let n = by_budget.min(by_flight);
    if n == 0 {
        return;
    }
    let pending: Vec<experiments::Point> =
        experiments.iter().map(|e| e.values.clone()).chain(state.queue.iter().map(|(_, p)| p.values.clone())).collect();
    if learner.send(LearnerRequest::Ask { n, pending }).is_ok() {
        state.requested += n;
    }
}

/// Starts experiments up to the in-flight limit: queued proposals bound to the protocol, or jobs of a fixed list.
pub fn start_experiments(
    mut commands: Commands,
    mut state: ResMut<CampaignState>,
    mut rack: ResMut<RackState>,
    mut source: ResMut<Source>,
    estimates: Res<Estimates>,
    mut schedule: ResMut<Schedule>,
    mut index: ResMut<ReadyIndex>,
    record: Res<Record>,
    clock: Res<LabClock>,
    mut progress: ResMut<Progress>,
) {
    while state.may_start() && state.running < state.in_flight {
        let now = clock.now();
        let seq = state.started + 1;
        let exp_id = state.next_experiment;
        let (job, values, proposal, slot, params) = match &mut *source {
            Source::Jobs(jobs) => {
                let Some(job) = jobs.pop_front() else { break };
                (job, Default::default(), None, None, Vec::new())
            }
            Source::Campaign(cs) => {
                let Some((proposal_id, proposal)) = state.queue.pop_front() else { break };
                let Some(slot) = rack.fresh.pop_front() else {
                    state.queue.push_front((proposal_id, proposal));
                    state.stopping = true;
                    state.stop_reason = Some("the rack has no fresh vessels left".to_owned());
                    break;
                };
                let mut values = cs.fixed.clone();
                values.extend(proposal.values.clone());
                let bound = match cs.protocol.bind(&values) {
                    Ok(b) => b,
                    Err(e) => {
                        // The campaign was checked against the protocol, so this is a proposer bug.
                        record.recorder.send(RecordEvent::say(
                            record.campaign,
                            now,
                            "error",
                            None,
                            format!("proposal {proposal_id} was not run: {e}"),
                        ));
                        rack.fresh.push_front(slot);
                        continue;
                    }
                };
                let job = Job {
                    name: format!("experiment {seq}"),
                    steps: bound
                        .steps
                        .iter()
                        .map(|s| super::resources::JobStep {
                            name: s.id.clone(),
                            on: s.on.clone(),
                            duration: crate::estimate::action(&cs.lab, &s.on, &s.action) * 1.0,
                            action: Some(s.action.clone()),
                            after: s.after.clone(),
                            rules: s.rules,
                        })
                        .collect(),
                };
                let params = cs
                    .protocol
                    .parameters()
                    .iter()
                    .map(|p| (p.name.clone(), bound.values[&p.name], p.unit.symbol.to_owned()))
                    .collect();
                (job, bound.values, Some(proposal_id), Some(slot), params)
            }
        };
        state.next_experiment += 1;
        let exp_entity = commands.spawn_empty().id();
        let step_entities: Vec<Entity> = job.steps.iter().map(|_| commands.spawn_empty().id()).collect();
        let mut dependents: Vec<Vec<Entity>> = vec![Vec::new(); job.steps.len()];
        for (j, s) in job.steps.iter().enumerate() {
            for &a in &s.after {
                dependents[a].push(step_entities[j]);
            }
        }
        // Estimates, corrected by what this campaign has learned, and the critical path from each step.
        let est: Vec<f64> = job
            .steps
            .iter()
            .map(|s| {
                let op = s.action.as_ref().map_or("Work", protocols::Operation::name);
                let inst = match &s.on {
                    InstrumentRef::Named(n) => n.as_str(),
                    InstrumentRef::Kind(_) => "",
                };
                s.duration * estimates.factor(op, inst)
            })
            .collect();
        let mut tail = est.clone();
        for j in (0..job.steps.len()).rev() {
            let after = dependents[j]
                .iter()
                .filter_map(|d| step_entities.iter().position(|e| e == d))
                .map(|k| tail[k])
                .fold(0.0, f64::max);
            tail[j] = est[j] + after;
        }
        let mut rows = Vec::with_capacity(job.steps.len());
        for (i, s) in job.steps.iter().enumerate() {
            let id = state.next_step;
            state.next_step += 1;
            let ready = s.after.is_empty();
            if ready {
                index.fresh.push(step_entities[i]);
            }
            let st = if ready {
                StepState::Ready { since: now, not_before: now, deadline: None }
            } else {
                StepState::Waiting { remaining: s.after.len() }
            };
            let work = s.action.clone().map_or(Work::Abstract, Work::Action);
            rows.push(StepRow {
                id,
                step: s.name.clone(),
                op: work.name().to_owned(),
                action: s
                    .action
                    .as_ref()
                    .map_or_else(|| "null".to_owned(), |a| serde_json::to_string(a).unwrap_or_default()),
                after: s.after.iter().map(|&a| job.steps[a].name.clone()).collect(),
                repeat_safe: work.repeat_safe(),
                ready,
            });
            commands.entity(step_entities[i]).insert((
                Step {
                    id,
                    experiment: exp_entity,
                    index: i,
                    name: s.name.clone(),
                    on: s.on.clone(),
                    work,
                    rules: s.rules,
                    estimate: est[i],
                    tail: tail[i],
                    after: s.after.iter().map(|&a| step_entities[a]).collect(),
                    leads_within: job.steps.iter().any(|t| t.rules.within.is_some() && t.after.contains(&i)),
                },
                st,
                Attempts(0),
                Dependents(std::mem::take(&mut dependents[i])),
            ));
        }
        let mut ec = commands.entity(exp_entity);
        ec.insert((
            Experiment {
                id: exp_id,
                seq,
                values,
                proposal,
                slot,
                steps: step_entities,
                unfinished: job.steps.len(),
                started_at: now,
            },
            ExperimentState::Running,
            Readings::default(),
        ));
        if let Some(slot) = slot {
            ec.insert(Vessel { at: Place::Rack(slot), known: true });
        }
        record.recorder.send(RecordEvent::ExperimentStarted {
            id: exp_id,
            campaign: record.campaign,
            seq: seq as i64,
            proposal,
            params,
            vessel: slot.map_or(-1, |s| s as i64),
            at: now,
            steps: rows,
        });
        state.started += 1;
        state.running += 1;
        state.peak_in_flight = state.peak_in_flight.max(state.running);
        schedule.dirty = true;
        progress.0 = true;
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
    policy: Res<Policy>,
    bridge: Res<Bridge>,
    record: Res<Record>,
    clock: Res<LabClock>,
    state: Res<CampaignState>,
    mut progress: ResMut<Progress>,
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
    let mut stale = false;
    for (inst_entity, inst) in &idle {
        // A kept instrument takes nothing else, however short; a held one only what ends before its hold.
        let first_hold = instruments
            .get(*inst_entity)
            .ok()
            .and_then(|(_, _, _, h)| if h.0.iter().any(|h| h.kept) { Some(f64::NEG_INFINITY) } else { h.first() });
        let fits_before_hold = |est: f64| first_hold.is_none_or(|t| now + est * 1.25 <= t);
        let feasible = |e: Entity, deck: &DeckState, schedule: &Schedule| -> Result<Option<Place>, Unable> {
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
            if !held_for_me && !fits_before_hold(step.estimate) {
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
                    // Prefer where the plan put the steps this transfer serves.
                    let preferred = planned_position(e, &steps, &dependents, schedule, &instruments);
                    let pick = preferred.into_iter().chain(choices.iter().cloned()).find(|p| {
                        choices.contains(p)
                            && deck.is_free_for(p, step.experiment)
                            && position_usable(cs, p, &offline_ref)
                    });
                    pick.map(|p| Some(Place::Position(p))).ok_or(Unable::Place)
                }
                _ => Ok(None),
            }
        };
        let mut pick: Option<(Entity, Option<Place>, (Vec<(Entity, Hold)>, Held, Vec<Entity>), String)> = None;
        // When the plan has this instrument wait for a step that is not ready yet, the time that step is due.
        let mut due: Option<f64> = None;
        if planned {
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
                    if !blocked && let Some((_, start)) = schedule.assigned.get(&e) {
                        due = Some(due.map_or(*start, |d: f64| d.min(*start)));
                    }
                    continue;
                }
                if due.is_some_and(|t| now + est > t + DUE_SLACK) {
                    continue;
                }
                match feasible(e, &deck, &schedule) {
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
                let dest = match feasible(key.step, &deck, &schedule) {
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
        let timeout = step.rules.timeout.map_or(step.estimate * 3.0 + 300.0, |t| t.0);
        let attempt = {
            let mut a = attempts.get_mut(step_entity).expect("every step has attempts");
            a.0 += 1;
            a.0
        };
        let Ok((_, inst, mut avail, _)) = instruments.get_mut(inst_entity) else { continue };
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
        let dispatch = Dispatch { step: step_entity, step_id, task, estimate, timeout };
        bridge.executor.dispatch(inst_entity, dispatch);
        progress.0 = true;
    }
}

/// The position of the instrument the plan gave to the first vessel step after `transfer`.
fn planned_position(
    transfer: Entity,
    steps: &Query<(Entity, &Step, &mut StepState)>,
    dependents: &Query<&Dependents>,
    schedule: &Schedule,
    instruments: &Query<(Entity, &Instrument, &mut Availability, &mut Holds)>,
) -> Option<String> {
    let follower = dependents
        .get(transfer)
        .ok()?
        .0
        .iter()
        .filter_map(|&d| steps.get(d).ok())
        .filter(|(_, s, _)| s.work.acts_on_vessel())
        .min_by_key(|(_, s, _)| s.index)?;
    let (inst, _) = schedule.assigned.get(&follower.0)?;
    instruments.get(*inst).ok()?.1.position.clone()
}

/// Where [`follower_holds`] would hold the followers' instruments.
enum Held {
    /// On the instruments the plan gave them (or on any, with no plan).
    AsPlanned,
    /// At least one on an instrument other than its planned one, because that one could not be held: the plan is
    /// stale.
    Elsewhere,
}

/// The holds to make on instruments for the steps that must follow `step` within a maximum wait, and the followers
/// left without one; `None` if one cannot be held, in which case `step` must not start yet. A follower is held on its planned instrument if that one can be held,
/// else on any other that can run it; `step`'s own holds do not count against its followers' (they go when it
/// starts).
fn follower_holds(
    step: Entity,
    now: f64,
    steps: &Query<(Entity, &Step, &mut StepState)>,
    dependents: &Query<&Dependents>,
    instruments: &Query<(Entity, &Instrument, &mut Availability, &mut Holds)>,
    schedule: &Schedule,
    chosen: &[(Entity, Entity, Option<Place>, String)],
) -> Option<(Vec<(Entity, Hold)>, Held, Vec<Entity>)> {
    let Ok((_, s, _)) = steps.get(step) else { return Some((Vec::new(), Held::AsPlanned, Vec::new())) };
    if !s.leads_within {
        return Some((Vec::new(), Held::AsPlanned, Vec::new()));
    }
    // The followers whose last dependency to start is `step`: every other one has succeeded, runs, or was given an
    // instrument in this frame.
    let started =
        |p: Entity| chosen.iter().any(|c| c.1 == p) || matches!(steps.get(p), Ok((_, _, StepState::Running { .. })));
    let followers: Vec<(Entity, Step)> = dependents
        .get(step)
        .map(|d| d.0.as_slice())
        .unwrap_or_default()
        .iter()
        .filter_map(|&d| steps.get(d).ok())
        .filter(|(_, f, st)| {
            f.rules.within.is_some()
                && matches!(st, StepState::Waiting { remaining }
                    if *remaining == 1 + f.after.iter().filter(|&&p| p != step && started(p)).count())
        })
        .map(|(e, f, _)| (e, f.clone()))
        .collect();
    // Which instrument each follower would be held on: honouring the holds already made (`existing`), or only
    // those among the followers themselves; `partial` skips a follower that cannot be held instead of failing.
    let choose = |existing: bool, partial: bool| -> Option<(Vec<(Entity, Hold)>, Held, Vec<Entity>)> {
        let mut holds: Vec<(Entity, Hold)> = Vec::new();
        let mut held = Held::AsPlanned;
        let mut unheld = Vec::new();
        for (fe, f) in &followers {
            // When the follower is expected to be ready (its dependencies' expected ends), the hold's start a fifth
            // of the way before that, and the latest the follower may start.
            let ready = f
                .after
                .iter()
                .filter(|&&p| p != step)
                .map(|&p| expected_end(p, now, steps, chosen))
                .fold(now + s.estimate, f64::max);
            let from = ready - (ready - now) * 0.2;
            let latest = ready + f.rules.within.map_or(f64::INFINITY, |w| w.0);
            let planned = schedule.assigned.get(fe).map(|a| a.0);
            let mut candidates: Vec<(bool, usize, Entity)> = instruments
                .iter()
                .filter(|(e, i, a, h)| {
                    i.matches(&f.on)
                        && !matches!(a, Availability::Offline { .. } | Availability::Unknown { .. })
                        && !h.0.iter().any(|k| k.kept && k.step != *fe)
                        // An instrument busy past the follower's latest start cannot be held for it yet, as a hold
                        // in the way cannot; both go in time, so this too is only a reason to wait.
                        && (!existing || !matches!(a, Availability::Busy { step } if expected_end(*step, now, steps, chosen) > latest))
                        && (!existing || !chosen.iter().any(|c| c.0 == *e && expected_end(c.1, now, steps, chosen) > latest))
                        && h.0
                            .iter()
                            .filter(|_| existing)
                            .chain(holds.iter().filter(|(he, _)| he == e).map(|(_, h)| h))
                            .filter(|other| other.step != step)
                            .all(|other| (other.from - from).abs() >= other.duration.max(f.estimate) * 1.5)
                })
                .map(|(e, i, ..)| (planned.is_some_and(|p| p != e), i.index, e))
                .collect();
            candidates.sort();
            match candidates.first() {
                Some(&(elsewhere, _, e)) => {
                    if elsewhere {
                        held = Held::Elsewhere;
                    }
                    holds.push((e, Hold { step: *fe, from, duration: f.estimate, kept: false }));
                }
                None if partial => unheld.push(*fe),
                None => return None,
            }
        }
        Some((holds, held, unheld))
    };
    // Waiting is right only while another step's hold is in the way, since that hold goes when its step starts. If
    // the followers cannot all be held even among themselves (two must follow at once on one instrument), or if this
    // step is itself held (it is some step's follower and must start now), waiting could last forever: it starts,
    // holding what it can, and a follower that could not be held may start late.
    let self_held = instruments.iter().any(|(_, _, _, h)| h.0.iter().any(|h| h.step == step));
    match choose(true, false) {
        Some(chosen) => Some(chosen),
        None if self_held || choose(false, false).is_none() => choose(true, true),
        None => None,
    }
}

/// When step `p` is expected to end: given an instrument in this frame (`chosen`), now plus its estimate; running,
/// its start plus its estimate (or now, if late); otherwise now.
fn expected_end(
    p: Entity,
    now: f64,
    steps: &Query<(Entity, &Step, &mut StepState)>,
    chosen: &[(Entity, Entity, Option<Place>, String)],
) -> f64 {
    match steps.get(p) {
        Ok((_, s, _)) if chosen.iter().any(|c| c.1 == p) => now + s.estimate,
        Ok((_, s, StepState::Running { started, .. })) => (started + s.estimate).max(now),
        _ => now,
    }
}

/// The earliest minimum wait still running, so the main loop wakes up then.
pub fn compute_next_wake(index: Res<ReadyIndex>, mut wake: ResMut<NextWake>) {
    wake.0 = index.later.first().map(|(t, _)| t.0);
}

/// The instrument task for a step's action, with places resolved.
fn task_for(action: &Action, at: Option<&Place>, destination: Option<Place>) -> Task {
    match action {
        Action::Transfer { .. } => {
            let from = at.cloned().unwrap_or(Place::Rack(0));
            Task::Transfer { to: destination.unwrap_or_else(|| from.clone()), from }
        }
        Action::Dispense { volume } => Task::Dispense { volume: *volume },
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
