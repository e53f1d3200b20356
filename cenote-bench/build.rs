//! Build script: records the resolved versions of cenote and of every peer
//! crate from the workspace `Cargo.lock`, so that the report header names the
//! exact code that was measured.
//!
//! The result is exported as the compile-time environment variable
//! `CENOTE_BENCH_VERSIONS`, formatted `name=version;name=version;...`.

use std::{env, fs, path::PathBuf};

/// Crates whose versions the report prints, in display order.
const CRATES: &[&str] = &[
    "cenote",
    "threadpool",
    "rayon",
    "rayon-core",
    "rusty_pool",
    "tokio",
    "crossbeam-channel",
    "object-pool",
    "lockfree-object-pool",
    "opool",
    "sharded-slab",
    "crossbeam-queue",
    "futures-util",
    "deadpool",
    "bb8",
    "mobc",
    "qp",
    "r2d2",
];

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let lock_path = manifest_dir.join("..").join("Cargo.lock");
    println!("cargo::rerun-if-changed={}", lock_path.display());
    println!("cargo::rerun-if-changed=build.rs");

    let lock = fs::read_to_string(&lock_path).unwrap_or_default();
    let packages = parse_lock(&lock);
    let versions: Vec<String> = CRATES
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
            format!("{name}={version}")
        })
        .collect();
    println!(
        "cargo::rustc-env=CENOTE_BENCH_VERSIONS={}",
        versions.join(";")
    );
}

/// Extracts `(name, version)` of every `[[package]]` entry of a `Cargo.lock`.
fn parse_lock(lock: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut name: Option<String> = None;
    for line in lock.lines().map(str::trim) {
        if line == "[[package]]" {
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

/// Returns `value` for a line of the form `key = "value"`.
fn quoted_value(line: &str, key: &str) -> Option<String> {
    let rest = line.strip_prefix(key)?.trim_start().strip_prefix('=')?;
    let value = rest.trim().strip_prefix('"')?.strip_suffix('"')?;
    Some(value.to_owned())
}
