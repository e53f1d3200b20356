//! What a pool needs to know about its resources.

use std::future::Future;

/// Creates, checks, resets and destroys the resources of a
/// [`Pool`](super::Pool).
///
/// Only [`create`](Self::create) is required. The methods are async (write
/// `async fn` in your impl); the pool runs them on its tokio runtime, with
/// the timeouts of its [`Builder`](super::Builder), from async callers and
/// plain threads alike.
///
/// ```
/// use cenote::resources::Manager;
///
/// struct Conns;
/// #[derive(Debug, thiserror::Error)]
/// #[error("connection refused")]
/// struct Refused;
///
/// impl Manager for Conns {
///     type Resource = Vec<u8>; // stands for a connection
///     type Error = Refused;
///     async fn create(&self) -> Result<Vec<u8>, Refused> {
///         Ok(Vec::with_capacity(4096))
///     }
///     async fn reset(&self, conn: &mut Vec<u8>) -> Result<(), Refused> {
///         conn.clear(); // no session state leaks to the next borrower
///         Ok(())
///     }
/// }
/// ```
pub trait Manager: Send + Sync + 'static {
    /// The pooled resource (a connection, a client).
    type Resource: Send + 'static;
    /// What creating or checking one can fail with.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Makes a new resource (bounded by the builder's `create_timeout`).
    fn create(&self) -> impl Future<Output = Result<Self::Resource, Self::Error>> + Send;

    /// A health check (a `SELECT 1`, a `PING`), bounded by `check_timeout`.
    /// Run on checkout, unless the resource was used within the builder's
    /// `check_bypass` window, and by `keepalive` on idle resources. A
    /// failed check destroys the resource. The default passes.
    fn check(
        &self,
        resource: &mut Self::Resource,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        let _ = resource;
        async { Ok(()) }
    }

    /// Whether a resource is broken (a closed socket, a connection left
    /// inside a transaction): cheap and synchronous, run as the guard drops
    /// and again at every checkout, inside the check-bypass window too (a
    /// connection the server closed while it sat idle is never lent). A
    /// broken resource is destroyed. The default: never.
    fn is_broken(&self, resource: &mut Self::Resource) -> bool {
        let _ = resource;
        false
    }

    /// Clears session state before the next borrower gets the resource
    /// (roll back, `DISCARD ALL`, reset the database number). Run on
    /// checkout of a resource lent before, bounded by `check_timeout`; a
    /// failure destroys it. The default does nothing.
    fn reset(
        &self,
        resource: &mut Self::Resource,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        let _ = resource;
        async { Ok(()) }
    }

    /// Closes a resource the pool is done with (broken, expired, idle too
    /// long, evicted, or the pool closed). The default drops it.
    fn destroy(&self, resource: Self::Resource) -> impl Future<Output = ()> + Send {
        async move { drop(resource) }
    }

    /// Whether a create error is permanent (bad credentials, an unknown
    /// host): such an error reaches the caller of `get` at once. A
    /// transient one (refused, reset, timed out) is retried until the
    /// caller's acquire timeout, which then reports it. The default:
    /// transient.
    fn is_permanent(&self, error: &Self::Error) -> bool {
        let _ = error;
        false
    }
}
