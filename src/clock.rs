//! The one clock seam: every flow that needs the time (TOTP windows, session expiry, audit
//! timestamps) takes a [`Clock`], so that tests and the demo can move time forward without
//! waiting for it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock time in Unix seconds.
pub trait Clock: Send + Sync {
    /// Seconds since the Unix epoch.
    fn now(&self) -> u64;
}

/// The system clock. Before the epoch (a broken clock) reads as 0.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

/// A clock that reads what it is set to, for tests: [`FixedClock::advance`] moves it.
#[derive(Debug, Default)]
pub struct FixedClock(AtomicU64);

impl FixedClock {
    /// A clock that reads `now` until it is moved.
    pub fn new(now: u64) -> Self {
        Self(AtomicU64::new(now))
    }

    /// Moves the clock forward by `secs`.
    pub fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }

    /// Sets the clock to `now`.
    pub fn set(&self, now: u64) {
        self.0.store(now, Ordering::SeqCst);
    }
}

impl Clock for FixedClock {
    fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The system clock moved by a fixed number of seconds (the demo jumps to the next TOTP window
/// instead of waiting for it).
#[derive(Debug, Clone, Copy)]
pub struct SkewedClock {
    /// Seconds added to the system clock.
    pub ahead_secs: u64,
}

impl Clock for SkewedClock {
    fn now(&self) -> u64 {
        SystemClock.now().saturating_add(self.ahead_secs)
    }
}

/// Any `Fn() -> u64` is a clock (a test's closure over its own time).
impl<F: Fn() -> u64 + Send + Sync> Clock for F {
    fn now(&self) -> u64 {
        self()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_clock_moves_only_when_told() {
        let c = FixedClock::new(1_000);
        assert_eq!(c.now(), 1_000);
        c.advance(30);
        assert_eq!(c.now(), 1_030);
        c.set(5);
        assert_eq!(c.now(), 5);
    }

    #[test]
    fn system_clock_is_after_2020_and_skew_adds() {
        let now = SystemClock.now();
        assert!(now > 1_577_836_800, "{now}");
        let ahead = SkewedClock { ahead_secs: 3_600 }.now();
        assert!(
            ahead >= now + 3_600 && ahead < now + 3_700,
            "{ahead} vs {now}"
        );
    }

    #[test]
    fn closures_are_clocks() {
        let c = || 42u64;
        let d: &dyn Clock = &c;
        assert_eq!(d.now(), 42);
    }
}
