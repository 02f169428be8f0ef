//! Expected durations of actions, from what the lab file says about its instruments.
//!
//! The scheduler plans with these and corrects them as real durations arrive (`schedule::resources::Estimates`).
//! They come from the same physical settings the drivers use: plunger speed and syringe size, heating rate, gantry
//! feed rate and deck distances, spectrometer integration. Where a step may run on several instruments, the estimate
//! is for the slowest of them, so plans err on the safe side.

use devices::lab::{DriverConfig, InstrumentSpec, Lab, Point};
use protocols::{Action, InstrumentRef};

/// The expected lab seconds of `action` run on any instrument `on` names.
pub fn action(lab: &Lab, on: &InstrumentRef, action: &Action) -> f64 {
    lab.candidates(on).map(|spec| on_instrument(lab, spec, action)).fold(0.0, f64::max).max(1.0)
}

/// The expected lab seconds of `action` on one instrument.
pub fn on_instrument(lab: &Lab, spec: &InstrumentSpec, action: &Action) -> f64 {
    match (&spec.driver, action) {
        (DriverConfig::CavroXCalibur(c), Action::Dispense { volume, .. }) => {
            // Each stroke aspirates and dispenses (two plunger travels) and switches the valve twice.
            let strokes = (volume.0 / c.syringe.0).ceil().max(1.0);
            let steps = 3000.0 * volume.0 / c.syringe.0;
            2.0 * steps / f64::from(c.top_speed) + strokes * 1.0 + 1.0
        }
        (DriverConfig::IkaHotplate(_), Action::Heat { temperature, duration, .. }) => {
            // Plates ramp at about 10 degC per minute from room temperature.
            let ramp = ((temperature.0 - 22.0).max(0.0) / 10.0) * 60.0;
            ramp + duration.0 + 20.0
        }
        (DriverConfig::IkaHotplate(_), Action::Stir { duration, .. }) => duration.0 + 5.0,
        (DriverConfig::OceanFlame(f), Action::Measure { .. }) => f.integration.0 * f64::from(f.scans) + 5.0,
        (DriverConfig::GcodeGantry(g), Action::Transfer { .. }) => {
            // A transfer travels about the deck's extent twice, plus four vertical moves and two gripper dwells.
            let (lo, hi) = extent(lab);
            let across = ((hi.x - lo.x).powi(2) + (hi.y - lo.y).powi(2)).sqrt();
            let vertical = 4.0 * (lab.deck.safe_z - lo.z).max(0.0);
            (2.0 * across / 2.0 + vertical) / (g.feed_rate / 60.0) + 2.0
        }
        _ => 10.0,
    }
}

fn extent(lab: &Lab) -> (Point, Point) {
    let mut points: Vec<Point> = lab.deck.positions.values().copied().collect();
    points
        .extend((0..lab.deck.rack.slots()).step_by(lab.deck.rack.slots().max(1)).filter_map(|i| lab.deck.rack.slot(i)));
    if let Some(last) = lab.deck.rack.slot(lab.deck.rack.slots().saturating_sub(1)) {
        points.push(last);
    }
    let lo = points.iter().fold(Point { x: f64::MAX, y: f64::MAX, z: f64::MAX }, |a, p| Point {
        x: a.x.min(p.x),
        y: a.y.min(p.y),
        z: a.z.min(p.z),
    });
    let hi = points.iter().fold(Point { x: f64::MIN, y: f64::MIN, z: f64::MIN }, |a, p| Point {
        x: a.x.max(p.x),
        y: a.y.max(p.y),
        z: a.z.max(p.z),
    });
    (lo, hi)
}
