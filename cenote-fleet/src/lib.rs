#![doc = include_str!("../README.md")]

mod acquire;
mod background;
mod batch;
mod builder;
mod clock;
mod error;
mod gate;
mod lease;
mod losses;
mod metrics;
mod renew;
mod scripts;
mod semaphore;
mod share;
mod shared;
mod trace;
mod wake;

pub use builder::Builder;
pub use error::Error;
pub use gate::{Fleeted, GateError, Gated};
pub use lease::Lease;
pub use losses::Losses;
pub use semaphore::Semaphore;
pub use share::{LocalPermit, LocalShare};
