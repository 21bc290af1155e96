use super::*;
use crate::pki::{ephemeral_pki, Pki};
use std::sync::OnceLock;

/// Key generation is the slow part; share one PKI (and a foreign one) across tests.
fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| ephemeral_pki().unwrap())
}

fn other_pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| ephemeral_pki().unwrap())
}

const GW2_NONCE: InstanceNonce = InstanceNonce([0x22; 16]);

fn nonce(b: u8) -> InstanceNonce {
    InstanceNonce([b; 16])
}

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn server_on(addr: SocketAddr, allow_multiple: bool) -> TunnelServer {
    let mut cfg = TunnelServerConfig::new(addr, pki().gw2_tls().unwrap(), GW2_NONCE);
    cfg.allow_multiple_gw1 = allow_multiple;
    cfg.handshake_timeout = Duration::from_secs(5);
    TunnelServer::bind(cfg).await.unwrap()
}

fn fast_backoff() -> Backoff {
    Backoff::new(
        Duration::from_millis(20),
        Duration::from_millis(200),
        0.5,
        7,
    )
}

fn client_for(server: SocketAddr, instance: InstanceNonce) -> TunnelClient {
    let mut cfg = TunnelClientConfig::new(
        server.to_string(),
        "localhost",
        pki().gw1_tls().unwrap(),
        instance,
    );
    cfg.backoff = fast_backoff();
    cfg.backoff.max_attempts = Some(3);
    cfg.handshake_timeout = Duration::from_secs(5);
    TunnelClient::new(cfg).unwrap()
}

async fn with_timeout<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("test step timed out")
}

/// Accepts the two connections of a pair, in whichever order they complete.
async fn accept_pair(server: &mut TunnelServer) -> (TunnelConnection, TunnelConnection) {
    let a = with_timeout(server.accept()).await.unwrap();
    let b = with_timeout(server.accept()).await.unwrap();
    if a.kind == ConnectionKind::Signalling {
        (a, b)
    } else {
        (b, a)
    }
}

async fn echo_check(a: &mut TunnelConnection, b: &mut TunnelConnection, msg: &[u8]) {
    a.write_all(msg).await.unwrap();
    a.flush().await.unwrap();
    let mut got = vec![0; msg.len()];
    with_timeout(b.read_exact(&mut got)).await.unwrap();
    assert_eq!(got, msg);
}

/// A raw TLS client, for handshakes TunnelClient would never send.
async fn raw_tls(
    server: SocketAddr,
    cfg: Arc<ClientConfig>,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(server).await.unwrap();
    TlsConnector::from(cfg)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

async fn next_rejection(server: &mut TunnelServer) -> TunnelError {
    match with_timeout(server.next_event()).await.unwrap() {
        ServerEvent::Rejected { error, .. } => error,
        ServerEvent::Connected(c) => panic!("unexpected connection {:?}", c.kind),
    }
}

#[tokio::test]
async fn valid_gw1_connects_both_connections() {
    let mut server = server_on(any_port(), false).await;
    let mut client = client_for(server.local_addr(), nonce(1));
    let (pair, (mut s_sig, mut s_media)) =
        tokio::join!(client.connect_pair(), accept_pair(&mut server));
    let mut pair = pair.unwrap();
    assert_eq!(s_sig.kind, ConnectionKind::Signalling);
    assert_eq!(s_media.kind, ConnectionKind::Media);
    assert_eq!(s_sig.peer.instance, nonce(1));
    assert_eq!(s_media.peer.instance, nonce(1));
    assert_eq!(s_sig.peer.role, Role::Gw1);
    assert_eq!(pair.signalling.peer.role, Role::Gw2);
    assert_eq!(pair.signalling.peer.instance, GW2_NONCE);
    assert_eq!(pair.media.kind, ConnectionKind::Media);
    assert_eq!(pair.media.capabilities, Capabilities::SUPPORTED);
    assert_eq!(server.connected_instances(), vec![nonce(1)]);
    // The payload streams start right after the handshake, both ways.
    echo_check(&mut pair.signalling, &mut s_sig, b"MT meta frames").await;
    echo_check(&mut s_sig, &mut pair.signalling, b"and back").await;
    echo_check(&mut pair.media, &mut s_media, b"\x00\x03\x00\x00\x02").await;
    echo_check(&mut s_media, &mut pair.media, b"media back").await;
    drop((s_sig, s_media));
    assert!(server.connected_instances().is_empty());
}

#[tokio::test]
async fn client_without_certificate_is_refused() {
    let mut server = server_on(any_port(), false).await;
    let cfg = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots(&pki().gw1_tls().unwrap()).unwrap())
        .with_no_client_auth();
    let mut tls = raw_tls(server.local_addr(), Arc::new(cfg)).await;
    let hello = Handshake::Hello(Hello {
        version: Version::CURRENT,
        role: Role::Gw1,
        kind: ConnectionKind::Signalling,
        instance: nonce(3),
        capabilities: Capabilities(0),
    });
    let _ = write_handshake(&mut tls, &hello).await;
    // TLS 1.3: the client learns of the refusal on its first read, as an alert.
    assert!(matches!(
        with_timeout(read_handshake(&mut tls)).await,
        Err(ReadError::Io(_))
    ));
    let err = next_rejection(&mut server).await;
    assert!(
        matches!(&err, TunnelError::Io { context: "TLS handshake", source } if source.to_string().contains("no certificates")),
        "{err}"
    );
    assert!(server.connected_instances().is_empty());
}

#[tokio::test]
async fn client_with_certificate_from_another_ca_is_refused() {
    let mut server = server_on(any_port(), false).await;
    // Trusts our CA (so it accepts GW2) but presents a GW1 certificate from another CA.
    let mut id = other_pki().gw1_tls().unwrap();
    id.ca = pki().gw1_tls().unwrap().ca;
    let mut cfg =
        TunnelClientConfig::new(server.local_addr().to_string(), "localhost", id, nonce(4));
    cfg.backoff.max_attempts = Some(1);
    let mut client = TunnelClient::new(cfg).unwrap();
    let err = with_timeout(client.connect_pair()).await.unwrap_err();
    assert!(matches!(err, TunnelError::Io { .. }), "{err}");
    let err = next_rejection(&mut server).await;
    assert!(
        matches!(
            &err,
            TunnelError::Io {
                context: "TLS handshake",
                ..
            }
        ),
        "{err}"
    );
    assert!(server.connected_instances().is_empty());
}

#[tokio::test]
async fn gw1_refuses_a_server_from_another_ca_or_with_another_name() {
    let mut server = server_on(any_port(), false).await;
    let addr = server.local_addr().to_string();
    let mut id = pki().gw1_tls().unwrap();
    id.ca = other_pki().gw1_tls().unwrap().ca;
    let mut cfg = TunnelClientConfig::new(addr.clone(), "localhost", id, nonce(5));
    cfg.backoff.max_attempts = Some(1);
    let err = with_timeout(TunnelClient::new(cfg).unwrap().connect_pair())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("TLS handshake"), "{err}");

    let mut cfg =
        TunnelClientConfig::new(addr, "gw2.example.net", pki().gw1_tls().unwrap(), nonce(5));
    cfg.backoff.max_attempts = Some(1);
    let err = with_timeout(TunnelClient::new(cfg).unwrap().connect_pair())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not valid for name"), "{err}");
    // Neither reached the tunnel handshake.
    for _ in 0..2 {
        next_rejection(&mut server).await;
    }
}

#[tokio::test]
async fn second_gw1_is_refused_while_the_first_is_connected() {
    let mut server = server_on(any_port(), false).await;
    let mut first = client_for(server.local_addr(), nonce(1));
    let (pair, (s_sig, s_media)) = tokio::join!(first.connect_pair(), accept_pair(&mut server));
    let pair = pair.unwrap();

    let second = client_for(server.local_addr(), nonce(2));
    let err = with_timeout(second.connect(ConnectionKind::Signalling))
        .await
        .unwrap_err();
    match &err {
        TunnelError::Refused(r) => {
            assert_eq!(r.reason, RefusalReason::AnotherInstance);
            assert!(r.text.contains(&nonce(1).to_string()), "{r}");
        }
        other => panic!("expected a refusal, got {other}"),
    }
    assert!(!err.is_fatal());
    next_rejection(&mut server).await;

    // The same instance may not open a second signalling connection either.
    let err = with_timeout(first.connect(ConnectionKind::Signalling))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TunnelError::Refused(r) if r.reason == RefusalReason::DuplicateConnection),
        "{err}"
    );
    next_rejection(&mut server).await;
    assert_eq!(server.connected_instances(), vec![nonce(1)]);

    // Once the first GW1 is gone, the second gets in.
    drop((pair, s_sig, s_media));
    assert!(server.connected_instances().is_empty());
    let mut second = client_for(server.local_addr(), nonce(2));
    let (pair2, _conns) = tokio::join!(second.connect_pair(), accept_pair(&mut server));
    pair2.unwrap();
    assert_eq!(server.connected_instances(), vec![nonce(2)]);
}

#[tokio::test]
async fn several_gw1_when_allowed() {
    let mut server = server_on(any_port(), true).await;
    let mut a = client_for(server.local_addr(), nonce(1));
    let mut b = client_for(server.local_addr(), nonce(2));
    let (pa, _ca) = tokio::join!(a.connect_pair(), accept_pair(&mut server));
    let (pb, _cb) = tokio::join!(b.connect_pair(), accept_pair(&mut server));
    pa.unwrap();
    pb.unwrap();
    assert_eq!(server.connected_instances(), vec![nonce(1), nonce(2)]);
}

#[tokio::test]
async fn wrong_major_version_gets_a_clear_refusal() {
    let mut server = server_on(any_port(), false).await;
    let mut tls = raw_tls(
        server.local_addr(),
        client_tls_config(&pki().gw1_tls().unwrap()).unwrap(),
    )
    .await;
    let hello = Handshake::Hello(Hello {
        version: Version { major: 2, minor: 1 },
        role: Role::Gw1,
        kind: ConnectionKind::Signalling,
        instance: nonce(6),
        capabilities: Capabilities(0),
    });
    write_handshake(&mut tls, &hello).await.unwrap();
    let Ok(Handshake::Refusal(r)) = with_timeout(read_handshake(&mut tls)).await else {
        panic!("expected a refusal")
    };
    assert_eq!(r.reason, RefusalReason::UnsupportedVersion);
    assert_eq!(r.version, Version::CURRENT);
    let shown = TunnelError::Refused(r).to_string();
    assert!(shown.contains("unsupported protocol version"), "{shown}");
    assert!(shown.contains("2.1"), "{shown}");
    assert!(shown.contains("peer speaks tunnel protocol 1.0"), "{shown}");
    // Then GW2 closes the connection.
    let mut rest = Vec::new();
    let _ = with_timeout(tls.read_to_end(&mut rest)).await;
    assert!(rest.is_empty());
    let err = next_rejection(&mut server).await;
    assert!(
        matches!(
            err,
            TunnelError::Handshake(TunnelDecodeError::UnsupportedVersion { major: 2, minor: 1 })
        ),
        "{err}"
    );
}

#[tokio::test]
async fn wrong_role_is_refused_and_fatal() {
    let mut server = server_on(any_port(), false).await;
    let mut tls = raw_tls(
        server.local_addr(),
        client_tls_config(&pki().gw1_tls().unwrap()).unwrap(),
    )
    .await;
    let hello = Handshake::Hello(Hello {
        version: Version::CURRENT,
        role: Role::Gw2,
        kind: ConnectionKind::Media,
        instance: nonce(7),
        capabilities: Capabilities(0),
    });
    write_handshake(&mut tls, &hello).await.unwrap();
    let Ok(Handshake::Refusal(r)) = with_timeout(read_handshake(&mut tls)).await else {
        panic!("expected a refusal")
    };
    assert_eq!(r.reason, RefusalReason::WrongRole);
    assert!(TunnelError::Refused(r).is_fatal());
    next_rejection(&mut server).await;
}

#[tokio::test]
async fn reconnects_after_the_server_restarts() {
    let mut server = server_on(any_port(), false).await;
    let addr = server.local_addr();
    let mut client = client_for(addr, nonce(1));
    client.backoff.max_attempts = None;
    let (pair, conns) = tokio::join!(client.connect_pair(), accept_pair(&mut server));
    let mut pair = pair.unwrap();

    // GW2 goes away: listener and connections.
    drop(conns);
    drop(server);
    let mut buf = [0u8; 16];
    let n = with_timeout(pair.signalling.read(&mut buf)).await;
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");

    // GW1 retries while GW2 is down, and gets through once it is back on the same port.
    let reconnect = tokio::spawn(async move {
        let pair = client.connect_pair().await;
        (client, pair)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!reconnect.is_finished());
    let mut server = server_on(addr, false).await;
    let (_s_sig, _s_media) = accept_pair(&mut server).await;
    let (_client, pair) = with_timeout(reconnect).await.unwrap();
    let pair = pair.unwrap();
    assert_eq!(pair.signalling.peer.instance, GW2_NONCE);
    assert_eq!(server.connected_instances(), vec![nonce(1)]);
}

#[tokio::test]
async fn connect_pair_gives_up_after_max_attempts() {
    // Nothing listens on a port we just released.
    let addr = TcpListener::bind(any_port())
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let mut client = client_for(addr, nonce(1));
    let start = std::time::Instant::now();
    let err = with_timeout(client.connect_pair()).await.unwrap_err();
    assert!(
        matches!(
            err,
            TunnelError::Io {
                context: "connecting to GW2",
                ..
            }
        ),
        "{err}"
    );
    assert!(!err.is_fatal());
    // Three attempts, two sleeps of at most 20 and 40 ms.
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn silent_peer_is_detected_as_dead() {
    let mut server = server_on(any_port(), false).await;
    let mut client = client_for(server.local_addr(), nonce(1));
    let (pair, (mut s_sig, _s_media)) =
        tokio::join!(client.connect_pair(), accept_pair(&mut server));
    let pair = pair.unwrap();
    let mut sig = pair
        .signalling
        .with_dead_peer_timeout(Duration::from_millis(300));

    // A peer that keeps talking stays alive past the timeout.
    let talker = tokio::spawn(async move {
        for _ in 0..6 {
            s_sig.write_all(b"k").await.unwrap();
            s_sig.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        s_sig // kept open, then silent
    });
    let mut got = [0u8; 6];
    with_timeout(sig.read_exact(&mut got)).await.unwrap();
    assert_eq!(&got, b"kkkkkk");
    let _s_sig = talker.await.unwrap();

    // Then silence: the next read fails within about the timeout.
    let start = std::time::Instant::now();
    let err = with_timeout(sig.read(&mut got)).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert!(err.to_string().contains("considered dead"), "{err}");
    let waited = start.elapsed();
    assert!(waited < Duration::from_secs(2), "{waited:?}");

    sig.write_all(b"x").await.unwrap();
    assert!(sig.write_idle() < Duration::from_secs(1));
}

#[test]
fn backoff_doubles_to_the_cap_with_seeded_jitter() {
    let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5), 0.5, 42);
    let delays: Vec<Duration> = (0..10).map(|_| b.next_delay()).collect();
    let bases = [100u64, 200, 400, 800, 1600, 3200, 5000, 5000, 5000, 5000];
    for (d, base) in delays.iter().zip(bases) {
        let base = Duration::from_millis(base);
        assert!(*d <= base && *d >= base / 2, "{d:?} vs {base:?}");
    }
    // Same seed, same delays; another seed, other delays.
    let mut again = Backoff::new(Duration::from_millis(100), Duration::from_secs(5), 0.5, 42);
    assert_eq!(
        (0..10).map(|_| again.next_delay()).collect::<Vec<_>>(),
        delays
    );
    let mut other = Backoff::new(Duration::from_millis(100), Duration::from_secs(5), 0.5, 43);
    assert_ne!(
        (0..10).map(|_| other.next_delay()).collect::<Vec<_>>(),
        delays
    );
    b.reset();
    assert!(b.next_delay() <= Duration::from_millis(100));
    let mut exact = Backoff::new(Duration::from_millis(100), Duration::from_secs(5), 0.0, 1);
    assert_eq!(exact.next_delay(), Duration::from_millis(100));
    assert_eq!(exact.next_delay(), Duration::from_millis(200));
}

#[test]
fn registry_claims_and_releases() {
    let mut r = Registry::default();
    let (a, b) = (nonce(1), nonce(2));
    assert!(r.claim(a, ConnectionKind::Signalling, false).is_ok());
    assert!(r.claim(a, ConnectionKind::Media, false).is_ok());
    assert_eq!(
        r.claim(a, ConnectionKind::Media, false).unwrap_err().0,
        RefusalReason::DuplicateConnection
    );
    assert_eq!(
        r.claim(b, ConnectionKind::Signalling, false).unwrap_err().0,
        RefusalReason::AnotherInstance
    );
    assert_eq!(
        r.claim(a, ConnectionKind::Unknown(9), false).unwrap_err().0,
        RefusalReason::UnknownKind
    );
    r.release(a, ConnectionKind::Signalling);
    assert_eq!(r.instances.len(), 1);
    r.release(a, ConnectionKind::Media);
    assert!(r.instances.is_empty());
    assert!(r.claim(b, ConnectionKind::Signalling, false).is_ok());
}

#[test]
fn nonces_are_random() {
    assert_ne!(
        random_instance_nonce().unwrap(),
        random_instance_nonce().unwrap()
    );
}
