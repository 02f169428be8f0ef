//! Pareto fronts and hypervolumes: what "best" means when a campaign optimises several outputs at once.
//!
//! With two or more objectives (the most product and the least impurity), no single experiment is best; the
//! answer is the set of experiments that no other beats on every objective at once, the Pareto front. The
//! hypervolume of a front (the volume it dominates, up to a reference point) measures a whole front with one
//! number, so fronts found by different strategies can be compared.
//!
//! Everything here takes values in each objective's own direction ([`crate::Objective`]s say which way is
//! better) and converts to minimisation internally.

use crate::Objective;

/// Whether `a` dominates `b`: at least as good on every objective, strictly better on one. Both are in the
/// objectives' own units and directions.
pub fn dominates(objectives: &[Objective], a: &[f64], b: &[f64]) -> bool {
    let mut strictly = false;
    for ((o, x), y) in objectives.iter().zip(a).zip(b) {
        let (x, y) = (o.direction.internal(*x), o.direction.internal(*y));
        if x > y {
            return false;
        }
        if x < y {
            strictly = true;
        }
    }
    strictly
}

/// The indices of the non-dominated points among `values` (one vector per point, one value per objective), in
/// their original order. Points with a value that is not finite are never on the front; of exact duplicates on
/// the front, every copy is kept.
pub fn pareto_front(objectives: &[Objective], values: &[Vec<f64>]) -> Vec<usize> {
    let finite = |v: &Vec<f64>| v.len() == objectives.len() && v.iter().all(|x| x.is_finite());
    (0..values.len())
        .filter(|&i| finite(&values[i]))
        .filter(|&i| !values.iter().any(|other| finite(other) && dominates(objectives, other, &values[i])))
        .collect()
}

/// The hypervolume dominated by `values` and bounded by `reference` (a point worse than every point of interest
/// on every objective), in the objectives' own units. Points not better than the reference on every objective
/// contribute nothing. Exact, by slicing along the last objective (fine for the few objectives and the fronts of
/// hundreds of points a lab produces).
pub fn hypervolume(objectives: &[Objective], values: &[Vec<f64>], reference: &[f64]) -> f64 {
    let m = objectives.len();
    if m == 0 || reference.len() != m {
        return 0.0;
    }
    let r: Vec<f64> = objectives.iter().zip(reference).map(|(o, v)| o.direction.internal(*v)).collect();
    let points: Vec<Vec<f64>> = values
        .iter()
        .filter(|v| v.len() == m && v.iter().all(|x| x.is_finite()))
        .map(|v| objectives.iter().zip(v).map(|(o, x)| o.direction.internal(*x)).collect::<Vec<f64>>())
        .filter(|p| p.iter().zip(&r).all(|(a, b)| a < b))
        .collect();
    volume(points, &r)
}

/// The volume dominated by `points` (minimisation) inside the box bounded above by `r`.
fn volume(mut points: Vec<Vec<f64>>, r: &[f64]) -> f64 {
    let m = r.len();
    if points.is_empty() {
        return 0.0;
    }
    if m == 1 {
        return r[0] - points.iter().map(|p| p[0]).fold(f64::INFINITY, f64::min);
    }
    if m == 2 {
        points.sort_by(|a, b| a[0].total_cmp(&b[0]).then(a[1].total_cmp(&b[1])));
        let mut total = 0.0;
        let mut ceiling = r[1];
        for p in &points {
            if p[1] < ceiling {
                total += (r[0] - p[0]) * (ceiling - p[1]);
                ceiling = p[1];
            }
        }
        return total;
    }
    // Slice along the last objective: between consecutive levels, the dominated region is the (m-1)-dimensional
    // volume of the points at or below the slice.
    points.sort_by(|a, b| a[m - 1].total_cmp(&b[m - 1]));
    let mut total = 0.0;
    for k in 0..points.len() {
        let top = if k + 1 < points.len() { points[k + 1][m - 1] } else { r[m - 1] };
        let height = top - points[k][m - 1];
        if height > 0.0 {
            let slice: Vec<Vec<f64>> = points[..=k].iter().map(|p| p[..m - 1].to_vec()).collect();
            total += height * volume(slice, &r[..m - 1]);
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two() -> Vec<Objective> {
        vec![Objective::maximize("yield"), Objective::minimize("cost")]
    }

    #[test]
    fn the_front_of_a_small_example() {
        // (yield, cost): more yield and less cost are better.
        let values = vec![
            vec![10.0, 5.0], // dominated by the next
            vec![12.0, 4.0],
            vec![15.0, 9.0],
            vec![8.0, 1.0],
            vec![12.0, 4.0], // a duplicate of a front point
            vec![7.0, 2.0],  // dominated by (8, 1)
            vec![f64::NAN, 0.0],
        ];
        assert_eq!(pareto_front(&two(), &values), vec![1, 2, 3, 4]);
        assert!(dominates(&two(), &values[1], &values[0]));
        assert!(!dominates(&two(), &values[1], &values[4]));
    }

    #[test]
    fn hypervolumes_of_known_shapes() {
        let min2 = vec![Objective::minimize("a"), Objective::minimize("b")];
        // Two points on a staircase: 3×1 + 1×2 (the union of the boxes they dominate up to (4, 4)).
        let hv = hypervolume(&min2, &[vec![1.0, 3.0], vec![3.0, 1.0]], &[4.0, 4.0]);
        assert!((hv - 5.0).abs() < 1e-12, "{hv}");
        // Maximise yield, minimise cost: (3, 1) dominates (1, 3), so only its box [0, 3] × [1, 4] counts.
        let hv = hypervolume(&two(), &[vec![3.0, 1.0], vec![1.0, 3.0]], &[0.0, 4.0]);
        assert!((hv - 9.0).abs() < 1e-12, "{hv}");
        let min3 = vec![Objective::minimize("a"), Objective::minimize("b"), Objective::minimize("c")];
        let hv = hypervolume(&min3, &[vec![0.0, 0.0, 0.0]], &[1.0, 2.0, 3.0]);
        assert!((hv - 6.0).abs() < 1e-12);
        // Two boxes of volume 4 in 3-D that overlap in a box of volume 2.
        let hv = hypervolume(&min3, &[vec![0.0, 1.0, 0.0], vec![1.0, 0.0, 0.0]], &[2.0, 2.0, 2.0]);
        assert!((hv - 6.0).abs() < 1e-12, "{hv}");
        // Points beyond the reference add nothing.
        assert_eq!(hypervolume(&min2, &[vec![5.0, 0.0]], &[4.0, 4.0]), 0.0);
    }
}
