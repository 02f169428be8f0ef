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
            while let Ok(req) = rx.recv() {
                match req {
                    LearnerRequest::Tell(o) => proposer.tell_outcome(o),
                    LearnerRequest::Ask { n, pending } => {
                        let proposals = proposer.ask(n, &pending);
                        let stop = proposer.should_stop().map(|r| r.to_string());
                        if inbound.send(Inbound::Proposals { asked: n, proposals, stop, claims: Vec::new() }).is_err() {
                            break;
                        }
                    }
                }
            }
        })
        .map_err(|e| RunError::System(format!("cannot start the learner thread: {e}")))?;
    Ok((tx, handle))
}
