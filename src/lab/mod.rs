//! `sgw lab up|down|status`: the three-zone interop lab as a command.
//!
//! Network namespaces `PREFIX-inet` (the Internet), `PREFIX-dmz` (GW2, dual-stack),
//! `PREFIX-intra` (GW1 and the PBX; IPv6 only) and `PREFIX-router`, joined to each zone by a
//! veth pair, with the nftables policy of [`ROUTER_NFT`] in the router: the intranet may open
//! TCP to GW2's tunnel port and nothing else, nothing may open anything into the intranet, and
//! the Internet and the DMZ exchange SIP and GW2's media ports. `PREFIX-phone` is a second host
//! on the intranet's LAN (a bridge in `PREFIX-intra` joins it to the link toward the router):
//! a phone on the same host as GW1 would send its RTP from GW1's own address, which GW1 rightly
//! refuses.
//!
//! Unless `--net-only`, `up` then starts, each in its zone and its own process group, logging
//! into the state directory: GW2 and GW1 (this same binary, with generated configurations and
//! PKI), kamailio as the intranet's PBX and registrar, a baresip phone registered there as
//! [`PHONE_USER`] (auto-answer, sends a tone), and a sipp callee in `inet` answering calls out
//! (echoing their RTP). It prints how to place a call each way.
//!
//! `down` stops every process it started (by the pids it wrote, checked against their
//! program) and every process still inside the lab's namespaces, deletes the namespaces (with
//! them the veths and the router's nftables table) and the state directory. It works after a
//! partial `up` and when nothing is left; `up` runs it itself when it fails half-way.
//!
//! Needs root, `ip` and `nft`; the full lab also kamailio, baresip and sipp.

use anyhow::{anyhow, bail, Context, Result};
use std::fmt::Write as _;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cli::{LabArgs, LabCommand, LabCommon};

/// The router's nftables ruleset (loaded with `nft -D` defines for addresses and ports).
pub const ROUTER_NFT: &str = include_str!("router.nft");
/// The nftables table [`ROUTER_NFT`] makes in the router namespace.
pub const NFT_TABLE: &str = "sgw_lab";

/// The namespaces, each `PREFIX-ZONE`.
/// `phone` is a host of the intranet (its LAN is bridged in `intra`).
pub const ZONES: [&str; 5] = ["router", "inet", "dmz", "intra", "phone"];

/// The Internet's host: callers and the outside callee.
pub const INET_V4: &str = "198.51.100.10";
/// Only so that a probe from the Internet toward the intranet has a route and reaches the
/// firewall at all.
pub const INET_V6: &str = "fd00:5357::10";
/// GW2's outside address (SIP, media).
pub const GW2_V4: &str = "203.0.113.10";
/// GW2's DMZ IPv6 address, where GW1's tunnel connections arrive.
pub const GW2_V6: &str = "fd00:5357:1::10";
/// A second GW2's outside address in the DMZ (scale-out, `tests/scale_out.rs`): the firewall
/// treats it as it treats [`GW2_V4`]; no process of the full lab uses it.
pub const GW2B_V4: &str = "203.0.113.11";
/// The second GW2's DMZ IPv6 address (its tunnel port), like [`GW2_V6`].
pub const GW2B_V6: &str = "fd00:5357:1::11";
/// GW1's intranet address.
pub const GW1_V6: &str = "fd00:5357:2::10";
/// The PBX's (kamailio's) address.
pub const PBX_V6: &str = "fd00:5357:2::20";
/// The phone's address, in `PREFIX-phone` (and a sipp caller's in the intranet).
pub const PHONE_V6: &str = "fd00:5357:2::30";

/// GW2's tunnel port.
pub const TUNNEL_PORT: u16 = 7001;
/// The SIP port of GW2, GW1, kamailio and the phone.
pub const SIP_PORT: u16 = 5060;
/// GW2's media ports.
pub const GW2_RTP: (u16, u16) = (20000, 20999);
/// GW1's media ports.
pub const GW1_RTP: (u16, u16) = (30000, 30999);
/// The phone's RTP ports.
pub const PHONE_RTP: (u16, u16) = (40000, 40099);
/// The phone's `ctrl_tcp` port (on 127.0.0.1 inside the phone's namespace).
pub const PHONE_CTRL_PORT: u16 = 4444;
/// The sipp callee in `inet`, GW2's `outside_next_hop`.
pub const OUTSIDE_CALLEE_PORT: u16 = 5070;
/// The port of the sipp caller `up` prints for `inet`.
pub const CALLER_PORT: u16 = 5062;
/// The phone's user at kamailio.
pub const PHONE_USER: &str = "1001";
/// A number kamailio does not know: it goes out through GW1 and GW2 to the outside callee.
pub const OUTSIDE_NUMBER: &str = "4930555777";

/// Where the default state directories are made (`/run/sgw-lab/PREFIX`).
pub const DEFAULT_ROOT: &str = "/run/sgw-lab";

/// The default `--prefix`.
pub const DEFAULT_PREFIX: &str = "sgwlab";

/// The processes of the full lab: (name, zone, program).
const PEERS: [(&str, &str, &str); 5] = [
    ("gw2", "dmz", "sgw"),
    ("gw1", "intra", "sgw"),
    ("kamailio", "intra", "kamailio"),
    ("phone", "phone", "baresip"),
    ("outside-callee", "inet", "sipp"),
];

/// `sgw lab ...`.
pub fn run(args: &LabArgs) -> Result<u8> {
    match &args.command {
        LabCommand::Up { common, net_only } => {
            let lab = Lab::new(common)?;
            lab.up(*net_only)?;
            Ok(0)
        }
        LabCommand::Down { common } => {
            let lab = Lab::new(common)?;
            let left = lab.down();
            if left.is_empty() {
                println!("lab {} is down", lab.prefix);
                Ok(0)
            } else {
                for l in &left {
                    eprintln!("sgw lab down: {l}");
                }
                Ok(1)
            }
        }
        LabCommand::Status { common } => {
            let lab = Lab::new(common)?;
            let (text, up) = lab.status();
            print!("{text}");
            Ok(u8::from(!up))
        }
    }
}

/// One lab: its namespaces' prefix and its state directory.
#[derive(Debug, Clone)]
pub struct Lab {
    pub prefix: String,
    pub dir: PathBuf,
}

impl Lab {
    /// Checks the prefix (it names namespaces and files).
    pub fn new(common: &LabCommon) -> Result<Lab> {
        let p = &common.prefix;
        if p.is_empty()
            || p.len() > 32
            || !p
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            bail!("--prefix {p:?}: 1 to 32 letters, digits, '-' or '_'");
        }
        let dir = common
            .dir
            .clone()
            .unwrap_or_else(|| Path::new(DEFAULT_ROOT).join(p));
        Ok(Lab {
            prefix: p.clone(),
            dir,
        })
    }

    /// The namespace of `zone`.
    pub fn ns(&self, zone: &str) -> String {
        format!("{}-{zone}", self.prefix)
    }

    /// `program` run inside `zone` (`ip netns exec` execs it: the child's pid is its own).
    pub fn exec(&self, zone: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(prog("ip"));
        c.args(["netns", "exec", &self.ns(zone)]).arg(program);
        c
    }

    fn ns_exists(&self, zone: &str) -> bool {
        Path::new("/run/netns").join(self.ns(zone)).exists()
    }

    /// Builds the lab; on failure, removes what it made and returns the error.
    pub fn up(&self, net_only: bool) -> Result<()> {
        check_prerequisites(net_only)?;
        if let Some(z) = ZONES.iter().find(|z| self.ns_exists(z)) {
            bail!(
                "lab {p} exists already (namespace {ns}); `sgw lab down --prefix {p}` first",
                p = self.prefix,
                ns = self.ns(z)
            );
        }
        let started = Instant::now();
        let result = self.try_up(net_only);
        if let Err(e) = result {
            let left = self.down();
            let mut msg = format!("{e:#}\nsgw lab: removed what `up` had made");
            for l in left {
                let _ = write!(msg, "\n  could not remove: {l}");
            }
            bail!(msg);
        }
        print!("{}", self.instructions(net_only, started.elapsed()));
        Ok(())
    }

    fn try_up(&self, net_only: bool) -> Result<()> {
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("state directory {}", self.dir.display()))?;
        self.network()?;
        if net_only {
            return Ok(());
        }
        self.peers()
    }

    /// Namespaces, veths, addresses, routes, forwarding and the router's firewall.
    fn network(&self) -> Result<()> {
        for z in ZONES {
            ip(&["netns", "add", &self.ns(z)])?;
            ip(&["-n", &self.ns(z), "link", "set", "lo", "up"])?;
            // No duplicate address detection, link-local addresses included: while a router's
            // link-local address is tentative it sends no neighbour solicitation, so the first
            // forwarded packets wait (or a SYN is retransmitted, and counted twice).
            run_ok(self.exec(z, prog("sysctl")).args([
                "-qw",
                "net.ipv6.conf.default.accept_dad=0",
                "net.ipv6.conf.all.accept_dad=0",
            ]))?;
        }
        let router = self.ns("router");
        for z in ["inet", "dmz", "intra"] {
            let peer = self.ns(z);
            let r = format!("r-{z}");
            ip(&[
                "link", "add", "name", &r, "netns", &router, "type", "veth", "peer", "name",
                "eth0", "netns", &peer,
            ])?;
            ip(&["-n", &router, "link", "set", &r, "up"])?;
            ip(&["-n", &peer, "link", "set", "eth0", "up"])?;
        }
        let addr = |ns: &str, a: &str, dev: &str, extra: &[&str]| {
            let mut args = vec!["-n", ns, "addr", "add", a, "dev", dev];
            args.extend_from_slice(extra);
            ip(&args)
        };
        addr(&router, "198.51.100.1/24", "r-inet", &[])?;
        addr(&router, "fd00:5357::1/64", "r-inet", &["nodad"])?;
        addr(&router, "203.0.113.1/24", "r-dmz", &[])?;
        addr(&router, "fd00:5357:1::1/64", "r-dmz", &["nodad"])?;
        addr(&router, "fd00:5357:2::1/64", "r-intra", &["nodad"])?;

        let inet = self.ns("inet");
        addr(&inet, &format!("{INET_V4}/24"), "eth0", &[])?;
        addr(&inet, &format!("{INET_V6}/64"), "eth0", &["nodad"])?;
        ip(&[
            "-n",
            &inet,
            "route",
            "add",
            "default",
            "via",
            "198.51.100.1",
        ])?;
        ip(&[
            "-n",
            &inet,
            "-6",
            "route",
            "add",
            "default",
            "via",
            "fd00:5357::1",
        ])?;

        let dmz = self.ns("dmz");
        addr(&dmz, &format!("{GW2_V4}/24"), "eth0", &[])?;
        addr(&dmz, &format!("{GW2_V6}/64"), "eth0", &["nodad"])?;
        // The second GW2's: secondary (IPv4) and deprecated (IPv6), so never picked as a
        // source address by a socket bound to neither.
        addr(&dmz, &format!("{GW2B_V4}/24"), "eth0", &[])?;
        addr(
            &dmz,
            &format!("{GW2B_V6}/64"),
            "eth0",
            &["nodad", "preferred_lft", "0"],
        )?;
        ip(&["-n", &dmz, "route", "add", "default", "via", "203.0.113.1"])?;
        ip(&[
            "-n",
            &dmz,
            "-6",
            "route",
            "add",
            "default",
            "via",
            "fd00:5357:1::1",
        ])?;

        // The intranet's LAN: a bridge in intra joins its link to the router and the phone's.
        let intra = self.ns("intra");
        let phone = self.ns("phone");
        ip(&["-n", &intra, "link", "add", "br0", "type", "bridge"])?;
        ip(&[
            "link", "add", "name", "ph0", "netns", &intra, "type", "veth", "peer", "name", "eth0",
            "netns", &phone,
        ])?;
        for dev in ["eth0", "ph0"] {
            ip(&["-n", &intra, "link", "set", dev, "master", "br0"])?;
        }
        for dev in ["ph0", "br0"] {
            ip(&["-n", &intra, "link", "set", dev, "up"])?;
        }
        ip(&["-n", &phone, "link", "set", "eth0", "up"])?;
        addr(&intra, &format!("{GW1_V6}/64"), "br0", &["nodad"])?;
        // The PBX's address is deprecated (preferred_lft 0), so never picked as a source
        // address: GW1's tunnel connections leave from GW1's address, which the firewall names.
        // kamailio, bound to it, still uses it.
        addr(
            &intra,
            &format!("{PBX_V6}/64"),
            "br0",
            &["nodad", "preferred_lft", "0"],
        )?;
        ip(&[
            "-n",
            &intra,
            "-6",
            "route",
            "add",
            "default",
            "via",
            "fd00:5357:2::1",
        ])?;
        addr(&phone, &format!("{PHONE_V6}/64"), "eth0", &["nodad"])?;
        ip(&[
            "-n",
            &phone,
            "-6",
            "route",
            "add",
            "default",
            "via",
            "fd00:5357:2::1",
        ])?;

        self.wait_links()?;

        run_ok(self.exec("router", prog("sysctl")).args([
            "-qw",
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1",
        ]))?;
        let nft = self.dir.join("router.nft");
        fs::write(&nft, ROUTER_NFT).with_context(|| nft.display().to_string())?;
        run_ok(
            self.exec("router", prog("nft"))
                .args(["-D", &format!("gw2_v4={{ {GW2_V4}, {GW2B_V4} }}")])
                .args(["-D", &format!("gw2_v6={{ {GW2_V6}, {GW2B_V6} }}")])
                .args(["-D", &format!("gw1_v6={GW1_V6}")])
                .args(["-D", &format!("tunnel_port={TUNNEL_PORT}")])
                .args(["-D", &format!("sip_port={SIP_PORT}")])
                .args(["-D", &format!("rtp_min={}", GW2_RTP.0)])
                .args(["-D", &format!("rtp_max={}", GW2_RTP.1)])
                .arg("-f")
                .arg(&nft),
        )?;
        Ok(())
    }

    /// Waits until every veth end is up with its queue activated and no address is tentative:
    /// otherwise the first packets through the router are delayed or lost.
    fn wait_links(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let links = [
            ("router", "r-inet"),
            ("router", "r-dmz"),
            ("router", "r-intra"),
            ("inet", "eth0"),
            ("dmz", "eth0"),
            ("intra", "eth0"),
            ("intra", "ph0"),
            ("intra", "br0"),
            ("phone", "eth0"),
        ];
        loop {
            let mut ready = true;
            for (z, dev) in links {
                let l = output(Command::new(prog("ip")).args([
                    "-n",
                    &self.ns(z),
                    "link",
                    "show",
                    "dev",
                    dev,
                ]))?;
                if l.contains("qdisc noop") || l.contains("NO-CARRIER") || l.contains("state DOWN")
                {
                    ready = false;
                }
            }
            for z in ZONES {
                let t = output(Command::new(prog("ip")).args([
                    "-n",
                    &self.ns(z),
                    "-6",
                    "addr",
                    "show",
                    "tentative",
                ]))?;
                if !t.trim().is_empty() {
                    ready = false;
                }
            }
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the lab's veths were not up after 5 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// PKI, configurations and the processes of the full lab.
    fn peers(&self) -> Result<()> {
        let pki = self.dir.join("pki");
        let opts = crate::pki::PkiOptions {
            gw2_names: vec![GW2_V6.to_owned()],
        };
        crate::pki::init(&pki, &opts, true).context("the lab's PKI")?;
        self.write("gw2.toml", &self.gw2_config())?;
        self.write("gw1.toml", &self.gw1_config())?;
        for f in ["gw2.toml", "gw1.toml"] {
            let text = fs::read_to_string(self.dir.join(f))?;
            if let Err(e) = crate::config::Config::from_toml_str(&text) {
                bail!("the lab's {f} is invalid (a bug): {e}");
            }
        }
        self.write(
            "kamailio.cfg",
            &kamailio_cfg(
                &format!("[{PBX_V6}]:{SIP_PORT}"),
                &format!("[{GW1_V6}]:{SIP_PORT}"),
            ),
        )?;
        let phone_dir = self.dir.join("baresip");
        fs::create_dir_all(&phone_dir)?;
        fs::write(phone_dir.join("config"), baresip_config())?;
        fs::write(
            phone_dir.join("accounts"),
            format!(
                "<sip:{PHONE_USER}@[{PBX_V6}]:{SIP_PORT}>;regint=600;answermode=auto;\
                 audio_codecs=PCMA,PCMU\n"
            ),
        )?;
        self.write("outside-callee.xml", UAS_PCMA)?;
        let pcap = self.dir.join("tone.pcap");
        write_tone_pcap(&pcap, Duration::from_secs(3))?;
        self.write("call.xml", &uac_rtp_scenario(&pcap, 3500))?;

        let exe = std::env::current_exe().context("this sgw binary")?;
        let sgw = |role: &str| {
            let mut c = self.exec(if role == "gw2" { "dmz" } else { "intra" }, &exe);
            c.arg("run")
                .arg("--config")
                .arg(self.dir.join(format!("{role}.toml")))
                .args(["--role", role]);
            c
        };
        // Their exit statuses, for the error when one dies early.
        let mut children = Vec::new();
        children.push(self.spawn("gw2", sgw("gw2"))?);
        self.wait_log("gw2", "gw2 sip udp", Duration::from_secs(15), &mut children)?;
        children.push(self.spawn("gw1", sgw("gw1"))?);
        self.wait_log("gw1", "tunnel up", Duration::from_secs(15), &mut children)?;
        self.wait_log("gw2", "tunnel up", Duration::from_secs(15), &mut children)?;

        let mut kam = self.exec("intra", prog("kamailio"));
        kam.arg("-f")
            .arg(self.dir.join("kamailio.cfg"))
            .args(["-DD", "-E", "-m", "64", "-M", "8", "-w"])
            .arg(&self.dir);
        children.push(self.spawn("kamailio", kam)?);

        let mut callee = self.exec("inet", prog("sipp"));
        callee
            .current_dir(&self.dir)
            .args(["-nostdin", "-sf"])
            .arg(self.dir.join("outside-callee.xml"))
            .args(["-i", INET_V4, "-p", &OUTSIDE_CALLEE_PORT.to_string()])
            .args(["-mi", INET_V4, "-mp", "6100", "-rtp_echo"]);
        children.push(self.spawn("outside-callee", callee)?);

        let mut phone = self.exec("phone", prog("baresip"));
        phone.arg("-f").arg(&phone_dir).arg("-6");
        children.push(self.spawn("phone", phone)?);
        // Registered: kamailio answered the phone's REGISTER.
        self.wait_log("phone", "200 OK", Duration::from_secs(15), &mut children)?;
        Ok(())
    }

    fn write(&self, name: &str, text: &str) -> Result<()> {
        let p = self.dir.join(name);
        fs::write(&p, text).with_context(|| p.display().to_string())
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }

    fn pid_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.pid"))
    }

    /// Starts `cmd` as the leader of a new process group, its output into `NAME.log`, its pid
    /// and program into `NAME.pid`.
    fn spawn(&self, name: &'static str, mut cmd: Command) -> Result<(&'static str, Child)> {
        use std::os::unix::process::CommandExt;
        let log = fs::File::create(self.log_path(name))?;
        let child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        // `ip netns exec NS PROGRAM ...`: the program's file name, as /proc shows it.
        let program = cmd
            .get_args()
            .nth(3)
            .and_then(|p| Path::new(p).file_name())
            .map_or_else(|| "?".to_owned(), |p| p.to_string_lossy().into_owned());
        fs::write(self.pid_path(name), format!("{} {program}\n", child.id()))?;
        Ok((name, child))
    }

    /// Waits for a line of `NAME.log` containing `needle`; fails early when the process exits.
    fn wait_log(
        &self,
        name: &str,
        needle: &str,
        timeout: Duration,
        children: &mut [(&'static str, Child)],
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = fs::read_to_string(self.log_path(name)).unwrap_or_default();
            if log.contains(needle) {
                return Ok(());
            }
            // Our child: exited once waitpid says so (its pid's /proc entry shows `sgw`, then
            // `ip`, then the program while it starts).
            let exited = children
                .iter_mut()
                .find(|c| c.0 == name)
                .and_then(|c| c.1.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                bail!(
                    "{name} {} before logging {needle:?}; the end of {}:\n{}",
                    match exited {
                        Some(st) => format!("exited ({st})"),
                        None => "timed out".to_owned(),
                    },
                    self.log_path(name).display(),
                    tail.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The pid in `NAME.pid`, when it is still the program it names.
    fn pid_of(&self, name: &str) -> Option<u32> {
        let text = fs::read_to_string(self.pid_path(name)).ok()?;
        let mut it = text.split_whitespace();
        let pid: u32 = it.next()?.parse().ok()?;
        let program = it.next()?;
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        // Until the program runs, the child's comm is ours (forked), then `ip` (`ip netns
        // exec` execs the program); comm is at most 15 bytes of the program's name.
        let comm = comm.trim();
        let ours = fs::read_to_string("/proc/self/comm").unwrap_or_default();
        (program.starts_with(comm) || comm == "ip" || comm == ours.trim()).then_some(pid)
    }

    /// Removes the lab: processes, namespaces (with their veths and the router's nftables
    /// table), the state directory. Returns what could not be removed (empty: all gone).
    pub fn down(&self) -> Vec<String> {
        let mut left = Vec::new();
        // The processes `up` started, each with its process group (kamailio's children).
        let mut pids: Vec<(u32, bool)> = PEERS
            .iter()
            .filter_map(|p| self.pid_of(p.0))
            .map(|pid| (pid, true))
            .collect();
        // Anything else still inside the lab's namespaces (a caller the user started there).
        for z in ZONES {
            if self.ns_exists(z) {
                if let Ok(out) =
                    output(Command::new(prog("ip")).args(["netns", "pids", &self.ns(z)]))
                {
                    pids.extend(
                        out.split_whitespace()
                            .filter_map(|p| p.parse::<u32>().ok())
                            .map(|p| (p, false)),
                    );
                }
            }
        }
        stop(&pids);
        for (pid, _) in &pids {
            if alive(*pid) {
                left.push(format!("process {pid} still running"));
            }
        }
        for z in ZONES {
            if self.ns_exists(z) {
                if let Err(e) = ip(&["netns", "del", &self.ns(z)]) {
                    left.push(format!("{e:#}"));
                }
            }
        }
        if self.dir.exists() {
            if let Err(e) = self.remove_state() {
                left.push(format!("{}: {e}", self.dir.display()));
            }
        }
        left
    }

    /// Removes the files `up` writes, then the directory if it is empty.
    fn remove_state(&self) -> std::io::Result<()> {
        for f in [
            "router.nft",
            "gw2.toml",
            "gw1.toml",
            "kamailio.cfg",
            "outside-callee.xml",
            "call.xml",
            "tone.pcap",
            "gw2.sock",
            "gw1.sock",
        ] {
            remove_file(&self.dir.join(f))?;
        }
        for (name, _, _) in PEERS {
            remove_file(&self.log_path(name))?;
            remove_file(&self.pid_path(name))?;
        }
        for d in ["pki", "baresip"] {
            let p = self.dir.join(d);
            if p.exists() {
                fs::remove_dir_all(p)?;
            }
        }
        // sipp's error traces (`-trace_err`) and the like.
        for e in fs::read_dir(&self.dir)?.flatten() {
            let n = e.file_name();
            let n = n.to_string_lossy();
            if n.starts_with("outside-callee_") || n.starts_with("call_") {
                remove_file(&e.path())?;
            }
        }
        match fs::remove_dir(&self.dir) {
            Ok(()) => {
                // /run/sgw-lab too, when the default made it and no other lab is there.
                if let Some(parent) = self.dir.parent().filter(|p| *p == Path::new(DEFAULT_ROOT)) {
                    let _ = fs::remove_dir(parent);
                }
                Ok(())
            }
            // Files the user put there are theirs.
            Err(_) if fs::read_dir(&self.dir)?.next().is_some() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// What is there: a report, and whether the whole lab is up.
    pub fn status(&self) -> (String, bool) {
        let mut s = String::new();
        let mut up = true;
        let _ = writeln!(s, "lab {} (state in {})", self.prefix, self.dir.display());
        for z in ZONES {
            let there = self.ns_exists(z);
            up &= there;
            let _ = writeln!(
                s,
                "  namespace {}: {}",
                self.ns(z),
                if there { "present" } else { "missing" }
            );
        }
        let table = self.ns_exists("router")
            && self
                .exec("router", prog("nft"))
                .args(["list", "table", "inet", NFT_TABLE])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|st| st.success());
        up &= table;
        let _ = writeln!(
            s,
            "  firewall (table inet {NFT_TABLE} in {}): {}",
            self.ns("router"),
            if table { "loaded" } else { "missing" }
        );
        if table {
            if let Some(c) = self.counters() {
                let _ = writeln!(s, "    counters (packets): {c}");
            }
        }
        let started: Vec<_> = PEERS
            .iter()
            .filter(|p| self.pid_path(p.0).exists())
            .collect();
        if started.is_empty() && up {
            let _ = writeln!(s, "  processes: none (--net-only)");
        }
        for (name, zone, _) in started {
            let pid = self.pid_of(name);
            up &= pid.is_some();
            let _ = writeln!(
                s,
                "  {name} in {}: {}",
                self.ns(zone),
                match pid {
                    Some(p) => format!("running (pid {p}, log {})", self.log_path(name).display()),
                    None => format!("NOT running (log {})", self.log_path(name).display()),
                }
            );
            if matches!(*name, "gw2" | "gw1") && pid.is_some() {
                let sock = self.dir.join(format!("{name}.sock"));
                match control_status(&sock) {
                    Ok(text) => {
                        up &= text.contains("tunnel up");
                        for l in text.lines() {
                            let _ = writeln!(s, "    {l}");
                        }
                    }
                    Err(e) => {
                        up = false;
                        let _ = writeln!(s, "    control socket: {e:#}");
                    }
                }
            }
        }
        let _ = writeln!(s, "{}", if up { "up" } else { "not (fully) up" });
        (s, up)
    }

    /// The router's named counters, `name packets, ...`.
    fn counters(&self) -> Option<String> {
        let out = output(
            self.exec("router", prog("nft"))
                .args(["-j", "list", "counters", "table", "inet", NFT_TABLE]),
        )
        .ok()?;
        let v: serde_json::Value = serde_json::from_str(&out).ok()?;
        let list: Vec<String> = v
            .get("nftables")?
            .as_array()?
            .iter()
            .filter_map(|o| o.get("counter"))
            .filter_map(|c| {
                Some(format!(
                    "{} {}",
                    c.get("name")?.as_str()?,
                    c.get("packets")?
                ))
            })
            .collect();
        Some(list.join(", "))
    }

    fn gw2_config(&self) -> String {
        format!(
            r#"# GW2 of `sgw lab` (in {ns}).
[gw2]
sip_udp = ["{GW2_V4}:{SIP_PORT}"]
tunnel_listen = "[{GW2_V6}]:{TUNNEL_PORT}"
outside_next_hop = "{INET_V4}:{OUTSIDE_CALLEE_PORT}"
[gw2.media]
ip = "{GW2_V4}"
port_min = {}
port_max = {}
[pki]
ca = "{p}/ca.pem"
cert = "{p}/gw2.pem"
key = "{p}/gw2.key"
[control]
socket = "{d}/gw2.sock"
"#,
            GW2_RTP.0,
            GW2_RTP.1,
            ns = self.ns("dmz"),
            p = self.dir.join("pki").display(),
            d = self.dir.display(),
        )
    }

    fn gw1_config(&self) -> String {
        format!(
            r#"# GW1 of `sgw lab` (in {ns}).
[gw1]
tunnel = "[{GW2_V6}]:{TUNNEL_PORT}"
tunnel_server_name = "{GW2_V6}"
sip_bind = "[{GW1_V6}]:{SIP_PORT}"
next_hop = "[{PBX_V6}]:{SIP_PORT}"
family = "ipv6"
[gw1.media]
ip = "{GW1_V6}"
port_min = {}
port_max = {}
[pki]
ca = "{p}/ca.pem"
cert = "{p}/gw1.pem"
key = "{p}/gw1.key"
[control]
socket = "{d}/gw1.sock"
"#,
            GW1_RTP.0,
            GW1_RTP.1,
            ns = self.ns("intra"),
            p = self.dir.join("pki").display(),
            d = self.dir.display(),
        )
    }

    /// The sipp command that calls the phone from the Internet (through GW2, the tunnel, GW1
    /// and kamailio), playing a tone as RTP.
    pub fn call_in_command(&self) -> Vec<String> {
        let mut v: Vec<String> = ["ip", "netns", "exec", &self.ns("inet"), "sipp", "-sf"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        v.push(self.dir.join("call.xml").display().to_string());
        for a in [
            "-s",
            PHONE_USER,
            &format!("{GW2_V4}:{SIP_PORT}"),
            "-i",
            INET_V4,
            "-p",
            &CALLER_PORT.to_string(),
            "-mi",
            INET_V4,
            "-mp",
            "6000",
            "-m",
            "1",
        ] {
            v.push(a.to_owned());
        }
        v
    }

    /// The sipp command that calls out from the intranet (kamailio, GW1, the tunnel, GW2) to
    /// the outside callee in `inet`.
    pub fn call_out_command(&self) -> Vec<String> {
        let mut v: Vec<String> = ["ip", "netns", "exec", &self.ns("phone"), "sipp", "-sf"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        v.push(self.dir.join("call.xml").display().to_string());
        for a in [
            "-s",
            OUTSIDE_NUMBER,
            &format!("[{PBX_V6}]:{SIP_PORT}"),
            "-i",
            PHONE_V6,
            "-p",
            &CALLER_PORT.to_string(),
            "-mi",
            PHONE_V6,
            "-mp",
            "6000",
            "-m",
            "1",
        ] {
            v.push(a.to_owned());
        }
        v
    }

    /// A shell command that sends one ctrl_tcp command (JSON, its quotes escaped for double
    /// quotes) to the phone.
    fn phone_command(&self, json: &str) -> String {
        format!(
            r#"ip netns exec {} bash -c 'm="{json}"; printf "%d:%s," ${{#m}} "$m" >/dev/tcp/127.0.0.1/{PHONE_CTRL_PORT}'"#,
            self.ns("phone")
        )
    }

    fn instructions(&self, net_only: bool, took: Duration) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "lab {} is up ({:.1} s; state in {})",
            self.prefix,
            took.as_secs_f64(),
            self.dir.display()
        );
        let _ = writeln!(
            s,
            "  {:<14} {INET_V4}, {INET_V6}: the Internet",
            self.ns("inet")
        );
        let _ = writeln!(
            s,
            "  {:<14} {GW2_V4}, {GW2_V6}: GW2 (SIP {SIP_PORT}, tunnel {TUNNEL_PORT}, media {}-{})",
            self.ns("dmz"),
            GW2_RTP.0,
            GW2_RTP.1
        );
        let _ = writeln!(
            s,
            "  {:<14} {GW1_V6}: GW1; {PBX_V6}: kamailio",
            self.ns("intra")
        );
        let _ = writeln!(
            s,
            "  {:<14} {PHONE_V6}: phone {PHONE_USER}, on the intranet's LAN",
            self.ns("phone")
        );
        let _ = writeln!(
            s,
            "  {:<14} nftables table inet {NFT_TABLE} (counters: ip netns exec {} nft list counters)",
            self.ns("router"),
            self.ns("router")
        );
        if net_only {
            let _ = writeln!(
                s,
                "Only the network (--net-only): no gateway, PBX or phone runs. \
                 Remove it with: sgw lab down --prefix {}",
                self.prefix
            );
            return s;
        }
        let _ = writeln!(
            s,
            "Running (logs and pids in the state directory):\n\
             \x20 GW2 in {dmz}, GW1 in {intra}: sgw ctl --socket {d}/gw2.sock status (gw1.sock)\n\
             \x20 kamailio at [{PBX_V6}]:{SIP_PORT}: the intranet's PBX and registrar\n\
             \x20 baresip phone {PHONE_USER} registered there: answers by itself, sends a 440 Hz \
             tone\n\
             \x20 sipp at {INET_V4}:{OUTSIDE_CALLEE_PORT} in {inet}: GW2's outside next hop, \
             answers calls out and echoes their RTP",
            dmz = self.ns("dmz"),
            intra = self.ns("intra"),
            inet = self.ns("inet"),
            d = self.dir.display()
        );
        let _ = writeln!(
            s,
            "Call in, from the Internet to phone {PHONE_USER} (3 s of tone as RTP):"
        );
        let _ = writeln!(s, "  {}", self.call_in_command().join(" "));
        let _ = writeln!(
            s,
            "Call out, from the intranet through kamailio to {OUTSIDE_NUMBER} on the Internet:"
        );
        let _ = writeln!(s, "  {}", self.call_out_command().join(" "));
        let _ = writeln!(
            s,
            "Or the phone itself dials out (baresip's ctrl_tcp on 127.0.0.1:{PHONE_CTRL_PORT} in \
             {}, netstring JSON); `hangup` the same way:",
            self.ns("phone")
        );
        let _ = writeln!(
            s,
            "  {}",
            self.phone_command(&format!(
                r#"{{\"command\":\"dial\",\"params\":\"sip:{OUTSIDE_NUMBER}@[{PBX_V6}]\"}}"#
            ))
        );
        let _ = writeln!(
            s,
            "Status: sgw lab status --prefix {p}; remove everything: sgw lab down --prefix {p}",
            p = self.prefix
        );
        s
    }
}

/// Root, `ip`, `nft` (and kamailio, baresip, sipp for the full lab): every one missing is
/// named.
fn check_prerequisites(net_only: bool) -> Result<()> {
    let uid = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .unwrap_or_default();
    match missing_prerequisites(uid == "0", net_only, |t| find_program(t).is_some()) {
        None => Ok(()),
        Some(m) => bail!(m),
    }
}

/// What `up` lacks, as one message naming each missing thing and its package; `None`: all
/// there.
fn missing_prerequisites(
    root: bool,
    net_only: bool,
    found: impl Fn(&str) -> bool,
) -> Option<String> {
    let mut missing = Vec::new();
    if !root {
        missing.push("root (network namespaces and nftables need it: run with sudo)".to_owned());
    }
    let mut tools = vec![
        ("ip", "iproute2"),
        ("nft", "nftables"),
        ("sysctl", "procps"),
        ("kill", "procps"),
    ];
    if !net_only {
        tools.extend([
            ("kamailio", "kamailio"),
            ("baresip", "baresip"),
            ("sipp", "sip-tester"),
        ]);
    }
    for (tool, package) in tools {
        if !found(tool) {
            missing.push(format!("{tool} (apt-get install {package})"));
        }
    }
    (!missing.is_empty()).then(|| format!("`sgw lab up` needs: {}", missing.join(", ")))
}

/// `program`'s path (see [`find_program`]), or its bare name when it is nowhere.
fn prog(program: &str) -> PathBuf {
    find_program(program).unwrap_or_else(|| PathBuf::from(program))
}

/// `program` in PATH (or the sbin directories, for a user without them in PATH).
fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

fn remove_file(p: &Path) -> std::io::Result<()> {
    match fs::remove_file(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Whether `pid` is a live process: one of its threads is not a zombie. (baresip's main
/// thread ends while its other threads run on: the process shows as a zombie, yet lives.)
fn alive(pid: u32) -> bool {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().any(|t| {
        fs::read_to_string(t.path().join("stat")).is_ok_and(|s| {
            // `tid (comm) STATE ...`: comm may hold spaces and parentheses.
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state != "Z" && state != "X")
        })
    })
}

/// SIGTERM to each (to its process group when the flag says so), up to 3 s for them to go,
/// then SIGKILL.
fn stop(pids: &[(u32, bool)]) {
    let signal = |sig: &str| {
        for (pid, group) in pids {
            let target = if *group {
                format!("-{pid}")
            } else {
                pid.to_string()
            };
            let _ = Command::new(prog("kill"))
                .arg(format!("-{sig}"))
                .arg("--")
                .arg(target)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    };
    if pids.is_empty() {
        return;
    }
    signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline && pids.iter().any(|(p, _)| alive(*p)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    signal("KILL");
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline && pids.iter().any(|(p, _)| alive(*p)) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ip(args: &[&str]) -> Result<()> {
    run_ok(Command::new(prog("ip")).args(args))
}

/// Runs `cmd`; an error names the command and its stderr.
fn run_ok(cmd: &mut Command) -> Result<()> {
    output(cmd).map(|_| ())
}

fn output(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}").replace('"', "");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| anyhow!("{shown}: {e}"))?;
    if !out.status.success() {
        bail!(
            "{shown}: {}",
            String::from_utf8_lossy(&out.stderr).trim().to_owned()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `status` on a gateway's control socket, its reply's lines.
fn control_status(path: &Path) -> Result<String> {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(path)
        .with_context(|| format!("control socket {}", path.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(b"status\n")?;
    let mut reply = String::new();
    s.read_to_string(&mut reply)?;
    match reply.split_once('\n') {
        Some(("ok", rest)) => Ok(rest.to_owned()),
        _ => bail!("control socket {}: {}", path.display(), reply.trim()),
    }
}

/// kamailio as the intranet's PBX: a registrar (in memory) and record-routing proxy, as strict
/// about dialogs as the Debian package's default configuration; a request for a user that is
/// not registered goes to `gateway` (GW1). `listen` and `gateway` are `host:port` (IPv6 in
/// brackets).
pub fn kamailio_cfg(listen: &str, gateway: &str) -> String {
    format!(
        r#"#!KAMAILIO
# The PBX of `sgw lab`.
debug=2
log_stderror=yes
memdbg=5
memlog=5
children=2
disable_tcp=yes
auto_aliases=no
dns=no
rev_dns=no
listen=udp:{listen}

loadmodule "tm.so"
loadmodule "tmx.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "sanity.so"

modparam("usrloc", "db_mode", 0)
modparam("rr", "enable_full_lr", 1)
modparam("rr", "append_fromtag", 1)

request_route {{
	xlog("L_NOTICE", "kamailio in: $rm $ru from $si:$sp call-id $ci\n");
	if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
	if (!sanity_check("17895", "7")) {{ xlog("L_NOTICE", "kamailio refused: malformed $rm from $si:$sp\n"); exit; }}
	route(WITHINDLG);
	if (is_method("CANCEL")) {{ if (t_check_trans()) route(RELAY); exit; }}
	if (!is_method("ACK")) {{ if (t_precheck_trans()) {{ t_check_trans(); exit; }} t_check_trans(); }}
	if (is_method("REGISTER")) {{ if (!save("location")) sl_reply_error(); exit; }}
	if (is_method("INVITE|SUBSCRIBE")) record_route();
	if ($rU == $null) {{ sl_send_reply("484", "Address Incomplete"); exit; }}
	if (lookup("location")) {{ route(RELAY); exit; }}
	# Not a registered phone: out through the gateway.
	$ru = "sip:" + $rU + "@{gateway}";
	route(RELAY);
}}

route[RELAY] {{
	if (!t_relay()) sl_reply_error();
	exit;
}}

route[WITHINDLG] {{
	if (!has_totag()) return;
	if (t_precheck_trans()) {{ t_check_trans(); exit; }}
	if (loose_route()) {{ route(RELAY); exit; }}
	if (is_method("ACK")) {{
		if (t_check_trans()) {{ route(RELAY); exit; }}
		exit;
	}}
	sl_send_reply("404", "Not here");
	exit;
}}
"#
    )
}

/// The phone: g711, a 440 Hz tone as microphone, the speaker a bridge nobody listens to,
/// `ctrl_tcp` on 127.0.0.1 (inside the phone's namespace).
fn baresip_config() -> String {
    format!(
        "poll_method\t\tepoll\n\
         sip_listen\t\t[{PHONE_V6}]:{SIP_PORT}\n\
         net_interface\t\t{PHONE_V6}\n\
         audio_player\t\taubridge,sink\n\
         audio_alert\t\taubridge,sink\n\
         audio_source\t\tausine,440\n\
         ausrc_srate\t\t48000\n\
         ausrc_channels\t\t2\n\
         rtp_ports\t\t{}-{}\n\
         rtp_timeout\t\t0\n\
         rtp_stats\t\tyes\n\
         statmode_default\toff\n\
         ringback_disabled\tyes\n\
         module_path\t\t/usr/lib/baresip/modules\n\
         module\t\t\tg711.so\n\
         module\t\t\tausine.so\n\
         module\t\t\taubridge.so\n\
         module\t\t\tctrl_tcp.so\n\
         module_app\t\taccount.so\n\
         module_app\t\tmenu.so\n\
         ctrl_tcp_listen\t\t127.0.0.1:{PHONE_CTRL_PORT}\n",
        PHONE_RTP.0, PHONE_RTP.1
    )
}

/// A G.711 A-law RTP stream (20 ms packets of a 440 Hz tone) of `length` in a pcap, for sipp's
/// `play_pcap_audio` (sipp replays the UDP payloads with their timing).
fn write_tone_pcap(path: &Path, length: Duration) -> Result<()> {
    use crate::capture::{CaptureWriter, OutLink};
    let mut w = CaptureWriter::create(path, OutLink::Ethernet)?;
    let src: SocketAddr = SocketAddr::from(([192, 0, 2, 1], 6000));
    let dst: SocketAddr = SocketAddr::from(([192, 0, 2, 2], 6000));
    let packets = length.as_millis() / 20;
    let mut sample: u32 = 0;
    for n in 0..packets {
        let seq = u16::try_from(n % 65_536).unwrap_or(0);
        let mut p = Vec::with_capacity(172);
        p.extend_from_slice(&[0x80, 8]);
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&sample.to_be_bytes());
        p.extend_from_slice(&0x5357_4c41_u32.to_be_bytes());
        for _ in 0..160 {
            let t = f64::from(sample) / 8000.0;
            let v = (t * 440.0 * std::f64::consts::TAU).sin() * 8000.0;
            // In range: |v| <= 8000.
            #[allow(clippy::cast_possible_truncation)]
            p.push(linear_to_alaw(v as i16));
            sample = sample.wrapping_add(1);
        }
        let at = Duration::from_millis(u64::try_from(n * 20).unwrap_or(0));
        w.write_udp(at, src, dst, &p)?;
    }
    w.finish()?;
    Ok(())
}

/// G.711 A-law of a 16-bit linear sample.
fn linear_to_alaw(pcm: i16) -> u8 {
    const SEG_END: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
    let mut p = i32::from(pcm) >> 3;
    let mask: i32 = if p >= 0 {
        0xD5
    } else {
        p = -p - 1;
        0x55
    };
    let Some(seg) = SEG_END.iter().position(|&e| p <= e) else {
        return u8::try_from(0x7F ^ mask).unwrap_or(0);
    };
    let seg = i32::try_from(seg).unwrap_or(7);
    let mant = if seg < 2 {
        (p >> 1) & 0x0F
    } else {
        (p >> seg) & 0x0F
    };
    u8::try_from(((seg << 4) | mant) ^ mask).unwrap_or(0)
}

/// A UAC call playing `pcap` as RTP for `talk_ms`, then BYE. The ACK and the BYE follow the
/// answer's Contact and Record-Route (kamailio record-routes, and drops an ACK without its
/// route).
fn uac_rtp_scenario(pcap: &Path, talk_ms: u32) -> String {
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="sgw lab: a call playing RTP from a capture">
  <send retrans="500"><![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: [service] <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [auto_media_port] RTP/AVP 8 101
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15
    ]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rtd="true" rrs="true"/>
  <send><![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: [service] <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Length: 0
    ]]></send>
  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>
  <pause milliseconds="{talk_ms}"/>
  <send retrans="500"><![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: [service] <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Length: 0
    ]]></send>
  <recv response="200" crlf="true"/>
</scenario>
"#,
        pcap = pcap.display()
    )
}

/// A sipp callee answering PCMA and telephone-event (the built-in `uas` answers PCMU only,
/// which would make a caller's PCMA capture a payload type the gateway rightly refuses), any
/// number of calls. The live tests use it too.
pub const UAS_PCMA: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="uas answering PCMA">
  <recv request="INVITE" crlf="true"/>
  <send><![CDATA[
      SIP/2.0 180 Ringing
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0
    ]]></send>
  <send retrans="500"><![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8 101
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15
    ]]></send>
  <recv request="ACK" optional="true" rtd="true" crlf="true"/>
  <recv request="BYE"/>
  <send><![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0
    ]]></send>
</scenario>
"#;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn alaw_matches_g711() {
        // Reference values of the ITU-T G.191 / Sun g711.c encoder.
        assert_eq!(linear_to_alaw(0), 0xD5);
        assert_eq!(linear_to_alaw(-1), 0x55);
        assert_eq!(linear_to_alaw(i16::MAX), 0xAA);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2A);
    }

    #[test]
    fn what_is_missing_is_named() {
        assert_eq!(missing_prerequisites(true, false, |_| true), None);
        let m = missing_prerequisites(false, false, |t| t != "kamailio" && t != "baresip").unwrap();
        assert_eq!(
            m,
            "`sgw lab up` needs: root (network namespaces and nftables need it: run with sudo), \
             kamailio (apt-get install kamailio), baresip (apt-get install baresip)"
        );
        // --net-only needs no peers.
        assert_eq!(
            missing_prerequisites(true, true, |t| t != "kamailio" && t != "baresip"),
            None
        );
        assert_eq!(
            missing_prerequisites(true, true, |t| t != "nft").as_deref(),
            Some("`sgw lab up` needs: nft (apt-get install nftables)")
        );
    }

    #[test]
    fn prefixes_are_checked() {
        let lab = |p: &str| {
            Lab::new(&LabCommon {
                prefix: p.to_owned(),
                dir: None,
            })
        };
        assert!(lab("sgwlab").is_ok());
        assert_eq!(lab("sgwlab").unwrap().dir, Path::new("/run/sgw-lab/sgwlab"));
        for bad in ["", "a/b", "a b", "../x", &"x".repeat(33)] {
            assert!(lab(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_lab_configurations_are_valid() {
        let lab = Lab::new(&LabCommon {
            prefix: "t".to_owned(),
            dir: Some(PathBuf::from("/tmp/sgw-lab-t")),
        })
        .unwrap();
        for text in [lab.gw2_config(), lab.gw1_config()] {
            crate::config::Config::from_toml_str(&text).unwrap();
        }
        assert!(lab
            .call_in_command()
            .join(" ")
            .contains("ip netns exec t-inet sipp"));
    }
}
