//! Real phones behind a real proxy (issue 7): kamailio (the Debian package) is the inside
//! registrar and record-routing proxy, as strict about dialogs as its default configuration
//! (an in-dialog request without the proxy's route is refused `404 Not here`, an ACK without it
//! is dropped). A baresip phone registers there as `1001`; another baresip is the outside
//! party, at GW2's `outside_next_hop`. `sgw run --role both` is the gateway: GW1's next hop is
//! kamailio, which sends numbers it does not know to GW1.
//!
//! Each gateway test is one network set-up (inside IPv4 or IPv6; outside over UDP, over TCP,
//! or with GW2 listening on TCP only) and runs four calls in turn: outside → inside and inside
//! → outside, each hung up once by the caller and once by the callee. A call passes when the
//! callee rings, both phones see the call established (the callee only once the ACK reached
//! it), both phones receive RTP, the other phone sees the call end, the BYE is answered 200 as
//! both phones' own SIP traces show, GW2's call record shows media carried both ways, a call
//! made over TCP stays on TCP, and nothing of the call is still on the wire (retransmissions)
//! once it has ended. The control test runs the same checks on a call between two phones
//! through the same kamailio without the gateway, and passes.
//!
//! Every call is run even when an earlier one failed; the test then fails with a report naming
//! each failed call's step, what was seen, the call's SIP on the wire (tshark on `lo`, limited
//! to the lab's SIP ports), kamailio's verdicts and the gateway's log (`SGW_PHONES_TRACE=1`
//! prints them for passing calls too). Passing, the file takes about a minute.
//!
//! Needs kamailio, baresip and tshark (capturing on `lo`, so root): without them the tests say
//! they are skipped, or fail under CI=true (`./scripts/test.sh` installs them as root).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::time::{Duration, Instant};
use support::phones::{
    capture_works, epoch, hostport, kamailio_cfg, Kamailio, Phone, PhoneSpec, Wire,
};
use support::*;

/// The inside phone's user, registered at kamailio.
const INSIDE_USER: &str = "1001";
/// The number the inside phone calls out; the outside phone's user (baresip takes a call
/// whose request URI names its AOR's user).
const OUTSIDE_NUMBER: &str = "4930555777";
/// The second inside phone of the control lab.
const CONTROL_USER: &str = "1002";
/// How long each call keeps its audio up before it is hung up.
const TALK: Duration = Duration::from_millis(1500);
/// RTP packets (20 ms each) each direction must have carried through each half: half a
/// second of the talk time.
const MIN_RTP: u64 = 25;
/// A retransmission still running is seen within T2 (4 s, RFC 3261 §17.1.2.2) of the last one.
const QUIET: Duration = Duration::from_millis(4700);
/// Wire lines shown per failed call.
const MAX_TRACE: usize = 40;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Inside {
    V4,
    V6,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outside {
    /// GW2 on UDP; the outside phone calls over UDP.
    Udp,
    /// GW2 on UDP and TCP (same port); the outside phone calls over TCP.
    Tcp,
    /// GW2 on TCP only; the outside phone calls over TCP.
    TcpOnly,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    OutsideIn,
    InsideOut,
    /// The control: one inside phone calls another through kamailio, no gateway.
    InsideToInside,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HangsUp {
    Caller,
    Callee,
}

#[derive(Clone, Copy)]
struct Case {
    direction: Direction,
    hangs_up: HangsUp,
}

impl std::fmt::Display for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = match self.direction {
            Direction::OutsideIn => "outside phone calls inside 1001",
            Direction::InsideOut => "inside 1001 calls the outside phone",
            Direction::InsideToInside => "inside 1001 calls inside 1002 (no gateway)",
        };
        let h = match self.hangs_up {
            HangsUp::Caller => "caller hangs up",
            HangsUp::Callee => "callee hangs up",
        };
        write!(f, "{d}, {h}")
    }
}

const CASES: [Case; 4] = [
    Case {
        direction: Direction::OutsideIn,
        hangs_up: HangsUp::Caller,
    },
    Case {
        direction: Direction::OutsideIn,
        hangs_up: HangsUp::Callee,
    },
    Case {
        direction: Direction::InsideOut,
        hangs_up: HangsUp::Caller,
    },
    Case {
        direction: Direction::InsideOut,
        hangs_up: HangsUp::Callee,
    },
];

/// What one call showed.
struct Outcome {
    case: Case,
    t0: f64,
    t_end: f64,
    /// Failed steps, each "step: what was seen".
    problems: Vec<String>,
    /// What else is worth reading next to the problems.
    notes: Vec<String>,
    call_ids: Vec<String>,
    sgw_log: Vec<String>,
    kamailio_log: Vec<String>,
}

/// A port free for both UDP and TCP on `ip`, with the TCP port above it free too: baresip
/// binds its SIP/TLS transport there, and a phone that cannot bind it does not start.
fn free_sip_port(ip: &str) -> u16 {
    for _ in 0..100 {
        let t = TcpListener::bind((ip, 0)).unwrap();
        let p = t.local_addr().unwrap().port();
        let above = p
            .checked_add(1)
            .is_some_and(|q| TcpListener::bind((ip, q)).is_ok());
        if above && UdpSocket::bind((ip, p)).is_ok() {
            return p;
        }
    }
    panic!("no port free for both UDP and TCP on {ip}");
}

/// The gateway of a lab.
struct Gateway {
    proc: Proc,
    /// When its engine clock started (call records count from it), as [`epoch`]; at most a
    /// few milliseconds late.
    origin: f64,
    gw2: SocketAddr,
    outside: Outside,
}

/// One set-up: the capture, kamailio, the gateway and two phones. Fields drop in order:
/// phones first, the scratch directory last.
struct Lab {
    name: String,
    /// The inside phone, 1001.
    a: Phone,
    /// The outside phone; in the control lab, a second inside phone (1002).
    b: Phone,
    gateway: Option<Gateway>,
    kamailio: Kamailio,
    wire: Wire,
    _dir: Scratch,
}

impl Lab {
    /// `slot` (0..7) picks the lab's media port ranges, so labs can run in parallel.
    fn start(name: &str, slot: u16, inside: Inside, outside: Outside) -> Lab {
        let dir = Scratch::new(&format!("phones-{name}"));
        let ip = match inside {
            Inside::V4 => "127.0.0.1",
            Inside::V6 => "::1",
        };
        let at = |ip: &str, port: u16| SocketAddr::new(ip.parse().unwrap(), port);
        let kam = at(ip, free_udp_port(ip));
        let gw1 = at(ip, free_udp_port(ip));
        let gw2 = at("127.0.0.1", free_sip_port("127.0.0.1"));
        let tunnel = free_tcp_port("127.0.0.1");
        let inside_sip = at(ip, free_sip_port(ip));
        let outside_sip = at("127.0.0.1", free_sip_port("127.0.0.1"));
        let media = 25_000 + slot * 200;
        let phone_rtp = 26_400 + slot * 40;

        let wire = Wire::start(
            &[
                kam.port(),
                gw1.port(),
                gw2.port(),
                inside_sip.port(),
                outside_sip.port(),
            ],
            Duration::from_secs(20),
        );
        let kamailio = Kamailio::start(&dir, kam, &kamailio_cfg(kam, gw1), Duration::from_secs(10));

        let (udp, tcp) = match outside {
            Outside::Udp => (format!("\"{gw2}\""), String::new()),
            Outside::Tcp => (format!("\"{gw2}\""), format!("\"{gw2}\"")),
            Outside::TcpOnly => (String::new(), format!("\"{gw2}\"")),
        };
        let cfg = dir.file(
            "sgw.toml",
            &format!(
                r#"[gw2]
sip_udp = [{udp}]
sip_tcp = [{tcp}]
tunnel_listen = "127.0.0.1:{tunnel}"
outside_next_hop = "{outside_sip}"
[gw2.media]
ip = "127.0.0.1"
port_min = {o_min}
port_max = {o_max}

[gw1]
tunnel = "127.0.0.1:{tunnel}"
tunnel_server_name = "127.0.0.1"
sip_bind = "{gw1}"
next_hop = "{kam}"
family = "{family}"
transport = "udp"
[gw1.media]
ip = "{ip}"
port_min = {i_min}
port_max = {i_max}
"#,
                o_min = media,
                o_max = media + 99,
                i_min = media + 100,
                i_max = media + 199,
                family = match inside {
                    Inside::V4 => "ipv4",
                    Inside::V6 => "ipv6",
                },
            ),
        );
        let mut sgw = Proc::spawn(
            "sgw",
            sgw()
                .arg("run")
                .arg("--config")
                .arg(&cfg)
                .args(["--role", "both"]),
        );
        // GW2's engine is made just before this line is printed.
        sgw.wait_line("gw2 sip", Duration::from_secs(20));
        let origin = epoch();
        sgw.wait_line("gw1: tunnel up", Duration::from_secs(20));
        sgw.wait_line("gw2: tunnel up", Duration::from_secs(20));

        let a = Phone::start(
            &dir,
            &PhoneSpec {
                name: &format!("inside phone {INSIDE_USER}"),
                sip: inside_sip,
                aor: format!("sip:{INSIDE_USER}@{}", hostport(kam)),
                register: true,
                ctrl_port: free_tcp_port("127.0.0.1"),
                rtp_ports: (phone_rtp, phone_rtp + 19),
                tone_hz: 440,
            },
            Duration::from_secs(10),
        );
        let b = Phone::start(
            &dir,
            &PhoneSpec {
                name: "outside phone",
                sip: outside_sip,
                aor: format!("sip:{OUTSIDE_NUMBER}@{}", hostport(outside_sip)),
                register: false,
                ctrl_port: free_tcp_port("127.0.0.1"),
                rtp_ports: (phone_rtp + 20, phone_rtp + 39),
                tone_hz: 660,
            },
            Duration::from_secs(10),
        );
        Lab {
            name: name.to_owned(),
            a,
            b,
            gateway: Some(Gateway {
                proc: sgw,
                origin,
                gw2,
                outside,
            }),
            kamailio,
            wire,
            _dir: dir,
        }
    }

    /// The control: two phones registered at the same kamailio call each other, no gateway.
    /// It shows that the phones, the proxy's strictness and the checks pass a call between
    /// two user agents that follow RFC 3261.
    fn control(name: &str, slot: u16) -> Lab {
        let dir = Scratch::new(&format!("phones-{name}"));
        let ip = "127.0.0.1";
        let at = |port: u16| SocketAddr::new(ip.parse().unwrap(), port);
        let kam = at(free_udp_port(ip));
        let nowhere = at(free_udp_port(ip));
        let (a_sip, b_sip) = (at(free_sip_port(ip)), at(free_sip_port(ip)));
        let phone_rtp = 26_400 + slot * 40;
        let wire = Wire::start(
            &[kam.port(), a_sip.port(), b_sip.port()],
            Duration::from_secs(20),
        );
        let kamailio = Kamailio::start(
            &dir,
            kam,
            &kamailio_cfg(kam, nowhere),
            Duration::from_secs(10),
        );
        let phone = |user: &str, sip: SocketAddr, rtp: u16, tone_hz: u32| {
            Phone::start(
                &dir,
                &PhoneSpec {
                    name: &format!("inside phone {user}"),
                    sip,
                    aor: format!("sip:{user}@{}", hostport(kam)),
                    register: true,
                    ctrl_port: free_tcp_port("127.0.0.1"),
                    rtp_ports: (rtp, rtp + 19),
                    tone_hz,
                },
                Duration::from_secs(10),
            )
        };
        let a = phone(INSIDE_USER, a_sip, phone_rtp, 440);
        let b = phone(CONTROL_USER, b_sip, phone_rtp + 20, 660);
        Lab {
            name: name.to_owned(),
            a,
            b,
            gateway: None,
            kamailio,
            wire,
            _dir: dir,
        }
    }

    fn run_case(&mut self, case: Case) -> Outcome {
        let t0 = epoch();
        let sgw_mark = self.gateway.as_mut().map_or(0, |g| g.proc.mark());
        let kam_mark = self.kamailio.proc.mark();
        let mut o = Outcome {
            case,
            t0,
            t_end: t0,
            problems: Vec::new(),
            notes: Vec::new(),
            call_ids: Vec::new(),
            sgw_log: Vec::new(),
            kamailio_log: Vec::new(),
        };
        let outside = self.gateway.as_ref().map(|g| g.outside);
        let (target, caller, callee) = match (case.direction, &self.gateway) {
            (Direction::OutsideIn, Some(g)) => {
                let tp = match g.outside {
                    Outside::Udp => "",
                    Outside::Tcp | Outside::TcpOnly => ";transport=tcp",
                };
                (
                    format!("sip:{INSIDE_USER}@{}{tp}", hostport(g.gw2)),
                    &mut self.b,
                    &mut self.a,
                )
            }
            (Direction::InsideOut, _) => (
                format!("sip:{OUTSIDE_NUMBER}@{}", hostport(self.kamailio.addr)),
                &mut self.a,
                &mut self.b,
            ),
            (Direction::InsideToInside, _) | (Direction::OutsideIn, None) => (
                format!("sip:{CONTROL_USER}@{}", hostport(self.kamailio.addr)),
                &mut self.a,
                &mut self.b,
            ),
        };
        let (cm, em) = (caller.mark(), callee.mark());
        let ids = call(case, &target, caller, cm, callee, em, &mut o);

        // A call made over TCP stays on TCP: the outside phone's ACK and BYE follow GW2's
        // Contact, which must say `;transport=tcp` (RFC 3261 §12.1.1, §19.1.4). Calls out leave
        // GW2 over UDP while it has a UDP listener (`outside_next_hop` names no transport); with
        // GW2 on TCP only, they can only go over TCP.
        let tcp_leg = matches!(
            (outside, case.direction),
            (Some(Outside::Tcp | Outside::TcpOnly), Direction::OutsideIn)
                | (Some(Outside::TcpOnly), Direction::InsideOut)
        );
        if tcp_leg {
            let (phone, id) = match case.direction {
                Direction::OutsideIn => (&mut *caller, &ids.0),
                _ => (&mut *callee, &ids.1),
            };
            let trace = phone.trace(id);
            let udp: Vec<&support::phones::TraceMsg> =
                trace.iter().filter(|m| m.path.starts_with("UDP")).collect();
            if !id.is_empty() && !udp.is_empty() {
                let contact = trace
                    .iter()
                    .find(|m| {
                        m.is_response() && m.cseq_method() == "INVITE" && !m.contact.is_empty()
                    })
                    .map_or("none", |m| m.contact.as_str());
                let what: Vec<String> = udp.iter().map(|m| m.first_line.clone()).collect();
                o.problems.push(format!(
                    "transport: the outside leg should run over TCP, but the outside phone's \
                     trace has {} of the call's messages over UDP ({}); GW2's Contact was {contact}",
                    udp.len(),
                    what.join("; ")
                ));
            }
        }

        // Whatever is still up is hung up, so that the next call starts clean.
        for (p, m) in [(&mut *caller, cm), (&mut *callee, em)] {
            let open = p.open_calls(m);
            if open.is_empty() {
                continue;
            }
            o.notes.push(format!(
                "cleanup: {} still had call {} up; hung it up",
                p.name,
                open.join(", ")
            ));
            for _ in &open {
                let mark = p.mark();
                p.command("hangup", "");
                let _ = p.wait_event(
                    mark,
                    &["CALL_CLOSED"],
                    Instant::now() + Duration::from_secs(3),
                );
            }
        }

        if let Some(g) = &mut self.gateway {
            if !ids.0.is_empty() && !ids.1.is_empty() {
                record_check(g, sgw_mark, t0, &mut o);
            }
            o.sgw_log = g.proc.since(sgw_mark).to_vec();
        }
        o.t_end = epoch();
        o.call_ids = self.wire.call_ids_first_seen(o.t0, o.t_end);
        o.kamailio_log = self
            .kamailio
            .proc
            .since(kam_mark)
            .iter()
            .filter(|l| {
                l.contains("ERROR")
                    || (l.contains("kamailio ") && o.call_ids.iter().any(|id| l.contains(id)))
            })
            .cloned()
            .collect();
        o
    }

    /// Runs the calls, checks that none left a retransmission running, and fails with a report
    /// when any call failed.
    fn run(mut self, cases: &[Case]) {
        let started = Instant::now();
        let mut outcomes: Vec<Outcome> = cases.iter().map(|&c| self.run_case(c)).collect();
        // The last call's window for retransmissions.
        let last = outcomes.last().map_or(0.0, |o| o.t_end);
        let wait = last + QUIET.as_secs_f64() - epoch();
        if wait > 0.0 {
            std::thread::sleep(Duration::from_secs_f64(wait));
        }
        for o in &mut outcomes {
            let late = self.wire.after(&o.call_ids, o.t_end + 0.5);
            if !late.is_empty() {
                let shown: Vec<String> = late
                    .iter()
                    .take(6)
                    .map(|p| Wire::display(p, o.t0))
                    .collect();
                o.problems.push(format!(
                    "retransmissions: {} SIP messages of this call still on the wire more than \
                     0.5 s after it ended (last at {:+.1} s):\n      {}",
                    late.len(),
                    late.last().map_or(0.0, |p| p.at - o.t0),
                    shown.join("\n      ")
                ));
            }
        }

        let mut report = String::new();
        let failed = outcomes.iter().filter(|o| !o.problems.is_empty()).count();
        let _ = writeln!(
            report,
            "{}: {} of {} calls failed ({:.0} s)",
            self.name,
            failed,
            outcomes.len(),
            started.elapsed().as_secs_f64()
        );
        for o in &outcomes {
            let verdict = if o.problems.is_empty() {
                "ok  "
            } else {
                "FAIL"
            };
            let _ = writeln!(report, "  {verdict} {}", o.case);
            for p in &o.problems {
                let _ = writeln!(report, "       - {p}");
            }
        }
        eprintln!("{report}");
        // SGW_PHONES_TRACE=1 shows every call's details, passed or not.
        let all = std::env::var("SGW_PHONES_TRACE").is_ok_and(|v| v == "1");
        if failed == 0 && !all {
            return;
        }
        for o in outcomes.iter().filter(|o| all || !o.problems.is_empty()) {
            let _ = writeln!(report, "\n==== {}: {}", self.name, o.case);
            for p in &o.problems {
                let _ = writeln!(report, "  FAILED {p}");
            }
            for n in &o.notes {
                let _ = writeln!(report, "  note: {n}");
            }
            let _ = writeln!(
                report,
                "  -- SIP on the wire (time from the dial; Call-IDs {}):",
                o.call_ids.join(", ")
            );
            let trace = self.wire.trace(&o.call_ids, o.t0);
            for l in trace.iter().take(MAX_TRACE) {
                let _ = writeln!(report, "    {l}");
            }
            if trace.len() > MAX_TRACE {
                let _ = writeln!(
                    report,
                    "    ... {} more (retransmissions above repeat)",
                    trace.len() - MAX_TRACE
                );
            }
            let _ = writeln!(report, "  -- kamailio:");
            for l in &o.kamailio_log {
                let _ = writeln!(report, "    {}", l.trim());
            }
            if self.gateway.is_some() {
                let _ = writeln!(report, "  -- sgw:");
            }
            for l in &o.sgw_log {
                let _ = writeln!(report, "    {l}");
            }
        }
        if failed == 0 {
            eprintln!("{report}");
            return;
        }
        panic!("{report}");
    }
}

/// GW2's call record of the call that started at `t0` (GW1 writes none): media both ways.
/// `forwarded` counts RTP from the outside phone that went into the tunnel, towards the inside
/// phone; `relayed` counts RTP from the tunnel, i.e. from the inside phone, sent on to the
/// outside phone. Records of earlier calls that end late are told apart by `setup_at`.
fn record_check(g: &mut Gateway, mark: usize, t0: f64, o: &mut Outcome) {
    let deadline = Instant::now() + Duration::from_secs(3);
    let record = loop {
        let rec = g.proc.since(mark).iter().find_map(|l| {
            // `TIMESTAMP  INFO sgw gw2 call=ID: call ended {json}`
            let (head, json) = l.split_once(": call ended ")?;
            if !head.contains(" sgw gw2 call=") {
                return None;
            }
            let v: serde_json::Value = serde_json::from_str(json).ok()?;
            let setup = g.origin + v["setup_at"].as_f64()?;
            (setup > t0 - 0.3).then_some(v)
        });
        if rec.is_some() || Instant::now() > deadline {
            break rec;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let Some(rec) = record else {
        o.problems
            .push("call record: GW2 wrote none for this call (it never ended it)".to_owned());
        return;
    };
    let m = &rec["media"];
    let out_in = m["forwarded"].as_u64().unwrap_or(0);
    let in_out = m["relayed"].as_u64().unwrap_or(0);
    if out_in < MIN_RTP || in_out < MIN_RTP {
        o.problems.push(format!(
            "audio: GW2 carried {out_in} RTP packets outside -> inside and {in_out} inside -> \
             outside (want at least {MIN_RTP} each way): {rec}"
        ));
    } else {
        o.notes.push(format!(
            "GW2's call record: {out_in} RTP packets outside -> inside, {in_out} inside -> outside"
        ));
    }
}

/// One call from `caller` to `target`; every step's failure goes into `o.problems`. Returns
/// the caller's and the callee's Call-IDs (empty when unknown).
fn call(
    case: Case,
    target: &str,
    caller: &mut Phone,
    cm: usize,
    callee: &mut Phone,
    em: usize,
    o: &mut Outcome,
) -> (String, String) {
    let secs = |s: u64| Instant::now() + Duration::from_secs(s);
    caller.command("dial", target);

    // ring: the INVITE reached the callee.
    let incoming = match callee.wait_event(em, &["CALL_INCOMING"], secs(8)) {
        Ok(e) => e,
        Err(seen) => {
            let caller_saw = caller.events_since(cm);
            o.problems.push(format!(
                "ring: the INVITE to {target} never reached {} within 8 s ({seen}); {} saw: {}",
                callee.name,
                caller.name,
                list(&caller_saw)
            ));
            return (first_id(caller, cm), String::new());
        }
    };
    let callee_id = incoming.call_id.clone().unwrap_or_default();
    callee.command("accept", "");

    // answer: the 2xx reached the caller; ACK: the ACK reached the callee.
    let established = caller.wait_event(cm, &["CALL_ESTABLISHED", "CALL_CLOSED"], secs(5));
    let caller_id = match established {
        Ok(e) if e.kind == "CALL_ESTABLISHED" => e.call_id.unwrap_or_default(),
        Ok(e) => {
            o.problems.push(format!(
                "answer: {} answered, but the call closed at {} instead: {e}",
                callee.name, caller.name
            ));
            return (first_id(caller, cm), callee_id);
        }
        Err(seen) => {
            o.problems.push(format!(
                "answer: {} answered, but {} never saw the call established ({seen})",
                callee.name, caller.name
            ));
            return (first_id(caller, cm), callee_id);
        }
    };
    let answered = Instant::now();
    if callee
        .wait_event(em, &["CALL_ESTABLISHED"], secs(3))
        .is_err()
    {
        let acks = callee
            .trace(&callee_id)
            .iter()
            .filter(|m| m.first_line.starts_with("ACK "))
            .count();
        let oks = callee
            .trace(&callee_id)
            .iter()
            .filter(|m| m.status() == Some(200) && m.cseq_method() == "INVITE")
            .count();
        o.problems.push(format!(
            "ACK: {} answered (its 200 OK went out {oks} times in 3 s) but no ACK reached it \
             ({acks} ACKs in its trace), so the call never became established there",
            callee.name
        ));
    }

    // audio: each phone receives RTP.
    for (p, m) in [(&mut *caller, cm), (&mut *callee, em)] {
        if let Err(seen) = p.wait_event(m, &["CALL_RTPESTAB"], secs(3)) {
            o.problems
                .push(format!("audio: {} received no RTP ({seen})", p.name));
        }
    }
    let talked = answered.elapsed();
    if talked < TALK {
        std::thread::sleep(TALK - talked);
    }

    let ids = (caller_id.clone(), callee_id.clone());

    // hang-up: the BYE ends the call at the other phone.
    let (hanger, hm, hid, other, oid) = match case.hangs_up {
        HangsUp::Caller => (caller, cm, caller_id, callee, callee_id),
        HangsUp::Callee => (callee, em, callee_id, caller, caller_id),
    };
    let before = other.mark();
    let hung = Instant::now();
    hanger.command("hangup", "");
    if let Err(seen) = hanger.wait_event(hm, &["CALL_CLOSED"], secs(2)) {
        o.problems.push(format!(
            "hang-up: {} did not close its call on the hangup command ({seen})",
            hanger.name
        ));
    }
    if let Err(seen) = other.wait_event(before, &["CALL_CLOSED"], secs(5)) {
        o.problems.push(format!(
            "hang-up: {} hung up, but the call was still up at {} 5 s later ({seen})",
            hanger.name, other.name
        ));
    }

    // BYE answered 200, as the hanging-up phone's own trace shows...
    let deadline = hung + Duration::from_secs(5);
    let answer = loop {
        let t = hanger.trace(&hid);
        let final_answer = t
            .iter()
            .find(|m| m.cseq_method() == "BYE" && m.status().is_some_and(|s| s >= 200))
            .cloned();
        if final_answer.is_some() || Instant::now() > deadline {
            break (final_answer, t);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    match answer {
        (Some(m), _) if m.status() == Some(200) => {}
        (Some(m), t) => o.problems.push(format!(
            "BYE: {}'s BYE was answered \"{}\":\n      {}",
            hanger.name,
            m.first_line,
            lines(&t)
        )),
        (None, t) => {
            let byes = t
                .iter()
                .filter(|m| m.first_line.starts_with("BYE "))
                .count();
            let what = if byes == 0 {
                "sent no BYE within 5 s (a callee may not send one before the ACK, RFC 3261 \
                 §15)"
                    .to_owned()
            } else {
                format!("got no final answer to its BYE within 5 s (sent {byes} times)")
            };
            o.problems
                .push(format!("BYE: {} {what}:\n      {}", hanger.name, lines(&t)));
        }
    }
    // ... and the other phone received the BYE and answered it 200.
    let t = other.trace(&oid);
    let got_bye = t.iter().any(|m| m.first_line.starts_with("BYE "));
    let said_ok = t
        .iter()
        .any(|m| m.cseq_method() == "BYE" && m.status() == Some(200));
    if !(got_bye && said_ok) {
        o.problems.push(format!(
            "BYE: {} {} (its trace of the call):\n      {}",
            other.name,
            if got_bye {
                "received a BYE but did not answer it 200"
            } else {
                "never received a BYE"
            },
            lines(&t)
        ));
    }
    ids
}

/// The Call-ID of the first call event since `mark`, or empty.
fn first_id(p: &mut Phone, mark: usize) -> String {
    p.events_since(mark)
        .into_iter()
        .find_map(|e| e.call_id)
        .unwrap_or_default()
}

fn list(events: &[support::phones::PhoneEvent]) -> String {
    if events.is_empty() {
        return "no events".to_owned();
    }
    events
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

fn lines(msgs: &[support::phones::TraceMsg]) -> String {
    if msgs.is_empty() {
        return "(nothing)".to_owned();
    }
    msgs.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n      ")
}

/// Whether kamailio, baresip and a tshark capture on `lo` are available; under CI=true their
/// absence fails the test.
fn peers_available(test: &str) -> bool {
    if !(peer_available(test, "kamailio", &["-v"], "kamailio")
        && peer_available(test, "baresip", &["-h"], "baresip")
        && peer_available(test, "tshark", &["-v"], "tshark"))
    {
        return false;
    }
    if let Err(e) = capture_works() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{test}: {e} (run as root, or allow dumpcap to capture)");
        }
        eprintln!("{test}: skipped: {e}");
        return false;
    }
    true
}

fn lab(test: &str, slot: u16, inside: Inside, outside: Outside) {
    if !peers_available(test) {
        return;
    }
    Lab::start(test, slot, inside, outside).run(&CASES);
}

/// The control: without the gateway, the same phones, proxy and checks pass.
#[test]
fn control_two_inside_phones_without_the_gateway() {
    let test = "control_two_inside_phones_without_the_gateway";
    if !peers_available(test) {
        return;
    }
    Lab::control(test, 6).run(&[
        Case {
            direction: Direction::InsideToInside,
            hangs_up: HangsUp::Caller,
        },
        Case {
            direction: Direction::InsideToInside,
            hangs_up: HangsUp::Callee,
        },
    ]);
}

#[test]
fn inside_ipv4_outside_udp() {
    lab("inside_ipv4_outside_udp", 0, Inside::V4, Outside::Udp);
}

#[test]
fn inside_ipv6_outside_udp() {
    lab("inside_ipv6_outside_udp", 1, Inside::V6, Outside::Udp);
}

#[test]
fn inside_ipv4_outside_tcp() {
    lab("inside_ipv4_outside_tcp", 2, Inside::V4, Outside::Tcp);
}

#[test]
fn inside_ipv6_outside_tcp() {
    lab("inside_ipv6_outside_tcp", 3, Inside::V6, Outside::Tcp);
}

#[test]
fn inside_ipv4_gw2_tcp_only() {
    lab("inside_ipv4_gw2_tcp_only", 4, Inside::V4, Outside::TcpOnly);
}

#[test]
fn inside_ipv6_gw2_tcp_only() {
    lab("inside_ipv6_gw2_tcp_only", 5, Inside::V6, Outside::TcpOnly);
}
