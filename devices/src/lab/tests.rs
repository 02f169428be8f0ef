//! The lab loader and checker against the lab files in `devices/labs/` and small bad ones.

use super::*;

fn sim_lab() -> Lab {
    load_lab(SourceFile::new("sim.lab.ron", include_str!("../../labs/sim.lab.ron"))).unwrap()
}

fn demo_protocol() -> Protocol {
    protocols::parse_protocol(
        "condensation.protocol.ron",
        include_str!("../../../protocols/library/condensation.protocol.ron"),
    )
    .unwrap()
}

#[test]
fn the_simulated_lab_loads_and_runs_the_demo_protocol() {
    let lab = sim_lab();
    assert_eq!(lab.instruments.len(), 8);
    assert_eq!(lab.deck.rack.slots(), 48);
    assert_eq!(lab.instrument("hotplate_1").unwrap().line.to_string(), "9600 7E1");
    let p = demo_protocol();
    let d = lab.check_protocol(&p);
    assert!(d.is_empty(), "{d}");
    let to_hotplate = p.step_index("to_hotplate").unwrap();
    assert_eq!(lab.transfer_positions(&p, to_hotplate), vec!["hotplate_1", "hotplate_2", "hotplate_3", "hotplate_4"]);
    let load = p.step_index("load").unwrap();
    assert_eq!(lab.transfer_positions(&p, load), vec!["dispense"]);
}

#[test]
fn limits_and_missing_instruments_are_reported_against_the_protocol() {
    let lab = sim_lab();
    let text = include_str!("../../../protocols/library/condensation.protocol.ron")
        .replace("max: 150, default: 80", "max: 350, default: 80")
        .replace("Named(\"pump_b\")", "Named(\"pump_c\")")
        .replace("520 nm", "1200 nm");
    let p = protocols::parse_protocol("c.protocol.ron", &text).unwrap();
    let d = lab.check_protocol(&p);
    let msgs: Vec<String> = d.iter().map(|d| format!("{} {}", d.code, d.message)).collect();
    assert_eq!(
        msgs,
        vec![
            "D0101 step `add_b` runs on `pump_c`, which lab `sim` does not have",
            "D0104 `temperature` of step `react` is beyond what lab `sim` can do: parameter `temperature` allows 30..=350 degC",
            "D0104 `wavelength` of step `read` is beyond what lab `sim` can do: 1200 nm",
        ]
    );
}

#[test]
fn the_faulty_lab_loads_with_its_faults_and_new_instruments() {
    let lab = load_lab(SourceFile::new("faulty.lab.ron", include_str!("../../labs/faulty.lab.ron"))).unwrap();
    let pump = lab.instrument("pump_1").unwrap();
    let DriverConfig::CavroXCalibur(c) = &pump.driver else { panic!("pump_1 is a pump") };
    assert_eq!(c.protocol, CavroProtocol::Oem);
    let f = pump.faults.as_ref().unwrap();
    assert_eq!((f.no_reply, f.partial), (0.05, 0.1));
    assert!(matches!(f.latency, Latency::Exponential { .. }));
    let pump_2 = lab.instrument("pump_2").unwrap();
    assert_eq!(pump_2.line.reconnect.attempts, 8);
    assert_eq!(pump_2.faults.as_ref().unwrap().disconnect.unwrap().after, 25);
    assert_eq!(lab.instrument("block_1").unwrap().line.to_string(), "9600 8N1");
    assert_eq!(lab.instrument("block_2").unwrap().line.to_string(), "9600 8E1");
    assert_eq!(lab.instrument("valve").unwrap().kind(), InstrumentKind::Valve);
    assert!(lab.instrument("valve").unwrap().position.is_none());
    let sim = sim_lab();
    assert!(sim.instruments.iter().all(|i| i.faults.is_none()), "the default lab is fault-free");
}

#[test]
fn faults_a_simulator_cannot_inject_are_refused() {
    let text = include_str!("../../labs/faulty.lab.ron")
        .replace("faults: (garbled: 0.05),", "faults: (garbled: 1.5, partial: 0.1),")
        .replace(
            "driver: ViciValve(positions: 6, feeds: \"pump_3\"",
            "driver: ViciValve(positions: 6, feeds: \"balance_1\"",
        );
    let d = load_lab(SourceFile::new("faulty.lab.ron", text)).unwrap_err();
    let msgs: Vec<String> = d.iter().map(|d| format!("{} {}", d.code, d.message)).collect();
    assert_eq!(
        msgs,
        vec![
            "D0004 valve `valve` feeds `balance_1`, which is a balance, not a syringe pump",
            "D0007 `garbled` of `probe_3` is 1.5; a probability is 0 to 1",
            "D0007 the simulator of `probe_3` cannot inject `partial`: only a syringe pump moves part of a stroke (a declared one needs an alarm class to report it)",
        ]
    );
}

#[test]
fn a_simulated_model_needs_a_profile_and_its_limits() {
    let text = include_str!("../../labs/sim.lab.ron")
        .replacen(
            "IkaHotplate(model: \"RCT digital\", max_temperature: \"310 degC\"",
            "IkaHotplate(model: \"C-MAG HS 7\", max_temperature: \"310 degC\"",
            1,
        )
        .replacen(
            "IkaHotplate(model: \"RCT digital\", max_temperature: \"310 degC\"",
            "IkaHotplate(model: \"RCT digital\", max_temperature: \"340 degC\"",
            1,
        );
    let d = load_lab(SourceFile::new("sim.lab.ron", text)).unwrap_err();
    let msgs: Vec<String> = d.iter().map(|d| format!("{} {}", d.code, d.message)).collect();
    assert_eq!(
        msgs,
        vec![
            "D0004 `hotplate_1` is simulated, and its simulator has no profile of this model",
            "D0004 `hotplate_2` is an IKA RCT digital, which takes set points up to 310 degC",
        ]
    );
    assert!(d.to_string().contains("help: the simulator can be: RCT digital, RET control-visc"), "{d}");
}

#[test]
fn an_ika_watchdog_outside_what_the_plate_takes_is_refused() {
    let text = include_str!("../../labs/sim.lab.ron").replacen("watchdog: \"25 min\"", "watchdog: \"2 h\"", 1);
    let d = load_lab(SourceFile::new("sim.lab.ron", text)).unwrap_err();
    let msgs: Vec<String> = d.iter().map(|d| format!("{} {}", d.code, d.message)).collect();
    assert_eq!(msgs, ["D0004 watchdog of `hotplate_1` is 7200 s; an IKA plate's watchdog takes 20 s to 25 min"]);
    let lab = sim_lab();
    let DriverConfig::IkaHotplate(c) = &lab.instrument("hotplate_1").unwrap().driver else { panic!() };
    assert_eq!(c.watchdog, Some(Duration(1500.0)));
}

#[test]
fn lab_file_errors_point_at_the_setting() {
    let text = include_str!("../../labs/sim.lab.ron")
        .replace(
            "address: 1, syringe: \"1 mL\", top_speed: 400, reservoir: \"A\"",
            "address: 0, syringe: \"1 min\", top_speed: 400, reservoir: \"A\"",
        )
        .replace("position: \"hotplate_4\"", "position: \"hotplate_5\"")
        .replace("(seed: 7, time_scale: 400)", "(seed: 7, time_scale: 0)");
    let d = load_lab(SourceFile::new("sim.lab.ron", text)).unwrap_err();
    let msgs: Vec<String> =
        d.iter().map(|d| format!("{}:{} {} {}", d.line_col().0, d.line_col().1, d.code, d.message)).collect();
    assert_eq!(
        msgs,
        vec![
            "25:44 D0004 address 0 of `pump_a` is not a pump address",
            "25:56 D0004 `syringe` of `pump_a` needs a volume, not a duration",
            "55:23 D0003 position `hotplate_5` of `hotplate_4` is not on the deck",
            "67:39 D0006 time_scale must be positive, not 0",
        ]
    );
}
