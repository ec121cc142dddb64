//! The agent: one process per user that holds unlocked sessions in locked memory and hands
//! them to every process of the same user over a Unix socket (design §4).
//!
//! The agent never talks to AWS or to the token. Ceremonies and AssumeRole calls run in the
//! short-lived client that asked (`unlock`, `credential-process`, `exec`, `env`); the agent
//! only decides *who* runs them (single flight: one leader per profile, every other caller
//! waits for the leader's result) and keeps the results. So the agent's memory never holds an
//! HTTP buffer or SDK object with a secret in it, and wiping its arena wipes every copy.
//!
//! Protocol (frames: [`wire`]): a client sends one request. `Get` is answered with the
//! credentials, with "no session" (non-interactive callers), or with a lead: the client must
//! run the ceremony (or AssumeRole) and send the result (`PutBase`/`PutRole`) or `Abort` on
//! the same connection; the agent then answers the `Get` as if it had just arrived. Every
//! answer to a `Get` is preceded by `Seen` ([`kind::SEEN`]), after which the client is
//! non-dumpable: no process of the same user can read a secret from its memory.

pub mod arena;
pub mod client;
pub mod harden;
pub mod protocol;
pub mod server;
mod session;
pub mod status;
pub mod wire;

/// Message kinds, client to agent.
pub mod kind {
    /// Ask for a profile's credentials: profile, role ARN (empty for none), interactive byte.
    pub const GET: u8 = 1;
    /// A leader's result: the two-person session, its MFA device, expiry, holders and identity.
    pub const PUT_BASE: u8 = 2;
    /// A leader's result: the role ARN, the role session and the assumed-role ARN.
    pub const PUT_ROLE: u8 = 3;
    /// A leader gives up: the reason, told to every waiting caller.
    pub const ABORT: u8 = 4;
    /// Wipe one profile's sessions (its name) or all (empty).
    pub const LOCK: u8 = 5;
    /// Ask for the agent's [`super::status::Status`].
    pub const STATUS: u8 = 6;
    /// Wipe everything and stop the agent.
    pub const STOP: u8 = 7;
    // Agent to client.
    /// Credentials: the session's four fields, identity, both holders, base expiry, `"session"` or
    /// `"role"`.
    pub const CREDS: u8 = 64;
    /// The caller must run the unlock ceremony and answer with `PUT_BASE` or `ABORT`.
    pub const LEAD_CEREMONY: u8 = 65;
    /// The caller must assume the role with the base session sent along and answer with `PUT_ROLE`
    /// or `ABORT`.
    pub const LEAD_ROLE: u8 = 66;
    /// No session, and the caller is not interactive: the reason.
    pub const NO_SESSION: u8 = 67;
    /// The request failed: the message.
    pub const FAILED: u8 = 68;
    /// The request was refused (another user's connection): the message.
    pub const REFUSED: u8 = 69;
    /// The status, as JSON.
    pub const STATUS_REPLY: u8 = 70;
    /// `LOCK` or `STOP` done: what was wiped, as text.
    pub const DONE: u8 = 71;
    /// A hand-out refused because its audit record could not be written: the audit error.
    pub const AUDIT_FAILED: u8 = 72;
    /// The first answer to a `GET`, before any other: the agent has read what it records about
    /// the caller (its executable and its parent's, which it cannot read once the caller is
    /// non-dumpable). The caller makes itself non-dumpable now, before any secret reaches it
    /// (a credential, or the passphrase of a ceremony it is made to lead).
    pub const SEEN: u8 = 73;
}

/// A role session is renewed from the base session when less than this is left, so that SDKs
/// (which refresh 10-15 minutes before expiry) never see credentials about to expire.
pub const ROLE_REFRESH_MARGIN_SECS: u64 = 15 * 60;
/// AWS's shortest AssumeRole session.
pub const ROLE_MIN_SECS: u64 = 900;
/// A role session never outlives the two-person session it came from, and lasts at most the
/// default MaxSessionDuration of a role (1 h), which every role accepts.
pub const ROLE_MAX_SECS: u64 = 3600;
/// How long a waiting caller or a leader's ceremony may take.
pub const CEREMONY_TIMEOUT_SECS: u64 = 10 * 60;
