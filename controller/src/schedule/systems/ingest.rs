//! The *Ingest* set: what arrived from outside becomes messages, and operators' requests are carried out.
//!
//! [`drain_inbox`] turns everything the bridge received (finished steps, proposals, reconciliations, operator
//! requests) into messages for this frame; [`handle_operator_requests`] pauses, resumes, aborts, settles steps in
//! doubt (`lab confirm`) and frees deck places (`lab clear`), recording each decision.

use bevy_ecs::prelude::*;
use devices::Place;

use super::{record_step, release_dependents, skip_unstarted, skip_unstarted_entities, still_running};
use crate::record::RecordEvent;
use crate::schedule::bridge::{Bridge, Inbound, OperatorAction, OperatorRequest, Verdict};
use crate::schedule::components::{Dependents, Experiment, ExperimentState, Step, StepState, Vessel};
use crate::schedule::messages::{
    ExperimentConcluded, Observed, OperatorAsked, ProposalsArrived, Reconciled, StepEnded,
};
use crate::schedule::resources::{CampaignState, DeckState, LabClock, Progress, ReadyIndex, Record, Schedule, Source};

/// Turns everything that arrived from outside into messages.
pub fn drain_inbox(
    mut bridge: ResMut<Bridge>,
    mut ended: MessageWriter<StepEnded>,
    mut arrived: MessageWriter<ProposalsArrived>,
    mut asked: MessageWriter<OperatorAsked>,
    mut reconciled: MessageWriter<Reconciled>,
    mut observed: MessageWriter<Observed>,
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
            Inbound::Proposals { asked: n, proposals, stop, claims } => {
                arrived.write(ProposalsArrived { asked: n, proposals, stop, claims });
            }
            Inbound::Operator(r) => {
                asked.write(OperatorAsked(r));
            }
            Inbound::Reconciled { instrument, result } => {
                reconciled.write(Reconciled { instrument, result });
            }
            Inbound::Observed { instrument, result, from } => {
                observed.write(Observed { instrument, result, from });
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
