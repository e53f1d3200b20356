//! The implementations under test: cenote and its peers.
//!
//! Every worker pool is driven through [`WorkerPeer`], whose `execute` is
//! generic over the job, so each peer receives the job closure exactly as its
//! own API takes it (no extra boxing by the harness). Experiments are written
//! once as generic functions and instantiated per peer with [`with_peer!`].
//!
//! Object pools are driven through [`objects::ObjectPeer`] instead; the same
//! [`Impl`] names them, with [`Impl::Cenote`] standing for
//! `cenote::objects::Pool` there.

use std::sync::{Arc, Barrier};

use serde::{Deserialize, Serialize};

pub mod cenote;
pub mod crossbeam;
pub mod objects;
pub mod rayon;
pub mod rusty_pool;
pub mod thread_per_task;
pub mod threadpool;
pub mod tokio;

/// An implementation under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Impl {
    /// `cenote::workers::Pool`.
    Cenote,
    /// `cenote::workers::FnPool`, a pool bound to one function.
    CenoteFn,
    /// A fresh `std::thread` per task: no pool at all.
    ThreadPerTask,
    /// `threadpool::ThreadPool`.
    Threadpool,
    /// A `rayon::ThreadPool` fed with `spawn`.
    Rayon,
    /// `rusty_pool::ThreadPool`.
    RustyPool,
    /// tokio's blocking pool, fed with `Runtime::spawn_blocking`.
    Tokio,
    /// A hand-rolled pool of threads looping on a crossbeam channel.
    Crossbeam,
    /// No object pool: a fresh allocation per get, freed on put.
    Alloc,
    /// The `object-pool` crate (`Mutex<Vec<T>>` inside).
    ObjectPool,
    /// `lockfree_object_pool::LinearObjectPool`.
    LockfreeObjectPool,
    /// `opool::Pool` (a crossbeam `ArrayQueue` inside).
    Opool,
    /// `sharded_slab::Pool`.
    ShardedSlab,
    /// A hand-rolled `std::sync::Mutex<Vec<T>>` object pool.
    MutexVec,
    /// A hand-rolled `crossbeam_queue::ArrayQueue<T>` object pool.
    ArrayQueue,
    /// `tokio::spawn` per future, no bound.
    TokioSpawn,
    /// tokio's `Semaphore` (with `tokio::spawn` per future in the task
    /// experiments).
    TokioSemaphore,
    /// `futures::stream::StreamExt::buffer_unordered`.
    BufferUnordered,
    /// tokio's `JoinSet`, bounded by `join_next`.
    JoinSet,
    /// A hand-rolled `Mutex<usize>` + `Condvar` semaphore.
    MutexCondvar,
    /// `cenote::resources::Pool` with `check_bypass(0)`: a check on every
    /// checkout, as the managed peers do.
    CenoteCheckAlways,
    /// `deadpool::managed::Pool`.
    DeadpoolManaged,
    /// `deadpool::unmanaged::Pool`.
    DeadpoolUnmanaged,
    /// `bb8::Pool`.
    Bb8,
    /// `mobc::Pool`.
    Mobc,
    /// `qp::Pool`.
    Qp,
    /// `r2d2::Pool` (blocking).
    R2d2,
    /// Not a pool: a bare `tokio::sync::Semaphore` with as many permits as
    /// the pool has resources, and no resources. What any FIFO pool built
    /// on a semaphore's hand-over cannot beat under contention (a floor).
    FloorTokioSemaphore,
    /// The same floor with `cenote::limit::Semaphore`, which
    /// `cenote::resources` builds on.
    FloorCenoteSemaphore,
    /// `deadpool_postgres::Pool`.
    DeadpoolPostgres,
    /// `bb8::Pool` of `bb8_postgres::PostgresConnectionManager`.
    Bb8Postgres,
    /// `deadpool_redis::Pool`.
    DeadpoolRedis,
    /// `bb8::Pool` of `bb8_redis::RedisConnectionManager`.
    Bb8Redis,
    /// No pool: one redis `MultiplexedConnection` shared by every task.
    Multiplexed,
    /// No pool: a connection of its own per task, opened before (a floor).
    Dedicated,
    /// No pool: a new connection per request (seed 004's no-pool case).
    ConnectPerRequest,
    /// hyper-util's legacy `Client` (HTTP/1.1, its own keep-alive pool).
    HyperUtil,
    /// hyper-util's legacy `Client` behind a tokio `Semaphore` of `cap`
    /// permits held until the body is read: how a user caps it.
    HyperUtilCapped,
    /// `reqwest::Client` (HTTP/1.1 only, no TLS).
    Reqwest,
    /// redis-semaphore (npm) on Node.js: leases scored by the client's
    /// clock, acquire retried every 10 ms.
    RedisSemaphore,
    /// No semaphore: `PING` round trips (the floor of any Redis call).
    RedisPing,
    /// No semaphore: a trivial three-command Lua script per call (the
    /// ceiling of a one-script-per-call protocol on that Redis).
    LuaCeiling,
}

impl Impl {
    /// Every thread pool (everything but thread-per-task and `FnPool`).
    pub const POOLS: [Impl; 6] = [
        Impl::Cenote,
        Impl::Threadpool,
        Impl::Rayon,
        Impl::RustyPool,
        Impl::Tokio,
        Impl::Crossbeam,
    ];

    /// Every object-pool implementation, cenote (`cenote::objects::Pool`)
    /// first and no pool at all second.
    pub const OBJECT_POOLS: [Impl; 8] = [
        Impl::Cenote,
        Impl::Alloc,
        Impl::ObjectPool,
        Impl::LockfreeObjectPool,
        Impl::Opool,
        Impl::ShardedSlab,
        Impl::MutexVec,
        Impl::ArrayQueue,
    ];

    /// The name used in tables, JSON and child specs.
    pub fn name(self) -> &'static str {
        match self {
            Impl::Cenote => "cenote",
            Impl::CenoteFn => "cenote-fnpool",
            Impl::ThreadPerTask => "thread-per-task",
            Impl::Threadpool => "threadpool",
            Impl::Rayon => "rayon",
            Impl::RustyPool => "rusty_pool",
            Impl::Tokio => "tokio-spawn_blocking",
            Impl::Crossbeam => "crossbeam-pool",
            Impl::Alloc => "alloc",
            Impl::ObjectPool => "object-pool",
            Impl::LockfreeObjectPool => "lockfree-object-pool",
            Impl::Opool => "opool",
            Impl::ShardedSlab => "sharded-slab",
            Impl::MutexVec => "mutex-vec-pool",
            Impl::ArrayQueue => "arrayqueue-pool",
            Impl::TokioSpawn => "tokio-spawn",
            Impl::TokioSemaphore => "tokio-semaphore",
            Impl::BufferUnordered => "buffer-unordered",
            Impl::JoinSet => "joinset",
            Impl::MutexCondvar => "mutex-condvar",
            Impl::CenoteCheckAlways => "cenote-check-always",
            Impl::DeadpoolManaged => "deadpool",
            Impl::DeadpoolUnmanaged => "deadpool-unmanaged",
            Impl::Bb8 => "bb8",
            Impl::Mobc => "mobc",
            Impl::Qp => "qp",
            Impl::FloorTokioSemaphore => "floor-tokio-semaphore",
            Impl::FloorCenoteSemaphore => "floor-cenote-semaphore",
            Impl::R2d2 => "r2d2",
            Impl::DeadpoolPostgres => "deadpool-postgres",
            Impl::Bb8Postgres => "bb8-postgres",
            Impl::DeadpoolRedis => "deadpool-redis",
            Impl::Bb8Redis => "bb8-redis",
            Impl::Multiplexed => "multiplexed",
            Impl::Dedicated => "dedicated",
            Impl::ConnectPerRequest => "connect-per-request",
            Impl::HyperUtil => "hyper-util",
            Impl::HyperUtilCapped => "hyper-util-capped",
            Impl::Reqwest => "reqwest",
            Impl::RedisSemaphore => "redis-semaphore",
            Impl::RedisPing => "redis-ping",
            Impl::LuaCeiling => "lua-ceiling",
        }
    }

    /// The implementation called `name`.
    pub fn from_name(name: &str) -> Option<Impl> {
        const ALL: [Impl; 42] = [
            Impl::Cenote,
            Impl::CenoteFn,
            Impl::ThreadPerTask,
            Impl::Threadpool,
            Impl::Rayon,
            Impl::RustyPool,
            Impl::Tokio,
            Impl::Crossbeam,
            Impl::Alloc,
            Impl::ObjectPool,
            Impl::LockfreeObjectPool,
            Impl::Opool,
            Impl::ShardedSlab,
            Impl::MutexVec,
            Impl::ArrayQueue,
            Impl::TokioSpawn,
            Impl::TokioSemaphore,
            Impl::BufferUnordered,
            Impl::JoinSet,
            Impl::MutexCondvar,
            Impl::CenoteCheckAlways,
            Impl::DeadpoolManaged,
            Impl::DeadpoolUnmanaged,
            Impl::Bb8,
            Impl::Mobc,
            Impl::Qp,
            Impl::R2d2,
            Impl::FloorTokioSemaphore,
            Impl::FloorCenoteSemaphore,
            Impl::DeadpoolPostgres,
            Impl::Bb8Postgres,
            Impl::DeadpoolRedis,
            Impl::Bb8Redis,
            Impl::Multiplexed,
            Impl::Dedicated,
            Impl::ConnectPerRequest,
            Impl::HyperUtil,
            Impl::HyperUtilCapped,
            Impl::Reqwest,
            Impl::RedisSemaphore,
            Impl::RedisPing,
            Impl::LuaCeiling,
        ];
        ALL.into_iter().find(|i| i.name() == name)
    }
}

/// How to build a pool.
#[derive(Clone, Copy, Debug, Default)]
pub struct PoolCfg {
    /// Worker threads: the fixed size, or the cap of an on-demand pool.
    pub size: usize,
    /// Stack size of every worker thread, where the API allows one.
    pub stack_size: Option<usize>,
    /// Start all `size` threads up front, where the API has such a switch
    /// (cenote's `prestart`); other pools are warmed up by
    /// [`WorkerPeer::start_all`].
    pub prestart: bool,
    /// Never retire idle threads, where the API has such a switch (cenote's
    /// `idle_timeout(None)`).
    pub keep_idle: bool,
}

/// A worker pool as the experiments drive it.
pub trait WorkerPeer: Sized {
    /// Builds the pool.
    fn build(cfg: &PoolCfg) -> Result<Self, String>;

    /// Hands `job` to the pool, to run on one of its threads.
    fn execute<F>(&self, job: F) -> Result<(), String>
    where
        F: FnOnce() + Send + 'static;

    /// Makes sure that `n` worker threads exist, and returns once they are
    /// all idle again. By default, `n` jobs meet at a barrier, so that `n`
    /// threads have to run at the same time.
    fn start_all(&self, n: usize) -> Result<(), String> {
        start_all_with_barrier(self, n)
    }
}

/// Runs `n` jobs that all wait for each other (and for the caller), which a
/// pool can only complete with `n` threads alive at once; returns when the
/// jobs have finished.
pub fn start_all_with_barrier<P: WorkerPeer>(pool: &P, n: usize) -> Result<(), String> {
    let meet = Arc::new(Barrier::new(n + 1));
    let done = Arc::new(Barrier::new(n + 1));
    for _ in 0..n {
        let meet = Arc::clone(&meet);
        let done = Arc::clone(&done);
        pool.execute(move || {
            meet.wait();
            done.wait();
        })?;
    }
    meet.wait();
    done.wait();
    Ok(())
}

/// Instantiates `$body` for the [`WorkerPeer`] type of `$imp`, bound to the
/// type alias `$P`. `$body` must evaluate to `Result<_, String>`.
#[macro_export]
macro_rules! with_peer {
    ($imp:expr, $P:ident => $body:expr) => {{
        use $crate::peers::Impl;
        match $imp {
            Impl::Cenote => {
                type $P = $crate::peers::cenote::CenotePeer;
                $body
            }
            Impl::ThreadPerTask => {
                type $P = $crate::peers::thread_per_task::ThreadPerTask;
                $body
            }
            Impl::Threadpool => {
                type $P = $crate::peers::threadpool::ThreadpoolPeer;
                $body
            }
            Impl::Rayon => {
                type $P = $crate::peers::rayon::RayonPeer;
                $body
            }
            Impl::RustyPool => {
                type $P = $crate::peers::rusty_pool::RustyPoolPeer;
                $body
            }
            Impl::Tokio => {
                type $P = $crate::peers::tokio::TokioBlockingPeer;
                $body
            }
            Impl::Crossbeam => {
                type $P = $crate::peers::crossbeam::CrossbeamPool;
                $body
            }
            other @ (Impl::CenoteFn
            | Impl::Alloc
            | Impl::ObjectPool
            | Impl::LockfreeObjectPool
            | Impl::Opool
            | Impl::ShardedSlab
            | Impl::MutexVec
            | Impl::ArrayQueue
            | Impl::TokioSpawn
            | Impl::TokioSemaphore
            | Impl::BufferUnordered
            | Impl::JoinSet
            | Impl::MutexCondvar
            | Impl::CenoteCheckAlways
            | Impl::DeadpoolManaged
            | Impl::DeadpoolUnmanaged
            | Impl::Bb8
            | Impl::Mobc
            | Impl::Qp
            | Impl::R2d2
            | Impl::FloorTokioSemaphore
            | Impl::FloorCenoteSemaphore
            | Impl::DeadpoolPostgres
            | Impl::Bb8Postgres
            | Impl::DeadpoolRedis
            | Impl::Bb8Redis
            | Impl::Multiplexed
            | Impl::Dedicated
            | Impl::ConnectPerRequest
            | Impl::HyperUtil
            | Impl::HyperUtilCapped
            | Impl::Reqwest
            | Impl::RedisSemaphore
            | Impl::RedisPing
            | Impl::LuaCeiling) => Err(format!("{} is not a general worker pool", other.name())),
        }
    }};
}
