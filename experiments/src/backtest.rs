//! Backtests: a campaign's proposer run against a lookup table instead of a lab.
//!
//! A lookup table (a CSV file with one row per condition: the parameters, then the measured outputs) stands in
//! for the lab: each proposal is "measured" by looking up its row, and the proposer may only propose rows of the
//! table. Because every row is known, the result is exact and cheap: how many experiments the campaign's
//! strategy needs to find a top-1% condition, or the best one, against the number random search needs on
//! average ((N + 1) / (k + 1) draws for k targets among N rows). It is the lab-independent way to choose a
//! strategy before spending reagents (`lab campaign --backtest TABLE.csv CAMPAIGN`).
//!
//! The table's columns are matched to the campaign by name: one per varied parameter (numbers, or a categorical
//! parameter's level names or values), one per objective (a row whose objective cell is empty or not a number is
//! an experiment that failed). Rows outside the campaign's space (out of range, an unknown level, a fixed
//! parameter at another value, a constraint broken) are left out, and counted.
//!
//! The simulation ([`simulate`]) keeps `in_flight` experiments running: it asks for that many, then each time
//! the oldest finishes, tells its result and asks for one more with the others pending, as the controller does.

use std::collections::BTreeMap;
use std::fmt;

use crate::proposer::{MIN_DISTANCE, Outcome, Proposal, Proposer, distance2};
use crate::{Campaign, Objective, Point, Space, StopReason, hypervolume, pareto_front};

/// A table read from CSV: column names and, per row, each cell's text (trimmed, unquoted).
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// The header's names, in order.
    pub columns: Vec<String>,
    /// The rows; every row has one cell per column.
    pub rows: Vec<Vec<String>>,
}

/// Why a CSV text is not a table.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DatasetError {
    /// There is no header line.
    #[error("the table is empty: it needs a header line naming the columns")]
    Empty,
    /// A row has more or fewer cells than the header.
    #[error("line {line} has {found} cells, but the header names {expected} columns")]
    Width {
        /// The line (1-based).
        line: usize,
        /// Cells found.
        found: usize,
        /// Columns in the header.
        expected: usize,
    },
    /// A quoted cell is not closed.
    #[error("line {line} has a quote that is never closed")]
    Quote {
        /// The line (1-based) where the cell starts.
        line: usize,
    },
    /// The header names a column twice.
    #[error("the header names column `{name}` twice")]
    Duplicate {
        /// The name.
        name: String,
    },
}

impl Dataset {
    /// Parses comma-separated text with a header line (RFC 4180 quoting: `"a, b"`, `""` for a quote inside).
    /// Blank lines are skipped.
    pub fn parse_csv(text: &str) -> Result<Dataset, DatasetError> {
        let mut records: Vec<(usize, Vec<String>)> = Vec::new();
        let mut cell = String::new();
        let mut record: Vec<String> = Vec::new();
        let mut quoted = false;
        let mut line = 1;
        let mut start = 1;
        let mut chars = text.chars().peekable();
        let mut was_quoted = false;
        while let Some(c) = chars.next() {
            if quoted {
                match c {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        cell.push('"');
                    }
                    '"' => quoted = false,
                    '\n' => {
                        line += 1;
                        cell.push(c);
                    }
                    _ => cell.push(c),
                }
                continue;
            }
            match c {
                '"' if cell.trim().is_empty() => {
                    cell.clear();
                    quoted = true;
                    was_quoted = true;
                }
                ',' => {
                    record.push(finish(&mut cell, &mut was_quoted));
                }
                '\r' if chars.peek() == Some(&'\n') => {}
                '\n' | '\r' => {
                    record.push(finish(&mut cell, &mut was_quoted));
                    if !(record.len() == 1 && record[0].is_empty()) {
                        records.push((start, std::mem::take(&mut record)));
                    }
                    record.clear();
                    line += 1;
                    start = line;
                }
                _ => cell.push(c),
            }
        }
        if quoted {
            return Err(DatasetError::Quote { line: start });
        }
        if !cell.is_empty() || !record.is_empty() || was_quoted {
            record.push(finish(&mut cell, &mut was_quoted));
            if !(record.len() == 1 && record[0].is_empty()) {
                records.push((start, record));
            }
        }
        let mut records = records.into_iter();
        let (_, columns) = records.next().ok_or(DatasetError::Empty)?;
        for (i, c) in columns.iter().enumerate() {
            if columns[..i].contains(c) {
                return Err(DatasetError::Duplicate { name: c.clone() });
            }
        }
        let mut rows = Vec::new();
        for (line, r) in records {
            if r.len() != columns.len() {
                return Err(DatasetError::Width { line, found: r.len(), expected: columns.len() });
            }
            rows.push(r);
        }
        Ok(Dataset { columns, rows })
    }

    /// The position of the column called `name`.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }
}

fn finish(cell: &mut String, was_quoted: &mut bool) -> String {
    let text = if *was_quoted { cell.clone() } else { cell.trim().to_owned() };
    cell.clear();
    *was_quoted = false;
    text
}

/// Why a backtest cannot run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BacktestError {
    /// The table has no column for a varied parameter or an objective.
    #[error("the table has no column `{name}` (its columns are: {columns})")]
    MissingColumn {
        /// The parameter or output.
        name: String,
        /// The table's columns, comma-separated.
        columns: String,
    },
    /// No row of the table lies in the campaign's space.
    #[error("none of the table's {rows} rows lies in the campaign's space")]
    NoRows {
        /// How many rows the table has.
        rows: usize,
    },
}

/// The rows of a table that lie in a campaign's space, as points and what measuring them gives.
#[derive(Debug, Clone)]
pub struct Lookup {
    /// The points, one per usable row, in table order.
    pub points: Vec<Point>,
    /// Each point's outputs (the objectives' columns), or `None` where the table records a failure.
    pub outcomes: Vec<Option<BTreeMap<String, f64>>>,
    /// Rows left out because they lie outside the space.
    pub excluded: usize,
    /// Rows left out because an earlier row has the same point.
    pub duplicates: usize,
}

impl Lookup {
    /// Matches `dataset`'s rows to `space` (fixed parameters, if the table has columns for them, must match
    /// `fixed`) and reads `objectives` from their columns.
    pub fn new(
        space: &Space,
        objectives: &[Objective],
        fixed: &BTreeMap<String, f64>,
        dataset: &Dataset,
    ) -> Result<Lookup, BacktestError> {
        let missing =
            |name: &str| BacktestError::MissingColumn { name: name.to_owned(), columns: dataset.columns.join(", ") };
        let dims: Vec<usize> = space
            .dims()
            .iter()
            .map(|d| dataset.column(&d.name).ok_or_else(|| missing(&d.name)))
            .collect::<Result<_, _>>()?;
        let outputs: Vec<usize> = objectives
            .iter()
            .map(|o| dataset.column(&o.output).ok_or_else(|| missing(&o.output)))
            .collect::<Result<_, _>>()?;
        let fixed_columns: Vec<(usize, f64)> =
            fixed.iter().filter_map(|(n, v)| dataset.column(n).map(|c| (c, *v))).collect();
        let mut lookup = Lookup { points: Vec::new(), outcomes: Vec::new(), excluded: 0, duplicates: 0 };
        let mut units: Vec<Vec<f64>> = Vec::new();
        'rows: for row in &dataset.rows {
            for (c, v) in &fixed_columns {
                if row[*c].parse::<f64>().ok().is_none_or(|x| (x - v).abs() > 1e-9 * v.abs().max(1.0)) {
                    lookup.excluded += 1;
                    continue 'rows;
                }
            }
            let mut point = Point::new();
            for (d, c) in space.dims().iter().zip(&dims) {
                let cell = row[*c].as_str();
                let value = match d.levels() {
                    Some(levels) => levels
                        .iter()
                        .find(|l| l.label == cell)
                        .map(|l| l.value)
                        .or_else(|| cell.parse::<f64>().ok().filter(|v| d.contains(*v))),
                    None => cell.parse::<f64>().ok(),
                };
                match value {
                    Some(v) => {
                        point.insert(d.name.clone(), v);
                    }
                    None => {
                        lookup.excluded += 1;
                        continue 'rows;
                    }
                }
            }
            if !space.contains(&point) {
                lookup.excluded += 1;
                continue;
            }
            let Ok(unit) = space.to_unit(&point) else {
                lookup.excluded += 1;
                continue;
            };
            if units.iter().any(|u| distance2(u, &unit) < MIN_DISTANCE * MIN_DISTANCE) {
                lookup.duplicates += 1;
                continue;
            }
            let values: Option<BTreeMap<String, f64>> = objectives
                .iter()
                .zip(&outputs)
                .map(|(o, c)| row[*c].parse::<f64>().ok().filter(|v| v.is_finite()).map(|v| (o.output.clone(), v)))
                .collect();
            units.push(unit);
            lookup.points.push(point);
            lookup.outcomes.push(values);
        }
        if lookup.points.is_empty() {
            return Err(BacktestError::NoRows { rows: dataset.rows.len() });
        }
        Ok(lookup)
    }

    /// The outcome of the row at `point` (which must be one of [`Lookup::points`] as a proposer returns it).
    pub fn measure(&self, space: &Space, point: &Point) -> Option<BTreeMap<String, f64>> {
        let u = space.to_unit(point).ok()?;
        let i = self
            .points
            .iter()
            .position(|p| space.to_unit(p).is_ok_and(|v| distance2(&u, &v) < MIN_DISTANCE * MIN_DISTANCE))?;
        self.outcomes[i].clone()
    }
}

/// One simulated experiment: what was proposed, and what the table (or function) gave.
#[derive(Debug, Clone)]
pub struct Step {
    /// The proposal, with its provenance.
    pub proposal: Proposal,
    /// The outputs measured, or `None` if the experiment failed.
    pub outputs: Option<BTreeMap<String, f64>>,
}

/// Runs `proposer` for up to `budget` experiments with `in_flight` running at once, measuring each with
/// `measure`. Stops early when the proposer says so ([`Proposer::should_stop`]) or has nothing left to propose.
/// Returns the experiments in the order they finished, and why the run stopped early, if it did.
pub fn simulate(
    proposer: &mut dyn Proposer,
    budget: usize,
    in_flight: usize,
    measure: &mut dyn FnMut(&Point) -> Option<BTreeMap<String, f64>>,
) -> (Vec<Step>, Option<StopReason>) {
    let in_flight = in_flight.max(1);
    let mut running: std::collections::VecDeque<Proposal> = proposer.ask(in_flight.min(budget), &[]).into();
    let mut asked = running.len();
    let mut steps = Vec::with_capacity(budget);
    // A first ask that comes back empty (a space with no point) ends the run before anything runs, with the
    // proposer's reason.
    let mut stopped =
        (running.is_empty() && budget > 0).then(|| proposer.should_stop().unwrap_or(StopReason::Exhausted));
    while let Some(p) = running.pop_front() {
        let outputs = measure(&p.values);
        proposer.tell_outcome(Outcome { values: p.values.clone(), outputs: outputs.clone() });
        steps.push(Step { proposal: p, outputs });
        if stopped.is_none() {
            stopped = proposer.should_stop();
        }
        if stopped.is_none() && asked < budget {
            let pending: Vec<Point> = running.iter().map(|p| p.values.clone()).collect();
            let more = proposer.ask(1, &pending);
            if more.is_empty() && running.is_empty() {
                stopped = proposer.should_stop().or(Some(StopReason::Exhausted));
            }
            asked += more.len();
            running.extend(more);
        }
    }
    (steps, stopped)
}

/// Settings of [`run_backtest`]; anything not given comes from the campaign.
#[derive(Debug, Clone, Default)]
pub struct BacktestOptions {
    /// The seed (the campaign's when `None`).
    pub seed: Option<u64>,
    /// The number of experiments (the campaign's budget, at most the table's rows, when `None`).
    pub budget: Option<usize>,
    /// How many run at once (the campaign's `in_flight` when `None`).
    pub in_flight: Option<usize>,
}

/// What a backtest found, against what the table holds.
#[derive(Debug, Clone)]
pub struct BacktestReport {
    /// The campaign's name.
    pub campaign: String,
    /// The proposer's name.
    pub proposer: String,
    /// The objectives.
    pub objectives: Vec<Objective>,
    /// The rows of the table, and how many were usable.
    pub rows: usize,
    /// The usable rows (the pool proposals came from).
    pub pool: usize,
    /// Rows outside the campaign's space.
    pub excluded: usize,
    /// Rows repeating an earlier row's point.
    pub duplicates: usize,
    /// The seed, budget and number in flight used.
    pub seed: u64,
    /// The budget used.
    pub budget: usize,
    /// The number in flight used.
    pub in_flight: usize,
    /// Every experiment, in the order they finished.
    pub steps: Vec<Step>,
    /// Why the run stopped before the budget, if it did.
    pub stopped: Option<StopReason>,
    /// The best value of the first objective in the table.
    pub table_best: Option<f64>,
    /// The value a row must reach to be in the table's top 1% (the `k`-th best, `k = ⌈N / 100⌉`).
    pub top_threshold: Option<f64>,
    /// How many rows reach it.
    pub top_count: usize,
    /// The experiment (1-based) that first reached the top 1%, if one did.
    pub to_top: Option<usize>,
    /// The experiment that first found the table's best value, if one did.
    pub to_best: Option<usize>,
    /// With several objectives: the hypervolume of the measured Pareto front and of the table's, with the
    /// table's worst values as the reference point.
    pub hypervolume: Option<(f64, f64)>,
}

impl BacktestReport {
    /// The average number of random draws (without replacement) needed to hit one of `k` targets among `n`.
    pub fn random_draws(n: usize, k: usize) -> f64 {
        (n as f64 + 1.0) / (k as f64 + 1.0)
    }
}

/// Runs `campaign`'s proposer against `dataset` as a lookup table.
pub fn run_backtest(
    campaign: &Campaign,
    dataset: &Dataset,
    options: &BacktestOptions,
) -> Result<BacktestReport, BacktestError> {
    let lookup = Lookup::new(&campaign.space, &campaign.objectives, &campaign.fixed, dataset)?;
    let seed = options.seed.unwrap_or(campaign.seed);
    let budget = options.budget.unwrap_or(campaign.budget).min(lookup.points.len());
    let in_flight = options.in_flight.unwrap_or(campaign.in_flight).max(1);
    let mut proposer = campaign.build_proposer_over(lookup.points.clone(), seed);
    let space = campaign.space.clone();
    let (steps, stopped) = simulate(proposer.as_mut(), budget, in_flight, &mut |p| lookup.measure(&space, p));
    Ok(report(campaign, proposer.name(), dataset.rows.len(), &lookup, (seed, budget, in_flight), steps, stopped))
}

fn report(
    campaign: &Campaign,
    proposer: &str,
    rows: usize,
    lookup: &Lookup,
    settings: (u64, usize, usize),
    steps: Vec<Step>,
    stopped: Option<StopReason>,
) -> BacktestReport {
    let objectives = campaign.objectives.clone();
    let first = objectives[0].clone();
    let mut values: Vec<f64> = lookup.outcomes.iter().filter_map(|o| o.as_ref().map(|m| m[&first.output])).collect();
    // Best first.
    values.sort_by(|a, b| first.direction.internal(*a).total_cmp(&first.direction.internal(*b)));
    let table_best = values.first().copied();
    let k = lookup.points.len().div_ceil(100);
    let top_threshold = values.get(k.saturating_sub(1)).copied();
    let reaches = |v: f64, t: f64| !first.direction.better(t, v);
    let top_count = top_threshold.map_or(0, |t| values.iter().filter(|v| reaches(**v, t)).count());
    let position = |t: Option<f64>| {
        let t = t?;
        steps.iter().position(|s| s.outputs.as_ref().is_some_and(|o| reaches(o[&first.output], t))).map(|i| i + 1)
    };
    let hypervolume = (objectives.len() > 1).then(|| {
        let all: Vec<Vec<f64>> = lookup
            .outcomes
            .iter()
            .filter_map(|o| o.as_ref().map(|m| objectives.iter().map(|ob| m[&ob.output]).collect()))
            .collect();
        let reference: Vec<f64> = objectives
            .iter()
            .enumerate()
            .map(|(j, o)| {
                all.iter()
                    .map(|v| v[j])
                    .fold(None, |w: Option<f64>, x| Some(w.map_or(x, |w| if o.direction.better(w, x) { x } else { w })))
                    .unwrap_or(0.0)
            })
            .collect();
        let found: Vec<Vec<f64>> = steps
            .iter()
            .filter_map(|s| s.outputs.as_ref().map(|m| objectives.iter().map(|ob| m[&ob.output]).collect()))
            .collect();
        (hypervolume(&objectives, &found, &reference), hypervolume(&objectives, &all, &reference))
    });
    let (seed, budget, in_flight) = settings;
    let to_top = position(top_threshold);
    let to_best = position(table_best);
    BacktestReport {
        campaign: campaign.name.clone(),
        proposer: proposer.to_owned(),
        objectives,
        rows,
        pool: lookup.points.len(),
        excluded: lookup.excluded,
        duplicates: lookup.duplicates,
        seed,
        budget,
        in_flight,
        to_top,
        to_best,
        steps,
        stopped,
        table_best,
        top_threshold,
        top_count,
        hypervolume,
    }
}

impl fmt::Display for BacktestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "backtest of campaign `{}` ({}): {} experiments, {} in flight, seed {}",
            self.campaign,
            self.proposer,
            self.steps.len(),
            self.in_flight,
            self.seed
        )?;
        writeln!(
            f,
            "table: {} rows, {} in the campaign's space ({} outside it, {} repeated)",
            self.rows, self.pool, self.excluded, self.duplicates
        )?;
        let outputs: Vec<&str> = self.objectives.iter().map(|o| o.output.as_str()).collect();
        writeln!(f)?;
        write!(f, "{:>4}  {:<26}", "#", "strategy")?;
        for o in &outputs {
            write!(f, "  {o:>12}")?;
        }
        writeln!(f, "  parameters")?;
        let first = &self.objectives[0];
        let mut best: Option<f64> = None;
        for (i, s) in self.steps.iter().enumerate() {
            write!(f, "{:>4}  {:<26}", i + 1, truncate(&s.proposal.strategy, 26))?;
            for o in &outputs {
                match s.outputs.as_ref().and_then(|m| m.get(*o)) {
                    Some(v) => write!(f, "  {:>12}", crate::proposer::short(*v))?,
                    None => write!(f, "  {:>12}", "failed")?,
                }
            }
            let params: Vec<String> = s
                .proposal
                .values
                .iter()
                .map(|(k, v)| match s.proposal.labels.get(k) {
                    Some(l) => format!("{k}={l}"),
                    None => format!("{k}={}", crate::proposer::short(*v)),
                })
                .collect();
            let v = s.outputs.as_ref().and_then(|m| m.get(&first.output)).copied();
            let marker = match (v, best) {
                (Some(v), None) => {
                    best = Some(v);
                    " *"
                }
                (Some(v), Some(b)) if first.direction.better(v, b) => {
                    best = Some(v);
                    " *"
                }
                _ => "",
            };
            writeln!(f, "  {}{marker}", params.join(" "))?;
        }
        writeln!(f)?;
        if let Some(reason) = &self.stopped {
            writeln!(f, "stopped early: {reason}")?;
        }
        if let (Some(tb), Some(tt)) = (self.table_best, self.top_threshold) {
            writeln!(
                f,
                "best `{}` found: {} (table best {}); top 1% (`{}` {} {}, {} rows) reached at experiment {}, the best at {}",
                first.output,
                best.map_or("none".to_owned(), crate::proposer::short),
                crate::proposer::short(tb),
                first.output,
                if first.direction == crate::Direction::Maximize { ">=" } else { "<=" },
                crate::proposer::short(tt),
                self.top_count,
                self.to_top.map_or("never".to_owned(), |n| n.to_string()),
                self.to_best.map_or("never".to_owned(), |n| n.to_string()),
            )?;
            writeln!(
                f,
                "random search needs {:.1} experiments on average to reach the top 1%, {:.1} to find the best",
                BacktestReport::random_draws(self.pool, self.top_count),
                BacktestReport::random_draws(self.pool, 1)
            )?;
        }
        if let Some((found, table)) = self.hypervolume {
            let measured: Vec<Vec<f64>> = self
                .steps
                .iter()
                .filter_map(|s| s.outputs.as_ref().map(|m| self.objectives.iter().map(|o| m[&o.output]).collect()))
                .collect();
            let front = pareto_front(&self.objectives, &measured);
            writeln!(
                f,
                "Pareto front: {} experiments; hypervolume {} of the table's {} ({:.1}%)",
                front.len(),
                crate::proposer::short(found),
                crate::proposer::short(table),
                if table > 0.0 { 100.0 * found / table } else { 0.0 }
            )?;
        }
        Ok(())
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_owned() } else { s.chars().take(n - 1).chain(['…']).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_blank_lines_and_widths() {
        let d = Dataset::parse_csv("a,b , c\r\n1, \"x, \"\"y\"\"\",3\n\n4,5,\n").unwrap();
        assert_eq!(d.columns, vec!["a", "b", "c"]);
        assert_eq!(d.rows, vec![vec!["1", "x, \"y\"", "3"], vec!["4", "5", ""]]);
        assert_eq!(Dataset::parse_csv("a,b\n1\n"), Err(DatasetError::Width { line: 2, found: 1, expected: 2 }));
        assert_eq!(Dataset::parse_csv(""), Err(DatasetError::Empty));
        assert_eq!(Dataset::parse_csv("a,\"b\n"), Err(DatasetError::Quote { line: 1 }));
        assert_eq!(Dataset::parse_csv("a,a\n"), Err(DatasetError::Duplicate { name: "a".into() }));
        assert_eq!(Dataset::parse_csv("a,b\n1,2").unwrap().rows, vec![vec!["1", "2"]]);
    }
}
