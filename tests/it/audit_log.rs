//! The audit log through the binary: records appended by a real agent into numbered segments
//! (small ones, through `BREAKGLASS_AUDIT_SEGMENT_BYTES`), `audit verify` across them, a
//! missing segment and a torn last line as the operator sees them. Needs no pcscd.

use crate::common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::home::*;
use common::*;

/// Segments this small hold two or three of the agent's records.
const SEGMENT_BYTES: &str = "450";

/// Starts an agent in the foreground and stops it: two records (started, stopped), into
/// segments of `segment_bytes` (the default's when `None`).
fn agent_start_and_stop(home: &Home, segment_bytes: Option<&str>) {
    let with_segments = |mut cmd: Command| {
        if let Some(n) = segment_bytes {
            cmd.env("BREAKGLASS_AUDIT_SEGMENT_BYTES", n);
        }
        cmd
    };
    let mut agent = with_segments(home.command(&["agent", "--foreground", "--idle-timeout", "5"]))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the agent");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let o = home.command(&["status", "--json"]).output().unwrap();
        if o.status.success() && !stdout(&o).contains("\"running\":false") {
            break;
        }
        assert!(Instant::now() < deadline, "the agent did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    ok(with_segments(home.command(&["agent", "--stop"]))
        .output()
        .unwrap());
    agent.wait().unwrap();
}

fn verify(home: &Home) -> std::process::Output {
    home.command(&["audit", "verify"]).output().unwrap()
}

fn state(home: &Home) -> std::path::PathBuf {
    home.dir.path().join("state/breakglass")
}

#[test]
fn audit_verify_checks_every_segment_and_names_a_missing_one() {
    let home = Home::new();
    for _ in 0..4 {
        agent_start_and_stop(&home, Some(SEGMENT_BYTES));
    }
    let out = ok(verify(&home));
    let log = state(&home).join("audit.log");
    let segments = (1..)
        .take_while(|n| log.with_file_name(format!("audit.log.{n}")).exists())
        .count();
    assert!(segments >= 3, "{out}");
    assert!(
        out.contains(&format!(
            "8 records, hash chain intact across {segments} segment(s)"
        )),
        "{out}"
    );
    for n in 1..=segments {
        let seg = log.with_file_name(format!("audit.log.{n}"));
        assert!(std::fs::metadata(&seg).unwrap().len() <= 450);
    }

    // A middle segment moved away: a break, named.
    let two = log.with_file_name("audit.log.2");
    let kept = log.with_file_name("kept");
    std::fs::rename(&two, &kept).unwrap();
    fails(verify(&home), 1, &["audit.log.2 is missing", "tampered"]);
    std::fs::rename(&kept, &two).unwrap();

    // A record of a segment edited: the chain breaks at the next line.
    let one = log.with_file_name("audit.log.1");
    let text = std::fs::read_to_string(&one).unwrap();
    std::fs::write(&one, text.replacen("agent started", "agent startex", 1)).unwrap();
    fails(verify(&home), 1, &["hash link", "tampered"]);
    std::fs::write(&one, text).unwrap();
    ok(verify(&home));
}

#[test]
fn a_line_cut_off_by_a_crash_is_reported_then_set_aside() {
    let home = Home::new();
    agent_start_and_stop(&home, None);
    let log = state(&home).join("audit.log");
    let mut bytes = std::fs::read(&log).unwrap();
    let whole = bytes.len();
    bytes.extend_from_slice(br#"{"time":"2026-01-01T00:00:00Z","event":"agent st"#);
    std::fs::write(&log, &bytes).unwrap();

    let err = fails(
        verify(&home),
        1,
        &["line 3", "cut off", "nothing to edit by hand"],
    );
    assert!(!err.contains("tampered"), "{err}");

    // The next record sets the fragment aside and chains onto the last whole one.
    agent_start_and_stop(&home, None);
    let v = verify(&home);
    let out = ok(v.clone());
    assert!(out.contains("4 records, hash chain intact"), "{out}");
    let warning = stderr(&v);
    assert!(
        warning.contains("audit.log.torn-") && warning.contains("cut off"),
        "{warning}"
    );
    let now = std::fs::read(&log).unwrap();
    assert_eq!(now[..whole], bytes[..whole]);
    let torn: Vec<_> = std::fs::read_dir(state(&home))
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("audit.log.torn-")
        })
        .collect();
    assert_eq!(torn.len(), 1);
    assert_eq!(
        std::fs::read(torn[0].path()).unwrap(),
        &bytes[whole..],
        "the fragment, as it was"
    );
}

#[test]
fn an_exported_head_detects_a_log_cut_back_emptied_replaced_or_rewritten() {
    let home = Home::new();
    let head = |home: &Home| -> String {
        let out = ok(home.command(&["audit", "head"]).output().unwrap());
        out.split_whitespace().next().unwrap().to_owned()
    };
    let verify = |home: &Home, h: &str| {
        home.command(&["audit", "verify", "--expect-head", h])
            .output()
            .unwrap()
    };
    agent_start_and_stop(&home, None);
    let anchored = head(&home);
    assert_eq!(anchored.len(), 64, "{anchored}");
    agent_start_and_stop(&home, None);
    let log_path = home.dir.path().join("state/breakglass/audit.log");
    let whole = std::fs::read(&log_path).unwrap();

    // Later records do not matter: everything up to the anchor is there, unchanged.
    let out = ok(verify(&home, &anchored));
    assert!(out.contains("the expected head is record 2 of 4"), "{out}");

    // Cut back: the last two records gone. The chain itself is intact, so only the anchor
    // (the newest head, kept elsewhere) can tell.
    let newest = head(&home);
    let lines: Vec<&[u8]> = whole.split_inclusive(|b| *b == b'\n').collect();
    std::fs::write(&log_path, lines[..2].concat()).unwrap();
    ok(home.command(&["audit", "verify"]).output().unwrap());
    fails(
        verify(&home, &newest),
        1,
        &[
            "does not reach the expected head",
            "next: treat the log as tampered",
        ],
    );
    // Emptied, or replaced by another valid chain: the same.
    std::fs::write(&log_path, b"").unwrap();
    fails(
        verify(&home, &anchored),
        1,
        &["does not reach the expected head"],
    );
    let other = Home::new();
    agent_start_and_stop(&other, None);
    let other_log = std::fs::read(other.dir.path().join("state/breakglass/audit.log")).unwrap();
    std::fs::write(&log_path, other_log).unwrap();
    fails(
        verify(&home, &anchored),
        1,
        &["does not reach the expected head"],
    );
    // Rewritten: a record edited and every later `prev` recomputed, so that the chain holds.
    let rewritten = rechain(&whole, |first| {
        first.replace("\"agent started\"", "\"agent stopped\"")
    });
    std::fs::write(&log_path, rewritten).unwrap();
    ok(home.command(&["audit", "verify"]).output().unwrap());
    fails(
        verify(&home, &anchored),
        1,
        &["does not reach the expected head"],
    );
    // A head that is not one is a usage error.
    fails(verify(&home, "not-a-head"), 2, &["is not an audit head"]);
}
