//! ARCHITECTURE.md's invariants that a test can check, checked: which crate may depend on which, what the pure
//! crates' code may name, where ports are opened and runtimes built, that systems never block, that each crate's
//! modules form a DAG, that every module says what it is for, and that long files say why they are one file.
//!
//! Each rule is one test named after it; a failure lists every breach with its file, line and the rule, so the fix
//! is obvious. The rules read the workspace as it is on disk (its sources and `cargo metadata`), like
//! rust-analyzer's tidy tests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use tests::repo_root;
use tests::rust_source::{Module, PathRef, crate_modules, module_code, paths};

/// One breach of a rule: where, and what.
struct Breach {
    file: PathBuf,
    line: usize,
    what: String,
}

/// Fails with every breach, each naming its file and line, under the rule's name.
fn assert_none(rule: &str, breaches: Vec<Breach>) {
    if breaches.is_empty() {
        return;
    }
    let root = repo_root();
    let lines: Vec<String> = breaches
        .iter()
        .map(|b| format!("  {}:{}: {}", b.file.strip_prefix(&root).unwrap_or(&b.file).display(), b.line, b.what))
        .collect();
    panic!("architecture rule broken: {rule}\n{}", lines.join("\n"));
}

/// The crates of the workspace and the root file of each of their targets (library and binaries).
fn crate_roots() -> Vec<(&'static str, PathBuf)> {
    let root = repo_root();
    vec![
        ("protocols", root.join("protocols/src/lib.rs")),
        ("devices", root.join("devices/src/lib.rs")),
        ("experiments", root.join("experiments/src/lib.rs")),
        ("controller", root.join("controller/src/lib.rs")),
        ("controller (the lab binary)", root.join("controller/src/main.rs")),
        ("tests", root.join("tests/src/lib.rs")),
    ]
}

fn modules_of(krate: &str) -> Vec<Module> {
    let (_, root) = crate_roots().into_iter().find(|(k, _)| *k == krate).expect("a crate of the workspace");
    crate_modules(&root)
}

/// A crate's normal (not dev or build) dependencies on this machine's platform, transitively, by package name, from
/// `cargo tree` (offline: it reads the lock file and the downloaded sources, never the network).
fn transitive_dependencies(krate: &str) -> BTreeSet<String> {
    let output = std::process::Command::new(env!("CARGO"))
        .args(["tree", "--offline", "--edges", "normal", "--prefix", "none", "--format", "{p}", "--package", krate])
        .arg("--manifest-path")
        .arg(repo_root().join("Cargo.toml"))
        .output()
        .expect("cargo tree runs");
    assert!(output.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// Crates that do I/O or own a runtime, a world or a database: what a pure crate must never reach.
const IO_CRATES: &[&str] =
    &["tokio", "mio", "socket2", "rusqlite", "libsqlite3-sys", "serialport", "tokio-serial", "nix", "bevy_ecs"];

/// Crates of the ECS and of SQLite, which `devices` must never reach.
const ECS_AND_SQL_CRATES: &[&str] = &["bevy_ecs", "rusqlite", "libsqlite3-sys"];

#[test]
fn pure_crates_depend_on_no_io_crate_and_devices_on_no_ecs_or_sqlite() {
    let mut breaches = Vec::new();
    let root = repo_root();
    for (krate, forbidden) in [("protocols", IO_CRATES), ("experiments", IO_CRATES), ("devices", ECS_AND_SQL_CRATES)] {
        let reached = transitive_dependencies(krate);
        for bad in forbidden.iter().filter(|b| reached.contains(**b)) {
            breaches.push(Breach {
                file: root.join(krate).join("Cargo.toml"),
                line: 1,
                what: format!("`{krate}` depends (directly or through another crate) on `{bad}`"),
            });
        }
    }
    // The reverse: the engine's own crates are where they are allowed, so the rule is not vacuous.
    let (controller, devices) = (transitive_dependencies("controller"), transitive_dependencies("devices"));
    assert!(controller.contains("bevy_ecs") && controller.contains("rusqlite"), "{controller:?}");
    assert!(devices.contains("tokio") && devices.contains("serialport"), "{devices:?}");
    assert_none("the pure crates depend on no I/O crate, and devices on no ECS or SQLite crate", breaches);
}

/// Paths a pure crate's code may not name: the file system, the network, threads, processes, the environment, the
/// clock and any runtime.
fn impure(p: &PathRef) -> Option<String> {
    let s = &p.segments;
    let joined = s.join("::");
    let std_io = s.len() >= 2 && s[0] == "std" && matches!(s[1].as_str(), "fs" | "net" | "thread" | "process" | "env");
    let clock = s.windows(2).any(|w| matches!((w[0].as_str(), w[1].as_str()), ("Instant" | "SystemTime", "now")));
    let runtime = matches!(s[0].as_str(), "tokio" | "rusqlite" | "serialport" | "tokio_serial" | "bevy_ecs");
    (std_io || clock || runtime).then(|| format!("names `{joined}`"))
}

#[test]
fn the_pure_crates_name_no_file_system_network_thread_process_or_clock() {
    let mut breaches = Vec::new();
    for krate in ["protocols", "experiments"] {
        for (_, (file, code)) in module_code(&modules_of(krate)) {
            for p in paths(&code) {
                if let Some(what) = impure(&p) {
                    breaches.push(Breach { file: file.clone(), line: p.line, what: format!("`{krate}` {what}") });
                }
            }
        }
    }
    assert_none("protocols and experiments are pure: no I/O, no threads, no clock", breaches);
}

#[test]
fn devices_names_no_ecs_scheduler_or_database() {
    let mut breaches = Vec::new();
    for (_, (file, code)) in module_code(&modules_of("devices")) {
        for p in paths(&code) {
            if matches!(p.segments[0].as_str(), "bevy_ecs" | "rusqlite" | "controller") {
                breaches.push(Breach {
                    file: file.clone(),
                    line: p.line,
                    what: format!("names `{}`", p.segments.join("::")),
                });
            }
        }
    }
    assert_none("devices knows nothing of ECS, scheduling or SQLite", breaches);
}

#[test]
fn serial_ports_are_opened_only_by_devices_transport() {
    let transport = repo_root().join("devices/src/transport.rs");
    let mut breaches = Vec::new();
    for krate in ["devices", "controller", "controller (the lab binary)"] {
        for (_, (file, code)) in module_code(&modules_of(krate)) {
            for p in paths(&code) {
                let last = p.segments.last().map(String::as_str).unwrap_or_default();
                let opens = matches!(p.segments[0].as_str(), "serialport" | "tokio_serial")
                    && matches!(last, "new" | "open_native" | "open_native_async" | "open");
                if opens && file != transport {
                    breaches.push(Breach {
                        file: file.clone(),
                        line: p.line,
                        what: format!(
                            "opens a serial port with `{}`; use devices::transport::open_serial",
                            p.segments.join("::")
                        ),
                    });
                }
            }
        }
    }
    assert_none("drivers never open ports: devices/src/transport.rs is the only place that does", breaches);
}

#[test]
fn only_the_controller_builds_a_runtime_or_owns_a_world() {
    let mut breaches = Vec::new();
    for krate in ["protocols", "devices", "experiments"] {
        for (_, (file, code)) in module_code(&modules_of(krate)) {
            for p in paths(&code) {
                let s: Vec<&str> = p.segments.iter().map(String::as_str).collect();
                let builds =
                    s.windows(2).any(|w| matches!(w, ["runtime", "Builder"] | ["Runtime", "new"] | ["World", "new"]));
                if builds {
                    breaches.push(Breach {
                        file: file.clone(),
                        line: p.line,
                        what: format!("`{krate}` names `{}`", s.join("::")),
                    });
                }
            }
        }
    }
    assert_none("controller is the only crate that owns a World or a runtime", breaches);
}

#[test]
fn no_system_blocks_or_awaits() {
    let systems = repo_root().join("controller/src/schedule/systems");
    let mut breaches = Vec::new();
    for (_, (file, code)) in module_code(&modules_of("controller")) {
        if !file.starts_with(&systems) {
            continue;
        }
        for (n, line) in code.lines().enumerate() {
            for (needle, what) in [
                (".await", "awaits"),
                ("block_on(", "blocks on a future"),
                (".recv()", "waits on a channel (use try_recv)"),
                ("sleep(", "sleeps"),
                (".join()", "waits for a thread"),
                ("std::fs", "does file I/O"),
                ("rusqlite", "queries the database (send a RecordEvent)"),
            ] {
                if line.contains(needle) {
                    breaches.push(Breach {
                        file: file.clone(),
                        line: n + 1,
                        what: format!("a system {what}: `{}`", line.trim()),
                    });
                }
            }
        }
    }
    assert!(module_code(&modules_of("controller")).values().any(|(f, _)| f.starts_with(&systems)), "systems exist");
    assert_none("nothing in a system blocks or awaits", breaches);
}

/// The module a path refers to: the longest prefix of its absolute form that is a module of the crate.
fn referred_module(from: &[String], p: &PathRef, modules: &BTreeSet<Vec<String>>) -> Option<Vec<String>> {
    let s = &p.segments;
    let (base, rest): (Vec<String>, &[String]) = match s[0].as_str() {
        "crate" => (vec![], &s[1..]),
        "self" => (from.to_vec(), &s[1..]),
        "super" => {
            let ups = s.iter().take_while(|x| *x == "super").count();
            (from[..from.len().saturating_sub(ups)].to_vec(), &s[ups..])
        }
        _ => return None,
    };
    let full: Vec<String> = base.into_iter().chain(rest.iter().cloned()).collect();
    (0..=full.len()).rev().map(|k| full[..k].to_vec()).find(|prefix| modules.contains(prefix))
}

/// The cycles (strongly connected components of two or more modules) of a module graph.
fn cycles(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<Vec<String>>> {
    // Tarjan's algorithm, iterative so a deep crate cannot overflow the stack.
    let nodes: Vec<&Vec<String>> = edges.keys().collect();
    let index_of: BTreeMap<&Vec<String>, usize> = nodes.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let succ: Vec<Vec<usize>> =
        nodes.iter().map(|n| edges[*n].iter().filter_map(|m| index_of.get(m).copied()).collect()).collect();
    let (mut index, mut low, mut on) = (vec![usize::MAX; nodes.len()], vec![0; nodes.len()], vec![false; nodes.len()]);
    let (mut stack, mut counter, mut out) = (Vec::new(), 0, Vec::new());
    for start in 0..nodes.len() {
        if index[start] != usize::MAX {
            continue;
        }
        let mut work = vec![(start, 0usize)];
        while let Some((v, child)) = work.pop() {
            if child == 0 {
                index[v] = counter;
                low[v] = counter;
                counter += 1;
                stack.push(v);
                on[v] = true;
            }
            if let Some(&w) = succ[v].get(child) {
                work.push((v, child + 1));
                if index[w] == usize::MAX {
                    work.push((w, 0));
                } else if on[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut component = Vec::new();
                while let Some(w) = stack.pop() {
                    on[w] = false;
                    component.push(nodes[w].clone());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    out.push(component);
                }
            }
        }
    }
    out
}

#[test]
fn each_crates_modules_form_a_dag() {
    let mut breaches = Vec::new();
    for (krate, root) in crate_roots() {
        let modules = crate_modules(&root);
        let names: BTreeSet<Vec<String>> = modules.iter().map(|m| m.path.clone()).collect();
        let code = module_code(&modules);
        // A folder module and the modules inside it are one concern and may refer to each other; between any other
        // two modules, references go one way.
        let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
        let mut first_line: BTreeMap<(Vec<String>, Vec<String>), usize> = BTreeMap::new();
        for (from, (_, text)) in &code {
            let entry = edges.entry(from.clone()).or_default();
            for p in paths(text) {
                let Some(to) = referred_module(from, &p, &names) else { continue };
                if to.starts_with(from) || from.starts_with(&to) {
                    continue;
                }
                entry.insert(to.clone());
                first_line.entry((from.clone(), to)).or_insert(p.line);
            }
        }
        for component in cycles(&edges) {
            for from in &component {
                for to in edges[from].iter().filter(|t| component.contains(t)) {
                    let m = modules.iter().find(|m| &m.path == from).expect("a module of the crate");
                    let to_name = modules.iter().find(|m| &m.path == to).map_or_else(String::new, Module::name);
                    breaches.push(Breach {
                        file: m.file.clone(),
                        line: first_line[&(from.clone(), to.clone())],
                        what: format!("in `{krate}`, {} refers to {to_name}, which refers back (a circle)", m.name()),
                    });
                }
            }
        }
    }
    assert_none(
        "each crate's modules form a DAG (no two modules import each other, directly or around a circle)",
        breaches,
    );
}

/// Every Rust file of the repository's crates, tests, benches and tools.
fn rust_files() -> Vec<PathBuf> {
    let output = std::process::Command::new("git")
        .args(["ls-files", "--cached", "--others", "--exclude-standard", "*.rs"])
        .current_dir(repo_root())
        .output();
    match output {
        Ok(o) if o.status.success() => {
            String::from_utf8_lossy(&o.stdout).lines().map(|l| repo_root().join(l)).collect()
        }
        // Outside a git checkout (a source archive), walk the folders instead.
        _ => {
            let mut out = Vec::new();
            let mut stack = vec![repo_root()];
            while let Some(dir) = stack.pop() {
                for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                    let p = entry.path();
                    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                    if p.is_dir() && !name.starts_with('.') && name != "target" {
                        stack.push(p);
                    } else if name.ends_with(".rs") {
                        out.push(p);
                    }
                }
            }
            out
        }
    }
}

#[test]
fn every_module_starts_with_a_doc_comment() {
    let breaches = rust_files()
        .into_iter()
        .filter(|f| !std::fs::read_to_string(f).unwrap_or_default().trim_start().starts_with("//!"))
        .map(|file| Breach { file, line: 1, what: "has no `//!` doc saying what the module is for".into() })
        .collect();
    assert_none("every module has a `//!` doc", breaches);
}

/// Past this many lines a file says at its top why it is one file.
const LONG_FILE: usize = 1_000;

#[test]
fn long_files_say_why_they_are_one_file() {
    let breaches = rust_files()
        .into_iter()
        .filter_map(|file| {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let lines = text.lines().count();
            let doc: String = text.lines().take_while(|l| l.starts_with("//!")).collect::<Vec<_>>().join(" ");
            (lines > LONG_FILE && !doc.to_lowercase().contains("one file")).then(|| Breach {
                file,
                line: 1,
                what: format!(
                    "{lines} lines, and its `//!` doc does not say why it is one file (split it by idea, or say \
                     \"one file because ...\")"
                ),
            })
        })
        .collect();
    assert_none("a file past about 1,000 lines says at its top why it is one file", breaches);
}

#[test]
fn the_module_scanner_sees_every_file_of_the_engine() {
    // The rules above are only as good as the module lists: every file under a crate's src/ is one of its modules.
    let mut breaches = Vec::new();
    for (krate, dir) in [
        ("protocols", "protocols/src"),
        ("devices", "devices/src"),
        ("experiments", "experiments/src"),
        ("controller", "controller/src"),
    ] {
        let mut known: BTreeSet<PathBuf> = modules_of(krate).into_iter().map(|m| m.file).collect();
        if krate == "controller" {
            known.extend(modules_of("controller (the lab binary)").into_iter().map(|m| m.file));
        }
        let root = repo_root().join(dir);
        for f in rust_files().into_iter().filter(|f| f.starts_with(&root)) {
            if !known.contains(&f) {
                breaches.push(Breach { file: f, line: 1, what: format!("not a module of `{krate}`") });
            }
        }
    }
    assert_none("every file under a crate's src/ is one of its modules", breaches);
}

#[test]
fn a_circle_between_two_modules_is_found() {
    // The DAG rule itself, on a made-up crate: a refers to b, and b back to a.
    let dir = tempfile::tempdir().expect("a temporary folder");
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).expect("written");
    write("lib.rs", "//! x\nmod a;\nmod b;\nmod c;\n");
    write("a.rs", "//! a\nuse crate::b::B;\npub struct A;\n");
    write("b.rs", "//! b\npub struct B;\nfn f() -> super::a::A { crate::a::A }\n");
    write("c.rs", "//! c\nuse crate::{a::A, b::B};\n");
    let modules = crate_modules(&dir.path().join("lib.rs"));
    assert_eq!(modules.len(), 4);
    let names: BTreeSet<Vec<String>> = modules.iter().map(|m| m.path.clone()).collect();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (from, (_, text)) in module_code(&modules) {
        let targets =
            paths(&text).iter().filter_map(|p| referred_module(&from, p, &names)).filter(|t| t != &from).collect();
        edges.insert(from, targets);
    }
    let found = cycles(&edges);
    assert_eq!(found, vec![vec![vec!["a".to_owned()], vec!["b".to_owned()]]]);
}

#[test]
fn every_table_of_a_new_record_is_strict() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let db = dir.path().join("lab.db");
    drop(controller::record::Record::open(&db).expect("a new record opens"));
    let conn = rusqlite::Connection::open(&db).expect("the record opens with plain SQLite");
    let mut stmt = conn
        .prepare("SELECT name, strict FROM pragma_table_list WHERE schema = 'main' AND type = 'table' AND name NOT LIKE 'sqlite_%'")
        .expect("table_list reads");
    let tables: Vec<(String, bool)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).expect("rows").collect::<Result<_, _>>().expect("rows read");
    assert!(tables.len() >= 10, "a record has its tables: {tables:?}");
    let migrations = repo_root().join("controller/migrations");
    let breaches = tables
        .into_iter()
        .filter(|(_, strict)| !strict)
        .map(|(name, _)| Breach { file: migrations.clone(), line: 1, what: format!("table `{name}` is not STRICT") })
        .collect();
    assert_none("every table of lab.db is STRICT", breaches);
}

#[test]
fn migrations_are_append_only() {
    // A released migration is never edited, renamed or removed: git's history and the working tree both say so.
    let root = repo_root();
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git").args(args).current_dir(&root).output().expect("git runs");
        assert!(out.status.success(), "git {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mut breaches = Vec::new();
    for line in
        git(&["log", "--format=commit %h %s", "--diff-filter=MDR", "--name-status", "--", "controller/migrations"])
            .lines()
            .filter(|l| !l.trim().is_empty())
    {
        breaches.push(Breach { file: root.join("controller/migrations"), line: 1, what: format!("history: {line}") });
    }
    for line in git(&["status", "--porcelain", "--", "controller/migrations"]).lines() {
        // New files (`??` or `A `) are how a migration is added; anything else changes a released one.
        if !(line.starts_with("??") || line.starts_with("A ")) {
            breaches.push(Breach {
                file: root.join("controller/migrations"),
                line: 1,
                what: format!("working tree: {line}"),
            });
        }
    }
    assert!(git(&["ls-files", "controller/migrations"]).lines().count() >= 5, "the migrations are tracked");
    assert_none("migrations are append-only: add a new one instead of editing a released one", breaches);
}
