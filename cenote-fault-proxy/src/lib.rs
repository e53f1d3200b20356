//! A TCP proxy for fault tests, with toxiproxy's toxics: latency,
//! bandwidth, black hole, reset peer, slow close, limit data, and the
//! server down and up. Each is switched at run time, for every connection
//! or for one. Also a private `redis-server` ([`RedisServer`]) for the
//! tests that stop or restart their server.
//!
//! ```no_run
//! use std::time::Duration;
//! use cenote_fault_proxy::{Proxy, Toxics};
//!
//! # async fn demo() -> std::io::Result<()> {
//! let proxy = Proxy::start("127.0.0.1:5432".parse().unwrap()).await?;
//! // Connect to proxy.addr() instead of the server, then:
//! proxy.set(Toxics::none().latency(Duration::from_millis(50)));
//! for id in proxy.connections() {
//!     proxy.set_for(id, Toxics::none().black_hole());
//! }
//! proxy.down(); // refused, and open connections reset
//! proxy.up()?;
//! # Ok(()) }
//! ```

mod chaos;
mod link;
mod proxy;
mod redis_server;
mod toxics;

pub use chaos::Chaos;
pub use proxy::{ConnId, Proxy};
pub use redis_server::RedisServer;
pub use toxics::Toxics;
