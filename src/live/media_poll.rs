//! The media sockets of one half (issue 11).
//!
//! A call with media holds two RTP/RTCP pairs per half, each socket carrying one packet per
//! 20 ms: a gateway with thousands of calls waits on thousands of mostly quiet sockets. They are
//! registered with an epoll instance of their own (mio), and the driver's task waits on that
//! instance through one registration with the runtime. A socket costs its descriptor and an
//! entry of the table here (tens of bytes), not a registration with the runtime (256 bytes,
//! cache-line aligned) and a reader future; and a datagram is read by the engine's own task, with
//! no hand-over between tasks or threads before the engine sees it.
//!
//! Each readable socket is read until it is empty, at most [`READ_BURST`] datagrams before the
//! other readable ones get their turn, and at most the budget the driver gives per pass; what is
//! left is read first in the next pass, which does not wait. Sending stays with the driver, on
//! its own handle of the socket.

use crate::engine::media::MAX_MEDIA_PACKET;
use crate::engine::Side;
use bytes::Bytes;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use tokio::io::unix::AsyncFd;

/// Datagrams one socket reads per turn before the other readable sockets get theirs.
pub const READ_BURST: usize = 16;

/// Events taken from the epoll instance at once; a full batch means there may be more.
const EVENTS: usize = 1024;

struct Entry {
    socket: Arc<UdpSocket>,
    side: Side,
    local: SocketAddr,
    /// In the list of sockets to read (at most once, however often epoll reports it).
    listed: bool,
}

/// One half's media sockets and their epoll instance.
pub struct MediaSockets {
    /// The epoll instance, registered with the runtime (which owns it, so it is
    /// deregistered before it closes).
    poll: AsyncFd<Poll>,
    events: Events,
    entries: HashMap<Token, Entry>,
    /// Sockets left readable after their turn (epoll reports a socket again only when more
    /// arrives), read first in the next pass.
    pending: Vec<Token>,
    /// The last batch of events filled [`EVENTS`]: the instance may hold more.
    more_events: bool,
    readable: Vec<Token>,
    buf: Box<[u8]>,
}

impl MediaSockets {
    /// Within the runtime the driver runs on.
    pub fn new() -> std::io::Result<Self> {
        // tokio deprecates its safe constructors for I/O safety (an object whose descriptor
        // could close or change while registered) in favour of an unsafe one, and this crate
        // forbids unsafe code. Here the `AsyncFd` owns the `Poll`: its descriptor stays open
        // and the same for the registration's whole life, the condition the unsafe one states.
        #[allow(deprecated)]
        let poll = AsyncFd::with_interest(Poll::new()?, tokio::io::Interest::READABLE)?;
        Ok(MediaSockets {
            poll,
            events: Events::with_capacity(EVENTS),
            entries: HashMap::new(),
            pending: Vec::new(),
            more_events: false,
            readable: Vec::new(),
            // One byte larger than the largest packet the engine relays: a larger datagram is
            // read truncated to that and dropped there as too large.
            buf: vec![0u8; MAX_MEDIA_PACKET + 1].into_boxed_slice(),
        })
    }

    /// Reads `socket` (non-blocking), as the engine's `local` on `side`, until
    /// [`MediaSockets::remove`]; returns the token to remove it by.
    pub fn add(
        &mut self,
        socket: Arc<UdpSocket>,
        side: Side,
        local: SocketAddr,
    ) -> std::io::Result<Token> {
        let fd = socket.as_raw_fd();
        let token = Token(usize::try_from(fd).map_err(std::io::Error::other)?);
        // Data that came before the registration is reported by it.
        self.poll
            .get_ref()
            .registry()
            .register(&mut SourceFd(&fd), token, Interest::READABLE)?;
        self.entries.insert(
            token,
            Entry {
                socket,
                side,
                local,
                listed: false,
            },
        );
        Ok(token)
    }

    /// Stops reading the socket of `token`; its datagrams not read yet are dropped with it.
    pub fn remove(&mut self, token: Token) {
        if let Some(e) = self.entries.remove(&token) {
            let fd = e.socket.as_raw_fd();
            let _ = self
                .poll
                .get_ref()
                .registry()
                .deregister(&mut SourceFd(&fd));
        }
        crate::engine::shrink_when_sparse(&mut self.entries);
    }

    /// Returns when there may be datagrams to read: at once when the last pass left some.
    pub async fn wait(&self) -> std::io::Result<()> {
        if !self.pending.is_empty() || self.more_events {
            return Ok(());
        }
        let mut guard = self.poll.readable().await?;
        // Cleared before reading: what arrives from here on marks the instance ready again.
        guard.clear_ready();
        Ok(())
    }

    /// Reads what the sockets hold, at most `budget` datagrams, handing each to `sink` as
    /// `(side, local, remote, data)`; returns how many were read.
    pub fn read(
        &mut self,
        budget: usize,
        mut sink: impl FnMut(Side, SocketAddr, SocketAddr, Bytes),
    ) -> usize {
        self.more_events = false;
        if let Err(e) = self
            .poll
            .get_mut()
            .poll(&mut self.events, Some(std::time::Duration::ZERO))
        {
            if e.kind() != std::io::ErrorKind::Interrupted {
                tracing::error!("media sockets: epoll failed ({e})");
            }
        }
        self.more_events = self.events.iter().count() >= EVENTS;
        // Each socket is listed once: those left from the last pass first, then those reported
        // now. A flooded socket is not listed again each time more arrives for it.
        std::mem::swap(&mut self.readable, &mut self.pending);
        for event in self.events.iter() {
            let token = event.token();
            if let Some(e) = self.entries.get_mut(&token) {
                if !std::mem::replace(&mut e.listed, true) {
                    self.readable.push(token);
                }
            }
        }
        let mut n = 0;
        for &token in &self.readable {
            let Some(e) = self.entries.get_mut(&token) else {
                continue;
            };
            // Not reached in this pass: first in the next one.
            if n >= budget {
                self.pending.push(token);
                continue;
            }
            let (got, emptied) = read_socket(e, &mut self.buf, budget - n, &mut sink);
            n += got;
            if emptied {
                e.listed = false;
            } else {
                self.pending.push(token);
            }
        }
        self.readable.clear();
        n
    }
}

/// Reads `e`'s socket into `sink`, at most [`READ_BURST`] and `budget` datagrams; returns how
/// many, and whether the socket had nothing more.
fn read_socket(
    e: &Entry,
    buf: &mut [u8],
    budget: usize,
    sink: &mut impl FnMut(Side, SocketAddr, SocketAddr, Bytes),
) -> (usize, bool) {
    let mut n = 0;
    for _ in 0..READ_BURST.min(budget) {
        match e.socket.recv_from(buf) {
            Ok((len, remote)) => {
                n += 1;
                sink(
                    e.side,
                    e.local,
                    remote,
                    Bytes::copy_from_slice(buf.get(..len).unwrap_or_default()),
                );
            }
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => return (n, true),
            // ICMP errors reported on the socket and the like: keep reading.
            Err(_) => {}
        }
    }
    (n, false)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use std::time::Duration;

    fn bound() -> Arc<UdpSocket> {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_nonblocking(true).unwrap();
        Arc::new(s)
    }

    type Got = (Side, SocketAddr, SocketAddr, Bytes);

    /// Waits and reads until `want` datagrams came (at most `budget` per pass), or 5 s.
    async fn collect(m: &mut MediaSockets, want: usize, budget: usize) -> Vec<Got> {
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while got.len() < want {
            tokio::time::timeout_at(deadline, m.wait())
                .await
                .expect("datagrams in time")
                .unwrap();
            let n = m.read(budget, |s, l, r, d| got.push((s, l, r, d)));
            assert!(n <= budget);
        }
        got
    }

    /// Every datagram of every socket is read with its side and the engine's address of the
    /// socket: one sent before the registration, and bursts larger than a socket's turn and
    /// than the budget of a pass; a removed socket is not read any more.
    #[tokio::test]
    async fn reads_every_socket_within_the_budget_until_it_is_removed() {
        let mut m = MediaSockets::new().unwrap();
        let (a, b) = (bound(), bound());
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (la, lb) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        peer.send_to(b"early", la).unwrap();
        let engine_a: SocketAddr = "192.0.2.1:40000".parse().unwrap();
        let ta = m.add(a.clone(), Side::Outside, engine_a).unwrap();
        m.add(b.clone(), Side::Inside, lb).unwrap();
        let got = collect(&mut m, 1, 65).await;
        assert_eq!(
            (got[0].0, got[0].1, got[0].2, &got[0].3[..]),
            (
                Side::Outside,
                engine_a,
                peer.local_addr().unwrap(),
                &b"early"[..]
            )
        );

        let n = 3 * READ_BURST;
        for i in 0..n {
            peer.send_to(&[i as u8], la).unwrap();
            peer.send_to(&[i as u8, 0], lb).unwrap();
        }
        let got = collect(&mut m, 2 * n, 20).await;
        let of = |side| -> Vec<u8> { got.iter().filter(|g| g.0 == side).map(|g| g.3[0]).collect() };
        let all: Vec<u8> = (0..n).map(|i| i as u8).collect();
        assert_eq!((of(Side::Outside), of(Side::Inside)), (all.clone(), all));
        assert!(m.pending.len() <= m.entries.len(), "{:?}", m.pending);

        m.remove(ta);
        peer.send_to(b"late", la).unwrap();
        peer.send_to(b"b", lb).unwrap();
        let got = collect(&mut m, 1, 65).await;
        assert_eq!((got[0].0, &got[0].3[..]), (Side::Inside, &b"b"[..]));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut more = 0;
        m.read(65, |_, _, _, _| more += 1);
        assert_eq!(more, 0, "a removed socket was read");
    }
}
