//! What each bottle holds, as the controller knows it: the lab file's volumes, less what was drawn, less what
//! running experiments have reserved, plus what a technician refilled.
//!
//! [`Stock`] is a resource of the world, and every change to it is also a `stock_events` row of the record
//! (declared, reserved, drawn, released, refilled, adjusted), so the record's fold over those rows is the same
//! number. An experiment reserves everything its dispenses will draw before it starts; an experiment whose draws
//! cannot be reserved waits, and the others run. A dispense resolves to a source at dispatch: a bottle the pump
//! reaches, where the experiment's reservation stands. A dispense that may have acted and failed is charged in
//! full, so the stock the controller believes is never more than what is in the bottle (it may be less).

use std::collections::{BTreeMap, HashMap};

use bevy_ecs::prelude::*;
use devices::Lab;
use devices::lab::Source;

/// Microlitres below which two volumes are the same.
const EPSILON: f64 = 1e-6;

/// One bottle as the controller knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Bottle {
    /// Where it is drawn from.
    pub source: Source,
    /// The reagent.
    pub reagent: String,
    /// Microlitres a pump could draw from it when declared or last refilled, counting refills; `None` for an
    /// untracked bottle, which never runs out.
    pub usable: Option<f64>,
    /// Microlitres drawn since.
    pub drawn: f64,
    /// Microlitres reserved by experiments not yet drawn, by experiment.
    pub reserved: BTreeMap<Entity, f64>,
    /// Whether a draw of unknown outcome was charged in full, so the bottle may hold more than the controller says.
    pub at_most: bool,
}

impl Bottle {
    /// Microlitres neither drawn nor reserved; `None` for an untracked bottle.
    pub fn free(&self) -> Option<f64> {
        self.usable.map(|u| u - self.drawn - self.reserved.values().sum::<f64>())
    }

    /// Microlitres still in the bottle above its dead volume; `None` for an untracked bottle.
    pub fn left(&self) -> Option<f64> {
        self.usable.map(|u| u - self.drawn)
    }
}

/// A dispense under way: the valve it claimed, and the bottle it draws from.
#[derive(Debug, Clone, PartialEq)]
pub struct Draw {
    /// The experiment.
    pub experiment: Entity,
    /// The bottle, by [`Source::key`].
    pub key: String,
    /// The valve the dispense turned, claimed with the pump until the step ends.
    pub valve: Option<Entity>,
    /// Microlitres asked for.
    pub volume: f64,
}

/// A reagent some experiment waits for.
#[derive(Debug, Clone, PartialEq)]
pub struct Shortage {
    /// Microlitres free in its bottles.
    pub free: f64,
    /// Microlitres the next experiment needs.
    pub needs: f64,
}

/// Every bottle, the draws under way, and what experiments wait for.
#[derive(Resource, Debug, Clone, Default)]
pub struct Stock {
    /// By [`Source::key`].
    pub bottles: BTreeMap<String, Bottle>,
    /// Dispenses under way, by step entity.
    pub draws: HashMap<Entity, Draw>,
    /// Reagents an experiment waits for, and how short they are (said once in the record until it changes).
    pub waiting: BTreeMap<String, Shortage>,
}

impl Stock {
    /// Every bottle of `lab`, full.
    pub fn of(lab: &Lab) -> Self {
        let bottles = lab
            .bottles()
            .into_iter()
            .map(|(source, b)| {
                let bottle = Bottle {
                    reagent: b.reagent.clone(),
                    usable: b.usable().map(|v| v.0),
                    drawn: 0.0,
                    reserved: BTreeMap::new(),
                    at_most: false,
                    source: source.clone(),
                };
                (source.key(), bottle)
            })
            .collect();
        Stock { bottles, draws: HashMap::new(), waiting: BTreeMap::new() }
    }

    /// Sets each tracked bottle to what the record says it held (microlitres left, and whether an unknown draw
    /// was charged in full), for a resumed campaign; reservations start afresh.
    pub fn restore(&mut self, recorded: &BTreeMap<String, (f64, bool)>) {
        for (key, (left, at_most)) in recorded {
            if let Some(b) = self.bottles.get_mut(key)
                && b.usable.is_some()
            {
                b.usable = Some(*left);
                b.drawn = 0.0;
                b.at_most = *at_most;
                b.reserved.clear();
            }
        }
    }

    /// The record's `declared` rows for every tracked bottle, full, as a campaign starts.
    pub fn declared(&self, campaign: i64, at: f64) -> Vec<crate::record::RecordEvent> {
        self.bottles
            .iter()
            .filter_map(|(key, b)| {
                let usable = b.usable?;
                Some(crate::record::RecordEvent::Stock {
                    campaign,
                    at,
                    bottle: key.clone(),
                    reagent: b.reagent.clone(),
                    kind: "declared".into(),
                    volume: usable,
                    experiment: None,
                    step: None,
                    unknown: false,
                    left: Some(usable),
                    note: "as the lab file gives it: the bottle's volume less its dead volume".into(),
                })
            })
            .collect()
    }

    /// Reserves, for `experiment`, `needs` (microlitres by reagent), each reagent in one bottle that can hold the
    /// whole of it (untracked bottles always can). Nothing is reserved unless everything is; on failure, the first
    /// reagent that is short, with how short.
    pub fn reserve(
        &mut self,
        experiment: Entity,
        needs: &BTreeMap<String, f64>,
    ) -> Result<Vec<(String, f64)>, (String, Shortage)> {
        let mut plan = Vec::new();
        for (reagent, &volume) in needs {
            let candidates: Vec<(&String, &Bottle)> =
                self.bottles.iter().filter(|(_, b)| &b.reagent == reagent).collect();
            // A bottle that cannot be tracked needs no reservation; among tracked ones, the fullest is taken.
            if candidates.iter().any(|(_, b)| b.usable.is_none()) {
                continue;
            }
            let best = candidates.iter().max_by(|a, b| a.1.free().unwrap_or(0.0).total_cmp(&b.1.free().unwrap_or(0.0)));
            match best {
                Some((key, b)) if b.free().unwrap_or(0.0) + EPSILON >= volume => plan.push(((*key).clone(), volume)),
                _ => {
                    let free = candidates.iter().filter_map(|(_, b)| b.free()).fold(0.0_f64, f64::max).max(0.0);
                    return Err((reagent.clone(), Shortage { free, needs: volume }));
                }
            }
        }
        for (key, volume) in &plan {
            if let Some(b) = self.bottles.get_mut(key) {
                *b.reserved.entry(experiment).or_default() += volume;
            }
        }
        Ok(plan)
    }

    /// The first reagent of `needs` that [`Stock::reserve`] could not reserve now, with how short it is.
    pub fn shortage(&self, needs: &BTreeMap<String, f64>) -> Option<(String, Shortage)> {
        let mut trial = self.clone();
        trial.reserve(Entity::PLACEHOLDER, needs).err()
    }

    /// The source a dispense of `volume` of `reagent` for `experiment` on pump `pump` draws from: a bottle the pump
    /// reaches where the experiment holds a reservation big enough, or an untracked one, or one with enough free.
    pub fn pick(&self, experiment: Entity, reagent: &str, pump: &str, volume: f64) -> Option<&Bottle> {
        let reachable = || self.bottles.values().filter(|b| b.reagent == reagent && b.source.pump() == pump);
        reachable()
            .find(|b| b.reserved.get(&experiment).is_some_and(|r| *r + EPSILON >= volume))
            .or_else(|| reachable().find(|b| b.usable.is_none()))
            .or_else(|| reachable().find(|b| b.free().is_some_and(|f| f + EPSILON >= volume)))
    }

    /// Charges `volume` drawn from bottle `key` for `experiment`, out of its reservation there first.
    pub fn charge(&mut self, key: &str, experiment: Entity, volume: f64, unknown: bool) {
        let Some(b) = self.bottles.get_mut(key) else { return };
        if let Some(r) = b.reserved.get_mut(&experiment) {
            *r -= volume.min(*r);
            if *r <= EPSILON {
                b.reserved.remove(&experiment);
            }
        }
        b.drawn += volume;
        b.at_most |= unknown;
    }

    /// Gives back `volume` charged to bottle `key` for `experiment` by a dispense that never acted, as a
    /// reservation again (the experiment may still run, and its next try draws it).
    pub fn refund(&mut self, key: &str, experiment: Entity, volume: f64) {
        let Some(b) = self.bottles.get_mut(key) else { return };
        b.drawn -= volume.min(b.drawn);
        if b.usable.is_some() {
            *b.reserved.entry(experiment).or_default() += volume;
        }
    }

    /// Lets go of everything `experiment` reserved and did not draw; returns (bottle, microlitres) released.
    pub fn release(&mut self, experiment: Entity) -> Vec<(String, f64)> {
        let mut out = Vec::new();
        for (key, b) in &mut self.bottles {
            if let Some(v) = b.reserved.remove(&experiment)
                && v > EPSILON
            {
                out.push((key.clone(), v));
            }
        }
        out
    }

    /// A technician refilled bottle `key` by `volume` microlitres (a top-up), or set it to `volume` (`absolute`).
    /// Returns the microlitres left after, or why not.
    pub fn refill(&mut self, key: &str, volume: f64, absolute: bool) -> Result<f64, String> {
        let Some(b) = self.bottles.get_mut(key) else { return Err(format!("no bottle `{key}`")) };
        let Some(usable) = b.usable.as_mut() else { return Err(format!("bottle `{key}` is not tracked")) };
        if absolute {
            *usable = b.drawn + volume;
            b.at_most = false;
        } else {
            *usable += volume;
        }
        self.waiting.clear();
        Ok(b.left().unwrap_or(0.0))
    }

    /// The bottle key `name` means: a key itself, or the one bottle holding the reagent `name`.
    pub fn resolve(&self, name: &str) -> Result<String, String> {
        if self.bottles.contains_key(name) {
            return Ok(name.to_owned());
        }
        let holding: Vec<&String> = self.bottles.iter().filter(|(_, b)| b.reagent == name).map(|(k, _)| k).collect();
        match holding.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(format!(
                "no bottle holds `{name}`; the bottles are: {}",
                self.bottles.keys().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
            )),
            many => Err(format!(
                "{} bottles hold `{name}`: name one of {}",
                many.len(),
                many.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
            )),
        }
    }
}

/// What the record and `lab status` say while experiments wait for a reagent.
pub fn waiting_message(reagent: &str, s: &Shortage) -> String {
    format!(
        "waiting for restock: `{reagent}` ({:.0} uL free, the next experiment needs {:.0} uL); experiments that need it \
         are held while the others run (`lab restock {reagent} VOLUME`)",
        s.free.max(0.0),
        s.needs
    )
}

/// The microlitres each reagent an experiment's steps dispense, summed.
pub fn needs<'a>(actions: impl IntoIterator<Item = &'a protocols::Action>) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for a in actions {
        if let protocols::Action::Dispense { volume, reagent: Some(r) } = a {
            *out.entry(r.clone()).or_default() += volume.0;
        }
    }
    out
}
