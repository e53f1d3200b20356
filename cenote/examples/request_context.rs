//! A per-request context taken from a pool, ported from seed 003 (gin's use
//! of `sync.Pool`).
//!
//! gin keeps its `*Context` in a `sync.Pool`: `ServeHTTP` gets one, resets
//! it, runs the handlers on it and puts it back, so that a busy server does
//! not allocate a fresh context (and its slices and map) for every request.
//! This example does the same with [`cenote::objects::Pool`]: a
//! `RequestContext` (a header map, two `Vec`s and a response `String`) is
//! filled by a fake handler for 100 000 requests, once with a fresh context
//! per request and once with `pool.get()`, the context's [`Reset`] impl
//! clearing it on return (`.auto_reset()`).
//!
//! A counting global allocator prints how many heap allocations and bytes
//! each run asked for. What to look for: the pooled run keeps the buffers of
//! the map, the `Vec`s and the `String` (`clear()` keeps their capacity), so
//! it allocates only what the handler creates anew every time: the header
//! names and values stored as `String`s. `pool.stats()` shows one miss (the
//! first request) and a hit for every other request.
//!
//! Run with `cargo run --release -p cenote --example request_context`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::error::Error;
use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use cenote::objects::{Pool, Reset};

const REQUESTS: u64 = 100_000;

/// The fake request every handler call parses.
const REQUEST: &str = "GET /users/42/orders/7 HTTP/1.1\r\n\
                       Host: example.com\r\n\
                       User-Agent: cenote-example/1.0\r\n\
                       Accept: application/json\r\n\
                       X-Request-Id: 9f1c2e\r\n\
                       \r\n";

/// What a handler works on, like gin's `Context`.
#[derive(Debug, Default)]
struct RequestContext {
    /// Header name → value.
    headers: HashMap<String, String>,
    /// Numeric path parameters (`/users/42/orders/7` → 42, 7).
    params: Vec<u64>,
    /// Names of the middlewares that ran, in order.
    trace: Vec<&'static str>,
    /// The response body.
    body: String,
}

impl Reset for RequestContext {
    fn reset(&mut self) {
        self.headers.clear();
        self.params.clear();
        self.trace.clear();
        self.body.clear();
    }
}

/// The fake handler: parse the request into `ctx`, then build the response.
fn handle(ctx: &mut RequestContext, request: &str, id: u64) {
    let mut lines = request.lines();
    let path = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .unwrap_or("/");
    ctx.trace.push("router");
    ctx.params
        .extend(path.split('/').filter_map(|s| s.parse::<u64>().ok()));
    ctx.trace.push("headers");
    for line in lines.take_while(|l| !l.is_empty()) {
        if let Some((name, value)) = line.split_once(": ") {
            ctx.headers.insert(name.to_owned(), value.to_owned());
        }
    }
    ctx.trace.push("handler");
    let _ = write!(
        ctx.body,
        "{{\"request\":{id},\"user\":{},\"order\":{},\"host\":\"{}\",\"trace\":\"",
        ctx.params.first().unwrap_or(&0),
        ctx.params.get(1).unwrap_or(&0),
        ctx.headers.get("Host").map_or("", String::as_str),
    );
    for (i, step) in ctx.trace.iter().enumerate() {
        if i > 0 {
            ctx.body.push('>');
        }
        ctx.body.push_str(step);
    }
    ctx.body.push_str("\"}");
}

fn main() -> Result<(), Box<dyn Error>> {
    // Without a pool: a fresh context per request, dropped at its end.
    let (allocs, bytes, time) = counted(|| {
        for id in 0..REQUESTS {
            let mut ctx = RequestContext::default();
            handle(&mut ctx, REQUEST, id);
            black_box(&ctx);
        }
    });
    report("fresh context per request", allocs, bytes, time);

    // With a pool: gin's Get, handle, Put; the Reset impl runs on return.
    let pool: Pool<RequestContext> = Pool::builder(RequestContext::default)
        .auto_reset()
        .build()?;
    let (allocs, bytes, time) = counted(|| {
        for id in 0..REQUESTS {
            let mut ctx = pool.get();
            handle(&mut ctx, REQUEST, id);
            black_box(&*ctx);
        }
    });
    report("pooled context", allocs, bytes, time);
    println!("\npool.stats(): {:#?}", pool.stats());
    Ok(())
}

fn report(what: &str, allocs: u64, bytes: u64, time: std::time::Duration) {
    println!(
        "{what:<26} {allocs:>9} allocations ({:>5.2} per request), {:>6.1} MiB, {:>6.1} ms",
        allocs as f64 / REQUESTS as f64,
        bytes as f64 / (1024.0 * 1024.0),
        time.as_secs_f64() * 1e3,
    );
}

/// Runs `f` and returns the allocations and bytes it asked for, and its time.
fn counted(f: impl FnOnce()) -> (u64, u64, std::time::Duration) {
    let (allocs, bytes) = (ALLOCS.load(Relaxed), BYTES.load(Relaxed));
    let start = Instant::now();
    f();
    let time = start.elapsed();
    (
        ALLOCS.load(Relaxed) - allocs,
        BYTES.load(Relaxed) - bytes,
        time,
    )
}

/// Heap allocations (`alloc`, `alloc_zeroed` and `realloc` calls) so far.
static ALLOCS: AtomicU64 = AtomicU64::new(0);
/// Bytes asked for by those calls (a `realloc` counts its new size).
static BYTES: AtomicU64 = AtomicU64::new(0);

/// The system allocator, counting.
struct Counting;

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged; the counters are plain atomics and never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(layout.size() as u64, Relaxed);
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(layout.size() as u64, Relaxed);
        // SAFETY: forwarded unchanged; the caller upholds `alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(new_size as u64, Relaxed);
        // SAFETY: forwarded unchanged; `ptr` came from this allocator with
        // `layout`, as the caller guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged; `ptr` came from this allocator with
        // `layout`, as the caller guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;
