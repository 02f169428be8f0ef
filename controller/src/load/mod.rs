//! Reading a campaign and everything it names, and checking it all before anything moves.
//!
//! A campaign names a protocol and a lab by paths relative to the campaign file. [`load_campaign_inputs`] reads
//! the three files, validates each, and then checks them against each other: the campaign against the protocol
//! (parameters, ranges, objective), the lab against the protocol (instruments, positions, limits), and the rack
//! against the budget. Every problem in every file comes back at once.

pub mod check;
pub mod diagnostics;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use devices::Lab;
use experiments::Campaign;
use protocols::source::Seg;
use protocols::{Diagnostic, Diagnostics, Protocol, SourceFile};

/// Why inputs could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The files have problems; each diagnostic says where and how to fix it.
    #[error("{} problem{} in the input files", .0.iter().filter(|d| d.severity == protocols::Severity::Error).count(), if .0.iter().filter(|d| d.severity == protocols::Severity::Error).count() == 1 { "" } else { "s" })]
    Invalid(Diagnostics),
}

/// A campaign with its protocol and lab, all checked against each other.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The campaign.
    pub campaign: Campaign,
    /// Where the campaign file is.
    pub campaign_path: PathBuf,
    /// The protocol.
    pub protocol: Arc<Protocol>,
    /// Where the protocol file is.
    pub protocol_path: PathBuf,
    /// The lab.
    pub lab: Arc<Lab>,
    /// Where the lab file is.
    pub lab_path: PathBuf,
    /// Warnings found along the way.
    pub warnings: Diagnostics,
}

/// Reads a file as a [`SourceFile`] named by its path as given.
pub fn read_source(path: &Path) -> Result<Arc<SourceFile>, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read { path: path.to_owned(), source })?;
    Ok(SourceFile::new(path.display().to_string(), text))
}

/// Loads a protocol file.
pub fn load_protocol_file(path: &Path) -> Result<(Protocol, Diagnostics), LoadError> {
    protocols::load_protocol(read_source(path)?).map_err(LoadError::Invalid)
}

/// Loads a lab file.
pub fn load_lab_file(path: &Path) -> Result<Lab, LoadError> {
    devices::load_lab(read_source(path)?).map_err(LoadError::Invalid)
}

/// Resolves `relative` against the folder holding `file`.
pub fn beside(file: &Path, relative: &str) -> PathBuf {
    let rel = Path::new(relative);
    if rel.is_absolute() {
        return rel.to_owned();
    }
    file.parent().unwrap_or_else(|| Path::new(".")).join(rel)
}

/// Loads a campaign and the protocol and lab it names (or `lab_override`), and checks them all.
pub fn load_campaign_inputs(campaign_path: &Path, lab_override: Option<&Path>) -> Result<Inputs, LoadError> {
    let source = read_source(campaign_path)?;
    let (campaign, mut warnings) = experiments::load_campaign(Arc::clone(&source)).map_err(LoadError::Invalid)?;
    let tree = protocols::source::index(&source.text);
    let span = |field: &str| tree.span_of(&[protocols::source::Seg::Field(field)]);
    let mut problems = Diagnostics::new();

    let protocol_path = beside(campaign_path, &campaign.protocol);
    let protocol = match read_source(&protocol_path) {
        Ok(src) => match protocols::load_protocol(src) {
            Ok((p, w)) => {
                warnings.extend(w);
                Some(p)
            }
            Err(d) => {
                problems.extend(d);
                None
            }
        },
        Err(LoadError::Read { path, source: e }) => {
            problems.push(
                Diagnostic::error(
                    "C0100",
                    &source,
                    span("protocol"),
                    format!("cannot read protocol {}: {e}", path.display()),
                )
                .with_help("the path is relative to the folder of the campaign file"),
            );
            None
        }
        Err(LoadError::Invalid(d)) => {
            problems.extend(d);
            None
        }
    };
    let lab_path = match lab_override {
        Some(p) => p.to_owned(),
        None => beside(campaign_path, &campaign.lab),
    };
    let lab = match read_source(&lab_path) {
        Ok(src) => match devices::load_lab(src) {
            Ok(l) => Some(l),
            Err(d) => {
                problems.extend(d);
                None
            }
        },
        Err(LoadError::Read { path, source: e }) => {
            problems.push(
                Diagnostic::error("C0100", &source, span("lab"), format!("cannot read lab {}: {e}", path.display()))
                    .with_help("the path is relative to the folder of the campaign file; `--lab` overrides it"),
            );
            None
        }
        Err(LoadError::Invalid(d)) => {
            problems.extend(d);
            None
        }
    };
    if let Some(p) = &protocol {
        problems.extend(campaign.check_against(p));
        if let Some(l) = &lab {
            for d in unknown_level_reagents(&campaign, &source, l, p) {
                problems.push(d);
            }
            // Levels naming reagents the lab lacks were reported at the level; the protocol is checked for the rest.
            let known: BTreeMap<String, Vec<String>> = campaign
                .reagents
                .iter()
                .map(|(k, v)| (k.clone(), v.iter().filter(|r| l.reagent(r).is_some()).cloned().collect()))
                .collect();
            problems.extend(l.check_protocol_with(p, &known));
        }
    }
    if let Some(l) = &lab
        && l.deck.rack.slots() < campaign.budget
    {
        problems.push(
            Diagnostic::error(
                "C0101",
                &source,
                span("budget"),
                format!(
                    "the campaign needs {} vessels but the rack of lab `{}` holds {}",
                    campaign.budget,
                    l.name,
                    l.deck.rack.slots()
                ),
            )
            .with_help("lower the budget, or give the lab's rack more columns or rows"),
        );
    }
    let (errors, warns): (Vec<Diagnostic>, Vec<Diagnostic>) =
        problems.into_iter().partition(|d| d.severity == protocols::Severity::Error);
    warnings.0.extend(warns);
    if !errors.is_empty() {
        let mut d = Diagnostics(errors);
        d.sort();
        return Err(LoadError::Invalid(d));
    }
    let (Some(protocol), Some(lab)) = (protocol, lab) else {
        return Err(LoadError::Invalid(Diagnostics::new()));
    };
    warnings.0.extend(stock_warnings(&campaign, &source, &protocol, &lab));
    Ok(Inputs {
        campaign,
        campaign_path: campaign_path.to_owned(),
        protocol: Arc::new(protocol),
        protocol_path,
        lab: Arc::new(lab),
        lab_path,
        warnings,
    })
}

/// The text of `lab`'s file with each simulated instrument's `port: Simulated` replaced by
/// `port: Simulator("<path>")`, for simulators already running at `ports`. An instrument's `faults` are left out:
/// the simulator behind the port injects them, and a lab file refuses faults on any port it does not simulate itself.
pub fn with_simulator_ports(lab: &devices::Lab, ports: &std::collections::BTreeMap<String, String>) -> String {
    use protocols::source::{Seg, index};
    let text = &lab.source.text;
    let tree = index(text);
    let mut edits: Vec<(std::ops::Range<usize>, String)> = lab
        .instruments
        .iter()
        .filter(|i| i.port == devices::PortSpec::Simulated)
        .filter_map(|i| {
            let path = ports.get(&i.name)?;
            let node = tree.get(&[Seg::Field("instruments"), Seg::Key(&i.name), Seg::Field("port")])?;
            let faults = tree
                .get(&[Seg::Field("instruments"), Seg::Key(&i.name), Seg::Field("faults")])
                .and_then(|f| field_line(text, "faults", f.span.clone()))
                .map(|range| (range, String::new()));
            Some([Some((node.span.clone(), format!("Simulator({path:?})"))), faults])
        })
        .flatten()
        .flatten()
        .collect();
    edits.sort_by_key(|(r, _)| std::cmp::Reverse(r.start));
    let mut out = text.clone();
    for (range, replacement) in edits {
        out.replace_range(range, &replacement);
    }
    out
}

/// The text of the field `key: <value>` whose value spans `value`, with its comma, and with its whole line when it has
/// the line to itself.
fn field_line(text: &str, key: &str, value: std::ops::Range<usize>) -> Option<std::ops::Range<usize>> {
    let head = text[..value.start].trim_end().strip_suffix(':')?.trim_end().strip_suffix(key)?;
    let mut start = head.len();
    let mut end = value.end;
    let rest = &text[end..];
    let after_blanks = rest.trim_start_matches([' ', '\t']);
    if after_blanks.starts_with(',') {
        end += rest.len() - after_blanks.len() + 1;
    }
    let indent = text[..start].trim_end_matches([' ', '\t']);
    if indent.ends_with('\n') && text[end..].starts_with('\n') {
        start = indent.len();
        end += 1;
    }
    Some(start..end)
}

/// C0102: a level of a reagent parameter names a reagent the lab does not declare, or one whose role the protocol's
/// reagent parameter does not allow.
fn unknown_level_reagents(
    campaign: &Campaign,
    source: &Arc<SourceFile>,
    lab: &devices::Lab,
    protocol: &Protocol,
) -> Vec<Diagnostic> {
    let tree = protocols::source::index(&source.text);
    let names: Vec<&str> = lab.reagents.keys().map(String::as_str).collect();
    let mut out = Vec::new();
    for (param, reagents) in &campaign.reagents {
        let Some(dim) = campaign.space.dim(param) else { continue };
        let slot = protocol.reagent_parameter(param).map(|p| &p.slot);
        for (level, reagent) in dim.levels().unwrap_or_default().iter().zip(reagents) {
            let span =
                tree.span_of(&[Seg::Field("vary"), Seg::Key(param), Seg::Field("levels"), Seg::Key(&level.label)]);
            if lab.reagent(reagent).is_some() {
                if let Some(slot) = slot
                    && !lab.reagents_for(slot).contains(reagent)
                {
                    out.push(
                        Diagnostic::error(
                            "C0102",
                            source,
                            span,
                            format!(
                                "level `{}` of `{param}` dispenses `{reagent}`, but protocol `{}` allows {slot}",
                                level.label,
                                protocol.name()
                            ),
                        )
                        .with_help(format!("choose among: {}", lab.reagents_for(slot).join(", "))),
                    );
                }
                continue;
            }
            let help = match protocols::ron_file::suggest(reagent, &names) {
                Some(s) => format!("did you mean `{s}`? Lab `{}` declares: {}", lab.name, names.join(", ")),
                None => format!("lab `{}` declares: {}", lab.name, names.join(", ")),
            };
            out.push(
                Diagnostic::error(
                    "C0102",
                    source,
                    span,
                    format!(
                        "level `{}` of `{param}` dispenses `{reagent}`, which lab `{}` does not declare",
                        level.label, lab.name
                    ),
                )
                .with_help(help),
            );
        }
    }
    out
}

/// C0103: a bottle holds less than the campaign's worst case needs (every experiment adding the most it can of each
/// reagent it may add, each dispense through a valve's line after priming it), counted in experiments' worth. The campaign still runs: experiments that cannot be served wait
/// for `lab restock`.
fn stock_warnings(
    campaign: &Campaign,
    source: &Arc<SourceFile>,
    protocol: &Protocol,
    lab: &devices::Lab,
) -> Vec<Diagnostic> {
    let allowed = lab.allowed_reagents(protocol, &campaign.reagents);
    let mut per_experiment: BTreeMap<String, f64> = BTreeMap::new();
    let mut primes: BTreeMap<String, f64> = BTreeMap::new();
    let prime_of = |reagent: &str| {
        lab.sources(reagent).iter().filter_map(|s| lab.prime_of(s.valve()?.0)).map(|(_, v)| v.0).fold(0.0, f64::max)
    };
    for (i, step) in protocol.steps().iter().enumerate() {
        let protocols::Op::Dispense { volume, .. } = &step.op else { continue };
        let most = match volume {
            protocols::Arg::Value(v) => v.0,
            protocols::Arg::Param(name) => {
                let Some(p) = protocol.parameter(name) else { continue };
                let value = match (campaign.space.dim(name), campaign.fixed.get(name)) {
                    (Some(d), _) => d.max,
                    (None, Some(v)) => *v,
                    (None, None) => p.default.unwrap_or(p.max),
                };
                p.to_canonical(value).value
            }
        };
        for r in protocol.reagents_of(i, &allowed) {
            let prime = prime_of(&r);
            *primes.entry(r.clone()).or_default() += prime;
            *per_experiment.entry(r).or_default() += most + prime;
        }
    }
    let tree = protocols::source::index(&source.text);
    let mut out = Vec::new();
    for (reagent, most) in per_experiment {
        let bottles: Vec<(devices::lab::Source, &devices::lab::Bottle)> =
            lab.bottles().into_iter().filter(|(_, b)| b.reagent == reagent).collect();
        if bottles.is_empty() || bottles.iter().any(|(_, b)| b.volume.is_none()) || most <= 0.0 {
            continue;
        }
        let usable: f64 = bottles.iter().filter_map(|(_, b)| b.usable()).map(|v| v.0).sum();
        let worth = (usable / most).floor() as usize;
        if worth >= campaign.budget {
            continue;
        }
        let names: Vec<String> = bottles.iter().map(|(s, _)| format!("`{}`", s.key())).collect();
        out.push(
            Diagnostic::error(
                "C0103",
                source,
                tree.span_of(&[Seg::Field("budget")]),
                format!(
                    "`{reagent}` may run out: {} usable in {} is {worth} experiments' worth at up to {} each{}, and \
                     the budget is {} experiments",
                    protocols::units::Volume(usable),
                    names.join(", "),
                    protocols::units::Volume(most),
                    match primes.get(&reagent) {
                        Some(p) if *p > 0.0 => format!(" ({} of it priming the line)", protocols::units::Volume(*p)),
                        _ => String::new(),
                    },
                    campaign.budget
                ),
            )
            .with_help(
                "fill a bigger bottle, or be ready to `lab restock` it: experiments that need it wait until then, \
                 while the others run",
            )
            .warning(),
        );
    }
    out
}
