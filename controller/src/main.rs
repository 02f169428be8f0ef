//! The `lab` command: run campaigns, check files, start simulators, look at instruments.
//!
//! Every subcommand is a thin layer over the library: parse arguments, call it, print for people, and exit with a
//! documented code ([`exit_code`]).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The scheduler's thread allocates the record's batches of events and the record's writer frees them on its own;
/// mimalloc handles that traffic between threads better than the system allocator (with the system allocator,
/// recording cost the scheduler +9 to +36% of its time per step where it costs +2 to +9% with mimalloc, and bare
/// steps took 10 to 25% longer: `lab bench dispatch`, BENCHMARKS.md). It is built without transparent huge pages
/// (`no_thp` in Cargo.toml): it returns freed memory to the system and takes it back as the world grows, and with
/// huge pages each time back cost zeroing 2 MiB, a fifth of the controller's time at 100,000 queued steps.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{CommandFactory, Parser, Subcommand};
use controller::check::{CheckError, check_file};
use controller::diagnostics::render;
use controller::load::LoadError;
use controller::run::{CampaignOptions, RunError, Summary, run_campaign};
use controller::schedule::bridge::{OperatorAction, Verdict};
use controller::schedule::resources::Policy;
use controller::schedule::systems::UnknownPolicy;
use protocols::Diagnostics;

/// Exit codes, stable for scripts.
mod exit_code {
    /// Everything worked.
    pub const OK: u8 = 0;
    /// An input file is invalid (the diagnostics say where and why); nothing was run.
    pub const INVALID_INPUT: u8 = 1;
    /// The command line is wrong (clap prints usage).
    pub const USAGE: u8 = 2;
    /// The campaign could not run: the record or the lab refused (nothing was run, or it stopped safely).
    pub const CANNOT_RUN: u8 = 3;
    /// The operator aborted the campaign; instruments were put in their safe state.
    pub const ABORTED: u8 = 4;
}

/// The examples `lab --help` ends with: the first ten minutes, in order.
const EXAMPLES: &str = "\
Examples:
  lab init mylab                                      a lab folder that runs on simulators at once
  lab check mylab/*.ron                               check every file; nothing moves
  lab campaign mylab/first.campaign.ron --db mylab/lab.db
  lab status --db mylab/lab.db                        from another terminal, while it runs
  lab report --db mylab/lab.db --out mylab/report     plots and tables in one web page

Logs go to stderr: -v says what the controller decides, -vv everything, RUST_LOG=controller=debug chooses
(RUST_LOG, if set, wins over -v and -q). GUIDE.md explains every file format and every diagnostic code.";

#[derive(Parser)]
#[command(
    name = "lab",
    version,
    about = "Run self-driving-lab campaigns on serial instruments, and keep every result.",
    after_long_help = EXAMPLES
)]
struct Cli {
    /// Say more on stderr: -v what the controller decides, -vv every detail.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = "Global options")]
    verbose: u8,
    /// Say less: errors only, and no live view (a campaign still prints its summary).
    #[arg(short, long, global = true, conflicts_with = "verbose", help_heading = "Global options")]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make a new lab folder: a lab file with simulated instruments, a protocol and a campaign, ready to run.
    ///
    /// The files are commented field by field; change one thing at a time and `lab check` it. Nothing is
    /// overwritten: if any of the files exists, nothing is written.
    ///
    /// Example: lab init mylab
    ///
    /// Example: lab campaign mylab/first.campaign.ron --db mylab/lab.db
    Init {
        /// The folder to make (created if missing).
        dir: PathBuf,
    },
    /// Run a closed-loop campaign: propose experiments, run them on the lab's instruments, learn, repeat.
    ///
    /// On a terminal a live view shows the progress, what each instrument is doing, the best result so far and the
    /// time left; elsewhere (CI, logs) a plain line per finished experiment. `-q` shows only the summary.
    ///
    /// Example: lab campaign experiments/campaigns/demo.campaign.ron --db lab.db
    Campaign {
        /// The campaign file (`*.campaign.ron`).
        campaign: PathBuf,
        /// The record to append to; created if missing.
        #[arg(long, default_value = "lab.db")]
        db: PathBuf,
        /// Use this lab file instead of the one the campaign names.
        #[arg(long)]
        lab: Option<PathBuf>,
        /// Lab seconds per wall second (simulated labs only); overrides the lab file.
        #[arg(long)]
        time_scale: Option<f64>,
        /// How the scheduler chooses: `planned` (plan, replan as reality departs), `blind` (follow the first plan),
        /// or `greedy` (critical path first, no plan).
        #[arg(long, default_value = "planned", value_parser = ["planned", "blind", "greedy"])]
        policy: String,
        /// A step that may have acted and failed is never repeated; once its instrument is reconciled, `fail` fails
        /// its experiment (unattended labs), `wait` waits for an operator's `lab confirm`.
        #[arg(long, default_value = "fail", value_parser = ["fail", "wait"])]
        unknown: String,
        /// Run the campaign's proposer against this lookup table (CSV: a column per parameter and per objective)
        /// instead of instruments: the lab-independent way to choose a strategy. Nothing is recorded.
        #[arg(long, value_name = "DATASET.csv")]
        backtest: Option<PathBuf>,
        /// With --backtest: the seed (default: the campaign's).
        #[arg(long, requires = "backtest")]
        seed: Option<u64>,
        /// Sign the record's checkpoints with this key (made by `lab key new`), so `lab verify --public-key` can
        /// prove the record was not rewritten.
        #[arg(long, value_name = "KEY")]
        sign_with: Option<PathBuf>,
    },
    /// Show what a campaign is doing: running, queued, failed and unknown steps, offline instruments, progress.
    ///
    /// It only reads the record, so it works from another terminal while a campaign runs, and on a finished one.
    /// Unknown steps are listed with the ids `lab confirm` takes.
    ///
    /// Example: lab status --db lab.db
    ///
    /// Example: watch -n 2 lab status --db lab.db
    Status {
        /// The record.
        #[arg(long, default_value = "lab.db")]
        db: PathBuf,
        /// The campaign (default: the latest).
        #[arg(long)]
        campaign: Option<i64>,
    },
    /// Write a campaign's report: one web page with plots and tables, and each plot as SVG and PNG.
    ///
    /// The page (`DIR/report.html`) needs no server and no network: open it in any browser, mail it, archive it.
    /// It only reads the record, so it works while a campaign runs.
    ///
    /// Example: lab report --db lab.db --out report
    ///
    /// Example: lab report --db lab.db --campaign 3 --out reports/3
    Report {
        /// The record.
        #[arg(long, default_value = "lab.db")]
        db: PathBuf,
        /// The campaign (default: the latest).
        #[arg(long)]
        campaign: Option<i64>,
        /// The folder to write into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Check a driver against a recorded session: replay one instrument's exchanges from the record (or from a
    /// transcript file) and report where the driver's bytes first differ.
    ///
    /// Example: lab replay --db lab.db --instrument pump_a
    Replay {
        /// The record to take the session from.
        #[arg(long, default_value = "lab.db")]
        db: PathBuf,
        /// The campaign (default: the latest).
        #[arg(long)]
        campaign: Option<i64>,
        /// The instrument whose session to replay.
        #[arg(long, required_unless_present = "transcript")]
        instrument: Option<String>,
        /// A transcript file (RON) instead of the record; needs --lab.
        #[arg(long, requires = "lab")]
        transcript: Option<PathBuf>,
        /// The lab file, with --transcript.
        #[arg(long)]
        lab: Option<PathBuf>,
    },
    /// Estimate a protocol's or a campaign's schedule in a lab without touching an instrument.
    ///
    /// Example: lab plan devices/labs/sim.lab.ron experiments/campaigns/demo.campaign.ron
    Plan {
        /// The lab file.
        lab: PathBuf,
        /// A protocol (`*.protocol.ron`) or a campaign (`*.campaign.ron`).
        file: PathBuf,
        /// For a protocol: how many experiments to plan at once.
        #[arg(long, default_value_t = 1)]
        count: usize,
        /// For a protocol: a parameter value, as NAME=VALUE in the parameter's unit (repeatable).
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
    },
    /// Check that a record was not edited: the hash chain, the checkpoints, and every table against the journal.
    ///
    /// Example: lab verify --db lab.db
    ///
    /// Example: lab verify --db lab.db --public-key lab.key.pub
    Verify {
        /// The record.
        #[arg(long, default_value = "lab.db")]
        db: PathBuf,
        /// The lab's public key (a `.pub` file from `lab key new`, or its 64 hex digits): every checkpoint must be
        /// signed by it, which catches a record rewritten together with its checkpoints.
        #[arg(long, value_name = "KEY")]
        public_key: Option<String>,
    },
    /// Make keys that sign the record's checkpoints.
    ///
    /// A campaign run with `--sign-with KEY` signs its checkpoints (every hour of lab time and at its end);
    /// `lab verify --public-key KEY.pub` then proves the record up to its last signed checkpoint against anyone
    /// without the key, checkpoints and all.
    ///
    /// Example: lab key new ~/.config/lab/lab.key
    #[command(subcommand)]
    Key(KeyCommand),
    /// Write the experiment table (one row per experiment, a column per parameter and output) for notebooks.
    ///
    /// Example: lab export --format parquet --out results.parquet
    Export {
        /// The record.
        #[arg(long, default_value = "lab.db")]
        db: PathBuf,
        /// Only this campaign (default: all).
        #[arg(long)]
        campaign: Option<i64>,
        /// `csv` or `parquet`.
        #[arg(long, default_value = "csv", value_parser = ["csv", "parquet"])]
        format: String,
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Ask the running campaign to pause: running steps finish, nothing new starts.
    ///
    /// Example: lab pause --db lab.db --reason "refilling reservoir B"
    Pause(OperatorArgs),
    /// Continue a campaign: if a controller is running it (paused), ask it to go on; if none is (it stopped or
    /// crashed), resume the campaign from the record: done steps stay done, steps in doubt are reconciled and never
    /// repeated blindly, pending steps run, and the learner is refit from the recorded results.
    ///
    /// Example: lab resume --db lab.db
    Resume {
        #[command(flatten)]
        who: OperatorArgs,
        /// The campaign to resume (default: the latest unfinished one).
        #[arg(long)]
        campaign: Option<i64>,
        /// Use this lab file instead of the recorded one (instruments moved to other ports).
        #[arg(long)]
        lab: Option<PathBuf>,
        /// Lab seconds per wall second (simulated labs only); default: the campaign's.
        #[arg(long)]
        time_scale: Option<f64>,
        /// Steps left in doubt by the stop are never repeated; once their instrument is reconciled, `fail` fails
        /// their experiments (unattended labs), `wait` waits for an operator's `lab confirm`.
        #[arg(long, default_value = "fail", value_parser = ["fail", "wait"])]
        unknown: String,
        /// Sign the record's checkpoints with this key (made by `lab key new`).
        #[arg(long, value_name = "KEY")]
        sign_with: Option<PathBuf>,
    },
    /// Ask the running campaign to stop now, with every instrument in its safe state.
    ///
    /// Example: lab abort --db lab.db --reason "smoke from hotplate_2"
    Abort(OperatorArgs),
    /// Settle a step whose outcome is unknown (it may have acted and then failed).
    ///
    /// Example: lab confirm 812 --not-done --by "A. Technician" --reason "vial empty, pump never moved"
    Confirm {
        /// The step's id (`steps.id` in the record; `lab` prints it when the step goes unknown).
        step: i64,
        /// It happened, completely.
        #[arg(long, conflicts_with_all = ["not_done", "failed"])]
        done: bool,
        /// It did not happen at all; running it again is safe.
        #[arg(long, conflicts_with_all = ["done", "failed"])]
        not_done: bool,
        /// It happened partly or wrongly; its experiment is not trusted.
        #[arg(long, conflicts_with_all = ["done", "not_done"])]
        failed: bool,
        /// For a transfer: where the vessel is now (a deck position, or `rack`).
        #[arg(long)]
        vessel_at: Option<String>,
        #[command(flatten)]
        who: OperatorArgs,
    },
    /// Say that a deck place the controller keeps blocked is empty: a vessel whose whereabouts it lost (a transfer in
    /// doubt, a vial that could not be carried back) blocks every place it may stand at until a person has looked.
    ///
    /// Example: lab clear dispense --by "A. Technician" --reason "vial of #7 removed to the bench"
    Clear {
        /// The deck position, as named in the lab file and in the warning that blocked it (`lab status` shows it).
        place: String,
        #[command(flatten)]
        who: OperatorArgs,
    },
    /// Benchmarks of the scheduler and the proposers.
    ///
    /// Example: lab bench schedule --generated 3
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Check protocol, lab and campaign files without running anything; exit 0 if all are valid, 1 if not.
    ///
    /// Example: lab check protocols/library/*.protocol.ron devices/labs/sim.lab.ron
    Check {
        /// Files to check; the kind is read from each file's first word (`Protocol(`, `Lab(`, `Campaign(`,
        /// `ModbusMap(`, `Instrument(`).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Start a lab's simulators and print their serial port paths, so any program can talk to them.
    ///
    /// Example: lab sim devices/labs/sim.lab.ron   (then: minicom -D /dev/pts/5)
    Sim {
        /// The lab file.
        lab: PathBuf,
        /// Also write a copy of the lab file whose simulated ports point at these simulators
        /// (`port: Simulator("/dev/pts/N")`), so controllers started later (and restarted after a crash) drive the
        /// same simulated bench.
        #[arg(long, value_name = "FILE")]
        lab_out: Option<PathBuf>,
        /// Read lines from standard input: `remove PLACE` takes the vessel standing at that deck place off the
        /// simulated deck, as a technician clearing a place does; `mute INSTRUMENT` makes an instrument stop
        /// answering for good. Off by default, so `lab sim` run in the background of a terminal never stops to read
        /// it.
        #[arg(long)]
        hands: bool,
    },
    /// Look at serial ports and instruments.
    ///
    /// Example: lab devices probe devices/labs/sim.lab.ron
    Devices {
        #[command(subcommand)]
        command: DevicesCommand,
    },
    /// Print a completion script for a shell, so Tab completes commands, options and file names.
    ///
    /// Example: lab completions bash > ~/.local/share/bash-completion/completions/lab
    ///
    /// Example: lab completions zsh > ~/.zfunc/_lab
    ///
    /// Example: lab completions fish > ~/.config/fish/completions/lab.fish
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Who asks, and why; recorded with the request.
#[derive(clap::Args)]
struct OperatorArgs {
    /// The record of the campaign.
    #[arg(long, default_value = "lab.db")]
    db: PathBuf,
    /// Who asks (recorded).
    #[arg(long, default_value_t = default_user())]
    by: String,
    /// Why (recorded).
    #[arg(long, default_value = "no reason given")]
    reason: String,
}

fn default_user() -> String {
    std::env::var("USER").unwrap_or_else(|_| "operator".to_owned())
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Make a new signing key: the secret at PATH (readable by you only; keep it off shared drives) and the public
    /// key at PATH.pub, to publish or hand to whoever audits the lab's records.
    ///
    /// Example: lab key new ~/.config/lab/lab.key
    ///
    /// Example: lab campaign experiments/campaigns/demo.campaign.ron --db lab.db --sign-with ~/.config/lab/lab.key
    New {
        /// Where to write the secret key (never overwritten).
        path: PathBuf,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Makespan, lower bound and decision time of the scheduler on a workload (`lab-workload/v1` JSON).
    ///
    /// Example: lab bench schedule --workload ft06.json --best-known 55
    Schedule {
        /// The workload file.
        #[arg(long)]
        workload: Vec<PathBuf>,
        /// The best known makespan, to report the gap (one per workload, in order).
        #[arg(long)]
        best_known: Vec<f64>,
        /// Also run random workloads of the same shape: this many, of 20 jobs on 8 instruments.
        #[arg(long, default_value_t = 0)]
        generated: u64,
        /// Seeds for the noise comparison (real durations within ±30% of the estimates).
        #[arg(long, default_value_t = 10)]
        noise_seeds: u64,
        /// Seeds for the planner run on its own (the spread of its makespan and time).
        #[arg(long, default_value_t = 20)]
        planner_seeds: u64,
    },
    /// The proposer's benchmark suite: Branin, Hartmann6, the Buchwald-Hartwig pool, batches, latency.
    ///
    /// Example: lab bench learn --seeds 3
    Learn {
        /// Seeds per figure (medians over them).
        #[arg(long, default_value_t = 10)]
        seeds: usize,
    },
    /// The controller's own time per step, with zero-latency simulated instruments.
    ///
    /// Example: lab bench dispatch --steps 1000,10000
    Dispatch {
        /// Queue sizes to measure.
        #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
        steps: Vec<usize>,
        /// Rounds per size, each a bare run then a recorded one (default: 100 at 1,000 steps, 20 at 10,000, 5 at 100,000,
        /// so that each size takes a few seconds); the figures are medians over the rounds.
        #[arg(long)]
        rounds: Option<usize>,
        /// Keep the scheduler's thread and the record's writer on a core each (Linux, two cores or more); without
        /// it, the operating system places them.
        #[arg(long)]
        pin: bool,
    },
    /// One large simulated run through the scheduler and the record: time, memory and the record's size.
    ///
    /// Example: lab bench load --instruments 100 --experiments 10000
    Load {
        /// Instruments in the lab (pumps, hotplates, spectrometers, balances and gantries in fixed proportions).
        #[arg(long, default_value_t = 100)]
        instruments: usize,
        /// Experiments to run (eight steps each, shaped like the demo protocol).
        #[arg(long, default_value_t = 10_000)]
        experiments: usize,
        /// Experiments in flight at once.
        #[arg(long, default_value_t = 60)]
        in_flight: usize,
        /// Where to write the record (default: a temporary file, removed afterwards).
        #[arg(long)]
        db: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum DevicesCommand {
    /// List the serial ports of this machine.
    ///
    /// Example: lab devices list
    List,
    /// Open every instrument of a lab, ask who it is, and print a table (starts simulators for simulated ports); or,
    /// given a serial port, try the known identity queries at their usual line settings and say what answered.
    ///
    /// Example: lab devices probe devices/labs/sim.lab.ron, or lab devices probe /dev/ttyUSB0
    Probe {
        /// A lab file (`*.lab.ron`), or a serial port.
        lab: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit_code::USAGE } else { exit_code::OK });
        }
    };
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| level.into()))
        .with_writer(controller::live::LogWriter)
        .init();
    let quiet = cli.quiet;
    ExitCode::from(match cli.command {
        Command::Campaign { campaign, backtest: Some(dataset), seed, .. } => {
            backtest_command(&campaign, &dataset, seed)
        }
        Command::Replay { db, campaign, instrument, transcript, lab } => {
            let report = match (&transcript, &lab, &instrument) {
                (Some(t), Some(l), _) => controller::replay::from_file(t, l),
                (_, _, Some(i)) => controller::replay::from_record(&db, campaign, i),
                _ => Err("give --instrument (from the record) or --transcript with --lab".to_owned()),
            };
            match report {
                Ok(r) => {
                    print!("{r}");
                    if r.reproduced() { exit_code::OK } else { exit_code::INVALID_INPUT }
                }
                Err(e) => {
                    eprintln!("lab: {e}");
                    exit_code::CANNOT_RUN
                }
            }
        }
        Command::Bench { command: BenchCommand::Learn { seeds } } => {
            let options = experiments::bench::LearnOptions { seeds, ..Default::default() };
            print!("{}", experiments::bench::learn_suite(&options, &std::time::Instant::now));
            exit_code::OK
        }
        Command::Campaign { campaign, db, lab, time_scale, policy, unknown, sign_with, .. } => {
            let mut opts = CampaignOptions::new(campaign, db);
            opts.sign_with = sign_with;
            opts.lab = lab;
            opts.time_scale = time_scale;
            opts.progress = !quiet;
            opts.policy = match policy.as_str() {
                "greedy" => Policy::Greedy,
                "blind" => Policy::Planned { replan: false, budget: None },
                _ => Policy::Planned { replan: true, budget: None },
            };
            opts.unknown = if unknown == "wait" { UnknownPolicy::Wait } else { UnknownPolicy::Fail };
            campaign_command(opts)
        }
        Command::Plan { lab, file, count, set } => plan_command(&lab, &file, count, &set),
        Command::Verify { db, public_key } => verify_command(&db, public_key.as_deref()),
        Command::Key(KeyCommand::New { path }) => match controller::record::signing::write_new_key(&path) {
            Ok(public) => {
                println!("wrote the secret key to {} (keep it private)", path.display());
                println!(
                    "wrote the public key to {}: {public}",
                    controller::record::signing::public_path(&path).display()
                );
                exit_code::OK
            }
            Err(e) => {
                eprintln!("lab: {e}");
                exit_code::CANNOT_RUN
            }
        },
        Command::Init { dir } => init_command(&dir),
        Command::Status { db, campaign } => status_command(&db, campaign),
        Command::Report { db, campaign, out } => report_command(&db, campaign, &out),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "lab", &mut std::io::stdout());
            exit_code::OK
        }
        Command::Export { db, campaign, format, out } => export_command(&db, campaign, &format, &out),
        Command::Pause(a) => operator_command(&a, OperatorAction::Pause),
        Command::Resume { who, campaign, lab, time_scale, unknown, sign_with } => {
            match controller::record::Record::open(&who.db) {
                Err(controller::record::RecordError::Locked { .. }) => {
                    if sign_with.is_some() {
                        eprintln!(
                            "lab: a controller is running this campaign; it goes on signing with the key it was started \
                             with (--sign-with is for resuming a stopped campaign)"
                        );
                    }
                    operator_command(&who, OperatorAction::Resume)
                }
                Err(e) => {
                    eprintln!("lab: {e}");
                    exit_code::CANNOT_RUN
                }
                Ok(record) => {
                    drop(record);
                    let mut opts = CampaignOptions::new(PathBuf::new(), who.db.clone());
                    opts.time_scale = time_scale;
                    opts.progress = !quiet;
                    opts.unknown = if unknown == "wait" { UnknownPolicy::Wait } else { UnknownPolicy::Fail };
                    opts.sign_with = sign_with;
                    let resume = controller::run::ResumeOptions { db: who.db.clone(), campaign, lab };
                    match controller::run::resume_campaign(&resume, &opts) {
                        Ok(summary) => {
                            print_summary(&summary);
                            if summary.status == "aborted" { exit_code::ABORTED } else { exit_code::OK }
                        }
                        Err(e) => {
                            eprintln!("lab: {e}");
                            exit_code::CANNOT_RUN
                        }
                    }
                }
            }
        }
        Command::Abort(a) => operator_command(&a, OperatorAction::Abort),
        Command::Confirm { step, done, not_done, failed, vessel_at, who } => {
            let verdict = match (done, not_done, failed) {
                (true, _, _) => Verdict::Done,
                (_, true, _) => Verdict::NotDone,
                (_, _, true) => Verdict::Failed,
                _ => {
                    eprintln!("lab: say what happened: --done, --not-done or --failed");
                    return ExitCode::from(exit_code::USAGE);
                }
            };
            operator_command(&who, OperatorAction::Confirm { step, verdict, place: vessel_at })
        }
        Command::Clear { place, who } => operator_command(&who, OperatorAction::Clear { place }),
        Command::Bench {
            command: BenchCommand::Schedule { workload, best_known, generated, noise_seeds, planner_seeds },
        } => bench_schedule(&workload, &best_known, generated, noise_seeds, planner_seeds),
        Command::Bench { command: BenchCommand::Dispatch { steps, rounds, pin } } => {
            bench_dispatch(&steps, rounds, pin)
        }
        Command::Bench { command: BenchCommand::Load { instruments, experiments, in_flight, db } } => {
            bench_load(instruments, experiments, in_flight, db)
        }
        Command::Check { files } => check_command(&files),
        Command::Sim { lab, lab_out, hands } => sim_command(&lab, lab_out.as_deref(), hands),
        Command::Devices { command: DevicesCommand::List } => list_command(),
        Command::Devices { command: DevicesCommand::Probe { lab } } if !lab.to_string_lossy().ends_with(".ron") => {
            probe_port_command(&lab)
        }
        Command::Devices { command: DevicesCommand::Probe { lab } } => probe_command(&lab),
    })
}

fn color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

fn print_diagnostics(d: &Diagnostics) {
    eprint!("{}", render(d, color()));
}

fn campaign_command(opts: CampaignOptions) -> u8 {
    if opts.progress {
        eprintln!("lab: campaign {} -> {}", opts.campaign.display(), opts.db.display());
    }
    match run_campaign(&opts) {
        Ok(summary) => {
            print_summary(&summary);
            if summary.status == "aborted" { exit_code::ABORTED } else { exit_code::OK }
        }
        Err(RunError::Load(LoadError::Invalid(d))) => {
            print_diagnostics(&d);
            eprintln!(
                "lab: {} problem(s); nothing was run",
                d.iter().filter(|d| d.severity == protocols::Severity::Error).count()
            );
            exit_code::INVALID_INPUT
        }
        Err(e) => {
            eprintln!("lab: {e}");
            exit_code::CANNOT_RUN
        }
    }
}

fn print_summary(s: &Summary) {
    let hours = s.lab_seconds / 3600.0;
    println!();
    println!("campaign `{}` {} (record {}, campaign {})", s.name, s.status, s.db.display(), s.campaign_id);
    if let Some(reason) = &s.stop_reason {
        println!("  stopped early: {reason}");
    }
    println!(
        "  experiments run   {} ({} succeeded, {} failed), at most {} at once",
        s.started, s.succeeded, s.failed, s.peak_in_flight
    );
    println!("  time              {:.1} h of lab time in {:.1} s of wall time", hours, s.wall_seconds);
    for (name, why) in &s.offline {
        println!("  offline           {name}: {why}");
    }
    match &s.best {
        Some(b) => {
            println!("  best              experiment #{}", b.seq);
            for (name, value) in &b.values {
                println!("    {name:<16} {:>10.3} {}", value, s.units.get(name).map_or("", String::as_str));
            }
            println!("    {:<16} {:>10.4} {}", s.objective.0, b.objective, s.objective.1);
        }
        None => println!("  best              none: no experiment succeeded"),
    }
    if let Some(head) = &s.head {
        println!("  record head       {head}  (keep it: `lab verify` checks the record against it)");
    }
}

fn backtest_command(campaign: &Path, dataset: &Path, seed: Option<u64>) -> u8 {
    let inputs = match controller::load::read_source(campaign).map_err(|e| e.to_string()).and_then(|src| {
        experiments::load_campaign(src).map_err(|d| {
            print_diagnostics(&d);
            "the campaign file has problems".to_owned()
        })
    }) {
        Ok((c, _)) => c,
        Err(e) => {
            eprintln!("lab: {e}");
            return exit_code::INVALID_INPUT;
        }
    };
    let table = match std::fs::read_to_string(dataset)
        .map_err(|e| format!("cannot read {}: {e}", dataset.display()))
        .and_then(|t| experiments::backtest::Dataset::parse_csv(&t).map_err(|e| format!("{}: {e}", dataset.display())))
    {
        Ok(t) => t,
        Err(e) => {
            eprintln!("lab: {e}");
            return exit_code::INVALID_INPUT;
        }
    };
    let options = experiments::backtest::BacktestOptions { seed, budget: None, in_flight: None };
    match experiments::backtest::run_backtest(&inputs, &table, &options) {
        Ok(report) => {
            print!("{report}");
            exit_code::OK
        }
        Err(e) => {
            eprintln!("lab: {e}");
            exit_code::INVALID_INPUT
        }
    }
}

fn init_command(dir: &Path) -> u8 {
    match controller::init::init(dir) {
        Ok(files) => {
            println!("made the lab folder {}:", dir.display());
            for f in &files {
                println!("  {}", f.display());
            }
            let campaign = dir.join(controller::init::CAMPAIGN);
            let db = dir.join("lab.db");
            println!();
            println!("Every instrument is simulated, so it runs now:");
            println!("  lab check {}", dir.join("*.ron").display());
            println!("  lab campaign {} --db {}", campaign.display(), db.display());
            println!("  lab report --db {} --out {}", db.display(), dir.join("report").display());
            println!("GUIDE.md explains every field; change one at a time and `lab check` it.");
            exit_code::OK
        }
        Err(e) => {
            eprintln!("lab: {e}");
            exit_code::CANNOT_RUN
        }
    }
}

fn status_command(db: &Path, campaign: Option<i64>) -> u8 {
    match controller::status::status_text(db, campaign) {
        Ok(text) => {
            print!("{text}");
            exit_code::OK
        }
        Err(e) => {
            eprintln!("lab: {e}");
            exit_code::CANNOT_RUN
        }
    }
}

fn report_command(db: &Path, campaign: Option<i64>, out: &Path) -> u8 {
    match controller::report::write_report(db, campaign, out) {
        Ok(w) => {
            println!("wrote the report of campaign {} to {}", w.campaign, w.page.display());
            for f in w.files.iter().skip(1) {
                println!("  {}", f.display());
            }
            exit_code::OK
        }
        Err(e) => {
            eprintln!("lab: {e}");
            exit_code::CANNOT_RUN
        }
    }
}

fn verify_command(db: &Path, public_key: Option<&str>) -> u8 {
    let trusted = match public_key.map(controller::record::signing::read_public_key).transpose() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("lab: {e}");
            return exit_code::USAGE;
        }
    };
    match controller::record::verify::verify_with(db, trusted.as_ref()) {
        Ok(r) if r.is_intact() => {
            println!(
                "{}: intact. {} journal rows in an unbroken hash chain, {} checkpoint{}, {} table rows match the journal.",
                db.display(),
                r.journal_rows,
                r.checkpoints,
                if r.checkpoints == 1 { "" } else { "s" },
                r.rows_compared
            );
            for key in &r.signers {
                println!("checkpoints signed by key {key}");
            }
            if r.signed == 0 && trusted.is_none() {
                println!(
                    "the checkpoints are not signed: whoever can edit the file could rewrite them with the chain \
                     (compare the head below with the one the campaign printed, or sign campaigns: `lab key new`)"
                );
            }
            match (trusted.is_some(), r.unproven) {
                (true, Some((from, to))) => println!(
                    "signed by the key given up to journal row {}; rows {from} to {to} were written since by the \
                     controller running now, and its next checkpoint signs them",
                    from - 1
                ),
                (true, None) => println!("signed by the key given up to the last journal row"),
                _ => {}
            }
            println!("head {}", r.head);
            exit_code::OK
        }
        Ok(r) => {
            println!("{}: NOT intact ({} problem(s)):", db.display(), r.problems.len());
            for p in &r.problems {
                println!("  {p}");
            }
            exit_code::INVALID_INPUT
        }
        Err(e) => {
            eprintln!("lab: {e}");
            exit_code::CANNOT_RUN
        }
    }
}

fn export_command(db: &Path, campaign: Option<i64>, format: &str, out: &Path) -> u8 {
    let format = if format == "parquet" {
        controller::record::export::Format::Parquet
    } else {
        controller::record::export::Format::Csv
    };
    match controller::record::export::export(db, campaign, format, out) {
        Ok(n) => {
            println!("wrote {n} experiments to {}", out.display());
            exit_code::OK
        }
        Err(e) => {
            eprintln!("lab: {e}");
            exit_code::CANNOT_RUN
        }
    }
}

fn operator_command(a: &OperatorArgs, action: OperatorAction) -> u8 {
    match controller::operator::request(&a.db, &action, &a.by, &a.reason) {
        Ok((id, Some(campaign))) => {
            println!("request {id} sent to campaign {campaign}; the controller carries it out within a second");
            exit_code::OK
        }
        Ok((id, None)) => {
            println!("request {id} recorded; no campaign is running, so it applies when one resumes");
            exit_code::OK
        }
        Err(e) => {
            eprintln!("lab: {e}");
            exit_code::CANNOT_RUN
        }
    }
}

fn plan_command(lab: &Path, file: &Path, count: usize, set: &[String]) -> u8 {
    match controller::plan::plan_file(lab, file, count, set) {
        Ok(r) => {
            print!("{r}");
            exit_code::OK
        }
        Err(controller::plan::PlanError::Invalid(d)) => {
            print_diagnostics(&d);
            exit_code::INVALID_INPUT
        }
        Err(controller::plan::PlanError::Other(e)) => {
            eprintln!("lab: {e}");
            exit_code::INVALID_INPUT
        }
    }
}

fn bench_schedule(workloads: &[PathBuf], best: &[f64], generated: u64, noise_seeds: u64, planner_seeds: u64) -> u8 {
    for (i, path) in workloads.iter().enumerate() {
        let w = match std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|t| controller::workload::parse(&t))
        {
            Ok(w) => w,
            Err(e) => {
                eprintln!("lab: {}: {e}", path.display());
                return exit_code::INVALID_INPUT;
            }
        };
        print!("{}", controller::bench::schedule(&w, best.get(i).copied(), noise_seeds, planner_seeds));
    }
    for seed in 0..generated {
        let w = controller::workload::generate(20, 8, seed);
        print!("{}", controller::bench::schedule(&w, None, noise_seeds.min(3), planner_seeds));
    }
    exit_code::OK
}

fn bench_dispatch(sizes: &[usize], rounds: Option<usize>, pin: bool) -> u8 {
    let cores = if pin {
        let Some(cores) = controller::cores::for_this_thread() else {
            eprintln!("lab: --pin needs two cores this process may run on; run without it");
            return exit_code::CANNOT_RUN;
        };
        // The writer is started from this thread, so it would stay on the scheduler's core if it could not be moved
        // (the worst placement there is): a thread of its own tries first.
        let writer = std::thread::spawn(move || controller::cores::pin_this_thread(cores.writer)).join();
        let pinned = writer.unwrap_or_else(|_| Err("the thread that tried the writer's core failed".into()));
        if let Err(e) = pinned.and_then(|()| controller::cores::pin_this_thread(cores.scheduler)) {
            eprintln!("lab: {e}; run without --pin");
            return exit_code::CANNOT_RUN;
        }
        println!("scheduler on core {}, record writer on core {} (--pin)", cores.scheduler, cores.writer);
        Some(cores)
    } else {
        println!("scheduler and record writer where the operating system puts them (--pin keeps them on a core each)");
        None
    };
    println!(
        "{:>8} {:>7} {:>7} {:>9} {:>8} {:>8} {:>26} {:>8} {:>8} {:>26} {:>8} {:>9} {:>10}",
        "steps",
        "frames",
        "rounds",
        "bare ms",
        "us/step",
        "rec.",
        "recording costs (range)",
        "cpu us",
        "rec.",
        "recording costs cpu",
        "events",
        "events/s",
        "durable ms"
    );
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let spread = |v: &[f64]| {
        let (lo, hi) = v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &c| (l.min(c), h.max(c)));
        let mut sorted = v.to_vec();
        format!("{:+.1}% ({:+.1} to {:+.1}%)", median(&mut sorted) * 100.0, lo * 100.0, hi * 100.0)
    };
    for &n in sizes {
        // A run of 1,000 steps lasts 2.5 ms, so one scheduling hiccup weighs on one round; rounds alternate bare and
        // recorded runs so that both see the same machine, and medians leave the hiccups out.
        let rounds = rounds.unwrap_or((200_000 / n.max(1)).clamp(5, 100)).max(1);
        let (mut bare_ms, mut bare_us, mut rec_us, mut costs) = (vec![], vec![], vec![], vec![]);
        let (mut bare_cpu, mut rec_cpu, mut cpu_costs, mut rates, mut durable) =
            (vec![], vec![], vec![], vec![], vec![]);
        let (mut steps, mut frames, mut events) = (0, 0, 0);
        for round in 0..rounds {
            let (bare, per, cpu) = controller::bench::dispatch(n, controller::record::Recorder::null(), None);
            (steps, frames) = (bare.steps, bare.frames);
            bare_ms.push(bare.decision.as_secs_f64() * 1e3);
            let dir = std::env::temp_dir().join(format!("lab-bench-{}-{n}-{round}", std::process::id()));
            let _ = std::fs::create_dir_all(&dir);
            let recorded = match controller::record::Record::open(&dir.join("bench.db")) {
                Ok(mut rec) => {
                    if let Some(cores) = cores {
                        rec.keep_writer_on(cores.writer);
                    }
                    let ids = rec.begin_campaign(&controller::record::CampaignRow::bench()).ok();
                    let t0 = std::time::Instant::now();
                    let (recorder, writer) = rec.start_writer();
                    let (_, per, cpu) = controller::bench::dispatch(n, recorder.clone(), ids);
                    recorder.flush();
                    drop(recorder);
                    // Events per second: everything the writer committed, over the run and the writer's catching up.
                    let written = writer.finish().unwrap_or(0);
                    Some((per, cpu, written, t0.elapsed().as_secs_f64()))
                }
                Err(e) => {
                    eprintln!("lab: cannot open a record for the benchmark: {e}");
                    None
                }
            };
            let _ = std::fs::remove_dir_all(&dir);
            let Some((rec_per, rec_c, written, secs)) = recorded else { return exit_code::CANNOT_RUN };
            bare_us.push(per);
            rec_us.push(rec_per);
            costs.push(rec_per / per - 1.0);
            bare_cpu.push(cpu);
            rec_cpu.push(rec_c);
            cpu_costs.push(rec_c / cpu - 1.0);
            events = written;
            rates.push(written as f64 / secs);
            durable.push(secs * 1e3);
        }
        println!(
            "{:>8} {:>7} {:>7} {:>9.2} {:>8.2} {:>8.2} {:>26} {:>8.2} {:>8.2} {:>26} {:>8} {:>9.0} {:>10.1}",
            steps,
            frames,
            rounds,
            median(&mut bare_ms),
            median(&mut bare_us),
            median(&mut rec_us),
            spread(&costs),
            median(&mut bare_cpu),
            median(&mut rec_cpu),
            spread(&cpu_costs),
            events,
            median(&mut rates),
            median(&mut durable)
        );
    }
    exit_code::OK
}

fn bench_load(instruments: usize, experiments: usize, in_flight: usize, db: Option<PathBuf>) -> u8 {
    let dir = std::env::temp_dir().join(format!("lab-bench-load-{}", std::process::id()));
    let path = match &db {
        Some(p) => p.clone(),
        None => {
            if let Err(e) = std::fs::create_dir_all(&dir) {
                eprintln!("lab: cannot make {} for the record ({e}); give one with --db", dir.display());
                return exit_code::CANNOT_RUN;
            }
            dir.join("load.db")
        }
    };
    if db.is_some() && path.exists() {
        eprintln!(
            "lab: {} exists; the load benchmark writes a fresh record (remove it or pick another)",
            path.display()
        );
        return exit_code::CANNOT_RUN;
    }
    let result = controller::bench::load(instruments, experiments.max(1), in_flight.max(1), &path);
    if db.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    match result {
        Ok(r) => {
            let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
            let rss = |b: Option<u64>| b.map_or("n/a".to_owned(), |b| format!("{:.0} MiB", mib(b)));
            println!(
                "load: {instruments} instruments, {experiments} experiments, {in_flight} in flight, greedy, 20% noise"
            );
            println!(
                "  experiments completed  {} ({})",
                r.run.experiments,
                if r.run.completed { "all" } else { "NOT all" }
            );
            println!("  steps run              {}", r.run.steps);
            println!("  lab time               {:.1} days", r.run.makespan / 86400.0);
            println!(
                "  wall time              {:.1} s (scheduler {:.1} s, the rest the record)",
                r.wall.as_secs_f64(),
                r.run.decision.as_secs_f64()
            );
            println!("  controller per step    {:.1} us", r.wall.as_secs_f64() * 1e6 / r.run.steps.max(1) as f64);
            println!(
                "  peak memory (RSS)      {} for the run, {} with lab verify",
                rss(r.peak_run),
                rss(controller::bench::peak_rss())
            );
            println!("  record                 {:.0} MiB, {} journal rows", mib(r.db_bytes), r.journal_rows);
            println!(
                "  lab verify             {:.1} s, {}",
                r.verify.as_secs_f64(),
                if r.intact { "intact" } else { "PROBLEMS" }
            );
            if r.run.completed && r.intact { exit_code::OK } else { exit_code::CANNOT_RUN }
        }
        Err(e) => {
            eprintln!("lab: the load benchmark failed: {e}");
            exit_code::CANNOT_RUN
        }
    }
}

fn check_command(files: &[PathBuf]) -> u8 {
    let mut all = Diagnostics::new();
    let mut ok = 0;
    for path in files {
        match check_file(path) {
            Ok((line, warnings)) => {
                ok += 1;
                println!("ok  {}  {line}", path.display());
                all.extend(warnings);
            }
            Err(CheckError::Invalid(d)) => all.extend(d),
            Err(CheckError::Other(msg)) => {
                eprintln!("lab: {}: {msg}", path.display());
                all.push(protocols::Diagnostic::error(
                    "L0000",
                    &protocols::SourceFile::new(path.display().to_string(), ""),
                    0..0,
                    msg,
                ));
            }
        }
    }
    print_diagnostics(&all);
    let errors = all.iter().filter(|d| d.severity == protocols::Severity::Error).count();
    if errors > 0 {
        eprintln!("lab: {errors} problem(s) in {} of {} file(s)", files.len() - ok, files.len());
        exit_code::INVALID_INPUT
    } else {
        exit_code::OK
    }
}

/// Loads a lab file and starts an I/O runtime, or prints why not and gives the exit code.
fn lab_and_runtime(path: &Path) -> Result<(devices::Lab, tokio::runtime::Runtime), u8> {
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

fn sim_command(path: &Path, lab_out: Option<&Path>, hands: bool) -> u8 {
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

fn list_command() -> u8 {
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

/// `lab devices probe PORT`: the probe's report, exit 0 if anything answered.
fn probe_port_command(port: &Path) -> u8 {
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

fn probe_command(path: &Path) -> u8 {
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
