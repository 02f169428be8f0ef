//! MT-SICS models: which commands each balance model implements, for its simulator and for `lab check`.
//!
//! A profile records the commands of a model this project has evidence for: the level-0 and level-1 sets every
//! MT-SICS balance implements (MT-SICS reference manuals, "Commands and responses MT-SICS level 0/1"), and the
//! level-2 commands the driver uses, where a source shows the model has them. The simulator lists exactly these
//! for `I0` and answers each of them; a real balance of the model lists more. The driver does not rely on a
//! profile: it asks the balance's own `I0`.

/// The most lines a multi-line reply (`I0`) may have before a driver gives up on it.
pub const MAX_LINES: usize = 512;

/// An MT-SICS model: the commands it implements, with their levels, in the order its `I0` lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SicsProfile {
    /// The type `I2` reports, such as `XS205`.
    pub model: &'static str,
    /// What it is, for messages.
    pub description: &'static str,
    /// Sets of `(level, command)`, listed in order.
    pub sets: &'static [&'static [(u8, &'static str)]],
}

impl SicsProfile {
    /// Every `(level, command)` the profile records, in order.
    pub fn commands(&self) -> impl Iterator<Item = (u8, &'static str)> + '_ {
        self.sets.iter().flat_map(|set| set.iter().copied())
    }

    /// Whether the model implements `command`.
    pub fn has(&self, command: &str) -> bool {
        self.commands().any(|(_, c)| c == command)
    }
}

/// MT-SICS level 0, which every balance implements (MT-SICS reference manuals, "Commands and responses MT-SICS
/// level 0": `I0`..`I5`, `S`, `SI`, `SIR`, `Z`, `ZI`, `@`).
const LEVEL_0: [(u8, &str); 12] = [
    (0, "I0"),
    (0, "I1"),
    (0, "I2"),
    (0, "I3"),
    (0, "I4"),
    (0, "I5"),
    (0, "S"),
    (0, "SI"),
    (0, "SIR"),
    (0, "Z"),
    (0, "ZI"),
    (0, "@"),
];

/// The display commands of level 1, which a balance with a terminal has.
const DISPLAY: [(u8, &str); 2] = [(1, "D"), (1, "DW")];

/// The rest of level 1: keys, send on change, and the tare commands.
const LEVEL_1: [(u8, &str); 6] = [(1, "K"), (1, "SR"), (1, "T"), (1, "TA"), (1, "TAC"), (1, "TI")];

/// The level-2 host unit command.
const UNIT: [(u8, &str); 1] = [(2, "M21")];

/// The models the simulator can be: the Excellence XS205 with levels 0 and 1 and `M21` (MT-SICS reference manual
/// for Excellence balances, 11780711) [M]; and the WXS205SDU weigh module behind a WXA bridge, in which
/// PyLabRobot's driver, verified on one, finds `M21` listed and gets `ES` for the display commands `D` and `DW`
/// (there is no terminal) [H].
pub const PROFILES: [SicsProfile; 2] = [
    SicsProfile {
        model: "XS205",
        description: "Excellence XS analytical balance",
        sets: &[&LEVEL_0, &DISPLAY, &LEVEL_1, &UNIT],
    },
    SicsProfile {
        model: "WXS205SDU",
        description: "weigh module with a WXA bridge",
        sets: &[&LEVEL_0, &LEVEL_1, &UNIT],
    },
];

/// The profile of `model`, if the simulator knows it.
pub fn profile(model: &str) -> Option<&'static SicsProfile> {
    PROFILES.iter().find(|p| p.model == model)
}
