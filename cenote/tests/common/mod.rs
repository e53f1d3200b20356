//! Helpers the integration tests share (`mod common;`): waiting for a
//! condition, and bounding a call or an await, so that a hang fails its
//! test instead of stalling the run.

// Each test crate uses some of them.
#![allow(dead_code)]

use std::future::Future;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// How long a test waits for what should come at once before it calls it a
/// hang (a hang guard, not a timing assertion).
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Polls `cond` until it holds, failing the test after [`PATIENCE`].
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "{what}: not reached within {PATIENCE:?}"
        );
        thread::sleep(Duration::from_millis(1));
    }
}

/// [`eventually`] for async code: sleeps on tokio's timer between polls.
pub async fn eventually_async(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "{what}: not reached within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Runs `f` on a thread of its own and waits at most [`PATIENCE`] for it;
/// a panic in `f` goes on to the caller.
pub fn within<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(catch_unwind(AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(PATIENCE) {
        Ok(Ok(v)) => v,
        Ok(Err(p)) => resume_unwind(p),
        Err(_) => panic!("hung: no result within {PATIENCE:?}"),
    }
}

/// Bounds an await by [`PATIENCE`].
pub async fn within_async<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(PATIENCE, f).await.expect("hung")
}
