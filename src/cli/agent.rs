//! `breakglass agent`: run (or stop) the per-user agent that holds unlocked sessions.

use clap::Args;

use breakglass::agent::client::{Client, Error as AgentError};
use breakglass::agent::server;

use super::error::{exit, CliError};
use super::paths;

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
                outln!("{}", c.stop()?)?;
                Ok(())
            }
            Err(AgentError::NotRunning) => {
                outln!("The agent is not running.")?;
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
