//! A simulated SCPI thermometer (a bench multimeter reading a temperature probe, after the Keithley 2000).
//!
//! A message ends at LF or CR (whichever the host sends; a CR LF pair is one end), and the replies end with the
//! lab file's terminator. Headers are case-insensitive and take the short or long form of each keyword
//! (`SYST:ERR?` is `system:error?`); several commands may share a line, separated by `;`. Commands: `*IDN?`,
//! `*RST`, `*CLS`, `*OPC?`, `*TST?`, `SYSTem:ERRor[:NEXT]?`, `MEASure:TEMPerature?`, `READ?`, `FETCh?` and
//! `CONFigure:TEMPerature` (no reply). An unknown header queues -113 "Undefined header" and is not answered; a
//! query with a parameter queues -108. The error queue holds [`QUEUE`] entries, the last becoming -350 "Queue
//! overflow" when it fills.
//!
//! A reading is the temperature of the vessel standing at the thermometer's position, or of the room when none
//! does, with seeded noise of a few hundredths of a degree. Fault `firmware_error` answers a reading with the
//! SCPI overflow value `+9.9E+37` and queues -300 "Device error", as a meter with a broken probe does [U].

use bytes::BytesMut;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::Simulator;
use super::bench::Bench;
use super::pty::Wire;
use crate::lab::ScpiConfig;

/// Entries the error queue holds.
pub const QUEUE: usize = 30;

/// The serial number `*IDN?` reports.
const SERIAL: &str = "1308393";

/// The firmware `*IDN?` reports.
const FIRMWARE: &str = "A20  /A02";

/// The manufacturer `*IDN?` reports.
const MANUFACTURER: &str = "KEITHLEY INSTRUMENTS INC.";

/// Longest message kept while waiting for its end.
const MAX_LINE: usize = 256;

/// Standard deviation of a reading's noise, degC.
const NOISE: f64 = 0.02;

pub(crate) struct ScpiSim {
    model: String,
    position: String,
    terminator: &'static [u8],
    bench: Bench,
    rng: Xoshiro256PlusPlus,
    errors: Vec<(i32, &'static str)>,
}

/// Whether `word` is the keyword `long` in its short form (its capital letters) or long form, in any case.
fn keyword(word: &str, long: &str) -> bool {
    let short: String = long.chars().filter(char::is_ascii_uppercase).collect();
    word.eq_ignore_ascii_case(&short) || word.eq_ignore_ascii_case(long)
}

/// Whether `header` (keywords separated by `:`, an optional leading `:`) matches `pattern`, whose keywords in
/// brackets may be left out.
fn matches(header: &str, pattern: &[&str]) -> bool {
    let words: Vec<&str> = header.trim_start_matches(':').split(':').collect();
    let mut w = 0;
    for p in pattern {
        let optional = p.starts_with('[');
        let p = p.trim_matches(['[', ']']);
        if words.get(w).is_some_and(|word| keyword(word, p)) {
            w += 1;
        } else if !optional {
            return false;
        }
    }
    w == words.len()
}

impl ScpiSim {
    pub(crate) fn new(config: &ScpiConfig, position: &str, seed: u64, bench: Bench) -> Self {
        ScpiSim {
            model: config.model.clone(),
            position: position.to_owned(),
            terminator: config.terminator.bytes(),
            bench,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            errors: Vec::new(),
        }
    }

    fn push_error(&mut self, code: i32, message: &'static str) {
        if self.errors.len() >= QUEUE {
            if let Some(last) = self.errors.last_mut() {
                *last = (-350, "Queue overflow");
            }
            return;
        }
        self.errors.push((code, message));
    }

    fn reading(&mut self, wire: &mut Wire) -> String {
        if wire.firmware_error() {
            self.push_error(-300, "Device error");
            return "+9.90000000E+37".into();
        }
        let t = self.bench.temperature_at(&self.position);
        let noise = Normal::new(0.0, NOISE).map_or(0.0, |n| n.sample(&mut self.rng));
        nr3(t + noise)
    }

    /// The reply to one command, if it has one.
    fn execute(&mut self, command: &str, wire: &mut Wire) -> Option<String> {
        let command = command.trim();
        if command.is_empty() {
            return None;
        }
        let (header, parameter) = match command.split_once(char::is_whitespace) {
            Some((h, p)) => (h, Some(p.trim())),
            None => (command, None),
        };
        let query = header.ends_with('?');
        let head = header.trim_end_matches('?');
        if query && parameter.is_some_and(|p| !p.is_empty()) {
            self.push_error(-108, "Parameter not allowed");
            return None;
        }
        let common = |name: &str| head.eq_ignore_ascii_case(name);
        match () {
            () if query && common("*IDN") => Some(format!("{MANUFACTURER},{},{SERIAL},{FIRMWARE}", self.model)),
            () if !query && common("*RST") => None,
            () if !query && common("*CLS") => {
                self.errors.clear();
                None
            }
            () if query && common("*OPC") => Some("1".into()),
            () if query && common("*TST") => Some("0".into()),
            () if query && matches(head, &["SYSTem", "ERRor", "[NEXT]"]) => {
                let (code, message) = if self.errors.is_empty() { (0, "No error") } else { self.errors.remove(0) };
                Some(format!("{code},\"{message}\""))
            }
            () if query && matches(head, &["MEASure", "TEMPerature"]) => Some(self.reading(wire)),
            () if query && (matches(head, &["READ"]) || matches(head, &["FETCh"])) => Some(self.reading(wire)),
            () if !query && matches(head, &["CONFigure", "TEMPerature"]) => None,
            () => {
                self.push_error(-113, "Undefined header");
                None
            }
        }
    }
}

/// A number in SCPI's NR3 form: sign, one digit, eight decimals, a signed two-digit exponent (`+2.53000000E+01`).
fn nr3(v: f64) -> String {
    let s = format!("{:.8E}", v.abs());
    let (mantissa, exp) = s.split_once('E').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let sign = if v < 0.0 { '-' } else { '+' };
    let exp_sign = if exp < 0 { '-' } else { '+' };
    format!("{sign}{mantissa}E{exp_sign}{:02}", exp.abs())
}

impl Simulator for ScpiSim {
    fn frame(&mut self, input: &mut BytesMut) -> Option<Vec<u8>> {
        loop {
            let Some(end) = input.iter().position(|&b| b == b'\n' || b == b'\r') else {
                if input.len() > MAX_LINE {
                    input.clear();
                }
                return None;
            };
            let line = input.split_to(end + 1);
            let text = &line[..end];
            if !text.is_empty() && text.len() <= MAX_LINE {
                return Some(text.to_vec());
            }
        }
    }

    async fn handle(&mut self, command: Vec<u8>, wire: &mut Wire) -> bool {
        let Ok(line) = std::str::from_utf8(&command) else {
            self.push_error(-101, "Invalid character");
            return true;
        };
        let mut answers = Vec::new();
        for part in line.split(';') {
            if let Some(a) = self.execute(part, wire) {
                answers.push(a);
            }
        }
        if answers.is_empty() {
            return true;
        }
        let mut reply = answers.join(";").into_bytes();
        reply.extend_from_slice(self.terminator);
        wire.reply(&reply).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_in_nr3() {
        assert_eq!(nr3(25.3), "+2.53000000E+01");
        assert_eq!(nr3(-0.0123), "-1.23000000E-02");
        assert_eq!(nr3(0.0), "+0.00000000E+00");
    }

    #[test]
    fn headers_match_in_short_and_long_form_and_any_case() {
        assert!(matches("SYST:ERR", &["SYSTem", "ERRor", "[NEXT]"]));
        assert!(matches("system:error:next", &["SYSTem", "ERRor", "[NEXT]"]));
        assert!(matches(":Meas:Temp", &["MEASure", "TEMPerature"]));
        assert!(!matches("SYS:ERR", &["SYSTem", "ERRor", "[NEXT]"]));
        assert!(!matches("MEAS:TEMP:DC", &["MEASure", "TEMPerature"]));
    }
}
