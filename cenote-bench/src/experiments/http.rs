//! `cenote-bench http`: HTTP/1.1 clients against a local hyper server in
//! a child process of its own. cenote-http against hyper-util's legacy
//! `Client`, reqwest, and a new connection per request (seed 004's no
//! pool), on 1 KiB and 64 KiB responses; and the keep-alive race, where
//! the server closes connections idle for 20 ms while requests arrive
//! around that moment.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{column, count_label, Case, Experiment, Quantity, Unit};
use crate::harness::Outcome;
use crate::peers::Impl;

mod clients;
pub mod server;

pub const GET: &str = "http/get";
pub const RACE: &str = "http/keepalive-race";

/// The server's idle close in the race, and the clients' pauses around it.
const RACE_IDLE_MS: u64 = 20;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HttpParams {
    /// `/1k` or `/64k`.
    pub path: String,
    pub tasks: usize,
    /// Connections per origin, where the client has a cap.
    pub cap: usize,
    pub ops: u64,
}

pub fn plan(smoke: bool) -> Vec<Experiment> {
    vec![get_experiment(smoke), race_experiment(smoke)]
}

fn get_experiment(smoke: bool) -> Experiment {
    let mut cases = Vec::new();
    let cells: &[(usize, usize)] = if smoke {
        &[(16, 8)]
    } else {
        &[(16, 8), (16, 32), (64, 8), (64, 32), (256, 8), (256, 32)]
    };
    for (path, label) in [("/1k", "1KiB"), ("/64k", "64KiB")] {
        let ops: u64 = match (smoke, path) {
            (true, _) => 200,
            (false, "/1k") => 40_000,
            (false, _) => 10_000,
        };
        for &(tasks, cap) in cells {
            let scenario = format!("{label}/tasks={tasks}/cap={cap}/{}", count_label(ops));
            let params = HttpParams {
                path: path.to_owned(),
                tasks,
                cap,
                ops,
            };
            let mut imps = vec![
                Impl::Cenote,
                Impl::HyperUtil,
                Impl::HyperUtilCapped,
                Impl::Reqwest,
            ];
            if path == "/1k" && tasks == 16 {
                imps.push(Impl::ConnectPerRequest);
            }
            for imp in imps {
                cases.push(Case::new(&scenario, imp, &params));
            }
        }
    }
    Experiment {
        name: GET,
        title: "HTTP/1.1 GETs through each client, against a local hyper server".to_owned(),
        notes: vec![
            "tasks on a multi-thread tokio runtime (one worker per CPU) send GETs to one origin \
             and read each whole body; the server (hyper, HTTP/1.1 keep-alive) runs in a child \
             process of its own, on the same cores. cenote: cenote-http, at most cap \
             connections per origin; hyper-util (legacy Client) and reqwest have no cap (the \
             cap column does not apply to them); hyper-util-capped: hyper-util behind a tokio \
             Semaphore of cap permits held from the request until the body is read, which is \
             how its users cap it (requests in flight, not connections: a connection goes back \
             to its pool after the permit, so it may open a few more); connect-per-request: a TCP connect, the \
             HTTP/1.1 handshake and one GET per request. opened: the connections the server \
             accepted in the run."
                .to_owned(),
        ],
        headline: Quantity::PerOp,
        per_op_title: "time per request (wall / requests; 1 / throughput)",
        columns: vec![
            column("ops_per_s", "requests/s", Unit::Plain(0), false),
            column("latency_p50_us", "p50", Unit::Micros, false),
            column("latency_p99_us", "p99", Unit::Micros, true),
            column("opened", "opened", Unit::Plain(0), false),
        ],
        cases,
    }
}

fn race_experiment(smoke: bool) -> Experiment {
    let (tasks, ops) = if smoke { (16, 160) } else { (64, 3_200) };
    let params = HttpParams {
        path: "/1k".to_owned(),
        tasks,
        cap: 64,
        ops,
    };
    let scenario = format!(
        "idle-close={RACE_IDLE_MS}ms/tasks={tasks}/{}",
        count_label(ops)
    );
    let cases = [Impl::Cenote, Impl::HyperUtil, Impl::Reqwest]
        .into_iter()
        .map(|imp| Case::new(&scenario, imp, &params))
        .collect();
    Experiment {
        name: RACE,
        title: "The keep-alive race: the server closes connections idle for 20 ms".to_owned(),
        notes: vec![format!(
            "the server closes a connection {RACE_IDLE_MS} ms after its last response; each \
             task pauses 17 to 23 ms between GETs, so reuse lands on both sides of the close. \
             failed: GETs that returned an error (none is retried by the bench). Every client \
             at its defaults (cenote-http: connections idle 4 s, hyper-util and reqwest: 90 s)."
        )],
        headline: Quantity::Metric(column("failed", "failed", Unit::Plain(0), true)),
        per_op_title: "time per request, pauses included",
        columns: vec![
            column("failed", "failed", Unit::Plain(0), true),
            column("opened", "opened", Unit::Plain(0), false),
        ],
        cases,
    }
}

/// Runs one case in this (child) process, with a server child of its own.
pub fn run(experiment: &str, imp: Impl, p: &HttpParams) -> Result<Outcome, String> {
    let race = experiment == RACE;
    let server = server::ServerProcess::start(race.then_some(RACE_IDLE_MS))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let outcome = rt.block_on(async {
        let client = clients::Client::new(imp, p.cap)?;
        let before = opened(&server).await?;
        let url = server.url(&p.path);
        let outcome = if race {
            race_run(client, url, p).await?
        } else {
            get_run(client, url, p).await?
        };
        // The count's own connection is not the client's.
        let opened = opened(&server).await? - before - 1;
        Ok::<_, String>(outcome.metric("opened", opened as f64))
    });
    std::mem::forget(rt);
    outcome
}

/// Connections the server accepted so far (this request's own included).
async fn opened(server: &server::ServerProcess) -> Result<u64, String> {
    let client = clients::Client::ConnectPerRequest;
    let body = client.get_text(&server.url("/__opened")).await?;
    body.trim()
        .parse()
        .map_err(|_| format!("the server said {body:?}"))
}

async fn get_run(client: clients::Client, url: String, p: &HttpParams) -> Result<Outcome, String> {
    let url = Arc::new(url);
    let outcome = super::databases::drive(p.tasks, p.ops, move |_| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let t0 = Instant::now();
            client.get(&url).await?;
            Ok(t0.elapsed())
        }
    })
    .await?;
    Ok(latencies(outcome))
}

/// The drive's per-op times are request latencies here.
fn latencies(mut o: Outcome) -> Outcome {
    for (from, to) in [
        ("wait_p50_us", "latency_p50_us"),
        ("wait_p99_us", "latency_p99_us"),
    ] {
        if let Some(v) = o.metrics.remove(from) {
            o.metrics.insert(to.to_owned(), v);
        }
    }
    o.metrics.remove("max_over_mean");
    o
}

async fn race_run(client: clients::Client, url: String, p: &HttpParams) -> Result<Outcome, String> {
    let failed = Arc::new(AtomicU64::new(0));
    let each = p.ops / p.tasks as u64;
    let t0 = Instant::now();
    let handles: Vec<_> = (0..p.tasks as u64)
        .map(|t| {
            let (client, url, failed) = (client.clone(), url.clone(), failed.clone());
            tokio::spawn(async move {
                let mut seed = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                for _ in 0..each {
                    if client.get(&url).await.is_err() {
                        failed.fetch_add(1, Relaxed);
                    }
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let pause = (RACE_IDLE_MS - 3) * 1000 + seed % 6_000;
                    tokio::time::sleep(Duration::from_micros(pause)).await;
                }
            })
        })
        .collect();
    for h in handles {
        h.await.map_err(|e| e.to_string())?;
    }
    Ok(Outcome::new(t0.elapsed(), Some(each * p.tasks as u64))
        .metric("failed", failed.load(Relaxed) as f64))
}
