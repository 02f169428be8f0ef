//! Snapshots of `lab --help` and of every subcommand's `--help`, and the shell completion scripts.
//!
//! Help text is what a new user reads first, so a change to it is reviewed like a change to code
//! (`cargo insta review`). The subcommands are read from `lab --help` itself, so a new command gets a snapshot
//! without touching this file.

use std::process::Command;

fn lab(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lab"))
        .args(args)
        // `--by` defaults to the user's name; the snapshots must not depend on who runs them.
        .env("USER", "operator")
        .env_remove("RUST_LOG")
        .output()
        .expect("the lab binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The subcommands listed under `Commands:` in a help text.
fn commands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn help_of_every_command_has_examples() {
    let (ok, top, _) = lab(&["--help"]);
    assert!(ok);
    insta::assert_snapshot!("help", top);
    let mut paths: Vec<Vec<String>> = commands(&top).into_iter().map(|c| vec![c]).collect();
    let mut i = 0;
    while i < paths.len() {
        let path = paths[i].clone();
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let (ok, help, err) = lab(&args);
        assert!(ok, "lab {}: {err}", args.join(" "));
        assert!(help.contains("Example"), "`lab {}` shows no example:\n{help}", args.join(" "));
        insta::assert_snapshot!(format!("help_{}", path.join("_")), help);
        for sub in commands(&help) {
            let mut deeper = path.clone();
            deeper.push(sub);
            paths.push(deeper);
        }
        i += 1;
    }
    assert!(paths.len() > 15, "too few commands found: {paths:?}");
}

#[test]
fn completions_are_written_for_every_shell() {
    for (shell, marker) in [("bash", "complete -F"), ("zsh", "#compdef lab"), ("fish", "complete -c lab")] {
        let (ok, script, err) = lab(&["completions", shell]);
        assert!(ok, "{shell}: {err}");
        assert!(script.contains(marker), "{shell}: no `{marker}` in the script");
        for command in ["campaign", "report", "status", "init"] {
            assert!(script.contains(command), "{shell}: `{command}` is not completed");
        }
    }
}

#[test]
fn verbosity_flags_are_global_and_exclusive() {
    let (ok, _, err) = lab(&["status", "-q", "-v", "--db", "/nonexistent/lab.db"]);
    assert!(!ok);
    assert!(err.contains("cannot be used with"), "{err}");
}
