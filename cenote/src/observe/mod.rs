//! What every pool tells a monitoring system: its name, and with the
//! `metrics` feature its levels, counters and histograms through the
//! [`metrics`](https://docs.rs/metrics/0.24) 0.24 facade.
//!
//! cenote depends on no exporter: install one (metrics-exporter-prometheus,
//! an OpenTelemetry bridge, ...) before building the pools; until then
//! every call is a no-op. Each pool takes a `name(..)` on its builder
//! (default `<module>-<n>`); every series carries it, and no two live
//! pools share a name (a second pool asking for a name in use gets a
//! `-2` suffix, with a warning).
//!
//! **Levels never drift.** Levels and counters are read from the pool's
//! own state (the same numbers as its `stats()`) and written to the
//! recorder once a second by cenote's ticker thread, and whenever
//! [`publish_now`] is called: gauges are set, counters are set to their
//! absolute value. Nothing is counted up and down in guards. Histograms
//! record at the event, into handles taken when the pool is built, without
//! allocating; the per-get ones (`wait_time`, `use_time`) only with the
//! resource pool's `histograms(true)`, so the uncontended paths record
//! nothing beyond what `stats()` already counts.
//!
//! Resource pools follow OpenTelemetry's database-client connection-pool
//! metrics (semantic conventions v1.44) exactly, and put cenote's extras
//! under `cenote.resources.*`. The other pools have no official convention;
//! their names follow the nearest official ones (`dotnet.thread_pool.*`
//! for workers, `aspnetcore.rate_limiting.*` for tasks and the semaphore,
//! `aspnetcore.memory_pool.*` for objects). Durations are in seconds. The
//! semaphore has no builder: an `Arc<Semaphore>` is published by
//! `Semaphore::publish_metrics(name)`; with the feature on, a grant costs
//! the semaphore one atomic add to count it. An object pool is published when it is given a `name(..)`.
//!
//! | name | instrument | unit | attributes | meaning |
//! |---|---|---|---|---|
//! | `db.client.connection.count` | gauge (UpDownCounter) | `{connection}` | `db.client.connection.pool.name`, `db.client.connection.state` = `idle` \| `used` | live connections: idle, and the rest (lent, being created or checked) |
//! | `db.client.connection.idle.max` | gauge | `{connection}` | pool name | most idle connections kept (the capacity) |
//! | `db.client.connection.idle.min` | gauge | `{connection}` | pool name | `min_idle` |
//! | `db.client.connection.max` | gauge | `{connection}` | pool name | the capacity |
//! | `db.client.connection.pending_requests` | gauge | `{request}` | pool name | gets waiting for a connection |
//! | `db.client.connection.timeouts` | counter | `{timeout}` | pool name | gets that timed out |
//! | `db.client.connection.create_time` | histogram | `s` | pool name | time to create a connection (every create, failed ones too) |
//! | `db.client.connection.wait_time` | histogram | `s` | pool name | a get's wait for a permit (0 when served at once); with `histograms(true)` |
//! | `db.client.connection.use_time` | histogram | `s` | pool name | from lending a connection to its return; with `histograms(true)` |
//! | `cenote.resources.closed` | counter | `{connection}` | pool name, `reason` = `broken` \| `expired` \| `idle` \| `failed_check` \| `panicked` \| `evicted` | connections destroyed, by reason |
//! | `cenote.resources.create_errors` | counter | `{error}` | pool name, `error.type` = the manager's error type, or `timeout` | failed creates |
//! | `cenote.resources.rejected` | counter | `{request}` | pool name | gets refused at `max_waiting` |
//! | `cenote.resources.leaks` | counter | `{report}` | pool name | leak reports |
//! | `cenote.resources.check_time` | histogram | `s` | pool name | time of each check and reset |
//! | `cenote.workers.thread.count` | gauge | `{thread}` | `cenote.pool.name`, `state` = `busy` \| `idle` | threads alive |
//! | `cenote.workers.capacity` | gauge | `{thread}` | pool name | the capacity in force |
//! | `cenote.workers.queue.length` | gauge | `{task}` | pool name | tasks queued |
//! | `cenote.workers.waiting` | gauge | `{submitter}` | pool name | submitters blocked for room |
//! | `cenote.workers.tasks` | counter | `{task}` | pool name, `outcome` = `completed` \| `panicked` \| `rejected` | tasks by outcome (`rejected`: submits refused) |
//! | `cenote.workers.ran_on_caller` | counter | `{task}` | pool name | tasks run on the submitting thread |
//! | `cenote.workers.queue_time` | histogram | `s` | pool name | a blocked submit's wait for room (after its short spin) |
//! | `cenote.workers.thread.started` | counter | `{thread}` | pool name | threads started |
//! | `cenote.workers.thread.retired` | counter | `{thread}` | pool name | threads that exited |
//! | `cenote.tasks.active` | gauge | `{task}` | `cenote.pool.name` | futures in flight |
//! | `cenote.tasks.capacity` | gauge | `{task}` | pool name | the capacity in force |
//! | `cenote.tasks.queued` | gauge | `{spawner}` | pool name | spawners waiting for a slot |
//! | `cenote.tasks.spawns` | counter | `{spawn}` | pool name, `result` = `accepted` \| `rejected` \| `timed_out` | spawns by result |
//! | `cenote.tasks.queue_time` | histogram | `s` | pool name | a spawn's wait for a slot |
//! | `cenote.tasks.completions` | counter | `{task}` | pool name, `outcome` = `completed` \| `panicked` \| `aborted` \| `cancelled` | futures ended, by outcome |
//! | `cenote.limit.leases` | gauge | `{permit}` | `cenote.pool.name` | permits held (published with `Semaphore::publish_metrics`) |
//! | `cenote.limit.capacity` | gauge | `{permit}` | pool name | permits in all |
//! | `cenote.limit.queued` | gauge | `{request}` | pool name | requests waiting for a permit |
//! | `cenote.limit.requests` | counter | `{request}` | pool name, `result` = `acquired` \| `rejected` \| `abandoned` \| `closed` | requests by result (`rejected`: a `try_acquire` with no permit free; `abandoned`: a queued acquire timed out or dropped) |
//! | `cenote.limit.requests.queued` | counter | `{request}` | pool name | acquires that had to wait |
//! | `cenote.limit.queue_time` | histogram | `s` | pool name | a queued acquire's time in the queue |
//! | `cenote.objects.pooled` | gauge | `{object}` | `cenote.pool.name` | objects idle in the pool (store and thread caches) |
//! | `cenote.objects.rented` | counter | `{object}` | pool name | gets |
//! | `cenote.objects.allocated` | counter | `{object}` | pool name | objects created (gets that found none idle) |
//! | `cenote.objects.returned` | counter | `{object}` | pool name | objects taken back for reuse |
//! | `cenote.objects.evicted` | counter | `{object}` | pool name | idle objects trimmed |
//! | `cenote.objects.dropped` | counter | `{object}` | pool name, `reason` = `full` \| `refused` \| `panicked` | returns not kept, by reason |

#[cfg(feature = "metrics")]
pub(crate) mod limit;
pub(crate) mod name;
#[cfg(feature = "metrics")]
pub(crate) mod objects;
#[cfg(feature = "metrics")]
pub(crate) mod publish;
#[cfg(all(feature = "metrics", feature = "tokio", not(loom)))]
pub(crate) mod resources;
#[cfg(feature = "metrics")]
pub(crate) mod series;
#[cfg(all(feature = "metrics", feature = "tokio", not(loom)))]
pub(crate) mod tasks;
#[cfg(feature = "metrics")]
pub(crate) mod workers;

/// Writes every live pool's levels and counters to the `metrics`
/// recorder now (cenote does it once a second on its own): before a final
/// scrape, or in a test that reads the recorder.
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub fn publish_now() {
    publish::publish_all();
}
