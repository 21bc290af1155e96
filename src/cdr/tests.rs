#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
use super::*;
use crate::engine::calls::Direction;
use crate::engine::{EndedBy, LegProtocol, LegRecord};
use std::sync::atomic::AtomicUsize;

static N: AtomicUsize = AtomicUsize::new(0);

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.0
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch(name: &str) -> Scratch {
    let d = std::env::temp_dir().join(format!(
        "sgw-cdr-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    Scratch(d)
}

fn record(call: u32) -> CallRecord {
    CallRecord {
        call,
        direction: Direction::FromOutside,
        calling: "alice".into(),
        called: "1000".into(),
        emergency: false,
        setup_at: 1.0,
        answered_at: Some(2.0),
        ended_at: 3.0,
        start: rfc3339(Duration::from_secs(1)),
        answer: Some(rfc3339(Duration::from_secs(2))),
        end: rfc3339(Duration::from_secs(3)),
        cause: 16,
        ended_by: EndedBy::Outside,
        outside: LegRecord {
            protocol: LegProtocol::Sip,
            family: Some(crate::engine::Family::V4),
            address: Some("192.0.2.1".parse().unwrap()),
            calling: Some("alice".into()),
            called: Some("1000".into()),
        },
        inside: LegRecord {
            protocol: LegProtocol::Tunnel,
            family: None,
            address: None,
            calling: None,
            called: None,
        },
        media: Default::default(),
        rule: None,
        auth_identity: None,
    }
}

fn key() -> (Ed25519KeyPair, Vec<u8>) {
    let (pem, public) = generate_key().unwrap();
    let dir = scratch("key");
    let p = dir.join("k.key");
    std::fs::write(&p, pem).unwrap();
    (load_key(&p).unwrap(), unhex(&public).unwrap())
}

fn settings(dir: &Path) -> Settings {
    Settings {
        half: "gw2",
        target: Target::Dir(dir.to_owned()),
        rotate_bytes: 0,
        rotate_daily: false,
        fsync_interval: Some(Duration::from_secs(1)),
        checkpoint: Duration::from_secs(60),
    }
}

/// A file of `calls` records with a checkpoint after every `every` records and at the end.
fn chain_file(calls: u32, every: u32) -> (Scratch, PathBuf, Vec<u8>) {
    let dir = scratch("chain");
    let (k, public) = key();
    let mut c = Chain::open(settings(&dir), k).unwrap();
    for i in 0..calls {
        c.append(&record(i)).unwrap();
        if (i + 1) % every == 0 {
            c.checkpoint(false).unwrap();
        }
    }
    c.checkpoint(true).unwrap();
    let p = c.current_file().to_owned();
    (dir, p, public)
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(p: &Path, l: &[String]) {
    std::fs::write(p, l.join("\n") + "\n").unwrap();
}

fn check(p: &Path, key: &[u8]) -> Verification {
    verify(&[p.to_owned()], Some(key))
}

#[test]
fn rfc3339_utc() {
    assert_eq!(rfc3339(Duration::ZERO), "1970-01-01T00:00:00.000Z");
    assert_eq!(
        rfc3339(Duration::from_millis(1_764_931_369_500)),
        "2025-12-05T10:42:49.500Z"
    );
    assert_eq!(
        rfc3339(Duration::from_secs(951_782_400)),
        "2000-02-29T00:00:00.000Z"
    );
    assert_eq!(stamp(Duration::from_secs(951_782_400)), "20000229T000000Z");
}

#[test]
fn base64_matches_rfc_4648() {
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foo"), "Zm9v");
    assert_eq!(base64(b"foobar"), "Zm9vYmFy");
}

#[test]
fn intact_chain_verifies_with_its_key() {
    let (_dir, p, public) = chain_file(10, 4);
    let v = check(&p, &public);
    assert_eq!(v.status, Status::Intact, "{v:?}");
    assert_eq!(v.records, 10);
    assert_eq!(v.checkpoints, 3);
    assert_eq!(v.signatures_checked, 3);
    // Every line is one JSON object with the chain's members.
    for l in lines(&p) {
        let j: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert!(j["seq"].is_u64() && j["prev"].is_string() && j["half"] == "gw2");
    }
    let first: serde_json::Value = serde_json::from_str(&lines(&p)[0]).unwrap();
    assert_eq!(first["prev"], GENESIS);
}

#[test]
fn another_key_fails_the_signatures() {
    let (_dir, p, _) = chain_file(3, 10);
    let (_, other) = key();
    let v = check(&p, &other);
    assert_eq!(v.status, Status::Tampered);
    assert_eq!(v.kind.as_deref(), Some("bad_signature"));
    assert!(v.finding.unwrap().contains("not the key given"));
}

#[test]
fn altered_record_is_found_with_its_line() {
    let (_dir, p, public) = chain_file(6, 100);
    let mut l = lines(&p);
    l[3] = l[3].replace("\"alice\"", "\"mallory\"");
    write_lines(&p, &l);
    let v = check(&p, &public);
    assert_eq!(v.status, Status::Tampered, "{v:?}");
    assert_eq!(v.kind.as_deref(), Some("altered"));
    assert_eq!(v.line, Some(4));
}

#[test]
fn altered_and_rechained_is_caught_by_the_signature() {
    let (_dir, p, public) = chain_file(6, 100);
    let mut l = lines(&p);
    l[3] = l[3].replace("\"alice\"", "\"mallory\"");
    // Recompute every later prev: the chain is whole again, the checkpoint is not.
    for i in 4..l.len() {
        let mut j: serde_json::Value = serde_json::from_str(&l[i]).unwrap();
        let old = j["prev"].as_str().unwrap().to_owned();
        let new = sha256_hex(l[i - 1].as_bytes());
        j["prev"] = new.clone().into();
        l[i] = l[i].replace(&old, &new);
    }
    write_lines(&p, &l);
    let v = check(&p, &public);
    assert_eq!(v.kind.as_deref(), Some("bad_signature"), "{v:?}");
    assert_eq!(v.line, Some(l.len()));
    // Without the key the re-chained file looks whole: the key is what makes it evident.
    assert_eq!(verify(&[p], None).status, Status::Intact);
}

#[test]
fn deleted_record_is_found() {
    let (_dir, p, public) = chain_file(6, 100);
    let mut l = lines(&p);
    l.remove(3);
    write_lines(&p, &l);
    let v = check(&p, &public);
    assert_eq!(v.kind.as_deref(), Some("deleted"), "{v:?}");
    assert_eq!(v.line, Some(4));
}

#[test]
fn inserted_record_is_found() {
    let (_dir, p, public) = chain_file(6, 100);
    let mut l = lines(&p);
    let copy = l[2].clone();
    l.insert(5, copy);
    write_lines(&p, &l);
    let v = check(&p, &public);
    assert_eq!(v.kind.as_deref(), Some("inserted"), "{v:?}");
    assert_eq!(v.line, Some(6));
}

#[test]
fn reordered_records_are_found() {
    let (_dir, p, public) = chain_file(6, 100);
    let mut l = lines(&p);
    l.swap(2, 3);
    write_lines(&p, &l);
    let v = check(&p, &public);
    assert_eq!(v.kind.as_deref(), Some("reordered"), "{v:?}");
    assert_eq!(v.line, Some(3));
}

#[test]
fn forged_checkpoint_signature_is_found() {
    let (_dir, p, public) = chain_file(4, 2);
    let mut l = lines(&p);
    let i = l.iter().position(|x| x.contains("\"checkpoint\"")).unwrap();
    let j: serde_json::Value = serde_json::from_str(&l[i]).unwrap();
    let sig = j["sig"].as_str().unwrap();
    let mut bad = sig.to_owned();
    bad.replace_range(0..2, if sig.starts_with("00") { "01" } else { "00" });
    l[i] = l[i].replace(sig, &bad);
    // The next line's prev is fixed up too: only the signature is wrong.
    let h = sha256_hex(l[i].as_bytes());
    let old = sha256_hex(lines(&p)[i].as_bytes());
    l[i + 1] = l[i + 1].replace(&old, &h);
    write_lines(&p, &l);
    let v = check(&p, &public);
    assert_eq!(v.kind.as_deref(), Some("bad_signature"), "{v:?}");
    assert_eq!(v.line, Some(i + 1));
}

#[test]
fn truncated_last_line_is_an_incomplete_record_not_tampering() {
    let (_dir, p, public) = chain_file(5, 100);
    let mut text = std::fs::read_to_string(&p).unwrap();
    text.push_str("{\"kind\":\"call\",\"seq\":99,\"prev\":\"ab");
    std::fs::write(&p, &text).unwrap();
    let v = check(&p, &public);
    assert_eq!(v.status, Status::Intact, "{v:?}");
    assert_eq!(v.records, 5);
    assert_eq!(v.refused_lines, 1);
    assert!(v.notes.iter().any(|n| n.contains("incomplete last record")));
    // A cut line with its newline is not a crash's trace: tampering.
    std::fs::write(&p, text + "\n").unwrap();
    assert_eq!(check(&p, &public).status, Status::Tampered);
}

#[test]
fn corrupt_and_missing_files_are_unreadable() {
    let dir = scratch("corrupt");
    let p = dir.join("junk.jsonl");
    std::fs::write(&p, b"\x00\x01garbage\n").unwrap();
    let v = verify(&[p], None);
    assert_eq!(v.status, Status::Unreadable);
    assert_eq!(v.status.exit_code(), 2);
    let v = verify(&[dir.join("missing.jsonl")], None);
    assert_eq!(v.status, Status::Unreadable);
    assert_eq!(v.refused_lines, 1);
}

/// Files rotated by size chain from one to the next; given in any order they verify; one
/// left out, or one whose end was cut, is found.
#[test]
fn rotation_chains_across_files() {
    let dir = scratch("rotate");
    let (k, public) = key();
    let mut s = settings(&dir);
    s.rotate_bytes = 2000;
    let mut c = Chain::open(s, k).unwrap();
    for i in 0..20 {
        c.append(&record(i)).unwrap();
    }
    c.checkpoint(true).unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    // Each rotated file ends with a signed checkpoint.
    for f in &files[..files.len() - 1] {
        assert!(lines(f).last().unwrap().contains("\"checkpoint\""));
    }
    let mut shuffled = files.clone();
    shuffled.reverse();
    let v = verify(&shuffled, Some(&public));
    assert_eq!(v.status, Status::Intact, "{v:?}");
    assert_eq!(v.records, 20);
    // A middle file left out.
    let mut gap = files.clone();
    gap.remove(1);
    let v = verify(&gap, Some(&public));
    assert_eq!(v.kind.as_deref(), Some("deleted"), "{v:?}");
    // The last line of the first file removed: the next file no longer chains from it.
    let mut l = lines(&files[0]);
    l.pop();
    write_lines(&files[0], &l);
    let v = verify(&files, Some(&public));
    assert_eq!(v.status, Status::Tampered, "{v:?}");
}

/// A restart continues the chain: the new file starts from the last hash of the old one,
/// even when the old one ends with a line cut short.
#[test]
fn restart_continues_the_chain() {
    let dir = scratch("restart");
    let (pem, public) = generate_key().unwrap();
    let kp = dir.join("k.key");
    std::fs::write(&kp, pem).unwrap();
    let public = unhex(&public).unwrap();
    let first = {
        let mut c = Chain::open(settings(&dir), load_key(&kp).unwrap()).unwrap();
        c.append(&record(1)).unwrap();
        c.append(&record(2)).unwrap();
        c.current_file().to_owned()
    };
    // A crash mid-write.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&first)
        .unwrap();
    f.write_all(b"{\"kind\":\"call\",\"se").unwrap();
    drop(f);
    std::thread::sleep(Duration::from_millis(1100));
    let mut c = Chain::open(settings(&dir), load_key(&kp).unwrap()).unwrap();
    c.append(&record(3)).unwrap();
    c.checkpoint(true).unwrap();
    assert_ne!(c.current_file(), first);
    let v = verify(&[first, c.current_file().to_owned()], Some(&public));
    assert_eq!(v.status, Status::Intact, "{v:?}");
    assert_eq!(v.records, 3);
    assert!(v.notes.iter().any(|n| n.contains("incomplete last record")));
}

#[test]
fn path_target_rotates_the_old_file_away() {
    let dir = scratch("path");
    let (pem, public) = generate_key().unwrap();
    let kp = dir.join("k.key");
    std::fs::write(&kp, pem).unwrap();
    let mut s = settings(&dir);
    let path = dir.join("calls.jsonl");
    s.target = Target::Path(path.clone());
    {
        let mut c = Chain::open(s.clone(), load_key(&kp).unwrap()).unwrap();
        c.append(&record(1)).unwrap();
        c.checkpoint(true).unwrap();
    }
    let mut c = Chain::open(s, load_key(&kp).unwrap()).unwrap();
    c.append(&record(2)).unwrap();
    c.checkpoint(true).unwrap();
    assert_eq!(c.current_file(), path);
    let all: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("calls.jsonl"))
        .collect();
    assert_eq!(all.len(), 2, "{all:?}");
    let v = verify(&all, Some(&unhex(&public).unwrap()));
    assert_eq!(v.status, Status::Intact, "{v:?}");
    assert_eq!(v.records, 2);
}

/// The writer thread: records queued from the driver are written, a checkpoint is signed
/// when it stops, and a full queue is counted, not a panic.
#[test]
fn writer_thread_writes_and_signs_at_stop() {
    let dir = scratch("writer");
    let (k, public) = key();
    let w = RecordWriter::start(settings(&dir), k).unwrap();
    for i in 0..50 {
        w.submit(record(i));
    }
    let c = w.counters.clone();
    w.stop();
    assert_eq!(c.written.load(Ordering::Relaxed), 50);
    assert_eq!(c.write_errors.load(Ordering::Relaxed), 0);
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let v = verify(&files, Some(&public));
    assert_eq!(v.status, Status::Intact, "{v:?}");
    assert_eq!(v.records, 50);
    assert!(v.notes.is_empty(), "{:?}", v.notes);
}

#[test]
fn a_directory_that_cannot_be_written_fails_at_start() {
    let dir = scratch("nodir");
    let file = dir.join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let (k, _) = key();
    assert!(Chain::open(settings(&file.join("sub")), k).is_err());
}

#[test]
fn config_needs_one_target() {
    let r = RecordsConfig {
        dir: None,
        path: None,
        key: "k".into(),
        rotate_bytes: 0,
        rotate_daily: false,
        fsync: FsyncPolicy::Interval,
        fsync_interval_ms: 0,
        checkpoint_secs: 0,
    };
    let keys: Vec<String> = check_config(&r, "gw2.records")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        keys,
        [
            "gw2.records",
            "gw2.records.checkpoint_secs",
            "gw2.records.fsync_interval_ms"
        ]
    );
}

/// The cost of each fsync policy, for the docs (`cargo test -p sgw --lib cdr::tests::fsync_cost
/// -- --ignored --nocapture`): records per second written with `fsync = "record"` and with
/// `fsync = "interval"`.
#[test]
#[ignore = "a measurement, run by hand"]
fn fsync_cost() {
    for (name, interval) in [("record", None), ("interval", Some(Duration::from_secs(1)))] {
        let dir = scratch("fsync");
        let (k, _) = key();
        let mut s = settings(&dir);
        s.fsync_interval = interval;
        let mut c = Chain::open(s, k).unwrap();
        let n = 2000;
        let t = Instant::now();
        for i in 0..n {
            c.append(&record(i)).unwrap();
        }
        c.sync().unwrap();
        let e = t.elapsed();
        println!(
            "fsync = {name}: {n} records in {:.3} s: {:.0} records/s, {:.1} us per record",
            e.as_secs_f64(),
            f64::from(n) / e.as_secs_f64(),
            e.as_secs_f64() * 1e6 / f64::from(n)
        );
    }
}

#[test]
fn the_example_configures_both_halves_records() {
    let c = crate::config::Config::from_toml_str(crate::config::EXAMPLE_CONFIG).unwrap();
    let gw2 = c.gw2.unwrap().records.unwrap();
    assert_eq!(gw2.fsync, FsyncPolicy::Interval);
    assert!(gw2.rotate_daily);
    let gw1 = c.gw1.unwrap().records.unwrap();
    assert_eq!(gw1.checkpoint_secs, DEFAULT_CHECKPOINT_SECS);
}

#[test]
fn records_keys_are_checked_with_their_line() {
    let base = crate::config::EXAMPLE_CONFIG;
    let text = base.replace(
        "dir = \"/var/lib/sgw-gw2/records\"    # or path",
        "path = \"/x\"\ndir = \"/var/lib/sgw-gw2/records\"    # or path",
    );
    assert_ne!(text, base);
    let e = crate::config::Config::from_toml_str(&text).unwrap_err();
    assert!(
        e.to_string()
            .contains("gw2.records.path: give `dir` or `path`, not both"),
        "{e}"
    );
    let text = base.replace("checkpoint_secs = 60", "checkpoint_secs = 60\nsign = false");
    let e = crate::config::Config::from_toml_str(&text).unwrap_err();
    assert!(e.to_string().contains("sign"), "{e}");
    let text = base.replace("fsync = \"interval\"", "fsync = \"never\"");
    assert!(crate::config::Config::from_toml_str(&text).is_err());
}

/// A failed write is counted and logged, the record lost is named, and the next record goes to
/// a new file chained from the last line written: the chain verifies.
#[test]
fn a_write_error_is_counted_and_the_chain_goes_on_in_a_new_file() {
    let dir = scratch("werr");
    let (k, public) = key();
    let mut c = Chain::open(settings(&dir), k).unwrap();
    c.append(&record(1)).unwrap();
    let first = c.current_file().to_owned();
    // The file handle can no longer be written (as on a full or failed disk).
    c.file = Some(File::open(&first).unwrap());
    assert!(c.append(&record(2)).is_err());
    std::thread::sleep(Duration::from_millis(1100));
    c.append(&record(3)).unwrap();
    c.checkpoint(true).unwrap();
    assert_ne!(c.current_file(), first);
    let v = verify(&[first, c.current_file().to_owned()], Some(&public));
    assert_eq!(v.status, Status::Intact, "{v:?}");
    assert_eq!(v.records, 2);
}

#[test]
fn daily_rotation_starts_a_file_at_the_utc_day() {
    let dir = scratch("daily");
    let (k, public) = key();
    let mut s = settings(&dir);
    s.rotate_daily = true;
    let mut c = Chain::open(s, k).unwrap();
    let today = wall_now();
    c.append_at(&record(1), today).unwrap();
    let first = c.current_file().to_owned();
    c.append_at(&record(2), today + Duration::from_secs(86_400))
        .unwrap();
    c.checkpoint(true).unwrap();
    assert_ne!(c.current_file(), first);
    assert!(lines(&first).last().unwrap().contains("\"checkpoint\""));
    let v = verify(&[first, c.current_file().to_owned()], Some(&public));
    assert_eq!(v.status, Status::Intact, "{v:?}");
    assert_eq!((v.records, v.checkpoints), (2, 2));
}

/// Untrusted files never panic the verifier, and no single changed byte goes unnoticed (but
/// the last newline: without it the last line is an incomplete record, reported as such).
#[test]
fn every_single_byte_change_is_found_and_nothing_panics() {
    let (_dir, p, public) = chain_file(1, 1);
    let intact = std::fs::read(&p).unwrap();
    for i in 0..intact.len() - 1 {
        let mut b = intact.clone();
        b[i] ^= 0x01;
        std::fs::write(&p, &b).unwrap();
        let v = check(&p, &public);
        assert_ne!(v.status, Status::Intact, "byte {i} ^ 0x01 not found");
    }
    for cut in 0..intact.len() {
        std::fs::write(&p, &intact[..cut]).unwrap();
        let _ = check(&p, &public);
    }
    let huge = b"{\"kind\":\"file\",\"seq\":18446744073709551615,\"prev\":\"00\",\"half\":\"x\"}\n{\"kind\":\"call\",\"seq\":0,\"prev\":\"00\",\"half\":\"x\"}\n";
    std::fs::write(&p, huge).unwrap();
    assert_eq!(check(&p, &public).status, Status::Tampered);
}

/// A reload does not change where records go: it names the section, which needs a restart.
#[test]
fn a_reload_names_a_records_change() {
    let base = crate::config::EXAMPLE_CONFIG;
    let old = crate::config::Config::from_toml_str(base).unwrap();
    let new = crate::config::Config::from_toml_str(
        &base.replace("checkpoint_secs = 60", "checkpoint_secs = 5"),
    )
    .unwrap();
    assert_eq!(
        crate::live::control::not_live_changes(&old, &new),
        vec!["[gw2.records]"]
    );
}

#[test]
fn the_halves_do_not_share_a_file_or_a_key() {
    let base = crate::config::EXAMPLE_CONFIG;
    let text = base.replace(
        "/etc/sgw/pki/gw1-records.key",
        "/etc/sgw/pki/gw2-records.key",
    );
    let e = crate::config::Config::from_toml_str(&text).unwrap_err();
    assert!(
        e.to_string().contains("gw1.records.key: the same key"),
        "{e}"
    );
}

/// With `path`, a full file moves to its rotated name and the records go on at `path`.
#[test]
fn path_target_rotates_by_size() {
    let dir = scratch("pathsize");
    let (k, public) = key();
    let mut s = settings(&dir);
    let path = dir.join("calls.jsonl");
    s.target = Target::Path(path.clone());
    s.rotate_bytes = 2000;
    let mut c = Chain::open(s, k).unwrap();
    for i in 0..10 {
        c.append(&record(i)).unwrap();
    }
    c.checkpoint(true).unwrap();
    assert_eq!(c.current_file(), path);
    let all: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(all.len() >= 3, "{all:?}");
    let v = verify(&all, Some(&public));
    assert_eq!(v.status, Status::Intact, "{v:?}");
    assert_eq!(v.records, 10);
}
