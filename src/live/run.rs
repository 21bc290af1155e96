//! `sgw run`: turns the configuration (or the built-in demo) into one or two [`Driver`]s with
//! their sockets and tunnel, runs them until SIGINT/SIGTERM, and prints each half's counters.

use super::answer::AnswerEndpoint;
use super::runtime::{bind_tcp_for, bind_udp_for, Driver, StartError, Summary, TcpLimits};
use super::tunnel::{
    random_instance_nonce, TunnelClient, TunnelClientConfig, TunnelServer, TunnelServerConfig,
};
use crate::config::{self, Config};
use crate::engine::ids::IdKey;
use crate::engine::{
    policy::SipPolicy, Engine, EngineConfig, Family, InsideConfig, LatchMode, Latching, Role, Side,
    Transport,
};
use crate::pki::TlsIdentity;
use anyhow::{anyhow, bail, Context};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;

/// Outside media ports of the demo.
pub const DEMO_OUTSIDE_PORTS: (u16, u16) = (20000, 24999);
/// Inside media ports of the demo.
pub const DEMO_INSIDE_PORTS: (u16, u16) = (25000, 29999);
/// How long the demo waits for its own tunnel before printing the address to call anyway.
const DEMO_TUNNEL_WAIT: Duration = Duration::from_secs(10);

/// What `sgw run` was asked to do.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub config: Option<std::path::PathBuf>,
    pub role: Option<Role>,
    /// Demo only: GW2's SIP address (UDP and TCP); port 0 picks a free one.
    pub listen: SocketAddr,
    /// `-q`: the log's filter (set up by `crate::live::logging::init`) keeps the per-call and
    /// per-rejection lines out; the drivers log everything at its level.
    pub quiet: bool,
}

/// GW2's part of a configuration, ready to bind.
#[derive(Debug, Clone)]
pub struct Gw2Plan {
    pub engine: EngineConfig,
    pub sip_udp: Vec<SocketAddr>,
    pub sip_tcp: Vec<SocketAddr>,
    /// SIP over TLS listeners, with the server configuration they present.
    pub sip_tls: Vec<SocketAddr>,
    pub sip_tls_config: Option<Arc<rustls::ServerConfig>>,
    /// `outside_transport = "tls"`: the client configuration and the next hop's name.
    pub outside_tls: Option<(
        Arc<rustls::ClientConfig>,
        rustls::pki_types::ServerName<'static>,
    )>,
    pub h225_tcp: Vec<SocketAddr>,
    /// The address outside peers reach GW2 on: replaces an unspecified bind address in what
    /// the engine writes (Via, Contact, SDP).
    pub advertise: IpAddr,
    pub tunnel_listen: SocketAddr,
    pub allow_multiple_gw1: bool,
    pub identity: TlsIdentity,
    pub tcp_limits: TcpLimits,
    /// From TCP accept to the end of the TLS and tunnel handshake on the tunnel listener.
    pub handshake_timeout: Duration,
    /// Cover traffic on what GW2 writes to the media tunnel.
    pub cover: Option<crate::live::cover::CoverTraffic>,
}

/// GW1's part of a configuration, ready to bind.
#[derive(Debug, Clone)]
pub struct Gw1Plan {
    /// The half's name in logs, metrics and `sgw ctl` ("gw1"; with several GW2s "gw1-1", ...).
    pub half: &'static str,
    pub engine: EngineConfig,
    pub family: Family,
    pub sip_bind: SocketAddr,
    pub advertise: IpAddr,
    pub tunnel: String,
    pub tunnel_server_name: String,
    pub identity: TlsIdentity,
    /// Cover traffic on what GW1 writes to the media tunnel.
    pub cover: Option<crate::live::cover::CoverTraffic>,
    /// `protocol = "h323"`: GW1's inside H.225.0 listener.
    pub h225_listen: Option<SocketAddr>,
    /// `[gw1.gatekeeper]`: GW1 registers to an inside gatekeeper over RAS.
    pub gatekeeper: Option<config::GatekeeperSection>,
}

/// The port of GW1's inside H.225.0 call signalling address announced to the gatekeeper
/// (`callSignalAddress`, on `sip_bind`'s address): the standard 1720.
pub const GW1_H225_PORT: u16 = 1720;

/// Where a started GW2 listens.
#[derive(Debug, Clone)]
pub struct Gw2Bound {
    pub sip_udp: Vec<SocketAddr>,
    pub sip_tcp: Vec<SocketAddr>,
    pub sip_tls: Vec<SocketAddr>,
    pub h225_tcp: Vec<SocketAddr>,
    pub tunnel: SocketAddr,
}

fn engine_transport(t: config::Transport) -> Transport {
    match t {
        config::Transport::Udp => Transport::Udp,
        config::Transport::Tcp => Transport::Tcp,
        config::Transport::Tls => Transport::Tls,
    }
}

fn random_seed() -> u64 {
    random_instance_nonce()
        .ok()
        .and_then(|n| n.0.get(..8).and_then(|b| b.try_into().ok()))
        .map_or(0x5347_5700, u64::from_be_bytes)
}

/// The key of live identifiers (Call-IDs, tags, branches: `engine::ids`), from the OS
/// generator. A gateway that cannot get one does not start: predictable identifiers would let
/// an outsider forge in-dialog requests.
fn live_id_key() -> anyhow::Result<IdKey> {
    IdKey::from_os().map_err(|e| anyhow!("no random key for identifiers from the OS: {e}"))
}

/// A fresh key for the digest nonces of this run (they do not survive a restart).
pub(crate) fn nonce_key() -> anyhow::Result<[u8; 32]> {
    use ring::rand::SecureRandom;
    let mut k = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut k)
        .map_err(|_| anyhow!("no random bytes for the digest nonce key"))?;
    Ok(k)
}

fn advertised(bound: SocketAddr, advertise: IpAddr) -> SocketAddr {
    if bound.ip().is_unspecified() {
        SocketAddr::new(advertise, bound.port())
    } else {
        bound
    }
}

/// Binds GW2's SIP listeners and tunnel server; the returned driver is ready to run.
pub async fn start_gw2(plan: Gw2Plan) -> Result<(Driver, Gw2Bound), StartError> {
    let mut udp = Vec::new();
    for a in &plan.sip_udp {
        udp.push(bind_udp_for("SIP UDP listener", *a)?);
    }
    let mut tcp = Vec::new();
    for a in &plan.sip_tcp {
        tcp.push(bind_tcp_for("SIP TCP listener", *a).await?);
    }
    let mut tls = Vec::new();
    for a in &plan.sip_tls {
        tls.push(bind_tcp_for("SIP TLS listener", *a).await?);
    }
    let mut h225 = Vec::new();
    for a in &plan.h225_tcp {
        h225.push(bind_tcp_for("H.225.0 listener", *a).await?);
    }
    let tls_config = plan.sip_tls_config.clone();
    let outside_tls = plan.outside_tls.clone();
    let advertise = plan.advertise;
    let (mut driver, mut bound) = start_gw2_with(plan, udp, tcp).await?;
    if let Some((config, name)) = outside_tls {
        driver.set_outside_tls(config, name);
    }
    if let Some(config) = tls_config {
        for l in tls {
            if let Ok(a) = l.local_addr() {
                bound.sip_tls.push(advertised(a, advertise));
            }
            driver.add_tls_listener(l, config.clone());
        }
    }
    for l in h225 {
        if let Ok(a) = l.local_addr() {
            bound.h225_tcp.push(a);
        }
        driver.add_stream_listener(l, crate::engine::StreamProtocol::H225);
    }
    Ok((driver, bound))
}

async fn start_gw2_with(
    plan: Gw2Plan,
    udp: Vec<UdpSocket>,
    tcp: Vec<TcpListener>,
) -> Result<(Driver, Gw2Bound), StartError> {
    let keepalive = plan.engine.tunnel_keepalive;
    let mut server_cfg =
        TunnelServerConfig::new(plan.tunnel_listen, plan.identity, random_instance_nonce()?);
    server_cfg.allow_multiple_gw1 = plan.allow_multiple_gw1;
    server_cfg.handshake_timeout = plan.handshake_timeout;
    let server = TunnelServer::bind(server_cfg).await?;
    let mut driver = Driver::new(
        "gw2",
        Engine::new(EngineConfig {
            role: Role::Gw2,
            ..plan.engine
        }),
    );
    let mut bound = Gw2Bound {
        sip_udp: Vec::new(),
        sip_tcp: Vec::new(),
        sip_tls: Vec::new(),
        h225_tcp: Vec::new(),
        tunnel: server.local_addr(),
    };
    for s in udp {
        let local = s.local_addr().map_err(|source| StartError::Bind {
            what: "SIP UDP listener",
            addr: SocketAddr::new(plan.advertise, 0),
            source,
        })?;
        let addr = advertised(local, plan.advertise);
        driver.add_udp(Side::Outside, s, addr);
        bound.sip_udp.push(addr);
    }
    driver.set_tcp_limits(plan.tcp_limits);
    for l in tcp {
        if let Ok(a) = l.local_addr() {
            bound.sip_tcp.push(advertised(a, plan.advertise));
        }
        driver.add_tcp_listener(l);
    }
    driver.set_cover_traffic(plan.cover);
    driver.add_tunnel_server(server, keepalive);
    Ok((driver, bound))
}

/// Binds GW1's inside SIP socket and starts its tunnel client; returns the driver and the
/// address GW1 uses for SIP on the inside.
pub fn start_gw1(plan: Gw1Plan) -> Result<(Driver, SocketAddr), StartError> {
    let sock = bind_udp_for("inside SIP socket", plan.sip_bind)?;
    let local = sock.local_addr().map_err(|source| StartError::Bind {
        what: "inside SIP socket",
        addr: plan.sip_bind,
        source,
    })?;
    let sip = advertised(local, plan.advertise);
    let mut engine = EngineConfig {
        role: Role::Gw1,
        inside_family: Some(plan.family),
        ..plan.engine
    };
    match plan.family {
        Family::V4 => engine.inside_v4.gw1_sip = sip,
        Family::V6 => engine.inside_v6.gw1_sip = sip,
    }
    let keepalive = engine.tunnel_keepalive;
    let mut client_cfg = TunnelClientConfig::new(
        plan.tunnel,
        plan.tunnel_server_name,
        plan.identity,
        random_instance_nonce()?,
    );
    client_cfg.handshake_timeout = Duration::from_secs(5);
    let client = TunnelClient::new(client_cfg)?;
    let tcp = match engine
        .inside_v4
        .transport
        .max_reliable(engine.inside_v6.transport)
    {
        Transport::Udp => None,
        _ => Some(
            std::net::TcpListener::bind(local).map_err(|source| StartError::Bind {
                what: "inside SIP TCP listener",
                addr: local,
                source,
            })?,
        ),
    };
    // H.323 inside: GW1's H.225.0 listener (its address goes into RAS registrations).
    let h225 = match plan.h225_listen {
        Some(at) => {
            let l = std::net::TcpListener::bind(at)
                .and_then(|l| {
                    l.set_nonblocking(true)?;
                    Ok(l)
                })
                .map_err(|source| StartError::Bind {
                    what: "inside H.225.0 listener",
                    addr: at,
                    source,
                })?;
            let bound = l.local_addr().map_err(|source| StartError::Bind {
                what: "inside H.225.0 listener",
                addr: at,
                source,
            })?;
            println!("gw1 h225 {bound}");
            Some((l, advertised(bound, plan.advertise)))
        }
        None => None,
    };
    // RAS: GW1's own socket on the inside toward the gatekeeper.
    let ras = match &plan.gatekeeper {
        Some(gk) => {
            let bind = gk.bind_address(local);
            let sock = bind_udp_for("RAS socket", bind)?;
            let bound = sock.local_addr().map_err(|source| StartError::Bind {
                what: "RAS socket",
                addr: bind,
                source,
            })?;
            let ras = advertised(bound, plan.advertise);
            let signalling = h225
                .as_ref()
                .map_or(SocketAddr::new(sip.ip(), GW1_H225_PORT), |(_, a)| *a);
            engine.gatekeeper = Some(gk.ras_config(ras, signalling));
            println!("gw1 ras {ras} gatekeeper {}", gk.address);
            Some((sock, ras))
        }
        None => None,
    };
    let mut driver = Driver::new(plan.half, Engine::new(engine));
    driver.add_udp(Side::Inside, sock, sip);
    if let Some((sock, ras)) = ras {
        driver.add_udp(Side::Inside, sock, ras);
    }
    if let Some((l, at)) = h225 {
        let l = tokio::net::TcpListener::from_std(l).map_err(|source| StartError::Bind {
            what: "inside H.225.0 listener",
            addr: at,
            source,
        })?;
        driver.add_inside_h225_listener(l);
    }
    if let Some(l) = tcp {
        let l = l
            .set_nonblocking(true)
            .and_then(|()| tokio::net::TcpListener::from_std(l))
            .map_err(|source| StartError::Bind {
                what: "inside SIP TCP listener",
                addr: local,
                source,
            })?;
        driver.add_inside_tcp_listener(l);
    }
    driver.set_cover_traffic(plan.cover);
    driver.add_tunnel_client(client, keepalive);
    Ok((driver, sip))
}

/// A side's latching from its media section; `default` gives the mode when `latch` is unset.
fn latching(m: &config::MediaConfig, default: Latching) -> Latching {
    Latching {
        mode: match m.latch {
            None => default.mode,
            Some(config::LatchMode::Sdp) => LatchMode::Sdp,
            Some(config::LatchMode::Signalling) => LatchMode::Signalling,
            Some(config::LatchMode::Any) => LatchMode::Any,
        },
        relatch_idle: Duration::from_millis(u64::from(m.relatch_idle_ms)),
    }
}

fn engine_family(f: config::Family) -> Family {
    match f {
        config::Family::Ipv4 => Family::V4,
        config::Family::Ipv6 => Family::V6,
    }
}

/// The engine settings both halves share, from the configuration.
fn base_engine(cfg: &Config) -> EngineConfig {
    let mut e = EngineConfig {
        id_seed: random_seed(),
        ..EngineConfig::default()
    };
    e.access = cfg.policy.access_policy();
    if !cfg.policy.emergency_numbers.is_empty() {
        e.emergency_numbers
            .clone_from(&cfg.policy.emergency_numbers);
    }
    if let Some(g) = &cfg.gw2 {
        e.outside_media_ports = (g.media.port_min, g.media.port_max);
        e.outside_latching = latching(&g.media, Latching::OUTSIDE);
        e.outside_next_hop = g.outside_next_hop;
        // GW2's address in Via and Contact of calls it places: the UDP listener (else the
        // TCP one, and the calls go over TCP), with the advertised media address when the
        // listener is bound to the wildcard.
        let (listener, transport) = match (g.sip_udp.first(), g.sip_tcp.first()) {
            (Some(a), _) => (Some(a), Transport::Udp),
            (None, Some(a)) => (Some(a), Transport::Tcp),
            (None, None) => (g.sip_tls.first(), Transport::Tls),
        };
        // An explicit transport names the listener of that transport in Via and Contact
        // (any other when it has none: GW2 then only dials out on it).
        let (listener, transport) = match g.outside_transport.map(engine_transport) {
            Some(t) => {
                let own = match t {
                    Transport::Udp => g.sip_udp.first(),
                    Transport::Tcp => g.sip_tcp.first(),
                    Transport::Tls => g.sip_tls.first(),
                };
                (own.or(listener), t)
            }
            None => (listener, transport),
        };
        e.outside_transport = transport;
        e.outside_sip = listener.map(|a| {
            let ip = if a.ip().is_unspecified() {
                g.media.ip
            } else {
                a.ip()
            };
            SocketAddr::new(ip, a.port())
        });
        e.max_calls = usize::try_from(g.limits.max_calls).unwrap_or(usize::MAX);
        e.limits = g.limits.engine_limits();
        e.policy = SipPolicy {
            max_message_size: usize::try_from(g.limits.max_message_size)
                .unwrap_or(codecs::sip::MAX_MESSAGE_SIZE),
            ..e.policy
        };
    }
    if let Some(g) = &cfg.gw1 {
        let inside = InsideConfig {
            gw1_sip: g.sip_bind,
            next_hop: g.next_hop,
            media_ip: g.media.ip,
            media_ports: (g.media.port_min, g.media.port_max),
            transport: engine_transport(g.transport),
        };
        e.inside_latching = latching(&g.media, Latching::INSIDE);
        match engine_family(g.family) {
            Family::V4 => e.inside_v4 = inside,
            Family::V6 => e.inside_v6 = inside,
        }
        e.inside_family = Some(engine_family(g.family));
        if g.protocol == config::InsideProtocol::H323 {
            e.inside_protocol = Some(crate::engine::InsideProtocol::H323);
        }
    }
    e
}

fn load_identity(cfg: &Config, half: &str) -> anyhow::Result<TlsIdentity> {
    let Some(p) = &cfg.pki else {
        bail!("--role {half} needs a [pki] section (make one with `sgw pki init DIR`)");
    };
    TlsIdentity::load(&p.ca, &p.cert, &p.key).map_err(|e| anyhow!("[pki]: {e}"))
}

/// Under systemd (`Type=notify`, see `dist/systemd/`): READY=1 once every listener is bound and
/// the halves run, then WATCHDOG=1 at half the unit's `WatchdogSec` while the runtime is alive.
/// Without `NOTIFY_SOCKET` (not started by systemd) nothing is sent.
fn notify_systemd(mut stop: watch::Receiver<bool>) {
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::warn!("systemd notification failed: {e}");
    }
    let Some(period) = sd_notify::watchdog_enabled() else {
        return;
    };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period / 2);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                }
                _ = stop.changed() => return,
            }
        }
    });
}

/// `sgw run` entry point: returns the exit code.
pub fn run(opts: &RunOptions) -> anyhow::Result<u8> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(async {
        let hup = super::control::hangup_signal();
        let (stop_tx, stop_rx) = watch::channel(false);
        let (mut drivers, metrics) = match &opts.config {
            Some(path) => start_from_config(path, opts).await?,
            None => (
                start_demo(opts).await?,
                Some(SocketAddr::new(demo_ip(opts.listen), 0)),
            ),
        };
        if let Some(addr) = metrics {
            let demo = opts.config.is_none();
            let board = start_metrics(addr, demo).await?;
            for d in &mut drivers {
                d.set_metrics(board.clone());
            }
        }
        let halves = drivers.iter().map(Driver::control_handle).collect();
        let control = super::control::start(opts.config.as_deref(), halves, hup)?;
        let mut handles = Vec::new();
        for d in drivers {
            handles.push(tokio::spawn(d.run(stop_rx.clone())));
        }
        notify_systemd(stop_rx.clone());
        // SIGINT/SIGTERM, or the end of a drain (`sgw ctl drain`).
        let mut drained = control.control.exit_requested();
        tokio::select! {
            () = wait_for_signal() => {}
            _ = drained.wait_for(|d| *d) => {}
        }
        control.remove_socket();
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        let _ = stop_tx.send(true);
        for h in handles {
            if let Ok(summary) = h.await {
                print_summary(&summary);
            }
        }
        super::tap::finish();
        super::front::finish();
        Ok(0)
    })
}

fn print_summary(s: &Summary) {
    let json = serde_json::to_string(s).unwrap_or_default();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "stats {} {json}", s.half);
    let _ = out.flush();
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Binds the metrics listener (the demo: port 9464 on its loopback address, else any free
/// port), prints its URL and serves it; the drivers publish into the returned board.
async fn start_metrics(addr: SocketAddr, demo: bool) -> anyhow::Result<super::metrics::Board> {
    let listener = if demo {
        let first = SocketAddr::new(addr.ip(), super::metrics::DEMO_PORT);
        match TcpListener::bind(first).await {
            Ok(l) => l,
            Err(_) => bind_tcp_for("metrics listener", addr).await?,
        }
    } else {
        bind_tcp_for("metrics listener", addr).await?
    };
    let local = listener.local_addr()?;
    println!("metrics http://{local}/metrics");
    let board = super::metrics::Board::default();
    tokio::spawn(super::metrics::serve(listener, board.clone()));
    Ok(board)
}

/// Where the demo listens: the loopback address asked for, else 127.0.0.1.
fn demo_ip(listen: SocketAddr) -> IpAddr {
    if listen.ip().is_loopback() {
        listen.ip()
    } else {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    }
}

/// A half's call record writer (see [`crate::cdr`]): a half whose records cannot be written
/// (no key, a directory it cannot write) does not start.
fn start_records(
    half: &'static str,
    r: &crate::cdr::RecordsConfig,
) -> anyhow::Result<crate::cdr::RecordWriter> {
    let key = crate::cdr::load_key(&r.key).map_err(|e| anyhow!("{half}.records.key: {e}"))?;
    let settings = crate::cdr::Settings::from_config(half, r);
    crate::cdr::RecordWriter::start(settings, key)
        .map_err(|e| anyhow!("{half}.records: cannot write the call records: {e}"))
}

async fn start_from_config(
    path: &Path,
    opts: &RunOptions,
) -> anyhow::Result<(Vec<Driver>, Option<SocketAddr>)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let cfg = Config::from_toml_str(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let role = match (opts.role, &cfg.gw2, &cfg.gw1) {
        (Some(r), _, _) => r,
        (None, Some(_), Some(_)) => Role::Both,
        (None, Some(_), None) => Role::Gw2,
        (None, None, _) => Role::Gw1,
    };
    if role == Role::Both && cfg.gw1.as_ref().is_some_and(|g| g.peers().len() > 1) {
        bail!(
            "not supported yet: --role both with several GW2s ([[gw1.gw2]]); \
             run each half on its own (--role gw2, --role gw1)"
        );
    }
    let mut engine = base_engine(&cfg);
    engine.id_key = Some(live_id_key()?);
    let mut drivers = Vec::new();
    let cover = cfg
        .confidentiality
        .as_ref()
        .filter(|c| c.cover_traffic_kbps > 0)
        .map(|c| crate::live::cover::CoverTraffic::new(c.cover_traffic_kbps, c.cover_interval_ms));
    // With both halves in one process and no [pki], the tunnel uses ephemeral certificates.
    let ephemeral = match (&cfg.pki, role) {
        (None, Role::Both) => Some(crate::pki::ephemeral_pki()?),
        _ => None,
    };
    if matches!(role, Role::Gw2 | Role::Both) {
        let g = cfg
            .gw2
            .as_ref()
            .ok_or_else(|| anyhow!("--role gw2 needs a [gw2] section"))?;
        let identity = match &ephemeral {
            Some(p) => p.gw2_tls()?,
            None => load_identity(&cfg, "gw2")?,
        };
        let mut gw2_engine = engine.clone();
        // Only GW2 challenges (calls from outside reach GW1 admitted already).
        if let Some(a) = &cfg.auth {
            gw2_engine.auth = Some(
                a.digest_config(nonce_key()?)
                    .map_err(|e| anyhow!("[auth]: {e}"))?,
            );
        }
        if let Some(r) = &g.registration {
            gw2_engine.registration = r.engine_registration();
            if gw2_engine.registration.is_none() {
                // `register = false`: the credentials answer challenges only.
                gw2_engine.trunk = Some(r.credentials());
            }
        }
        let plan = Gw2Plan {
            engine: gw2_engine,
            sip_udp: g.sip_udp.clone(),
            sip_tcp: g.sip_tcp.clone(),
            sip_tls: g.sip_tls.clone(),
            sip_tls_config: match (&g.sip_tls_cert, &g.sip_tls_key) {
                (Some(cert), Some(key)) if !g.sip_tls.is_empty() => {
                    Some(crate::live::sip_tls::server_config(cert, key)?)
                }
                _ => None,
            },
            outside_tls: match (
                &g.outside_transport,
                &g.outside_tls_ca,
                &g.outside_tls_server_name,
            ) {
                (Some(config::Transport::Tls), Some(ca), Some(name)) => {
                    let identity = g
                        .outside_tls_cert
                        .as_deref()
                        .zip(g.outside_tls_key.as_deref());
                    let name = rustls::pki_types::ServerName::try_from(name.clone())
                        .map_err(|e| anyhow!("gw2.outside_tls_server_name: {e}"))?;
                    Some((crate::live::sip_tls::client_config(ca, identity)?, name))
                }
                _ => None,
            },
            h225_tcp: g.h225_tcp.clone(),
            advertise: g.media.ip,
            tunnel_listen: g.tunnel_listen,
            allow_multiple_gw1: g.allow_multiple_gw1,
            identity,
            tcp_limits: TcpLimits {
                max_total: usize::try_from(g.limits.max_tcp_connections).unwrap_or(usize::MAX),
                max_per_source: usize::try_from(g.limits.max_tcp_per_source).unwrap_or(usize::MAX),
                idle_timeout: Duration::from_secs(u64::from(g.limits.tcp_idle_timeout_secs)),
                handshake_timeout: Duration::from_secs(u64::from(g.limits.handshake_timeout_secs)),
            },
            handshake_timeout: Duration::from_secs(u64::from(g.limits.handshake_timeout_secs)),
            cover,
        };
        let (mut d, bound) = start_gw2(plan).await?;
        if let Some(r) = &g.records {
            d.set_records(start_records("gw2", r)?);
        }
        println!(
            "gw2 sip udp {} tcp {} tls {} h225 {} tunnel {}",
            list(&bound.sip_udp),
            list(&bound.sip_tcp),
            list(&bound.sip_tls),
            list(&bound.h225_tcp),
            bound.tunnel
        );
        drivers.push(d);
    }
    if matches!(role, Role::Gw1 | Role::Both) {
        let g = cfg
            .gw1
            .as_ref()
            .ok_or_else(|| anyhow!("--role gw1 needs a [gw1] section"))?;
        let identity = match &ephemeral {
            Some(p) => p.gw1_tls()?,
            None => load_identity(&cfg, "gw1")?,
        };
        let peers = g.peers();
        if peers.len() > 1 {
            drivers.extend(start_gw1_halves(g, &peers, &engine, &identity, cover).await?);
        } else {
            let Some(peer) = peers.first() else {
                bail!("[gw1] names no GW2 (tunnel or [[gw1.gw2]])");
            };
            let plan = Gw1Plan {
                half: "gw1",
                engine,
                family: engine_family(g.family),
                sip_bind: g.sip_bind,
                advertise: g.media.ip,
                tunnel: peer.tunnel.clone(),
                tunnel_server_name: peer.tunnel_server_name.clone(),
                identity,
                cover,
                h225_listen: (g.protocol == config::InsideProtocol::H323).then(|| {
                    g.h225_listen
                        .unwrap_or(SocketAddr::new(g.sip_bind.ip(), crate::engine::H225_PORT))
                }),
                gatekeeper: g.gatekeeper.clone(),
            };
            let (mut d, sip) = start_gw1(plan)?;
            if let Some(r) = &g.records {
                d.set_records(start_records("gw1", r)?);
            }
            println!(
                "gw1 sip {sip} next-hop {} tunnel {}",
                g.next_hop, peer.tunnel
            );
            drivers.push(d);
        }
    }
    super::tap::attach(&cfg, &mut drivers).await?;
    let _ = std::io::stdout().flush();
    Ok((drivers, cfg.metrics.as_ref().map(|m| m.listen)))
}

/// GW1 with several GW2s: one engine and driver per GW2 (its own tunnel pair, inside SIP
/// socket on `sip_bind`'s address and share of the inside media ports), and the front
/// dispatcher on `sip_bind` spreading new calls from the inside over the halves whose tunnel
/// is up (see [`super::front`]). The configuration check refused what this does not support.
async fn start_gw1_halves(
    g: &config::Gw1Config,
    peers: &[config::Gw2Peer],
    engine: &EngineConfig,
    identity: &TlsIdentity,
    cover: Option<crate::live::cover::CoverTraffic>,
) -> anyhow::Result<Vec<Driver>> {
    let family = engine_family(g.family);
    let front = bind_udp_for("inside SIP socket", g.sip_bind)?;
    let front_addr = front.local_addr()?;
    let mut drivers = Vec::new();
    let mut halves = Vec::new();
    for (i, (peer, ports)) in peers.iter().zip(g.media_slices()).enumerate() {
        // Named once per half at start-up, for the life of the process.
        let half: &'static str = Box::leak(format!("gw1-{}", i + 1).into_boxed_str());
        // Each engine its own identifiers: two halves must never make the same Call-ID,
        // tag or branch.
        let mut e = EngineConfig {
            id_seed: random_seed(),
            id_key: Some(live_id_key()?),
            ..engine.clone()
        };
        match family {
            Family::V4 => e.inside_v4.media_ports = ports,
            Family::V6 => e.inside_v6.media_ports = ports,
        }
        let plan = Gw1Plan {
            half,
            engine: e,
            family,
            sip_bind: SocketAddr::new(g.sip_bind.ip(), 0),
            advertise: g.media.ip,
            tunnel: peer.tunnel.clone(),
            tunnel_server_name: peer.tunnel_server_name.clone(),
            identity: identity.clone(),
            cover,
            h225_listen: None,
            gatekeeper: None,
        };
        let (d, sip) = start_gw1(plan)?;
        println!(
            "{half} sip {sip} media {}-{} next-hop {} tunnel {}",
            ports.0, ports.1, g.next_hop, peer.tunnel
        );
        halves.push(super::front::FrontHalf {
            name: half,
            injector: d.injector(Side::Inside, sip),
            tunnel_up: d.tunnel_state(),
        });
        drivers.push(d);
    }
    println!(
        "gw1 sip {} front of {} halves, next-hop {}",
        advertised(front_addr, g.media.ip),
        halves.len(),
        g.next_hop
    );
    let counters = Arc::new(super::front::FrontCounters::default());
    tokio::spawn(super::front::run(front, halves, counters));
    Ok(drivers)
}

fn list(a: &[SocketAddr]) -> String {
    if a.is_empty() {
        return "-".to_owned();
    }
    a.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// GW2's SIP UDP and TCP sockets on the same port (a free one when the port is 0).
async fn bind_sip_pair(listen: SocketAddr) -> anyhow::Result<(UdpSocket, TcpListener)> {
    let mut last = None;
    for _ in 0..16 {
        let udp = bind_udp_for("SIP UDP listener", listen)?;
        let port = udp.local_addr()?.port();
        match bind_tcp_for("SIP TCP listener", SocketAddr::new(listen.ip(), port)).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if listen.port() == 0 => last = Some(e),
            Err(e) => return Err(e.into()),
        }
    }
    Err(last.map_or_else(|| anyhow!("no free SIP port"), Into::into))
}

/// The built-in demo: both halves on loopback joined by the real mutual-TLS tunnel (ephemeral
/// certificates), GW1's next hop the built-in answering endpoint.
async fn start_demo(opts: &RunOptions) -> anyhow::Result<Vec<Driver>> {
    let listen = opts.listen;
    let ip = demo_ip(listen);
    let advertise = if listen.ip().is_unspecified() {
        ip
    } else {
        listen.ip()
    };
    let family = Family::of(ip);
    let pki = crate::pki::ephemeral_pki()?;
    let answer = AnswerEndpoint::start(ip).context("starting the answering endpoint")?;
    let (udp, tcp) = bind_sip_pair(listen).await?;
    let base = EngineConfig {
        id_seed: random_seed(),
        id_key: Some(live_id_key()?),
        outside_media_ports: DEMO_OUTSIDE_PORTS,
        ..EngineConfig::default()
    };
    let gw2_plan = Gw2Plan {
        engine: base.clone(),
        sip_udp: Vec::new(),
        sip_tcp: Vec::new(),
        sip_tls: Vec::new(),
        sip_tls_config: None,
        outside_tls: None,
        h225_tcp: Vec::new(),
        advertise,
        tunnel_listen: SocketAddr::new(ip, 0),
        allow_multiple_gw1: false,
        identity: pki.gw2_tls()?,
        tcp_limits: TcpLimits::default(),
        handshake_timeout: crate::live::tunnel::DEFAULT_HANDSHAKE_TIMEOUT,
        cover: None,
    };
    let (gw2, bound) = start_gw2_with(gw2_plan, vec![udp], vec![tcp]).await?;
    let inside = InsideConfig {
        gw1_sip: SocketAddr::new(ip, 0),
        next_hop: answer.sip,
        media_ip: ip,
        media_ports: DEMO_INSIDE_PORTS,
        transport: Transport::Udp,
    };
    let mut gw1_engine = base;
    match family {
        Family::V4 => gw1_engine.inside_v4 = inside,
        Family::V6 => gw1_engine.inside_v6 = inside,
    }
    let gw1_plan = Gw1Plan {
        half: "gw1",
        engine: gw1_engine,
        family,
        sip_bind: SocketAddr::new(ip, 0),
        advertise: ip,
        tunnel: bound.tunnel.to_string(),
        tunnel_server_name: ip.to_string(),
        identity: pki.gw1_tls()?,
        cover: None,
        h225_listen: None,
        gatekeeper: None,
    };
    let (gw1, gw1_sip) = start_gw1(gw1_plan)?;
    let (answer_sip, answer_rtp) = (answer.sip, answer.rtp);
    // The answering endpoint lives as long as the process.
    tokio::spawn(async move {
        let _answer = answer;
        std::future::pending::<()>().await;
    });
    let mut up = gw2.tunnel_state();
    let sip = bound.sip_udp.first().copied().unwrap_or(listen);
    let drivers = vec![gw2, gw1];
    // The drivers must run for the tunnel to come up: the caller spawns them, so wait in a
    // task and print once it is up.
    let host = match sip {
        SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    };
    let tunnel = bound.tunnel;
    tokio::spawn(async move {
        let ok = tokio::time::timeout(DEMO_TUNNEL_WAIT, up.wait_for(|u| *u))
            .await
            .is_ok_and(|r| r.is_ok());
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "sgw demo: GW2 and GW1 on loopback, joined by the mutual-TLS tunnel (ephemeral certificates){}",
            if ok { "" } else { " -- tunnel NOT up yet" }
        );
        let _ = writeln!(out, "  call:        sip:service@{host}");
        let _ = writeln!(out, "  gw2 sip:     {host} (UDP and TCP)");
        let _ = writeln!(
            out,
            "  gw2 media:   {} ports {}-{}",
            sip.ip(),
            DEMO_OUTSIDE_PORTS.0,
            DEMO_OUTSIDE_PORTS.1
        );
        let _ = writeln!(
            out,
            "  tunnel:      {tunnel} (GW1 connects out: signalling + media)"
        );
        let _ = writeln!(
            out,
            "  gw1 sip:     {gw1_sip}, media ports {}-{}",
            DEMO_INSIDE_PORTS.0, DEMO_INSIDE_PORTS.1
        );
        let _ = writeln!(
            out,
            "  inside:      answering endpoint sip {answer_sip} rtp {answer_rtp} (answers every call, echoes RTP)"
        );
        let _ = writeln!(out, "  try:         sipp -sn uac {host} -m 10");
        let _ = out.flush();
    });
    Ok(drivers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_message_size_reaches_the_policy() {
        let text = crate::config::EXAMPLE_CONFIG
            .replace("max_message_size = 65535", "max_message_size = 1500");
        let cfg = Config::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(base_engine(&cfg).policy.max_message_size, 1500);
        let cfg =
            Config::from_toml_str(crate::config::EXAMPLE_CONFIG).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            base_engine(&cfg).policy.max_message_size,
            codecs::sip::MAX_MESSAGE_SIZE
        );
    }

    #[test]
    fn media_latching_reaches_each_side() {
        let cfg =
            Config::from_toml_str(crate::config::EXAMPLE_CONFIG).unwrap_or_else(|e| panic!("{e}"));
        let e = base_engine(&cfg);
        assert_eq!(e.outside_latching, Latching::OUTSIDE);
        assert_eq!(e.inside_latching, Latching::INSIDE);
        // Unset keys give the side's default.
        let text = crate::config::EXAMPLE_CONFIG
            .replace("latch = \"signalling\"", "")
            .replace("latch = \"sdp\"", "")
            .replace("relatch_idle_ms = 2000", "");
        let cfg = Config::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}"));
        let e = base_engine(&cfg);
        assert_eq!(e.outside_latching, Latching::OUTSIDE);
        assert_eq!(e.inside_latching, Latching::INSIDE);
        let text = crate::config::EXAMPLE_CONFIG
            .replace("latch = \"signalling\"", "latch = \"any\"")
            .replace("latch = \"sdp\"", "latch = \"signalling\"")
            .replace("relatch_idle_ms = 2000", "relatch_idle_ms = 750");
        let cfg = Config::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}"));
        let e = base_engine(&cfg);
        assert_eq!(e.outside_latching.mode, LatchMode::Any);
        assert_eq!(e.outside_latching.relatch_idle, Duration::from_millis(750));
        assert_eq!(e.inside_latching.mode, LatchMode::Signalling);
    }
}
