//! Calls sent in the background (the release of a dropped lease, the
//! cancel of a dropped waiter), counted so that a process can wait for
//! them before it exits ([`Semaphore::shutdown_timeout`]): one that never
//! reaches Redis leaves its permits held until the lease's TTL.
//!
//! [`Semaphore::shutdown_timeout`]: crate::Semaphore::shutdown_timeout

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use tokio::runtime::Handle;
use tokio::sync::Notify;

#[derive(Debug, Default)]
pub(crate) struct Background {
    in_flight: AtomicUsize,
    done: Notify,
}

impl Background {
    /// Runs `call` on `rt`, counted until it ends.
    pub(crate) fn spawn<F>(self: &Arc<Self>, rt: &Handle, call: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.in_flight.fetch_add(1, SeqCst);
        let count = Ended(self.clone());
        rt.spawn(async move {
            call.await;
            drop(count);
        });
    }

    /// Until no call is in flight.
    pub(crate) async fn idle(&self) {
        loop {
            let done = self.done.notified();
            if self.in_flight.load(SeqCst) == 0 {
                return;
            }
            done.await;
        }
    }
}

/// Counts a call as ended when dropped: also if its task is cancelled (the
/// runtime shutting down).
struct Ended(Arc<Background>);

impl Drop for Ended {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, SeqCst) == 1 {
            self.0.done.notify_waiters();
        }
    }
}
