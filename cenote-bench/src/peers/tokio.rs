//! tokio's blocking pool, fed with `Runtime::spawn_blocking` from outside the
//! runtime.

use super::{PoolCfg, WorkerPeer};

/// A multi-thread runtime with one async worker and at most `size` blocking
/// threads (started on demand); `JoinHandle`s are dropped.
pub struct TokioBlockingPeer(tokio::runtime::Runtime);

impl WorkerPeer for TokioBlockingPeer {
    fn build(cfg: &PoolCfg) -> Result<Self, String> {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(1).max_blocking_threads(cfg.size);
        if let Some(bytes) = cfg.stack_size {
            builder.thread_stack_size(bytes);
        }
        builder
            .build()
            .map(TokioBlockingPeer)
            .map_err(|e| e.to_string())
    }

    fn execute<F>(&self, job: F) -> Result<(), String>
    where
        F: FnOnce() + Send + 'static,
    {
        drop(self.0.spawn_blocking(job));
        Ok(())
    }
}
