//! SIP over a stream: the framer never panics, and how the bytes are cut into segments does not
//! change the messages it returns. The first input byte chooses the cut.
#![no_main]

use codecs::sip::StreamFramer;
use libfuzzer_sys::fuzz_target;

/// The raw bytes of each message, and whether framing failed.
fn frame(parts: &[&[u8]]) -> (Vec<Vec<u8>>, bool) {
    let mut framer = StreamFramer::new();
    let mut messages = Vec::new();
    for part in parts {
        framer.push(part);
        while let Some(m) = framer.next_message() {
            match m {
                Ok(m) => {
                    let _ = (m.check(), m.vias(), m.cseq(), m.content_length());
                    messages.push(m.raw().to_vec());
                }
                Err(_) => return (messages, true),
            }
        }
    }
    (messages, false)
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, stream)) = data.split_first() else {
        return;
    };
    let cut = usize::from(selector) * stream.len() / 255;
    let (head, tail) = stream.split_at(cut.min(stream.len()));
    let whole = frame(&[stream]);
    let split = frame(&[head, tail]);
    assert_eq!(whole, split, "cut at {cut}");
});
