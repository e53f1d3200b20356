//! Starting OS threads (loom threads under the model) that are never
//! detached: their handles are kept and joined once finished.

/// Starts an OS thread (a loom thread under the model).
///
/// The thread is never detached: dropping a `JoinHandle` calls
/// `pthread_detach`, and glibc (2.36 here) reads the thread's descriptor
/// after marking it detached, so a thread exiting at that very moment (a
/// worker retired right after it was started) frees it first and the
/// spawner crashes with SIGSEGV inside `pthread_detach` (seen once in the
/// worker stress test). The handles are kept instead and joined once their
/// threads are finished, which costs a `pthread_join` of a dead thread.
#[cfg(not(loom))]
pub(crate) fn spawn_thread(
    name: String,
    stack_size: Option<usize>,
    body: impl FnOnce() + Send + 'static,
) -> std::io::Result<()> {
    let mut b = std::thread::Builder::new().name(name);
    if let Some(size) = stack_size {
        b = b.stack_size(size);
    }
    let handle = b.spawn(move || {
        body();
        reaper::exited();
    })?;
    reaper::keep(handle);
    Ok(())
}

/// The handles of the threads `spawn_thread` started (see there).
#[cfg(not(loom))]
mod reaper {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    use std::thread::JoinHandle;

    static KEPT: parking_lot::Mutex<Vec<JoinHandle<()>>> = parking_lot::Mutex::new(Vec::new());

    /// Bodies that returned since the last sweep.
    static EXITED: AtomicUsize = AtomicUsize::new(0);

    /// Sweep once this many threads are done: at most about this many
    /// finished threads (and their stacks) wait to be joined.
    const SWEEP_AFTER: usize = 64;

    pub(super) fn keep(handle: JoinHandle<()>) {
        KEPT.lock().push(handle);
    }

    /// Called by a thread as its body returns.
    pub(super) fn exited() {
        if EXITED.fetch_add(1, Relaxed) + 1 < SWEEP_AFTER {
            return;
        }
        let finished: Vec<JoinHandle<()>> = {
            let mut kept = KEPT.lock();
            EXITED.store(0, Relaxed);
            let mut done = Vec::new();
            let mut i = 0;
            while i < kept.len() {
                if kept[i].is_finished() {
                    done.push(kept.swap_remove(i));
                } else {
                    i += 1;
                }
            }
            done
        };
        // Joined outside the lock: each body has returned, so this only
        // waits for the OS thread to end (never this one: it is still in
        // its body). A panic was reported by the thread itself.
        for h in finished {
            let _ = h.join();
        }
    }
}

#[cfg(loom)]
pub(crate) fn spawn_thread(
    _name: String,
    _stack_size: Option<usize>,
    body: impl FnOnce() + Send + 'static,
) -> std::io::Result<()> {
    loom::thread::spawn(body);
    Ok(())
}
