//! The agent's messages, typed: every request ([`Request`]) and answer ([`Answer`]) is encoded
//! into a frame ([`super::wire`]) and decoded from one here, and nowhere else. Decoding checks
//! the field count and every field's type before anything is used, and borrows from the frame:
//! the secret parts of credentials stay in the frame's wiped buffer until the receiver copies
//! them where they belong (the arena, a `SecretString`).
//!
//! The layout is [`VERSION`] 1: one kind byte, then the fields in the order of each variant. A
//! kind this version does not know is refused as such, naming the version, so that a client
//! and an agent of different breakglass releases fail with a clear message.

use zeroize::Zeroizing;

use super::kind;
use super::wire::{encode, FrameError, Message};

/// The protocol version this build speaks (the message kinds of [`super::kind`]).
pub const VERSION: u8 = 1;

/// Credentials as they cross the socket. The secret parts are borrowed bytes, not text: they
/// are checked as UTF-8 only where a `SecretString` is made of them.
#[derive(Clone, Copy)]
pub struct WireCreds<'a> {
    /// The temporary access key id (`ASIA…`): not a secret.
    pub access_key_id: &'a str,
    /// The secret access key, as the bytes of its text.
    pub secret_access_key: &'a [u8],
    /// The session token, as the bytes of its text.
    pub session_token: &'a [u8],
    /// Unix seconds.
    pub expiration: u64,
}

impl std::fmt::Debug for WireCreds<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WireCreds")
            .field("access_key_id", &self.access_key_id)
            .field("expiration", &self.expiration)
            .finish_non_exhaustive()
    }
}

/// Client to agent.
#[derive(Debug)]
pub enum Request<'a> {
    /// The credentials of `profile` (its role's, with `role_arn`); `interactive` callers may
    /// be made to lead a ceremony.
    Get {
        /// The breakglass profile (checked as a profile name by the agent).
        profile: &'a str,
        /// The role to hand out instead of the two-person session (empty on the wire: none).
        role_arn: Option<&'a str>,
        /// A person at a terminal can answer a ceremony here.
        interactive: bool,
        /// A person asked for a ceremony (`unlock`): a ceremony that failed a moment ago is
        /// no answer for them, as it is for programs (see `session::FAILURE_GRACE_SECS`).
        /// Shares the interactive byte on the wire: 0, 1, or 3 (interactive and fresh).
        fresh: bool,
    },
    /// A leader's result: the two-person session.
    PutBase {
        /// The session GetSessionToken returned.
        creds: WireCreds<'a>,
        /// The MFA device whose code made it.
        mfa_serial: &'a str,
        /// The name the password holder typed.
        password_holder: &'a str,
        /// The name the token holder typed.
        token_holder: &'a str,
        /// The user ARN the session belongs to.
        identity: &'a str,
    },
    /// A leader's result: the role session.
    PutRole {
        /// The role that was assumed (the profile's `role_arn`).
        role_arn: &'a str,
        /// The role session AssumeRole returned.
        creds: WireCreds<'a>,
        /// The assumed-role ARN STS named (`arn:aws:sts::…:assumed-role/ROLE/NAME`).
        assumed_arn: &'a str,
    },
    /// A leader gives up; `reason` is told to the callers that wait.
    Abort {
        /// Why the lead ended without a result (the ceremony's error message).
        reason: &'a str,
    },
    /// Wipe one profile's sessions, or all.
    Lock {
        /// The profile to wipe; `None` (empty on the wire): every profile.
        profile: Option<&'a str>,
    },
    /// The agent's [`super::status::Status`].
    Status,
    /// Wipe everything and exit.
    Stop,
}

/// Agent to client.
#[derive(Debug)]
pub enum Answer<'a> {
    /// The credentials asked for.
    Creds {
        /// The session or the role session.
        creds: WireCreds<'a>,
        /// The user ARN (plain sessions) or the assumed-role ARN.
        identity: &'a str,
        /// Who unlocked it: the password holder.
        password_holder: &'a str,
        /// Who unlocked it: the token holder.
        token_holder: &'a str,
        /// When the two-person session ends (Unix seconds).
        base_expiration: u64,
        /// `"session"` or `"role"`.
        what: &'a str,
    },
    /// Run the unlock ceremony and answer with [`Request::PutBase`] or [`Request::Abort`].
    LeadCeremony,
    /// Assume the role with `base` and answer with [`Request::PutRole`] or [`Request::Abort`].
    LeadRole {
        /// The two-person session to assume the role with.
        base: WireCreds<'a>,
        /// The holders who unlocked it, for RoleSessionName and SourceIdentity.
        password_holder: &'a str,
        /// See `password_holder`.
        token_holder: &'a str,
    },
    /// Nothing unlocked, and the caller cannot lead.
    NoSession {
        /// "profile P is not unlocked".
        reason: &'a str,
    },
    /// The request failed.
    Failed {
        /// What failed, worded for the user.
        reason: &'a str,
    },
    /// The request was refused (another user, a result that came too late).
    Refused {
        /// Why, worded for the user.
        reason: &'a str,
    },
    /// The caller has been looked at (see [`super::kind::SEEN`]); the answer follows.
    Seen,
    /// Nothing was handed out: the hand-out's audit record could not be written.
    AuditFailed {
        /// The audit log's error.
        reason: &'a str,
    },
    /// The status.
    Status {
        /// The [`super::status::Status`] as JSON.
        json: &'a str,
    },
    /// A request done.
    Done {
        /// What was done ("profile prod locked", "agent stopped; 1 session(s) wiped").
        text: &'a str,
    },
}

fn optional<'a>(m: &Message<'a>, i: usize) -> Result<Option<&'a str>, FrameError> {
    Ok(Some(m.text(i)?).filter(|s| !s.is_empty()))
}

/// Credentials at fields `at..at + 4`: key id, secret, token, expiration.
fn creds<'a>(m: &Message<'a>, at: usize) -> Result<WireCreds<'a>, FrameError> {
    Ok(WireCreds {
        access_key_id: m.text(at)?,
        secret_access_key: m.bytes(at + 1)?,
        session_token: m.bytes(at + 2)?,
        expiration: m.number(at + 3)?,
    })
}

fn unknown() -> FrameError {
    FrameError::Malformed(
        "unknown message kind (this agent speaks breakglass agent protocol 1; restart the agent \
         with `breakglass agent --stop` after an upgrade)",
    )
}

impl<'a> Request<'a> {
    /// Decodes a frame body.
    pub fn decode(body: &'a [u8]) -> Result<Self, FrameError> {
        let m = Message::parse(body)?;
        Ok(match m.kind {
            kind::GET => {
                m.expect(3)?;
                let (interactive, fresh) = match m.bytes(2)? {
                    [0] => (false, false),
                    [1] => (true, false),
                    [3] => (true, true),
                    _ => return Err(FrameError::Malformed("the Get request's caller byte")),
                };
                Self::Get {
                    profile: m.text(0)?,
                    role_arn: optional(&m, 1)?,
                    interactive,
                    fresh,
                }
            }
            kind::PUT_BASE => {
                m.expect(8)?;
                Self::PutBase {
                    creds: WireCreds {
                        access_key_id: m.text(0)?,
                        secret_access_key: m.bytes(1)?,
                        session_token: m.bytes(2)?,
                        expiration: m.number(4)?,
                    },
                    mfa_serial: m.text(3)?,
                    password_holder: m.text(5)?,
                    token_holder: m.text(6)?,
                    identity: m.text(7)?,
                }
            }
            kind::PUT_ROLE => {
                m.expect(6)?;
                Self::PutRole {
                    role_arn: m.text(0)?,
                    creds: creds(&m, 1)?,
                    assumed_arn: m.text(5)?,
                }
            }
            kind::ABORT => {
                m.expect(1)?;
                Self::Abort { reason: m.text(0)? }
            }
            kind::LOCK => {
                m.expect(1)?;
                Self::Lock {
                    profile: optional(&m, 0)?,
                }
            }
            kind::STATUS => {
                m.expect(0)?;
                Self::Status
            }
            kind::STOP => {
                m.expect(0)?;
                Self::Stop
            }
            _ => return Err(unknown()),
        })
    }

    /// Encodes as one frame, in a buffer sized exactly (no copy of a secret left behind).
    pub fn encode(&self) -> Result<Zeroizing<Vec<u8>>, FrameError> {
        match *self {
            Self::Get {
                profile,
                role_arn,
                interactive,
                fresh,
            } => encode(
                kind::GET,
                &[
                    profile.as_bytes(),
                    role_arn.unwrap_or("").as_bytes(),
                    &[u8::from(interactive) | if fresh && interactive { 3 } else { 0 }],
                ],
            ),
            Self::PutBase {
                creds,
                mfa_serial,
                password_holder,
                token_holder,
                identity,
            } => encode(
                kind::PUT_BASE,
                &[
                    creds.access_key_id.as_bytes(),
                    creds.secret_access_key,
                    creds.session_token,
                    mfa_serial.as_bytes(),
                    &creds.expiration.to_be_bytes(),
                    password_holder.as_bytes(),
                    token_holder.as_bytes(),
                    identity.as_bytes(),
                ],
            ),
            Self::PutRole {
                role_arn,
                creds,
                assumed_arn,
            } => encode(
                kind::PUT_ROLE,
                &[
                    role_arn.as_bytes(),
                    creds.access_key_id.as_bytes(),
                    creds.secret_access_key,
                    creds.session_token,
                    &creds.expiration.to_be_bytes(),
                    assumed_arn.as_bytes(),
                ],
            ),
            Self::Abort { reason } => encode(kind::ABORT, &[reason.as_bytes()]),
            Self::Lock { profile } => encode(kind::LOCK, &[profile.unwrap_or("").as_bytes()]),
            Self::Status => encode(kind::STATUS, &[]),
            Self::Stop => encode(kind::STOP, &[]),
        }
    }
}

impl<'a> Answer<'a> {
    /// Decodes a frame body.
    pub fn decode(body: &'a [u8]) -> Result<Self, FrameError> {
        let m = Message::parse(body)?;
        let one = |m: &Message<'a>| -> Result<&'a str, FrameError> {
            m.expect(1)?;
            m.text(0)
        };
        Ok(match m.kind {
            kind::CREDS => {
                m.expect(9)?;
                Self::Creds {
                    creds: creds(&m, 0)?,
                    identity: m.text(4)?,
                    password_holder: m.text(5)?,
                    token_holder: m.text(6)?,
                    base_expiration: m.number(7)?,
                    what: m.text(8)?,
                }
            }
            kind::LEAD_CEREMONY => {
                m.expect(0)?;
                Self::LeadCeremony
            }
            kind::LEAD_ROLE => {
                m.expect(6)?;
                Self::LeadRole {
                    base: creds(&m, 0)?,
                    password_holder: m.text(4)?,
                    token_holder: m.text(5)?,
                }
            }
            kind::NO_SESSION => Self::NoSession { reason: one(&m)? },
            kind::FAILED => Self::Failed { reason: one(&m)? },
            kind::REFUSED => Self::Refused { reason: one(&m)? },
            kind::AUDIT_FAILED => Self::AuditFailed { reason: one(&m)? },
            kind::SEEN => {
                m.expect(0)?;
                Self::Seen
            }
            kind::STATUS_REPLY => Self::Status { json: one(&m)? },
            kind::DONE => Self::Done { text: one(&m)? },
            _ => return Err(unknown()),
        })
    }

    /// Encodes as one frame, in a buffer sized exactly (no copy of a secret left behind).
    pub fn encode(&self) -> Result<Zeroizing<Vec<u8>>, FrameError> {
        match *self {
            Self::Creds {
                creds,
                identity,
                password_holder,
                token_holder,
                base_expiration,
                what,
            } => encode(
                kind::CREDS,
                &[
                    creds.access_key_id.as_bytes(),
                    creds.secret_access_key,
                    creds.session_token,
                    &creds.expiration.to_be_bytes(),
                    identity.as_bytes(),
                    password_holder.as_bytes(),
                    token_holder.as_bytes(),
                    &base_expiration.to_be_bytes(),
                    what.as_bytes(),
                ],
            ),
            Self::LeadCeremony => encode(kind::LEAD_CEREMONY, &[]),
            Self::LeadRole {
                base,
                password_holder,
                token_holder,
            } => encode(
                kind::LEAD_ROLE,
                &[
                    base.access_key_id.as_bytes(),
                    base.secret_access_key,
                    base.session_token,
                    &base.expiration.to_be_bytes(),
                    password_holder.as_bytes(),
                    token_holder.as_bytes(),
                ],
            ),
            Self::NoSession { reason } => encode(kind::NO_SESSION, &[reason.as_bytes()]),
            Self::Failed { reason } => encode(kind::FAILED, &[reason.as_bytes()]),
            Self::Refused { reason } => encode(kind::REFUSED, &[reason.as_bytes()]),
            Self::AuditFailed { reason } => encode(kind::AUDIT_FAILED, &[reason.as_bytes()]),
            Self::Seen => encode(kind::SEEN, &[]),
            Self::Status { json } => encode(kind::STATUS_REPLY, &[json.as_bytes()]),
            Self::Done { text } => encode(kind::DONE, &[text.as_bytes()]),
        }
    }

    /// Encodes and writes the answer as one frame.
    pub fn send(&self, w: &mut impl std::io::Write) -> Result<(), FrameError> {
        write(w, &self.encode()?)
    }
}

impl Request<'_> {
    /// Encodes and writes the request as one frame.
    pub fn send(&self, w: &mut impl std::io::Write) -> Result<(), FrameError> {
        write(w, &self.encode()?)
    }
}

fn write(w: &mut impl std::io::Write, frame: &[u8]) -> Result<(), FrameError> {
    w.write_all(frame)?;
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CREDS: WireCreds<'static> = WireCreds {
        access_key_id: "ASIAEXAMPLE",
        secret_access_key: b"secret",
        session_token: b"token",
        expiration: 1_700_000_000,
    };

    fn body(frame: &[u8]) -> &[u8] {
        &frame[4..]
    }

    #[test]
    fn every_request_round_trips() {
        let requests = [
            Request::Get {
                profile: "prod",
                role_arn: Some("arn:aws:iam::1:role/R"),
                interactive: true,
                fresh: false,
            },
            Request::Get {
                profile: "prod",
                role_arn: None,
                interactive: true,
                fresh: true,
            },
            Request::Get {
                profile: "prod",
                role_arn: None,
                interactive: false,
                fresh: false,
            },
            Request::PutBase {
                creds: CREDS,
                mfa_serial: "arn:aws:iam::1:mfa/bg",
                password_holder: "alice",
                token_holder: "bob",
                identity: "arn:aws:iam::1:user/bg",
            },
            Request::PutRole {
                role_arn: "arn:aws:iam::1:role/R",
                creds: CREDS,
                assumed_arn: "arn:aws:sts::1:assumed-role/R/alice+bob",
            },
            Request::Abort { reason: "no" },
            Request::Lock {
                profile: Some("prod"),
            },
            Request::Lock { profile: None },
            Request::Status,
            Request::Stop,
        ];
        for r in requests {
            let frame = r.encode().unwrap();
            assert_eq!(frame.capacity(), frame.len(), "sized exactly");
            let back = Request::decode(body(&frame)).unwrap();
            assert_eq!(format!("{back:?}"), format!("{r:?}"));
            assert_eq!(*back.encode().unwrap(), *frame);
        }
    }

    #[test]
    fn every_answer_round_trips_and_secrets_stay_out_of_debug() {
        let answers = [
            Answer::Creds {
                creds: CREDS,
                identity: "arn:aws:iam::1:user/bg",
                password_holder: "alice",
                token_holder: "bob",
                base_expiration: 1_700_003_600,
                what: "session",
            },
            Answer::LeadCeremony,
            Answer::LeadRole {
                base: CREDS,
                password_holder: "alice",
                token_holder: "bob",
            },
            Answer::NoSession { reason: "locked" },
            Answer::Failed { reason: "x" },
            Answer::Refused { reason: "y" },
            Answer::AuditFailed { reason: "z" },
            Answer::Seen,
            Answer::Status { json: "{}" },
            Answer::Done { text: "ok" },
        ];
        for a in answers {
            let frame = a.encode().unwrap();
            let back = Answer::decode(body(&frame)).unwrap();
            let shown = format!("{back:?}");
            assert_eq!(shown, format!("{a:?}"));
            assert!(
                !shown.contains("secret") && !shown.contains("token\""),
                "{shown}"
            );
            assert_eq!(*back.encode().unwrap(), *frame);
        }
    }

    #[test]
    fn wrong_counts_types_and_kinds_are_refused() {
        // Get with two fields; PutBase with a 7-byte number; an unknown kind.
        let short = encode(kind::GET, &[b"prod", b""]).unwrap();
        assert!(Request::decode(body(&short)).is_err());
        let bad_number = encode(
            kind::PUT_ROLE,
            &[b"r", b"id", b"s", b"t", &[0u8; 7], b"arn"],
        )
        .unwrap();
        assert!(Request::decode(body(&bad_number)).is_err());
        let e = Request::decode(&[99]).unwrap_err().to_string();
        assert!(
            e.contains("unknown message kind") && e.contains("protocol 1"),
            "{e}"
        );
        // An answer kind is not a request, and the other way round.
        let creds = Answer::LeadCeremony.encode().unwrap();
        assert!(Request::decode(body(&creds)).is_err());
        let stop = Request::Stop.encode().unwrap();
        assert!(Answer::decode(body(&stop)).is_err());
    }

    proptest! {
        #[test]
        fn decoding_never_panics(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Request::decode(&b);
            let _ = Answer::decode(&b);
        }
    }
}
