//! Models of results: Gaussian-process regression for objectives, and a Gaussian-process classifier for
//! whether an experiment succeeds.
//!
//! Written here rather than taken from a crate because a lab's proposer needs, all at once: anisotropic Matérn
//! kernels with learned noise and priors, exact gradients of the likelihood (for fast, deterministic
//! hyperparameter fits with no thread pool) and of the predictions (for precise acquisition maximisation),
//! rank-one growth of a fitted model (for Kriging-believer batches), and per-point noise (for the classifier's
//! Laplace approximation). Everything is pure Rust on `Vec<f64>`, with no BLAS.
//!
//! - [`linalg`]: Cholesky factors and triangular solves;
//! - [`optimize`]: projected L-BFGS, for hyperparameters and acquisition functions;
//! - [`gp`]: the regression model and its maximum-a-posteriori fit;
//! - [`kernel`]: the kernel's correlation functions, Matérn 5/2 and squared exponential;
//! - [`additive`]: an additive part for the kernel, over each parameter's inputs alone;
//! - [`priors`]: the priors and bounds of that fit, interpolating or noisy;
//! - [`classifier`]: the feasibility classifier.

pub mod additive;
pub mod classifier;
pub mod gp;
pub mod kernel;
pub mod linalg;
pub mod optimize;
pub mod priors;
