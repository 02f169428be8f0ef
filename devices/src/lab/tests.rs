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

fn catalysts_lab() -> Lab {
    load_lab(SourceFile::new("catalysts.lab.ron", include_str!("../../labs/catalysts.lab.ron"))).unwrap()
}

fn catalysed_protocol() -> Protocol {
    protocols::parse_protocol(
        "catalysed.protocol.ron",
        include_str!("../../../protocols/library/catalysed.protocol.ron"),
    )
    .unwrap()
}

#[test]
fn the_catalyst_lab_knows_its_reagents_and_where_each_bottle_stands() {
    let lab = catalysts_lab();
    assert_eq!(lab.reagents.len(), 8);
    assert_eq!(lab.reagent("C2").unwrap().role.as_deref(), Some("catalyst"));
    assert!((lab.reagent("C2").unwrap().concentration.unwrap() - 0.01).abs() < 1e-12);
    assert_eq!(lab.sources("A"), vec![Source::Own { pump: "pump_a".into() }]);
    let c2 = Source::Port { valve: "valve".into(), port: 2, pump: "pump_c".into() };
    assert_eq!(lab.sources("C2"), vec![c2.clone()]);
    assert_eq!(c2.key(), "valve:2");
    let bottle = lab.bottle(&c2).unwrap();
    assert_eq!(bottle.usable().unwrap().0, 19_500.0);
    assert_eq!(lab.sources_at("C2", "dispense").len(), 1);
    assert!(lab.sources_at("C2", "hotplate_1").is_empty());
    let p = catalysed_protocol();
    let d = lab.check_protocol(&p);
    assert!(d.is_empty(), "{d}");
    let allowed = lab.allowed_reagents(&p, &BTreeMap::new());
    assert_eq!(allowed["catalyst"], vec!["C1", "C2", "C3", "C4", "C5", "C6"]);
    assert_eq!(lab.transfer_positions(&p, p.step_index("load").unwrap()), vec!["dispense"]);
}

#[test]
fn reagents_a_lab_lacks_or_cannot_reach_are_refused_against_the_protocol() {
    let lab = catalysts_lab();
    let p = catalysed_protocol();
    let levels = BTreeMap::from([("catalyst".to_owned(), vec!["C1".to_owned(), "C9".to_owned()])]);
    let msgs: Vec<String> =
        lab.check_protocol_with(&p, &levels).iter().map(|d| format!("{} {}", d.code, d.message)).collect();
    assert_eq!(msgs, vec!["D0105 step `add_cat` dispenses `C9`, which lab `catalysts` does not declare"]);
    // The valve-fed pump moved away from the dispense station: the catalysts are out of reach of the vessel.
    let text = include_str!("../../labs/catalysts.lab.ron").replacen(
        "top_speed: 400),\n            port: Simulated,\n            position: \"dispense\"",
        "top_speed: 400),\n            port: Simulated,\n            position: \"uvvis\"",
        1,
    );
    let moved = load_lab(SourceFile::new("catalysts.lab.ron", text)).unwrap();
    // Each reagent is reachable somewhere, but no one position reaches them all.
    let d = moved.check_protocol(&p);
    let msgs: Vec<String> = d.iter().map(|d| format!("{} {}", d.code, d.message)).collect();
    assert_eq!(msgs.len(), 1, "{d}");
    assert!(msgs[0].starts_with("D0103 no deck position in lab `catalysts` has the instruments"), "{d}");
    assert!(d.to_string().contains("reaching the reagents each dispense adds"), "{d}");
    // With the vessel taken to pump_a's station by name, the catalysts are out of its reach.
    let text = include_str!("../../../protocols/library/catalysed.protocol.ron").replace(
        "(id: \"load\", op: Transfer(to: Kind(SyringePump)))",
        "(id: \"load\", op: Transfer(to: Named(\"pump_a\")))",
    );
    let p = protocols::parse_protocol("catalysed.protocol.ron", &text).unwrap();
    let d = moved.check_protocol(&p);
    let msgs: Vec<String> = d.iter().map(|d| format!("{} {}", d.code, d.message)).collect();
    assert_eq!(msgs.len(), 6, "{d}");
    assert!(msgs[0].starts_with("D0105 step `add_cat` dispenses `C1`, but no pump that can run it and reaches `C1` stands where the vessel may be (`dispense`)"), "{d}");
    assert!(d.to_string().contains("`C1` is drawn through port 1 of `valve` (feeding `pump_c`)"), "{d}");
    // A role no reagent has.
    let text = include_str!("../../../protocols/library/catalysed.protocol.ron")
        .replace("role: \"catalyst\"", "role: \"ligand\"");
    let p = protocols::parse_protocol("catalysed.protocol.ron", &text).unwrap();
    let msgs: Vec<String> = lab.check_protocol(&p).iter().map(|d| format!("{} {}", d.code, d.message)).collect();
    assert_eq!(
        msgs,
        vec!["D0105 reagent parameter `catalyst` may be any reagent with role `ligand`, and lab `catalysts` has none"]
    );
}

#[test]
fn bad_inventories_are_refused_at_their_place() {
    let text = include_str!("../../labs/catalysts.lab.ron")
        .replace(
            "(reagent: \"C2\", volume: \"20 mL\", dead: \"0.5 mL\")",
            "(reagent: \"C2\", volume: \"2 mL\", dead: \"3 mL\")",
        )
        .replace("(reagent: \"C3\", volume: \"20 mL\"", "(reagent: \"C9\", volume: \"20 mL\"")
        .replace(
            "reservoir: (reagent: \"B\", volume: \"100 mL\", dead: \"5 mL\")",
            "reservoir: (reagent: \"B\", volume: \"-1 mL\")",
        )
        .replace("\"C1\": (concentration: \"10 mM\"", "\"C1\": (concentration: \"10 mL\"")
        .replace("waste: 6", "waste: 3");
    let d = load_lab(SourceFile::new("catalysts.lab.ron", text)).unwrap_err();
    let msgs: Vec<String> =
        d.iter().map(|d| format!("{}:{} {} {}", d.line_col().0, d.line_col().1, d.code, d.message)).collect();
    assert_eq!(
        msgs,
        vec![
            "16:31 D0008 the concentration of `C1` needs a concentration, not a volume",
            "42:114 D0008 the volume of the reservoir of `pump_b` must not be negative",
            "59:24 D0008 port 2 of `valve` has 3000 uL of dead volume in a bottle of 2000 uL: nothing could be drawn",
            "60:24 D0008 port 3 of `valve` holds `C9`, which the lab's `reagents` do not declare",
        ],
        "{d}"
    );
}
