//! The [`Reset`] trait and its implementations for common types.

use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet, LinkedList, VecDeque};
use std::ffi::OsString;
use std::hash::BuildHasher;
use std::path::PathBuf;

/// Puts an object back into a reusable, empty state, keeping what makes
/// reuse worth it (allocated capacity). Used by
/// [`Builder::auto_reset`](super::Builder::auto_reset).
///
/// ```
/// use cenote::objects::{Pool, Reset};
///
/// #[derive(Default)]
/// struct Request { path: String, headers: Vec<(String, String)> }
///
/// impl Reset for Request {
///     fn reset(&mut self) {
///         self.path.reset();
///         self.headers.reset();
///     }
/// }
///
/// let pool = Pool::builder(Request::default).auto_reset().build().unwrap();
/// pool.get().path.push_str("/secret");
/// assert!(pool.get().path.is_empty());
/// ```
pub trait Reset {
    /// Empties `self`.
    fn reset(&mut self);
}

macro_rules! reset_by_clear {
    ($($t:ty => [$($g:tt)*]),* $(,)?) => {
        $(impl<$($g)*> Reset for $t {
            #[inline]
            fn reset(&mut self) {
                self.clear();
            }
        })*
    };
}

reset_by_clear! {
    Vec<T> => [T],
    VecDeque<T> => [T],
    BinaryHeap<T> => [T],
    LinkedList<T> => [T],
    BTreeMap<K, V> => [K, V],
    BTreeSet<T> => [T],
    HashMap<K, V, S> => [K, V, S: BuildHasher],
    HashSet<T, S> => [T, S: BuildHasher],
    String => [],
    OsString => [],
    PathBuf => [],
}

impl<T: Reset + ?Sized> Reset for Box<T> {
    #[inline]
    fn reset(&mut self) {
        (**self).reset();
    }
}

impl<A: Reset, B: Reset> Reset for (A, B) {
    fn reset(&mut self) {
        self.0.reset();
        self.1.reset();
    }
}

impl<A: Reset, B: Reset, C: Reset> Reset for (A, B, C) {
    fn reset(&mut self) {
        self.0.reset();
        self.1.reset();
        self.2.reset();
    }
}

impl<T: Reset, const N: usize> Reset for [T; N] {
    fn reset(&mut self) {
        self.iter_mut().for_each(Reset::reset);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn reset_empties_and_keeps_capacity() {
        let mut v = Vec::with_capacity(100);
        v.extend([1, 2, 3]);
        v.reset();
        assert!(v.is_empty() && v.capacity() >= 100);
        let mut m: HashMap<String, u32> = HashMap::new();
        m.insert("a".into(), 1);
        let mut pair = (String::from("x"), m);
        pair.reset();
        assert!(pair.0.is_empty() && pair.1.is_empty());
        let mut arr = [vec![1], vec![2]];
        arr.reset();
        assert!(arr.iter().all(Vec::is_empty));
    }
}
