//! Holds for maximum waits: which instruments to promise to the steps that must follow a step within a maximum wait
//! (`within`), and when a step is expected to end.

use bevy_ecs::prelude::*;
use devices::Place;

use crate::schedule::components::{Availability, Dependents, Hold, Holds, Instrument, Step, StepState};
use crate::schedule::resources::Schedule;

/// How long before a follower is expected to be ready its instrument is held, for a wait of `wait` lab seconds: a
/// twentieth of the wait, at least a minute, at most a fifth (all of it below five minutes). A step may end before
/// its estimate (a plate that heats faster than its figures), and the instrument must be free by then; but a fifth of
/// a 90-minute heat kept the gantry from all other work for 18 minutes before each heat's end, and with a vial on
/// each of 96 plates the gantry was held nearly all the time (`load` with a maximum wait after its heats: 18,600 lab
/// s, three times its lower bound, the gantry busy 29% of it).
fn hold_margin(wait: f64) -> f64 {
    (0.05 * wait).max(60.0).min(0.2 * wait)
}

/// Where [`follower_holds`] would hold the followers' instruments.
pub(super) enum Held {
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
pub(super) fn follower_holds(
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
            // When the follower is expected to be ready (its dependencies' expected ends), the hold's start
            // [`hold_margin`] before that, and the latest the follower may start.
            let ready = f
                .after
                .iter()
                .filter(|&&p| p != step)
                .map(|&p| expected_end(p, now, steps, chosen))
                .fold(now + s.estimate, f64::max);
            let from = ready - hold_margin(ready - now);
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
