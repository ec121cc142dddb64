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
    /// `rotate --check`: a rotation or a retirement step is due.
    pub const DUE: u8 = 5;
    /// `rotate --check`: a person must look (a stale copy, drift, an interrupted rotation).
    pub const ATTENTION: u8 = 6;
}

/// A failure as the user sees it.
#[derive(Debug)]
pub struct CliError {
    pub what: String,
    pub next: Option<String>,
    pub code: u8,
    /// Nothing to print: standard output's reader went away ([`CliError::stdout_closed`]).
    quiet: bool,
}

impl CliError {
    pub fn new(what: impl Into<String>, next: impl Into<String>, code: u8) -> Self {
        Self {
            what: what.into(),
            next: Some(next.into()),
            code,
            quiet: false,
        }
    }

    /// Standard output's reader went away (`breakglass status | head -1`): the command stops
    /// with status 0 and prints nothing, as ripgrep does (see `out.rs`).
    pub fn stdout_closed() -> Self {
        Self {
            what: "standard output was closed by its reader".into(),
            next: None,
            code: 0,
            quiet: true,
        }
    }

    /// An exit status with nothing more to print: the command already said everything on
    /// standard output (`rotate --check`).
    pub fn silent(code: u8) -> Self {
        Self {
            what: String::new(),
            next: None,
            code,
            quiet: true,
        }
    }

    /// True for [`CliError::stdout_closed`]: nothing to print.
    pub fn is_quiet(&self) -> bool {
        self.quiet
    }

    pub fn usage(what: impl Into<String>, next: impl Into<String>) -> Self {
        Self::new(what, next, exit::USAGE)
    }

    /// A failure no advice covers: where to report it, and what to include.
    pub fn unexpected(what: impl Into<String>) -> Self {
        Self::new(
            what,
            "this is a bug or an unforeseen state: report it at https://github.com/breakglass/breakglass/issues with the output of `breakglass --version`, the command you ran and this message (they hold no secret)",
            exit::FAILURE,
        )
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

    /// On one line: the AWS CLI and SDKs quote a credential_process's stderr in their own
    /// error message, where a second line gets lost.
    pub fn print_one_line(&self) {
        match &self.next {
            Some(next) => eprintln!("breakglass: error: {}; next: {next}", self.what),
            None => eprintln!("breakglass: error: {}", self.what),
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
            E::InvalidInput {
                what: "PIV management key",
                ..
            } => (
                "breakglass generates PIV keys with the default management key only: on a spare \
                 token set it back (`ykman piv access change-management-key`), or use --factor \
                 fido2 or oath"
                    .into(),
                exit::REFUSED,
            ),
            E::InvalidInput {
                what: "PIV PIN", ..
            } => (
                "run the command again and type the PIV PIN (6 to 8 characters); no try was spent"
                    .into(),
                exit::USAGE,
            ),
            E::InvalidInput { .. } => (
                "correct the value; `breakglass token add --help` lists the allowed ranges".into(),
                exit::USAGE,
            ),
            E::PivRefused { .. } => (
                "check the token with `breakglass token list` (PIV firmware 5.3 or later, PIN \
                 tries left); run the command again, and if it persists report this message"
                    .into(),
                exit::FAILURE,
            ),
            _ => (
                "run the command again; if it persists, report this message".into(),
                exit::FAILURE,
            ),
        };
        Self::new(what, next, code)
    }
}

impl From<breakglass::config::Error> for CliError {
    fn from(e: breakglass::config::Error) -> Self {
        use breakglass::config::Error as E;
        let next = match &e {
            E::Invalid { .. } => {
                "fix the config file at the line shown (`breakglass --help` lists the keys)"
            }
            E::NoProfile { .. } => {
                "check the profile name, or enrol it with `breakglass enroll PROFILE`"
            }
            E::Read { .. } => {
                "check the file's permissions, or point BREAKGLASS_CONFIG at the right file"
            }
            _ => "set HOME (or the XDG_* variables) and run the command again",
        };
        Self::usage(e.to_string(), next)
    }
}

impl From<breakglass::vault::Error> for CliError {
    fn from(e: breakglass::vault::Error) -> Self {
        use breakglass::vault::Error as E;
        let what = e.to_string();
        let (next, code) = match e {
            E::Token(t) => return Self::from(t),
            E::NotOpened => (
                "check the passphrase with the password holder and that this is the enrolled token, then try again (nothing was changed)",
                exit::REFUSED,
            ),
            E::NotEnrolled { .. } => ("bring a token enrolled in this vault (slots listed above)", exit::REFUSED),
            E::Damaged | E::NotAVault => (
                "restore the vault file from the backup taken at enrolment; never edit it by hand",
                exit::FAILURE,
            ),
            E::UnsupportedVersion { .. } => ("use the breakglass release that wrote this vault, or a newer one", exit::FAILURE),
            E::ShareNotOpened { .. } => (
                "that custodian types their own passphrase again (check the keyboard layout and Caps Lock); nothing was changed, and the other custodians need not retype theirs in a new attempt",
                exit::REFUSED,
            ),
            E::Quorum { needed: 0, .. } => (
                "this vault's password holder types its one passphrase; `breakglass rekey --upgrade` gives it custodians",
                exit::REFUSED,
            ),
            E::Quorum { .. } => (
                "bring as many of the vault's custodians as it needs (`breakglass status` lists them), each to type their own name and passphrase",
                exit::REFUSED,
            ),
            E::TokenKeyNotOpened { .. } => (
                "bring another enrolled token; if this token's sealing credential was replaced, remove its slot with `breakglass rekey --remove-token` using another token, and enrol it again",
                exit::REFUSED,
            ),
            E::NoSuchCustodian { .. } => (
                "each custodian types their own name once, as the vault names them",
                exit::USAGE,
            ),
            E::WrongTokenForSlot { .. } => (
                "put the token enrolled in that slot (its label is named above) in the reader when it is asked for; nothing was changed",
                exit::REFUSED,
            ),
            E::RemovingOpeningSlot { .. } => (
                "open the vault with another enrolled token (--reader) to remove this one",
                exit::USAGE,
            ),
            E::NeedsUpgrade { .. } => (
                "run `breakglass rekey PROFILE --upgrade --custodian NAME …` first, which converts the vault to custodians",
                exit::USAGE,
            ),
            E::LastSlot => (
                "a vault needs one token: add the replacement first (`breakglass rekey PROFILE --add-token …`), then remove this one",
                exit::USAGE,
            ),
            E::UnsafePermissions { path, directory, .. } => {
                let mode = if directory { 700 } else { 600 };
                let next = format!("make it private: `chmod {mode} {path}`, then run the command again");
                return Self::new(what, next, exit::FAILURE);
            }
            E::WrongProfile { .. } => (
                "give each profile its own vault: restore this profile's vault file (from the backup taken at enrolment), or point its `vault` setting at it; a vault copied from another profile never opens here",
                exit::REFUSED,
            ),
            E::TooLarge { .. } => (
                "the profile's `vault` setting names something that is not a vault: correct it, or restore the vault file from the backup taken at enrolment",
                exit::FAILURE,
            ),
            E::KdfOutOfBounds { .. } => (
                "this breakglass derives no key with such parameters: the vault file was modified (restore it from the backup taken at enrolment), or an older release enrolled it with larger ones (enrol the profile again within the bounds, see docs/vault-format.md)",
                exit::FAILURE,
            ),
            E::Io { .. } => ("check the path in the profile's `vault` setting and its permissions", exit::FAILURE),
            E::WrongPin { what: "FIDO2", .. } => (
                "after 3 wrong PINs in a row the key takes no more until it is unplugged and plugged in again; then try again with the right PIN",
                exit::REFUSED,
            ),
            E::WrongPin { .. } => ("run the command again with the right PIN; the token counts every wrong one", exit::REFUSED),
            E::PinBlocked { what: "PIV" } => (
                "follow the PIN runbook (docs/runbook-pin.md): the security officer unblocks it with the PUK (`ykman piv access unblock-pin`); meanwhile use a backup token",
                exit::REFUSED,
            ),
            E::PinBlocked { .. } => (
                "a blocked FIDO2 PIN only clears with a FIDO2 reset, which erases this slot's credential: use a backup token, then enrol the key again (docs/runbook-pin.md)",
                exit::REFUSED,
            ),
            E::LastTryDeclined { .. } => (
                "find the right PIN first (the sealed envelope, the password manager); a wrong last try blocks the token",
                exit::REFUSED,
            ),
            E::Attestation(_) => (
                "check --attestation-roots (Yubico's bundle for YubiKeys, the sandbox root for the soft token); if they are right, this token is not genuine or the key was not generated on it: do not enrol it",
                exit::REFUSED,
            ),
            E::Occupied { .. } => (
                "choose a free slot with --piv-slot (see `breakglass token list`), or pass --replace-piv-key to replace that key (vaults sealed with it stop opening with this token)",
                exit::USAGE,
            ),
            E::Fido2(p) => (fido2_next(&p), exit::UNAVAILABLE),
            E::NoAnswer(_) => ("run the command in an interactive terminal", exit::USAGE),
            _ => ("correct the input and run the command again", exit::USAGE),
        };
        Self::new(what, next, code)
    }
}

/// What to do about a FIDO2 key's problem.
fn fido2_next(p: &breakglass::vault::fido2::Fido2Problem) -> &'static str {
    use breakglass::vault::fido2::Fido2Problem as P;
    match p {
        P::NoPinSet => "set a FIDO2 PIN with `ykman fido access change-pin` (YubiKey) or the key vendor's tool, then try again (breakglass always verifies the FIDO2 PIN)",
        P::NoPinSupport => "use a FIDO2 key that has PIN support, or another factor (--factor piv or oath)",
        P::NoHmacSecret => "use a key that supports hmac-secret (YubiKey 5, Nitrokey 3, SoloKey…), or another factor (--factor piv or oath)",
        P::PowerCycle { .. } | P::PinTriesPaused => "unplug the key and plug it in again, then try again with the right PIN",
        P::PinRefused => "run the command again with the right FIDO2 PIN",
        P::NotHeld { .. } | P::NoCredential => "unlock with another enrolled token, then enrol this key again (`breakglass enroll PROFILE --add-token --factor fido2`)",
        _ => "`breakglass token list` shows the FIDO2 keys plugged in, and --fido2-device or BREAKGLASS_FIDO2_DEVICE picks one",
    }
}

impl From<breakglass::ceremony::enroll::WeakKdf> for CliError {
    fn from(e: breakglass::ceremony::enroll::WeakKdf) -> Self {
        Self::usage(
            e.to_string(),
            "leave out --kdf-memory and --kdf-passes for the defaults (64 MiB, 3 passes), or pass --force-weak-kdf to enrol with these anyway (announced); light settings are accepted without it only when every AWS endpoint is on this machine (the sandbox)",
        )
    }
}

impl From<breakglass::aws::Error> for CliError {
    fn from(e: breakglass::aws::Error) -> Self {
        use breakglass::aws::Error as E;
        let (next, code) = match &e {
            E::InsecureEndpoint { setting, .. } => {
                return Self::new(e.to_string(), insecure_next(setting), exit::USAGE)
            }
            E::BadCode { .. } => (
                "check that the token's MFA account belongs to the vault's MFA device and that this machine's clock is right (`timedatectl`)",
                exit::REFUSED,
            ),
            E::BadKey { .. } => (
                "the long-term key is deleted, deactivated or rotated: if this vault is a copy and the key was rotated (`breakglass rotate --check` says), use the newest copy; else ask the security team to re-enrol the vault",
                exit::REFUSED,
            ),
            E::Expired { .. } => ("run `breakglass unlock` again for a new session", exit::REFUSED),
            E::ClockSkew { .. } => ("set the clock right (`sudo timedatectl set-ntp true`) and try again", exit::UNAVAILABLE),
            E::Denied {
                action:
                    action @ ("CreateAccessKey" | "UpdateAccessKey" | "DeleteAccessKey" | "ListAccessKeys"),
                code,
                ..
            } if code == "AccessDenied" => {
                return Self::new(
                    e.to_string(),
                    format!("the break-glass user needs iam:{action} on itself, with MFA: add to its policy {{\"Effect\": \"Allow\", \"Action\": [\"iam:ListAccessKeys\", \"iam:CreateAccessKey\", \"iam:UpdateAccessKey\", \"iam:DeleteAccessKey\"], \"Resource\": \"arn:aws:iam::*:user/${{aws:username}}\", \"Condition\": {{\"Bool\": {{\"aws:MultiFactorAuthPresent\": \"true\"}}}}}} (docs/rotation.md); nothing was changed"),
                    exit::REFUSED,
                )
            }
            E::Denied { .. } => ("check the break-glass user's IAM policies with the security team", exit::REFUSED),
            E::RoleDenied { .. } => ("check the profile's role_arn and that the role's trust policy admits the break-glass user with MFA (aws:MultiFactorAuthPresent) and sts:SetSourceIdentity", exit::REFUSED),
            E::Unreachable { failure, .. } => (unreachable_next(failure), exit::UNAVAILABLE),
            E::Throttled { .. } => (
                "AWS is rate-limiting this account's calls (a script or tool may be looping on it): wait a minute and try again; if it persists, ask the security team to find the caller in CloudTrail",
                exit::UNAVAILABLE,
            ),
            E::BadAnswer { .. } => (
                "something other than AWS STS may have answered (a proxy, a wrong endpoint): check the profile's sts_endpoint and AWS_ENDPOINT_URL, then try again; nothing was kept",
                exit::FAILURE,
            ),
            _ => ("try again; if it persists, report this message", exit::FAILURE),
        };
        Self::new(e.to_string(), next, code)
    }
}

/// What to do about an endpoint refused by the endpoint policy, by the setting it came from.
fn insecure_next(setting: &breakglass::aws::EndpointSource) -> String {
    use breakglass::aws::EndpointSource as S;
    const ALLOWED: &str =
        "https://, or http:// only to 127.0.0.1, [::1] or localhost (the sandbox)";
    match setting {
        S::Env { variable } => format!(
            "unset {variable} (breakglass then calls AWS's own https endpoint), or set it to {ALLOWED}"
        ),
        S::Explicit => format!("set the profile's sts_endpoint (or --endpoint) to {ALLOWED}"),
        S::Signin => format!("pass --signin-endpoint as {ALLOWED}, or leave it out for AWS's own"),
        _ => format!(
            "check the endpoint settings (profile sts_endpoint, AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL_IAM, AWS_ENDPOINT_URL) and any proxy: each must be {ALLOWED}; if they are, report this message"
        ),
    }
}

/// What to do about a network failure on the way to AWS.
fn unreachable_next(f: &breakglass::aws::Failure) -> &'static str {
    use breakglass::aws::Failure as F;
    match f {
        F::Dns => "check the host name (profile sts_endpoint, AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL) and this machine's DNS (`getent hosts HOST`), then try again",
        F::Refused => "nothing listens there: check the host and port of the profile's sts_endpoint (or AWS_ENDPOINT_URL), and whether this network needs a proxy",
        F::NoRoute => "check the network connection (cable, Wi-Fi, VPN) and its routes to AWS, then try again",
        F::ConnectTimeout { .. } => "a firewall may be dropping the connection: check the network, the proxy and the profile's sts_endpoint; on a slow link raise connect_timeout_secs in the profile",
        F::Tls { .. } => "a TLS-inspecting proxy or a plain-HTTP port may be in the way: check the proxy, this machine's CA certificates and that sts_endpoint is the https:// endpoint of AWS",
        F::Reset => "the connection was cut (an unstable link or a proxy): try again; if it persists, check the proxy",
        F::CallTimeout { .. } => "the endpoint took the connection but did not answer in time: check the proxy and the profile's sts_endpoint; on a slow link raise call_timeout_secs in the profile",
        F::NotHttp => "something other than an HTTP server answered: check the port and scheme (https://) of the profile's sts_endpoint, and the proxy",
        F::ServerError { .. } => "AWS is failing: check https://health.aws.amazon.com and try again in a few minutes",
        _ => "check the network and the endpoint (profile sts_endpoint, AWS_ENDPOINT_URL); try again",
    }
}

impl From<breakglass::ceremony::Error> for CliError {
    fn from(e: breakglass::ceremony::Error) -> Self {
        use breakglass::ceremony::Error as E;
        let what = e.to_string();
        let (next, code) = match e {
            E::Vault(v) => return Self::from(v),
            E::Token(t) => return Self::from(t),
            E::Aws(a) => return Self::from(a),
            E::Config(c) => return Self::from(c),
            E::NoEnrolledToken { .. } => (
                "insert the token from the safe (the one enrolled for this profile), or name its reader with --reader",
                exit::UNAVAILABLE,
            ),
            E::SameHolder { .. } => ("the password holder and the token holder each type their own name", exit::REFUSED),
            E::OtherTokenNeeded { .. } => (
                "put that slot's token in another reader and name it with --other-reader (repeat for each token); nothing was written",
                exit::UNAVAILABLE,
            ),
            E::RotationInterrupted { profile } => {
                return Self::new(
                    what,
                    format!("finish or undo the rotation first: `breakglass rotate {profile}`, then run the rekey again"),
                    exit::REFUSED,
                )
            }
            E::AlreadyCustodians => (
                "leave out --upgrade: `breakglass rekey PROFILE --custodian NAME … --threshold M` deals a new custodian set",
                exit::USAGE,
            ),
            E::NoSuchSlot { .. } => (
                "name a slot by its id, label or MFA device ARN, as listed above",
                exit::USAGE,
            ),
            E::CustodianNotPresent { .. } => (
                "run the rekey again with that custodian among those who open the vault; a custodian who forgot their passphrase is given a new share with --custodian … instead",
                exit::USAGE,
            ),
            E::NotCustodian { .. } => (
                "each custodian present types their own name as the vault knows it (listed above); someone who holds no share cannot stand in",
                exit::REFUSED,
            ),
            E::SameCustodianTwice { .. } => (
                "each custodian present types their name once: bring another custodian for the next share",
                exit::REFUSED,
            ),
            E::TokenHolderIsCustodian { .. } => (
                "the token is held and touched by someone who is none of the vault's custodians: hand it to another person",
                exit::REFUSED,
            ),
            E::EmptyName { .. } => ("type your name at the prompt", exit::USAGE),
            E::UnprintableName { .. } | E::InvisibleName { .. } => (
                "type your name at the prompt with printable letters only (no escape sequences, tabs or invisible characters)",
                exit::USAGE,
            ),
            E::EmptyReason => ("say why the glass is broken: --reason \"…\"", exit::USAGE),
            E::Ticket(crate_config_bad) => (
                match crate_config_bad {
                    breakglass::config::BadTicket::Missing { .. } => "give the incident's ticket: --ticket ID (the profile's require_ticket)",
                    _ => "give the ticket as the profile's ticket_pattern expects (ask the security team if the pattern is wrong)",
                },
                exit::USAGE,
            ),
            E::NoticeNotDelivered { .. } => (
                "fix the channel named (the network, the webhook's URL or certificate, the topic's policy), or reach the security team another way and have them set required = false for it in [notify]; then unlock again",
                exit::UNAVAILABLE,
            ),
            E::NoAnswer(_) => ("run the command in an interactive terminal", exit::USAGE),
            E::PassphraseMismatch => ("run the command again and type the same passphrase twice", exit::USAGE),
            E::WeakPassphrase { .. } => ("choose a longer passphrase (four or more random words)", exit::USAGE),
            E::CodeRefusedTwice { .. } => (
                "check that the token's MFA account matches the IAM MFA device and that the clock is right (`timedatectl`)",
                exit::REFUSED,
            ),
            E::TokenAccountExists { .. } => ("set another mfa_account for this profile in the config, or pass --force to replace that MFA account (the sealing credential is never replaced)", exit::USAGE),
            E::TokenAlreadyEnrolled { .. } => ("insert the new, not yet enrolled token and pass its reader with --reader", exit::USAGE),
            E::VaultExists { .. } => ("choose another profile, or pass --force to replace the vault (the old one is lost)", exit::USAGE),
            E::AuditFailed(_) | E::Audit(_) => ("fix the audit log's permissions or disk space, then run the command again", exit::FAILURE),
            E::Agent(a) => return Self::from(a),
            E::Signin(s) => return Self::from(s),
            E::NoTerminal => ("run the command in an interactive terminal", exit::USAGE),
            E::NoSession { profile, .. } => {
                return Self::new(
                    what,
                    format!("run `breakglass unlock {profile} --reason \"…\"` in a terminal, then run this again"),
                    exit::UNAVAILABLE,
                )
            }
            E::RoleSessionName(_) => ("fix role_session_name in the config file", exit::USAGE),
            E::RoleDiscarded(_) | E::UrlDiscarded(_) => ("fix the audit log's directory, then run the command again", exit::FAILURE),
            E::NoAdminCredentials => (
                "export an IAM administrator's AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for the ceremony, or import the key and MFA device (--import-key, --mfa-serial)",
                exit::USAGE,
            ),
            E::SealAccountUnfit { .. } => ("set another seal_account for this profile in the config file", exit::USAGE),
            E::Write { .. } => ("check the directory's permissions and free space, then run the command again", exit::FAILURE),
            E::Journal { path, .. } => {
                return Self::new(
                    what,
                    format!("restore the journal from a backup, or move {path} aside and run `breakglass rotate --check`: the vault and IAM still say which key is the vault's"),
                    exit::FAILURE,
                )
            }
            E::RotationRunning { .. } => (
                "let it finish (its terminal shows where it is), then run `breakglass rotate --check`",
                exit::UNAVAILABLE,
            ),
            E::JournalMismatch { .. } => (
                "put back the vault that the rotation began with (VAULT.previous beside it, if any), or, if this vault is the one to keep, move the rotation journal aside; then run the command again",
                exit::FAILURE,
            ),
            E::SecondKey { stale_copy: true, .. } => (
                "use the vault the rotation replaced (a newer copy of this file), and throw this copy away",
                exit::REFUSED,
            ),
            E::SecondKey { .. } => (
                "find out who made it (CloudTrail: CreateAccessKey for the break-glass user); delete it if it is not meant to exist (`aws iam delete-access-key`), then rotate again",
                exit::REFUSED,
            ),
            E::VaultKeyUnknown { .. } => (
                "the vault's key was deleted or this is a stale copy: use the newest copy of the vault, or enrol again with a new key",
                exit::REFUSED,
            ),
            E::RotationUnfinished { .. } => {
                return Self::new(
                    what,
                    "run `breakglass rotate PROFILE --finish` on those days, or `breakglass rotate PROFILE --finish --now` to retire the old key today; then rotate again",
                    exit::REFUSED,
                )
            }
            E::NotProven { .. } => (
                "IAM may still be propagating the change: run `breakglass rotate PROFILE --finish` in a minute; the journal keeps the step",
                exit::FAILURE,
            ),
            E::StaleVault { .. } => (
                "use the vault that the last rotation replaced (the newest copy); throw this copy away",
                exit::REFUSED,
            ),
            E::NewKeyNeverWorked { .. } => (
                "the vault and the old key are unchanged; run the rotation again later, with a longer --propagation-timeout if IAM is slow today",
                exit::UNAVAILABLE,
            ),
            E::Runtime(_) => return Self::unexpected(what),
            _ => return Self::unexpected(what),
        };
        Self::new(what, next, code)
    }
}

impl From<breakglass::agent::client::Error> for CliError {
    fn from(e: breakglass::agent::client::Error) -> Self {
        use breakglass::agent::client::Error as AgentError;
        let what = e.to_string();
        match e {
            AgentError::NotRunning => CliError::new(
                "the agent is not running, so nothing is unlocked",
                "run `breakglass unlock PROFILE --reason \"…\"`, which starts it",
                exit::UNAVAILABLE,
            ),
            AgentError::Dir(d) => CliError::new(d.problem, d.fix, exit::REFUSED),
            AgentError::Foreign { .. } => CliError::new(
                what,
                "another user is impersonating your agent: tell the security team; do not use the socket",
                exit::REFUSED,
            ),
            AgentError::Refused(_) => CliError::new(
                what,
                "run the command as the user who unlocked the profile",
                exit::REFUSED,
            ),
            AgentError::StartFailed { .. }
            | AgentError::SpawnFailed(_)
            | AgentError::Exited { .. } => CliError::new(
                what,
                "read the agent's log, or run `breakglass agent --foreground` to see why",
                exit::UNAVAILABLE,
            ),
            AgentError::AuditFailed(_) => CliError::new(
                what,
                "fix the audit log (its mode must be 0600 and its folder 0700, the disk must have space; `breakglass audit verify` checks it), then run the command again: no credentials leave the agent without their record",
                exit::FAILURE,
            ),
            AgentError::Failed(_) => CliError::new(
                what,
                "run the command again in a terminal to start a new ceremony",
                exit::FAILURE,
            ),
            AgentError::Frame(_) | AgentError::Protocol(_) => CliError::new(
                what,
                "check `breakglass status`; restart the agent with `breakglass agent --stop` if it is stuck",
                exit::FAILURE,
            ),
            _ => CliError::unexpected(what),
        }
    }
}

impl From<breakglass::aws::console::Error> for CliError {
    fn from(e: breakglass::aws::console::Error) -> Self {
        use breakglass::aws::console::Error as E;
        if let E::InsecureEndpoint { .. } = &e {
            return Self::new(
                e.to_string(),
                insecure_next(&breakglass::aws::EndpointSource::Signin),
                exit::USAGE,
            );
        }
        let next = match &e {
            E::Unreachable {
                failure: breakglass::aws::Failure::CallTimeout { .. },
                ..
            } => {
                "the sign-in endpoint did not answer in time: check the network and --signin-endpoint; on a slow link raise call_timeout_secs in the profile"
            }
            E::Unreachable {
                failure: breakglass::aws::Failure::ConnectTimeout { .. },
                ..
            } => {
                "no connection to the sign-in endpoint (HTTPS on port 443): check the network, the proxy and --signin-endpoint; on a slow link raise connect_timeout_secs in the profile"
            }
            E::Unreachable { .. } => {
                "check the network (the sign-in endpoint is HTTPS on port 443) and --signin-endpoint"
            }
            E::Refused { .. } => {
                "check that the role may be used for console sign-in; try `breakglass console` again in a minute"
            }
            _ => "check --signin-endpoint: it must be the federation endpoint (…/federation)",
        };
        Self::new(e.to_string(), next, exit::UNAVAILABLE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use breakglass::vault::fido2::Fido2Problem;
    use breakglass::vault::Error as VaultError;

    fn next(e: VaultError) -> String {
        CliError::from(e).next.unwrap_or_default()
    }

    #[test]
    fn fido2_problems_name_their_fix() {
        assert!(next(VaultError::Fido2(Fido2Problem::NoPinSet))
            .contains("ykman fido access change-pin"));
        assert!(next(VaultError::Fido2(Fido2Problem::NoHmacSecret)).contains("another factor"));
        assert!(next(VaultError::Fido2(Fido2Problem::PowerCycle {
            tries_left: 5
        }))
        .contains("plug it in again"));
        let held = Fido2Problem::NotHeld {
            slot: 1,
            label: "backup".into(),
        };
        let e = CliError::from(VaultError::Fido2(held));
        assert!(e.what.contains("slot 1 \"backup\""), "{}", e.what);
        assert!(e.next.unwrap_or_default().contains("enrol this key again"));
    }

    #[test]
    fn network_failures_name_their_fix() {
        use breakglass::aws::{Error as AwsError, Failure};
        use std::time::Duration;
        let e = |failure| {
            CliError::from(AwsError::Unreachable {
                service: "AWS STS",
                action: "GetSessionToken",
                host: "127.0.0.1:4566".into(),
                failure,
                elapsed: Duration::from_millis(20),
                attempts: 1,
                may_have_arrived: false,
            })
        };
        let refused = e(Failure::Refused);
        assert_eq!(
            refused.what,
            "cannot reach AWS STS at 127.0.0.1:4566: connection refused (after 0.0 s)"
        );
        assert_eq!(refused.exit_code(), exit::UNAVAILABLE);
        let next = |f| e(f).next.unwrap_or_default();
        assert!(next(Failure::CallTimeout {
            limit: Duration::from_secs(10)
        })
        .contains("call_timeout_secs"));
        assert!(next(Failure::ConnectTimeout {
            limit: Duration::from_secs(3)
        })
        .contains("connect_timeout_secs"));
        assert!(next(Failure::Dns).contains("DNS"));
        assert!(next(Failure::Refused).contains("sts_endpoint"));
        assert!(next(Failure::ServerError { status: 503 }).contains("health.aws.amazon.com"));
        let throttled = CliError::from(AwsError::Throttled {
            action: "GetSessionToken",
            code: "Throttling".into(),
            message: "Rate exceeded".into(),
            attempts: 3,
        });
        assert!(throttled.next.unwrap_or_default().contains("wait a minute"));
    }

    #[test]
    fn insecure_endpoints_name_the_setting_to_change() {
        use breakglass::aws::{EndpointSource, Error as AwsError};
        let e = |setting| {
            CliError::from(AwsError::InsecureEndpoint {
                service: "AWS STS",
                url: "http://10.0.0.1:4566".into(),
                setting,
            })
        };
        let env = e(EndpointSource::Env {
            variable: "AWS_ENDPOINT_URL_STS",
        });
        assert!(
            env.what.contains("http://10.0.0.1:4566") && env.what.contains("AWS_ENDPOINT_URL_STS"),
            "{}",
            env.what
        );
        assert!(env
            .next
            .unwrap_or_default()
            .starts_with("unset AWS_ENDPOINT_URL_STS"));
        assert_eq!(env.code, exit::USAGE);
        assert!(e(EndpointSource::Explicit)
            .next
            .unwrap_or_default()
            .contains("sts_endpoint"));
        assert!(e(EndpointSource::Request)
            .next
            .unwrap_or_default()
            .contains("proxy"));
    }

    #[test]
    fn unexpected_errors_say_where_to_report_and_what_to_include() {
        let e = CliError::unexpected("boom");
        let next = e.next.clone().unwrap_or_default();
        assert!(
            next.contains("breakglass --version") && next.contains("issues"),
            "{next}"
        );
        assert_eq!(e.exit_code(), exit::FAILURE);
    }
}
