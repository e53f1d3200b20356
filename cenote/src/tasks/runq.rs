//! A lane's run queue: an intrusive multi-producer, single-consumer queue
//! (Dmitry Vyukov's), whose nodes are the cells themselves.
//!
//! Why not a `SegQueue`: each of its blocks (31 slots of 24 bytes) is an
//! allocation, and a wave of wake-ups (a thousand timers firing at once)
//! filled dozens of them: at 1,000 sleeping futures in flight, 57 blocks,
//! 43 KB, were live at the peak, allocated and freed on both workers'
//! malloc arenas. Here a push writes one pointer into the cell it pushes:
//! no allocation, whatever the burst. The cost is 8 bytes a cell (its
//! `next`), paid once, as `FuturesUnordered` pays for its ready queue.
//!
//! The protocol (loom: `loom_runq.rs`):
//! - **Push** (any thread): the node's `next` is cleared, the node is
//!   swapped in as the tail, and the old tail's `next` is pointed at it.
//!   Between the swap and that store the chain is broken: the consumer
//!   sees the old tail with no `next` although the tail moved on, and
//!   reports [`Pop::Busy`]. The pusher always finishes (two plain steps
//!   away, no loop), and every pusher signals its lane after its push, so
//!   a consumer that stops at `Busy` is told again.
//! - **Pop** (one consumer at a time): takes the head once its `next` is
//!   known. The queue always holds a node (a `stub` of its own, pushed
//!   back when the last real node is taken), so the last node can be
//!   handed out without a race with a pusher that links after it.
//!
//! Single consumer: the lane's driver while it lives; after it dies, the
//! pushers that find it dead, one at a time behind the lane's drain lock.

use std::ptr::{null_mut, NonNull};

use crate::sync::{AtomicPtr, Ordering::*, UnsafeCell};

/// A node's link: the first field of every cell (`#[repr(C)]`), so a
/// cell's address is its link's.
#[repr(C)]
#[derive(Debug)]
pub struct Link {
    next: AtomicPtr<Link>,
}

impl Link {
    /// A link in no queue.
    pub fn new() -> Self {
        Link {
            next: AtomicPtr::new(null_mut()),
        }
    }
}

impl Default for Link {
    fn default() -> Self {
        Link::new()
    }
}

/// What a [`RunQueue::pop`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Pop {
    /// The oldest node, now the caller's.
    Node(NonNull<Link>),
    /// Nothing queued.
    Empty,
    /// A push is half done (its node swapped in, not linked yet): the
    /// pusher signals once it is linked.
    Busy,
}

/// An intrusive MPSC queue of [`Link`]s.
pub struct RunQueue {
    /// The newest node; pushers swap themselves in here.
    tail: AtomicPtr<Link>,
    /// The oldest node (possibly the stub). Consumer only.
    head: UnsafeCell<*mut Link>,
    /// Keeps the queue non-empty; boxed, so its address stays put when the
    /// queue moves.
    stub: Box<Link>,
}

// SAFETY: the queue only holds pointers to nodes that its users hand over
// (see `push`); `head` is touched only by the one consumer (see `pop`),
// everything else is atomics.
unsafe impl Send for RunQueue {}
// SAFETY: as above.
unsafe impl Sync for RunQueue {}

impl RunQueue {
    pub fn new() -> Self {
        let stub = Box::new(Link::new());
        let at = &*stub as *const Link as *mut Link;
        RunQueue {
            tail: AtomicPtr::new(at),
            head: UnsafeCell::new(at),
            stub,
        }
    }

    fn stub(&self) -> *mut Link {
        &*self.stub as *const Link as *mut Link
    }

    /// Queues `node`. Any thread.
    ///
    /// # Safety
    /// `node` is valid, in no queue, and stays valid (and untouched by the
    /// caller) until a `pop` hands it back.
    #[inline]
    pub unsafe fn push(&self, node: NonNull<Link>) {
        // SAFETY: per the caller, valid and ours to link.
        unsafe { self.link_in(node.as_ptr()) }
    }

    /// # Safety
    /// As `push`, for `node` or the stub (pushed by the consumer).
    #[inline]
    unsafe fn link_in(&self, node: *mut Link) {
        // SAFETY: valid per the caller; nobody else writes a node's `next`
        // before the node is published by the swap below.
        unsafe { (*node).next.store(null_mut(), Relaxed) };
        // AcqRel: Release publishes the cleared `next` (and the cell's
        // contents) to the next pusher, which writes `next`, and to the
        // consumer; Acquire orders the previous pusher's clearing of
        // `prev.next` before our store into it.
        let prev = self.tail.swap(node, AcqRel);
        // SAFETY: `prev` was the tail, so it is still in the queue (the
        // consumer never takes a node whose `next` is null, as `prev.next`
        // is until this store) and so still valid.
        unsafe { (*prev).next.store(node, Release) };
    }

    /// Takes the oldest node.
    ///
    /// # Safety
    /// One consumer at a time (the caller makes sure no other `pop` runs
    /// concurrently).
    pub unsafe fn pop(&self) -> Pop {
        self.head.with_mut(|head| {
            // SAFETY: only the single consumer (per the caller) touches
            // `head`, and every node reachable from it is in the queue, so
            // valid.
            unsafe {
                let stub = self.stub();
                let mut first = *head;
                let mut next = (*first).next.load(Acquire);
                if first == stub {
                    if next.is_null() {
                        return if self.tail.load(Acquire) == stub {
                            Pop::Empty
                        } else {
                            Pop::Busy
                        };
                    }
                    // Skip the stub.
                    *head = next;
                    first = next;
                    next = (*first).next.load(Acquire);
                }
                if !next.is_null() {
                    *head = next;
                    return Pop::Node(NonNull::new_unchecked(first));
                }
                // `first` is the last linked node. If the tail moved on, a
                // pusher is linking after it: wait for it.
                if self.tail.load(Acquire) != first {
                    return Pop::Busy;
                }
                // Put the stub behind it, so that `first` can go.
                self.link_in(stub);
                next = (*first).next.load(Acquire);
                if !next.is_null() {
                    *head = next;
                    return Pop::Node(NonNull::new_unchecked(first));
                }
                // A pusher swapped in between our tail check and the stub's
                // push, and has not linked yet.
                Pop::Busy
            }
        })
    }
}

impl Default for RunQueue {
    fn default() -> Self {
        RunQueue::new()
    }
}
