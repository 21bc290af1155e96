//! GW1's front dispatcher, with several GW2s (`[[gw1.gw2]]`): GW1 runs one engine per GW2,
//! each with its own tunnel pair, inside SIP socket and share of the inside media ports. The
//! PBX sends new calls to `sip_bind`, read here: each new INVITE goes to a half whose tunnel is
//! up (round robin), and its Call-ID is remembered so that the CANCEL, the ACK of a refusal
//! and retransmissions reach the same half. The halves answer from their own sockets and put
//! their own address in Via and Contact, so responses and in-dialog requests from the PBX go
//! to them directly.
//!
//! The map is bounded ([`CALL_MAP_CAP`], the oldest entry evicted) and forgets a Call-ID
//! [`CALL_MAP_TTL`] after its last message. Nothing is parsed beyond the first line and the
//! Call-ID: a datagram without one (garbage, a keep-alive) goes to some half, whose engine
//! refuses and counts it as it does on its own socket. Only a full input queue drops a
//! datagram here; drops and evictions are counted and logged.

use super::runtime::Injector;
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::watch;

/// Most Call-IDs remembered at once.
pub const CALL_MAP_CAP: usize = 50_000;
/// How long a Call-ID is remembered after its last message through the front socket.
pub const CALL_MAP_TTL: Duration = Duration::from_secs(15 * 60);
/// Longest Call-ID remembered (longer ones are routed as if they had none).
const MAX_CALL_ID: usize = 256;

/// What the front needs to know of a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An INVITE: a new call unless its Call-ID is known.
    Invite,
    /// Any other request.
    Request,
    /// A response.
    Response,
}

/// The datagram's kind and Call-ID, from its first line and headers; `None` when it does not
/// look like SIP at all.
pub fn classify(data: &[u8]) -> Option<(Kind, Option<&[u8]>)> {
    let mut lines = data.split(|b| *b == b'\n').map(trim_cr);
    let first = lines.next()?;
    let kind = if first.starts_with(b"SIP/2.0 ") {
        Kind::Response
    } else if first.ends_with(b" SIP/2.0") {
        if first.starts_with(b"INVITE ") {
            Kind::Invite
        } else {
            Kind::Request
        }
    } else {
        return None;
    };
    for line in lines {
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = line.split_at(colon);
        let name = name.trim_ascii();
        if name.eq_ignore_ascii_case(b"call-id") || name.eq_ignore_ascii_case(b"i") {
            let value = value.get(1..).unwrap_or_default().trim_ascii();
            let id = (!value.is_empty() && value.len() <= MAX_CALL_ID).then_some(value);
            return Some((kind, id));
        }
    }
    Some((kind, None))
}

fn trim_cr(l: &[u8]) -> &[u8] {
    l.strip_suffix(b"\r").unwrap_or(l)
}

/// Call-ID -> half, bounded and expiring.
#[derive(Debug)]
pub struct CallMap {
    cap: usize,
    ttl: Duration,
    /// The half and when the entry was last used.
    map: HashMap<Bytes, (usize, Instant)>,
    /// Entries in the order they were last used (stale items are skipped when popped).
    order: VecDeque<(Bytes, Instant)>,
    /// Entries dropped to keep within `cap` before their time.
    pub evicted: u64,
}

impl CallMap {
    pub fn new(cap: usize, ttl: Duration) -> Self {
        CallMap {
            cap: cap.max(1),
            ttl,
            map: HashMap::new(),
            order: VecDeque::new(),
            evicted: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The half of `id`, refreshing its entry.
    pub fn get(&mut self, id: &[u8], now: Instant) -> Option<usize> {
        self.expire(now);
        let (half, last) = self.map.get_mut(id)?;
        let half = *half;
        // Requeue at most once a second per entry: the queue stays within a few times the map.
        if now.saturating_duration_since(*last) >= Duration::from_secs(1) {
            *last = now;
            self.order.push_back((Bytes::copy_from_slice(id), now));
        }
        Some(half)
    }

    /// Remembers `id` -> `half`, evicting the least recently used entry when full.
    pub fn insert(&mut self, id: &[u8], half: usize, now: Instant) {
        self.expire(now);
        let key = Bytes::copy_from_slice(id);
        if !self.map.contains_key(id) {
            while self.map.len() >= self.cap {
                if !self.pop_oldest(None) {
                    break;
                }
                self.evicted += 1;
            }
        }
        self.map.insert(key.clone(), (half, now));
        self.order.push_back((key, now));
    }

    fn expire(&mut self, now: Instant) {
        while self.pop_oldest(Some(now)) {}
    }

    /// Drops the least recently used entry (only if expired at `now`, when given); false when
    /// there was none to drop.
    fn pop_oldest(&mut self, expired_at: Option<Instant>) -> bool {
        while let Some((key, stamp)) = self.order.front() {
            let current = self.map.get(key).map(|(_, last)| *last);
            if current != Some(*stamp) {
                // Stale: the entry was used again since (or is gone).
                self.order.pop_front();
                continue;
            }
            if let Some(now) = expired_at {
                if now.saturating_duration_since(*stamp) < self.ttl {
                    return false;
                }
            }
            if let Some((key, _)) = self.order.pop_front() {
                self.map.remove(&key);
            }
            return true;
        }
        false
    }
}

/// What the front counted.
#[derive(Debug, Default)]
pub struct FrontCounters {
    /// Datagrams handed to a half.
    pub dispatched: AtomicU64,
    /// New calls (INVITEs with an unknown Call-ID) given a half.
    pub new_calls: AtomicU64,
    /// New calls given a half whose tunnel was down, none being up (its engine refuses them).
    pub no_tunnel_up: AtomicU64,
    /// Datagrams dropped: the chosen half's input queue was full.
    pub queue_full: AtomicU64,
    /// Datagrams without a Call-ID (not SIP, or none in the header): given to some half, whose
    /// engine refuses them, and not remembered.
    pub unroutable: AtomicU64,
    /// Call-IDs remembered now.
    pub call_ids: AtomicU64,
    /// Call-IDs forgotten before their time to stay within [`CALL_MAP_CAP`].
    pub call_ids_evicted: AtomicU64,
    /// The same, per half (set once when the front starts).
    pub halves: std::sync::OnceLock<Vec<HalfCounters>>,
}

/// What the front counted for one half.
#[derive(Debug)]
pub struct HalfCounters {
    pub name: &'static str,
    /// Datagrams handed to this half.
    pub dispatched: AtomicU64,
    /// New calls given to this half.
    pub new_calls: AtomicU64,
    /// New calls given to this half while no tunnel was up.
    pub no_tunnel_up: AtomicU64,
    /// Datagrams for this half dropped: its input queue was full.
    pub queue_full: AtomicU64,
}

impl HalfCounters {
    pub fn new(name: &'static str) -> Self {
        HalfCounters {
            name,
            dispatched: AtomicU64::new(0),
            new_calls: AtomicU64::new(0),
            no_tunnel_up: AtomicU64::new(0),
            queue_full: AtomicU64::new(0),
        }
    }
}

/// The running front's counters, for the metrics (`None` without a front).
pub fn running() -> Option<Arc<FrontCounters>> {
    RUNNING.lock().ok().and_then(|g| g.clone())
}

/// The counters of the running front, printed at exit by [`finish`].
static RUNNING: std::sync::Mutex<Option<Arc<FrontCounters>>> = std::sync::Mutex::new(None);

/// At exit: the front's totals as one `stats front {..}` line (nothing without a front).
pub fn finish() {
    let running = RUNNING.lock().ok().and_then(|mut g| g.take());
    let Some(c) = running else { return };
    println!(
        "stats front {{\"dispatched\":{},\"new_calls\":{},\"no_tunnel_up\":{},\"queue_full\":{}}}",
        c.dispatched.load(Ordering::Relaxed),
        c.new_calls.load(Ordering::Relaxed),
        c.no_tunnel_up.load(Ordering::Relaxed),
        c.queue_full.load(Ordering::Relaxed)
    );
}

/// The routing decisions, apart from the sockets.
#[derive(Debug)]
pub struct Router {
    pub map: CallMap,
    next: usize,
    /// Datagrams routed without a Call-ID (garbage, keep-alives): to some half, which refuses.
    pub unroutable: u64,
}

impl Router {
    pub fn new(map: CallMap) -> Self {
        Router {
            map,
            next: 0,
            unroutable: 0,
        }
    }

    /// The half for `data`, given which halves have their tunnel up; `None` only with no half.
    /// The second value is true for a new call.
    pub fn route(&mut self, data: &[u8], up: &[bool], now: Instant) -> Option<(usize, bool)> {
        let n = up.len();
        if n == 0 {
            return None;
        }
        let (kind, id) = classify(data).unwrap_or((Kind::Request, None));
        if id.is_none() {
            self.unroutable += 1;
        }
        if let Some(half) = id.and_then(|id| self.map.get(id, now)) {
            if half < n {
                return Some((half, false));
            }
        }
        // Round robin over the halves whose tunnel is up, else over all (the engine refuses).
        let half = (0..n)
            .map(|i| (self.next + i) % n)
            .find(|h| up.get(*h).copied().unwrap_or(false))
            .unwrap_or(self.next % n);
        self.next = (half + 1) % n;
        let new_call = kind == Kind::Invite;
        if let (Some(id), Kind::Invite | Kind::Request) = (id, kind) {
            self.map.insert(id, half, now);
        }
        Some((half, new_call))
    }
}

/// One half as the front sees it.
pub struct FrontHalf {
    pub name: &'static str,
    pub injector: Injector,
    pub tunnel_up: watch::Receiver<bool>,
}

/// Reads `socket` (GW1's `sip_bind`) until the process ends, handing each datagram to a half.
pub async fn run(socket: UdpSocket, halves: Vec<FrontHalf>, counters: Arc<FrontCounters>) {
    let _ = counters
        .halves
        .set(halves.iter().map(|h| HalfCounters::new(h.name)).collect());
    if let Ok(mut g) = RUNNING.lock() {
        *g = Some(counters.clone());
    }
    let mut router = Router::new(CallMap::new(CALL_MAP_CAP, CALL_MAP_TTL));
    let mut buf = vec![0u8; 65_535];
    let mut evicted_logged = 0;
    let mut up: Vec<bool> = Vec::with_capacity(halves.len());
    loop {
        let (n, from): (usize, SocketAddr) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(_) => {
                tokio::task::yield_now().await;
                continue;
            }
        };
        let data = buf.get(..n).unwrap_or_default();
        up.clear();
        up.extend(halves.iter().map(|h| *h.tunnel_up.borrow()));
        let Some((half, new_call)) = router.route(data, &up, Instant::now()) else {
            continue;
        };
        let Some(h) = halves.get(half) else { continue };
        let hc = counters.halves.get().and_then(|v| v.get(half));
        let bump = |pick: fn(&HalfCounters) -> &AtomicU64| {
            if let Some(hc) = hc {
                pick(hc).fetch_add(1, Ordering::Relaxed);
            }
        };
        counters
            .unroutable
            .store(router.unroutable, Ordering::Relaxed);
        if new_call {
            counters.new_calls.fetch_add(1, Ordering::Relaxed);
            bump(|c| &c.new_calls);
            if !up.get(half).copied().unwrap_or(false) {
                counters.no_tunnel_up.fetch_add(1, Ordering::Relaxed);
                bump(|c| &c.no_tunnel_up);
            }
        }
        if h.injector.try_send(from, Bytes::copy_from_slice(data)) {
            counters.dispatched.fetch_add(1, Ordering::Relaxed);
            bump(|c| &c.dispatched);
        } else {
            bump(|c| &c.queue_full);
            let dropped = counters.queue_full.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped == 1 || dropped.is_multiple_of(1000) {
                tracing::warn!(
                    "gw1 front: {dropped} datagrams dropped so far, {}'s input queue full",
                    h.name
                );
            }
        }
        counters
            .call_ids
            .store(router.map.len() as u64, Ordering::Relaxed);
        counters
            .call_ids_evicted
            .store(router.map.evicted, Ordering::Relaxed);
        if router.map.evicted / 1000 > evicted_logged {
            evicted_logged = router.map.evicted / 1000;
            tracing::warn!(
                "gw1 front: {} Call-IDs forgotten before their time (more than {CALL_MAP_CAP} at once)",
                router.map.evicted
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invite(id: &str) -> Vec<u8> {
        format!(
            "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP x;branch=z9hG4bK1\r\nCall-ID: {id}\r\n\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn classifies_requests_responses_and_garbage() {
        assert_eq!(
            classify(&invite("abc")),
            Some((Kind::Invite, Some(&b"abc"[..])))
        );
        assert_eq!(
            classify(b"CANCEL sip:a@b SIP/2.0\ni :  x1 \n\n"),
            Some((Kind::Request, Some(&b"x1"[..])))
        );
        assert_eq!(
            classify(b"SIP/2.0 200 OK\r\ncall-id: r\r\n\r\n"),
            Some((Kind::Response, Some(&b"r"[..])))
        );
        assert_eq!(
            classify(b"OPTIONS sip:a SIP/2.0\r\n\r\nCall-ID: late"),
            Some((Kind::Request, None))
        );
        assert_eq!(classify(b"\r\n\r\n"), None);
        assert_eq!(classify(b""), None);
        assert_eq!(classify(&[0xff; 100]), None);
        let long = "x".repeat(MAX_CALL_ID + 1);
        assert_eq!(classify(&invite(&long)), Some((Kind::Invite, None)));
    }

    #[test]
    fn new_calls_alternate_over_tunnels_up_and_their_messages_follow() {
        let now = Instant::now();
        let mut r = Router::new(CallMap::new(100, Duration::from_secs(60)));
        let up = [true, true];
        assert_eq!(r.route(&invite("a"), &up, now), Some((0, true)));
        assert_eq!(r.route(&invite("b"), &up, now), Some((1, true)));
        assert_eq!(r.route(&invite("c"), &up, now), Some((0, true)));
        // Retransmission and CANCEL of b follow it.
        assert_eq!(r.route(&invite("b"), &up, now), Some((1, false)));
        let cancel = b"CANCEL sip:a@b SIP/2.0\r\nCall-ID: b\r\n\r\n";
        assert_eq!(r.route(cancel, &up, now), Some((1, false)));
        // Half 0's tunnel goes down: new calls all go to 1, known ones stay.
        let up = [false, true];
        assert_eq!(r.route(&invite("d"), &up, now), Some((1, true)));
        assert_eq!(r.route(&invite("e"), &up, now), Some((1, true)));
        assert_eq!(r.route(&invite("a"), &up, now), Some((0, false)));
        // None up: some half still gets it (its engine refuses the call).
        assert!(r.route(&invite("f"), &[false, false], now).is_some());
        assert_eq!(r.route(&invite("g"), &[], now), None);
        // Garbage goes somewhere without being remembered.
        let before = r.map.len();
        let unroutable_before = r.unroutable;
        assert!(r.route(b"\x00\x01garbage", &up, now).is_some());
        assert_eq!(r.unroutable, unroutable_before + 1);
        assert_eq!(r.map.len(), before);
    }

    #[test]
    fn call_map_is_bounded_and_evicts_least_recently_used() {
        let now = Instant::now();
        let mut m = CallMap::new(3, Duration::from_secs(60));
        m.insert(b"a", 0, now);
        m.insert(b"b", 1, now);
        m.insert(b"c", 0, now);
        // a used again a second later: b is now the least recently used.
        assert_eq!(m.get(b"a", now + Duration::from_secs(1)), Some(0));
        m.insert(b"d", 1, now + Duration::from_secs(2));
        assert_eq!(m.len(), 3);
        assert_eq!(m.evicted, 1);
        assert_eq!(m.get(b"b", now + Duration::from_secs(2)), None);
        assert_eq!(m.get(b"a", now + Duration::from_secs(2)), Some(0));
        for i in 0..10_000u32 {
            m.insert(&i.to_be_bytes(), 0, now + Duration::from_secs(3));
        }
        assert_eq!(m.len(), 3);
        assert!(m.order.len() <= 3 * 4, "queue {} items", m.order.len());
    }

    #[test]
    fn call_map_forgets_after_the_ttl_since_last_use() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(10);
        let mut m = CallMap::new(100, ttl);
        m.insert(b"a", 1, t0);
        m.insert(b"b", 0, t0);
        assert_eq!(m.get(b"a", t0 + Duration::from_secs(8)), Some(1));
        // b expired at t0 + 10; a was used at t0 + 8, so lives until t0 + 18.
        assert_eq!(m.get(b"b", t0 + Duration::from_secs(11)), None);
        assert_eq!(m.get(b"a", t0 + Duration::from_secs(12)), Some(1));
        assert_eq!(m.get(b"a", t0 + Duration::from_secs(30)), None);
        assert!(m.is_empty());
        assert_eq!(m.evicted, 0);
        assert!(m.order.is_empty());
    }
}
