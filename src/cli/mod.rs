//! Command-line interface: argument definitions and one file per command group. Prompts and
//! terminal output live here and nowhere below.

mod agent;
mod ceremony;
mod console;
mod demo;
mod error;
mod prompt;
mod sandbox;
mod token;

use clap::{CommandFactory, Parser, Subcommand};

pub use agent::credential_process;
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
    Demo(demo::DemoArgs),
    /// Activate: both holders open the vault; the agent then holds the short-lived session.
    Unlock(agent::UnlockArgs),
    /// Wipe a profile's session from the agent (all profiles when none is named).
    Lock(agent::LockArgs),
    /// Show what the agent holds: profiles, holders, expiry (never a secret).
    Status(agent::StatusArgs),
    /// Print the session as AWS credential_process JSON (for ~/.aws/config).
    CredentialProcess(agent::CredentialProcessArgs),
    /// Run a command with the session in AWS_* environment variables.
    Exec(agent::ExecArgs),
    /// Print the session as shell variable assignments, for `eval`.
    Env(agent::EnvArgs),
    /// Open the AWS console in a browser as the break-glass role (sign-in URL, 15 minutes).
    Console(console::ConsoleArgs),
    /// Run the agent that holds unlocked sessions (started on demand by `unlock`).
    Agent(agent::AgentArgs),
    /// Enrolment ceremony: program the token, register MFA, seal the access key in a vault.
    Enroll(ceremony::EnrollArgs),
    /// Check the audit log's hash chain.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Inspect and program the OATH accounts on a hardware token.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// The built-in sandbox: a software YubiKey for tests and drills.
    #[command(subcommand)]
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
    Verify,
}

impl Cli {
    pub fn run(self) -> Result<(), CliError> {
        match self.command {
            Command::Demo(args) => demo::demo_cmd(args),
            Command::Unlock(args) => agent::unlock_cmd(args),
            Command::Lock(args) => agent::lock_cmd(args),
            Command::Status(args) => agent::status_cmd(args),
            Command::CredentialProcess(args) => agent::credential_process_cmd(args),
            Command::Exec(args) => agent::exec_cmd(args),
            Command::Env(args) => agent::env_cmd(args),
            Command::Console(args) => console::console_cmd(args),
            Command::Agent(args) => agent::agent_cmd(args),
            Command::Enroll(args) => ceremony::enroll_cmd(args),
            Command::Audit(AuditCommand::Verify) => audit_verify(),
            Command::Token(cmd) => cmd.run(),
            Command::Sandbox(cmd) => cmd.run(),
            Command::Completions { shell } => {
                clap_complete::generate(
                    shell,
                    &mut Cli::command(),
                    "breakglass",
                    &mut std::io::stdout(),
                );
                Ok(())
            }
        }
    }
}

fn audit_verify() -> Result<(), CliError> {
    let paths = breakglass::config::Paths::from_env()?;
    let path = paths.audit_log();
    let n = breakglass::audit::verify(&path).map_err(|e| {
        CliError::new(
            e.to_string(),
            "treat the log as tampered: keep a copy, compare with your off-machine copies, tell the security team",
            error::exit::FAILURE,
        )
    })?;
    println!("{}: {n} records, hash chain intact", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
