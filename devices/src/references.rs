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

use crate::declared::Declaration;
use crate::modbus_map::ModbusMap;

/// What became of a reference.
#[derive(Debug)]
pub enum Found<T> {
    /// It loaded.
    Loaded(Arc<T>),
    /// Nothing by that name: no built-in one and no such file.
    Missing,
    /// It exists but has errors (already reported).
    Invalid,
}

impl<T> Clone for Found<T> {
    fn clone(&self) -> Self {
        match self {
            Found::Loaded(t) => Found::Loaded(Arc::clone(t)),
            Found::Missing => Found::Missing,
            Found::Invalid => Found::Invalid,
        }
    }
}

/// The maps and declarations one lab file refers to, loaded once each.
#[derive(Debug, Default)]
pub struct References {
    folder: Option<PathBuf>,
    maps: BTreeMap<String, Found<ModbusMap>>,
    declarations: BTreeMap<String, Found<Declaration>>,
}

impl References {
    /// References from the lab file `lab` (its folder resolves relative paths).
    pub fn of(lab: &str) -> Self {
        let folder = Path::new(lab).parent().filter(|p| !p.as_os_str().is_empty()).map(Path::to_path_buf);
        References { folder, ..References::default() }
    }

    /// The map `reference` names; its problems go to `diags` the first time it is asked for.
    pub fn map(&mut self, reference: &str, diags: &mut Diagnostics) -> Found<ModbusMap> {
        find(&mut self.maps, reference, self.folder.as_deref(), crate::modbus_map::resolve, diags)
    }

    /// The declaration `reference` names; its problems go to `diags` the first time it is asked for.
    pub fn declaration(&mut self, reference: &str, diags: &mut Diagnostics) -> Found<Declaration> {
        find(&mut self.declarations, reference, self.folder.as_deref(), crate::declared::resolve, diags)
    }
}

/// How a file a lab refers to is found and read: `Err(None)` if there is no such file, `Err(Some(..))` if it does
/// not load.
type Resolve<T> = fn(&str, Option<&Path>) -> Result<Arc<T>, Option<Diagnostics>>;

/// The entry of `cache` for `reference`, resolved the first time.
fn find<T>(
    cache: &mut BTreeMap<String, Found<T>>,
    reference: &str,
    folder: Option<&Path>,
    resolve: Resolve<T>,
    diags: &mut Diagnostics,
) -> Found<T> {
    cache
        .entry(reference.to_owned())
        .or_insert_with(|| match resolve(reference, folder) {
            Ok(m) => Found::Loaded(m),
            Err(None) => Found::Missing,
            Err(Some(d)) => {
                diags.extend(d);
                Found::Invalid
            }
        })
        .clone()
}
