//! Reading technician-written RON into file types, one section at a time.
//!
//! serde stops at the first error in a document. A technician fixing a protocol wants every problem at once, so
//! loaders deserialize each independent section (a step, a parameter, an instrument) from its own slice of the
//! text, located by [`crate::source`]. An unknown field in step 3 and a typo in step 7's operation are then two
//! diagnostics, each pointing at its own line. All files share the options set here (`implicit_some`, so optional
//! fields are written bare), and the translation of `ron`'s errors into [`Diagnostic`]s with hints.

use std::ops::Range;
use std::sync::Arc;

use ron::error::{Error as RonError, SpannedError};
use serde::de::DeserializeOwned;

use crate::diagnostic::{Diagnostic, SourceFile};

/// The code of a RON syntax error.
pub const SYNTAX: &str = "L0001";
/// The code of a section whose fields or values do not match the schema.
pub const SCHEMA: &str = "L0002";

/// The RON options every file is read with.
pub fn options() -> ron::Options {
    ron::Options::default().with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME)
}

/// Checks that the whole text is RON at all; returns the syntax error otherwise.
pub fn check_syntax(source: &Arc<SourceFile>) -> Result<(), Diagnostic> {
    options()
        .from_str::<ron::Value>(&source.text)
        .map(|_| ())
        .map_err(|e| to_diagnostic(source, 0..source.text.len(), e, "file"))
}

/// Deserializes the slice `span` of `source` as a `T`. `what` names the section in messages ("step", "parameter").
pub fn parse_section<T: DeserializeOwned>(
    source: &Arc<SourceFile>,
    span: Range<usize>,
    what: &str,
) -> Result<T, Diagnostic> {
    let text = &source.text[span.clone()];
    options().from_str::<T>(text).map_err(|e| to_diagnostic(source, span, e, what))
}

/// Translates a `ron` error found while reading `span` of `source` into a diagnostic with a hint.
pub fn to_diagnostic(source: &Arc<SourceFile>, span: Range<usize>, err: SpannedError, what: &str) -> Diagnostic {
    let slice = SourceFile { name: String::new(), text: source.text[span.clone()].to_owned() };
    let start = span.start + slice.offset(err.span.start.line, err.span.start.col);
    let end = (span.start + slice.offset(err.span.end.line, err.span.end.col)).max(start);
    let (code, message, help) = describe(&err.code, what);
    // ron reports a position after an unknown identifier; point at the identifier itself when we can.
    let (start, end) = match &err.code {
        RonError::NoSuchStructField { found, .. } | RonError::NoSuchEnumVariant { found, .. } => {
            find_backwards(&source.text, start, found).map_or((start, end), |s| (s, s + found.len()))
        }
        _ => (start, end),
    };
    let mut d = Diagnostic::error(code, source, start..end, message);
    if let Some(help) = help {
        d = d.with_help(help);
    }
    d
}

fn find_backwards(text: &str, before: usize, word: &str) -> Option<usize> {
    let before = before.min(text.len());
    let hay = text.get(..before)?;
    let i = hay.rfind(word)?;
    // Only accept a hit close to where ron stopped, so we never jump to an unrelated earlier use of the word.
    (before - i <= word.len() + 8).then_some(i)
}

fn describe(err: &RonError, what: &str) -> (&'static str, String, Option<String>) {
    match err {
        RonError::NoSuchStructField { expected, found, .. } => (
            SCHEMA,
            format!("unknown field `{found}` in this {what}"),
            Some(match suggest(found, expected) {
                Some(s) => format!("did you mean `{s}`? The fields of a {what} are: {}", list(expected)),
                None => format!("the fields of a {what} are: {}", list(expected)),
            }),
        ),
        RonError::NoSuchEnumVariant { expected, found, outer } => {
            let kind = outer.as_deref().map(describe_enum).unwrap_or("variant");
            (
                SCHEMA,
                format!("unknown {kind} `{found}`"),
                Some(match suggest(found, expected) {
                    Some(s) => format!("did you mean `{s}`? Known: {}", list(expected)),
                    None => format!("known: {}", list(expected)),
                }),
            )
        }
        RonError::MissingStructField { field, outer } => (
            SCHEMA,
            format!(
                "missing field `{field}`{}",
                outer.as_deref().map(|o| format!(" in {}", describe_enum(o))).unwrap_or_default()
            ),
            Some(format!("add `{field}: ...` to this {what}")),
        ),
        RonError::DuplicateStructField { field, .. } => {
            (SCHEMA, format!("field `{field}` is given twice"), Some("keep one of them".to_owned()))
        }
        RonError::InvalidValueForType { expected, found } => {
            (SCHEMA, format!("expected {expected}, found {found}"), Some(format!("see GUIDE.md for the {what} format")))
        }
        RonError::ExpectedDifferentStructName { expected, found } => (
            SCHEMA,
            format!("this file holds a `{found}`, but a `{expected}` was expected here"),
            Some(format!("start the file with `{expected}(`, or pass it to the command that reads a `{found}`")),
        ),
        RonError::Message(m) => (SCHEMA, lower_first(m), None),
        other => (SYNTAX, format!("RON syntax error: {}", lower_first(&other.to_string())), Some(syntax_hint(other))),
    }
}

fn syntax_hint(err: &RonError) -> String {
    match err {
        RonError::ExpectedComma => "separate fields and list items with commas".to_owned(),
        RonError::ExpectedStringEnd => "close the string with `\"`".to_owned(),
        RonError::Eof => "a bracket or parenthesis is not closed".to_owned(),
        RonError::ExpectedMapColon => "write map entries as `\"key\": value`".to_owned(),
        RonError::TrailingCharacters => "the file must hold a single value; remove what follows it".to_owned(),
        _ => "check the brackets, commas and quotes around this point".to_owned(),
    }
}

fn describe_enum(rust_name: &str) -> &'static str {
    match rust_name {
        "Op" => "operation",
        "Kind" => "instrument kind",
        "Instrument" => "instrument reference (use `Kind(...)` or `Named(\"...\")`)",
        "Destination" => "destination (use `Rack`, `Kind(...)` or `Named(\"...\")`)",
        "Driver" => "driver",
        "Port" => "port (use `Simulated` or `Serial(\"/dev/...\")`)",
        "Objective" => "objective (use `Maximize(\"output\")` or `Minimize(\"output\")`)",
        "Proposer" => "proposer",
        _ => "variant",
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

fn list(items: &[&str]) -> String {
    items.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
}

/// The candidate closest to `word` by edit distance, if it is close enough to be a likely typo.
pub fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(&word.to_lowercase(), &c.to_lowercase()), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance between two strings, by characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(suggest("Dispence", &["Transfer", "Dispense", "Heat"]), Some("Dispense"));
        assert_eq!(suggest("after", &["id", "on", "op", "after"]), Some("after"));
        assert_eq!(suggest("zzzzzz", &["id", "on", "op", "after"]), None);
    }
}
