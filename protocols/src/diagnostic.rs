//! Diagnostics for technician-authored files.
//!
//! Every problem found in a RON file becomes a [`Diagnostic`]: a stable code, a message, the byte span in the source
//! it points at, and a hint saying how to fix it. Loaders collect all the problems they can find and return them
//! together, so a technician fixes a file in one pass instead of one error per run. Rendering (carets, colours) is
//! the binary's business; this module only carries the facts, plus a plain `file:line:col` rendering for logs and tests.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

/// A source file as it was read: its display name (usually the path) and its full text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// The name shown to the user, usually the path as given on the command line.
    pub name: String,
    /// The complete text of the file.
    pub text: String,
}

impl SourceFile {
    /// Wraps a file's name and text.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Arc<Self> {
        Arc::new(SourceFile { name: name.into(), text: text.into() })
    }

    /// Converts a byte offset into a 1-based line and a 1-based column counted in characters.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = floor_char_boundary(&self.text, offset.min(self.text.len()));
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = self.text[line_start..offset].chars().count() + 1;
        (line, col)
    }

    /// Converts a 1-based line and column (as RON reports them) into a byte offset, clamped to the file.
    pub fn offset(&self, line: usize, col: usize) -> usize {
        let mut offset = 0;
        for (i, l) in self.text.split_inclusive('\n').enumerate() {
            if i + 1 == line {
                let within: usize = l.chars().take(col.saturating_sub(1)).map(char::len_utf8).sum();
                return (offset + within).min(self.text.len());
            }
            offset += l.len();
        }
        self.text.len()
    }

    /// The text of the 1-based line `line`, without its line break.
    pub fn line_text(&self, line: usize) -> &str {
        self.text.lines().nth(line.saturating_sub(1)).unwrap_or("")
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// How bad a diagnostic is. Errors stop a file from loading; warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The file loads, but probably does not say what its author meant.
    Warning,
    /// The file is refused.
    Error,
}

/// One problem in one file.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    /// A stable code such as `P0004`; GUIDE.md has an entry for each.
    pub code: &'static str,
    /// Whether the file is refused.
    pub severity: Severity,
    /// What is wrong, as a sentence fragment ("step `heat` depends on unknown step `stirr`").
    pub message: String,
    /// The file the problem is in.
    pub source: Arc<SourceFile>,
    /// The byte range the problem points at; empty ranges point between characters.
    pub span: Range<usize>,
    /// A short label shown under the span ("this step id is not defined").
    pub label: Option<String>,
    /// How to fix it.
    pub help: Option<String>,
}

impl Diagnostic {
    /// A new error with the given code and message, pointing at `span` in `source`.
    pub fn error(code: &'static str, source: &Arc<SourceFile>, span: Range<usize>, message: impl Into<String>) -> Self {
        let len = source.text.len();
        let start = span.start.min(len);
        let end = span.end.clamp(start, len);
        Diagnostic {
            code,
            severity: Severity::Error,
            message: message.into(),
            source: Arc::clone(source),
            span: start..end,
            label: None,
            help: None,
        }
    }

    /// The same diagnostic as a warning.
    pub fn warning(mut self) -> Self {
        self.severity = Severity::Warning;
        self
    }

    /// Adds a label shown under the span.
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Adds a hint saying how to fix the problem.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// The 1-based line and column the diagnostic points at.
    pub fn line_col(&self) -> (usize, usize) {
        self.source.line_col(self.span.start)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (line, col) = self.line_col();
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{}:{line}:{col}: {level}[{}]: {}", self.source.name, self.code, self.message)?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// All the problems found in one or more files. A non-empty set with an error means the input was refused.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// An empty set.
    pub fn new() -> Self {
        Diagnostics(Vec::new())
    }

    /// Adds one diagnostic.
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    /// Adds all of `other`.
    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }

    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|d| d.severity == Severity::Error)
    }

    /// Whether there are no diagnostics at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The diagnostics, in the order they were found.
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }

    /// The codes of the diagnostics, in order; convenient in tests.
    pub fn codes(&self) -> Vec<&'static str> {
        self.0.iter().map(|d| d.code).collect()
    }

    /// Sorts by file, then position, so output reads top to bottom.
    pub fn sort(&mut self) {
        self.0.sort_by(|a, b| (&a.source.name, a.span.start).cmp(&(&b.source.name, b.span.start)));
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

impl IntoIterator for Diagnostics {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_and_offset_round_trip() {
        let src = SourceFile::new("f.ron", "ab\ncdé\nxyz");
        assert_eq!(src.line_col(0), (1, 1));
        assert_eq!(src.line_col(3), (2, 1));
        assert_eq!(src.line_col(5), (2, 3));
        assert_eq!(src.offset(2, 3), 5);
        assert_eq!(src.offset(3, 2), 9);
        assert_eq!(src.offset(9, 9), src.text.len());
        assert_eq!(src.line_text(2), "cdé");
    }

    #[test]
    fn spans_are_clamped_to_the_file() {
        let src = SourceFile::new("f.ron", "abc");
        let d = Diagnostic::error("P0000", &src, 10..20, "x");
        assert_eq!(d.span, 3..3);
        assert_eq!(d.to_string(), "f.ron:1:4: error[P0000]: x");
    }
}
