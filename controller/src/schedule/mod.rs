//! The scheduler: a bevy_ecs world where instruments, experiments and steps are entities.
//!
//! [`install`] registers the messages and adds the systems, in the order a frame runs them (see [`systems`]).
//! The main loop runs a frame whenever something arrives over the [`bridge`] (or a minimum wait ends), and again
//! while a frame made progress, so a finished step is followed by its successor's dispatch in the same wake-up.
//! Frames are driven by events, never by polling: an idle lab costs nothing. The same world runs a real campaign
//! (steps go to instrument tasks) and plans one (steps go to a discrete-event simulation on expected durations).

pub mod bridge;
pub mod components;
pub mod estimate;
pub mod messages;
pub mod planner;
pub mod resources;
pub mod settle;
pub mod stock;
pub mod systems;

use bevy_ecs::message::{MessageRegistry, message_update_system};
use bevy_ecs::prelude::*;
use bevy_ecs::schedule::SingleThreadedExecutor;

use messages::{ExperimentConcluded, Observed, OperatorAsked, ProposalsArrived, Reconciled, StepEnded};
use resources::{DeckState, Estimates, NextWake, Progress};

/// The phases of a frame.
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub enum SchedulerSystems {
    /// Take in what happened outside: finished steps, proposals, operators' requests.
    Ingest,
    /// Apply finished steps and conclude experiments.
    Conclude,
    /// Take proposals, ask for more, start experiments.
    Propose,
    /// Plan, and give idle instruments steps.
    Dispatch,
}

/// Registers the scheduler's messages, default resources and systems on `world` and `schedule`.
pub fn install(world: &mut World, schedule: &mut Schedule) {
    MessageRegistry::register_message::<StepEnded>(world);
    MessageRegistry::register_message::<ExperimentConcluded>(world);
    MessageRegistry::register_message::<ProposalsArrived>(world);
    MessageRegistry::register_message::<OperatorAsked>(world);
    MessageRegistry::register_message::<Reconciled>(world);
    MessageRegistry::register_message::<Observed>(world);
    world.init_resource::<Progress>();
    world.init_resource::<NextWake>();
    world.init_resource::<DeckState>();
    world.init_resource::<Estimates>();
    world.init_resource::<resources::Schedule>();
    world.init_resource::<resources::ReadyIndex>();
    world.init_resource::<stock::Stock>();
    if !world.contains_resource::<resources::UnknownPolicy>() {
        world.insert_resource(resources::UnknownPolicy::Fail);
    }
    world.init_resource::<resources::BlockedPolicy>();
    // One thread: the systems are chained anyway, and a deterministic order makes runs reproducible.
    schedule.set_executor(SingleThreadedExecutor::new());
    schedule.configure_sets(
        (SchedulerSystems::Ingest, SchedulerSystems::Conclude, SchedulerSystems::Propose, SchedulerSystems::Dispatch)
            .chain(),
    );
    schedule.add_systems(
        (message_update_system, systems::ingest::drain_inbox, systems::ingest::handle_operator_requests)
            .chain()
            .in_set(SchedulerSystems::Ingest),
    );
    schedule.add_systems(
        (
            systems::conclude::apply_step_results,
            systems::conclude::settle_observed,
            systems::conclude::settle_draws,
            systems::conclude::settle_reconciled,
            systems::conclude::fail_stranded_steps,
            systems::conclude::release_reservations,
            systems::conclude::conclude_experiments,
        )
            .chain()
            .in_set(SchedulerSystems::Conclude),
    );
    schedule.add_systems(
        (systems::propose::receive_proposals, systems::propose::request_proposals, systems::propose::start_experiments)
            .chain()
            .in_set(SchedulerSystems::Propose),
    );
    schedule.add_systems(
        (
            systems::dispatch::reconcile_instruments,
            systems::dispatch::index_ready_steps,
            systems::dispatch::replan,
            systems::dispatch::assign_instruments,
            systems::dispatch::say_stranded_dispenses,
            systems::dispatch::compute_next_wake,
        )
            .chain()
            .in_set(SchedulerSystems::Dispatch),
    );
}
