//! The lab file as serde reads it: a mirror of the RON text, section by section, that [`super::load`] validates into
//! the runtime types.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::transport::Parity;

use super::*;

#[derive(Debug, Deserialize)]
#[serde(rename = "Lab", deny_unknown_fields)]
pub(super) struct LabHeader {
    pub(super) format: u32,
    pub(super) name: String,
    #[serde(default)]
    pub(super) description: String,
    #[expect(dead_code, reason = "read section by section; named here so unknown top-level fields are refused")]
    pub(super) deck: IgnoredAny,
    #[expect(dead_code, reason = "read section by section; named here so unknown top-level fields are refused")]
    pub(super) instruments: IgnoredAny,
    #[serde(default)]
    pub(super) simulation: Option<SimulationFile>,
}

#[derive(Debug, Deserialize)]
#[serde(rename = "Deck", deny_unknown_fields)]
pub(super) struct DeckFile {
    pub(super) safe_z: f64,
    pub(super) rack: Rack,
    pub(super) positions: BTreeMap<String, Point>,
}

#[derive(Debug, Deserialize)]
#[serde(rename = "Simulation", deny_unknown_fields)]
pub(super) struct SimulationFile {
    pub(super) seed: u64,
    #[serde(default = "default_scale")]
    pub(super) time_scale: f64,
    #[serde(default)]
    pub(super) ledger: Option<String>,
}

pub(super) fn default_scale() -> f64 {
    1.0
}

#[derive(Debug, Deserialize)]
#[serde(rename = "Instrument", deny_unknown_fields)]
pub(super) struct InstrumentFile {
    pub(super) driver: DriverFile,
    pub(super) port: PortFile,
    #[serde(default)]
    pub(super) position: Option<String>,
    #[serde(default)]
    pub(super) serial: Option<SerialFile>,
    #[serde(default)]
    pub(super) faults: Option<FaultsFile>,
}

#[derive(Debug, Deserialize)]
#[serde(rename = "Faults", deny_unknown_fields)]
pub(super) struct FaultsFile {
    #[serde(default)]
    pub(super) seed: Option<u64>,
    #[serde(default)]
    pub(super) latency: Option<LatencyFile>,
    #[serde(default)]
    pub(super) no_reply: f64,
    #[serde(default)]
    pub(super) garbled: f64,
    #[serde(default)]
    pub(super) truncated: f64,
    #[serde(default)]
    pub(super) bad_checksum: f64,
    #[serde(default)]
    pub(super) busy: f64,
    #[serde(default)]
    pub(super) firmware_error: f64,
    #[serde(default)]
    pub(super) partial: f64,
    #[serde(default)]
    pub(super) disconnect: Option<DisconnectFile>,
}

#[derive(Debug, Deserialize)]
#[serde(rename = "Latency")]
pub(super) enum LatencyFile {
    Fixed(String),
    Uniform { min: String, max: String },
    Exponential { mean: String },
}

#[derive(Debug, Deserialize)]
#[serde(rename = "Disconnect", deny_unknown_fields)]
pub(super) struct DisconnectFile {
    pub(super) after: u32,
    pub(super) down: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename = "Reconnect", deny_unknown_fields)]
pub(super) struct ReconnectFile {
    pub(super) attempts: u32,
    #[serde(default)]
    pub(super) delay: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename = "Port")]
pub(super) enum PortFile {
    Simulated,
    Simulator(String),
    Serial(String),
}

#[derive(Debug, Deserialize)]
#[serde(rename = "Serial", deny_unknown_fields)]
pub(super) struct SerialFile {
    #[serde(default)]
    pub(super) baud: Option<u32>,
    #[serde(default)]
    pub(super) data_bits: Option<u8>,
    #[serde(default)]
    pub(super) parity: Option<Parity>,
    #[serde(default)]
    pub(super) stop_bits: Option<u8>,
    #[serde(default)]
    pub(super) timeout: Option<String>,
    #[serde(default)]
    pub(super) reconnect: Option<ReconnectFile>,
}

#[derive(Debug, Deserialize)]
#[serde(rename = "Driver", deny_unknown_fields)]
pub(super) enum DriverFile {
    CavroXCalibur {
        address: u8,
        syringe: String,
        #[serde(default)]
        top_speed: Option<u32>,
        #[serde(default)]
        reservoir: String,
        #[serde(default)]
        protocol: CavroProtocol,
    },
    IkaHotplate {
        #[serde(default)]
        model: Option<String>,
        max_temperature: String,
        max_speed: String,
        #[serde(default)]
        tolerance: Option<String>,
        #[serde(default)]
        watchdog: Option<String>,
    },
    OceanFlame {
        integration: String,
        scans: u16,
        calibration: Vec<f64>,
        #[serde(default)]
        pixels: Option<usize>,
    },
    GcodeGantry {
        feed_rate: f64,
        travel: Point,
        grip: f64,
        release: f64,
    },
    MettlerBalance {
        model: String,
        capacity: String,
        #[serde(default)]
        settle: Option<String>,
    },
    ViciValve {
        positions: u32,
        #[serde(default)]
        id: Option<char>,
        #[serde(default)]
        feeds: Option<String>,
        #[serde(default)]
        ports: BTreeMap<u32, String>,
    },
    ModbusTemperature {
        address: u8,
        map: String,
        max_temperature: String,
        #[serde(default)]
        tolerance: Option<String>,
    },
    ScpiThermometer {
        model: String,
        #[serde(default)]
        terminator: Terminator,
    },
    Declared {
        instrument: String,
        #[serde(default)]
        model: Option<String>,
        #[serde(default)]
        settings: BTreeMap<String, SettingValue>,
    },
}

/// A setting of a declared instrument as a lab file writes it: a number or text.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum SettingValue {
    Number(f64),
    Text(String),
}

impl SettingValue {
    pub(super) fn text(&self) -> String {
        match self {
            SettingValue::Number(v) => crate::declared::template::shortest(*v),
            SettingValue::Text(t) => t.clone(),
        }
    }
}
