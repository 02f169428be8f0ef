//! The random proposer: points drawn uniformly from the space (or from the pool's untried points).
//!
//! It learns nothing from results. It exists as the baseline that every other strategy must beat on the same
//! seed and budget, and as the simplest correct implementation of the [`Proposer`] promises.

use rand::Rng;
use rand_xoshiro::Xoshiro256PlusPlus;

use super::{History, Observation, Outcome, Point, Problem, Proposal, Proposer, rng, too_close};
use crate::stop::{StopReason, StopTracker};

/// How many draws a proposal may take before the space is taken to have no room left.
const ATTEMPTS: usize = 64;

/// Proposes points drawn uniformly from the space, from a seeded generator.
#[derive(Debug, Clone)]
pub struct RandomProposer {
    history: History,
    rng: Xoshiro256PlusPlus,
    seed: u64,
    stop: StopTracker,
}

impl RandomProposer {
    /// A random proposer over `space`, seeded with `seed`.
    pub fn new(space: crate::Space, seed: u64) -> Self {
        let problem = Problem::new(space, crate::Objective::maximize(""), 0);
        RandomProposer::for_problem(&problem, seed)
    }

    /// A random proposer for `problem`, seeded with `seed`.
    pub fn for_problem(problem: &Problem, seed: u64) -> Self {
        let stop = super::stop_tracker(problem);
        RandomProposer { history: History::new(problem), rng: rng(seed), seed, stop }
    }
}

impl Proposer for RandomProposer {
    fn name(&self) -> &str {
        "random"
    }

    fn tell(&mut self, observation: Observation) {
        if let Some(v) = observation.objective {
            self.stop.told(v);
        }
        self.history.tell(observation);
    }

    fn tell_outcome(&mut self, outcome: Outcome) {
        self.history.tell_outcome(outcome);
        if let Some(super::Status::Values(v)) = self.history.told.last().map(|t| &t.result) {
            self.stop.told(v[0]);
        }
    }

    fn ask(&mut self, n: usize, pending: &[Point]) -> Vec<Proposal> {
        if self.stop.no_point() {
            return Vec::new();
        }
        let mut taken = self.history.taken(pending);
        let space = &self.history.space;
        let mut frozen: Vec<bool> = vec![false; space.len()];
        let mut shared: Option<Vec<f64>> = None;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let placed = if let Some(pool) = self.history.untaken_pool(&taken) {
                let fits: Vec<&Vec<f64>> = pool.iter().filter(|u| fits_batch(u, shared.as_deref(), &frozen)).collect();
                let choice = if fits.is_empty() { None } else { Some(fits[self.rng.gen_range(0..fits.len())].clone()) };
                if pool.is_empty() {
                    self.stop.exhausted();
                }
                choice
            } else {
                (0..ATTEMPTS).find_map(|_| {
                    let mut u = space.random(&mut self.rng);
                    if let Some(s) = &shared {
                        for (j, f) in frozen.iter().enumerate() {
                            if *f {
                                u[j] = s[j];
                            }
                        }
                    }
                    let u = space.repair(&u, &frozen)?;
                    (!too_close(&u, &taken)).then_some(u)
                })
            };
            let Some(unit) = placed else { break };
            if shared.is_none() {
                frozen = (0..space.len()).map(|j| space.is_per_batch(j)).collect();
                shared = Some(unit.clone());
            }
            taken.push(unit.clone());
            let reason = format!("Drawn uniformly at random from the whole space (seed {}).", self.seed);
            out.push(self.history.proposal(&unit, "random (uniform)", reason));
        }
        out
    }

    fn should_stop(&self) -> Option<StopReason> {
        self.stop.should_stop()
    }
}

/// Whether coordinates `u` agree with the batch's shared values on the frozen dimensions.
pub(crate) fn fits_batch(u: &[f64], shared: Option<&[f64]>, frozen: &[bool]) -> bool {
    shared.is_none_or(|s| frozen.iter().enumerate().all(|(j, f)| !f || (u[j] - s[j]).abs() < super::MIN_DISTANCE))
}
