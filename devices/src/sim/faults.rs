//! Injected faults: what a lab file's `faults` make a simulator do wrong, drawn from a seeded generator.
//!
//! Faults on the wire (latency, silence, a garbled, truncated or badly checksummed reply) are applied to every reply
//! at [`super::pty::Wire::reply`], so no simulator has to know about them. Faults with a meaning in the
//! instrument's own protocol (busy, a firmware error code, a pump's move stopping halfway) are asked for by the
//! simulator through [`Injector::busy`], [`Injector::firmware_error`] and [`Injector::partial`], which answer as
//! the real instrument would. The disconnect fault is counted per command by the serving loop in [`super`]: the
//! cable comes out while the instrument handles the command it strikes on (it acts, and its answer is lost with the
//! port), then the loop closes the pseudo-terminal and opens a new one once the port's time away has passed.
//!
//! Every draw comes from one generator per instrument, seeded by the fault settings or the lab's seed and the
//! instrument's name, so the same lab file gives the same faults in the same order of commands.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::lab::{Faults, Latency};

/// The byte a garbled reply carries in place of one of its own: never valid in any simulated text protocol, and
/// it breaks any checksum it lands under. Where the byte already is this one (a binary frame's data), the reply
/// carries `GARBLE - 1` there instead, so a garbled reply always differs from the true one.
pub const GARBLE: u8 = 0xFF;

/// A fault a simulator injected, for tests and for the simulators' own account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum WireFault {
    /// The reply was not sent.
    Dropped,
    /// The reply was sent with one byte replaced by [`GARBLE`].
    Garbled,
    /// Only the first part of the reply was sent.
    Truncated,
    /// The reply's last byte (its checksum) was altered.
    BadChecksum,
    /// The instrument answered busy instead of running the command.
    Busy,
    /// The instrument answered with a firmware error.
    Firmware,
    /// A pump's move stopped halfway.
    Partial,
    /// The port disappeared.
    Disconnected,
}

/// One injected fault.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InjectedFault {
    /// Lab time.
    pub at: f64,
    /// The instrument.
    pub instrument: String,
    /// What was done.
    pub fault: WireFault,
}

/// Every fault the simulators of a lab injected, shared by their wires; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct FaultLog(Arc<Mutex<Vec<InjectedFault>>>);

impl FaultLog {
    /// Adds an entry.
    pub fn push(&self, entry: InjectedFault) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(entry);
    }

    /// Every entry so far, in order.
    pub fn entries(&self) -> Vec<InjectedFault> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// An instrument's injector, shared between its simulator's wire and [`super::SimLab::set_faults`], so faults can
/// be switched on, changed or off while the simulator runs; `None` injects nothing.
pub type SharedInjector = Arc<Mutex<Option<Injector>>>;

/// Draws the faults of one simulated instrument.
#[derive(Debug)]
pub struct Injector {
    faults: Faults,
    rng: Xoshiro256PlusPlus,
    commands: u32,
}

impl Injector {
    /// An injector for `faults`, seeded by their own seed or else by `fallback`.
    pub fn new(faults: Faults, fallback: u64) -> Self {
        let seed = faults.seed.unwrap_or(fallback);
        Injector { faults, rng: Xoshiro256PlusPlus::seed_from_u64(seed), commands: 0 }
    }

    fn roll(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.gen_bool(p.clamp(0.0, 1.0))
    }

    /// The extra wall time before the next reply.
    pub fn latency(&mut self) -> Duration {
        match self.faults.latency {
            Latency::None => Duration::ZERO,
            Latency::Fixed(d) => d,
            Latency::Uniform { min, max } if max > min => {
                Duration::from_secs_f64(self.rng.gen_range(min.as_secs_f64()..=max.as_secs_f64()))
            }
            Latency::Uniform { min, .. } => min,
            Latency::Exponential { mean } if mean > Duration::ZERO => {
                let exp = Exp::new(1.0 / mean.as_secs_f64()).ok();
                let s = exp.map_or(0.0, |e| e.sample(&mut self.rng));
                // A tail beyond a minute would only stall a test; the timeout it provokes is the same.
                Duration::from_secs_f64(s.min(60.0))
            }
            Latency::Exponential { .. } => Duration::ZERO,
        }
    }

    /// Applies the wire faults to a reply: the bytes to send (none for silence) and what was done, if anything.
    pub fn corrupt(&mut self, bytes: &[u8]) -> (Vec<u8>, Option<WireFault>) {
        self.corrupt_at(bytes, bytes.len().saturating_sub(1))
    }

    /// As [`Injector::corrupt`], with the reply's checksum ending at byte `checksum` (a text frame's checksum comes
    /// before its terminator).
    pub fn corrupt_at(&mut self, bytes: &[u8], checksum: usize) -> (Vec<u8>, Option<WireFault>) {
        if bytes.is_empty() {
            return (Vec::new(), None);
        }
        if self.roll(self.faults.no_reply) {
            return (Vec::new(), Some(WireFault::Dropped));
        }
        if self.roll(self.faults.truncated) {
            let keep = self.rng.gen_range(0..bytes.len());
            return (bytes[..keep].to_vec(), Some(WireFault::Truncated));
        }
        if self.roll(self.faults.bad_checksum) {
            let mut v = bytes.to_vec();
            if let Some(at) = v.get_mut(checksum) {
                *at ^= self.rng.gen_range(1..=255u8);
            }
            return (v, Some(WireFault::BadChecksum));
        }
        if self.roll(self.faults.garbled) {
            let mut v = bytes.to_vec();
            // The terminator ends the frame in every text protocol (the last byte, or the last two of a `\r\n`);
            // keeping all of it makes the garbling show as a bad reply rather than as a missing one. A garbled `\r`
            // of a `\r\n` left the frame without its end, and the driver waited for it until the line's timeout.
            let i = self.rng.gen_range(0..terminated_at(&v).max(1));
            // A binary frame (Modbus RTU) may hold GARBLE as data: replacing it with itself changed nothing, and a
            // fault logged as injected was never on the wire (a soak's check found no error for it, seed 420). Such
            // a byte becomes 0xFE instead, which its checksum catches as it catches any one byte changed.
            v[i] = if v[i] == GARBLE { GARBLE - 1 } else { GARBLE };
            return (v, Some(WireFault::Garbled));
        }
        (bytes.to_vec(), None)
    }

    /// Whether the instrument answers this command as busy.
    pub fn busy(&mut self) -> bool {
        self.roll(self.faults.busy)
    }

    /// Whether the instrument answers this command with a firmware error.
    pub fn firmware_error(&mut self) -> bool {
        self.roll(self.faults.firmware_error)
    }

    /// Whether a pump's move stops halfway.
    pub fn partial(&mut self) -> bool {
        self.roll(self.faults.partial)
    }

    /// Counts a command; returns how long the port goes away if it disconnects on this one.
    pub fn count_command(&mut self) -> Option<Duration> {
        let d = self.faults.disconnect?;
        self.commands += 1;
        if self.commands >= d.after {
            self.commands = 0;
            return Some(d.down);
        }
        None
    }

    /// Picks one of `choices` at random; `None` if there are none.
    pub fn choose<T: Copy>(&mut self, choices: &[T]) -> Option<T> {
        (!choices.is_empty()).then(|| choices[self.rng.gen_range(0..choices.len())])
    }
}

/// Where a reply's terminator begins: its trailing `\r` and `\n` bytes, or at least its last byte.
fn terminated_at(bytes: &[u8]) -> usize {
    let body = bytes.iter().rposition(|b| !matches!(b, b'\r' | b'\n')).map_or(0, |i| i + 1);
    body.min(bytes.len().saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn faults() -> Faults {
        Faults { seed: Some(1), ..Faults::none() }
    }

    #[test]
    fn no_faults_leave_replies_alone() {
        let mut i = Injector::new(faults(), 0);
        for _ in 0..100 {
            assert_eq!(i.corrupt(b"Z A\r\n"), (b"Z A\r\n".to_vec(), None));
            assert_eq!(i.latency(), Duration::ZERO);
            assert!(!i.busy() && !i.firmware_error() && !i.partial());
            assert_eq!(i.count_command(), None);
        }
    }

    #[test]
    fn certain_faults_always_happen_and_keep_the_frame_end() {
        let mut i = Injector::new(Faults { garbled: 1.0, ..faults() }, 0);
        for _ in 0..50 {
            let (v, f) = i.corrupt(b"S S 1.0 g\r\n");
            assert_eq!(f, Some(WireFault::Garbled));
            assert!(v.contains(&GARBLE) && v.ends_with(b"\r\n"), "{v:?}");
        }
        // A frame of one byte, or one that is all terminator, still gets a garbled byte.
        assert_eq!(i.corrupt(b"\r\n").0, [GARBLE, b'\n']);
        assert_eq!(i.corrupt(b"\x06").0, [GARBLE]);
        // A byte that already is GARBLE (data of a binary frame) still changes.
        assert_eq!(i.corrupt(&[GARBLE]).0, [GARBLE - 1]);
        let mut i = Injector::new(Faults { truncated: 1.0, ..faults() }, 0);
        let (v, _) = i.corrupt(b"S S 1.0 g\r\n");
        assert!(v.len() < 11);
        let mut i = Injector::new(Faults { bad_checksum: 1.0, ..faults() }, 0);
        let (v, _) = i.corrupt(&[2, 0x30, 0x60, 3, 0x51]);
        assert_ne!(v[4], 0x51);
        assert_eq!(&v[..4], &[2, 0x30, 0x60, 3]);
    }

    #[test]
    fn the_same_seed_gives_the_same_faults() {
        let f = Faults {
            no_reply: 0.3,
            garbled: 0.3,
            latency: Latency::Uniform { min: Duration::from_millis(1), max: Duration::from_millis(9) },
            ..faults()
        };
        let draw = |i: &mut Injector| (0..40).map(|_| (i.corrupt(b"abc\r\n"), i.latency())).collect::<Vec<_>>();
        assert_eq!(draw(&mut Injector::new(f.clone(), 0)), draw(&mut Injector::new(f, 0)));
    }

    #[test]
    fn disconnects_come_every_n_commands() {
        let d = crate::lab::Disconnect { after: 3, down: Duration::from_millis(5) };
        let mut i = Injector::new(Faults { disconnect: Some(d), ..faults() }, 0);
        let downs: Vec<bool> = (0..7).map(|_| i.count_command().is_some()).collect();
        assert_eq!(downs, [false, false, true, false, false, true, false]);
    }
}
