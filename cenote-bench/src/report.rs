//! Reporting: the text table per experiment, the JSON file, the SVG charts.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::experiments::{Experiment, Quantity, Unit};
use crate::harness::{Row, Settings};

mod svg;

/// Resolved versions of the measured crates (`name=version;...`), read from
/// the workspace `Cargo.lock` by the build script.
const VERSIONS: &str = env!("CENOTE_BENCH_VERSIONS");

/// The experiments of one run with their measured rows.
pub struct Results<'a> {
    pub experiments: Vec<(&'a Experiment, Vec<Row>)>,
}

/// The report header: what was measured, with which crate versions, how.
pub fn header(settings: &Settings, smoke: bool) -> String {
    let versions: Vec<String> = VERSIONS
        .split(';')
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, version)| format!("{name} {version}"))
        .collect();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
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
         machine: {} {}, {cores} CPUs available\n\
         every measurement runs in a fresh child process; rows report medians of up to {} runs \
         (fewer where more would take a row past {} s); a run is stopped after {} s{slow}\n\
         cpu = user+sys time of the whole child, peak RSS = the child's own high-water mark \
         (VmHWM); ratio columns = impl / cenote in the same scenario (> 1: cenote is lower)",
        env!("CARGO_PKG_VERSION"),
        if smoke { " (smoke sizes)" } else { "" },
        versions.join(", "),
        std::env::consts::OS,
        std::env::consts::ARCH,
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

/// One experiment in the JSON file.
#[derive(Serialize)]
struct JsonExperiment<'a> {
    experiment: &'a str,
    rows: &'a [Row],
}

/// Writes every experiment and its rows to `path` as a JSON list.
pub fn write_json(path: &Path, results: &Results<'_>) -> io::Result<()> {
    let list: Vec<JsonExperiment<'_>> = results
        .experiments
        .iter()
        .map(|(exp, rows)| JsonExperiment {
            experiment: exp.name,
            rows,
        })
        .collect();
    let mut text = serde_json::to_string_pretty(&list).map_err(io::Error::other)?;
    text.push('\n');
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)?;
    }
    fs::write(path, text)
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
