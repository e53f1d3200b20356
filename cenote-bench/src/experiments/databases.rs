//! `cenote-bench databases`: real connections. cenote-postgres against
//! deadpool-postgres, bb8-postgres and a dedicated connection per task;
//! cenote-redis against deadpool-redis, bb8-redis and one multiplexed
//! connection; and seed 004's pooled against connect-per-request. Reads
//! `CENOTE_PG_URL` and `CENOTE_REDIS_URL`; without them it says how to get
//! a server and runs nothing.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::resources::contended_outcome;
use super::{count_label, Case, Column, Experiment, Quantity, Unit};
use crate::harness::Outcome;
use crate::peers::Impl;

pub mod faults;
mod postgres;
mod redis_peers;

pub const POSTGRES: &str = "databases/postgres";
pub const REDIS: &str = "databases/redis";

/// (pool size, tasks).
const CELLS: [(usize, usize); 4] = [(4, 16), (4, 64), (16, 16), (16, 64)];
/// The cell where the floors (a connection per task, a connect per
/// request) run too.
const FLOOR_CELL: (usize, usize) = (16, 16);

/// What one operation does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Work {
    /// `SELECT 1` (simple query protocol).
    Select1,
    /// A prepared single-row lookup by primary key on a pgbench-style table.
    Lookup,
    /// `BEGIN; UPDATE; SELECT; COMMIT` on the same table.
    Transaction,
    /// `PING`.
    Ping,
    /// `GET` of a 100 B value.
    Get100B,
    /// `GET` of a 100 KB value.
    Get100K,
}

impl Work {
    fn label(self) -> &'static str {
        match self {
            Work::Select1 => "select1",
            Work::Lookup => "lookup",
            Work::Transaction => "transaction",
            Work::Ping => "ping",
            Work::Get100B => "get-100B",
            Work::Get100K => "get-100KB",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DbParams {
    pub url: String,
    pub work: Work,
    pub size: usize,
    pub tasks: usize,
    pub ops: u64,
}

/// The servers' URLs, or why there is nothing to run.
fn urls() -> (Option<String>, Option<String>) {
    let var = |k| std::env::var(k).ok().filter(|v: &String| !v.is_empty());
    (var("CENOTE_PG_URL"), var("CENOTE_REDIS_URL"))
}

/// Says how to get the servers, when a URL is missing.
pub fn missing_servers() -> Option<String> {
    match urls() {
        (Some(_), Some(_)) => None,
        (pg, rd) => Some(format!(
            "databases: {}{}not set; nothing to run for it. Start the servers \
             (apt-get install postgresql redis-server) and set \
             CENOTE_PG_URL=postgres://postgres@127.0.0.1:5432/test and \
             CENOTE_REDIS_URL=redis://127.0.0.1:6379",
            if pg.is_none() { "CENOTE_PG_URL " } else { "" },
            if rd.is_none() {
                "CENOTE_REDIS_URL "
            } else {
                ""
            },
        )),
    }
}

pub fn plan(smoke: bool) -> Vec<Experiment> {
    let (pg, rd) = urls();
    let mut plan = Vec::new();
    if let Some(url) = &pg {
        plan.push(experiment(
            smoke,
            url,
            POSTGRES,
            &[Work::Select1, Work::Lookup, Work::Transaction],
        ));
    }
    if let Some(url) = rd {
        plan.push(experiment(
            smoke,
            &url,
            REDIS,
            &[Work::Ping, Work::Get100B, Work::Get100K],
        ));
    }
    if let Some(url) = &pg {
        if !smoke {
            plan.push(faults::experiment(url));
        }
    }
    plan
}

fn experiment(smoke: bool, url: &str, name: &'static str, works: &[Work]) -> Experiment {
    let postgres = name == POSTGRES;
    let cells: &[(usize, usize)] = if smoke { &[(4, 16)] } else { &CELLS };
    let mut cases = Vec::new();
    for &work in works {
        let ops: u64 = match (smoke, work) {
            (true, _) => 200,
            (false, Work::Get100K) => 4_000,
            (false, Work::Transaction) => 8_000,
            (false, _) => 20_000,
        };
        for &(size, tasks) in cells {
            let scenario = format!(
                "{}/size={size}/tasks={tasks}/{}",
                work.label(),
                count_label(ops)
            );
            let params = DbParams {
                url: url.to_owned(),
                work,
                size,
                tasks,
                ops,
            };
            let mut imps = if postgres {
                vec![Impl::Cenote, Impl::DeadpoolPostgres, Impl::Bb8Postgres]
            } else {
                vec![
                    Impl::Cenote,
                    Impl::DeadpoolRedis,
                    Impl::Bb8Redis,
                    Impl::Multiplexed,
                ]
            };
            if (size, tasks) == FLOOR_CELL || smoke {
                if postgres {
                    imps.push(Impl::DeadpoolUnmanaged);
                }
                imps.push(Impl::Dedicated);
                if matches!(work, Work::Select1 | Work::Ping) {
                    imps.push(Impl::ConnectPerRequest);
                }
            }
            for imp in imps {
                cases.push(Case::new(&scenario, imp, &params));
            }
        }
    }
    let notes = vec![
        "tasks on a multi-thread tokio runtime (one worker per CPU) share a pool of size \
         connections; each operation is get, the work, release, and every get is timed (wait \
         p50 / p99, max/mean). The pool is filled before the measured region."
            .to_owned(),
        if postgres {
            "cenote: cenote-postgres defaults (Reset::Rollback, sent ahead of the borrower's \
             first request after a BEGIN; a probe outside the 500 ms bypass window), statements \
             by prepare_cached; \
             deadpool-postgres: RecyclingMethod::Fast (no reset), prepare_cached; bb8-postgres: \
             defaults (test_on_check_out runs an empty query), no statement cache (tokio-postgres \
             prepares a &str per query); deadpool-unmanaged: a deadpool unmanaged::Pool of \
             connections (a semaphore and a locked list: no check, no reset, statements \
             prepared once), the least any pool does; dedicated: one connection per task, \
             opened before, statements prepared once (the floor); connect-per-request: connect, run, close \
             (seed 004's no-pool case). The table is cenote_bench_accounts, 100k rows, made \
             when missing."
                .to_owned()
        } else {
            "cenote: cenote-redis defaults (an exclusive connection, PING outside the 500 ms \
             bypass window); deadpool-redis: defaults; bb8-redis: defaults (PING on checkout); \
             multiplexed: one redis MultiplexedConnection shared by every task (no pool); \
             dedicated: one connection per task; connect-per-request: connect, run, close."
                .to_owned()
        },
    ];
    Experiment {
        name,
        title: if postgres {
            "PostgreSQL through each pool: SELECT 1, a prepared lookup, a short transaction"
                .to_owned()
        } else {
            "Redis through each pool: PING, GET of 100 B and of 100 KB".to_owned()
        },
        notes,
        headline: Quantity::PerOp,
        per_op_title: "time per operation (wall / ops; 1 / throughput)",
        columns: vec![
            Column {
                key: "ops_per_s",
                header: "ops/s",
                unit: Unit::Plain(0),
                chart: false,
            },
            Column {
                key: "wait_p50_us",
                header: "wait p50",
                unit: Unit::Micros,
                chart: false,
            },
            Column {
                key: "wait_p99_us",
                header: "wait p99",
                unit: Unit::Micros,
                chart: true,
            },
            Column {
                key: "max_over_mean",
                header: "max/mean",
                unit: Unit::Plain(1),
                chart: false,
            },
        ],
        cases,
    }
}

/// Runs one case in this (child) process.
pub fn run(imp: Impl, p: &DbParams) -> Result<Outcome, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let outcome = rt.block_on(async {
        match p.work {
            Work::Select1 | Work::Lookup | Work::Transaction => postgres::run(imp, p).await,
            Work::Ping | Work::Get100B | Work::Get100K => redis_peers::run(imp, p).await,
        }
    });
    // Teardown is not measured (the child exits).
    std::mem::forget(rt);
    outcome
}

/// Times `tasks` tasks doing `ops` operations in all; `op(task)` returns
/// its get's wait.
pub(super) async fn drive<F, Fut>(tasks: usize, ops: u64, op: F) -> Result<Outcome, String>
where
    F: Fn(usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Result<Duration, String>> + Send,
{
    let each = (ops / tasks as u64).max(1);
    let all = loops(tasks, each, op).await?;
    Ok(contended_outcome(Instant::now(), each * tasks as u64, all))
}

/// Runs `tasks` tasks of `each` operations, started together; each task's
/// start and its waits (ns).
pub(super) async fn loops<F, Fut>(
    tasks: usize,
    each: u64,
    op: F,
) -> Result<Vec<(Instant, Vec<u32>)>, String>
where
    F: Fn(usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Result<Duration, String>> + Send,
{
    let gate = std::sync::Arc::new(tokio::sync::Barrier::new(tasks + 1));
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let (op, gate) = (op.clone(), gate.clone());
            tokio::spawn(async move {
                let mut waits = Vec::with_capacity(each as usize);
                gate.wait().await;
                let started = Instant::now();
                for _ in 0..each {
                    let w = op(t).await?;
                    waits.push(u32::try_from(w.as_nanos()).unwrap_or(u32::MAX));
                }
                Ok::<_, String>((started, waits))
            })
        })
        .collect();
    gate.wait().await;
    let mut all = Vec::with_capacity(tasks);
    for h in handles {
        all.push(h.await.map_err(|e| e.to_string())??);
    }
    Ok(all)
}
