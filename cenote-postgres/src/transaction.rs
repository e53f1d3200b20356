//! [`Transaction`]: a transaction taken through the pooled [`Client`], so
//! the pool knows it is open.

use std::collections::HashMap;

use parking_lot::Mutex;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Row, Statement};

use crate::client::{route, Client, Params, Query, Route};
use crate::error::Error;
use crate::reset::Statements;
use crate::track::Tracker;

/// An open transaction on a pooled connection. [`commit`](Self::commit)
/// ends it; dropped without that, it rolls back (the `ROLLBACK` is sent
/// ahead of anything the connection sends next).
pub struct Transaction<'a> {
    tx: Option<tokio_postgres::Transaction<'a>>,
    track: &'a Tracker,
    statements: &'a Mutex<HashMap<String, Statement>>,
    mode: Statements,
}

impl std::fmt::Debug for Transaction<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction").finish_non_exhaustive()
    }
}

impl<'a> Transaction<'a> {
    /// `BEGIN`. The connection counts as inside a transaction from before
    /// the `BEGIN` is sent until the transaction ends, so a `BEGIN`
    /// cancelled midway leaves it counted (and the connection destroyed).
    pub(crate) async fn begin(client: &'a mut Client) -> Result<Transaction<'a>, Error> {
        let Client {
            inner,
            track,
            statements,
            mode,
            ..
        } = client;
        track.transaction_opened();
        match Client::tracked(track, inner.transaction()).await {
            Ok(tx) => Ok(Transaction {
                tx: Some(tx),
                track,
                statements,
                mode: *mode,
            }),
            Err(e) => {
                // The server answered: no transaction is open.
                track.transaction_ended();
                Err(e)
            }
        }
    }

    fn tx(&self) -> &tokio_postgres::Transaction<'a> {
        self.tx
            .as_ref()
            .expect("present until committed or rolled back")
    }

    /// Commits.
    pub async fn commit(mut self) -> Result<(), Error> {
        let tx = self
            .tx
            .take()
            .expect("present until committed or rolled back");
        let r = Client::tracked(self.track, tx.commit()).await;
        // Committed, or (an error from COMMIT) rolled back by the server.
        self.track.transaction_ended();
        r
    }

    /// Rolls back.
    pub async fn rollback(mut self) -> Result<(), Error> {
        let tx = self
            .tx
            .take()
            .expect("present until committed or rolled back");
        let r = Client::tracked(self.track, tx.rollback()).await;
        self.track.transaction_ended();
        r
    }

    /// The rows of a statement.
    pub async fn query<Q: Query + ?Sized>(
        &self,
        q: &Q,
        params: Params<'_>,
    ) -> Result<Vec<Row>, Error> {
        let tx = self.tx();
        match route(self.mode, self.track, q, params)? {
            Route::Statement(s) => Client::tracked(self.track, tx.query(s, params)).await,
            Route::Sql(sql) => Client::tracked(self.track, tx.query(sql, params)).await,
            Route::Unnamed(sql) => Client::tracked(self.track, tx.query_typed(sql, &[])).await,
        }
    }

    /// The one row of a statement (an error if there are none or several).
    pub async fn query_one<Q: Query + ?Sized>(
        &self,
        q: &Q,
        params: Params<'_>,
    ) -> Result<Row, Error> {
        let tx = self.tx();
        match route(self.mode, self.track, q, params)? {
            Route::Statement(s) => Client::tracked(self.track, tx.query_one(s, params)).await,
            Route::Sql(sql) => Client::tracked(self.track, tx.query_one(sql, params)).await,
            Route::Unnamed(sql) => Client::tracked(self.track, tx.query_typed_one(sql, &[])).await,
        }
    }

    /// Runs a statement; the number of rows it changed.
    pub async fn execute<Q: Query + ?Sized>(
        &self,
        q: &Q,
        params: Params<'_>,
    ) -> Result<u64, Error> {
        let tx = self.tx();
        match route(self.mode, self.track, q, params)? {
            Route::Statement(s) => Client::tracked(self.track, tx.execute(s, params)).await,
            Route::Sql(sql) => Client::tracked(self.track, tx.execute(sql, params)).await,
            Route::Unnamed(sql) => Client::tracked(self.track, tx.execute_typed(sql, &[])).await,
        }
    }

    /// The rows of an unnamed statement whose parameters carry their types.
    pub async fn query_typed(
        &self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Vec<Row>, Error> {
        self.track.sql(sql);
        Client::tracked(self.track, self.tx().query_typed(sql, params)).await
    }

    /// Statements without parameters (the simple query protocol).
    pub async fn batch_execute(&self, sql: &str) -> Result<(), Error> {
        self.track.sql(sql);
        Client::tracked(self.track, self.tx().batch_execute(sql)).await
    }

    /// The connection's cached statement for `sql` (see
    /// [`Client::prepare_cached`]).
    pub async fn prepare_cached(&self, sql: &str) -> Result<Statement, Error> {
        if self.mode == Statements::Unnamed {
            return Err(Error::NamedStatementsOff);
        }
        if let Some(s) = self.statements.lock().get(sql) {
            return Ok(s.clone());
        }
        let s = Client::tracked(self.track, self.tx().prepare(sql)).await?;
        self.track.prepared(sql);
        self.statements.lock().insert(sql.to_owned(), s.clone());
        Ok(s)
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if self.tx.take().is_some() {
            // tokio-postgres's transaction queued its ROLLBACK as it dropped.
            self.track.transaction_ended();
        }
    }
}
