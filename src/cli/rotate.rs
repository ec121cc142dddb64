//! `breakglass rotate PROFILE`: the key rotation ceremony; `--finish` retires the old key on
//! its days; `--check` says what is due, with no ceremony and no secret.

use std::time::Duration;

use breakglass::secure::SystemRandom;
use clap::Args;

use breakglass::audit::rfc3339;
use breakglass::aws::{self, Endpoint};
use breakglass::ceremony::handout::Plugged;
use breakglass::ceremony::names::printable;
use breakglass::ceremony::rotate::{self, Due, Mode};
use breakglass::ceremony::transcript::{host_name, Head, Recorder, Transcript};
use breakglass::ceremony::{runtime, unlock, Error as CError, Prompt};
use breakglass::config;
use breakglass::secure::mask_key_id;

use super::error::{exit, CliError};
use super::term::TtyPrompt;
use super::{clock, load, paths};

#[derive(Debug, Args)]
pub struct RotateArgs {
    /// The profile (several, or none for all, with --check).
    profiles: Vec<String>,
    /// Say what is due (rotation, the old key's retirement, a stale copy) without a ceremony
    /// or a secret; exit 0 when nothing is, 5 when something is due, 6 when a person must look.
    #[arg(long, conflicts_with_all = ["finish", "now", "reason"])]
    check: bool,
    /// With --check: print JSON.
    #[arg(long, requires = "check")]
    json: bool,
    /// Retire the old key of the last rotation, the steps whose day has come.
    #[arg(long)]
    finish: bool,
    /// Deactivate and delete the old key at once, once the new one is proven and sealed
    /// (with --finish: whatever its days).
    #[arg(long)]
    now: bool,
    /// Why the key is rotated (goes to the audit log); asked at the prompt when missing.
    #[arg(long)]
    reason: Option<String>,
    /// The incident's or change's ticket (goes to the audit log and the notices); asked when
    /// the profile has require_ticket and none is given.
    #[arg(long, value_name = "ID")]
    ticket: Option<String>,
    /// Use the reader whose name contains this text (overrides the profile).
    #[arg(long, value_name = "NAME")]
    reader: Option<String>,
    /// Write a Markdown transcript of the ceremony for the witnesses (no secret in it).
    #[arg(long, value_name = "FILE", conflicts_with = "check")]
    transcript: Option<std::path::PathBuf>,
    /// How long to wait for IAM to make the new key work, seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=600))]
    propagation_timeout: u64,
}

pub fn rotate_cmd(args: RotateArgs) -> Result<(), CliError> {
    if args.check {
        return check_cmd(&args.profiles, args.json);
    }
    let [name] = args.profiles.as_slice() else {
        return Err(CliError::new(
            "rotate takes exactly one profile",
            "name the profile to rotate: breakglass rotate PROFILE (several only with --check)",
            exit::USAGE,
        ));
    };
    let (paths, profile) = load(name)?;
    let now = clock().now();
    // Nothing to finish: say so before two people make an effort.
    let due = rotate::plan(&profile, &paths, now)?;
    if args.finish
        && !args.now
        && due.staged.is_some()
        && !due
            .actions
            .iter()
            .any(|a| a.ends_with("old key") || a == "finish interrupted rotation")
    {
        let (old, deactivate_at, delete_at) = due.staged.clone().unwrap_or_default();
        outln!(
            "Nothing is due yet for profile {:?}: the old key {} is deactivated on {} and deleted on {}. `breakglass rotate {} --finish --now` retires it today.",
            profile.name,
            mask_key_id(&old),
            rfc3339(deactivate_at),
            rfc3339(delete_at),
            profile.name
        )?;
        return Ok(());
    }
    if args.finish
        && due.staged.is_none()
        && !due
            .actions
            .iter()
            .any(|a| a == "finish interrupted rotation")
    {
        outln!(
            "No rotation of profile {:?} is waiting to be finished.",
            profile.name
        )?;
        return Ok(());
    }
    if let Some(reason) = &args.reason {
        if reason.trim().is_empty() {
            return Err(CError::EmptyReason.into());
        }
    }
    super::check_transcript_path(args.transcript.as_deref())?;
    let mut tty = TtyPrompt::for_ceremony()?;
    let mut mode = if args.finish {
        Mode::Finish { now: args.now }
    } else {
        Mode::Rotate { now: args.now }
    };
    // A rotation while the last one's old key is still staged: refused before anyone makes an
    // effort, unless its retirement is due, which the holders may do now instead.
    if let (Mode::Rotate { .. }, Some((old, deactivate_at, delete_at))) = (mode, &due.staged) {
        if !due.retiring_at_once {
            let unfinished = CError::RotationUnfinished {
                old_key: mask_key_id(old),
                deactivate_at: *deactivate_at,
                delete_at: *delete_at,
            };
            let step_due = due.actions.iter().any(|a| a.ends_with("old key"));
            if !step_due {
                return Err(unfinished.into());
            }
            let finish = tty.confirm(&format!(
                "The last rotation is not finished: its old key {} is due to be {} now. Finish it instead (the same ceremony; rotate again afterwards)?",
                mask_key_id(old),
                if due.actions.iter().any(|a| a == "deactivate old key") { "deactivated" } else { "deleted" }
            ))?;
            if !finish {
                return Err(unfinished.into());
            }
            mode = Mode::Finish { now: false };
        }
    }
    tty.say(&format!(
        "breakglass: {} of profile {:?}: two-person ceremony.",
        if matches!(mode, Mode::Finish { .. }) {
            "finishing the key rotation"
        } else {
            "key rotation"
        },
        profile.name
    ));
    let reason = args.reason.as_deref().map(str::trim);
    let req = rotate::Request {
        activation: unlock::Request {
            profile: &profile,
            paths: &paths,
            reason,
            ticket: args.ticket.as_deref(),
            requested_by: if matches!(mode, Mode::Finish { .. }) {
                "breakglass rotate --finish"
            } else {
                "breakglass rotate"
            },
            endpoint: Endpoint::of(&profile),
            now: clock(),
            rng: &SystemRandom::new(),
        },
        mode,
        propagation_timeout: Duration::from_secs(args.propagation_timeout),
    };
    let mut token = Plugged::new(args.reader.as_deref().or(profile.reader.as_deref()));
    let head_before = Head::of(&paths.audit_log());
    let started = clock().now();
    let mut recorder = Recorder::new(&mut tty, clock());
    let result = runtime()?.block_on(rotate::rotate(&req, &mut token, &mut recorder));
    let (steps, people, typed_reason) = (recorder.steps, recorder.people, recorder.reason);
    if let Some(path) = &args.transcript {
        let mut facts = vec![
            ("vault".to_owned(), profile.vault.display().to_string()),
            (
                "policy".to_owned(),
                format!(
                    "rotate after {} days, deactivate after {}, delete after {}",
                    profile.rotation.rotate_after_days,
                    profile.rotation.deactivate_after_days,
                    profile.rotation.delete_after_days
                ),
            ),
        ];
        if let Ok(r) = &result {
            facts.push(("token's MFA device".into(), r.mfa_serial.clone()));
            facts.push(("key at the start".into(), mask_key_id(&r.opened_key)));
            facts.push(("key at the end".into(), mask_key_id(&r.vault_key)));
            facts.push(("vault generation".into(), r.generation.to_string()));
            if let Some((old, deactivate_at, delete_at)) = &r.staged {
                facts.push((
                    "old key staged".into(),
                    format!(
                        "{}: deactivated on {}, deleted on {}",
                        mask_key_id(old),
                        rfc3339(*deactivate_at),
                        rfc3339(*delete_at)
                    ),
                ));
            }
        }
        let t = Transcript {
            ceremony: if matches!(mode, Mode::Finish { .. }) {
                "Key rotation, finishing".into()
            } else {
                "Key rotation".into()
            },
            profile: profile.name.clone(),
            started,
            ended: clock().now(),
            people,
            reason: reason
                .map(str::to_owned)
                .or(typed_reason)
                .unwrap_or_default(),
            host: host_name(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            facts,
            steps,
            result: match &result {
                Ok(_) => "completed".into(),
                Err(e) => format!("failed: {e}"),
            },
            head_before,
            head_after: Head::of(&paths.audit_log()),
        };
        super::save_transcript(path, &t, &mut tty);
    }
    let report = result?;
    tty.say(&format!(
        "Done, with {} and {}. The vault {} holds key {} (generation {}).",
        printable(&report.holders.0),
        printable(&report.holders.1),
        report.vault,
        mask_key_id(&report.vault_key),
        report.generation
    ));
    if report.replaced {
        tty.say(&format!(
            "Other copies of this vault (a second safe, a second laptop) still hold the old key{}: replace them with {}.",
            match &report.staged {
                Some((_, deactivate_at, _)) => format!(", which stops working on {}", rfc3339(*deactivate_at)),
                None => ", which no longer works".to_owned(),
            },
            report.vault
        ));
    }
    match &report.staged {
        Some((old, deactivate_at, delete_at)) => tty.say(&format!(
            "The old key {} stays active until {} and is deleted on {}: run `breakglass rotate {} --finish` on or after those days (`breakglass rotate --check` says when).",
            mask_key_id(old),
            rfc3339(*deactivate_at),
            rfc3339(*delete_at),
            profile.name
        )),
        None => tty.say("No old key is left in IAM."),
    }
    Ok(())
}

/// The worst of what is due, as an exit status.
fn status_of(due: &Due) -> u8 {
    if !due.problems.is_empty() {
        exit::ATTENTION
    } else if !due.actions.is_empty() {
        exit::DUE
    } else {
        0
    }
}

fn days(secs: u64) -> u64 {
    secs / config::RotationPolicy::DAY
}

fn check_cmd(names: &[String], json: bool) -> Result<(), CliError> {
    let paths = paths()?;
    let all = config::load_all(&paths)?;
    let profiles: Vec<&config::Profile> = if names.is_empty() {
        all.values().collect()
    } else {
        names
            .iter()
            .map(|n| config::load(&paths, n).map(|_| &all[n]))
            .collect::<Result<_, _>>()?
    };
    if profiles.is_empty() {
        return Err(CliError::new(
            format!("no profile in {}", paths.config.display()),
            "enrol one first: breakglass enroll PROFILE",
            exit::USAGE,
        ));
    }
    let now = clock().now();
    let auditor = auditor_signer();
    let mut code = 0;
    let mut out = Vec::new();
    for profile in profiles {
        let mut due = match rotate::plan(profile, &paths, now) {
            Ok(d) => d,
            Err(e) => {
                let e = CliError::from(e);
                outln!("{}: cannot check: {}", profile.name, e.what)?;
                code = code.max(exit::ATTENTION);
                continue;
            }
        };
        if let (Some((id, secret, token)), Some(key)) = (&auditor, due.key.clone()) {
            let signer = aws::Signer {
                access_key_id: id,
                secret_access_key: secret,
                session_token: token.as_ref(),
            };
            let endpoint = Endpoint::of(profile);
            let found = runtime()?.block_on(async {
                let (user, used) = aws::iam::access_key_last_used(&endpoint, &signer, &key).await?;
                let problems = rotate::drift(&due, &endpoint, &signer, &user).await?;
                Ok::<_, CError>((problems, used))
            });
            match found {
                Ok((problems, used)) => {
                    due.problems.extend(problems);
                    due.last_used = used;
                }
                Err(e) => due.problems.push(format!(
                    "AWS says nothing about the vault's key {} (it was deleted, or these credentials may not read it): {}",
                    mask_key_id(&key),
                    CliError::from(e).what
                )),
            }
        }
        code = code.max(status_of(&due));
        if json {
            out.push(serde_json::to_value(&due).unwrap_or_default());
            continue;
        }
        let key = due.key.as_deref().map_or(
            "unknown (version 1 vault: known after its first rotation)".to_owned(),
            mask_key_id,
        );
        let sealed = due.sealed_at.unwrap_or(due.created);
        outln!(
            "{}: key {key}, sealed {} ({} days ago), generation {}, vault {}",
            due.profile,
            rfc3339(sealed),
            days(now.saturating_sub(sealed)),
            due.generation.unwrap_or(0),
            due.vault
        )?;
        if let Some(at) = due.rotation_due {
            outln!(
                "  rotation {} {} (policy: {}/{}/{} days)",
                if now >= at { "due since" } else { "due on" },
                rfc3339(at),
                profile.rotation.rotate_after_days,
                profile.rotation.deactivate_after_days,
                profile.rotation.delete_after_days
            )?;
        }
        if let Some((old, deactivate_at, delete_at)) = &due.staged {
            outln!(
                "  old key {} staged: deactivated on {}, deleted on {}",
                mask_key_id(old),
                rfc3339(*deactivate_at),
                rfc3339(*delete_at)
            )?;
        }
        if let Some((when, service)) = &due.last_used {
            outln!(
                "  AWS: the vault's key was last used {} ({service})",
                rfc3339(*when)
            )?;
        }
        for p in &due.problems {
            outln!("  problem: {p}")?;
        }
        let next = if due.actions.iter().any(|a| a == "replace stale copy") {
            None
        } else if due.actions.iter().any(|a| a.ends_with("old key")) {
            Some(format!("breakglass rotate {} --finish", due.profile))
        } else if !due.actions.is_empty() {
            Some(format!("breakglass rotate {}", due.profile))
        } else {
            None
        };
        match next {
            Some(n) => outln!("  due: {}; next: {n}", due.actions.join(", "))?,
            None if due.actions.is_empty() => outln!("  nothing due")?,
            None => outln!("  due: {}", due.actions.join(", "))?,
        }
    }
    if json {
        outln!("{}", serde_json::Value::Array(out))?;
    }
    if code == 0 {
        Ok(())
    } else {
        Err(CliError::silent(code))
    }
}

/// Credentials to read IAM with for `--check` (an auditor's, from `AWS_ACCESS_KEY_ID` and
/// `AWS_SECRET_ACCESS_KEY`, with `AWS_SESSION_TOKEN` when set): never the vault's.
type Auditor = (String, secrecy::SecretString, Option<secrecy::SecretString>);

fn auditor_signer() -> Option<Auditor> {
    let id = std::env::var("AWS_ACCESS_KEY_ID").ok()?;
    let secret = std::env::var("AWS_SECRET_ACCESS_KEY").ok()?;
    let token = std::env::var("AWS_SESSION_TOKEN")
        .ok()
        .map(secrecy::SecretString::from);
    Some((id, secrecy::SecretString::from(secret), token))
}
