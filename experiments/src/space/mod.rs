//! Parameter spaces: what a campaign may vary, how, and under which constraints; and their coordinates.
//!
//! A [`Space`] is a list of named dimensions ([`Dim`]), each of one [`Kind`]:
//! - continuous: any value in `[min, max]`, in the protocol parameter's own unit (`"temperature": 30..=150` degC);
//! - integer: `min`, `min + step`, … up to `max` (a number of drops, a stirring speed setting);
//! - categorical: one of a list of named [`Level`]s, each with the number the protocol parameter takes for it
//!   (reservoir 1, 2 or 3 for three bases), encoded for models one-hot or by descriptors given per level.
//!
//! On top of the box, [`LinearConstraint`]s bound weighted sums of continuous and integer parameters (total
//! volume at most 500 uL; three fractions summing to 1), and `per_batch` names parameters that take one value for
//! every experiment proposed together (one temperature per hotplate load).
//!
//! Proposers never work in the parameters' units. Every dimension has one *coordinate*: for continuous and
//! integer dimensions the position in the unit interval (0 at `min`, 1 at `max`), for categorical ones the
//! level's index. Models see *features* instead ([`Space::features`]): unit coordinates, and for each categorical
//! dimension either one 0/1 feature per level or the level's descriptors scaled to the unit interval. This module
//! is the only place that converts between values, coordinates and features, and the only place that knows the
//! constraints' geometry: [`Space::project`] moves coordinates onto the feasible set (Dykstra's alternating
//! projections, which converge to the nearest feasible point), so proposers can search any space the same way, and
//! [`Space::feasible_point`] says whether the constraints leave any point at all (`feasible`).

use std::collections::BTreeMap;

use rand::Rng;
use rand_xoshiro::Xoshiro256PlusPlus;

mod feasible;

pub use feasible::GRID_LIMIT;

/// A point in a parameter space: parameter name to value, in the parameter's own unit. A categorical parameter's
/// value is its level's number.
pub type Point = BTreeMap<String, f64>;

/// How far (in coordinates, after scaling each constraint to unit norm) a point may violate a constraint and
/// still count as satisfying it.
pub const TOLERANCE: f64 = 1e-9;

/// One choice of a categorical dimension.
#[derive(Debug, Clone, PartialEq)]
pub struct Level {
    /// The level's name, as written in the campaign and shown to people (`"DBU"`).
    pub label: String,
    /// The value the protocol parameter takes for this level.
    pub value: f64,
}

impl Level {
    /// A level called `label` whose protocol value is `value`.
    pub fn new(label: impl Into<String>, value: f64) -> Self {
        Level { label: label.into(), value }
    }
}

/// How a categorical dimension is presented to a model.
#[derive(Debug, Clone, PartialEq)]
pub enum Encoding {
    /// One 0/1 feature per level: every pair of levels is equally different.
    OneHot,
    /// Numbers describing each level (in the order of the levels; every vector the same length), such as a
    /// ligand's cone angle and pKa: levels with similar descriptors are expected to behave similarly.
    Descriptors(Vec<Vec<f64>>),
}

/// What values a dimension takes.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// Any value in `[min, max]`.
    Continuous,
    /// `min + k * step` for whole `k`, up to `max`.
    Integer {
        /// The spacing of allowed values; positive.
        step: f64,
    },
    /// One of the levels.
    Categorical {
        /// The levels, in the order the campaign lists them.
        levels: Vec<Level>,
        /// How models see them.
        encoding: Encoding,
    },
}

/// One dimension of a [`Space`].
#[derive(Debug, Clone, PartialEq)]
pub struct Dim {
    /// The protocol parameter's name.
    pub name: String,
    /// The smallest value, in the parameter's unit (for a categorical dimension, the smallest level value).
    pub min: f64,
    /// The largest value, in the parameter's unit (for a categorical dimension, the largest level value).
    pub max: f64,
    /// Continuous, integer or categorical.
    pub kind: Kind,
}

impl Dim {
    /// A continuous dimension from `min` to `max`.
    pub fn new(name: impl Into<String>, min: f64, max: f64) -> Self {
        Dim { name: name.into(), min, max, kind: Kind::Continuous }
    }

    /// An integer dimension: `min`, `min + step`, … up to `max`.
    pub fn integer(name: impl Into<String>, min: f64, max: f64, step: f64) -> Self {
        Dim { name: name.into(), min, max, kind: Kind::Integer { step } }
    }

    /// A categorical dimension with the given levels.
    pub fn categorical(name: impl Into<String>, levels: Vec<Level>, encoding: Encoding) -> Self {
        let min = levels.iter().map(|l| l.value).fold(f64::INFINITY, f64::min);
        let max = levels.iter().map(|l| l.value).fold(f64::NEG_INFINITY, f64::max);
        let (min, max) = if levels.is_empty() { (0.0, 0.0) } else { (min, max) };
        Dim { name: name.into(), min, max, kind: Kind::Categorical { levels, encoding } }
    }

    /// The length of the interval; zero when the interval is empty, inverted or not finite.
    pub fn width(&self) -> f64 {
        let w = self.max - self.min;
        if w.is_finite() && w > 0.0 { w } else { 0.0 }
    }

    /// The levels of a categorical dimension.
    pub fn levels(&self) -> Option<&[Level]> {
        match &self.kind {
            Kind::Categorical { levels, .. } => Some(levels),
            _ => None,
        }
    }

    /// Whether the dimension is categorical.
    pub fn is_categorical(&self) -> bool {
        matches!(self.kind, Kind::Categorical { .. })
    }

    /// How many values a discrete dimension takes; `None` for a continuous one.
    pub fn count(&self) -> Option<usize> {
        match &self.kind {
            Kind::Continuous => None,
            Kind::Integer { step } => Some(integer_count(self.width(), *step)),
            Kind::Categorical { levels, .. } => Some(levels.len()),
        }
    }

    /// The label of the level whose value is `value`, for a categorical dimension.
    pub fn label_of(&self, value: f64) -> Option<&str> {
        self.levels()?.iter().find(|l| same(l.value, value)).map(|l| l.label.as_str())
    }

    /// Maps a value to its coordinate: the unit interval for continuous and integer dimensions (values outside
    /// the interval map outside `[0, 1]`), the level's index for categorical ones (`None` if no level has that
    /// value). A dimension with no width maps everything to 0.
    pub fn to_unit(&self, value: f64) -> Option<f64> {
        match &self.kind {
            Kind::Categorical { levels, .. } => levels.iter().position(|l| same(l.value, value)).map(|i| i as f64),
            _ => {
                let w = self.width();
                Some(if w > 0.0 { (value - self.min) / w } else { 0.0 })
            }
        }
    }

    /// The coordinate `u` moved onto an allowed value: clamped into the unit interval, rounded to the integer grid,
    /// or rounded to a level's index.
    pub fn snap(&self, u: f64) -> f64 {
        let u = if u.is_nan() { 0.0 } else { u };
        match &self.kind {
            Kind::Continuous if self.width() > 0.0 => u.clamp(0.0, 1.0),
            Kind::Continuous => 0.0,
            Kind::Integer { step } => {
                let w = self.width();
                if w <= 0.0 {
                    return 0.0;
                }
                let k = ((u * w) / step).round().clamp(0.0, (integer_count(w, *step) - 1) as f64);
                (k * step / w).clamp(0.0, 1.0)
            }
            Kind::Categorical { levels, .. } => u.round().clamp(0.0, levels.len().saturating_sub(1) as f64),
        }
    }

    /// The coordinate of the `k`-th value of a discrete dimension (counted from 0): the level's index, or the
    /// grid value's place in the unit interval. A continuous dimension has no values to count, so this is 0.
    pub fn value_coordinate(&self, k: usize) -> f64 {
        match &self.kind {
            Kind::Categorical { .. } => k as f64,
            Kind::Integer { step } => {
                let w = self.width();
                if w > 0.0 { (k as f64 * step / w).min(1.0) } else { 0.0 }
            }
            Kind::Continuous => 0.0,
        }
    }

    /// Maps a coordinate back to a value, after [`Dim::snap`].
    pub fn from_unit(&self, u: f64) -> f64 {
        let u = self.snap(u);
        match &self.kind {
            Kind::Categorical { levels, .. } => levels.get(u as usize).map_or(self.min, |l| l.value),
            _ => {
                let w = self.width();
                if w > 0.0 { (self.min + u * w).clamp(self.min, self.max) } else { self.min }
            }
        }
    }

    /// Whether `value` is one this dimension takes: inside the interval, on the integer grid, or a level's value.
    pub fn contains(&self, value: f64) -> bool {
        match &self.kind {
            Kind::Continuous => value >= self.min && value <= self.max,
            Kind::Integer { step } => {
                let k = (value - self.min) / step;
                value >= self.min && value <= self.max && (k - k.round()).abs() < 1e-9 * k.abs().max(1.0)
            }
            Kind::Categorical { levels, .. } => levels.iter().any(|l| same(l.value, value)),
        }
    }

    /// How many model features this dimension has.
    fn feature_width(&self) -> usize {
        match &self.kind {
            Kind::Categorical { levels, encoding: Encoding::OneHot } => levels.len(),
            Kind::Categorical { encoding: Encoding::Descriptors(d), .. } => d.first().map_or(0, Vec::len),
            _ => 1,
        }
    }
}

/// The number of grid values of an integer dimension of width `w` and spacing `step`.
fn integer_count(w: f64, step: f64) -> usize {
    if step > 0.0 && w > 0.0 && (w / step).is_finite() { (w / step + 1e-9).floor() as usize + 1 } else { 1 }
}

/// Whether two level values are the same number (up to rounding in a file or a database).
fn same(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// A bound on a weighted sum of continuous or integer parameters, in their own units:
/// `min <= Σ coefficient × value <= max`. An equality has `min == max`.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearConstraint {
    /// Parameter name and coefficient, for every parameter in the sum.
    pub terms: Vec<(String, f64)>,
    /// The smallest allowed sum, if any.
    pub min: Option<f64>,
    /// The largest allowed sum, if any.
    pub max: Option<f64>,
}

impl LinearConstraint {
    /// `Σ terms <= max`.
    pub fn at_most(terms: Vec<(String, f64)>, max: f64) -> Self {
        LinearConstraint { terms, min: None, max: Some(max) }
    }

    /// `Σ terms >= min`.
    pub fn at_least(terms: Vec<(String, f64)>, min: f64) -> Self {
        LinearConstraint { terms, min: Some(min), max: None }
    }

    /// `Σ terms == value`.
    pub fn equal(terms: Vec<(String, f64)>, value: f64) -> Self {
        LinearConstraint { terms, min: Some(value), max: Some(value) }
    }

    /// The weighted sum at `point`, if the point gives every term a value.
    pub fn sum(&self, point: &Point) -> Option<f64> {
        self.terms.iter().map(|(name, c)| point.get(name).map(|v| c * v)).sum()
    }

    /// Whether `point` satisfies the constraint, up to a relative tolerance of 1e-8.
    pub fn holds(&self, point: &Point) -> bool {
        let Some(s) = self.sum(point) else { return false };
        let scale: f64 = self
            .terms
            .iter()
            .map(|(n, c)| (c * point.get(n).copied().unwrap_or(0.0)).abs())
            .sum::<f64>()
            .max(self.min.unwrap_or(0.0).abs())
            .max(self.max.unwrap_or(0.0).abs())
            .max(1.0);
        let tol = 1e-8 * scale;
        self.min.is_none_or(|m| s >= m - tol) && self.max.is_none_or(|m| s <= m + tol)
    }
}

/// Why a space cannot be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpaceError {
    /// A constraint or the per-batch list names a parameter the space does not have.
    #[error("`{name}` is not a dimension of the space")]
    Unknown {
        /// The name.
        name: String,
    },
    /// A constraint names a categorical parameter, whose values are labels rather than amounts.
    #[error("constraint on categorical `{name}`: only continuous and integer parameters may be summed")]
    Categorical {
        /// The name.
        name: String,
    },
}

/// A linear constraint in coordinates: `lo <= Σ coef_j u_j <= hi`, scaled so the coefficients have unit norm.
#[derive(Debug, Clone, PartialEq)]
struct UnitConstraint {
    coef: Vec<(usize, f64)>,
    lo: f64,
    hi: f64,
}

/// The space a campaign searches: dimensions, linear constraints and per-batch parameters.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Space {
    dims: Vec<Dim>,
    constraints: Vec<LinearConstraint>,
    per_batch: Vec<usize>,
    unit: Vec<UnitConstraint>,
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
    /// The point's value for a categorical dimension is not the value of any of its levels.
    #[error("value {value} of `{name}` is not the value of any of its levels")]
    NotALevel {
        /// The dimension.
        name: String,
        /// The value given.
        value: f64,
    },
}

impl Space {
    /// A space with the given dimensions, no constraints and nothing shared by a batch.
    pub fn new(dims: Vec<Dim>) -> Self {
        Space { dims, ..Space::default() }
    }

    /// The space with `constraints` added. Every term must name a continuous or integer dimension.
    pub fn with_constraints(mut self, constraints: Vec<LinearConstraint>) -> Result<Self, SpaceError> {
        for c in &constraints {
            let mut coef = Vec::new();
            let mut offset = 0.0;
            for (name, a) in &c.terms {
                let j = self.index_of(name).ok_or_else(|| SpaceError::Unknown { name: name.clone() })?;
                let dim = &self.dims[j];
                if dim.is_categorical() {
                    return Err(SpaceError::Categorical { name: name.clone() });
                }
                // value = min + u * width, so a * value = a * min + (a * width) * u.
                offset += a * dim.min;
                if a * dim.width() != 0.0 {
                    coef.push((j, a * dim.width()));
                }
            }
            let norm = coef.iter().map(|(_, a)| a * a).sum::<f64>().sqrt();
            let (lo, hi) =
                (c.min.map_or(f64::NEG_INFINITY, |m| m - offset), c.max.map_or(f64::INFINITY, |m| m - offset));
            if norm > 0.0 {
                let coef = coef.into_iter().map(|(j, a)| (j, a / norm)).collect();
                self.unit.push(UnitConstraint { coef, lo: lo / norm, hi: hi / norm });
            } else {
                // Nothing in the sum can move, so the constraint holds everywhere or nowhere.
                self.unit.push(UnitConstraint { coef: Vec::new(), lo, hi });
            }
            self.constraints.push(c.clone());
        }
        Ok(self)
    }

    /// The space with the named dimensions taking one value for every point proposed together.
    pub fn with_per_batch(mut self, names: &[String]) -> Result<Self, SpaceError> {
        for name in names {
            let j = self.index_of(name).ok_or_else(|| SpaceError::Unknown { name: name.clone() })?;
            if !self.per_batch.contains(&j) {
                self.per_batch.push(j);
            }
        }
        Ok(self)
    }

    /// The dimensions, in the order the campaign file lists them.
    pub fn dims(&self) -> &[Dim] {
        &self.dims
    }

    /// The linear constraints, in parameter units.
    pub fn constraints(&self) -> &[LinearConstraint] {
        &self.constraints
    }

    /// The names of the dimensions that take one value per batch.
    pub fn per_batch(&self) -> Vec<&str> {
        self.per_batch.iter().map(|j| self.dims[*j].name.as_str()).collect()
    }

    /// Whether dimension `j` takes one value per batch.
    pub fn is_per_batch(&self, j: usize) -> bool {
        self.per_batch.contains(&j)
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

    /// The position of the dimension called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.dims.iter().position(|d| d.name == name)
    }

    /// Whether the space has a continuous dimension (so it cannot be enumerated).
    pub fn has_continuous(&self) -> bool {
        self.dims.iter().any(|d| matches!(d.kind, Kind::Continuous))
    }

    /// The number of points of a space whose every dimension is discrete (before constraints), or `None` when a
    /// dimension is continuous. Saturates at `u128::MAX`.
    pub fn discrete_count(&self) -> Option<u128> {
        self.dims.iter().try_fold(1u128, |acc, d| d.count().map(|c| acc.saturating_mul(c as u128)))
    }

    /// The label of `value` for the categorical dimension `name`.
    pub fn label(&self, name: &str, value: f64) -> Option<&str> {
        self.dim(name)?.label_of(value)
    }

    /// The labels of the categorical values of `point`, by parameter name.
    pub fn labels(&self, point: &Point) -> BTreeMap<String, String> {
        self.dims
            .iter()
            .filter_map(|d| {
                let v = point.get(&d.name)?;
                d.label_of(*v).map(|l| (d.name.clone(), l.to_owned()))
            })
            .collect()
    }

    /// Whether `point` gives every dimension an allowed value and satisfies every constraint (other entries are
    /// ignored).
    pub fn contains(&self, point: &Point) -> bool {
        self.dims.iter().all(|d| point.get(&d.name).is_some_and(|v| d.contains(*v)))
            && self.constraints.iter().all(|c| c.holds(point))
    }

    /// The coordinates of `point`, one per dimension in order. Entries for other names are ignored.
    pub fn to_unit(&self, point: &Point) -> Result<Vec<f64>, PointError> {
        self.dims
            .iter()
            .map(|d| match point.get(&d.name) {
                None => Err(PointError::Missing { name: d.name.clone() }),
                Some(v) if !v.is_finite() => Err(PointError::NotFinite { name: d.name.clone(), value: *v }),
                Some(v) => d.to_unit(*v).ok_or_else(|| PointError::NotALevel { name: d.name.clone(), value: *v }),
            })
            .collect()
    }

    /// The point at coordinates `u` (one per dimension; missing ones count as 0), each snapped to an allowed value.
    pub fn from_unit(&self, u: &[f64]) -> Point {
        self.dims
            .iter()
            .enumerate()
            .map(|(i, d)| (d.name.clone(), d.from_unit(u.get(i).copied().unwrap_or(0.0))))
            .collect()
    }

    /// Every coordinate snapped to an allowed value (clamped, rounded to the integer grid or a level).
    pub fn snap(&self, u: &[f64]) -> Vec<f64> {
        self.dims.iter().enumerate().map(|(i, d)| d.snap(u.get(i).copied().unwrap_or(0.0))).collect()
    }

    /// The point at `u` and its exact coordinates after snapping, which is what a proposer must remember and
    /// compare distances with.
    pub fn place(&self, u: &[f64]) -> (Vec<f64>, Point) {
        let unit = self.snap(u);
        let point = self.from_unit(&unit);
        // Coordinates recomputed from the values, so a told point and a proposed one compare exactly.
        let unit = self.dims.iter().zip(&unit).map(|(d, u)| d.to_unit(point[&d.name]).unwrap_or(*u)).collect();
        (unit, point)
    }

    /// Coordinates from a point of the unit cube `[0, 1]^len` (a design or a quasi-random point): continuous and
    /// integer coordinates as they are, categorical ones as the level whose share of the interval holds them.
    pub fn from_cube(&self, c: &[f64]) -> Vec<f64> {
        self.dims
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let v = c.get(i).copied().unwrap_or(0.0);
                match d.count() {
                    Some(k) if d.is_categorical() => (v * k as f64).floor().clamp(0.0, k.saturating_sub(1) as f64),
                    _ => v,
                }
            })
            .collect()
    }

    /// Coordinates drawn uniformly: continuous ones from the unit interval, discrete ones from their values.
    pub fn random(&self, rng: &mut Xoshiro256PlusPlus) -> Vec<f64> {
        let c: Vec<f64> = (0..self.dims.len()).map(|_| rng.r#gen::<f64>()).collect();
        self.snap(&self.from_cube(&c))
    }

    /// Whether coordinates `u` satisfy every constraint.
    pub fn feasible(&self, u: &[f64]) -> bool {
        self.unit.iter().all(|c| {
            let s: f64 = c.coef.iter().map(|(j, a)| a * u[*j]).sum();
            s >= c.lo - TOLERANCE && s <= c.hi + TOLERANCE
        })
    }

    /// Whether the space has constraints.
    pub fn is_constrained(&self) -> bool {
        !self.unit.is_empty()
    }

    /// The nearest coordinates to `u` that lie in the box and satisfy every constraint, moving only the
    /// continuous and integer coordinates not marked in `frozen` (integer ones are not rounded here). `None` when
    /// no such point exists (as far as the alternating projections can tell).
    pub fn project(&self, u: &[f64], frozen: &[bool]) -> Option<Vec<f64>> {
        let movable = |j: usize| !self.dims[j].is_categorical() && !frozen.get(j).copied().unwrap_or(false);
        let mut x: Vec<f64> = u.to_vec();
        for (j, v) in x.iter_mut().enumerate() {
            if movable(j) {
                *v = v.clamp(0.0, 1.0);
            }
        }
        if self.unit.is_empty() || self.feasible(&x) {
            return Some(x);
        }
        // Dykstra's algorithm over the box and every slab lo <= a·u <= hi, restricted to the movable coordinates.
        let slabs: Vec<(Vec<(usize, f64)>, f64, f64)> = self
            .unit
            .iter()
            .map(|c| {
                let fixed: f64 = c.coef.iter().filter(|(j, _)| !movable(*j)).map(|(j, a)| a * u[*j]).sum();
                let free: Vec<(usize, f64)> = c.coef.iter().filter(|(j, _)| movable(*j)).copied().collect();
                (free, c.lo - fixed, c.hi - fixed)
            })
            .collect();
        // A constraint none of whose terms may move holds or fails whatever the others do; iterating cannot mend it.
        if slabs.iter().any(|(a, lo, hi)| a.is_empty() && (*lo > TOLERANCE || *hi < -TOLERANCE)) {
            return None;
        }
        let mut corrections: Vec<Vec<f64>> = vec![vec![0.0; x.len()]; slabs.len() + 1];
        for _ in 0..2000 {
            let before = x.clone();
            for (k, (a, lo, hi)) in slabs.iter().enumerate() {
                let y: Vec<f64> = x.iter().zip(&corrections[k]).map(|(x, p)| x + p).collect();
                let norm2: f64 = a.iter().map(|(_, c)| c * c).sum();
                let s: f64 = a.iter().map(|(j, c)| c * y[*j]).sum();
                let mut z = y.clone();
                if norm2 > 0.0 {
                    let shift = if s > *hi {
                        (s - hi) / norm2
                    } else if s < *lo {
                        (s - lo) / norm2
                    } else {
                        0.0
                    };
                    for (j, c) in a {
                        z[*j] -= shift * c;
                    }
                }
                corrections[k] = y.iter().zip(&z).map(|(y, z)| y - z).collect();
                x = z;
            }
            let b = slabs.len();
            let y: Vec<f64> = x.iter().zip(&corrections[b]).map(|(x, p)| x + p).collect();
            let z: Vec<f64> =
                y.iter().enumerate().map(|(j, v)| if movable(j) { v.clamp(0.0, 1.0) } else { *v }).collect();
            corrections[b] = y.iter().zip(&z).map(|(y, z)| y - z).collect();
            x = z;
            let change = x.iter().zip(&before).fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
            if change < 1e-15 && self.feasible(&x) {
                break;
            }
        }
        self.feasible(&x).then_some(x)
    }

    /// Allowed, feasible coordinates near `u`: projected onto the constraints, snapped to the integer grid and the
    /// levels, and projected again (integers held) if rounding broke a constraint. `None` if that fails.
    pub fn repair(&self, u: &[f64], frozen: &[bool]) -> Option<Vec<f64>> {
        let x = self.snap(&self.project(u, frozen)?);
        if self.feasible(&x) {
            return Some(x);
        }
        // Rounding broke a constraint: hold the integers rounded each way in turn, and move the rest.
        let relaxed = self.project(u, frozen)?;
        let held: Vec<bool> = (0..self.dims.len())
            .map(|j| frozen.get(j).copied().unwrap_or(false) || matches!(self.dims[j].kind, Kind::Integer { .. }))
            .collect();
        for direction in [f64::floor, f64::ceil] {
            let mut y = relaxed.clone();
            for (j, d) in self.dims.iter().enumerate() {
                if let Kind::Integer { step } = d.kind
                    && d.width() > 0.0
                {
                    let k = direction(y[j] * d.width() / step).clamp(0.0, (integer_count(d.width(), step) - 1) as f64);
                    y[j] = (k * step / d.width()).clamp(0.0, 1.0);
                }
            }
            if let Some(z) = self.project(&y, &held).map(|z| self.snap(&z))
                && self.feasible(&z)
            {
                return Some(z);
            }
        }
        None
    }

    /// Every feasible point of a space whose dimensions are all discrete, as coordinates in mixed-radix order;
    /// empty when a dimension is continuous or there are more than `limit` points before constraints.
    pub fn enumerate(&self, limit: usize) -> Vec<Vec<f64>> {
        let Some(total) = self.discrete_count() else { return Vec::new() };
        if total > limit as u128 {
            return Vec::new();
        }
        let counts: Vec<usize> = self.dims.iter().map(|d| d.count().unwrap_or(1)).collect();
        let mut out = Vec::with_capacity(total as usize);
        for mut index in 0..total as usize {
            let mut u = vec![0.0; counts.len()];
            for (j, c) in counts.iter().enumerate().rev() {
                u[j] = self.dims[j].value_coordinate(index % c);
                index /= c;
            }
            if self.feasible(&u) {
                out.push(u);
            }
        }
        out
    }

    /// The number of model features.
    pub fn feature_len(&self) -> usize {
        self.dims.iter().map(Dim::feature_width).sum()
    }

    /// The model features of coordinates `u`.
    pub fn features(&self, u: &[f64]) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.feature_len());
        for (j, d) in self.dims.iter().enumerate() {
            let v = u.get(j).copied().unwrap_or(0.0);
            match &d.kind {
                Kind::Categorical { levels, encoding: Encoding::OneHot } => {
                    let k = d.snap(v) as usize;
                    out.extend((0..levels.len()).map(|i| if i == k { 1.0 } else { 0.0 }));
                }
                Kind::Categorical { encoding: Encoding::Descriptors(table), .. } => {
                    let k = d.snap(v) as usize;
                    let width = table.first().map_or(0, Vec::len);
                    for c in 0..width {
                        let column = table.iter().map(|row| row.get(c).copied().unwrap_or(0.0));
                        let (lo, hi) =
                            column.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
                        let x = table.get(k).and_then(|row| row.get(c)).copied().unwrap_or(0.0);
                        out.push(if hi > lo { (x - lo) / (hi - lo) } else { 0.0 });
                    }
                }
                _ => out.push(v),
            }
        }
        out
    }

    /// For each feature, the length-scale group a model gives it: the one-hot features of a categorical parameter
    /// form one group (whose levels' length scales the model relates, `surrogate::gp::Sharing`), every other
    /// feature is a group of its own. Groups are numbered from 0 in feature order.
    pub fn feature_groups(&self) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.feature_len());
        let mut next = 0;
        for d in &self.dims {
            match &d.kind {
                Kind::Categorical { encoding: Encoding::OneHot, .. } => {
                    out.extend(std::iter::repeat_n(next, d.feature_width()));
                    next += usize::from(d.feature_width() > 0);
                }
                _ => {
                    for _ in 0..d.feature_width() {
                        out.push(next);
                        next += 1;
                    }
                }
            }
        }
        out
    }

    /// For each dimension, the feature that equals its coordinate (continuous and integer dimensions), so gradients
    /// with respect to features carry over to coordinates.
    pub fn coordinate_features(&self) -> Vec<Option<usize>> {
        let mut next = 0;
        self.dims
            .iter()
            .map(|d| {
                let f = (!d.is_categorical()).then_some(next);
                next += d.feature_width();
                f
            })
            .collect()
    }

    /// A name for every feature, for provenance: the parameter's name, or `name=label` for a one-hot feature and
    /// `name#k` for a descriptor.
    pub fn feature_names(&self) -> Vec<String> {
        let mut out = Vec::new();
        for d in &self.dims {
            match &d.kind {
                Kind::Categorical { levels, encoding: Encoding::OneHot } => {
                    out.extend(levels.iter().map(|l| format!("{}={}", d.name, l.label)));
                }
                Kind::Categorical { encoding: Encoding::Descriptors(t), .. } => {
                    out.extend((0..t.first().map_or(0, Vec::len)).map(|k| format!("{}#{k}", d.name)));
                }
                _ => out.push(d.name.clone()),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space() -> Space {
        Space::new(vec![Dim::new("volume", 50.0, 500.0), Dim::new("temperature", 30.0, 150.0)])
    }

    #[test]
    fn one_hot_features_share_a_length_scale_group() {
        let levels = vec![Level::new("a", 0.0), Level::new("b", 1.0), Level::new("c", 2.0)];
        let space = Space::new(vec![
            Dim::new("t", 0.0, 1.0),
            Dim::categorical("cat", levels.clone(), Encoding::OneHot),
            Dim::categorical("d", levels, Encoding::Descriptors(vec![vec![1.0, 2.0], vec![0.0, 1.0], vec![3.0, 0.0]])),
            Dim::integer("n", 0.0, 4.0, 1.0),
        ]);
        assert_eq!(space.feature_groups(), vec![0, 1, 1, 1, 2, 3, 4]);
        assert_eq!(space.feature_groups().len(), space.feature_len());
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
        assert_eq!(d.to_unit(7.0), Some(0.0));
        assert_eq!(d.from_unit(0.7), 5.0);
        let d = Dim::new("x", 5.0, 1.0);
        assert_eq!(d.width(), 0.0);
    }

    #[test]
    fn integers_snap_to_their_grid() {
        let d = Dim::integer("drops", 1.0, 10.0, 2.0);
        assert_eq!(d.count(), Some(5));
        assert_eq!(d.from_unit(0.5), 5.0);
        assert_eq!(d.from_unit(1.0), 9.0);
        assert!(d.contains(7.0) && !d.contains(8.0) && !d.contains(11.0));
    }

    #[test]
    fn categorical_levels_are_indices_and_one_hot_features() {
        let levels = vec![Level::new("DBU", 1.0), Level::new("MTBD", 2.0), Level::new("BTMG", 5.0)];
        let s = Space::new(vec![Dim::new("t", 0.0, 10.0), Dim::categorical("base", levels, Encoding::OneHot)]);
        let p: Point = [("t".to_owned(), 5.0), ("base".to_owned(), 5.0)].into();
        let u = s.to_unit(&p).unwrap();
        assert_eq!(u, vec![0.5, 2.0]);
        assert_eq!(s.features(&u), vec![0.5, 0.0, 0.0, 1.0]);
        assert_eq!(s.feature_names(), vec!["t", "base=DBU", "base=MTBD", "base=BTMG"]);
        assert_eq!(s.coordinate_features(), vec![Some(0), None]);
        assert_eq!(s.labels(&p)["base"], "BTMG");
        let bad: Point = [("t".to_owned(), 5.0), ("base".to_owned(), 3.0)].into();
        assert!(matches!(s.to_unit(&bad), Err(PointError::NotALevel { .. })));
        assert!(!s.contains(&bad));
        assert_eq!(s.from_cube(&[0.3, 0.99]), vec![0.3, 2.0]);
        assert_eq!(s.discrete_count(), None);
    }

    #[test]
    fn descriptors_are_scaled_per_column() {
        let levels = vec![Level::new("a", 0.0), Level::new("b", 1.0), Level::new("c", 2.0)];
        let table = vec![vec![10.0, 1.0], vec![20.0, 1.0], vec![15.0, 1.0]];
        let s = Space::new(vec![Dim::categorical("l", levels, Encoding::Descriptors(table))]);
        assert_eq!(s.features(&[2.0]), vec![0.5, 0.0]);
        assert_eq!(s.feature_len(), 2);
    }

    #[test]
    fn projection_satisfies_a_total_and_a_simplex() {
        let s = Space::new(vec![Dim::new("a", 0.0, 300.0), Dim::new("b", 0.0, 300.0), Dim::new("c", 0.0, 1.0)])
            .with_constraints(vec![LinearConstraint::at_most(vec![("a".into(), 1.0), ("b".into(), 1.0)], 400.0)])
            .unwrap();
        let u = s.project(&[1.0, 1.0, 0.5], &[]).unwrap();
        let p = s.from_unit(&u);
        assert!((p["a"] + p["b"] - 400.0).abs() < 1e-6 && (p["a"] - p["b"]).abs() < 1e-6, "{p:?}");
        assert!(s.contains(&p));
        let simplex = Space::new(vec![Dim::new("x", 0.0, 1.0), Dim::new("y", 0.0, 1.0), Dim::new("z", 0.0, 1.0)])
            .with_constraints(vec![LinearConstraint::equal(
                vec![("x".into(), 1.0), ("y".into(), 1.0), ("z".into(), 1.0)],
                1.0,
            )])
            .unwrap();
        let u = simplex.repair(&[0.9, 0.8, 0.1], &[]).unwrap();
        assert!((u.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{u:?}");
        // With x frozen at 0.9, y and z share the remaining 0.1.
        let u = simplex.project(&[0.9, 0.8, 0.1], &[true, false, false]).unwrap();
        assert!((u[0] - 0.9).abs() < 1e-15 && (u[1] + u[2] - 0.1).abs() < 1e-9);
        // Nothing can satisfy x + y + z = 1 with x and y frozen at 0.9.
        assert!(simplex.project(&[0.9, 0.9, 0.0], &[true, true, false]).is_none());
    }

    #[test]
    fn integer_constraints_survive_rounding() {
        let s = Space::new(vec![Dim::integer("n", 0.0, 10.0, 1.0), Dim::new("v", 0.0, 10.0)])
            .with_constraints(vec![LinearConstraint::at_most(vec![("n".into(), 1.0), ("v".into(), 1.0)], 7.5)])
            .unwrap();
        let u = s.repair(&[0.76, 0.0], &[]).unwrap();
        let p = s.from_unit(&u);
        assert!(s.contains(&p), "{p:?}");
        assert_eq!(p["n"].fract(), 0.0);
    }

    #[test]
    fn discrete_spaces_enumerate_their_feasible_points() {
        let levels = vec![Level::new("a", 1.0), Level::new("b", 2.0)];
        let s = Space::new(vec![Dim::categorical("c", levels, Encoding::OneHot), Dim::integer("n", 0.0, 3.0, 1.0)])
            .with_constraints(vec![LinearConstraint::at_most(vec![("n".into(), 1.0)], 2.0)])
            .unwrap();
        assert_eq!(s.discrete_count(), Some(8));
        let all = s.enumerate(100);
        assert_eq!(all.len(), 6);
        assert!(all.iter().all(|u| s.contains(&s.from_unit(u))));
        assert!(s.enumerate(7).is_empty());
    }

    #[test]
    fn bad_constraints_and_batches_are_refused() {
        let levels = vec![Level::new("a", 1.0)];
        let s = Space::new(vec![Dim::categorical("c", levels, Encoding::OneHot)]);
        let c = LinearConstraint::at_most(vec![("c".into(), 1.0)], 1.0);
        assert!(matches!(s.clone().with_constraints(vec![c]), Err(SpaceError::Categorical { .. })));
        assert!(matches!(s.with_per_batch(&["x".to_owned()]), Err(SpaceError::Unknown { .. })));
    }
}
