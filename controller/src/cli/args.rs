//! The `lab` command line: every command, option and help text, as clap types.
//!
//! Only types live here; what each command does is in the family module that `main.rs` dispatches to. The help
//! texts are part of the interface (`controller/tests/cli.rs` snapshots them), so each command's doc comment ends
//! with examples a technician can copy.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The examples `lab --help` ends with: the first ten minutes, in order.
pub const EXAMPLES: &str = "\
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
pub struct Cli {
    /// Say more on stderr: -v what the controller decides, -vv every detail.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = "Global options")]
    pub verbose: u8,
    /// Say less: errors only, and no live view (a campaign still prints its summary).
    #[arg(short, long, global = true, conflicts_with = "verbose", help_heading = "Global options")]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
        /// Lab seconds per wall second (simulated labs only): runs lab time against the wall at this pace,
        /// overriding the lab file. Without it, a lab simulated in this process runs as fast as it computes, its lab
        /// time the sum of its physical durations (the same every run of the same files and seeds).
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
        /// An experiment whose next step can only take its vessel to places a lost vessel blocks: `wait` (it waits
        /// for a person to look and `lab clear` the place; nothing of the budget is spent meanwhile) or `fail` (it
        /// fails as stranded, so an unattended lab goes on with what it can do).
        #[arg(long, default_value = "wait", value_parser = ["wait", "fail"])]
        blocked: String,
        /// A step in doubt is first settled from what its instrument reports when read back (a plate still heating
        /// carries on, a finished stroke is done); `off` leaves every step in doubt to `--unknown`.
        #[arg(long, default_value = "on", value_parser = ["on", "off"])]
        read_back: String,
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
    ///
    /// Example: lab report --hub postgresql://reader@hub.example/lab --fleet-campaign demo --out report
    Report {
        /// The record.
        #[arg(long, default_value = "lab.db")]
        db: PathBuf,
        /// The campaign (default: the latest).
        #[arg(long, conflicts_with = "fleet_campaign")]
        campaign: Option<i64>,
        /// With --fleet-campaign: the hub to read it from.
        #[arg(long, value_name = "URL", env = "LAB_HUB", hide_env_values = true)]
        hub: Option<String>,
        /// A fleet campaign, read from the hub instead of a record: every workcell's experiments, in the fleet's
        /// order.
        #[arg(long, value_name = "NAME", requires = "hub")]
        fleet_campaign: Option<String>,
        /// The folder to write into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Serve the record in a browser: a live page per campaign, every experiment, step and exchange, the record's
    /// health; or a fleet's hub, every workcell at once.
    ///
    /// A campaign's live page shows its instruments and what each does, the Gantt chart growing, the best so far,
    /// the experiments in flight, steps in doubt, blocked places, reagent stock and warnings, and takes pause, resume,
    /// abort, confirm, clear and restock; the record's health page shows `lab verify`'s result and the signed
    /// checkpoints.
    ///
    /// It reads the record and never writes it, so it runs beside a campaign and costs it nothing. It listens on
    /// 127.0.0.1 (this machine only) unless told otherwise, and prints a link with a token: viewing needs no token
    /// from this machine, acting does (and is recorded with the operator's name and reason, as `lab pause` is).
    ///
    /// Example: lab serve --db lab.db
    ///
    /// Example: lab serve --db lab.db --addr 0.0.0.0:8765 --allow-remote --tls-cert lab.crt --tls-key lab.key
    ///
    /// Example: LAB_HUB=postgresql://reader@hub.example/lab lab serve --hub
    Serve {
        /// The record.
        #[arg(long, default_value = "lab.db")]
        db: PathBuf,
        /// Where to listen: an address and a port (port 0: any free one).
        #[arg(long, default_value = "127.0.0.1:8765")]
        addr: std::net::SocketAddr,
        /// Listen on an address other machines can reach. They need the token to look as well as to act; give a
        /// certificate too, so the token never crosses the network in clear.
        #[arg(long)]
        allow_remote: bool,
        /// Serve over TLS with this certificate chain (PEM).
        #[arg(long, value_name = "PEM", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The certificate's private key (PEM).
        #[arg(long, value_name = "PEM", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// The lab's public key (a `.pub` file from `lab key new`, or its 64 hex digits): the health page checks
        /// every checkpoint's signature against it.
        #[arg(long, value_name = "KEY", conflicts_with = "hub")]
        public_key: Option<String>,
        /// Serve a fleet's hub instead of --db: every fleet campaign with every workcell's experiments, and the
        /// workcells' state, read-only (actions are taken on each workcell). Without a URL, the one in LAB_HUB
        /// (which keeps a password off the command line).
        #[arg(long, value_name = "URL", num_args = 0..=1, default_missing_value = "", conflicts_with = "db")]
        hub: Option<String>,
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
    Plan(PlanArgs),
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
    /// Run one campaign across several workcells with one learner, on a PostgreSQL hub (FLEET.md).
    ///
    /// The hub arbitrates proposals and keeps a verified copy of every workcell's record; `lab fleet learn` runs
    /// the campaign's learner, `lab workcell` runs a lab PC as one of the fleet's workcells. The hub is named by a
    /// postgresql:// URL, in --hub or in LAB_HUB (which keeps a password off the command line); TLS is used where
    /// the URL asks (`?sslmode=require&sslrootcert=ca.pem`). Nothing prints the password.
    ///
    /// Example: lab fleet init --hub postgresql://lab@hub.example/lab
    ///
    /// Example: lab fleet learn experiments/campaigns/demo.campaign.ron --hub postgresql://lab@hub.example/lab
    #[command(subcommand)]
    Fleet(FleetCommand),
    /// Run this lab PC as a workcell of a fleet: claim the hub's proposals this lab can run, run them with the same
    /// scheduler and record as `lab campaign`, and ship the record's journal to the hub.
    ///
    /// The record (--db) stays the source of truth: a workcell that loses the hub keeps running what it claimed and
    /// ships what it recorded when the hub answers again; one stopped by a crash continues with `lab workcell` again.
    /// It runs the fleet's campaigns its lab can run, one after another, and ends when none is left.
    ///
    /// Example: lab workcell --hub postgresql://lab@hub.example/lab --lab devices/labs/sim.lab.ron --db lab.db
    Workcell {
        #[command(flatten)]
        hub: HubArg,
        /// This workcell's lab file.
        #[arg(long)]
        lab: PathBuf,
        /// The record; created if missing.
        #[arg(long, default_value = "lab.db")]
        db: PathBuf,
        /// This workcell's name in the fleet (default: the lab file's name).
        #[arg(long)]
        name: Option<String>,
        /// Run only this fleet campaign (default: every campaign this lab can run).
        #[arg(long, value_name = "NAME")]
        campaign: Option<String>,
        /// Claims to hold beyond what the scheduler asks for, so work goes on through a short outage of the hub.
        #[arg(long, default_value_t = 1)]
        prefetch: usize,
        /// Lab seconds per wall second (simulated labs only): runs lab time against the wall at this pace,
        /// overriding the lab file. Without it, a lab simulated in this process runs as fast as it computes, its lab
        /// time the sum of its physical durations (the same every run of the same files and seeds).
        #[arg(long)]
        time_scale: Option<f64>,
        /// As for `lab campaign`.
        #[arg(long, default_value = "fail", value_parser = ["fail", "wait"])]
        unknown: String,
        /// As for `lab campaign`. (A place a lost vessel blocks always makes the workcell wait for `lab clear`.)
        #[arg(long, default_value = "on", value_parser = ["on", "off"])]
        read_back: String,
        /// Sign the record's checkpoints with this key.
        #[arg(long, value_name = "KEY")]
        sign_with: Option<PathBuf>,
        /// How long to wait at the end for the hub to take the whole journal, in seconds (default: until it has).
        #[arg(long, value_name = "SECONDS")]
        ship_wait: Option<f64>,
        /// Only ship the record's journal to the hub and end: claim nothing, run nothing (a stopped workcell's
        /// record, before `lab fleet retire`).
        #[arg(long)]
        ship_only: bool,
        /// Run every step on a simulation of its expected duration instead of the instruments, which are never
        /// opened: each step takes no wall time, every reading is 0, and the record says so. For rehearsing a fleet
        /// and measuring its own cost; starts only on a record with nothing to resume.
        #[arg(long, conflicts_with = "ship_only")]
        instant: bool,
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
    ///
    /// Example: lab export --hub postgresql://reader@hub.example/lab --fleet-campaign demo --out results.csv
    Export {
        /// The record.
        #[arg(long, default_value = "lab.db")]
        db: PathBuf,
        /// Only this campaign (default: all).
        #[arg(long, conflicts_with = "fleet_campaign")]
        campaign: Option<i64>,
        /// With --fleet-campaign: the hub to read it from.
        #[arg(long, value_name = "URL", env = "LAB_HUB", hide_env_values = true)]
        hub: Option<String>,
        /// A fleet campaign, read from the hub instead of a record: every workcell's experiments, in the fleet's
        /// order.
        #[arg(long, value_name = "NAME", requires = "hub")]
        fleet_campaign: Option<String>,
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
        /// Lab seconds per wall second (simulated labs only): runs lab time against the wall at this pace; default:
        /// a lab simulated in this process runs as fast as it computes, timeouts counted at the campaign's scale.
        #[arg(long)]
        time_scale: Option<f64>,
        /// Steps left in doubt by the stop are never repeated; once their instrument is reconciled, `fail` fails
        /// their experiments (unattended labs), `wait` waits for an operator's `lab confirm`.
        #[arg(long, default_value = "fail", value_parser = ["fail", "wait"])]
        unknown: String,
        /// An experiment whose next step can only take its vessel to places a lost vessel blocks: `wait` for a
        /// person's `lab clear`, or `fail` as stranded.
        #[arg(long, default_value = "wait", value_parser = ["wait", "fail"])]
        blocked: String,
        /// Settle steps in doubt from what their instruments report when read back (`on`), or leave them all to
        /// `--unknown` (`off`).
        #[arg(long, default_value = "on", value_parser = ["on", "off"])]
        read_back: String,
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
    /// Say that a bottle was refilled: experiments held for its reagent start again. The volume is what was added,
    /// or, with --set, what the bottle now holds above its dead volume.
    ///
    /// Example: lab restock C2 "10 mL" --by "A. Technician" --reason "new stock made up"
    Restock {
        /// The bottle: a reagent held by one bottle (`C2`), or the bottle's key (`pump_a`, `valve:2`).
        bottle: String,
        /// A volume with its unit, such as "10 mL" or "500 uL"; never negative.
        #[arg(allow_hyphen_values = true)]
        volume: String,
        /// The volume is what the bottle holds now above its dead volume, not what was added.
        #[arg(long)]
        set: bool,
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
pub struct OperatorArgs {
    /// The record of the campaign.
    #[arg(long, default_value = "lab.db")]
    pub db: PathBuf,
    /// Who asks (recorded).
    #[arg(long, default_value_t = default_user())]
    pub by: String,
    /// Why (recorded).
    #[arg(long, default_value = "no reason given")]
    pub reason: String,
}

/// The operator recorded when `--by` is not given: the login name.
pub fn default_user() -> String {
    std::env::var("USER").unwrap_or_else(|_| "operator".to_owned())
}

#[derive(Subcommand)]
pub enum KeyCommand {
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
pub enum BenchCommand {
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
    /// Also the reaction tables it was not tuned on (the whole Buchwald-Hartwig study as five tables, and a
    /// Suzuki-Miyaura table), and the landscapes: ridge, Michalewicz, needle and kinetics; continuous,
    /// table-restricted and noisy.
    ///
    /// Example: lab bench learn --seeds 3 --landscapes ridge,kinetics/table
    Learn {
        /// Seeds per figure (medians over them).
        #[arg(long, default_value_t = 10)]
        seeds: usize,
        /// Only these landscapes, by name (such as `ridge`, `needle/table/noisy`); `none` runs none.
        #[arg(long, value_delimiter = ',')]
        landscapes: Vec<String>,
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
    /// `lab serve` on a large record: time to first byte and full load of its pages, the server's memory, and how
    /// soon an open live page has a change; then the controller's dispatch rate with and without a live page open on
    /// the record it writes.
    ///
    /// Example: lab bench load --db big.db
    ///
    /// Example: lab bench serve --db big.db --browser /usr/bin/chromium
    Serve {
        /// A large record, as `lab bench load --db FILE` writes; its latest campaign's pages are timed.
        #[arg(long)]
        db: PathBuf,
        /// Rounds of page loads (medians over them).
        #[arg(long, default_value_t = 20)]
        rounds: usize,
        /// Rounds of the dispatch comparison, each a load run with a page open and one without (0: skip it).
        #[arg(long, default_value_t = 3)]
        dispatch_rounds: usize,
        /// Experiments in each load run of the dispatch comparison.
        #[arg(long, default_value_t = 10_000)]
        experiments: usize,
        /// Open the live page in this headless browser (Chromium) in the dispatch comparison, instead of a client
        /// that follows the page's stream as the page's script does.
        #[arg(long, value_name = "PATH")]
        browser: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum DevicesCommand {
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

/// `lab plan`'s arguments.
#[derive(Args)]
pub struct PlanArgs {
    /// The lab file.
    pub lab: PathBuf,
    /// A protocol (`*.protocol.ron`) or a campaign (`*.campaign.ron`).
    pub file: PathBuf,
    /// For a protocol: how many experiments to plan at once.
    #[arg(long, default_value_t = 1)]
    pub count: usize,
    /// For a protocol: a parameter value, as NAME=VALUE in the parameter's unit (repeatable).
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub set: Vec<String>,
    /// Fit each instrument's durations (ramp and cooling rates, transfer speed, strokes, fixed times) to the runs
    /// this record holds before planning, and say how much the estimate moved (repeatable).
    #[arg(long, value_name = "DB")]
    pub calibrate: Vec<PathBuf>,
    /// For a campaign whose proposer chooses from results (a Gaussian process): how many times to draw what the plan
    /// cannot know (in a simulated lab, the spectrometers' noise and when each step ends; else the results); the
    /// plan gives the median and the lowest and highest draw.
    #[arg(long, default_value_t = controller::plan::DEFAULT_DRAWS as u16, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub draws: u16,
    /// Print the plan as JSON (lab seconds; every draw's figure) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The hub a fleet command talks to.
#[derive(Args)]
pub struct HubArg {
    /// The hub: a postgresql:// URL (LAB_HUB keeps its password off the command line).
    #[arg(long = "hub", value_name = "URL", env = "LAB_HUB", hide_env_values = true)]
    pub url: String,
}

/// `lab fleet ...`.
#[derive(Subcommand)]
pub enum FleetCommand {
    /// Create the hub's schema, or migrate it to this lab's version (a hub from a newer lab is refused).
    ///
    /// The database must exist and be UTF-8; the user needs the right to create schemas in it.
    ///
    /// Example: lab fleet init --hub postgresql://lab@hub.example/lab
    Init {
        #[command(flatten)]
        hub: HubArg,
    },
    /// Run a campaign's learner for the whole fleet; a second one started for the same campaign waits as a standby
    /// and takes over if the first one stops.
    ///
    /// The campaign is published to the hub with its protocol; a campaign of the same name published from another
    /// file is refused. The learner ends when the campaign is finished and every proposal settled.
    ///
    /// Example: lab fleet learn experiments/campaigns/demo.campaign.ron --hub postgresql://lab@hub.example/lab
    Learn {
        /// The campaign file.
        campaign: PathBuf,
        #[command(flatten)]
        hub: HubArg,
        /// This learner's name, as `lab fleet status` shows it (default: host and process id).
        #[arg(long)]
        name: Option<String>,
    },
    /// Show the fleet: each campaign's progress, each workcell's silence, journal head, claims and results.
    ///
    /// Example: lab fleet status --hub postgresql://reader@hub.example/lab
    Status {
        #[command(flatten)]
        hub: HubArg,
        /// Only this campaign.
        #[arg(long, value_name = "NAME")]
        campaign: Option<String>,
    },
    /// Retire a workcell that will not act again (lost, broken): its claims it never started open again for others;
    /// those it started wait for `lab fleet settle`. If it comes back, what it ships is flagged as a conflict.
    ///
    /// Example: lab fleet retire wc-b --hub postgresql://lab@hub.example/lab --by "A. Operator" --reason "PC died"
    Retire {
        /// The workcell.
        workcell: String,
        #[command(flatten)]
        hub: HubArg,
        /// Who decides.
        #[arg(long, default_value = "operator")]
        by: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Settle a proposal a retired workcell started: it ran (`--done`: its result is lost with the workcell) or it
    /// did not (`--not-done`: it opens again for another workcell).
    ///
    /// Example: lab fleet settle demo 17 --not-done --hub postgresql://lab@hub.example/lab --reason "vial was empty"
    Settle {
        /// The fleet campaign.
        campaign: String,
        /// The proposal's number.
        seq: i64,
        /// It ran.
        #[arg(long, conflicts_with = "not_done", required_unless_present = "not_done")]
        done: bool,
        /// It did not run.
        #[arg(long)]
        not_done: bool,
        #[command(flatten)]
        hub: HubArg,
        /// Who decides.
        #[arg(long, default_value = "operator")]
        by: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Give a machine or a person its own login at the hub: a workcell's login may ship and claim only as that
    /// workcell (row-level security), a learner's may publish and tell, a reader's may only read.
    ///
    /// Prints a new password once (the hub keeps only a SCRAM verifier of it), unless `--password-file` gives one.
    /// Run again to give the login a new password. Needs a hub user with CREATEROLE.
    ///
    /// Example: lab fleet grant wc-b --as workcell --hub postgresql://admin@hub.example/lab
    Grant {
        /// The login (for a workcell: the workcell's name, as `lab workcell --name` gives it).
        login: String,
        /// What it may do.
        #[arg(long = "as", value_name = "ROLE", value_parser = ["workcell", "learner", "reader"])]
        role: String,
        /// Read the password from this file instead of making one.
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
        #[command(flatten)]
        hub: HubArg,
    },
    /// Verify the hub's copy of each workcell's record: its hash chain, its checkpoints (and their signatures), and
    /// the hub's tables against a replay of the journal, as `lab verify` checks a lab.db.
    ///
    /// With `--public-key`, every workcell's checkpoints must be signed by that key (or give one key per workcell
    /// with `--public-key WORKCELL=KEY`).
    ///
    /// Example: lab fleet verify --hub postgresql://reader@hub.example/lab --public-key lab.key.pub
    Verify {
        #[command(flatten)]
        hub: HubArg,
        /// Only this workcell.
        #[arg(long, value_name = "NAME")]
        workcell: Option<String>,
        /// The public key (hex, or a file holding it) that must have signed the checkpoints; `WORKCELL=KEY` for one
        /// workcell's.
        #[arg(long, value_name = "KEY")]
        public_key: Vec<String>,
    },
}
