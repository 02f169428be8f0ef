//! The end-to-end harness: run whole campaigns on simulated instruments and read back what `lab.db` says.
//!
//! Suites live in `tests/tests/` and compile into one binary (`integration`). They never need hardware and never
//! touch the repository's own `lab.db`: every run writes to a fresh temporary folder.

use std::path::{Path, PathBuf};

use controller::run::{CampaignOptions, Summary, run_campaign};

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the repository").to_owned()
}

/// A campaign to run in a temporary folder.
pub struct CampaignTest {
    /// The folder holding the campaign file and the record.
    pub dir: tempfile::TempDir,
    /// The campaign file.
    pub campaign: PathBuf,
    /// The record.
    pub db: PathBuf,
    time_scale: f64,
}

impl CampaignTest {
    /// A copy of the demo campaign with a given budget, in-flight limit and initial design size, writing to a
    /// fresh record. The protocol and lab are the repository's own.
    pub fn demo(budget: usize, in_flight: usize, initial: usize) -> Self {
        let root = repo_root();
        let text = std::fs::read_to_string(root.join("experiments/campaigns/demo.campaign.ron"))
            .expect("the demo campaign exists");
        let protocol = root.join("protocols/library/condensation.protocol.ron");
        let lab = root.join("devices/labs/sim.lab.ron");
        let text = replace_field(&text, "protocol", &format!("{:?}", protocol.display().to_string()));
        let text = replace_field(&text, "lab", &format!("{:?}", lab.display().to_string()));
        let text = replace_field(&text, "budget", &budget.to_string());
        let text = replace_field(&text, "in_flight", &in_flight.to_string());
        let text = text.replace("initial: 8", &format!("initial: {initial}"));
        Self::from_text(&text)
    }

    /// A campaign from its full text (paths inside must be absolute).
    pub fn from_text(text: &str) -> Self {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let campaign = dir.path().join("test.campaign.ron");
        std::fs::write(&campaign, text).expect("writing the campaign");
        let db = dir.path().join("lab.db");
        CampaignTest { dir, campaign, db, time_scale: 2000.0 }
    }

    /// Runs lab time this many times faster than the wall.
    pub fn time_scale(mut self, scale: f64) -> Self {
        self.time_scale = scale;
        self
    }

    /// Runs the campaign to its end.
    pub fn run(&self) -> Summary {
        self.try_run().expect("the campaign runs")
    }

    /// Runs the campaign, returning its error if it cannot run.
    pub fn try_run(&self) -> Result<Summary, controller::run::RunError> {
        let mut opts = CampaignOptions::new(self.campaign.clone(), self.db.clone());
        opts.time_scale = Some(self.time_scale);
        run_campaign(&opts)
    }

    /// Opens the record for reading.
    pub fn record(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(&self.db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("the record exists")
    }
}

/// Replaces the value of a top-level `field: value,` line in a RON text.
pub fn replace_field(text: &str, field: &str, value: &str) -> String {
    let prefix = format!("    {field}: ");
    text.lines()
        .map(|l| if l.starts_with(&prefix) { format!("{prefix}{value},") } else { l.to_owned() })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `.ron` file in the repository, outside build output.
pub fn ron_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name();
            let name = name.to_string_lossy();
            if p.is_dir() {
                if !name.starts_with('.') && name != "target" {
                    walk(&p, out);
                }
            } else if name.ends_with(".ron") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&repo_root(), &mut out);
    out.sort();
    out
}
