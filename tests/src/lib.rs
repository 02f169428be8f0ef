//! The end-to-end harness: run whole campaigns on simulated instruments and read back what `lab.db` says.
//!
//! Suites live in `tests/tests/` and compile into one binary (`integration`). They never need hardware and never
//! touch the repository's own `lab.db`: every run writes to a fresh temporary folder.

pub mod rust_source;

use std::path::{Path, PathBuf};

use controller::run::{CampaignOptions, Summary, run_campaign};

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the repository").to_owned()
}

/// How long a campaign run by [`CampaignTest::run`] or [`CampaignTest::try_run`] may take before the test fails
/// instead of waiting for ever: the demo's short campaigns take seconds.
pub const CAMPAIGN_BOUND: std::time::Duration = std::time::Duration::from_secs(300);

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

    /// Runs the campaign to its end (within [`CAMPAIGN_BOUND`]).
    pub fn run(&self) -> Summary {
        self.try_run().expect("the campaign runs")
    }

    /// Runs the campaign, returning its error if it cannot run.
    pub fn try_run(&self) -> Result<Summary, controller::run::RunError> {
        self.try_run_with(|_| {})
    }

    /// Runs the campaign with options changed by `change` (a signing key, a policy), returning its error if it
    /// cannot run; fails the test if it has not ended within [`CAMPAIGN_BOUND`] of wall time.
    pub fn try_run_with(
        &self,
        change: impl FnOnce(&mut CampaignOptions),
    ) -> Result<Summary, controller::run::RunError> {
        self.run_with_within(change, CAMPAIGN_BOUND)
    }

    /// Keeps the folder (the campaign, the record, the ledger) after the test, even a failed one, and says where it
    /// is: for a look at what a failure left.
    pub fn keep(&mut self) {
        self.dir.disable_cleanup(true);
        eprintln!("keeping {}", self.dir.path().display());
    }

    /// Opens the record for reading.
    pub fn record(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(&self.db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("the record exists")
    }
}

impl CampaignTest {
    /// A campaign of the protocol `protocol` (its text) on a copy of the lab file `lab`, from a campaign text whose
    /// top-level `protocol:` and `lab:` lines this fills in. The copy of the lab asks its simulators to write their
    /// ledger (what physically happened, and the faults injected) to [`CampaignTest::ledger_path`] when they stop,
    /// so a test can compare the record with the truth.
    pub fn on_lab(lab: &Path, protocol: &str, campaign: &str) -> Self {
        let t = Self::from_text(campaign);
        let protocol_path = t.dir.path().join("test.protocol.ron");
        std::fs::write(&protocol_path, protocol).expect("writing the protocol");
        let lab_text = std::fs::read_to_string(lab).expect("the lab file exists");
        let ledger = format!("simulation: (ledger: {:?}, ", t.ledger_path().display().to_string());
        assert!(lab_text.contains("simulation: ("), "the lab file has a `simulation` section");
        let lab_path = t.dir.path().join("test.lab.ron");
        std::fs::write(&lab_path, lab_text.replacen("simulation: (", &ledger, 1)).expect("writing the lab");
        let text = replace_field(campaign, "protocol", &format!("{:?}", protocol_path.display().to_string()));
        let text = replace_field(&text, "lab", &format!("{:?}", lab_path.display().to_string()));
        std::fs::write(&t.campaign, text).expect("writing the campaign");
        t
    }

    /// Where the simulators of a campaign made by [`CampaignTest::on_lab`] write their ledger.
    pub fn ledger_path(&self) -> PathBuf {
        self.dir.path().join("ledger.ron")
    }

    /// The simulators' ledger, once the campaign has run.
    pub fn ledger(&self) -> devices::sim::LedgerFile {
        devices::sim::LedgerFile::read(&self.ledger_path()).expect("the simulators wrote their ledger")
    }

    /// Runs the campaign on a thread of its own, failing the test if it has not ended within `bound` of wall
    /// time: a campaign must terminate whatever its instruments do.
    pub fn run_within(&self, bound: std::time::Duration) -> Result<Summary, controller::run::RunError> {
        self.run_with_within(|_| {}, bound)
    }

    /// [`CampaignTest::run_within`] with options changed by `change`.
    fn run_with_within(
        &self,
        change: impl FnOnce(&mut CampaignOptions),
        bound: std::time::Duration,
    ) -> Result<Summary, controller::run::RunError> {
        let mut opts = CampaignOptions::new(self.campaign.clone(), self.db.clone());
        opts.time_scale = Some(self.time_scale);
        // Nobody attends a test's campaign: an experiment that can only go to places a lost vessel blocks fails
        // rather than waiting for a person (`--blocked fail`).
        opts.blocked = controller::schedule::resources::BlockedPolicy::Fail;
        change(&mut opts);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(run_campaign(&opts));
        });
        match rx.recv_timeout(bound) {
            Ok(result) => result,
            Err(_) => panic!("the campaign did not end within {bound:?}"),
        }
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

/// Every `.ron` file in the repository, outside build output and test fixtures (`*/tests/data/`, files made bad on
/// purpose, which the diagnostics tests check fail as they should).
pub fn ron_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name();
            let name = name.to_string_lossy();
            if p.is_dir() {
                let fixtures = name == "data" && p.parent().is_some_and(|d| d.ends_with("tests"));
                if !name.starts_with('.') && name != "target" && !fixtures {
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
