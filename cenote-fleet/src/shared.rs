//! What every handle of one semaphore shares: its settings, its Redis
//! connection and scripts, this process's waiters and leases, and the
//! calls into Redis (one script each, one round trip).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use redis::aio::ConnectionManager;
use redis::{Script, ScriptInvocation};
use tokio::runtime::Handle;
use tokio::sync::Notify;

use crate::clock::RedisClock;
use crate::error::Error;
use crate::lease::LeaseState;
use crate::metrics::FleetMetrics;
use crate::scripts::Scripts;

/// A grant made to a queued waiter by another process's call, pushed to
/// this one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Grant {
    pub(crate) token: u64,
    /// The lease's end on Redis's clock (µs since the epoch).
    pub(crate) expires_us: i64,
}

/// A queued waiter of this process.
#[derive(Debug, Default)]
pub(crate) struct Waiting {
    pub(crate) grant: Mutex<Option<Grant>>,
    pub(crate) woken: Notify,
}

/// What `acquire` said.
pub(crate) enum Acquired {
    Granted(Grant),
    /// Queued at `rank` (0: the head); the soonest lease or waiter expiry
    /// is `next_event` away (`None`: nothing expires).
    Queued {
        rank: u64,
        next_event: Option<Duration>,
    },
    Busy,
    /// The semaphore's record is gone.
    NoRecord,
}

pub(crate) struct Shared {
    pub(crate) name: String,
    pub(crate) cap: u64,
    pub(crate) ttl: Duration,
    pub(crate) acquire_timeout: Duration,
    pub(crate) response_timeout: Duration,
    /// `{cenote:fleet:<name>}`: the hash tag every key starts with.
    pub(crate) prefix: String,
    keys: [String; 7],
    /// This handle's id in the protocol (random, plus the OS process id).
    pub(crate) process: String,
    conn: ConnectionManager,
    scripts: Scripts,
    pub(crate) clock: RedisClock,
    pub(crate) rt: Handle,
    next_id: AtomicU64,
    /// The highest fencing token this handle has seen.
    max_token: AtomicU64,
    /// Set when the record was found gone: nothing is granted through this
    /// handle before then (see `DESIGN.md`, "A lost record").
    quarantine: Mutex<Option<Instant>>,
    pub(crate) waiters: Mutex<HashMap<String, Arc<Waiting>>>,
    /// Wakes the listener when the first waiter arrives.
    pub(crate) waiter_added: Notify,
    pub(crate) leases: Mutex<HashMap<String, Arc<LeaseState>>>,
    pub(crate) metrics: FleetMetrics,
}

impl Shared {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        name: String,
        cap: u64,
        ttl: Duration,
        acquire_timeout: Duration,
        response_timeout: Duration,
        conn: ConnectionManager,
        rt: Handle,
    ) -> Shared {
        let prefix = format!("{{cenote:fleet:{name}}}");
        let keys = [
            "meta", "holders", "leases", "queue", "waiters", "waiting", "granted",
        ]
        .map(|k| format!("{prefix}:{k}"));
        let process = format!("{:016x}-{}", rand_u64(), std::process::id());
        Shared {
            cap,
            ttl,
            acquire_timeout,
            response_timeout,
            prefix,
            keys,
            process,
            conn,
            scripts: Scripts::new(),
            clock: RedisClock::new(),
            rt,
            next_id: AtomicU64::new(1),
            max_token: AtomicU64::new(0),
            quarantine: Mutex::new(None),
            waiters: Mutex::new(HashMap::new()),
            waiter_added: Notify::new(),
            leases: Mutex::new(HashMap::new()),
            metrics: FleetMetrics::new(&name),
            name,
        }
    }

    /// A new waiter (and lease) id, unique across the fleet.
    pub(crate) fn new_id(&self) -> String {
        format!("{}:{}", self.process, self.next_id.fetch_add(1, Relaxed))
    }

    /// This process's wake list.
    pub(crate) fn wake_key(&self) -> String {
        format!("{}:wake:{}", self.prefix, self.process)
    }

    fn ttl_us(&self) -> u64 {
        self.ttl.as_micros() as u64
    }

    fn invocation<'s>(&'s self, script: &'s Script) -> ScriptInvocation<'s> {
        let mut inv = script.prepare_invoke();
        for k in &self.keys {
            inv.key(k);
        }
        inv
    }

    /// Runs a script, bounded by the response timeout.
    async fn run<T: redis::FromRedisValue>(&self, inv: ScriptInvocation<'_>) -> Result<T, Error> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(self.response_timeout, inv.invoke_async(&mut conn)).await {
            Ok(r) => r.map_err(Error::Unreachable),
            Err(_) => Err(Error::Unreachable(redis::RedisError::from((
                redis::ErrorKind::IoError,
                "no reply within the response timeout",
            )))),
        }
    }

    /// Creates the semaphore's record if missing; checks the cap.
    pub(crate) async fn init(&self) -> Result<(), Error> {
        let mut inv = self.invocation(&self.scripts.init);
        inv.arg(self.cap).arg(self.max_token.load(Relaxed));
        let sent = Instant::now();
        let reply: (String, i64, i64, i64) = self.run(inv).await?;
        self.status(&reply)?;
        self.clock.sample(sent, reply.3);
        Ok(())
    }

    /// Maps the replies every script may give for a missing record or
    /// another cap.
    fn status(&self, reply: &(String, i64, i64, i64)) -> Result<(), Error> {
        match reply.0.as_str() {
            "CAP" => Err(Error::CapMismatch {
                name: self.name.clone(),
                stored: reply.1 as u64,
                asked: self.cap,
            }),
            _ => Ok(()),
        }
    }

    /// A grant, a place in the queue, or (`try_only`) `Busy`. A record
    /// found gone starts a quarantine of one TTL, after which the record is
    /// made again.
    pub(crate) async fn acquire(
        &self,
        id: &str,
        n: u64,
        try_only: bool,
    ) -> Result<Acquired, Error> {
        match self.acquire_once(id, n, try_only).await? {
            Acquired::NoRecord => {
                self.recover().await?;
                match self.acquire_once(id, n, try_only).await? {
                    // Deleted again at once: try later.
                    Acquired::NoRecord => Err(Error::Quarantined {
                        until: Instant::now() + self.ttl,
                    }),
                    a => Ok(a),
                }
            }
            a => Ok(a),
        }
    }

    /// After the record was found gone: `Quarantined` until one TTL has
    /// passed since, then the record is made again. Every lease granted
    /// before the loss has ended by then: its renewals find it gone, and
    /// its local deadline is at most one TTL after its last renewal.
    async fn recover(&self) -> Result<(), Error> {
        let until = *self.quarantine.lock().get_or_insert_with(|| {
            self.metrics.quarantines.increment(1);
            Instant::now() + self.ttl
        });
        if Instant::now() < until {
            return Err(Error::Quarantined { until });
        }
        self.init().await?;
        *self.quarantine.lock() = None;
        Ok(())
    }

    async fn acquire_once(&self, id: &str, n: u64, try_only: bool) -> Result<Acquired, Error> {
        let mut inv = self.invocation(&self.scripts.acquire);
        inv.arg(id)
            .arg(n)
            .arg(self.ttl_us())
            .arg(&self.process)
            .arg(self.cap)
            .arg(if try_only { "try" } else { "wait" })
            .arg(&self.prefix);
        let sent = Instant::now();
        let reply: (String, i64, i64, i64) = self.run(inv).await?;
        self.status(&reply)?;
        if reply.3 > 0 {
            self.clock.sample(sent, reply.3);
        }
        match reply.0.as_str() {
            "OK" => Ok(Acquired::Granted(self.seen(Grant {
                token: reply.1 as u64,
                expires_us: reply.2,
            }))),
            "QUEUED" => Ok(Acquired::Queued {
                rank: reply.1 as u64,
                next_event: u64::try_from(reply.2).ok().map(Duration::from_micros),
            }),
            "BUSY" => Ok(Acquired::Busy),
            "NOINIT" => Ok(Acquired::NoRecord),
            other => Err(Error::Protocol(other.to_owned())),
        }
    }

    /// Notes a grant's token (the highest one is carried into a record
    /// made again).
    pub(crate) fn seen(&self, g: Grant) -> Grant {
        self.max_token.fetch_max(g.token, Relaxed);
        g
    }

    /// Gives a lease back; `false` if it had expired already.
    pub(crate) async fn release(&self, id: &str) -> Result<bool, Error> {
        let mut inv = self.invocation(&self.scripts.release);
        inv.arg(id).arg(self.cap).arg(&self.prefix);
        let sent = Instant::now();
        let (n, now): (i64, i64) = self.run(inv).await?;
        self.clock.sample(sent, now);
        Ok(n > 0)
    }

    /// Takes a waiter out of the queue, or gives back a grant that raced
    /// its cancel.
    pub(crate) async fn cancel(&self, id: &str) -> Result<(), Error> {
        let mut inv = self.invocation(&self.scripts.cancel);
        inv.arg(id).arg(self.cap).arg(&self.prefix);
        let _: String = self.run(inv).await?;
        Ok(())
    }

    /// Renews `leases` and keeps `waiters` queued; the new expiry of each
    /// lease (`None`: lost).
    pub(crate) async fn renew(
        &self,
        leases: &[Arc<LeaseState>],
        waiters: &[String],
    ) -> Result<Vec<Option<i64>>, Error> {
        let mut inv = self.invocation(&self.scripts.renew);
        inv.arg(self.ttl_us())
            .arg(self.cap)
            .arg(&self.prefix)
            .arg(self.max_token.load(Relaxed))
            .arg(leases.len());
        for l in leases {
            inv.arg(&l.id);
        }
        for w in waiters {
            inv.arg(w);
        }
        let sent = Instant::now();
        let reply: Vec<i64> = self.run(inv).await?;
        let (&now, exps) = reply
            .split_first()
            .ok_or_else(|| Error::Protocol("empty renewal reply".to_owned()))?;
        self.clock.sample(sent, now);
        Ok(exps.iter().map(|&e| (e > 0).then_some(e)).collect())
    }
}

/// 64 random bits from the OS's hasher seeds (no RNG dependency for one
/// id per handle).
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}
