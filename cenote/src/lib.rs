//! cenote: one coherent answer to "limit and reuse" in Rust.
//!
//! - [`workers`]: a thread pool with everything ants offers and more
//!   (bounded queue and overflow policies, result handles, resize, reboot,
//!   scoped tasks, a pool bound to one function, several pools balanced).
//!
//! - [`objects`]: an object pool with a lock-free per-thread fast path, a
//!   bounded shared store, reset on return, trimming and cross-thread return.
//!
//! - [`limit`]: one counting semaphore for threads and async tasks (strict
//!   FIFO, cancel-safe, resizable), and a monitor that samples counts.
//!
//! - [`tasks`] (feature `tokio`, on by default): a pool that runs futures
//!   on a tokio runtime with at most `capacity` in flight: back-pressure,
//!   reject or deadline when full, join handles, resize, wait-idle, shutdown.
//!
//! - [`resources`] (feature `tokio`): a managed resource pool for async
//!   tasks and plain threads: min-idle, lifetimes, idle timeout, keepalive,
//!   checks with a bypass window, reset before reuse, FIFO or priority
//!   waiters, load shedding, leak detection, hooks, fail-fast errors.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod limit;
pub mod objects;
#[cfg(all(feature = "tokio", not(loom)))]
pub mod resources;
/// The resource pool's bookkeeping core, alone, for the loom models
/// (`tests/loom_resources.rs`); tokio does not build under loom.
#[cfg(loom)]
#[doc(hidden)]
#[path = "resources/core.rs"]
pub mod resources_core;
pub(crate) mod sync;
pub(crate) mod unwind;
/// The workers' bounded queue, alone, for the loom models
/// (`tests/loom_queue.rs`).
#[cfg(loom)]
#[doc(hidden)]
pub mod mpmc_model {
    pub use crate::sync::mpmc::{ArrayQueue, TryPop};
}
#[cfg(all(feature = "tokio", not(loom)))]
pub mod tasks;
/// The state words of `cenote::tasks`, alone, for the loom models
/// (`tests/loom_tasks.rs`); tokio does not build under loom.
#[cfg(loom)]
#[doc(hidden)]
#[path = "tasks/protocol.rs"]
pub mod tasks_protocol;
/// The lanes' intrusive run queue of `cenote::tasks`, alone, for the loom
/// models (`tests/loom_runq.rs`).
#[cfg(loom)]
#[doc(hidden)]
#[path = "tasks/runq.rs"]
pub mod tasks_runq;
pub mod workers;
