//! A simulated VICI Valco selector valve on a universal electric actuator, multiposition mode (`AM3`).
//!
//! A command ends at CR (a LF is dropped, so `DEL3` hosts work too). With a device ID set, the actuator answers
//! only commands prefixed `/ID` (RS-485) or `ID`; without one it answers everything. Replies end in CR. Commands:
//! `CP` (the current port, `CPnn` [U: zero-padded to two digits]), `GOnn` (turn to port nn by the shortest route;
//! no reply in `IFM0`, the mode the driver sets), `HM` (home, to port 1), `NP` (`NPnn`, the number of ports),
//! `AM` (`AM3`), `IFMn` (the reply mode; only recorded), `ID` (`IDZ`, or `ID not used` without an ID [U]),
//! and `VR` (one line of firmware version [U: a real actuator may send several]). The manual defines no error
//! reply, so unknown commands and positions out of range are ignored in silence.
//!
//! A move takes [`STEP_TIME`] lab seconds per port passed; `CP` reports the port the valve left until it arrives
//! [U], and the bench records each arrival, so a pump fed through the valve draws from the new port's reservoir.

use bytes::BytesMut;

use super::Simulator;
use super::bench::Bench;
use super::pty::Wire;
use crate::clock::Clock;
use crate::lab::ValveConfig;

/// Lab seconds per port passed.
pub const STEP_TIME: f64 = 0.1;

/// The firmware version `VR` reports.
const VERSION: &str = "VICI EUH 1.06 (simulated)";

/// Longest command kept while waiting for its end.
const MAX_LINE: usize = 64;

pub(crate) struct ValveSim {
    name: String,
    id: Option<char>,
    positions: u32,
    bench: Bench,
    clock: Clock,
    /// Where the valve stands, or the port it left while it moves.
    at: u32,
    /// A move under way: the port it goes to and when it arrives.
    moving: Option<(u32, f64)>,
}

impl ValveSim {
    pub(crate) fn new(name: &str, config: &ValveConfig, bench: Bench, clock: Clock) -> Self {
        ValveSim {
            name: name.to_owned(),
            id: config.id,
            positions: config.positions,
            bench,
            clock,
            at: 1,
            moving: None,
        }
    }

    /// Completes a move that has arrived by now.
    fn settle(&mut self) {
        if let Some((to, end)) = self.moving
            && self.clock.now() >= end
        {
            self.at = to;
            self.moving = None;
            self.bench.valve_moved(&self.name, to);
        }
    }

    /// Ports passed on the shortest way from `a` to `b` round the valve.
    fn distance(&self, a: u32, b: u32) -> u32 {
        let d = a.abs_diff(b);
        d.min(self.positions - d)
    }

    fn go(&mut self, to: u32) {
        self.settle();
        let from = self.moving.map_or(self.at, |(t, _)| t);
        let steps = self.distance(from, to);
        let start = self.moving.map_or(self.clock.now(), |(_, end)| end.max(self.clock.now()));
        self.moving = Some((to, start + f64::from(steps) * STEP_TIME));
    }

    /// The reply to one command, if it has one.
    fn execute(&mut self, command: &str) -> Option<String> {
        self.settle();
        if let Some(n) = command.strip_prefix("GO") {
            let n: u32 = n.parse().ok()?;
            if (1..=self.positions).contains(&n) {
                self.go(n);
            }
            return None;
        }
        if command.starts_with("IFM") {
            // Only the reply mode the driver sets, IFM0 (no reply to moves), is simulated.
            return None;
        }
        match command {
            "CP" => Some(format!("CP{:02}", self.at)),
            "HM" => {
                self.go(1);
                None
            }
            "NP" => Some(format!("NP{:02}", self.positions)),
            "AM" => Some("AM3".into()),
            "ID" => Some(self.id.map_or("ID not used".into(), |c| format!("ID{c}"))),
            "VR" => Some(VERSION.into()),
            _ => None,
        }
    }

    /// The command of a line addressed to this actuator, without its ID prefix.
    fn addressed<'a>(&self, line: &'a str) -> Option<&'a str> {
        let line = line.trim();
        match self.id {
            None => Some(line.strip_prefix('/').unwrap_or(line)),
            Some(id) => {
                let rest = line.strip_prefix('/').unwrap_or(line);
                rest.strip_prefix(id)
            }
        }
    }
}

impl Simulator for ValveSim {
    fn frame(&mut self, input: &mut BytesMut) -> Option<Vec<u8>> {
        loop {
            let Some(end) = input.iter().position(|&b| b == b'\r') else {
                if input.len() > MAX_LINE {
                    input.clear();
                }
                return None;
            };
            let line = input.split_to(end + 1);
            let text: Vec<u8> = line[..end].iter().copied().filter(|&b| b != b'\n').collect();
            if !text.is_empty() && text.len() <= MAX_LINE {
                return Some(text);
            }
        }
    }

    async fn handle(&mut self, command: Vec<u8>, wire: &mut Wire) -> bool {
        let Ok(line) = std::str::from_utf8(&command) else { return true };
        let Some(command) = self.addressed(line) else { return true };
        match self.execute(command) {
            Some(answer) => wire.reply(format!("{answer}\r").as_bytes()).await,
            None => true,
        }
    }
}
