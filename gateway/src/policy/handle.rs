//! The policy in force, shared by the committer, the API and the reload watcher.

use std::sync::{Arc, RwLock};

use super::Policy;

/// The policy in force, swapped whole on reload. Clones share the same policy.
///
/// Readers take the current version with [`current`](Self::current) and keep using it while a
/// reload swaps in another. A lock poisoned by a panicking thread is still read and written:
/// the policy inside is always a complete version.
#[derive(Debug, Clone)]
pub struct PolicyHandle(Arc<RwLock<Arc<Policy>>>);

impl PolicyHandle {
    /// A handle with `policy` in force.
    pub fn new(policy: Policy) -> Self {
        PolicyHandle(Arc::new(RwLock::new(Arc::new(policy))))
    }

    /// The version in force now.
    pub fn current(&self) -> Arc<Policy> {
        match self.0.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Puts `policy` in force for every later [`current`](Self::current).
    pub fn replace(&self, policy: Policy) {
        let policy = Arc::new(policy);
        match self.0.write() {
            Ok(mut p) => *p = policy,
            Err(poisoned) => *poisoned.into_inner() = policy,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::fixtures::{EXAMPLE, parse};

    #[test]
    fn clones_see_a_replaced_policy_and_old_readers_keep_theirs() {
        let handle = PolicyHandle::new(Policy::defaults());
        let clone = handle.clone();
        let before = clone.current();
        handle.replace(parse(EXAMPLE));
        assert_eq!(clone.current().version(), parse(EXAMPLE).version());
        assert_eq!(before.version(), Policy::defaults().version());
    }

    #[test]
    fn a_poisoned_lock_is_still_read_and_replaced() {
        let handle = PolicyHandle::new(Policy::defaults());
        let inner = handle.0.clone();
        let _ = std::thread::spawn(move || {
            let _guard = inner.write();
            panic!("poison the lock");
        })
        .join();
        assert!(handle.0.is_poisoned());
        assert_eq!(handle.current().version(), Policy::defaults().version());
        handle.replace(parse(EXAMPLE));
        assert_eq!(handle.current().version(), parse(EXAMPLE).version());
    }
}
