//! No pool at all: a fresh OS thread for every task.

use std::thread;

use super::{PoolCfg, WorkerPeer};

/// Spawns a detached `std::thread` per job (the handle is dropped).
pub struct ThreadPerTask {
    stack_size: Option<usize>,
}

impl WorkerPeer for ThreadPerTask {
    fn build(cfg: &PoolCfg) -> Result<Self, String> {
        Ok(ThreadPerTask {
            stack_size: cfg.stack_size,
        })
    }

    fn execute<F>(&self, job: F) -> Result<(), String>
    where
        F: FnOnce() + Send + 'static,
    {
        let mut builder = thread::Builder::new();
        if let Some(bytes) = self.stack_size {
            builder = builder.stack_size(bytes);
        }
        builder
            .spawn(job)
            .map(drop)
            .map_err(|e| format!("thread spawn failed: {e}"))
    }
}
