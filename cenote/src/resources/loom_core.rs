//! Loom models of the resource pool's bookkeeping (`resources/core.rs`):
//! checkout and return racing each other, a close, a shrink, and a
//! cancelled waiter (see `src/resources/DESIGN.md`). Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p cenote --release --lib loom_`.
//!
//! Each model drives the real core the way the pool does (`get.rs`,
//! `release.rs`): take a permit, pop an idle resource or count a new one,
//! return it (`put_idle`, or `forget` when refused), give the permit back.
//! At the end nothing is counted live that is not idle, no resource was
//! lent twice at once, and every permit is back.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use super::core::{Core, Dirty, Idle, Meta, Slot};
use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use loom::thread;

fn meta(id: u64) -> Meta {
    Meta {
        id,
        created_ms: 0,
        expires_ms: u64::MAX,
        last_used_ms: 0,
        dirty: Dirty::No,
    }
}

/// A resource that knows whether it is lent (two borrowers at once would
/// find the flag already set).
struct Res {
    lent: AtomicBool,
}

struct Pool {
    core: Core<Arc<Res>>,
    next: AtomicU64,
    /// The model shrinks the pool (a getter may then create past the new
    /// bound with a permit from before; the return destroys the excess).
    shrinks: bool,
}

fn noop_waker() -> Waker {
    struct Noop;
    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }
    Waker::from(Arc::new(Noop))
}

/// One borrower: permit (blocking), resource, use, return. `false` if the
/// pool was closed before it got a permit.
fn borrow(pool: &Pool) -> bool {
    if !pool.core.wait_permit() {
        return false;
    }
    let item = match pool.core.pop_idle() {
        Some(item) => item,
        None => {
            pool.core.start_create();
            // A getter with a permit that finds nothing idle may create:
            // nothing idle was missed (in any slot), so this stays within
            // the bound (unless a shrink lowered it meanwhile).
            if !pool.shrinks {
                assert!(
                    pool.core.size() <= pool.core.max(),
                    "created past the bound: an idle resource was missed"
                );
            }
            Box::new(Slot {
                res: Arc::new(Res {
                    lent: AtomicBool::new(false),
                }),
                meta: meta(pool.next.fetch_add(1, SeqCst)),
            })
        }
    };
    assert!(!item.res.lent.swap(true, SeqCst), "lent twice at once");
    item.res.lent.store(false, SeqCst);
    for _ in pool.core.put_idle(item) {
        pool.core.forget();
    }
    pool.core.release();
    true
}

fn new_item(pool: &Pool) -> Idle<Arc<Res>> {
    Box::new(Slot {
        res: Arc::new(Res {
            lent: AtomicBool::new(false),
        }),
        meta: meta(pool.next.fetch_add(1, SeqCst)),
    })
}

fn assert_within_bound(pool: &Pool) {
    assert!(
        pool.core.size() <= pool.core.max(),
        "size {} over the bound",
        pool.core.size()
    );
}

/// A getter whose check of an idle resource stalls (`get.rs`): the
/// resource is destroyed, then a create if the count has room, else the
/// next idle resource, else a create under the empty-store rule.
fn stall_then_borrow(pool: &Pool) {
    assert!(pool.core.wait_permit());
    let stalled = pool.core.pop_idle().expect("filled");
    drop(stalled);
    pool.core.forget();
    let item = if pool.core.try_start_create() {
        new_item(pool)
    } else if let Some(item) = pool.core.pop_idle() {
        item
    } else {
        pool.core.start_create();
        new_item(pool)
    };
    assert_within_bound(pool);
    for _ in pool.core.put_idle(item) {
        pool.core.forget();
    }
    pool.core.release();
}

/// The `min_idle` refill (`maintenance.rs`): a permit, then a create if
/// the count has room.
fn refill_one(pool: &Pool) {
    if !pool.core.try_permit() {
        return;
    }
    if pool.core.try_start_create() {
        assert_within_bound(pool);
        for _ in pool.core.put_idle(new_item(pool)) {
            pool.core.forget();
        }
    }
    pool.core.release();
}

fn pool(max: usize) -> Arc<Pool> {
    Arc::new(Pool {
        core: Core::new(max, true),
        next: AtomicU64::new(0),
        shrinks: false,
    })
}

#[test]
fn two_borrowers_share_one_resource() {
    loom::model(|| {
        let p = pool(1);
        let p2 = p.clone();
        let t = thread::spawn(move || assert!(borrow(&p2)));
        assert!(borrow(&p));
        t.join().unwrap();
        assert_eq!(p.core.size(), 1, "one resource made, never two");
        assert_eq!(p.core.idle(), 1);
        assert_eq!(p.core.permits_held(), 0);
    });
}

#[test]
fn close_racing_a_borrower_leaves_nothing_counted() {
    loom::model(|| {
        let p = pool(1);
        let p2 = p.clone();
        let t = thread::spawn(move || {
            borrow(&p2);
        });
        for _ in p.core.close() {
            p.core.forget();
        }
        t.join().unwrap();
        assert_eq!(p.core.idle(), 0, "nothing enters the store after close");
        assert_eq!(p.core.size(), 0, "every resource counted gone");
    });
}

#[test]
fn a_shrink_racing_returns_ends_within_the_new_bound() {
    loom::model(|| {
        let p = Arc::new(Pool {
            core: Core::new(2, true),
            next: AtomicU64::new(0),
            shrinks: true,
        });
        let p2 = p.clone();
        let t = thread::spawn(move || assert!(borrow(&p2)));
        let p3 = p.clone();
        let u = thread::spawn(move || {
            for _ in p3.core.set_max(1).unwrap() {
                p3.core.forget();
            }
        });
        assert!(borrow(&p));
        t.join().unwrap();
        u.join().unwrap();
        assert!(p.core.size() <= 1, "size {} over the bound", p.core.size());
        assert_eq!(p.core.size(), p.core.idle());
    });
}

#[test]
fn a_stalled_check_and_the_refill_create_within_the_bound() {
    loom::model(|| {
        let p = pool(2);
        for _ in 0..2 {
            p.core.start_create();
            assert!(p.core.put_idle(new_item(&p)).is_empty());
        }
        let p2 = p.clone();
        let t = thread::spawn(move || stall_then_borrow(&p2));
        let p3 = p.clone();
        let u = thread::spawn(move || refill_one(&p3));
        assert!(borrow(&p));
        t.join().unwrap();
        u.join().unwrap();
        assert_within_bound(&p);
        assert_eq!(
            p.core.size(),
            p.core.idle(),
            "nothing counted that is not idle"
        );
        assert_eq!(p.core.permits_held(), 0);
    });
}

#[test]
fn a_cancelled_waiter_leaves_its_permit_to_the_next() {
    loom::model(|| {
        let p = pool(1);
        assert!(p.core.try_permit());
        // A waiter queues, then gives up, while the holder returns.
        let p2 = p.clone();
        let t = thread::spawn(move || {
            let mut acq = Box::pin(p2.core.acquire(0));
            let waker = noop_waker();
            let mut cx = Context::from_waker(&waker);
            match Pin::new(&mut acq).poll(&mut cx) {
                Poll::Ready(Ok(())) => p2.core.release(),
                Poll::Ready(Err(_)) => unreachable!("not closed"),
                Poll::Pending => drop(acq),
            }
        });
        p.core.release();
        t.join().unwrap();
        assert_eq!(p.core.waiting(), 0);
        assert_eq!(p.core.permits_held(), 0, "the permit came back");
        assert!(p.core.try_permit());
        p.core.release();
    });
}
