//! Identifiers the gateway creates (Call-ID, tags, branches, SDP session ids). They derive from
//! a seed and a counter only, so nothing of an incoming message leaks into them and replay output
//! is reproducible. The live driver seeds from the OS random generator.

#[derive(Debug, Clone)]
pub struct Ids {
    seed: u64,
    counter: u64,
}

impl Ids {
    pub fn new(seed: u64) -> Self {
        Ids { seed, counter: 0 }
    }

    /// SplitMix64 of seed and counter: well mixed, and stable across Rust releases (unlike
    /// `DefaultHasher`), so snapshots stay put.
    fn next(&mut self) -> u64 {
        self.counter += 1;
        let mut z = self
            .seed
            .wrapping_add(self.counter.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
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
