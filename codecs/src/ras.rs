//! H.225.0 RAS (clause 7.7 onwards): names of RasMessages for summaries and the rejects a
//! gateway without a gatekeeper answers with.
//!
//! Types and aligned PER come from `h323-asn1`; nothing here does I/O or panics on input.

use crate::h225::protocol_identifier;
use h323_asn1::h225::{
    AdmissionReject, AdmissionRejectReason, BandRejectReason, BandWidth, BandwidthReject,
    DisengageReject, DisengageRejectReason, GatekeeperReject, GatekeeperRejectReason,
    LocationReject, LocationRejectReason, RasMessage, RegistrationReject, RegistrationRejectReason,
    RequestSeqNum, UnregRejectReason, UnregistrationReject,
};

/// The H.225.0 name of a RAS message ("RegistrationRequest") and its usual abbreviation
/// ("RRQ").
pub fn message_name(m: &RasMessage) -> (&'static str, &'static str) {
    use RasMessage as R;
    match m {
        R::gatekeeperRequest(_) => ("GatekeeperRequest", "GRQ"),
        R::gatekeeperConfirm(_) => ("GatekeeperConfirm", "GCF"),
        R::gatekeeperReject(_) => ("GatekeeperReject", "GRJ"),
        R::registrationRequest(_) => ("RegistrationRequest", "RRQ"),
        R::registrationConfirm(_) => ("RegistrationConfirm", "RCF"),
        R::registrationReject(_) => ("RegistrationReject", "RRJ"),
        R::unregistrationRequest(_) => ("UnregistrationRequest", "URQ"),
        R::unregistrationConfirm(_) => ("UnregistrationConfirm", "UCF"),
        R::unregistrationReject(_) => ("UnregistrationReject", "URJ"),
        R::admissionRequest(_) => ("AdmissionRequest", "ARQ"),
        R::admissionConfirm(_) => ("AdmissionConfirm", "ACF"),
        R::admissionReject(_) => ("AdmissionReject", "ARJ"),
        R::bandwidthRequest(_) => ("BandwidthRequest", "BRQ"),
        R::bandwidthConfirm(_) => ("BandwidthConfirm", "BCF"),
        R::bandwidthReject(_) => ("BandwidthReject", "BRJ"),
        R::disengageRequest(_) => ("DisengageRequest", "DRQ"),
        R::disengageConfirm(_) => ("DisengageConfirm", "DCF"),
        R::disengageReject(_) => ("DisengageReject", "DRJ"),
        R::locationRequest(_) => ("LocationRequest", "LRQ"),
        R::locationConfirm(_) => ("LocationConfirm", "LCF"),
        R::locationReject(_) => ("LocationReject", "LRJ"),
        R::infoRequest(_) => ("InfoRequest", "IRQ"),
        R::infoRequestResponse(_) => ("InfoRequestResponse", "IRR"),
        R::nonStandardMessage(_) => ("NonStandardMessage", "NSM"),
        R::unknownMessageResponse(_) => ("UnknownMessageResponse", "XRS"),
        R::requestInProgress(_) => ("RequestInProgress", "RIP"),
        R::resourcesAvailableIndicate(_) => ("ResourcesAvailableIndicate", "RAI"),
        R::resourcesAvailableConfirm(_) => ("ResourcesAvailableConfirm", "RAC"),
        R::infoRequestAck(_) => ("InfoRequestAck", "IACK"),
        R::infoRequestNak(_) => ("InfoRequestNak", "INAK"),
        R::serviceControlIndication(_) => ("ServiceControlIndication", "SCI"),
        R::serviceControlResponse(_) => ("ServiceControlResponse", "SCR"),
        R::admissionConfirmSequence(_) => ("AdmissionConfirmSequence", "ACF*"),
        _ => ("UnknownRasMessage", "?"),
    }
}

/// Whether the message is a request an endpoint sends to its gatekeeper (GRQ, RRQ, URQ, ARQ,
/// BRQ, DRQ, LRQ): the ones [`gatekeeper_reject`] answers.
pub fn is_gatekeeper_request(m: &RasMessage) -> bool {
    gatekeeper_reject(m).is_some()
}

/// The reject a node that is not a gatekeeper answers a gatekeeper request with, echoing its
/// `requestSeqNum` (H.225.0 clause 7.7 onwards): GRJ, RRJ, URJ, ARJ, BRJ, DRJ or LRJ, so the
/// endpoint stops retrying at once instead of timing out. `None` for every other message,
/// which needs no answer from a gateway that has no gatekeeper (confirms and rejects answer
/// nothing of ours; an IRQ comes from a gatekeeper we are not registered with).
pub fn gatekeeper_reject(m: &RasMessage) -> Option<RasMessage> {
    use RasMessage as R;
    Some(match m {
        R::gatekeeperRequest(r) => R::gatekeeperReject(GatekeeperReject::new(
            r.request_seq_num.clone(),
            protocol_identifier(),
            None,
            None,
            GatekeeperRejectReason::resourceUnavailable(()),
            None,
            None,
            None,
            None,
            None,
            None,
        )),
        R::registrationRequest(r) => R::registrationReject(RegistrationReject::new(
            r.request_seq_num.clone(),
            protocol_identifier(),
            None,
            RegistrationRejectReason::undefinedReason(()),
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
        )),
        R::unregistrationRequest(r) => R::unregistrationReject(UnregistrationReject::new(
            r.request_seq_num.clone(),
            UnregRejectReason::notCurrentlyRegistered(()),
            None,
            None,
            None,
            None,
            None,
            None,
        )),
        R::admissionRequest(r) => R::admissionReject(AdmissionReject::new(
            r.request_seq_num.clone(),
            AdmissionRejectReason::undefinedReason(()),
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
        )),
        R::bandwidthRequest(r) => R::bandwidthReject(BandwidthReject::new(
            r.request_seq_num.clone(),
            BandRejectReason::notBound(()),
            BandWidth(0),
            None,
            None,
            None,
            None,
            None,
            None,
        )),
        R::disengageRequest(r) => R::disengageReject(DisengageReject::new(
            r.request_seq_num.clone(),
            DisengageRejectReason::notRegistered(()),
            None,
            None,
            None,
            None,
            None,
            None,
        )),
        R::locationRequest(r) => R::locationReject(LocationReject::new(
            r.request_seq_num.clone(),
            LocationRejectReason::notRegistered(()),
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
        )),
        _ => return None,
    })
}

/// The `requestSeqNum` of a reject built by [`gatekeeper_reject`] (for tests and logs).
pub fn reject_seq_num(m: &RasMessage) -> Option<u16> {
    use RasMessage as R;
    let RequestSeqNum(n) = match m {
        R::gatekeeperReject(r) => &r.request_seq_num,
        R::registrationReject(r) => &r.request_seq_num,
        R::unregistrationReject(r) => &r.request_seq_num,
        R::admissionReject(r) => &r.request_seq_num,
        R::bandwidthReject(r) => &r.request_seq_num,
        R::disengageReject(r) => &r.request_seq_num,
        R::locationReject(r) => &r.request_seq_num,
        _ => return None,
    };
    Some(*n)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn captured_requests_get_rejects_that_encode() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../h323-asn1/testdata/ras");
        let mut answered = 0;
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_none_or(|x| x != "hex") {
                continue;
            }
            let m =
                h323_asn1::decode_ras(&hex(std::fs::read_to_string(&p).unwrap().trim())).unwrap();
            let (name, _) = message_name(&m);
            let file = p.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                file.to_ascii_lowercase()
                    .contains(&name.to_ascii_lowercase()),
                "{file}: {name}"
            );
            if let Some(rej) = gatekeeper_reject(&m) {
                let bytes = h323_asn1::encode_ras(&rej).unwrap();
                let back = h323_asn1::decode_ras(&bytes).unwrap();
                assert!(reject_seq_num(&back).is_some());
                answered += 1;
            }
        }
        assert!(answered > 10);
    }
}
