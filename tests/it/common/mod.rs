//! Test rig shared by the integration tests: the breakglass binary, the soft token running as
//! a card in pcscd's vpcd reader, and the skip-or-fail rule for machines without pcscd.
//!
//! vpcd offers two reader slots (ports 35963 and 35964). Tests that use a slot hold an
//! exclusive file lock on it, so test threads and test binaries never share a card.

#![allow(dead_code)]

pub mod emulator;
pub mod faults;
pub mod home;
pub mod hooks;

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use breakglass::token::pcsc;

pub const BIN: &str = env!("CARGO_BIN_EXE_breakglass");

/// Whether every test must run, a skip being a failure: `BREAKGLASS_REQUIRE_ALL=1` (CI), or its
/// older name `BREAKGLASS_REQUIRE_ALL=1`, from when only PC/SC could be missing.
pub fn require_all() -> bool {
    ["BREAKGLASS_REQUIRE_ALL", "BREAKGLASS_REQUIRE_PCSC"]
        .iter()
        .any(|v| std::env::var(v).as_deref() == Ok("1"))
}

/// Skips `what` (a test, or a part of one) because of `why`: a SKIPPED line on the real stderr,
/// or, under [`require_all`], a failure saying why.
pub fn skip(what: &str, why: &str) {
    assert!(
        !require_all(),
        "BREAKGLASS_REQUIRE_ALL=1 but {what} cannot run: {why}"
    );
    let _ = writeln!(std::io::stderr(), "SKIPPED {what}: {why}");
}

/// True when pcscd with the vpcd readers is reachable. Otherwise skips visibly, or panics when
/// `BREAKGLASS_REQUIRE_ALL=1` (CI), so that a skip can never pass for a success there.
pub fn pcsc_ready(test: &str) -> bool {
    let ok = pcsc::list_readers()
        .map(|rs| rs.iter().any(|r| r.name.starts_with("Virtual PCD")))
        .unwrap_or(false);
    if !ok {
        assert!(
            !crate::common::require_all(),
            "BREAKGLASS_REQUIRE_ALL=1 but pcscd with the vpcd reader is not reachable \
             (apt-get install pcscd vsmartcard-vpcd; pcscd --foreground &)"
        );
        // Written to the real stderr, not the captured one: the skip must be visible.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: pcscd with the vpcd reader is not running (see .ci/run)"
        );
    }
    ok
}

/// `exe` from PATH. When it is missing: a visible skip (`None`), or, with
/// `BREAKGLASS_REQUIRE_ALL=1` (CI), a failure that says how to install it (`install`), so
/// that a skip never passes for a success there.
pub fn tool(test: &str, exe: &str, install: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(exe))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            !crate::common::require_all(),
            "BREAKGLASS_REQUIRE_ALL=1 but {exe} is not installed ({install})"
        );
        // Written to the real stderr, not the captured one: the skip must be visible.
        let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {exe} is not installed");
    }
    found
}

/// The `ykman` to use: `$YKMAN`, else the one on PATH. Skips or fails like [`tool`].
pub fn ykman(test: &str) -> Option<PathBuf> {
    match std::env::var_os("YKMAN") {
        Some(p) => Some(PathBuf::from(p)),
        None => tool(test, "ykman", "pip install yubikey-manager"),
    }
}

/// An exclusive claim on one vpcd reader slot (0 or 1).
pub struct Slot {
    pub index: u16,
    _lock: File,
}

impl Slot {
    pub fn claim(index: u16) -> Self {
        let path = std::env::temp_dir().join(format!("breakglass-test-vpcd-slot-{index}.lock"));
        let lock = File::create(path).expect("create slot lock file");
        lock.lock().expect("lock vpcd slot");
        Self { index, _lock: lock }
    }

    pub fn reader(&self) -> String {
        format!("Virtual PCD 00 {:02}", self.index)
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", 35963 + self.index)
    }
}

fn card_present(reader: &str) -> bool {
    pcsc::list_readers()
        .map(|rs| rs.iter().any(|r| r.name == reader && r.card_present))
        .unwrap_or(false)
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The soft token running as `breakglass sandbox card` in a vpcd slot, stopped on drop.
pub struct SoftToken {
    child: Option<Child>,
    pub slot: Slot,
}

impl SoftToken {
    pub fn start(slot: Slot, touch: &str, touch_timeout_secs: u64) -> Self {
        Self::start_with(slot, touch, touch_timeout_secs, &[])
    }

    /// [`SoftToken::start`] with more `breakglass sandbox card` arguments.
    pub fn start_with(slot: Slot, touch: &str, touch_timeout_secs: u64, extra: &[&str]) -> Self {
        let reader = slot.reader();
        wait_until("the slot to be empty", || !card_present(&reader));
        let child = Command::new(BIN)
            .args(["sandbox", "card", "--vpcd", &slot.addr(), "--touch", touch])
            .args(["--touch-timeout", &touch_timeout_secs.to_string()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start breakglass sandbox card");
        wait_until("the soft token to appear in pcscd", || {
            card_present(&reader)
        });
        Self {
            child: Some(child),
            slot,
        }
    }

    /// Starts a token with touch approved and a 15 s touch timeout.
    pub fn approve(slot: u16) -> Self {
        Self::start(Slot::claim(slot), "approve", 15)
    }

    pub fn reader(&self) -> String {
        self.slot.reader()
    }

    /// Pulls the card: kills the process and waits until pcscd sees the slot empty.
    pub fn pull(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            let reader = self.reader();
            wait_until("the soft token to leave pcscd", || !card_present(&reader));
        }
    }
}

impl Drop for SoftToken {
    fn drop(&mut self) {
        self.pull();
    }
}

/// `breakglass ARGS` with stdin from `input`, detached from any terminal (`setsid`), so a
/// prompt can never wait for a person.
pub fn bg(args: &[&str], input: Option<&str>) -> Output {
    let mut cmd = Command::new("setsid");
    cmd.arg("-w").arg(BIN).args(args);
    run_with_input(cmd, input)
}

pub fn run_with_input(mut cmd: Command, input: Option<&str>) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    if let Some(text) = input {
        // A command that refuses its arguments exits before it reads a line; the pipe is then
        // closed under us, which is the command's business, not a test failure. What it did is
        // judged from its exit status and output.
        match stdin.write_all(text.as_bytes()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            other => other.expect("write stdin"),
        }
    }
    drop(stdin);
    child.wait_with_output().expect("wait")
}

/// Runs `cmd` with its standard output a pipe whose reader is closed before the command
/// starts (as `| head -1` closes it after a line): every write to it fails with EPIPE.
pub fn with_stdout_closed(mut cmd: Command) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    drop(child.stdout.take());
    child.wait_with_output().expect("wait")
}

/// Asserts that a command whose standard output was closed ([`with_stdout_closed`]) ended as
/// ripgrep does: status 0, nothing on stderr (no panic, no "Broken pipe").
pub fn ends_quietly(o: &Output, what: &str) {
    let err = stderr(o);
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe") && err.is_empty(),
        "{what}: stderr {err:?}"
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{what}: {:?}, stderr {err:?}",
        o.status
    );
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success and returns stdout.
pub fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "expected success, got {:?}\nstdout: {}\nstderr: {}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// Asserts failure with `code` and stderr containing every `needles`; returns stderr.
pub fn fails(o: Output, code: i32, needles: &[&str]) -> String {
    let err = stderr(&o);
    assert_eq!(
        o.status.code(),
        Some(code),
        "exit code\nstdout: {}\nstderr: {err}",
        stdout(&o)
    );
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}:\n{err}");
    }
    assert!(
        err.contains("next: "),
        "every error says what to do next:\n{err}"
    );
    err
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// The RFC 4226/6238 SHA-1 seed "12345678901234567890" in base32.
pub const RFC_SEED_B32: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

/// Runs `breakglass token password set` on a pseudo-terminal: types the current access code
/// when `old` is given, then the new one twice.
pub fn set_access_code_via_pty(reader: &str, old: Option<&str>, new: &str) {
    let mut cmd = Command::new(BIN);
    cmd.args(["token", "password", "set", "--reader", reader]);
    let mut p = rexpect::session::spawn_command(cmd, Some(10_000)).expect("spawn on a pty");
    if let Some(old) = old {
        p.exp_string("Token access code (OATH password): ").unwrap();
        p.send_line(old).unwrap();
    }
    p.exp_string("New access code: ").unwrap();
    p.send_line(new).unwrap();
    p.exp_string("Repeat the new access code: ").unwrap();
    p.send_line(new).unwrap();
    p.exp_string("Access code set").unwrap();
    p.exp_eof().unwrap();
}

/// The payload the vault tests seal (AWS's documentation example key; not a real secret).
pub fn sample_payload() -> breakglass::vault::Payload {
    breakglass::vault::Payload {
        access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
        secret_access_key: secrecy::SecretString::from(
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_owned(),
        ),
        mfa_serial: "arn:aws:iam::123456789012:mfa/breakglass".into(),
        user_arn: "arn:aws:iam::123456789012:user/breakglass".into(),
        created: 1_700_000_000,
        rotated: 1_700_000_000,
        // As vaults sealed before the profile was bound: the known-answer vector has none.
        profile: None,
    }
}

/// The log's records with the first one changed by `edit` and every `prev` recomputed: a
/// rewrite that keeps the hash chain intact.
pub fn rechain(log: &[u8], edit: impl Fn(&str) -> String) -> Vec<u8> {
    let mut prev = "0".repeat(64);
    let mut out = Vec::new();
    for (i, line) in String::from_utf8_lossy(log).lines().enumerate() {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        v["prev"] = serde_json::Value::String(prev.clone());
        let mut text = v.to_string();
        if i == 0 {
            text = edit(&text);
        }
        prev = data_encoding::HEXLOWER
            .encode(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()).as_ref());
        out.extend_from_slice(text.as_bytes());
        out.push(b'\n');
    }
    out
}

/// Every readable mapping of process `pid`, read through `/proc/PID/mem` (root only: the
/// agent is not dumpable); counts the occurrences of each needle.
pub fn scan_memory(pid: u64, needles: &[&str]) -> Vec<usize> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut hits = vec![0; needles.len()];
    let mut scanned = 0usize;
    for line in maps.lines() {
        let mut parts = line.split_whitespace();
        let (range, perms) = (parts.next().unwrap(), parts.next().unwrap());
        let name = parts.nth(3).unwrap_or("");
        if !perms.starts_with('r') || name == "[vvar]" || name == "[vsyscall]" {
            continue;
        }
        let (a, b) = range.split_once('-').unwrap();
        let (a, b) = (
            u64::from_str_radix(a, 16).unwrap(),
            u64::from_str_radix(b, 16).unwrap(),
        );
        let mut buf = vec![0u8; (b - a) as usize];
        if std::io::Seek::seek(&mut mem, std::io::SeekFrom::Start(a)).is_err()
            || std::io::Read::read_exact(&mut mem, &mut buf).is_err()
        {
            continue;
        }
        scanned += buf.len();
        for (i, n) in needles.iter().enumerate() {
            hits[i] += buf.windows(n.len()).filter(|w| *w == n.as_bytes()).count();
        }
    }
    assert!(scanned > 1 << 20, "scanned only {scanned} bytes");
    hits
}

pub fn my_uid() -> u32 {
    std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap())
}

pub fn is_root() -> bool {
    my_uid() == 0
}

/// The pid of this test process's child whose arguments include every one of `args` (a pty
/// child, whose pid rexpect keeps to itself).
pub fn child_pid(args: &[&str]) -> u64 {
    let me = std::process::id().to_string();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let parent = status.lines().find_map(|l| l.strip_prefix("PPid:"));
        if parent.map(str::trim) != Some(me.as_str()) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let argv: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args.iter().all(|a| argv.contains(&a.as_bytes())) {
            return pid;
        }
    }
    panic!("no child process runs with {args:?}");
}
