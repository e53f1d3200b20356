//! One finished cell per thread, kept for the thread's next eager spawn of
//! the same future type: a future that finishes in its first poll then
//! costs no `malloc` and `free` (about 8% of such a spawn) and finds its
//! cell in cache. Only a cell nobody else references, whose future is gone
//! and whose pool reference was never counted, is kept; it belongs to no
//! pool, and the thread frees it when it exits.

use std::any::TypeId;
use std::future::Future;
use std::ptr::NonNull;
use std::sync::Arc;

use super::cell::Cell;
use super::recycle::Recyclable;

struct Spare {
    ty: TypeId,
    cell: NonNull<()>,
    destroy: unsafe fn(NonNull<()>),
}

struct Slot(std::cell::Cell<Option<Spare>>);

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(s) = self.0.take() {
            // SAFETY: the slot owned it; its type's own `destroy`.
            unsafe { (s.destroy)(s.cell) }
        }
    }
}

thread_local! {
    static SPARE: Slot = const { Slot(std::cell::Cell::new(None)) };
}

/// # Safety
/// `cell` came from `Arc::<Cell<F>>::into_raw` and is owned.
unsafe fn destroy<F>(cell: NonNull<()>)
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    // SAFETY: per the caller.
    unsafe { <Cell<F> as Recyclable>::destroy(cell.cast()) }
}

/// Keeps `cell` (unshared, DONE, future dropped, pool uncounted) if
/// the thread's slot is free; otherwise it is freed.
#[inline]
pub(super) fn keep<F>(cell: Arc<Cell<F>>)
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    debug_assert!(Arc::strong_count(&cell) == 1);
    let cell = Arc::into_raw(cell);
    let spare = Spare {
        ty: TypeId::of::<F>(),
        // SAFETY: `Arc::into_raw` never returns null.
        cell: unsafe { NonNull::new_unchecked(cell.cast_mut().cast()) },
        destroy: destroy::<F>,
    };
    let refused = SPARE
        .try_with(|slot| match slot.0.take() {
            None => {
                slot.0.set(Some(spare));
                None
            }
            Some(other) => {
                slot.0.set(Some(other));
                Some(cell)
            }
        })
        .unwrap_or(Some(cell));
    if let Some(cell) = refused {
        // SAFETY: from `Arc::into_raw` above, not kept.
        drop(unsafe { Arc::from_raw(cell) });
    }
}

/// The thread's spare cell, if it is of type `Cell<F>`: owned, its old
/// fields holding nothing to drop.
#[inline]
pub(super) fn take<F>() -> Option<NonNull<Cell<F>>>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    SPARE
        .try_with(|slot| match slot.0.take() {
            Some(s) if s.ty == TypeId::of::<F>() => Some(s.cell.cast()),
            other => {
                slot.0.set(other);
                None
            }
        })
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn trivial(n: u64) -> u64 {
        n + 1
    }

    /// Whether this thread's spare cell is a `Cell<F>` (freed if so).
    fn spare_is<F>(_: &F) -> bool
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match take::<F>() {
            Some(cell) => {
                // SAFETY: taken, so owned.
                unsafe { <Cell<F> as Recyclable>::destroy(cell) };
                true
            }
            None => false,
        }
    }

    #[test]
    fn an_eagerly_finished_cell_serves_the_threads_next_spawn() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let pool = crate::tasks::Pool::builder()
                .capacity(4)
                .eager_limit(std::time::Duration::MAX)
                .build()
                .unwrap();
            let probe = trivial(0);
            assert!(!spare_is(&probe), "nothing kept yet");
            // From a task of the runtime, so the first poll is eager.
            let pool2 = pool.clone();
            tokio::spawn(async move {
                for n in 0..3 {
                    let h = pool2.spawn(trivial(n)).await.unwrap();
                    assert!(h.is_finished());
                    assert_eq!(h.await.unwrap(), n + 1);
                    assert!(spare_is(&trivial(0)), "the finished cell is kept");
                }
                // A kept cell is reused, and results stay right.
                for n in 0..100 {
                    assert_eq!(pool2.spawn(trivial(n)).await.unwrap().await.unwrap(), n + 1);
                }
                assert!(spare_is(&trivial(0)));
                assert!(!spare_is(&trivial(0)), "one cell per thread");
            })
            .await
            .unwrap();
            drop(probe);
        });
    }
}
