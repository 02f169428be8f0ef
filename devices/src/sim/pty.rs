//! Pseudo-terminals for simulators, and the one path every simulated byte takes.
//!
//! Each simulator owns the master side of a pseudo-terminal pair; the controller opens the slave by its path
//! (`/dev/pts/N`) through [`crate::transport::open_serial`], as it would a USB adapter. The slave half that
//! [`open`] returns must be kept open for as long as the simulator runs: while no process holds a slave, reads on
//! the master fail with EIO, so without it the simulator would see its port vanish whenever the controller closes
//! and reopens it.
//!
//! A simulator reads through [`Wire::fill`] and answers through [`Wire::reply`]. `reply` is the seam for fault
//! injection: every answer of every simulator passes through it, and there the wire's [`Injector`] delays, drops,
//! garbles, truncates or corrupts the checksum of replies as the lab file's `faults` ask. Faults that mean
//! something in an instrument's protocol (busy, an error code, a partial move) are drawn by the simulator through
//! the wire's [`Wire::busy`], [`Wire::firmware_error`] and [`Wire::partial`].
//!
//! The disconnect fault pulls the cable while the instrument handles a command ([`Wire::count_command`]): the
//! instrument acts, and nothing it answers reaches the driver. A reply written before the port closed would reach
//! the driver or be discarded by the hang-up as the machine's threads happened to run, so a loaded machine would
//! give another record of the same run (fault seed 345 of the soak: the reply to the controller's last command got
//! through, and the port lost after it was never seen). On a discrete-event clock the port then closes at the end
//! of that lab instant ([`crate::clock::Clock::after_instant`]): a command the driver writes at the same instant
//! (the next one after a command that has no reply) goes nowhere, and the driver finds the port gone when it reads,
//! or when it writes again after lab time has moved on.

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_serial::SerialPort;

use super::faults::{FaultLog, InjectedFault, Injector, SharedInjector, WireFault};
use crate::clock::{Clock, Toward};
use crate::error::{DeviceError, DeviceErrorKind};
use crate::transport::SerialStream;

/// Input a simulator has not framed yet is dropped beyond this many bytes, as a real instrument's receive buffer
/// overflows.
pub const MAX_INPUT: usize = 4096;

/// A new pseudo-terminal pair for `instrument`.
pub struct Pty {
    /// The simulator's side.
    pub master: SerialStream,
    /// The instrument side, held open by the simulator's owner (see the module doc).
    pub slave: SerialStream,
    /// The slave's path, which the controller opens.
    pub path: String,
}

/// Opens a pseudo-terminal pair for `instrument`.
pub fn open(instrument: &str) -> Result<Pty, DeviceError> {
    let failed = |message: String| {
        DeviceError::before_acting(instrument, DeviceErrorKind::Open { port: "a new pseudo-terminal".into(), message })
    };
    let (master, slave) = SerialStream::pair().map_err(|e| failed(e.description))?;
    let path = slave.name().ok_or_else(|| failed("the pseudo-terminal has no slave path".into()))?;
    Ok(Pty { master, slave, path })
}

/// A simulator waiting on its line for a discrete-event clock (see `crate::clock::events`), until dropped.
struct SimulatorWaits(std::sync::Arc<crate::clock::Events>, String);

impl SimulatorWaits {
    fn new(events: &std::sync::Arc<crate::clock::Events>, line: &str) -> Self {
        events.wire_simulator_waits(line, true);
        SimulatorWaits(std::sync::Arc::clone(events), line.to_owned())
    }
}

impl Drop for SimulatorWaits {
    fn drop(&mut self) {
        self.0.wire_simulator_waits(&self.1, false);
    }
}

/// A simulator's end of its serial line: the bytes received and not yet framed, the way out for replies, and the
/// faults injected into them.
pub struct Wire {
    port: SerialStream,
    /// Received bytes not yet taken as commands.
    pub input: BytesMut,
    draws: Draws,
    /// The line's instrument and the lab's clock, once known ([`Wire::logging`]): a discrete-event clock counts the
    /// bytes on the line, and a fault's latency is a wait on it.
    line: Option<(String, Clock)>,
    /// The cable is out while the command counted last is handled, for this long once it is back.
    unplugged: Option<std::time::Duration>,
}

/// Draws the faults that mean something in an instrument's protocol (busy, an error code, a partial move) and
/// records each; a clone can live where the wire cannot (inside a protocol library's server).
#[derive(Clone)]
pub struct Draws {
    faults: SharedInjector,
    log: Option<(FaultLog, String, Clock)>,
}

impl Draws {
    /// The injector, locked; a poisoned lock still holds a usable generator.
    fn injector(&self) -> std::sync::MutexGuard<'_, Option<Injector>> {
        self.faults.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records an injected fault.
    pub fn note(&self, fault: WireFault) {
        if let Some((log, instrument, clock)) = &self.log {
            log.push(InjectedFault { at: clock.now(), instrument: instrument.clone(), fault });
        }
    }

    fn draw(&self, fault: WireFault, roll: fn(&mut Injector) -> bool) -> bool {
        let hit = self.injector().as_mut().is_some_and(roll);
        if hit {
            self.note(fault);
        }
        hit
    }

    /// Whether the instrument answers this command as busy.
    pub fn busy(&self) -> bool {
        self.draw(WireFault::Busy, Injector::busy)
    }

    /// Whether the instrument answers this command with a firmware error.
    pub fn firmware_error(&self) -> bool {
        self.draw(WireFault::Firmware, Injector::firmware_error)
    }

    /// Whether a pump's move stops halfway.
    pub fn partial(&self) -> bool {
        self.draw(WireFault::Partial, Injector::partial)
    }
}

impl Wire {
    /// Wraps the master side of a pseudo-terminal, injecting the faults of `faults`.
    pub fn new(master: SerialStream, faults: SharedInjector) -> Self {
        Wire {
            port: master,
            input: BytesMut::with_capacity(256),
            draws: Draws { faults, log: None },
            line: None,
            unplugged: None,
        }
    }

    /// Counts the command the simulator is about to handle (or the reply it is about to send, for one that answers
    /// without [`super::Simulator::handle`]). If the disconnect fault strikes on it, the cable is out until the
    /// command is handled: the instrument acts on it, and its answer goes nowhere ([`Wire::reply`] sends nothing).
    pub fn count_command(&mut self) {
        self.unplugged = self.draws.injector().as_mut().and_then(Injector::count_command);
    }

    /// Once the command counted last is handled: if the disconnect fault struck on it, records the fault and returns
    /// how long the port goes away, for the serving loop to close it now.
    pub fn unplugged(&mut self) -> Option<std::time::Duration> {
        let down = self.unplugged.take()?;
        self.note(WireFault::Disconnected);
        Some(down)
    }

    /// Records every injected fault in `log`, as done by `instrument` at `clock`'s time.
    pub fn logging(mut self, log: FaultLog, instrument: &str, clock: Clock) -> Self {
        self.line = Some((instrument.to_owned(), clock.clone()));
        self.draws.log = Some((log, instrument.to_owned(), clock));
        self
    }

    /// Records an injected fault.
    pub fn note(&self, fault: WireFault) {
        self.draws.note(fault);
    }

    /// The lab's clock, once known ([`Wire::logging`]).
    pub fn clock(&self) -> Option<&Clock> {
        self.line.as_ref().map(|(_, c)| c)
    }

    /// The protocol faults' draws, to hand to code that answers without the wire.
    pub fn draws(&self) -> Draws {
        self.draws.clone()
    }

    /// Whether the instrument answers this command as busy.
    pub fn busy(&mut self) -> bool {
        self.draws.busy()
    }

    /// Whether the instrument answers this command with a firmware error.
    pub fn firmware_error(&mut self) -> bool {
        self.draws.firmware_error()
    }

    /// Whether a pump's move stops halfway.
    pub fn partial(&mut self) -> bool {
        self.draws.partial()
    }

    /// Picks one of `choices` with the fault generator; the first without one.
    pub fn choose<T: Copy>(&mut self, choices: &[T]) -> Option<T> {
        match self.draws.injector().as_mut() {
            Some(f) => f.choose(choices),
            None => choices.first().copied(),
        }
    }

    /// Waits for more bytes and appends them to [`Wire::input`]; false once the line is gone.
    pub async fn fill(&mut self) -> bool {
        if self.input.len() > MAX_INPUT {
            self.input.clear();
        }
        // The simulator waits for its next command; the bytes of that command hold lab time until read (and no
        // longer, if this wait is given up for another).
        let events = self.line.as_ref().and_then(|(name, clock)| Some((name.clone(), clock.events()?.clone())));
        let _waits = events.as_ref().map(|(name, e)| SimulatorWaits::new(e, name));
        let read = crate::clock::waiting(self.port.read_buf(&mut self.input)).await;
        if let Some((name, e)) = &events
            && let Some(hold) = e.wire_read(name, *read.as_ref().unwrap_or(&0), Toward::Simulator)
        {
            crate::clock::adopt(hold);
        }
        matches!(read, Ok(n) if n > 0)
    }

    /// Sends a reply, with whatever wire faults the injector draws. Every byte a simulator sends goes through
    /// here; false once the line is gone. While the cable is out ([`Wire::count_command`]) the reply is drawn as
    /// any other, so the faults after it come as they would, but nothing is sent and no fault on it is recorded.
    pub async fn reply(&mut self, bytes: &[u8]) -> bool {
        self.reply_with_checksum_at(bytes, bytes.len().saturating_sub(1)).await
    }

    /// As [`Wire::reply`], for a reply whose checksum ends at byte `checksum` rather than at its last.
    pub async fn reply_with_checksum_at(&mut self, bytes: &[u8], checksum: usize) -> bool {
        let drawn = self.draws.injector().as_mut().map(|f| (f.latency(), f.corrupt_at(bytes, checksum)));
        let Some((delay, (bytes, fault))) = drawn else { return self.write(bytes).await };
        if let Some(f) = fault.filter(|_| self.unplugged.is_none()) {
            self.note(f);
        }
        if !delay.is_zero() {
            match &self.line {
                Some((_, clock)) => clock.wall_wait(delay).await,
                None => tokio::time::sleep(delay).await,
            }
        }
        bytes.is_empty() || self.write(&bytes).await
    }

    async fn write(&mut self, bytes: &[u8]) -> bool {
        if self.unplugged.is_some() {
            return true;
        }
        if let Some((name, clock)) = &self.line
            && let Some(events) = clock.events()
        {
            events.wire_sent(name, bytes.len(), Toward::Driver);
        }
        // No flush: a pseudo-terminal does not buffer, and flushing is `tcdrain`, a blocking call.
        self.port.write_all(bytes).await.is_ok()
    }
}
