//! The measurement harness.
//!
//! Every measurement runs in a fresh child process: the binary re-executes
//! itself with the hidden `__child` subcommand and a JSON [`ChildSpec`]. The
//! child times its own measured region and prints one [`Outcome`] line on
//! stdout. The parent reaps the child with `wait4(2)`, which hands back the
//! child's own CPU time (user + sys), so no two measurements share a heap, a
//! thread or an RSS high-water mark. Peak RSS is the child's own `VmHWM`,
//! read by the child as it finishes; `wait4`'s `ru_maxrss` is the fallback
//! where that is unavailable (see [`own_peak_rss_kib`] for why).
//!
//! A child that fails (non-zero exit, a signal, or running past the
//! per-measurement limit, after which the parent kills it) turns into a row
//! marked failed; it never stops the run.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use std::{io, thread};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::experiments::{self, Case, Experiment};

/// Name of the hidden subcommand that runs one measurement.
pub const CHILD_SUBCOMMAND: &str = "__child";

/// Marks the child's result line on its stdout.
const RESULT_PREFIX: &str = "@cenote-bench-result ";

/// The relative limit of [`Settings::slow_factor`] is never shorter than this.
pub const SLOW_LIMIT_FLOOR: Duration = Duration::from_secs(6);

/// Exit status of a child whose measurement returned an error.
const EXIT_ERROR: i32 = 2;

/// Exit status of a child in which any thread panicked.
const EXIT_PANIC: i32 = 101;

/// What the parent asks a child process to measure.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChildSpec {
    /// Experiment name, e.g. `workers/throughput`.
    pub experiment: String,
    /// Scenario name, e.g. `trivial-1M/size=2`.
    pub scenario: String,
    /// Implementation under test, e.g. `cenote`.
    #[serde(rename = "impl")]
    pub imp: String,
    /// Experiment-specific parameters.
    pub params: Value,
}

/// What a child reports about its measured region.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Outcome {
    /// Wall time of the measured region, timed by the child.
    pub wall_s: f64,
    /// Operations in the measured region, where `wall / ops` means something.
    pub ops: Option<u64>,
    /// Further measured values, by name.
    pub metrics: BTreeMap<String, f64>,
    /// The child's own peak RSS (KiB), filled in by the harness when the
    /// measurement is over (see [`own_peak_rss_kib`]).
    pub peak_rss_kib: Option<u64>,
}

impl Outcome {
    /// An outcome of `wall` seconds over `ops` operations, without metrics.
    pub fn new(wall: Duration, ops: Option<u64>) -> Self {
        Outcome {
            wall_s: wall.as_secs_f64(),
            ops,
            metrics: BTreeMap::new(),
            peak_rss_kib: None,
        }
    }

    /// Adds the metric `name`.
    pub fn metric(mut self, name: &str, value: f64) -> Self {
        self.metrics.insert(name.to_owned(), value);
        self
    }
}

/// One measurement of one child process.
struct Sample {
    outcome: Outcome,
    /// User + system CPU time of the whole child process.
    cpu_s: f64,
    /// Peak resident set size of the child, KiB.
    rss_kib: u64,
}

/// The medians over the runs of one (scenario, impl) pair, as reported.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Row {
    pub scenario: String,
    #[serde(rename = "impl")]
    pub imp: String,
    pub params: Value,
    /// Runs that went into the medians (for a failed row: runs attempted).
    pub runs: u32,
    pub wall_s: Option<f64>,
    pub cpu_s: Option<f64>,
    pub per_op_ns: Option<f64>,
    pub peak_rss_kib: Option<u64>,
    pub metrics: Option<BTreeMap<String, f64>>,
    /// Why the row has no values, for a failed row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

impl Row {
    /// The value of metric `key`, if measured.
    pub fn metric(&self, key: &str) -> Option<f64> {
        self.metrics.as_ref()?.get(key).copied()
    }
}

/// How measurements are repeated and bounded.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Repetitions per measurement (at most; see `row_budget`).
    pub runs: u32,
    /// A child still running after this long is killed and its row fails.
    pub timeout: Duration,
    /// No further repetition of a row is started when it would likely take
    /// the row's runs past this much time in total; the row then reports the
    /// runs it has.
    pub row_budget: Duration,
    /// A peer's run is stopped (and its row fails) once it has taken this
    /// many times the median wall time of the cenote row of the same scenario
    /// (or, where cenote failed, of the fastest row so far), but never before
    /// [`SLOW_LIMIT_FLOOR`]. Zero switches this off.
    pub slow_factor: f64,
    /// No progress bar.
    pub quiet: bool,
}

/// Runs measurements in child processes and shows progress.
pub struct Runner {
    settings: Settings,
    exe: PathBuf,
    progress: ProgressBar,
}

impl Runner {
    /// A runner for `total` measurements (rows times runs).
    pub fn new(settings: Settings, total: u64) -> io::Result<Self> {
        let exe = std::env::current_exe()?;
        let progress = if settings.quiet || !io::stderr().is_terminal() {
            ProgressBar::hidden()
        } else {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{elapsed_precise:.dim} [{bar:28.cyan/blue}] {pos}/{len} {wide_msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar
        };
        Ok(Runner {
            settings,
            exe,
            progress,
        })
    }

    /// The settings this runner measures with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Measures every case of `experiment`; rows come back in case order.
    ///
    /// The cases of one scenario are measured in turns: run 1 of each, then
    /// run 2 of each, and so on. On a shared VM the machine's speed drifts
    /// over minutes, so runs of one implementation taken back to back and
    /// compared with another's taken a minute later would measure the drift
    /// as much as the implementations. Taking turns puts every peer under
    /// the same conditions, run by run.
    pub fn run_experiment(&self, experiment: &Experiment) -> Vec<Row> {
        let mut rows: Vec<Option<Row>> = vec![None; experiment.cases.len()];
        for group in scenario_groups(&experiment.cases) {
            let cases: Vec<&Case> = group.iter().map(|&i| &experiment.cases[i]).collect();
            let measured = self.measure_in_turns(experiment.name, &cases);
            for (i, row) in group.into_iter().zip(measured) {
                rows[i] = Some(row);
            }
        }
        rows.into_iter()
            .map(|row| row.expect("every case belongs to one scenario group"))
            .collect()
    }

    /// Measures the cases of one scenario in turns (see `run_experiment`).
    fn measure_in_turns(&self, experiment: &str, cases: &[&Case]) -> Vec<Row> {
        let runs = self.settings.runs.max(1);
        let specs: Vec<ChildSpec> = cases
            .iter()
            .map(|case| ChildSpec {
                experiment: experiment.to_owned(),
                scenario: case.scenario.clone(),
                imp: case.imp.name().to_owned(),
                params: case.params.clone(),
            })
            .collect();
        let turns = take_turns(
            &specs,
            runs,
            self.settings.row_budget,
            |turns, i| self.limit_for(&specs[i], turns),
            |i, run, limit| {
                let spec = &specs[i];
                self.progress.set_message(format!(
                    "{experiment} {} {} (run {run}/{runs})",
                    spec.scenario, spec.imp
                ));
                let result = run_child(&self.exe, spec, limit);
                self.progress.inc(1);
                result
            },
        );
        specs
            .into_iter()
            .zip(turns)
            .map(|(spec, turn)| {
                // Runs a row skipped (failed or out of budget) still count
                // as progress.
                self.progress
                    .inc(u64::from(runs) - u64::from(turn.attempted));
                match turn.failed {
                    Some(reason) => Row {
                        scenario: spec.scenario,
                        imp: spec.imp,
                        params: spec.params,
                        runs: turn.attempted,
                        wall_s: None,
                        cpu_s: None,
                        per_op_ns: None,
                        peak_rss_kib: None,
                        metrics: None,
                        failed: Some(reason),
                    },
                    None => summarize(spec, &turn.samples),
                }
            })
            .collect()
    }

    /// How long one run of `spec` may take, given its scenario's runs so far.
    fn limit_for(&self, spec: &ChildSpec, turns: &[Turns<Sample>]) -> Limit {
        let timeout = self.settings.timeout;
        let absolute = Limit {
            time: timeout,
            why: format!("timeout: killed after {} s", timeout.as_secs_f64()),
        };
        let factor = self.settings.slow_factor;
        if factor <= 0.0 || spec.imp.starts_with("cenote") {
            return absolute;
        }
        // The reference: cenote's median so far, or else the fastest median
        // so far (each over the rows of the same scenario).
        let medians = || {
            turns.iter().filter(|t| t.failed.is_none()).filter_map(|t| {
                let wall = median(t.samples.iter().map(|s| s.outcome.wall_s))?;
                Some((t.imp.as_str(), wall))
            })
        };
        let reference = medians()
            .find(|(imp, _)| *imp == "cenote")
            .or_else(|| medians().min_by(|a, b| a.1.total_cmp(&b.1)));
        let Some((imp, wall)) = reference else {
            return absolute;
        };
        let time = Duration::try_from_secs_f64(wall * factor)
            .unwrap_or(timeout)
            .max(SLOW_LIMIT_FLOOR);
        if time >= timeout {
            return absolute;
        }
        Limit {
            time,
            why: format!(
                "slower than {factor}× {imp}: stopped after {:.1} s",
                time.as_secs_f64()
            ),
        }
    }

    /// Prints `text` on stdout without tearing the progress bar.
    pub fn say(&self, text: &str) {
        self.progress.suspend(|| {
            let mut out = io::stdout().lock();
            // A closed stdout is not worth aborting a benchmark run for.
            let _ = writeln!(out, "{text}");
            let _ = out.flush();
        });
    }

    /// Removes the progress bar.
    pub fn finish(&self) {
        self.progress.finish_and_clear();
    }
}

/// How long a child may run, and what to report when it runs longer.
struct Limit {
    time: Duration,
    why: String,
}

/// The cases of each scenario, as indices into `cases`, in order of first
/// appearance.
fn scenario_groups(cases: &[Case]) -> Vec<Vec<usize>> {
    let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        match groups.iter_mut().find(|(s, _)| *s == case.scenario) {
            Some((_, group)) => group.push(i),
            None => groups.push((&case.scenario, vec![i])),
        }
    }
    groups.into_iter().map(|(_, group)| group).collect()
}

/// The runs of one row of a scenario measured in turns.
struct Turns<S> {
    imp: String,
    samples: Vec<S>,
    /// Runs started, the failed one included.
    attempted: u32,
    /// Time spent in this row's runs.
    spent: Duration,
    failed: Option<String>,
    /// No further run: failed, done, or another would exceed the budget.
    stopped: bool,
}

/// Runs the rows of one scenario in turns: turn `k` runs the `k`-th run of
/// every row still going. A row stops at its first failure, after `runs`
/// runs, or when another run would likely take its runs past `budget`
/// (always after its first run). `limit(turns, i)` bounds row `i`'s next
/// run given the scenario's runs so far; `run(i, k, limit)` measures it.
fn take_turns<S>(
    specs: &[ChildSpec],
    runs: u32,
    budget: Duration,
    mut limit: impl FnMut(&[Turns<S>], usize) -> Limit,
    mut run: impl FnMut(usize, u32, &Limit) -> Result<S, String>,
) -> Vec<Turns<S>> {
    let mut turns: Vec<Turns<S>> = specs
        .iter()
        .map(|spec| Turns {
            imp: spec.imp.clone(),
            samples: Vec::new(),
            attempted: 0,
            spent: Duration::ZERO,
            failed: None,
            stopped: false,
        })
        .collect();
    for k in 1..=runs {
        for i in 0..turns.len() {
            if turns[i].stopped {
                continue;
            }
            let bound = limit(&turns, i);
            let started = Instant::now();
            let result = run(i, k, &bound);
            let t = &mut turns[i];
            t.spent += started.elapsed();
            t.attempted = k;
            match result {
                Ok(sample) => t.samples.push(sample),
                Err(reason) => {
                    t.failed = Some(reason);
                    t.stopped = true;
                    continue;
                }
            }
            // Another run would likely take the row past its budget.
            if k == runs || t.spent + t.spent / k >= budget {
                t.stopped = true;
            }
        }
    }
    turns
}

/// Reduces the samples of one row to medians.
fn summarize(spec: ChildSpec, samples: &[Sample]) -> Row {
    let wall = median(samples.iter().map(|s| s.outcome.wall_s));
    let cpu = median(samples.iter().map(|s| s.cpu_s));
    let per_op = median(samples.iter().filter_map(|s| {
        let ops = s.outcome.ops.filter(|&ops| ops > 0)?;
        Some(s.outcome.wall_s * 1e9 / ops as f64)
    }));
    let mut rss: Vec<u64> = samples.iter().map(|s| s.rss_kib).collect();
    rss.sort_unstable();
    let mut metrics = BTreeMap::new();
    for key in samples.iter().flat_map(|s| s.outcome.metrics.keys()) {
        if !metrics.contains_key(key) {
            let values = samples
                .iter()
                .filter_map(|s| s.outcome.metrics.get(key).copied());
            if let Some(m) = median(values) {
                metrics.insert(key.clone(), m);
            }
        }
    }
    Row {
        scenario: spec.scenario,
        imp: spec.imp,
        params: spec.params,
        runs: u32::try_from(samples.len()).unwrap_or(u32::MAX),
        wall_s: wall,
        cpu_s: cpu,
        per_op_ns: per_op,
        // The lower median, so that the value is one that was measured.
        peak_rss_kib: rss.get(rss.len().saturating_sub(1) / 2).copied(),
        metrics: Some(metrics),
        failed: None,
    }
}

/// The median of `values`; the mean of the middle two for an even count.
pub fn median(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// Runs one child process to completion (or to `limit`) and collects what it
/// measured and what the kernel accounted for it.
fn run_child(exe: &Path, spec: &ChildSpec, limit: &Limit) -> Result<Sample, String> {
    let spec_json = serde_json::to_string(spec).map_err(|e| format!("bad spec: {e}"))?;
    let mut child = Command::new(exe)
        .arg(CHILD_SUBCOMMAND)
        .arg(spec_json)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start child: {e}"))?;
    let pid = libc::pid_t::try_from(child.id()).map_err(|_| "pid out of range".to_owned())?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());

    // Reap on a helper thread so that the limit can be enforced here. The
    // child is not reaped by anyone else, so `pid` stays valid (at worst a
    // zombie) until this thread has waited for it: killing it cannot hit an
    // unrelated process.
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(wait_for(pid));
    });
    let (waited, timed_out) = match rx.recv_timeout(limit.time) {
        Ok(waited) => (waited, false),
        Err(_) => {
            // SAFETY: `pid` is our unreaped child (see above); SIGKILL takes
            // no pointer arguments.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let waited = rx
                .recv()
                .unwrap_or_else(|_| Err(io::Error::other("reaper thread lost")));
            (waited, true)
        }
    };
    // `child` was reaped by `wait4` above; dropping the handle neither waits
    // nor kills.
    drop(child);
    let (status, usage) = waited.map_err(|e| format!("wait4 failed: {e}"))?;
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();

    if timed_out {
        return Err(limit.why.clone());
    }
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        return Err(failure_reason(status, &stderr));
    }
    let line = stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(RESULT_PREFIX))
        .ok_or_else(|| "child printed no result".to_owned())?;
    let outcome: Outcome =
        serde_json::from_str(line).map_err(|e| format!("unreadable child result: {e}"))?;
    let rss_kib = outcome
        .peak_rss_kib
        .unwrap_or_else(|| u64::try_from(usage.ru_maxrss).unwrap_or(0));
    Ok(Sample {
        outcome,
        cpu_s: timeval_secs(usage.ru_utime) + timeval_secs(usage.ru_stime),
        rss_kib,
    })
}

/// Reads a child's pipe to its end on a thread of its own.
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Waits for child `pid` with `wait4`, returning its status and resource use.
fn wait_for(pid: libc::pid_t) -> io::Result<(libc::c_int, libc::rusage)> {
    let mut status: libc::c_int = 0;
    // SAFETY: `rusage` is plain old data for which all-zero bytes are valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: both pointers are valid, exclusive and live for the call.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            return Ok((status, usage));
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

fn timeval_secs(tv: libc::timeval) -> f64 {
    tv.tv_sec as f64 + tv.tv_usec as f64 * 1e-6
}

/// Describes why a child failed, from its wait status and its stderr.
fn failure_reason(status: libc::c_int, stderr: &str) -> String {
    let how = if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("exit {}", libc::WEXITSTATUS(status))
    };
    let lines: Vec<&str> = stderr.lines().map(str::trim).collect();
    let said = lines
        .iter()
        .find_map(|l| l.strip_prefix("error: "))
        .or_else(|| {
            // A panic prints "thread '..' panicked at file:line:col:" and then
            // the message on the next line.
            let at = lines.iter().position(|l| l.contains("panicked at"))?;
            lines.get(at + 1).copied()
        })
        .or_else(|| lines.iter().rev().find(|l| !l.is_empty()).copied());
    match said {
        Some(said) => {
            let mut said = said.to_owned();
            if said.chars().count() > 120 {
                said = said.chars().take(117).collect::<String>() + "...";
            }
            format!("{how}: {said}")
        }
        None => how,
    }
}

/// Entry point of a child process: runs the measurement described by
/// `spec_json` and prints its outcome. Never returns.
pub fn child_main(spec_json: &str) -> ! {
    // A panic on any thread (a pool worker included) ends the process at
    // once, so that the parent sees a failure instead of a hang.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        std::process::exit(EXIT_PANIC);
    }));

    let result = serde_json::from_str::<ChildSpec>(spec_json)
        .map_err(|e| format!("bad child spec: {e}"))
        .and_then(|spec| experiments::run_case(&spec));
    match result {
        Ok(mut outcome) => {
            outcome.peak_rss_kib = own_peak_rss_kib();
            let line = serde_json::to_string(&outcome).expect("outcome serializes");
            let mut out = io::stdout().lock();
            let _ = writeln!(out, "{RESULT_PREFIX}{line}");
            let _ = out.flush();
            // Exit without tearing the pools down: teardown is not measured,
            // and some pools join their workers on drop.
            std::process::exit(0)
        }
        Err(reason) => {
            eprintln!("error: {reason}");
            std::process::exit(EXIT_ERROR)
        }
    }
}

/// CPU time (user + system) consumed so far by this whole process.
pub fn process_cpu_time() -> Duration {
    // SAFETY: `rusage` is plain old data for which all-zero bytes are valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the pointer is valid and exclusive for the call; RUSAGE_SELF
    // is a valid `who`.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(timeval_secs(usage.ru_utime) + timeval_secs(usage.ru_stime))
}

/// Number of threads of this process, from `/proc/self/status`.
pub fn process_threads() -> Option<u64> {
    proc_status_field("Threads:")
}

/// This process's own peak resident set size in KiB: `VmHWM` of
/// `/proc/self/status`, which belongs to the address space created at exec.
///
/// The `ru_maxrss` that `wait4` reports is not used for this when `VmHWM` is
/// available, because Linux carries the parent's RSS high-water mark over into
/// the child across fork and exec (`signal->maxrss`), so every child would
/// report at least the parent's size.
fn own_peak_rss_kib() -> Option<u64> {
    proc_status_field("VmHWM:")
}

/// The leading number of the line of `/proc/self/status` that starts `key`.
fn proc_status_field(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs(imps: &[&str]) -> Vec<ChildSpec> {
        imps.iter()
            .map(|imp| ChildSpec {
                experiment: "e".to_owned(),
                scenario: "s".to_owned(),
                imp: (*imp).to_owned(),
                params: Value::Null,
            })
            .collect()
    }

    fn no_limit() -> Limit {
        Limit {
            time: Duration::MAX,
            why: String::new(),
        }
    }

    #[test]
    fn rows_of_a_scenario_take_turns_and_a_failed_row_stops() {
        let specs = specs(&["cenote", "a", "b"]);
        let mut order = Vec::new();
        let turns = take_turns(
            &specs,
            3,
            Duration::MAX,
            |_, _| no_limit(),
            |i, k, _| {
                order.push((i, k));
                if i == 1 && k == 2 {
                    Err("boom".to_owned())
                } else {
                    Ok(k)
                }
            },
        );
        assert_eq!(
            order,
            [
                (0, 1),
                (1, 1),
                (2, 1),
                (0, 2),
                (1, 2),
                (2, 2),
                (0, 3),
                (2, 3)
            ]
        );
        assert_eq!(turns[0].samples, [1, 2, 3]);
        assert_eq!(turns[1].samples, [1]);
        assert_eq!(turns[1].attempted, 2);
        assert_eq!(turns[1].failed.as_deref(), Some("boom"));
        assert_eq!(turns[2].attempted, 3);
        assert!(turns[2].failed.is_none());
    }

    #[test]
    fn a_row_out_of_budget_stops_after_its_first_run() {
        let specs = specs(&["cenote", "a"]);
        let mut runs = 0;
        let turns = take_turns(
            &specs,
            5,
            Duration::ZERO,
            |_, _| no_limit(),
            |_, _, _| {
                runs += 1;
                Ok(())
            },
        );
        assert_eq!(runs, 2);
        assert!(turns
            .iter()
            .all(|t| t.attempted == 1 && t.samples.len() == 1));
    }

    #[test]
    fn each_limit_sees_the_runs_taken_so_far() {
        let specs = specs(&["cenote", "peer"]);
        let mut seen = Vec::new();
        take_turns(
            &specs,
            2,
            Duration::MAX,
            |turns: &[Turns<u32>], i| {
                seen.push((i, turns[0].samples.len(), turns[1].samples.len()));
                no_limit()
            },
            |_, k, _| Ok(k),
        );
        // The peer's first run is bounded knowing cenote's first run.
        assert_eq!(seen, [(0, 0, 0), (1, 1, 0), (0, 1, 1), (1, 2, 1)]);
    }

    #[test]
    fn scenarios_group_in_order_of_first_appearance() {
        let case = |s: &str| Case {
            scenario: s.to_owned(),
            imp: crate::peers::Impl::Cenote,
            params: Value::Null,
        };
        let cases = [case("x"), case("y"), case("x"), case("z"), case("y")];
        assert_eq!(scenario_groups(&cases), [vec![0, 2], vec![1, 4], vec![3]]);
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median([3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median([4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median([f64::NAN]), None);
        assert_eq!(median(std::iter::empty()), None);
    }

    #[test]
    fn failure_reason_prefers_the_panic_message() {
        let stderr =
            "thread 'main' panicked at src/x.rs:1:2:\nboom\nnote: run with RUST_BACKTRACE=1";
        // Exit status 101, as a wait status.
        let reason = failure_reason(101 << 8, stderr);
        assert_eq!(reason, "exit 101: boom");
        assert_eq!(
            failure_reason(2 << 8, "error: no threads\n"),
            "exit 2: no threads"
        );
    }
}
