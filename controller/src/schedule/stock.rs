//! What each bottle holds, as the controller knows it: the lab file's volumes, less what was drawn, less what
//! running experiments have reserved, plus what a technician refilled.
//!
//! [`Stock`] is a resource of the world, and every change to it is also a `stock_events` row of the record
//! (declared, reserved, drawn, released, refilled, adjusted), so the record's fold over those rows is the same
//! number. An experiment reserves everything its dispenses will draw before it starts; an experiment whose draws
//! cannot be reserved waits, and the others run. A dispense resolves to a source at dispatch: a bottle the pump
//! reaches, where the experiment's reservation stands. A dispense that may have acted and failed is charged in
//! full, so the stock the controller believes is never more than what is in the bottle (it may be less).
//!
//! A valve with a `line` and a `waste` keeps the last reagent drawn in its tubing ([`Line`]). A dispense of another
//! reagent through it primes first (draws [`devices::lab::PRIME_LINES`] line volumes from its bottle and pushes them
//! to waste), which is charged to that bottle; an experiment reserves a prime for every such dispense, since which
//! reagent the line holds when it runs depends on the order others ran in.

use std::collections::{BTreeMap, BTreeSet, HashMap};

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
    /// Microlitres drawn to prime the line before it (charged to the same bottle), if it primes.
    pub primed: f64,
    /// What the valve's line held before (to put back if the dispense never acted).
    pub line_before: Option<String>,
}

/// The shared tubing of a valve that can prime it.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// The waste port.
    pub waste: u32,
    /// Microlitres a prime draws.
    pub prime: f64,
    /// The reagent the tubing holds for certain; `None` when not known (at the start, after a resume, after a
    /// dispense that failed or another step on the valve), which primes.
    pub holds: Option<String>,
}

/// A reagent some experiment waits for.
#[derive(Debug, Clone, PartialEq)]
pub struct Shortage {
    /// Microlitres free in the fullest of its bottles.
    pub free: f64,
    /// Microlitres free in all its bottles together, when it has more than one.
    pub across: Option<f64>,
    /// Microlitres the next experiment needs.
    pub needs: f64,
}

/// What an experiment's dispenses will draw: microlitres by reagent, and the bottles that can serve every dispense of
/// each reagent (a pump where the vessel stands reaches them; none listed: any bottle of it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Needs {
    /// Microlitres by reagent, a prime included for each dispense through a line that primes.
    pub volume: BTreeMap<String, f64>,
    /// The bottles ([`Source::key`]) each reagent may be reserved in.
    pub bottles: BTreeMap<String, BTreeSet<String>>,
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
    /// The lines of valves that prime, by valve name.
    pub lines: BTreeMap<String, Line>,
    /// The bottles that can serve each dispense of a reagent, by the step's index in the protocol: those a pump
    /// standing where the vessel may be reaches ([`devices::Lab::bottles_serving`]).
    pub serving: BTreeMap<usize, BTreeSet<String>>,
    /// Dispenses said in the record to be waiting for a bottle where their vessel stands, by step entity.
    pub stranded: BTreeMap<Entity, String>,
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
        let lines = lab
            .bottles()
            .into_iter()
            .filter_map(|(source, _)| {
                let (valve, _) = source.valve()?;
                let (waste, prime) = lab.prime_of(valve)?;
                Some((valve.to_owned(), Line { waste, prime: prime.0, holds: None }))
            })
            .collect();
        Stock {
            bottles,
            draws: HashMap::new(),
            waiting: BTreeMap::new(),
            lines,
            serving: BTreeMap::new(),
            stranded: BTreeMap::new(),
        }
    }

    /// Every bottle of `lab`, full, with the bottles that can serve each dispense of a reagent in `protocol`, so an
    /// experiment reserves each reagent in a bottle a pump where its vessel will stand reaches.
    pub fn for_protocol(lab: &Lab, protocol: &protocols::Protocol) -> Self {
        let mut stock = Stock::of(lab);
        for (i, step) in protocol.steps().iter().enumerate() {
            if let protocols::Op::Dispense { reagent: Some(_), .. } = &step.op {
                stock.serving.insert(i, lab.bottles_serving(protocol, i));
            }
        }
        stock
    }

    /// The prime a draw from bottle `key` needs first: the valve, its waste port and the microlitres; `None` if the
    /// bottle's line already holds its reagent, or it has no line that primes.
    pub fn prime_for(&self, key: &str) -> Option<(String, u32, f64)> {
        let b = self.bottles.get(key)?;
        let (valve, _) = b.source.valve()?;
        let line = self.lines.get(valve)?;
        (line.holds.as_deref() != Some(b.reagent.as_str())).then(|| (valve.to_owned(), line.waste, line.prime))
    }

    /// Forgets what the lines of `instrument` hold (a valve, or a pump a valve feeds) when it runs a step that is not
    /// a dispense of a reagent: a literal `Select`, or a dispense from whatever port the valve stands at.
    pub fn line_in_doubt(&mut self, instrument: &str) {
        for b in self.bottles.values() {
            if let Some((valve, _)) = b.source.valve()
                && (valve == instrument || b.source.pump() == instrument)
                && let Some(l) = self.lines.get_mut(valve)
            {
                l.holds = None;
            }
        }
    }

    /// The microlitres each reagent an experiment's steps (each with its index in the protocol) dispense, summed,
    /// with a prime for every dispense of a reagent that some bottle of it would be primed for (the worst case: which
    /// reagent a line holds when the dispense runs is not known before); and the bottles that can serve every
    /// dispense of the reagent (where no one bottle serves them all, those that serve any).
    pub fn needs<'a>(&self, actions: impl IntoIterator<Item = (usize, &'a protocols::Action)>) -> Needs {
        let mut out = BTreeMap::new();
        let mut every: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut any: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (i, a) in actions {
            if let protocols::Action::Dispense { volume, reagent: Some(r) } = a {
                if let Some(serving) = self.serving.get(&i) {
                    let mine: BTreeSet<String> = serving
                        .iter()
                        .filter(|k| self.bottles.get(*k).is_some_and(|b| &b.reagent == r))
                        .cloned()
                        .collect();
                    any.entry(r.clone()).or_default().extend(mine.iter().cloned());
                    match every.get_mut(r) {
                        Some(e) => e.retain(|k| mine.contains(k)),
                        None => {
                            every.insert(r.clone(), mine);
                        }
                    }
                }
                let prime = self
                    .bottles
                    .values()
                    .filter(|b| &b.reagent == r)
                    .filter_map(|b| self.lines.get(b.source.valve()?.0))
                    .map(|l| l.prime)
                    .fold(0.0, f64::max);
                *out.entry(r.clone()).or_default() += volume.0 + prime;
            }
        }
        let bottles = every
            .into_iter()
            .map(|(r, e)| {
                let chosen = if e.is_empty() { any.remove(&r).unwrap_or_default() } else { e };
                (r, chosen)
            })
            .filter(|(_, b)| !b.is_empty())
            .collect();
        Needs { volume: out, bottles }
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
    /// whole of it (untracked bottles always can) and that a pump where the vessel will stand reaches. Nothing is
    /// reserved unless everything is; on failure, the first reagent that is short, with how short.
    pub fn reserve(&mut self, experiment: Entity, needs: &Needs) -> Result<Vec<(String, f64)>, (String, Shortage)> {
        let mut plan = Vec::new();
        for (reagent, &volume) in &needs.volume {
            let allowed = needs.bottles.get(reagent);
            let candidates: Vec<(&String, &Bottle)> = self
                .bottles
                .iter()
                .filter(|(k, b)| &b.reagent == reagent && allowed.is_none_or(|a| a.contains(*k)))
                .collect();
            // A bottle that cannot be tracked needs no reservation; among tracked ones, the fullest is taken.
            if candidates.iter().any(|(_, b)| b.usable.is_none()) {
                continue;
            }
            let best = candidates.iter().max_by(|a, b| a.1.free().unwrap_or(0.0).total_cmp(&b.1.free().unwrap_or(0.0)));
            match best {
                Some((key, b)) if b.free().unwrap_or(0.0) + EPSILON >= volume => plan.push(((*key).clone(), volume)),
                _ => {
                    let free = candidates.iter().filter_map(|(_, b)| b.free()).fold(0.0_f64, f64::max).max(0.0);
                    let across = (candidates.len() > 1)
                        .then(|| candidates.iter().filter_map(|(_, b)| b.free()).map(|f| f.max(0.0)).sum());
                    return Err((reagent.clone(), Shortage { free, across, needs: volume }));
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
    pub fn shortage(&self, needs: &Needs) -> Option<(String, Shortage)> {
        let mut trial = self.clone();
        trial.reserve(Entity::PLACEHOLDER, needs).err()
    }

    /// The source a dispense of `volume` of `reagent` for `experiment` on pump `pump` draws from: a bottle the pump
    /// reaches where the experiment holds a reservation big enough (with the prime it would need), or an untracked
    /// one, or one with enough free.
    pub fn pick(&self, experiment: Entity, reagent: &str, pump: &str, volume: f64) -> Option<&Bottle> {
        let reachable = || self.bottles.iter().filter(|(_, b)| b.reagent == reagent && b.source.pump() == pump);
        let need = |key: &str| volume + self.prime_for(key).map_or(0.0, |(_, _, v)| v);
        reachable()
            .find(|(k, b)| b.reserved.get(&experiment).is_some_and(|r| *r + EPSILON >= need(k.as_str())))
            .or_else(|| reachable().find(|(_, b)| b.usable.is_none()))
            .or_else(|| reachable().find(|(k, b)| b.free().is_some_and(|f| f + EPSILON >= need(k.as_str()))))
            .map(|(_, b)| b)
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

/// Records, as `reserved` rows of `stock_events`, what [`Stock::reserve`] set aside for experiment `experiment` (its
/// record id) at lab time `at`, with `note` saying when.
pub fn record_reserved(
    recorder: &crate::record::Recorder,
    campaign: i64,
    at: f64,
    stock: &Stock,
    reserved: Vec<(String, f64)>,
    experiment: i64,
    note: &str,
) {
    for (key, volume) in reserved {
        let Some(b) = stock.bottles.get(&key) else { continue };
        recorder.send(crate::record::RecordEvent::Stock {
            campaign,
            at,
            bottle: key.clone(),
            reagent: b.reagent.clone(),
            kind: "reserved".into(),
            volume,
            experiment: Some(experiment),
            step: None,
            unknown: false,
            left: None,
            note: note.to_owned(),
        });
    }
}

/// What the record and `lab status` say while experiments wait for a reagent. A reagent in several bottles whose
/// free stock together would cover the need says so: an experiment's draws of one reagent come from one bottle (a
/// dispense is one pump's strokes from one source), so it still waits.
pub fn waiting_message(reagent: &str, s: &Shortage) -> String {
    let split = match s.across {
        Some(all) if all + EPSILON >= s.needs => format!(
            "; {all:.0} uL are free across its bottles, but an experiment draws each reagent from one bottle, so \
             restock one of them"
        ),
        _ => String::new(),
    };
    // A reagent in several bottles is restocked by naming the bottle.
    let which = if s.across.is_some() { "BOTTLE" } else { reagent };
    format!(
        "waiting for restock: `{reagent}` ({:.0} uL free, the next experiment needs {:.0} uL{split}); experiments that \
         need it are held while the others run (`lab restock {which} VOLUME`)",
        s.free.max(0.0),
        s.needs
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocols::units::Volume;

    /// The catalyst bench with a second bottle of `C1` on port 7 and both `C1` bottles holding 500 uL usable.
    fn stock() -> Stock {
        let text = include_str!("../../../devices/labs/catalysts.lab.ron")
            .replace(
                "1: (reagent: \"C1\", volume: \"20 mL\", dead: \"0.5 mL\"),",
                "1: (reagent: \"C1\", volume: \"1 mL\", dead: \"0.5 mL\"),\n                    7: (reagent: \"C1\", volume: \"1 mL\", dead: \"0.5 mL\"),",
            );
        let lab = devices::load_lab(protocols::SourceFile::new("catalysts.lab.ron", text)).expect("the lab loads");
        Stock::of(&lab)
    }

    fn dispense(reagent: &str, volume: f64) -> protocols::Action {
        protocols::Action::Dispense { volume: Volume(volume), reagent: Some(reagent.to_owned()) }
    }

    #[test]
    fn a_dispense_through_a_line_needs_a_prime_until_the_line_holds_its_reagent() {
        let mut s = stock();
        // Twice the 40 uL line, for every dispense of a catalyst; none for A, which has no line.
        let needs =
            s.needs([&dispense("C2", 30.0), &dispense("C2", 20.0), &dispense("A", 250.0)].into_iter().enumerate());
        assert_eq!(needs.volume, BTreeMap::from([("A".to_owned(), 250.0), ("C2".to_owned(), 210.0)]));
        assert_eq!(s.prime_for("valve:2"), Some(("valve".to_owned(), 10, 80.0)));
        s.lines.get_mut("valve").unwrap().holds = Some("C2".into());
        assert_eq!(s.prime_for("valve:2"), None);
        assert_eq!(s.prime_for("valve:3"), Some(("valve".to_owned(), 10, 80.0)));
        s.line_in_doubt("pump_c");
        assert_eq!(s.prime_for("valve:2"), Some(("valve".to_owned(), 10, 80.0)), "a plain step on the pump forgets");
        assert_eq!(s.prime_for("pump_a"), None, "a pump's own reservoir has no line");
    }

    #[test]
    fn a_need_two_bottles_could_cover_together_waits_and_says_why() {
        let mut s = stock();
        let needs = s.needs([&dispense("C1", 520.0)].into_iter().enumerate());
        let (reagent, short) = s.reserve(Entity::PLACEHOLDER, &needs).unwrap_err();
        assert_eq!((reagent.as_str(), short.free, short.across, short.needs), ("C1", 500.0, Some(1000.0), 600.0));
        let message = waiting_message(&reagent, &short);
        assert!(
            message
                .contains("1000 uL are free across its bottles, but an experiment draws each reagent from one bottle")
                && message.contains("`lab restock BOTTLE VOLUME`"),
            "{message}"
        );
        // One bottle that covers it is reserved whole.
        let needs = s.needs([&dispense("C1", 400.0)].into_iter().enumerate());
        let reserved = s.reserve(Entity::PLACEHOLDER, &needs).unwrap();
        assert_eq!(reserved.len(), 1);
        assert!((reserved[0].1 - 480.0).abs() < 1e-9, "{reserved:?}");
    }

    #[test]
    fn a_reagent_is_reserved_only_in_a_bottle_a_pump_where_the_vessel_stands_reaches() {
        let mut s = stock();
        // Port 7's C1 is the fuller, but only port 1's serves the dispense (step 3) where its vessel will stand.
        s.bottles.get_mut("valve:1").unwrap().drawn = 100.0;
        s.serving.insert(3, BTreeSet::from(["valve:1".to_owned(), "valve:2".to_owned()]));
        let needs = s.needs([(3, &dispense("C1", 100.0))]);
        assert_eq!(needs.bottles["C1"], BTreeSet::from(["valve:1".to_owned()]));
        let reserved = s.reserve(Entity::PLACEHOLDER, &needs).unwrap();
        assert_eq!(reserved[0].0, "valve:1");
        // More than the serving bottle has free waits, however much the other holds, and says how much is free there.
        let needs = s.needs([(3, &dispense("C1", 300.0))]);
        let (_, short) = s.shortage(&needs).unwrap();
        assert!((short.free - 220.0).abs() < 1e-9 && short.across.is_none(), "{short:?}");
        // A dispense the map knows nothing of (a workload's) may draw from any bottle.
        assert!(s.needs([(0, &dispense("C1", 100.0))]).bottles.is_empty());
    }
}
