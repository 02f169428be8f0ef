//! The command path, timed: a driver's request through the transport, a pseudo-terminal, the simulator and back,
//! against a bare echo of the same bytes over the same kind of pseudo-terminal, in the same run.
//!
//! Both paths run on the same tokio runtime the controller uses (two worker threads), open their port through
//! `transport::open_serial`, and are timed alternately in rounds, so drift in the machine's load affects both
//! alike. The driver path is the Cavro XCalibur's `identify` (`/1&\r`, answered `/0` status, firmware, ETX CR
//! LF): framing and checking on both sides, the exchange reported to a sink that hands it in batches to another
//! thread (as the controller's record does), the simulator's parsing and bookkeeping; it is also timed with a sink
//! that drops the exchange, to show what recording costs. The echo path writes the same four bytes and reads them back. The
//! output gives each path's median, mean and 99th percentile round trip and the ratio of medians; the target is
//! at most 1.3.
//!
//! A second comparison times a declared instrument against the Rust driver of the same protocol: an MT-SICS balance
//! weighing (`S`, answered `S S <weight> g`) through `MettlerBalance` and its simulator, and through the declaration
//! `mettler_sics_level0` (`devices/instruments/`) and the simulator made from it, one of each in turn on one
//! runtime. The target is a ratio of medians (declared over Rust) of at most 1.3.
//!
//! Run with `cargo bench -p devices --bench command_path`; `-- --rounds N` changes the number of rounds of
//! [`PER_ROUND`] round trips each.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use devices::clock::Clock;
use devices::lab::load_lab;
use devices::sim::pty;
use devices::transport::{Exchange, ExchangeSink, discard, open_serial};
use protocols::diagnostic::SourceFile;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Round trips per path per round.
const PER_ROUND: usize = 250;

/// Rounds by default.
const ROUNDS: usize = 12;

/// Round trips of each path before timing starts.
const WARM_UP: usize = 300;

fn summary(name: &str, mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let n = samples.len();
    let mean = samples.iter().sum::<Duration>() / n as u32;
    let median = samples[n / 2];
    let p99 = samples[(n * 99 / 100).min(n - 1)];
    println!(
        "{name:<28} n={n:<6} median {:>7.1} us   mean {:>7.1} us   p99 {:>7.1} us",
        median.as_secs_f64() * 1e6,
        mean.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6
    );
    median
}

fn main() {
    let rounds = std::env::args().skip_while(|a| a != "--rounds").nth(1).and_then(|n| n.parse().ok()).unwrap_or(ROUNDS);
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    runtime.block_on(async move {
        let mut lab = load_lab(SourceFile::new("sim.lab.ron", include_str!("../labs/sim.lab.ron"))).expect("lab");
        lab.instruments.retain(|i| i.name == "pump_a" || i.name == "pump_b");
        let clock = Clock::scaled(1.0);
        let sims = devices::sim::start(&lab, clock.clone()).await.expect("simulators");
        let spec = lab.instrument("pump_a").expect("pump_a").clone();
        // As in the controller: reporting an exchange pushes it onto a shared list, which the record's writer thread
        // takes whenever it looks (every 2 ms when idle); nothing wakes the writer.
        let gathered: Arc<Mutex<Vec<Exchange>>> = Arc::default();
        let taken = Arc::clone(&gathered);
        std::thread::spawn(move || {
            while Arc::strong_count(&taken) > 1 {
                drop(std::mem::take(&mut *taken.lock().unwrap_or_else(|p| p.into_inner())));
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        let sink: ExchangeSink = Arc::new(move |e| gathered.lock().unwrap_or_else(|p| p.into_inner()).push(e));
        let mut pump =
            devices::drivers::connect(&spec, &lab.deck, &sims.ports["pump_a"], clock.clone(), sink).expect("pump");
        // The same path with a sink that drops every exchange, to show what recording costs.
        let spec_b = lab.instrument("pump_b").expect("pump_b").clone();
        let mut unrecorded =
            devices::drivers::connect(&spec_b, &lab.deck, &sims.ports["pump_b"], clock, discard()).expect("pump_b");

        // The bare echo: a pseudo-terminal whose master sends back every byte it receives.
        let pair = pty::open("echo").expect("a pseudo-terminal");
        let (mut master, echo_path, keep) = (pair.master, pair.path, pair.slave);
        tokio::spawn(async move {
            let _keep = keep;
            let mut buf = [0u8; 256];
            while let Ok(n) = master.read(&mut buf).await {
                if n == 0 || master.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        });
        let mut echo = open_serial("echo", &echo_path, &spec.line).expect("the echo port");
        let command = b"/1&\r";
        let mut back = [0u8; 4];

        for _ in 0..WARM_UP {
            pump.identify().await.expect("identify");
            unrecorded.identify().await.expect("identify");
            echo.write_all(command).await.expect("write");
            echo.read_exact(&mut back).await.expect("read");
        }
        let (mut driver, mut quiet, mut bare) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            for _ in 0..PER_ROUND {
                let t = Instant::now();
                pump.identify().await.expect("identify");
                driver.push(t.elapsed());
            }
            for _ in 0..PER_ROUND {
                let t = Instant::now();
                unrecorded.identify().await.expect("identify");
                quiet.push(t.elapsed());
            }
            for _ in 0..PER_ROUND {
                let t = Instant::now();
                echo.write_all(command).await.expect("write");
                echo.read_exact(&mut back).await.expect("read");
                bare.push(t.elapsed());
            }
        }
        println!("command path: driver -> pseudo-terminal -> simulator -> back, against a bare echo");
        let d = summary("driver + simulator (identify)", driver);
        let q = summary("  the same, nothing recorded", quiet);
        let b = summary("bare echo (same 4 bytes)", bare);
        println!("ratio of medians: {:.2} (target <= 1.30)", d.as_secs_f64() / b.as_secs_f64());
        println!("ratio of medians, nothing recorded: {:.2}", q.as_secs_f64() / b.as_secs_f64());
        sims.stop().await;
        declared_against_rust(rounds).await;
    });
}

/// Two balances on empty pans, one driven by `MettlerBalance`, one declared in RON, same protocol and line.
const BALANCES: &str = r#"Lab(
    format: 1,
    name: "balances",
    deck: (
        safe_z: 90,
        rack: (origin: (x: 20, y: 20, z: 8), pitch_x: 22, pitch_y: 22, columns: 2, rows: 1),
        positions: {"pan_1": (x: 100, y: 100, z: 10), "pan_2": (x: 200, y: 100, z: 10)},
    ),
    instruments: {
        "rust": (driver: MettlerBalance(model: "XS205", capacity: "220 g"), port: Simulated, position: "pan_1"),
        "declared": (
            driver: Declared(instrument: "mettler_sics_level0", model: "XS205"),
            port: Simulated,
            position: "pan_2",
        ),
    },
)"#;

/// One weighing.
async fn weigh(i: &mut Box<dyn devices::capability::Instrument>) {
    i.as_weigh().expect("a balance").weigh().await.expect("a weight");
}

/// The Rust MT-SICS driver and the declared one, each weighing an empty pan on its simulator.
async fn declared_against_rust(rounds: usize) {
    use devices::capability::Instrument;
    let lab = load_lab(SourceFile::new("balances.lab.ron", BALANCES)).expect("the balances' lab");
    let clock = Clock::scaled(1.0);
    let sims = devices::sim::start(&lab, clock.clone()).await.expect("simulators");
    let connect = |name: &str| -> Box<dyn Instrument> {
        let spec = lab.instrument(name).expect("instrument");
        devices::drivers::connect(spec, &lab.deck, &sims.ports[name], clock.clone(), discard()).expect("port")
    };
    let (mut rust, mut declared) = (connect("rust"), connect("declared"));
    for _ in 0..WARM_UP {
        weigh(&mut rust).await;
        weigh(&mut declared).await;
    }
    let (mut r, mut d) = (Vec::new(), Vec::new());
    // One of each in turn: on a virtual machine a round trip's wake-ups take one of two very different times
    // depending on the load, which may change within a round (BENCHMARKS.md), so the two alternate closely.
    for _ in 0..rounds * PER_ROUND {
        let t = Instant::now();
        weigh(&mut rust).await;
        r.push(t.elapsed());
        let t = Instant::now();
        weigh(&mut declared).await;
        d.push(t.elapsed());
    }
    println!("declared instrument against the Rust driver of the same protocol (MT-SICS weigh, `S`)");
    let r = summary("Rust driver (MettlerBalance)", r);
    let d = summary("declared (mettler_sics_level0)", d);
    println!("ratio of medians, declared / Rust: {:.2} (target <= 1.30)", d.as_secs_f64() / r.as_secs_f64());
    sims.stop().await;
}
