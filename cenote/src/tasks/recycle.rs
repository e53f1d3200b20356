//! Finished cells kept for reuse by the pool's next spawns.
//!
//! Why: glibc gives each thread its own arena, and a chunk freed on any
//! thread goes back to the arena it came from, reusable only by that
//! arena's threads. A spawner task moves between the runtime's workers (a
//! lane's release wakes it where that lane runs), so cells get allocated
//! from every worker's arena, and each arena grows towards the pool's peak
//! in flight: measured with `cenote-bench tasks`, 100k × 30 ms at 10,000 in
//! flight peaked at 11.4 MiB against 8.8 MiB with `MALLOC_ARENA_MAX=1`.
//! Here a finished cell goes back to its pool, whatever the thread, and the
//! next spawn of the same future type takes it: the pool allocates about
//! its peak in flight, once.
//!
//! A free list is a stack linked through the dead cells themselves (no
//! memory of its own), behind a mutex: a spawn that finds one pops under
//! the lock, a finishing cell pushes under it, and both are a few
//! nanoseconds uncontended. `len` mirrors the stack's length so that a
//! spawn finding the list empty does not take the lock. One list per future
//! type (a cell's layout is its future's), for the first [`CLASSES`] types
//! the pool sees; other types allocate as before. A list holds at most the
//! pool's capacity; the cells are freed with the pool.

use std::any::TypeId;
use std::ptr::NonNull;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::OnceLock;

use parking_lot::Mutex;

/// Future types with a free list, per pool.
pub(crate) const CLASSES: usize = 4;

/// A cell that can wait in a free list.
///
/// # Safety
/// `link` must return a word of the cell that nobody else reads or writes
/// while the cell is in a free list, and `destroy` must free a cell given
/// to [`Recycler::put`] (whose ownership the pointer carries).
pub(crate) unsafe trait Recyclable: 'static {
    /// The word that links a free cell to the next.
    fn link(&self) -> &AtomicUsize;

    /// Frees a cell taken out of a free list.
    ///
    /// # Safety
    /// `cell` is owned by the caller and used by nobody again.
    unsafe fn destroy(cell: NonNull<Self>);
}

/// The free lists of one pool.
pub(crate) struct Recycler {
    classes: [Class; CLASSES],
}

struct Class {
    /// The future type this list is for, and how to free its cells; set
    /// once, by the first cell put here.
    kind: OnceLock<Kind>,
    /// The stack's length, written under the lock, read without it.
    len: AtomicUsize,
    stack: Mutex<Stack>,
}

struct Kind {
    ty: TypeId,
    /// `Recyclable::link` and `destroy` of the type, type-erased.
    next: unsafe fn(NonNull<()>) -> usize,
    destroy: unsafe fn(NonNull<()>),
}

struct Stack {
    /// The top cell's address, 0 when empty.
    head: usize,
}

// SAFETY: the stack owns the cells it links (they are `Send`: only cells
// of `Send` futures and outputs are put here), and it is only reached
// through its mutex.
unsafe impl Send for Stack {}

/// Reads the link of an erased cell of type `C`.
///
/// # Safety
/// `cell` is a live `C` in a free list.
unsafe fn next_of<C: Recyclable>(cell: NonNull<()>) -> usize {
    // SAFETY: per the caller.
    unsafe { cell.cast::<C>().as_ref() }.link().load(Relaxed)
}

/// Frees an erased cell of type `C`.
///
/// # Safety
/// As for [`Recyclable::destroy`].
unsafe fn destroy_erased<C: Recyclable>(cell: NonNull<()>) {
    // SAFETY: per the caller.
    unsafe { C::destroy(cell.cast::<C>()) }
}

impl Recycler {
    pub(crate) fn new() -> Self {
        Recycler {
            classes: std::array::from_fn(|_| Class {
                kind: OnceLock::new(),
                len: AtomicUsize::new(0),
                stack: Mutex::new(Stack { head: 0 }),
            }),
        }
    }

    /// The list of type `C`, claiming a free class for it when `claim`.
    fn class<C: Recyclable>(&self, claim: bool) -> Option<&Class> {
        let ty = TypeId::of::<C>();
        for class in &self.classes {
            match class.kind.get() {
                Some(kind) if kind.ty == ty => return Some(class),
                Some(_) => continue,
                None if !claim => return None,
                None => {
                    let kind = class.kind.get_or_init(|| Kind {
                        ty,
                        next: next_of::<C>,
                        destroy: destroy_erased::<C>,
                    });
                    if kind.ty == ty {
                        return Some(class);
                    }
                }
            }
        }
        None
    }

    /// A free cell of type `C`, if the list has one. Its fields are as the
    /// cell left them when put, except its link.
    #[inline]
    pub(crate) fn take<C: Recyclable>(&self) -> Option<NonNull<C>> {
        let class = self.class::<C>(false)?;
        if class.len.load(Relaxed) == 0 {
            return None;
        }
        let mut stack = class.stack.lock();
        let top = NonNull::new(stack.head as *mut C)?;
        // SAFETY: `top` is in the list (we hold its lock), so it is live
        // and only the list touches its link.
        stack.head = unsafe { top.as_ref() }.link().load(Relaxed);
        class.len.store(class.len.load(Relaxed) - 1, Relaxed);
        Some(top)
    }

    /// Keeps `cell` for reuse if its list holds fewer than `limit`;
    /// otherwise (or when no list is left for its type) gives it back.
    ///
    /// # Safety
    /// The caller owns `cell`, which nobody else can reach, and whose
    /// future and result are gone.
    pub(crate) unsafe fn put<C: Recyclable>(
        &self,
        cell: NonNull<C>,
        limit: usize,
    ) -> Result<(), NonNull<C>> {
        let Some(class) = self.class::<C>(true) else {
            return Err(cell);
        };
        if class.len.load(Relaxed) >= limit {
            return Err(cell);
        }
        let mut stack = class.stack.lock();
        // SAFETY: ours (see above); the mutex orders this write before the
        // reads of whoever pops it.
        unsafe { cell.as_ref() }.link().store(stack.head, Relaxed);
        stack.head = cell.as_ptr() as usize;
        class.len.store(class.len.load(Relaxed) + 1, Relaxed);
        Ok(())
    }

    /// Cells kept, over all lists.
    #[cfg(test)]
    pub(crate) fn kept(&self) -> usize {
        self.classes.iter().map(|c| c.len.load(Relaxed)).sum()
    }
}

impl Drop for Recycler {
    fn drop(&mut self) {
        for class in &mut self.classes {
            let Some(kind) = class.kind.get() else {
                continue;
            };
            let mut head = class.stack.get_mut().head;
            while let Some(cell) = NonNull::new(head as *mut ()) {
                // SAFETY: `cell` is in the list, of the list's type, and
                // the list owns it; its link is read before it is freed.
                unsafe {
                    head = (kind.next)(cell);
                    (kind.destroy)(cell);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    static DESTROYED: AtomicUsize = AtomicUsize::new(0);

    struct Dummy {
        id: usize,
        link: AtomicUsize,
    }

    // SAFETY: `link` is only used by the list; `destroy` frees a `Box`.
    unsafe impl Recyclable for Dummy {
        fn link(&self) -> &AtomicUsize {
            &self.link
        }
        unsafe fn destroy(cell: NonNull<Self>) {
            DESTROYED.fetch_add(1, Relaxed);
            // SAFETY: made by `Box::into_raw` below.
            drop(unsafe { Box::from_raw(cell.as_ptr()) });
        }
    }

    struct Other(AtomicUsize);

    // SAFETY: as above.
    unsafe impl Recyclable for Other {
        fn link(&self) -> &AtomicUsize {
            &self.0
        }
        unsafe fn destroy(cell: NonNull<Self>) {
            // SAFETY: made by `Box::into_raw` below.
            drop(unsafe { Box::from_raw(cell.as_ptr()) });
        }
    }

    fn dummy(id: usize) -> NonNull<Dummy> {
        NonNull::from(Box::leak(Box::new(Dummy {
            id,
            link: AtomicUsize::new(0),
        })))
    }

    #[test]
    fn keeps_up_to_the_limit_hands_back_lifo_and_frees_the_rest_on_drop() {
        let before = DESTROYED.load(Relaxed);
        let r = Recycler::new();
        assert!(r.take::<Dummy>().is_none(), "empty at first");
        for id in 0..3 {
            // SAFETY: fresh and ours.
            assert!(unsafe { r.put(dummy(id), 3) }.is_ok());
        }
        let refused = dummy(99);
        // SAFETY: as above.
        let back = unsafe { r.put(refused, 3) }.expect_err("over the limit");
        // SAFETY: refused, so still ours.
        unsafe { Dummy::destroy(back) };
        assert_eq!(r.kept(), 3);
        let top = r.take::<Dummy>().expect("kept");
        // SAFETY: taken, so ours.
        assert_eq!(unsafe { top.as_ref() }.id, 2, "last in, first out");
        // SAFETY: as above.
        unsafe { Dummy::destroy(top) };
        assert!(r.take::<Other>().is_none(), "another type has its own list");
        assert_eq!(r.kept(), 2);
        drop(r);
        assert_eq!(DESTROYED.load(Relaxed) - before, 4, "every cell freed once");
    }

    #[test]
    fn types_beyond_the_classes_are_refused() {
        let r = Recycler::new();
        // Claim every class, one type each.
        fn claim<T: Recyclable>(r: &Recycler) {
            assert!(r.class::<T>(true).is_some());
        }
        struct A;
        struct B;
        struct C;
        struct D;
        macro_rules! recyclable {
            ($($t:ident),*) => {$(
                // SAFETY: never put in a list (only classes are claimed).
                unsafe impl Recyclable for $t {
                    fn link(&self) -> &AtomicUsize {
                        unreachable!()
                    }
                    unsafe fn destroy(_: NonNull<Self>) {}
                }
            )*};
        }
        recyclable!(A, B, C, D);
        claim::<A>(&r);
        claim::<B>(&r);
        claim::<C>(&r);
        claim::<D>(&r);
        let cell = NonNull::from(Box::leak(Box::new(Other(AtomicUsize::new(0)))));
        // SAFETY: fresh and ours.
        let back = unsafe { r.put(cell, 10) }.expect_err("no class left");
        // SAFETY: refused, so ours.
        unsafe { Other::destroy(back) };
        assert!(r.class::<A>(false).is_some(), "claimed classes stay");
    }
}
