//! The live view of a running campaign: a progress bar, what each instrument is doing, the best result so far and
//! an estimate of the time left.
//!
//! On a terminal the view redraws in place (indicatif); when stderr is not a terminal (CI, a log file, `nohup`) it
//! prints one plain line whenever an experiment ends or a step's outcome becomes unknown, so logs stay readable.
//! The view only reads the world, after each frame, and redraws at most ten times a second, so it costs the
//! scheduler nothing measurable. Log lines from `tracing` go through [`LogWriter`], which lifts the view out of the
//! way while a line is written, so logs and the view never overwrite each other.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bevy_ecs::prelude::*;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::inspect::report::human_seconds;
use crate::inspect::status::lab_seconds_left;
use crate::schedule::components::{Availability, Experiment, Instrument, Step, StepState};
use crate::schedule::resources::{CampaignState, LabClock, Source};

/// The view drawn on the terminal now, if any, for [`LogWriter`].
static ACTIVE: Mutex<Option<MultiProgress>> = Mutex::new(None);

/// How often the view is redrawn at most.
const REFRESH: Duration = Duration::from_millis(100);

/// What one instrument is doing.
#[derive(Debug, Clone, PartialEq)]
pub struct InstrumentLine {
    /// Its name.
    pub name: String,
    /// What it does, for people: `idle`, `Heat react #7 for 12 min`, `OFFLINE: ...`.
    pub doing: String,
}

/// A campaign's progress, read from the world after a frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Experiments to run.
    pub budget: usize,
    /// Experiments started.
    pub started: usize,
    /// Experiments running.
    pub running: usize,
    /// Experiments that ended well.
    pub succeeded: usize,
    /// Experiments that ended badly.
    pub failed: usize,
    /// Whether an operator paused the campaign.
    pub paused: bool,
    /// The best experiment's number and objective.
    pub best: Option<(usize, f64)>,
    /// The objective's name and unit.
    pub objective: (String, String),
    /// Lab seconds since the campaign started.
    pub lab_now: f64,
    /// Lab seconds per wall second (infinite on a discrete-event clock, which keeps no pace against the wall).
    pub scale: f64,
    /// Every instrument, in the lab's order.
    pub instruments: Vec<InstrumentLine>,
    /// The record ids of steps whose outcome is unknown.
    pub unknown: Vec<i64>,
    /// The campaign has nothing left to do.
    pub finished: bool,
    /// Reagents whose bottles cannot serve the next experiment that needs them (held until `lab restock`).
    pub waiting: Vec<String>,
}

impl Snapshot {
    /// Reads the campaign's progress from a world.
    pub fn of(world: &World) -> Snapshot {
        let state = world.resource::<CampaignState>();
        // A discrete-event clock has no pace against the wall: its lab time runs as fast as the machine computes.
        let pace = |c: &devices::Clock| if c.is_discrete() { f64::INFINITY } else { c.scale().max(f64::MIN_POSITIVE) };
        let (lab_now, scale) = world.get_resource::<LabClock>().map_or((0.0, 1.0), |c| (c.now(), pace(&c.0)));
        let objective = match world.get_resource::<Source>() {
            Some(Source::Campaign(c)) => {
                let unit = c.protocol.output(&c.objective).map(|o| o.unit.symbol.to_owned()).unwrap_or_default();
                (c.objective.clone(), unit)
            }
            _ => ("objective".to_owned(), String::new()),
        };
        let mut instruments: Vec<(usize, InstrumentLine)> = world
            .try_query::<(&Instrument, &Availability)>()
            .map(|mut q| {
                q.iter(world)
                    .map(|(i, a)| (i.index, InstrumentLine { name: i.name.clone(), doing: doing(world, a, lab_now) }))
                    .collect()
            })
            .unwrap_or_default();
        instruments.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.name.cmp(&b.1.name)));
        let mut unknown: Vec<i64> = world
            .try_query::<(&Step, &StepState)>()
            .map(|mut q| {
                q.iter(world).filter(|(_, s)| matches!(s, StepState::Unknown { .. })).map(|(s, _)| s.id).collect()
            })
            .unwrap_or_default();
        unknown.sort_unstable();
        Snapshot {
            budget: state.budget,
            started: state.started,
            running: state.running,
            succeeded: state.succeeded,
            failed: state.failed,
            paused: state.paused,
            best: state.best.as_ref().map(|b| (b.seq, b.objective)),
            objective,
            lab_now,
            scale,
            instruments: instruments.into_iter().map(|(_, l)| l).collect(),
            unknown,
            finished: state.is_finished(),
            waiting: world
                .get_resource::<crate::schedule::stock::Stock>()
                .map(|s| s.waiting.keys().cloned().collect())
                .unwrap_or_default(),
        }
    }

    /// Experiments that have ended.
    pub fn done(&self) -> usize {
        self.succeeded + self.failed
    }

    /// The best result, for people: `1.0768 AU (#19)`.
    pub fn best_text(&self) -> String {
        match self.best {
            Some((seq, v)) => format!("{v:.4} {} (#{seq})", self.objective.1).replace("  ", " "),
            None => "-".to_owned(),
        }
    }

    /// The estimated time left, for people: `about 6 s (3.4 h of lab time)`.
    pub fn eta_text(&self) -> String {
        match lab_seconds_left(self.done(), self.budget, self.lab_now) {
            Some(left) if self.scale.is_finite() => {
                format!("about {} ({} of lab time)", human_seconds(left / self.scale), human_seconds(left))
            }
            Some(left) => format!("{} of lab time", human_seconds(left)),
            None => "after the first experiment".to_owned(),
        }
    }

    /// The one line that sums it up (the plain view prints it; the bar shows it beside itself).
    pub fn line(&self) -> String {
        let mut s = format!(
            "{} running, best {} {}, lab time {}",
            self.running,
            self.objective.0,
            self.best_text(),
            human_seconds(self.lab_now),
        );
        if !self.finished {
            s.push_str(&format!(", left {}", self.eta_text()));
        }
        if self.paused {
            s.push_str(", PAUSED");
        }
        if !self.waiting.is_empty() {
            s.push_str(&format!(", WAITING FOR RESTOCK: {} (lab restock REAGENT VOLUME)", self.waiting.join(" ")));
        }
        if !self.unknown.is_empty() {
            let ids: Vec<String> = self.unknown.iter().map(i64::to_string).collect();
            s.push_str(&format!(", UNKNOWN steps {} (lab confirm ID ...)", ids.join(" ")));
        }
        s
    }
}

/// What an instrument does, for people.
fn doing(world: &World, availability: &Availability, lab_now: f64) -> String {
    match availability {
        Availability::Idle => "idle".to_owned(),
        Availability::Busy { step } => {
            let Some(s) = world.get::<Step>(*step) else { return "busy".to_owned() };
            let seq = world.get::<Experiment>(s.experiment).map_or(0, |e| e.seq);
            let since = match world.get::<StepState>(*step) {
                Some(StepState::Running { started, .. }) => format!(" for {}", human_seconds(lab_now - started)),
                _ => String::new(),
            };
            format!("{:<9} {} of #{seq}{since}", s.work.name(), s.name)
        }
        Availability::Unknown { reason } => format!("UNKNOWN, read back and reconciled before other work: {reason}"),
        Availability::Offline { reason } => format!("OFFLINE: {reason}"),
    }
}

enum Mode {
    /// Bars redrawn in place.
    Bars { multi: MultiProgress, main: ProgressBar, lines: Vec<ProgressBar> },
    /// A plain line per change.
    Plain { reported: Option<(usize, usize, bool, usize)> },
    /// Nothing.
    Off,
}

/// The live view of a running campaign.
pub struct LiveView {
    mode: Mode,
    drawn: Option<Instant>,
}

impl LiveView {
    /// A view on stderr: bars on a terminal, plain lines otherwise, nothing if `enabled` is false.
    pub fn for_stderr(enabled: bool) -> LiveView {
        let mode = if !enabled {
            Mode::Off
        } else if std::io::stderr().is_terminal() {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
            let main = multi.add(ProgressBar::new(0));
            main.set_style(
                ProgressStyle::with_template(
                    "{spinner:.green} {prefix:.bold} [{bar:32.cyan/blue}] {pos}/{len} done  {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            main.enable_steady_tick(Duration::from_millis(120));
            *ACTIVE.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(multi.clone());
            Mode::Bars { multi, main, lines: Vec::new() }
        } else {
            Mode::Plain { reported: None }
        };
        LiveView { mode, drawn: None }
    }

    /// Brings the view up to date with the world; cheap to call after every frame.
    pub fn update(&mut self, world: &World) {
        if matches!(self.mode, Mode::Off) {
            return;
        }
        let finished = world.get_resource::<CampaignState>().is_none_or(CampaignState::is_finished);
        if !finished && self.drawn.is_some_and(|t| t.elapsed() < REFRESH) {
            return;
        }
        self.drawn = Some(Instant::now());
        let snap = Snapshot::of(world);
        self.show(&snap);
    }

    /// Shows a snapshot.
    pub fn show(&mut self, snap: &Snapshot) {
        match &mut self.mode {
            Mode::Off => {}
            Mode::Plain { reported } => {
                let key = (snap.done(), snap.unknown.len(), snap.paused, snap.waiting.len());
                if *reported != Some(key)
                    && (snap.done() > 0 || !snap.unknown.is_empty() || snap.paused || !snap.waiting.is_empty())
                {
                    *reported = Some(key);
                    eprintln!("  {:>3}/{} done  {}", snap.done(), snap.budget, snap.line());
                }
            }
            Mode::Bars { multi, main, lines } => {
                main.set_length(snap.budget as u64);
                main.set_position(snap.done() as u64);
                main.set_prefix("campaign");
                main.set_message(snap.line());
                while lines.len() < snap.instruments.len() {
                    let bar = multi.add(ProgressBar::new(1));
                    bar.set_style(
                        ProgressStyle::with_template("  {prefix:<12} {msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_bar()),
                    );
                    lines.push(bar);
                }
                for (bar, line) in lines.iter().zip(&snap.instruments) {
                    bar.set_prefix(line.name.clone());
                    bar.set_message(line.doing.clone());
                }
                if snap.finished {
                    self.finish();
                }
            }
        }
    }

    /// Takes the view off the terminal, leaving the final bar.
    pub fn finish(&mut self) {
        if let Mode::Bars { main, lines, .. } = &self.mode {
            for l in lines {
                l.finish_and_clear();
            }
            main.disable_steady_tick();
            main.finish();
            *ACTIVE.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        }
        self.mode = Mode::Off;
    }
}

impl Drop for LiveView {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Standard error, written around the live view if one is drawn: give it to `tracing_subscriber` as its writer.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let active = ACTIVE.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        match active {
            Some(multi) => multi.suspend(|| std::io::stderr().write_all(buf)).map(|()| buf.len()),
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LogWriter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            budget: 24,
            started: 12,
            running: 4,
            succeeded: 7,
            failed: 1,
            paused: false,
            best: Some((5, 1.07681)),
            objective: ("absorbance".to_owned(), "AU".to_owned()),
            lab_now: 4.0 * 3600.0,
            scale: 2000.0,
            instruments: vec![InstrumentLine { name: "pump_a".to_owned(), doing: "idle".to_owned() }],
            unknown: vec![],
            finished: false,
            waiting: vec![],
        }
    }

    #[test]
    fn the_estimate_follows_the_pace_so_far() {
        // Eight experiments took four lab hours, so sixteen more take eight: 14 400 s of wall time at 2000x.
        let s = snapshot();
        assert_eq!(s.eta_text(), "about 14 s (8.0 h of lab time)");
        assert_eq!(lab_seconds_left(0, 24, 100.0), None);
        // A discrete-event clock keeps no pace against the wall, so only the lab time left is said.
        let discrete = Snapshot { scale: f64::INFINITY, ..snapshot() };
        assert_eq!(discrete.eta_text(), "8.0 h of lab time");
    }

    #[test]
    fn the_line_names_the_best_and_the_unknown_steps() {
        let mut s = snapshot();
        s.unknown = vec![812, 815];
        let line = s.line();
        assert!(line.contains("best absorbance 1.0768 AU (#5)"), "{line}");
        assert!(line.contains("UNKNOWN steps 812 815"), "{line}");
    }
}
