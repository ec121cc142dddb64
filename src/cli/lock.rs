//! `breakglass lock [PROFILE]`: wipe a session (or all of them) from the agent.

use clap::Args;

use breakglass::agent::client::{Client, Error as AgentError};

use super::error::CliError;
use super::paths;

#[derive(Debug, Args)]
pub struct LockArgs {
    /// The profile to lock; all profiles when omitted.
    profile: Option<String>,
}

pub fn lock_cmd(args: LockArgs) -> Result<(), CliError> {
    let paths = paths()?;
    match Client::running(&paths) {
        Ok(c) => {
            outln!("{}", c.lock(args.profile.as_deref())?)?;
            Ok(())
        }
        Err(AgentError::NotRunning) => {
            outln!("The agent is not running: nothing is unlocked.")?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}
