//! Printing a checked [`Protocol`] back to RON text.
//!
//! The printer is the loader's inverse: [`to_ron`] of a protocol, loaded again, gives the same protocol (same
//! parameters, outputs, steps, rules and dependencies). That round trip is a property test of the loader, and lets
//! tools that build or rewrite protocols write files a technician can read and `lab check` accepts.
//!
//! What does not survive is only what the checked protocol no longer holds: comments, the order of `after` lists
//! (the printer writes dependencies in step order), the unit a literal was written in (quantities are printed in
//! their dimension's canonical unit, `"1.5 mL"` as `"1500 uL"`), and `on:` where it only repeats the operation's
//! kind. Numbers are printed in Rust's shortest form that reads back to the same `f64`, so no value changes.

use std::fmt::Write;

use crate::op::{Arg, Destination, InstrumentRef, Op, Operation};
use crate::protocol::{Parameter, Protocol, Step};
use crate::units::{Duration, Speed, Temperature, Volume, Wavelength};

/// The protocol as RON text in the current format, which [`crate::load_protocol`] reads back to the same protocol.
pub fn to_ron(protocol: &Protocol) -> String {
    let mut out = String::new();
    out.push_str("Protocol(\n");
    let _ = writeln!(out, "    format: {},", crate::file::FORMAT);
    let _ = writeln!(out, "    name: {},", string(protocol.name()));
    if !protocol.description().is_empty() {
        let _ = writeln!(out, "    description: {},", string(protocol.description()));
    }
    if !protocol.parameters().is_empty() {
        out.push_str("    parameters: {\n");
        for p in protocol.parameters() {
            let _ = writeln!(out, "        {}: {},", string(&p.name), parameter(p));
        }
        out.push_str("    },\n");
    }
    if !protocol.reagent_parameters().is_empty() {
        out.push_str("    reagents: {\n");
        for r in protocol.reagent_parameters() {
            let _ = writeln!(out, "        {}: {},", string(&r.name), reagent_parameter(r));
        }
        out.push_str("    },\n");
    }
    if !protocol.outputs().is_empty() {
        out.push_str("    outputs: {\n");
        for o in protocol.outputs() {
            let description = if o.description.is_empty() {
                String::new()
            } else {
                format!(", description: {}", string(&o.description))
            };
            let _ = writeln!(out, "        {}: (unit: {}{description}),", string(&o.name), string(o.unit.symbol));
        }
        out.push_str("    },\n");
    }
    out.push_str("    steps: [\n");
    for (i, s) in protocol.steps().iter().enumerate() {
        let after: Vec<&str> = protocol.dependencies(i).into_iter().map(|d| protocol.steps()[d].id.as_str()).collect();
        let _ = writeln!(out, "        {},", step(s, &after));
    }
    out.push_str("    ],\n)\n");
    out
}

fn parameter(p: &Parameter) -> String {
    let mut s = format!("(unit: {}, min: {}, max: {}", string(p.unit.symbol), float(p.min), float(p.max));
    if let Some(d) = p.default {
        let _ = write!(s, ", default: {}", float(d));
    }
    if !p.description.is_empty() {
        let _ = write!(s, ", description: {}", string(&p.description));
    }
    s.push(')');
    s
}

fn reagent_parameter(r: &crate::ReagentParameter) -> String {
    let mut s = match &r.slot {
        crate::ReagentSlot::Role(role) => format!("(role: {}", string(role)),
        crate::ReagentSlot::List(list) => {
            format!("(among: [{}]", list.iter().map(|n| string(n)).collect::<Vec<_>>().join(", "))
        }
    };
    if let Some(d) = &r.default {
        let _ = write!(s, ", default: {}", string(d));
    }
    if !r.description.is_empty() {
        let _ = write!(s, ", description: {}", string(&r.description));
    }
    s.push(')');
    s
}

fn step(s: &Step, after: &[&str]) -> String {
    let mut out = format!("(id: {}", string(&s.id));
    match &s.on {
        InstrumentRef::Kind(k) if *k == s.op.kind() => {}
        on => {
            let _ = write!(out, ", on: {}", instrument(on));
        }
    }
    let _ = write!(out, ", op: {}", op(&s.op));
    if !after.is_empty() {
        let list: Vec<String> = after.iter().map(|a| string(a)).collect();
        let _ = write!(out, ", after: [{}]", list.join(", "));
    }
    let rules = &s.rules;
    for (field, value) in [("within", rules.within), ("wait", rules.wait), ("timeout", rules.timeout)] {
        if let Some(d) = value {
            let _ = write!(out, ", {field}: {}", string(&format!("{} s", d.0)));
        }
    }
    if rules.retry > 0 {
        let _ = write!(out, ", retry: {}", rules.retry);
    }
    if rules.keep {
        out.push_str(", keep: true");
    }
    out.push(')');
    out
}

fn instrument(on: &InstrumentRef) -> String {
    match on {
        InstrumentRef::Kind(k) => format!("Kind({})", k.name()),
        InstrumentRef::Named(n) => format!("Named({})", string(n)),
    }
}

fn op(op: &Op) -> String {
    match op {
        Op::Transfer { to } => {
            let to = match to {
                Destination::Rack => "Rack".to_owned(),
                Destination::Kind(k) => format!("Kind({})", k.name()),
                Destination::Named(n) => format!("Named({})", string(n)),
            };
            format!("Transfer(to: {to})")
        }
        Op::Dispense { volume, reagent } => {
            let reagent = match reagent {
                None => String::new(),
                Some(Arg::Value(name)) => format!(", reagent: {}", string(name)),
                Some(Arg::Param(name)) => format!(", reagent: {}", string(&format!("${name}"))),
            };
            format!("Dispense(volume: {}{reagent})", arg(volume, |v: &Volume| (v.0, "uL")))
        }
        Op::Heat { temperature, duration, stir } => {
            let mut s = format!(
                "Heat(temperature: {}, duration: {}",
                arg(temperature, |t: &Temperature| (t.0, "degC")),
                arg(duration, |d: &Duration| (d.0, "s"))
            );
            if let Some(stir) = stir {
                let _ = write!(s, ", stir: {}", arg(stir, |v: &Speed| (v.0, "rpm")));
            }
            s.push(')');
            s
        }
        Op::Stir { speed, duration } => format!(
            "Stir(speed: {}, duration: {})",
            arg(speed, |v: &Speed| (v.0, "rpm")),
            arg(duration, |d: &Duration| (d.0, "s"))
        ),
        Op::Measure { wavelength, output } => format!(
            "Measure(wavelength: {}, output: {})",
            arg(wavelength, |w: &Wavelength| (w.0, "nm")),
            string(output)
        ),
        Op::Weigh { output } => format!("Weigh(output: {})", string(output)),
        Op::Select { position } => format!("Select(position: {position})"),
        Op::ReadTemperature { output } => format!("ReadTemperature(output: {})", string(output)),
        Op::HoldTemperature { temperature, duration } => format!(
            "HoldTemperature(temperature: {}, duration: {})",
            arg(temperature, |t: &Temperature| (t.0, "degC")),
            arg(duration, |d: &Duration| (d.0, "s"))
        ),
    }
}

/// A quantity argument as a RON string: a parameter reference, or the value in its canonical unit. `{}` of an
/// `f64` is the shortest decimal that reads back to the same value, and never uses an exponent, which
/// [`crate::units::Quantity::parse`] reads as well.
fn arg<T>(a: &Arg<T>, canonical: impl Fn(&T) -> (f64, &'static str)) -> String {
    match a {
        Arg::Param(name) => string(&format!("${name}")),
        Arg::Value(v) => {
            let (value, unit) = canonical(v);
            string(&format!("{value} {unit}"))
        }
    }
}

/// A number as a RON float: `{:?}` of an `f64` reads back to the same value and always has a `.` or an exponent.
fn float(v: f64) -> String {
    format!("{v:?}")
}

/// A RON string literal with every character that needs it escaped.
fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_escape_quotes_backslashes_and_control_characters() {
        assert_eq!(string("a\"b\\c\nd\u{7}"), r#""a\"b\\c\nd\u{7}""#);
    }

    #[test]
    fn floats_keep_a_point_or_an_exponent() {
        assert_eq!(float(250.0), "250.0");
        assert_eq!(float(1e-7), "1e-7");
        assert_eq!(float(-0.5), "-0.5");
    }
}
