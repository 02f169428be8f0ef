//! Expected durations of actions, from what the lab file says about its instruments or from what a record shows.
//!
//! Every duration is made of an instrument's [`Rates`]: a pump's plunger speed and its time per stroke, a plate's
//! heating rate, cooling time constant and settling time, a gantry's speed along its path, a spectrometer's time
//! beyond its integration, and a fixed time of commands per action. Defaults come from the lab file's physical
//! settings (syringe, top speed, feed rate, deck positions, integration) and typical figures for the rest (a plate
//! heats at about 10 degC per minute and cools with a time constant of about a quarter of an hour);
//! `plan::calibrate` fits them to the steps a record holds.
//!
//! Two uses. The scheduler plans with [`action`]: one figure per step, known before the step is placed, for the
//! slowest instrument that may run it, with the plate starting at room temperature and the gantry crossing the
//! deck, so plans err on the safe side; it corrects them as real durations arrive
//! (`schedule::resources::Estimates`). `lab plan`'s simulation asks [`Durations::run`] instead, which follows each
//! instrument's [`State`] as the run goes on: a heat after a hotter one waits for the plate to cool, one after a
//! similar one hardly ramps, and a transfer is as long as its path from wherever the gantry stood.

use std::collections::BTreeMap;

use devices::lab::{DriverConfig, InstrumentSpec, Lab, Point};
use devices::{Place, Task};
use protocols::{Action, Destination, InstrumentRef};

/// The room's temperature, in degrees Celsius, that a cold plate starts at and an idle one cools toward.
pub const ROOM: f64 = 22.0;

/// Plunger increments in one full stroke of a Cavro pump (its standard resolution).
const FULL_STROKE: f64 = 3000.0;

/// The expected lab seconds of `action` run on any instrument `on` names: the slowest of them, from a cold start.
pub fn action(lab: &Lab, on: &InstrumentRef, action: &Action) -> f64 {
    lab.candidates(on).map(|spec| on_instrument(lab, spec, action)).fold(0.0, f64::max).max(1.0)
}

/// The expected lab seconds of `action` on one instrument, from a cold start (the plate at room temperature, the
/// gantry crossing the deck), with the lab file's default rates.
pub fn on_instrument(lab: &Lab, spec: &InstrumentSpec, action: &Action) -> f64 {
    Rates::of(lab, spec).cold(lab, spec, action)
}

/// What an instrument's action durations are made of.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rates {
    /// A syringe pump: each stroke aspirates and dispenses (two plunger travels of its increments), switches the
    /// valve twice and waits for the pump to report ready.
    Pump {
        /// Plunger increments per lab second (the lab file's top speed).
        speed: f64,
        /// Lab seconds per stroke beyond the plunger's travel (valve switches, status polls).
        per_stroke: f64,
        /// Lab seconds per dispense beyond its strokes.
        fixed: f64,
        /// The shortest wait the driver makes for a stroke, however short the stroke ([`Pace::min_pause`]).
        min_pause: f64,
    },
    /// A hotplate or a temperature controller: it heats toward a set point at a limited rate, settles, holds, and
    /// when off cools toward the room exponentially.
    Thermal {
        /// Degrees Celsius per lab second while heating.
        ramp: f64,
        /// The time constant (lab seconds) of cooling toward the room with the heater off.
        cooling: f64,
        /// Lab seconds to settle within the tolerance once the ramp is done.
        settle: f64,
        /// Lab seconds between the driver's readings: a ramp is seen to end at the first reading after it ends.
        poll: f64,
        /// The driver's tolerance around the set point, in degrees.
        tolerance: f64,
        /// Lab seconds each reading is expected to add by a lost reply (see [`Pace::stall`]), were none of the wait
        /// for it time the plate spends heating or holding anyway.
        stall: f64,
        /// Lab seconds a lost reply is waited for ([`Pace::wait`]).
        wait: f64,
        /// Lab seconds of commands per action (watchdog, set points read back, start and stop).
        fixed: f64,
    },
    /// A gantry moving vessels: straight moves at its feed rate through the travel height.
    Gantry {
        /// Millimetres per lab second.
        speed: f64,
        /// Lab seconds per transfer beyond its moves (gripper dwells, commands).
        fixed: f64,
    },
    /// A spectrometer: its integration time for each scan, plus a fixed time per reading.
    Spectrometer {
        /// Lab seconds of integration per reading (integration × scans).
        integration: f64,
        /// Lab seconds per reading beyond the integration.
        fixed: f64,
    },
    /// A dispenser that runs at a set rate until the volume has passed (a syringe pump told a rate and a volume, a
    /// flow controller whose flow is integrated): a declared instrument's `dispense`.
    Flow {
        /// Microlitres per lab second.
        rate: f64,
        /// Lab seconds between the driver's looks at whether the volume has passed: it is seen to end at the first
        /// look after it ends (0 when the driver waits exactly for what is left).
        poll: f64,
        /// Lab seconds of commands per look.
        per_poll: f64,
        /// Lab seconds each look is expected to add by a lost reply ([`Pace::stall`]).
        stall: f64,
        /// Lab seconds per dispense beyond its flow and looks (set-up commands, the intent's commit).
        fixed: f64,
    },
    /// Anything else: a fixed time per action.
    Fixed(f64),
}

impl Rates {
    /// The default rates of an instrument, from its lab-file settings, typical figures, and the pace of the run
    /// ([`Pace`]).
    pub fn of(lab: &Lab, spec: &InstrumentSpec) -> Rates {
        let pace = Pace::of(lab, spec);
        let thermal = |tolerance: f64, poll: f64| Rates::Thermal {
            ramp: 10.0 / 60.0,
            cooling: 900.0,
            settle: 10.0,
            poll,
            tolerance,
            stall: pace.stall,
            wait: pace.wait,
            // The watchdog armed, two set points written and read back, heater and stirrer started and stopped, and
            // a real plate's typical time to take them.
            fixed: PLATE_HANDLING * pace.handling + pace.commit + 8.0 * pace.command,
        };
        match &spec.driver {
            DriverConfig::CavroXCalibur(c) => Rates::Pump {
                speed: f64::from(c.top_speed.max(1)),
                // Two valve switches, the command and one status poll.
                per_stroke: 2.0 * devices::drivers::cavro::VALVE_SWITCH + 2.0 * pace.command,
                fixed: 0.5 + pace.commit,
                min_pause: pace.min_pause,
            },
            DriverConfig::IkaHotplate(c) => thermal(c.tolerance.0.abs(), devices::drivers::ika::POLL),
            DriverConfig::ModbusTemperature(c) => thermal(c.tolerance.0.abs(), devices::drivers::modbus::POLL),
            // Two gripper dwells of half a second, and fifteen commands (moves, waits, the position read back).
            DriverConfig::GcodeGantry(g) => {
                Rates::Gantry { speed: g.feed_rate / 60.0, fixed: 1.0 + pace.commit + 15.0 * pace.command }
            }
            DriverConfig::OceanFlame(f) => Rates::Spectrometer {
                integration: f.integration.0 * f64::from(f.scans),
                fixed: SPECTRUM_TRANSFER * pace.handling + pace.commit + 4.0 * pace.command,
            },
            DriverConfig::Declared(d) => declared(d, thermal, pace),
            _ => Rates::Fixed(10.0 + pace.commit),
        }
    }

    /// The lab seconds of `action` from a cold start: the plate at room temperature, a transfer crossing the deck.
    fn cold(&self, lab: &Lab, spec: &InstrumentSpec, action: &Action) -> f64 {
        match (self, action) {
            (Rates::Thermal { .. }, Action::Heat { temperature, duration, .. })
            | (Rates::Thermal { .. }, Action::HoldTemperature { temperature, duration }) => {
                self.heat(ROOM, temperature.0, duration.0, false)
            }
            (Rates::Gantry { speed, fixed }, Action::Transfer { .. }) => {
                // About the deck's extent, plus the travel height to the lowest place and back, twice.
                let (lo, hi) = extent(lab);
                let across = ((hi.x - lo.x).powi(2) + (hi.y - lo.y).powi(2)).sqrt();
                let vertical = 4.0 * (lab.deck.safe_z - lo.z).max(0.0);
                (across + vertical) / speed + fixed
            }
            _ => self.stateless(spec, action),
        }
    }

    /// The lab seconds of an action whose duration does not depend on the instrument's state.
    fn stateless(&self, spec: &InstrumentSpec, action: &Action) -> f64 {
        match (self, action) {
            (Rates::Pump { speed, per_stroke, fixed, min_pause }, Action::Dispense { volume, .. }) => {
                let (increments, strokes) = strokes(spec, volume.0);
                // Each stroke's two plunger travels, but never less than the driver's shortest wait.
                (2.0 * increments / speed).max(strokes * min_pause) + strokes * per_stroke + fixed
            }
            (Rates::Thermal { fixed, .. }, Action::Stir { duration, .. }) => duration.0 + fixed,
            (Rates::Spectrometer { integration, fixed }, Action::Measure { .. }) => integration + fixed,
            (Rates::Flow { rate, poll, per_poll, stall, fixed }, Action::Dispense { volume, .. }) => {
                let flowing = volume.0.max(0.0) / rate.max(1e-9);
                let looks = if *poll > 0.0 { (flowing / poll).ceil().max(1.0) } else { 1.0 };
                let seen = if *poll > 0.0 { looks * poll } else { flowing };
                seen + looks * (per_poll + stall) + FLOW_WRITES * stall + fixed
            }
            (Rates::Fixed(s), _) => *s,
            _ => 10.0,
        }
    }

    /// Lab seconds of a heat to `target` held for `hold`, from a plate at `from` degC. With `polled`, the ramp is
    /// seen to end at the driver's first reading after it ends, as in a run; without, it ends when it ends.
    pub fn heat(&self, from: f64, target: f64, hold: f64, polled: bool) -> f64 {
        let Rates::Thermal { poll, fixed, stall, wait, .. } = *self else { return hold + 10.0 };
        let reach = self.reach(from, target);
        let seen = if polled && reach > 0.0 && poll > 0.0 { (reach / poll).ceil() * poll } else { reach };
        // The ramp is read at its start and every poll until it is seen to end; the hold every poll to its end. The
        // writes are asked again after a lost reply (a set point and the control switched are safe to repeat).
        let writes = HEAT_WRITES * stall;
        fixed + seen + hold + writes + stalls(seen, poll, stall, wait, true) + stalls(hold, poll, stall, wait, false)
    }

    /// Lab seconds until a plate at `from` degC is within its tolerance of `target`: heating at its ramp and
    /// settling, or cooling passively (the heater only heats). A target the room's temperature keeps out of reach
    /// takes the time the plate needs to come within a tenth of a degree of the room.
    pub fn reach(&self, from: f64, target: f64) -> f64 {
        let Rates::Thermal { ramp, cooling, settle, tolerance, .. } = *self else { return 0.0 };
        if (from - target).abs() <= tolerance {
            0.0
        } else if target > from {
            (target - tolerance - from).max(0.0) / ramp.max(1e-6) + settle
        } else {
            let above = (from - ROOM).max(1e-6);
            let goal = (target + tolerance - ROOM).max(0.1).min(above);
            cooling * (above / goal).ln()
        }
    }

    /// The least lab seconds `action` can take here, whatever the instrument's state and wherever a transfer's
    /// choice of destination goes: a heat on a plate already at its set point, a transfer starting above its vessel.
    pub fn least(&self, lab: &Lab, spec: &InstrumentSpec, action: &Action, destinations: &[Point]) -> f64 {
        match (self, action) {
            (Rates::Thermal { fixed, .. }, Action::Heat { duration, .. })
            | (Rates::Thermal { fixed, .. }, Action::HoldTemperature { duration, .. }) => fixed + duration.0,
            (Rates::Gantry { speed, fixed }, Action::Transfer { .. }) => {
                // From above the nearest possible source (the rack or any position) down, up, across to the nearest
                // destination and down and up again: every vertical and the shortest crossing there could be.
                let safe = lab.deck.safe_z;
                let sources: Vec<Point> = lab.deck.positions.values().copied().chain(rack_points(lab)).collect();
                let shortest = destinations
                    .iter()
                    .flat_map(|b| {
                        sources.iter().map(move |a| {
                            let across = ((a.x - b.x).powi(2) + (a.y - b.y).powi(2)).sqrt();
                            across + 2.0 * (safe - a.z).max(0.0) + 2.0 * (safe - b.z).max(0.0)
                        })
                    })
                    .filter(|d| *d > 0.0)
                    .fold(f64::INFINITY, f64::min);
                if shortest.is_finite() { shortest / speed + fixed } else { *fixed }
            }
            // A run may lose no reply at all.
            (Rates::Flow { rate, poll, per_poll, fixed, .. }, _) => {
                Rates::Flow { rate: *rate, poll: *poll, per_poll: *per_poll, stall: 0.0, fixed: *fixed }
                    .stateless(spec, action)
            }
            _ => self.stateless(spec, action),
        }
    }

    /// The lab seconds `task` takes on `spec` if it starts at lab time `now` with the instrument in `state`, and the
    /// state it leaves the instrument in.
    pub fn run(self, lab: &Lab, spec: &InstrumentSpec, state: &mut State, task: &Task, now: f64) -> f64 {
        let rates = self;
        let duration = match (rates, task) {
            (Rates::Thermal { cooling, .. }, Task::Heat { temperature, duration, .. })
            | (Rates::Thermal { cooling, .. }, Task::HoldTemperature { temperature, duration }) => {
                let from = plate_temperature(state.plate, now, cooling);
                let d = rates.heat(from, temperature.0, duration.0, true);
                state.plate = Some((temperature.0, now + d));
                return d;
            }
            (Rates::Gantry { speed, fixed }, Task::Transfer { from, to }) => {
                let (Some(a), Some(b)) = (lab.deck.point(from), lab.deck.point(to)) else {
                    return rates.cold(lab, spec, &transfer_action(to));
                };
                let safe = lab.deck.safe_z;
                let approach = match state.gantry {
                    Some(p) => (safe - p.z).abs() + ((p.x - a.x).powi(2) + (p.y - a.y).powi(2)).sqrt(),
                    None => 0.0,
                };
                let across = ((a.x - b.x).powi(2) + (a.y - b.y).powi(2)).sqrt();
                let path = approach + 2.0 * (safe - a.z).max(0.0) + across + 2.0 * (safe - b.z).max(0.0);
                state.gantry = Some(Point { x: b.x, y: b.y, z: safe });
                path / speed + fixed
            }
            (Rates::Fixed(s), _) => s,
            (_, task) => match action_of(task) {
                Some(a) => rates.stateless(spec, &a),
                None => 10.0,
            },
        };
        duration.max(0.0)
    }
}

/// Commands of a heat that act and are asked again after a lost reply (safe to repeat): the set point written, the
/// control started and stopped. In the `declared` lab's runs, a lost reply to either write cost its whole wait.
const HEAT_WRITES: f64 = 3.0;
/// Commands of a dispense at a rate that act and are asked again after a lost reply: the rate set, and set to zero.
const FLOW_WRITES: f64 = 2.0;

/// The lab seconds lost replies are expected to add to a phase of a heat `length` lab seconds long, read every
/// `poll` (and at its start, if `at_start`), each reading's reply lost with the probability `stall / wait` and then
/// waited for `wait` lab seconds. The phase goes on during the wait (the plate heats, the hold's end is fixed in lab
/// time), so only the part of the wait beyond what the phase still had to go is lost: a lost reply early in a long
/// hold costs nothing. Counting the whole wait for every reading made the `declared` lab's plans about 350 lab s too
/// long a run, against runs that met as many lost replies as the plan expected.
fn stalls(length: f64, poll: f64, stall: f64, wait: f64, at_start: bool) -> f64 {
    if stall <= 0.0 || poll <= 0.0 || length < 0.0 {
        return 0.0;
    }
    let readings = (length / poll).ceil();
    if wait <= 0.0 {
        return (readings + f64::from(u8::from(at_start))) * stall;
    }
    let p = stall / wait;
    let first = if at_start { 0 } else { 1 };
    (first..=readings as u64).map(|k| p * (wait - (length - (k as f64 * poll).min(length))).max(0.0)).sum()
}

/// The default rates of an instrument declared in RON, from its declaration and settings: a temperature it holds
/// as any plate ([`Rates::Thermal`], its declared poll and tolerance), a dispense at its declared rate
/// ([`Rates::Flow`]: a pump's `rate_value`, a flow controller's `rate` times its `scale`), and anything else (a
/// balance's weighing, a thermometer's reading) a couple of its commands, since a reading answers at once and a
/// balance has settled by the time the gantry has let go of the vial and risen. A setting that does not give a
/// number (which `lab check` reports) falls back to ten seconds an action.
fn declared(d: &devices::lab::DeclaredConfig, thermal: impl Fn(f64, f64) -> Rates, pace: Pace) -> Rates {
    use devices::declared::Dispense;
    let decl = &d.declaration;
    let fallback = Rates::Fixed(10.0 + pace.commit);
    if let Some(h) = &decl.hold_temperature {
        return d.number(&h.tolerance).map_or(fallback, |t| thermal(t.abs(), h.poll));
    }
    match &decl.dispense {
        // Clear, rate, volume and start before it runs; a status read each poll; the volume delivered read after.
        Some(Dispense::Run { rate_value, poll, clear, .. }) => d.number(rate_value).map_or(fallback, |r| Rates::Flow {
            rate: r.max(1e-9) / 60.0,
            poll: poll.max(pace.min_pause),
            per_poll: pace.command,
            stall: pace.stall,
            fixed: pace.commit + (4.0 + f64::from(u8::from(clear.is_some()))) * pace.command,
        }),
        // The flow set, read each poll, set to zero; the driver waits exactly for what is left unless its shortest
        // pause is longer than its poll.
        Some(Dispense::Flow { rate, scale, poll, .. }) => d.number(rate).map_or(fallback, |r| Rates::Flow {
            rate: (r * scale).max(1e-9) / 60.0,
            poll: if *poll < pace.min_pause { pace.min_pause } else { 0.0 },
            per_poll: pace.command,
            stall: pace.stall,
            fixed: pace.commit + 2.0 * pace.command,
        }),
        None => Rates::Fixed(pace.commit + 2.0 * pace.command),
    }
}

/// A dispense's plunger increments in all and its strokes, as the pump's driver splits it.
fn strokes(spec: &InstrumentSpec, volume: f64) -> (f64, f64) {
    let syringe = match &spec.driver {
        DriverConfig::CavroXCalibur(c) if c.syringe.0 > 0.0 => c.syringe.0,
        _ => 1000.0,
    };
    let increments = (volume * FULL_STROKE / syringe).round().max(0.0);
    (increments, (increments / FULL_STROKE).ceil().max(1.0))
}

/// What an instrument is like as a run goes on, where that changes how long its next action takes.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct State {
    /// A plate's last set point and the lab time its heater went off, or `None` for a plate at room temperature.
    pub plate: Option<(f64, f64)>,
    /// Where a gantry's head stands, once known.
    pub gantry: Option<Point>,
}

/// The rates of every instrument of a lab, and the lab seconds a run takes to start (opening, identifying and
/// initializing its instruments, homing the gantry) before its first step.
#[derive(Debug, Clone, PartialEq)]
pub struct Durations {
    /// Each instrument's rates, by name.
    pub rates: BTreeMap<String, Rates>,
    /// Lab seconds from the start of a run to its first step.
    pub startup: f64,
    /// Lab seconds per unit of the planner's work (`planner::Plan::work`): the time the controller plans while
    /// instruments wait for their next step, which in a simulated lab's accelerated time is not negligible.
    pub planner: f64,
    /// Lab seconds between the frames a run makes when nothing happens (`resources::IDLE_TICK` at the lab's pace): an
    /// instrument held for a planned step that is late stops waiting only at the next frame.
    pub tick: f64,
    /// Replies the start-up is expected to lose (each instrument's identity and initialization asked over a line
    /// whose simulator loses some), and the lab seconds they add, which `startup` counts in.
    pub lost_at_startup: (f64, f64),
}

impl Durations {
    /// The lab file's default rates for every instrument.
    pub fn of(lab: &Lab) -> Self {
        let lost_at_startup = lab.instruments.iter().fold((0.0, 0.0), |(n, s), spec| {
            let pace = Pace::of(lab, spec);
            let lost = if pace.wait > 0.0 { startup_replies(spec) * pace.stall / pace.wait } else { 0.0 };
            (n + lost, s + lost * pace.wait)
        });
        Durations {
            rates: lab.instruments.iter().map(|i| (i.name.clone(), Rates::of(lab, i))).collect(),
            startup: default_startup(lab) + lost_at_startup.1,
            planner: PLANNER_WALL_PER_WORK * paced_scale(lab),
            tick: crate::schedule::resources::IDLE_TICK.as_secs_f64() * paced_scale(lab),
            lost_at_startup,
        }
    }

    /// These durations with no reply lost: what a run takes that meets none of the lost replies whose expected cost
    /// the rates count ([`Pace::stall`]).
    pub fn calm(&self) -> Durations {
        let mut calm = self.clone();
        calm.startup -= calm.lost_at_startup.1;
        calm.lost_at_startup = (0.0, 0.0);
        for rates in calm.rates.values_mut() {
            match rates {
                Rates::Thermal { stall, .. } | Rates::Flow { stall, .. } => *stall = 0.0,
                _ => {}
            }
        }
        calm
    }

    /// These durations with every lost reply's wait counted whole, none of it spent on the heat's own time: their
    /// excess over [`Durations::calm`] is the expected number of lost replies times the wait for each.
    pub fn whole_waits(&self) -> Durations {
        let mut whole = self.clone();
        for rates in whole.rates.values_mut() {
            if let Rates::Thermal { wait, .. } = rates {
                *wait = 0.0;
            }
        }
        whole
    }

    /// The lab seconds one lost reply of `spec` is waited for before the driver asks again: the line's timeout (at
    /// the lab's time scale for a simulator paced against the wall, [`fault_scale`]).
    pub fn lost_reply(lab: &Lab, spec: &InstrumentSpec) -> f64 {
        Pace::of(lab, spec).wait
    }

    /// The lab seconds a prime of `volume` microlitres adds to a dispense on pump `spec`, which a selector valve
    /// feeds. The pump draws it through its input (a valve switch and the plunger's travel, waited for and then
    /// polled once); the selector turns to its waste port; the pump pushes it all back out (the driver waits its
    /// shortest pause and polls until the travel is over, which on a fast clock is two pauses); and the selector turns
    /// back to the reagent's port. A selector turn is its commands (the move and the position asked until it is there,
    /// about three round trips) and its travel, a quarter of the ports on average by the shortest route at
    /// [`VALVE_PORT`] a port, seen at the driver's next poll. Zero for a pump no valve feeds.
    pub fn prime(&self, lab: &Lab, spec: &InstrumentSpec, volume: f64) -> f64 {
        let Rates::Pump { speed, min_pause, .. } = self.rates(spec) else { return 0.0 };
        let Some((valve, ports)) = lab.instruments.iter().find_map(|i| match &i.driver {
            DriverConfig::ViciValve(v) if v.feeds.as_deref() == Some(spec.name.as_str()) => Some((i, v.positions)),
            _ => None,
        }) else {
            return 0.0;
        };
        let (increments, _) = strokes(spec, volume);
        let (travel, switch) = (increments / speed, devices::drivers::cavro::VALVE_SWITCH);
        let command = Pace::of(lab, spec).command;
        let fill = (travel + switch).max(min_pause) + command;
        let push = (travel + switch).max(2.0 * min_pause) + 2.0 * command;
        let pace = Pace::of(lab, valve);
        let turn = 3.0 * pace.command
            + (f64::from(ports) / 4.0 * VALVE_PORT).max(devices::drivers::vici::POLL).max(pace.min_pause);
        fill + push + 2.0 * turn
    }

    /// The rates of an instrument (ten seconds an action if these durations do not name it).
    pub fn rates(&self, spec: &InstrumentSpec) -> Rates {
        self.rates.get(&spec.name).copied().unwrap_or(Rates::Fixed(10.0))
    }

    /// The state of an instrument when a run starts: plates at room temperature, a gantry at the travel height above
    /// its home corner, where initialization leaves it.
    pub fn initial(&self, lab: &Lab, spec: &InstrumentSpec) -> State {
        match spec.driver {
            DriverConfig::GcodeGantry(_) => {
                State { plate: None, gantry: Some(Point { x: 0.0, y: 0.0, z: lab.deck.safe_z }) }
            }
            _ => State::default(),
        }
    }

    /// The lab seconds `task` takes on `spec` if it starts at lab time `now` with the instrument in `state`, and the
    /// state it leaves the instrument in.
    pub fn run(&self, lab: &Lab, spec: &InstrumentSpec, state: &mut State, task: &Task, now: f64) -> f64 {
        self.rates(spec).run(lab, spec, state, task, now)
    }

    /// The least lab seconds `action` can take on `spec`, whatever the state (see [`Rates::least`]).
    pub fn least(&self, lab: &Lab, spec: &InstrumentSpec, action: &Action, destinations: &[Point]) -> f64 {
        self.rates(spec).least(lab, spec, action, destinations)
    }
}

/// One step a record holds, as far as its duration goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// The instrument that ran it.
    pub instrument: String,
    /// What it did, places resolved.
    pub task: Task,
    /// When it started and finished (lab seconds).
    pub started: f64,
    /// When it finished.
    pub finished: f64,
    /// How long a heat's ramp took, as its driver reported it.
    pub ramp: Option<f64>,
}

impl Durations {
    /// What these durations expected of each step of one recorded run (in order of start), with each instrument's
    /// state followed through the run as it really went: a plate's heater off when its heat really ended, the gantry
    /// where its last transfer really took it. `None` for a step on an instrument `lab` does not have.
    pub fn replay(&self, lab: &Lab, steps: &[Recorded]) -> Vec<Option<f64>> {
        let mut states: BTreeMap<&str, State> = BTreeMap::new();
        steps
            .iter()
            .map(|s| {
                let spec = lab.instrument(&s.instrument)?;
                let state = states.entry(&spec.name).or_insert_with(|| self.initial(lab, spec));
                let expected = self.run(lab, spec, state, &s.task, s.started);
                if let Some((t, _)) = state.plate
                    && matches!(s.task, Task::Heat { .. } | Task::HoldTemperature { .. })
                {
                    state.plate = Some((t, s.finished));
                }
                Some(expected)
            })
            .collect()
    }
}

/// A plate's temperature at lab time `now`, from its last set point and when its heater went off.
pub fn plate_temperature(plate: Option<(f64, f64)>, now: f64, cooling: f64) -> f64 {
    match plate {
        None => ROOM,
        Some((t, off)) => ROOM + (t - ROOM) * (-(now - off).max(0.0) / cooling.max(1e-6)).exp(),
    }
}

/// The replies an instrument's start-up asks for: its identity (every line of it) and each initialization call; a
/// built-in driver's, about two.
fn startup_replies(spec: &InstrumentSpec) -> f64 {
    let DriverConfig::Declared(d) = &spec.driver else { return 2.0 };
    let decl = &d.declaration;
    let lines = match decl.commands.get(&decl.identify.command).map(|c| &c.lines) {
        Some(devices::declared::Lines::Count(n)) => f64::from(*n),
        _ => 1.0,
    };
    lines + decl.init.len() as f64
}

/// A run's start before its first step: starting simulators, opening the record and the ports, then every
/// instrument identified and initialized at once, the slowest a gantry homing from the far corner of its travel and
/// rising to the travel height, then the first step's intent committed.
fn default_startup(lab: &Lab) -> f64 {
    let homing = lab
        .instruments
        .iter()
        .map(|i| match &i.driver {
            DriverConfig::GcodeGantry(g) => {
                let t = g.travel;
                (t.x * t.x + t.y * t.y + t.z * t.z).sqrt() / (g.feed_rate / 60.0)
                    + lab.deck.safe_z / (g.feed_rate / 60.0)
            }
            _ => 2.0,
        })
        .fold(0.0, f64::max);
    (STARTUP_WALL + STARTUP_WALL_PER_INSTRUMENT * lab.instruments.len() as f64 + COMMIT_WALL) * paced_scale(lab)
        + homing
}

/// What the pace of a run adds to each action, in lab seconds. A simulated lab run against the wall runs its lab time
/// hundreds of times faster than the wall, so the wall time the controller itself takes becomes lab time at that
/// rate: the commit of a step's intent before it is sent, each command's round trip, and the drivers' shortest pause
/// between polls (`devices::drivers::MIN_POLL_WALL`). At one lab second per second (any lab with a real instrument)
/// they are milliseconds, except a real serial line's round trip. A lab simulated in the controller's process runs
/// on a discrete-event clock, where none of that is lab time: only what its simulators' faults cost (a latency, a
/// lost reply's wait), which that clock counts as the real lab would, a second of it a lab second
/// ([`fault_scale`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace {
    /// Lab seconds from a step's dispatch to its first command: its intent committed to disk.
    pub commit: f64,
    /// Lab seconds of one command's round trip, with its simulator's latency and damaged replies asked again.
    pub command: f64,
    /// Lab seconds a reading (a command that cannot act, so the driver asks it again) is expected to add by a lost
    /// reply, each waited for until the line's timeout. A lost reply to a command that acts fails its step instead.
    pub stall: f64,
    /// Lab seconds a lost reply is waited for: the line's timeout, at the lab's pace for a simulator paced against
    /// the wall ([`fault_scale`]).
    pub wait: f64,
    /// The shortest pause a driver makes, in lab seconds.
    pub min_pause: f64,
    /// How much of a real instrument's typical handling time (a plate taking its set points, a spectrum's transfer)
    /// the run spends: all of it, but none on the discrete-event clock, whose simulators answer in no lab time (a
    /// run there spent none: `lab plan --calibrate` fitted these to 0 on the repository's simulated campaigns).
    pub handling: f64,
}

/// Lab seconds a real hotplate's action spends beyond its commands' round trips: the lab file's typical figure,
/// which `lab plan --calibrate` fits to a lab's own record.
const PLATE_HANDLING: f64 = 5.0;
/// Lab seconds a real spectrometer's reading spends beyond its integration and its commands: the spectrum's transfer.
const SPECTRUM_TRANSFER: f64 = 1.0;

/// Lab seconds a selector valve takes per port it passes: the simulated actuator's figure (a real one is of that order:
/// a 10-port turn within a second or two).
const VALVE_PORT: f64 = 0.1;
/// Wall seconds to commit a step's intent (a synchronous write to the record's disk).
const COMMIT_WALL: f64 = 0.004;
/// Wall seconds of a command's round trip to a simulator on a pseudo-terminal.
const SIMULATOR_ROUND_TRIP_WALL: f64 = 0.0003;
/// Wall seconds of a command's round trip on a real serial line (a short command and reply at 9600 baud, and the
/// instrument's own processing).
const SERIAL_ROUND_TRIP: f64 = 0.03;
/// Wall seconds per unit of the planner's work: 9 to 25 ns measured in `lab plan` of the repository's campaigns on
/// a 2-core Xeon virtual machine, busy (BENCHMARKS.md, "Planning"); the larger figure for the largest plans, whose
/// data outgrow the caches, and which are the only ones this matters for.
const PLANNER_WALL_PER_WORK: f64 = 20e-9;
/// Wall seconds from a run's start to its first step beyond each instrument's share: opening the record. Measured
/// in runs of the repository's campaigns (6 to 100 instruments) on the machine of BENCHMARKS.md.
const STARTUP_WALL: f64 = 0.03;
/// Wall seconds each instrument adds to a run's start: its simulator started, its port opened, its identity asked and
/// its initialization commands answered.
const STARTUP_WALL_PER_INSTRUMENT: f64 = 0.0085;

impl Pace {
    /// The pace of `spec` in a run of `lab` at the lab's own time scale.
    pub fn of(lab: &Lab, spec: &InstrumentSpec) -> Pace {
        let (scale, paced) = (fault_scale(lab), paced_scale(lab));
        let (command, stall) = if spec.port.is_simulated() {
            let (trip, stall) = simulated_round_trip(spec, lab.simulated_in_process());
            (trip * scale, stall * scale)
        } else {
            (SERIAL_ROUND_TRIP, 0.0)
        };
        Pace {
            commit: COMMIT_WALL * paced,
            command,
            stall,
            wait: spec.line.timeout.as_secs_f64() * if spec.port.is_simulated() { scale } else { 1.0 },
            min_pause: devices::drivers::MIN_POLL_WALL.as_secs_f64() * paced,
            handling: if lab.simulated_in_process() { 0.0 } else { 1.0 },
        }
    }
}

/// Wall seconds of a command's mean round trip to a simulator with the faults the lab file gives it, and apart the
/// wall seconds lost replies add: its latency before each reply, a damaged or busy reply asked again at once, and a
/// reply lost (or cut short, so that its end never comes) waited for until the line's timeout and asked again. A
/// drawn fault is luck a plan cannot know; this is its expected cost, which at a simulated lab's pace against the
/// wall is large (one lost reply is a second of wall time, hundreds of lab seconds). On a discrete-event clock
/// (`discrete`) the trip itself costs nothing, and the faults cost their wall seconds as lab seconds.
fn simulated_round_trip(spec: &InstrumentSpec, discrete: bool) -> (f64, f64) {
    let trip = if discrete { 0.0 } else { SIMULATOR_ROUND_TRIP_WALL };
    let Some(f) = &spec.faults else { return (trip, 0.0) };
    let lost = (f.no_reply + f.truncated).clamp(0.0, 1.0);
    let again = (f.garbled + f.bad_checksum + f.busy).clamp(0.0, 1.0);
    let one = trip + f.latency.mean().as_secs_f64();
    (one * (1.0 + lost + again), lost * spec.line.timeout.as_secs_f64())
}

/// The lab seconds per wall second a run of `lab` takes by default: its simulation's time scale when every
/// instrument is simulated, else real time.
pub fn time_scale(lab: &Lab) -> f64 {
    if lab.all_simulated() { lab.simulation.time_scale } else { 1.0 }
}

/// The lab seconds a wall second of a simulated instrument's own delays (its latency, a lost reply's timeout) adds to
/// a run of `lab`: its time scale when paced against the wall, but one on the discrete-event clock of a lab simulated
/// in the controller's process, which stands for the real lab (`devices::clock`).
pub fn fault_scale(lab: &Lab) -> f64 {
    if lab.simulated_in_process() { 1.0 } else { time_scale(lab) }
}

/// The lab seconds a wall second of the controller's own work (a commit, the planner, a round trip) adds to a run of
/// `lab`: its time scale, but nothing on the discrete-event clock of a lab simulated in the controller's process.
pub fn paced_scale(lab: &Lab) -> f64 {
    if lab.simulated_in_process() { 0.0 } else { time_scale(lab) }
}

/// The protocol action a task carries out, for durations that do not depend on places.
fn action_of(task: &Task) -> Option<Action> {
    Some(match task {
        Task::Dispense { volume } => Action::Dispense { volume: *volume, reagent: None },
        Task::Stir { speed, duration } => Action::Stir { speed: *speed, duration: *duration },
        Task::Measure { wavelength } => Action::Measure { wavelength: *wavelength, output: String::new() },
        Task::Heat { temperature, duration, stir } => {
            Action::Heat { temperature: *temperature, duration: *duration, stir: *stir }
        }
        Task::HoldTemperature { temperature, duration } => {
            Action::HoldTemperature { temperature: *temperature, duration: *duration }
        }
        Task::Transfer { to, .. } => transfer_action(to),
        _ => return None,
    })
}

fn transfer_action(to: &Place) -> Action {
    Action::Transfer {
        to: match to {
            Place::Rack(_) => Destination::Rack,
            Place::Position(p) => Destination::Named(p.clone()),
        },
    }
}

/// The rack's first and last slots, the corners of the rack.
fn rack_points(lab: &Lab) -> impl Iterator<Item = Point> + '_ {
    (0..lab.deck.rack.slots()).filter_map(|i| lab.deck.rack.slot(i))
}

fn extent(lab: &Lab) -> (Point, Point) {
    let mut points: Vec<Point> = lab.deck.positions.values().copied().collect();
    points
        .extend((0..lab.deck.rack.slots()).step_by(lab.deck.rack.slots().max(1)).filter_map(|i| lab.deck.rack.slot(i)));
    if let Some(last) = lab.deck.rack.slot(lab.deck.rack.slots().saturating_sub(1)) {
        points.push(last);
    }
    let lo = points.iter().fold(Point { x: f64::MAX, y: f64::MAX, z: f64::MAX }, |a, p| Point {
        x: a.x.min(p.x),
        y: a.y.min(p.y),
        z: a.z.min(p.z),
    });
    let hi = points.iter().fold(Point { x: f64::MIN, y: f64::MIN, z: f64::MIN }, |a, p| Point {
        x: a.x.max(p.x),
        y: a.y.max(p.y),
        z: a.z.max(p.z),
    });
    (lo, hi)
}
