//! The per-origin pools, at most `max_origins` of them: past the cap the
//! least recently used origin is evicted (one with nothing lent and no one
//! waiting, if there is one), its pool closed and its idle connections
//! destroyed. A crawler's client stays bounded.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use cenote::resources::Pool;
use parking_lot::RwLock;

use crate::conn::Connector;
use crate::metrics::OriginMetrics;
use crate::origin::{AsKey, Origin, OriginKey};

/// One origin's pool and series.
pub(crate) struct OriginPool {
    pub(crate) pool: Pool<Connector>,
    pub(crate) metrics: Arc<OriginMetrics>,
    /// The `Host` header of its requests.
    pub(crate) host: http::HeaderValue,
}

struct Entry {
    pool: Arc<OriginPool>,
    /// The last use, on the map's clock.
    used: AtomicU64,
}

pub(crate) struct Origins {
    map: RwLock<HashMap<Origin, Entry>>,
    max: usize,
    clock: AtomicU64,
}

impl Origins {
    pub(crate) fn new(max: usize) -> Origins {
        Origins {
            map: RwLock::new(HashMap::new()),
            max,
            clock: AtomicU64::new(0),
        }
    }

    /// `key`'s pool, made with `make` if it has none.
    pub(crate) fn pool<E>(
        &self,
        key: &OriginKey<'_>,
        make: impl FnOnce(&Origin) -> Result<OriginPool, E>,
    ) -> Result<Arc<OriginPool>, E> {
        let now = self.clock.fetch_add(1, Relaxed);
        let key = key as &dyn AsKey;
        if let Some(e) = self.map.read().get(key) {
            e.used.store(now, Relaxed);
            return Ok(e.pool.clone());
        }
        let mut map = self.map.write();
        if let Some(e) = map.get(key) {
            e.used.store(now, Relaxed);
            return Ok(e.pool.clone());
        }
        if map.len() >= self.max {
            evict_one(&mut map);
        }
        let origin = Origin::of_key(key);
        let pool = Arc::new(make(&origin)?);
        map.insert(
            origin,
            Entry {
                pool: pool.clone(),
                used: AtomicU64::new(now),
            },
        );
        Ok(pool)
    }

    /// `origin`'s pool, if it has one.
    pub(crate) fn find(&self, origin: &Origin) -> Option<Arc<OriginPool>> {
        self.map
            .read()
            .get(origin as &dyn AsKey)
            .map(|e| e.pool.clone())
    }

    /// How many origins have a pool.
    pub(crate) fn len(&self) -> usize {
        self.map.read().len()
    }

    /// Closes and forgets every pool.
    pub(crate) fn close_all(&self) {
        for (_, e) in self.map.write().drain() {
            e.pool.pool.close();
        }
    }
}

/// Evicts the least recently used origin, preferring one that is idle
/// (nothing lent, no one waiting); a request still on an evicted pool
/// finishes and its connection is destroyed when given back.
fn evict_one(map: &mut HashMap<Origin, Entry>) {
    let idle = |e: &Entry| e.pool.pool.in_use() == 0 && e.pool.pool.waiting() == 0;
    let lru = |only_idle: bool| {
        map.iter()
            .filter(|(_, e)| !only_idle || idle(e))
            .min_by_key(|(_, e)| e.used.load(Relaxed))
            .map(|(o, _)| o.clone())
    };
    if let Some(victim) = lru(true).or_else(|| lru(false)) {
        if let Some(e) = map.remove(&victim) {
            e.pool.pool.close();
        }
    }
}
