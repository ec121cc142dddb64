//! Holder names through the real binary: lookalike names are one person, names with control
//! characters are refused, and whatever names the agent holds reach `status` escaped.

use crate::common;

use std::net::SocketAddr;

use secrecy::{ExposeSecret, SecretString};

use breakglass::agent::client::{Client, Reply};
use breakglass::aws::sts::Session;
use breakglass::config::Paths;
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

fn paths(home: &Home) -> Paths {
    let h = home.dir.path();
    Paths {
        config: home.config_file(),
        data: h.join("data/breakglass"),
        state: h.join("state/breakglass"),
        runtime: home.runtime(),
    }
}

/// Any process of the user may lead a ceremony and hand the agent a session with whatever
/// names it likes: `status` must not pass them to the terminal raw.
#[test]
fn escape_sequences_in_names_the_agent_holds_reach_status_escaped() {
    let home = Home::new();
    std::fs::create_dir_all(home.config_file().parent().unwrap()).unwrap();
    std::fs::write(home.config_file(), "[profiles.prod]\n").unwrap();
    // A caller without a terminal starts the agent on demand (and is told to unlock).
    let mut cmd = std::process::Command::new("setsid");
    cmd.arg("-w").arg(BIN).args(["credential-process", "prod"]);
    home.env(&mut cmd);
    fails(run_with_input(cmd, None), 3, &["breakglass unlock prod"]);
    let client = Client::running(&paths(&home)).unwrap();
    let Reply::LeadCeremony(lead) = client.get("prod", None, true, true).unwrap() else {
        panic!("expected to lead the ceremony");
    };
    let session = Session {
        access_key_id: "ASIAEXAMPLE000000001".into(),
        secret_access_key: SecretString::from("a-temporary-secret-for-the-test".to_owned()),
        session_token: SecretString::from("a-session-token-for-the-test".to_owned()),
        expiration: unix_now() + 3600,
    };
    lead.put_base(
        &session,
        "arn:aws:iam::123456789012:mfa/breakglass",
        "Eve\x1b[31m",
        "Mallory\x1b]0;pwned\x07\u{202e}",
        "arn:aws:iam::123456789012:user/breakglass\x1b[2J",
    )
    .unwrap();
    let out = ok(run_with_input(home.command(&["status"]), None));
    assert!(!out.contains('\x1b') && !out.contains('\x07'), "{out:?}");
    assert!(
        out.contains("unlocked by Eve\\u{1b}[31m (password) and Mallory\\u{1b}]0;pwned\\u{7}\\u{202e} (token)"),
        "{out}"
    );
    assert!(out.contains("user/breakglass\\u{1b}[2J"), "{out}");
    // JSON escapes them its own way.
    let json = ok(run_with_input(home.command(&["status", "--json"]), None));
    assert!(!json.contains('\x1b'), "{json:?}");
}
