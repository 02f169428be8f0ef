//! A step's timeout on the discrete-event clock, which stands for the real lab (one lab second a second, no floor
//! of wall time): the bound a step gets by default counts what its instrument's condition makes it take.

use tests::CampaignTest;

/// A vial heated at 90 degC and then, on the same plate, at 30 degC: the second heat first waits for the plate to
/// cool, far longer than a heat at 30 degC from a cold plate takes.
const PROTOCOL: &str = r#"Protocol(
    format: 1,
    name: "cool_down",
    description: "Heat a vial at 90 degC, then at 30 degC on the same plate, and read it.",
    parameters: {
        "hot": (unit: "min", min: 1, max: 2),
    },
    outputs: {
        "absorbance": (unit: "AU"),
    },
    steps: [
        (id: "load", op: Transfer(to: Named("hotplate_1"))),
        (id: "hot", on: Named("hotplate_1"), op: Heat(temperature: "90 degC", duration: "$hot", stir: "600 rpm"), after: ["load"]),
        (id: "warm", on: Named("hotplate_1"), op: Heat(temperature: "30 degC", duration: "1 min", stir: "600 rpm"), after: ["hot"]),
        (id: "to_uvvis", op: Transfer(to: Kind(Spectrometer)), after: ["warm"]),
        (id: "read", op: Measure(wavelength: "520 nm", output: "absorbance"), after: ["to_uvvis"]),
        (id: "unload", op: Transfer(to: Rack), after: ["read"]),
    ],
)
"#;

const CAMPAIGN: &str = r#"Campaign(
    format: 1,
    name: "cool_down",
    description: "One vial, hot then warm on the same plate.",
    protocol: "",
    lab: "",
    vary: {
        "hot": (min: 1, max: 2),
    },
    fixed: {},
    objective: Maximize("absorbance"),
    budget: 1,
    in_flight: 1,
    proposer: Random,
    seed: 1,
)
"#;

#[test]
fn a_heat_at_30_degc_after_one_at_90_on_a_simulated_plate_waits_for_it_to_cool_and_does_not_time_out() {
    let lab = tests::repo_root().join("devices/labs/sim.lab.ron");
    let t = CampaignTest::on_lab(&lab, PROTOCOL, CAMPAIGN);
    let summary = t.run();
    assert_eq!((summary.started, summary.failed), (1, 0), "{summary:?}");
    let (status, took): (String, f64) = t
        .record()
        .query_row("SELECT status, finished_at - started_at FROM steps WHERE step = 'warm'", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .expect("the warm step's row");
    assert_eq!(status, "succeeded");
    // The plate cooled from 90 degC for most of that: a bound built from a heat at 30 degC from a cold plate (about
    // 10 minutes) would have failed it, and the discrete-event clock, like a real lab, has no floor of 30 s of wall
    // time at the lab's time scale to stand in for it.
    let lab = devices::load_lab(protocols::SourceFile::new(
        lab.display().to_string(),
        std::fs::read_to_string(&lab).expect("the demo lab"),
    ))
    .expect("it loads");
    let action = protocols::Action::Heat {
        temperature: protocols::units::Temperature(30.0),
        duration: protocols::units::Duration(60.0),
        stir: None,
    };
    let on = protocols::InstrumentRef::Named("hotplate_1".into());
    let cold = controller::schedule::estimate::action(&lab, &on, &action) * 3.0 + 300.0;
    assert!(took > cold, "the heat took {took:.0} lab s, the bound from a cold plate is {cold:.0}");
}
