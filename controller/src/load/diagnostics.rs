//! Rendering diagnostics for people: the file, the line with a caret under the span, the problem and the fix.
//!
//! Validators produce plain [`protocols::Diagnostic`]s; this module adapts them to miette, which draws them.

use std::fmt;

use miette::{LabeledSpan, NamedSource, SourceCode};
use protocols::{Diagnostic, Severity};

/// A diagnostic with its source, ready for miette.
#[derive(Debug)]
pub struct Rendered {
    diagnostic: Diagnostic,
    source: NamedSource<String>,
}

impl Rendered {
    /// Wraps a diagnostic.
    pub fn new(diagnostic: Diagnostic) -> Self {
        let source =
            NamedSource::new(diagnostic.source.name.clone(), diagnostic.source.text.clone()).with_language("ron");
        Rendered { diagnostic, source }
    }
}

impl fmt::Display for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.diagnostic.message)
    }
}

impl std::error::Error for Rendered {}

impl miette::Diagnostic for Rendered {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.diagnostic.code))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.diagnostic.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.diagnostic.help.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        Some(&self.source)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let span = &self.diagnostic.span;
        let (line, col) = self.diagnostic.line_col();
        let label = self.diagnostic.label.clone().unwrap_or_else(|| format!("line {line}, column {col}"));
        Some(Box::new(std::iter::once(LabeledSpan::new(Some(label), span.start, span.end - span.start))))
    }
}

/// Renders diagnostics with miette's graphical handler (colours only when `color` is true).
pub fn render(diagnostics: &protocols::Diagnostics, color: bool) -> String {
    let theme = if color { miette::GraphicalTheme::unicode() } else { miette::GraphicalTheme::unicode_nocolor() };
    let handler = miette::GraphicalReportHandler::new_themed(theme).with_width(110);
    let mut out = String::new();
    for d in diagnostics.iter() {
        let r = Rendered::new(d.clone());
        let _ = handler.render_report(&mut out, &r);
        out.push('\n');
    }
    out
}
