//! `lab check`: validating any technician-written file, whatever its kind.
//!
//! The kind is read from the file's first word (`Protocol(`, `Lab(`, `Campaign(`, `ModbusMap(`,
//! `Instrument(`), falling back to
//! its extension.
//! A campaign is checked together with the protocol and lab it names.

use std::path::Path;

use protocols::Diagnostics;

use crate::load::{LoadError, load_campaign_inputs, read_source};

/// Why a file did not check.
#[derive(Debug)]
pub enum CheckError {
    /// The file (or one it names) has problems.
    Invalid(Diagnostics),
    /// The file could not be read.
    Other(String),
}

/// Checks one file; returns a one-line description and any warnings.
pub fn check_file(path: &Path) -> Result<(String, Diagnostics), CheckError> {
    let source = read_source(path).map_err(|e| CheckError::Other(e.to_string()))?;
    let root = protocols::source::index(&source.text).name;
    let kind = root.as_deref().unwrap_or_else(|| {
        let name = path.to_string_lossy();
        if name.ends_with(".lab.ron") {
            "Lab"
        } else if name.ends_with(".modbus.ron") {
            "ModbusMap"
        } else if name.ends_with(".instrument.ron") {
            "Instrument"
        } else if name.ends_with(".campaign.ron") {
            "Campaign"
        } else {
            "Protocol"
        }
    });
    match kind {
        "Lab" => {
            let lab = devices::load_lab(source).map_err(CheckError::Invalid)?;
            Ok((
                format!(
                    "lab `{}`: {} instruments, {} rack slots",
                    lab.name,
                    lab.instruments.len(),
                    lab.deck.rack.slots()
                ),
                Diagnostics::new(),
            ))
        }
        "ModbusMap" => {
            let map = devices::modbus_map::load_map(source).map_err(CheckError::Invalid)?;
            Ok((
                format!("register map `{}`: {} points, {} sequences", map.name, map.points.len(), map.sequences.len()),
                Diagnostics::new(),
            ))
        }
        "Instrument" => {
            let d = devices::declared::load_declaration(source).map_err(CheckError::Invalid)?;
            Ok((
                format!(
                    "instrument `{}`: {}, {} commands, models {}",
                    d.name,
                    d.kind.phrase(),
                    d.commands.len(),
                    d.variants.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
                Diagnostics::new(),
            ))
        }
        "Campaign" => match load_campaign_inputs(path, None) {
            Ok(i) => Ok((
                format!(
                    "campaign `{}`: {} experiments of `{}` in lab `{}`",
                    i.campaign.name,
                    i.campaign.budget,
                    i.protocol.name(),
                    i.lab.name
                ),
                i.warnings,
            )),
            Err(LoadError::Invalid(d)) => Err(CheckError::Invalid(d)),
            Err(e) => Err(CheckError::Other(e.to_string())),
        },
        _ => {
            let (p, w) = protocols::load_protocol(source).map_err(CheckError::Invalid)?;
            Ok((format!("protocol `{}`: {} steps, {} parameters", p.name(), p.steps().len(), p.parameters().len()), w))
        }
    }
}
