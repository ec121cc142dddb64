//! Interoperability with Yubico's ykman, both ways, through the real pcscd and the soft token in
//! vpcd slot 01. ykman accepting the soft token proves it speaks the real YKOATH protocol; our
//! client agreeing with ykman proves it reads a token the way Yubico's own tool does.

use crate::common;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::*;

const SLOT: u16 = 1;

struct Ykman {
    exe: PathBuf,
    home: tempfile::TempDir,
    reader: String,
}

impl Ykman {
    fn new(exe: PathBuf, reader: String) -> Self {
        Self {
            exe,
            home: tempfile::tempdir().unwrap(),
            reader,
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("setsid");
        cmd.arg("-w")
            .arg(&self.exe)
            .args(["--reader", &self.reader])
            .args(args)
            // Keep ykman's remembered keys and history out of the real home.
            .env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.home.path());
        run_with_input(cmd, None)
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "ykman {args:?} failed: {}{}",
            stdout(&o),
            stderr(&o)
        );
        stdout(&o)
    }
}

fn setup(test: &str) -> Option<(SoftToken, Ykman)> {
    if !pcsc_ready(test) {
        return None;
    }
    let exe = ykman(test)?;
    let token = SoftToken::approve(SLOT);
    let y = Ykman::new(exe, token.reader());
    Some((token, y))
}

/// Runs `f` until both codes were read within one 30 s window.
fn in_one_window(mut f: impl FnMut() -> (String, String)) -> (String, String) {
    for _ in 0..3 {
        let before = unix_now() / 30;
        let pair = f();
        if unix_now() / 30 == before {
            return pair;
        }
    }
    panic!("three window boundaries in a row");
}

fn ours(reader: &str, name: &str, access_code: Option<&str>) -> String {
    let mut args = vec!["token", "code", name, "--reader", reader];
    let input = access_code.map(|c| format!("{c}\n"));
    if input.is_some() {
        args.push("--password-stdin");
    }
    ok(bg(&args, input.as_deref())).trim().to_owned()
}

/// `ykman oath accounts code -s NAME` prints just the code.
fn theirs(y: &Ykman, name: &str, password: Option<&str>) -> String {
    let mut args = vec!["oath", "accounts", "code", "-s", name];
    if let Some(p) = password {
        args.extend(["-p", p]);
    }
    y.ok(&args).trim().to_owned()
}

#[test]
fn account_added_by_ykman_gives_the_same_code_in_breakglass() {
    let Some((token, y)) = setup("account_added_by_ykman_gives_the_same_code_in_breakglass") else {
        return;
    };
    let r = token.reader();
    y.ok(&[
        "oath",
        "accounts",
        "add",
        "-f",
        "plain",
        "JBSWY3DPEHPK3PXPJBSWY3DP",
    ]);
    y.ok(&[
        "oath",
        "accounts",
        "add",
        "-f",
        "--touch",
        "--digits",
        "8",
        "--algorithm",
        "SHA256",
        "--issuer",
        "AWS",
        "fancy",
        RFC_SEED_B32,
    ]);
    y.ok(&[
        "oath",
        "accounts",
        "add",
        "-f",
        "--period",
        "60",
        "slow",
        RFC_SEED_B32,
    ]);
    let list = ok(bg(&["token", "list", "--reader", &r], None));
    for needle in ["plain", "AWS:fancy", "slow", "60 s"] {
        assert!(list.contains(needle), "{needle} missing from {list}");
    }
    let fancy = list.lines().find(|l| l.contains("AWS:fancy")).unwrap();
    assert!(
        fancy.contains("SHA256") && fancy.ends_with("yes"),
        "{fancy}"
    );
    for name in ["plain", "AWS:fancy"] {
        let (a, b) = in_one_window(|| (ours(&r, name, None), theirs(&y, name, None)));
        assert_eq!(a, b, "{name}");
        assert_eq!(a.len(), if name == "plain" { 6 } else { 8 });
    }
    // A 60 s account: compare within one 60 s window.
    let (a, b) = in_one_window(|| (ours(&r, "slow", None), theirs(&y, "slow", None)));
    assert_eq!(a, b);
}

#[test]
fn account_added_by_breakglass_is_listed_and_computed_by_ykman() {
    let Some((token, y)) = setup("account_added_by_breakglass_is_listed_and_computed_by_ykman")
    else {
        return;
    };
    let r = token.reader();
    ok(bg(
        &[
            "token",
            "add",
            "bg-touch",
            "--touch",
            "--algorithm",
            "sha512",
            "--digits",
            "8",
            "--secret-stdin",
            "--reader",
            &r,
        ],
        Some(RFC_SEED_B32),
    ));
    ok(bg(
        &["token", "add", "bg-plain", "--secret-stdin", "--reader", &r],
        Some(RFC_SEED_B32),
    ));
    ok(bg(
        &[
            "token",
            "add",
            "bg-hotp",
            "--type",
            "hotp",
            "--secret-stdin",
            "--reader",
            &r,
        ],
        Some(RFC_SEED_B32),
    ));
    let listed = y.ok(&["oath", "accounts", "list", "--oath-type"]);
    for needle in ["bg-touch", "bg-plain", "bg-hotp"] {
        assert!(listed.contains(needle), "{listed}");
    }
    assert!(
        listed
            .lines()
            .any(|l| l.contains("bg-hotp") && l.contains("HOTP")),
        "{listed}"
    );
    for name in ["bg-touch", "bg-plain"] {
        let (a, b) = in_one_window(|| (ours(&r, name, None), theirs(&y, name, None)));
        assert_eq!(a, b, "{name}");
    }
    // HOTP: ykman takes counter 0, we take counter 1 (the RFC 4226 sequence).
    assert_eq!(theirs(&y, "bg-hotp", None), "755224");
    assert_eq!(ours(&r, "bg-hotp", None), "287082");
    y.ok(&["oath", "accounts", "delete", "-f", "bg-plain"]);
    let list = ok(bg(&["token", "list", "--reader", &r], None));
    assert!(
        !list.contains("bg-plain") && list.contains("bg-touch"),
        "{list}"
    );
}

#[test]
fn access_code_set_by_either_tool_works_in_the_other() {
    let Some((token, y)) = setup("access_code_set_by_either_tool_works_in_the_other") else {
        return;
    };
    let r = token.reader();
    y.ok(&["oath", "accounts", "add", "-f", "acct", RFC_SEED_B32]);
    // ykman sets it, breakglass uses it.
    y.ok(&["oath", "access", "change", "-n", "from-ykman"]);
    fails(
        bg(&["token", "code", "acct", "--reader", &r], None),
        4,
        &["access code"],
    );
    fails(
        bg(
            &["token", "code", "acct", "--password-stdin", "--reader", &r],
            Some("nope\n"),
        ),
        4,
        &["wrong"],
    );
    let (a, b) = in_one_window(|| {
        (
            ours(&r, "acct", Some("from-ykman")),
            theirs(&y, "acct", Some("from-ykman")),
        )
    });
    assert_eq!(a, b);
    // breakglass changes it (on a terminal), ykman uses it.
    set_access_code_via_pty(&r, Some("from-ykman"), "from-breakglass");
    let o = y.run(&["oath", "accounts", "code", "-s", "acct", "-p", "from-ykman"]);
    assert!(!o.status.success(), "ykman accepted the old access code");
    let (a, b) = in_one_window(|| {
        (
            ours(&r, "acct", Some("from-breakglass")),
            theirs(&y, "acct", Some("from-breakglass")),
        )
    });
    assert_eq!(a, b);
    // And ykman can remove it again.
    y.ok(&[
        "oath",
        "access",
        "change",
        "-p",
        "from-breakglass",
        "--clear",
    ]);
    let list = ok(bg(&["token", "list", "--reader", &r], None));
    assert!(list.contains("access code not set"), "{list}");
}

#[test]
fn long_account_lists_chain_across_responses_for_both_tools() {
    let Some((token, y)) = setup("long_account_lists_chain_across_responses_for_both_tools") else {
        return;
    };
    let r = token.reader();
    let names: Vec<String> = (0..14)
        .map(|i| format!("Issuer-{i:02}:long-account-name-number-{i:02}"))
        .collect();
    for n in &names {
        ok(bg(
            &["token", "add", n, "--secret-stdin", "--reader", &r],
            Some(RFC_SEED_B32),
        ));
    }
    let listed = y.ok(&["oath", "accounts", "list"]);
    for n in &names {
        assert!(listed.contains(n.as_str()), "ykman lost {n}: {listed}");
    }
    let codes = y.ok(&["oath", "accounts", "code"]);
    assert_eq!(
        codes
            .lines()
            .filter(|l| l.contains("long-account-name"))
            .count(),
        names.len(),
        "{codes}"
    );
    let ours = ok(bg(&["token", "list", "--reader", &r], None));
    assert_eq!(
        ours.lines()
            .filter(|l| l.contains("long-account-name"))
            .count(),
        names.len()
    );
}
