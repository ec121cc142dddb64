//! STS failures reach the operator sorted by cause: bad MFA code, bad key, unreachable endpoint.

use std::net::SocketAddr;

use secrecy::{ExposeSecret, SecretString};

use breakglass::aws::{sts, Endpoint, Error, Signer};
use breakglass::sandbox::sts::Sts;

use crate::common::emulator::unix_now;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn failures_are_sorted_into_actionable_errors() {
    let emulator = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let (id, secret) = emulator.create_access_key("breakglass");
    let endpoint = Endpoint::new("us-east-1", Some(emulator.endpoint()));
    let rt = rt();
    // The user has no MFA device: an MFA serial and code are refused as a bad code.
    let signer = Signer {
        access_key_id: &id,
        secret_access_key: &secret,
        session_token: None,
    };
    let e = rt
        .block_on(sts::get_session_token(
            &endpoint,
            &signer,
            "arn:aws:iam::123456789012:mfa/none",
            "123456",
            900,
            unix_now(),
        ))
        .err()
        .unwrap();
    assert!(matches!(e, Error::BadCode { .. }), "{e}");
    // A wrong secret: the key is not accepted.
    let wrong = SecretString::from(format!("{}x", &secret.expose_secret()[1..]));
    let bad = Signer {
        access_key_id: &id,
        secret_access_key: &wrong,
        session_token: None,
    };
    let e = rt
        .block_on(sts::get_caller_identity(&endpoint, &bad))
        .err()
        .unwrap();
    assert!(matches!(e, Error::BadKey { .. }), "{e}");
    assert!(
        e.to_string().contains("SignatureDoesNotMatch") || e.to_string().contains("signature"),
        "{e}"
    );
    // An unknown key id.
    let unknown = Signer {
        access_key_id: "AKIAUNKNOWN000000000",
        secret_access_key: &secret,
        session_token: None,
    };
    let e = rt
        .block_on(sts::get_caller_identity(&endpoint, &unknown))
        .err()
        .unwrap();
    assert!(matches!(e, Error::BadKey { .. }), "{e}");
    // Nothing listens: unreachable, naming the endpoint.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = Endpoint::new("us-east-1", Some(format!("http://127.0.0.1:{port}")));
    let e = rt
        .block_on(sts::get_caller_identity(&dead, &signer))
        .err()
        .unwrap();
    assert!(matches!(e, Error::Unreachable { .. }), "{e}");
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
}
