//! The fleet semaphore as a second admission gate: a `cenote::resources`
//! manager whose every resource holds a fleet lease for its whole life
//! ([`Gated`]), so "at most 200 connections across the fleet" is one call,
//! `Pool::builder(fleet.gate(manager))`; and a future that runs under a
//! lease ([`Semaphore::gated`](crate::Semaphore::gated)), for `tasks` pools.

use std::ops::{Deref, DerefMut};

use cenote::resources::Manager;

use crate::error::Error;
use crate::lease::Lease;
use crate::semaphore::Semaphore;

/// A manager whose resources each hold one permit of a fleet semaphore,
/// from before their create to after their destroy. A resource whose lease
/// is lost is broken: never lent again, destroyed when given back.
///
/// A create waits for its permit at most the semaphore's acquire timeout,
/// and the get that started it waits for that create, not for a resource
/// its pool gets back meanwhile. So give the gate's semaphore a short
/// acquire timeout (a few hundred milliseconds): when every fleet permit
/// is held, the create fails fast (its error names the fleet) and the get
/// takes the next resource its own pool gets back.
#[derive(Debug)]
pub struct Gated<M> {
    inner: M,
    fleet: Semaphore,
}

impl<M> Gated<M> {
    pub(crate) fn new(inner: M, fleet: Semaphore) -> Gated<M> {
        Gated { inner, fleet }
    }
}

/// A resource of a [`Gated`] manager: derefs to the inner resource.
#[derive(Debug)]
pub struct Fleeted<R> {
    resource: R,
    lease: Lease,
}

impl<R> Fleeted<R> {
    /// The fleet lease this resource holds.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }
}

impl<R> Deref for Fleeted<R> {
    type Target = R;
    fn deref(&self) -> &R {
        &self.resource
    }
}

impl<R> DerefMut for Fleeted<R> {
    fn deref_mut(&mut self) -> &mut R {
        &mut self.resource
    }
}

/// A gated manager's error: the fleet's, or the inner manager's.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GateError<E: std::error::Error + 'static> {
    /// No fleet permit (timed out, Redis unreachable, …).
    #[error("no fleet permit for a new resource")]
    Fleet(#[source] Error),
    /// The inner manager failed.
    #[error("the resource manager failed")]
    Manager(#[source] E),
}

impl<M: Manager> Manager for Gated<M> {
    type Resource = Fleeted<M::Resource>;
    type Error = GateError<M::Error>;

    async fn create(&self) -> Result<Self::Resource, Self::Error> {
        // Dropped with the future if the pool's create timeout cuts it:
        // the wait leaves the queue, a lease already granted is released.
        let lease = self.fleet.acquire().await.map_err(GateError::Fleet)?;
        let resource = self.inner.create().await.map_err(GateError::Manager)?;
        Ok(Fleeted { resource, lease })
    }

    async fn check(&self, r: &mut Self::Resource) -> Result<(), Self::Error> {
        self.inner
            .check(&mut r.resource)
            .await
            .map_err(GateError::Manager)
    }

    fn is_broken(&self, r: &mut Self::Resource) -> bool {
        !r.lease.is_valid() || self.inner.is_broken(&mut r.resource)
    }

    async fn reset(&self, r: &mut Self::Resource) -> Result<(), Self::Error> {
        self.inner
            .reset(&mut r.resource)
            .await
            .map_err(GateError::Manager)
    }

    async fn destroy(&self, r: Self::Resource) {
        let Fleeted { resource, lease } = r;
        self.inner.destroy(resource).await;
        // After the resource is gone: the permit outlives what it counts.
        drop(lease);
    }

    fn is_permanent(&self, e: &Self::Error) -> bool {
        match e {
            GateError::Fleet(f) => matches!(
                f,
                Error::CapMismatch { .. } | Error::Config(_) | Error::TooMany { .. }
            ),
            GateError::Manager(m) => self.inner.is_permanent(m),
        }
    }
}
