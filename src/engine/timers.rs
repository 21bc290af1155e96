//! Timers in one ordered structure: deadlines with the key they are for, earliest first.
//!
//! Entries are never removed early: when the state a timer was set for changes, the owner sets a
//! new one and ignores the stale entry when it fires (it compares the deadline with its own).
//! So setting, firing and asking for the next deadline are all O(log n), and nothing scans every
//! transaction per event.

use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug)]
pub struct Timers<K> {
    map: BTreeMap<(Duration, u64), K>,
    seq: u64,
}

impl<K> Default for Timers<K> {
    fn default() -> Self {
        Timers {
            map: BTreeMap::new(),
            seq: 0,
        }
    }
}

impl<K> Timers<K> {
    pub fn set(&mut self, at: Duration, key: K) {
        self.seq = self.seq.wrapping_add(1);
        self.map.insert((at, self.seq), key);
    }

    /// The next entry due at or before `now`, with its deadline.
    pub fn pop_due(&mut self, now: Duration) -> Option<(Duration, K)> {
        let entry = self.map.first_entry()?;
        if entry.key().0 > now {
            return None;
        }
        let ((at, _), key) = entry.remove_entry();
        Some((at, key))
    }

    pub fn next(&self) -> Option<Duration> {
        self.map.first_key_value().map(|((at, _), _)| *at)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_in_deadline_order() {
        let mut t = Timers::default();
        t.set(Duration::from_secs(3), "c");
        t.set(Duration::from_secs(1), "a");
        t.set(Duration::from_secs(1), "b");
        assert_eq!(t.next(), Some(Duration::from_secs(1)));
        assert_eq!(t.pop_due(Duration::from_secs(2)).map(|e| e.1), Some("a"));
        assert_eq!(t.pop_due(Duration::from_secs(2)).map(|e| e.1), Some("b"));
        assert_eq!(t.pop_due(Duration::from_secs(2)), None);
        assert_eq!(t.len(), 1);
    }
}
