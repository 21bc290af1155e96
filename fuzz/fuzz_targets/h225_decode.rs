//! H.225.0 call signalling: TPKT → Q.931 → H323-UserInformation. Nothing panics; whatever
//! decodes re-encodes (canonical aligned PER) and decodes to the same value, and that encoding
//! is a fixed point. fastStart elements (OpenLogicalChannel) and tunnelled H.245 (h245Control)
//! inside get the same check.
#![no_main]

use codecs::h225;
use codecs::q931::Message;
use codecs::tpkt::TpktFramer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut framer = TpktFramer::new();
    framer.push(data);
    while let Some(frame) = framer.next_frame() {
        let Ok(payload) = frame else { return };
        let Ok(msg) = Message::decode(&payload) else { continue };
        let Ok(info) = h225::user_information(&msg) else { continue };
        let bytes = h225::encode(&info).expect("a decoded H323-UserInformation re-encodes");
        let again = h323_asn1::decode_h323_user_information(&bytes)
            .expect("our encoding of H323-UserInformation decodes");
        assert_eq!(again, info, "decode → encode → decode agrees");
        assert_eq!(h225::encode(&again).expect("re-encodes"), bytes, "canonical");

        for olc in h225::fast_start(&info.h323_uu_pdu).unwrap_or_default() {
            if let Ok(olc) = h323_asn1::decode_fast_start_olc(olc) {
                let bytes = h323_asn1::encode_fast_start_olc(&olc).expect("an OLC re-encodes");
                let again = h323_asn1::decode_fast_start_olc(&bytes).expect("our OLC decodes");
                assert_eq!(again, olc, "fastStart OLC decode → encode → decode agrees");
            }
        }
        for pdu in h225::h245_control(&info.h323_uu_pdu) {
            if let Ok(m) = h323_asn1::decode_h245(pdu) {
                let bytes = h323_asn1::encode_h245(&m).expect("an H.245 message re-encodes");
                let again = h323_asn1::decode_h245(&bytes).expect("our H.245 message decodes");
                assert_eq!(again, m, "h245Control decode → encode → decode agrees");
            }
        }
    }
});
