//! Command-line interface: argument definitions and one file per command group. Prompts and
//! terminal output live here and nowhere below.

mod error;
mod prompt;
mod sandbox;
mod token;

use clap::{CommandFactory, Parser, Subcommand};

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

impl Cli {
    pub fn run(self) -> Result<(), CliError> {
        match self.command {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
