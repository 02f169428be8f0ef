//! The dense linear algebra a Gaussian process needs: Cholesky factors, triangular solves, and the growth of a
//! factor by one row.
//!
//! Matrices are row-major `Vec<f64>`s of known size. The loops are ordered so the innermost one runs over
//! contiguous memory, which lets the compiler vectorise them; at the sizes a lab reaches (hundreds of
//! experiments) that is within a small factor of an optimised BLAS, without a native dependency.

/// Why a matrix could not be factorised.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("the matrix is not positive definite (pivot {pivot} is {value:e})")]
pub struct NotPositiveDefinite {
    /// The row whose pivot was not positive.
    pub pivot: usize,
    /// The pivot's value.
    pub value: f64,
}

/// Factorises the symmetric positive-definite `n`×`n` matrix `a` (only its lower triangle is read) in place into
/// its lower Cholesky factor `L` (`a = L Lᵀ`); the strict upper triangle is zeroed.
pub fn cholesky(a: &mut [f64], n: usize) -> Result<(), NotPositiveDefinite> {
    debug_assert_eq!(a.len(), n * n);
    for j in 0..n {
        // Row-oriented (Cholesky–Banachiewicz): row j depends on the rows above it.
        let (done, rest) = a.split_at_mut(j * n);
        let row_j = &mut rest[..n];
        for k in 0..j {
            let row_k = &done[k * n..k * n + k + 1];
            let dot: f64 = row_j[..k].iter().zip(&row_k[..k]).map(|(x, y)| x * y).sum();
            row_j[k] = (row_j[k] - dot) / row_k[k];
        }
        let dot: f64 = row_j[..j].iter().map(|x| x * x).sum();
        let pivot = row_j[j] - dot;
        if !(pivot > 0.0 && pivot.is_finite()) {
            return Err(NotPositiveDefinite { pivot: j, value: pivot });
        }
        row_j[j] = pivot.sqrt();
        for v in &mut row_j[j + 1..] {
            *v = 0.0;
        }
    }
    Ok(())
}

/// Solves `L x = b` in place for lower-triangular `L`.
pub fn solve_lower(l: &[f64], n: usize, b: &mut [f64]) {
    for i in 0..n {
        let row = &l[i * n..i * n + i];
        let dot: f64 = row.iter().zip(&b[..i]).map(|(x, y)| x * y).sum();
        b[i] = (b[i] - dot) / l[i * n + i];
    }
}

/// Solves `Lᵀ x = b` in place for lower-triangular `L`.
pub fn solve_lower_transposed(l: &[f64], n: usize, b: &mut [f64]) {
    for i in (0..n).rev() {
        b[i] /= l[i * n + i];
        let bi = b[i];
        let row = &l[i * n..i * n + i];
        for (bj, lij) in b[..i].iter_mut().zip(row) {
            *bj -= lij * bi;
        }
    }
}

/// Solves `L X = B` in place for lower-triangular `L` and `B` with `m` columns (row-major, `n`×`m`).
pub fn solve_lower_many(l: &[f64], n: usize, b: &mut [f64], m: usize) {
    for i in 0..n {
        let (above, rest) = b.split_at_mut(i * m);
        let row_i = &mut rest[..m];
        for k in 0..i {
            let lik = l[i * n + k];
            if lik != 0.0 {
                for (x, y) in row_i.iter_mut().zip(&above[k * m..(k + 1) * m]) {
                    *x -= lik * y;
                }
            }
        }
        let d = 1.0 / l[i * n + i];
        for x in row_i.iter_mut() {
            *x *= d;
        }
    }
}

/// The inverse of `L Lᵀ` from the lower Cholesky factor `L`, as a full symmetric matrix.
pub fn inverse_from_cholesky(l: &[f64], n: usize) -> Vec<f64> {
    // First the inverse of L (lower triangular), one column at a time, stored transposed so each is a row.
    let mut inv_t = vec![0.0; n * n];
    for j in 0..n {
        let col = &mut inv_t[j * n..(j + 1) * n];
        col[j] = 1.0 / l[j * n + j];
        for i in j + 1..n {
            let row = &l[i * n + j..i * n + i];
            let dot: f64 = row.iter().zip(&col[j..i]).map(|(x, y)| x * y).sum();
            col[i] = -dot / l[i * n + i];
        }
    }
    // (L Lᵀ)⁻¹ = L⁻ᵀ L⁻¹: entry (a, b) is the dot product of columns a and b of L⁻¹, which are rows here.
    let mut out = vec![0.0; n * n];
    for a in 0..n {
        for b in 0..=a {
            let start = a.max(b);
            let dot: f64 = inv_t[a * n + start..(a + 1) * n]
                .iter()
                .zip(&inv_t[b * n + start..(b + 1) * n])
                .map(|(x, y)| x * y)
                .sum();
            out[a * n + b] = dot;
            out[b * n + a] = dot;
        }
    }
    out
}

/// Grows the Cholesky factor `l` of an `n`×`n` matrix by one row and column: `cross` holds the new column's
/// entries against the old rows and `diagonal` its own. Returns the `(n+1)`×`(n+1)` factor.
pub fn extend_cholesky(l: &[f64], n: usize, cross: &[f64], diagonal: f64) -> Result<Vec<f64>, NotPositiveDefinite> {
    let mut row = cross.to_vec();
    solve_lower(l, n, &mut row);
    let pivot = diagonal - row.iter().map(|x| x * x).sum::<f64>();
    if !(pivot > 0.0 && pivot.is_finite()) {
        return Err(NotPositiveDefinite { pivot: n, value: pivot });
    }
    let m = n + 1;
    let mut out = vec![0.0; m * m];
    for i in 0..n {
        out[i * m..i * m + i + 1].copy_from_slice(&l[i * n..i * n + i + 1]);
    }
    out[n * m..n * m + n].copy_from_slice(&row);
    out[n * m + n] = pivot.sqrt();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spd(n: usize) -> Vec<f64> {
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] = (-((i as f64 - j as f64) / 2.0).powi(2)).exp();
            }
            a[i * n + i] += 0.1;
        }
        a
    }

    fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
        let mut c = vec![0.0; n * n];
        for i in 0..n {
            for k in 0..n {
                for j in 0..n {
                    c[i * n + j] += a[i * n + k] * b[k * n + j];
                }
            }
        }
        c
    }

    #[test]
    fn the_factor_reproduces_the_matrix_and_solves_it() {
        let n = 7;
        let a = spd(n);
        let mut l = a.clone();
        cholesky(&mut l, n).unwrap();
        let mut lt = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                lt[i * n + j] = l[j * n + i];
            }
        }
        let back = matmul(&l, &lt, n);
        assert!(back.iter().zip(&a).all(|(x, y)| (x - y).abs() < 1e-12));
        let inv = inverse_from_cholesky(&l, n);
        let eye = matmul(&a, &inv, n);
        for i in 0..n {
            for j in 0..n {
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((eye[i * n + j] - want).abs() < 1e-10);
            }
        }
        let b: Vec<f64> = (0..n).map(|i| i as f64 - 3.0).collect();
        let mut x = b.clone();
        solve_lower(&l, n, &mut x);
        solve_lower_transposed(&l, n, &mut x);
        let ax: Vec<f64> = (0..n).map(|i| (0..n).map(|j| a[i * n + j] * x[j]).sum()).collect();
        assert!(ax.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-10));
        let mut many: Vec<f64> = (0..n * 2).map(|k| b[k / 2] * if k % 2 == 0 { 1.0 } else { -2.0 }).collect();
        solve_lower_many(&l, n, &mut many, 2);
        let mut single = b.clone();
        solve_lower(&l, n, &mut single);
        for i in 0..n {
            assert!((many[2 * i] - single[i]).abs() < 1e-12 && (many[2 * i + 1] + 2.0 * single[i]).abs() < 1e-12);
        }
    }

    #[test]
    fn growing_a_factor_equals_factorising_the_grown_matrix() {
        let n = 6;
        let a = spd(n + 1);
        let mut small: Vec<f64> = (0..n).flat_map(|i| a[i * (n + 1)..i * (n + 1) + n].to_vec()).collect();
        cholesky(&mut small, n).unwrap();
        let cross: Vec<f64> = (0..n).map(|i| a[n * (n + 1) + i]).collect();
        let grown = extend_cholesky(&small, n, &cross, a[n * (n + 1) + n]).unwrap();
        let mut full = a.clone();
        cholesky(&mut full, n + 1).unwrap();
        assert!(grown.iter().zip(&full).all(|(x, y)| (x - y).abs() < 1e-12));
    }

    #[test]
    fn an_indefinite_matrix_is_refused() {
        let mut a = vec![1.0, 2.0, 2.0, 1.0];
        assert_eq!(cholesky(&mut a, 2).unwrap_err().pivot, 1);
    }
}
