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

use protocols::Action;

use crate::record::RecordEvent;
use crate::schedule::components::{Condition, Dependents, Experiment, Step, StepState};
use crate::schedule::estimate::{Rates, State};
use crate::schedule::resources::{Record, Source};

/// The lab seconds a step may run before the controller fails it: its protocol's `timeout`, else three times what it
/// is expected to take and five minutes more. What it is expected to take is the larger of the step's own figure
/// (the slowest instrument that may run it, from a cold start) and what `task` takes on the instrument `instrument`
/// of the campaign's lab, started at `now` in the condition its last step left it in, as `lab plan` follows it: a
/// heat at 30 degC on a plate still at 90 must first wait for it to cool, which a cold start does not count, and a
/// bound that did not count it would fail the heat on a real lab (no floor of wall time stands in for it there).
pub(crate) fn step_timeout(
    step: &Step,
    source: &Source,
    instrument: &str,
    condition: Option<&Condition>,
    task: Option<&devices::Task>,
    now: f64,
) -> f64 {
    let lab = match source {
        Source::Campaign(c) => Some(&*c.lab),
        Source::Jobs(_) => None,
    };
    timeout_in(step, lab, instrument, condition, task, now)
}

/// [`step_timeout`] of a step of a campaign on `lab` (none for a workload's, whose steps have only their figure).
fn timeout_in(
    step: &Step,
    lab: Option<&devices::lab::Lab>,
    instrument: &str,
    condition: Option<&Condition>,
    task: Option<&devices::Task>,
    now: f64,
) -> f64 {
    if let Some(t) = step.rules.timeout {
        return t.0;
    }
    let in_condition = match (lab, task) {
        (Some(lab), Some(task)) => lab.instrument(instrument).map_or(0.0, |spec| {
            let mut state = condition.map_or_else(State::default, |c| c.0);
            Rates::of(lab, spec).run(lab, spec, &mut state, task, now)
        }),
        _ => 0.0,
    };
    step.estimate.max(in_condition) * 3.0 + 300.0
}

/// The condition `action` leaves its instrument in once it ended at `ended`, if it changes what the next step takes:
/// a heat or a hold leaves the plate at its set point with its heater off from then (a heat that failed is taken to
/// have got there too, so the next step's bound is the longer one).
pub(crate) fn condition_after(action: Option<&Action>, ended: f64) -> Option<Condition> {
    match action? {
        Action::Heat { temperature, .. } | Action::HoldTemperature { temperature, .. } => {
            Some(Condition(State { plate: Some((temperature.0, ended)), gantry: None }))
        }
        _ => None,
    }
}

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

#[cfg(test)]
mod tests {
    use protocols::units::{Duration, Temperature};
    use protocols::{InstrumentKind, InstrumentRef, StepRules};

    use super::*;
    use crate::schedule::components::Work;

    /// The demo lab's file.
    fn sim_lab() -> devices::lab::Lab {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../devices/labs/sim.lab.ron");
        let text = std::fs::read_to_string(&path).expect("the demo lab");
        devices::load_lab(protocols::SourceFile::new(path.display().to_string(), text)).expect("it loads")
    }

    /// A heat at `temperature` degC held a minute, as the scheduler makes it, and its task.
    fn heat(lab: &devices::lab::Lab, temperature: f64) -> (Step, devices::Task) {
        let action = Action::Heat { temperature: Temperature(temperature), duration: Duration(60.0), stir: None };
        let on = InstrumentRef::Kind(InstrumentKind::Hotplate);
        let estimate = crate::schedule::estimate::action(lab, &on, &action);
        let task = devices::Task::Heat { temperature: Temperature(temperature), duration: Duration(60.0), stir: None };
        let step = Step {
            id: 1,
            experiment: Entity::PLACEHOLDER,
            index: 0,
            name: "heat".into(),
            on,
            work: Work::Action(action),
            rules: StepRules::default(),
            estimate,
            tail: 0.0,
            after: Vec::new(),
            leads_within: false,
        };
        (step, task)
    }

    #[test]
    fn a_heat_after_a_hotter_one_may_take_the_plates_cooling_and_a_cold_one_its_figure() {
        let lab = sim_lab();
        let (step, task) = heat(&lab, 30.0);
        let cold = timeout_in(&step, Some(&lab), "hotplate_1", None, Some(&task), 1000.0);
        // A minute's hold at 30 degC from a cold plate: well under the 1,371 lab s the demo's simulated plate took
        // to cool from 90 degC, which is what failed the heat when the bound did not count the plate's condition.
        assert!(cold < 1371.0, "{cold}");
        assert!(cold >= step.estimate * 3.0 + 300.0 - 1e-9, "{cold}");
        // The plate left at 90 degC a moment ago: the bound is three times the cooling `lab plan` expects, and more.
        let (hot, _) = heat(&lab, 90.0);
        let left = condition_after(hot.work.action(), 1000.0).expect("a heat leaves its plate hot");
        let after_hot = timeout_in(&step, Some(&lab), "hotplate_1", Some(&left), Some(&task), 1000.0);
        let spec = lab.instrument("hotplate_1").expect("the demo's first plate");
        let mut state = left.0;
        let expected = Rates::of(&lab, spec).run(&lab, spec, &mut state, &task, 1000.0);
        assert!(expected > 1371.0, "cooling from 90 to 30 degC takes the plan {expected} lab s");
        // A stuck plate is still failed: the bound is that expectation's, finite, and no longer.
        assert!((after_hot - (expected * 3.0 + 300.0)).abs() < 1e-6, "{after_hot} against {expected}");
        // Once the plate has cooled, the cold figure is back.
        let later = timeout_in(&step, Some(&lab), "hotplate_1", Some(&left), Some(&task), 1000.0 + 36_000.0);
        assert!((later - cold).abs() < 1.0, "{later} against {cold}");
        // A protocol's own timeout is the bound, whatever the plate.
        let mut own = step.clone();
        own.rules.timeout = Some(Duration(90.0));
        assert_eq!(timeout_in(&own, Some(&lab), "hotplate_1", Some(&left), Some(&task), 1000.0), 90.0);
        // A workload's step has only its figure.
        assert_eq!(
            timeout_in(&step, None, "hotplate_1", Some(&left), Some(&task), 1000.0),
            step.estimate * 3.0 + 300.0
        );
    }
}
