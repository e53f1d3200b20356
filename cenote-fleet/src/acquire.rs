//! The way to a lease: a grant at once, or a place in the fleet-wide FIFO
//! queue and a wait for the grant that a release (or a reclaimed lease)
//! pushes to this process. A waiter dropped midway leaves the queue, and
//! gives back a grant that raced its cancel ([`Queued`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::batch::Ask;
use crate::error::Error;
use crate::lease::Lease;
use crate::shared::{Acquired, Grant, Shared, Waiting};

/// Ranks that watch the soonest expiry themselves (the acquire script
/// sends it to these ranks only): the head, which a reclaimed lease serves
/// first, and the one behind it, in case the head's process is gone (its
/// entry expires). Every other waiter sleeps until a push, or until its
/// process's renewal hands it a grant, tells it its rank reached these,
/// or finds its entry lost.
pub(crate) const WATCHING_RANKS: u64 = 2;

/// A waiter registered in this process (and maybe queued in Redis): on
/// drop, unless it became a lease, it leaves the queue in the background,
/// giving back a grant that raced the drop.
struct Queued {
    shared: Arc<Shared>,
    id: String,
    waiting: Arc<Waiting>,
    armed: bool,
}

impl Queued {
    fn new(shared: &Arc<Shared>) -> Queued {
        let id = shared.new_id();
        let waiting = Arc::new(Waiting::default());
        let first = {
            let mut waiters = shared.waiters.lock();
            waiters.insert(id.clone(), waiting.clone());
            waiters.len() == 1
        };
        shared.metrics.waiters.increment(1.0);
        if first {
            shared.waiter_added.notify_one();
        }
        Queued {
            shared: shared.clone(),
            id,
            waiting,
            armed: true,
        }
    }

    /// The waiter became a lease (or never queued): nothing to undo.
    fn settle(mut self, lease: Option<Grant>, permits: u64, since: Instant) -> Option<Lease> {
        self.armed = false;
        let grant = lease?;
        self.shared.metrics.granted(since.elapsed());
        let deadline = self
            .shared
            .clock
            .local(grant.expires_us)
            .unwrap_or_else(Instant::now);
        Some(Lease::new(
            self.shared.clone(),
            self.id.clone(),
            permits,
            grant.token,
            deadline,
        ))
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.shared.waiters.lock().remove(&self.id);
        self.shared.metrics.waiters.decrement(1.0);
        if self.armed {
            let (shared, id) = (self.shared.clone(), self.id.clone());
            let background = shared.background.clone();
            background.spawn(&shared.rt.clone(), async move {
                let _ = shared.cancel(&id).await;
            });
        }
    }
}

/// A lease of `n` permits, waiting in the queue unless `try_only`.
pub(crate) async fn acquire(shared: &Arc<Shared>, n: u64, try_only: bool) -> Result<Lease, Error> {
    if n == 0 || n > shared.cap {
        return Err(Error::TooMany {
            asked: n,
            cap: shared.cap,
        });
    }
    let since = Instant::now();
    let queued = Queued::new(shared);
    let mut ask = Ask {
        id: queued.id.clone(),
        n,
        try_only,
        first: true,
    };
    loop {
        let asked = shared.acquire(&ask).await?;
        ask.first = false;
        let nap = match asked {
            Acquired::Granted(g) => return Ok(queued.settle(Some(g), n, since).expect("granted")),
            Acquired::Busy => {
                queued.settle(None, n, since);
                return Err(Error::Busy);
            }
            Acquired::NoRecord | Acquired::Quarantined(_) => {
                unreachable!("an error of Shared::acquire")
            }
            Acquired::Queued { rank, next_event } => match next_event {
                Some(d) if rank < WATCHING_RANKS => Some(d + Duration::from_millis(1)),
                _ => None,
            },
        };
        let watch = async {
            match nap {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = queued.waiting.woken.notified() => {}
            () = watch => {}
        }
        let pushed = queued.waiting.grant.lock().take();
        if let Some(g) = pushed {
            return Ok(queued.settle(Some(g), n, since).expect("granted"));
        }
    }
}
