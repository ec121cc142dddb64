//! What a drill found, and the report the security team reads: Markdown (findings first, each
//! with what to fix) and JSON. No secret is in either: access key ids are masked.

use serde::Serialize;

use crate::audit::rfc3339;
use crate::aws::iam::UserFacts;

/// One thing wrong, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The member account it is about; `None`: the break-glass user or the organization.
    pub account: Option<String>,
    /// A stable code (`role-missing`, `trust-no-mfa`…), for scripts.
    pub kind: &'static str,
    /// What is wrong, one sentence.
    pub what: String,
    /// What to do, one sentence.
    pub fix: String,
}

impl Finding {
    /// A finding about the break-glass user or the organization.
    pub fn user(kind: &'static str, what: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            account: None,
            kind,
            what: what.into(),
            fix: fix.into(),
        }
    }

    /// A finding about member account `account`.
    pub fn account(
        account: &str,
        kind: &'static str,
        what: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            account: Some(account.to_owned()),
            kind,
            what: what.into(),
            fix: fix.into(),
        }
    }
}

/// How one account's checks ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Every check passed.
    Passed,
    /// At least one finding.
    Findings,
    /// Not tried: the account is suspended or closing.
    Skipped,
    /// Not tried: the drill was stopped first.
    NotTried,
}

impl Outcome {
    /// As the report's table words it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Passed => "passed",
            Self::Findings => "FINDINGS",
            Self::Skipped => "skipped",
            Self::NotTried => "not tried",
        }
    }
}

/// One member account's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountResult {
    /// The 12-digit id.
    pub id: String,
    /// Its name (from Organizations; empty for a listed id).
    pub name: String,
    /// The role tried.
    pub role_arn: String,
    /// How it ended.
    pub outcome: Outcome,
    /// The findings (also in [`Report::findings`]).
    pub findings: Vec<Finding>,
    /// The role's attached managed policies, when read.
    pub attached_policies: Vec<String>,
    /// The role's maximum session duration, when read.
    pub max_session_secs: Option<u64>,
    /// Throttled answers on the way.
    pub throttled: u32,
    /// Time the checks took, milliseconds.
    pub millis: u64,
}

/// The break-glass user as the drill saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UserCheck {
    /// Its ARN.
    pub arn: String,
    /// MFA devices, console password, policies; `None` when IAM could not be read.
    pub facts: Option<UserFacts>,
    /// The vault's slots' MFA devices.
    pub vault_devices: Vec<String>,
    /// Its access keys: masked id, status, age in days.
    pub keys: Vec<(String, &'static str, u64)>,
    /// The vault's key, masked.
    pub vault_key: String,
}

/// A whole drill.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The profile drilled.
    pub profile: String,
    /// The password holder (custodians joined by `+`) and the token holder.
    pub holders: (String, String),
    /// Why, as recorded.
    pub reason: String,
    /// Start and end, Unix seconds.
    pub started: u64,
    /// End, Unix seconds.
    pub ended: u64,
    /// Where the accounts came from.
    pub source: String,
    /// The role name tried (besides per-account overrides).
    pub role: String,
    /// The break-glass user.
    pub user: UserCheck,
    /// Every finding, the user's and the organization's first.
    pub findings: Vec<Finding>,
    /// Every account, in the order listed.
    pub accounts: Vec<AccountResult>,
    /// Stopped (Ctrl-C) before every account was tried.
    pub stopped: bool,
    /// STS requests sent, and how many AWS throttled.
    pub requests: u64,
    /// Throttled answers (retried).
    pub throttled: u64,
}

/// Counts of a report, for the audit record and the summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Accounts listed.
    pub accounts: usize,
    /// Accounts that passed every check.
    pub passed: usize,
    /// Accounts with findings.
    pub failed: usize,
    /// Suspended or closing accounts, not tried.
    pub skipped: usize,
    /// Accounts not tried because the drill was stopped.
    pub not_tried: usize,
    /// Findings in all (the user's included).
    pub findings: usize,
}

impl Report {
    /// The counts.
    pub fn counts(&self) -> Counts {
        let n = |o: Outcome| self.accounts.iter().filter(|a| a.outcome == o).count();
        Counts {
            accounts: self.accounts.len(),
            passed: n(Outcome::Passed),
            failed: n(Outcome::Findings),
            skipped: n(Outcome::Skipped),
            not_tried: n(Outcome::NotTried),
            findings: self.findings.len(),
        }
    }

    /// One line: "50 accounts: 47 passed, 3 with findings, 0 skipped; 4 findings".
    pub fn summary(&self) -> String {
        let c = self.counts();
        let mut s = format!(
            "{} account{}: {} passed, {} with findings, {} skipped",
            c.accounts,
            if c.accounts == 1 { "" } else { "s" },
            c.passed,
            c.failed,
            c.skipped
        );
        if c.not_tried > 0 {
            s += &format!(", {} not tried (stopped)", c.not_tried);
        }
        s += &format!(
            "; {} finding{}",
            c.findings,
            if c.findings == 1 { "" } else { "s" }
        );
        s
    }

    /// The report as JSON.
    pub fn json(&self) -> String {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        v["counts"] = serde_json::to_value(self.counts()).unwrap_or_default();
        serde_json::to_string_pretty(&v).unwrap_or_default()
    }

    /// The report as Markdown for the security team.
    pub fn markdown(&self) -> String {
        let cell = |s: &str| s.replace('|', "\\|").replace(['\n', '\r'], " ");
        let mut m = String::new();
        m += &format!("# Break-glass drill: profile `{}`\n\n", self.profile);
        m += &format!(
            "- **When:** {} to {}\n",
            rfc3339(self.started),
            rfc3339(self.ended)
        );
        m += &format!(
            "- **Who:** {} (password) and {} (token)\n",
            cell(&self.holders.0),
            cell(&self.holders.1)
        );
        m += &format!("- **Why:** {}\n", cell(&self.reason));
        m += &format!("- **Break-glass user:** `{}`\n", self.user.arn);
        m += &format!("- **Accounts:** {}; role `{}`\n", self.source, self.role);
        m += &format!("- **Result:** {}\n", self.summary());
        if self.throttled > 0 {
            m += &format!(
                "- **Throttling:** {} of {} STS requests were throttled and retried\n",
                self.throttled, self.requests
            );
        }
        if self.stopped {
            m += "- **Stopped** before every account was tried: this report is partial.\n";
        }
        m += "\n## Findings\n\n";
        if self.findings.is_empty() {
            m += "None: break-glass access works in every account tried.\n";
        } else {
            m += "| Where | Finding | What to fix |\n|---|---|---|\n";
            for f in &self.findings {
                m += &format!(
                    "| {} | {} (`{}`) | {} |\n",
                    f.account.as_deref().unwrap_or("break-glass user"),
                    cell(&f.what),
                    f.kind,
                    cell(&f.fix)
                );
            }
        }
        m += "\n## The break-glass user\n\n";
        let u = &self.user;
        m += &format!("- Vault key: {}\n", u.vault_key);
        for (id, status, age) in &u.keys {
            m += &format!("- Access key {id}: {status}, {age} days old\n");
        }
        m += &format!("- MFA devices in the vault: {}\n", list(&u.vault_devices));
        match &u.facts {
            Some(f) => {
                m += &format!("- MFA devices in IAM: {}\n", list(&f.mfa_devices));
                m += &format!(
                    "- Console password: {}\n",
                    if f.console_password {
                        "yes (anyone who knows it signs in without the two-person rule, with the MFA device alone)"
                    } else {
                        "none"
                    }
                );
                m += &format!("- Attached policies: {}\n", list(&f.attached_policies));
                m += &format!("- Inline policies: {}\n", list(&f.inline_policies));
            }
            None => m += "- IAM could not be read (see the findings).\n",
        }
        m += "\n## Accounts\n\n| Account | Name | Result | Max session | Findings |\n|---|---|---|---|---|\n";
        for a in &self.accounts {
            m += &format!(
                "| {} | {} | {} | {} | {} |\n",
                a.id,
                cell(&a.name),
                a.outcome.label(),
                a.max_session_secs
                    .map_or_else(|| "-".to_owned(), |s| format!("{s} s")),
                if a.findings.is_empty() {
                    "-".to_owned()
                } else {
                    a.findings
                        .iter()
                        .map(|f| f.kind)
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            );
        }
        m
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items
            .iter()
            .map(|i| format!("`{i}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let bad = Finding::account(
            "100000000002",
            "trust-no-mfa",
            "the trust policy admits the break-glass user without MFA",
            "add the condition Bool aws:MultiFactorAuthPresent true",
        );
        Report {
            profile: "prod".into(),
            holders: ("Alice".into(), "Bob | Jr".into()),
            reason: "quarterly drill".into(),
            started: 1_800_000_000,
            ended: 1_800_000_010,
            source: "the organization (ListAccounts)".into(),
            role: "BreakGlass".into(),
            user: UserCheck {
                arn: "arn:aws:iam::123456789012:user/breakglass".into(),
                ..UserCheck::default()
            },
            findings: vec![bad.clone()],
            accounts: vec![
                AccountResult {
                    id: "100000000001".into(),
                    name: "a".into(),
                    role_arn: "arn:aws:iam::100000000001:role/BreakGlass".into(),
                    outcome: Outcome::Passed,
                    findings: vec![],
                    attached_policies: vec![],
                    max_session_secs: Some(3600),
                    throttled: 0,
                    millis: 3,
                },
                AccountResult {
                    id: "100000000002".into(),
                    name: "b".into(),
                    role_arn: "arn:aws:iam::100000000002:role/BreakGlass".into(),
                    outcome: Outcome::Findings,
                    findings: vec![bad],
                    attached_policies: vec![],
                    max_session_secs: Some(3600),
                    throttled: 0,
                    millis: 3,
                },
            ],
            ..Report::default()
        }
    }

    #[test]
    fn the_markdown_puts_findings_first_with_their_fix_and_escapes_cells() {
        let m = sample().markdown();
        let findings = m.find("## Findings").unwrap();
        let accounts = m.find("## Accounts").unwrap();
        assert!(findings < accounts);
        assert!(m.contains("| 100000000002 | the trust policy admits the break-glass user without MFA (`trust-no-mfa`) | add the condition"));
        assert!(m.contains("Bob \\| Jr"), "{m}");
        assert!(m.contains("2 accounts: 1 passed, 1 with findings, 0 skipped; 1 finding"));
    }

    #[test]
    fn the_json_carries_the_counts_and_every_account() {
        let v: serde_json::Value = serde_json::from_str(&sample().json()).unwrap();
        assert_eq!(v["counts"]["passed"], 1);
        assert_eq!(v["counts"]["failed"], 1);
        assert_eq!(v["accounts"][1]["outcome"], "findings");
        assert_eq!(v["findings"][0]["kind"], "trust-no-mfa");
    }
}
