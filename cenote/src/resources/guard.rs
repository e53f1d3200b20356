//! The borrowed resource and the permit it travels with.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::panic::Location;
use std::sync::Arc;

use super::core::Idle;
use super::pool::Inner;
use super::Manager;

/// One of the pool's permits, owned: given back when dropped. Whoever
/// holds a resource outside the idle store holds one of these.
pub(crate) struct Lease<M: Manager> {
    inner: Arc<Inner<M>>,
}

impl<M: Manager> Lease<M> {
    /// Takes ownership of a permit the caller already holds.
    pub(crate) fn new(inner: Arc<Inner<M>>) -> Self {
        Lease { inner }
    }

    pub(crate) fn inner(&self) -> &Arc<Inner<M>> {
        &self.inner
    }
}

impl<M: Manager> Drop for Lease<M> {
    fn drop(&mut self) {
        self.inner.core.release();
    }
}

/// A resource borrowed from a [`Pool`](super::Pool). It goes back when
/// dropped: destroyed if the manager's `is_broken` says so, if its lifetime
/// is over, or if the dropping thread is panicking (the borrower may have
/// left it half-way through something); otherwise kept idle, to be reset
/// before the next borrower.
///
/// `'static` and `Send`: it can move into another task or thread and
/// return from there.
pub struct Pooled<M: Manager> {
    item: Option<Idle<M::Resource>>,
    lent_slot: usize,
    /// When it was lent (with `histograms(true)` and metrics on): its
    /// use time is recorded when it comes back.
    #[cfg(feature = "metrics")]
    lent_at: Option<std::time::Instant>,
    // Dropped after `Drop::drop` put the resource back: the permit is
    // released only once the resource is idle (or counted gone).
    lease: Lease<M>,
}

impl<M: Manager> Pooled<M> {
    pub(crate) fn new(lease: Lease<M>, item: Idle<M::Resource>, at: &'static Location) -> Self {
        let lent_slot = lease.inner().register_lent(item.meta.id, at);
        Pooled {
            #[cfg(feature = "metrics")]
            lent_at: lease.inner().cfg.histograms.then(std::time::Instant::now),
            item: Some(item),
            lent_slot,
            lease,
        }
    }

    /// Takes the resource out of the pool for good (the pool makes another
    /// when needed).
    pub fn detach(mut self) -> M::Resource {
        let item = self.item.take().expect("present until dropped");
        let inner = self.lease.inner();
        if let Some(lent) = &inner.lent {
            lent.lock().remove(self.lent_slot);
        }
        inner.core.forget();
        item.res
    }

    /// The resource's number in its pool (stable for its life).
    pub fn id(&self) -> u64 {
        self.item.as_ref().expect("present until dropped").meta.id
    }
}

impl<M: Manager> Deref for Pooled<M> {
    type Target = M::Resource;
    #[inline]
    fn deref(&self) -> &M::Resource {
        &self.item.as_ref().expect("present until dropped").res
    }
}

impl<M: Manager> DerefMut for Pooled<M> {
    #[inline]
    fn deref_mut(&mut self) -> &mut M::Resource {
        &mut self.item.as_mut().expect("present until dropped").res
    }
}

impl<M: Manager> Drop for Pooled<M> {
    #[inline]
    fn drop(&mut self) {
        if let Some(item) = self.item.take() {
            #[cfg(feature = "metrics")]
            if let Some(at) = self.lent_at {
                self.lease.inner().metrics.used_for(at.elapsed());
            }
            self.lease.inner().give_back(item, self.lent_slot);
        }
    }
}

impl<M: Manager> fmt::Debug for Pooled<M>
where
    M::Resource: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pooled")
            .field("id", &self.id())
            .field("resource", &**self)
            .finish()
    }
}
