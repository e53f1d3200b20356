//! `cenote-bench fleet`: cenote-fleet's fleet-wide semaphore on the Redis
//! in `CENOTE_REDIS_URL` (without it, it says how to get one and runs
//! nothing). An uncontended acquire + release against its floor, a `PING`
//! round trip; and grants per second from 1 and 4 processes against the
//! ceiling: the rate at which the same Redis runs a trivial three-command
//! Lua script for as many tasks (a grant takes two calls, an acquire and a
//! release, so half that rate bounds any one-script-per-call protocol).
//!
//! With several processes, the measuring child starts the others
//! (`cenote-bench __fleet-worker`), waits until each has connected, then
//! releases them all at once through a Redis list; each reports its waits.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub mod faults;
mod handoff;
mod node_peer;

use handoff::{Turn, Turns};

use super::databases::loops;
use super::resources::contended_outcome;
use super::{column, count_label, Case, Experiment, Quantity, Unit};
use crate::harness::Outcome;
use crate::peers::Impl;

pub const DIRECT: &str = "fleet/direct";

/// The worker processes' line of results.
const WORKER_TAG: &str = "@fleet-worker ";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FleetParams {
    pub url: String,
    /// Processes, each with `tasks` tasks.
    pub processes: usize,
    pub tasks: usize,
    pub cap: u64,
    /// Operations in all (grants, script calls or pings).
    pub ops: u64,
    /// Record each grant's turn (token, grant and release times), for the
    /// hand-off latency.
    #[serde(default)]
    pub handoff: bool,
    /// Local-share mode: blocks of at most this many permits served
    /// locally (0: direct mode).
    #[serde(default)]
    pub share_block: u64,
}

/// What a worker process reports.
#[derive(Debug, Default, Serialize, Deserialize)]
struct WorkerOut {
    waits: Vec<u32>,
    turns: Vec<Turn>,
}

/// What a worker process is told.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkerSpec {
    pub imp: String,
    pub params: FleetParams,
    /// The semaphore's (and the lists') name for this run.
    pub name: String,
}

fn url() -> Option<String> {
    std::env::var("CENOTE_REDIS_URL")
        .ok()
        .filter(|v| !v.is_empty())
}

/// Says how to get a server, when the URL is missing.
pub fn missing_server() -> Option<String> {
    url().is_none().then(|| {
        "fleet: CENOTE_REDIS_URL not set; nothing to run for it. Start a Redis \
         (apt-get install redis-server) and set CENOTE_REDIS_URL=redis://127.0.0.1:6379"
            .to_owned()
    })
}

pub fn plan(smoke: bool) -> Vec<Experiment> {
    let Some(url) = url() else {
        return Vec::new();
    };
    let mut cases = Vec::new();
    let one = FleetParams {
        url: url.clone(),
        processes: 1,
        tasks: 1,
        cap: 10,
        ops: if smoke { 100 } else { 4_000 },
        handoff: false,
        share_block: 0,
    };
    let scenario = format!("uncontended/cap=10/{}", count_label(one.ops));
    for imp in [Impl::Cenote, Impl::RedisPing] {
        cases.push(Case::new(&scenario, imp, &one));
    }
    let cells: &[(usize, usize, u64)] = if smoke {
        &[(1, 16, 10)]
    } else {
        &[
            (1, 16, 10),
            (1, 64, 10),
            (1, 16, 100),
            (1, 64, 100),
            (4, 16, 10),
            (4, 64, 10),
            (4, 16, 100),
            (4, 64, 100),
        ]
    };
    for &(processes, tasks, cap) in cells {
        let p = FleetParams {
            url: url.clone(),
            processes,
            tasks,
            cap,
            ops: if smoke { 320 } else { 20_000 },
            handoff: false,
            share_block: 0,
        };
        let scenario = format!(
            "procs={processes}/tasks={tasks}/cap={cap}/{}",
            count_label(p.ops)
        );
        for imp in [Impl::Cenote, Impl::LuaCeiling] {
            cases.push(Case::new(&scenario, imp, &p));
        }
    }
    // Against redis-semaphore: fewer grants (it polls every 10 ms).
    let peer_cells: &[(usize, usize, u64)] = if smoke {
        &[]
    } else {
        &[(1, 16, 10), (4, 16, 10), (1, 64, 100)]
    };
    for &(processes, tasks, cap) in peer_cells {
        let p = FleetParams {
            url: url.clone(),
            processes,
            tasks,
            cap,
            ops: 2_000,
            handoff: false,
            share_block: 0,
        };
        let scenario = format!(
            "vs-redis-semaphore/procs={processes}/tasks={tasks}/cap={cap}/{}",
            count_label(p.ops)
        );
        for imp in [Impl::Cenote, Impl::RedisSemaphore] {
            cases.push(Case::new(&scenario, imp, &p));
        }
    }
    let shared_cells: &[(usize, u64)] = if smoke {
        &[(1, 100)]
    } else {
        &[(1, 100), (4, 100)]
    };
    for &(processes, cap) in shared_cells {
        let p = FleetParams {
            url: url.clone(),
            processes,
            tasks: 16,
            cap,
            ops: if smoke { 10_000 } else { 4_000_000 },
            handoff: false,
            share_block: cap / processes as u64,
        };
        let scenario = format!(
            "local-share/procs={processes}/tasks=16/cap={cap}/{}",
            count_label(p.ops)
        );
        cases.push(Case::new(&scenario, Impl::Cenote, &p));
    }
    let handoff: &[usize] = if smoke { &[1] } else { &[1, 4] };
    for &processes in handoff {
        let p = FleetParams {
            url: url.clone(),
            processes,
            tasks: 16,
            cap: 1,
            ops: if smoke { 100 } else { 4_000 },
            handoff: true,
            share_block: 0,
        };
        let scenario = format!(
            "handoff/procs={processes}/tasks=16/cap=1/{}",
            count_label(p.ops)
        );
        cases.push(Case::new(&scenario, Impl::Cenote, &p));
    }
    let mut plan = Vec::new();
    if !smoke {
        plan.push(faults::experiment(&url));
    }
    plan.insert(
        0,
        Experiment {
            name: DIRECT,
            title:
                "cenote-fleet on Redis: acquire + release, and grants per second across processes"
                    .to_owned(),
            notes: vec![
            "cenote: cenote-fleet (ttl 10 s), each task acquires one permit and drops the lease \
             (released in the background), in a loop; tasks per process on a multi-thread tokio \
             runtime; with procs=4, four processes started together. redis-ping: PING round \
             trips, the floor of any call. lua-ceiling: the same tasks call a trivial \
             three-command Lua script (EVALSHA) in a loop; a grant takes two calls, so half its \
             rate is the ceiling of grants. Per op: a grant (cenote), a call (lua-ceiling), a \
             PING (redis-ping). wait: the acquire's time (the call's for the peers)."
                .to_owned(),
            "handoff: one permit, 16 tasks per process, each releasing at once: every grant \
             goes to a queued waiter, in any process. wake: from the start of a release to \
             the grant of the next token (the wall clock, shared by the processes); compare \
             with the PING round trip of the uncontended rows."
                .to_owned(),
            "redis-semaphore: the npm package (5.8.0, on ioredis) in Node.js processes, one \
             Semaphore object per acquire (lockTimeout 10 s, its default retry interval of \
             10 ms), installed by the bench into ~/.cache/cenote-bench/node on first use."
                .to_owned(),
            "local-share: each process serves its tasks from a LocalShare (blocks of at most \
             cap / procs permits leased from the fleet, idle 1 s), each task taking and \
             dropping a local permit in a loop; ops/s is per process when procs=1, and for \
             all processes together otherwise."
                .to_owned(),
        ],
            headline: Quantity::PerOp,
            per_op_title: "time per operation (wall / ops; 1 / throughput)",
            columns: vec![
                column("ops_per_s", "ops/s", Unit::Plain(0), false),
                column("wait_p50_us", "wait p50", Unit::Micros, false),
                column("wait_p99_us", "wait p99", Unit::Micros, true),
                column("wake_p50_us", "wake p50", Unit::Micros, false),
                column("wake_p99_us", "wake p99", Unit::Micros, true),
            ],
            cases,
        },
    );
    plan
}

/// One prepared process's share of the work.
enum Runner {
    /// The semaphore, and where turns go if they are recorded.
    Cenote(cenote_fleet::Semaphore, Option<Turns>),
    /// A local share of the semaphore (kept alive by it).
    Share(cenote_fleet::LocalShare, cenote_fleet::Semaphore),
    Ping(redis::aio::MultiplexedConnection),
    Lua(redis::aio::MultiplexedConnection, redis::Script, String),
}

const CEILING_SCRIPT: &str = "redis.call('INCR', KEYS[1]); redis.call('GET', KEYS[1]); \
                              redis.call('DECR', KEYS[1]); return 1";

impl Runner {
    async fn new(imp: Impl, p: &FleetParams, name: &str) -> Result<Runner, String> {
        let client = redis::Client::open(p.url.as_str()).map_err(err)?;
        Ok(match imp {
            Impl::Cenote => {
                let sem = cenote_fleet::Semaphore::builder(&p.url, name, p.cap)
                    .acquire_timeout(Duration::from_secs(60))
                    .build()
                    .await
                    .map_err(err)?;
                if p.share_block > 0 {
                    let share = sem
                        .local_share(p.share_block, Duration::from_secs(1))
                        .map_err(err)?;
                    Runner::Share(share, sem)
                } else {
                    Runner::Cenote(sem, p.handoff.then(Turns::default))
                }
            }
            Impl::RedisPing => Runner::Ping(
                client
                    .get_multiplexed_async_connection()
                    .await
                    .map_err(err)?,
            ),
            Impl::LuaCeiling => Runner::Lua(
                client
                    .get_multiplexed_async_connection()
                    .await
                    .map_err(err)?,
                redis::Script::new(CEILING_SCRIPT),
                format!("{{cenote:bench:{name}}}:ceiling"),
            ),
            other => return Err(format!("{} does not run {DIRECT}", other.name())),
        })
    }

    /// `tasks` tasks doing `each` operations; each task's start and
    /// waits, and the turns recorded.
    async fn run(
        self,
        tasks: usize,
        each: u64,
    ) -> Result<(Vec<(Instant, Vec<u32>)>, Vec<Turn>), String> {
        let turns = match &self {
            Runner::Cenote(_, t) => t.clone(),
            _ => None,
        };
        let runner = std::sync::Arc::new(self);
        let kept = runner.clone();
        let waits = loops(tasks, each, move |_| {
            let runner = runner.clone();
            async move {
                let t0 = Instant::now();
                runner.once().await?;
                Ok(t0.elapsed())
            }
        })
        .await?;
        // The last leases' releases reach Redis before the process ends
        // (otherwise their permits stay held for the TTL, and the other
        // processes wait).
        let sem = match std::sync::Arc::try_unwrap(kept) {
            Ok(Runner::Cenote(sem, _)) => Some(sem),
            // The share's blocks go back as it drops.
            Ok(Runner::Share(share, sem)) => {
                drop(share);
                Some(sem)
            }
            _ => None,
        };
        if let Some(sem) = sem {
            sem.shutdown_timeout(Duration::from_secs(5))
                .await
                .map_err(err)?;
        }
        Ok((waits, turns.map(|t| t.take()).unwrap_or_default()))
    }

    async fn once(&self) -> Result<(), String> {
        match self {
            Runner::Cenote(sem, turns) => {
                let lease = sem.acquire().await.map_err(err)?;
                if let Some(turns) = turns {
                    let granted_us = handoff::now_us();
                    let token = lease.token();
                    turns.push(Turn {
                        token,
                        granted_us,
                        released_us: handoff::now_us(),
                    });
                }
                drop(lease);
            }
            Runner::Share(share, _) => {
                let permit = share.acquire().await.map_err(err)?;
                drop(permit);
            }
            Runner::Ping(c) => {
                let _: String = redis::cmd("PING")
                    .query_async(&mut c.clone())
                    .await
                    .map_err(err)?;
            }
            Runner::Lua(c, script, key) => {
                let _: i64 = script
                    .key(key)
                    .invoke_async(&mut c.clone())
                    .await
                    .map_err(err)?;
            }
        }
        Ok(())
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// The lists a run's processes meet on.
fn ready_key(name: &str) -> String {
    format!("{{cenote:bench:{name}}}:ready")
}

fn go_key(name: &str) -> String {
    format!("{{cenote:bench:{name}}}:go")
}

/// Runs one case in this (child) process, starting the other processes.
pub fn run(imp: Impl, p: &FleetParams) -> Result<Outcome, String> {
    if imp == Impl::RedisSemaphore {
        return run_node(p);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(err)?;
    let name = format!("bench-{}", std::process::id());
    let outcome = rt.block_on(measure(imp, p, &name));
    rt.block_on(cleanup(&p.url, &name));
    std::mem::forget(rt);
    outcome
}

/// redis-semaphore: `processes` Node processes, each with `tasks` tasks
/// and its share of the grants.
fn run_node(p: &FleetParams) -> Result<Outcome, String> {
    let runner = node_peer::prepare()?;
    let name = format!("bench-{}", std::process::id());
    let key = format!("{{cenote:bench:{name}}}:redis-semaphore");
    let share = (p.ops / p.processes as u64).max(1);
    let children = (0..p.processes)
        .map(|_| node_peer::start(&runner, &p.url, &key, p.cap, p.tasks, share))
        .collect::<Result<Vec<_>, _>>()?;
    let runs = children
        .into_iter()
        .map(node_peer::finish)
        .collect::<Result<Vec<_>, _>>()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(err)?;
    rt.block_on(cleanup(&p.url, &name));
    let first = runs.iter().map(|r| r.start_ms).min().unwrap_or(0);
    let last = runs.iter().map(|r| r.end_ms).max().unwrap_or(first);
    let wall = Duration::from_millis(last.saturating_sub(first).max(1));
    let waits: Vec<u32> = runs
        .into_iter()
        .flat_map(|r| r.waits_us)
        .map(|us| us.saturating_mul(1_000))
        .collect();
    let ops = waits.len() as u64;
    let ended = Instant::now();
    Ok(contended_outcome(ended, ops, vec![(ended - wall, waits)]))
}

async fn measure(imp: Impl, p: &FleetParams, name: &str) -> Result<Outcome, String> {
    let each = (p.ops / (p.processes * p.tasks) as u64).max(1);
    let total = each * (p.processes * p.tasks) as u64;
    let runner = Runner::new(imp, p, name).await?;
    let spec = WorkerSpec {
        imp: imp.name().to_owned(),
        params: p.clone(),
        name: name.to_owned(),
    };
    let workers = (1..p.processes)
        .map(|_| start_worker(&spec))
        .collect::<Result<Vec<_>, _>>()?;
    let mut conn = redis::Client::open(p.url.as_str())
        .map_err(err)?
        .get_multiplexed_async_connection()
        .await
        .map_err(err)?;
    for _ in 1..p.processes {
        let _: (String, String) = redis::cmd("BLPOP")
            .arg(ready_key(name))
            .arg(60)
            .query_async(&mut conn)
            .await
            .map_err(|e| format!("a worker process never got ready: {e}"))?;
    }
    if p.processes > 1 {
        // One element per worker (a Vec<u8> would be one binary value).
        let go: Vec<&str> = vec!["go"; p.processes - 1];
        let _: () = redis::cmd("RPUSH")
            .arg(go_key(name))
            .arg(go)
            .query_async(&mut conn)
            .await
            .map_err(err)?;
    }
    let go = Instant::now();
    let (mut all, mut turns) = runner.run(p.tasks, each).await?;
    for w in workers {
        let out = tokio::task::spawn_blocking(move || w.wait_with_output())
            .await
            .map_err(err)?
            .map_err(err)?;
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix(WORKER_TAG))
            .ok_or_else(|| {
                format!(
                    "a worker process failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })?;
        let out: WorkerOut = serde_json::from_str(line).map_err(err)?;
        all.push((go, out.waits));
        turns.extend(out.turns);
    }
    let outcome = contended_outcome(Instant::now(), total, all);
    if !p.handoff {
        return Ok(outcome);
    }
    let wakes = handoff::handoffs(turns);
    Ok(outcome
        .metric("wake_p50_us", handoff::quantile(&wakes, 0.5))
        .metric("wake_p99_us", handoff::quantile(&wakes, 0.99)))
}

fn start_worker(spec: &WorkerSpec) -> Result<std::process::Child, String> {
    Command::new(std::env::current_exe().map_err(err)?)
        .arg("__fleet-worker")
        .arg(serde_json::to_string(spec).map_err(err)?)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(err)
}

/// A worker process: prepares, says it is ready, waits for the go, runs
/// its share and prints its waits.
pub fn worker_main(spec: &str) -> std::process::ExitCode {
    let result = (|| -> Result<WorkerOut, String> {
        let spec: WorkerSpec = serde_json::from_str(spec).map_err(err)?;
        let imp = Impl::from_name(&spec.imp).ok_or("unknown impl")?;
        let p = &spec.params;
        let each = (p.ops / (p.processes * p.tasks) as u64).max(1);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(err)?;
        rt.block_on(async {
            let runner = Runner::new(imp, p, &spec.name).await?;
            let mut conn = redis::Client::open(p.url.as_str())
                .map_err(err)?
                .get_multiplexed_async_connection()
                .await
                .map_err(err)?;
            let _: () = redis::cmd("RPUSH")
                .arg(ready_key(&spec.name))
                .arg(1)
                .query_async(&mut conn)
                .await
                .map_err(err)?;
            let _: (String, String) = redis::cmd("BLPOP")
                .arg(go_key(&spec.name))
                .arg(60)
                .query_async(&mut conn)
                .await
                .map_err(err)?;
            let (all, turns) = runner.run(p.tasks, each).await?;
            Ok(WorkerOut {
                waits: all.into_iter().flat_map(|(_, w)| w).collect(),
                turns,
            })
        })
    })();
    match result {
        Ok(out) => {
            println!(
                "{WORKER_TAG}{}",
                serde_json::to_string(&out).unwrap_or_default()
            );
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Deletes the run's keys (the semaphore's and the meeting lists).
async fn cleanup(url: &str, name: &str) {
    let Ok(client) = redis::Client::open(url) else {
        return;
    };
    let Ok(mut c) = client.get_multiplexed_async_connection().await else {
        return;
    };
    for pattern in [
        format!("{{cenote:fleet:{name}}}*"),
        format!("{{cenote:bench:{name}}}*"),
    ] {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(pattern)
            .query_async(&mut c)
            .await
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query_async(&mut c).await;
        }
    }
}
