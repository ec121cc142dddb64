//! Weak settings are refused: an AWS endpoint over plain http to another host (from the
//! profile, `--endpoint` or the `AWS_ENDPOINT_URL*` variables) stops the command before any
//! connection, naming the setting.

use crate::common;

use std::net::{SocketAddr, TcpListener, UdpSocket};

use secrecy::ExposeSecret;

use breakglass::sandbox::sts::Sts;
use common::home::*;
use common::*;

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
