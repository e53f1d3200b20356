//! The process-wide default pool behind free functions (ants' package-level
//! `Submit`).

use std::sync::OnceLock;
use std::time::Duration;

use super::builder::Builder;
use super::errors::{GlobalError, SubmitError};
use super::join::JoinHandle;
use super::Pool;

static GLOBAL: OnceLock<Pool> = OnceLock::new();

/// The default pool: built on first use with [`Builder::new`]'s defaults
/// (capacity = `std::thread::available_parallelism`), unless
/// [`configure_global`] ran first. It is never closed by dropping.
pub fn global() -> &'static Pool {
    GLOBAL.get_or_init(|| {
        Builder::new()
            .thread_name("cenote-global")
            .build()
            .expect("the default configuration is valid")
    })
}

/// Configures the default pool. Call it once, before the first use of
/// [`global`] or the free functions; later calls fail with
/// `GlobalError::AlreadyInitialized` and leave the pool as it is.
///
/// ```
/// use cenote::workers::{configure_global, Pool};
/// configure_global(Pool::builder().capacity(8).thread_name("app")).unwrap();
/// cenote::workers::submit(|| println!("on the default pool")).unwrap();
/// assert!(configure_global(Pool::builder()).is_err());
/// ```
pub fn configure_global(builder: Builder) -> Result<&'static Pool, GlobalError> {
    if GLOBAL.get().is_some() {
        return Err(GlobalError::AlreadyInitialized);
    }
    let pool = builder.build()?;
    // Lost a race with another initialiser: ours is dropped (and closed).
    GLOBAL
        .set(pool)
        .map_err(|_| GlobalError::AlreadyInitialized)?;
    Ok(global())
}

/// [`Pool::submit`] on the default pool.
pub fn submit<F: FnOnce() + Send + 'static>(f: F) -> Result<(), SubmitError> {
    global().submit(f)
}

/// [`Pool::try_submit`] on the default pool.
pub fn try_submit<F: FnOnce() + Send + 'static>(f: F) -> Result<(), SubmitError> {
    global().try_submit(f)
}

/// [`Pool::submit_timeout`] on the default pool.
pub fn submit_timeout<F: FnOnce() + Send + 'static>(
    f: F,
    timeout: Duration,
) -> Result<(), SubmitError> {
    global().submit_timeout(f, timeout)
}

/// [`Pool::spawn`] on the default pool.
pub fn spawn<T, F>(f: F) -> Result<JoinHandle<T>, SubmitError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    global().spawn(f)
}
