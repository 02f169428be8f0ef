//! NAMUR models (IKA hotplate-stirrers): the commands each answers or accepts, its name and its ranges.
//!
//! NAMUR devices never answer a command they lack: the RCT digital is silent on `IN_PV_7`, `IN_TYPE` or
//! `STATUS_1`, which a RET control-visc answers. A profile lists the commands a model has; its simulator answers
//! exactly those (and ignores the rest in silence, as the hardware does), and its driver asks only those.
//!
//! Sources: the RCT digital operating manual's NAMUR command table [M]; for the RET control-visc, pylabware's
//! driver written against its operating manual 20000004159 (`ika_ret_control_visc.py`) [D] and ika-control's
//! hotplate protocol (`IN_TYPE`, `IN_PV_7`, `STATUS_1`/`STATUS_4`, the last "undocumented in manual") [D].

/// A NAMUR model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NamurProfile {
    /// The model as a lab file names it, such as `RCT digital`.
    pub model: &'static str,
    /// What the model answers to `IN_NAME`: `RCT digital`, or `IKARET` for a RET control-visc (pylabware's
    /// default name) [D].
    pub name: &'static str,
    /// The highest temperature set point the model takes, degC.
    pub max_temperature: f64,
    /// The lowest and highest stirring speed set points, rpm (the RET control-visc stirs from 50 rpm [D]).
    pub speed: (f64, f64),
    /// The safety temperature `IN_SP_3` reports, degC.
    pub safety_temperature: f64,
    /// The sets of commands the model answers or accepts, each without its value (`OUT_WD1@` for `OUT_WD1@m`).
    pub sets: &'static [&'static [&'static str]],
}

impl NamurProfile {
    /// Whether the model has `command` (the part before any `@` or space).
    pub fn has(&self, command: &str) -> bool {
        let head = command.split([' ', '@']).next().unwrap_or_default();
        let with_at = command.contains('@');
        self.sets.iter().flat_map(|s| s.iter()).any(|c| match c.strip_suffix('@') {
            Some(base) => with_at && base == head,
            None => !with_at && *c == head,
        })
    }
}

/// The RCT digital's commands (its manual's table), which every profile here has.
const RCT_DIGITAL: [&str; 22] = [
    "IN_NAME",
    "IN_PV_1",
    "IN_PV_2",
    "IN_PV_4",
    "IN_PV_5",
    "IN_SP_1",
    "IN_SP_3",
    "IN_SP_4",
    "OUT_SP_1",
    "OUT_SP_4",
    "START_1",
    "STOP_1",
    "START_4",
    "STOP_4",
    "RESET",
    "SET_MODE_A",
    "SET_MODE_B",
    "SET_MODE_D",
    "OUT_SP_12@",
    "OUT_SP_42@",
    "OUT_WD1@",
    "OUT_WD2@",
];

/// What a RET control-visc has besides: the plate set point (`OUT_SP_2`/`IN_SP_2`), the safety sensor (`IN_PV_3`),
/// the second external sensor (`IN_PV_7`), pH (`IN_PV_80`), the integrated weighing (`IN_PV_90`), `IN_TYPE`,
/// `IN_VERSION` and the status reads `STATUS_1`/`STATUS_4`.
const RET_CONTROL_VISC: [&str; 11] = [
    "IN_TYPE",
    "IN_VERSION",
    "IN_PV_3",
    "IN_PV_7",
    "IN_PV_80",
    "IN_PV_90",
    "IN_SP_2",
    "OUT_SP_2",
    "STATUS_1",
    "STATUS_4",
    "OUT_NAME",
];

/// The models the simulator can be.
pub const PROFILES: [NamurProfile; 2] = [
    NamurProfile {
        model: "RCT digital",
        name: "RCT digital",
        max_temperature: 310.0,
        speed: (0.0, 1500.0),
        safety_temperature: 350.0,
        sets: &[&RCT_DIGITAL],
    },
    NamurProfile {
        model: "RET control-visc",
        name: "IKARET",
        max_temperature: 340.0,
        speed: (50.0, 1700.0),
        safety_temperature: 360.0,
        sets: &[&RCT_DIGITAL, &RET_CONTROL_VISC],
    },
];

/// The profile of `model`, if the simulator knows it.
pub fn profile(model: &str) -> Option<&'static NamurProfile> {
    PROFILES.iter().find(|p| p.model == model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_match_with_and_without_their_values() {
        let rct = profile("RCT digital").unwrap();
        assert!(rct.has("OUT_SP_1 60") && rct.has("OUT_WD1@30") && rct.has("IN_NAME"));
        assert!(!rct.has("IN_PV_7") && !rct.has("STATUS_1") && !rct.has("OUT_WD1"));
        let ret = profile("RET control-visc").unwrap();
        assert!(ret.has("IN_PV_7") && ret.has("STATUS_4") && ret.has("IN_TYPE") && ret.has("IN_PV_2"));
    }
}
