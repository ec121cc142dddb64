//! Who is calling: SigV4 verification of a request against the emulator's keys and sessions,
//! with AWS's checks and words (credential scope, 15-minute clock window, session token,
//! expiry, inactive keys).

use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use super::http::Request;
use super::model::{Account, KeyStatus, Principal, ACCOUNT_ID, REGION};
use super::sigv4::{self, Authorization, Message};
use super::wire::{Fault, Service};

/// How far `X-Amz-Date` may be from the emulator's clock, either way.
pub const MAX_SKEW_SECS: i64 = 15 * 60;

const SIGNATURE_MISMATCH: &str = "The request signature we calculated does not match the \
    signature you provided. Check your AWS Secret Access Key and signing method. Consult the \
    service documentation for details.";

/// An authenticated caller.
pub struct Caller {
    pub principal: Principal,
    /// True for temporary (`ASIA…`) credentials.
    pub session: bool,
    /// True when MFA was verified for these credentials.
    pub mfa: bool,
    pub source_identity: Option<String>,
    /// The long-term access key that signed the request (`None` for temporary credentials).
    pub long_term_key: Option<String>,
}

impl Caller {
    /// The IAM user behind the credentials (long-term key or GetSessionToken session).
    pub fn user(&self) -> Option<&str> {
        match &self.principal {
            Principal::User { name } => Some(name),
            Principal::Role { .. } => None,
        }
    }

    /// `arn:aws:iam::…:user/NAME` or `arn:aws:sts::…:assumed-role/ROLE/SESSION`.
    pub fn arn(&self) -> String {
        match &self.principal {
            Principal::User { name } => Account::user_arn(name),
            Principal::Role {
                role_arn,
                session_name,
            } => assumed_role_arn(role_arn, session_name),
        }
    }

    /// The account the caller acts in: a role session's is its role's.
    pub fn account(&self) -> &str {
        match &self.principal {
            Principal::User { .. } => ACCOUNT_ID,
            Principal::Role { role_arn, .. } => role_arn.split(':').nth(4).unwrap_or(ACCOUNT_ID),
        }
    }

    /// `AIDA…` for users, `AROA…:SESSION` for role sessions.
    pub fn user_id(&self, account: &Account) -> String {
        match &self.principal {
            Principal::User { name } => account.users.get(name).map(|u| u.id.clone()),
            Principal::Role {
                role_arn,
                session_name,
            } => account
                .roles
                .get(role_arn)
                .map(|r| format!("{}:{session_name}", r.id)),
        }
        .unwrap_or_default()
    }
}

/// The STS ARN of a session of role `role_arn`.
pub fn assumed_role_arn(role_arn: &str, session_name: &str) -> String {
    let role = role_arn.rsplit('/').next().unwrap_or(role_arn);
    let account = role_arn.split(':').nth(4).unwrap_or(ACCOUNT_ID);
    format!("arn:aws:sts::{account}:assumed-role/{role}/{session_name}")
}

/// The credentials a key id names, before the signature is checked.
struct Found<'a> {
    caller: Caller,
    secret: &'a SecretString,
    token: Option<&'a SecretString>,
    active: bool,
    expires: Option<i64>,
}

fn lookup<'a>(account: &'a Account, key_id: &str, now: i64) -> Result<Found<'a>, Fault> {
    if let Some(key) = account.keys.get(key_id) {
        // A new key works only once IAM has propagated it (`Sts::set_key_propagation`).
        let propagated = key.works_from <= key.created || now >= key.works_from;
        return Ok(Found {
            caller: Caller {
                principal: Principal::User {
                    name: key.user.clone(),
                },
                session: false,
                mfa: false,
                source_identity: None,
                long_term_key: Some(key.id.clone()),
            },
            secret: &key.secret,
            token: None,
            active: key.status == KeyStatus::Active && propagated,
            expires: None,
        });
    }
    let session = account
        .sessions
        .get(key_id)
        .ok_or(Fault::InvalidClientTokenId)?;
    Ok(Found {
        caller: Caller {
            principal: session.principal.clone(),
            session: true,
            mfa: session.mfa,
            source_identity: session.source_identity.clone(),
            long_term_key: None,
        },
        secret: &session.secret,
        token: Some(&session.token),
        active: true,
        expires: Some(session.expires),
    })
}

/// Verifies `request`'s signature and credentials. `expected` is the service of the action
/// asked for (`None` when the action is unknown: then `sts` or `iam` scopes are both accepted).
/// Returns the caller and the service named in the credential scope.
pub fn authenticate(
    account: &Account,
    request: &Request,
    expected: Option<Service>,
    now: i64,
) -> Result<(Caller, Service), Fault> {
    let header = request
        .header("authorization")
        .ok_or(Fault::MissingAuthenticationToken)?;
    let auth = sigv4::parse_authorization(header)
        .map_err(|e| Fault::IncompleteSignature(e.to_string()))?;
    let (amz_date, signed_at) = signing_time(request, &auth)?;
    let found = lookup(account, &auth.access_key_id, now)?;
    let service = check_scope(&auth, amz_date, expected)?;
    check_clock(amz_date, signed_at, now)?;
    check_signature(request, &auth, signed_at, found.secret)?;
    check_token(request, found.token)?;
    if !found.active {
        return Err(Fault::InvalidClientTokenId);
    }
    if found.expires.is_some_and(|expires| now >= expires) {
        return Err(Fault::ExpiredToken);
    }
    Ok((found.caller, service))
}

fn signing_time<'a>(request: &'a Request, auth: &Authorization) -> Result<(&'a str, i64), Fault> {
    let amz_date = request.header("x-amz-date").ok_or_else(|| {
        Fault::IncompleteSignature(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' \
             header."
                .into(),
        )
    })?;
    let signed_at = sigv4::parse_amz_date(amz_date).ok_or_else(|| {
        Fault::IncompleteSignature(format!(
            "Date must be in ISO-8601 'basic format'. Got '{amz_date}'. See \
             http://en.wikipedia.org/wiki/ISO_8601"
        ))
    })?;
    for required in ["host", "x-amz-date"] {
        if !auth.signed_headers.iter().any(|h| h == required) {
            return Err(Fault::IncompleteSignature(format!(
                "'{required}' must be a 'SignedHeader' in the AWS Authorization."
            )));
        }
    }
    Ok((amz_date, signed_at))
}

fn check_scope(
    auth: &Authorization,
    amz_date: &str,
    expected: Option<Service>,
) -> Result<Service, Fault> {
    let scope = &auth.scope;
    let mismatch = |m: String| Err(Fault::SignatureDoesNotMatch(m));
    if scope.terminator != sigv4::TERMINATOR {
        return mismatch(format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not '{}'.",
            scope.terminator
        ));
    }
    let day = amz_date.get(..8).unwrap_or_default();
    if scope.date != day {
        return mismatch(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date \
             from HTTP: '{}' != '{day}', from '{amz_date}'.",
            scope.date
        ));
    }
    if scope.region != REGION {
        return mismatch(format!(
            "Credential should be scoped to a valid region, not '{}'. ",
            scope.region
        ));
    }
    let named = Service::from_signing_name(&scope.service);
    match (named, expected) {
        (Some(named), None) => Ok(named),
        (Some(named), Some(expected)) if named == expected => Ok(named),
        (_, expected) => mismatch(format!(
            "Credential should be scoped to correct service: '{}'. ",
            expected.unwrap_or(Service::Sts).signing_name()
        )),
    }
}

fn check_clock(amz_date: &str, signed_at: i64, now: i64) -> Result<(), Fault> {
    let now_text = sigv4::format_amz_date(now);
    if signed_at < now.saturating_sub(MAX_SKEW_SECS) {
        let limit = sigv4::format_amz_date(now.saturating_sub(MAX_SKEW_SECS));
        return Err(Fault::SignatureDoesNotMatch(format!(
            "Signature expired: {amz_date} is now earlier than {limit} ({now_text} - 15 min.)"
        )));
    }
    if signed_at > now.saturating_add(MAX_SKEW_SECS) {
        let limit = sigv4::format_amz_date(now.saturating_add(MAX_SKEW_SECS));
        return Err(Fault::SignatureDoesNotMatch(format!(
            "Signature not yet current: {amz_date} is still later than {limit} ({now_text} + \
             15 min.)"
        )));
    }
    Ok(())
}

fn check_signature(
    request: &Request,
    auth: &Authorization,
    signed_at: i64,
    secret: &SecretString,
) -> Result<(), Fault> {
    let body_hash = sigv4::hex_sha256(&request.body);
    if let Some(claimed) = request.header("x-amz-content-sha256") {
        if claimed != body_hash {
            return Err(Fault::ContentSha256Mismatch);
        }
    }
    let message = Message {
        method: &request.method,
        target: &request.target,
        headers: &request.headers,
        payload_hash: &body_hash,
    };
    if sigv4::verify(secret, auth, signed_at, &message) {
        Ok(())
    } else {
        Err(Fault::SignatureDoesNotMatch(SIGNATURE_MISMATCH.into()))
    }
}

/// Temporary credentials need their own token; long-term keys must not carry one.
fn check_token(request: &Request, expected: Option<&SecretString>) -> Result<(), Fault> {
    let given = request.header("x-amz-security-token");
    match (expected, given) {
        (None, None) => Ok(()),
        (Some(expected), Some(given))
            if bool::from(expected.expose_secret().as_bytes().ct_eq(given.as_bytes())) =>
        {
            Ok(())
        }
        _ => Err(Fault::InvalidClientTokenId),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::model::Rng;
    use crate::sandbox::sigv4::Scope;
    use zeroize::Zeroizing;

    const NOW: i64 = 1_700_000_000;

    /// A request signed like the SDK signs one (with `aws-sigv4`), with `scope` overrides.
    fn signed(
        secret: &SecretString,
        key_id: &str,
        region: &str,
        service: &str,
        extra: &[(&str, &str)],
    ) -> Request {
        use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
        let body = b"Action=GetCallerIdentity&Version=2011-06-15";
        let amz_date = sigv4::format_amz_date(NOW);
        let mut headers = vec![
            ("host".to_owned(), "127.0.0.1:1".to_owned()),
            ("x-amz-date".to_owned(), amz_date.clone()),
        ];
        headers.extend(
            extra
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned())),
        );
        let mut signed_headers: Vec<String> = headers.iter().map(|(n, _)| n.clone()).collect();
        signed_headers.sort();
        let identity = aws_credential_types::Credentials::new(
            key_id,
            secret.expose_secret(),
            None,
            None,
            "test",
        )
        .into();
        let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(NOW as u64);
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name(service)
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let request = SignableRequest::new(
            "POST",
            "/",
            headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
            SignableBody::Bytes(body),
        )
        .unwrap();
        let signature = sign(request, &params).unwrap().signature().to_owned();
        let scope = Scope {
            date: amz_date[..8].to_owned(),
            region: region.to_owned(),
            service: service.to_owned(),
            terminator: "aws4_request".to_owned(),
        };
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={key_id}/{scope}, SignedHeaders={}, Signature={signature}",
            signed_headers.join(";")
        );
        headers.push(("authorization".to_owned(), authorization));
        Request {
            method: "POST".into(),
            target: "/".into(),
            headers,
            body: Zeroizing::new(body.to_vec()),
        }
    }

    fn account() -> (Account, String, SecretString) {
        let mut account = Account::new(Rng::from_os().unwrap(), NOW);
        let key = account.create_key("u", NOW);
        let (id, secret) = (key.id.clone(), key.secret.clone());
        (account, id, secret)
    }

    fn code(result: Result<(Caller, Service), Fault>) -> &'static str {
        result.map(|_| "OK").unwrap_or_else(|f| f.code())
    }

    #[test]
    fn a_correctly_signed_request_authenticates_its_user() {
        let (account, id, secret) = account();
        let request = signed(&secret, &id, "us-east-1", "sts", &[]);
        let (caller, service) = authenticate(&account, &request, Some(Service::Sts), NOW).unwrap();
        assert_eq!(service, Service::Sts);
        assert_eq!(caller.arn(), "arn:aws:iam::123456789012:user/u");
        assert!(!caller.session && !caller.mfa);
    }

    #[test]
    fn scope_must_name_the_region_and_the_actions_service() {
        let (account, id, secret) = account();
        let iam_scoped = signed(&secret, &id, "us-east-1", "iam", &[]);
        let err = authenticate(&account, &iam_scoped, Some(Service::Sts), NOW)
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "Credential should be scoped to correct service: 'sts'. "
        );
        assert_eq!(code(authenticate(&account, &iam_scoped, None, NOW)), "OK");
        let other_region = signed(&secret, &id, "eu-west-1", "sts", &[]);
        assert_eq!(
            code(authenticate(
                &account,
                &other_region,
                Some(Service::Sts),
                NOW
            )),
            "SignatureDoesNotMatch"
        );
    }

    #[test]
    fn clock_window_is_fifteen_minutes_each_way() {
        let (account, id, secret) = account();
        let request = signed(&secret, &id, "us-east-1", "sts", &[]);
        for (now, expected) in [
            (NOW + 900, "OK"),
            (NOW - 900, "OK"),
            (NOW + 901, "SignatureDoesNotMatch"),
            (NOW - 901, "SignatureDoesNotMatch"),
        ] {
            assert_eq!(
                code(authenticate(&account, &request, None, now)),
                expected,
                "{now}"
            );
        }
        let err = authenticate(&account, &request, None, NOW - 901)
            .err()
            .unwrap();
        assert!(err.to_string().starts_with("Signature not yet current: "));
    }

    #[test]
    fn long_term_keys_must_not_carry_a_token_and_body_hash_must_match() {
        let (account, id, secret) = account();
        let with_token = signed(
            &secret,
            &id,
            "us-east-1",
            "sts",
            &[("x-amz-security-token", "abc")],
        );
        assert_eq!(
            code(authenticate(&account, &with_token, None, NOW)),
            "InvalidClientTokenId"
        );
        let wrong_hash = signed(
            &secret,
            &id,
            "us-east-1",
            "sts",
            &[("x-amz-content-sha256", "00")],
        );
        assert_eq!(
            code(authenticate(&account, &wrong_hash, None, NOW)),
            "XAmzContentSHA256Mismatch"
        );
        let mut unsigned_date = signed(&secret, &id, "us-east-1", "sts", &[]);
        for (name, value) in &mut unsigned_date.headers {
            if name == "authorization" {
                *value = value.replace("SignedHeaders=host;x-amz-date", "SignedHeaders=host");
            }
        }
        assert_eq!(
            code(authenticate(&account, &unsigned_date, None, NOW)),
            "IncompleteSignature"
        );
    }
}
