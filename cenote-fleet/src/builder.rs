//! [`Builder`]: a fleet semaphore's name, cap, lease length and Redis.

use std::time::Duration;

use crate::error::Error;
use crate::semaphore::Semaphore;

/// How to build a [`Semaphore`].
#[derive(Debug, Clone)]
#[must_use = "a Builder does nothing until build()"]
pub struct Builder {
    pub(crate) url: String,
    pub(crate) name: String,
    pub(crate) cap: u64,
    pub(crate) ttl: Duration,
    pub(crate) response_timeout: Duration,
    pub(crate) acquire_timeout: Duration,
}

impl Builder {
    /// The semaphore `name` with `cap` permits, on the Redis at `url`
    /// (`redis://host:port/db`). Every process that builds it with this
    /// name shares the cap.
    pub fn new(url: impl Into<String>, name: impl Into<String>, cap: u64) -> Builder {
        Builder {
            url: url.into(),
            name: name.into(),
            cap,
            ttl: Duration::from_secs(10),
            response_timeout: Duration::from_secs(2),
            acquire_timeout: Duration::from_secs(30),
        }
    }

    /// How long a lease lasts unless renewed (renewed every third of it
    /// while held; default 10 s). A crashed holder's permits come back
    /// after at most this long.
    pub fn ttl(mut self, ttl: Duration) -> Builder {
        self.ttl = ttl;
        self
    }

    /// The most one call to Redis may take (default 2 s).
    pub fn response_timeout(mut self, d: Duration) -> Builder {
        self.response_timeout = d;
        self
    }

    /// How long [`acquire`](Semaphore::acquire) waits at most (default
    /// 30 s).
    pub fn acquire_timeout(mut self, d: Duration) -> Builder {
        self.acquire_timeout = d;
        self
    }

    /// Connects, and creates the semaphore in Redis if it does not exist;
    /// an existing one with another cap is refused
    /// ([`Error::CapMismatch`]). Runs its background tasks (the lease
    /// renewer and the wake listener) on the current tokio runtime.
    pub async fn build(self) -> Result<Semaphore, Error> {
        self.validate()?;
        Semaphore::start(self).await
    }

    fn validate(&self) -> Result<(), Error> {
        if self.cap == 0 {
            return Err(Error::Config("cap must be at least 1"));
        }
        if self.name.is_empty() || self.name.contains(['{', '}']) {
            return Err(Error::Config("name must be non-empty, without braces"));
        }
        if self.ttl < Duration::from_millis(100) || self.ttl > Duration::from_secs(86_400) {
            return Err(Error::Config("ttl must be between 100 ms and one day"));
        }
        if self.response_timeout.is_zero() || self.response_timeout >= self.ttl {
            return Err(Error::Config(
                "response_timeout must be above zero and below the ttl",
            ));
        }
        Ok(())
    }
}
