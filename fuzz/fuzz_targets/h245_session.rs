//! The H.245 procedure state machine (`translators::h245_session`) fed sequences of PDUs, not
//! single ones: the input is a stream of TPKT-framed H.245 PDUs, and bytes between them drive
//! the session's own actions (send capabilities, master/slave, open a channel, media
//! addresses, time passing). Whatever the order, nothing panics, what the session sends
//! encodes and decodes again, every input makes a bounded number of messages, and after the
//! session ended it sends nothing more.
#![no_main]

use codecs::meta::Codec;
use codecs::tpkt::TpktFramer;
use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;
use std::time::Duration;
use translators::h245_session::Session;

fn pcma() -> Codec {
    Codec {
        payload_type: 8,
        name: "PCMA".to_owned(),
        clock_rate: 8000,
        channels: 1,
        fmtp: None,
    }
}

fn drain(s: &mut Session) -> usize {
    let mut n = 0;
    while let Some(m) = s.poll_message() {
        let bytes = h323_asn1::encode_h245(&m).expect("the session sends encodable messages");
        assert_eq!(h323_asn1::decode_h245(&bytes).expect("and they decode"), m);
        n += 1;
    }
    while s.poll_event().is_some() {}
    n
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let mut s = Session::new(u64::from(seed) * 0x9e37_79b9);
    let mut now = Duration::ZERO;
    let rtp: SocketAddr = "192.0.2.1:4000".parse().unwrap();
    let rtcp: SocketAddr = "192.0.2.1:4001".parse().unwrap();
    let mut framer = TpktFramer::new();
    for chunk in stream.chunks(64) {
        // The chunk's first byte is the gateway's own action before it.
        if let Some(&a) = chunk.first() {
            now += Duration::from_millis(u64::from(a) * 100);
            match a % 8 {
                0 => s.send_capabilities(now, &[pcma()]),
                1 => s.determine_master_slave(now),
                2 => s.set_media(rtp, rtcp),
                3 => s.open_channel(now, vec![pcma()], rtcp),
                4 => s.handle_timeout(now),
                5 => s.send_dtmf(a % 16, 100, a % 2 == 0),
                6 => s.round_trip(now),
                _ => {}
            }
            assert!(drain(&mut s) <= 4);
        }
        framer.push(chunk);
        while let Some(frame) = framer.next_frame() {
            let Ok(pdu) = frame else { return };
            if let Ok(m) = h323_asn1::decode_h245(&pdu) {
                let ended = s.is_ended();
                s.handle(now, m);
                let n = drain(&mut s);
                assert!(n <= 6, "{n} messages for one PDU");
                if ended {
                    assert_eq!(n, 0, "an ended session sends nothing");
                }
            }
        }
    }
});
