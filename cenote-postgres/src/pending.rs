//! A reset sent but not yet answered. The reset goes out at checkout
//! without waiting: the borrower's first request follows it on the same
//! socket, so the server runs the reset first and the borrower pays no
//! round trip for it. Its answers are read before that request's result
//! is handed over; a reset that failed leaves the connection marked
//! broken.

use std::pin::Pin;

use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio_postgres::SimpleQueryStream;

/// Sent resets whose answers are still to be read.
#[derive(Default)]
pub(crate) struct Pending(Mutex<Vec<Pin<Box<SimpleQueryStream>>>>);

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pending({})", self.0.lock().len())
    }
}

impl Pending {
    pub(crate) fn push(&self, sent: SimpleQueryStream) {
        self.0.lock().push(Box::pin(sent));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.lock().is_empty()
    }

    /// Reads every pending reset's answers; `Err` with the first failure.
    pub(crate) async fn settle(&self) -> Result<(), tokio_postgres::Error> {
        let sent = std::mem::take(&mut *self.0.lock());
        let mut first_error = None;
        for mut answers in sent {
            while let Some(m) = answers.next().await {
                // A failed stream answers the same error on every poll
                // (a closed socket): the first one ends it.
                if let Err(e) = m {
                    first_error.get_or_insert(e);
                    break;
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
