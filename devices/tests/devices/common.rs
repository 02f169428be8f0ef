//! Helpers shared by the device test binaries: the simulated lab, exchange collection, and opening a driver on a
//! simulator through a real pseudo-terminal.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use devices::capability::Instrument;
use devices::clock::Clock;
use devices::lab::{Faults, Lab, load_lab};
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

/// The rehearsal lab of `devices/labs/faulty.lab.ron` with only the instruments named, and none of its faults.
pub fn clean_lab_with(names: &[&str]) -> Lab {
    let mut lab = load_lab(SourceFile::new("faulty.lab.ron", include_str!("../../labs/faulty.lab.ron")))
        .expect("the faulty lab loads");
    lab.instruments.retain(|i| names.contains(&i.name.as_str()));
    for i in &mut lab.instruments {
        i.faults = None;
    }
    lab
}

/// Gives `name` of `lab` the faults `faults`, seeded.
pub fn with_faults(mut lab: Lab, name: &str, faults: Faults) -> Lab {
    let spec = lab.instruments.iter_mut().find(|i| i.name == name).expect("instrument in the lab");
    spec.faults = Some(Faults { seed: Some(5), ..faults });
    lab
}

/// Opens the simulated port of `name` through the real transport and builds its driver.
pub fn connect(lab: &Lab, sims: &SimLab, name: &str, clock: &Clock, sink: ExchangeSink) -> Box<dyn Instrument> {
    let spec = lab.instrument(name).expect("instrument in the lab");
    let path = &sims.ports[name];
    let port = open_serial(name, path, &spec.line).expect("the pseudo-terminal opens");
    devices::drivers::build(spec, &lab.deck, port, clock.clone(), sink)
}

/// Connects `name` as the controller does: a link that reopens its port if it disappears.
pub fn connect_reopening(
    lab: &Lab,
    sims: &SimLab,
    name: &str,
    clock: &Clock,
    sink: ExchangeSink,
) -> Box<dyn Instrument> {
    let spec = lab.instrument(name).expect("instrument in the lab");
    devices::drivers::connect(spec, &lab.deck, &sims.ports[name], clock.clone(), sink).expect("the port opens")
}

/// Identifies and initializes every instrument of `lab` on its simulator, by name.
pub async fn ready(
    lab: &Lab,
    sims: &SimLab,
    clock: &Clock,
    sink: ExchangeSink,
) -> BTreeMap<String, Box<dyn Instrument>> {
    let mut out = BTreeMap::new();
    for spec in &lab.instruments {
        let mut i = connect_reopening(lab, sims, &spec.name, clock, sink.clone());
        i.identify().await.unwrap_or_else(|e| panic!("{e}"));
        i.initialize().await.unwrap_or_else(|e| panic!("{e}"));
        out.insert(spec.name.clone(), i);
    }
    out
}

/// Starts the simulators of `lab` on a fast clock.
pub async fn start(lab: &Lab) -> (SimLab, Clock) {
    let clock = Clock::scaled(SCALE);
    let sims = sim::start(lab, clock.clone()).await.expect("the simulators start");
    (sims, clock)
}

/// Writes `bytes` to a port and reads until `done` holds for what came back: `Ok` with it, or `Err` with what came
/// if `within` passed first.
pub async fn write_and_read(
    port: &mut devices::transport::SerialStream,
    bytes: &[u8],
    within: std::time::Duration,
    done: impl Fn(&[u8]) -> bool,
) -> Result<Vec<u8>, Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    port.write_all(bytes).await.expect("the port takes the bytes");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    while !done(&got) {
        match tokio::time::timeout_at(deadline, port.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => return Err(got),
        }
    }
    Ok(got)
}

/// Counts the line feeds in `bytes`.
pub fn lines(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| b == b'\n').count()
}

/// Opens the simulated port of `name` as a bare serial port, to talk to its simulator byte by byte.
pub fn open(lab: &Lab, sims: &SimLab, name: &str) -> devices::transport::SerialStream {
    let spec = lab.instrument(name).expect("instrument in the lab");
    open_serial(name, &sims.ports[name], &spec.line).expect("the pseudo-terminal opens")
}
