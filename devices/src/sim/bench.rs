//! The shared virtual bench: vessels, where they stand, what is in them, hotplates, and what physically happened.
//!
//! All simulators of a lab act on one [`Bench`]. A pump adds liquid to whatever vessel stands at its position; a
//! hotplate heats whatever stands on it; the spectrometer reads whatever is in its holder; the gantry picks and
//! places by coordinates, so a gantry sent to the wrong place picks nothing or drops a vial. Tests compare what the
//! controller recorded with the [`Bench::ledger`], the bench's own account of what happened.
//!
//! A valve's shared tubing carries the last reagent drawn into the next draw unless it was primed (`line.rs`).
//!
//! Physics is integrated lazily: whenever a simulator touches the bench, everything is advanced from the last
//! update to the clock's present in fixed steps of [`SUBSTEP`] lab seconds, so results do not depend on how often
//! anyone looks. The lock is never held across an await.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use protocols::InstrumentKind;
use serde::{Deserialize, Serialize};

use super::chemistry::{
    AMBIENT, Chemistry, SUBSTEP, Species, plate_step, reservoir_moles_at, vessel_step, vial_baseline,
};
use super::line::{Drawn, Valve};
use crate::capability::Place;
use crate::clock::Clock;
use crate::lab::{Deck, DriverConfig, Lab, Point};

/// How far the gripper may be from a place, across (X and Y) and in height, and still be at it, in millimetres.
pub const GRIP_TOLERANCE: (f64, f64) = (1.0, 2.0);

/// A vessel's temperature history gains an entry when the temperature has moved this much, in degC.
const HISTORY_STEP: f64 = 0.5;

/// Where a vessel is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Location {
    /// Standing at a place.
    At(Place),
    /// Held by the gantry's gripper.
    Gripper,
    /// Dropped or knocked over near a point; out of play.
    Fallen(Point),
    /// Taken off the deck by a person; out of play.
    Removed,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::At(p) => write!(f, "{p}"),
            Location::Gripper => f.write_str("the gripper"),
            Location::Fallen(p) => write!(f, "the deck near ({}, {}, {})", p.x, p.y, p.z),
            Location::Removed => f.write_str("off the deck"),
        }
    }
}

/// What physically happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// Liquid from a reservoir went into a vessel.
    Dispensed {
        /// The reservoir: the reagent's name.
        reservoir: String,
        /// The bottle it was drawn from ([`crate::lab::Source::key`]: the pump's name, or `valve:port`), if the
        /// bench knows one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<String>,
        /// Microlitres.
        volume: f64,
        /// The vessel (its rack slot).
        vessel: usize,
    },
    /// Liquid from a reservoir went onto the deck: no vessel stood at the pump's position.
    Spilled {
        /// The reservoir.
        reservoir: String,
        /// Microlitres.
        volume: f64,
        /// Where it fell.
        position: String,
    },
    /// A pump drew from a bottle more than it held above its dead volume: the rest of the stroke was air.
    DryDraw {
        /// The bottle ([`crate::lab::Source::key`]).
        source: String,
        /// The reagent it holds.
        reagent: String,
        /// Microlitres asked for.
        wanted: f64,
        /// Microlitres of liquid that came.
        got: f64,
    },
    /// A pump drew liquid from a tracked bottle (untracked bottles, which never run out, are not logged).
    Drew {
        /// The bottle ([`crate::lab::Source::key`]).
        source: String,
        /// The reagent it holds.
        reagent: String,
        /// Microlitres of liquid.
        volume: f64,
    },
    /// A person poured liquid into a bottle.
    Refilled {
        /// The bottle ([`crate::lab::Source::key`]).
        source: String,
        /// Microlitres.
        volume: f64,
    },
    /// Liquid was pushed back through a pump's input into a bottle.
    Returned {
        /// The bottle ([`crate::lab::Source::key`]).
        source: String,
        /// Microlitres.
        volume: f64,
    },
    /// A pump drew liquid back out of a vessel (or air, when none stood there).
    Withdrew {
        /// Microlitres.
        volume: f64,
        /// The vessel, if any.
        vessel: Option<usize>,
    },
    /// The gripper closed on a vessel.
    Picked {
        /// The vessel.
        vessel: usize,
        /// Where it stood.
        from: Place,
    },
    /// The gripper opened at a free place: the vessel moved.
    Placed {
        /// The vessel.
        vessel: usize,
        /// Where it was picked.
        from: Place,
        /// Where it now stands.
        to: Place,
    },
    /// The gripper closed where no vessel stands.
    GrippedNothing {
        /// Where the gripper was.
        at: Point,
    },
    /// The gripper opened away from any place: the vessel fell.
    Dropped {
        /// The vessel.
        vessel: usize,
        /// Where the gripper was.
        at: Point,
    },
    /// The gripper opened at a place another vessel occupies: the carried vessel fell over it.
    Collided {
        /// The carried vessel.
        vessel: usize,
        /// The place.
        at: Place,
        /// The vessel already standing there.
        occupant: usize,
    },
    /// A person took a vessel off the deck (a rehearsal of clearing a place by hand).
    Removed {
        /// The vessel.
        vessel: usize,
        /// Where it stood.
        from: Place,
    },
    /// A hotplate's temperature set point changed.
    HeaterSetPoint {
        /// The hotplate's position.
        position: String,
        /// The new set point, degC.
        set_point: f64,
    },
    /// A hotplate's speed set point changed.
    SpeedSetPoint {
        /// The hotplate's position.
        position: String,
        /// The new set point, rpm.
        rpm: f64,
    },
    /// A hotplate's heater went on or off.
    Heater {
        /// The hotplate's position.
        position: String,
        /// Whether it is on.
        on: bool,
    },
    /// A hotplate's stirrer motor went on or off.
    Motor {
        /// The hotplate's position.
        position: String,
        /// Whether it is on.
        on: bool,
    },
    /// A hotplate's watchdog switched heating and stirring off: nothing had talked to it in time.
    WatchdogTripped {
        /// The hotplate's position.
        position: String,
    },
    /// The spectrometer acquired a spectrum of a vessel (or of its empty holder).
    Measured {
        /// The vessel, if one stood in the holder.
        vessel: Option<usize>,
        /// The spectrometer's position.
        position: String,
    },
    /// A balance sent a stable weight of what stood on its pan.
    Weighed {
        /// The vessel, if one stood on the pan.
        vessel: Option<usize>,
        /// The balance's position.
        position: String,
        /// The gross mass on the pan, in grams.
        grams: f64,
    },
    /// Gas bubbled through a vessel (or into the air, when none stood at the flow controller's position).
    Sparged {
        /// The gas.
        gas: String,
        /// Microlitres of gas at standard conditions.
        volume: f64,
        /// The vessel, if one stood there.
        vessel: Option<usize>,
        /// The flow controller's position.
        position: String,
    },
    /// A pump pushed liquid back through a valve's port without a bottle (its waste, when priming the line).
    Drained {
        /// The valve.
        valve: String,
        /// The port, from 1.
        port: u32,
        /// The reagent it was.
        reagent: String,
        /// Microlitres.
        volume: f64,
    },
    /// A selector valve reached a port.
    ValveMoved {
        /// The port, from 1.
        position: u32,
    },
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::Dispensed { reservoir, volume, vessel, .. } => {
                write!(f, "dispensed {volume:.2} uL of {reservoir} into vessel {vessel}")
            }
            Event::Spilled { reservoir, volume, position } => {
                write!(f, "spilled {volume:.2} uL of {reservoir} at `{position}`")
            }
            Event::DryDraw { source, reagent, wanted, got } => {
                write!(
                    f,
                    "drew {got:.2} of {wanted:.2} uL of {reagent} from `{source}`, the rest air: the bottle ran dry"
                )
            }
            Event::Drew { source, reagent, volume } => write!(f, "drew {volume:.2} uL of {reagent} from `{source}`"),
            Event::Refilled { source, volume } => write!(f, "{volume:.2} uL poured into `{source}` by hand"),
            Event::Returned { source, volume } => write!(f, "pushed {volume:.2} uL back into `{source}`"),
            Event::Withdrew { volume, vessel: Some(v) } => write!(f, "withdrew {volume:.2} uL from vessel {v}"),
            Event::Withdrew { volume, vessel: None } => write!(f, "drew {volume:.2} uL of air"),
            Event::Picked { vessel, from } => write!(f, "picked vessel {vessel} from {from}"),
            Event::Placed { vessel, from, to } => write!(f, "moved vessel {vessel} from {from} to {to}"),
            Event::GrippedNothing { at } => write!(f, "gripper closed on nothing at ({}, {}, {})", at.x, at.y, at.z),
            Event::Dropped { vessel, at } => write!(f, "dropped vessel {vessel} at ({}, {}, {})", at.x, at.y, at.z),
            Event::Collided { vessel, at, occupant } => {
                write!(f, "vessel {vessel} collided with vessel {occupant} at {at}")
            }
            Event::Removed { vessel, from } => write!(f, "vessel {vessel} taken off the deck at {from} by hand"),
            Event::HeaterSetPoint { position, set_point } => write!(f, "hotplate `{position}` set to {set_point} degC"),
            Event::SpeedSetPoint { position, rpm } => write!(f, "hotplate `{position}` speed set to {rpm} rpm"),
            Event::Heater { position, on } => {
                write!(f, "hotplate `{position}` heater {}", if *on { "on" } else { "off" })
            }
            Event::Motor { position, on } => {
                write!(f, "hotplate `{position}` stirrer {}", if *on { "on" } else { "off" })
            }
            Event::WatchdogTripped { position } => {
                write!(f, "hotplate `{position}` watchdog switched heating and stirring off")
            }
            Event::Measured { vessel: Some(v), position } => write!(f, "measured vessel {v} at `{position}`"),
            Event::Measured { vessel: None, position } => write!(f, "measured the empty holder at `{position}`"),
            Event::Weighed { vessel: Some(v), position, grams } => {
                write!(f, "weighed vessel {v} at `{position}`: {grams:.4} g")
            }
            Event::Weighed { vessel: None, position, grams } => {
                write!(f, "weighed the empty pan at `{position}`: {grams:.4} g")
            }
            Event::Sparged { gas, volume, vessel: Some(v), .. } => {
                write!(f, "bubbled {volume:.1} uL of {gas} through vessel {v}")
            }
            Event::Sparged { gas, volume, vessel: None, position } => {
                write!(f, "let {volume:.1} uL of {gas} out at `{position}`")
            }
            Event::Drained { valve, port, reagent, volume } => {
                write!(f, "pushed {volume:.2} uL of {reagent} out through port {port} of `{valve}`")
            }
            Event::ValveMoved { position } => write!(f, "valve turned to port {position}"),
        }
    }
}

/// One entry of the ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Lab time.
    pub at: f64,
    /// The instrument that did it.
    pub instrument: String,
    /// What happened.
    pub event: Event,
}

/// A vessel as it is now.
#[derive(Debug, Clone, PartialEq)]
pub struct VesselSnapshot {
    /// Its rack slot, which names it.
    pub slot: usize,
    /// Where it is.
    pub location: Location,
    /// The liquid in it, in microlitres.
    pub volume: f64,
    /// Microlitres received from each reservoir.
    pub contents: BTreeMap<String, f64>,
    /// Moles of each species.
    pub moles: Species,
    /// Its temperature, degC.
    pub temperature: f64,
    /// (lab time, degC) whenever the temperature had moved by half a degree.
    pub temperature_history: Vec<(f64, f64)>,
}

/// A hotplate as it is now.
#[derive(Debug, Clone, PartialEq)]
pub struct PlateSnapshot {
    /// The temperature set point, degC.
    pub set_point: f64,
    /// The speed set point, rpm.
    pub speed_set_point: f64,
    /// Whether the heater is on.
    pub heater_on: bool,
    /// Whether the stirrer is on.
    pub motor_on: bool,
    /// The plate's temperature, degC.
    pub temperature: f64,
    /// The watchdog's timeout, if armed, in seconds.
    pub watchdog: Option<f64>,
}

#[derive(Debug, Clone)]
struct Vessel {
    location: Location,
    volume: f64,
    contents: BTreeMap<String, f64>,
    moles: Species,
    temperature: f64,
    history: Vec<(f64, f64)>,
}

#[derive(Debug, Clone)]
struct Plate {
    instrument: String,
    set_point: f64,
    speed_set_point: f64,
    heater_on: bool,
    motor_on: bool,
    temperature: f64,
    watchdog: Option<f64>,
    last_contact: f64,
}

/// A bottle on the bench: what it holds and, if the lab file tracks it, how much is left.
#[derive(Debug, Clone)]
struct Stock {
    reagent: String,
    /// Microlitres in the bottle; none for an untracked bottle, which never runs dry.
    left: Option<f64>,
    /// Microlitres the pump can never reach.
    dead: f64,
}

/// Everything behind the bench's lock.
struct State {
    /// Lab time the physics has been integrated to, a whole number of substeps.
    t: f64,
    chemistry: Chemistry,
    deck: Deck,
    vessels: Vec<Vessel>,
    plates: BTreeMap<String, Plate>,
    gripper: Option<(usize, Place)>,
    ledger: Vec<LedgerEntry>,
    valves: BTreeMap<String, Valve>,
    /// Every bottle, by [`crate::lab::Source::key`].
    bottles: BTreeMap<String, Stock>,
    /// The concentration the lab file gives each reagent, in mol/L.
    molar: BTreeMap<String, f64>,
    /// When something last changed at each deck position (a vessel put down or taken, liquid added or drawn).
    changed: BTreeMap<String, f64>,
}

/// The shared bench; cheap to clone.
#[derive(Clone)]
pub struct Bench {
    state: Arc<Mutex<State>>,
    clock: Clock,
}

impl std::fmt::Debug for Bench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bench({:?})", self.clock)
    }
}

impl Bench {
    /// A bench for `lab`: an empty vial in every rack slot, every hotplate off and at ambient.
    pub fn new(lab: &Lab, clock: Clock) -> Self {
        let vessels = (0..lab.deck.rack.slots())
            .map(|i| Vessel {
                location: Location::At(Place::Rack(i)),
                volume: 0.0,
                contents: BTreeMap::new(),
                moles: Species::default(),
                temperature: AMBIENT,
                history: vec![(0.0, AMBIENT)],
            })
            .collect();
        // A temperature controller's heating block behaves as a hotplate without a stirrer.
        let plates = lab
            .of_kind(InstrumentKind::Hotplate)
            .chain(lab.of_kind(InstrumentKind::TemperatureController))
            .filter_map(|i| i.position.clone().map(|p| (p, i.name.clone())))
            .map(|(position, instrument)| {
                let plate = Plate {
                    instrument,
                    set_point: 0.0,
                    speed_set_point: 0.0,
                    heater_on: false,
                    motor_on: false,
                    temperature: AMBIENT,
                    watchdog: None,
                    last_contact: 0.0,
                };
                (position, plate)
            })
            .collect();
        let start = (clock.now() / SUBSTEP).floor() * SUBSTEP;
        let state = State {
            t: start,
            chemistry: Chemistry::new(lab.simulation.seed),
            deck: lab.deck.clone(),
            vessels,
            plates,
            gripper: None,
            ledger: Vec::new(),
            valves: lab
                .instruments
                .iter()
                .filter_map(|i| match &i.driver {
                    DriverConfig::ViciValve(v) => Some((i.name.clone(), Valve::new(&i.name, v))),
                    _ => None,
                })
                .collect(),
            molar: lab.reagents.values().filter_map(|r| Some((r.name.clone(), r.concentration?))).collect(),
            bottles: lab
                .bottles()
                .into_iter()
                .map(|(s, b)| {
                    let stock = Stock { reagent: b.reagent.clone(), left: b.volume.map(|v| v.0), dead: b.dead.0 };
                    (s.key(), stock)
                })
                .collect(),
            changed: BTreeMap::new(),
        };
        Bench { state: Arc::new(Mutex::new(state)), clock }
    }

    /// The bench's clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Locks the state, brought up to the present. A poisoned lock still holds consistent physics (nothing in it
    /// panics halfway through an update), so it is used as is.
    fn now(&self) -> (MutexGuard<'_, State>, f64) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.clock.now();
        s.advance(now);
        (s, now)
    }

    /// Everything that physically happened, in order.
    pub fn ledger(&self) -> Vec<LedgerEntry> {
        self.now().0.ledger.clone()
    }

    /// The vessel of rack slot `slot`, if the rack has that slot.
    pub fn vessel(&self, slot: usize) -> Option<VesselSnapshot> {
        let (s, _) = self.now();
        s.vessels.get(slot).map(|v| snapshot(slot, v))
    }

    /// Every vessel.
    pub fn vessels(&self) -> Vec<VesselSnapshot> {
        let (s, _) = self.now();
        s.vessels.iter().enumerate().map(|(i, v)| snapshot(i, v)).collect()
    }

    /// The hotplate at deck position `position`.
    pub fn plate(&self, position: &str) -> Option<PlateSnapshot> {
        let (s, _) = self.now();
        s.plates.get(position).map(|p| PlateSnapshot {
            set_point: p.set_point,
            speed_set_point: p.speed_set_point,
            heater_on: p.heater_on,
            motor_on: p.motor_on,
            temperature: p.temperature,
            watchdog: p.watchdog,
        })
    }

    /// A person takes whatever vessel stands at deck position `position` off the deck, as a technician clearing a
    /// place does; returns the vessel, if one stood there.
    pub fn remove_at(&self, position: &str) -> Option<usize> {
        let (mut s, now) = self.now();
        let from = Place::Position(position.to_owned());
        let vessel = s.standing_at(&from)?;
        s.vessels[vessel].location = Location::Removed;
        s.changed.insert(position.to_owned(), now);
        s.log(now, "person", Event::Removed { vessel, from });
        Some(vessel)
    }

    /// A pump draws `volume` through its input: from the bottle on the current port of a valve feeding it, else
    /// from its own reservoir `own`. A tracked bottle gives at most what it holds above its dead volume; the rest
    /// of the stroke is air, and the ledger says the bottle ran dry. Through a valve with a `line`, what reaches the
    /// syringe first is what the tubing held (the last reagent drawn, unless the line was primed), and the tubing
    /// keeps the last of the new liquid; the parts are returned in the order they arrive.
    pub(crate) fn draw(&self, pump: &str, own: &str, volume: f64) -> Vec<Drawn> {
        let drawn = self.draw_from_bottle(pump, own, volume);
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match s.valves.values_mut().find(|v| v.feeds.as_deref() == Some(pump) && v.line > 0.0) {
            // A dry draw moves only the liquid that came; the air that made up the stroke is not followed.
            Some(valve) => valve.shift(vec![drawn], true),
            None => vec![drawn],
        }
    }

    /// What a draw takes out of the bottle the pump's input reaches (see [`Bench::draw`]).
    fn draw_from_bottle(&self, pump: &str, own: &str, volume: f64) -> Drawn {
        let (mut s, now) = self.now();
        let key = s.source_of(pump);
        let Some(stock) = key.as_ref().and_then(|k| s.bottles.get_mut(k)) else {
            // A pump with no known bottle draws from a reservoir the bench does not track.
            let reagent = s.reservoir_of(pump, own);
            return Drawn { reagent, source: key, liquid: volume.max(0.0) };
        };
        let reagent = stock.reagent.clone();
        let tracked = stock.left.is_some();
        let liquid = match &mut stock.left {
            None => volume.max(0.0),
            Some(left) => {
                let got = volume.max(0.0).min((*left - stock.dead).max(0.0));
                *left -= got;
                got
            }
        };
        if tracked && liquid > 0.0 {
            let (source, reagent) = (key.clone().unwrap_or_default(), reagent.clone());
            s.log(now, pump, Event::Drew { source, reagent, volume: liquid });
        }
        if liquid + 1e-9 < volume {
            let source = key.clone().unwrap_or_default();
            s.log(now, pump, Event::DryDraw { source, reagent: reagent.clone(), wanted: volume, got: liquid });
        }
        Drawn { reagent, source: key, liquid }
    }

    /// A pump pushes `parts` of what its syringe held back out through its input: through a valve with a `line`,
    /// into the tubing, whose far end gives the same volume to the valve's current port; the liquid that comes out
    /// there goes into the bottle on that port, or out through a port without one (the waste, when priming).
    pub(crate) fn give_back(&self, pump: &str, parts: Vec<Drawn>) {
        let (mut s, now) = self.now();
        let valve = s.valves.iter_mut().find(|(_, v)| v.feeds.as_deref() == Some(pump));
        let (out, port) = match valve {
            Some((name, v)) if v.line > 0.0 => (v.shift(parts, false), Some((name.clone(), v.position))),
            Some((name, v)) => (parts, Some((name.clone(), v.position))),
            None => (parts, None),
        };
        let volume: f64 = out.iter().map(|p| p.liquid).sum();
        if volume <= 0.0 {
            return;
        }
        match s.source_of(pump) {
            Some(key) => {
                if let Some(left) = s.bottles.get_mut(&key).and_then(|b| b.left.as_mut()) {
                    *left += volume;
                }
                s.log(now, pump, Event::Returned { source: key, volume });
            }
            None => {
                // Out through a port that holds no bottle: the waste (or an open port, which spills the same way).
                if let Some((valve, port)) = port {
                    for p in out {
                        let event = Event::Drained { valve: valve.clone(), port, reagent: p.reagent, volume: p.liquid };
                        s.log(now, pump, event);
                    }
                }
            }
        }
    }

    /// A person pours `volume` microlitres into bottle `key` ([`crate::lab::Source::key`]), as a technician
    /// restocking it does; false if the bench has no tracked bottle of that key.
    pub fn refill(&self, key: &str, volume: f64) -> bool {
        let (mut s, now) = self.now();
        let Some(left) = s.bottles.get_mut(key).and_then(|b| b.left.as_mut()) else { return false };
        *left += volume.max(0.0);
        s.log(now, "hands", Event::Refilled { source: key.to_owned(), volume: volume.max(0.0) });
        true
    }

    /// Microlitres left in each tracked bottle, by [`crate::lab::Source::key`].
    pub fn stock(&self) -> BTreeMap<String, f64> {
        self.now().0.bottles.iter().filter_map(|(k, b)| b.left.map(|l| (k.clone(), l))).collect()
    }

    /// Liquid from `reservoir` arrives at `position`: into the vessel standing there, or onto the deck. A pump
    /// fed through a selector valve draws from the reservoir on the valve's current port instead.
    pub(crate) fn dispense(&self, instrument: &str, position: &str, reservoir: &str, volume: f64) {
        let (source, reservoir) = {
            let s = self.now().0;
            (s.source_of(instrument), s.reservoir_of(instrument, reservoir))
        };
        self.dispense_drawn(instrument, position, &Drawn { reagent: reservoir, source, liquid: volume });
    }

    /// Liquid a pump drew earlier arrives at `position`: into the vessel standing there, or onto the deck.
    pub(crate) fn dispense_drawn(&self, instrument: &str, position: &str, drawn: &Drawn) {
        let volume = drawn.liquid;
        if volume <= 0.0 {
            return;
        }
        let (mut s, now) = self.now();
        let source = drawn.source.clone();
        let reservoir = drawn.reagent.as_str();
        s.changed.insert(position.to_owned(), now);
        let event = match s.standing_at(&Place::Position(position.to_owned())) {
            Some(i) => {
                let v = &mut s.vessels[i];
                v.volume += volume;
                *v.contents.entry(reservoir.to_owned()).or_default() += volume;
                let molar = s.molar.get(reservoir).copied();
                let v = &mut s.vessels[i];
                v.moles = v.moles.plus(reservoir_moles_at(reservoir, volume, molar));
                Event::Dispensed { reservoir: reservoir.to_owned(), source, volume, vessel: i }
            }
            None => Event::Spilled { reservoir: reservoir.to_owned(), volume, position: position.to_owned() },
        };
        s.log(now, instrument, event);
    }

    /// Gas from a flow controller at `position` bubbles through the vessel standing there (or escapes).
    pub(crate) fn sparge(&self, instrument: &str, position: &str, gas: &str, volume: f64) {
        if volume <= 0.0 {
            return;
        }
        let (mut s, now) = self.now();
        let vessel = s.standing_at(&Place::Position(position.to_owned()));
        let event = Event::Sparged { gas: gas.to_owned(), volume, vessel, position: position.to_owned() };
        s.log(now, instrument, event);
    }

    /// A pump at `position` draws `volume` back out of the vessel there (or draws air).
    pub(crate) fn withdraw(&self, instrument: &str, position: &str, volume: f64) {
        if volume <= 0.0 {
            return;
        }
        let (mut s, now) = self.now();
        s.changed.insert(position.to_owned(), now);
        let vessel = s.standing_at(&Place::Position(position.to_owned()));
        if let Some(i) = vessel {
            let v = &mut s.vessels[i];
            let taken = volume.min(v.volume);
            let keep = if v.volume > 0.0 { 1.0 - taken / v.volume } else { 0.0 };
            v.volume -= taken;
            v.moles = v.moles.scaled(keep);
            for c in v.contents.values_mut() {
                *c *= keep;
            }
        }
        s.log(now, instrument, Event::Withdrew { volume, vessel });
    }

    /// Changes the hotplate at `position`, recording what changed; every call counts as contact for its watchdog.
    pub(crate) fn plate_command(&self, position: &str, command: PlateCommand) {
        let (mut s, now) = self.now();
        let Some(plate) = s.plates.get_mut(position) else { return };
        plate.last_contact = now;
        let instrument = plate.instrument.clone();
        let event = match command {
            PlateCommand::Contact => None,
            PlateCommand::SetPoint(t) => {
                plate.set_point = t;
                Some(Event::HeaterSetPoint { position: position.to_owned(), set_point: t })
            }
            PlateCommand::Speed(rpm) => {
                plate.speed_set_point = rpm;
                Some(Event::SpeedSetPoint { position: position.to_owned(), rpm })
            }
            PlateCommand::Heater(on) => (plate.heater_on != on).then(|| {
                plate.heater_on = on;
                Event::Heater { position: position.to_owned(), on }
            }),
            PlateCommand::Motor(on) => (plate.motor_on != on).then(|| {
                plate.motor_on = on;
                Event::Motor { position: position.to_owned(), on }
            }),
            PlateCommand::Watchdog(m) => {
                plate.watchdog = m;
                None
            }
        };
        if let Some(e) = event {
            s.log(now, &instrument, e);
        }
    }

    /// The hotplate at `position`: plate temperature, actual speed, and the temperature of the vessel on it.
    pub(crate) fn plate_readings(&self, position: &str) -> Option<PlateReadings> {
        let (s, _) = self.now();
        let plate = s.plates.get(position)?;
        let vessel = s.standing_at(&Place::Position(position.to_owned())).map(|i| s.vessels[i].temperature);
        Some(PlateReadings {
            set_point: plate.set_point,
            speed_set_point: plate.speed_set_point,
            temperature: plate.temperature,
            speed: if plate.motor_on { plate.speed_set_point } else { 0.0 },
            medium: vessel.unwrap_or(AMBIENT),
        })
    }

    /// The absorbance at each of `wavelengths` of whatever stands at `position` (zero for an empty holder),
    /// recorded as a measurement by `instrument`.
    pub(crate) fn absorbance(&self, instrument: &str, position: &str, wavelengths: &[f64]) -> Vec<f64> {
        let (mut s, now) = self.now();
        let vessel = s.standing_at(&Place::Position(position.to_owned()));
        let spectrum = match vessel {
            None => vec![0.0; wavelengths.len()],
            Some(i) => {
                let v = &s.vessels[i];
                let c = if v.volume > 0.0 { v.moles.scaled(1.0 / (v.volume * 1e-6)) } else { Species::default() };
                wavelengths.iter().map(|&l| s.chemistry.absorbance(&c, l) + vial_baseline(l)).collect()
            }
        };
        s.log(now, instrument, Event::Measured { vessel, position: position.to_owned() });
        spectrum
    }

    /// The gripper closes at `at`: it picks the vessel standing at a place within [`GRIP_TOLERANCE`].
    pub(crate) fn grip(&self, instrument: &str, at: Point) {
        let (mut s, now) = self.now();
        if s.gripper.is_some() {
            return;
        }
        let found = s.vessels.iter().enumerate().find_map(|(i, v)| match &v.location {
            Location::At(place) => s.deck.point(place).filter(|p| near(*p, at)).map(|_| (i, place.clone())),
            _ => None,
        });
        match found {
            Some((i, place)) => {
                s.vessels[i].location = Location::Gripper;
                s.gripper = Some((i, place.clone()));
                if let Place::Position(p) = &place {
                    s.changed.insert(p.clone(), now);
                }
                s.log(now, instrument, Event::Picked { vessel: i, from: place });
            }
            None => s.log(now, instrument, Event::GrippedNothing { at }),
        }
    }

    /// The gripper opens at `at`: what it holds is placed at the place there, falls over its occupant, or drops.
    pub(crate) fn release(&self, instrument: &str, at: Point) {
        let (mut s, now) = self.now();
        let Some((i, from)) = s.gripper.take() else { return };
        let deck = &s.deck;
        let place = (0..deck.rack.slots())
            .map(Place::Rack)
            .chain(deck.positions.keys().cloned().map(Place::Position))
            .find(|p| deck.point(p).is_some_and(|p| near(p, at)));
        let event = match place {
            None => {
                s.vessels[i].location = Location::Fallen(at);
                Event::Dropped { vessel: i, at }
            }
            Some(to) => match s.standing_at(&to) {
                Some(occupant) => {
                    s.vessels[i].location = Location::Fallen(at);
                    Event::Collided { vessel: i, at: to, occupant }
                }
                None => {
                    s.vessels[i].location = Location::At(to.clone());
                    if let Place::Position(p) = &to {
                        s.changed.insert(p.clone(), now);
                    }
                    Event::Placed { vessel: i, from, to }
                }
            },
        };
        s.log(now, instrument, event);
    }
}

impl Bench {
    /// What stands on the pan at `position`: the gross mass in grams (a vial's own mass plus its liquid at
    /// [`DENSITY`]), the vessel, and the lab time anything last changed there (for settling).
    pub(crate) fn load_at(&self, position: &str) -> (f64, Option<usize>, f64) {
        let (s, _) = self.now();
        let vessel = s.standing_at(&Place::Position(position.to_owned()));
        let grams = vessel.map_or(0.0, |i| vial_mass(i) + s.vessels[i].volume * DENSITY);
        (grams, vessel, s.changed.get(position).copied().unwrap_or(f64::NEG_INFINITY))
    }

    /// Records that the balance `instrument` at `position` sent a stable weight.
    pub(crate) fn weighed(&self, instrument: &str, position: &str, grams: f64) {
        let (mut s, now) = self.now();
        let vessel = s.standing_at(&Place::Position(position.to_owned()));
        s.log(now, instrument, Event::Weighed { vessel, position: position.to_owned(), grams });
    }

    /// The temperature at `position`: of the vessel standing there, or of the room.
    pub(crate) fn temperature_at(&self, position: &str) -> f64 {
        let (s, _) = self.now();
        s.standing_at(&Place::Position(position.to_owned())).map_or(AMBIENT, |i| s.vessels[i].temperature)
    }

    /// The valve `instrument` reached port `position`.
    pub(crate) fn valve_moved(&self, instrument: &str, position: u32) {
        let (mut s, now) = self.now();
        if let Some(v) = s.valves.get_mut(instrument) {
            v.position = position;
        }
        s.log(now, instrument, Event::ValveMoved { position });
    }
}

/// Grams per microlitre of every liquid on the bench (about that of water).
pub const DENSITY: f64 = 1e-3;

/// The mass of the empty vial of rack slot `slot`, in grams: about 9.5 g, a little different for each vial, as
/// glass is.
pub fn vial_mass(slot: usize) -> f64 {
    9.5 + 0.013 * ((slot * 7 + 3) % 11) as f64
}

/// A change to a hotplate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum PlateCommand {
    /// Any command at all, which resets the watchdog.
    Contact,
    /// A new temperature set point.
    SetPoint(f64),
    /// A new speed set point.
    Speed(f64),
    /// Heater on or off.
    Heater(bool),
    /// Stirrer on or off.
    Motor(bool),
    /// Arms (with the timeout in seconds) or disarms the watchdog.
    Watchdog(Option<f64>),
}

/// What a hotplate's sensors read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PlateReadings {
    pub set_point: f64,
    pub speed_set_point: f64,
    pub temperature: f64,
    pub speed: f64,
    /// The temperature of the medium on the plate, as an immersed probe would read it.
    pub medium: f64,
}

fn near(place: Point, at: Point) -> bool {
    (place.x - at.x).abs() <= GRIP_TOLERANCE.0
        && (place.y - at.y).abs() <= GRIP_TOLERANCE.0
        && (place.z - at.z).abs() <= GRIP_TOLERANCE.1
}

fn snapshot(slot: usize, v: &Vessel) -> VesselSnapshot {
    VesselSnapshot {
        slot,
        location: v.location.clone(),
        volume: v.volume,
        contents: v.contents.clone(),
        moles: v.moles,
        temperature: v.temperature,
        temperature_history: v.history.clone(),
    }
}

impl State {
    /// The reservoir a pump draws from: the one on the current port of a valve feeding it, else its own.
    fn reservoir_of(&self, pump: &str, own: &str) -> String {
        self.source_of(pump).and_then(|k| self.bottles.get(&k)).map_or_else(|| own.to_owned(), |b| b.reagent.clone())
    }

    /// The bottle a pump's input reaches now: the one on the current port of a valve feeding it (none on a port
    /// without a bottle), else its own, by [`crate::lab::Source::key`].
    fn source_of(&self, pump: &str) -> Option<String> {
        match self.valves.iter().find(|(_, v)| v.feeds.as_deref() == Some(pump)) {
            Some((name, v)) => {
                let key = format!("{name}:{}", v.position);
                self.bottles.contains_key(&key).then_some(key)
            }
            None => self.bottles.contains_key(pump).then(|| pump.to_owned()),
        }
    }

    fn log(&mut self, at: f64, instrument: &str, event: Event) {
        self.ledger.push(LedgerEntry { at, instrument: instrument.to_owned(), event });
    }

    fn standing_at(&self, place: &Place) -> Option<usize> {
        self.vessels.iter().position(|v| matches!(&v.location, Location::At(p) if p == place))
    }

    /// Integrates everything up to `now`, in whole substeps.
    fn advance(&mut self, now: f64) {
        while self.t + SUBSTEP <= now {
            self.step();
            self.t += SUBSTEP;
        }
    }

    fn step(&mut self) {
        let t = self.t;
        let end = t + SUBSTEP;
        let mut trips = Vec::new();
        for (position, plate) in &mut self.plates {
            if let Some(m) = plate.watchdog
                && (plate.heater_on || plate.motor_on)
                && end > plate.last_contact + m
            {
                plate.heater_on = false;
                plate.motor_on = false;
                trips.push((plate.last_contact + m, plate.instrument.clone(), position.clone()));
            }
            let set_point = plate.heater_on.then_some(plate.set_point);
            plate.temperature = plate_step(plate.temperature, set_point, SUBSTEP);
        }
        for (at, instrument, position) in trips {
            self.log(at, &instrument, Event::WatchdogTripped { position });
        }
        for v in &mut self.vessels {
            let on = match &v.location {
                Location::At(Place::Position(p)) => self.plates.get(p),
                _ => None,
            };
            let (plate, rpm) = match on {
                Some(p) => (Some(p.temperature), if p.motor_on { p.speed_set_point } else { 0.0 }),
                None => (None, 0.0),
            };
            let target = plate.unwrap_or(AMBIENT);
            let idle = !(v.volume > 0.0 && v.moles.reactive());
            if idle && (v.temperature - target).abs() < 1e-3 {
                continue;
            }
            v.temperature = vessel_step(v.temperature, plate, SUBSTEP);
            if v.history.last().is_none_or(|&(_, last)| (v.temperature - last).abs() >= HISTORY_STEP) {
                v.history.push((end, v.temperature));
            }
            if !idle {
                let litres = v.volume * 1e-6;
                let mut c = v.moles.scaled(1.0 / litres);
                self.chemistry.react(&mut c, v.temperature, rpm, SUBSTEP);
                v.moles = c.scaled(litres);
            }
        }
    }
}
