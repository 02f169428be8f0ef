//! What every page shares: its frame (title, navigation, sign-in state, the anti-forgery value), its error pages,
//! and how numbers, times and bytes are written for people.
//!
//! Pages are askama templates (`templates/`), compiled into the binary and escaped for HTML by default: a value from
//! the record (a step's error, an instrument's reply) can never become markup.

use askama::Template;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{Html, IntoResponse, Response};

use super::filters::BadQuery;
use super::record::RecordProblem;
use crate::inspect::report::human_seconds;

/// The frame around a page.
#[derive(Debug, Clone, Default)]
pub struct Chrome {
    /// The page's title.
    pub title: String,
    /// The record's file name, shown in the header.
    pub record: String,
    /// The fleet's hub the server shows (its URL, password hidden), when it shows one instead of a `lab.db`.
    pub fleet: Option<String>,
    /// Whether the browser signed in with the token (and so sees the actions).
    pub signed_in: bool,
    /// The anti-forgery value for the page's forms (empty unless signed in).
    pub csrf: String,
    /// The campaign the page belongs to, for the navigation.
    pub campaign: Option<i64>,
    /// The live stream the page's script follows, if any.
    pub live: Option<String>,
    /// A message about what the last action did.
    pub flash: Option<String>,
}

/// A number a template may hold as a value, a reference or an option: what [`Show`]'s methods take, so that
/// templates need no dereferencing.
pub trait Quantity {
    /// The number, if there is one.
    fn value(self) -> Option<f64>;
}

impl Quantity for f64 {
    fn value(self) -> Option<f64> {
        Some(self)
    }
}

impl Quantity for Option<f64> {
    fn value(self) -> Option<f64> {
        self
    }
}

impl<T: Quantity + Copy> Quantity for &T {
    fn value(self) -> Option<f64> {
        (*self).value()
    }
}

/// Formatting for templates: every page template implements it, and calls `self.secs(x)` and the like.
pub trait Show {
    /// Lab seconds for people: `42 s`, `12.5 min`, `6.9 h`; a dash for none.
    fn secs(&self, s: impl Quantity) -> String {
        s.value().map_or_else(|| "\u{2013}".to_owned(), human_seconds)
    }

    /// The time from `a` to `b`, if both are known.
    fn between(&self, a: impl Quantity, b: impl Quantity) -> String {
        self.secs(a.value().zip(b.value()).map(|(a, b)| b - a))
    }

    /// The time from `since` to `now`, if `since` is known.
    fn ago(&self, since: impl Quantity, now: impl Quantity) -> String {
        self.secs(since.value().zip(now.value()).map(|(s, now)| (now - s).max(0.0)))
    }

    /// A number with four significant digits; a dash for none.
    fn num(&self, v: impl Quantity) -> String {
        match v.value() {
            None => "\u{2013}".to_owned(),
            Some(v) if !v.is_finite() => v.to_string(),
            Some(v) if v.abs() < f64::MIN_POSITIVE => "0".to_owned(),
            Some(v) if v.abs() >= 1e5 || v.abs() < 1e-3 => format!("{v:.3e}"),
            Some(v) => {
                let digits = (3 - v.abs().log10().floor() as i32).clamp(0, 6) as usize;
                let s = format!("{v:.digits$}");
                if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_owned() } else { s }
            }
        }
    }

    /// A wall-clock duration in milliseconds, from lab seconds and the campaign's time scale.
    fn wall_ms(&self, lab: impl Quantity, scale: impl Quantity) -> String {
        let scale = scale.value().unwrap_or(1.0).max(f64::MIN_POSITIVE);
        lab.value().map_or_else(|| "\u{2013}".to_owned(), |s| format!("{:.2} ms", s * 1000.0 / scale))
    }

    /// A hash or key, shortened to its first 16 characters.
    fn short(&self, hash: &str) -> String {
        hash.chars().take(16).collect()
    }
}

/// Renders a template into an HTML response; a template that fails to render is a server error page.
pub fn page(t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => PageError::Internal(format!("the page could not be drawn: {e}")).into_response(),
    }
}

/// A page that could not be shown, with the status code that says why.
#[derive(Debug, Clone)]
pub enum PageError {
    /// The request asked for something malformed (a query value, an id that is not a number).
    BadRequest(String),
    /// The request needs the token, or came from another site.
    Forbidden(String),
    /// There is no such campaign, experiment, step or exchange.
    NotFound(String),
    /// The request conflicts with the campaign's state (it has ended, another one runs).
    Conflict(String),
    /// The record cannot be read.
    Record(RecordProblem),
    /// Something failed in the server.
    Internal(String),
}

impl From<RecordProblem> for PageError {
    fn from(p: RecordProblem) -> Self {
        PageError::Record(p)
    }
}

impl From<BadQuery> for PageError {
    fn from(b: BadQuery) -> Self {
        PageError::BadRequest(b.to_string())
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    chrome: Chrome,
    status: u16,
    heading: &'static str,
    message: String,
    sign_in: bool,
}

impl Show for ErrorPage {}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, heading, message) = match self {
            PageError::BadRequest(m) => (StatusCode::BAD_REQUEST, "That request cannot be answered", m),
            PageError::Forbidden(m) => (StatusCode::FORBIDDEN, "Refused: nothing was changed", m),
            PageError::NotFound(m) => (StatusCode::NOT_FOUND, "Not in the record", m),
            PageError::Conflict(m) => (StatusCode::CONFLICT, "Not now: nothing was changed", m),
            PageError::Record(p) => (StatusCode::SERVICE_UNAVAILABLE, "The record cannot be read", p.to_string()),
            PageError::Internal(m) => (StatusCode::INTERNAL_SERVER_ERROR, "The server failed", m),
        };
        let t = ErrorPage {
            chrome: Chrome { title: heading.to_owned(), ..Chrome::default() },
            status: status.as_u16(),
            heading,
            sign_in: status == StatusCode::FORBIDDEN,
            message,
        };
        // The error page is drawn from a fixed template and escaped text; if even it fails, plain text says why.
        match t.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(_) => (status, [(CONTENT_TYPE, "text/plain; charset=utf-8")], t.message).into_response(),
        }
    }
}

/// Parses an id from a path segment, naming the kind of thing it should identify if it is not a number.
pub fn id(what: &str, segment: &str) -> Result<i64, PageError> {
    segment.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
        let shown: String = segment.chars().take(40).collect();
        PageError::BadRequest(format!("`{shown}` is not {what} id: {what} ids are whole numbers, like 3"))
    })
}

/// Bytes as lines of a hex dump: offset, sixteen bytes in hex, and the printable ones as text.
pub fn hex_dump(bytes: &[u8]) -> Vec<String> {
    bytes
        .chunks(16)
        .enumerate()
        .map(|(i, chunk)| {
            let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
            let text: String =
                chunk.iter().map(|&b| if b.is_ascii_graphic() || b == b' ' { b as char } else { '.' }).collect();
            format!("{:04x}  {:<48}  {text}", i * 16, hex.join(" "))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct S;
    impl Show for S {}

    #[test]
    fn numbers_and_bytes_read_well() {
        assert_eq!(S.num(0.123456), "0.1235");
        assert_eq!(S.num(12.5), "12.5");
        let by_reference = &1234.5678;
        assert_eq!(S.num(by_reference), "1235");
        assert_eq!(S.num(Some(2.0)), "2");
        assert_eq!(S.num(1.5e-6), "1.500e-6");
        assert_eq!(S.num(None), "\u{2013}");
        assert_eq!(S.secs(90.0 * 60.0), "1.5 h");
        assert_eq!(S.ago(Some(10.0), 5.0), "0 s");
        assert_eq!(hex_dump(b"/1&\r"), vec!["0000  2f 31 26 0d                                       /1&."]);
        assert_eq!(hex_dump(&[0u8; 17]).len(), 2);
        assert!(id("a campaign", "../../etc/passwd").is_err());
        assert!(id("a campaign", "-3").is_err());
        assert_eq!(id("a campaign", "42").ok(), Some(42));
    }
}
