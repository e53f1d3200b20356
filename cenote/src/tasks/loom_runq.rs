//! Loom models of the lanes' intrusive run queue (`src/tasks/runq.rs`):
//! every pushed node comes out exactly once, in push order per pusher, the
//! queue never says `Empty` while a pushed node is linked in, and `Busy`
//! only while a push is under way. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p cenote --release --lib loom_`.

use std::ptr::NonNull;
use std::sync::Arc;

use super::runq::{Link, Pop, RunQueue};
use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use loom::thread;

/// A node: its link first (as a cell's), then a payload its pusher writes
/// just before the push and the consumer reads after the pop (loom reports
/// the race if the queue does not order the two).
#[repr(C)]
struct Node {
    link: Link,
    payload: UnsafeCell<usize>,
}

/// `n` nodes (the vector never grows, so their addresses stay put); a
/// node is known by its index.
struct Nodes(Vec<Node>);

// SAFETY: the nodes are only reached through the queue, whose protocol is
// what the models check.
unsafe impl Send for Nodes {}
// SAFETY: as above.
unsafe impl Sync for Nodes {}

impl Nodes {
    fn new(n: usize) -> Arc<Nodes> {
        Arc::new(Nodes(
            (0..n)
                .map(|_| Node {
                    link: Link::new(),
                    payload: UnsafeCell::new(0),
                })
                .collect(),
        ))
    }
    fn at(&self, i: usize) -> NonNull<Link> {
        NonNull::from(&self.0[i].link)
    }
    /// Writes node `i`'s payload and hands back its link, to push.
    fn fill(&self, i: usize) -> NonNull<Link> {
        // SAFETY: before the push, the node is its pusher's alone.
        self.0[i].payload.with_mut(|p| unsafe { *p = 100 + i });
        self.at(i)
    }
    fn index(&self, link: NonNull<Link>) -> usize {
        (0..self.0.len())
            .find(|&i| self.at(i) == link)
            .expect("a popped link is one of the nodes")
    }
}

/// Pops until `n` nodes came out, yielding on `Empty` and `Busy`.
fn take(q: &RunQueue, nodes: &Nodes, n: usize) -> Vec<usize> {
    let mut got = Vec::new();
    while got.len() < n {
        // SAFETY: this thread is the one consumer.
        match unsafe { q.pop() } {
            Pop::Node(link) => {
                let i = nodes.index(link);
                // SAFETY: popped, so the consumer's alone.
                let payload = nodes.0[i].payload.with(|p| unsafe { *p });
                assert_eq!(payload, 100 + i, "the pusher's writes arrive with the node");
                got.push(i);
            }
            Pop::Empty | Pop::Busy => thread::yield_now(),
        }
    }
    got
}

#[test]
fn two_pushers_one_consumer_nothing_lost_or_twice_fifo_per_pusher() {
    loom::model(|| {
        let q = Arc::new(RunQueue::new());
        let nodes = Nodes::new(3);
        // Pusher A pushes nodes 0 then 1, pusher B node 2.
        let a = {
            let (q, nodes) = (q.clone(), nodes.clone());
            thread::spawn(move || {
                // SAFETY: each node is pushed once and not touched after.
                unsafe {
                    q.push(nodes.fill(0));
                    q.push(nodes.fill(1));
                }
            })
        };
        let b = {
            let (q, nodes) = (q.clone(), nodes.clone());
            // SAFETY: as above.
            thread::spawn(move || unsafe { q.push(nodes.fill(2)) })
        };
        let got = take(&q, &nodes, 3);
        a.join().unwrap();
        b.join().unwrap();
        let mut sorted = got.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![0, 1, 2], "each node once: {got:?}");
        let pos = |i| got.iter().position(|&g| g == i).unwrap();
        assert!(pos(0) < pos(1), "FIFO per pusher: {got:?}");
        // SAFETY: still the one consumer.
        assert_eq!(unsafe { q.pop() }, Pop::Empty);
    });
}

#[test]
fn a_node_pushed_and_linked_is_never_reported_empty() {
    loom::model(|| {
        // The lane's contract: a pusher pushes, then signals. A consumer
        // that sees the signal (here: `linked`) must find the node, or be
        // told `Busy` only by a push still under way (the other one).
        let q = Arc::new(RunQueue::new());
        let nodes = Nodes::new(2);
        let linked = Arc::new(AtomicUsize::new(0));
        let pushers: Vec<_> = (0..2)
            .map(|i| {
                let (q, nodes, linked) = (q.clone(), nodes.clone(), linked.clone());
                thread::spawn(move || {
                    // SAFETY: each node is pushed once.
                    unsafe { q.push(nodes.fill(i)) };
                    linked.fetch_add(1, SeqCst);
                })
            })
            .collect();
        let mut got = 0;
        while got < 2 {
            let seen = linked.load(SeqCst);
            // SAFETY: the one consumer.
            match unsafe { q.pop() } {
                Pop::Node(_) => got += 1,
                Pop::Empty => {
                    assert!(seen <= got, "Empty with a linked node still queued");
                    thread::yield_now();
                }
                Pop::Busy => {
                    assert!(seen < 2, "Busy after every push was done");
                    thread::yield_now();
                }
            }
        }
        for p in pushers {
            p.join().unwrap();
        }
        // SAFETY: the one consumer.
        assert_eq!(unsafe { q.pop() }, Pop::Empty);
    });
}

#[test]
fn the_stub_cycles_through_an_emptied_queue() {
    loom::model(|| {
        // Pop the last node (the stub is pushed behind it) while another
        // node is pushed: both still come out once, the queue is reusable.
        let q = Arc::new(RunQueue::new());
        let nodes = Nodes::new(3);
        // SAFETY: pushed once each.
        unsafe { q.push(nodes.fill(0)) };
        let pusher = {
            let (q, nodes) = (q.clone(), nodes.clone());
            // SAFETY: pushed once.
            thread::spawn(move || unsafe { q.push(nodes.fill(1)) })
        };
        let mut got = take(&q, &nodes, 2);
        pusher.join().unwrap();
        // SAFETY: pushed once; the one consumer pops.
        unsafe { q.push(nodes.fill(2)) };
        got.extend(take(&q, &nodes, 1));
        assert_eq!(got[0], 0, "FIFO: {got:?}");
        let mut sorted = got.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![0, 1, 2]);
        // SAFETY: the one consumer.
        assert_eq!(unsafe { q.pop() }, Pop::Empty);
    });
}
