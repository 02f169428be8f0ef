//! # devices: instruments, their wire protocols, and simulators that speak them
//!
//! Layering, bottom to top: [`transport`] opens ports and carries every byte (and reports every exchange);
//! each driver in [`drivers`] frames its instrument's wire protocol with a `tokio_util` decoder and implements the
//! small capability traits of [`capability`] (dispense, heat, stir, measure, transfer, weigh, select, read and
//! hold a temperature, stop); the controller only ever
//! calls [`capability::execute`] on a `Box<dyn Instrument>`, so it never knows a vendor. [`lab`] reads the lab file
//! that says which instruments exist, where, behind which driver and port, with which limits.
//!
//! [`sim`] holds a simulator for every driver. Each answers on a pseudo-terminal in the instrument's real wire
//! format, and all of them act on one shared virtual bench (vessels, where they stand, what is in them, how they
//! were heated), whose hidden chemistry decides what the spectrometer reads. The controller opens a simulator's
//! port through the same [`transport::open_serial`] as a real one.
//!
//! Simulators inject the faults a lab file configures (latency, silence, garbled, truncated or badly checksummed
//! replies, busy instruments, firmware errors, disconnects, partial moves), and keep a ledger of what physically
//! happened, so tests can compare the record with the truth. [`replay`] runs a driver against a recorded session
//! and reports where its bytes differ. [`readback`] settles a step left in doubt (the controller stopped while it
//! ran) from what its instrument reports of its state and what the record holds of the step.
//!
//! This crate knows nothing of scheduling, ECS or SQLite. Time comes from an injected [`clock::Clock`].

pub mod capability;
pub mod clock;
pub mod declared;
pub mod drivers;
pub mod error;
pub mod lab;
pub mod modbus_map;
pub mod models;
pub mod probe;
pub mod readback;
pub mod references;
pub mod replay;
pub mod sim;
pub mod transport;

pub use capability::{Identity, Instrument, Outcome, Place, Task, execute};
pub use clock::Clock;
pub use error::{DeviceError, DeviceErrorKind};
pub use lab::{InstrumentSpec, Lab, PortSpec, load_lab};
pub use transport::{Exchange, ExchangeSink, LineSettings};
