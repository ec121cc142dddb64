//! `breakglass status`: what the agent holds (profiles, holders, expiry; never a secret) and the
//! AWS CLI profiles that point at breakglass.

use clap::Args;

use breakglass::agent::client::{Client, Error as AgentError};
use breakglass::ceremony::names::printable;
use breakglass::config::{self, Paths};

use super::error::CliError;
use super::paths;

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
            outln!("{line}")?;
        }
    }
    let status = match Client::running(&paths) {
        Ok(c) => c.status()?,
        Err(AgentError::NotRunning) => {
            if args.json {
                outln!("{{\"running\":false,\"profiles\":[]}}")?;
            } else {
                outln!("The agent is not running: nothing is unlocked.")?;
            }
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    if args.json {
        let text =
            serde_json::to_string(&status).map_err(|e| CliError::unexpected(e.to_string()))?;
        outln!("{text}")?;
        return Ok(());
    }
    // Everything below comes from the agent, which took it from whichever process of this
    // user led a ceremony: printed escaped, so no name can carry an escape sequence here.
    outln!(
        "agent: pid {}, socket {}, memory {}",
        status.pid,
        printable(&status.socket),
        match &status.memory_lock_error {
            None if status.memory_locked => "locked (never swapped)".to_owned(),
            e => format!("NOT locked: {}", printable(e.as_deref().unwrap_or("?"))),
        }
    )?;
    if status.profiles.is_empty() {
        outln!("no profile is unlocked")?;
    }
    for p in &status.profiles {
        let name = printable(&p.profile);
        if let Some(r) = &p.running {
            outln!("{name}: {} running in pid {}", printable(&r.what), r.pid)?;
        }
        let Some(b) = &p.session else {
            continue;
        };
        outln!(
            "{name}: unlocked by {} (password) and {} (token) at {}; session until {}; wiped if idle at {}",
            printable(&b.password_holder),
            printable(&b.token_holder),
            printable(&b.activated),
            printable(&b.expires),
            printable(&b.idle_wipe),
        )?;
        outln!("    identity {}", printable(&b.identity))?;
        if let Some(r) = &p.role {
            outln!(
                "    role {} until {}",
                printable(&r.assumed_role_arn),
                printable(&r.expires)
            )?;
        }
    }
    Ok(())
}
