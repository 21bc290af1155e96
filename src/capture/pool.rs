//! The payload chunk pool: datagram payloads are copied into shared chunks, and a chunk whose
//! payloads have all been dropped is written again from its start instead of being freed.
//!
//! A consumer that reads on one thread and drops the payloads on another (replay did, before it
//! lent its RTP and RTCP instead: [`super::CaptureReader::lend_into`]) freed every 64 KiB
//! chunk there: it went back to the allocator across threads and the reader asked for fresh pages, which
//! the kernel zeroes on first touch (≈ 8 % of replay's samples in `perf`). Here the reader keeps
//! the empty tail of each filled chunk in a ring; when the tail is the chunk's last owner
//! ([`bytes::BytesMut::try_reclaim`]), every payload carved from it is gone and the whole chunk is
//! reused: no allocation, no page fault, no zeroing. Memory stays bounded: at most
//! [`MAX_POOLED_CHUNKS`] tails are kept; a chunk still held past that (a payload kept by its
//! consumer) is left to its holders and freed by the last of them.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

/// Size of one chunk. A payload larger than this gets its own allocation.
pub(crate) const CHUNK_LEN: usize = 64 * 1024;
/// Most filled chunks waiting to be reused (4 MiB of 64 KiB chunks; replay keeps about 2 MiB
/// of payloads in flight between its threads).
pub(crate) const MAX_POOLED_CHUNKS: usize = 64;

/// Oldest chunks looked at for one free to reuse.
const SCAN_CHUNKS: usize = 8;

/// Counters of a [`ChunkPool`], for tests and profiles.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PoolStats {
    /// Chunks allocated.
    pub allocated: u64,
    /// Chunks written again after all their payloads were dropped.
    pub reused: u64,
    /// Payloads over [`CHUNK_LEN`], copied to an allocation of their own.
    pub oversized: u64,
    /// Chunks left out of the pool while a payload in them was still held.
    pub pinned: u64,
}

/// Copies payloads into pooled chunks; see the [module docs](self).
#[derive(Debug, Default)]
pub(crate) struct ChunkPool {
    /// The chunk being filled: its unwritten tail.
    current: BytesMut,
    /// Tails of filled chunks, oldest first, until their payloads are dropped.
    filled: VecDeque<BytesMut>,
    stats: PoolStats,
}

impl ChunkPool {
    /// `data` as its own `Bytes`, sharing a chunk with the payloads copied before it.
    pub fn copy(&mut self, data: &[u8]) -> Bytes {
        if data.len() > CHUNK_LEN {
            self.stats.oversized += 1;
            return Bytes::copy_from_slice(data);
        }
        if self.current.capacity() - self.current.len() < data.len() {
            self.next_chunk();
        }
        self.current.extend_from_slice(data);
        self.current.split().freeze()
    }

    #[cfg(test)]
    pub fn stats(&self) -> PoolStats {
        self.stats
    }

    /// Chunk tails kept for reuse (bounded by [`MAX_POOLED_CHUNKS`]).
    #[cfg(test)]
    pub fn pooled(&self) -> usize {
        self.filled.len()
    }

    /// Retires the current chunk and makes the oldest free one (or a new one) current.
    fn next_chunk(&mut self) {
        let full = std::mem::take(&mut self.current);
        // Before the first allocation there is nothing to keep.
        if self.stats.allocated > 0 {
            if self.filled.len() == MAX_POOLED_CHUNKS {
                // Still held after a whole round: left to its holders.
                self.filled.pop_front();
            }
            self.filled.push_back(full);
        }
        // Payloads are dropped roughly in order, so the oldest chunks are the ones likely
        // free. One still held while a younger one is free is pinned by a payload its consumer
        // keeps (a SIP message in a transaction): it leaves the pool, to be freed by its
        // holders, rather than being checked again at every chunk.
        let free = self
            .filled
            .iter_mut()
            .take(SCAN_CHUNKS)
            .position(|c| c.try_reclaim(CHUNK_LEN));
        if let Some(at) = free {
            self.stats.pinned += at as u64;
            self.filled.drain(..at);
            if let Some(chunk) = self.filled.pop_front() {
                self.stats.reused += 1;
                self.current = chunk;
                return;
            }
        }
        self.stats.allocated += 1;
        self.current = BytesMut::with_capacity(CHUNK_LEN);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn payloads_keep_their_bytes_and_chunks_are_reused_once_dropped() {
        let mut pool = ChunkPool::default();
        let payload = |i: usize| vec![i as u8; 1000 + i % 7];
        // Far more than MAX_POOLED_CHUNKS chunks' worth, dropped in batches as replay does.
        let mut kept = Vec::new();
        for i in 0..20_000 {
            kept.push((i, pool.copy(&payload(i))));
            if kept.len() == 500 {
                for (i, b) in kept.drain(..) {
                    assert_eq!(&b[..], &payload(i)[..]);
                }
            }
        }
        let s = pool.stats();
        // 500 payloads of ~1 KiB are ~8 chunks in flight; the rest is reuse.
        assert!(s.allocated <= 12, "{s:?}");
        assert!(s.reused > 250, "{s:?}");
        assert!(pool.pooled() <= MAX_POOLED_CHUNKS);
    }

    #[test]
    fn a_reused_chunk_never_overwrites_a_live_payload() {
        let mut pool = ChunkPool::default();
        let first = pool.copy(&[0xAA; 40_000]);
        // Fill many chunks while `first` is alive: its chunk cannot be reused.
        let mut others = Vec::new();
        for i in 0..(MAX_POOLED_CHUNKS * 3) {
            others.push(pool.copy(&[i as u8; 40_000]));
        }
        assert!(first.iter().all(|&b| b == 0xAA));
        for (i, b) in others.iter().enumerate() {
            assert!(b.iter().all(|&x| x == i as u8), "payload {i}");
        }
        // Everything alive: nothing was reused, and the ring stayed bounded.
        assert_eq!(pool.stats().reused, 0);
        assert!(pool.pooled() <= MAX_POOLED_CHUNKS);
        drop(others);
        for i in 0..10u8 {
            let b = pool.copy(&[i; 40_000]);
            assert!(b.iter().all(|&x| x == i));
        }
        assert!(pool.stats().reused > 0);
        assert!(first.iter().all(|&b| b == 0xAA));
    }

    #[test]
    fn a_payload_kept_long_costs_one_chunk_not_a_round_of_the_ring() {
        let mut pool = ChunkPool::default();
        let mut kept = Vec::new();
        let mut batch = Vec::new();
        for i in 0..100_000u32 {
            let b = pool.copy(&[(i % 256) as u8; 700]);
            // One payload in 5,000 is kept to the end (a message in a transaction).
            if i % 5_000 == 0 {
                kept.push(b);
            } else {
                batch.push(b);
            }
            if batch.len() == 1_000 {
                batch.clear();
            }
        }
        let s = pool.stats();
        // 20 pinned chunks, each replaced once, plus the ~11 chunks of one batch in flight.
        assert_eq!(s.pinned, 20, "{s:?}");
        assert!(s.allocated <= 20 + 14, "{s:?}");
        for (n, b) in kept.iter().enumerate() {
            assert!(b.iter().all(|&x| x == ((n * 5_000) % 256) as u8));
        }
    }

    #[test]
    fn edges_empty_exact_and_oversized_payloads() {
        let mut pool = ChunkPool::default();
        assert!(pool.copy(&[]).is_empty());
        let exact = pool.copy(&[7; CHUNK_LEN]);
        assert_eq!(exact.len(), CHUNK_LEN);
        let big = pool.copy(&[9; CHUNK_LEN + 1]);
        assert_eq!(big.len(), CHUNK_LEN + 1);
        assert_eq!(pool.stats().oversized, 1);
        // A chunk's last byte and the next chunk's first.
        let a = pool.copy(&[1; CHUNK_LEN - 10]);
        let b = pool.copy(&[2; 11]);
        assert!(a.iter().all(|&x| x == 1) && b.iter().all(|&x| x == 2));
        assert!(exact.iter().all(|&x| x == 7));
    }
}
