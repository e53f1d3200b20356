//! The `threadpool` crate: a fixed set of threads sharing one
//! `Mutex<mpsc::Receiver>`.

use super::{PoolCfg, WorkerPeer};

/// `threadpool::ThreadPool`; all threads are started by `build` (which
/// panics if the OS refuses one).
pub struct ThreadpoolPeer(threadpool::ThreadPool);

impl WorkerPeer for ThreadpoolPeer {
    fn build(cfg: &PoolCfg) -> Result<Self, String> {
        let mut builder = threadpool::Builder::new().num_threads(cfg.size);
        if let Some(bytes) = cfg.stack_size {
            builder = builder.thread_stack_size(bytes);
        }
        Ok(ThreadpoolPeer(builder.build()))
    }

    fn execute<F>(&self, job: F) -> Result<(), String>
    where
        F: FnOnce() + Send + 'static,
    {
        self.0.execute(job);
        Ok(())
    }
}
