//! The wake listener: one task per handle, on a connection of its own,
//! reading the grants that other processes' calls push to this process's
//! list (`BLMPOP`, every grant waiting at once, blocking one second at a
//! time), and handing each to its waiter.
//! With no waiter here it sends nothing to Redis.

use std::sync::Weak;
use std::time::Duration;

use redis::aio::ConnectionManager;

use crate::shared::{Grant, Shared};

/// How long one `BLMPOP` blocks: an idle waiting process costs Redis one
/// call per this.
const BLOCK: Duration = Duration::from_secs(1);

/// The most grants one read takes off the list.
const BATCH: usize = 512;

pub(crate) async fn run(shared: Weak<Shared>, mut conn: ConnectionManager, key: String) {
    loop {
        {
            let Some(s) = shared.upgrade() else {
                return;
            };
            if s.waiters.lock().is_empty() {
                // Wakes for the first waiter (its notification is kept if
                // it comes first), or looks again whether the handle lives.
                let _ = tokio::time::timeout(BLOCK, s.waiter_added.notified()).await;
                continue;
            }
        }
        // Every grant waiting in the list in one round trip: under load the
        // listener would otherwise deliver one grant per round trip.
        let popped: redis::RedisResult<Option<(String, Vec<String>)>> = redis::cmd("BLMPOP")
            .arg(BLOCK.as_secs_f64())
            .arg(1)
            .arg(&key)
            .arg("LEFT")
            .arg("COUNT")
            .arg(BATCH)
            .query_async(&mut conn)
            .await;
        match popped {
            Ok(Some((_, messages))) => {
                for m in &messages {
                    deliver(&shared, m);
                }
            }
            Ok(None) => {}
            // Redis restarting or unreachable: the connection reconnects;
            // a grant pushed meanwhile reaches its waiter through the next
            // renewal.
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// `id|token|expiry`: the grant of waiter `id`.
fn deliver(shared: &Weak<Shared>, message: &str) {
    let Some(shared) = shared.upgrade() else {
        return;
    };
    let mut parts = message.split('|');
    let (Some(id), Some(token), Some(expires)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    let (Ok(token), Ok(expires_us)) = (token.parse(), expires.parse()) else {
        return;
    };
    shared.deliver(id, shared.seen(Grant { token, expires_us }));
}
