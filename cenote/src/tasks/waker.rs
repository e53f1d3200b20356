//! A cell is its own waker (`ArcWake`): a wake of an idle cell queues it
//! on its lane, and the state word (`protocol.rs`) decides which wake does.

use std::future::Future;
use std::sync::Arc;

use futures_util::task::ArcWake;

use super::cell::Cell;
use super::protocol::Woken;

impl<F> ArcWake for Cell<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn wake_by_ref(arc_self: &Arc<Self>) {
        match arc_self.state.mark_woken() {
            Woken::Push => Self::schedule(arc_self),
            Woken::Notify => arc_self.pool.lane(arc_self.lane()).poke(),
            Woken::Nothing => {}
        }
    }
}
