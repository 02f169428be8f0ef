//! An additive part for a Gaussian process's kernel: the kernel over all inputs mixed with the mean of the same
//! kernel over each parameter's inputs alone,
//!
//! `k(x, x') = (1 − w) k(r) + w · (1/G) Σ_g k(r_g)`, with `r_g² = Σ_{j in g} (x_j − x'_j)² / ℓ_j²`,
//!
//! the mixture of CoCaBO (Ru et al. 2020, "Bayesian optimisation over multiple continuous and categorical inputs").
//! The product part (`k(r)`, the usual kernel) relates two conditions only as far as they agree in every
//! parameter; the additive part also relates conditions that share one parameter's level, so a result teaches
//! the model about every untried condition with the same ligand, say. Over a table of categorical conditions, where
//! any two rows differ in whole levels and the product part soon finds short length scales, that is what lets a
//! model carry "this ligand does well" to rows it has not measured; BENCHMARKS.md, "Reaction tables the proposer
//! was not tuned on", has the measurements.
//!
//! Both parts have correlation 1 at zero distance, so the signal variance and every other hyperparameter keep
//! their meaning. The weight `w` is not fitted: the proposer holds it at one value, since choosing it by the
//! posterior, as the kernel is chosen, measured worse (`proposer::gaussian_process`, `ADDITIVE_WEIGHT`).

use super::kernel::Kernel;

/// The additive part of a kernel: which parameter (group) each input belongs to, and the weight of the mean of
/// the per-parameter kernels against the product over all inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct Additive {
    /// Per input, its group, numbered from 0.
    groups: Vec<usize>,
    /// How many groups there are.
    count: usize,
    /// The additive part's weight, in [0, 1].
    weight: f64,
}

impl Additive {
    /// The additive part over inputs grouped as `groups` (per input, its group numbered from 0), with weight
    /// `weight` (clamped to [0, 1]).
    pub fn new(groups: &[usize], weight: f64) -> Self {
        let count = groups.iter().max().map_or(0, |m| m + 1);
        Additive { groups: groups.to_vec(), count, weight: weight.clamp(0.0, 1.0) }
    }

    /// The additive part's weight.
    pub fn weight(&self) -> f64 {
        self.weight
    }

    /// How many inputs the grouping covers.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// Per input, its group, numbered from 0.
    pub fn groups(&self) -> &[usize] {
        &self.groups
    }

    /// How many groups there are.
    pub fn group_count(&self) -> usize {
        self.count
    }

    /// Whether the grouping covers no input.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// The correlation of `a` and `b` (with `inv_ls2[j] = 1/ℓ_j²`), and into `slopes`, when given, each input's
    /// factor `g_j` with `∂k/∂(ln ℓ_j) = g_j (a_j − b_j)² / ℓ_j²` and `∂k/∂a_j = −g_j (a_j − b_j) / ℓ_j²`: for the
    /// plain kernel `g = −(dk/dr)/r`, the same for every input. `partial` is scratch space of at least one value
    /// per group.
    pub(crate) fn correlation(
        &self,
        kernel: Kernel,
        a: &[f64],
        b: &[f64],
        inv_ls2: &[f64],
        partial: &mut [f64],
        slopes: Option<&mut [f64]>,
    ) -> f64 {
        let (c, whole_slope) = self.parts(kernel, a, b, inv_ls2, partial);
        if let Some(slopes) = slopes {
            self.slopes(whole_slope, partial, slopes);
        }
        c
    }

    /// The correlation of `a` and `b` and the slope `−(dk/dr)/r` of the kernel over all inputs, leaving each
    /// group's own slope in `partial` (at least one value per group), from which [`Additive::slopes`] gives every
    /// input's.
    pub(crate) fn parts(
        &self,
        kernel: Kernel,
        a: &[f64],
        b: &[f64],
        inv_ls2: &[f64],
        partial: &mut [f64],
    ) -> (f64, f64) {
        let partial = &mut partial[..self.count];
        partial.fill(0.0);
        for (j, g) in self.groups.iter().enumerate() {
            partial[*g] += (a[j] - b[j]) * (a[j] - b[j]) * inv_ls2[j];
        }
        let (whole, whole_slope) = kernel.eval(partial.iter().sum::<f64>().sqrt());
        if self.count == 0 {
            // No group, so no input either: the additive part is empty, and the kernel is the plain one.
            return (whole, whole_slope);
        }
        let mut sum = 0.0;
        for r2 in partial.iter_mut() {
            let (c, slope) = kernel.eval(r2.sqrt());
            sum += c;
            // The group's slope, kept in place of its distance, which is no longer needed.
            *r2 = slope;
        }
        (self.mix(whole, sum), whole_slope)
    }

    /// The correlation from the kernel over all inputs, `whole`, and the sum of the per-group kernels, `sum`:
    /// `(1 − w) whole + (w / G) sum`. Every way of computing the kernel ends here, so that they agree to the bit.
    pub(crate) fn mix(&self, whole: f64, sum: f64) -> f64 {
        let share = self.weight / self.count as f64;
        (1.0 - self.weight) * whole + share * sum
    }

    /// Each input's slope factor (as [`Additive::correlation`] gives them) from the slope of the kernel over all
    /// inputs and each group's (as [`Additive::parts`] leaves them).
    pub(crate) fn slopes(&self, whole_slope: f64, group_slopes: &[f64], slopes: &mut [f64]) {
        for (s, g) in slopes.iter_mut().zip(&self.groups) {
            *s = self.group_slope(whole_slope, group_slopes, *g);
        }
    }

    /// The slope factor of every input of group `g` (as [`Additive::slopes`] gives it).
    pub(crate) fn group_slope(&self, whole_slope: f64, group_slopes: &[f64], g: usize) -> f64 {
        let share = self.weight / self.count as f64;
        (1.0 - self.weight) * whole_slope + share * group_slopes[g]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mixture_is_one_at_zero_distance_and_its_slopes_match_finite_differences() {
        let groups = [0, 0, 1, 2, 2];
        let inv = [2.0, 0.5, 3.0, 1.0, 0.25];
        let a = [1.0, 0.0, 0.3, 0.0, 1.0];
        let b = [0.0, 1.0, 0.9, 1.0, 0.0];
        let mut partial = [0.0; 3];
        for kernel in [Kernel::SquaredExponential, Kernel::Matern52] {
            for weight in [0.0, 0.5, 1.0] {
                let add = Additive::new(&groups, weight);
                assert!((add.correlation(kernel, &a, &a, &inv, &mut partial, None) - 1.0).abs() < 1e-15);
                let mut slopes = [0.0; 5];
                let k = add.correlation(kernel, &a, &b, &inv, &mut partial, Some(&mut slopes));
                assert!(k > 0.0 && k < 1.0, "{k}");
                for j in 0..5 {
                    // ∂k/∂(ln ℓ_j) moves inv_ls2[j] = exp(−2 ln ℓ_j).
                    let at = |h: f64| {
                        let mut inv = inv;
                        inv[j] *= (-2.0 * h).exp();
                        add.correlation(kernel, &a, &b, &inv, &mut [0.0; 3], None)
                    };
                    let fd = (at(1e-6) - at(-1e-6)) / 2e-6;
                    let exact = slopes[j] * (a[j] - b[j]).powi(2) * inv[j];
                    assert!((fd - exact).abs() < 1e-8, "{kernel:?} {weight} input {j}: {fd} against {exact}");
                }
            }
        }
        // With no input it is one, and at weight 0 it is the plain kernel.
        assert_eq!(Additive::new(&[], 0.5).correlation(Kernel::Matern52, &[], &[], &[], &mut [], None), 1.0);
        let plain = Additive::new(&groups, 0.0).correlation(Kernel::Matern52, &a, &b, &inv, &mut partial, None);
        let r2: f64 = a.iter().zip(&b).zip(&inv).map(|((x, y), w)| (x - y) * (x - y) * w).sum();
        assert!((plain - Kernel::Matern52.eval(r2.sqrt()).0).abs() < 1e-15);
    }
}
