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

/// A warning for each profile whose key rotation (or a step of it) is due, from the vault's
/// clear facts and the rotation journal (`rotate --check` says more).
fn rotations_due(paths: &Paths) -> Vec<String> {
    let now = super::clock().now();
    config::load_all(paths)
        .unwrap_or_default()
        .values()
        .filter_map(|p| breakglass::ceremony::rotate::plan(p, paths, now).ok())
        .filter(|due| !due.actions.is_empty())
        .map(|due| {
            format!(
                "warning: profile {:?}: {} (`breakglass rotate --check {}` says more)",
                due.profile,
                due.actions.join(", "),
                due.profile
            )
        })
        .collect()
}

/// Each profile's last successful drill, with a warning when none is on record or it is
/// [`drill::DRILL_DUE_DAYS`] old.
fn drills(paths: &Paths) -> Vec<String> {
    use breakglass::ceremony::drill::{self, LastDrill};
    let now = super::clock().now();
    let log = paths.audit_log();
    config::load_all(paths)
        .unwrap_or_default()
        .values()
        .filter_map(|p| {
            let last = drill::last_success(&log, &p.name, now).ok()?;
            let text = match last {
                LastDrill::Never => format!(
                    "warning: profile {:?} has never passed a drill: run `breakglass drill {}`",
                    p.name, p.name
                ),
                LastDrill::At { time, days } if last.due() => format!(
                    "warning: profile {:?}: the last drill that passed was {days} days ago ({}); drill every {} days: `breakglass drill {}`",
                    p.name,
                    breakglass::audit::rfc3339(time),
                    drill::DRILL_DUE_DAYS,
                    p.name
                ),
                LastDrill::At { time, days } => format!(
                    "profile {:?}: last drill passed {days} days ago ({})",
                    p.name,
                    breakglass::audit::rfc3339(time)
                ),
            };
            Some(text)
        })
        .collect()
}

/// Where each profile's notices go, and how the last delivery went (from the audit log).
fn notices(paths: &Paths) -> Vec<String> {
    let log = breakglass::audit::Log::new(&paths.audit_log());
    config::load_all(paths)
        .unwrap_or_default()
        .values()
        .filter(|p| !p.notify.is_empty())
        .map(|p| {
            let channels: Vec<String> = breakglass::notify::channels(&p.notify)
                .into_iter()
                .map(|(c, required)| {
                    if required {
                        format!("{c} (required)")
                    } else {
                        c
                    }
                })
                .collect();
            let last = match log.last("notice", &p.name, false) {
                Ok(Some(r)) => {
                    let text = |k: &str| r.get(k).and_then(|v| v.as_str()).unwrap_or("?");
                    let outcome = text("outcome");
                    let how = if outcome == "success" {
                        "delivered".to_owned()
                    } else {
                        format!(
                            "NOT delivered ({})",
                            outcome.trim_start_matches("failure: ")
                        )
                    };
                    format!(
                        "; last delivery: the {} notice to {} at {}, {how}",
                        text("notice_of"),
                        text("channel"),
                        text("time")
                    )
                }
                Ok(None) => "; nothing sent yet".to_owned(),
                Err(e) => format!("; the last delivery cannot be read ({e})"),
            };
            format!(
                "profile {:?}: notices go to {}{last}",
                p.name,
                channels.join(", ")
            )
        })
        .collect()
}

/// Who and what opens each profile's vault, from its clear header (nothing is opened): the
/// custodians and threshold, or one passphrase, and the token slots.
fn vaults(paths: &Paths) -> Vec<String> {
    config::load_all(paths)
        .unwrap_or_default()
        .values()
        .filter_map(|p| {
            let v = breakglass::vault::file::read(&p.vault).ok()?;
            let people = match v.custodians() {
                Some((m, members)) => format!(
                    "{m} of its {} custodians ({})",
                    members.len(),
                    members
                        .iter()
                        .map(|c| printable(&c.name).into_owned())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None => "its passphrase".to_owned(),
            };
            let slots: Vec<String> = v
                .slots()
                .map(|s| format!("{} \"{}\" ({})", s.id, printable(&s.label), s.kind.name()))
                .collect();
            Some(format!(
                "profile {:?}: the vault (format {}) opens with {people} and a token: slots {}",
                p.name,
                v.version(),
                slots.join(", ")
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
        for line in rotations_due(&paths) {
            outln!("{line}")?;
        }
        for line in vaults(&paths) {
            outln!("{line}")?;
        }
        for line in drills(&paths) {
            outln!("{line}")?;
        }
        for line in notices(&paths) {
            outln!("{}", printable(&line))?;
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
    out!("{}", human(&status))?;
    Ok(())
}

/// The agent's status as text. Everything in it comes from the agent, which took it from the
/// breakglass process that led a ceremony: printed escaped all the same, so that no name can
/// carry an escape sequence to the terminal.
fn human(status: &breakglass::agent::status::Status) -> String {
    use std::fmt::Write;
    let mut text = String::new();
    // Writing to a String cannot fail.
    macro_rules! say {
        ($($arg:tt)*) => {{
            let _ = writeln!(text, $($arg)*);
        }};
    }
    say!(
        "agent: pid {}, socket {}, memory {}",
        status.pid,
        printable(&status.socket),
        match &status.memory_lock_error {
            None if status.memory_locked => "locked (never swapped)".to_owned(),
            e => format!("NOT locked: {}", printable(e.as_deref().unwrap_or("?"))),
        }
    );
    if status.profiles.is_empty() {
        say!("no profile is unlocked");
    }
    for p in &status.profiles {
        let name = printable(&p.profile);
        if let Some(r) = &p.running {
            say!("{name}: {} running in pid {}", printable(&r.what), r.pid);
        }
        let Some(b) = &p.session else {
            continue;
        };
        say!(
            "{name}: unlocked by {} (password) and {} (token) at {}; session until {}; wiped if idle at {}",
            printable(&b.password_holder),
            printable(&b.token_holder),
            printable(&b.activated),
            printable(&b.expires),
            printable(&b.idle_wipe),
        );
        say!("    identity {}", printable(&b.identity));
        say!(
            "    stored by process {} ({})",
            b.stored_by_pid,
            printable(&b.stored_by_exe)
        );
        if let Some(r) = &p.role {
            say!(
                "    role {} until {}",
                printable(&r.assumed_role_arn),
                printable(&r.expires)
            );
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use breakglass::agent::status::{ProfileStatus, SessionStatus, Status};

    /// The agent takes names only from the breakglass program, which refuses control
    /// characters at entry; should one get there anyway, `status` does not pass it raw.
    #[test]
    fn escape_sequences_in_what_the_agent_holds_are_printed_escaped() {
        let status = Status {
            pid: 7,
            uid: 1000,
            socket: "/run/user/1000/breakglass/agent.sock".into(),
            now: "2026-12-02T00:00:00Z".into(),
            memory_locked: true,
            memory_lock_error: None,
            hardening_failures: Vec::new(),
            idle_timeout_minutes: 60,
            profiles: vec![ProfileStatus {
                profile: "prod".into(),
                session: Some(SessionStatus {
                    identity: "arn:aws:iam::123456789012:user/breakglass\x1b[2J".into(),
                    password_holder: "Eve\x1b[31m".into(),
                    token_holder: "Mallory\x1b]0;pwned\x07\u{202e}".into(),
                    mfa_serial: "arn:aws:iam::123456789012:mfa/breakglass".into(),
                    activated: "2026-12-02T00:00:00Z".into(),
                    expires: "2026-12-02T01:00:00Z".into(),
                    temporary_access_key_id: "ASIAEXAMPLE000000001".into(),
                    idle_wipe: "2026-12-02T01:00:00Z".into(),
                    stored_by_pid: 42,
                    stored_by_exe: "/usr/bin/breakglass".into(),
                }),
                role: None,
                running: None,
            }],
        };
        let out = human(&status);
        assert!(!out.contains('\x1b') && !out.contains('\x07'), "{out:?}");
        assert!(
            out.contains(
                "unlocked by Eve\\u{1b}[31m (password) and Mallory\\u{1b}]0;pwned\\u{7}\\u{202e} (token)"
            ),
            "{out}"
        );
        assert!(out.contains("user/breakglass\\u{1b}[2J"), "{out}");
        assert!(
            out.contains("stored by process 42 (/usr/bin/breakglass)"),
            "{out}"
        );
    }
}
