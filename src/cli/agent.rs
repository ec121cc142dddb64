//! The agent and the shell hand-off: `agent`, `unlock`, `lock`, `status`,
//! `credential-process`, `exec`, `env`.
//!
//! Every command that needs credentials goes through [`obtain`]: ask the agent; if it makes
//! us the leader, run the ceremony on `/dev/tty` (or AssumeRole) here and hand the result back.

use std::os::unix::process::CommandExt;

use clap::Args;
use secrecy::ExposeSecret;
use serde_json::{Map, Value};

use breakglass::agent::client::{Client, Error as AgentError, Handout, Reply};
use breakglass::agent::{harden, server, ROLE_MAX_SECS, ROLE_MIN_SECS};
use breakglass::audit;
use breakglass::aws::{sts, Signer};
use breakglass::ceremony::{self, unlock};
use breakglass::config::{self, Paths, Profile};
use breakglass::shell::{self, Shell};
use breakglass::token::pcsc::Card;

use super::ceremony::{endpoint, paths, runtime, TtyPrompt};
use super::error::{exit, CliError};
use super::prompt;

impl From<AgentError> for CliError {
    fn from(e: AgentError) -> Self {
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
            _ => CliError::new(what, "report this", exit::FAILURE),
        }
    }
}

/// What a hand-out needs.
pub(super) struct Want<'a> {
    pub profile: &'a Profile,
    pub paths: &'a Paths,
    /// Given on the command line; otherwise asked on the terminal when leading.
    pub reason: Option<&'a str>,
    pub reader: Option<&'a str>,
    pub interactive: bool,
    /// Who asked, for the ceremony's first line.
    pub requested_by: &'a str,
    /// Hand out the two-person session even when the profile has a role (the console
    /// assumes its own role with it).
    pub base_only: bool,
}

impl<'a> Want<'a> {
    /// A hand-out for a command that may lead the ceremony when a person is at the terminal
    /// (the reason is then asked there).
    pub(super) fn from_terminal(
        profile: &'a Profile,
        paths: &'a Paths,
        requested_by: &'a str,
    ) -> Self {
        Self {
            profile,
            paths,
            reason: None,
            reader: None,
            interactive: prompt::has_tty(),
            requested_by,
            base_only: false,
        }
    }
}

/// The credentials of a profile from the agent; runs the ceremony (or AssumeRole) here when
/// the agent makes this process the leader. Returns whether this process ran the ceremony.
pub(super) fn obtain(w: &Want<'_>) -> Result<(Handout, bool), CliError> {
    let client = Client::start(w.paths)?;
    let role = w.profile.role_arn.as_deref().filter(|_| !w.base_only);
    let mut reply = client.get(&w.profile.name, role, w.interactive)?;
    let mut led = false;
    loop {
        reply = match reply {
            Reply::Creds(h) => return Ok((*h, led)),
            Reply::NoSession(msg) => {
                return Err(CliError::new(
                    format!("{msg}, and there is no terminal here for the two-person ceremony"),
                    format!(
                    "run `breakglass unlock {} --reason \"…\"` in a terminal, then run this again",
                    w.profile.name
                ),
                    exit::UNAVAILABLE,
                ))
            }
            Reply::LeadCeremony(lead) => {
                led = true;
                match ceremony(w) {
                    Ok(a) => lead.put_base(
                        &a.session,
                        &a.mfa_serial,
                        &a.password_holder,
                        &a.token_holder,
                        &a.user_arn,
                    )?,
                    Err(e) => {
                        lead.abort(&e.what);
                        return Err(e);
                    }
                }
            }
            Reply::LeadRole {
                lead,
                base,
                password_holder,
                token_holder,
            } => match assume_role(w, &base, &password_holder, &token_holder) {
                Ok((s, arn)) => lead.put_role(role.unwrap_or_default(), &s, &arn)?,
                Err(e) => {
                    lead.abort(&e.what);
                    return Err(e);
                }
            },
        };
    }
}

/// The unlock ceremony on `/dev/tty`.
fn ceremony(w: &Want<'_>) -> Result<unlock::Activation, CliError> {
    let mut prompt = TtyPrompt::open()?;
    prompt.say(&format!(
        "breakglass: profile {:?} is locked; two-person unlock ({}).",
        w.profile.name, w.requested_by
    ));
    let reason = match w.reason {
        Some(r) => r.to_owned(),
        None => prompt.line("Why is the glass broken? (goes to the audit log): ")?,
    };
    let mut card = Card::open(w.reader.or(w.profile.reader.as_deref()))?;
    let req = unlock::Request {
        profile: w.profile,
        paths: w.paths,
        reason: &reason,
        endpoint: endpoint(w.profile),
        now: &ceremony::now,
    };
    let a = runtime()?.block_on(unlock::unlock(&req, &mut card, &mut prompt))?;
    prompt.say(&format!(
        "Session granted to {} and {}: temporary key {}, valid until {}.",
        a.password_holder,
        a.token_holder,
        a.session.access_key_id,
        audit::rfc3339(a.session.expiration),
    ));
    Ok(a)
}

/// AssumeRole into the profile's role with the two-person session, naming both holders.
fn assume_role(
    w: &Want<'_>,
    base: &sts::Session,
    password_holder: &str,
    token_holder: &str,
) -> Result<(sts::Session, String), CliError> {
    // Never longer than the two-person session it comes from (AWS's minimum is 15 min).
    let left = base.expiration.saturating_sub(ceremony::now());
    let r = assume(
        &Assumption {
            profile: w.profile,
            paths: w.paths,
            role_arn: w.profile.role_arn.as_deref().unwrap_or_default(),
            duration_secs: Some(left.clamp(ROLE_MIN_SECS, ROLE_MAX_SECS)),
            purpose: "shell",
        },
        base,
        (password_holder, token_holder),
    )?;
    Ok((r.session, r.assumed_role_arn))
}

/// An AssumeRole made with the two-person session.
pub(super) struct Assumption<'a> {
    pub profile: &'a Profile,
    pub paths: &'a Paths,
    pub role_arn: &'a str,
    pub duration_secs: Option<u64>,
    /// "shell" or "console", for the audit record.
    pub purpose: &'static str,
}

/// Assumes the role with `RoleSessionName` and `SourceIdentity` naming both holders, and
/// audits it; a role session whose record cannot be written is discarded.
pub(super) fn assume(
    a: &Assumption<'_>,
    base: &sts::Session,
    (password_holder, token_holder): (&str, &str),
) -> Result<sts::RoleSession, CliError> {
    let session_name = sts::role_session_name(
        a.profile.role_session_name.as_deref(),
        password_holder,
        token_holder,
    )
    .map_err(|m| CliError::usage(m, "fix role_session_name in the config file"))?;
    let source_identity = sts::source_identity(password_holder, token_holder);
    let signer = Signer {
        access_key_id: &base.access_key_id,
        secret_access_key: &base.secret_access_key,
        session_token: Some(&base.session_token),
    };
    let req = sts::AssumeRole {
        role_arn: a.role_arn,
        session_name: &session_name,
        source_identity: &source_identity,
        duration_secs: a.duration_secs,
    };
    let r = runtime()?.block_on(sts::assume_role(&endpoint(a.profile), &signer, &req));
    let mut fields = Map::new();
    fields.insert("role_arn".into(), Value::String(a.role_arn.to_owned()));
    fields.insert("role_session_name".into(), Value::String(session_name));
    fields.insert("source_identity".into(), Value::String(source_identity));
    fields.insert("for".into(), Value::String(a.purpose.to_owned()));
    let outcome = match &r {
        Ok(rs) => {
            fields.insert(
                "temporary_access_key_id".into(),
                Value::String(rs.session.access_key_id.clone()),
            );
            fields.insert(
                "expiration".into(),
                Value::String(audit::rfc3339(rs.session.expiration)),
            );
            "success".to_owned()
        }
        Err(e) => format!("failure: {e}"),
    };
    let event = audit::Event {
        time: audit::rfc3339(ceremony::now()),
        event: "role assumed".into(),
        profile: a.profile.name.clone(),
        fields,
        outcome,
    };
    audit::append(&a.paths.audit_log(), &event).map_err(|e| {
        CliError::new(
            format!("the role session was discarded: its audit record could not be written: {e}"),
            "fix the audit log's directory, then run the command again",
            exit::FAILURE,
        )
    })?;
    Ok(r?)
}

/// "aws (pid 123)": the process that asked, for the ceremony's first line.
fn requested_by() -> String {
    let ppid = nix::unistd::getppid();
    let name = std::fs::read_to_string(format!("/proc/{ppid}/comm"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    format!("requested by {name}, pid {ppid}")
}

pub(super) fn load(profile: &str) -> Result<(Paths, Profile), CliError> {
    let paths = paths()?;
    let profile = config::load(&paths, profile)?;
    Ok((paths, profile))
}

#[derive(Debug, Args)]
pub struct UnlockArgs {
    /// The profile in the config file.
    profile: String,
    /// Why the glass is broken (goes to the audit log).
    #[arg(long)]
    reason: String,
    /// Also print the credentials as credential_process JSON on stdout (secrets: pipe them).
    #[arg(long)]
    print_json: bool,
    /// Use the reader whose name contains this text (overrides the profile).
    #[arg(long, value_name = "NAME")]
    reader: Option<String>,
}

pub fn unlock_cmd(args: UnlockArgs) -> Result<(), CliError> {
    if args.reason.trim().is_empty() {
        return Err(ceremony::Error::EmptyReason.into());
    }
    let (paths, profile) = load(&args.profile)?;
    harden::no_dumps();
    // The ceremony needs a terminal; say so before anything starts.
    drop(TtyPrompt::open()?);
    let want = Want {
        profile: &profile,
        paths: &paths,
        reason: Some(args.reason.trim()),
        reader: args.reader.as_deref(),
        interactive: true,
        requested_by: "breakglass unlock",
        base_only: false,
    };
    let (h, led) = obtain(&want)?;
    let mut tty = TtyPrompt::open()?;
    if !led {
        tty.say(&format!(
            "Profile {:?} is already unlocked (by {} and {}) until {}; no ceremony needed. `breakglass lock {}` ends it.",
            profile.name,
            h.password_holder,
            h.token_holder,
            audit::rfc3339(h.base_expiration),
            profile.name
        ));
    }
    tty.say(&format!(
        "The agent holds the session for {}{}. Every process of yours can use it until {}:\n  \
         breakglass exec {} -- aws sts get-caller-identity\n  \
         or credential_process = breakglass credential-process {} in ~/.aws/config (see README).\n  \
         `breakglass lock {}` wipes it. Audit: {}",
        h.identity,
        if h.role { " (role session, renewed without a ceremony)" } else { "" },
        audit::rfc3339(h.base_expiration),
        profile.name,
        profile.name,
        profile.name,
        paths.audit_log().display()
    ));
    if args.print_json {
        println!("{}", &*unlock::credential_process_json(&h.session));
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct CredentialProcessArgs {
    /// The breakglass profile (config file), as in `credential_process = breakglass credential-process PROFILE`.
    profile: String,
}

/// For the AWS CLI and SDKs: prints the credential_process JSON on stdout; prompts (if a
/// ceremony is needed) go to `/dev/tty`, never to stdout.
pub fn credential_process_cmd(args: CredentialProcessArgs) -> Result<(), CliError> {
    credential_process(&args.profile)
}

/// `credential-process PROFILE` (also reached without clap, from `main`).
pub fn credential_process(profile: &str) -> Result<(), CliError> {
    let (paths, profile) = load(profile)?;
    // Stays dumpable (unlike `unlock`), so that the agent can read its executable for the
    // audit record: it holds nothing but the credentials it prints for its caller.
    let by = requested_by();
    let want = Want::from_terminal(&profile, &paths, &by);
    let (h, _) = obtain(&want)?;
    println!("{}", &*unlock::credential_process_json(&h.session));
    Ok(())
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The profile.
    profile: String,
    /// The command and its arguments, after `--`.
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

/// Variables that would make an SDK pick other credentials than ours.
const CONFLICTING: &[&str] = &["AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SECURITY_TOKEN"];

fn variables<'a>(
    h: &'a Handout,
    profile: &'a Profile,
    expiration: &'a str,
) -> [(&'static str, &'a str); 7] {
    [
        ("AWS_ACCESS_KEY_ID", &h.session.access_key_id),
        (
            "AWS_SECRET_ACCESS_KEY",
            h.session.secret_access_key.expose_secret(),
        ),
        ("AWS_SESSION_TOKEN", h.session.session_token.expose_secret()),
        ("AWS_CREDENTIAL_EXPIRATION", expiration),
        ("AWS_REGION", &profile.region),
        ("AWS_DEFAULT_REGION", &profile.region),
        ("BREAKGLASS_PROFILE", &profile.name),
    ]
}

/// Runs a command with the credentials in its environment. The process *becomes* the command
/// (execve), so its exit code and signals are the command's own.
pub fn exec_cmd(args: ExecArgs) -> Result<(), CliError> {
    if let Some(outer) = std::env::var_os("BREAKGLASS_PROFILE") {
        return Err(CliError::usage(
            format!(
                "already inside `breakglass exec` for profile {}; nesting would mix credentials",
                outer.to_string_lossy()
            ),
            "exit that shell first, or run the command directly: it already has the credentials",
        ));
    }
    let Some((program, rest)) = args.command.split_first() else {
        return Err(CliError::usage(
            "no command to run",
            format!(
                "give one after `--`, e.g. `breakglass exec {} -- aws sts get-caller-identity`",
                args.profile
            ),
        ));
    };
    let (paths, profile) = load(&args.profile)?;
    let by = format!("breakglass exec {program}");
    let want = Want::from_terminal(&profile, &paths, &by);
    let (h, _) = obtain(&want)?;
    let expiration = audit::rfc3339(h.session.expiration);
    let mut cmd = std::process::Command::new(program);
    cmd.args(rest);
    for v in CONFLICTING {
        cmd.env_remove(v);
    }
    for (k, v) in variables(&h, &profile, &expiration) {
        cmd.env(k, v);
    }
    let err = cmd.exec();
    Err(CliError::new(
        format!("cannot run {program:?}: {err}"),
        "check the command name and that it is on PATH",
        if err.kind() == std::io::ErrorKind::NotFound {
            127
        } else {
            126
        },
    ))
}

#[derive(Debug, Args)]
pub struct EnvArgs {
    /// The profile.
    profile: String,
    /// The shell whose syntax to print.
    #[arg(long, value_enum, default_value = "bash")]
    shell: Shell,
}

/// Prints the variables for `eval`; warns on stderr that they are secrets.
pub fn env_cmd(args: EnvArgs) -> Result<(), CliError> {
    let (paths, profile) = load(&args.profile)?;
    harden::no_dumps();
    let want = Want::from_terminal(&profile, &paths, "breakglass env");
    let (h, _) = obtain(&want)?;
    let expiration = audit::rfc3339(h.session.expiration);
    let text = shell::render(args.shell, &variables(&h, &profile, &expiration))
        .map_err(|m| CliError::new(m, "report this", exit::FAILURE))?;
    eprintln!(
        "breakglass: the variables below are secrets valid until {expiration}: eval them, never paste them into chats, tickets or logs."
    );
    print!("{}", &*text);
    Ok(())
}

#[derive(Debug, Args)]
pub struct LockArgs {
    /// The profile to lock; all profiles when omitted.
    profile: Option<String>,
}

pub fn lock_cmd(args: LockArgs) -> Result<(), CliError> {
    let paths = paths()?;
    match Client::running(&paths) {
        Ok(c) => {
            println!("{}", c.lock(args.profile.as_deref())?);
            Ok(())
        }
        Err(AgentError::NotRunning) => {
            println!("The agent is not running: nothing is unlocked.");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the agent's state as JSON.
    #[arg(long)]
    json: bool,
}

/// The AWS CLI profiles that use breakglass as their credential_process, and any that name
/// a breakglass profile the config lacks.
fn aws_profiles(paths: &Paths) -> Vec<String> {
    let Some(path) = breakglass::aws::config_file::path() else {
        return Vec::new();
    };
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Vec::new();
    };
    let known = config::load_all(paths).unwrap_or_default();
    breakglass::aws::config_file::parse(&text)
        .into_iter()
        .filter_map(|p| {
            let target = p.breakglass_profile?;
            let problem = if known.contains_key(&target) {
                ""
            } else {
                " (no such breakglass profile: fix credential_process or enrol it)"
            };
            Some(format!(
                "{} profile {:?} -> breakglass profile {target:?}{problem}",
                path.display(),
                p.name
            ))
        })
        .collect()
}

pub fn status_cmd(args: StatusArgs) -> Result<(), CliError> {
    let paths = paths()?;
    if !args.json {
        for line in aws_profiles(&paths) {
            println!("{line}");
        }
    }
    let status = match Client::running(&paths) {
        Ok(c) => c.status()?,
        Err(AgentError::NotRunning) => {
            if args.json {
                println!("{{\"running\":false,\"profiles\":[]}}");
            } else {
                println!("The agent is not running: nothing is unlocked.");
            }
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    if args.json {
        println!("{status}");
        return Ok(());
    }
    let s = |v: &Value, k: &str| v[k].as_str().unwrap_or("?").to_owned();
    println!(
        "agent: pid {}, socket {}, memory {}",
        status["pid"],
        s(&status, "socket"),
        if status["memory_locked"].as_bool() == Some(true) {
            "locked (never swapped)".to_owned()
        } else {
            format!("NOT locked: {}", s(&status, "memory_lock_error"))
        }
    );
    let profiles = status["profiles"].as_array().cloned().unwrap_or_default();
    if profiles.is_empty() {
        println!("no profile is unlocked");
    }
    for p in profiles {
        let name = s(&p, "profile");
        if let Some(r) = p.get("running") {
            println!("{name}: {} running in pid {}", s(r, "what"), r["pid"]);
            if p.get("password_holder").is_none() {
                continue;
            }
        }
        println!(
            "{name}: unlocked by {} (password) and {} (token) at {}; session until {}; wiped if idle at {}",
            s(&p, "password_holder"),
            s(&p, "token_holder"),
            s(&p, "activated"),
            s(&p, "expires"),
            s(&p, "idle_wipe"),
        );
        println!("    identity {}", s(&p, "identity"));
        if let Some(r) = p.get("role") {
            println!(
                "    role {} until {}",
                s(r, "assumed_role_arn"),
                s(r, "expires")
            );
        }
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Stay in the foreground (for a systemd user unit: docs/breakglass-agent.service).
    #[arg(long)]
    foreground: bool,
    /// Minutes without a hand-out before a session is wiped (default: the config's
    /// `[agent] idle_timeout`, else 60).
    #[arg(long, value_name = "MINUTES", value_parser = clap::value_parser!(u64).range(1..=1440))]
    idle_timeout: Option<u64>,
    /// Wipe every session and stop the running agent.
    #[arg(long, conflicts_with_all = ["foreground", "idle_timeout"])]
    stop: bool,
}

pub fn agent_cmd(args: AgentArgs) -> Result<(), CliError> {
    let paths = paths()?;
    if args.stop {
        return match Client::running(&paths) {
            Ok(c) => {
                println!("{}", c.stop()?);
                Ok(())
            }
            Err(AgentError::NotRunning) => {
                println!("The agent is not running.");
                Ok(())
            }
            Err(e) => Err(e.into()),
        };
    }
    let options = server::Options {
        foreground: args.foreground,
        idle_timeout_minutes: args.idle_timeout,
    };
    match server::run(paths, options) {
        Ok(()) => Ok(()),
        Err(server::Error::AlreadyRunning) if !args.foreground => Ok(()),
        Err(server::Error::AlreadyRunning) => Err(CliError::new(
            "another agent is already running for this user",
            "use it (`breakglass status`), or stop it with `breakglass agent --stop` first",
            exit::UNAVAILABLE,
        )),
        Err(server::Error::Dir(d)) => Err(CliError::new(d.problem, d.fix, exit::REFUSED)),
        Err(e) => Err(CliError::new(
            e.to_string(),
            "check the agent directory and the config file",
            exit::FAILURE,
        )),
    }
}
