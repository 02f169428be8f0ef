//! What a verdict on a step in doubt means for an experiment: which parameter a value that came out other than
//! asked belongs to, and whether the learner can be told it.
//!
//! The verdict itself comes from the instrument's driver (`devices::drivers::settle`), which knows what its own
//! commands leave behind; the system that applies it is `systems::conclude::settle_observed`. A partial stroke or an
//! overlong heat keeps its experiment only if the quantity is a parameter the campaign varies and the actual value
//! lies in the campaign's space: the learner is then told the actual value. Otherwise the experiment no longer
//! matches any point the learner knows, and it fails with the reason in the record.

use devices::readback::Actual;
use experiments::Point;
use protocols::{Arg, Op, Protocol};

/// The parameter a step's quantity is bound to, if it is one: the volume of a dispense, the duration of a heat or a
/// temperature hold.
pub fn parameter_of(protocol: &Protocol, index: usize, actual: &Actual) -> Option<String> {
    let step = protocol.steps().get(index)?;
    let arg = match (&step.op, actual) {
        (Op::Dispense { volume: Arg::Param(p) }, Actual::Volume(_)) => p,
        (Op::Heat { duration: Arg::Param(p), .. }, Actual::Duration(_)) => p,
        (Op::HoldTemperature { duration: Arg::Param(p), .. }, Actual::Duration(_)) => p,
        _ => return None,
    };
    Some(arg.clone())
}

/// The value of `actual` in the unit of `parameter`.
fn in_unit(protocol: &Protocol, parameter: &str, actual: &Actual) -> Option<f64> {
    let unit = protocol.parameter(parameter)?.unit;
    let canonical = match actual {
        Actual::Volume(v) => v.0,
        Actual::Duration(d) => d.0,
    };
    Some(unit.from_canonical(canonical))
}

/// What becomes of an experiment whose step came out as `actual`.
#[derive(Debug, Clone, PartialEq)]
pub enum Told {
    /// The learner is told `value` for `parameter`, a point of its space.
    Parameter {
        /// The parameter.
        parameter: String,
        /// Its actual value, in its unit.
        value: f64,
    },
    /// The experiment no longer matches a point the learner can be told; why.
    OffProtocol(String),
}

/// Decides whether an experiment with `values` can carry on with `actual` in place of what step `index` asked.
pub fn tell_actual(
    protocol: &Protocol,
    space: Option<&experiments::Space>,
    index: usize,
    values: &Point,
    actual: &Actual,
) -> Told {
    let what = match actual {
        Actual::Volume(v) => format!("{v}"),
        Actual::Duration(d) => format!("{d}"),
    };
    let Some(parameter) = parameter_of(protocol, index, actual) else {
        return Told::OffProtocol(format!("it came out as {what}, and that quantity is not a parameter"));
    };
    let Some(value) = in_unit(protocol, &parameter, actual) else {
        return Told::OffProtocol(format!("`{parameter}` is not a parameter of the protocol"));
    };
    let Some(space) = space.filter(|s| s.dims().iter().any(|d| d.name == parameter)) else {
        return Told::OffProtocol(format!("`{parameter}` came out as {value}, and the campaign does not vary it"));
    };
    let mut point = values.clone();
    point.insert(parameter.clone(), value);
    if !space.contains(&point) {
        return Told::OffProtocol(format!(
            "`{parameter}` came out as {value}, outside the values the campaign varies it over"
        ));
    }
    Told::Parameter { parameter, value }
}
