//! Resource-pool experiments: `cenote::resources::Pool` against deadpool
//! (managed and unmanaged), bb8, mobc and qp from async tasks, and against
//! r2d2 from plain threads.
//!
//! Two resources: a stub (a number, no I/O: what the pool itself costs) and
//! a simulated connection (create sleeps 5 ms, the health check 0.2 ms).
//! Every pool is filled to its size before the measured region, so creates
//! happen outside it; checks happen wherever each pool calls them by
//! default (see [`peer_notes`]).

use std::future::Future;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{count_label, Case, Column, Experiment, Quantity, Unit};
use crate::harness::Outcome;
use crate::peers::Impl;

pub const UNCONTENDED: &str = "resources/uncontended";
pub const CONTENDED: &str = "resources/contended";

/// What the pools hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A number: create and check do nothing.
    Stub,
    /// A simulated connection: create sleeps 5 ms, check 0.2 ms.
    Sim,
}

/// Who borrows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Driver {
    /// Async tasks: one on a current-thread runtime when alone, else on a
    /// multi-thread runtime with one worker per CPU.
    Tasks,
    /// Plain threads (cenote's `get_blocking`, r2d2's `get`).
    Threads,
}

/// Parameters of one resource-pool measurement.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ResParams {
    pub kind: Kind,
    pub driver: Driver,
    /// `max_size` of the pool.
    pub size: usize,
    /// Concurrent borrowers (1: the uncontended loop, no per-op clock).
    pub borrowers: usize,
    /// Get + release cycles in total.
    pub ops: u64,
}

/// The peers borrowing from tasks, cenote first.
const TASK_PEERS: [Impl; 6] = [
    Impl::Cenote,
    Impl::DeadpoolManaged,
    Impl::DeadpoolUnmanaged,
    Impl::Bb8,
    Impl::Mobc,
    Impl::Qp,
];

/// The peers borrowing from plain threads.
const THREAD_PEERS: [Impl; 2] = [Impl::Cenote, Impl::R2d2];

/// (pool size, concurrent borrowers) of the contended experiment.
const CELLS: [(usize, usize); 4] = [(4, 16), (16, 16), (8, 64), (16, 256)];

/// One resource, two borrowers taking turns (every get waits, for a lone
/// waiter's hand-over): stub resource only.
const TURNS_CELL: (usize, usize) = (1, 2);

pub fn plan(smoke: bool) -> Vec<Experiment> {
    vec![uncontended(smoke), contended(smoke)]
}

fn peer_notes() -> Vec<String> {
    vec![
        "cenote: resources::Pool, defaults (check on checkout unless used within 500 ms, reset \
         before reuse: a no-op here); cenote-check-always: the same with check_bypass(0), so \
         that it checks on every checkout as the managed peers do; deadpool: managed::Pool, \
         recycle = the check (deadpool calls it on every get); deadpool-unmanaged: \
         unmanaged::Pool filled with size resources (no create, no check); bb8: defaults \
         (test_on_check_out: is_valid = the check on every get); mobc: max_idle = max_open, \
         defaults (health check on every get); qp: acquire() (validate = the check on every \
         get); r2d2 (threads only): defaults (test_on_check_out)"
            .to_owned(),
        "simulated connection: create = sleep 5 ms, check = sleep 0.2 ms, on tokio's timer for \
         the async pools (which rounds up to its 1 ms tick) and thread::sleep for r2d2"
            .to_owned(),
    ]
}

fn peers(driver: Driver, kind: Kind) -> Vec<Impl> {
    let mut v: Vec<Impl> = match driver {
        Driver::Tasks => TASK_PEERS.to_vec(),
        Driver::Threads => THREAD_PEERS.to_vec(),
    };
    if kind == Kind::Sim {
        v.insert(1, Impl::CenoteCheckAlways);
    }
    v
}

fn kind_label(kind: Kind) -> &'static str {
    match kind {
        Kind::Stub => "stub",
        Kind::Sim => "sim-conn",
    }
}

fn uncontended(smoke: bool) -> Experiment {
    let mut cases = Vec::new();
    for kind in [Kind::Stub, Kind::Sim] {
        let ops: u64 = match (kind, smoke) {
            (Kind::Stub, false) => 1 << 20,
            (Kind::Sim, false) => 1 << 10,
            (Kind::Stub, true) => 2_000,
            (Kind::Sim, true) => 50,
        };
        for driver in [Driver::Tasks, Driver::Threads] {
            let who = match driver {
                Driver::Tasks => "1-task",
                Driver::Threads => "1-thread",
            };
            let scenario = format!("{}/{who}/{}", kind_label(kind), count_label(ops));
            let params = ResParams {
                kind,
                driver,
                size: 4,
                borrowers: 1,
                ops,
            };
            for imp in peers(driver, kind) {
                cases.push(Case::new(&scenario, imp, &params));
            }
        }
    }
    let mut notes = vec![
        "one borrower gets a resource and drops it at once, ops times; \
         1-task: one task on a current-thread runtime; 1-thread: a plain thread; pool size 4, \
         filled before the measured region"
            .to_owned(),
    ];
    notes.extend(peer_notes());
    Experiment {
        name: UNCONTENDED,
        title: "uncontended get + release: one borrower, an idle resource always there".to_owned(),
        notes,
        headline: Quantity::PerOp,
        per_op_title: "time per get + release (wall / ops)",
        columns: vec![],
        cases,
    }
}

fn contended(smoke: bool) -> Experiment {
    let cells: &[(usize, usize)] = if smoke { &[(4, 16)] } else { &CELLS };
    let mut cases = Vec::new();
    for kind in [Kind::Stub, Kind::Sim] {
        let ops: u64 = match (kind, smoke) {
            (Kind::Stub, false) => 1 << 20,
            (Kind::Sim, false) => 1 << 12,
            (Kind::Stub, true) => 4_096,
            (Kind::Sim, true) => 256,
        };
        let turns: &[(usize, usize)] = if smoke || kind != Kind::Stub {
            &[]
        } else {
            &[TURNS_CELL]
        };
        for &(size, borrowers) in cells.iter().chain(turns) {
            for driver in [Driver::Tasks, Driver::Threads] {
                let who = match driver {
                    Driver::Tasks => "tasks",
                    Driver::Threads => "threads",
                };
                let scenario = format!(
                    "{}/size={size}/{who}={borrowers}/{}",
                    kind_label(kind),
                    count_label(ops)
                );
                let params = ResParams {
                    kind,
                    driver,
                    size,
                    borrowers,
                    ops,
                };
                let mut imps = peers(driver, kind);
                if driver == Driver::Tasks && kind == Kind::Stub {
                    imps.extend([Impl::FloorTokioSemaphore, Impl::FloorCenoteSemaphore]);
                }
                for imp in imps {
                    cases.push(Case::new(&scenario, imp, &params));
                }
            }
        }
    }
    let mut notes = vec![
        "borrowers loop on get, yield while holding (tokio::task::yield_now or \
         thread::yield_now, so that others really wait), drop, until ops are done in all \
         (tasks on a multi-thread tokio runtime with one worker per CPU, or plain threads), all \
         released together; pool filled before the measured region; every cycle is timed, from \
         the call to get until the guard is dropped"
            .to_owned(),
        "floor-tokio-semaphore / floor-cenote-semaphore: not pools, a bare semaphore with size \
         permits and no resources, in the same loop (acquire, yield holding the permit, drop): \
         what a FIFO pool that hands a returned resource to the longest waiter, waking it, \
         cannot beat"
            .to_owned(),
        "wait p50 / p99: percentiles of the timed gets; max/mean: the longest wait over the \
         mean wait (fairness: a FIFO pool keeps it low, a pool that lets some borrowers barge \
         starves others)"
            .to_owned(),
    ];
    notes.extend(peer_notes());
    Experiment {
        name: CONTENDED,
        title: "contended get + release: more borrowers than resources".to_owned(),
        notes,
        headline: Quantity::PerOp,
        per_op_title: "time per get + release (wall / ops; 1 / throughput)",
        columns: vec![
            Column {
                key: "ops_per_s",
                header: "ops/s",
                unit: Unit::Plain(0),
                chart: false,
            },
            Column {
                key: "wait_p50_us",
                header: "wait p50",
                unit: Unit::Micros,
                chart: false,
            },
            Column {
                key: "wait_p99_us",
                header: "wait p99",
                unit: Unit::Micros,
                chart: true,
            },
            Column {
                key: "max_over_mean",
                header: "max/mean",
                unit: Unit::Plain(1),
                chart: true,
            },
        ],
        cases,
    }
}

// ----- child side -------------------------------------------------------------

/// The resource: a number (stub or simulated connection alike).
type Res = u64;

/// Errors of the test managers (they never fail).
#[derive(Debug)]
pub struct Never;

impl std::fmt::Display for Never {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("never")
    }
}

impl std::error::Error for Never {}

const CREATE: Duration = Duration::from_millis(5);
const CHECK: Duration = Duration::from_micros(200);

/// The one manager logic every peer's adapter calls.
#[derive(Clone)]
struct Sim {
    kind: Kind,
    next: Arc<AtomicU64>,
}

impl Sim {
    fn new(kind: Kind) -> Self {
        Sim {
            kind,
            next: Arc::new(AtomicU64::new(0)),
        }
    }

    async fn create(&self) -> Res {
        if self.kind == Kind::Sim {
            tokio::time::sleep(CREATE).await;
        }
        self.next.fetch_add(1, Relaxed)
    }

    async fn check(&self, r: &Res) {
        black_box(r);
        if self.kind == Kind::Sim {
            tokio::time::sleep(CHECK).await;
        }
    }

    fn create_blocking(&self) -> Res {
        if self.kind == Kind::Sim {
            thread::sleep(CREATE);
        }
        self.next.fetch_add(1, Relaxed)
    }

    fn check_blocking(&self, r: &Res) {
        black_box(r);
        if self.kind == Kind::Sim {
            thread::sleep(CHECK);
        }
    }
}

// cenote
impl cenote::resources::Manager for Sim {
    type Resource = Res;
    type Error = Never;
    async fn create(&self) -> Result<Res, Never> {
        Ok(Sim::create(self).await)
    }
    async fn check(&self, r: &mut Res) -> Result<(), Never> {
        Sim::check(self, r).await;
        Ok(())
    }
}

// deadpool (managed)
struct DeadpoolMgr(Sim);

impl deadpool::managed::Manager for DeadpoolMgr {
    type Type = Res;
    type Error = Never;
    async fn create(&self) -> Result<Res, Never> {
        Ok(self.0.create().await)
    }
    async fn recycle(
        &self,
        r: &mut Res,
        _: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<Never> {
        self.0.check(r).await;
        Ok(())
    }
}

// bb8
struct Bb8Mgr(Sim);

impl bb8::ManageConnection for Bb8Mgr {
    type Connection = Res;
    type Error = Never;
    async fn connect(&self) -> Result<Res, Never> {
        Ok(self.0.create().await)
    }
    async fn is_valid(&self, r: &mut Res) -> Result<(), Never> {
        self.0.check(r).await;
        Ok(())
    }
    fn has_broken(&self, _: &mut Res) -> bool {
        false
    }
}

// mobc
struct MobcMgr(Sim);

#[mobc::async_trait]
impl mobc::Manager for MobcMgr {
    type Connection = Res;
    type Error = Never;
    async fn connect(&self) -> Result<Res, Never> {
        Ok(self.0.create().await)
    }
    async fn check(&self, r: Res) -> Result<Res, Never> {
        self.0.check(&r).await;
        Ok(r)
    }
}

// qp
struct QpMgr(Sim);

#[qp::async_trait]
impl qp::resource::Manage for QpMgr {
    type Output = Res;
    type Error = Never;
    async fn try_create(&self) -> Result<Res, Never> {
        Ok(self.0.create().await)
    }
    async fn validate(&self, r: &Res) -> bool {
        self.0.check(r).await;
        true
    }
}

// r2d2
struct R2d2Mgr(Sim);

impl r2d2::ManageConnection for R2d2Mgr {
    type Connection = Res;
    type Error = Never;
    fn connect(&self) -> Result<Res, Never> {
        Ok(self.0.create_blocking())
    }
    fn is_valid(&self, r: &mut Res) -> Result<(), Never> {
        self.0.check_blocking(r);
        Ok(())
    }
    fn has_broken(&self, _: &mut Res) -> bool {
        false
    }
}

fn err(e: impl std::fmt::Debug) -> String {
    format!("{e:?}")
}

/// A pool borrowed from async tasks.
trait AsyncPeer: Sized + Send + Sync + 'static {
    /// Builds the pool (inside the runtime).
    fn build(size: usize, kind: Kind) -> impl Future<Output = Result<Self, String>> + Send;
    /// Makes `n` resources exist and be idle (holds `n` at once).
    fn fill(&self, n: usize) -> impl Future<Output = Result<(), String>> + Send;
    /// One measured cycle: get, touch, (`hold`: yield to the scheduler
    /// while holding it), drop.
    fn cycle(&self, hold: bool) -> impl Future<Output = Result<(), String>> + Send;
}

/// What a borrower does with a resource: touches it and, under
/// contention, holds it across one yield (as a query holds a connection
/// across an await), so that other borrowers really wait.
async fn use_async<R>(r: &R, hold: bool) {
    black_box(r);
    if hold {
        tokio::task::yield_now().await;
    }
}

/// [`use_async`] for threads.
fn use_blocking<R>(r: &R, hold: bool) {
    black_box(r);
    if hold {
        thread::yield_now();
    }
}

/// Holds `$n` resources from `$get` at once, then gives them back.
macro_rules! fill_with {
    ($n:expr, $get:expr) => {{
        let mut held = Vec::with_capacity($n);
        for _ in 0..$n {
            held.push($get.await.map_err(err)?);
        }
        drop(held);
        Ok(())
    }};
}

struct CenoteTasks(cenote::resources::Pool<Sim>);

impl CenoteTasks {
    fn with_bypass(
        size: usize,
        kind: Kind,
        always: bool,
    ) -> Result<cenote::resources::Pool<Sim>, String> {
        let mut b = cenote::resources::Pool::builder(Sim::new(kind)).capacity(size);
        if always {
            b = b.check_bypass(Duration::ZERO);
        }
        b.build().map_err(err)
    }
}

impl AsyncPeer for CenoteTasks {
    async fn build(size: usize, kind: Kind) -> Result<Self, String> {
        Ok(CenoteTasks(CenoteTasks::with_bypass(size, kind, false)?))
    }
    async fn fill(&self, n: usize) -> Result<(), String> {
        fill_with!(n, self.0.get())
    }
    async fn cycle(&self, hold: bool) -> Result<(), String> {
        let r = self.0.get().await.map_err(err)?;
        use_async(&*r, hold).await;
        Ok(())
    }
}

struct CenoteCheckAlways(cenote::resources::Pool<Sim>);

impl AsyncPeer for CenoteCheckAlways {
    async fn build(size: usize, kind: Kind) -> Result<Self, String> {
        Ok(CenoteCheckAlways(CenoteTasks::with_bypass(
            size, kind, true,
        )?))
    }
    async fn fill(&self, n: usize) -> Result<(), String> {
        fill_with!(n, self.0.get())
    }
    async fn cycle(&self, hold: bool) -> Result<(), String> {
        let r = self.0.get().await.map_err(err)?;
        use_async(&*r, hold).await;
        Ok(())
    }
}

/// A bare semaphore (no resources): the contended floor.
struct FloorTokio(tokio::sync::Semaphore);

impl AsyncPeer for FloorTokio {
    async fn build(size: usize, _kind: Kind) -> Result<Self, String> {
        Ok(FloorTokio(tokio::sync::Semaphore::new(size)))
    }
    async fn fill(&self, _n: usize) -> Result<(), String> {
        Ok(())
    }
    async fn cycle(&self, hold: bool) -> Result<(), String> {
        let permit = self.0.acquire().await.map_err(err)?;
        use_async(&permit, hold).await;
        Ok(())
    }
}

/// [`FloorTokio`] with cenote's semaphore.
struct FloorCenote(cenote::limit::Semaphore);

impl AsyncPeer for FloorCenote {
    async fn build(size: usize, _kind: Kind) -> Result<Self, String> {
        Ok(FloorCenote(cenote::limit::Semaphore::new(size)))
    }
    async fn fill(&self, _n: usize) -> Result<(), String> {
        Ok(())
    }
    async fn cycle(&self, hold: bool) -> Result<(), String> {
        let permit = self.0.acquire().await.map_err(err)?;
        use_async(&permit, hold).await;
        Ok(())
    }
}

struct DeadpoolManaged(deadpool::managed::Pool<DeadpoolMgr>);

impl AsyncPeer for DeadpoolManaged {
    async fn build(size: usize, kind: Kind) -> Result<Self, String> {
        let pool = deadpool::managed::Pool::builder(DeadpoolMgr(Sim::new(kind)))
            .max_size(size)
            .build()
            .map_err(err)?;
        Ok(DeadpoolManaged(pool))
    }
    async fn fill(&self, n: usize) -> Result<(), String> {
        fill_with!(n, self.0.get())
    }
    async fn cycle(&self, hold: bool) -> Result<(), String> {
        let r = self.0.get().await.map_err(err)?;
        use_async(&*r, hold).await;
        Ok(())
    }
}

struct DeadpoolUnmanaged(deadpool::unmanaged::Pool<Res>);

impl AsyncPeer for DeadpoolUnmanaged {
    async fn build(size: usize, kind: Kind) -> Result<Self, String> {
        let pool = deadpool::unmanaged::Pool::new(size);
        let sim = Sim::new(kind);
        for _ in 0..size {
            pool.add(sim.create().await)
                .await
                .map_err(|(_, e)| err(e))?;
        }
        Ok(DeadpoolUnmanaged(pool))
    }
    async fn fill(&self, _: usize) -> Result<(), String> {
        Ok(()) // filled at build
    }
    async fn cycle(&self, hold: bool) -> Result<(), String> {
        let r = self.0.get().await.map_err(err)?;
        use_async(&*r, hold).await;
        Ok(())
    }
}

struct Bb8(bb8::Pool<Bb8Mgr>);

impl AsyncPeer for Bb8 {
    async fn build(size: usize, kind: Kind) -> Result<Self, String> {
        let size = u32::try_from(size).map_err(err)?;
        let pool = bb8::Pool::builder()
            .max_size(size)
            .build(Bb8Mgr(Sim::new(kind)))
            .await
            .map_err(err)?;
        Ok(Bb8(pool))
    }
    async fn fill(&self, n: usize) -> Result<(), String> {
        fill_with!(n, self.0.get())
    }
    async fn cycle(&self, hold: bool) -> Result<(), String> {
        let r = self.0.get().await.map_err(err)?;
        use_async(&*r, hold).await;
        Ok(())
    }
}

struct Mobc(mobc::Pool<MobcMgr>);

impl AsyncPeer for Mobc {
    async fn build(size: usize, kind: Kind) -> Result<Self, String> {
        let pool = mobc::Pool::builder()
            .max_open(size as u64)
            .max_idle(size as u64)
            .build(MobcMgr(Sim::new(kind)));
        Ok(Mobc(pool))
    }
    async fn fill(&self, n: usize) -> Result<(), String> {
        fill_with!(n, self.0.get())
    }
    async fn cycle(&self, hold: bool) -> Result<(), String> {
        let r = self.0.get().await.map_err(err)?;
        use_async(&*r, hold).await;
        Ok(())
    }
}

struct Qp(qp::Pool<QpMgr>);

impl AsyncPeer for Qp {
    async fn build(size: usize, kind: Kind) -> Result<Self, String> {
        Ok(Qp(qp::Pool::new(QpMgr(Sim::new(kind)), size)))
    }
    async fn fill(&self, n: usize) -> Result<(), String> {
        fill_with!(n, self.0.acquire())
    }
    async fn cycle(&self, hold: bool) -> Result<(), String> {
        let r = self.0.acquire().await.map_err(err)?;
        use_async(&*r, hold).await;
        Ok(())
    }
}

/// A pool borrowed from plain threads.
trait ThreadPeer: Sized + Send + Sync + 'static {
    fn build(size: usize, kind: Kind) -> Result<Self, String>;
    fn fill(&self, n: usize) -> Result<(), String>;
    fn cycle(&self, hold: bool) -> Result<(), String>;
}

struct CenoteThreads(cenote::resources::Pool<Sim>);

impl ThreadPeer for CenoteThreads {
    fn build(size: usize, kind: Kind) -> Result<Self, String> {
        // Built outside any runtime: the pool drives its own.
        Ok(CenoteThreads(CenoteTasks::with_bypass(size, kind, false)?))
    }
    fn fill(&self, n: usize) -> Result<(), String> {
        let held = (0..n)
            .map(|_| self.0.get_blocking().map_err(err))
            .collect::<Result<Vec<_>, _>>()?;
        drop(held);
        Ok(())
    }
    fn cycle(&self, hold: bool) -> Result<(), String> {
        let r = self.0.get_blocking().map_err(err)?;
        use_blocking(&*r, hold);
        Ok(())
    }
}

struct CenoteThreadsCheckAlways(cenote::resources::Pool<Sim>);

impl ThreadPeer for CenoteThreadsCheckAlways {
    fn build(size: usize, kind: Kind) -> Result<Self, String> {
        Ok(CenoteThreadsCheckAlways(CenoteTasks::with_bypass(
            size, kind, true,
        )?))
    }
    fn fill(&self, n: usize) -> Result<(), String> {
        let held = (0..n)
            .map(|_| self.0.get_blocking().map_err(err))
            .collect::<Result<Vec<_>, _>>()?;
        drop(held);
        Ok(())
    }
    fn cycle(&self, hold: bool) -> Result<(), String> {
        let r = self.0.get_blocking().map_err(err)?;
        use_blocking(&*r, hold);
        Ok(())
    }
}

struct R2d2(r2d2::Pool<R2d2Mgr>);

impl ThreadPeer for R2d2 {
    fn build(size: usize, kind: Kind) -> Result<Self, String> {
        let size = u32::try_from(size).map_err(err)?;
        let pool = r2d2::Pool::builder()
            .max_size(size)
            .build(R2d2Mgr(Sim::new(kind)))
            .map_err(err)?;
        Ok(R2d2(pool))
    }
    fn fill(&self, n: usize) -> Result<(), String> {
        let held = (0..n)
            .map(|_| self.0.get().map_err(err))
            .collect::<Result<Vec<_>, _>>()?;
        drop(held);
        Ok(())
    }
    fn cycle(&self, hold: bool) -> Result<(), String> {
        let r = self.0.get().map_err(err)?;
        use_blocking(&*r, hold);
        Ok(())
    }
}

/// Child side of both experiments.
pub fn run(imp: Impl, p: &ResParams) -> Result<Outcome, String> {
    if p.size == 0 || p.borrowers == 0 {
        return Err("size and borrowers must be at least 1".to_owned());
    }
    match p.driver {
        Driver::Tasks => match imp {
            Impl::Cenote => on_tasks::<CenoteTasks>(p),
            Impl::CenoteCheckAlways => on_tasks::<CenoteCheckAlways>(p),
            Impl::DeadpoolManaged => on_tasks::<DeadpoolManaged>(p),
            Impl::DeadpoolUnmanaged => on_tasks::<DeadpoolUnmanaged>(p),
            Impl::Bb8 => on_tasks::<Bb8>(p),
            Impl::Mobc => on_tasks::<Mobc>(p),
            Impl::Qp => on_tasks::<Qp>(p),
            Impl::FloorTokioSemaphore => on_tasks::<FloorTokio>(p),
            Impl::FloorCenoteSemaphore => on_tasks::<FloorCenote>(p),
            other => Err(format!("{} is not an async resource pool", other.name())),
        },
        Driver::Threads => match imp {
            Impl::Cenote => on_threads::<CenoteThreads>(p),
            Impl::CenoteCheckAlways => on_threads::<CenoteThreadsCheckAlways>(p),
            Impl::R2d2 => on_threads::<R2d2>(p),
            other => Err(format!("{} is not a blocking resource pool", other.name())),
        },
    }
}

fn on_tasks<P: AsyncPeer>(p: &ResParams) -> Result<Outcome, String> {
    let rt = if p.borrowers == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    }
    .map_err(err)?;
    let p = p.clone();
    let outcome = rt.block_on(async move {
        let pool = Arc::new(P::build(p.size, p.kind).await?);
        pool.fill(p.size).await?;
        if p.borrowers == 1 {
            let start = Instant::now();
            for _ in 0..p.ops {
                pool.cycle(false).await?;
            }
            return Ok::<_, String>(Outcome::new(start.elapsed(), Some(p.ops)));
        }
        let each = p.ops / p.borrowers as u64;
        let gate = Arc::new(tokio::sync::Barrier::new(p.borrowers + 1));
        let borrowers: Vec<_> = (0..p.borrowers)
            .map(|_| {
                let (pool, gate) = (pool.clone(), gate.clone());
                tokio::spawn(async move {
                    let mut waits = Vec::with_capacity(each as usize);
                    gate.wait().await;
                    let started = Instant::now();
                    for _ in 0..each {
                        let t = Instant::now();
                        pool.cycle(true).await?;
                        waits.push(nanos(t.elapsed()));
                    }
                    Ok::<_, String>((started, waits))
                })
            })
            .collect();
        gate.wait().await;
        let mut all = Vec::with_capacity(p.borrowers);
        for b in borrowers {
            all.push(b.await.map_err(err)??);
        }
        Ok(contended_outcome(
            Instant::now(),
            each * p.borrowers as u64,
            all,
        ))
    })?;
    // Teardown is not measured (the child exits).
    std::mem::forget(rt);
    Ok(outcome)
}

fn on_threads<P: ThreadPeer>(p: &ResParams) -> Result<Outcome, String> {
    let pool = P::build(p.size, p.kind)?;
    pool.fill(p.size)?;
    if p.borrowers == 1 {
        let start = Instant::now();
        for _ in 0..p.ops {
            pool.cycle(false)?;
        }
        let outcome = Outcome::new(start.elapsed(), Some(p.ops));
        std::mem::forget(pool);
        return Ok(outcome);
    }
    let each = p.ops / p.borrowers as u64;
    let gate = std::sync::Barrier::new(p.borrowers + 1);
    let (ended, all) = thread::scope(|s| {
        let borrowers: Vec<_> = (0..p.borrowers)
            .map(|_| {
                s.spawn(|| {
                    let mut waits = Vec::with_capacity(each as usize);
                    gate.wait();
                    let started = Instant::now();
                    for _ in 0..each {
                        let t = Instant::now();
                        pool.cycle(true)?;
                        waits.push(nanos(t.elapsed()));
                    }
                    Ok::<_, String>((started, waits))
                })
            })
            .collect();
        gate.wait();
        let all = borrowers
            .into_iter()
            .map(|b| b.join().map_err(|_| "a borrower panicked".to_owned())?)
            .collect::<Result<Vec<_>, _>>();
        (Instant::now(), all)
    });
    let outcome = contended_outcome(ended, each * p.borrowers as u64, all?);
    std::mem::forget(pool);
    Ok(outcome)
}

fn nanos(d: Duration) -> u32 {
    u32::try_from(d.as_nanos()).unwrap_or(u32::MAX)
}

/// Throughput and the wait distribution of the timed gets. The measured
/// region runs from the first borrower's start (each notes when it passed
/// the gate: the thread that opened it may itself run much later) to
/// `ended`, after the last borrower finished.
pub(super) fn contended_outcome(
    ended: Instant,
    ops: u64,
    borrowers: Vec<(Instant, Vec<u32>)>,
) -> Outcome {
    let first = borrowers.iter().map(|b| b.0).min().unwrap_or(ended);
    let wall = ended.duration_since(first);
    let mut all: Vec<u32> = borrowers.into_iter().flat_map(|b| b.1).collect();
    all.sort_unstable();
    let stats = WaitStats::of(&all);
    Outcome::new(wall, Some(ops))
        .metric("ops_per_s", ops as f64 / wall.as_secs_f64().max(1e-9))
        .metric("wait_p50_us", stats.p50_ns / 1e3)
        .metric("wait_p99_us", stats.p99_ns / 1e3)
        .metric("max_over_mean", stats.max_over_mean)
}

/// Percentiles and fairness of sorted waits.
#[derive(Debug, PartialEq)]
struct WaitStats {
    p50_ns: f64,
    p99_ns: f64,
    max_over_mean: f64,
}

impl WaitStats {
    fn of(sorted: &[u32]) -> Self {
        if sorted.is_empty() {
            return WaitStats {
                p50_ns: 0.0,
                p99_ns: 0.0,
                max_over_mean: 0.0,
            };
        }
        let at = |q: f64| f64::from(sorted[((sorted.len() - 1) as f64 * q).round() as usize]);
        let mean = sorted.iter().map(|&w| f64::from(w)).sum::<f64>() / sorted.len() as f64;
        let max = f64::from(*sorted.last().expect("not empty"));
        WaitStats {
            p50_ns: at(0.50),
            p99_ns: at(0.99),
            max_over_mean: if mean > 0.0 { max / mean } else { 0.0 },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_stats_of_a_known_distribution() {
        let waits: Vec<u32> = (1..=100).collect();
        let s = WaitStats::of(&waits);
        assert_eq!(s.p50_ns, 51.0); // index round(99 * 0.5) = 50
        assert_eq!(s.p99_ns, 99.0);
        assert!((s.max_over_mean - 100.0 / 50.5).abs() < 1e-9);
        assert_eq!(WaitStats::of(&[]).p99_ns, 0.0);
    }

    #[test]
    fn every_peer_runs_every_scenario_at_a_tiny_size() {
        for exp in plan(true) {
            for case in &exp.cases {
                let mut p: ResParams = serde_json::from_value(case.params.clone()).unwrap();
                if case.imp == Impl::Qp && p.borrowers > p.size {
                    // qp 0.2.1 loses wake-ups under contention (a waiter
                    // registers its waker once; woken but beaten to the
                    // permit, it is never woken again) and can hang here.
                    continue;
                }
                p.ops = p.ops.min(64);
                let out = run(case.imp, &p)
                    .unwrap_or_else(|e| panic!("{} {}: {e}", case.scenario, case.imp.name()));
                assert!(out.wall_s > 0.0);
            }
        }
    }
}
