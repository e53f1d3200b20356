//! The process's periodic ticks: one thread (`cenote-ticker`), started
//! with the first registration, that calls each registered target when its
//! interval has passed. Resource pools tick their maintenance through it
//! (`resources/maintenance.rs`, as a task on their own runtime), and the
//! metrics publisher its publishing (`observe/publish.rs`).
//!
//! A thread, not a `tokio::time::interval` per pool: a timer registered on
//! a runtime makes every park of every worker go through the timer wheel
//! and read the clock, a cost paid by all of the user's tasks for as long
//! as the pool lives (`resources/DESIGN.md`, "Background task").

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// A target the ticker drives.
pub(crate) trait Ticked: Send + Sync {
    /// One interval has passed. `false`: the pool is done (closed, or its
    /// runtime gone) and wants no more ticks.
    fn tick(self: Arc<Self>) -> bool;
}

struct Entry {
    due: Instant,
    every: Duration,
    pool: Weak<dyn Ticked>,
}

#[derive(Default)]
struct Ticker {
    entries: Mutex<Vec<Entry>>,
    changed: Condvar,
}

/// The ticker, once its thread has started (a failed start is tried again
/// by the next pool).
static TICKER: Mutex<Option<&'static Ticker>> = Mutex::new(None);

/// Ticks `pool` every `every`, the first time at once, for as long as it
/// lives and its ticks return `true`. Fails only if the ticker thread
/// cannot be started.
pub(crate) fn register(pool: Weak<dyn Ticked>, every: Duration) -> std::io::Result<()> {
    let ticker = {
        let mut slot = TICKER.lock();
        match *slot {
            Some(t) => t,
            None => *slot.insert(start()?),
        }
    };
    ticker.entries.lock().push(Entry {
        due: Instant::now(),
        every,
        pool,
    });
    ticker.changed.notify_one();
    Ok(())
}

fn start() -> std::io::Result<&'static Ticker> {
    let ticker: &'static Ticker = Box::leak(Box::default());
    std::thread::Builder::new()
        .name("cenote-ticker".into())
        .spawn(move || run(ticker))?;
    Ok(ticker)
}

/// The thread: sleeps until the earliest due tick (or a new pool), then
/// ticks every pool that is due, with no lock held while a pool ticks.
fn run(ticker: &Ticker) {
    let mut entries = ticker.entries.lock();
    loop {
        let now = Instant::now();
        let due = take_due(&mut entries, now);
        if !due.is_empty() {
            drop(entries);
            let done: Vec<Weak<dyn Ticked>> = due
                .into_iter()
                .filter(|w| w.upgrade().is_some_and(|p| !p.tick()))
                .collect();
            entries = ticker.entries.lock();
            entries.retain(|e| !done.iter().any(|d| Weak::ptr_eq(d, &e.pool)));
            continue;
        }
        match entries.iter().map(|e| e.due).min() {
            Some(next) => {
                ticker.changed.wait_until(&mut entries, next);
            }
            None => ticker.changed.wait(&mut entries),
        }
    }
}

/// The pools due at `now`, each set to its next tick (an interval from
/// now: a late tick delays the next, it does not bunch them); pools gone
/// are dropped from the list.
fn take_due(entries: &mut Vec<Entry>, now: Instant) -> Vec<Weak<dyn Ticked>> {
    entries.retain(|e| e.pool.strong_count() > 0);
    let mut due = Vec::new();
    for e in entries.iter_mut().filter(|e| e.due <= now) {
        e.due = now + e.every;
        due.push(e.pool.clone());
    }
    due
}

/// Whether `pool` is on the ticker's list (for tests).
#[cfg(test)]
fn listed(pool: &Weak<dyn Ticked>) -> bool {
    TICKER
        .lock()
        .is_some_and(|t| t.entries.lock().iter().any(|e| Weak::ptr_eq(&e.pool, pool)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    struct Counting {
        ticks: AtomicUsize,
        stop_after: usize,
    }

    impl Ticked for Counting {
        fn tick(self: Arc<Self>) -> bool {
            self.ticks.fetch_add(1, SeqCst) + 1 < self.stop_after
        }
    }

    fn wait_for(what: &str, cond: impl Fn() -> bool) {
        let until = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < until, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn ticks_at_once_then_every_interval_until_the_pool_says_stop() {
        let pool = Arc::new(Counting {
            ticks: AtomicUsize::new(0),
            stop_after: 3,
        });
        let weak: Weak<dyn Ticked> = Arc::downgrade(&pool) as Weak<dyn Ticked>;
        register(weak.clone(), Duration::from_millis(5)).unwrap();
        wait_for("three ticks", || pool.ticks.load(SeqCst) == 3);
        wait_for("the pool to leave the list", || !listed(&weak));
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(pool.ticks.load(SeqCst), 3, "no tick after stop");
    }

    #[test]
    fn a_dropped_pool_leaves_the_list() {
        let pool = Arc::new(Counting {
            ticks: AtomicUsize::new(0),
            stop_after: usize::MAX,
        });
        let weak: Weak<dyn Ticked> = Arc::downgrade(&pool) as Weak<dyn Ticked>;
        register(weak.clone(), Duration::from_millis(2)).unwrap();
        wait_for("a tick", || pool.ticks.load(SeqCst) > 0);
        drop(pool);
        wait_for("the pool to leave the list", || !listed(&weak));
    }
}
