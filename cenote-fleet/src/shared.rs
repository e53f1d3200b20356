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

use crate::background::Background;
use crate::batch::{self, Ask, Batches, Call};
use crate::clock::RedisClock;
use crate::error::Error;
use crate::lease::LeaseState;
use crate::losses::LossCounts;
use crate::metrics::FleetMetrics;
use crate::scripts::Scripts;
use crate::trace;

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
    /// The record was made again after a loss: nothing is granted for
    /// this long.
    Quarantined(Duration),
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
    keys: [String; 6],
    /// This handle's id in the protocol (random, plus the OS process id).
    pub(crate) process: String,
    conn: ConnectionManager,
    pub(crate) scripts: Scripts,
    /// Acquires, releases and cancels waiting for the next batch.
    pub(crate) batches: Batches,
    pub(crate) clock: RedisClock,
    pub(crate) rt: Handle,
    next_id: AtomicU64,
    /// The highest fencing token this handle has seen.
    max_token: AtomicU64,
    pub(crate) waiters: Mutex<HashMap<String, Arc<Waiting>>>,
    /// Wakes the listener when the first waiter arrives.
    pub(crate) waiter_added: Notify,
    pub(crate) leases: Mutex<HashMap<String, Arc<LeaseState>>>,
    pub(crate) metrics: FleetMetrics,
    pub(crate) losses: LossCounts,
    /// Releases and cancels sent in the background.
    pub(crate) background: Arc<Background>,
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
        let keys = ["meta", "holders", "leases", "queue", "waiters", "waiting"]
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
            batches: Batches::default(),
            clock: RedisClock::new(),
            rt,
            next_id: AtomicU64::new(1),
            max_token: AtomicU64::new(0),
            waiters: Mutex::new(HashMap::new()),
            waiter_added: Notify::new(),
            leases: Mutex::new(HashMap::new()),
            metrics: FleetMetrics::new(&name),
            losses: LossCounts::default(),
            background: Arc::default(),
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

    pub(crate) fn invocation<'s>(&'s self, script: &'s Script) -> ScriptInvocation<'s> {
        let mut inv = script.prepare_invoke();
        for k in &self.keys {
            inv.key(k);
        }
        inv
    }

    /// Runs a script, bounded by the response timeout.
    pub(crate) async fn run<T: redis::FromRedisValue>(
        &self,
        inv: ScriptInvocation<'_>,
    ) -> Result<T, Error> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(self.response_timeout, inv.invoke_async(&mut conn)).await {
            Ok(r) => r.map_err(Error::Unreachable),
            Err(_) => Err(Error::Unreachable(redis::RedisError::from((
                redis::ErrorKind::IoError,
                "no reply within the response timeout",
            )))),
        }
    }

    /// Creates the semaphore's record if missing, to grant nothing for
    /// `quarantine` if this call made it; checks the cap. Returns the
    /// quarantine left (whoever started it).
    pub(crate) async fn init(&self, quarantine: Duration) -> Result<Duration, Error> {
        let mut inv = self.invocation(&self.scripts.init);
        inv.arg(self.cap)
            .arg(self.max_token.load(Relaxed))
            .arg(quarantine.as_micros() as u64);
        let sent = Instant::now();
        let reply: (String, i64, i64, i64) = self.run(inv).await?;
        self.status(&reply)?;
        self.clock.sample(sent, reply.3);
        Ok(Duration::from_micros(reply.2.max(0) as u64))
    }

    /// How long a record made now must grant nothing: a server up for
    /// less than one TTL may have restarted without persistence and
    /// forgotten leases whose holders still hold them (up to one TTL after
    /// their last renewal), so grants wait until it has been up one TTL.
    /// Unknown uptime counts as a restart.
    pub(crate) async fn restart_quarantine(&self) -> Duration {
        let mut conn = self.conn.clone();
        let mut info = redis::cmd("INFO");
        info.arg("server");
        let reply = info.query_async::<String>(&mut conn);
        let uptime = match tokio::time::timeout(self.response_timeout, reply).await {
            Ok(Ok(text)) => uptime(&text),
            _ => None,
        };
        match uptime {
            Some(up) => self.ttl.saturating_sub(up),
            None => self.ttl,
        }
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
    /// found gone is made again, quarantined for one TTL (see `DESIGN.md`,
    /// "A lost record"): a waiter queues, to be served when it ends; a
    /// `try_only` caller is told.
    pub(crate) async fn acquire(self: &Arc<Self>, ask: &Ask) -> Result<Acquired, Error> {
        match self.acquire_once(ask).await? {
            Acquired::NoRecord => {
                self.metrics.quarantines.increment(1);
                self.losses.detected.fetch_add(1, Relaxed);
                trace::state_lost(&self.name, "the whole record");
                let left = self.init(self.ttl).await?;
                if ask.try_only {
                    return Err(self.quarantined(left));
                }
                // Queued, to be served when the quarantine ends.
                match self.acquire_once(ask).await? {
                    Acquired::NoRecord => Err(self.quarantined(left)),
                    a => Ok(a),
                }
            }
            Acquired::Quarantined(left) => Err(self.quarantined(left)),
            a => Ok(a),
        }
    }

    fn quarantined(&self, left: Duration) -> Error {
        Error::Quarantined {
            until: Instant::now() + left,
        }
    }

    async fn acquire_once(self: &Arc<Self>, ask: &Ask) -> Result<Acquired, Error> {
        let [code, a, b] = batch::submit(self, Call::Acquire(ask.clone())).await?;
        match code {
            0 => Ok(Acquired::Granted(self.seen(Grant {
                token: a as u64,
                expires_us: b,
            }))),
            1 => Ok(Acquired::Queued {
                rank: a as u64,
                next_event: u64::try_from(b).ok().map(Duration::from_micros),
            }),
            2 => Ok(Acquired::Busy),
            3 => Ok(Acquired::Quarantined(
                Duration::from_micros(a.max(0) as u64),
            )),
            4 => Err(Error::CapMismatch {
                name: self.name.clone(),
                stored: a as u64,
                asked: self.cap,
            }),
            5 => Ok(Acquired::NoRecord),
            other => Err(Error::Protocol(format!("acquire answered {other}"))),
        }
    }

    /// Hands `grant` to waiter `id` of this process. No waiter: it was
    /// dropped, and its cancel gives the grant back.
    pub(crate) fn deliver(&self, id: &str, grant: Grant) {
        let waiting = self.waiters.lock().get(id).cloned();
        if let Some(w) = waiting {
            *w.grant.lock() = Some(grant);
            w.woken.notify_one();
        }
    }

    /// Wakes waiter `id` of this process to ask Redis again.
    pub(crate) fn nudge(&self, id: &str) {
        let waiting = self.waiters.lock().get(id).cloned();
        if let Some(w) = waiting {
            w.woken.notify_one();
        }
    }

    /// Notes a grant's token (the highest one is carried into a record
    /// made again).
    pub(crate) fn seen(&self, g: Grant) -> Grant {
        self.max_token.fetch_max(g.token, Relaxed);
        g
    }

    /// Gives a lease back; `false` if it had expired already.
    pub(crate) async fn release(self: &Arc<Self>, id: &str, n: u64) -> Result<bool, Error> {
        let call = Call::Release {
            id: id.to_owned(),
            n,
        };
        let [n, _, _] = batch::submit(self, call).await?;
        Ok(n > 0)
    }

    /// Takes a waiter out of the queue, or gives back a grant that raced
    /// its cancel.
    pub(crate) async fn cancel(self: &Arc<Self>, id: &str) -> Result<(), Error> {
        batch::submit(self, Call::Cancel(id.to_owned())).await?;
        Ok(())
    }

    /// Renews `leases` and keeps `waiters` queued; what Redis said of
    /// each lease.
    pub(crate) async fn renew(
        &self,
        leases: &[Arc<LeaseState>],
        waiters: &[String],
    ) -> Result<(Vec<Renewed>, Vec<WaiterState>), Error> {
        let mut inv = self.invocation(&self.scripts.renew);
        inv.arg(self.ttl_us())
            .arg(self.cap)
            .arg(&self.prefix)
            .arg(self.max_token.load(Relaxed))
            .arg(leases.len())
            .arg(&self.process);
        for l in leases {
            inv.arg(&l.id);
        }
        for l in leases {
            inv.arg(l.permits);
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
        if exps.len() != leases.len() + 2 * waiters.len() {
            return Err(Error::Protocol(
                "renewal reply of the wrong length".to_owned(),
            ));
        }
        let (lease_part, waiter_part) = exps.split_at(leases.len());
        let renewed = lease_part.iter().map(|&e| Renewed::from_reply(e)).collect();
        let waiting = waiter_part
            .chunks(2)
            .map(|w| match (w[0], w[1]) {
                (token, exp) if token > 0 => WaiterState::Granted(self.seen(Grant {
                    token: token as u64,
                    expires_us: exp,
                })),
                (0, rank) => WaiterState::Queued(rank as u64),
                _ => WaiterState::Gone,
            })
            .collect();
        Ok((renewed, waiting))
    }

    /// Some writes were lost (a valid lease missing from a record that
    /// exists): every lease record is forgotten and the record quarantined
    /// for one TTL (see `DESIGN.md`, "A partial loss").
    pub(crate) async fn report_loss(&self) -> Result<(), Error> {
        let mut inv = self.invocation(&self.scripts.lost);
        inv.arg(self.ttl_us()).arg(self.max_token.load(Relaxed));
        let _: i64 = self.run(inv).await?;
        self.metrics.quarantines.increment(1);
        self.losses.detected.fetch_add(1, Relaxed);
        trace::state_lost(&self.name, "a lease this process holds");
        Ok(())
    }
}

/// What a renewal said of one waiter.
#[derive(Debug, Clone, Copy)]
pub(crate) enum WaiterState {
    /// Granted (its notification may have been lost).
    Granted(Grant),
    /// Still queued, at this rank.
    Queued(u64),
    /// Not queued (the queue was lost): it must queue again.
    Gone,
}

/// What a renewal said of one lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Renewed {
    /// Held until then (µs on Redis's clock).
    Until(i64),
    /// It had expired on Redis's clock.
    Expired,
    /// Redis has no record of it.
    Missing,
    /// Registered again after a loss, it found the cap full.
    Refused,
}

impl Renewed {
    fn from_reply(e: i64) -> Renewed {
        match e {
            -1 => Renewed::Missing,
            -2 => Renewed::Refused,
            e if e > 0 => Renewed::Until(e),
            _ => Renewed::Expired,
        }
    }
}

/// `uptime_in_seconds` of an `INFO server` reply.
fn uptime(info: &str) -> Option<Duration> {
    info.lines()
        .find_map(|l| l.strip_prefix("uptime_in_seconds:"))
        .and_then(|v| v.trim().parse().ok())
        .map(Duration::from_secs)
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
