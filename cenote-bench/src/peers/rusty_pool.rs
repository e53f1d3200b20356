//! `rusty_pool`: core/max sized pool over a crossbeam channel, threads
//! started on demand.

use std::time::Duration;

use super::{PoolCfg, WorkerPeer};

/// Keep-alive of non-core threads; irrelevant here since core = max.
const KEEP_ALIVE: Duration = Duration::from_secs(60);

/// `rusty_pool::ThreadPool::new(size, size, 60 s)`. Its API has no stack
/// size; the experiments that want small stacks also set `RUST_MIN_STACK`,
/// which `std::thread::Builder` (and so rusty_pool) honours.
pub struct RustyPoolPeer(rusty_pool::ThreadPool);

impl WorkerPeer for RustyPoolPeer {
    fn build(cfg: &PoolCfg) -> Result<Self, String> {
        Ok(RustyPoolPeer(rusty_pool::ThreadPool::new(
            cfg.size, cfg.size, KEEP_ALIVE,
        )))
    }

    fn execute<F>(&self, job: F) -> Result<(), String>
    where
        F: FnOnce() + Send + 'static,
    {
        self.0.execute(job);
        Ok(())
    }
}
