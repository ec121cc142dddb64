//! `breakglass rekey PROFILE`: change the vault's custodians, a custodian's passphrase or its
//! token slots, without touching AWS.

use clap::Args;

use breakglass::ceremony::handout::Plugged;
use breakglass::ceremony::names::printable;
use breakglass::ceremony::rekey::{self, OtherReaders, What};
use breakglass::ceremony::transcript::{host_name, Head, Recorder, Transcript};
use breakglass::ceremony::{enroll, runtime, Error as CError};
use breakglass::secure::SystemRandom;

use super::error::CliError;
use super::term::TtyPrompt;
use super::{clock, load};

#[derive(Debug, Args)]
pub struct RekeyArgs {
    /// The profile whose vault changes.
    profile: String,
    /// Change this custodian's passphrase: they are among the custodians present, open the
    /// vault with their current passphrase, then type the new one twice.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["custodians", "remove_token"])]
    passphrase: Option<String>,
    /// The custodian set after the change, by name (repeat for each, in order; at most 16):
    /// custodians present keep their passphrase, every other one types a new one now. The
    /// shares are dealt anew, which makes a new data key.
    #[arg(long = "custodian", value_name = "NAME")]
    custodians: Vec<String>,
    /// With --custodian: how many of them must be present to open the vault.
    #[arg(long, value_name = "M", requires = "custodians")]
    threshold: Option<u8>,
    /// Convert a vault with one passphrase (format 1 or 2) to custodians (format 3), with
    /// --custodian and --threshold; the password holder, if named among them, keeps the
    /// passphrase. Every token slot is sealed again: bring every enrolled token (--other-reader).
    #[arg(long, requires = "custodians")]
    upgrade: bool,
    /// Remove a token's key slot, by slot id, label or MFA device ARN. The slots that stay get
    /// a new token key: their tokens must be at hand (--other-reader), except the one that
    /// opens the vault.
    #[arg(long, value_name = "SLOT")]
    remove_token: Option<String>,
    /// The reader of the token that opens the vault (default: the profile's, or the enrolled
    /// token plugged in).
    #[arg(long, value_name = "NAME")]
    reader: Option<String>,
    /// A reader holding another enrolled token, for the slots that must be sealed again
    /// (repeat for each).
    #[arg(long = "other-reader", value_name = "NAME")]
    other_readers: Vec<String>,
    /// Add a backup token's key slot: the same ceremony as `breakglass enroll PROFILE
    /// --add-token`, with its flags (--reader for the new token, --from-reader for an
    /// enrolled one, --create-mfa --user NAME or --mfa-serial ARN, --label, --factor).
    #[arg(long)]
    add_token: bool,
    /// Why the people or tokens change (asked when not given).
    #[arg(long)]
    reason: Option<String>,
    /// The incident's or change's ticket (goes to the audit log and the notices); asked when
    /// the profile has require_ticket and none is given.
    #[arg(long, value_name = "ID")]
    ticket: Option<String>,
    /// Write a Markdown transcript of the ceremony for the witnesses (no secret in it).
    #[arg(long, value_name = "FILE")]
    transcript: Option<std::path::PathBuf>,
}

/// The change asked for, checked before any I/O.
fn what(args: &RekeyArgs) -> Result<What, CliError> {
    let usage = |what: &str| {
        CliError::usage(
            what.to_owned(),
            "name one change: --passphrase NAME, --custodian NAME … --threshold M (with --upgrade for a vault with one passphrase), or --remove-token SLOT",
        )
    };
    if let Some(name) = &args.passphrase {
        return Ok(What::Passphrase {
            custodian: name.trim().to_owned(),
        });
    }
    if !args.custodians.is_empty() {
        let Some(threshold) = args.threshold.or((args.custodians.len() == 1).then_some(1)) else {
            return Err(CliError::usage(
                format!(
                    "{} custodians were named but not how many must be present",
                    args.custodians.len()
                ),
                "add --threshold M, from 1 to the number of custodians",
            ));
        };
        let names: Vec<String> = args
            .custodians
            .iter()
            .map(|n| n.trim().to_owned())
            .collect();
        enroll::check_custodians(&enroll::NewCustodianSet {
            names: names.clone(),
            threshold,
        })
        .map_err(|e| {
            CliError::usage(
                e.to_string(),
                "name each custodian once with --custodian NAME, and --threshold from 1 to their number",
            )
        })?;
        return Ok(What::Custodians {
            names,
            threshold,
            upgrade: args.upgrade,
            remove: args.remove_token.iter().cloned().collect(),
        });
    }
    match &args.remove_token {
        Some(slot) => Ok(What::RemoveToken { slot: slot.clone() }),
        None => Err(usage("rekey was given no change")),
    }
}

pub fn rekey_cmd(args: RekeyArgs) -> Result<(), CliError> {
    let what = what(&args)?;
    if args.reason.as_deref().is_some_and(|r| r.trim().is_empty()) {
        return Err(CError::EmptyReason.into());
    }
    super::check_transcript_path(args.transcript.as_deref())?;
    let (paths, profile) = load(&args.profile)?;
    let mut tty = TtyPrompt::for_ceremony()?;
    tty.say(&format!(
        "breakglass: rekey of profile {:?}: the vault's people or tokens change; nothing is sent to AWS.",
        profile.name
    ));
    let rng = SystemRandom::new();
    let req = rekey::Request {
        profile: &profile,
        paths: &paths,
        reason: args.reason.as_deref(),
        ticket: args.ticket.as_deref(),
        what,
        now: clock(),
        rng: &rng,
    };
    let mut token = Plugged::new(args.reader.as_deref().or(profile.reader.as_deref()));
    let mut others = OtherReaders::new(&args.other_readers);
    let head_before = Head::of(&paths.audit_log());
    let started = clock().now();
    let mut recorder = Recorder::new(&mut tty, clock());
    let result = runtime()?.block_on(rekey::rekey(&req, &mut token, &mut others, &mut recorder));
    let (steps, people, typed_reason) = (recorder.steps, recorder.people, recorder.reason);
    if let Some(path) = &args.transcript {
        let mut facts = vec![("vault".to_owned(), profile.vault.display().to_string())];
        if let Ok(r) = &result {
            for c in &r.changed {
                facts.push(("changed".into(), c.clone()));
            }
            for u in &r.unchanged {
                facts.push(("unchanged".into(), u.clone()));
            }
        }
        let t = Transcript {
            ceremony: "Rekey".into(),
            profile: profile.name.clone(),
            started,
            ended: clock().now(),
            people,
            reason: args
                .reason
                .clone()
                .or(typed_reason)
                .unwrap_or_default()
                .trim()
                .to_owned(),
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
        "Done, with {} and token holder {}. The vault {} was replaced.",
        report
            .custodians
            .iter()
            .map(|c| printable(c).into_owned())
            .collect::<Vec<_>>()
            .join(", "),
        printable(&report.token_holder),
        report.vault
    ));
    for c in &report.changed {
        tty.say(&format!("  changed:   {c}"));
    }
    for u in &report.unchanged {
        tty.say(&format!("  unchanged: {u}"));
    }
    tty.say(&format!(
        "Old copies of the vault file (backups, a second safe or laptop) still open with the old {}until the access key is rotated. To make them worthless in this sitting, run `breakglass rotate {} --now` next (the new quorum and a token), then replace every copy with {}.",
        if report.removed_something { "people and tokens, including those just removed, " } else { "people and tokens " },
        profile.name,
        report.vault
    ));
    Ok(())
}
