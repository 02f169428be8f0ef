//! A fleet: one campaign across several workcells, one learner, one view of every record, on PostgreSQL.
//!
//! The hub is a PostgreSQL database ([`hub`]): it arbitrates proposals and holds a verified copy of every workcell's
//! journal. Every atomic step is a PostgreSQL transaction, key or lock, never a protocol of our own:
//! - the learner ([`learner`], `lab fleet learn`) holds an advisory lock per campaign, publishes proposals with what
//!   a workcell needs to run them, and learns from the results the workcells' journals bring; a standby waits for
//!   the lock and rebuilds the same proposer from the hub's record of asks and results;
//! - a workcell ([`workcell`], `lab workcell`) claims open proposals its instruments can run ([`capability`]) with
//!   `FOR UPDATE SKIP LOCKED` ([`feed`]), records each claim in its own `lab.db` before an experiment starts from it,
//!   runs experiments with the same scheduler and record as `lab campaign`, and ships its journal to the hub
//!   ([`ship`]), idempotently and in order; the hub checks the hash chain of every row as it arrives (a trigger) and
//!   projects it into twins of `lab.db`'s tables ([`project`]);
//! - a claim moves only by its workcell's journal (a result, a release) or an operator ([`operate`]: retire, settle):
//!   never on a timeout, since a hub cut off from a workcell cannot tell "started" from "never started".
//!
//! Each `lab.db` stays the source of truth and the outbox: a workcell that loses its link keeps running what it has
//! claimed and ships the rows when the link returns. Nothing here is used by `lab campaign`, which never opens a
//! socket.

pub mod capability;
pub mod feed;
pub mod hub;
pub mod instant;
pub mod learner;
pub mod operate;
pub mod project;
pub mod ship;
pub mod verify;
pub mod workcell;

pub use hub::{FleetError, Hub};
