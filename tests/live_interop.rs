//! GW2 and GW1 as separate `sgw run` processes on loopback, joined by the mutual-TLS tunnel
//! (certificates from `sgw pki init`): sipp UAC (IPv4, outside) -> GW2 -> tunnel -> GW1 ->
//! sipp UAS (IPv6 `::1`, inside), with RTP played from a capture and echoed back; then GW1 is
//! killed with SIGKILL during a call (GW2 must release the call outside with a BYE), restarted,
//! and a new call must work within seconds.
//!
//! That a client without a certificate from the CA cannot open the tunnel is tested in
//! `src/live/tunnel/tests.rs` (the server refuses the TLS handshake).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};
use support::scenarios::{uac_rtp_scenario, UAS_PCMA};
use support::*;

/// A UAC call that is answered and then waits for the other side (here: GW2) to hang up.
const UAC_WAITS_FOR_BYE: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="uac waits for the gateway's BYE">
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
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000
    ]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rtd="true"/>
  <send><![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: [service] <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Length: 0
    ]]></send>
  <recv request="BYE" timeout="20000"/>
  <send><![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]></send>
</scenario>
"#;

struct Lab {
    dir: Scratch,
    gw2_cfg: std::path::PathBuf,
    gw1_cfg: std::path::PathBuf,
    gw2_sip: String,
    /// Kept alive for the test (killed on drop).
    _uas: Proc,
}

impl Lab {
    /// `ports`: the first of 2000 media ports (GW2 outside, then GW1 inside), distinct per test
    /// so tests can run in parallel.
    fn new(name: &str, ports: u16) -> Lab {
        let dir = Scratch::new(name);
        let pki = dir.0.join("pki");
        let (st, out) = run_bounded(
            "sgw pki init",
            sgw().args(["pki", "init"]).arg(&pki),
            Duration::from_secs(30),
        );
        assert!(st.success(), "{out}");
        let sip = free_udp_port("127.0.0.1");
        let tunnel = free_tcp_port("127.0.0.1");
        let uas_port = free_udp_port("::1");
        let uas_media = free_rtp_port("::1");
        let gw2_cfg = dir.file(
            "gw2.toml",
            &format!(
                r#"[gw2]
sip_udp = ["127.0.0.1:{sip}"]
tunnel_listen = "127.0.0.1:{tunnel}"
[gw2.media]
ip = "127.0.0.1"
port_min = {o_min}
port_max = {o_max}
[pki]
ca = "{p}/ca.pem"
cert = "{p}/gw2.pem"
key = "{p}/gw2.key"
"#,
                p = pki.display(),
                o_min = ports,
                o_max = ports + 999,
            ),
        );
        let gw1_cfg = dir.file(
            "gw1.toml",
            &format!(
                r#"[gw1]
tunnel = "127.0.0.1:{tunnel}"
tunnel_server_name = "127.0.0.1"
sip_bind = "[::1]:0"
next_hop = "[::1]:{uas_port}"
family = "ipv6"
[gw1.media]
ip = "::1"
port_min = {i_min}
port_max = {i_max}
[pki]
ca = "{p}/ca.pem"
cert = "{p}/gw1.pem"
key = "{p}/gw1.key"
"#,
                p = pki.display(),
                i_min = ports + 1000,
                i_max = ports + 1999,
            ),
        );
        let uas_sf = dir.file("uas.xml", UAS_PCMA);
        let uas = Proc::spawn(
            "sipp uas",
            sipp(&dir.0).arg("-sf").arg(&uas_sf).args([
                "-i",
                "::1",
                "-p",
                &uas_port.to_string(),
                "-mi",
                "::1",
                "-mp",
                &uas_media.to_string(),
                "-rtp_echo",
                "-trace_err",
            ]),
        );
        Lab {
            dir,
            gw2_cfg,
            gw1_cfg,
            gw2_sip: format!("127.0.0.1:{sip}"),
            _uas: uas,
        }
    }

    fn gw2(&self) -> Proc {
        let mut p = Proc::spawn(
            "gw2",
            sgw()
                .arg("run")
                .arg("--config")
                .arg(&self.gw2_cfg)
                .args(["--role", "gw2"]),
        );
        p.wait_line("gw2 sip udp", Duration::from_secs(20));
        p
    }

    fn gw1(&self) -> Proc {
        let mut p = Proc::spawn(
            "gw1",
            sgw()
                .arg("run")
                .arg("--config")
                .arg(&self.gw1_cfg)
                .args(["--role", "gw1"]),
        );
        p.wait_line("tunnel up", Duration::from_secs(20));
        p
    }

    fn uac(&self, scenario: &str, calls: u32) -> (std::process::ExitStatus, String) {
        uac(&self.dir.0, &self.gw2_sip, scenario, calls)
    }
}

/// Runs sipp as the outside caller with a scenario file.
fn uac(
    dir: &Path,
    gw2_sip: &str,
    scenario: &str,
    calls: u32,
) -> (std::process::ExitStatus, String) {
    let sf = dir.join(format!("uac-{calls}.xml"));
    std::fs::write(&sf, scenario).unwrap();
    let port = free_udp_port("127.0.0.1").to_string();
    let mp = free_rtp_port("127.0.0.1").to_string();
    {
        run_bounded(
            "sipp uac",
            sipp(dir)
                .arg("-sf")
                .arg(&sf)
                .arg(gw2_sip)
                .args([
                    "-i",
                    "127.0.0.1",
                    "-p",
                    &port,
                    "-mi",
                    "127.0.0.1",
                    "-mp",
                    &mp,
                ])
                .args(["-m", &calls.to_string(), "-l", "2", "-trace_err"]),
            Duration::from_secs(60),
        )
    }
}

fn n(v: &serde_json::Value, half: &str, path: &[&str]) -> u64 {
    let mut v = v;
    for p in path {
        v = &v[*p];
    }
    v.as_u64()
        .unwrap_or_else(|| panic!("{half}: no counter {path:?}"))
}

#[test]
fn split_halves_carry_calls_and_media_ipv4_outside_ipv6_inside() {
    if !sipp_available("split_halves_carry_calls_and_media") {
        return;
    }
    let pcap = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/rtp/g711a.pcap");
    let lab = Lab::new("interop-media", 40000);
    let mut gw2 = lab.gw2();
    let mut gw1 = lab.gw1();
    let (st, out) = lab.uac(&uac_rtp_scenario(&pcap), 3);
    gw1.terminate(Duration::from_secs(5));
    gw2.terminate(Duration::from_secs(5));
    let logs = format!(
        "{out}\n--- gw2:\n{}\n--- gw1:\n{}",
        gw2.seen.join("\n"),
        gw1.seen.join("\n")
    );
    assert!(st.success(), "sipp uac failed ({st}):\n{logs}");
    let (s2, s1) = (gw2.stats("gw2"), gw1.stats("gw1"));
    eprintln!("gw2: {s2}\ngw1: {s1}");
    assert_eq!(n(&s2, "gw2", &["engine", "calls"]), 3, "{logs}");
    // Outside RTP reached GW2 and crossed the tunnel; GW1 sent it to the UAS, whose echo came
    // back through GW1 and the tunnel, and GW2 sent it to the caller.
    for (s, half, path) in [
        (&s2, "gw2", ["engine", "rtp_packets"]),
        (&s2, "gw2", ["driver", "tunnel_media_sent"]),
        (&s1, "gw1", ["driver", "inside_rtp_sent"]),
        (&s1, "gw1", ["engine", "rtp_packets"]),
        (&s2, "gw2", ["driver", "outside_rtp_sent"]),
    ] {
        assert!(
            n(s, half, &path) > 10,
            "{half} {path:?} too low:\n{s2}\n{s1}\n{logs}"
        );
    }
    assert_eq!(n(&s2, "gw2", &["engine", "rejected"]), 0, "{logs}");
}

#[test]
fn gw1_killed_during_a_call_is_released_outside_and_recovers() {
    if !sipp_available("gw1_killed_during_a_call") {
        return;
    }
    let lab = Lab::new("interop-kill", 42000);
    let mut gw2 = lab.gw2();
    let mut gw1 = lab.gw1();
    std::thread::scope(|s| {
        let (dir, sip) = (lab.dir.0.clone(), lab.gw2_sip.clone());
        let waiting = s.spawn(move || uac(&dir, &sip, UAC_WAITS_FOR_BYE, 1));
        // Let the call be answered, then kill GW1 without warning.
        std::thread::sleep(Duration::from_millis(1500));
        gw1.kill9();
        let (st, out) = waiting.join().unwrap();
        gw2.drain();
        assert!(
            st.success(),
            "the caller did not get a BYE from GW2 ({st}):\n{out}\n--- gw2:\n{}",
            gw2.seen.join("\n")
        );
    });
    gw2.wait_line("tunnel down", Duration::from_secs(5));
    let restarted = Instant::now();
    let mut gw1 = lab.gw1();
    let (st, out) = run_bounded(
        "sipp uac",
        sipp(&lab.dir.0)
            .args(["-sn", "uac", &lab.gw2_sip, "-i", "127.0.0.1", "-m", "1"])
            .args(["-p", &free_udp_port("127.0.0.1").to_string()]),
        Duration::from_secs(30),
    );
    let took = restarted.elapsed();
    gw1.terminate(Duration::from_secs(5));
    gw2.terminate(Duration::from_secs(5));
    assert!(
        st.success(),
        "no call after GW1 restarted ({st}):\n{out}\n--- gw2:\n{}\n--- gw1:\n{}",
        gw2.seen.join("\n"),
        gw1.seen.join("\n")
    );
    assert!(took < Duration::from_secs(10), "recovery took {took:?}");
}
