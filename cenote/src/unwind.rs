//! Catching panics of user code, and dropping what they carry.
//!
//! A caught panic's payload is user data too: `panic_any(x)` carries any
//! `x`, whose `Drop` may panic in turn. Dropped outside a `catch_unwind`,
//! that second panic unwinds from wherever the pool happened to drop it (a
//! worker's loop, a lane's driver, a guard's drop). So every payload the
//! pool does not hand on to the user goes through [`drop_payload`], and
//! every "run this, and only note whether it panicked" through
//! [`panicked`].

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// What a caught panic carries.
pub(crate) type Payload = Box<dyn Any + Send>;

/// Runs `f`; true if it panicked (the payload is dropped safely).
#[inline]
pub(crate) fn panicked(f: impl FnOnce()) -> bool {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(()) => false,
        Err(payload) => {
            drop_payload(payload);
            true
        }
    }
}

/// Drops a caught panic's payload; if its `Drop` panics, that panic is
/// caught and its own payload leaked (its drop might panic again).
#[cold]
pub(crate) fn drop_payload(payload: Payload) {
    if let Err(again) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        std::mem::forget(again);
    }
}

/// Drops a user value (a future, its output, an object), catching a panic
/// of its `Drop`: the payload, if any, for the caller to report.
#[cfg_attr(any(loom, not(feature = "tokio")), allow(dead_code))]
#[inline]
pub(crate) fn drop_caught<T>(value: T) -> Option<Payload> {
    catch_unwind(AssertUnwindSafe(move || drop(value))).err()
}

/// A pool's panic handler: called with the payload of each panic of user
/// code the pool catches (the payload stays the pool's, to drop or hand on).
pub(crate) type PanicHandler = std::sync::Arc<dyn Fn(&(dyn Any + Send)) + Send + Sync>;

/// Hands a caught panic to `handler`, or logs it at `error` level with its
/// message when there is none. `pool` names the module in the log line.
/// A panicking handler is caught and logged.
#[cold]
pub(crate) fn report(handler: Option<&PanicHandler>, payload: &(dyn Any + Send), pool: &str) {
    match handler {
        Some(handler) => {
            if panicked(|| handler(payload)) {
                crate::log::error!(pool, "cenote: the panic handler itself panicked");
            }
        }
        None => crate::log::error!(
            pool,
            message = message(payload).unwrap_or("<non-string payload>"),
            "cenote: user code panicked; the pool goes on serving"
        ),
    }
}

/// The message of a `panic!("...")` payload, if it is a string.
pub(crate) fn message(payload: &(dyn Any + Send)) -> Option<&str> {
    payload
        .downcast_ref::<&'static str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
}
