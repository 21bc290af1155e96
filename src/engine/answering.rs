//! Replay's answering party, in one place. A capture holds both parties of a call; the gateway
//! stands between them. The party that sent the first INVITE of a dialog is the outside caller
//! (GW2's outside leg takes it as it is). The other party plays the inside PBX: its messages are
//! rewritten into GW1's inside dialog (Call-ID, tags, branch, CSeq, Via, Contact, SDP address)
//! and handed to the inside leg as if they came from the inside next hop; its media is handed to
//! the inside side of the stream. The caller's messages that answer or name the answering party
//! (its To tag, the answering party's branches) are rewritten into GW2's outside dialog.
//!
//! So the legs never know they are in a replay, and what GW1 writes toward the inside is
//! exactly what the inside would have received.

use super::sip_leg::SipLeg;
use super::Flow;
use codecs::meta::CallRef;
use codecs::sip::{self, HeaderName, Message, MessageBuilder, Method, StartLine};
use std::net::{IpAddr, SocketAddr};

/// Where a message from the capture goes.
pub enum Route {
    /// To GW2's outside leg, as the caller sent it or with its dialog identifiers rewritten.
    Outside(Message),
    /// To GW1's inside leg, on `flow` (from the inside next hop), with the media addresses
    /// the answering party's SDP named (as it wrote them).
    Inside(Flow, Message, Vec<Option<SocketAddr>>),
}

/// Routes one SIP message of a replayed capture.
pub fn route(outside: &SipLeg, inside: &SipLeg, flow: &Flow, msg: Message) -> Route {
    let Some(call) = msg
        .call_id()
        .ok()
        .and_then(|id| outside.call_by_call_id(id))
    else {
        return Route::Outside(msg);
    };
    let Some(od) = outside.dialog(call) else {
        return Route::Outside(msg);
    };
    // Everyone in the call but the caller stands for the inside: the party the caller
    // addressed, and behind it any further hop the capture holds (a proxy's callee).
    if od.flow.remote != flow.remote {
        let remotes = sdp_remotes(&msg);
        return match to_inside(inside, call, msg) {
            Ok((flow, m)) => Route::Inside(flow, m, remotes),
            Err(m) => Route::Outside(*m),
        };
    }
    // The caller, naming the answering party: its in-dialog requests carry the answering
    // party's tag, its responses answer the answering party's requests.
    let local_tag = od.local_tag.clone();
    match msg.start() {
        StartLine::Request(_) => {
            let tag = msg.to().ok().and_then(|t| t.tag().map(str::to_owned));
            match tag {
                Some(t) if t != local_tag => {
                    let m = rewrite(&msg, |name, value| {
                        is(name, &HeaderName::TO).then(|| set_tag(value, &local_tag))
                    });
                    Route::Outside(m.unwrap_or(msg))
                }
                _ => Route::Outside(msg),
            }
        }
        StartLine::Response(_) => {
            let branch = top_branch(&msg);
            if branch.as_deref().is_some_and(|b| outside.knows_branch(b)) {
                return Route::Outside(msg);
            }
            let Some(method) = msg.cseq().ok().map(|c| c.method) else {
                return Route::Outside(msg);
            };
            let Some(ours) = sent_branch(od, &method) else {
                return Route::Outside(msg);
            };
            let m = rewrite(&msg, |name, value| {
                is(name, &HeaderName::VIA).then(|| set_branch(value, &ours))
            });
            Route::Outside(m.unwrap_or(msg))
        }
    }
}

fn sent_branch(d: &super::sip_leg::Dialog, method: &Method) -> Option<String> {
    d.sent
        .iter()
        .find(|(m, _)| m == method)
        .map(|(_, b)| b.clone())
}

/// The answering party's message in GW1's inside dialog, from the inside next hop.
fn to_inside(
    inside: &SipLeg,
    call: CallRef,
    msg: Message,
) -> Result<(Flow, Message), Box<Message>> {
    let Some(d) = inside.dialog(call) else {
        return Err(Box::new(msg));
    };
    let next_hop = d.flow.remote;
    let flow = d.flow;
    let request = msg.is_request();
    let branch = if request {
        top_branch(&msg).unwrap_or_default()
    } else {
        let method = msg.cseq().ok().map(|c| c.method);
        match method {
            Some(Method::Invite) if d.state == super::sip_leg::State::Early => {
                d.invite_branch.clone().unwrap_or_default()
            }
            Some(m) => sent_branch(d, &m).unwrap_or_default(),
            None => String::new(),
        }
    };
    if branch.is_empty() {
        // Answers a request GW1 never sent: nothing inside to match.
        return Err(Box::new(msg));
    }
    let cseq = if request {
        None
    } else {
        msg.cseq().ok().map(|c| {
            let n = if c.method == Method::Invite && d.state == super::sip_leg::State::Early {
                1
            } else {
                d.local_cseq()
            };
            format!("{n} {}", c.method)
        })
    };
    let via_host = if request { next_hop } else { flow.local };
    // Concatenated, not formatted: the answering party's every message is rewritten here.
    let via_host = super::host_port(via_host);
    let transport = flow.transport.via_token();
    let via = ["SIP/2.0/", transport, " ", &via_host, ";branch=", &branch].concat();
    let contact = ["<sip:pbx@", &super::host_port(next_hop), ">"].concat();
    let call_id = d.call_id.clone();
    // The parties as the inside dialog names them: GW1 (local) and the next hop's user.
    let gw1 = d.local_party();
    let pbx = |tag: Option<&str>| d.remote_party(tag);
    let mut via_done = false;
    let rewritten = rewrite_with_body(
        &msg,
        |name, value| {
            if is(name, &HeaderName::VIA) {
                if std::mem::replace(&mut via_done, true) {
                    return Some(String::new());
                }
                return Some(via.clone());
            }
            if is(name, &HeaderName::CALL_ID) {
                return Some(call_id.clone());
            }
            if is(name, &HeaderName::CONTACT) {
                return Some(contact.clone());
            }
            if is(name, &HeaderName::RECORD_ROUTE) {
                return Some(String::new());
            }
            if is(name, &HeaderName::CSEQ) {
                return cseq.clone();
            }
            // Requests come from the inside party to GW1; responses answer GW1's requests,
            // with the inside party's own tag in To.
            let tag_of = |v: &str| {
                sip::NameAddr::parse(v, "To")
                    .ok()
                    .and_then(|n| n.tag().map(str::to_owned))
            };
            match (request, name) {
                (true, n) if is(n, &HeaderName::TO) => Some(gw1.clone()),
                (true, n) if is(n, &HeaderName::FROM) => Some(pbx(d.remote_tag.as_deref())),
                (false, n) if is(n, &HeaderName::FROM) => Some(gw1.clone()),
                (false, n) if is(n, &HeaderName::TO) => Some(pbx(tag_of(value).as_deref())),
                _ => None,
            }
        },
        |body| sdp_at(body, next_hop.ip()),
    );
    match rewritten {
        Some(m) => Ok((flow, m)),
        None => Err(Box::new(msg)),
    }
}

/// Whether a header of a parsed message is the `known` one. The parser resolved compact forms
/// and any case into the known names, so comparing their canonical spellings (as the header
/// lookups of [`sip::Headers`] do) answers what `==` on names does without trying every alias
/// of both sides, which was a tenth of this module's work.
fn is(name: &HeaderName, known: &HeaderName) -> bool {
    name.as_print_str()
        .eq_ignore_ascii_case(known.as_print_str())
}

fn top_branch(msg: &Message) -> Option<String> {
    msg.vias()
        .ok()?
        .first()
        .and_then(|v| v.branch().map(str::to_owned))
}

/// Rebuilds a message with some header values replaced (`Some("")` drops the header).
fn rewrite(msg: &Message, f: impl FnMut(&HeaderName, &str) -> Option<String>) -> Option<Message> {
    rewrite_with_body(msg, f, |b| b.to_vec())
}

fn rewrite_with_body(
    msg: &Message,
    mut f: impl FnMut(&HeaderName, &str) -> Option<String>,
    body: impl FnOnce(&[u8]) -> Vec<u8>,
) -> Option<Message> {
    let mut b = match msg.start() {
        StartLine::Request(r) => MessageBuilder::request(&r.method, &r.uri),
        StartLine::Response(s) => MessageBuilder::response_with_reason(s.code, &s.reason),
    };
    let mut content_type = None;
    for (name, value) in msg.headers().iter() {
        if is(name, &HeaderName::CONTENT_LENGTH) {
            continue;
        }
        if is(name, &HeaderName::CONTENT_TYPE) {
            content_type = Some(value.to_owned());
            continue;
        }
        match f(name, value) {
            Some(v) if v.is_empty() => {}
            Some(v) => b = b.header(name.as_print_str(), v),
            None => b = b.header(name.as_print_str(), value),
        }
    }
    let raw_body = msg.body();
    if let Some(ct) = content_type {
        b = b.body(&ct, body(&raw_body));
    }
    sip::parse_datagram(b.build()).ok().map(|(m, _)| m)
}

/// The SDP with every connection address replaced by `ip` (the inside next hop's), so the
/// inside leg sends media inside.
fn sdp_at(body: &[u8], ip: IpAddr) -> Vec<u8> {
    let Ok(text) = std::str::from_utf8(body) else {
        return body.to_vec();
    };
    let family = match ip {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    };
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        if line.starts_with("c=") {
            let eol = if line.ends_with("\r\n") { "\r\n" } else { "\n" };
            for part in ["c=IN ", family, " ", &sip::ip_text(ip), eol] {
                out.push_str(part);
            }
        } else {
            out.push_str(line);
        }
    }
    out.into_bytes()
}

fn set_tag(value: &str, tag: &str) -> String {
    super::sip_leg::replace_param(value, ";tag=", Some(tag))
}

fn set_branch(value: &str, branch: &str) -> String {
    super::sip_leg::replace_param(value, ";branch=", Some(branch))
}

/// The answering party's media address for the inside: its port at the next hop's IP (RTCP on
/// the RTP port, so the checks compare like with like).
pub fn inside_source(next_hop: SocketAddr, src: SocketAddr, rtcp: bool) -> SocketAddr {
    let port = if rtcp {
        src.port().wrapping_sub(1)
    } else {
        src.port()
    };
    SocketAddr::new(next_hop.ip(), port)
}

/// The answering party's SDP addresses, per m-line, as it wrote them.
pub fn sdp_remotes(msg: &Message) -> Vec<Option<SocketAddr>> {
    let Some(body) = super::policy::sdp_body(msg) else {
        return Vec::new();
    };
    translators::sip::offer_from_sdp(&body, &mut || codecs::meta::StreamId(0))
        .map(|o| o.remotes)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_branches_are_replaced_in_place() {
        assert_eq!(set_tag("<sip:a@b>;tag=x;p=1", "y"), "<sip:a@b>;tag=y;p=1");
        assert_eq!(set_tag("<sip:a@b>", "y"), "<sip:a@b>;tag=y");
        assert_eq!(
            set_branch("SIP/2.0/UDP h;branch=z9hG4bKa;rport", "z9hG4bKb"),
            "SIP/2.0/UDP h;branch=z9hG4bKb;rport"
        );
    }

    #[test]
    fn sdp_connection_lines_move_to_the_next_hop() {
        let sdp = b"v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\nc=IN IP4 192.0.2.2\r\n";
        let out = sdp_at(sdp, IpAddr::from([10, 0, 0, 10]));
        assert_eq!(
            String::from_utf8(out).unwrap_or_default(),
            "v=0\r\nc=IN IP4 10.0.0.10\r\nm=audio 4000 RTP/AVP 0\r\nc=IN IP4 10.0.0.10\r\n"
        );
    }
}
