//! The binary's one error type: what happened, and what to do next.

use std::fmt;

use breakglass::token;

/// Exit codes (documented in README.md).
pub mod exit {
    /// Any failure not listed below.
    pub const FAILURE: u8 = 1;
    /// Bad arguments or input (clap uses 2 for usage errors too).
    pub const USAGE: u8 = 2;
    /// The environment is not ready: pcscd, reader, token missing or busy.
    pub const UNAVAILABLE: u8 = 3;
    /// The token or a holder refused: access code, touch.
    pub const REFUSED: u8 = 4;
}

/// A failure as the user sees it.
#[derive(Debug)]
pub struct CliError {
    pub what: String,
    pub next: Option<String>,
    pub code: u8,
}

impl CliError {
    pub fn new(what: impl Into<String>, next: impl Into<String>, code: u8) -> Self {
        Self {
            what: what.into(),
            next: Some(next.into()),
            code,
        }
    }

    pub fn usage(what: impl Into<String>, next: impl Into<String>) -> Self {
        Self::new(what, next, exit::USAGE)
    }

    pub fn exit_code(&self) -> u8 {
        self.code
    }

    /// Prints to stderr: one line of what happened, one of what to do.
    pub fn print(&self) {
        eprintln!("breakglass: error: {}", self.what);
        if let Some(next) = &self.next {
            eprintln!("  next: {next}");
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what)
    }
}

const START_PCSCD: &str = "start it with `sudo systemctl start pcscd.socket` (systemd) or \
`sudo pcscd` (no systemd); install it with `sudo apt-get install pcscd` if it is missing";

impl From<token::Error> for CliError {
    fn from(e: token::Error) -> Self {
        use token::Error as E;
        let what = e.to_string();
        let (next, code): (String, u8) = match &e {
            E::PcscUnavailable => (START_PCSCD.into(), exit::UNAVAILABLE),
            E::NoReaders => (
                "plug in the token (a YubiKey appears as a reader), or start the sandbox token \
                 with `breakglass sandbox card` in another terminal"
                    .into(),
                exit::UNAVAILABLE,
            ),
            E::NoToken { .. } => (
                "insert the token from the safe (or start `breakglass sandbox card`), then run \
                 the command again"
                    .into(),
                exit::UNAVAILABLE,
            ),
            E::ReaderNotFound { .. } => (
                "pass part of one of the reader names above to --reader (see `breakglass token \
                 list`)"
                    .into(),
                exit::UNAVAILABLE,
            ),
            E::SeveralTokens { .. } => (
                "choose one with --reader NAME (part of the name is enough), or remove the \
                 other tokens"
                    .into(),
                exit::UNAVAILABLE,
            ),
            E::TokenRemoved => (
                "reinsert the token and run the command again; check what is on it with \
                 `breakglass token list` (a write is either complete or absent)"
                    .into(),
                exit::UNAVAILABLE,
            ),
            E::TokenBusy(_) => (
                "close other programs using the token (ykman, gpg's scdaemon, a browser) and \
                 run the command again"
                    .into(),
                exit::UNAVAILABLE,
            ),
            E::Pcsc(_) => (
                format!("restart pcscd and reinsert the token; {START_PCSCD}"),
                exit::UNAVAILABLE,
            ),
            E::Malformed { .. } | E::Status { .. } => (
                "the token answered unexpectedly: reinsert it and retry; if it persists, check it \
                 with `ykman info` and report this message"
                    .into(),
                exit::FAILURE,
            ),
            E::AppletMissing { .. } => (
                "use a YubiKey 5 (or firmware 4.2.6+) or the sandbox token; `breakglass token \
                 list` shows what each reader holds"
                    .into(),
                exit::UNAVAILABLE,
            ),
            E::AccessCodeRequired => (
                "run the command in a terminal to be asked for the token's access code, or pass \
                 --password-stdin and write it on the first line of standard input"
                    .into(),
                exit::REFUSED,
            ),
            E::WrongAccessCode => (
                "ask the password holder for the token's access code and try again".into(),
                exit::REFUSED,
            ),
            E::TokenAuthenticationFailed => (
                "stop: the token did not prove it holds the access key. Do not use it; call the \
                 security team"
                    .into(),
                exit::REFUSED,
            ),
            E::AccountNotFound { .. } => (
                "check the exact name with `breakglass token list`".into(),
                exit::FAILURE,
            ),
            E::AccountExists { name } => (
                format!(
                    "choose another name, or remove the old account first with `breakglass token \
                     delete {name}`"
                ),
                exit::FAILURE,
            ),
            E::NoSpace => (
                "remove an unused account with `breakglass token delete NAME`".into(),
                exit::FAILURE,
            ),
            E::TouchNotGiven => (
                "touch the token's gold contact while it blinks (within 15 seconds), then run the \
                 command again"
                    .into(),
                exit::REFUSED,
            ),
            E::InvalidInput { .. } => (
                "correct the value; `breakglass token add --help` lists the allowed ranges".into(),
                exit::USAGE,
            ),
            _ => (
                "run the command again; if it persists, report this message".into(),
                exit::FAILURE,
            ),
        };
        Self {
            what,
            next: Some(next),
            code,
        }
    }
}
