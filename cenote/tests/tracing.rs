//! The resource pool's spans and events, read back by a subscriber layer:
//! the `acquire` and `create` spans, the slow-get warning, one warning for a
//! permanent create error however many gets hit it, and a debug event per
//! closed resource.
#![cfg(feature = "tracing")]

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cenote::resources::{GetError, Manager, Pool};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

impl Seen {
    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
    fn count(&self, prefix: &str) -> usize {
        self.lines()
            .iter()
            .filter(|l| l.starts_with(prefix))
            .count()
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

#[derive(Debug, thiserror::Error)]
#[error("bad password")]
struct BadPassword;

#[derive(Default)]
struct Knobs {
    locked_out: AtomicBool,
}

#[derive(Clone, Default)]
struct Db(Arc<Knobs>);

impl Manager for Db {
    type Resource = u32;
    type Error = BadPassword;
    async fn create(&self) -> Result<u32, BadPassword> {
        if self.0.locked_out.load(SeqCst) {
            return Err(BadPassword);
        }
        Ok(1)
    }
    fn is_permanent(&self, _: &BadPassword) -> bool {
        true
    }
}

fn with_layer(f: impl FnOnce()) -> Seen {
    let seen = Seen::default();
    let subscriber = tracing_subscriber::registry().with(seen.clone());
    tracing::subscriber::with_default(subscriber, f);
    seen
}

/// Runs `f` on a current-thread runtime (on this thread, so the
/// subscriber set for it sees the pool's tasks too).
fn current_thread<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn gets_and_creates_are_spans_and_slow_gets_and_closes_are_events() {
    let seen = with_layer(|| {
        current_thread(async {
            let pool = Pool::builder(Db::default())
                .name("traced-db")
                .capacity(1)
                .warn_slow_get(Duration::from_millis(1))
                .build()
                .unwrap();
            let held = pool.get().await.unwrap();
            let waiter = {
                let pool = pool.clone();
                tokio::spawn(async move { pool.get().await.map(drop) })
            };
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(held);
            waiter.await.unwrap().unwrap();
            pool.close();
        });
    });
    let lines = seen.lines();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("span acquire") && l.contains("traced-db")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("span create") && l.contains("traced-db")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("outcome=\"ok\"")),
        "{lines:#?}"
    );
    assert_eq!(seen.count("WARN event"), 1, "one slow get: {lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("DEBUG event") && l.contains("reason=Evicted")),
        "a close event: {lines:#?}"
    );
}

#[test]
fn a_permanent_create_error_is_warned_once_for_many_gets() {
    let seen = with_layer(|| {
        current_thread(async {
            let db = Db::default();
            db.0.locked_out.store(true, SeqCst);
            let pool = Pool::builder(db.clone()).name("locked-db").build().unwrap();
            for _ in 0..5 {
                let got = pool.get().await;
                assert!(matches!(got, Err(GetError::Create(_))), "{got:?}");
            }
            db.0.locked_out.store(false, SeqCst);
            drop(pool.get().await.unwrap());
            db.0.locked_out.store(true, SeqCst);
            pool.evict_idle();
            assert!(pool.get().await.is_err());
        });
    });
    let warns: Vec<String> = seen
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("WARN event") && l.contains("for good"))
        .collect();
    assert_eq!(
        warns.len(),
        2,
        "once, and once more after a good create: {warns:#?}"
    );
    assert!(warns[0].contains("bad password"), "{warns:#?}");
}

#[test]
fn without_a_subscriber_a_get_makes_no_span() {
    // Nothing to observe but that it works: the span is never built.
    current_thread(async {
        let pool = Pool::builder(Db::default()).build().unwrap();
        drop(pool.get().await.unwrap());
    });
    assert!(!tracing::enabled!(Level::ERROR));
}
