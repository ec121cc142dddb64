//! `breakglass drill PROFILE`: the quarterly drill (two-person activation, checks of the user and
//! of the break-glass role in every account, a report); `--last` prints the last drill's summary
//! from the audit log.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use breakglass::aws::Endpoint;
use breakglass::ceremony::drill::{self, AccountResult, Accounts, Progress, Tally};
use breakglass::ceremony::handout::Plugged;
use breakglass::ceremony::names::printable;
use breakglass::ceremony::transcript::{host_name, Head, Recorder, Transcript};
use breakglass::ceremony::{runtime, unlock, Error as CError};
use breakglass::config::{self, is_account_id, Profile};
use breakglass::secure::SystemRandom;

use super::error::{exit, CliError};
use super::term::TtyPrompt;
use super::{clock, load, paths};

#[derive(Debug, Args)]
pub struct DrillArgs {
    /// The profile to drill (with --last: the profile whose last drill to show; all when none).
    profile: Option<String>,
    /// List the member accounts with AWS Organizations (ListAccounts).
    #[arg(long, conflicts_with = "accounts")]
    organization: bool,
    /// A file of account ids, one a line (`#` starts a comment).
    #[arg(long, value_name = "FILE")]
    accounts: Option<PathBuf>,
    /// The role's name in every account (default: the profile's drill_role, else the name of
    /// its role_arn's role).
    #[arg(long, value_name = "NAME")]
    role: Option<String>,
    /// Accounts checked at once.
    #[arg(long, value_name = "N", default_value_t = drill::DEFAULT_CONCURRENCY as u64, value_parser = clap::value_parser!(u64).range(1..=256))]
    concurrency: u64,
    /// Write the report as Markdown for the security team.
    #[arg(long, value_name = "FILE.md")]
    report: Option<PathBuf>,
    /// Print the report as JSON on standard output.
    #[arg(long)]
    json: bool,
    /// Why (goes to the audit log).
    #[arg(long, default_value = drill::DEFAULT_REASON)]
    reason: String,
    /// The incident's or change's ticket (goes to the audit log and the notices); asked when
    /// the profile has require_ticket and none is given.
    #[arg(long, value_name = "ID")]
    ticket: Option<String>,
    /// Use the reader whose name contains this text (overrides the profile).
    #[arg(long, value_name = "NAME")]
    reader: Option<String>,
    /// Write a Markdown transcript of the ceremony for the witnesses (no secret in it).
    #[arg(long, value_name = "FILE")]
    transcript: Option<PathBuf>,
    /// Also list every IAM user's access keys in every account through the role sessions
    /// (read-only) and report those past the rotation policy: older than rotate_after_days,
    /// unused that long, a user with two active keys.
    #[arg(long)]
    audit_keys: bool,
    /// Run a new two-person activation even when the agent holds a live session of the
    /// profile (by default that session is used, and nobody is asked anything).
    #[arg(long)]
    ceremony: bool,
    /// Print the last drill's summary from the audit log, with no ceremony.
    #[arg(long, conflicts_with_all = ["organization", "accounts", "role", "report", "transcript", "audit_keys", "ceremony"])]
    last: bool,
}

/// The accounts of `--accounts FILE`: one id a line, `#` comments, blank lines skipped; an id
/// that is not 12 digits is refused with its line number.
pub fn read_accounts(path: &Path) -> Result<Vec<String>, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::usage(
            format!("cannot read the accounts file {}: {e}", path.display()),
            "name a readable file of account ids, one a line",
        )
    })?;
    parse_accounts(&text).map_err(|(line, id)| {
        CliError::usage(
            format!(
                "{}:{line}: {id:?} is not an AWS account id (12 digits)",
                path.display()
            ),
            "fix that line (one 12-digit id a line; # starts a comment)",
        )
    })
}

/// The ids of an accounts file's text, in order, each once; `Err((line, text))` for the first
/// line that is not an id.
pub fn parse_accounts(text: &str) -> Result<Vec<String>, (usize, String)> {
    let mut ids = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let id = line.split('#').next().unwrap_or_default().trim();
        if id.is_empty() {
            continue;
        }
        if !is_account_id(id) {
            return Err((n + 1, id.to_owned()));
        }
        if !ids.iter().any(|i| i == id) {
            ids.push(id.to_owned());
        }
    }
    Ok(ids)
}

/// The role name the drill tries: `--role`, the profile's `drill_role`, else `role_arn`'s.
fn role_name(args: &DrillArgs, profile: &Profile) -> Result<String, CliError> {
    let name = args
        .role
        .clone()
        .or_else(|| profile.drill.role.clone())
        .or_else(|| {
            profile
                .role_arn
                .as_deref()
                .and_then(|arn| arn.rsplit(['/', ':']).next())
                .map(str::to_owned)
        });
    let Some(name) = name else {
        return Err(CliError::usage(
            format!("profile {:?} names no role to drill", profile.name),
            "name it: breakglass drill PROFILE --role NAME (or set drill_role or role_arn in the profile)",
        ));
    };
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c));
    if !ok {
        return Err(CliError::usage(
            format!("{name:?} is not an IAM role name"),
            "give the role's name (1-64 letters, digits or _+=,.@-), not its ARN",
        ));
    }
    Ok(name)
}

pub fn drill_cmd(args: DrillArgs) -> Result<(), CliError> {
    if args.last {
        return last_cmd(args.profile.as_deref());
    }
    let Some(name) = args.profile.as_deref() else {
        return Err(CliError::usage(
            "drill needs a profile",
            "breakglass drill PROFILE (or breakglass drill --last to see the last drills)",
        ));
    };
    let (paths, profile) = load(name)?;
    let role = role_name(&args, &profile)?;
    let accounts = if args.organization {
        Accounts::Organization
    } else if let Some(file) = &args.accounts {
        Accounts::Listed {
            ids: read_accounts(file)?,
            source: file.display().to_string(),
        }
    } else if !profile.drill.accounts.is_empty() {
        Accounts::Listed {
            ids: profile.drill.accounts.clone(),
            source: "the profile's drill_accounts".into(),
        }
    } else {
        return Err(CliError::usage(
            format!("no accounts to drill for profile {:?}", profile.name),
            "use --organization (AWS Organizations), --accounts FILE, or set drill_accounts in the profile",
        ));
    };
    if let Accounts::Listed { ids, source } = &accounts {
        if ids.is_empty() {
            return Err(CliError::usage(
                format!("{source} lists no account"),
                "add account ids, one a line",
            ));
        }
    }
    if args.reason.trim().is_empty() {
        return Err(CError::EmptyReason.into());
    }
    if let Some(report) = &args.report {
        super::check_transcript_path(Some(report))?;
    }
    super::check_transcript_path(args.transcript.as_deref())?;

    let live = if args.ceremony {
        None
    } else {
        live_session(&paths, &profile.name)?
    };
    // Made non-dumpable here at the latest (the agent client already did, if a live session
    // came from it).
    let mut tty = TtyPrompt::for_ceremony()?;
    tty.say(&format!(
        "breakglass: drill of profile {:?}: {}, then checks of role {role} in {}. Nothing is handed out.",
        profile.name,
        match &live {
            Some(l) => format!(
                "the live session of {} and {} (held by the agent; --ceremony for a new activation)",
                printable(&l.password_holder),
                printable(&l.token_holder)
            ),
            None => "a two-person activation".to_owned(),
        },
        match &accounts {
            Accounts::Organization => "every account of the organization".to_owned(),
            Accounts::Listed { ids, .. } => format!("{} account{}", ids.len(), if ids.len() == 1 { "" } else { "s" }),
        }
    ));
    let req = drill::Request {
        activation: unlock::Request {
            profile: &profile,
            paths: &paths,
            reason: Some(args.reason.trim()),
            ticket: args.ticket.as_deref(),
            requested_by: "breakglass drill",
            endpoint: Endpoint::of(&profile),
            now: clock(),
            rng: &SystemRandom::new(),
        },
        accounts,
        role: role.clone(),
        role_overrides: profile.drill.role_overrides.clone(),
        other_users: profile.drill.other_users.clone(),
        concurrency: usize::try_from(args.concurrency).unwrap_or(drill::DEFAULT_CONCURRENCY),
        max_session_secs: profile.drill.max_session_secs,
        account_budget: Duration::from_secs(600),
        audit_keys: args.audit_keys,
        rule: profile.drill.rule.clone(),
        role_policies: profile.drill.role_policies.clone(),
    };
    let mut token = Plugged::new(args.reader.as_deref().or(profile.reader.as_deref()));
    let head_before = Head::of(&paths.audit_log());
    let started = clock().now();
    let mut progress = Bar::new();
    let mut recorder = Recorder::new(&mut tty, clock());
    let stop = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let live_people = live.as_ref().map(|l| {
        vec![
            (
                l.password_holder.clone(),
                "password holder (at the unlock)".to_owned(),
            ),
            (
                l.token_holder.clone(),
                "token holder (at the unlock)".to_owned(),
            ),
        ]
    });
    let result = match live {
        Some(l) => runtime()?.block_on(drill::drill_live(&req, l, &mut progress, stop)),
        None => runtime()?.block_on(drill::drill(
            &req,
            &mut token,
            &mut recorder,
            &mut progress,
            stop,
        )),
    };
    progress.finish();
    let (steps, people) = (recorder.steps, live_people.unwrap_or(recorder.people));
    if let Some(path) = &args.transcript {
        let mut facts = vec![("role".to_owned(), role.clone())];
        if let Ok(r) = &result {
            facts.push(("accounts".into(), r.source.clone()));
            facts.push(("result".into(), r.summary()));
            facts.push(("report SHA-256".into(), drill::report_sha256(r)));
        }
        let t = Transcript {
            ceremony: "Break-glass drill".into(),
            profile: profile.name.clone(),
            started,
            ended: clock().now(),
            people,
            reason: args.reason.trim().to_owned(),
            host: host_name(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            facts,
            steps,
            result: match &result {
                Ok(r) if r.findings.is_empty() => "completed: every check passed".into(),
                Ok(r) => format!("completed with findings: {}", r.summary()),
                Err(e) => format!("failed: {e}"),
            },
            head_before,
            head_after: Head::of(&paths.audit_log()),
        };
        super::save_transcript(path, &t, &mut tty);
    }
    let report = result?;
    if let Some(path) = &args.report {
        match breakglass::files::write_document(path, report.markdown().as_bytes()) {
            Ok(()) => tty.say(&format!("Report for the security team: {}", path.display())),
            Err(e) => tty.say(&format!(
                "Warning: the report could not be written to {} ({e}); --json prints it, and the audit log holds its summary.",
                path.display()
            )),
        }
    }
    if args.json {
        outln!("{}", report.json())?;
    } else {
        outln!(
            "Drill of profile {:?} by {} and {}: {}.",
            report.profile,
            printable(&report.holders.0),
            printable(&report.holders.1),
            report.summary()
        )?;
        for f in &report.findings {
            outln!(
                "  {}: {} Fix: {}.",
                f.account.as_deref().unwrap_or("break-glass user"),
                f.what,
                f.fix
            )?;
        }
        if report.stopped {
            outln!("Stopped before every account was tried: the report is partial.")?;
        }
    }
    if report.stopped {
        return Err(CliError::new(
            "the drill was stopped before every account was tried",
            format!(
                "run `breakglass drill {}` again to check them all",
                profile.name
            ),
            exit::FAILURE,
        ));
    }
    if !report.findings.is_empty() {
        return Err(CliError::new(
            format!(
                "the drill found {} problem{}",
                report.findings.len(),
                if report.findings.len() == 1 { "" } else { "s" }
            ),
            "fix each as its line says, then run the drill again",
            exit::FAILURE,
        ));
    }
    Ok(())
}

/// The agent's live two-person session of `profile`, when it holds one; `None` when the agent
/// is not running or holds none (nothing is asked of anyone here).
fn live_session(
    paths: &breakglass::config::Paths,
    profile: &str,
) -> Result<Option<drill::Live>, CliError> {
    use breakglass::agent::client::{Client, Error as AgentError, Reply};
    let client = match Client::running(paths) {
        Ok(c) => c,
        Err(AgentError::NotRunning) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    Ok(match client.get(profile, None, false, false)? {
        Reply::Creds(h) if !h.role => Some(drill::Live {
            session: h.session,
            password_holder: h.password_holder,
            token_holder: h.token_holder,
            user_arn: h.identity,
        }),
        // No session, or (not asked for here) a lead: a new activation then.
        _ => None,
    })
}

/// `drill --last [PROFILE]`: the last drill of each profile (or of one), from the audit log.
fn last_cmd(name: Option<&str>) -> Result<(), CliError> {
    let paths = paths()?;
    let names: Vec<String> = match name {
        Some(n) => {
            config::load(&paths, n)?;
            vec![n.to_owned()]
        }
        None => config::load_all(&paths)?.into_keys().collect(),
    };
    let log = breakglass::audit::log::Log::new(&paths.audit_log());
    let mut any = false;
    for n in &names {
        let last = log
            .last("drill", n, false)
            .map_err(|e| CliError::from(CError::Audit(e)))?;
        let Some(rec) = last else {
            outln!("{n}: never drilled (breakglass drill {n})")?;
            continue;
        };
        any = true;
        let text = |k: &str| {
            rec.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        outln!(
            "{n}: last drill {} by {} and {} ({}): {}",
            text("time"),
            printable(&text("password_holder")),
            printable(&text("token_holder")),
            text("outcome").split(':').next().unwrap_or_default(),
            text("summary")
        )?;
        if let Some(list) = rec.get("first_findings").and_then(|v| v.as_array()) {
            for f in list.iter().filter_map(|f| f.as_str()) {
                outln!("  {}", printable(f))?;
            }
        }
        outln!("  report SHA-256 {}", text("report_sha256"))?;
    }
    if !any && name.is_some() {
        return Err(CliError::new(
            format!("profile {:?} has no drill in the audit log", names[0]),
            format!("run one: breakglass drill {}", names[0]),
            exit::FAILURE,
        ));
    }
    Ok(())
}

/// Progress on the terminal: a bar with counts and ETA on a terminal, else one line per
/// account with findings.
struct Bar {
    bar: Option<indicatif::ProgressBar>,
}

impl Bar {
    fn new() -> Self {
        Self { bar: None }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Progress for Bar {
    fn start(&mut self, total: usize) {
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            let bar = indicatif::ProgressBar::new(total as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} accounts, {msg}, ETA {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            self.bar = Some(bar);
        } else {
            eprintln!(
                "Checking {total} account{}…",
                if total == 1 { "" } else { "s" }
            );
        }
    }

    fn done(&mut self, result: &AccountResult, tally: &Tally) {
        match &self.bar {
            Some(bar) => {
                bar.set_message(format!(
                    "{} failed, {} throttled, {} remaining",
                    tally.failed, tally.throttled, tally.remaining
                ));
                bar.inc(1);
                for f in &result.findings {
                    bar.println(format!("{}: {}", result.id, f.what));
                }
            }
            None => {
                for f in &result.findings {
                    eprintln!("{}: {}", result.id, f.what);
                }
            }
        }
    }

    fn note(&mut self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_files_take_comments_and_refuse_bad_ids_with_their_line() {
        let text = "# prod\n111122223333\n\n  444455556666  # payments\n111122223333\n";
        assert_eq!(
            parse_accounts(text).expect("a valid file"),
            ["111122223333", "444455556666"]
        );
        assert_eq!(
            parse_accounts("111122223333\n12345\n").expect_err("a short id"),
            (2, "12345".to_owned())
        );
        assert_eq!(
            parse_accounts("arn:aws:iam::111122223333:root")
                .expect_err("an ARN")
                .0,
            1
        );
    }
}
