//! Independent oracles for what the gateway emits on H.323 (issue 3, acceptance: "an emitted
//! Setup (fastStart, IPv6 transport addresses) decodes in tshark and pycrate to the same field
//! values we put in").
//!
//! - A Setup built by the code GW1 uses toward an H.323 inside (`translators::h323::
//!   setup_message` + `fast_start_offer`, as with `--inside h323 --inside-family ipv6`) with
//!   known numbers, display, conferenceID, callIdentifier and a G.711 µ-law + A-law fastStart
//!   offer over IPv6 is written to a pcap as TCP to port 1720; tshark decodes it without
//!   malformed or expert-error items and reports the same values, and pycrate (compiled from the
//!   same ASN.1 modules, `h323-asn1/tests/pycrate_oracle.py`) decodes the H323-UserInformation
//!   and each fastStart OpenLogicalChannel to the same values.
//! - What the engine itself sends: GW1's Setup for a SIP INVITE (IPv6 inside), and GW2's Call
//!   Proceeding, Alerting, Connect (fastStart answer) and Release Complete toward an outside
//!   H.323 caller, decode in tshark cleanly, as the same messages and values our decoder reads.
//!
//! tshark and pycrate are found as in the other oracle tests (pycrate: `SGW_PYTHON`, else
//! `.venv/bin/python`, else a `python3` that imports it). Missing tools make the test print
//! "skipped: ..." and pass, except under `CI=true`, where it fails.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use bytes::Bytes;
use codecs::meta::{self, Codec, Direction, MediaDescription, MediaKind, Party, StreamId};
use codecs::sip::{self, MessageBuilder};
use codecs::{h225, h245, q931, tpkt};
use sgw::capture::{CaptureWriter, OutLink};
use sgw::engine::{
    ConnId, Engine, EngineConfig, Family, Flow, InsideProtocol, Protocol, Side, Transport,
};
use std::io::Write as _;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const CALLING: &str = "4930555123";
const CALLED: &str = "2001";
const DISPLAY: &str = "Oracle Caller";
const CONFERENCE_ID: [u8; 16] = [
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
];
const CALL_IDENTIFIER: [u8; 16] = [
    0xf0, 0xe1, 0xd2, 0xc3, 0xb4, 0xa5, 0x96, 0x87, 0x78, 0x69, 0x5a, 0x4b, 0x3c, 0x2d, 0x1e, 0x0f,
];
const CALL_REF: u16 = 0x2345;
const RTP_PORT: u16 = 40_000;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

fn skip(what: &str) {
    assert!(!ci(), "{what} not available under CI=true");
    println!("skipped: {what} not available");
}

fn have_tshark() -> bool {
    Command::new("tshark")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn oracle_script() -> PathBuf {
    root().join("h323-asn1/tests/pycrate_oracle.py")
}

/// The Python that runs the pycrate oracle (same lookup as `h323-asn1/tests/pycrate.rs`).
fn python() -> Option<PathBuf> {
    let candidates: Vec<PathBuf> = match std::env::var_os("SGW_PYTHON") {
        Some(p) => vec![PathBuf::from(p)],
        None => vec![
            root().join(".venv/bin/python"),
            PathBuf::from("python3"),
            PathBuf::from("python"),
        ],
    };
    candidates.into_iter().find(|p| {
        Command::new(p)
            .arg(oracle_script())
            .arg("check")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

fn hexs(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn tmp_pcap(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("sgw-h323-emit-{}-{name}.pcap", std::process::id()))
}

fn codec(pt: u8, name: &str) -> Codec {
    Codec {
        payload_type: pt,
        name: name.to_owned(),
        clock_rate: 8000,
        channels: 1,
        fmtp: None,
    }
}

fn gw1_rtp() -> SocketAddr {
    SocketAddr::new(IpAddr::V6("fd00:5357::1".parse().unwrap()), RTP_PORT)
}

/// Our Setup with the known values, TPKT-framed, and its H323-UserInformation octets.
fn known_setup() -> (Vec<u8>, Vec<u8>) {
    let media = vec![MediaDescription {
        stream: Some(StreamId(1)),
        kind: MediaKind::Audio,
        direction: Direction::SendRecv,
        codecs: vec![codec(0, "PCMU"), codec(8, "PCMA")],
        telephone_event: None,
        ptime_ms: Some(20),
    }];
    let setup = meta::Setup {
        call: meta::CallRef(1),
        calling: Party {
            user: CALLING.to_owned(),
            display: Some(DISPLAY.to_owned()),
        },
        called: Party {
            user: CALLED.to_owned(),
            display: None,
        },
        emergency: false,
        media: media.clone(),
    };
    let ids = translators::h323::CallIds {
        call_ref: CALL_REF,
        conference_id: CONFERENCE_ID,
        call_identifier: CALL_IDENTIFIER,
    };
    let fs = translators::h323::fast_start_offer(&media, gw1_rtp()).unwrap();
    let msg = translators::h323::setup_message(&setup, &ids, fs).unwrap();
    let uu = msg.user_user().unwrap().data.to_vec();
    let q = msg.to_vec().unwrap();
    let mut out = Vec::new();
    tpkt::encode(&q, &mut out).unwrap();
    (out, uu)
}

/// One TPKT-framed H.225.0 message the gateway sent, with its TCP endpoints.
struct Emitted {
    label: String,
    src: SocketAddr,
    dst: SocketAddr,
    tpkt: Vec<u8>,
}

fn drain(e: &mut Engine, out: &mut Vec<Emitted>, label: &str) -> Vec<(Side, Flow, Bytes)> {
    while e.poll_event().is_some() {}
    let mut sent = Vec::new();
    while let Some(t) = e.poll_transmit() {
        if t.protocol == Protocol::H225 {
            // The engine's transmits are whole TPKT packets; one call may hold several.
            out.push(Emitted {
                label: label.to_owned(),
                src: t.flow.local,
                dst: t.flow.remote,
                tpkt: t.payload.to_vec(),
            });
        }
        sent.push((t.side, t.flow, t.payload.clone()));
    }
    sent
}

/// GW1's Setup toward an IPv6 H.323 inside for the SIP INVITE `invite-ipv4-pcmu.sip`.
fn gw1_engine_setup(out: &mut Vec<Emitted>) {
    let data = std::fs::read(root().join("testdata/sip/messages/invite-ipv4-pcmu.sip")).unwrap();
    let (msg, _) = sip::parse_datagram(Bytes::from(data.clone())).unwrap();
    let via = &msg.vias().unwrap()[0];
    let peer = SocketAddr::new(via.ip.unwrap(), via.port.unwrap_or(5060));
    let mut e = Engine::new(EngineConfig {
        inside_family: Some(Family::V6),
        inside_protocol: Some(InsideProtocol::H323),
        ..EngineConfig::default()
    });
    e.handle_datagram(
        Duration::ZERO,
        Flow {
            transport: Transport::Udp,
            local: "198.51.100.1:5060".parse().unwrap(),
            remote: peer,
        },
        Bytes::from(data),
    );
    let before = out.len();
    drain(&mut e, out, "GW1 Setup (engine, IPv6 inside)");
    assert!(out.len() > before, "GW1 sent a Setup");
}

/// An outside H.323 caller's fastStart Setup over IPv6, answered through a SIP PBX inside:
/// GW2 sends Call Proceeding, Alerting (PBX 180), Connect (PBX 200) and Release Complete (PBX
/// BYE) to the caller.
fn gw2_engine_answers(out: &mut Vec<Emitted>) {
    let caller: SocketAddr = "[2001:db8::10]:11720".parse().unwrap();
    let gw2: SocketAddr = "[2001:db8:5357::1]:1720".parse().unwrap();
    let media = vec![MediaDescription {
        stream: Some(StreamId(2)),
        kind: MediaKind::Audio,
        direction: Direction::SendRecv,
        codecs: vec![codec(0, "PCMU"), codec(8, "PCMA")],
        telephone_event: None,
        ptime_ms: Some(20),
    }];
    let setup = meta::Setup {
        call: meta::CallRef(2),
        calling: Party {
            user: "4930555".to_owned(),
            display: Some("Caller".to_owned()),
        },
        called: Party {
            user: "2001".to_owned(),
            display: None,
        },
        emergency: false,
        media: media.clone(),
    };
    let ids = translators::h323::CallIds {
        call_ref: 0x1234,
        conference_id: [0xc0; 16],
        call_identifier: [0xca; 16],
    };
    let fs = translators::h323::fast_start_offer(
        &media,
        "[2001:db8::10]:5000".parse::<SocketAddr>().unwrap(),
    )
    .unwrap();
    let q = translators::h323::setup_message(&setup, &ids, fs)
        .unwrap()
        .to_vec()
        .unwrap();
    let mut framed = Vec::new();
    tpkt::encode(&q, &mut framed).unwrap();

    let mut e = Engine::new(EngineConfig {
        inside_family: Some(Family::V6),
        inside_protocol: Some(InsideProtocol::Sip),
        ..EngineConfig::default()
    });
    let flow = Flow {
        transport: Transport::Tcp,
        local: gw2,
        remote: caller,
    };
    e.handle_stream(Duration::ZERO, ConnId(1), flow, &framed);
    let sent = drain(&mut e, out, "GW2 after Setup");
    let (_, inside, invite) = sent
        .iter()
        .find(|(s, _, p)| *s == Side::Inside && p.starts_with(b"INVITE "))
        .expect("GW1 sent an INVITE")
        .clone();
    let (inv, _) = sip::parse_datagram(invite).unwrap();
    let pbx = inside.remote.ip();
    let ringing = MessageBuilder::response_to(&inv, 180, Some("pbx-tag-1"))
        .header("Contact", format!("<sip:pbx@{}>", inside.remote))
        .build();
    e.handle_inside_datagram(Duration::from_millis(200), inside, ringing);
    drain(&mut e, out, "GW2 after 180");
    let sdp = format!(
        "v=0\r\no=pbx 1 1 IN IP6 {pbx}\r\ns=-\r\nc=IN IP6 {pbx}\r\nt=0 0\r\nm=audio 16384 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\n"
    );
    let ok = MessageBuilder::response_to(&inv, 200, Some("pbx-tag-1"))
        .header("Contact", format!("<sip:pbx@{}>", inside.remote))
        .body("application/sdp", sdp.into_bytes())
        .build();
    e.handle_inside_datagram(Duration::from_millis(500), inside, ok);
    drain(&mut e, out, "GW2 after 200");
    // The PBX hangs up: a BYE in the dialog the 200 OK set up.
    let bye = bye_from_pbx(&inv, inside);
    e.handle_inside_datagram(Duration::from_secs(5), inside, bye);
    drain(&mut e, out, "GW2 after BYE");
}

/// A BYE from the PBX (callee) in the dialog of `inv`: From/To swapped with the PBX's tag.
fn bye_from_pbx(inv: &sip::Message, inside: Flow) -> Bytes {
    let header = |name: &str| -> String {
        let raw = inv.raw();
        let text = String::from_utf8_lossy(raw).into_owned();
        text.lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_owned())
            })
            .unwrap_or_else(|| panic!("INVITE has no {name}"))
    };
    let from = header("From");
    let to = header("To");
    let call_id = header("Call-ID");
    let contact = header("Contact");
    let target = contact
        .trim_start_matches(|c| c != '<')
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap()
        .to_owned();
    let pbx = inside.remote;
    let text = format!(
        "BYE {target} SIP/2.0\r\nVia: SIP/2.0/UDP {pbx};branch=z9hG4bK-pbx-bye-1\r\nMax-Forwards: 70\r\nFrom: {to};tag=pbx-tag-1\r\nTo: {from}\r\nCall-ID: {call_id}\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n"
    );
    Bytes::from(text.into_bytes())
}

fn write_pcap(path: &Path, msgs: &[Emitted]) {
    let mut w = CaptureWriter::create(path, OutLink::Ethernet).unwrap();
    for (i, m) in msgs.iter().enumerate() {
        let t = Duration::from_millis(10 * i as u64);
        w.write_tcp(t, m.src, m.dst, &m.tpkt).unwrap();
    }
    w.finish().unwrap().flush().unwrap();
}

/// `tshark -T fields` for `fields` over the H.225.0 frames of `pcap`, one row per frame, each
/// field's occurrences joined with ','.
fn tshark_fields(pcap: &Path, fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.args(["-n", "-r"])
        .arg(pcap)
        .args(["-o", "tcp.try_heuristic_first:TRUE"])
        .args(["-Y", "h225", "-T", "fields", "-E", "occurrence=a"])
        .args(["-E", "aggregator=,", "-E", "separator=|"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split('|').map(str::to_owned).collect())
        .collect()
}

/// Frames of `pcap` with a malformed packet or an expert item of severity error, with the
/// expert messages.
fn tshark_errors(pcap: &Path) -> String {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(pcap)
        .args(["-o", "tcp.try_heuristic_first:TRUE"])
        .args(["-Y", "_ws.malformed || _ws.expert.severity >= error"])
        .args([
            "-T",
            "fields",
            "-e",
            "frame.number",
            "-e",
            "_ws.expert.message",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// tshark prints a GUID field as 8-4-4-4-12 hex; ours are the 16 octets in order.
fn guid_text(g: &[u8; 16]) -> String {
    let h = hexs(g);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn split(cell: &str) -> Vec<String> {
    cell.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn emitted_setup_decodes_in_tshark_to_our_values() {
    if !have_tshark() {
        return skip("tshark");
    }
    let (setup, _) = known_setup();
    let pcap = tmp_pcap("setup");
    write_pcap(
        &pcap,
        &[Emitted {
            label: "Setup".to_owned(),
            src: "[fd00:5357::1]:30000".parse().unwrap(),
            dst: "[fd00:5357::10]:1720".parse().unwrap(),
            tpkt: setup,
        }],
    );
    let errors = tshark_errors(&pcap);
    assert!(errors.is_empty(), "tshark errors in our Setup:\n{errors}");
    let fields = [
        "q931.message_type",
        "q931.call_ref",
        "q931.called_party_number.digits",
        "q931.calling_party_number.digits",
        "q931.display_information",
        "h225.conferenceID",
        "h225.guid",
        "h225.FastStart_item",
        "h245.ip6_network",
        "h245.ipv6.tsapIdentifier",
        "h225.h245Tunnelling",
        "h225.dialledDigits",
        "h225.fastStart",
    ];
    let rows = tshark_fields(&pcap, &fields);
    let _ = std::fs::remove_file(&pcap);
    assert_eq!(rows.len(), 1, "one H.225.0 frame: {rows:?}");
    let row = &rows[0];
    println!("tshark: {row:?}");
    assert_eq!(row[0], "0x05", "Setup");
    assert_eq!(row[1], format!("{CALL_REF:04x}"), "call reference");
    assert_eq!(row[2], CALLED);
    assert_eq!(row[3], CALLING);
    assert_eq!(row[4], DISPLAY);
    assert_eq!(row[5], guid_text(&CONFERENCE_ID));
    assert_eq!(row[6], guid_text(&CALL_IDENTIFIER));
    // G.711 µ-law and A-law, each a forward (we send) and a reverse (we receive) channel.
    assert_eq!(row[12], "4", "fastStart element count");
    assert_eq!(split(&row[7]).len(), 4, "fastStart items dissected");
    let ip6 = gw1_rtp().ip().to_string();
    let networks = split(&row[8]);
    assert!(!networks.is_empty());
    assert!(networks.iter().all(|n| *n == ip6), "{networks:?}");
    let ports: Vec<u16> = split(&row[9]).iter().map(|p| p.parse().unwrap()).collect();
    // Forward OLC: RTCP only; reverse OLC: RTP and RTCP.
    assert_eq!(
        ports,
        [
            RTP_PORT + 1,
            RTP_PORT,
            RTP_PORT + 1,
            RTP_PORT + 1,
            RTP_PORT,
            RTP_PORT + 1
        ]
    );
    assert_eq!(row[10], "1", "h245Tunnelling");
    assert_eq!(split(&row[11]), [CALLING, CALLED], "aliases");
}

/// Every string value under `key` anywhere in `v`.
fn find_all<'a>(v: &'a serde_json::Value, key: &str, out: &mut Vec<&'a serde_json::Value>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                if k == key {
                    out.push(x);
                }
                find_all(x, key, out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| find_all(x, key, out)),
        _ => {}
    }
}

fn pycrate_jer(python: &Path, items: &[(&str, Vec<u8>)]) -> Vec<serde_json::Value> {
    let mut child = Command::new(python)
        .arg(oracle_script())
        .arg("decode-lines")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = String::new();
    for (pdu, bytes) in items {
        input.push_str(&format!("{pdu} {}\n", hexs(bytes)));
    }
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "pycrate_oracle.py decode-lines failed"
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| match l.split_once(' ') {
            Some(("ok", jer)) => serde_json::from_str(jer).unwrap(),
            _ => panic!("pycrate cannot decode: {l}"),
        })
        .collect();
    assert_eq!(lines.len(), items.len());
    lines
}

#[test]
fn emitted_setup_decodes_in_pycrate_to_our_values() {
    let Some(python) = python() else {
        return skip("pycrate");
    };
    let (_, uu) = known_setup();
    let jer = pycrate_jer(&python, &[("h225", uu.clone())]).remove(0);
    let setup = &jer["h323-uu-pdu"]["h323-message-body"]["setup"];
    assert!(setup.is_object(), "a Setup: {jer}");
    let hex_of = |v: &serde_json::Value| v.as_str().unwrap().to_ascii_lowercase();
    assert_eq!(hex_of(&setup["conferenceID"]), hexs(&CONFERENCE_ID));
    assert_eq!(
        hex_of(&setup["callIdentifier"]["guid"]),
        hexs(&CALL_IDENTIFIER)
    );
    assert_eq!(jer["h323-uu-pdu"]["h245Tunneling"], true);
    let digits = |v: &serde_json::Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|a| a["dialedDigits"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(digits(&setup["sourceAddress"]), [CALLING]);
    assert_eq!(digits(&setup["destinationAddress"]), [CALLED]);

    // fastStart: the same octets as ours, each an OpenLogicalChannel pycrate reads.
    let ours = h323_asn1::decode_h323_user_information(&uu).unwrap();
    let our_fs = h225::fast_start(&ours.h323_uu_pdu).unwrap();
    let fs: Vec<Vec<u8>> = setup["fastStart"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            let h = x.as_str().unwrap();
            (0..h.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
                .collect()
        })
        .collect();
    assert_eq!(fs.len(), 4, "fastStart elements");
    for (theirs, ours) in fs.iter().zip(our_fs) {
        assert_eq!(theirs.as_slice(), ours.as_ref());
    }
    let olcs = pycrate_jer(
        &python,
        &fs.iter().map(|b| ("olc", b.clone())).collect::<Vec<_>>(),
    );
    let mut codecs = Vec::new();
    let mut addresses = Vec::new();
    for (olc, bytes) in olcs.iter().zip(&fs) {
        let ours = h245::olc_media(&h323_asn1::decode_fast_start_olc(bytes).unwrap());
        println!("pycrate OLC: {olc}\nours: {ours:?}");
        for key in ["g711Ulaw64k", "g711Alaw64k"] {
            let mut found = Vec::new();
            find_all(olc, key, &mut found);
            if !found.is_empty() {
                codecs.push(key);
            }
        }
        let mut found = Vec::new();
        find_all(olc, "iP6Address", &mut found);
        for a in found {
            let net: Ipv6Addr = {
                let h = hex_of(&a["network"]);
                let o: Vec<u8> = (0..32)
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
                    .collect();
                <[u8; 16]>::try_from(o).unwrap().into()
            };
            let port = u16::try_from(a["tsapIdentifier"].as_u64().unwrap()).unwrap();
            addresses.push(SocketAddr::new(IpAddr::V6(net), port));
        }
    }
    assert_eq!(
        codecs,
        ["g711Ulaw64k", "g711Ulaw64k", "g711Alaw64k", "g711Alaw64k"]
    );
    let rtp = gw1_rtp();
    let rtcp = SocketAddr::new(rtp.ip(), RTP_PORT + 1);
    assert_eq!(addresses, [rtcp, rtp, rtcp, rtcp, rtp, rtcp]);
}

#[test]
fn engine_h225_output_decodes_in_tshark_cleanly() {
    if !have_tshark() {
        return skip("tshark");
    }
    let mut msgs = Vec::new();
    gw1_engine_setup(&mut msgs);
    gw2_engine_answers(&mut msgs);
    // What our decoder reads in each, in order.
    let mut ours = Vec::new();
    for m in &msgs {
        let q = q931::Message::decode(&m.tpkt[tpkt::HEADER_LEN..]).unwrap();
        let uu = h225::user_information(&q).unwrap();
        let body = h225::body_name(&uu.h323_uu_pdu.h323_message_body);
        let fast_start = h225::fast_start(&uu.h323_uu_pdu).map_or(0, <[_]>::len);
        println!(
            "{}: {} ({body}, fastStart {fast_start})",
            m.label,
            q.msg_type.name()
        );
        ours.push((
            format!("0x{:02x}", u8::from(q.msg_type)),
            h225::call_identifier(&uu.h323_uu_pdu).map(|g| guid_text(&g)),
            fast_start,
        ));
    }
    let names: Vec<&str> = ours.iter().map(|(t, _, _)| t.as_str()).collect();
    // Setup; Call Proceeding; Alerting; Connect; Release Complete.
    assert_eq!(names, ["0x05", "0x02", "0x01", "0x07", "0x5a"], "{names:?}");
    let pcap = tmp_pcap("engine");
    write_pcap(&pcap, &msgs);
    let errors = tshark_errors(&pcap);
    let rows = tshark_fields(
        &pcap,
        &["q931.message_type", "h225.guid", "h225.FastStart_item"],
    );
    let _ = std::fs::remove_file(&pcap);
    assert!(errors.is_empty(), "tshark errors:\n{errors}");
    assert_eq!(rows.len(), ours.len(), "{rows:?}");
    for (row, (kind, call_id, fast_start)) in rows.iter().zip(&ours) {
        println!("tshark: {row:?}");
        assert_eq!(&row[0], kind);
        if let Some(id) = call_id {
            assert!(split(&row[1]).contains(id), "{row:?} lacks {id}");
        }
        assert_eq!(split(&row[2]).len(), *fast_start, "{row:?}");
    }
}

/// The error filter is not vacuous: the captured H.225.0 PDU tshark flags ("too long integer",
/// `h323-asn1/testdata/malformed/h225/ndpi-h323-f65-malformed.hex`), framed the same way as
/// ours, is reported.
#[test]
fn tshark_error_filter_flags_a_malformed_h225() {
    if !have_tshark() {
        return skip("tshark");
    }
    let text = std::fs::read_to_string(
        root().join("h323-asn1/testdata/malformed/h225/ndpi-h323-f65-malformed.hex"),
    )
    .unwrap();
    let text = text.trim();
    let uu: Vec<u8> = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect();
    let q = q931::Message::setup(
        q931::CallRef::new(CALL_REF),
        q931::BearerCapability::speech(q931::Layer1Protocol::G711Ulaw),
        uu,
    )
    .to_vec()
    .unwrap();
    let mut framed = Vec::new();
    tpkt::encode(&q, &mut framed).unwrap();
    let pcap = tmp_pcap("malformed");
    write_pcap(
        &pcap,
        &[Emitted {
            label: "malformed".to_owned(),
            src: "[fd00:5357::1]:30000".parse().unwrap(),
            dst: "[fd00:5357::10]:1720".parse().unwrap(),
            tpkt: framed,
        }],
    );
    let errors = tshark_errors(&pcap);
    let _ = std::fs::remove_file(&pcap);
    println!("tshark: {errors}");
    assert!(!errors.is_empty(), "tshark flags the malformed PDU");
}
