//! A simulated IKA hotplate-stirrer (NAMUR), answering as the model of its profile ([`crate::models::namur`]).
//!
//! A command ends at LF; CR and spaces around it are stripped, so `\n`, `\r\n` and `\r \n` all end a line, and
//! lines longer than 80 characters are ignored. Reads answer `value index` CR LF (`25.3 2`); writes, unknown
//! commands and commands the model lacks (`IN_PV_7` on an RCT digital) get no answer at all, as on the real plate;
//! set points outside the model's ranges (0..=310 degC and 0..=1500 rpm on an RCT digital) are ignored. A RET
//! control-visc also answers `IN_TYPE`, `IN_VERSION`, the safety sensor `IN_PV_3`, the second external sensor
//! `IN_PV_7` (the vessel, as `IN_PV_1`), pH `IN_PV_80` (14.00, no probe), its integrated weighing `IN_PV_90` (the
//! load on the plate, g), the plate set point `IN_SP_2`/`OUT_SP_2`, and `STATUS_1`/`STATUS_4` (`11` on, `12`
//! off), and takes a new name of up to six characters with `OUT_NAME` [U: the `IN_TYPE` and `STATUS_n` replies
//! are not documented; ika-control calls `STATUS_n` "undocumented in
//! manual"]. `OUT_WD1@m` (m in 20..=1500) arms the watchdog and echoes `m`; the bench switches
//! heating and stirring off when no command has arrived for `m` lab seconds. `IN_PV_1` (the external probe)
//! reads the vessel on the plate, as if the probe were always immersed [U]. `OUT_WD2@m`, `OUT_SP_12@n` and
//! `OUT_SP_42@n` are echoed but their safety fallbacks are not simulated.

use bytes::BytesMut;

use super::Simulator;
use super::bench::{Bench, PlateCommand};
use super::pty::Wire;
use crate::models::namur::NamurProfile;

/// The longest command line NAMUR allows.
const MAX_LINE: usize = 80;

/// The firmware version a RET control-visc reports (pylabware recognises the model by a version starting `110`).
const VERSION: &str = "110.05";

pub(crate) struct IkaSim {
    profile: &'static NamurProfile,
    /// What `IN_NAME` answers: the model's name until `OUT_NAME` sets another.
    name: String,
    position: String,
    bench: Bench,
}

impl IkaSim {
    pub(crate) fn new(profile: &'static NamurProfile, position: &str, bench: Bench) -> Self {
        IkaSim { profile, name: profile.name.to_owned(), position: position.to_owned(), bench }
    }

    /// The answer to one command line, if it has one.
    fn execute(&mut self, line: &str) -> Option<String> {
        let b = &self.bench;
        let p = self.position.as_str();
        b.plate_command(p, PlateCommand::Contact);
        let mut words = line.split_whitespace();
        let command = words.next()?;
        if !self.profile.has(command) {
            return None;
        }
        if command == "OUT_NAME" {
            // A name of at most six characters [D: pylabware]; the plate keeps it and answers it to `IN_NAME`.
            if let Some(name) = words.next().filter(|n| n.len() <= 6 && words.next().is_none()) {
                self.name = name.to_owned();
            }
            return None;
        }
        let profile = self.profile;
        let value = words.next().map(str::parse::<f64>);
        if words.next().is_some() {
            return None;
        }
        if let Some((head, m)) = command.split_once('@') {
            let m: f64 = m.parse().ok()?;
            return match head {
                "OUT_WD1" | "OUT_WD2" if (20.0..=1500.0).contains(&m) && value.is_none() => {
                    if head == "OUT_WD1" {
                        b.plate_command(p, PlateCommand::Watchdog(Some(m)));
                    }
                    Some(format!("{m:.0}"))
                }
                "OUT_WD2" if m == 0.0 && value.is_none() => Some("0".into()),
                "OUT_SP_12" | "OUT_SP_42" if value.is_none() => Some(format!("{m:.0}")),
                _ => None,
            };
        }
        let readings = b.plate_readings(p)?;
        let status = |on: bool| if on { "11" } else { "12" };
        match (command, value) {
            ("IN_NAME", None) => Some(self.name.clone()),
            ("IN_TYPE", None) => Some(profile.model.to_owned()),
            ("IN_VERSION", None) => Some(VERSION.to_owned()),
            ("IN_PV_3", None) => Some(format!("{:.1} 3", readings.temperature + 5.0)),
            ("IN_PV_7", None) => Some(format!("{:.1} 7", readings.medium)),
            ("IN_PV_80", None) => Some("14.00 80".to_owned()),
            ("IN_PV_90", None) => Some(format!("{:.1} 90", b.load_at(p).0)),
            ("IN_SP_2", None) => Some(format!("{:.1} 2", readings.set_point)),
            ("OUT_SP_2", Some(Ok(t))) if (0.0..=profile.max_temperature).contains(&t) => {
                b.plate_command(p, PlateCommand::SetPoint(t));
                None
            }
            ("STATUS_1", None) => Some(status(b.plate(p).is_some_and(|s| s.heater_on)).to_owned()),
            ("STATUS_4", None) => Some(status(b.plate(p).is_some_and(|s| s.motor_on)).to_owned()),
            ("IN_PV_1", None) => Some(format!("{:.1} 1", readings.medium)),
            ("IN_PV_2", None) => Some(format!("{:.1} 2", readings.temperature)),
            ("IN_PV_4", None) => Some(format!("{:.0} 4", readings.speed)),
            ("IN_SP_1", None) => Some(format!("{:.1} 1", readings.set_point)),
            ("IN_SP_3", None) => Some(format!("{:.0} 3", profile.safety_temperature)),
            ("IN_SP_4", None) => Some(format!("{:.0} 4", readings.speed_set_point)),
            ("OUT_SP_1", Some(Ok(t))) if (0.0..=profile.max_temperature).contains(&t) => {
                b.plate_command(p, PlateCommand::SetPoint(t));
                None
            }
            ("OUT_SP_4", Some(Ok(rpm))) if rpm == 0.0 || (profile.speed.0..=profile.speed.1).contains(&rpm) => {
                b.plate_command(p, PlateCommand::Speed(rpm));
                None
            }
            ("START_1", None) => {
                b.plate_command(p, PlateCommand::Heater(true));
                None
            }
            ("STOP_1", None) => {
                b.plate_command(p, PlateCommand::Heater(false));
                None
            }
            ("START_4", None) => {
                b.plate_command(p, PlateCommand::Motor(true));
                None
            }
            ("STOP_4", None) => {
                b.plate_command(p, PlateCommand::Motor(false));
                None
            }
            ("RESET", None) => {
                b.plate_command(p, PlateCommand::Heater(false));
                b.plate_command(p, PlateCommand::Motor(false));
                b.plate_command(p, PlateCommand::Watchdog(None));
                None
            }
            _ => None,
        }
    }
}

impl Simulator for IkaSim {
    fn frame(&mut self, input: &mut BytesMut) -> Option<Vec<u8>> {
        loop {
            let Some(end) = input.iter().position(|&b| b == b'\n') else {
                if input.len() > 4 * MAX_LINE {
                    input.clear();
                }
                return None;
            };
            let line = input.split_to(end + 1);
            let text: Vec<u8> = line[..end].iter().copied().filter(|&b| b != b'\r').collect();
            let text = text.trim_ascii();
            if !text.is_empty() && text.len() <= MAX_LINE {
                return Some(text.to_vec());
            }
        }
    }

    async fn handle(&mut self, command: Vec<u8>, wire: &mut Wire) -> bool {
        // A 7-bit line: anything else is line noise the plate cannot have received as a command.
        let Ok(line) = std::str::from_utf8(&command) else { return true };
        match self.execute(line) {
            Some(answer) => wire.reply(format!("{answer}\r\n").as_bytes()).await,
            None => true,
        }
    }
}
