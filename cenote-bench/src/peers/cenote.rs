//! cenote's worker pools: [`Pool`] through [`WorkerPeer`], and [`FnPool`].

use super::{start_all_with_barrier, PoolCfg, WorkerPeer};
use cenote::workers::{FnPool, Pool};

/// `cenote::workers::Pool` with its defaults (bounded queue, `Block`
/// policy), sized by [`PoolCfg`].
pub struct CenotePeer(Pool);

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
        builder.build().map(CenotePeer).map_err(|e| e.to_string())
    }

    fn execute<F>(&self, job: F) -> Result<(), String>
    where
        F: FnOnce() + Send + 'static,
    {
        self.0.submit(job).map_err(|e| e.to_string())
    }

    fn start_all(&self, n: usize) -> Result<(), String> {
        if self.0.running() >= n {
            // Prestarted: nothing to do, and nothing the pool would not do
            // by itself.
            Ok(())
        } else {
            start_all_with_barrier(self, n)
        }
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
