//! What a run was measured on and with: the CPU, the date, and the exact
//! versions of cenote and of the peer crates.
//!
//! The versions come from the workspace `Cargo.lock`, embedded at compile
//! time, for the crates that `cenote-bench`'s own `Cargo.toml` depends on
//! (tooling crates such as clap left out).

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

/// The workspace lock file, as built.
const LOCK: &str = include_str!("../../Cargo.lock");

/// `cenote-bench`'s manifest: its `[dependencies]` name the measured crates.
const MANIFEST: &str = include_str!("../Cargo.toml");

/// Dependencies that are tooling of the benchmark, not measured crates.
const TOOLING: &[&str] = &["clap", "indicatif", "libc", "serde", "serde_json"];

/// The CPU model of this machine, from `/proc/cpuinfo`.
pub fn cpu_model() -> Option<String> {
    cpu_model_from(&std::fs::read_to_string("/proc/cpuinfo").ok()?)
}

/// The CPU model named in the text of a `/proc/cpuinfo`: its `model name`
/// (x86), else the first of the fields other architectures use.
pub fn cpu_model_from(cpuinfo: &str) -> Option<String> {
    ["model name", "Hardware", "Processor", "cpu model", "cpu"]
        .iter()
        .find_map(|key| {
            cpuinfo.lines().find_map(|line| {
                let (k, v) = line.split_once(':')?;
                let v = v.trim();
                (k.trim() == *key && !v.is_empty()).then(|| v.to_owned())
            })
        })
}

/// Logical CPUs this process may run on.
pub fn logical_cpus() -> usize {
    std::thread::available_parallelism().map_or(0, usize::from)
}

/// The current time in UTC, ISO 8601 to the second (`2024-05-06T07:08:09Z`).
pub fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    iso8601_utc(secs)
}

/// `secs` since the Unix epoch as an ISO 8601 UTC date and time.
pub fn iso8601_utc(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The proleptic Gregorian date of day `z` since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Versions of cenote and of every measured crate, by crate name, as
/// resolved in the workspace `Cargo.lock` (`?` where the lock has none; two
/// versions of one crate are joined with `+`).
pub fn versions() -> BTreeMap<String, String> {
    versions_from(LOCK, &measured_crates(MANIFEST))
}

/// The crates of `names` with their versions in the lock file `lock`.
pub fn versions_from(lock: &str, names: &[String]) -> BTreeMap<String, String> {
    let packages = parse_lock(lock);
    names
        .iter()
        .map(|name| {
            let found: Vec<&str> = packages
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .collect();
            let version = if found.is_empty() {
                "?".to_owned()
            } else {
                found.join("+")
            };
            (name.clone(), version)
        })
        .collect()
}

/// The measured crates: the `[dependencies]` of `manifest` (a Cargo.toml)
/// but the tooling ones, in the manifest's order.
pub fn measured_crates(manifest: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_deps = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if !in_deps || line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((name, _)) = line.split_once('=') {
            let name = name.trim().trim_matches('"');
            if !name.is_empty() && !TOOLING.contains(&name) {
                out.push(name.to_owned());
            }
        }
    }
    out
}

/// `(name, version)` of every `[[package]]` entry of a `Cargo.lock`.
pub fn parse_lock(lock: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut name: Option<String> = None;
    for line in lock.lines().map(str::trim) {
        if line.starts_with('[') {
            name = None;
        } else if let Some(v) = quoted_value(line, "name") {
            name = Some(v);
        } else if let Some(v) = quoted_value(line, "version") {
            if let Some(n) = name.take() {
                out.push((n, v));
            }
        }
    }
    out
}

/// `value` of a line of the form `key = "value"`.
fn quoted_value(line: &str, key: &str) -> Option<String> {
    let rest = line.strip_prefix(key)?.trim_start().strip_prefix('=')?;
    let value = rest.trim().strip_prefix('"')?.strip_suffix('"')?;
    Some(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCK_SAMPLE: &str = r#"# This file is automatically @generated by Cargo.
version = 3

[[package]]
name = "bb8"
version = "0.9.1"
source = "registry+https://github.com/rust-lang/crates.io-index"
dependencies = [
 "futures-util",
]

[[package]]
name = "cenote"
version = "0.1.0"

[[package]]
name = "rand"
version = "0.7.3"

[[package]]
name = "rand"
version = "0.8.5"

[metadata]
version = "9.9.9"
"#;

    #[test]
    fn lock_parsing_finds_every_package_once() {
        assert_eq!(
            parse_lock(LOCK_SAMPLE),
            [
                ("bb8".to_owned(), "0.9.1".to_owned()),
                ("cenote".to_owned(), "0.1.0".to_owned()),
                ("rand".to_owned(), "0.7.3".to_owned()),
                ("rand".to_owned(), "0.8.5".to_owned()),
            ]
        );
    }

    #[test]
    fn versions_join_duplicates_and_mark_missing_crates() {
        let names = ["bb8", "rand", "qp"].map(str::to_owned);
        let v = versions_from(LOCK_SAMPLE, &names);
        assert_eq!(v["bb8"], "0.9.1");
        assert_eq!(v["rand"], "0.7.3+0.8.5");
        assert_eq!(v["qp"], "?");
        assert_eq!(v.len(), 3);
    }

    #[test]
    fn measured_crates_are_the_dependencies_but_tooling() {
        let manifest = "[package]\nname = \"x\"\nversion = \"1\"\n\n[dependencies]\n\
                        cenote = { path = \"../cenote\" }\nclap = \"4\"\n# a comment\n\
                        rayon = \"1.12.0\"\n\n[dev-dependencies]\nproptest = \"1\"\n";
        assert_eq!(measured_crates(manifest), ["cenote", "rayon"]);
    }

    #[test]
    fn every_measured_crate_of_this_build_has_a_locked_version() {
        let v = versions();
        for name in ["cenote", "threadpool", "rayon", "tokio", "deadpool", "bb8"] {
            assert!(v.contains_key(name), "{name} missing from {v:?}");
        }
        assert!(!v.contains_key("clap"));
        let missing: Vec<_> = v.iter().filter(|(_, ver)| *ver == "?").collect();
        assert!(missing.is_empty(), "no version for {missing:?}");
    }

    #[test]
    fn cpu_model_comes_from_model_name() {
        let x86 = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) \
                   Processor\nprocessor\t: 1\nmodel name\t: Intel(R) Xeon(R) Processor\n";
        assert_eq!(
            cpu_model_from(x86).as_deref(),
            Some("Intel(R) Xeon(R) Processor")
        );
        let arm = "processor\t: 0\nBogoMIPS\t: 48.00\nHardware\t: BCM2835\n";
        assert_eq!(cpu_model_from(arm).as_deref(), Some("BCM2835"));
        assert_eq!(cpu_model_from("processor\t: 0\n"), None);
    }

    #[test]
    fn iso8601_dates() {
        assert_eq!(iso8601_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601_utc(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(iso8601_utc(1_735_689_600), "2025-01-01T00:00:00Z");
    }
}
