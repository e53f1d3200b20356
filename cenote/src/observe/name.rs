//! Pool names: what every metric series and log line of a pool carries.
//!
//! A pool built without `name(..)` is called `<module>-<n>`, `n` counting
//! the pools of that module built so far in the process (so the same
//! program names its pools the same way every run). A name is held for as
//! long as its pool lives, and no two live pools hold the same one: a
//! second pool asking for a name in use gets `<name>-2` (then `-3`, ...),
//! with a warning, so two pools never feed one series.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use parking_lot::Mutex;

/// The names held by live pools.
static HELD: Mutex<BTreeSet<Arc<str>>> = Mutex::new(BTreeSet::new());

/// A live pool's name, released when dropped.
pub(crate) struct PoolName(Arc<str>);

impl PoolName {
    /// Claims `asked`, or the module's next default name, made unique
    /// among live pools.
    pub(crate) fn claim(module: &'static str, asked: Option<&str>) -> PoolName {
        let base = match asked {
            Some(name) => name.to_owned(),
            None => format!("{module}-{}", next_number(module)),
        };
        let mut held = HELD.lock();
        let mut name: Arc<str> = Arc::from(base.as_str());
        let mut n = 2;
        while held.contains(&name) {
            name = Arc::from(format!("{base}-{n}").as_str());
            n += 1;
        }
        held.insert(name.clone());
        drop(held);
        if asked.is_some() && *name != *base {
            crate::log::warning!(
                "cenote: a live pool is already named {base:?}; this one is named {name:?}"
            );
        }
        PoolName(name)
    }

    /// The name.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// The name, shared (for metric labels).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn shared(&self) -> Arc<str> {
        self.0.clone()
    }
}

impl Drop for PoolName {
    fn drop(&mut self) {
        HELD.lock().remove(&self.0);
    }
}

impl fmt::Debug for PoolName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for PoolName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The next default number of `module`'s pools (from 1).
fn next_number(module: &'static str) -> u64 {
    static COUNTS: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];
    let i = match module {
        "workers" => 0,
        "tasks" => 1,
        "limit" => 2,
        "objects" => 3,
        _ => 4,
    };
    COUNTS[i].fetch_add(1, Relaxed) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_count_per_module_and_never_repeat() {
        let a = PoolName::claim("objects", None);
        let b = PoolName::claim("objects", None);
        assert!(a.as_str().starts_with("objects-"));
        assert_ne!(a.as_str(), b.as_str());
    }

    #[test]
    fn a_name_in_use_gets_a_suffix_and_is_free_again_once_dropped() {
        let first = PoolName::claim("resources", Some("name-test-db"));
        let second = PoolName::claim("resources", Some("name-test-db"));
        assert_eq!(first.as_str(), "name-test-db");
        assert_eq!(second.as_str(), "name-test-db-2");
        drop(first);
        let third = PoolName::claim("resources", Some("name-test-db"));
        assert_eq!(third.as_str(), "name-test-db");
    }
}
