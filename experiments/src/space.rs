//! Parameter spaces: the box a campaign searches, and its encoding as the unit cube.
//!
//! A [`Space`] is a list of named dimensions, each a closed interval in the protocol parameter's own unit
//! (`"temperature": 30..=150` degC). Proposers never work in those units: they place points in the unit cube
//! `[0, 1]^d`, where every dimension has the same scale, distances mean the same thing in every direction, and a
//! model's length scales are comparable. This module is the only place that converts between the two, so adding
//! integer or categorical dimensions later means adding a kind to [`Dim`] and its encoding here, not touching
//! the proposers.

use std::collections::BTreeMap;

/// A point in a parameter space: parameter name to value, in the parameter's own unit.
pub type Point = BTreeMap<String, f64>;

/// One dimension of a [`Space`]: a parameter varied continuously between two values.
#[derive(Debug, Clone, PartialEq)]
pub struct Dim {
    /// The protocol parameter's name.
    pub name: String,
    /// The smallest value, in the parameter's unit.
    pub min: f64,
    /// The largest value, in the parameter's unit.
    pub max: f64,
}

impl Dim {
    /// A continuous dimension from `min` to `max`.
    pub fn new(name: impl Into<String>, min: f64, max: f64) -> Self {
        Dim { name: name.into(), min, max }
    }

    /// The length of the interval; zero when the interval is empty, inverted or not finite.
    pub fn width(&self) -> f64 {
        let w = self.max - self.min;
        if w.is_finite() && w > 0.0 { w } else { 0.0 }
    }

    /// Maps a value to the unit interval (0 at `min`, 1 at `max`); values outside the interval map outside `[0, 1]`.
    /// A dimension with no width maps everything to 0.
    pub fn to_unit(&self, value: f64) -> f64 {
        let w = self.width();
        if w > 0.0 { (value - self.min) / w } else { 0.0 }
    }

    /// Maps a unit coordinate back to a value, clamped into `[min, max]`.
    pub fn from_unit(&self, u: f64) -> f64 {
        let w = self.width();
        if w > 0.0 {
            let u = if u.is_nan() { 0.0 } else { u.clamp(0.0, 1.0) };
            (self.min + u * w).clamp(self.min, self.max)
        } else {
            self.min
        }
    }

    /// Whether `value` lies in `[min, max]`.
    pub fn contains(&self, value: f64) -> bool {
        value >= self.min && value <= self.max
    }
}

/// A box of continuous parameters: the space a campaign searches.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Space {
    /// The dimensions, in the order the campaign file lists them.
    pub dims: Vec<Dim>,
}

/// Why a point cannot be placed in a space.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PointError {
    /// The point gives no value for one of the space's dimensions.
    #[error("point has no value for `{name}`")]
    Missing {
        /// The dimension without a value.
        name: String,
    },
    /// The point's value for a dimension is infinite or not a number.
    #[error("value {value} of `{name}` is not a finite number")]
    NotFinite {
        /// The dimension.
        name: String,
        /// The value given.
        value: f64,
    },
}

impl Space {
    /// A space with the given dimensions.
    pub fn new(dims: Vec<Dim>) -> Self {
        Space { dims }
    }

    /// The number of dimensions.
    pub fn len(&self) -> usize {
        self.dims.len()
    }

    /// Whether the space has no dimensions.
    pub fn is_empty(&self) -> bool {
        self.dims.is_empty()
    }

    /// The dimension called `name`.
    pub fn dim(&self, name: &str) -> Option<&Dim> {
        self.dims.iter().find(|d| d.name == name)
    }

    /// Whether `point` gives a value inside the interval for every dimension (other entries are ignored).
    pub fn contains(&self, point: &Point) -> bool {
        self.dims.iter().all(|d| point.get(&d.name).is_some_and(|v| d.contains(*v)))
    }

    /// The unit-cube coordinates of `point`, one per dimension in order. Entries for other names are ignored.
    pub fn to_unit(&self, point: &Point) -> Result<Vec<f64>, PointError> {
        self.dims
            .iter()
            .map(|d| match point.get(&d.name) {
                None => Err(PointError::Missing { name: d.name.clone() }),
                Some(v) if !v.is_finite() => Err(PointError::NotFinite { name: d.name.clone(), value: *v }),
                Some(v) => Ok(d.to_unit(*v)),
            })
            .collect()
    }

    /// The point at unit-cube coordinates `u` (one per dimension; missing ones count as 0), clamped into the box.
    pub fn from_unit(&self, u: &[f64]) -> Point {
        self.dims
            .iter()
            .enumerate()
            .map(|(i, d)| (d.name.clone(), d.from_unit(u.get(i).copied().unwrap_or(0.0))))
            .collect()
    }

    /// The point at `u` and its exact unit coordinates after clamping and rounding, which is what a proposer must
    /// remember and compare distances with.
    pub(crate) fn place(&self, u: &[f64]) -> (Vec<f64>, Point) {
        let point = self.from_unit(u);
        let unit = self.dims.iter().map(|d| d.to_unit(point[&d.name])).collect();
        (unit, point)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space() -> Space {
        Space::new(vec![Dim::new("volume", 50.0, 500.0), Dim::new("temperature", 30.0, 150.0)])
    }

    #[test]
    fn unit_coordinates_round_trip() {
        let s = space();
        let p: Point = [("volume".to_owned(), 275.0), ("temperature".to_owned(), 30.0)].into();
        let u = s.to_unit(&p).unwrap();
        assert_eq!(u, vec![0.5, 0.0]);
        assert_eq!(s.from_unit(&u), p);
        assert!(s.contains(&p));
    }

    #[test]
    fn points_are_clamped_into_the_box() {
        let s = space();
        let p = s.from_unit(&[1.5, f64::NAN]);
        assert_eq!(p["volume"], 500.0);
        assert_eq!(p["temperature"], 30.0);
        assert!(s.contains(&p));
    }

    #[test]
    fn missing_and_non_finite_values_are_errors() {
        let s = space();
        let p: Point = [("volume".to_owned(), f64::INFINITY)].into();
        assert_eq!(s.to_unit(&p).unwrap_err().to_string(), "value inf of `volume` is not a finite number");
        let p: Point = [("volume".to_owned(), 1.0)].into();
        assert_eq!(s.to_unit(&p).unwrap_err().to_string(), "point has no value for `temperature`");
    }

    #[test]
    fn degenerate_dimensions_do_not_divide_by_zero() {
        let d = Dim::new("x", 5.0, 5.0);
        assert_eq!(d.to_unit(7.0), 0.0);
        assert_eq!(d.from_unit(0.7), 5.0);
        let d = Dim::new("x", 5.0, 1.0);
        assert_eq!(d.width(), 0.0);
    }
}
