//! SIP datagrams: parsing never panics, nor do the checks and typed accessors; a parsed
//! message's `raw()` bytes parse again to the same start line and header fields.
#![no_main]

use bytes::Bytes;
use codecs::sip::parse_datagram;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok((msg, _trailing)) = parse_datagram(Bytes::copy_from_slice(data)) else {
        return;
    };
    let _ = msg.check();
    let _ = (msg.vias(), msg.from(), msg.to(), msg.cseq(), msg.call_id());
    let _ = (msg.contacts(), msg.content_type(), msg.max_forwards(), msg.summary());
    let (again, trailing) = parse_datagram(msg.raw().clone()).expect("raw() parses again");
    assert_eq!(trailing, 0, "raw() holds no trailing bytes");
    assert_eq!(again.start(), msg.start());
    assert_eq!(again.headers().len(), msg.headers().len());
    assert!(again.headers().iter().eq(msg.headers().iter()));
    assert_eq!(again.body(), msg.body());
});
