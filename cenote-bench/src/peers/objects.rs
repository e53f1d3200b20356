//! Object pools: cenote's `objects::Pool` and its peers, driven through
//! [`ObjectPeer`].
//!
//! Every peer does the same work per cycle: take an object (a fresh one from
//! [`PoolObject::new`] when the pool has none idle), [`PoolObject::touch`] it,
//! and give it back, reset with [`PoolObject::reset`] (on return where the
//! crate has a hook for it, see each peer). Bounded peers keep at most
//! `max_idle` idle objects and drop the rest.

use std::marker::PhantomData;
use std::sync::{Mutex, PoisonError};

use crossbeam_queue::ArrayQueue;

/// An object that the pools of `objects/getput` hold.
pub trait PoolObject: Send + Sync + Sized + 'static {
    /// A fresh object, as every pool's factory makes it.
    fn new() -> Self;
    /// Brings a used object back to the state of [`PoolObject::new`],
    /// keeping its allocations.
    fn reset(&mut self);
    /// The use of the object in one cycle: one small write, made visible to
    /// the optimizer through `black_box`.
    fn touch(&mut self, i: u64);
    /// One cycle without a pool: a fresh heap object, touched, freed.
    fn alloc_cycle(i: u64);
    /// A `cenote::objects::Pool` of this type keeping at most `max_idle`
    /// idle objects.
    fn cenote_pool(max_idle: usize) -> Result<cenote::objects::Pool<Self>, String>;
}

/// An object pool as the experiments drive it.
pub trait ObjectPeer<O: PoolObject>: Sync + Sized {
    /// Builds the (empty) pool.
    fn build(max_idle: usize) -> Result<Self, String>;

    /// One get + touch + put cycle.
    fn cycle(&self, i: u64);
}

/// `cenote::objects::Pool`: reset on return (`auto_reset` or `reset`, see
/// [`PoolObject::cenote_pool`]), at most `max_idle` idle objects.
pub struct CenoteObjects<O: PoolObject>(cenote::objects::Pool<O>);

impl<O: PoolObject> ObjectPeer<O> for CenoteObjects<O> {
    fn build(max_idle: usize) -> Result<Self, String> {
        O::cenote_pool(max_idle).map(CenoteObjects)
    }

    #[inline]
    fn cycle(&self, i: u64) {
        let mut obj = self.0.get();
        obj.touch(i);
    }
}

/// No pool: every cycle allocates a fresh object and frees it.
pub struct NoPool<O>(PhantomData<fn() -> O>);

impl<O: PoolObject> ObjectPeer<O> for NoPool<O> {
    fn build(_max_idle: usize) -> Result<Self, String> {
        Ok(NoPool(PhantomData))
    }

    #[inline]
    fn cycle(&self, i: u64) {
        O::alloc_cycle(i);
    }
}

/// The `object-pool` crate: `pull(fallback)`; it has no reset hook, so the
/// cycle resets the object itself before the guard returns it. Unbounded.
pub struct ObjectPoolCrate<O>(object_pool::Pool<O>);

impl<O: PoolObject> ObjectPeer<O> for ObjectPoolCrate<O> {
    fn build(_max_idle: usize) -> Result<Self, String> {
        Ok(ObjectPoolCrate(object_pool::Pool::new(0, O::new)))
    }

    #[inline]
    fn cycle(&self, i: u64) {
        let mut obj = self.0.pull(O::new);
        obj.touch(i);
        obj.reset();
    }
}

/// `lockfree_object_pool::LinearObjectPool`, the crate's fastest pool: its
/// reset closure runs on return. Grows by pages of 32 objects, unbounded.
pub struct LockfreeObjectPool<O>(lockfree_object_pool::LinearObjectPool<O>);

impl<O: PoolObject> ObjectPeer<O> for LockfreeObjectPool<O> {
    fn build(_max_idle: usize) -> Result<Self, String> {
        Ok(LockfreeObjectPool(
            lockfree_object_pool::LinearObjectPool::new(O::new, O::reset),
        ))
    }

    #[inline]
    fn cycle(&self, i: u64) {
        let mut obj = self.0.pull();
        obj.touch(i);
    }
}

/// `opool::PoolAllocator` for any [`PoolObject`].
pub struct OpoolAlloc<O>(PhantomData<fn() -> O>);

impl<O: PoolObject> opool::PoolAllocator<O> for OpoolAlloc<O> {
    #[inline]
    fn allocate(&self) -> O {
        O::new()
    }

    #[inline]
    fn reset(&self, obj: &mut O) {
        obj.reset();
    }
}

/// `opool::Pool` (a crossbeam `ArrayQueue` of `max_idle` slots): its reset
/// runs when an idle object is taken, not on return.
pub struct Opool<O: PoolObject>(opool::Pool<OpoolAlloc<O>, O>);

impl<O: PoolObject> ObjectPeer<O> for Opool<O> {
    fn build(max_idle: usize) -> Result<Self, String> {
        Ok(Opool(opool::Pool::new(max_idle, OpoolAlloc(PhantomData))))
    }

    #[inline]
    fn cycle(&self, i: u64) {
        let mut obj = self.0.get();
        obj.touch(i);
    }
}

/// An object as `sharded_slab::Pool` needs it: `Default` makes a fresh one,
/// `Clear` resets it.
pub struct SlabObject<O>(O);

impl<O: PoolObject> Default for SlabObject<O> {
    fn default() -> Self {
        SlabObject(O::new())
    }
}

impl<O: PoolObject> sharded_slab::Clear for SlabObject<O> {
    fn clear(&mut self) {
        self.0.reset();
    }
}

/// `sharded_slab::Pool`: `create()` hands out a slot, `clear(key)` returns
/// it and runs `Clear` (the reset). Unbounded.
pub struct ShardedSlab<O: PoolObject>(sharded_slab::Pool<SlabObject<O>>);

impl<O: PoolObject> ObjectPeer<O> for ShardedSlab<O> {
    fn build(_max_idle: usize) -> Result<Self, String> {
        Ok(ShardedSlab(sharded_slab::Pool::new()))
    }

    #[inline]
    fn cycle(&self, i: u64) {
        let mut obj = self.0.create().expect("sharded-slab pool is full");
        obj.0.touch(i);
        let key = obj.key();
        drop(obj);
        self.0.clear(key);
    }
}

/// A hand-rolled pool: a `std::sync::Mutex<Vec<O>>` stack of at most
/// `max_idle` idle objects; reset on return, outside the lock.
pub struct MutexVecPool<O> {
    idle: Mutex<Vec<O>>,
    max_idle: usize,
}

impl<O: PoolObject> MutexVecPool<O> {
    #[inline]
    fn get(&self) -> O {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        idle.unwrap_or_else(O::new)
    }

    #[inline]
    fn put(&self, mut obj: O) {
        obj.reset();
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.max_idle {
            idle.push(obj);
        }
    }
}

impl<O: PoolObject> ObjectPeer<O> for MutexVecPool<O> {
    fn build(max_idle: usize) -> Result<Self, String> {
        Ok(MutexVecPool {
            idle: Mutex::new(Vec::new()),
            max_idle,
        })
    }

    #[inline]
    fn cycle(&self, i: u64) {
        let mut obj = self.get();
        obj.touch(i);
        self.put(obj);
    }
}

/// A hand-rolled pool: a `crossbeam_queue::ArrayQueue<O>` of `max_idle`
/// slots; reset on return, an object that finds the queue full is dropped.
pub struct ArrayQueuePool<O>(ArrayQueue<O>);

impl<O: PoolObject> ArrayQueuePool<O> {
    #[inline]
    fn get(&self) -> O {
        self.0.pop().unwrap_or_else(O::new)
    }

    #[inline]
    fn put(&self, mut obj: O) {
        obj.reset();
        let _ = self.0.push(obj);
    }
}

impl<O: PoolObject> ObjectPeer<O> for ArrayQueuePool<O> {
    fn build(max_idle: usize) -> Result<Self, String> {
        Ok(ArrayQueuePool(ArrayQueue::new(max_idle.max(1))))
    }

    #[inline]
    fn cycle(&self, i: u64) {
        let mut obj = self.get();
        obj.touch(i);
        self.put(obj);
    }
}
