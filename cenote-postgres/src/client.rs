//! [`Client`]: a pooled connection. Every request goes through it, so the
//! pool knows, when it comes back, whether an answer is still coming, a
//! transaction is open, or an error ended the connection.

use std::collections::HashMap;
use std::future::Future;

use parking_lot::Mutex;
use tokio::task::JoinHandle;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{CancelToken, Row, SimpleQueryMessage, Statement};

use crate::error::Error;
use crate::reset::Statements;
use crate::track::Tracker;
use crate::transaction::Transaction;

/// A statement to run: SQL text or a prepared [`Statement`].
pub trait Query: Sync {
    /// The SQL text, if this is not a prepared statement.
    fn sql(&self) -> Option<&str>;
    /// The prepared statement, if this is one.
    fn statement(&self) -> Option<&Statement>;
}

impl Query for str {
    fn sql(&self) -> Option<&str> {
        Some(self)
    }
    fn statement(&self) -> Option<&Statement> {
        None
    }
}

impl Query for String {
    fn sql(&self) -> Option<&str> {
        Some(self)
    }
    fn statement(&self) -> Option<&Statement> {
        None
    }
}

impl Query for Statement {
    fn sql(&self) -> Option<&str> {
        None
    }
    fn statement(&self) -> Option<&Statement> {
        Some(self)
    }
}

/// Parameters of a statement.
pub type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// A PostgreSQL connection lent by the pool (`tokio_postgres::Client`,
/// tracked).
///
/// It is destroyed instead of reused when it comes back with a request
/// still in flight (a dropped query future: the server is told to cancel
/// it), inside a transaction, with its socket closed, or after an error
/// that ends a connection (SQLSTATE class 08, 57P01-57P03, 25006).
pub struct Client {
    pub(crate) inner: tokio_postgres::Client,
    pub(crate) task: JoinHandle<()>,
    // The runtime that runs the connection task: where a cancel request
    // is sent from when the client comes back with a request in flight.
    pub(crate) rt: tokio::runtime::Handle,
    pub(crate) track: Tracker,
    pub(crate) statements: Mutex<HashMap<String, Statement>>,
    pub(crate) mode: Statements,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("closed", &self.inner.is_closed())
            .field("in_flight", &self.track.in_flight())
            .field("transactions", &self.track.open_transactions())
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Runs `fut` as one tracked request, within the query timeout. One
    /// that runs out stays counted as in flight: the connection is
    /// destroyed when it comes back, and the server told to cancel.
    pub(crate) async fn tracked<T>(
        track: &Tracker,
        fut: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, Error> {
        let req = track.begin();
        let r = match track.query_timeout {
            None => Self::after_reset(track, fut).await,
            Some(limit) => match tokio::time::timeout(limit, Self::after_reset(track, fut)).await {
                Ok(r) => r,
                Err(_) => {
                    req.left_in_flight();
                    return Err(Error::QueryTimedOut(limit));
                }
            },
        };
        req.end(&r);
        r.map_err(Error::Query)
    }

    /// `fut`, sent behind a pending reset whose answers are read before
    /// its result is returned.
    async fn after_reset<T>(
        track: &Tracker,
        fut: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, tokio_postgres::Error> {
        if track.pending.is_empty() {
            return fut.await;
        }
        let mut fut = std::pin::pin!(fut);
        // One poll puts the request on the wire, behind the reset.
        let first = futures_util::poll!(fut.as_mut());
        if let Err(e) = track.pending.settle().await {
            track.reset_failed(&e);
        }
        match first {
            std::task::Poll::Ready(r) => r,
            std::task::Poll::Pending => fut.await,
        }
    }

    /// The rows of a statement.
    pub async fn query<Q: Query + ?Sized>(
        &self,
        q: &Q,
        params: Params<'_>,
    ) -> Result<Vec<Row>, Error> {
        match route(self.mode, &self.track, q, params)? {
            Route::Statement(s) => Self::tracked(&self.track, self.inner.query(s, params)).await,
            Route::Sql(sql) => Self::tracked(&self.track, self.inner.query(sql, params)).await,
            Route::Unnamed(sql) => {
                Self::tracked(&self.track, self.inner.query_typed(sql, &[])).await
            }
        }
    }

    /// The one row of a statement (an error if there are none or several).
    pub async fn query_one<Q: Query + ?Sized>(
        &self,
        q: &Q,
        params: Params<'_>,
    ) -> Result<Row, Error> {
        match route(self.mode, &self.track, q, params)? {
            Route::Statement(s) => {
                Self::tracked(&self.track, self.inner.query_one(s, params)).await
            }
            Route::Sql(sql) => Self::tracked(&self.track, self.inner.query_one(sql, params)).await,
            Route::Unnamed(sql) => {
                Self::tracked(&self.track, self.inner.query_typed_one(sql, &[])).await
            }
        }
    }

    /// The row of a statement, if any (an error if there are several).
    pub async fn query_opt<Q: Query + ?Sized>(
        &self,
        q: &Q,
        params: Params<'_>,
    ) -> Result<Option<Row>, Error> {
        match route(self.mode, &self.track, q, params)? {
            Route::Statement(s) => {
                Self::tracked(&self.track, self.inner.query_opt(s, params)).await
            }
            Route::Sql(sql) => Self::tracked(&self.track, self.inner.query_opt(sql, params)).await,
            Route::Unnamed(sql) => {
                Self::tracked(&self.track, self.inner.query_typed_opt(sql, &[])).await
            }
        }
    }

    /// Runs a statement; the number of rows it changed.
    pub async fn execute<Q: Query + ?Sized>(
        &self,
        q: &Q,
        params: Params<'_>,
    ) -> Result<u64, Error> {
        match route(self.mode, &self.track, q, params)? {
            Route::Statement(s) => Self::tracked(&self.track, self.inner.execute(s, params)).await,
            Route::Sql(sql) => Self::tracked(&self.track, self.inner.execute(sql, params)).await,
            Route::Unnamed(sql) => {
                Self::tracked(&self.track, self.inner.execute_typed(sql, &[])).await
            }
        }
    }

    /// The rows of an unnamed statement whose parameters carry their types
    /// (no statement is prepared: safe behind PgBouncer in transaction
    /// mode).
    pub async fn query_typed(
        &self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Vec<Row>, Error> {
        self.track.sql(sql);
        Self::tracked(&self.track, self.inner.query_typed(sql, params)).await
    }

    /// [`query_typed`](Self::query_typed) for a statement without rows;
    /// the number of rows it changed.
    pub async fn execute_typed(
        &self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<u64, Error> {
        self.track.sql(sql);
        Self::tracked(&self.track, self.inner.execute_typed(sql, params)).await
    }

    /// Runs one or more statements separated by semicolons, without
    /// parameters (the simple query protocol).
    pub async fn batch_execute(&self, sql: &str) -> Result<(), Error> {
        self.track.sql(sql);
        Self::tracked(&self.track, self.inner.batch_execute(sql)).await
    }

    /// [`batch_execute`](Self::batch_execute), with the rows as text.
    pub async fn simple_query(&self, sql: &str) -> Result<Vec<SimpleQueryMessage>, Error> {
        self.track.sql(sql);
        Self::tracked(&self.track, self.inner.simple_query(sql)).await
    }

    /// A statement prepared once per connection and kept for its life (a
    /// `Reset::DiscardAll` empties the cache). Refused under
    /// [`Statements::Unnamed`].
    pub async fn prepare_cached(&self, sql: &str) -> Result<Statement, Error> {
        if self.mode == Statements::Unnamed {
            return Err(Error::NamedStatementsOff);
        }
        if let Some(s) = self.statements.lock().get(sql) {
            return Ok(s.clone());
        }
        let s = Self::tracked(&self.track, self.inner.prepare(sql)).await?;
        self.track.prepared(sql);
        self.statements.lock().insert(sql.to_owned(), s.clone());
        Ok(s)
    }

    /// How many statements this connection keeps prepared.
    pub fn cached_statements(&self) -> usize {
        self.statements.lock().len()
    }

    /// Opens a transaction (`BEGIN`). It commits only by
    /// [`Transaction::commit`]; dropped without it, it rolls back.
    pub async fn transaction(&mut self) -> Result<Transaction<'_>, Error> {
        Transaction::begin(self).await
    }

    /// A token that asks the server to cancel what this connection runs.
    pub fn cancel_token(&self) -> CancelToken {
        self.inner.cancel_token()
    }

    /// Whether the socket is closed.
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// The tokio-postgres client underneath, for what this wrapper does not
    /// offer (`copy_in`, portals). What is sent through it is not tracked:
    /// a dropped request or a transaction opened there is invisible to the
    /// pool, though the reset still runs at the next checkout.
    pub fn raw(&self) -> &tokio_postgres::Client {
        self.track.unseen();
        &self.inner
    }
}

/// How a statement runs under `mode`.
pub(crate) fn route<'q, Q: Query + ?Sized>(
    mode: Statements,
    track: &Tracker,
    q: &'q Q,
    params: Params<'_>,
) -> Result<Route<'q>, Error> {
    if let Some(s) = q.statement() {
        track.statement();
        return Ok(Route::Statement(s));
    }
    let sql = q.sql().unwrap_or_default();
    track.sql(sql);
    match mode {
        Statements::Cached => Ok(Route::Sql(sql)),
        Statements::Unnamed if params.is_empty() => Ok(Route::Unnamed(sql)),
        Statements::Unnamed => Err(Error::NamedStatementsOff),
    }
}

pub(crate) enum Route<'q> {
    Statement(&'q Statement),
    Sql(&'q str),
    Unnamed(&'q str),
}
