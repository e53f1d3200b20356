//! Reporting: the text table per experiment, the JSON file, the SVG charts,
//! the closing summary, the Markdown report and the README table.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::experiments::headline::{pick, PICKS};
use crate::experiments::{Experiment, Quantity, Unit};
use crate::harness::{Row, Settings};
use crate::machine;

pub mod markdown;
mod svg;

/// The experiments of one run with their measured rows.
pub struct Results<'a> {
    pub experiments: Vec<(&'a Experiment, Vec<Row>)>,
}

/// The report header: what was measured, with which crate versions, how.
pub fn header(settings: &Settings, smoke: bool, machine: &Machine) -> String {
    let slow = if settings.slow_factor > 0.0 {
        format!(
            ", and a peer's run after {}× cenote's time in its scenario (at least {} s)",
            settings.slow_factor,
            crate::harness::SLOW_LIMIT_FLOOR.as_secs_f64()
        )
    } else {
        String::new()
    };
    format!(
        "cenote-bench {}{}\n\
         crates: {}\n\
         machine: {} {}, {}, {} CPUs available; {}\n\
         every measurement runs in a fresh child process; rows report medians of up to {} runs \
         (fewer where more would take a row past {} s); a run is stopped after {} s{slow}\n\
         cpu = user+sys time of the whole child, peak RSS = the child's own high-water mark \
         (VmHWM); ratio columns = impl / cenote in the same scenario (> 1: cenote is lower)",
        env!("CARGO_PKG_VERSION"),
        if smoke { " (smoke sizes)" } else { "" },
        machine.versions_text(),
        std::env::consts::OS,
        std::env::consts::ARCH,
        machine.cpu.as_deref().unwrap_or("unknown CPU"),
        machine.logical_cpus.unwrap_or(0),
        machine.date.as_deref().unwrap_or("unknown date"),
        settings.runs,
        settings.row_budget.as_secs_f64(),
        settings.timeout.as_secs_f64(),
    )
}

/// How a value is printed.
#[derive(Clone, Copy, Debug)]
pub enum Fmt {
    /// Nanoseconds, scaled to ns / µs / ms / s.
    Nanos,
    /// Kibibytes, scaled to KiB / MiB / GiB.
    KiB,
    /// A metric in its own unit.
    Metric(Unit),
}

impl Fmt {
    /// Prints `v` with about three significant digits and a unit.
    pub fn format(self, v: f64) -> String {
        match self {
            Fmt::Nanos => {
                let (value, unit) = if v.abs() < 1e3 {
                    (v, "ns")
                } else if v.abs() < 1e6 {
                    (v / 1e3, "µs")
                } else if v.abs() < 1e9 {
                    (v / 1e6, "ms")
                } else {
                    (v / 1e9, "s")
                };
                format!("{} {unit}", sig3(value))
            }
            Fmt::KiB => {
                let (value, unit) = if v < 1024.0 {
                    (v, "KiB")
                } else if v < 1024.0 * 1024.0 {
                    (v / 1024.0, "MiB")
                } else {
                    (v / (1024.0 * 1024.0), "GiB")
                };
                format!("{} {unit}", sig3(value))
            }
            Fmt::Metric(Unit::Micros) => Fmt::Nanos.format(v * 1e3),
            Fmt::Metric(Unit::Millis) => Fmt::Nanos.format(v * 1e6),
            Fmt::Metric(Unit::Percent) => {
                if v != 0.0 && v.abs() < 0.1 {
                    format!("{v:.3}%")
                } else {
                    format!("{}%", sig3(v))
                }
            }
            Fmt::Metric(Unit::Plain(decimals)) => format!("{v:.decimals$}"),
        }
    }
}

/// `v` with three significant digits (at least the integer part).
fn sig3(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The headline value of `row` and how to print it.
fn headline(quantity: Quantity, row: &Row) -> Option<f64> {
    match quantity {
        Quantity::PerOp => row.per_op_ns,
        Quantity::Metric(c) => row.metric(c.key),
    }
}

/// Header of the headline's ratio column.
fn headline_label(quantity: Quantity) -> String {
    match quantity {
        Quantity::PerOp => "per op".to_owned(),
        Quantity::Metric(c) => c.header.to_owned(),
    }
}

/// `row`'s value of `value` relative to the cenote row of its scenario.
fn ratio(rows: &[Row], row: &Row, value: impl Fn(&Row) -> Option<f64>) -> Option<f64> {
    let base = rows
        .iter()
        .find(|r| r.scenario == row.scenario && r.imp == "cenote")
        .and_then(&value)?;
    let v = value(row)?;
    (base > 0.0).then(|| v / base)
}

/// The text table of one experiment.
pub fn table(exp: &Experiment, rows: &[Row]) -> String {
    let mut headers: Vec<String> = ["scenario", "impl", "runs", "wall", "cpu"]
        .map(str::to_owned)
        .to_vec();
    let show_per_op = rows.iter().any(|r| r.per_op_ns.is_some());
    if show_per_op {
        headers.push("per op".to_owned());
    }
    headers.push("peak RSS".to_owned());
    for c in &exp.columns {
        headers.push(c.header.to_owned());
    }
    headers.push(format!("{}×", headline_label(exp.headline)));
    headers.push("RSS×".to_owned());

    let mut body: Vec<(Vec<String>, Option<String>)> = Vec::new();
    let mut last_scenario = "";
    for row in rows {
        let scenario = if row.scenario == last_scenario {
            String::new()
        } else {
            row.scenario.clone()
        };
        last_scenario = &row.scenario;
        let mut cells = vec![scenario, row.imp.clone(), row.runs.to_string()];
        if let Some(reason) = &row.failed {
            body.push((cells, Some(format!("DNF: {reason}"))));
            continue;
        }
        let opt = |v: Option<f64>, fmt: Fmt| v.map_or_else(|| "-".to_owned(), |v| fmt.format(v));
        cells.push(opt(row.wall_s.map(|s| s * 1e9), Fmt::Nanos));
        cells.push(opt(row.cpu_s.map(|s| s * 1e9), Fmt::Nanos));
        if show_per_op {
            cells.push(opt(row.per_op_ns, Fmt::Nanos));
        }
        cells.push(opt(row.peak_rss_kib.map(|k| k as f64), Fmt::KiB));
        for c in &exp.columns {
            cells.push(opt(row.metric(c.key), Fmt::Metric(c.unit)));
        }
        let ratio_cell = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
        cells.push(ratio_cell(ratio(rows, row, |r| headline(exp.headline, r))));
        cells.push(ratio_cell(ratio(rows, row, |r| {
            r.peak_rss_kib.map(|k| k as f64)
        })));
        body.push((cells, None));
    }

    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for (cells, _) in &body {
        for (w, cell) in widths.iter_mut().zip(cells) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let render = |cells: &[String]| -> String {
        let mut line = String::new();
        for (i, (cell, &w)) in cells.iter().zip(&widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = w.saturating_sub(cell.chars().count());
            if i < 2 {
                line.push_str(cell);
                line.push_str(&" ".repeat(pad));
            } else {
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            }
        }
        line
    };

    let mut out = format!("\n== {}: {}\n", exp.name, exp.title);
    for note in &exp.notes {
        out.push_str(&format!("   {note}\n"));
    }
    out.push('\n');
    out.push_str(render(&headers).trim_end());
    out.push('\n');
    for (cells, dnf) in &body {
        let mut line = render(cells);
        if let Some(dnf) = dnf {
            line.push_str("  ");
            line.push_str(dnf);
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Where and when a run was measured, and with which crate versions.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// CPU model, from `/proc/cpuinfo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// Logical CPUs the benchmark may run on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logical_cpus: Option<usize>,
    /// Start of the run, UTC, ISO 8601.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    /// cenote's and the peer crates' versions from `Cargo.lock`, by crate.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub versions: BTreeMap<String, String>,
}

impl Machine {
    /// This machine, the current time and the crate versions of this build.
    pub fn current() -> Self {
        Machine {
            cpu: machine::cpu_model(),
            logical_cpus: Some(machine::logical_cpus()),
            date: Some(machine::utc_now()),
            versions: machine::versions(),
        }
    }

    /// `cenote 0.1.0, bb8 0.9.1, ...`: cenote first, then the peers.
    pub fn versions_text(&self) -> String {
        let cenote = self.versions.iter().filter(|(n, _)| *n == "cenote");
        let peers = self.versions.iter().filter(|(n, _)| *n != "cenote");
        cenote
            .chain(peers)
            .map(|(name, version)| format!("{name} {version}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// How an experiment's headline quantity is read from a row and printed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeadlineSpec {
    /// `per_op_ns`, or `metrics.KEY` for a metric the child reported.
    pub value: String,
    /// What the value is, e.g. `time per task (wall / tasks)`.
    pub label: String,
    /// How the value is printed.
    pub unit: ValueUnit,
}

/// The unit of a headline value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueUnit {
    Nanos,
    Micros,
    Millis,
    Percent,
    /// A plain number with this many decimals.
    Plain(usize),
}

impl HeadlineSpec {
    /// The headline of `exp`.
    pub fn of(exp: &Experiment) -> Self {
        match exp.headline {
            Quantity::PerOp => Self::per_op(exp.per_op_title),
            Quantity::Metric(c) => HeadlineSpec {
                value: format!("metrics.{}", c.key),
                label: c.header.to_owned(),
                unit: match c.unit {
                    Unit::Micros => ValueUnit::Micros,
                    Unit::Millis => ValueUnit::Millis,
                    Unit::Percent => ValueUnit::Percent,
                    Unit::Plain(d) => ValueUnit::Plain(d),
                },
            },
        }
    }

    /// Wall time per operation, in ns.
    pub fn per_op(label: &str) -> Self {
        HeadlineSpec {
            value: "per_op_ns".to_owned(),
            label: label.to_owned(),
            unit: ValueUnit::Nanos,
        }
    }

    /// The headline value of `row` (none for a failed row).
    pub fn value(&self, row: &Row) -> Option<f64> {
        match self.value.strip_prefix("metrics.") {
            Some(key) => row.metric(key),
            None => row.per_op_ns,
        }
    }

    /// How the values are printed.
    pub fn fmt(&self) -> Fmt {
        match self.unit {
            ValueUnit::Nanos => Fmt::Nanos,
            ValueUnit::Micros => Fmt::Metric(Unit::Micros),
            ValueUnit::Millis => Fmt::Metric(Unit::Millis),
            ValueUnit::Percent => Fmt::Metric(Unit::Percent),
            ValueUnit::Plain(d) => Fmt::Metric(Unit::Plain(d)),
        }
    }
}

fn default_headline() -> HeadlineSpec {
    HeadlineSpec::per_op("per op")
}

/// One experiment of a run as the JSON file holds it: `experiment` and
/// `rows`, with the title, the headline quantity, the machine, the date and
/// the crate versions beside them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    pub experiment: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default = "default_headline")]
    pub headline: HeadlineSpec,
    #[serde(flatten)]
    pub machine: Machine,
    pub rows: Vec<Row>,
}

impl Record {
    /// The record of `exp` measured as `rows` on `machine`.
    pub fn new(exp: &Experiment, rows: &[Row], machine: &Machine) -> Self {
        Record {
            experiment: exp.name.to_owned(),
            title: Some(exp.title.clone()),
            headline: HeadlineSpec::of(exp),
            machine: machine.clone(),
            rows: rows.to_vec(),
        }
    }
}

/// The records of every experiment of `results`.
pub fn records(results: &Results<'_>, machine: &Machine) -> Vec<Record> {
    results
        .experiments
        .iter()
        .map(|(exp, rows)| Record::new(exp, rows, machine))
        .collect()
}

/// Writes `records` to `path` as a JSON list.
pub fn write_json(path: &Path, records: &[Record]) -> io::Result<()> {
    let mut text = serde_json::to_string_pretty(records).map_err(io::Error::other)?;
    text.push('\n');
    write_file(path, &text)
}

/// Reads the records of a JSON file written by [`write_json`].
pub fn read_json(path: &Path) -> Result<Vec<Record>, String> {
    let text =
        fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text)
        .map_err(|e| format!("{} is not a cenote-bench results file: {e}", path.display()))
}

/// Writes `text` to `path`, creating its directory.
pub fn write_file(path: &Path, text: &str) -> io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)?;
    }
    fs::write(path, text)
}

/// Whether `imp` competes with cenote for "best": a pool or the no-pool
/// baseline, not a floor that is no pool at all.
pub fn competes(imp: &str) -> bool {
    !imp.starts_with("floor-")
}

/// Whether `imp` is a peer of cenote (competes and is not cenote's own).
pub fn is_peer(imp: &str) -> bool {
    competes(imp) && !imp.starts_with("cenote")
}

/// How a failed row is marked: `stopped`, `timed out` or `failed`.
pub fn failure_mark(reason: &str) -> &'static str {
    if reason.contains("stopped") {
        "stopped"
    } else if reason.starts_with("timeout") {
        "timed out"
    } else {
        "failed"
    }
}

/// A ratio with three significant digits at most, e.g. `0.68`, `2.20`,
/// `14`.
pub fn ratio_text(r: f64) -> String {
    if r >= 9.995 {
        format!("{r:.0}")
    } else if r >= 0.1 {
        format!("{r:.2}")
    } else {
        format!("{r:.3}")
    }
}

/// One headline scenario: cenote against the best peer.
#[derive(Clone, Debug, PartialEq)]
pub struct HeadlineLine {
    /// The scenario: its pick's label, or `experiment scenario`.
    pub label: String,
    /// cenote's value, printed, or how its row failed.
    pub cenote: String,
    /// The peer with the lowest value, and its value printed.
    pub best: Option<(String, String)>,
    /// cenote / best peer.
    pub ratio: Option<f64>,
    /// Peers whose row failed, with how (`thread-per-task stopped`).
    pub unfinished: Vec<String>,
}

/// The line of `scenario` of `record`, or `None` where it has no cenote
/// row.
fn headline_line(record: &Record, scenario: &str, label: String) -> Option<HeadlineLine> {
    let rows: Vec<&Row> = record
        .rows
        .iter()
        .filter(|r| r.scenario == scenario)
        .collect();
    let spec = &record.headline;
    let fmt = spec.fmt();
    let cenote_row = rows.iter().find(|r| r.imp == "cenote")?;
    let cenote_value = spec.value(cenote_row);
    let cenote = match (&cenote_row.failed, cenote_value) {
        (Some(reason), _) => failure_mark(reason).to_owned(),
        (None, Some(v)) => fmt.format(v),
        (None, None) => "-".to_owned(),
    };
    let best = rows
        .iter()
        .filter(|r| is_peer(&r.imp) && r.failed.is_none())
        .filter_map(|r| Some((r, spec.value(r)?)))
        .min_by(|a, b| a.1.total_cmp(&b.1));
    let ratio = match (cenote_value, best) {
        (Some(c), Some((_, b))) if b > 0.0 => Some(c / b),
        _ => None,
    };
    let unfinished = rows
        .iter()
        .filter(|r| is_peer(&r.imp))
        .filter_map(|r| Some(format!("{} {}", r.imp, failure_mark(r.failed.as_deref()?))))
        .collect();
    Some(HeadlineLine {
        label,
        cenote,
        best: best.map(|(r, v)| (r.imp.clone(), fmt.format(v))),
        ratio,
        unfinished,
    })
}

/// The lines of the headline scenarios in `records`, in headline order.
pub fn headline_lines(records: &[Record]) -> Vec<HeadlineLine> {
    PICKS
        .iter()
        .filter_map(|p| {
            let record = records.iter().find(|r| r.experiment == p.experiment)?;
            headline_line(record, p.scenario, p.label.to_owned())
        })
        .collect()
}

/// The lines of every scenario in `records`, in their order.
fn every_line(records: &[Record]) -> Vec<HeadlineLine> {
    let mut lines = Vec::new();
    for record in records {
        let mut seen: Vec<&str> = Vec::new();
        for row in &record.rows {
            if seen.contains(&row.scenario.as_str()) {
                continue;
            }
            seen.push(&row.scenario);
            let label = match pick(&record.experiment, &row.scenario) {
                Some(p) => p.label.to_owned(),
                None => format!("{} {}", record.experiment, row.scenario),
            };
            lines.extend(headline_line(record, &row.scenario, label));
        }
    }
    lines
}

/// Lines of the summary at most (its title and header not counted).
const SUMMARY_LINES: usize = 20;

/// The summary closing a run: one line per headline scenario measured
/// (where the run measured none, per scenario up to [`SUMMARY_LINES`]),
/// each with cenote's value, the best peer's, and cenote / best peer.
pub fn summary(records: &[Record]) -> String {
    let mut lines = headline_lines(records);
    if lines.is_empty() {
        lines = every_line(records);
    }
    let more = lines.len().saturating_sub(SUMMARY_LINES);
    lines.truncate(SUMMARY_LINES);
    let mut table: Vec<[String; 4]> = vec![[
        "scenario".to_owned(),
        "cenote".to_owned(),
        "best peer".to_owned(),
        "cenote/best".to_owned(),
    ]];
    let mut notes = vec![String::new()];
    for line in &lines {
        table.push([
            line.label.clone(),
            line.cenote.clone(),
            line.best
                .as_ref()
                .map_or_else(|| "-".to_owned(), |(imp, v)| format!("{imp} {v}")),
            line.ratio.map_or_else(|| "-".to_owned(), ratio_text),
        ]);
        notes.push(if line.unfinished.is_empty() {
            String::new()
        } else {
            format!("({})", line.unfinished.join(", "))
        });
    }
    let mut widths = [0usize; 4];
    for cells in &table {
        for (w, c) in widths.iter_mut().zip(cells) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = "\n== summary: cenote against the best peer of each scenario \
                   (cenote/best below 1: cenote is ahead)\n\n"
        .to_owned();
    for (cells, note) in table.iter().zip(&notes) {
        let mut line = String::new();
        for (i, (cell, &w)) in cells.iter().zip(&widths).enumerate() {
            let pad = " ".repeat(w.saturating_sub(cell.chars().count()));
            match i {
                0 | 2 => line.push_str(&format!("{cell}{pad}  ")),
                _ => line.push_str(&format!("{pad}{cell}  ")),
            }
        }
        line.push_str(note);
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if more > 0 {
        out.push_str(&format!(
            "... and {more} more scenarios in the tables above\n"
        ));
    }
    out
}

/// Writes the charts of every experiment into `dir`; returns the files.
pub fn write_svgs(dir: &Path, results: &Results<'_>) -> io::Result<Vec<PathBuf>> {
    fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for (exp, rows) in &results.experiments {
        written.extend(svg::write_charts(dir, exp, rows)?);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(experiment: &str, rows: &[(&str, &str, f64)]) -> Record {
        Record {
            experiment: experiment.to_owned(),
            title: None,
            headline: HeadlineSpec::per_op("per op"),
            machine: Machine::default(),
            rows: rows
                .iter()
                .map(|&(scenario, imp, ns)| Row {
                    scenario: scenario.to_owned(),
                    imp: imp.to_owned(),
                    params: serde_json::Value::Null,
                    runs: 1,
                    wall_s: Some(ns),
                    cpu_s: Some(ns),
                    per_op_ns: Some(ns),
                    peak_rss_kib: Some(1),
                    metrics: Some(BTreeMap::new()),
                    failed: None,
                })
                .collect(),
        }
    }

    fn words(line: &str) -> String {
        line.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn summary_lines_follow_the_headline_order_and_skip_other_scenarios() {
        let records = [
            rec(
                "objects/getput",
                &[
                    ("vec4k-2M/threads=2", "cenote", 20.0),
                    ("vec4k-2M/threads=2", "alloc", 50.0),
                    ("small-4M/threads=1", "cenote", 5.0),
                    ("small-4M/threads=1", "alloc", 9.0),
                    ("vec4k-4M/threads=1", "cenote", 10.0),
                    ("vec4k-4M/threads=1", "alloc", 40.0),
                    ("vec4k-4M/threads=1", "opool", 25.0),
                ],
            ),
            rec(
                "workers/throughput",
                &[
                    ("trivial-1M/size=2", "cenote", 300.0),
                    ("trivial-1M/size=2", "cenote-fnpool", 100.0),
                    ("trivial-1M/size=2", "rayon", 200.0),
                ],
            ),
        ];
        let text = summary(&records);
        let lines: Vec<String> = text.lines().skip(4).map(words).collect();
        assert_eq!(
            lines,
            [
                "workers: 1M trivial tasks, pool of 2 300 ns rayon 200 ns 1.50",
                "objects: 4 KiB Vec get + put, 1 thread 10.0 ns opool 25.0 ns 0.40",
                "objects: 4 KiB Vec get + put, 2 threads 20.0 ns alloc 50.0 ns 0.40",
            ]
        );
    }

    #[test]
    fn a_summary_of_many_scenarios_fits_one_screen() {
        let names: Vec<String> = (0..25).map(|i| format!("s{i:02}")).collect();
        let rows: Vec<(&str, &str, f64)> = names
            .iter()
            .flat_map(|s| [(s.as_str(), "cenote", 1.0), (s.as_str(), "peer", 2.0)])
            .collect();
        let text = summary(&[rec("x/y", &rows)]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.len() <= 25, "{text}");
        assert_eq!(words(lines[4]), "x/y s00 1.00 ns peer 2.00 ns 0.50");
        assert_eq!(words(lines[23]), "x/y s19 1.00 ns peer 2.00 ns 0.50");
        assert_eq!(lines[24], "... and 5 more scenarios in the tables above");
    }

    #[test]
    fn ratios_print_with_three_significant_digits_at_most() {
        assert_eq!(ratio_text(0.4449), "0.44");
        assert_eq!(ratio_text(1.0), "1.00");
        assert_eq!(ratio_text(14.4), "14");
        assert_eq!(ratio_text(0.0512), "0.051");
        assert_eq!(
            failure_mark("slower than 5× cenote: stopped after 6.0 s"),
            "stopped"
        );
        assert_eq!(failure_mark("timeout: killed after 120 s"), "timed out");
        assert_eq!(failure_mark("exit 2: boom"), "failed");
    }

    #[test]
    fn formats_scale_units() {
        assert_eq!(Fmt::Nanos.format(50.4), "50.4 ns");
        assert_eq!(Fmt::Nanos.format(43_300.0), "43.3 µs");
        assert_eq!(Fmt::Nanos.format(4.33e9), "4.33 s");
        assert_eq!(Fmt::KiB.format(3_980.0), "3.89 MiB");
        assert_eq!(Fmt::Metric(Unit::Micros).format(7.22), "7.22 µs");
        assert_eq!(Fmt::Metric(Unit::Percent).format(0.002), "0.002%");
        assert_eq!(Fmt::Metric(Unit::Plain(3)).format(1.0318), "1.032");
    }
}
