//! The covariances between many points and a model's training points, as one matrix: what every prediction over
//! a pool of candidates starts from, and, over a table of thousands of rows, most of a proposal's time.
//!
//! With an additive part ([`Additive`]) the kernel is a function of each parameter's distance alone, and over a
//! table of categorical conditions a parameter's inputs take only a few distinct values (its levels): for a
//! ligand with twelve levels, twelve one-hot vectors among thousands of rows. So each parameter's distances and
//! correlations are computed once per pair of distinct values, into small tables, and each pair of points sums its
//! parameters' entries. The arithmetic is the same, in the same order, as [`Additive::correlation`]'s, so the
//! matrix is the same to the bit; only the kernel over all inputs is still evaluated once per pair. Where values do
//! not repeat (continuous parameters), the tables would be as large as the matrix, and each pair is computed
//! directly.

use std::collections::HashMap;

use super::{Gp, Hyper, Kernel, correlation};

/// Per group (parameter) of inputs, each point's id among the group's distinct values, and those values.
struct Distinct {
    /// `ids[g][p]`: point `p`'s id in group `g`.
    ids: Vec<Vec<u32>>,
    /// `values[g][id]`: the group's inputs at that id.
    values: Vec<Vec<Vec<f64>>>,
}

impl Distinct {
    /// The distinct values of each group's inputs among `points` (each a slice of all inputs).
    fn of<'a>(members: &[Vec<usize>], points: impl Iterator<Item = &'a [f64]> + Clone) -> Distinct {
        let mut ids = Vec::with_capacity(members.len());
        let mut values = Vec::with_capacity(members.len());
        let mut key: Vec<u64> = Vec::new();
        for inputs in members {
            let mut seen: HashMap<Vec<u64>, u32> = HashMap::new();
            let mut group_values = Vec::new();
            let group_ids = points
                .clone()
                .map(|p| {
                    key.clear();
                    key.extend(inputs.iter().map(|&j| p[j].to_bits()));
                    if let Some(&id) = seen.get(key.as_slice()) {
                        return id;
                    }
                    let id = group_values.len() as u32;
                    seen.insert(key.clone(), id);
                    group_values.push(inputs.iter().map(|&j| p[j]).collect());
                    id
                })
                .collect();
            ids.push(group_ids);
            values.push(group_values);
        }
        Distinct { ids, values }
    }

    /// How many pairs of distinct values there are, summed over groups, against `other`.
    fn pairs(&self, other: &Distinct) -> usize {
        self.values.iter().zip(&other.values).map(|(a, b)| a.len() * b.len()).sum()
    }
}

impl Gp {
    /// The signal-scaled covariances of `points` with the training points, row-major with a row per training
    /// point and a column per point (`n`×`m`).
    pub(super) fn cross_matrix(&self, points: &[Vec<f64>]) -> Vec<f64> {
        let (n, m, d) = (self.n, points.len(), self.d);
        let model = Covariance { hyper: &self.hyper, inv_ls2: &self.inv_ls2, signal: self.signal };
        if let Some(ks) = model.by_levels(&self.x, d, points.iter().map(Vec::as_slice)) {
            return ks;
        }
        let mut ks = vec![0.0; n * m];
        let mut scratch = self.hyper.scratch();
        let (kernel, additive) = (self.hyper.kernel, self.hyper.additive.as_ref());
        for (j, p) in points.iter().enumerate() {
            for i in 0..n {
                let pair = (&p[..], &self.x[i * d..(i + 1) * d]);
                ks[i * m + j] = self.signal * correlation(kernel, additive, pair, &self.inv_ls2, &mut scratch, None);
            }
        }
        ks
    }
}

/// A kernel with its hyperparameters, for covariance matrices: the additive part in `hyper`, `1/ℓ_j²` per input,
/// and the signal variance.
pub(super) struct Covariance<'a> {
    pub(super) hyper: &'a Hyper,
    pub(super) inv_ls2: &'a [f64],
    pub(super) signal: f64,
}

impl Covariance<'_> {
    /// The covariances of `points` with the `training` points (row-major, `d` inputs each), row-major with a row
    /// per training point and a column per point, from per-group tables of distances and correlations; `None`
    /// when the kernel has no additive part or the groups' values do not repeat enough to make tables the cheaper
    /// way.
    pub(super) fn by_levels<'p>(
        &self,
        training: &[f64],
        d: usize,
        points: impl ExactSizeIterator<Item = &'p [f64]> + Clone,
    ) -> Option<Vec<f64>> {
        let add = self.hyper.additive.as_ref().filter(|a| a.group_count() > 0 && a.len() == d)?;
        let (n, m) = (training.len() / d.max(1), points.len());
        let count = add.group_count();
        let mut members = vec![Vec::new(); count];
        for (j, g) in add.groups().iter().enumerate() {
            members[*g].push(j);
        }
        let known = Distinct::of(&members, training.chunks_exact(d));
        let candidates = Distinct::of(&members, points);
        // A table entry costs about what a pair's group costs directly; only a clear saving is worth the tables.
        if candidates.pairs(&known) * 4 > n * m {
            return None;
        }
        let kernel = self.hyper.kernel;
        // Per group, row-major by training value: (scaled squared distance, correlation).
        let tables: Vec<Vec<(f64, f64)>> = members
            .iter()
            .enumerate()
            .map(|(g, inputs)| {
                let mut table = Vec::with_capacity(known.values[g].len() * candidates.values[g].len());
                for b in &known.values[g] {
                    for a in &candidates.values[g] {
                        // As `Additive::correlation` sums a group's inputs: in input order, from zero.
                        let mut r2 = 0.0;
                        for (k, &j) in inputs.iter().enumerate() {
                            r2 += (a[k] - b[k]) * (a[k] - b[k]) * self.inv_ls2[j];
                        }
                        table.push((r2, kernel.eval(r2.sqrt()).0));
                    }
                }
                table
            })
            .collect();
        let widths: Vec<usize> = candidates.values.iter().map(Vec::len).collect();
        let weight = add.weight();
        let share = weight / count as f64;
        let mut ks = vec![0.0; n * m];
        let mut rows: Vec<&[(f64, f64)]> = vec![&[]; count];
        for i in 0..n {
            for g in 0..count {
                let at = known.ids[g][i] as usize * widths[g];
                rows[g] = &tables[g][at..at + widths[g]];
            }
            for (j, k) in ks[i * m..(i + 1) * m].iter_mut().enumerate() {
                let (mut r2, mut sum) = (0.0, 0.0);
                for g in 0..count {
                    let (t, c) = rows[g][candidates.ids[g][j] as usize];
                    r2 += t;
                    sum += c;
                }
                let whole = whole_correlation(kernel, r2);
                *k = self.signal * ((1.0 - weight) * whole + share * sum);
            }
        }
        Some(ks)
    }
}

/// The kernel over all inputs at squared scaled distance `r2`, as [`Additive::correlation`] evaluates it.
fn whole_correlation(kernel: Kernel, r2: f64) -> f64 {
    kernel.eval(r2.sqrt()).0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::surrogate::gp::{Additive, Hyper, Mean};

    /// One-hot rows of three parameters with 3, 4 and 2 levels, and a continuous input, in every combination.
    fn rows(continuous: bool) -> Vec<Vec<f64>> {
        let mut out = Vec::new();
        for a in 0..3 {
            for b in 0..4 {
                for c in 0..2 {
                    let mut r = vec![0.0; 9];
                    r[a] = 1.0;
                    r[3 + b] = 1.0;
                    r[7 + c] = 1.0;
                    if continuous {
                        r.push((a * 8 + b * 2 + c) as f64 / 23.0);
                    }
                    out.push(r);
                }
            }
        }
        out
    }

    fn model(continuous: bool, kernel: Kernel) -> Gp {
        // Every row twice, with different results: enough training points for the tables to pay.
        let x: Vec<Vec<f64>> = rows(continuous).into_iter().cycle().take(48).collect();
        let y: Vec<f64> = (0..x.len()).map(|i| (i as f64 * 0.7).sin()).collect();
        let mut groups = vec![0, 0, 0, 1, 1, 1, 1, 2, 2];
        if continuous {
            groups.push(3);
        }
        let d = groups.len();
        let mut hyper = Hyper::new(d, 0.8, 1e-3).with_kernel(kernel).with_additive(Some(Additive::new(&groups, 0.5)));
        hyper.log_length_scales.iter_mut().enumerate().for_each(|(j, l)| *l += 0.1 * j as f64);
        Gp::fit(&x, &y, &hyper, Mean::Profiled).unwrap()
    }

    fn covariance(gp: &Gp) -> Covariance<'_> {
        Covariance { hyper: &gp.hyper, inv_ls2: &gp.inv_ls2, signal: gp.signal }
    }

    fn direct(gp: &Gp, points: &[Vec<f64>]) -> Vec<f64> {
        let (n, m, d) = (gp.n, points.len(), gp.d);
        let mut scratch = gp.hyper.scratch();
        let mut ks = vec![0.0; n * m];
        for (j, p) in points.iter().enumerate() {
            for i in 0..n {
                let pair = (&p[..], &gp.x[i * d..(i + 1) * d]);
                let c = correlation(gp.hyper.kernel, gp.hyper.additive.as_ref(), pair, &gp.inv_ls2, &mut scratch, None);
                ks[i * m + j] = gp.signal * c;
            }
        }
        ks
    }

    #[test]
    fn the_tables_of_levels_give_the_same_covariances_to_the_bit() {
        for kernel in [Kernel::Matern52, Kernel::SquaredExponential] {
            let gp = model(false, kernel);
            // Every row, many times over, so the levels repeat enough for the tables.
            let points: Vec<Vec<f64>> = rows(false).into_iter().cycle().take(24 * 20).collect();
            let ks = covariance(&gp).by_levels(&gp.x, gp.d, points.iter().map(Vec::as_slice));
            let ks = ks.expect("levels that repeat are tabled");
            let want = direct(&gp, &points);
            assert!(ks.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{kernel:?}");
            assert_eq!(gp.cross_matrix(&points), want);
            // The covariance matrix of the training points, which the fit factorises.
            let (n, d) = (gp.n, gp.d);
            let gram = covariance(&gp).by_levels(&gp.x, d, gp.x.chunks_exact(d)).expect("tabled");
            let rows: Vec<Vec<f64>> = gp.x.chunks_exact(d).map(<[f64]>::to_vec).collect();
            let direct = direct(&gp, &rows);
            for i in 0..n {
                for j in 0..i {
                    assert_eq!(gram[i * n + j].to_bits(), direct[j * n + i].to_bits(), "{i}, {j}");
                }
            }
        }
    }

    #[test]
    fn inputs_that_do_not_repeat_are_computed_directly() {
        let gp = model(true, Kernel::Matern52);
        let points = rows(true);
        let ks = covariance(&gp).by_levels(&gp.x, gp.d, points.iter().map(Vec::as_slice));
        assert!(ks.is_none(), "a continuous input makes every row its own value");
        assert_eq!(gp.cross_matrix(&points), direct(&gp, &points));
    }
}
