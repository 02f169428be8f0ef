//! Checking reagent parameters (the protocol's `reagents` section) and the reagent each dispense names.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::diagnostic::{Diagnostic, Diagnostics, SourceFile};
use crate::reagent::{CODE, ReagentArg, ReagentParameter, ReagentParameterFile, ReagentSlot};
use crate::ron_file::{parse_section, suggest};
use crate::source::{Node, Seg};

use super::valid_name;

/// Reads the `reagents` section; a `None` value marks a declaration with an error.
pub(crate) fn declarations(
    src: &Arc<SourceFile>,
    tree: &Node,
    diags: &mut Diagnostics,
) -> BTreeMap<String, Option<ReagentParameter>> {
    let mut out = BTreeMap::new();
    let Some(node) = tree.get(&[Seg::Field("reagents")]) else { return out };
    for (key, value) in &node.entries {
        let Some(name) = key.string.clone() else { continue };
        let mut error = |span: std::ops::Range<usize>, message: String, help: &str| {
            diags.push(Diagnostic::error(CODE, src, span, message).with_help(help));
        };
        if !valid_name(&name) {
            error(
                key.span.clone(),
                format!("`{name}` is not a valid parameter name"),
                "use lower-case letters, digits and `_`, starting with a letter",
            );
        }
        let decl = match parse_section::<ReagentParameterFile>(src, value.span.clone(), "reagent parameter") {
            Err(d) => {
                diags.push(d);
                None
            }
            Ok(f) => {
                let field = |f: &str| value.get(&[Seg::Field(f)]).map_or(value.span.clone(), |n| n.span.clone());
                let slot = match (f.role, f.among) {
                    (Some(role), None) if !role.trim().is_empty() => Some(ReagentSlot::Role(role)),
                    (None, Some(list)) if !list.is_empty() => Some(ReagentSlot::List(list)),
                    (Some(_), Some(_)) => {
                        error(
                            value.span.clone(),
                            format!("reagent parameter `{name}` gives both `role` and `among`"),
                            "give one: `(role: \"catalyst\")` or `(among: [\"C1\", \"C2\"])`",
                        );
                        None
                    }
                    _ => {
                        error(
                            value.span.clone(),
                            format!(
                                "reagent parameter `{name}` says neither which role nor which reagents it may take"
                            ),
                            "give `(role: \"catalyst\")` or `(among: [\"C1\", \"C2\"])`",
                        );
                        None
                    }
                };
                if let (Some(ReagentSlot::List(list)), Some(d)) = (&slot, &f.default)
                    && !list.contains(d)
                {
                    let names: Vec<&str> = list.iter().map(String::as_str).collect();
                    let help = match suggest(d, &names) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => "make the default one of the reagents in `among`".to_owned(),
                    };
                    error(field("default"), format!("the default `{d}` of `{name}` is not among its reagents"), &help);
                }
                slot.map(|slot| ReagentParameter {
                    name: name.clone(),
                    slot,
                    default: f.default,
                    description: f.description,
                })
            }
        };
        out.insert(name, decl);
    }
    out
}

/// Checks a dispense's `reagent` text: a name, or `$name` of a declared reagent parameter.
pub(crate) fn argument(
    src: &Arc<SourceFile>,
    span: std::ops::Range<usize>,
    text: &str,
    declared: &BTreeMap<String, Option<ReagentParameter>>,
    numeric: &[&str],
    diags: &mut Diagnostics,
) -> Option<ReagentArg> {
    let text = text.trim();
    let Some(name) = text.strip_prefix('$') else {
        if text.is_empty() {
            diags.push(
                Diagnostic::error(CODE, src, span, "the reagent's name is empty")
                    .with_help("name a reagent the lab declares, such as \"A\""),
            );
            return None;
        }
        return Some(ReagentArg::Value(text.to_owned()));
    };
    if declared.contains_key(name) {
        return declared[name].as_ref().map(|_| ReagentArg::Param(name.to_owned()));
    }
    let (message, help) = if numeric.contains(&name) {
        (
            format!("`{name}` is a number, not a reagent"),
            format!("declare a reagent parameter under `reagents: {{ \"{name}\": (role: \"...\") }}` and use it here"),
        )
    } else {
        let known: Vec<&str> = declared.keys().map(String::as_str).collect();
        let help = match suggest(name, &known) {
            Some(s) => format!("did you mean `${s}`?"),
            None => format!("declare it under `reagents: {{ \"{name}\": (role: \"catalyst\") }}`"),
        };
        (format!("unknown reagent parameter `{name}`"), help)
    };
    diags.push(Diagnostic::error(CODE, src, span, message).with_help(help));
    None
}
