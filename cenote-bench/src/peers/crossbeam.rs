//! A hand-rolled pool: `size` threads looping on one unbounded
//! crossbeam-channel receiver of boxed closures. The simplest pool that is
//! still fast; a floor for what a general pool costs.

use std::thread;

use crossbeam_channel::{unbounded, Sender};

use super::{PoolCfg, WorkerPeer};

/// A boxed job as the channel carries it.
type Job = Box<dyn FnOnce() + Send + 'static>;

/// The hand-rolled crossbeam-channel pool; all threads are started by
/// `build`.
pub struct CrossbeamPool {
    sender: Sender<Job>,
}

impl WorkerPeer for CrossbeamPool {
    fn build(cfg: &PoolCfg) -> Result<Self, String> {
        let (sender, receiver) = unbounded::<Job>();
        for _ in 0..cfg.size {
            let receiver = receiver.clone();
            let mut builder = thread::Builder::new();
            if let Some(bytes) = cfg.stack_size {
                builder = builder.stack_size(bytes);
            }
            builder
                .spawn(move || {
                    for job in receiver {
                        job();
                    }
                })
                .map_err(|e| format!("thread spawn failed: {e}"))?;
        }
        Ok(CrossbeamPool { sender })
    }

    fn execute<F>(&self, job: F) -> Result<(), String>
    where
        F: FnOnce() + Send + 'static,
    {
        self.sender
            .send(Box::new(job))
            .map_err(|_| "all workers are gone".to_owned())
    }
}
