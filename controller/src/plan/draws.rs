//! What a plan cannot know, drawn: the proposers a simulated campaign runs instead of, or around, its own.
//!
//! A simulated run measures nothing, so a proposer that chooses from results cannot choose there as it will in the
//! run. A model-free proposer (`SpaceFilling`, `Random`) chooses from its seed and from which points are taken,
//! never from values, so the plan runs it as it is and knows every experiment the run will make ([`Planned`]). A
//! Gaussian-process proposer starts with a space-filling design of its own, also fixed by its seed; after that
//! its model chooses. The plan runs the proposer itself for the design and draws the model's choices uniformly at
//! random over the space ([`Drawn`]), several times with different seeds, and gives the spread of the results.
//!
//! Either way the proposer's wish to stop is ignored, except when no untried point is left: the values a simulated
//! run "measures" are placeholders, and a target reached or an improvement no longer expected would be noise.

use std::sync::{Arc, Mutex};

use experiments::{Observation, Outcome, Point, Problem, Proposal, Proposer, RandomProposer, StopReason};

/// Every proposal a planned run received, in order, and how many of them the plan knew (the rest were drawn).
#[derive(Debug, Clone, Default)]
pub struct Proposed {
    /// Each proposal's values, and whether the run will propose the same (false: drawn in place of a model).
    pub points: Vec<(Point, bool)>,
}

/// Shared between a planned run's proposer (on the learner's thread) and the plan.
pub type ProposedLog = Arc<Mutex<Proposed>>;

/// The campaign's own proposer, run as it is, its proposals logged.
pub struct Planned {
    inner: Box<dyn Proposer>,
    log: ProposedLog,
}

impl Planned {
    /// Wraps `inner`, logging its proposals to `log`.
    pub fn new(inner: Box<dyn Proposer>, log: ProposedLog) -> Self {
        Planned { inner, log }
    }
}

impl Proposer for Planned {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn tell(&mut self, observation: Observation) {
        self.inner.tell(observation);
    }

    fn tell_outcome(&mut self, outcome: Outcome) {
        self.inner.tell_outcome(outcome);
    }

    fn ask(&mut self, n: usize, pending: &[Point]) -> Vec<Proposal> {
        let out = self.inner.ask(n, pending);
        log(&self.log, &out, true);
        out
    }

    fn should_stop(&self) -> Option<StopReason> {
        exhausted(self.inner.should_stop())
    }
}

/// A model-based proposer's design, then uniform random draws in place of the model's choices.
pub struct Drawn {
    design: Box<dyn Proposer>,
    /// Design proposals left to hand out.
    left: usize,
    draws: RandomProposer,
    log: ProposedLog,
}

impl Drawn {
    /// The first `design` proposals from `proposer` (its space-filling start), the rest drawn for `problem` from
    /// `seed`.
    pub fn new(proposer: Box<dyn Proposer>, design: usize, problem: &Problem, seed: u64, log: ProposedLog) -> Self {
        Drawn { design: proposer, left: design, draws: RandomProposer::for_problem(problem, seed), log }
    }
}

impl Proposer for Drawn {
    fn name(&self) -> &str {
        "design, then random draws in place of the model"
    }

    fn tell(&mut self, observation: Observation) {
        self.draws.tell(observation.clone());
        self.design.tell(observation);
    }

    fn tell_outcome(&mut self, outcome: Outcome) {
        self.draws.tell_outcome(outcome.clone());
        self.design.tell_outcome(outcome);
    }

    fn ask(&mut self, n: usize, pending: &[Point]) -> Vec<Proposal> {
        let from_design = n.min(self.left);
        let mut out = if from_design > 0 { self.design.ask(from_design, pending) } else { Vec::new() };
        self.left -= from_design;
        log(&self.log, &out, true);
        if out.len() < n {
            let mut taken: Vec<Point> = pending.to_vec();
            taken.extend(out.iter().map(|p| p.values.clone()));
            let drawn = self.draws.ask(n - out.len(), &taken);
            log(&self.log, &drawn, false);
            out.extend(drawn);
        }
        out
    }

    fn should_stop(&self) -> Option<StopReason> {
        exhausted(self.draws.should_stop())
    }
}

fn log(log: &ProposedLog, proposals: &[Proposal], known: bool) {
    let mut l = log.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    l.points.extend(proposals.iter().map(|p| (p.values.clone(), known)));
}

/// Only "no untried point is left" stops a planned run; every other reason comes from placeholder results.
fn exhausted(reason: Option<StopReason>) -> Option<StopReason> {
    reason.filter(|r| matches!(r, StopReason::Exhausted))
}
