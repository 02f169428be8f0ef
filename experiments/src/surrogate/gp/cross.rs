//! The covariances between many points and a model's training points, as one matrix: what every prediction over
//! a pool of candidates starts from, and, over a table of thousands of rows, most of a proposal's time.
//!
//! With an additive part ([`Additive`]) the kernel is a function of each parameter's distance alone, and over a
//! table of categorical conditions a parameter's inputs take only a few distinct values (its levels): for a
//! ligand with twelve levels, twelve one-hot vectors among thousands of rows. So each parameter's distances,
//! correlations and slopes are computed once per pair of distinct values, into small tables ([`Levels`]), and each
//! pair of points sums its parameters' entries: for the covariances with a pool's candidates, and for the training
//! points' own at every step of a fit. The arithmetic is the same, in the same order, as [`Additive::parts`]', so
//! every value is the same to the bit; only the kernel over all inputs is still evaluated once per pair. Where
//! values do not repeat (continuous parameters), the tables would be as large as the matrix, and each pair is
//! computed directly.

use std::collections::HashMap;

use super::{Additive, Gp, Kernel, correlation};

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
        if let Some(ks) = self.by_levels(points) {
            return ks;
        }
        let (n, m, d) = (self.n, points.len(), self.d);
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

    /// [`Gp::cross_matrix`] from per-group tables of distances and correlations; `None` when the kernel has no
    /// additive part or the groups' values do not repeat enough to make tables the cheaper way.
    fn by_levels(&self, points: &[Vec<f64>]) -> Option<Vec<f64>> {
        let add = self.hyper.additive.as_ref()?;
        let (n, m, d) = (self.n, points.len(), self.d);
        let training = self.x.chunks_exact(d.max(1));
        let columns = points.iter().map(Vec::as_slice);
        let repeats = Repeats::of(add, d, training, columns, n * m)?;
        let levels = repeats.levels(self.hyper.kernel, &self.inv_ls2);
        let count = levels.groups();
        let mut ks = vec![0.0; n * m];
        // `Levels::parts` without the slopes, each row's tables looked up once for all the columns: the hot loop of
        // a proposal over a table.
        let mut rows: Vec<&[Entry]> = vec![&[]; count];
        for i in 0..n {
            for (g, row) in rows.iter_mut().enumerate() {
                *row = levels.row(g, i);
            }
            for (j, k) in ks[i * m..(i + 1) * m].iter_mut().enumerate() {
                let (mut r2, mut sum) = (0.0, 0.0);
                for g in 0..count {
                    let e = rows[g][levels.col(g, j)];
                    r2 += e.r2;
                    sum += e.c;
                }
                *k = self.signal * add.mix(self.hyper.kernel.eval(r2.sqrt()).0, sum);
            }
        }
        Some(ks)
    }
}

/// One pair of a group's distinct values: their scaled squared distance, and the group's correlation and slope
/// `−(dk/dr)/r` there.
#[derive(Debug, Clone, Copy)]
struct Entry {
    r2: f64,
    c: f64,
    slope: f64,
}

/// The distinct values of each group of an additive part's inputs among one set of points (the rows) and among
/// another (the columns): what [`Levels`] are built on. They depend on the points alone, so a fit finds them once
/// and builds its tables from them at every step.
pub(super) struct Repeats {
    additive: Additive,
    /// Per group, its inputs.
    members: Vec<Vec<usize>>,
    rows: Distinct,
    cols: Distinct,
}

impl Repeats {
    /// The distinct values of `rows` and `cols` (each point a slice of `d` inputs) under `additive`, if tables of
    /// them would have no more entries than the `pairs` pairs they serve. An entry costs one evaluation of the
    /// kernel, and a pair computed directly one per group and one more; with the tables a pair costs one, so they
    /// pay whenever values repeat, and over continuous inputs, which do not, there would be more entries than
    /// pairs.
    pub(super) fn of<'r, 'c>(
        additive: &Additive,
        d: usize,
        rows: impl Iterator<Item = &'r [f64]> + Clone,
        cols: impl Iterator<Item = &'c [f64]> + Clone,
        pairs: usize,
    ) -> Option<Repeats> {
        let count = additive.group_count();
        // A group of one input is an ordered parameter, whose values (continuous ones, at least) do not repeat:
        // looking for repeats there would cost a hash of every point at every prediction, for nothing.
        if count == 0 || additive.len() != d || additive.len() == count {
            return None;
        }
        let mut members = vec![Vec::new(); count];
        for (j, g) in additive.groups().iter().enumerate() {
            members[*g].push(j);
        }
        let rows = Distinct::of(&members, rows);
        let cols = Distinct::of(&members, cols);
        if cols.pairs(&rows) > pairs {
            return None;
        }
        Some(Repeats { additive: additive.clone(), members, rows, cols })
    }

    /// The tables under `kernel` with `1/ℓ_j²` per input.
    pub(super) fn levels(&self, kernel: Kernel, inv_ls2: &[f64]) -> Levels<'_> {
        let (rows, cols) = (&self.rows, &self.cols);
        let tables = self
            .members
            .iter()
            .enumerate()
            .map(|(g, inputs)| {
                let mut table = Vec::with_capacity(rows.values[g].len() * cols.values[g].len());
                for b in &rows.values[g] {
                    for a in &cols.values[g] {
                        // As `Additive::parts` sums a group's inputs: in input order, from zero.
                        let mut r2 = 0.0;
                        for (k, &j) in inputs.iter().enumerate() {
                            r2 += (a[k] - b[k]) * (a[k] - b[k]) * inv_ls2[j];
                        }
                        let (c, slope) = kernel.eval(r2.sqrt());
                        table.push(Entry { r2, c, slope });
                    }
                }
                table
            })
            .collect();
        let widths = cols.values.iter().map(Vec::len).collect();
        Levels { repeats: self, widths, tables, kernel }
    }
}

/// Per group of an additive part's inputs, a table of [`Entry`] between every distinct value among the rows and
/// among the columns of its [`Repeats`].
pub(super) struct Levels<'a> {
    repeats: &'a Repeats,
    /// Per group, the table's width: how many distinct values the columns have.
    widths: Vec<usize>,
    /// Per group, row-major by the rows' values.
    tables: Vec<Vec<Entry>>,
    kernel: Kernel,
}

impl Levels<'_> {
    /// How many groups there are.
    pub(super) fn groups(&self) -> usize {
        self.repeats.members.len()
    }

    /// Group `g`'s inputs.
    pub(super) fn members(&self, g: usize) -> &[usize] {
        &self.repeats.members[g]
    }

    /// Whether row `i` and column `j` have the same value of group `g`, so that every input of it agrees. (Over
    /// one set of points as both, each point has one id per group.)
    pub(super) fn agree(&self, g: usize, i: usize, j: usize) -> bool {
        self.repeats.rows.ids[g][i] == self.repeats.cols.ids[g][j]
    }

    /// Group `g`'s entries for row `i` against every distinct value of the columns.
    fn row(&self, g: usize, i: usize) -> &[Entry] {
        let at = self.repeats.rows.ids[g][i] as usize * self.widths[g];
        &self.tables[g][at..at + self.widths[g]]
    }

    /// Column `j`'s id in group `g`.
    fn col(&self, g: usize, j: usize) -> usize {
        self.repeats.cols.ids[g][j] as usize
    }

    /// What [`Additive::parts`] gives for row `i` and column `j`: the correlation and the slope of the kernel over
    /// all inputs, with each group's slope left in `group_slopes`; the same to the bit.
    pub(super) fn parts(&self, i: usize, j: usize, group_slopes: &mut [f64]) -> (f64, f64) {
        let (mut r2, mut sum) = (0.0, 0.0);
        for (g, slope) in group_slopes[..self.groups()].iter_mut().enumerate() {
            let e = self.row(g, i)[self.col(g, j)];
            r2 += e.r2;
            sum += e.c;
            *slope = e.slope;
        }
        let (whole, whole_slope) = self.kernel.eval(r2.sqrt());
        (self.repeats.additive.mix(whole, sum), whole_slope)
    }
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
        // Every row twice, with different results (and continuous values all different): enough training points
        // for the tables to pay where levels repeat.
        let mut x: Vec<Vec<f64>> = rows(continuous).into_iter().cycle().take(48).collect();
        if continuous {
            x.iter_mut().enumerate().for_each(|(i, r)| r[9] += 1e-3 * i as f64);
        }
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
            let ks = gp.by_levels(&points).expect("levels that repeat are tabled");
            let want = direct(&gp, &points);
            assert!(ks.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{kernel:?}");
            assert_eq!(gp.cross_matrix(&points), want);
        }
    }

    #[test]
    fn the_tables_give_a_fit_the_same_correlations_and_slopes_to_the_bit() {
        for kernel in [Kernel::Matern52, Kernel::SquaredExponential] {
            let gp = model(false, kernel);
            let (n, d) = (gp.n, gp.d);
            let add = gp.hyper.additive.clone().unwrap();
            let points = gp.x.chunks_exact(d);
            let repeats = Repeats::of(&add, d, points.clone(), points, n * (n - 1) / 2);
            let levels = repeats.as_ref().expect("levels that repeat are tabled").levels(kernel, &gp.inv_ls2);
            let (mut tabled, mut direct) = (vec![0.0; d], vec![0.0; d]);
            for i in 0..n {
                for j in 0..i {
                    let (a, b) = (&gp.x[i * d..(i + 1) * d], &gp.x[j * d..(j + 1) * d]);
                    let (c, slope) = levels.parts(i, j, &mut tabled);
                    let (want_c, want_slope) = add.parts(kernel, a, b, &gp.inv_ls2, &mut direct);
                    assert_eq!((c.to_bits(), slope.to_bits()), (want_c.to_bits(), want_slope.to_bits()), "{i}, {j}");
                    let groups = add.group_count();
                    assert!(tabled[..groups].iter().zip(&direct[..groups]).all(|(a, b)| a.to_bits() == b.to_bits()));
                }
            }
        }
    }

    #[test]
    fn ordered_parameters_alone_are_not_searched_for_repeats() {
        // Each input its own group, as every parameter ordered gives: even values that repeat are not tabled, so
        // that no prediction over a continuous space pays for looking.
        let points: Vec<Vec<f64>> = (0..40).map(|i| vec![(i % 3) as f64 / 2.0, (i % 2) as f64]).collect();
        let flat: Vec<f64> = points.iter().flatten().copied().collect();
        let rows = flat.chunks_exact(2);
        assert!(Repeats::of(&Additive::new(&[0, 1], 0.5), 2, rows.clone(), rows.clone(), 780).is_none());
        assert!(Repeats::of(&Additive::new(&[0, 0], 0.5), 2, rows.clone(), rows, 780).is_some());
    }

    #[test]
    fn inputs_that_do_not_repeat_are_computed_directly() {
        let gp = model(true, Kernel::Matern52);
        let points = rows(true);
        assert!(gp.by_levels(&points).is_none(), "a continuous input makes every row its own value");
        assert_eq!(gp.cross_matrix(&points), direct(&gp, &points));
    }
}
