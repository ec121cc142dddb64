//! `breakglass console`: the AWS console in a browser, from the agent's two-person session.
//!
//! session (with MFA, from the agent) → AssumeRole into the break-glass role (names of both
//! holders) → federation `getSigninToken` → `Action=login` URL → browser.

use clap::Args;

use breakglass::audit;
use breakglass::aws::console::{self, Partition};
use breakglass::ceremony::console::{make_url, SigninRequest};
use breakglass::ceremony::handout::{self, Want};
use breakglass::ceremony::names::printable;
use breakglass::config::{self, Profile};

use super::error::{exit, CliError};
use super::term::{open_browser, TtyPrompt};
use super::{load, want};

#[derive(Debug, Args)]
pub struct ConsoleArgs {
    /// The profile whose unlocked session signs in.
    profile: String,
    /// Account of the role to open (with --role); default: the profile's role_arn.
    #[arg(
        long,
        value_name = "ID",
        requires = "role",
        conflicts_with = "role_arn"
    )]
    account: Option<String>,
    /// Name of the role in --account.
    #[arg(long, value_name = "NAME", requires = "account")]
    role: Option<String>,
    /// The role to open, as an ARN.
    #[arg(long, value_name = "ARN")]
    role_arn: Option<String>,
    /// Console page to land on (https, on the partition's console).
    #[arg(long, value_name = "URL")]
    destination: Option<String>,
    /// Use the regional sign-in endpoint and console of this region.
    #[arg(long)]
    region: Option<String>,
    /// Print the sign-in URL on stdout instead of opening a browser (it is a secret).
    #[arg(long)]
    print: bool,
    /// Open the URL with this command (the URL is its last argument) instead of the system
    /// browser.
    #[arg(long, value_name = "CMD", conflicts_with = "print")]
    browser: Option<String>,
    /// The federation endpoint (tests, the sandbox's sign-in emulator).
    #[arg(long, value_name = "URL")]
    signin_endpoint: Option<String>,
    /// Use the token in the reader whose name contains this text (overrides the profile's
    /// `reader`; without either, the token enrolled in the vault is found among those present).
    #[arg(long, value_name = "NAME")]
    reader: Option<String>,
}

fn role_arn(
    args: &ConsoleArgs,
    profile: &Profile,
    partition: Partition,
) -> Result<String, CliError> {
    let arn = match (&args.role_arn, &args.account, &args.role, &profile.role_arn) {
        (Some(arn), ..) => arn.clone(),
        (None, Some(account), Some(role), _) => {
            format!("arn:{}:iam::{account}:role/{role}", partition.arn_name())
        }
        (None, None, None, Some(arn)) => arn.clone(),
        _ => {
            return Err(CliError::usage(
                format!(
                    "profile {} names no role, and the console needs one: AWS's sign-in refuses the two-person session itself",
                    profile.name
                ),
                "pass --role-arn ARN (or --account ID --role NAME), or add role_arn to the profile",
            ))
        }
    };
    config::check_role_arn(&arn).map_err(|m| {
        CliError::usage(
            m.to_string(),
            "pass the role as arn:aws:iam::ACCOUNT:role/NAME, or --account ID --role NAME",
        )
    })?;
    Ok(arn)
}

pub fn console_cmd(args: ConsoleArgs) -> Result<(), CliError> {
    let (paths, profile) = load(&args.profile)?;
    let region = args.region.as_deref();
    let partition = Partition::of_region(region.unwrap_or(&profile.region));
    let role_arn = role_arn(&args, &profile, partition)?;
    let destination = match &args.destination {
        Some(d) => {
            console::check_destination(d, partition).map_err(|m| {
                CliError::usage(
                    m.to_string(),
                    format!(
                        "pass a console page such as {}",
                        console::console_home(partition, region)
                    ),
                )
            })?;
            d.clone()
        }
        None => console::console_home(partition, region),
    };
    let federation = match &args.signin_endpoint {
        Some(e) => {
            config::check_endpoint(e).map_err(|m| {
                CliError::usage(
                    m.to_string(),
                    "pass the federation endpoint, e.g. https://signin.aws.amazon.com/federation",
                )
            })?;
            e.clone()
        }
        None => console::federation_endpoint(partition, region),
    };
    if let Some(cmd) = &args.browser {
        check_browser(cmd, &profile.name)?;
    }
    // Non-dumpable from the agent's `Seen` on, before any secret (agent::client::Client::get).
    let want = Want {
        base_only: true,
        ..want(
            &profile,
            &paths,
            args.reader.as_deref(),
            "breakglass console",
        )
    };
    let (h, _) = handout::obtain(&want, &TtyPrompt::boxed)?;
    let req = SigninRequest {
        profile: &profile,
        paths: &paths,
        role_arn: &role_arn,
        federation: &federation,
        destination: &destination,
        clock: super::clock(),
        warn: &|w| eprintln!("breakglass: {w}"),
    };
    let signed = make_url(&req, &h.session, (&h.password_holder, &h.token_holder))?;
    eprintln!(
        "breakglass: console sign-in as {} (for {} and {}).\n  The link works once, until {} (15 minutes); it is a secret.\n  The console session ends at {} (with the role session). For a new one, run `breakglass console {}` again: no ceremony is needed until the unlock ends at {}.",
        signed.assumed_role_arn,
        printable(&h.password_holder),
        printable(&h.token_holder),
        audit::rfc3339(signed.link_expires),
        audit::rfc3339(signed.console_ends),
        profile.name,
        audit::rfc3339(h.session.expiration),
    );
    if args.print {
        outln!("{}", signed.url.as_str())?;
        return Ok(());
    }
    open_browser(args.browser.as_deref(), &signed.url, &profile.name)
}

/// `--browser CMD` must name a program that exists, checked before a sign-in token is spent.
fn check_browser(cmd: &str, profile: &str) -> Result<(), CliError> {
    let program = cmd.split_whitespace().next().unwrap_or("");
    let found = if program.contains('/') {
        std::path::Path::new(program).is_file()
    } else {
        std::env::var_os("PATH")
            .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
    };
    if found {
        return Ok(());
    }
    Err(CliError::new(
        format!("no browser could be opened: {program:?} was not found"),
        format!(
            "check --browser, or run `breakglass console {profile} --print` and paste the link into a browser (only there: it is a secret)"
        ),
        exit::UNAVAILABLE,
    ))
}
