//! What an instrument can tell of its physical state when asked, so a step left in doubt is settled from what the
//! instrument says rather than by policy.
//!
//! A step is in doubt when the controller stopped while it ran (a crash, a kill) or when it failed after it may
//! have acted. The instruments do not stop with the controller: a hotplate keeps heating at its set point, a pump
//! finishes its stroke or stops partway, a gantry holds a vial somewhere. [`ReadBack`] (a capability, so it lives in
//! [`crate::capability`] and is re-exported here) is what an instrument that can be asked implements:
//! [`ReadBack::observe`] sends only queries (and, for a pump still moving or a gantry with moves still queued, waits
//! for the motion to end, which moves nothing itself) and returns an [`Observed`] state. A driver implements it only
//! for what its instrument can really report; where nothing can be read, the controller's policies for steps in
//! doubt stand. This module settles a step from what was read: [`settle_heat`], [`settle_dispense`] and
//! [`settle_transfer`] decide, each from what its driver's own commands leave behind.
//!
//! The record keeps every exchange of a step, so the controller can also give a driver's own parser the exchanges
//! a step made before the controller stopped ([`RecordedExchange`]): the readings that show when a plate reached
//! its set point, the stroke commands a pump accepted. `crate::drivers::recorded_temperatures` and
//! `crate::drivers::recorded_strokes` read them for the driver the lab file names.

use protocols::units::{Duration, Speed, Temperature, Volume};
use serde::Serialize;

pub use crate::capability::{GantryState, Gripper, HeaterState, Heating, Observed, PumpState, ReadBack, Valve};
use crate::capability::{Outcome, Place, Task};

/// One exchange of a step as the record keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedExchange {
    /// Its id in the record.
    pub id: i64,
    /// Lab time the command was written.
    pub sent_at: f64,
    /// The command's bytes.
    pub sent: Vec<u8>,
    /// Lab time the reply was complete.
    pub replied_at: Option<f64>,
    /// The reply's bytes.
    pub received: Vec<u8>,
}

/// A temperature a driver read during a step, from the record: the exchange, when, and degrees Celsius.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecordedReading {
    /// The exchange's id in the record.
    pub id: i64,
    /// Lab time the reply was complete.
    pub at: f64,
    /// The reading.
    pub value: f64,
}

/// A stroke command a pump was sent during a step, from the record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecordedStroke {
    /// The exchange's id in the record.
    pub id: i64,
    /// The plunger increments of the stroke.
    pub increments: u32,
    /// Whether the pump's answer accepted it (an answer with no error code); `false` for a refused command and for
    /// one whose answer the record does not hold.
    pub accepted: bool,
}

/// A step in doubt, as the controller knows it.
#[derive(Debug, Clone, Copy)]
pub struct Doubt<'a> {
    /// The task the instrument was sent.
    pub task: &'a Task,
    /// The task the step asked for: `task` itself, unless `task` carries it on after an earlier read-back.
    pub asked: &'a Task,
    /// Lab time the task's intent was recorded.
    pub started: f64,
    /// What the record holds of the step's exchanges, in order, when the controller stopped; `None` when it did not
    /// (the exchanges are still on their way to the record).
    pub exchanges: Option<&'a [RecordedExchange]>,
    /// The instrument's last exchanges before the step, as the record holds them (they were durable before the
    /// step's intent), when the controller stopped.
    pub before: Option<&'a [RecordedExchange]>,
}

impl Doubt<'_> {
    /// The recorded exchanges of the task in doubt (those since its intent), or none.
    pub fn since_start(&self) -> Vec<RecordedExchange> {
        self.exchanges.unwrap_or_default().iter().filter(|e| e.sent_at >= self.started).cloned().collect()
    }
}

/// A value that came out other than the step asked, for the record and the learner.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Actual {
    /// The volume a dispense moved.
    Volume(Volume),
    /// The hold a heat lasted.
    Duration(Duration),
}

/// How a step in doubt is settled from what its instrument reported.
#[derive(Debug, Clone, PartialEq)]
pub enum Settlement {
    /// The instrument is still at it: the controller sends `task` to carry on (it confirms the state again before
    /// it writes anything).
    Continue {
        /// The continuation.
        task: Task,
        /// Why, in words.
        why: String,
    },
    /// It happened (completely, or with `actual` instead of what was asked).
    Done {
        /// What it produced.
        outcome: Outcome,
        /// Why, in words.
        why: String,
        /// For a transfer, where the vessel stands.
        place: Option<Place>,
        /// What came out other than asked, if anything.
        actual: Option<Actual>,
    },
    /// Nothing of it happened: it may run.
    NotDone {
        /// Why, in words.
        why: String,
        /// For a transfer, where the vessel stands.
        place: Option<Place>,
    },
    /// What the instrument reported does not settle it; the controller's policy for steps in doubt applies.
    InDoubt {
        /// Why, in words.
        why: String,
        /// A reading that contradicts the record, naming both, if that is why.
        contradiction: Option<String>,
    },
}

impl Settlement {
    /// The decision's name in the record: `resumed`, `done`, `partial`, `overran`, `not_done`, `in_doubt` or
    /// `contradiction`.
    pub fn label(&self) -> &'static str {
        match self {
            Settlement::Continue { .. } => "resumed",
            Settlement::Done { actual: None, .. } => "done",
            Settlement::Done { actual: Some(Actual::Volume(_)), .. } => "partial",
            Settlement::Done { actual: Some(Actual::Duration(_)), .. } => "overran",
            Settlement::NotDone { .. } => "not_done",
            Settlement::InDoubt { contradiction: None, .. } => "in_doubt",
            Settlement::InDoubt { contradiction: Some(_), .. } => "contradiction",
        }
    }

    /// The reasoning, in words.
    pub fn why(&self) -> &str {
        match self {
            Settlement::Continue { why, .. }
            | Settlement::Done { why, .. }
            | Settlement::NotDone { why, .. }
            | Settlement::InDoubt { why, .. } => why,
        }
    }

    fn doubt(why: impl Into<String>) -> Self {
        Settlement::InDoubt { why: why.into(), contradiction: None }
    }

    fn contradiction(found: impl Into<String>, recorded: impl Into<String>) -> Self {
        let (found, recorded) = (found.into(), recorded.into());
        Settlement::InDoubt {
            why: format!("{found}, but {recorded}: the reading contradicts the record"),
            contradiction: Some(format!("{found}; {recorded}")),
        }
    }
}

/// A settlement with the recorded exchanges (their ids in the record) that it rests on besides the reading itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The settlement.
    pub settlement: Settlement,
    /// The ids of the recorded exchanges it rests on.
    pub evidence: Vec<i64>,
}

impl From<Settlement> for Verdict {
    fn from(settlement: Settlement) -> Self {
        Verdict { settlement, evidence: Vec::new() }
    }
}

/// How a plate whose controller is gone stops itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Watchdog {
    /// The longest it keeps going without hearing from the controller, in lab seconds.
    pub longest: f64,
    /// Whether within a hold the driver arms it with the hold's time left and a margin, so the plate stops that
    /// margin after the hold's end.
    pub hold_aware: bool,
    /// The margin: how long after the hold's end a hold-aware watchdog stops the plate, in lab seconds.
    pub overrun: f64,
    /// How much later than that it may stop it (a poll, the plate's shortest watchdog), in lab seconds.
    pub slack: f64,
}

/// What settling a heat needs to know of a driver.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeatFacts {
    /// How the plate stops itself, if it has a watchdog the driver arms.
    pub watchdog: Option<Watchdog>,
    /// Whether, for a heat that stirs, a turning stirrer means the heater is on (the driver starts them together and
    /// stops them together).
    pub stirrer_tells_heater: bool,
    /// Lab seconds between the driver's readings during a hold.
    pub poll: f64,
}

/// A heat or temperature hold in doubt: what it asked for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeatWant {
    /// The set point.
    pub temperature: Temperature,
    /// The hold.
    pub hold: Duration,
    /// The stirring.
    pub stir: Option<Speed>,
    /// Lab time its intent was recorded.
    pub started: f64,
    /// Whether the hold counts from the intent (a continuation of a hold already under way).
    pub hold_from_start: bool,
    /// Whether it is a hotplate's heat (else a temperature controller's hold).
    pub plate: bool,
}

impl HeatWant {
    /// What a heat task asks for, if it is one.
    pub fn of(task: &Task, started: f64) -> Option<Self> {
        let (temperature, hold, stir, hold_from_start, plate) = match *task {
            Task::Heat { temperature, duration, stir } => (temperature, duration, stir, false, true),
            Task::ContinueHeat { temperature, hold, stir, at_set_point } => {
                (temperature, hold, stir, at_set_point, true)
            }
            Task::HoldTemperature { temperature, duration } => (temperature, duration, None, false, false),
            Task::ContinueHold { temperature, hold, at_set_point } => (temperature, hold, None, at_set_point, false),
            _ => return None,
        };
        Some(HeatWant { temperature, hold, stir, started, hold_from_start, plate })
    }

    /// The task that carries it on for `hold` more lab seconds.
    fn continuation(&self, hold: f64, at_set_point: bool) -> Task {
        let hold = Duration(hold.max(0.0));
        if self.plate {
            Task::ContinueHeat { temperature: self.temperature, hold, stir: self.stir, at_set_point }
        } else {
            Task::ContinueHold { temperature: self.temperature, hold, at_set_point }
        }
    }
}

/// The hold's end may be this late, or the set point's arrival this uncertain, and a heat still count as held for
/// the time it asked: three readings' worth, or a tenth of the hold.
pub fn tolerable(poll: f64, hold: f64) -> f64 {
    (3.0 * poll).max(0.1 * hold)
}

/// Settles a heat (or temperature hold) in doubt from what the heater reports (`h`), the temperatures the step read
/// before the controller stopped (`readings`, all of them: a continuation's ramp goes on from the readings before
/// it), and the last exchange the record holds of the task in doubt.
pub fn settle_heat(
    h: &HeaterState,
    want: &HeatWant,
    asked: Duration,
    readings: &[RecordedReading],
    last_contact: Option<f64>,
    facts: &HeatFacts,
    now: f64,
) -> Verdict {
    let t = want.temperature.0;
    let d = want.hold.0;
    // What the step asked for in all, of which `d` may be the rest a continuation was sent to hold: a hold that ran
    // long runs long against the whole.
    let whole = asked.0.max(d);
    let tol = h.tolerance.0.abs();
    let mut evidence = Vec::new();
    let verdict = |settlement: Settlement, evidence: Vec<i64>| Verdict { settlement, evidence };
    let heating = match h.heating {
        Heating::On => Some(true),
        Heating::Off => Some(false),
        Heating::Unknown if facts.stirrer_tells_heater && want.stir.is_some() => h.stirring.map(|s| s.0 > 0.0),
        Heating::Unknown => None,
    };
    if (h.set_point.0 - t).abs() > 0.05 {
        if heating == Some(false) && readings.is_empty() && last_contact.is_none() {
            return Settlement::NotDone {
                why: format!(
                    "the set point reads {}, not the step's {}, and it does not heat ({}); the record holds none of \
                     the step's exchanges: the heat never began",
                    h.set_point, want.temperature, h.heating_from
                ),
                place: None,
            }
            .into();
        }
        return Settlement::contradiction(
            format!("the set point reads {}", h.set_point),
            format!("the record says the step set it to {}", want.temperature),
        )
        .into();
    }
    if let (Some(true), Some(rpm)) = (heating, want.stir) {
        let turning = h.stirring.map_or(0.0, |s| s.0);
        if (turning - rpm.0).abs() > (0.05 * rpm.0).max(10.0) {
            return Settlement::contradiction(
                format!("the stirrer turns at {turning:.0} rpm"),
                format!("the record says the step stirs at {rpm}"),
            )
            .into();
        }
    }
    let Some(on) = heating else {
        return Settlement::doubt(format!("whether it heats cannot be read: {}", h.heating_from)).into();
    };
    let tolerable = tolerable(facts.poll, whole);
    // When the hold began: the first reading at the set point, as the driver counts it.
    let reached = if want.hold_from_start {
        Some((want.started, "the hold was under way when the step's continuation began".to_owned()))
    } else {
        readings.iter().find(|r| r.at >= want.started && (r.value - t).abs() <= tol).map(|r| {
            evidence.push(r.id);
            (
                r.at,
                format!(
                    "the hold began at {:.0} s, when a reading (exchange {}) found {:.1} degC",
                    r.at, r.id, r.value
                ),
            )
        })
    };
    let held_mean = |start: f64| {
        let hold: Vec<f64> = readings.iter().filter(|r| r.at > start).map(|r| r.value).collect();
        let mean = if hold.is_empty() { h.temperature.0 } else { hold.iter().sum::<f64>() / hold.len() as f64 };
        Some(Temperature(mean))
    };
    let gap = match last_contact {
        Some(c) => format!("nothing was read between {c:.0} s and {now:.0} s, while the controller was away"),
        None => format!("the record holds no reading of it before {now:.0} s"),
    };
    if on {
        let (start, how) = match reached {
            Some(r) => r,
            None if !h.at_set_point() => {
                return verdict(
                    Settlement::Continue {
                        task: want.continuation(d, false),
                        why: format!(
                            "it still heats toward its set point ({} of {}): it carries on, and holds for {:.0} s once \
                             there",
                            h.temperature, want.temperature, d
                        ),
                    },
                    evidence,
                );
            }
            None => {
                let lower = readings.last().map_or(want.started, |r| r.at);
                evidence.extend(readings.iter().rev().take(2).map(|r| r.id));
                match arrival(readings, t, tol).map(|e| e.clamp(lower, now)) {
                    Some(e) => (
                        e,
                        format!(
                            "it reached its set point while the controller was away, between {lower:.0} s and \
                             {now:.0} s; the recorded ramp puts that at {e:.0} s, where the hold is counted from"
                        ),
                    ),
                    None if now - lower <= tolerable => (
                        lower,
                        format!(
                            "it reached its set point while the controller was away, between {lower:.0} s and \
                             {now:.0} s; the hold is counted from {lower:.0} s"
                        ),
                    ),
                    None => {
                        return verdict(
                            Settlement::doubt(format!(
                                "it reached its set point while the controller was away, sometime in the {:.0} s \
                                 between {lower:.0} s and {now:.0} s, and no recorded ramp says when",
                                now - lower
                            )),
                            evidence,
                        );
                    }
                }
            }
        };
        let end = start + d;
        if now < end {
            if !h.at_set_point() {
                return verdict(
                    Settlement::contradiction(
                        format!("it heats but reads {}", h.temperature),
                        format!("the record says its hold at {} was under way", want.temperature),
                    ),
                    evidence,
                );
            }
            return verdict(
                Settlement::Continue {
                    task: want.continuation(end - now, true),
                    why: format!(
                        "{how}; it still heats at its set point, so the hold carries on for the {:.0} s left of \
                         {d:.0} s; {gap}",
                        end - now
                    ),
                },
                evidence,
            );
        }
        let over = now - end;
        let outcome = Outcome::Held { mean_temperature: held_mean(start), ramp: Duration(start - want.started) };
        let actual = (over > tolerable).then_some(Actual::Duration(Duration(whole + over)));
        return verdict(
            Settlement::Done {
                outcome,
                why: format!(
                    "{how}; the hold ended at {end:.0} s while the controller was away and it heats on: it is switched \
                     off now, {over:.0} s late{}",
                    if actual.is_some() {
                        format!(", so it held {:.0} s, not {whole:.0} s", whole + over)
                    } else {
                        String::new()
                    }
                ),
                place: None,
                actual,
            },
            evidence,
        );
    }
    let Some((start, how)) = reached else {
        return verdict(
            Settlement::doubt(format!(
                "it is switched off ({}), and the record does not show it reached its set point",
                h.heating_from
            )),
            evidence,
        );
    };
    let end = start + d;
    if now < end {
        return verdict(
            Settlement::doubt(format!(
                "{how}; it is switched off ({}) {:.0} s before the hold's end at {end:.0} s",
                h.heating_from,
                end - now
            )),
            evidence,
        );
    }
    let outcome = Outcome::Held { mean_temperature: held_mean(start), ramp: Duration(start - want.started) };
    match (facts.watchdog, last_contact) {
        (Some(w), Some(c)) if w.hold_aware && c >= end - w.longest => {
            // Armed with the hold's time left and a margin (never more than its longest), the watchdog stopped the
            // plate after the hold's end, and at most the margin (and the slack) after it. How far within that is
            // known only if the step's last exchange came late enough for the margin to fit under the longest.
            let held = whole + w.overrun;
            let exact = c >= end + w.overrun - w.longest;
            if w.overrun + w.slack > tolerable && !exact {
                return verdict(
                    Settlement::doubt(format!(
                        "{how}; it was switched off by its watchdog after the hold's end at {end:.0} s, sometime in \
                         the {:.0} s after it",
                        w.overrun + w.slack
                    )),
                    evidence,
                );
            }
            let actual = (w.overrun + w.slack > tolerable).then_some(Actual::Duration(Duration(held)));
            verdict(
                Settlement::Done {
                    outcome,
                    why: format!(
                        "{how}; it finished while the controller was away: its watchdog, armed with the hold's time \
                         left and {:.0} s more (the step's last exchange was at {c:.0} s), switched it off at about \
                         {:.0} s{}",
                        w.overrun,
                        end + w.overrun,
                        if actual.is_some() {
                            format!(", so it held about {held:.0} s, not {whole:.0} s")
                        } else {
                            format!(", within {tolerable:.0} s of the hold's end")
                        }
                    ),
                    place: None,
                    actual,
                },
                evidence,
            )
        }
        _ => verdict(
            Settlement::doubt(format!(
                "{how}; it was switched off ({}) while the controller was away, and whether before the hold's end \
                 at {end:.0} s, or how long after, is not known",
                h.heating_from
            )),
            evidence,
        ),
    }
}

/// When a ramp whose last two readings are these reaches within `tol` of `t`, by carrying their rate on; `None`
/// if there are not two readings or the ramp does not head for `t`.
fn arrival(readings: &[RecordedReading], t: f64, tol: f64) -> Option<f64> {
    let [.., a, b] = readings else { return None };
    let rate = (b.value - a.value) / (b.at - a.at);
    let target = if t > b.value { t - tol } else { t + tol };
    let eta = (target - b.value) / rate;
    (rate.is_finite() && eta.is_finite() && eta >= 0.0).then_some(b.at + eta)
}

/// Settles a dispense in doubt from what the pump reports (`p`), the strokes its volume takes (`strokes`, in
/// increments), the stroke commands the record holds (`None` when the controller did not stop), and where the valve
/// stood before the step (from the pump's recorded commands before it). Every stroke leaves the valve the other way
/// than it found it, so an idle pump with an empty syringe tells whether the step's one stroke ran.
pub fn settle_dispense(
    p: &PumpState,
    strokes: &[u32],
    recorded: Option<&[RecordedStroke]>,
    before: Option<Valve>,
) -> Verdict {
    let ul = p.microlitres_per_increment;
    let accepted: Vec<&RecordedStroke> = recorded.unwrap_or_default().iter().filter(|s| s.accepted).collect();
    let evidence: Vec<i64> = accepted.iter().map(|s| s.id).collect();
    let verdict = |settlement: Settlement| Verdict { settlement, evidence: evidence.clone() };
    let total: u32 = strokes.iter().sum();
    let volume = |increments: u32| Volume(f64::from(increments) * ul);
    if !p.ready {
        return verdict(Settlement::doubt(format!("the pump is still moving after {:.0} lab s", p.waited)));
    }
    let Some(valve) = p.valve else { return verdict(Settlement::doubt("the pump did not say where its valve is")) };
    // The stroke the pump was on: the last one the record shows accepted, or the only one.
    let current = match (accepted.len(), strokes.len()) {
        (0, 1) => Some(0),
        (0, _) => None,
        (k, _) => Some(k - 1),
    };
    let strokes_before = |k: usize| strokes[..k.min(strokes.len())].iter().sum::<u32>();
    if let Some((code, message)) = &p.error {
        let Some(k) = current.filter(|k| *k < strokes.len()) else {
            return verdict(Settlement::doubt(format!(
                "the pump reports error {code} ({message}), and the record does not show which stroke it was on"
            )));
        };
        let this = strokes[k];
        return match valve {
            Valve::Output if p.plunger > 0 && p.plunger <= this => {
                let moved = strokes_before(k) + (this - p.plunger);
                verdict(Settlement::Done {
                    outcome: Outcome::Dispensed { volume: volume(moved) },
                    why: format!(
                        "the pump stopped partway with error {code} ({message}): the plunger at {} of {this} \
                         increments with the valve to the output, so {:.2} uL of {:.2} uL reached the vessel; what \
                         stayed in the syringe goes back to the reservoir, never to the vessel",
                        p.plunger,
                        volume(moved).0,
                        volume(total).0
                    ),
                    place: None,
                    actual: Some(Actual::Volume(volume(moved))),
                })
            }
            Valve::Input if p.plunger <= this && strokes_before(k) == 0 => verdict(Settlement::NotDone {
                why: format!(
                    "the pump stopped with error {code} ({message}) while filling, the valve still to the input: \
                     nothing reached the vessel, and what is in the syringe goes back to the reservoir"
                ),
                place: None,
            }),
            Valve::Input if p.plunger <= this => verdict(Settlement::Done {
                outcome: Outcome::Dispensed { volume: volume(strokes_before(k)) },
                why: format!(
                    "the pump stopped with error {code} ({message}) while filling stroke {} of {}: the strokes before \
                     it moved {:.2} uL; what is in the syringe goes back to the reservoir",
                    k + 1,
                    strokes.len(),
                    volume(strokes_before(k)).0
                ),
                place: None,
                actual: Some(Actual::Volume(volume(strokes_before(k)))),
            }),
            _ => verdict(Settlement::contradiction(
                format!("the pump reports error {code} with its plunger at {} increments", p.plunger),
                format!("the step's stroke {} goes to {this} increments", k + 1),
            )),
        };
    }
    let name = |v: Valve| match v {
        Valve::Input => "the input",
        Valve::Output => "the output",
        Valve::Bypass => "bypass",
    };
    // Each stroke turns the valve the other way; after all of them it stands so.
    let after_all = before.map(|b| if strokes.len() % 2 == 1 { other(b) } else { b });
    let all_accepted = recorded.is_some() && accepted.len() == strokes.len();
    match (p.plunger, valve) {
        (0, v) if all_accepted && after_all.is_none_or(|a| a == v) => verdict(Settlement::Done {
            outcome: Outcome::Dispensed { volume: volume(total) },
            why: format!(
                "the pump is ready with an empty syringe and the valve to {}, as its last stroke leaves it, and the \
                 record shows all {} of the step's strokes accepted",
                name(v),
                strokes.len()
            ),
            place: None,
            actual: None,
        }),
        (0, v) if all_accepted => verdict(Settlement::contradiction(
            format!("the pump's valve is to {}", name(v)),
            format!(
                "the record shows all the step's strokes accepted, which leave it to {}",
                name(after_all.unwrap_or(v))
            ),
        )),
        (0, v) if recorded.is_some() && accepted.is_empty() && before == Some(v) => verdict(Settlement::NotDone {
            why: format!(
                "the pump is ready with an empty syringe and the valve still to {}, where the pump's last recorded \
                 command before the step left it: no stroke of the step ran",
                name(v)
            ),
            place: None,
        }),
        (0, v) if recorded.is_some() && accepted.is_empty() && before.is_some() && strokes.len() == 1 => {
            verdict(Settlement::Done {
                outcome: Outcome::Dispensed { volume: volume(total) },
                why: format!(
                    "the pump is ready with an empty syringe and the valve to {}, turned the other way by the step's \
                     stroke, which the controller sent just before it stopped (the stroke's answer did not reach the \
                     record)",
                    name(v)
                ),
                place: None,
                actual: None,
            })
        }
        (0, v) => verdict(Settlement::doubt(format!(
            "the pump is ready with an empty syringe and the valve to {}; the record shows {} of the step's {} strokes \
             accepted{}",
            name(v),
            accepted.len(),
            strokes.len(),
            if before.is_none() { ", and not where the valve stood before the step" } else { "" }
        ))),
        (x, _) => verdict(Settlement::contradiction(
            format!("the pump is ready, without error, with its plunger at {x} increments"),
            "no step of the record leaves a plunger resting there".to_owned(),
        )),
    }
}

/// The valve turned the other way by a stroke.
fn other(v: Valve) -> Valve {
    match v {
        Valve::Output => Valve::Input,
        _ => Valve::Output,
    }
}

/// Settles a transfer (or the delivery of a held vessel) in doubt from what the gantry reports. `from` is where
/// the vessel stood (`None` for a delivery: it was in the gripper). The driver opens the gripper only over the
/// destination, and closes it only over the origin, so the gripper and the place under the head tell where the
/// vessel is.
pub fn settle_transfer(g: &GantryState, from: Option<&Place>, to: &Place) -> Verdict {
    let settlement = match (g.gripper, &g.over) {
        (Gripper::Closed, _) => Settlement::Continue {
            task: Task::Deliver { to: to.clone() },
            why: format!(
                "the gripper is closed, holding the vessel{}; it is put down at {to}",
                from.map(|f| format!(" it picked at {f}")).unwrap_or_default()
            ),
        },
        (Gripper::Open, Some(over)) if over == to => Settlement::Done {
            outcome: Outcome::Done,
            why: format!("the gripper is open over {to}: the vessel was put down there"),
            place: Some(to.clone()),
            actual: None,
        },
        (Gripper::Open, over) => match from {
            Some(from) => Settlement::NotDone {
                why: format!(
                    "the gripper is open{}, not over {to}: it never closed on the vessel, which still stands at {from}",
                    over.as_ref().map(|o| format!(" over {o}")).unwrap_or_default()
                ),
                place: Some(from.clone()),
            },
            None => Settlement::contradiction(
                format!("the gripper is open{}", over.as_ref().map(|o| format!(" over {o}")).unwrap_or_default()),
                format!("the record says it held a vessel to put down at {to}"),
            ),
        },
        (Gripper::Between(a), _) => {
            Settlement::doubt(format!("the gripper's servo reports {a} degrees, neither closed nor open"))
        }
    };
    settlement.into()
}
