//! A simulated SCPI multimeter, answering as the model of its profile ([`crate::models::scpi`]): a Keithley Model
//! 2000 with a type K thermocouple on its input, the junction in the vessel at its position.
//!
//! A message ends at LF or CR (whichever the host sends; a CR LF pair is one end), and the replies end with the
//! lab file's terminator. Headers are case-insensitive and take the short or long form of each keyword
//! (`SYST:ERR?` is `system:error?`), optional keywords may be left out (`MEAS:VOLT?` is `MEAS:VOLT:DC?`), and several
//! commands may share a line, separated by `;`.
//!
//! Commands: `*IDN?`, `*RST` (function DC volts, no reading, degrees Celsius), `*CLS`, `*OPC?`, `*TST?`, `*ESR?`,
//! `SYSTem:ERRor[:NEXT]?`, and for every function of the model (`VOLT:DC`, `VOLT:AC`, `CURR:DC`, `CURR:AC`, `RES`,
//! `FRES`, `FREQ`, `PER`, `TEMP`, `DIOD`, `CONT`): `CONFigure:<function>` (range and resolution parameters are
//! taken and ignored), `MEASure:<function>?` (configure and read), `[SENSe:]FUNCtion "<function>"` and its query,
//! `CONFigure?`; then `INITiate` (take a reading), `READ?` (take and send one) and `FETCh?` (send the last; -230 "Data
//! corrupt or stale" if none was taken since the function changed), `UNIT:TEMPerature C|F|K` and its query, and
//! `[SENSe:]TEMPerature:TCouple:TYPE J|K|T|E|R|S|B|N` and its query. An unknown header queues -113 "Undefined header"
//! and is not answered; a query with a parameter it does not take queues -108. The error queue holds [`QUEUE`]
//! entries, the last becoming -350 "Queue overflow" when it fills.
//!
//! What each function reads comes from the thermocouple: its junction is at the vessel standing at the meter's
//! position, or at the room when none does; the reference junction at the room. Temperature reads the junction
//! (in the unit set); DC volts its thermoelectric voltage (40.6 uV/degC, type K near room temperature); 2- and
//! 4-wire ohms and continuity its loop resistance (5.2 and 4.9 ohm); the diode test the drop of the 1 mA test
//! current across that loop; AC volts, DC and AC amps (nothing on the current input) noise about zero; frequency 0
//! (no signal) and period the SCPI overflow `+9.9E+37` [U: what a 2000 shows for a period without a signal is
//! not documented]. Readings carry seeded noise. Fault `firmware_error` answers a reading with `+9.9E+37` and
//! queues -300 "Device error", as a meter with a broken probe does [U].

use bytes::BytesMut;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::Simulator;
use super::bench::Bench;
use super::chemistry::AMBIENT;
use super::pty::Wire;
use crate::lab::ScpiConfig;
use crate::models::scpi::{Function, ScpiProfile};

/// Entries the error queue holds.
pub const QUEUE: usize = 30;

/// The serial number `*IDN?` reports.
const SERIAL: &str = "1308393";

/// The firmware `*IDN?` reports.
const FIRMWARE: &str = "A20  /A02";

/// Longest message kept while waiting for its end.
const MAX_LINE: usize = 256;

/// SCPI's "not a number": the overflow a meter sends when it cannot measure.
const OVERFLOW: f64 = 9.9e37;

/// Seebeck coefficient of a type K thermocouple near room temperature, V/degC.
const SEEBECK: f64 = 40.6e-6;

/// The thermocouple loop's resistance, 2-wire and 4-wire, ohm.
const LOOP: (f64, f64) = (5.2, 4.9);

/// Thermocouple types the 2000 takes.
const TC_TYPES: [&str; 8] = ["J", "K", "T", "E", "R", "S", "B", "N"];

pub(crate) struct ScpiSim {
    profile: &'static ScpiProfile,
    position: String,
    terminator: &'static [u8],
    bench: Bench,
    rng: Xoshiro256PlusPlus,
    errors: Vec<(i32, &'static str)>,
    function: &'static Function,
    /// The last reading taken (`INIT`, `READ?`), which `FETC?` sends.
    last: Option<f64>,
    /// `C`, `F` or `K`.
    unit: char,
    tc_type: &'static str,
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

/// Whether `header` is `root` (one keyword, optional ones in brackets) followed by `function`'s keywords.
fn with_function(header: &str, root: &[&str], function: &Function) -> bool {
    let pattern: Vec<&str> = root.iter().chain(function.keywords).copied().collect();
    matches(header, &pattern)
}

impl ScpiSim {
    pub(crate) fn new(
        config: &ScpiConfig,
        profile: &'static ScpiProfile,
        position: &str,
        seed: u64,
        bench: Bench,
    ) -> Self {
        ScpiSim {
            profile,
            position: position.to_owned(),
            terminator: config.terminator.bytes(),
            bench,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            errors: Vec::new(),
            function: &profile.functions[0],
            last: None,
            unit: 'C',
            tc_type: "K",
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

    fn noise(&mut self, sd: f64) -> f64 {
        Normal::new(0.0, sd).map_or(0.0, |n| n.sample(&mut self.rng))
    }

    fn select(&mut self, function: &'static Function) {
        self.function = function;
        self.last = None;
    }

    /// Takes a reading of the present function.
    fn measure(&mut self, wire: &mut Wire) -> f64 {
        if wire.firmware_error() {
            self.push_error(-300, "Device error");
            return OVERFLOW;
        }
        let junction = self.bench.temperature_at(&self.position);
        let value = match self.function.name {
            "TEMP" => {
                let t = junction + self.noise(0.02);
                match self.unit {
                    'F' => t * 9.0 / 5.0 + 32.0,
                    'K' => t + 273.15,
                    _ => t,
                }
            }
            "VOLT:DC" => SEEBECK * (junction - AMBIENT) + self.noise(3e-7),
            "VOLT:AC" | "CURR:AC" => self.noise(1e-6).abs(),
            "CURR:DC" => self.noise(1e-9),
            "RES" | "CONT" => LOOP.0 + self.noise(1e-3),
            "FRES" => LOOP.1 + self.noise(1e-4),
            "DIOD" => 1e-3 * LOOP.0,
            "FREQ" => 0.0,
            _ => OVERFLOW,
        };
        self.last = Some(value);
        value
    }

    /// The function whose keywords follow `root` in `header`, if any of the model's does.
    fn function_after(&self, header: &str, root: &[&str]) -> Option<&'static Function> {
        self.profile.functions.iter().find(|f| with_function(header, root, f))
    }

    /// The function a quoted name (`"VOLT:DC"`, `"volt:dc"`, `"VOLTage"`) names.
    fn function_named(&self, quoted: &str) -> Option<&'static Function> {
        let name = quoted.trim().trim_matches(['"', '\'']);
        self.function_after(name, &[])
    }

    /// The reply to one command, if it has one.
    fn execute(&mut self, command: &str, wire: &mut Wire) -> Option<String> {
        let command = command.trim();
        if command.is_empty() {
            return None;
        }
        let (header, parameter) = match command.split_once(char::is_whitespace) {
            Some((h, p)) => (h, p.trim()),
            None => (command, ""),
        };
        let query = header.ends_with('?');
        let head = header.trim_end_matches('?');
        let common = |name: &str| head.eq_ignore_ascii_case(name);
        // Only MEASure and CONFigure take parameters (range and resolution) among the queries and setters below
        // that read nothing; the others refuse one.
        let takes_parameter = (query && self.function_after(head, &["MEASure"]).is_some())
            || (!query
                && (self.function_after(head, &["CONFigure"]).is_some()
                    || matches(head, &["[SENSe]", "FUNCtion"])
                    || matches(head, &["UNIT", "TEMPerature"])
                    || matches(head, &["[SENSe]", "TEMPerature", "TCouple", "TYPE"])));
        if !parameter.is_empty() && !takes_parameter {
            self.push_error(-108, "Parameter not allowed");
            return None;
        }
        match () {
            () if query && common("*IDN") => {
                Some(format!("{},{},{SERIAL},{FIRMWARE}", self.profile.manufacturer, self.profile.model))
            }
            () if !query && common("*RST") => {
                let first = &self.profile.functions[0];
                self.select(first);
                self.unit = 'C';
                None
            }
            () if !query && common("*CLS") => {
                self.errors.clear();
                None
            }
            () if query && (common("*OPC") || common("*ESR") || common("*TST")) => {
                Some(if common("*OPC") { "1" } else { "0" }.into())
            }
            () if query && matches(head, &["SYSTem", "ERRor", "[NEXT]"]) => {
                let (code, message) = if self.errors.is_empty() { (0, "No error") } else { self.errors.remove(0) };
                Some(format!("{code},\"{message}\""))
            }
            () if query && matches(head, &["CONFigure"]) => Some(format!("\"{}\"", self.function.name)),
            () if query && matches(head, &["[SENSe]", "FUNCtion"]) => Some(format!("\"{}\"", self.function.name)),
            () if !query && matches(head, &["[SENSe]", "FUNCtion"]) => {
                match self.function_named(parameter) {
                    Some(f) => self.select(f),
                    None => self.push_error(-224, "Illegal parameter value"),
                }
                None
            }
            () if query && self.function_after(head, &["MEASure"]).is_some() => {
                let f = self.function_after(head, &["MEASure"])?;
                self.select(f);
                let value = self.measure(wire);
                Some(nr3(value))
            }
            () if !query && self.function_after(head, &["CONFigure"]).is_some() => {
                let f = self.function_after(head, &["CONFigure"])?;
                self.select(f);
                None
            }
            () if !query && matches(head, &["INITiate", "[IMMediate]"]) => {
                self.measure(wire);
                None
            }
            () if query && matches(head, &["READ"]) => {
                let value = self.measure(wire);
                Some(nr3(value))
            }
            () if query && matches(head, &["FETCh"]) => match self.last {
                Some(v) => Some(nr3(v)),
                None => {
                    self.push_error(-230, "Data corrupt or stale");
                    None
                }
            },
            () if query && matches(head, &["UNIT", "TEMPerature"]) => Some(self.unit.to_string()),
            () if !query && matches(head, &["UNIT", "TEMPerature"]) => {
                match parameter.to_ascii_uppercase().as_str() {
                    "C" | "CEL" => self.unit = 'C',
                    "F" | "FAR" => self.unit = 'F',
                    "K" => self.unit = 'K',
                    _ => self.push_error(-224, "Illegal parameter value"),
                }
                None
            }
            () if query && matches(head, &["[SENSe]", "TEMPerature", "TCouple", "TYPE"]) => Some(self.tc_type.into()),
            () if !query && matches(head, &["[SENSe]", "TEMPerature", "TCouple", "TYPE"]) => {
                match TC_TYPES.iter().find(|t| t.eq_ignore_ascii_case(parameter)) {
                    Some(t) => self.tc_type = t,
                    None => self.push_error(-224, "Illegal parameter value"),
                }
                None
            }
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
        let volt = &crate::models::scpi::PROFILES[0].functions[0];
        assert!(with_function("MEAS:VOLT", &["MEASure"], volt));
        assert!(with_function("measure:voltage:dc", &["MEASure"], volt));
        assert!(!with_function("MEAS:VOLT:AC", &["MEASure"], volt));
    }
}
