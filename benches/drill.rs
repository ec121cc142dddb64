//! `cargo bench --bench drill`: wall time of a drill of 1,000 member accounts against the
//! sandbox's emulator, in-process (scripted holders, the soft token, a light KDF): at the
//! default concurrency, at concurrency 1, and with the emulator limiting STS to 600 requests a
//! second (AWS's documented account limit), compared with the time that limit allows; first
//! as loopback gives it (each call costs its CPU time only), then with the emulator holding
//! every answer 10 ms, a network round trip, which is what concurrency hides. Printed, never
//! asserted. `BREAKGLASS_BENCH_ACCOUNTS` changes the number of accounts.
//!
//! Each drill is a full activation first (its GetSessionToken is one of the STS calls); the
//! bench moves its clock and the emulator's a minute ahead between drills for a fresh MFA
//! window instead of waiting for one.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use breakglass::aws::Endpoint;
use breakglass::ceremony::drill::{self, Accounts};
use breakglass::ceremony::{enroll, unlock};
use breakglass::clock::{SkewedClock, SystemClock};
use breakglass::config::{Paths, Profile};
use breakglass::sandbox::sts::Sts;
use breakglass::sandbox::Scripted;
use breakglass::secure::SystemRandom;
use breakglass::token::soft::SoftCard;
use breakglass::vault::KdfParams;

const PASSPHRASE: &str = "correct horse battery staple";

struct World {
    sts: Sts,
    paths: Paths,
    profile: Profile,
    card: SoftCard,
    clock: SkewedClock,
    rt: tokio::runtime::Runtime,
    _home: tempfile::TempDir,
}

impl World {
    fn new(accounts: usize) -> Self {
        let sts = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let home = tempfile::tempdir().unwrap();
        let paths = Paths {
            config: home.path().join("config.toml"),
            data: home.path().join("data"),
            state: home.path().join("state"),
            runtime: home.path().join("run"),
        };
        let mut profile = Profile::defaults("bench", &paths);
        profile.sts_endpoint = Some(sts.endpoint());
        let mut card = SoftCard::new(Box::new(|| true));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let user = sts.create_user("breakglass");
        let (admin_id, admin_secret) = sts.admin_key();
        let req = enroll::Request {
            profile: &profile,
            factor: enroll::Factor::Oath,
            paths: &paths,
            kdf: KdfParams::LIGHT,
            custodians: None,
            key: enroll::KeySource::Create {
                user: "breakglass".into(),
            },
            mfa: enroll::MfaSource::Create {
                user: "breakglass".into(),
            },
            admin: Some((&admin_id, &admin_secret)),
            endpoint: Endpoint::of(&profile),
            force: false,
            now: &SystemClock,
        };
        let mut prompt = Scripted::new("Alice", "Bob", PASSPHRASE);
        rt.block_on(enroll::enroll(
            req,
            &mut card,
            &mut prompt,
            &SystemRandom::new(),
        ))
        .unwrap();
        sts.create_organization(accounts, "BreakGlass", std::slice::from_ref(&user));
        Self {
            sts,
            paths,
            profile,
            card,
            clock: SkewedClock { ahead_secs: 0 },
            rt,
            _home: home,
        }
    }

    /// One drill at `concurrency`: its wall time and the report.
    fn drill(&mut self, concurrency: usize) -> (Duration, drill::Report) {
        // A fresh MFA window: both clocks a minute on.
        self.clock.ahead_secs += 60;
        self.sts.set_clock_offset(self.clock.ahead_secs as i64);
        let mut endpoint = Endpoint::of(&self.profile);
        endpoint.signing_ahead_secs = self.clock.ahead_secs;
        let req = drill::Request {
            activation: unlock::Request {
                profile: &self.profile,
                paths: &self.paths,
                reason: Some("bench"),
                ticket: None,
                requested_by: "breakglass drill",
                endpoint,
                now: &self.clock,
                rng: &SystemRandom::new(),
            },
            accounts: Accounts::Organization,
            role: "BreakGlass".into(),
            role_overrides: Default::default(),
            other_users: Vec::new(),
            concurrency,
            max_session_secs: 3600,
            account_budget: Duration::from_secs(600),
            audit_keys: false,
            rule: None,
            role_policies: Vec::new(),
        };
        let mut prompt = Scripted::new("Alice", "Bob", PASSPHRASE);
        let t0 = Instant::now();
        let report = self
            .rt
            .block_on(drill::drill(
                &req,
                &mut self.card,
                &mut prompt,
                &mut drill::Quiet,
                std::future::pending(),
            ))
            .unwrap();
        (t0.elapsed(), report)
    }
}

fn main() {
    let accounts: usize = std::env::var("BREAKGLASS_BENCH_ACCOUNTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let mut w = World::new(accounts);
    for latency in [0, 10] {
        w.sts.throttle_sts(None);
        w.sts.set_latency_ms(latency);
        let label = if latency == 0 {
            "loopback".to_owned()
        } else {
            format!("{latency} ms round trip")
        };
        let (t_default, r) = w.drill(drill::DEFAULT_CONCURRENCY);
        assert_eq!(r.counts().passed, accounts, "{}", r.summary());
        println!(
            "[{label}] drill of {accounts} accounts, concurrency {}: {t_default:.2?} ({} STS requests)",
            drill::DEFAULT_CONCURRENCY,
            r.requests
        );
        let (t_one, r) = w.drill(1);
        assert_eq!(r.counts().passed, accounts, "{}", r.summary());
        println!(
            "[{label}] drill of {accounts} accounts, concurrency 1: {t_one:.2?} ({:.1}× the default's time)",
            t_one.as_secs_f64() / t_default.as_secs_f64()
        );
        w.sts.throttle_sts(Some(600));
        let (t_limited, r) = w.drill(drill::DEFAULT_CONCURRENCY);
        assert_eq!(r.counts().passed, accounts, "{}", r.summary());
        // The bucket starts full: a second's worth goes at once, the rest at 600 a second.
        let sts_calls = r.requests as f64 + 1.0;
        let allowed = (sts_calls - 600.0).max(0.0) / 600.0;
        println!(
            "[{label}] drill of {accounts} accounts at 600 STS requests/s: {t_limited:.2?}, {} throttled answers retried; the limit allows {allowed:.2} s for {sts_calls} STS calls ({:.2}×)",
            r.throttled,
            t_limited.as_secs_f64() / allowed
        );
    }
}
