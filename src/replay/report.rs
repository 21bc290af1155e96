//! The replay report: totals, per-message verdicts, per-call summaries; as JSON or as text.

use crate::engine::{CallRecord, Protocol, Stats, Verdict};
use codecs::meta;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::SocketAddr;

/// Totals over the whole capture: the reader's packet count, the engine's totals, and what
/// the gateway sent each way.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Summary {
    pub packets: u64,
    #[serde(flatten)]
    pub engine: Stats,
    /// Packets GW1 sent to the inside (what `--out` holds).
    pub inside_packets: u64,
    /// Packets GW2 sent to the outside (responses, relayed media).
    pub outside_packets: u64,
}

/// One reported message or packet.
#[derive(Debug, Clone, Serialize)]
pub struct MessageEntry {
    pub frame: u64,
    /// Seconds since the first packet of the capture.
    pub time: f64,
    pub protocol: Protocol,
    /// Addresses, written out (JSON and text alike) only when the report is, as their text.
    #[serde(serialize_with = "address_text")]
    pub src: SocketAddr,
    #[serde(serialize_with = "address_text")]
    pub dst: SocketAddr,
    pub summary: crate::engine::Summary,
    pub verdict: Verdict,
    pub reason: Option<String>,
    pub response: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call: Option<u32>,
    /// The access rule that decided this INVITE or Setup (with `--config` rules only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

/// What the report says about one call (borrowed from the report).
#[derive(Debug, Clone, Serialize)]
pub struct CallSummary<'a> {
    pub call: u32,
    pub calling: &'a str,
    pub called: &'a str,
    pub meta: &'a [String],
    pub record: Option<&'a CallRecord>,
}

/// The JSON document of `--json`, serialized straight from the report: no intermediate
/// `serde_json::Value`, whose maps cost an allocation per key and about as much again to
/// write out (issue 11: a tenth of the replay's engine thread on large captures).
#[derive(Serialize)]
pub struct JsonReport<'a> {
    summary: &'a Summary,
    messages: &'a [MessageEntry],
    calls: Vec<CallSummary<'a>>,
    capture: &'a serde_json::Value,
}

#[derive(Debug, Default, Clone)]
pub struct ReplayReport {
    pub summary: Summary,
    pub messages: Vec<MessageEntry>,
    pub calls_ended: Vec<CallRecord>,
    /// Meta messages per call, in order, as "→GW1 Setup".
    pub meta_log: BTreeMap<u32, Vec<String>>,
    pub parties: BTreeMap<u32, (String, String)>,
    /// Counters of the capture reader.
    pub capture: serde_json::Value,
}

impl ReplayReport {
    /// Takes the engine's totals.
    pub(super) fn count(&mut self, e: &Stats) {
        self.summary.engine = e.clone();
    }

    pub(super) fn meta(&mut self, to_gw1: bool, m: &meta::Message) {
        let Some(call) = m.call() else { return };
        if let meta::Message::Setup(s) = m {
            self.parties
                .insert(call.0, (s.calling.user.clone(), s.called.user.clone()));
        }
        let arrow = if to_gw1 { "GW2->GW1" } else { "GW1->GW2" };
        let detail = match m {
            meta::Message::Release(r) => format!(" cause {}", r.cause.0),
            meta::Message::Dtmf(d) => format!(" '{}'", d.digit().unwrap_or('?')),
            meta::Message::MediaUpdate(u) => format!(" {:?}", u.kind),
            _ => String::new(),
        };
        self.meta_log
            .entry(call.0)
            .or_default()
            .push([arrow, " ", m.name(), &detail].concat());
    }

    /// The calls seen, in order.
    pub fn calls(&self) -> Vec<CallSummary<'_>> {
        // The first record of each call, found once (not a scan of all records per call).
        let mut records: BTreeMap<u32, &CallRecord> = BTreeMap::new();
        for r in &self.calls_ended {
            records.entry(r.call).or_insert(r);
        }
        self.parties
            .iter()
            .map(|(&call, (calling, called))| CallSummary {
                call,
                calling,
                called,
                meta: self.meta_log.get(&call).map_or(&[], Vec::as_slice),
                record: records.get(&call).copied(),
            })
            .collect()
    }

    /// The report as the JSON document `--json` prints.
    pub fn json(&self) -> JsonReport<'_> {
        JsonReport {
            summary: &self.summary,
            messages: &self.messages,
            calls: self.calls(),
            capture: &self.capture,
        }
    }

    /// [`ReplayReport::json`] as a value (tests and callers that inspect it).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self.json()).unwrap_or_default()
    }

    /// The human summary: per call, per message verdict, and totals.
    pub fn human(&self, name: &str) -> String {
        let mut o = String::new();
        let s = &self.summary.engine;
        let _ = writeln!(
            o,
            "{name}: {} packets, {} SIP messages, {} RTP and {} RTCP packets, {} calls",
            self.summary.packets, s.sip_messages, s.rtp_packets, s.rtcp_packets, s.calls
        );
        if s.h225_messages + s.h245_messages + s.ras_messages > 0 {
            let _ = writeln!(
                o,
                "H.323: {} H.225.0, {} H.245 and {} RAS messages",
                s.h225_messages, s.h245_messages, s.ras_messages
            );
        }
        let mut by_call: BTreeMap<Option<u32>, Vec<&MessageEntry>> = BTreeMap::new();
        for m in &self.messages {
            by_call.entry(m.call).or_default().push(m);
        }
        for c in self.calls() {
            let _ = writeln!(o, "\ncall {}: {} -> {}", c.call, c.calling, c.called);
            if let Some(r) = &c.record {
                let dur = r.answered_at.map(|a| r.ended_at - a);
                let dropped = r.media.dropped_source
                    + r.media.dropped_malformed
                    + r.media.dropped_payload_type
                    + r.media.dropped_size;
                let _ = writeln!(
                    o,
                    "  {} cause {}{}; media from outside {}, to outside {}, dropped {}",
                    if dur.is_some() {
                        "answered,"
                    } else {
                        "not answered,"
                    },
                    r.cause,
                    dur.map(|d| format!(", {d:.1} s")).unwrap_or_default(),
                    r.media.forwarded + r.media.rtcp_forwarded,
                    r.media.relayed,
                    dropped
                );
            }
            let _ = writeln!(o, "  meta: {}", c.meta.join(", "));
            for m in by_call.remove(&Some(c.call)).unwrap_or_default() {
                line(&mut o, m);
            }
        }
        let rest: Vec<_> = by_call.into_values().flatten().collect();
        if !rest.is_empty() {
            let _ = writeln!(o, "\noutside any call:");
            for m in rest {
                line(&mut o, m);
            }
        }
        let _ = writeln!(
            o,
            "\ntotals: {} accepted, {} rejected, {} ignored; {} packets to the inside",
            s.accepted, s.rejected, s.ignored, self.summary.inside_packets
        );
        o
    }
}

/// A socket address as serde writes it, without the formatter (about 1,300 instructions an
/// address).
fn address_text<S: serde::Serializer>(a: &SocketAddr, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&codecs::sip::socket_text(*a))
}

fn line(o: &mut String, m: &MessageEntry) {
    let verdict = match m.verdict {
        Verdict::Accepted => "accepted",
        Verdict::Rejected => "REJECTED",
        Verdict::Ignored => "ignored",
    };
    // Addresses are written directly (the formatter costs about 1,300 instructions each).
    let _ = write!(o, "  #{:<6} {:>9.3}  ", m.frame, m.time);
    o.push_str(&codecs::sip::socket_text(m.src));
    o.push_str(" -> ");
    o.push_str(&codecs::sip::socket_text(m.dst));
    let _ = write!(o, "  {}  {verdict}", m.summary);
    if let Some(r) = m.response {
        let _ = write!(o, " ({r})");
    }
    if let Some(r) = &m.reason {
        o.push_str(": ");
        o.push_str(r);
    }
    o.push('\n');
}
