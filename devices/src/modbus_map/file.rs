//! The map file as written: a serde mirror of the RON, read section by section by [`super::load`].

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::{Access, Kind, Table, WordOrder};
use crate::transport::Parity;

#[derive(Debug, Deserialize)]
#[serde(rename = "ModbusMap", deny_unknown_fields)]
pub(super) struct MapHeader {
    pub format: u32,
    pub name: String,
    #[serde(default)]
    pub source: String,
    pub line: LineFile,
    pub identity: IdentityFile,
    #[expect(dead_code, reason = "read point by point; named here so unknown top-level fields are refused")]
    pub points: IgnoredAny,
    #[serde(default)]
    #[expect(dead_code, reason = "read sequence by sequence; named here so unknown top-level fields are refused")]
    pub sequences: Option<IgnoredAny>,
    pub temperature: BindingFile,
}

#[derive(Debug, Deserialize)]
#[serde(rename = "Line", deny_unknown_fields)]
pub(super) struct LineFile {
    pub baud: u32,
    #[serde(default = "no_parity")]
    pub parity: Parity,
    #[serde(default = "one")]
    pub stop_bits: u8,
}

fn no_parity() -> Parity {
    Parity::None
}

fn one() -> u8 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(rename = "Identity")]
pub(super) enum IdentityFile {
    None,
    Fc43 {
        #[serde(default)]
        vendor: Option<String>,
        product: String,
    },
    Register {
        point: String,
        equals: f64,
    },
}

/// Which write function a point is written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename = "Write")]
pub(super) enum WriteFile {
    Single,
    Multiple,
}

#[derive(Debug, Deserialize)]
#[serde(rename = "Point", deny_unknown_fields)]
pub(super) struct PointFile {
    #[serde(default)]
    pub table: Option<Table>,
    #[serde(default)]
    pub address: Option<u32>,
    #[serde(default)]
    pub register: Option<u32>,
    #[serde(default)]
    pub kind: Option<Kind>,
    #[serde(default)]
    pub order: WordOrder,
    #[serde(default)]
    pub scale: Option<f64>,
    #[serde(default)]
    pub decimals_from: Option<String>,
    #[serde(default)]
    pub offset: f64,
    #[serde(default)]
    pub unit: Option<String>,
    #[serde(default)]
    pub access: Access,
    #[serde(default)]
    pub write: Option<WriteFile>,
    #[serde(default)]
    pub eeprom: bool,
    #[serde(default)]
    pub initial: Option<f64>,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename = "Step")]
pub(super) enum StepFile {
    Write { point: String, value: f64 },
}

#[derive(Debug, Deserialize)]
#[serde(rename = "Temperature", deny_unknown_fields)]
pub(super) struct BindingFile {
    pub pv: String,
    pub sp: String,
    #[serde(default)]
    pub init: Option<String>,
    pub run: String,
    pub stop: String,
}
