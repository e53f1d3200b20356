//! Publishing: every live pool that has metrics writes its levels and
//! counters to the `metrics` recorder once per [`PUBLISH_EVERY`] (from the
//! ticker thread) and whenever [`publish_now`](super::publish_now) is
//! called. Levels and counters are read from the pool's own state
//! (`stats()`), so an exported series can lag by one period but never
//! drifts: nothing is counted up and down in guards.

use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;

use crate::sync::ticker::{self, Ticked};

/// How often the ticker publishes every pool.
pub(crate) const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// A pool with metrics.
pub(crate) trait Publish: Send + Sync {
    /// Writes the pool's levels and counters to the recorder.
    fn publish(&self);
}

/// Publishes one pool; `false` once the pool is gone.
type Publisher = Box<dyn Fn() -> bool + Send + Sync>;

/// The pools with metrics, and whether the ticker publishes them yet.
static PUBLISHERS: Mutex<(Vec<Arc<Publisher>>, bool)> = Mutex::new((Vec::new(), false));

/// Publishes `pool` from now on, for as long as it lives.
pub(crate) fn register(pool: Weak<dyn Publish>) {
    register_fn(Box::new(move || match pool.upgrade() {
        Some(pool) => {
            pool.publish();
            true
        }
        None => false,
    }));
}

/// Calls `publish` at every publishing, until it returns `false`.
pub(crate) fn register_fn(publish: Publisher) {
    let mut list = PUBLISHERS.lock();
    list.0.push(Arc::new(publish));
    if !list.1 {
        // The ticker entry outlives every pool: its target is static.
        static TARGET: std::sync::OnceLock<Arc<All>> = std::sync::OnceLock::new();
        let all = TARGET.get_or_init(|| Arc::new(All));
        let weak: Weak<dyn Ticked> = Arc::downgrade(all) as Weak<dyn Ticked>;
        // Without a ticker thread, pools publish on `publish_now` only.
        list.1 = ticker::register(weak, PUBLISH_EVERY).is_ok();
    }
}

/// Publishes every live pool now; forgets the dropped ones.
pub(crate) fn publish_all() {
    let all: Vec<Arc<Publisher>> = PUBLISHERS.lock().0.clone();
    // Outside the lock: a pool whose last handle the publisher drops runs
    // its `Drop` here, which must not find the list locked.
    let gone: Vec<Arc<Publisher>> = all.into_iter().filter(|p| !p()).collect();
    if !gone.is_empty() {
        PUBLISHERS
            .lock()
            .0
            .retain(|p| !gone.iter().any(|g| Arc::ptr_eq(g, p)));
    }
}

/// The ticker's target: every registered pool.
struct All;

impl Ticked for All {
    fn tick(self: Arc<Self>) -> bool {
        publish_all();
        true
    }
}
