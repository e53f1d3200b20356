//! `Task`: a type-erased `FnOnce() -> bool` that stores small closures
//! inline, so submitting one does not allocate.
//!
//! A boxed closure handed between threads costs an allocation on one core
//! and a free on another: on the benchmark machine that is most of the
//! ~125 ns/task a `Box<dyn FnOnce>` channel pool pays. Closures of up to
//! [`INLINE_WORDS`] machine words with at most word alignment (an `Arc`, an
//! index and a reference, say) are written straight into the queue slot
//! instead; bigger ones fall back to a `Box`.
//!
//! The `bool` a task returns is true when it panicked and the panic has
//! already been delivered elsewhere (to a `JoinHandle`), so the worker only
//! counts it.

use std::mem::{self, ManuallyDrop, MaybeUninit};
use std::ptr;

/// How many machine words a closure may occupy and still be stored inline.
pub(crate) const INLINE_WORDS: usize = 4;

type Storage = MaybeUninit<[usize; INLINE_WORDS]>;

/// The two operations a stored closure supports. One static table per
/// closure type and storage mode.
struct VTable {
    /// Moves the closure out of the storage and calls it.
    call: unsafe fn(*mut Storage) -> bool,
    /// Drops the closure in place without calling it.
    drop: unsafe fn(*mut Storage),
}

/// A unit of work for a worker thread.
pub(crate) struct Task {
    storage: Storage,
    vtable: &'static VTable,
}

// SAFETY: a `Task` is only ever built from a closure that is `Send`
// (`Task::new` and `Task::new_unchecked` both require `F: Send`), and it
// holds nothing else.
unsafe impl Send for Task {}

const fn fits_inline<F>() -> bool {
    mem::size_of::<F>() <= mem::size_of::<Storage>()
        && mem::align_of::<F>() <= mem::align_of::<Storage>()
}

struct Inline<F>(F);
struct Boxed<F>(F);

impl<F: FnOnce() -> bool> Inline<F> {
    const VTABLE: VTable = VTable {
        call: Self::call,
        drop: Self::drop,
    };
    /// # Safety
    /// `s` holds an initialised `F` written by `Task::new_unchecked`; the
    /// caller never touches the storage again.
    unsafe fn call(s: *mut Storage) -> bool {
        // SAFETY: per the contract, an `F` lives at `s` and is read once.
        let f = unsafe { ptr::read(s.cast::<F>()) };
        f()
    }
    /// # Safety
    /// As for `call`.
    unsafe fn drop(s: *mut Storage) {
        // SAFETY: per the contract, an `F` lives at `s` and is dropped once.
        unsafe { ptr::drop_in_place(s.cast::<F>()) }
    }
}

impl<F: FnOnce() -> bool> Boxed<F> {
    const VTABLE: VTable = VTable {
        call: Self::call,
        drop: Self::drop,
    };
    /// # Safety
    /// `s` holds a `*mut F` obtained from `Box::into_raw`; the caller never
    /// touches the storage again.
    unsafe fn call(s: *mut Storage) -> bool {
        // SAFETY: per the contract the pointer came from `Box::into_raw` and
        // is turned back into a box exactly once.
        let f = unsafe { Box::from_raw(ptr::read(s.cast::<*mut F>())) };
        f()
    }
    /// # Safety
    /// As for `call`.
    unsafe fn drop(s: *mut Storage) {
        // SAFETY: as in `call`.
        drop(unsafe { Box::from_raw(ptr::read(s.cast::<*mut F>())) });
    }
}

impl Task {
    /// Wraps a `'static` closure.
    #[inline]
    pub(crate) fn new<F: FnOnce() -> bool + Send + 'static>(f: F) -> Task {
        // SAFETY: `F: 'static`, so the task cannot outlive anything it borrows.
        unsafe { Task::new_unchecked(f) }
    }

    /// Wraps a closure that may borrow from the caller's stack.
    ///
    /// # Safety
    /// The caller must guarantee that the task is run or dropped before any
    /// borrow inside `f` ends (the `scope` module waits for every task it
    /// spawned before returning, even while unwinding).
    #[inline]
    pub(crate) unsafe fn new_unchecked<F: FnOnce() -> bool + Send>(f: F) -> Task {
        let mut storage: Storage = MaybeUninit::uninit();
        if fits_inline::<F>() {
            // SAFETY: `fits_inline` checked size and alignment, and the
            // storage is fresh, so writing an `F` at its start is in bounds
            // and aligned.
            unsafe { ptr::write(storage.as_mut_ptr().cast::<F>(), f) };
            Task {
                storage,
                vtable: &Inline::<F>::VTABLE,
            }
        } else {
            let raw: *mut F = Box::into_raw(Box::new(f));
            // SAFETY: a pointer is one word, which the storage always holds.
            unsafe { ptr::write(storage.as_mut_ptr().cast::<*mut F>(), raw) };
            Task {
                storage,
                vtable: &Boxed::<F>::VTABLE,
            }
        }
    }

    /// Runs the closure. Panics propagate to the caller (the worker catches
    /// them); the closure's captures are dropped either way, exactly once.
    #[inline]
    pub(crate) fn run(self) -> bool {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: the storage was initialised by `new_unchecked` to match
        // `vtable`, and `ManuallyDrop` ensures `Drop` will not touch it again
        // after `call` moved the closure out (also if `call` unwinds).
        unsafe { (this.vtable.call)(&mut this.storage) }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        // SAFETY: a `Task` that is dropped was never run (`run` forgets it),
        // so the storage still holds the closure `vtable` describes.
        unsafe { (self.vtable.drop)(&mut self.storage) }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn small_closures_are_inline_and_large_ones_boxed() {
        let a = Arc::new(AtomicUsize::new(0));
        let a2 = a.clone();
        let small = move || {
            a2.fetch_add(1, Ordering::Relaxed);
            false
        };
        fn inline_for<F>(_: &F) -> bool {
            fits_inline::<F>()
        }
        assert!(inline_for(&small));
        assert!(!Task::new(small).run());
        let big = [7u64; 16];
        let a3 = a.clone();
        let large = move || {
            a3.fetch_add(big.iter().sum::<u64>() as usize, Ordering::Relaxed);
            false
        };
        assert!(!inline_for(&large));
        Task::new(large).run();
        assert_eq!(a.load(Ordering::Relaxed), 1 + 112);
    }

    #[test]
    fn dropping_an_unrun_task_drops_its_captures_once() {
        let a = Arc::new(());
        for big in [false, true] {
            let a2 = a.clone();
            let pad = [0u8; 64];
            let t = if big {
                Task::new(move || {
                    let _ = (&a2, pad);
                    false
                })
            } else {
                Task::new(move || {
                    let _ = &a2;
                    false
                })
            };
            assert_eq!(Arc::strong_count(&a), 2);
            drop(t);
            assert_eq!(Arc::strong_count(&a), 1);
        }
    }

    #[test]
    fn a_panicking_task_drops_its_captures_once() {
        let a = Arc::new(());
        let a2 = a.clone();
        let t = Task::new(move || {
            let _keep = a2;
            panic!("boom");
        });
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| t.run()));
        assert!(r.is_err());
        assert_eq!(Arc::strong_count(&a), 1);
    }
}
