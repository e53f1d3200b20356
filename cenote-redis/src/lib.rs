#![doc = include_str!("../README.md")]

mod builder;
mod commands;
mod connect;
mod connection;
mod error;
mod manager;
mod pool;

pub use builder::Builder;
pub use connection::Connection;
pub use error::Error;
pub use manager::Manager;
pub use pool::Pool;
pub use redis;

/// A connection lent by the [`Pool`]: derefs to [`Connection`].
pub type Pooled = cenote::resources::Pooled<Manager>;
