//! The files a lab file refers to: Modbus register maps (`map: "omron_e5cc"`) and instrument declarations
//! (`instrument: "new_era_ne1000"`), built in by name or read from a path relative to the lab file.
//!
//! Several instruments often share one map or declaration; [`References`] loads each once per lab file, and reports
//! its problems once, in the referred file (with its own lines and columns), while every instrument that names a
//! missing or broken one gets a diagnostic of its own at the name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use protocols::diagnostic::Diagnostics;

use crate::modbus_map::ModbusMap;

/// What became of a reference.
#[derive(Debug, Clone)]
pub enum Found<T> {
    /// It loaded.
    Loaded(Arc<T>),
    /// Nothing by that name: no built-in one and no such file.
    Missing,
    /// It exists but has errors (already reported).
    Invalid,
}

/// The maps and declarations one lab file refers to, loaded once each.
#[derive(Debug, Default)]
pub struct References {
    folder: Option<PathBuf>,
    maps: BTreeMap<String, Found<ModbusMap>>,
}

impl References {
    /// References from the lab file `lab` (its folder resolves relative paths).
    pub fn of(lab: &str) -> Self {
        let folder = Path::new(lab).parent().filter(|p| !p.as_os_str().is_empty()).map(Path::to_path_buf);
        References { folder, ..References::default() }
    }

    /// The map `reference` names; its problems go to `diags` the first time it is asked for.
    pub fn map(&mut self, reference: &str, diags: &mut Diagnostics) -> Found<ModbusMap> {
        let folder = self.folder.clone();
        self.maps
            .entry(reference.to_owned())
            .or_insert_with(|| match crate::modbus_map::resolve(reference, folder.as_deref()) {
                Ok(m) => Found::Loaded(m),
                Err(None) => Found::Missing,
                Err(Some(d)) => {
                    diags.extend(d);
                    Found::Invalid
                }
            })
            .clone()
    }
}
