//! The emulator's STS actions: GetSessionToken (with MFA and replay refusal), GetCallerIdentity
//! and AssumeRole (trust: MFA-requiring and all-denying roles; chaining limit, SourceIdentity).

use secrecy::ExposeSecret;

use super::auth::assumed_role_arn;
use super::model::{iso8601, Account, Origin, Principal, Session, SessionSpec, TOTP_PERIOD_SECS};
use super::sts::Cx;
use super::wire::{check_name, Fault, Params, Xml};

const MFA_SERIAL_FAILED: &str = "MultiFactorAuthentication failed, unable to validate MFA code. \
    Please verify your MFA serial number is valid and associated with this user.";
const MFA_CODE_FAILED: &str =
    "MultiFactorAuthentication failed with invalid MFA one time pass code.";
const CHAINING_LIMIT: &str = "The requested DurationSeconds exceeds the 1 hour session limit \
    for roles assumed by role chaining.";

/// GetSessionToken's DurationSeconds range and default.
const SESSION_SECS: (i64, i64) = (900, 129_600);
const SESSION_DEFAULT_SECS: i64 = 43_200;
/// AssumeRole's DurationSeconds range and default, and the limit for chained sessions.
const ROLE_SECS: (i64, i64) = (900, 43_200);
const ROLE_DEFAULT_SECS: i64 = 3_600;
const CHAINED_MAX_SECS: i64 = 3_600;

pub fn get_session_token(cx: &mut Cx<'_>, p: &Params) -> Result<Option<Xml>, Fault> {
    let user = match (&cx.caller.principal, cx.caller.session) {
        (Principal::User { name }, false) => name.clone(),
        _ => {
            return Err(Fault::AccessDenied(
                "Cannot call GetSessionToken with session credentials".into(),
            ))
        }
    };
    let duration = p.seconds(
        "DurationSeconds",
        "durationSeconds",
        SESSION_SECS,
        SESSION_DEFAULT_SECS,
    )?;
    let mfa = verify_mfa(cx, Some(&user), p)?;
    let session = cx.account.issue_session(SessionSpec {
        principal: Principal::User { name: user },
        mfa,
        source_identity: None,
        expires: cx.now.saturating_add(duration),
        origin: Origin {
            temporary_caller: false,
            duration_given: p.get("DurationSeconds").is_some(),
        },
    });
    let mut xml = Xml::new();
    credentials(&mut xml, session);
    cx.account.counts.get_session_token += 1;
    Ok(Some(xml))
}

pub fn get_caller_identity(cx: &mut Cx<'_>, _: &Params) -> Result<Option<Xml>, Fault> {
    let mut xml = Xml::new();
    xml.el("Arn", &cx.caller.arn())
        .el("UserId", &cx.caller.user_id(cx.account))
        .el("Account", cx.caller.account());
    cx.account.counts.get_caller_identity += 1;
    Ok(Some(xml))
}

fn credentials(xml: &mut Xml, session: &Session) {
    xml.open("Credentials")
        .el("AccessKeyId", &session.id)
        .el("SecretAccessKey", session.secret.expose_secret())
        .el("SessionToken", session.token.expose_secret())
        .el("Expiration", &iso8601(session.expires))
        .close("Credentials");
}

/// Checks `SerialNumber` and `TokenCode` when given, for the devices of `user`. `Ok(false)`
/// when neither is given, `Ok(true)` when the code is fresh and valid (its step is then used).
fn verify_mfa(cx: &mut Cx<'_>, user: Option<&str>, p: &Params) -> Result<bool, Fault> {
    let serial = p.get("SerialNumber");
    let code = p.get("TokenCode");
    if serial.is_none() && code.is_none() {
        return Ok(false);
    }
    if let Some(serial) = serial {
        check_name("serialNumber", serial, (9, 256), "/:")?;
    }
    if let Some(code) = code {
        if code.len() != 6 {
            let c = if code.len() < 6 { "greater" } else { "less" };
            let c = format!("have length {c} than or equal to 6");
            return Err(Fault::invalid("tokenCode", Some(code), &c));
        }
        if !code.bytes().all(|b| b.is_ascii_digit()) {
            let c = "satisfy regular expression pattern: [\\d]*";
            return Err(Fault::invalid("tokenCode", Some(code), c));
        }
    }
    let checked = check_mfa(cx.account, user, serial, code, cx.now);
    if checked.is_err() {
        cx.account.counts.rejected_mfa += 1;
    }
    checked.map(|()| true)
}

fn check_mfa(
    account: &mut Account,
    user: Option<&str>,
    serial: Option<&str>,
    code: Option<&str>,
    now: i64,
) -> Result<(), Fault> {
    let device = serial
        .and_then(|s| account.devices.get_mut(s))
        .filter(|d| user.is_some() && d.user.as_deref() == user)
        .ok_or_else(|| Fault::AccessDenied(MFA_SERIAL_FAILED.into()))?;
    let code_failed = || Fault::AccessDenied(MFA_CODE_FAILED.into());
    let code = code.ok_or_else(code_failed)?;
    let step = u64::try_from(now).unwrap_or(0) / u64::from(TOTP_PERIOD_SECS);
    let fresh = device
        .fresh_step(code, step.saturating_sub(1)..=step.saturating_add(1))
        .ok_or_else(code_failed)?;
    device.last_step = Some(fresh);
    Ok(())
}

/// AssumeRole's parameters, validated.
struct RoleRequest<'p> {
    role_arn: &'p str,
    session_name: &'p str,
    source_identity: Option<&'p str>,
    duration: i64,
}

impl<'p> RoleRequest<'p> {
    fn parse(p: &'p Params) -> Result<Self, Fault> {
        let role_arn = p.required("RoleArn", "roleArn")?;
        if !(20..=2048).contains(&role_arn.len()) {
            let c = "have length greater than or equal to 20";
            return Err(Fault::invalid("roleArn", Some(role_arn), c));
        }
        let session_name = p.required("RoleSessionName", "roleSessionName")?;
        check_name("roleSessionName", session_name, (2, 64), "")?;
        let source_identity = p.get("SourceIdentity");
        if let Some(source) = source_identity {
            check_name("sourceIdentity", source, (2, 64), "")?;
        }
        let duration = p.seconds(
            "DurationSeconds",
            "durationSeconds",
            ROLE_SECS,
            ROLE_DEFAULT_SECS,
        )?;
        Ok(Self {
            role_arn,
            session_name,
            source_identity,
            duration,
        })
    }
}

pub fn assume_role(cx: &mut Cx<'_>, p: &Params) -> Result<Option<Xml>, Fault> {
    let request = RoleRequest::parse(p)?;
    let caller = cx.caller;
    let caller_arn = caller.arn();
    let denied = || Fault::not_authorized(&caller_arn, "sts:AssumeRole", request.role_arn);
    let role = cx
        .account
        .roles
        .get(request.role_arn)
        .filter(|role| role.trusts(&caller_arn))
        .ok_or_else(denied)?;
    let (role_id, require_mfa, max_secs) =
        (role.id.clone(), role.require_mfa, role.max_session_secs);
    if role.denies_source_identity && request.source_identity.is_some() {
        return Err(Fault::not_authorized(
            &caller_arn,
            "sts:SetSourceIdentity",
            request.role_arn,
        ));
    }
    let chained = matches!(caller.principal, Principal::Role { .. });
    if chained && request.duration > CHAINED_MAX_SECS {
        return Err(Fault::Validation(CHAINING_LIMIT.into()));
    }
    if request.duration > max_secs {
        return Err(Fault::Validation(
            "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."
                .into(),
        ));
    }
    let mfa_in_call = verify_mfa(cx, caller.user(), p)?;
    if require_mfa && !(caller.mfa || mfa_in_call) {
        return Err(denied());
    }
    let source_identity = match (caller.source_identity.as_deref(), request.source_identity) {
        (Some(kept), Some(asked)) if kept != asked => {
            return Err(Fault::not_authorized(
                &caller_arn,
                "sts:SetSourceIdentity",
                request.role_arn,
            ))
        }
        (kept, asked) => kept.or(asked).map(str::to_owned),
    };
    let session = cx.account.issue_session(SessionSpec {
        principal: Principal::Role {
            role_arn: request.role_arn.to_owned(),
            session_name: request.session_name.to_owned(),
        },
        mfa: caller.mfa || mfa_in_call,
        source_identity: source_identity.clone(),
        expires: cx.now.saturating_add(request.duration),
        origin: Origin {
            temporary_caller: caller.session,
            duration_given: p.get("DurationSeconds").is_some(),
        },
    });
    let mut xml = Xml::new();
    credentials(&mut xml, session);
    xml.open("AssumedRoleUser")
        .el(
            "AssumedRoleId",
            &format!("{role_id}:{}", request.session_name),
        )
        .el(
            "Arn",
            &assumed_role_arn(request.role_arn, request.session_name),
        )
        .close("AssumedRoleUser");
    if let Some(source) = &source_identity {
        xml.el("SourceIdentity", source);
    }
    cx.account.counts.assume_role += 1;
    Ok(Some(xml))
}
