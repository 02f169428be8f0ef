//! # controller: the scheduler, the record, and the `lab` binary
//!
//! This is the only crate that owns a bevy_ecs `World`, a tokio runtime, serial ports and the database. It wires
//! the pure crates together: [`load`] reads and cross-checks a campaign, its protocol and its lab, and renders
//! problems for people; [`run`] starts simulators and instruments and drives the [`schedule`] (the ECS world where
//! instruments, experiments and steps are entities); [`record`] writes `lab.db`; [`inspect`] reads it back for people
//! (`lab status`, `lab report`, `lab replay`); [`plan`] runs the same scheduler in simulated time (`lab plan`, the
//! benchmarks). The `lab` binary's commands (`src/cli/`) are thin layers over these.
//!
//! Architecture invariants: systems never block or await (device I/O runs in tokio tasks, the proposer on its own
//! thread, the record writer on its own thread, and all of them talk to the world over channels); a step that may
//! have acted physically is never repeated; every instrument is left in its safe state when a campaign ends.

pub mod cores;
pub mod fleet;
pub mod init;
pub mod inspect;
pub mod load;
pub mod plan;
pub mod record;
pub mod run;
pub mod schedule;
