//! Object-pool experiments: get + put cycles of a 4 KiB buffer and of a small
//! struct, on one thread and on two threads sharing one pool.

use std::hint::black_box;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{count_label, Case, Column, Experiment, Quantity, Unit};
use crate::alloc;
use crate::harness::Outcome;
use crate::peers::objects::{
    ArrayQueuePool, CenoteObjects, LockfreeObjectPool, MutexVecPool, NoPool, ObjectPeer,
    ObjectPoolCrate, Opool, PoolObject, ShardedSlab,
};
use crate::peers::Impl;

pub const GETPUT: &str = "objects/getput";

/// Idle objects a bounded pool keeps (cenote's `max_idle`, the capacity of
/// the queue-based peers).
const MAX_IDLE: usize = 1024;

/// Capacity of the buffer object.
const BUF_CAPACITY: usize = 4096;

/// The object a measurement pools.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    /// A `Vec<u8>` with a capacity of 4 KiB.
    Vec4k,
    /// [`Small`], 32 bytes inline.
    Small,
}

impl ObjectKind {
    fn label(self) -> &'static str {
        match self {
            ObjectKind::Vec4k => "vec4k",
            ObjectKind::Small => "small",
        }
    }
}

/// The small object: 32 bytes, no heap part. Only `a` is touched; `b` and
/// `c` give it its size (and are reset with it).
#[allow(dead_code)]
#[derive(Clone, Debug, Default)]
pub struct Small {
    pub a: u64,
    pub b: u64,
    pub c: [u8; 16],
}

impl PoolObject for Vec<u8> {
    fn new() -> Self {
        Vec::with_capacity(BUF_CAPACITY)
    }

    #[inline]
    fn reset(&mut self) {
        self.clear();
    }

    #[inline]
    fn touch(&mut self, i: u64) {
        self.push(i as u8);
        black_box(self);
    }

    #[inline]
    fn alloc_cycle(i: u64) {
        let mut buf: Vec<u8> = Vec::with_capacity(BUF_CAPACITY);
        buf.touch(i);
    }

    fn cenote_pool(max_idle: usize) -> Result<cenote::objects::Pool<Self>, String> {
        cenote::objects::Pool::builder(|| Vec::with_capacity(BUF_CAPACITY))
            .auto_reset()
            .max_idle(max_idle)
            .build()
            .map_err(|e| e.to_string())
    }
}

impl PoolObject for Small {
    fn new() -> Self {
        Small::default()
    }

    #[inline]
    fn reset(&mut self) {
        *self = Small::default();
    }

    #[inline]
    fn touch(&mut self, i: u64) {
        self.a = i;
        black_box(self);
    }

    #[inline]
    fn alloc_cycle(i: u64) {
        let mut small = Box::new(Small::default());
        small.touch(i);
    }

    fn cenote_pool(max_idle: usize) -> Result<cenote::objects::Pool<Self>, String> {
        cenote::objects::Pool::builder(Small::default)
            .reset(|s: &mut Small| *s = Small::default())
            .max_idle(max_idle)
            .build()
            .map_err(|e| e.to_string())
    }
}

/// Parameters of the get + put measurement.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GetPutParams {
    pub object: ObjectKind,
    /// Threads sharing the pool.
    pub threads: usize,
    /// Timed cycles per thread.
    pub cycles: u64,
    /// Cycles per thread of the separate pass that counts allocations.
    pub counted_cycles: u64,
    /// Idle objects a bounded pool keeps.
    pub max_idle: usize,
}

/// All object experiments, at smoke or default size.
pub fn plan(smoke: bool) -> Vec<Experiment> {
    vec![getput(smoke)]
}

fn getput(smoke: bool) -> Experiment {
    // (object, threads, timed cycles per thread)
    let scenarios: [(ObjectKind, usize, u64); 4] = if smoke {
        [
            (ObjectKind::Vec4k, 1, 1_000),
            (ObjectKind::Vec4k, 2, 1_000),
            (ObjectKind::Small, 1, 1_000),
            (ObjectKind::Small, 2, 1_000),
        ]
    } else {
        [
            (ObjectKind::Vec4k, 1, 4_000_000),
            (ObjectKind::Vec4k, 2, 2_000_000),
            (ObjectKind::Small, 1, 4_000_000),
            (ObjectKind::Small, 2, 2_000_000),
        ]
    };
    let counted_cycles = if smoke { 1_000 } else { 100_000 };
    let mut cases = Vec::new();
    for (object, threads, cycles) in scenarios {
        let scenario = format!(
            "{}-{}/threads={threads}",
            object.label(),
            count_label(cycles)
        );
        let params = GetPutParams {
            object,
            threads,
            cycles,
            counted_cycles,
            max_idle: MAX_IDLE,
        };
        for imp in Impl::OBJECT_POOLS {
            cases.push(Case::new(&scenario, imp, &params));
        }
    }
    Experiment {
        name: GETPUT,
        title: "get + touch + put cycles of a 4 KiB Vec<u8> and of a 32-byte struct".to_owned(),
        notes: vec![
            format!(
                "cycle: get an object, touch it through black_box (vec4k: push one byte; small \
                 {{a: u64, b: u64, c: [u8; 16]}}: write a), put it back reset (vec4k: clear(), \
                 keeping its capacity; small: = Small::default()); new objects are \
                 Vec::with_capacity({BUF_CAPACITY}) / Small::default()"
            ),
            "measured region: the cycles only; every pool starts empty, so the first get \
             creates; threads=2: two threads run the cycles each on one shared pool, released \
             together by a barrier; per op = wall / cycles per thread; cpu near 2 × wall means \
             both threads ran throughout, cpu near wall that they mostly took turns (a busy \
             machine)"
                .to_owned(),
            format!(
                "cenote: objects::Pool, auto_reset() (vec4k) / reset(..) (small), \
                 max_idle({MAX_IDLE}), default thread_cache; alloc: no pool, Vec::with_capacity / Box::new per cycle, \
                 freed at its end (system allocator); object-pool: pull(new), the cycle resets \
                 before the guard returns it (no reset hook), unbounded; lockfree-object-pool: \
                 LinearObjectPool, reset closure on return, unbounded"
            ),
            format!(
                "opool: Pool::new({MAX_IDLE}, ..) (ArrayQueue), reset when an idle object is \
                 taken (its only hook); sharded-slab: Pool::create() + clear(key), Clear = reset \
                 on return, unbounded; mutex-vec-pool: std Mutex<Vec<T>>, at most {MAX_IDLE} \
                 idle, reset before the lock; arrayqueue-pool: crossbeam ArrayQueue of \
                 {MAX_IDLE}, reset before the push"
            ),
            format!(
                "allocs/cycle: heap allocations (all threads) per cycle in a separate pass of \
                 {} cycles per thread on the same, warm pool after the timed one, counted by \
                 the benchmark's global allocator",
                count_label(counted_cycles)
            ),
        ],
        headline: Quantity::PerOp,
        per_op_title: "time per get + put cycle (wall / cycles per thread)",
        columns: vec![Column {
            key: "allocs_per_cycle",
            header: "allocs/cycle",
            unit: Unit::Plain(3),
            chart: false,
        }],
        cases,
    }
}

/// Child side of [`GETPUT`].
pub fn run_getput(imp: Impl, p: &GetPutParams) -> Result<Outcome, String> {
    match p.object {
        ObjectKind::Vec4k => getput_for::<Vec<u8>>(imp, p),
        ObjectKind::Small => getput_for::<Small>(imp, p),
    }
}

fn getput_for<O: PoolObject>(imp: Impl, p: &GetPutParams) -> Result<Outcome, String> {
    match imp {
        Impl::Cenote => getput_on::<O, CenoteObjects<O>>(p),
        Impl::Alloc => getput_on::<O, NoPool<O>>(p),
        Impl::ObjectPool => getput_on::<O, ObjectPoolCrate<O>>(p),
        Impl::LockfreeObjectPool => getput_on::<O, LockfreeObjectPool<O>>(p),
        Impl::Opool => getput_on::<O, Opool<O>>(p),
        Impl::ShardedSlab => getput_on::<O, ShardedSlab<O>>(p),
        Impl::MutexVec => getput_on::<O, MutexVecPool<O>>(p),
        Impl::ArrayQueue => getput_on::<O, ArrayQueuePool<O>>(p),
        other => Err(format!("{} is not an object pool", other.name())),
    }
}

fn getput_on<O: PoolObject, P: ObjectPeer<O>>(p: &GetPutParams) -> Result<Outcome, String> {
    let threads = p.threads.max(1);
    let pool = P::build(p.max_idle)?;
    let wall = run_cycles::<O, P>(&pool, threads, p.cycles, false);
    let mut outcome = Outcome::new(wall, Some(p.cycles));
    if p.counted_cycles > 0 {
        run_cycles::<O, P>(&pool, threads, p.counted_cycles, true);
        let allocs = alloc::stop();
        let cycles = p.counted_cycles * threads as u64;
        outcome = outcome.metric("allocs_per_cycle", allocs as f64 / cycles as f64);
    }
    // Teardown is not measured (the child exits).
    std::mem::forget(pool);
    Ok(outcome)
}

/// Runs `cycles` cycles on each of `threads` threads sharing `pool` and
/// returns the wall time from their common start to the end of the last.
/// With `counting`, allocations are counted from that start on (the caller
/// stops the count with [`alloc::stop`]).
fn run_cycles<O: PoolObject, P: ObjectPeer<O>>(
    pool: &P,
    threads: usize,
    cycles: u64,
    counting: bool,
) -> Duration {
    if threads == 1 {
        if counting {
            alloc::start();
        }
        let start = Instant::now();
        for i in 0..cycles {
            pool.cycle(i);
        }
        return start.elapsed();
    }
    // Two barriers: counting starts once every thread is up (thread start-up
    // allocates) and before any of them begins its cycles.
    let ready = Barrier::new(threads + 1);
    let go = Barrier::new(threads + 1);
    thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    ready.wait();
                    go.wait();
                    for i in 0..cycles {
                        pool.cycle(i);
                    }
                })
            })
            .collect();
        ready.wait();
        if counting {
            alloc::start();
        }
        let start = Instant::now();
        go.wait();
        for worker in workers {
            if let Err(panic) = worker.join() {
                std::panic::resume_unwind(panic);
            }
        }
        start.elapsed()
    })
}
