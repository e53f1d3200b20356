//! [`Lease`]: permits held across the fleet, with a fencing token and a
//! local deadline that the renewer moves on while Redis agrees.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use crate::error::Error;
use crate::shared::Shared;

/// What this process knows of one lease. `deadline` is `None` once lost.
#[derive(Debug)]
pub(crate) struct LeaseState {
    pub(crate) id: String,
    pub(crate) permits: u64,
    pub(crate) token: u64,
    pub(crate) deadline: watch::Sender<Option<Instant>>,
}

impl LeaseState {
    /// Still held as far as this process can tell: not lost, and its local
    /// deadline not passed.
    pub(crate) fn valid_until(&self) -> Option<Instant> {
        (*self.deadline.borrow()).filter(|&d| Instant::now() < d)
    }

    /// Renewed: held until `until` (unless already lost; a lease lost
    /// locally is never revived, its holder may have stopped).
    pub(crate) fn extend(&self, until: Instant) {
        self.deadline.send_if_modified(|d| match d {
            Some(old) if Instant::now() < *old && until > *old => {
                *d = Some(until);
                true
            }
            _ => false,
        });
    }

    /// Marks it lost; whether it was still valid (a loss, not an end).
    pub(crate) fn lose(&self) -> bool {
        self.deadline
            .send_replace(None)
            .is_some_and(|d| Instant::now() < d)
    }
}

/// Permits of a fleet [`Semaphore`](crate::Semaphore), held until dropped
/// (released in the background; if that fails, the lease expires after
/// its TTL) or until lost.
///
/// A lease is lost when it is not renewed before its local deadline (Redis
/// unreachable for that long) or Redis reports it expired. From then on
/// another holder may have the permits: work guarded by the lease must
/// stop, which [`run_until_lost`](Self::run_until_lost) does, and writes
/// it makes elsewhere should carry the [`token`](Self::token) so that the
/// store can refuse an older holder's (fencing).
#[must_use = "a Lease is released as soon as it is dropped"]
pub struct Lease {
    shared: Arc<Shared>,
    state: Arc<LeaseState>,
    released: bool,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("token", &self.state.token)
            .field("permits", &self.state.permits)
            .field("deadline", &*self.state.deadline.borrow())
            .finish()
    }
}

impl Lease {
    /// Registers a granted lease for renewal.
    pub(crate) fn new(
        shared: Arc<Shared>,
        id: String,
        permits: u64,
        token: u64,
        deadline: Instant,
    ) -> Lease {
        let (tx, _) = watch::channel(Some(deadline));
        let state = Arc::new(LeaseState {
            id: id.clone(),
            permits,
            token,
            deadline: tx,
        });
        shared.leases.lock().insert(id, state.clone());
        Lease {
            shared,
            state,
            released: false,
        }
    }

    /// The fencing token: strictly increasing across every grant of this
    /// semaphore, fleet-wide.
    pub fn token(&self) -> u64 {
        self.state.token
    }

    /// How many permits this lease holds.
    pub fn permits(&self) -> u64 {
        self.state.permits
    }

    /// When the lease ends unless renewed, on this process's clock (never
    /// after its end on Redis's clock); `None` once lost.
    pub fn deadline(&self) -> Option<Instant> {
        *self.state.deadline.borrow()
    }

    /// Whether the lease still holds: not lost, its deadline not passed.
    pub fn is_valid(&self) -> bool {
        self.state.valid_until().is_some()
    }

    /// Completes when the lease is lost: its deadline passes unrenewed, or
    /// Redis reports it expired.
    pub fn lost(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.state.deadline.subscribe();
        async move {
            loop {
                let Some(deadline) = *rx.borrow_and_update() else {
                    return;
                };
                if Instant::now() >= deadline {
                    return;
                }
                tokio::select! {
                    () = tokio::time::sleep_until(deadline.into()) => {}
                    changed = rx.changed() => {
                        if changed.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Runs `work` while the lease holds: cancelled (dropped) at the local
    /// deadline if the lease is lost first, with [`Error::LeaseLost`].
    pub async fn run_until_lost<F: Future>(&self, work: F) -> Result<F::Output, Error> {
        if !self.is_valid() {
            return Err(Error::LeaseLost);
        }
        tokio::select! {
            biased;
            () = self.lost() => Err(Error::LeaseLost),
            out = work => Ok(out),
        }
    }

    /// Gives the permits back now and says whether the lease still held
    /// ([`Error::LeaseLost`] if it had expired: someone else may have held
    /// its permits meanwhile).
    pub async fn release(mut self) -> Result<(), Error> {
        self.released = true;
        self.shared.leases.lock().remove(&self.state.id);
        self.shared.metrics.holders.decrement(1.0);
        let valid = self.is_valid();
        let held = self
            .shared
            .release(&self.state.id, self.state.permits)
            .await?;
        if held && valid {
            Ok(())
        } else {
            Err(Error::LeaseLost)
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        self.shared.leases.lock().remove(&self.state.id);
        self.shared.metrics.holders.decrement(1.0);
        self.state.lose();
        let (shared, id, n) = (
            self.shared.clone(),
            self.state.id.clone(),
            self.state.permits,
        );
        // In the background: a drop never waits on the network. If the
        // runtime is gone, the lease expires after its TTL.
        let background = shared.background.clone();
        background.spawn(&shared.rt.clone(), async move {
            let _ = shared.release(&id, n).await;
        });
    }
}
