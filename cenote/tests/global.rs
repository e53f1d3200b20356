//! The process-wide default pool (its own test binary: it is global state).
#![cfg(not(loom))]

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use cenote::workers::{self, configure_global, BuildError, GlobalError, Pool};

#[test]
fn the_default_pool_is_configured_once_and_used_by_the_free_functions() {
    assert_eq!(
        configure_global(Pool::builder().capacity(0)).unwrap_err(),
        GlobalError::Build(BuildError::ZeroCapacity),
        "an invalid configuration is refused and leaves the pool unset"
    );
    let pool = configure_global(Pool::builder().capacity(3).thread_name("app")).unwrap();
    assert_eq!(pool.capacity(), 3);
    let err = configure_global(Pool::builder()).unwrap_err();
    assert_eq!(err, GlobalError::AlreadyInitialized);
    assert!(err.to_string().contains("once"));

    let n = Arc::new(AtomicUsize::new(0));
    for _ in 0..100 {
        let n = n.clone();
        workers::submit(move || {
            n.fetch_add(1, SeqCst);
        })
        .unwrap();
    }
    let name = workers::spawn(|| std::thread::current().name().map(str::to_owned))
        .unwrap()
        .join()
        .unwrap();
    assert!(name.unwrap().starts_with("app-"));
    workers::global().wait_idle();
    assert_eq!(n.load(SeqCst), 100);
    workers::try_submit(|| {}).unwrap();
    workers::submit_timeout(|| {}, std::time::Duration::from_secs(5)).unwrap();
    assert!(std::ptr::eq(workers::global(), pool));
}
