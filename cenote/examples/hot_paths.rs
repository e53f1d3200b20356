//! Each module's hot path, in a loop, for the instruction-count guard
//! (`.ci/icount`): `hot_paths PATH N` runs PATH's operation N times.
//!
//! The guard runs every path under `valgrind --tool=callgrind` twice, with
//! two values of N, and divides the difference of the instruction counts by
//! the difference of N: what one operation costs, without the set-up. The
//! count is exact on any machine, so the guard sees a slowdown that timing
//! on a shared 2-core machine cannot.
//!
//! ```text
//! cargo run --release -p cenote --example hot_paths -- objects_get_put 1000
//! ```

use std::hint::black_box;
use std::process::ExitCode;
use std::time::Duration;

/// Every path the guard measures, with what one operation is.
const PATHS: &[(&str, &str)] = &[
    (
        "workers_submit_run",
        "workers::Pool::submit of an empty closure, run by the one worker",
    ),
    (
        "fn_pool_invoke",
        "workers::FnPool::invoke, run by the one worker",
    ),
    (
        "objects_get_put",
        "objects::Pool::get of a 4 KiB Vec (auto_reset), one push, drop",
    ),
    (
        "semaphore_acquire_release",
        "limit::Semaphore::acquire_blocking, uncontended, then drop",
    ),
    (
        "tasks_spawn",
        "tasks::Pool::spawn(async {}).await from a task, handle dropped",
    ),
    (
        "resources_get_release",
        "resources::Pool::get().await, uncontended, then drop",
    ),
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (path, n) = match args.as_slice() {
        [path, n] => match n.parse::<u64>() {
            Ok(n) => (path.as_str(), n),
            Err(_) => return usage(),
        },
        _ => return usage(),
    };
    match path {
        "workers_submit_run" => workers_submit_run(n),
        "fn_pool_invoke" => fn_pool_invoke(n),
        "objects_get_put" => objects_get_put(n),
        "semaphore_acquire_release" => semaphore_acquire_release(n),
        "tasks_spawn" => tasks_spawn(n),
        "resources_get_release" => resources_get_release(n),
        _ => return usage(),
    }
    ExitCode::SUCCESS
}

fn usage() -> ExitCode {
    eprintln!("usage: hot_paths PATH N\n\npaths:");
    for (name, what) in PATHS {
        eprintln!("  {name:<28} {what}");
    }
    ExitCode::FAILURE
}

fn workers_submit_run(n: u64) {
    let pool = cenote::workers::Pool::builder()
        .capacity(1)
        .queue(1024)
        .build()
        .expect("pool");
    for _ in 0..n {
        pool.submit(|| black_box(())).expect("submit");
    }
    pool.wait_idle();
}

fn fn_pool_invoke(n: u64) {
    let pool = cenote::workers::FnPool::new(1, |x: u64| {
        black_box(x);
    })
    .expect("pool");
    for i in 0..n {
        pool.invoke(i).expect("invoke");
    }
    pool.wait_idle();
}

fn objects_get_put(n: u64) {
    let pool = cenote::objects::Pool::builder(|| Vec::<u8>::with_capacity(4096))
        .auto_reset()
        .build()
        .expect("pool");
    for i in 0..n {
        let mut buf = pool.get();
        buf.push(i as u8);
        black_box(&mut *buf);
    }
}

fn semaphore_acquire_release(n: u64) {
    let sem = cenote::limit::Semaphore::new(1);
    for _ in 0..n {
        let permit = sem.acquire_blocking().expect("acquire");
        drop(black_box(permit));
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn tasks_spawn(n: u64) {
    runtime().block_on(async {
        // Under valgrind a timed first poll can outlast the default
        // eager limit and pause eager starts: a different path.
        let pool = cenote::tasks::Pool::builder()
            .capacity(16)
            .eager_limit(Duration::from_secs(3600))
            .build()
            .expect("pool");
        for _ in 0..n {
            let handle = pool.spawn(async {}).await.expect("spawn");
            drop(black_box(handle));
        }
        pool.wait_idle().await;
    });
}

/// A resource that costs nothing to make: what the pool itself costs.
struct Free;

impl cenote::resources::Manager for Free {
    type Resource = u64;
    type Error = std::io::Error;
    async fn create(&self) -> Result<u64, std::io::Error> {
        Ok(0)
    }
}

fn resources_get_release(n: u64) {
    runtime().block_on(async {
        let pool = cenote::resources::Pool::builder(Free)
            .capacity(1)
            .min_idle(1)
            // No background pass during the loop: its timing is the
            // clock's, not the instruction stream's.
            .maintenance_interval(Duration::from_secs(3600))
            .build_filled()
            .await
            .expect("pool");
        for _ in 0..n {
            let mut r = pool.get().await.expect("get");
            *r += 1;
            black_box(&mut *r);
        }
    });
}
