//! `cenote-bench`: measures cenote's pools against their peers.
//!
//! ```text
//! cenote-bench [--smoke] [--json FILE] [--svg DIR] [--runs N] [--quiet] [SUBCOMMAND]
//! ```
//!
//! Without a subcommand every set runs (`workers` + `seeds` + `objects` +
//! `tasks` + `resources`). Every measurement runs in a fresh child process (see [`harness`]); the results
//! are printed as one table per experiment and optionally written as JSON and
//! SVG charts (see [`report`]).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};

mod alloc;
mod experiments;
mod harness;
mod peers;
mod report;

use experiments::seeds::SeedOpts;
use experiments::Experiment;
use harness::{Runner, Settings};

/// Every heap allocation goes through the counting allocator; it counts only
/// while an experiment asks it to.
#[global_allocator]
static GLOBAL: alloc::CountingAlloc = alloc::CountingAlloc;

/// Benchmarks cenote's pools against their peers, each measurement in a
/// fresh child process.
#[derive(Parser, Debug)]
#[command(name = "cenote-bench", version, about, long_about = None)]
struct Cli {
    /// Run every experiment at a tiny size, once (a quick check that all
    /// works).
    #[arg(long, global = true)]
    smoke: bool,

    /// Write the results to FILE as JSON.
    #[arg(long, global = true, value_name = "FILE")]
    json: Option<PathBuf>,

    /// Write SVG charts into DIR.
    #[arg(long, global = true, value_name = "DIR")]
    svg: Option<PathBuf>,

    /// Repetitions per measurement (at most; see --row-budget); rows report
    /// medians. --smoke runs once.
    #[arg(long, global = true, value_name = "N", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,

    /// No progress bar.
    #[arg(long, global = true)]
    quiet: bool,

    /// Kill a measurement that runs longer than SECS; its row fails
    /// [default: 120, with --smoke 30].
    #[arg(long, global = true, value_name = "SECS")]
    timeout: Option<f64>,

    /// Start no further run of a row that would likely take its runs past
    /// SECS in total (slow rows get fewer runs).
    #[arg(long, global = true, value_name = "SECS", default_value_t = 4.0)]
    row_budget: f64,

    /// Stop a peer's run once it takes K times as long as cenote in the same
    /// scenario (but not before 6 s); its row fails. 0: only --timeout.
    #[arg(long, global = true, value_name = "K", default_value_t = 5.0)]
    slow_limit: f64,

    /// Only measure rows whose "experiment scenario impl" contains TEXT
    /// (repeatable; a row matching any is kept).
    #[arg(long, global = true, value_name = "TEXT")]
    filter: Vec<String>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Worker-pool experiments: throughput, FnPool, idle CPU, wake latency.
    Workers,
    /// Seed experiments: gopool's no-pool-versus-pool test, ants' 100k sleeping jobs (threads, and futures).
    Seeds(SeedArgs),
    /// Object-pool experiments: get + put cycles against plain allocation and peer pools.
    Objects,
    /// Async experiments: tasks::Pool against tokio::spawn, Semaphore + spawn, buffer_unordered,
    /// JoinSet; cenote's semaphore against tokio's and Mutex + Condvar.
    Tasks,
    /// Resource-pool experiments: resources::Pool against deadpool (managed, unmanaged), bb8,
    /// mobc, qp (tasks) and r2d2 (threads), uncontended and contended.
    Resources,
    /// Runs one measurement (used by the harness; not for people).
    #[command(name = "__child", hide = true)]
    Child {
        /// The measurement, as JSON.
        spec: String,
    },
}

#[derive(Args, Debug, Clone)]
struct SeedArgs {
    /// Also run seed002 at 10M tasks (pools only).
    #[arg(long)]
    full: bool,

    /// seed002: make every small task sleep N µs.
    #[arg(long, value_name = "N", default_value_t = 0)]
    small_sleep_us: u64,

    /// seed002: size of every pool (100 is the size in the seed's own
    /// example, `SetGopool(100, ...)`).
    #[arg(long, value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..))]
    pool_size: u64,

    /// seed001: every job sleeps MS milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 10)]
    sleep_ms: u64,

    /// seed001: stack size of every thread in KiB (0: platform default).
    #[arg(long, value_name = "KIB", default_value_t = 64)]
    stack_kib: usize,
}

impl SeedArgs {
    /// The defaults declared above, for runs without the `seeds` subcommand.
    fn defaults() -> Self {
        use clap::FromArgMatches;
        let matches =
            SeedArgs::augment_args(clap::Command::new("seeds")).get_matches_from(["seeds"]);
        SeedArgs::from_arg_matches(&matches).expect("the defaults parse")
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Child { spec }) = &cli.command {
        harness::child_main(spec);
    }

    let (workers, seeds, objects, tasks, resources) = match &cli.command {
        None => (true, Some(SeedArgs::defaults()), true, true, true),
        Some(Command::Workers) => (true, None, false, false, false),
        Some(Command::Seeds(args)) => (false, Some(args.clone()), false, false, false),
        Some(Command::Objects) => (false, None, true, false, false),
        Some(Command::Tasks) => (false, None, false, true, false),
        Some(Command::Resources) => (false, None, false, false, true),
        Some(Command::Child { .. }) => unreachable!("handled above"),
    };
    let mut plan: Vec<Experiment> = Vec::new();
    if workers {
        plan.extend(experiments::workers::plan(cli.smoke));
    }
    if let Some(args) = seeds {
        let opts = SeedOpts {
            full: args.full,
            small_sleep_us: args.small_sleep_us,
            pool_size: usize::try_from(args.pool_size).unwrap_or(usize::MAX),
            sleep_ms: args.sleep_ms,
            stack_kib: args.stack_kib,
        };
        plan.extend(experiments::seeds::plan(cli.smoke, &opts));
        plan.push(experiments::tasks::seed001_async(cli.smoke, opts.sleep_ms));
    }
    if objects {
        plan.extend(experiments::objects::plan(cli.smoke));
    }
    if tasks {
        plan.extend(experiments::tasks::plan(cli.smoke));
    }
    if resources {
        plan.extend(experiments::resources::plan(cli.smoke));
    }

    if !cli.filter.is_empty() {
        for exp in &mut plan {
            let name = exp.name;
            exp.cases.retain(|case| {
                let label = format!("{name} {} {}", case.scenario, case.imp.name());
                cli.filter.iter().any(|f| label.contains(f.as_str()))
            });
        }
        plan.retain(|exp| !exp.cases.is_empty());
    }

    let settings = Settings {
        runs: if cli.smoke { 1 } else { cli.runs },
        timeout: secs(cli.timeout.unwrap_or(if cli.smoke { 30.0 } else { 120.0 })),
        row_budget: secs(cli.row_budget),
        slow_factor: cli.slow_limit.max(0.0),
        quiet: cli.quiet,
    };
    let total: u64 = plan
        .iter()
        .map(|e| e.cases.len() as u64 * u64::from(settings.runs))
        .sum();
    let runner = match Runner::new(settings, total) {
        Ok(runner) => runner,
        Err(e) => {
            eprintln!("error: cannot find the benchmark executable: {e}");
            return ExitCode::FAILURE;
        }
    };

    let started = Instant::now();
    runner.say(&report::header(runner.settings(), cli.smoke));
    let mut results = report::Results {
        experiments: Vec::new(),
    };
    for exp in &plan {
        let rows = runner.run_experiment(exp);
        runner.say(&report::table(exp, &rows));
        results.experiments.push((exp, rows));
    }
    runner.finish();

    let mut status = ExitCode::SUCCESS;
    if let Some(path) = &cli.json {
        match report::write_json(path, &results) {
            Ok(()) => println!("results written to {}", path.display()),
            Err(e) => {
                eprintln!("error: cannot write {}: {e}", path.display());
                status = ExitCode::FAILURE;
            }
        }
    }
    if let Some(dir) = &cli.svg {
        match report::write_svgs(dir, &results) {
            Ok(files) => println!("{} charts written to {}", files.len(), dir.display()),
            Err(e) => {
                eprintln!("error: cannot write charts into {}: {e}", dir.display());
                status = ExitCode::FAILURE;
            }
        }
    }
    println!("total time {:.1} s", started.elapsed().as_secs_f64());
    status
}

/// A duration of `s` seconds; nonsense (negative, NaN) becomes zero.
fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or(Duration::ZERO)
}
