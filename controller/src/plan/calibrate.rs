//! `lab plan --calibrate`: each instrument's duration rates fitted to the steps recorded runs hold.
//!
//! A record holds every step with its instrument, its task (places resolved), when it started and ended, and for a
//! heat how long the driver saw the plate ramp. For each instrument of the lab being planned that the record's
//! runs used, and for each kind of rate (`schedule::estimate::Rates`):
//! - a pump's plunger speed, time per stroke and fixed time: least squares on the dispensed increments and strokes;
//! - a plate's heating rate, settling time and cooling time constant: the reported ramps against the model's, each
//!   plate's temperature at a heat's start followed from its previous heats' set points and real end times (a
//!   search over a grid, refined around its best point); its fixed time: what remains of each heat and stir beyond
//!   its ramp and hold;
//! - a gantry's speed and fixed time: least squares on each transfer's path, from where its previous transfer left
//!   the head;
//! - a spectrometer's or any other instrument's fixed time: the median of what remains beyond integration;
//! - the start-up: the median time from a run's start to its first step.
//!
//! Medians, and least squares after dropping points more than three median deviations out, keep a step slowed by a
//! busy computer (a simulated lab runs hundreds of times faster than the wall) from pulling a fit. Each least-squares
//! fit is pulled gently toward the lab file's defaults, so a record in which every dispense has one stroke still
//! gives a sound time per stroke. Rates fitted from a simulated run include what its acceleration adds (the wall
//! time of each command, scaled), so they predict runs at the same time scale.

use std::path::{Path, PathBuf};

use devices::Lab;
use devices::Task;
use devices::lab::Point;

use crate::inspect::report::durations::recorded_steps;
use crate::schedule::estimate::{Durations, Rates, Recorded, plate_temperature};

/// Durations fitted to recorded runs.
#[derive(Debug, Clone)]
pub struct Fit {
    /// The fitted durations (the defaults for instruments the runs did not use).
    pub durations: Durations,
    /// Runs read.
    pub runs: usize,
    /// Steps used.
    pub steps: usize,
    /// What moved, a line per instrument, for people.
    pub changes: Vec<String>,
}

/// One recorded run: its lab, its steps in order of start, and when its first step started.
struct Run {
    lab: Lab,
    steps: Vec<Recorded>,
}

/// Fits the rates of `lab`'s instruments to every finished run in the records.
pub fn fit(lab: &Lab, records: &[PathBuf]) -> Result<Fit, String> {
    let mut runs = Vec::new();
    for path in records {
        runs.extend(read_runs(path)?);
    }
    let runs: Vec<Run> = runs.into_iter().filter(|r| !r.steps.is_empty()).collect();
    if runs.is_empty() {
        return Err(format!(
            "{} hold no run with finished steps to fit durations to",
            records.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        ));
    }
    let defaults = Durations::of(lab);
    let mut durations = defaults.clone();
    let mut changes = Vec::new();
    let mut used = 0;
    for spec in &lab.instruments {
        let before = defaults.rates(spec);
        // Each run's steps on this instrument, with that run's lab (for deck points and the recorded settings).
        let samples: Vec<(&Run, Vec<&Recorded>)> = runs
            .iter()
            .map(|r| (r, r.steps.iter().filter(|s| s.instrument == spec.name).collect::<Vec<_>>()))
            .filter(|(_, s)| !s.is_empty())
            .collect();
        let n: usize = samples.iter().map(|(_, s)| s.len()).sum();
        if n == 0 {
            continue;
        }
        let after = match before {
            Rates::Pump { speed, per_stroke, fixed, min_pause } => {
                fit_pump(spec, &samples, (speed, per_stroke, fixed), min_pause)
            }
            Rates::Thermal { .. } => fit_thermal(&samples, before),
            Rates::Gantry { speed, fixed } => fit_gantry(&samples, (speed, fixed)),
            Rates::Spectrometer { integration, .. } => {
                let rest: Vec<f64> = samples
                    .iter()
                    .flat_map(|(_, s)| s.iter())
                    .filter(|s| matches!(s.task, Task::Measure { .. }))
                    .map(|s| s.finished - s.started - integration)
                    .collect();
                median(&rest).map(|m| Rates::Spectrometer { integration, fixed: m.max(0.0) })
            }
            Rates::Flow { rate, poll, per_poll, stall, .. } => {
                // The rate is the one the instrument is told; what remains beyond the flow and its looks is fixed.
                let rest: Vec<f64> = samples
                    .iter()
                    .flat_map(|(_, s)| s.iter())
                    .filter_map(|s| match &s.task {
                        Task::Dispense { volume } => {
                            // Without the expected cost of lost replies, which the median step did not meet.
                            let zero = Rates::Flow { rate, poll, per_poll, stall, fixed: 0.0 };
                            let action = protocols::Action::Dispense { volume: *volume, reagent: None };
                            Some(s.finished - s.started - zero.least(lab, spec, &action, &[]))
                        }
                        _ => None,
                    })
                    .collect();
                median(&rest).map(|m| Rates::Flow { rate, poll, per_poll, stall, fixed: m.max(0.0) })
            }
            Rates::Fixed(s) => {
                let all: Vec<f64> =
                    samples.iter().flat_map(|(_, x)| x.iter()).map(|x| x.finished - x.started).collect();
                Some(Rates::Fixed(median(&all).unwrap_or(s)))
            }
        };
        if let Some(after) = after {
            used += n;
            changes.push(format!("{:<12} {} steps: {}", spec.name, n, describe(&before, &after)));
            durations.rates.insert(spec.name.clone(), after);
        }
    }
    let starts: Vec<f64> = runs.iter().filter_map(|r| r.steps.first().map(|s| s.started)).collect();
    if let Some(m) = median(&starts) {
        changes.push(format!("start-up     {} runs: {:.0} s -> {:.0} s", starts.len(), defaults.startup, m));
        durations.startup = m;
        // The recorded starts took what they took, lost replies and all.
        durations.lost_at_startup = (0.0, 0.0);
    }
    Ok(Fit { durations, runs: runs.len(), steps: used, changes })
}

/// Every run a record holds that has finished steps: its lab (as recorded) and its steps in order of start.
fn read_runs(path: &Path) -> Result<Vec<Run>, String> {
    let conn = crate::inspect::report::open_record(path).map_err(|e| format!("{}: {e}", path.display()))?;
    read_runs_from(&conn).map_err(|e| format!("{}: {e}", path.display()))
}

fn read_runs_from(conn: &rusqlite::Connection) -> rusqlite::Result<Vec<Run>> {
    let mut stmt =
        conn.prepare("SELECT id, lab_path, lab_text FROM campaigns WHERE status = 'finished' ORDER BY id")?;
    let campaigns: Vec<(i64, String, String)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_, _>>()?;
    let mut runs = Vec::new();
    for (id, path, text) in campaigns {
        // A lab the record holds was valid when it ran; one this version no longer reads is skipped.
        let Ok(lab) = devices::load_lab(protocols::SourceFile::new(path, text)) else { continue };
        runs.push(Run { lab, steps: recorded_steps(conn, id)? });
    }
    Ok(runs)
}

fn fit_pump(
    spec: &devices::InstrumentSpec,
    samples: &[(&Run, Vec<&Recorded>)],
    prior: (f64, f64, f64),
    min_pause: f64,
) -> Option<Rates> {
    let syringe = match &spec.driver {
        devices::lab::DriverConfig::CavroXCalibur(c) if c.syringe.0 > 0.0 => c.syringe.0,
        _ => return None,
    };
    let (speed, per_stroke, fixed) = prior;
    // The plunger's speed is the lab file's (the pump is told it); what remains of each dispense beyond the
    // plunger's travel is linear in (per_stroke, fixed).
    let mut rows = Vec::new();
    for s in samples.iter().flat_map(|(_, s)| s.iter()) {
        let Task::Dispense { volume } = &s.task else { continue };
        let increments = (volume.0 * 3000.0 / syringe).round();
        let strokes = (increments / 3000.0).ceil().max(1.0);
        let travel = (2.0 * increments / speed).max(strokes * min_pause);
        rows.push((vec![strokes, 1.0], s.finished - s.started - travel));
    }
    let theta = robust_least_squares(&rows, &[per_stroke, fixed])?;
    Some(Rates::Pump { speed, per_stroke: theta[0].max(0.0), fixed: theta[1].max(0.0), min_pause })
}

fn fit_gantry(samples: &[(&Run, Vec<&Recorded>)], prior: (f64, f64)) -> Option<Rates> {
    let mut rows = Vec::new();
    for (run, steps) in samples {
        let lab = &run.lab;
        let safe = lab.deck.safe_z;
        let mut at: Option<Point> = Some(Point { x: 0.0, y: 0.0, z: safe });
        for s in steps {
            let Task::Transfer { from, to } = &s.task else { continue };
            let (Some(a), Some(b)) = (lab.deck.point(from), lab.deck.point(to)) else { continue };
            let approach = at.map_or(0.0, |p| (safe - p.z).abs() + ((p.x - a.x).powi(2) + (p.y - a.y).powi(2)).sqrt());
            let across = ((a.x - b.x).powi(2) + (a.y - b.y).powi(2)).sqrt();
            let path = approach + 2.0 * (safe - a.z).max(0.0) + across + 2.0 * (safe - b.z).max(0.0);
            rows.push((vec![path, 1.0], s.finished - s.started));
            at = Some(Point { x: b.x, y: b.y, z: safe });
        }
    }
    let theta = robust_least_squares(&rows, &[1.0 / prior.0, prior.1])?;
    Some(Rates::Gantry { speed: 1.0 / theta[0].max(1e-6), fixed: theta[1].max(0.0) })
}

/// A heat's set point, hold, reported ramp, and the plate's last set point and real end time before it.
struct HeatSample {
    target: f64,
    hold: f64,
    duration: f64,
    ramp: Option<f64>,
    previous: Option<(f64, f64)>,
    started: f64,
}

fn fit_thermal(samples: &[(&Run, Vec<&Recorded>)], prior: Rates) -> Option<Rates> {
    let Rates::Thermal { ramp, cooling, settle, poll, tolerance, stall, wait, fixed } = prior else { return None };
    let mut heats = Vec::new();
    let mut stirs = Vec::new();
    for (_, steps) in samples {
        let mut previous: Option<(f64, f64)> = None;
        for s in steps {
            match &s.task {
                Task::Heat { temperature, duration, .. } | Task::HoldTemperature { temperature, duration } => {
                    heats.push(HeatSample {
                        target: temperature.0,
                        hold: duration.0,
                        duration: s.finished - s.started,
                        ramp: s.ramp,
                        previous,
                        started: s.started,
                    });
                    previous = Some((temperature.0, s.finished));
                }
                Task::Stir { duration, .. } => stirs.push(s.finished - s.started - duration.0),
                _ => {}
            }
        }
    }
    // The fixed time: what each heat took beyond its reported ramp and its hold, and each stir beyond its duration.
    let mut rest: Vec<f64> = heats.iter().filter_map(|h| h.ramp.map(|r| h.duration - r - h.hold)).collect();
    rest.extend(stirs);
    let fixed = median(&rest).map_or(fixed, |m| m.max(0.0));
    let with_ramp: Vec<&HeatSample> = heats.iter().filter(|h| h.ramp.is_some()).collect();
    let mut best = (ramp, cooling, settle);
    if !with_ramp.is_empty() {
        let loss = |(r, c, s): (f64, f64, f64)| -> f64 {
            let rates = Rates::Thermal { ramp: r, cooling: c, settle: s, poll, tolerance, stall, wait, fixed };
            with_ramp
                .iter()
                .map(|h| {
                    let from = plate_temperature(h.previous, h.started, c);
                    let reach = rates.reach(from, h.target);
                    let seen = if reach > 0.0 && poll > 0.0 { (reach / poll).ceil() * poll } else { reach };
                    let e = seen - h.ramp.unwrap_or(0.0);
                    // Absolute errors: a ramp that a busy computer stretched weighs no more than it is wrong.
                    e.abs()
                })
                .sum()
        };
        // A grid on logarithmic scales, then two rounds of a finer grid around the best point.
        let mut span = (3.0f64, 4.0f64, 60.0f64);
        let mut centre = best;
        let mut best_loss = loss(best);
        for round in 0..3 {
            let steps = if round == 0 { 12 } else { 8 };
            for i in 0..=steps {
                let r = centre.0 * span.0.powf(2.0 * i as f64 / steps as f64 - 1.0);
                for j in 0..=steps {
                    let c = centre.1 * span.1.powf(2.0 * j as f64 / steps as f64 - 1.0);
                    for k in 0..=steps {
                        let s = (centre.2 + span.2 * (2.0 * k as f64 / steps as f64 - 1.0)).max(0.0);
                        let l = loss((r, c, s));
                        if l < best_loss {
                            best_loss = l;
                            best = (r, c, s);
                        }
                    }
                }
            }
            centre = best;
            span = (span.0.sqrt(), span.1.sqrt(), span.2 / 4.0);
        }
    }
    Some(Rates::Thermal { ramp: best.0, cooling: best.1, settle: best.2, poll, tolerance, stall, wait, fixed })
}

/// Least squares pulled gently toward `prior` (a tenth of the data's weight), refitted once without the points more
/// than three median absolute deviations from the first fit.
fn robust_least_squares(rows: &[(Vec<f64>, f64)], prior: &[f64]) -> Option<Vec<f64>> {
    if rows.is_empty() {
        return None;
    }
    let first = ridge(rows, prior)?;
    let residuals: Vec<f64> = rows.iter().map(|(x, y)| y - dot(x, &first)).collect();
    let centre = median(&residuals)?;
    let deviations: Vec<f64> = residuals.iter().map(|r| (r - centre).abs()).collect();
    let mad = median(&deviations)?.max(1e-9);
    let kept: Vec<(Vec<f64>, f64)> = rows
        .iter()
        .zip(&residuals)
        .filter(|(_, r)| (*r - centre).abs() <= 3.0 * 1.4826 * mad)
        .map(|(row, _)| row.clone())
        .collect();
    if kept.len() < prior.len() { Some(first) } else { ridge(&kept, prior) }
}

/// Solves (XᵀX + λD) θ = Xᵀy + λD prior, with D the diagonal of XᵀX and λ a tenth divided by the number of rows.
fn ridge(rows: &[(Vec<f64>, f64)], prior: &[f64]) -> Option<Vec<f64>> {
    let p = prior.len();
    let mut a = vec![vec![0.0; p]; p];
    let mut b = vec![0.0; p];
    for (x, y) in rows {
        for i in 0..p {
            b[i] += x[i] * y;
            for j in 0..p {
                a[i][j] += x[i] * x[j];
            }
        }
    }
    let lambda = 0.1 / rows.len() as f64;
    for i in 0..p {
        let d = a[i][i].max(1e-12) * lambda;
        a[i][i] += d;
        b[i] += d * prior[i];
    }
    solve(a, b)
}

/// Gaussian elimination with partial pivoting.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for c in 0..n {
        let pivot = (c..n).max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))?;
        if a[pivot][c].abs() < 1e-15 {
            return None;
        }
        a.swap(c, pivot);
        b.swap(c, pivot);
        let (top, below) = a.split_at_mut(c + 1);
        let pivot_row = &top[c];
        for (r, row) in below.iter_mut().enumerate() {
            let f = row[c] / pivot_row[c];
            for (x, p) in row[c..].iter_mut().zip(&pivot_row[c..]) {
                *x -= f * p;
            }
            b[c + 1 + r] -= f * b[c];
        }
    }
    let mut x = vec![0.0; n];
    for r in (0..n).rev() {
        let s: f64 = (r + 1..n).map(|k| a[r][k] * x[k]).sum();
        x[r] = (b[r] - s) / a[r][r];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The median of finite values, if any.
fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

/// What moved between two rates of one instrument, for people.
fn describe(before: &Rates, after: &Rates) -> String {
    let pair = |name: &str, unit: &str, a: f64, b: f64| format!("{name} {a:.1} -> {b:.1} {unit}");
    match (before, after) {
        (
            Rates::Pump { speed: s0, per_stroke: p0, fixed: f0, .. },
            Rates::Pump { speed: s1, per_stroke: p1, fixed: f1, .. },
        ) => {
            [pair("plunger", "increments/s", *s0, *s1), pair("per stroke", "s", *p0, *p1), pair("fixed", "s", *f0, *f1)]
                .join(", ")
        }
        (
            Rates::Thermal { ramp: r0, cooling: c0, settle: s0, fixed: f0, .. },
            Rates::Thermal { ramp: r1, cooling: c1, settle: s1, fixed: f1, .. },
        ) => [
            pair("ramp", "degC/min", r0 * 60.0, r1 * 60.0),
            pair("cooling time constant", "min", c0 / 60.0, c1 / 60.0),
            pair("settle", "s", *s0, *s1),
            pair("commands", "s", *f0, *f1),
        ]
        .join(", "),
        (Rates::Gantry { speed: s0, fixed: f0 }, Rates::Gantry { speed: s1, fixed: f1 }) => {
            [pair("speed", "mm/s", *s0, *s1), pair("per transfer", "s", *f0, *f1)].join(", ")
        }
        (Rates::Spectrometer { fixed: f0, .. }, Rates::Spectrometer { fixed: f1, .. }) => {
            pair("beyond integration", "s", *f0, *f1)
        }
        (Rates::Flow { fixed: f0, .. }, Rates::Flow { fixed: f1, .. }) => pair("beyond the flow", "s", *f0, *f1),
        (Rates::Fixed(a), Rates::Fixed(b)) => pair("per action", "s", *a, *b),
        _ => "changed kind".to_owned(),
    }
}
