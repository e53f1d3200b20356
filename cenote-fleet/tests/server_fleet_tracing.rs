//! The fleet semaphore's spans and events, read back by a subscriber
//! layer: the acquire span with its token, error and wait; the warning
//! when a lease is lost, with why; the warning when Redis lost the
//! semaphore's state.
#![cfg(feature = "tracing")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

mod common;
use common::{build, cleanup, expire_leases, name, url};

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

impl Seen {
    fn has(&self, parts: &[&str]) -> bool {
        self.0
            .lock()
            .unwrap()
            .iter()
            .any(|l| parts.iter().all(|p| l.contains(p)))
    }
}

struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={:?}", field.name(), value));
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Seen {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: Context<'_, S>,
    ) {
        let mut text = Text(format!("span {}", attrs.metadata().name()));
        attrs.record(&mut text);
        self.0.lock().unwrap().push(text.0);
    }

    fn on_record(
        &self,
        _: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        _: Context<'_, S>,
    ) {
        let mut text = Text("record".to_owned());
        values.record(&mut text);
        self.0.lock().unwrap().push(text.0);
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut text = Text(format!("{} event", event.metadata().level()));
        event.record(&mut text);
        self.0.lock().unwrap().push(text.0);
    }
}

// One thread: the subscriber is this thread's default, and the
// semaphore's own tasks run here too.
#[tokio::test(flavor = "current_thread")]
async fn acquires_losses_and_lost_state_are_traced() {
    let Some(url) = url() else { return };
    let seen = Seen::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(seen.clone()));
    let n = name("tracing");
    cleanup(&url, &n).await;
    let sem = build(&url, &n, 1, Duration::from_secs(5)).await;
    let lease = sem.acquire().await.unwrap();
    let token = lease.token();
    assert!(seen.has(&["span cenote.fleet.acquire", &n, "permits=1"]));
    assert!(seen.has(&["record", &format!("token={token}")]));
    assert!(seen.has(&["record", "waited_us="]));
    assert!(sem.try_acquire().await.is_err());
    assert!(seen.has(&["record", "error=no fleet permit free"]));
    // Its lease ends on Redis's clock: the renewal finds it expired.
    expire_leases(&url, &n).await;
    sem.renew_now().await;
    assert!(!lease.is_valid());
    assert!(seen.has(&[
        "WARN event",
        "a lease was lost",
        &format!("token={token}"),
        "expired on Redis's clock"
    ]));
    drop(lease);
    // The whole record vanishes.
    cleanup(&url, &n).await;
    assert!(sem.try_acquire().await.is_err());
    assert!(seen.has(&[
        "WARN event",
        "Redis lost the semaphore's state",
        "the whole record"
    ]));
    cleanup(&url, &n).await;
}
