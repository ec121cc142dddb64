//! `cargo bench --bench audit`: audit-log append figures, printed, never asserted.
//!
//! For logs of 10, 10,000 and 100,000 hand-out records (one live file: segments switched off,
//! the worst case for a log that would be re-read), the median of 200 appends of one more
//! hand-out record through `audit::Log::append` (lock, read the tail, one `write`, one
//! `fdatasync`), against:
//! - one line appended and `fdatasync`ed to a file in the same folder (the floor: one fsync);
//! - the log rewritten whole, as appends did before segments (read all, temp file, fsync,
//!   rename), median of 20.
//!
//! Also `audit::verify` of the 100,000-record log, once. Runs in the folder `TMPDIR` names (the
//! fsync figures are the disk's under it).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use breakglass::audit::{self, Caller, Entry, Given, Issued, Log, Outcome, Record};

const SIZES: [usize; 3] = [10, 10_000, 100_000];

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time_runs(runs: usize, mut f: impl FnMut()) -> Duration {
    f();
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}

fn sha256_hex(line: &str) -> String {
    data_encoding::HEXLOWER
        .encode(ring::digest::digest(&ring::digest::SHA256, line.as_bytes()).as_ref())
}

/// A hand-out line as the agent writes it (same fields, same order), chained to `prev`.
fn handout_line(i: usize, prev: &str) -> String {
    let v: Value = json!({
        "time": "2026-01-01T00:00:00Z",
        "event": "hand-out",
        "profile": "prod",
        "pid": 10_000 + i,
        "exe": "/home/alice/.local/bin/breakglass",
        "uid": 1000,
        "parent_exe": "/usr/local/aws-cli/v2/2.15.0/dist/aws",
        "temporary_access_key_id": format!("ASIA{i:016}"),
        "kind": "role",
        "expiration": "2026-01-01T01:00:00Z",
        "outcome": "success",
        "prev": prev,
    });
    v.to_string()
}

/// Writes a log of `n` chained hand-out records at `path` (0600, in a 0700 folder).
fn make_log(path: &Path, n: usize) {
    let mut text = String::with_capacity(n * 400);
    let mut prev = audit::GENESIS.to_owned();
    for i in 0..n {
        let line = handout_line(i, &prev);
        prev = sha256_hex(&line);
        text.push_str(&line);
        text.push('\n');
    }
    breakglass::files::atomic_write(path, text.as_bytes()).unwrap();
}

fn entry() -> Entry<'static> {
    Entry {
        time: 1_767_225_600,
        profile: "prod",
        record: Record::Handout {
            caller: Caller {
                pid: 4242,
                exe: "/home/alice/.local/bin/breakglass".into(),
                uid: 1000,
                parent_exe: "/usr/local/aws-cli/v2/2.15.0/dist/aws".into(),
            },
            given: Given::Credentials {
                issued: Issued {
                    temporary_access_key_id: "ASIAEXAMPLE000000001".into(),
                    expiration: 1_767_229_200,
                },
                kind: "role",
            },
        },
        outcome: Outcome::Success,
    }
}

/// The append as it was before: the whole log read, rewritten to a temp file, renamed.
fn rewrite_whole(path: &Path, line: &str) {
    let mut text = std::fs::read_to_string(path).unwrap();
    text.push_str(line);
    text.push('\n');
    breakglass::files::atomic_write(path, text.as_bytes()).unwrap();
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    breakglass::files::ensure_private_dir(&state).unwrap();

    let floor_path = state.join("fsync-floor");
    let mut floor = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&floor_path)
        .unwrap();
    let line = handout_line(0, audit::GENESIS);
    let mut fsync = || {
        time_runs(200, || {
            floor.write_all(line.as_bytes()).unwrap();
            floor.write_all(b"\n").unwrap();
            floor.sync_data().unwrap();
        })
    };

    // All the logs first, synced: a journal commit (ext4's data=ordered) would otherwise flush
    // their pages inside the appends' fsyncs.
    for n in SIZES {
        make_log(&state.join(format!("audit-{n}.log")), n);
        make_log(&state.join(format!("old-{n}.log")), n);
    }
    nix::unistd::sync();
    println!("one line + fdatasync (the floor):        {}", ms(fsync()));
    let e = entry();
    for n in SIZES {
        let log = Log::new(&state.join(format!("audit-{n}.log"))).with_segment_bytes(u64::MAX);
        let append = time_runs(200, || log.append(&e).unwrap());
        println!("append at {n:>7} records:                {}", ms(append));
    }
    println!("the floor again:                         {}", ms(fsync()));
    let t = Instant::now();
    let v = audit::verify(&state.join("audit-100000.log")).unwrap();
    println!(
        "verify of {} records:              {}",
        v.records,
        ms(t.elapsed())
    );
    for n in SIZES {
        let old_path = state.join(format!("old-{n}.log"));
        let old = time_runs(20, || rewrite_whole(&old_path, &line));
        println!("whole rewrite at {n:>7} records (before): {}", ms(old));
    }
}
