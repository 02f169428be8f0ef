//! Simulators: one per instrument, each speaking its instrument's real wire protocol on a pseudo-terminal.
//!
//! [`start`] opens a pseudo-terminal for every instrument whose port is `Simulated` and runs its simulator on the
//! master side; the controller opens the slave path in [`SimLab::ports`] through
//! [`crate::transport::open_serial`], exactly as it would a real port, and cannot tell the difference. The
//! simulators frame commands as the real firmware does (buffering partial input, ignoring what the real device
//! ignores), answer in the real format, never panic on any input, and act on one shared [`Bench`], whose
//! [`ledger`](Bench::ledger) records what physically happened.
//!
//! Every reply leaves through [`pty::Wire::reply`], where the faults a lab file configures for an instrument are
//! injected ([`faults`]); a simulator draws the faults that mean something in its protocol (busy, an error code,
//! a partial move) from its wire. An instrument configured to disconnect gets a stable port path, a symbolic link
//! in a temporary folder, as udev gives a USB adapter: when the simulated port goes away the link disappears with
//! its pseudo-terminal, and when it comes back the link points at a new one, so a driver reopens the same path.

pub mod bench;
pub mod chemistry;
pub mod dry;
pub mod faults;
pub mod pty;

mod cavro;
mod declared;
mod flame;
mod gantry;
mod ika;
mod line;
mod mettler;
mod modbus;
mod scpi;
mod vici;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio::task::JoinHandle;

pub use bench::{Bench, Event, LedgerEntry, Location, PlateSnapshot, VesselSnapshot};
pub use chemistry::expected_absorbance;
pub use dry::DryBench;
pub use faults::{FaultLog, InjectedFault, WireFault};

use crate::clock::Clock;
use crate::error::{DeviceError, DeviceErrorKind};
use crate::lab::{DriverConfig, Faults, Lab, PortSpec};
use faults::{Injector, SharedInjector};
use pty::{Pty, Wire};

/// The running simulators of a lab. Dropping it stops them.
pub struct SimLab {
    /// Each simulated instrument's name and the path to open for it: its pseudo-terminal, or a stable link to it
    /// for an instrument configured to disconnect.
    pub ports: BTreeMap<String, String>,
    /// The bench all simulators act on.
    pub bench: Bench,
    faults: FaultLog,
    switch: FaultSwitch,
    tasks: Vec<JoinHandle<()>>,
    /// The folder of stable port links, removed with the simulators.
    links: Option<TempLinks>,
    /// Where to write the ledger when the simulators stop.
    ledger: Option<PathBuf>,
}

/// Changes the faults of running simulators (cheap to clone; see [`SimLab::fault_switch`]).
#[derive(Clone)]
pub struct FaultSwitch {
    injectors: BTreeMap<String, SharedInjector>,
    seed: u64,
}

impl FaultSwitch {
    /// Replaces the faults `instrument`'s simulator injects from now on, as [`SimLab::set_faults`] does; false if no
    /// simulator has that name.
    pub fn set(&self, instrument: &str, faults: Option<Faults>) -> bool {
        let Some(shared) = self.injectors.get(instrument) else { return false };
        let seed = self.seed ^ name_hash(instrument);
        *shared.lock().unwrap_or_else(|p| p.into_inner()) = faults.map(|f| Injector::new(f, seed));
        true
    }
}

/// What the simulators write to the lab file's `ledger` path when they stop.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LedgerFile {
    /// Everything that physically happened, in order.
    pub ledger: Vec<LedgerEntry>,
    /// Every fault injected, in order.
    pub faults: Vec<InjectedFault>,
}

impl LedgerFile {
    /// Reads a ledger file the simulators wrote.
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        ron::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
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

    /// Every fault the simulators injected so far, in order.
    pub fn faults(&self) -> Vec<InjectedFault> {
        self.faults.entries()
    }

    /// Replaces the faults `instrument`'s simulator injects from now on (`None`: none), as if its lab file said
    /// so; false if no simulator has that name. A disconnect can only take the port away and bring it back at the
    /// same path if the lab file configured one from the start (the stable link is made then).
    pub fn set_faults(&self, instrument: &str, faults: Option<Faults>) -> bool {
        self.switch.set(instrument, faults)
    }

    /// A handle that changes the simulators' faults from another thread, as [`SimLab::set_faults`] does.
    pub fn fault_switch(&self) -> FaultSwitch {
        self.switch.clone()
    }

    /// Stops every simulator and waits until they have stopped; their pseudo-terminals close, and the ledger is
    /// written if the lab file asks for it.
    pub async fn stop(mut self) {
        let tasks = std::mem::take(&mut self.tasks);
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
        self.links.take();
        self.write_ledger();
    }

    /// Writes the ledger and the injected faults to the lab file's `ledger` path, once.
    fn write_ledger(&mut self) {
        let Some(path) = self.ledger.take() else { return };
        let file = LedgerFile { ledger: self.bench.ledger(), faults: self.faults() };
        let text = ron::ser::to_string_pretty(&file, ron::ser::PrettyConfig::default());
        match text {
            Ok(t) => {
                if let Err(e) = std::fs::write(&path, t) {
                    tracing::warn!("cannot write the simulators' ledger to {}: {e}", path.display());
                }
            }
            Err(e) => tracing::warn!("cannot write the simulators' ledger: {e}"),
        }
    }
}

impl Drop for SimLab {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        self.write_ledger();
    }
}

/// A temporary folder of port links, removed when dropped.
struct TempLinks(PathBuf);

impl TempLinks {
    fn create() -> std::io::Result<Self> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("lab-sim-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(TempLinks(dir))
    }
}

impl Drop for TempLinks {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Points the link at `link` to `target`, replacing it in one step.
fn relink(link: &Path, target: &str) -> std::io::Result<()> {
    let fresh = link.with_extension("new");
    let _ = std::fs::remove_file(&fresh);
    std::os::unix::fs::symlink(target, &fresh)?;
    std::fs::rename(&fresh, link)
}

/// What a simulator task needs besides its simulator.
struct Context {
    name: String,
    clock: Clock,
    log: FaultLog,
    injector: SharedInjector,
    /// The stable link to keep pointing at the current pseudo-terminal, for instruments that disconnect.
    link: Option<PathBuf>,
}

/// Starts a simulator for every instrument of `lab` whose port is `Simulated`, all on one bench and `clock`.
///
/// Must be called inside a tokio runtime; the simulators run as tasks on it.
pub async fn start(lab: &Lab, clock: Clock) -> Result<SimLab, DeviceError> {
    let bench = Bench::new(lab, clock.clone());
    let log = FaultLog::default();
    let mut sims = SimLab {
        ports: BTreeMap::new(),
        bench: bench.clone(),
        faults: log.clone(),
        switch: FaultSwitch { injectors: BTreeMap::new(), seed: lab.simulation.seed },
        tasks: Vec::new(),
        links: None,
        ledger: lab.simulation.ledger.clone(),
    };
    for spec in lab.instruments.iter().filter(|i| i.port == PortSpec::Simulated) {
        let pty = pty::open(&spec.name)?;
        let seed = lab.simulation.seed ^ name_hash(&spec.name);
        let injector: SharedInjector = Arc::new(Mutex::new(spec.faults.clone().map(|f| Injector::new(f, seed))));
        sims.switch.injectors.insert(spec.name.clone(), Arc::clone(&injector));
        let link = match spec.faults.as_ref().and_then(|f| f.disconnect) {
            None => None,
            Some(_) => {
                let failed = |e: std::io::Error| {
                    DeviceError::before_acting(
                        &spec.name,
                        DeviceErrorKind::Open {
                            port: "a stable link to a pseudo-terminal".into(),
                            message: e.to_string(),
                        },
                    )
                };
                if sims.links.is_none() {
                    sims.links = Some(TempLinks::create().map_err(failed)?);
                }
                let dir = &sims.links.as_ref().map(|l| l.0.clone()).unwrap_or_default();
                let link = dir.join(&spec.name);
                relink(&link, &pty.path).map_err(failed)?;
                Some(link)
            }
        };
        let path = link.as_ref().map_or_else(|| pty.path.clone(), |l| l.display().to_string());
        let cx = Context { name: spec.name.clone(), clock: clock.clone(), log: log.clone(), injector, link };
        let position = spec.position.clone().unwrap_or_default();
        let (b, c) = (bench.clone(), clock.clone());
        let task = match &spec.driver {
            DriverConfig::CavroXCalibur(x) => spawn(cavro::XCaliburSim::new(&spec.name, x, &position, b, c), pty, cx),
            DriverConfig::IkaHotplate(x) => {
                let profile = crate::models::namur::profile(&x.model).ok_or_else(|| no_profile(spec))?;
                spawn(ika::IkaSim::new(profile, &position, b), pty, cx)
            }
            DriverConfig::OceanFlame(x) => {
                spawn(flame::FlameSim::new(&spec.name, x, &position, lab.simulation.seed, b, c), pty, cx)
            }
            DriverConfig::GcodeGantry(x) => {
                spawn(gantry::GantrySim::new(&spec.name, x, lab.simulation.seed, b, c), pty, cx)
            }
            DriverConfig::MettlerBalance(x) => {
                let profile = crate::models::sics::profile(&x.model).ok_or_else(|| no_profile(spec))?;
                spawn(mettler::BalanceSim::new(&spec.name, x, profile, &position, seed, b, c), pty, cx)
            }
            DriverConfig::ViciValve(x) => spawn(vici::ValveSim::new(&spec.name, x, b, c), pty, cx),
            DriverConfig::ModbusTemperature(x) => spawn(modbus::ModbusSim::new(x, &position, b), pty, cx),
            DriverConfig::ScpiThermometer(x) => {
                let profile = crate::models::scpi::profile(&x.model).ok_or_else(|| no_profile(spec))?;
                spawn(scpi::ScpiSim::new(x, profile, &position, seed, b), pty, cx)
            }
            DriverConfig::Declared(x) => spawn(declared::DeclaredSim::new(&spec.name, x, &position, b, c), pty, cx),
        };
        sims.ports.insert(spec.name.clone(), path);
        sims.tasks.push(task);
    }
    Ok(sims)
}

/// The error for an instrument whose model has no simulator profile (`lab check` refuses such a lab file first).
fn no_profile(spec: &crate::lab::InstrumentSpec) -> DeviceError {
    DeviceError::before_acting(
        &spec.name,
        DeviceErrorKind::Open {
            port: "a simulator".into(),
            message: format!("no simulator profile for this model of {}", spec.kind().phrase()),
        },
    )
}

fn spawn<S: Simulator>(sim: S, pty: Pty, cx: Context) -> JoinHandle<()> {
    // A party of the lab's time: on a discrete-event clock it holds lab time while it handles a command.
    tokio::spawn(crate::clock::party(Vec::new(), run(sim, pty, cx)))
}

/// Runs a simulator across disconnections until its line closes or it is stopped. The simulated instrument keeps
/// its state while its port is away, as an instrument does when its USB cable is pulled.
async fn run<S: Simulator>(mut sim: S, first: Pty, cx: Context) {
    let mut pty = first;
    loop {
        let Pty { master, slave, .. } = pty;
        let mut wire = Wire::new(master, Arc::clone(&cx.injector)).logging(cx.log.clone(), &cx.name, cx.clock.clone());
        let down = sim.serve(&mut wire).await;
        if down.is_some() {
            // The cable is out from the command it struck on, and the port closes once everything else in the lab
            // has done what it does at this lab instant: what the driver writes meanwhile (the next command after
            // one that has no reply) goes nowhere, and it finds the port gone at its next read, or at a write after
            // lab time has moved on, as the OS would tell it. Closed at once, the port would take such a write or
            // refuse it as the threads happened to run, and the driver would lose the command or send it again.
            cx.clock.after_instant().await;
        }
        // The link goes first, so a driver that finds its port gone cannot reopen the old pseudo-terminal's path.
        if let (Some(link), Some(_)) = (&cx.link, down) {
            let _ = std::fs::remove_file(link);
        }
        // A driver waiting for a reply holds lab time until it finds its port gone, counted before the port closes
        // so that the driver cannot find it first.
        let events = cx.clock.events();
        if let Some(events) = events {
            events.wire_hung_up(&cx.name);
        }
        // Both sides close, so the client sees its port end, as when a cable is pulled.
        drop(wire);
        drop(slave);
        if let Some(events) = events {
            events.wire_closed(&cx.name);
        }
        let Some(down) = down else { return };
        cx.clock.wall_wait(down).await;
        pty = match pty::open(&cx.name) {
            Ok(p) => p,
            Err(_) => return,
        };
        if let Some(link) = &cx.link
            && relink(link, &pty.path).is_err()
        {
            return;
        }
    }
}

/// One simulated instrument: how it frames its input and what it does with each command.
trait Simulator: Send + 'static {
    /// Takes the next complete command off the front of `input`, discarding what the device would ignore.
    fn frame(&mut self, input: &mut BytesMut) -> Option<Vec<u8>>;

    /// Acts on one command, answering through `wire`; false once the line is gone.
    fn handle(&mut self, command: Vec<u8>, wire: &mut Wire) -> impl Future<Output = bool> + Send;

    /// Serves the line until it closes (`None`) or the disconnect fault takes the port away (how long for): by
    /// default command by command, through [`Simulator::frame`] and [`Simulator::handle`].
    fn serve(&mut self, wire: &mut Wire) -> impl Future<Output = Option<Duration>> + Send
    where
        Self: Sized,
    {
        serve_commands(wire, self)
    }
}

/// Serves commands one by one until the line closes (`None`) or the disconnect fault takes the port away.
async fn serve_commands<S: Simulator>(wire: &mut Wire, sim: &mut S) -> Option<Duration> {
    loop {
        while let Some(command) = sim.frame(&mut wire.input) {
            wire.count_command();
            if !sim.handle(command, wire).await {
                return None;
            }
            if let Some(down) = wire.unplugged() {
                return Some(down);
            }
        }
        if !wire.fill().await {
            return None;
        }
    }
}

/// A stable 64-bit hash of a name, for seeding per-instrument noise.
pub(crate) fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::lab::Disconnect;

    /// Answers every line with itself, and remembers each it acted on.
    struct Echo(Vec<Vec<u8>>);

    impl Simulator for Echo {
        fn frame(&mut self, input: &mut BytesMut) -> Option<Vec<u8>> {
            let end = input.iter().position(|b| *b == b'\r')?;
            Some(input.split_to(end + 1).to_vec())
        }

        async fn handle(&mut self, command: Vec<u8>, wire: &mut Wire) -> bool {
            self.0.push(command.clone());
            wire.reply(&command).await
        }
    }

    /// The cable pulled on a command: the instrument acts on it, and its reply never reaches the driver however the
    /// threads run. Here the port stays open after the pull until the driver's end has read all the simulator sent,
    /// the order a loaded machine may give (the driver reading the reply before the hang-up, which discarded it when
    /// it came first); a line written after the pull marks the end of what was sent.
    #[tokio::test]
    async fn the_reply_to_the_command_the_cable_is_pulled_on_never_reaches_the_driver() {
        let pty = pty::open("echo").expect("a pseudo-terminal");
        let down = Duration::from_millis(300);
        let faults = Faults { disconnect: Some(Disconnect { after: 2, down }), ..Faults::none() };
        let log = FaultLog::default();
        let injector = Arc::new(Mutex::new(Some(Injector::new(faults, 1))));
        let mut wire = Wire::new(pty.master, injector).logging(log.clone(), "echo", Clock::manual());
        let mut driver = pty.slave;
        driver.write_all(b"one\rtwo\r").await.expect("the driver writes");
        let mut sim = Echo(Vec::new());
        let served = tokio::time::timeout(Duration::from_secs(10), serve_commands(&mut wire, &mut sim)).await;
        assert_eq!(served.expect("served within 10 s"), Some(down), "the cable came out on the second command");
        assert_eq!(sim.0, [b"one\r".to_vec(), b"two\r".to_vec()], "the instrument acted on both");
        assert!(wire.reply(b"end\r").await);
        let mut got = Vec::new();
        for _ in 0..100 {
            if got.ends_with(b"end\r") {
                break;
            }
            let read = tokio::time::timeout(Duration::from_secs(10), driver.read_buf(&mut got)).await;
            assert!(matches!(read, Ok(Ok(n)) if n > 0), "the driver's end read {got:?}, then {read:?}");
        }
        assert_eq!(String::from_utf8_lossy(&got), "one\rend\r", "only the first command's reply was sent");
        let faults: Vec<WireFault> = log.entries().iter().map(|f| f.fault).collect();
        assert_eq!(faults, [WireFault::Disconnected]);
    }

    /// Answers `A` with a line too long for the driver to frame and, after a while of wall time at the same lab
    /// instant, with `ok`; anything else with `b`.
    struct Slow;

    impl Simulator for Slow {
        fn frame(&mut self, input: &mut BytesMut) -> Option<Vec<u8>> {
            let end = input.iter().position(|b| *b == b'\r')?;
            Some(input.split_to(end + 1).to_vec())
        }

        async fn handle(&mut self, command: Vec<u8>, wire: &mut Wire) -> bool {
            if command != b"A\r" {
                return wire.reply(b"b\r").await;
            }
            if !wire.reply(&[b'x'; 100]).await {
                return false;
            }
            // A loaded machine's delay: lab time stands still meanwhile, as this party holds it.
            tokio::time::sleep(Duration::from_millis(50)).await;
            wire.reply(b"ok\r").await
        }
    }

    /// A reply the driver gives up on (garbled) whose instrument is still answering at that lab instant: the rest is
    /// read before the next command and recorded as stale, however late the simulator's thread writes it, not taken
    /// for the next command's reply. Before the link let the instant finish after such a reply, it wrote `B` at
    /// once and read the `ok` that came after as `B`'s reply.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_rest_of_a_reply_given_up_on_is_not_taken_for_the_next_commands_reply() {
        use crate::transport::{Exchange, Link, Terminated};
        let clock = Clock::discrete();
        let pty = pty::open("slow").expect("a pseudo-terminal");
        let injector = Arc::new(Mutex::new(Some(Injector::new(Faults::none(), 1))));
        let mut wire = Wire::new(pty.master, injector).logging(FaultLog::default(), "slow", clock.clone());
        let simulator = tokio::spawn(crate::clock::party(Vec::new(), async move {
            serve_commands(&mut wire, &mut Slow).await;
        }));
        let log = Arc::new(Mutex::new(Vec::<Exchange>::new()));
        let sink = {
            let log = Arc::clone(&log);
            Arc::new(move |e| log.lock().unwrap().push(e))
        };
        let mut link = Link::new(pty.slave, "slow", clock.clone(), sink, Duration::from_secs(1));
        let mut cr = Terminated::new(b"\r", 64);
        let (a, b) = crate::clock::party(vec![clock.hold()], async {
            let a = link.request(b"A\r", &mut cr).await;
            (a, tokio::time::timeout(Duration::from_secs(10), link.request(b"B\r", &mut cr)).await)
        })
        .await;
        drop(link);
        simulator.abort();
        assert!(matches!(a.expect_err("too long to frame").kind, DeviceErrorKind::Garbled { .. }));
        assert_eq!(b.expect("bounded").expect("answered"), b"b", "`B`'s own reply");
        let log = log.lock().unwrap();
        let stale: Vec<&[u8]> = log.iter().filter(|e| e.sent.is_empty()).map(|e| &e.received[..]).collect();
        assert_eq!(stale, [b"ok\r"], "the rest of `A`'s reply, recorded as stale: {log:#?}");
    }
}
