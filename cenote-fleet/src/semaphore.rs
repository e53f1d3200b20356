//! [`Semaphore`]: the handle to one fleet-wide semaphore.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::runtime::{Handle, RuntimeFlavor};

use crate::acquire::acquire;
use crate::builder::Builder;
use crate::error::Error;
use crate::gate::Gated;
use crate::lease::Lease;
use crate::losses::Losses;
use crate::share::LocalShare;
use crate::shared::Shared;
use crate::trace::AcquireSpan;
use crate::{renew, wake};

/// A semaphore whose cap holds across every process that uses it, kept in
/// Redis. Cheap to clone; the last handle dropped stops its background
/// tasks (its leases still release when dropped).
#[derive(Clone)]
pub struct Semaphore {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Semaphore")
            .field("name", &self.shared.name)
            .field("cap", &self.shared.cap)
            .field("ttl", &self.shared.ttl)
            .finish_non_exhaustive()
    }
}

impl Semaphore {
    /// A builder for the semaphore `name` with `cap` permits on the Redis
    /// at `url`.
    pub fn builder(url: impl Into<String>, name: impl Into<String>, cap: u64) -> Builder {
        Builder::new(url, name, cap)
    }

    pub(crate) async fn start(b: Builder) -> Result<Semaphore, Error> {
        let client = redis::Client::open(b.url.as_str())?;
        let config = |block: Duration| {
            ConnectionManagerConfig::new()
                .set_connection_timeout(b.response_timeout)
                .set_response_timeout(b.response_timeout + block)
                .set_number_of_retries(1)
        };
        let conn =
            ConnectionManager::new_with_config(client.clone(), config(Duration::ZERO)).await?;
        let listener =
            ConnectionManager::new_with_config(client, config(Duration::from_secs(2))).await?;
        let rt = Handle::current();
        let shared = Arc::new(Shared::new(
            b.name,
            b.cap,
            b.ttl,
            b.acquire_timeout,
            b.response_timeout,
            conn,
            rt.clone(),
        ));
        let quarantine = shared.restart_quarantine().await;
        shared.init(quarantine).await?;
        rt.spawn(renew::run(Arc::downgrade(&shared)));
        rt.spawn(wake::run(
            Arc::downgrade(&shared),
            listener,
            shared.wake_key(),
        ));
        Ok(Semaphore { shared })
    }

    /// The semaphore's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The cap: permits held at once across the fleet.
    pub fn cap(&self) -> u64 {
        self.shared.cap
    }

    /// One permit, waiting in the fleet-wide FIFO queue at most the
    /// builder's acquire timeout.
    pub async fn acquire(&self) -> Result<Lease, Error> {
        self.acquire_many_timeout(1, self.shared.acquire_timeout)
            .await
    }

    /// `n` permits as one lease, waiting at most the acquire timeout.
    pub async fn acquire_many(&self, n: u64) -> Result<Lease, Error> {
        self.acquire_many_timeout(n, self.shared.acquire_timeout)
            .await
    }

    /// One permit, waiting at most `timeout`.
    pub async fn acquire_timeout(&self, timeout: Duration) -> Result<Lease, Error> {
        self.acquire_many_timeout(1, timeout).await
    }

    /// `n` permits, waiting at most `timeout`. A call dropped or timed out
    /// leaves the queue (a grant that raced it is given back).
    pub async fn acquire_many_timeout(&self, n: u64, timeout: Duration) -> Result<Lease, Error> {
        let span = AcquireSpan::new(&self.shared.name, n);
        let since = Instant::now();
        let bounded = tokio::time::timeout(timeout, acquire(&self.shared, n, false));
        let got = match span.run(bounded).await {
            Ok(r) => r,
            Err(_) => {
                self.shared.metrics.timeouts.increment(1);
                Err(Error::TimedOut(timeout))
            }
        };
        span.end(&got, since.elapsed());
        got
    }

    /// One permit if one is free now and nobody is queued ahead
    /// ([`Error::Busy`] otherwise); never queues.
    pub async fn try_acquire(&self) -> Result<Lease, Error> {
        self.try_acquire_many(1).await
    }

    /// `n` permits if free now and nobody is queued ahead.
    pub async fn try_acquire_many(&self, n: u64) -> Result<Lease, Error> {
        let span = AcquireSpan::new(&self.shared.name, n);
        let since = Instant::now();
        let got = span.run(acquire(&self.shared, n, true)).await;
        span.end(&got, since.elapsed());
        got
    }

    /// [`acquire`](Self::acquire), blocking the calling thread. On a
    /// multi-thread runtime's worker it blocks in place; on a
    /// current-thread runtime's thread it would never return, and fails
    /// with [`Error::InsideRuntime`].
    pub fn acquire_blocking(&self) -> Result<Lease, Error> {
        self.acquire_many_blocking(1, self.shared.acquire_timeout)
    }

    /// [`acquire_many_timeout`](Self::acquire_many_timeout), blocking.
    pub fn acquire_many_blocking(&self, n: u64, timeout: Duration) -> Result<Lease, Error> {
        if let Ok(RuntimeFlavor::CurrentThread) = Handle::try_current().map(|h| h.runtime_flavor())
        {
            return Err(Error::InsideRuntime);
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let this = self.clone();
        self.shared.rt.spawn(async move {
            let _ = tx.send(this.acquire_many_timeout(n, timeout).await);
        });
        let wait = move || rx.recv().unwrap_or(Err(Error::RuntimeGone));
        if Handle::try_current().is_ok() {
            tokio::task::block_in_place(wait)
        } else {
            wait()
        }
    }

    /// `manager`, gated by this semaphore: each resource the pool builds
    /// from it holds one fleet permit for its whole life, so the pools of
    /// every process together keep at most `cap` resources.
    pub fn gate<M>(&self, manager: M) -> Gated<M> {
        Gated::new(manager, self.clone())
    }

    /// `work`, run under one fleet permit: waits for it (at most the
    /// acquire timeout), then runs `work` until it ends or the lease is
    /// lost ([`Error::LeaseLost`], `work` dropped). For a `tasks` pool:
    /// `pool.spawn(fleet.gated(work))`.
    pub fn gated<F: Future>(&self, work: F) -> impl Future<Output = Result<F::Output, Error>> {
        let this = self.clone();
        async move {
            let lease = this.acquire().await?;
            lease.run_until_lost(work).await
        }
    }

    /// Renews this handle's leases now (they are renewed every third of the
    /// TTL in the background).
    pub async fn renew_now(&self) {
        renew::renew_once(&self.shared).await;
    }

    /// Waits, at most `timeout`, until the releases of dropped leases and
    /// the cancels of dropped waiters sent in the background have been
    /// answered by Redis. Call it before the process exits: a release
    /// that never reaches Redis leaves its permits held until the lease's
    /// TTL. Leases still held stay held.
    pub async fn shutdown_timeout(&self, timeout: Duration) -> Result<(), Error> {
        tokio::time::timeout(timeout, self.shared.background.idle())
            .await
            .map_err(|_| Error::TimedOut(timeout))
    }

    /// This process's share of the semaphore, served locally (see
    /// [`LocalShare`]): blocks of at most `max_block` permits leased from
    /// the fleet as local demand needs them, each given back once all its
    /// permits have been free for `idle`.
    pub fn local_share(&self, max_block: u64, idle: Duration) -> Result<LocalShare, Error> {
        LocalShare::start(self.clone(), max_block, idle)
    }

    /// What this handle saw of Redis losing the semaphore's writes: the
    /// losses it found and its leases refused for the cap afterwards (the
    /// overshoot a partial loss caused here).
    pub fn losses(&self) -> Losses {
        self.shared.losses.snapshot()
    }
}
