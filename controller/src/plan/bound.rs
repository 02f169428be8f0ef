//! Lower bounds on a campaign's lab time: figures no schedule of its experiments can beat.
//!
//! Every bound is built from each step's *least* duration ([`Durations::least`]: a heat on a plate already at its set
//! point, a transfer starting above its vessel and going to the nearest place it may go), so it holds however the
//! run's plates and gantry happen to stand. Three bounds, and the plan prints the largest:
//! - *the longest experiment*: its chain of steps (with minimum waits) from its first step to its last;
//! - *the in-flight limit*: at most `in_flight` experiments run at once and each lasts at least its chain, so the
//!   run lasts at least the sum of the chains divided by `in_flight`;
//! - *interchangeable instruments*: for every set of instruments that some steps can run on (both hotplates, the
//!   one gantry), the steps that can only run within the set need their work done there, shared among the set's
//!   instruments at best evenly, after the earliest such step can start and before the last one's followers end.
//!   On a set of heating instruments, the one that runs the hottest heat must also ramp from the room to it.
//!
//! Experiments whose parameters the plan cannot know (a model's choices) count with each step at its least over
//! the corners of the parameter box: every duration grows or shrinks with each parameter, never both. A campaign
//! that may stop early on its results counts only the experiments certain to run. The bounds assume every
//! experiment runs to its end (a failure cuts an experiment short) and exclude the run's start-up.

use std::collections::BTreeSet;

use devices::Lab;
use devices::lab::Point;
use experiments::Point as Values;
use protocols::{Action, Destination, Protocol};

use crate::schedule::estimate::{Durations, ROOM, Rates};

/// One experiment the bound counts.
#[derive(Debug, Clone)]
pub enum Counted {
    /// Its parameter values are known (a design the run will also use).
    Known(Values),
    /// A model will choose them: each step counts at its least over the parameter box's corners.
    Unknown,
}

/// The lower bounds of a plan, in lab seconds from the run's first step.
#[derive(Debug, Clone, PartialEq)]
pub struct Bounds {
    /// The longest experiment's chain of steps.
    pub chain: f64,
    /// The sum of the experiments' chains divided by the in-flight limit.
    pub in_flight: f64,
    /// The busiest set of interchangeable instruments: its bound, and the instruments' names.
    pub instruments: (f64, Vec<String>),
    /// Experiments counted (fewer than the budget when the campaign may stop early on its results).
    pub counted: usize,
    /// The campaign's time limit, if it has one: a run that reaches it stops starting experiments.
    pub limit: Option<f64>,
}

impl Bounds {
    /// The best (largest) of the bounds, capped by the time limit.
    pub fn best(&self) -> f64 {
        let b = self.chain.max(self.in_flight).max(self.instruments.0);
        self.limit.map_or(b, |l| b.min(l))
    }
}

/// What the bounds need to know about the campaign.
pub struct Campaign<'a> {
    /// The protocol.
    pub protocol: &'a Protocol,
    /// The lab.
    pub lab: &'a Lab,
    /// The durations (defaults, or calibrated).
    pub durations: &'a Durations,
    /// Parameter values every experiment shares (fixed by the campaign).
    pub fixed: &'a Values,
    /// The corners of the varied parameters' box, for experiments a model chooses.
    pub corners: Vec<Values>,
    /// Experiments at once.
    pub in_flight: usize,
    /// The time limit, if any.
    pub limit: Option<f64>,
}

/// One step's least duration, where it may run, and the least time before and after it within its experiment.
struct Least {
    duration: f64,
    candidates: BTreeSet<String>,
    head: f64,
    tail: f64,
    /// For a heat, its set point (known experiments only).
    heat: Option<f64>,
}

/// The lower bounds of running `experiments` of `campaign`.
pub fn bounds(campaign: &Campaign, experiments: &[Counted]) -> Result<Bounds, String> {
    let mut all: Vec<Least> = Vec::new();
    let mut chains = Vec::new();
    for e in experiments {
        let steps = match e {
            Counted::Known(values) => least_steps(campaign, std::slice::from_ref(values), true)?,
            Counted::Unknown => least_steps(campaign, &campaign.corners, false)?,
        };
        chains.push(steps.iter().map(|s| s.head + s.duration + s.tail).fold(0.0, f64::max));
        all.extend(steps);
    }
    let chain = chains.iter().copied().fold(0.0, f64::max);
    let in_flight = chains.iter().sum::<f64>() / campaign.in_flight.max(1) as f64;
    let sets: BTreeSet<&BTreeSet<String>> = all.iter().map(|s| &s.candidates).collect();
    let mut instruments = (0.0, Vec::new());
    for set in sets {
        let within: Vec<&Least> = all.iter().filter(|s| s.candidates.is_subset(set)).collect();
        let mut work: f64 = within.iter().map(|s| s.duration).sum();
        // The plate that runs the hottest heat ramps from the room to it at least once, at the fastest ramp any
        // instrument of the set has.
        let hottest = within.iter().filter_map(|s| s.heat).fold(f64::NEG_INFINITY, f64::max);
        let fastest = set
            .iter()
            .filter_map(|n| campaign.lab.instrument(n))
            .filter_map(|spec| match campaign.durations.rates(spec) {
                Rates::Thermal { ramp, tolerance, .. } => Some((ramp, tolerance)),
                _ => None,
            })
            .fold(None, |a: Option<(f64, f64)>, (r, t)| Some(a.map_or((r, t), |(ar, at)| (ar.max(r), at.max(t)))));
        if let Some((ramp, tolerance)) = fastest
            && hottest.is_finite()
        {
            work += (hottest - tolerance - ROOM).max(0.0) / ramp.max(1e-9);
        }
        let head = within.iter().map(|s| s.head).fold(f64::INFINITY, f64::min);
        let tail = within.iter().map(|s| s.tail).fold(f64::INFINITY, f64::min);
        let b = head + work / set.len().max(1) as f64 + tail;
        if within.is_empty() || !b.is_finite() {
            continue;
        }
        if b > instruments.0 {
            instruments = (b, set.iter().cloned().collect());
        }
    }
    Ok(Bounds { chain, in_flight, instruments, counted: experiments.len(), limit: campaign.limit })
}

/// Each step of one experiment at its least duration: for `choices` of parameter values, the least over them of
/// each step on its own.
fn least_steps(campaign: &Campaign, choices: &[Values], known: bool) -> Result<Vec<Least>, String> {
    let protocol = campaign.protocol;
    let lab = campaign.lab;
    let mut steps: Vec<Least> = Vec::new();
    for values in choices {
        let mut v = campaign.fixed.clone();
        v.extend(values.clone());
        let bound = protocol.bind(&v).map_err(|e| e.to_string())?;
        for (i, s) in bound.steps.iter().enumerate() {
            let destinations = destinations(lab, protocol, i, &s.action);
            let candidates: BTreeSet<String> = lab.candidates(&s.on).map(|c| c.name.clone()).collect();
            let duration = lab
                .candidates(&s.on)
                .map(|spec| campaign.durations.least(lab, spec, &s.action, &destinations))
                .fold(f64::INFINITY, f64::min);
            let duration = if duration.is_finite() { duration } else { 0.0 };
            let heat = match (&s.action, known) {
                (Action::Heat { temperature, .. } | Action::HoldTemperature { temperature, .. }, true) => {
                    Some(temperature.0)
                }
                _ => None,
            };
            match steps.get_mut(i) {
                Some(least) => least.duration = least.duration.min(duration),
                None => steps.push(Least { duration, candidates, head: 0.0, tail: 0.0, heat }),
            }
        }
        if steps.len() != bound.steps.len() {
            return Err("the protocol bound to different steps for different values".to_owned());
        }
    }
    let Some(values) = choices.first() else { return Ok(steps) };
    // Heads and tails along the protocol's order, with minimum waits.
    let mut v = campaign.fixed.clone();
    v.extend(values.clone());
    let bound = protocol.bind(&v).map_err(|e| e.to_string())?;
    for &i in protocol.topological_order() {
        let s = &bound.steps[i];
        let wait = s.rules.wait.map_or(0.0, |w| w.0);
        steps[i].head = s.after.iter().map(|&a| steps[a].head + steps[a].duration).fold(0.0, f64::max) + wait;
    }
    for &i in protocol.topological_order().iter().rev() {
        let s = &bound.steps[i];
        let wait = s.rules.wait.map_or(0.0, |w| w.0);
        let (d, t) = (steps[i].duration, steps[i].tail);
        for &a in &s.after {
            steps[a].tail = steps[a].tail.max(wait + d + t);
        }
    }
    Ok(steps)
}

/// The points a transfer step may take its vessel to (the rack's slots, or the deck positions the lab allows).
fn destinations(lab: &Lab, protocol: &Protocol, index: usize, action: &Action) -> Vec<Point> {
    match action {
        Action::Transfer { to: Destination::Rack } => {
            (0..lab.deck.rack.slots()).filter_map(|i| lab.deck.rack.slot(i)).collect()
        }
        Action::Transfer { .. } => {
            lab.transfer_positions(protocol, index).iter().filter_map(|p| lab.deck.positions.get(p).copied()).collect()
        }
        _ => Vec::new(),
    }
}

/// The corners of the box of a campaign's varied parameters (every level of a categorical one), at most `limit` of
/// them; past that, the low end of every range (durations grow with volumes, temperatures and hold times).
pub fn corners(space: &experiments::Space, limit: usize) -> Vec<Values> {
    let mut out: Vec<Values> = vec![Values::new()];
    for dim in space.dims() {
        let values: Vec<f64> = match dim.levels() {
            Some(levels) => levels.iter().map(|l| l.value).collect(),
            None => vec![dim.from_unit(0.0), dim.from_unit(1.0)],
        };
        if out.len() * values.len() > limit {
            let low = values.iter().copied().fold(f64::INFINITY, f64::min);
            out.iter_mut().for_each(|p| {
                p.insert(dim.name.clone(), low);
            });
            continue;
        }
        out = out
            .iter()
            .flat_map(|p| {
                values.iter().map(move |v| {
                    let mut q = p.clone();
                    q.insert(dim.name.clone(), *v);
                    q
                })
            })
            .collect();
    }
    out
}
