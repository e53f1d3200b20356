//! `cenote-bench`: measures cenote's pools against their peers.
//!
//! ```text
//! cenote-bench [OPTIONS]             the headline suite (about 1.5 minutes on 2 cores)
//! cenote-bench [OPTIONS] all         every experiment
//! cenote-bench [OPTIONS] workers | seeds | objects | tasks | resources
//! cenote-bench report --from FILE [--markdown FILE] [--readme FILE] [--svg-dir DIR]
//!
//! OPTIONS: [--smoke] [--json FILE] [--svg DIR] [--markdown FILE] [--readme FILE]
//!          [--runs N] [--filter TEXT]... [--quiet] ...
//! ```
//!
//! Without a subcommand the headline suite runs: one or two scenarios per
//! pool kind against its strongest peers, and the seeds' "no pool versus
//! pool" tables (see [`experiments::headline`]). `all` runs every experiment
//! (`workers` + `seeds` + `objects` + `tasks` + `resources`); `--smoke`
//! without a subcommand runs every experiment at a tiny size, once.
//!
//! Every measurement runs in a fresh child process (see [`harness`]). The
//! results are printed as one table per experiment and a closing summary
//! (cenote against the best peer of each headline scenario), and optionally
//! written as JSON, SVG charts, a Markdown report and the headline table of
//! a README (see [`report`]). `report` makes the Markdown report and the
//! README table from a saved JSON file, without measuring.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};

mod alloc;
mod experiments;
mod harness;
mod machine;
mod peers;
mod report;

use experiments::seeds::SeedOpts;
use experiments::{
    databases, fleet, headline, http, objects, resources, tasks, workers, Experiment,
};
use harness::{Runner, Settings};
use report::{markdown, Machine, Record};

/// Repetitions per measurement of the headline suite, unless --runs says.
const HEADLINE_RUNS: u32 = 5;

/// Repetitions per measurement of every other set, unless --runs says.
const RUNS: u32 = 3;

/// Every heap allocation goes through the counting allocator; it counts only
/// while an experiment asks it to.
#[global_allocator]
static GLOBAL: alloc::CountingAlloc = alloc::CountingAlloc;

/// Benchmarks cenote's pools against their peers, each measurement in a
/// fresh child process; without a subcommand, the headline suite (one or two
/// scenarios per pool kind against its strongest peers, about 1.5 minutes on
/// 2 cores).
#[derive(Parser, Debug)]
#[command(name = "cenote-bench", version, about, long_about = None)]
struct Cli {
    /// Run at a tiny size, once (a quick check that all works); without a
    /// subcommand, every experiment.
    #[arg(long, global = true)]
    smoke: bool,

    /// Write the results to FILE as JSON.
    #[arg(long, global = true, value_name = "FILE")]
    json: Option<PathBuf>,

    /// Write SVG charts into DIR.
    #[arg(long, global = true, value_name = "DIR")]
    svg: Option<PathBuf>,

    /// Write a Markdown report of the results to FILE (a table per
    /// experiment, linking the charts of --svg).
    #[arg(long, global = true, value_name = "FILE")]
    markdown: Option<PathBuf>,

    /// Put a table of the headline scenarios into FILE (a README), between
    /// its lines `<!-- headline:begin -->` and `<!-- headline:end -->`.
    #[arg(long, global = true, value_name = "FILE")]
    readme: Option<PathBuf>,

    /// Repetitions per measurement (at most; see --row-budget); rows report
    /// medians [default: 5 for the headline suite, 3 otherwise, 1 with
    /// --smoke].
    #[arg(long, global = true, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    runs: Option<u32>,

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
    /// Every experiment: workers, seeds, objects, tasks, resources, databases and http.
    All,
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
    /// Real connections: cenote-postgres and cenote-redis against deadpool, bb8, a dedicated
    /// connection per task, one multiplexed connection and connect-per-request (reads
    /// CENOTE_PG_URL and CENOTE_REDIS_URL).
    Databases,
    /// HTTP/1.1 clients: cenote-http against hyper-util's legacy Client, reqwest and
    /// connect-per-request, against a local hyper server in a child process; and the
    /// keep-alive race.
    Http,
    /// cenote-fleet's fleet-wide semaphore on Redis: acquire + release against a PING, and
    /// grants per second from 1 and 4 processes against a Lua-script ceiling (reads
    /// CENOTE_REDIS_URL).
    Fleet,
    /// Makes the Markdown report (--markdown) and the README table (--readme)
    /// from a JSON file written by --json, without measuring; prints its
    /// summary.
    Report(ReportArgs),
    /// The HTTP experiment's server (used by the harness; not for people).
    #[command(name = "__http-server", hide = true)]
    HttpServer {
        /// Close a connection idle this long after its last response.
        #[arg(long, value_name = "MS")]
        idle_close_ms: Option<u64>,
    },
    /// One of the fleet experiment's extra processes (used by the harness;
    /// not for people).
    #[command(name = "__fleet-worker", hide = true)]
    FleetWorker {
        /// What to run, as JSON.
        spec: String,
    },
    /// A holder process of the fleet fault experiment (used by the
    /// harness; not for people).
    #[command(name = "__fleet-holder", hide = true)]
    FleetHolder {
        /// What to run, as JSON.
        spec: String,
    },
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
    #[arg(long, value_name = "N", default_value_t = SeedOpts::DEFAULT.small_sleep_us)]
    small_sleep_us: u64,

    /// seed002: size of every pool (100 is the size in the seed's own
    /// example, `SetGopool(100, ...)`).
    #[arg(long, value_name = "N", default_value_t = SeedOpts::DEFAULT.pool_size as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    pool_size: u64,

    /// seed001: every job sleeps MS milliseconds.
    #[arg(long, value_name = "MS", default_value_t = SeedOpts::DEFAULT.sleep_ms)]
    sleep_ms: u64,

    /// seed001: stack size of every thread in KiB (0: platform default).
    #[arg(long, value_name = "KIB", default_value_t = SeedOpts::DEFAULT.stack_kib)]
    stack_kib: usize,
}

impl SeedArgs {
    fn opts(&self) -> SeedOpts {
        SeedOpts {
            full: self.full,
            small_sleep_us: self.small_sleep_us,
            pool_size: usize::try_from(self.pool_size).unwrap_or(usize::MAX),
            sleep_ms: self.sleep_ms,
            stack_kib: self.stack_kib,
        }
    }
}

#[derive(Args, Debug, Clone)]
struct ReportArgs {
    /// The JSON file of the run (written with --json).
    #[arg(long, value_name = "FILE")]
    from: PathBuf,

    /// Link the Markdown report to the charts in DIR (written with --svg).
    #[arg(long, value_name = "DIR")]
    svg_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::Child { spec }) => harness::child_main(spec),
        Some(Command::HttpServer { idle_close_ms }) => http::server::main(*idle_close_ms),
        Some(Command::FleetWorker { spec }) => fleet::worker_main(spec),
        Some(Command::FleetHolder { spec }) => fleet::faults::holder_main(spec),
        Some(Command::Report(args)) => report_only(&cli, args),
        _ => measure(&cli),
    }
}

/// Measures the set the command line names, then reports it.
fn measure(cli: &Cli) -> ExitCode {
    let is_headline = cli.command.is_none() && !cli.smoke;
    let mut plan: Vec<Experiment> = match &cli.command {
        None if cli.smoke => experiments::full_plan(true, &SeedOpts::DEFAULT),
        None => headline::plan(experiments::full_plan(false, &SeedOpts::DEFAULT)),
        Some(Command::All) => experiments::full_plan(cli.smoke, &SeedOpts::DEFAULT),
        Some(Command::Workers) => workers::plan(cli.smoke),
        Some(Command::Seeds(args)) => experiments::seeds_plan(cli.smoke, &args.opts()),
        Some(Command::Objects) => objects::plan(cli.smoke),
        Some(Command::Tasks) => tasks::plan(cli.smoke),
        Some(Command::Resources) => resources::plan(cli.smoke),
        Some(Command::Databases) => databases::plan(cli.smoke),
        Some(Command::Http) => http::plan(cli.smoke),
        Some(Command::Fleet) => fleet::plan(cli.smoke),
        Some(
            Command::Report(_)
            | Command::Child { .. }
            | Command::HttpServer { .. }
            | Command::FleetWorker { .. }
            | Command::FleetHolder { .. },
        ) => {
            unreachable!("handled in main")
        }
    };

    if matches!(cli.command, Some(Command::Databases | Command::All)) || cli.smoke {
        if let Some(why) = databases::missing_servers() {
            eprintln!("{why}");
        }
    }
    if matches!(cli.command, Some(Command::Fleet | Command::All)) || cli.smoke {
        if let Some(why) = fleet::missing_server() {
            eprintln!("{why}");
        }
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

    let runs = match (cli.smoke, cli.runs) {
        (true, _) => 1,
        (false, Some(n)) => n,
        (false, None) if is_headline => HEADLINE_RUNS,
        (false, None) => RUNS,
    };
    let settings = Settings {
        runs,
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
    let machine = Machine::current();
    runner.say(&report::header(runner.settings(), cli.smoke, &machine));
    let mut results = report::Results {
        experiments: Vec::new(),
    };
    for exp in &plan {
        let rows = runner.run_experiment(exp);
        runner.say(&report::table(exp, &rows));
        results.experiments.push((exp, rows));
    }
    runner.finish();
    let records = report::records(&results, &machine);
    print!("{}", report::summary(&records));
    println!();

    let mut ok = true;
    if let Some(path) = &cli.json {
        ok &= done(
            report::write_json(path, &records)
                .map_err(|e| format!("cannot write {}: {e}", path.display())),
            || format!("results written to {}", path.display()),
        );
    }
    let mut svg_dir = None;
    if let Some(dir) = &cli.svg {
        match report::write_svgs(dir, &results) {
            Ok(files) => {
                println!("{} charts written to {}", files.len(), dir.display());
                svg_dir = Some(dir.as_path());
            }
            Err(e) => {
                eprintln!("error: cannot write charts into {}: {e}", dir.display());
                ok = false;
            }
        }
    }
    ok &= write_documents(cli, &records, svg_dir);
    println!("total time {:.1} s", started.elapsed().as_secs_f64());
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `cenote-bench report`: the summary, the Markdown report and the README
/// table of a saved run.
fn report_only(cli: &Cli, args: &ReportArgs) -> ExitCode {
    if cli.smoke || cli.json.is_some() || cli.svg.is_some() || !cli.filter.is_empty() {
        eprintln!(
            "error: report measures nothing: --smoke, --json, --svg and --filter do not apply \
             (link charts with --svg-dir)"
        );
        return ExitCode::FAILURE;
    }
    let records = match report::read_json(&args.from) {
        Ok(records) => records,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", report::summary(&records));
    println!();
    if write_documents(cli, &records, args.svg_dir.as_deref()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Writes the Markdown report (--markdown, linking the charts in `svg_dir`)
/// and the README table (--readme) of `records`; false if either failed.
fn write_documents(cli: &Cli, records: &[Record], svg_dir: Option<&Path>) -> bool {
    let mut ok = true;
    if let Some(path) = &cli.markdown {
        ok &= done(write_markdown(path, records, svg_dir), || {
            format!("report written to {}", path.display())
        });
    }
    if let Some(path) = &cli.readme {
        ok &= done(markdown::update_readme(path, records), || {
            format!("headline table written into {}", path.display())
        });
    }
    ok
}

/// Writes the Markdown report of `records` to `path`.
fn write_markdown(path: &Path, records: &[Record], svg_dir: Option<&Path>) -> Result<(), String> {
    let cannot = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(cannot)?;
    }
    let charts = match svg_dir {
        Some(dir) => markdown::chart_links(dir, path, records)
            .map_err(|e| format!("cannot list the charts in {}: {e}", dir.display()))?,
        None => markdown::ChartLinks::new(),
    };
    report::write_file(path, &markdown::report(records, &charts)).map_err(cannot)
}

/// Prints `what()` on success or the error; true on success.
fn done(result: Result<(), String>, what: impl FnOnce() -> String) -> bool {
    match result {
        Ok(()) => {
            println!("{}", what());
            true
        }
        Err(e) => {
            eprintln!("error: {e}");
            false
        }
    }
}

/// A duration of `s` seconds; nonsense (negative, NaN) becomes zero.
fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or(Duration::ZERO)
}
