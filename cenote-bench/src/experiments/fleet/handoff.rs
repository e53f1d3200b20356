//! Wake latency: with a cap of one permit, each grant follows the release
//! of the one before it (tokens are consecutive), so the time from a
//! release to the next grant is the hand-off to a queued waiter, in
//! whichever process it waits. Both ends are read on the wall clock, which
//! all processes of one machine share.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use std::sync::Mutex;

/// One grant: its token, when it arrived, when its release began (µs on
/// the wall clock).
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Turn {
    pub token: u64,
    pub granted_us: u64,
    pub released_us: u64,
}

/// The turns of one process's tasks.
#[derive(Clone, Default)]
pub struct Turns(Arc<Mutex<Vec<Turn>>>);

impl Turns {
    pub fn push(&self, t: Turn) {
        self.0.lock().expect("not poisoned").push(t);
    }

    pub fn take(&self) -> Vec<Turn> {
        std::mem::take(&mut *self.0.lock().expect("not poisoned"))
    }
}

pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The hand-offs (µs, sorted): each grant after the release of the token
/// just before it.
pub fn handoffs(mut turns: Vec<Turn>) -> Vec<u64> {
    turns.sort_unstable_by_key(|t| t.token);
    let mut out: Vec<u64> = turns
        .windows(2)
        .filter(|w| w[1].token == w[0].token + 1)
        .map(|w| w[1].granted_us.saturating_sub(w[0].released_us))
        .collect();
    out.sort_unstable();
    out
}

/// The `q` quantile of sorted values.
pub fn quantile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i] as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handoff_is_the_next_tokens_grant_after_a_release() {
        let t = |token, granted_us, released_us| Turn {
            token,
            granted_us,
            released_us,
        };
        // Out of order, and a gap (token 4 missing): 2→3 and 5→6 count.
        let got = handoffs(vec![
            t(6, 700, 710),
            t(2, 100, 200),
            t(3, 260, 300),
            t(5, 600, 650),
        ]);
        assert_eq!(got, vec![50, 60]);
        assert_eq!(quantile(&got, 0.5), 60.0);
        assert_eq!(quantile(&[], 0.99), 0.0);
    }
}
