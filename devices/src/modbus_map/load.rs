//! Reading a map file into a checked [`ModbusMap`], every problem reported with its place, and finding the map a lab
//! file names.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use protocols::diagnostic::{Diagnostic, Diagnostics, SourceFile};
use protocols::ron_file::{check_syntax, parse_section, suggest};
use protocols::source::{Node, Seg, index};

use super::file::{IdentityFile, MapHeader, PointFile, StepFile, WriteFile};
use super::{
    Access, Identity, Kind, MapLine, ModbusMap, Point, Scale, Step, Table, TemperatureBinding, TemperatureUnit,
};

/// The map file format version this program reads.
pub const FORMAT: u32 = 1;

/// Diagnostic codes of map files. Each has an entry in GUIDE.md.
pub mod codes {
    /// The file states a format version this program does not read.
    pub const FORMAT: &str = "D0201";
    /// A point's address: missing, given twice, not in the table's range, not manual notation, or shared with
    /// another point.
    pub const ADDRESS: &str = "D0202";
    /// A write to a read-only point or table.
    pub const READ_ONLY: &str = "D0203";
    /// A data type that does not fit its table or write function (a float in a coil, function 6 for 32 bits).
    pub const TYPE: &str = "D0204";
    /// A scale of zero, an unknown decimals point, or a range whose minimum exceeds its maximum.
    pub const SCALE: &str = "D0205";
    /// A name that refers to no point or sequence, or a binding to a point that cannot serve (a set point that
    /// is not a writable temperature).
    pub const REFERENCE: &str = "D0206";
    /// A lab file names a map that is neither built in nor a readable file.
    pub const MISSING: &str = "D0207";
}

/// The maps built into `lab`, by the name a lab file gives (`map: "omron_e5cc"`), with their text.
pub const BUILT_IN: [(&str, &str); 3] = [
    ("eurotherm_3200", include_str!("../../maps/eurotherm_3200.modbus.ron")),
    ("omron_e5cc", include_str!("../../maps/omron_e5cc.modbus.ron")),
    ("watlow_ez_zone_pm", include_str!("../../maps/watlow_ez_zone_pm.modbus.ron")),
];

/// Finds the map `reference` names: a built-in map by its name, or a file (a path ending `.modbus.ron`, relative
/// to `folder`, the lab file's folder). `Err(None)` if there is no such map; `Err(Some(diagnostics))` if it does not
/// load.
pub fn resolve(reference: &str, folder: Option<&Path>) -> Result<Arc<ModbusMap>, Option<Diagnostics>> {
    if let Some((name, text)) = BUILT_IN.iter().find(|(n, _)| *n == reference) {
        return load_map(SourceFile::new(format!("devices/maps/{name}.modbus.ron"), *text)).map(Arc::new).map_err(Some);
    }
    if !reference.ends_with(".modbus.ron") {
        return Err(None);
    }
    let path = match folder {
        Some(f) if Path::new(reference).is_relative() => f.join(reference),
        _ => Path::new(reference).to_path_buf(),
    };
    let text = std::fs::read_to_string(&path).map_err(|_| None)?;
    load_map(SourceFile::new(path.display().to_string(), text)).map(Arc::new).map_err(Some)
}

/// Reads and checks a map file.
pub fn load_map(source: Arc<SourceFile>) -> Result<ModbusMap, Diagnostics> {
    let mut diags = Diagnostics::new();
    if let Err(d) = check_syntax(&source) {
        diags.push(d);
        return Err(diags);
    }
    let tree = index(&source.text);
    let err = |diags: &mut Diagnostics, code, path: &[Seg<'_>], msg: String, help: String| {
        diags.push(Diagnostic::error(code, &source, tree.span_of(path), msg).with_help(help));
    };
    let header = match parse_section::<MapHeader>(&source, 0..source.text.len(), "register map") {
        Ok(h) => h,
        Err(d) => {
            diags.push(d);
            return Err(diags);
        }
    };
    if header.format != FORMAT {
        err(
            &mut diags,
            codes::FORMAT,
            &[Seg::Field("format")],
            format!("unsupported map format {}", header.format),
            format!("this version of lab reads `format: {FORMAT}`"),
        );
    }
    if !(header.line.stop_bits == 1 || header.line.stop_bits == 2) {
        err(
            &mut diags,
            codes::TYPE,
            &[Seg::Field("line"), Seg::Field("stop_bits")],
            "stop_bits must be 1 or 2".into(),
            "Modbus RTU uses 1, or 2 without parity".into(),
        );
    }
    let mut points = BTreeMap::new();
    // Every point the file names, valid or not: a reference to one that failed is not reported again.
    let mut declared = std::collections::BTreeSet::new();
    if let Some(node) = tree.get(&[Seg::Field("points")]) {
        declared.extend(node.entries.iter().filter_map(|(k, _)| k.string.clone()));
        for (key, value) in &node.entries {
            let Some(name) = key.string.clone() else { continue };
            match parse_section::<PointFile>(&source, value.span.clone(), "point") {
                Ok(f) => {
                    if let Some(p) = point(&source, &name, f, value, &mut diags) {
                        points.insert(name, p);
                    }
                }
                Err(d) => diags.push(d),
            }
        }
    }
    // Points that share a register or bit would be read and written as each other.
    let list: Vec<&Point> = points.values().collect();
    for (i, a) in list.iter().enumerate() {
        for b in &list[i + 1..] {
            let span = |p: &Point| (u32::from(p.address), u32::from(p.address) + u32::from(p.kind.width()));
            let (sa, sb) = (span(a), span(b));
            // A flag (`Bit(n)`) may name one bit of a word another point reads whole; two flags need their own bits.
            let aliases = match (a.kind, b.kind) {
                (Kind::Bit(x), Kind::Bit(y)) => x != y,
                (Kind::Bit(_), _) | (_, Kind::Bit(_)) => true,
                _ => false,
            };
            if a.table == b.table && sa.0 < sb.1 && sb.0 < sa.1 && !aliases {
                err(
                    &mut diags,
                    codes::ADDRESS,
                    &[Seg::Field("points"), Seg::Key(&b.name)],
                    format!(
                        "point `{}` shares {} address {} with point `{}`",
                        b.name,
                        b.table.name(),
                        b.address,
                        a.name
                    ),
                    "give each point its own registers; a flag of a word is a `Bit(n)` point".into(),
                );
            }
        }
    }
    for p in points.values() {
        if let Scale::Decimals(d) = &p.scale {
            let ok = points.get(d).is_some_and(|dp| matches!(dp.kind, Kind::U16 | Kind::I16) && dp.readable());
            if !ok {
                err(
                    &mut diags,
                    codes::SCALE,
                    &[Seg::Field("points"), Seg::Key(&p.name), Seg::Field("decimals_from")],
                    format!("point `{}` reads its decimals from `{d}`, which is not a readable 16-bit point", p.name),
                    format!("name a point of this map: {}", names(&points)),
                );
            }
        }
    }
    let mut sequences = BTreeMap::new();
    if let Some(node) = tree.get(&[Seg::Field("sequences")]) {
        for (key, value) in &node.entries {
            let Some(name) = key.string.clone() else { continue };
            match parse_section::<Vec<StepFile>>(&source, value.span.clone(), "sequence") {
                Ok(steps) => {
                    let steps = steps
                        .into_iter()
                        .enumerate()
                        .map(|(i, StepFile::Write { point, value })| {
                            let at = value_node(value_node_of(node, &name), i);
                            if points.contains_key(&point) || !declared.contains(&point) {
                                check_step(&source, &points, &name, i, &point, value, at, &mut diags);
                            }
                            Step { point, value }
                        })
                        .collect();
                    sequences.insert(name, steps);
                }
                Err(d) => diags.push(d),
            }
        }
    }
    let identity = match header.identity {
        IdentityFile::None => Identity::None,
        IdentityFile::Fc43 { vendor, product } => Identity::Fc43 { vendor, product },
        IdentityFile::Register { point, equals } => {
            let failed = declared.contains(&point) && !points.contains_key(&point);
            if !failed && !points.get(&point).is_some_and(Point::readable) {
                err(
                    &mut diags,
                    codes::REFERENCE,
                    &[Seg::Field("identity")],
                    format!("the identity register `{point}` is not a readable point of this map"),
                    format!("name a point of this map: {}", names(&points)),
                );
            }
            Identity::Register { point, equals }
        }
    };
    let b = header.temperature;
    let binding_err = |diags: &mut Diagnostics, field: &'static str, msg: String, help: String| {
        diags.push(
            Diagnostic::error(
                codes::REFERENCE,
                &source,
                tree.span_of(&[Seg::Field("temperature"), Seg::Field(field)]),
                msg,
            )
            .with_help(help),
        );
    };
    for (field, name, writable) in [("pv", &b.pv, false), ("sp", &b.sp, true)] {
        match points.get(name) {
            None if declared.contains(name) => {}
            None => binding_err(
                &mut diags,
                field,
                format!("`{field}` names `{name}`, which is not a point of this map"),
                format!("the points are: {}", names(&points)),
            ),
            Some(p) if p.temperature.is_none() => binding_err(
                &mut diags,
                field,
                format!("`{field}` names `{name}`, whose unit is not a temperature"),
                "give the point `unit: \"degC\"`, `\"degF\"` or `\"K\"`".into(),
            ),
            Some(p) if writable && !p.writable() => binding_err(
                &mut diags,
                field,
                format!("the set point `{name}` is read-only"),
                "a set point must be `access: ReadWrite` in a holding register".into(),
            ),
            Some(p) if !p.readable() => binding_err(
                &mut diags,
                field,
                format!("`{name}` cannot be read"),
                "the driver reads the process value and reads the set point back".into(),
            ),
            Some(_) => {}
        }
    }
    for (field, name) in [("run", Some(&b.run)), ("stop", Some(&b.stop)), ("init", b.init.as_ref())] {
        if let Some(name) = name
            && !sequences.contains_key(name)
        {
            binding_err(
                &mut diags,
                field,
                format!("`{field}` names the sequence `{name}`, which this map does not have"),
                format!("the sequences are: {}", sequences.keys().cloned().collect::<Vec<_>>().join(", ")),
            );
        }
    }
    diags.sort();
    if diags.has_errors() {
        return Err(diags);
    }
    Ok(ModbusMap {
        name: header.name,
        source: header.source,
        line: MapLine { baud: header.line.baud, parity: header.line.parity, stop_bits: header.line.stop_bits },
        identity,
        points,
        sequences,
        temperature: TemperatureBinding { pv: b.pv, sp: b.sp, init: b.init, run: b.run, stop: b.stop },
        file: source,
    })
}

/// The node of sequence `name` in the `sequences` node.
fn value_node_of<'a>(sequences: &'a Node, name: &str) -> Option<&'a Node> {
    sequences.entries.iter().find(|(k, _)| k.string.as_deref() == Some(name)).map(|(_, v)| v)
}

/// Step `i` of a sequence node.
fn value_node(sequence: Option<&Node>, i: usize) -> Option<&Node> {
    sequence.and_then(|s| s.get(&[Seg::Index(i)]))
}

/// The names of the points, for hints.
fn names(points: &BTreeMap<String, Point>) -> String {
    points.keys().cloned().collect::<Vec<_>>().join(", ")
}

/// Checks one write of a sequence: its point exists, is writable, and takes the value.
fn check_step(
    source: &Arc<SourceFile>,
    points: &BTreeMap<String, Point>,
    sequence: &str,
    i: usize,
    name: &str,
    value: f64,
    node: Option<&Node>,
    diags: &mut Diagnostics,
) {
    let span = node.map_or(0..0, |n| n.span.clone());
    let mut fail = |code, msg: String, help: String| {
        diags.push(Diagnostic::error(code, source, span.clone(), msg).with_help(help))
    };
    let known: Vec<&str> = points.keys().map(String::as_str).collect();
    match points.get(name) {
        None => fail(
            codes::REFERENCE,
            format!("step {} of sequence `{sequence}` writes `{name}`, which is not a point of this map", i + 1),
            match suggest(name, &known) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("the points are: {}", known.join(", ")),
            },
        ),
        Some(p) if !p.writable() => fail(
            codes::READ_ONLY,
            format!("step {} of sequence `{sequence}` writes `{name}`, a read-only point", i + 1),
            format!(
                "`{name}` is in the {} table with `access: {:?}`; writable points are `ReadWrite` or `Write`",
                p.table.name(),
                p.access
            ),
        ),
        Some(p) if p.range.is_some_and(|(lo, hi)| !(lo..=hi).contains(&value)) => fail(
            codes::SCALE,
            format!("step {} of sequence `{sequence}` writes {value} to `{name}`, outside its range", i + 1),
            format!("`{name}` takes {:?}", p.range.unwrap_or_default()),
        ),
        Some(p) if matches!(p.scale, Scale::Fixed(_)) && p.encode(value, 0).is_err() => fail(
            codes::TYPE,
            format!("step {} of sequence `{sequence}` writes {value} to `{name}`, which cannot hold it", i + 1),
            p.encode(value, 0).err().unwrap_or_default(),
        ),
        Some(_) => {}
    }
}

/// The table and wire address of a register number in manual notation (40001, 300001...).
pub fn manual_address(register: u32) -> Option<(Table, u16)> {
    let (table, offset) = match register {
        1..=9_999 => (Table::Coil, register - 1),
        10_001..=19_999 => (Table::Discrete, register - 10_001),
        30_001..=39_999 => (Table::Input, register - 30_001),
        40_001..=49_999 => (Table::Holding, register - 40_001),
        100_001..=165_536 => (Table::Discrete, register - 100_001),
        300_001..=365_536 => (Table::Input, register - 300_001),
        400_001..=465_536 => (Table::Holding, register - 400_001),
        _ => return None,
    };
    u16::try_from(offset).ok().map(|a| (table, a))
}

/// Checks one point and builds it; `None` after reporting why it cannot be.
fn point(source: &Arc<SourceFile>, name: &str, f: PointFile, node: &Node, diags: &mut Diagnostics) -> Option<Point> {
    let mut ok = true;
    let mut fail = |code, field: &str, msg: String, help: String| {
        let span = if field.is_empty() { node.span.clone() } else { node.span_of(&[Seg::Field(field)]) };
        diags.push(Diagnostic::error(code, source, span, msg).with_help(help));
        ok = false;
    };
    let (table, address) = match (f.table, f.address, f.register) {
        (_, Some(_), Some(_)) => {
            fail(codes::ADDRESS, "register", format!("point `{name}` gives both `address` and `register`"), "keep one: `address` is the 0-based wire address, `register` the manual's number (40001 is holding register 0)".into());
            return None;
        }
        (None, Some(_), None) => {
            fail(
                codes::ADDRESS,
                "address",
                format!("point `{name}` has an address but no table"),
                "add `table: Holding`, `Input`, `Coil` or `Discrete`, or give the manual's number as `register: 40001`"
                    .into(),
            );
            return None;
        }
        (Some(t), Some(a), None) => match u16::try_from(a) {
            Ok(a) => (t, a),
            Err(_) => {
                fail(
                    codes::ADDRESS,
                    "address",
                    format!("address {a} of point `{name}` is beyond 65535"),
                    "a wire address is 0 to 65535; for a manual number such as 40001 write `register: 40001`".into(),
                );
                return None;
            }
        },
        (t, None, Some(r)) => match manual_address(r) {
            Some((table, a)) => {
                if let Some(t) = t
                    && t != table
                {
                    fail(
                        codes::ADDRESS,
                        "table",
                        format!("register {r} of point `{name}` is in the {} table, not {}", table.name(), t.name()),
                        "leave `table` out: manual notation says the table".into(),
                    );
                }
                (table, a)
            }
            None => {
                fail(codes::ADDRESS, "register", format!("{r} is not a register number in manual notation"), "0xxxx coils, 1xxxx discrete inputs, 3xxxx input registers, 4xxxx holding registers, counted from 1 (40001 is holding register 0); six digits (400001) for numbers beyond 9999".into());
                return None;
            }
        },
        (_, None, None) => {
            fail(
                codes::ADDRESS,
                "",
                format!("point `{name}` has no address"),
                "give `table` and `address` (0-based), or `register` in manual notation (40001)".into(),
            );
            return None;
        }
    };
    let kind = f.kind.unwrap_or(if table.bits() { Kind::Bool } else { Kind::U16 });
    match (table.bits(), kind) {
        (true, Kind::Bool) | (false, Kind::U16 | Kind::I16 | Kind::U32 | Kind::I32 | Kind::F32) => {}
        (false, Kind::Bit(n)) if n < 16 => {}
        (false, Kind::Bit(n)) => fail(
            codes::TYPE,
            "kind",
            format!("bit {n} of point `{name}` is beyond a register's 16"),
            "bits are numbered 0 (least significant) to 15".into(),
        ),
        (true, k) => fail(
            codes::TYPE,
            "kind",
            format!("point `{name}` is a {}, which holds one bit, not a {k:?}", table.name()),
            "a coil or discrete input is `kind: Bool`".into(),
        ),
        (false, Kind::Bool) => fail(
            codes::TYPE,
            "kind",
            format!("point `{name}` is a {} register, not a bit", table.name()),
            "use `U16`, `I16`, `U32`, `I32`, `F32`, or `Bit(n)` for one flag of the register".into(),
        ),
    }
    if u32::from(address) + u32::from(kind.width()) > 65_536 {
        fail(
            codes::ADDRESS,
            "address",
            format!("point `{name}` runs past address 65535"),
            "a 32-bit point takes two registers".into(),
        );
    }
    if f.access != Access::Read && !table.writable() {
        fail(codes::READ_ONLY, "access", format!("point `{name}` is in the {} table, which a master cannot write", table.name()), "input registers and discrete inputs are read-only: make it `access: Read`, or move it to a holding register or coil".into());
    }
    let multiple = match f.write {
        Some(WriteFile::Single) if kind.width() == 2 => {
            fail(
                codes::TYPE,
                "write",
                format!("point `{name}` takes two registers, which function 6 cannot write"),
                "32-bit values are written with function 16: `write: Multiple`, or leave `write` out".into(),
            );
            false
        }
        Some(w) => w == WriteFile::Multiple,
        None => kind.width() == 2,
    };
    if f.write.is_some() && f.access == Access::Read {
        fail(
            codes::READ_ONLY,
            "write",
            format!("point `{name}` is read-only but says how it is written"),
            "make it `access: ReadWrite`, or remove `write`".into(),
        );
    }
    let scale = match (f.scale, f.decimals_from) {
        (Some(_), Some(_)) => {
            fail(
                codes::SCALE,
                "decimals_from",
                format!("point `{name}` has both a `scale` and `decimals_from`"),
                "keep one: a fixed scale, or the decimals read from a register".into(),
            );
            Scale::Fixed(1.0)
        }
        (Some(s), None) if !(s.is_finite() && s != 0.0) => {
            fail(
                codes::SCALE,
                "scale",
                format!("the scale of point `{name}` is {s}"),
                "a scale multiplies the raw value: 0.1 for tenths, 1 for none; it cannot be zero".into(),
            );
            Scale::Fixed(1.0)
        }
        (Some(s), None) => Scale::Fixed(s),
        (None, Some(d)) => Scale::Decimals(d),
        (None, None) => Scale::Fixed(1.0),
    };
    if matches!(kind, Kind::F32 | Kind::Bit(_) | Kind::Bool) && matches!(scale, Scale::Decimals(_)) {
        fail(
            codes::SCALE,
            "decimals_from",
            format!("point `{name}` is a {kind:?}, which has no decimals to read"),
            "decimals apply to integer registers".into(),
        );
    }
    if !f.offset.is_finite() {
        fail(
            codes::SCALE,
            "offset",
            format!("the offset of point `{name}` is not a number"),
            "such as 0 or -273.15".into(),
        );
    }
    let range = match (f.min, f.max) {
        (Some(lo), Some(hi)) if lo > hi => {
            fail(codes::SCALE, "min", format!("point `{name}` has min {lo} above max {hi}"), "swap them".into());
            None
        }
        (None, None) => None,
        (lo, hi) => Some((lo.unwrap_or(f64::NEG_INFINITY), hi.unwrap_or(f64::INFINITY))),
    };
    let temperature = f.unit.as_deref().and_then(TemperatureUnit::parse);
    ok.then(|| Point {
        name: name.to_owned(),
        table,
        address,
        kind,
        order: f.order,
        scale,
        offset: f.offset,
        unit: f.unit,
        temperature,
        access: f.access,
        multiple,
        eeprom: f.eeprom,
        initial: f.initial.unwrap_or(0.0),
        range,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_notation_gives_table_and_wire_address() {
        assert_eq!(manual_address(40_001), Some((Table::Holding, 0)));
        assert_eq!(manual_address(40_018), Some((Table::Holding, 17)));
        assert_eq!(manual_address(301_001), Some((Table::Input, 1000)));
        assert_eq!(manual_address(10_001), Some((Table::Discrete, 0)));
        assert_eq!(manual_address(1), Some((Table::Coil, 0)));
        assert_eq!(manual_address(20_000), None);
        assert_eq!(manual_address(40_000), None);
    }

    #[test]
    fn every_built_in_map_loads() {
        for (name, text) in BUILT_IN {
            let map = load_map(SourceFile::new(name, text)).unwrap_or_else(|d| panic!("{name}:\n{d}"));
            assert!(map.point(&map.temperature.pv).is_some(), "{name}");
        }
    }
}
