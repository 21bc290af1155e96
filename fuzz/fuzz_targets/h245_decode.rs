//! H.245 MultimediaSystemControlMessage (one TPKT payload or h245Control element): decoding
//! never panics; whatever decodes re-encodes (canonical aligned PER), decodes to the same value,
//! and that encoding is a fixed point.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = h323_asn1::decode_h245(data) {
        let _ = codecs::h245::message_name(&msg);
        let bytes = h323_asn1::encode_h245(&msg).expect("a decoded H.245 message re-encodes");
        let again = h323_asn1::decode_h245(&bytes).expect("our H.245 encoding decodes");
        assert_eq!(again, msg, "decode → encode → decode agrees");
        assert_eq!(h323_asn1::encode_h245(&again).expect("re-encodes"), bytes, "canonical");
    }
});
