//! The *Propose* set: proposals become experiments, and the learner is asked for more while experiments still run.
//!
//! [`receive_proposals`] takes what the learner sent, [`request_proposals`] asks for the next batch when the queue
//! runs low, and [`start_experiments`] starts experiments up to the in-flight limit, each in its own vessel.

use bevy_ecs::prelude::*;
use devices::Place;
use protocols::InstrumentRef;

use crate::record::{ProposalRow, RecordEvent, StepRow};
use crate::schedule::bridge::{Bridge, LearnerRequest};
use crate::schedule::components::{
    Attempts, Availability, Dependents, Experiment, ExperimentState, Instrument, Readings, Step, StepState, Vessel,
    Work,
};
use crate::schedule::messages::ProposalsArrived;
use crate::schedule::resources::{
    CampaignSource, CampaignState, Estimates, Job, LabClock, Progress, RackState, ReadyIndex, Record, Schedule, Source,
};
use crate::schedule::stock::{self, Stock};

/// The first reagent of a queued proposal's dispenses that the bottles cannot give now, with how short it is; `None`
/// for a proposal that can start, or that does not bind (which [`start_experiments`] refuses).
fn shortage_of(
    cs: &CampaignSource,
    stock: &Stock,
    proposal: &experiments::Proposal,
) -> Option<(String, stock::Shortage)> {
    let mut values = cs.fixed.clone();
    values.extend(proposal.values.clone());
    let bound = cs.protocol.bind_with(&values, &cs.reagents_at(&values)).ok()?;
    stock.shortage(&stock.needs(bound.steps.iter().map(|s| &s.action).enumerate()))
}

/// The place in the queue of the first proposal whose dispenses the bottles can serve now; says once in the record
/// what the others wait for. A proposal that does not bind is left for [`start_experiments`] to refuse.
fn startable(
    cs: &CampaignSource,
    state: &CampaignState,
    stock: &mut Stock,
    record: &Record,
    now: f64,
) -> Option<usize> {
    let mut short = std::collections::BTreeMap::new();
    let mut found = None;
    for (k, (_, proposal)) in state.queue.iter().enumerate() {
        match shortage_of(cs, stock, proposal) {
            None => {
                found = Some(k);
                break;
            }
            Some((reagent, s)) => {
                short.entry(reagent).or_insert(s);
            }
        }
    }
    // With the whole queue read, a reagent no queued proposal is short of is waited for no more.
    if found.is_none() {
        stock.waiting.retain(|r, _| short.contains_key(r));
    }
    for (reagent, s) in &short {
        if stock.waiting.get(reagent) != Some(s) {
            record.recorder.send(RecordEvent::say(
                record.campaign,
                now,
                "warning",
                None,
                stock::waiting_message(reagent, s),
            ));
            stock.waiting.insert(reagent.clone(), s.clone());
        }
    }
    found
}

/// Where a step runs: a dispense of a reagent that only one of the step's candidate pumps reaches runs on that pump,
/// so the planner never plans it on a pump that cannot draw it.
pub(crate) fn reagent_pump(lab: &devices::Lab, on: &InstrumentRef, action: &protocols::Action) -> InstrumentRef {
    let protocols::Action::Dispense { reagent: Some(r), .. } = action else { return on.clone() };
    let mut pumps: Vec<String> = lab
        .sources(r)
        .iter()
        .map(|s| s.pump().to_owned())
        .filter(|p| lab.candidates(on).any(|c| &c.name == p))
        .collect();
    pumps.dedup();
    match pumps.as_slice() {
        [one] => InstrumentRef::Named(one.clone()),
        _ => on.clone(),
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
        for (i, p) in a.proposals.iter().enumerate() {
            let id = state.next_proposal;
            state.next_proposal += 1;
            let row = ProposalRow { claim: a.claims.get(i).cloned(), ..ProposalRow::new(p, state.told.clone()) };
            record.recorder.send(RecordEvent::Proposal {
                id,
                campaign: record.campaign,
                at: clock.now(),
                proposal: Box::new(row),
            });
            state.queue.push_back((id, p.clone()));
        }
    }
}

/// Asks the learner for enough proposals to keep the in-flight limit full, while experiments still run.
///
/// A queued proposal held for a reagent the bottles cannot give does not take an in-flight place: the learner is
/// asked for others, told which levels of the reagent parameters it should avoid until a restock (the reagents the
/// record says experiments wait for), so the instruments keep working while the held ones wait. At most `in_flight`
/// proposals are held at once, so a long wait does not spend the budget on proposals that cannot start.
pub fn request_proposals(
    mut state: ResMut<CampaignState>,
    bridge: Res<Bridge>,
    experiments: Query<&Experiment>,
    source: Res<Source>,
    stock: Res<Stock>,
    clock: Res<LabClock>,
) {
    let Some(learner) = &bridge.learner else { return };
    if state.stopping {
        return;
    }
    let (held, unavailable) = match &*source {
        Source::Campaign(cs) if !stock.waiting.is_empty() => {
            let held = state.queue.iter().filter(|(_, p)| shortage_of(cs, &stock, p).is_some()).count();
            let unavailable: Vec<(String, f64)> = cs
                .reagents
                .iter()
                .flat_map(|(name, levels)| {
                    levels
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| stock.waiting.contains_key(*r))
                        .map(move |(i, _)| (name.clone(), (i + 1) as f64))
                })
                .collect();
            (held, unavailable)
        }
        _ => (0, Vec::new()),
    };
    let planned = state.started + state.queue.len() + state.requested;
    let by_budget = state.budget.saturating_sub(planned);
    let startable = state.queue.len() - held;
    let by_flight = state
        .in_flight
        .saturating_sub(state.running + startable + state.requested)
        .min((2 * state.in_flight).saturating_sub(state.running + state.queue.len() + state.requested));
    let n = by_budget.min(by_flight);
    if n == 0 {
        return;
    }
    let pending: Vec<experiments::Point> =
        experiments.iter().map(|e| e.values.clone()).chain(state.queue.iter().map(|(_, p)| p.values.clone())).collect();
    if learner.send(LearnerRequest::Ask { n, pending, unavailable, hold: clock.0.hold() }).is_ok() {
        state.requested += n;
    }
}

/// The first step of the protocol that no working instrument can run, with why: every instrument it may run on is
/// offline for the rest of this run. An experiment started now would do its first steps (dispense reagents, heat a
/// vial) and fail at that one, so none starts.
fn unrunnable(cs: &CampaignSource, instruments: &Query<(&Instrument, &Availability)>) -> Option<String> {
    // Every frame asks, so the common answer (nothing is offline) costs one pass over the instruments.
    if !instruments.iter().any(|(_, a)| matches!(a, Availability::Offline { .. })) {
        return None;
    }
    let working = |on: &InstrumentRef| {
        instruments.iter().any(|(i, a)| !matches!(a, Availability::Offline { .. }) && i.matches(on))
    };
    cs.protocol.steps().iter().find(|s| !working(&s.on)).map(|s| {
        let offline: Vec<String> = instruments
            .iter()
            .filter(|(i, a)| matches!(a, Availability::Offline { .. }) && i.matches(&s.on))
            .map(|(i, _)| format!("`{}`", i.name))
            .collect();
        format!(
            "step `{}` needs {}, offline for the rest of this run ({})",
            s.id,
            match &s.on {
                InstrumentRef::Kind(k) => format!("a {}", k.name()),
                InstrumentRef::Named(n) => format!("`{n}`"),
            },
            offline.join(", ")
        )
    })
}

/// Starts experiments up to the in-flight limit: queued proposals bound to the protocol, or jobs of a fixed list.
///
/// Once an instrument a step needs is offline for the rest of the run (nothing else can run that step), no new
/// experiment starts: the campaign is halted, the running ones end, and the run stops without finishing the
/// campaign, so that `lab resume` carries it on once the instrument works again. The budget is not spent on
/// experiments that could only fail.
pub fn start_experiments(
    mut commands: Commands,
    mut state: ResMut<CampaignState>,
    mut rack: ResMut<RackState>,
    mut source: ResMut<Source>,
    mut stock: ResMut<Stock>,
    estimates: Res<Estimates>,
    mut schedule: ResMut<Schedule>,
    mut index: ResMut<ReadyIndex>,
    record: Res<Record>,
    clock: Res<LabClock>,
    mut progress: ResMut<Progress>,
    instruments: Query<(&Instrument, &Availability)>,
) {
    if let Source::Campaign(cs) = &*source
        && state.may_start()
        && let Some(why) = unrunnable(cs, &instruments)
    {
        record.recorder.send(RecordEvent::say(
            record.campaign,
            clock.now(),
            "error",
            None,
            format!(
                "no new experiment starts: {why}. The running ones finish, then the controller stops without \
                 finishing the campaign; repair or replace the instrument, then `lab resume` carries it on"
            ),
        ));
        state.halted = Some(why);
    }
    while state.may_start() && state.running < state.in_flight {
        let now = clock.now();
        let seq = state.started + 1;
        let exp_id = state.next_experiment;
        let mut needs = stock::Needs::default();
        let (job, values, proposal, slot, params) = match &mut *source {
            Source::Jobs(jobs) => {
                let Some(job) = jobs.pop_front() else { break };
                (job, Default::default(), None, None, Vec::new())
            }
            Source::Campaign(cs) => {
                // The first queued proposal whose reagents can be reserved starts; one that needs a reagent its
                // bottles cannot give waits in the queue (and the record says what for, once), while others start.
                let Some(k) = startable(cs, &state, &mut stock, &record, now) else { break };
                let Some((proposal_id, proposal)) = state.queue.remove(k) else { break };
                let Some(slot) = rack.fresh.pop_front() else {
                    state.queue.push_front((proposal_id, proposal));
                    state.stopping = true;
                    state.stop_reason = Some("the rack has no fresh vessels left".to_owned());
                    break;
                };
                let mut values = cs.fixed.clone();
                values.extend(proposal.values.clone());
                let bound = match cs.protocol.bind_with(&values, &cs.reagents_at(&values)) {
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
                        .map(|s| crate::schedule::resources::JobStep {
                            name: s.id.clone(),
                            on: reagent_pump(&cs.lab, &s.on, &s.action),
                            duration: crate::schedule::estimate::action(&cs.lab, &s.on, &s.action) * 1.0,
                            action: Some(s.action.clone()),
                            after: s.after.clone(),
                            rules: s.rules,
                        })
                        .collect(),
                };
                needs = stock.needs(bound.steps.iter().map(|s| &s.action).enumerate());
                let params =
                    cs.protocol
                        .parameters()
                        .iter()
                        .map(|p| (p.name.clone(), bound.values[&p.name], p.unit.symbol.to_owned()))
                        // A reagent parameter the campaign varies is recorded as its level's number (the learner's
                        // value, and what a resumed campaign binds again); the reagent is in `stock_events`.
                        .chain(cs.protocol.reagent_parameters().iter().filter_map(|p| {
                            bound.values.get(&p.name).map(|v| (p.name.clone(), *v, "level".to_owned()))
                        }))
                        .collect();
                (job, bound.values, Some(proposal_id), Some(slot), params)
            }
        };
        state.next_experiment += 1;
        let exp_entity = commands.spawn_empty().id();
        match stock.reserve(exp_entity, &needs) {
            Ok(reserved) => stock::record_reserved(
                &record.recorder,
                record.campaign,
                now,
                &stock,
                reserved,
                exp_id,
                &format!("for experiment #{seq}, before it started"),
            ),
            // `startable` checked this experiment's needs against the same stock a moment ago.
            Err((reagent, _)) => {
                unreachable!("the reservation of `{reagent}` was checked before the experiment started")
            }
        }
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
