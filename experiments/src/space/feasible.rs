//! Whether a space's constraints leave any point at all, and one such point ([`Space::feasible_point`]).
//!
//! A campaign whose constraints exclude every point would make every ask come back empty, so its loader rejects
//! it, and a proposer built on such a space says why it stops. Deciding this is a search, not a formula: the
//! constraints are linear, but integer grids make the question one of integer programming. A point found is checked
//! the way every proposal is, so "feasible" is never said wrongly; "infeasible" is exact on small grids and
//! otherwise the verdict of many bounded repairs from spread-out starts.

use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use super::{Kind, Space};

/// The most combinations of values of the constrained integer dimensions that [`Space::feasible_point`] tries one
/// by one; past it, it searches as it does with continuous dimensions.
pub const GRID_LIMIT: u128 = 100_000;

/// How many random starts [`Space::feasible_point`] repairs, after the centre and the corners.
const FEASIBILITY_STARTS: usize = 32;

impl Space {
    /// Coordinates of a point of the space that satisfies every constraint, or `None` if there is none: the
    /// coordinates are allowed values (on the integer grids and the levels), and the point they give satisfies the
    /// constraints both in coordinates ([`Space::feasible`]) and in the parameters' units ([`Space::contains`]),
    /// which is what every proposal must.
    ///
    /// When every dimension the constraints involve is an integer one and their values make at most [`GRID_LIMIT`]
    /// combinations, each combination is tried, so the answer is exact. Otherwise the point is sought by
    /// [`Space::repair`] from the centre of the box, from its two extreme corners, from the centre moved to each end
    /// of each constrained dimension, and from a few random points of a fixed seed. A point found is always a point
    /// of the space. A thin feasible set is found too (the projection from the centre lands on an equality's plane,
    /// and random starts round onto its grid points in many ways); a space with points could be missed only if
    /// every start failed, on a set both thin and awkward to round onto. Every repair is bounded, so the search is
    /// too.
    pub fn feasible_point(&self) -> Option<Vec<f64>> {
        let accept = |u: Vec<f64>| (self.feasible(&u) && self.contains(&self.from_unit(&u))).then_some(u);
        let centre: Vec<f64> = self.dims.iter().map(|d| if d.is_categorical() { 0.0 } else { 0.5 }).collect();
        let centre = self.snap(&centre);
        let mut involved: Vec<usize> = self.unit.iter().flat_map(|c| c.coef.iter().map(|(j, _)| *j)).collect();
        involved.sort_unstable();
        involved.dedup();
        if involved.iter().all(|j| matches!(self.dims[*j].kind, Kind::Integer { .. })) {
            let counts: Vec<usize> = involved.iter().map(|j| self.dims[*j].count().unwrap_or(1)).collect();
            let total = counts.iter().fold(1u128, |acc, c| acc.saturating_mul(*c as u128));
            if total <= GRID_LIMIT {
                return (0..total as usize).find_map(|mut index| {
                    let mut u = centre.clone();
                    for (j, c) in involved.iter().zip(&counts) {
                        u[*j] = self.dims[*j].value_coordinate(index % c);
                        index /= c;
                    }
                    accept(u)
                });
            }
        }
        let mut starts = vec![centre.clone()];
        for end in [0.0, 1.0] {
            let mut corner = centre.clone();
            involved.iter().for_each(|j| corner[*j] = end);
            starts.push(corner);
        }
        for j in &involved {
            for end in [0.0, 1.0] {
                let mut u = centre.clone();
                u[*j] = end;
                starts.push(u);
            }
        }
        // A fixed seed, so a campaign is judged the same way every time it is checked.
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(0x00fe_a51b_1e00);
        starts.extend((0..FEASIBILITY_STARTS).map(|_| self.random(&mut rng)));
        starts.into_iter().find_map(|u| self.repair(&u, &[]).and_then(accept))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::{Dim, LinearConstraint};

    fn sum_to(dims: Vec<Dim>, c: LinearConstraint) -> Space {
        Space::new(dims).with_constraints(vec![c]).unwrap()
    }

    /// The terms of `n + m`.
    fn both() -> Vec<(String, f64)> {
        vec![("n".into(), 1.0), ("m".into(), 1.0)]
    }

    /// Whether the point `feasible_point` found is one a proposal may be.
    fn found_in(space: &Space) -> bool {
        space.feasible_point().is_some_and(|u| space.feasible(&u) && space.contains(&space.from_unit(&u)))
    }

    #[test]
    fn a_space_whose_constraints_exclude_every_point_has_no_feasible_point() {
        let ints = |step: f64, max: f64| vec![Dim::integer("n", 0.0, max, step), Dim::integer("m", 0.0, max, step)];
        // No whole numbers add up to 2.5; a small grid is searched whole.
        assert_eq!(sum_to(ints(1.0, 10.0), LinearConstraint::equal(both(), 2.5)).feasible_point(), None);
        // Even numbers never add up to 3; this grid is too large to search whole, so the search repairs starts.
        let big = ints(2.0, 1000.0);
        assert!(big.iter().map(|d| d.count().unwrap() as u128).product::<u128>() > GRID_LIMIT);
        assert_eq!(sum_to(big, LinearConstraint::equal(both(), 3.0)).feasible_point(), None);
        // Sums that leave the whole box.
        let unit = vec![Dim::new("n", 0.0, 1.0), Dim::new("m", 0.0, 1.0)];
        assert_eq!(sum_to(unit.clone(), LinearConstraint::at_least(both(), 3.0)).feasible_point(), None);
        let apart = Space::new(unit)
            .with_constraints(vec![
                LinearConstraint::at_least(vec![("n".into(), 1.0)], 0.6),
                LinearConstraint::at_most(both(), 0.5),
            ])
            .unwrap();
        assert_eq!(apart.feasible_point(), None);
        // An integer and a continuous parameter whose only meeting point is off the grid.
        let mixed = vec![Dim::integer("n", 0.0, 10.0, 1.0), Dim::new("m", 0.0, 0.2)];
        assert_eq!(sum_to(mixed, LinearConstraint::equal(both(), 2.5)).feasible_point(), None);
    }

    #[test]
    fn a_thin_feasible_space_is_found() {
        let unconstrained = Space::new(vec![Dim::new("n", 0.0, 1.0), Dim::integer("m", 0.0, 4.0, 1.0)]);
        assert!(found_in(&unconstrained));
        // Whole numbers adding up to 3: rounding the projection of the centre (1.5, 1.5) misses it.
        let small = vec![Dim::integer("n", 0.0, 10.0, 1.0), Dim::integer("m", 0.0, 10.0, 1.0)];
        assert!(found_in(&sum_to(small, LinearConstraint::equal(both(), 3.0))));
        // The same on a grid too large to search whole.
        let big = vec![Dim::integer("n", 0.0, 1000.0, 1.0), Dim::integer("m", 0.0, 1000.0, 1.0)];
        assert!(found_in(&sum_to(big, LinearConstraint::equal(both(), 3.0))));
        // Only the corner (1, 1) of the box.
        let unit = vec![Dim::new("n", 0.0, 1.0), Dim::new("m", 0.0, 1.0)];
        assert!(found_in(&sum_to(unit, LinearConstraint::equal(both(), 2.0))));
        // A plane through a sliver of the box, between parameters whose widths differ a millionfold.
        let skewed = vec![Dim::new("n", 0.0, 1.0), Dim::new("m", 0.0, 1e6)];
        assert!(found_in(&sum_to(skewed, LinearConstraint::equal(both(), 0.5))));
        // An integer and a continuous parameter meeting on the grid.
        let mixed = vec![Dim::integer("n", 0.0, 10.0, 1.0), Dim::new("m", 0.0, 0.2)];
        assert!(found_in(&sum_to(mixed, LinearConstraint::equal(both(), 2.1))));
    }
}
