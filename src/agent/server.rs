//! The agent process: socket, peer checks, single-flight leads, locked session store, expiry.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::arena::Arena;
use super::harden::{self, Peer, SocketFile};
use super::protocol::{Answer, Request};
use super::session::{now, Ask, Failure, Gone, Lead, Outcome, State, Wiped};
use super::status::{ProfileStatus, RoleStatus, Running, SessionStatus, Status};
use super::wire::{self, FrameError};
use super::CEREMONY_TIMEOUT_SECS;
use crate::audit;
use crate::config::{self, Paths};
use crate::notify::{self, Event, Notice};

/// A request (a whole frame, however it is sent) must arrive this fast; answers too.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections of this user served at once. When all are taken, a new one takes the place of
/// the oldest that has not yet sent its whole request: slow or idle clients cannot keep the
/// owner's requests out; only connections past their request (waiting for a ceremony, a
/// lead) count against a newcomer.
const MAX_CONNECTIONS: usize = 256;
/// Connections of other users answered (refused, and audited) at once: their own small
/// budget, so that they never take the user's places. More are closed unanswered.
const MAX_REFUSALS: usize = 8;
/// A detached agent with no session, no lead and no connection exits after this long.
const EMPTY_EXIT_SECS: u64 = 10 * 60;

/// Errors of starting the agent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another agent of this user holds the lock, or answers on the socket.
    #[error("another agent is already running for this user")]
    AlreadyRunning,
    /// The runtime folder is unsafe (owner, mode).
    #[error(transparent)]
    Dir(#[from] harden::DirError),
    /// The lock file or the socket could not be made or bound.
    #[error("cannot listen on {path}: {source}")]
    Bind {
        /// The lock file's or socket's path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The config could not be read (idle timeout).
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

struct Agent {
    state: Mutex<State>,
    changed: Condvar,
    paths: Paths,
    uid: u32,
    idle_secs: u64,
    foreground: bool,
    connections: AtomicUsize,
    refusals: AtomicUsize,
    /// Connections still reading their request: (id, a handle to cut it, accepted at).
    reading: Mutex<Vec<(u64, UnixStream, std::time::Instant)>>,
    next_id: std::sync::atomic::AtomicU64,
    hardening_failures: Vec<String>,
    /// Notices of wiped sessions still being delivered (the agent does not exit under them).
    notices: Arc<AtomicUsize>,
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
        refusals: AtomicUsize::new(0),
        reading: Mutex::new(Vec::new()),
        next_id: std::sync::atomic::AtomicU64::new(0),
        hardening_failures,
        notices: Arc::new(AtomicUsize::new(0)),
    });
    agent.record(
        "",
        audit::Record::AgentStarted {
            pid: std::process::id(),
            idle_timeout_minutes: idle_minutes,
        },
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
        let Ok(peer) = harden::peer(&stream) else {
            continue;
        };
        if peer.uid != agent.uid {
            agent.refuse_in_thread(stream, peer);
            continue;
        }
        if agent.connections.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS
            && !agent.cut_oldest_reader()
        {
            agent.connections.fetch_sub(1, Ordering::SeqCst);
            continue;
        }
        // Registered as reading before its thread runs, so that a newcomer can always find it.
        let id = agent.reading_started(&stream);
        let a = Arc::clone(&agent);
        let spawned = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                a.serve(stream, peer, id);
                a.connections.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            agent.reading_done(id);
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

impl Agent {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in another connection's thread must not take every session down with it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends a record of the agent's own (start, stop, wipes, refusals); a failure shows in
    /// `agent.log` and stops nothing.
    fn record(&self, profile: &str, record: audit::Record) {
        let _ = self.audit(profile, record);
    }

    /// Appends a record; a failure is also written to `agent.log`.
    fn audit(&self, profile: &str, record: audit::Record) -> Result<(), audit::Error> {
        let e = audit::Entry {
            time: now(),
            profile,
            record,
            outcome: audit::Outcome::Success,
        };
        audit::append(&self.paths.audit_log(), &e).inspect_err(|err| {
            eprintln!("breakglass agent: cannot write the audit log: {err}");
        })
    }

    /// Appends the record of a hand-out, before anything is sent: a hand-out the log cannot
    /// show does not happen. On failure the caller has been told why (`AuditFailed`), and
    /// `Err` carries the reason; nothing else must be sent then.
    fn audit_handout(
        &self,
        stream: &mut UnixStream,
        profile: &str,
        record: audit::Record,
    ) -> Result<(), String> {
        self.audit(profile, record).map_err(|e| {
            let reason = e.to_string();
            let _ = Answer::AuditFailed { reason: &reason }.send(stream);
            reason
        })
    }

    /// Answers another user's connection (refused, audited) in a thread of the refusals'
    /// own budget; beyond it, the connection is closed unanswered.
    fn refuse_in_thread(self: &Arc<Self>, stream: UnixStream, peer: Peer) {
        if self.refusals.fetch_add(1, Ordering::SeqCst) >= MAX_REFUSALS {
            self.refusals.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        let a = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .stack_size(128 * 1024)
            .spawn(move || {
                a.refuse(stream, peer);
                a.refusals.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            self.refusals.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn refuse(&self, mut stream: UnixStream, peer: Peer) {
        let msg = format!(
            "refused: this agent serves uid {} only, and the caller runs as uid {}; every user runs their own agent",
            self.uid, peer.uid
        );
        let _ = stream.set_write_timeout(Some(REQUEST_TIMEOUT));
        let _ = Answer::Refused { reason: &msg }.send(&mut stream);
        drop(stream);
        self.record(
            "",
            audit::Record::ConnectionRefused {
                peer_pid: peer.pid,
                peer_uid: peer.uid,
                peer_exe: harden::exe_of(peer.pid),
            },
        );
    }

    /// Cuts the oldest connection still reading its request, to make room; false when every
    /// connection is past its request.
    fn cut_oldest_reader(&self) -> bool {
        let mut reading = self.reading.lock().unwrap_or_else(|p| p.into_inner());
        let Some(oldest) = reading
            .iter()
            .enumerate()
            .min_by_key(|(_, (_, _, since))| *since)
            .map(|(i, _)| i)
        else {
            return false;
        };
        let (_, stream, _) = reading.swap_remove(oldest);
        let _ = stream.shutdown(std::net::Shutdown::Both);
        true
    }

    /// Notes a connection as reading its request; returns its id for [`Agent::reading_done`].
    fn reading_started(&self, stream: &UnixStream) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        if let Ok(handle) = stream.try_clone() {
            self.reading
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((id, handle, std::time::Instant::now()));
        }
        id
    }

    fn reading_done(&self, id: u64) {
        self.reading
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(i, _, _)| *i != id);
    }

    fn serve(&self, mut stream: UnixStream, peer: Peer, id: u64) {
        let _ = stream.set_write_timeout(Some(REQUEST_TIMEOUT));
        // The whole request within its time, cut short if a newcomer needs the place.
        let body = wire::read_frame_by(&mut stream, std::time::Instant::now() + REQUEST_TIMEOUT);
        self.reading_done(id);
        let body = match body {
            Ok(b) => b,
            Err(FrameError::Closed) => return,
            Err(e) => {
                let _ = Answer::Failed {
                    reason: &e.to_string(),
                }
                .send(&mut stream);
                return;
            }
        };
        // Read now: the caller may have exited by the time the hand-out is audited, and it goes
        // non-dumpable (unreadable) once it has our `Seen`.
        let exe = harden::exe_of(peer.pid);
        let breakglass = harden::runs_this_program(peer.pid);
        let parent_exe = harden::parent_of(peer.pid)
            .map(harden::exe_of)
            .unwrap_or_else(|| "unknown".into());
        let result = Request::decode(&body)
            .and_then(|r| self.dispatch(&mut stream, (peer, breakglass), (&exe, &parent_exe), r));
        if let Err(e) = result {
            let _ = Answer::Failed {
                reason: &e.to_string(),
            }
            .send(&mut stream);
        }
    }

    fn dispatch(
        &self,
        stream: &mut UnixStream,
        (peer, breakglass): (Peer, bool),
        (exe, parent_exe): (&str, &str),
        request: Request<'_>,
    ) -> Result<(), FrameError> {
        self.lock().last_activity = now();
        match request {
            Request::Get {
                profile,
                role_arn,
                interactive,
                fresh,
            } => {
                config::check_profile_name(profile)
                    .map_err(|_| FrameError::Malformed("bad profile name"))?;
                let ask = Ask {
                    profile,
                    role_arn,
                    interactive,
                    fresh,
                    breakglass,
                };
                // The caller's executable is read (in `serve`): it may go non-dumpable now.
                Answer::Seen.send(stream)?;
                self.get(stream, peer, (exe, parent_exe), &ask)
            }
            Request::Lock { profile } => {
                let text = self.lock_profiles(profile, peer);
                Answer::Done { text: &text }.send(stream)
            }
            Request::Status => {
                let json = serde_json::to_string(&self.status())
                    .map_err(|_| FrameError::Malformed("status does not encode"))?;
                Answer::Status { json: &json }.send(stream)
            }
            Request::Stop => {
                let n = self.wipe_all("agent stopped", peer);
                let _ = fs::remove_file(self.paths.agent_socket());
                self.record(
                    "",
                    audit::Record::AgentStopped {
                        by_pid: peer.pid,
                        by_exe: exe.to_owned(),
                    },
                );
                let _ = Answer::Done {
                    text: &format!("agent stopped; {n} session(s) wiped"),
                }
                .send(stream);
                self.drain_notices();
                std::process::exit(0);
            }
            Request::PutBase { .. } | Request::PutRole { .. } | Request::Abort { .. } => Err(
                FrameError::Malformed("a result was sent without a lead: ask with Get first"),
            ),
        }
    }

    /// Hands out a session, or makes the caller lead, or waits for the leader.
    fn get(
        &self,
        stream: &mut UnixStream,
        peer: Peer,
        (exe, parent_exe): (&str, &str),
        ask: &Ask<'_>,
    ) -> Result<(), FrameError> {
        let profile = ask.profile;
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
            let outcome = st.decide(ask, waited_for, peer)?;
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
                        return Answer::Failed {
                            reason: "timed out waiting for the ceremony in another process; run the command again",
                        }
                        .send(stream);
                    }
                    st = self
                        .changed
                        .wait_timeout(st, Duration::from_secs(left.min(5)))
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                Some(Outcome::NoSession(reason)) => {
                    drop(st);
                    return Answer::NoSession { reason: &reason }.send(stream);
                }
                Some(Outcome::Failed(reason)) => {
                    drop(st);
                    return Answer::Failed { reason: &reason }.send(stream);
                }
                Some(Outcome::Handout(h)) => {
                    drop(st);
                    let given = audit::Given::Credentials {
                        issued: audit::Issued {
                            temporary_access_key_id: h.access_key_id.clone(),
                            expiration: h.expiration,
                        },
                        kind: h.kind,
                    };
                    let caller = caller(peer, (exe, parent_exe));
                    let record = audit::Record::Handout { caller, given };
                    return match self.audit_handout(stream, profile, record) {
                        Ok(()) => stream.write_all(&h.frame).map_err(FrameError::from),
                        // Told already: no second answer.
                        Err(_) => Ok(()),
                    };
                }
                Some(Outcome::Lead(lead)) => {
                    drop(st);
                    if let Lead::Role(generation, _) = &lead {
                        // The two-person session itself goes out, to renew the role session.
                        let caller = caller(peer, (exe, parent_exe));
                        let given = audit::Given::SessionForRole;
                        let record = audit::Record::Handout { caller, given };
                        if let Err(why) = self.audit_handout(stream, profile, record) {
                            // Told already; the callers waiting for this lead are told too.
                            self.end_lead(profile, *generation, why);
                            return Ok(());
                        }
                    }
                    let generation = self.lead(stream, (peer, exe), profile, lead)?;
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
        (peer, exe): (Peer, &str),
        profile: &str,
        lead: Lead,
    ) -> Result<Option<u64>, FrameError> {
        let (generation, ceremony) = match &lead {
            Lead::Ceremony(g) => (*g, true),
            Lead::Role(g, _) => (*g, false),
        };
        let sent = match lead {
            Lead::Ceremony(_) => Answer::LeadCeremony.send(stream),
            Lead::Role(_, frame) => stream.write_all(&frame).map_err(FrameError::from),
        };
        // The whole answer within the lead's time, however slowly it is sent.
        let answer = sent.and_then(|()| {
            wire::read_frame_by(
                stream,
                std::time::Instant::now() + Duration::from_secs(CEREMONY_TIMEOUT_SECS),
            )
        });
        let _ = stream.set_read_timeout(Some(REQUEST_TIMEOUT));
        let mut st = self.lock();
        // Ok(None): stored; Ok(Some(reason)): the leader aborted; Err: it failed.
        let answer_failed = answer.is_err();
        let mut refused = None;
        let mut stored: Option<String> = None;
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
            Ok(body) => Request::decode(&body)
                .and_then(|r| match r {
                    Request::PutBase { creds, .. } if ceremony => {
                        stored = Some(creds.access_key_id.to_owned());
                        st.store(profile, &r, now(), (peer.pid, exe)).map(|()| None)
                    }
                    Request::PutRole { creds, .. } if !ceremony => {
                        stored = Some(creds.access_key_id.to_owned());
                        st.store(profile, &r, now(), (peer.pid, exe)).map(|()| None)
                    }
                    Request::Abort { reason } => Ok(Some(reason.to_owned())),
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
                entry.failure = Some(Failure {
                    generation,
                    why: format!("the ceremony in process {} failed: {reason}", peer.pid),
                    at: now(),
                });
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
                entry.failure = Some(Failure {
                    generation,
                    why: why.clone(),
                    at: now(),
                });
                refused = Some(why);
                None
            }
        };
        drop(st);
        self.changed.notify_all();
        if let (Some(_), Some(key)) = (outcome, stored) {
            self.record(
                profile,
                audit::Record::SessionStored {
                    kind: if ceremony { "session" } else { "role" },
                    temporary_access_key_id: key,
                    by_pid: peer.pid,
                    by_exe: exe.to_owned(),
                },
            );
        }
        // A leader whose result was refused is told why (it may still be listening).
        if let Some(why) = refused {
            let _ = Answer::Failed { reason: &why }.send(stream);
        }
        Ok(outcome)
    }

    /// Ends the lead `generation` of `profile` without a result: its waiting callers get `why`.
    fn end_lead(&self, profile: &str, generation: u64, why: String) {
        let mut st = self.lock();
        let entry = st.profiles.entry(profile.to_owned()).or_default();
        entry.lead = None;
        entry.failure = Some(Failure {
            generation,
            why,
            at: now(),
        });
        drop(st);
        self.changed.notify_all();
    }

    fn lock_profiles(&self, profile: Option<&str>, peer: Peer) -> String {
        match profile {
            None => {
                let n = self.wipe_all("locked", peer);
                format!("locked: {n} session(s) wiped")
            }
            Some(p) => {
                let mut st = self.lock();
                let wiped = st.wipe(p, "locked");
                drop(st);
                match wiped {
                    Some(w) => {
                        self.record_wipes(vec![w], peer);
                        format!("locked {p}: its sessions are wiped")
                    }
                    None => format!("{p} was not unlocked; nothing to wipe"),
                }
            }
        }
    }

    fn wipe_all(&self, why: &'static str, peer: Peer) -> usize {
        let mut st = self.lock();
        let names: Vec<String> = st.profiles.keys().cloned().collect();
        let wiped: Vec<Wiped> = names.iter().filter_map(|p| st.wipe(p, why)).collect();
        drop(st);
        let n = wiped.len();
        self.record_wipes(wiped, peer);
        n
    }

    /// The `session wiped` records, and the notices of the two-person sessions that went
    /// (`[notify]` webhooks, in threads of their own: nothing here waits for a channel).
    fn record_wipes(&self, wiped: Vec<Wiped>, peer: Peer) {
        for w in wiped {
            let e = audit::Entry {
                time: now(),
                profile: &w.profile,
                record: audit::Record::SessionWiped {
                    why: w.why,
                    pid: peer.pid,
                },
                outcome: audit::Outcome::Success,
            };
            match audit::Log::new(&self.paths.audit_log()).append_head(&e, None) {
                Ok(head) => {
                    if let Some(gone) = w.session {
                        self.notify_wipe(&w.profile, w.why, gone, head);
                    }
                }
                Err(err) => eprintln!("breakglass agent: cannot write the audit log: {err}"),
            }
        }
    }

    /// Sends the notice of a wiped session (lock, expiry, idle, stop) to the profile's
    /// webhooks: there is no session left to publish to SNS with.
    fn notify_wipe(&self, profile: &str, why: &'static str, gone: Gone, head: String) {
        let profile = match config::load(&self.paths, profile) {
            Ok(p) if !p.notify.webhooks.is_empty() => p,
            Ok(_) => return,
            Err(e) => {
                eprintln!("breakglass agent: no notice of the {why} session of {profile}: {e}");
                return;
            }
        };
        let event = match why {
            "expired" => Event::Expired,
            "idle" => Event::Idle,
            _ => Event::Locked,
        };
        let notice = Notice {
            user_arn: gone.identity,
            temporary_access_key_id: Some(gone.access_key_id),
            expiration: Some(gone.expiration),
            detail: Some(format!("The session was wiped from the agent ({why})")),
            ..Notice::new(event, now(), &profile, head)
                .by((&gone.password_holder, &gone.token_holder))
        };
        let log = self.paths.audit_log();
        let in_flight = Arc::clone(&self.notices);
        in_flight.fetch_add(1, Ordering::SeqCst);
        let spawned = std::thread::Builder::new()
            .name("notice".into())
            .spawn(move || {
                notify::announce_blocking(&profile, &log, &notice, &mut |w| {
                    eprintln!("breakglass agent: {w}")
                });
                in_flight.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            self.notices.fetch_sub(1, Ordering::SeqCst);
            eprintln!("breakglass agent: no thread for the {why} notice: {e}");
        }
    }

    /// Waits (boundedly) for the notices still being delivered, before the agent exits.
    fn drain_notices(&self) {
        let until =
            std::time::Instant::now() + Duration::from_secs(*config::NOTIFY_TIMEOUT_SECS.end() + 2);
        while self.notices.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn status(&self) -> Status {
        let st = self.lock();
        let t = now();
        let profiles = st
            .profiles
            .iter()
            .filter(|(_, e)| e.base.is_some() || e.lead.is_some())
            .map(|(name, e)| ProfileStatus {
                profile: name.clone(),
                session: e.base.as_ref().map(|b| SessionStatus {
                    identity: b.identity.clone(),
                    password_holder: b.password_holder.clone(),
                    token_holder: b.token_holder.clone(),
                    mfa_serial: b.mfa_serial.clone(),
                    activated: audit::rfc3339(b.activated),
                    expires: audit::rfc3339(b.held.expiration),
                    temporary_access_key_id: b.held.access_key_id.clone(),
                    idle_wipe: audit::rfc3339(e.last_used + self.idle_secs),
                    stored_by_pid: b.stored_by.0,
                    stored_by_exe: b.stored_by.1.clone(),
                }),
                role: e.role.as_ref().map(|r| RoleStatus {
                    role_arn: r.role_arn.clone(),
                    assumed_role_arn: r.assumed_arn.clone(),
                    expires: audit::rfc3339(r.held.expiration),
                }),
                running: e.lead.map(|l| Running {
                    what: l.kind.to_owned(),
                    pid: l.pid,
                }),
            })
            .collect();
        Status {
            pid: std::process::id(),
            uid: self.uid,
            socket: self.paths.agent_socket().display().to_string(),
            now: audit::rfc3339(t),
            memory_locked: st.arena.lock_error().is_none(),
            memory_lock_error: st.arena.lock_error().map(str::to_owned),
            hardening_failures: self.hardening_failures.clone(),
            idle_timeout_minutes: self.idle_secs / 60,
            profiles,
        }
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
                && self.connections.load(Ordering::SeqCst) == 0
                && self.notices.load(Ordering::SeqCst) == 0;
            if !self.foreground && empty && t >= st.last_activity + EMPTY_EXIT_SECS {
                let _ = fs::remove_file(self.paths.agent_socket());
                std::process::exit(0);
            }
            drop(st);
        }
    }
}

/// Who asked, for a hand-out record.
fn caller(peer: Peer, (exe, parent_exe): (&str, &str)) -> audit::Caller {
    audit::Caller {
        pid: peer.pid,
        exe: exe.to_owned(),
        uid: peer.uid,
        parent_exe: parent_exe.to_owned(),
    }
}

/// Opens (creating, mode 0600) `agent.log` in the state folder for the agent's stderr and writes a
/// start line.
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
