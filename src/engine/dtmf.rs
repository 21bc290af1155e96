//! RFC 4733 telephone-events on one RTP stream, converted to and from Meta DTMF.
//!
//! A SIP peer that negotiated telephone-event in a call whose other side did not (an H.323
//! party, a SIP party that offered no telephone-event) still gets telephone-event from the
//! gateway. Its stream then:
//! - reads each event it sends ([`DtmfReceiver`]): one Meta DTMF per event, on the event's first
//!   end packet (E bit); the packets before the end and the retransmitted end packets (the same
//!   RTP timestamp) make no more, and none of these packets is relayed (the other side could
//!   not decode them);
//! - plays each Meta DTMF for it as RFC 4733 packets ([`DtmfSender`], section 2.5): a start
//!   packet with the M bit, updates every 20 ms, and three end packets with the same timestamp,
//!   volume 10, under the gateway's own SSRC (one per stream, fixed for the stream's life,
//!   derived from the stream's id and port so that replay stays deterministic).
//!
//! The state is bounded: the receiver keeps the last event's timestamp, the sender a queue of
//! at most [`MAX_QUEUED`] events.

use codecs::meta::TelephoneEvent;
use codecs::telephone_event;
use std::collections::VecDeque;
use std::time::Duration;

/// The interval of the packets the gateway sends for one event (RFC 4733 section 2.5.1.2).
pub const PACKET_INTERVAL: Duration = Duration::from_millis(20);
/// The volume of the events the gateway sends, in -dBm0.
pub const VOLUME: u8 = 10;
/// End packets sent per event (RFC 4733 section 2.5.1.4: the final packet is sent three times).
pub const END_PACKETS: u8 = 3;
/// Events waiting to be played on one stream; more are dropped and counted.
pub const MAX_QUEUED: usize = 16;
/// A Meta DTMF without a usable duration plays this long.
pub const DEFAULT_DURATION_MS: u16 = 100;
/// The shortest and longest event the gateway plays.
pub const MIN_DURATION_MS: u16 = 40;
pub const MAX_DURATION_MS: u16 = 5000;
/// The silence between two events the gateway plays.
pub const INTER_EVENT_GAP: Duration = Duration::from_millis(40);

/// What one telephone-event packet from the peer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// The first end packet of a new event: the event code (0-15) and its duration in ms.
    Event { event: u8, duration_ms: u16 },
    /// A packet of an event already reported, or of one not ended yet.
    Part,
}

/// Why a telephone-event packet is not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// No RTP packet, or a payload shorter than an event block.
    Malformed,
    /// An event code that is no DTMF digit (above 15).
    NotDtmf(u8),
}

/// Reads the telephone-events of one stream. See the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct DtmfReceiver {
    /// The RTP timestamp of the last event reported.
    last: Option<u32>,
}

impl DtmfReceiver {
    /// One RTP packet of the telephone-event payload type, clock rate `rate`.
    pub fn on_packet(&mut self, rtp: &[u8], rate: u32) -> Result<Received, Invalid> {
        let pkt = codecs::rtp::Packet::new_checked(rtp).map_err(|_| Invalid::Malformed)?;
        let ev =
            telephone_event::Packet::new_checked(pkt.payload()).map_err(|_| Invalid::Malformed)?;
        let event = ev.event();
        if event > 15 {
            return Err(Invalid::NotDtmf(event));
        }
        let ts = pkt.timestamp();
        if !ev.end() || self.last == Some(ts) {
            return Ok(Received::Part);
        }
        self.last = Some(ts);
        let ms = u64::from(ev.duration()) * 1000 / u64::from(rate.max(1));
        Ok(Received::Event {
            event,
            duration_ms: u16::try_from(ms).unwrap_or(u16::MAX),
        })
    }
}

/// The event being played.
#[derive(Debug, Clone, Copy)]
struct Tone {
    event: u8,
    /// The event's RTP timestamp (its start).
    ts: u32,
    /// Its whole duration, in timestamp units.
    total: u16,
    /// The duration the next packet carries.
    next_duration: u16,
    /// The next packet is the event's first (M bit).
    first: bool,
    ends_left: u8,
}

/// Plays Meta DTMF as RFC 4733 packets on one stream. See the module docs.
#[derive(Debug, Clone)]
pub struct DtmfSender {
    te: TelephoneEvent,
    ssrc: u32,
    seq: u16,
    ts_base: u32,
    /// Engine time of `ts_base`.
    epoch: Duration,
    queue: VecDeque<(u8, u16)>,
    tone: Option<Tone>,
    /// When the next packet is due.
    next: Option<Duration>,
}

impl DtmfSender {
    /// A sender for payload type and rate `te`, its SSRC, first sequence number and timestamp
    /// derived from `seed` (the engine stays deterministic for replay).
    pub fn new(te: TelephoneEvent, seed: u64, now: Duration) -> Self {
        let mix = seed
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(29)
            .wrapping_add(0x5851_f42d_4c95_7f2d);
        DtmfSender {
            te,
            ssrc: (mix >> 32) as u32,
            seq: (mix >> 16) as u16,
            ts_base: mix as u32,
            epoch: now,
            queue: VecDeque::new(),
            tone: None,
            next: None,
        }
    }

    pub fn telephone_event(&self) -> TelephoneEvent {
        self.te
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Queues an event (0-15) to play; `false` when the queue is full or the event is no DTMF
    /// digit (the event is dropped).
    pub fn push(&mut self, now: Duration, event: u8, duration_ms: u16) -> bool {
        if event > 15 || self.queue.len() >= MAX_QUEUED {
            return false;
        }
        self.queue.push_back((event, duration_ms));
        if self.next.is_none() {
            self.next = Some(now);
        }
        true
    }

    /// When the next packet is due.
    pub fn next_due(&self) -> Option<Duration> {
        self.next
    }

    /// `d` in timestamp units (the clock rate comes from the peer's SDP: no overflow).
    fn units(&self, d: Duration) -> u64 {
        let units = d.as_micros().saturating_mul(u128::from(self.te.clock_rate)) / 1_000_000;
        u64::try_from(units).unwrap_or(u64::MAX)
    }

    /// The next packet if it is due at `now`; call again until `None`.
    pub fn poll(&mut self, now: Duration) -> Option<Vec<u8>> {
        let due = self.next?;
        if due > now {
            return None;
        }
        let step = u16::try_from(self.units(PACKET_INTERVAL).max(1)).unwrap_or(u16::MAX);
        let mut tone = match self.tone {
            Some(t) => t,
            None => {
                let Some((event, ms)) = self.queue.pop_front() else {
                    self.next = None;
                    return None;
                };
                let ms = if ms == 0 { DEFAULT_DURATION_MS } else { ms };
                let ms = ms.clamp(MIN_DURATION_MS, MAX_DURATION_MS);
                let total = u16::try_from(self.units(Duration::from_millis(u64::from(ms))))
                    .unwrap_or(u16::MAX)
                    .max(step);
                let elapsed = self.units(now.saturating_sub(self.epoch));
                Tone {
                    event,
                    ts: self.ts_base.wrapping_add(elapsed as u32),
                    total,
                    next_duration: step.min(total),
                    first: true,
                    ends_left: END_PACKETS,
                }
            }
        };
        let end = tone.next_duration >= tone.total;
        let duration = if end { tone.total } else { tone.next_duration };
        let pkt = build_packet(
            self.te.payload_type,
            tone.first,
            self.seq,
            tone.ts,
            self.ssrc,
            tone.event,
            end,
            duration,
        );
        self.seq = self.seq.wrapping_add(1);
        tone.first = false;
        if end {
            tone.ends_left = tone.ends_left.saturating_sub(1);
        } else {
            tone.next_duration = tone.next_duration.saturating_add(step);
        }
        if end && tone.ends_left == 0 {
            self.tone = None;
            self.next = (!self.queue.is_empty())
                .then(|| due.saturating_add(PACKET_INTERVAL + INTER_EVENT_GAP));
        } else {
            self.tone = Some(tone);
            self.next = Some(due.saturating_add(PACKET_INTERVAL));
        }
        Some(pkt)
    }
}

/// One RTP packet (version 2, no padding, extension or CSRC) carrying one event block.
#[allow(clippy::too_many_arguments)]
pub fn build_packet(
    pt: u8,
    marker: bool,
    seq: u16,
    ts: u32,
    ssrc: u32,
    event: u8,
    end: bool,
    duration: u16,
) -> Vec<u8> {
    let mut p = Vec::with_capacity(16);
    p.push(0x80);
    p.push((u8::from(marker) << 7) | (pt & 0x7f));
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    let mut block = [0u8; telephone_event::PAYLOAD_LEN];
    let mut ev = telephone_event::Packet::new_unchecked(&mut block[..]);
    ev.set_event(event);
    ev.set_end_volume(end, VOLUME);
    ev.set_duration(duration);
    p.extend_from_slice(&block);
    p
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    const TE: TelephoneEvent = TelephoneEvent {
        payload_type: 101,
        clock_rate: 8000,
    };

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn event_pkt(ts: u32, seq: u16, event: u8, end: bool, duration: u16) -> Vec<u8> {
        build_packet(101, false, seq, ts, 0x1234, event, end, duration)
    }

    #[test]
    fn one_event_per_end_and_retransmitted_ends_make_none() {
        let mut r = DtmfReceiver::default();
        let mut got = Vec::new();
        // Digit 5: start, updates, three end packets; then digit # at a new timestamp.
        for (i, (ts, ev, end, d)) in [
            (1000, 5, false, 160),
            (1000, 5, false, 320),
            (1000, 5, false, 480),
            (1000, 5, true, 800),
            (1000, 5, true, 800),
            (1000, 5, true, 800),
            (3000, 11, false, 160),
            (3000, 11, true, 640),
            (3000, 11, true, 640),
        ]
        .into_iter()
        .enumerate()
        {
            let i = u16::try_from(i).unwrap();
            if let Received::Event { event, duration_ms } =
                r.on_packet(&event_pkt(ts, i, ev, end, d), 8000).unwrap()
            {
                got.push((event, duration_ms));
            }
        }
        assert_eq!(got, vec![(5, 100), (11, 80)]);
    }

    #[test]
    fn an_event_whose_first_packets_were_lost_is_read_at_its_end() {
        let mut r = DtmfReceiver::default();
        let e = r.on_packet(&event_pkt(7, 1, 0, true, 1600), 8000).unwrap();
        assert_eq!(
            e,
            Received::Event {
                event: 0,
                duration_ms: 200
            }
        );
        // The same digit again is a new event at a new timestamp.
        let e = r
            .on_packet(&event_pkt(4000, 2, 0, true, 800), 8000)
            .unwrap();
        assert!(matches!(e, Received::Event { event: 0, .. }));
    }

    #[test]
    fn malformed_and_non_dtmf_events_are_refused() {
        let mut r = DtmfReceiver::default();
        let mut short = event_pkt(1, 1, 1, true, 160);
        short.truncate(14);
        assert_eq!(r.on_packet(&short, 8000), Err(Invalid::Malformed));
        assert_eq!(r.on_packet(&[0x80, 101], 8000), Err(Invalid::Malformed));
        assert_eq!(r.on_packet(&[], 8000), Err(Invalid::Malformed));
        assert_eq!(
            r.on_packet(&event_pkt(1, 1, 16, true, 160), 8000),
            Err(Invalid::NotDtmf(16))
        );
        // Nothing was remembered: a valid end at that timestamp still counts.
        assert!(matches!(
            r.on_packet(&event_pkt(1, 2, 1, true, 160), 8000),
            Ok(Received::Event { event: 1, .. })
        ));
        // Rate 0 (a broken SDP) does not divide by zero.
        let mut r = DtmfReceiver::default();
        assert!(r.on_packet(&event_pkt(9, 1, 1, true, 160), 0).is_ok());
    }

    /// Every packet the sender emits for `events`, with the time it was due.
    fn play(events: &[(u8, u16)]) -> Vec<(Duration, Vec<u8>)> {
        let mut s = DtmfSender::new(TE, 42, ms(0));
        for &(e, d) in events {
            assert!(s.push(ms(0), e, d));
        }
        let mut out = Vec::new();
        let mut now = ms(0);
        while let Some(due) = s.next_due() {
            now = now.max(due);
            while let Some(p) = s.poll(now) {
                out.push((now, p));
            }
            assert!(out.len() < 1000);
        }
        out
    }

    #[test]
    fn sent_events_follow_rfc_4733_section_2_5() {
        let pkts = play(&[(1, 100), (11, 60)]);
        let reprs: Vec<_> = pkts
            .iter()
            .map(|(t, p)| {
                let rtp = codecs::rtp::Packet::new_checked(&p[..]).unwrap();
                let ev = telephone_event::Packet::new_checked(rtp.payload()).unwrap();
                let repr = telephone_event::Repr::parse(&ev).unwrap();
                (
                    *t,
                    rtp.marker(),
                    rtp.payload_type(),
                    rtp.sequence_number(),
                    rtp.timestamp(),
                    rtp.ssrc(),
                    repr,
                )
            })
            .collect();
        // 100 ms: durations 160..640 (4 packets), then 3 ends at 800; 60 ms: 160, 320, 3 ends
        // at 480.
        assert_eq!(reprs.len(), 4 + 3 + 2 + 3, "{reprs:#?}");
        let first = &reprs[0];
        let ssrc = first.5;
        for (i, r) in reprs.iter().enumerate() {
            assert_eq!(r.2, 101);
            assert_eq!(r.5, ssrc, "one SSRC per stream");
            assert_eq!(r.3, first.3.wrapping_add(u16::try_from(i).unwrap()));
            assert_eq!(r.6.volume, VOLUME);
        }
        let digit1: Vec<_> = reprs[..7].iter().collect();
        let digit2: Vec<_> = reprs[7..].iter().collect();
        for (d, event, total) in [(&digit1, 1, 800), (&digit2, 11, 480)] {
            assert!(d[0].1, "the first packet has the M bit");
            assert!(d[1..].iter().all(|r| !r.1));
            assert!(d.iter().all(|r| r.4 == d[0].4 && r.6.event == event));
            let ends: Vec<_> = d.iter().filter(|r| r.6.end).collect();
            assert_eq!(ends.len(), 3);
            assert!(ends.iter().all(|r| r.6.duration == total));
            assert!(d[..d.len() - 3].iter().all(|r| !r.6.end));
            // 20 ms apart.
            for w in d.windows(2) {
                assert_eq!(w[1].0 - w[0].0, ms(20));
            }
        }
        // The second event starts after the first, later in timestamp too.
        assert!(digit2[0].0 >= digit1[6].0 + ms(20));
        assert!(digit2[0].4.wrapping_sub(digit1[0].4) >= 800);
        // And a receiver reads exactly the two digits back.
        let mut r = DtmfReceiver::default();
        let got: Vec<_> = pkts
            .iter()
            .filter_map(|(_, p)| match r.on_packet(p, 8000).unwrap() {
                Received::Event { event, duration_ms } => Some((event, duration_ms)),
                Received::Part => None,
            })
            .collect();
        assert_eq!(got, vec![(1, 100), (11, 60)]);
    }

    #[test]
    fn any_clock_rate_plays_without_overflow() {
        for rate in [0, 1, 8000, 48000, u32::MAX] {
            let te = TelephoneEvent {
                payload_type: 101,
                clock_rate: rate,
            };
            let mut s = DtmfSender::new(te, 3, ms(0));
            let late = Duration::from_secs(400 * 24 * 3600);
            assert!(s.push(late, 5, MAX_DURATION_MS));
            let mut n = 0;
            while let Some(due) = s.next_due() {
                while s.poll(due).is_some() {
                    n += 1;
                }
                assert!(n < 1000, "rate {rate}");
            }
            assert!(n >= 3, "rate {rate}: {n}");
        }
    }

    #[test]
    fn durations_are_clamped_and_the_queue_bounded() {
        let pkts = play(&[(3, 0)]);
        let last = codecs::rtp::Packet::new_checked(&pkts.last().unwrap().1[..]).unwrap();
        let ev = telephone_event::Packet::new_checked(last.payload()).unwrap();
        assert_eq!(ev.duration(), 800, "no duration: 100 ms");
        let pkts = play(&[(3, u16::MAX)]);
        let last = codecs::rtp::Packet::new_checked(&pkts.last().unwrap().1[..]).unwrap();
        let ev = telephone_event::Packet::new_checked(last.payload()).unwrap();
        assert_eq!(ev.duration(), 40000, "at most 5 s");
        let mut s = DtmfSender::new(TE, 1, ms(0));
        for _ in 0..MAX_QUEUED {
            assert!(s.push(ms(0), 1, 100));
        }
        assert!(!s.push(ms(0), 1, 100), "a full queue drops");
        assert!(!DtmfSender::new(TE, 1, ms(0)).push(ms(0), 16, 100));
        // Not due before its time.
        let mut s = DtmfSender::new(TE, 1, ms(0));
        assert!(s.poll(ms(0)).is_none());
        s.push(ms(50), 1, 100);
        assert!(s.poll(ms(49)).is_none());
        assert!(s.poll(ms(50)).is_some());
        assert!(s.poll(ms(50)).is_none());
        assert_eq!(s.next_due(), Some(ms(70)));
    }

    proptest::proptest! {
        /// Any datagram at any rate: a verdict, never a panic; a reported event is a digit.
        #[test]
        fn any_packet_is_judged(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40), rate in proptest::prelude::any::<u32>()) {
            let mut r = DtmfReceiver::default();
            if let Ok(Received::Event { event, .. }) = r.on_packet(&data, rate) {
                proptest::prop_assert!(event <= 15);
            }
        }
    }
}
