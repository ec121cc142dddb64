//! The agent's session state, apart from its sockets: which profiles hold a two-person
//! session and a role session (their secrets in the locked arena), who leads a ceremony,
//! expiry and idle wipes, and what a `Get` leads to. Pure: the time comes in as an argument,
//! so the decisions are unit-tested without sockets or clocks.

use std::collections::BTreeMap;

use super::arena::{Arena, Stored};
use super::harden::Peer;
use super::protocol::{Answer, Request, WireCreds};
use super::wire::FrameError;
use super::ROLE_REFRESH_MARGIN_SECS;
use crate::clock::{Clock, SystemClock};

/// How long after a ceremony failed a caller that did not wait for it still gets its error
/// instead of starting another: the stragglers of a burst (twenty AWS CLI calls at once) are
/// told why the ceremony ended, and do not start a second one behind the first one's error.
/// A person asking anew (`unlock`, [`Ask::fresh`]) starts one at once.
pub(super) const FAILURE_GRACE_SECS: u64 = 5;

/// What a `Get` asks for.
pub(super) struct Ask<'a> {
    pub(super) profile: &'a str,
    pub(super) role_arn: Option<&'a str>,
    pub(super) interactive: bool,
    pub(super) fresh: bool,
    /// The caller runs the breakglass program itself (the agent's executable): only such a
    /// caller is made a leader, so that only a real ceremony (or a real AssumeRole from the
    /// two-person session) can store a session.
    pub(super) breakglass: bool,
}

/// The agent's time: the system clock, in Unix seconds.
pub(super) fn now() -> u64 {
    SystemClock.now()
}

pub(super) struct Held {
    pub(super) access_key_id: String,
    pub(super) stored: Stored,
    pub(super) expiration: u64,
}

pub(super) struct Base {
    pub(super) held: Held,
    pub(super) password_holder: String,
    pub(super) token_holder: String,
    pub(super) identity: String,
    pub(super) mfa_serial: String,
    pub(super) activated: u64,
    /// The leader that stored it: its pid and executable.
    pub(super) stored_by: (i32, String),
}

/// A profile whose sessions were wiped, and why (`"expired"`, `"idle"`, `"locked"`…).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Wiped {
    pub(super) profile: String,
    pub(super) why: &'static str,
    /// The two-person session that went, if there was one.
    pub(super) session: Option<Gone>,
}

/// What a wiped two-person session was (for its notice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Gone {
    pub(super) password_holder: String,
    pub(super) token_holder: String,
    pub(super) identity: String,
    pub(super) access_key_id: String,
    pub(super) expiration: u64,
}

impl Gone {
    fn of(b: &Base) -> Self {
        Self {
            password_holder: b.password_holder.clone(),
            token_holder: b.token_holder.clone(),
            identity: b.identity.clone(),
            access_key_id: b.held.access_key_id.clone(),
            expiration: b.held.expiration,
        }
    }
}

pub(super) struct Role {
    pub(super) role_arn: String,
    pub(super) assumed_arn: String,
    pub(super) held: Held,
}

#[derive(Clone, Copy)]
pub(super) struct LeadInfo {
    pub(super) generation: u64,
    pub(super) pid: i32,
    pub(super) epoch: u64,
    pub(super) kind: &'static str,
}

#[derive(Default)]
pub(super) struct Entry {
    pub(super) base: Option<Base>,
    pub(super) role: Option<Role>,
    /// The running lead, if any.
    pub(super) lead: Option<LeadInfo>,
    /// Incremented by every wipe: a lead's result that arrives after a `lock` is discarded.
    pub(super) epoch: u64,
    /// How the lead of a generation ended without a result, and when.
    pub(super) failure: Option<Failure>,
    pub(super) last_used: u64,
}

/// A lead that ended without a result.
pub(super) struct Failure {
    pub(super) generation: u64,
    pub(super) why: String,
    pub(super) at: u64,
}

pub(super) struct State {
    pub(super) arena: Arena,
    pub(super) profiles: BTreeMap<String, Entry>,
    pub(super) next_generation: u64,
    pub(super) last_activity: u64,
}

/// One answer a `Get` can lead to.
pub(super) enum Outcome {
    /// Nothing unlocked, and the caller cannot lead.
    NoSession(String),
    /// The lead this caller waited for failed, for this reason.
    Failed(String),
    Handout(Box<Handout>),
    Lead(Lead),
}

pub(super) struct Handout {
    pub(super) frame: zeroize::Zeroizing<Vec<u8>>,
    pub(super) access_key_id: String,
    pub(super) kind: &'static str,
    pub(super) expiration: u64,
}

pub(super) enum Lead {
    Ceremony(u64),
    Role(u64, zeroize::Zeroizing<Vec<u8>>),
}

impl State {
    /// Wipes what expired (STS expiry) or went idle; returns what and why.
    pub(super) fn expire(&mut self, t: u64, idle_secs: u64) -> Vec<Wiped> {
        let mut out = Vec::new();
        let arena = &mut self.arena;
        for (name, e) in self.profiles.iter_mut() {
            if let Some(r) = &e.role {
                if r.held.expiration <= t {
                    arena.wipe(r.held.stored);
                    e.role = None;
                }
            }
            let why = match &e.base {
                Some(b) if b.held.expiration <= t => "expired",
                Some(_) if e.last_used + idle_secs <= t => "idle",
                _ => continue,
            };
            let session = e.base.take().map(|b| {
                arena.wipe(b.held.stored);
                Gone::of(&b)
            });
            if let Some(r) = e.role.take() {
                arena.wipe(r.held.stored);
            }
            out.push(Wiped {
                profile: name.clone(),
                why,
                session,
            });
        }
        out
    }

    /// Wipes one profile's sessions for `why`; `None` if there was none.
    pub(super) fn wipe(&mut self, profile: &str, why: &'static str) -> Option<Wiped> {
        let e = self.profiles.get_mut(profile)?;
        e.epoch += 1;
        let mut had = false;
        let session = e.base.take().map(|b| {
            self.arena.wipe(b.held.stored);
            Gone::of(&b)
        });
        if let Some(r) = e.role.take() {
            self.arena.wipe(r.held.stored);
            had = true;
        }
        (had || session.is_some()).then(|| Wiped {
            profile: profile.to_owned(),
            why,
            session,
        })
    }

    /// What a `Get` gets now; `None` means "wait for the running lead".
    pub(super) fn decide(
        &mut self,
        ask: &Ask<'_>,
        waited_for: Option<u64>,
        peer: Peer,
    ) -> Result<Option<Outcome>, FrameError> {
        let Ask {
            profile,
            role_arn,
            interactive,
            fresh,
            breakglass,
        } = *ask;
        let t = now();
        let next = self.next_generation;
        let e = self.profiles.entry(profile.to_owned()).or_default();
        // The lead this caller waited for failed: say why, even if a new lead has started.
        if let (Some(w), Some(f)) = (waited_for, &e.failure) {
            if w == f.generation {
                return Ok(Some(Outcome::Failed(f.why.clone())));
            }
        }
        if e.lead.is_some() {
            return Ok(None);
        }
        let Some(base) = &e.base else {
            // A moment after a failure, a program's call is part of the same burst.
            if let Some(f) = e
                .failure
                .as_ref()
                .filter(|f| !fresh && t < f.at + FAILURE_GRACE_SECS)
            {
                return Ok(Some(Outcome::Failed(format!(
                    "{} ({} s ago; `breakglass unlock {profile}` starts a new ceremony)",
                    f.why,
                    t.saturating_sub(f.at)
                ))));
            }
            if !interactive {
                return Ok(Some(Outcome::NoSession(format!(
                    "profile {profile} is not unlocked"
                ))));
            }
            if !breakglass {
                return Ok(Some(Outcome::NoSession(format!(
                    "profile {profile} is not unlocked, and only the breakglass program itself runs its ceremony (this caller is another program)"
                ))));
            }
            e.lead = Some(LeadInfo {
                generation: next,
                pid: peer.pid,
                epoch: e.epoch,
                kind: "ceremony",
            });
            self.next_generation += 1;
            return Ok(Some(Outcome::Lead(Lead::Ceremony(next))));
        };
        let Some(arn) = role_arn else {
            e.last_used = t;
            let frame = creds_frame(&self.arena, &base.held, &base.identity, base, "session")?;
            return Ok(Some(Outcome::Handout(Box::new(Handout {
                frame,
                access_key_id: base.held.access_key_id.clone(),
                kind: "session",
                expiration: base.held.expiration,
            }))));
        };
        let usable = e.role.as_ref().filter(|r| {
            r.role_arn == arn
                && (r.held.expiration > t + ROLE_REFRESH_MARGIN_SECS
                    || r.held.expiration >= base.held.expiration)
        });
        if let Some(r) = usable {
            e.last_used = t;
            let frame = creds_frame(&self.arena, &r.held, &r.assumed_arn, base, "role")?;
            return Ok(Some(Outcome::Handout(Box::new(Handout {
                frame,
                access_key_id: r.held.access_key_id.clone(),
                kind: "role",
                expiration: r.held.expiration,
            }))));
        }
        // The role session is missing or about to expire: the caller renews it from the base
        // session (no ceremony), if it is breakglass itself.
        if !breakglass {
            return Ok(Some(Outcome::NoSession(format!(
                "the role session of profile {profile} must be renewed, and only the breakglass program itself does that (this caller is another program)"
            ))));
        }
        let frame = Answer::LeadRole {
            base: wire_creds(&self.arena, &base.held),
            password_holder: &base.password_holder,
            token_holder: &base.token_holder,
        }
        .encode()?;
        e.lead = Some(LeadInfo {
            generation: next,
            pid: peer.pid,
            epoch: e.epoch,
            kind: "AssumeRole",
        });
        self.next_generation += 1;
        Ok(Some(Outcome::Lead(Lead::Role(next, frame))))
    }

    /// Stores a leader's result (PutBase or PutRole) in the arena.
    /// Keeps a leader's result (`PutBase` or `PutRole`) for `profile`, unless the profile was
    /// locked while the lead ran.
    pub(super) fn store(
        &mut self,
        profile: &str,
        r: &Request<'_>,
        t: u64,
        by: (i32, &str),
    ) -> Result<(), FrameError> {
        let arena_err = |e: super::arena::Error| FrameError::Refused(e.to_string());
        let e = self.profiles.entry(profile.to_owned()).or_default();
        if e.lead.is_some_and(|l| l.epoch != e.epoch) {
            return Err(FrameError::Refused(format!(
                "profile {profile} was locked while the ceremony ran; its result was discarded"
            )));
        }
        match *r {
            Request::PutBase {
                creds,
                mfa_serial,
                password_holder,
                token_holder,
                identity,
            } => {
                self.wipe(profile, "replaced");
                let stored = self
                    .arena
                    .store(creds.secret_access_key, creds.session_token)
                    .map_err(arena_err)?;
                let e = self.profiles.entry(profile.to_owned()).or_default();
                e.base = Some(Base {
                    held: Held {
                        access_key_id: creds.access_key_id.to_owned(),
                        stored,
                        expiration: creds.expiration,
                    },
                    password_holder: password_holder.to_owned(),
                    token_holder: token_holder.to_owned(),
                    identity: identity.to_owned(),
                    mfa_serial: mfa_serial.to_owned(),
                    activated: t,
                    stored_by: (by.0, by.1.to_owned()),
                });
                e.last_used = t;
            }
            Request::PutRole {
                role_arn,
                creds,
                assumed_arn,
            } => {
                // Every field was checked (decoded) before a secret byte is copied anywhere.
                if self.profiles.get(profile).is_none_or(|e| e.base.is_none()) {
                    return Err(FrameError::Refused(format!(
                        "profile {profile} has no session any more (locked or expired); the role session was discarded"
                    )));
                }
                let stored = self
                    .arena
                    .store(creds.secret_access_key, creds.session_token)
                    .map_err(arena_err)?;
                let e = self.profiles.entry(profile.to_owned()).or_default();
                if let Some(old) = e.role.take() {
                    self.arena.wipe(old.held.stored);
                }
                e.role = Some(Role {
                    role_arn: role_arn.to_owned(),
                    assumed_arn: assumed_arn.to_owned(),
                    held: Held {
                        access_key_id: creds.access_key_id.to_owned(),
                        stored,
                        expiration: creds.expiration,
                    },
                });
            }
            _ => return Err(FrameError::Malformed("expected the lead's result or Abort")),
        }
        Ok(())
    }
}

/// The `Creds` answer, built straight from the arena into a wiped buffer.
/// A held session's credentials, borrowed from the arena, for a frame.
fn wire_creds<'a>(arena: &'a Arena, held: &'a Held) -> WireCreds<'a> {
    WireCreds {
        access_key_id: &held.access_key_id,
        secret_access_key: arena.secret(held.stored),
        session_token: arena.token(held.stored),
        expiration: held.expiration,
    }
}

fn creds_frame(
    arena: &Arena,
    held: &Held,
    identity: &str,
    base: &Base,
    what: &str,
) -> Result<zeroize::Zeroizing<Vec<u8>>, FrameError> {
    Answer::Creds {
        creds: wire_creds(arena, held),
        identity,
        password_holder: &base.password_holder,
        token_holder: &base.token_holder,
        base_expiration: base.held.expiration,
        what,
    }
    .encode()
}

/// For the agent log of a detached agent: stderr goes to `STATE/agent.log`.
#[cfg(test)]
mod tests {
    use super::*;

    fn ask<'a>(profile: &'a str, role_arn: Option<&'a str>, interactive: bool) -> Ask<'a> {
        Ask {
            profile,
            role_arn,
            interactive,
            fresh: false,
            breakglass: true,
        }
    }

    #[test]
    fn only_the_breakglass_program_is_made_a_leader() {
        let t = now();
        let peer = Peer { pid: 1, uid: 0 };
        let other = |a: Ask<'static>| Ask {
            breakglass: false,
            ..a
        };
        let mut st = state_with("stage", t + 7200, None, t);
        let o = st
            .decide(&other(ask("prod", None, true)), None, peer)
            .unwrap();
        assert!(
            matches!(o, Some(Outcome::NoSession(ref m)) if m.contains("only the breakglass program")),
            "no ceremony lead for another program"
        );
        assert!(st.profiles["prod"].lead.is_none());
        let arn = "arn:aws:iam::123456789012:role/R";
        let o = st
            .decide(&other(ask("stage", Some(arn), false)), None, peer)
            .unwrap();
        assert!(
            matches!(o, Some(Outcome::NoSession(ref m)) if m.contains("must be renewed")),
            "no role lead for another program"
        );
        // A held session is still handed out to it, as to any process of the user.
        let o = st
            .decide(&other(ask("stage", None, false)), None, peer)
            .unwrap();
        assert!(matches!(o, Some(Outcome::Handout(_))));
    }

    fn state_with(profile: &str, base_exp: u64, role_exp: Option<u64>, last_used: u64) -> State {
        let mut st = State {
            arena: Arena::new(),
            profiles: BTreeMap::new(),
            next_generation: 1,
            last_activity: 0,
        };
        let stored = st.arena.store(b"base-secret", b"base-token").unwrap();
        let role = role_exp.map(|exp| Role {
            role_arn: "arn:aws:iam::123456789012:role/R".into(),
            assumed_arn: "arn:aws:sts::123456789012:assumed-role/R/a+b".into(),
            held: Held {
                access_key_id: "ASIAROLE".into(),
                stored: st.arena.store(b"role-secret", b"role-token").unwrap(),
                expiration: exp,
            },
        });
        st.profiles.insert(
            profile.into(),
            Entry {
                base: Some(Base {
                    held: Held {
                        access_key_id: "ASIABASE".into(),
                        stored,
                        expiration: base_exp,
                    },
                    password_holder: "a".into(),
                    token_holder: "b".into(),
                    identity: "arn:aws:iam::123456789012:user/u".into(),
                    mfa_serial: "arn:aws:iam::123456789012:mfa/m".into(),
                    activated: 0,
                    stored_by: (1, "/usr/bin/breakglass".into()),
                }),
                role,
                last_used,
                ..Entry::default()
            },
        );
        st
    }

    #[test]
    fn sessions_are_wiped_at_sts_expiry() {
        let mut st = state_with("prod", 1000, Some(900), 990);
        assert!(st.expire(899, 3600).is_empty());
        assert_eq!(st.arena.in_use(), 2);
        // The role session ends first and goes alone; the base stays.
        assert!(st.expire(900, 3600).is_empty());
        assert_eq!(st.arena.in_use(), 1);
        assert!(st.profiles["prod"].role.is_none());
        let wiped = st.expire(1000, 3600);
        assert_eq!(wiped.len(), 1);
        assert_eq!(
            (wiped[0].profile.as_str(), wiped[0].why),
            ("prod", "expired")
        );
        assert!(wiped[0].session.is_some());
        assert_eq!(st.arena.in_use(), 0);
        assert!(st.profiles["prod"].base.is_none());
    }

    #[test]
    fn idle_sessions_are_wiped() {
        let mut st = state_with("prod", 100_000, Some(100_000), 1000);
        assert!(st.expire(1000 + 59, 60).is_empty());
        let wiped = st.expire(1000 + 60, 60);
        assert_eq!(wiped.len(), 1);
        assert_eq!((wiped[0].profile.as_str(), wiped[0].why), ("prod", "idle"));
        assert_eq!(st.arena.in_use(), 0);
    }

    #[test]
    fn leads_are_single_flight_and_non_interactive_callers_are_told() {
        let mut st = State {
            arena: Arena::new(),
            profiles: BTreeMap::new(),
            next_generation: 1,
            last_activity: 0,
        };
        let peer = Peer { pid: 1, uid: 0 };
        let o = st.decide(&ask("prod", None, false), None, peer).unwrap();
        assert!(matches!(o, Some(Outcome::NoSession(_))));
        let o = st.decide(&ask("prod", None, true), None, peer).unwrap();
        assert!(matches!(o, Some(Outcome::Lead(Lead::Ceremony(1)))));
        // While the lead runs, everyone else waits, interactive or not.
        assert!(st
            .decide(&ask("prod", None, true), None, peer)
            .unwrap()
            .is_none());
        assert!(st
            .decide(&ask("prod", None, false), None, peer)
            .unwrap()
            .is_none());
        // Another profile is independent.
        assert!(st
            .decide(&ask("stage", None, true), None, peer)
            .unwrap()
            .is_some());
        // A failed lead is reported to those who waited for it, not to newcomers.
        let e = st.profiles.get_mut("prod").unwrap();
        e.lead = None;
        e.failure = Some(Failure {
            generation: 1,
            why: "wrong passphrase".into(),
            at: now(),
        });
        let o = st.decide(&ask("prod", None, true), Some(1), peer).unwrap();
        assert!(matches!(o, Some(Outcome::Failed(ref m)) if m == "wrong passphrase"));
        // A newcomer a moment later is a straggler of the same burst: it gets the error too,
        // interactive or not; a person asking anew (`unlock`) leads a new ceremony.
        for interactive in [true, false] {
            let o = st
                .decide(&ask("prod", None, interactive), None, peer)
                .unwrap();
            assert!(
                matches!(o, Some(Outcome::Failed(ref m)) if m.starts_with("wrong passphrase (0 s ago; `breakglass unlock prod`")),
                "interactive {interactive}"
            );
        }
        let fresh = Ask {
            fresh: true,
            ..ask("prod", None, true)
        };
        let o = st.decide(&fresh, None, peer).unwrap();
        assert!(matches!(o, Some(Outcome::Lead(Lead::Ceremony(3)))));
        // After the grace period, a program's call may lead again.
        let e = st.profiles.get_mut("prod").unwrap();
        e.lead = None;
        e.failure.as_mut().unwrap().at = now() - FAILURE_GRACE_SECS;
        let o = st.decide(&ask("prod", None, true), None, peer).unwrap();
        assert!(matches!(o, Some(Outcome::Lead(Lead::Ceremony(4)))));
    }

    #[test]
    fn a_role_session_is_renewed_before_it_nears_expiry() {
        let t = now();
        let peer = Peer { pid: 1, uid: 0 };
        let arn = "arn:aws:iam::123456789012:role/R";
        let mut st = state_with("prod", t + 7200, Some(t + ROLE_REFRESH_MARGIN_SECS + 60), t);
        let o = st
            .decide(&ask("prod", Some(arn), false), None, peer)
            .unwrap();
        assert!(matches!(o, Some(Outcome::Handout(ref h)) if h.kind == "role"));
        let mut st = state_with("prod", t + 7200, Some(t + ROLE_REFRESH_MARGIN_SECS - 60), t);
        let o = st
            .decide(&ask("prod", Some(arn), false), None, peer)
            .unwrap();
        assert!(matches!(o, Some(Outcome::Lead(Lead::Role(..)))));
        // A role session that lasts as long as the base is never renewed (nothing to gain).
        let mut st = state_with("prod", t + 600, Some(t + 600), t);
        let o = st
            .decide(&ask("prod", Some(arn), false), None, peer)
            .unwrap();
        assert!(matches!(o, Some(Outcome::Handout(_))));
        // Another role in the config: a new role session.
        let o = st
            .decide(
                &ask("prod", Some("arn:aws:iam::123456789012:role/Other"), false),
                None,
                peer,
            )
            .unwrap();
        assert!(matches!(o, Some(Outcome::Lead(Lead::Role(..)))));
    }

    fn put_role(fields: &[&[u8]]) -> zeroize::Zeroizing<Vec<u8>> {
        crate::agent::wire::encode(crate::agent::kind::PUT_ROLE, fields).unwrap()
    }

    #[test]
    fn a_result_that_arrives_after_lock_is_discarded() {
        let t = now();
        let peer = Peer { pid: 1, uid: 0 };
        let arn = "arn:aws:iam::123456789012:role/R";
        let mut st = state_with("prod", t + 7200, None, t);
        let o = st
            .decide(&ask("prod", Some(arn), false), None, peer)
            .unwrap();
        assert!(matches!(o, Some(Outcome::Lead(Lead::Role(..)))));
        // `lock prod` while the client runs AssumeRole.
        assert!(st.wipe("prod", "locked").is_some());
        let frame = put_role(&[
            arn.as_bytes(),
            b"ASIAROLE",
            b"role-secret",
            b"role-token",
            &(t + 3600).to_be_bytes(),
            b"arn:aws:sts::123456789012:assumed-role/R/a+b",
        ]);
        let r = Request::decode(&frame[4..]).unwrap();
        let e = st.store("prod", &r, t, (1, "bg")).unwrap_err();
        assert!(e.to_string().contains("was locked while"), "{e}");
        assert_eq!(st.arena.in_use(), 0, "nothing stored");
        assert!(st.profiles["prod"].role.is_none());
    }

    #[test]
    fn a_malformed_result_stores_nothing() {
        let t = now();
        let mut st = state_with("prod", t + 7200, None, t);
        let before = st.arena.in_use();
        // The expiration is 3 bytes, not 8: refused before any secret is copied.
        let frame = put_role(&[
            b"arn:aws:iam::123456789012:role/R",
            b"ASIAROLE",
            b"role-secret",
            b"role-token",
            &[1, 2, 3],
            b"arn",
        ]);
        let r = Request::decode(&frame[4..]);
        assert!(r.is_err(), "refused when decoded");
        assert!(r.and_then(|r| st.store("prod", &r, t, (1, "bg"))).is_err());
        assert_eq!(st.arena.in_use(), before, "no orphan slot");
    }
}
