//! The report page: a summary, the plots (inlined SVG) and the experiment table, in one HTML file.
//!
//! The page is written as well-formed XML (XHTML syntax in an HTML5 document), so any XML parser can check it,
//! and it refers to nothing outside itself except the plot files beside it, offered as downloads.

use std::fmt::Write as _;
use std::path::Path;

use super::data::{ReportData, with_unit};
use super::human_seconds;
use super::plots::Plot;

/// The page's style: system fonts, a light theme, tables that scroll sideways on narrow screens.
const STYLE: &str = r#"
:root { --ink: #212529; --muted: #6c757d; --line: #dee2e6; --soft: #f8f9fa; --accent: #0072b2; --best: #e69f00; }
* { box-sizing: border-box; }
body { margin: 0; background: #eef1f4; color: var(--ink);
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
main { max-width: 1040px; margin: 0 auto; padding: 28px 24px 48px; }
header h1 { margin: 0; font-size: 28px; }
header p { margin: 4px 0 0; color: var(--muted); }
.status { display: inline-block; padding: 1px 10px; border-radius: 999px; font-size: 13px; font-weight: 600;
          background: #d3f9d8; color: #2b8a3e; vertical-align: middle; }
.status.running { background: #d0ebff; color: #1864ab; }
.status.aborted, .status.failed { background: #ffe3e3; color: #c92a2a; }
.cards { display: grid; grid-template-columns: repeat(4, 1fr); gap: 12px; margin: 20px 0; }
.card { background: white; border: 1px solid var(--line); border-radius: 10px; padding: 12px 16px; }
.card .label { color: var(--muted); font-size: 13px; }
.card .value { font-size: 24px; font-weight: 650; }
.card .note { color: var(--muted); font-size: 13px; }
.card.best { border-color: var(--best); box-shadow: inset 4px 0 0 var(--best); }
section { background: white; border: 1px solid var(--line); border-radius: 10px; padding: 18px 20px; margin: 16px 0; }
section h2 { margin: 0 0 4px; font-size: 19px; }
section p.what { margin: 0 0 10px; color: var(--muted); }
figure { margin: 0; }
figure svg { display: block; width: 100%; height: auto; }
.files { margin: 6px 0 0; font-size: 13px; color: var(--muted); }
.files a { color: var(--accent); }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
th, td { padding: 5px 10px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: var(--soft); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.num { white-space: nowrap; }
tr.best td { background: #fff4db; font-weight: 600; }
tr.failed td { color: #c92a2a; }
.scroll { overflow-x: auto; }
code { font: 12px/1.4 ui-monospace, "DejaVu Sans Mono", monospace; word-break: break-all; }
dl.summary { display: grid; grid-template-columns: max-content 1fr; gap: 4px 18px; margin: 0; }
dl.summary dt { color: var(--muted); }
dl.summary dd { margin: 0; }
footer { color: var(--muted); font-size: 13px; margin-top: 18px; }
"#;

/// Escapes text for HTML (and XML) content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A number with about four significant digits.
fn num(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() {
        "-".to_owned()
    } else if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.4}")
    }
}

/// What each plot shows and what to look for, in a sentence or two.
fn what(plot: Plot, data: &ReportData) -> String {
    let better = if data.campaign.maximize() { "higher" } else { "lower" };
    match plot {
        Plot::Objective => format!(
            "Each experiment's {} in the order they were run ({better} is better). The orange line is the best so far: \
             it climbs while the optimizer is still finding better conditions and flattens once it has converged.",
            data.campaign.objective
        ),
        Plot::Parameters => "Each varied parameter against the objective, one panel per parameter (parameters held \
                             at one value are in the table below). Pale points are early experiments and dark \
                             points late ones, so you can see where the optimizer went; the ring marks the best \
                             experiment."
            .to_owned(),
        Plot::Gantt => "Every step on every instrument, over the campaign's lab time. The pale band behind each row \
                        is the instrument's idle time: an instrument that is rarely idle is the bottleneck, and gaps \
                        everywhere mean the campaign waited for something (the model, an operator)."
            .to_owned(),
        Plot::Predicted => "For each experiment the model chose, its predicted objective (mean and one standard \
                            deviation) against the measured result. Points near the diagonal mean the model \
                            understood the chemistry; error bars that do not reach the diagonal mean it was \
                            over-confident."
            .to_owned(),
    }
}

/// Writes the page.
pub fn page(data: &ReportData, db: &Path, svgs: &[(Plot, String)]) -> String {
    let c = &data.campaign;
    let (succeeded, failed, running) = data.counts();
    let mut h = String::new();
    let title = format!("lab report: {} (campaign {})", c.name, c.id);
    let _ = writeln!(
        h,
        "<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n<title>{}</title>\n\
         <style>{STYLE}</style>\n</head>\n<body>\n<main>",
        escape(&title)
    );
    let _ = writeln!(
        h,
        "<header>\n<h1>Campaign \u{201c}{}\u{201d} <span class=\"status {}\">{}</span></h1>\n\
         <p>Campaign {} of the record <code>{}</code>; started {} (wall clock, UTC).</p>\n</header>",
        escape(&c.name),
        escape(&c.status),
        escape(&c.status),
        c.id,
        escape(&db.display().to_string()),
        escape(&c.started_at),
    );

    // The four numbers a scientist looks for first.
    let best = data.best();
    let _ = writeln!(h, "<div class=\"cards\">");
    match best.and_then(|b| Some((b, b.objective?))) {
        Some((b, v)) => {
            let _ = writeln!(
                h,
                "<div class=\"card best\"><div class=\"label\">best {}</div><div class=\"value\">{} {}</div>\
                 <div class=\"note\">experiment #{}</div></div>",
                escape(&c.objective),
                num(v),
                escape(&data.objective_unit),
                b.seq
            );
        }
        None => {
            let _ = writeln!(
                h,
                "<div class=\"card best\"><div class=\"label\">best {}</div><div class=\"value\">-</div>\
                 <div class=\"note\">no result yet</div></div>",
                escape(&c.objective)
            );
        }
    }
    let _ = writeln!(
        h,
        "<div class=\"card\"><div class=\"label\">experiments</div><div class=\"value\">{} / {}</div>\
         <div class=\"note\">{succeeded} succeeded, {failed} failed, {running} running</div></div>",
        data.experiments.len(),
        c.budget
    );
    let _ = writeln!(
        h,
        "<div class=\"card\"><div class=\"label\">lab time</div><div class=\"value\">{}</div>\
         <div class=\"note\">{} experiments at once at most</div></div>",
        human_seconds(data.lab_now),
        c.in_flight
    );
    let _ = writeln!(
        h,
        "<div class=\"card\"><div class=\"label\">wall time</div><div class=\"value\">{}</div>\
         <div class=\"note\">lab time ran {}\u{d7} as fast</div></div>\n</div>",
        human_seconds(data.wall_seconds()),
        num(c.time_scale)
    );

    // The summary: what ran, and the provenance to cite.
    let _ = writeln!(h, "<section id=\"summary\">\n<h2>Summary</h2>\n<dl class=\"summary\">");
    let mut row = |k: &str, v: String| {
        let _ = writeln!(h, "<dt>{}</dt><dd>{v}</dd>", escape(k));
    };
    row(
        "objective",
        format!(
            "{} {}",
            if c.maximize() { "maximize" } else { "minimize" },
            escape(&with_unit(&c.objective, &data.objective_unit))
        ),
    );
    if let Some(b) = best {
        let values = b
            .values
            .iter()
            .map(|(k, v)| {
                let unit = data.parameters.iter().find(|p| &p.0 == k).map_or("", |p| p.1.as_str());
                escape(format!("{k} = {} {unit}", num(*v)).trim_end())
            })
            .collect::<Vec<_>>()
            .join(", ");
        row("best experiment", format!("#{}: {values}", b.seq));
    }
    row(
        "experiments",
        format!(
            "{} of a budget of {}: {succeeded} succeeded, {failed} failed, {running} running",
            data.experiments.len(),
            c.budget
        ),
    );
    row(
        "time",
        format!(
            "{} of lab time in {} of wall time (time scale {})",
            human_seconds(data.lab_now),
            human_seconds(data.wall_seconds()),
            num(c.time_scale)
        ),
    );
    if let Some(note) = &c.note {
        row("note", escape(note));
    }
    row("seed", c.seed.to_string());
    row("software", escape(&c.software_version));
    for (kind, path, sha) in &c.files {
        row(kind, format!("<code>{}</code><br/><code>sha256 {}</code>", escape(path), escape(sha)));
    }
    row("record head", data.head.as_ref().map_or("-".to_owned(), |hash| format!("<code>{}</code>", escape(hash))));
    let _ = writeln!(h, "</dl>\n</section>");

    for (plot, svg) in svgs {
        let name = plot.name();
        let _ = writeln!(
            h,
            "<section id=\"{name}\">\n<h2>{}</h2>\n<p class=\"what\">{}</p>\n<figure>\n{}\n</figure>\n\
             <p class=\"files\">Also as <a href=\"{name}.svg\">{name}.svg</a> and <a href=\"{name}.png\">{name}.png</a>.</p>\n\
             </section>",
            escape(plot.title()),
            escape(&what(*plot, data)),
            svg.trim()
        );
    }

    // The experiments, a row each.
    let _ = write!(
        h,
        "<section id=\"experiments\">\n<h2>Experiments</h2>\n<p class=\"what\">Every experiment with its \
         parameters, its result and, for the ones the model chose, what it predicted. The best is highlighted.</p>\n\
         <div class=\"scroll\">\n<table>\n<thead><tr><th class=\"num\">#</th><th>status</th>"
    );
    for (name, unit) in &data.parameters {
        let _ = write!(h, "<th class=\"num\">{}</th>", escape(&with_unit(name, unit)));
    }
    let _ = writeln!(
        h,
        "<th class=\"num\">{}</th><th class=\"num\">predicted</th><th>chosen by</th><th class=\"num\">lab time</th>\
         </tr></thead>\n<tbody>",
        escape(&data.objective_label())
    );
    let best_seq = best.map(|b| b.seq);
    for e in &data.experiments {
        let class = if Some(e.seq) == best_seq {
            " class=\"best\""
        } else if e.status == "failed" {
            " class=\"failed\""
        } else {
            ""
        };
        let _ = write!(h, "<tr{class}><td class=\"num\">{}</td><td>{}", e.seq, escape(&e.status));
        if let Some(error) = &e.error {
            let _ = write!(h, ": {}", escape(error));
        }
        let _ = write!(h, "</td>");
        for (name, _) in &data.parameters {
            let _ = write!(h, "<td class=\"num\">{}</td>", e.values.get(name).map_or("-".to_owned(), |v| num(*v)));
        }
        let _ = writeln!(
            h,
            "<td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
            e.objective.map_or("-".to_owned(), num),
            e.predicted.map_or("-".to_owned(), |(m, sd)| format!("{} \u{b1} {}", num(m), num(sd))),
            escape(e.strategy.as_deref().unwrap_or("-")),
            e.finished_at.map_or("running".to_owned(), |f| human_seconds(f - e.started_at)),
        );
    }
    let _ = writeln!(h, "</tbody>\n</table>\n</div>\n</section>");
    h.push_str(&durations_section(&data.durations));
    let _ = writeln!(
        h,
        "<footer>Made by <code>lab report</code> from the record alone; check the record with \
         <code>lab verify --db {}</code> against the head above.</footer>\n</main>\n</body>\n</html>",
        escape(&db.display().to_string())
    );
    h
}

/// The report's section: a table of expected against real durations.
fn durations_section(rows: &[super::durations::DurationRow]) -> String {
    let mut h = String::new();
    if rows.is_empty() {
        return h;
    }
    let _ = writeln!(
        h,
        "<section id=\"durations\">\n<h2>Step durations</h2>\n<p class=\"what\">Each instrument's steps: the mean \
         duration <code>lab plan</code> expects from the lab file (each plate's temperature and the gantry's place \
         followed through this run) against the mean real one. Where they differ, <code>lab plan --calibrate</code> \
         fits the rates to this record.</p>\n<div class=\"scroll\">\n<table>\n<thead><tr><th>instrument</th>\
         <th>operation</th><th class=\"num\">steps</th><th class=\"num\">expected, s</th><th class=\"num\">real, s</th>\
         <th class=\"num\">real / expected</th></tr></thead>\n<tbody>"
    );
    for r in rows {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{:.1}</td><td class=\"num\">{:.1}</td>\
             <td class=\"num\">{:.2}</td></tr>",
            escape(&r.instrument),
            escape(&r.operation),
            r.steps,
            r.expected,
            r.real,
            r.real / r.expected.max(1e-9)
        );
    }
    let _ = writeln!(h, "</tbody>\n</table>\n</div>\n</section>");
    h
}
