//! The client side of the agent protocol: connect (starting the agent on demand), ask, lead.

use std::io;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};

use super::harden;
use super::protocol::{Answer, Request, WireCreds};
use super::wire::{self, FrameError};
use super::CEREMONY_TIMEOUT_SECS;
use crate::aws::sts::Session;
use crate::config::Paths;

/// How long a freshly spawned agent may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors of talking to the agent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No agent listens on the socket (no runtime folder, no socket, or connection refused).
    #[error("the agent is not running")]
    NotRunning,
    /// The runtime folder is unsafe (owner, mode).
    #[error(transparent)]
    Dir(#[from] harden::DirError),
    /// The socket's peer (SO_PEERCRED) is another user: never talked to.
    #[error(
        "the process on the agent socket runs as uid {uid}, not as you; refusing to talk to it"
    )]
    Foreign {
        /// The peer's uid.
        uid: u32,
    },
    /// The agent refused the request (`REFUSED`).
    #[error("the agent refused the request: {0}")]
    Refused(String),
    /// The agent handed nothing out because it could not write the hand-out's audit record
    /// (`AUDIT_FAILED`): the audit log's error.
    #[error("the agent handed out nothing: it cannot write the hand-out's audit record ({0})")]
    AuditFailed(String),
    /// The request failed in the agent, or its leader gave up (`FAILED`): the agent's message.
    #[error("{0}")]
    Failed(String),
    /// A spawned agent did not listen within 5 s.
    #[error("the agent did not start within {}s (its log: {})", START_TIMEOUT.as_secs(), log.display())]
    StartFailed {
        /// The agent's log (`agent.log` in the state folder).
        log: PathBuf,
    },
    /// The agent process could not be spawned (no path to the current executable, exec failed).
    #[error("the agent could not be started: {0}")]
    SpawnFailed(String),
    /// A spawned agent exited with failure before listening.
    #[error("the agent exited at start ({status}); the reason is in {}", log.display())]
    Exited {
        /// Its exit status, as text.
        status: String,
        /// The agent's log, which says why.
        log: PathBuf,
    },
    /// Framing or I/O on the socket failed.
    #[error("talking to the agent failed: {0}")]
    Frame(#[from] FrameError),
    /// The agent answered something the protocol does not allow here.
    #[error("unexpected answer from the agent: {0}")]
    Protocol(&'static str),
}

/// Credentials handed out by the agent.
pub struct Handout {
    /// The credentials to use.
    pub session: Session,
    /// The user ARN (plain sessions) or the assumed-role ARN.
    pub identity: String,
    /// Who typed the passphrase in the ceremony.
    pub password_holder: String,
    /// Who touched the token.
    pub token_holder: String,
    /// When the two-person session ends (role sessions are renewed until then).
    pub base_expiration: u64,
    /// True for a role session, false for the two-person session itself.
    pub role: bool,
}

/// What the agent answered to a `Get`.
pub enum Reply {
    /// Credentials are held: here they are.
    Creds(Box<Handout>),
    /// Run the unlock ceremony and send the result with [`Lead::put_base`].
    LeadCeremony(Lead),
    /// Assume the profile's role with `base` and send it with [`Lead::put_role`].
    LeadRole {
        /// The connection to answer on.
        lead: Lead,
        /// The two-person session to assume the role with.
        base: Session,
        /// Who typed the passphrase (for the role's source identity).
        password_holder: String,
        /// Who touched the token.
        token_holder: String,
    },
    /// No session, and the caller is not interactive: the agent's reason.
    NoSession(String),
}

/// The connection on which a leader must answer. Dropping it without an answer tells the
/// waiting callers that the ceremony was abandoned.
pub struct Lead {
    stream: UnixStream,
}

/// The agent of the user whose paths these are.
pub struct Client {
    paths: Paths,
    /// The connection made while checking that the agent runs, kept for the first request
    /// (one connection instead of two on the hot path of `credential-process`).
    ready: std::cell::Cell<Option<UnixStream>>,
}

impl Client {
    /// An agent that must already be running.
    pub fn running(paths: &Paths) -> Result<Self, Error> {
        let c = Self {
            paths: paths.clone(),
            ready: std::cell::Cell::new(None),
        };
        c.ready.set(Some(c.connect()?));
        Ok(c)
    }

    /// Connects to the agent, starting it (detached) when it is not running.
    pub fn start(paths: &Paths) -> Result<Self, Error> {
        let c = Self {
            paths: paths.clone(),
            ready: std::cell::Cell::new(None),
        };
        match c.connect() {
            Ok(s) => {
                c.ready.set(Some(s));
                return Ok(c);
            }
            Err(Error::NotRunning) => {}
            Err(e) => return Err(e),
        }
        harden::private_runtime_dir(&paths.runtime, true)?;
        let log = paths.state.join("agent.log");
        let stderr = super::server::open_log(paths)
            .map(Stdio::from)
            .unwrap_or_else(|_| Stdio::null());
        let exe = std::env::current_exe().map_err(|e| Error::SpawnFailed(e.to_string()))?;
        let mut child = Command::new(exe)
            .arg("agent")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_SESSION_TOKEN")
            // One connection thread at a time rarely needs its own malloc arena; fewer arenas
            // keep the agent's resident memory small.
            .env("MALLOC_ARENA_MAX", "2")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| Error::SpawnFailed(e.to_string()))?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match c.connect() {
                Ok(s) => {
                    c.ready.set(Some(s));
                    break;
                }
                Err(Error::NotRunning) if Instant::now() < deadline => {
                    // Another caller's agent may win the race (ours then exits with 0); an
                    // agent that failed to start exits non-zero, with the reason in its log.
                    if let Ok(Some(status)) = child.try_wait() {
                        if !status.success() {
                            return Err(Error::Exited {
                                status: status.to_string(),
                                log,
                            });
                        }
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(Error::NotRunning) => return Err(Error::StartFailed { log }),
                Err(e) => return Err(e),
            }
        }
        // Reap it if it already exited (it lost the race); a running agent is left alone.
        let _ = child.try_wait();
        Ok(c)
    }

    /// The kept connection, else a new one.
    fn stream(&self) -> Result<UnixStream, Error> {
        match self.ready.take() {
            Some(s) => Ok(s),
            None => self.connect(),
        }
    }

    fn connect(&self) -> Result<UnixStream, Error> {
        match harden::private_runtime_dir(&self.paths.runtime, false) {
            Ok(()) => {}
            Err(_) if !self.paths.runtime.exists() => return Err(Error::NotRunning),
            Err(e) => return Err(e.into()),
        }
        let path = self.paths.agent_socket();
        let stream = match UnixStream::connect(&path) {
            Ok(s) => s,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Err(Error::NotRunning)
            }
            Err(e) => return Err(Error::Frame(e.into())),
        };
        let peer = harden::peer(&stream).map_err(|e| Error::Frame(e.into()))?;
        if peer.uid != harden::euid() {
            return Err(Error::Foreign { uid: peer.uid });
        }
        let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
        let _ = stream.set_read_timeout(Some(Duration::from_secs(CEREMONY_TIMEOUT_SECS + 30)));
        Ok(stream)
    }

    /// Asks for `profile`'s credentials (the role's, when `role_arn` is given). With
    /// `interactive`, the caller may be asked to lead the ceremony; `fresh`, a person asked
    /// for one (`unlock`), and a ceremony that failed a moment ago does not answer them.
    pub fn get(
        &self,
        profile: &str,
        role_arn: Option<&str>,
        interactive: bool,
        fresh: bool,
    ) -> Result<Reply, Error> {
        let mut s = self.stream()?;
        Request::Get {
            profile,
            role_arn,
            interactive,
            fresh,
        }
        .send(&mut s)?;
        // `Seen` first: the agent has read our executable. Nothing secret has reached this
        // process yet (the next frame is still in the socket); from here on it is
        // non-dumpable, so that no process of the same user can read what arrives, nor what a
        // ceremony it leads will hold.
        let body = wire::read_frame(&mut s)?;
        match refusal(Answer::decode(&body)?)? {
            Answer::Seen => {
                harden::no_dumps();
            }
            _ => {
                return Err(Error::Protocol(
                    "the agent answered before it saw the caller (an agent of another breakglass version?)",
                ))
            }
        }
        read_reply(s)
    }

    /// Wipes one profile's sessions, or all.
    pub fn lock(&self, profile: Option<&str>) -> Result<String, Error> {
        self.simple(&Request::Lock { profile })
    }

    /// The agent's state (no secrets).
    pub fn status(&self) -> Result<super::status::Status, Error> {
        let mut s = self.stream()?;
        Request::Status.send(&mut s)?;
        let body = wire::read_frame(&mut s)?;
        match refusal(Answer::decode(&body)?)? {
            Answer::Status { json } => serde_json::from_str(json)
                .map_err(|_| Error::Protocol("status is not the agent's status")),
            _ => Err(Error::Protocol("expected the status")),
        }
    }

    /// Wipes everything and stops the agent.
    pub fn stop(&self) -> Result<String, Error> {
        self.simple(&Request::Stop)
    }

    fn simple(&self, request: &Request<'_>) -> Result<String, Error> {
        let mut s = self.stream()?;
        request.send(&mut s)?;
        let body = wire::read_frame(&mut s)?;
        match refusal(Answer::decode(&body)?)? {
            Answer::Done { text } => Ok(text.to_owned()),
            _ => Err(Error::Protocol("expected a confirmation")),
        }
    }
}

/// The credentials of a session as they go to the agent.
fn wire_creds(session: &Session) -> WireCreds<'_> {
    WireCreds {
        access_key_id: &session.access_key_id,
        secret_access_key: session.secret_access_key.expose_secret().as_bytes(),
        session_token: session.session_token.expose_secret().as_bytes(),
        expiration: session.expiration,
    }
}

impl Lead {
    /// Sends the ceremony's session; the agent answers as to a new `Get`.
    pub fn put_base(
        mut self,
        session: &Session,
        mfa_serial: &str,
        password_holder: &str,
        token_holder: &str,
        identity: &str,
    ) -> Result<Reply, Error> {
        Request::PutBase {
            creds: wire_creds(session),
            mfa_serial,
            password_holder,
            token_holder,
            identity,
        }
        .send(&mut self.stream)?;
        read_reply(self.stream)
    }

    /// Sends the role session.
    pub fn put_role(
        mut self,
        role_arn: &str,
        session: &Session,
        assumed_arn: &str,
    ) -> Result<Reply, Error> {
        Request::PutRole {
            role_arn,
            creds: wire_creds(session),
            assumed_arn,
        }
        .send(&mut self.stream)?;
        read_reply(self.stream)
    }

    /// Tells the waiting callers why there is no session.
    pub fn abort(mut self, reason: &str) {
        let _ = Request::Abort { reason }.send(&mut self.stream);
    }
}

/// A `Failed`, `Refused` or `AuditFailed` answer as the error it is; any other answer as it is.
fn refusal(answer: Answer<'_>) -> Result<Answer<'_>, Error> {
    match answer {
        Answer::Refused { reason } => Err(Error::Refused(reason.to_owned())),
        Answer::Failed { reason } => Err(Error::Failed(reason.to_owned())),
        Answer::AuditFailed { reason } => Err(Error::AuditFailed(reason.to_owned())),
        a => Ok(a),
    }
}

fn secret(bytes: &[u8]) -> Result<SecretString, Error> {
    let text = std::str::from_utf8(bytes).map_err(|_| Error::Protocol("secret is not UTF-8"))?;
    Ok(SecretString::from(text.to_owned()))
}

fn session(c: &WireCreds<'_>) -> Result<Session, Error> {
    Ok(Session {
        access_key_id: c.access_key_id.to_owned(),
        secret_access_key: secret(c.secret_access_key)?,
        session_token: secret(c.session_token)?,
        expiration: c.expiration,
    })
}

fn read_reply(mut stream: UnixStream) -> Result<Reply, Error> {
    let body = wire::read_frame(&mut stream)?;
    match refusal(Answer::decode(&body)?)? {
        Answer::Creds {
            creds,
            identity,
            password_holder,
            token_holder,
            base_expiration,
            what,
        } => Ok(Reply::Creds(Box::new(Handout {
            session: session(&creds)?,
            identity: identity.to_owned(),
            password_holder: password_holder.to_owned(),
            token_holder: token_holder.to_owned(),
            base_expiration,
            role: what == "role",
        }))),
        Answer::LeadCeremony => Ok(Reply::LeadCeremony(Lead { stream })),
        Answer::LeadRole {
            base,
            password_holder,
            token_holder,
        } => Ok(Reply::LeadRole {
            base: session(&base)?,
            password_holder: password_holder.to_owned(),
            token_holder: token_holder.to_owned(),
            lead: Lead { stream },
        }),
        Answer::NoSession { reason } => Ok(Reply::NoSession(reason.to_owned())),
        _ => Err(Error::Protocol("unknown answer")),
    }
}
