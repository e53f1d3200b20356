//! The peer: redis-semaphore (npm), on Node.js, against the same Redis.
//! The bench installs it (pinned, with ioredis) into a cache folder on
//! first use, or says how to get Node.js and npm; each measuring process
//! runs `runner.js`, written next to it.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde::Deserialize;

/// The versions installed.
const PACKAGES: [&str; 2] = ["redis-semaphore@5.8.0", "ioredis@5"];

/// One Node process's share: `tasks` concurrent tasks, `ops` acquire +
/// release cycles in all, each task with its own `Semaphore` object
/// (redis-semaphore's identifier is per object), polling every 10 ms (its
/// default retry interval) while the permits are taken.
const RUNNER: &str = r#"
const { Semaphore } = require('redis-semaphore');
const Redis = require('ioredis');
const [url, key, cap, tasks, ops] = process.argv.slice(2);
const client = new Redis(url);
const each = Math.max(1, Math.floor(Number(ops) / Number(tasks)));
const waits = [];
async function task() {
  for (let i = 0; i < each; i++) {
    const s = new Semaphore(client, key, Number(cap), {
      acquireTimeout: 120000, lockTimeout: 10000, retryInterval: 10,
    });
    const t0 = process.hrtime.bigint();
    await s.acquire();
    waits.push(Number((process.hrtime.bigint() - t0) / 1000n));
    await s.release();
  }
}
(async () => {
  await client.ping();
  const start_ms = Date.now();
  await Promise.all(Array.from({ length: Number(tasks) }, task));
  const end_ms = Date.now();
  console.log('@redis-semaphore ' + JSON.stringify({ start_ms, end_ms, waits_us: waits }));
  client.disconnect();
})().catch((e) => { console.error(String(e)); process.exit(1); });
"#;

/// A holder for the fault table: `tasks` tasks acquire, count themselves
/// in the hash `count_key` on the counting Redis (field `id`), work 300 to
/// 900 ms (or `job_ms`, if not 0) or until redis-semaphore reports the lock
/// lost (`onLockLost`), uncount and release, for `run_ms`.
const HOLDER: &str = r#"
const { Semaphore } = require('redis-semaphore');
const Redis = require('ioredis');
const [url, name, cap, tasks, leaseMs, runMs, countUrl, countKey, id, jobMs] = process.argv.slice(2);
const client = new Redis(url, { maxRetriesPerRequest: 1 });
const counter = new Redis(countUrl);
client.on('error', () => {});
process.on('unhandledRejection', () => {});
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const t0 = Date.now();
async function task(seed) {
  let i = seed;
  while (Date.now() - t0 < Number(runMs)) {
    i++;
    let lost;
    const lostP = new Promise((r) => { lost = r; });
    const s = new Semaphore(client, name, Number(cap), {
      lockTimeout: Number(leaseMs), acquireTimeout: 2000, retryInterval: 10,
      onLockLost: () => lost(),
    });
    try { await s.acquire(); } catch (e) { await sleep(20); continue; }
    await counter.hincrby(countKey, id, 1);
    const job = Number(jobMs) > 0 ? Number(jobMs) : 300 + (i * 137) % 600;
    await Promise.race([sleep(job), lostP]);
    await counter.hincrby(countKey, id, -1);
    try { await s.release(); } catch (e) {}
  }
}
Promise.all(Array.from({ length: Number(tasks) }, (_, t) => task(t)))
  .then(() => process.exit(0));
"#;

/// What one Node process reports.
#[derive(Debug, Deserialize)]
pub struct NodeRun {
    pub start_ms: u64,
    pub end_ms: u64,
    pub waits_us: Vec<u32>,
}

/// The folder the package lives in: `$CENOTE_BENCH_CACHE`, else
/// `$XDG_CACHE_HOME/cenote-bench/node`, else `~/.cache/cenote-bench/node`.
fn folder() -> PathBuf {
    if let Some(d) = std::env::var_os("CENOTE_BENCH_CACHE") {
        return PathBuf::from(d).join("node");
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("cenote-bench").join("node")
}

/// The runner's path, the package installed first if missing.
pub fn prepare() -> Result<PathBuf, String> {
    write("runner.js", RUNNER)
}

/// The fault holder's path, the package installed first if missing.
pub fn prepare_holder() -> Result<PathBuf, String> {
    write("holder.js", HOLDER)
}

/// Installs the package if missing, and writes `script` next to it.
fn write(file: &str, script: &str) -> Result<PathBuf, String> {
    let dir = folder();
    let how = "install Node.js and npm (apt-get install nodejs npm), with the npm registry \
               reachable, or leave out the redis-semaphore rows (--filter cenote)";
    if !dir.join("node_modules/redis-semaphore").exists() {
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let status = Command::new("npm")
            .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .args(PACKAGES)
            .stdout(Stdio::null())
            .status()
            .map_err(|e| format!("redis-semaphore skipped: npm: {e}; {how}"))?;
        if !status.success() {
            return Err(format!(
                "redis-semaphore skipped: npm install failed; {how}"
            ));
        }
    }
    let path = dir.join(file);
    std::fs::write(&path, script).map_err(|e| e.to_string())?;
    Ok(path)
}

/// Starts one Node process running `runner`.
pub fn start(
    runner: &PathBuf,
    url: &str,
    key: &str,
    cap: u64,
    tasks: usize,
    ops: u64,
) -> Result<std::process::Child, String> {
    Command::new("node")
        .arg(runner)
        .args([
            url,
            key,
            &cap.to_string(),
            &tasks.to_string(),
            &ops.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("redis-semaphore skipped: node: {e}"))
}

/// The report of a finished Node process.
pub fn finish(child: std::process::Child) -> Result<NodeRun, String> {
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("@redis-semaphore "))
        .ok_or_else(|| {
            format!(
                "a redis-semaphore process failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    serde_json::from_str(line).map_err(|e| e.to_string())
}
