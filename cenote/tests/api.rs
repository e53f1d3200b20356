//! The public API's shape: which types are `Send`, `Sync` and `Unpin` (and
//! which are not, on purpose), that every public type is `Debug`, and that
//! every pool answers a control call after `close` the same way.
//!
//! The auto-trait assertions are compile-time: a change that makes a type
//! lose (or gain) `Send`, `Sync` or `Unpin` fails this file's build.

use std::fmt::Debug;
use std::time::Duration;

use cenote::{limit, objects, resources, tasks, workers};

/// Compiles only if `T` implements the trait.
macro_rules! assert_impl {
    ($t:ty: $($tr:path),+) => {
        const _: fn() = || {
            fn check<T: ?Sized $(+ $tr)+>() {}
            check::<$t>();
        };
    };
}

/// Compiles only if `T` does not implement the trait: with the trait, the
/// call below has two candidate impls and is ambiguous.
macro_rules! assert_not_impl {
    ($t:ty: $tr:path) => {
        const _: fn() = || {
            trait AmbiguousIfImpl<A> {
                fn some_item() {}
            }
            impl<T: ?Sized> AmbiguousIfImpl<()> for T {}
            #[allow(dead_code)]
            struct Invalid;
            impl<T: ?Sized + $tr> AmbiguousIfImpl<Invalid> for T {}
            let _ = <$t as AmbiguousIfImpl<_>>::some_item;
        };
    };
}

/// `Send + Sync + Unpin + Debug`: what a handle shared across threads is.
macro_rules! shared {
    ($($t:ty),+ $(,)?) => { $(assert_impl!($t: Send, Sync, Unpin, Debug);)+ };
}

/// A manager for the resource pool's types.
#[derive(Debug)]
struct Mgr;

impl resources::Manager for Mgr {
    type Resource = u32;
    type Error = std::io::Error;
    async fn create(&self) -> Result<u32, std::io::Error> {
        Ok(7)
    }
}

type V = Vec<u8>;

// ----- limit ---------------------------------------------------------------
shared!(
    limit::Semaphore,
    limit::Permit<'static>,
    limit::OwnedPermit,
    limit::AcquireError,
    limit::TryAcquireError,
    limit::TooManyPermits,
    limit::ResizeError,
    limit::MonitorError,
);
// An acquire future keeps its waiter in a heap node of its own, so it
// may move between polls.
shared!(limit::Acquire<'static>, limit::AcquireOwned);
assert_impl!(limit::Monitor: Send, Debug);

// ----- objects -------------------------------------------------------------
shared!(
    objects::Pool<V>,
    objects::Pooled<'static, V>,
    objects::OwnedPooled<V>,
    objects::Builder<V>,
    objects::BuildError,
    objects::Stats,
);

// ----- workers -------------------------------------------------------------
shared!(
    workers::Pool,
    workers::MultiPool,
    workers::FnPool<u32>,
    workers::Builder,
    workers::Policy,
    workers::Balance,
    workers::Stats,
    workers::BuildError,
    workers::SubmitError,
    workers::ResizeError,
    workers::ShutdownError,
    workers::GlobalError,
);
// A join handle carries the task's result (and a panic's payload, which is
// `Send` but not `Sync`).
assert_impl!(workers::JoinHandle<u32>: Send, Sync, Unpin, Debug);
assert_impl!(workers::JoinError: Send, Debug);
assert_not_impl!(workers::JoinError: Sync);
assert_impl!(workers::ScopedJoinHandle<'static, u32>: Send, Sync, Unpin, Debug);
assert_impl!(workers::Scope<'static, 'static>: Send, Sync, Debug);

// ----- tasks ---------------------------------------------------------------
shared!(
    tasks::Pool,
    tasks::Builder,
    tasks::WhenFull,
    tasks::Stats,
    tasks::BuildError,
    tasks::SpawnError,
    tasks::ResizeError,
    tasks::ShutdownError,
    tasks::JoinHandle<u32>,
);
// The spawn future holds the spawned future: it is as `Send` as that is.
assert_impl!(tasks::Spawn<'static, std::future::Ready<u32>>: Send, Unpin, Debug);
assert_impl!(tasks::JoinError: Send, Debug);
assert_not_impl!(tasks::JoinError: Sync);

// ----- resources -----------------------------------------------------------
shared!(
    resources::Pool<Mgr>,
    resources::Builder<Mgr>,
    resources::Request<'static, Mgr>,
    resources::Pooled<Mgr>,
    resources::Stats,
    resources::DestroyReason,
    resources::ResourceInfo,
    resources::LeakReport,
    resources::QueueOrder,
    resources::GetError<std::io::Error>,
    resources::BuildError<std::io::Error>,
    resources::ResizeError,
    resources::ShutdownError,
);

/// After `close`, a resize is refused with `Closed` in every pool, and the
/// size stays what it was.
#[test]
fn a_closed_pool_refuses_to_resize_in_every_module() {
    let sem = limit::Semaphore::new(2);
    sem.close();
    assert_eq!(sem.resize(5), Err(limit::ResizeError::Closed));
    assert_eq!(sem.permits(), 2);

    let pool = workers::Pool::new(2).unwrap();
    pool.close();
    assert_eq!(pool.resize(5), Err(workers::ResizeError::Closed));
    assert_eq!(pool.target_capacity(), 2);
    pool.reboot();
    assert_eq!(pool.resize(5), Ok(()));

    let multi = workers::MultiPool::new(
        2,
        workers::Pool::builder().capacity(2),
        workers::Balance::RoundRobin,
    )
    .unwrap();
    multi.pools()[1].close();
    assert_eq!(multi.resize(5), Err(workers::ResizeError::Closed));
    assert!(multi.pools().iter().all(|p| p.target_capacity() == 2));

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let pool = tasks::Pool::new(2).unwrap();
        pool.close();
        assert_eq!(pool.resize(5), Err(tasks::ResizeError::Closed));
        assert_eq!(pool.capacity(), 2);

        let pool = resources::Pool::builder(Mgr).capacity(2).build().unwrap();
        pool.close();
        assert_eq!(pool.resize(5), Err(resources::ResizeError::Closed));
        assert_eq!(pool.capacity(), 2);
        assert_eq!(pool.shutdown_timeout(Duration::from_secs(1)).await, Ok(()));
    });
}

/// A cause travels as the error's `source`, not only in its message.
#[test]
fn a_get_that_times_out_carries_the_last_create_error_as_its_source() {
    #[derive(Debug)]
    struct Down;
    impl resources::Manager for Down {
        type Resource = ();
        type Error = std::io::Error;
        async fn create(&self) -> Result<(), std::io::Error> {
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "server down",
            ))
        }
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let pool = resources::Pool::builder(Down)
            .capacity(1)
            .acquire_timeout(Duration::from_millis(100))
            .build()
            .unwrap();
        let err = pool.get().await.unwrap_err();
        assert!(
            matches!(err, resources::GetError::TimedOut { .. }),
            "{err:?}"
        );
        let source = std::error::Error::source(&err).expect("a source");
        assert_eq!(source.to_string(), "server down");
        assert_eq!(
            err.cause().map(|e| e.kind()),
            Some(std::io::ErrorKind::ConnectionRefused)
        );
    });
}
