//! A simulated Mettler Toledo balance (MT-SICS), answering as the model of its profile would.
//!
//! A command ends at LF (a CR before it is dropped); commands are upper case and parameters are separated by
//! spaces. Replies are `ID STATUS [params]` CR LF, a weight right-aligned in a 10-character field and followed by
//! its unit (`S S     12.3456 g`). The balance answers exactly the commands its model's profile lists
//! ([`crate::models::sics::PROFILES`]) and `ES`, a syntax error, to anything else, as a model without a
//! command does; `I0` lists the profile, one command a line (`I0 B <level> "<command>"`, the last `I0 A`).
//!
//! Commands: `S` (stable weight: waits on lab time until the pan has settled, or answers `S I` after
//! [`STABILITY_TIMEOUT`]), `SI` (immediately: `S D` while settling), `SIR` (`SI` repeated about four times a
//! lab second until the next command), `SR` (a stable weight, then another after each change of the load), `Z`/`ZI`
//! (zero), `T`/`TI` (tare: `T S <tare> g`, `T S 0.0000 g` on an empty zeroed pan, `T -` below zero), `TA` (the
//! tare), `TAC` (clear it), `@` (reset: clears the tare and answers with the serial number as `I4 A "..."`),
//! `I0`..`I5` (commands, level, type and capacity, software version, serial number, software identification),
//! `D "text"`/`DW` (display text, weight display), `K n` (key configuration) and `M21 <type> <unit>` (units: the
//! host unit sets the unit of every weight reply). A load above capacity reads `S +`.
//!
//! The pan weighs what stands at the balance's position on the bench: the vial's own glass and its liquid at about
//! 1 g/mL. After anything changes there (a vial put down or taken, liquid added) the reading needs
//! [`SETTLE`] lab seconds to settle; until then `SI` answers with a wobbling dynamic weight. Faults: `busy` answers
//! `S I` (or `Z I`, `T I`) without weighing; `firmware_error` answers `EL` (a logical error) [U: which error a
//! real balance gives for a transient fault is not documented; `EL` is the one a driver must handle anyway].
//! [U]: the `M21` query's reply (`M21 A <type> <unit>`, or both types as `M21 B`/`M21 A` lines), the unit codes
//! (0 g, 1 kg, 3 mg), the `I5` identification and the `SR` change threshold (30 readability steps) are not
//! checked against a manual.

use bytes::BytesMut;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::Simulator;
use super::bench::Bench;
use super::pty::Wire;
use crate::clock::Clock;
use crate::lab::BalanceConfig;
use crate::models::sics::SicsProfile;

/// Lab seconds the pan takes to settle after a change.
pub const SETTLE: f64 = 2.0;

/// Lab seconds `S` waits for stability before it answers `S I`.
pub const STABILITY_TIMEOUT: f64 = 30.0;

/// Lab seconds between two lines of `SIR`, and between two looks at the load for `SR`.
const REPEAT: f64 = 0.25;

/// The balance's readability, in grams.
const READABILITY: f64 = 1e-4;

/// The serial number `I4` and `@` report.
const SERIAL: &str = "1126493049";

/// The software version `I3` reports.
const VERSION: &str = "2.20 1.13";

/// The software identification `I5` reports.
const SOFTWARE_ID: &str = "12121306C";

/// Longest command line kept while waiting for its end.
const MAX_LINE: usize = 128;

/// A unit a weight can be sent in: its `M21` code, symbol, grams per unit and decimals.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Unit {
    code: u8,
    symbol: &'static str,
    grams: f64,
    decimals: usize,
}

const UNITS: [Unit; 3] = [
    Unit { code: 0, symbol: "g", grams: 1.0, decimals: 4 },
    Unit { code: 1, symbol: "kg", grams: 1e3, decimals: 7 },
    Unit { code: 3, symbol: "mg", grams: 1e-3, decimals: 1 },
];

pub(crate) struct BalanceSim {
    name: String,
    position: String,
    profile: &'static SicsProfile,
    capacity: f64,
    bench: Bench,
    clock: Clock,
    rng: Xoshiro256PlusPlus,
    /// The gross reading that shows as zero.
    zero: f64,
    /// The tare subtracted from the net reading.
    tare: f64,
    /// The unit of weight replies (`M21 0`), and the display unit (`M21 1`).
    host: Unit,
    display: Unit,
}

/// What one command line does: answer with lines, or stream until the next command.
enum Answer {
    Lines(Vec<String>),
    /// `SIR`: an immediate weight, repeated.
    Repeat,
    /// `SR`: a stable weight, and another after each change.
    OnChange,
}

impl BalanceSim {
    pub(crate) fn new(
        name: &str,
        config: &BalanceConfig,
        profile: &'static SicsProfile,
        position: &str,
        seed: u64,
        bench: Bench,
        clock: Clock,
    ) -> Self {
        BalanceSim {
            name: name.to_owned(),
            position: position.to_owned(),
            profile,
            capacity: config.capacity.0,
            bench,
            clock,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            zero: 0.0,
            tare: 0.0,
            host: UNITS[0],
            display: UNITS[0],
        }
    }

    /// The gross load now, and whether it has settled.
    fn load(&mut self) -> (f64, bool) {
        let (grams, _, changed) = self.bench.load_at(&self.position);
        let settled = self.clock.now() >= changed + SETTLE;
        let wobble = if settled { 0.0 } else { self.rng.gen_range(-0.02..0.02) };
        (grams + wobble, settled)
    }

    /// A weight reply in the host unit, right-aligned in ten characters.
    fn weight_line(&self, id: &str, status: &str, grams: f64) -> String {
        let unit = self.host;
        let value = format!("{:.*}", unit.decimals, round(grams) / unit.grams);
        format!("{id} {status} {value:>10} {}", unit.symbol)
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

    /// The reply to `SI` (or one line of `SIR`), or to `S` once `stable` is `Some`.
    fn weight(&mut self, reading: Option<(f64, bool)>) -> String {
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

    /// `M21` with its parameters: query the host and display units, or set one.
    fn units(&mut self, params: &[&str]) -> Vec<String> {
        let code = |u: Unit| u.code.to_string();
        match params {
            [] => vec![format!("M21 B 0 {}", code(self.host)), format!("M21 A 1 {}", code(self.display))],
            ["0"] => vec![format!("M21 A 0 {}", code(self.host))],
            ["1"] => vec![format!("M21 A 1 {}", code(self.display))],
            [which @ ("0" | "1"), unit] => match UNITS.iter().find(|u| u.code.to_string() == *unit) {
                Some(u) if *which == "0" => {
                    self.host = *u;
                    vec!["M21 A".into()]
                }
                Some(u) => {
                    self.display = *u;
                    vec!["M21 A".into()]
                }
                None => vec!["M21 L".into()],
            },
            _ => vec!["M21 L".into()],
        }
    }

    /// What one command line does.
    async fn execute(&mut self, line: &str, wire: &mut Wire) -> Answer {
        let (command, rest) = line.split_once(' ').unwrap_or((line, ""));
        let params: Vec<&str> = rest.split(' ').filter(|w| !w.is_empty()).collect();
        let one = |s: String| Answer::Lines(vec![s]);
        if !self.profile.has(command) {
            return one("ES".into());
        }
        // Commands that take parameters say so; the rest refuse any as a syntax error.
        if !params.is_empty() && !matches!(command, "D" | "K" | "M21") {
            return one("ES".into());
        }
        let waits = matches!(command, "S" | "Z" | "T");
        let id = match command {
            "SI" => "S",
            other => other,
        };
        if matches!(command, "S" | "SI" | "Z" | "ZI" | "T" | "TI") {
            if wire.busy() {
                return one(format!("{id} I"));
            }
            if wire.firmware_error() {
                return one("EL".into());
            }
        }
        match command {
            "S" => {
                let reading = self.stable().await.map(|g| (g, true));
                one(self.weight(reading))
            }
            "SI" => {
                let reading = Some(self.load());
                one(self.weight(reading))
            }
            "SIR" => Answer::Repeat,
            "SR" => Answer::OnChange,
            "Z" | "ZI" => {
                let reading = if waits { self.stable().await } else { Some(self.load().0) };
                let Some(gross) = reading else { return one(format!("{id} I")) };
                // A zero outside 2 % of capacity of the power-up zero is refused, as the zero range is limited.
                if gross > 0.02 * self.capacity {
                    return one(format!("{id} +"));
                }
                self.zero = gross;
                self.tare = 0.0;
                one(format!("{id} A"))
            }
            "T" | "TI" => {
                let reading = if waits { self.stable().await } else { Some(self.load().0) };
                let Some(gross) = reading else { return one(format!("{id} I")) };
                if gross > self.capacity {
                    return one(format!("{id} +"));
                }
                // The tare is the weight change since the last zero: an empty zeroed pan tares to 0; only a load
                // below zero is under the taring range.
                let net = round(gross - self.zero);
                if net < 0.0 {
                    return one(format!("{id} -"));
                }
                self.tare = net;
                one(self.weight_line(id, "S", self.tare))
            }
            "TA" => one(self.weight_line("TA", "A", self.tare)),
            "TAC" => {
                self.tare = 0.0;
                one("TAC A".into())
            }
            "@" => {
                self.tare = 0.0;
                one(format!("I4 A \"{SERIAL}\""))
            }
            "I0" => {
                let last = self.profile.commands().count().saturating_sub(1);
                Answer::Lines(
                    self.profile
                        .commands()
                        .enumerate()
                        .map(|(i, (level, c))| format!("I0 {} {level} \"{c}\"", if i == last { "A" } else { "B" }))
                        .collect(),
                )
            }
            "I1" => one("I1 A \"01\" \"2.30\" \"2.22\" \"\" \"\"".into()),
            "I2" => one(format!("I2 A \"{} {:.4} g\"", self.profile.model, self.capacity)),
            "I3" => one(format!("I3 A \"{VERSION}\"")),
            "I4" => one(format!("I4 A \"{SERIAL}\"")),
            "I5" => one(format!("I5 A \"{SOFTWARE_ID}\"")),
            "D" => one(if rest.starts_with('"') && rest.ends_with('"') { "D A" } else { "D L" }.into()),
            "DW" => one("DW A".into()),
            "K" => one(if matches!(params.as_slice(), ["1" | "2" | "3" | "4"]) { "K A" } else { "K L" }.into()),
            "M21" => Answer::Lines(self.units(&params)),
            _ => one("ES".into()),
        }
    }

    /// Streams weights for `SIR` or `SR` until the next command arrives; false once the line is gone.
    async fn stream(&mut self, on_change: bool, wire: &mut Wire) -> bool {
        let mut last: Option<f64> = None;
        loop {
            let (gross, settled) = self.load();
            let changed = last.is_none_or(|l| (gross - l).abs() >= 30.0 * READABILITY);
            if !on_change || (settled && changed) {
                let line = self.weight(Some((gross, settled)));
                if !wire.reply(format!("{line}\r\n").as_bytes()).await {
                    return false;
                }
                last = Some(gross);
            }
            tokio::select! {
                () = crate::drivers::pause(&self.clock, REPEAT) => {}
                alive = wire.fill() => return alive,
            }
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
        let answer = match std::str::from_utf8(&command) {
            Ok(line) if line.bytes().all(|b| (0x20..0x7f).contains(&b)) && line.len() <= MAX_LINE => {
                self.execute(line, wire).await
            }
            _ => Answer::Lines(vec!["ES".into()]),
        };
        match answer {
            Answer::Lines(lines) => {
                let mut bytes = Vec::new();
                for l in lines {
                    bytes.extend_from_slice(l.as_bytes());
                    bytes.extend_from_slice(b"\r\n");
                }
                wire.reply(&bytes).await
            }
            Answer::Repeat => self.stream(false, wire).await,
            Answer::OnChange => self.stream(true, wire).await,
        }
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
