//! Many real processes on one private `redis-server` (this test binary run
//! again in a child mode, some under libfaketime): the cap across all of
//! them, every waiter served, and the calls Redis counted (`INFO
//! commandstats`): waiting costs no polling.

use std::process::{Command, Stdio};
use std::time::Duration;

use cenote_fault_proxy::RedisServer;

mod common;
use common::{build, redis, url};

/// The child mode: `tasks` tasks each take `rounds` turns of `job_ms`
/// with one permit of the semaphore named in `CENOTE_FLEET_WORKER`
/// (`url|name|cap|tasks|rounds|job_ms`). A holder counts itself in the
/// key `<name>:holding` (INCR after the grant, DECR before the release),
/// so the most holders at once is measured on Redis, whatever the
/// processes' clocks. Prints `@worker <most> <grants>`.
#[test]
fn fleet_worker() {
    let Ok(spec) = std::env::var("CENOTE_FLEET_WORKER") else {
        return;
    };
    let f: Vec<&str> = spec.split('|').collect();
    let (url, name) = (f[0].to_owned(), f[1].to_owned());
    let [cap, tasks, rounds, job_ms] = [2, 3, 4, 5].map(|i| f[i].parse::<u64>().unwrap());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (most, grants) = rt.block_on(async move {
        let sem = build(&url, &name, cap, TTL).await;
        let holding = format!("{name}:holding");
        // One connection per process (32 each would be 256 at once).
        let conn = redis(&url).await;
        let mut all = Vec::new();
        for _ in 0..tasks {
            let (sem, mut c, holding) = (sem.clone(), conn.clone(), holding.clone());
            all.push(tokio::spawn(async move {
                let (mut most, mut grants) = (0i64, 0u64);
                for _ in 0..rounds {
                    let lease = sem.acquire_timeout(Duration::from_secs(60)).await.unwrap();
                    grants += 1;
                    let now: i64 = redis::cmd("INCR")
                        .arg(&holding)
                        .query_async(&mut c)
                        .await
                        .unwrap();
                    most = most.max(now);
                    tokio::time::sleep(Duration::from_millis(job_ms)).await;
                    let _: i64 = redis::cmd("DECR")
                        .arg(&holding)
                        .query_async(&mut c)
                        .await
                        .unwrap();
                    drop(lease);
                }
                (most, grants)
            }));
        }
        let (mut most, mut grants) = (0, 0);
        for t in all {
            let (m, g) = t.await.unwrap();
            most = most.max(m);
            grants += g;
        }
        sem.shutdown_timeout(Duration::from_secs(5)).await.unwrap();
        (most, grants)
    });
    println!("@worker {most} {grants}");
}

/// One child process; `faketime`: its clocks offset by that (libfaketime).
fn start(spec: &str, faketime: Option<&str>) -> std::process::Child {
    let exe = std::env::current_exe().unwrap();
    let args = ["--exact", "fleet_worker", "--nocapture", "--test-threads=1"];
    let mut cmd = match faketime {
        Some(offset) => {
            let mut c = Command::new("faketime");
            c.arg("-f").arg(offset).arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    cmd.args(args)
        .env("CENOTE_FLEET_WORKER", spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Each child's `(most holders seen, grants)`.
fn finish(children: Vec<std::process::Child>) -> Vec<(i64, u64)> {
    children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success(), "a worker process failed");
            let text = String::from_utf8_lossy(&out.stdout);
            let line = text
                .lines()
                // libtest prints `test fleet_worker ... ` before it.
                .find_map(|l| l.split("@worker ").nth(1))
                .unwrap_or_else(|| panic!("no report from a worker process: {text}"));
            let mut f = line.split(' ').map(|v| v.parse::<i64>().unwrap());
            (f.next().unwrap(), f.next().unwrap() as u64)
        })
        .collect()
}

/// Calls of one command in `INFO commandstats` that ran (`calls` less
/// `failed_calls`: an `EVALSHA` of a script not loaded yet fails, and is
/// sent again after `SCRIPT LOAD`).
fn calls(stats: &str, command: &str) -> u64 {
    let Some(line) = stats
        .lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:")))
    else {
        return 0;
    };
    let field = |name: &str| {
        line.split(',')
            .find_map(|kv| kv.strip_prefix(name))
            .map_or(0, |v| v.parse::<u64>().unwrap())
    };
    field("calls=") - field("failed_calls=")
}

async fn commandstats(url: &str) -> String {
    let mut c = redis(url).await;
    redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut c)
        .await
        .unwrap()
}

/// The workers' lease TTL.
const TTL: Duration = Duration::from_secs(2);

/// A fresh server grants nothing for one TTL (it may have restarted):
/// wait that out before the processes start, so that they all start
/// together.
async fn past_restart_quarantine() {
    tokio::time::sleep(TTL).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_processes_of_32_waiters_share_a_cap_of_10_without_polling() {
    if url().is_none() {
        return;
    }
    let server = RedisServer::start();
    past_restart_quarantine().await;
    let (procs, tasks, rounds) = (8, 32, 4);
    let spec = format!("{}|many|10|{tasks}|{rounds}|10", server.url());
    let mut c = redis(&server.url()).await;
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut c)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let children = (0..procs).map(|_| start(&spec, None)).collect();
    let reports = tokio::task::spawn_blocking(move || finish(children))
        .await
        .unwrap();
    // Renewal rounds a process can have run meanwhile.
    let renewals = (started.elapsed().as_secs_f64() / (TTL.as_secs_f64() / 3.0)).ceil() as u64 + 1;
    let most = reports.iter().map(|r| r.0).max().unwrap();
    let grants: u64 = reports.iter().map(|r| r.1).sum();
    assert_eq!(grants, procs * tasks * rounds, "every waiter served");
    assert!(most <= 10, "{most} holders at once");
    // One acquire and one release per grant; per process its build and
    // its renewals (one per TTL/3, each waking its two head waiters to
    // call again); the wake listener's reads (one per batch of grants, or
    // per second idle). A waiter polling every 10 ms for the ~1 s it waits
    // would add about 25,000 calls.
    let stats = commandstats(&server.url()).await;
    let scripts = calls(&stats, "evalsha") + calls(&stats, "eval");
    let reads = calls(&stats, "blmpop");
    eprintln!("{grants} grants: {scripts} scripts, {reads} BLMPOP");
    let bound = 2 * grants + procs * (1 + 3 * renewals);
    assert!(
        scripts <= bound,
        "{scripts} scripts, at most {bound} expected"
    );
    assert!(reads <= grants + procs * renewals, "{reads} BLMPOP");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_whose_clocks_are_skewed_by_5_s_keep_the_cap_and_all_get_their_turns() {
    if url().is_none() {
        return;
    }
    if Command::new("faketime").arg("--version").output().is_err() {
        // `.ci/run` installs it (Debian's `faketime`).
        eprintln!("skipped: faketime is not installed");
        return;
    }
    let server = RedisServer::start();
    past_restart_quarantine().await;
    let (tasks, rounds) = (8, 6);
    let spec = format!("{}|skew|3|{tasks}|{rounds}|20", server.url());
    let children = vec![
        start(&spec, Some("+5s")),
        start(&spec, Some("-5s")),
        start(&spec, None),
        start(&spec, Some("+5s")),
    ];
    let reports = tokio::task::spawn_blocking(move || finish(children))
        .await
        .unwrap();
    let most = reports.iter().map(|r| r.0).max().unwrap();
    let grants: u64 = reports.iter().map(|r| r.1).sum();
    assert_eq!(grants, 4 * tasks * rounds, "no process starved");
    assert!(most <= 3, "{most} holders at once");
    drop(server);
}
