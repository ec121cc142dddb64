//! The quarterly drill: a two-person activation, then checks of the break-glass user and of
//! the break-glass role in every member account, then a report. Nothing is handed to another
//! process; the sessions made are dropped (wiped) when the drill ends.
//!
//! Per account, concurrently (at most [`Request::concurrency`] at once): AssumeRole into the
//! role with the SourceIdentity every hand-out sets, GetCallerIdentity with the role session,
//! GetRole on the role itself (its trust policy, evaluated by [`checks::trust`]; its maximum
//! session) and its attached policies. Calls are paced per service ([`crate::aws::pace`]):
//! throttling slows the drill down instead of failing it; each call has the profile's
//! deadline; a server error is retried a few times with backoff.

pub mod checks;
pub mod report;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::unlock::{self, Plug};
use super::{Error, Prompt};
use crate::audit;
use crate::aws::pace::Pace;
use crate::aws::{self, events, iam, org, sts, Endpoint, Failure, Signer};
use crate::notify::{Event, Notice};
use crate::secure::mask_key_id;

pub use report::{AccountResult, Counts, Finding, Outcome, Report, UserCheck};

/// The reason a drill records when the holders give none.
pub const DEFAULT_REASON: &str = "quarterly drill";
/// The default number of accounts checked at once.
pub const DEFAULT_CONCURRENCY: usize = 32;
/// Retries of a call that met a server error (5xx) or a dropped connection.
const SERVER_ERROR_RETRIES: u32 = 3;
/// The session the drill asks for its role sessions: AWS's minimum.
const ROLE_SESSION_SECS: u64 = 900;

/// Where the accounts come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accounts {
    /// AWS Organizations' `ListAccounts`.
    Organization,
    /// A list: the ids, and where it came from (`"accounts.txt"`, `"the profile's drill_accounts"`).
    Listed {
        /// 12-digit ids.
        ids: Vec<String>,
        /// Its source, for the report.
        source: String,
    },
}

/// What a drill needs besides people and a token.
pub struct Request<'a> {
    /// The activation (profile, paths, reason, endpoint, clock, randomness).
    pub activation: unlock::Request<'a>,
    /// The accounts to check.
    pub accounts: Accounts,
    /// The role's name in every account…
    pub role: String,
    /// …except these: account id or OU id (`ou-…`, the accounts under it, nested OUs
    /// included, down to the next OU named here) → role name. An account's own entry wins.
    pub role_overrides: BTreeMap<String, String>,
    /// Other break-glass users the roles may trust besides the profile's (IAM user ARNs).
    pub other_users: Vec<String>,
    /// Accounts checked at once (at least 1).
    pub concurrency: usize,
    /// The maximum session duration the roles should have, seconds.
    pub max_session_secs: u64,
    /// Time one account's checks may take, retries and throttling included.
    pub account_budget: Duration,
    /// Also list every IAM user's access keys in every account (read-only) and report those
    /// past the profile's rotation policy.
    pub audit_keys: bool,
    /// An EventBridge rule every account must have, enabled.
    pub rule: Option<String>,
    /// Managed policies (ARNs) every role must have attached.
    pub role_policies: Vec<String>,
}

/// What the drill tells the terminal as it goes.
pub trait Progress {
    /// The accounts are known: `total` of them will be tried.
    fn start(&mut self, total: usize);
    /// One account is done; `tally` counts so far.
    fn done(&mut self, result: &AccountResult, tally: &Tally);
    /// A line worth saying (the user's checks, the organization's list).
    fn note(&mut self, line: &str);
}

/// Counts while the drill runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Accounts done.
    pub done: usize,
    /// Accounts with findings.
    pub failed: usize,
    /// Throttled answers so far (retried).
    pub throttled: u64,
    /// Accounts still to do.
    pub remaining: usize,
}

/// A progress that says nothing.
pub struct Quiet;

impl Progress for Quiet {
    fn start(&mut self, _: usize) {}
    fn done(&mut self, _: &AccountResult, _: &Tally) {}
    fn note(&mut self, _: &str) {}
}

/// Temporary credentials shared by the account tasks (wiped when the last one drops).
struct Creds {
    id: String,
    secret: SecretString,
    token: SecretString,
}

impl Creds {
    fn of(s: &sts::Session) -> Self {
        Self {
            id: s.access_key_id.clone(),
            secret: s.secret_access_key.clone(),
            token: s.session_token.clone(),
        }
    }

    fn signer(&self) -> Signer<'_> {
        Signer {
            access_key_id: &self.id,
            secret_access_key: &self.secret,
            session_token: Some(&self.token),
        }
    }
}

/// What every account task shares.
struct Shared {
    endpoint: Endpoint,
    base: Creds,
    partition: String,
    session_name: String,
    source_identity: String,
    users: Vec<String>,
    max_session_secs: u64,
    sts: Pace,
    iam: Pace,
    budget: Duration,
    /// `Some(days)`: audit every IAM user's keys against this age.
    audit_keys: Option<u32>,
    rule: Option<String>,
    role_policies: Vec<String>,
}

/// The agent's live two-person session of the profile, for a drill without a new ceremony.
pub struct Live {
    /// The GetSessionToken session the agent holds.
    pub session: sts::Session,
    /// Who typed the passphrase at its unlock.
    pub password_holder: String,
    /// Who touched the token.
    pub token_holder: String,
    /// The IAM user's ARN.
    pub user_arn: String,
}

/// What the checks start from: a session, its people, and what the vault says.
struct Start {
    session: sts::Session,
    holders: (String, String),
    user_arn: String,
    reason: String,
    /// The vault's access key id; `None` when the vault was not opened and its header does not
    /// say (format 1).
    vault_key: Option<String>,
    vault_devices: Vec<String>,
}

/// Runs the drill: the activation, the checks, the report and its `drill` audit record. `stop`
/// ends the checks early (Ctrl-C): the accounts not yet tried are reported as such.
pub async fn drill<P: Plug + ?Sized>(
    req: &Request<'_>,
    token: &mut P,
    prompt: &mut dyn Prompt,
    progress: &mut dyn Progress,
    stop: impl Future<Output = ()>,
) -> Result<Report, Error> {
    let a = &req.activation;
    let started = a.now.now();
    let (activation, opened) = unlock::unlock_keeping_vault(a, token, prompt).await?;
    let vault_key = opened.payload.access_key_id.clone();
    let vault_devices: Vec<String> = opened
        .vault()
        .slots()
        .map(|s| s.mfa_serial.clone())
        .collect();
    // The long-term key is not needed past this point.
    drop(opened);
    let start = Start {
        holders: (
            activation.password_holder.clone(),
            activation.token_holder.clone(),
        ),
        user_arn: activation.user_arn.clone(),
        reason: activation.reason.clone(),
        session: activation.session,
        vault_key: Some(vault_key),
        vault_devices,
    };
    checks_and_report(req, start, started, progress, stop).await
}

/// [`drill`] with the agent's live session instead of a new activation: the vault is not
/// opened; its header says which MFA devices its tokens hold (and, from format 2, its key).
pub async fn drill_live(
    req: &Request<'_>,
    live: Live,
    progress: &mut dyn Progress,
    stop: impl Future<Output = ()>,
) -> Result<Report, Error> {
    let a = &req.activation;
    let started = a.now.now();
    let vault = crate::vault::file::read(&a.profile.vault).map_err(Error::Vault)?;
    let reason = a.reason.unwrap_or(DEFAULT_REASON).trim().to_owned();
    if reason.is_empty() {
        return Err(Error::EmptyReason);
    }
    let start = Start {
        session: live.session,
        holders: (live.password_holder, live.token_holder),
        user_arn: live.user_arn,
        reason,
        vault_key: vault.key_facts().map(|k| k.access_key_id.clone()),
        vault_devices: vault.slots().map(|s| s.mfa_serial.clone()).collect(),
    };
    checks_and_report(req, start, started, progress, stop).await
}

async fn checks_and_report(
    req: &Request<'_>,
    start: Start,
    started: u64,
    progress: &mut dyn Progress,
    stop: impl Future<Output = ()>,
) -> Result<Report, Error> {
    let a = &req.activation;
    let Start {
        session,
        holders,
        user_arn,
        reason,
        vault_key,
        vault_devices,
    } = start;
    let mut report = Report {
        profile: a.profile.name.clone(),
        holders: holders.clone(),
        reason,
        started,
        role: req.role.clone(),
        user: UserCheck {
            arn: user_arn.clone(),
            vault_devices: vault_devices.clone(),
            vault_key: vault_key
                .as_deref()
                .map_or_else(|| "not known (vault format 1)".to_owned(), mask_key_id),
            ..UserCheck::default()
        },
        ..Report::default()
    };
    let mut endpoint = a.endpoint.clone().sharing_connections();
    // The drill retries by itself, pacing the service (see the module doc).
    endpoint.retries.max_attempts = 1;
    let shared = Arc::new(Shared {
        endpoint,
        base: Creds::of(&session),
        partition: user_arn.split(':').nth(1).unwrap_or("aws").to_owned(),
        session_name: sts::role_session_name(
            a.profile.role_session_name.as_deref(),
            &holders.0,
            &holders.1,
        )
        .unwrap_or_else(|_| sts::source_identity(&holders.0, &holders.1)),
        source_identity: sts::source_identity(&holders.0, &holders.1),
        users: std::iter::once(user_arn.clone())
            .chain(req.other_users.iter().cloned())
            .collect(),
        max_session_secs: req.max_session_secs,
        sts: Pace::new(seed(a.rng)),
        iam: Pace::new(seed(a.rng)),
        budget: req.account_budget,
        audit_keys: req
            .audit_keys
            .then_some(a.profile.rotation.rotate_after_days),
        rule: req.rule.clone(),
        role_policies: req.role_policies.clone(),
    });
    drop(session);
    // Polled once now, so that a signal it waits for is caught from here on (tokio's
    // `ctrl_c` installs its handler at the first poll), not only once the accounts start.
    let mut stop = std::pin::pin!(stop);
    std::future::poll_fn(|cx| {
        let _ = stop.as_mut().poll(cx);
        std::task::Poll::Ready(())
    })
    .await;

    check_user(
        req,
        &shared,
        &mut report,
        vault_key.as_deref(),
        &vault_devices,
        progress,
    )
    .await;
    let members = accounts(req, &shared, &mut report, progress).await;
    let roles = roles(req, &shared, &mut report, progress).await;
    let stopped = run_accounts(req, &shared, &roles, members, &mut report, progress, stop).await;
    report.stopped = stopped;
    let (requests, throttled) = shared.sts.counts();
    report.requests = requests;
    report.throttled = throttled + shared.iam.counts().1;
    for r in &report.accounts {
        report.findings.extend(r.findings.iter().cloned());
    }
    report.ended = a.now.now();
    // The sessions go now, before anything is written.
    drop(shared);
    record(req, &report)?;
    let notice = |head| Notice {
        user_arn,
        reason: report.reason.clone(),
        ticket: a.ticket.map(str::to_owned),
        detail: Some(format!(
            "{}{}",
            report.summary(),
            match report.findings.first() {
                Some(f) => format!(
                    "; first finding: {}: {}",
                    f.account.as_deref().unwrap_or("user"),
                    f.what
                ),
                None => String::new(),
            }
        )),
        ..Notice::new(Event::Drill, a.now.now(), a.profile, head).by((&holders.0, &holders.1))
    };
    crate::ceremony::tell_outcome(a.paths, notice, a.profile, None, &a.endpoint, &mut |w| {
        progress.note(w)
    })
    .await;
    Ok(report)
}

fn seed(rng: &dyn crate::secure::Random) -> u64 {
    let mut b = [0u8; 8];
    let _ = rng.fill(&mut b);
    u64::from_le_bytes(b)
}

/// The `drill` audit record.
fn record(req: &Request<'_>, report: &Report) -> Result<(), Error> {
    let c = report.counts();
    let rec = audit::Record::Drill {
        holders: report.holders.clone(),
        reason: report.reason.clone(),
        accounts: c.accounts,
        passed: c.passed,
        failed: c.failed,
        skipped: c.skipped,
        not_tried: c.not_tried,
        findings: c.findings,
        summary: report.summary(),
        first_findings: report
            .findings
            .iter()
            .take(audit::DRILL_FINDINGS_LOGGED)
            .map(|f| format!("{}: {}", f.account.as_deref().unwrap_or("user"), f.what))
            .collect(),
        report_sha256: report_sha256(report),
    };
    let outcome = if c.findings == 0 && !report.stopped {
        audit::Outcome::Success
    } else if report.stopped {
        audit::Outcome::Failure {
            reason: format!("stopped: {}", report.summary()),
        }
    } else {
        audit::Outcome::Failure {
            reason: report.summary(),
        }
    };
    let a = &req.activation;
    audit::append(
        &a.paths.audit_log(),
        &audit::Entry {
            time: a.now.now(),
            profile: &a.profile.name,
            record: rec,
            outcome,
        },
    )
    .map_err(Error::Audit)
}

/// SHA-256 of the report's Markdown, hex: the `drill` record's `report_sha256`.
pub fn report_sha256(report: &Report) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, report.markdown().as_bytes());
    data_encoding::HEXLOWER.encode(digest.as_ref())
}

/// Days after a successful drill before `status` warns: guidance asks for one a quarter.
pub const DRILL_DUE_DAYS: u64 = 90;

/// When a profile was last drilled with success, from the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastDrill {
    /// No successful drill in the log.
    Never,
    /// The last one, Unix seconds, and how many whole days ago.
    At {
        /// When it was recorded.
        time: u64,
        /// Days since.
        days: u64,
    },
}

impl LastDrill {
    /// True when none is on record or the last is [`DRILL_DUE_DAYS`] old or more.
    pub fn due(self) -> bool {
        match self {
            Self::Never => true,
            Self::At { days, .. } => days >= DRILL_DUE_DAYS,
        }
    }
}

/// The last successful drill of `profile` in the audit log at `log`.
pub fn last_success(
    log: &std::path::Path,
    profile: &str,
    now: u64,
) -> Result<LastDrill, audit::Error> {
    let Some(rec) = audit::log::Log::new(log).last("drill", profile, true)? else {
        return Ok(LastDrill::Never);
    };
    let time = rec
        .get("time")
        .and_then(serde_json::Value::as_str)
        .and_then(|t| {
            aws_smithy_types::DateTime::from_str(t, aws_smithy_types::date_time::Format::DateTime)
                .ok()
        })
        .and_then(|d| u64::try_from(d.secs()).ok())
        .unwrap_or(0);
    Ok(LastDrill::At {
        time,
        days: now.saturating_sub(time) / 86_400,
    })
}

/// The break-glass user: its MFA devices, keys, console password and policies.
async fn check_user(
    req: &Request<'_>,
    shared: &Shared,
    report: &mut Report,
    vault_key: Option<&str>,
    vault_devices: &[String],
    progress: &mut dyn Progress,
) {
    let a = &req.activation;
    let Some(user) = iam::user_name(&report.user.arn).map(str::to_owned) else {
        report.findings.push(Finding::user(
            "user-unreadable",
            format!("the vault's user ARN {} names no IAM user", report.user.arn),
            "re-enrol the profile",
        ));
        return;
    };
    let signer = shared.base.signer();
    let budget = Instant::now() + shared.budget;
    let mut throttled = 0;
    let facts = retry(&shared.iam, budget, &mut throttled, || {
        iam::user_facts(&shared.endpoint, &signer, &user)
    })
    .await;
    let keys = retry(&shared.iam, budget, &mut throttled, || {
        iam::list_access_keys(&shared.endpoint, &signer, &user)
    })
    .await;
    match (facts, keys) {
        (Ok(facts), Ok(keys)) => {
            let now = a.now.now();
            report.findings.extend(checks::user(
                &facts,
                vault_devices,
                &keys,
                vault_key,
                &a.profile.rotation,
                now,
            ));
            report.user.keys = keys
                .iter()
                .map(|k| {
                    (
                        mask_key_id(&k.access_key_id),
                        k.status.as_str(),
                        now.saturating_sub(k.created) / 86_400,
                    )
                })
                .collect();
            report.user.facts = Some(facts);
        }
        (Err(e), _) | (_, Err(e)) => report.findings.push(Finding::user(
            "user-unreadable",
            format!("IAM could not be read for the break-glass user: {e}"),
            "give the break-glass user iam:ListMFADevices, iam:ListAccessKeys, iam:GetLoginProfile, iam:ListAttachedUserPolicies and iam:ListUserPolicies on itself",
        )),
    }
    let n = report.findings.len();
    progress.note(&if n == 0 {
        format!("The break-glass user {user}: MFA devices and keys match the vault.")
    } else {
        format!(
            "The break-glass user {user}: {n} finding{}.",
            if n == 1 { "" } else { "s" }
        )
    });
}

/// The accounts to try, each with its name and status.
async fn accounts(
    req: &Request<'_>,
    shared: &Shared,
    report: &mut Report,
    progress: &mut dyn Progress,
) -> Vec<org::Member> {
    match &req.accounts {
        Accounts::Listed { ids, source } => {
            report.source = source.clone();
            ids.iter()
                .map(|id| org::Member {
                    id: id.clone(),
                    name: String::new(),
                    status: "ACTIVE".into(),
                })
                .collect()
        }
        Accounts::Organization => {
            report.source = "the organization (AWS Organizations ListAccounts)".into();
            let signer = shared.base.signer();
            let mut throttled = 0;
            let budget = Instant::now() + shared.budget;
            match retry(&shared.iam, budget, &mut throttled, || {
                org::list_accounts(&shared.endpoint, &signer)
            })
            .await
            {
                Ok(members) => {
                    progress.note(&format!(
                        "The organization has {} member account{}.",
                        members.len(),
                        if members.len() == 1 { "" } else { "s" }
                    ));
                    members
                }
                Err(e) => {
                    report.findings.push(Finding::user(
                        "organization-unreadable",
                        format!("the member accounts could not be listed: {e}"),
                        "give the break-glass user organizations:ListAccounts (it works from the management account or a delegated administrator), or name the accounts with --accounts FILE",
                    ));
                    Vec::new()
                }
            }
        }
    }
}

/// Every account, at most `concurrency` at once. True when `stop` ended it early.
async fn run_accounts(
    req: &Request<'_>,
    shared: &Arc<Shared>,
    roles: &Roles,
    members: Vec<org::Member>,
    report: &mut Report,
    progress: &mut dyn Progress,
    mut stop: std::pin::Pin<&mut impl Future<Output = ()>>,
) -> bool {
    let mut results: Vec<Option<AccountResult>> = vec![None; members.len()];
    let mut queue = Vec::new();
    for (i, m) in members.iter().enumerate() {
        if m.active() {
            queue.push(i);
        } else {
            results[i] = Some(skipped(shared, roles, m, Outcome::Skipped));
        }
    }
    progress.start(queue.len());
    let mut tally = Tally {
        remaining: queue.len(),
        ..Tally::default()
    };
    let mut queue = queue.into_iter();
    let mut tasks = JoinSet::new();
    let concurrency = req.concurrency.max(1);
    let spawn = |tasks: &mut JoinSet<(usize, AccountResult)>, i: usize| {
        let shared = Arc::clone(shared);
        let member = members[i].clone();
        let role = roles.of(&member.id).to_owned();
        let now = req.activation.now.now();
        tasks.spawn(async move { (i, check_account(&shared, &member, &role, now).await) });
    };
    for i in queue.by_ref().take(concurrency) {
        spawn(&mut tasks, i);
    }
    let mut stopped = false;
    loop {
        let next = tokio::select! {
            biased;
            () = stop.as_mut() => { stopped = true; break; }
            next = tasks.join_next() => next,
        };
        let Some(joined) = next else { break };
        let Ok((i, result)) = joined else { continue };
        tally.done += 1;
        tally.remaining = tally.remaining.saturating_sub(1);
        if result.outcome == Outcome::Findings {
            tally.failed += 1;
        }
        tally.throttled = shared.sts.counts().1 + shared.iam.counts().1;
        progress.done(&result, &tally);
        results[i] = Some(result);
        if let Some(j) = queue.next() {
            spawn(&mut tasks, j);
        }
    }
    // Stopped: the calls in flight are dropped; their accounts are "not tried".
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    report.accounts = results
        .into_iter()
        .zip(&members)
        .map(|(r, m)| r.unwrap_or_else(|| skipped(shared, roles, m, Outcome::NotTried)))
        .collect();
    stopped
}

/// The role tried in each account.
struct Roles {
    /// The drill's role.
    default: String,
    /// Accounts with another: their own override, else their nearest overridden OU's.
    by_account: HashMap<String, String>,
}

impl Roles {
    fn of(&self, account: &str) -> &str {
        self.by_account
            .get(account)
            .map_or(self.default.as_str(), String::as_str)
    }
}

/// The role of every account: `role_overrides` by account id, else by the nearest OU above
/// the account that has one (its accounts listed with Organizations, every OU below it
/// walked down to the next overridden OU), else the drill's role.
async fn roles(
    req: &Request<'_>,
    shared: &Shared,
    report: &mut Report,
    progress: &mut dyn Progress,
) -> Roles {
    let mut by_account = HashMap::new();
    let units: BTreeMap<&str, &str> = req
        .role_overrides
        .iter()
        .filter(|(k, _)| org::is_ou_id(k))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let signer = shared.base.signer();
    for (&top, &role) in &units {
        let mut stack = vec![top.to_owned()];
        let mut seen = HashSet::new();
        let mut under = 0usize;
        while let Some(unit) = stack.pop() {
            if !seen.insert(unit.clone()) {
                continue;
            }
            let mut throttled = 0;
            let budget = Instant::now() + shared.budget;
            match retry(&shared.iam, budget, &mut throttled, || {
                org::children(&shared.endpoint, &signer, &unit)
            })
            .await
            {
                Ok((children, accounts)) => {
                    for a in accounts {
                        under += 1;
                        by_account.entry(a).or_insert_with(|| role.to_owned());
                    }
                    // An overridden OU below is walked from its own top, so that an account
                    // gets its nearest OU's role.
                    stack.extend(
                        children
                            .into_iter()
                            .filter(|c| !units.contains_key(c.as_str())),
                    );
                }
                Err(e) => {
                    report.findings.push(Finding::user(
                        "ou-unreadable",
                        format!(
                            "the accounts under {top} (named in drill_role_overrides) could not all be listed{}, so those not listed were tried with the role {:?} instead of {role:?}: {e}",
                            if unit == top {
                                String::new()
                            } else {
                                format!(" (at {unit}, below it)")
                            },
                            req.role
                        ),
                        format!("give the break-glass user organizations:ListOrganizationalUnitsForParent and organizations:ListAccountsForParent (they work from the management account or a delegated administrator), and check that {top} is an OU of this organization"),
                    ));
                    // The rest of this OU's walk would fail the same way (a permission):
                    // one finding, not one per OU.
                    break;
                }
            }
        }
        progress.note(&format!(
            "{under} account{} under {top} use the role {role}.",
            if under == 1 { "" } else { "s" }
        ));
    }
    for (key, role) in &req.role_overrides {
        if crate::config::is_account_id(key) {
            by_account.insert(key.clone(), role.clone());
        }
    }
    Roles {
        default: req.role.clone(),
        by_account,
    }
}

fn role_arn(shared: &Shared, account: &str, role: &str) -> String {
    format!("arn:{}:iam::{account}:role/{role}", shared.partition)
}

fn skipped(shared: &Shared, roles: &Roles, m: &org::Member, outcome: Outcome) -> AccountResult {
    AccountResult {
        id: m.id.clone(),
        name: m.name.clone(),
        role_arn: role_arn(shared, &m.id, roles.of(&m.id)),
        outcome,
        findings: Vec::new(),
        attached_policies: Vec::new(),
        max_session_secs: None,
        throttled: 0,
        millis: 0,
    }
}

/// Calls `f` at the service's pace until it answers, retrying throttled answers (until
/// `budget`) and server errors ([`SERVER_ERROR_RETRIES`]) with backoff.
async fn retry<T, F, Fut>(
    pace: &Pace,
    budget: Instant,
    throttled: &mut u32,
    mut f: F,
) -> Result<T, aws::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, aws::Error>>,
{
    let mut attempt = 0u32;
    let mut server_errors = 0u32;
    loop {
        pace.turn().await;
        let result = f().await;
        let retry = match &result {
            Ok(_) => {
                pace.succeeded();
                false
            }
            Err(aws::Error::Throttled { .. }) => {
                pace.throttled();
                *throttled += 1;
                Instant::now() < budget
            }
            Err(aws::Error::Unreachable {
                failure: Failure::ServerError { .. } | Failure::Reset,
                ..
            }) => {
                server_errors += 1;
                server_errors <= SERVER_ERROR_RETRIES && Instant::now() < budget
            }
            Err(_) => false,
        };
        if !retry {
            return result;
        }
        attempt += 1;
        let wait = pace.backoff(attempt);
        tokio::time::sleep_until((Instant::now() + wait).min(budget)).await;
    }
}

/// The checks of one member account.
async fn check_account(
    shared: &Shared,
    member: &org::Member,
    role: &str,
    now: u64,
) -> AccountResult {
    let started = Instant::now();
    let budget = started + shared.budget;
    let id = member.id.as_str();
    let arn = role_arn(shared, id, role);
    let mut result = AccountResult {
        id: id.to_owned(),
        name: member.name.clone(),
        role_arn: arn.clone(),
        outcome: Outcome::Passed,
        findings: Vec::new(),
        attached_policies: Vec::new(),
        max_session_secs: None,
        throttled: 0,
        millis: 0,
    };
    let findings = account_findings(shared, id, role, &arn, now, budget, &mut result).await;
    result.findings = findings;
    if !result.findings.is_empty() {
        result.outcome = Outcome::Findings;
    }
    result.millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    result
}

async fn account_findings(
    shared: &Shared,
    id: &str,
    role: &str,
    arn: &str,
    now: u64,
    budget: Instant,
    result: &mut AccountResult,
) -> Vec<Finding> {
    let base = shared.base.signer();
    let mut throttled = 0;
    let ask = sts::AssumeRole {
        role_arn: arn,
        session_name: &shared.session_name,
        source_identity: &shared.source_identity,
        duration_secs: Some(ROLE_SESSION_SECS),
    };
    let assumed = retry(&shared.sts, budget, &mut throttled, || {
        sts::assume_role(&shared.endpoint, &base, &ask, now)
    })
    .await;
    result.throttled = throttled;
    let session = match assumed {
        Ok(s) => s,
        Err(e) => return vec![call_failed(id, arn, "AssumeRole", &e)],
    };
    let creds = Creds::of(&session.session);
    drop(session);
    let signer = creds.signer();
    let mut findings = Vec::new();
    match retry(&shared.sts, budget, &mut throttled, || {
        sts::get_caller_identity(&shared.endpoint, &signer)
    })
    .await
    {
        Ok(identity) if identity.account == id => {}
        Ok(identity) => findings.push(Finding::account(
            id,
            "identity-mismatch",
            format!(
                "the role session says it is {} in account {}, not account {id}",
                identity.arn, identity.account
            ),
            "check the account id and the role ARN",
        )),
        Err(e) => {
            result.throttled = throttled;
            return vec![call_failed(id, arn, "GetCallerIdentity", &e)];
        }
    }
    match retry(&shared.iam, budget, &mut throttled, || {
        iam::get_role(&shared.endpoint, &signer, role)
    })
    .await
    {
        Ok(facts) => {
            findings.extend(checks::trust(
                id,
                &facts.trust_policy,
                &shared.users,
                &shared.source_identity,
            ));
            result.max_session_secs = Some(facts.max_session_secs);
            if facts.max_session_secs != shared.max_session_secs {
                findings.push(Finding::account(
                    id,
                    "session-duration",
                    format!(
                        "the role's maximum session is {} s; the profile expects {} s",
                        facts.max_session_secs, shared.max_session_secs
                    ),
                    "set MaxSessionDuration on the role (or drill_max_session in the profile)",
                ));
            }
        }
        Err(e) => findings.push(call_failed(id, arn, "GetRole", &e)),
    }
    if let Ok(attached) = retry(&shared.iam, budget, &mut throttled, || {
        iam::list_attached_role_policies(&shared.endpoint, &signer, role)
    })
    .await
    {
        for want in shared
            .role_policies
            .iter()
            .filter(|p| !attached.contains(p))
        {
            findings.push(Finding::account(
                id,
                "role-policy-missing",
                format!("the role does not have the policy {want} attached"),
                "attach it (the guardrails StackSet does), or change drill_role_policies",
            ));
        }
        result.attached_policies = attached;
    }
    if let Some(rule) = &shared.rule {
        let described = retry(&shared.iam, budget, &mut throttled, || {
            events::describe_rule(&shared.endpoint, &signer, rule)
        })
        .await;
        match described {
            Ok(events::Rule::Present { enabled: true }) => {}
            Ok(events::Rule::Present { enabled: false }) => findings.push(Finding::account(
                id,
                "rule-disabled",
                format!("the EventBridge rule {rule} is disabled: break-glass activity here alerts nobody"),
                "enable it (aws events enable-rule), and find out who disabled it",
            )),
            Ok(events::Rule::Missing) => findings.push(Finding::account(
                id,
                "rule-missing",
                format!("the EventBridge rule {rule} is not in this account (default event bus)"),
                "deploy it (the guardrails StackSet), or change drill_rule",
            )),
            Err(e) => findings.push(call_failed(id, arn, "DescribeRule", &e)),
        }
    }
    if let Some(days) = shared.audit_keys {
        match audited_keys(shared, &signer, budget, &mut throttled).await {
            Ok(users) => findings.extend(checks::audit_keys(id, &users, days, now)),
            Err(e) => findings.push(Finding::account(
                id,
                "keys-unreadable",
                format!("the account's IAM users and keys could not be listed: {e}"),
                "allow iam:ListUsers, iam:ListAccessKeys and iam:GetAccessKeyLastUsed to the role",
            )),
        }
    }
    result.throttled = throttled;
    findings
}

/// Every IAM user of the account the role session is in, with its keys and their last use.
async fn audited_keys(
    shared: &Shared,
    signer: &Signer<'_>,
    budget: Instant,
    throttled: &mut u32,
) -> Result<Vec<checks::UserKeys>, aws::Error> {
    let users = retry(&shared.iam, budget, throttled, || {
        iam::list_users(&shared.endpoint, signer)
    })
    .await?;
    let mut out = Vec::with_capacity(users.len());
    for user in users {
        let keys = retry(&shared.iam, budget, throttled, || {
            iam::list_access_keys(&shared.endpoint, signer, &user)
        })
        .await?;
        let mut with_use = Vec::with_capacity(keys.len());
        for k in keys {
            let (_, used) = retry(&shared.iam, budget, throttled, || {
                iam::access_key_last_used(&shared.endpoint, signer, &k.access_key_id)
            })
            .await?;
            with_use.push((k, used.map(|(t, _)| t)));
        }
        out.push(checks::UserKeys {
            user,
            keys: with_use,
        });
    }
    Ok(out)
}

/// A call of an account's checks that failed, as a finding.
fn call_failed(id: &str, arn: &str, action: &str, e: &aws::Error) -> Finding {
    let (kind, fix) = match (action, e) {
        (_, aws::Error::Throttled { .. }) => (
            "throttled",
            "run the drill again later, or with a lower --concurrency",
        ),
        (_, aws::Error::Unreachable { .. }) => (
            "unreachable",
            "check the network path to AWS and run the drill again for this account",
        ),
        ("AssumeRole", aws::Error::RoleDenied { message, .. })
            if message.contains("SetSourceIdentity") =>
        {
            return Finding::account(
                id,
                "trust-no-source-identity",
                format!("AssumeRole of {arn} with a SourceIdentity was refused: every break-glass hand-out would be: {message}"),
                "allow sts:SetSourceIdentity for the break-glass user in the role's trust policy",
            )
        }
        ("AssumeRole", aws::Error::RoleDenied { .. }) => (
            "role-denied",
            "deploy the break-glass role in this account (the guardrails StackSet), trusting the break-glass user with MFA",
        ),
        ("GetRole", aws::Error::Denied { code, .. }) if code == "NoSuchEntity" => (
            "role-missing",
            "deploy the break-glass role in this account (the guardrails StackSet), trusting the break-glass user with MFA",
        ),
        ("GetRole", aws::Error::Denied { code, .. }) if code == "AccessDenied" => (
            "role-unreadable",
            "allow iam:GetRole on the role itself to the role, so that the drill can read its trust policy",
        ),
        _ => ("call-failed", "look at the error, fix it and run the drill again"),
    };
    Finding::account(id, kind, format!("{action} failed: {e}"), fix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns_follow_the_users_partition() {
        let shared = Shared {
            endpoint: Endpoint::new("cn-north-1", None),
            base: Creds {
                id: "ASIA".into(),
                secret: SecretString::from("s"),
                token: SecretString::from("t"),
            },
            partition: "aws-cn".into(),
            session_name: "a+b".into(),
            source_identity: "a+b".into(),
            users: vec![],
            max_session_secs: 3600,
            sts: Pace::new(1),
            iam: Pace::new(2),
            budget: Duration::from_secs(1),
            audit_keys: None,
            rule: None,
            role_policies: Vec::new(),
        };
        assert_eq!(
            role_arn(&shared, "111122223333", "BreakGlass"),
            "arn:aws-cn:iam::111122223333:role/BreakGlass"
        );
    }
}
