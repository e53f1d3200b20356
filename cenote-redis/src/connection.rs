//! [`Connection`]: an exclusive Redis connection lent by the pool. Every
//! command goes through it, so the pool knows, when it comes back, whether
//! a reply is still coming, a `MULTI` or `WATCH` is open, the database or
//! the name changed, or the connection became a subscriber.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::time::Duration;

use futures_util::FutureExt;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};
use tokio::task::JoinHandle;

use crate::commands::{block_time, effect, Effect};

/// An exclusive Redis connection (use it with redis's `AsyncCommands`,
/// `cmd(..).query_async(&mut *conn)` or `pipe()`).
///
/// Each reply is bounded by the pool's response timeout; a blocking
/// command (`BLPOP`, `XREAD BLOCK`, `WAIT`, …) by its own block time plus
/// that timeout. A connection given back with a reply still pending (a
/// dropped or timed-out command), in subscriber mode, or after an error
/// that ends it, is destroyed; `MULTI`, `WATCH`, `SELECT` and `CLIENT
/// SETNAME` are undone before the next borrower gets it.
pub struct Connection {
    pub(crate) conn: MultiplexedConnection,
    pub(crate) driver: JoinHandle<()>,
    pub(crate) response_timeout: Duration,
    pub(crate) session: Session,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("closed", &self.is_closed())
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

/// What the borrowers did to the session since the last reset.
#[derive(Debug, Default)]
pub(crate) struct Session {
    pub(crate) in_flight: AtomicU32,
    pub(crate) multi: AtomicBool,
    pub(crate) watched: AtomicBool,
    pub(crate) selected: AtomicBool,
    pub(crate) renamed: AtomicBool,
    pub(crate) subscribed: AtomicBool,
    pub(crate) fatal: AtomicBool,
}

impl Session {
    fn note(&self, e: Effect) {
        match e {
            Effect::None => {}
            Effect::Multi => self.multi.store(true, Relaxed),
            Effect::EndMulti => {
                self.multi.store(false, Relaxed);
                self.watched.store(false, Relaxed);
            }
            Effect::Watch => self.watched.store(true, Relaxed),
            Effect::Unwatch => self.watched.store(false, Relaxed),
            Effect::Select => self.selected.store(true, Relaxed),
            Effect::SetName => self.renamed.store(true, Relaxed),
            Effect::Subscribe => self.subscribed.store(true, Relaxed),
        }
    }

    fn ended<T>(&self, r: &RedisResult<T>) {
        if let Err(e) = r {
            if e.is_unrecoverable_error() || e.is_io_error() || e.is_connection_dropped() {
                self.fatal.store(true, Relaxed);
            }
        }
        self.in_flight.fetch_sub(1, Relaxed);
    }

    /// Whether the connection must not be lent again.
    pub(crate) fn is_spoiled(&self) -> bool {
        self.in_flight.load(Relaxed) > 0
            || self.subscribed.load(Relaxed)
            || self.fatal.load(Relaxed)
    }
}

impl Connection {
    /// Whether the socket is gone (the driver task ended).
    pub fn is_closed(&self) -> bool {
        self.driver.is_finished()
    }

    /// The bound on one reply of `cmds`: the response timeout, plus the
    /// longest block time among them (`None`: one blocks forever).
    fn bound<'c>(&self, cmds: impl Iterator<Item = &'c Cmd>) -> Option<Duration> {
        let mut longest = Duration::ZERO;
        for c in cmds {
            match block_time(c) {
                None => {}
                Some(None) => return None,
                Some(Some(d)) => longest = longest.max(d),
            }
        }
        Some(self.response_timeout.saturating_add(longest))
    }

    /// Sends with the session tracked and the reply bounded.
    fn send<'a, T: Send + 'a>(
        &'a mut self,
        cmds: Vec<&'a Cmd>,
        bound: Option<Duration>,
        fut: impl std::future::Future<Output = RedisResult<T>> + Send + 'a,
    ) -> RedisFuture<'a, T> {
        let session = &self.session;
        session.in_flight.fetch_add(1, Relaxed);
        for c in cmds {
            session.note(effect(c));
        }
        async move {
            let r = match bound {
                None => fut.await,
                Some(limit) => match tokio::time::timeout(limit, fut).await {
                    Ok(r) => r,
                    // Left counted as in flight: the reply may still come,
                    // so the connection is destroyed when given back.
                    Err(_) => return Err(timed_out(limit)),
                },
            };
            session.ended(&r);
            r
        }
        .boxed()
    }
}

fn timed_out(after: Duration) -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no reply from Redis within {after:?}"),
    ))
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let bound = self.bound(std::iter::once(cmd));
        // The inner connection is cloned (a handle to the same socket) so
        // that the tracking and the request can borrow apart.
        let mut conn = self.conn.clone();
        self.send(vec![cmd], bound, async move {
            conn.req_packed_command(cmd).await
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipe: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let bound = self.bound(pipe.cmd_iter());
        let mut conn = self.conn.clone();
        let cmds = pipe.cmd_iter().collect();
        self.send(cmds, bound, async move {
            conn.req_packed_commands(pipe, offset, count).await
        })
    }

    fn get_db(&self) -> i64 {
        self.conn.get_db()
    }
}
