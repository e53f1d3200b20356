//! The `tracing` face (feature `tracing`, on by default): a span per
//! acquire, `cenote.fleet.acquire`, with the semaphore's name and the
//! permits asked for, recording the grant's token or the error and the
//! wait; and warnings when a lease is lost and when Redis lost the
//! semaphore's state. Without the feature every call here is empty.

use std::time::Duration;

use crate::error::Error;
use crate::lease::Lease;

/// The span of one acquire.
pub(crate) struct AcquireSpan {
    #[cfg(feature = "tracing")]
    span: tracing::Span,
}

impl AcquireSpan {
    pub(crate) fn new(name: &str, permits: u64) -> AcquireSpan {
        #[cfg(not(feature = "tracing"))]
        let _ = (name, permits);
        AcquireSpan {
            #[cfg(feature = "tracing")]
            span: tracing::debug_span!(
                "cenote.fleet.acquire",
                semaphore = name,
                permits,
                token = tracing::field::Empty,
                error = tracing::field::Empty,
                waited_us = tracing::field::Empty,
            ),
        }
    }

    /// Runs `fut` inside the span.
    pub(crate) async fn run<F: std::future::Future>(&self, fut: F) -> F::Output {
        #[cfg(feature = "tracing")]
        {
            use tracing::Instrument;
            fut.instrument(self.span.clone()).await
        }
        #[cfg(not(feature = "tracing"))]
        fut.await
    }

    /// Records how it ended.
    pub(crate) fn end(&self, got: &Result<Lease, Error>, waited: Duration) {
        #[cfg(feature = "tracing")]
        {
            match got {
                Ok(lease) => self.span.record("token", lease.token()),
                Err(e) => self.span.record("error", tracing::field::display(e)),
            };
            self.span.record("waited_us", waited.as_micros() as u64);
        }
        #[cfg(not(feature = "tracing"))]
        let _ = (got, waited);
    }
}

/// A lease this process held is lost: its work must stop.
pub(crate) fn lease_lost(name: &str, token: u64, why: &'static str) {
    #[cfg(feature = "tracing")]
    tracing::warn!(
        semaphore = name,
        token,
        why,
        "cenote-fleet: a lease was lost"
    );
    #[cfg(not(feature = "tracing"))]
    let _ = (name, token, why);
}

/// Redis lost the semaphore's state (whole or in part): quarantined.
pub(crate) fn state_lost(name: &str, what: &'static str) {
    #[cfg(feature = "tracing")]
    tracing::warn!(
        semaphore = name,
        what,
        "cenote-fleet: Redis lost the semaphore's state; no grants for one TTL"
    );
    #[cfg(not(feature = "tracing"))]
    let _ = (name, what);
}
