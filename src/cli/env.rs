//! `breakglass env PROFILE --shell …`: the session as shell variable assignments, for `eval`.

use clap::Args;

use breakglass::audit;
use breakglass::ceremony::handout;
use breakglass::shell::{self, Shell};

use super::error::CliError;
use super::term::TtyPrompt;
use super::{load, want};

#[derive(Debug, Args)]
pub struct EnvArgs {
    /// The profile.
    profile: String,
    /// Use the token in the reader whose name contains this text (overrides the profile's
    /// `reader`; without either, the token enrolled in the vault is found among those present).
    #[arg(long, value_name = "NAME")]
    reader: Option<String>,
    /// The shell whose syntax to print.
    #[arg(long, value_enum, default_value = "bash")]
    shell: Shell,
}

/// Prints the variables for `eval`; warns on stderr that they are secrets.
pub fn env_cmd(args: EnvArgs) -> Result<(), CliError> {
    let (paths, profile) = load(&args.profile)?;
    // Non-dumpable from the agent's `Seen` on, before any secret (agent::client::Client::get).
    let want = want(&profile, &paths, args.reader.as_deref(), "breakglass env");
    let (h, _) = handout::obtain(&want, &TtyPrompt::boxed)?;
    let expiration = audit::rfc3339(h.session.expiration);
    let text = shell::render(args.shell, &handout::variables(&h, &profile, &expiration))
        .map_err(|e| CliError::unexpected(e.to_string()))?;
    eprintln!(
        "breakglass: the variables below are secrets valid until {expiration}: eval them, never paste them into chats, tickets or logs."
    );
    out!("{}", &*text)?;
    Ok(())
}
