//! The lab's reagents and its bottles: what each solution is, where each bottle stands (a pump's own reservoir, or
//! a port of a selector valve that feeds a pump), and how much of it a pump can draw.
//!
//! The inventory lives where the bottles already are in the lab file: a `reagents` section says what each solution
//! is (concentration, role, description), and a pump's `reservoir` or a valve's port names the reagent its bottle
//! holds, with the bottle's volume and dead volume (what a pump cannot draw: the tubing's reach above the bottom).
//! A bottle written as a bare name (`reservoir: "A"`) is untracked, as every bottle was before stock was tracked.
//! A [`Source`] is one bottle seen from the pump that draws from it; a protocol names reagents and the controller
//! resolves each dispense to a source at dispatch.

use std::collections::BTreeMap;
use std::fmt;

use protocols::InstrumentKind;
use protocols::units::{Dimension, Quantity, Volume};
use serde::{Deserialize, Serialize};

use std::sync::Arc;

use protocols::diagnostic::{Diagnostic, Diagnostics, SourceFile};
use protocols::ron_file::parse_section;
use protocols::source::{Node, Seg};

use super::file::{BottleFile, ReagentFile};
use super::{DriverConfig, Lab};

/// A solution as made up for the bench.
#[derive(Debug, Clone, PartialEq)]
pub struct Reagent {
    /// Its name, which protocols and campaigns use.
    pub name: String,
    /// Its concentration in mol/L, if given.
    pub concentration: Option<f64>,
    /// What it is for (`catalyst`, `base`, `solvent`...): a protocol's reagent parameter may ask for a role.
    pub role: Option<String>,
    /// For people.
    pub description: String,
}

/// One bottle: the reagent it holds and, if tracked, how much.
#[derive(Debug, Clone, PartialEq)]
pub struct Bottle {
    /// The reagent's name.
    pub reagent: String,
    /// What the bottle holds when full (as filled for a campaign); none for an untracked bottle.
    pub volume: Option<Volume>,
    /// What a pump can never draw from it.
    pub dead: Volume,
}

impl Bottle {
    /// What a pump can draw from a full bottle, if the bottle is tracked.
    pub fn usable(&self) -> Option<Volume> {
        self.volume.map(|v| Volume((v.0 - self.dead.0).max(0.0)))
    }
}

/// A prime draws this many line volumes from the new bottle and pushes them back out to waste: the first line's
/// worth brings the last reagent out of the tubing into the syringe, and the second is what the tubing holds once
/// the syringe has pushed everything back (the syringe empties in the order it filled), so afterwards the line
/// holds only the new reagent.
pub const PRIME_LINES: f64 = 2.0;

/// Where a pump draws a reagent from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Source {
    /// The reservoir on the pump's own input.
    Own {
        /// The pump.
        pump: String,
    },
    /// A port of a selector valve whose common port feeds the pump's input.
    Port {
        /// The valve.
        valve: String,
        /// The port, from 1.
        port: u32,
        /// The pump the valve feeds.
        pump: String,
    },
}

impl Source {
    /// The pump that draws from it.
    pub fn pump(&self) -> &str {
        match self {
            Source::Own { pump } | Source::Port { pump, .. } => pump,
        }
    }

    /// The valve and port it is reached through, if any.
    pub fn valve(&self) -> Option<(&str, u32)> {
        match self {
            Source::Own { .. } => None,
            Source::Port { valve, port, .. } => Some((valve, *port)),
        }
    }

    /// A short name, for the record and its tables: `pump_a` or `valve:2`.
    pub fn key(&self) -> String {
        match self {
            Source::Own { pump } => pump.clone(),
            Source::Port { valve, port, .. } => format!("{valve}:{port}"),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Own { pump } => write!(f, "`{pump}`'s reservoir"),
            Source::Port { valve, port, pump } => write!(f, "port {port} of `{valve}` (feeding `{pump}`)"),
        }
    }
}

impl Lab {
    /// The reagent called `name`, if the lab declares it.
    pub fn reagent(&self, name: &str) -> Option<&Reagent> {
        self.reagents.get(name)
    }

    /// Every bottle on the bench, with the source it is drawn through. A pump fed by a valve draws only through
    /// the valve, so its own `reservoir` is not a source.
    pub fn bottles(&self) -> Vec<(Source, &Bottle)> {
        let fed: Vec<&str> = self
            .instruments
            .iter()
            .filter_map(|i| match &i.driver {
                DriverConfig::ViciValve(v) => v.feeds.as_deref(),
                _ => None,
            })
            .collect();
        let mut out = Vec::new();
        for i in &self.instruments {
            match &i.driver {
                DriverConfig::CavroXCalibur(c)
                    if !fed.contains(&i.name.as_str()) && !c.reservoir.reagent.is_empty() =>
                {
                    out.push((Source::Own { pump: i.name.clone() }, &c.reservoir));
                }
                DriverConfig::ViciValve(v) => {
                    let Some(pump) = &v.feeds else { continue };
                    for (port, bottle) in &v.ports {
                        let source = Source::Port { valve: i.name.clone(), port: *port, pump: pump.clone() };
                        out.push((source, bottle));
                    }
                }
                _ => {}
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The bottle a source draws from.
    pub fn bottle(&self, source: &Source) -> Option<&Bottle> {
        self.bottles().into_iter().find(|(s, _)| s == source).map(|(_, b)| b)
    }

    /// Every source of a reagent.
    pub fn sources(&self, reagent: &str) -> Vec<Source> {
        self.bottles().into_iter().filter(|(_, b)| b.reagent == reagent).map(|(s, _)| s).collect()
    }

    /// The sources of a reagent whose pump stands at deck position `position`.
    pub fn sources_at(&self, reagent: &str, position: &str) -> Vec<Source> {
        self.sources(reagent)
            .into_iter()
            .filter(|s| self.instrument(s.pump()).and_then(|p| p.position.as_deref()) == Some(position))
            .collect()
    }

    /// The reagents a reagent parameter may take: those with `role`, or those named in `list`.
    pub fn reagents_for(&self, slot: &protocols::ReagentSlot) -> Vec<String> {
        match slot {
            protocols::ReagentSlot::Role(role) => {
                self.reagents.values().filter(|r| r.role.as_deref() == Some(role)).map(|r| r.name.clone()).collect()
            }
            protocols::ReagentSlot::List(list) => list.clone(),
        }
    }

    /// The shared tubing between a valve and the pump it feeds, and the valve's waste port.
    pub fn line_of(&self, valve: &str) -> Option<(Option<Volume>, Option<u32>)> {
        match &self.instrument(valve)?.driver {
            DriverConfig::ViciValve(v) => Some((v.line, v.waste)),
            _ => None,
        }
    }

    /// How valve `valve` primes its shared line: the waste port and the microlitres drawn through the line and
    /// pushed back out to waste ([`PRIME_LINES`] times the line's volume); `None` for a valve without both a
    /// `line` and a `waste`, which cannot prime.
    pub fn prime_of(&self, valve: &str) -> Option<(u32, Volume)> {
        match self.line_of(valve)? {
            (Some(line), Some(waste)) if line.0 > 0.0 => Some((waste, Volume(PRIME_LINES * line.0))),
            _ => None,
        }
    }
}

/// Marks each syringe pump a selector valve feeds ([`super::CavroConfig::fed`]).
pub(super) fn mark_fed_pumps(instruments: &mut [super::InstrumentSpec]) {
    let fed: Vec<String> = instruments
        .iter()
        .filter_map(|i| match &i.driver {
            DriverConfig::ViciValve(v) => v.feeds.clone(),
            _ => None,
        })
        .collect();
    for i in instruments {
        if let DriverConfig::CavroXCalibur(c) = &mut i.driver {
            c.fed = fed.contains(&i.name);
        }
    }
}

/// Parses `text` as a quantity of `dimension`, or says why not.
fn quantity(text: &str, dimension: Dimension) -> Result<f64, String> {
    match Quantity::parse(text) {
        Ok(q) if q.dimension == dimension => Ok(q.value),
        Ok(q) => Err(format!("needs a {}, not a {}", dimension.name(), q.dimension.name())),
        Err(e) => Err(format!("is not a quantity: {e}")),
    }
}

/// Reads and validates the lab file's `reagents` section (`node`), each problem at its place.
pub(super) fn section(source: &Arc<SourceFile>, node: &Node, diags: &mut Diagnostics) -> BTreeMap<String, Reagent> {
    let error = |span: std::ops::Range<usize>, msg: String, help: String| {
        Diagnostic::error(super::codes::REAGENT, source, span, msg).with_help(help)
    };
    let mut out = BTreeMap::new();
    for (key, value) in &node.entries {
        let Some(name) = key.string.clone() else { continue };
        if name.trim().is_empty() || name.contains('$') {
            diags.push(error(
                key.span.clone(),
                format!("`{name}` is not a reagent name"),
                "name the solution as people on the bench call it, without `$`, such as \"C1\"".into(),
            ));
            continue;
        }
        match parse_section::<ReagentFile>(source, value.span.clone(), "reagent") {
            Ok(f) => {
                let mut fail = |field: &str, msg: String, help: String| {
                    diags.push(error(value.span_of(&[Seg::Field(field)]), msg, help))
                };
                out.insert(name.clone(), reagent(&name, f, &mut fail));
            }
            Err(d) => diags.push(d),
        }
    }
    out
}

/// Reports an instrument's bottle problems, as (the bottle's field, its field, message, hint): a reservoir's at its
/// field, a port's at its own entry (found by the number written as its key, which the span index does not name).
pub(super) fn report_bottles(
    source: &Arc<SourceFile>,
    node: &Node,
    problems: Vec<(&'static str, String, String, String)>,
    diags: &mut Diagnostics,
) {
    for (bottle, field, msg, help) in problems {
        let path = [Seg::Field("driver"), Seg::Field(bottle)];
        let port = node.get(&path).and_then(|ports| {
            ports
                .entries
                .iter()
                .find(|(k, _)| source.text.get(k.span.clone()) == Some(field.as_str()))
                .map(|(_, v)| v.span.clone())
        });
        let span = match (bottle, port) {
            ("ports", Some(span)) => span,
            ("ports", None) => node.span_of(&path),
            _ => node.span_of(&[Seg::Field("driver"), Seg::Field(bottle), Seg::Field(&field)]),
        };
        diags.push(Diagnostic::error(super::codes::REAGENT, source, span, msg).with_help(help));
    }
}

/// Validates the `reagents` section's entry `name`: problems go to `fail` as (field, message, hint).
pub(super) fn reagent(name: &str, f: ReagentFile, fail: &mut dyn FnMut(&str, String, String)) -> Reagent {
    let concentration = f.concentration.as_deref().and_then(|c| match quantity(c, Dimension::Concentration) {
        Ok(v) if v > 0.0 && v.is_finite() => Some(v),
        Ok(_) => {
            fail(
                "concentration",
                format!("the concentration of `{name}` must be positive"),
                "such as \"0.5 M\"".into(),
            );
            None
        }
        Err(e) => {
            fail(
                "concentration",
                format!("the concentration of `{name}` {e}"),
                format!("use {}", Dimension::Concentration.examples()),
            );
            None
        }
    });
    if f.role.as_deref().is_some_and(|r| r.trim().is_empty()) {
        fail(
            "role",
            format!("the role of `{name}` is empty"),
            "name what it is for, such as \"catalyst\", or leave `role` out".into(),
        );
    }
    Reagent { name: name.to_owned(), concentration, role: f.role, description: f.description }
}

/// Validates a bottle: `fail` gets (field, message, hint) for each problem.
pub(super) fn bottle(
    owner: &str,
    f: BottleFile,
    reagents: Option<&BTreeMap<String, Reagent>>,
    fail: &mut dyn FnMut(&str, String, String),
) -> Bottle {
    if let Some(known) = reagents
        && !f.reagent.is_empty()
        && !known.contains_key(&f.reagent)
    {
        let names: Vec<&str> = known.keys().map(String::as_str).collect();
        let hint = match protocols::ron_file::suggest(&f.reagent, &names) {
            Some(s) => format!("did you mean `{s}`? Or declare `{}` under `reagents`", f.reagent),
            None => format!("declare `{}` under `reagents`; the lab has {}", f.reagent, list(&names)),
        };
        fail("reagent", format!("{owner} holds `{}`, which the lab's `reagents` do not declare", f.reagent), hint);
    }
    let mut volume_of = |field: &str, text: &Option<String>| -> Option<f64> {
        let text = text.as_ref()?;
        match quantity(text, Dimension::Volume) {
            Ok(v) if v >= 0.0 && v.is_finite() => Some(v),
            Ok(_) => {
                fail(field, format!("{} of {owner} must not be negative", what(field)), "such as \"100 mL\"".into());
                None
            }
            Err(e) => {
                fail(field, format!("{} of {owner} {e}", what(field)), format!("use {}", Dimension::Volume.examples()));
                None
            }
        }
    };
    let volume = volume_of("volume", &f.volume);
    let dead = volume_of("dead", &f.dead).unwrap_or(0.0);
    match volume {
        Some(v) if dead >= v && f.volume.is_some() => fail(
            "dead",
            format!("{owner} has {} of dead volume in a bottle of {}: nothing could be drawn", Volume(dead), Volume(v)),
            "the dead volume is what the pump cannot reach; it must be less than the bottle's volume".into(),
        ),
        None if f.dead.is_some() && f.volume.is_none() => fail(
            "dead",
            format!("{owner} gives a dead volume but no volume"),
            "give the bottle's `volume` too, or leave `dead` out for an untracked bottle".into(),
        ),
        _ => {}
    }
    Bottle { reagent: f.reagent, volume: volume.map(Volume), dead: Volume(dead) }
}

/// A problem with how the bottles stand on the bench.
pub(super) struct Plumbing {
    /// Whether it only warns.
    pub(super) warning: bool,
    pub(super) instrument: String,
    pub(super) field: &'static str,
    pub(super) message: String,
    pub(super) hint: String,
}

/// Checks how the bottles stand on the bench.
pub(super) fn check_plumbing(lab: &Lab) -> Vec<Plumbing> {
    let mut out = Vec::new();
    let mut push = |warning: bool, instrument: &str, field: &'static str, message: String, hint: String| {
        out.push(Plumbing { warning, instrument: instrument.to_owned(), field, message, hint });
    };
    let mut fail = |instrument: &str, field: &'static str, message: String, hint: String| {
        push(field == "line", instrument, field, message, hint);
    };
    for valve in &lab.instruments {
        let DriverConfig::ViciValve(v) = &valve.driver else { continue };
        if let Some(w) = v.waste {
            if w == 0 || w > v.positions {
                fail(
                    &valve.name,
                    "waste",
                    format!("waste port {w} of `{}` is not one of its 1..={}", valve.name, v.positions),
                    "number the ports as printed on the valve".into(),
                );
            } else if v.ports.contains_key(&w) {
                fail(
                    &valve.name,
                    "waste",
                    format!("port {w} of `{}` is its waste and also holds a bottle", valve.name),
                    "plumb the waste to a port without a bottle".into(),
                );
            }
        }
        let Some(pump) = &v.feeds else {
            if !v.ports.is_empty() && !lab.reagents.is_empty() {
                fail(
                    &valve.name,
                    "ports",
                    format!(
                        "`{}` has bottles on its ports but feeds no pump, so nothing can draw from them",
                        valve.name
                    ),
                    "say which pump's input the valve is plumbed to with `feeds: \"pump\"`".into(),
                );
            }
            continue;
        };
        // A pump fed through a valve draws only through it; a reservoir of its own named in a lab with an
        // inventory would be a bottle nothing can reach.
        if !lab.reagents.is_empty()
            && let Some(p) = lab.instrument(pump)
            && let DriverConfig::CavroXCalibur(c) = &p.driver
            && !c.reservoir.reagent.is_empty()
            && p.kind() == InstrumentKind::SyringePump
        {
            fail(
                pump,
                "reservoir",
                format!(
                    "`{pump}` is fed by `{}`, so its own reservoir `{}` can never be drawn from",
                    valve.name, c.reservoir.reagent
                ),
                format!("put the bottle on a port of `{}`, or take `reservoir` out of `{pump}`", valve.name),
            );
        }
        let reagents: std::collections::BTreeSet<&str> = v.ports.values().map(|b| b.reagent.as_str()).collect();
        if !lab.reagents.is_empty() && reagents.len() > 1 && (v.line.is_none() || v.waste.is_none()) {
            fail(
                &valve.name,
                "line",
                format!(
                    "`{}` switches `{pump}` between {} reagents but gives no `line` and `waste`, so a dispense could carry the last reagent's liquid",
                    valve.name,
                    reagents.len()
                ),
                "give the shared tubing's volume and the waste port: `line: \"40 uL\", waste: 6`".into(),
            );
        }
    }
    // A prime must fit in one stroke: the syringe pushes back what it drew, and a stroke shorter than the prime
    // leaves the last reagent in the line.
    for valve in &lab.instruments {
        let DriverConfig::ViciValve(v) = &valve.driver else { continue };
        let (Some(pump), Some((_, prime))) = (&v.feeds, lab.prime_of(&valve.name)) else { continue };
        if let Some(p) = lab.instrument(pump)
            && let DriverConfig::CavroXCalibur(c) = &p.driver
            && c.syringe.0 + 1e-9 < prime.0
        {
            out.push(Plumbing {
                warning: false,
                instrument: valve.name.clone(),
                field: "line",
                message: format!(
                    "priming the line of `{}` takes {prime} in one stroke ({PRIME_LINES} times the line), more than \
                     the {} syringe of `{pump}` holds",
                    valve.name, c.syringe
                ),
                hint: format!("use a syringe of at least {prime} on `{pump}`, or shorter tubing"),
            });
        }
    }
    out
}

fn what(field: &str) -> &'static str {
    if field == "dead" { "the dead volume" } else { "the volume" }
}

fn list(names: &[&str]) -> String {
    if names.is_empty() { "none".into() } else { names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ") }
}
