//! `lab init`: a new lab folder that runs at once, on simulators.
//!
//! The folder holds a lab file with simulated instruments, a protocol and a campaign (the files in
//! `controller/templates/`, built into the binary), each commented field by field, so a new user has something
//! that works to change one field at a time. Nothing is ever overwritten: if any of the files exists, nothing is
//! written at all.

use std::path::{Path, PathBuf};

/// The files `lab init` writes: name and contents.
pub const FILES: [(&str, &str); 3] = [
    ("bench.lab.ron", include_str!("../templates/bench.lab.ron")),
    ("reaction.protocol.ron", include_str!("../templates/reaction.protocol.ron")),
    ("first.campaign.ron", include_str!("../templates/first.campaign.ron")),
];

/// The campaign file among [`FILES`].
pub const CAMPAIGN: &str = "first.campaign.ron";

/// Why a folder could not be made.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// A file to write is already there.
    #[error("{path} already exists; nothing was written (choose a new folder, or move the file away)")]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// The system refused to create the folder or a file.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The folder or file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
}

/// Makes the lab folder `dir` (creating it if needed) and returns the files written.
pub fn init(dir: &Path) -> Result<Vec<PathBuf>, InitError> {
    let paths: Vec<PathBuf> = FILES.iter().map(|(name, _)| dir.join(name)).collect();
    if let Some(path) = paths.iter().find(|p| p.exists()) {
        return Err(InitError::Exists { path: path.clone() });
    }
    std::fs::create_dir_all(dir).map_err(|source| InitError::Write { path: dir.to_owned(), source })?;
    for (path, (_, text)) in paths.iter().zip(FILES) {
        // `create_new` keeps a file that appeared since the check above.
        let write = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()));
        write.map_err(|source| InitError::Write { path: path.clone(), source })?;
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_folder_checks_clean_and_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let lab = dir.path().join("mylab");
        let written = init(&lab).unwrap();
        assert_eq!(written.len(), 3);
        for path in &written {
            let (_, warnings) =
                crate::load::check::check_file(path).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
            assert!(warnings.is_empty(), "{}: {warnings:?}", path.display());
        }
        std::fs::write(lab.join("reaction.protocol.ron"), "my own protocol").unwrap();
        assert!(matches!(init(&lab), Err(InitError::Exists { .. })));
        assert_eq!(std::fs::read_to_string(lab.join("reaction.protocol.ron")).unwrap(), "my own protocol");
    }
}
