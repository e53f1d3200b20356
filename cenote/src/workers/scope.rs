//! Scoped tasks: closures that borrow from the caller's stack, run on the
//! pool's threads, all finished before `Pool::scope` returns.

use std::marker::PhantomData;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::time::Duration;

use super::core::{Inner, TaskRunner};
use super::errors::JoinError;
use super::join::{CompleteOnDrop, JoinHandle, JoinState};
use super::pool::{handle_task, Pool};
use super::task::Task;
use crate::sync::{Arc, AtomicBool, AtomicUsize, Condvar, Mutex, Ordering::*};

struct ScopeState {
    pending: AtomicUsize,
    lock: Mutex<()>,
    cv: Condvar,
    /// A task panicked and nobody joined it: `scope` re-panics.
    unjoined_panic: Arc<AtomicBool>,
}

/// Decrements the scope's pending count when the task is done with
/// everything it borrowed (it is the last field dropped).
struct Pending(Arc<ScopeState>);

impl Drop for Pending {
    fn drop(&mut self) {
        if self.0.pending.fetch_sub(1, SeqCst) == 1 {
            let _g = self.0.lock.lock();
            self.0.cv.notify_all();
        }
    }
}

/// A scoped job. Field order matters: `work` (the user's closure and the
/// result slot) is dropped before `pending`, so the scope cannot return
/// while anything borrowed is still in use.
struct ScopedJob<F, T> {
    work: Option<(F, CompleteOnDrop<T>)>,
    _pending: Pending,
}

impl<F: FnOnce() -> T, T> ScopedJob<F, T> {
    fn run(mut self) -> bool {
        let (f, out) = self.work.take().expect("a scoped job runs once");
        handle_task(f, out)()
    }
}

/// Spawns borrowing tasks; see [`Pool::scope`].
pub struct Scope<'scope, 'env: 'scope> {
    inner: Arc<Inner<TaskRunner>>,
    state: Arc<ScopeState>,
    _scope: PhantomData<&'scope mut &'scope ()>,
    _env: PhantomData<&'env mut &'env ()>,
}

/// A handle to a scoped task's result.
#[must_use = "dropping the handle does not cancel the task; join it to see its result"]
pub struct ScopedJoinHandle<'scope, T> {
    handle: JoinHandle<T>,
    _scope: PhantomData<&'scope ()>,
}

impl<T> std::fmt::Debug for ScopedJoinHandle<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScopedJoinHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl std::fmt::Debug for Scope<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scope").finish_non_exhaustive()
    }
}

impl<T> ScopedJoinHandle<'_, T> {
    /// Blocks until the task finishes.
    pub fn join(self) -> Result<T, JoinError> {
        self.handle.join()
    }
    /// True once the task has finished.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

impl<'scope> Scope<'scope, '_> {
    /// Runs `f` on a pool thread. `f` may borrow anything that outlives the
    /// scope, including the scope itself (to spawn more). Every task spawned
    /// runs: `spawn` waits for room whatever the pool's policy and
    /// `max_waiting`; on a pool thread whose pool is full, or on
    /// a closed pool, `f` runs on the calling thread instead.
    pub fn spawn<F, T>(&'scope self, f: F) -> ScopedJoinHandle<'scope, T>
    where
        F: FnOnce() -> T + Send + 'scope,
        T: Send + 'scope,
    {
        self.state.pending.fetch_add(1, SeqCst);
        let js = JoinState::new(Some(self.state.unjoined_panic.clone()));
        let job = ScopedJob {
            work: Some((f, CompleteOnDrop(Some(js.clone())))),
            _pending: Pending(self.state.clone()),
        };
        // SAFETY: the task borrows data that lives for 'scope. `Pool::scope`
        // does not return (nor unwind past its frame) before `pending` is
        // zero, and `pending` is decremented only when `ScopedJob` is
        // dropped after its closure ran or was dropped; so the task never
        // outlives what it borrows.
        let task = unsafe { Task::new_unchecked(move || job.run()) };
        // A scope is owed every task it spawns: it waits for room whatever
        // the policy and `max_waiting`, and runs the task itself
        // on a closed pool.
        if let Err(task) = self.inner.submit_owed(task) {
            self.inner.run_on_caller(task);
        }
        ScopedJoinHandle {
            handle: JoinHandle::new(js, Some(self.inner.clone())),
            _scope: PhantomData,
        }
    }

    fn wait_all(&self) {
        let on_worker = self.inner.is_own_worker();
        while self.state.pending.load(SeqCst) > 0 {
            // A pool thread waiting for its scope runs queued work meanwhile,
            // so a scope inside a task cannot starve the pool of threads.
            if on_worker && self.inner.help_one() {
                continue;
            }
            let mut g = self.state.lock.lock();
            if self.state.pending.load(SeqCst) == 0 {
                break;
            }
            let deadline = on_worker.then(|| std::time::Instant::now() + Duration::from_millis(1));
            self.state.cv.wait_until(&mut g, deadline);
        }
    }
}

impl Pool {
    /// Runs `f` with a [`Scope`] whose tasks may borrow from the caller's
    /// stack; returns once every task spawned in it has finished, even if
    /// `f` panics. A task that panicked and was not joined makes `scope`
    /// panic after all tasks finished (as `std::thread::scope` does).
    ///
    /// ```
    /// let pool = cenote::workers::Pool::new(4).unwrap();
    /// let mut words = vec![String::from("a"), String::from("b")];
    /// let total: usize = pool.scope(|s| {
    ///     let hs: Vec<_> = words.iter().map(|w| s.spawn(move || w.len())).collect();
    ///     hs.into_iter().map(|h| h.join().unwrap()).sum()
    /// });
    /// words.push(String::from("c")); // the borrows ended with the scope
    /// assert_eq!(total, 2);
    /// ```
    pub fn scope<'env, F, T>(&self, f: F) -> T
    where
        F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> T,
    {
        let scope = Scope {
            inner: self.inner.clone(),
            state: Arc::new(ScopeState {
                pending: AtomicUsize::new(0),
                lock: Mutex::new(()),
                cv: Condvar::new(),
                unjoined_panic: Arc::new(AtomicBool::new(false)),
            }),
            _scope: PhantomData,
            _env: PhantomData,
        };
        let result = catch_unwind(AssertUnwindSafe(|| f(&scope)));
        scope.wait_all();
        match result {
            Err(p) => resume_unwind(p),
            Ok(v) => {
                if scope.state.unjoined_panic.load(SeqCst) {
                    panic!("a task spawned in a cenote scope panicked and was not joined");
                }
                v
            }
        }
    }
}
