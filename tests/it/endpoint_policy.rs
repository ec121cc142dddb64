//! Weak settings are refused, or announced: an AWS endpoint over plain http to another host
//! (from the profile, `--endpoint` or the `AWS_ENDPOINT_URL*` variables) stops the command
//! before any connection, naming the setting; Argon2id settings below RFC 9106's are refused
//! outside the sandbox unless forced; the seal factor defaults to PIV when the token has it.

use crate::common;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::Command;

use secrecy::ExposeSecret;

use breakglass::sandbox::sts::Sts;
use common::home::*;
use common::*;

const MFA_SERIAL: &str = "arn:aws:iam::123456789012:mfa/breakglass";

/// A listener on this machine's outward (non-loopback) address, to tell whether anything
/// connected, and its http URL; `None` on a machine with loopback only.
fn outward_listener() -> Option<(TcpListener, String)> {
    let udp = UdpSocket::bind("0.0.0.0:0").ok()?;
    // A UDP connect only picks the route: nothing is sent.
    udp.connect("10.255.255.1:9").ok()?;
    let ip = udp.local_addr().ok()?.ip();
    if ip.is_loopback() || ip.is_unspecified() {
        return None;
    }
    let listener = TcpListener::bind((ip, 0)).ok()?;
    listener.set_nonblocking(true).ok()?;
    let url = format!("http://{}", listener.local_addr().ok()?);
    Some((listener, url))
}

/// Whether a connection is waiting on `listener` (all attempts of an exited process are).
fn connected(listener: &TcpListener) -> bool {
    match listener.accept() {
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
        Err(e) => panic!("{e}"),
    }
}

/// `enroll prod --import-key --mfa-serial … ARGS` without a terminal, the key and seed on
/// stdin, the endpoint variables as given.
fn enroll_detached(home: &Home, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut all = vec!["enroll", "prod", "--import-key", "--mfa-serial", MFA_SERIAL];
    all.extend_from_slice(args);
    let mut cmd = Command::new("setsid");
    cmd.arg("-w").arg(BIN).args(&all);
    home.env(&mut cmd);
    cmd.env_remove("AWS_ENDPOINT_URL_STS")
        .env_remove("AWS_ENDPOINT_URL_IAM");
    cmd.envs(env.iter().copied());
    run_with_input(
        cmd,
        Some("AKIAEXAMPLE000000000\nsecret\nJBSWY3DPEHPK3PXP\n"),
    )
}

#[test]
fn enrolment_refuses_plain_http_to_another_host_from_the_environment() {
    let home = Home::new();
    let o = enroll_detached(
        &home,
        &["--reader", "no such reader"],
        &[("AWS_ENDPOINT_URL_IAM", "http://10.0.0.1:9")],
    );
    let err = fails(
        o,
        2,
        &[
            "refusing to call AWS IAM at http://10.0.0.1:9",
            "AWS_ENDPOINT_URL_IAM",
            "next: unset AWS_ENDPOINT_URL_IAM",
        ],
    );
    assert!(!err.contains("reader"), "the token was looked for: {err}");
    // The general variable, for STS too.
    let o = enroll_detached(
        &home,
        &["--reader", "no such reader"],
        &[("AWS_ENDPOINT_URL", "http://sts.example.com")],
    );
    fails(
        o,
        2,
        &[
            "http://sts.example.com",
            "the environment variable AWS_ENDPOINT_URL)",
        ],
    );
}

#[test]
fn a_weak_kdf_is_refused_outside_the_sandbox_before_the_token_is_touched() {
    let home = Home::new();
    let mut args = vec!["--endpoint", "https://sts.example.invalid"];
    args.extend(LIGHT_KDF);
    args.extend(["--reader", "no such reader"]);
    let o = enroll_detached(&home, &args, &[]);
    let err = fails(
        o,
        2,
        &[
            "Argon2id with 1024 KiB and 1 passes",
            "RFC 9106",
            "--force-weak-kdf",
        ],
    );
    assert!(!err.contains("reader"), "the token was looked for: {err}");
    assert!(home.audit().is_empty(), "{}", home.audit());

    // Forced: it goes on (here to the missing reader), and says so on the terminal.
    args.push("--force-weak-kdf");
    let mut all = vec!["enroll", "prod", "--import-key", "--mfa-serial", MFA_SERIAL];
    all.extend(&args);
    let mut p = pty(home.command(&all), 30_000);
    for line in ["AKIAEXAMPLE000000000", "secret", "JBSWY3DPEHPK3PXP"] {
        p.send_line(line).unwrap();
    }
    let out = p.exp_eof().unwrap();
    assert!(
        out.contains("WARNING: Argon2id with 1024 KiB and 1 passes (1 lanes) is below RFC 9106")
            && out.contains("Accepted because of --force-weak-kdf"),
        "{out}"
    );
    assert!(
        !out.contains("error: Argon2id"),
        "refused despite the flag: {out}"
    );
}

#[test]
fn an_insecure_sts_endpoint_from_the_environment_stops_the_unlock_before_any_connection() {
    if !pcsc_ready(
        "an_insecure_sts_endpoint_from_the_environment_stops_the_unlock_before_any_connection",
    ) {
        return;
    }
    let token = SoftToken::approve(0);
    let r = token.reader();
    let sts = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    sts.create_user("breakglass");
    let (key_id, key_secret) = sts.create_access_key("breakglass");
    let (serial, seed) = sts.create_mfa_device("breakglass", "breakglass");
    let home = Home::new();
    enroll_imported(
        &home,
        "prod",
        &sts.endpoint(),
        &r,
        &serial,
        (&key_id, key_secret.expose_secret(), &seed),
    );
    // The profile names no endpoint: the variables choose it.
    let config = std::fs::read_to_string(home.config_file()).unwrap();
    let config: String = config
        .lines()
        .filter(|l| !l.starts_with("sts_endpoint"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(home.config_file(), config).unwrap();

    let unlock_with = |url: &str| {
        let mut cmd = home.command(&[
            "unlock",
            "prod",
            "--reason",
            "endpoint policy test",
            "--print-json",
            "--reader",
            &r,
        ]);
        cmd.env("AWS_ENDPOINT_URL_STS", url);
        pty(cmd, 30_000)
    };
    let outward = outward_listener();
    let insecure = outward
        .as_ref()
        .map_or("http://10.0.0.1:9".to_owned(), |(_, url)| url.clone());
    let mut p = unlock_with(&insecure);
    let out = p.exp_eof().unwrap();
    assert!(
        out.contains(&format!("refusing to call AWS STS at {insecure}"))
            && out.contains("(from the environment variable AWS_ENDPOINT_URL_STS)")
            && out.contains("next: unset AWS_ENDPOINT_URL_STS"),
        "{out}"
    );
    assert!(!out.contains("type your name"), "someone was asked: {out}");
    if let Some((listener, _)) = &outward {
        assert!(!connected(listener), "a connection was made to {insecure}");
    }
    assert_eq!(sts.counts().get_session_token, 0);

    // Plain http to this machine (the emulator) is the sandbox, and works.
    let mut p = unlock_with(&sts.endpoint());
    p.exp_string("Password holder, type your name: ").unwrap();
    p.send_line("Alice").unwrap();
    p.exp_string("Token holder, type your name: ").unwrap();
    p.send_line("Bob").unwrap();
    p.exp_string("Password holder, type the vault passphrase (not shown): ")
        .unwrap();
    p.send_line(PASSPHRASE).unwrap();
    let out = p.exp_eof().unwrap();
    assert!(
        session_json(&out)["AccessKeyId"]
            .as_str()
            .unwrap()
            .starts_with("ASIA"),
        "{out}"
    );
    assert_eq!(sts.counts().get_session_token, 1);
}

#[test]
fn the_seal_factor_defaults_to_piv_when_the_token_has_it() {
    if !pcsc_ready("the_seal_factor_defaults_to_piv_when_the_token_has_it") {
        return;
    }
    let token = SoftToken::approve(0);
    let r = token.reader();
    let sts = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let home = Home::new();
    let endpoint = sts.endpoint();
    let mut all = vec!["enroll", "prod", "--import-key", "--mfa-serial", MFA_SERIAL];
    all.extend(["--endpoint", &endpoint, "--reader", &r]);
    all.extend(LIGHT_KDF);
    let mut p = pty(home.command(&all), 30_000);
    for line in ["AKIAEXAMPLE000000000", "secret", "JBSWY3DPEHPK3PXP"] {
        p.send_line(line).unwrap();
    }
    let out = p.exp_eof().unwrap();
    assert!(
        out.contains("this token has a PIV application, so the vault is sealed with the PIV factor by default")
            && out.contains("--attestation-roots FILE")
            && out.contains("or --factor oath to seal with OATH instead"),
        "{out}"
    );
    assert!(!out.contains("WARNING"), "{out}");
    assert!(!home.vault("prod").exists());
    let list = ok(bg(&["token", "list", "--reader", &r], None));
    assert!(!list.contains("breakglass:prod"), "{list}");
}
