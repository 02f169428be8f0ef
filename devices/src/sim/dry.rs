//! The simulated bench acted on by tasks directly, without drivers or wires: what `lab plan` measures on.
//!
//! A campaign run on simulators measures what the bench's hidden chemistry makes of each experiment, and a proposer
//! that chooses from results goes where those results lead it. A plan of that run cannot know the results of a
//! real lab, but a simulated lab's chemistry is fixed by its file: the plan can make each step happen on a bench of
//! its own, on its own clock, and read the vessel's absorbance where the run's spectrometer will. [`DryBench`] does
//! what each task does to the bench, at the task's start and end, as the simulators do when their drivers command
//! them: liquid from a pump's reservoir (or through a selector valve's port and line, [`DryBench::turn_for`]) into
//! the vessel at its position, a plate's heater and stirrer on for a heat and off after it, a vessel picked up and
//! put down by the gantry, the absorbance of the vessel in the holder.
//!
//! It knows the instruments whose simulators act on the bench in those ways ([`DryBench::new`] answers `None` for a
//! lab with any other): the scheduler of a plan never sees a measurement the bench cannot make. A spectrometer reads
//! as its simulator does, with the shot and read noise its simulator draws from the lab's seed, in the same order
//! (its reference at start-up, then one spectrum a reading), and as its driver makes an absorbance of them: a run on
//! a discrete-event clock takes its readings at the lab times the plan does, so a proposer sees what it will see in
//! the run for as long as the plan's schedule is the run's (a reading's lab time differs by the spectrometer's
//! integration, and the product of a reaction at room temperature hardly changes in a second).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rand_xoshiro::Xoshiro256PlusPlus;

use crate::capability::Task;
use crate::clock::Clock;
use crate::drivers::flame::{band, band_absorbance, corrected};
use crate::lab::{DriverConfig, FlameConfig, Lab};
use crate::sim::bench::{Bench, PlateCommand};

/// A bench of a simulated lab, driven by tasks at the times a plan gives them (see the module's documentation).
#[derive(Debug, Clone)]
pub struct DryBench {
    bench: Bench,
    lab: Lab,
    spectrometers: Arc<Mutex<BTreeMap<String, Spectrometer>>>,
}

/// A spectrometer of the dry bench: its simulator's noise, its settings, and the reference its driver took.
struct Spectrometer {
    noise: Xoshiro256PlusPlus,
    config: FlameConfig,
    wavelengths: Vec<f64>,
    reference: Vec<f64>,
}

impl std::fmt::Debug for Spectrometer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spectrometer").field("pixels", &self.wavelengths.len()).finish_non_exhaustive()
    }
}

impl Spectrometer {
    /// One spectrum through `absorbance`, corrected as the driver corrects it.
    fn read(&mut self, absorbance: &[f64]) -> Vec<f64> {
        let ms = (self.config.integration.0 * 1000.0).round().clamp(1.0, 65_000.0) as u16;
        corrected(&super::flame::acquire(absorbance, &self.wavelengths, &mut self.noise, ms, self.config.scans))
    }
}

impl DryBench {
    /// A bench for `lab` on `clock`, its spectrometers reading with the noise their simulators draw in a run of the
    /// lab, or `None` if the lab has an instrument that is not simulated or whose effect on the bench this does not
    /// model (only syringe pumps, selector valves, hotplates, a gantry and a spectrometer are).
    pub fn new(lab: &Lab, clock: Clock) -> Option<Self> {
        Self::with_noise(lab, clock, lab.simulation.seed)
    }

    /// A bench as [`DryBench::new`] makes it, but whose spectrometers draw their shot and read noise as a run of the
    /// lab with the simulation seed `noise` would: the chemistry stays the lab's own. A plan draws several, since a
    /// model's choices follow the third decimal of what it reads and that decimal is the noise's.
    pub fn with_noise(lab: &Lab, clock: Clock, noise: u64) -> Option<Self> {
        if !Self::models(lab) {
            return None;
        }
        let bench = Bench::new(lab, clock);
        let mut spectrometers = BTreeMap::new();
        for spec in &lab.instruments {
            let DriverConfig::OceanFlame(config) = &spec.driver else { continue };
            let wavelengths: Vec<f64> = (0..config.pixels).map(|p| config.wavelength(p)).collect();
            let position = spec.position.as_deref().unwrap_or_default();
            let mut s = Spectrometer {
                noise: super::flame::noise(noise, &spec.name),
                config: config.clone(),
                reference: Vec::new(),
                wavelengths,
            };
            // The driver takes its reference at start-up, through the empty holder.
            s.reference = s.read(&bench.absorbance(&spec.name, position, &s.wavelengths));
            spectrometers.insert(spec.name.clone(), s);
        }
        Some(DryBench { bench, lab: lab.clone(), spectrometers: Arc::new(Mutex::new(spectrometers)) })
    }

    /// Whether every instrument of `lab` is simulated without faults and acts on the bench in a way this models.
    pub fn models(lab: &Lab) -> bool {
        lab.instruments.iter().all(|i| {
            i.port.is_simulated()
                && i.faults.is_none()
                && matches!(
                    i.driver,
                    DriverConfig::CavroXCalibur(_)
                        | DriverConfig::IkaHotplate(_)
                        | DriverConfig::GcodeGantry(_)
                        | DriverConfig::OceanFlame(_)
                        | DriverConfig::ViciValve(_)
                )
        })
    }

    /// A dispense on `pump` through the selector valve `valve` is about to start: the valve turns to `port`, and if
    /// `prime` names the waste port and a volume, the pump primes the line first as the run's instrument task does
    /// (it draws the volume through the valve, the valve turns to waste, the pump pushes it all back out, and the
    /// valve turns back to `port`), so the dispense draws what the run's would, the line's carry-over included.
    pub fn turn_for(&self, pump: &str, valve: &str, port: u32, prime: Option<(u32, f64)>) {
        self.bench.valve_moved(valve, port);
        let Some((waste, volume)) = prime else { return };
        let Some(DriverConfig::CavroXCalibur(c)) = self.lab.instrument(pump).map(|s| &s.driver) else { return };
        let held = self.bench.draw(pump, &c.reservoir.reagent, volume);
        self.bench.valve_moved(valve, waste);
        self.bench.give_back(pump, held);
        self.bench.valve_moved(valve, port);
    }

    /// `task` starts on `instrument` at the clock's present.
    pub fn start(&self, instrument: &str, task: &Task) {
        let Some(spec) = self.lab.instrument(instrument) else { return };
        let position = spec.position.as_deref().unwrap_or_default();
        match (&spec.driver, task) {
            (DriverConfig::CavroXCalibur(c), Task::Dispense { volume }) => {
                for part in self.bench.draw(instrument, &c.reservoir.reagent, volume.0) {
                    self.bench.dispense_drawn(instrument, position, &part);
                }
            }
            (DriverConfig::IkaHotplate(_), Task::Heat { temperature, stir, .. }) => {
                self.bench.plate_command(position, PlateCommand::SetPoint(temperature.0));
                self.bench.plate_command(position, PlateCommand::Heater(true));
                if let Some(speed) = stir {
                    self.bench.plate_command(position, PlateCommand::Speed(speed.0));
                    self.bench.plate_command(position, PlateCommand::Motor(true));
                }
            }
            (DriverConfig::IkaHotplate(_), Task::Stir { speed, .. }) => {
                self.bench.plate_command(position, PlateCommand::Speed(speed.0));
                self.bench.plate_command(position, PlateCommand::Motor(true));
            }
            (DriverConfig::GcodeGantry(_), Task::Transfer { from, .. }) => {
                if let Some(at) = self.lab.deck.point(from) {
                    self.bench.grip(instrument, at);
                }
            }
            _ => {}
        }
    }

    /// `task` ends on `instrument` at the clock's present; a measurement's value, if it is one.
    pub fn end(&self, instrument: &str, task: &Task) -> Option<f64> {
        let spec = self.lab.instrument(instrument)?;
        let position = spec.position.as_deref().unwrap_or_default();
        match (&spec.driver, task) {
            (DriverConfig::IkaHotplate(_), Task::Heat { .. } | Task::Stir { .. }) => {
                self.bench.plate_command(position, PlateCommand::Heater(false));
                self.bench.plate_command(position, PlateCommand::Motor(false));
                None
            }
            (DriverConfig::GcodeGantry(_), Task::Transfer { to, .. }) => {
                if let Some(at) = self.lab.deck.point(to) {
                    self.bench.release(instrument, at);
                }
                None
            }
            (DriverConfig::OceanFlame(_), Task::Measure { wavelength }) => {
                let mut spectrometers = self.spectrometers.lock().unwrap_or_else(|p| p.into_inner());
                let Some(s) = spectrometers.get_mut(instrument) else {
                    return self.bench.absorbance(instrument, position, &[wavelength.0]).first().copied();
                };
                let sample = s.read(&self.bench.absorbance(instrument, position, &s.wavelengths));
                // Where the driver would refuse the reading (no light, a saturated pixel), the noiseless value.
                band_absorbance(&s.reference, &sample, &band(&s.config, wavelength.0))
                    .or_else(|| self.bench.absorbance(instrument, position, &[wavelength.0]).first().copied())
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use protocols::units::{Duration, Speed, Temperature, Volume, Wavelength};

    use super::*;
    use crate::capability::Place;

    fn lab() -> Lab {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/labs/sim.lab.ron");
        let text = std::fs::read_to_string(path).expect("the simulated lab");
        crate::load_lab(protocols::SourceFile::new(path.to_owned(), text)).expect("it loads")
    }

    /// One experiment of the demo protocol on the bench: A and B dispensed, heated for `minutes`, measured.
    fn absorbance(minutes: f64) -> f64 {
        let clock = Clock::manual();
        let bench = DryBench::new(&lab(), clock.clone()).expect("the simulated lab's instruments are modelled");
        let step = |instrument: &str, task: Task, seconds: f64| {
            bench.start(instrument, &task);
            clock.advance(seconds);
            bench.end(instrument, &task)
        };
        let to = |place: &str| Place::Position(place.to_owned());
        step("gantry", Task::Transfer { from: Place::Rack(0), to: to("dispense") }, 20.0);
        step("pump_a", Task::Dispense { volume: Volume(250.0) }, 10.0);
        step("pump_b", Task::Dispense { volume: Volume(300.0) }, 10.0);
        step("gantry", Task::Transfer { from: to("dispense"), to: to("hotplate_1") }, 20.0);
        let heat =
            Task::Heat { temperature: Temperature(80.0), duration: Duration(60.0 * minutes), stir: Some(Speed(600.0)) };
        step("hotplate_1", heat, 60.0 * (minutes + 6.0));
        step("gantry", Task::Transfer { from: to("hotplate_1"), to: to("uvvis") }, 20.0);
        step("uvvis", Task::Measure { wavelength: Wavelength(520.0) }, 2.0).expect("a measurement")
    }

    #[test]
    fn a_heated_mixture_reads_more_absorbance_the_longer_it_reacted() {
        let (short, long) = (absorbance(5.0), absorbance(40.0));
        assert!(short > 0.0 && long > short * 1.2, "5 min: {short}, 40 min: {long}");
    }

    /// The catalyst lab: pump_c draws through a selector valve whose 40 uL line carries the last catalyst over.
    #[test]
    fn a_dispense_through_a_selector_valve_takes_the_port_it_turned_to_after_priming_the_line() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/labs/catalysts.lab.ron");
        let text = std::fs::read_to_string(path).expect("the catalyst lab");
        let lab = crate::load_lab(protocols::SourceFile::new(path.to_owned(), text)).expect("it loads");
        let clock = Clock::manual();
        let bench = DryBench::new(&lab, clock.clone()).expect("a lab with a selector valve is modelled");
        let dispense = |slot: usize, port: u32, prime: Option<(u32, f64)>| {
            let to = Place::Position("dispense".to_owned());
            bench.start("gantry", &Task::Transfer { from: Place::Rack(slot), to: to.clone() });
            bench.end("gantry", &Task::Transfer { from: Place::Rack(slot), to: to.clone() });
            bench.turn_for("pump_c", "valve", port, prime);
            bench.start("pump_c", &Task::Dispense { volume: Volume(50.0) });
            bench.end("pump_c", &Task::Dispense { volume: Volume(50.0) });
            bench.start("gantry", &Task::Transfer { from: to.clone(), to: Place::Rack(slot) });
            bench.end("gantry", &Task::Transfer { from: to, to: Place::Rack(slot) });
            let vessel = bench.bench.vessel(slot).expect("the vial");
            vessel.contents.iter().filter(|(_, v)| **v > 1e-9).map(|(k, v)| (k.clone(), *v)).collect::<Vec<_>>()
        };
        // The first dispense from port 3 primes the line (drawn and pushed back through the same tubing, as the
        // pump's syringe does it, so some of what the line held before stays): the vial gets 50 uL, with C3 in it.
        let first = dispense(0, 3, Some((10, 60.0)));
        let total: f64 = first.iter().map(|(_, v)| v).sum();
        let c3: f64 = first.iter().filter(|(k, _)| k.contains("C3")).map(|(_, v)| v).sum();
        assert!((total - 50.0).abs() < 1e-6 && c3 >= 10.0, "{first:?}");
        // Port 5 without a prime: the line's 40 uL of C3 come first, then 10 uL of C5, as the simulators give it.
        let second = dispense(1, 5, None);
        let c3: f64 = second.iter().filter(|(k, _)| k.contains("C3")).map(|(_, v)| v).sum();
        let c5: f64 = second.iter().filter(|(k, _)| k.contains("C5")).map(|(_, v)| v).sum();
        assert!((c3 - 40.0).abs() < 1e-6 && (c5 - 10.0).abs() < 1e-6, "{second:?}");
    }

    #[test]
    fn a_lab_with_faults_or_other_instruments_is_not_modelled() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/labs/declared.lab.ron");
        let text = std::fs::read_to_string(path).expect("the declared lab");
        let declared = crate::load_lab(protocols::SourceFile::new(path.to_owned(), text)).expect("it loads");
        assert!(!DryBench::models(&declared));
        assert!(DryBench::models(&lab()));
    }
}
