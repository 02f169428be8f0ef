//! The hidden chemistry and heat transfer of the simulated bench.
//!
//! Reservoir `A` holds reagent A at 0.5 M and reservoir `B` reagent B at 0.5 M; any other reservoir holds inert
//! solvent. In a vessel A and B condense to the coloured product P (second order, `k1 [A][B]`), P slowly decomposes
//! to D (first order, `k2 [P]`), and B is also lost to a slow side reaction with the solvent (first order,
//! `k3 [B]`). All three follow Arrhenius in the vessel's temperature with `Ea3 < Ea1 < Ea2`: heat speeds the
//! condensation past the side reaction but destroys product, so there is a best temperature, and because P both
//! forms and decays there is a best duration; the ratio of B to the fixed amount of A (which dilution also
//! penalises) gives a best volume of B. Stirring below about 200 rpm mixes poorly and slows the condensation.
//!
//! The vessel's temperature follows its hotplate's plate (first order, about 2 minutes) and cools to ambient off
//! the plate; the plate follows its set point at a limited ramp (about 10 degC/min) and cools slowly when off.
//! The absorbance over a 1 cm path is `eps_P [P] g(λ; 520, 35) + eps_D [D] g(λ; 430, 60)` plus the vial's
//! baseline, with `g` a unit-height gaussian.
//!
//! Catalysts `C1` to `C6` (10 mM stocks, or the concentration the lab file gives) are not consumed. Each speeds the
//! condensation by `a_i sqrt([C_i] / 1 mM)` times its own Arrhenius factor (`ΔE_i`), and loses its activity above
//! about `Td_i` (a logistic over 6 K); some also speed the product's decomposition by `s_i [C_i] / 1 mM`. So the best
//! catalyst depends on the temperature (the most active one deactivates when hot, a slower one is robust), and more
//! catalyst is not always better. Each catalyst's hidden `(a, ΔE, Td, s)` follow its two published descriptors
//! ([`CATALYST_DESCRIPTORS`]) through smooth functions, plus noise from the seed. With no catalyst the rates are
//! exactly those above, so the demo reads as it always did.
//!
//! The rate constants and absorptivities are jittered by about ±10 % from the lab's seed, so each seed has its own
//! optimum. For seed 7 and the demo protocol (250 uL of A, 600 rpm) the optimum is near 285 uL of B, 80 degC and
//! 50 minutes, reading about 1.14 AU; every corner of the demo's parameter box reads below 0.25 AU.

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// The room's temperature, in degrees Celsius.
pub const AMBIENT: f64 = 22.0;

/// The fixed step of the bench's physics, in lab seconds; results do not depend on when the bench is queried.
pub const SUBSTEP: f64 = 2.0;

/// Concentration of reagent A in reservoir `A`, and of B in `B`, in mol/L.
pub const RESERVOIR_MOLAR: f64 = 0.5;

/// Concentration of a catalyst stock `C1`..`C6` when the lab file gives none, in mol/L.
pub const CATALYST_MOLAR: f64 = 0.01;

/// The catalysts the bench knows, by reservoir name.
pub const CATALYSTS: [&str; 6] = ["C1", "C2", "C3", "C4", "C5", "C6"];

/// Two published descriptors per catalyst, in the order of [`CATALYSTS`]: a bite angle (degrees, over 100) and a
/// sigma-donor strength. The hidden kinetics follow them, so a model that sees them can tell similar catalysts.
pub const CATALYST_DESCRIPTORS: [[f64; 2]; 6] =
    [[0.8, 1.2], [0.6, 1.9], [1.4, 0.3], [1.0, 1.0], [0.7, 1.6], [1.2, 0.6]];

/// The hidden constants of one catalyst.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Catalyst {
    /// Activity at the reference temperature per sqrt(mM).
    pub a: f64,
    /// Its activation energy relative to the uncatalysed condensation, J/mol.
    pub de: f64,
    /// The temperature above which it deactivates, degC.
    pub td: f64,
    /// How much it speeds the product's decomposition per mM.
    pub s: f64,
}

impl Catalyst {
    /// The catalyst's hidden constants from its descriptors `[bite, sigma]`, with `noise` (each about ±1) added.
    fn from_descriptors([bite, sigma]: [f64; 2], noise: [f64; 4]) -> Self {
        Catalyst {
            // Strong donors are active; wide bite angles are robust to heat and slow the decomposition less.
            a: (1.6 * sigma * sigma + 0.6 * bite + 0.1 * noise[0]).max(0.05),
            de: -8e3 * (sigma - 1.0) + 1e3 * noise[1],
            td: 40.0 + 55.0 * bite + 3.0 * noise[2],
            s: (0.25 * (sigma - 1.1).max(0.0) * (1.2 - bite).max(0.0) * 6.0 + 0.02 * noise[3]).max(0.0),
        }
    }
}

const GAS_CONSTANT: f64 = 8.314;
const REFERENCE_K: f64 = 363.15;
/// The plate's heating limit, in degC per second.
const PLATE_RAMP: f64 = 10.0 / 60.0;
/// How fast the plate settles on its set point once near it, in seconds.
const PLATE_TAU: f64 = 20.0;
/// How slowly an idle plate cools, in seconds.
const PLATE_COOL_TAU: f64 = 900.0;
/// How fast a vessel follows its plate, in seconds.
const VESSEL_TAU: f64 = 120.0;
/// How fast a vessel off a plate cools to ambient, in seconds.
const AIR_TAU: f64 = 300.0;

/// Amounts (or concentrations) of each species.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Species {
    /// Reagent A.
    pub a: f64,
    /// Reagent B.
    pub b: f64,
    /// The product, which absorbs at 520 nm.
    pub p: f64,
    /// The product's decomposition product, which absorbs at 430 nm.
    pub d: f64,
    /// What the side reaction turns B into; does not absorb.
    pub w: f64,
    /// Catalysts `C1`..`C6`, which take part but are not consumed.
    pub c: [f64; 6],
}

impl Species {
    fn add(self, k: Species, h: f64) -> Species {
        Species {
            a: self.a + h * k.a,
            b: self.b + h * k.b,
            p: self.p + h * k.p,
            d: self.d + h * k.d,
            w: self.w + h * k.w,
            c: std::array::from_fn(|i| self.c[i] + h * k.c[i]),
        }
    }

    /// The sum of two amounts.
    pub fn plus(self, other: Species) -> Species {
        self.add(other, 1.0)
    }

    /// Every amount multiplied by `f`.
    pub fn scaled(self, f: f64) -> Species {
        self.add(self, f - 1.0)
    }

    /// Whether anything can still react.
    pub fn reactive(&self) -> bool {
        self.b > 0.0 || self.p > 0.0
    }
}

/// The hidden constants of one seed.
#[derive(Debug, Clone)]
pub struct Chemistry {
    k1: f64,
    ea1: f64,
    k2: f64,
    ea2: f64,
    k3: f64,
    ea3: f64,
    eps_p: f64,
    eps_d: f64,
    catalysts: [Catalyst; 6],
}

fn arrhenius(k_ref: f64, ea: f64, celsius: f64) -> f64 {
    k_ref * (-ea / GAS_CONSTANT * (1.0 / (celsius + 273.15) - 1.0 / REFERENCE_K)).exp()
}

fn gaussian(x: f64, mu: f64, sigma: f64) -> f64 {
    (-(x - mu).powi(2) / (2.0 * sigma * sigma)).exp()
}

/// The empty vial's own absorbance: a little scatter, stronger in the blue.
pub fn vial_baseline(lambda: f64) -> f64 {
    0.03 + 0.01 * (450.0 / lambda.max(1.0)).powi(4)
}

/// How well the vessel is mixed at `rpm`: 0.3 standing still, nearly 1 above 400 rpm.
fn mixing(rpm: f64) -> f64 {
    0.3 + 0.7 * (1.0 - (-(rpm / 200.0).powi(2)).exp())
}

impl Chemistry {
    /// The constants for `seed`: nominal values jittered by up to ±10 % (±5 % for the absorptivities).
    pub fn new(seed: u64) -> Self {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x6c61_625f_6368_656d);
        let mut j = |spread: f64| rng.gen_range(1.0 - spread..=1.0 + spread);
        Chemistry {
            k1: 0.005 * j(0.1),
            ea1: 60e3 * j(0.1),
            k2: 2.5e-4 * j(0.1),
            ea2: 110e3 * j(0.1),
            k3: 4e-4 * j(0.1),
            ea3: 20e3 * j(0.1),
            eps_p: 10.0 * j(0.05),
            eps_d: 2.0 * j(0.05),
            catalysts: [Catalyst { a: 0.0, de: 0.0, td: 0.0, s: 0.0 }; 6],
        }
        .with_catalysts(seed)
    }

    /// The catalysts' hidden constants for `seed`, drawn from a generator of their own so the constants above stay
    /// what they were before catalysts existed.
    fn with_catalysts(mut self, seed: u64) -> Self {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x6361_7461_6c79_7374);
        for (i, d) in CATALYST_DESCRIPTORS.iter().enumerate() {
            let noise = std::array::from_fn(|_| rng.gen_range(-1.0..=1.0));
            self.catalysts[i] = Catalyst::from_descriptors(*d, noise);
        }
        self
    }

    /// The hidden constants of catalyst `i` (of [`CATALYSTS`]), for tests and benchmarks only.
    pub fn catalyst(&self, i: usize) -> Catalyst {
        self.catalysts[i]
    }

    /// How much the catalysts in `c` speed the condensation and the decomposition at `celsius`: `(1 + Σ ...)` each.
    fn catalysis(&self, c: &Species, celsius: f64) -> (f64, f64) {
        let (mut cond, mut decomp) = (1.0, 1.0);
        for (i, k) in self.catalysts.iter().enumerate() {
            let mm = c.c[i] * 1e3;
            if mm <= 0.0 {
                continue;
            }
            let t = celsius + 273.15;
            let active = 1.0 / (1.0 + ((celsius - k.td) / 6.0).exp());
            cond += k.a * mm.sqrt() * (-k.de / GAS_CONSTANT * (1.0 / t - 1.0 / REFERENCE_K)).exp() * active;
            decomp += k.s * mm;
        }
        (cond, decomp)
    }

    fn rates(&self, celsius: f64, rpm: f64) -> (f64, f64, f64) {
        (
            arrhenius(self.k1, self.ea1, celsius) * mixing(rpm),
            arrhenius(self.k2, self.ea2, celsius),
            arrhenius(self.k3, self.ea3, celsius),
        )
    }

    /// Advances concentrations `c` (mol/L) by `dt` seconds at `celsius` and `rpm`.
    pub fn react(&self, c: &mut Species, celsius: f64, rpm: f64, dt: f64) {
        let (k1, k2, k3) = self.rates(celsius, rpm);
        let (cond, decomp) = self.catalysis(c, celsius);
        let (k1, k2) = (k1 * cond, k2 * decomp);
        let deriv = |c: Species| {
            let r1 = k1 * c.a * c.b;
            let r2 = k2 * c.p;
            let r3 = k3 * c.b;
            Species { a: -r1, b: -r1 - r3, p: r1 - r2, d: r2, w: r3, c: [0.0; 6] }
        };
        // Classic Runge-Kutta, in as many pieces as keep every rate small per piece.
        let stiffness = k1 * (c.a + c.b) + k2 + k3;
        let pieces = ((stiffness * dt / 0.1).ceil() as usize).clamp(1, 1024);
        let h = dt / pieces as f64;
        for _ in 0..pieces {
            let s1 = deriv(*c);
            let s2 = deriv(c.add(s1, h / 2.0));
            let s3 = deriv(c.add(s2, h / 2.0));
            let s4 = deriv(c.add(s3, h));
            let next = c.add(s1, h / 6.0).add(s2, h / 3.0).add(s3, h / 3.0).add(s4, h / 6.0);
            *c = Species {
                a: next.a.max(0.0),
                b: next.b.max(0.0),
                p: next.p.max(0.0),
                d: next.d.max(0.0),
                w: next.w.max(0.0),
                c: c.c,
            };
        }
    }

    /// The absorbance of concentrations `c` at `lambda` nm over 1 cm, without the vial.
    pub fn absorbance(&self, c: &Species, lambda: f64) -> f64 {
        self.eps_p * c.p * gaussian(lambda, 520.0, 35.0) + self.eps_d * c.d * gaussian(lambda, 430.0, 60.0)
    }
}

/// What a reservoir adds per microlitre, in moles.
pub fn reservoir_moles(reservoir: &str, microlitres: f64) -> Species {
    reservoir_moles_at(reservoir, microlitres, None)
}

/// What a reservoir adds per microlitre, in moles, at `molar` mol/L if the lab file says (else the bench's own
/// stock concentrations).
pub fn reservoir_moles_at(reservoir: &str, microlitres: f64, molar: Option<f64>) -> Species {
    let litres = microlitres * 1e-6;
    match reservoir {
        "A" => Species { a: molar.unwrap_or(RESERVOIR_MOLAR) * litres, ..Species::default() },
        "B" => Species { b: molar.unwrap_or(RESERVOIR_MOLAR) * litres, ..Species::default() },
        other => match CATALYSTS.iter().position(|c| *c == other) {
            Some(i) => {
                let mut s = Species::default();
                s.c[i] = molar.unwrap_or(CATALYST_MOLAR) * litres;
                s
            }
            None => Species::default(),
        },
    }
}

/// One step of a plate's temperature toward its set point (heater on) or toward ambient (off).
pub fn plate_step(temperature: f64, set_point: Option<f64>, dt: f64) -> f64 {
    let passive = (AMBIENT - temperature) * dt / PLATE_COOL_TAU;
    match set_point {
        // The heater can only heat; a plate above its set point cools passively.
        Some(sp) => temperature + ((sp - temperature) * dt / PLATE_TAU).min(PLATE_RAMP * dt).max(passive.min(0.0)),
        None => temperature + passive,
    }
}

/// One step of a vessel's temperature on a plate at `plate` degC, or in the air when `None`.
pub fn vessel_step(temperature: f64, plate: Option<f64>, dt: f64) -> f64 {
    match plate {
        Some(p) => temperature + (p - temperature) * (dt / VESSEL_TAU).min(1.0),
        None => temperature + (AMBIENT - temperature) * (dt / AIR_TAU).min(1.0),
    }
}

/// The absorbance at 520 nm the demo protocol should read for `seed`, noiselessly.
///
/// This is approximate: it assumes an idealised run (a minute at ambient while the vial is filled and carried, the
/// plate ramping from ambient with the hold counted from when it comes within 1 degC of the set point, stirring at
/// 600 rpm, and a minute cooling on the way to the spectrometer). A real run's timing differs by seconds to
/// minutes, and the spectrometer adds noise, so compare with a tolerance of a few hundredths.
pub fn expected_absorbance(seed: u64, volume_b_ul: f64, temperature_c: f64, duration_min: f64) -> f64 {
    let moles = reservoir_moles("A", 250.0).plus(reservoir_moles("B", volume_b_ul.max(0.0)));
    ideal_run(seed, moles, 250.0 + volume_b_ul.max(0.0), temperature_c, duration_min)
}

/// The absorbance at 520 nm the catalysed protocol (`protocols/library/catalysed.protocol.ron`: 250 uL of A, 250 uL
/// of B, `volume_cat_ul` of catalyst `catalyst` (an index of [`CATALYSTS`]) at 10 mM, 20 minutes at `temperature_c`
/// and 600 rpm) should read for `seed`, noiselessly and approximately as [`expected_absorbance`] is. The ground truth
/// for tests and benchmarks only.
pub fn expected_catalysed(seed: u64, catalyst: Option<usize>, volume_cat_ul: f64, temperature_c: f64) -> f64 {
    let mut moles = reservoir_moles("A", 250.0).plus(reservoir_moles("B", 250.0));
    let mut volume = 500.0;
    if let Some(i) = catalyst {
        moles = moles.plus(reservoir_moles(CATALYSTS[i], volume_cat_ul.max(0.0)));
        volume += volume_cat_ul.max(0.0);
    }
    ideal_run(seed, moles, volume, temperature_c, 20.0)
}

/// The best reading of the catalysed protocol over a grid (catalysts `0..catalysts`, the volumes and temperatures
/// given), with where it is: `(absorbance, catalyst, volume, temperature)`.
pub fn catalysed_optimum(seed: u64, catalysts: usize, volumes: &[f64], temperatures: &[f64]) -> (f64, usize, f64, f64) {
    let mut best = (f64::NEG_INFINITY, 0, 0.0, 0.0);
    for i in 0..catalysts.min(CATALYSTS.len()) {
        for &v in volumes {
            for &t in temperatures {
                let a = expected_catalysed(seed, Some(i), v, t);
                if a > best.0 {
                    best = (a, i, v, t);
                }
            }
        }
    }
    best
}

/// An idealised run of `moles` in `volume_ul` (see [`expected_absorbance`]): the absorbance at 520 nm after it.
fn ideal_run(seed: u64, moles: Species, volume_ul: f64, temperature_c: f64, duration_min: f64) -> f64 {
    let chem = Chemistry::new(seed);
    let litres = volume_ul * 1e-6;
    let mut c = moles.scaled(1.0 / litres);
    let mut vessel = AMBIENT;
    let mut plate = AMBIENT;
    let air = |c: &mut Species, vessel: &mut f64| {
        for _ in 0..30 {
            *vessel = vessel_step(*vessel, None, SUBSTEP);
            chem.react(c, *vessel, 0.0, SUBSTEP);
        }
    };
    air(&mut c, &mut vessel);
    let mut reached = false;
    let mut held = 0.0;
    // Bounded by ten lab hours of ramp, far beyond any set point the plate can reach.
    for _ in 0..18_000 {
        if !reached && (plate - temperature_c).abs() <= 1.0 {
            reached = true;
        }
        if reached {
            if held >= duration_min * 60.0 {
                break;
            }
            held += SUBSTEP;
        }
        plate = plate_step(plate, Some(temperature_c), SUBSTEP);
        vessel = vessel_step(vessel, Some(plate), SUBSTEP);
        chem.react(&mut c, vessel, 600.0, SUBSTEP);
    }
    air(&mut c, &mut vessel);
    chem.absorbance(&c, 520.0) + vial_baseline(520.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_has_an_interior_optimum() {
        let f = |v, t, d| expected_absorbance(7, v, t, d);
        let best = f(285.0, 80.0, 50.0);
        assert!((0.8..=1.5).contains(&best), "peak {best}");
        for (v, t, d) in [
            (50.0, 80.0, 50.0),
            (500.0, 80.0, 50.0),
            (285.0, 30.0, 50.0),
            (285.0, 150.0, 50.0),
            (285.0, 80.0, 5.0),
            (285.0, 80.0, 90.0),
        ] {
            assert!(f(v, t, d) < best, "({v}, {t}, {d}) reads {} >= {best}", f(v, t, d));
        }
        for corner in [(50.0, 30.0, 5.0), (500.0, 150.0, 90.0), (50.0, 150.0, 5.0), (500.0, 30.0, 5.0)] {
            assert!(f(corner.0, corner.1, corner.2) < 0.3, "{corner:?} reads {}", f(corner.0, corner.1, corner.2));
        }
    }

    #[test]
    fn without_a_catalyst_the_demo_reads_as_it_always_did() {
        // Figures from before catalysts existed (seed 7): the chemistry of the demo must not move.
        let f = |v, t, d| expected_absorbance(7, v, t, d);
        // Measured with this file as it was before catalysts (commit 6dd56bb), to six places.
        let before = [
            ((285.0, 80.0, 50.0), 1.140439),
            ((50.0, 30.0, 5.0), 0.045511),
            ((500.0, 150.0, 90.0), 0.145135),
            ((250.0, 80.0, 20.0), 0.943047),
        ];
        for ((v, t, d), want) in before {
            assert!((f(v, t, d) - want).abs() < 1e-6, "({v}, {t}, {d}) reads {} where it read {want}", f(v, t, d));
        }
        let none = expected_catalysed(7, None, 0.0, 80.0);
        assert!((expected_catalysed(7, Some(0), 0.0, 80.0) - none).abs() < 1e-12, "no catalyst added is no catalyst");
    }

    #[test]
    fn the_best_catalyst_depends_on_the_temperature() {
        let (volumes, temperatures): (Vec<f64>, Vec<f64>) =
            ((1..=10).map(|k| 10.0 * k as f64).collect(), (4..=14).map(|k| 10.0 * k as f64).collect());
        for seed in 0..5 {
            let best_at = |t: f64| {
                (0..6)
                    .map(|i| (i, volumes.iter().map(|&v| expected_catalysed(seed, Some(i), v, t)).fold(0.0, f64::max)))
                    .max_by(|a, b| a.1.total_cmp(&b.1))
                    .unwrap()
            };
            // The most active catalyst wins cool and deactivates hot, where a slower, robust one wins.
            let (cool, hot) = (best_at(60.0), best_at(110.0));
            assert_eq!((cool.0, hot.0), (1, 2), "seed {seed}: C2 wins at 60 degC and C3 at 110 ({cool:?}, {hot:?})");
            let (best, ..) = catalysed_optimum(seed, 6, &volumes, &temperatures);
            let uncatalysed = temperatures.iter().map(|&t| expected_catalysed(seed, None, 0.0, t)).fold(0.0, f64::max);
            assert!(best > uncatalysed * 1.2, "seed {seed}: a catalyst helps ({best} against {uncatalysed})");
        }
        // The catalyst that speeds decomposition: more of it is not always better.
        let c = Chemistry::new(7);
        assert!((0..6).any(|i| c.catalyst(i).s > 0.3), "{:?}", (0..6).map(|i| c.catalyst(i)).collect::<Vec<_>>());
    }

    #[test]
    fn plates_ramp_and_vessels_follow() {
        let mut plate = AMBIENT;
        for _ in 0..30 {
            plate = plate_step(plate, Some(90.0), SUBSTEP);
        }
        assert!((plate - 32.0).abs() < 0.5, "a minute at 10 degC/min, got {plate}");
        assert!(plate_step(80.0, Some(50.0), SUBSTEP) < 80.0);
        assert!(plate_step(80.0, Some(50.0), SUBSTEP) > 79.0, "a plate cools slowly");
        assert!(vessel_step(22.0, Some(90.0), SUBSTEP) > 22.0);
    }

    #[test]
    fn seeds_move_the_constants_a_little() {
        let a = Chemistry::new(7);
        let b = Chemistry::new(8);
        assert_ne!(a.k1, b.k1);
        assert!((a.k1 / 0.005 - 1.0).abs() <= 0.1 && (b.ea2 / 110e3 - 1.0).abs() <= 0.1);
    }
}
