//! The media sockets of one half, read by a thread of their own (issue 11).
//!
//! A call with media holds two RTP/RTCP pairs per half, each socket carrying one packet per
//! 20 ms: a gateway with thousands of calls waits on thousands of mostly quiet sockets. They are
//! registered with one epoll instance (mio), read by one thread per half. A socket costs its
//! descriptor and an entry of this thread's table (tens of bytes), not a registration with the
//! async runtime (256 bytes, cache-line aligned) and a future, and reading media never waits
//! behind the runtime's signalling tasks.
//!
//! Each readable socket is read until it is empty, at most [`READ_BURST`] datagrams before the
//! other readable ones get their turn. Each datagram goes to the engine through the sink, which
//! waits for room there: meanwhile datagrams wait in the kernel's buffers, as for any slow
//! reader. Sending stays with the driver, on its own handle of the socket.

use crate::engine::media::MAX_MEDIA_PACKET;
use crate::engine::Side;
use bytes::Bytes;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Datagrams one socket reads per pass before the other readable sockets get their turn.
pub const READ_BURST: usize = 16;

/// The token of the waker; sockets use their descriptor, which is never this.
const WAKE: Token = Token(usize::MAX);

/// Where the thread hands each datagram read: `(side, local, remote, data)`, with `local` the
/// address the engine knows the socket by. Returns `false` when the engine is gone (the
/// thread then stops).
pub type Sink = Box<dyn FnMut(Side, SocketAddr, SocketAddr, Bytes) -> bool + Send>;

enum Command {
    Add {
        socket: Arc<UdpSocket>,
        side: Side,
        local: SocketAddr,
    },
    Remove(RawFd),
    Stop,
}

struct Shared {
    commands: Mutex<Vec<Command>>,
    waker: Waker,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Vec<Command>> {
        self.commands.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `c`, waking the thread when it was not already told to look.
    fn send(&self, c: Command) {
        let mut q = self.lock();
        let wake = q.is_empty();
        q.push(c);
        drop(q);
        if wake {
            // A failed wake-up (the thread gone) leaves the command unread: nothing to do.
            let _ = self.waker.wake();
        }
    }
}

/// The reading thread of one half's media sockets. Dropping it stops the thread, which closes
/// the sockets it still reads.
pub struct MediaPoller {
    shared: Arc<Shared>,
}

impl MediaPoller {
    /// Starts the thread `name`, handing what it reads to `sink`.
    pub fn start(name: String, sink: Sink) -> std::io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKE)?;
        let shared = Arc::new(Shared {
            commands: Mutex::new(Vec::new()),
            waker,
        });
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name(name)
            .spawn(move || run(poll, &thread_shared, sink))?;
        Ok(MediaPoller { shared })
    }

    /// Reads `socket` (non-blocking) from now on, as the engine's `local` on `side`, until the
    /// returned registration is dropped.
    pub fn add(&self, socket: Arc<UdpSocket>, side: Side, local: SocketAddr) -> Registration {
        let fd = socket.as_raw_fd();
        self.shared.send(Command::Add {
            socket,
            side,
            local,
        });
        Registration {
            fd,
            shared: self.shared.clone(),
        }
    }
}

impl Drop for MediaPoller {
    fn drop(&mut self) {
        self.shared.send(Command::Stop);
    }
}

/// A socket the thread reads; dropping it stops the reading (the thread lets its handle of
/// the socket go then).
pub struct Registration {
    fd: RawFd,
    shared: Arc<Shared>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.shared.send(Command::Remove(self.fd));
    }
}

struct Entry {
    socket: Arc<UdpSocket>,
    side: Side,
    local: SocketAddr,
}

/// The thread: applies the commands, reads the readable sockets, sleeps in epoll otherwise.
fn run(mut poll: Poll, shared: &Shared, mut sink: Sink) {
    let mut events = Events::with_capacity(1024);
    let mut entries: HashMap<Token, Entry> = HashMap::new();
    // Sockets left readable after their burst (epoll reports a socket again only when more
    // arrives): read first in the next pass, which then does not sleep.
    let mut pending: Vec<Token> = Vec::new();
    let mut readable: Vec<Token> = Vec::new();
    let mut buf = [0u8; MAX_MEDIA_PACKET + 1];
    loop {
        let timeout = (!pending.is_empty()).then_some(std::time::Duration::ZERO);
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            tracing::error!("media sockets: epoll failed ({e}): media is no longer read");
            return;
        }
        std::mem::swap(&mut readable, &mut pending);
        for event in events.iter() {
            if event.token() == WAKE {
                if !apply(&mut poll, shared, &mut entries) {
                    return;
                }
            } else {
                readable.push(event.token());
            }
        }
        for token in readable.drain(..) {
            // Removed meanwhile: its datagrams are no one's.
            let Some(e) = entries.get(&token) else {
                continue;
            };
            match read(e, &mut buf, &mut sink) {
                Read::Empty => {}
                Read::More => pending.push(token),
                Read::EngineGone => return,
            }
        }
    }
}

/// Applies the queued commands; `false` on stop.
fn apply(poll: &mut Poll, shared: &Shared, entries: &mut HashMap<Token, Entry>) -> bool {
    let commands = std::mem::take(&mut *shared.lock());
    for c in commands {
        match c {
            Command::Add {
                socket,
                side,
                local,
            } => {
                let fd = socket.as_raw_fd();
                let token = Token(usize::try_from(fd).unwrap_or(usize::MAX));
                // Data that came before the registration is reported by it.
                match poll
                    .registry()
                    .register(&mut SourceFd(&fd), token, Interest::READABLE)
                {
                    Ok(()) => {
                        entries.insert(
                            token,
                            Entry {
                                socket,
                                side,
                                local,
                            },
                        );
                    }
                    Err(e) => tracing::warn!("media port {local}: cannot be read ({e})"),
                }
            }
            Command::Remove(fd) => {
                let token = Token(usize::try_from(fd).unwrap_or(usize::MAX));
                if let Some(e) = entries.remove(&token) {
                    let _ = poll.registry().deregister(&mut SourceFd(&fd));
                    drop(e);
                }
            }
            Command::Stop => return false,
        }
    }
    crate::engine::shrink_when_sparse(entries);
    true
}

enum Read {
    /// Read until the socket had nothing more.
    Empty,
    /// [`READ_BURST`] datagrams read: there may be more.
    More,
    EngineGone,
}

/// Reads `e`'s socket into the sink, at most [`READ_BURST`] datagrams. Each is read into
/// `buf`, one byte larger than the largest packet the engine relays: a larger one arrives
/// truncated to that and is dropped there as too large.
fn read(e: &Entry, buf: &mut [u8], sink: &mut Sink) -> Read {
    for _ in 0..READ_BURST {
        match e.socket.recv_from(buf) {
            Ok((n, remote)) => {
                let data = Bytes::copy_from_slice(buf.get(..n).unwrap_or_default());
                if !sink(e.side, e.local, remote, data) {
                    return Read::EngineGone;
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => return Read::Empty,
            // ICMP errors reported on the socket and the like: keep reading.
            Err(_) => {}
        }
    }
    Read::More
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    fn bound() -> Arc<UdpSocket> {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_nonblocking(true).unwrap();
        Arc::new(s)
    }

    type Got = (Side, SocketAddr, SocketAddr, Bytes);

    fn poller() -> (MediaPoller, mpsc::Receiver<Got>) {
        let (tx, rx) = mpsc::channel();
        let sink: Sink =
            Box::new(move |side, local, remote, data| tx.send((side, local, remote, data)).is_ok());
        (MediaPoller::start("test-media".into(), sink).unwrap(), rx)
    }

    /// Every datagram of every socket reaches the sink with its side and the engine's address
    /// of the socket, a burst larger than one pass included, and a datagram sent before the
    /// registration too; once the registration is dropped, nothing more is read.
    #[test]
    fn reads_every_socket_until_its_registration_is_dropped() {
        let (p, rx) = poller();
        let a = bound();
        let b = bound();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (la, lb) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        peer.send_to(b"early", la).unwrap();
        let engine_a: SocketAddr = "192.0.2.1:40000".parse().unwrap();
        let ra = p.add(a.clone(), Side::Outside, engine_a);
        let rb = p.add(b.clone(), Side::Inside, lb);
        let wait = || rx.recv_timeout(Duration::from_secs(5)).expect("datagram");
        let got = wait();
        assert_eq!(
            (got.0, got.1, got.2, &got.3[..]),
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
        let (mut from_a, mut from_b) = (Vec::new(), Vec::new());
        for _ in 0..2 * n {
            let (side, _, _, data) = wait();
            match side {
                Side::Outside => from_a.push(data[0]),
                Side::Inside => from_b.push(data[0]),
            }
        }
        let all: Vec<u8> = (0..n).map(|i| i as u8).collect();
        assert_eq!((from_a, from_b), (all.clone(), all));

        drop(ra);
        // The removal is applied before anything that comes after it is read.
        peer.send_to(b"late", la).unwrap();
        peer.send_to(b"b", lb).unwrap();
        let (side, _, _, data) = wait();
        assert_eq!((side, &data[..]), (Side::Inside, &b"b"[..]));
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
        drop(rb);
        drop(p);
    }

    /// Dropping the poller stops the thread, which lets its handles of the sockets go.
    #[test]
    fn dropping_the_poller_lets_the_sockets_go() {
        let (p, _rx) = poller();
        let a = bound();
        let r = p.add(a.clone(), Side::Outside, a.local_addr().unwrap());
        // Taken up by the thread: it holds a second handle.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while Arc::strong_count(&a) < 2 {
            assert!(std::time::Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(5));
        }
        std::mem::forget(r);
        drop(p);
        while Arc::strong_count(&a) > 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "thread kept the socket"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
