//! Simulators and serial ports: `lab sim` and `lab devices`.

use std::path::Path;

use super::exit_code;
use super::print_diagnostics;
use controller::load::LoadError;

/// Loads a lab file and starts an I/O runtime, or prints why not and gives the exit code.
pub fn lab_and_runtime(path: &Path) -> Result<(devices::Lab, tokio::runtime::Runtime), u8> {
    let lab = match controller::load::load_lab_file(path) {
        Ok(l) => l,
        Err(LoadError::Invalid(d)) => {
            print_diagnostics(&d);
            return Err(exit_code::INVALID_INPUT);
        }
        Err(e) => {
            eprintln!("lab: {e}");
            return Err(exit_code::CANNOT_RUN);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().map_err(|e| {
        eprintln!("lab: cannot start the I/O runtime: {e}");
        exit_code::CANNOT_RUN
    })?;
    Ok((lab, rt))
}

/// `lab sim`: a lab's simulators on pseudo-terminals until Ctrl-C, with optional hands on the simulated bench.
pub fn sim_command(path: &Path, lab_out: Option<&Path>, hands: bool) -> u8 {
    let (lab, rt) = match lab_and_runtime(path) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let clock = devices::Clock::scaled(lab.simulation.time_scale);
    rt.block_on(async {
        let sims = match devices::sim::start(&lab, clock).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("lab: cannot start the simulators: {e}");
                return exit_code::CANNOT_RUN;
            }
        };
        if let Some(out) = lab_out {
            let text = controller::load::with_simulator_ports(&lab, &sims.ports);
            if let Err(e) = std::fs::write(out, text) {
                eprintln!("lab: cannot write {}: {e}", out.display());
                sims.stop().await;
                return exit_code::CANNOT_RUN;
            }
        }
        // A rehearsal's hands: `remove PLACE` on standard input takes whatever vessel stands there off the simulated
        // deck, as a technician clearing a place does (then `lab clear PLACE` tells the controller). Only when asked:
        // a process in the background of a terminal that reads it is stopped by the terminal.
        if hands {
            let bench = sims.bench().clone();
            let switch = sims.fault_switch();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::stdin().lock().lines().map_while(Result::ok) {
                    match line.split_whitespace().collect::<Vec<_>>()[..] {
                        ["remove", place] => match bench.remove_at(place) {
                            Some(v) => println!("vessel {v} taken off the deck at `{place}`"),
                            None => println!("no vessel stands at `{place}`"),
                        },
                        // An instrument that stops answering for good (a cable pulled and not put back).
                        ["mute", instrument] => {
                            let silent = devices::lab::Faults { no_reply: 1.0, ..devices::lab::Faults::none() };
                            if switch.set(instrument, Some(silent)) {
                                println!("`{instrument}` no longer answers");
                            } else {
                                println!("no simulator is called `{instrument}`");
                            }
                        }
                        [] => {}
                        _ => eprintln!(
                            "lab sim: `{line}` not understood; `remove PLACE` takes the vessel at PLACE away, \
                         `mute INSTRUMENT` makes an instrument stop answering"
                        ),
                    }
                }
            });
        }
        println!("simulators of lab `{}` (time scale {}x); Ctrl-C stops them", lab.name, lab.simulation.time_scale);
        if hands {
            println!("type `remove PLACE` to take a vessel off the deck, `mute INSTRUMENT` to silence an instrument");
        }
        println!("{:<12} {:<14} {:<14} port", "instrument", "driver", "line");
        for spec in &lab.instruments {
            if let Some(port) = sims.ports.get(&spec.name) {
                println!("{:<12} {:<14} {:<14} {port}", spec.name, spec.driver.name(), spec.line.to_string());
            }
        }
        if let Some(out) = lab_out {
            println!("lab file for these simulators: {}", out.display());
        }
        let _ = tokio::signal::ctrl_c().await;
        sims.stop().await;
        exit_code::OK
    })
}

/// `lab devices list`: the serial ports of this machine.
pub fn list_command() -> u8 {
    match devices::transport::list_ports() {
        Ok(ports) if ports.is_empty() => {
            println!("no serial ports found (simulators use pseudo-terminals, which are not listed; see `lab sim`)");
            exit_code::OK
        }
        Ok(ports) => {
            for p in ports {
                println!("{:<24} {}", p.path, p.description);
            }
            exit_code::OK
        }
        Err(e) => {
            eprintln!("lab: cannot list serial ports: {e}");
            exit_code::CANNOT_RUN
        }
    }
}

/// `lab devices probe LAB`: every instrument of a lab asked who it is.
pub fn probe_command(path: &Path) -> u8 {
    let (lab, rt) = match lab_and_runtime(path) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let clock = devices::Clock::scaled(lab.simulation.time_scale);
    rt.block_on(async {
        let sims = if lab.instruments.iter().any(|i| i.port == devices::PortSpec::Simulated) {
            match devices::sim::start(&lab, clock.clone()).await {
                Ok(s) => Some(s),
                Err(e) => {
                    eprintln!("lab: cannot start the simulators: {e}");
                    return exit_code::CANNOT_RUN;
                }
            }
        } else {
            None
        };
        let mut failures = 0;
        println!("{:<12} {:<13} {:<22} {:<24} firmware / problem", "instrument", "kind", "port", "model");
        for spec in &lab.instruments {
            let port = match &spec.port {
                devices::PortSpec::Serial(p) | devices::PortSpec::Simulator(p) => Some(p.clone()),
                devices::PortSpec::Simulated => sims.as_ref().and_then(|s| s.ports.get(&spec.name).cloned()),
            };
            let Some(port) = port else { continue };
            let result = async {
                let stream =
                    devices::transport::open_serial(&spec.name, &port, &spec.line).map_err(|e| e.to_string())?;
                let mut inst =
                    devices::drivers::build(spec, &lab.deck, stream, clock.clone(), devices::transport::discard());
                inst.identify().await.map_err(|e| e.to_string())
            }
            .await;
            match result {
                Ok(id) => println!(
                    "{:<12} {:<13} {:<22} {:<24} {}",
                    spec.name,
                    spec.kind().name(),
                    port,
                    id.model,
                    id.firmware.unwrap_or_default()
                ),
                Err(e) => {
                    failures += 1;
                    println!("{:<12} {:<13} {:<22} {:<24} {e}", spec.name, spec.kind().name(), port, "-");
                }
            }
        }
        if let Some(s) = sims {
            s.stop().await;
        }
        if failures > 0 { exit_code::CANNOT_RUN } else { exit_code::OK }
    })
}

/// `lab devices probe PORT`: the probe's report, exit 0 if anything answered.
pub fn probe_port_command(port: &Path) -> u8 {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lab: cannot start the runtime: {e}");
            return exit_code::CANNOT_RUN;
        }
    };
    let port = port.to_string_lossy();
    match rt.block_on(devices::probe::probe_port(&port, devices::probe::ProbeOptions::default())) {
        Ok(report) => {
            println!("{report}");
            if report.found().next().is_some() { exit_code::OK } else { exit_code::CANNOT_RUN }
        }
        Err(e) => {
            eprintln!("lab: {e}");
            exit_code::CANNOT_RUN
        }
    }
}
