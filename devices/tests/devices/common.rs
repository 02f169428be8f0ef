//! Helpers shared by the device test binaries: the simulated lab, exchange collection, and opening a driver on a
//! simulator through a real pseudo-terminal.

use std::sync::{Arc, Mutex};

use devices::capability::Instrument;
use devices::clock::Clock;
use devices::lab::{Lab, load_lab};
use devices::sim::{self, SimLab};
use devices::transport::{Exchange, ExchangeSink, open_serial};
use protocols::diagnostic::SourceFile;

/// Lab seconds per wall second in the pseudo-terminal tests.
pub const SCALE: f64 = 2000.0;

/// The simulated lab of `devices/labs/sim.lab.ron`.
pub fn sim_lab() -> Lab {
    load_lab(SourceFile::new("sim.lab.ron", include_str!("../../labs/sim.lab.ron"))).expect("the simulated lab loads")
}

/// The simulated lab with only the instruments named.
pub fn lab_with(names: &[&str]) -> Lab {
    let mut lab = sim_lab();
    lab.instruments.retain(|i| names.contains(&i.name.as_str()));
    lab
}

/// A sink that keeps every exchange.
pub fn collector() -> (ExchangeSink, Arc<Mutex<Vec<Exchange>>>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = Arc::clone(&log);
    (Arc::new(move |e| l.lock().unwrap().push(e)), log)
}

/// Opens the simulated port of `name` through the real transport and builds its driver.
pub fn connect(lab: &Lab, sims: &SimLab, name: &str, clock: &Clock, sink: ExchangeSink) -> Box<dyn Instrument> {
    let spec = lab.instrument(name).expect("instrument in the lab");
    let path = &sims.ports[name];
    let port = open_serial(name, path, &spec.line).expect("the pseudo-terminal opens");
    devices::drivers::build(spec, &lab.deck, port, clock.clone(), sink)
}

/// Starts the simulators of `lab` on a fast clock.
pub async fn start(lab: &Lab) -> (SimLab, Clock) {
    let clock = Clock::scaled(SCALE);
    let sims = sim::start(lab, clock.clone()).await.expect("the simulators start");
    (sims, clock)
}
