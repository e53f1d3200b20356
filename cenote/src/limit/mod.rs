//! `cenote::limit`: one counting semaphore for plain threads and async
//! tasks, and a monitor that samples any pool's counts on a period.
//!
//! A [`Semaphore`] bounds how many things run at once. Threads block in
//! [`Semaphore::acquire_blocking`] / [`Semaphore::acquire_timeout`], tasks
//! `.await` [`Semaphore::acquire`]; both wait in one strictly FIFO queue
//! (a thread first spins for about a microsecond while the queue is empty),
//! and dropping an `acquire` future at any point leaves no permit and no
//! waiter behind. Permits are RAII guards (borrowed [`Permit`] or `'static`
//! [`OwnedPermit`]); the semaphore resizes both ways at runtime
//! ([`Semaphore::add_permits`], [`Semaphore::forget_permits`],
//! [`Semaphore::resize`]) and [`Semaphore::close`] wakes every waiter
//! with an error. The core depends on no async runtime.
//!
//! ```
//! use cenote::limit::Semaphore;
//! use std::sync::Arc;
//! use std::thread;
//!
//! // At most 2 of 8 jobs run at once.
//! let sem = Arc::new(Semaphore::new(2));
//! let handles: Vec<_> = (0..8)
//!     .map(|_| {
//!         let sem = sem.clone();
//!         thread::spawn(move || {
//!             let _permit = sem.acquire_blocking().unwrap();
//!             assert!(sem.in_use() <= 2);
//!         })
//!     })
//!     .collect();
//! handles.into_iter().for_each(|h| h.join().unwrap());
//! assert_eq!(sem.available(), 2);
//! ```
//!
//! See `limit/DESIGN.md` for how the queue works.

mod monitor;
mod semaphore;

pub use monitor::{Monitor, MonitorError};
#[cfg(feature = "tokio")]
pub(crate) use semaphore::AcquireKept;
pub use semaphore::{
    Acquire, AcquireError, AcquireOwned, OwnedPermit, Permit, ResizeError, Semaphore,
    TooManyPermits, TryAcquireError, MAX_PERMITS,
};
