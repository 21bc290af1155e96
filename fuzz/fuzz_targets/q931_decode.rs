//! Q.931 messages: decoding never panics; whatever decodes re-encodes to the same bytes and
//! decodes to the same message.
#![no_main]

use codecs::q931::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = Message::decode(data) {
        let again = msg.to_vec().expect("a decoded message re-encodes");
        assert_eq!(again, data, "re-encoding is byte-identical");
        let _ = msg.check_mandatory();
        assert_eq!(Message::decode(&again), Ok(msg));
    }
});
