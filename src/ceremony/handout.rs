//! Credentials through the agent: ask it for a profile's session and, when it makes this
//! process the leader, run the two-person unlock (or the role refresh) here and hand the result
//! back. Every command that needs credentials (`unlock`, `credential-process`, `exec`, `env`,
//! `console`) goes through [`obtain`].

use crate::agent::client::{Client, Handout, Reply};
use crate::agent::{ROLE_MAX_SECS, ROLE_MIN_SECS};
use crate::audit;
use crate::aws::{sts, Endpoint, Signer};
use crate::clock::Clock;
use crate::config::{Paths, Profile};
use crate::notify::{self, Event, Notice};
use crate::secure::SystemRandom;
use crate::token::{self, Device};

use super::{runtime, unlock, Error, Prompt};

/// Opens the prompt of a ceremony this process leads (the terminal, for the CLI). It is only
/// called when the agent makes this process the leader.
pub type OpenPrompt<'a> = &'a dyn Fn() -> Result<Box<dyn Prompt>, Error>;

/// What a hand-out needs.
pub struct Want<'a> {
    /// The profile asked for (its role, vault, token accounts).
    pub profile: &'a Profile,
    /// Where the config, state, runtime folder and audit log live.
    pub paths: &'a Paths,
    /// Given on the command line; otherwise asked at the prompt when leading.
    pub reason: Option<&'a str>,
    /// Given on the command line (`--ticket`); otherwise asked when the profile requires one.
    pub ticket: Option<&'a str>,
    /// The reader of the token (overrides the profile's).
    pub reader: Option<&'a str>,
    /// A person can answer a ceremony here (there is a terminal).
    pub interactive: bool,
    /// A person asked for a ceremony (`unlock`): one that failed a moment ago does not
    /// answer them (programs get its error for a few seconds instead of starting another).
    pub fresh: bool,
    /// Who asked, for the ceremony's first line.
    pub requested_by: &'a str,
    /// Hand out the two-person session even when the profile has a role (the console
    /// assumes its own role with it).
    pub base_only: bool,
    /// The clock (TOTP windows, audit times).
    pub clock: &'a dyn Clock,
}

/// The credentials of a profile from the agent; runs the ceremony (or AssumeRole) here when
/// the agent makes this process the leader. Returns whether this process ran the ceremony.
pub fn obtain(w: &Want<'_>, open_prompt: OpenPrompt<'_>) -> Result<(Handout, bool), Error> {
    let client = Client::start(w.paths)?;
    let role = w.profile.role_arn.as_deref().filter(|_| !w.base_only);
    let mut reply = client.get(&w.profile.name, role, w.interactive, w.fresh)?;
    let mut led = false;
    loop {
        reply = match reply {
            Reply::Creds(h) => return Ok((*h, led)),
            Reply::NoSession(reason) => {
                return Err(Error::NoSession {
                    profile: w.profile.name.clone(),
                    reason,
                })
            }
            Reply::LeadCeremony(lead) => {
                led = true;
                match ceremony(w, open_prompt) {
                    Ok(a) => lead.put_base(
                        &a.session,
                        &a.mfa_serial,
                        &a.password_holder,
                        &a.token_holder,
                        &a.user_arn,
                    )?,
                    Err(e) => {
                        lead.abort(&e.to_string());
                        return Err(e);
                    }
                }
            }
            Reply::LeadRole {
                lead,
                base,
                password_holder,
                token_holder,
            } => match refresh_role(w, &base, (&password_holder, &token_holder)) {
                Ok(r) => {
                    lead.put_role(role.unwrap_or_default(), &r.session, &r.assumed_role_arn)?
                }
                Err(e) => {
                    lead.abort(&e.to_string());
                    return Err(e);
                }
            },
        };
    }
}

/// The unlock ceremony at the prompt.
fn ceremony(w: &Want<'_>, open_prompt: OpenPrompt<'_>) -> Result<unlock::Activation, Error> {
    let mut prompt = open_prompt()?;
    prompt.note(&format!(
        "breakglass: profile {:?} is locked; two-person unlock ({}).",
        w.profile.name, w.requested_by
    ));
    let mut token = Plugged {
        reader: w.reader.or(w.profile.reader.as_deref()),
        device: None,
    };
    let req = unlock::Request {
        profile: w.profile,
        paths: w.paths,
        reason: w.reason,
        ticket: w.ticket,
        requested_by: w.requested_by,
        endpoint: Endpoint::of(w.profile),
        now: w.clock,
        rng: &SystemRandom::new(),
    };
    let a = runtime()?.block_on(unlock::unlock(&req, &mut token, &mut *prompt))?;
    prompt.note(&format!(
        "Session granted to {} and {}: temporary key {}, valid until {}.",
        super::names::printable(&a.password_holder),
        super::names::printable(&a.token_holder),
        a.session.access_key_id,
        audit::rfc3339(a.session.expiration),
    ));
    Ok(a)
}

/// The token in the profile's (or the command line's) reader, opened when the ceremony asks.
/// With no reader named and several tokens present, the one enrolled in the vault is chosen
/// by its identity (OATH device id, PIV serial), whatever reader it is in today.
pub struct Plugged<'a> {
    reader: Option<&'a str>,
    device: Option<Device>,
}

impl<'a> Plugged<'a> {
    /// The token in `reader` (part of its name), or the enrolled one among those plugged in.
    pub fn new(reader: Option<&'a str>) -> Self {
        Self {
            reader,
            device: None,
        }
    }
}

impl unlock::Plug for Plugged<'_> {
    fn plug(&mut self, vault: &crate::vault::Vault) -> Result<&mut dyn crate::token::Token, Error> {
        Ok(match self.device {
            Some(ref mut device) => device,
            None => {
                let device = match Device::open(self.reader, None) {
                    Ok(device) => device,
                    Err(token::Error::SeveralTokens { readers }) if self.reader.is_none() => {
                        enrolled_one(vault, readers)?
                    }
                    Err(e) => return Err(e.into()),
                };
                self.device.insert(device)
            }
        })
    }
}

/// The one token among `readers` that a slot of `vault` recognises (see
/// [`super::slot_serial`]). None or several: the readers' names go back to the holders.
fn enrolled_one(vault: &crate::vault::Vault, readers: Vec<String>) -> Result<Device, Error> {
    let mut enrolled: Vec<Device> = readers
        .iter()
        .filter_map(|r| Device::open(Some(r), None).ok())
        .filter_map(|mut d| super::slot_serial(vault, &mut d).map(|_| d))
        .collect();
    match enrolled.len() {
        1 => Ok(enrolled.remove(0)),
        0 if vault
            .slots()
            .any(|s| s.kind == crate::vault::FactorKind::Fido2HmacSecret) =>
        {
            // A FIDO2 slot cannot be told without its PIN: the holders choose.
            Err(token::Error::SeveralTokens { readers }.into())
        }
        0 => Err(Error::NoEnrolledToken { readers }),
        _ => Err(token::Error::SeveralTokens {
            readers: enrolled.iter().map(|d| d.reader().to_owned()).collect(),
        }
        .into()),
    }
}

/// AssumeRole into the profile's role with the two-person session, for a shell: never longer
/// than the session it comes from (AWS's minimum is 15 minutes).
fn refresh_role(
    w: &Want<'_>,
    base: &sts::Session,
    holders: (&str, &str),
) -> Result<sts::RoleSession, Error> {
    let left = base.expiration.saturating_sub(w.clock.now());
    assume(
        &Assumption {
            profile: w.profile,
            paths: w.paths,
            role_arn: w.profile.role_arn.as_deref().unwrap_or_default(),
            duration_secs: Some(left.clamp(ROLE_MIN_SECS, ROLE_MAX_SECS)),
            purpose: Purpose::Shell,
            clock: w.clock,
            warn: &|w| eprintln!("breakglass: {w}"),
        },
        base,
        holders,
    )
}

/// What a role session is for (the audit record's `for`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A role session handed out through the agent (`exec`, `env`, `credential-process`).
    Shell,
    /// A role session for a console sign-in URL.
    Console,
}

impl Purpose {
    fn name(self) -> &'static str {
        match self {
            Self::Shell => "shell",
            Self::Console => "console",
        }
    }
}

/// An AssumeRole made with the two-person session.
pub struct Assumption<'a> {
    /// The profile whose two-person session assumes the role.
    pub profile: &'a Profile,
    /// Where the state and audit log live.
    pub paths: &'a Paths,
    /// The role to assume.
    pub role_arn: &'a str,
    /// DurationSeconds, in seconds; `None` sends none (AWS's default, 1 h; what the console needs).
    pub duration_secs: Option<u64>,
    /// What the session is for, in the audit record.
    pub purpose: Purpose,
    /// The clock (audit times).
    pub clock: &'a dyn Clock,
    /// Says a notice that could not be delivered (to the terminal).
    pub warn: &'a dyn Fn(&str),
}

/// Assumes the role with `RoleSessionName` and `SourceIdentity` naming both holders, audits
/// it, and notifies it (`[notify]`, published with the two-person session). A role session
/// whose record cannot be written, or whose notice a required channel did not take, is
/// discarded.
pub fn assume(
    a: &Assumption<'_>,
    base: &sts::Session,
    (password_holder, token_holder): (&str, &str),
) -> Result<sts::RoleSession, Error> {
    let session_name = sts::role_session_name(
        a.profile.role_session_name.as_deref(),
        password_holder,
        token_holder,
    )
    .map_err(Error::RoleSessionName)?;
    let source_identity = sts::source_identity(password_holder, token_holder);
    let signer = Signer {
        access_key_id: &base.access_key_id,
        secret_access_key: &base.secret_access_key,
        session_token: Some(&base.session_token),
    };
    let req = sts::AssumeRole {
        role_arn: a.role_arn,
        session_name: &session_name,
        source_identity: &source_identity,
        duration_secs: a.duration_secs,
    };
    let r = runtime()?.block_on(sts::assume_role(
        &Endpoint::of(a.profile),
        &signer,
        &req,
        a.clock.now(),
    ));
    let entry = audit::Entry {
        time: a.clock.now(),
        profile: &a.profile.name,
        outcome: audit::Outcome::of(&r),
        record: audit::Record::RoleAssumed {
            role_arn: a.role_arn.to_owned(),
            role_session_name: session_name,
            source_identity,
            purpose: a.purpose.name(),
            session: r.as_ref().ok().map(|rs| audit::Issued {
                temporary_access_key_id: rs.session.access_key_id.clone(),
                expiration: rs.session.expiration,
            }),
        },
    };
    let log = a.paths.audit_log();
    let head = audit::Log::new(&log)
        .append_head(&entry, None)
        .map_err(Error::RoleDiscarded)?;
    let role = r?;
    let notice = Notice {
        detail: Some(format!(
            "Role {} assumed as {} (for the {})",
            a.role_arn,
            role.assumed_role_arn,
            a.purpose.name()
        )),
        temporary_access_key_id: Some(role.session.access_key_id.clone()),
        expiration: Some(role.session.expiration),
        ..Notice::new(Event::RoleAssumed, a.clock.now(), a.profile, head)
            .by((password_holder, token_holder))
    };
    let key = role.session.access_key_id.clone();
    withheld_unless_notified(a.profile, &log, &notice, Some(base), a.warn, key)?;
    Ok(role)
}

/// Notifies a hand-out that is about to leave this process (a role session, a sign-in URL):
/// `Err` when a required channel did not take it, after the `withdrawn` record; the caller
/// then drops what it made.
pub(super) fn withheld_unless_notified(
    profile: &Profile,
    log: &std::path::Path,
    notice: &Notice,
    base: Option<&sts::Session>,
    warn: &dyn Fn(&str),
    temporary_access_key_id: String,
) -> Result<(), Error> {
    if profile.notify.is_empty() {
        return Ok(());
    }
    let endpoint = Endpoint::of(profile);
    let with = base.map(|s| notify::With {
        signer: Signer {
            access_key_id: &s.access_key_id,
            secret_access_key: &s.secret_access_key,
            session_token: Some(&s.session_token),
        },
        signing_ahead_secs: endpoint.signing_ahead_secs,
    });
    let failures = runtime()?.block_on(notify::announce(
        profile,
        log,
        notice,
        with.as_ref(),
        &mut |w| warn(w),
    ));
    if failures.is_empty() {
        return Ok(());
    }
    let entry = audit::Entry {
        time: notice.time,
        profile: &profile.name,
        record: audit::Record::Withdrawn {
            event: notice.event.name(),
            temporary_access_key_id,
            channels: failures.iter().map(|(c, _)| c.clone()).collect(),
        },
        outcome: audit::Outcome::Failure {
            reason: format!(
                "a required notice was not delivered: {}",
                failures
                    .iter()
                    .map(|(c, e)| format!("{c}: {e}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        },
    };
    audit::append(log, &entry).map_err(Error::AuditFailed)?;
    Err(Error::NoticeNotDelivered {
        event: notice.event.name(),
        failures: failures
            .into_iter()
            .map(|(c, e)| format!("{c}: {e}"))
            .collect(),
        then: "what it made was discarded and nothing was handed out",
    })
}

/// Variables that would make an SDK pick other credentials than the hand-out's: `exec` removes
/// them from the command's environment.
pub const CONFLICTING_VARIABLES: &[&str] =
    &["AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SECURITY_TOKEN"];

/// The environment of a hand-out (`exec`, `env`): the session, its expiry (`expiration`, RFC
/// 3339), the profile's region, and `BREAKGLASS_PROFILE` (which `exec` checks to refuse
/// nesting).
pub fn variables<'a>(
    h: &'a Handout,
    profile: &'a Profile,
    expiration: &'a str,
) -> [(&'static str, &'a str); 7] {
    use secrecy::ExposeSecret;
    [
        ("AWS_ACCESS_KEY_ID", &h.session.access_key_id),
        (
            "AWS_SECRET_ACCESS_KEY",
            h.session.secret_access_key.expose_secret(),
        ),
        ("AWS_SESSION_TOKEN", h.session.session_token.expose_secret()),
        ("AWS_CREDENTIAL_EXPIRATION", expiration),
        ("AWS_REGION", &profile.region),
        ("AWS_DEFAULT_REGION", &profile.region),
        ("BREAKGLASS_PROFILE", &profile.name),
    ]
}
