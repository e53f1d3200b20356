//! A periodic sampler: seed 000's tracker, for any pool or semaphore.

use std::fmt;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Samples something on a period and hands each sample to a callback,
/// from a thread of its own, until it is stopped or dropped.
///
/// ```
/// use cenote::limit::{Monitor, Semaphore};
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
///
/// let sem = Arc::new(Semaphore::new(3));
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let (s, out) = (sem.clone(), seen.clone());
/// let _held = sem.acquire_blocking().unwrap();
/// let monitor = Monitor::start(
///     Duration::from_millis(5),
///     move || s.in_use(),
///     move |in_use| out.lock().unwrap().push(in_use),
/// )
/// .unwrap();
/// std::thread::sleep(Duration::from_millis(30));
/// monitor.stop();
/// assert!(seen.lock().unwrap().iter().all(|&n| n == 1));
/// ```
pub struct Monitor {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

/// Why a monitor could not start.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// A period of zero would sample in a busy loop.
    #[error("the monitor's period must be above zero")]
    ZeroPeriod,
    /// The sampling thread could not be started.
    #[error("could not start the monitor's thread: {0}")]
    Spawn(#[from] std::io::Error),
}

impl Monitor {
    /// Calls `report(sample())` every `period` (the first after one period)
    /// on a thread named `cenote-monitor`. A panic in either callback ends
    /// the monitor and is logged.
    pub fn start<S, T>(
        period: Duration,
        mut sample: impl FnMut() -> S + Send + 'static,
        mut report: impl FnMut(S) -> T + Send + 'static,
    ) -> Result<Monitor, MonitorError> {
        if period.is_zero() {
            return Err(MonitorError::ZeroPeriod);
        }
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("cenote-monitor".to_owned())
            .spawn(move || {
                let (lock, cv) = &*flag;
                let mut next = Instant::now().checked_add(period);
                loop {
                    let mut stopped = lock.lock().unwrap_or_else(PoisonError::into_inner);
                    loop {
                        if *stopped {
                            return;
                        }
                        let Some(deadline) = next else {
                            // A period too long to represent: wait for stop.
                            stopped = cv.wait(stopped).unwrap_or_else(PoisonError::into_inner);
                            continue;
                        };
                        let now = Instant::now();
                        if now >= deadline {
                            break;
                        }
                        stopped = cv
                            .wait_timeout(stopped, deadline - now)
                            .unwrap_or_else(PoisonError::into_inner)
                            .0;
                    }
                    drop(stopped);
                    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        drop(report(sample()));
                    }));
                    if ran.is_err() {
                        crate::log::error!(
                            "cenote: a monitor's callback panicked; the monitor stops"
                        );
                        return;
                    }
                    next = next.and_then(|n| n.checked_add(period));
                }
            })?;
        Ok(Monitor {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops sampling and waits for the monitor's thread (a report in
    /// progress finishes first).
    pub fn stop(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        let (lock, cv) = &*self.stop;
        *lock.lock().unwrap_or_else(PoisonError::into_inner) = true;
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.shut();
    }
}

impl fmt::Debug for Monitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Monitor")
            .field("running", &self.thread.is_some())
            .finish()
    }
}
