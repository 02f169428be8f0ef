//! Where things are in a RON file.
//!
//! serde and `ron` give positions only for syntax errors. A protocol can be well-formed RON and still wrong
//! (a step that depends on a step that does not exist, a volume out of range), and the technician must then be
//! pointed at the exact field. [`RonTree`] is a small, lenient parser that records the byte span of every value
//! in a RON document, so validators can ask "where is `steps[2].after[0]`?" and point there.
//!
//! It runs only on text that `ron` has already accepted, so it never needs to report errors of its own: on anything
//! it does not understand it stops and the lookups fall back to the nearest enclosing span.

use std::ops::Range;

/// One step of a path into a RON document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seg<'a> {
    /// A named field of a struct: `steps` in `Protocol(steps: [...])`.
    Field(&'a str),
    /// An element of a list or tuple, or the n-th argument of a tuple-like variant `Kind(Hotplate)`.
    Index(usize),
    /// The value under a string key of a map: `"volume"` in `{"volume": (...)}`.
    Key(&'a str),
    /// The key itself (not the value) of a map entry.
    KeyOf(&'a str),
}

/// A parsed RON value with the byte span of every part.
#[derive(Debug, Clone, Default)]
pub struct Node {
    /// The span of the whole value, including a leading variant or struct name.
    pub span: Range<usize>,
    /// The identifier in front of a struct, tuple or unit value (`Kind` in `Kind(Hotplate)`), if any.
    pub name: Option<String>,
    /// Named fields, with the span of each field name.
    pub fields: Vec<(String, Range<usize>, Node)>,
    /// Positional elements of a list, tuple or tuple-like variant.
    pub items: Vec<Node>,
    /// Entries of a map, as (key, value).
    pub entries: Vec<(Node, Node)>,
    /// For a string literal, its contents without quotes (escapes left as written).
    pub string: Option<String>,
}

impl Node {
    /// The value at `path`, if it exists.
    pub fn get(&self, path: &[Seg<'_>]) -> Option<&Node> {
        let mut node = self;
        for seg in path {
            node = node.child(*seg)?;
        }
        Some(node)
    }

    fn child(&self, seg: Seg<'_>) -> Option<&Node> {
        match seg {
            Seg::Field(f) => self.fields.iter().find(|(n, _, _)| n == f).map(|(_, _, v)| v),
            Seg::Index(i) => self.items.get(i),
            Seg::Key(k) => self.entries.iter().find(|(key, _)| key.string.as_deref() == Some(k)).map(|(_, v)| v),
            Seg::KeyOf(k) => self.entries.iter().find(|(key, _)| key.string.as_deref() == Some(k)).map(|(key, _)| key),
        }
    }

    /// The span of the value at `path`, or of its deepest existing ancestor.
    pub fn span_of(&self, path: &[Seg<'_>]) -> Range<usize> {
        let mut node = self;
        for seg in path {
            match node.child(*seg) {
                Some(n) => node = n,
                None => break,
            }
        }
        node.span.clone()
    }

    /// The span of a field's name (`after` in `after: [...]`), falling back to the struct's span.
    pub fn field_name_span(&self, path: &[Seg<'_>], field: &str) -> Range<usize> {
        match self.get(path) {
            Some(n) => n.fields.iter().find(|(f, _, _)| f == field).map_or(n.span.clone(), |(_, s, _)| s.clone()),
            None => self.span_of(path),
        }
    }
}

/// Parses `text` into a [`Node`] tree. Never fails: unparseable tails are simply not indexed.
pub fn index(text: &str) -> Node {
    let mut p = Parser { s: text.as_bytes(), i: 0 };
    p.skip_ws();
    // Inner attributes such as `#![enable(implicit_some)]` come before the value.
    while p.peek() == Some(b'#') {
        while let Some(c) = p.peek() {
            p.i += 1;
            if c == b']' {
                break;
            }
        }
        p.skip_ws();
    }
    p.value().unwrap_or_default()
}

/// The length in bytes of the whitespace character `s` starts with, or 0. Whitespace is what `ron` skips (Unicode's
/// `Pattern_White_Space`), not only ASCII's: a vertical tab or a line separator that `ron` accepts between tokens
/// must not stop this parser, or the sections after it could not be found.
fn whitespace_len(s: &[u8]) -> usize {
    const WIDE: [&[u8]; 5] = [
        "\u{85}".as_bytes(),
        "\u{200E}".as_bytes(),
        "\u{200F}".as_bytes(),
        "\u{2028}".as_bytes(),
        "\u{2029}".as_bytes(),
    ];
    match s.first() {
        Some(b' ' | b'\t' | b'\n' | b'\r' | 0x0B | 0x0C) => 1,
        Some(_) => WIDE.iter().find(|w| s.starts_with(w)).map_or(0, |w| w.len()),
        None => 0,
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        loop {
            match self.peek() {
                Some(_) if whitespace_len(&self.s[self.i..]) > 0 => self.i += whitespace_len(&self.s[self.i..]),
                Some(b'/') if self.s.get(self.i + 1) == Some(&b'/') => {
                    while let Some(c) = self.peek() {
                        if c == b'\n' {
                            break;
                        }
                        self.i += 1;
                    }
                }
                Some(b'/') if self.s.get(self.i + 1) == Some(&b'*') => {
                    // RON block comments nest.
                    let mut depth = 0usize;
                    while self.i < self.s.len() {
                        if self.s[self.i..].starts_with(b"/*") {
                            depth += 1;
                            self.i += 2;
                        } else if self.s[self.i..].starts_with(b"*/") {
                            depth -= 1;
                            self.i += 2;
                            if depth == 0 {
                                break;
                            }
                        } else {
                            self.i += 1;
                        }
                    }
                }
                _ => return,
            }
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn ident(&mut self) -> Option<(String, Range<usize>)> {
        self.skip_ws();
        let start = self.i;
        // A raw identifier (`r#...`) may start with a digit and hold `.`, `+` and `-`, as `ron` reads it.
        let raw = self.s[self.i..].starts_with(b"r#");
        if raw {
            self.i += 2;
        }
        let body = self.i;
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == b'_' || (raw && matches!(c, b'.' | b'+' | b'-')) {
                self.i += 1;
            } else {
                break;
            }
        }
        if self.i == body || (!raw && self.s[body].is_ascii_digit()) {
            self.i = start;
            return None;
        }
        Some((String::from_utf8_lossy(&self.s[body..self.i]).into_owned(), start..self.i))
    }

    fn value(&mut self) -> Option<Node> {
        self.skip_ws();
        let start = self.i;
        let c = self.peek()?;
        let mut node = Node::default();
        match c {
            b'(' => {
                self.i += 1;
                self.body(&mut node, b')')?;
            }
            b'[' => {
                self.i += 1;
                loop {
                    if self.eat(b']') {
                        break;
                    }
                    node.items.push(self.value()?);
                    if !self.eat(b',') {
                        if self.eat(b']') {
                            break;
                        }
                        return None;
                    }
                }
            }
            b'{' => {
                self.i += 1;
                loop {
                    if self.eat(b'}') {
                        break;
                    }
                    let k = self.value()?;
                    if !self.eat(b':') {
                        return None;
                    }
                    let v = self.value()?;
                    node.entries.push((k, v));
                    if !self.eat(b',') {
                        if self.eat(b'}') {
                            break;
                        }
                        return None;
                    }
                }
            }
            b'"' => node.string = Some(self.string()?),
            b'r' if self.s[self.i..].starts_with(b"r\"")
                || self.s[self.i..].starts_with(b"r#\"")
                || self.s[self.i..].starts_with(b"r##") =>
            {
                node.string = Some(self.raw_string()?);
            }
            b'b' if self.s.get(self.i + 1) == Some(&b'"') => {
                self.i += 1;
                node.string = Some(self.string()?);
            }
            b'\'' => {
                self.i += 1;
                while let Some(c) = self.peek() {
                    self.i += 1;
                    if c == b'\\' {
                        self.i += 1;
                    } else if c == b'\'' {
                        break;
                    }
                }
            }
            c if c.is_ascii_digit() || c == b'-' || c == b'+' || c == b'.' => {
                while let Some(c) = self.peek() {
                    if c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'+' | b'_') {
                        self.i += 1;
                    } else {
                        break;
                    }
                }
            }
            _ => {
                let (name, _) = self.ident()?;
                node.name = Some(name);
                let save = self.i;
                self.skip_ws();
                if self.peek() == Some(b'(') {
                    self.i += 1;
                    self.body(&mut node, b')')?;
                } else {
                    self.i = save;
                }
            }
        }
        node.span = start..self.i;
        Some(node)
    }

    /// Parses the inside of `( ... )`: either `field: value, ...` or `value, ...`.
    fn body(&mut self, node: &mut Node, close: u8) -> Option<()> {
        loop {
            if self.eat(close) {
                return Some(());
            }
            let save = self.i;
            let field = self.ident().and_then(|(name, span)| if self.eat(b':') { Some((name, span)) } else { None });
            match field {
                Some((name, span)) => {
                    let v = self.value()?;
                    node.fields.push((name, span, v));
                }
                None => {
                    self.i = save;
                    node.items.push(self.value()?);
                }
            }
            if !self.eat(b',') {
                if self.eat(close) {
                    return Some(());
                }
                return None;
            }
        }
    }

    fn string(&mut self) -> Option<String> {
        // At the opening quote.
        self.i += 1;
        let start = self.i;
        while let Some(c) = self.peek() {
            match c {
                b'\\' => self.i += 2,
                b'"' => {
                    let s = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
                    self.i += 1;
                    return Some(s);
                }
                _ => self.i += 1,
            }
        }
        None
    }

    fn raw_string(&mut self) -> Option<String> {
        self.i += 1; // r
        let mut hashes = 0;
        while self.peek() == Some(b'#') {
            hashes += 1;
            self.i += 1;
        }
        if self.peek() != Some(b'"') {
            return None;
        }
        self.i += 1;
        let start = self.i;
        let mut close = vec![b'"'];
        close.extend(std::iter::repeat_n(b'#', hashes));
        while self.i < self.s.len() {
            if self.s[self.i..].starts_with(&close) {
                let s = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
                self.i += close.len();
                return Some(s);
            }
            self.i += 1;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r##"#![enable(implicit_some)]
// A comment with (parens) and "quotes".
Protocol(
    name: "demo", /* block /* nested */ comment */
    parameters: {
        "volume": (unit: "uL", min: 1.5e1, max: -3),
    },
    steps: [
        (id: "a", on: Kind(Hotplate), after: []),
        (id: "b", after: ["a", r#"c"#]),
    ],
)
"##;

    fn text<'a>(root: &Node, path: &[Seg<'_>]) -> &'a str {
        let span = root.span_of(path);
        // The test document is 'static.
        &DOC[span]
    }

    #[test]
    fn finds_nested_values() {
        let root = index(DOC);
        assert_eq!(root.name.as_deref(), Some("Protocol"));
        assert_eq!(text(&root, &[Seg::Field("name")]), "\"demo\"");
        assert_eq!(text(&root, &[Seg::Field("parameters"), Seg::Key("volume"), Seg::Field("min")]), "1.5e1");
        assert_eq!(text(&root, &[Seg::Field("parameters"), Seg::KeyOf("volume")]), "\"volume\"");
        assert_eq!(text(&root, &[Seg::Field("steps"), Seg::Index(0), Seg::Field("on")]), "Kind(Hotplate)");
        assert_eq!(text(&root, &[Seg::Field("steps"), Seg::Index(0), Seg::Field("on"), Seg::Index(0)]), "Hotplate");
        assert_eq!(text(&root, &[Seg::Field("steps"), Seg::Index(1), Seg::Field("after"), Seg::Index(1)]), "r#\"c\"#");
        let after = root.get(&[Seg::Field("steps"), Seg::Index(1), Seg::Field("after"), Seg::Index(1)]).unwrap();
        assert_eq!(after.string.as_deref(), Some("c"));
    }

    #[test]
    fn missing_paths_fall_back_to_the_nearest_ancestor() {
        let root = index(DOC);
        let span = root.span_of(&[Seg::Field("steps"), Seg::Index(1), Seg::Field("nope")]);
        assert!(DOC[span].starts_with("(id: \"b\""));
        let span = root.field_name_span(&[Seg::Field("steps"), Seg::Index(1)], "after");
        assert_eq!(&DOC[span], "after");
    }
}
