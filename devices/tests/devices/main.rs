//! The device tests, as one binary: each driver against literal wire exchanges and against its simulator through
//! a real pseudo-terminal, every injected fault, replays of recorded sessions, steps in doubt settled by reading
//! instruments back, and the whole simulated bench running the demo protocol's physical steps.

mod bench;
mod cavro;
mod common;
mod declared;
mod faults;
mod flame;
mod gantry;
mod garbage;
mod ika;
mod independent;
mod mettler;
mod modbus;
mod probe;
mod readback;
mod replay;
mod scpi;
mod vici;
