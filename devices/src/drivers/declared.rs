//! The driver of a declared instrument ([`crate::declared`]): one driver for every text instrument a declaration
//! describes.
//!
//! Every exchange is [`Declared::call`]: the command's arguments are checked against their declared ranges (and
//! refused with [`DeviceErrorKind::Limit`] before anything is sent), scaled to wire values and written through the
//! command's template between the request's prefix and terminator (with its checksum); the reply is framed as the
//! declaration says, one line or several, within the line's timeout plus the command's own; a reply a class claims
//! becomes a typed error (busy, a firmware error or alarm with its text, an unknown command), as does silence where
//! the instrument ignores what it does not know; and the reply is matched against the command's pattern, its
//! captures scaled to engineering values. A reply that matches nothing is [`DeviceErrorKind::Garbled`] with its
//! bytes. A command that cannot act (`acts` is false: a query) is asked again, twice at most, when its reply is lost,
//! damaged or busy; one that may act is never repeated blindly. A command that acts and sets a value the instrument
//! can be asked for (a set point, `read_back`) whose reply is lost or damaged on the way is settled by asking: it
//! took (the call goes on, with the query's captures), it did not (it is sent once more; a second miss has not
//! acted), or the instrument cannot say (the error stands, as one that may have acted).
//!
//! The capabilities are the declaration's bindings, with the behaviour that stays in Rust: a syringe pump sets its
//! rate and volume, runs, polls its status until it is idle and reads what it delivered; a flow controller sets a
//! flow, integrates the flow it reads until the volume has passed, and sets the flow back to zero (a look at either
//! whose replies a noisy line ate even after asking again is one look missed, and the next tells; two in a row end
//! the dispense); a temperature controller sets its set point, starts control, waits for the temperature and holds
//! it ([`super::reach_and_hold`]); a balance reads until the weight is stable (its unit no longer blank); a
//! thermometer reads. Identify reads the model from the identify command's reply and refuses an instrument that is
//! not the lab file's model; initialize runs the declaration's `init` calls and zeroes a balance; the safe state
//! runs `safe_state`, or stops the pump or control.

use std::sync::Arc;

use futures::future::BoxFuture;
use protocols::InstrumentKind;
use protocols::units::{Duration, Mass, Temperature, Volume};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Deadline, Probe, error, pause, reach_and_hold, with_acted};
use crate::capability::{
    Dispense as DispenseCap, HoldTemperature, Identity, Instrument, Outcome, ReadTemperature, Stop, Weigh,
};
use crate::declared::{
    Call, Captures, ClassKind, Command, Declaration, Dispense, Field, ReplyDecoder, Silence, Template, Value,
};
use crate::error::{DeviceError, DeviceErrorKind};
use crate::lab::DeclaredConfig;
use crate::transport::Link;

/// Lab seconds a dispense may run beyond the time its volume takes at its rate.
const DISPENSE_SLACK: f64 = 60.0;

/// How many times a command that cannot act is asked again after a lost, damaged or busy reply.
const RETRIES: u32 = 2;

/// Lab seconds to wait before asking a busy instrument again.
const BUSY_PAUSE: f64 = 0.5;

/// Whether an error of a command that cannot act is worth asking again: the reply was lost, damaged, or busy.
fn repeatable(e: &DeviceError) -> bool {
    lost_on_the_way(e) || matches!(e.kind, DeviceErrorKind::Busy { .. })
}

/// Whether an error of a command means its reply was lost or damaged on the way, so that the command may have
/// acted (or not) without saying so: a timeout or a reply that does not read; not a busy or refused command, nor an
/// alarm.
fn lost_on_the_way(e: &DeviceError) -> bool {
    matches!(
        e.kind,
        DeviceErrorKind::Timeout { .. } | DeviceErrorKind::Garbled { .. } | DeviceErrorKind::Checksum { .. }
    )
}

/// Whether a look at a running dispense (its status, its flow) that failed can be let go: one whose replies a noisy
/// line lost or damaged, even after asking again, is one look missed while the pump or the flow goes on as set, and
/// the next look tells; a second in a row, or any other error, ends the dispense (it may have acted). `missed` says
/// whether the last look was missed.
fn look_missed(e: DeviceError, missed: &mut bool) -> Result<(), DeviceError> {
    if repeatable(&e) && !std::mem::replace(missed, true) { Ok(()) } else { Err(with_acted(e, true)) }
}

/// What a read-back says of a command that acts, whose reply was lost.
enum ReadBack {
    /// What it sets is in place: it took (with the query's captures).
    Took(Captures),
    /// What is in place is something else: it did not take.
    NotTaken,
    /// The query did not answer, or its answer cannot be compared.
    Unknown,
}

/// A declared instrument.
pub struct Declared<T> {
    name: String,
    config: DeclaredConfig,
    decl: Arc<Declaration>,
    link: Link<T>,
    /// The request prefix and terminator, rendered from the settings once.
    prefix: Vec<u8>,
    terminator: Vec<u8>,
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Declared<T> {
    /// The driver for `config`'s declaration, talking over `link`.
    pub fn new(name: &str, config: DeclaredConfig, link: Link<T>) -> Self {
        let decl = Arc::clone(&config.declaration);
        let settings = &config.settings;
        // The lab file's check rendered both with these settings.
        let render = |t: &crate::declared::Template| t.render(&|n| settings.get(n).cloned()).unwrap_or_default();
        let prefix = render(&decl.request.prefix).into_bytes();
        let terminator = render(&decl.request.terminator).into_bytes();
        Declared { name: name.to_owned(), config, decl, link, prefix, terminator }
    }

    /// The request bytes of `body`.
    fn request(&self, body: &str) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.prefix.len() + body.len() + self.terminator.len() + 4);
        bytes.extend_from_slice(&self.prefix);
        bytes.extend_from_slice(body.as_bytes());
        if let Some(c) = &self.decl.request.checksum {
            let sum = c.of(&bytes);
            bytes.extend(sum);
        }
        bytes.extend_from_slice(&self.terminator);
        bytes
    }

    fn limit(&self, why: String) -> DeviceError {
        error(&self.name, DeviceErrorKind::Limit(why), false)
    }

    /// Sends command `name` with `args` (engineering values) and returns its reply's captures, in engineering
    /// values (empty for a command the instrument does not answer).
    pub async fn call(&mut self, name: &str, args: &[(&str, Value)]) -> Result<Captures, DeviceError> {
        let decl = Arc::clone(&self.decl);
        let Some(cmd) = decl.command(name) else {
            return Err(error(&self.name, DeviceErrorKind::Unsupported(format!("run `{name}`")), false));
        };
        let mut wire: Vec<(&str, Value)> = Vec::with_capacity(cmd.args.len());
        for a in &cmd.args {
            let Some((_, v)) = args.iter().find(|(n, _)| n == a) else {
                return Err(self.limit(format!("`{name}` needs a value for `{a}`")));
            };
            let spec = cmd.value(a);
            let v = match v {
                Value::Number(x) => {
                    let x = *x;
                    if !x.is_finite()
                        || spec.min.is_some_and(|m| x < m - 1e-9 * m.abs().max(1.0))
                        || spec.max.is_some_and(|m| x > m + 1e-9 * m.abs().max(1.0))
                    {
                        return Err(self.limit(format!(
                            "`{a}` of `{name}` is {x}, outside {}..={}",
                            spec.min.map_or("-inf".into(), |m| m.to_string()),
                            spec.max.map_or("inf".into(), |m| m.to_string())
                        )));
                    }
                    Value::Number(x / spec.scale)
                }
                Value::Text(t) => {
                    if spec.one_of.as_ref().is_some_and(|o| !o.contains(t)) {
                        return Err(self.limit(format!("`{a}` of `{name}` cannot be `{t}`")));
                    }
                    Value::Text(t.clone())
                }
            };
            wire.push((a.as_str(), v));
        }
        let settings = &self.config.settings;
        let body = cmd
            .send
            .render(&|n| {
                wire.iter().find(|(w, _)| *w == n).map(|(_, v)| v.clone()).or_else(|| settings.get(n).cloned())
            })
            .map_err(|e| self.limit(format!("`{name}`: {e}")))?;
        let bytes = self.request(&body);
        let Some(pattern) = &cmd.reply else {
            self.link.send(&bytes).await.map_err(|e| with_acted(e, cmd.acts))?;
            return Ok(Captures::new());
        };
        // A command that cannot act is asked again when its reply is lost, damaged or says busy: a status poll
        // whose reply a noisy line ate must not end a dispense. One that may act is never repeated blindly.
        let attempts = if cmd.acts { 1 } else { 1 + RETRIES };
        let mut result = self.ask(&decl, cmd, pattern, &bytes, attempts).await;
        let Some(check) = cmd.read_back.as_ref().filter(|_| cmd.acts) else { return result };
        // A command that acts and can be read back (a set point), whose reply was lost or damaged on the way, may
        // or may not have taken: the instrument is asked what is in place, and the command is sent again only if
        // the answer shows it did not take, once. What cannot be read back stays in doubt.
        for again in [true, false] {
            let e = match result {
                Err(e) if lost_on_the_way(&e) => e,
                settled => return settled,
            };
            match self.read_back(&decl, cmd, check, &wire, &body).await {
                ReadBack::Took(captures) => return Ok(captures),
                ReadBack::NotTaken if again => result = self.ask(&decl, cmd, pattern, &bytes, 1).await,
                ReadBack::NotTaken => return Err(DeviceError { may_have_acted: false, ..e }),
                ReadBack::Unknown => return Err(e),
            }
        }
        result
    }

    /// Asks `cmd` (its request `bytes`) up to `attempts` times while its reply is lost, damaged or busy, and returns
    /// the last reply's captures or error (silence, where the instrument ignores what it does not know, as an
    /// unknown command).
    async fn ask(
        &mut self,
        decl: &Declaration,
        cmd: &Command,
        pattern: &Template,
        bytes: &[u8],
        attempts: u32,
    ) -> Result<Captures, DeviceError> {
        let mut attempt = 1;
        loop {
            match self.exchange(decl, cmd, pattern, bytes).await {
                Err(e) if attempt < attempts && repeatable(&e) => {
                    attempt += 1;
                    if matches!(e.kind, DeviceErrorKind::Busy { .. }) {
                        let clock = self.link.clock().clone();
                        pause(&clock, BUSY_PAUSE).await;
                    }
                }
                Err(e) => {
                    // Silence where the instrument ignores what it does not know: it does not know the command. Not
                    // after a command that acts, whose silence may be a reply lost once it had acted (its read-back
                    // tells, or the error stands as one that may have acted).
                    if decl.silence == Silence::UnknownCommand
                        && !cmd.acts
                        && let DeviceErrorKind::Timeout { received, .. } = &e.kind
                        && received.is_empty()
                    {
                        let kind = DeviceErrorKind::UnknownCommand { sent: bytes.to_vec(), received: Vec::new() };
                        return Err(error(&self.name, kind, false));
                    }
                    return Err(e);
                }
                Ok(captures) => return Ok(captures),
            }
        }
    }

    /// Whether `cmd` (sent with the wire values `wire`, written as `body`) is in place, by the query `check`: the
    /// field it reads, written back through `cmd`'s own template in place of the value of that name (an argument or
    /// a setting), gives the same request, so both sides are compared at the precision the command is sent with.
    async fn read_back(
        &mut self,
        decl: &Declaration,
        cmd: &Command,
        check: &Field,
        wire: &[(&str, Value)],
        body: &str,
    ) -> ReadBack {
        let Some(query) = decl.command(&check.command) else { return ReadBack::Unknown };
        let arg = &check.field;
        let Some(pattern) = &query.reply else { return ReadBack::Unknown };
        let Ok(asked) = query.send.render(&|n| self.config.settings.get(n).cloned()) else { return ReadBack::Unknown };
        let bytes = self.request(&asked);
        let Ok(captures) = self.ask(decl, query, pattern, &bytes, 1 + RETRIES).await else { return ReadBack::Unknown };
        let Some(found) = captures.get(&check.field) else { return ReadBack::Unknown };
        let found = match found {
            Value::Number(x) => Value::Number(x / cmd.value(arg).scale),
            text => text.clone(),
        };
        let settings = &self.config.settings;
        let written = cmd.send.render(&|n| {
            if n == arg.as_str() {
                Some(found.clone())
            } else {
                wire.iter().find(|(w, _)| *w == n).map(|(_, v)| v.clone()).or_else(|| settings.get(n).cloned())
            }
        });
        match written {
            Ok(w) if w == body => ReadBack::Took(captures),
            Ok(_) => ReadBack::NotTaken,
            Err(_) => ReadBack::Unknown,
        }
    }

    /// One exchange of `cmd`: its request `bytes`, its reply framed, classed and matched against `pattern`.
    async fn exchange(
        &mut self,
        decl: &Declaration,
        cmd: &Command,
        pattern: &Template,
        bytes: &[u8],
    ) -> Result<Captures, DeviceError> {
        let timeout = self.link.timeout() + std::time::Duration::from_secs_f64(cmd.timeout);
        let mut decoder = ReplyDecoder::new(&decl.frame, &cmd.lines, &decl.classes);
        let reply =
            self.link.request_within(bytes, &mut decoder, timeout).await.map_err(|e| with_acted(e, cmd.acts))?;
        let text = reply.text();
        if let Some(class) = decl.classes.iter().find(|c| c.reply.matches(&text).is_some()) {
            let received = text.into_bytes();
            let (kind, acted) = match &class.is {
                ClassKind::Busy(m) => (DeviceErrorKind::Busy { message: m.clone(), received }, false),
                ClassKind::Error(m) => (DeviceErrorKind::Firmware { code: None, message: m.clone(), received }, false),
                ClassKind::Alarm(m) => {
                    (DeviceErrorKind::Firmware { code: None, message: format!("alarm: {m}"), received }, cmd.acts)
                }
                ClassKind::Unknown => (DeviceErrorKind::UnknownCommand { sent: bytes.to_vec(), received }, false),
            };
            return Err(error(&self.name, kind, acted));
        }
        let Some(mut captures) = pattern.matches(&text) else {
            let reason = format!("it does not match `{}`", pattern.text);
            return Err(super::garbled(&self.name, bytes, text.as_bytes(), reason, cmd.acts));
        };
        for (n, v) in &mut captures {
            if let (Value::Number(x), Some(spec)) = (&*v, cmd.values.get(n)) {
                *v = Value::Number(x * spec.scale);
            }
        }
        Ok(captures)
    }

    /// Runs a call of the declaration, its arguments rendered from the settings (and `extra`, a binding's values).
    async fn run_call(&mut self, call: &Call) -> Result<Captures, DeviceError> {
        let settings = &self.config.settings;
        let mut args = Vec::with_capacity(call.args.len());
        for (name, t) in &call.args {
            let text = t.render(&|n| settings.get(n).cloned()).map_err(|e| self.limit(e))?;
            let spec = self.decl.command(&call.command).and_then(|c| c.send.spec_of(name));
            let value = match (spec, text.trim().parse::<f64>()) {
                (Some(s), Ok(v)) if s.numeric() => Value::Number(v),
                _ => Value::Text(text),
            };
            args.push((name.as_str(), value));
        }
        let command = call.command.clone();
        self.call(&command, &args).await
    }

    /// Reads field `f` of its command's reply.
    async fn read(&mut self, f: &Field) -> Result<Value, DeviceError> {
        let mut captures = self.call(&f.command, &[]).await?;
        // The loader checked that the reply captures the field.
        Ok(captures.remove(&f.field).unwrap_or(Value::Number(f64::NAN)))
    }

    /// Reads field `f` as a number.
    async fn number(&mut self, f: &Field) -> Result<f64, DeviceError> {
        let v = self.read(f).await?;
        v.number().filter(|x| x.is_finite()).ok_or_else(|| {
            super::garbled(
                &self.name,
                f.command.as_bytes(),
                v.text().as_bytes(),
                format!("`{}` is not a number", f.field),
                false,
            )
        })
    }

    /// A template over the settings, as a number.
    fn setting_number(&self, t: &crate::declared::Template) -> Result<f64, DeviceError> {
        self.config.number(t).map_err(|e| self.limit(e))
    }

    async fn stop_all(&mut self) -> Result<(), DeviceError> {
        let decl = Arc::clone(&self.decl);
        if !decl.safe_state.is_empty() {
            for c in &decl.safe_state {
                self.run_call(c).await?;
            }
            return Ok(());
        }
        match &decl.dispense {
            Some(Dispense::Run { stop, .. }) => {
                self.run_call(stop).await?;
            }
            Some(Dispense::Flow { set, .. }) => {
                self.call(&set.command, &[(set.arg.as_str(), Value::Number(0.0))]).await?;
            }
            None => {}
        }
        if let Some(stop) = decl.hold_temperature.as_ref().and_then(|h| h.stop.as_ref()) {
            self.run_call(stop).await?;
        }
        Ok(())
    }

    async fn run_pump(&mut self, volume: f64) -> Result<Volume, DeviceError> {
        let decl = Arc::clone(&self.decl);
        let Some(Dispense::Run {
            clear,
            rate,
            rate_value,
            volume: vol,
            start,
            running,
            running_values,
            delivered,
            poll,
            ..
        }) = &decl.dispense
        else {
            return Err(error(&self.name, DeviceErrorKind::Unsupported("dispense".into()), false));
        };
        let r = self.setting_number(rate_value)?;
        if !(r.is_finite() && r > 0.0) {
            return Err(self.limit(format!("a rate of {r} uL/min")));
        }
        if let Some(c) = clear {
            self.run_call(c).await?;
        }
        self.call(&rate.command, &[(rate.arg.as_str(), Value::Number(r))]).await?;
        self.call(&vol.command, &[(vol.arg.as_str(), Value::Number(volume))]).await?;
        self.run_call(start).await.map_err(|e| with_acted(e, true))?;
        let clock = self.link.clock().clone();
        let budget = 60.0 * volume / r * 2.0 + DISPENSE_SLACK;
        let deadline = Deadline::after(&clock, budget);
        let mut missed = false;
        loop {
            let state = match self.read(running).await {
                Ok(v) => v.text(),
                Err(e) => {
                    look_missed(e, &mut missed)?;
                    pause(&clock, *poll).await;
                    continue;
                }
            };
            missed = false;
            if !running_values.contains(&state) {
                break;
            }
            if deadline.expired() {
                let msg = format!("still running after {budget:.0} lab s");
                return Err(error(&self.name, DeviceErrorKind::Physical(msg), true));
            }
            pause(&clock, *poll).await;
        }
        let moved = self.number(delivered).await.map_err(|e| with_acted(e, true))?;
        if moved + 1e-6 * volume.max(1.0) < volume * 0.999 {
            let msg = format!("delivered {moved} uL of the {volume} uL asked");
            return Err(error(&self.name, DeviceErrorKind::Physical(msg), true));
        }
        Ok(Volume(moved))
    }

    async fn run_flow(&mut self, volume: f64) -> Result<Volume, DeviceError> {
        let decl = Arc::clone(&self.decl);
        let Some(Dispense::Flow { set, rate, scale, read, poll, .. }) = &decl.dispense else {
            return Err(error(&self.name, DeviceErrorKind::Unsupported("dispense".into()), false));
        };
        let r = self.setting_number(rate)?;
        if !(r.is_finite() && r > 0.0) {
            return Err(self.limit(format!("a flow of {r}")));
        }
        let clock = self.link.clock().clone();
        // Each exchange is taken to happen midway between sending and the reply, when the instrument acted on it.
        let before = clock.now();
        self.call(&set.command, &[(set.arg.as_str(), Value::Number(r))]).await.map_err(|e| with_acted(e, true))?;
        let budget = 60.0 * volume / (r * scale) * 2.0 + DISPENSE_SLACK;
        let deadline = Deadline::after(&clock, budget);
        // A flow controller reaches its set point within a second or so: the flow is taken to be the set point from
        // the moment it is set, then what it reads, averaged between readings.
        let (mut passed, mut last, mut flow) = (0.0, (before + clock.now()) / 2.0, r * scale);
        let mut missed = false;
        while passed < volume {
            if deadline.expired() {
                let _ = self.call(&set.command, &[(set.arg.as_str(), Value::Number(0.0))]).await;
                let msg = format!("only {passed:.1} of {volume} uL passed in {budget:.0} lab s");
                return Err(error(&self.name, DeviceErrorKind::Physical(msg), true));
            }
            // Wait for what is left at the last flow read (counting what has flowed since that reading, which a
            // missed look leaves long), no longer than a poll; close as soon as it has passed.
            let so_far = passed + (clock.now() - last).max(0.0) / 60.0 * flow;
            let left = if flow > 0.0 { 60.0 * (volume - so_far) / flow } else { *poll };
            pause(&clock, left.clamp(0.0, *poll)).await;
            if flow > 0.0 && passed + (clock.now() - last) / 60.0 * flow >= volume {
                break;
            }
            let before = clock.now();
            let now_flow = match self.number(read).await {
                Ok(v) => v.max(0.0) * scale,
                // Taken as the flow last read until the next look.
                Err(e) => {
                    look_missed(e, &mut missed)?;
                    continue;
                }
            };
            missed = false;
            let now = (before + clock.now()) / 2.0;
            passed += (now - last) / 60.0 * (flow + now_flow) / 2.0;
            last = now;
            flow = now_flow;
        }
        let before = clock.now();
        self.call(&set.command, &[(set.arg.as_str(), Value::Number(0.0))]).await.map_err(|e| with_acted(e, true))?;
        // What flowed between the last reading and the valve closing counts too.
        passed += ((before + clock.now()) / 2.0 - last).max(0.0) / 60.0 * flow;
        Ok(Volume(passed))
    }

    async fn run_hold(&mut self, t: f64, hold: f64) -> Result<Outcome, DeviceError> {
        let decl = Arc::clone(&self.decl);
        let Some(h) = &decl.hold_temperature else {
            return Err(error(&self.name, DeviceErrorKind::Unsupported("hold a temperature".into()), false));
        };
        let tolerance = self.setting_number(&h.tolerance)?.abs();
        self.call(&h.set.command, &[(h.set.arg.as_str(), Value::Number(t))]).await?;
        if let Some(start) = &h.start {
            self.run_call(start).await.map_err(|e| with_acted(e, true))?;
        }
        let clock = self.link.clock().clone();
        let name = self.name.clone();
        let plan = super::Hold { what: "", target: t, tolerance, hold, poll: h.poll, under_way: false };
        let held = reach_and_hold(self, &name, &clock, plan).await?;
        if let Some(stop) = &h.stop {
            self.run_call(stop).await.map_err(|e| with_acted(e, true))?;
        }
        Ok(held)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Probe for Declared<T> {
    async fn celsius(&mut self) -> Result<f64, DeviceError> {
        let decl = Arc::clone(&self.decl);
        let Some(h) = &decl.hold_temperature else { return Ok(f64::NAN) };
        self.number(&h.read).await.map_err(|e| with_acted(e, true))
    }
}

/// Grams in `value` of `unit` (`g`, `mg`, `kg`), if the unit is one of those.
fn grams(value: f64, unit: &str) -> Option<f64> {
    match unit.trim() {
        "g" => Some(value),
        "mg" => Some(value / 1000.0),
        "kg" => Some(value * 1000.0),
        _ => None,
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Instrument for Declared<T> {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> InstrumentKind {
        self.decl.kind
    }

    fn identify(&mut self) -> BoxFuture<'_, Result<Identity, DeviceError>> {
        Box::pin(async move {
            let decl = Arc::clone(&self.decl);
            let id = &decl.identify;
            let captures = self.call(&id.command, &[]).await?;
            let settings = &self.config.settings;
            let look = |n: &str| captures.get(n).cloned().or_else(|| settings.get(n).cloned());
            let raw = captures.iter().map(|(k, v)| format!("{k}={}", v.text())).collect::<Vec<_>>().join(" ");
            let model = id.model.render(&look).unwrap_or_default();
            if model != self.config.model {
                return Err(error(
                    &self.name,
                    DeviceErrorKind::WrongIdentity {
                        expected: format!("a {} {}", decl.name, self.config.model),
                        found: if model.is_empty() { raw } else { model },
                    },
                    false,
                ));
            }
            let firmware = id.firmware.as_ref().and_then(|t| t.render(&look).ok());
            let serial = id.serial.as_ref().and_then(|t| t.render(&look).ok());
            Ok(Identity { model, serial, firmware, raw })
        })
    }

    fn initialize(&mut self) -> BoxFuture<'_, Result<(), DeviceError>> {
        Box::pin(async move {
            let decl = Arc::clone(&self.decl);
            for c in &decl.init {
                self.run_call(c).await?;
            }
            if let Some(zero) = decl.weigh.as_ref().and_then(|w| w.zero.as_ref()) {
                self.run_call(zero).await?;
            }
            Ok(())
        })
    }

    fn safe_state(&mut self) -> BoxFuture<'_, Result<(), DeviceError>> {
        Box::pin(self.stop_all())
    }

    fn set_tag(&mut self, tag: Option<u64>) {
        self.link.set_tag(tag);
    }

    fn as_dispense(&mut self) -> Option<&mut dyn DispenseCap> {
        self.decl.dispense.is_some().then_some(self as &mut dyn DispenseCap)
    }

    fn as_hold_temperature(&mut self) -> Option<&mut dyn HoldTemperature> {
        self.decl.hold_temperature.is_some().then_some(self as &mut dyn HoldTemperature)
    }

    fn as_weigh(&mut self) -> Option<&mut dyn Weigh> {
        self.decl.weigh.is_some().then_some(self as &mut dyn Weigh)
    }

    fn as_read_temperature(&mut self) -> Option<&mut dyn ReadTemperature> {
        self.decl.read_temperature.is_some().then_some(self as &mut dyn ReadTemperature)
    }

    fn as_stop(&mut self) -> Option<&mut dyn Stop> {
        (self.decl.dispense.is_some() || self.decl.hold_temperature.is_some()).then_some(self as &mut dyn Stop)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stop for Declared<T> {
    fn stop(&mut self) -> BoxFuture<'_, Result<(), DeviceError>> {
        Box::pin(self.stop_all())
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> DispenseCap for Declared<T> {
    fn dispense(&mut self, volume: Volume) -> BoxFuture<'_, Result<Volume, DeviceError>> {
        Box::pin(async move {
            let v = volume.0;
            if !(v.is_finite() && v > 0.0) {
                return Err(self.limit(format!("cannot dispense {volume}")));
            }
            let result = match &self.decl.dispense {
                Some(Dispense::Run { .. }) => self.run_pump(v).await,
                _ => self.run_flow(v).await,
            };
            if result.as_ref().is_err_and(|e| e.may_have_acted) {
                // The dispense failed with the pump possibly running; the error that ended it matters more.
                let _ = self.stop_all().await;
            }
            result
        })
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> HoldTemperature for Declared<T> {
    fn hold_temperature(
        &mut self,
        temperature: Temperature,
        duration: Duration,
    ) -> BoxFuture<'_, Result<Outcome, DeviceError>> {
        Box::pin(async move {
            if !(duration.0.is_finite() && duration.0 >= 0.0) {
                return Err(self.limit(format!("cannot hold for {duration}")));
            }
            let result = self.run_hold(temperature.0, duration.0).await;
            if result.as_ref().is_err_and(|e| e.may_have_acted) {
                let _ = self.stop_all().await;
            }
            result
        })
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Weigh for Declared<T> {
    fn weigh(&mut self) -> BoxFuture<'_, Result<Mass, DeviceError>> {
        Box::pin(async move {
            let decl = Arc::clone(&self.decl);
            let Some(w) = &decl.weigh else {
                return Err(error(&self.name, DeviceErrorKind::Unsupported("weigh".into()), false));
            };
            let settle = self.setting_number(&w.settle)?;
            let clock = self.link.clock().clone();
            let deadline = Deadline::after(&clock, settle);
            loop {
                let captures = self.call(&w.read.command, &[]).await?;
                let weight = captures.get(&w.read.field).and_then(Value::number).filter(|x| x.is_finite());
                let unit = match &w.unit {
                    Some(u) => captures.get(u).map(Value::text).unwrap_or_default(),
                    None => "g".to_owned(),
                };
                let text = || captures.iter().map(|(k, v)| format!("{k}={}", v.text())).collect::<Vec<_>>().join(" ");
                let Some(weight) = weight else {
                    return Err(super::garbled(
                        &self.name,
                        w.read.command.as_bytes(),
                        text().as_bytes(),
                        "no weight",
                        false,
                    ));
                };
                if !unit.trim().is_empty() {
                    return grams(weight, &unit).map(Mass).ok_or_else(|| {
                        super::garbled(
                            &self.name,
                            w.read.command.as_bytes(),
                            text().as_bytes(),
                            format!("unit `{unit}` is not g, mg or kg"),
                            false,
                        )
                    });
                }
                if deadline.expired() {
                    let msg = format!("the weight did not settle within {settle} lab s");
                    return Err(error(&self.name, DeviceErrorKind::Physical(msg), false));
                }
                pause(&clock, 0.5).await;
            }
        })
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> ReadTemperature for Declared<T> {
    fn read_temperature(&mut self) -> BoxFuture<'_, Result<Temperature, DeviceError>> {
        Box::pin(async move {
            let decl = Arc::clone(&self.decl);
            let Some(f) = &decl.read_temperature else {
                return Err(error(&self.name, DeviceErrorKind::Unsupported("read a temperature".into()), false));
            };
            self.number(f).await.map(Temperature)
        })
    }
}
