//! Pacing many calls to one AWS service: a request rate that backs off multiplicatively when
//! AWS throttles and grows additively while it does not (AIMD, as TCP and the SDKs' adaptive
//! retry mode do), and retries with capped exponential backoff and full jitter.
//!
//! The rate starts unbounded: a drill of a few accounts never waits. The first `Throttling`
//! sets it to a fraction of the rate measured over the last second; each success then adds a
//! little. Decreases are at most one per [`DECREASE_GAP`], so a burst of throttled answers to
//! requests already in flight counts once.
//!
//! The arithmetic takes the time as an argument ([`Pace::schedule`], [`Pace::throttled_at`]),
//! so that its tests run on a made-up clock; [`Pace::turn`] and [`Pace::throttled`] read the
//! system's monotonic clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The factor of the measured rate a throttled service is paced at.
pub const DECREASE: f64 = 0.7;
/// Requests per second added to the rate for each success while paced.
pub const INCREASE: f64 = 0.25;
/// The lowest rate: one request every two seconds.
pub const MIN_RATE: f64 = 0.5;
/// At most one decrease in this time.
pub const DECREASE_GAP: Duration = Duration::from_millis(250);
/// The first backoff after a throttled or failed attempt (before jitter).
pub const BASE_BACKOFF: Duration = Duration::from_millis(50);
/// The longest backoff (before jitter).
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The pace of one service, shared by every task calling it.
#[derive(Debug)]
pub struct Pace {
    state: Mutex<State>,
    /// Requests sent, throttled answers, successes (for the progress line and the report).
    sent: AtomicU64,
    throttled: AtomicU64,
}

#[derive(Debug)]
struct State {
    /// Requests per second; infinite until the first throttle.
    rate: f64,
    /// When the next request may go.
    next: Instant,
    last_decrease: Option<Instant>,
    /// Send times of the last second, for the measured rate.
    recent: std::collections::VecDeque<Instant>,
    /// xorshift64* state for jitter.
    jitter: u64,
}

impl Pace {
    /// An unbounded pace; `seed` (any value, from the crate's random source) drives the jitter.
    pub fn new(seed: u64) -> Self {
        Self {
            state: Mutex::new(State {
                rate: f64::INFINITY,
                next: Instant::now(),
                last_decrease: None,
                recent: std::collections::VecDeque::new(),
                jitter: seed | 1,
            }),
            sent: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits for this request's turn at the current rate.
    pub async fn turn(&self) {
        let at = self.schedule(Instant::now());
        tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
    }

    /// Books a request asked for at `now`: the time it may go.
    pub fn schedule(&self, now: Instant) -> Instant {
        let at = {
            let mut s = self.lock();
            while s
                .recent
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) > Duration::from_secs(1))
            {
                s.recent.pop_front();
            }
            let at = s.next.max(now);
            if s.rate.is_finite() {
                s.next = at + Duration::from_secs_f64(1.0 / s.rate);
            }
            s.recent.push_back(at);
            at
        };
        self.sent.fetch_add(1, Ordering::Relaxed);
        at
    }

    /// The service throttled a request: pace at [`DECREASE`] of the measured rate (at most
    /// once per [`DECREASE_GAP`]).
    pub fn throttled(&self) {
        self.throttled_at(Instant::now());
    }

    /// [`Pace::throttled`], at `now`.
    pub fn throttled_at(&self, now: Instant) {
        self.throttled.fetch_add(1, Ordering::Relaxed);
        let mut s = self.lock();
        if s.last_decrease
            .is_some_and(|t| now.saturating_duration_since(t) < DECREASE_GAP)
        {
            return;
        }
        let measured = s.recent.len() as f64;
        s.rate = (s.rate.min(measured.max(MIN_RATE)) * DECREASE).max(MIN_RATE);
        s.last_decrease = Some(now);
    }

    /// A request went through: grow the rate by [`INCREASE`].
    pub fn succeeded(&self) {
        let mut s = self.lock();
        if s.rate.is_finite() {
            s.rate += INCREASE;
        }
    }

    /// The rate now, requests per second (infinite: not paced).
    pub fn rate(&self) -> f64 {
        self.lock().rate
    }

    /// Requests sent and throttled answers so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.sent.load(Ordering::Relaxed),
            self.throttled.load(Ordering::Relaxed),
        )
    }

    /// The wait before retry `attempt` (1 for the first retry): full jitter over
    /// `min(MAX_BACKOFF, BASE_BACKOFF · 2^(attempt-1))`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let cap = BASE_BACKOFF
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(MAX_BACKOFF);
        let mut s = self.lock();
        // xorshift64*
        let mut x = s.jitter;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.jitter = x;
        let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
        let fraction = r as f64 / (1u64 << 53) as f64;
        cap.mul_f64(fraction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unthrottled_calls_never_wait() {
        let pace = Pace::new(7);
        let start = Instant::now();
        for _ in 0..1000 {
            assert_eq!(pace.schedule(start), start);
            pace.succeeded();
        }
        assert!(pace.rate().is_infinite());
        assert_eq!(pace.counts(), (1000, 0));
    }

    /// A service that allows `limit` requests per second (a token bucket of one second's
    /// worth): the paced sender converges near the limit and wastes few requests. The clock
    /// is made up: each request goes at the time it was booked for.
    #[test]
    fn a_throttled_rate_converges_near_the_limit() {
        let limit = 600.0;
        let pace = Pace::new(42);
        let start = Instant::now();
        let mut now = start;
        let mut tokens = limit;
        let mut last = start;
        let mut done = 0u32;
        while done < 6000 {
            now = pace.schedule(now);
            tokens = (tokens + (now - last).as_secs_f64() * limit).min(limit);
            last = now;
            if tokens >= 1.0 {
                tokens -= 1.0;
                pace.succeeded();
                done += 1;
            } else {
                pace.throttled_at(now);
            }
        }
        let elapsed = (now - start).as_secs_f64();
        let ideal = 6000.0 / limit;
        assert!(
            elapsed < ideal * 1.35,
            "{elapsed:.2} s for {ideal:.2} s of work"
        );
        let (sent, throttled) = pace.counts();
        assert!(throttled < sent / 10, "{throttled} of {sent} throttled");
        assert!(
            pace.rate() > limit * 0.5 && pace.rate() < limit * 1.5,
            "{}",
            pace.rate()
        );
    }

    #[test]
    fn decreases_come_at_most_once_per_gap_and_never_below_the_floor() {
        let pace = Pace::new(1);
        let mut now = Instant::now();
        for _ in 0..100 {
            pace.schedule(now);
        }
        pace.throttled_at(now);
        let once = pace.rate();
        assert!((once - 70.0).abs() < 1e-9, "{once}");
        pace.throttled_at(now);
        assert_eq!(pace.rate(), once);
        for _ in 0..200 {
            now += DECREASE_GAP;
            pace.throttled_at(now);
        }
        assert_eq!(pace.rate(), MIN_RATE);
    }

    #[test]
    fn a_paced_request_is_booked_one_interval_after_the_last() {
        let pace = Pace::new(3);
        let now = Instant::now();
        pace.schedule(now);
        pace.throttled_at(now);
        // One request measured in the last second: 0.7 a second from now on.
        assert!((pace.rate() - DECREASE).abs() < 1e-9, "{}", pace.rate());
        assert_eq!(pace.schedule(now), now);
        let gap = Duration::from_secs_f64(1.0 / DECREASE);
        assert_eq!(pace.schedule(now), now + gap);
        assert_eq!(pace.schedule(now), now + gap + gap);
    }

    #[test]
    fn backoff_is_jittered_under_a_growing_cap() {
        let pace = Pace::new(99);
        let mut seen = std::collections::BTreeSet::new();
        for attempt in 1..=20 {
            let cap = BASE_BACKOFF
                .saturating_mul(1 << (attempt - 1).min(16))
                .min(MAX_BACKOFF);
            let b = pace.backoff(attempt);
            assert!(b <= cap, "attempt {attempt}: {b:?} > {cap:?}");
            seen.insert(b.as_micros());
        }
        assert!(seen.len() > 15, "the jitter repeats: {seen:?}");
    }
}
