//! `fleet/faults`: the same faults with cenote-fleet's holders and with
//! redis-semaphore's, under one checker. The semaphore lives on a private
//! `redis-server` the bench starts; every holder counts itself in a hash
//! on the shared Redis (`HINCRBY` after its grant, back before its
//! release, or as soon as it learns its lease is lost), and the checker
//! reads the sum every 2 ms on its own clock, so skewed holders cannot
//! hide an overshoot.
//!
//! - `sigkill`: a holder process that holds a permit is killed with
//!   SIGKILL. recover: from the kill until the live holders fill the cap
//!   again (its permit comes back when its lease expires).
//! - `restart`: the server restarts without persistence under load.
//!   recover: from the restart until the live holders fill the cap again.
//! - `skew`: two of the four processes run under libfaketime, at +5 s and
//!   at -5 s, from the start.
//! - `black-hole`: every holder process reaches the server through a fault
//!   proxy of its own, and jobs last two leases; the proxy of a process
//!   that holds a permit then swallows its traffic both ways (connections
//!   open, nothing answered). Its holders must stop counting themselves
//!   before anyone else is granted their permits. recover: from the black
//!   hole until the other processes fill the cap.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cenote_fault_proxy::{Proxy, RedisServer, Toxics};
use serde::{Deserialize, Serialize};

use super::node_peer;
use crate::experiments::{column, Case, Experiment, Quantity, Unit};
use crate::harness::Outcome;
use crate::peers::Impl;

pub const FAULTS: &str = "fleet/faults";

/// Holder processes, tasks in each, and the cap.
const PROCESSES: usize = 4;
const TASKS: usize = 2;
const CAP: u64 = 3;
/// The lease: cenote's TTL, redis-semaphore's lockTimeout.
const LEASE_MS: u64 = 2_000;
/// How long the holders run.
const RUN_MS: u64 = 8_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    Sigkill,
    Restart,
    Skew,
    BlackHole,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FaultParams {
    /// The shared Redis, for the holders' count.
    pub url: String,
    pub fault: Fault,
}

/// What a holder process is told (cenote's; redis-semaphore's gets the
/// same as arguments).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HolderSpec {
    pub url: String,
    pub count_url: String,
    pub count_key: String,
    pub id: String,
    pub name: String,
    /// Every job's length (0: 300 to 900 ms).
    #[serde(default)]
    pub job_ms: u64,
}

pub fn experiment(url: &str) -> Experiment {
    let mut cases = Vec::new();
    for fault in [
        Fault::Sigkill,
        Fault::Restart,
        Fault::BlackHole,
        Fault::Skew,
    ] {
        let label = match fault {
            Fault::Sigkill => "sigkill",
            Fault::Restart => "restart-no-persistence",
            Fault::BlackHole => "black-hole",
            Fault::Skew => "clock-skew-5s",
        };
        let scenario = format!("{label}/procs={PROCESSES}x{TASKS}/cap={CAP}");
        let params = FaultParams {
            url: url.to_owned(),
            fault,
        };
        for imp in [Impl::Cenote, Impl::RedisSemaphore] {
            cases.push(Case::new(&scenario, imp, &params));
        }
    }
    let overshoot = column("overshoot", "overshoot", Unit::Plain(0), true);
    Experiment {
        name: FAULTS,
        title: "Fleet faults: holders past the cap, for how long, and recovery".to_owned(),
        notes: vec![format!(
            "{PROCESSES} processes x {TASKS} tasks, cap {CAP}, leases of {LEASE_MS} ms (cenote's \
             TTL, redis-semaphore's lockTimeout, refreshed at its default 80%), jobs of 300 to \
             900 ms, {RUN_MS} ms per run, the semaphore on a private redis-server. A holder \
             counts itself from its grant until its job ends or it learns its lease is lost \
             (cenote: run_until_lost; redis-semaphore: onLockLost). overshoot: the most \
             holders past the cap at once; over: how long the count stayed past the cap; \
             recover: sigkill, from the kill, restart, from the restart, until the live holders \
             fill the cap again; black-hole, from the black hole until the other processes fill \
             the cap. black-hole: jobs of two leases; the fault proxy of a process that holds a \
             permit swallows its traffic (connections open, nothing answered). skew: two \
             processes under libfaketime at +5 s and -5 s."
        )],
        headline: Quantity::Metric(overshoot),
        per_op_title: "run time",
        columns: vec![
            overshoot,
            column("over_ms", "over", Unit::Plain(0), true),
            column("recover_ms", "recover", Unit::Plain(0), true),
        ],
        cases,
    }
}

/// One holder process of `imp`.
fn start_holder(
    imp: Impl,
    spec: &HolderSpec,
    faketime: Option<&str>,
    node: Option<&std::path::Path>,
) -> Result<Child, String> {
    let mut cmd = match faketime {
        Some(offset) => {
            let mut c = Command::new("faketime");
            c.args(["-f", offset]);
            c
        }
        None => Command::new("env"),
    };
    match imp {
        Impl::Cenote => {
            cmd.arg(std::env::current_exe().map_err(|e| e.to_string())?)
                .arg("__fleet-holder")
                .arg(serde_json::to_string(spec).map_err(|e| e.to_string())?);
        }
        _ => {
            cmd.arg("node").arg(node.ok_or("no runner")?).args([
                &spec.url,
                &spec.name,
                &CAP.to_string(),
                &TASKS.to_string(),
                &LEASE_MS.to_string(),
                &RUN_MS.to_string(),
                &spec.count_url,
                &spec.count_key,
                &spec.id,
                &spec.job_ms.to_string(),
            ]);
        }
    }
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("a holder process: {e}"))
}

/// Runs one fault with `imp`'s holders.
pub fn run(imp: Impl, p: &FaultParams) -> Result<Outcome, String> {
    let node = match imp {
        Impl::RedisSemaphore => Some(node_peer::prepare_holder()?),
        _ => None,
    };
    if p.fault == Fault::Skew && Command::new("faketime").arg("--version").output().is_err() {
        return Err("the skew fault needs libfaketime (apt-get install faketime)".to_owned());
    }
    let mut server = RedisServer::start();
    // Each process's way to the server, for the black hole.
    let proxied = match p.fault {
        Fault::BlackHole => Some(ProxyRuntime::start(server.port(), PROCESSES)?),
        _ => None,
    };
    // A fresh server grants nothing for one TTL (cenote cannot tell it
    // from a restart): both start after it.
    std::thread::sleep(Duration::from_millis(LEASE_MS + 100));
    let name = format!("faults-{}", std::process::id());
    let count_key = format!("{{cenote:bench:{name}}}:holding");
    let mut counter = redis::Client::open(p.url.as_str())
        .and_then(|c| c.get_connection())
        .map_err(|e| e.to_string())?;
    let _: () = redis::cmd("DEL")
        .arg(&count_key)
        .query(&mut counter)
        .map_err(|e| e.to_string())?;
    let mut holders = Vec::new();
    let skews: [Option<&str>; PROCESSES] = [Some("+5s"), Some("-5s"), None, None];
    for (i, skew) in skews.into_iter().enumerate() {
        let url = match &proxied {
            Some(p) => p.url(i),
            None => server.url(),
        };
        let spec = HolderSpec {
            url,
            count_url: p.url.clone(),
            count_key: count_key.clone(),
            id: format!("h{i}"),
            name: name.clone(),
            // A black-holed holder's job outlives its lease: only
            // learning of the loss stops it in time.
            job_ms: if p.fault == Fault::BlackHole {
                2 * LEASE_MS
            } else {
                0
            },
        };
        let skew = if p.fault == Fault::Skew { skew } else { None };
        holders.push(start_holder(imp, &spec, skew, node.as_deref())?);
    }
    let t0 = Instant::now();
    let fault_at = Duration::from_millis(RUN_MS / 3);
    let mut faulted: Option<Instant> = None;
    let mut dead: Option<String> = None;
    // The black-holed process: it counts toward an overshoot, not toward
    // the recovery.
    let mut cut: Option<String> = None;
    let (mut most, mut over, mut recovered) = (0i64, Duration::ZERO, None::<Duration>);
    let tick = Duration::from_millis(2);
    while t0.elapsed() < Duration::from_millis(RUN_MS) {
        if faulted.is_none() && t0.elapsed() >= fault_at && p.fault != Fault::Skew {
            match p.fault {
                Fault::Sigkill | Fault::BlackHole => {
                    // A process that holds a permit now.
                    let Some(i) = holding(&mut counter, &count_key)? else {
                        std::thread::sleep(tick);
                        continue;
                    };
                    if let Some(p) = &proxied {
                        p.proxies[i].set(Toxics::none().black_hole());
                        cut = Some(format!("h{i}"));
                    } else {
                        let _ = holders[i].kill();
                        dead = Some(format!("h{i}"));
                    }
                }
                _ => {
                    let port = server.port();
                    server.stop();
                    server = RedisServer::start_on(port);
                }
            }
            faulted = Some(Instant::now());
        }
        let counts: Vec<(String, i64)> = redis::cmd("HGETALL")
            .arg(&count_key)
            .query(&mut counter)
            .map_err(|e| e.to_string())?;
        let live: i64 = counts
            .iter()
            .filter(|(id, _)| Some(id) != dead.as_ref())
            .map(|(_, n)| *n)
            .sum();
        most = most.max(live);
        if live > CAP as i64 {
            over += tick;
        }
        let others: i64 = counts
            .iter()
            .filter(|(id, _)| Some(id) != dead.as_ref() && Some(id) != cut.as_ref())
            .map(|(_, n)| *n)
            .sum();
        if let Some(at) = faulted {
            if recovered.is_none() && others >= CAP as i64 && at.elapsed() > tick {
                recovered = Some(at.elapsed());
            }
        }
        std::thread::sleep(tick);
    }
    for mut h in holders {
        let _ = h.kill();
        let _ = h.wait();
    }
    let _: () = redis::cmd("DEL")
        .arg(&count_key)
        .query(&mut counter)
        .map_err(|e| e.to_string())?;
    drop(proxied);
    drop(server);
    let mut out = Outcome::new(t0.elapsed(), None)
        .metric("overshoot", (most - CAP as i64).max(0) as f64)
        .metric("over_ms", over.as_millis() as f64);
    if faulted.is_some() {
        // Not back by the end: the rest of the run.
        let rest = Duration::from_millis(RUN_MS) - fault_at;
        out = out.metric("recover_ms", recovered.unwrap_or(rest).as_millis() as f64);
    }
    Ok(out)
}

/// A holder process that holds a permit now.
fn holding(counter: &mut redis::Connection, count_key: &str) -> Result<Option<usize>, String> {
    let counts: Vec<(String, i64)> = redis::cmd("HGETALL")
        .arg(count_key)
        .query(counter)
        .map_err(|e| e.to_string())?;
    Ok(counts
        .iter()
        .find(|(_, n)| *n > 0)
        .and_then(|(id, _)| id.trim_start_matches('h').parse().ok()))
}

/// Fault proxies in front of the private server, one per process, on a
/// runtime of their own.
struct ProxyRuntime {
    proxies: Vec<Proxy>,
    _rt: tokio::runtime::Runtime,
}

impl ProxyRuntime {
    fn start(port: u16, n: usize) -> Result<ProxyRuntime, String> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let proxies = (0..n)
            .map(|_| rt.block_on(Proxy::start(upstream)))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("the fault proxy: {e}"))?;
        Ok(ProxyRuntime { proxies, _rt: rt })
    }

    fn url(&self, i: usize) -> String {
        format!("redis://{}", self.proxies[i].addr())
    }
}

/// A cenote holder process (`cenote-bench __fleet-holder <spec>`).
pub fn holder_main(spec: &str) -> std::process::ExitCode {
    let Ok(spec) = serde_json::from_str::<HolderSpec>(spec) else {
        return std::process::ExitCode::FAILURE;
    };
    let Ok(rt) = tokio::runtime::Runtime::new() else {
        return std::process::ExitCode::FAILURE;
    };
    rt.block_on(async move {
        let Ok(sem) = cenote_fleet::Semaphore::builder(&spec.url, &spec.name, CAP)
            .ttl(Duration::from_millis(LEASE_MS))
            .response_timeout(Duration::from_millis(LEASE_MS / 4))
            .acquire_timeout(Duration::from_secs(2))
            .build()
            .await
        else {
            return;
        };
        let Ok(client) = redis::Client::open(spec.count_url.as_str()) else {
            return;
        };
        let Ok(counter) = client.get_multiplexed_async_connection().await else {
            return;
        };
        let tasks: Vec<_> = (0..TASKS as u64)
            .map(|t| tokio::spawn(hold(sem.clone(), counter.clone(), spec.clone(), t)))
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    });
    std::process::ExitCode::SUCCESS
}

/// One task's loop: acquire, count, work until done or lost, uncount.
async fn hold(
    sem: cenote_fleet::Semaphore,
    mut counter: redis::aio::MultiplexedConnection,
    spec: HolderSpec,
    seed: u64,
) {
    let t0 = Instant::now();
    let mut i = seed;
    while t0.elapsed() < Duration::from_millis(RUN_MS) {
        i += 1;
        let Ok(lease) = sem.acquire().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let count = |n: i64| {
            let mut cmd = redis::cmd("HINCRBY");
            cmd.arg(&spec.count_key).arg(&spec.id).arg(n);
            cmd
        };
        let _: redis::RedisResult<i64> = count(1).query_async(&mut counter).await;
        let job = match spec.job_ms {
            0 => Duration::from_millis(300 + (i * 137) % 600),
            ms => Duration::from_millis(ms),
        };
        let _ = lease.run_until_lost(tokio::time::sleep(job)).await;
        let _: redis::RedisResult<i64> = count(-1).query_async(&mut counter).await;
        drop(lease);
    }
}
