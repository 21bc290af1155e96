//! tshark as an independent oracle for the Q.931 messages we emit: Setup, Release Complete,
//! Connect and Alerting are built with the public API, framed in TPKT, written as TCP port 1720
//! payloads with `text2pcap`, and tshark must read back the values we put in, with no
//! malformed-packet or expert error in the Q.931 layer.
//!
//! Without tshark/text2pcap the test prints "skipped" and passes, except under `CI=true`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

use codecs::q931::{
    BearerCapability, CallRef, Cause, Layer1Protocol, Message, PartyNumber, Presentation,
    PresentationScreening, Screening, TypeOfNumber,
};
use codecs::tpkt;

fn tools_present() -> bool {
    let ok = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if ok("tshark") && ok("text2pcap") {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "tshark/text2pcap missing under CI=true"
    );
    println!("skipped: tshark or text2pcap not installed");
    false
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The H.225.0 PDU in the User-user IE of a capture frame (testdata/q931/vectors.tsv).
fn h225_from_capture(frame: &str) -> Vec<u8> {
    let line = include_str!("../testdata/q931/vectors.tsv")
        .lines()
        .find(|l| l.starts_with(&format!("ndpi/h323.pcap\t{frame}\t")))
        .unwrap();
    let tpkt = hex(line.rsplit('\t').next().unwrap());
    let m = Message::decode(&tpkt[4..]).unwrap();
    m.user_user().unwrap().data.clone()
}

/// What tshark must show for one frame.
struct Expect {
    message_type: &'static str,
    call_ref: &'static str,
    flag: &'static str,
    called: &'static str,
    calling: &'static str,
    cause: &'static str,
    display: &'static str,
}

fn messages(h225: &dyn Fn(&str) -> Vec<u8>) -> Vec<(Message, Expect)> {
    let cr = CallRef::new(0x1234);
    vec![
        (
            Message::setup(
                cr,
                BearerCapability::speech(Layer1Protocol::G711Alaw),
                h225("6"),
            )
            .with_calling_number(PartyNumber {
                type_of_number: TypeOfNumber::National,
                presentation: Some(PresentationScreening {
                    presentation: Presentation::Allowed,
                    screening: Screening::NetworkProvided,
                }),
                ..PartyNumber::e164("5551000")
            })
            .with_called_number(PartyNumber::e164("5552000"))
            .with_display("sgw test"),
            Expect {
                message_type: "0x05",
                call_ref: "1234",
                flag: "0",
                called: "5552000",
                calling: "5551000",
                cause: "",
                display: "sgw test",
            },
        ),
        (
            Message::alerting(cr.reply(), h225("14")),
            Expect {
                message_type: "0x01",
                call_ref: "1234",
                flag: "1",
                called: "",
                calling: "",
                cause: "",
                display: "",
            },
        ),
        (
            Message::connect(cr.reply(), h225("18")),
            Expect {
                message_type: "0x07",
                call_ref: "1234",
                flag: "1",
                called: "",
                calling: "",
                cause: "",
                display: "",
            },
        ),
        (
            Message::release_complete(cr, Some(Cause::new(16)), h225("66")),
            Expect {
                message_type: "0x5a",
                call_ref: "1234",
                flag: "0",
                called: "",
                calling: "",
                cause: "16",
                display: "",
            },
        ),
    ]
}

/// Writes the messages as a pcap (TCP 40000 -> 1720) and returns tshark's fields per frame
/// and its verbose text.
fn run_tshark(msgs: &[(Message, Expect)], name: &str) -> (Vec<Vec<String>>, String) {
    let dir = std::env::temp_dir().join(format!("sgw-q931-tshark-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dump: PathBuf = dir.join(format!("{name}.txt"));
    let pcap: PathBuf = dir.join(format!("{name}.pcap"));
    let mut text = String::new();
    for (m, _) in msgs {
        let mut frame = Vec::new();
        tpkt::encode(&m.to_vec().unwrap(), &mut frame).unwrap();
        for (i, chunk) in frame.chunks(16).enumerate() {
            write!(text, "{:06x}", i * 16).unwrap();
            for b in chunk {
                write!(text, " {b:02x}").unwrap();
            }
            text.push('\n');
        }
        text.push('\n');
    }
    std::fs::write(&dump, text).unwrap();
    let out = Command::new("text2pcap")
        .args(["-q", "-T", "40000,1720"])
        .arg(&dump)
        .arg(&pcap)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fields = [
        "frame.number",
        "q931.message_type",
        "q931.call_ref",
        "q931.call_ref_flag",
        "q931.called_party_number.digits",
        "q931.calling_party_number.digits",
        "q931.cause_value",
        "q931.display_information",
        "q931.user.protocol_discriminator",
        "_ws.malformed",
        "_ws.expert.message",
    ];
    let mut cmd = Command::new("tshark");
    cmd.arg("-r")
        .arg(&pcap)
        .args(["-T", "fields", "-E", "separator=/t"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect();
    let verbose = Command::new("tshark")
        .arg("-r")
        .arg(&pcap)
        .arg("-V")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (rows, String::from_utf8_lossy(&verbose.stdout).into_owned())
}

fn check_fields(rows: &[Vec<String>], msgs: &[(Message, Expect)]) {
    assert_eq!(rows.len(), msgs.len(), "{rows:?}");
    for (row, (m, e)) in rows.iter().zip(msgs) {
        let what = format!("{:?}: {row:?}", m.msg_type);
        assert_eq!(row[1], e.message_type, "{what}");
        assert_eq!(row[2], e.call_ref, "{what}");
        assert_eq!(row[3], e.flag, "{what}");
        assert_eq!(row[4], e.called, "{what}");
        assert_eq!(row[5], e.calling, "{what}");
        assert_eq!(row[6], e.cause, "{what}");
        assert_eq!(row[7], e.display, "{what}");
        assert_eq!(
            row[8], "0x05",
            "{what}: user-user protocol discriminator X.208/X.209"
        );
    }
}

#[test]
fn tshark_reads_what_we_emit() {
    if !tools_present() {
        return;
    }
    // With the H.225.0 PDUs of a real call inside: tshark finds nothing wrong at all.
    let msgs = messages(&h225_from_capture);
    let (rows, verbose) = run_tshark(&msgs, "real-h225");
    check_fields(&rows, &msgs);
    for row in &rows {
        assert_eq!(row[9], "", "malformed: {row:?}");
        assert_eq!(row[10], "", "expert info: {row:?}");
    }
    assert!(!verbose.contains("Malformed"), "{verbose}");
    assert!(
        verbose.contains("Calling party number: '5551000'"),
        "{verbose}"
    );
    assert!(
        verbose.contains("Cause value: Normal call clearing (16)"),
        "{verbose}"
    );
    assert!(verbose.contains("User information layer 1 protocol: Recommendation G.711 A-law"));

    // With a dummy PDU: the Q.931 layer still decodes as intended; only H.225.0 may complain.
    let dummy = |_: &str| vec![0x20, 0xa8, 0x06, 0x00];
    let msgs = messages(&dummy);
    let (rows, verbose) = run_tshark(&msgs, "dummy-h225");
    check_fields(&rows, &msgs);
    assert!(!verbose.contains("Malformed Packet: Q.931"), "{verbose}");
    // "[Malformed Packet: <protocol>]" names the layer that raised the exception.
    for line in verbose.lines().filter(|l| l.contains("[Malformed Packet:")) {
        assert!(line.contains("H.225.0"), "{line}");
    }
}
