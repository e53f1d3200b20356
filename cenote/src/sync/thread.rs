//! Parking a blocked thread (a loom thread under the model, where a timed
//! park is an untimed one: the models do not exercise timeouts), and each
//! thread's stripe: which part of a per-thread-striped structure it uses.

#[cfg(not(loom))]
pub(crate) use std::thread::{current, park, park_timeout, Thread};

#[cfg(loom)]
pub(crate) use loom::thread::{current, park, Thread};

#[cfg(loom)]
pub(crate) fn park_timeout(_: std::time::Duration) {
    park();
}

/// A small number for the calling thread, handed out round robin on
/// its first call and kept: which stripe of a per-thread-striped
/// structure it uses (threads spread over the stripes, so that cores
/// do not write one cache line in turn).
#[cfg(not(loom))]
#[inline]
pub(crate) fn stripe() -> usize {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    std::thread_local! {
        static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    STRIPE.with(|s| {
        let mut i = s.get();
        if i == usize::MAX {
            i = NEXT.fetch_add(1, Relaxed) & (usize::MAX >> 1);
            s.set(i);
        }
        i
    })
}

/// See the non-loom `stripe`: the model thread's number (deterministic
/// across the model's runs, as loom needs).
#[cfg(loom)]
pub(crate) fn stripe() -> usize {
    let id = format!("{:?}", current().id());
    id.trim_start_matches("ThreadId(")
        .trim_end_matches(')')
        .parse()
        .unwrap_or(0)
}
