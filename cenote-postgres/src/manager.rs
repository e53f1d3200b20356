//! [`Manager`]: how the pool makes, checks, resets and closes PostgreSQL
//! connections.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{CancelToken, Socket};

use crate::client::Client;
use crate::error::Error;
use crate::reset::{Reset, Statements, ROLLBACK};
use crate::track::Tracker;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type Connected = (tokio_postgres::Client, tokio::task::JoinHandle<()>);

/// The [`cenote::resources::Manager`] of PostgreSQL connections (built by
/// [`Builder`](crate::Builder)).
pub struct Manager {
    pub(crate) config: tokio_postgres::Config,
    connect: Box<
        dyn Fn(tokio_postgres::Config) -> BoxFuture<Result<Connected, tokio_postgres::Error>>
            + Send
            + Sync,
    >,
    cancel: Arc<dyn Fn(CancelToken) -> BoxFuture<()> + Send + Sync>,
    pub(crate) reset: Reset,
    pub(crate) statements: Statements,
    pub(crate) require_primary: bool,
    pub(crate) query_timeout: Option<Duration>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("config", &self.config)
            .field("reset", &self.reset)
            .field("statements", &self.statements)
            .field("require_primary", &self.require_primary)
            .finish_non_exhaustive()
    }
}

impl Manager {
    /// Connections made with `config` over `tls` (`tokio_postgres::NoTls`,
    /// or a connector of postgres-native-tls or tokio-postgres-rustls).
    pub(crate) fn new<T>(config: tokio_postgres::Config, tls: T) -> Manager
    where
        T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
        T::Stream: Send + 'static,
        T::TlsConnect: Send,
        <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        let for_cancel = tls.clone();
        Manager {
            config,
            connect: Box::new(move |config| {
                let tls = tls.clone();
                Box::pin(async move {
                    let (client, conn) = config.connect(tls).await?;
                    let task = tokio::spawn(async move {
                        // Ends when the client is dropped or the socket
                        // fails; the client then reports is_closed.
                        let _ = conn.await;
                    });
                    Ok((client, task))
                })
            }),
            cancel: Arc::new(move |token: CancelToken| {
                let tls = for_cancel.clone();
                Box::pin(async move {
                    // Best effort: the connection is destroyed either way.
                    let _ = token.cancel_query(tls).await;
                })
            }),
            reset: Reset::default(),
            statements: Statements::default(),
            require_primary: false,
            query_timeout: None,
        }
    }
}

impl cenote::resources::Manager for Manager {
    type Resource = Client;
    type Error = Error;

    async fn create(&self) -> Result<Client, Error> {
        let (inner, task) = (self.connect)(self.config.clone())
            .await
            .map_err(Error::Connect)?;
        Ok(Client {
            inner,
            task,
            rt: tokio::runtime::Handle::current(),
            track: Tracker::new(self.query_timeout),
            statements: Mutex::new(HashMap::new()),
            mode: self.statements,
        })
    }

    /// A probe query; with `require_primary`, also that the server takes
    /// writes.
    async fn check(&self, c: &mut Client) -> Result<(), Error> {
        if c.inner.is_closed() {
            return Err(Error::Closed);
        }
        // The probe waits for its answer anyway: read the reset's first.
        c.track.pending.settle().await.map_err(Error::Reset)?;
        if !self.require_primary {
            return c
                .inner
                .batch_execute("SELECT 1")
                .await
                .map_err(Error::Check);
        }
        let rows = c
            .inner
            .simple_query("SHOW transaction_read_only")
            .await
            .map_err(Error::Check)?;
        let read_only = rows.iter().any(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0) == Some("on"),
            _ => false,
        });
        if read_only {
            return Err(Error::ReadOnly);
        }
        Ok(())
    }

    fn is_broken(&self, c: &mut Client) -> bool {
        if c.track.in_flight() > 0 {
            // An answer is still coming: ask the server to stop the query,
            // so its backend is free and its locks go.
            drop(c.rt.spawn((self.cancel)(c.inner.cancel_token())));
            return true;
        }
        c.inner.is_closed() || c.track.open_transactions() > 0 || c.track.is_fatal()
    }

    /// Sends the reset without waiting for it (see `pending.rs`): the
    /// `ROLLBACK`, then the level's statements, each one simple query.
    /// `Reset::Rollback` sends it only after a statement that may have
    /// opened a transaction block; the other levels after any use.
    async fn reset(&self, c: &mut Client) -> Result<(), Error> {
        let used = c.track.take_used();
        let maybe_in_transaction = c.track.take_maybe_in_transaction();
        let rollback = match self.reset {
            Reset::None => false,
            // Only what could have opened a transaction block.
            Reset::Rollback => maybe_in_transaction,
            _ => used,
        };
        if !rollback {
            return Ok(());
        }
        let sent = c
            .inner
            .simple_query_raw(ROLLBACK)
            .await
            .map_err(Error::Reset)?;
        c.track.pending.push(sent);
        if let Some(sql) = self.reset.statements() {
            let rest = c.inner.simple_query_raw(sql).await.map_err(Error::Reset)?;
            c.track.pending.push(rest);
        }
        if self.reset == Reset::DiscardAll {
            c.statements.lock().clear();
        }
        Ok(())
    }

    async fn destroy(&self, c: Client) {
        let Client {
            inner, mut task, ..
        } = c;
        // Dropping the client makes the connection task say goodbye to the
        // server and end; one that does not end at once (a black-holed
        // socket) is aborted.
        drop(inner);
        if tokio::time::timeout(Duration::from_millis(100), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }

    fn is_permanent(&self, e: &Error) -> bool {
        e.is_permanent()
    }
}
