//! [`Pool`]: exclusive connections from the pool, and one shared
//! multiplexed connection beside them.

use std::ops::Deref;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::sync::Mutex;

use crate::connect::{Opened, Target};
use crate::error::Error;
use crate::manager::Manager;

/// A pool of exclusive Redis connections ([`get`](cenote::resources::Pool::get),
/// [`get_blocking`](cenote::resources::Pool::get_blocking) and the rest of
/// `cenote::resources::Pool` through `Deref`), and one shared multiplexed
/// connection ([`shared`](Self::shared)).
///
/// Which to use: the shared connection pipelines every caller's plain
/// commands over one socket, and wins for small, independent commands. A
/// pooled connection wins, or is required, for blocking commands (`BLPOP`
/// on the shared one holds up every caller behind it), `WATCH`/`MULTI`
/// (a transaction is per connection), pub/sub, and large values (one
/// caller's 100 KB reply delays everyone else's on the shared socket).
/// BENCHMARKS.md has the measurements.
pub struct Pool {
    pool: cenote::resources::Pool<Manager>,
    target: Target,
    response_timeout: Duration,
    shared: Mutex<Option<Opened>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

impl Pool {
    pub(crate) fn new(
        pool: cenote::resources::Pool<Manager>,
        target: Target,
        response_timeout: Duration,
    ) -> Self {
        Pool {
            pool,
            target,
            response_timeout,
            shared: Mutex::new(None),
        }
    }

    /// The shared multiplexed connection (a cheap clone of one handle),
    /// opened on first use and opened again once its socket is gone.
    /// Every reply on it is bounded by the response timeout.
    pub async fn shared(&self) -> Result<MultiplexedConnection, Error> {
        let mut slot = self.shared.lock().await;
        if let Some(open) = slot.as_ref() {
            if !open.driver.is_finished() {
                return Ok(open.conn.clone());
            }
        }
        let _entered = self.pool.handle().enter();
        let opened = self.target.open(Some(self.response_timeout)).await?;
        let conn = opened.conn.clone();
        if let Some(old) = slot.replace(opened) {
            old.driver.abort();
        }
        Ok(conn)
    }
}

impl Deref for Pool {
    type Target = cenote::resources::Pool<Manager>;
    fn deref(&self) -> &Self::Target {
        &self.pool
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if let Some(open) = self.shared.get_mut().take() {
            open.driver.abort();
        }
    }
}
