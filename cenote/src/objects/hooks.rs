//! What a pool runs on an object that comes back (`reset`, then `accept`),
//! and the return path compiled for them.
//!
//! `Pool<T>` does not name the type of its reset, so a guard's drop reaches
//! it through a trait object. The builder keeps the reset closure typed
//! (inside a [`MakeHooks`]) up to `build`, which makes one [`Hooks`] value;
//! its [`give_back`](Hooks::give_back) is the whole return path (the panic
//! check, the reset and accept, the push onto the thread's cache) compiled
//! for that closure, so the reset is inlined with its `catch_unwind` (for
//! `auto_reset()` on a `Vec`: one store, and no landing pad when the reset
//! cannot panic), and the guard's drop is one call. An `accept` set as well
//! is called through its box (the builder's methods take the two in either
//! order, so only one of them can stay typed up to `build`).

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::pool::{give_back_kept, Home, Inner, Obj};

/// An `accept` as the builder and the pool hold it.
pub(crate) type AcceptFn<T> = Box<dyn Fn(&T) -> bool + Send + Sync>;

/// Why an object that came back is not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// A pool's reset and accept.
pub(crate) trait Hooks<T: 'static>: Send + Sync {
    /// Runs the reset, then the accept, each under `catch_unwind`; never
    /// unwinds.
    fn prepare(&self, value: &mut T) -> Verdict;

    /// The return path of a guard or `put`, compiled for these hooks: the
    /// one call a guard's drop makes. The panicking check comes first; its
    /// slow half (`std`'s look at the thread's own panic count) is a call,
    /// so the rest is a separate function ([`give_back_kept`]) reached by a
    /// jump, and only a thread that finds some panic in progress saves
    /// registers around that call.
    fn give_back(&self, inner: &Inner<T>, value: Obj<T>, home: Home<T>) {
        if std::thread::panicking() {
            return inner.give_back_panicking(value, home);
        }
        give_back_kept(self, inner, value, home);
    }
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

/// Neither reset nor accept.
struct NoHooks;

impl<T: 'static> Hooks<T> for NoHooks {
    #[inline(always)]
    fn prepare(&self, _: &mut T) -> Verdict {
        Verdict::Keep
    }
}

struct ResetOnly<F>(F);

impl<T: 'static, F: Fn(&mut T) + Send + Sync> Hooks<T> for ResetOnly<F> {
    #[inline(always)]
    fn prepare(&self, value: &mut T) -> Verdict {
        if reset_ok(&self.0, value) {
            Verdict::Keep
        } else {
            Verdict::ResetPanicked
        }
    }
}

struct ResetAccept<T, F>(F, AcceptFn<T>);

impl<T: 'static, F: Fn(&mut T) + Send + Sync> Hooks<T> for ResetAccept<T, F> {
    #[inline(always)]
    fn prepare(&self, value: &mut T) -> Verdict {
        if !reset_ok(&self.0, value) {
            return Verdict::ResetPanicked;
        }
        accepted(&self.1, value)
    }
}

/// An accept and no reset.
struct AcceptOnly<T>(AcceptFn<T>);

impl<T: 'static> Hooks<T> for AcceptOnly<T> {
    #[inline(always)]
    fn prepare(&self, value: &mut T) -> Verdict {
        accepted(&self.0, value)
    }
}

/// The hooks of a pool built with `reset` and `accept` (either or both may
/// be absent).
pub(crate) fn hooks<T: 'static>(
    reset: Option<Box<dyn MakeHooks<T>>>,
    accept: Option<AcceptFn<T>>,
) -> Box<dyn Hooks<T>> {
    match (reset, accept) {
        (Some(reset), accept) => reset.make(accept),
        (None, Some(accept)) => Box::new(AcceptOnly(accept)),
        (None, None) => Box::new(NoHooks),
    }
}
