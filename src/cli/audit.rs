//! `breakglass audit verify`: check the audit log's hash chain, across its segments.

use breakglass::audit::{self, Error};

use super::error::{exit, CliError};

pub fn verify_cmd(expect_head: Option<&str>) -> Result<(), CliError> {
    let paths = breakglass::config::Paths::from_env()?;
    let path = paths.audit_log();
    let anchor = match expect_head {
        Some(h) => Some(anchor(h)?),
        None => None,
    };
    let v = audit::Log::new(&path)
        .verify_anchored(anchor.as_deref())
        .map_err(verify_error)?;
    if let Some(h) = &anchor {
        let Some(at) = v.anchor_at else {
            return Err(CliError::new(
                format!(
                    "{}: the chain is intact but does not reach the expected head {h}: records were cut off the end, the log was emptied or replaced, or it was rewritten",
                    path.display()
                ),
                "treat the log as tampered: keep a copy, compare with your off-machine copies, tell the security team",
                exit::FAILURE,
            ));
        };
        outln!(
            "{}: the expected head is record {at} of {}; nothing up to it was changed",
            path.display(),
            v.records
        )?;
    }
    let n = v.records;
    match v.segments {
        0 => outln!("{}: {n} records, hash chain intact", path.display())?,
        k => outln!(
            "{}: {n} records, hash chain intact across {k} segment(s) ({}.1 to {}.{k}) and the live log",
            path.display(),
            path.display(),
            path.display(),
        )?,
    }
    for d in &v.dangling {
        eprintln!(
            "breakglass: warning: the activation of profile {} started at {} (attempt {}, process {}) has no outcome record: it was killed or crashed, or it is still running",
            d.profile, d.time, d.attempt, d.pid
        );
    }
    for torn in &v.torn {
        eprintln!(
            "breakglass: warning: {} holds a line that a crash cut off, set aside by the append after it; it is outside the chain (not verified): read it, keep it with the log",
            torn.display()
        );
    }
    Ok(())
}

/// A head as typed: 64 hex digits (any case).
fn anchor(h: &str) -> Result<String, CliError> {
    let h = h.trim().to_ascii_lowercase();
    if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(CliError::usage(
            format!("{h:?} is not an audit head (64 hex digits)"),
            "copy the head that `breakglass audit head` printed",
        ));
    }
    Ok(h)
}

/// `breakglass audit head`: the chain's head, checked first.
pub fn head_cmd() -> Result<(), CliError> {
    let paths = breakglass::config::Paths::from_env()?;
    let path = paths.audit_log();
    let v = audit::verify(&path).map_err(verify_error)?;
    outln!("{} ({} records, {})", v.head, v.records, path.display())?;
    Ok(())
}

fn verify_error(e: Error) -> CliError {
    let next = match &e {
        Error::Torn { .. } => {
            "nothing to edit by hand: the next record written (any unlock, hand-out or agent event) moves that line to a torn- file beside the log and chains on from the last whole record; run `breakglass audit verify` again then"
        }
        Error::Read { .. } | Error::Write { .. } => "fix the log's permissions (`chmod 600` the files, `chmod 700` the folder), then verify again",
        _ => "treat the log as tampered: keep a copy, compare with your off-machine copies, tell the security team",
    };
    CliError::new(e.to_string(), next, exit::FAILURE)
}
