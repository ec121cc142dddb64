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
