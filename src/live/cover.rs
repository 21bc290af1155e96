//! Cover traffic on the media tunnel: the paper's confidentiality level 4 (hiding the calling
//! activity itself).
//!
//! With `[confidentiality] cover_traffic_kbps`, each half writes its direction of the media
//! connection as one write of exactly the same size every `cover_interval_ms`: queued media
//! frames first, then one cover frame (`MEDIA_FLAG_COVER`, discarded by the receiver) padding
//! the write to the budget. An observer of the GW1–GW2 link sees the same TLS records at the
//! same times whether no call or many are up, and cannot tell when one starts.
//!
//! What it costs: the configured bandwidth each way, all the time, and up to one interval of
//! added media latency (a packet waits for the next tick). Media beyond the budget waits for
//! later ticks (up to the media queue); a single packet larger than a whole tick is sent alone
//! in an otherwise empty tick, which makes that tick larger than the rest: keep the budget
//! above the largest media packet (the configuration check requires at least
//! [`MIN_TICK_BYTES`] per tick).

use bytes::Bytes;
use codecs::meta::StreamId;
use codecs::tunnel::{MediaRepr, MEDIA_OVERHEAD};
use std::collections::VecDeque;
use std::time::Duration;

/// The smallest write per tick the configuration accepts: room for a few voice packets (a
/// G.711 20 ms packet is 172 bytes).
pub const MIN_TICK_BYTES: usize = 512;

/// The shape of one direction of the media connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoverTraffic {
    /// Bytes of media frames written per tick, padding included.
    pub tick_bytes: usize,
    pub interval: Duration,
}

impl CoverTraffic {
    /// `kbps` (kilobits per second, 1000 bits) written in ticks of `interval_ms`.
    pub fn new(kbps: u32, interval_ms: u32) -> CoverTraffic {
        let bits = u64::from(kbps) * 1000 * u64::from(interval_ms) / 1000;
        CoverTraffic {
            tick_bytes: usize::try_from(bits / 8).unwrap_or(usize::MAX),
            interval: Duration::from_millis(u64::from(interval_ms)),
        }
    }
}

/// A packet waiting for a tick.
pub type Queued = (StreamId, bool, Bytes);

/// Fills `buf` with one tick: queued packets while they fit, then padding up to exactly
/// `tick_bytes`. A packet is left for a later tick rather than leaving a gap too small for a
/// cover frame's header. Returns how many packets went in.
pub fn fill_tick(pending: &mut VecDeque<Queued>, tick_bytes: usize, buf: &mut Vec<u8>) -> usize {
    buf.clear();
    let mut sent = 0;
    while let Some((stream, rtcp, data)) = pending.front() {
        let need = MediaRepr::buffer_len(data.len());
        let rest = tick_bytes.saturating_sub(buf.len());
        let fits = need == rest || need + MEDIA_OVERHEAD <= rest;
        // An oversized packet alone in a tick is sent anyway (see the module docs).
        let alone = buf.is_empty() && need > tick_bytes;
        if !(fits || alone) {
            break;
        }
        let repr = MediaRepr {
            stream: *stream,
            rtcp: *rtcp,
            cover: false,
        };
        // A packet over the frame limit is dropped (the engine caps media far below).
        let _ = repr.encode(data, buf);
        pending.pop_front();
        sent += 1;
        if need > tick_bytes {
            return sent;
        }
    }
    let rest = tick_bytes.saturating_sub(buf.len());
    if rest >= MEDIA_OVERHEAD {
        // Frames are at most MAX_MEDIA_FRAME: a large pad is several cover frames.
        let mut left = rest;
        while left >= MEDIA_OVERHEAD {
            let body = (left - MEDIA_OVERHEAD).min(codecs::tunnel::MAX_MEDIA_PACKET);
            let pad = vec![0u8; body];
            let _ = MediaRepr::COVER.encode(&pad, buf);
            left -= MEDIA_OVERHEAD + body;
            if left > 0 && left < MEDIA_OVERHEAD {
                // Cannot happen with MAX_MEDIA_PACKET far above MEDIA_OVERHEAD, but never
                // loop on it.
                break;
            }
        }
    }
    sent
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use codecs::tunnel::MediaFramer;

    fn packet(len: usize) -> Queued {
        (StreamId(2), false, Bytes::from(vec![0x80; len]))
    }

    /// Every tick is exactly the budget, whatever is queued, and the receiver gets the
    /// packets (and only them) back in order.
    #[test]
    fn every_tick_is_the_budget_and_the_media_comes_through() {
        let cover = CoverTraffic::new(512, 20);
        assert_eq!(cover.tick_bytes, 1280);
        let mut pending: VecDeque<Queued> = VecDeque::new();
        let mut buf = Vec::new();
        let mut framer = MediaFramer::new();
        let mut got = Vec::new();
        for round in 0..50usize {
            for _ in 0..(round % 9) {
                pending.push_back(packet(172));
            }
            fill_tick(&mut pending, cover.tick_bytes, &mut buf);
            assert_eq!(buf.len(), cover.tick_bytes, "round {round}");
            framer.push(&buf);
            while let Some((repr, p)) = framer.next_frame().unwrap() {
                if !repr.cover {
                    got.push(p.len());
                }
            }
        }
        // 4 per round over the budget's 7: everything queued came through, in order.
        let queued: usize = (0..50).map(|r| r % 9).sum();
        assert_eq!(got.len() + pending.len(), queued);
        assert!(got.iter().all(|&l| l == 172));
        // Empty ticks are padding only.
        pending.clear();
        fill_tick(&mut pending, cover.tick_bytes, &mut buf);
        assert_eq!(buf.len(), cover.tick_bytes);
    }

    #[test]
    fn no_gap_smaller_than_a_frame_header_and_oversized_packets_go_alone() {
        let tick = 400;
        // 400 - 5 - 392 = 3 bytes left would be too small to pad: the packet waits.
        let mut pending: VecDeque<Queued> = [packet(100), packet(287)].into();
        let mut buf = Vec::new();
        assert_eq!(fill_tick(&mut pending, tick, &mut buf), 1);
        assert_eq!(buf.len(), tick);
        // Exactly filling the tick is fine.
        let mut pending: VecDeque<Queued> = [packet(tick - MEDIA_OVERHEAD)].into();
        assert_eq!(fill_tick(&mut pending, tick, &mut buf), 1);
        assert_eq!(buf.len(), tick);
        let mut pending: VecDeque<Queued> = [packet(1000), packet(10)].into();
        assert_eq!(fill_tick(&mut pending, tick, &mut buf), 1);
        assert_eq!(buf.len(), 1000 + MEDIA_OVERHEAD);
        assert_eq!(pending.len(), 1);
    }
}
