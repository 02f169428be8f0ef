//! SCPI meter models: who each says it is, and the measurement functions it has.
//!
//! A simulator that introduces itself as a model must answer that model's core commands: for the Keithley Model
//! 2000, `:CONFigure:<function>`, `:MEASure:<function>?`, `:READ?` and `:FETCh?` for each of its functions (its
//! user's manual, section 5 and the SCPI command tables) [M]. A profile lists them; the simulator answers them all
//! and the driver uses only the functions and commands its model has.

/// A measurement function, with its SCPI keyword (long form, short form in capitals) and its unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Function {
    /// The function as `CONF?` names it, such as `VOLT:DC`.
    pub name: &'static str,
    /// Its keywords, each in long form with the short form in capitals, optional ones in brackets:
    /// `["VOLTage", "[DC]"]` (SCPI's `VOLTage[:DC]`).
    pub keywords: &'static [&'static str],
    /// The unit of its readings.
    pub unit: &'static str,
}

/// A SCPI meter model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScpiProfile {
    /// The manufacturer field of `*IDN?`.
    pub manufacturer: &'static str,
    /// The model field of `*IDN?`, which a lab file names.
    pub model: &'static str,
    /// The measurement functions.
    pub functions: &'static [Function],
    /// Whether the model has `:UNIT:TEMPerature`, so the driver can ask for degrees Celsius.
    pub unit_temperature: bool,
}

impl ScpiProfile {
    /// The function named `name` (`VOLT:DC`), if the model has it.
    pub fn function(&self, name: &str) -> Option<&'static Function> {
        self.functions.iter().find(|f| f.name == name)
    }
}

/// The Keithley Model 2000's functions: DC and AC volts and amps, 2- and 4-wire ohms, frequency, period,
/// temperature (thermocouple), diode test and continuity (Model 2000 user's manual, "Measurement functions").
const MODEL_2000: [Function; 11] = [
    Function { name: "VOLT:DC", keywords: &["VOLTage", "[DC]"], unit: "V" },
    Function { name: "VOLT:AC", keywords: &["VOLTage", "AC"], unit: "V" },
    Function { name: "CURR:DC", keywords: &["CURRent", "[DC]"], unit: "A" },
    Function { name: "CURR:AC", keywords: &["CURRent", "AC"], unit: "A" },
    Function { name: "RES", keywords: &["RESistance"], unit: "ohm" },
    Function { name: "FRES", keywords: &["FRESistance"], unit: "ohm" },
    Function { name: "FREQ", keywords: &["FREQuency"], unit: "Hz" },
    Function { name: "PER", keywords: &["PERiod"], unit: "s" },
    Function { name: "TEMP", keywords: &["TEMPerature"], unit: "degC" },
    Function { name: "DIOD", keywords: &["DIODe"], unit: "V" },
    Function { name: "CONT", keywords: &["CONTinuity"], unit: "ohm" },
];

/// The models the simulator can be.
pub const PROFILES: [ScpiProfile; 1] = [ScpiProfile {
    manufacturer: "KEITHLEY INSTRUMENTS INC.",
    model: "MODEL 2000",
    functions: &MODEL_2000,
    unit_temperature: true,
}];

/// The profile of the model `*IDN?` names `model` (compared without regard to case), if the simulator knows it.
pub fn profile(model: &str) -> Option<&'static ScpiProfile> {
    PROFILES.iter().find(|p| p.model.eq_ignore_ascii_case(model.trim()))
}
