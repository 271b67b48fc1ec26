//! Live records by key, and which of them changed since they were last written, oldest change
//! first.
//!
//! Whether a record waits to be written is kept in its own entry, so marking the record the
//! committer just folded a message into costs no second lookup (a set beside the map cost about
//! a twentieth of the committer's time: README, Benchmarks).

use std::borrow::Borrow;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::ops::{Deref, DerefMut};

/// Records by key; those changed since they were last written are taken in the order they were
/// first marked, so none waits behind records that change all the time.
#[derive(Debug)]
pub struct Records<K, V> {
    map: HashMap<K, Entry<V>>,
    /// Keys in the order they were marked; a key whose record was written or removed since is
    /// skipped when taken.
    queue: VecDeque<K>,
    /// How many records wait to be written.
    waiting: usize,
}

#[derive(Debug)]
struct Entry<V> {
    value: V,
    waiting: bool,
}

/// A record found or inserted, which can be marked as changed.
pub struct Record<'a, K, V> {
    key: &'a K,
    entry: &'a mut Entry<V>,
    queue: &'a mut VecDeque<K>,
    waiting: &'a mut usize,
}

impl<K: Eq + Hash + Clone, V> Records<K, V> {
    /// No records.
    pub fn new() -> Self {
        Self {
            map: HashMap::new(),
            queue: VecDeque::new(),
            waiting: 0,
        }
    }

    /// How many records there are.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// How many records wait to be written.
    pub fn waiting(&self) -> usize {
        self.waiting
    }

    /// The record under `key`.
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get(key).map(|e| &e.value)
    }

    /// The record under `key`, to change and mark.
    pub fn get_mut<'a>(&'a mut self, key: &'a K) -> Option<Record<'a, K, V>> {
        let entry = self.map.get_mut(key)?;
        Some(Record {
            key,
            entry,
            queue: &mut self.queue,
            waiting: &mut self.waiting,
        })
    }

    /// The record under `key`, inserted as `new()` if there is none (not marked).
    pub fn get_or_insert_with<'a>(
        &'a mut self,
        key: &'a K,
        new: impl FnOnce() -> V,
    ) -> Record<'a, K, V> {
        let entry = self.map.entry(key.clone()).or_insert_with(|| Entry {
            value: new(),
            waiting: false,
        });
        Record {
            key,
            entry,
            queue: &mut self.queue,
            waiting: &mut self.waiting,
        }
    }

    /// Removes the record under `key`.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let e = self.map.remove(key)?;
        if e.waiting {
            self.waiting -= 1;
        }
        Some(e.value)
    }

    /// The record under `key`, about to be written: it no longer waits.
    pub fn written(&mut self, key: &K) -> Option<&V> {
        let e = self.map.get_mut(key)?;
        if std::mem::take(&mut e.waiting) {
            self.waiting -= 1;
        }
        Some(&e.value)
    }

    /// Takes the keys of up to `n` waiting records, oldest change first; they no longer wait.
    pub fn take(&mut self, n: usize) -> Vec<K> {
        let mut out = Vec::with_capacity(n.min(self.waiting));
        while out.len() < n {
            let Some(key) = self.queue.pop_front() else {
                break;
            };
            if let Some(e) = self.map.get_mut(&key)
                && std::mem::take(&mut e.waiting)
            {
                self.waiting -= 1;
                out.push(key);
            }
        }
        out
    }

    /// Keeps only the records waiting to be written.
    pub fn keep_waiting(&mut self) {
        self.map.retain(|_, e| e.waiting);
    }

    /// Every record with its key.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map.iter().map(|(k, e)| (k, &e.value))
    }
}

impl<K: Eq + Hash + Clone, V> FromIterator<(K, V)> for Records<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(records: I) -> Self {
        let mut r = Self::new();
        r.map = records
            .into_iter()
            .map(|(k, value)| {
                (
                    k,
                    Entry {
                        value,
                        waiting: false,
                    },
                )
            })
            .collect();
        r
    }
}

impl<K: Clone, V> Record<'_, K, V> {
    /// Marks the record as changed (one already marked keeps its place).
    pub fn mark(&mut self) {
        if !self.entry.waiting {
            self.entry.waiting = true;
            *self.waiting += 1;
            self.queue.push_back(self.key.clone());
        }
    }
}

impl<K, V> Deref for Record<'_, K, V> {
    type Target = V;

    fn deref(&self) -> &V {
        &self.entry.value
    }
}

impl<K, V> DerefMut for Record<'_, K, V> {
    fn deref_mut(&mut self) -> &mut V {
        &mut self.entry.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marked(r: &mut Records<u32, &'static str>, keys: &[u32]) {
        for k in keys {
            r.get_or_insert_with(k, || "v").mark();
        }
    }

    #[test]
    fn records_are_taken_oldest_change_first_and_once() {
        let mut r = Records::new();
        marked(&mut r, &[3, 1, 3, 2, 1]);
        assert_eq!(r.waiting(), 3);
        assert_eq!(r.take(2), vec![3, 1]);
        marked(&mut r, &[3]);
        assert_eq!(r.take(10), vec![2, 3]);
        assert_eq!((r.waiting(), r.len()), (0, 3));
    }

    #[test]
    fn a_record_written_or_removed_is_not_taken_until_marked_again() {
        let mut r = Records::new();
        marked(&mut r, &[1, 2, 3]);
        assert_eq!(r.written(&1), Some(&"v"));
        assert_eq!(r.remove(&2), Some("v"));
        assert_eq!(r.waiting(), 1);
        assert_eq!(r.take(10), vec![3]);
        marked(&mut r, &[1, 2]);
        assert_eq!(r.take(10), vec![1, 2]);
    }

    #[test]
    fn only_waiting_records_are_kept_when_trimmed() {
        let mut r = Records::new();
        marked(&mut r, &[1, 2]);
        r.get_or_insert_with(&3, || "unmarked");
        r.written(&1);
        r.keep_waiting();
        assert_eq!(r.iter().map(|(k, _)| *k).collect::<Vec<_>>(), vec![2]);
        assert_eq!(r.take(10), vec![2]);
    }
}
