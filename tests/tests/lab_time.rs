//! A simulated run's lab time depends on the files and seeds alone: the same campaign and seed run twice, once with
//! its learner slowed as a loaded machine slows it, take the same lab time, run every step at the same lab times,
//! and choose the same experiments (`devices::clock::events`).

use std::sync::Arc;
use std::time::Duration;

use controller::run::{ProposalFeed, RunError, spawn_proposer};
use controller::schedule::bridge::{Inbound, LearnerRequest};
use experiments::{Observation, Outcome, Point, Proposal, Proposer};
use tests::{CampaignTest, replace_field, repo_root};

/// A proposer that takes its time over every answer, as a model does on a loaded machine.
struct Slow(Box<dyn Proposer>);

impl Proposer for Slow {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn tell(&mut self, observation: Observation) {
        self.0.tell(observation);
    }

    fn tell_outcome(&mut self, outcome: Outcome) {
        self.0.tell_outcome(outcome);
    }

    fn ask(&mut self, n: usize, pending: &[Point]) -> Vec<Proposal> {
        std::thread::sleep(Duration::from_millis(40));
        self.0.ask(n, pending)
    }
}

/// The campaign's own learner, slowed.
#[derive(Debug)]
struct SlowLearner(std::path::PathBuf);

impl ProposalFeed for SlowLearner {
    fn spawn(
        &self,
        inbound: crossbeam_channel::Sender<Inbound>,
        _recorder: controller::record::Recorder,
        _campaign: i64,
        _clock: devices::Clock,
    ) -> Result<(crossbeam_channel::Sender<LearnerRequest>, std::thread::JoinHandle<()>), RunError> {
        let inputs = controller::load::load_campaign_inputs(&self.0, None)?;
        spawn_proposer(Box::new(Slow(inputs.campaign.build_proposer())), inbound)
    }
}

/// A copy of the campaign `campaign` (under the repository) on the lab `lab`, with `seed`.
fn campaign(campaign: &str, lab: &str, seed: u64) -> CampaignTest {
    let root = repo_root();
    let path = root.join(campaign);
    let text = std::fs::read_to_string(&path).expect("the campaign file");
    let start = text.find("protocol: \"").expect("a protocol line") + "protocol: \"".len();
    let protocol =
        path.parent().expect("a folder").join(&text[start..start + text[start..].find('"').expect("a path")]);
    let text = replace_field(&text, "protocol", &format!("{:?}", protocol.display().to_string()));
    let text = replace_field(&text, "lab", &format!("{:?}", root.join(lab).display().to_string()));
    CampaignTest::from_text(&replace_field(&text, "seed", &seed.to_string()))
}

/// What a run did that must not depend on the machine: its lab time, every step's instrument and lab times, and
/// every experiment's parameter values.
fn facts(t: &CampaignTest, lab_seconds: f64) -> (String, Vec<String>, Vec<String>) {
    let conn = t.record();
    let rows = |sql: &str| -> Vec<String> {
        let mut stmt = conn.prepare(sql).expect("a query");
        stmt.query_map([], |r| r.get::<_, String>(0)).expect("rows").map(|r| r.expect("a row")).collect()
    };
    let steps = rows(
        "SELECT e.seq || ' ' || s.step || ' on ' || s.instrument || ' ' || printf('%.6f', s.started_at) || '-' || \
         printf('%.6f', s.finished_at) || ' ' || s.status FROM steps s JOIN experiments e ON e.id = s.experiment_id \
         ORDER BY e.seq, s.id",
    );
    let values = rows(
        "SELECT e.seq || ' ' || p.name || ' = ' || printf('%.9g', p.value) FROM parameters p \
         JOIN experiments e ON e.id = p.experiment_id ORDER BY e.seq, p.name",
    );
    (format!("{lab_seconds:.6}"), steps, values)
}

/// Runs `make()` twice, the second time with its learner slowed, and requires the same facts of both (and, unless
/// its lab injects faults, no failed experiment).
fn runs_alike(what: &str, faults: bool, make: impl Fn() -> CampaignTest) {
    let quick = make();
    let summary = quick.run();
    assert!(faults || summary.failed == 0, "{what}: {summary:?}");
    let slow = make();
    let slowed = slow
        .try_run_with(|o| o.feed = Some(Arc::new(SlowLearner(slow.campaign.clone()))))
        .expect("the slowed run runs");
    let (a, b) = (facts(&quick, summary.lab_seconds), facts(&slow, slowed.lab_seconds));
    assert!(!a.1.is_empty() && !a.2.is_empty(), "{what}: the runs recorded steps and choices");
    assert_eq!(a.0, b.0, "{what}: the slowed learner changed the run's lab time");
    assert_eq!(a.2, b.2, "{what}: the slowed learner changed the choices");
    assert_eq!(a.1, b.1, "{what}: the slowed learner changed the steps");
}

#[test]
fn the_same_campaign_and_seed_take_the_same_lab_time_and_choices_however_slow_the_learner() {
    // A Gaussian process chooses from results, so its choices follow every difference of timing.
    runs_alike("first (lab init), its own proposer, seed 3", false, || {
        campaign("controller/templates/first.campaign.ron", "controller/templates/bench.lab.ron", 3)
    });
}

#[test]
fn a_lab_whose_simulators_lose_replies_loses_the_same_ones_each_run() {
    // Lost and garbled replies are drawn per instrument from the lab's seed, and each costs its line's timeout in
    // lab time, as on the real lab, so the run with faults is as reproducible as the others.
    runs_alike("declared (faults), seed 1", true, || {
        campaign("experiments/campaigns/declared.campaign.ron", "devices/labs/declared.lab.ron", 1)
    });
}
