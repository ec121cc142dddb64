//! The activation (design §2): two holders, passphrase + token → vault → MFA code →
//! GetSessionToken → audit record. The long-term key is dropped right after the call.

use super::mfa::{self, Windows};
use super::{ask_holders, Error, Prompt};
use crate::audit;
use crate::aws::{self, sts, Endpoint, Signer};
use crate::clock::Clock;
use crate::config::{Paths, Profile};
use crate::secure::mask_key_id;
use crate::token::oath::Session;
use crate::token::Token;
use crate::vault::{self, OathFactor};

/// A successful activation.
pub struct Activation {
    /// The STS session from GetSessionToken with the MFA code.
    pub session: sts::Session,
    /// Who typed the passphrase.
    pub password_holder: String,
    /// Who touched the token.
    pub token_holder: String,
    /// The MFA device the code was for (the opening slot's).
    pub mfa_serial: String,
    /// The IAM user's ARN, from the vault.
    pub user_arn: String,
}

/// What `unlock` needs besides people and a token.
pub struct Request<'a> {
    /// The profile to unlock (vault, token accounts, session duration).
    pub profile: &'a Profile,
    /// Where the config, state and audit log live.
    pub paths: &'a Paths,
    /// Why the access is needed, for the audit log (non-empty).
    pub reason: &'a str,
    /// The STS endpoint.
    pub endpoint: Endpoint,
    /// The clock (TOTP windows, audit times).
    pub now: &'a dyn Clock,
    /// The random source (the OATH access code's challenge).
    pub rng: &'a dyn crate::secure::Random,
}

/// Runs the activation; every attempt that got as far as the names is audited.
pub async fn unlock(
    req: &Request<'_>,
    token: &mut dyn Token,
    prompt: &mut dyn Prompt,
) -> Result<Activation, Error> {
    if req.reason.trim().is_empty() {
        return Err(Error::EmptyReason);
    }
    let vault = vault::file::read(&req.profile.vault)?;
    let (password_holder, token_holder) = match ask_holders(prompt) {
        Ok(names) => names,
        Err(e @ Error::SameHolder { .. }) => {
            if let Error::SameHolder { name } = &e {
                let rec = audit::Record::Activation {
                    password_holder: name.clone(),
                    token_holder: name.clone(),
                    reason: req.reason.trim().to_owned(),
                    session: None,
                };
                let outcome = audit::Outcome::Failure {
                    reason: e.to_string(),
                };
                record(req, rec, outcome).map_err(Error::AuditFailed)?;
            }
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    let result = activate(req, &vault, token, prompt).await;
    let rec = audit::Record::Activation {
        password_holder: password_holder.clone(),
        token_holder: token_holder.clone(),
        reason: req.reason.trim().to_owned(),
        session: result.as_ref().ok().map(|(s, serial, _)| {
            (
                audit::Issued {
                    temporary_access_key_id: s.access_key_id.clone(),
                    expiration: s.expiration,
                },
                serial.clone(),
            )
        }),
    };
    let logged = record(req, rec, audit::Outcome::of(&result));
    let (session, mfa_serial, user_arn) = result?;
    logged.map_err(Error::AuditFailed)?;
    Ok(Activation {
        session,
        password_holder,
        token_holder,
        mfa_serial,
        user_arn,
    })
}

fn record(
    req: &Request<'_>,
    record: audit::Record,
    outcome: audit::Outcome,
) -> Result<(), audit::Error> {
    let entry = audit::Entry {
        time: req.now.now(),
        profile: &req.profile.name,
        record,
        outcome,
    };
    audit::append(&req.paths.audit_log(), &entry)
}

async fn activate(
    req: &Request<'_>,
    vault: &vault::Vault,
    token: &mut dyn Token,
    prompt: &mut dyn Prompt,
) -> Result<(sts::Session, String, String), Error> {
    let passphrase = prompt.passphrase(false)?;
    // PIV and FIDO2 first (their own connections), then OATH for the seal or the MFA code.
    let by_piv = super::open_before_oath(vault, &passphrase, token, prompt)?;
    let mut transport = token.oath()?;
    let mut session = super::open_oath(&mut *transport, prompt, req.rng)?;
    let opened = match by_piv {
        Some(opened) => opened,
        None => {
            prompt.note("Opening the vault (passphrase key derivation, then the token's seal).");
            let mut factor = OathFactor::new(&mut session, &req.profile.seal_account);
            prompt.touch_start("opening the vault");
            let r = vault.open(&passphrase, &mut factor);
            prompt.touch_end();
            r?
        }
    };
    drop(passphrase);
    let payload = &opened.payload;
    let serial = opened.mfa_serial().to_owned();
    prompt.note(&format!(
        "Vault opened with slot {}. IAM key {}, MFA device {serial}.",
        opened.slot_id,
        mask_key_id(&payload.access_key_id),
    ));
    let signer = Signer {
        access_key_id: &payload.access_key_id,
        secret_access_key: &payload.secret_access_key,
        session_token: None,
    };
    let s = get_session(req, &mut session, &signer, &serial, prompt).await?;
    let user = payload.user_arn.clone();
    // The long-term key leaves memory here (SecretString wipes on drop).
    drop(opened);
    Ok((s, serial, user))
}

/// GetSessionToken with a never-used window; one retry with a fresh window if AWS refuses.
async fn get_session(
    req: &Request<'_>,
    session: &mut Session<'_>,
    signer: &Signer<'_>,
    serial: &str,
    prompt: &mut dyn Prompt,
) -> Result<sts::Session, Error> {
    let state_path = req.paths.mfa_state();
    let mut windows = Windows::load(&state_path);
    let mut refused: Option<String> = None;
    for attempt in 0..2 {
        let step = loop {
            if let Some(step) = mfa::choose_step(req.now.now(), windows.last(serial)) {
                break step;
            }
            mfa::wait_past(windows.last(serial).unwrap_or(0), req.now, prompt);
        };
        let code = mfa::code_for_step(session, &req.profile.mfa_account, step, prompt)?;
        windows.record(serial, step);
        windows.save(&state_path)?;
        prompt.note(&format!(
            "Calling STS GetSessionToken (attempt {}).",
            attempt + 1
        ));
        let result = sts::get_session_token(
            &req.endpoint,
            signer,
            serial,
            &code,
            req.profile.session_duration_secs,
            req.now.now(),
        )
        .await;
        match result {
            Ok(s) => return Ok(s),
            Err(aws::Error::BadCode { message }) if attempt == 0 => {
                prompt.note("AWS refused the MFA code; trying once more with a fresh time window.");
                refused = Some(message);
                mfa::wait_past(step, req.now, prompt);
            }
            Err(aws::Error::BadCode { message }) => {
                return Err(Error::CodeRefusedTwice {
                    message: format!("{}; then: {message}", refused.unwrap_or_default()),
                })
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::CodeRefusedTwice {
        message: refused.unwrap_or_default(),
    })
}

/// The session as AWS `credential_process` JSON (Version 1), written straight into a wiped
/// buffer (a `serde_json::Value` would keep unwiped copies of the secrets).
pub fn credential_process_json(s: &sts::Session) -> zeroize::Zeroizing<String> {
    use secrecy::ExposeSecret;
    // Sized for the worst case of JSON escaping: growing would leave copies behind.
    let mut out = zeroize::Zeroizing::new(Vec::with_capacity(
        256 + 6
            * (s.secret_access_key.expose_secret().len() + s.session_token.expose_secret().len()),
    ));
    let fields: [(&str, &str); 4] = [
        ("AccessKeyId", &s.access_key_id),
        ("SecretAccessKey", s.secret_access_key.expose_secret()),
        ("SessionToken", s.session_token.expose_secret()),
        ("Expiration", &audit::rfc3339(s.expiration)),
    ];
    out.extend_from_slice(b"{\"Version\":1");
    for (key, value) in fields {
        out.extend_from_slice(format!(",\"{key}\":").as_bytes());
        // Writing a &str into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, value);
    }
    out.push(b'}');
    zeroize::Zeroizing::new(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    #[test]
    fn credential_process_json_is_valid_and_complete() {
        let s = sts::Session {
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: SecretString::from("se\"cret/+=".to_owned()),
            session_token: SecretString::from("tok".to_owned()),
            expiration: 1_700_000_000,
        };
        let v: serde_json::Value = serde_json::from_str(&credential_process_json(&s)).unwrap();
        assert_eq!(v["Version"], 1);
        assert_eq!(v["SecretAccessKey"], "se\"cret/+=");
        assert_eq!(v["SessionToken"], "tok");
        assert_eq!(v["Expiration"], "2023-11-14T22:13:20Z");
    }
}
