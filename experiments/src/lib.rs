//! # experiments: campaigns, parameter spaces and proposers (the active-learning loop)
//!
//! A campaign says which protocol to run, which of its parameters to vary over which ranges, which output to
//! optimise, how many experiments to run and how to choose them. This crate turns a campaign file into a checked
//! [`Campaign`] ([`load_campaign`], then [`Campaign::check_against`] the protocol it names), and provides the
//! [`Proposer`]s that choose experiments: random, space-filling, and Bayesian optimisation with a Gaussian
//! process ([`GpProposer`]).
//!
//! The crate is pure. It reads no files, starts no threads, reads no clock and opens no database: the controller
//! reads the campaign and protocol files, owns the loop, runs the experiments, and calls [`Proposer::tell`] and
//! [`Proposer::ask`]. That keeps the loop deterministic (a seed and a sequence of calls fix every proposal) and
//! lets the same proposer run against real instruments, simulators or a lookup table. The Gaussian process's
//! hyperparameters are fitted here rather than by egobox-gp's own optimiser, which would use rayon's thread pool.
//!
//! Pipeline and modules:
//! - [`file`](mod@file) mirrors the campaign RON exactly; [`campaign`] checks it section by section, reporting every
//!   problem at once as [`protocols::Diagnostic`]s with codes (`C0001`…) and hints;
//! - [`space`] holds the box searched and its encoding as the unit cube, which proposers work in;
//! - [`objective`] holds what is optimised, and the one place the sign is flipped for maximisation;
//! - [`proposer`] holds the ask/tell interface, the proposers, and the acquisition functions.

pub mod campaign;
pub mod file;
pub mod objective;
pub mod proposer;
pub mod space;

pub use campaign::{Campaign, load_campaign};
pub use objective::{Direction, Objective};
pub use proposer::{
    Acquisition, GpProposer, ModelError, Observation, Point, Proposal, Proposer, ProposerConfig, RandomProposer,
    SpaceFillingProposer,
};
pub use space::{Dim, PointError, Space};
