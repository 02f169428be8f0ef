//! Templates and patterns: how a declared instrument's commands are written and its replies read.
//!
//! Both are text with placeholders, in the manner of StreamDevice's formats: `RAT{rate:sig4}UM` is a command with
//! one argument, `{address:d2}{state:c1}I{infused:f}W{withdrawn:f}UL` a reply with four captures. `{{` and `}}` are
//! literal braces. A placeholder is `{name}` or `{name:spec}`; `_` names a field that is read and dropped. The
//! specs:
//!
//! | spec | written (a template) | read (a pattern) |
//! |---|---|---|
//! | none | a number as short as it goes (`12.5`, `90`), text as it is | text up to the next literal |
//! | `d`, `dN` | an integer; zero-padded to N digits | an integer (N digits exactly) |
//! | `f`, `.N` | a number; with N decimals | a decimal number: spaces, a sign, spaces, digits, a fraction, an exponent |
//! | `W.N`, `+W.N` | right-aligned in W characters with N decimals; the sign first, then the number | as `f` |
//! | `sigN` | at most N significant digits, trailing zeros dropped | as `f` |
//! | `XN`, `xN` | N hexadecimal digits (upper, lower case), two's complement below zero | N hex digits, signed |
//! | `cN` | exactly N characters | exactly N characters |
//! | `lN` | left-aligned in N characters | N characters, trailing spaces dropped |
//! | `s` | text | spaces, then a word (up to a space or the next literal) |
//! | `*` | text | text up to the next literal (or to the end) |
//!
//! Literal characters match themselves exactly; numeric and word captures skip the spaces before them, and a
//! reply may end with spaces after the pattern (balances pad their fields). A number is stored as written on the
//! wire; the command's value table scales it ([`crate::declared`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A value a placeholder stands for.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A number.
    Number(f64),
    /// Text.
    Text(String),
}

impl Value {
    /// The value as a number, if it is one or is text that reads as one.
    pub fn number(&self) -> Option<f64> {
        match self {
            Value::Number(v) => Some(*v),
            Value::Text(t) => t.trim().parse().ok(),
        }
    }

    /// The value as text.
    pub fn text(&self) -> String {
        match self {
            Value::Number(v) => shortest(*v),
            Value::Text(t) => t.clone(),
        }
    }
}

/// How a placeholder is written and read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spec {
    /// No spec: text, or a number written as short as it goes.
    Plain,
    /// An integer, zero-padded to this many digits (0: not padded).
    Int(u8),
    /// A decimal number; with this many decimals if given.
    Float(Option<u8>),
    /// Right-aligned in `width` characters with `decimals`, the sign first if `signed`.
    Aligned {
        /// The width of the number (after the sign).
        width: u8,
        /// Decimals.
        decimals: u8,
        /// Whether the sign comes first, outside the width.
        signed: bool,
    },
    /// At most this many significant digits.
    Significant(u8),
    /// This many hexadecimal digits, upper case if true.
    Hex(u8, bool),
    /// Exactly this many characters.
    Chars(u8),
    /// Left-aligned in this many characters.
    Left(u8),
    /// A word.
    Word,
    /// Text up to the next literal.
    Rest,
}

impl Spec {
    /// Reads a spec (the part after the colon).
    pub fn parse(text: &str) -> Result<Spec, String> {
        let digits = |t: &str| -> Result<u8, String> {
            t.parse::<u8>().ok().filter(|n| (1..=64).contains(n)).ok_or_else(|| format!("`{t}` is not a width 1 to 64"))
        };
        Ok(match text {
            "" => Spec::Plain,
            "d" => Spec::Int(0),
            "f" => Spec::Float(None),
            "s" => Spec::Word,
            "*" => Spec::Rest,
            t if t.starts_with("sig") => Spec::Significant(digits(&t[3..])?.min(15)),
            t if t.starts_with('.') => Spec::Float(Some(digits(&t[1..])?.min(15))),
            t if t.starts_with('d') => Spec::Int(digits(&t[1..])?),
            t if t.starts_with('X') || t.starts_with('x') => {
                let n = digits(&t[1..])?;
                if n > 8 {
                    return Err(format!("`{t}`: at most 8 hex digits"));
                }
                Spec::Hex(n, t.starts_with('X'))
            }
            t if t.starts_with('c') => Spec::Chars(digits(&t[1..])?),
            t if t.starts_with('l') => Spec::Left(digits(&t[1..])?),
            t => {
                let (signed, rest) = match t.strip_prefix('+') {
                    Some(r) => (true, r),
                    None => (false, t),
                };
                let (w, d) = rest
                    .split_once('.')
                    .ok_or_else(|| format!("unknown spec `{t}`: see the table of specs in devices/README.md"))?;
                Spec::Aligned {
                    width: digits(w)?,
                    decimals: digits(d).or_else(|_| d.parse::<u8>().map_err(|e| e.to_string()))?.min(15),
                    signed,
                }
            }
        })
    }

    /// A value of this spec that says nothing: zero, or blank text of its width (what a dropped field `{_}` is
    /// written as, and what a simulator answers when nothing gives a value).
    pub fn blank(self) -> Value {
        match self {
            s if s.numeric() => Value::Number(0.0),
            Spec::Chars(n) => Value::Text("x".repeat(usize::from(n))),
            Spec::Word => Value::Text("x".into()),
            _ => Value::Text(String::new()),
        }
    }

    /// Whether the placeholder holds a number.
    pub fn numeric(self) -> bool {
        matches!(self, Spec::Int(_) | Spec::Float(_) | Spec::Aligned { .. } | Spec::Significant(_) | Spec::Hex(..))
    }

    /// Writes `value` (a wire value: already scaled) as this spec says; an error says why it cannot be.
    pub fn render(self, value: &Value) -> Result<String, String> {
        let number =
            || value.number().filter(|v| v.is_finite()).ok_or_else(|| format!("`{}` is not a number", value.text()));
        Ok(match self {
            Spec::Plain => value.text(),
            Spec::Word | Spec::Rest => value.text(),
            Spec::Int(width) => {
                let v = number()?.round();
                if v.abs() > 1e15 {
                    return Err(format!("{v} is too large"));
                }
                let v = v as i64;
                if width == 0 { v.to_string() } else { format!("{v:0w$}", w = usize::from(width)) }
            }
            Spec::Float(None) => shortest(number()?),
            Spec::Float(Some(d)) => format!("{:.*}", usize::from(d), number()?),
            Spec::Aligned { width, decimals, signed } => {
                let v = number()?;
                let w = usize::from(width);
                let d = usize::from(decimals);
                if signed {
                    format!("{}{:>w$.d$}", if v < 0.0 { '-' } else { '+' }, v.abs())
                } else {
                    format!("{v:>w$.d$}")
                }
            }
            Spec::Significant(n) => significant(number()?, usize::from(n)),
            Spec::Hex(n, upper) => {
                let v = number()?.round();
                let bits = 4 * u32::from(n);
                let (lo, hi) = (-(2f64.powi(bits as i32 - 1)), 2f64.powi(bits as i32) - 1.0);
                if v < lo || v > hi {
                    return Err(format!("{v} does not fit in {n} hex digits"));
                }
                let word = (v as i64 as u64) & ((1u64 << bits) - 1);
                let s = format!("{word:0w$x}", w = usize::from(n));
                if upper { s.to_uppercase() } else { s }
            }
            Spec::Chars(n) => {
                let t = value.text();
                if t.chars().count() != usize::from(n) {
                    return Err(format!("`{t}` is not {n} characters"));
                }
                t
            }
            Spec::Left(n) => {
                let t = value.text();
                if t.chars().count() > usize::from(n) {
                    return Err(format!("`{t}` is longer than {n} characters"));
                }
                format!("{t:<w$}", w = usize::from(n))
            }
        })
    }
}

/// A number written as short as it goes: `90`, `12.5`, `0.001`.
pub fn shortest(v: f64) -> String {
    let s = format!("{v}");
    if s.contains('e') { format!("{v:.6}").trim_end_matches('0').trim_end_matches('.').to_owned() } else { s }
}

/// `v` with at most `n` significant digits, trailing zeros and a trailing point dropped.
fn significant(v: f64, n: usize) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let magnitude = v.abs().log10().floor() as i32;
    let decimals = (n as i32 - 1 - magnitude).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_owned() } else { s }
}

/// One piece of a template or pattern.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    /// Literal text.
    Literal(String),
    /// A placeholder: its name (`_` for a dropped field) and spec.
    Field(String, Spec),
}

/// A parsed template or pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    /// The text as written.
    pub text: String,
    /// Its pieces.
    pub pieces: Vec<Piece>,
}

/// The values of a reply's captures, by name.
pub type Captures = BTreeMap<String, Value>;

impl Template {
    /// Parses `text`; an error says what is wrong and where (a character offset).
    pub fn parse(text: &str) -> Result<Template, (usize, String)> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.peek().is_some_and(|(_, n)| *n == '{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().is_some_and(|(_, n)| *n == '}') => {
                    chars.next();
                    literal.push('}');
                }
                '}' => return Err((i, "a `}` without its `{` (write `}}` for a brace)".into())),
                '{' => {
                    let mut inner = String::new();
                    loop {
                        match chars.next() {
                            Some((_, '}')) => break,
                            Some((_, c)) => inner.push(c),
                            None => return Err((i, "a `{` without its `}`".into())),
                        }
                    }
                    let (name, spec) = inner.split_once(':').unwrap_or((&inner, ""));
                    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                        return Err((i, format!("`{{{inner}}}`: a placeholder is `{{name}}` or `{{name:spec}}`")));
                    }
                    let spec = Spec::parse(spec).map_err(|e| (i, e))?;
                    if !literal.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                    }
                    // Two captures read one after the other need a literal between them unless the first has a
                    // fixed width: otherwise where one ends is anyone's guess.
                    if let Some(Piece::Field(prev, Spec::Rest | Spec::Plain)) = pieces.last() {
                        return Err((
                            i,
                            format!("`{prev}` reads text up to the next literal, but `{name}` follows it directly"),
                        ));
                    }
                    pieces.push(Piece::Field(name.to_owned(), spec));
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(Template { text: text.to_owned(), pieces })
    }

    /// The placeholders' names, in order, without `_`.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Field(n, _) if n != "_" => Some(n.as_str()),
            _ => None,
        })
    }

    /// The spec of placeholder `name`, if it has one.
    pub fn spec_of(&self, name: &str) -> Option<Spec> {
        self.pieces.iter().find_map(|p| match p {
            Piece::Field(n, s) if n == name => Some(*s),
            _ => None,
        })
    }

    /// Writes the template, each placeholder from `lookup` (a wire value); an error names the placeholder.
    pub fn render(&self, lookup: &dyn Fn(&str) -> Option<Value>) -> Result<String, String> {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Literal(l) => out.push_str(l),
                Piece::Field(name, spec) if name == "_" => {
                    out.push_str(&spec.render(&spec.blank()).unwrap_or_default())
                }
                Piece::Field(name, spec) => {
                    let value = lookup(name).ok_or_else(|| format!("no value for `{{{name}}}`"))?;
                    let text = spec.render(&value).map_err(|e| format!("`{{{name}}}`: {e}"))?;
                    let _ = write!(out, "{text}");
                }
            }
        }
        Ok(out)
    }

    /// Matches `text` against the pattern; the captures (wire values), or `None` if it does not match.
    pub fn matches(&self, text: &str) -> Option<Captures> {
        let mut captures = Captures::new();
        let mut rest = text;
        for (i, p) in self.pieces.iter().enumerate() {
            match p {
                Piece::Literal(l) => rest = rest.strip_prefix(l.as_str())?,
                Piece::Field(name, spec) => {
                    let next = self.pieces.get(i + 1);
                    let (value, after) = read(*spec, rest, next)?;
                    if name != "_" {
                        if let Some(previous) = captures.get(name)
                            && *previous != value
                        {
                            return None;
                        }
                        captures.insert(name.clone(), value);
                    }
                    rest = after;
                }
            }
        }
        rest.trim_end_matches(' ').is_empty().then_some(captures)
    }
}

/// Reads one field of `spec` from the start of `text`: its value and the text after it.
fn read<'a>(spec: Spec, text: &'a str, next: Option<&Piece>) -> Option<(Value, &'a str)> {
    let skip = |t: &'a str| t.trim_start_matches(' ');
    match spec {
        Spec::Plain | Spec::Rest => {
            let end = match next {
                Some(Piece::Literal(l)) => text.find(l.as_str())?,
                _ => text.trim_end_matches(' ').len(),
            };
            Some((Value::Text(text[..end].to_owned()), &text[end..]))
        }
        Spec::Word => {
            // A word ends at a space, or where the literal after it begins (`{unit:s}"` reads `g` of `g"`).
            let t = skip(text);
            let stop = match next {
                Some(Piece::Literal(l)) => l.chars().next(),
                _ => None,
            };
            let end = t.find(|c: char| c == ' ' || Some(c) == stop).unwrap_or(t.len());
            (end > 0).then(|| (Value::Text(t[..end].to_owned()), &t[end..]))
        }
        Spec::Chars(n) | Spec::Left(n) => {
            let end = text.char_indices().nth(usize::from(n)).map_or(text.len(), |(i, _)| i);
            if text[..end].chars().count() != usize::from(n) {
                return None;
            }
            let v = if matches!(spec, Spec::Left(_)) { text[..end].trim_end() } else { &text[..end] };
            Some((Value::Text(v.to_owned()), &text[end..]))
        }
        Spec::Hex(n, _) => {
            let end = text.char_indices().nth(usize::from(n)).map_or(text.len(), |(i, _)| i);
            let digits = &text[..end];
            if digits.len() != usize::from(n) || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
                return None;
            }
            let raw = i64::from_str_radix(digits, 16).ok()?;
            let bits = 4 * u32::from(n);
            let v = if raw >= 1 << (bits - 1) { raw - (1 << bits) } else { raw };
            Some((Value::Number(v as f64), &text[end..]))
        }
        Spec::Int(width) => {
            let t = skip(text);
            let sign = usize::from(t.starts_with(['-', '+']));
            let digits = t[sign..].chars().take_while(char::is_ascii_digit).count();
            if digits == 0 || (width > 0 && digits != usize::from(width)) {
                return None;
            }
            let end = sign + digits;
            let v: i64 = t[..end].trim_start_matches('+').parse().ok()?;
            Some((Value::Number(v as f64), &t[end..]))
        }
        Spec::Float(_) | Spec::Aligned { .. } | Spec::Significant(_) => {
            // Spaces, a sign, spaces (a balance writes `+   12.34`), digits, a fraction, an exponent.
            let t = skip(text);
            let (negative, t) = match t.chars().next() {
                Some('-') => (true, skip(&t[1..])),
                Some('+') => (false, skip(&t[1..])),
                _ => (false, t),
            };
            let bytes = t.as_bytes();
            let mut end = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
            let int_digits = end;
            if bytes.get(end) == Some(&b'.') {
                let frac = bytes[end + 1..].iter().take_while(|b| b.is_ascii_digit()).count();
                if int_digits == 0 && frac == 0 {
                    return None;
                }
                end += 1 + frac;
            } else if int_digits == 0 {
                return None;
            }
            if matches!(bytes.get(end), Some(b'e' | b'E')) {
                let sign = usize::from(matches!(bytes.get(end + 1), Some(b'+' | b'-')));
                let exp = bytes[(end + 1 + sign).min(bytes.len())..].iter().take_while(|b| b.is_ascii_digit()).count();
                if exp > 0 {
                    end += 1 + sign + exp;
                }
            }
            let v: f64 = t[..end].parse().ok()?;
            v.is_finite().then(|| (Value::Number(if negative { -v } else { v }), &t[end..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Template {
        Template::parse(s).unwrap()
    }

    fn num(v: f64) -> Option<Value> {
        Some(Value::Number(v))
    }

    #[test]
    fn templates_write_each_spec() {
        let look = |n: &str| match n {
            "rate" => num(1234.5678),
            "t" => num(-12.5),
            "a" => num(0.0),
            "w" => num(123.56),
            "u" => Some(Value::Text("g".into())),
            _ => None,
        };
        assert_eq!(t("RAT{rate:sig4}UM").render(&look).unwrap(), "RAT1235UM");
        assert_eq!(t("{{M00{t:X4}").render(&|_| num(-12.5 / 0.01)).unwrap(), "{M00FB1E");
        assert_eq!(t("{a:d2}S").render(&look).unwrap(), "00S");
        assert_eq!(t("{w:+9.4} {u:l3}").render(&look).unwrap(), "+ 123.5600 g  ");
        assert_eq!(t("{t:.1}|{t}|{t:6.2}").render(&look).unwrap(), "-12.5|-12.5|-12.50");
        assert!(t("{missing}").render(&look).is_err());
        assert!(t("{t:X1}").render(&look).is_err(), "-12 does not fit in one hex digit");
    }

    #[test]
    fn patterns_read_what_instruments_send() {
        // New Era NE-1000 (nesp-lib): `00S`, `00SI0.500W0.000UL`, `00SNE1000V3.928`.
        let dis = t("{address:d2}{state:c1}I{infused:f}W{withdrawn:f}UL");
        let c = dis.matches("00SI0.500W0.000UL").unwrap();
        assert_eq!(
            (c["address"].number(), c["state"].text(), c["infused"].number()),
            (Some(0.0), "S".into(), Some(0.5))
        );
        let ver = t("{address:d2}{state:c1}NE{model:d}V{version:*}");
        assert_eq!(ver.matches("00SNE1000V3.928").unwrap()["version"].text(), "3.928");
        assert_eq!(ver.matches("0SNE1000V3.928"), None, "two digits of address");
        // Huber PB: `{S01` and a 16-bit two's complement in hundredths.
        let pb = t("{{S01{temperature:X4}");
        assert_eq!(pb.matches("{S01FB1E").unwrap()["temperature"].number(), Some(-1250.0));
        // Sartorius SBI: sign, padded weight, padded unit; blank unit while unstable.
        let sbi = t("{weight:+9.4} {unit:l3}");
        let c = sbi.matches("+  12.3456 g  ").unwrap();
        assert_eq!((c["weight"].number(), c["unit"].text()), (Some(12.3456), "g".into()));
        assert_eq!(sbi.matches("-   0.0012    ").unwrap()["unit"].text(), "");
        assert_eq!(sbi.matches("-   0.0012    ").unwrap()["weight"].number(), Some(-0.0012));
        // Alicat: space-separated fields, the gas after a run of spaces.
        let poll = t("{unit:s} {pressure:f} {temperature:f} {vol:f} {mass:f} {sp:f} {gas:s}");
        let c = poll.matches("A +014.70 +025.00 +000.00 +000.00 +000.00     Air").unwrap();
        assert_eq!((c["pressure"].number(), c["gas"].text()), (Some(14.7), "Air".into()));
        assert_eq!(poll.matches("A +014.70 +025.00"), None);
        // A repeated capture must read the same both times.
        assert!(t("{a:d}-{a:d}").matches("3-3").is_some() && t("{a:d}-{a:d}").matches("3-4").is_none());
    }

    #[test]
    fn bad_templates_say_where() {
        assert_eq!(Template::parse("RAT{rate").unwrap_err().0, 3);
        assert!(Template::parse("x}").is_err());
        assert!(Template::parse("{a:q}").is_err());
        assert!(Template::parse("{a:X9}").is_err());
        assert!(Template::parse("{a}{b}").unwrap_err().1.contains("follows it directly"));
        assert!(Template::parse("{a:c2}{b}").is_ok());
    }
}
