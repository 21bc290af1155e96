//! SIP digest authentication of GW2 (issue 9, "Authentication"), live through `sgw run` on
//! loopback: sipp with `[authentication]` (`-au`/`-ap`) answers GW2's 401 and calls through; a
//! wrong password gets 403 after `max_failures`; a replayed `Authorization` (same nonce and
//! nonce-count, sent by a raw client) is challenged again; a trusted peer needs no digest. The
//! credentials file is written by `sgw auth ha1`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use sgw::engine::auth::{Algorithm, DigestParams};
use std::net::{SocketAddr, UdpSocket};
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::gateway::{n, serial, Gateway, Setup};
use support::rawsip::{header, request, status, InsideUas};
use support::*;

const REALM: &str = "sgw.test";

/// A call that answers GW2's 401 (sipp computes `[authentication]` from `-au`/`-ap`), ACKs it
/// on the INVITE's branch, and calls again with credentials; BYE after the answer.
const UAC_AUTH: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="uac with digest">
  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:alice@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:alice@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8
      a=rtpmap:8 PCMA/8000
    ]]>
  </send>
  <recv response="401" auth="true"/>
  <send>
    <![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-2]
      From: sipp <sip:alice@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:alice@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 2 INVITE
      Contact: <sip:alice@[local_ip]:[local_port]>
      [authentication]
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8
      a=rtpmap:8 PCMA/8000
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rrs="true"/>
  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:alice@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 ACK
      [routes]
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <pause milliseconds="300"/>
  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:alice@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 3 BYE
      [routes]
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="200"/>
</scenario>
"#;

/// Wrong credentials twice: the first is challenged again (401), the second (with
/// `max_failures = 2`) is refused with 403.
const UAC_WRONG: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="uac with a wrong password">
  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:alice@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:alice@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="401" auth="true"/>
  <send>
    <![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-2]
      From: sipp <sip:alice@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:alice@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 2 INVITE
      Contact: <sip:alice@[local_ip]:[local_port]>
      [authentication]
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="401" auth="true"/>
  <send>
    <![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-2]
      From: sipp <sip:alice@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:alice@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 3 INVITE
      Contact: <sip:alice@[local_ip]:[local_port]>
      [authentication]
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="403"/>
  <send>
    <![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-2]
      From: sipp <sip:alice@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 3 ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
</scenario>
"#;

/// A plain call (INVITE, ACK, BYE), routes recorded by a proxy followed.
const UAC_PLAIN: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="uac through a proxy">
  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:caller@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:caller@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8
      a=rtpmap:8 PCMA/8000
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rrs="true"/>
  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:caller@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      [routes]
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <pause milliseconds="300"/>
  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:caller@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      [routes]
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="200"/>
</scenario>
"#;

/// The credentials line of `user` with `password`, from `sgw auth ha1` (password on stdin).
fn ha1_line(user: &str, password: &str) -> String {
    use std::io::Write;
    let mut child = sgw()
        .args(["auth", "ha1", user, REALM])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(!line.contains(password), "no password in the file: {line}");
    line
}

/// A gateway with `[auth]`: alice/secret, `max_failures = 2`, 127.0.0.9 trusted.
fn start(name: &str, scratch: &Scratch, inside: &InsideUas, algorithms: &str) -> Gateway {
    let creds = scratch.file("digest.ha1", &format!("{}\n", ha1_line("alice", "secret")));
    let mut s = Setup::new((0, 0), (0, 0), inside.sip);
    let a = free_rtp_port("127.0.0.1");
    let b = free_rtp_port("127.0.0.1");
    s.gw2_media = (a, a + 1);
    s.gw1_media = (b, b + 1);
    s.extra = format!(
        "\n[auth]\nrealm = \"{REALM}\"\ncredentials = \"{}\"\nmax_failures = 2\ntrusted_peers = [\"127.0.0.9\"]\n{algorithms}",
        creds.display()
    );
    Gateway::start(name, &s)
}

fn run_sipp(gw: &Gateway, scenario: &str, password: &str) -> (bool, String) {
    let sf = gw.dir.file("scenario.xml", scenario);
    let port = free_udp_port("127.0.0.1").to_string();
    let mp = free_rtp_port("127.0.0.1").to_string();
    let mut cmd = sipp(&gw.dir.0);
    cmd.arg(gw.sip.to_string())
        .args(["-sf", sf.to_str().unwrap(), "-s", "1234"])
        .args(["-m", "1", "-i", "127.0.0.1", "-p", &port, "-mp", &mp])
        .args(["-au", "alice", "-ap", password]);
    let (st, out) = run_bounded("sipp", &mut cmd, Duration::from_secs(40));
    (st.success(), out)
}

#[test]
fn sipp_authenticates_with_digest_and_a_wrong_password_gets_403() {
    if !sipp_available("digest") {
        return;
    }
    let _g = serial();
    let scratch = Scratch::new("digest-sipp");
    let inside = InsideUas::start();
    // sipp answers the first challenge only, and knows MD5 only.
    let mut gw = start("digest-sipp", &scratch, &inside, "algorithms = [\"MD5\"]\n");
    let (ok, out) = run_sipp(&gw, UAC_AUTH, "secret");
    assert!(
        ok,
        "sipp with the right password failed:\n{out}\n{}",
        gw.output()
    );
    let (ok, out) = run_sipp(&gw, UAC_WRONG, "wrong");
    assert!(
        ok,
        "sipp with a wrong password did not see 401 then 403:\n{out}\n{}",
        gw.output()
    );
    std::thread::sleep(Duration::from_millis(500));
    let records = gw.call_records();
    let (gw2, _) = gw.stop();
    let ok_calls: Vec<_> = records
        .iter()
        .filter(|r| r["auth_identity"] == "alice")
        .collect();
    assert_eq!(ok_calls.len(), 1, "records: {records:?}");
    assert_eq!(n(&gw2, "engine.auth.authenticated"), 1, "{gw2}");
    assert_eq!(n(&gw2, "engine.auth.wrong_credentials"), 2, "{gw2}");
    assert_eq!(n(&gw2, "engine.auth.forbidden"), 1, "{gw2}");
    assert_eq!(n(&gw2, "engine.admission.refused_auth_failed"), 1, "{gw2}");
    assert!(
        n(&gw2, "engine.admission.refused_auth_required") >= 2,
        "{gw2}"
    );
    assert_eq!(inside.log().invites, 1);
}

/// A raw INVITE from `sock` with `extra` headers; the final response's text (ACKed).
fn raw_invite(sock: &UdpSocket, gw: SocketAddr, ruri: &str, n: u32, extra: &str) -> String {
    let local = sock.local_addr().unwrap();
    let call_id = format!("digest-raw-{n}-{}", std::process::id());
    let from = format!("<sip:alice@{}>;tag=f{n}", local.ip());
    let to = format!("<{ruri}>");
    let branch = format!("z9hG4bKdigest{n}");
    let inv = request(
        "INVITE", ruri, local, &call_id, &from, &to, 1, &branch, extra, None,
    );
    sock.send_to(inv.as_bytes(), gw).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = vec![0u8; 65_535];
    while Instant::now() < deadline {
        let Ok((len, _)) = sock.recv_from(&mut buf) else {
            sock.send_to(inv.as_bytes(), gw).unwrap();
            continue;
        };
        let text = String::from_utf8_lossy(&buf[..len]).into_owned();
        if header(&text, "Call-ID") != Some(call_id.as_str()) {
            continue;
        }
        match status(&text) {
            Some(c) if c >= 200 => {
                let to = header(&text, "To").unwrap_or("").to_owned();
                if c >= 300 {
                    let ack = request(
                        "ACK", ruri, local, &call_id, &from, &to, 1, &branch, "", None,
                    );
                    sock.send_to(ack.as_bytes(), gw).unwrap();
                } else {
                    let ack = request(
                        "ACK",
                        ruri,
                        local,
                        &call_id,
                        &from,
                        &to,
                        1,
                        "z9hG4bKack",
                        "",
                        None,
                    );
                    sock.send_to(ack.as_bytes(), gw).unwrap();
                    let bye = request(
                        "BYE",
                        ruri,
                        local,
                        &call_id,
                        &from,
                        &to,
                        2,
                        "z9hG4bKbye",
                        "",
                        None,
                    );
                    sock.send_to(bye.as_bytes(), gw).unwrap();
                }
                return text;
            }
            _ => {}
        }
    }
    panic!("no final response to INVITE {n}");
}

/// Every `WWW-Authenticate` value of a response's text.
fn challenges(msg: &str) -> Vec<String> {
    msg.split("\r\n")
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case("WWW-Authenticate"))
        .map(|(_, v)| v.trim().to_owned())
        .collect()
}

#[test]
fn a_replayed_authorization_is_challenged_again_and_trusted_peers_pass() {
    let _g = serial();
    let scratch = Scratch::new("digest-replay");
    let inside = InsideUas::start();
    let mut gw = start("digest-replay", &scratch, &inside, "");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let ruri = format!("sip:1234@{}", gw.sip);
    let first = raw_invite(&sock, gw.sip, &ruri, 1, "");
    assert_eq!(status(&first), Some(401), "{first}");
    let ch = challenges(&first);
    assert_eq!(ch.len(), 2, "{first}");
    assert!(ch[0].contains("algorithm=SHA-256") && ch[1].contains("algorithm=MD5"));
    let p = DigestParams::parse(&ch[0]).unwrap();
    let nonce = p.get("nonce").unwrap();
    let alg = Algorithm::Sha256;
    let ha1 = alg.ha1("alice", REALM, "secret");
    let response = alg.response(&ha1, nonce, "00000001", "c0ffee", "auth", "INVITE", &ruri);
    let auth = format!(
        "Authorization: Digest username=\"alice\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"{ruri}\", response=\"{response}\", algorithm=SHA-256, qop=auth, nc=00000001, cnonce=\"c0ffee\"\r\n"
    );
    let ok = raw_invite(&sock, gw.sip, &ruri, 2, &auth);
    assert_eq!(status(&ok), Some(200), "{ok}");
    // The same credentials in a new INVITE: nonce-count not above the last one, refused.
    let replay = raw_invite(&sock, gw.sip, &ruri, 3, &auth);
    assert_eq!(status(&replay), Some(401), "{replay}");
    // The same credentials from another address: the nonce was not issued to it.
    let other = UdpSocket::bind("127.0.0.2:0").unwrap();
    let moved = raw_invite(&other, gw.sip, &ruri, 4, &auth);
    assert_eq!(status(&moved), Some(401), "{moved}");
    // A trusted peer calls without credentials.
    let trusted = UdpSocket::bind("127.0.0.9:0").unwrap();
    let t = raw_invite(&trusted, gw.sip, &ruri, 5, "");
    assert_eq!(status(&t), Some(200), "{t}");
    std::thread::sleep(Duration::from_millis(300));
    let (gw2, _) = gw.stop();
    assert_eq!(n(&gw2, "engine.auth.replayed"), 1, "{gw2}");
    assert_eq!(n(&gw2, "engine.auth.authenticated"), 1, "{gw2}");
    assert_eq!(n(&gw2, "engine.auth.not_required"), 1, "{gw2}");
    let out = gw.output();
    assert!(out.contains("replayed credentials"), "{out}");
}

/// The digest answer of `user`/`password` to the first challenge of a 401's text.
fn answer_401(resp: &str, user: &str, password: &str, ruri: &str) -> String {
    let ch = challenges(resp);
    let refs: Vec<&str> = ch.iter().map(String::as_str).collect();
    let c = sgw::engine::auth::ClientCredentials {
        user: user.into(),
        secret: sgw::engine::auth::ClientSecret {
            password: Some(password.into()),
            ha1_md5: None,
            ha1_sha256: None,
        },
    };
    format!(
        "Authorization: {}\r\n",
        c.answer(&refs, "INVITE", ruri, "feed").unwrap()
    )
}

#[test]
fn reload_rereads_the_credentials_file() {
    let _g = serial();
    let scratch = Scratch::new("digest-reload");
    let inside = InsideUas::start();
    let creds = scratch.file("digest.ha1", &format!("{}\n", ha1_line("alice", "secret")));
    let mut s = Setup::new((0, 0), (0, 0), inside.sip);
    let a = free_rtp_port("127.0.0.1");
    let b = free_rtp_port("127.0.0.1");
    s.gw2_media = (a, a + 1);
    s.gw1_media = (b, b + 1);
    s.control = true;
    s.extra = format!(
        "\n[auth]\nrealm = \"{REALM}\"\ncredentials = \"{}\"\n",
        creds.display()
    );
    let mut gw = Gateway::start("digest-reload", &s);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let ruri = format!("sip:1234@{}", gw.sip);
    let ch = raw_invite(&sock, gw.sip, &ruri, 11, "");
    let bob = answer_401(&ch, "bob", "hunter2", &ruri);
    assert_eq!(
        status(&raw_invite(&sock, gw.sip, &ruri, 12, &bob)),
        Some(401)
    );
    // bob is added to the file; the reload reads it.
    std::fs::write(
        &creds,
        format!(
            "{}\n{}\n",
            ha1_line("alice", "secret"),
            ha1_line("bob", "hunter2")
        ),
    )
    .unwrap();
    let mut ctl = sgw();
    ctl.arg("ctl")
        .arg("--socket")
        .arg(gw.control.as_ref().unwrap())
        .arg("reload");
    let (st, out) = run_bounded("sgw ctl reload", &mut ctl, Duration::from_secs(20));
    assert!(st.success(), "{out}");
    let ch = raw_invite(&sock, gw.sip, &ruri, 13, "");
    let bob = answer_401(&ch, "bob", "hunter2", &ruri);
    let ok = raw_invite(&sock, gw.sip, &ruri, 14, &bob);
    assert_eq!(status(&ok), Some(200), "{ok}");
    // A file that does not parse changes nothing: the reload is refused.
    std::fs::write(&creds, "bob:only-a-password\n").unwrap();
    let mut ctl = sgw();
    ctl.arg("ctl")
        .arg("--socket")
        .arg(gw.control.as_ref().unwrap())
        .arg("reload");
    let (st, out) = run_bounded("sgw ctl reload", &mut ctl, Duration::from_secs(20));
    assert!(!st.success(), "{out}");
    assert!(out.contains("[auth]"), "{out}");
    std::thread::sleep(Duration::from_millis(300));
    let records = gw.call_records();
    assert!(
        records.iter().any(|r| r["auth_identity"] == "bob"),
        "{records:?}"
    );
}

/// `sgw replay --config` with `[auth]`: the captured calls bring no credentials of ours, and
/// are challenged as the live GW2 would.
#[test]
fn replay_with_auth_challenges_the_captured_calls() {
    let scratch = Scratch::new("digest-replay-json");
    let creds = scratch.file("digest.ha1", &format!("{}\n", ha1_line("alice", "secret")));
    let cfg = scratch.file(
        "sgw.toml",
        &format!(
            "[gw2]\nsip_udp = [\"0.0.0.0:5060\"]\ntunnel_listen = \"0.0.0.0:7001\"\n[gw2.media]\nip = \"192.0.2.1\"\nport_min = 20000\nport_max = 20099\n[auth]\nrealm = \"{REALM}\"\ncredentials = \"{}\"\n",
            creds.display()
        ),
    );
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = sgw()
        .args(["replay", "--json", "--config"])
        .arg(&cfg)
        .arg(root.join("testdata/sip/sipp-uac-uas-udp-ipv4.pcap"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let invites: Vec<&serde_json::Value> = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| {
            m["summary"]
                .as_str()
                .is_some_and(|s| s.starts_with("INVITE sip:"))
        })
        .collect();
    assert!(!invites.is_empty());
    for inv in invites {
        assert_eq!(inv["response"], 401, "{inv}");
        assert_eq!(inv["reason"], "unauthorized: credentials required", "{inv}");
    }
    assert!(
        v["summary"]["auth"]["challenged"].as_u64().unwrap() >= 1,
        "{}",
        v["summary"]
    );
}

// --- GW2 as a digest client, against kamailio as the provider --------------------------------

const PROVIDER_DOMAIN: &str = "provider.test";

/// kamailio as the provider's registrar and proxy: REGISTER needs digest (401, auth_db over
/// db_text with the plain password, HA1 computed by kamailio with `algorithm`), granted at most
/// `max_expires` seconds; an INVITE to `trunk` goes where GW2 registered it; any other INVITE
/// needs proxy digest (407) and goes to `callee`, record-routed.
fn provider_cfg(
    listen: SocketAddr,
    db: &std::path::Path,
    max_expires: u32,
    callee: SocketAddr,
    algorithm: &str,
) -> String {
    format!(
        r#"#!KAMAILIO
debug=2
log_stderror=yes
children=2
disable_tcp=yes
auto_aliases=no
dns=no
rev_dns=no
listen=udp:{ip}:{port}
alias="{PROVIDER_DOMAIN}"

loadmodule "db_text.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "auth.so"
loadmodule "auth_db.so"

modparam("usrloc", "db_mode", 0)
modparam("registrar", "max_expires", {max_expires})
modparam("registrar", "min_expires", 5)
modparam("registrar", "default_expires", {max_expires})
modparam("auth_db", "db_url", "text://{db}")
modparam("auth_db", "calculate_ha1", yes)
modparam("auth_db", "password_column", "password")
modparam("auth_db", "load_credentials", "")
modparam("rr", "append_fromtag", 1)
modparam("auth", "algorithm", "{algorithm}")

request_route {{
	xlog("L_NOTICE", "provider in: $rm $ru from $si:$sp auth [$hdr(Authorization)$hdr(Proxy-Authorization)]\n");
	if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
	if (has_totag()) {{
		if (loose_route()) {{ t_relay(); exit; }}
		if (is_method("ACK")) {{ if (t_check_trans()) t_relay(); exit; }}
		sl_send_reply("404", "Not here");
		exit;
	}}
	if (is_method("CANCEL")) {{ if (t_check_trans()) t_relay(); exit; }}
	if (is_method("REGISTER")) {{
		if (!www_authorize("{PROVIDER_DOMAIN}", "subscriber")) {{
			xlog("L_NOTICE", "provider challenges REGISTER ($rc)\n");
			www_challenge("{PROVIDER_DOMAIN}", "1");
			exit;
		}}
		if (!save("location")) sl_reply_error();
		xlog("L_NOTICE", "provider registered $tu expires $hdr(Expires)\n");
		exit;
	}}
	if (is_method("INVITE") && $rU == "trunk") {{
		# A call to the trunk: to where GW2 registered it.
		record_route();
		if (!lookup("location")) {{ sl_send_reply("404", "Not registered"); exit; }}
		xlog("L_NOTICE", "provider delivers INVITE to the trunk at $ru\n");
		if (!t_relay()) sl_reply_error();
		exit;
	}}
	if (is_method("INVITE")) {{
		if (!proxy_authorize("{PROVIDER_DOMAIN}", "subscriber")) {{
			xlog("L_NOTICE", "provider challenges INVITE ($rc)\n");
			proxy_challenge("{PROVIDER_DOMAIN}", "1");
			exit;
		}}
		consume_credentials();
		xlog("L_NOTICE", "provider relays INVITE of $fU\n");
		record_route();
		$du = "sip:{callee}";
		if (!t_relay()) sl_reply_error();
		exit;
	}}
	sl_send_reply("405", "Method Not Allowed");
}}
"#,
        ip = listen.ip(),
        port = listen.port(),
        db = db.display(),
    )
}

/// The provider's subscriber table: `trunk` with password `pw`.
fn provider_db(scratch: &Scratch) -> std::path::PathBuf {
    let db = scratch.0.join("dbtext");
    std::fs::create_dir_all(&db).unwrap();
    std::fs::write(
        db.join("version"),
        "id(int,auto) table_name(string) table_version(int) \n0:subscriber:7\n",
    )
    .unwrap();
    // kamailio computes HA1 from the password (calculate_ha1); db_text wants every column.
    let ha1 = Algorithm::Md5.ha1("trunk-auth", PROVIDER_DOMAIN, "pw");
    let ha1b = Algorithm::Md5.ha1(
        &format!("trunk-auth@{PROVIDER_DOMAIN}"),
        PROVIDER_DOMAIN,
        "pw",
    );
    std::fs::write(
        db.join("subscriber"),
        format!(
            "id(int,auto) username(string) domain(string) password(string) ha1(string) ha1b(string) \n\
             1:trunk-auth:{PROVIDER_DOMAIN}:pw:{ha1}:{ha1b}\n"
        ),
    )
    .unwrap();
    db
}

/// A gateway registered (or not) at `provider`, with `password`, calls placed outside going to
/// the provider.
fn start_trunk(
    name: &str,
    inside: &InsideUas,
    provider: SocketAddr,
    password: &str,
    next_hop: bool,
) -> Gateway {
    let mut s = Setup::new((0, 0), (0, 0), inside.sip);
    let a = free_rtp_port("127.0.0.1");
    let b = free_rtp_port("127.0.0.1");
    s.gw2_media = (a, a + 1);
    s.gw1_media = (b, b + 1);
    s.outside_next_hop = next_hop.then_some(provider);
    s.control = true;
    let text = format!(
        "\n[gw2.registration]\nregistrar = \"{provider}\"\ndomain = \"{PROVIDER_DOMAIN}\"\nuser = \"trunk\"\nauth_user = \"trunk-auth\"\npassword = \"{password}\"\nexpires = 3600\n"
    );
    // The section goes after [gw2.media]: `gw2_media_lines` ends that table.
    s.gw2_media_lines = Box::leak(text.into_boxed_str());
    Gateway::start(name, &s)
}

fn kamailio_available() -> bool {
    peer_available("digest", "kamailio", &["-v"], "kamailio") && sipp_available("digest")
}

#[test]
fn gw2_registers_at_kamailio_refreshes_within_the_granted_expiry_and_calls_out_through_a_407() {
    if !kamailio_available() {
        return;
    }
    let _g = serial();
    let scratch = Scratch::new("digest-kamailio");
    let db = provider_db(&scratch);
    let listen = SocketAddr::from(([127, 0, 0, 1], free_udp_port("127.0.0.1")));
    // The callee behind the provider: sipp's UAS.
    let uas_port = free_udp_port("127.0.0.1");
    let callee = SocketAddr::from(([127, 0, 0, 1], uas_port));
    let mut kam = support::phones::Kamailio::start(
        &scratch,
        listen,
        &provider_cfg(listen, &db, 10, callee, "SHA-256"),
        Duration::from_secs(20),
    );
    let mp = free_rtp_port("127.0.0.1").to_string();
    let mut uas_cmd = sipp(&scratch.0);
    uas_cmd
        .args([
            "-sn",
            "uas",
            "-i",
            "127.0.0.1",
            "-p",
            &uas_port.to_string(),
            "-mp",
            &mp,
        ])
        .args(["-m", "1"]);
    let mut uas = Proc::spawn("sipp uas", &mut uas_cmd);
    let inside = InsideUas::start();
    let mut gw = start_trunk("digest-kamailio", &inside, listen, "pw", true);
    // Registered (401 answered), granted 10 s of the 3600 asked, refreshed after 5 s.
    kam.proc
        .wait_line("provider registered", Duration::from_secs(10));
    let start = Instant::now();
    let mut refreshed = false;
    while start.elapsed() < Duration::from_secs(15) {
        kam.proc.drain();
        if kam
            .proc
            .seen
            .iter()
            .filter(|l| l.contains("provider registered"))
            .count()
            >= 3
        {
            refreshed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        refreshed,
        "no refreshes within the granted 10 s:\n{}",
        kam.proc.seen.join("\n")
    );
    assert!(
        kam.proc
            .seen
            .iter()
            .any(|l| l.contains("provider challenges REGISTER")),
        "the registrar never challenged"
    );
    // kamailio challenged with SHA-256 (its `algorithm`), and GW2 answered with it.
    assert!(
        kam.proc
            .seen
            .iter()
            .any(|l| l.contains("provider in: REGISTER") && l.contains("algorithm=SHA-256")),
        "{}",
        kam.proc.seen.join("\n")
    );
    // A call from the inside goes out through the provider, which asks for proxy digest.
    let ruri = format!("sip:5551234@{}", gw.gw1_sip);
    let call = support::rawsip::RawCall::invite(
        gw.gw1_sip,
        "127.0.0.1",
        &ruri,
        "Inside",
        Duration::from_secs(15),
    );
    let mut call = call.unwrap_or_else(|e| {
        kam.proc.drain();
        panic!(
            "call out failed: {e:?}\n{}\n{}",
            kam.proc.seen.join("\n"),
            gw.output()
        )
    });
    assert!(call.hangup(Duration::from_secs(10)), "no 200 to BYE");
    kam.proc.drain();
    let log = kam.proc.seen.join("\n");
    assert!(log.contains("provider challenges INVITE"), "{log}");
    assert!(log.contains("provider relays INVITE of"), "{log}");
    // A call to the trunk at the provider reaches GW2 where it registered, and the inside.
    let sf = scratch.file("caller.xml", UAC_PLAIN);
    let port = free_udp_port("127.0.0.1").to_string();
    let mp = free_rtp_port("127.0.0.1").to_string();
    let mut caller = sipp(&scratch.0);
    caller
        .arg(listen.to_string())
        .args(["-sf", sf.to_str().unwrap(), "-s", "trunk", "-m", "1"])
        .args(["-i", "127.0.0.1", "-p", &port, "-mp", &mp]);
    let (ok, out) = run_bounded("sipp to the trunk", &mut caller, Duration::from_secs(40));
    kam.proc.drain();
    assert!(
        ok.success(),
        "a call to the registered trunk failed:\n{out}\n{}\n{}",
        kam.proc.seen.join("\n"),
        gw.output()
    );
    assert!(kam
        .proc
        .seen
        .iter()
        .any(|l| l.contains("provider delivers INVITE to the trunk")));
    assert_eq!(inside.log().invites, 1);
    // `sgw ctl status` shows the trunk registration.
    let mut ctl = sgw();
    ctl.arg("ctl")
        .arg("--socket")
        .arg(gw.control.as_ref().unwrap())
        .arg("status");
    let (st, out) = run_bounded("sgw ctl status", &mut ctl, Duration::from_secs(20));
    assert!(st.success(), "{out}");
    assert!(
        out.contains(&format!(
            "trunk registration sip:trunk@{PROVIDER_DOMAIN} at {listen}: registered"
        )),
        "{out}"
    );
    std::thread::sleep(Duration::from_millis(300));
    let (gw2, _) = gw.stop();
    let reg = &gw2["engine"]["registration"];
    assert_eq!(reg["state"], "registered", "{reg}");
    assert!(reg["registered"].as_u64().unwrap() >= 3, "{reg}");
    assert!(reg["expires_in"].as_u64().unwrap() <= 10, "{reg}");
    assert_eq!(reg["failures"], 0, "{reg}");
    uas.terminate(Duration::from_secs(5));
}

#[test]
fn a_wrong_trunk_password_fails_and_is_retried_with_backoff() {
    if !kamailio_available() {
        return;
    }
    let _g = serial();
    let scratch = Scratch::new("digest-kamailio-wrong");
    let db = provider_db(&scratch);
    let listen = SocketAddr::from(([127, 0, 0, 1], free_udp_port("127.0.0.1")));
    let unused = SocketAddr::from(([127, 0, 0, 1], free_udp_port("127.0.0.1")));
    let mut kam = support::phones::Kamailio::start(
        &scratch,
        listen,
        &provider_cfg(listen, &db, 10, unused, "MD5"),
        Duration::from_secs(20),
    );
    let inside = InsideUas::start();
    // No outside_next_hop: GW2 registers from its SIP listener all the same.
    let mut gw = start_trunk("digest-kamailio-wrong", &inside, listen, "wrong", false);
    // First attempt: challenged, credentials refused (challenged again), given up; the retry
    // comes after the 5 s backoff.
    kam.proc
        .wait_line("provider challenges REGISTER", Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(7));
    kam.proc.drain();
    let attempts = kam
        .proc
        .seen
        .iter()
        .filter(|l| l.contains("provider in: REGISTER") && l.contains("auth [<null><null>]"))
        .count();
    assert_eq!(
        attempts,
        2,
        "one attempt, then one retry after the backoff:\n{}",
        kam.proc.seen.join("\n")
    );
    assert!(!kam
        .proc
        .seen
        .iter()
        .any(|l| l.contains("provider registered")));
    let (gw2, _) = gw.stop();
    let reg = &gw2["engine"]["registration"];
    assert_eq!(reg["state"], "failed", "{reg}");
    assert!(reg["failures"].as_u64().unwrap() >= 1, "{reg}");
    assert_eq!(reg["last_status"], 401, "{reg}");
    assert_eq!(reg["registered"], 0, "{reg}");
}

// --- the same, sans-IO: the engine as replay and the live driver run it ------------------------

mod engine {
    use super::*;
    use bytes::Bytes;
    use codecs::sip::{self, MessageBuilder, Method};
    use sgw::engine::auth::{ClientCredentials, ClientSecret, Credentials, DigestConfig};
    use sgw::engine::{Engine, EngineConfig, Event, Flow, Report, Side, Transmit, Transport};

    const GW2: &str = "198.51.100.1:5060";
    const PROVIDER: &str = "203.0.113.50:5060";
    const PBX: &str = "10.0.0.10:5060";
    const GW1: &str = "10.0.0.1:5060";

    fn config() -> EngineConfig {
        let creds = Credentials::parse(&Credentials::line("alice", REALM, "secret")).unwrap();
        EngineConfig {
            outside_sip: Some(addr(GW2)),
            outside_next_hop: Some(addr(PROVIDER)),
            auth: Some(DigestConfig {
                realm: REALM.into(),
                credentials: creds,
                trusted_peers: Vec::new(),
                require: true,
                nonce_lifetime: Duration::from_secs(300),
                max_failures: 3,
                algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
                nonce_key: [1; 32],
            }),
            trunk: Some(ClientCredentials {
                user: "trunk".into(),
                secret: ClientSecret {
                    password: Some("pw".into()),
                    ha1_md5: None,
                    ha1_sha256: None,
                },
            }),
            ..EngineConfig::default()
        }
    }

    fn invite(ruri: &str, from_host: &str, id: &str, extra: Option<String>) -> Bytes {
        let mut b = MessageBuilder::request(&Method::Invite, ruri)
            .header("Via", format!("SIP/2.0/UDP {from_host};branch=z9hG4bK{id}"))
            .header("Max-Forwards", "70")
            .header("From", format!("<sip:caller@{from_host}>;tag=t{id}"))
            .header("To", format!("<{ruri}>"))
            .header("Call-ID", id)
            .header("CSeq", "1 INVITE")
            .header("Contact", format!("<sip:caller@{from_host}>"));
        if let Some(a) = extra {
            b = b.header("Authorization", a);
        }
        b.body(
            "application/sdp",
            b"v=0\r\no=x 1 1 IN IP4 10.0.0.20\r\ns=-\r\nc=IN IP4 10.0.0.20\r\nt=0 0\r\nm=audio 16000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n".to_vec(),
        )
        .build()
    }

    fn drain(e: &mut Engine) -> (Vec<Transmit>, Vec<Report>, Vec<Event>) {
        let mut t = Vec::new();
        while let Some(x) = e.poll_transmit() {
            t.push(x);
        }
        let (mut reports, mut other) = (Vec::new(), Vec::new());
        while let Some(ev) = e.poll_event() {
            match ev {
                Event::Report(r) => reports.push(r),
                ev => other.push(ev),
            }
        }
        (t, reports, other)
    }

    fn text(t: &Transmit) -> String {
        String::from_utf8_lossy(&t.payload).into_owned()
    }

    #[test]
    fn the_engine_challenges_and_admits_with_the_identity_on_the_report_path() {
        let mut e = Engine::new(config());
        let flow = Flow {
            transport: Transport::Udp,
            local: addr(GW2),
            remote: addr("192.0.2.7:5060"),
        };
        let ruri = "sip:1234@198.51.100.1";
        e.handle_datagram(
            Duration::from_secs(1),
            flow,
            invite(ruri, "192.0.2.7:5060", "c1", None),
        );
        let (t, r, _) = drain(&mut e);
        let answer = text(t.iter().find(|t| t.side == Side::Outside).unwrap());
        assert_eq!(status(&answer), Some(401), "{answer}");
        let ch = challenges(&answer);
        assert_eq!(ch.len(), 2, "{answer}");
        assert!(!t.iter().any(|t| t.side == Side::Inside));
        let rep = r.iter().find(|r| r.response == Some(401)).unwrap();
        assert_eq!(
            rep.reason.as_deref(),
            Some("unauthorized: credentials required")
        );
        // The client side of the crate answers the server side: admitted, relayed inside.
        let c = ClientCredentials {
            user: "alice".into(),
            secret: ClientSecret {
                password: Some("secret".into()),
                ha1_md5: None,
                ha1_sha256: None,
            },
        };
        let refs: Vec<&str> = ch.iter().map(String::as_str).collect();
        let a = c.answer(&refs, "INVITE", ruri, "0a4f113b").unwrap();
        e.handle_datagram(
            Duration::from_secs(2),
            flow,
            invite(ruri, "192.0.2.7:5060", "c2", Some(a)),
        );
        let (t, _, _) = drain(&mut e);
        assert!(
            t.iter().any(|t| t.side == Side::Inside),
            "not relayed inside"
        );
        // Credentials of another scheme: 401 with the real challenges (RFC 4475 section 3.3.7).
        let basic = Some("Basic YWxhZGRpbjpvcGVuc2VzYW1l".to_owned());
        e.handle_datagram(
            Duration::from_secs(3),
            flow,
            invite(ruri, "192.0.2.7:5060", "c3", basic),
        );
        let (t, _, _) = drain(&mut e);
        let answer = text(t.iter().find(|t| t.side == Side::Outside).unwrap());
        assert_eq!(status(&answer), Some(401), "{answer}");
        let ch = challenges(&answer);
        assert!(
            ch.len() == 2 && ch[0].contains("algorithm=SHA-256"),
            "{answer}"
        );
        assert!(!answer.contains("0000000000000000"), "{answer}");
        let s = serde_json::to_value(e.stats()).unwrap();
        assert_eq!(s["auth"]["authenticated"], 1, "{s}");
        assert_eq!(s["admission"]["refused_auth_required"], 1, "{s}");
    }

    #[test]
    fn a_call_placed_outside_answers_the_providers_407_with_cseq_plus_one() {
        let mut e = Engine::new(config());
        let inside = Flow {
            transport: Transport::Udp,
            local: addr(GW1),
            remote: addr(PBX),
        };
        let ruri = "sip:5551234@10.0.0.1:5060";
        e.handle_inside_datagram(
            Duration::from_secs(1),
            inside,
            invite(ruri, PBX, "out1", None),
        );
        let (t, _, _) = drain(&mut e);
        let first = t
            .iter()
            .find(|t| t.side == Side::Outside && text(t).starts_with("INVITE"))
            .map(text)
            .expect("INVITE toward the provider");
        let msg = sip::parse_datagram(Bytes::from(first.clone())).unwrap().0;
        let resp = MessageBuilder::response_to(&msg, 407, Some("prov"))
            .header(
                "Proxy-Authenticate",
                "Digest realm=\"provider.test\", nonce=\"n407\", qop=\"auth\", algorithm=MD5",
            )
            .build();
        let outside = Flow {
            transport: Transport::Udp,
            local: addr(GW2),
            remote: addr(PROVIDER),
        };
        e.handle_datagram(Duration::from_secs(2), outside, resp);
        let (t, _, _) = drain(&mut e);
        let sent: Vec<String> = t
            .iter()
            .filter(|t| t.side == Side::Outside)
            .map(text)
            .collect();
        assert!(
            sent.iter()
                .any(|s| s.starts_with("ACK ") && s.contains("CSeq: 1 ACK")),
            "{sent:?}"
        );
        let again = sent
            .iter()
            .find(|s| s.starts_with("INVITE "))
            .expect("INVITE again");
        assert!(again.contains("CSeq: 2 INVITE"), "{again}");
        let auth = header(again, "Proxy-Authorization").unwrap();
        let p = DigestParams::parse(auth).unwrap();
        assert_eq!(p.get("username"), Some("trunk"));
        let uri = p.get("uri").unwrap();
        let ha1 = Algorithm::Md5.ha1("trunk", "provider.test", "pw");
        let cnonce = p.get("cnonce").unwrap();
        let want = Algorithm::Md5.response(&ha1, "n407", "00000001", cnonce, "auth", "INVITE", uri);
        assert_eq!(p.get("response"), Some(want.as_str()));
        assert_eq!(header(again, "Call-ID"), header(&first, "Call-ID"));
        // The call is still up: nothing released toward the PBX.
        assert!(!t
            .iter()
            .any(|t| t.side == Side::Inside && text(t).starts_with("SIP/2.0 4")));
    }
}
