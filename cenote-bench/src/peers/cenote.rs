//! cenote's worker pools: [`Pool`] through [`WorkerPeer`], and [`FnPool`].

use std::thread;
use std::time::{Duration, Instant};

use cenote::workers::{FnPool, Pool};

use super::{start_all_with_barrier, PoolCfg, WorkerPeer};

/// How long [`WorkerPeer::start_all`] waits for prestarted threads to show up.
const PRESTART_WAIT: Duration = Duration::from_secs(5);

/// `cenote::workers::Pool` with its defaults (bounded queue, `Block`
/// policy), sized by [`PoolCfg`].
pub struct CenotePeer {
    pool: Pool,
    prestarted: bool,
}

impl WorkerPeer for CenotePeer {
    fn build(cfg: &PoolCfg) -> Result<Self, String> {
        let mut builder = Pool::builder().capacity(cfg.size);
        if let Some(bytes) = cfg.stack_size {
            builder = builder.stack_size(bytes);
        }
        if cfg.prestart {
            builder = builder.prestart(cfg.size);
        }
        if cfg.keep_idle {
            builder = builder.idle_timeout(None);
        }
        let pool = builder.build().map_err(|e| e.to_string())?;
        Ok(CenotePeer {
            pool,
            prestarted: cfg.prestart,
        })
    }

    fn execute<F>(&self, job: F) -> Result<(), String>
    where
        F: FnOnce() + Send + 'static,
    {
        self.pool.submit(job).map_err(|e| e.to_string())
    }

    fn start_all(&self, n: usize) -> Result<(), String> {
        if !self.prestarted {
            return start_all_with_barrier(self, n);
        }
        // The builder started the threads; only make sure they are there.
        let since = Instant::now();
        while self.pool.running() < n {
            if since.elapsed() > PRESTART_WAIT {
                return Err(format!(
                    "prestart({n}) left {} threads running",
                    self.pool.running()
                ));
            }
            thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }
}

/// Builds a `cenote::workers::FnPool` of `size` threads bound to `f`.
pub fn fn_pool<F>(size: usize, f: F) -> Result<FnPool<u64>, String>
where
    F: Fn(u64) + Send + Sync + 'static,
{
    FnPool::new(size, f).map_err(|e| e.to_string())
}

/// Hands `arg` to `pool`'s function.
#[inline]
pub fn invoke(pool: &FnPool<u64>, arg: u64) -> Result<(), String> {
    pool.invoke(arg).map_err(|e| e.to_string())
}
