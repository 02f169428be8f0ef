//! Physical quantities in lab units.
//!
//! Files write quantities as strings with a unit (`"250 uL"`, `"1.5 mL"`, `"30 min"`, `"80 degC"`), so a value can
//! never be read in the wrong unit. Inside the program every dimension has one canonical unit (microlitres,
//! degrees Celsius, seconds, revolutions per minute, nanometres) and typed newtypes ([`Volume`], [`Temperature`],
//! [`Duration`], [`Speed`], [`Wavelength`]) make passing a temperature where a volume is expected a compile error.

use std::fmt;

/// A physical dimension. Each has one canonical unit, used everywhere inside the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dimension {
    /// Canonical unit: microlitre (`uL`).
    Volume,
    /// Canonical unit: degree Celsius (`degC`).
    Temperature,
    /// Canonical unit: second (`s`).
    Duration,
    /// Canonical unit: revolutions per minute (`rpm`).
    RotationalSpeed,
    /// Canonical unit: nanometre (`nm`).
    Wavelength,
    /// Canonical unit: molar (`M`, mol/L).
    Concentration,
    /// Canonical unit: gram (`g`).
    Mass,
    /// A pure number, such as an absorbance (`AU`) or a ratio (`1`).
    Dimensionless,
}

impl Dimension {
    /// The canonical unit's symbol.
    pub fn canonical_symbol(self) -> &'static str {
        match self {
            Dimension::Volume => "uL",
            Dimension::Temperature => "degC",
            Dimension::Duration => "s",
            Dimension::RotationalSpeed => "rpm",
            Dimension::Wavelength => "nm",
            Dimension::Concentration => "M",
            Dimension::Mass => "g",
            Dimension::Dimensionless => "1",
        }
    }

    /// A lower-case name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Dimension::Volume => "volume",
            Dimension::Temperature => "temperature",
            Dimension::Duration => "duration",
            Dimension::RotationalSpeed => "rotational speed",
            Dimension::Wavelength => "wavelength",
            Dimension::Concentration => "concentration",
            Dimension::Mass => "mass",
            Dimension::Dimensionless => "dimensionless number",
        }
    }

    /// Example units, for hints.
    pub fn examples(self) -> &'static str {
        match self {
            Dimension::Volume => "uL, mL, nL",
            Dimension::Temperature => "degC, K",
            Dimension::Duration => "s, min, h, ms",
            Dimension::RotationalSpeed => "rpm",
            Dimension::Wavelength => "nm",
            Dimension::Concentration => "M, mM",
            Dimension::Mass => "g, mg, kg",
            Dimension::Dimensionless => "1, AU",
        }
    }
}

/// A unit: a symbol and how to convert it to its dimension's canonical unit (`canonical = value * scale + offset`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Unit {
    /// The symbol as written in files.
    pub symbol: &'static str,
    /// The dimension measured.
    pub dimension: Dimension,
    scale: f64,
    offset: f64,
}

const UNITS: &[Unit] = &[
    Unit { symbol: "uL", dimension: Dimension::Volume, scale: 1.0, offset: 0.0 },
    Unit { symbol: "µL", dimension: Dimension::Volume, scale: 1.0, offset: 0.0 },
    Unit { symbol: "nL", dimension: Dimension::Volume, scale: 1e-3, offset: 0.0 },
    Unit { symbol: "mL", dimension: Dimension::Volume, scale: 1e3, offset: 0.0 },
    Unit { symbol: "degC", dimension: Dimension::Temperature, scale: 1.0, offset: 0.0 },
    Unit { symbol: "°C", dimension: Dimension::Temperature, scale: 1.0, offset: 0.0 },
    Unit { symbol: "K", dimension: Dimension::Temperature, scale: 1.0, offset: -273.15 },
    Unit { symbol: "s", dimension: Dimension::Duration, scale: 1.0, offset: 0.0 },
    Unit { symbol: "ms", dimension: Dimension::Duration, scale: 1e-3, offset: 0.0 },
    Unit { symbol: "min", dimension: Dimension::Duration, scale: 60.0, offset: 0.0 },
    Unit { symbol: "h", dimension: Dimension::Duration, scale: 3600.0, offset: 0.0 },
    Unit { symbol: "rpm", dimension: Dimension::RotationalSpeed, scale: 1.0, offset: 0.0 },
    Unit { symbol: "nm", dimension: Dimension::Wavelength, scale: 1.0, offset: 0.0 },
    Unit { symbol: "M", dimension: Dimension::Concentration, scale: 1.0, offset: 0.0 },
    Unit { symbol: "mM", dimension: Dimension::Concentration, scale: 1e-3, offset: 0.0 },
    Unit { symbol: "g", dimension: Dimension::Mass, scale: 1.0, offset: 0.0 },
    Unit { symbol: "mg", dimension: Dimension::Mass, scale: 1e-3, offset: 0.0 },
    Unit { symbol: "kg", dimension: Dimension::Mass, scale: 1e3, offset: 0.0 },
    Unit { symbol: "1", dimension: Dimension::Dimensionless, scale: 1.0, offset: 0.0 },
    Unit { symbol: "AU", dimension: Dimension::Dimensionless, scale: 1.0, offset: 0.0 },
];

impl Unit {
    /// Looks a unit up by its symbol.
    pub fn parse(symbol: &str) -> Option<Unit> {
        UNITS.iter().find(|u| u.symbol == symbol).copied()
    }

    /// All known unit symbols, for hints.
    pub fn symbols() -> impl Iterator<Item = &'static str> {
        UNITS.iter().map(|u| u.symbol)
    }

    /// Converts a value in this unit to the canonical unit.
    pub fn to_canonical(&self, value: f64) -> f64 {
        value * self.scale + self.offset
    }

    /// Converts a value in the canonical unit to this unit.
    pub fn from_canonical(&self, value: f64) -> f64 {
        (value - self.offset) / self.scale
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.symbol)
    }
}

/// A value with a dimension, held in the dimension's canonical unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantity {
    /// The value in the canonical unit of `dimension`.
    pub value: f64,
    /// What the value measures.
    pub dimension: Dimension,
}

/// Why a quantity string did not parse.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QuantityError {
    /// The number part is missing or malformed.
    #[error("`{0}` does not start with a number")]
    BadNumber(String),
    /// The unit is missing.
    #[error("`{0}` has no unit")]
    MissingUnit(String),
    /// The unit is not one this program knows.
    #[error("unknown unit `{0}`")]
    UnknownUnit(String),
}

impl Quantity {
    /// Parses `"250 uL"`, `"1.5mL"` or `"-4 degC"`.
    pub fn parse(text: &str) -> Result<Quantity, QuantityError> {
        let t = text.trim();
        let split = number_prefix_len(t);
        let (num, unit) = t.split_at(split);
        let value: f64 = num.parse().map_err(|_| QuantityError::BadNumber(t.to_owned()))?;
        let unit = unit.trim();
        if unit.is_empty() {
            return Err(QuantityError::MissingUnit(t.to_owned()));
        }
        let unit = Unit::parse(unit).ok_or_else(|| QuantityError::UnknownUnit(unit.to_owned()))?;
        Ok(Quantity { value: unit.to_canonical(value), dimension: unit.dimension })
    }

    /// A quantity from a value in the canonical unit.
    pub fn new(value: f64, dimension: Dimension) -> Self {
        Quantity { value, dimension }
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", trim_float(self.value), self.dimension.canonical_symbol())
    }
}

/// The length of the longest prefix of `t` that reads as a decimal number (`-1.5e3` in `-1.5e3 uL`).
fn number_prefix_len(t: &str) -> usize {
    let b = t.as_bytes();
    let digits = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        i
    };
    let mut i = 0;
    if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
        i += 1;
    }
    i = digits(i);
    if i < b.len() && b[i] == b'.' {
        i = digits(i + 1);
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'-' || b[j] == b'+') {
            j += 1;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            i = digits(j);
        }
    }
    i
}

/// Formats a float without trailing zeros (`250`, `1.5`, `0.125`).
pub fn trim_float(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.6}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

macro_rules! newtype {
    ($(#[$doc:meta])* $name:ident, $dim:expr, $unit:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub f64);

        impl $name {
            /// The dimension this type measures.
            pub const DIMENSION: Dimension = $dim;

            /// The value in the canonical unit.
            pub fn get(self) -> f64 {
                self.0
            }
        }

        impl TryFrom<Quantity> for $name {
            type Error = Dimension;
            fn try_from(q: Quantity) -> Result<Self, Dimension> {
                if q.dimension == $dim { Ok($name(q.value)) } else { Err(q.dimension) }
            }
        }

        impl From<$name> for Quantity {
            fn from(v: $name) -> Quantity {
                Quantity::new(v.0, $dim)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{} {}", trim_float(self.0), $unit)
            }
        }
    };
}

newtype!(
    /// A volume in microlitres.
    Volume, Dimension::Volume, "uL"
);
newtype!(
    /// A temperature in degrees Celsius.
    Temperature, Dimension::Temperature, "degC"
);
newtype!(
    /// A span of lab time in seconds.
    Duration, Dimension::Duration, "s"
);
newtype!(
    /// A rotational speed in revolutions per minute.
    Speed, Dimension::RotationalSpeed, "rpm"
);
newtype!(
    /// A wavelength in nanometres.
    Wavelength, Dimension::Wavelength, "nm"
);
newtype!(
    /// A mass in grams.
    Mass, Dimension::Mass, "g"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quantities_into_canonical_units() {
        assert_eq!(Quantity::parse("250 uL").unwrap(), Quantity::new(250.0, Dimension::Volume));
        assert_eq!(Quantity::parse("1.5mL").unwrap(), Quantity::new(1500.0, Dimension::Volume));
        assert_eq!(Quantity::parse("30 min").unwrap(), Quantity::new(1800.0, Dimension::Duration));
        assert_eq!(Quantity::parse("-4 degC").unwrap(), Quantity::new(-4.0, Dimension::Temperature));
        assert_eq!(Quantity::parse("1e3 ms").unwrap(), Quantity::new(1.0, Dimension::Duration));
        let k = Quantity::parse("300 K").unwrap();
        assert!((k.value - 26.85).abs() < 1e-9);
    }

    #[test]
    fn rejects_bad_quantities() {
        assert_eq!(Quantity::parse("uL"), Err(QuantityError::BadNumber("uL".into())));
        assert_eq!(Quantity::parse("250"), Err(QuantityError::MissingUnit("250".into())));
        assert_eq!(Quantity::parse("250 ul"), Err(QuantityError::UnknownUnit("ul".into())));
        assert_eq!(Quantity::parse("2 eggs"), Err(QuantityError::UnknownUnit("eggs".into())));
    }

    #[test]
    fn newtypes_check_dimensions() {
        let v: Volume = Quantity::parse("2 mL").unwrap().try_into().unwrap();
        assert_eq!(v, Volume(2000.0));
        assert_eq!(v.to_string(), "2000 uL");
        let t: Result<Temperature, _> = Quantity::parse("2 mL").unwrap().try_into();
        assert_eq!(t, Err(Dimension::Volume));
    }
}
