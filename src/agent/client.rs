//! The client side of the agent protocol: connect (starting the agent on demand), ask, lead.

use std::io;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};

use super::harden;
use super::kind;
use super::wire::{self, FrameError, Message};
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
    /// `interactive`, the caller may be asked to lead the ceremony.
    pub fn get(
        &self,
        profile: &str,
        role_arn: Option<&str>,
        interactive: bool,
    ) -> Result<Reply, Error> {
        let mut s = self.stream()?;
        wire::send(
            &mut s,
            kind::GET,
            &[
                profile.as_bytes(),
                role_arn.unwrap_or("").as_bytes(),
                &[u8::from(interactive)],
            ],
        )?;
        read_reply(s)
    }

    /// Wipes one profile's sessions, or all.
    pub fn lock(&self, profile: Option<&str>) -> Result<String, Error> {
        self.simple(kind::LOCK, &[profile.unwrap_or("").as_bytes()])
    }

    /// The agent's state as JSON (no secrets).
    pub fn status(&self) -> Result<super::status::Status, Error> {
        let mut s = self.stream()?;
        wire::send(&mut s, kind::STATUS, &[])?;
        let body = wire::read_frame(&mut s)?;
        let m = Message::parse(&body)?;
        check_refusal(&m)?;
        if m.kind != kind::STATUS_REPLY {
            return Err(Error::Protocol("expected the status"));
        }
        serde_json::from_str(m.text(0)?)
            .map_err(|_| Error::Protocol("status is not the agent's status"))
    }

    /// Wipes everything and stops the agent.
    pub fn stop(&self) -> Result<String, Error> {
        self.simple(kind::STOP, &[])
    }

    fn simple(&self, k: u8, fields: &[&[u8]]) -> Result<String, Error> {
        let mut s = self.stream()?;
        wire::send(&mut s, k, fields)?;
        let body = wire::read_frame(&mut s)?;
        let m = Message::parse(&body)?;
        check_refusal(&m)?;
        if m.kind != kind::DONE {
            return Err(Error::Protocol("expected a confirmation"));
        }
        Ok(m.text(0)?.to_owned())
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
        wire::send(
            &mut self.stream,
            kind::PUT_BASE,
            &[
                session.access_key_id.as_bytes(),
                session.secret_access_key.expose_secret().as_bytes(),
                session.session_token.expose_secret().as_bytes(),
                mfa_serial.as_bytes(),
                &session.expiration.to_be_bytes(),
                password_holder.as_bytes(),
                token_holder.as_bytes(),
                identity.as_bytes(),
            ],
        )?;
        read_reply(self.stream)
    }

    /// Sends the role session.
    pub fn put_role(
        mut self,
        role_arn: &str,
        session: &Session,
        assumed_arn: &str,
    ) -> Result<Reply, Error> {
        wire::send(
            &mut self.stream,
            kind::PUT_ROLE,
            &[
                role_arn.as_bytes(),
                session.access_key_id.as_bytes(),
                session.secret_access_key.expose_secret().as_bytes(),
                session.session_token.expose_secret().as_bytes(),
                &session.expiration.to_be_bytes(),
                assumed_arn.as_bytes(),
            ],
        )?;
        read_reply(self.stream)
    }

    /// Tells the waiting callers why there is no session.
    pub fn abort(mut self, reason: &str) {
        let _ = wire::send(&mut self.stream, kind::ABORT, &[reason.as_bytes()]);
    }
}

fn check_refusal(m: &Message<'_>) -> Result<(), Error> {
    match m.kind {
        kind::REFUSED => Err(Error::Refused(m.text(0)?.to_owned())),
        kind::FAILED => Err(Error::Failed(m.text(0)?.to_owned())),
        _ => Ok(()),
    }
}

fn secret(m: &Message<'_>, i: usize) -> Result<SecretString, Error> {
    let text =
        std::str::from_utf8(m.bytes(i)?).map_err(|_| Error::Protocol("secret is not UTF-8"))?;
    Ok(SecretString::from(text.to_owned()))
}

fn session(m: &Message<'_>, at: usize) -> Result<Session, Error> {
    Ok(Session {
        access_key_id: m.text(at)?.to_owned(),
        secret_access_key: secret(m, at + 1)?,
        session_token: secret(m, at + 2)?,
        expiration: m.number(at + 3)?,
    })
}

fn read_reply(mut stream: UnixStream) -> Result<Reply, Error> {
    let body = wire::read_frame(&mut stream)?;
    let m = Message::parse(&body)?;
    check_refusal(&m)?;
    match m.kind {
        kind::CREDS => {
            m.expect(9)?;
            Ok(Reply::Creds(Box::new(Handout {
                session: session(&m, 0)?,
                identity: m.text(4)?.to_owned(),
                password_holder: m.text(5)?.to_owned(),
                token_holder: m.text(6)?.to_owned(),
                base_expiration: m.number(7)?,
                role: m.text(8)? == "role",
            })))
        }
        kind::LEAD_CEREMONY => Ok(Reply::LeadCeremony(Lead { stream })),
        kind::LEAD_ROLE => {
            m.expect(6)?;
            let base = session(&m, 0)?;
            let (password_holder, token_holder) = (m.text(4)?.to_owned(), m.text(5)?.to_owned());
            Ok(Reply::LeadRole {
                lead: Lead { stream },
                base,
                password_holder,
                token_holder,
            })
        }
        kind::NO_SESSION => Ok(Reply::NoSession(m.text(0)?.to_owned())),
        _ => Err(Error::Protocol("unknown answer")),
    }
}
