//! Media sockets bound ahead, off the engine's task (issue 11): one thread per half binds the
//! RTP/RTCP pairs of the ports the engine's media table announced it takes next
//! ([`Binder::prepare`](crate::engine::Binder::prepare)), and opening a stream takes a ready pair
//! instead of making its system calls on the engine's task. It never chooses a port: the media
//! table does, and a port not ready is bound where it is asked for, as before.
//!
//! The stock holds at most the ports announced last per side and address ([`PREPARE_AHEAD`]),
//! and never more than [`MAX_READY`] per side: a pair bound for a port no longer announced is
//! closed when the next announcement comes, so a port is held ahead only while it is among the
//! next ones the gateway hands out.

use crate::engine::media::PREPARE_AHEAD;
use crate::engine::Side;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

/// Pairs ready per side at most, whatever was announced.
pub const MAX_READY: usize = 4 * PREPARE_AHEAD;

/// The RTP and RTCP sockets of one media port.
pub type Pair = (UdpSocket, UdpSocket);

/// Binds the RTP socket at `rtp` and the RTCP one at the port above, non-blocking; fails when
/// either is held (by another program, or by this one).
pub fn bind_pair(rtp: SocketAddr) -> std::io::Result<Pair> {
    let rtcp = SocketAddr::new(rtp.ip(), rtp.port().wrapping_add(1));
    let bind = |a: SocketAddr| {
        let s = UdpSocket::bind(a)?;
        s.set_nonblocking(true)?;
        Ok::<_, std::io::Error>(s)
    };
    Ok((bind(rtp)?, bind(rtcp)?))
}

/// How streams' sockets were found, for the driver's counters.
#[derive(Debug, Default)]
pub struct PrebindCounters {
    /// Pairs taken from the stock.
    pub prebound: AtomicU64,
    /// Pairs bound where they were asked for (not ready).
    pub inline: AtomicU64,
}

#[derive(Default)]
struct Stock {
    /// The ports last announced, per side and address, in the order they are taken.
    expected: HashMap<(Side, IpAddr), Vec<u16>>,
    /// Pairs bound ahead, by RTP address.
    ready: HashMap<SocketAddr, (Side, Pair)>,
    /// Announced ports the thread could not bind (held elsewhere): not tried again while they
    /// stay announced.
    failed: HashSet<SocketAddr>,
    /// The port the thread is binding now, outside the lock.
    binding: Option<SocketAddr>,
    /// An announcement came since the thread last closed what is no longer expected.
    changed: bool,
    stop: bool,
}

impl Stock {
    fn expects(&self, side: Side, rtp: SocketAddr) -> bool {
        self.expected
            .get(&(side, rtp.ip()))
            .is_some_and(|ports| ports.contains(&rtp.port()))
    }

    /// The port is taken (or about to be bound where it is asked for): not bound ahead.
    fn forget(&mut self, side: Side, rtp: SocketAddr) {
        if let Some(ports) = self.expected.get_mut(&(side, rtp.ip())) {
            ports.retain(|&p| p != rtp.port());
        }
    }

    /// The first announced port neither ready nor failed, on a side below [`MAX_READY`].
    fn next_to_bind(&self) -> Option<(Side, SocketAddr)> {
        let mut count = [0usize; 2];
        for (side, _) in self.ready.values() {
            if let Some(c) = count.get_mut(usize::from(*side == Side::Inside)) {
                *c += 1;
            }
        }
        self.expected.iter().find_map(|(&(side, ip), ports)| {
            let full = count.get(usize::from(side == Side::Inside));
            if full.is_some_and(|&c| c >= MAX_READY) {
                return None;
            }
            ports
                .iter()
                .map(|&p| SocketAddr::new(ip, p))
                .find(|a| {
                    !self.ready.contains_key(a)
                        && !self.failed.contains(a)
                        && self.binding != Some(*a)
                })
                .map(|a| (side, a))
        })
    }

    /// Moves the pairs of ports no longer announced into `stale` (closed by the caller, outside
    /// the lock), and forgets failures of ports no longer announced.
    fn drop_unexpected(&mut self, stale: &mut Vec<Pair>) {
        let gone: Vec<SocketAddr> = self
            .ready
            .iter()
            .filter(|(a, (side, _))| !self.expects(*side, **a))
            .map(|(a, _)| *a)
            .collect();
        stale.extend(
            gone.iter()
                .filter_map(|a| self.ready.remove(a))
                .map(|(_, p)| p),
        );
        let failed = std::mem::take(&mut self.failed);
        self.failed = failed
            .into_iter()
            .filter(|a| {
                self.expected
                    .iter()
                    .any(|(&(_, ip), ports)| ip == a.ip() && ports.contains(&a.port()))
            })
            .collect();
    }
}

struct Shared {
    stock: Mutex<Stock>,
    /// Wakes the thread: an announcement, or stop.
    work: Condvar,
    /// Wakes a [`Prebinder::take`] waiting for the port the thread was binding.
    done: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Stock> {
        self.stock.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The stock of one half and its binding thread (started at the first announcement).
pub struct Prebinder {
    name: String,
    shared: Arc<Shared>,
    /// Whether the thread runs; `None` before the first announcement.
    started: Option<bool>,
    pub counters: Arc<PrebindCounters>,
}

impl Prebinder {
    /// `name` names the thread (`sgw-gw2-bind`, ...).
    pub fn new(name: String) -> Self {
        Prebinder {
            name,
            shared: Arc::new(Shared {
                stock: Mutex::new(Stock::default()),
                work: Condvar::new(),
                done: Condvar::new(),
            }),
            started: None,
            counters: Arc::new(PrebindCounters::default()),
        }
    }

    /// The ports of `ip` the engine takes next on `side`, in order: they are bound ahead, and
    /// pairs of that side and address not among them are closed.
    pub fn prepare(&mut self, side: Side, ip: IpAddr, upcoming: &mut dyn Iterator<Item = u16>) {
        let started = *self.started.get_or_insert_with(|| {
            let shared = self.shared.clone();
            std::thread::Builder::new()
                .name(self.name.clone())
                .spawn(move || run(&shared))
                .is_ok()
        });
        // Without the thread nothing is bound ahead: every pair is bound when asked for.
        if !started {
            return;
        }
        let mut s = self.shared.lock();
        let ports = s.expected.entry((side, ip)).or_default();
        ports.clear();
        ports.extend(upcoming.take(PREPARE_AHEAD));
        s.changed = true;
        drop(s);
        self.shared.work.notify_one();
    }

    /// The pair of `rtp` when it is ready (counted); `None` when it is not, and then it is not
    /// bound ahead any more: the caller binds it. Waits only when the thread is binding that
    /// very port at this moment (one bind, so the caller's bind does not collide with it).
    pub fn take(&self, side: Side, rtp: SocketAddr) -> Option<Pair> {
        let mut s = self.shared.lock();
        loop {
            if let Some((_, pair)) = s.ready.remove(&rtp) {
                s.forget(side, rtp);
                self.counters.prebound.fetch_add(1, Ordering::Relaxed);
                return Some(pair);
            }
            if s.binding != Some(rtp) {
                break;
            }
            s = self
                .shared
                .done
                .wait(s)
                .unwrap_or_else(PoisonError::into_inner);
        }
        s.forget(side, rtp);
        None
    }
}

#[cfg(test)]
impl Prebinder {
    /// Pairs ready, ports that failed, and whether the thread is binding one now.
    pub(crate) fn stock(&self) -> (usize, usize, bool) {
        let s = self.shared.lock();
        (s.ready.len(), s.failed.len(), s.binding.is_some())
    }
}

impl Drop for Prebinder {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.work.notify_one();
    }
}

/// The binding thread: binds announced ports one at a time, the lock released meanwhile;
/// closes the pairs no longer announced; closes them all when stopped.
fn run(shared: &Shared) {
    loop {
        let mut stale = Vec::new();
        let next = {
            let mut s = shared.lock();
            loop {
                if s.stop {
                    stale.extend(s.ready.drain().map(|(_, (_, p))| p));
                    drop(s);
                    drop(stale);
                    return;
                }
                if std::mem::take(&mut s.changed) {
                    s.drop_unexpected(&mut stale);
                    if !stale.is_empty() {
                        break None;
                    }
                }
                if let Some((side, a)) = s.next_to_bind() {
                    s.binding = Some(a);
                    break Some((side, a));
                }
                s = shared.work.wait(s).unwrap_or_else(PoisonError::into_inner);
            }
        };
        // Closed here, not under the lock.
        drop(stale);
        let Some((side, rtp)) = next else { continue };
        let bound = bind_pair(rtp);
        let mut s = shared.lock();
        s.binding = None;
        let unwanted = match bound {
            Ok(pair) if s.expects(side, rtp) => {
                s.ready.insert(rtp, (side, pair));
                None
            }
            // Taken or no longer announced while it was being bound.
            Ok(pair) => Some(pair),
            Err(_) => {
                s.failed.insert(rtp);
                None
            }
        };
        drop(s);
        shared.done.notify_all();
        drop(unwanted);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::time::{Duration, Instant};

    pub(crate) fn ip() -> IpAddr {
        IpAddr::from([127, 0, 0, 1])
    }

    /// `n` even ports whose pairs are free now (bound and let go).
    pub(crate) fn free_pairs(n: usize) -> Vec<u16> {
        let mut out = Vec::new();
        while out.len() < n {
            let s = UdpSocket::bind((ip(), 0)).unwrap();
            let p = s.local_addr().unwrap().port();
            drop(s);
            if p.is_multiple_of(2) && p < u16::MAX && bind_pair(SocketAddr::new(ip(), p)).is_ok() {
                out.push(p);
            }
        }
        out
    }

    /// Waits until `done` holds of the stock, at most 5 s.
    fn wait(b: &Prebinder, done: impl Fn(&Stock) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !done(&b.shared.lock()) {
            assert!(Instant::now() < deadline, "stock never got there");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn announced_ports_are_taken_ready_a_held_one_is_refused_stale_ones_are_let_go() {
        let ports = free_pairs(4);
        let addr = |i: usize| SocketAddr::new(ip(), ports[i]);
        // Another program holds the third port's RTCP.
        let held = UdpSocket::bind(SocketAddr::new(ip(), ports[2] + 1)).unwrap();

        let mut b = Prebinder::new("test-bind".into());
        b.prepare(Side::Outside, ip(), &mut ports[..3].iter().copied());
        wait(&b, |s| {
            s.ready.len() == 2 && s.failed.contains(&addr(2)) && s.binding.is_none()
        });
        // Ready: taken without binding, and the sockets are the ones asked for.
        let (rtp, rtcp) = b.take(Side::Outside, addr(0)).expect("ready");
        assert_eq!(rtp.local_addr().unwrap(), addr(0));
        assert_eq!(rtcp.local_addr().unwrap().port(), ports[0] + 1);
        assert_eq!(b.counters.prebound.load(Ordering::Relaxed), 1);
        // Held elsewhere: not ready, and binding it where it is asked for fails as before.
        assert!(b.take(Side::Outside, addr(2)).is_none());
        assert!(bind_pair(addr(2)).is_err());
        assert_eq!(b.counters.prebound.load(Ordering::Relaxed), 1);
        drop(held);

        // A new announcement without the second port: its pair is closed (we can bind it), and
        // the fourth is bound ahead instead.
        b.prepare(Side::Outside, ip(), &mut [ports[3]].into_iter());
        wait(&b, |s| {
            s.ready.len() == 1 && s.ready.contains_key(&addr(3)) && s.binding.is_none()
        });
        let mine = bind_pair(addr(1)).expect("the stale pair was let go");
        drop(mine);

        // Stopped: every pair ready is closed.
        drop(b);
        let deadline = Instant::now() + Duration::from_secs(5);
        while bind_pair(addr(3)).is_err() {
            assert!(Instant::now() < deadline, "ready pair kept after stop");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_port_not_ready_is_left_to_the_caller_and_not_bound_ahead_after() {
        let ports = free_pairs(1);
        let a = SocketAddr::new(ip(), ports[0]);
        let mut b = Prebinder::new("test-bind".into());
        // Announced and taken at once: either ready, or the caller binds it and the thread
        // never holds it afterwards.
        b.prepare(Side::Inside, ip(), &mut ports.iter().copied());
        match b.take(Side::Inside, a) {
            Some(pair) => drop(pair),
            None => {
                let pair = bind_pair(a).expect("the thread let the port go");
                drop(pair);
            }
        }
        wait(&b, |s| s.binding.is_none() && s.ready.is_empty());
        assert!(!b.shared.lock().expects(Side::Inside, a));
    }
}
