//! The agent process: socket, peer checks, single-flight leads, locked session store, expiry.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::arena::{Arena, Stored};
use super::harden::{self, Peer, SocketFile};
use super::wire::{self, FrameError, Message};
use super::{kind, CEREMONY_TIMEOUT_SECS, ROLE_REFRESH_MARGIN_SECS};
use crate::audit;
use crate::config::{self, Paths};

/// Requests other than a lead's answer must arrive this fast.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more are closed (a local flood cannot exhaust threads).
const MAX_CONNECTIONS: usize = 256;
/// A detached agent with no session, no lead and no connection exits after this long.
const EMPTY_EXIT_SECS: u64 = 10 * 60;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("another agent is already running for this user")]
    AlreadyRunning,
    #[error(transparent)]
    Dir(#[from] harden::DirError),
    #[error("cannot listen on {path}: {source}")]
    Bind {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] config::Error),
}

/// How the agent was started.
pub struct Options {
    /// In the foreground (systemd user unit): stays even when empty.
    pub foreground: bool,
    /// Overrides the config's `[agent] idle_timeout`.
    pub idle_timeout_minutes: Option<u64>,
}

struct Held {
    access_key_id: String,
    stored: Stored,
    expiration: u64,
}

struct Base {
    held: Held,
    password_holder: String,
    token_holder: String,
    identity: String,
    mfa_serial: String,
    activated: u64,
}

struct Role {
    role_arn: String,
    assumed_arn: String,
    held: Held,
}

#[derive(Clone, Copy)]
struct LeadInfo {
    generation: u64,
    pid: i32,
    epoch: u64,
    kind: &'static str,
}

#[derive(Default)]
struct Entry {
    base: Option<Base>,
    role: Option<Role>,
    /// The running lead, if any.
    lead: Option<LeadInfo>,
    /// Incremented by every wipe: a lead's result that arrives after a `lock` is discarded.
    epoch: u64,
    /// How the lead of a generation ended without a result.
    failure: Option<(u64, String)>,
    last_used: u64,
}

struct State {
    arena: Arena,
    profiles: BTreeMap<String, Entry>,
    next_generation: u64,
    last_activity: u64,
}

struct Agent {
    state: Mutex<State>,
    changed: Condvar,
    paths: Paths,
    uid: u32,
    idle_secs: u64,
    foreground: bool,
    connections: AtomicUsize,
    hardening_failures: Vec<String>,
}

fn now() -> u64 {
    crate::ceremony::now()
}

/// Runs the agent until `Stop` (or, detached, until it has been empty for a while).
/// Returns `Err(AlreadyRunning)` quietly when another agent holds the lock.
pub fn run(paths: Paths, options: Options) -> Result<(), Error> {
    let hardening_failures = harden::no_dumps();
    if !options.foreground {
        // Leave the caller's session and process group: the terminal closing must not
        // take the agent with it. Fails harmlessly if we already lead a group.
        let _ = nix::unistd::setsid();
    }
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let idle_minutes = match options.idle_timeout_minutes {
        Some(m) => m,
        None => config::load_agent(&paths)?.idle_timeout_minutes,
    };
    harden::private_runtime_dir(&paths.runtime, true)?;
    let lock = lock_file(&paths)?;
    let socket = paths.agent_socket();
    match harden::socket_file(&socket)? {
        SocketFile::Live => return Err(Error::AlreadyRunning),
        SocketFile::Stale => {
            let _ = fs::remove_file(&socket);
        }
        SocketFile::Absent => {}
    }
    let listener = UnixListener::bind(&socket).map_err(|source| Error::Bind {
        path: socket.display().to_string(),
        source,
    })?;
    let _ = fs::set_permissions(&socket, fs::Permissions::from_mode(0o600));
    let agent = Arc::new(Agent {
        state: Mutex::new(State {
            arena: Arena::new(),
            profiles: BTreeMap::new(),
            next_generation: 1,
            last_activity: now(),
        }),
        changed: Condvar::new(),
        paths,
        uid: harden::euid(),
        idle_secs: idle_minutes.saturating_mul(60),
        foreground: options.foreground,
        connections: AtomicUsize::new(0),
        hardening_failures,
    });
    agent.record(
        "agent started",
        "",
        Map::from_iter([
            ("pid".into(), json!(std::process::id())),
            ("idle_timeout_minutes".into(), json!(idle_minutes)),
        ]),
    );
    {
        let agent = Arc::clone(&agent);
        std::thread::Builder::new()
            .name("janitor".into())
            .spawn(move || agent.janitor(lock))
            .map_err(|source| Error::Bind {
                path: "janitor thread".into(),
                source,
            })?;
    }
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        if agent.connections.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            agent.connections.fetch_sub(1, Ordering::SeqCst);
            continue;
        }
        let a = Arc::clone(&agent);
        let spawned = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                a.serve(stream);
                a.connections.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            agent.connections.fetch_sub(1, Ordering::SeqCst);
        }
    }
    Ok(())
}

/// The lock that makes this the only agent of the user (held for the process lifetime).
fn lock_file(paths: &Paths) -> Result<File, Error> {
    let path = paths.runtime.join("agent.lock");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|source| Error::Bind {
            path: path.display().to_string(),
            source,
        })?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::AlreadyRunning),
        Err(std::fs::TryLockError::Error(source)) => Err(Error::Bind {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// One answer a `Get` can lead to.
enum Outcome {
    Reply(u8, String),
    Handout(Box<Handout>),
    Lead(Lead),
}

struct Handout {
    frame: zeroize::Zeroizing<Vec<u8>>,
    access_key_id: String,
    kind: &'static str,
    expiration: u64,
}

enum Lead {
    Ceremony(u64),
    Role(u64, zeroize::Zeroizing<Vec<u8>>),
}

impl Agent {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in another connection's thread must not take every session down with it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, event: &str, profile: &str, fields: Map<String, Value>) {
        let e = audit::Event {
            time: audit::rfc3339(now()),
            event: event.into(),
            profile: profile.into(),
            fields,
            outcome: "success".into(),
        };
        if let Err(err) = audit::append(&self.paths.audit_log(), &e) {
            eprintln!("breakglass agent: cannot write the audit log: {err}");
        }
    }

    fn serve(&self, mut stream: UnixStream) {
        let peer = match harden::peer(&stream) {
            Ok(p) => p,
            Err(_) => return,
        };
        if peer.uid != self.uid {
            let msg = format!(
                "refused: this agent serves uid {} only, and the caller runs as uid {}; every user runs their own agent",
                self.uid, peer.uid
            );
            let _ = stream.set_write_timeout(Some(REQUEST_TIMEOUT));
            let _ = wire::send(&mut stream, kind::REFUSED, &[msg.as_bytes()]);
            self.record(
                "agent refused a connection",
                "",
                Map::from_iter([
                    ("peer_pid".into(), json!(peer.pid)),
                    ("peer_uid".into(), json!(peer.uid)),
                    ("peer_exe".into(), json!(harden::exe_of(peer.pid))),
                ]),
            );
            return;
        }
        let _ = stream.set_read_timeout(Some(REQUEST_TIMEOUT));
        let _ = stream.set_write_timeout(Some(REQUEST_TIMEOUT));
        let body = match wire::read_frame(&mut stream) {
            Ok(b) => b,
            Err(FrameError::Closed) => return,
            Err(e) => {
                let _ = wire::send(&mut stream, kind::FAILED, &[e.to_string().as_bytes()]);
                return;
            }
        };
        // Read now: the caller may have exited by the time the hand-out is audited.
        let exe = harden::exe_of(peer.pid);
        let parent_exe = harden::parent_of(peer.pid)
            .map(harden::exe_of)
            .unwrap_or_else(|| "unknown".into());
        let result = Message::parse(&body)
            .and_then(|m| self.dispatch(&mut stream, peer, (&exe, &parent_exe), &m));
        if let Err(e) = result {
            let _ = wire::send(&mut stream, kind::FAILED, &[e.to_string().as_bytes()]);
        }
    }

    fn dispatch(
        &self,
        stream: &mut UnixStream,
        peer: Peer,
        (exe, parent_exe): (&str, &str),
        m: &Message<'_>,
    ) -> Result<(), FrameError> {
        self.lock().last_activity = now();
        match m.kind {
            kind::GET => {
                m.expect(3)?;
                let profile = m.text(0)?;
                config::check_profile_name(profile)
                    .map_err(|_| FrameError::Malformed("bad profile name"))?;
                let role = Some(m.text(1)?).filter(|r| !r.is_empty());
                let interactive = m.bytes(2)? == [1];
                self.get(stream, peer, (exe, parent_exe), profile, role, interactive)
            }
            kind::LOCK => {
                m.expect(1)?;
                let profile = Some(m.text(0)?).filter(|p| !p.is_empty());
                let text = self.lock_profiles(profile, peer);
                wire::send(stream, kind::DONE, &[text.as_bytes()])
            }
            kind::STATUS => {
                m.expect(0)?;
                let status = self.status().to_string();
                wire::send(stream, kind::STATUS_REPLY, &[status.as_bytes()])
            }
            kind::STOP => {
                m.expect(0)?;
                let n = self.wipe_all("agent stopped", peer);
                let _ = fs::remove_file(self.paths.agent_socket());
                self.record(
                    "agent stopped",
                    "",
                    Map::from_iter([
                        ("by_pid".into(), json!(peer.pid)),
                        ("by_exe".into(), json!(exe)),
                    ]),
                );
                let _ = wire::send(
                    stream,
                    kind::DONE,
                    &[format!("agent stopped; {n} session(s) wiped").as_bytes()],
                );
                std::process::exit(0);
            }
            kind::PUT_BASE | kind::PUT_ROLE | kind::ABORT => Err(FrameError::Malformed(
                "a result was sent without a lead: ask with Get first",
            )),
            _ => Err(FrameError::Malformed("unknown message kind")),
        }
    }

    /// Hands out a session, or makes the caller lead, or waits for the leader.
    fn get(
        &self,
        stream: &mut UnixStream,
        peer: Peer,
        (exe, parent_exe): (&str, &str),
        profile: &str,
        role_arn: Option<&str>,
        interactive: bool,
    ) -> Result<(), FrameError> {
        let deadline = now() + CEREMONY_TIMEOUT_SECS;
        let mut waited_for: Option<u64> = None;
        let mut st = self.lock();
        loop {
            let expired = st.expire(now(), self.idle_secs);
            if !expired.is_empty() {
                drop(st);
                self.record_wipes(expired, peer);
                st = self.lock();
            }
            let outcome = st.decide(profile, role_arn, interactive, waited_for, peer)?;
            match outcome {
                None => {
                    // Someone else leads: wait for their result.
                    waited_for = st
                        .profiles
                        .get(profile)
                        .and_then(|e| e.lead)
                        .map(|l| l.generation);
                    let left = deadline.saturating_sub(now());
                    if left == 0 {
                        drop(st);
                        return wire::send(stream, kind::FAILED, &[b"timed out waiting for the ceremony in another process; run the command again"]);
                    }
                    st = self
                        .changed
                        .wait_timeout(st, Duration::from_secs(left.min(5)))
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                Some(Outcome::Reply(k, text)) => {
                    drop(st);
                    return wire::send(stream, k, &[text.as_bytes()]);
                }
                Some(Outcome::Handout(h)) => {
                    drop(st);
                    stream.write_all(&h.frame)?;
                    drop(h.frame);
                    let mut fields = caller(peer, (exe, parent_exe));
                    fields.insert("temporary_access_key_id".into(), json!(h.access_key_id));
                    fields.insert("kind".into(), json!(h.kind));
                    fields.insert("expiration".into(), json!(audit::rfc3339(h.expiration)));
                    self.record("hand-out", profile, fields);
                    return Ok(());
                }
                Some(Outcome::Lead(lead)) => {
                    drop(st);
                    if matches!(lead, Lead::Role(..)) {
                        // The two-person session itself goes out, to renew the role session.
                        let mut fields = caller(peer, (exe, parent_exe));
                        fields.insert("kind".into(), json!("session, to assume the role"));
                        self.record("hand-out", profile, fields);
                    }
                    let generation = self.lead(stream, peer, profile, lead)?;
                    let Some(_) = generation else {
                        return Ok(());
                    };
                    waited_for = None;
                    st = self.lock();
                }
            }
        }
    }

    /// Sends the lead, waits for the leader's result and stores it. `Ok(None)` when the
    /// lead ended without a result (the waiting callers are told why).
    fn lead(
        &self,
        stream: &mut UnixStream,
        peer: Peer,
        profile: &str,
        lead: Lead,
    ) -> Result<Option<u64>, FrameError> {
        let (generation, expect) = match &lead {
            Lead::Ceremony(g) => (*g, kind::PUT_BASE),
            Lead::Role(g, _) => (*g, kind::PUT_ROLE),
        };
        let sent = match lead {
            Lead::Ceremony(_) => wire::send(stream, kind::LEAD_CEREMONY, &[]),
            Lead::Role(_, frame) => stream.write_all(&frame).map_err(FrameError::from),
        };
        let answer = sent.and_then(|()| {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(CEREMONY_TIMEOUT_SECS)));
            wire::read_frame(stream)
        });
        let _ = stream.set_read_timeout(Some(REQUEST_TIMEOUT));
        let mut st = self.lock();
        // Ok(None): stored; Ok(Some(reason)): the leader aborted; Err: it failed.
        let answer_failed = answer.is_err();
        let mut refused = None;
        let result: Result<Option<String>, String> = match answer {
            Err(FrameError::Closed) => Err("exited".into()),
            Err(FrameError::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Err("did not finish in time".into())
            }
            Err(e) => Err(format!("sent no usable result ({e})")),
            Ok(body) => Message::parse(&body)
                .and_then(|m| match m.kind {
                    k if k == expect => st.store(profile, &m, now()).map(|()| None),
                    kind::ABORT => {
                        m.expect(1)?;
                        Ok(Some(m.text(0)?.to_owned()))
                    }
                    _ => Err(FrameError::Malformed("expected the lead's result or Abort")),
                })
                .map_err(|e| match e {
                    FrameError::Refused(why) => why,
                    e => format!("the process {} sent no usable result ({e})", peer.pid),
                }),
        };
        let entry = st.profiles.entry(profile.to_owned()).or_default();
        entry.lead = None;
        let outcome = match result {
            Ok(None) => {
                entry.failure = None;
                Some(generation)
            }
            Ok(Some(reason)) => {
                entry.failure = Some((
                    generation,
                    format!("the ceremony in process {} failed: {reason}", peer.pid),
                ));
                None
            }
            Err(why) => {
                let why = match answer_failed {
                    true => format!(
                        "the process {} running the ceremony {why}; no session was stored",
                        peer.pid
                    ),
                    false => why,
                };
                entry.failure = Some((generation, why.clone()));
                refused = Some(why);
                None
            }
        };
        drop(st);
        self.changed.notify_all();
        // A leader whose result was refused is told why (it may still be listening).
        if let Some(why) = refused {
            let _ = wire::send(stream, kind::FAILED, &[why.as_bytes()]);
        }
        Ok(outcome)
    }

    fn lock_profiles(&self, profile: Option<&str>, peer: Peer) -> String {
        match profile {
            None => {
                let n = self.wipe_all("locked", peer);
                format!("locked: {n} session(s) wiped")
            }
            Some(p) => {
                let mut st = self.lock();
                let had = st.wipe(p);
                drop(st);
                if had {
                    self.record_wipes(vec![(p.to_owned(), "locked")], peer);
                    format!("locked {p}: its sessions are wiped")
                } else {
                    format!("{p} was not unlocked; nothing to wipe")
                }
            }
        }
    }

    fn wipe_all(&self, why: &'static str, peer: Peer) -> usize {
        let mut st = self.lock();
        let names: Vec<String> = st.profiles.keys().cloned().collect();
        let wiped: Vec<(String, &'static str)> = names
            .into_iter()
            .filter(|p| st.wipe(p))
            .map(|p| (p, why))
            .collect();
        drop(st);
        let n = wiped.len();
        self.record_wipes(wiped, peer);
        n
    }

    fn record_wipes(&self, wiped: Vec<(String, &'static str)>, peer: Peer) {
        for (profile, why) in wiped {
            self.record(
                "session wiped",
                &profile,
                Map::from_iter([("why".into(), json!(why)), ("pid".into(), json!(peer.pid))]),
            );
        }
    }

    fn status(&self) -> Value {
        let st = self.lock();
        let t = now();
        let profiles: Vec<Value> = st
            .profiles
            .iter()
            .filter(|(_, e)| e.base.is_some() || e.lead.is_some())
            .map(|(name, e)| {
                let mut v = json!({ "profile": name });
                if let Some(b) = &e.base {
                    v["identity"] = json!(b.identity);
                    v["password_holder"] = json!(b.password_holder);
                    v["token_holder"] = json!(b.token_holder);
                    v["mfa_serial"] = json!(b.mfa_serial);
                    v["activated"] = json!(audit::rfc3339(b.activated));
                    v["expires"] = json!(audit::rfc3339(b.held.expiration));
                    v["temporary_access_key_id"] = json!(b.held.access_key_id);
                    v["idle_wipe"] = json!(audit::rfc3339(e.last_used + self.idle_secs));
                }
                if let Some(r) = &e.role {
                    v["role"] = json!({
                        "role_arn": r.role_arn,
                        "assumed_role_arn": r.assumed_arn,
                        "expires": audit::rfc3339(r.held.expiration),
                    });
                }
                if let Some(l) = e.lead {
                    v["running"] = json!({ "what": l.kind, "pid": l.pid });
                }
                v
            })
            .collect();
        json!({
            "pid": std::process::id(),
            "uid": self.uid,
            "socket": self.paths.agent_socket().display().to_string(),
            "now": audit::rfc3339(t),
            "memory_locked": st.arena.lock_error().is_none(),
            "memory_lock_error": st.arena.lock_error(),
            "hardening_failures": self.hardening_failures,
            "idle_timeout_minutes": self.idle_secs / 60,
            "profiles": profiles,
        })
    }

    /// Wipes expired and idle sessions every second; exits a detached agent that has been
    /// empty for a while.
    fn janitor(&self, _lock: File) {
        let me = Peer {
            pid: std::process::id() as i32,
            uid: self.uid,
        };
        loop {
            std::thread::sleep(Duration::from_secs(1));
            let mut st = self.lock();
            let t = now();
            let wiped = st.expire(t, self.idle_secs);
            drop(st);
            if !wiped.is_empty() {
                self.record_wipes(wiped, me);
                self.changed.notify_all();
            }
            // Decided and done under the lock, after the audit writes: a caller that arrives
            // meanwhile keeps the agent alive.
            let st = self.lock();
            let empty = st.arena.in_use() == 0
                && st.profiles.values().all(|e| e.lead.is_none())
                && self.connections.load(Ordering::SeqCst) == 0;
            if !self.foreground && empty && t >= st.last_activity + EMPTY_EXIT_SECS {
                let _ = fs::remove_file(self.paths.agent_socket());
                std::process::exit(0);
            }
            drop(st);
        }
    }
}

impl State {
    /// Wipes what expired (STS expiry) or went idle; returns (profile, why).
    fn expire(&mut self, t: u64, idle_secs: u64) -> Vec<(String, &'static str)> {
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
            if let Some(b) = e.base.take() {
                arena.wipe(b.held.stored);
            }
            if let Some(r) = e.role.take() {
                arena.wipe(r.held.stored);
            }
            out.push((name.clone(), why));
        }
        out
    }

    /// Wipes one profile's sessions; true if there was one.
    fn wipe(&mut self, profile: &str) -> bool {
        let Some(e) = self.profiles.get_mut(profile) else {
            return false;
        };
        e.epoch += 1;
        let mut had = false;
        if let Some(b) = e.base.take() {
            self.arena.wipe(b.held.stored);
            had = true;
        }
        if let Some(r) = e.role.take() {
            self.arena.wipe(r.held.stored);
            had = true;
        }
        had
    }

    /// What a `Get` gets now; `None` means "wait for the running lead".
    fn decide(
        &mut self,
        profile: &str,
        role_arn: Option<&str>,
        interactive: bool,
        waited_for: Option<u64>,
        peer: Peer,
    ) -> Result<Option<Outcome>, FrameError> {
        let t = now();
        let next = self.next_generation;
        let e = self.profiles.entry(profile.to_owned()).or_default();
        // The lead this caller waited for failed: say why, even if a new lead has started.
        if let (Some(w), Some((g, why))) = (waited_for, &e.failure) {
            if w == *g {
                return Ok(Some(Outcome::Reply(kind::FAILED, why.clone())));
            }
        }
        if e.lead.is_some() {
            return Ok(None);
        }
        let Some(base) = &e.base else {
            if !interactive {
                return Ok(Some(Outcome::Reply(
                    kind::NO_SESSION,
                    format!("profile {profile} is not unlocked"),
                )));
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
        // session (no ceremony), whoever it is.
        let frame = wire::encode(
            kind::LEAD_ROLE,
            &[
                base.held.access_key_id.as_bytes(),
                self.arena.secret(base.held.stored),
                self.arena.token(base.held.stored),
                &base.held.expiration.to_be_bytes(),
                base.password_holder.as_bytes(),
                base.token_holder.as_bytes(),
            ],
        )?;
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
    fn store(&mut self, profile: &str, m: &Message<'_>, t: u64) -> Result<(), FrameError> {
        let arena_err = |e: super::arena::Error| FrameError::Refused(e.to_string());
        let e = self.profiles.entry(profile.to_owned()).or_default();
        if e.lead.is_some_and(|l| l.epoch != e.epoch) {
            return Err(FrameError::Refused(format!(
                "profile {profile} was locked while the ceremony ran; its result was discarded"
            )));
        }
        match m.kind {
            kind::PUT_BASE => {
                m.expect(8)?;
                let (id, serial, expiration) = (m.text(0)?, m.text(3)?, m.number(4)?);
                let (password_holder, token_holder) = (m.text(5)?, m.text(6)?);
                let identity = m.text(7)?;
                self.wipe(profile);
                let stored = self
                    .arena
                    .store(m.bytes(1)?, m.bytes(2)?)
                    .map_err(arena_err)?;
                let e = self.profiles.entry(profile.to_owned()).or_default();
                e.base = Some(Base {
                    held: Held {
                        access_key_id: id.to_owned(),
                        stored,
                        expiration,
                    },
                    password_holder: password_holder.to_owned(),
                    token_holder: token_holder.to_owned(),
                    identity: identity.to_owned(),
                    mfa_serial: serial.to_owned(),
                    activated: t,
                });
                e.last_used = t;
            }
            _ => {
                m.expect(6)?;
                // Every field is checked before a secret byte is copied anywhere.
                let (role_arn, id, secret, token) =
                    (m.text(0)?, m.text(1)?, m.bytes(2)?, m.bytes(3)?);
                let (expiration, assumed_arn) = (m.number(4)?, m.text(5)?);
                if self.profiles.get(profile).is_none_or(|e| e.base.is_none()) {
                    return Err(FrameError::Refused(format!(
                        "profile {profile} has no session any more (locked or expired); the role session was discarded"
                    )));
                }
                let stored = self.arena.store(secret, token).map_err(arena_err)?;
                let e = self.profiles.entry(profile.to_owned()).or_default();
                if let Some(old) = e.role.take() {
                    self.arena.wipe(old.held.stored);
                }
                e.role = Some(Role {
                    role_arn: role_arn.to_owned(),
                    assumed_arn: assumed_arn.to_owned(),
                    held: Held {
                        access_key_id: id.to_owned(),
                        stored,
                        expiration,
                    },
                });
            }
        }
        Ok(())
    }
}

/// Who asked, for a hand-out record.
fn caller(peer: Peer, (exe, parent_exe): (&str, &str)) -> Map<String, Value> {
    Map::from_iter([
        ("pid".into(), json!(peer.pid)),
        ("exe".into(), json!(exe)),
        ("uid".into(), json!(peer.uid)),
        ("parent_exe".into(), json!(parent_exe)),
    ])
}

/// The `Creds` answer, built straight from the arena into a wiped buffer.
fn creds_frame(
    arena: &Arena,
    held: &Held,
    identity: &str,
    base: &Base,
    what: &str,
) -> Result<zeroize::Zeroizing<Vec<u8>>, FrameError> {
    wire::encode(
        kind::CREDS,
        &[
            held.access_key_id.as_bytes(),
            arena.secret(held.stored),
            arena.token(held.stored),
            &held.expiration.to_be_bytes(),
            identity.as_bytes(),
            base.password_holder.as_bytes(),
            base.token_holder.as_bytes(),
            &base.held.expiration.to_be_bytes(),
            what.as_bytes(),
        ],
    )
}

/// For the agent log of a detached agent: stderr goes to `STATE/agent.log`.
pub fn open_log(paths: &Paths) -> std::io::Result<File> {
    crate::files::ensure_private_dir(&paths.state)?;
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(paths.state.join("agent.log"))?;
    let _ = writeln!(f, "{} agent starting", audit::rfc3339(now()));
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(st.expire(1000, 3600), vec![("prod".to_owned(), "expired")]);
        assert_eq!(st.arena.in_use(), 0);
        assert!(st.profiles["prod"].base.is_none());
    }

    #[test]
    fn idle_sessions_are_wiped() {
        let mut st = state_with("prod", 100_000, Some(100_000), 1000);
        assert!(st.expire(1000 + 59, 60).is_empty());
        assert_eq!(st.expire(1000 + 60, 60), vec![("prod".to_owned(), "idle")]);
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
        let o = st.decide("prod", None, false, None, peer).unwrap();
        assert!(matches!(o, Some(Outcome::Reply(kind::NO_SESSION, _))));
        let o = st.decide("prod", None, true, None, peer).unwrap();
        assert!(matches!(o, Some(Outcome::Lead(Lead::Ceremony(1)))));
        // While the lead runs, everyone else waits, interactive or not.
        assert!(st.decide("prod", None, true, None, peer).unwrap().is_none());
        assert!(st
            .decide("prod", None, false, None, peer)
            .unwrap()
            .is_none());
        // Another profile is independent.
        assert!(st
            .decide("stage", None, true, None, peer)
            .unwrap()
            .is_some());
        // A failed lead is reported to those who waited for it, not to newcomers.
        let e = st.profiles.get_mut("prod").unwrap();
        e.lead = None;
        e.failure = Some((1, "wrong passphrase".into()));
        let o = st.decide("prod", None, true, Some(1), peer).unwrap();
        assert!(matches!(o, Some(Outcome::Reply(kind::FAILED, ref m)) if m == "wrong passphrase"));
        let o = st.decide("prod", None, true, None, peer).unwrap();
        assert!(matches!(o, Some(Outcome::Lead(Lead::Ceremony(3)))));
    }

    #[test]
    fn a_role_session_is_renewed_before_it_nears_expiry() {
        let t = now();
        let peer = Peer { pid: 1, uid: 0 };
        let arn = "arn:aws:iam::123456789012:role/R";
        let mut st = state_with("prod", t + 7200, Some(t + ROLE_REFRESH_MARGIN_SECS + 60), t);
        let o = st.decide("prod", Some(arn), false, None, peer).unwrap();
        assert!(matches!(o, Some(Outcome::Handout(ref h)) if h.kind == "role"));
        let mut st = state_with("prod", t + 7200, Some(t + ROLE_REFRESH_MARGIN_SECS - 60), t);
        let o = st.decide("prod", Some(arn), false, None, peer).unwrap();
        assert!(matches!(o, Some(Outcome::Lead(Lead::Role(..)))));
        // A role session that lasts as long as the base is never renewed (nothing to gain).
        let mut st = state_with("prod", t + 600, Some(t + 600), t);
        let o = st.decide("prod", Some(arn), false, None, peer).unwrap();
        assert!(matches!(o, Some(Outcome::Handout(_))));
        // Another role in the config: a new role session.
        let o = st
            .decide(
                "prod",
                Some("arn:aws:iam::123456789012:role/Other"),
                false,
                None,
                peer,
            )
            .unwrap();
        assert!(matches!(o, Some(Outcome::Lead(Lead::Role(..)))));
    }

    fn put_role(fields: &[&[u8]]) -> zeroize::Zeroizing<Vec<u8>> {
        wire::encode(kind::PUT_ROLE, fields).unwrap()
    }

    #[test]
    fn a_result_that_arrives_after_lock_is_discarded() {
        let t = now();
        let peer = Peer { pid: 1, uid: 0 };
        let arn = "arn:aws:iam::123456789012:role/R";
        let mut st = state_with("prod", t + 7200, None, t);
        let o = st.decide("prod", Some(arn), false, None, peer).unwrap();
        assert!(matches!(o, Some(Outcome::Lead(Lead::Role(..)))));
        // `lock prod` while the client runs AssumeRole.
        assert!(st.wipe("prod"));
        let frame = put_role(&[
            arn.as_bytes(),
            b"ASIAROLE",
            b"role-secret",
            b"role-token",
            &(t + 3600).to_be_bytes(),
            b"arn:aws:sts::123456789012:assumed-role/R/a+b",
        ]);
        let m = Message::parse(&frame[4..]).unwrap();
        let e = st.store("prod", &m, t).unwrap_err();
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
        let m = Message::parse(&frame[4..]).unwrap();
        assert!(st.store("prod", &m, t).is_err());
        assert_eq!(st.arena.in_use(), before, "no orphan slot");
    }
}
