#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use super::*;
use h323_asn1::h225::{
    AdmissionConfirm, GatekeeperConfirm, InfoRequest, RegistrationConfirm, RequestInProgress,
    TransportAddress,
};

const GK: &str = "127.0.0.1:1719";

fn gk() -> SocketAddr {
    GK.parse().unwrap()
}

fn cfg(discover: bool) -> RasConfig {
    RasConfig {
        gatekeeper: gk(),
        discover,
        gatekeeper_id: None,
        h323_id: "sgw-gw1".to_owned(),
        e164: vec!["4930".to_owned(), "+4940123".to_owned()],
        time_to_live: 300,
        ras_address: "127.0.0.1:40000".parse().unwrap(),
        call_signal_address: "127.0.0.1:1720".parse().unwrap(),
    }
}

fn s(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Every datagram queued, decoded.
fn sent(c: &mut RasClient) -> Vec<(SocketAddr, Bytes, RasMessage)> {
    let mut v = Vec::new();
    while let Some((to, b)) = c.poll_transmit() {
        let m = h323_asn1::decode_ras(&b).expect("we send valid RAS");
        v.push((to, b, m));
    }
    v
}

fn one(c: &mut RasClient) -> RasMessage {
    let mut v = sent(c);
    assert_eq!(v.len(), 1, "{v:?}");
    v.remove(0).2
}

fn events(c: &mut RasClient) -> Vec<RasEvent> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

fn enc(m: RasMessage) -> Vec<u8> {
    h323_asn1::encode_ras(&m).unwrap()
}

fn rcf(seq: u16, ttl: Option<u32>) -> Vec<u8> {
    enc(RasMessage::registrationConfirm(RegistrationConfirm::new(
        RequestSeqNum(seq),
        protocol_identifier(),
        None,
        vec![],
        None,
        Some(GatekeeperIdentifier(bmp("gk1"))),
        EndpointIdentifier(bmp("ep-1")),
        None,
        ttl,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
    )))
}

fn gcf(seq: u16, ras: SocketAddr) -> Vec<u8> {
    enc(RasMessage::gatekeeperConfirm(GatekeeperConfirm::new(
        RequestSeqNum(seq),
        protocol_identifier(),
        None,
        Some(GatekeeperIdentifier(bmp("gk1"))),
        socket_to_transport(ras),
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
    )))
}

fn acf(seq: u16, dest: SocketAddr) -> Vec<u8> {
    enc(RasMessage::admissionConfirm(AdmissionConfirm::new(
        RequestSeqNum(seq),
        BandWidth(1280),
        CallModel::direct(()),
        socket_to_transport(dest),
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
    )))
}

/// The reject codecs::ras builds for a request, with `set` applied.
fn reject(m: &RasMessage, set: impl FnOnce(&mut RasMessage)) -> Vec<u8> {
    let mut r = codecs::ras::gatekeeper_reject(m).unwrap();
    set(&mut r);
    enc(r)
}

fn seq_of(m: &RasMessage) -> u16 {
    use RasMessage as R;
    match m {
        R::gatekeeperRequest(r) => r.request_seq_num.0,
        R::registrationRequest(r) => r.request_seq_num.0,
        R::unregistrationRequest(r) => r.request_seq_num.0,
        R::admissionRequest(r) => r.request_seq_num.0,
        R::disengageRequest(r) => r.request_seq_num.0,
        R::unregistrationConfirm(r) => r.request_seq_num.0,
        R::infoRequestResponse(r) => r.request_seq_num.0,
        R::unknownMessageResponse(r) => r.request_seq_num.0,
        R::disengageConfirm(r) => r.request_seq_num.0,
        other => panic!("no seq in {other:?}"),
    }
}

fn rrq(m: &RasMessage) -> &RegistrationRequest {
    match m {
        RasMessage::registrationRequest(r) => r,
        other => panic!("not an RRQ: {other:?}"),
    }
}

/// A client registered (direct RRQ) with `ttl`.
fn registered(ttl: Option<u32>) -> RasClient {
    let mut c = RasClient::new(cfg(false), s(0));
    c.handle_timeout(s(0));
    let m = one(&mut c);
    c.handle(s(0), gk(), &rcf(seq_of(&m), ttl));
    assert!(c.is_registered());
    events(&mut c);
    c
}

fn call(n: u32) -> AdmissionRequest {
    AdmissionRequest {
        call: CallRef(n),
        answer_call: true,
        call_ref: 77,
        call_identifier: [n as u8; 16],
        conference_id: [0xC0; 16],
        calling: Some("+4930555".to_owned()),
        called: Some("1000".to_owned()),
        dest: None,
    }
}

#[test]
fn direct_registration_then_lightweight_keepalives_before_ttl() {
    let mut c = RasClient::new(cfg(false), s(0));
    assert_eq!(c.poll_timeout(), Some(s(0)));
    c.handle_timeout(s(0));
    let (to, _, m) = sent(&mut c).remove(0);
    assert_eq!(to, gk());
    let r = rrq(&m);
    assert_eq!(r.keep_alive, Some(false));
    assert_eq!(r.time_to_live, Some(300));
    assert!(r.endpoint_identifier.is_none());
    assert!(!r.discovery_complete);
    assert!(r.terminal_type.gateway.is_some());
    let aliases = r.terminal_alias.as_ref().unwrap();
    assert_eq!(aliases.len(), 3, "h323-ID and two dialedDigits");
    assert_eq!(
        transport_to_socket(&r.call_signal_address[0]),
        Some("127.0.0.1:1720".parse().unwrap())
    );
    assert_eq!(c.state(), RasState::Registering);
    // The gatekeeper grants 6 s: keep-alive at 4 s (two thirds, >= 1 s before the end).
    c.handle(s(1), gk(), &rcf(r.request_seq_num.0, Some(6)));
    assert_eq!(
        events(&mut c),
        vec![RasEvent::Registered {
            endpoint_id: "ep-1".to_owned()
        }]
    );
    assert_eq!(c.status().time_to_live, Some(6));
    for round in 0..3u64 {
        let due = s(1 + 4 * (round + 1));
        assert_eq!(c.poll_timeout(), Some(due));
        c.handle_timeout(due);
        let m = one(&mut c);
        let r = rrq(&m);
        assert_eq!(r.keep_alive, Some(true));
        assert_eq!(
            r.endpoint_identifier.as_ref().map(h323_asn1::bmp_to_string),
            Some("ep-1".to_owned())
        );
        assert_eq!(
            r.gatekeeper_identifier
                .as_ref()
                .map(|g| h323_asn1::bmp_to_string(&g.0)),
            Some("gk1".to_owned())
        );
        assert!(r.terminal_alias.is_none());
        c.handle(due, gk(), &rcf(r.request_seq_num.0, Some(6)));
        assert!(events(&mut c).is_empty(), "keep-alives raise no event");
    }
    let st = c.status();
    assert_eq!((st.registrations, st.keepalives), (1, 3));
    assert_eq!(st.state, RasState::Registered);
}

#[test]
fn refresh_times() {
    assert_eq!(refresh_after(2), s(1));
    assert_eq!(refresh_after(300), s(200));
    assert_eq!(refresh_after(1), Duration::from_millis(500));
    assert_eq!(refresh_after(3), s(2));
}

#[test]
fn no_ttl_means_no_keepalive() {
    let c = registered(None);
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn unanswered_rrq_is_resent_with_its_seq_then_backs_off() {
    let mut c = RasClient::new(cfg(false), s(0));
    c.handle_timeout(s(0));
    let (_, first, m) = sent(&mut c).remove(0);
    let seq = seq_of(&m);
    for (i, t) in [3u64, 6].into_iter().enumerate() {
        assert_eq!(c.poll_timeout(), Some(s(t)));
        c.handle_timeout(s(t));
        let (_, again, m) = sent(&mut c).remove(0);
        assert_eq!(again, first, "same bytes");
        assert_eq!(seq_of(&m), seq);
        assert_eq!(c.status().retransmissions, i as u64 + 1);
    }
    c.handle_timeout(s(9));
    assert!(sent(&mut c).is_empty());
    let st = c.status();
    assert_eq!(st.state, RasState::Failed);
    assert_eq!(st.timeouts, 1);
    assert_eq!(st.last_failure.as_deref(), Some("no answer to RRQ"));
    // 5 s backoff, then 10 s.
    assert_eq!(c.poll_timeout(), Some(s(14)));
    c.handle_timeout(s(14));
    let m = one(&mut c);
    assert_ne!(seq_of(&m), seq);
    for t in [17, 20, 23] {
        c.handle_timeout(s(t));
    }
    sent(&mut c);
    assert_eq!(c.poll_timeout(), Some(s(33)));
    // An answer to the old request is stale.
    c.handle(s(24), gk(), &rcf(seq, Some(60)));
    assert!(!c.is_registered());
    assert_eq!(c.status().unmatched, 1);
}

#[test]
fn rrj_backs_off_and_shows_the_reason() {
    let mut c = RasClient::new(cfg(false), s(0));
    c.handle_timeout(s(0));
    let m = one(&mut c);
    c.handle(
        s(0),
        gk(),
        &reject(&m, |r| {
            if let RasMessage::registrationReject(r) = r {
                r.reject_reason = RegistrationRejectReason::securityDenial(());
            }
        }),
    );
    let st = c.status();
    assert_eq!(st.state, RasState::Failed);
    assert_eq!(st.rejects, 1);
    assert_eq!(st.last_failure.as_deref(), Some("RRJ securityDenial"));
    assert_eq!(c.poll_timeout(), Some(s(5)));
    assert!(sent(&mut c).is_empty());
}

#[test]
fn full_registration_required_on_keepalive_sends_full_rrq_at_once() {
    let mut c = registered(Some(3));
    c.handle_timeout(s(2));
    let m = one(&mut c);
    assert_eq!(rrq(&m).keep_alive, Some(true));
    c.handle(
        s(2),
        gk(),
        &reject(&m, |r| {
            if let RasMessage::registrationReject(r) = r {
                r.reject_reason = RegistrationRejectReason::fullRegistrationRequired(());
            }
        }),
    );
    let m = one(&mut c);
    let r = rrq(&m);
    assert_eq!(r.keep_alive, Some(false));
    assert!(r.terminal_alias.is_some());
    c.handle(s(2), gk(), &rcf(r.request_seq_num.0, Some(3)));
    assert!(c.is_registered());
}

#[test]
fn discovery_first_then_rrq_to_the_gcf_address() {
    let mut c = RasClient::new(cfg(true), s(0));
    c.handle_timeout(s(0));
    assert_eq!(c.state(), RasState::Discovering);
    let m = one(&mut c);
    let RasMessage::gatekeeperRequest(g) = &m else {
        panic!("{m:?}")
    };
    assert_eq!(
        transport_to_socket(&g.ras_address),
        Some("127.0.0.1:40000".parse().unwrap())
    );
    let other: SocketAddr = "127.0.0.2:1719".parse().unwrap();
    c.handle(s(0), gk(), &gcf(g.request_seq_num.0, other));
    let (to, _, m) = sent(&mut c).remove(0);
    assert_eq!(to, other);
    let r = rrq(&m);
    assert!(r.discovery_complete);
    assert_eq!(
        r.gatekeeper_identifier
            .as_ref()
            .map(|g| h323_asn1::bmp_to_string(&g.0)),
        Some("gk1".to_owned())
    );
    c.handle(s(0), other, &rcf(r.request_seq_num.0, Some(30)));
    assert!(c.is_registered());
}

#[test]
fn grj_and_discovery_timeout_retry_with_backoff() {
    let mut c = RasClient::new(cfg(true), s(0));
    c.handle_timeout(s(0));
    let m = one(&mut c);
    c.handle(s(0), gk(), &reject(&m, |_| {}));
    assert_eq!(
        c.status().last_failure.as_deref(),
        Some("GRJ resourceUnavailable")
    );
    c.handle_timeout(s(5));
    let m = one(&mut c);
    assert!(matches!(m, RasMessage::gatekeeperRequest(_)));
    for t in [8, 11, 14] {
        c.handle_timeout(s(t));
    }
    assert_eq!(c.status().timeouts, 1);
    assert_eq!(c.poll_timeout(), Some(s(24)));
}

#[test]
fn datagrams_from_elsewhere_and_garbage_are_dropped() {
    let mut c = RasClient::new(cfg(false), s(0));
    c.handle_timeout(s(0));
    let m = one(&mut c);
    c.handle(
        s(0),
        "127.0.0.9:1719".parse().unwrap(),
        &rcf(seq_of(&m), None),
    );
    assert!(!c.is_registered());
    c.handle(s(0), gk(), &[0xff; 9]);
    c.handle(s(0), gk(), &[]);
    let st = c.status();
    assert_eq!((st.foreign_dropped, st.malformed), (1, 2));
    assert!(sent(&mut c).is_empty());
}

#[test]
fn urq_from_the_gatekeeper_is_confirmed_and_gw1_registers_again() {
    let mut c = registered(Some(60));
    let urq = RasMessage::unregistrationRequest(UnregistrationRequest::new(
        RequestSeqNum(900),
        vec![],
        None,
        None,
        Some(EndpointIdentifier(bmp("ep-1"))),
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
    ));
    c.handle(s(5), gk(), &enc(urq));
    let v = sent(&mut c);
    assert_eq!(v.len(), 2);
    assert!(matches!(v[0].2, RasMessage::unregistrationConfirm(_)));
    assert_eq!(seq_of(&v[0].2), 900);
    assert_eq!(rrq(&v[1].2).keep_alive, Some(false));
    assert!(matches!(
        events(&mut c).as_slice(),
        [RasEvent::RegistrationLost { .. }]
    ));
}

#[test]
fn irq_gets_irr_and_other_requests_xrs() {
    let mut c = registered(Some(60));
    let irq = RasMessage::infoRequest(InfoRequest::new(
        RequestSeqNum(901),
        CallReferenceValue(0),
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
    ));
    c.handle(s(1), gk(), &enc(irq));
    let m = one(&mut c);
    let RasMessage::infoRequestResponse(irr) = &m else {
        panic!("{m:?}")
    };
    assert_eq!(irr.request_seq_num.0, 901);
    assert_eq!(h323_asn1::bmp_to_string(&irr.endpoint_identifier.0), "ep-1");
    // A GRQ sent to an endpoint is a request it does not serve.
    let mut other = RasClient::new(cfg(true), s(0));
    other.handle_timeout(s(0));
    let grq = sent(&mut other).remove(0).1;
    c.handle(s(1), gk(), &grq);
    let m = one(&mut c);
    assert!(matches!(m, RasMessage::unknownMessageResponse(_)));
    assert_eq!(seq_of(&m), 1);
    assert_eq!(c.status().gatekeeper_requests, 2);
}

#[test]
fn rip_extends_the_wait() {
    let mut c = RasClient::new(cfg(false), s(0));
    c.handle_timeout(s(0));
    let m = one(&mut c);
    let rip = RasMessage::requestInProgress(RequestInProgress::new(
        RequestSeqNum(seq_of(&m)),
        None,
        None,
        None,
        None,
        10_000,
    ));
    c.handle(s(1), gk(), &enc(rip));
    assert_eq!(c.poll_timeout(), Some(s(11)));
}

#[test]
fn admission_needs_a_registration() {
    let mut c = RasClient::new(cfg(false), s(0));
    c.admit(s(0), call(1));
    assert_eq!(
        events(&mut c),
        vec![RasEvent::AdmissionRejected {
            call: CallRef(1),
            cause: Cause::TEMPORARY_FAILURE,
            reason: "not registered to the gatekeeper".to_owned()
        }]
    );
}

#[test]
fn arq_acf_then_drq_dcf() {
    let mut c = registered(Some(60));
    c.admit(s(1), call(3));
    let m = one(&mut c);
    let RasMessage::admissionRequest(a) = &m else {
        panic!("{m:?}")
    };
    assert!(a.answer_call);
    assert_eq!(a.call_reference_value.0, 77);
    assert_eq!(h323_asn1::bmp_to_string(&a.endpoint_identifier.0), "ep-1");
    assert_eq!(
        a.call_identifier.as_ref().map(|c| guid_bytes(&c.guid)),
        Some([3; 16])
    );
    // Answering: GW1 is the destination.
    assert_eq!(
        a.dest_call_signal_address
            .as_ref()
            .and_then(transport_to_socket),
        Some("127.0.0.1:1720".parse().unwrap())
    );
    assert!(matches!(
        a.destination_info.as_deref(),
        Some([AliasAddress::dialedDigits(_)])
    ));
    let dest: SocketAddr = "127.0.0.1:1721".parse().unwrap();
    c.handle(s(1), gk(), &acf(a.request_seq_num.0, dest));
    assert_eq!(
        events(&mut c),
        vec![RasEvent::Admitted {
            call: CallRef(3),
            dest: Some(dest)
        }]
    );
    assert_eq!(c.status().calls, 1);
    // The gatekeeper polls the call.
    let irq = RasMessage::infoRequest(InfoRequest::new(
        RequestSeqNum(903),
        CallReferenceValue(0),
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
    ));
    c.handle(s(1), gk(), &enc(irq));
    let m = one(&mut c);
    let RasMessage::infoRequestResponse(irr) = &m else {
        panic!("{m:?}")
    };
    let calls = &irr.per_call_info.as_ref().unwrap().0;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].call_reference_value.0, 77);
    assert_eq!(calls[0].originator, Some(false));
    assert_eq!(
        calls[0]
            .call_identifier
            .as_ref()
            .map(|c| guid_bytes(&c.guid)),
        Some([3; 16])
    );
    c.disengage(s(2), CallRef(3), Cause::NORMAL_CLEARING);
    let m = one(&mut c);
    let RasMessage::disengageRequest(d) = &m else {
        panic!("{m:?}")
    };
    assert_eq!(d.disengage_reason, DisengageReason::normalDrop(()));
    assert_eq!(d.answered_call, Some(true));
    let dcf = RasMessage::disengageConfirm(DisengageConfirm::new(
        d.request_seq_num.clone(),
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
    ));
    c.handle(s(2), gk(), &enc(dcf));
    let st = c.status();
    assert_eq!(
        (st.admitted, st.disengages, st.calls, st.unmatched),
        (1, 1, 0, 0)
    );
    // A second disengage of the same call sends nothing.
    c.disengage(s(3), CallRef(3), Cause::NORMAL_CLEARING);
    assert!(sent(&mut c).is_empty());
}

#[test]
fn arj_maps_to_a_cause_and_arq_timeout_rejects() {
    let mut c = registered(None);
    c.admit(s(1), call(5));
    let m = one(&mut c);
    c.handle(
        s(1),
        gk(),
        &reject(&m, |r| {
            if let RasMessage::admissionReject(r) = r {
                r.reject_reason = AdmissionRejectReason::calledPartyNotRegistered(());
            }
        }),
    );
    assert_eq!(
        events(&mut c),
        vec![RasEvent::AdmissionRejected {
            call: CallRef(5),
            cause: Cause(20),
            reason: "ARJ calledPartyNotRegistered".to_owned()
        }]
    );
    c.admit(s(2), call(6));
    one(&mut c);
    for t in [5, 8, 11] {
        c.handle_timeout(s(t));
    }
    assert_eq!(
        events(&mut c),
        vec![RasEvent::AdmissionRejected {
            call: CallRef(6),
            cause: Cause::RECOVERY_ON_TIMER_EXPIRY,
            reason: "no answer to ARQ".to_owned()
        }]
    );
    assert!(c.is_registered(), "an ARQ timeout keeps the registration");
    let st = c.status();
    assert_eq!((st.admissions, st.admission_rejects, st.calls), (2, 2, 0));
}

#[test]
fn drq_from_the_gatekeeper_drops_an_admitted_call() {
    let mut c = registered(None);
    c.admit(s(1), call(7));
    let m = one(&mut c);
    c.handle(s(1), gk(), &acf(seq_of(&m), "127.0.0.1:1".parse().unwrap()));
    events(&mut c);
    let drq = RasMessage::disengageRequest(DisengageRequest::new(
        RequestSeqNum(902),
        EndpointIdentifier(bmp("ep-1")),
        ConferenceIdentifier(guid([0xC0; 16])),
        CallReferenceValue(77),
        DisengageReason::forcedDrop(()),
        None,
        Some(CallIdentifier::new(guid([7; 16]))),
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
    ));
    c.handle(s(2), gk(), &enc(drq.clone()));
    assert!(matches!(one(&mut c), RasMessage::disengageConfirm(_)));
    assert_eq!(
        events(&mut c),
        vec![RasEvent::DisengageRequested { call: CallRef(7) }]
    );
    c.handle(s(2), gk(), &enc(drq));
    assert!(matches!(one(&mut c), RasMessage::disengageReject(_)));
}

#[test]
fn unregister_sends_urq_and_ends_with_ucf_or_timeout() {
    let mut c = registered(Some(60));
    assert!(c.unregister(s(1)));
    let m = one(&mut c);
    let RasMessage::unregistrationRequest(u) = &m else {
        panic!("{m:?}")
    };
    assert_eq!(
        u.endpoint_identifier
            .as_ref()
            .map(|e| h323_asn1::bmp_to_string(&e.0)),
        Some("ep-1".to_owned())
    );
    let ucf = RasMessage::unregistrationConfirm(UnregistrationConfirm::new(
        u.request_seq_num.clone(),
        None,
        None,
        None,
        None,
        None,
        None,
    ));
    c.handle(s(1), gk(), &enc(ucf));
    assert_eq!(events(&mut c), vec![RasEvent::Unregistered]);
    assert!(c.is_unregistered());
    assert_eq!(c.poll_timeout(), None);
    c.handle_timeout(s(100));
    assert!(sent(&mut c).is_empty());

    let mut c = registered(Some(60));
    assert!(c.unregister(s(1)));
    one(&mut c);
    for t in [4, 7, 10] {
        c.handle_timeout(s(t));
    }
    assert_eq!(sent(&mut c).len(), 2, "two retransmissions");
    assert_eq!(events(&mut c), vec![RasEvent::Unregistered]);

    // Not registered: done at once, nothing sent.
    let mut c = RasClient::new(cfg(false), s(0));
    assert!(!c.unregister(s(0)));
    assert!(c.is_unregistered());
    c.handle_timeout(s(0));
    assert!(sent(&mut c).is_empty());
}

#[test]
fn every_message_sent_and_received_is_reported() {
    let mut c = registered(Some(60));
    let reports: Vec<(Report, bool)> = std::iter::from_fn(|| c.poll_report()).collect();
    assert_eq!(reports.len(), 2);
    assert!(reports[0].1 && !reports[1].1);
    let reports: Vec<Report> = reports.into_iter().map(|(r, _)| r).collect();
    assert!(reports[0].summary.to_string().starts_with("sent RRQ"));
    assert!(reports[1].summary.to_string().starts_with("RCF"));
    assert!(reports
        .iter()
        .all(|r| r.protocol == Protocol::Ras && r.side == Side::Inside));
}

#[test]
fn arbitrary_bytes_never_panic_and_state_stays_bounded() {
    let mut c = registered(Some(60));
    let mut x: u32 = 0x1234_5678;
    let mut base = vec![];
    c.admit(s(1), call(9));
    base.push(sent(&mut c).remove(0).1.to_vec());
    base.push(rcf(1, Some(5)));
    base.push(acf(2, "127.0.0.1:5".parse().unwrap()));
    for i in 0..20_000u32 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let mut b = base[(x as usize) % base.len()].clone();
        let n = b.len();
        b[(x as usize >> 8) % n] ^= (x >> 24) as u8 | 1;
        c.handle(s(2), gk(), &b);
        if i % 1000 == 0 {
            c.handle_timeout(s(2 + u64::from(i / 1000)));
        }
        while c.poll_transmit().is_some() {}
        while c.poll_report().is_some() {}
        while c.poll_event().is_some() {}
    }
    assert!(c.pending.len() <= MAX_PENDING);
    let _ = TransportAddress::ipAddress;
}

#[test]
fn the_engine_of_gw1_runs_the_client() {
    use crate::engine::{Engine, EngineConfig, Event, Flow, Role, Transport};
    let config = cfg(false);
    let local = config.ras_address;
    let mut e = Engine::new(EngineConfig {
        role: Role::Gw1,
        gatekeeper: Some(config.clone()),
        ..EngineConfig::default()
    });
    assert_eq!(e.poll_timeout(), Some(s(0)));
    e.handle_timeout(s(0));
    let t = e.poll_transmit().unwrap();
    assert_eq!(
        (t.side, t.protocol, t.flow.local, t.flow.remote),
        (Side::Inside, Protocol::Ras, local, gk())
    );
    let m = h323_asn1::decode_ras(&t.payload).unwrap();
    let flow = Flow {
        transport: Transport::Udp,
        local,
        remote: gk(),
    };
    e.handle_inside_datagram(s(1), flow, Bytes::from(rcf(seq_of(&m), Some(60))));
    assert_eq!(e.stats().ras.unwrap().state, RasState::Registered);
    assert!(matches!(
        e.ras_events().as_slice(),
        [RasEvent::Registered { .. }]
    ));
    let reports: Vec<_> = std::iter::from_fn(|| e.poll_event())
        .filter_map(|ev| match ev {
            Event::Report(r) if r.protocol == Protocol::Ras => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(reports.len(), 2, "RRQ sent, RCF received");
    assert!(e.ras_unregister(s(2)));
    assert!(!e.ras_unregistered());
    // GW2 never runs one.
    let e = Engine::new(EngineConfig {
        role: Role::Gw2,
        gatekeeper: Some(config),
        ..EngineConfig::default()
    });
    assert!(e.stats().ras.is_none());
}
