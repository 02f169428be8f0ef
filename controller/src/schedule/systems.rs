//! Systems: what the scheduler does each frame, in order.
//!
//! A frame drains the inbox, applies finished steps (freeing instruments, moving vessels, recording readings,
//! releasing the steps that waited for them), concludes finished experiments (telling the learner), takes new
//! proposals and asks for more while experiments still run, starts experiments up to the in-flight limit, and
//! gives every idle instrument the oldest ready step it can run. Every decision and state change is recorded.

use std::collections::HashSet;

use bevy_ecs::prelude::*;
use devices::{Outcome, Place, Task};
use protocols::{Action, Destination, Operation};

use super::bridge::{Bridge, Dispatch, Inbound, Interrupt, LearnerRequest, StepError};
use super::components::{
    Availability, Dependents, Experiment, ExperimentState, Instrument, Readings, Step, StepState, Vessel,
};
use super::messages::{ExperimentConcluded, Interrupted, ProposalsArrived, StepEnded};
use super::resources::{Best, CampaignState, DeckState, LabClock, Plan, Progress, RackState, Record};
use crate::record::{RecordEvent, StepRow};

/// Turns everything that arrived from outside into messages.
pub fn drain_inbox(
    mut bridge: ResMut<Bridge>,
    mut ended: MessageWriter<StepEnded>,
    mut arrived: MessageWriter<ProposalsArrived>,
    mut interrupted: MessageWriter<Interrupted>,
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
            Inbound::Proposals { asked, proposals } => {
                arrived.write(ProposalsArrived { asked, proposals });
            }
            Inbound::Interrupt(i) => {
                interrupted.write(Interrupted(i));
            }
        }
    }
}

/// Applies the operator's pause or abort.
pub fn apply_interrupts(
    mut interrupted: MessageReader<Interrupted>,
    mut state: ResMut<CampaignState>,
    mut steps: Query<(&Step, &mut StepState)>,
    mut experiments: Query<(Entity, &Experiment, &mut ExperimentState)>,
    mut concluded: MessageWriter<ExperimentConcluded>,
    record: Res<Record>,
    clock: Res<LabClock>,
) {
    for Interrupted(i) in interrupted.read() {
        let now = clock.now();
        state.stopping = true;
        match i {
            Interrupt::Pause => {
                state.stop_reason.get_or_insert_with(|| "paused by the operator".to_owned());
                record.recorder.send(RecordEvent::Event {
                    campaign: record.campaign,
                    at: now,
                    level: "warning",
                    instrument: None,
                    message: "paused by the operator: running experiments finish, no new ones start".to_owned(),
                });
            }
            Interrupt::Abort => {
                state.aborted = true;
                state.stop_reason = Some("aborted by the operator".to_owned());
                record.recorder.send(RecordEvent::Event {
                    campaign: record.campaign,
                    at: now,
                    level: "error",
                    instrument: None,
                    message: "aborted by the operator: running steps are cancelled and every instrument is put in \
                              its safe state"
                        .to_owned(),
                });
                for (entity, exp, mut exp_state) in &mut experiments {
                    if *exp_state == ExperimentState::Running {
                        *exp_state = ExperimentState::Failed("aborted by the operator".to_owned());
                        if skip_unstarted(exp, &mut steps, &record, now, "aborted by the operator") == 0 {
                            concluded.write(ExperimentConcluded { experiment: entity });
                        }
                    }
                }
            }
        }
    }
}

/// Skips every waiting or ready step of an experiment; returns how many of its steps are still running.
fn skip_unstarted(
    exp: &Experiment,
    steps: &mut Query<(&Step, &mut StepState)>,
    record: &Record,
    now: f64,
    why: &str,
) -> usize {
    let mut running = 0;
    for &s in &exp.steps {
        if let Ok((step, mut st)) = steps.get_mut(s) {
            match *st {
                StepState::Waiting { .. } | StepState::Ready { .. } => {
                    *st = StepState::Skipped;
                    record.recorder.send(RecordEvent::StepStatus {
                        step: step.id,
                        at: now,
                        status: "skipped",
                        instrument: None,
                        outcome: None,
                        error: Some(why.to_owned()),
                    });
                }
                StepState::Running { .. } => running += 1,
                _ => {}
            }
        }
    }
    running
}

/// Applies finished steps: frees instruments, moves vessels, keeps readings, releases waiting steps, and concludes
/// experiments whose last step ended.
pub fn apply_step_results(
    mut ended: MessageReader<StepEnded>,
    mut concluded: MessageWriter<ExperimentConcluded>,
    mut steps: Query<(&Step, &mut StepState)>,
    dependents: Query<&Dependents>,
    mut instruments: Query<(&Instrument, &mut Availability)>,
    mut experiments: Query<(&mut Experiment, &mut ExperimentState, &mut Vessel, &mut Readings)>,
    mut deck: ResMut<DeckState>,
    record: Res<Record>,
) {
    for ev in ended.read() {
        let Ok((step, mut st)) = steps.get_mut(ev.step) else { continue };
        let StepState::Running { instrument, destination, .. } = st.clone() else { continue };
        let step = step.clone();
        let instrument_name = match instruments.get_mut(instrument) {
            Ok((inst, mut avail)) => {
                match &ev.result {
                    Err(e) if e.instrument_fault => {
                        *avail = Availability::Offline { reason: e.message.clone() };
                        record.recorder.send(RecordEvent::Event {
                            campaign: record.campaign,
                            at: ev.ended,
                            level: "error",
                            instrument: Some(inst.name.clone()),
                            message: format!("{} is offline for the rest of the campaign: {}", inst.name, e.message),
                        });
                    }
                    _ => *avail = Availability::Idle,
                }
                Some(inst.name.clone())
            }
            Err(_) => None,
        };
        let Ok((mut exp, mut exp_state, mut vessel, mut readings)) = experiments.get_mut(step.experiment) else {
            continue;
        };
        match &ev.result {
            Ok(outcome) => {
                *st = StepState::Succeeded;
                record.recorder.send(RecordEvent::StepStatus {
                    step: step.id,
                    at: ev.ended,
                    status: "succeeded",
                    instrument: instrument_name,
                    outcome: serde_json::to_string(outcome).ok(),
                    error: None,
                });
                if let (Action::Transfer { .. }, Some(dest)) = (&step.action, &destination) {
                    if let Place::Position(p) = &vessel.at {
                        deck.occupant.remove(p);
                    }
                    if let Place::Position(p) = dest {
                        deck.reserved.remove(p);
                        deck.occupant.insert(p.clone(), step.experiment);
                    }
                    vessel.at = dest.clone();
                }
                if let (Action::Measure { output, .. }, Outcome::Measured { value, unit }) = (&step.action, outcome) {
                    readings.0.insert(output.clone(), *value);
                    record.recorder.send(RecordEvent::Measurement {
                        experiment: exp.id,
                        step: step.id,
                        name: output.clone(),
                        value: *value,
                        unit: (*unit).to_owned(),
                        at: ev.ended,
                    });
                }
                exp.unfinished = exp.unfinished.saturating_sub(1);
                if *exp_state == ExperimentState::Running {
                    for &d in dependents.get(ev.step).map(|d| d.0.as_slice()).unwrap_or_default() {
                        if let Ok((dep, mut dst)) = steps.get_mut(d)
                            && let StepState::Waiting { remaining } = &mut *dst
                        {
                            *remaining = remaining.saturating_sub(1);
                            if *remaining == 0 {
                                *dst = StepState::Ready { since: ev.ended };
                                record.recorder.send(RecordEvent::StepStatus {
                                    step: dep.id,
                                    at: ev.ended,
                                    status: "ready",
                                    instrument: None,
                                    outcome: None,
                                    error: None,
                                });
                            }
                        }
                    }
                    if exp.unfinished == 0 {
                        *exp_state = ExperimentState::Succeeded;
                        concluded.write(ExperimentConcluded { experiment: step.experiment });
                    }
                } else if still_running(&exp, &steps) == 0 {
                    concluded.write(ExperimentConcluded { experiment: step.experiment });
                }
            }
            Err(e) => {
                *st = StepState::Failed;
                let note = if e.may_have_acted {
                    " The instrument may have acted before failing; the step is not repeated."
                } else {
                    ""
                };
                record.recorder.send(RecordEvent::StepStatus {
                    step: step.id,
                    at: ev.ended,
                    status: "failed",
                    instrument: instrument_name,
                    outcome: None,
                    error: Some(format!("{}{note}", e.message)),
                });
                // A failed transfer leaves the vessel somewhere between its two places, so both stay blocked.
                if *exp_state == ExperimentState::Running {
                    *exp_state = ExperimentState::Failed(format!("step `{}` failed: {}", step.name, e.message));
                    skip_unstarted(&exp, &mut steps, &record, ev.ended, "an earlier step of this experiment failed");
                }
                if still_running(&exp, &steps) == 0 {
                    concluded.write(ExperimentConcluded { experiment: step.experiment });
                }
            }
        }
    }
}

fn still_running(exp: &Experiment, steps: &Query<(&Step, &mut StepState)>) -> usize {
    exp.steps.iter().filter(|&&s| matches!(steps.get(s), Ok((_, StepState::Running { .. })))).count()
}

/// Fails ready steps that no working instrument can ever run (every candidate is offline), so a broken
/// instrument stops its experiments with a clear message instead of leaving them waiting forever.
pub fn fail_stranded_steps(
    mut steps: Query<(&Step, &mut StepState)>,
    instruments: Query<(&Instrument, &Availability)>,
    mut experiments: Query<(Entity, &Experiment, &mut ExperimentState, &Vessel)>,
    plan: Res<Plan>,
    mut concluded: MessageWriter<ExperimentConcluded>,
    record: Res<Record>,
    clock: Res<LabClock>,
) {
    let offline: HashSet<&str> = instruments
        .iter()
        .filter(|(_, a)| matches!(a, Availability::Offline { .. }))
        .map(|(i, _)| i.name.as_str())
        .collect();
    if offline.is_empty() {
        return;
    }
    for (entity, exp, mut exp_state, vessel) in &mut experiments {
        if *exp_state != ExperimentState::Running {
            continue;
        }
        let mut stranded: Option<String> = None;
        for &s in &exp.steps {
            let Ok((step, st)) = steps.get(s) else { continue };
            if !matches!(st, StepState::Ready { .. }) {
                continue;
            }
            let usable = instruments.iter().any(|(inst, avail)| {
                !matches!(avail, Availability::Offline { .. })
                    && inst.matches(&step.on)
                    && (!step.action.acts_on_vessel()
                        || inst.position.as_ref().map(|p| Place::Position(p.clone())) == Some(vessel.at.clone()))
            });
            let reachable = match &step.action {
                Action::Transfer { to: Destination::Rack } => true,
                Action::Transfer { .. } => plan
                    .transfer_positions
                    .get(&step.index)
                    .is_some_and(|ps| ps.iter().any(|p| position_usable(&plan, p, &offline))),
                _ => true,
            };
            if !usable || !reachable {
                let who = match &step.on {
                    protocols::InstrumentRef::Kind(k) => format!("every {} that could run it is offline", k.name()),
                    protocols::InstrumentRef::Named(n) => format!("`{n}` is offline"),
                };
                stranded = Some(format!("step `{}` cannot run: {who}", step.name));
                break;
            }
        }
        if let Some(why) = stranded {
            let now = clock.now();
            *exp_state = ExperimentState::Failed(why.clone());
            for &s in &exp.steps {
                if let Ok((step, mut st)) = steps.get_mut(s)
                    && matches!(*st, StepState::Ready { .. })
                {
                    *st = StepState::Failed;
                    record.recorder.send(RecordEvent::StepStatus {
                        step: step.id,
                        at: now,
                        status: "failed",
                        instrument: None,
                        outcome: None,
                        error: Some(why.clone()),
                    });
                }
            }
            if skip_unstarted(exp, &mut steps, &record, now, "an earlier step of this experiment failed") == 0 {
                concluded.write(ExperimentConcluded { experiment: entity });
            }
        }
    }
}

/// Whether the instruments standing at `position` are all working.
fn position_usable(plan: &Plan, position: &str, offline: &HashSet<&str>) -> bool {
    plan.lab
        .instruments
        .iter()
        .filter(|i| i.position.as_deref() == Some(position))
        .all(|i| !offline.contains(i.name.as_str()))
}

/// Records finished experiments, tells the learner, and clears them from the world.
pub fn conclude_experiments(
    mut concluded: MessageReader<ExperimentConcluded>,
    experiments: Query<(&Experiment, &ExperimentState, &Readings)>,
    mut state: ResMut<CampaignState>,
    plan: Res<Plan>,
    bridge: Res<Bridge>,
    record: Res<Record>,
    clock: Res<LabClock>,
    mut commands: Commands,
) {
    let mut seen = HashSet::new();
    for c in concluded.read() {
        if !seen.insert(c.experiment) {
            continue;
        }
        let Ok((exp, exp_state, readings)) = experiments.get(c.experiment) else { continue };
        let now = clock.now();
        let (objective, error) = match exp_state {
            ExperimentState::Succeeded => match readings.0.get(&plan.objective) {
                Some(v) => (Some(*v), None),
                None => (None, Some(format!("no reading of `{}` was taken", plan.objective))),
            },
            ExperimentState::Failed(why) => (None, Some(why.clone())),
            ExperimentState::Running => continue,
        };
        record.recorder.send(RecordEvent::ExperimentFinished { id: exp.id, at: now, objective, error: error.clone() });
        let _ = bridge
            .learner
            .send(LearnerRequest::Tell(experiments::Observation { values: exp.values.clone(), objective }));
        state.running = state.running.saturating_sub(1);
        match objective {
            Some(v) => {
                state.succeeded += 1;
                let better = state.best.as_ref().is_none_or(|b| match plan.direction {
                    experiments::Direction::Maximize => v > b.objective,
                    experiments::Direction::Minimize => v < b.objective,
                });
                if better {
                    state.best = Some(Best { seq: exp.seq, values: exp.values.clone(), objective: v });
                }
            }
            None => state.failed += 1,
        }
        for &s in &exp.steps {
            commands.entity(s).despawn();
        }
        commands.entity(c.experiment).despawn();
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
                proposal: p.clone(),
            });
            state.queue.push_back((id, p.clone()));
        }
    }
}

/// Asks the learner for enough proposals to keep the in-flight limit full, while experiments still run.
pub fn request_proposals(mut state: ResMut<CampaignState>, bridge: Res<Bridge>, experiments: Query<&Experiment>) {
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
    if bridge.learner.send(LearnerRequest::Ask { n, pending }).is_ok() {
        state.requested += n;
    }
}

/// Starts queued proposals as experiments, up to the in-flight limit.
pub fn start_experiments(
    mut commands: Commands,
    mut state: ResMut<CampaignState>,
    mut rack: ResMut<RackState>,
    plan: Res<Plan>,
    record: Res<Record>,
    clock: Res<LabClock>,
    mut progress: ResMut<Progress>,
) {
    while !state.stopping && state.running < state.in_flight && state.started < state.budget {
        let Some((proposal_id, proposal)) = state.queue.pop_front() else { break };
        let Some(slot) = rack.fresh.pop_front() else {
            state.queue.push_front((proposal_id, proposal));
            state.stopping = true;
            state.stop_reason = Some("the rack has no fresh vessels left".to_owned());
            break;
        };
        let now = clock.now();
        let mut values = plan.fixed.clone();
        values.extend(proposal.values.clone());
        let bound = match plan.protocol.bind(&values) {
            Ok(b) => b,
            Err(e) => {
                // The campaign was checked against the protocol, so this is a proposer bug; record it and go on.
                record.recorder.send(RecordEvent::Event {
                    campaign: record.campaign,
                    at: now,
                    level: "error",
                    instrument: None,
                    message: format!("proposal {proposal_id} was not run: {e}"),
                });
                rack.fresh.push_front(slot);
                continue;
            }
        };
        let seq = state.started + 1;
        let exp_id = state.next_experiment;
        state.next_experiment += 1;
        let exp_entity = commands.spawn_empty().id();
        let step_entities: Vec<Entity> = bound.steps.iter().map(|_| commands.spawn_empty().id()).collect();
        let mut dependents: Vec<Vec<Entity>> = vec![Vec::new(); bound.steps.len()];
        for (j, s) in bound.steps.iter().enumerate() {
            for &a in &s.after {
                dependents[a].push(step_entities[j]);
            }
        }
        let mut rows = Vec::with_capacity(bound.steps.len());
        for (i, s) in bound.steps.iter().enumerate() {
            let id = state.next_step;
            state.next_step += 1;
            let ready = s.after.is_empty();
            let st =
                if ready { StepState::Ready { since: now } } else { StepState::Waiting { remaining: s.after.len() } };
            commands.entity(step_entities[i]).insert((
                Step {
                    id,
                    experiment: exp_entity,
                    index: i,
                    name: s.id.clone(),
                    on: s.on.clone(),
                    action: s.action.clone(),
                },
                st,
                Dependents(std::mem::take(&mut dependents[i])),
            ));
            rows.push(StepRow {
                id,
                step: s.id.clone(),
                op: s.action.name().to_owned(),
                action: serde_json::to_string(&s.action).unwrap_or_default(),
                after: s.after.iter().map(|&a| bound.steps[a].id.clone()).collect(),
                repeat_safe: s.action.repeat_safe(),
                ready,
            });
        }
        commands.entity(exp_entity).insert((
            Experiment {
                id: exp_id,
                seq,
                values: bound.values.clone(),
                proposal: Some(proposal_id),
                slot,
                steps: step_entities,
                unfinished: bound.steps.len(),
                started_at: now,
            },
            ExperimentState::Running,
            Vessel { at: Place::Rack(slot) },
            Readings::default(),
        ));
        let params = plan
            .protocol
            .parameters()
            .iter()
            .map(|p| (p.name.clone(), bound.values[&p.name], p.unit.symbol.to_owned()))
            .collect();
        record.recorder.send(RecordEvent::ExperimentStarted {
            id: exp_id,
            campaign: record.campaign,
            seq: seq as i64,
            proposal: Some(proposal_id),
            params,
            vessel: slot as i64,
            at: now,
            steps: rows,
        });
        state.started += 1;
        state.running += 1;
        state.peak_in_flight = state.peak_in_flight.max(state.running);
        progress.0 = true;
    }
}

/// Gives each idle instrument the oldest ready step it can run, and dispatches it.
#[expect(clippy::too_many_arguments, reason = "a system's parameters are its data dependencies")]
pub fn assign_instruments(
    mut steps: Query<(Entity, &Step, &mut StepState)>,
    mut instruments: Query<(Entity, &Instrument, &mut Availability)>,
    experiments: Query<(&Experiment, &Vessel)>,
    mut deck: ResMut<DeckState>,
    plan: Res<Plan>,
    bridge: Res<Bridge>,
    record: Res<Record>,
    clock: Res<LabClock>,
    state: Res<CampaignState>,
    mut progress: ResMut<Progress>,
) {
    if state.aborted {
        return;
    }
    let mut idle: Vec<(Entity, Instrument)> =
        instruments.iter().filter(|(_, _, a)| **a == Availability::Idle).map(|(e, i, _)| (e, i.clone())).collect();
    if idle.is_empty() {
        return;
    }
    let offline: HashSet<String> = instruments
        .iter()
        .filter(|(_, _, a)| matches!(a, Availability::Offline { .. }))
        .map(|(_, i, _)| i.name.clone())
        .collect();
    let offline_ref: HashSet<&str> = offline.iter().map(String::as_str).collect();
    // Oldest experiment first, then protocol order: finishing what is started keeps vessels moving.
    let mut ready: Vec<(usize, usize, Entity, f64)> = steps
        .iter()
        .filter_map(|(e, s, st)| match st {
            StepState::Ready { since } => experiments.get(s.experiment).ok().map(|(x, _)| (x.seq, s.index, e, *since)),
            _ => None,
        })
        .collect();
    ready.sort_by_key(|r| (r.0, r.1));
    let now = clock.now();
    for (seq, index, entity, since) in ready {
        if idle.is_empty() {
            break;
        }
        let Ok((_, step, _)) = steps.get(entity) else { continue };
        let step = step.clone();
        let Ok((exp, vessel)) = experiments.get(step.experiment) else { continue };
        let at_vessel = |inst: &Instrument| {
            !step.action.acts_on_vessel()
                || inst.position.as_ref().map(|p| Place::Position(p.clone())) == Some(vessel.at.clone())
        };
        let Some(k) = idle.iter().position(|(_, inst)| inst.matches(&step.on) && at_vessel(inst)) else { continue };
        let destination = match &step.action {
            Action::Transfer { to: Destination::Rack } => Some(Place::Rack(exp.slot)),
            Action::Transfer { .. } => {
                let Some(p) = plan
                    .transfer_positions
                    .get(&index)
                    .and_then(|ps| ps.iter().find(|p| deck.is_free(p) && position_usable(&plan, p, &offline_ref)))
                else {
                    continue;
                };
                Some(Place::Position(p.clone()))
            }
            _ => None,
        };
        let (inst_entity, inst) = idle.remove(k);
        if let Some(Place::Position(p)) = &destination {
            deck.reserved.insert(p.clone(), step.experiment);
        }
        let task = task_for(&step.action, &vessel.at, destination.clone());
        let Some(tx) = bridge.instruments.get(&inst_entity) else { continue };
        if tx.send(Dispatch { step: entity, step_id: step.id, task }).is_err() {
            // The instrument's task has ended; nothing can run on it any more.
            if let Ok((_, _, mut avail)) = instruments.get_mut(inst_entity) {
                *avail = Availability::Offline { reason: "its I/O task has stopped".to_owned() };
            }
            continue;
        }
        if let Ok((_, _, mut st)) = steps.get_mut(entity) {
            *st = StepState::Running { instrument: inst_entity, destination: destination.clone(), started: now };
        }
        if let Ok((_, _, mut avail)) = instruments.get_mut(inst_entity) {
            *avail = Availability::Busy { step: entity };
        }
        let place = destination.as_ref().map(|d| d.to_string());
        record.recorder.send(RecordEvent::StepStatus {
            step: step.id,
            at: now,
            status: "running",
            instrument: Some(inst.name.clone()),
            outcome: None,
            error: None,
        });
        record.recorder.send(RecordEvent::Decision {
            campaign: record.campaign,
            at: now,
            step: step.id,
            instrument: inst.name.clone(),
            place: place.clone(),
            waited: now - since,
            reason: format!(
                "oldest ready step (experiment #{seq}, step `{}`); `{}` was idle{}",
                step.name,
                inst.name,
                place.map(|p| format!(" and {p} was free")).unwrap_or_default()
            ),
        });
        progress.0 = true;
    }
}

/// The instrument task for a step's action, with places resolved.
fn task_for(action: &Action, at: &Place, destination: Option<Place>) -> Task {
    match action {
        Action::Transfer { .. } => Task::Transfer { from: at.clone(), to: destination.unwrap_or_else(|| at.clone()) },
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
