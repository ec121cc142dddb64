//! `breakglass demo`, the README's first command: the whole flow on the built-in sandbox ends
//! with the console page, and nothing is left behind.

use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_breakglass");

#[test]
fn the_demo_runs_the_whole_flow_and_ends_in_the_console() {
    let tmp = tempfile::tempdir().unwrap();
    let o = Command::new(BIN)
        .arg("demo")
        .env("TMPDIR", tmp.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for needle in [
        "Enrolled: key ",
        "its PIV application seals the vault",
        "Attestation verified: firmware 5.7.1",
        "types the PIV PIN (2 tries left)",
        "granted to Alice and Bob",
        "refused: passphrase or token did not open this vault",
        "refused: MultiFactorAuthentication failed",
        "role                  arn:aws:sts::123456789012:assumed-role/BreakGlass/Alice+Bob",
        "source identity       Alice+Bob",
        "\"event\":\"console sign-in URL\"",
        "hash chain intact",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
    assert!(!out.contains("SigninToken="), "the sign-in URL is a secret");
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "the temporary home is removed"
    );
}

/// `breakglass demo ceremonies`: a rotation with its transcript, the old key deactivated on
/// day 100 and deleted on day 110, with the emulator's IAM showing each step; then a 2-of-3
/// custodian rekey and an unlock by two of the three; a drill of 50 accounts.
#[test]
fn the_ceremonies_demo_rotates_the_key_and_retires_the_old_one() {
    let tmp = tempfile::tempdir().unwrap();
    let o = Command::new(BIN)
        .args(["demo", "ceremonies"])
        .env("TMPDIR", tmp.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let at = |needle: &str| {
        out.find(needle)
            .unwrap_or_else(|| panic!("missing {needle:?} in:\n{out}"))
    };
    // In this order: enrolled with one key, a second key sealed, the transcript, the old key
    // deactivated, then deleted, leaving one key.
    let order = [
        at("Enrolled: key "),
        at("Created the new access key"),
        at("Sealed the new key"),
        at("# Key rotation — profile demo"),
        at("| password holder | Alice |"),
        at("Bob (token holder): ____"),
        at("Deactivated the old key"),
        at(" Inactive"),
        at("Deleted the old key"),
        // Then custodians: 2 of 3 by a rekey, and Carol and Dan unlock without Alice; the
        // audit log's records last.
        at("changed:   converted to custodians (vault format 3): 2 of 3 needed: Alice, Carol, Dan"),
        at("[custodian 1 of 2] types their name: Carol"),
        at("Unlocked by custodians Carol and Dan with token holder Bob"),
        // The drill of 50 accounts finds the three seeded faults.
        at("# Break-glass drill: profile `demo`"),
        at("**Result:** 50 accounts: 47 passed, 3 with findings, 0 skipped; 3 findings"),
        at("| 100000000007 | AssumeRole failed"),
        at("(`trust-no-mfa`)"),
        at("(`trust-others`)"),
        at("| 100000000050 | member-0050 | passed | 3600 s | - |"),
        at("\"step\":\"old key deleted\""),
        at("\"event\":\"rekey\""),
        at("\"custodians\":[\"Carol\",\"Dan\"]"),
        at("\"event\":\"drill\""),
    ];
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}\n{out}");
    let last_keys = out
        .lines()
        .rfind(|l| l.contains("IAM keys of the user:"))
        .unwrap();
    assert_eq!(last_keys.matches("Active").count(), 1, "{last_keys}");
    assert!(!last_keys.contains(','), "one key is left: {last_keys}");
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "the temporary home is removed"
    );
}

/// `demo --factor fido2|oath` seal the demo vault with that factor and still end granted;
/// `demo --browser CMD` hands the console's sign-in URL to CMD (and never prints it).
#[test]
fn the_demo_takes_each_factor_and_a_browser_command() {
    let run = |args: &[&str]| {
        let tmp = tempfile::tempdir().unwrap();
        let o = Command::new(BIN)
            .arg("demo")
            .args(args)
            .env("TMPDIR", tmp.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "{args:?}: {out}\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
        out
    };
    for (factor, said) in [
        ("fido2", "its FIDO2 application seals the vault"),
        (
            "oath",
            "its OATH challenge-response credential seals the vault",
        ),
    ] {
        let out = run(&["--factor", factor]);
        assert!(out.contains(said), "{out}");
        assert!(out.contains(&format!("\"factor\":\"{factor}\"")), "{out}");
        assert!(out.contains("granted to Alice and Bob"), "{out}");
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("browser.sh");
    let got = dir.path().join("url.txt");
    std::fs::write(
        &script,
        format!("#!/bin/sh\nprintf '%s' \"$1\" > '{}'\n", got.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = run(&["--browser", script.to_str().unwrap()]);
    let url = std::fs::read_to_string(&got).unwrap();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.contains("/federation?Action=login"),
        "{url}"
    );
    assert!(url.contains("SigninToken="), "{url}");
    assert!(
        !out.contains("SigninToken="),
        "the URL is not printed: {out}"
    );
}
