//! The workers' bounded job queue: [`mpmc::ArrayQueue`], or a loom
//! `Mutex<VecDeque>` under the model.

#[cfg(not(loom))]
use super::mpmc;

/// A bounded MPMC FIFO queue.
///
/// Protocol requirement (see `workers/DESIGN.md`): a successful `push` or
/// `pop` is a SeqCst read-modify-write and `is_empty` does SeqCst loads, so
/// the Dekker-style hand-shakes between submitters and parking workers need
/// no extra fences. [`mpmc::ArrayQueue`] guarantees this (its head/tail CAS
/// and `is_empty` loads are SeqCst); the loom model's `Mutex` is stronger
/// still. It is `crossbeam_queue::ArrayQueue`'s algorithm, but a pop that
/// meets a push in progress backs off and yields instead of spinning (see
/// `mpmc.rs` for why that matters).
#[cfg(not(loom))]
pub(crate) struct Queue<T>(mpmc::ArrayQueue<T>);

#[cfg(not(loom))]
impl<T> Queue<T> {
    pub(crate) fn new(cap: usize) -> Self {
        Queue(mpmc::ArrayQueue::new(cap))
    }
    #[inline]
    pub(crate) fn push(&self, value: T) -> Result<(), T> {
        self.0.push(value)
    }
    #[inline]
    pub(crate) fn pop(&self) -> Option<T> {
        self.0.pop()
    }
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

#[cfg(loom)]
pub(crate) struct Queue<T> {
    cap: usize,
    items: loom::sync::Mutex<std::collections::VecDeque<T>>,
}

#[cfg(loom)]
impl<T> Queue<T> {
    pub(crate) fn new(cap: usize) -> Self {
        Queue {
            cap,
            items: loom::sync::Mutex::new(std::collections::VecDeque::new()),
        }
    }
    pub(crate) fn push(&self, value: T) -> Result<(), T> {
        let mut q = self.items.lock().unwrap();
        if q.len() >= self.cap {
            return Err(value);
        }
        q.push_back(value);
        Ok(())
    }
    pub(crate) fn pop(&self) -> Option<T> {
        self.items.lock().unwrap().pop_front()
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.items.lock().unwrap().is_empty()
    }
    pub(crate) fn len(&self) -> usize {
        self.items.lock().unwrap().len()
    }
}
