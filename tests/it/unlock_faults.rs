//! The activation when something is wrong around it, through the real binary, pcscd and the
//! soft token: an STS that never answers does not hold the token; a second token does not
//! break the hand-off; every attempt, whatever ends it, leaves a start and one outcome.

use crate::common;

use std::net::SocketAddr;
use std::process::Command;

use serde_json::Value;

use breakglass::sandbox::sts::Sts;
use common::faults;
use common::home::*;
use common::*;

/// Enrols `prod` at the emulator ([`enrol_at_emulator`]); returns the key's secret.
fn enrol(home: &Home, sts: &Sts, reader: &str) -> String {
    enrol_at_emulator(home, sts, "prod", reader).1
}

/// The profile's STS endpoint, replaced.
fn point_sts_at(home: &Home, from: &str, to: &str) {
    let config = std::fs::read_to_string(home.config_file()).unwrap();
    assert!(config.contains(from), "{config}");
    std::fs::write(home.config_file(), config.replace(from, to)).unwrap();
}

/// Appends settings to the profile (the last table of the config).
fn set(home: &Home, lines: &str) {
    let mut config = std::fs::read_to_string(home.config_file()).unwrap();
    config += lines;
    std::fs::write(home.config_file(), config).unwrap();
}

/// The MFA windows marked as used, as the state file holds them (empty when there is none).
fn windows(home: &Home) -> String {
    home.files()
        .into_iter()
        .find(|(p, _)| p.ends_with("mfa-windows.json"))
        .map(|(_, b)| String::from_utf8(b).unwrap())
        .unwrap_or_default()
}

/// `unlock` on a pty, the holders answering every prompt it asks; what it printed.
fn unlock_answering(home: &Home, reader: &str) -> String {
    unlock_answering_after(home, reader, || {})
}

/// [`unlock_answering`], running `first` when the first prompt appears, before it is answered.
fn unlock_answering_after(home: &Home, reader: &str, first: impl FnOnce()) -> String {
    let mut p = pty(
        home.command(&[
            "unlock",
            "prod",
            "--reason",
            "fault drill",
            "--reader",
            reader,
        ]),
        30_000,
    );
    answer_until_end(&mut p, first)
}

/// The audit log's records.
fn records(home: &Home) -> Vec<Value> {
    home.audit()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The activation records (starts and outcomes) in the log, in order.
fn attempts(home: &Home) -> Vec<Value> {
    records(home)
        .into_iter()
        .filter(|r| {
            let e = r["event"].as_str().unwrap_or_default();
            e == "activation" || e == "activation started"
        })
        .collect()
}

/// Asserts that `log` is pairs of a start and its outcome (same attempt id), and returns the
/// outcomes.
fn paired(log: &[Value]) -> Vec<Value> {
    assert!(
        log.len().is_multiple_of(2),
        "a start without an outcome: {log:#?}"
    );
    log.chunks(2)
        .map(|pair| {
            assert_eq!(pair[0]["event"], "activation started", "{pair:#?}");
            assert_eq!(pair[1]["event"], "activation", "{pair:#?}");
            let id = pair[0]["attempt"].as_str().unwrap();
            assert_eq!(id.len(), 16, "{pair:#?}");
            assert_eq!(pair[1]["attempt"], id, "{pair:#?}");
            assert!(pair[0]["pid"].as_u64().is_some_and(|p| p > 0), "{pair:#?}");
            pair[1].clone()
        })
        .collect()
}

#[test]
fn every_attempt_leaves_a_start_and_one_outcome_with_what_was_typed() {
    let test = "every_attempt_leaves_a_start_and_one_outcome_with_what_was_typed";
    if !pcsc_ready(test) {
        return;
    }
    let mut token = SoftToken::approve(0);
    let r = token.reader();
    let sts = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let home = Home::new();
    enrol(&home, &sts, &r);

    // The same person twice, typed differently: both spellings are on the record.
    let out = unlock(&home, "prod", &r, ("Alice", "alice"), PASSPHRASE);
    assert!(out.contains("two different people must take part"), "{out}");
    // A wrong passphrase.
    let out = unlock(&home, "prod", &r, ("Alice", "Bob"), "not the passphrase");
    assert!(out.contains("did not open this vault"), "{out}");

    // No token: the attempt ends before anyone is asked anything, and is recorded.
    token.pull();
    let mut p = pty(
        home.command(&[
            "unlock",
            "prod",
            "--reason",
            "token in the safe",
            "--reader",
            &r,
        ]),
        30_000,
    );
    let out = p.exp_eof().unwrap();
    assert!(
        out.contains("no token is inserted") && out.contains("next: "),
        "{out}"
    );
    assert!(!out.contains("type your name"), "{out}");

    let outcomes = paired(&attempts(&home));
    assert_eq!(outcomes.len(), 3, "{outcomes:#?}");
    assert_eq!(outcomes[0]["password_holder"], "Alice");
    assert_eq!(outcomes[0]["token_holder"], "alice");
    assert!(outcomes[0]["outcome"]
        .as_str()
        .unwrap()
        .contains("two different people"));
    assert_eq!(outcomes[1]["password_holder"], "Alice");
    assert_eq!(outcomes[1]["token_holder"], "Bob");
    assert!(outcomes[1]["outcome"]
        .as_str()
        .unwrap()
        .contains("did not open this vault"));
    assert_eq!(outcomes[2]["password_holder"], "");
    assert_eq!(outcomes[2]["reason"], "token in the safe");
    assert!(
        outcomes[2]["outcome"]
            .as_str()
            .unwrap()
            .starts_with("failure: no token is inserted"),
        "{outcomes:#?}"
    );
    assert_eq!(sts.counts().get_session_token, 0);
    let v = home.command(&["audit", "verify"]).output().unwrap();
    assert!(v.status.success(), "{}", stderr(&v));
    assert!(!stderr(&v).contains("no outcome record"), "{}", stderr(&v));
}

#[test]
fn a_second_token_does_not_break_the_hand_off() {
    let test = "a_second_token_does_not_break_the_hand_off";
    if !pcsc_ready(test) {
        return;
    }
    let enrolled = SoftToken::approve(0);
    let other = SoftToken::approve(1);
    let sts = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let home = Home::new();
    enrol(&home, &sts, &enrolled.reader());

    // Both readers hold a token; the profile names none, the command line neither: the one
    // the vault knows is used, from `exec` as from any command.
    let mut cmd = home.command(&["exec", "prod", "--", "sh", "-c"]);
    cmd.arg("printf '%s' \"$AWS_ACCESS_KEY_ID\"");
    let mut p = pty(cmd, 30_000);
    answer_ceremony(&mut p, Some("a second token is plugged in"));
    let out = p.exp_eof().unwrap();
    assert!(out.contains("ASIA"), "{out}");
    assert!(!out.contains("several readers"), "{out}");
    assert_eq!(sts.counts().get_session_token, 1);

    // Every command that opens a token takes --reader.
    for command in ["credential-process", "exec", "env", "console", "unlock"] {
        let o = bg(&[command, "--help"], None);
        assert!(stdout(&o).contains("--reader"), "{command}: {}", stdout(&o));
    }
    // The agent recorded who stored the session, and status shows it: breakglass itself.
    let stored = home.audit_with("\"event\":\"session stored\"");
    let stored = stored
        .lines()
        .find(|l| l.contains("\"event\":\"session stored\""))
        .unwrap();
    assert!(
        stored.contains("\"kind\":\"session\"") && stored.contains("/breakglass\""),
        "{stored}"
    );
    let status = ok(home
        .command(&["status"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap());
    assert!(status.contains("stored by process "), "{status}");
    assert!(status.contains("/breakglass)"), "{status}");
    ok(home
        .command(&["lock", "prod"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap());
    drop(other);
}

#[test]
fn an_sts_that_never_answers_does_not_hold_the_token() {
    let test = "an_sts_that_never_answers_does_not_hold_the_token";
    if !pcsc_ready(test) {
        return;
    }
    let token = SoftToken::approve(0);
    let r = token.reader();
    let sts = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let home = Home::new();
    enrol(&home, &sts, &r);

    // An endpoint that accepts the connection, reads, and never answers.
    let hung = faults::Proxy::start(None, faults::Fault::Hang);
    let hung_url = hung.url();
    point_sts_at(&home, &sts.endpoint(), &hung_url);
    // The deadline far away: the ceremony is killed while it waits, before it gives up.
    set(&home, "call_timeout_secs = 300\n");

    let mut p = pty(
        home.command(&["unlock", "prod", "--reason", "STS hangs", "--reader", &r]),
        30_000,
    );
    answer_ceremony(&mut p, None);
    p.exp_string("Calling STS GetSessionToken").unwrap();
    hung.wait_for_requests(1);

    // While the ceremony waits on the network, the token answers others: `token list` (a
    // PC/SC transaction of its own) ends, within `timeout`'s bound, with the accounts.
    let mut list = Command::new("timeout");
    list.args(["10", BIN, "token", "list", "--reader", &r]);
    home.env(&mut list);
    let o = run_with_input(list, None);
    assert!(
        o.status.success(),
        "token list did not answer while STS hung (status {:?}): {}",
        o.status,
        stderr(&o)
    );
    assert!(
        stdout(&o).contains(&format!("Reader {r:?}: token with OATH")),
        "{}",
        stdout(&o)
    );
    p.process_mut()
        .kill(rexpect::process::Signal::SIGKILL)
        .unwrap();

    // Killed mid-call: a start without an outcome.
    let log = attempts(&home);
    assert_eq!(log.len(), 1, "{log:#?}");
    assert_eq!(log[0]["event"], "activation started");
    // `audit verify` names it (the chain itself is intact).
    let v = home.command(&["audit", "verify"]).output().unwrap();
    assert!(v.status.success(), "{}", stderr(&v));
    let warning = stderr(&v);
    assert!(
        warning.contains("the activation of profile prod started at")
            && warning.contains(log[0]["attempt"].as_str().unwrap())
            && warning.contains("has no outcome record"),
        "{warning}"
    );
}

#[test]
fn a_refused_sts_ends_the_attempt_before_anyone_is_asked() {
    let test = "a_refused_sts_ends_the_attempt_before_anyone_is_asked";
    if !pcsc_ready(test) {
        return;
    }
    let token = SoftToken::approve(0);
    let r = token.reader();
    let sts = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let home = Home::new();
    enrol(&home, &sts, &r);
    let refused = faults::ClosedPort::new();
    point_sts_at(&home, &sts.endpoint(), &refused.url());

    let out = unlock_answering(&home, &r);
    assert!(!out.contains("type your name"), "{out}");
    assert!(
        out.contains("cannot reach AWS STS at 127.0.0.1:") && out.contains("connection refused"),
        "{out}"
    );
    assert!(out.contains("next: "), "{out}");
    assert!(
        !out.contains("DispatchFailure") && !out.contains("ConnectorError"),
        "{out}"
    );
    let outcomes = paired(&attempts(&home));
    assert_eq!(outcomes.len(), 1);
    assert!(outcomes[0]["outcome"]
        .as_str()
        .unwrap()
        .contains("connection refused"));
    assert_eq!(windows(&home), "", "no window may be marked");
}

#[test]
fn a_window_is_spent_only_when_the_request_may_have_reached_sts() {
    let test = "a_window_is_spent_only_when_the_request_may_have_reached_sts";
    if !pcsc_ready(test) {
        return;
    }
    let token = SoftToken::approve(0);
    let r = token.reader();
    let sts = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let home = Home::new();
    enrol(&home, &sts, &r);
    set(&home, "connect_timeout_secs = 1\ncall_timeout_secs = 1\n");

    // The probe's connection is taken, then the port closes (before the holders answer, so
    // no later connection can wait in its queue): the call itself is refused, so its code
    // never left and its window stays free.
    let mut once = faults::OneConnection::new();
    let once_url = once.url();
    point_sts_at(&home, &sts.endpoint(), &once_url);
    let out = unlock_answering_after(&home, &r, || once.accept_then_close());
    assert!(out.contains("connection refused"), "{out}");
    assert!(out.contains("Vault opened"), "the vault was opened: {out}");
    assert!(!windows(&home).contains("arn:"), "{}", windows(&home));

    // An STS that takes the request and never answers: the call ends at its deadline, in
    // one line, and the window counts as used (the request may have arrived).
    let hung = faults::Proxy::start(None, faults::Fault::Hang);
    point_sts_at(&home, &once_url, &hung.url());
    let out = unlock_answering(&home, &r);
    assert!(out.contains("cannot reach AWS STS"), "{out}");
    assert!(out.contains("next: "), "{out}");
    assert!(!out.contains("DispatchFailure"), "{out}");
    assert!(hung.requests() >= 1);
    assert!(
        windows(&home).contains("arn:aws:iam::"),
        "{}",
        windows(&home)
    );

    let outcomes = paired(&attempts(&home));
    assert_eq!(outcomes.len(), 2, "{outcomes:#?}");
    assert_eq!(sts.counts().get_session_token, 0);
}

/// `unlock` on a pty, answered up to the moment the token blinks to open the vault.
fn unlock_until_the_seal_touch(home: &Home, reader: &str) -> rexpect::session::PtySession {
    let cmd = home.command(&[
        "unlock",
        "prod",
        "--reason",
        "touch drill",
        "--reader",
        reader,
    ]);
    answer_until_the_seal_touch(cmd)
}

/// `cmd` (an unlock) on a pty, answered up to the moment the token blinks to open the vault.
fn answer_until_the_seal_touch(cmd: Command) -> rexpect::session::PtySession {
    let mut p = pty(cmd, 30_000);
    answer_ceremony(&mut p, None);
    p.exp_string("touch the token now (opening the vault)")
        .unwrap();
    p
}

#[test]
fn a_ceremony_killed_or_a_token_pulled_while_it_blinks_leaves_everything_as_it_was() {
    let test = "a_ceremony_killed_or_a_token_pulled_while_it_blinks_leaves_everything_as_it_was";
    if !pcsc_ready(test) {
        return;
    }
    // The soft token touches while this file exists: the test's finger.
    let finger = tempfile::tempdir().unwrap();
    let touch = finger.path().join("touch");
    std::fs::write(&touch, b"").unwrap();
    let policy = format!("when-exists:{}", touch.display());
    let mut token = SoftToken::start(Slot::claim(0), &policy, 20);
    let r = token.reader();
    let sts = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let home = Home::new();
    let secret = enrol(&home, &sts, &r);
    let vault = std::fs::read(home.vault("prod")).unwrap();
    let config = std::fs::read(home.config_file()).unwrap();
    std::fs::remove_file(&touch).unwrap();

    // kill -9 at each prompt: a start without an outcome each time.
    for (n, prompt) in [
        "Password holder, type your name: ",
        "Password holder, type the vault passphrase (not shown): ",
    ]
    .into_iter()
    .enumerate()
    {
        let mut p = pty(
            home.command(&["unlock", "prod", "--reason", "kill drill", "--reader", &r]),
            30_000,
        );
        for (ask, answer) in [
            ("Password holder, type your name: ", "Alice"),
            ("Token holder, type your name: ", "Bob"),
            (
                "Password holder, type the vault passphrase (not shown): ",
                "",
            ),
        ] {
            p.exp_string(ask).unwrap();
            if ask == prompt {
                p.process_mut()
                    .kill(rexpect::process::Signal::SIGKILL)
                    .unwrap();
                break;
            }
            p.send_line(answer).unwrap();
        }
        let log = attempts(&home);
        assert_eq!(log.len(), n + 1, "{log:#?}");
        assert!(log.iter().all(|r| r["event"] == "activation started"));
    }

    // kill -9 while the token blinks: the same; once the blinking ends (a card finishes the
    // command it was given, whoever asked: here the holder touches), the token answers others.
    let mut p = unlock_until_the_seal_touch(&home, &r);
    p.process_mut()
        .kill(rexpect::process::Signal::SIGKILL)
        .unwrap();
    let log = attempts(&home);
    assert_eq!(log.len(), 3, "{log:#?}");
    assert!(log.iter().all(|r| r["event"] == "activation started"));
    std::fs::write(&touch, b"").unwrap();
    let mut list = Command::new("timeout");
    list.args(["10", BIN, "token", "list", "--reader", &r]);
    home.env(&mut list);
    let o = run_with_input(list, None);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::remove_file(&touch).unwrap();

    // Pulled while it blinks: one line with its next step, and one outcome record.
    let mut p = unlock_until_the_seal_touch(&home, &r);
    token.pull();
    let out = p.exp_eof().unwrap();
    assert!(
        out.contains("breakglass: error: the token was removed"),
        "{out}"
    );
    assert!(out.contains("next: "), "{out}");
    let log = attempts(&home);
    assert_eq!(log.len(), 5, "{log:#?}");
    let outcomes = paired(&log[3..]);
    assert!(
        outcomes[0]["outcome"]
            .as_str()
            .unwrap()
            .contains("the token was removed"),
        "{outcomes:#?}"
    );
    assert_eq!(outcomes[0]["password_holder"], "Alice");

    // Nothing changed on disk, no secret anywhere, nothing reached STS.
    assert_eq!(std::fs::read(home.vault("prod")).unwrap(), vault);
    assert_eq!(std::fs::read(home.config_file()).unwrap(), config);
    assert_eq!(sts.counts().get_session_token, 0);
    home.assert_no_secret(&[("secret access key", &secret), ("passphrase", PASSPHRASE)]);
}

/// A small tmpfs mounted at a path (root only), unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// `None` (with SKIPPED) when this process cannot mount; under `BREAKGLASS_REQUIRE_ALL=1`
    /// (CI, which runs as root) that is a failure.
    fn mount(test: &str, at: &std::path::Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(at).unwrap();
        let o = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .output();
        match o {
            Ok(o) if o.status.success() => Some(Self(at.to_owned())),
            other => {
                assert!(
                    !crate::common::require_all(),
                    "BREAKGLASS_REQUIRE_ALL=1 but a tmpfs cannot be mounted (run as root): {other:?}"
                );
                eprintln!("SKIPPED {test}: cannot mount a tmpfs here (needs root)");
                None
            }
        }
    }

    /// Fills it up: a file as large as what is free.
    fn fill(&self) {
        let mut f = std::fs::File::create(self.0.join("filler")).unwrap();
        let block = vec![0u8; 4096];
        while std::io::Write::write_all(&mut f, &block).is_ok() {}
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_for_the_audit_log_stops_the_attempt_before_anyone_is_asked() {
    let test = "a_full_disk_for_the_audit_log_stops_the_attempt_before_anyone_is_asked";
    if !pcsc_ready(test) {
        return;
    }
    let token = SoftToken::approve(0);
    let r = token.reader();
    let sts = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let home = Home::new();
    let Some(disk) = Tmpfs::mount(test, &home.dir.path().join("state"), "1m") else {
        return;
    };
    let secret = enrol(&home, &sts, &r);
    let vault = std::fs::read(home.vault("prod")).unwrap();
    disk.fill();
    // The log's last page may still take a few lines: attempts that end at once (a reader
    // that does not exist) use it up, until a start record no longer fits.
    let mut full = false;
    for _ in 0..40 {
        let mut p = pty(
            home.command(&[
                "unlock",
                "prod",
                "--reason",
                "x",
                "--reader",
                "No Such Reader",
            ]),
            30_000,
        );
        let out = p.exp_eof().unwrap();
        assert!(out.contains("next: "), "{out}");
        if out.contains("cannot write the audit log") {
            full = true;
            break;
        }
        assert!(out.contains("no reader matches"), "{out}");
    }
    assert!(full, "the audit log never filled up");
    let audit = home.audit();

    let out = unlock_answering(&home, &r);
    assert!(!out.contains("type your name"), "{out}");
    assert!(
        out.contains("cannot write the audit log") && out.contains("No space left on device"),
        "{out}"
    );
    assert!(
        out.contains("next: ") && out.contains("disk space"),
        "{out}"
    );
    // Nothing was sent, nothing changed, and the log is as it was (no half line).
    assert_eq!(sts.counts().get_session_token, 0);
    assert_eq!(std::fs::read(home.vault("prod")).unwrap(), vault);
    assert_eq!(home.audit(), audit);
    std::fs::remove_file(disk.0.join("filler")).unwrap();
    let v = home.command(&["audit", "verify"]).output().unwrap();
    assert!(v.status.success(), "{}", stderr(&v));
    home.assert_no_secret(&[("secret access key", &secret), ("passphrase", PASSPHRASE)]);
}

#[test]
fn pcscd_stopping_mid_ceremony_ends_it_in_one_line_with_a_record() {
    let test = "pcscd_stopping_mid_ceremony_ends_it_in_one_line_with_a_record";
    if !pcsc_ready(test) {
        return;
    }
    let finger = tempfile::tempdir().unwrap();
    let touch = finger.path().join("touch");
    std::fs::write(&touch, b"").unwrap();
    let policy = format!("when-exists:{}", touch.display());
    let token = SoftToken::start(Slot::claim(0), &policy, 20);
    let r = token.reader();
    let sts = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let home = Home::new();
    let secret = enrol(&home, &sts, &r);
    let vault = std::fs::read(home.vault("prod")).unwrap();
    std::fs::remove_file(&touch).unwrap();

    // The ceremony reaches pcscd through a socket that stops while the token blinks.
    let pcscd = faults::PcscdProxy::start();
    let mut cmd = home.command(&["unlock", "prod", "--reason", "pcscd drill", "--reader", &r]);
    cmd.env("PCSCLITE_CSOCK_NAME", pcscd.path());
    let mut p = answer_until_the_seal_touch(cmd);
    pcscd.stop();
    let out = p.exp_eof().unwrap();
    std::fs::write(&touch, b"").unwrap();
    assert!(
        out.contains("breakglass: error: the smart card service (pcscd) is not running"),
        "{out}"
    );
    assert!(out.contains("next: start it with"), "{out}");
    let outcomes = paired(&attempts(&home));
    assert_eq!(outcomes.len(), 1, "{outcomes:#?}");
    assert!(
        outcomes[0]["outcome"]
            .as_str()
            .unwrap()
            .contains("pcscd) is not running"),
        "{outcomes:#?}"
    );
    assert_eq!(std::fs::read(home.vault("prod")).unwrap(), vault);
    assert_eq!(sts.counts().get_session_token, 0);
    home.assert_no_secret(&[("secret access key", &secret), ("passphrase", PASSPHRASE)]);
}

#[test]
fn an_unlock_finds_the_log_rewritten_before_a_sealed_record() {
    let test = "an_unlock_finds_the_log_rewritten_before_a_sealed_record";
    if !pcsc_ready(test) {
        return;
    }
    let token = SoftToken::approve(0);
    let r = token.reader();
    let sts = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let home = Home::new();
    enrol(&home, &sts, &r);
    let out = unlock(&home, "prod", &r, ("Alice", "Bob"), PASSPHRASE);
    assert!(out.contains("\"Version\":1"), "{out}");
    assert!(!out.contains("WARNING"), "{out}");
    let sealed = home.audit_with("\"seal\":");
    assert!(
        sealed
            .lines()
            .any(|l| l.contains("\"event\":\"activation\"") && l.contains("\"seal\":")),
        "the granted activation is sealed: {sealed}"
    );
    ok(home.command(&["lock", "prod"]).output().unwrap());

    // Someone without the vault rewrites the enrolment record and recomputes every `prev`:
    // the chain holds, so `audit verify` cannot tell.
    let path = home.dir.path().join("state/breakglass/audit.log");
    let rewritten = rechain(&std::fs::read(&path).unwrap(), |first| {
        first.replace("\"profile\":\"prod\"", "\"profile\":\"elsewhere\"")
    });
    std::fs::write(&path, rewritten).unwrap();
    ok(home.command(&["audit", "verify"]).output().unwrap());

    // The next unlock, with the vault open, checks the seals and tells the holders.
    home.skip_ahead(Some(&sts), 60);
    let out = unlock(&home, "prod", &r, ("Alice", "Bob"), PASSPHRASE);
    assert!(
        out.contains("WARNING: the audit log was rewritten"),
        "{out}"
    );
    assert!(
        out.contains("\"Version\":1"),
        "the unlock still works: {out}"
    );
    let broken = home.audit_with("\"event\":\"audit seals broken\"");
    assert!(
        broken.contains("\"event\":\"audit seals broken\""),
        "{broken}"
    );

    // A log whose chain is broken (an edit without recomputing) cannot be checked: that must
    // not keep the holders out. They are told, and the activation is recorded all the same.
    ok(home.command(&["lock", "prod"]).output().unwrap());
    let log = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        log.replacen("\"profile\":\"elsewhere\"", "\"profile\":\"edited\"", 1),
    )
    .unwrap();
    home.skip_ahead(Some(&sts), 60);
    let out = unlock(&home, "prod", &r, ("Alice", "Bob"), PASSPHRASE);
    assert!(
        out.contains("WARNING: the audit log could not be checked"),
        "{out}"
    );
    assert!(
        out.contains("\"Version\":1"),
        "the unlock still works: {out}"
    );
}
