//! TPKT over a TCP stream: the framer never panics whatever the bytes and however they are
//! split; each frame re-encodes to the bytes it came from, and Q.931 inside decode → encode →
//! decode agrees.
#![no_main]

use codecs::q931::Message;
use codecs::tpkt::{self, TpktFramer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // First byte picks the segment size, so splits are explored too.
    let Some((&split, stream)) = data.split_first() else {
        return;
    };
    let segment = usize::from(split).max(1);
    let mut framer = TpktFramer::new();
    let mut consumed = 0usize;
    for chunk in stream.chunks(segment) {
        framer.push(chunk);
        while let Some(frame) = framer.next_frame() {
            let Ok(payload) = frame else { return };
            let mut again = Vec::new();
            tpkt::encode(&payload, &mut again).expect("a framed payload re-encodes");
            assert_eq!(&stream[consumed..consumed + again.len()], &again[..]);
            consumed += again.len();
            if let Ok(msg) = Message::decode(&payload) {
                let bytes = msg.to_vec().expect("a decoded message re-encodes");
                assert_eq!(Message::decode(&bytes), Ok(msg));
            }
        }
    }
    let _ = tpkt::looks_like_tpkt(stream);
});
