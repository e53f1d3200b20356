//! A pool of reusable objects: Go's `sync.Pool`, typed, bounded and with a
//! lock-free per-thread fast path.
//!
//! Reusing temporary objects (buffers, request contexts, parsers) saves the
//! allocator work and keeps memory warm. [`Pool::get`] hands out an object
//! from the calling thread's cache, else from the shared store, else a new
//! one from the pool's `create` function; the guard it returns
//! ([`Pooled`]) puts the object back when dropped, after the pool's
//! [`reset`](Builder::reset) has emptied it, so nothing from one use (a
//! secret, a previous request) sits in the pool waiting for the next.
//!
//! ```
//! use cenote::objects::Pool;
//!
//! let buffers = Pool::builder(|| Vec::<u8>::with_capacity(4096))
//!     .auto_reset()                              // Vec: clear(), capacity kept
//!     .accept(|b| b.capacity() <= 64 * 1024)     // don't keep huge buffers
//!     .max_idle(256)
//!     .build()
//!     .unwrap();
//!
//! let mut buf = buffers.get();
//! buf.extend_from_slice(b"hello");
//! drop(buf);                                     // back to the pool, empty
//!
//! let buf = buffers.get();
//! assert!(buf.is_empty() && buf.capacity() >= 4096);
//! assert_eq!(buffers.stats().hits, 1);
//! ```
//!
//! What it offers, against the Rust object pools and `sync.Pool`:
//! - **A per-thread fast path**: each thread keeps up to
//!   [`thread_cache`](Builder::thread_cache) objects (default 8) that it
//!   takes and returns with no lock and no read-modify-write; a hit does
//!   not allocate. Beyond that, objects go to a shared bounded lock-free
//!   store, through which they move between threads.
//! - **Objects stay in place**: the pool keeps each object in a box made
//!   when it is created (one allocation per miss), so getting and returning
//!   moves a pointer, never the object, however large `T` is. The box is
//!   cache-padded (128 bytes), so objects in use on different threads
//!   never share a cache line.
//!   [`Pooled::detach`] moves the object out and frees its box.
//! - **Bounded**: the shared store keeps at most
//!   [`max_idle`](Builder::max_idle) objects; a return past it drops the
//!   object. Memory follows the objects in use, not the number of threads
//!   that ever touched the pool: a thread's cache goes back to the shared
//!   store when the thread exits.
//! - **Cross-thread return**: [`Pool::get_owned`] gives a `'static` guard
//!   that can be sent to another thread (or task) and dropped there.
//! - **Trimming**: [`Pool::trim`] drops objects that have sat unused for a
//!   whole trim period (`sync.Pool`'s victim cache, on your clock), by hand
//!   or every [`trim_every`](Builder::trim_every).
//! - **Panics**: an object whose guard is dropped during a panic is
//!   discarded (configurable); a panicking `reset` or `accept` drops the
//!   object and never aborts the process.
//! - [`Pool::try_get`] (never creates), [`Pool::put`],
//!   [`Pooled::detach`], [`Pool::stats`].
//!
//! The design and the ownership argument behind the `unsafe` are in
//! `objects/DESIGN.md`.

mod builder;
mod hooks;
mod local;
mod pool;
mod reset;

pub use builder::{
    BuildError, Builder, DEFAULT_MAX_IDLE, DEFAULT_THREAD_CACHE, MAX_IDLE, MAX_THREAD_CACHE,
};
pub use pool::{OwnedPooled, Pool, Pooled};
pub use reset::Reset;

/// What a pool has done, from [`Pool::stats`]. Counters only grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Gets served by an idle object.
    pub hits: u64,
    /// Gets that created a new object.
    pub misses: u64,
    /// Objects that came back and were kept (guards dropped, `put`).
    pub returned: u64,
    /// Objects dropped on return because the pool was full.
    pub dropped_full: u64,
    /// Objects dropped on return because `accept` refused them.
    pub dropped_refused: u64,
    /// Objects dropped because their thread was panicking, or `reset` or
    /// `accept` panicked.
    pub dropped_panicked: u64,
    /// Idle objects dropped by trimming.
    pub dropped_trimmed: u64,
    /// Objects idle now (the shared store plus the threads' caches).
    pub idle: usize,
}
