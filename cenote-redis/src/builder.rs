//! [`Builder`]: a Redis pool from a URL, with every network step bounded.

use std::time::Duration;

use cenote::resources::BuildError;
use redis::IntoConnectionInfo;

use crate::connect::Target;
use crate::error::Error;
use crate::manager::Manager;
use crate::pool::Pool;

type Configure =
    Box<dyn FnOnce(cenote::resources::Builder<Manager>) -> cenote::resources::Builder<Manager>>;

/// Builds a [`Pool`] of Redis connections.
///
/// Connecting (TCP and handshake) is bounded by the create timeout (10 s
/// by default), the `PING` and the reset by the check timeout (5 s), and
/// each reply by the response timeout (5 s; a blocking command gets its
/// block time on top). TCP keepalive is on, and the TCP user timeout is
/// three quarters of the check timeout.
#[must_use = "a Builder does nothing until build()"]
pub struct Builder {
    target: Target,
    response_timeout: Duration,
    check_timeout: Duration,
    configure: Vec<Configure>,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("target", &self.target)
            .field("response_timeout", &self.response_timeout)
            .field("check_timeout", &self.check_timeout)
            .finish_non_exhaustive()
    }
}

impl Builder {
    /// From a URL (`redis://[user:password@]host:port[/db]`).
    pub fn new(url: &str) -> Result<Self, Error> {
        let info = url
            .into_connection_info()
            .map_err(|e| Error::Config(e.to_string()))?;
        Ok(Builder {
            target: Target {
                info,
                client_name: None,
                connect_timeout: Duration::from_secs(10),
                user_timeout: Duration::from_millis(3750),
            },
            response_timeout: Duration::from_secs(5),
            check_timeout: Duration::from_secs(5),
            configure: Vec::new(),
        })
    }

    /// The name each connection gives itself (`CLIENT SETNAME`), set again
    /// at reset if a borrower changed it.
    pub fn client_name(mut self, name: impl Into<String>) -> Self {
        self.target.client_name = Some(name.into());
        self
    }

    /// The most connections at once.
    pub fn capacity(self, n: usize) -> Self {
        self.pool(move |b| b.capacity(n))
    }

    /// How long connecting and the handshake may take.
    pub fn create_timeout(mut self, d: Duration) -> Self {
        self.target.connect_timeout = d;
        self
    }

    /// How long the checkout `PING` and the reset may take.
    pub fn check_timeout(mut self, d: Duration) -> Self {
        self.check_timeout = d;
        self.target.user_timeout = d / 4 * 3;
        self
    }

    /// How long one reply may take (a blocking command: its block time
    /// plus this).
    pub fn response_timeout(mut self, d: Duration) -> Self {
        self.response_timeout = d;
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

    /// The pool. Call it inside a tokio runtime, or give the pool one with
    /// `.pool(|b| b.runtime(handle))`.
    pub fn build(self) -> Result<Pool, BuildError<Error>> {
        let manager = Manager {
            target: self.target.clone(),
            response_timeout: self.response_timeout,
        };
        let mut b = cenote::resources::Pool::builder(manager)
            .create_timeout(self.target.connect_timeout)
            .check_timeout(self.check_timeout);
        for f in self.configure {
            b = f(b);
        }
        Ok(Pool::new(b.build()?, self.target, self.response_timeout))
    }
}
