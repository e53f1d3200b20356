//! A tiny get + touch + put loop for instruction counting under callgrind,
//! the same cycle as `cenote-bench objects` on one thread:
//!
//! ```text
//! cargo build --release -p cenote-bench --example objects_loop
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/objects_loop cenote vec4k 1000000
//! ```
//!
//! Run it with N and 2N cycles: (Ir(2N) - Ir(N)) / N is the cost of one
//! cycle, free of start-up and teardown. Implementations: `cenote`,
//! `lockfree` (lockfree-object-pool's `LinearObjectPool`), `alloc`.
//! Objects: `vec4k` (a 4 KiB `Vec<u8>`, cenote with `auto_reset()`), `small`
//! (a 32-byte struct, cenote with `reset(|s| *s = Small::default())`),
//! `plain` (another 32-byte struct, returned as it is: `Pool::new`, no
//! reset).

use std::hint::black_box;

#[allow(dead_code)]
#[derive(Clone, Debug, Default)]
struct Small {
    a: u64,
    b: u64,
    c: [u8; 16],
}

/// The same 32 bytes as [`Small`], a type of its own so that its pools do not
/// share compiled code with `Small`'s (code used from two places is less
/// often inlined, which would change what the other case measures).
#[allow(dead_code)]
#[derive(Clone, Debug, Default)]
struct Plain {
    a: u64,
    b: u64,
    c: [u8; 16],
}

#[inline(never)]
fn cenote_vec(n: u64) {
    let pool = cenote::objects::Pool::builder(|| Vec::<u8>::with_capacity(4096))
        .auto_reset()
        .max_idle(1024)
        .build()
        .unwrap();
    for i in 0..n {
        let mut v = pool.get();
        v.push(i as u8);
        black_box(&mut *v);
    }
}

#[inline(never)]
fn cenote_small(n: u64) {
    let pool = cenote::objects::Pool::builder(Small::default)
        .reset(|s: &mut Small| *s = Small::default())
        .max_idle(1024)
        .build()
        .unwrap();
    for i in 0..n {
        let mut s = pool.get();
        s.a = i;
        black_box(&mut *s);
    }
}

#[inline(never)]
fn cenote_plain(n: u64) {
    let pool = cenote::objects::Pool::new(Plain::default);
    for i in 0..n {
        let mut s = pool.get();
        s.a = i;
        black_box(&mut *s);
    }
}

#[inline(never)]
fn lockfree_vec(n: u64) {
    let pool = lockfree_object_pool::LinearObjectPool::new(
        || Vec::<u8>::with_capacity(4096),
        |v: &mut Vec<u8>| v.clear(),
    );
    for i in 0..n {
        let mut v = pool.pull();
        v.push(i as u8);
        black_box(&mut *v);
    }
}

#[inline(never)]
fn lockfree_small(n: u64) {
    let pool = lockfree_object_pool::LinearObjectPool::new(Small::default, |s: &mut Small| {
        *s = Small::default()
    });
    for i in 0..n {
        let mut s = pool.pull();
        s.a = i;
        black_box(&mut *s);
    }
}

#[inline(never)]
fn lockfree_plain(n: u64) {
    let pool = lockfree_object_pool::LinearObjectPool::new(Plain::default, |_: &mut Plain| ());
    for i in 0..n {
        let mut s = pool.pull();
        s.a = i;
        black_box(&mut *s);
    }
}

#[inline(never)]
fn alloc_vec(n: u64) {
    for i in 0..n {
        let mut v = Vec::<u8>::with_capacity(4096);
        v.push(i as u8);
        black_box(&mut v);
    }
}

#[inline(never)]
fn alloc_small(n: u64) {
    for i in 0..n {
        let mut s = Box::new(Small::default());
        s.a = i;
        black_box(&mut *s);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: objects_loop cenote|lockfree|alloc vec4k|small|plain N";
    let (imp, obj, n) = match &args[..] {
        [_, imp, obj, n] => (imp.as_str(), obj.as_str(), n.parse().expect(usage)),
        _ => panic!("{usage}"),
    };
    match (imp, obj) {
        ("cenote", "vec4k") => cenote_vec(n),
        ("cenote", "small") => cenote_small(n),
        ("cenote", "plain") => cenote_plain(n),
        ("lockfree", "vec4k") => lockfree_vec(n),
        ("lockfree", "small") => lockfree_small(n),
        ("lockfree", "plain") => lockfree_plain(n),
        ("alloc", "vec4k") => alloc_vec(n),
        ("alloc", "small") => alloc_small(n),
        _ => panic!("{usage}"),
    }
}
