//! The Modbus driver against an independent Modbus RTU server: pymodbus (Debian's `python3-pymodbus`), which shares
//! no code with lab's driver, simulator or tokio-modbus, serving each ready-made map's registers on a
//! pseudo-terminal. The driver identifies, initializes, holds a temperature and leaves the controller stopped; the
//! registers it wrote are read back through the map. `.ci/run` installs pymodbus; without it these tests fail and
//! say how to install it (they never skip).

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use devices::capability::{HoldTemperature, Instrument, Outcome};
use devices::clock::Clock;
use devices::drivers::modbus::ModbusTemperature;
use devices::error::DeviceErrorKind;
use devices::lab::ModbusConfig;
use devices::modbus_map::{BUILT_IN, ModbusMap, Table, load_map};
use devices::transport::{ExchangeSink, Link, SerialStream, discard};
use protocols::diagnostic::SourceFile;
use protocols::units::{Duration as LabDuration, Temperature};

use crate::common;

/// A Python that has pymodbus: `LAB_PYTHON`, or Debian's, or the first on the path.
fn python() -> String {
    let candidates = [std::env::var("LAB_PYTHON").unwrap_or_default(), "/usr/bin/python3".into(), "python3".into()];
    candidates
        .into_iter()
        .filter(|p| !p.is_empty())
        .find(|p| {
            Command::new(p)
                .args(["-c", "import pymodbus, serial_asyncio"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .unwrap_or_else(|| {
            panic!(
                "no Python with pymodbus: install it with `apt-get install -y python3-pymodbus` (.ci/run does), or \\
                 set LAB_PYTHON to a Python that has pymodbus and pyserial-asyncio"
            )
        })
}

/// A running pymodbus server, killed when dropped, and the pseudo-terminal it serves.
struct Server {
    child: Child,
    /// The port's other side, kept open while the server runs.
    _slave: SerialStream,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The built-in map `name`, its text changed by `edit`.
fn map_with(name: &str, edit: impl Fn(&str) -> String) -> Arc<ModbusMap> {
    let (_, text) = BUILT_IN.iter().find(|(n, _)| *n == name).expect("a built-in map");
    Arc::new(load_map(SourceFile::new(name, edit(text))).unwrap_or_else(|d| panic!("{d}")))
}

/// The server's registers: every point of `map` at its initial value, the process value at `pv_celsius`.
fn registers(map: &ModbusMap, pv_celsius: f64) -> String {
    let mut tables: [(Table, Vec<String>); 4] =
        [(Table::Holding, vec![]), (Table::Input, vec![]), (Table::Coil, vec![]), (Table::Discrete, vec![])];
    let mut written = std::collections::BTreeSet::new();
    for p in map.points.values() {
        let decimals = map.decimals_of(p).map_or(0, |dp| dp.initial as u16);
        let value =
            if p.name == map.temperature.pv { p.from_celsius(pv_celsius).unwrap_or(pv_celsius) } else { p.initial };
        let words = p.encode(value, decimals).unwrap_or_else(|e| panic!("{}: {e}", p.name));
        for (i, w) in words.iter().enumerate() {
            let address = p.address + i as u16;
            if written.insert((p.table, address)) {
                let t = tables.iter_mut().find(|(t, _)| *t == p.table).expect("a table");
                t.1.push(format!("\"{address}\": {w}"));
            }
        }
    }
    let [holding, input, coils, discrete] = tables.map(|(_, v)| format!("{{{}}}", v.join(", ")));
    format!("\"holding\": {holding}, \"input\": {input}, \"coils\": {coils}, \"discrete\": {discrete}")
}

/// Starts pymodbus on a new pseudo-terminal, serving `map` as slave `unit` with the process value at `pv` degC,
/// and the basic device identification `identity` if given; returns it and the driver's side of the line.
fn serve(map: &ModbusMap, unit: u8, pv: f64, identity: Option<(&str, &str)>) -> (Server, SerialStream) {
    let pty = devices::sim::pty::open("pymodbus").expect("a pseudo-terminal");
    // A pseudo-terminal carries no parity (instrument-protocols.md 7.2), and pyserial-asyncio set to even parity
    // on one reads nothing: the server is opened without, whatever the map's line says.
    let identity = identity.map_or("null".into(), |(v, p)| format!("{{\"vendor\": \"{v}\", \"product\": \"{p}\"}}"));
    let config = format!(
        "{{\"unit\": {unit}, \"baud\": {}, \"parity\": \"N\", \"stop_bits\": {}, {}, \"identity\": {identity}}}",
        map.line.baud,
        map.line.stop_bits,
        registers(map, pv)
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/modbus_server.py");
    let mut child = Command::new(python())
        .args([script, &pty.path, &config])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python starts");
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().expect("its output")).read_line(&mut first).expect("a line");
    assert_eq!(first.trim(), "ready", "the server says it is starting");
    (Server { child, _slave: pty.slave }, pty.master)
}

/// A driver for `map` at `unit` on `line`, with a short reply timeout so a request sent before pymodbus opened its
/// port is soon asked again.
fn driver(map: Arc<ModbusMap>, unit: u8, line: SerialStream, sink: ExchangeSink) -> ModbusTemperature<SerialStream> {
    let config = ModbusConfig { address: unit, map, max_temperature: Temperature(150.0), tolerance: Temperature(1.0) };
    ModbusTemperature::new(
        "ctl",
        config,
        Link::new(line, "ctl", Clock::scaled(1000.0), sink, Duration::from_millis(400)),
    )
}

/// Identifies, trying again (at most 25 times, ten seconds in all) until pymodbus has opened its port.
async fn identify(c: &mut ModbusTemperature<SerialStream>) -> Result<devices::Identity, devices::DeviceError> {
    let mut last = None;
    for _ in 0..25 {
        match c.identify().await {
            Err(e) if matches!(e.kind, DeviceErrorKind::Timeout { .. }) => last = Some(e),
            other => return other,
        }
    }
    Err(last.expect("an attempt"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_ready_made_map_drives_pymodbus() {
    for (name, stopped) in [
        ("eurotherm_3200", Some(("loop_mode", 2.0))),
        ("omron_e5cc", None),
        ("watlow_ez_zone_pm", Some(("control_mode", 62.0))),
    ] {
        let map = map_with(name, str::to_owned);
        let (_server, line) = serve(&map, 1, 45.0, None);
        let (sink, log) = common::collector();
        let mut c = driver(Arc::clone(&map), 1, line, sink);
        let id = identify(&mut c).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(id.raw.contains("45.0 degC"), "{name}: {}", id.raw);
        c.initialize().await.unwrap_or_else(|e| panic!("{name}: {e}"));
        let held =
            c.hold_temperature(Temperature(45.0), LabDuration(30.0)).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            matches!(held, Outcome::Held { mean_temperature: Some(t), .. } if (t.0 - 45.0).abs() < 0.05),
            "{name}: {held:?}"
        );
        let sp = map.point(&map.temperature.sp).unwrap();
        let back = c.read_point(&sp.name).await.unwrap();
        assert!((sp.to_celsius(back).unwrap() - 45.0).abs() < 0.05, "{name}: the set point reads {back}");
        if let Some((point, value)) = stopped {
            assert_eq!(c.read_point(point).await.unwrap(), value, "{name}: the hold ends stopped");
        }
        // A set point kept in EEPROM is not written again when a second hold asks for the same temperature.
        let writes_to_sp = |log: &[devices::Exchange]| {
            log.iter()
                .filter(|e| {
                    e.sent.len() > 4
                        && matches!(e.sent[1], 6 | 16)
                        && u16::from_be_bytes([e.sent[2], e.sent[3]]) == sp.address
                })
                .count()
        };
        let before = writes_to_sp(&log.lock().unwrap());
        c.hold_temperature(Temperature(45.0), LabDuration(0.0)).await.unwrap();
        let after = writes_to_sp(&log.lock().unwrap());
        assert_eq!(after - before, usize::from(!sp.eeprom), "{name}: {} set point writes", after - before);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_by_function_43_and_by_register_against_pymodbus() {
    let fc43 = map_with("omron_e5cc", |t| {
        t.replace("identity: None,", "identity: Fc43(vendor: \"OMRON\", product: \"E5CC\"),")
    });
    let (_server, line) = serve(&fc43, 3, 22.0, Some(("OMRON", "E5CC-RX2ASM-800")));
    let mut c = driver(Arc::clone(&fc43), 3, line, discard());
    let id = identify(&mut c).await.unwrap();
    assert_eq!(id.model, "E5CC-RX2ASM-800");
    let (_server, line) = serve(&fc43, 3, 22.0, Some(("OMRON", "E5EC-QR2ASM-800")));
    let err = identify(&mut driver(fc43, 3, line, discard())).await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::WrongIdentity { .. }), "{err}");
    // A model-code register: the map's initial value is the code pymodbus serves.
    let register = map_with("eurotherm_3200", |t| {
        t.replace("identity: None,", "identity: Register(point: \"model\", equals: 3216),").replace(
            "\"status\":",
            "\"model\": (table: Holding, address: 122, kind: U16, initial: 3216),\n        \"status\":",
        )
    });
    let (_server, line) = serve(&register, 1, 22.0, None);
    assert!(identify(&mut driver(Arc::clone(&register), 1, line, discard())).await.is_ok());
    let wrong = map_with("eurotherm_3200", |t| {
        t.replace("identity: None,", "identity: Register(point: \"model\", equals: 3208),").replace(
            "\"status\":",
            "\"model\": (table: Holding, address: 122, kind: U16, initial: 3216),\n        \"status\":",
        )
    });
    let (_server, line) = serve(&wrong, 1, 22.0, None);
    let err = identify(&mut driver(wrong, 1, line, discard())).await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::WrongIdentity { .. }), "{err}");
}
