//! The hash-chained audit log: one JSON object per line, each carrying the SHA-256 of the line
//! before it (`prev`), so that edits, removals and reordering break the chain. Never a secret:
//! names, reason, times, masked or temporary key ids, outcomes.
//!
//! This module turns records into lines ([`Record`], [`Entry`]); [`log`] keeps them on disk:
//! each append is one `O_APPEND` write of a whole line and an fsync, under an exclusive lock on
//! `audit.log.lock`, so concurrent ceremonies and the agent never lose a record. A live log
//! past [`SEGMENT_BYTES`] becomes a numbered segment (`audit.log.1`, `.2`, …) and the chain
//! goes on in a new live log; [`verify`] checks every segment, in order, then the live log.
//!
//! The chain shows edits, removals inside the log and reordering. Cutting lines off the *end*
//! leaves a valid shorter chain: ship the log off the machine (or note its last hash) to catch
//! that.

use serde_json::{Map, Value};

pub mod log;

pub use log::{append, verify, Dangling, Log, Verified, SEGMENT_BYTES};

/// The `prev` of the first line.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Errors of the audit log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Appending failed (folder, lock file, temp file, rename).
    #[error("cannot write the audit log {path}: {source}")]
    Write {
        /// The log's path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The log exists but cannot be read, or other users can write it.
    #[error("cannot read the audit log {path}: {source}")]
    Read {
        /// The log's path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// [`verify`] found a line that is not JSON, that is cut off (no newline), or whose `prev`
    /// is not the hash of the line before.
    #[error("audit log {path} line {line}: {problem}")]
    Broken {
        /// The log's (or the segment's) path.
        path: String,
        /// The broken line, 1-based.
        line: usize,
        /// What is wrong with it.
        problem: String,
    },
    /// [`verify`] found the live log's last line cut off (no newline) or no JSON: a write
    /// interrupted by a crash. The next append sets it aside (see [`log`]).
    #[error("audit log {path} line {line}: the last line is {what}, as a write interrupted by a crash leaves it")]
    Torn {
        /// The live log's path.
        path: String,
        /// The torn line, 1-based.
        line: usize,
        /// `"cut off (no newline)"` or `"not a JSON object"`.
        what: &'static str,
    },
    /// [`verify`] found the segments numbered with a gap (or not from 1): this one is missing.
    #[error(
        "audit log segment {path} is missing: the records in it are gone (removed or moved away)"
    )]
    MissingSegment {
        /// The missing segment's path.
        path: String,
    },
    /// An append found more damage than one torn last line: it does not repair that, and
    /// appends nothing.
    #[error(
        "audit log {path}: the line that starts at byte {offset} is not a record, nor is the \
         torn line after it; more than a write cut off by a crash is damaged, so nothing was appended"
    )]
    Damaged {
        /// The log's (or the segment's) path.
        path: String,
        /// Where the damaged line starts.
        offset: u64,
    },
}

/// How an attempt ended. On disk: `"success"` or `"failure: <reason>"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The attempt did what it was for.
    Success,
    /// It failed.
    Failure {
        /// The error's message.
        reason: String,
    },
}

impl Outcome {
    /// The outcome of a result: its error's message on failure.
    pub fn of<T, E: std::fmt::Display>(result: &Result<T, E>) -> Self {
        match result {
            Ok(_) => Self::Success,
            Err(e) => Self::Failure {
                reason: e.to_string(),
            },
        }
    }

    fn text(&self) -> String {
        match self {
            Self::Success => "success".into(),
            Self::Failure { reason } => format!("failure: {reason}"),
        }
    }
}

/// The short-lived session an activation or an AssumeRole got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// The session's temporary access key id (`ASIA…`).
    pub temporary_access_key_id: String,
    /// When the session ends, Unix seconds; written as RFC 3339.
    pub expiration: u64,
}

/// Who asked the agent for a hand-out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Process id of the caller (SO_PEERCRED).
    pub pid: i32,
    /// The caller's executable (`/proc/PID/exe`).
    pub exe: String,
    /// The caller's uid (SO_PEERCRED).
    pub uid: u32,
    /// The executable of the caller's parent (the AWS CLI or SDK behind `credential-process`).
    pub parent_exe: String,
}

/// What a hand-out gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Given {
    /// Credentials for the caller's use: the two-person session or a role session.
    Credentials {
        /// The session handed out.
        issued: Issued,
        /// `"session"` or `"role"`.
        kind: &'static str,
    },
    /// The two-person session, to the leader of a role refresh, to assume the role with.
    SessionForRole,
}

/// One audit record: what happened, with its own fields. The log is the only place that
/// turns these into JSON (`append`), in a fixed field order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Record {
    /// `enroll`: the vault was sealed (on success: the masked key id, MFA device, user).
    Enrolment {
        /// The factor of the first slot (`"oath"`, `"piv"`, `"fido2"`).
        factor: &'static str,
        /// What was enrolled; `None` on failure.
        enrolled: Option<Enrolled>,
    },
    /// `enroll --add-token`: a key slot for another token (on success: its MFA device).
    TokenAdded {
        /// The new slot's label.
        label: String,
        /// Its factor (`"oath"`, `"piv"`, `"fido2"`).
        factor: &'static str,
        /// The MFA device of the new slot; `None` on failure.
        mfa_serial: Option<String>,
    },
    /// A two-person unlock began: written before anyone is asked anything. Its outcome is the
    /// `activation` record with the same `attempt` id; a start without one is a ceremony that
    /// was killed or crashed (`audit verify` lists them).
    ActivationStarted {
        /// The attempt's id (random, 16 hex digits), repeated in its outcome record.
        attempt: String,
        /// The command that asked (`"breakglass credential-process"`…).
        command: String,
        /// This process's id.
        pid: u32,
        /// Its parent's process id (the AWS CLI behind `credential-process`, a shell…).
        parent_pid: u32,
        /// The parent's executable (`/proc/PID/exe`; empty when it cannot be read).
        parent_exe: String,
    },
    /// How a two-person unlock ended (on success: the session and the MFA device that made
    /// it). A holder's name is empty when the attempt ended before it was asked.
    Activation {
        /// The id of the `activation started` record this ends; empty in logs written
        /// before attempts had ids.
        attempt: String,
        /// Who typed the passphrase (with custodians: those present, joined by `+`).
        password_holder: String,
        /// The custodians present, as the vault names them; empty for a vault with one
        /// passphrase (and then not written).
        custodians: Vec<String>,
        /// Who touched the token.
        token_holder: String,
        /// Why the access was needed, as typed.
        reason: String,
        /// The ticket given (`--ticket`, or at the prompt); `None`: none (and not written).
        ticket: Option<String>,
        /// The session and the MFA device's ARN; `None` on failure.
        session: Option<(Issued, String)>,
    },
    /// A notice of an event went to one channel (`[notify]`); its outcome says whether it
    /// was delivered. Written after the event's own record, whose chain head the notice
    /// carried.
    Notice {
        /// The event notified (`"activation granted"`…, see `notify::Event`).
        event: &'static str,
        /// The channel: `"sns:TOPIC-ARN"` or `"webhook:NAME"`.
        channel: String,
        /// The channel is `required = true`.
        required: bool,
        /// The chain head the notice carried (the head after the event's record).
        audit_head: String,
    },
    /// A granted activation was taken back before anything was handed out: a required
    /// notice could not be delivered. Its session was wiped.
    ActivationWithdrawn {
        /// The attempt's id (as in its `activation` record).
        attempt: String,
        /// The withdrawn session's temporary access key id.
        temporary_access_key_id: String,
        /// The required channels that failed.
        channels: Vec<String>,
    },
    /// A role session or a sign-in URL was discarded before it was handed out: a required
    /// notice of it could not be delivered.
    Withdrawn {
        /// The event whose notice failed (`"role assumed"`, `"console URL made"`).
        event: &'static str,
        /// The discarded role session's temporary access key id.
        temporary_access_key_id: String,
        /// The required channels that failed.
        channels: Vec<String>,
    },
    /// AssumeRole with the two-person session, for a shell or the console.
    RoleAssumed {
        /// The role asked for.
        role_arn: String,
        /// The RoleSessionName sent.
        role_session_name: String,
        /// The SourceIdentity sent (both holders' names).
        source_identity: String,
        /// What for: `"shell"` or `"console"` (written as `for`).
        purpose: &'static str,
        /// The role session; `None` on failure.
        session: Option<Issued>,
    },
    /// A console sign-in URL was made (never the URL itself).
    ConsoleUrl {
        /// The role signed in as.
        role_arn: String,
        /// The role's account id (from its ARN).
        account: String,
        /// The assumed-role ARN of the session behind the URL.
        assumed_role_arn: String,
        /// Who typed the passphrase.
        password_holder: String,
        /// Who touched the token.
        token_holder: String,
        /// When the URL stops signing in, Unix seconds; written as RFC 3339.
        link_expires: u64,
        /// When the console session ends, Unix seconds; written as RFC 3339.
        console_session_ends: u64,
    },
    /// An unlock found records sealed with its vault's key whose seals no longer hold.
    SealsBroken {
        /// Their record numbers in the chain (1-based).
        records: Vec<usize>,
    },
    /// The agent stored a session a leader brought (the ceremony's, or a renewed role's).
    SessionStored {
        /// `"session"` (the two-person session) or `"role"`.
        kind: &'static str,
        /// The stored session's temporary access key id.
        temporary_access_key_id: String,
        /// The leader's process id.
        by_pid: i32,
        /// The leader's executable (always the breakglass program: no other may lead).
        by_exe: String,
    },
    /// The agent handed credentials to a process.
    Handout {
        /// Who asked.
        caller: Caller,
        /// What it got.
        given: Given,
    },
    /// The agent wiped a session (`why`: locked, expired, idle, agent stopped…).
    SessionWiped {
        /// `"locked"`, `"expired"`, `"idle"` or `"agent stopped"`.
        why: &'static str,
        /// Process id of the process that caused it (the agent's own for expiry and idleness).
        pid: i32,
    },
    /// The agent started.
    AgentStarted {
        /// The agent's process id.
        pid: u32,
        /// Idle minutes after which it wipes a session.
        idle_timeout_minutes: u64,
    },
    /// The agent stopped on request.
    AgentStopped {
        /// Process id of the process that asked (SO_PEERCRED).
        by_pid: i32,
        /// Its executable.
        by_exe: String,
    },
    /// A step of a key rotation (`rotate`), or of finishing or undoing one.
    KeyRotation {
        /// What was done: `"new key sealed"`, `"old key deactivated"`, `"old key deleted"`,
        /// `"orphan key deleted"` (a new key of an interrupted rotation that was never sealed).
        step: &'static str,
        /// The key the step is about, masked (all but its last 4 characters).
        key: String,
        /// The vault's key after the step, masked.
        vault_key: String,
        /// The vault's generation after the step (one more at each rotation).
        generation: u32,
        /// The vault file.
        vault: String,
    },
    /// The vault's people or tokens changed (`breakglass rekey`), without touching AWS.
    Rekey {
        /// What changed, one sentence each (no secret).
        changes: Vec<String>,
        /// The custodians present (or the one password holder).
        custodians: Vec<String>,
        /// Who touched the token.
        token_holder: String,
        /// Why, as typed.
        reason: String,
        /// The ticket given; `None`: none (not written).
        ticket: Option<String>,
        /// The vault's format version after the change.
        version: u16,
        /// The vault file.
        vault: String,
    },
    /// A drill (`breakglass drill`): its counts, the report's hash, the first findings.
    Drill {
        /// Both holders (the password holder: custodians joined by `+`).
        holders: (String, String),
        /// Why, as typed.
        reason: String,
        /// Accounts listed, passed, with findings, skipped, not tried.
        accounts: usize,
        /// Accounts that passed every check.
        passed: usize,
        /// Accounts with findings.
        failed: usize,
        /// Suspended accounts, not tried.
        skipped: usize,
        /// Accounts not tried: the drill was stopped.
        not_tried: usize,
        /// Findings in all.
        findings: usize,
        /// The report's summary line.
        summary: String,
        /// The first findings, one line each (at most [`DRILL_FINDINGS_LOGGED`]).
        first_findings: Vec<String>,
        /// SHA-256 of the Markdown report, hex.
        report_sha256: String,
    },
    /// The agent refused a connection from another user.
    ConnectionRefused {
        /// Process id of the peer (SO_PEERCRED).
        peer_pid: i32,
        /// Its uid.
        peer_uid: u32,
        /// Its executable.
        peer_exe: String,
    },
}

/// How many findings a `drill` record lists (the report has them all).
pub const DRILL_FINDINGS_LOGGED: usize = 20;

/// What an enrolment made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolled {
    /// The access key id, masked (all but its last 4 characters).
    pub access_key_id_masked: String,
    /// The MFA device's ARN.
    pub mfa_serial: String,
    /// The IAM user's ARN.
    pub user_arn: String,
}

impl Record {
    /// The `event` field.
    pub fn event(&self) -> &'static str {
        match self {
            Self::Enrolment { .. } => "enrolment",
            Self::TokenAdded { .. } => "token added",
            Self::ActivationStarted { .. } => "activation started",
            Self::Activation { .. } => "activation",
            Self::RoleAssumed { .. } => "role assumed",
            Self::ConsoleUrl { .. } => "console sign-in URL",
            Self::SealsBroken { .. } => "audit seals broken",
            Self::SessionStored { .. } => "session stored",
            Self::Handout { .. } => "hand-out",
            Self::SessionWiped { .. } => "session wiped",
            Self::AgentStarted { .. } => "agent started",
            Self::AgentStopped { .. } => "agent stopped",
            Self::ConnectionRefused { .. } => "agent refused a connection",
            Self::KeyRotation { .. } => "key rotation",
            Self::Rekey { .. } => "rekey",
            Self::Drill { .. } => "drill",
            Self::Notice { .. } => "notice",
            Self::ActivationWithdrawn { .. } => "activation withdrawn",
            Self::Withdrawn { .. } => "withdrawn",
        }
    }

    /// The record's own fields, in the order they are written.
    fn fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        let mut put = |k: &str, v: Value| {
            m.insert(k.to_owned(), v);
        };
        let text = |s: &str| Value::String(s.to_owned());
        match self {
            Self::Enrolment { factor, enrolled } => {
                put("factor", text(factor));
                if let Some(e) = enrolled {
                    put("access_key_id", text(&e.access_key_id_masked));
                    put("mfa_serial", text(&e.mfa_serial));
                    put("user_arn", text(&e.user_arn));
                }
            }
            Self::TokenAdded {
                label,
                factor,
                mfa_serial,
            } => {
                put("label", text(label));
                put("factor", text(factor));
                if let Some(s) = mfa_serial {
                    put("mfa_serial", text(s));
                }
            }
            Self::ActivationStarted {
                attempt,
                command,
                pid,
                parent_pid,
                parent_exe,
            } => {
                put("attempt", text(attempt));
                put("command", text(command));
                put("pid", Value::from(*pid));
                put("parent_pid", Value::from(*parent_pid));
                put("parent_exe", text(parent_exe));
            }
            Self::Activation {
                attempt,
                password_holder,
                custodians,
                token_holder,
                reason,
                ticket,
                session,
            } => {
                put("attempt", text(attempt));
                put("password_holder", text(password_holder));
                if !custodians.is_empty() {
                    put(
                        "custodians",
                        Value::Array(custodians.iter().map(|c| text(c)).collect()),
                    );
                }
                put("token_holder", text(token_holder));
                put("reason", text(reason));
                if let Some(t) = ticket {
                    put("ticket", text(t));
                }
                if let Some((issued, mfa_serial)) = session {
                    put(
                        "temporary_access_key_id",
                        text(&issued.temporary_access_key_id),
                    );
                    put("mfa_serial", text(mfa_serial));
                    put("expiration", Value::String(rfc3339(issued.expiration)));
                }
            }
            Self::RoleAssumed {
                role_arn,
                role_session_name,
                source_identity,
                purpose,
                session,
            } => {
                put("role_arn", text(role_arn));
                put("role_session_name", text(role_session_name));
                put("source_identity", text(source_identity));
                put("for", text(purpose));
                if let Some(issued) = session {
                    put(
                        "temporary_access_key_id",
                        text(&issued.temporary_access_key_id),
                    );
                    put("expiration", Value::String(rfc3339(issued.expiration)));
                }
            }
            Self::ConsoleUrl {
                role_arn,
                account,
                assumed_role_arn,
                password_holder,
                token_holder,
                link_expires,
                console_session_ends,
            } => {
                put("role_arn", text(role_arn));
                put("account", text(account));
                put("assumed_role_arn", text(assumed_role_arn));
                put("password_holder", text(password_holder));
                put("token_holder", text(token_holder));
                put("link_expires", Value::String(rfc3339(*link_expires)));
                put(
                    "console_session_ends",
                    Value::String(rfc3339(*console_session_ends)),
                );
            }
            Self::SealsBroken { records } => {
                put(
                    "records",
                    Value::Array(records.iter().map(|n| Value::from(*n)).collect()),
                );
            }
            Self::SessionStored {
                kind,
                temporary_access_key_id,
                by_pid,
                by_exe,
            } => {
                put("kind", text(kind));
                put("temporary_access_key_id", text(temporary_access_key_id));
                put("by_pid", Value::from(*by_pid));
                put("by_exe", text(by_exe));
            }
            Self::Handout { caller, given } => {
                put("pid", Value::from(caller.pid));
                put("exe", text(&caller.exe));
                put("uid", Value::from(caller.uid));
                put("parent_exe", text(&caller.parent_exe));
                match given {
                    Given::Credentials { issued, kind } => {
                        put(
                            "temporary_access_key_id",
                            text(&issued.temporary_access_key_id),
                        );
                        put("kind", text(kind));
                        put("expiration", Value::String(rfc3339(issued.expiration)));
                    }
                    Given::SessionForRole => put("kind", text("session, to assume the role")),
                }
            }
            Self::SessionWiped { why, pid } => {
                put("why", text(why));
                put("pid", Value::from(*pid));
            }
            Self::AgentStarted {
                pid,
                idle_timeout_minutes,
            } => {
                put("pid", Value::from(*pid));
                put("idle_timeout_minutes", Value::from(*idle_timeout_minutes));
            }
            Self::AgentStopped { by_pid, by_exe } => {
                put("by_pid", Value::from(*by_pid));
                put("by_exe", text(by_exe));
            }
            Self::Notice {
                event,
                channel,
                required,
                audit_head,
            } => {
                put("notice_of", text(event));
                put("channel", text(channel));
                put("required", Value::Bool(*required));
                put("audit_head", text(audit_head));
            }
            Self::Withdrawn {
                event,
                temporary_access_key_id,
                channels,
            } => {
                put("notice_of", text(event));
                put("temporary_access_key_id", text(temporary_access_key_id));
                put(
                    "channels",
                    Value::Array(channels.iter().map(|c| text(c)).collect()),
                );
            }
            Self::ActivationWithdrawn {
                attempt,
                temporary_access_key_id,
                channels,
            } => {
                put("attempt", text(attempt));
                put("temporary_access_key_id", text(temporary_access_key_id));
                put(
                    "channels",
                    Value::Array(channels.iter().map(|c| text(c)).collect()),
                );
            }
            Self::ConnectionRefused {
                peer_pid,
                peer_uid,
                peer_exe,
            } => {
                put("peer_pid", Value::from(*peer_pid));
                put("peer_uid", Value::from(*peer_uid));
                put("peer_exe", text(peer_exe));
            }
            Self::Rekey {
                changes,
                custodians,
                token_holder,
                reason,
                ticket,
                version,
                vault,
            } => {
                put(
                    "changes",
                    Value::Array(changes.iter().map(|c| text(c)).collect()),
                );
                put(
                    "custodians",
                    Value::Array(custodians.iter().map(|c| text(c)).collect()),
                );
                put("token_holder", text(token_holder));
                put("reason", text(reason));
                if let Some(t) = ticket {
                    put("ticket", text(t));
                }
                put("version", Value::from(*version));
                put("vault", text(vault));
            }
            Self::Drill {
                holders,
                reason,
                accounts,
                passed,
                failed,
                skipped,
                not_tried,
                findings,
                summary,
                first_findings,
                report_sha256,
            } => {
                put("password_holder", text(&holders.0));
                put("token_holder", text(&holders.1));
                put("reason", text(reason));
                put("accounts", Value::from(*accounts));
                put("passed", Value::from(*passed));
                put("failed", Value::from(*failed));
                put("skipped", Value::from(*skipped));
                put("not_tried", Value::from(*not_tried));
                put("findings", Value::from(*findings));
                put("summary", text(summary));
                put(
                    "first_findings",
                    Value::Array(first_findings.iter().map(|c| text(c)).collect()),
                );
                put("report_sha256", text(report_sha256));
            }
            Self::KeyRotation {
                step,
                key,
                vault_key,
                generation,
                vault,
            } => {
                put("step", text(step));
                put("key", text(key));
                put("vault_key", text(vault_key));
                put("generation", Value::from(*generation));
                put("vault", text(vault));
            }
        }
        m
    }
}

/// A record as appended: when, for which profile (empty for the agent's own records), what,
/// and how it ended.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    /// Unix seconds; written as RFC 3339, UTC.
    pub time: u64,
    /// The profile the record is about; empty for the agent's own records.
    pub profile: &'a str,
    /// What happened.
    pub record: Record,
    /// How it ended.
    pub outcome: Outcome,
}

impl Entry<'_> {
    /// The JSON object of a line, without `prev`: time, event, profile, the record's fields,
    /// outcome.
    fn to_json(&self) -> Map<String, Value> {
        let mut obj = Map::new();
        obj.insert("time".into(), Value::String(rfc3339(self.time)));
        obj.insert("event".into(), Value::String(self.record.event().into()));
        obj.insert("profile".into(), Value::String(self.profile.into()));
        obj.extend(self.record.fields());
        obj.insert("outcome".into(), Value::String(self.outcome.text()));
        obj
    }

    /// The line on disk, chained to `prev`, with its newline.
    fn line(&self, prev: &str, seal: Option<&Seal<'_>>) -> String {
        let mut obj = self.to_json();
        if let Some(s) = seal {
            obj.insert("seal_key".into(), Value::String(s.key_id()));
            obj.insert("seal".into(), Value::String(s.over(prev)));
        }
        obj.insert("prev".into(), Value::String(prev.to_owned()));
        let mut line = Value::Object(obj).to_string();
        line.push('\n');
        line
    }
}

/// Seals audit records with a key only the holders can use (`vault::Opened::audit_key`): a
/// sealed record carries `seal` = HMAC-SHA256(key, its `prev`) and `seal_key` (the first 16
/// hex digits of SHA-256 of the key, to tell which vault's key made it). Since `prev` pins
/// every record before, a rewrite of the log before a sealed record (even one that recomputes
/// every `prev`) leaves a seal that no longer matches, and whoever rewrote it cannot make a
/// new one without the vault and the token.
pub struct Seal<'k> {
    key: &'k crate::secure::Key32,
}

impl<'k> Seal<'k> {
    /// Seals with `key`.
    pub fn new(key: &'k crate::secure::Key32) -> Self {
        Self { key }
    }

    /// The key's id as records carry it.
    pub fn key_id(&self) -> String {
        let d = ring::digest::digest(&ring::digest::SHA256, self.key.expose());
        data_encoding::HEXLOWER.encode(&d.as_ref()[..8])
    }

    /// The seal of a record whose `prev` is `prev`.
    pub fn over(&self, prev: &str) -> String {
        let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, self.key.expose());
        data_encoding::HEXLOWER.encode(ring::hmac::sign(&k, prev.as_bytes()).as_ref())
    }

    /// Whether `seal` is this key's seal over `prev` (constant time).
    pub fn holds(&self, prev: &str, seal: &str) -> bool {
        let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, self.key.expose());
        data_encoding::HEXLOWER
            .decode(seal.as_bytes())
            .is_ok_and(|tag| ring::hmac::verify(&k, prev.as_bytes(), &tag).is_ok())
    }
}

/// The hash of a line (without its newline), as the next line's `prev`.
fn sha256_hex(line: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(ring::digest::digest(&ring::digest::SHA256, line).as_ref())
}

/// `unix_seconds` as RFC 3339 (seconds, UTC: `2023-11-14T22:13:20Z`); empty if out of range.
pub fn rfc3339(unix_seconds: u64) -> String {
    let secs = i64::try_from(unix_seconds).unwrap_or(i64::MAX);
    aws_smithy_types::DateTime::from_secs(secs)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u64) -> Entry<'static> {
        Entry {
            time: 1_700_000_000 + n,
            profile: "prod",
            record: Record::Activation {
                attempt: "0123456789abcdef".into(),
                password_holder: "alice".into(),
                custodians: Vec::new(),
                token_holder: "bob".into(),
                reason: format!("drill {n}"),
                ticket: None,
                session: None,
            },
            outcome: Outcome::Success,
        }
    }

    #[test]
    fn chain_detects_edits_removals_and_reordering() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/audit.log");
        for n in 0..3 {
            append(&path, &event(n)).unwrap();
        }
        assert_eq!(verify(&path).unwrap().records, 3);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.lines().next().unwrap().contains(GENESIS));
        assert!(
            text.starts_with("{\"time\":\"2023-11-14T22:13:20Z\",\"event\":\"activation\""),
            "{text}"
        );
        let lines: Vec<&str> = text.lines().collect();
        let cases = [
            text.replace("drill 1", "drill 9"),
            format!("{}\n{}\n", lines[0], lines[2]),
            format!("{}\n{}\n{}\n", lines[1], lines[0], lines[2]),
        ];
        for bad in cases {
            std::fs::write(&path, &bad).unwrap();
            assert!(matches!(verify(&path), Err(Error::Broken { .. })), "{bad}");
        }
    }

    #[test]
    fn records_keep_the_field_order_of_the_log() {
        let e = Entry {
            time: 1_700_000_000,
            profile: "prod",
            record: Record::Activation {
                attempt: "0123456789abcdef".into(),
                password_holder: "alice".into(),
                custodians: Vec::new(),
                token_holder: "bob".into(),
                reason: "IdP down".into(),
                ticket: Some("INC123456".into()),
                session: Some((
                    Issued {
                        temporary_access_key_id: "ASIAEXAMPLE".into(),
                        expiration: 1_700_003_600,
                    },
                    "arn:aws:iam::123456789012:mfa/bg".into(),
                )),
            },
            outcome: Outcome::Failure { reason: "x".into() },
        };
        assert_eq!(
            Value::Object(e.to_json()).to_string(),
            "{\"time\":\"2023-11-14T22:13:20Z\",\"event\":\"activation\",\"profile\":\"prod\",\
             \"attempt\":\"0123456789abcdef\",\"password_holder\":\"alice\",\"token_holder\":\"bob\",\"reason\":\"IdP down\",\"ticket\":\"INC123456\",\
             \"temporary_access_key_id\":\"ASIAEXAMPLE\",\"mfa_serial\":\"arn:aws:iam::123456789012:mfa/bg\",\
             \"expiration\":\"2023-11-14T23:13:20Z\",\"outcome\":\"failure: x\"}"
        );
        let h = Record::Handout {
            caller: Caller {
                pid: 7,
                exe: "/usr/bin/aws".into(),
                uid: 1000,
                parent_exe: "/bin/bash".into(),
            },
            given: Given::SessionForRole,
        };
        assert_eq!(
            Value::Object(h.fields()).to_string(),
            "{\"pid\":7,\"exe\":\"/usr/bin/aws\",\"uid\":1000,\"parent_exe\":\"/bin/bash\",\
             \"kind\":\"session, to assume the role\"}"
        );
    }
}
