//! The flows of the design (§2), independent of the terminal: they talk to people through the
//! [`Prompt`] trait and to hardware through `token::Transport`.

pub mod enroll;
pub mod mfa;
pub mod unlock;

use secrecy::SecretString;

use crate::{audit, aws, config, token, vault};

/// Who is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    PasswordHolder,
    TokenHolder,
}

impl Role {
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
}

/// Ceremony failures. Each names the cause; the binary adds what to do next.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("both holders gave the name {name:?}: two different people must take part")]
    SameHolder { name: String },
    #[error("the {role} gave no name")]
    EmptyName { role: &'static str },
    #[error("a reason is required and it is empty")]
    EmptyReason,
    #[error("the answer was cancelled or no terminal is available: {0}")]
    NoAnswer(String),
    #[error("the two passphrases differ")]
    PassphraseMismatch,
    #[error("the passphrase is too short ({len} characters; at least {min})")]
    WeakPassphrase { len: usize, min: usize },
    #[error("AWS refused the MFA code twice, with two fresh time windows ({message})")]
    CodeRefusedTwice { message: String },
    #[error("the token already has an account named {name:?}")]
    TokenAccountExists { name: String },
    #[error("this token is already enrolled in the vault (slot {slot})")]
    TokenAlreadyEnrolled { slot: u8 },
    #[error("a vault already exists at {path}")]
    VaultExists { path: String },
    #[error("the activation succeeded but its audit record could not be written, so the session was discarded: {0}")]
    AuditFailed(audit::Error),
    #[error(transparent)]
    Vault(#[from] vault::Error),
    #[error(transparent)]
    Token(#[from] token::Error),
    #[error(transparent)]
    Aws(#[from] aws::Error),
    #[error(transparent)]
    Audit(#[from] audit::Error),
    #[error(transparent)]
    Config(#[from] config::Error),
    #[error("{0}")]
    Io(String),
}

/// Both holders' names, checked: non-empty and different (case-insensitive).
pub fn ask_holders(prompt: &mut dyn Prompt) -> Result<(String, String), Error> {
    let p = prompt.name(Role::PasswordHolder)?.trim().to_owned();
    if p.is_empty() {
        return Err(Error::EmptyName {
            role: Role::PasswordHolder.label(),
        });
    }
    let t = prompt.name(Role::TokenHolder)?.trim().to_owned();
    if t.is_empty() {
        return Err(Error::EmptyName {
            role: Role::TokenHolder.label(),
        });
    }
    if p.to_lowercase() == t.to_lowercase() {
        return Err(Error::SameHolder { name: t });
    }
    Ok((p, t))
}

/// SELECTs the token's OATH application and, when it is protected, unlocks it with the access
/// code the password holder types.
pub fn open_oath<'t>(
    transport: &'t mut dyn crate::token::Transport,
    prompt: &mut dyn Prompt,
) -> Result<crate::token::oath::Session<'t>, Error> {
    let mut session = crate::token::oath::Session::select(transport)?;
    if session.is_locked() {
        let code = prompt.access_code()?;
        session.unlock(
            secrecy::ExposeSecret::expose_secret(&code).as_bytes(),
            &ring::rand::SystemRandom::new(),
        )?;
    }
    Ok(session)
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
