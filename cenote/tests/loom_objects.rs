//! Loom models of the object pool's thread-cache / shared-store hand-over
//! and of cross-thread return (see `src/objects/DESIGN.md`). Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p cenote --test loom_objects --release`.
//!
//! Under loom the slot table's bucket pointers, each slot's cache cell
//! (loom's `UnsafeCell`, which reports any two accesses not ordered by
//! happens-before), the shared store, the thread registry and the
//! thread-locals (whose destructors run when a model thread ends) are all
//! loom's, so these models check the ownership rule behind the `unsafe`.
#![cfg(loom)]

use cenote::objects::Pool;
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use loom::sync::Arc;
use loom::thread;

/// An object that records that it exists and whether it is handed out.
struct Obj {
    in_use: AtomicBool,
    live: Arc<AtomicUsize>,
}

impl Drop for Obj {
    fn drop(&mut self) {
        self.live.fetch_sub(1, SeqCst);
    }
}

fn pool(max_idle: usize, thread_cache: usize) -> (Pool<Obj>, Arc<AtomicUsize>) {
    let live = Arc::new(AtomicUsize::new(0));
    let l = live.clone();
    let pool = Pool::builder(move || {
        l.fetch_add(1, SeqCst);
        Obj {
            in_use: AtomicBool::new(false),
            live: l.clone(),
        }
    })
    .max_idle(max_idle)
    .thread_cache(thread_cache)
    .build()
    .unwrap();
    (pool, live)
}

fn use_once(pool: &Pool<Obj>) {
    let g = pool.get();
    assert!(!g.in_use.swap(true, SeqCst), "handed out twice at once");
    g.in_use.store(false, SeqCst);
}

/// A guard taken on one thread is dropped on another, whose cache keeps it;
/// that thread exits, and its exit hook hands the cache to the shared store
/// while the first thread keeps using the pool. (Loom's `join` returns
/// before a thread's locals are destroyed, so the hook really runs
/// concurrently with what follows; the cells' access checks and the
/// in-use flags catch any overlap.)
#[test]
fn cross_thread_return_and_exit_hand_back() {
    loom::model(|| {
        let (pool, _live) = pool(2, 2);
        let g = pool.get_owned();
        let t = thread::spawn(move || drop(g));
        use_once(&pool);
        t.join().unwrap();
        use_once(&pool);
        use_once(&pool);
    });
}

/// The other way round: a guard taken on a spawned thread (whose slot is
/// in the table's far part; under loom only index 0 is near) is dropped on
/// the main thread while the spawned thread goes on using its own cache.
/// The main thread reads the guard's home slot's index (never its cache),
/// finds it is not its own and keeps the object in its own slot. (The
/// spawned thread empties its cache by hand, so the counts can be checked
/// after `join`, which under loom may return before its exit hook ran.)
#[test]
fn a_guard_from_a_far_slot_returns_on_the_main_thread() {
    loom::model(|| {
        let (pool, live) = pool(2, 2);
        use_once(&pool); // the main thread's slot first: index 0, near
        let (tx, rx) = loom::sync::mpsc::channel();
        let p = pool.clone();
        let t = thread::spawn(move || {
            tx.send(p.get_owned()).unwrap();
            use_once(&p);
            p.flush_thread_cache();
        });
        let g = rx.recv().unwrap();
        assert!(!g.in_use.swap(true, SeqCst), "handed out twice at once");
        g.in_use.store(false, SeqCst);
        drop(g);
        t.join().unwrap();
        use_once(&pool);
        pool.flush_thread_cache();
        let s = pool.stats();
        assert_eq!(live.load(SeqCst), s.idle, "{s:?}");
    });
}

/// The same hand-back by hand (`flush_thread_cache`), after which the
/// returned object is certainly in the shared store: nothing is lost.
#[test]
fn cross_thread_return_then_flush() {
    loom::model(|| {
        let (pool, live) = pool(2, 2);
        let g = pool.get_owned();
        let p = pool.clone();
        let t = thread::spawn(move || {
            drop(g);
            p.flush_thread_cache();
        });
        use_once(&pool);
        t.join().unwrap();
        let s = pool.stats();
        assert_eq!(live.load(SeqCst), s.idle, "{s:?}");
        let first = pool.try_get().expect("returned and flushed");
        assert!(!first.in_use.load(SeqCst));
    });
}

/// Two threads get and return at once with caches of one object and a
/// shared store of one: objects overflow from the thread caches into the
/// shared store and move between the threads through it.
#[test]
fn thread_caches_and_the_shared_store_hand_over() {
    loom::model(|| {
        let (pool, live) = pool(1, 1);
        let p = pool.clone();
        let t = thread::spawn(move || {
            let a = p.get();
            let b = p.get();
            assert!(!a.in_use.swap(true, SeqCst));
            assert!(!b.in_use.swap(true, SeqCst));
            a.in_use.store(false, SeqCst);
            b.in_use.store(false, SeqCst);
            drop((a, b));
            p.flush_thread_cache();
        });
        use_once(&pool);
        use_once(&pool);
        t.join().unwrap();
        let s = pool.stats();
        assert_eq!(live.load(SeqCst), s.idle, "{s:?}");
        assert_eq!(s.misses - s.dropped_full, s.idle as u64, "{s:?}");
    });
}

/// `trim` on one thread while another returns and takes objects: no object
/// is dropped while handed out or kept twice.
#[test]
fn trim_races_with_get_and_return() {
    loom::model(|| {
        let (pool, live) = pool(2, 1);
        drop((pool.get(), pool.get()));
        let p = pool.clone();
        let t = thread::spawn(move || {
            use_once(&p);
            p.flush_thread_cache();
        });
        pool.trim();
        pool.trim();
        t.join().unwrap();
        let s = pool.stats();
        assert_eq!(live.load(SeqCst), s.idle, "{s:?}");
    });
}
