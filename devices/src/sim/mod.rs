//! Simulators: one per instrument, each speaking its instrument's real wire protocol on a pseudo-terminal.
//!
//! [`start`] opens a pseudo-terminal for every instrument whose port is `Simulated` and runs its simulator on the
//! master side; the controller opens the slave path in [`SimLab::ports`] through
//! [`crate::transport::open_serial`], exactly as it would a real port, and cannot tell the difference. The
//! simulators frame commands as the real firmware does (buffering partial input, ignoring what the real device
//! ignores), answer in the real format, never panic on any input, and act on one shared [`Bench`], whose
//! [`ledger`](Bench::ledger) records what physically happened.
//!
//! Every reply leaves through [`pty::Wire::reply`], the seam where faults (latency, silence, garbled bytes,
//! disconnects) are to be injected.

pub mod bench;
pub mod chemistry;
pub mod pty;

mod cavro;
mod flame;
mod gantry;
mod ika;

use std::collections::BTreeMap;
use std::future::Future;

use bytes::BytesMut;
use tokio::task::JoinHandle;

pub use bench::{Bench, Event, LedgerEntry, Location, PlateSnapshot, VesselSnapshot};
pub use chemistry::expected_absorbance;

use crate::clock::Clock;
use crate::error::DeviceError;
use crate::lab::{DriverConfig, Lab, PortSpec};
use crate::transport::SerialStream;
use pty::Wire;

/// The running simulators of a lab. Dropping it stops them.
pub struct SimLab {
    /// Each simulated instrument's name and the pseudo-terminal path to open for it.
    pub ports: BTreeMap<String, String>,
    /// The bench all simulators act on.
    pub bench: Bench,
    tasks: Vec<JoinHandle<()>>,
    /// Slave sides held open so the simulators' masters never see EIO while no client is attached.
    slaves: Vec<SerialStream>,
}

impl std::fmt::Debug for SimLab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimLab").field("ports", &self.ports).finish_non_exhaustive()
    }
}

impl SimLab {
    /// The shared bench.
    pub fn bench(&self) -> &Bench {
        &self.bench
    }

    /// Stops every simulator and waits until they have stopped; their pseudo-terminals close.
    pub async fn stop(mut self) {
        let tasks = std::mem::take(&mut self.tasks);
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
        self.slaves.clear();
    }
}

impl Drop for SimLab {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts a simulator for every instrument of `lab` whose port is `Simulated`, all on one bench and `clock`.
///
/// Must be called inside a tokio runtime; the simulators run as tasks on it.
pub async fn start(lab: &Lab, clock: Clock) -> Result<SimLab, DeviceError> {
    let bench = Bench::new(lab, clock.clone());
    let mut sims = SimLab { ports: BTreeMap::new(), bench: bench.clone(), tasks: Vec::new(), slaves: Vec::new() };
    for spec in lab.instruments.iter().filter(|i| i.port == PortSpec::Simulated) {
        let pty = pty::open(&spec.name)?;
        let wire = Wire::new(pty.master);
        let position = spec.position.clone().unwrap_or_default();
        let task = match &spec.driver {
            DriverConfig::CavroXCalibur(c) => tokio::spawn(serve(
                wire,
                cavro::XCaliburSim::new(&spec.name, c, &position, bench.clone(), clock.clone()),
            )),
            DriverConfig::IkaHotplate(c) => tokio::spawn(serve(wire, ika::IkaSim::new(c, &position, bench.clone()))),
            DriverConfig::OceanFlame(c) => tokio::spawn(serve(
                wire,
                flame::FlameSim::new(&spec.name, c, &position, lab.simulation.seed, bench.clone(), clock.clone()),
            )),
            DriverConfig::GcodeGantry(c) => tokio::spawn(serve(
                wire,
                gantry::GantrySim::new(&spec.name, c, lab.simulation.seed, bench.clone(), clock.clone()),
            )),
        };
        sims.ports.insert(spec.name.clone(), pty.path);
        sims.slaves.push(pty.slave);
        sims.tasks.push(task);
    }
    Ok(sims)
}

/// One simulated instrument: how it frames its input and what it does with each command.
trait Simulator: Send + 'static {
    /// Takes the next complete command off the front of `input`, discarding what the device would ignore.
    fn frame(&mut self, input: &mut BytesMut) -> Option<Vec<u8>>;

    /// Acts on one command, answering through `wire`; false once the line is gone.
    fn handle(&mut self, command: Vec<u8>, wire: &mut Wire) -> impl Future<Output = bool> + Send;
}

/// Runs a simulator until its line closes or it is stopped.
async fn serve<S: Simulator>(mut wire: Wire, mut sim: S) {
    loop {
        while let Some(command) = sim.frame(&mut wire.input) {
            if !sim.handle(command, &mut wire).await {
                return;
            }
        }
        if !wire.fill().await {
            return;
        }
    }
}

/// A stable 64-bit hash of a name, for seeding per-instrument noise.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}
