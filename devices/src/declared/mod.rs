//! Instruments declared in RON: a driver and a simulator for an ASCII instrument without writing Rust.
//!
//! Most lab instruments speak request and reply in text. After EPICS StreamDevice, an instrument declaration
//! (`*.instrument.ron`) says everything a driver needs: the line settings; how a request is framed (a prefix such
//! as an address, a terminator, an optional checksum) and a reply ([`Frame`]: a terminator, start and end bytes, a
//! fixed length, or a prompt, with multi-line replies read until a last line or a count); the commands, each a
//! template of typed, range-checked arguments and a reply pattern ([`template`]); how replies are classed (busy,
//! error, alarm, unknown command; silence as an unknown command); the identify, init and safe-state sequences;
//! per-model variants; and how the instrument does what protocols ask of it (dispense, hold a temperature, weigh,
//! read a temperature): a binding of each capability to commands, with the behaviour that stays in Rust (wait for
//! a pump to finish, integrate a flow, wait for a temperature, wait for a weight to settle).
//!
//! [`load`] reads a declaration into a checked [`Declaration`] and refuses one that cannot work, with every
//! problem's place: a template whose placeholders the calls do not fill, a binding to a field a reply does not
//! have, a reply pattern that cannot match what identify returns, a scale of zero. The driver
//! ([`crate::drivers::declared`]) and the simulator ([`crate::sim`]) are both made from the declaration, so a
//! declared instrument runs in tests at once, with the same fault injection as any other.
//!
//! `devices/instruments/` holds the declarations built in by name ([`BUILT_IN`]); a lab file may name its own.

pub mod frame;
pub mod template;

mod file;
mod load;

use std::collections::BTreeMap;
use std::sync::Arc;

use protocols::InstrumentKind;
use protocols::diagnostic::SourceFile;

use crate::transport::LineSettings;
pub use frame::{Checksum, ChecksumKind, Encoding, Frame, Reply, ReplyDecoder};
pub use load::{BUILT_IN, codes, load_declaration, resolve};
pub use template::{Captures, Spec, Template, Value};

/// A setting a lab file gives each instrument of the declaration (its address, a syringe's diameter...).
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    /// Whether it is a number, an integer or text.
    pub kind: SettingKind,
    /// The lowest value it takes.
    pub min: Option<f64>,
    /// The highest value it takes.
    pub max: Option<f64>,
    /// The value when the lab file gives none.
    pub default: Option<Value>,
    /// Its unit, for people.
    pub unit: Option<String>,
}

/// What kind of value a setting holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingKind {
    /// A number.
    Number,
    /// A whole number.
    Int,
    /// Text.
    Text,
}

impl Setting {
    /// Reads `text` as a value of this setting; an error says why it is not one.
    pub fn value(&self, text: &str) -> Result<Value, String> {
        match self.kind {
            SettingKind::Text => Ok(Value::Text(text.to_owned())),
            SettingKind::Number | SettingKind::Int => {
                let v: f64 = text.trim().parse().map_err(|_| format!("`{text}` is not a number"))?;
                if self.kind == SettingKind::Int && v.fract() != 0.0 {
                    return Err(format!("`{text}` is not a whole number"));
                }
                if self.min.is_some_and(|m| v < m) || self.max.is_some_and(|m| v > m) || !v.is_finite() {
                    return Err(format!(
                        "{v} is outside {}..={}",
                        self.min.map_or("-inf".into(), |m| m.to_string()),
                        self.max.map_or("inf".into(), |m| m.to_string())
                    ));
                }
                Ok(Value::Number(v))
            }
        }
    }
}

/// How a request is framed: the prefix and terminator (templates over the settings) and an optional checksum
/// between the body and the terminator.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Written before every command, such as an address.
    pub prefix: Template,
    /// Written after it.
    pub terminator: Template,
    /// A checksum over prefix and body, before the terminator.
    pub checksum: Option<Checksum>,
}

/// What a reply of a class means.
#[derive(Debug, Clone, PartialEq)]
pub enum ClassKind {
    /// The instrument cannot take the command now.
    Busy(String),
    /// The instrument refused the command.
    Error(String),
    /// The instrument raised an alarm (a stall): it may have acted.
    Alarm(String),
    /// The instrument does not know the command.
    Unknown,
}

/// A kind of reply every command may get, recognised by its pattern before the command's own.
#[derive(Debug, Clone, PartialEq)]
pub struct Class {
    /// The pattern.
    pub reply: Template,
    /// What it means.
    pub is: ClassKind,
}

/// What silence means, when a reply is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Silence {
    /// Nothing more than a timeout.
    Timeout,
    /// The instrument ignores commands it does not know (NAMUR, Huber PB): silence says so.
    UnknownCommand,
}

/// How many lines a reply has.
#[derive(Debug, Clone, PartialEq)]
pub enum Lines {
    /// One.
    One,
    /// Lines up to and with the first that matches.
    Until(Template),
    /// Exactly this many.
    Count(u16),
}

/// What a command's value (an argument or a capture) may be, and how it scales.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueSpec {
    /// The lowest engineering value.
    pub min: Option<f64>,
    /// The highest engineering value.
    pub max: Option<f64>,
    /// Engineering value = wire value × scale.
    pub scale: f64,
    /// The only texts it may be.
    pub one_of: Option<Vec<String>>,
}

impl Default for ValueSpec {
    fn default() -> Self {
        ValueSpec { min: None, max: None, scale: 1.0, one_of: None }
    }
}

/// One command of the instrument.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// Its name in the declaration.
    pub name: String,
    /// The body written (between the request's prefix and terminator).
    pub send: Template,
    /// The reply's pattern; `None` for a command the instrument never answers.
    pub reply: Option<Template>,
    /// How many lines the reply has.
    pub lines: Lines,
    /// The arguments: placeholders of `send` that are not settings.
    pub args: Vec<String>,
    /// What arguments and captures may be, by name.
    pub values: BTreeMap<String, ValueSpec>,
    /// Whether it may act physically (an error after it may follow an action).
    pub acts: bool,
    /// For a command that acts and is idempotent (a set point), the query whose reply says what is in place: its
    /// `field` against the command's one argument. A reply to the command lost or damaged on the way is settled by
    /// asking it rather than by sending the command again blindly ([`crate::drivers::declared`]).
    pub read_back: Option<Field>,
    /// Extra lab seconds to wait for its reply, beyond the line's timeout.
    pub timeout: f64,
    /// Values the simulator answers for captures nothing else gives.
    pub sim: BTreeMap<String, Value>,
}

impl Command {
    /// The value spec of `name`, default if the command gives none.
    pub fn value(&self, name: &str) -> ValueSpec {
        self.values.get(name).cloned().unwrap_or_default()
    }
}

/// A command called with its arguments, each a template over the settings (and, in a capability binding, the
/// task's values).
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The command.
    pub command: String,
    /// Its arguments.
    pub args: BTreeMap<String, Template>,
}

/// An argument of a command, filled by the driver from a task (a volume, a set point).
#[derive(Debug, Clone, PartialEq)]
pub struct Arg {
    /// The command.
    pub command: String,
    /// Its argument.
    pub arg: String,
}

/// A capture of a command's reply, read by the driver.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// The command.
    pub command: String,
    /// The capture.
    pub field: String,
}

/// Identification: a command whose reply gives the model (which must be the lab file's), and optionally the
/// firmware and serial number.
#[derive(Debug, Clone, PartialEq)]
pub struct Identify {
    /// The command.
    pub command: String,
    /// The model, a template over its reply's captures and the settings.
    pub model: Template,
    /// The firmware.
    pub firmware: Option<Template>,
    /// The serial number.
    pub serial: Option<Template>,
}

/// Whether a flow is of a liquid (into the vessel) or a gas (bubbled through it).
#[derive(Debug, Clone, PartialEq)]
pub enum Medium {
    /// A liquid from the reservoir.
    Liquid,
    /// A gas, named by the template.
    Gas(Template),
}

/// How the instrument dispenses.
#[derive(Debug, Clone, PartialEq)]
#[expect(clippy::large_enum_variant, reason = "one per declaration, shared behind an Arc")]
pub enum Dispense {
    /// A syringe pump: set the rate and the volume, run, wait while it runs, read what it delivered. Volumes are
    /// microlitres and rates microlitres per minute on the wire.
    Run {
        /// Clears the delivered volume before a dispense.
        clear: Option<Call>,
        /// Where the rate goes.
        rate: Arg,
        /// The rate, µL/min, a template over the settings.
        rate_value: Template,
        /// Where the volume goes.
        volume: Arg,
        /// Starts the pump.
        start: Call,
        /// Stops it.
        stop: Call,
        /// The field that says whether it runs: its values while running, and when idle.
        running: Field,
        /// Values of `running` while the pump runs.
        running_values: Vec<String>,
        /// The value when it is idle.
        idle: String,
        /// The delivered volume, µL.
        delivered: Field,
        /// Lab seconds between polls while it runs.
        poll: f64,
        /// What the reservoir holds, a template over the settings.
        reservoir: Template,
    },
    /// A flow controller: set a flow, integrate the measured flow until the volume has passed, set it to zero.
    Flow {
        /// Where the flow set point goes.
        set: Arg,
        /// The flow to dispense at, in the instrument's units, a template over the settings.
        rate: Template,
        /// Microlitres per minute in one of the instrument's flow units (1000 for mL/min or sccm).
        scale: f64,
        /// The measured flow, in the instrument's units.
        read: Field,
        /// Lab seconds between readings.
        poll: f64,
        /// A liquid or a gas.
        medium: Medium,
        /// What the reservoir holds, a template over the settings.
        reservoir: Template,
    },
}

/// How the instrument holds a temperature.
#[derive(Debug, Clone, PartialEq)]
pub struct Hold {
    /// Where the set point goes, degC.
    pub set: Arg,
    /// Starts control.
    pub start: Option<Call>,
    /// Stops it (the safe state's too).
    pub stop: Option<Call>,
    /// The process value, degC.
    pub read: Field,
    /// Lab seconds between readings.
    pub poll: f64,
    /// How close counts as there, degC, a template over the settings.
    pub tolerance: Template,
}

/// How the instrument weighs.
#[derive(Debug, Clone, PartialEq)]
pub struct Weigh {
    /// The weight.
    pub read: Field,
    /// The capture of the same reply holding its unit (`g`, `mg`, `kg`); empty while the weight is not stable.
    pub unit: Option<String>,
    /// Lab seconds a weight may take to settle, a template over the settings.
    pub settle: Template,
    /// Zeroes the empty pan at initialization.
    pub zero: Option<Call>,
}

/// A checked declaration.
#[derive(Debug, Clone, PartialEq)]
pub struct Declaration {
    /// What it is, such as `New Era NE-1000`.
    pub name: String,
    /// Where its commands come from.
    pub source: String,
    /// The kind of instrument, which protocols ask for.
    pub kind: InstrumentKind,
    /// The line settings it ships with.
    pub line: LineSettings,
    /// The settings a lab file gives, by name.
    pub settings: BTreeMap<String, Setting>,
    /// Its models, each with settings of its own.
    pub variants: BTreeMap<String, BTreeMap<String, Value>>,
    /// Request framing.
    pub request: Request,
    /// Reply framing.
    pub frame: Frame,
    /// Reply classes, checked in order before a command's pattern.
    pub classes: Vec<Class>,
    /// What silence means.
    pub silence: Silence,
    /// The commands, by name.
    pub commands: BTreeMap<String, Command>,
    /// Identification.
    pub identify: Identify,
    /// Calls at initialization.
    pub init: Vec<Call>,
    /// Calls that make it safe.
    pub safe_state: Vec<Call>,
    /// Dispensing.
    pub dispense: Option<Dispense>,
    /// Holding a temperature.
    pub hold_temperature: Option<Hold>,
    /// Weighing.
    pub weigh: Option<Weigh>,
    /// Reading a temperature.
    pub read_temperature: Option<Field>,
    /// The file it was read from.
    pub file: Arc<SourceFile>,
}

impl Declaration {
    /// The command called `name`; the loader checked every name the declaration uses.
    pub fn command(&self, name: &str) -> Option<&Command> {
        self.commands.get(name)
    }

    /// The settings of one instrument: the defaults, then its model's, then the lab file's; a missing required
    /// setting or a value that does not read is an error naming it.
    pub fn settings_for(
        &self,
        model: &str,
        given: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, Value>, Vec<(String, String)>> {
        let mut out = BTreeMap::new();
        let mut problems = Vec::new();
        let variant = self.variants.get(model);
        for (name, setting) in &self.settings {
            let value = match (given.get(name), variant.and_then(|v| v.get(name)), &setting.default) {
                (Some(text), _, _) => setting.value(text).map_err(|e| (name.clone(), e)),
                (None, Some(v), _) | (None, None, Some(v)) => Ok(v.clone()),
                (None, None, None) => Err((name.clone(), "is required".to_owned())),
            };
            match value {
                Ok(v) => {
                    out.insert(name.clone(), v);
                }
                Err(p) => problems.push(p),
            }
        }
        for name in given.keys().filter(|n| !self.settings.contains_key(*n)) {
            problems.push((name.clone(), "is not a setting of this instrument".to_owned()));
        }
        out.insert("model".to_owned(), Value::Text(model.to_owned()));
        if problems.is_empty() { Ok(out) } else { Err(problems) }
    }

    /// Settings of `model` for checking the declaration itself: as [`Declaration::settings_for`] with nothing
    /// given, a required setting taking its minimum (or 0, or `x`).
    pub fn sample_settings(&self, model: &str) -> BTreeMap<String, Value> {
        let variant = self.variants.get(model);
        let mut out: BTreeMap<String, Value> = self
            .settings
            .iter()
            .map(|(name, s)| {
                let v =
                    variant.and_then(|v| v.get(name)).or(s.default.as_ref()).cloned().unwrap_or_else(|| match s.kind {
                        SettingKind::Text => Value::Text("x".into()),
                        SettingKind::Number | SettingKind::Int => {
                            Value::Number(s.min.unwrap_or(0.0).max(0.0).min(s.max.unwrap_or(f64::MAX)))
                        }
                    });
                (name.clone(), v)
            })
            .collect();
        out.insert("model".to_owned(), Value::Text(model.to_owned()));
        out
    }
}

/// The value a simulator answers for capture `name` of `command`'s reply when nothing live or set gives one: the
/// command's `sim` value, a pump's idle state (wherever a reply carries it), a stable balance's unit, the first value the capture may take, or a
/// blank of its spec. `None` if the reply has no such capture.
pub fn sample_value(decl: &Declaration, command: &Command, name: &str) -> Option<Value> {
    if let Some(v) = command.sim.get(name) {
        return Some(v.clone());
    }
    if let Some(Dispense::Run { running, idle, .. }) = &decl.dispense
        && running.field == name
    {
        return Some(Value::Text(idle.clone()));
    }
    if let Some(w) = &decl.weigh
        && w.read.command == command.name
        && w.unit.as_deref() == Some(name)
    {
        return Some(Value::Text("g".into()));
    }
    if let Some(first) = command.values.get(name).and_then(|v| v.one_of.as_ref()).and_then(|o| o.first()) {
        return Some(Value::Text(first.clone()));
    }
    command.reply.as_ref().and_then(|r| r.spec_of(name)).map(Spec::blank)
}
