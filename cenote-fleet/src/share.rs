//! Local-share mode (Doorman's idea, the way past one key's throughput):
//! the process leases blocks of permits from the fleet semaphore and
//! serves its own acquires from cenote's in-process FIFO semaphore, with
//! no round trip.
//!
//! - **k follows demand.** A local acquire that finds no local permit
//!   free waits in the local queue and asks the fleet for one block (one
//!   request at a time) of as many permits as callers wait, at most
//!   `max_block`; more blocks follow while callers still wait.
//! - **Unused blocks go back.** Every `idle / 2` a block whose permits
//!   have all been free for `idle` is taken out of the local semaphore and
//!   released.
//! - **The sum of blocks never exceeds the cap**: each block is a fleet
//!   lease, counted by Redis like any other.
//! - **Fair between processes**: blocks are granted in the fleet's FIFO
//!   queue, no process holds more than it uses for longer than `idle`,
//!   and a block is held at most `ROTATE_AFTER` × `idle`: then it is
//!   retired (the local semaphore shrinks by its size, lent permits
//!   finish), given back, and asked for again, if still needed, at the
//!   back of the queue behind the other processes' requests.
//! - **A lost block** (its lease lost: Redis unreachable for a TTL, or a
//!   loss) shrinks the local semaphore by its size, and every local permit
//!   held then is told: `is_valid()` turns false and `lost()` completes,
//!   as the block's holders cannot be told apart.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use cenote::limit::{OwnedPermit, Semaphore as Local};
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::error::Error;
use crate::lease::Lease;
use crate::semaphore::Semaphore;

/// A process's share of a fleet semaphore, served locally; from
/// [`Semaphore::local_share`]. Cloning gives another handle to the same
/// share. Dropping the last one gives every block back.
#[derive(Clone, Debug)]
pub struct LocalShare {
    inner: Arc<Share>,
}

/// How many idle periods a block is held at most before it is rotated.
const ROTATE_AFTER: u32 = 8;

#[derive(Debug)]
struct Share {
    fleet: Semaphore,
    local: Arc<Local>,
    blocks: Mutex<Vec<Block>>,
    /// Blocks rotated out: given back once the local semaphore's shrink is
    /// paid (every permit lent beyond the remaining blocks returned).
    retiring: Mutex<Vec<Block>>,
    max_block: u64,
    idle: Duration,
    /// A block request is under way.
    growing: AtomicBool,
    /// When a local acquire last found nothing free (ms since `base`).
    short_ms: AtomicU64,
    base: Instant,
    /// Bumped when a block is lost: permits granted before are void.
    generation: watch::Sender<u64>,
    /// The highest fencing token among the blocks.
    token: AtomicU64,
}

#[derive(Debug)]
struct Block {
    lease: Lease,
    since: Instant,
}

/// A permit of a [`LocalShare`], held until dropped.
#[derive(Debug)]
#[must_use = "a LocalPermit is released as soon as it is dropped"]
pub struct LocalPermit {
    _permit: OwnedPermit,
    share: Arc<Share>,
    generation: u64,
    token: u64,
}

impl LocalPermit {
    /// The highest fencing token among the process's blocks when this
    /// permit was granted.
    pub fn token(&self) -> u64 {
        self.token
    }

    /// Whether no block of the share was lost since this permit was
    /// granted.
    pub fn is_valid(&self) -> bool {
        *self.share.generation.borrow() == self.generation
    }

    /// Completes when a block of the share is lost (the work this permit
    /// guards must stop).
    pub fn lost(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.share.generation.subscribe();
        let mine = self.generation;
        async move {
            let _ = rx.wait_for(|g| *g != mine).await;
        }
    }
}

impl LocalShare {
    pub(crate) fn start(
        fleet: Semaphore,
        max_block: u64,
        idle: Duration,
    ) -> Result<LocalShare, Error> {
        if max_block == 0 || max_block > fleet.cap() {
            return Err(Error::TooMany {
                asked: max_block,
                cap: fleet.cap(),
            });
        }
        if idle.is_zero() {
            return Err(Error::Config(
                "the local share's idle timeout must be above zero",
            ));
        }
        let inner = Arc::new(Share {
            fleet,
            local: Arc::new(Local::new(0)),
            blocks: Mutex::new(Vec::new()),
            retiring: Mutex::new(Vec::new()),
            max_block,
            idle,
            growing: AtomicBool::new(false),
            short_ms: AtomicU64::new(0),
            base: Instant::now(),
            generation: watch::channel(0).0,
            token: AtomicU64::new(0),
        });
        inner
            .fleet
            .shared
            .rt
            .spawn(give_back_idle(Arc::downgrade(&inner)));
        Ok(LocalShare { inner })
    }

    /// One permit: a local one at once if free, else in the local FIFO
    /// queue while a block is asked of the fleet; at most the fleet
    /// semaphore's acquire timeout.
    pub async fn acquire(&self) -> Result<LocalPermit, Error> {
        if let Some(p) = self.try_local() {
            return Ok(p);
        }
        let share = &self.inner;
        share.short_ms.store(share.ms(), SeqCst);
        let wait = share.local.clone().acquire_owned();
        tokio::pin!(wait);
        // Registered in the local queue before the block is asked for, so
        // that the block's size counts this caller.
        if let std::task::Poll::Ready(r) = futures_poll(wait.as_mut()).await {
            return self.permit(r.map_err(|_| Error::RuntimeGone)?);
        }
        share.grow();
        let timeout = share.fleet.shared.acquire_timeout;
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(p)) => self.permit(p),
            Ok(Err(_)) => Err(Error::RuntimeGone),
            Err(_) => Err(Error::TimedOut(timeout)),
        }
    }

    /// A local permit if one is free now; never waits, never asks the
    /// fleet ([`Error::Busy`] otherwise).
    pub fn try_acquire(&self) -> Result<LocalPermit, Error> {
        self.try_local().ok_or(Error::Busy)
    }

    /// Permits this process holds from the fleet (the sum of its blocks).
    pub fn held(&self) -> u64 {
        self.inner
            .blocks
            .lock()
            .iter()
            .map(|b| b.lease.permits())
            .sum()
    }

    /// Local permits lent now.
    pub fn in_use(&self) -> usize {
        self.inner.local.in_use()
    }

    fn try_local(&self) -> Option<LocalPermit> {
        let p = self.inner.local.clone().try_acquire_owned().ok()?;
        self.permit(p).ok()
    }

    fn permit(&self, p: OwnedPermit) -> Result<LocalPermit, Error> {
        Ok(LocalPermit {
            _permit: p,
            share: self.inner.clone(),
            generation: *self.inner.generation.borrow(),
            token: self.inner.token.load(SeqCst),
        })
    }
}

/// Polls `fut` once.
async fn futures_poll<F: Future + Unpin>(mut fut: F) -> std::task::Poll<F::Output> {
    std::future::poll_fn(|cx| std::task::Poll::Ready(std::pin::Pin::new(&mut fut).poll(cx))).await
}

impl Share {
    /// Permits held from the fleet, retiring blocks included.
    fn held(&self) -> u64 {
        let sum = |v: &Vec<Block>| v.iter().map(|b| b.lease.permits()).sum::<u64>();
        sum(&self.blocks.lock()) + sum(&self.retiring.lock())
    }

    fn ms(&self) -> u64 {
        self.base.elapsed().as_millis() as u64
    }

    /// Asks the fleet for blocks while callers wait locally (one request
    /// under way at a time).
    fn grow(self: &Arc<Self>) {
        if self.growing.swap(true, SeqCst) {
            return;
        }
        let this = self.clone();
        self.fleet.shared.rt.spawn(async move {
            while this.local.waiting() > 0 {
                // Never more than the cap leaves room for next to what
                // this process holds (a block that could never be granted
                // would hold up the fleet's queue).
                let room = this.fleet.cap().saturating_sub(this.held());
                let want = (this.local.waiting() as u64)
                    .clamp(1, this.max_block)
                    .min(room);
                if want == 0 {
                    break;
                }
                let Ok(lease) = this.fleet.acquire_many(want).await else {
                    break;
                };
                this.add(lease);
            }
            this.growing.store(false, SeqCst);
            // A caller that queued as the loop ended.
            if this.local.waiting() > 0 {
                this.grow();
            }
        });
    }

    fn add(self: &Arc<Self>, lease: Lease) {
        let n = lease.permits();
        self.token.fetch_max(lease.token(), SeqCst);
        let lost = lease.lost();
        let token = lease.token();
        self.blocks.lock().push(Block {
            lease,
            since: Instant::now(),
        });
        let _ = self.local.add_permits(n as usize);
        let weak = Arc::downgrade(self);
        self.fleet.shared.rt.spawn(async move {
            lost.await;
            if let Some(share) = weak.upgrade() {
                share.lose(token);
            }
        });
    }

    /// A block's lease was lost (or given back: then it is gone already).
    fn lose(&self, token: u64) {
        let gone = {
            let mut blocks = self.blocks.lock();
            let at = blocks.iter().position(|b| b.lease.token() == token);
            at.map(|i| blocks.swap_remove(i))
        };
        let Some(block) = gone else {
            // A retiring block: its permits are already out of the local
            // semaphore, but some may still be lent.
            let mut retiring = self.retiring.lock();
            if let Some(i) = retiring.iter().position(|b| b.lease.token() == token) {
                retiring.swap_remove(i);
                self.generation.send_modify(|g| *g += 1);
            }
            return;
        };
        let n = block.lease.permits() as usize;
        let _ = self.local.resize(self.local.permits().saturating_sub(n));
        self.generation.send_modify(|g| *g += 1);
    }

    /// Gives back one block whose permits are all free, if the share has
    /// not been short for `idle`.
    fn give_back_one(&self) -> bool {
        let quiet = self.ms().saturating_sub(self.short_ms.load(SeqCst));
        if quiet < self.idle.as_millis() as u64 {
            return false;
        }
        let mut blocks = self.blocks.lock();
        let Some(i) = blocks
            .iter()
            .position(|b| b.lease.permits() as usize <= self.local.available())
        else {
            return false;
        };
        let n = blocks[i].lease.permits() as usize;
        let taken = self.local.forget_permits(n);
        if taken < n {
            let _ = self.local.add_permits(taken);
            return false;
        }
        // Dropped: released in the background.
        drop(blocks.swap_remove(i));
        true
    }
}

impl Share {
    /// Retires the blocks held `ROTATE_AFTER` × `idle`: the local
    /// semaphore shrinks by their size at once (lent permits pay the
    /// shrink as they come back).
    fn rotate(&self) {
        let hold = self.idle * ROTATE_AFTER;
        let old: Vec<Block> = {
            let mut blocks = self.blocks.lock();
            let (old, keep) = std::mem::take(&mut *blocks)
                .into_iter()
                .partition(|b| b.since.elapsed() >= hold);
            *blocks = keep;
            old
        };
        if old.is_empty() {
            return;
        }
        let n: u64 = old.iter().map(|b| b.lease.permits()).sum();
        let _ = self
            .local
            .resize(self.local.permits().saturating_sub(n as usize));
        self.retiring.lock().extend(old);
    }

    /// Gives the retired blocks back once no permit of theirs is lent:
    /// the shrink is paid when the permits lent and free add up to the
    /// local size.
    fn finish_retiring(&self) {
        let mut retiring = self.retiring.lock();
        if retiring.is_empty() {
            return;
        }
        if self.local.in_use() + self.local.available() <= self.local.permits() {
            // Dropped: released in the background.
            retiring.clear();
        }
    }
}

/// Every `idle / 2`, rotates the blocks held too long and gives back the
/// blocks nobody needed for `idle`.
async fn give_back_idle(share: Weak<Share>) {
    let Some(period) = share.upgrade().map(|s| s.idle / 2) else {
        return;
    };
    loop {
        tokio::time::sleep(period).await;
        let Some(s) = share.upgrade() else {
            return;
        };
        s.rotate();
        s.finish_retiring();
        while s.give_back_one() {}
    }
}
