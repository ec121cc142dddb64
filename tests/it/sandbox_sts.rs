//! The sandbox's strict STS + IAM emulator, driven by the real `aws-sdk-sts` and `aws-sdk-iam`
//! clients (and raw sockets for malformed HTTP).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use aws_sdk_iam::types::StatusType;
use aws_sdk_sts::config::retry::RetryConfig;
use aws_sdk_sts::config::{BehaviorVersion, Region};
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use breakglass::sandbox::sts::Sts;
use breakglass::token::otp::{self, Algorithm};
use secrecy::{ExposeSecret, SecretString};

use crate::common::emulator::{steady_now, unix_now};

const MFA_CODE_FAILED: &str =
    "MultiFactorAuthentication failed with invalid MFA one time pass code.";
const MFA_SERIAL_FAILED: &str = "MultiFactorAuthentication failed, unable to validate MFA code. \
    Please verify your MFA serial number is valid and associated with this user.";

fn start() -> Sts {
    Sts::start("127.0.0.1:0".parse().unwrap()).unwrap()
}

/// Static credentials: a long-term key (no token) or a session.
#[derive(Clone)]
struct Creds {
    id: String,
    secret: String,
    token: Option<String>,
}

impl Creds {
    fn key((id, secret): (String, SecretString)) -> Self {
        Self {
            id,
            secret: secret.expose_secret().to_owned(),
            token: None,
        }
    }

    fn session(c: &aws_sdk_sts::types::Credentials) -> Self {
        Self {
            id: c.access_key_id().to_owned(),
            secret: c.secret_access_key().to_owned(),
            token: Some(c.session_token().to_owned()),
        }
    }

    fn provider(&self) -> aws_sdk_sts::config::Credentials {
        aws_sdk_sts::config::Credentials::new(
            &self.id,
            &self.secret,
            self.token.clone(),
            None,
            "test",
        )
    }
}

fn sts_client_with(sts: &Sts, creds: &Creds, retry: RetryConfig) -> aws_sdk_sts::Client {
    let config = aws_sdk_sts::Config::builder()
        .endpoint_url(sts.endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(creds.provider())
        .behavior_version(BehaviorVersion::latest())
        .retry_config(retry)
        .build();
    aws_sdk_sts::Client::from_conf(config)
}

fn sts_client(sts: &Sts, creds: &Creds) -> aws_sdk_sts::Client {
    sts_client_with(sts, creds, RetryConfig::standard())
}

fn iam_client(sts: &Sts, creds: &Creds) -> aws_sdk_iam::Client {
    let config = aws_sdk_iam::Config::builder()
        .endpoint_url(sts.endpoint())
        .region(aws_sdk_iam::config::Region::new("us-east-1"))
        .credentials_provider(creds.provider())
        .behavior_version(aws_sdk_iam::config::BehaviorVersion::latest())
        .build();
    aws_sdk_iam::Client::from_conf(config)
}

/// `(code, message, HTTP status)` of a failed call.
fn failure<E: ProvideErrorMetadata + std::fmt::Debug>(err: &SdkError<E>) -> (String, String, u16) {
    let service = err
        .as_service_error()
        .unwrap_or_else(|| panic!("not a service error: {err:?}"));
    let status = err.raw_response().map(|r| r.status().as_u16()).unwrap_or(0);
    (
        service.code().unwrap_or_default().to_owned(),
        service.message().unwrap_or_default().to_owned(),
        status,
    )
}

fn code(seed: &[u8], unix_seconds: u64) -> String {
    otp::totp(Algorithm::Sha1, seed, unix_seconds, 30, 6).to_string()
}

/// A user with a long-term key and an enabled virtual MFA device.
struct Enrolled {
    key: Creds,
    serial: String,
    seed: Vec<u8>,
    arn: String,
    /// When the device was enabled (with the codes of 60 and 30 s before).
    enabled_at: u64,
}

/// Enrolls `name` the way `breakglass enroll` does: the admin creates the user's key and a
/// virtual MFA device, and enables it with two consecutive codes (steps now-2 and now-1, so
/// the current step stays fresh for GetSessionToken).
async fn enroll(sts: &Sts, name: &str) -> Enrolled {
    let arn = sts.create_user(name);
    let admin = iam_client(sts, &Creds::key(sts.admin_key()));
    let out = admin
        .create_access_key()
        .user_name(name)
        .send()
        .await
        .unwrap();
    let key = out.access_key().unwrap();
    assert_eq!(key.user_name(), name);
    assert!(key.access_key_id().starts_with("AKIA"));
    let key = Creds {
        id: key.access_key_id().to_owned(),
        secret: key.secret_access_key().to_owned(),
        token: None,
    };
    let out = admin
        .create_virtual_mfa_device()
        .virtual_mfa_device_name(format!("{name}-token"))
        .send()
        .await
        .unwrap();
    let device = out.virtual_mfa_device().unwrap();
    let serial = device.serial_number().to_owned();
    assert_eq!(
        serial,
        format!("arn:aws:iam::123456789012:mfa/{name}-token")
    );
    let seed_text = device.base32_string_seed().unwrap().as_ref().to_vec();
    assert_eq!(seed_text.len(), 32, "20-byte seed as base32 text");
    let seed = data_encoding::BASE32_NOPAD.decode(&seed_text).unwrap();
    let t = steady_now(sts);
    admin
        .enable_mfa_device()
        .user_name(name)
        .serial_number(&serial)
        .authentication_code1(code(&seed, t - 60))
        .authentication_code2(code(&seed, t - 30))
        .send()
        .await
        .unwrap();
    Enrolled {
        key,
        serial,
        seed,
        arn,
        enabled_at: t,
    }
}

/// GetSessionToken with MFA for `user`, using the code at `t`.
async fn mfa_session(sts: &Sts, user: &Enrolled, t: u64) -> Creds {
    let out = sts_client(sts, &user.key)
        .get_session_token()
        .serial_number(&user.serial)
        .token_code(code(&user.seed, t))
        .send()
        .await
        .unwrap();
    Creds::session(out.credentials().unwrap())
}

#[tokio::test]
async fn full_flow_enroll_then_mfa_session_then_caller_identity() {
    let sts = start();
    let alice = enroll(&sts, "alice").await;
    assert_eq!(alice.arn, "arn:aws:iam::123456789012:user/alice");
    let t = steady_now(&sts);
    let out = sts_client(&sts, &alice.key)
        .get_session_token()
        .serial_number(&alice.serial)
        .token_code(code(&alice.seed, t))
        .duration_seconds(3600)
        .send()
        .await
        .unwrap();
    let c = out.credentials().unwrap();
    assert!(c.access_key_id().starts_with("ASIA") && c.access_key_id().len() == 20);
    assert!(c.access_key_id()[4..]
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
    assert_eq!(c.secret_access_key().len(), 40);
    assert!(c.session_token().len() > 100);
    let expires = c.expiration().secs() - unix_now() as i64;
    assert!((3590..=3600).contains(&expires), "expires in {expires} s");

    let session = Creds::session(c);
    let me = sts_client(&sts, &session)
        .get_caller_identity()
        .send()
        .await
        .unwrap();
    assert_eq!(me.arn(), Some(alice.arn.as_str()));
    assert_eq!(me.account(), Some("123456789012"));
    assert!(me.user_id().unwrap().starts_with("AIDA"));
    let me_long = sts_client(&sts, &alice.key)
        .get_caller_identity()
        .send()
        .await
        .unwrap();
    assert_eq!(me_long.user_id(), me.user_id());

    // An MFA session may call IAM for its own user.
    let user = iam_client(&sts, &session).get_user().send().await.unwrap();
    assert_eq!(user.user().unwrap().arn(), alice.arn);
    let counts = sts.counts();
    assert_eq!(
        (
            counts.get_session_token,
            counts.get_caller_identity,
            counts.rejected_mfa
        ),
        (1, 2, 0)
    );
}

#[tokio::test]
async fn reused_code_is_rejected() {
    let sts = start();
    let bob = enroll(&sts, "bob").await;
    let t = steady_now(&sts);
    mfa_session(&sts, &bob, t).await;
    let err = sts_client(&sts, &bob.key)
        .get_session_token()
        .serial_number(&bob.serial)
        .token_code(code(&bob.seed, t))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        failure(&err),
        ("AccessDenied".into(), MFA_CODE_FAILED.into(), 403)
    );
    assert_eq!(sts.counts().rejected_mfa, 1);
    // The next window's code is still fresh (window ±1), after which the current one is stale.
    mfa_session(&sts, &bob, t + 30).await;
    assert_eq!(sts.counts().get_session_token, 2);
}

#[tokio::test]
async fn the_codes_used_to_enable_the_device_cannot_be_replayed() {
    let sts = start();
    let carol = enroll(&sts, "carol").await;
    // The second code the enablement used (not "now - 30", which is another code once the
    // enablement has crossed into the next window).
    let err = sts_client(&sts, &carol.key)
        .get_session_token()
        .serial_number(&carol.serial)
        .token_code(code(&carol.seed, carol.enabled_at - 30))
        .send()
        .await
        .unwrap_err();
    assert_eq!(failure(&err).1, MFA_CODE_FAILED);
}

#[tokio::test]
async fn code_from_three_windows_ago_is_rejected() {
    let sts = start();
    let dan = enroll(&sts, "dan").await;
    let t = steady_now(&sts);
    let err = sts_client(&sts, &dan.key)
        .get_session_token()
        .serial_number(&dan.serial)
        .token_code(code(&dan.seed, t - 90))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        failure(&err),
        ("AccessDenied".into(), MFA_CODE_FAILED.into(), 403)
    );
    assert_eq!(sts.counts().get_session_token, 0);
}

#[tokio::test]
async fn wrong_serial_is_rejected() {
    let sts = start();
    let erin = enroll(&sts, "erin").await;
    let frank = enroll(&sts, "frank").await;
    let t = steady_now(&sts);
    for serial in [
        frank.serial.as_str(),
        "arn:aws:iam::123456789012:mfa/nobody",
    ] {
        let err = sts_client(&sts, &erin.key)
            .get_session_token()
            .serial_number(serial)
            .token_code(code(&erin.seed, t))
            .send()
            .await
            .unwrap_err();
        assert_eq!(
            failure(&err),
            ("AccessDenied".into(), MFA_SERIAL_FAILED.into(), 403)
        );
    }
    assert_eq!(sts.counts().rejected_mfa, 2);
}

#[tokio::test]
async fn wrong_secret_gives_signature_does_not_match() {
    let sts = start();
    let (id, _) = sts.create_access_key("gina");
    let wrong = Creds {
        id,
        secret: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
        token: None,
    };
    let err = sts_client(&sts, &wrong)
        .get_caller_identity()
        .send()
        .await
        .unwrap_err();
    let (code, message, status) = failure(&err);
    assert_eq!((code.as_str(), status), ("SignatureDoesNotMatch", 403));
    assert!(
        message.starts_with("The request signature we calculated does not match"),
        "{message}"
    );
    assert_eq!(sts.counts().get_caller_identity, 0);
}

#[tokio::test]
async fn unknown_key_gives_invalid_client_token_id() {
    let sts = start();
    let unknown = Creds {
        id: "AKIAIOSFODNN7EXAMPLE".into(),
        secret: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
        token: None,
    };
    let err = sts_client(&sts, &unknown)
        .get_caller_identity()
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        failure(&err),
        (
            "InvalidClientTokenId".into(),
            "The security token included in the request is invalid.".into(),
            403
        )
    );
}

#[tokio::test]
async fn session_without_its_token_or_with_another_token_is_invalid() {
    let sts = start();
    let key = Creds::key(sts.create_access_key("hal"));
    let out = sts_client(&sts, &key)
        .get_session_token()
        .send()
        .await
        .unwrap();
    let session = Creds::session(out.credentials().unwrap());
    let no_token = Creds {
        token: None,
        ..session.clone()
    };
    let other_token = Creds {
        token: Some("x".repeat(320)),
        ..session.clone()
    };
    for creds in [no_token, other_token] {
        let err = sts_client(&sts, &creds)
            .get_caller_identity()
            .send()
            .await
            .unwrap_err();
        assert_eq!(failure(&err).0, "InvalidClientTokenId");
    }
    sts_client(&sts, &session)
        .get_caller_identity()
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn clock_twenty_minutes_ahead_expires_the_signature() {
    let sts = start();
    let key = Creds::key(sts.create_access_key("ivan"));
    sts.set_clock_offset(20 * 60);
    let client = sts_client_with(&sts, &key, RetryConfig::disabled());
    let err = client.get_caller_identity().send().await.unwrap_err();
    let (code, message, status) = failure(&err);
    assert_eq!((code.as_str(), status), ("SignatureDoesNotMatch", 403));
    assert!(message.starts_with("Signature expired: "), "{message}");
    assert!(message.ends_with(" - 15 min.)"), "{message}");
    // Like AWS, the emulator sends its clock in `Date`; the SDK learns the skew from it and
    // signs the next request with the corrected time.
    client.get_caller_identity().send().await.unwrap();
    // And a client that retries corrects itself within the first call.
    sts_client(&sts, &key)
        .get_caller_identity()
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn expired_session_gets_expired_token() {
    let sts = start();
    let key = Creds::key(sts.create_access_key("judy"));
    let out = sts_client(&sts, &key)
        .get_session_token()
        .duration_seconds(900)
        .send()
        .await
        .unwrap();
    let session = Creds::session(out.credentials().unwrap());
    sts.set_clock_offset(1000);
    // The first attempt is outside the signature window; the SDK corrects its clock and retries.
    let err = sts_client(&sts, &session)
        .get_caller_identity()
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        failure(&err),
        (
            "ExpiredToken".into(),
            "The security token included in the request is expired".into(),
            403
        )
    );
}

#[tokio::test]
async fn session_credentials_cannot_call_get_session_token() {
    let sts = start();
    let kim = enroll(&sts, "kim").await;
    let t = steady_now(&sts);
    let session = mfa_session(&sts, &kim, t).await;
    let err = sts_client(&sts, &session)
        .get_session_token()
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        failure(&err),
        (
            "AccessDenied".into(),
            "Cannot call GetSessionToken with session credentials".into(),
            403
        )
    );
}

#[tokio::test]
async fn get_session_token_duration_is_validated() {
    let sts = start();
    let key = Creds::key(sts.create_access_key("lena"));
    for bad in [899, 129_601] {
        let err = sts_client(&sts, &key)
            .get_session_token()
            .duration_seconds(bad)
            .send()
            .await
            .unwrap_err();
        let (code, message, status) = failure(&err);
        assert_eq!((code.as_str(), status), ("ValidationError", 400));
        assert!(
            message.contains(&format!("Value '{bad}' at 'durationSeconds'")),
            "{message}"
        );
    }
    let out = sts_client(&sts, &key)
        .get_session_token()
        .send()
        .await
        .unwrap();
    let expires = out.credentials().unwrap().expiration().secs() - unix_now() as i64;
    assert!(
        (43_190..=43_200).contains(&expires),
        "default 12 h, got {expires}"
    );
}

#[tokio::test]
async fn assume_role_with_source_identity_shows_in_caller_identity() {
    let sts = start();
    let key = Creds::key(sts.create_access_key("mallory"));
    let role = sts.create_role("breakglass-admin", false);
    assert_eq!(role, "arn:aws:iam::123456789012:role/breakglass-admin");
    let out = sts_client(&sts, &key)
        .assume_role()
        .role_arn(&role)
        .role_session_name("incident-42")
        .source_identity("mallory")
        .send()
        .await
        .unwrap();
    assert_eq!(out.source_identity(), Some("mallory"));
    let assumed = out.assumed_role_user().unwrap();
    let arn = "arn:aws:sts::123456789012:assumed-role/breakglass-admin/incident-42";
    assert_eq!(assumed.arn(), arn);
    assert!(assumed.assumed_role_id().starts_with("AROA"));
    assert!(assumed.assumed_role_id().ends_with(":incident-42"));
    let session = Creds::session(out.credentials().unwrap());
    let expires = out.credentials().unwrap().expiration().secs() - unix_now() as i64;
    assert!(
        (3590..=3600).contains(&expires),
        "default 1 h, got {expires}"
    );

    let me = sts_client(&sts, &session)
        .get_caller_identity()
        .send()
        .await
        .unwrap();
    assert_eq!(me.arn(), Some(arn));
    assert_eq!(me.user_id(), Some(assumed.assumed_role_id()));
    assert_eq!(
        sts.session_source_identity(&session.id).as_deref(),
        Some("mallory")
    );
    assert_eq!(sts.session_source_identity(&key.id), None);

    // Chained: the source identity is inherited and cannot be changed.
    let chained = sts_client(&sts, &session)
        .assume_role()
        .role_arn(&role)
        .role_session_name("chained")
        .send()
        .await
        .unwrap();
    assert_eq!(chained.source_identity(), Some("mallory"));
    let err = sts_client(&sts, &session)
        .assume_role()
        .role_arn(&role)
        .role_session_name("chained")
        .source_identity("someone-else")
        .send()
        .await
        .unwrap_err();
    assert_eq!(failure(&err).0, "AccessDenied");
}

#[tokio::test]
async fn unknown_role_is_access_denied() {
    let sts = start();
    let key = Creds::key(sts.create_access_key("nina"));
    let role = "arn:aws:iam::123456789012:role/nope";
    let err = sts_client(&sts, &key)
        .assume_role()
        .role_arn(role)
        .role_session_name("s1")
        .send()
        .await
        .unwrap_err();
    let expected = format!(
        "User: arn:aws:iam::123456789012:user/nina is not authorized to perform: \
         sts:AssumeRole on resource: {role}"
    );
    assert_eq!(failure(&err), ("AccessDenied".into(), expected, 403));
}

#[tokio::test]
async fn chained_assume_role_over_one_hour_is_refused() {
    let sts = start();
    let key = Creds::key(sts.create_access_key("oscar"));
    let role = sts.create_role("ops", false);
    let assume = |creds: Creds, secs: i32| {
        let client = sts_client(&sts, &creds);
        let role = role.clone();
        async move {
            client
                .assume_role()
                .role_arn(role)
                .role_session_name("s1")
                .duration_seconds(secs)
                .send()
                .await
        }
    };
    // Not chained: up to the role's 12 h.
    let first = assume(key.clone(), 7200).await.unwrap();
    let session = Creds::session(first.credentials().unwrap());
    let err = assume(session.clone(), 7200).await.unwrap_err();
    assert_eq!(
        failure(&err),
        (
            "ValidationError".into(),
            "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed \
             by role chaining."
                .into(),
            400
        )
    );
    assume(session, 3600).await.unwrap();
    assert_eq!(sts.counts().assume_role, 2);
}

#[tokio::test]
async fn role_requiring_mfa_refuses_sessions_without_mfa() {
    let sts = start();
    let pat = enroll(&sts, "pat").await;
    let role = sts.create_role("needs-mfa", true);
    let assume = |creds: Creds| {
        let client = sts_client(&sts, &creds);
        let role = role.clone();
        async move {
            client
                .assume_role()
                .role_arn(role)
                .role_session_name("s1")
                .send()
                .await
        }
    };
    let err = assume(pat.key.clone()).await.unwrap_err();
    assert_eq!(failure(&err).0, "AccessDenied");
    let plain = sts_client(&sts, &pat.key)
        .get_session_token()
        .send()
        .await
        .unwrap();
    let err = assume(Creds::session(plain.credentials().unwrap()))
        .await
        .unwrap_err();
    let (code, message, _) = failure(&err);
    assert_eq!(code, "AccessDenied");
    assert!(
        message.contains("sts:AssumeRole on resource: arn:aws:iam::123456789012:role/needs-mfa")
    );
    let t = steady_now(&sts);
    let with_mfa = mfa_session(&sts, &pat, t).await;
    assume(with_mfa).await.unwrap();
    assert_eq!(sts.counts().assume_role, 1);
}

#[tokio::test]
async fn operator_mfa_device_is_enabled_and_the_current_window_is_fresh() {
    let sts = start();
    let key = Creds::key(sts.create_access_key("uma"));
    let (serial, seed_text) = sts.create_mfa_device("uma", "uma-token");
    assert_eq!(serial, "arn:aws:iam::123456789012:mfa/uma-token");
    assert_eq!(seed_text.len(), 32, "20-byte seed as base32 text");
    let seed = data_encoding::BASE32_NOPAD
        .decode(seed_text.as_bytes())
        .unwrap();
    let t = steady_now(&sts);
    let out = sts_client(&sts, &key)
        .get_session_token()
        .serial_number(&serial)
        .token_code(code(&seed, t))
        .send()
        .await
        .unwrap();
    let session = Creds::session(out.credentials().unwrap());
    // An MFA session: it may call IAM for its user, which the device created.
    let user = iam_client(&sts, &session).get_user().send().await.unwrap();
    assert_eq!(
        user.user().unwrap().arn(),
        "arn:aws:iam::123456789012:user/uma"
    );
    // Still strict: the code just used is refused now.
    let err = sts_client(&sts, &key)
        .get_session_token()
        .serial_number(&serial)
        .token_code(code(&seed, t))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        failure(&err),
        ("AccessDenied".into(), MFA_CODE_FAILED.into(), 403)
    );
    // The device belongs to uma only; a device for a new user creates the user.
    let (other_serial, _) = sts.create_mfa_device("vic", "vic-token");
    let err = sts_client(&sts, &key)
        .get_session_token()
        .serial_number(&other_serial)
        .token_code("123456")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        failure(&err),
        ("AccessDenied".into(), MFA_SERIAL_FAILED.into(), 403)
    );
    assert_eq!(sts.create_user("vic"), "arn:aws:iam::123456789012:user/vic");
}

#[tokio::test]
async fn mfa_session_assumes_mfa_role_and_a_denying_role_refuses_everyone() {
    let sts = start();
    let key = Creds::key(sts.create_access_key("walt"));
    let (serial, seed_text) = sts.create_mfa_device("walt", "walt-token");
    let seed = data_encoding::BASE32_NOPAD
        .decode(seed_text.as_bytes())
        .unwrap();
    let needs_mfa = sts.create_role("needs-mfa", true);
    let locked = sts.create_role_denying("locked");
    assert_eq!(locked, "arn:aws:iam::123456789012:role/locked");
    let t = steady_now(&sts);
    let out = sts_client(&sts, &key)
        .get_session_token()
        .serial_number(&serial)
        .token_code(code(&seed, t))
        .send()
        .await
        .unwrap();
    let session = Creds::session(out.credentials().unwrap());
    let assume = |role: &str| {
        sts_client(&sts, &session)
            .assume_role()
            .role_arn(role)
            .role_session_name("alice+bob")
            .source_identity("alice+bob")
            .send()
    };
    let out = assume(&needs_mfa).await.unwrap();
    assert_eq!(out.source_identity(), Some("alice+bob"));
    assert_eq!(
        out.assumed_role_user().unwrap().arn(),
        "arn:aws:sts::123456789012:assumed-role/needs-mfa/alice+bob"
    );
    let role_key = out.credentials().unwrap().access_key_id();
    assert_eq!(
        sts.session_source_identity(role_key).as_deref(),
        Some("alice+bob")
    );
    let err = assume(&locked).await.unwrap_err();
    let expected = format!(
        "User: arn:aws:iam::123456789012:user/walt is not authorized to perform: \
         sts:AssumeRole on resource: {locked}"
    );
    assert_eq!(failure(&err), ("AccessDenied".into(), expected, 403));
    // The flag can be lifted: create_role on the same name sets the trust again.
    assert_eq!(sts.create_role("locked", false), locked);
    assume(&locked).await.unwrap();
    assert_eq!(sts.counts().assume_role, 2);
}

#[tokio::test]
async fn counts_count_successes_and_mfa_rejections() {
    let sts = start();
    assert_eq!(sts.counts().get_session_token, 0);
    let quinn = enroll(&sts, "quinn").await;
    let role = sts.create_role("r", false);
    let t = steady_now(&sts);
    let client = sts_client(&sts, &quinn.key);
    let bad = |c: u64| {
        client
            .get_session_token()
            .serial_number(&quinn.serial)
            .token_code(code(&quinn.seed, c))
            .send()
    };
    bad(t - 120).await.unwrap_err();
    bad(t + 120).await.unwrap_err();
    let session = mfa_session(&sts, &quinn, t).await;
    bad(t).await.unwrap_err();
    for _ in 0..3 {
        sts_client(&sts, &session)
            .get_caller_identity()
            .send()
            .await
            .unwrap();
    }
    sts_client(&sts, &session)
        .assume_role()
        .role_arn(&role)
        .role_session_name("s1")
        .send()
        .await
        .unwrap();
    let counts = sts.counts();
    assert_eq!(counts.get_session_token, 1);
    assert_eq!(counts.get_caller_identity, 3);
    assert_eq!(counts.assume_role, 1);
    assert_eq!(counts.rejected_mfa, 3);
}

#[tokio::test]
async fn sequential_calls_on_one_client_all_succeed() {
    let sts = start();
    let key = Creds::key(sts.create_access_key("rita"));
    let client = sts_client_with(&sts, &key, RetryConfig::disabled());
    for _ in 0..10 {
        client.get_caller_identity().send().await.unwrap();
    }
    assert_eq!(sts.counts().get_caller_identity, 10);
}

#[tokio::test]
async fn iam_enforces_quotas_ownership_and_key_status() {
    let sts = start();
    sts.create_user("sam");
    sts.create_user("tess");
    let admin = iam_client(&sts, &Creds::key(sts.admin_key()));
    let new_key = |user: &'static str| admin.create_access_key().user_name(user).send();
    let k1 = new_key("sam").await.unwrap();
    let sam = Creds {
        id: k1.access_key().unwrap().access_key_id().to_owned(),
        secret: k1.access_key().unwrap().secret_access_key().to_owned(),
        token: None,
    };
    new_key("sam").await.unwrap();
    let err = new_key("sam").await.unwrap_err();
    assert_eq!(
        failure(&err),
        (
            "LimitExceeded".into(),
            "Cannot exceed quota for AccessKeysPerUser: 2".into(),
            409
        )
    );
    let listed = admin
        .list_access_keys()
        .user_name("sam")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.access_key_metadata().len(), 2);

    // A user acts on itself only.
    let err = iam_client(&sts, &sam)
        .create_access_key()
        .user_name("tess")
        .send()
        .await
        .unwrap_err();
    assert_eq!(failure(&err).0, "AccessDenied");
    let err = admin
        .get_user()
        .user_name("nobody")
        .send()
        .await
        .unwrap_err();
    assert_eq!(failure(&err).0, "NoSuchEntity");

    // GetSessionToken sessions without MFA cannot call IAM at all.
    let plain = sts_client(&sts, &sam)
        .get_session_token()
        .send()
        .await
        .unwrap();
    let plain = Creds::session(plain.credentials().unwrap());
    let err = iam_client(&sts, &plain)
        .get_user()
        .send()
        .await
        .unwrap_err();
    assert_eq!(failure(&err).0, "InvalidClientTokenId");
}

#[tokio::test]
async fn inactive_and_deleted_keys_are_refused() {
    let sts = start();
    let sam = Creds::key(sts.create_access_key("sam"));
    let admin = iam_client(&sts, &Creds::key(sts.admin_key()));
    // Inactive, then deleted keys are refused; reactivated ones work again.
    let iam_sam = iam_client(&sts, &sam);
    let set = |s: StatusType| {
        iam_sam
            .update_access_key()
            .access_key_id(&sam.id)
            .status(s)
            .send()
    };
    set(StatusType::Inactive).await.unwrap();
    let err = sts_client(&sts, &sam)
        .get_caller_identity()
        .send()
        .await
        .unwrap_err();
    assert_eq!(failure(&err).0, "InvalidClientTokenId");
    admin
        .update_access_key()
        .user_name("sam")
        .access_key_id(&sam.id)
        .status(StatusType::Active)
        .send()
        .await
        .unwrap();
    sts_client(&sts, &sam)
        .get_caller_identity()
        .send()
        .await
        .unwrap();
    iam_sam
        .delete_access_key()
        .access_key_id(&sam.id)
        .send()
        .await
        .unwrap();
    let err = sts_client(&sts, &sam)
        .get_caller_identity()
        .send()
        .await
        .unwrap_err();
    assert_eq!(failure(&err).0, "InvalidClientTokenId");
}

#[tokio::test]
async fn enable_mfa_needs_two_consecutive_fresh_codes() {
    let sts = start();
    sts.create_user("uma");
    let admin = iam_client(&sts, &Creds::key(sts.admin_key()));
    let out = admin
        .create_virtual_mfa_device()
        .virtual_mfa_device_name("uma-token")
        .send()
        .await
        .unwrap();
    let device = out.virtual_mfa_device().unwrap();
    let serial = device.serial_number().to_owned();
    let seed = data_encoding::BASE32_NOPAD
        .decode(device.base32_string_seed().unwrap().as_ref())
        .unwrap();
    let err = admin
        .create_virtual_mfa_device()
        .virtual_mfa_device_name("uma-token")
        .send()
        .await
        .unwrap_err();
    assert_eq!(failure(&err).0, "EntityAlreadyExists");
    let enable = |c1: String, c2: String| {
        admin
            .enable_mfa_device()
            .user_name("uma")
            .serial_number(&serial)
            .authentication_code1(c1)
            .authentication_code2(c2)
            .send()
    };
    let t = steady_now(&sts);
    for (a, b) in [(t, t), (t, t - 30), (t - 120, t - 90), (t - 30, t + 30)] {
        let err = enable(code(&seed, a), code(&seed, b)).await.unwrap_err();
        assert_eq!(
            failure(&err),
            (
                "InvalidAuthenticationCode".into(),
                "Authentication code for device is not valid.".into(),
                403
            )
        );
    }
    enable(code(&seed, t), code(&seed, t + 30)).await.unwrap();
    let err = enable(code(&seed, t), code(&seed, t + 30))
        .await
        .unwrap_err();
    assert_eq!(failure(&err).0, "EntityAlreadyExists");
    admin
        .deactivate_mfa_device()
        .user_name("uma")
        .serial_number(&serial)
        .send()
        .await
        .unwrap();
}

fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test]
async fn malformed_http_gets_4xx_and_the_server_keeps_serving() {
    let sts = start();
    let addr: SocketAddr = sts
        .endpoint()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let cases: [(&[u8], &str); 6] = [
        (b"GARBAGE\r\n\r\n", "HTTP/1.1 400 "),
        (b"\x00\xff\xfe\r\n\r\n", "HTTP/1.1 400 "),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n",
            "HTTP/1.1 413 ",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 400 ",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "HTTP/1.1 501 ",
        ),
        // Well-formed HTTP, but unsigned: AWS's MissingAuthenticationToken.
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 403 ",
        ),
    ];
    for (request, status) in cases {
        let response = raw_exchange(addr, request);
        assert!(response.starts_with(status), "{request:?} → {response:?}");
        assert!(response.contains("Connection: close"));
    }
    // A client that connects and sends half a request, then nothing, does not block others.
    let mut stalled = TcpStream::connect(addr).unwrap();
    stalled.write_all(b"POST / HTTP/1.1\r\nHost").unwrap();
    let key = Creds::key(sts.create_access_key("vic"));
    sts_client(&sts, &key)
        .get_caller_identity()
        .send()
        .await
        .unwrap();
    drop(stalled);
    let unsigned = raw_exchange(
        addr,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
          Content-Length: 43\r\n\r\nAction=GetCallerIdentity&Version=2011-06-15",
    );
    assert!(
        unsigned.contains("<Code>MissingAuthenticationToken</Code>"),
        "{unsigned}"
    );
    sts_client(&sts, &key)
        .get_caller_identity()
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn unknown_action_is_invalid_action() {
    let sts = start();
    let key = Creds::key(sts.create_access_key("walt"));
    // GetAccessKeyInfo is a real STS action the emulator does not implement.
    let err = sts_client(&sts, &key)
        .get_access_key_info()
        .access_key_id(&key.id)
        .send()
        .await
        .unwrap_err();
    let (code, message, status) = failure(&err);
    assert_eq!((code.as_str(), status), ("InvalidAction", 400));
    assert_eq!(
        message,
        "Could not find operation GetAccessKeyInfo for version 2011-06-15"
    );
}

#[test]
fn start_refuses_non_loopback_addresses() {
    let err = Sts::start("0.0.0.0:0".parse().unwrap()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    // IPv6 loopback too, where the machine has it; where it has none, the skip is said (and
    // fails where every test must run).
    match Sts::start("[::1]:0".parse().unwrap()) {
        Ok(sts) => assert!(sts.endpoint().starts_with("http://[::1]:")),
        Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => crate::common::skip(
            "start_refuses_non_loopback_addresses (IPv6 part)",
            "this machine has no ::1",
        ),
        Err(e) => panic!("the emulator cannot listen on [::1]: {e}"),
    }
}

/// Runs the AWS CLI (`aws`, v1 or v2) with only the given credentials and the emulator's endpoint.
fn aws_cli(sts: &Sts, creds: &Creds, args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new("aws");
    cmd.args(args)
        .args(["--endpoint-url", &sts.endpoint(), "--output", "json"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", std::env::temp_dir())
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", &creds.id)
        .env("AWS_SECRET_ACCESS_KEY", &creds.secret);
    if let Some(token) = &creds.token {
        cmd.env("AWS_SESSION_TOKEN", token);
    }
    cmd.output().unwrap()
}

#[test]
fn aws_cli_works_against_the_emulator() {
    if crate::common::tool(
        "aws_cli_works_against_the_emulator",
        "aws",
        "pip install 'awscli<2'",
    )
    .is_none()
    {
        return;
    }
    let sts = start();
    let admin = Creds::key(sts.admin_key());
    sts.create_user("xena");
    let out = aws_cli(
        &sts,
        &admin,
        &["iam", "create-access-key", "--user-name", "xena"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let xena = Creds {
        id: json["AccessKey"]["AccessKeyId"]
            .as_str()
            .unwrap()
            .to_owned(),
        secret: json["AccessKey"]["SecretAccessKey"]
            .as_str()
            .unwrap()
            .to_owned(),
        token: None,
    };
    let out = aws_cli(
        &sts,
        &xena,
        &["sts", "get-session-token", "--duration-seconds", "900"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let session = Creds {
        id: json["Credentials"]["AccessKeyId"]
            .as_str()
            .unwrap()
            .to_owned(),
        secret: json["Credentials"]["SecretAccessKey"]
            .as_str()
            .unwrap()
            .to_owned(),
        token: Some(
            json["Credentials"]["SessionToken"]
                .as_str()
                .unwrap()
                .to_owned(),
        ),
    };
    let out = aws_cli(&sts, &session, &["sts", "get-caller-identity"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["Arn"], "arn:aws:iam::123456789012:user/xena");
    let wrong = Creds {
        secret: "x".repeat(40),
        ..xena
    };
    let out = aws_cli(&sts, &wrong, &["sts", "get-caller-identity"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("SignatureDoesNotMatch"));
}
