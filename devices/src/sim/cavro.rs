//! A simulated Cavro XCalibur syringe pump (DT protocol).
//!
//! Frames are `/`, address, data, CR; anything before the last `/` of a line is line noise and ignored, and frames
//! for another address are ignored (the broadcast address `_` runs without answering). Commands:
//! `Z`/`Y` initialize (2 lab s: plunger home, pushing what the syringe holds through the output, then valve to
//! input), `W` initializes the plunger only (home through the valve as it stands) and `w` the valve only (to the
//! input) [U: the manual's operands of `w` choose a port on distribution valves; this three-way valve has one
//! input], `I`/`O`/`B` valve, `A`/`P`/`D` and the
//! non-busy `a`/`p`/`d` plunger moves (0..=3000 increments), `V` top speed, `M` delay, `R` run, `T` terminate, and
//! the reports `Q`, `?`, `?1`..`?4`, `?6`, `?10`/`F`, `?23`/`&`. Without `R` an action string is stored, a second
//! overwriting the first. Errors follow the manual: unknown commands 2, bad operands 3, moves before initializing
//! 7, plunger moves with the valve in bypass 11, actions while the plunger moves 15. A string that fails partway
//! runs its valid prefix and reports the error through `Q` once that has finished.
//!
//! Moves take `|Δ| / V` lab seconds and valve switches [`VALVE_SWITCH`]; liquid moves when a move completes (or
//! is cut short by `T`): pulled from the reservoir through the input, pushed into the vessel at the pump's
//! position through the output (a spill if none stands there), and drawn back from that vessel when pulling
//! through the output. Simplifications: the loop (`g`/`G`) and halt (`H`) are not simulated.
//!
//! The OEM protocol is detected as the firmware does: a frame starting with STX is OEM, and once one has been seen
//! DT frames are ignored until the simulator restarts. An OEM frame whose checksum does not match is ignored (the
//! host repeats it); a frame with the repeat bit set and the sequence number of the previous frame is answered
//! with the previous answer again, without running the command twice.
//!
//! Faults, drawn for command strings that would run (`R`): `busy` answers error 15 (command overflow) without
//! running; `firmware_error` answers error 6 (EEPROM failure) without running; `partial` runs the string but stops
//! its last plunger move halfway with error 9 (plunger overload), which leaves the pump needing initialization,
//! as the manual says an overload does. Liquid moves only as far as the plunger did.

use std::collections::VecDeque;

use bytes::{Buf, BytesMut};

use super::Simulator;
use super::bench::Bench;
use super::line::Drawn;
use super::pty::Wire;
use crate::clock::Clock;
use crate::drivers::cavro::{ETX, FULL_STROKE, STX, VALVE_SWITCH, xor};
use crate::lab::CavroConfig;

/// Lab seconds an initialization takes.
const INIT_TIME: f64 = 2.0;

/// The broadcast address.
const BROADCAST: u8 = b'_';

/// The firmware report.
const FIRMWARE: &str = "XCalibur 1.21 (simulated)";

/// Longest line kept while waiting for its CR.
const MAX_LINE: usize = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Valve {
    Input,
    Output,
    Bypass,
}

impl Valve {
    fn report(self) -> char {
        match self {
            Valve::Input => 'i',
            Valve::Output => 'o',
            Valve::Bypass => 'b',
        }
    }
}

/// One parsed command of a string: its letter and numeric operands.
#[derive(Debug, Clone, PartialEq)]
struct Command {
    letter: u8,
    args: Vec<u32>,
}

/// Something scheduled to happen.
#[derive(Debug, Clone, Copy)]
enum Op {
    Init { end: f64, through: Valve, valve_to: Option<Valve> },
    Valve { end: f64, to: Valve },
    Plunger { start: f64, end: f64, from: f64, to: f64 },
    Delay { end: f64 },
}

impl Op {
    fn end(&self) -> f64 {
        match *self {
            Op::Init { end, .. } | Op::Valve { end, .. } | Op::Plunger { end, .. } | Op::Delay { end } => end,
        }
    }
}

/// A command string being scheduled: the state the pump will be in after the commands planned so far.
struct Plan {
    t: f64,
    busy_end: f64,
    initialized: bool,
    plunger: f64,
    valve: Valve,
    ops: Vec<Op>,
}

pub(crate) struct XCaliburSim {
    name: String,
    address: u8,
    microlitres_per_increment: f64,
    reservoir: String,
    /// What the syringe holds, by what was drawn (reagent and bottle), oldest first: a push empties it in order.
    held: VecDeque<Drawn>,
    position: String,
    bench: Bench,
    clock: Clock,
    initialized: bool,
    speed: u32,
    valve: Valve,
    plunger: f64,
    ops: VecDeque<Op>,
    busy_until: f64,
    moving_until: f64,
    stored: Option<Vec<Command>>,
    /// An error raised partway through a string: its code, and when the valid prefix finishes.
    deferred: Option<(u8, f64)>,
    /// Whether an OEM frame has been seen, after which DT frames are ignored.
    oem: bool,
    /// The sequence number of the last OEM frame and the answer body it got, for repeats.
    last_oem: Option<(u8, Vec<u8>)>,
}

impl XCaliburSim {
    pub(crate) fn new(name: &str, config: &CavroConfig, position: &str, bench: Bench, clock: Clock) -> Self {
        XCaliburSim {
            name: name.to_owned(),
            address: b'0'.saturating_add(config.address),
            microlitres_per_increment: config.syringe.0 / f64::from(FULL_STROKE),
            reservoir: config.reservoir.reagent.clone(),
            held: VecDeque::new(),
            position: position.to_owned(),
            bench,
            clock,
            initialized: false,
            speed: 1400,
            valve: Valve::Input,
            plunger: 0.0,
            ops: VecDeque::new(),
            busy_until: 0.0,
            moving_until: 0.0,
            stored: None,
            deferred: None,
            oem: false,
            last_oem: None,
        }
    }

    /// Applies everything scheduled to have finished by `now`.
    fn settle(&mut self, now: f64) {
        while self.ops.front().is_some_and(|op| op.end() <= now) {
            if let Some(op) = self.ops.pop_front() {
                self.finish(op, None);
            }
        }
    }

    /// Completes `op`, or cuts a plunger move short at lab time `cut`.
    fn finish(&mut self, op: Op, cut: Option<f64>) {
        match op {
            Op::Init { through, valve_to, .. } => {
                if cut.is_none() {
                    // Homing pushes whatever the syringe holds out through the valve: into the vessel through the
                    // output, back into the reservoir through the input.
                    let held = self.plunger * self.microlitres_per_increment;
                    if through == Valve::Output {
                        self.push_out(held);
                    } else {
                        let parts = self.take_held(held);
                        self.bench.give_back(&self.name, parts);
                    }
                    self.plunger = 0.0;
                    if let Some(v) = valve_to {
                        self.valve = v;
                    }
                    self.initialized = true;
                }
            }
            Op::Valve { to, .. } => self.valve = to,
            Op::Plunger { start, end, from, to } => {
                let reached = match cut {
                    Some(t) if end > start => from + (to - from) * ((t - start) / (end - start)).clamp(0.0, 1.0),
                    _ => to,
                };
                let volume = (reached - from).abs() * self.microlitres_per_increment;
                match (self.valve, reached < from) {
                    (Valve::Output, true) => self.push_out(volume),
                    (Valve::Output, false) => {
                        // What comes back from the vessel goes out again as the pump's own liquid, as it always did.
                        self.bench.withdraw(&self.name, &self.position, volume);
                        self.held.push_back(Drawn { reagent: self.reservoir.clone(), source: None, liquid: volume });
                    }
                    // Through the input the liquid comes from the bottle the input reaches now, or goes back to it.
                    (_, false) => {
                        let drawn = self.bench.draw(&self.name, &self.reservoir, volume);
                        self.held.extend(drawn);
                    }
                    (_, true) => {
                        let parts = self.take_held(volume);
                        self.bench.give_back(&self.name, parts);
                    }
                }
                self.plunger = reached;
            }
            Op::Delay { .. } => {}
        }
    }

    /// Takes `volume` microlitres of the syringe's contents, oldest first, as the parts drawn.
    fn take_held(&mut self, mut volume: f64) -> Vec<Drawn> {
        let mut out = Vec::new();
        while volume > 1e-9 {
            let Some(front) = self.held.front_mut() else { break };
            let take = front.liquid.min(volume);
            out.push(Drawn { liquid: take, ..front.clone() });
            front.liquid -= take;
            volume -= take;
            if front.liquid <= 1e-9 {
                self.held.pop_front();
            }
        }
        out
    }

    /// Pushes `volume` microlitres out through the output: what the syringe holds goes into the vessel at the
    /// pump's position. A syringe holding less than the plunger says (it drew air, or liquid from the vessel) adds
    /// only what it holds.
    fn push_out(&mut self, volume: f64) {
        for part in self.take_held(volume) {
            self.bench.dispense_drawn(&self.name, &self.position, &part);
        }
    }

    /// Stops at once: the move under way ends where it is, the rest is dropped.
    fn terminate(&mut self, now: f64) {
        self.settle(now);
        if let Some(op) = self.ops.pop_front() {
            self.finish(op, Some(now));
        }
        self.ops.clear();
        self.busy_until = now;
        self.moving_until = now;
        self.stored = None;
    }

    fn plunger_now(&self, now: f64) -> f64 {
        match self.ops.front() {
            Some(&Op::Plunger { start, end, from, to }) if now > start && end > start => {
                from + (to - from) * ((now - start) / (end - start)).clamp(0.0, 1.0)
            }
            _ => self.plunger,
        }
    }

    fn status(&self, now: f64, error: u8) -> u8 {
        0x40 | if now < self.busy_until { 0 } else { 0x20 } | (error & 0x0F)
    }

    /// An answer's body: the status byte and the report data, framed by [`dt`] or [`oem`].
    fn answer(&self, now: f64, error: u8, data: &str) -> Vec<u8> {
        let mut v = vec![self.status(now, error)];
        v.extend_from_slice(data.as_bytes());
        v
    }

    /// Handles the data of one frame addressed to this pump and returns the answer's body.
    fn execute(&mut self, data: &[u8], wire: &mut Wire) -> Vec<u8> {
        let now = self.clock.now();
        self.settle(now);
        if let Some(report) = self.report(data, now) {
            return report;
        }
        let Some(commands) = parse(data) else { return self.answer(now, 2, "") };
        match commands.as_slice() {
            [] => return self.answer(now, 0, ""),
            [Command { letter: b'T', args }] if args.is_empty() => {
                self.terminate(now);
                return self.answer(now, 0, "");
            }
            _ => {}
        }
        if commands.iter().any(|c| c.letter == b'T') || commands.iter().rev().skip(1).any(|c| c.letter == b'R') {
            return self.answer(now, 2, "");
        }
        let run = commands.last().is_some_and(|c| c.letter == b'R');
        let body: Vec<Command> = commands.into_iter().filter(|c| c.letter != b'R').collect();
        if !run {
            self.stored = Some(body);
            return self.answer(now, 0, "");
        }
        let body = if body.is_empty() { self.stored.take().unwrap_or_default() } else { body };
        let only_speed = body.iter().all(|c| c.letter == b'V');
        if now < self.moving_until && !only_speed {
            return self.answer(now, 15, "");
        }
        if wire.busy() {
            return self.answer(now, 15, "");
        }
        if wire.firmware_error() {
            return self.answer(now, 6, "");
        }
        // Only a string that moves the plunger can stop halfway; drawing the fault for any other would put a fault
        // in the ledger that changed nothing.
        let moves = body.iter().any(|c| matches!(c.letter, b'A' | b'P' | b'D' | b'a' | b'p' | b'd'));
        let partial = moves && wire.partial();
        self.deferred = None;
        // The answer carries the status from before the string runs: only `Q` reports busy reliably.
        let ready = self.answer(now, 0, "");
        match self.schedule(&body, now, partial) {
            Ok(()) => ready,
            Err((code, false)) => self.answer(now, code, ""),
            Err((code, true)) => {
                self.deferred = Some((code, self.moving_until));
                ready
            }
        }
    }

    /// Schedules a command string from `now`, its last plunger move cut short halfway if `partial`. On an error
    /// returns its code and whether an earlier part of the string was scheduled (which then runs).
    fn schedule(&mut self, body: &[Command], now: f64, partial: bool) -> Result<(), (u8, bool)> {
        let mut plan = Plan {
            t: now,
            busy_end: now,
            initialized: self.initialized,
            plunger: self.plunger,
            valve: self.valve,
            ops: Vec::new(),
        };
        let mut outcome = Ok(());
        for c in body {
            if let Err(code) = self.plan(c, &mut plan) {
                outcome = Err((code, !plan.ops.is_empty()));
                break;
            }
        }
        if outcome.as_ref().is_err_and(|&(_, ran)| !ran) {
            return outcome;
        }
        if partial
            && outcome.is_ok()
            && let Some(k) = plan.ops.iter().rposition(|op| matches!(op, Op::Plunger { .. }))
            && let Op::Plunger { start, end, from, to } = plan.ops[k]
        {
            let half = start + (end - start) / 2.0;
            plan.ops[k] = Op::Plunger { start, end: half, from, to: ((from + to) / 2.0).round() };
            plan.ops.truncate(k + 1);
            plan.t = half;
            plan.busy_end = half;
            // An overload stops the plunger where it is and needs a new initialization.
            self.initialized = false;
            outcome = Err((9, true));
        }
        self.ops.extend(plan.ops);
        self.busy_until = self.busy_until.max(plan.busy_end);
        self.moving_until = self.moving_until.max(plan.t);
        outcome
    }

    /// Adds one command to `plan`, or returns the error code it raises.
    fn plan(&mut self, c: &Command, plan: &mut Plan) -> Result<(), u8> {
        let arg = c.args.first().copied();
        let single = c.args.len() == 1;
        match c.letter {
            b'Z' | b'Y' | b'W' => {
                if c.args.len() > 3 || arg.is_some_and(|f| f > 40) {
                    return Err(3);
                }
                let (through, valve_to) =
                    if c.letter == b'W' { (plan.valve, None) } else { (Valve::Output, Some(Valve::Input)) };
                plan.ops.push(Op::Init { end: plan.t + INIT_TIME, through, valve_to });
                plan.t += INIT_TIME;
                plan.busy_end = plan.t;
                plan.initialized = true;
                plan.plunger = 0.0;
                if let Some(v) = valve_to {
                    plan.valve = v;
                }
            }
            b'w' => {
                if c.args.len() > 2 {
                    return Err(3);
                }
                if plan.valve != Valve::Input {
                    plan.t += VALVE_SWITCH;
                    plan.busy_end = plan.t;
                }
                plan.ops.push(Op::Valve { end: plan.t, to: Valve::Input });
                plan.valve = Valve::Input;
            }
            b'I' | b'O' | b'B' => {
                if !c.args.is_empty() {
                    return Err(3);
                }
                if !plan.initialized {
                    return Err(7);
                }
                let to = match c.letter {
                    b'I' => Valve::Input,
                    b'O' => Valve::Output,
                    _ => Valve::Bypass,
                };
                if to != plan.valve {
                    plan.t += VALVE_SWITCH;
                    plan.busy_end = plan.t;
                }
                plan.ops.push(Op::Valve { end: plan.t, to });
                plan.valve = to;
            }
            b'A' | b'P' | b'D' | b'a' | b'p' | b'd' => {
                let Some(n) = arg.filter(|_| single) else { return Err(3) };
                let n = f64::from(n);
                let to = match c.letter.to_ascii_uppercase() {
                    b'A' => n,
                    b'P' => plan.plunger + n,
                    _ => plan.plunger - n,
                };
                if !(0.0..=f64::from(FULL_STROKE)).contains(&to) {
                    return Err(3);
                }
                if !plan.initialized {
                    return Err(7);
                }
                if plan.valve == Valve::Bypass {
                    return Err(11);
                }
                let duration = (to - plan.plunger).abs() / f64::from(self.speed.max(1));
                plan.ops.push(Op::Plunger { start: plan.t, end: plan.t + duration, from: plan.plunger, to });
                plan.t += duration;
                if c.letter.is_ascii_uppercase() {
                    plan.busy_end = plan.t;
                }
                plan.plunger = to;
            }
            b'V' => match arg {
                Some(v) if single && (5..=6000).contains(&v) => self.speed = v,
                _ => return Err(3),
            },
            b'M' => match arg {
                Some(ms) if single && (5..=30_000).contains(&ms) => {
                    plan.t += f64::from(ms) / 1000.0;
                    plan.busy_end = plan.t;
                    plan.ops.push(Op::Delay { end: plan.t });
                }
                _ => return Err(3),
            },
            _ => return Err(2),
        }
        Ok(())
    }

    /// Answers a report command, if `data` is one.
    fn report(&mut self, data: &[u8], now: f64) -> Option<Vec<u8>> {
        let error = match self.deferred {
            Some((code, at)) if now >= at => code,
            _ => 0,
        };
        let text = match data {
            b"Q" => return Some(self.answer(now, error, "")),
            b"?" | b"?4" => format!("{:.0}", self.plunger_now(now)),
            b"?1" => "900".into(),
            b"?2" => self.speed.to_string(),
            b"?3" => "900".into(),
            b"?6" => self.valve.report().to_string(),
            b"?10" | b"F" => u8::from(self.stored.is_some()).to_string(),
            b"?23" | b"&" => FIRMWARE.into(),
            _ if data.first() == Some(&b'?') => return Some(self.answer(now, 2, "")),
            _ => return None,
        };
        Some(self.answer(now, 0, &text))
    }
}

/// Splits a command string into letters and comma-separated operands; `None` if it holds anything else.
fn parse(data: &[u8]) -> Option<Vec<Command>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < data.len() {
        let letter = data[i];
        if !letter.is_ascii_alphabetic() {
            return None;
        }
        i += 1;
        let mut args = Vec::new();
        while i < data.len() && data[i].is_ascii_digit() {
            let start = i;
            while i < data.len() && data[i].is_ascii_digit() {
                i += 1;
            }
            // At most six digits, so the operand fits; longer numbers are out of every range.
            let digits = &data[start..i];
            let value = if digits.len() > 6 { u32::MAX } else { std::str::from_utf8(digits).ok()?.parse().ok()? };
            args.push(value);
            if i < data.len() && data[i] == b',' && data.get(i + 1).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
        out.push(Command { letter, args });
    }
    Some(out)
}

/// A DT answer: `/0`, the body, ETX CR LF.
fn dt(body: &[u8]) -> Vec<u8> {
    let mut v = vec![b'/', b'0'];
    v.extend_from_slice(body);
    v.extend_from_slice(b"\x03\r\n");
    v
}

/// An OEM answer: STX, `0`, the body, ETX, the XOR of all of them.
fn oem(body: &[u8]) -> Vec<u8> {
    let mut v = vec![STX, b'0'];
    v.extend_from_slice(body);
    v.push(ETX);
    v.push(xor(&v));
    v
}

impl XCaliburSim {
    /// Answers an OEM frame (STX through checksum), or ignores it as the firmware does.
    async fn handle_oem(&mut self, frame: &[u8], wire: &mut Wire) -> bool {
        let n = frame.len();
        if n < 5 || frame[n - 2] != ETX || xor(&frame[..n - 1]) != frame[n - 1] {
            return true;
        }
        let (addr, seq, data) = (frame[1], frame[2], &frame[3..n - 2]);
        if (addr != self.address && addr != BROADCAST) || seq & 0xF0 != 0x30 {
            return true;
        }
        self.oem = true;
        let (repeat, number) = (seq & 0x08 != 0, seq & 0x07);
        let body = match &self.last_oem {
            Some((last, body)) if repeat && *last == number => body.clone(),
            _ => self.execute(data, wire),
        };
        self.last_oem = Some((number, body.clone()));
        if addr == BROADCAST {
            return true;
        }
        wire.reply(&oem(&body)).await
    }
}

impl Simulator for XCaliburSim {
    fn frame(&mut self, input: &mut BytesMut) -> Option<Vec<u8>> {
        loop {
            let stx = input.iter().position(|&b| b == STX);
            let cr = input.iter().position(|&b| b == b'\r');
            if let Some(s) = stx
                && (self.oem || cr.is_none_or(|c| s < c))
            {
                // Everything before STX is noise, or a DT frame the firmware no longer listens to.
                input.advance(s);
                let Some(etx) = input.iter().position(|&b| b == ETX) else {
                    if input.len() > MAX_LINE {
                        input.clear();
                    }
                    return None;
                };
                if input.len() < etx + 2 {
                    return None;
                }
                return Some(input.split_to(etx + 2).to_vec());
            }
            let Some(end) = cr else {
                if input.len() > MAX_LINE {
                    input.clear();
                }
                return None;
            };
            let line = input.split_to(end + 1);
            if self.oem {
                continue;
            }
            let line = &line[..end];
            // Everything before the last `/` is noise (a stray LF from a previous CR LF, a half-sent frame).
            let Some(start) = line.iter().rposition(|&b| b == b'/') else { continue };
            let frame = &line[start + 1..];
            if let Some(&addr) = frame.first()
                && (addr == self.address || addr == BROADCAST)
            {
                return Some(frame.to_vec());
            }
        }
    }

    async fn handle(&mut self, command: Vec<u8>, wire: &mut Wire) -> bool {
        if command.first() == Some(&STX) {
            return self.handle_oem(&command, wire).await;
        }
        let Some((&addr, data)) = command.split_first() else { return true };
        let body = self.execute(data, wire);
        if addr == BROADCAST {
            return true;
        }
        wire.reply(&dt(&body)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_strings_parse_into_letters_and_operands() {
        let c = parse(b"IA3000OA0R").unwrap();
        let letters: Vec<u8> = c.iter().map(|c| c.letter).collect();
        assert_eq!(letters, b"IAOAR");
        assert_eq!(c[1].args, vec![3000]);
        assert_eq!(parse(b"Z1,2,3R").unwrap()[0].args, vec![1, 2, 3]);
        assert!(parse(b"A-5").is_none());
        assert_eq!(parse(b"A99999999999R").unwrap()[0].args, vec![u32::MAX]);
    }
}
