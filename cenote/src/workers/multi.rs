//! `MultiPool`: several pools behind one handle (ants' `MultiPool`), to
//! spread submitters over independent queues and locks.

use std::time::Duration;

use super::builder::Builder;
use super::errors::{BuildError, ResizeError, ShutdownError, SubmitError};
use super::join::JoinHandle;
use super::pool::unit;
use super::task::Task;
use super::{Pool, Stats};
use crate::sync::{AtomicUsize, Ordering::*};

/// How a [`MultiPool`] picks the sub-pool for a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Balance {
    /// Each submit goes to the next pool in turn.
    #[default]
    RoundRobin,
    /// Each submit goes to the pool with the fewest busy threads plus queued
    /// tasks.
    LeastTasks,
}

/// N independent pools behind one handle.
///
/// ```
/// use cenote::workers::{Balance, MultiPool, Pool};
/// let multi = MultiPool::new(4, Pool::builder().capacity(2), Balance::LeastTasks).unwrap();
/// for i in 0..100 {
///     multi.submit(move || { std::hint::black_box(i); }).unwrap();
/// }
/// multi.wait_idle();
/// assert_eq!(multi.stats().completed, 100);
/// ```
#[derive(Debug)]
pub struct MultiPool {
    pools: Vec<Pool>,
    balance: Balance,
    next: AtomicUsize,
}

impl MultiPool {
    /// `n` pools, each built from `builder` (its capacity is per pool).
    pub fn new(n: usize, builder: Builder, balance: Balance) -> Result<MultiPool, BuildError> {
        if n == 0 {
            return Err(BuildError::NoPools);
        }
        let pools = (0..n)
            .map(|_| builder.clone().build())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(MultiPool {
            pools,
            balance,
            next: AtomicUsize::new(0),
        })
    }

    /// The sub-pool for the next task. A closed sub-pool (closed through
    /// [`pools`](Self::pools)) is never picked while another is open: it
    /// reports no load, and would otherwise win every `LeastTasks` pick and
    /// fail the submit. With every sub-pool closed any is picked, and the
    /// submit fails with `Closed`.
    fn pick(&self) -> usize {
        let n = self.pools.len();
        match self.balance {
            Balance::RoundRobin => {
                let start = self.next.fetch_add(1, Relaxed);
                (0..n)
                    .map(|k| (start + k) % n)
                    .find(|&i| !self.pools[i].is_closed())
                    .unwrap_or(start % n)
            }
            Balance::LeastTasks => {
                let mut best = (usize::MAX, 0);
                for (i, p) in self.pools.iter().enumerate() {
                    if p.is_closed() {
                        continue;
                    }
                    let load = p.busy() + p.queued();
                    if load < best.0 {
                        best = (load, i);
                    }
                    if load == 0 {
                        break;
                    }
                }
                best.1
            }
        }
    }

    /// Submits to the chosen pool (see [`Pool::submit`]).
    pub fn submit<F: FnOnce() + Send + 'static>(&self, f: F) -> Result<(), SubmitError> {
        self.pools[self.pick()].submit(f)
    }

    /// Offers the task to the chosen pool, then to each other pool once;
    /// never blocks. `Err(SubmitError::Full)` only when every pool is full.
    pub fn try_submit<F: FnOnce() + Send + 'static>(&self, f: F) -> Result<(), SubmitError> {
        let start = self.pick();
        let n = self.pools.len();
        let mut task = Task::new(unit(f));
        let mut closed = 0;
        for k in 0..n {
            let pool = &self.pools[(start + k) % n];
            if pool.is_closed() {
                closed += 1;
                continue;
            }
            task = match pool.inner.offer(task) {
                Ok(()) => return Ok(()),
                Err(t) => t,
            };
        }
        if closed == n {
            return Err(SubmitError::Closed);
        }
        self.pools[start].inner.count_rejected();
        Err(SubmitError::Full)
    }

    /// Waits at most `timeout` for room in the chosen pool.
    pub fn submit_timeout<F: FnOnce() + Send + 'static>(
        &self,
        f: F,
        timeout: Duration,
    ) -> Result<(), SubmitError> {
        self.pools[self.pick()].submit_timeout(f, timeout)
    }

    /// Spawns on the chosen pool (see [`Pool::spawn`]).
    pub fn spawn<T, F>(&self, f: F) -> Result<JoinHandle<T>, SubmitError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.pools[self.pick()].spawn(f)
    }

    /// The sub-pools.
    pub fn pools(&self) -> &[Pool] {
        &self.pools
    }

    /// Sets every sub-pool's capacity to `n`. A closed sub-pool refuses
    /// with [`ResizeError::Closed`], checked before any sub-pool changes.
    pub fn resize(&self, n: usize) -> Result<(), ResizeError> {
        ResizeError::check(n)?;
        if self.pools.iter().any(Pool::is_closed) {
            return Err(ResizeError::Closed);
        }
        self.pools.iter().try_for_each(|p| p.resize(n))
    }
    /// Threads alive, summed.
    pub fn running(&self) -> usize {
        self.pools.iter().map(Pool::running).sum()
    }
    /// Threads parked, summed.
    pub fn idle(&self) -> usize {
        self.pools.iter().map(Pool::idle).sum()
    }
    /// Capacity in force, summed.
    pub fn capacity(&self) -> usize {
        self.pools.iter().map(Pool::capacity).sum()
    }
    /// Blocked submitters, summed.
    pub fn waiting(&self) -> usize {
        self.pools.iter().map(Pool::waiting).sum()
    }
    /// Queued tasks, summed.
    pub fn queued(&self) -> usize {
        self.pools.iter().map(Pool::queued).sum()
    }
    /// Counters, summed.
    pub fn stats(&self) -> Stats {
        self.pools
            .iter()
            .map(Pool::stats)
            .fold(Stats::default(), |a, b| a + b)
    }
    /// Waits until every sub-pool is idle. From a task of one of the
    /// sub-pools it waits for every other task: the caller counts as idle
    /// in its own sub-pool for the whole call, and tasks waiting in
    /// `wait_idle` count as idle in every sub-pool, so two tasks on
    /// different sub-pools never wait for each other.
    pub fn wait_idle(&self) {
        let own = self.pools.iter().find(|p| p.inner.is_own_worker());
        let _waiting = own.map(|p| p.inner.enter_idle_wait());
        for p in &self.pools {
            p.inner.wait_quiet(None, own.is_some());
        }
    }
    /// Closes every sub-pool.
    pub fn close(&self) {
        self.pools.iter().for_each(Pool::close);
    }
    /// Closes every sub-pool and waits at most `timeout` in all.
    /// Every sub-pool is waited for, also after one of them reports an
    /// error; the error adds up what is still running in all of them.
    pub fn shutdown_timeout(&self, timeout: Duration) -> Result<(), ShutdownError> {
        let start = std::time::Instant::now();
        self.close();
        let mut failed: Option<ShutdownError> = None;
        for p in &self.pools {
            let left = timeout.saturating_sub(start.elapsed());
            if let Err(e) = p.shutdown_timeout(left) {
                let sum = failed.get_or_insert(ShutdownError {
                    threads: 0,
                    queued: 0,
                    waited: Duration::ZERO,
                    from_own_task: false,
                });
                sum.threads += e.threads;
                sum.queued += e.queued;
                sum.from_own_task |= e.from_own_task;
            }
        }
        match failed {
            None => Ok(()),
            Some(mut e) => {
                e.waited = start.elapsed();
                Err(e)
            }
        }
    }
    /// Reopens every sub-pool.
    pub fn reboot(&self) {
        self.pools.iter().for_each(Pool::reboot);
    }
    /// True when every sub-pool is closed.
    pub fn is_closed(&self) -> bool {
        self.pools.iter().all(Pool::is_closed)
    }
}
