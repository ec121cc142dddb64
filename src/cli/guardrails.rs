//! `breakglass guardrails PROFILE`: writes the AWS side of the profile's break-glass access
//! (CloudFormation templates, JSON policies, a README saying what goes where).

use std::path::PathBuf;

use clap::Args;

use breakglass::audit::Log;
use breakglass::guardrails::{self, Format, Input};

use super::error::{exit, CliError};
use super::load;

/// The alert topic's name when the profile's `[notify.sns]` names none in the users' account.
const DEFAULT_TOPIC: &str = "breakglass-alerts";
/// The member accounts' alert rule's name when the profile sets no `drill_rule`.
const DEFAULT_RULE: &str = "breakglass-role-use";
/// The role's name when the profile sets neither `drill_role` nor `role_arn`.
const DEFAULT_ROLE: &str = "BreakGlass";

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum FormatArg {
    /// CloudFormation templates (YAML), the SCPs and the README.
    Cloudformation,
    /// Plain JSON policies, the SCPs and the README.
    Json,
    /// Everything.
    All,
}

#[derive(Debug, Args)]
pub struct GuardrailsArgs {
    /// The profile whose break-glass users the guardrails are for.
    profile: String,
    /// The directory to write to (made if missing; files of the same names are replaced).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// What to write.
    #[arg(long, value_enum, default_value = "all")]
    format: FormatArg,
    /// The break-glass user's ARN (default: the one the profile's enrolment recorded in the
    /// audit log). The profile's drill_other_users are added.
    #[arg(long, value_name = "ARN")]
    user_arn: Option<String>,
    /// The role that deploys the stacks in member accounts (StackSet execution), the only one
    /// the member SCP lets change the role and the rule; `*` may end it.
    #[arg(long, value_name = "NAME", default_value = "stacksets-exec-*")]
    deployer_role: String,
    /// The role the platform team operates the break-glass account with.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "OrganizationAccountAccessRole"
    )]
    operator_role: String,
}

pub fn guardrails_cmd(args: GuardrailsArgs) -> Result<(), CliError> {
    let (paths, profile) = load(&args.profile)?;
    let user = match args.user_arn {
        Some(arn) => arn,
        None => enrolled_user(&paths.audit_log(), &profile.name)?,
    };
    let mut users = vec![user];
    for other in &profile.drill.other_users {
        if !users.contains(other) {
            users.push(other.clone());
        }
    }
    let role_name = profile
        .drill
        .role
        .clone()
        .or_else(|| {
            profile
                .role_arn
                .as_deref()
                .and_then(|a| a.rsplit('/').next())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| DEFAULT_ROLE.to_owned());
    let account = users[0].split(':').nth(4).unwrap_or_default().to_owned();
    let topic_name = profile
        .notify
        .sns
        .as_ref()
        .filter(|s| s.topic_arn.split(':').nth(4) == Some(account.as_str()))
        .and_then(|s| s.topic_arn.rsplit(':').next())
        .unwrap_or(DEFAULT_TOPIC)
        .to_owned();
    let input = Input {
        profile: profile.name.clone(),
        users,
        role_name,
        topic_name,
        rule_name: profile
            .drill
            .rule
            .clone()
            .unwrap_or_else(|| DEFAULT_RULE.to_owned()),
        max_session_secs: profile.drill.max_session_secs,
        deployer_role: args.deployer_role,
        operator_role: args.operator_role,
    };
    let format = match args.format {
        FormatArg::Cloudformation => Format::Cloudformation,
        FormatArg::Json => Format::Json,
        FormatArg::All => Format::All,
    };
    let files = guardrails::render(&input, format).map_err(|e| {
        CliError::usage(
            format!("the guardrails of profile {:?} cannot be written: {e}", profile.name),
            "fix the setting named (the config's profile, or --user-arn, --deployer-role, --operator-role) and run it again",
        )
    })?;
    let dir = args
        .out
        .unwrap_or_else(|| PathBuf::from(format!("breakglass-guardrails-{}", profile.name)));
    for f in &files {
        let path = dir.join(f.path);
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| breakglass::files::write_document(&path, f.text.as_bytes()));
        written.map_err(|e| {
            CliError::new(
                format!("cannot write {}: {e}", path.display()),
                "choose another --out directory, one you can write to",
                exit::FAILURE,
            )
        })?;
    }
    outln!(
        "Wrote the guardrails of profile {} for {} to {}:",
        profile.name,
        input.users.join(", "),
        dir.display()
    )?;
    for f in &files {
        outln!("  {}", f.path)?;
    }
    outln!(
        "Read {} first: it says where each piece is deployed, and in what order.",
        dir.join("README.md").display()
    )?;
    Ok(())
}

/// The IAM user the profile's last successful enrolment recorded.
fn enrolled_user(log: &std::path::Path, profile: &str) -> Result<String, CliError> {
    let found = Log::new(log)
        .last("enrolment", profile, true)
        .map_err(|e| {
            CliError::new(
                format!("the audit log cannot be read: {e}"),
                "give the break-glass user with --user-arn arn:aws:iam::ACCOUNT:user/NAME",
                exit::FAILURE,
            )
        })?;
    found
        .as_ref()
        .and_then(|r| r.get("user_arn"))
        .and_then(|v| v.as_str())
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| {
            CliError::usage(
                format!("no IAM user is known yet for profile {profile:?}: its enrolment is not in this machine's audit log"),
                "enrol the profile first (breakglass enroll), or give the user with --user-arn arn:aws:iam::ACCOUNT:user/NAME",
            )
        })
}
