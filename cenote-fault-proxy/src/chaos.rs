//! [`Chaos`]: a random fault every tick, for soak tests.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::proxy::Proxy;
use crate::toxics::Toxics;

/// Faults a proxy at random until dropped: each tick one of no fault,
/// latency on every connection, a black hole on one connection, a reset
/// of one connection, a data limit on one connection, or the server down
/// for the tick.
#[derive(Debug)]
pub struct Chaos {
    task: JoinHandle<()>,
}

impl Chaos {
    /// Starts faulting `proxy` every `tick`, drawing from `seed`.
    pub fn start(proxy: Arc<Proxy>, tick: Duration, seed: u64) -> Chaos {
        let task = tokio::spawn(async move {
            let mut rng = seed | 1;
            loop {
                let pick = next(&mut rng);
                let conns = proxy.connections();
                let one =
                    (!conns.is_empty()).then(|| conns[(next(&mut rng) as usize) % conns.len()]);
                proxy.clear();
                match (pick % 6, one) {
                    (0, _) => {}
                    (1, _) => proxy.set(Toxics::none().latency(Duration::from_millis(pick % 40))),
                    (2, Some(id)) => proxy.set_for(id, Toxics::none().black_hole()),
                    (3, Some(id)) => proxy.reset_peer(id),
                    (4, Some(id)) => proxy.set_for(id, Toxics::none().limit_data(pick % 4096)),
                    (5, _) => proxy.down(),
                    _ => {}
                }
                tokio::time::sleep(tick).await;
                let _ = proxy.up();
            }
        });
        Chaos { task }
    }

    /// Stops; the proxy is left up and without faults.
    pub fn stop(self, proxy: &Proxy) {
        self.task.abort();
        proxy.clear();
        let _ = proxy.up();
    }
}

impl Drop for Chaos {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// xorshift64*.
fn next(s: &mut u64) -> u64 {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    s.wrapping_mul(0x2545_f491_4f6c_dd1d)
}
