//! Loading a lab file: parse each section, validate it into the runtime types, and report every problem at its place
//! in the file with a fix.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use protocols::InstrumentKind;
use protocols::diagnostic::{Diagnostic, Diagnostics, SourceFile};
use protocols::ron_file::{check_syntax, parse_section, suggest};
use protocols::source::{Node, Seg, index};
use protocols::units::{Dimension, Duration, Mass, Quantity, Speed, Temperature, Volume, trim_float};
use protocols::validate::valid_name;

use crate::references::{Found, References};
use crate::transport::Reconnect;

use super::file::*;
use super::*;

/// Loads and validates a lab file.
pub fn load_lab(source: Arc<SourceFile>) -> Result<Lab, Diagnostics> {
    let mut diags = Diagnostics::new();
    if let Err(d) = check_syntax(&source) {
        diags.push(d);
        return Err(diags);
    }
    let tree = index(&source.text);
    let err = |diags: &mut Diagnostics, code, span: Range<usize>, msg: String, help: String| {
        diags.push(Diagnostic::error(code, &source, span, msg).with_help(help));
    };
    let header = match parse_section::<LabHeader>(&source, 0..source.text.len(), "lab") {
        Ok(h) => Some(h),
        Err(d) => {
            diags.push(d);
            None
        }
    };
    if let Some(h) = &header
        && h.format != FORMAT
    {
        err(
            &mut diags,
            codes::FORMAT,
            tree.span_of(&[Seg::Field("format")]),
            format!("unsupported lab format {}", h.format),
            format!("this version of lab reads `format: {FORMAT}`"),
        );
    }
    let deck = tree.get(&[Seg::Field("deck")]).and_then(|n| {
        match parse_section::<DeckFile>(&source, n.span.clone(), "deck") {
            Ok(d) => Some(d),
            Err(d) => {
                diags.push(d);
                None
            }
        }
    });
    let reagents = tree.get(&[Seg::Field("reagents")]).map(|node| reagents::section(&source, node, &mut diags));
    let mut instruments = Vec::new();
    let mut refs = References::of(&source.name);
    if let Some(node) = tree.get(&[Seg::Field("instruments")]) {
        for (key, value) in &node.entries {
            let Some(name) = key.string.clone() else { continue };
            if !valid_name(&name) {
                err(
                    &mut diags,
                    codes::NAME,
                    key.span.clone(),
                    format!("`{name}` is not a valid instrument name"),
                    "use lower-case letters, digits and `_`, starting with a letter".into(),
                );
            }
            if instruments.iter().any(|i: &InstrumentSpec| i.name == name) {
                err(
                    &mut diags,
                    codes::NAME,
                    key.span.clone(),
                    format!("instrument `{name}` is declared twice"),
                    "rename or remove one of them".into(),
                );
                continue;
            }
            match parse_section::<InstrumentFile>(&source, value.span.clone(), "instrument") {
                Ok(f) => {
                    let known = reagents.as_ref();
                    if let Some(spec) =
                        instrument(&source, &name, f, value, deck.as_ref(), known, &mut refs, &mut diags)
                    {
                        instruments.push(spec);
                    }
                }
                Err(d) => diags.push(d),
            }
        }
        if node.entries.is_empty() {
            err(
                &mut diags,
                codes::NAME,
                node.span.clone(),
                "the lab has no instruments".into(),
                "add instruments under `instruments: { \"name\": (driver: ..., port: ...) }`".into(),
            );
        }
    }
    if let (Some(deck), Some(gantry)) = (&deck, instruments.iter().find(|i| i.kind() == InstrumentKind::Gantry)) {
        let DriverConfig::GcodeGantry(g) = &gantry.driver else {
            unreachable!("gantry kind implies the gantry driver")
        };
        let inside = |p: &Point| {
            p.x >= 0.0 && p.y >= 0.0 && p.z >= 0.0 && p.x <= g.travel.x && p.y <= g.travel.y && p.z <= g.travel.z
        };
        for (name, p) in &deck.positions {
            if !inside(p) || p.z >= deck.safe_z {
                err(
                    &mut diags,
                    codes::DECK,
                    tree.span_of(&[Seg::Field("deck"), Seg::Field("positions"), Seg::Key(name)]),
                    format!(
                        "position `{name}` at ({}, {}, {}) is outside the gantry's reach",
                        trim_float(p.x),
                        trim_float(p.y),
                        trim_float(p.z)
                    ),
                    format!(
                        "the gantry reaches (0..={}, 0..={}, 0..={}) and travels at z {}; positions must lie inside and below that",
                        trim_float(g.travel.x),
                        trim_float(g.travel.y),
                        trim_float(g.travel.z),
                        trim_float(deck.safe_z)
                    ),
                );
            }
        }
        let last = deck.rack.slots().saturating_sub(1);
        for (i, which) in [(0, "first"), (last, "last")] {
            if let Some(p) = deck.rack.slot(i)
                && (!inside(&p) || p.z >= deck.safe_z)
            {
                err(
                    &mut diags,
                    codes::DECK,
                    tree.span_of(&[Seg::Field("deck"), Seg::Field("rack")]),
                    format!(
                        "the rack's {which} slot at ({}, {}, {}) is outside the gantry's reach",
                        trim_float(p.x),
                        trim_float(p.y),
                        trim_float(p.z)
                    ),
                    "move the rack's origin or reduce its pitch, columns or rows".into(),
                );
            }
        }
        if deck.safe_z > g.travel.z {
            err(
                &mut diags,
                codes::DECK,
                tree.span_of(&[Seg::Field("deck"), Seg::Field("safe_z")]),
                format!("safe_z {} is above the gantry's travel {}", trim_float(deck.safe_z), trim_float(g.travel.z)),
                "lower safe_z".into(),
            );
        }
    }
    let simulation = match header.as_ref().and_then(|h| h.simulation.as_ref()) {
        Some(s) => {
            if !(s.time_scale.is_finite() && s.time_scale > 0.0) {
                err(
                    &mut diags,
                    codes::SIMULATION,
                    tree.span_of(&[Seg::Field("simulation"), Seg::Field("time_scale")]),
                    format!("time_scale must be positive, not {}", s.time_scale),
                    "1 is real time; 600 runs ten lab minutes per wall second".into(),
                );
            }
            let folder = std::path::Path::new(&source.name).parent().map(std::path::Path::to_path_buf);
            let ledger = s.ledger.as_ref().map(|l| match &folder {
                Some(f) if std::path::Path::new(l).is_relative() => f.join(l),
                _ => std::path::PathBuf::from(l),
            });
            Simulation { seed: s.seed, time_scale: s.time_scale, ledger }
        }
        None => Simulation { seed: 0, time_scale: 1.0, ledger: None },
    };
    for valve in &instruments {
        let DriverConfig::ViciValve(ValveConfig { feeds: Some(pump), .. }) = &valve.driver else { continue };
        let fed = instruments.iter().find(|i| &i.name == pump);
        let problem = match fed {
            None => Some(format!("valve `{}` feeds `{pump}`, which the lab does not have", valve.name)),
            Some(p) if p.kind() != InstrumentKind::SyringePump => Some(format!(
                "valve `{}` feeds `{pump}`, which is {}, not a syringe pump",
                valve.name,
                p.kind().phrase()
            )),
            Some(_) => None,
        };
        if let Some(msg) = problem {
            err(
                &mut diags,
                codes::SETTING,
                tree.span_of(&[
                    Seg::Field("instruments"),
                    Seg::Key(&valve.name),
                    Seg::Field("driver"),
                    Seg::Field("feeds"),
                ]),
                msg,
                "name the syringe pump whose input port the valve is plumbed to".into(),
            );
        }
    }
    reagents::mark_fed_pumps(&mut instruments);
    let real = instruments.iter().any(|i| !i.port.is_simulated());
    if real && simulation.time_scale != 1.0 {
        err(
            &mut diags,
            codes::SIMULATION,
            tree.span_of(&[Seg::Field("simulation"), Seg::Field("time_scale")]),
            "this lab has real instruments, so it must run in real time".into(),
            "set `time_scale: 1`, or make every port `Simulated`".into(),
        );
    }
    diags.sort();
    if diags.has_errors() {
        return Err(diags);
    }
    // A section that could not be located has no diagnostic of its own; a refusal must still say why.
    let (Some(header), Some(deck)) = (header, deck) else {
        err(
            &mut diags,
            codes::DECK,
            0..0,
            "the lab's `deck` section could not be read".into(),
            "check the syntax of `deck: (rack: ..., positions: {...})`".into(),
        );
        return Err(diags);
    };
    instruments.sort_by(|a, b| a.name.cmp(&b.name));
    let lab = Lab {
        name: header.name,
        description: header.description,
        deck: Deck { safe_z: deck.safe_z, rack: deck.rack, positions: deck.positions },
        instruments,
        reagents: reagents.unwrap_or_default(),
        simulation,
        source: Arc::clone(&source),
    };
    for p in reagents::check_plumbing(&lab) {
        let span = tree.span_of(&[
            Seg::Field("instruments"),
            Seg::Key(&p.instrument),
            Seg::Field("driver"),
            Seg::Field(p.field),
        ]);
        let d = Diagnostic::error(codes::REAGENT, &source, span, p.message).with_help(p.hint);
        diags.push(if p.warning { d.warning() } else { d });
    }
    if diags.has_errors() {
        diags.sort();
        return Err(diags);
    }
    Ok(lab)
}

fn instrument(
    source: &Arc<SourceFile>,
    name: &str,
    f: InstrumentFile,
    node: &Node,
    deck: Option<&DeckFile>,
    reagents: Option<&BTreeMap<String, Reagent>>,
    refs: &mut References,
    diags: &mut Diagnostics,
) -> Option<InstrumentSpec> {
    // Diagnostics of the files the instrument refers to, added once `fail` no longer holds `diags`.
    let mut referred = Diagnostics::new();
    // Problems with the instrument's bottles, as (the bottle's field, its field, message, hint): they are the
    // inventory's (D0008), reported once `fail` no longer holds `diags`.
    let mut bottles: Vec<(&'static str, String, String, String)> = Vec::new();
    let mut ok = true;
    let mut fail = |path: &[Seg<'_>], msg: String, help: String| {
        diags.push(Diagnostic::error(codes::SETTING, source, node.span_of(path), msg).with_help(help));
        ok = false;
    };
    let quantity =
        |field: &'static str, text: &str, dim: Dimension, fail: &mut dyn FnMut(&[Seg<'_>], String, String)| -> f64 {
            match Quantity::parse(text) {
                Ok(q) if q.dimension == dim => q.value,
                Ok(q) => {
                    fail(
                        &[Seg::Field("driver"), Seg::Field(field)],
                        format!("`{field}` of `{name}` needs a {}, not a {}", dim.name(), q.dimension.name()),
                        format!("use {}", dim.examples()),
                    );
                    f64::NAN
                }
                Err(e) => {
                    fail(
                        &[Seg::Field("driver"), Seg::Field(field)],
                        format!("bad quantity for `{field}` of `{name}`: {e}"),
                        format!("write a number and a unit of {}: {}", dim.name(), dim.examples()),
                    );
                    f64::NAN
                }
            }
        };
    let driver = match f.driver {
        DriverFile::CavroXCalibur { address, syringe, top_speed, reservoir, protocol } => {
            if !(1..=15).contains(&address) {
                fail(
                    &[Seg::Field("driver"), Seg::Field("address")],
                    format!("address {address} of `{name}` is not a pump address"),
                    "the address switch gives 1 to 15 (switch positions 0 to E)".into(),
                );
            }
            let syringe = quantity("syringe", &syringe, Dimension::Volume, &mut fail);
            if syringe.is_finite() && syringe <= 0.0 {
                fail(
                    &[Seg::Field("driver"), Seg::Field("syringe")],
                    format!("syringe of `{name}` must have a positive volume"),
                    "common sizes: 250 uL, 1 mL, 5 mL".into(),
                );
            }
            let top_speed = top_speed.unwrap_or(1400);
            if !(5..=6000).contains(&top_speed) {
                fail(
                    &[Seg::Field("driver"), Seg::Field("top_speed")],
                    format!("top_speed {top_speed} of `{name}` is outside 5..=6000 half-steps/s"),
                    "the XCalibur's V command takes 5 to 6000; its default is 1400".into(),
                );
            }
            let owner = format!("the reservoir of `{name}`");
            let reservoir = reagents::bottle(&owner, reservoir, reagents, &mut |field, msg, help| {
                bottles.push(("reservoir", field.to_owned(), msg, help));
            });
            DriverConfig::CavroXCalibur(CavroConfig {
                address,
                syringe: Volume(syringe),
                top_speed,
                reservoir,
                protocol,
                fed: false, // set once every valve has been read
            })
        }
        DriverFile::IkaHotplate { model, max_temperature, max_speed, tolerance, watchdog } => {
            let t = quantity("max_temperature", &max_temperature, Dimension::Temperature, &mut fail);
            let s = quantity("max_speed", &max_speed, Dimension::RotationalSpeed, &mut fail);
            let tol = tolerance.map_or(1.0, |t| quantity("tolerance", &t, Dimension::Temperature, &mut fail));
            let watchdog = watchdog.map(|w| quantity("watchdog", &w, Dimension::Duration, &mut fail));
            if let Some(w) = watchdog
                && w.is_finite()
                && !(IKA_WATCHDOG_RANGE.0..=IKA_WATCHDOG_RANGE.1).contains(&w)
            {
                fail(
                    &[Seg::Field("driver"), Seg::Field("watchdog")],
                    format!("watchdog of `{name}` is {w} s; an IKA plate's watchdog takes 20 s to 25 min"),
                    "`watchdog: \"25 min\"` lets a controller come back within 25 minutes and carry on a heat".into(),
                );
            }
            let model = model.unwrap_or_else(|| "RCT digital".to_owned());
            if let Some(p) = crate::models::namur::profile(&model) {
                if t > p.max_temperature {
                    fail(
                        &[Seg::Field("driver"), Seg::Field("max_temperature")],
                        format!("`{name}` is an IKA {model}, which takes set points up to {} degC", p.max_temperature),
                        format!("lower `max_temperature` to at most \"{} degC\"", p.max_temperature),
                    );
                }
                if s > p.speed.1 {
                    fail(
                        &[Seg::Field("driver"), Seg::Field("max_speed")],
                        format!("`{name}` is an IKA {model}, which stirs at most {} rpm", p.speed.1),
                        format!("lower `max_speed` to at most \"{} rpm\"", p.speed.1),
                    );
                }
            }
            DriverConfig::IkaHotplate(IkaConfig {
                model,
                max_temperature: Temperature(t),
                max_speed: Speed(s),
                tolerance: Temperature(tol),
                watchdog: watchdog.map(Duration),
            })
        }
        DriverFile::OceanFlame { integration, scans, calibration, pixels } => {
            let it = quantity("integration", &integration, Dimension::Duration, &mut fail);
            if it.is_finite() && !(0.001..=65.0).contains(&it) {
                fail(
                    &[Seg::Field("driver"), Seg::Field("integration")],
                    format!("integration time of `{name}` must be 1 ms to 65 s"),
                    "100 ms suits most samples".into(),
                );
            }
            if scans == 0 {
                fail(
                    &[Seg::Field("driver"), Seg::Field("scans")],
                    format!("`{name}` must average at least one scan"),
                    "use `scans: 1` or more".into(),
                );
            }
            if calibration.is_empty() || calibration.len() > 4 {
                fail(
                    &[Seg::Field("driver"), Seg::Field("calibration")],
                    format!("calibration of `{name}` needs 1 to 4 coefficients, got {}", calibration.len()),
                    "give [c0, c1, c2, c3] of wavelength(pixel) = c0 + c1 p + c2 p^2 + c3 p^3".into(),
                );
            }
            if let Some(p) = pixels
                && !(1..=MAX_PIXELS).contains(&p)
            {
                fail(
                    &[Seg::Field("driver"), Seg::Field("pixels")],
                    format!("`{name}` has {p} pixels; a spectrometer has 1 to {MAX_PIXELS}"),
                    "leave `pixels` out for the Flame's 2048".into(),
                );
            }
            let mut c = [0.0; 4];
            for (i, v) in calibration.iter().take(4).enumerate() {
                c[i] = *v;
            }
            DriverConfig::OceanFlame(FlameConfig {
                integration: Duration(it),
                scans,
                calibration: c,
                pixels: pixels.unwrap_or(2048),
            })
        }
        DriverFile::GcodeGantry { feed_rate, travel, grip, release } => {
            if !(feed_rate.is_finite() && feed_rate > 0.0) {
                fail(
                    &[Seg::Field("driver"), Seg::Field("feed_rate")],
                    format!("feed_rate of `{name}` must be positive"),
                    "in millimetres per minute, such as 3000".into(),
                );
            }
            DriverConfig::GcodeGantry(GantryConfig { feed_rate, travel, grip, release })
        }
        DriverFile::MettlerBalance { model, capacity, settle } => {
            let capacity = quantity("capacity", &capacity, Dimension::Mass, &mut fail);
            if capacity.is_finite() && capacity <= 0.0 {
                fail(
                    &[Seg::Field("driver"), Seg::Field("capacity")],
                    format!("capacity of `{name}` must be positive"),
                    "the weighing range on the balance's label, such as \"220 g\"".into(),
                );
            }
            let settle = settle.map_or(10.0, |t| quantity("settle", &t, Dimension::Duration, &mut fail));
            if model.trim().is_empty() {
                fail(
                    &[Seg::Field("driver"), Seg::Field("model")],
                    format!("model of `{name}` is empty"),
                    "the type the balance reports to `I2`, such as \"XS205\"".into(),
                );
            }
            DriverConfig::MettlerBalance(BalanceConfig { model, capacity: Mass(capacity), settle: Duration(settle) })
        }
        DriverFile::ViciValve { positions, id, feeds, ports, line, waste } => {
            if !(2..=40).contains(&positions) {
                fail(
                    &[Seg::Field("driver"), Seg::Field("positions")],
                    format!("`{name}` has {positions} positions; a VICI actuator takes 2 to 40"),
                    "the number of ports of the valve (`NP`), such as 6 or 10".into(),
                );
            }
            if let Some(c) = id
                && !(c.is_ascii_digit() || c.is_ascii_uppercase())
            {
                fail(
                    &[Seg::Field("driver"), Seg::Field("id")],
                    format!("device ID `{c}` of `{name}` is not 0-9 or A-Z"),
                    "RS-485 actuators default to 'Z'; leave `id` out on RS-232".into(),
                );
            }
            if let Some(bad) = ports.keys().find(|p| **p == 0 || **p > positions) {
                fail(
                    &[Seg::Field("driver"), Seg::Field("ports")],
                    format!("port {bad} of `{name}` is not one of its 1..={positions}"),
                    "number the ports as printed on the valve".into(),
                );
            }
            let line = line.map(|l| Volume(quantity("line", &l, Dimension::Volume, &mut fail)));
            let ports = ports
                .into_iter()
                .map(|(port, b)| {
                    let owner = format!("port {port} of `{name}`");
                    // Ports are numbered, so the diagnostic points at the `ports` map.
                    let bottle = reagents::bottle(&owner, b, reagents, &mut |_, msg, help| {
                        bottles.push(("ports", port.to_string(), msg, help));
                    });
                    (port, bottle)
                })
                .collect();
            DriverConfig::ViciValve(ValveConfig { positions, id, feeds, ports, line, waste })
        }
        DriverFile::ModbusTemperature { address, map, max_temperature, tolerance } => {
            if !(1..=247).contains(&address) {
                fail(
                    &[Seg::Field("driver"), Seg::Field("address")],
                    format!("address {address} of `{name}` is not a Modbus slave address"),
                    "Modbus RTU slaves use 1 to 247".into(),
                );
            }
            let t = quantity("max_temperature", &max_temperature, Dimension::Temperature, &mut fail);
            let tol = tolerance.map_or(1.0, |t| quantity("tolerance", &t, Dimension::Temperature, &mut fail));
            let map = match refs.map(&map, &mut referred) {
                Found::Loaded(m) => Some(m),
                Found::Missing => {
                    let known: Vec<&str> = crate::modbus_map::BUILT_IN.iter().map(|(n, _)| *n).collect();
                    let help = match suggest(&map, &known) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!(
                            "built-in maps: {}; or a file named like `maps/mine.modbus.ron`, relative to the lab file",
                            known.join(", ")
                        ),
                    };
                    let span = node.span_of(&[Seg::Field("driver"), Seg::Field("map")]);
                    let msg = format!(
                        "`{name}` names the register map `{map}`, which is neither built in nor a readable file"
                    );
                    referred
                        .push(Diagnostic::error(crate::modbus_map::codes::MISSING, source, span, msg).with_help(help));
                    None
                }
                Found::Invalid => {
                    fail(
                        &[Seg::Field("driver"), Seg::Field("map")],
                        format!("the register map `{map}` of `{name}` has errors"),
                        "see the map's own diagnostics".into(),
                    );
                    None
                }
            };
            let Some(map) = map else {
                diags.extend(referred);
                return None;
            };
            // The set point the lab may send must be one the controller takes.
            let sp_max = map
                .point(&map.temperature.sp)
                .and_then(|p| p.range.and_then(|(_, hi)| p.to_celsius(hi)).filter(|c| c.is_finite()));
            if let Some(hi) = sp_max
                && t > hi + 1e-9
            {
                fail(
                    &[Seg::Field("driver"), Seg::Field("max_temperature")],
                    format!("`{name}` is a {}, whose set point goes up to {} degC", map.name, trim_float(hi)),
                    format!("lower `max_temperature` to at most \"{} degC\"", trim_float(hi)),
                );
            }
            DriverConfig::ModbusTemperature(ModbusConfig {
                address,
                map,
                max_temperature: Temperature(t),
                tolerance: Temperature(tol),
            })
        }
        DriverFile::ScpiThermometer { model, terminator } => {
            if model.trim().is_empty() {
                fail(
                    &[Seg::Field("driver"), Seg::Field("model")],
                    format!("model of `{name}` is empty"),
                    "the model field of the instrument's `*IDN?` reply, such as \"MODEL 2000\"".into(),
                );
            }
            DriverConfig::ScpiThermometer(ScpiConfig { model, terminator })
        }
        DriverFile::Declared { instrument, model, settings } => {
            let Some(d) = declared(source, name, &instrument, model, &settings, node, refs, &mut referred) else {
                diags.extend(referred);
                return None;
            };
            DriverConfig::Declared(d)
        }
    };
    let kind = driver.kind();
    match (&f.position, kind.has_position()) {
        (None, true) => fail(
            &[Seg::Field("driver")],
            format!("`{name}` is {} but has no `position`", kind.phrase()),
            "say where it acts on vessels: `position: \"...\"`, a name from `deck.positions`".into(),
        ),
        (Some(_), false) => fail(
            &[Seg::Field("position")],
            format!("`{name}` is a gantry; gantries have no position"),
            "remove `position`".into(),
        ),
        (Some(p), true) => {
            if let Some(deck) = deck
                && !deck.positions.contains_key(p)
            {
                let known: Vec<&str> = deck.positions.keys().map(String::as_str).collect();
                let help = match suggest(p, &known) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("the deck's positions are: {}", known.join(", ")),
                };
                diags.push(
                    Diagnostic::error(
                        codes::POSITION,
                        source,
                        node.span_of(&[Seg::Field("position")]),
                        format!("position `{p}` of `{name}` is not on the deck"),
                    )
                    .with_help(help),
                );
                ok = false;
            }
        }
        (None, false) => {}
    }
    diags.extend(referred);
    if !bottles.is_empty() {
        reagents::report_bottles(source, node, std::mem::take(&mut bottles), diags);
        ok = false;
    }
    let mut line = driver.default_line();
    if let Some(s) = f.serial {
        if let Some(b) = s.baud {
            line.baud = b;
        }
        if let Some(d) = s.data_bits {
            if !(d == 7 || d == 8) {
                diags.push(
                    Diagnostic::error(
                        codes::SETTING,
                        source,
                        node.span_of(&[Seg::Field("serial"), Seg::Field("data_bits")]),
                        format!("data_bits of `{name}` must be 7 or 8"),
                    )
                    .with_help(format!("{} uses {}", driver.name(), driver.default_line())),
                );
                ok = false;
            }
            line.data_bits = d;
        }
        if let Some(p) = s.parity {
            line.parity = p;
        }
        if let Some(sb) = s.stop_bits {
            if !(sb == 1 || sb == 2) {
                diags.push(
                    Diagnostic::error(
                        codes::SETTING,
                        source,
                        node.span_of(&[Seg::Field("serial"), Seg::Field("stop_bits")]),
                        format!("stop_bits of `{name}` must be 1 or 2"),
                    )
                    .with_help(format!("{} uses {}", driver.name(), driver.default_line())),
                );
                ok = false;
            }
            line.stop_bits = sb;
        }
        if let Some(r) = s.reconnect {
            let delay = match r.delay.as_deref().map(Quantity::parse) {
                None => Some(Reconnect::DEFAULT.delay),
                Some(Ok(q)) if q.dimension == Dimension::Duration && q.value >= 0.0 && q.value <= 60.0 => {
                    Some(std::time::Duration::from_secs_f64(q.value))
                }
                Some(_) => None,
            };
            match delay {
                Some(delay) if r.attempts <= 100 => {
                    line.reconnect = Reconnect { attempts: r.attempts, delay, max_delay: Reconnect::DEFAULT.max_delay }
                }
                _ => {
                    diags.push(
                        Diagnostic::error(
                            codes::SETTING,
                            source,
                            node.span_of(&[Seg::Field("serial"), Seg::Field("reconnect")]),
                            format!("reconnect of `{name}` needs 0 to 100 attempts and a delay of 0 to 60 s"),
                        )
                        .with_help("such as `reconnect: (attempts: 5, delay: \"100 ms\")`"),
                    );
                    ok = false;
                }
            }
        }
        if let Some(t) = s.timeout {
            match Quantity::parse(&t) {
                Ok(q) if q.dimension == Dimension::Duration && q.value > 0.0 => {
                    line.timeout = std::time::Duration::from_secs_f64(q.value)
                }
                _ => {
                    diags.push(
                        Diagnostic::error(
                            codes::SETTING,
                            source,
                            node.span_of(&[Seg::Field("serial"), Seg::Field("timeout")]),
                            format!("timeout of `{name}` must be a positive duration"),
                        )
                        .with_help("such as \"500 ms\" or \"2 s\""),
                    );
                    ok = false;
                }
            }
        }
    }
    let port = match f.port {
        PortFile::Simulated => PortSpec::Simulated,
        PortFile::Simulator(p) => PortSpec::Simulator(p),
        PortFile::Serial(p) => PortSpec::Serial(p),
    };
    if port == PortSpec::Simulated
        && let Some(known) = unsimulated_model(&driver)
    {
        diags.push(
            Diagnostic::error(
                codes::SETTING,
                source,
                node.span_of(&[Seg::Field("driver"), Seg::Field("model")]),
                format!("`{name}` is simulated, and its simulator has no profile of this model"),
            )
            .with_help(format!("the simulator can be: {}", known.join(", "))),
        );
        ok = false;
    }
    let faults = match f.faults {
        None => None,
        Some(file) => {
            let faults = faults(source, name, &driver, &port, file, node, diags);
            ok &= faults.is_some();
            faults
        }
    };
    ok.then(|| InstrumentSpec { name: name.to_owned(), driver, port, position: f.position, line, faults })
}

/// Reads a `Declared` driver: finds the declaration, the model and the settings, and checks that the templates
/// the driver fills from the settings (the request's prefix and terminator, the bindings' values) come out right.
#[expect(clippy::too_many_arguments, reason = "the pieces of one instrument entry, as `instrument` holds them")]
fn declared(
    source: &Arc<SourceFile>,
    name: &str,
    reference: &str,
    model: Option<String>,
    given: &BTreeMap<String, SettingValue>,
    node: &Node,
    refs: &mut References,
    referred: &mut Diagnostics,
) -> Option<DeclaredConfig> {
    use crate::declared::{self, Dispense, Medium, Template};
    let at = |field: &str| node.span_of(&[Seg::Field("driver"), Seg::Field(field)]);
    let setting_error = |span: Range<usize>, msg: String, help: String| {
        Diagnostic::error(codes::SETTING, source, span, msg).with_help(help)
    };
    let decl = match refs.declaration(reference, referred) {
        Found::Loaded(d) => d,
        Found::Missing => {
            let known: Vec<&str> = declared::BUILT_IN.iter().map(|(n, _)| *n).collect();
            let help = match suggest(reference, &known) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!(
                    "built-in instruments: {}; or a file named like `instruments/mine.instrument.ron`, relative to the lab file",
                    known.join(", ")
                ),
            };
            let msg =
                format!("`{name}` names the instrument `{reference}`, which is neither built in nor a readable file");
            referred.push(Diagnostic::error(declared::codes::MISSING, source, at("instrument"), msg).with_help(help));
            return None;
        }
        Found::Invalid => {
            let msg = format!("the declaration `{reference}` of `{name}` has errors");
            referred.push(setting_error(at("instrument"), msg, "see the declaration's own diagnostics".into()));
            return None;
        }
    };
    let models = || decl.variants.keys().cloned().collect::<Vec<_>>().join(", ");
    let model = match model {
        Some(m) if decl.variants.contains_key(&m) => m,
        Some(m) => {
            let msg = format!("`{name}` is a {} `{m}`, a model its declaration does not have", decl.name);
            referred.push(setting_error(at("model"), msg, format!("the models are: {}", models())));
            return None;
        }
        None if decl.variants.len() == 1 => decl.variants.keys().next().cloned().unwrap_or_default(),
        None => {
            let msg = format!("`{name}` does not say which model of {} it is", decl.name);
            referred.push(setting_error(at("instrument"), msg, format!("add `model: \"...\"`, one of: {}", models())));
            return None;
        }
    };
    let texts: BTreeMap<String, String> = given.iter().map(|(k, v)| (k.clone(), v.text())).collect();
    let settings = match decl.settings_for(&model, &texts) {
        Ok(s) => s,
        Err(problems) => {
            for (setting, why) in problems {
                let span = node.span_of(&[Seg::Field("driver"), Seg::Field("settings"), Seg::Key(&setting)]);
                let help = match decl.settings.get(&setting) {
                    Some(s) => format!(
                        "a {} setting{}{}",
                        match s.kind {
                            declared::SettingKind::Number => "number",
                            declared::SettingKind::Int => "whole-number",
                            declared::SettingKind::Text => "text",
                        },
                        match (s.min, s.max) {
                            (None, None) => String::new(),
                            (lo, hi) => format!(
                                " from {} to {}",
                                lo.map_or("-inf".into(), trim_float),
                                hi.map_or("inf".into(), trim_float)
                            ),
                        },
                        s.unit.as_ref().map(|u| format!(", in {u}")).unwrap_or_default()
                    ),
                    None => format!(
                        "the settings of {} are: {}",
                        decl.name,
                        decl.settings.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                };
                referred.push(setting_error(span, format!("setting `{setting}` of `{name}` {why}"), help));
            }
            return None;
        }
    };
    // Everything the driver renders from the settings alone, and whether it must be a number.
    let mut renders: Vec<(&Template, bool)> = vec![(&decl.request.prefix, false), (&decl.request.terminator, false)];
    match &decl.dispense {
        Some(Dispense::Run { rate_value, reservoir, .. }) => renders.extend([(rate_value, true), (reservoir, false)]),
        Some(Dispense::Flow { rate, reservoir, medium, .. }) => {
            renders.extend([(rate, true), (reservoir, false)]);
            if let Medium::Gas(g) = medium {
                renders.push((g, false));
            }
        }
        None => {}
    }
    if let Some(h) = &decl.hold_temperature {
        renders.push((&h.tolerance, true));
    }
    if let Some(w) = &decl.weigh {
        renders.push((&w.settle, true));
    }
    let calls = decl.init.iter().chain(&decl.safe_state).flat_map(|c| c.args.values());
    renders.extend(calls.map(|t| (t, false)));
    let mut ok = true;
    for (t, numeric) in renders {
        let rendered = t.render(&|n| settings.get(n).cloned());
        let problem = match &rendered {
            Err(e) => Some(e.clone()),
            Ok(text) if numeric && text.trim().parse::<f64>().map_or(true, |v| !v.is_finite()) => {
                Some(format!("gives `{text}`, which is not a number"))
            }
            Ok(_) => None,
        };
        if let Some(p) = problem {
            let msg = format!("`{}` of {} {p} with the settings of `{name}`", t.text, decl.name);
            referred.push(setting_error(at("settings"), msg, "give the settings it uses".into()));
            ok = false;
        }
    }
    ok.then_some(DeclaredConfig { declaration: decl, model, settings })
}

/// For a driver whose simulator answers as a model's profile, the models it can be, if the driver's model is not
/// one of them.
fn unsimulated_model(driver: &DriverConfig) -> Option<Vec<&'static str>> {
    use crate::models::{namur, scpi, sics};
    match driver {
        DriverConfig::MettlerBalance(c) if sics::profile(&c.model).is_none() => {
            Some(sics::PROFILES.iter().map(|p| p.model).collect())
        }
        DriverConfig::IkaHotplate(c) if namur::profile(&c.model).is_none() => {
            Some(namur::PROFILES.iter().map(|p| p.model).collect())
        }
        DriverConfig::ScpiThermometer(c) if scpi::profile(&c.model).is_none() => {
            Some(scpi::PROFILES.iter().map(|p| p.model).collect())
        }
        _ => None,
    }
}

/// Reads an instrument's `faults`, refusing what its simulator cannot inject.
fn faults(
    source: &Arc<SourceFile>,
    name: &str,
    driver: &DriverConfig,
    port: &PortSpec,
    f: FaultsFile,
    node: &Node,
    diags: &mut Diagnostics,
) -> Option<Faults> {
    let mut ok = true;
    let mut fail = |field: &str, msg: String, help: String| {
        let span = node.span_of(&[Seg::Field("faults"), Seg::Field(field)]);
        diags.push(Diagnostic::error(codes::FAULTS, source, span, msg).with_help(help));
        ok = false;
    };
    if *port != PortSpec::Simulated {
        fail(
            "",
            format!("`{name}` is a real instrument; only simulators inject faults"),
            "remove `faults`, or set `port: Simulated`".into(),
        );
    }
    let mut wall = |field: &str, text: &str| -> std::time::Duration {
        match Quantity::parse(text) {
            Ok(q) if q.dimension == Dimension::Duration && q.value >= 0.0 && q.value < 3600.0 => {
                std::time::Duration::from_secs_f64(q.value)
            }
            _ => {
                fail(
                    field,
                    format!("`{field}` of the faults of `{name}` must be a duration from 0 to 1 h, not `{text}`"),
                    "such as \"20 ms\" or \"1.5 s\"".into(),
                );
                std::time::Duration::ZERO
            }
        }
    };
    let latency = match f.latency {
        None => Latency::None,
        Some(LatencyFile::Fixed(t)) => Latency::Fixed(wall("latency", &t)),
        Some(LatencyFile::Uniform { min, max }) => {
            let (min, max) = (wall("latency", &min), wall("latency", &max));
            Latency::Uniform { min: min.min(max), max: max.max(min) }
        }
        Some(LatencyFile::Exponential { mean }) => Latency::Exponential { mean: wall("latency", &mean) },
    };
    let disconnect = f.disconnect.map(|d| Disconnect { after: d.after.max(1), down: wall("disconnect", &d.down) });
    let oem = matches!(driver, DriverConfig::CavroXCalibur(c) if c.protocol == CavroProtocol::Oem);
    let pump = matches!(driver, DriverConfig::CavroXCalibur(_));
    let modbus = matches!(driver, DriverConfig::ModbusTemperature(_));
    let declared = match driver {
        DriverConfig::Declared(d) => Some(&d.declaration),
        _ => None,
    };
    let class =
        |f: fn(&crate::declared::ClassKind) -> bool| declared.is_some_and(|d| d.classes.iter().any(|c| f(&c.is)));
    let can = |fault: &str| match fault {
        "bad_checksum" => oem || modbus || declared.is_some_and(|d| d.frame.checksum().is_some()),
        "busy" => {
            pump || modbus
                || matches!(driver, DriverConfig::MettlerBalance(_))
                || class(|k| matches!(k, crate::declared::ClassKind::Busy(_)))
        }
        "firmware_error" => {
            pump || modbus
                || matches!(
                    driver,
                    DriverConfig::MettlerBalance(_) | DriverConfig::ScpiThermometer(_) | DriverConfig::OceanFlame(_)
                )
                || class(|k| matches!(k, crate::declared::ClassKind::Error(_)))
        }
        "partial" => {
            pump || (declared.is_some_and(|d| matches!(d.dispense, Some(crate::declared::Dispense::Run { .. })))
                && class(|k| matches!(k, crate::declared::ClassKind::Alarm(_))))
        }
        _ => true,
    };
    for (field, p) in [
        ("no_reply", f.no_reply),
        ("garbled", f.garbled),
        ("truncated", f.truncated),
        ("bad_checksum", f.bad_checksum),
        ("busy", f.busy),
        ("firmware_error", f.firmware_error),
        ("partial", f.partial),
    ] {
        if !(0.0..=1.0).contains(&p) {
            fail(
                field,
                format!("`{field}` of `{name}` is {p}; a probability is 0 to 1"),
                "0.05 injects the fault about once in twenty commands".into(),
            );
        } else if p > 0.0 && !can(field) {
            let why = match field {
                "bad_checksum" => {
                    "only OEM-framed pumps, Modbus devices and declared instruments whose replies carry a checksum send checksums"
                }
                "busy" => {
                    "only pumps, balances, Modbus devices and declared instruments with a busy class answer `busy`"
                }
                "firmware_error" => "its protocol has no error codes (a declared instrument needs an error class)",
                _ => "only a syringe pump moves part of a stroke (a declared one needs an alarm class to report it)",
            };
            fail(field, format!("the simulator of `{name}` cannot inject `{field}`: {why}"), "remove it".into());
        }
    }
    ok.then_some(Faults {
        seed: f.seed,
        latency,
        no_reply: f.no_reply,
        garbled: f.garbled,
        truncated: f.truncated,
        bad_checksum: f.bad_checksum,
        busy: f.busy,
        firmware_error: f.firmware_error,
        partial: f.partial,
        disconnect,
    })
}
