//! Identifiers the gateway creates (Call-ID, tags, branches, SDP session ids, H.323 GUIDs).
//! Nothing of an incoming message leaks into them.
//!
//! Live runs draw them from a cryptographic generator, so one identifier tells nothing about
//! the next: a Call-ID, tag or branch an attacker sees (in a response, a 481, a forwarded
//! call) must not let it forge the next call's, nor the BYE of a call it did not see. The
//! generator is `rand`'s `StdRng` (ChaCha with 12 rounds) keyed with 256 bits from the OS
//! (`getrandom`) once at startup ([`IdKey::from_os`]), one stream per leg. Why not the OS
//! generator per identifier (ring's `SystemRandom`, already used for the tunnel's instance
//! nonce): a system call per tag would cost a flood of INVITEs more than the ChaCha block
//! function, and a keyed CSPRNG is as unpredictable. Why not ring: the engine would depend
//! on the TLS provider's internals for a job `rand` exists for.
//!
//! Replay and tests keep a seeded generator (SplitMix64 of seed and counter): replay output
//! must be the same on every run, and it is never on the wire. SplitMix64 is invertible, so
//! one of its tokens gives the seed and counter away: it is for reproducible output only.

use rand::rngs::{StdRng, SysError, SysRng};
use rand::{Rng, SeedableRng, TryRng};

/// The key of live identifiers: 256 bits from the OS generator. Its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct IdKey([u8; 32]);

impl IdKey {
    /// A fresh key from the operating system's generator.
    pub fn from_os() -> Result<IdKey, SysError> {
        let mut k = [0u8; 32];
        SysRng.try_fill_bytes(&mut k)?;
        Ok(IdKey(k))
    }

    /// A key from given bytes (tests).
    pub fn from_bytes(k: [u8; 32]) -> IdKey {
        IdKey(k)
    }

    /// One generator per user of the key; `domain` keeps their streams apart.
    pub fn ids(&self, domain: u64) -> Ids {
        // The domain goes into the ChaCha key: distinct keys, independent streams.
        let mut seed = self.0;
        for (s, d) in seed.iter_mut().zip(domain.to_le_bytes()) {
            *s ^= d;
        }
        Ids {
            source: Source::Secure(Box::new(StdRng::from_seed(seed))),
        }
    }
}

impl std::fmt::Debug for IdKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdKey(..)")
    }
}

enum Source {
    /// Replay and tests: reproducible, predictable.
    Seeded { seed: u64, counter: u64 },
    /// Live: ChaCha12 keyed from the OS.
    Secure(Box<StdRng>),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Seeded { seed, counter } => write!(f, "Seeded({seed:#x}, {counter})"),
            // The generator's state is its key: not shown.
            Source::Secure(_) => f.write_str("Secure(..)"),
        }
    }
}

#[derive(Debug)]
pub struct Ids {
    source: Source,
}

impl Ids {
    /// The seeded generator of replay and tests.
    pub fn new(seed: u64) -> Self {
        Ids {
            source: Source::Seeded { seed, counter: 0 },
        }
    }

    /// Whether identifiers come from the cryptographic generator.
    pub fn is_secure(&self) -> bool {
        matches!(self.source, Source::Secure(_))
    }

    fn next(&mut self) -> u64 {
        match &mut self.source {
            Source::Seeded { seed, counter } => {
                *counter += 1;
                splitmix(*seed, *counter)
            }
            Source::Secure(rng) => rng.next_u64(),
        }
    }

    /// A token of 16 hex digits.
    pub fn token(&mut self) -> String {
        let mut out = String::with_capacity(16);
        push_hex(&mut out, self.next());
        out
    }

    /// A Via branch with the RFC 3261 magic cookie.
    pub fn branch(&mut self) -> String {
        let mut out = String::with_capacity(23);
        out.push_str("z9hG4bK");
        push_hex(&mut out, self.next());
        out
    }

    /// `N` bytes from the generator: SRTP master keys (the OS-keyed ChaCha12 of a live
    /// gateway; replay's seeded generator is for reproducible output only).
    pub fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for chunk in out.chunks_mut(8) {
            let n = self.next().to_be_bytes();
            chunk.copy_from_slice(n.get(..chunk.len()).unwrap_or_default());
        }
        out
    }

    /// A number for SDP o= session ids (fits in 62 bits).
    pub fn number(&mut self) -> u64 {
        self.next() >> 2
    }
}

/// SplitMix64 of seed and counter: well mixed, and stable across Rust releases (unlike
/// `DefaultHasher`), so snapshots stay put.
fn splitmix(seed: u64, counter: u64) -> u64 {
    let mut z = seed.wrapping_add(counter.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `n` as 16 lowercase hex digits, as `{:016x}` writes it, without the formatter (every
/// message the gateway sends carries a token or a branch).
fn push_hex(out: &mut String, n: u64) {
    for shift in (0..16).rev() {
        let digit = u32::try_from((n >> (shift * 4)) & 0xf).unwrap_or(0);
        out.push(char::from_digit(digit, 16).unwrap_or('0'));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    /// The seeded sequence is fixed: replay snapshots depend on it.
    #[test]
    fn hex_is_what_the_formatter_writes() {
        for n in [0, 1, 0xabc, u64::MAX, 0x0123_4567_89ab_cdef] {
            let mut s = String::new();
            super::push_hex(&mut s, n);
            assert_eq!(s, format!("{n:016x}"));
        }
    }

    #[test]
    fn seeded_is_stable() {
        let mut a = Ids::new(0x5347_5700 ^ 0x6777_3200);
        let mut b = Ids::new(0x5347_5700 ^ 0x6777_3200);
        let ta: Vec<String> = (0..4).map(|_| a.token()).collect();
        let tb: Vec<String> = (0..4).map(|_| b.token()).collect();
        assert_eq!(ta, tb);
        assert!(!a.is_secure());
        // The first value of SplitMix64 for this seed, as replay snapshots hold it.
        assert_eq!(
            Ids::new(0).token(),
            format!("{:016x}", splitmix(0, 1)),
            "seeded tokens are SplitMix64 of seed and counter"
        );
        assert_eq!(splitmix(0, 1), 0xe220_a839_7b1d_cdaf);
    }

    /// Live tokens are not the SplitMix sequence of any seed their first token would give
    /// away, differ between keys and between domains, and do not repeat.
    #[test]
    fn secure_is_not_splitmix() {
        let key = IdKey::from_os().unwrap();
        let mut ids = key.ids(1);
        assert!(ids.is_secure());
        let first = ids.next();
        let second = ids.next();
        // Inverting SplitMix64 from `first` gives seed + counter*gamma; the next SplitMix
        // value from there is what a predictable generator would yield.
        let predicted = splitmix(unmix(first), 1);
        assert_ne!(second, predicted, "the next token follows from the first");
        assert_ne!(
            key.ids(1).token(),
            key.ids(2).token(),
            "domains share a stream"
        );
        assert_ne!(
            IdKey::from_os().unwrap().ids(1).token(),
            key.ids(1).token(),
            "two keys from the OS gave the same stream"
        );
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            assert!(seen.insert(ids.token()), "a live token repeated");
        }
        assert_eq!(format!("{key:?}"), "IdKey(..)");
    }

    /// SplitMix64 is invertible: from one output, the state it came from. This is why the
    /// seeded generator is for replay only.
    #[test]
    fn seeded_is_predictable() {
        let mut ids = Ids::new(0xdead_beef);
        let first = ids.next();
        let second = ids.next();
        assert_eq!(splitmix(unmix(first), 1), second);
    }

    /// The inverse of SplitMix64's finaliser: the `seed + counter * gamma` it mixed.
    fn unmix(z: u64) -> u64 {
        let inv_shift = |mut y: u64, s: u32| {
            let mut x = y;
            for _ in 0..64 / s {
                y >>= s;
                x ^= y;
            }
            x
        };
        // Modular inverses of the two multipliers (mod 2^64).
        let inv = |m: u64| {
            let mut x = m;
            for _ in 0..6 {
                x = x.wrapping_mul(2u64.wrapping_sub(m.wrapping_mul(x)));
            }
            x
        };
        let mut x = inv_shift(z, 31);
        x = x.wrapping_mul(inv(0x94d0_49bb_1331_11eb));
        x = inv_shift(x, 27);
        x = x.wrapping_mul(inv(0xbf58_476d_1ce4_e5b9));
        inv_shift(x, 30)
    }
}
