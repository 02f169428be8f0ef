//! The declaration file as written: a serde mirror of the RON, read section by section by [`super::load`].

use std::collections::BTreeMap;

use protocols::InstrumentKind;
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::transport::Parity;

#[derive(Debug, Deserialize)]
#[serde(rename = "Instrument", deny_unknown_fields)]
pub(super) struct Header {
    pub format: u32,
    pub name: String,
    #[serde(default)]
    pub source: String,
    pub kind: InstrumentKind,
    pub line: LineFile,
    #[serde(default)]
    pub settings: BTreeMap<String, SettingFile>,
    #[serde(default)]
    pub variants: BTreeMap<String, BTreeMap<String, String>>,
    pub request: RequestFile,
    pub frame: FrameFile,
    #[serde(default)]
    pub classes: Vec<ClassFile>,
    #[serde(default)]
    pub silence: SilenceFile,
    #[expect(dead_code, reason = "read command by command; named here so unknown top-level fields are refused")]
    pub commands: IgnoredAny,
    pub identify: IdentifyFile,
    #[serde(default)]
    pub init: Vec<CallFile>,
    #[serde(default)]
    pub safe_state: Vec<CallFile>,
    #[serde(default)]
    pub dispense: Option<DispenseFile>,
    #[serde(default)]
    pub hold_temperature: Option<HoldFile>,
    #[serde(default)]
    pub weigh: Option<WeighFile>,
    #[serde(default)]
    pub read_temperature: Option<ReadFile>,
}

#[derive(Debug, Deserialize)]
#[serde(rename = "Line", deny_unknown_fields)]
pub(super) struct LineFile {
    pub baud: u32,
    #[serde(default = "eight")]
    pub data_bits: u8,
    #[serde(default = "no_parity")]
    pub parity: Parity,
    #[serde(default = "one")]
    pub stop_bits: u8,
    #[serde(default)]
    pub timeout: Option<String>,
}

fn eight() -> u8 {
    8
}

fn no_parity() -> Parity {
    Parity::None
}

fn one() -> u8 {
    1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename = "SettingKind")]
pub(super) enum SettingKind {
    Number,
    Int,
    Text,
}

#[derive(Debug, Deserialize)]
#[serde(rename = "Setting", deny_unknown_fields)]
pub(super) struct SettingFile {
    pub kind: SettingKind,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
    #[serde(default)]
    pub default: Option<String>,
    #[serde(default)]
    pub unit: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename = "Request", deny_unknown_fields)]
pub(super) struct RequestFile {
    #[serde(default)]
    pub prefix: String,
    pub terminator: String,
    #[serde(default)]
    pub checksum: Option<ChecksumFile>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename = "Checksum")]
pub(super) enum ChecksumKind {
    Sum8,
    Xor8,
    Crc16Modbus,
    Crc16Ccitt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename = "Encoding")]
pub(super) enum EncodingFile {
    Hex,
    Raw,
}

#[derive(Debug, Deserialize)]
#[serde(rename = "ChecksumSpec", deny_unknown_fields)]
pub(super) struct ChecksumFile {
    pub kind: ChecksumKind,
    pub encoding: EncodingFile,
}

#[derive(Debug, Deserialize)]
#[serde(rename = "Frame")]
pub(super) enum FrameFile {
    Terminated {
        end: String,
        #[serde(default)]
        max: Option<usize>,
        #[serde(default)]
        checksum: Option<ChecksumFile>,
    },
    Delimited {
        start: String,
        end: String,
        #[serde(default)]
        max: Option<usize>,
        #[serde(default)]
        checksum: Option<ChecksumFile>,
    },
    Fixed(usize),
    Prompt {
        prompts: Vec<String>,
        #[serde(default)]
        max: Option<usize>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(rename = "Class", deny_unknown_fields)]
pub(super) struct ClassFile {
    pub reply: String,
    pub is: ClassKindFile,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename = "ClassKind")]
pub(super) enum ClassKindFile {
    Busy(String),
    Error(String),
    Alarm(String),
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename = "Silence")]
pub(super) enum SilenceFile {
    #[default]
    Timeout,
    UnknownCommand,
}

#[derive(Debug, Deserialize)]
#[serde(rename = "Command", deny_unknown_fields)]
pub(super) struct CommandFile {
    pub send: String,
    #[serde(default)]
    pub reply: Option<String>,
    #[serde(default)]
    pub lines: Option<LinesFile>,
    #[serde(default)]
    pub values: BTreeMap<String, ValueFile>,
    #[serde(default)]
    pub acts: bool,
    #[serde(default)]
    pub read_back: Option<FieldFile>,
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub sim: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename = "Lines")]
pub(super) enum LinesFile {
    Until(String),
    Count(u16),
}

#[derive(Debug, Deserialize)]
#[serde(rename = "Value", deny_unknown_fields)]
pub(super) struct ValueFile {
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
    #[serde(default)]
    pub scale: Option<f64>,
    #[serde(default)]
    pub one_of: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename = "Identify", deny_unknown_fields)]
pub(super) struct IdentifyFile {
    pub command: String,
    pub model: String,
    #[serde(default)]
    pub firmware: Option<String>,
    #[serde(default)]
    pub serial: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename = "Call", deny_unknown_fields)]
pub(super) struct CallFile {
    pub command: String,
    #[serde(default)]
    pub args: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename = "Arg", deny_unknown_fields)]
pub(super) struct ArgFile {
    pub command: String,
    pub arg: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename = "Field", deny_unknown_fields)]
pub(super) struct FieldFile {
    pub command: String,
    pub field: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename = "Running", deny_unknown_fields)]
pub(super) struct RunningFile {
    pub command: String,
    pub field: String,
    pub running: Vec<String>,
    pub idle: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename = "Medium")]
pub(super) enum MediumFile {
    Liquid,
    Gas(String),
}

#[derive(Debug, Deserialize)]
#[serde(rename = "Dispense")]
#[expect(clippy::large_enum_variant, reason = "one per declaration, read once")]
pub(super) enum DispenseFile {
    Run {
        #[serde(default)]
        clear: Option<CallFile>,
        rate: ArgFile,
        rate_value: String,
        volume: ArgFile,
        start: CallFile,
        stop: CallFile,
        running: RunningFile,
        delivered: FieldFile,
        #[serde(default)]
        poll: Option<String>,
        reservoir: String,
    },
    Flow {
        set: ArgFile,
        rate: String,
        scale: f64,
        read: FieldFile,
        #[serde(default)]
        poll: Option<String>,
        medium: MediumFile,
        reservoir: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(rename = "HoldTemperature", deny_unknown_fields)]
pub(super) struct HoldFile {
    pub set: ArgFile,
    #[serde(default)]
    pub start: Option<CallFile>,
    #[serde(default)]
    pub stop: Option<CallFile>,
    pub read: FieldFile,
    #[serde(default)]
    pub poll: Option<String>,
    pub tolerance: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename = "Weigh", deny_unknown_fields)]
pub(super) struct WeighFile {
    pub read: FieldFile,
    #[serde(default)]
    pub unit: Option<String>,
    pub settle: String,
    #[serde(default)]
    pub zero: Option<CallFile>,
}

#[derive(Debug, Deserialize)]
#[serde(rename = "ReadTemperature", deny_unknown_fields)]
pub(super) struct ReadFile {
    pub read: FieldFile,
}
