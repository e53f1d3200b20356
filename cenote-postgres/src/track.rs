//! What a connection's wrapper knows about its session: requests in
//! flight (and how long one may take), transactions open, whether
//! anything was sent since the last reset, and whether an error ended the
//! connection.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::time::Duration;

use crate::error::ends_connection;
use crate::pending::Pending;

#[derive(Debug, Default)]
pub(crate) struct Tracker {
    /// The most one request may take (`None`: no bound).
    pub(crate) query_timeout: Option<Duration>,
    /// Resets sent and not yet answered.
    pub(crate) pending: Pending,
    in_flight: AtomicU32,
    depth: AtomicU32,
    used: AtomicBool,
    /// A statement that may open a transaction block (`BEGIN`, `START
    /// TRANSACTION` in its text) ran since the last reset.
    maybe_in_transaction: AtomicBool,
    /// A statement whose text may open one was prepared on this
    /// connection: any prepared statement run may be it.
    opening_prepared: AtomicBool,
    fatal: AtomicBool,
}

/// One request on the wire. Ended by [`Request::end`]; a request whose
/// future is dropped before it ends stays counted, so the connection is
/// known to have an answer still coming.
#[must_use]
pub(crate) struct Request<'a>(&'a Tracker);

impl Tracker {
    pub(crate) fn new(query_timeout: Option<Duration>) -> Tracker {
        Tracker {
            query_timeout,
            ..Tracker::default()
        }
    }

    pub(crate) fn begin(&self) -> Request<'_> {
        self.in_flight.fetch_add(1, Relaxed);
        self.used.store(true, Relaxed);
        Request(self)
    }

    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight.load(Relaxed)
    }

    pub(crate) fn open_transactions(&self) -> u32 {
        self.depth.load(Relaxed)
    }

    pub(crate) fn transaction_opened(&self) {
        self.depth.fetch_add(1, Relaxed);
    }

    pub(crate) fn transaction_ended(&self) {
        self.depth.fetch_sub(1, Relaxed);
    }

    /// A reset that failed: the session may be dirty, so the connection
    /// is destroyed when given back.
    pub(crate) fn reset_failed(&self, _e: &tokio_postgres::Error) {
        self.fatal.store(true, Relaxed);
    }

    /// Whether an error seen on this connection ended it.
    pub(crate) fn is_fatal(&self) -> bool {
        self.fatal.load(Relaxed)
    }

    /// Notes SQL text about to be sent.
    pub(crate) fn sql(&self, sql: &str) {
        if may_open_transaction(sql) {
            self.maybe_in_transaction.store(true, Relaxed);
        }
    }

    /// Notes a statement prepared from `sql`.
    pub(crate) fn prepared(&self, sql: &str) {
        if may_open_transaction(sql) {
            self.opening_prepared.store(true, Relaxed);
        }
    }

    /// Notes a prepared statement about to run.
    pub(crate) fn statement(&self) {
        if self.opening_prepared.load(Relaxed) {
            self.maybe_in_transaction.store(true, Relaxed);
        }
    }

    /// Something unseen may have been sent (the raw client was used).
    pub(crate) fn unseen(&self) {
        self.used.store(true, Relaxed);
        self.maybe_in_transaction.store(true, Relaxed);
    }

    /// Whether a transaction block may be open; clears it.
    pub(crate) fn take_maybe_in_transaction(&self) -> bool {
        self.maybe_in_transaction.swap(false, Relaxed)
    }

    /// Whether anything was sent since the last reset; clears it.
    pub(crate) fn take_used(&self) -> bool {
        self.used.swap(false, Relaxed)
    }
}

impl Request<'_> {
    /// Not ended: the answer may still come, so it stays counted.
    pub(crate) fn left_in_flight(self) {}

    pub(crate) fn end<T>(self, r: &Result<T, tokio_postgres::Error>) {
        if let Err(e) = r {
            if ends_connection(e) {
                self.0.fatal.store(true, Relaxed);
            }
        }
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// Whether `sql` may open a transaction block: it has the word `BEGIN` or
/// `START` (any case). A false positive (a column named `start`, a
/// PL/pgSQL `BEGIN`) costs one `ROLLBACK`; nothing else opens a block.
pub(crate) fn may_open_transaction(sql: &str) -> bool {
    sql.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .any(|w| w.eq_ignore_ascii_case("begin") || w.eq_ignore_ascii_case("start"))
}

#[cfg(test)]
mod tests {
    use super::may_open_transaction;

    #[test]
    fn words_that_open_a_transaction_block() {
        assert!(may_open_transaction("BEGIN"));
        assert!(may_open_transaction(
            "set x = 1; begin isolation level serializable"
        ));
        assert!(may_open_transaction("START TRANSACTION"));
        assert!(!may_open_transaction("SELECT beginning, restart FROM t"));
        assert!(!may_open_transaction("SELECT 1"));
    }
}
