//! Meta frames: decoding never panics, and whatever decodes re-encodes to a frame that decodes
//! to the same sequence number and message.
#![no_main]

use codecs::meta::wire::{decode_frame, encode_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((seq, msg)) = decode_frame(data) {
        let mut again = Vec::new();
        encode_frame(seq, &msg, &mut again).expect("a decoded message re-encodes");
        assert_eq!(decode_frame(&again), Ok((seq, msg)));
    }
});
