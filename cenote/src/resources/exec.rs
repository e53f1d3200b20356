//! Running the manager's futures: the pool's runtime, and a `block_on` for
//! plain threads (with the lifetime jitter's pseudo-random numbers).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread::{self, Thread};

use futures_util::task::{waker_ref, ArcWake};
use tokio::runtime::Handle;

/// The runtime a pool runs its manager and maintenance on: the caller's
/// (or the one given to the builder), or its own, a current-thread runtime
/// driven by one thread named `cenote-resources` (for pools used from
/// plain threads only).
pub(crate) struct Rt {
    pub(crate) handle: Handle,
    /// Dropping the sender stops the pool's own runtime.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Rt {
    pub(crate) fn new(given: Option<Handle>) -> std::io::Result<Rt> {
        if let Some(handle) = given.or_else(|| Handle::try_current().ok()) {
            return Ok(Rt { handle, stop: None });
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("cenote-resources")
            .build()?;
        let handle = rt.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        thread::Builder::new()
            .name("cenote-resources".into())
            .spawn(move || {
                // Driving the runtime: its timers, its I/O and the tasks the
                // pool spawns on it. Returns when the pool is dropped.
                let _ = rt.block_on(stopped);
                rt.shutdown_background();
            })?;
        Ok(Rt {
            handle,
            stop: Some(stop),
        })
    }
}

impl Drop for Rt {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

struct ThreadWaker {
    thread: Thread,
    /// Set by every wake: a thread that watches instead of parking sees it
    /// (a hint only; the park token is what guarantees no wake is lost).
    woken: AtomicBool,
}

impl ArcWake for ThreadWaker {
    fn wake_by_ref(this: &Arc<Self>) {
        this.woken.store(true, Release);
        // Cheap when the thread is not parked (one atomic swap).
        this.thread.unpark();
    }
}

thread_local! {
    static WAKER: Arc<ThreadWaker> = Arc::new(ThreadWaker {
        thread: thread::current(),
        woken: AtomicBool::new(false),
    });
}

/// A blocking call was made where the thread cannot wait: its
/// thread-locals (tokio's runtime context among them) are being destroyed.
#[derive(Debug)]
pub(crate) struct ThreadExiting;

/// Runs `fut` to completion on the calling thread, inside `handle`'s
/// context (so its timers and I/O work), parking between polls.
///
/// When a poll is pending and `watch()` says so (the caller is the next to
/// be served), the thread first checks for its wake-up for a short while
/// (`crate::sync::watch`), yielding between checks: a grant to a parked thread leaves the resource
/// unused until the thread is back on a core, which between two threads
/// taking turns on one resource was nearly all of the time.
///
/// Where the thread cannot wait it says so instead of aborting or hanging:
/// - during thread-local destruction, `Err(ThreadExiting)` (entering the
///   runtime's context would panic there, and a panic in a thread-local
///   destructor aborts the process);
/// - on a thread that drives a tokio runtime (see [`wait_outside_runtime`]).
pub(crate) fn block_on<F: Future>(
    handle: &Handle,
    fut: F,
    watch: impl Fn() -> bool,
) -> Result<F::Output, ThreadExiting> {
    if Handle::try_current().is_err_and(|e| e.is_thread_local_destroyed()) {
        return Err(ThreadExiting);
    }
    let _entered = handle.enter();
    let mut fut = std::pin::pin!(fut);
    let mut run = |w: &Arc<ThreadWaker>| drive(w, fut.as_mut(), &watch);
    match WAKER.try_with(|w| run(w)) {
        Ok(v) => Ok(v),
        // This thread's waker is gone (thread exit): one for this call.
        Err(_) => Ok(run(&Arc::new(ThreadWaker {
            thread: thread::current(),
            woken: AtomicBool::new(false),
        }))),
    }
}

/// [`block_on`]'s loop: poll, and park (or watch) while pending.
fn drive<F: Future>(
    w: &Arc<ThreadWaker>,
    mut fut: Pin<&mut F>,
    watch: &impl Fn() -> bool,
) -> F::Output {
    let waker = waker_ref(w);
    let mut cx = Context::from_waker(&waker);
    w.woken.store(false, Relaxed);
    if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
        return v;
    }
    wait_outside_runtime(|| loop {
        // A wake seen while watching set the park token too: the next
        // park, if any, returns at once (a spurious poll, harmless).
        let seen =
            watch() && crate::sync::watch(None, || w.woken.load(Acquire).then_some(())).is_some();
        if !seen {
            thread::park();
        }
        // Cleared before the poll: a wake during or after it is seen.
        w.woken.store(false, Relaxed);
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
    })
}

/// Runs `wait` (which parks until the pool's tasks make progress) where
/// that cannot starve them. On a plain thread, or a `spawn_blocking` one,
/// it just runs. On a worker of a multi-thread tokio runtime it runs in
/// `block_in_place`, which hands the worker's queued tasks (the pool's
/// create among them) to another thread: parking the worker with them
/// made a get time out with its create never started. On the thread that
/// drives a current-thread runtime nothing else can run the pool's tasks,
/// so the call would never return: it panics at once, saying what to do.
fn wait_outside_runtime<T>(wait: impl FnOnce() -> T) -> T {
    let Ok(current) = Handle::try_current() else {
        return wait();
    };
    if current.runtime_flavor() != tokio::runtime::RuntimeFlavor::CurrentThread {
        return tokio::task::block_in_place(wait);
    }
    // A current-thread runtime's own thread, or one of its blocking
    // threads (where waiting is fine): `block_in_place` tells them apart,
    // refusing (with a panic, before it runs `wait`) only the former.
    let mut started = false;
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        tokio::task::block_in_place(|| {
            started = true;
            wait()
        })
    }));
    match waited {
        Ok(v) => v,
        Err(payload) if started => std::panic::resume_unwind(payload),
        Err(_) => panic!(
            "cenote::resources: a blocking call (get_blocking, get_timeout, \
             shutdown_timeout_blocking) on the thread that drives a current-thread \
             tokio runtime would never return: the pool's creates and checks run on \
             that thread. Use `pool.get().await` there, or call it from \
             `tokio::task::spawn_blocking`"
        ),
    }
}

/// A pseudo-random number in `0..n` (lifetime jitter; not for secrets).
pub(crate) fn jitter(seed: u64, n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    // splitmix64
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) % n
}
