//! The simulator of a declared instrument, made from the same declaration as its driver.
//!
//! A request is framed by the declaration's terminator; a request for another address (its prefix differs) or
//! with a checksum that does not match is ignored, as on a bus. The body is matched against every command's
//! `send` template read as a pattern (the most literal one wins), and the reply is the command's `reply` template
//! written back with, for each placeholder: what the bench says now if the placeholder is a field a capability
//! binding reads (a pump's state and delivered volume, a flow, a bath temperature, a weight and whether it is
//! stable, a temperature); else the value last sent to it (a set point, a syringe diameter, both read back as set);
//! else a setting (the address); else what identify's model template gives for the lab file's model (an NE-1000
//! answers `NE1000`); else the command's `sim` value; else a blank of its spec. A command it does not know is
//! answered with the declaration's unknown-command class, or with silence where silence says so.
//!
//! Physics follows the bindings: a pump pumps at the rate set, from the moment it starts until its volume has
//! passed or it is stopped, into the vessel at its position (the bench integrates this lazily, on the next
//! command); a flow controller passes its set flow (a liquid into the vessel, a gas through it); a temperature
//! controller drives the bench's plate at its position (set point, control on and off); a balance weighs what
//! stands on its pan (blank unit until [`SETTLE`] lab seconds after anything changed there, net of what was zeroed);
//! a thermometer reads the vessel at its position. Commands that change something may draw the lab file's faults:
//! `busy` answers the declaration's busy class and `firmware_error` its error class, without acting; `partial`
//! stalls a pump halfway, and its status then answers the alarm class. `bad_checksum` breaks the checksum of a
//! reply frame that has one.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::BytesMut;

use super::Simulator;
use super::bench::{Bench, PlateCommand};
use super::pty::Wire;
use crate::clock::Clock;
use crate::declared::{Captures, ClassKind, Command, Declaration, Dispense, Medium, Template, Value, sample_value};
use crate::lab::DeclaredConfig;

/// Lab seconds a balance's weight takes to settle after the load changed.
pub const SETTLE: f64 = 2.0;

/// A pump's run.
#[derive(Debug, Clone, Copy, Default)]
struct Pump {
    /// Pumping now.
    running: bool,
    /// µL/min.
    rate: f64,
    /// µL still to go in this run.
    left: f64,
    /// µL delivered since cleared.
    delivered: f64,
    /// Lab time the pump was last brought up to date.
    since: f64,
    /// A stall ends the run when `left` falls to this.
    stall_at: Option<f64>,
    /// The run ended in a stall, which status reports once.
    stalled: bool,
}

/// The simulator.
pub(super) struct DeclaredSim {
    name: String,
    decl: Arc<Declaration>,
    settings: BTreeMap<String, Value>,
    identity: Captures,
    prefix: Vec<u8>,
    terminator: Vec<u8>,
    position: String,
    reservoir: String,
    gas: Option<String>,
    bench: Bench,
    clock: Clock,
    /// Wire values last sent, by placeholder name.
    vars: BTreeMap<String, Value>,
    pump: Pump,
    /// A flow controller's flow, µL/min, and when it was last integrated.
    flow: (f64, f64),
    /// What the balance was zeroed at, grams.
    tare: f64,
}

impl DeclaredSim {
    pub(super) fn new(name: &str, config: &DeclaredConfig, position: &str, bench: Bench, clock: Clock) -> Self {
        let decl = Arc::clone(&config.declaration);
        let settings = config.settings.clone();
        let render = |t: &Template| t.render(&|n| settings.get(n).cloned()).unwrap_or_default();
        let identity = decl.identify.model.matches(&config.model).unwrap_or_default();
        let (reservoir, gas) = match &decl.dispense {
            Some(Dispense::Run { reservoir, .. }) => (render(reservoir), None),
            Some(Dispense::Flow { reservoir, medium, .. }) => (
                render(reservoir),
                match medium {
                    Medium::Gas(g) => Some(render(g)),
                    Medium::Liquid => None,
                },
            ),
            None => (String::new(), None),
        };
        DeclaredSim {
            name: name.to_owned(),
            prefix: render(&decl.request.prefix).into_bytes(),
            terminator: render(&decl.request.terminator).into_bytes(),
            settings,
            identity,
            position: position.to_owned(),
            reservoir,
            gas,
            bench,
            clock,
            vars: BTreeMap::new(),
            pump: Pump::default(),
            flow: (0.0, 0.0),
            tare: 0.0,
            decl,
        }
    }

    /// The command `body` is, with its arguments: the matching `send` pattern with the most literal text.
    fn recognise(&self, body: &str) -> Option<(Arc<Declaration>, String, Captures)> {
        let literal = |c: &Command| c.send.text.len() - c.send.names().map(|n| n.len() + 2).sum::<usize>();
        let best = self
            .decl
            .commands
            .values()
            .filter_map(|c| c.send.matches(body).map(|caps| (c, caps)))
            .max_by_key(|(c, _)| literal(c))?;
        Some((Arc::clone(&self.decl), best.0.name.clone(), best.1))
    }

    /// Brings a running pump or flow up to now, moving liquid or gas on the bench.
    fn advance(&mut self) {
        let now = self.clock.now();
        if self.pump.running {
            let dt = (now - self.pump.since).max(0.0);
            let floor = self.pump.stall_at.unwrap_or(0.0);
            let moved = (self.pump.rate * dt / 60.0).min(self.pump.left - floor).max(0.0);
            self.pump.left -= moved;
            self.pump.delivered += moved;
            self.bench.dispense(&self.name, &self.position, &self.reservoir, moved);
            if self.pump.left <= floor + 1e-9 {
                self.pump.running = false;
                self.pump.stalled = self.pump.stall_at.take().is_some();
            }
        }
        self.pump.since = now;
        let (flow, since) = self.flow;
        let passed = flow * (now - since).max(0.0) / 60.0;
        match &self.gas {
            Some(g) => self.bench.sparge(&self.name, &self.position, g, passed),
            None => self.bench.dispense(&self.name, &self.position, &self.reservoir, passed),
        }
        self.flow.1 = now;
    }

    /// The scale of value `name` of command `command`.
    fn scale(&self, command: &str, name: &str) -> f64 {
        self.decl.command(command).map_or(1.0, |c| c.value(name).scale)
    }

    /// Acts on a command's arguments (engineering values) as the bindings say; false if a stall was drawn for it.
    fn act(&mut self, command: &str, args: &Captures, wire: &mut Wire) {
        let decl = Arc::clone(&self.decl);
        let scales = decl.command(command);
        let eng =
            |arg: &str| args.get(arg).and_then(Value::number).map(|v| v * scales.map_or(1.0, |c| c.value(arg).scale));
        match &decl.dispense {
            Some(Dispense::Run { clear, rate, volume, start, stop, .. }) => {
                if clear.as_ref().is_some_and(|c| self.is_call(c, command, args)) {
                    self.pump.delivered = 0.0;
                }
                if rate.command == command
                    && let Some(r) = eng(&rate.arg)
                {
                    self.pump.rate = r.max(0.0);
                }
                if volume.command == command
                    && let Some(v) = eng(&volume.arg)
                {
                    self.pump.left = v.max(0.0);
                }
                if self.is_call(start, command, args) && !self.pump.running && self.pump.left > 0.0 {
                    self.pump.running = true;
                    self.pump.stalled = false;
                    self.pump.since = self.clock.now();
                    self.pump.stall_at = wire.partial().then_some(self.pump.left / 2.0);
                }
                if self.is_call(stop, command, args) {
                    self.pump.running = false;
                    self.pump.left = 0.0;
                    self.pump.stall_at = None;
                }
            }
            Some(Dispense::Flow { set, scale, .. }) => {
                if set.command == command
                    && let Some(f) = eng(&set.arg)
                {
                    self.flow.0 = (f * scale).max(0.0);
                }
            }
            None => {}
        }
        if let Some(h) = &decl.hold_temperature {
            let position = self.position.clone();
            self.bench.plate_command(&position, PlateCommand::Contact);
            if h.set.command == command
                && let Some(t) = eng(&h.set.arg)
            {
                self.bench.plate_command(&position, PlateCommand::SetPoint(t));
                if h.start.is_none() {
                    self.bench.plate_command(&position, PlateCommand::Heater(true));
                }
            }
            if h.start.as_ref().is_some_and(|c| self.is_call(c, command, args)) {
                self.bench.plate_command(&position, PlateCommand::Heater(true));
            }
            if h.stop.as_ref().is_some_and(|c| self.is_call(c, command, args)) {
                self.bench.plate_command(&position, PlateCommand::Heater(false));
            }
        }
        if let Some(z) = decl.weigh.as_ref().and_then(|w| w.zero.as_ref())
            && self.is_call(z, command, args)
        {
            self.tare = self.bench.load_at(&self.position).0;
        }
    }

    /// Whether `command` with `args` (wire values) is `call`: the same command with the arguments the call gives
    /// (a `control` of 1 starts, of 0 stops).
    fn is_call(&self, call: &crate::declared::Call, command: &str, args: &Captures) -> bool {
        call.command == command
            && call.args.iter().all(|(name, t)| {
                let want = t.render(&|n| self.settings.get(n).cloned()).unwrap_or_default();
                match (args.get(name), want.trim().parse::<f64>()) {
                    (Some(Value::Number(got)), Ok(w)) => {
                        let scale = self.scale(command, name);
                        (got * scale - w).abs() <= 1e-9 * w.abs().max(1.0)
                    }
                    (Some(got), _) => got.text() == want,
                    (None, _) => false,
                }
            })
    }

    /// What the bench says for field `name` of `command`'s reply, in wire units, if a binding reads it.
    fn live(&mut self, command: &str, name: &str) -> Option<Value> {
        let decl = Arc::clone(&self.decl);
        let wire = |v: f64| Value::Number(v / self.scale(command, name));
        if let Some(Dispense::Run { running, running_values, idle, delivered, .. }) = &decl.dispense {
            if running.command == command && running.field == name {
                let state = if self.pump.running { running_values.first().unwrap_or(idle) } else { idle };
                return Some(Value::Text(state.clone()));
            }
            if delivered.command == command && delivered.field == name {
                return Some(wire(self.pump.delivered));
            }
        }
        if let Some(Dispense::Flow { read, scale, .. }) = &decl.dispense
            && read.command == command
            && read.field == name
        {
            return Some(wire(self.flow.0 / scale));
        }
        if let Some(h) = &decl.hold_temperature
            && h.read.command == command
            && h.read.field == name
        {
            return self.bench.plate_readings(&self.position).map(|r| wire(r.temperature));
        }
        if let Some(w) = &decl.weigh
            && w.read.command == command
        {
            let (grams, _, changed) = self.bench.load_at(&self.position);
            let stable = self.clock.now() >= changed + SETTLE;
            if w.unit.as_deref() == Some(name) {
                return Some(Value::Text(if stable { "g".into() } else { String::new() }));
            }
            if w.read.field == name {
                if stable {
                    self.bench.weighed(&self.name, &self.position, grams);
                }
                // Four decimals, as an analytical balance shows.
                return Some(wire(((grams - self.tare) * 1e4).round() / 1e4));
            }
        }
        if let Some(f) = &decl.read_temperature
            && f.command == command
            && f.field == name
        {
            return Some(wire(self.bench.temperature_at(&self.position)));
        }
        None
    }

    /// Writes `template` (a reply or a class) for `command`, each placeholder from the bench, what was sent, the
    /// settings, the model, or the command's defaults.
    fn render(&mut self, template: &Template, command: Option<&Command>) -> Option<String> {
        let mut values = BTreeMap::new();
        for name in template.names() {
            if values.contains_key(name) {
                continue;
            }
            let live = command.and_then(|c| self.live(&c.name, name));
            let decl = Arc::clone(&self.decl);
            let state = match &decl.dispense {
                Some(Dispense::Run { running, .. }) if running.field == name => self.live(&running.command, name),
                _ => None,
            };
            let v = live
                .or_else(|| self.vars.get(name).cloned())
                .or_else(|| self.settings.get(name).cloned())
                .or_else(|| self.identity.get(name).cloned())
                .or(state)
                .or_else(|| command.and_then(|c| sample_value(&self.decl, c, name)))
                .or_else(|| template.spec_of(name).map(crate::declared::Spec::blank));
            if let Some(v) = v {
                values.insert(name.to_owned(), v);
            }
        }
        template.render(&|n| values.get(n).cloned()).ok()
    }

    /// The first class of a kind, written out.
    fn class(&mut self, kind: fn(&ClassKind) -> bool) -> Option<String> {
        let decl = Arc::clone(&self.decl);
        let class = decl.classes.iter().find(|c| kind(&c.is))?;
        self.render(&class.reply, None)
    }

    async fn send(&mut self, text: &str, wire: &mut Wire) -> bool {
        let mut bytes = Vec::new();
        let mut at = None;
        for line in text.split('\n') {
            let (b, c) = self.decl.frame.wrap(line);
            at = c.map(|c| bytes.len() + c);
            bytes.extend(b);
        }
        match at {
            Some(c) => wire.reply_with_checksum_at(&bytes, c).await,
            None => wire.reply(&bytes).await,
        }
    }
}

impl Simulator for DeclaredSim {
    fn frame(&mut self, input: &mut BytesMut) -> Option<Vec<u8>> {
        let t = &self.terminator;
        let end = input.windows(t.len()).position(|w| w == t.as_slice())?;
        let frame = input.split_to(end + t.len());
        // Line ends left over from another protocol's request (an LF after a CR-terminated command) are not part
        // of this one.
        let start = frame[..end].iter().position(|b| !matches!(b, b'\r' | b'\n')).unwrap_or(end);
        Some(frame[start..end].to_vec())
    }

    async fn handle(&mut self, command: Vec<u8>, wire: &mut Wire) -> bool {
        // Another instrument's address, or a damaged request: a bus instrument stays silent.
        let Some(rest) = command.strip_prefix(self.prefix.as_slice()) else { return true };
        let body = match &self.decl.request.checksum {
            Some(c) => {
                let w = c.width();
                if command.len() < w {
                    return true;
                }
                let (data, sum) = command.split_at(command.len() - w);
                if c.of(data) != sum {
                    return true;
                }
                &rest[..rest.len().saturating_sub(w)]
            }
            None => rest,
        };
        let Ok(body) = std::str::from_utf8(body) else { return true };
        self.advance();
        let Some((decl, name, captures)) = self.recognise(body) else {
            let answer = match decl_silent(&self.decl) {
                true => None,
                false => self.class(|k| matches!(k, ClassKind::Unknown)),
            };
            return match answer {
                Some(t) => self.send(&t, wire).await,
                None => true,
            };
        };
        let Some(cmd) = decl.command(&name) else { return true };
        let changes = cmd.acts || !cmd.args.is_empty();
        if changes
            && wire.busy()
            && let Some(t) = self.class(|k| matches!(k, ClassKind::Busy(_)))
        {
            return self.send(&t, wire).await;
        }
        if changes
            && wire.firmware_error()
            && let Some(t) = self.class(|k| matches!(k, ClassKind::Error(_)))
        {
            return self.send(&t, wire).await;
        }
        for a in &cmd.args {
            if let Some(v) = captures.get(a) {
                self.vars.insert(a.clone(), v.clone());
            }
        }
        self.act(&name, &captures, wire);
        let Some(reply) = &cmd.reply else { return true };
        // A stalled pump answers its status with the alarm, once.
        if let Some(Dispense::Run { running, .. }) = &decl.dispense
            && running.command == name
            && self.pump.stalled
        {
            self.pump.stalled = false;
            if let Some(t) = self.class(|k| matches!(k, ClassKind::Alarm(_))) {
                return self.send(&t, wire).await;
            }
        }
        match self.render(reply, Some(cmd)) {
            Some(t) => self.send(&t, wire).await,
            None => match self.class(|k| matches!(k, ClassKind::Error(_))) {
                Some(t) => self.send(&t, wire).await,
                None => true,
            },
        }
    }
}

/// Whether the instrument ignores commands it does not know.
fn decl_silent(decl: &Declaration) -> bool {
    decl.silence == crate::declared::Silence::UnknownCommand
        || !decl.classes.iter().any(|c| matches!(c.is, ClassKind::Unknown))
}
