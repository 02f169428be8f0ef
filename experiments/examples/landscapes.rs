//! The learning benchmark's landscapes for the peer harness (`peers/python`), so peers run exactly the problems the
//! suite runs.
//!
//! - `landscapes export DIR SEEDS` writes one JSON file per landscape into DIR (`ridge__table__noisy.json` for
//!   `ridge/table/noisy`): its space, budget, target, noise, initial design size, table rows with their true
//!   values, and the noise draws of seeds `0..SEEDS` ([`experiments::bench::landscape::export`]).
//! - `landscapes serve` answers, for each line `NAME v1 v2 …` on standard input (values in the space's dimension
//!   order, a categorical one by its level's value), with the landscape's true value there on one line of standard
//!   output, so a continuous landscape is evaluated by the same code for every method. An unknown name or a
//!   malformed line gets a line starting `error:`.
//! - `landscapes ours SEEDS [NAME,…]` runs the lab's proposer (the suite's default) on every landscape (or the
//!   named ones) for seeds `0..SEEDS` and prints the peer harness's CSV (`problem,method,seed,hit,seconds`), so
//!   `peers/python/summary.py` can put it beside the peers.
//!
//! The reaction tables of [`experiments::bench::reactions`] go with the landscapes: `export` writes them too (their
//! rows and yields, no noise), and `ours` runs them, by name (`buchwald-hartwig/2-pyridyl`, `suzuki-miyaura`).

use std::io::{BufRead, Write};

use experiments::bench::default_gp;
use experiments::bench::landscape::{Landscape, export, landscape_run};
use experiments::bench::reactions::{REACTION_BUDGET, reaction_run, reaction_tables};
use experiments::bench::suite;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["export", dir, seeds] => match seeds.parse::<usize>() {
            Ok(seeds) => write_all(dir, seeds),
            Err(_) => fail(&format!("SEEDS must be a whole number, not `{seeds}`")),
        },
        ["serve"] => serve(),
        ["ours", seeds] => ours(seeds, ""),
        ["ours", seeds, names] => ours(seeds, names),
        _ => fail("usage: landscapes export DIR SEEDS | landscapes serve | landscapes ours SEEDS [NAME,...]"),
    };
    std::process::exit(code);
}

fn fail(message: &str) -> i32 {
    eprintln!("landscapes: {message}");
    2
}

fn write_all(dir: &str, seeds: usize) -> i32 {
    if let Err(e) = std::fs::create_dir_all(dir) {
        return fail(&format!("cannot create {dir}: {e}"));
    }
    let landscapes =
        suite().into_iter().map(|l| (l.name.clone(), export(&l, seeds), format!("budget {}, {}", l.budget, l.rule)));
    let tables = reaction_tables().into_iter().map(|t| {
        let about = format!("budget {REACTION_BUDGET}, top 1%: {} rows", t.top);
        (t.name.clone(), experiments::bench::reactions::export(&t, seeds), about)
    });
    for (name, problem, about) in landscapes.chain(tables) {
        let path = std::path::Path::new(dir).join(format!("{}.json", name.replace('/', "__")));
        let text = serde_json::to_string(&problem).unwrap_or_default();
        if let Err(e) = std::fs::write(&path, text) {
            return fail(&format!("cannot write {}: {e}", path.display()));
        }
        println!("{}: {name} ({about})", path.display());
    }
    0
}

fn serve() -> i32 {
    let landscapes = suite();
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let answer = evaluate(&landscapes, &line).unwrap_or_else(|e| format!("error: {e}"));
        if writeln!(out, "{answer}").and_then(|_| out.flush()).is_err() {
            break;
        }
    }
    0
}

fn evaluate(landscapes: &[Landscape], line: &str) -> Result<String, String> {
    let mut parts = line.split_whitespace();
    let name = parts.next().ok_or("an empty line")?;
    let l = landscapes.iter().find(|l| l.name == name).ok_or_else(|| format!("no landscape named `{name}`"))?;
    let values: Vec<f64> =
        parts.map(|v| v.parse::<f64>().map_err(|_| format!("`{v}` is not a number"))).collect::<Result<_, _>>()?;
    if values.len() != l.space.len() {
        return Err(format!("{name} has {} dimensions, the line gives {}", l.space.len(), values.len()));
    }
    let point = l.space.dims().iter().zip(values).map(|(d, v)| (d.name.clone(), v)).collect();
    if !l.space.contains(&point) {
        return Err(format!("{point:?} is outside {name}'s space"));
    }
    Ok(format!("{:?}", (l.value)(&point)))
}

fn ours(seeds: &str, names: &str) -> i32 {
    let Ok(seeds) = seeds.parse::<u64>() else { return fail(&format!("SEEDS must be a whole number, not `{seeds}`")) };
    let names: Vec<&str> = names.split(',').filter(|n| !n.is_empty()).collect();
    println!("problem,method,seed,hit,seconds");
    for l in suite().into_iter().filter(|l| names.is_empty() || names.contains(&l.name.as_str())) {
        let config = default_gp(l.dims());
        for seed in 0..seeds {
            print_run(&l.name, seed, || landscape_run(&config, &l, seed));
        }
    }
    for t in reaction_tables().into_iter().filter(|t| names.is_empty() || names.contains(&t.name.as_str())) {
        let config = default_gp(t.space.len());
        for seed in 0..seeds {
            print_run(&t.name, seed, || reaction_run(&config, &t, REACTION_BUDGET, 1, seed));
        }
    }
    0
}

/// Runs one seed and prints its CSV line: the experiment that reached the target (empty if none) and the time.
fn print_run(name: &str, seed: u64, run: impl FnOnce() -> Option<usize>) {
    let start = std::time::Instant::now();
    let hit = run().map_or(String::new(), |h| h.to_string());
    println!("{name},ours,{seed},{hit},{:.2}", start.elapsed().as_secs_f64());
}
