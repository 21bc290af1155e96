//! H.225.0 RAS (one UDP datagram): decoding never panics; whatever decodes re-encodes
//! (canonical aligned PER), decodes to the same value, and that encoding is a fixed point; the
//! gatekeeper's reject built from it encodes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = h323_asn1::decode_ras(data) {
        let _ = codecs::ras::message_name(&msg);
        let bytes = h323_asn1::encode_ras(&msg).expect("a decoded RasMessage re-encodes");
        let again = h323_asn1::decode_ras(&bytes).expect("our RAS encoding decodes");
        assert_eq!(again, msg, "decode → encode → decode agrees");
        assert_eq!(h323_asn1::encode_ras(&again).expect("re-encodes"), bytes, "canonical");
        if let Some(reject) = codecs::ras::gatekeeper_reject(&msg) {
            h323_asn1::encode_ras(&reject).expect("a reject we build encodes");
        }
    }
});
