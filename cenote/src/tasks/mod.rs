//! `cenote::tasks`: a pool that runs futures on a tokio runtime with at
//! most `capacity` of them in flight (feature `tokio`, on by default).
//!
//! [`Pool::spawn`] waits for a slot (back-pressure, FIFO), or rejects,
//! or waits with a deadline, as [`WhenFull`] says; [`Pool::try_spawn`]
//! and [`Pool::spawn_timeout`] choose per call, and `max_waiting` sheds
//! load. Every spawn returns a [`JoinHandle`] (`.await` it for the output
//! or a [`JoinError`] carrying the panic; `abort()`, `is_finished()`).
//! [`Pool::spawn_blocking`] runs a closure on a `cenote::workers` pool
//! under the same bound (an aborted handle's closure, which cannot be
//! stopped, keeps its slot until it returns). The pool resizes at runtime ([`Pool::resize`]),
//! waits for idle without closing ([`Pool::wait_idle`]), and shuts down
//! with a deadline ([`Pool::shutdown_timeout`]).
//!
//! ```
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() {
//! use std::time::Duration;
//! use cenote::tasks::{Pool, WhenFull};
//!
//! let pool = Pool::builder().capacity(2).when_full(WhenFull::Reject).build().unwrap();
//! let slow = pool.spawn(tokio::time::sleep(Duration::from_millis(50))).await.unwrap();
//! let _other = pool.spawn(async {}).await.unwrap();
//! // Full (unless the second one finished already): rejected, not queued.
//! let third = pool.try_spawn(async { 3 });
//! assert!(third.is_err() || pool.running() < 2);
//! slow.await.unwrap();
//! let failing = pool.spawn(async { panic!("boom") }).await.unwrap();
//! assert_eq!(failing.await.unwrap_err().panic_message(), Some("boom"));
//! # }
//! ```
//!
//! **How it runs.** Futures are not each a tokio task. A spawn from a task of
//! the pool's runtime first polls the future itself (*eager start*, see
//! [`Builder::eager_start`]): a future that finishes in that poll costs no
//! more than a semaphore permit and one allocation. The rest go to a few
//! *lanes* (one tokio task per runtime worker by default), each polling its
//! share of the futures. That makes a spawn several times cheaper than
//! `tokio::spawn` while the futures still run in parallel across the lanes. The bound is a
//! [`cenote::limit::Semaphore`](crate::limit::Semaphore): a future takes a
//! slot before it is queued and gives it back when it ends (result, panic,
//! abort), after its own drop, so `running() <= capacity()` holds at every
//! instant except after a shrinking `resize`, which never stops a future that
//! runs: no new one starts until the count is below the new capacity. One
//! consequence of lanes: a future that blocks its thread (CPU work without
//! `.await`) delays the other futures of its lane; give such work to
//! `spawn_blocking`.
//!
//! See `tasks/DESIGN.md` for how a future travels through the pool and why
//! nothing is lost or run twice.

mod builder;
mod cell;
mod eager;
mod errors;
mod join;
mod lane;
mod pool;
mod pool_ref;
pub(crate) mod protocol;
mod recycle;
mod run;
mod runnable;
pub(crate) mod runq;
mod spare;
mod waker;

pub use builder::{Builder, WhenFull, DEFAULT_CAPACITY, DEFAULT_EAGER_LIMIT, MAX_LANES};
pub use errors::{BuildError, JoinError, ResizeError, ShutdownError, SpawnError};
pub use join::JoinHandle;
pub use pool::{Pool, Spawn, Stats};
