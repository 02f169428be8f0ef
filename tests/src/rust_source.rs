//! Reading the workspace's own Rust source for the architecture tests: which modules a crate has, and which paths
//! each module's code names.
//!
//! This is a small lexer, not a parser: it blanks comments and literals (keeping every line where it was, so a
//! finding names its line), drops `#[cfg(test)]` modules, and collects paths such as `crate::a::{b, c::d}` with their
//! groups expanded. That is enough to check rules about what code refers to, and it needs no parsing crate.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One module of a crate: its path from the crate root and its file.
#[derive(Debug, Clone)]
pub struct Module {
    /// The path from the crate root (`["schedule", "systems", "ingest"]`; empty for the root).
    pub path: Vec<String>,
    /// The file, absolute.
    pub file: PathBuf,
}

impl Module {
    /// The module path as Rust writes it (`crate::schedule::systems`).
    pub fn name(&self) -> String {
        std::iter::once("crate").chain(self.path.iter().map(String::as_str)).collect::<Vec<_>>().join("::")
    }
}

/// Every module of the crate whose root file is `root` (a `lib.rs` or `main.rs`), found by following its `mod NAME;`
/// declarations the way rustc does (inline `mod NAME { ... }` blocks belong to their file).
pub fn crate_modules(root: &Path) -> Vec<Module> {
    let mut out = Vec::new();
    let mut stack = vec![(Vec::<String>::new(), root.to_path_buf())];
    while let Some((path, file)) = stack.pop() {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let code = blank_comments_and_literals(&text);
        // A file `a/b.rs` keeps its children in `a/b/`; `mod.rs`, `lib.rs` and `main.rs` keep them beside themselves.
        let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        let dir = if matches!(stem, "mod" | "lib" | "main") {
            file.parent().map(Path::to_path_buf).unwrap_or_default()
        } else {
            file.with_extension("")
        };
        for child in declared_modules(&code) {
            let flat = dir.join(format!("{child}.rs"));
            let nested = dir.join(&child).join("mod.rs");
            let child_file = if flat.exists() { flat } else { nested };
            if child_file.exists() {
                let mut p = path.clone();
                p.push(child);
                stack.push((p, child_file));
            }
        }
        out.push(Module { path, file });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// The names of `mod NAME;` declarations (not inline modules) in blanked code.
fn declared_modules(code: &str) -> Vec<String> {
    let words: Vec<&str> = code.split(|c: char| c.is_whitespace()).filter(|w| !w.is_empty()).collect();
    let mut out = Vec::new();
    for pair in words.windows(2) {
        if pair[0] == "mod"
            && let Some(name) = pair[1].strip_suffix(';')
            && !name.is_empty()
            && name.chars().all(|c| c.is_alphanumeric() || c == '_')
        {
            out.push(name.to_owned());
        }
    }
    out
}

/// `text` with every comment, string, byte string and character literal replaced by spaces (line breaks kept), so
/// that what remains is code and a byte offset still falls on the same line.
pub fn blank_comments_and_literals(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = b.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to.min(b.len())] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                let end = text[i..].find('\n').map_or(b.len(), |n| i + n);
                blank(&mut out, i, end);
                i = end;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let (mut depth, mut j) = (1, i + 2);
                while j < b.len() && depth > 0 {
                    if b[j] == b'/' && b.get(j + 1) == Some(&b'*') {
                        depth += 1;
                        j += 2;
                    } else if b[j] == b'*' && b.get(j + 1) == Some(&b'/') {
                        depth -= 1;
                        j += 2;
                    } else {
                        j += 1;
                    }
                }
                blank(&mut out, i, j);
                i = j;
            }
            b'r' | b'b' if is_raw_string_start(b, i) => {
                let start = i;
                let mut j = i + if b[i] == b'b' { 2 } else { 1 };
                let hashes = b[j..].iter().take_while(|&&c| c == b'#').count();
                j += hashes + 1;
                let closing: Vec<u8> = std::iter::once(b'"').chain(std::iter::repeat_n(b'#', hashes)).collect();
                let end = b[j..]
                    .windows(closing.len())
                    .position(|w| w == closing.as_slice())
                    .map_or(b.len(), |p| j + p + closing.len());
                blank(&mut out, start, end);
                i = end;
            }
            b'"' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                blank(&mut out, i, j + 1);
                i = j + 1;
            }
            b'\'' => {
                // A character literal ('a', '\n', '\u{..}') and not a lifetime ('a without a closing quote).
                let end = if b.get(i + 1) == Some(&b'\\') {
                    b[i + 2..].iter().position(|&c| c == b'\'').map(|p| i + 2 + p + 1)
                } else {
                    let len = text[i + 1..].chars().next().map_or(1, char::len_utf8);
                    (b.get(i + 1 + len) == Some(&b'\'')).then_some(i + 2 + len)
                };
                match end {
                    Some(e) => {
                        blank(&mut out, i, e);
                        i = e;
                    }
                    None => i += 1,
                }
            }
            _ => i += 1,
        }
    }
    String::from_utf8(out).unwrap_or_default()
}

/// Whether a raw string (`r"`, `r#"`, `br"`) starts at `i`, and not an identifier that merely begins with `r`.
fn is_raw_string_start(b: &[u8], i: usize) -> bool {
    if i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_') {
        return false;
    }
    let j = if b[i] == b'b' {
        if b.get(i + 1) != Some(&b'r') {
            return false;
        }
        i + 2
    } else {
        i + 1
    };
    let hashes = b[j..].iter().take_while(|&&c| c == b'#').count();
    b.get(j + hashes) == Some(&b'"')
}

/// Blanked code without its `#[cfg(test)]` modules (their lines are blanked too, so line numbers hold).
pub fn without_test_modules(code: &str) -> String {
    let mut out = code.as_bytes().to_vec();
    let mut from = 0;
    while let Some(at) = code[from..].find("#[cfg(test)]").map(|p| from + p) {
        let after = at + "#[cfg(test)]".len();
        let rest = code[after..].trim_start();
        let is_module = rest.starts_with("mod ") || rest.starts_with("pub mod ") || rest.starts_with("pub(crate) mod ");
        let open = code[after..].find('{').map(|p| after + p);
        let semicolon = code[after..].find(';').map(|p| after + p);
        match open {
            Some(open) if is_module && semicolon.is_none_or(|s| s > open) => {
                let mut depth = 0;
                let mut end = code.len();
                for (k, c) in code[open..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = open + k + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                for c in &mut out[at..end] {
                    if *c != b'\n' {
                        *c = b' ';
                    }
                }
                from = end;
            }
            _ => from = after,
        }
    }
    String::from_utf8(out).unwrap_or_default()
}

/// A path named in code: its segments (groups expanded) and the line it starts on (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRef {
    /// The segments, such as `["crate", "record", "hex", "hex"]`.
    pub segments: Vec<String>,
    /// The line.
    pub line: usize,
}

/// Every path of two or more segments in blanked code, with `a::{b, c::{d, e}}` expanded into `a::b`, `a::c::d` and
/// `a::c::e`. Single identifiers are not paths and are not returned.
pub fn paths(code: &str) -> Vec<PathRef> {
    let chars: Vec<(usize, char)> = code.char_indices().collect();
    let line_of = {
        let mut starts = vec![0];
        starts.extend(code.match_indices('\n').map(|(i, _)| i + 1));
        move |offset: usize| starts.partition_point(|&s| s <= offset)
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let (offset, c) = chars[i];
        let starts_word = (c.is_alphabetic() || c == '_')
            && (i == 0 || !(chars[i - 1].1.is_alphanumeric() || chars[i - 1].1 == '_' || chars[i - 1].1 == ':'));
        if !starts_word {
            i += 1;
            continue;
        }
        let (expanded, next) = parse_path(&chars, i);
        for segments in expanded {
            if segments.len() > 1 {
                out.push(PathRef { segments, line: line_of(offset) });
            }
        }
        i = next.max(i + 1);
    }
    out
}

/// Parses a path starting at `chars[i]`, returning its expansions and the index after it.
fn parse_path(chars: &[(usize, char)], mut i: usize) -> (Vec<Vec<String>>, usize) {
    let ident = |i: &mut usize| {
        let mut s = String::new();
        while *i < chars.len() && (chars[*i].1.is_alphanumeric() || chars[*i].1 == '_') {
            s.push(chars[*i].1);
            *i += 1;
        }
        s
    };
    let skip_space = |i: &mut usize| {
        while *i < chars.len() && chars[*i].1.is_whitespace() {
            *i += 1;
        }
    };
    let mut prefix = vec![ident(&mut i)];
    loop {
        let mut j = i;
        skip_space(&mut j);
        if !(j + 1 < chars.len() && chars[j].1 == ':' && chars[j + 1].1 == ':') {
            return (vec![prefix], i);
        }
        j += 2;
        skip_space(&mut j);
        if j < chars.len() && chars[j].1 == '{' {
            // A group: each comma-separated item is a path (or a group) under the prefix.
            let mut out = Vec::new();
            let mut k = j + 1;
            loop {
                skip_space(&mut k);
                if k >= chars.len() {
                    return (out, k);
                }
                match chars[k].1 {
                    '}' => return (out, k + 1),
                    ',' => k += 1,
                    c if c.is_alphabetic() || c == '_' => {
                        let (inner, next) = parse_path(chars, k);
                        for p in inner {
                            out.push(prefix.iter().cloned().chain(p).collect());
                        }
                        k = next;
                        // `as NAME` renames; the name is not a path.
                        skip_space(&mut k);
                        if chars[k..].iter().take(3).map(|c| c.1).collect::<String>() == "as " {
                            k += 3;
                            skip_space(&mut k);
                            ident(&mut k);
                        }
                    }
                    _ => k += 1,
                }
            }
        }
        if j < chars.len() && (chars[j].1.is_alphabetic() || chars[j].1 == '_') {
            let mut k = j;
            prefix.push(ident(&mut k));
            i = k;
        } else {
            // `Vec::<u8>::new` and `*` glob imports: the path ends here.
            return (vec![prefix], j);
        }
    }
}

/// Each crate module's code, blanked and without test modules, keyed by module path.
pub fn module_code(modules: &[Module]) -> BTreeMap<Vec<String>, (PathBuf, String)> {
    modules
        .iter()
        .map(|m| {
            let text = std::fs::read_to_string(&m.file).unwrap_or_default();
            (m.path.clone(), (m.file.clone(), without_test_modules(&blank_comments_and_literals(&text))))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_expanded_and_comments_and_strings_ignored() {
        let code = blank_comments_and_literals(
            "use crate::a::{b, c::{d, e as f}};\n// crate::x::y\nlet s = \"crate::z::w\"; super::g::h();\n",
        );
        let found: Vec<String> = paths(&code).iter().map(|p| format!("{}@{}", p.segments.join("::"), p.line)).collect();
        assert_eq!(found, ["crate::a::b@1", "crate::a::c::d@1", "crate::a::c::e@1", "super::g::h@3"]);
    }

    #[test]
    fn test_modules_are_dropped_and_lines_kept() {
        let code = "fn a() {}\n#[cfg(test)]\nmod tests {\n    use std::fs;\n}\nfn b() { std::net::x(); }\n";
        let stripped = without_test_modules(code);
        let found: Vec<String> =
            paths(&stripped).iter().map(|p| format!("{}@{}", p.segments.join("::"), p.line)).collect();
        assert_eq!(found, ["std::net::x@6"]);
    }

    #[test]
    fn lifetimes_are_not_character_literals() {
        let code = blank_comments_and_literals("fn f<'a>(x: &'a str) -> char { 'x' } crate::m::n");
        assert!(code.contains("'a>") && code.contains("crate::m::n") && !code.contains("'x'"));
    }
}
