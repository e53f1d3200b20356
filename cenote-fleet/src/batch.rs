//! Combining: the acquires, releases and cancels of one handle go to Redis
//! as batches, one script and one round trip each, with one batch in
//! flight at a time. A call made while none is in flight leaves at once
//! (an uncontended acquire and release still cost one round trip each);
//! calls made while one is in flight wait for it and leave together in
//! the next, up to [`IN_FLIGHT`] batches at once. Under load a script then
//! serves many calls, and Redis spends its time on grants rather than on a
//! script's fixed cost (parsing, `TIME`, reclaiming, the network).
//!
//! Batches in flight reach Redis in the order their tasks send them, not
//! always the order their calls were made, so a waiter's cancel can run
//! before its acquire; an acquire whose caller is gone when its answer
//! comes is therefore cancelled again, after it ([`undo`]).
//!
//! DESIGN.md, "Batches", has the measurement against one script per call.

use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::error::Error;
use crate::shared::{Grant, Shared};

/// The most calls one script serves: a batch blocks Redis while it runs.
const MAX_BATCH: usize = 256;

/// Batches in flight at once: while one runs in Redis, the next is on
/// the wire or being read (DESIGN.md, "Batches", has the measurement).
const IN_FLIGHT: usize = 3;

/// An acquire: waiter `id` asks for `n` permits.
#[derive(Clone)]
pub(crate) struct Ask {
    pub(crate) id: String,
    pub(crate) n: u64,
    /// `try_acquire`: a grant at once or nothing.
    pub(crate) try_only: bool,
    /// The waiter's first call (it can be neither queued nor granted yet,
    /// which the script then need not look up).
    pub(crate) first: bool,
}

/// One call.
pub(crate) enum Call {
    Acquire(Ask),
    Release { id: String, n: u64 },
    Cancel(String),
}

impl Call {
    /// The call as the script's three arguments: kind, id, permits.
    fn args(&self) -> (&'static str, &str, u64) {
        match self {
            Call::Acquire(a) => {
                let kind = match (a.try_only, a.first) {
                    (true, _) => "T",
                    (false, true) => "W",
                    (false, false) => "w",
                };
                (kind, &a.id, a.n)
            }
            Call::Release { id, n } => ("R", id, *n),
            Call::Cancel(id) => ("C", id, 0),
        }
    }
}

/// What the script said of one call: three numbers (see `scripts.rs`,
/// `BATCH`).
pub(crate) type Answer = [i64; 3];

type Waiter = oneshot::Sender<Result<Answer, Error>>;

/// The calls waiting for the next batch.
#[derive(Default)]
pub(crate) struct Batches {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    pending: Vec<(Call, Waiter)>,
    in_flight: usize,
}

/// Runs `call` in the next batch.
pub(crate) async fn submit(shared: &Arc<Shared>, call: Call) -> Result<Answer, Error> {
    let (tx, rx) = oneshot::channel();
    let start = {
        let mut st = shared.batches.state.lock();
        st.pending.push((call, tx));
        let start = st.in_flight < IN_FLIGHT;
        if start {
            st.in_flight += 1;
        }
        start
    };
    if start {
        // The guard is made here, not in the task: a runtime that has shut
        // down drops the task unpolled, and the guard's drop still fails
        // the waiting calls instead of leaving them waiting forever.
        let guard = Stop {
            shared: shared.clone(),
            armed: true,
        };
        shared.rt.spawn(drain(guard));
    }
    rx.await.map_err(|_| Error::RuntimeGone)?
}

/// Sends batches until no call waits. Dropped midway or never run (its
/// runtime shut down), it fails the waiting calls and lets the next call
/// start again.
async fn drain(mut guard: Stop) {
    let shared = guard.shared.clone();
    loop {
        let calls = {
            let mut st = shared.batches.state.lock();
            if st.pending.is_empty() {
                st.in_flight -= 1;
                guard.armed = false;
                return;
            }
            let take = st.pending.len().min(MAX_BATCH);
            st.pending.drain(..take).collect::<Vec<_>>()
        };
        let (calls, waiters): (Vec<Call>, Vec<Waiter>) = calls.into_iter().unzip();
        match run(&shared, &calls).await {
            Ok(answers) => {
                for ((w, a), c) in waiters.into_iter().zip(answers).zip(calls) {
                    if w.send(Ok(a)).is_err() {
                        undo(&shared, c);
                    }
                }
            }
            Err(e) => {
                for w in waiters {
                    let _ = w.send(Err(e.duplicate()));
                }
            }
        }
    }
}

/// An acquire whose caller was gone before its answer came: the waiter's
/// own cancel may have run before it (batches in flight overlap), so a
/// cancel sent now, after it, gives back the grant or the queue place it
/// may have made.
fn undo(shared: &Arc<Shared>, call: Call) {
    if let Call::Acquire(a) = call {
        let s = shared.clone();
        shared.background.spawn(&shared.rt, async move {
            let _ = s.cancel(&a.id).await;
        });
    }
}

/// A draining task's place among the batches in flight.
struct Stop {
    shared: Arc<Shared>,
    armed: bool,
}

impl Drop for Stop {
    fn drop(&mut self) {
        if self.armed {
            let mut st = self.shared.batches.state.lock();
            st.pending.clear();
            st.in_flight -= 1;
        }
    }
}

/// One batch: the answers in the calls' order. Grants the script made to
/// this process's queued waiters are handed to them here.
async fn run(shared: &Shared, calls: &[Call]) -> Result<Vec<Answer>, Error> {
    let mut inv = shared.invocation(&shared.scripts.batch);
    inv.arg(shared.cap)
        .arg(&shared.prefix)
        .arg(shared.ttl.as_micros() as u64)
        .arg(&shared.process);
    for c in calls {
        let (kind, id, n) = c.args();
        inv.arg(kind).arg(id).arg(n);
    }
    let sent = Instant::now();
    let reply: Vec<i64> = shared.run(inv).await?;
    let (&now, rest) = reply
        .split_first()
        .ok_or_else(|| Error::Protocol("empty batch reply".to_owned()))?;
    if rest.len() < 3 * calls.len() || rest.len() % 3 != 0 {
        return Err(Error::Protocol(
            "batch reply of the wrong length".to_owned(),
        ));
    }
    shared.clock.sample(sent, now);
    let (answers, mine) = rest.split_at(3 * calls.len());
    for g in mine.chunks(3) {
        let id = format!("{}:{}", shared.process, g[0]);
        let grant = shared.seen(Grant {
            token: g[1] as u64,
            expires_us: g[2],
        });
        shared.deliver(&id, grant);
    }
    Ok(answers.chunks(3).map(|a| [a[0], a[1], a[2]]).collect())
}
