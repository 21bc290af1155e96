//! Real SIP peers for the live tests: kamailio as a strict registrar and record-routing proxy,
//! baresip phones driven over their `ctrl_tcp` socket (events and SIP trace read back), and a
//! tshark capture of the SIP ports, read packet by packet as it happens.
//!
//! Everything runs on loopback with ports the caller chooses; processes stop when dropped.

use super::{Proc, Scratch};
use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

/// Seconds since the Unix epoch: the clock tshark stamps packets with.
pub fn epoch() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// `ip:port` as it goes into a SIP URI (`[::1]:5060` for IPv6).
pub fn hostport(a: SocketAddr) -> String {
    a.to_string()
}

/// The host of `a` as it goes into a SIP URI or a kamailio `listen`.
pub fn host(a: SocketAddr) -> String {
    match a {
        SocketAddr::V4(v) => v.ip().to_string(),
        SocketAddr::V6(v) => format!("[{}]", v.ip()),
    }
}

// --- kamailio ----------------------------------------------------------------------------------

/// A kamailio configuration as strict as the Debian package's default one about dialogs: it
/// record-routes INVITEs, and an in-dialog request must carry its route (`loose_route`), or it
/// is refused `404 Not here` (an ACK is dropped) — the default's `route[WITHINDLG]`. REGISTER
/// is kept in memory (usrloc `db_mode` 0). An initial request for a user that is not
/// registered goes to `gateway` (the R-URI's host rewritten to it). Every request is logged
/// with its Route header, and every refusal says what it refused.
pub fn kamailio_cfg(listen: SocketAddr, gateway: SocketAddr) -> String {
    format!(
        r#"#!KAMAILIO
debug=2
log_stderror=yes
memdbg=5
memlog=5
children=2
disable_tcp=yes
auto_aliases=no
dns=no
rev_dns=no
listen=udp:{listen_host}:{listen_port}

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
	xlog("L_NOTICE", "kamailio in: $rm $ru from $si:$sp call-id $ci route [$hdr(Route)]\n");
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

# As kamailio's default configuration: an in-dialog request that does not carry our route is
# refused (404 Not here), an ACK that matches no transaction is dropped.
route[WITHINDLG] {{
	if (!has_totag()) return;
	if (t_precheck_trans()) {{ t_check_trans(); exit; }}
	if (loose_route()) {{ route(RELAY); exit; }}
	if (is_method("ACK")) {{
		if (t_check_trans()) {{ route(RELAY); exit; }}
		xlog("L_NOTICE", "kamailio dropped: ACK without our route from $si:$sp call-id $ci\n");
		exit;
	}}
	xlog("L_NOTICE", "kamailio refused: $rm without our route from $si:$sp call-id $ci (404 Not here)\n");
	sl_send_reply("404", "Not here");
	exit;
}}
"#,
        listen_host = host(listen),
        listen_port = listen.port(),
        gateway = hostport(gateway),
    )
}

/// kamailio running `cfg` in the foreground (`-DD -E`), its log collected as lines.
pub struct Kamailio {
    pub proc: Proc,
    pub addr: SocketAddr,
}

impl Kamailio {
    /// Starts kamailio and waits (at most `timeout`) until it answers an OPTIONS on `addr`.
    pub fn start(dir: &Scratch, addr: SocketAddr, cfg: &str, timeout: Duration) -> Kamailio {
        let path = dir.file("kamailio.cfg", cfg);
        let mut proc = Proc::spawn_group(
            "kamailio",
            Command::new("kamailio")
                .arg("-f")
                .arg(&path)
                .args(["-DD", "-E", "-m", "64", "-M", "8", "-w"])
                .arg(&dir.0),
        );
        let probe = UdpSocket::bind(SocketAddr::new(addr.ip(), 0)).unwrap();
        probe
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let local = probe.local_addr().unwrap();
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 2048];
        loop {
            let options = format!(
                "OPTIONS sip:{h} SIP/2.0\r\nVia: SIP/2.0/UDP {l};branch=z9hG4bKprobe{n}\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:probe@{l}>;tag=p\r\nTo: <sip:{h}>\r\n\
                 Call-ID: probe-{n}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
                h = hostport(addr),
                l = hostport(local),
                n = Instant::now().elapsed().as_nanos() ^ u128::from(std::process::id()),
            );
            let _ = probe.send_to(options.as_bytes(), addr);
            if let Ok((n, _)) = probe.recv_from(&mut buf) {
                if buf.get(..n).is_some_and(|b| b.starts_with(b"SIP/2.0 ")) {
                    break;
                }
            }
            if Instant::now() > deadline {
                proc.drain();
                panic!(
                    "kamailio did not answer on {addr} within {timeout:?}; its log:\n{}",
                    proc.seen.join("\n")
                );
            }
            if let Ok(Some(st)) = proc.child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                proc.drain();
                panic!(
                    "kamailio exited ({st}); its log:\n{}\n--- config:\n{cfg}",
                    proc.seen.join("\n")
                );
            }
        }
        Kamailio { proc, addr }
    }
}

// --- baresip -----------------------------------------------------------------------------------

/// How a phone is set up.
pub struct PhoneSpec<'a> {
    /// A short name for messages ("inside 1001").
    pub name: &'a str,
    /// Where it listens for SIP (UDP and TCP).
    pub sip: SocketAddr,
    /// Its address of record, e.g. `sip:1001@127.0.0.1:5070`. With `register`, the REGISTER
    /// goes to the AOR's host and port.
    pub aor: String,
    pub register: bool,
    /// Its `ctrl_tcp` port on 127.0.0.1.
    pub ctrl_port: u16,
    /// RTP ports it may use, `(min, max)`.
    pub rtp_ports: (u16, u16),
    /// The tone it sends (ausine), so each direction's audio is recognisable.
    pub tone_hz: u32,
}

/// One SIP message from a phone's own trace (`baresip -s`).
#[derive(Debug, Clone)]
pub struct TraceMsg {
    /// `UDP 127.0.0.1:5070 -> 127.0.0.1:5060`.
    pub path: String,
    pub first_line: String,
    pub call_id: String,
    pub cseq: String,
    pub route: Vec<String>,
    pub contact: String,
}

impl TraceMsg {
    pub fn is_response(&self) -> bool {
        self.first_line.starts_with("SIP/2.0 ")
    }

    /// The status code of a response.
    pub fn status(&self) -> Option<u16> {
        self.first_line
            .strip_prefix("SIP/2.0 ")?
            .get(..3)?
            .parse()
            .ok()
    }

    /// The method in CSeq.
    pub fn cseq_method(&self) -> &str {
        self.cseq.split_whitespace().nth(1).unwrap_or("")
    }
}

impl fmt::Display for TraceMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}  {}  (CSeq {})",
            self.path, self.first_line, self.cseq
        )?;
        if !self.route.is_empty() {
            write!(f, "  Route: {}", self.route.join(", "))?;
        }
        if !self.contact.is_empty() {
            write!(f, "  Contact: {}", self.contact)?;
        }
        Ok(())
    }
}

/// A ctrl_tcp event: `{"event":true,"type":"CALL_ESTABLISHED","id":"<Call-ID>",...}`.
#[derive(Debug, Clone)]
pub struct PhoneEvent {
    pub at: f64,
    pub kind: String,
    /// The call's SIP Call-ID, for call events.
    pub call_id: Option<String>,
    pub param: String,
}

impl fmt::Display for PhoneEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.3} {}", self.at, self.kind)?;
        if let Some(id) = &self.call_id {
            write!(f, " call-id {id}")?;
        }
        if !self.param.is_empty() {
            write!(f, " ({})", self.param)?;
        }
        Ok(())
    }
}

/// A headless baresip: g711, a sine tone as microphone, the speaker a bridge nobody listens
/// to, commands and events over `ctrl_tcp`, its SIP trace on stdout.
pub struct Phone {
    pub name: String,
    pub sip: SocketAddr,
    pub proc: Proc,
    ctrl: TcpStream,
    events_rx: mpsc::Receiver<serde_json::Value>,
    pub events: Vec<PhoneEvent>,
    /// Command responses not yet claimed by [`Phone::request`].
    responses: Vec<serde_json::Value>,
    tokens: u64,
}

/// Reads netstrings (`LEN:JSON,`) from `r` and sends each decoded JSON value.
fn read_netstrings(mut r: impl Read, tx: mpsc::Sender<serde_json::Value>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Ok(n) = r.read(&mut chunk) else { return };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        while let Some(colon) = buf.iter().position(|&b| b == b':') {
            let Some(len) = std::str::from_utf8(buf.get(..colon).unwrap_or_default())
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
            else {
                return;
            };
            if buf.len() < colon + 1 + len + 1 {
                break;
            }
            let body = buf.get(colon + 1..colon + 1 + len).unwrap_or_default();
            if let Ok(v) = serde_json::from_slice(body) {
                if tx.send(v).is_err() {
                    return;
                }
            }
            buf.drain(..colon + 1 + len + 1);
        }
    }
}

impl Phone {
    /// Writes the phone's configuration into `dir/<name>` and starts it; waits until its
    /// control socket accepts, and, with `spec.register`, until it is registered.
    pub fn start(dir: &Scratch, spec: &PhoneSpec<'_>, timeout: Duration) -> Phone {
        Phone::start_with(dir, spec, "", "", timeout)
    }

    /// [`Phone::start`] with `extra` lines appended to baresip's `config` (e.g. `sip_cafile`,
    /// a media encryption module) and `account` parameters appended to its account line (e.g.
    /// `;mediaenc=srtp-mand`).
    pub fn start_with(
        dir: &Scratch,
        spec: &PhoneSpec<'_>,
        extra: &str,
        account: &str,
        timeout: Duration,
    ) -> Phone {
        let cfg_dir = dir.0.join(format!("baresip-{}", spec.sip.port()));
        std::fs::create_dir_all(&cfg_dir).unwrap();
        let sink = format!("sink{}", spec.sip.port());
        std::fs::write(
            cfg_dir.join("config"),
            format!(
                "poll_method\t\tepoll\n\
                 sip_listen\t\t{sip}\n\
                 net_interface\t\t{ip}\n\
                 audio_player\t\taubridge,{sink}\n\
                 audio_alert\t\taubridge,{sink}\n\
                 audio_source\t\tausine,{tone}\n\
                 ausrc_srate\t\t48000\n\
                 ausrc_channels\t\t2\n\
                 rtp_ports\t\t{rtp_min}-{rtp_max}\n\
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
                 ctrl_tcp_listen\t\t127.0.0.1:{ctrl}\n\
                 {extra}",
                sip = hostport(spec.sip),
                ip = spec.sip.ip(),
                tone = spec.tone_hz,
                rtp_min = spec.rtp_ports.0,
                rtp_max = spec.rtp_ports.1,
                ctrl = spec.ctrl_port,
            ),
        )
        .unwrap();
        let regint = if spec.register { 600 } else { 0 };
        std::fs::write(
            cfg_dir.join("accounts"),
            format!(
                "<{}>;regint={regint};answermode=manual;audio_codecs=PCMU,PCMA{account}\n",
                spec.aor
            ),
        )
        .unwrap();
        let mut cmd = Command::new("baresip");
        cmd.arg("-f").arg(&cfg_dir).arg("-s");
        if spec.sip.is_ipv6() {
            cmd.arg("-6");
        } else {
            cmd.arg("-4");
        }
        let mut proc = Proc::spawn(&format!("baresip {}", spec.name), &mut cmd);
        let deadline = Instant::now() + timeout;
        let ctrl = loop {
            match TcpStream::connect(("127.0.0.1", spec.ctrl_port)) {
                Ok(s) => break s,
                Err(e) => {
                    if Instant::now() > deadline || matches!(proc.child.try_wait(), Ok(Some(_))) {
                        proc.drain();
                        panic!(
                            "{}: ctrl_tcp on 127.0.0.1:{} not reachable ({e}); output:\n{}",
                            spec.name,
                            spec.ctrl_port,
                            proc.seen.join("\n")
                        );
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        };
        let (tx, events_rx) = mpsc::channel();
        let reader = ctrl.try_clone().unwrap();
        std::thread::spawn(move || read_netstrings(reader, tx));
        let mut phone = Phone {
            name: spec.name.to_owned(),
            sip: spec.sip,
            proc,
            ctrl,
            events_rx,
            events: Vec::new(),
            responses: Vec::new(),
            tokens: 0,
        };
        // Registered once `reginfo` says OK (a REGISTER_OK event may come before the control
        // connection does).
        if !spec.register {
            return phone;
        }
        loop {
            let info = phone.request("reginfo", "", Duration::from_secs(2));
            if info.contains("OK") {
                return phone;
            }
            if Instant::now() > deadline {
                phone.proc.drain();
                panic!(
                    "{}: not registered at {} within {timeout:?}: {info}; output:\n{}",
                    spec.name,
                    spec.aor,
                    phone.proc.seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends a command and waits for its response's `data` (or the error, as text).
    pub fn request(&mut self, command: &str, params: &str, timeout: Duration) -> String {
        self.tokens += 1;
        let token = format!("{command}-{}", self.tokens);
        self.send(command, params, &token);
        let deadline = Instant::now() + timeout;
        loop {
            self.drain();
            if let Some(i) = self
                .responses
                .iter()
                .position(|r| r["token"].as_str() == Some(&token))
            {
                let r = self.responses.remove(i);
                return r["data"].as_str().unwrap_or("").to_owned();
            }
            if Instant::now() > deadline {
                return format!("no response to {command} within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a command (`dial`, `accept`, `hangup`) over ctrl_tcp, not waiting for its
    /// response.
    pub fn command(&mut self, command: &str, params: &str) {
        self.send(command, params, "-");
    }

    fn send(&mut self, command: &str, params: &str, token: &str) {
        let body =
            serde_json::json!({"command": command, "params": params, "token": token}).to_string();
        let msg = format!("{}:{body},", body.len());
        self.ctrl
            .write_all(msg.as_bytes())
            .unwrap_or_else(|e| panic!("{}: ctrl_tcp write: {e}", self.name));
    }

    /// Moves what arrived into `events` and `proc.seen`.
    pub fn drain(&mut self) {
        self.proc.drain();
        while let Ok(v) = self.events_rx.try_recv() {
            if v["response"].as_bool() == Some(true) {
                if v["token"].as_str() != Some("-") {
                    self.responses.push(v);
                }
                continue;
            }
            if v["event"].as_bool() != Some(true) {
                continue;
            }
            self.events.push(PhoneEvent {
                at: epoch(),
                kind: v["type"].as_str().unwrap_or("").to_owned(),
                call_id: v["id"].as_str().map(str::to_owned),
                param: v["param"].as_str().unwrap_or("").to_owned(),
            });
        }
    }

    /// A mark in the event list for [`Phone::wait_event`] and [`Phone::events_since`].
    pub fn mark(&mut self) -> usize {
        self.drain();
        self.events.len()
    }

    pub fn events_since(&mut self, mark: usize) -> Vec<PhoneEvent> {
        self.drain();
        self.events.get(mark..).unwrap_or_default().to_vec()
    }

    /// The first event since `mark` whose type is one of `kinds`, waiting until `deadline`.
    /// On timeout, the events seen since `mark` (as text) are the error.
    pub fn wait_event(
        &mut self,
        mark: usize,
        kinds: &[&str],
        deadline: Instant,
    ) -> Result<PhoneEvent, String> {
        loop {
            self.drain();
            if let Some(e) = self
                .events
                .get(mark..)
                .unwrap_or_default()
                .iter()
                .find(|e| kinds.contains(&e.kind.as_str()))
            {
                return Ok(e.clone());
            }
            if Instant::now() > deadline {
                let seen: Vec<String> = self
                    .events
                    .get(mark..)
                    .unwrap_or_default()
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                return Err(if seen.is_empty() {
                    "no events".to_owned()
                } else {
                    format!("events: {}", seen.join("; "))
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Calls that were established or announced since `mark` and not closed yet.
    pub fn open_calls(&mut self, mark: usize) -> Vec<String> {
        let mut open: Vec<String> = Vec::new();
        for e in self.events_since(mark) {
            let Some(id) = e.call_id else { continue };
            match e.kind.as_str() {
                "CALL_CLOSED" => open.retain(|c| *c != id),
                "CALL_INCOMING" | "CALL_RINGING" | "CALL_PROGRESS" | "CALL_ESTABLISHED"
                    if !open.contains(&id) =>
                {
                    open.push(id);
                }
                _ => {}
            }
        }
        open
    }

    /// The SIP messages of call `call_id` in the phone's own trace (both directions).
    pub fn trace(&mut self, call_id: &str) -> Vec<TraceMsg> {
        self.drain();
        parse_trace(&self.proc.seen)
            .into_iter()
            .filter(|m| m.call_id == call_id)
            .collect()
    }
}

/// Strips ANSI escape sequences (baresip colours its SIP trace).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// baresip's `-s` trace: each message is `#`, then `UDP src -> dst`, then the message, then an
/// escape sequence that resets the colour.
fn parse_trace(lines: &[String]) -> Vec<TraceMsg> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let raw = &lines[i];
        if strip_ansi(raw).trim() != "#" {
            i += 1;
            continue;
        }
        let path = lines.get(i + 1).map(|l| strip_ansi(l)).unwrap_or_default();
        let mut msg = TraceMsg {
            path: path.trim().to_owned(),
            first_line: lines
                .get(i + 2)
                .map(|l| strip_ansi(l).trim().to_owned())
                .unwrap_or_default(),
            call_id: String::new(),
            cseq: String::new(),
            route: Vec::new(),
            contact: String::new(),
        };
        let mut j = i + 3;
        while j < lines.len() {
            let l = &lines[j];
            if l.contains("\x1b[;m") {
                break;
            }
            let l = strip_ansi(l);
            let l = l.trim();
            if l.is_empty() {
                // The body follows: headers are done.
                j += 1;
                while j < lines.len() && !lines[j].contains("\x1b[;m") {
                    j += 1;
                }
                break;
            }
            if let Some((name, value)) = l.split_once(':') {
                let value = value.trim().to_owned();
                match name.trim().to_ascii_lowercase().as_str() {
                    "call-id" | "i" => msg.call_id = value,
                    "cseq" => msg.cseq = value,
                    "route" => msg.route.push(value),
                    "contact" | "m" => msg.contact = value,
                    _ => {}
                }
            }
            j += 1;
        }
        out.push(msg);
        i = j + 1;
    }
    out
}

// --- tshark ------------------------------------------------------------------------------------

/// One SIP message on the wire, as tshark dissected it.
#[derive(Debug, Clone)]
pub struct WirePacket {
    pub at: f64,
    pub transport: &'static str,
    pub src: String,
    pub dst: String,
    pub first_line: String,
    pub call_id: String,
    pub cseq: String,
    pub route: String,
    pub record_route: String,
    pub contact: String,
}

impl WirePacket {
    fn display_from(&self, t0: f64) -> String {
        let mut s = format!(
            "{:+8.3}s {} {} -> {}  {}  (CSeq {})",
            self.at - t0,
            self.transport,
            self.src,
            self.dst,
            self.first_line,
            self.cseq
        );
        if !self.route.is_empty() {
            s.push_str(&format!("  Route: {}", self.route));
        }
        if !self.record_route.is_empty() {
            s.push_str(&format!("  Record-Route: {}", self.record_route));
        }
        if !self.contact.is_empty() {
            s.push_str(&format!("  Contact: {}", self.contact));
        }
        s
    }
}

/// The fields asked of tshark, in the order of each output line.
const WIRE_FIELDS: [&str; 16] = [
    "frame.time_epoch",
    "ip.src",
    "ipv6.src",
    "ip.dst",
    "ipv6.dst",
    "udp.srcport",
    "udp.dstport",
    "tcp.srcport",
    "tcp.dstport",
    "sip.Request-Line",
    "sip.Status-Line",
    "sip.Call-ID",
    "sip.CSeq",
    "sip.Route",
    "sip.Record-Route",
    "sip.Contact",
];

/// A tshark capture of SIP on loopback, limited to a set of ports.
pub struct Wire {
    proc: Proc,
    pub packets: Vec<WirePacket>,
    parsed: usize,
}

impl Wire {
    /// Starts capturing SIP to or from any of `ports` (UDP and TCP) on `lo`.
    pub fn start(ports: &[u16], timeout: Duration) -> Wire {
        let filter = ports
            .iter()
            .map(|p| format!("port {p}"))
            .collect::<Vec<_>>()
            .join(" or ");
        let mut cmd = Command::new("tshark");
        cmd.args(["-i", "lo", "-n", "-l", "-f", &filter]);
        for p in ports {
            cmd.args(["-d", &format!("udp.port=={p},sip")]);
            cmd.args(["-d", &format!("tcp.port=={p},sip")]);
        }
        cmd.args(["-Y", "sip", "-T", "fields", "-E", "separator=/t"]);
        cmd.args(["-E", "occurrence=a", "-E", "aggregator=|"]);
        for f in WIRE_FIELDS {
            cmd.args(["-e", f]);
        }
        let mut proc = Proc::spawn_group("tshark", &mut cmd);
        proc.wait_line("Capturing on", timeout);
        Wire {
            proc,
            packets: Vec::new(),
            parsed: 0,
        }
    }

    /// Parses what tshark printed so far.
    pub fn poll(&mut self) {
        self.proc.drain();
        while self.parsed < self.proc.seen.len() {
            let line = self.proc.seen[self.parsed].clone();
            self.parsed += 1;
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() != WIRE_FIELDS.len() {
                continue;
            }
            let Ok(at) = f[0].parse::<f64>() else {
                continue;
            };
            let pick = |a: &str, b: &str| if a.is_empty() { b } else { a }.to_owned();
            let fmt_addr = |ip: String, port: &str| {
                if ip.contains(':') {
                    format!("[{ip}]:{port}")
                } else {
                    format!("{ip}:{port}")
                }
            };
            let (transport, sport, dport) = if f[5].is_empty() {
                ("TCP", f[7], f[8])
            } else {
                ("UDP", f[5], f[6])
            };
            let src = fmt_addr(pick(f[1], f[2]), sport);
            let dst = fmt_addr(pick(f[3], f[4]), dport);
            // A TCP segment may carry several SIP messages: one packet per message.
            let firsts: Vec<String> = f[9]
                .split('|')
                .chain(f[10].split('|'))
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            let call_ids: Vec<&str> = f[11].split('|').collect();
            let cseqs: Vec<&str> = f[12].split('|').collect();
            let several = firsts.len() > 1 && call_ids.len() == firsts.len();
            for (k, first) in firsts.iter().enumerate() {
                let k = if several { k } else { 0 };
                self.packets.push(WirePacket {
                    at,
                    transport,
                    src: src.clone(),
                    dst: dst.clone(),
                    first_line: first.clone(),
                    call_id: call_ids.get(k).copied().unwrap_or("").to_owned(),
                    cseq: cseqs.get(k).copied().unwrap_or("").to_owned(),
                    route: if several {
                        String::new()
                    } else {
                        f[13].to_owned()
                    },
                    record_route: if several {
                        String::new()
                    } else {
                        f[14].to_owned()
                    },
                    contact: if several {
                        String::new()
                    } else {
                        f[15].to_owned()
                    },
                });
                if !several {
                    break;
                }
            }
        }
    }

    /// The packets of the given Call-IDs, as lines with times relative to `t0`.
    pub fn trace(&mut self, call_ids: &[String], t0: f64) -> Vec<String> {
        self.poll();
        self.packets
            .iter()
            .filter(|p| call_ids.contains(&p.call_id))
            .map(|p| p.display_from(t0))
            .collect()
    }

    /// Call-IDs first seen on the wire in `[from, to)`.
    pub fn call_ids_first_seen(&mut self, from: f64, to: f64) -> Vec<String> {
        self.poll();
        let mut seen: Vec<String> = Vec::new();
        let mut out = Vec::new();
        for p in &self.packets {
            if p.call_id.is_empty() || seen.contains(&p.call_id) {
                continue;
            }
            seen.push(p.call_id.clone());
            if p.at >= from && p.at < to {
                out.push(p.call_id.clone());
            }
        }
        out
    }

    /// Packets of the given Call-IDs seen after `after`.
    pub fn after(&mut self, call_ids: &[String], after: f64) -> Vec<WirePacket> {
        self.poll();
        self.packets
            .iter()
            .filter(|p| p.at > after && call_ids.contains(&p.call_id))
            .cloned()
            .collect()
    }

    pub fn display(p: &WirePacket, t0: f64) -> String {
        p.display_from(t0)
    }
}

/// Whether a capture on `lo` can start here (tshark installed and allowed to capture); asked
/// once per test binary.
pub fn capture_works() -> Result<(), String> {
    static ANSWER: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    ANSWER.get_or_init(try_capture).clone()
}

fn try_capture() -> Result<(), String> {
    let out = Command::new("tshark")
        .args([
            "-i",
            "lo",
            "-a",
            "duration:1",
            "-c",
            "1",
            "-f",
            "port 9",
            "-q",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("tshark: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "tshark cannot capture on lo: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
