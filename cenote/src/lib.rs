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

#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod limit;
mod log;
pub mod objects;
pub mod observe;
#[cfg(all(feature = "tokio", not(loom)))]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod resources;
pub(crate) mod sync;
#[cfg(all(feature = "tokio", not(loom)))]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod tasks;
pub(crate) mod unwind;
pub mod workers;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

/// Under loom tokio does not build, so only the tokio-free files of
/// `resources` and `tasks` are compiled, with their loom models (run with
/// `RUSTFLAGS="--cfg loom" cargo test -p cenote --release --lib loom_`).
// (Parts of these files serve only the rest of their module.)
#[cfg(all(test, loom))]
#[allow(dead_code)]
mod resources {
    pub(crate) mod core;
    mod loom_core;
}
#[cfg(all(test, loom))]
#[allow(dead_code)]
mod tasks {
    mod loom_protocol;
    mod loom_runq;
    pub(crate) mod protocol;
    pub(crate) mod runq;
}
