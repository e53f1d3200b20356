//! [`Toxics`]: what the proxy does to the bytes of a connection.

use std::time::Duration;

/// The faults applied to a proxied connection, in both directions. The
/// default passes everything through untouched.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Toxics {
    pub(crate) latency: Duration,
    pub(crate) bandwidth: Option<u64>,
    pub(crate) black_hole: bool,
    pub(crate) limit_data: Option<u64>,
    pub(crate) slow_close: Duration,
}

impl Toxics {
    /// No fault.
    pub fn none() -> Self {
        Self::default()
    }

    /// Each chunk of bytes waits `d` before it is passed on.
    pub fn latency(mut self, d: Duration) -> Self {
        self.latency = d;
        self
    }

    /// At most `bytes_per_sec` bytes a second, in each direction.
    pub fn bandwidth(mut self, bytes_per_sec: u64) -> Self {
        self.bandwidth = Some(bytes_per_sec.max(1));
        self
    }

    /// Bytes are read and dropped: the connection stays open and nothing
    /// is ever answered.
    pub fn black_hole(mut self) -> Self {
        self.black_hole = true;
        self
    }

    /// The connection is cut (reset) once `n` bytes have passed, both
    /// directions counted together.
    pub fn limit_data(mut self, n: u64) -> Self {
        self.limit_data = Some(n);
        self
    }

    /// A close from one side reaches the other only after `d`.
    pub fn slow_close(mut self, d: Duration) -> Self {
        self.slow_close = d;
        self
    }
}
