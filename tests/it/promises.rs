//! Promises of README.md and SECURITY.md that no other test checked (issue 18's table): the
//! sandbox stays on this machine, the passphrase minimum, the access key proven at enrolment
//! (an unknown one leaves nothing behind), and the default Argon2id parameters of a new vault.

use crate::common;

use std::net::SocketAddr;

use secrecy::ExposeSecret;

use breakglass::sandbox::sts::Sts;
use breakglass::vault::{KdfParams, Vault};
use common::home::*;
use common::*;

/// `sandbox card` and `sandbox sts` refuse addresses off this machine, before anything runs:
/// the emulator holds sandbox secrets, vpcd carries APDUs.
#[test]
fn the_sandbox_refuses_addresses_off_this_machine() {
    fails(
        bg(&["sandbox", "card", "--vpcd", "10.0.0.1:35963"], None),
        2,
        &["vpcd address 10.0.0.1:35963 is not on this machine"],
    );
    fails(
        bg(&["sandbox", "sts", "--listen", "0.0.0.0:0"], None),
        2,
        &["0.0.0.0:0 is not a loopback address"],
    );
}

/// An enrolment with a passphrase of 11 characters stops before the token is touched; one
/// with the default Argon2id settings stores 64 MiB, 3 passes, 4 lanes in the vault.
#[test]
fn the_passphrase_minimum_and_the_default_kdf_of_a_new_vault() {
    let test = "the_passphrase_minimum_and_the_default_kdf_of_a_new_vault";
    if !pcsc_ready(test) {
        return;
    }
    let token = SoftToken::approve(0);
    let r = token.reader();
    let sts = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    sts.create_user("breakglass");
    let (key_id, secret) = sts.create_access_key("breakglass");
    let (serial, seed) = sts.create_mfa_device("breakglass", "breakglass-token");
    let home = Home::new();
    let endpoint = sts.endpoint();
    // No --kdf-* flags: the defaults.
    let args = [
        "enroll",
        "prod",
        "--import-key",
        "--mfa-serial",
        &serial,
        "--endpoint",
        &endpoint,
        "--reader",
        &r,
        "--factor",
        "oath",
    ];
    let mut p = pty(home.command(&args), 30_000);
    for line in [key_id.as_str(), secret.expose_secret(), &seed] {
        p.send_line(line).unwrap();
    }
    let short = "eleven char";
    assert_eq!(short.chars().count(), 11);
    p.exp_string("Password holder, type the vault passphrase (not shown): ")
        .unwrap();
    p.send_line(short).unwrap();
    p.exp_string("type the passphrase again: ").unwrap();
    p.send_line(short).unwrap();
    p.exp_string("the passphrase is too short (11 characters; at least 12)")
        .unwrap();
    p.exp_eof().unwrap();
    let list = ok(bg(&["token", "list", "--reader", &r], None));
    assert!(!list.contains("breakglass:prod"), "{list}");
    assert!(!home.vault("prod").exists());

    // A key AWS does not know: GetCallerIdentity refuses it after the token was programmed,
    // and the enrolment takes back what it put there; no vault.
    let mut p = pty(home.command(&args), 30_000);
    for line in [
        "AKIAUNKNOWNKEY000001",
        "notAsecretAWSknowsOfnotAsecretAWSknowsOf",
        &seed,
    ] {
        p.send_line(line).unwrap();
    }
    for ask in [
        "Password holder, type the vault passphrase (not shown): ",
        "Password holder, type the passphrase again: ",
    ] {
        p.exp_string(ask).unwrap();
        p.send_line(PASSPHRASE).unwrap();
    }
    let out = p.exp_eof().unwrap();
    assert!(out.contains("AWS does not accept the access key"), "{out}");
    let list = ok(bg(&["token", "list", "--reader", &r], None));
    assert!(!list.contains("breakglass:prod"), "{list}");
    assert!(!home.vault("prod").exists());

    let mut p = pty(home.command(&args), 60_000);
    for line in [key_id.as_str(), secret.expose_secret(), &seed] {
        p.send_line(line).unwrap();
    }
    for ask in [
        "Password holder, type the vault passphrase (not shown): ",
        "Password holder, type the passphrase again: ",
    ] {
        p.exp_string(ask).unwrap();
        p.send_line(PASSPHRASE).unwrap();
    }
    let out = p.exp_eof().unwrap();
    assert!(out.contains("Enrolled "), "{out}");
    let v = Vault::from_bytes(&std::fs::read(home.vault("prod")).unwrap()).unwrap();
    assert_eq!(
        v.kdf(),
        KdfParams {
            m_kib: 64 * 1024,
            t: 3,
            p: 4
        }
    );
    assert_eq!(v.kdf(), KdfParams::DEFAULT);
}
