//! Loom models of `cenote::tasks`' two state words (`src/tasks/protocol.rs`):
//! a lane's signal (no push missed by a lane about to park; pushes to a dead
//! lane drained exactly once) and a spawned future's cell state (never
//! queued twice, no wake lost while it runs, one party drops the future,
//! abort reaches it). Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p cenote --release --lib loom_`.
//!
//! The models drive the real `LaneSignal` and `CellState` (under loom the
//! `tasks` module holds only its tokio-free files, since tokio does not
//! build under loom) with the same call sequences as `lane.rs`, `run.rs`,
//! `waker.rs` and `eager.rs`, a loom mutex-protected queue standing in for
//! the lane's queue, and loom thread park/unpark standing in for the lane's
//! tokio waker. A lost wake-up shows
//! up as a deadlock report.

use std::collections::VecDeque;

use super::protocol::{Begin, CellState, LaneSignal, Notified, Woken};
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use loom::sync::{Arc, Mutex};
use loom::thread;

/// A lane: its queue, its signal, and the thread to unpark (its "waker").
struct Lane {
    queue: Mutex<VecDeque<u32>>,
    signal: LaneSignal,
    driver: Mutex<Option<thread::Thread>>,
    drained: AtomicUsize,
}

impl Lane {
    fn new() -> Arc<Lane> {
        Arc::new(Lane {
            queue: Mutex::new(VecDeque::new()),
            signal: LaneSignal::new(),
            driver: Mutex::new(None),
            drained: AtomicUsize::new(0),
        })
    }

    /// `Lane::push` in `lane.rs`.
    fn push(&self, item: u32) {
        self.queue.lock().unwrap().push_back(item);
        match self.signal.notify() {
            Notified::Nothing => {}
            Notified::Wake => {
                if let Some(t) = self.driver.lock().unwrap().as_ref() {
                    t.unpark();
                }
            }
            Notified::Dead => self.drain(),
        }
    }

    fn drain(&self) {
        while self.queue.lock().unwrap().pop_front().is_some() {
            self.drained.fetch_add(1, SeqCst);
        }
    }
}

#[test]
fn a_parking_lane_never_misses_a_push() {
    loom::model(|| {
        let lane = Lane::new();
        // The driver (its own thread, so that a late unpark never lands on
        // a thread blocked in `join`): rounds of begin / pop all / try to
        // park, as `Driver::poll`; parked means waiting for an unpark.
        let driver = {
            let lane = lane.clone();
            thread::spawn(move || {
                *lane.driver.lock().unwrap() = Some(thread::current());
                let mut got = 0;
                while got < 2 {
                    lane.signal.begin_round();
                    while lane.queue.lock().unwrap().pop_front().is_some() {
                        got += 1;
                    }
                    if got < 2 && lane.signal.try_park() {
                        thread::park();
                    }
                }
            })
        };
        let pusher = {
            let lane = lane.clone();
            thread::spawn(move || lane.push(1))
        };
        lane.push(2);
        pusher.join().unwrap();
        driver.join().unwrap();
    });
}

#[test]
fn cells_to_file_pushed_to_a_dying_lane_are_drained_exactly_once() {
    // `Lane::push_file`: push, then `note` (no wake-up); a lane found dead
    // is drained by the pusher.
    loom::model(|| {
        let lane = Lane::new();
        let pusher = {
            let lane = lane.clone();
            thread::spawn(move || {
                for item in [1, 2] {
                    lane.queue.lock().unwrap().push_back(item);
                    if lane.signal.note() {
                        lane.drain();
                    }
                }
            })
        };
        lane.signal.die();
        lane.drain();
        pusher.join().unwrap();
        assert_eq!(lane.drained.load(SeqCst), 2, "each push drained once");
        assert!(lane.queue.lock().unwrap().is_empty());
    });
}

#[test]
fn a_note_never_hides_a_later_push_from_a_parked_lane() {
    // A note leaves a parked driver parked; a push after it must still
    // wake it.
    loom::model(|| {
        let lane = Lane::new();
        let driver = {
            let lane = lane.clone();
            thread::spawn(move || {
                *lane.driver.lock().unwrap() = Some(thread::current());
                let mut got = 0;
                while got < 2 {
                    lane.signal.begin_round();
                    while lane.queue.lock().unwrap().pop_front().is_some() {
                        got += 1;
                    }
                    if got < 2 && lane.signal.try_park() {
                        thread::park();
                    }
                }
            })
        };
        // Noted (to file), then pushed (a wake): the lane must see both.
        lane.queue.lock().unwrap().push_back(1);
        assert!(!lane.signal.note());
        lane.push(2);
        driver.join().unwrap();
    });
}

#[test]
fn pushes_to_a_dying_lane_are_drained_exactly_once() {
    loom::model(|| {
        let lane = Lane::new();
        let pusher = {
            let lane = lane.clone();
            thread::spawn(move || {
                lane.push(1);
                lane.push(2);
            })
        };
        // The driver exits: `Drop for Driver` marks the lane dead, then
        // drains.
        lane.signal.die();
        lane.drain();
        pusher.join().unwrap();
        assert!(lane.signal.is_dead());
        assert_eq!(lane.drained.load(SeqCst), 2, "each push drained once");
        assert!(lane.queue.lock().unwrap().is_empty());
    });
}

/// A cell and its lane's queue of cells (at most one entry: the cell).
struct Cell {
    state: CellState,
    queued: AtomicUsize,
    driver: Mutex<Option<thread::Thread>>,
    /// What the future waits for.
    ready: AtomicBool,
    dropped: AtomicUsize,
}

impl Cell {
    /// A cell whose first poll its spawner makes (eager start): RUNNING,
    /// in no queue.
    fn new_eager() -> Arc<Cell> {
        Arc::new(Cell {
            state: CellState::new_running(),
            queued: AtomicUsize::new(0),
            driver: Mutex::new(None),
            ready: AtomicBool::new(false),
            dropped: AtomicUsize::new(0),
        })
    }

    fn new() -> Arc<Cell> {
        Arc::new(Cell {
            state: CellState::new_scheduled(),
            // A new cell is pushed at spawn.
            queued: AtomicUsize::new(1),
            driver: Mutex::new(None),
            ready: AtomicBool::new(false),
            dropped: AtomicUsize::new(0),
        })
    }

    fn push(&self) {
        self.push_quietly();
        self.unpark_driver();
    }

    /// A push that does not wake the lane (`Lane::push_file`).
    fn push_quietly(&self) {
        let before = self.queued.fetch_add(1, SeqCst);
        assert_eq!(before, 0, "a cell is never queued twice");
    }

    fn unpark_driver(&self) {
        if let Some(t) = self.driver.lock().unwrap().as_ref() {
            t.unpark();
        }
    }

    /// The waker (`ArcWake::wake_by_ref` in `waker.rs`).
    fn wake(&self) {
        match self.state.mark_woken() {
            Woken::Push => self.push(),
            Woken::Notify => {
                // The real notify is a read-modify-write of the lane's
                // signal word, which the push's own signal (`note`) also
                // writes, so the two are ordered; here `queued` plays that
                // word.
                self.queued.fetch_add(0, SeqCst);
                self.unpark_driver();
            }
            Woken::Nothing => {}
        }
    }

    fn drop_future(&self) {
        assert_eq!(
            self.dropped.fetch_add(1, SeqCst),
            0,
            "the future is dropped once"
        );
    }

    /// The driver, until the cell is done: pop, `begin_run`, poll (ready
    /// once `ready` is set), and `end_pending` / `claim_done`, as
    /// `Cell::run`. Between runs with nothing queued it parks (a parked
    /// lane, unparked by the push).
    fn drive(&self) {
        *self.driver.lock().unwrap() = Some(thread::current());
        loop {
            if self.queued.load(SeqCst) == 0 {
                if self.state.is_done() {
                    return;
                }
                thread::park();
                continue;
            }
            self.queued.fetch_sub(1, SeqCst);
            match self.state.begin_run() {
                Begin::Done => return,
                Begin::Abort => {
                    if self.state.claim_done() {
                        self.drop_future();
                    }
                    return;
                }
                // Queued by `end_eager` unwoken: filed (nothing to do
                // here), then back in line if woken while being filed.
                Begin::File => {
                    if self.state.end_pending() {
                        self.push();
                    }
                    continue;
                }
                Begin::Poll => {}
            }
            if self.ready.load(SeqCst) {
                if self.state.claim_done() {
                    self.drop_future();
                }
                return;
            }
            if self.state.end_pending() {
                self.push();
            }
        }
    }
}

#[test]
fn a_wake_during_a_poll_is_not_lost_and_never_double_queues() {
    loom::model(|| {
        let cell = Cell::new();
        let waker = {
            let cell = cell.clone();
            thread::spawn(move || {
                // The event the future waits for, then its wake (twice: a
                // duplicate wake must not queue the cell twice).
                cell.ready.store(true, SeqCst);
                cell.wake();
                cell.wake();
            })
        };
        let driver = {
            let cell = cell.clone();
            thread::spawn(move || cell.drive())
        };
        waker.join().unwrap();
        driver.join().unwrap();
        assert!(cell.state.is_done());
        assert_eq!(cell.dropped.load(SeqCst), 1);
    });
}

#[test]
fn abort_reaches_a_waiting_future() {
    loom::model(|| {
        // The future never becomes ready; only the abort ends it.
        let cell = Cell::new();
        let aborter = {
            let cell = cell.clone();
            thread::spawn(move || {
                if cell.state.request_abort() {
                    cell.wake();
                }
            })
        };
        let driver = {
            let cell = cell.clone();
            thread::spawn(move || cell.drive())
        };
        aborter.join().unwrap();
        driver.join().unwrap();
        assert!(cell.state.is_done());
        assert_eq!(cell.dropped.load(SeqCst), 1);
        // A wake after the end does nothing.
        assert_eq!(cell.state.mark_woken(), Woken::Nothing);
    });
}

#[test]
fn cancel_and_completion_race_for_the_future() {
    loom::model(|| {
        // A lane dropping its cells (runtime shutdown) races the run that
        // completes the future: exactly one of them drops it.
        let cell = Cell::new();
        cell.ready.store(true, SeqCst);
        let canceller = {
            let cell = cell.clone();
            thread::spawn(move || {
                if cell.state.claim_done() {
                    cell.drop_future();
                }
            })
        };
        let driver = {
            let cell = cell.clone();
            thread::spawn(move || cell.drive())
        };
        canceller.join().unwrap();
        driver.join().unwrap();
        assert_eq!(cell.dropped.load(SeqCst), 1);
    });
}

#[test]
fn an_eager_first_poll_racing_a_wake_hands_the_cell_over_once() {
    loom::model(|| {
        // The spawner polls the new cell itself while its event fires; the
        // cell ends exactly once, is never queued twice, and a wake during
        // that poll is not lost (the driver finishes it, or it finished in
        // the first poll).
        let cell = Cell::new_eager();
        let waker = {
            let cell = cell.clone();
            thread::spawn(move || {
                cell.ready.store(true, SeqCst);
                cell.wake();
            })
        };
        let driver = {
            let cell = cell.clone();
            thread::spawn(move || cell.drive())
        };
        // The first poll (`first_poll` in eager.rs, then `settle_eager` in
        // run.rs):
        // a waiting cell is always queued, to be polled if the wake came
        // during that poll, otherwise to be filed (SCHEDULED | FILE; a wake
        // while it is queued so turns it into a poll).
        if cell.ready.load(SeqCst) {
            if cell.state.claim_done() {
                cell.drop_future();
            }
            // A driver parked on the empty queue sees DONE when unparked.
            if let Some(t) = cell.driver.lock().unwrap().as_ref() {
                t.unpark();
            }
        } else if cell.state.end_eager() {
            cell.push();
        } else {
            // Queued to be filed: the lane is not woken for that, so the
            // wake that comes while it is queued must wake it, and a wake
            // that came before the push was done is looked for after it
            // (`settle_eager`).
            cell.push_quietly();
            if cell.state.woken_while_filing() {
                cell.unpark_driver();
            }
        }
        waker.join().unwrap();
        driver.join().unwrap();
        assert!(cell.state.is_done());
        assert_eq!(cell.dropped.load(SeqCst), 1);
    });
}
