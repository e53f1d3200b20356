//! The way back: a lent resource's return (to the idle store, or to
//! `destroy` when it is broken, expired or returned by a panicking thread),
//! every resource's end (`dispose`: `Manager::destroy` on the pool's
//! runtime), and the lent table the leak reports read.

use std::panic::Location;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;

use super::core::{Dirty, Idle};
use super::hooks::{guarded, Lent};
use super::pool::Inner;
use super::stats::DestroyReason;
use super::Manager;

impl<M: Manager> Inner<M> {
    /// Hands a resource to `destroy` (counted gone now, so a replacement
    /// may be made while it closes).
    pub(crate) fn dispose(self: &Arc<Self>, item: Idle<M::Resource>, why: DestroyReason) {
        self.core.forget();
        self.counters.destroyed(why);
        crate::log::debug!(pool = %self.name, reason = ?why, "cenote: closing a pooled resource");
        if let Some(hook) = &self.hooks.on_destroy {
            guarded("on_destroy", (), || hook(&item.res, why));
        }
        self.destroying.fetch_add(1, SeqCst);
        let inner = self.clone();
        struct Done<M: Manager>(Arc<Inner<M>>);
        impl<M: Manager> Drop for Done<M> {
            fn drop(&mut self) {
                self.0.destroying.fetch_sub(1, SeqCst);
                self.0.gone.notify_waiters();
            }
        }
        // Spawned, so a guard's drop never waits for it; if the runtime is
        // gone, the task is dropped unrun and the resource with it.
        self.rt.handle.spawn(async move {
            let done = Done(inner);
            done.0.manager.destroy(item.res).await;
        });
    }

    /// A guard's return path (see `Pooled::drop`).
    pub(crate) fn give_back(self: &Arc<Self>, mut item: Idle<M::Resource>, lent_slot: usize) {
        if let Some(lent) = &self.lent {
            lent.lock().remove(lent_slot);
        }
        if std::thread::panicking() {
            self.dispose(item, DestroyReason::Panicked);
            return;
        }
        if guarded("is_broken", true, || self.manager.is_broken(&mut item.res)) {
            self.dispose(item, DestroyReason::Broken);
            return;
        }
        if let Some(hook) = &self.hooks.on_return {
            guarded("on_return", (), || hook(&mut item.res));
        }
        let now = self.now_ms();
        if item.meta.expires_ms <= now {
            self.dispose(item, DestroyReason::Expired);
            return;
        }
        item.meta.dirty = Dirty::Yes;
        item.meta.last_used_ms = now;
        let excess = self.core.put_idle(item);
        // Usually empty: skip building and dropping an iterator.
        if !excess.is_empty() {
            for item in excess {
                self.dispose(item, DestroyReason::Evicted);
            }
        }
    }

    pub(crate) fn register_lent(&self, id: u64, at: &'static Location<'static>) -> usize {
        match &self.lent {
            None => usize::MAX,
            Some(table) => table.lock().insert(Lent {
                id,
                since_ms: self.now_ms(),
                at,
                reported: false,
            }),
        }
    }
}
