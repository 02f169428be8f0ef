//! A needle in a haystack: a full-factorial table of four categorical choices (solvent 8, base 5, ligand 6,
//! additive 4: 960 conditions) whose best conditions come from one interaction that the main effects point away
//! from.
//!
//! The haystack is additive: each level adds its own amount (the best levels together give about 45% yield), plus
//! a fixed roughness of ±3 per condition. The needle is one combination of four unremarkable levels: it adds 60
//! there, 35 to each condition sharing three of its four levels, and 10 to those sharing two. So the top 1% (10
//! conditions) is the needle and its best neighbours, a model that trusts the main effects is led to the
//! haystack's best corner, and the only trail to the needle is the faint rise of the conditions that share two of
//! its levels.

use super::landscape::{Landscape, table_landscape};
use crate::{Dim, Encoding, Level, Point, Space};

/// The noise of the noisy version, in yield percent.
pub const NOISE: f64 = 3.0;
/// The experiments a run may use.
pub const BUDGET: usize = 80;

/// The factors: name, level names, and each level's main effect.
const FACTORS: [(&str, &[&str], &[f64]); 4] = [
    (
        "solvent",
        &["DMF", "DMSO", "toluene", "dioxane", "THF", "MeCN", "NMP", "tAmOH"],
        &[6.0, 9.0, 12.0, 4.0, 8.0, 2.0, 3.0, 5.0],
    ),
    ("base", &["K2CO3", "Cs2CO3", "K3PO4", "DBU", "NaOtBu"], &[10.0, 6.0, 4.0, 2.0, 7.0]),
    ("ligand", &["XPhos", "SPhos", "BrettPhos", "dppf", "PPh3", "tBuXPhos"], &[5.0, 10.0, 8.0, 3.0, 2.0, 6.0]),
    ("additive", &["none", "water", "LiCl", "phenol"], &[1.0, 3.0, 4.0, 5.0]),
];
/// The needle's levels, by factor.
const NEEDLE: [usize; 4] = [6, 3, 4, 1];

/// The four categorical factors, one-hot.
pub fn space() -> Space {
    Space::new(
        FACTORS
            .iter()
            .map(|(name, labels, _)| {
                let levels = labels.iter().enumerate().map(|(i, l)| Level::new(*l, i as f64)).collect();
                Dim::categorical(*name, levels, Encoding::OneHot)
            })
            .collect(),
    )
}

/// The yield (percent) at `p`.
pub fn value(p: &Point) -> f64 {
    let index: Vec<usize> = FACTORS.iter().map(|(name, _, _)| p[*name].round().max(0.0) as usize).collect();
    let main: f64 = FACTORS.iter().zip(&index).map(|((_, _, effects), i)| effects[*i]).sum();
    let shared = index.iter().zip(NEEDLE).filter(|(i, n)| **i == *n).count();
    let needle = match shared {
        4 => 60.0,
        3 => 35.0,
        2 => 10.0,
        _ => 0.0,
    };
    // A fixed roughness per condition, from a hash of its levels (splitmix64).
    let mut z = index.iter().fold(0x243F_6A88_85A3_08D3u64, |h, i| h.wrapping_mul(31).wrapping_add(*i as u64 + 1));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let rough = (z >> 11) as f64 / (1u64 << 53) as f64 * 6.0 - 3.0;
    5.0 + main + needle + rough
}

/// Every condition of the table.
pub fn rows() -> Vec<Point> {
    let space = space();
    space.enumerate(10_000).into_iter().map(|u| space.from_unit(&u)).collect()
}

/// The table: reach a top-1% condition in 80 experiments.
pub fn table() -> Landscape {
    table_landscape("needle/table".to_owned(), "needle", space(), value, rows(), BUDGET)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_top_percent_is_the_needle_and_its_neighbours() {
        let l = table();
        let rows = l.table.as_ref().unwrap();
        assert_eq!(rows.len(), 960);
        let needle: Point = FACTORS.iter().zip(NEEDLE).map(|((n, _, _), i)| (n.to_string(), i as f64)).collect();
        assert_eq!(value(&needle), l.optimum);
        // The haystack's best (the best level of each factor, far from the needle) is below the target.
        let haystack: Point =
            FACTORS.iter().zip([2, 0, 1, 3]).map(|((n, _, _), i)| (n.to_string(), i as f64)).collect();
        assert!(value(&haystack) < l.target - 3.0, "{} vs {}", value(&haystack), l.target);
        for p in rows.iter().filter(|p| value(p) >= l.target) {
            let shared = FACTORS.iter().zip(NEEDLE).filter(|((n, _, _), i)| p[*n] == *i as f64).count();
            assert!(shared >= 3, "{p:?}");
        }
    }
}
