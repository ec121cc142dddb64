//! `breakglass console`: the AWS console in a browser, from the agent's two-person session.
//!
//! session (with MFA, from the agent) → AssumeRole into the break-glass role (names of both
//! holders) → federation `getSigninToken` → `Action=login` URL → browser.

use std::process::{Command, Stdio};

use clap::Args;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use breakglass::audit;
use breakglass::aws::console::{self, Partition, SIGNIN_TOKEN_LIFETIME_SECS};
use breakglass::aws::sts;
use breakglass::ceremony;
use breakglass::config::{self, Paths, Profile};

use super::agent::{assume, load, obtain, Assumption, Want};
use super::error::{exit, CliError};

/// The Issuer of the sign-in URL: where the console sends people whose session ended.
const ISSUER: &str = "https://github.com/breakglass/breakglass#console";

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
}

/// A sign-in URL and what it grants.
pub struct SigninUrl {
    pub url: Zeroizing<String>,
    pub assumed_role_arn: String,
    pub link_expires: u64,
    pub console_ends: u64,
}

/// Where a sign-in URL is made, and for what.
pub struct SigninRequest<'a> {
    pub profile: &'a Profile,
    pub paths: &'a Paths,
    pub role_arn: &'a str,
    pub federation: &'a str,
    pub destination: &'a str,
    pub now: u64,
}

/// AssumeRole with the two-person session, a sign-in token for it, the login URL; audited.
pub fn make_url(
    req: &SigninRequest<'_>,
    base: &sts::Session,
    holders: (&str, &str),
) -> Result<SigninUrl, CliError> {
    let SigninRequest {
        profile,
        paths,
        role_arn,
        federation,
        destination,
        now,
    } = *req;
    // No DurationSeconds and no SessionDuration: AWS's federation endpoint refuses either for
    // role sessions made with temporary credentials. The role session lasts AWS's default
    // hour, and the console session with it.
    let role = assume(
        &Assumption {
            profile,
            paths,
            role_arn,
            duration_secs: None,
            purpose: "console",
        },
        base,
        holders,
    )?;
    let token = console::get_signin_token(federation, &role.session).map_err(|e| {
        let next = match &e {
            console::Error::Unreachable { .. } => {
                "check the network (the sign-in endpoint is HTTPS on port 443) and --signin-endpoint"
            }
            console::Error::Refused { .. } => {
                "check that the role may be used for console sign-in; try `breakglass console` again in a minute"
            }
            _ => "check --signin-endpoint: it must be the federation endpoint (…/federation)",
        };
        CliError::new(e.to_string(), next, exit::UNAVAILABLE)
    })?;
    let url = console::login_url(federation, ISSUER, destination, &token);
    drop(token);
    let signed = SigninUrl {
        url,
        assumed_role_arn: role.assumed_role_arn,
        link_expires: now + SIGNIN_TOKEN_LIFETIME_SECS,
        console_ends: role.session.expiration,
    };
    let account = role_arn.split(':').nth(4).unwrap_or("").to_owned();
    let fields = Map::from_iter([
        ("role_arn".into(), Value::String(role_arn.to_owned())),
        ("account".into(), Value::String(account)),
        (
            "assumed_role_arn".into(),
            Value::String(signed.assumed_role_arn.clone()),
        ),
        (
            "password_holder".into(),
            Value::String(holders.0.to_owned()),
        ),
        ("token_holder".into(), Value::String(holders.1.to_owned())),
        (
            "link_expires".into(),
            Value::String(audit::rfc3339(signed.link_expires)),
        ),
        (
            "console_session_ends".into(),
            Value::String(audit::rfc3339(signed.console_ends)),
        ),
    ]);
    let event = audit::Event {
        time: audit::rfc3339(now),
        event: "console sign-in URL".into(),
        profile: profile.name.clone(),
        fields,
        outcome: "success".into(),
    };
    audit::append(&paths.audit_log(), &event).map_err(|e| {
        CliError::new(
            format!("the sign-in URL was discarded: its audit record could not be written: {e}"),
            "fix the audit log's directory, then run the command again",
            exit::FAILURE,
        )
    })?;
    Ok(signed)
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
            m,
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
                    m,
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
                    m,
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
    breakglass::agent::harden::no_dumps();
    let want = Want {
        base_only: true,
        ..Want::from_terminal(&profile, &paths, "breakglass console")
    };
    let (h, _) = obtain(&want)?;
    let now = ceremony::now();
    let req = SigninRequest {
        profile: &profile,
        paths: &paths,
        role_arn: &role_arn,
        federation: &federation,
        destination: &destination,
        now,
    };
    let signed = make_url(&req, &h.session, (&h.password_holder, &h.token_holder))?;
    eprintln!(
        "breakglass: console sign-in as {} (for {} and {}).\n  The link works once, until {} (15 minutes); it is a secret.\n  The console session ends at {} (with the role session). For a new one, run `breakglass console {}` again: no ceremony is needed until the unlock ends at {}.",
        signed.assumed_role_arn,
        h.password_holder,
        h.token_holder,
        audit::rfc3339(signed.link_expires),
        audit::rfc3339(signed.console_ends),
        profile.name,
        audit::rfc3339(h.session.expiration),
    );
    if args.print {
        println!("{}", signed.url.as_str());
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

/// Opens the URL with `--browser CMD` or the system browser.
pub(super) fn open_browser(
    browser: Option<&str>,
    url: &str,
    profile: &str,
) -> Result<(), CliError> {
    let no_browser = |why: String| {
        CliError::new(
            format!("no browser could be opened: {why}"),
            format!(
                "run `breakglass console {profile} --print` and paste the link into a browser (only there: it is a secret), or pass --browser COMMAND"
            ),
            exit::UNAVAILABLE,
        )
    };
    match browser {
        Some(cmd) => {
            let mut words = cmd.split_whitespace();
            let program = words
                .next()
                .ok_or_else(|| no_browser("--browser is empty".into()))?;
            let status = Command::new(program)
                .args(words)
                .arg(url)
                .stdin(Stdio::null())
                .status()
                .map_err(|e| no_browser(format!("{program}: {e}")))?;
            if !status.success() {
                return Err(no_browser(format!("{program} exited with {status}")));
            }
        }
        None => webbrowser::open(url).map_err(|e| no_browser(e.to_string()))?,
    }
    eprintln!("breakglass: opened in the browser.");
    Ok(())
}
