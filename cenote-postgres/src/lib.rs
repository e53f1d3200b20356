#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod builder;
mod client;
mod error;
mod manager;
mod pending;
mod reset;
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub mod tls;
mod track;
mod transaction;

pub use builder::Builder;
pub use client::{Client, Params, Query};
pub use error::Error;
pub use manager::Manager;
pub use reset::{Reset, Statements};
pub use tokio_postgres;
pub use transaction::Transaction;

/// A pool of PostgreSQL connections.
pub type Pool = cenote::resources::Pool<Manager>;
/// A connection lent by the [`Pool`]: derefs to [`Client`].
pub type Pooled = cenote::resources::Pooled<Manager>;
