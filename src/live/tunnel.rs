//! The two TLS connections between the gateway halves: [`TunnelServer`] (GW2, accepts) and
//! [`TunnelClient`] (GW1, connects out, reconnects with [`Backoff`]). Mutual TLS 1.3 with the
//! `ring` provider, both certificates chaining to the deployment's private CA, then the tunnel
//! handshake of `codecs/TUNNEL.md` on each connection.
//!
//! This module moves bytes and enforces who may connect; it never looks at Meta or media frames
//! beyond the handshake. [`DeadPeerDetector`] turns a silent peer into a read error.

use crate::pki::TlsIdentity;
use codecs::tunnel::{
    split_handshake, Capabilities, ConnectionKind, Handshake, HandshakeFrame, Hello, InstanceNonce,
    Refusal, RefusalReason, Role, TunnelDecodeError, Version, HANDSHAKE_HEADER_LEN,
};
use rustls::pki_types::ServerName;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::{Instant, Sleep};
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};

/// How long a connection may take from TCP accept (or connect) to the end of the tunnel
/// handshake, by default.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most connections GW2 handshakes at once; more are closed at accept. Only GW1 should ever
/// connect, so this bounds what a stranger on the DMZ can make GW2 spend.
pub const MAX_PENDING_HANDSHAKES: usize = 32;
/// Server events queued for the caller; rejections beyond this are counted, not queued.
pub const EVENT_QUEUE: usize = 64;

/// Why a tunnel connection could not be made or was lost.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TunnelError {
    #[error("{context}: {source}")]
    Io {
        context: &'static str,
        source: io::Error,
    },
    #[error("TLS configuration: {0}")]
    TlsConfig(#[from] rustls::Error),
    #[error("TLS client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("invalid server name {0:?}")]
    InvalidServerName(String),
    #[error("{0} resolves to no address")]
    Resolve(String),
    #[error("peer's handshake: {0}")]
    Handshake(#[from] TunnelDecodeError),
    #[error("peer {0}")]
    Refused(Refusal),
    #[error("peer misbehaved: {0}")]
    PeerMisbehaved(String),
    #[error("timed out: {0}")]
    Timeout(&'static str),
    #[error("random number generator failed")]
    Random,
    #[error("tunnel server stopped")]
    ServerStopped,
}

impl TunnelError {
    fn io(context: &'static str) -> impl FnOnce(io::Error) -> TunnelError {
        move |source| TunnelError::Io { context, source }
    }

    /// True when retrying cannot help (another protocol version, a role or kind mismatch, a
    /// configuration error): [`TunnelClient::connect_pair`] gives up at once.
    pub fn is_fatal(&self) -> bool {
        match self {
            TunnelError::Refused(r) => matches!(
                r.reason,
                RefusalReason::UnsupportedVersion
                    | RefusalReason::WrongRole
                    | RefusalReason::UnknownKind
            ),
            TunnelError::Handshake(TunnelDecodeError::UnsupportedVersion { .. })
            | TunnelError::TlsConfig(_)
            | TunnelError::Verifier(_)
            | TunnelError::InvalidServerName(_)
            | TunnelError::PeerMisbehaved(_) => true,
            _ => false,
        }
    }
}

/// A fresh random instance nonce for this gateway process (TUNNEL.md §4).
pub fn random_instance_nonce() -> Result<InstanceNonce, TunnelError> {
    let mut n = [0u8; 16];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut n)
        .map_err(|_| TunnelError::Random)?;
    Ok(InstanceNonce(n))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(id: &TlsIdentity) -> Result<Arc<RootCertStore>, TunnelError> {
    let mut roots = RootCertStore::empty();
    for ca in &id.ca {
        roots.add(ca.clone())?;
    }
    Ok(Arc::new(roots))
}

/// GW2's rustls configuration: TLS 1.3 only, a client certificate chaining to the CA required.
pub fn server_tls_config(id: &TlsIdentity) -> Result<Arc<ServerConfig>, TunnelError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(id)?, provider()).build()?;
    let cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(id.chain.clone(), id.key.clone_key())?;
    Ok(Arc::new(cfg))
}

/// GW1's rustls configuration: TLS 1.3 only, GW2 verified against the CA, GW1's certificate
/// presented.
pub fn client_tls_config(id: &TlsIdentity) -> Result<Arc<ClientConfig>, TunnelError> {
    let cfg = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(id)?)
        .with_client_auth_cert(id.chain.clone(), id.key.clone_key())?;
    Ok(Arc::new(cfg))
}

/// Why reading a handshake frame failed.
enum ReadError {
    Io(io::Error),
    Decode(TunnelDecodeError),
}

/// Reads exactly one handshake frame, never a byte past it.
async fn read_handshake<S: AsyncRead + Unpin>(s: &mut S) -> Result<Handshake, ReadError> {
    let mut buf = vec![0u8; HANDSHAKE_HEADER_LEN];
    s.read_exact(&mut buf).await.map_err(ReadError::Io)?;
    split_handshake(&buf).map_err(ReadError::Decode)?;
    let len = HandshakeFrame::new_unchecked(&buf[..]).frame_len();
    buf.resize(len, 0);
    if let Some(body) = buf.get_mut(HANDSHAKE_HEADER_LEN..) {
        s.read_exact(body).await.map_err(ReadError::Io)?;
    }
    Handshake::decode(&buf).map_err(ReadError::Decode)
}

async fn write_handshake<S: AsyncWrite + Unpin>(s: &mut S, h: &Handshake) -> io::Result<()> {
    let mut out = Vec::with_capacity(h.buffer_len());
    h.encode(&mut out)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    s.write_all(&out).await?;
    s.flush().await
}

/// Sends a Refusal and closes the connection (close_notify, then FIN). Errors are ignored: the
/// peer may already be gone.
async fn refuse<S: AsyncWrite + Unpin>(s: &mut S, reason: RefusalReason, text: &str) {
    let _ = write_handshake(s, &Handshake::Refusal(Refusal::new(reason, text))).await;
    let _ = s.shutdown().await;
}

/// GW2's record of which GW1 instances hold which connections.
#[derive(Debug, Default)]
struct Registry {
    /// Live connections per instance: [signalling, media].
    instances: HashMap<InstanceNonce, [u32; 2]>,
}

fn slot(kind: ConnectionKind) -> Option<usize> {
    match kind {
        ConnectionKind::Signalling => Some(0),
        ConnectionKind::Media => Some(1),
        ConnectionKind::Unknown(_) => None,
    }
}

impl Registry {
    fn claim(
        &mut self,
        nonce: InstanceNonce,
        kind: ConnectionKind,
        allow_multiple: bool,
    ) -> Result<(), (RefusalReason, String)> {
        let Some(i) = slot(kind) else {
            return Err((RefusalReason::UnknownKind, format!("{kind}")));
        };
        if !allow_multiple {
            if let Some(other) = self.instances.keys().find(|n| **n != nonce) {
                return Err((
                    RefusalReason::AnotherInstance,
                    format!("GW1 instance {other} is connected"),
                ));
            }
        }
        let counts = self.instances.entry(nonce).or_default();
        let count = counts.get_mut(i);
        match count {
            Some(c) if *c > 0 => Err((
                RefusalReason::DuplicateConnection,
                format!("instance {nonce} already has a {kind} connection"),
            )),
            Some(c) => {
                *c = 1;
                Ok(())
            }
            None => Err((RefusalReason::UnknownKind, format!("{kind}"))),
        }
    }

    fn release(&mut self, nonce: InstanceNonce, kind: ConnectionKind) {
        if let (Some(counts), Some(i)) = (self.instances.get_mut(&nonce), slot(kind)) {
            if let Some(c) = counts.get_mut(i) {
                *c = c.saturating_sub(1);
            }
            if counts.iter().all(|c| *c == 0) {
                self.instances.remove(&nonce);
            }
        }
    }
}

/// Frees a connection's place in the registry when the connection is dropped.
#[derive(Debug)]
struct Lease {
    registry: Arc<Mutex<Registry>>,
    nonce: InstanceNonce,
    kind: ConnectionKind,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.registry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .release(self.nonce, self.kind);
    }
}

/// One authenticated tunnel connection after the handshake: the payload stream (Meta frames on
/// signalling, media frames on media). Reads and writes go to the TLS stream; on GW2, dropping
/// it frees the instance's place.
#[derive(Debug)]
pub struct TunnelConnection {
    pub kind: ConnectionKind,
    /// The peer's Hello.
    pub peer: Hello,
    /// What both sides support (TUNNEL.md §4.1).
    pub capabilities: Capabilities,
    pub remote: SocketAddr,
    stream: TlsStream<TcpStream>,
    _lease: Option<Lease>,
}

impl TunnelConnection {
    /// Wraps the connection so a read fails once the peer has sent nothing for `dead_after`.
    pub fn with_dead_peer_timeout(self, dead_after: Duration) -> DeadPeerDetector<Self> {
        DeadPeerDetector::new(self, dead_after)
    }
}

impl AsyncRead for TunnelConnection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TunnelConnection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// GW2's tunnel settings.
#[derive(Debug, Clone)]
pub struct TunnelServerConfig {
    pub listen: SocketAddr,
    pub identity: TlsIdentity,
    /// Accept connections from several GW1 instances at once.
    pub allow_multiple_gw1: bool,
    pub handshake_timeout: Duration,
    /// GW2's own instance nonce, sent in its Hello.
    pub instance: InstanceNonce,
    pub capabilities: Capabilities,
}

impl TunnelServerConfig {
    pub fn new(listen: SocketAddr, identity: TlsIdentity, instance: InstanceNonce) -> Self {
        TunnelServerConfig {
            listen,
            identity,
            allow_multiple_gw1: false,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            instance,
            capabilities: Capabilities::SUPPORTED,
        }
    }
}

/// What happened to one incoming connection.
#[derive(Debug)]
pub enum ServerEvent {
    Connected(Box<TunnelConnection>),
    /// Refused or failed before the handshake completed: TLS (no or bad client certificate),
    /// a bad Hello, a second GW1, a timeout.
    Rejected {
        remote: SocketAddr,
        error: TunnelError,
    },
}

/// GW2's side: listens, authenticates GW1 and yields its connections. Handshakes run
/// concurrently (at most [`MAX_PENDING_HANDSHAKES`]) so a slow stranger cannot hold up GW1.
/// Dropping the server stops listening; connections already yielded stay open.
#[derive(Debug)]
pub struct TunnelServer {
    local: SocketAddr,
    events: mpsc::Receiver<ServerEvent>,
    registry: Arc<Mutex<Registry>>,
    task: JoinHandle<()>,
}

impl Drop for TunnelServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct ServerShared {
    acceptor: TlsAcceptor,
    registry: Arc<Mutex<Registry>>,
    allow_multiple: bool,
    timeout: Duration,
    hello: Hello,
    events: mpsc::Sender<ServerEvent>,
}

impl TunnelServer {
    /// Binds the listener and starts accepting. Must run inside a tokio runtime.
    pub async fn bind(cfg: TunnelServerConfig) -> Result<Self, TunnelError> {
        let tls = server_tls_config(&cfg.identity)?;
        let listener = TcpListener::bind(cfg.listen)
            .await
            .map_err(TunnelError::io("binding the tunnel listener"))?;
        let local = listener
            .local_addr()
            .map_err(TunnelError::io("tunnel listener address"))?;
        let registry = Arc::new(Mutex::new(Registry::default()));
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        let shared = Arc::new(ServerShared {
            acceptor: TlsAcceptor::from(tls),
            registry: registry.clone(),
            allow_multiple: cfg.allow_multiple_gw1,
            timeout: cfg.handshake_timeout,
            hello: Hello {
                version: Version::CURRENT,
                role: Role::Gw2,
                kind: ConnectionKind::Signalling,
                instance: cfg.instance,
                capabilities: cfg.capabilities,
            },
            events: tx,
        });
        let task = tokio::spawn(accept_loop(listener, shared));
        Ok(TunnelServer {
            local,
            events: rx,
            registry,
            task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The next connection event.
    pub async fn next_event(&mut self) -> Result<ServerEvent, TunnelError> {
        self.events.recv().await.ok_or(TunnelError::ServerStopped)
    }

    /// The next authenticated connection, skipping rejected ones.
    pub async fn accept(&mut self) -> Result<TunnelConnection, TunnelError> {
        loop {
            if let ServerEvent::Connected(c) = self.next_event().await? {
                return Ok(*c);
            }
        }
    }

    /// GW1 instances holding at least one connection.
    pub fn connected_instances(&self) -> Vec<InstanceNonce> {
        let mut v: Vec<_> = self
            .registry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .instances
            .keys()
            .copied()
            .collect();
        v.sort();
        v
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<ServerShared>) {
    let pending = Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES));
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(c) => c,
            Err(_) => {
                // Out of descriptors and the like: wait rather than spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = pending.clone().try_acquire_owned() else {
            drop(tcp);
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let result = tokio::time::timeout(shared.timeout, server_handshake(&shared, tcp))
                .await
                .unwrap_or(Err(TunnelError::Timeout("tunnel handshake")));
            drop(permit);
            match result {
                Ok(conn) => {
                    let _ = shared
                        .events
                        .send(ServerEvent::Connected(Box::new(conn)))
                        .await;
                }
                Err(error) => {
                    let _ = shared
                        .events
                        .try_send(ServerEvent::Rejected { remote, error });
                }
            }
        });
    }
}

async fn server_handshake(
    shared: &ServerShared,
    tcp: TcpStream,
) -> Result<TunnelConnection, TunnelError> {
    let remote = tcp.peer_addr().map_err(TunnelError::io("peer address"))?;
    let _ = tcp.set_nodelay(true);
    let mut tls = shared
        .acceptor
        .accept(tcp)
        .await
        .map_err(TunnelError::io("TLS handshake"))?;
    let hello = match read_handshake(&mut tls).await {
        Ok(Handshake::Hello(h)) => h,
        Ok(Handshake::Refusal(r)) => {
            let _ = tls.shutdown().await;
            return Err(TunnelError::Refused(r));
        }
        Err(ReadError::Io(e)) => return Err(TunnelError::io("reading the Hello")(e)),
        Err(ReadError::Decode(e)) => {
            let reason = match e {
                TunnelDecodeError::UnsupportedVersion { .. } => RefusalReason::UnsupportedVersion,
                _ => RefusalReason::Malformed,
            };
            refuse(&mut tls, reason, &e.to_string()).await;
            return Err(TunnelError::Handshake(e));
        }
    };
    let refused = |reason, text: String| {
        (
            reason,
            text.clone(),
            TunnelError::PeerMisbehaved(format!("refused GW1: {text}")),
        )
    };
    let check = if hello.role != Role::Gw1 {
        Err(refused(
            RefusalReason::WrongRole,
            format!("expected GW1, got {}", hello.role),
        ))
    } else {
        shared
            .registry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .claim(hello.instance, hello.kind, shared.allow_multiple)
            .map_err(|(reason, text)| refused(reason, text))
    };
    if let Err((reason, text, error)) = check {
        refuse(&mut tls, reason, &text).await;
        return Err(error);
    }
    let lease = Lease {
        registry: shared.registry.clone(),
        nonce: hello.instance,
        kind: hello.kind,
    };
    let ours = Hello {
        kind: hello.kind,
        ..shared.hello
    };
    write_handshake(&mut tls, &Handshake::Hello(ours))
        .await
        .map_err(TunnelError::io("writing the Hello"))?;
    Ok(TunnelConnection {
        kind: hello.kind,
        peer: hello,
        capabilities: ours.capabilities.common(hello.capabilities),
        remote,
        stream: TlsStream::Server(tls),
        _lease: Some(lease),
    })
}

/// Reconnection delays: `initial`, doubling up to `max`, each shortened by up to `jitter`
/// (a fraction, 0.0–1.0) drawn from a seeded generator, so tests are deterministic and two GW1s
/// do not retry in step.
#[derive(Debug, Clone)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub jitter: f64,
    /// Give up after this many failed attempts; `None` retries forever.
    pub max_attempts: Option<u32>,
    current: Duration,
    rng: u64,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration, jitter: f64, seed: u64) -> Self {
        Backoff {
            initial,
            max,
            jitter: jitter.clamp(0.0, 1.0),
            max_attempts: None,
            current: initial,
            // xorshift must not start at 0.
            rng: if seed == 0 {
                0x9e37_79b9_7f4a_7c15
            } else {
                seed
            },
        }
    }

    fn next_random(&mut self) -> f64 {
        // xorshift64* (Vigna); the top 53 bits as a fraction in [0, 1).
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let x = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The delay before the next attempt; doubles the base for the one after.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.current.min(self.max);
        self.current = self.current.saturating_mul(2).min(self.max);
        let cut = self.jitter * self.next_random();
        Duration::try_from_secs_f64(base.as_secs_f64() * (1.0 - cut)).unwrap_or(base)
    }

    /// Back to `initial`, after a success.
    pub fn reset(&mut self) {
        self.current = self.initial;
    }
}

impl Default for Backoff {
    /// 100 ms doubling to 5 s, up to 50% shorter, seeded from the clock.
    fn default() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Backoff::new(
            Duration::from_millis(100),
            Duration::from_secs(5),
            0.5,
            seed,
        )
    }
}

/// GW1's tunnel settings.
#[derive(Debug, Clone)]
pub struct TunnelClientConfig {
    /// GW2's tunnel address, `host:port` (resolved at each attempt).
    pub server: String,
    /// The name GW2's certificate must carry (DNS name or IP address).
    pub server_name: String,
    pub identity: TlsIdentity,
    /// This GW1 process's nonce: the same on both connections and across reconnects.
    pub instance: InstanceNonce,
    pub capabilities: Capabilities,
    pub handshake_timeout: Duration,
    pub backoff: Backoff,
}

impl TunnelClientConfig {
    pub fn new(
        server: impl Into<String>,
        server_name: impl Into<String>,
        identity: TlsIdentity,
        instance: InstanceNonce,
    ) -> Self {
        TunnelClientConfig {
            server: server.into(),
            server_name: server_name.into(),
            identity,
            instance,
            capabilities: Capabilities::SUPPORTED,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            backoff: Backoff::default(),
        }
    }
}

/// Both connections of one GW1 to GW2.
#[derive(Debug)]
pub struct TunnelPair {
    pub signalling: TunnelConnection,
    pub media: TunnelConnection,
}

/// GW1's side: connects out to GW2, the only direction the firewall allows.
pub struct TunnelClient {
    connector: TlsConnector,
    server: String,
    server_name: ServerName<'static>,
    hello: Hello,
    timeout: Duration,
    backoff: Backoff,
}

impl std::fmt::Debug for TunnelClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelClient")
            .field("server", &self.server)
            .field("server_name", &self.server_name)
            .field("hello", &self.hello)
            .finish_non_exhaustive()
    }
}

impl TunnelClient {
    pub fn new(cfg: TunnelClientConfig) -> Result<Self, TunnelError> {
        let tls = client_tls_config(&cfg.identity)?;
        let server_name = ServerName::try_from(cfg.server_name.clone())
            .map_err(|_| TunnelError::InvalidServerName(cfg.server_name.clone()))?;
        Ok(TunnelClient {
            connector: TlsConnector::from(tls),
            server: cfg.server,
            server_name,
            hello: Hello {
                version: Version::CURRENT,
                role: Role::Gw1,
                kind: ConnectionKind::Signalling,
                instance: cfg.instance,
                capabilities: cfg.capabilities,
            },
            timeout: cfg.handshake_timeout,
            backoff: cfg.backoff,
        })
    }

    /// One attempt at one connection.
    pub async fn connect(&self, kind: ConnectionKind) -> Result<TunnelConnection, TunnelError> {
        tokio::time::timeout(self.timeout, self.connect_inner(kind))
            .await
            .unwrap_or(Err(TunnelError::Timeout("tunnel connect and handshake")))
    }

    async fn connect_inner(&self, kind: ConnectionKind) -> Result<TunnelConnection, TunnelError> {
        let mut last = None;
        let addrs = tokio::net::lookup_host(&self.server)
            .await
            .map_err(TunnelError::io("resolving GW2"))?;
        let mut tcp = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let tcp = match (tcp, last) {
            (Some(t), _) => t,
            (None, Some(e)) => return Err(TunnelError::io("connecting to GW2")(e)),
            (None, None) => return Err(TunnelError::Resolve(self.server.clone())),
        };
        let remote = tcp.peer_addr().map_err(TunnelError::io("peer address"))?;
        let _ = tcp.set_nodelay(true);
        let mut tls = self
            .connector
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(TunnelError::io("TLS handshake"))?;
        let ours = Hello { kind, ..self.hello };
        write_handshake(&mut tls, &Handshake::Hello(ours))
            .await
            .map_err(TunnelError::io("writing the Hello"))?;
        // With TLS 1.3, GW2's verdict on our certificate arrives here, as an alert.
        let hello = match read_handshake(&mut tls).await {
            Ok(Handshake::Hello(h)) => h,
            Ok(Handshake::Refusal(r)) => return Err(TunnelError::Refused(r)),
            Err(ReadError::Io(e)) => return Err(TunnelError::io("reading GW2's Hello")(e)),
            Err(ReadError::Decode(e)) => {
                let reason = match e {
                    TunnelDecodeError::UnsupportedVersion { .. } => {
                        RefusalReason::UnsupportedVersion
                    }
                    _ => RefusalReason::Malformed,
                };
                refuse(&mut tls, reason, &e.to_string()).await;
                return Err(TunnelError::Handshake(e));
            }
        };
        if hello.role != Role::Gw2 || hello.kind != kind {
            let text = format!("expected GW2 {kind}, got {} {}", hello.role, hello.kind);
            refuse(&mut tls, RefusalReason::WrongRole, &text).await;
            return Err(TunnelError::PeerMisbehaved(text));
        }
        Ok(TunnelConnection {
            kind,
            peer: hello,
            capabilities: ours.capabilities.common(hello.capabilities),
            remote,
            stream: TlsStream::Client(tls),
            _lease: None,
        })
    }

    /// Opens signalling then media, retrying the pair with [`Backoff`] until both are up, a
    /// fatal error ([`TunnelError::is_fatal`]) occurs or the attempts run out (the last error
    /// is returned). Call again after the pair is lost.
    pub async fn connect_pair(&mut self) -> Result<TunnelPair, TunnelError> {
        let mut attempts: u32 = 0;
        loop {
            let result = async {
                let signalling = self.connect(ConnectionKind::Signalling).await?;
                let media = self.connect(ConnectionKind::Media).await?;
                Ok::<_, TunnelError>(TunnelPair { signalling, media })
            }
            .await;
            let error = match result {
                Ok(pair) => {
                    self.backoff.reset();
                    return Ok(pair);
                }
                Err(e) => e,
            };
            attempts = attempts.saturating_add(1);
            let exhausted = self.backoff.max_attempts.is_some_and(|max| attempts >= max);
            if error.is_fatal() || exhausted {
                return Err(error);
            }
            tokio::time::sleep(self.backoff.next_delay()).await;
        }
    }
}

/// Wraps a stream so a read fails with [`io::ErrorKind::TimedOut`] once the peer has sent
/// nothing for `dead_after`: the other side sends a keepalive (Meta `Keepalive` on signalling,
/// a cover frame on media) whenever it has been quiet for its keepalive interval, so silence
/// means the peer or the path is dead. Writes pass through and are timed so the owner knows
/// when its own keepalive is due ([`DeadPeerDetector::write_idle`]).
#[derive(Debug)]
pub struct DeadPeerDetector<S> {
    inner: S,
    dead_after: Duration,
    deadline: Pin<Box<Sleep>>,
    last_write: Instant,
}

impl<S> DeadPeerDetector<S> {
    /// `dead_after` is capped at a day.
    pub fn new(inner: S, dead_after: Duration) -> Self {
        let dead_after = dead_after.min(Duration::from_secs(86_400));
        let now = Instant::now();
        DeadPeerDetector {
            inner,
            dead_after,
            deadline: Box::pin(tokio::time::sleep_until(now + dead_after)),
            last_write: now,
        }
    }

    /// How long since the last successful write.
    pub fn write_idle(&self) -> Duration {
        self.last_write.elapsed()
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for DeadPeerDetector<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    let next = Instant::now() + this.dead_after;
                    this.deadline.as_mut().reset(next);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "peer silent for {} ms: connection considered dead",
                        this.dead_after.as_millis()
                    ),
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for DeadPeerDetector<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            if *n > 0 {
                this.last_write = Instant::now();
            }
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
