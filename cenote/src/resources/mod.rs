//! A managed resource pool (connections, clients) for async tasks and
//! plain threads alike, with the full lifecycle and fail-fast errors.
//!
//! ```
//! use std::time::Duration;
//! use cenote::resources::{Manager, Pool};
//!
//! struct Db;
//! #[derive(Debug, thiserror::Error)]
//! #[error("database down")]
//! struct Down;
//!
//! impl Manager for Db {
//!     type Resource = String; // stands for a connection
//!     type Error = Down;
//!     async fn create(&self) -> Result<String, Down> {
//!         Ok("conn".to_owned())
//!     }
//!     async fn check(&self, _conn: &mut String) -> Result<(), Down> {
//!         Ok(()) // SELECT 1
//!     }
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let pool = Pool::builder(Db)
//!     .capacity(4)
//!     .min_idle(1)
//!     .acquire_timeout(Duration::from_secs(5))
//!     .build_filled() // fails fast with the real error if the first connect fails
//!     .await?;
//! let conn = pool.get().await?; // from a task; `get_blocking()` from a thread
//! assert_eq!(*conn, "conn");
//! drop(conn); // back to the pool, reset before its next borrower
//! assert_eq!(pool.idle(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! The model: a [`Manager`] creates, checks, resets and destroys resources;
//! the pool lends at most `capacity` of them, through one
//! [`limit::Semaphore`](crate::limit::Semaphore) shared by tasks
//! (`get().await`) and threads (`get_blocking()`, `get_timeout(d)`), so
//! waiters are served strictly FIFO (or by priority, with
//! [`Pool::request`]). A returned resource is kept idle and reset before its
//! next borrower; one returned broken, past its lifetime or by a panicking
//! thread is destroyed. A background task keeps `min_idle`, retires idle and
//! expired resources, runs keepalive checks and reports leaks. Errors say
//! what went wrong: a timeout carries the last create or check error, and a
//! permanent create error reaches the caller at once. See `DESIGN.md` for
//! the invariants.

mod builder;
mod call;
mod check;
mod core;
mod create;
mod errors;
mod exec;
mod get;
mod guard;
mod hooks;
mod maintenance;
mod manager;
mod pool;
mod release;
mod request;
mod stats;
mod timeout;

pub use builder::{Builder, QueueOrder};
pub use errors::{BuildError, GetError, ResizeError, ShutdownError};
pub use guard::Pooled;
pub use hooks::LeakReport;
pub use manager::Manager;
pub use pool::{Pool, ResourceInfo};
pub use request::Request;
pub use stats::{DestroyReason, Stats, WAIT_BUCKETS};
