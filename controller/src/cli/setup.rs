//! Setting up and checking: `lab init`, `lab check`, `lab key` and `lab completions`.

use std::path::{Path, PathBuf};

use super::args::*;
use super::exit_code;
use super::print_diagnostics;
use controller::load::check::{CheckError, check_file};
use protocols::Diagnostics;

/// `lab init DIR`: a new lab folder on simulators, and what to run next.
pub fn init_command(dir: &Path) -> u8 {
    match controller::init::init(dir) {
        Ok(files) => {
            println!("made the lab folder {}:", dir.display());
            for f in &files {
                println!("  {}", f.display());
            }
            let campaign = dir.join(controller::init::CAMPAIGN);
            let db = dir.join("lab.db");
            println!();
            println!("Every instrument is simulated, so it runs now:");
            println!("  lab check {}", dir.join("*.ron").display());
            println!("  lab campaign {} --db {}", campaign.display(), db.display());
            println!("  lab report --db {} --out {}", db.display(), dir.join("report").display());
            println!("GUIDE.md explains every field; change one at a time and `lab check` it.");
            exit_code::OK
        }
        Err(e) => {
            eprintln!("lab: {e}");
            exit_code::CANNOT_RUN
        }
    }
}

/// `lab check FILES`: every file checked; nothing moves.
pub fn check_command(files: &[PathBuf]) -> u8 {
    let mut all = Diagnostics::new();
    let mut ok = 0;
    for path in files {
        match check_file(path) {
            Ok((line, warnings)) => {
                ok += 1;
                println!("ok  {}  {line}", path.display());
                all.extend(warnings);
            }
            Err(CheckError::Invalid(d)) => all.extend(d),
            Err(CheckError::Other(msg)) => {
                eprintln!("lab: {}: {msg}", path.display());
                all.push(protocols::Diagnostic::error(
                    "L0000",
                    &protocols::SourceFile::new(path.display().to_string(), ""),
                    0..0,
                    msg,
                ));
            }
        }
    }
    print_diagnostics(&all);
    let errors = all.iter().filter(|d| d.severity == protocols::Severity::Error).count();
    if errors > 0 {
        eprintln!("lab: {errors} problem(s) in {} of {} file(s)", files.len() - ok, files.len());
        exit_code::INVALID_INPUT
    } else {
        exit_code::OK
    }
}

/// `lab key new PATH`: a signing key's secret at PATH and its public half at PATH.pub.
pub fn key_new(path: &Path) -> u8 {
    match controller::record::signing::write_new_key(path) {
        Ok(public) => {
            println!("wrote the secret key to {} (keep it private)", path.display());
            println!("wrote the public key to {}: {public}", controller::record::signing::public_path(path).display());
            exit_code::OK
        }
        Err(e) => {
            eprintln!("lab: {e}");
            exit_code::CANNOT_RUN
        }
    }
}

/// `lab completions SHELL`: the shell's completion script on stdout.
pub fn completions(shell: clap_complete::Shell) -> u8 {
    clap_complete::generate(shell, &mut <Cli as clap::CommandFactory>::command(), "lab", &mut std::io::stdout());
    exit_code::OK
}
