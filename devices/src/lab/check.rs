//! Checking a protocol against a lab before anything moves: every named instrument exists and is of the right kind,
//! every transfer has a place where the steps after it can run, and no value asks an instrument for more than its limits.

use protocols::diagnostic::{Diagnostic, Diagnostics};
use protocols::ron_file::suggest;
use protocols::source::{Node, Seg, index};
use protocols::units::{Dimension, Quantity, trim_float};
use protocols::{Destination, InstrumentRef, Op, Operation, Protocol};

use super::*;

impl Lab {
    /// Checks that this lab can run `protocol`. Diagnostics point into the protocol file.
    pub fn check_protocol(&self, protocol: &Protocol) -> Diagnostics {
        let src = protocol.source();
        let tree = index(&src.text);
        let mut diags = Diagnostics::new();
        let step_span = |i: usize, field: &str| tree.span_of(&[Seg::Field("steps"), Seg::Index(i), Seg::Field(field)]);
        let names: Vec<&str> = self.instruments.iter().map(|i| i.name.as_str()).collect();
        let mut refs_ok = true;
        for (i, step) in protocol.steps().iter().enumerate() {
            match &step.on {
                InstrumentRef::Named(n) => match self.instrument(n) {
                    None => {
                        refs_ok = false;
                        let help = match suggest(n, &names) {
                            Some(s) => format!("did you mean `{s}`? Lab `{}` has: {}", self.name, names.join(", ")),
                            None => format!("lab `{}` has: {}", self.name, names.join(", ")),
                        };
                        diags.push(
                            Diagnostic::error(
                                codes::UNKNOWN_INSTRUMENT,
                                src,
                                step_span(i, "on"),
                                format!("step `{}` runs on `{n}`, which lab `{}` does not have", step.id, self.name),
                            )
                            .with_help(help),
                        );
                    }
                    Some(spec) if spec.kind() != step.op.kind() => {
                        refs_ok = false;
                        diags.push(
                            Diagnostic::error(
                                codes::UNKNOWN_INSTRUMENT,
                                src,
                                step_span(i, "on"),
                                format!(
                                    "step `{}` needs {} to {}, but `{n}` is {}",
                                    step.id,
                                    step.op.kind().phrase(),
                                    step.op.name(),
                                    spec.kind().phrase()
                                ),
                            )
                            .with_help(format!(
                                "name {} of lab `{}`: {}",
                                step.op.kind().phrase(),
                                self.name,
                                self.of_kind(step.op.kind()).map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
                            )),
                        );
                    }
                    Some(_) => {}
                },
                InstrumentRef::Kind(k) => {
                    if self.of_kind(*k).next().is_none() {
                        refs_ok = false;
                        let span = if tree.get(&[Seg::Field("steps"), Seg::Index(i), Seg::Field("on")]).is_some() {
                            step_span(i, "on")
                        } else {
                            step_span(i, "op")
                        };
                        diags.push(
                            Diagnostic::error(
                                codes::MISSING_KIND,
                                src,
                                span,
                                format!("step `{}` needs {}, and lab `{}` has none", step.id, k.phrase(), self.name),
                            )
                            .with_help(format!(
                                "add {} to the lab file, or run the protocol in a lab that has one",
                                k.phrase()
                            )),
                        );
                    }
                }
            }
            if let Op::Transfer { to: Destination::Named(n) } = &step.op
                && self.instrument(n).and_then(|s| s.position.as_ref()).is_none()
            {
                refs_ok = false;
                diags.push(
                    Diagnostic::error(
                        codes::UNKNOWN_INSTRUMENT,
                        src,
                        tree.span_of(&[Seg::Field("steps"), Seg::Index(i), Seg::Field("op"), Seg::Field("to")]),
                        format!(
                            "transfer `{}` goes to `{n}`, which is not an instrument with a deck position in lab `{}`",
                            step.id, self.name
                        ),
                    )
                    .with_help(format!(
                        "positioned instruments: {}",
                        self.instruments
                            .iter()
                            .filter(|s| s.position.is_some())
                            .map(|s| s.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                );
            }
        }
        if refs_ok {
            for (t, served) in protocol.vessel_segments() {
                let step = &protocol.steps()[*t];
                if matches!(step.op, Op::Transfer { to: Destination::Rack }) {
                    continue;
                }
                if self.transfer_positions(protocol, *t).is_empty() {
                    let needs: Vec<String> = served
                        .iter()
                        .map(|&s| {
                            let st = &protocol.steps()[s];
                            format!("`{}` ({})", st.id, st.on)
                        })
                        .collect();
                    diags.push(
                        Diagnostic::error(
                            codes::NO_POSITION,
                            src,
                            step_span(*t, "id"),
                            format!(
                                "no deck position in lab `{}` has the instruments for every step after transfer `{}`: {}",
                                self.name,
                                step.id,
                                needs.join(", ")
                            ),
                        )
                        .with_help("put those instruments at one position in the lab file, or add a transfer between the steps"),
                    );
                }
            }
        }
        self.check_limits(protocol, &tree, &mut diags);
        diags
    }

    /// Why no instrument of this lab that could run a step on `on` accepts `action`'s values (a temperature above
    /// every candidate hotplate's limit, say), or `None` if one does. [`Lab::check_protocol`] checks a protocol's
    /// whole parameter ranges; this checks one experiment's bound values, for a lab that can run only part of the
    /// ranges (a fleet's workcell refuses the proposals beyond its limits instead of failing them).
    pub fn action_beyond_limits(&self, on: &InstrumentRef, action: &protocols::Action) -> Option<String> {
        use protocols::Action as A;
        let candidates: Vec<&InstrumentSpec> = self.candidates(on).collect();
        let within = |value: f64, limit: &dyn Fn(&InstrumentSpec) -> Option<(f64, f64)>| {
            candidates.iter().any(|c| limit(c).is_none_or(|(a, b)| value >= a && value <= b))
        };
        let hotplate_temperature = |c: &InstrumentSpec| match &c.driver {
            DriverConfig::IkaHotplate(h) => Some((-273.15, h.max_temperature.0)),
            _ => None,
        };
        let hotplate_speed = |c: &InstrumentSpec| match &c.driver {
            DriverConfig::IkaHotplate(h) => Some((0.0, h.max_speed.0)),
            _ => None,
        };
        let (what, value, unit, ok) = match action {
            A::Heat { temperature, stir, .. } => {
                if !within(temperature.0, &hotplate_temperature) {
                    ("temperature", temperature.0, "degC", false)
                } else if let Some(s) = stir
                    && !within(s.0, &hotplate_speed)
                {
                    ("stirring speed", s.0, "rpm", false)
                } else {
                    return None;
                }
            }
            A::Stir { speed, .. } => ("stirring speed", speed.0, "rpm", within(speed.0, &hotplate_speed)),
            A::Measure { wavelength, .. } => {
                let ok = within(wavelength.0, &|c: &InstrumentSpec| match &c.driver {
                    DriverConfig::OceanFlame(f) => {
                        let (a, b) = f.range();
                        Some((a.0, b.0))
                    }
                    _ => None,
                });
                ("wavelength", wavelength.0, "nm", ok)
            }
            A::HoldTemperature { temperature, .. } => {
                let ok = within(temperature.0, &|c: &InstrumentSpec| match &c.driver {
                    DriverConfig::ModbusTemperature(m) => Some((-273.15, m.max_temperature.0)),
                    _ => None,
                });
                ("temperature", temperature.0, "degC", ok)
            }
            A::Select { position } => {
                let ok = within(f64::from(*position), &|c: &InstrumentSpec| match &c.driver {
                    DriverConfig::ViciValve(v) => Some((1.0, f64::from(v.positions))),
                    _ => None,
                });
                ("position", f64::from(*position), "", ok)
            }
            A::Transfer { .. } | A::Dispense { .. } | A::Weigh { .. } | A::ReadTemperature { .. } => return None,
        };
        (!ok).then(|| {
            let names: Vec<&str> = candidates.iter().map(|c| c.name.as_str()).collect();
            format!(
                "{what} {} {unit} is beyond the limits of {} in lab `{}`",
                trim_float(value),
                if names.is_empty() { "every instrument".to_owned() } else { names.join(", ") },
                self.name
            )
        })
    }

    fn check_limits(&self, protocol: &Protocol, tree: &Node, diags: &mut Diagnostics) {
        let src = protocol.source();
        // The largest canonical value an argument can take: the literal, or the parameter's maximum.
        let max_of = |arg: &protocols::Arg<f64>| -> f64 {
            match arg {
                protocols::Arg::Value(v) => *v,
                protocols::Arg::Param(p) => {
                    let p = protocol.parameter(p).expect("validated");
                    p.to_canonical(p.max).value.max(p.to_canonical(p.min).value)
                }
            }
        };
        let min_of = |arg: &protocols::Arg<f64>| -> f64 {
            match arg {
                protocols::Arg::Value(v) => *v,
                protocols::Arg::Param(p) => {
                    let p = protocol.parameter(p).expect("validated");
                    p.to_canonical(p.max).value.min(p.to_canonical(p.min).value)
                }
            }
        };
        for (i, step) in protocol.steps().iter().enumerate() {
            let candidates: Vec<&InstrumentSpec> = self.candidates(&step.on).collect();
            if candidates.is_empty() {
                continue;
            }
            let mut check = |field: &str,
                             arg: protocols::Arg<f64>,
                             dim: Dimension,
                             limit: &dyn Fn(&InstrumentSpec) -> Option<(f64, f64)>| {
                let (lo, hi) = (min_of(&arg), max_of(&arg));
                let ok = candidates.iter().any(|c| limit(c).is_none_or(|(a, b)| lo >= a && hi <= b));
                if ok {
                    return;
                }
                let ranges: Vec<String> = candidates
                    .iter()
                    .filter_map(|c| {
                        limit(c).map(|(a, b)| {
                            format!("{} {}..={} {}", c.name, trim_float(a), trim_float(b), dim.canonical_symbol())
                        })
                    })
                    .collect();
                let what = match &arg {
                    protocols::Arg::Param(p) => format!(
                        "parameter `{p}` allows {}..={} {}",
                        trim_float(lo),
                        trim_float(hi),
                        dim.canonical_symbol()
                    ),
                    protocols::Arg::Value(v) => format!("{} {}", trim_float(*v), dim.canonical_symbol()),
                };
                diags.push(
                    Diagnostic::error(
                        codes::LIMIT,
                        src,
                        tree.span_of(&[Seg::Field("steps"), Seg::Index(i), Seg::Field("op"), Seg::Field(field)]),
                        format!("`{field}` of step `{}` is beyond what lab `{}` can do: {what}", step.id, self.name),
                    )
                    .with_help(format!(
                        "the instruments' limits are: {}; narrow the value or the parameter's range",
                        ranges.join(", ")
                    )),
                );
            };
            let q = |a: &protocols::Arg<Quantity>| -> protocols::Arg<f64> { map_arg(a) };
            match &step.op {
                Op::Heat { temperature, stir, .. } => {
                    check("temperature", q(&up(temperature)), Dimension::Temperature, &|c| match &c.driver {
                        DriverConfig::IkaHotplate(h) => Some((-273.15, h.max_temperature.0)),
                        _ => None,
                    });
                    if let Some(s) = stir {
                        check("stir", q(&up(s)), Dimension::RotationalSpeed, &|c| match &c.driver {
                            DriverConfig::IkaHotplate(h) => Some((0.0, h.max_speed.0)),
                            _ => None,
                        });
                    }
                }
                Op::Stir { speed, .. } => {
                    check("speed", q(&up(speed)), Dimension::RotationalSpeed, &|c| match &c.driver {
                        DriverConfig::IkaHotplate(h) => Some((0.0, h.max_speed.0)),
                        _ => None,
                    });
                }
                Op::Measure { wavelength, .. } => {
                    check("wavelength", q(&up(wavelength)), Dimension::Wavelength, &|c| match &c.driver {
                        DriverConfig::OceanFlame(f) => {
                            let (a, b) = f.range();
                            Some((a.0, b.0))
                        }
                        _ => None,
                    });
                }
                Op::HoldTemperature { temperature, .. } => {
                    check("temperature", q(&up(temperature)), Dimension::Temperature, &|c| match &c.driver {
                        DriverConfig::ModbusTemperature(m) => Some((-273.15, m.max_temperature.0)),
                        DriverConfig::Declared(d) => d.declaration.hold_temperature.as_ref().map(|h| {
                            let v =
                                d.declaration.command(&h.set.command).map(|c| c.value(&h.set.arg)).unwrap_or_default();
                            (v.min.unwrap_or(-273.15), v.max.unwrap_or(f64::INFINITY))
                        }),
                        _ => None,
                    });
                }
                Op::Select { position } => {
                    let arg = protocols::Arg::Value(f64::from(*position));
                    check("position", arg, Dimension::Dimensionless, &|c| match &c.driver {
                        DriverConfig::ViciValve(v) => Some((1.0, f64::from(v.positions))),
                        _ => None,
                    });
                }
                Op::Transfer { .. } | Op::Dispense { .. } | Op::Weigh { .. } | Op::ReadTemperature { .. } => {}
            }
        }
    }
}

fn up<T: Into<Quantity> + Copy>(a: &protocols::Arg<T>) -> protocols::Arg<Quantity> {
    match a {
        protocols::Arg::Value(v) => protocols::Arg::Value((*v).into()),
        protocols::Arg::Param(p) => protocols::Arg::Param(p.clone()),
    }
}

fn map_arg(a: &protocols::Arg<Quantity>) -> protocols::Arg<f64> {
    match a {
        protocols::Arg::Value(q) => protocols::Arg::Value(q.value),
        protocols::Arg::Param(p) => protocols::Arg::Param(p.clone()),
    }
}
