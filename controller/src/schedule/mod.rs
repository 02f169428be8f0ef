//! The scheduler: a bevy_ecs world where instruments, experiments and steps are entities.
//!
//! [`install`] registers the messages and adds the systems, in the order a frame runs them (see [`systems`]).
//! The main loop ([`crate::run`]) runs a frame whenever something arrives over the [`bridge`], and again while a
//! frame made progress, so a finished step is followed by its successor's dispatch in the same wake-up.
//! Frames are driven by events, never by polling: an idle lab costs nothing.

pub mod bridge;
pub mod components;
pub mod messages;
pub mod resources;
pub mod systems;

use bevy_ecs::message::{MessageRegistry, message_update_system};
use bevy_ecs::prelude::*;
use bevy_ecs::schedule::SingleThreadedExecutor;

use messages::{ExperimentConcluded, Interrupted, ProposalsArrived, StepEnded};
use resources::Progress;

/// The phases of a frame.
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub enum SchedulerSystems {
    /// Take in what happened outside: finished steps, proposals, interrupts.
    Ingest,
    /// Apply finished steps and conclude experiments.
    Conclude,
    /// Take proposals, ask for more, start experiments.
    Propose,
    /// Give idle instruments ready steps.
    Dispatch,
}

/// Registers the scheduler's messages and systems on `world` and `schedule`.
pub fn install(world: &mut World, schedule: &mut Schedule) {
    MessageRegistry::register_message::<StepEnded>(world);
    MessageRegistry::register_message::<ExperimentConcluded>(world);
    MessageRegistry::register_message::<ProposalsArrived>(world);
    MessageRegistry::register_message::<Interrupted>(world);
    world.init_resource::<Progress>();
    // One thread: the systems are chained anyway, and a deterministic order makes runs reproducible.
    schedule.set_executor(SingleThreadedExecutor::new());
    schedule.configure_sets(
        (SchedulerSystems::Ingest, SchedulerSystems::Conclude, SchedulerSystems::Propose, SchedulerSystems::Dispatch)
            .chain(),
    );
    schedule.add_systems(
        (message_update_system, systems::drain_inbox, systems::apply_interrupts)
            .chain()
            .in_set(SchedulerSystems::Ingest),
    );
    schedule.add_systems(
        (systems::apply_step_results, systems::fail_stranded_steps, systems::conclude_experiments)
            .chain()
            .in_set(SchedulerSystems::Conclude),
    );
    schedule.add_systems(
        (systems::receive_proposals, systems::request_proposals, systems::start_experiments)
            .chain()
            .in_set(SchedulerSystems::Propose),
    );
    schedule.add_systems(systems::assign_instruments.in_set(SchedulerSystems::Dispatch));
}
