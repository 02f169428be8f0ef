//! Places on the deck, as dispatch weighs them: the plan does not see which vessel stands where, so these say which
//! step a taken place waits for, and where the plan wants a vessel to go.

use bevy_ecs::prelude::*;
use protocols::{Action, Destination};

use crate::schedule::components::{Availability, Dependents, Holds, Instrument, Step, StepState};
use crate::schedule::resources::{DeckState, ReadyIndex, Schedule, Source};

/// The step to run first on instrument `inst`, held for a move that cannot start for want of a place: the move of
/// the vessel standing at the place the held move would take its own vessel to, if that move is ready and filed
/// under `inst`. Returns it, the place, and the held step.
pub(super) fn freeing_step(
    inst: Entity,
    steps: &Query<(Entity, &Step, &mut StepState)>,
    instruments: &Query<(Entity, &Instrument, &mut Availability, &mut Holds)>,
    deck: &DeckState,
    index: &ReadyIndex,
    source: &Source,
) -> Option<(Entity, String, Entity)> {
    let Source::Campaign(cs) = source else { return None };
    let (_, _, _, holds) = instruments.get(inst).ok()?;
    let queue = index.queues.get(&inst)?;
    holds.0.iter().filter(|h| !h.kept).find_map(|h| {
        let (_, held, st) = steps.get(h.step).ok()?;
        if !matches!(st, StepState::Ready { .. }) {
            return None;
        }
        let Some(Action::Transfer { to }) = held.work.action() else { return None };
        if matches!(to, Destination::Rack) {
            return None;
        }
        let choices = cs.transfer_positions.get(&held.index)?;
        // Only when no place it may go to is free: otherwise it can start, and nothing needs freeing.
        if choices.iter().any(|p| deck.is_free_for(p, held.experiment)) {
            return None;
        }
        choices.iter().find_map(|p| {
            let occupant = *deck.occupant.get(p)?;
            if occupant == held.experiment {
                return None;
            }
            queue
                .iter()
                .find(|k| {
                    steps.get(k.step).is_ok_and(|(_, s, st)| {
                        s.experiment == occupant
                            && matches!(st, StepState::Ready { .. })
                            && matches!(s.work.action(), Some(Action::Transfer { .. }))
                    })
                })
                .map(|k| (k.step, format!("`{p}`"), h.step))
        })
    })
}

/// Whether planned step `step` on instrument `inst` is kept out by the vessel standing there: the step acts on a
/// vessel of its own experiment, and another experiment's vessel occupies the instrument's position with a ready
/// step filed on it. That vessel leaves only after its step runs.
pub(super) fn kept_out_by_occupant(
    step: Entity,
    inst: &Instrument,
    deck: &DeckState,
    steps: &Query<(Entity, &Step, &mut StepState)>,
    index: &ReadyIndex,
    inst_entity: Entity,
) -> bool {
    let Some(occupant) = inst.position.as_ref().and_then(|p| deck.occupant.get(p)) else { return false };
    let Ok((_, s, _)) = steps.get(step) else { return false };
    s.work.acts_on_vessel()
        && s.experiment != *occupant
        && index
            .queues
            .get(&inst_entity)
            .is_some_and(|q| q.iter().any(|k| steps.get(k.step).is_ok_and(|(_, o, _)| o.experiment == *occupant)))
}

/// The position of the instrument the plan gave to the first vessel step after `transfer`.
pub(super) fn planned_position(
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
