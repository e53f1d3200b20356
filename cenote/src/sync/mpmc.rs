//! The workers' bounded MPMC FIFO queue: Dmitry Vyukov's array queue with
//! lap-stamped slots (the algorithm of `crossbeam_queue::ArrayQueue`), with
//! one difference that matters under heavy oversubscription: `try_pop`
//! reports a push in progress instead of spinning on it.
//!
//! Why not `ArrayQueue` itself: its `pop`, on finding the head slot claimed
//! by a push that has not yet published its value, spins with a backoff that
//! never yields. With thousands of worker threads on two cores, a producer
//! preempted inside that window left every idle worker spinning there, and
//! the producer waited seconds for a core (seed 001 at 10,000 threads: one
//! run in three or four took 3-4 s instead of 0.8 s; `perf`: 71% of the time
//! in `ArrayQueue::pop`). Here the worker gets `Busy`, backs off (spin, then
//! yield) and the producer runs. Everything else is the same algorithm, so
//! the common path costs what `ArrayQueue`'s does.
//!
//! Each slot's `stamp` says whose turn it is: `lap | index` when it is free
//! for the push of that lap, `lap | index + 1` once that push published its
//! value, and `(lap + one lap) | index` once the value was taken. `head`
//! and `tail` are `lap | index` counters, moved by CAS; the CAS gives the
//! winner the slot until it stores the next stamp.
//!
//! Model-checked in `loom_mpmc.rs`.

use std::mem::MaybeUninit;

use crossbeam_utils::CachePadded;

use super::{fence, AtomicUsize, Backoff, Ordering::*, UnsafeCell};

struct Slot<T> {
    stamp: AtomicUsize,
    value: UnsafeCell<MaybeUninit<T>>,
}

/// A bounded multi-producer multi-consumer FIFO queue.
pub struct ArrayQueue<T> {
    head: CachePadded<AtomicUsize>,
    tail: CachePadded<AtomicUsize>,
    buffer: Box<[Slot<T>]>,
    cap: usize,
    /// A power of two above `cap`: adding it moves a counter one lap on.
    one_lap: usize,
}

// SAFETY: values move between threads through the queue (so `T: Send`);
// the queue itself only hands out owned values, never references into the
// slots, and every slot access is made exclusive by the stamp protocol.
unsafe impl<T: Send> Send for ArrayQueue<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for ArrayQueue<T> {}

/// What [`ArrayQueue::try_pop`] found.
pub enum TryPop<T> {
    /// The value at the head.
    Item(T),
    /// Nothing queued.
    Empty,
    /// The head slot is claimed by a push that has not published yet: try
    /// again after backing off.
    Busy,
}

impl<T> ArrayQueue<T> {
    /// A queue of `cap` slots (`cap >= 1`).
    pub fn new(cap: usize) -> Self {
        assert!(cap > 0, "capacity must be positive");
        let one_lap = (cap + 1).next_power_of_two();
        let buffer = (0..cap)
            .map(|i| Slot {
                stamp: AtomicUsize::new(i),
                value: UnsafeCell::new(MaybeUninit::uninit()),
            })
            .collect();
        ArrayQueue {
            head: CachePadded::new(AtomicUsize::new(0)),
            tail: CachePadded::new(AtomicUsize::new(0)),
            buffer,
            cap,
            one_lap,
        }
    }

    /// The counter after `c`: the next index, or index 0 of the next lap.
    #[inline]
    fn next(&self, c: usize) -> usize {
        let index = c & (self.one_lap - 1);
        if index + 1 < self.cap {
            c + 1
        } else {
            (c & !(self.one_lap - 1)).wrapping_add(self.one_lap)
        }
    }

    /// Appends `value`, or gives it back if the queue is full. A successful
    /// push is a SeqCst read-modify-write (the workers' protocol relies on
    /// it).
    pub fn push(&self, value: T) -> Result<(), T> {
        let backoff = Backoff::new();
        let mut tail = self.tail.load(Relaxed);
        loop {
            let slot = &self.buffer[tail & (self.one_lap - 1)];
            let stamp = slot.stamp.load(Acquire);
            if stamp == tail {
                // The slot is free for this lap: claim it.
                match self
                    .tail
                    .compare_exchange_weak(tail, self.next(tail), SeqCst, Relaxed)
                {
                    Ok(_) => {
                        // SAFETY: the CAS moved `tail` past this slot while
                        // its stamp said "free for lap `tail`": no other push
                        // can claim it this lap, and no pop touches it until
                        // the stamp below says it is full.
                        slot.value.with_mut(|p| unsafe { (*p).write(value) });
                        slot.stamp.store(tail.wrapping_add(1), Release);
                        return Ok(());
                    }
                    Err(t) => tail = t,
                }
            } else if stamp.wrapping_add(self.one_lap) == tail.wrapping_add(1) {
                // The slot still holds last lap's value: full, unless a pop
                // has moved the head meanwhile.
                fence(SeqCst);
                let head = self.head.load(Relaxed);
                if head.wrapping_add(self.one_lap) == tail {
                    return Err(value);
                }
                backoff.snooze();
                tail = self.tail.load(Relaxed);
            } else {
                // Another push moved past us, or a pop of last lap is under
                // way on this slot.
                backoff.snooze();
                tail = self.tail.load(Relaxed);
            }
        }
    }

    /// Takes the value at the head, if one is there and published. A
    /// successful pop is a SeqCst read-modify-write.
    pub fn try_pop(&self) -> TryPop<T> {
        let backoff = Backoff::new();
        let mut head = self.head.load(Relaxed);
        loop {
            let slot = &self.buffer[head & (self.one_lap - 1)];
            let stamp = slot.stamp.load(Acquire);
            if stamp == head.wrapping_add(1) {
                // Published for this lap: claim it.
                match self
                    .head
                    .compare_exchange_weak(head, self.next(head), SeqCst, Relaxed)
                {
                    Ok(_) => {
                        // SAFETY: the stamp said the push of this lap
                        // published a value (Acquire pairs with its Release
                        // store), and the CAS moved `head` past the slot:
                        // this thread alone reads it, once, before freeing
                        // the slot for the next lap below.
                        let value = slot.value.with_mut(|p| unsafe { (*p).assume_init_read() });
                        slot.stamp.store(head.wrapping_add(self.one_lap), Release);
                        return TryPop::Item(value);
                    }
                    Err(h) => head = h,
                }
            } else if stamp == head {
                // Not published for this lap: empty, or a push has claimed
                // the slot and not written it yet.
                fence(SeqCst);
                let tail = self.tail.load(Relaxed);
                return if tail == head {
                    TryPop::Empty
                } else {
                    TryPop::Busy
                };
            } else {
                // Our `head` is stale (another pop took this slot).
                backoff.snooze();
                head = self.head.load(Relaxed);
            }
        }
    }

    /// Takes the value at the head; waits out a push in progress on it
    /// (spin, then yield).
    pub fn pop(&self) -> Option<T> {
        let backoff = Backoff::new();
        loop {
            match self.try_pop() {
                TryPop::Item(v) => return Some(v),
                TryPop::Empty => return None,
                TryPop::Busy => backoff.snooze(),
            }
        }
    }

    /// Whether nothing is queued (SeqCst loads; a push in progress counts).
    pub fn is_empty(&self) -> bool {
        let head = self.head.load(SeqCst);
        let tail = self.tail.load(SeqCst);
        head == tail
    }

    /// Items queued (pushes in progress included), a snapshot.
    pub fn len(&self) -> usize {
        loop {
            let tail = self.tail.load(SeqCst);
            let head = self.head.load(SeqCst);
            if self.tail.load(SeqCst) == tail {
                let hix = head & (self.one_lap - 1);
                let tix = tail & (self.one_lap - 1);
                return if hix < tix {
                    tix - hix
                } else if hix > tix {
                    self.cap - hix + tix
                } else if tail == head {
                    0
                } else {
                    self.cap
                };
            }
        }
    }

    /// The number of slots.
    pub fn capacity(&self) -> usize {
        self.cap
    }
}

impl<T> Drop for ArrayQueue<T> {
    fn drop(&mut self) {
        // `&mut self`: no push or pop is under way, so every slot from head
        // to tail holds a published value.
        while let TryPop::Item(v) = self.try_pop() {
            drop(v);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn fifo_full_and_empty() {
        let q = ArrayQueue::new(3);
        assert!(q.is_empty());
        assert!(matches!(q.try_pop(), TryPop::Empty));
        for i in 0..3 {
            q.push(i).unwrap();
        }
        assert_eq!(q.len(), 3);
        assert_eq!(q.push(9), Err(9));
        assert_eq!(q.pop(), Some(0));
        q.push(3).unwrap();
        assert_eq!(
            (q.pop(), q.pop(), q.pop(), q.pop()),
            (Some(1), Some(2), Some(3), None)
        );
        assert!(q.is_empty());
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn wraps_many_laps_and_drops_what_is_left() {
        let q = ArrayQueue::new(5);
        for lap in 0..1000 {
            for i in 0..4 {
                q.push(Arc::new(lap * 10 + i)).unwrap();
            }
            for i in 0..3 {
                assert_eq!(*q.pop().unwrap(), lap * 10 + i);
            }
            assert_eq!(*q.pop().unwrap(), lap * 10 + 3);
        }
        let kept = Arc::new(7);
        q.push(kept.clone()).unwrap();
        q.push(kept.clone()).unwrap();
        drop(q);
        assert_eq!(
            Arc::strong_count(&kept),
            1,
            "values left in the queue are dropped"
        );
    }

    #[test]
    fn many_threads_lose_nothing_and_take_nothing_twice() {
        const PER: usize = 20_000;
        let q = Arc::new(ArrayQueue::new(64));
        let seen = Arc::new(
            (0..4 * PER)
                .map(|_| AtomicUsize::new(0))
                .collect::<Vec<_>>(),
        );
        let taken = Arc::new(AtomicUsize::new(0));
        std::thread::scope(|s| {
            for p in 0..4 {
                let q = q.clone();
                s.spawn(move || {
                    for i in 0..PER {
                        let mut v = p * PER + i;
                        while let Err(back) = q.push(v) {
                            v = back;
                            std::thread::yield_now();
                        }
                    }
                });
            }
            for _ in 0..4 {
                let (q, seen, taken) = (q.clone(), seen.clone(), taken.clone());
                s.spawn(move || {
                    while taken.load(Relaxed) < 4 * PER {
                        match q.try_pop() {
                            TryPop::Item(v) => {
                                seen[v].fetch_add(1, Relaxed);
                                taken.fetch_add(1, Relaxed);
                            }
                            TryPop::Empty | TryPop::Busy => std::thread::yield_now(),
                        }
                    }
                });
            }
        });
        assert!(seen.iter().all(|c| c.load(Relaxed) == 1));
        assert!(q.is_empty());
    }
}
