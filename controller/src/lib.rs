//! # controller: the scheduler, the record, and the `lab` binary
//!
//! This is the only crate that owns a bevy_ecs `World`, a tokio runtime, serial ports and the database. It wires
//! the pure crates together: [`load`] reads and cross-checks a campaign, its protocol and its lab; [`run`] starts
//! simulators and instruments and drives the [`schedule`] (the ECS world where instruments, experiments and steps
//! are entities); [`record`] writes `lab.db`; [`diagnostics`] renders problems for people.
//!
//! Architecture invariants: systems never block or await (device I/O runs in tokio tasks, the proposer on its own
//! thread, the record writer on its own thread, and all of them talk to the world over channels); a step that may
//! have acted physically is never repeated; every instrument is left in its safe state when a campaign ends.

pub mod bench;
pub mod check;
pub mod cores;
pub mod diagnostics;
pub mod estimate;
pub mod init;
pub mod live;
pub mod load;
pub mod operator;
pub mod plan;
pub mod planner;
pub mod record;
pub mod replay;
pub mod report;
pub mod resume;
pub mod run;
pub mod schedule;
pub mod simulate;
pub mod status;
pub mod workload;
