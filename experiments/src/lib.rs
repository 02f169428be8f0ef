//! # experiments: campaigns, parameter spaces and proposers (the active-learning loop)
//!
//! A campaign says which protocol to run, which of its parameters to vary over which values, which outputs to
//! optimise, how many experiments to run, when to stop early, and how to choose them. This crate turns a
//! campaign file into a checked [`Campaign`] ([`load_campaign`], then [`Campaign::check_against`] the protocol it
//! names), and provides the [`Proposer`]s that choose experiments: random, space-filling, and Bayesian
//! optimisation with a Gaussian process ([`GpProposer`]), which handles continuous, integer and categorical
//! parameters, linear constraints, values shared by a batch, experiments in flight, failures, noise and several
//! objectives.
//!
//! The crate is pure. It reads no files, starts no threads, reads no clock and opens no database: the controller
//! reads the campaign and protocol files, owns the loop, runs the experiments, and calls [`Proposer::tell`] and
//! [`Proposer::ask`]. That keeps the loop deterministic (a seed and a sequence of calls fix every proposal) and
//! lets the same proposer run against real instruments, simulators or a lookup table ([`backtest`]).
//!
//! Pipeline and modules:
//! - [`file`](mod@file) mirrors the campaign RON exactly; [`campaign`] checks it section by section, reporting every
//!   problem at once as [`protocols::Diagnostic`]s with codes (`C0001`…) and hints;
//! - [`space`] holds what may vary, the constraints, and the coordinates and features proposers work with;
//! - [`objective`] holds what is optimised, and the one place the sign is flipped for maximisation; [`pareto`]
//!   holds Pareto fronts and hypervolumes for several objectives;
//! - [`proposer`] holds the ask/tell interface, the proposers, the acquisition functions and their search;
//! - [`surrogate`] holds the models: Gaussian-process regression and the feasibility classifier;
//! - [`stop`] holds the early-stopping rules;
//! - [`backtest`] runs a campaign's proposer against a lookup table instead of a lab, and [`bench`](mod@bench) is the
//!   benchmark suite (analytic test functions and a chemistry lookup table) behind `lab bench learn`.

pub mod backtest;
pub mod bench;
pub mod campaign;
pub mod file;
pub mod objective;
pub mod pareto;
pub mod proposer;
pub mod space;
pub mod stop;
pub mod surrogate;

pub use campaign::{Campaign, load_campaign, reagents_at};
pub use objective::{Direction, Objective};
pub use pareto::{hypervolume, pareto_front};
pub use proposer::{
    Acquisition, GpProposer, ModelError, Observation, Outcome, Point, Problem, Proposal, Proposer, ProposerConfig,
    RandomProposer, SpaceFillingProposer,
};
pub use space::{Dim, Encoding, Kind, Level, LinearConstraint, PointError, Space};
pub use stop::{StopReason, StopRules};
