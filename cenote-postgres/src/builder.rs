//! [`Builder`]: a PostgreSQL pool from a connection string or a
//! `tokio_postgres::Config`, with every network step bounded.

use std::time::Duration;

use cenote::resources::BuildError;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{NoTls, Socket};

use crate::error::Error;
use crate::manager::Manager;
use crate::reset::{Reset, Statements};
use crate::Pool;

type Configure =
    Box<dyn FnOnce(cenote::resources::Builder<Manager>) -> cenote::resources::Builder<Manager>>;

/// Builds a [`Pool`] of PostgreSQL connections.
///
/// Connecting is bounded by the create timeout (10 s by default); the
/// checkout probe and the reset by the check timeout (5 s). TCP keepalive
/// is on, and the TCP user timeout is three quarters of the check timeout,
/// so a connection whose server vanished fails its next write within the
/// check timeout instead of the kernel's 15 minutes.
#[must_use = "a Builder does nothing until build()"]
pub struct Builder<T = NoTls> {
    pg: tokio_postgres::Config,
    tls: T,
    reset: Reset,
    statements: Statements,
    require_primary: bool,
    query_timeout: Option<Duration>,
    create_timeout: Duration,
    check_timeout: Duration,
    configure: Vec<Configure>,
}

impl<T> std::fmt::Debug for Builder<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("config", &self.pg)
            .field("reset", &self.reset)
            .field("statements", &self.statements)
            .field("require_primary", &self.require_primary)
            .field("create_timeout", &self.create_timeout)
            .field("check_timeout", &self.check_timeout)
            .finish_non_exhaustive()
    }
}

impl Builder<NoTls> {
    /// From a connection string (`postgres://user@host:5432/db` or
    /// `host=… user=…`), without TLS.
    pub fn new(url: &str) -> Result<Self, Error> {
        Ok(Self::from_config(url.parse().map_err(Error::Config)?))
    }

    /// From a `tokio_postgres::Config`, without TLS.
    pub fn from_config(pg: tokio_postgres::Config) -> Self {
        Builder {
            pg,
            tls: NoTls,
            reset: Reset::default(),
            statements: Statements::default(),
            require_primary: false,
            query_timeout: None,
            create_timeout: Duration::from_secs(10),
            check_timeout: Duration::from_secs(5),
            configure: Vec::new(),
        }
    }
}

impl<T> Builder<T> {
    /// Connects over TLS with `tls` (a `postgres_native_tls::MakeTlsConnector`
    /// or a `tokio_postgres_rustls::MakeRustlsConnect`; the connection
    /// string's `sslmode` says whether it is required).
    pub fn tls<U>(self, tls: U) -> Builder<U> {
        Builder {
            pg: self.pg,
            tls,
            reset: self.reset,
            statements: self.statements,
            require_primary: self.require_primary,
            query_timeout: self.query_timeout,
            create_timeout: self.create_timeout,
            check_timeout: self.check_timeout,
            configure: self.configure,
        }
    }

    /// What a used connection sheds before its next borrower (default
    /// [`Reset::Rollback`]; see [`Reset`] for why).
    pub fn reset(mut self, reset: Reset) -> Self {
        self.reset = reset;
        self
    }

    /// Named, cached statements (default) or none at all (PgBouncer in
    /// transaction mode).
    pub fn statements(mut self, s: Statements) -> Self {
        self.statements = s;
        self
    }

    /// Refuses a read-only server: at connect (`target_session_attrs =
    /// read-write`) and at each checkout probe. A connection that answers
    /// with SQLSTATE 25006 is destroyed whether or not this is set.
    pub fn require_primary(mut self, yes: bool) -> Self {
        self.require_primary = yes;
        self
    }

    /// The most a borrower's request may take, from sending it to its
    /// last row (default: no bound). One that runs out fails with
    /// [`Error::QueryTimedOut`]; its connection is destroyed when given
    /// back and the query cancelled on the server. This bounds a query on
    /// a server that vanished or stopped answering, which TCP alone finds
    /// only when a write goes unacknowledged.
    pub fn query_timeout(mut self, d: Duration) -> Self {
        self.query_timeout = Some(d);
        self
    }

    /// The most connections at once (default: cenote's, one per CPU, at
    /// least 4).
    pub fn capacity(self, n: usize) -> Self {
        self.pool(move |b| b.capacity(n))
    }

    /// How long connecting may take.
    pub fn create_timeout(mut self, d: Duration) -> Self {
        self.create_timeout = d;
        self
    }

    /// How long the checkout probe and the reset may take.
    pub fn check_timeout(mut self, d: Duration) -> Self {
        self.check_timeout = d;
        self
    }

    /// Any other setting of the pool (`acquire_timeout`, `min_idle`,
    /// `max_lifetime`, `check_bypass`, `leak_threshold`, hooks, …).
    pub fn pool(
        mut self,
        f: impl FnOnce(cenote::resources::Builder<Manager>) -> cenote::resources::Builder<Manager>
            + 'static,
    ) -> Self {
        self.configure.push(Box::new(f));
        self
    }

    /// The pool. Call it inside a tokio runtime (or give the pool one with
    /// `.pool(|b| b.runtime(handle))`).
    pub fn build(self) -> Result<Pool, BuildError<Error>>
    where
        T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
        T::Stream: Send + 'static,
        T::TlsConnect: Send,
        <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        let mut pg = self.pg;
        pg.connect_timeout(self.create_timeout)
            .keepalives(true)
            .keepalives_idle(self.check_timeout.max(Duration::from_secs(1)))
            .keepalives_interval(Duration::from_secs(1))
            .tcp_user_timeout(self.check_timeout / 4 * 3);
        if self.require_primary {
            pg.target_session_attrs(tokio_postgres::config::TargetSessionAttrs::ReadWrite);
        }
        let mut manager = Manager::new(pg, self.tls);
        manager.reset = self.reset;
        manager.statements = self.statements;
        manager.require_primary = self.require_primary;
        manager.query_timeout = self.query_timeout;
        let mut b = cenote::resources::Pool::builder(manager)
            .create_timeout(self.create_timeout)
            .check_timeout(self.check_timeout);
        for f in self.configure {
            b = f(b);
        }
        b.build()
    }
}
