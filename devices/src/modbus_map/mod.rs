//! Register maps of Modbus instruments: where each value lives, how it is encoded, and what writes run and stop it.
//!
//! Temperature controllers put the same few values in different places, in different encodings: a Eurotherm 3200
//! keeps its process value as an IEEE float at 0x8002 (the float copy of parameter 1), an Omron E5CC as a scaled
//! integer at 0x2000 whose decimals sit in another register, a Watlow EZ-ZONE PM as a float with its low word first,
//! in degrees Fahrenheit. A [`ModbusMap`] says so for one model: its points (table, address, data type, word order,
//! scale, offset, unit, access, write function, whether it is kept in EEPROM), named write sequences (run, stop,
//! set up), how to check the instrument's identity, and which points and sequences hold a temperature. The driver
//! ([`crate::drivers::modbus`]) and the simulator ([`crate::sim`]) both work from the map, so a mistake in a map
//! shows in simulation as it would on the hardware.
//!
//! Maps are RON files (`*.modbus.ron`); [`load_map`] reads one into a checked [`ModbusMap`], reporting every problem
//! with its place in the file. The maps in `devices/maps/` are built in by name ([`BUILT_IN`]); a lab file may also
//! name its own map file. [`Point::decode`] and [`Point::encode`] convert between register words and engineering
//! values; they are pure, and the tests run them against the manuals' examples.

mod file;
mod load;

use std::collections::BTreeMap;
use std::sync::Arc;

use protocols::diagnostic::SourceFile;

use crate::transport::{LineSettings, Parity, Reconnect};

pub use load::{BUILT_IN, codes, load_map, resolve};

/// A Modbus data table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize)]
pub enum Table {
    /// Coils: single bits, read with function 1, written with 5 or 15.
    Coil,
    /// Discrete inputs: read-only bits, function 2.
    Discrete,
    /// Input registers: read-only words, function 4.
    Input,
    /// Holding registers: words, read with function 3, written with 6 or 16.
    Holding,
}

impl Table {
    /// Whether the master can write the table.
    pub fn writable(self) -> bool {
        matches!(self, Table::Coil | Table::Holding)
    }

    /// Whether the table holds bits rather than 16-bit words.
    pub fn bits(self) -> bool {
        matches!(self, Table::Coil | Table::Discrete)
    }

    /// The table's name in map files.
    pub fn name(self) -> &'static str {
        match self {
            Table::Coil => "Coil",
            Table::Discrete => "Discrete",
            Table::Input => "Input",
            Table::Holding => "Holding",
        }
    }
}

/// How a point's value is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub enum Kind {
    /// One register, unsigned.
    U16,
    /// One register, two's complement.
    I16,
    /// Two registers, unsigned.
    U32,
    /// Two registers, two's complement.
    I32,
    /// Two registers, an IEEE 754 single.
    F32,
    /// One bit (0..=15) of a register: a flag of a status or command word.
    Bit(u8),
    /// A coil or discrete input.
    Bool,
}

impl Kind {
    /// How many registers (or bits) the value takes.
    pub fn width(self) -> u16 {
        match self {
            Kind::U32 | Kind::I32 | Kind::F32 => 2,
            _ => 1,
        }
    }
}

/// The order of the four bytes of a 32-bit value, `A` the most significant: `ABCD` sends the high word first
/// (the Modbus convention), `CDAB` the low word first (Watlow's default), `BADC` and `DCBA` swap the bytes too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
pub enum WordOrder {
    /// High word first, bytes in order.
    #[default]
    ABCD,
    /// Low word first.
    CDAB,
    /// High word first, the bytes of each word swapped.
    BADC,
    /// Low word first, the bytes of each word swapped.
    DCBA,
}

/// Who may read and write a point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
pub enum Access {
    /// Read only.
    #[default]
    Read,
    /// Read and written.
    ReadWrite,
    /// Written only (a command register, such as Omron's operation command).
    Write,
}

/// How a raw value scales to engineering units.
#[derive(Debug, Clone, PartialEq)]
pub enum Scale {
    /// Value = raw × factor + offset.
    Fixed(f64),
    /// Value = raw ÷ 10^decimals + offset, the decimals read from another point (a display decimal-point
    /// register).
    Decimals(String),
}

/// A temperature unit a point may be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemperatureUnit {
    /// Degrees Celsius (`degC`).
    Celsius,
    /// Degrees Fahrenheit (`degF`).
    Fahrenheit,
    /// Kelvin (`K`).
    Kelvin,
}

impl TemperatureUnit {
    /// The unit a map writes (`degC`, `degF`, `K`), if `text` is one.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "degC" => Some(TemperatureUnit::Celsius),
            "degF" => Some(TemperatureUnit::Fahrenheit),
            "K" => Some(TemperatureUnit::Kelvin),
            _ => None,
        }
    }

    /// A temperature in this unit, in degrees Celsius.
    pub fn to_celsius(self, v: f64) -> f64 {
        match self {
            TemperatureUnit::Celsius => v,
            TemperatureUnit::Fahrenheit => (v - 32.0) * 5.0 / 9.0,
            TemperatureUnit::Kelvin => v - 273.15,
        }
    }

    /// A temperature in degrees Celsius, in this unit.
    pub fn from_celsius(self, c: f64) -> f64 {
        match self {
            TemperatureUnit::Celsius => c,
            TemperatureUnit::Fahrenheit => c * 9.0 / 5.0 + 32.0,
            TemperatureUnit::Kelvin => c + 273.15,
        }
    }
}

/// One value in an instrument's Modbus tables.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Its name in the map.
    pub name: String,
    /// The table.
    pub table: Table,
    /// The wire address (0-based) of its first register or bit.
    pub address: u16,
    /// The encoding.
    pub kind: Kind,
    /// The byte order of a 32-bit value.
    pub order: WordOrder,
    /// The scale.
    pub scale: Scale,
    /// Added after scaling.
    pub offset: f64,
    /// The unit, as written in the map.
    pub unit: Option<String>,
    /// The unit, if it is a temperature.
    pub temperature: Option<TemperatureUnit>,
    /// Who may read and write it.
    pub access: Access,
    /// Whether it is written with the multiple-write function (16 for registers, 15 for coils) rather than the
    /// single-write one (6, 5).
    pub multiple: bool,
    /// Whether the instrument keeps it in EEPROM (with a limited number of write cycles): the driver then reads it
    /// first and writes it only if it differs.
    pub eeprom: bool,
    /// The value the simulator starts with, in engineering units.
    pub initial: f64,
    /// The values the instrument accepts, in engineering units; it refuses others with exception 3.
    pub range: Option<(f64, f64)>,
}

impl Point {
    /// A read-write point of `kind` at `address` of `table`, high word first, unscaled, without unit or range.
    pub fn new(name: &str, table: Table, address: u16, kind: Kind) -> Self {
        Point {
            name: name.to_owned(),
            table,
            address,
            kind,
            order: WordOrder::ABCD,
            scale: Scale::Fixed(1.0),
            offset: 0.0,
            unit: None,
            temperature: None,
            access: Access::ReadWrite,
            multiple: kind.width() == 2,
            eeprom: false,
            initial: 0.0,
            range: None,
        }
    }

    /// Whether the master may write it.
    pub fn writable(&self) -> bool {
        self.access != Access::Read
    }

    /// Whether the master may read it.
    pub fn readable(&self) -> bool {
        self.access != Access::Write
    }

    /// The raw number of the registers `words` (two's complement and floats decoded, the word order applied).
    pub fn raw(&self, words: &[u16]) -> Option<f64> {
        let w0 = *words.first()?;
        let joined = || -> Option<u32> {
            let w1 = *words.get(1)?;
            let swap = |w: u16| w.swap_bytes();
            Some(match self.order {
                WordOrder::ABCD => (u32::from(w0) << 16) | u32::from(w1),
                WordOrder::CDAB => (u32::from(w1) << 16) | u32::from(w0),
                WordOrder::BADC => (u32::from(swap(w0)) << 16) | u32::from(swap(w1)),
                WordOrder::DCBA => (u32::from(swap(w1)) << 16) | u32::from(swap(w0)),
            })
        };
        Some(match self.kind {
            Kind::U16 => f64::from(w0),
            Kind::I16 => f64::from(w0 as i16),
            Kind::U32 => f64::from(joined()?),
            Kind::I32 => f64::from(joined()? as i32),
            Kind::F32 => f64::from(f32::from_bits(joined()?)),
            Kind::Bit(n) => f64::from((w0 >> n) & 1),
            Kind::Bool => f64::from(u8::from(w0 != 0)),
        })
    }

    /// The engineering value of `words` (bits as 0 and 1), given the decimals where the scale reads them.
    pub fn decode(&self, words: &[u16], decimals: u16) -> Option<f64> {
        let raw = self.raw(words)?;
        let v = match &self.scale {
            Scale::Fixed(f) => raw * f,
            Scale::Decimals(_) => raw / 10f64.powi(i32::from(decimals.min(9))),
        };
        let v = v + self.offset;
        v.is_finite().then_some(v)
    }

    /// The registers (or a single bit as 0 or 1) that hold `value`, given the decimals where the scale reads them;
    /// an error says why the value cannot be encoded. A `Bit` point gives the register with only its bit set or
    /// clear; the driver merges it with the register's other bits.
    pub fn encode(&self, value: f64, decimals: u16) -> Result<Vec<u16>, String> {
        if !value.is_finite() {
            return Err(format!("{value} is not a number"));
        }
        let raw = match &self.scale {
            Scale::Fixed(f) => (value - self.offset) / f,
            Scale::Decimals(_) => (value - self.offset) * 10f64.powi(i32::from(decimals.min(9))),
        };
        let whole = || -> Result<f64, String> {
            let r = raw.round();
            if (r - raw).abs() > 1e-6 * raw.abs().max(1.0) {
                Err(format!("{value} needs a finer resolution than the point has"))
            } else {
                Ok(r)
            }
        };
        let fits = |r: f64, lo: f64, hi: f64| -> Result<f64, String> {
            if (lo..=hi).contains(&r) { Ok(r) } else { Err(format!("{value} is outside what the point holds")) }
        };
        let split = |bits: u32| -> Vec<u16> {
            let (hi, lo) = ((bits >> 16) as u16, bits as u16);
            match self.order {
                WordOrder::ABCD => vec![hi, lo],
                WordOrder::CDAB => vec![lo, hi],
                WordOrder::BADC => vec![hi.swap_bytes(), lo.swap_bytes()],
                WordOrder::DCBA => vec![lo.swap_bytes(), hi.swap_bytes()],
            }
        };
        Ok(match self.kind {
            Kind::U16 => vec![fits(whole()?, 0.0, 65_535.0)? as u16],
            Kind::I16 => vec![fits(whole()?, -32_768.0, 32_767.0)? as i16 as u16],
            Kind::U32 => split(fits(whole()?, 0.0, f64::from(u32::MAX))? as u32),
            Kind::I32 => split(fits(whole()?, f64::from(i32::MIN), f64::from(i32::MAX))? as i32 as u32),
            Kind::F32 => split((raw as f32).to_bits()),
            Kind::Bit(n) => vec![u16::from(fits(whole()?, 0.0, 1.0)? == 1.0) << n],
            Kind::Bool => vec![u16::from(fits(whole()?, 0.0, 1.0)? == 1.0)],
        })
    }

    /// A value of this point in degrees Celsius, if its unit is a temperature.
    pub fn to_celsius(&self, v: f64) -> Option<f64> {
        self.temperature.map(|u| u.to_celsius(v))
    }

    /// A temperature in degrees Celsius in this point's unit, if its unit is a temperature.
    pub fn from_celsius(&self, c: f64) -> Option<f64> {
        self.temperature.map(|u| u.from_celsius(c))
    }
}

/// How the driver checks that the instrument on the line is the one the map describes.
#[derive(Debug, Clone, PartialEq)]
pub enum Identity {
    /// It does not: the map's model has no identity a master can read (most temperature controllers).
    None,
    /// Function 43/14 (read device identification, basic objects): the product code must start with `product`,
    /// and the vendor name be `vendor` if given.
    Fc43 {
        /// The vendor name, object 0.
        vendor: Option<String>,
        /// The start of the product code, object 1.
        product: String,
    },
    /// A register must hold a value (a model code).
    Register {
        /// The point to read.
        point: String,
        /// The value it must hold.
        equals: f64,
    },
}

/// One write of a sequence: a point and its engineering value.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The point.
    pub point: String,
    /// The value.
    pub value: f64,
}

/// Which points and sequences hold and control a temperature.
#[derive(Debug, Clone, PartialEq)]
pub struct TemperatureBinding {
    /// The process value, a temperature.
    pub pv: String,
    /// The set point, a writable temperature.
    pub sp: String,
    /// The sequence that sets the controller up for remote control, run at initialization.
    pub init: Option<String>,
    /// The sequence that starts control.
    pub run: String,
    /// The sequence that stops it (heating off): also the safe state.
    pub stop: String,
}

/// A model's serial line as its manual gives the factory setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapLine {
    /// Bits per second.
    pub baud: u32,
    /// Parity.
    pub parity: Parity,
    /// Stop bits.
    pub stop_bits: u8,
}

/// A checked register map.
#[derive(Debug, Clone, PartialEq)]
pub struct ModbusMap {
    /// The model it describes, such as `Eurotherm 3200`.
    pub name: String,
    /// Where its addresses come from.
    pub source: String,
    /// The factory line settings.
    pub line: MapLine,
    /// How to check identity.
    pub identity: Identity,
    /// The points, by name.
    pub points: BTreeMap<String, Point>,
    /// The write sequences, by name.
    pub sequences: BTreeMap<String, Vec<Step>>,
    /// The temperature binding.
    pub temperature: TemperatureBinding,
    /// The file it was read from.
    pub file: Arc<SourceFile>,
}

impl ModbusMap {
    /// The point called `name`; the loader checked every name the map refers to.
    pub fn point(&self, name: &str) -> Option<&Point> {
        self.points.get(name)
    }

    /// The steps of the sequence called `name` (none if it does not exist).
    pub fn sequence(&self, name: &str) -> &[Step] {
        self.sequences.get(name).map_or(&[], Vec::as_slice)
    }

    /// The point that holds `point`'s decimals, if its scale reads them from one.
    pub fn decimals_of(&self, point: &Point) -> Option<&Point> {
        match &point.scale {
            Scale::Decimals(name) => self.points.get(name),
            Scale::Fixed(_) => None,
        }
    }

    /// The point covering `address` of `table`, if any.
    pub fn point_at(&self, table: Table, address: u16) -> Option<&Point> {
        self.points.values().find(|p| {
            p.table == table
                && address >= p.address
                && u32::from(address) < u32::from(p.address) + u32::from(p.kind.width())
        })
    }

    /// The line settings the instrument ships with, a one-second reply timeout and the default reconnection.
    pub fn line_settings(&self) -> LineSettings {
        LineSettings {
            baud: self.line.baud,
            data_bits: 8,
            parity: self.line.parity,
            stop_bits: self.line.stop_bits,
            timeout: std::time::Duration::from_secs(1),
            reconnect: Reconnect::DEFAULT,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(kind: Kind, order: WordOrder, scale: Scale) -> Point {
        Point { order, scale, ..Point::new("p", Table::Holding, 0, kind) }
    }

    #[test]
    fn integers_scale_by_a_factor_or_by_decimals() {
        let tenths = point(Kind::I16, WordOrder::ABCD, Scale::Fixed(0.1));
        assert_eq!(tenths.decode(&[250], 0), Some(25.0));
        assert_eq!(tenths.decode(&[(-105_i16) as u16], 0), Some(-10.5));
        assert_eq!(tenths.encode(-10.5, 0).unwrap(), [(-105_i16) as u16]);
        let dp = point(Kind::I16, WordOrder::ABCD, Scale::Decimals("dp".into()));
        // Omron: "values ... expressed in hexadecimal, ignoring the decimal point position": 25.0 with one decimal.
        assert_eq!(dp.decode(&[0x00FA], 1), Some(25.0));
        assert_eq!(dp.encode(25.0, 1).unwrap(), [0x00FA]);
        assert!(dp.encode(25.05, 1).is_err(), "finer than a tenth");
        assert!(point(Kind::U16, WordOrder::ABCD, Scale::Fixed(1.0)).encode(-1.0, 0).is_err());
    }

    #[test]
    fn floats_follow_their_word_order() {
        // 25.0 is 0x41C8_0000.
        let abcd = point(Kind::F32, WordOrder::ABCD, Scale::Fixed(1.0));
        assert_eq!(abcd.encode(25.0, 0).unwrap(), [0x41C8, 0x0000]);
        assert_eq!(abcd.decode(&[0x41C8, 0x0000], 0), Some(25.0));
        let cdab = point(Kind::F32, WordOrder::CDAB, Scale::Fixed(1.0));
        assert_eq!(cdab.encode(25.0, 0).unwrap(), [0x0000, 0x41C8]);
        assert_eq!(cdab.decode(&[0x0000, 0x41C8], 0), Some(25.0));
        let badc = point(Kind::F32, WordOrder::BADC, Scale::Fixed(1.0));
        assert_eq!(badc.encode(25.0, 0).unwrap(), [0xC841, 0x0000]);
        let dcba = point(Kind::I32, WordOrder::DCBA, Scale::Fixed(1.0));
        assert_eq!(dcba.encode(-2.0, 0).unwrap(), [0xFEFF, 0xFFFF]);
        assert_eq!(dcba.decode(&[0xFEFF, 0xFFFF], 0), Some(-2.0));
    }

    #[test]
    fn bits_and_temperatures() {
        let run = point(Kind::Bit(8), WordOrder::ABCD, Scale::Fixed(1.0));
        assert_eq!(run.decode(&[0x0101], 0), Some(1.0));
        assert_eq!(run.encode(1.0, 0).unwrap(), [0x0100]);
        assert!(run.encode(2.0, 0).is_err());
        assert_eq!(TemperatureUnit::Fahrenheit.to_celsius(212.0), 100.0);
        assert!((TemperatureUnit::Fahrenheit.from_celsius(45.0) - 113.0).abs() < 1e-9);
        assert_eq!(TemperatureUnit::parse("degF"), Some(TemperatureUnit::Fahrenheit));
    }
}
