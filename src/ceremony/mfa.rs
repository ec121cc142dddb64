//! Which TOTP window to send: never one already sent for the same MFA serial. The last window
//! used per serial is kept in `$XDG_STATE_HOME/breakglass/mfa-windows.json` (not secret).

use std::collections::BTreeMap;
use std::path::Path;

use super::{Error, Prompt};
use crate::clock::Clock;
use crate::files;
use crate::token::oath::{self, Session};

/// The TOTP period of AWS virtual MFA devices, in seconds.
pub const PERIOD: u64 = 30;

/// Last time step sent, per MFA serial.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Windows(BTreeMap<String, u64>);

impl Windows {
    /// Reads the file; a missing or unreadable one reads as empty.
    pub fn load(path: &Path) -> Self {
        std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .map(Self)
            .unwrap_or_default()
    }

    /// Writes the file atomically.
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        let write = |source| Error::Write {
            path: path.display().to_string(),
            source,
        };
        let text = serde_json::to_vec_pretty(&self.0)
            .map_err(std::io::Error::from)
            .map_err(write)?;
        files::atomic_write(path, &text).map_err(write)
    }

    /// The last time step sent for `serial`.
    pub fn last(&self, serial: &str) -> Option<u64> {
        self.0.get(serial).copied()
    }

    /// Records a sent step. A bogus future entry (see [`choose_step`]) is replaced.
    pub fn record(&mut self, serial: &str, step: u64) {
        let e = self.0.entry(serial.to_owned()).or_insert(step);
        *e = if *e > step.saturating_add(1) {
            step
        } else {
            (*e).max(step)
        };
    }
}

/// The step to use now: the current one, or the next one when the current was already sent
/// (AWS accepts the adjacent window); `None` when the next one was used too: wait for it.
/// A recorded step further ahead cannot come from a working clock (it was ahead when it was
/// sent, or the file was edited): it is ignored rather than blocking activations for ages.
pub fn choose_step(now: u64, last_used: Option<u64>) -> Option<u64> {
    let current = now / PERIOD;
    match last_used {
        Some(last) if last > current.saturating_add(1) => Some(current),
        Some(last) if last > current => None,
        Some(last) if last == current => Some(current.saturating_add(1)),
        _ => Some(current),
    }
}

/// Reads the code for `step` from the token (a touch when the account needs one).
pub fn code_for_step(
    session: &mut Session<'_>,
    account: &str,
    step: u64,
    prompt: &mut dyn Prompt,
) -> Result<zeroize::Zeroizing<String>, Error> {
    let accounts = session.list()?;
    let acct = oath::find(&accounts, account)?.clone();
    prompt.touch_start("the MFA code");
    let code = session.totp(&acct.id, acct.period, step * PERIOD);
    prompt.touch_end();
    Ok(zeroize::Zeroizing::new(code?.expose().to_owned()))
}

/// Waits until a step after `last` begins, counting down.
pub fn wait_past(last: u64, now: &dyn Clock, prompt: &mut dyn Prompt) {
    let start_next = last.saturating_add(1).saturating_mul(PERIOD);
    let t = now.now();
    if t < start_next {
        prompt.wait(
            start_next - t,
            "waiting for a fresh MFA time window (a code is never sent twice)",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_reuses_a_window() {
        assert_eq!(choose_step(3000, None), Some(100));
        assert_eq!(choose_step(3000, Some(99)), Some(100));
        assert_eq!(choose_step(3000, Some(100)), Some(101));
        assert_eq!(choose_step(3000, Some(101)), None);
        // A step from a clock that was ahead (or an edited file) does not block for ages.
        assert_eq!(choose_step(3000, Some(5000)), Some(100));
        assert_eq!(choose_step(3000, Some(u64::MAX)), Some(100));
    }

    #[test]
    fn state_keeps_the_highest_plausible_step_per_serial() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s/mfa-windows.json");
        let mut w = Windows::load(&path);
        w.record("arn:a", 5);
        w.record("arn:a", 4);
        w.record("arn:b", 9);
        w.record("arn:c", 1_000_000);
        w.record("arn:c", 7);
        w.save(&path).unwrap();
        let back = Windows::load(&path);
        assert_eq!(back.last("arn:a"), Some(5));
        assert_eq!(back.last("arn:b"), Some(9));
        assert_eq!(back.last("arn:c"), Some(7));
        assert_eq!(back.last("arn:d"), None);
    }
}
