//! The learner's thread: the campaign's proposer, asked and told over channels, never touching the world.
//!
//! It answers asks in order with everything it has been told, and sends proposals back over the bridge, each with
//! the model's prediction and the reason it was chosen. The same thread serves a real run and a simulated one.

use bevy_ecs::prelude::*;
use crossbeam_channel::Sender;

use super::RunError;
use crate::schedule::bridge::{Inbound, LearnerRequest};

/// The learner thread: holds the proposer, answers asks in order with what it has been told.
pub(super) fn spawn_learner(
    campaign: &experiments::Campaign,
    inbound: Sender<Inbound>,
) -> Result<(Sender<LearnerRequest>, std::thread::JoinHandle<()>), RunError> {
    let proposer = campaign.build_proposer();
    spawn_proposer(proposer, inbound)
}

/// Where a campaign's proposals come from instead of its own learner: a fleet's hub, for `lab workcell`.
///
/// The feed runs on its own thread and answers the world as the learner's thread does: each
/// [`LearnerRequest::Ask`] with [`Inbound::Proposals`] (each proposal with the claim it carries), in order; tells
/// need no answer. The world stays the same whichever answers it.
pub trait ProposalFeed: Send + Sync + std::fmt::Debug {
    /// Starts the feed's thread for local campaign `campaign`, which records what it must through `recorder` at the
    /// lab times `clock` gives.
    fn spawn(
        &self,
        inbound: Sender<Inbound>,
        recorder: crate::record::Recorder,
        campaign: i64,
        clock: devices::Clock,
    ) -> Result<(Sender<LearnerRequest>, std::thread::JoinHandle<()>), RunError>;
}

/// Runs a proposer on its own thread.
pub fn spawn_proposer(
    mut proposer: Box<dyn experiments::Proposer>,
    inbound: Sender<Inbound>,
) -> Result<(Sender<LearnerRequest>, std::thread::JoinHandle<()>), RunError> {
    let (tx, rx) = crossbeam_channel::unbounded::<LearnerRequest>();
    let handle = std::thread::Builder::new()
        .name("lab-learner".into())
        .spawn(move || {
            // Points proposed and not yet told. An ask's `pending` is what the world had when it asked, so it lacks
            // the answer to an earlier ask still on its way: these keep two asks from proposing the same point.
            let mut handed: Vec<experiments::Point> = Vec::new();
            while let Ok(req) = rx.recv() {
                match req {
                    LearnerRequest::Tell(o) => {
                        handed.retain(|p| !p.iter().all(|(k, v)| o.values.get(k) == Some(v)));
                        proposer.tell_outcome(o);
                    }
                    LearnerRequest::Ask { n, mut pending, unavailable, hold } => {
                        pending.extend(handed.iter().filter(|p| !pending.contains(p)).cloned().collect::<Vec<_>>());
                        let proposals = ask_avoiding(proposer.as_mut(), n, pending, &unavailable);
                        handed.extend(proposals.iter().map(|p| p.values.clone()));
                        let stop = proposer.should_stop().map(|r| r.to_string());
                        let sent = inbound.send(Inbound::Proposals { asked: n, proposals, stop, claims: Vec::new() });
                        // Let go only once the answer is in the inbox, so that it is taken at the lab time it was
                        // asked at.
                        drop(hold);
                        if sent.is_err() {
                            break;
                        }
                    }
                }
            }
        })
        .map_err(|e| RunError::System(format!("cannot start the learner thread: {e}")))?;
    Ok((tx, handle))
}

/// How many times the proposer is asked again for points that avoid unavailable levels.
const AVOID_ROUNDS: usize = 3;

/// Asks `proposer` for `n` points, keeping those that use none of the `unavailable` levels: a point that does is
/// put among the pending ones (so the proposer moves away from it) and the proposer asked again, a few times. If
/// every point it gives uses one, they are all returned, to wait for the restock like any held proposal: a campaign
/// whose only levels are out of stock waits rather than stops.
fn ask_avoiding(
    proposer: &mut dyn experiments::Proposer,
    n: usize,
    mut pending: Vec<experiments::Point>,
    unavailable: &[(String, f64)],
) -> Vec<experiments::Proposal> {
    let uses_unavailable =
        |p: &experiments::Proposal| unavailable.iter().any(|(name, level)| p.values.get(name) == Some(level));
    proposer.avoid(unavailable);
    let first = proposer.ask(n, &pending);
    if unavailable.is_empty() || !first.iter().any(uses_unavailable) {
        return first;
    }
    let mut kept: Vec<experiments::Proposal> = Vec::new();
    let mut asked = first.clone();
    for round in 0..=AVOID_ROUNDS {
        let (good, bad): (Vec<_>, Vec<_>) = asked.into_iter().partition(|p| !uses_unavailable(p));
        kept.extend(good);
        if kept.len() >= n || bad.is_empty() || round == AVOID_ROUNDS {
            break;
        }
        // What it proposed that uses an unavailable level is pending from now on, so it moves away from it; what
        // it kept is pending for this ask only.
        pending.extend(bad.into_iter().map(|p| p.values));
        let with_kept: Vec<experiments::Point> =
            pending.iter().cloned().chain(kept.iter().map(|p| p.values.clone())).collect();
        asked = proposer.ask(n - kept.len(), &with_kept);
    }
    if kept.is_empty() { first } else { kept }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A proposer that proposes levels 1, 2, 3, ... of `catalyst` in turn, skipping pending ones.
    struct Levels(f64);

    /// A proposer that proposes the lowest level of `catalyst` neither told nor pending, as a model-based one
    /// proposes its favourite point.
    struct Lowest(Vec<f64>);

    impl experiments::Proposer for Lowest {
        fn name(&self) -> &str {
            "lowest"
        }
        fn tell(&mut self, _: experiments::Observation) {}
        fn tell_outcome(&mut self, o: experiments::Outcome) {
            self.0.push(o.values["catalyst"]);
        }
        fn ask(&mut self, n: usize, pending: &[experiments::Point]) -> Vec<experiments::Proposal> {
            let taken: Vec<f64> = self.0.iter().copied().chain(pending.iter().map(|p| p["catalyst"])).collect();
            (1..=6).map(f64::from).filter(|l| !taken.contains(l)).take(n).map(proposal).collect()
        }
    }

    fn proposal(level: f64) -> experiments::Proposal {
        experiments::Proposal {
            values: [("catalyst".to_owned(), level)].into_iter().collect(),
            strategy: "test".into(),
            predicted_mean: None,
            predicted_sd: None,
            acquisition: None,
            model: None,
            reason: String::new(),
            labels: Default::default(),
        }
    }

    #[test]
    fn two_asks_in_flight_never_propose_the_same_point() {
        let (inbound, answers) = crossbeam_channel::unbounded();
        let (asks, handle) = spawn_proposer(Box::new(Lowest(Vec::new())), inbound).unwrap();
        let ask = || LearnerRequest::Ask {
            n: 1,
            pending: Vec::new(),
            unavailable: Vec::new(),
            hold: devices::clock::Hold::none(),
        };
        // Both asks leave before either answer arrives, so neither pending names the other's point.
        asks.send(ask()).unwrap();
        asks.send(ask()).unwrap();
        let mut got = Vec::new();
        for _ in 0..2 {
            match answers.recv_timeout(std::time::Duration::from_secs(10)).unwrap() {
                Inbound::Proposals { proposals, .. } => got.extend(levels(&proposals)),
                _ => panic!("only proposals come back"),
            }
        }
        assert_eq!(got, vec![1.0, 2.0]);
        // Once level 1 is told, it is the proposer's own to avoid; level 2 is still out, so 3 comes next.
        let told = experiments::Outcome { values: proposal(1.0).values, outputs: None };
        asks.send(LearnerRequest::Tell(told)).unwrap();
        asks.send(ask()).unwrap();
        match answers.recv_timeout(std::time::Duration::from_secs(10)).unwrap() {
            Inbound::Proposals { proposals, .. } => assert_eq!(levels(&proposals), vec![3.0]),
            _ => panic!("only proposals come back"),
        }
        drop(asks);
        handle.join().unwrap();
    }

    impl experiments::Proposer for Levels {
        fn name(&self) -> &str {
            "levels"
        }
        fn tell(&mut self, _: experiments::Observation) {}
        fn tell_outcome(&mut self, _: experiments::Outcome) {}
        fn ask(&mut self, n: usize, pending: &[experiments::Point]) -> Vec<experiments::Proposal> {
            let mut out = Vec::new();
            while out.len() < n && self.0 < 6.0 {
                self.0 += 1.0;
                let values: experiments::Point = [("catalyst".to_owned(), self.0)].into_iter().collect();
                if !pending.contains(&values) {
                    out.push(proposal(values["catalyst"]));
                }
            }
            out
        }
    }

    fn levels(ps: &[experiments::Proposal]) -> Vec<f64> {
        ps.iter().map(|p| p.values["catalyst"]).collect()
    }

    #[test]
    fn unavailable_levels_are_avoided_where_the_proposer_has_others() {
        let out = ask_avoiding(&mut Levels(0.0), 2, Vec::new(), &[("catalyst".into(), 1.0), ("catalyst".into(), 3.0)]);
        assert_eq!(levels(&out), vec![2.0, 4.0]);
        assert_eq!(levels(&ask_avoiding(&mut Levels(0.0), 2, Vec::new(), &[])), vec![1.0, 2.0]);
    }

    #[test]
    fn a_proposer_with_nothing_else_gives_what_it_has() {
        let all: Vec<(String, f64)> = (1..=6).map(|l| ("catalyst".to_owned(), f64::from(l))).collect();
        assert_eq!(levels(&ask_avoiding(&mut Levels(4.0), 1, Vec::new(), &all)), vec![5.0]);
    }
}
