//! cenote: one coherent answer to "limit and reuse" in Rust.
//!
//! - [`workers`]: a thread pool with everything ants offers and more
//!   (bounded queue and overflow policies, result handles, tune, reboot,
//!   scoped tasks, a pool bound to one function, several pools balanced).
//!
//! The object, task and resource pools follow in later releases.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub(crate) mod sync;
pub mod workers;
