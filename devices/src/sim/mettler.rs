//! A simulated Mettler Toledo balance (MT-SICS level 0 and 1).
//!
//! A command ends at LF (a CR before it is dropped); commands are upper case and parameters are separated by
//! spaces. Replies are `ID STATUS [params]` CR LF, a weight right-aligned in a 10-character field and followed by
//! its unit (`S S     12.3456 g`). Commands: `S` (stable weight: waits on lab time until the pan has settled, or
//! answers `S I` after [`STABILITY_TIMEOUT`]), `SI` (immediately: `S D` while settling), `Z`/`ZI` (zero), `T`/`TI`
//! (tare: `T S <tare> g`), `TA` (the tare), `TAC` (clear it), `@` (reset: clears the tare and answers with the
//! serial number as `I4 A "..."`), `I1`..`I4` (level, type and capacity, software version, serial number).
//! Anything else is answered `ES`, a syntax error; a load above capacity reads `S +`.
//!
//! The pan weighs what stands at the balance's position on the bench: the vial's own glass and its liquid at about
//! 1 g/mL. After anything changes there (a vial put down or taken, liquid added) the reading needs
//! [`SETTLE`] lab seconds to settle; until then `SI` answers with a wobbling dynamic weight. Faults: `busy` answers
//! `S I` (or `Z I`, `T I`) without weighing; `firmware_error` answers `EL` (a logical error) [U: which error a
//! real balance gives for a transient fault is not documented; `EL` is the one a driver must handle anyway].
//! Simplifications: `SIR` streams, `D`/`DW`, the timed `SC`/`ZC`/`TC` and `I0` are not simulated (`ES`).

use bytes::BytesMut;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::Simulator;
use super::bench::Bench;
use super::pty::Wire;
use crate::clock::Clock;
use crate::lab::BalanceConfig;

/// Lab seconds the pan takes to settle after a change.
pub const SETTLE: f64 = 2.0;

/// Lab seconds `S` waits for stability before it answers `S I`.
pub const STABILITY_TIMEOUT: f64 = 30.0;

/// The balance's readability, in grams.
const READABILITY: f64 = 1e-4;

/// The serial number `I4` and `@` report.
const SERIAL: &str = "1126493049";

/// The software version `I3` reports.
const VERSION: &str = "2.20 1.13";

/// Longest command line kept while waiting for its end.
const MAX_LINE: usize = 128;

pub(crate) struct BalanceSim {
    name: String,
    position: String,
    model: String,
    capacity: f64,
    bench: Bench,
    clock: Clock,
    rng: Xoshiro256PlusPlus,
    /// The gross reading that shows as zero.
    zero: f64,
    /// The tare subtracted from the net reading.
    tare: f64,
}

impl BalanceSim {
    pub(crate) fn new(
        name: &str,
        config: &BalanceConfig,
        position: &str,
        seed: u64,
        bench: Bench,
        clock: Clock,
    ) -> Self {
        BalanceSim {
            name: name.to_owned(),
            position: position.to_owned(),
            model: config.model.clone(),
            capacity: config.capacity.0,
            bench,
            clock,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            zero: 0.0,
            tare: 0.0,
        }
    }

    /// The gross load now, and whether it has settled.
    fn load(&mut self) -> (f64, bool) {
        let (grams, _, changed) = self.bench.load_at(&self.position);
        let settled = self.clock.now() >= changed + SETTLE;
        let wobble = if settled { 0.0 } else { self.rng.gen_range(-0.02..0.02) };
        (grams + wobble, settled)
    }

    fn weight_line(&self, id: &str, status: &str, grams: f64) -> String {
        let value = format!("{:.4}", round(grams));
        format!("{id} {status} {value:>10} g")
    }

    /// Waits on lab time until the pan settles, for at most [`STABILITY_TIMEOUT`]; the settled gross load.
    async fn stable(&mut self) -> Option<f64> {
        let until = self.clock.now() + STABILITY_TIMEOUT;
        loop {
            let (grams, settled) = self.load();
            if settled {
                return Some(grams);
            }
            let (_, _, changed) = self.bench.load_at(&self.position);
            let next = (changed + SETTLE).min(until);
            if self.clock.now() >= until {
                return None;
            }
            self.clock.sleep_until(next.max(self.clock.now() + 0.01)).await;
        }
    }

    /// The reply to one command line.
    async fn execute(&mut self, line: &str, wire: &mut Wire) -> String {
        let mut words = line.split(' ').filter(|w| !w.is_empty());
        let command = words.next().unwrap_or_default();
        let rest: Vec<&str> = words.collect();
        let waits = matches!(command, "S" | "Z" | "T");
        let id = if command == "ZI" {
            "ZI"
        } else if command == "TI" {
            "TI"
        } else {
            command
        };
        match command {
            "S" | "SI" | "Z" | "ZI" | "T" | "TI" | "TA" | "TAC" | "@" | "I1" | "I2" | "I3" | "I4"
                if !rest.is_empty() =>
            {
                return "ES".into();
            }
            "S" | "SI" | "Z" | "ZI" | "T" | "TI" if wire.busy() => {
                let id = if command == "SI" { "S" } else { id };
                return format!("{id} I");
            }
            "S" | "SI" | "Z" | "ZI" | "T" | "TI" if wire.firmware_error() => return "EL".into(),
            _ => {}
        }
        match command {
            "S" | "SI" => {
                let reading = if waits { self.stable().await.map(|g| (g, true)) } else { Some(self.load()) };
                let Some((gross, settled)) = reading else { return "S I".into() };
                if gross > self.capacity {
                    return "S +".into();
                }
                if gross - self.zero < -0.5 {
                    return "S -".into();
                }
                let net = gross - self.zero - self.tare;
                if settled {
                    self.bench.weighed(&self.name, &self.position, gross);
                }
                self.weight_line("S", if settled { "S" } else { "D" }, net)
            }
            "Z" | "ZI" => {
                let reading = if waits { self.stable().await } else { Some(self.load().0) };
                let Some(gross) = reading else { return format!("{id} I") };
                // A zero outside 2 % of capacity of the power-up zero is refused, as the zero range is limited.
                if gross > 0.02 * self.capacity {
                    return format!("{id} +");
                }
                self.zero = gross;
                self.tare = 0.0;
                format!("{id} A")
            }
            "T" | "TI" => {
                let reading = if waits { self.stable().await } else { Some(self.load().0) };
                let Some(gross) = reading else { return format!("{id} I") };
                if gross > self.capacity {
                    return format!("{id} +");
                }
                let net = gross - self.zero;
                if net <= 0.0 {
                    return format!("{id} -");
                }
                self.tare = round(net);
                self.weight_line(id, "S", self.tare)
            }
            "TA" => self.weight_line("TA", "A", self.tare),
            "TAC" => {
                self.tare = 0.0;
                "TAC A".into()
            }
            "@" => {
                self.tare = 0.0;
                format!("I4 A \"{SERIAL}\"")
            }
            "I1" => "I1 A \"01\" \"2.20\" \"2.20\" \"\" \"\"".into(),
            "I2" => format!("I2 A \"{} {:.4} g\"", self.model, self.capacity),
            "I3" => format!("I3 A \"{VERSION}\""),
            "I4" => format!("I4 A \"{SERIAL}\""),
            _ => "ES".into(),
        }
    }
}

/// A reading rounded to the balance's readability.
fn round(grams: f64) -> f64 {
    (grams / READABILITY).round() * READABILITY
}

impl Simulator for BalanceSim {
    fn frame(&mut self, input: &mut BytesMut) -> Option<Vec<u8>> {
        loop {
            let Some(end) = input.iter().position(|&b| b == b'\n') else {
                if input.len() > MAX_LINE {
                    input.clear();
                }
                return None;
            };
            let line = input.split_to(end + 1);
            let text = line[..end].strip_suffix(b"\r").unwrap_or(&line[..end]);
            if !text.is_empty() {
                return Some(text.to_vec());
            }
        }
    }

    async fn handle(&mut self, command: Vec<u8>, wire: &mut Wire) -> bool {
        // Bytes outside printable ASCII cannot form a command: a syntax error, as a real balance reports.
        let reply = match std::str::from_utf8(&command) {
            Ok(line) if line.bytes().all(|b| (0x20..0x7f).contains(&b)) && line.len() <= MAX_LINE => {
                self.execute(line, wire).await
            }
            _ => "ES".into(),
        };
        wire.reply(format!("{reply}\r\n").as_bytes()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_right_aligned_with_their_unit() {
        let line = format!("S S {:>10} g", format!("{:.4}", round(12.34567)));
        assert_eq!(line, "S S    12.3457 g");
    }
}
