//! The rekey ceremony: changes the vault's people or tokens without touching AWS. The quorum
//! as it is now (the custodians, or the one password holder) and a token holder open the vault
//! with an enrolled token, and then, in one atomic replacement of the file:
//!
//! - one custodian's passphrase changes ([`What::Passphrase`]);
//! - the custodian set is dealt anew ([`What::Custodians`]: custodians added or removed, M or
//!   N changed; `upgrade` converts a vault with one passphrase);
//! - a token slot is removed ([`What::RemoveToken`]), with a new token key for the others.
//!
//! A removal makes a new data key (see `vault::Opened::rekey`); old copies of the file keep
//! opening with the old people and tokens until the access key is rotated, which the report
//! says. The file is replaced atomically (the previous one kept as `VAULT.previous` while it
//! is replaced), so a crash at any point leaves the old vault or the new one, and each opens.

use secrecy::SecretString;

use super::rotate::{crash_point, lock, previous_path, Journal};
use super::unlock::Plug;
use super::{names, AccessCodeOnce, Error, Passphrases, Prompt};
use crate::audit;
use crate::clock::Clock;
use crate::config::{Paths, Profile};
use crate::notify::{Event, Notice};
use crate::secure::{Key32, Random};
use crate::token::Token;
use crate::vault::{self, Change, MemberKey, NewCustodians, SlotInfo};

/// Where a test may kill the ceremony (`BREAKGLASS_CRASH_AT`, sandbox builds only).
pub const CRASH_POINTS: &[&str] = &[
    "rekey-after-open",
    "rekey-after-previous",
    "rekey-after-vault",
];

/// What the ceremony changes.
#[derive(Debug, Clone)]
pub enum What {
    /// Custodian `custodian`'s new passphrase: they are among the quorum present, type their
    /// old one to open and the new one twice.
    Passphrase {
        /// The custodian, by name.
        custodian: String,
    },
    /// A new custodian set, `threshold` of `names`: custodians present keep their passphrase,
    /// every other one types a new one in this sitting. With `upgrade`, a vault with one
    /// passphrase becomes a vault with custodians (the password holder, when named among
    /// them, keeps the passphrase).
    Custodians {
        /// The custodians, in share order.
        names: Vec<String>,
        /// M.
        threshold: u8,
        /// Convert a version 1 or 2 vault.
        upgrade: bool,
        /// Also remove these slots (an upgrade seals every slot again anyway).
        remove: Vec<String>,
    },
    /// Removes the slot named by id, label or MFA device ARN.
    RemoveToken {
        /// The slot, as typed.
        slot: String,
    },
}

/// What `rekey` needs besides people and tokens.
pub struct Request<'a> {
    /// The profile whose vault changes.
    pub profile: &'a Profile,
    /// Where the config, state and audit log live.
    pub paths: &'a Paths,
    /// Why, for the audit log; `None`: asked at the prompt.
    pub reason: Option<&'a str>,
    /// The incident's or change's ticket; `None`: asked when the profile requires one.
    pub ticket: Option<&'a str>,
    /// The change.
    pub what: What,
    /// Audit times.
    pub now: &'a dyn Clock,
    /// Salts, nonces, new secrets.
    pub rng: &'a dyn Random,
}

/// What [`OtherTokens::find`] asks of each token: its factor for the slot sought, `None`
/// when it is not that slot's token.
pub type TryToken<'f> = dyn FnMut(&mut dyn Token) -> Result<Option<Key32>, Error> + 'f;

/// The tokens at hand besides the one that opened the vault: those of slots that stay and
/// must be sealed again (a new token key) are found among them.
pub trait OtherTokens {
    /// Calls `f` with each token at hand, in turn, until it answers `Some`.
    fn find(&mut self, f: &mut TryToken<'_>) -> Result<Option<Key32>, Error>;
}

/// No other token: a change that needs one fails naming the slot.
pub struct NoOtherTokens;

impl OtherTokens for NoOtherTokens {
    fn find(&mut self, _: &mut TryToken<'_>) -> Result<Option<Key32>, Error> {
        Ok(None)
    }
}

/// The tokens in the readers named (`rekey --other-reader`), each opened when first needed.
pub struct OtherReaders<'a> {
    readers: &'a [String],
    open: Vec<Option<crate::token::Device>>,
}

impl<'a> OtherReaders<'a> {
    /// The readers whose names contain these texts.
    pub fn new(readers: &'a [String]) -> Self {
        Self {
            readers,
            open: readers.iter().map(|_| None).collect(),
        }
    }
}

impl OtherTokens for OtherReaders<'_> {
    fn find(&mut self, f: &mut TryToken<'_>) -> Result<Option<Key32>, Error> {
        for (reader, open) in self.readers.iter().zip(self.open.iter_mut()) {
            let device = match open {
                Some(d) => d,
                None => open.insert(crate::token::Device::open(Some(reader), None)?),
            };
            if let Some(k) = f(device)? {
                return Ok(Some(k));
            }
        }
        Ok(None)
    }
}

/// What the ceremony did.
#[derive(Debug, Clone)]
pub struct Report {
    /// One sentence per change.
    pub changed: Vec<String>,
    /// What stayed as it was.
    pub unchanged: Vec<String>,
    /// The custodians present (or the one password holder).
    pub custodians: Vec<String>,
    /// The token holder.
    pub token_holder: String,
    /// The vault file.
    pub vault: String,
    /// A removal (custodian or token) happened: old copies of the file still open with it.
    pub removed_something: bool,
}

/// Runs the ceremony. Refused before anyone is asked: another ceremony of this profile running,
/// an interrupted rotation (finish it first), a change the vault's version cannot take, a slot
/// that is not there.
pub async fn rekey<P: Plug + ?Sized>(
    req: &Request<'_>,
    token: &mut P,
    others: &mut dyn OtherTokens,
    prompt: &mut dyn Prompt,
) -> Result<Report, Error> {
    let mut seen = Seen::default();
    let result = attempt(req, token, others, prompt, &mut seen).await;
    // Every attempt leaves one record, whatever stopped it.
    let path = &req.profile.vault;
    let rec = audit::Record::Rekey {
        changes: result
            .as_ref()
            .map(|(r, _)| r.changed.clone())
            .unwrap_or_default(),
        custodians: seen.custodians.clone(),
        token_holder: seen.token_holder.clone(),
        reason: seen.reason.clone(),
        ticket: seen.ticket.clone(),
        version: result.as_ref().map_or(seen.version, |(_, v)| *v),
        vault: path.display().to_string(),
    };
    let entry = audit::Entry {
        time: req.now.now(),
        profile: &req.profile.name,
        record: rec,
        outcome: audit::Outcome::of(&result),
    };
    let logged = audit::append(&req.paths.audit_log(), &entry);
    if let (Err(_), Err(e)) = (&result, &logged) {
        prompt.note(&format!(
            "The outcome of this rekey could not be written to the audit log: {e}"
        ));
    }
    if logged.is_ok() {
        let detail = match &result {
            Ok((r, _)) => format!("Changed: {}", r.changed.join(" ")),
            Err(e) => format!("The rekey failed and the vault is as it was: {e}"),
        };
        let notice = |head| Notice {
            custodians: seen.custodians.clone(),
            reason: seen.reason,
            ticket: seen.ticket,
            detail: Some(detail),
            ..Notice::new(Event::Rekey, req.now.now(), req.profile, head)
                .by((&seen.custodians.join("+"), &seen.token_holder))
        };
        let endpoint = crate::aws::Endpoint::of(req.profile);
        super::tell_outcome(req.paths, notice, req.profile, None, &endpoint, &mut |w| {
            prompt.note(w)
        })
        .await;
    }
    let (report, _) = result?;
    // The vault in place is the new one; its record is written, or said to be missing.
    if let Err(e) = logged {
        prompt.note(&format!(
            "WARNING: the vault was changed, but its audit record could not be written ({e}). Tell the security team and keep this terminal's output."
        ));
    }
    let previous = previous_path(path);
    match std::fs::remove_file(&previous) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => prompt.note(&format!(
            "WARNING: the copy of the previous vault {} could not be removed ({e}); remove it by hand: it still opens with the old people and tokens.",
            previous.display()
        )),
    }
    Ok(report)
}

/// What an attempt learnt on its way, for its record.
#[derive(Default)]
struct Seen {
    custodians: Vec<String>,
    token_holder: String,
    reason: String,
    ticket: Option<String>,
    version: u16,
}

async fn attempt<P: Plug + ?Sized>(
    req: &Request<'_>,
    token: &mut P,
    others: &mut dyn OtherTokens,
    prompt: &mut dyn Prompt,
    seen: &mut Seen,
) -> Result<(Report, u16), Error> {
    seen.reason = req.reason.unwrap_or_default().trim().to_owned();
    if req.ticket.is_some() {
        seen.ticket = req.profile.ticket.check(&req.profile.name, req.ticket)?;
    }
    let journal = req.paths.rotation_journal(&req.profile.name);
    let _lock = lock(&journal)?;
    if Journal::load(&journal)?.is_some_and(|j| j.interrupted()) {
        return Err(Error::RotationInterrupted {
            profile: req.profile.name.clone(),
        });
    }
    let path = &req.profile.vault;
    let previous = previous_path(path);
    // A `.previous` with no rotation in progress is what an interrupted rekey left: the vault
    // in place (old or new, both open) is the one that counts.
    if previous.exists() {
        prompt.note(&format!(
            "Note: {} was left by an earlier rekey that stopped; the vault in place is used and the copy is removed at the end.",
            previous.display()
        ));
    }
    let vault = vault::file::read(path)?;
    let version = vault.version();
    seen.version = version;
    let remove_ids = match &req.what {
        What::RemoveToken { slot } => vec![slot_id(&vault, slot)?],
        What::Custodians { remove, .. } => remove
            .iter()
            .map(|s| slot_id(&vault, s))
            .collect::<Result<_, _>>()?,
        What::Passphrase { .. } => Vec::new(),
    };
    match &req.what {
        What::Custodians { upgrade: true, .. } if version >= vault::format::VERSION_3 => {
            return Err(Error::AlreadyCustodians)
        }
        What::Custodians { upgrade: false, .. }
        | What::Passphrase { .. }
        | What::RemoveToken { .. }
            if version < vault::format::VERSION_3 =>
        {
            return Err(vault::Error::NeedsUpgrade { version }.into())
        }
        _ => {}
    }
    if let What::Custodians {
        names, threshold, ..
    } = &req.what
    {
        super::enroll::check_custodians(&super::enroll::NewCustodianSet {
            names: names.clone(),
            threshold: *threshold,
        })?;
    }
    let token = token.plug(&vault)?;
    if req.reason.is_none() {
        seen.reason = prompt
            .line("Why are the vault's people or tokens changing? (goes to the audit log): ")?
            .trim()
            .to_owned();
    }
    if seen.reason.is_empty() {
        return Err(Error::EmptyReason);
    }
    if seen.ticket.is_none() && req.profile.ticket.required {
        let typed = prompt.line(&format!(
            "Ticket (profile {:?} requires one): ",
            req.profile.name
        ))?;
        seen.ticket = req.profile.ticket.check(&req.profile.name, Some(&typed))?;
    }
    run(
        req,
        &vault,
        token,
        others,
        prompt,
        &remove_ids,
        &mut seen.custodians,
        &mut seen.token_holder,
    )
    .await
}

/// The slot named by `which`: its id, its label, or its MFA device's ARN.
fn slot_id(vault: &vault::Vault, which: &str) -> Result<u8, Error> {
    let which = which.trim();
    vault
        .slots()
        .find(|s| s.label == which || s.mfa_serial == which || s.id.to_string() == which)
        .map(|s| s.id)
        .ok_or_else(|| Error::NoSuchSlot {
            which: which.to_owned(),
            slots: vault
                .slots()
                .map(|s| format!("{} \"{}\" ({})", s.id, s.label, s.mfa_serial))
                .collect(),
        })
}

#[allow(clippy::too_many_arguments)]
async fn run(
    req: &Request<'_>,
    vault: &vault::Vault,
    token: &mut dyn Token,
    others: &mut dyn OtherTokens,
    prompt: &mut dyn Prompt,
    remove_ids: &[u8],
    custodians: &mut Vec<String>,
    token_holder: &mut String,
) -> Result<(Report, u16), Error> {
    // People: the quorum as the vault is now, then the token holder.
    let (passphrases, password_holder) = match vault.custodians() {
        Some(_) => {
            let p = Passphrases::ask(prompt, vault)?;
            *custodians = p.custodians().iter().map(|c| c.name.clone()).collect();
            *token_holder = super::ask_token_holder(prompt, vault)?;
            (p, None)
        }
        None => {
            let (p, t) = super::ask_holders(prompt)?;
            *custodians = vec![p.clone()];
            *token_holder = t;
            (Passphrases::One(prompt.passphrase(false)?), Some(p))
        }
    };
    if let What::Custodians { names, .. } = &req.what {
        if let Some(n) = names.iter().find(|n| names::same_person(n, token_holder)) {
            return Err(Error::TokenHolderIsCustodian {
                name: token_holder.clone(),
                custodian: n.clone(),
            });
        }
    }
    let mut prompt = AccessCodeOnce::new(prompt);
    let opened = super::enroll::open_with(
        vault,
        &passphrases,
        token,
        &req.profile.seal_account,
        &mut prompt,
        req.rng,
    )
    .await?;
    if !opened.check_profile(&req.profile.name)? {
        prompt.note("Warning: this vault names no profile (sealed by an older breakglass), so it cannot be checked to be this profile's.");
    }
    prompt.note(&format!("Vault opened with slot {}.", opened.slot_id));
    crash_point("rekey-after-open");
    let present: Vec<(u8, String)> = passphrases
        .custodians()
        .iter()
        .map(|c| (c.x, c.name.clone()))
        .collect();
    let mut changed = Vec::new();
    let mut unchanged = Vec::new();
    let mut removed_something = false;
    let before = vault.custodians().map(|(m, members)| {
        (
            m,
            members
                .iter()
                .map(|c| c.name.clone())
                .collect::<Vec<String>>(),
        )
    });
    let mut ask_token = |slot: &SlotInfo, prompt: &mut dyn Prompt| -> Result<Key32, Error> {
        prompt.note(&format!(
            "Key slot {} (\"{}\") stays and is sealed again under the new token key: its token answers once.",
            slot.id,
            names::printable(&slot.label)
        ));
        let found =
            others.find(
                &mut |t| match respond(t, slot, &req.profile.seal_account, prompt, req.rng) {
                    Ok(k) => Ok(Some(k)),
                    Err(Error::Vault(vault::Error::WrongTokenForSlot { .. })) => Ok(None),
                    Err(e) => Err(e),
                },
            )?;
        found.ok_or_else(|| Error::OtherTokenNeeded {
            id: slot.id,
            label: slot.label.clone(),
        })
    };
    let new = match &req.what {
        What::Passphrase { custodian } => {
            let Some((x, name)) = present
                .iter()
                .find(|(_, n)| names::same_person(n, custodian))
            else {
                return Err(Error::CustodianNotPresent {
                    name: custodian.clone(),
                });
            };
            let new = super::enroll::ask_passphrase(&mut prompt, Some(name))?;
            changed.push(format!("custodian {name}'s passphrase changed"));
            unchanged
                .push("the other custodians' passphrases, the threshold and the key slots".into());
            opened.change_passphrase(*x, &new, req.rng)?
        }
        What::RemoveToken { .. } => {
            for id in remove_ids {
                let label = vault
                    .slots()
                    .find(|s| s.id == *id)
                    .map(|s| s.label.clone())
                    .unwrap_or_default();
                changed.push(format!("key slot {id} (\"{label}\") removed"));
            }
            changed.push(
                "the other key slots sealed again under a new token key (new data key)".into(),
            );
            unchanged.push("the custodians and their passphrases".into());
            removed_something = true;
            let change = Change {
                custodians: None,
                remove_slots: remove_ids.to_vec(),
            };
            rekey_with(&opened, &change, &mut ask_token, &mut prompt, req.rng)?
        }
        What::Custodians {
            names: new_names,
            threshold,
            upgrade,
            ..
        } => {
            // Where each new custodian's key comes from: present now, the upgraded vault's
            // one passphrase (its holder named among them), or a passphrase typed now.
            let mut typed: Vec<Option<SecretString>> = Vec::with_capacity(new_names.len());
            let mut sources = Vec::with_capacity(new_names.len());
            for name in new_names {
                if let Some((x, _)) = present.iter().find(|(_, n)| names::same_person(n, name)) {
                    sources.push(Some(*x));
                    typed.push(None);
                } else if *upgrade
                    && password_holder
                        .as_deref()
                        .is_some_and(|p| names::same_person(p, name))
                {
                    sources.push(None);
                    typed.push(None);
                } else {
                    prompt.note(&format!(
                        "{} is a custodian who was not present: they choose their passphrase now.",
                        names::quoted(name)
                    ));
                    typed.push(Some(super::enroll::ask_passphrase(
                        &mut prompt,
                        Some(name),
                    )?));
                    sources.push(None);
                }
            }
            let members = new_names
                .iter()
                .zip(&sources)
                .zip(&typed)
                .map(|((name, x), p)| {
                    let key = match (x, p) {
                        (Some(x), _) => MemberKey::Present(*x),
                        (None, Some(p)) => MemberKey::Passphrase(p),
                        (None, None) => MemberKey::Upgraded,
                    };
                    (name.clone(), key)
                })
                .collect();
            let change = Change {
                custodians: Some(NewCustodians {
                    threshold: *threshold,
                    members,
                }),
                remove_slots: remove_ids.to_vec(),
            };
            match &before {
                Some((m, old)) => {
                    let gone: Vec<&String> = old
                        .iter()
                        .filter(|o| !new_names.iter().any(|n| names::same_person(n, o)))
                        .collect();
                    let added: Vec<&String> = new_names
                        .iter()
                        .filter(|n| !old.iter().any(|o| names::same_person(n, o)))
                        .collect();
                    for g in &gone {
                        changed.push(format!("custodian {g} removed"));
                    }
                    for a in &added {
                        changed.push(format!("custodian {a} added"));
                    }
                    if *m != *threshold || old.len() != new_names.len() {
                        changed.push(format!(
                            "now {threshold} of {} custodians needed (was {m} of {})",
                            new_names.len(),
                            old.len()
                        ));
                    }
                    changed.push("the custodians' shares dealt anew (new data key)".into());
                    removed_something |= !gone.is_empty();
                }
                None => {
                    changed.push(format!(
                        "converted to custodians (vault format 3): {threshold} of {} needed: {}",
                        new_names.len(),
                        new_names.join(", ")
                    ));
                    changed.push("every key slot sealed again under a new token key".into());
                    removed_something = true;
                }
            }
            for id in remove_ids {
                changed.push(format!("key slot {id} removed"));
                removed_something = true;
            }
            if remove_ids.is_empty() && before.is_some() {
                unchanged.push("the key slots".into());
            }
            rekey_with(&opened, &change, &mut ask_token, &mut prompt, req.rng)?
        }
    };
    unchanged.push("the IAM access key and the MFA devices (nothing was sent to AWS)".into());
    let path = &req.profile.vault;
    vault::file::write(&previous_path(path), opened.vault())?;
    crash_point("rekey-after-previous");
    vault::file::write(path, &new)?;
    crash_point("rekey-after-vault");
    let version = new.version();
    Ok((
        Report {
            changed,
            unchanged,
            custodians: custodians.clone(),
            token_holder: token_holder.clone(),
            vault: path.display().to_string(),
            removed_something,
        },
        version,
    ))
}

/// `opened.rekey(change)`, asking `ask_token` for each slot sealed again; an error of the
/// ceremony (a token not at hand, a PIN refused) comes back as itself.
fn rekey_with(
    opened: &vault::Opened,
    change: &Change<'_>,
    ask_token: &mut dyn FnMut(&SlotInfo, &mut dyn Prompt) -> Result<Key32, Error>,
    prompt: &mut dyn Prompt,
    rng: &dyn Random,
) -> Result<vault::Vault, Error> {
    let mut failed: Option<Error> = None;
    let r = opened.rekey(
        change,
        &mut |slot| {
            ask_token(slot, prompt).map_err(|e| {
                let said = e.to_string();
                failed = Some(e);
                vault::Error::NoAnswer(said)
            })
        },
        rng,
    );
    match (r, failed) {
        (Ok(v), _) => Ok(v),
        (Err(_), Some(e)) => Err(e),
        (Err(e), None) => Err(e.into()),
    }
}

/// The token factor `T` of `slot` from `token`, which must be the slot's token.
fn respond(
    token: &mut dyn Token,
    slot: &SlotInfo,
    seal_account: &str,
    prompt: &mut dyn Prompt,
    rng: &dyn Random,
) -> Result<Key32, Error> {
    use vault::{FactorKind, SealFactor};
    let wrong = || {
        Error::Vault(vault::Error::WrongTokenForSlot {
            id: slot.id,
            label: slot.label.clone(),
        })
    };
    match slot.kind {
        FactorKind::OathHmac => {
            let mut t = token.oath()?;
            let mut session = super::open_oath(&mut *t, prompt, rng)?;
            let mut f = vault::OathFactor::new(&mut session, seal_account);
            if !f.matches(slot)? {
                return Err(wrong());
            }
            prompt.touch_start(&format!("sealing key slot {} again", slot.id));
            let r = f.respond(slot);
            prompt.touch_end();
            Ok(r?)
        }
        FactorKind::PivEcdh => {
            let mut card = token.piv()?;
            let mut pins = super::PinPrompt(prompt);
            let mut f = vault::piv::PivFactor::new(&mut *card, &mut pins);
            if !f.matches(slot)? {
                return Err(wrong());
            }
            Ok(f.respond(slot)?)
        }
        FactorKind::Fido2HmacSecret => {
            let mut key = token.fido2()?;
            let mut pins = super::PinPrompt(prompt);
            let mut f = vault::fido2::Fido2Factor::new(&mut *key, &mut pins);
            if !f.matches(slot)? {
                return Err(wrong());
            }
            Ok(f.respond(slot)?)
        }
    }
}
