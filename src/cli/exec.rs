//! `breakglass exec PROFILE -- COMMAND …`: the command runs with the session in `AWS_*`
//! variables, and becomes this process (its exit code and signals are its own).

use std::os::unix::process::CommandExt;

use clap::Args;

use breakglass::audit;
use breakglass::ceremony::handout;

use super::error::CliError;
use super::term::TtyPrompt;
use super::{load, want};

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The profile.
    profile: String,
    /// Use the token in the reader whose name contains this text (overrides the profile's
    /// `reader`; without either, the token enrolled in the vault is found among those present).
    #[arg(long, value_name = "NAME")]
    reader: Option<String>,
    /// The command and its arguments, after `--`.
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
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
    let (h, _) = handout::obtain(
        &want(&profile, &paths, args.reader.as_deref(), &by),
        &TtyPrompt::boxed,
    )?;
    let expiration = audit::rfc3339(h.session.expiration);
    let mut cmd = std::process::Command::new(program);
    cmd.args(rest);
    for v in handout::CONFLICTING_VARIABLES {
        cmd.env_remove(v);
    }
    for (k, v) in handout::variables(&h, &profile, &expiration) {
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
