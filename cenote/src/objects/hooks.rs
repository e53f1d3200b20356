//! What a pool runs on an object that comes back: `reset`, then `accept`,
//! as one call whose body is compiled for the reset's own type.
//!
//! `Pool<T>` does not name the type of its reset, so the return path calls
//! it through a trait object. The builder keeps the reset closure typed
//! (inside a [`MakeHooks`]) up to `build`, which makes one [`Hooks`] value
//! whose `prepare` has the reset inlined and its `catch_unwind` around it:
//! for `auto_reset()` on a `Vec` that is one store, and no landing pad when
//! the reset cannot panic. An `accept` set as well is called through its
//! box (the builder's methods take the two in either order, so only one of
//! them can stay typed up to `build`).

use std::panic::{catch_unwind, AssertUnwindSafe};

/// An `accept` as the builder and the pool hold it.
pub(crate) type AcceptFn<T> = Box<dyn Fn(&T) -> bool + Send + Sync>;

/// Why an object that came back is not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Verdict {
    /// Reset and accepted: store it.
    Keep,
    /// `accept` said false.
    Refused,
    /// `reset` panicked (the payload is dropped).
    ResetPanicked,
    /// `accept` panicked (the payload is dropped).
    AcceptPanicked,
}

/// Reset and accept, in one call.
pub(crate) trait Hooks<T>: Send + Sync {
    /// Runs the reset, then the accept, each under `catch_unwind`.
    ///
    /// `extern "C"`: it never unwinds (every panic is caught, and so is a
    /// panic dropping a payload), and the ABI tells the compiler so, which
    /// spares the caller (a guard's drop, inlined into user code) a landing
    /// pad. Were a panic to escape anyway, the process would abort rather
    /// than unwind through the pool.
    extern "C" fn prepare(&self, value: &mut T) -> Verdict;
}

/// A reset kept typed by the builder up to `build`.
pub(crate) trait MakeHooks<T>: Send + Sync {
    /// The hooks of a pool with this reset and `accept`.
    fn make(self: Box<Self>, accept: Option<AcceptFn<T>>) -> Box<dyn Hooks<T>>;
}

/// Runs `reset`; false if it panicked.
#[inline(always)]
fn reset_ok<T>(reset: &impl Fn(&mut T), value: &mut T) -> bool {
    match catch_unwind(AssertUnwindSafe(|| reset(value))) {
        Ok(()) => true,
        Err(payload) => {
            crate::unwind::drop_payload(payload);
            false
        }
    }
}

/// Runs `accept`.
#[inline(always)]
fn accepted<T>(accept: &AcceptFn<T>, value: &T) -> Verdict {
    match catch_unwind(AssertUnwindSafe(|| accept(value))) {
        Ok(true) => Verdict::Keep,
        Ok(false) => Verdict::Refused,
        Err(payload) => {
            crate::unwind::drop_payload(payload);
            Verdict::AcceptPanicked
        }
    }
}

/// The reset `F`, not yet combined with an accept.
pub(crate) struct TypedReset<F>(pub(crate) F);

impl<T: 'static, F: Fn(&mut T) + Send + Sync + 'static> MakeHooks<T> for TypedReset<F> {
    fn make(self: Box<Self>, accept: Option<AcceptFn<T>>) -> Box<dyn Hooks<T>> {
        match accept {
            None => Box::new(ResetOnly(self.0)),
            Some(accept) => Box::new(ResetAccept(self.0, accept)),
        }
    }
}

struct ResetOnly<F>(F);

impl<T, F: Fn(&mut T) + Send + Sync> Hooks<T> for ResetOnly<F> {
    extern "C" fn prepare(&self, value: &mut T) -> Verdict {
        if reset_ok(&self.0, value) {
            Verdict::Keep
        } else {
            Verdict::ResetPanicked
        }
    }
}

struct ResetAccept<T, F>(F, AcceptFn<T>);

impl<T, F: Fn(&mut T) + Send + Sync> Hooks<T> for ResetAccept<T, F> {
    extern "C" fn prepare(&self, value: &mut T) -> Verdict {
        if !reset_ok(&self.0, value) {
            return Verdict::ResetPanicked;
        }
        accepted(&self.1, value)
    }
}

/// An accept and no reset.
pub(crate) struct AcceptOnly<T>(pub(crate) AcceptFn<T>);

impl<T> Hooks<T> for AcceptOnly<T> {
    extern "C" fn prepare(&self, value: &mut T) -> Verdict {
        accepted(&self.0, value)
    }
}

/// The hooks of a pool built with `reset` and `accept` (either may be
/// absent); `None` when both are.
pub(crate) fn hooks<T: 'static>(
    reset: Option<Box<dyn MakeHooks<T>>>,
    accept: Option<AcceptFn<T>>,
) -> Option<Box<dyn Hooks<T>>> {
    match (reset, accept) {
        (Some(reset), accept) => Some(reset.make(accept)),
        (None, Some(accept)) => Some(Box::new(AcceptOnly(accept))),
        (None, None) => None,
    }
}
