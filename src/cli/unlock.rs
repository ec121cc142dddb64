//! `breakglass unlock PROFILE --reason …`: the two-person activation; the agent then holds the
//! session.

use clap::Args;

use breakglass::audit;
use breakglass::ceremony::handout::{self, Want};
use breakglass::ceremony::names::printable;
use breakglass::ceremony::{unlock, Error as CError};

use super::error::CliError;
use super::term::TtyPrompt;
use super::{load, want};

#[derive(Debug, Args)]
pub struct UnlockArgs {
    /// The profile in the config file.
    profile: String,
    /// Why the glass is broken (goes to the audit log).
    #[arg(long)]
    reason: String,
    /// The incident's or change's ticket (goes to the audit log and the notices); asked when
    /// the profile has require_ticket and none is given.
    #[arg(long, value_name = "ID")]
    ticket: Option<String>,
    /// Also print the credentials as credential_process JSON on stdout (secrets: pipe them).
    #[arg(long)]
    print_json: bool,
    /// Use the reader whose name contains this text (overrides the profile).
    #[arg(long, value_name = "NAME")]
    reader: Option<String>,
}

pub fn unlock_cmd(args: UnlockArgs) -> Result<(), CliError> {
    if args.reason.trim().is_empty() {
        return Err(CError::EmptyReason.into());
    }
    let (paths, profile) = load(&args.profile)?;
    // Non-dumpable from the agent's `Seen` on, before any secret (agent::client::Client::get).
    // The ceremony needs a terminal; say so before anything starts.
    drop(TtyPrompt::open()?);
    let want = Want {
        reason: Some(args.reason.trim()),
        ticket: args.ticket.as_deref(),
        interactive: true,
        fresh: true,
        ..want(
            &profile,
            &paths,
            args.reader.as_deref(),
            "breakglass unlock",
        )
    };
    let (h, led) = handout::obtain(&want, &TtyPrompt::boxed)?;
    let mut tty = TtyPrompt::open()?;
    if !led {
        tty.say(&format!(
            "Profile {:?} is already unlocked (by {} and {}) until {}; no ceremony needed. `breakglass lock {}` ends it.",
            profile.name,
            printable(&h.password_holder),
            printable(&h.token_holder),
            audit::rfc3339(h.base_expiration),
            profile.name
        ));
    }
    tty.say(&format!(
        "The agent holds the session for {}{}. Every process of yours can use it until {}:\n  \
         breakglass exec {} -- aws sts get-caller-identity\n  \
         or credential_process = breakglass credential-process {} in ~/.aws/config (see README).\n  \
         `breakglass lock {}` wipes it. Audit: {}",
        printable(&h.identity),
        if h.role { " (role session, renewed without a ceremony)" } else { "" },
        audit::rfc3339(h.base_expiration),
        profile.name,
        profile.name,
        profile.name,
        paths.audit_log().display()
    ));
    if args.print_json {
        outln!("{}", &*unlock::credential_process_json(&h.session))?;
    }
    Ok(())
}
