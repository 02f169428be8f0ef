//! The `lab` command: run campaigns, check files, start simulators, look at instruments.
//!
//! This file only parses the command line ([`cli::args`]) and dispatches each command to its family module in
//! [`cli`], where every command is a thin layer over the library: call it, print for people, and exit with a
//! documented code ([`cli::exit_code`]).

mod cli;

use std::process::ExitCode;

use clap::Parser;

use cli::args::{BenchCommand, Cli, Command, DevicesCommand, KeyCommand};
use cli::fleet;
use cli::{devices, exit_code, inspecting, operating, planning, running, serving, setup};
use controller::schedule::bridge::OperatorAction;

/// The scheduler's thread allocates the record's batches of events and the record's writer frees them on its own;
/// mimalloc handles that traffic between threads better than the system allocator (with the system allocator,
/// recording cost the scheduler +9 to +36% of its time per step where it costs +2 to +9% with mimalloc, and bare
/// steps took 10 to 25% longer: `lab bench dispatch`, BENCHMARKS.md). It is built without transparent huge pages
/// (`no_thp` in Cargo.toml): it returns freed memory to the system and takes it back as the world grows, and with
/// huge pages each time back cost zeroing 2 MiB, a fifth of the controller's time at 100,000 queued steps.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit_code::USAGE } else { exit_code::OK });
        }
    };
    cli::init_logging(cli.quiet, cli.verbose);
    let quiet = cli.quiet;
    ExitCode::from(match cli.command {
        Command::Init { dir } => setup::init_command(&dir),
        Command::Check { files } => setup::check_command(&files),
        Command::Key(KeyCommand::New { path }) => setup::key_new(&path),
        Command::Completions { shell } => setup::completions(shell),
        Command::Campaign { campaign, backtest: Some(dataset), seed, .. } => {
            running::backtest_command(&campaign, &dataset, seed)
        }
        Command::Campaign { campaign, db, lab, time_scale, policy, unknown, blocked, read_back, sign_with, .. } => {
            let settling = running::Settling { unknown: &unknown, blocked: &blocked, read_back: &read_back };
            running::campaign(campaign, db, lab, time_scale, &policy, settling, sign_with, quiet)
        }
        Command::Resume { who, campaign, lab, time_scale, unknown, blocked, read_back, sign_with } => {
            let settling = running::Settling { unknown: &unknown, blocked: &blocked, read_back: &read_back };
            running::resume(&who, campaign, lab, time_scale, settling, sign_with, quiet)
        }
        Command::Status { db, campaign } => inspecting::status_command(&db, campaign),
        Command::Report { hub: Some(hub), fleet_campaign: Some(name), out, .. } => fleet::report(&hub, &name, &out),
        Command::Report { db, campaign, out, .. } => inspecting::report_command(&db, campaign, &out),
        Command::Serve { db, addr, allow_remote, tls_cert, tls_key, public_key, hub } => {
            serving::serve(db, hub, addr, allow_remote, tls_cert.zip(tls_key), public_key)
        }
        Command::Verify { db, public_key } => inspecting::verify_command(&db, public_key.as_deref()),
        Command::Export { hub: Some(hub), fleet_campaign: Some(name), format, out, .. } => {
            fleet::export(&hub, &name, &format, &out)
        }
        Command::Export { db, campaign, format, out, .. } => inspecting::export_command(&db, campaign, &format, &out),
        Command::Fleet(command) => fleet::fleet_command(command, quiet),
        Command::Workcell {
            hub,
            lab,
            db,
            name,
            campaign,
            prefetch,
            time_scale,
            unknown,
            read_back,
            sign_with,
            ship_wait,
            ship_only,
            instant,
        } => {
            let read_back = read_back != "off";
            let run = fleet::WorkcellRun {
                name,
                campaign,
                prefetch,
                time_scale,
                read_back,
                sign_with,
                ship_wait,
                ship_only,
                instant,
            };
            fleet::workcell(&hub, lab, db, run, &unknown, quiet)
        }
        Command::Replay { db, campaign, instrument, transcript, lab } => {
            inspecting::replay_command(&db, campaign, instrument.as_deref(), transcript.as_deref(), lab.as_deref())
        }
        Command::Pause(a) => operating::operator_command(&a, OperatorAction::Pause),
        Command::Abort(a) => operating::operator_command(&a, OperatorAction::Abort),
        Command::Confirm { step, done, not_done, failed, vessel_at, who } => {
            operating::confirm(&who, step, done, not_done, failed, vessel_at)
        }
        Command::Clear { place, who } => operating::operator_command(&who, OperatorAction::Clear { place }),
        Command::Restock { bottle, volume, set, who } => operating::restock(&who, &bottle, &volume, set),
        Command::Plan(args) => planning::plan_command(&args),
        Command::Bench { command: BenchCommand::Learn { seeds, landscapes } } => {
            planning::bench_learn(seeds, landscapes)
        }
        Command::Bench {
            command: BenchCommand::Schedule { workload, best_known, generated, noise_seeds, planner_seeds },
        } => planning::bench_schedule(&workload, &best_known, generated, noise_seeds, planner_seeds),
        Command::Bench { command: BenchCommand::Dispatch { steps, rounds, pin } } => {
            planning::bench_dispatch(&steps, rounds, pin)
        }
        Command::Bench { command: BenchCommand::Load { instruments, experiments, in_flight, db } } => {
            planning::bench_load(instruments, experiments, in_flight, db)
        }
        Command::Bench { command: BenchCommand::Serve { db, rounds, dispatch_rounds, experiments, browser } } => {
            serving::bench_serve(&db, rounds, dispatch_rounds, experiments, browser)
        }
        Command::Sim { lab, lab_out, hands } => devices::sim_command(&lab, lab_out.as_deref(), hands),
        Command::Devices { command: DevicesCommand::List } => devices::list_command(),
        Command::Devices { command: DevicesCommand::Probe { lab } } if !lab.to_string_lossy().ends_with(".ron") => {
            devices::probe_port_command(&lab)
        }
        Command::Devices { command: DevicesCommand::Probe { lab } } => devices::probe_command(&lab),
    })
}
