//! Drivers, one module per instrument model: [`cavro`] (Tecan Cavro XCalibur, DT and OEM), [`ika`] (IKA NAMUR
//! hotplates), [`flame`] (Ocean Optics Flame), [`gantry`] (Marlin G-code), [`mettler`] (Mettler Toledo MT-SICS
//! balances), [`vici`] (VICI selector valves), [`modbus`] (temperature controllers on Modbus RTU), [`scpi`]
//! (SCPI thermometers) and [`declared`] (every instrument declared in RON).
//!
//! Every driver has the same shape: a `tokio_util` [`Decoder`](tokio_util::codec::Decoder) that frames the
//! instrument's replies (and rejects bytes that cannot be a reply), and a struct generic over the stream that talks
//! only through a [`Link`], implements [`Instrument`] and the capability traits of what the hardware does, checks
//! the instrument's limits before anything is sent, and turns the firmware's error codes into named variants.
//! [`build`] picks the driver a lab file names.
//!
//! Waiting follows two rules. Physical processes (a plunger stroke, a plate ramp, a hold) are waited for on lab
//! time, so an accelerated clock shortens them; but no poll loop ever polls faster than [`MIN_POLL_WALL`] of wall
//! time, so a fast clock cannot flood a serial line, and every loop gives up after a bound ([`Deadline`]).

pub mod cavro;
pub mod declared;
pub mod flame;
pub mod gantry;
pub mod ika;
pub mod mettler;
pub mod modbus;
pub mod scpi;
pub mod vici;

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use protocols::units::Duration as LabDuration;

use crate::capability::{Instrument, Task};
use crate::clock::Clock;
use crate::error::{DeviceError, DeviceErrorKind};
use crate::lab::{Deck, DriverConfig, InstrumentSpec};
use crate::readback::{
    Doubt, HeatWant, Observed, Settlement, Valve, Verdict, settle_dispense, settle_heat, settle_transfer,
};
use crate::transport::{ExchangeSink, Link};

/// Builds the driver the lab file names for `spec`, talking over `io`.
///
/// `io` is normally the stream [`crate::transport::open_serial`] returned for the instrument's port; tests pass a
/// scripted mock. The deck is used by drivers that move between places (the gantry).
pub fn build<T: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    spec: &InstrumentSpec,
    deck: &Deck,
    io: T,
    clock: Clock,
    sink: ExchangeSink,
) -> Box<dyn Instrument> {
    build_on(spec, deck, Link::new(io, &spec.name, clock, sink, spec.line.timeout))
}

/// Builds the driver the lab file names for `spec` on a link made by the caller (one that can reopen its port,
/// say).
pub fn build_on<T: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    spec: &InstrumentSpec,
    deck: &Deck,
    link: Link<T>,
) -> Box<dyn Instrument> {
    match &spec.driver {
        DriverConfig::CavroXCalibur(c) => Box::new(cavro::XCalibur::new(&spec.name, c.clone(), link)),
        DriverConfig::IkaHotplate(c) => Box::new(ika::IkaHotplate::new(&spec.name, c.clone(), link)),
        DriverConfig::OceanFlame(c) => Box::new(flame::Flame::new(&spec.name, c.clone(), spec.line, link)),
        DriverConfig::GcodeGantry(c) => Box::new(gantry::Gantry::new(&spec.name, c.clone(), deck.clone(), link)),
        DriverConfig::MettlerBalance(c) => Box::new(mettler::MettlerBalance::new(&spec.name, c.clone(), link)),
        DriverConfig::ViciValve(c) => Box::new(vici::ViciValve::new(&spec.name, c.clone(), link)),
        DriverConfig::ModbusTemperature(c) => Box::new(modbus::ModbusTemperature::new(&spec.name, c.clone(), link)),
        DriverConfig::ScpiThermometer(c) => Box::new(scpi::ScpiThermometer::new(&spec.name, c.clone(), link)),
        DriverConfig::Declared(c) => Box::new(declared::Declared::new(&spec.name, c.clone(), link)),
    }
}

/// Opens the serial port at `path` for `spec` and builds its driver on a link that reopens the port by the same
/// path, with the lab file's reconnection policy, if it disappears. This is how the controller connects an
/// instrument.
pub fn connect(
    spec: &InstrumentSpec,
    deck: &Deck,
    path: &str,
    clock: Clock,
    sink: ExchangeSink,
) -> Result<Box<dyn Instrument>, DeviceError> {
    let io = crate::transport::open_serial(&spec.name, path, &spec.line)?;
    let opener = crate::transport::serial_opener(&spec.name, path, &spec.line);
    let link = Link::new(io, &spec.name, clock, sink, spec.line.timeout).reopening(opener, spec.line.reconnect);
    Ok(build_on(spec, deck, link))
}

/// The command whose replies are the references the driver the lab file names for `spec` takes at initialization
/// ([`crate::capability::Measure::takes_reference`]), if it takes one: their recorded replies can be given back to
/// a later driver ([`crate::capability::Measure::restore_reference`]).
pub fn reference_command(spec: &InstrumentSpec) -> Option<&'static [u8]> {
    match spec.driver {
        DriverConfig::OceanFlame(_) => Some(flame::ACQUIRE),
        _ => None,
    }
}

/// Whether the driver the lab file names for `spec` can read its instrument back ([`crate::readback::ReadBack`]).
pub fn reads_back(spec: &InstrumentSpec) -> bool {
    matches!(
        spec.driver,
        DriverConfig::CavroXCalibur(_)
            | DriverConfig::IkaHotplate(_)
            | DriverConfig::GcodeGantry(_)
            | DriverConfig::ModbusTemperature(_)
    )
}

/// Settles a step in doubt on the instrument `spec` from what it reported (`observed`), what the record holds of the
/// step (`doubt`), and the lab time `now`, on a clock running `scale` lab seconds per wall second. Each driver knows
/// what its own commands leave behind, so the driver's module decides; a task no driver here can settle from what
/// its instrument reports stays in doubt.
pub fn settle(spec: &InstrumentSpec, scale: f64, doubt: &Doubt<'_>, observed: &Observed, now: f64) -> Verdict {
    let since = doubt.since_start();
    let last_contact = since.iter().map(|e| e.sent_at).reduce(f64::max);
    let want = HeatWant::of(doubt.task, doubt.started);
    let asked = HeatWant::of(doubt.asked, doubt.started).map_or(LabDuration(0.0), |w| w.hold);
    match (&spec.driver, observed, doubt.task) {
        (DriverConfig::IkaHotplate(c), Observed::Heater(h), _) if want.is_some_and(|w| w.plate) => {
            // All the step's readings, before a continuation's start too: they trace the same ramp.
            let readings = ika::recorded_temperatures(doubt.exchanges.unwrap_or_default());
            let facts = ika::heat_facts(c, scale);
            settle_heat(h, &want.expect("checked"), asked, &readings, last_contact, &facts, now)
        }
        (DriverConfig::ModbusTemperature(c), Observed::Heater(h), _) if want.is_some_and(|w| !w.plate) => {
            let readings = modbus::recorded_temperatures(c, doubt.exchanges.unwrap_or_default());
            settle_heat(h, &want.expect("checked"), asked, &readings, last_contact, &modbus::heat_facts(), now)
        }
        (DriverConfig::CavroXCalibur(c), Observed::Pump(p), Task::Dispense { volume }) => {
            let total = cavro::increments_of(c, *volume);
            if !(total.is_finite() && (0.0..=f64::from(cavro::FULL_STROKE * cavro::MAX_STROKES)).contains(&total)) {
                return Settlement::InDoubt {
                    why: format!("{volume} is not a volume this pump dispenses"),
                    contradiction: None,
                }
                .into();
            }
            let recorded = doubt.exchanges.map(|_| cavro::recorded_strokes(&since));
            // A dispense that primed the valve's line first left the pump's valve to the input before its strokes.
            let primes = cavro::recorded_primes(&since);
            let stroked = recorded.as_deref().unwrap_or_default().iter().any(|s| s.accepted);
            if !primes.is_empty() && !stroked && p.ready && p.error.is_none() && p.plunger > 0 {
                return Verdict {
                    settlement: Settlement::NotDone {
                        why: format!(
                            "the pump stopped while priming the line: its plunger rests at {} increments, drawn \
                             through the input, and no stroke of the dispense was accepted, so nothing reached the \
                             vessel; what the syringe holds is emptied through the valve's waste port before the pump is initialized",
                            p.plunger
                        ),
                        place: None,
                    },
                    evidence: primes,
                };
            }
            let before = if primes.is_empty() { doubt.before.and_then(cavro::valve_after) } else { Some(Valve::Input) };
            settle_dispense(p, &cavro::strokes(total as u32), recorded.as_deref(), before)
        }
        (DriverConfig::GcodeGantry(_), Observed::Gantry(g), Task::Transfer { from, to }) => {
            settle_transfer(g, Some(from), to)
        }
        (DriverConfig::GcodeGantry(_), Observed::Gantry(g), Task::Deliver { to }) => settle_transfer(g, None, to),
        (driver, observed, task) => Settlement::InDoubt {
            why: format!(
                "{} reads back {observed}, which does not settle a step that was to {}",
                driver.name(),
                task.verb()
            ),
            contradiction: None,
        }
        .into(),
    }
}

/// The shortest wall time between two polls of an instrument, whatever the clock's scale.
pub const MIN_POLL_WALL: Duration = Duration::from_millis(5);

/// The least wall time a bounded wait lasts before it may give up, so scheduling jitter on a fast clock (a few
/// milliseconds of wall time can be many lab seconds) is not mistaken for an instrument that never finishes.
pub const MIN_WAIT_WALL: Duration = Duration::from_secs(1);

/// Waits `lab_seconds` of lab time, and at least [`MIN_POLL_WALL`] of wall time (on a discrete-event clock, whose
/// lab time cannot run away from a poll, lab time alone).
/// Armed when called, as [`Clock::sleep`] says.
pub fn pause(clock: &Clock, lab_seconds: f64) -> impl std::future::Future<Output = ()> + Send + '_ {
    let sleep = clock.sleep(lab_seconds);
    let discrete = clock.is_discrete();
    async move {
        if discrete {
            sleep.await;
        } else {
            tokio::join!(sleep, tokio::time::sleep(MIN_POLL_WALL));
        }
    }
}

/// The bound of a wait: it expires once both `lab_budget` lab seconds and [`MIN_WAIT_WALL`] of wall time have
/// passed since it was set.
#[derive(Debug, Clone)]
pub struct Deadline {
    clock: Clock,
    lab_until: f64,
    wall_until: tokio::time::Instant,
}

impl Deadline {
    /// A deadline `lab_budget` lab seconds from now.
    pub fn after(clock: &Clock, lab_budget: f64) -> Self {
        Deadline {
            clock: clock.clone(),
            lab_until: clock.now() + lab_budget.max(0.0),
            wall_until: tokio::time::Instant::now() + MIN_WAIT_WALL,
        }
    }

    /// Whether the wait should give up (on a discrete-event clock, whose lab time has no jitter, by lab time alone).
    pub fn expired(&self) -> bool {
        self.clock.now() > self.lab_until && (self.clock.is_discrete() || tokio::time::Instant::now() > self.wall_until)
    }
}

/// Lab seconds a ramp to a set point may take: this much, plus [`RAMP_PER_DEGREE`] for every degree to go.
pub const RAMP_BASE: f64 = 1800.0;

/// Lab seconds of ramp allowed per degree between the temperature and the set point (1 degC/min, a tenth of a
/// typical hotplate's heating rate).
pub const RAMP_PER_DEGREE: f64 = 60.0;

/// Something whose temperature a hold watches.
pub(crate) trait Probe: Send {
    /// The temperature now, degC; an error after control started may have acted.
    fn celsius(&mut self) -> impl std::future::Future<Output = Result<f64, DeviceError>> + Send;

    /// Told, as the hold begins and after each reading in it, how many lab seconds of the hold are left: an IKA
    /// plate re-arms its watchdog with them (a reading restarts it), so a plate whose controller is gone stops at
    /// the hold's end. Nothing to do for most.
    fn holding(&mut self, left: f64) -> impl std::future::Future<Output = Result<(), DeviceError>> + Send {
        let _ = left;
        std::future::ready(Ok(()))
    }
}

/// What a hold aims at.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hold {
    /// What is held, for messages, with a trailing space (`"the plate "`), or empty.
    pub what: &'static str,
    /// The set point, degC.
    pub target: f64,
    /// How close counts as there, degC.
    pub tolerance: f64,
    /// Lab seconds to hold once there.
    pub hold: f64,
    /// Lab seconds between readings.
    pub poll: f64,
    /// Whether the hold is already under way (a hold carried on after the controller was away), so it begins at
    /// once, without waiting to be within the tolerance.
    pub under_way: bool,
}

/// The part of a hold after control is on: reads `probe` every `poll` lab seconds until it is within `tolerance`
/// of `target` (giving up after the ramp budget), then holds for `hold` lab seconds, failing if the temperature
/// drifts far (five tolerances, and at least 10 degC); what was held, with the ramp's lab duration and the mean over the hold. Switching control off is
/// the caller's.
pub(crate) async fn reach_and_hold<P: Probe>(
    probe: &mut P,
    name: &str,
    clock: &Clock,
    plan: Hold,
) -> Result<crate::capability::Outcome, DeviceError> {
    use protocols::units::{Duration as LabDuration, Temperature};
    let Hold { what, target, tolerance, hold, poll, under_way } = plan;
    let start = clock.now();
    let mut pv = if under_way { target } else { probe.celsius().await? };
    let budget = RAMP_BASE + RAMP_PER_DEGREE * (target - pv).abs();
    let deadline = Deadline::after(clock, budget);
    while (pv - target).abs() > tolerance {
        if deadline.expired() {
            let msg = format!("{what}reached only {pv:.1} degC of {target} degC in {budget:.0} lab s");
            return Err(error(name, DeviceErrorKind::Physical(msg), true));
        }
        pause(clock, poll).await;
        pv = probe.celsius().await?;
    }
    let ramp = clock.now() - start;
    let end = clock.now() + hold;
    let (mut sum, mut n) = (0.0, 0u32);
    let drift = (5.0 * tolerance).max(10.0);
    probe.holding(hold).await?;
    loop {
        let left = end - clock.now();
        if left <= 0.0 {
            break;
        }
        pause(clock, left.min(poll)).await;
        pv = probe.celsius().await?;
        if (pv - target).abs() > drift {
            let msg = format!("{what}drifted to {pv:.1} degC during a hold at {target} degC");
            return Err(error(name, DeviceErrorKind::Physical(msg), true));
        }
        sum += pv;
        n += 1;
        let left = end - clock.now();
        if left > 0.0 {
            probe.holding(left).await?;
        }
    }
    let mean = if n == 0 { pv } else { sum / f64::from(n) };
    Ok(crate::capability::Outcome::Held { mean_temperature: Some(Temperature(mean)), ramp: LabDuration(ramp) })
}

/// Why a decoder rejected bytes.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The stream failed underneath the decoder.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The bytes cannot be a reply of this instrument.
    #[error("{0}")]
    Malformed(String),
    /// The bytes frame as a reply, but its checksum does not match its contents.
    #[error("{0}")]
    Checksum(String),
}

impl crate::transport::FrameFault for FrameError {
    fn is_checksum(&self) -> bool {
        matches!(self, FrameError::Checksum(_))
    }
}

/// Marks an error as one that happened where nothing physical can have been started: a query, or a write that
/// only configures.
pub(crate) fn not_acted(mut e: DeviceError) -> DeviceError {
    e.may_have_acted = false;
    e
}

/// Sets whether an error may follow a physical action, overriding what the link guessed.
pub(crate) fn with_acted(mut e: DeviceError, acted: bool) -> DeviceError {
    e.may_have_acted = acted;
    e
}

/// A reply that framed correctly but whose content does not parse.
pub(crate) fn garbled(
    instrument: &str,
    sent: &[u8],
    received: &[u8],
    reason: impl Into<String>,
    acted: bool,
) -> DeviceError {
    DeviceError {
        instrument: instrument.to_owned(),
        kind: DeviceErrorKind::Garbled { sent: sent.to_vec(), received: received.to_vec(), reason: reason.into() },
        may_have_acted: acted,
    }
}

/// An error of `kind`, with whether something may have acted.
pub(crate) fn error(instrument: &str, kind: DeviceErrorKind, acted: bool) -> DeviceError {
    DeviceError { instrument: instrument.to_owned(), kind, may_have_acted: acted }
}

/// Formats a number for a command: at most `decimals` decimals, no trailing zeros (`90`, `12.5`).
pub(crate) fn number(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_owned() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_without_trailing_zeros() {
        assert_eq!(number(90.0, 1), "90");
        assert_eq!(number(12.54, 1), "12.5");
        assert_eq!(number(250.125, 3), "250.125");
    }

    #[tokio::test]
    async fn a_deadline_outlasts_a_fast_clock_by_the_wall_minimum() {
        let clock = Clock::scaled(1e6);
        let d = Deadline::after(&clock, 1.0);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(clock.now() > 1.0);
        assert!(!d.expired(), "a second of wall time has not passed");
    }
}
