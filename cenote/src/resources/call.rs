//! A call into the manager: bounded by its timeout (a timer made only if
//! the call's first poll is pending) and guarded against a panic, in one
//! hand-written future ([`Guarded`]).

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::runtime::Handle;

use super::timeout::LazyTimer;

/// How a call into the manager ended.
pub(super) enum Call<T, E> {
    Done(T),
    Failed(E),
    TimedOut,
    Panicked,
}

/// Runs a manager future bounded by `limit`, catching a panic (reported,
/// and treated as a failure: a panicking manager never takes a slot or
/// the background task down).
///
/// One hand-written layer (the timeout, made only if the first poll is
/// pending, and the panic guard), not an `async fn` around a timeout
/// around `catch_unwind`: every `get` of a returned resource runs the
/// manager's reset through it, so its layers were paid on each one.
pub(super) fn call<'h, F, T, E>(
    handle: &'h Handle,
    limit: Duration,
    what: &'static str,
    fut: F,
) -> Guarded<'h, F>
where
    F: Future<Output = Result<T, E>>,
{
    Guarded {
        fut,
        what,
        timer: LazyTimer::new(handle, limit),
    }
}

pin_project_lite::pin_project! {
    /// The future of [`call`].
    pub(super) struct Guarded<'h, F> {
        #[pin]
        fut: F,
        what: &'static str,
        timer: LazyTimer<'h>,
    }
}

impl<F, T, E> Future for Guarded<'_, F>
where
    F: Future<Output = Result<T, E>>,
{
    type Output = Call<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let fut = this.fut;
        match catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Ready(Ok(v))) => return Poll::Ready(Call::Done(v)),
            Ok(Poll::Ready(Err(e))) => return Poll::Ready(Call::Failed(e)),
            Ok(Poll::Pending) => {}
            Err(payload) => {
                crate::log::error!("cenote: the resource manager's {} panicked", this.what);
                crate::unwind::drop_payload(payload);
                return Poll::Ready(Call::Panicked);
            }
        }
        this.timer.poll_elapsed(cx).map(|()| Call::TimedOut)
    }
}
