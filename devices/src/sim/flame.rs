//! A simulated Ocean Optics Flame spectrometer (RS-232 binary command set).
//!
//! Only binary mode is simulated: `a` (ASCII mode) is refused with NAK, as is every unknown letter. Commands:
//! `bB` (ACK), `v` (ACK and the version word 1000), `I{word}` integration time 1..=65000 ms, `A{word}` scans to
//! accumulate 1..=5000, `K{word}` baud code 0..=7 (acknowledged; a pseudo-terminal has no baud rate), `Q` reset to
//! 100 ms and 1 scan, and `S`, which answers after integration × scans of lab time with STX and a spectrum of the
//! vessel in the holder (see [`crate::drivers::flame`] for the format).
//!
//! Counts per scan are the lamp (a broad peak of about 40000 counts per 100 ms near 600 nm on a floor) times
//! `10^-A` times the integration time, plus a dark level of about 1500 counts and seeded shot and read noise,
//! clipped to 65535; the masked pixels see only the dark level. Scans are summed. Fault `firmware_error` answers
//! `S` with ETX, as a spectrometer that cannot acquire does.

use bytes::{Buf, BytesMut};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::bench::Bench;
use super::pty::Wire;
use super::{Simulator, name_hash};
use crate::clock::Clock;
use crate::drivers::flame::{ACK, MASKED, NAK, Spectrum};
use crate::lab::FlameConfig;

/// The version word `v` answers.
const VERSION: u16 = 1000;
/// The dark level, in counts per scan.
const DARK: f64 = 1500.0;
/// The read noise, in counts per scan.
const READ_NOISE: f64 = 8.0;
/// Photo-electrons per count, which sets the shot noise.
const GAIN: f64 = 4.0;

/// The lamp's counts per 100 ms at `lambda` nm.
fn lamp(lambda: f64) -> f64 {
    4000.0 + 36000.0 * (-((lambda - 600.0) / 150.0).powi(2)).exp()
}

pub(crate) struct FlameSim {
    name: String,
    position: String,
    wavelengths: Vec<f64>,
    bench: Bench,
    clock: Clock,
    rng: Xoshiro256PlusPlus,
    integration_ms: u16,
    scans: u16,
}

impl FlameSim {
    pub(crate) fn new(name: &str, config: &FlameConfig, position: &str, seed: u64, bench: Bench, clock: Clock) -> Self {
        FlameSim {
            name: name.to_owned(),
            position: position.to_owned(),
            wavelengths: (0..config.pixels).map(|p| config.wavelength(p)).collect(),
            bench,
            clock,
            rng: noise(seed, name),
            integration_ms: 100,
            scans: 1,
        }
    }

    /// Acquires and sums `scans` spectra of whatever is in the holder.
    fn acquire(&mut self) -> Spectrum {
        let absorbance = self.bench.absorbance(&self.name, &self.position, &self.wavelengths);
        acquire(&absorbance, &self.wavelengths, &mut self.rng, self.integration_ms, self.scans)
    }
}

/// The noise generator of the spectrometer `name` in a lab simulated with `seed`.
pub(crate) fn noise(seed: u64, name: &str) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(seed ^ name_hash(name))
}

/// `scans` spectra summed, of light through `absorbance` (by pixel, at `wavelengths`), each integrated for
/// `integration_ms`, with the detector's shot and read noise drawn from `rng`: what the simulator answers to `S`,
/// and what a plan's dry bench reads ([`crate::sim::DryBench`]).
pub(crate) fn acquire(
    absorbance: &[f64],
    wavelengths: &[f64],
    rng: &mut Xoshiro256PlusPlus,
    integration_ms: u16,
    scans: u16,
) -> Spectrum {
    let exposure = f64::from(integration_ms) / 100.0;
    let read = Normal::new(0.0, READ_NOISE).ok();
    let mut counts = vec![0u32; wavelengths.len()];
    for _ in 0..scans {
        for (p, c) in counts.iter_mut().enumerate() {
            let light = if MASKED.contains(&p) {
                0.0
            } else {
                lamp(wavelengths[p]) * exposure * 10f64.powf(-absorbance[p].max(0.0))
            };
            let shot = Normal::new(0.0, (light.max(0.0) / GAIN).sqrt()).map_or(0.0, |n| n.sample(rng));
            let noise = read.map_or(0.0, |n| n.sample(rng));
            let value = (DARK + light + shot + noise).round().clamp(0.0, 65535.0);
            // The clamp above keeps the value within u32.
            *c += value as u32;
        }
    }
    Spectrum { scans, integration_ms, baseline: 0, counts }
}

/// The data word after a command letter; 0, which every ranged command refuses, if it is missing.
fn word(command: &[u8]) -> u16 {
    match command {
        [_, hi, lo, ..] => u16::from_be_bytes([*hi, *lo]),
        _ => 0,
    }
}

impl Simulator for FlameSim {
    fn frame(&mut self, input: &mut BytesMut) -> Option<Vec<u8>> {
        let &letter = input.first()?;
        let len = match letter {
            b'I' | b'A' | b'K' => 3,
            b'b' => 2,
            _ => 1,
        };
        if input.len() < len {
            return None;
        }
        let command = input[..len].to_vec();
        input.advance(len);
        Some(command)
    }

    async fn handle(&mut self, command: Vec<u8>, wire: &mut Wire) -> bool {
        let reply = match command.as_slice() {
            b"bB" => vec![ACK],
            b"v" => {
                let mut v = vec![ACK];
                v.extend_from_slice(&VERSION.to_be_bytes());
                v
            }
            [b'I', ..] if (1..=65_000).contains(&word(&command)) => {
                self.integration_ms = word(&command);
                vec![ACK]
            }
            [b'A', ..] if (1..=5000).contains(&word(&command)) => {
                self.scans = word(&command);
                vec![ACK]
            }
            [b'K', ..] if word(&command) <= 7 => vec![ACK],
            b"Q" => {
                self.integration_ms = 100;
                self.scans = 1;
                vec![ACK]
            }
            // A lamp or detector fault: the spectrometer cannot acquire and answers ETX.
            b"S" if wire.firmware_error() => vec![crate::drivers::flame::ETX],
            b"S" => {
                self.clock.sleep(f64::from(self.integration_ms) / 1000.0 * f64::from(self.scans)).await;
                self.acquire().to_bytes()
            }
            _ => vec![NAK],
        };
        wire.reply(&reply).await
    }
}
