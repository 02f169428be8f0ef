//! Reading an instrument declaration into a checked [`Declaration`], every problem reported with its place, and
//! finding the declaration a lab file names.
//!
//! One file because it is one pass over one file: the header, the commands, the bindings and calls checked against
//! the commands, and the replies read back all report into the same list through the loader's state (`Cx`), in the
//! order a technician reads the declaration.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use protocols::InstrumentKind;
use protocols::diagnostic::{Diagnostic, Diagnostics, SourceFile};
use protocols::ron_file::{check_syntax, parse_section, suggest};
use protocols::source::{Node, Seg, index};
use protocols::units::{Dimension, Quantity};

use super::file::{
    ArgFile, CallFile, ChecksumFile, ChecksumKind as ChecksumKindFile, ClassKindFile, CommandFile, DispenseFile,
    EncodingFile, FieldFile, FrameFile, Header, LinesFile, MediumFile, SettingKind as SettingKindFile, SilenceFile,
};
use super::frame::{Checksum, ChecksumKind, Encoding, Frame, MAX_LINES};
use super::template::{Template, Value};
use super::{
    Arg, Call, Class, ClassKind, Command, Declaration, Dispense, Field, Hold, Identify, Lines, Medium, Request,
    Setting, SettingKind, Silence, ValueSpec, Weigh, sample_value,
};
use crate::transport::{LineSettings, Reconnect};

/// The declaration format version this program reads.
pub const FORMAT: u32 = 1;

/// Diagnostic codes of instrument declarations. Each has an entry in GUIDE.md.
pub mod codes {
    /// The file states a format version this program does not read.
    pub const FORMAT: &str = "D0301";
    /// A template or reply pattern that does not parse: a brace without its pair, an unknown spec.
    pub const TEMPLATE: &str = "D0302";
    /// Placeholders and values that do not match: a call that does not give a command's arguments (or gives one it
    /// does not take), a placeholder that is neither a setting nor a capture where only those can be.
    pub const PLACEHOLDER: &str = "D0303";
    /// A name that refers to nothing: an unknown command, a field its reply does not capture, an unknown setting.
    pub const REFERENCE: &str = "D0304";
    /// A reply pattern that cannot match what the instrument answers (what identify returns for a model, or what
    /// the pattern itself writes), or a reply a class pattern would claim.
    pub const REPLY: &str = "D0305";
    /// A value that cannot be: a scale of zero, a minimum above the maximum, a default outside its range, a
    /// duration that is not one.
    pub const VALUE: &str = "D0306";
    /// The instrument's kind and its capability bindings do not agree.
    pub const KIND: &str = "D0307";
    /// A lab file names a declaration that is neither built in nor a readable file.
    pub const MISSING: &str = "D0308";
    /// A framing that cannot work: an empty terminator, a zero length, a maximum of nothing.
    pub const FRAME: &str = "D0309";
    /// A read-back that cannot settle a lost reply: on a command that does not act (it is asked again anyway), that
    /// sends no value of the field's name or sets more than that one, or through a query that acts or takes
    /// arguments.
    pub const READ_BACK: &str = "D0310";
}

/// The declarations built into `lab`, by the name a lab file gives (`instrument: "new_era_ne1000"`), with their
/// text.
pub const BUILT_IN: [(&str, &str); 5] = [
    ("alicat_mc", include_str!("../../instruments/alicat_mc.instrument.ron")),
    ("huber_pilot_one", include_str!("../../instruments/huber_pilot_one.instrument.ron")),
    ("mettler_sics_level0", include_str!("../../instruments/mettler_sics_level0.instrument.ron")),
    ("new_era_ne1000", include_str!("../../instruments/new_era_ne1000.instrument.ron")),
    ("sartorius_entris_ii", include_str!("../../instruments/sartorius_entris_ii.instrument.ron")),
];

/// Finds the declaration `reference` names: a built-in one by its name, or a file (a path ending
/// `.instrument.ron`, relative to `folder`, the lab file's folder). `Err(None)` if there is no such declaration;
/// `Err(Some(diagnostics))` if it does not load.
pub fn resolve(reference: &str, folder: Option<&Path>) -> Result<Arc<Declaration>, Option<Diagnostics>> {
    if let Some((name, text)) = BUILT_IN.iter().find(|(n, _)| *n == reference) {
        let source = SourceFile::new(format!("devices/instruments/{name}.instrument.ron"), *text);
        return load_declaration(source).map(Arc::new).map_err(Some);
    }
    if !reference.ends_with(".instrument.ron") {
        return Err(None);
    }
    let path = match folder {
        Some(f) if Path::new(reference).is_relative() => f.join(reference),
        _ => Path::new(reference).to_path_buf(),
    };
    let text = std::fs::read_to_string(&path).map_err(|_| None)?;
    load_declaration(SourceFile::new(path.display().to_string(), text)).map(Arc::new).map_err(Some)
}

const SPECS: &str = "placeholders are `{name}` or `{name:spec}` with specs d, dN, f, .N, W.N, +W.N, sigN, XN, xN, cN, lN, s, *; write `{{` and `}}` for braces";

/// The loader's state: the file, its index, and the problems found so far.
struct Cx<'a> {
    source: &'a Arc<SourceFile>,
    tree: Node,
    diags: Diagnostics,
}

impl Cx<'_> {
    fn fail(&mut self, code: &'static str, path: &[Seg<'_>], msg: impl Into<String>, help: impl Into<String>) {
        let span = self.tree.span_of(path);
        self.fail_at(code, span, msg, help);
    }

    fn fail_at(&mut self, code: &'static str, span: Range<usize>, msg: impl Into<String>, help: impl Into<String>) {
        self.diags.push(Diagnostic::error(code, self.source, span, msg).with_help(help));
    }

    /// The span of character `offset` of the string at `path`, when the string has no escapes before it; else the
    /// whole string.
    fn inside(&self, path: &[Seg<'_>], text: &str, offset: usize) -> Range<usize> {
        match self.tree.get(path) {
            Some(n) if n.string.as_deref().is_some_and(|s| s.get(..offset) == text.get(..offset)) => {
                let at = n.span.start + 1 + offset;
                at..at + text[offset..].chars().next().map_or(0, char::len_utf8)
            }
            _ => self.tree.span_of(path),
        }
    }

    /// Parses the template at `path`.
    fn template(&mut self, path: &[Seg<'_>], text: &str) -> Option<Template> {
        match Template::parse(text) {
            Ok(t) => Some(t),
            Err((offset, why)) => {
                let span = self.inside(path, text, offset);
                self.fail_at(codes::TEMPLATE, span, format!("`{text}`: {why}"), SPECS);
                None
            }
        }
    }

    /// Checks that every placeholder of `t` (at `path`) is one `allowed` accepts, `what` naming what they may be.
    fn only(&mut self, path: &[Seg<'_>], t: &Template, allowed: &dyn Fn(&str) -> bool, what: &str) {
        for name in t.names() {
            if !allowed(name) {
                let offset = t.text.find(&format!("{{{name}")).unwrap_or(0);
                let span = self.inside(path, &t.text, offset);
                self.fail_at(
                    codes::PLACEHOLDER,
                    span,
                    format!("`{{{name}}}` in `{}` is not {what}", t.text),
                    format!("it may name {what}"),
                );
            }
        }
    }

    /// Reads a duration in seconds.
    fn seconds(&mut self, path: &[Seg<'_>], text: &str) -> Option<f64> {
        match Quantity::parse(text) {
            Ok(q) if q.dimension == Dimension::Duration && q.value >= 0.0 && q.value.is_finite() => Some(q.value),
            _ => {
                self.fail(codes::VALUE, path, format!("`{text}` is not a duration"), "such as \"500 ms\" or \"2 s\"");
                None
            }
        }
    }
}

/// Reads and checks an instrument declaration.
pub fn load_declaration(source: Arc<SourceFile>) -> Result<Declaration, Diagnostics> {
    let mut cx = Cx { source: &source, tree: Node::default(), diags: Diagnostics::new() };
    if let Err(d) = check_syntax(&source) {
        cx.diags.push(d);
        return Err(cx.diags);
    }
    cx.tree = index(&source.text);
    let header = match parse_section::<Header>(&source, 0..source.text.len(), "instrument declaration") {
        Ok(h) => h,
        Err(d) => {
            cx.diags.push(d);
            return Err(cx.diags);
        }
    };
    if header.format != FORMAT {
        cx.fail(
            codes::FORMAT,
            &[Seg::Field("format")],
            format!("unsupported declaration format {}", header.format),
            format!("this version of lab reads `format: {FORMAT}`"),
        );
    }
    let line = line(&mut cx, &header);
    let settings = settings(&mut cx, &header);
    let is_setting = |n: &str| n == "model" || settings.contains_key(n);
    let setting_names = || {
        let mut v: Vec<&str> = settings.keys().map(String::as_str).collect();
        v.push("model");
        v.join(", ")
    };
    let mut variants = BTreeMap::new();
    for (model, values) in &header.variants {
        let mut out = BTreeMap::new();
        for (name, text) in values {
            let path = [Seg::Field("variants"), Seg::Key(model), Seg::Key(name)];
            match settings.get(name) {
                None => cx.fail(
                    codes::REFERENCE,
                    &path,
                    format!("model `{model}` sets `{name}`, which is not a setting"),
                    format!("the settings are: {}", setting_names()),
                ),
                Some(s) => match s.value(text) {
                    Ok(v) => {
                        out.insert(name.clone(), v);
                    }
                    Err(e) => cx.fail(
                        codes::VALUE,
                        &path,
                        format!("model `{model}` sets `{name}` to {e}"),
                        "give a value the setting takes",
                    ),
                },
            }
        }
        variants.insert(model.clone(), out);
    }
    if variants.is_empty() {
        cx.fail(
            codes::REFERENCE,
            &[Seg::Field("variants")],
            "the declaration names no model",
            "add `variants: { \"MODEL\": {} }`: identify checks the model a lab file gives against these",
        );
    }
    // Request framing.
    let prefix_path = [Seg::Field("request"), Seg::Field("prefix")];
    let prefix = cx.template(&prefix_path, &header.request.prefix);
    let term_path = [Seg::Field("request"), Seg::Field("terminator")];
    let terminator = cx.template(&term_path, &header.request.terminator);
    for (path, t) in [(&prefix_path, &prefix), (&term_path, &terminator)] {
        if let Some(t) = t {
            cx.only(path, t, &is_setting, "a setting");
        }
    }
    if header.request.terminator.is_empty() {
        cx.fail(
            codes::FRAME,
            &term_path,
            "requests have no terminator",
            "the instrument needs to know where a command ends: \"\\r\", \"\\r\\n\"",
        );
    }
    let request_checksum = header.request.checksum.map(checksum);
    let frame = frame(&mut cx, header.frame);
    // Classes.
    let mut classes = Vec::new();
    for (i, c) in header.classes.iter().enumerate() {
        if let Some(reply) = cx.template(&[Seg::Field("classes"), Seg::Index(i), Seg::Field("reply")], &c.reply) {
            let is = match &c.is {
                ClassKindFile::Busy(m) => ClassKind::Busy(m.clone()),
                ClassKindFile::Error(m) => ClassKind::Error(m.clone()),
                ClassKindFile::Alarm(m) => ClassKind::Alarm(m.clone()),
                ClassKindFile::Unknown => ClassKind::Unknown,
            };
            classes.push(Class { reply, is });
        }
    }
    let silence = match header.silence {
        SilenceFile::Timeout => Silence::Timeout,
        SilenceFile::UnknownCommand => Silence::UnknownCommand,
    };
    // Commands.
    let mut commands = BTreeMap::new();
    let mut named = BTreeSet::new();
    if let Some(node) = cx.tree.get(&[Seg::Field("commands")]).cloned() {
        for (key, value) in &node.entries {
            let Some(name) = key.string.clone() else { continue };
            named.insert(name.clone());
            match parse_section::<CommandFile>(&source, value.span.clone(), "command") {
                Ok(f) => {
                    if let Some(c) = command(&mut cx, &name, f, &is_setting) {
                        commands.insert(name, c);
                    }
                }
                Err(d) => cx.diags.push(d),
            }
        }
    }
    let mut b = Bindings { cx: &mut cx, commands: &commands, named: &named, is_setting: &is_setting };
    b.read_backs();
    let init = b.calls("init", header.init);
    let safe_state = b.calls("safe_state", header.safe_state);
    let identify = b.identify(header.identify);
    let dispense = header.dispense.and_then(|d| b.dispense(d));
    let hold_temperature = header.hold_temperature.and_then(|h| {
        let path = |f: &'static str| [Seg::Field("hold_temperature"), Seg::Field(f)];
        let set = b.arg(&path("set"), h.set);
        let start = h.start.and_then(|c| b.call(&path("start"), c, &[]));
        let stop = h.stop.and_then(|c| b.call(&path("stop"), c, &[]));
        let read = b.field(&path("read"), h.read);
        let poll = h.poll.map_or(Some(5.0), |p| b.cx.seconds(&path("poll"), &p));
        let tolerance = b.over_settings(&path("tolerance"), &h.tolerance);
        Some(Hold { set: set?, start, stop, read: read?, poll: poll?, tolerance: tolerance? })
    });
    let weigh = header.weigh.and_then(|w| {
        let path = |f: &'static str| [Seg::Field("weigh"), Seg::Field(f)];
        let read = b.field(&path("read"), w.read);
        if let (Some(r), Some(unit)) = (&read, &w.unit)
            && !b.captures(&r.command).contains(unit.as_str())
        {
            b.cx.fail(
                codes::REFERENCE,
                &path("unit"),
                format!("the unit `{unit}` is not a capture of `{}`'s reply", r.command),
                format!("its captures are: {}", b.capture_list(&r.command)),
            );
        }
        let settle = b.over_settings(&path("settle"), &w.settle);
        let zero = w.zero.and_then(|c| b.call(&path("zero"), c, &[]));
        Some(Weigh { read: read?, unit: w.unit, settle: settle?, zero })
    });
    let read_temperature =
        header.read_temperature.and_then(|r| b.field(&[Seg::Field("read_temperature"), Seg::Field("read")], r.read));
    // The kind and the bindings must agree: a protocol step of the kind runs through its binding.
    let bound = [
        ("dispense", dispense.is_some(), InstrumentKind::SyringePump),
        ("hold_temperature", hold_temperature.is_some(), InstrumentKind::TemperatureController),
        ("weigh", weigh.is_some(), InstrumentKind::Balance),
        ("read_temperature", read_temperature.is_some(), InstrumentKind::Thermometer),
    ];
    match bound.iter().find(|(_, _, k)| *k == header.kind) {
        None => cx.fail(
            codes::KIND,
            &[Seg::Field("kind")],
            format!("a declared instrument cannot be {}", header.kind.phrase()),
            "declared instruments are SyringePump (with `dispense`), TemperatureController (`hold_temperature`), Balance (`weigh`) or Thermometer (`read_temperature`)",
        ),
        Some((field, false, _)) if !cx.diags.iter().any(|d| d.code != codes::KIND) => cx.fail(
            codes::KIND,
            &[Seg::Field("kind")],
            format!("{} needs `{field}`, which says how it does what protocols ask", header.kind.phrase()),
            format!("add `{field}: (...)` binding the capability to commands"),
        ),
        _ => {}
    }
    for (field, present, kind) in bound {
        if present && kind != header.kind {
            cx.fail(
                codes::KIND,
                &[Seg::Field(field)],
                format!("`{field}` is for {}, and this instrument is {}", kind.phrase(), header.kind.phrase()),
                format!("remove `{field}`, or make the kind {}", kind.name()),
            );
        }
    }
    let decl = Declaration {
        name: header.name,
        source: header.source,
        kind: header.kind,
        line,
        settings,
        variants,
        request: Request {
            prefix: prefix.unwrap_or_else(empty),
            terminator: terminator.unwrap_or_else(empty),
            checksum: request_checksum,
        },
        frame: frame.unwrap_or(Frame::Fixed(1)),
        classes,
        silence,
        commands,
        identify: identify.unwrap_or_else(|| Identify {
            command: String::new(),
            model: empty(),
            firmware: None,
            serial: None,
        }),
        init,
        safe_state,
        dispense,
        hold_temperature,
        weigh,
        read_temperature,
        file: Arc::clone(&source),
    };
    if !cx.diags.has_errors() {
        replies_read_back(&mut cx, &decl);
    }
    cx.diags.sort();
    if cx.diags.has_errors() { Err(cx.diags) } else { Ok(decl) }
}

fn empty() -> Template {
    Template { text: String::new(), pieces: Vec::new() }
}

fn checksum(f: ChecksumFile) -> Checksum {
    Checksum {
        kind: match f.kind {
            ChecksumKindFile::Sum8 => ChecksumKind::Sum8,
            ChecksumKindFile::Xor8 => ChecksumKind::Xor8,
            ChecksumKindFile::Crc16Modbus => ChecksumKind::Crc16Modbus,
            ChecksumKindFile::Crc16Ccitt => ChecksumKind::Crc16Ccitt,
        },
        encoding: match f.encoding {
            EncodingFile::Hex => Encoding::Hex,
            EncodingFile::Raw => Encoding::Raw,
        },
    }
}

fn line(cx: &mut Cx<'_>, header: &Header) -> LineSettings {
    let l = &header.line;
    let path = |f: &'static str| [Seg::Field("line"), Seg::Field(f)];
    if l.baud == 0 || l.baud > 4_000_000 {
        cx.fail(codes::VALUE, &path("baud"), format!("{} is not a baud rate", l.baud), "such as 9600 or 19200");
    }
    if !(l.data_bits == 7 || l.data_bits == 8) {
        cx.fail(codes::VALUE, &path("data_bits"), "data_bits must be 7 or 8", "as the manual's interface settings say");
    }
    if !(l.stop_bits == 1 || l.stop_bits == 2) {
        cx.fail(codes::VALUE, &path("stop_bits"), "stop_bits must be 1 or 2", "as the manual's interface settings say");
    }
    let timeout = l.timeout.as_ref().and_then(|t| cx.seconds(&path("timeout"), t)).unwrap_or(1.0);
    LineSettings {
        baud: l.baud,
        data_bits: l.data_bits,
        parity: l.parity,
        stop_bits: l.stop_bits,
        timeout: std::time::Duration::from_secs_f64(timeout.max(0.001)),
        reconnect: Reconnect::DEFAULT,
    }
}

fn settings(cx: &mut Cx<'_>, header: &Header) -> BTreeMap<String, Setting> {
    let mut out = BTreeMap::new();
    for (name, f) in &header.settings {
        let path = [Seg::Field("settings"), Seg::Key(name)];
        if name == "model" || name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            cx.fail(
                codes::REFERENCE,
                &path,
                format!("`{name}` cannot name a setting"),
                "use letters, digits and `_`; `model` is the lab file's model, given to every declaration",
            );
            continue;
        }
        let mut s = Setting {
            kind: match f.kind {
                SettingKindFile::Number => SettingKind::Number,
                SettingKindFile::Int => SettingKind::Int,
                SettingKindFile::Text => SettingKind::Text,
            },
            min: f.min,
            max: f.max,
            default: None,
            unit: f.unit.clone(),
        };
        if let (Some(lo), Some(hi)) = (f.min, f.max)
            && lo > hi
        {
            cx.fail(codes::VALUE, &path, format!("setting `{name}` has min {lo} above max {hi}"), "swap them");
        }
        if let Some(d) = &f.default {
            match s.value(d) {
                Ok(v) => s.default = Some(v),
                Err(e) => cx.fail(
                    codes::VALUE,
                    &[Seg::Field("settings"), Seg::Key(name), Seg::Field("default")],
                    format!("the default of `{name}`: {e}"),
                    "give a default the setting takes",
                ),
            }
        }
        out.insert(name.clone(), s);
    }
    out
}

fn frame(cx: &mut Cx<'_>, f: FrameFile) -> Option<Frame> {
    let path = [Seg::Field("frame")];
    let max = |cx: &mut Cx<'_>, m: Option<usize>| -> usize {
        let m = m.unwrap_or(256);
        if !(1..=65_536).contains(&m) {
            cx.fail(codes::FRAME, &path, format!("a reply of at most {m} bytes"), "`max` is 1 to 65536 bytes");
        }
        m
    };
    let frame = match f {
        FrameFile::Terminated { end, max: m, checksum: c } => {
            if end.is_empty() {
                cx.fail(codes::FRAME, &path, "replies end with nothing", "give the terminator, such as \"\\r\\n\"");
                return None;
            }
            Frame::Terminated { end: end.into_bytes(), max: max(cx, m), checksum: c.map(checksum) }
        }
        FrameFile::Delimited { start, end, max: m, checksum: c } => {
            if start.is_empty() || end.is_empty() {
                cx.fail(
                    codes::FRAME,
                    &path,
                    "a delimited reply needs a start and an end",
                    "such as STX \"\\u{2}\" and ETX \"\\u{3}\"",
                );
                return None;
            }
            Frame::Delimited {
                start: start.into_bytes(),
                end: end.into_bytes(),
                max: max(cx, m),
                checksum: c.map(checksum),
            }
        }
        FrameFile::Fixed(n) => {
            if !(1..=4096).contains(&n) {
                cx.fail(
                    codes::FRAME,
                    &path,
                    format!("a fixed reply of {n} bytes"),
                    "a fixed length is 1 to 4096 bytes",
                );
                return None;
            }
            Frame::Fixed(n)
        }
        FrameFile::Prompt { prompts, max: m } => {
            if prompts.is_empty() || prompts.iter().any(String::is_empty) {
                cx.fail(codes::FRAME, &path, "a prompt frame needs prompts", "such as [\":\", \">\", \"<\"]");
                return None;
            }
            Frame::Prompt { prompts: prompts.into_iter().map(String::into_bytes).collect(), max: max(cx, m) }
        }
    };
    if let Some(c) = frame.checksum()
        && let Frame::Terminated { max, .. } | Frame::Delimited { max, .. } = &frame
        && *max <= c.width()
    {
        cx.fail(codes::FRAME, &path, "the maximum leaves no room for the checksum", "raise `max`");
    }
    Some(frame)
}

fn command(cx: &mut Cx<'_>, name: &str, f: CommandFile, is_setting: &dyn Fn(&str) -> bool) -> Option<Command> {
    let at = |field: &'static str| [Seg::Field("commands"), Seg::Key(name), Seg::Field(field)];
    let mut ok = true;
    let send = cx.template(&at("send"), &f.send);
    let reply = match &f.reply {
        Some(r) => {
            let t = cx.template(&at("reply"), r);
            ok &= t.is_some();
            t
        }
        None => None,
    };
    let send = send?;
    if send.names().count() != send.pieces.iter().filter(|p| matches!(p, super::template::Piece::Field(..))).count() {
        cx.fail(
            codes::PLACEHOLDER,
            &at("send"),
            format!("command `{name}` sends a dropped field `{{_}}`"),
            "name what the command sends: `{rate}`",
        );
        ok = false;
    }
    let mut args: Vec<String> = Vec::new();
    for n in send.names() {
        if !is_setting(n) && !args.iter().any(|a| a == n) {
            args.push(n.to_owned());
        }
    }
    let captures: BTreeSet<&str> = reply.iter().flat_map(Template::names).collect();
    let lines = match f.lines {
        None => Lines::One,
        Some(LinesFile::Count(n)) => {
            if !(2..=MAX_LINES as u16).contains(&n) {
                cx.fail(
                    codes::FRAME,
                    &at("lines"),
                    format!("a reply of {n} lines"),
                    format!("a count of 2 to {MAX_LINES} lines; leave `lines` out for one"),
                );
                ok = false;
            }
            Lines::Count(n)
        }
        Some(LinesFile::Until(t)) => match cx.template(&at("lines"), &t) {
            Some(t) => Lines::Until(t),
            None => {
                ok = false;
                Lines::One
            }
        },
    };
    if lines != Lines::One && reply.is_none() {
        cx.fail(codes::REFERENCE, &at("lines"), format!("command `{name}` has lines but no reply"), "give its `reply`");
        ok = false;
    }
    let mut values = BTreeMap::new();
    for (v, vf) in f.values {
        let path = [Seg::Field("commands"), Seg::Key(name), Seg::Field("values"), Seg::Key(&v)];
        if !args.contains(&v) && !captures.contains(v.as_str()) {
            let known: Vec<&str> = args.iter().map(String::as_str).chain(captures.iter().copied()).collect();
            cx.fail(
                codes::REFERENCE,
                &path,
                format!("`{v}` is neither an argument nor a capture of `{name}`"),
                format!("its arguments and captures are: {}", known.join(", ")),
            );
            ok = false;
            continue;
        }
        let spec = ValueSpec { min: vf.min, max: vf.max, scale: vf.scale.unwrap_or(1.0), one_of: vf.one_of };
        if !(spec.scale.is_finite() && spec.scale != 0.0) {
            cx.fail(
                codes::VALUE,
                &path,
                format!("the scale of `{v}` is {}", spec.scale),
                "engineering value = wire value × scale: 0.01 for hundredths, 1000 for millilitres on a wire in microlitres; it cannot be zero",
            );
            ok = false;
        }
        if let (Some(lo), Some(hi)) = (spec.min, spec.max)
            && lo > hi
        {
            cx.fail(codes::VALUE, &path, format!("`{v}` has min {lo} above max {hi}"), "swap them");
            ok = false;
        }
        values.insert(v, spec);
    }
    let timeout = match &f.timeout {
        Some(t) => cx.seconds(&at("timeout"), t).unwrap_or(0.0),
        None => 0.0,
    };
    let mut sim = BTreeMap::new();
    for (c, text) in f.sim {
        let path = [Seg::Field("commands"), Seg::Key(name), Seg::Field("sim"), Seg::Key(&c)];
        let spec = reply.as_ref().and_then(|r| r.spec_of(&c));
        match spec {
            None => {
                cx.fail(
                    codes::REFERENCE,
                    &path,
                    format!("the simulator answers `{c}`, which `{name}`'s reply does not capture"),
                    format!("its captures are: {}", captures.iter().copied().collect::<Vec<_>>().join(", ")),
                );
                ok = false;
            }
            Some(s) if s.numeric() => match text.trim().parse::<f64>() {
                Ok(v) => {
                    sim.insert(c, Value::Number(v));
                }
                Err(_) => {
                    cx.fail(codes::VALUE, &path, format!("`{c}` is a number, not `{text}`"), "give a number");
                    ok = false;
                }
            },
            Some(_) => {
                sim.insert(c, Value::Text(text));
            }
        }
    }
    // Checked against the other commands once they are all read (`Bindings::read_backs`).
    let read_back = f.read_back.map(|r| Field { command: r.command, field: r.field });
    ok.then(|| Command {
        name: name.to_owned(),
        send,
        reply,
        lines,
        args,
        values,
        acts: f.acts,
        read_back,
        timeout,
        sim,
    })
}

/// Checks the bindings and calls against the commands.
struct Bindings<'a, 'b> {
    cx: &'a mut Cx<'b>,
    commands: &'a BTreeMap<String, Command>,
    named: &'a BTreeSet<String>,
    is_setting: &'a dyn Fn(&str) -> bool,
}

impl Bindings<'_, '_> {
    /// The command `name`, or a diagnostic at `path` (unless the command is named but failed, already reported).
    fn command(&mut self, path: &[Seg<'_>], name: &str) -> Option<&Command> {
        if let Some(c) = self.commands.get(name) {
            return Some(c);
        }
        if !self.named.contains(name) {
            let known: Vec<&str> = self.named.iter().map(String::as_str).collect();
            let help = match suggest(name, &known) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("the commands are: {}", known.join(", ")),
            };
            self.cx.fail(codes::REFERENCE, path, format!("there is no command `{name}`"), help);
        }
        None
    }

    fn captures(&self, command: &str) -> BTreeSet<&str> {
        self.commands.get(command).and_then(|c| c.reply.as_ref()).map(|r| r.names().collect()).unwrap_or_default()
    }

    fn capture_list(&self, command: &str) -> String {
        self.captures(command).into_iter().collect::<Vec<_>>().join(", ")
    }

    /// A template over the settings.
    fn over_settings(&mut self, path: &[Seg<'_>], text: &str) -> Option<Template> {
        let t = self.cx.template(path, text)?;
        self.cx.only(path, &t, self.is_setting, "a setting");
        Some(t)
    }

    /// A call of a command, its arguments given except `filled` (which a binding fills).
    fn call(&mut self, path: &[Seg<'_>], f: CallFile, filled: &[&str]) -> Option<Call> {
        let mut cmd_path = path.to_vec();
        cmd_path.push(Seg::Field("command"));
        let args = self.command(&cmd_path, &f.command)?.args.clone();
        let mut ok = true;
        for a in args.iter().filter(|a| !filled.contains(&a.as_str()) && !f.args.contains_key(*a)) {
            self.cx.fail(
                codes::PLACEHOLDER,
                path,
                format!("the call of `{}` does not give its argument `{a}`", f.command),
                format!("add `args: {{\"{a}\": \"...\"}}`, a value or a template over the settings"),
            );
            ok = false;
        }
        let mut out = BTreeMap::new();
        for (a, text) in &f.args {
            let mut p = path.to_vec();
            p.push(Seg::Field("args"));
            p.push(Seg::Key(a));
            if !args.contains(a) || filled.contains(&a.as_str()) {
                self.cx.fail(
                    codes::PLACEHOLDER,
                    &p,
                    format!("`{}` takes no argument `{a}` here", f.command),
                    if args.is_empty() {
                        format!("`{}` takes no arguments", f.command)
                    } else {
                        format!("its arguments are: {}", args.join(", "))
                    },
                );
                ok = false;
                continue;
            }
            match self.over_settings(&p, text) {
                Some(t) => {
                    out.insert(a.clone(), t);
                }
                None => ok = false,
            }
        }
        ok.then_some(Call { command: f.command, args: out })
    }

    /// A list of calls, the field `field` of the file.
    fn calls(&mut self, field: &'static str, list: Vec<CallFile>) -> Vec<Call> {
        let path = |i| [Seg::Field(field), Seg::Index(i)];
        list.into_iter().enumerate().filter_map(|(i, c)| self.call(&path(i), c, &[])).collect()
    }

    /// An argument a binding fills: the command's only argument.
    fn arg(&mut self, path: &[Seg<'_>], f: ArgFile) -> Option<Arg> {
        let mut cmd_path = path.to_vec();
        cmd_path.push(Seg::Field("command"));
        let args = self.command(&cmd_path, &f.command)?.args.clone();
        let mut arg_path = path.to_vec();
        arg_path.push(Seg::Field("arg"));
        if !args.contains(&f.arg) {
            self.cx.fail(
                codes::REFERENCE,
                &arg_path,
                format!("`{}` has no argument `{}`", f.command, f.arg),
                format!("its arguments are: {}", if args.is_empty() { "none".into() } else { args.join(", ") }),
            );
            return None;
        }
        if args.len() > 1 {
            self.cx.fail(
                codes::PLACEHOLDER,
                path,
                format!("`{}` takes {} arguments, and a binding fills only `{}`", f.command, args.len(), f.arg),
                "bind a command whose other values are settings",
            );
            return None;
        }
        Some(Arg { command: f.command, arg: f.arg })
    }

    /// A capture a binding reads.
    fn field(&mut self, path: &[Seg<'_>], f: FieldFile) -> Option<Field> {
        let mut cmd_path = path.to_vec();
        cmd_path.push(Seg::Field("command"));
        self.command(&cmd_path, &f.command)?;
        if !self.captures(&f.command).contains(f.field.as_str()) {
            let mut p = path.to_vec();
            p.push(Seg::Field("field"));
            let list = self.capture_list(&f.command);
            self.cx.fail(
                codes::REFERENCE,
                &p,
                format!("`{}`'s reply does not capture `{}`", f.command, f.field),
                if list.is_empty() { "it captures nothing".to_owned() } else { format!("it captures: {list}") },
            );
            return None;
        }
        Some(Field { command: f.command, field: f.field })
    }

    /// Checks every command's read-back: a query (it neither acts nor takes arguments) whose reply captures the
    /// field, of a command that acts and sends that one value (its argument, or a setting) under the field's name.
    fn read_backs(&mut self) {
        let commands = self.commands;
        for cmd in commands.values() {
            let Some(check) = &cmd.read_back else { continue };
            let path = [Seg::Field("commands"), Seg::Key(&cmd.name), Seg::Field("read_back")];
            let Some(query) =
                self.field(&path, FieldFile { command: check.command.clone(), field: check.field.clone() })
            else {
                continue;
            };
            if !cmd.acts {
                self.cx.fail(
                    codes::READ_BACK,
                    &path,
                    format!("`{}` has a read-back but does not act", cmd.name),
                    "a command that cannot act is asked again after a lost reply; mark it `acts: true` (a set point                      acts), or remove `read_back`",
                );
            }
            if !cmd.send.names().any(|n| n == check.field) {
                self.cx.fail(
                    codes::READ_BACK,
                    &path,
                    format!("`{}` sends no `{{{}}}` for the read-back to compare", cmd.name, check.field),
                    "a read-back's field is named as the value the command sends: `set_point` reads back                      `S{set_point:.2}`",
                );
            } else if cmd.args.iter().any(|a| *a != check.field) {
                self.cx.fail(
                    codes::READ_BACK,
                    &path,
                    format!("`{}` sends more than `{}`, and a read-back compares only that", cmd.name, check.field),
                    "give a read-back only to a command that sets one value, such as a set point",
                );
            }
            if let Some(q) = self.commands.get(&query.command)
                && (q.acts || !q.args.is_empty())
            {
                self.cx.fail(
                    codes::READ_BACK,
                    &path,
                    format!("`{}` reads `{}` back through `{}`, which is not a query", cmd.name, check.field, q.name),
                    "read back through a command that neither acts nor takes arguments (`poll`, `read_set_point`)",
                );
            }
        }
    }

    fn identify(&mut self, f: super::file::IdentifyFile) -> Option<Identify> {
        let path = |x: &'static str| [Seg::Field("identify"), Seg::Field(x)];
        let cmd = self.command(&path("command"), &f.command)?;
        if cmd.reply.is_none() {
            self.cx.fail(
                codes::REFERENCE,
                &path("command"),
                format!("identify's command `{}` has no reply", f.command),
                "identify reads the model from a reply",
            );
            return None;
        }
        let captures = self.captures(&f.command).into_iter().map(str::to_owned).collect::<BTreeSet<_>>();
        let is_setting = self.is_setting;
        let allowed = |n: &str| captures.contains(n) || is_setting(n);
        let mut template = |x: &'static str, text: &str| -> Option<Template> {
            let t = self.cx.template(&path(x), text)?;
            self.cx.only(&path(x), &t, &allowed, "a capture of identify's reply or a setting");
            Some(t)
        };
        let model = template("model", &f.model);
        let firmware = f.firmware.as_deref().map(|t| template("firmware", t));
        let serial = f.serial.as_deref().map(|t| template("serial", t));
        Some(Identify { command: f.command, model: model?, firmware: firmware.flatten(), serial: serial.flatten() })
    }

    fn dispense(&mut self, d: DispenseFile) -> Option<Dispense> {
        let path = |f: &'static str| [Seg::Field("dispense"), Seg::Field(f)];
        match d {
            DispenseFile::Run { clear, rate, rate_value, volume, start, stop, running, delivered, poll, reservoir } => {
                let clear = clear.and_then(|c| self.call(&path("clear"), c, &[]));
                let rate = self.arg(&path("rate"), rate);
                let rate_value = self.over_settings(&path("rate_value"), &rate_value);
                let volume = self.arg(&path("volume"), volume);
                let start = self.call(&path("start"), start, &[]);
                let stop = self.call(&path("stop"), stop, &[]);
                let running_field = self.field(
                    &path("running"),
                    FieldFile { command: running.command.clone(), field: running.field.clone() },
                );
                let delivered = self.field(&path("delivered"), delivered);
                let poll = poll.map_or(Some(1.0), |p| self.cx.seconds(&path("poll"), &p));
                let reservoir = self.over_settings(&path("reservoir"), &reservoir);
                Some(Dispense::Run {
                    clear,
                    rate: rate?,
                    rate_value: rate_value?,
                    volume: volume?,
                    start: start?,
                    stop: stop?,
                    running: running_field?,
                    running_values: running.running,
                    idle: running.idle,
                    delivered: delivered?,
                    poll: poll?,
                    reservoir: reservoir?,
                })
            }
            DispenseFile::Flow { set, rate, scale, read, poll, medium, reservoir } => {
                let set = self.arg(&path("set"), set);
                let rate = self.over_settings(&path("rate"), &rate);
                if !(scale.is_finite() && scale > 0.0) {
                    self.cx.fail(
                        codes::VALUE,
                        &path("scale"),
                        format!("a scale of {scale}"),
                        "microlitres per minute in one of the instrument's flow units: 1000 for mL/min or sccm; it must be positive",
                    );
                }
                let read = self.field(&path("read"), read);
                let poll = poll.map_or(Some(1.0), |p| self.cx.seconds(&path("poll"), &p));
                let medium = match medium {
                    MediumFile::Liquid => Some(Medium::Liquid),
                    MediumFile::Gas(g) => self.over_settings(&path("medium"), &g).map(Medium::Gas),
                };
                let reservoir = self.over_settings(&path("reservoir"), &reservoir);
                (scale.is_finite() && scale > 0.0).then_some(())?;
                Some(Dispense::Flow {
                    set: set?,
                    rate: rate?,
                    scale,
                    read: read?,
                    poll: poll?,
                    medium: medium?,
                    reservoir: reservoir?,
                })
            }
        }
    }
}

/// Checks every reply pattern against what the simulator writes for it, identify's for every model: a pattern
/// that cannot read its own rendering cannot read the instrument either, and a class that claims a command's
/// ordinary reply would turn every answer into an error.
fn replies_read_back(cx: &mut Cx<'_>, decl: &Declaration) {
    let Some(cmd) = decl.command(&decl.identify.command) else { return };
    let path = [Seg::Field("identify"), Seg::Field("model")];
    for model in decl.variants.keys() {
        let settings = decl.sample_settings(model);
        let Some(from_model) = decl.identify.model.matches(model) else {
            cx.fail(
                codes::REPLY,
                &path,
                format!("the model template `{}` cannot give the model `{model}`", decl.identify.model.text),
                "the template must render each model of `variants`: `NE-{model_number}` gives `NE-1000`",
            );
            continue;
        };
        let look = |n: &str| {
            from_model.get(n).cloned().or_else(|| settings.get(n).cloned()).or_else(|| sample_value(decl, cmd, n))
        };
        let what = format!("what `{model}` answers to identify");
        let Some((text, back)) = read_back(cx, decl, cmd, &look, &what, &path) else { continue };
        let found = decl.identify.model.render(&|n| back.get(n).cloned().or_else(|| settings.get(n).cloned()));
        if found.as_deref() != Ok(model.as_str()) {
            cx.fail(
                codes::REPLY,
                &path,
                format!("identify reads the model `{}` from {what} (`{text}`)", found.unwrap_or_else(|e| e)),
                "the model template must give back the model it was read from",
            );
        }
    }
    let Some(model) = decl.variants.keys().next() else { return };
    let settings = decl.sample_settings(model);
    for cmd in decl.commands.values() {
        let look = |n: &str| settings.get(n).cloned().or_else(|| sample_value(decl, cmd, n));
        let path = [Seg::Field("commands"), Seg::Key(&cmd.name), Seg::Field("reply")];
        read_back(cx, decl, cmd, &look, &format!("`{}`'s reply", cmd.name), &path);
    }
}

/// Writes `cmd`'s reply as the simulator would, each placeholder from `look`, and reads it back with the command's
/// own pattern: the text and its captures, or `None` once a diagnostic at `at` says why not (`what` names the reply).
fn read_back(
    cx: &mut Cx<'_>,
    decl: &Declaration,
    cmd: &Command,
    look: &dyn Fn(&str) -> Option<Value>,
    what: &str,
    at: &[Seg<'_>],
) -> Option<(String, super::Captures)> {
    let reply = cmd.reply.as_ref()?;
    let text = match reply.render(look) {
        Ok(t) => t,
        Err(e) => {
            cx.fail(
                codes::REPLY,
                at,
                format!("{what} cannot be written: {e}"),
                "give the capture a `sim` value that fits its spec, or take it from the model template",
            );
            return None;
        }
    };
    let Some(back) = reply.matches(&text) else {
        cx.fail(
            codes::REPLY,
            &[Seg::Field("commands"), Seg::Key(&cmd.name), Seg::Field("reply")],
            format!("the pattern `{}` cannot read {what}: `{text}`", reply.text),
            "each capture must read what it writes: a `d2` reads two digits, a `*` reads up to the next literal",
        );
        return None;
    };
    if let Some(c) = decl.classes.iter().find(|c| c.reply.matches(&text).is_some()) {
        cx.fail(
            codes::REPLY,
            at,
            format!("{what} (`{text}`) would be taken for the class `{}`", c.reply.text),
            "make the class pattern stricter, so it claims only the replies it means",
        );
        return None;
    }
    Some((text, back))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_declaration_loads() {
        for (name, text) in BUILT_IN {
            load_declaration(SourceFile::new(name, text)).unwrap_or_else(|d| panic!("{name}:\n{d}"));
        }
    }
}
