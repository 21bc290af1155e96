//! The zones of `sgw lab up --net-only` (internet, DMZ, intranet and the firewall between them,
//! as network namespaces) for tests that run their own gateways inside them.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use super::{run_bounded, sgw};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The namespaces of one run (`sgw lab up --net-only --prefix PREFIX`); removed on drop (also on
/// panic). Declare it before the processes that run inside it, so those are killed first.
pub struct Zones {
    pub prefix: String,
}

impl Zones {
    /// Builds the zones named `prefix-*` (left-overs of an earlier run with the same prefix are
    /// removed first), within `timeout`.
    pub fn up(prefix: String, timeout: Duration) -> Zones {
        let zones = Zones { prefix };
        zones.lab("down", Duration::from_secs(10));
        let (st, out) = zones.lab("up", timeout);
        assert!(st.success(), "sgw lab up {} failed:\n{out}", zones.prefix);
        zones
    }

    /// `sgw lab VERB --prefix PREFIX` (`up` with `--net-only`: the test runs its own gateways).
    pub fn lab(&self, verb: &str, timeout: Duration) -> (std::process::ExitStatus, String) {
        let mut cmd = sgw();
        cmd.args(["lab", verb, "--prefix", &self.prefix]);
        if verb == "up" {
            cmd.arg("--net-only");
        }
        run_bounded(&format!("sgw lab {verb}"), &mut cmd, timeout)
    }

    /// `program` run inside zone `zone`. `ip netns exec` execs it, so the child's pid is the
    /// program's own and signals reach it.
    pub fn exec(&self, zone: &str, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &format!("{}-{zone}", self.prefix)])
            .arg(program);
        c
    }

    /// The router's named counters: name -> packets.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        router_counters(&self.prefix)
    }

    /// A TCP connection attempt from `zone` to `[ip]:port`, given up after half a second: less
    /// than TCP's initial retransmission timeout (1 s), so exactly one SYN leaves. Whether it
    /// connected.
    pub fn tcp_probe(&self, zone: &str, ip: &str, port: u16) -> bool {
        self.exec(zone, "timeout")
            .args(["0.5", "bash", "-c"])
            .arg(format!("exec 3<>/dev/tcp/{ip}/{port}"))
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    }

    /// One UDP datagram (a SIP OPTIONS start line; one write, so one datagram) from `zone` to
    /// `[ip]:port`.
    pub fn udp_probe(&self, zone: &str, ip: &str, port: u16) {
        let st = self
            .exec(zone, "bash")
            .arg("-c")
            .arg(format!(
                "echo -n 'OPTIONS sip:{ip} SIP/2.0' >/dev/udp/{ip}/{port}"
            ))
            .status()
            .unwrap();
        assert!(st.success(), "udp probe from {zone} could not be sent");
    }
}

impl Drop for Zones {
    fn drop(&mut self) {
        let (st, out) = self.lab("down", Duration::from_secs(10));
        if !st.success() {
            eprintln!("sgw lab down --prefix {}: {out}", self.prefix);
        }
    }
}

/// The named nftables counters of the router of the zones `prefix-*`: name -> packets.
pub fn router_counters(prefix: &str) -> BTreeMap<String, u64> {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &format!("{prefix}-router"), "nft"])
        .args(["-j", "list", "counters"])
        .output()
        .unwrap();
    assert!(out.status.success(), "nft: {out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o.get("counter"))
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["packets"].as_u64().unwrap(),
            )
        })
        .collect()
}
