//! The stock of a resumed campaign: what the experiments it carries on still need is reserved again (their
//! reservations died with the controller), and a dispense that was under way when it stopped stays charged in full.

use bevy_ecs::prelude::*;
use protocols::Action;

use super::Restore;
use crate::record::{RecordEvent, Recorder};
use crate::schedule::stock::Stock;

/// An experiment the resumed campaign carries on, as [`reserve_again`] needs it.
pub(super) struct Carried {
    pub(super) entity: Entity,
    pub(super) id: i64,
    pub(super) seq: usize,
    /// The actions of its dispenses still to run, each with its step's index in the protocol.
    pub(super) pending: Vec<(usize, Action)>,
    /// Its dispenses in doubt (the controller stopped while they ran), by step id.
    pub(super) in_doubt: Vec<i64>,
}

/// Reserves again what the experiments the resumed campaign carries on still need (their reservations died with the
/// controller), and keeps each dispense in doubt charged in full: its `drawn` row stands, and the bottle may hold
/// more than the controller counts. An experiment whose needs no longer fit goes on; the record says which reagent
/// is short, and its dispense waits for `lab restock`.
pub(super) fn reserve_again(stock: &mut Stock, carried: &[Carried], r: &Restore, recorder: &Recorder, now: f64) {
    for Carried { entity: exp_entity, id, seq, pending, in_doubt } in carried {
        for step in in_doubt {
            let Some(key) = r.drawn_by_step.get(step) else { continue };
            let Some(b) = stock.bottles.get(key) else { continue };
            let reagent = b.reagent.clone();
            stock.charge(key, *exp_entity, 0.0, true);
            recorder.send(RecordEvent::Stock {
                campaign: r.campaign,
                at: now,
                bottle: key.clone(),
                reagent,
                kind: "adjusted".into(),
                volume: 0.0,
                experiment: Some(*id),
                step: Some(*step),
                unknown: true,
                left: stock.bottles.get(key).and_then(|b| b.left()),
                note: "charged in full: the dispense was in doubt when the controller stopped".into(),
            });
        }
        let needs = stock.needs(pending.iter().map(|(i, a)| (*i, a)));
        match stock.reserve(*exp_entity, &needs) {
            Ok(reserved) => crate::schedule::stock::record_reserved(
                recorder,
                r.campaign,
                now,
                stock,
                reserved,
                *id,
                &format!("for experiment #{seq}, again as the campaign resumed"),
            ),
            Err((reagent, short)) => recorder.send(RecordEvent::say(
                r.campaign,
                now,
                "warning",
                None,
                format!(
                    "experiment #{seq} carries on after the resume, but {}; its dispense waits until then",
                    crate::schedule::stock::waiting_message(&reagent, &short)
                ),
            )),
        }
    }
}
