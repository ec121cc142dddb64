//! `breakglass credential-process PROFILE`: the `credential_process` of `~/.aws/config`. JSON on
//! stdout; a ceremony, when one is needed, on `/dev/tty`.

use clap::Args;

use breakglass::ceremony::{handout, unlock};

use super::error::CliError;
use super::term::TtyPrompt;
use super::{load, want};

#[derive(Debug, Args)]
pub struct CredentialProcessArgs {
    /// The breakglass profile (config file), as in `credential_process = breakglass credential-process PROFILE`.
    profile: String,
    /// Use the token in the reader whose name contains this text (overrides the profile's
    /// `reader`; without either, the token enrolled in the vault is found among those present).
    #[arg(long, value_name = "NAME")]
    reader: Option<String>,
}

/// For the AWS CLI and SDKs: prints the credential_process JSON on stdout; prompts (if a
/// ceremony is needed) go to `/dev/tty`, never to stdout.
pub fn credential_process_cmd(args: CredentialProcessArgs) -> Result<(), CliError> {
    credential_process(&args.profile, args.reader.as_deref())
}

/// `credential-process PROFILE` (also reached without clap, from `main`).
pub fn credential_process(profile: &str, reader: Option<&str>) -> Result<(), CliError> {
    let (paths, profile) = load(profile)?;
    // Dumpable until the agent has read its executable for the audit record (`Seen`), then
    // not, before any secret arrives or a ceremony led here starts (agent::client::Client::get).
    let by = requested_by();
    let (h, _) = handout::obtain(&want(&profile, &paths, reader, &by), &TtyPrompt::boxed)?;
    outln!("{}", &*unlock::credential_process_json(&h.session))?;
    Ok(())
}

/// "aws (pid 123)": the process that asked, for the ceremony's first line.
fn requested_by() -> String {
    let ppid = nix::unistd::getppid();
    let name = std::fs::read_to_string(format!("/proc/{ppid}/comm"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    format!("requested by {name}, pid {ppid}")
}
