//! Loom models of the workers' bounded queue (`cenote/src/sync/mpmc.rs`):
//! nothing lost, nothing taken twice, FIFO per producer, and `Busy` only
//! while a push is really under way.
//!
//! Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p cenote --release --lib loom_`.

use std::sync::Arc;

use super::mpmc::{ArrayQueue, TryPop};
use loom::thread;

/// Pops until `n` values came out, yielding while empty or busy.
fn take(q: &ArrayQueue<usize>, n: usize) -> Vec<usize> {
    let mut got = Vec::new();
    while got.len() < n {
        match q.try_pop() {
            TryPop::Item(v) => got.push(v),
            TryPop::Empty | TryPop::Busy => thread::yield_now(),
        }
    }
    got
}

#[test]
fn two_producers_one_consumer_nothing_lost_or_doubled() {
    loom::model(|| {
        let q = Arc::new(ArrayQueue::new(2));
        let producers: Vec<_> = (0..2)
            .map(|p| {
                let q = q.clone();
                thread::spawn(move || {
                    let mut v = p;
                    while let Err(back) = q.push(v) {
                        v = back;
                        thread::yield_now();
                    }
                })
            })
            .collect();
        let mut got = take(&q, 2);
        for p in producers {
            p.join().unwrap();
        }
        got.sort_unstable();
        assert_eq!(got, vec![0, 1]);
        assert!(q.is_empty());
        assert!(matches!(q.try_pop(), TryPop::Empty));
    });
}

#[test]
fn a_wrapping_producer_and_a_consumer_keep_fifo() {
    loom::model(|| {
        // Capacity 1: the second push waits for the first pop, so the
        // slot's stamp goes round a second lap while the consumer works.
        let q = Arc::new(ArrayQueue::new(1));
        let q2 = q.clone();
        let producer = thread::spawn(move || {
            for v in 0..2 {
                let mut v = v;
                while let Err(back) = q2.push(v) {
                    v = back;
                    thread::yield_now();
                }
            }
        });
        assert_eq!(take(&q, 2), vec![0, 1]);
        producer.join().unwrap();
        assert!(q.is_empty());
    });
}

#[test]
fn busy_only_while_a_push_is_under_way_then_the_value() {
    loom::model(|| {
        let q = Arc::new(ArrayQueue::new(2));
        let q2 = q.clone();
        let producer = thread::spawn(move || q2.push(7).unwrap());
        let first = q.try_pop();
        let saw_busy = matches!(first, TryPop::Busy);
        let value = match first {
            TryPop::Item(v) => v,
            TryPop::Empty | TryPop::Busy => {
                producer.join().unwrap();
                // The push is done: the value must be there now.
                match q.try_pop() {
                    TryPop::Item(v) => {
                        assert_eq!(v, 7);
                        return;
                    }
                    _ => panic!("a finished push's value is missing (busy before: {saw_busy})"),
                }
            }
        };
        assert_eq!(value, 7);
        producer.join().unwrap();
        assert!(matches!(q.try_pop(), TryPop::Empty));
    });
}
