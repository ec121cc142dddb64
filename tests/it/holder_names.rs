//! Holder names through the real binary: lookalike names are one person, and names with
//! control characters are refused (what `status` prints is escaped too: a unit test of
//! `cli::status`, since only the breakglass program can hand the agent names).

use crate::common;

use std::net::SocketAddr;

use secrecy::ExposeSecret;

use breakglass::sandbox::sts::Sts;
use common::home::*;
use common::*;

const SLOT: u16 = 0;

/// The line of `out` that reports the error.
fn error_line(out: &str) -> &str {
    out.lines()
        .find(|l| l.contains("breakglass: error:"))
        .unwrap_or_else(|| panic!("no error in:\n{out}"))
}

#[test]
fn lookalike_names_are_one_person_and_control_characters_are_refused() {
    if !pcsc_ready("lookalike_names_are_one_person_and_control_characters_are_refused") {
        return;
    }
    let token = SoftToken::approve(SLOT);
    let r = token.reader();
    let sts = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    sts.create_user("breakglass");
    let (key_id, key_secret) = sts.create_access_key("breakglass");
    let (serial, seed) = sts.create_mfa_device("breakglass", "breakglass-token");
    let home = Home::new();
    enroll_imported(
        &home,
        "prod",
        &sts.endpoint(),
        &r,
        &serial,
        (&key_id, key_secret.expose_secret(), &seed),
    );

    // A zero-width space (shown escaped), and a Cyrillic capital А (U+0410) for the Latin A
    // (shown as it is; the pty's output is read byte by byte, so only its ASCII is matched).
    for (a, b, shown) in [
        (
            "alice",
            "al\u{200b}ice",
            "(\"alice\" and \"al\\u{200b}ice\")",
        ),
        ("Alice", "\u{410}lice", "(\"Alice\" and \""),
    ] {
        let out = unlock(&home, "prod", &r, (a, b), PASSPHRASE);
        let line = error_line(&out);
        assert!(
            line.contains("two different people must take part"),
            "{out}"
        );
        assert!(line.contains(shown), "{out}");
        assert!(out.contains("next: "), "{out}");
        // The audit log keeps the names as typed.
        let audit = home.audit();
        assert!(
            audit.contains(&format!("\"token_holder\":\"{b}\"")),
            "{audit}"
        );
    }

    // An escape sequence in a name is refused at once, and the message shows it escaped.
    let out = unlock(&home, "prod", &r, ("Eve\x1b[31m", "Bob"), PASSPHRASE);
    let line = error_line(&out);
    assert!(line.contains("contains a control character"), "{out}");
    assert!(line.contains("\"Eve\\u{1b}[31m\""), "{out}");
    assert!(!line.contains('\x1b'), "{line:?}");
    assert_eq!(sts.counts().get_session_token, 0, "no ceremony went on");

    // Different people still get in.
    let out = unlock(&home, "prod", &r, ("Ann", "Anne"), PASSPHRASE);
    assert!(
        session_json(&out)["AccessKeyId"]
            .as_str()
            .unwrap()
            .starts_with("ASIA"),
        "{out}"
    );
}
