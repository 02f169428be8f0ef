//! Snapshots of the diagnostics `lab check` prints for files a technician might write wrongly.
//!
//! Each file in `tests/data/bad/` has one or more mistakes, described in its first comment; its snapshot is what
//! `lab check` shows for it, without colour: the file, the line with a caret under the mistake, what is wrong, and
//! the fix. A change to any validator's wording or spans shows up here for review (`cargo insta review`).

use std::path::{Path, PathBuf};

use controller::load::check::{CheckError, check_file};
use controller::load::diagnostics::render;

fn bad_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir("tests/data/bad")
        .expect("tests run from the controller folder")
        .map(|e| e.expect("a readable folder entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "ron"))
        .collect();
    files.sort();
    files
}

fn rendered(path: &Path) -> String {
    match check_file(path) {
        Ok((line, warnings)) if warnings.is_empty() => panic!("{} is valid ({line}); it should not be", path.display()),
        Ok((_, warnings)) => render(&warnings, false),
        Err(CheckError::Invalid(d)) => render(&d, false),
        Err(CheckError::Other(e)) => panic!("{}: {e}", path.display()),
    }
}

#[test]
fn every_bad_file_is_explained_with_its_line_and_a_fix() {
    let files = bad_files();
    assert!(files.len() >= 8, "the bad files are missing: {files:?}");
    for path in files {
        let text = rendered(&path);
        let name = path.file_name().and_then(|n| n.to_str()).expect("a UTF-8 name").replace('.', "_");
        assert!(text.contains("help:"), "{}: every diagnostic should say how to fix it:\n{text}", path.display());
        insta::assert_snapshot!(name, text);
    }
}

/// Every diagnostic code any loader can produce, as written in the sources: `"P0003"` and the like.
fn codes_in(dir: &Path, codes: &mut std::collections::BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).expect("a source folder") {
        let path = entry.expect("a folder entry").path();
        if path.is_dir() {
            codes_in(&path, codes);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("a source file");
            let bytes = text.as_bytes();
            for i in 0..bytes.len().saturating_sub(6) {
                let candidate = &bytes[i..i + 7];
                if candidate[0] == b'"'
                    && candidate[6] == b'"'
                    && matches!(candidate[1], b'L' | b'P' | b'D' | b'C')
                    && candidate[2..6].iter().all(u8::is_ascii_digit)
                {
                    codes.insert(String::from_utf8_lossy(&candidate[1..6]).into_owned());
                }
            }
        }
    }
}

#[test]
fn every_diagnostic_code_has_an_entry_in_the_guide() {
    let mut codes = std::collections::BTreeSet::new();
    for dir in ["../protocols/src", "../devices/src", "../experiments/src", "src"] {
        codes_in(Path::new(dir), &mut codes);
    }
    // P0000 is the placeholder code of the diagnostic machinery's own unit tests.
    codes.remove("P0000");
    assert!(codes.len() > 40, "found too few codes: {codes:?}");
    let guide = std::fs::read_to_string("../GUIDE.md").expect("GUIDE.md at the workspace root");
    let missing: Vec<&String> = codes.iter().filter(|c| !guide.contains(&format!("**{c}**"))).collect();
    assert!(missing.is_empty(), "GUIDE.md has no entry for {missing:?}");
}
