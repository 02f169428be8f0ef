//! Systems: what the scheduler does each frame, in order.
//!
//! A frame drains the inbox; carries out operators' requests; applies finished steps (freeing instruments, moving
//! vessels, keeping readings, releasing the steps that waited for them, retrying what is safe to retry, and putting
//! what may have acted and failed into the "unknown" state); concludes finished experiments (telling the learner);
//! takes new proposals and asks for more while experiments still run; starts experiments up to the in-flight limit;
//! replans if the work changed; and gives every idle instrument the step the plan (or, without one, the critical
//! path) says it should run next. Every decision and state change is recorded.
//!
//! Each set has its file, so the file a system lives in says when it runs: [`ingest`], [`conclude`], [`propose`] and
//! [`dispatch`], chained in that order by [`crate::schedule::install`]. The helpers several sets share are here.

pub mod conclude;
pub mod dispatch;
pub mod ingest;
pub mod propose;

use std::collections::HashSet;

use bevy_ecs::prelude::*;

use crate::record::RecordEvent;
use crate::schedule::components::{Dependents, Experiment, Step, StepState};
use crate::schedule::resources::Record;

/// Records a step's new state.
pub(super) fn record_step(
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

pub(super) fn skip_unstarted(
    exp: &Experiment,
    steps: &mut Query<(Entity, &Step, &mut StepState)>,
    record: &Record,
    now: f64,
    why: &str,
) -> usize {
    skip_unstarted_entities(&exp.steps, steps, record, now, why)
}

/// Skips every waiting or ready step among `list`; returns how many are still running or unknown.
pub(super) fn skip_unstarted_entities(
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

pub(super) fn still_running(list: &[Entity], steps: &Query<(Entity, &Step, &mut StepState)>) -> usize {
    list.iter()
        .filter(|&&s| matches!(steps.get(s), Ok((_, _, StepState::Running { .. } | StepState::Unknown { .. }))))
        .count()
}

/// Moves the dependents of a succeeded step towards ready.
pub(super) fn release_dependents(
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

/// Whether the instruments standing at `position` are all working.
pub(super) fn position_usable(
    c: &crate::schedule::resources::CampaignSource,
    position: &str,
    offline: &HashSet<&str>,
) -> bool {
    c.lab
        .instruments
        .iter()
        .filter(|i| i.position.as_deref() == Some(position))
        .all(|i| !offline.contains(i.name.as_str()))
}
