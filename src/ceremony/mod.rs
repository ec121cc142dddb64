//! The flows of the design (§2), independent of the terminal: they talk to people through the
//! [`Prompt`] trait and to hardware through `token::Token`. [`unlock`] is the activation,
//! [`handout`] gets credentials through the agent (leading the activation or a role refresh
//! when the agent asks), [`console`] makes the sign-in URL, [`enroll`] the enrolment ceremony;
//! [`rotate`] the key rotation; [`mfa`] keeps the TOTP windows already used; [`names`] tells whether two typed names are
//! one person, and escapes names for the terminal.

pub mod console;
pub mod drill;
pub mod enroll;
pub mod handout;
pub mod mfa;
pub mod names;
pub mod rekey;
pub mod rotate;
pub mod transcript;
pub mod unlock;

use secrecy::SecretString;

use crate::{audit, aws, config, token, vault};

/// Who is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The holder who knows the vault passphrase (and the token's PINs and access code).
    PasswordHolder,
    /// The holder who has the token and touches it.
    TokenHolder,
}

impl Role {
    /// The role as prompts and errors name it (`"password holder"`, `"token holder"`).
    pub fn label(self) -> &'static str {
        match self {
            Self::PasswordHolder => "password holder",
            Self::TokenHolder => "token holder",
        }
    }
}

/// The people at the keyboard. Every prompt names the role that must answer.
pub trait Prompt {
    /// A holder's name.
    fn name(&mut self, role: Role) -> Result<String, Error>;
    /// The vault passphrase (password holder); `confirm` asks twice (enrolment).
    fn passphrase(&mut self, confirm: bool) -> Result<SecretString, Error>;
    /// The token's OATH access code (password holder).
    fn access_code(&mut self) -> Result<SecretString, Error>;
    /// The token holder must touch the token now, for `what`.
    fn touch_start(&mut self, what: &str);
    /// The token answered (or gave up).
    fn touch_end(&mut self);
    /// Waits `secs` seconds with a visible countdown, saying why.
    fn wait(&mut self, secs: u64, why: &str);
    /// A progress line.
    fn note(&mut self, text: &str);
    /// A line of text typed in answer to `question` (echoed), trimmed.
    fn line(&mut self, question: &str) -> Result<String, Error> {
        let _ = question;
        Err(Error::NoAnswer("no way to ask a question here".into()))
    }
    /// A token PIN (PIV, FIDO2), typed by the password holder; `tries_left` is the token's.
    fn pin(&mut self, what: &str, tries_left: u8) -> Result<SecretString, Error> {
        let _ = tries_left;
        Err(Error::NoAnswer(format!(
            "no way to ask for the {what} PIN here"
        )))
    }
    /// A yes/no question; anything but an explicit yes is no.
    fn confirm(&mut self, question: &str) -> Result<bool, Error> {
        let _ = question;
        Ok(false)
    }
    /// The name of the `index`-th of the `needed` custodians (a vault with custodians).
    fn custodian_name(&mut self, index: usize, needed: usize) -> Result<String, Error> {
        let _ = (index, needed);
        self.name(Role::PasswordHolder)
    }
    /// Custodian `name`'s passphrase; `confirm` asks twice (a new passphrase).
    fn custodian_passphrase(&mut self, name: &str, confirm: bool) -> Result<SecretString, Error> {
        let _ = name;
        self.passphrase(confirm)
    }
}

/// A custodian who answered: which share (x), their name as the vault has it, their
/// passphrase.
pub struct Custodian {
    /// The share's x in the vault.
    pub x: u8,
    /// The custodian's name as the vault stores it.
    pub name: String,
    /// Their passphrase, as typed.
    pub passphrase: SecretString,
}

/// Asks `needed` custodians of `vault` in turn, each their name (which must be one of the
/// vault's custodians, and not one already given: compared as one person, see [`names`]) and
/// then their passphrase. Nothing is derived here.
pub fn ask_custodians(
    prompt: &mut dyn Prompt,
    vault: &vault::Vault,
    needed: usize,
) -> Result<Vec<Custodian>, Error> {
    let Some((_, members)) = vault.custodians() else {
        return Ok(Vec::new());
    };
    let mut out: Vec<Custodian> = Vec::with_capacity(needed);
    for i in 1..=needed {
        let typed = names::checked(Role::PasswordHolder, &prompt.custodian_name(i, needed)?)?;
        let Some(member) = members.iter().find(|m| names::same_person(&m.name, &typed)) else {
            return Err(Error::NotCustodian {
                name: typed,
                custodians: members.iter().map(|m| m.name.clone()).collect(),
            });
        };
        if out.iter().any(|c| c.x == member.x) {
            return Err(Error::SameCustodianTwice {
                name: member.name.clone(),
            });
        }
        let passphrase = prompt.custodian_passphrase(&member.name, false)?;
        out.push(Custodian {
            x: member.x,
            name: member.name.clone(),
            passphrase,
        });
    }
    Ok(out)
}

/// The passphrase side as typed: one passphrase, or the custodians present.
pub enum Passphrases {
    /// A vault with one passphrase (versions 1 and 2).
    One(SecretString),
    /// A vault with custodians: a quorum of them.
    Custodians(Vec<Custodian>),
}

impl Passphrases {
    /// Asks what `vault` needs: its one passphrase, or a quorum of its custodians (each their
    /// name, then their passphrase).
    pub fn ask(prompt: &mut dyn Prompt, vault: &vault::Vault) -> Result<Self, Error> {
        Ok(match vault.custodians() {
            None => Self::One(prompt.passphrase(false)?),
            Some((needed, _)) => {
                Self::Custodians(ask_custodians(prompt, vault, usize::from(needed))?)
            }
        })
    }

    /// The derived key(s), with a note for each derivation.
    pub fn derive(
        &self,
        vault: &vault::Vault,
        prompt: &mut dyn Prompt,
    ) -> Result<vault::PassphraseKey, Error> {
        match self {
            Self::One(p) => {
                prompt.note("Deriving the passphrase key (Argon2id).");
                Ok(vault.derive(p)?)
            }
            Self::Custodians(c) => derive_custodians(vault, c, prompt),
        }
    }

    /// The custodians present (none for one passphrase).
    pub fn custodians(&self) -> &[Custodian] {
        match self {
            Self::One(_) => &[],
            Self::Custodians(c) => c,
        }
    }
}

/// The token holder's name, who must be none of `vault`'s custodians (present or not: a
/// custodian who also carried the token would need one person fewer than the vault says).
pub fn ask_token_holder(prompt: &mut dyn Prompt, vault: &vault::Vault) -> Result<String, Error> {
    let t = names::checked(Role::TokenHolder, &prompt.name(Role::TokenHolder)?)?;
    let members = vault.custodians().map_or(&[][..], |(_, m)| m);
    if let Some(c) = members.iter().find(|c| names::same_person(&c.name, &t)) {
        return Err(Error::TokenHolderIsCustodian {
            name: t,
            custodian: c.name.clone(),
        });
    }
    Ok(t)
}

/// The custodians present as one "password holder" for records and SourceIdentity:
/// their names joined by `+`.
pub fn custodians_label(custodians: &[Custodian]) -> String {
    custodians
        .iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join("+")
}

/// The passphrase side of a vault with custodians: each custodian's key, derived in turn
/// (about a second each at the default KDF), with a note naming them.
pub fn derive_custodians(
    vault: &vault::Vault,
    custodians: &[Custodian],
    prompt: &mut dyn Prompt,
) -> Result<vault::PassphraseKey, Error> {
    let mut keys = Vec::with_capacity(custodians.len());
    for c in custodians {
        prompt.note(&format!(
            "Deriving custodian {}'s key (Argon2id).",
            names::printable(&c.name)
        ));
        keys.push(vault.derive_custodian(c.x, &c.passphrase)?);
    }
    Ok(vault::PassphraseKey::quorum(keys))
}

/// The ceremony's prompt as the vault's [`vault::PinEntry`].
pub struct PinPrompt<'p>(pub &'p mut dyn Prompt);

impl vault::PinEntry for PinPrompt<'_> {
    fn pin(&mut self, what: &str, tries_left: u8) -> Result<SecretString, vault::Error> {
        self.0.pin(what, tries_left).map_err(|e| match e {
            Error::NoAnswer(m) => vault::Error::NoAnswer(m),
            e => vault::Error::NoAnswer(e.to_string()),
        })
    }

    fn confirm_last_try(&mut self, what: &str) -> bool {
        let after = if what == "PIV" {
            "only the PUK can unblock it"
        } else {
            "only a reset, which erases the vault's credential on it, can clear it"
        };
        self.0
            .confirm(&format!(
                "Only one {what} PIN try is left: a wrong PIN now blocks the token's {what} application, and {after} (docs/runbook-pin.md). Try once more?"
            ))
            .unwrap_or(false)
    }

    fn touch_start(&mut self, why: &str) {
        self.0.touch_start(why);
    }

    fn touch_end(&mut self) {
        self.0.touch_end();
    }
}

/// The first step of opening a vault: the factors that do not use the OATH application, PIV
/// (PIN, then touch) and then FIDO2 (PIN, then touch). `None` means no such slot is this
/// token's, and the OATH application is to be tried next. Runs before any OATH session exists
/// (see [`crate::token::Token`]).
pub fn open_before_oath(
    vault: &vault::Vault,
    passphrase: &vault::PassphraseKey,
    token: &mut dyn crate::token::Token,
    prompt: &mut dyn Prompt,
) -> Result<Option<vault::Opened>, Error> {
    use vault::FactorKind::{Fido2HmacSecret, PivEcdh};
    if has_kind(vault, PivEcdh) {
        match token.piv() {
            Ok(mut card) => {
                let mut pins = PinPrompt(prompt);
                let mut f = vault::piv::PivFactor::new(&mut *card, &mut pins);
                if let Some(opened) = try_factor(vault, passphrase, &mut f, PivEcdh)? {
                    return Ok(Some(opened));
                }
            }
            // A token without PIV may still hold another slot.
            Err(_) if !only_kind(vault, PivEcdh) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if has_kind(vault, Fido2HmacSecret) {
        match token.fido2() {
            Ok(mut key) => {
                let mut pins = PinPrompt(prompt);
                let mut f = vault::fido2::Fido2Factor::new(&mut *key, &mut pins);
                if let Some(opened) = try_factor(vault, passphrase, &mut f, Fido2HmacSecret)? {
                    return Ok(Some(opened));
                }
            }
            Err(_) if !only_kind(vault, Fido2HmacSecret) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}

/// The MFA device of the slot this token opens, found without a touch, a PIN or the access
/// code (the OATH device id, the PIV serial and key); `None` when no slot can be told that way
/// (a FIDO2 slot is not probed here: that may need its PIN).
pub fn slot_serial(vault: &vault::Vault, token: &mut dyn crate::token::Token) -> Option<String> {
    use vault::{FactorKind, SealFactor};
    struct NoPins;
    impl vault::PinEntry for NoPins {
        fn pin(&mut self, _: &str, _: u8) -> Result<SecretString, vault::Error> {
            Err(vault::Error::NoAnswer(
                "no PIN is asked to find the slot".into(),
            ))
        }
        fn confirm_last_try(&mut self, _: &str) -> bool {
            false
        }
        fn touch_start(&mut self, _: &str) {}
        fn touch_end(&mut self) {}
    }
    for slot in vault.slots() {
        let found = match slot.kind {
            FactorKind::OathHmac => token.oath().ok().and_then(|mut t| {
                let mut session = crate::token::oath::Session::select(&mut *t).ok()?;
                vault::OathFactor::new(&mut session, "").matches(slot).ok()
            }),
            FactorKind::PivEcdh => token.piv().ok().and_then(|mut card| {
                vault::piv::PivFactor::new(&mut *card, &mut NoPins)
                    .matches(slot)
                    .ok()
            }),
            _ => None,
        };
        if found == Some(true) {
            return Some(slot.mfa_serial.clone());
        }
    }
    None
}

fn has_kind(vault: &vault::Vault, kind: vault::FactorKind) -> bool {
    vault.slots().any(|s| s.kind == kind)
}

fn only_kind(vault: &vault::Vault, kind: vault::FactorKind) -> bool {
    vault.slots().all(|s| s.kind == kind)
}

/// Opens the vault with `factor` when one of its slots is this token's. "Not enrolled" (found
/// before any key derivation or PIN) means: try the next factor, unless every slot is of this
/// kind, when the error, which names the enrolled slots, is the answer.
fn try_factor(
    vault: &vault::Vault,
    passphrase: &vault::PassphraseKey,
    factor: &mut dyn vault::SealFactor,
    kind: vault::FactorKind,
) -> Result<Option<vault::Opened>, Error> {
    match vault.open_derived(passphrase, factor) {
        Ok(opened) => Ok(Some(opened)),
        Err(vault::Error::NotEnrolled { .. }) if !only_kind(vault, kind) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Ceremony failures. Each names the cause; the binary adds what to do next.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Both holders typed the same name, or names that are the same once normalised (case,
    /// invisible characters, lookalike letters: [`names::same_person`]). Both names as typed.
    #[error("both holders gave the same name, or names that look alike ({} and {}): two different people must take part", names::quoted(password_holder), names::quoted(token_holder))]
    SameHolder {
        /// The name the password holder typed.
        password_holder: String,
        /// The name the token holder typed.
        token_holder: String,
    },
    /// A holder's name was empty.
    #[error("the {role} gave no name")]
    EmptyName {
        /// Whose: `"password holder"` or `"token holder"`.
        role: &'static str,
    },
    /// A holder's name contains a control character (an escape sequence, a tab…).
    #[error(
        "the {role}'s name {} contains a control character",
        names::quoted(name)
    )]
    UnprintableName {
        /// Whose: `"password holder"` or `"token holder"`.
        role: &'static str,
        /// The name as typed (print it with [`names::printable`]).
        name: String,
    },
    /// A holder's name has nothing visible once normalised (only zero-width characters…).
    #[error("the {role}'s name {} has no visible character", names::quoted(name))]
    InvisibleName {
        /// Whose: `"password holder"` or `"token holder"`.
        role: &'static str,
        /// The name as typed (print it with [`names::printable`]).
        name: String,
    },
    #[error("{} is not a custodian of this vault (its custodians: {})", names::quoted(name), custodians.iter().map(|c| names::quoted(c)).collect::<Vec<_>>().join(", "))]
    /// A name typed at a custodian's prompt that is none of the vault's custodians.
    NotCustodian {
        /// The name typed.
        name: String,
        /// The vault's custodians.
        custodians: Vec<String>,
    },
    /// The token holder's name is one of the vault's custodians'.
    #[error("the token holder {} is custodian {} of this vault: the token holder must be someone who holds no share", names::quoted(name), names::quoted(custodian))]
    TokenHolderIsCustodian {
        /// The name the token holder typed.
        name: String,
        /// The custodian it is, as the vault names them.
        custodian: String,
    },
    /// A slot that stays must be sealed again and its token is not at hand.
    #[error("key slot {id} (\"{label}\") stays and must be sealed again under the new token key, but its token is not in any reader given")]
    OtherTokenNeeded {
        /// The slot.
        id: u8,
        /// Its label.
        label: String,
    },
    /// A rotation of the profile stopped half-way: it is finished before the vault changes.
    #[error("a key rotation of profile {profile:?} stopped half-way")]
    RotationInterrupted {
        /// The profile.
        profile: String,
    },
    /// `rekey --upgrade` of a vault that has custodians.
    #[error("this vault has custodians already (vault format 3): there is nothing to upgrade")]
    AlreadyCustodians,
    /// A slot named by id, label or MFA device that the vault does not have.
    #[error("the vault has no key slot {which:?} (its slots: {})", slots.join(", "))]
    NoSuchSlot {
        /// What was typed.
        which: String,
        /// The vault's slots.
        slots: Vec<String>,
    },
    /// A custodian's passphrase change asked for someone not among the quorum present.
    #[error("custodian {} is not among the custodians present: they must be present (and open the vault with their current passphrase) to change it", names::quoted(name))]
    CustodianNotPresent {
        /// The name given.
        name: String,
    },
    /// The same custodian (as one person) answered twice.
    #[error(
        "custodian {} was given twice: each custodian present types their own name once",
        names::quoted(name)
    )]
    SameCustodianTwice {
        /// The custodian, as the vault names them.
        name: String,
    },
    /// An activation or role hand-out was asked without a reason.
    #[error("a reason is required and it is empty")]
    EmptyReason,
    /// No ticket where the profile requires one, or one its pattern refuses.
    #[error("{0}")]
    Ticket(#[from] crate::config::BadTicket),
    /// A notice could not be delivered to a channel with `required = true`: nothing was
    /// handed out (a granted session was wiped).
    #[error("the {event} notice could not be delivered to a required channel ({}); {then}", failures.join("; "))]
    NoticeNotDelivered {
        /// The event (`"activation attempt"`, `"activation granted"`, `"role assumed"`…).
        event: &'static str,
        /// Each failed required channel, with why.
        failures: Vec<String>,
        /// What was done about it: "STS was not called", "the session … was wiped"….
        then: &'static str,
    },
    /// A prompt could not be answered (cancelled, no terminal, a script ran out).
    #[error("the answer was cancelled or no terminal is available: {0}")]
    NoAnswer(String),
    /// The passphrase and its confirmation differ (enrolment).
    #[error("the two passphrases differ")]
    PassphraseMismatch,
    /// The new passphrase is shorter than the minimum.
    #[error("the passphrase is too short ({len} characters; at least {min})")]
    WeakPassphrase {
        /// Its length, in characters.
        len: usize,
        /// The minimum, in characters.
        min: usize,
    },
    /// STS refused the MFA code, and again with the next window's code: the token's clock or the
    /// MFA device is wrong, not the timing.
    #[error("AWS refused the MFA code twice, with two fresh time windows ({message})")]
    CodeRefusedTwice {
        /// STS's last message.
        message: String,
    },
    /// The profile's MFA account is already on the token (enrolment without `--force`).
    #[error("the token already has an account named {name:?}")]
    TokenAccountExists {
        /// The account name.
        name: String,
    },
    /// Adding a token that already opens a slot of this vault.
    #[error("this token is already enrolled in the vault (slot {slot})")]
    TokenAlreadyEnrolled {
        /// The slot it opens.
        slot: u8,
    },
    /// Enrolment would overwrite an existing vault file.
    #[error("a vault already exists at {path}")]
    VaultExists {
        /// The vault's path.
        path: String,
    },
    /// The unlock's audit record could not be written: the session was discarded unused.
    #[error("the activation succeeded but its audit record could not be written, so the session was discarded: {0}")]
    AuditFailed(audit::Error),
    /// The vault failed (sealing, opening, PINs).
    #[error(transparent)]
    Vault(#[from] vault::Error),
    /// The token failed.
    #[error(transparent)]
    Token(#[from] token::Error),
    /// An AWS call failed.
    #[error(transparent)]
    Aws(#[from] aws::Error),
    /// The audit log could not be read or written (any `?` on an [`audit::Error`]).
    #[error(transparent)]
    Audit(#[from] audit::Error),
    /// The config could not be read or changed.
    #[error(transparent)]
    Config(#[from] config::Error),
    /// Creating IAM resources (`--create-key`, `--create-mfa`) needs administrator credentials.
    #[error("creating IAM resources needs administrator credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)")]
    NoAdminCredentials,
    /// The token's seal account exists but is not an HMAC-SHA256 credential.
    #[error("the token's account {name:?} is not an HMAC-SHA256 sealing credential; set another seal_account in the profile")]
    SealAccountUnfit {
        /// The seal account's name.
        name: String,
    },
    /// A file of the ceremony (config, MFA window state) could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file's path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Several tokens are plugged in and none is enrolled in the profile's vault.
    #[error("none of the tokens plugged in is enrolled in this vault (readers: {})", readers.join(", "))]
    NoEnrolledToken {
        /// The readers that hold a token.
        readers: Vec<String>,
    },
    /// A ceremony must be led here and there is no terminal to lead it on.
    #[error("the ceremony needs a terminal: both holders answer prompts there")]
    NoTerminal,
    /// The agent holds no session and this process cannot lead a ceremony.
    #[error("{reason}, and there is no terminal here for the two-person ceremony")]
    NoSession {
        /// The profile asked for.
        profile: String,
        /// The agent's reason (locked, expired, never unlocked…).
        reason: String,
    },
    /// The agent could not be reached or started, or refused.
    #[error(transparent)]
    Agent(#[from] crate::agent::client::Error),
    /// The profile's `role_session_name` pattern does not make a valid name.
    #[error(transparent)]
    RoleSessionName(aws::sts::BadPattern),
    /// The role session was got but its audit record could not be written: it was discarded unused.
    #[error("the role session was discarded: its audit record could not be written: {0}")]
    RoleDiscarded(audit::Error),
    /// The sign-in URL was made but its audit record could not be written: it was not shown.
    #[error("the sign-in URL was discarded: its audit record could not be written: {0}")]
    UrlDiscarded(audit::Error),
    /// The console sign-in (federation endpoint) failed.
    #[error(transparent)]
    Signin(#[from] aws::console::Error),
    /// The rotation journal cannot be read or is not one.
    #[error("the rotation journal {path} cannot be used: {problem}")]
    Journal {
        /// Its path.
        path: String,
        /// What is wrong.
        problem: String,
    },
    /// Another rotation of this profile is running (its lock is held).
    #[error("another ceremony that replaces this profile's vault (a rotation or a rekey) is running on this machine (it holds {lock})")]
    RotationRunning {
        /// The lock file.
        lock: String,
    },
    /// The journal of an interrupted rotation names another key than the vault holds.
    #[error("the interrupted rotation began with key {journal_key}, but the vault now holds {vault_key}: the vault was replaced meanwhile")]
    JournalMismatch {
        /// The journal's old key, masked.
        journal_key: String,
        /// The vault's key, masked.
        vault_key: String,
    },
    /// The user has an access key the vault does not hold.
    #[error("the IAM user already has a second access key {key} (created {}) that this vault does not hold{}", audit::rfc3339(*created), if *stale_copy { ": a rotation on this machine sealed it into the vault, so this vault is a stale copy" } else { ": someone else made it" })]
    SecondKey {
        /// The other key, masked.
        key: String,
        /// When it was made, Unix seconds.
        created: u64,
        /// Whether it is the key a rotation made here (this vault is then a stale copy).
        stale_copy: bool,
    },
    /// The vault's key is not among the user's keys.
    #[error("AWS lists no access key {key} for the user, yet the vault holds it")]
    VaultKeyUnknown {
        /// The vault's key, masked.
        key: String,
    },
    /// A rotation is already waiting for its old key to be retired.
    #[error("the last rotation is not finished: its old key {old_key} is deactivated on {} and deleted on {}", audit::rfc3339(*deactivate_at), audit::rfc3339(*delete_at))]
    RotationUnfinished {
        /// The old key, masked.
        old_key: String,
        /// When it is to be deactivated.
        deactivate_at: u64,
        /// When it is to be deleted.
        delete_at: u64,
    },
    /// IAM accepted a change but ListAccessKeys does not show it.
    #[error("IAM accepted {action} for key {key}, but ListAccessKeys does not show it done")]
    NotProven {
        /// The call.
        action: &'static str,
        /// The key, masked.
        key: String,
    },
    /// The vault holds an older key than the last rotation sealed (a stale copy).
    #[error("this vault holds key {vault_key}, but the last rotation sealed {current_key}: it is a stale copy")]
    StaleVault {
        /// The vault's key, masked.
        vault_key: String,
        /// The key the rotation sealed, masked.
        current_key: String,
    },
    /// The new key was refused for as long as the ceremony waited.
    #[error("the new key {key} still did not work after {waited_secs} s (AWS: {message}); it was deleted")]
    NewKeyNeverWorked {
        /// The new key, masked.
        key: String,
        /// How long the ceremony waited, seconds.
        waited_secs: u64,
        /// AWS's last answer.
        message: String,
    },
    /// The tokio runtime for the AWS calls could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

impl From<token::fido2::DeviceError> for Error {
    fn from(e: token::fido2::DeviceError) -> Self {
        Self::Vault(e.into())
    }
}

/// The single-threaded runtime the AWS calls of one ceremony run on.
pub fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)
}

/// Notifies how a ceremony (rotation, rekey, drill) ended, after its records, with the
/// chain head then: the webhooks, and the SNS topic when its session is still at hand.
/// Nothing is withheld for it (what the ceremony did is done); a failed delivery is said and
/// recorded.
pub(crate) async fn tell_outcome(
    paths: &config::Paths,
    notice: impl FnOnce(String) -> crate::notify::Notice,
    profile: &config::Profile,
    session: Option<&crate::aws::sts::Session>,
    endpoint: &crate::aws::Endpoint,
    warn: &mut dyn FnMut(&str),
) {
    if profile.notify.is_empty() {
        return;
    }
    let log = paths.audit_log();
    let head = match audit::Log::new(&log).head() {
        Ok(h) => h,
        Err(e) => {
            warn(&format!(
                "WARNING: no notice of this ceremony was sent: the audit log's head could not be read ({e}). Tell the security team yourself."
            ));
            return;
        }
    };
    let notice = notice(head);
    let with = session.map(|s| crate::notify::With {
        signer: crate::aws::Signer {
            access_key_id: &s.access_key_id,
            secret_access_key: &s.secret_access_key,
            session_token: Some(&s.session_token),
        },
        signing_ahead_secs: endpoint.signing_ahead_secs,
    });
    crate::notify::announce(profile, &log, &notice, with.as_ref(), warn).await;
}

/// Both holders' names, checked ([`names::checked`]: no control characters, something
/// visible) and different people ([`names::same_person`]); returned as typed (trimmed).
pub fn ask_holders(prompt: &mut dyn Prompt) -> Result<(String, String), Error> {
    let p = names::checked(Role::PasswordHolder, &prompt.name(Role::PasswordHolder)?)?;
    let t = names::checked(Role::TokenHolder, &prompt.name(Role::TokenHolder)?)?;
    if names::same_person(&p, &t) {
        return Err(Error::SameHolder {
            password_holder: p,
            token_holder: t,
        });
    }
    Ok((p, t))
}

/// A prompt that asks for the OATH access code once per ceremony, for ceremonies that open the
/// OATH application twice (before and after the PIV step).
pub struct AccessCodeOnce<'p> {
    /// The prompt asked for everything else.
    pub inner: &'p mut dyn Prompt,
    code: Option<SecretString>,
}

impl<'p> AccessCodeOnce<'p> {
    /// Wraps `inner`; no code is asked until the first [`Prompt::access_code`].
    pub fn new(inner: &'p mut dyn Prompt) -> Self {
        Self { inner, code: None }
    }
}

impl Prompt for AccessCodeOnce<'_> {
    fn name(&mut self, role: Role) -> Result<String, Error> {
        self.inner.name(role)
    }
    fn passphrase(&mut self, confirm: bool) -> Result<SecretString, Error> {
        self.inner.passphrase(confirm)
    }
    fn line(&mut self, question: &str) -> Result<String, Error> {
        self.inner.line(question)
    }
    fn access_code(&mut self) -> Result<SecretString, Error> {
        if let Some(c) = &self.code {
            return Ok(c.clone());
        }
        let c = self.inner.access_code()?;
        self.code = Some(c.clone());
        Ok(c)
    }
    fn touch_start(&mut self, what: &str) {
        self.inner.touch_start(what);
    }
    fn touch_end(&mut self) {
        self.inner.touch_end();
    }
    fn wait(&mut self, secs: u64, why: &str) {
        self.inner.wait(secs, why);
    }
    fn note(&mut self, text: &str) {
        self.inner.note(text);
    }
    fn pin(&mut self, what: &str, tries_left: u8) -> Result<SecretString, Error> {
        self.inner.pin(what, tries_left)
    }
    fn confirm(&mut self, question: &str) -> Result<bool, Error> {
        self.inner.confirm(question)
    }
    fn custodian_name(&mut self, index: usize, needed: usize) -> Result<String, Error> {
        self.inner.custodian_name(index, needed)
    }
    fn custodian_passphrase(&mut self, name: &str, confirm: bool) -> Result<SecretString, Error> {
        self.inner.custodian_passphrase(name, confirm)
    }
}

/// SELECTs the token's OATH application and, when it is protected, unlocks it with the access
/// code the password holder types.
pub fn open_oath<'t>(
    transport: &'t mut dyn crate::token::Transport,
    prompt: &mut dyn Prompt,
    rng: &dyn crate::secure::Random,
) -> Result<crate::token::oath::Session<'t>, Error> {
    let mut session = crate::token::oath::Session::select(transport)?;
    if session.is_locked() {
        let code = prompt.access_code()?;
        session.unlock(secrecy::ExposeSecret::expose_secret(&code).as_bytes(), rng)?;
    }
    Ok(session)
}
