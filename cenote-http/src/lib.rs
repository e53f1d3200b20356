#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod body;
mod builder;
mod client;
mod conn;
mod error;
mod metrics;
mod origin;
mod origins;
mod retry;
#[cfg(feature = "tls")]
mod tls;

pub use body::{Body, ResponseBody};
pub use builder::{BuildError, Builder};
pub use client::Client;
pub use conn::{Conn, Connector};
pub use error::{ConnectError, Error};
pub use origin::Origin;
pub use retry::RetrySafe;
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub use rustls;
pub use {bytes, http};
