//! [`Manager`]: how the pool makes, checks, resets and closes Redis
//! connections.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use crate::connect::Target;
use crate::connection::{Connection, Session};
use crate::error::Error;

/// The [`cenote::resources::Manager`] of Redis connections (built by
/// [`Builder`](crate::Builder)).
#[derive(Debug)]
pub struct Manager {
    pub(crate) target: Target,
    pub(crate) response_timeout: Duration,
}

impl cenote::resources::Manager for Manager {
    type Resource = Connection;
    type Error = Error;

    async fn create(&self) -> Result<Connection, Error> {
        // Replies are bounded by the Connection, each by its own limit.
        let opened = self.target.open(None).await?;
        Ok(Connection {
            conn: opened.conn,
            driver: opened.driver,
            response_timeout: self.response_timeout,
            session: Session::default(),
        })
    }

    /// `PING`, answered `PONG`.
    async fn check(&self, c: &mut Connection) -> Result<(), Error> {
        let pong: redis::Value = redis::cmd("PING").query_async(&mut c.conn).await?;
        match pong {
            redis::Value::SimpleString(s) if s == "PONG" => Ok(()),
            other => Err(Error::BadPong(other)),
        }
    }

    fn is_broken(&self, c: &mut Connection) -> bool {
        c.is_closed() || c.session.is_spoiled()
    }

    /// Undoes what the last borrower changed, in one round trip (none if
    /// it changed nothing): `DISCARD` an open `MULTI`, `UNWATCH`, `SELECT`
    /// the configured database, and set the configured client name again.
    async fn reset(&self, c: &mut Connection) -> Result<(), Error> {
        let s = &c.session;
        let multi = s.multi.swap(false, Relaxed);
        let watched = s.watched.swap(false, Relaxed);
        let selected = s.selected.swap(false, Relaxed);
        let renamed = s.renamed.swap(false, Relaxed);
        let mut pipe = redis::pipe();
        if multi {
            pipe.cmd("DISCARD").ignore();
        }
        if watched || multi {
            pipe.cmd("UNWATCH").ignore();
        }
        if selected {
            pipe.cmd("SELECT").arg(self.target.info.redis.db).ignore();
        }
        if renamed {
            match &self.target.client_name {
                Some(name) => pipe.cmd("CLIENT").arg("SETNAME").arg(name).ignore(),
                None => pipe.cmd("CLIENT").arg("SETNAME").arg("").ignore(),
            };
        }
        if pipe.cmd_iter().next().is_none() {
            return Ok(());
        }
        pipe.query_async::<()>(&mut c.conn).await?;
        Ok(())
    }

    async fn destroy(&self, c: Connection) {
        let Connection {
            conn, mut driver, ..
        } = c;
        // Without a handle left, the driver closes the socket and ends.
        drop(conn);
        if tokio::time::timeout(Duration::from_millis(100), &mut driver)
            .await
            .is_err()
        {
            driver.abort();
        }
    }

    fn is_permanent(&self, e: &Error) -> bool {
        e.is_permanent()
    }
}
