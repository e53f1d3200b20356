//! Hand-written SVG bar charts.
//!
//! One chart per measured quantity of an experiment: horizontal bars, one
//! group per scenario, one bar per implementation, cenote in a highlight
//! colour and the peers in one muted colour. Values spanning more than about
//! two decades get a log scale. The SVG uses only `<rect>`, `<line>` and
//! `<text>` with generic font families, so it renders anywhere without font
//! files.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::{headline, Fmt};
use crate::experiments::{Experiment, Quantity};
use crate::harness::Row;

const WIDTH: f64 = 960.0;
/// Left edge of the bars; impl names sit left of it.
const BARS_X: f64 = 210.0;
/// Room right of the longest bar for its value label.
const VALUE_ROOM: f64 = 120.0;
/// Top of the first group (title, subtitle and tick labels sit above).
const TOP: f64 = 86.0;
const GROUP_HEAD: f64 = 24.0;
const ROW: f64 = 19.0;
const BAR: f64 = 13.0;
const GROUP_GAP: f64 = 10.0;
const BOTTOM: f64 = 28.0;

const FONT: &str = "system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif";
const CENOTE: &str = "#e8590c";
const CENOTE_ALT: &str = "#f59f00";
const PEER: &str = "#8d99ae";
const FAILED: &str = "#c92a2a";
const INK: &str = "#212529";
const MUTED: &str = "#6c757d";
const GRID: &str = "#dee2e6";
const BAND: &str = "#f1f3f5";

/// One chart: a quantity across every (scenario, impl) row.
struct Chart {
    /// File-name part, e.g. `per_op`.
    slug: String,
    title: String,
    fmt: Fmt,
    groups: Vec<Group>,
}

/// The bars of one scenario.
struct Group {
    scenario: String,
    bars: Vec<Bar>,
}

struct Bar {
    imp: String,
    value: Option<f64>,
    failed: Option<String>,
}

/// Writes the charts of `exp` into `dir`; returns the files written.
pub fn write_charts(dir: &Path, exp: &Experiment, rows: &[Row]) -> io::Result<Vec<PathBuf>> {
    let mut charts = Vec::new();
    let (slug, title, fmt) = match exp.headline {
        Quantity::PerOp => ("per_op".to_owned(), exp.per_op_title.to_owned(), Fmt::Nanos),
        Quantity::Metric(c) => (c.key.to_owned(), c.header.to_owned(), Fmt::Metric(c.unit)),
    };
    charts.push(chart(slug, title, fmt, rows, |r| headline(exp.headline, r)));
    charts.push(chart(
        "peak_rss".to_owned(),
        "peak RSS of the process".to_owned(),
        Fmt::KiB,
        rows,
        |r| r.peak_rss_kib.map(|k| k as f64),
    ));
    for c in exp.columns.iter().filter(|c| c.chart) {
        charts.push(chart(
            c.key.to_owned(),
            c.header.to_owned(),
            Fmt::Metric(c.unit),
            rows,
            |r| r.metric(c.key),
        ));
    }

    let stem = exp.name.replace('/', "_");
    let mut written = Vec::new();
    for chart in charts.iter().filter(|c| !c.groups.is_empty()) {
        let path = dir.join(format!("{stem}-{}.svg", chart.slug));
        fs::write(&path, render(exp, chart))?;
        written.push(path);
    }
    Ok(written)
}

/// Collects the bars of one quantity, grouped by scenario in row order.
fn chart(
    slug: String,
    title: String,
    fmt: Fmt,
    rows: &[Row],
    value: impl Fn(&Row) -> Option<f64>,
) -> Chart {
    let mut groups: Vec<Group> = Vec::new();
    for row in rows {
        let bar = Bar {
            imp: row.imp.clone(),
            value: value(row),
            failed: row.failed.clone(),
        };
        if bar.value.is_none() && bar.failed.is_none() {
            continue;
        }
        match groups.last_mut() {
            Some(g) if g.scenario == row.scenario => g.bars.push(bar),
            _ => groups.push(Group {
                scenario: row.scenario.clone(),
                bars: vec![bar],
            }),
        }
    }
    Chart {
        slug,
        title,
        fmt,
        groups,
    }
}

/// The horizontal axis. Ticks fall on round numbers of `base` (1 KiB,
/// 1 MiB, ... for sizes; 1 otherwise), so that their labels are round too.
enum Scale {
    Linear { max: f64, base: f64 },
    Log { lo: i32, hi: i32, base: f64 },
}

impl Scale {
    /// Picks a scale for `values`: log where they span two decades or more.
    fn fit(values: impl Iterator<Item = f64>, fmt: Fmt) -> Scale {
        let positive: Vec<f64> = values.filter(|v| *v > 0.0 && v.is_finite()).collect();
        let max = positive.iter().copied().fold(0.0, f64::max);
        let min = positive.iter().copied().fold(f64::INFINITY, f64::min);
        if positive.is_empty() {
            return Scale::Linear {
                max: 1.0,
                base: 1.0,
            };
        }
        let base = match fmt {
            Fmt::KiB if max >= 2.0 * 1024.0 * 1024.0 => 1024.0 * 1024.0,
            Fmt::KiB if max >= 2.0 * 1024.0 => 1024.0,
            _ => 1.0,
        };
        if max / min >= 100.0 {
            let lo = (min / base).log10().floor() as i32;
            let hi = ((max / base).log10().ceil() as i32).max(lo + 1);
            Scale::Log { lo, hi, base }
        } else {
            let step = nice_step(max / base / 5.0);
            Scale::Linear {
                max: (max / base / step).ceil() * step * base,
                base,
            }
        }
    }

    /// Position of `v` as a fraction of the axis length.
    fn frac(&self, v: f64) -> f64 {
        let f = match *self {
            Scale::Linear { max, .. } => v / max,
            Scale::Log { lo, hi, base } if v > 0.0 => {
                ((v / base).log10() - f64::from(lo)) / f64::from(hi - lo)
            }
            Scale::Log { .. } => 0.0,
        };
        f.clamp(0.0, 1.0)
    }

    /// Tick values along the axis.
    fn ticks(&self) -> Vec<f64> {
        match *self {
            Scale::Linear { max, base } => {
                let step = nice_step(max / base / 5.0);
                let n = (max / base / step).round() as usize;
                (0..=n).map(|i| i as f64 * step * base).collect()
            }
            Scale::Log { lo, hi, base } => {
                let mut ticks = Vec::new();
                for e in lo..=hi {
                    let p = 10f64.powi(e) * base;
                    ticks.push(p);
                    if hi - lo <= 2 && e < hi {
                        ticks.extend([2.0 * p, 5.0 * p]);
                    }
                }
                ticks
            }
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            Scale::Linear { .. } => "linear scale",
            Scale::Log { .. } => "log scale",
        }
    }
}

/// A tick label: the value as printed elsewhere, without trailing zeros
/// (`10 ns`, `1 µs`, `2.5 MiB`).
fn tick_label(fmt: Fmt, v: f64) -> String {
    if v == 0.0 {
        return "0".to_owned();
    }
    let text = fmt.format(v);
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number = if number.contains('.') {
        number.trim_end_matches('0').trim_end_matches('.')
    } else {
        number
    };
    format!("{number}{unit}")
}

/// The smallest of 1, 2, 5 times a power of ten that is at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|step| *step >= raw)
        .unwrap_or(10.0 * mag)
}

fn render(exp: &Experiment, chart: &Chart) -> String {
    let scale = Scale::fit(
        chart
            .groups
            .iter()
            .flat_map(|g| g.bars.iter().filter_map(|b| b.value)),
        chart.fmt,
    );
    let bars_w = WIDTH - BARS_X - VALUE_ROOM;
    let rows: usize = chart.groups.iter().map(|g| g.bars.len()).sum();
    let body_h = chart.groups.len() as f64 * (GROUP_HEAD + GROUP_GAP) + rows as f64 * ROW;
    let height = TOP + body_h + BOTTOM;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="{FONT}">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="16" y="28" font-size="17" font-weight="600" fill="{INK}">{}</text>"#,
        esc(&format!("{}: {}", exp.name, chart.title))
    );
    let _ = writeln!(
        s,
        r#"<text x="16" y="48" font-size="12" fill="{MUTED}">{}</text>"#,
        esc(&format!(
            "{} · lower is better · median of runs · {} · cenote in orange",
            exp.title,
            scale.describe()
        ))
    );

    // Grid and tick labels.
    let grid_bottom = TOP + body_h;
    for tick in scale.ticks() {
        let x = BARS_X + scale.frac(tick) * bars_w;
        let _ = writeln!(
            s,
            r#"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{grid_bottom:.1}" stroke="{GRID}" stroke-width="1"/>"#,
            TOP - 4.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{x:.1}" y="{:.1}" font-size="11" fill="{MUTED}" text-anchor="middle">{}</text>"#,
            TOP - 10.0,
            esc(&tick_label(chart.fmt, tick))
        );
    }

    let mut y = TOP;
    for group in &chart.groups {
        let _ = writeln!(
            s,
            r#"<rect x="8" y="{:.1}" width="{:.1}" height="{:.1}" fill="{BAND}"/>"#,
            y + 2.0,
            WIDTH - 16.0,
            GROUP_HEAD - 4.0
        );
        let _ = writeln!(
            s,
            r#"<text x="16" y="{:.1}" font-size="13" font-weight="600" fill="{INK}">{}</text>"#,
            y + 16.0,
            esc(&group.scenario)
        );
        y += GROUP_HEAD;
        for bar in &group.bars {
            let mid = y + ROW / 2.0;
            let (colour, weight) = match bar.imp.as_str() {
                "cenote" => (CENOTE, "600"),
                imp if imp.starts_with("cenote") => (CENOTE_ALT, "600"),
                _ => (PEER, "400"),
            };
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" font-size="12" font-weight="{weight}" fill="{INK}" text-anchor="end">{}</text>"#,
                BARS_X - 8.0,
                mid + 4.0,
                esc(&bar.imp)
            );
            match (bar.value, &bar.failed) {
                (Some(v), _) => {
                    let w = scale.frac(v) * bars_w;
                    let _ = writeln!(
                        s,
                        r#"<rect x="{BARS_X}" y="{:.1}" width="{w:.1}" height="{BAR}" rx="2" fill="{colour}"/>"#,
                        mid - BAR / 2.0
                    );
                    let _ = writeln!(
                        s,
                        r#"<text x="{:.1}" y="{:.1}" font-size="11" font-weight="{weight}" fill="{INK}">{}</text>"#,
                        BARS_X + w + 6.0,
                        mid + 4.0,
                        esc(&chart.fmt.format(v))
                    );
                }
                (None, failed) => {
                    let reason = failed.as_deref().unwrap_or("no value");
                    let _ = writeln!(
                        s,
                        r#"<text x="{:.1}" y="{:.1}" font-size="11" font-style="italic" fill="{FAILED}">{}</text>"#,
                        BARS_X + 4.0,
                        mid + 4.0,
                        esc(&truncate(&format!("DNF: {reason}"), 110))
                    );
                }
            }
            y += ROW;
        }
        y += GROUP_GAP;
    }
    s.push_str("</svg>\n");
    s
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        text.chars().take(max - 3).collect::<String>() + "..."
    }
}

/// Escapes text for an SVG text node or attribute.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_steps_and_tick_labels() {
        assert_eq!(nice_step(0.3), 0.5);
        assert_eq!(nice_step(17.0), 20.0);
        assert_eq!(tick_label(Fmt::Nanos, 1_000.0), "1 µs");
        assert_eq!(tick_label(Fmt::Nanos, 10.0), "10 ns");
        assert_eq!(tick_label(Fmt::KiB, 2.5 * 1024.0), "2.5 MiB");
        assert_eq!(tick_label(Fmt::KiB, 0.0), "0");
    }

    #[test]
    fn wide_ranges_get_a_log_scale() {
        let scale = Scale::fit([40.0, 40_000.0].into_iter(), Fmt::Nanos);
        assert!(matches!(scale, Scale::Log { lo: 1, hi: 5, .. }));
        let scale = Scale::fit([4.0, 9.0].into_iter(), Fmt::Nanos);
        assert!(matches!(scale, Scale::Linear { .. }));
    }
}
