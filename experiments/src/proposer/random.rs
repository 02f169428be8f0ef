//! The random proposer: points drawn uniformly from the box.
//!
//! It learns nothing from results. It exists as the baseline that every other strategy must beat on the same
//! seed and budget, and as the simplest correct implementation of the [`Proposer`] promises.

use rand_xoshiro::Xoshiro256PlusPlus;

use super::{History, Observation, Point, Proposal, Proposer, plain_proposal, rng, too_close, uniform_point};
use crate::space::Space;

/// How many draws a proposal may take before the space is taken to have no room left.
const ATTEMPTS: usize = 64;

/// Proposes points drawn uniformly from the space, from a seeded generator.
#[derive(Debug, Clone)]
pub struct RandomProposer {
    history: History,
    rng: Xoshiro256PlusPlus,
    seed: u64,
}

impl RandomProposer {
    /// A random proposer over `space`, seeded with `seed`.
    pub fn new(space: Space, seed: u64) -> Self {
        RandomProposer { history: History::new(space), rng: rng(seed), seed }
    }
}

impl Proposer for RandomProposer {
    fn name(&self) -> &str {
        "random"
    }

    fn tell(&mut self, observation: Observation) {
        self.history.tell(observation);
    }

    fn ask(&mut self, n: usize, pending: &[Point]) -> Vec<Proposal> {
        let mut taken = self.history.taken(pending);
        let d = self.history.space.len();
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let placed = (0..ATTEMPTS).find_map(|_| {
                let (unit, point) = self.history.space.place(&uniform_point(&mut self.rng, d));
                (!too_close(&unit, &taken)).then_some((unit, point))
            });
            let Some((unit, point)) = placed else { break };
            taken.push(unit);
            out.push(plain_proposal(
                point,
                "random (uniform)",
                format!("Drawn uniformly at random from the whole space (seed {}).", self.seed),
            ));
        }
        out
    }
}
