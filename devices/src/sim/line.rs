//! A selector valve on the simulated bench, the shared tubing between it and the pump it feeds, and what a draw
//! brings in ([`Drawn`]: a reagent, its bottle, microlitres).
//!
//! The tubing (the lab file's `line`) always holds its volume of liquid, as parts of what was drawn, the pump's end
//! first. Liquid that goes in at one end pushes as much out at the other: a draw takes the tubing's content into the
//! syringe first, and a push back through the pump's input sends it out through the valve's current port. The
//! syringe empties in the order it filled, so a prime of twice the line leaves only the new reagent in the tubing.

use std::collections::VecDeque;

/// What a pump's draw brought in from a bottle.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Drawn {
    /// The reagent.
    pub reagent: String,
    /// The bottle's key, if the pump draws from a known bottle.
    pub source: Option<String>,
    /// Microlitres of liquid (the rest of the stroke was air).
    pub liquid: f64,
}

/// A selector valve, the pump whose input it feeds, and the shared tubing between them.
#[derive(Debug, Clone)]
pub(crate) struct Valve {
    pub(crate) position: u32,
    pub(crate) feeds: Option<String>,
    /// The tubing's volume in microlitres (zero when the lab file gives no `line`: nothing is carried over).
    pub(crate) line: f64,
    /// What the tubing holds, the pump's end first; always `line` microlitres of liquid in all.
    pub(crate) content: VecDeque<Drawn>,
}

impl Valve {
    /// A valve at port 1, its tubing full of the reagent on its lowest port with a bottle, as a technician leaves it
    /// after filling the bottles (the controller does not know this, and primes before its first draw).
    pub(crate) fn new(name: &str, v: &crate::lab::ValveConfig) -> Self {
        let line = if v.feeds.is_some() { v.line.map_or(0.0, |l| l.0.max(0.0)) } else { 0.0 };
        let content = v
            .ports
            .iter()
            .next()
            .filter(|_| line > 0.0)
            .map(|(port, b)| Drawn { reagent: b.reagent.clone(), source: Some(format!("{name}:{port}")), liquid: line })
            .into_iter()
            .collect();
        Valve { position: 1, feeds: v.feeds.clone(), line, content }
    }

    /// Liquid enters the tubing at one end and as much leaves at the other: `parts` go in at the valve's end
    /// (`at_valve`, a draw) or the pump's end (a push back), and the same volume comes out of the other end, in
    /// the order it leaves.
    pub(crate) fn shift(&mut self, parts: Vec<Drawn>, at_valve: bool) -> Vec<Drawn> {
        let volume: f64 = parts.iter().map(|p| p.liquid).sum();
        for p in parts.into_iter().filter(|p| p.liquid > 0.0) {
            if at_valve {
                self.content.push_back(p);
            } else {
                self.content.push_front(p);
            }
        }
        let mut out = Vec::new();
        let mut rest = volume;
        while rest > 1e-9 {
            let end = if at_valve { self.content.front_mut() } else { self.content.back_mut() };
            let Some(end) = end else { break };
            let take = end.liquid.min(rest);
            out.push(Drawn { liquid: take, ..end.clone() });
            end.liquid -= take;
            rest -= take;
            if end.liquid <= 1e-9 {
                if at_valve {
                    self.content.pop_front();
                } else {
                    self.content.pop_back();
                }
            }
        }
        out
    }
}
