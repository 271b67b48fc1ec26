//! Live records changed since they were last written, oldest change first.

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;

/// A set of keys to write, taken in the order they were first marked, so none waits behind
/// keys that change all the time.
#[derive(Debug)]
pub struct Dirty<K> {
    queue: VecDeque<K>,
    set: HashSet<K>,
}

impl<K: Eq + Hash + Clone> Dirty<K> {
    /// Nothing to write.
    pub fn new() -> Self {
        Self {
            queue: VecDeque::new(),
            set: HashSet::new(),
        }
    }

    /// Marks `key` as changed (a key already marked keeps its place).
    pub fn mark(&mut self, key: &K) {
        // Most marks are of keys already marked: look before cloning.
        if !self.set.contains(key) {
            self.set.insert(key.clone());
            self.queue.push_back(key.clone());
        }
    }

    /// Forgets `key` (it was written, or is gone).
    pub fn forget(&mut self, key: &K) {
        self.set.remove(key);
    }

    /// Whether `key` is waiting to be written.
    pub fn contains(&self, key: &K) -> bool {
        self.set.contains(key)
    }

    /// Keys marked and not yet written.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// Takes up to `n` keys, oldest first.
    pub fn take(&mut self, n: usize) -> Vec<K> {
        let mut out = Vec::with_capacity(n.min(self.set.len()));
        while out.len() < n {
            let Some(key) = self.queue.pop_front() else {
                break;
            };
            if self.set.remove(&key) {
                out.push(key);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_taken_oldest_first_and_once() {
        let mut d = Dirty::new();
        for k in [3, 1, 3, 2, 1] {
            d.mark(&k);
        }
        assert_eq!(d.len(), 3);
        assert_eq!(d.take(2), vec![3, 1]);
        d.mark(&3);
        assert_eq!(d.take(10), vec![2, 3]);
        assert_eq!(d.len(), 0);
    }

    #[test]
    fn a_forgotten_key_is_not_taken_until_marked_again() {
        let mut d = Dirty::new();
        d.mark(&"a");
        d.mark(&"b");
        d.forget(&"a");
        assert_eq!(d.take(10), vec!["b"]);
        d.mark(&"a");
        assert_eq!(d.take(10), vec!["a"]);
    }
}
