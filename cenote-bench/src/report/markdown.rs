//! The Markdown report (`--markdown`, `report`) and the README's headline
//! table (`--readme`), both made from the JSON records of a run.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use super::{competes, failure_mark, headline_lines, ratio_text, Record};
use crate::harness::Row;

/// The line after which the README's headline table starts.
pub const BEGIN: &str = "<!-- headline:begin -->";
/// The line before which it ends.
pub const END: &str = "<!-- headline:end -->";

/// Rows of the README table at most (with its header and separator: 12
/// lines).
const README_ROWS: usize = 10;

/// Chart links by experiment: `(name, href)` pairs.
pub type ChartLinks = BTreeMap<String, Vec<(String, String)>>;

/// The whole Markdown report of `records`.
pub fn report(records: &[Record], charts: &ChartLinks) -> String {
    let runs = records
        .iter()
        .flat_map(|r| &r.rows)
        .map(|row| row.runs)
        .max()
        .unwrap_or(0);
    let machine = records
        .first()
        .map(|r| r.machine.clone())
        .unwrap_or_default();
    let mut out = String::from("# cenote-bench results\n\n");
    out.push_str("## How it is measured\n\n");
    out.push_str(&format!(
        "Every measurement runs in a fresh child process. The implementations of a scenario \
         take turns, run by run, and every value is the median of up to {runs} runs. A cell \
         holds the experiment's headline value and, in parentheses, its ratio to cenote's \
         value in the same scenario (above 1x: cenote's is lower); the lowest value of a row \
         is in bold. \"stopped\": the run was stopped at a multiple of cenote's time; \
         \"timed out\": it ran past the time limit; \"failed\": it ended with an error. The \
         reasons are listed under each table.\n\n"
    ));
    out.push_str("## Machine\n\n");
    out.push_str(&format!(
        "- CPU: {}\n- logical CPUs: {}\n- date: {}\n- crates: {}\n",
        machine.cpu.as_deref().unwrap_or("unknown"),
        machine
            .logical_cpus
            .map_or_else(|| "unknown".to_owned(), |n| n.to_string()),
        machine.date.as_deref().unwrap_or("unknown"),
        if machine.versions.is_empty() {
            "unknown".to_owned()
        } else {
            machine.versions_text()
        },
    ));
    for record in records {
        out.push('\n');
        out.push_str(&experiment_section(record, charts.get(&record.experiment)));
    }
    out
}

/// The section of one experiment: title, table, unfinished rows, charts.
pub fn experiment_section(record: &Record, charts: Option<&Vec<(String, String)>>) -> String {
    let mut out = format!("## {}\n\n", record.experiment);
    if let Some(title) = &record.title {
        out.push_str(&format!("{}. ", capitalized(title)));
    }
    out.push_str(&format!("Cells: {}.\n\n", record.headline.label));
    out.push_str(&table(record));
    let unfinished: Vec<&Row> = record.rows.iter().filter(|r| r.failed.is_some()).collect();
    if !unfinished.is_empty() {
        out.push_str("\nNot finished:\n\n");
        for row in unfinished {
            out.push_str(&format!(
                "- `{}` {}: {}\n",
                row.scenario,
                row.imp,
                row.failed.as_deref().unwrap_or_default()
            ));
        }
    }
    if let Some(charts) = charts.filter(|c| !c.is_empty()) {
        let links: Vec<String> = charts
            .iter()
            .map(|(name, href)| format!("[{name}]({href})"))
            .collect();
        out.push_str(&format!("\nCharts: {}\n", links.join(", ")));
    }
    out
}

/// The table of one experiment: a row per scenario, a column per
/// implementation (in order of first appearance).
pub fn table(record: &Record) -> String {
    let spec = &record.headline;
    let fmt = spec.fmt();
    let mut scenarios: Vec<&str> = Vec::new();
    let mut imps: Vec<&str> = Vec::new();
    for row in &record.rows {
        if !scenarios.contains(&row.scenario.as_str()) {
            scenarios.push(&row.scenario);
        }
        if !imps.contains(&row.imp.as_str()) {
            imps.push(&row.imp);
        }
    }
    let mut out = format!("| scenario | {} |\n", imps.join(" | "));
    out.push_str(&format!("|---|{}\n", "---:|".repeat(imps.len())));
    for scenario in scenarios {
        let row_of = |imp: &str| {
            record
                .rows
                .iter()
                .find(|r| r.scenario == scenario && r.imp == imp)
        };
        let value = |row: &Row| spec.value(row).filter(|_| row.failed.is_none());
        let base = row_of("cenote").and_then(value).filter(|&b| b > 0.0);
        let best = record
            .rows
            .iter()
            .filter(|r| r.scenario == scenario && competes(&r.imp))
            .filter_map(value)
            .min_by(f64::total_cmp);
        let mut cells = vec![format!("`{scenario}`")];
        for &imp in &imps {
            let cell = match row_of(imp) {
                None => "-".to_owned(),
                Some(row) => match (&row.failed, value(row)) {
                    (Some(reason), _) => failure_mark(reason).to_owned(),
                    (None, None) => "-".to_owned(),
                    (None, Some(v)) => {
                        let mut cell = fmt.format(v);
                        // Bold as printed: values that print alike are
                        // alike.
                        if competes(imp) && best.map(|b| fmt.format(b)) == Some(cell.clone()) {
                            cell = format!("**{cell}**");
                        }
                        if let (Some(b), false) = (base, imp == "cenote") {
                            cell.push_str(&format!(" ({}x)", short_ratio(v / b)));
                        }
                        cell
                    }
                },
            };
            cells.push(cell.replace('|', "\\|"));
        }
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out
}

/// A ratio with two significant digits: `0.45`, `2.2`, `14`.
fn short_ratio(r: f64) -> String {
    if r >= 9.95 {
        format!("{r:.0}")
    } else if r >= 0.995 {
        format!("{r:.1}")
    } else if r >= 0.0995 {
        format!("{r:.2}")
    } else {
        format!("{r:.3}")
    }
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Links from the Markdown file `markdown` to the charts of `records` in
/// `svg_dir` (the files `cenote-bench --svg` names after the experiment).
pub fn chart_links(svg_dir: &Path, markdown: &Path, records: &[Record]) -> io::Result<ChartLinks> {
    let mut files: Vec<String> = fs::read_dir(svg_dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".svg"))
        .collect();
    files.sort();
    let md_dir = match markdown.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => dir.to_owned(),
        None => PathBuf::from("."),
    };
    let from = fs::canonicalize(md_dir)?;
    let to = fs::canonicalize(svg_dir)?;
    let rel = relative(&from, &to);
    let mut links = ChartLinks::new();
    for record in records {
        let stem = format!("{}-", record.experiment.replace('/', "_"));
        let headline = record
            .headline
            .value
            .strip_prefix("metrics.")
            .unwrap_or("per_op");
        let mut charts: Vec<(String, String)> = files
            .iter()
            .filter_map(|file| {
                let name = file.strip_prefix(&stem)?.strip_suffix(".svg")?;
                let href = rel.join(file);
                Some((name.to_owned(), href_of(&href)))
            })
            .collect();
        // The headline's chart first, then peak RSS, then the others.
        charts.sort_by_key(|(name, _)| (name != headline, name != "peak_rss", name.clone()));
        links.insert(record.experiment.clone(), charts);
    }
    Ok(links)
}

/// `path` as a link target: `/`-separated.
fn href_of(path: &Path) -> String {
    path.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// The path of `to` relative to the directory `from` (both absolute).
pub fn relative(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<Component<'_>> = from.components().collect();
    let to: Vec<Component<'_>> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for c in &to[common..] {
        out.push(c.as_os_str());
    }
    out
}

/// The README's headline block: a table of the headline scenarios in
/// `records` (scenario, cenote, best peer, cenote / best peer) and a line
/// naming the CPU and the date.
pub fn readme_table(records: &[Record]) -> Result<String, String> {
    let lines = headline_lines(records);
    if lines.is_empty() {
        return Err(
            "the results hold no headline scenario (run `cenote-bench` without a \
                    subcommand, or `cenote-bench all`)"
                .to_owned(),
        );
    }
    let mut out = String::from(
        "| scenario | cenote | best peer | cenote / best peer |\n|---|---:|---|---:|\n",
    );
    for line in lines.iter().take(README_ROWS) {
        let mut best = line
            .best
            .as_ref()
            .map_or_else(|| "-".to_owned(), |(imp, v)| format!("{imp} {v}"));
        if !line.unfinished.is_empty() {
            best = format!("{best} ({})", line.unfinished.join(", "));
        }
        let ratio = line
            .ratio
            .map_or_else(|| "-".to_owned(), |r| format!("{}x", ratio_text(r)));
        out.push_str(&format!(
            "| {} | {} | {best} | {ratio} |\n",
            line.label, line.cenote
        ));
    }
    let machine = records
        .first()
        .map(|r| r.machine.clone())
        .unwrap_or_default();
    out.push_str(&format!(
        "\n{}, {} logical CPUs, {}; below 1x: cenote is ahead.\n",
        machine.cpu.as_deref().unwrap_or("unknown CPU"),
        machine
            .logical_cpus
            .map_or_else(|| "?".to_owned(), |n| n.to_string()),
        machine.date.as_deref().unwrap_or("unknown date"),
    ));
    Ok(out)
}

/// `text` with the lines between the [`BEGIN`] and [`END`] marker lines
/// replaced by `block` (set off by blank lines); the markers stay.
pub fn replace_headline(text: &str, block: &str) -> Result<String, String> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let begin = lines
        .iter()
        .position(|l| l.trim() == BEGIN)
        .ok_or_else(|| {
            format!("no line `{BEGIN}` (the headline table goes between it and `{END}`)")
        })?;
    let end = lines[begin + 1..]
        .iter()
        .position(|l| l.trim() == END)
        .map(|i| begin + 1 + i)
        .ok_or_else(|| format!("no line `{END}` after `{BEGIN}`"))?;
    let mut out: String = lines[..=begin].concat();
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out.push('\n');
    out.push_str(block.trim_end());
    out.push_str("\n\n");
    out.push_str(&lines[end..].concat());
    Ok(out)
}

/// Puts the headline table of `records` into the README at `path`.
pub fn update_readme(path: &Path, records: &[Record]) -> Result<(), String> {
    let text =
        fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let block = readme_table(records)?;
    let updated =
        replace_headline(&text, &block).map_err(|e| format!("{}: {e}", path.display()))?;
    fs::write(path, updated).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{summary, HeadlineSpec, Machine};
    use serde_json::Value;

    fn row(scenario: &str, imp: &str, per_op_ns: Option<f64>, failed: Option<&str>) -> Row {
        Row {
            scenario: scenario.to_owned(),
            imp: imp.to_owned(),
            params: Value::Null,
            runs: 3,
            wall_s: per_op_ns.map(|v| v * 1e-3),
            cpu_s: per_op_ns.map(|v| v * 1e-3),
            per_op_ns,
            peak_rss_kib: per_op_ns.map(|_| 4096),
            metrics: per_op_ns.map(|_| Default::default()),
            failed: failed.map(str::to_owned),
        }
    }

    fn machine() -> Machine {
        Machine {
            cpu: Some("Test CPU 9000".to_owned()),
            logical_cpus: Some(2),
            date: Some("2025-01-02T03:04:05Z".to_owned()),
            versions: [("cenote", "0.1.0"), ("threadpool", "1.8.1")]
                .into_iter()
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .collect(),
        }
    }

    /// workers/throughput with the headline scenario and one more, a peer
    /// ahead of cenote in the second, and a stopped peer.
    fn records() -> Vec<Record> {
        vec![Record {
            experiment: "workers/throughput".to_owned(),
            title: Some("trivial tasks from one producer".to_owned()),
            headline: HeadlineSpec::per_op("time per task"),
            machine: machine(),
            rows: vec![
                row("trivial-1M/size=2", "cenote", Some(100.0), None),
                row("trivial-1M/size=2", "threadpool", Some(220.0), None),
                row(
                    "trivial-1M/size=2",
                    "thread-per-task",
                    None,
                    Some("slower than 5× cenote: stopped after 6.0 s"),
                ),
                row("trivial-1M/size=2", "rayon", Some(1_500.0), None),
                row("trivial-1M/size=64", "cenote", Some(100.0), None),
                row("trivial-1M/size=64", "threadpool", Some(80.0), None),
                row("trivial-1M/size=64", "rayon", None, Some("exit 2: boom")),
            ],
        }]
    }

    #[test]
    fn table_cells_hold_value_ratio_bold_best_and_failures() {
        let t = table(&records()[0]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines,
            [
                "| scenario | cenote | threadpool | thread-per-task | rayon |",
                "|---|---:|---:|---:|---:|",
                "| `trivial-1M/size=2` | **100 ns** | 220 ns (2.2x) | stopped | 1.50 µs (15x) |",
                "| `trivial-1M/size=64` | 100 ns | **80.0 ns** (0.80x) | - | failed |",
            ]
        );
    }

    #[test]
    fn values_that_print_alike_are_all_bold() {
        let mut recs = records();
        recs[0]
            .rows
            .push(row("trivial-1M/size=64", "floor-x", Some(79.99), None));
        recs[0].rows[5].per_op_ns = Some(80.01);
        recs[0]
            .rows
            .push(row("trivial-1M/size=64", "rusty_pool", Some(79.98), None));
        let t = table(&recs[0]);
        let last = t.lines().last().unwrap();
        assert_eq!(
            last,
            "| `trivial-1M/size=64` | 100 ns | **80.0 ns** (0.80x) | - | failed | 80.0 ns (0.80x) \
             | **80.0 ns** (0.80x) |"
        );
    }

    #[test]
    fn chart_links_are_relative_and_put_the_headline_first() {
        let dir = std::env::temp_dir().join(format!("cenote-bench-charts-{}", std::process::id()));
        let svg = dir.join("out").join("svg");
        fs::create_dir_all(&svg).unwrap();
        for name in [
            "workers_throughput-peak_rss.svg",
            "workers_throughput-per_op.svg",
            "workers_throughput-build.svg",
            "workers_fnpool-per_op.svg",
            "notes.txt",
        ] {
            fs::write(svg.join(name), "").unwrap();
        }
        let links = chart_links(&svg, &dir.join("docs").join("B.md"), &records());
        // The Markdown file's directory does not exist yet.
        assert!(links.is_err());
        fs::create_dir_all(dir.join("docs")).unwrap();
        let links = chart_links(&svg, &dir.join("docs").join("B.md"), &records()).unwrap();
        let names: Vec<(&str, &str)> = links["workers/throughput"]
            .iter()
            .map(|(n, h)| (n.as_str(), h.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("per_op", "../out/svg/workers_throughput-per_op.svg"),
                ("peak_rss", "../out/svg/workers_throughput-peak_rss.svg"),
                ("build", "../out/svg/workers_throughput-build.svg"),
            ]
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn floors_are_never_bold() {
        let mut recs = records();
        recs[0]
            .rows
            .push(row("trivial-1M/size=2", "floor-x", Some(50.0), None));
        let t = table(&recs[0]);
        let first = t.lines().nth(2).unwrap();
        assert!(first.contains("**100 ns**"), "{first}");
        assert!(first.ends_with("| 50.0 ns (0.50x) |"), "{first}");
    }

    #[test]
    fn report_has_method_machine_sections_failures_and_charts() {
        let mut charts = ChartLinks::new();
        charts.insert(
            "workers/throughput".to_owned(),
            vec![(
                "per_op".to_owned(),
                "svg/workers_throughput-per_op.svg".to_owned(),
            )],
        );
        let md = report(&records(), &charts);
        assert!(md.starts_with("# cenote-bench results\n"));
        assert!(md.contains("median of up to 3 runs"));
        assert!(md.contains("- CPU: Test CPU 9000\n"));
        assert!(md.contains("- logical CPUs: 2\n"));
        assert!(md.contains("- date: 2025-01-02T03:04:05Z\n"));
        assert!(md.contains("- crates: cenote 0.1.0, threadpool 1.8.1\n"));
        assert!(md.contains(
            "## workers/throughput\n\nTrivial tasks from one producer. Cells: time per task.\n"
        ));
        assert!(md.contains(
            "- `trivial-1M/size=2` thread-per-task: slower than 5× cenote: stopped after 6.0 s\n"
        ));
        assert!(md.contains("- `trivial-1M/size=64` rayon: exit 2: boom\n"));
        assert!(md.contains("Charts: [per_op](svg/workers_throughput-per_op.svg)\n"));
    }

    #[test]
    fn relative_paths_between_directories() {
        assert_eq!(
            relative(Path::new("/a/b"), Path::new("/a/b/svg")),
            PathBuf::from("svg")
        );
        assert_eq!(
            relative(Path::new("/a/b/docs"), Path::new("/a/c")),
            PathBuf::from("../../c")
        );
        assert_eq!(relative(Path::new("/a"), Path::new("/a")), PathBuf::new());
    }

    #[test]
    fn readme_table_and_summary_line_of_the_headline_scenario() {
        let block = readme_table(&records()).unwrap();
        let lines: Vec<&str> = block.lines().collect();
        assert_eq!(
            lines,
            [
                "| scenario | cenote | best peer | cenote / best peer |",
                "|---|---:|---|---:|",
                "| workers: 1M trivial tasks, pool of 2 | 100 ns | threadpool 220 ns \
                 (thread-per-task stopped) | 0.45x |",
                "",
                "Test CPU 9000, 2 logical CPUs, 2025-01-02T03:04:05Z; below 1x: cenote is ahead.",
            ]
        );

        let text = summary(&records());
        let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("== summary"));
        let words = |l: &str| l.split_whitespace().collect::<Vec<_>>().join(" ");
        assert_eq!(words(lines[1]), "scenario cenote best peer cenote/best");
        assert_eq!(
            words(lines[2]),
            "workers: 1M trivial tasks, pool of 2 100 ns threadpool 220 ns 0.45 \
             (thread-per-task stopped)"
        );
    }

    #[test]
    fn without_headline_scenarios_the_summary_covers_every_scenario() {
        let mut recs = records();
        recs[0].rows.retain(|r| r.scenario == "trivial-1M/size=64");
        let text = summary(&recs);
        let words = |l: &str| l.split_whitespace().collect::<Vec<_>>().join(" ");
        let lines: Vec<String> = text.lines().map(words).collect();
        assert!(
            lines.contains(
                &"workers/throughput trivial-1M/size=64 100 ns threadpool 80.0 ns 1.25 \
                  (rayon failed)"
                    .to_owned()
            ),
            "{text}"
        );
        assert!(readme_table(&recs).is_err());
    }

    #[test]
    fn readme_markers_are_kept_and_what_lies_between_replaced() {
        let text = "# x\n\nintro\n<!-- headline:begin -->\nold table\nold line\n<!-- headline:end -->\ntail\n";
        let out = replace_headline(text, "| a |\n").unwrap();
        assert_eq!(
            out,
            "# x\n\nintro\n<!-- headline:begin -->\n\n| a |\n\n<!-- headline:end -->\ntail\n"
        );
        // Idempotent: a second run replaces its own output.
        assert_eq!(replace_headline(&out, "| a |\n").unwrap(), out);
    }

    #[test]
    fn missing_or_misordered_markers_are_errors() {
        let err = replace_headline("no markers\n", "x").unwrap_err();
        assert!(err.contains("<!-- headline:begin -->"), "{err}");
        let err = replace_headline("<!-- headline:begin -->\nx\n", "x").unwrap_err();
        assert!(err.contains("<!-- headline:end -->"), "{err}");
        let err =
            replace_headline("<!-- headline:end -->\n<!-- headline:begin -->\n", "x").unwrap_err();
        assert!(err.contains("<!-- headline:end -->"), "{err}");
    }

    #[test]
    fn update_readme_reports_the_file_without_markers() {
        let dir = std::env::temp_dir().join(format!("cenote-bench-readme-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("README.md");
        fs::write(&path, "# nothing here\n").unwrap();
        let err = update_readme(&path, &records()).unwrap_err();
        assert!(
            err.contains("README.md") && err.contains("headline:begin"),
            "{err}"
        );
        fs::write(&path, format!("a\n{BEGIN}\n{END}\nb\n")).unwrap();
        update_readme(&path, &records()).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(&format!("a\n{BEGIN}\n\n| scenario |")));
        assert!(text.ends_with(&format!("ahead.\n\n{END}\nb\n")));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn records_survive_the_json_round_trip() {
        let recs = records();
        let json = serde_json::to_string(&recs).unwrap();
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v[0]["experiment"], "workers/throughput");
        assert_eq!(v[0]["cpu"], "Test CPU 9000");
        assert_eq!(v[0]["logical_cpus"], 2);
        assert_eq!(v[0]["versions"]["threadpool"], "1.8.1");
        assert_eq!(v[0]["rows"][0]["impl"], "cenote");
        let back: Vec<Record> = serde_json::from_str(&json).unwrap();
        assert_eq!(table(&back[0]), table(&recs[0]));
        // A file with only `experiment` and `rows` reads too.
        let bare = r#"[{"experiment": "e", "rows": []}]"#;
        let back: Vec<Record> = serde_json::from_str(bare).unwrap();
        assert_eq!(back[0].headline, HeadlineSpec::per_op("per op"));
    }
}
