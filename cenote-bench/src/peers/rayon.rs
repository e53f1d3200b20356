//! rayon: a work-stealing pool of fixed size, fed with `ThreadPool::spawn`.

use super::{PoolCfg, WorkerPeer};

/// A dedicated `rayon::ThreadPool`; all threads are started by `build`.
pub struct RayonPeer(rayon::ThreadPool);

impl WorkerPeer for RayonPeer {
    fn build(cfg: &PoolCfg) -> Result<Self, String> {
        let mut builder = rayon::ThreadPoolBuilder::new().num_threads(cfg.size);
        if let Some(bytes) = cfg.stack_size {
            builder = builder.stack_size(bytes);
        }
        builder.build().map(RayonPeer).map_err(|e| e.to_string())
    }

    fn execute<F>(&self, job: F) -> Result<(), String>
    where
        F: FnOnce() + Send + 'static,
    {
        self.0.spawn(job);
        Ok(())
    }
}
