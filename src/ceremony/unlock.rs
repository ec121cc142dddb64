//! The activation (design §2): two holders, passphrase + token → vault → MFA code →
//! GetSessionToken → audit record. The long-term key is dropped right after the call.
//!
//! The order protects people's effort and the token: the attempt is recorded first, then the
//! vault, the token and STS are checked before anyone is asked anything; the token is held
//! (a PC/SC transaction, a PIV or FIDO2 connection) only while the vault is opened and the
//! MFA code read, never across a countdown or a network call; and the long-term key is
//! decrypted only once the MFA window is ready.

use super::mfa::{self, Windows};
use super::{ask_holders, AccessCodeOnce, Custodian, Error, Prompt};
use crate::audit;
use crate::aws::{self, sts, Endpoint, Signer};
use crate::clock::Clock;
use crate::config::{Paths, Profile};
use crate::notify::{self, Event, Notice};
use crate::secure::mask_key_id;
use crate::token::Token;
use crate::vault::{self, OathFactor};

/// A successful activation.
pub struct Activation {
    /// The STS session from GetSessionToken with the MFA code.
    pub session: sts::Session,
    /// Who typed the passphrase; with custodians, the custodians present joined by `+`.
    pub password_holder: String,
    /// The custodians present, as the vault names them (empty: a vault with one passphrase).
    pub custodians: Vec<String>,
    /// Who touched the token.
    pub token_holder: String,
    /// The MFA device the code was for (the opening slot's).
    pub mfa_serial: String,
    /// The IAM user's ARN, from the vault.
    pub user_arn: String,
    /// Why the glass was broken, as recorded.
    pub reason: String,
    /// The ticket, as recorded.
    pub ticket: Option<String>,
}

/// What `unlock` needs besides people and a token.
pub struct Request<'a> {
    /// The profile to unlock (vault, token accounts, session duration).
    pub profile: &'a Profile,
    /// Where the config, state and audit log live.
    pub paths: &'a Paths,
    /// Why the access is needed, for the audit log; `None`: asked at the prompt once the
    /// checks have passed.
    pub reason: Option<&'a str>,
    /// The incident's ticket; `None`: asked at the prompt when the profile requires one.
    pub ticket: Option<&'a str>,
    /// The command that asked (`"breakglass unlock"`), for the attempt's record.
    pub requested_by: &'a str,
    /// The STS endpoint.
    pub endpoint: Endpoint,
    /// The clock (TOTP windows, audit times).
    pub now: &'a dyn Clock,
    /// The random source (the OATH access code's challenge, the attempt's id).
    pub rng: &'a dyn crate::secure::Random,
}

/// The token of a ceremony, opened when the ceremony is ready for it: after the attempt is
/// recorded, before anyone is asked anything (so that "no token", "several tokens" end the
/// attempt before people make an effort, with a record).
pub trait Plug {
    /// The token, opened on the first call; `vault` tells an enrolled token from others.
    fn plug(&mut self, vault: &vault::Vault) -> Result<&mut dyn Token, Error>;
}

impl<T: Token> Plug for T {
    fn plug(&mut self, _: &vault::Vault) -> Result<&mut dyn Token, Error> {
        Ok(self)
    }
}

/// What the attempt learnt on its way, for its outcome record.
#[derive(Default)]
struct Progress {
    attempt: String,
    reason: String,
    ticket: Option<String>,
    holders: Option<(String, String)>,
    custodians: Vec<String>,
    /// The user's ARN, once the vault is open.
    user_arn: String,
    /// The chain head after the last record written.
    head: String,
}

/// Runs the activation. Every attempt leaves an `activation started` record before anything
/// else and exactly one `activation` record when it ends, whatever the outcome.
pub async fn unlock<P: Plug + ?Sized>(
    req: &Request<'_>,
    token: &mut P,
    prompt: &mut dyn Prompt,
) -> Result<Activation, Error> {
    Ok(activation(req, token, prompt, false).await?.0)
}

/// The activation of a ceremony that changes the vault (a rotation): [`unlock`], and the
/// vault as it was opened, the long-term key in it, for the ceremony to seal anew. The caller
/// drops it as soon as it is done with it.
pub async fn unlock_keeping_vault<P: Plug + ?Sized>(
    req: &Request<'_>,
    token: &mut P,
    prompt: &mut dyn Prompt,
) -> Result<(Activation, vault::Opened), Error> {
    let (activation, opened) = activation(req, token, prompt, true).await?;
    // `keep` was true: the vault is there.
    let opened = opened.ok_or(Error::Vault(vault::Error::Damaged))?;
    Ok((activation, opened))
}

async fn activation<P: Plug + ?Sized>(
    req: &Request<'_>,
    token: &mut P,
    prompt: &mut dyn Prompt,
    keep: bool,
) -> Result<(Activation, Option<vault::Opened>), Error> {
    if req.reason.is_some_and(|r| r.trim().is_empty()) {
        return Err(Error::EmptyReason);
    }
    // A ticket given is checked before anything starts; a missing one is asked with the
    // reason (or refused then, without a terminal).
    let ticket = match req.ticket {
        Some(t) => req.profile.ticket.check(&req.profile.name, Some(t))?,
        None => None,
    };
    let (attempt, head) = start(req)?;
    let mut progress = Progress {
        attempt: attempt.clone(),
        reason: req.reason.unwrap_or_default().trim().to_owned(),
        ticket,
        holders: None,
        custodians: Vec::new(),
        user_arn: String::new(),
        head,
    };
    let result = run(req, token, prompt, &mut progress, keep).await;
    let (password_holder, token_holder) = match (&result, progress.holders.clone()) {
        (_, Some(names)) => names,
        (
            Err(Error::SameHolder {
                password_holder,
                token_holder,
            }),
            None,
        ) => (password_holder.clone(), token_holder.clone()),
        _ => Default::default(),
    };
    let rec = audit::Record::Activation {
        attempt,
        password_holder: password_holder.clone(),
        custodians: progress.custodians.clone(),
        token_holder: token_holder.clone(),
        reason: progress.reason.clone(),
        ticket: progress.ticket.clone(),
        session: result.as_ref().ok().map(|(s, serial, ..)| {
            (
                audit::Issued {
                    temporary_access_key_id: s.access_key_id.clone(),
                    expiration: s.expiration,
                },
                serial.clone(),
            )
        }),
    };
    let logged = match &result {
        Ok((_, _, _, audit_key, _)) => sealed_record(req, rec, audit_key, prompt),
        Err(_) => record(req, rec, audit::Outcome::of(&result)),
    };
    if let (Err(_), Err(e)) = (&result, &logged) {
        // The failure itself is the answer; that its record is missing must not go unsaid.
        prompt.note(&format!(
            "The outcome of this attempt could not be written to the audit log: {e}"
        ));
    }
    if let Ok(head) = &logged {
        progress.head.clone_from(head);
    }
    let base = NoticeBase {
        progress: &progress,
        holders: (&password_holder, &token_holder),
    };
    let (session, mfa_serial, user_arn, _, opened) = match result {
        Ok(granted) => granted,
        // A refusal because the attempt's notice could not be delivered is not notified
        // again: it would wait for the same dead channel once more.
        Err(e @ Error::NoticeNotDelivered { .. }) => return Err(e),
        Err(e) => {
            let notice = base.notice(req, Event::ActivationRefused, Some(e.to_string()), None);
            notify(req, prompt, &notice, None).await;
            return Err(e);
        }
    };
    logged.map_err(Error::AuditFailed)?;
    if !req.profile.notify.is_empty() {
        progress.user_arn.clone_from(&user_arn);
        let base = NoticeBase {
            progress: &progress,
            holders: (&password_holder, &token_holder),
        };
        let notice = base.notice(req, Event::ActivationGranted, None, Some(&session));
        let with = notify::With {
            signer: Signer {
                access_key_id: &session.access_key_id,
                secret_access_key: &session.secret_access_key,
                session_token: Some(&session.session_token),
            },
            signing_ahead_secs: req.endpoint.signing_ahead_secs,
        };
        let failures = notify(req, prompt, &notice, Some(&with)).await;
        if !failures.is_empty() {
            // Nothing leaves this function: the session is dropped (and wiped) here.
            let rec = audit::Record::ActivationWithdrawn {
                attempt: progress.attempt.clone(),
                temporary_access_key_id: session.access_key_id.clone(),
                channels: failures.iter().map(|(c, _)| c.clone()).collect(),
            };
            let why = audit::Outcome::Failure {
                reason: format!(
                    "a required notice was not delivered: {}",
                    failures
                        .iter()
                        .map(|(c, e)| format!("{c}: {e}"))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            };
            drop(session);
            drop(opened);
            record(req, rec, why).map_err(Error::AuditFailed)?;
            return Err(Error::NoticeNotDelivered {
                event: Event::ActivationGranted.name(),
                failures: failures
                    .into_iter()
                    .map(|(c, e)| format!("{c}: {e}"))
                    .collect(),
                then: "the session STS granted was wiped and nothing was handed out",
            });
        }
    }
    Ok((
        Activation {
            session,
            password_holder,
            custodians: progress.custodians,
            token_holder,
            mfa_serial,
            user_arn,
            reason: progress.reason,
            ticket: progress.ticket,
        },
        opened,
    ))
}

/// What every notice of this attempt says about it.
struct NoticeBase<'a> {
    progress: &'a Progress,
    holders: (&'a str, &'a str),
}

impl NoticeBase<'_> {
    fn notice(
        &self,
        req: &Request<'_>,
        event: Event,
        detail: Option<String>,
        session: Option<&sts::Session>,
    ) -> Notice {
        Notice {
            event,
            time: req.now.now(),
            profile: req.profile.name.clone(),
            user_arn: self.progress.user_arn.clone(),
            password_holder: self.holders.0.to_owned(),
            token_holder: self.holders.1.to_owned(),
            custodians: self.progress.custodians.clone(),
            reason: self.progress.reason.clone(),
            ticket: self.progress.ticket.clone(),
            temporary_access_key_id: session.map(|s| s.access_key_id.clone()),
            expiration: session.map(|s| s.expiration),
            detail,
            audit_head: self.progress.head.clone(),
        }
    }
}

/// Delivers `notice` to the profile's channels, records each delivery, warns the holders of
/// each failure; returns the required channels that failed, with why.
async fn notify(
    req: &Request<'_>,
    prompt: &mut dyn Prompt,
    notice: &Notice,
    with: Option<&notify::With<'_>>,
) -> Vec<(String, String)> {
    let log = req.paths.audit_log();
    notify::announce(req.profile, &log, notice, with, &mut |w| prompt.note(w)).await
}

/// Writes the `activation started` record; returns the attempt's id and the chain head. An
/// attempt that cannot be recorded does not start.
fn start(req: &Request<'_>) -> Result<(String, String), Error> {
    let id: [u8; 8] = crate::secure::random_bytes(req.rng).map_err(vault::Error::from)?;
    let attempt = data_encoding::HEXLOWER.encode(&id);
    let parent_pid = std::os::unix::process::parent_id();
    let rec = audit::Record::ActivationStarted {
        attempt: attempt.clone(),
        command: req.requested_by.to_owned(),
        pid: std::process::id(),
        parent_pid,
        parent_exe: std::fs::read_link(format!("/proc/{parent_pid}/exe"))
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
    };
    let head = record(req, rec, audit::Outcome::Success)?;
    Ok((attempt, head))
}

/// What a granted activation brings back: the session, the MFA device, the user's ARN, the
/// key that seals this profile's audit records, and the opened vault when it was asked for.
type Granted = (
    sts::Session,
    String,
    String,
    crate::secure::Key32,
    Option<vault::Opened>,
);

/// The success record, sealed with the vault's audit key; before it, every earlier record
/// sealed with that key is checked, and a broken seal (the log was rewritten before it) is
/// told to the holders, and recorded.
fn sealed_record(
    req: &Request<'_>,
    record: audit::Record,
    key: &crate::secure::Key32,
    prompt: &mut dyn Prompt,
) -> Result<String, audit::Error> {
    let log = audit::Log::new(&req.paths.audit_log());
    let seal = audit::Seal::new(key);
    // A log that cannot be checked (a broken chain, a torn line) must not stop break-glass
    // access: the holders are told, and the record is appended all the same.
    let broken = match log.check_seals(&seal) {
        Ok(checked) => checked.seals_broken,
        Err(e) => {
            prompt.note(&format!(
                "WARNING: the audit log could not be checked ({e}); `breakglass audit verify` says more. Keep a copy of the log and tell the security team."
            ));
            Vec::new()
        }
    };
    if !broken.is_empty() {
        prompt.note(&format!(
            "WARNING: the audit log was rewritten: the seal of record(s) {broken:?} no longer matches what comes before them (only a ceremony of this profile can make a seal). Keep a copy of the log and tell the security team."
        ));
        log.append(&audit::Entry {
            time: req.now.now(),
            profile: &req.profile.name,
            record: audit::Record::SealsBroken { records: broken },
            outcome: audit::Outcome::Failure {
                reason: "the audit log was rewritten before these sealed records".into(),
            },
        })?;
    }
    let entry = audit::Entry {
        time: req.now.now(),
        profile: &req.profile.name,
        record,
        outcome: audit::Outcome::Success,
    };
    log.append_head(&entry, Some(&seal))
}

/// Appends an unsealed record; returns the chain head after it.
fn record(
    req: &Request<'_>,
    record: audit::Record,
    outcome: audit::Outcome,
) -> Result<String, audit::Error> {
    let entry = audit::Entry {
        time: req.now.now(),
        profile: &req.profile.name,
        record,
        outcome,
    };
    audit::Log::new(&req.paths.audit_log()).append_head(&entry, None)
}

async fn run<P: Plug + ?Sized>(
    req: &Request<'_>,
    token: &mut P,
    prompt: &mut dyn Prompt,
    progress: &mut Progress,
    keep: bool,
) -> Result<Granted, Error> {
    // Checks before people make an effort: the vault reads, one token is there, STS answers
    // a connection (no request is sent).
    let vault = vault::file::read(&req.profile.vault)?;
    let token = token.plug(&vault)?;
    aws::probe::probe(&req.endpoint).await?;
    if req.reason.is_none() {
        progress.reason = prompt
            .line("Why is the glass broken? (goes to the audit log): ")?
            .trim()
            .to_owned();
        if progress.reason.is_empty() {
            return Err(Error::EmptyReason);
        }
    }
    if progress.ticket.is_none() && req.profile.ticket.required {
        let typed = prompt.line(&format!(
            "Ticket (profile {:?} requires one{}): ",
            req.profile.name,
            req.profile
                .ticket
                .pattern
                .as_deref()
                .map(|p| format!(", matching {p}"))
                .unwrap_or_default()
        ))?;
        progress.ticket = req.profile.ticket.check(&req.profile.name, Some(&typed))?;
    }
    // A vault with custodians: each of the quorum in turn (name, then passphrase), then the
    // token holder, who is none of them. With one passphrase, both names now and the
    // passphrase in `activate`.
    let custodians = match vault.custodians() {
        Some((needed, members)) => {
            prompt.note(&format!(
                "This vault opens with {needed} of its {} custodians ({}) and a token.",
                members.len(),
                members
                    .iter()
                    .map(|m| super::names::quoted(&m.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            let present = super::ask_custodians(prompt, &vault, usize::from(needed))?;
            progress.custodians = present.iter().map(|c| c.name.clone()).collect();
            let token_holder = super::ask_token_holder(prompt, &vault)?;
            progress.holders = Some((super::custodians_label(&present), token_holder));
            Some(present)
        }
        None => {
            progress.holders = Some(ask_holders(prompt)?);
            None
        }
    };
    // Before any secret is typed: the webhooks hear of the attempt (SNS cannot: no session
    // yet), and a required one that cannot be reached ends it before people make an effort.
    if !req.profile.notify.webhooks.is_empty() {
        let (p, t) = progress.holders.clone().unwrap_or_default();
        let base = NoticeBase {
            progress,
            holders: (&p, &t),
        };
        let notice = base.notice(req, Event::ActivationAttempt, None, None);
        let failures = notify(req, prompt, &notice, None).await;
        if !failures.is_empty() {
            return Err(Error::NoticeNotDelivered {
                event: Event::ActivationAttempt.name(),
                failures: failures
                    .into_iter()
                    .map(|(c, e)| format!("{c}: {e}"))
                    .collect(),
                then: "STS was not called",
            });
        }
    }
    let granted = activate(req, &vault, token, prompt, keep, custodians.as_deref()).await?;
    // Said last, when the glass is open: what to do once the outage is over.
    let journal = super::rotate::Journal::load(&req.paths.rotation_journal(&req.profile.name));
    if let Ok(Some(j)) = journal
        .as_ref()
        .map(|j| j.as_ref().filter(|j| j.interrupted()))
    {
        prompt.note(&format!(
            "Note: a key rotation of this profile stopped at step \"{}\"; the vault still opens. After this, run `breakglass rotate {}` to finish or undo it.",
            j.step.name(),
            req.profile.name
        ));
    }
    Ok(granted)
}

async fn activate(
    req: &Request<'_>,
    vault: &vault::Vault,
    token: &mut dyn Token,
    prompt: &mut dyn Prompt,
    keep: bool,
    custodians: Option<&[Custodian]>,
) -> Result<Granted, Error> {
    let passphrase = match custodians {
        Some(_) => None,
        None => Some(prompt.passphrase(false)?),
    };
    // The OATH application may be opened twice (a second code after a refusal): its access
    // code is asked once.
    let mut prompt = AccessCodeOnce::new(prompt);
    let prompt: &mut dyn Prompt = &mut prompt;
    let state_path = req.paths.mfa_state();
    let mut windows = Windows::load(&state_path);

    // The countdown first, with nothing decrypted and the token free.
    let known = super::slot_serial(vault, token);
    let candidates: Vec<&str> = match &known {
        Some(serial) => vec![serial.as_str()],
        None => vault.slots().map(|s| s.mfa_serial.as_str()).collect(),
    };
    let last = candidates.iter().filter_map(|s| windows.last(s)).max();
    if mfa::choose_step(req.now.now(), last).is_none() {
        mfa::wait_past(last.unwrap_or(0), req.now, prompt);
    }

    // The passphrase's key before the token is opened: the token is not held while it runs.
    let passphrase = match (passphrase, custodians) {
        (Some(passphrase), _) => {
            prompt.note("Deriving the passphrase key (Argon2id).");
            vault.derive(&passphrase)?
        }
        (None, Some(custodians)) => super::derive_custodians(vault, custodians, prompt)?,
        (None, None) => {
            return Err(Error::EmptyName {
                role: "password holder",
            })
        }
    };

    // The token is held for the vault's seal and the code, then released.
    let (opened, first) = {
        let by_piv = super::open_before_oath(vault, &passphrase, token, prompt)?;
        let mut transport = token.oath()?;
        let mut session = super::open_oath(&mut *transport, prompt, req.rng)?;
        let opened = match by_piv {
            Some(opened) => opened,
            None => {
                prompt.note("Opening the vault with the token's seal.");
                let mut factor = OathFactor::new(&mut session, &req.profile.seal_account);
                prompt.touch_start("opening the vault");
                let r = vault.open_derived(&passphrase, &mut factor);
                prompt.touch_end();
                r?
            }
        };
        // Before the MFA code's touch: a vault copied over this profile's goes no further.
        if !opened.check_profile(&req.profile.name)? {
            prompt.note(&format!("Warning: this vault names no profile (sealed by an older breakglass), so it cannot be checked to be profile {:?}'s; enrol the profile again to bind it.", req.profile.name));
        }
        let serial = opened.mfa_serial().to_owned();
        let first = match mfa::choose_step(req.now.now(), windows.last(&serial)) {
            Some(step) => Some((
                step,
                mfa::code_for_step(&mut session, &req.profile.mfa_account, step, prompt)?,
            )),
            None => None,
        };
        (opened, first)
    };
    drop(passphrase);
    let payload = &opened.payload;
    let serial = opened.mfa_serial().to_owned();
    prompt.note(&format!(
        "Vault opened with slot {}. IAM key {}, MFA device {serial}.",
        opened.slot_id,
        mask_key_id(&payload.access_key_id),
    ));
    let (mut step, mut code) = match first {
        Some(first) => first,
        // Only when the slot could not be told before opening: wait now, with the token free.
        None => {
            mfa::wait_past(windows.last(&serial).unwrap_or(0), req.now, prompt);
            fresh_code(req, token, prompt, &windows, &serial)?
        }
    };
    let signer = Signer {
        access_key_id: &payload.access_key_id,
        secret_access_key: &payload.secret_access_key,
        session_token: None,
    };
    let mut refused: Option<String> = None;
    for attempt in 1..=2 {
        // Marked before the request leaves, so that a crash during the call cannot lead to
        // the same code being sent again; unmarked when the request provably never left.
        let before = windows.clone();
        windows.record(&serial, step);
        windows.save(&state_path)?;
        prompt.note(&format!("Calling STS GetSessionToken (attempt {attempt})."));
        let result = sts::get_session_token(
            &req.endpoint,
            &signer,
            &serial,
            &code,
            req.profile.session_duration_secs,
            req.now.now(),
        )
        .await;
        match result {
            Ok(s) => {
                let user = payload.user_arn.clone();
                let audit_key = opened.audit_key();
                // Unless a ceremony keeps it to seal anew, the long-term key leaves memory
                // here (SecretString wipes on drop).
                let opened = keep.then_some(opened);
                return Ok((s, serial, user, audit_key, opened));
            }
            Err(aws::Error::BadCode { message }) if attempt == 1 => {
                prompt.note("AWS refused the MFA code; trying once more with a fresh time window.");
                refused = Some(message);
                mfa::wait_past(step, req.now, prompt);
                (step, code) = fresh_code(req, token, prompt, &windows, &serial)?;
            }
            Err(aws::Error::BadCode { message }) => {
                return Err(Error::CodeRefusedTwice {
                    message: format!("{}; then: {message}", refused.unwrap_or_default()),
                })
            }
            Err(e) => {
                if !may_have_arrived(&e) {
                    windows = before;
                    windows.save(&state_path)?;
                }
                return Err(e.into());
            }
        }
    }
    Err(Error::CodeRefusedTwice {
        message: refused.unwrap_or_default(),
    })
}

/// Whether a failed call's request may have reached STS (and its code may count as used):
/// only a call that never got a connection (refused, DNS, connect timeout, TLS) did not.
fn may_have_arrived(e: &aws::Error) -> bool {
    !matches!(
        e,
        aws::Error::Unreachable {
            may_have_arrived: false,
            ..
        }
    )
}

/// A code for a window not yet used for `serial`, read in a transaction of its own.
fn fresh_code(
    req: &Request<'_>,
    token: &mut dyn Token,
    prompt: &mut dyn Prompt,
    windows: &Windows,
    serial: &str,
) -> Result<(u64, zeroize::Zeroizing<String>), Error> {
    let step = loop {
        if let Some(step) = mfa::choose_step(req.now.now(), windows.last(serial)) {
            break step;
        }
        mfa::wait_past(windows.last(serial).unwrap_or(0), req.now, prompt);
    };
    let mut transport = token.oath()?;
    let mut session = super::open_oath(&mut *transport, prompt, req.rng)?;
    let code = mfa::code_for_step(&mut session, &req.profile.mfa_account, step, prompt)?;
    Ok((step, code))
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
