//! Identifiers the gateway creates (Call-ID, tags, branches, SDP session ids). They derive from
//! a seed and a counter only, so nothing of an incoming message leaks into them and replay output
//! is reproducible. The live driver seeds from the OS random generator.

use std::hash::{Hash, Hasher};

#[derive(Debug, Clone)]
pub struct Ids {
    seed: u64,
    counter: u64,
}

impl Ids {
    pub fn new(seed: u64) -> Self {
        Ids { seed, counter: 0 }
    }

    fn next(&mut self) -> u64 {
        self.counter += 1;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.seed, self.counter).hash(&mut h);
        h.finish()
    }

    /// A token of 16 hex digits.
    pub fn token(&mut self) -> String {
        format!("{:016x}", self.next())
    }

    /// A Via branch with the RFC 3261 magic cookie.
    pub fn branch(&mut self) -> String {
        format!("z9hG4bK{}", self.token())
    }

    /// A number for SDP o= session ids (fits in 62 bits).
    pub fn number(&mut self) -> u64 {
        self.next() >> 2
    }
}
