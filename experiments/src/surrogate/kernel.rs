//! The correlation functions of a Gaussian process's kernel, of the scaled distance `r` between two inputs:
//! Matérn 5/2 for rough functions and the squared exponential for smooth ones ([`Kernel`]).

const SQRT5: f64 = 2.236_067_977_499_79;

/// The correlation function of the scaled distance `r`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kernel {
    /// Matérn 5/2: `(1 + √5 r + 5r²/3) exp(-√5 r)`, twice differentiable; the usual default for experiments.
    #[default]
    Matern52,
    /// Squared exponential: `exp(-r²/2)`, infinitely smooth; fits smooth functions far more precisely.
    SquaredExponential,
}

impl Kernel {
    /// The correlation at scaled distance `r`, and `-(dk/dr)/r` (finite at `r = 0`).
    pub(crate) fn eval(self, r: f64) -> (f64, f64) {
        match self {
            Kernel::Matern52 => matern(r),
            Kernel::SquaredExponential => {
                let e = (-0.5 * r * r).exp();
                (e, e)
            }
        }
    }

    /// The name used in provenance.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Matern52 => "Matern 5/2",
            Kernel::SquaredExponential => "squared exponential",
        }
    }
}

/// The Matérn 5/2 correlation at scaled distance `r`, and `-(dk/dr)/r` (finite at `r = 0`).
fn matern(r: f64) -> (f64, f64) {
    let e = (-SQRT5 * r).exp();
    ((1.0 + SQRT5 * r + 5.0 / 3.0 * r * r) * e, 5.0 / 3.0 * (1.0 + SQRT5 * r) * e)
}
