//! The AssumeRole client (`breakglass::aws::sts::assume_role`) against the embedded emulator:
//! an MFA session from GetSessionToken assumes a role that requires MFA, with the holders'
//! names as RoleSessionName and SourceIdentity; refusals name the role.

use breakglass::aws::sts::{self, AssumeRole};
use breakglass::aws::Error;
use secrecy::ExposeSecret;

use crate::common::emulator::{signer, unix_now, Rig};

#[tokio::test]
async fn mfa_session_assumes_role_named_after_both_holders() {
    let rig = Rig::new();
    let role = rig.sts.create_role("breakglass-admin", true);
    let base = rig.mfa_session(3600).await;
    let session_name = sts::role_session_name(None, "alice", "bob").unwrap();
    let source = sts::source_identity("alice", "bob");
    let req = AssumeRole {
        role_arn: &role,
        session_name: &session_name,
        source_identity: &source,
        duration_secs: Some(900),
    };
    let assumed = sts::assume_role(&rig.endpoint, &signer(&base), &req, unix_now())
        .await
        .unwrap();
    let arn = "arn:aws:sts::123456789012:assumed-role/breakglass-admin/alice+bob";
    assert_eq!(assumed.assumed_role_arn, arn);
    let s = &assumed.session;
    assert!(s.access_key_id.starts_with("ASIA"), "{}", s.access_key_id);
    assert_ne!(s.access_key_id, base.access_key_id);
    assert_eq!(s.secret_access_key.expose_secret().len(), 40);
    assert!(s.session_token.expose_secret().len() > 100);
    let left = s.expiration.saturating_sub(unix_now());
    assert!((890..=900).contains(&left), "expires in {left} s");

    let me = sts::get_caller_identity(&rig.endpoint, &signer(s))
        .await
        .unwrap();
    assert_eq!(me.arn, arn);
    assert_eq!(me.account, "123456789012");
    assert!(me.user_id.ends_with(":alice+bob"), "{}", me.user_id);
    assert_eq!(
        rig.sts.session_source_identity(&s.access_key_id).as_deref(),
        Some("alice+bob")
    );
    let counts = rig.sts.counts();
    assert_eq!((counts.get_session_token, counts.assume_role), (1, 1));
    assert_eq!(counts.rejected_mfa, 0);
}

#[tokio::test]
async fn empty_source_identity_sets_none() {
    let rig = Rig::new();
    let role = rig.sts.create_role("ops", false);
    let base = rig.mfa_session(900).await;
    let req = AssumeRole {
        role_arn: &role,
        session_name: "incident-7",
        source_identity: "",
        duration_secs: Some(900),
    };
    let assumed = sts::assume_role(&rig.endpoint, &signer(&base), &req, unix_now())
        .await
        .unwrap();
    assert_eq!(
        assumed.assumed_role_arn,
        "arn:aws:sts::123456789012:assumed-role/ops/incident-7"
    );
    assert_eq!(
        rig.sts
            .session_source_identity(&assumed.session.access_key_id),
        None
    );
}

/// Asserts `e` is `RoleDenied` for `role` with AWS's message, and that its text names both.
fn assert_role_denied(e: &Error, role: &str) {
    let Error::RoleDenied { role_arn, message } = e else {
        panic!("not RoleDenied: {e}");
    };
    assert_eq!(role_arn, role);
    assert!(
        message.contains(&format!(
            "is not authorized to perform: sts:AssumeRole on resource: {role}"
        )),
        "{message}"
    );
    let text = e.to_string();
    assert!(
        text.contains(role) && text.contains(message.as_str()),
        "{text}"
    );
}

#[tokio::test]
async fn refused_roles_are_role_denied_naming_the_role() {
    let rig = Rig::new();
    let locked = rig.sts.create_role_denying("locked");
    let needs_mfa = rig.sts.create_role("needs-mfa", true);
    let unknown = "arn:aws:iam::123456789012:role/no-such-role";
    let base = rig.mfa_session(900).await;
    let req = |role_arn| AssumeRole {
        role_arn,
        session_name: "alice+bob",
        source_identity: "alice+bob",
        duration_secs: Some(900),
    };
    // A trust policy that admits no one, even an MFA session.
    let e = sts::assume_role(&rig.endpoint, &signer(&base), &req(&locked), unix_now())
        .await
        .err()
        .unwrap();
    assert_role_denied(&e, &locked);
    // A role that does not exist.
    let e = sts::assume_role(&rig.endpoint, &signer(&base), &req(unknown), unix_now())
        .await
        .err()
        .unwrap();
    assert_role_denied(&e, unknown);
    // A role that requires MFA, asked with the long-term key (no MFA).
    let e = sts::assume_role(&rig.endpoint, &rig.key(), &req(&needs_mfa), unix_now())
        .await
        .err()
        .unwrap();
    assert_role_denied(&e, &needs_mfa);
    assert_eq!(rig.sts.counts().assume_role, 0);
}

#[tokio::test]
async fn expired_base_session_is_expired() {
    let rig = Rig::new();
    let role = rig.sts.create_role("ops", true);
    let base = rig.mfa_session(900).await;
    // 1000 s later the session has expired. The first attempt is also outside the signature
    // window; the SDK learns the emulator's clock from `Date` and retries.
    rig.sts.set_clock_offset(1000);
    let req = AssumeRole {
        role_arn: &role,
        session_name: "alice+bob",
        source_identity: "alice+bob",
        duration_secs: Some(900),
    };
    let e = sts::assume_role(&rig.endpoint, &signer(&base), &req, unix_now())
        .await
        .err()
        .unwrap();
    assert!(matches!(e, Error::Expired { .. }), "{e}");
    assert!(e.to_string().contains("expired"), "{e}");
}

#[tokio::test]
async fn invalid_parameters_are_reported_not_hidden() {
    let rig = Rig::new();
    let role = rig.sts.create_role("ops", false);
    let base = rig.mfa_session(3600).await;
    // Chained from a role session: AWS limits the duration to one hour.
    let first = sts::assume_role(
        &rig.endpoint,
        &signer(&base),
        &AssumeRole {
            role_arn: &role,
            session_name: "first",
            source_identity: "",
            duration_secs: Some(900),
        },
        unix_now(),
    )
    .await
    .unwrap();
    let e = sts::assume_role(
        &rig.endpoint,
        &signer(&first.session),
        &AssumeRole {
            role_arn: &role,
            session_name: "second",
            source_identity: "",
            duration_secs: Some(7200),
        },
        unix_now(),
    )
    .await
    .err()
    .unwrap();
    match &e {
        Error::Denied { action, code, .. } => {
            assert_eq!((*action, code.as_str()), ("AssumeRole", "ValidationError"));
        }
        other => panic!("not Denied: {other}"),
    }
}
