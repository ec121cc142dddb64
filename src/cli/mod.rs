//! Command-line interface: one file per command, each validating its flags into typed inputs,
//! calling one library function and printing. The terminal (`term`) and the error advice
//! (`error`) are shared; no command file imports another. Prompts and terminal output live here
//! and nowhere below.

// First: the `outln!` and `out!` macros are used by every command below.
#[macro_use]
mod out;

mod agent;
mod audit;
mod console;
mod credential_process;
#[cfg(feature = "sandbox")]
mod demo;
mod drill;
mod enroll;
mod env;
mod error;
mod exec;
mod guardrails;
mod lock;
mod rekey;
mod rotate;
#[cfg(feature = "sandbox")]
mod sandbox;
mod status;
mod term;
mod token;
mod unlock;

use clap::{CommandFactory, Parser, Subcommand};

use breakglass::ceremony::handout::Want;
use breakglass::clock::Clock;
use breakglass::config::{self, Paths, Profile};

pub use credential_process::credential_process;
pub use error::CliError;

/// Two-person break-glass access to AWS.
///
/// The IAM user's long-term key is sealed so that neither the password holder nor the token
/// holder can open it alone; together they get short-lived STS credentials.
#[derive(Debug, Parser)]
#[command(
    name = "breakglass",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole activation on the built-in sandbox (soft token + STS emulator), in seconds.
    #[cfg(feature = "sandbox")]
    Demo(demo::DemoArgs),
    /// Activate: both holders open the vault; the agent then holds the short-lived session.
    Unlock(unlock::UnlockArgs),
    /// Wipe a profile's session from the agent (all profiles when none is named).
    Lock(lock::LockArgs),
    /// Show what the agent holds: profiles, holders, expiry (never a secret).
    Status(status::StatusArgs),
    /// Print the session as AWS credential_process JSON (for ~/.aws/config).
    CredentialProcess(credential_process::CredentialProcessArgs),
    /// Run a command with the session in AWS_* environment variables.
    Exec(exec::ExecArgs),
    /// Print the session as shell variable assignments, for `eval`.
    Env(env::EnvArgs),
    /// Open the AWS console in a browser as the break-glass role (sign-in URL, 15 minutes).
    Console(console::ConsoleArgs),
    /// Run the agent that holds unlocked sessions (started on demand by `unlock`).
    Agent(agent::AgentArgs),
    /// Enrolment ceremony: program the token, register MFA, seal the access key in a vault.
    Enroll(enroll::EnrollArgs),
    /// Key rotation: a new access key sealed by both holders, the old one retired on the
    /// policy's days (`--finish`); `--check` says what is due.
    Rotate(rotate::RotateArgs),
    /// Change the vault's custodians, a custodian's passphrase, or remove a token slot,
    /// without touching AWS (two or more people, and a token).
    Rekey(rekey::RekeyArgs),
    /// The quarterly drill: a two-person activation, then the break-glass user and its role
    /// checked in every account (AssumeRole, trust policy, session length), and a report;
    /// nothing is handed out. `--last` shows the last drill.
    Drill(drill::DrillArgs),
    /// Write the AWS side for the profile's break-glass users: alert rules and topic, the
    /// member accounts' role and rule (a StackSet), the users' policy, SCPs, and a README.
    Guardrails(guardrails::GuardrailsArgs),
    /// Check the audit log's hash chain.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Inspect and program the OATH accounts on a hardware token.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// The built-in sandbox: a software YubiKey for tests and drills.
    #[command(subcommand)]
    #[cfg(feature = "sandbox")]
    Sandbox(sandbox::SandboxCommand),
    /// Print a shell completion script to standard output.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Verify that no record was edited, removed or reordered.
    Verify {
        /// A head printed earlier (`audit head`) and kept off this machine: the log must still
        /// hold every record up to it, unchanged (detects cutting back and rewriting).
        #[arg(long, value_name = "HASH")]
        expect_head: Option<String>,
    },
    /// Print the chain's head (the last record's hash) and the record count, to keep off this
    /// machine (a ticket, a chat) as an anchor for `audit verify --expect-head`.
    Head,
}

impl Cli {
    pub fn run(self) -> Result<(), CliError> {
        match self.command {
            #[cfg(feature = "sandbox")]
            Command::Demo(args) => demo::demo_cmd(args),
            Command::Unlock(args) => unlock::unlock_cmd(args),
            Command::Lock(args) => lock::lock_cmd(args),
            Command::Status(args) => status::status_cmd(args),
            Command::CredentialProcess(args) => credential_process::credential_process_cmd(args),
            Command::Exec(args) => exec::exec_cmd(args),
            Command::Env(args) => env::env_cmd(args),
            Command::Console(args) => console::console_cmd(args),
            Command::Agent(args) => agent::agent_cmd(args),
            Command::Enroll(args) => enroll::enroll_cmd(args),
            Command::Rotate(args) => rotate::rotate_cmd(args),
            Command::Rekey(args) => rekey::rekey_cmd(args),
            Command::Drill(args) => drill::drill_cmd(args),
            Command::Guardrails(args) => guardrails::guardrails_cmd(args),
            Command::Audit(AuditCommand::Verify { expect_head }) => {
                audit::verify_cmd(expect_head.as_deref())
            }
            Command::Audit(AuditCommand::Head) => audit::head_cmd(),
            Command::Token(cmd) => cmd.run(),
            #[cfg(feature = "sandbox")]
            Command::Sandbox(cmd) => cmd.run(),
            Command::Completions { shell } => {
                // Made in memory: clap_complete panics when its writer fails (a closed pipe).
                let mut script = Vec::new();
                clap_complete::generate(shell, &mut Cli::command(), "breakglass", &mut script);
                out!("{}", String::from_utf8_lossy(&script))
            }
        }
    }
}

/// `--factor` of `enroll` and `demo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FactorArg {
    Piv,
    Fido2,
    Oath,
}

/// The config and state paths of this user.
fn paths() -> Result<Paths, CliError> {
    Paths::from_env().map_err(CliError::from)
}

/// The paths and the named profile.
fn load(profile: &str) -> Result<(Paths, Profile), CliError> {
    let paths = paths()?;
    let profile = config::load(&paths, profile)?;
    Ok((paths, profile))
}

/// A hand-out for a command that may lead the ceremony when a person is at the terminal (the
/// reason is then asked there).
fn want<'a>(
    profile: &'a Profile,
    paths: &'a Paths,
    reader: Option<&'a str>,
    requested_by: &'a str,
) -> Want<'a> {
    Want {
        profile,
        paths,
        reason: None,
        ticket: None,
        reader,
        interactive: term::has_tty(),
        fresh: false,
        requested_by,
        base_only: false,
        clock: clock(),
    }
}

/// The arguments with `rekey … --add-token …` spelt as `enroll … --add-token …`: adding a
/// token is a rekey, and `enroll --add-token` (the older spelling) stays the one
/// implementation, with its flags.
pub fn respelled(args: impl Iterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = args.collect();
    if args.get(1).is_some_and(|c| c == "rekey") && args.iter().any(|a| a == "--add-token") {
        args[1] = "enroll".into();
    }
    args
}

/// Writes a ceremony's transcript to `path` and says where (or why not: the ceremony's outcome
/// stands either way, and the audit log holds the same facts).
fn save_transcript(
    path: &std::path::Path,
    t: &breakglass::ceremony::transcript::Transcript,
    tty: &mut term::TtyPrompt,
) {
    match t.write(path) {
        Ok(()) => tty.say(&format!("Transcript for the witnesses: {}", path.display())),
        Err(e) => tty.say(&format!(
            "Warning: the transcript could not be written to {} ({e}); the audit log holds the same facts.",
            path.display()
        )),
    }
}

/// Refuses a `--transcript` path whose folder does not exist, before the ceremony begins.
fn check_transcript_path(path: Option<&std::path::Path>) -> Result<(), CliError> {
    let Some(t) = path else { return Ok(()) };
    match t.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) if !d.is_dir() => Err(CliError::usage(
            format!("the transcript's folder {} does not exist", d.display()),
            "create it, or name a file in an existing folder with --transcript",
        )),
        _ => Ok(()),
    }
}

/// The environment variable that moves every command's clock ahead (see [`clock`]).
#[cfg(feature = "sandbox")]
pub const CLOCK_AHEAD_VAR: &str = "BREAKGLASS_CLOCK_AHEAD_SECS";

/// The clock of every command: the system clock; in builds with the sandbox, moved ahead by
/// [`CLOCK_AHEAD_VAR`] seconds when it is set. A test skips to a fresh MFA window by moving
/// this clock and the sandbox emulator's (`Sts::set_clock_offset`) together, instead of
/// waiting for the window. Against AWS a clock that is ahead only gets codes refused (AWS
/// takes the adjacent 30 s windows, no further), so the variable can make an activation fail
/// and nothing else.
#[cfg(feature = "sandbox")]
fn clock() -> &'static dyn Clock {
    static CLOCK: std::sync::OnceLock<breakglass::clock::SkewedClock> = std::sync::OnceLock::new();
    CLOCK.get_or_init(|| breakglass::clock::SkewedClock {
        ahead_secs: std::env::var(CLOCK_AHEAD_VAR)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    })
}

/// The clock of every command: the system clock.
#[cfg(not(feature = "sandbox"))]
fn clock() -> &'static dyn Clock {
    &breakglass::clock::SystemClock
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Secrets are never taken from arguments: every option or argument whose name speaks of
    /// a secret is a switch (the secret comes from stdin or the terminal) or takes a name.
    #[test]
    fn no_argument_takes_a_secret() {
        fn walk(cmd: &clap::Command, path: &str, found: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str().to_lowercase();
                let secretish = [
                    "secret",
                    "passphrase",
                    "password",
                    "pin",
                    "puk",
                    "seed",
                    "token_value",
                ]
                .iter()
                .any(|w| id.contains(w));
                let takes_value = arg.get_num_args().is_some_and(|n| n.takes_values())
                    && !matches!(
                        arg.get_action(),
                        clap::ArgAction::SetTrue | clap::ArgAction::SetFalse
                    );
                let names_someone = arg
                    .get_value_names()
                    .is_some_and(|v| v.iter().all(|n| n.as_str() == "NAME"));
                if secretish && takes_value && !names_someone {
                    found.push(format!("{path} --{id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), found);
            }
        }
        let mut found = Vec::new();
        let mut cmd = Cli::command();
        cmd.build();
        walk(&cmd, "breakglass", &mut found);
        assert!(found.is_empty(), "arguments that take a secret: {found:?}");
    }

    #[test]
    fn rekey_add_token_is_the_enrolment_of_a_backup_token() {
        let spelt = |v: &[&str]| -> Vec<String> {
            respelled(v.iter().map(std::ffi::OsString::from))
                .into_iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(
            spelt(&[
                "breakglass",
                "rekey",
                "prod",
                "--add-token",
                "--reader",
                "B"
            ]),
            [
                "breakglass",
                "enroll",
                "prod",
                "--add-token",
                "--reader",
                "B"
            ]
        );
        assert_eq!(
            spelt(&["breakglass", "rekey", "prod", "--remove-token", "1"]),
            ["breakglass", "rekey", "prod", "--remove-token", "1"]
        );
        let parsed = Cli::try_parse_from(spelt(&[
            "breakglass",
            "rekey",
            "prod",
            "--add-token",
            "--reader",
            "B",
            "--from-reader",
            "A",
            "--create-mfa",
            "--user",
            "u",
        ]));
        assert!(matches!(parsed.map(|c| c.command), Ok(Command::Enroll(_))));
    }
}
