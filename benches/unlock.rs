//! `cargo bench --bench unlock`: figures of the activation, printed, never asserted.
//!
//! - Argon2id at the default parameters (64 MiB, t=3, p=4) and at the demo's light ones;
//! - the whole unlock ceremony in-process (soft token, embedded STS, light KDF, scripted
//!   answers), and the same minus the KDF: the machine time an activation adds to the people's;
//! - one key rotation (`rotate --now`: activation, new key, proof, seal, old key retired)
//!   in-process against the embedded emulator with no propagation delay, minus the KDF;
//! - how long one unlock holds the token (its OATH application open: an exclusive PC/SC
//!   transaction on a real card), against the whole ceremony: the token is never held across
//!   the STS call.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use secrecy::SecretString;

use breakglass::aws::Endpoint;
use breakglass::ceremony::{enroll, rotate, unlock};
use breakglass::clock::{SkewedClock, SystemClock};
use breakglass::config::{Paths, Profile};
use breakglass::sandbox::sts::Sts;
use breakglass::sandbox::Scripted;
use breakglass::secure::SystemRandom;
use breakglass::token::soft::SoftCard;
use breakglass::token::{piv, Token, Transport};
use breakglass::vault::{passphrase_factor, KdfParams};

const PASSPHRASE: &str = "benchmark passphrase";

fn answers() -> Scripted {
    Scripted::new("alice", "bob", PASSPHRASE)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn kdf_time(kdf: KdfParams, runs: usize) -> Duration {
    let p = SecretString::from(PASSPHRASE.to_owned());
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                passphrase_factor(&p, &[7u8; 32], &kdf).unwrap();
                t.elapsed()
            })
            .collect(),
    )
}

/// The soft token, timing how long its OATH application stays open per unlock.
struct Timed<'c> {
    card: &'c mut SoftCard,
    held: Duration,
}

/// An open OATH application: its lifetime is added to `held` when it closes.
struct Open<'t> {
    inner: Box<dyn Transport + 't>,
    since: Instant,
    held: &'t mut Duration,
}

impl Transport for Open<'_> {
    fn transmit_raw(
        &mut self,
        apdu: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, breakglass::token::Error> {
        self.inner.transmit_raw(apdu)
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        *self.held += self.since.elapsed();
    }
}

impl Token for Timed<'_> {
    fn oath(&mut self) -> Result<Box<dyn Transport + '_>, breakglass::token::Error> {
        let inner = self.card.oath()?;
        Ok(Box::new(Open {
            inner,
            since: Instant::now(),
            held: &mut self.held,
        }))
    }

    fn piv(&mut self) -> Result<Box<dyn piv::PivCard + '_>, breakglass::token::Error> {
        self.card.piv()
    }
}

fn main() {
    let default = kdf_time(KdfParams::DEFAULT, 5);
    println!("Argon2id default (m=64 MiB, t=3, p=4): median {default:?} (5 runs)");
    let light = kdf_time(KdfParams::LIGHT, 50);
    println!("Argon2id light (m=1 MiB, t=1, p=1): median {light:?} (50 runs)");

    let home = tempfile::tempdir().unwrap();
    let paths = Paths {
        config: home.path().join("config.toml"),
        data: home.path().join("data"),
        state: home.path().join("state"),
        runtime: home.path().join("run"),
    };
    let sts = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    sts.create_user("breakglass");
    let (admin_id, admin_secret) = sts.admin_key();
    let mut profile = Profile::defaults("bench", &paths);
    profile.sts_endpoint = Some(sts.endpoint());
    let endpoint = Endpoint::of(&profile);
    let mut card = SoftCard::new(Box::new(|| true));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
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
        endpoint: endpoint.clone(),
        force: false,
        now: &SystemClock,
    };
    rt.block_on(enroll::enroll(
        req,
        &mut card,
        &mut answers(),
        &SystemRandom::new(),
    ))
    .unwrap();

    // Each activation needs a fresh MFA window: move both clocks 31 s per run (a window and a
    // bit; 20 runs stay well inside SigV4's 15 minutes of allowed skew, which the SDK would
    // otherwise correct with a retry). The token is timed in the same runs: from its OATH
    // application opened to closed, summed over the opens (finding the slot, opening the vault
    // and reading the code).
    let runs = 20;
    let mut whole = Vec::new();
    let mut held = Vec::new();
    for i in 1..=runs {
        let skip = 31 * i as u64;
        sts.set_clock_offset(skip as i64);
        let clock = SkewedClock { ahead_secs: skip };
        let req = unlock::Request {
            profile: &profile,
            paths: &paths,
            reason: Some("benchmark"),
            ticket: None,
            requested_by: "benchmark",
            endpoint: endpoint.clone(),
            now: &clock,
            rng: &SystemRandom::new(),
        };
        let mut timed = Timed {
            card: &mut card,
            held: Duration::ZERO,
        };
        let t = Instant::now();
        rt.block_on(unlock::unlock(&req, &mut timed, &mut answers()))
            .unwrap();
        whole.push(t.elapsed());
        held.push(timed.held);
    }
    let ceremony = median(whole);
    println!("unlock, whole ceremony in-process against the embedded STS (light KDF): median {ceremony:?} ({runs} runs)");
    println!(
        "unlock machine time excluding the KDF and human input: median {:?} (goal <= 50 ms)",
        ceremony.saturating_sub(light)
    );
    println!(
        "token held during one unlock (OATH application open, light KDF): median {:?} of a median {:?} ceremony ({runs} runs); never across the STS call",
        median(held),
        ceremony
    );

    // Rotations, each retiring the old key at once so that the user keeps one key; the
    // clocks go on from where the unlocks left them.
    let rotations = 10;
    let mut times = Vec::new();
    for i in 1..=rotations {
        let skip = 31 * (runs + i) as u64;
        sts.set_clock_offset(skip as i64);
        let clock = SkewedClock { ahead_secs: skip };
        // Past SigV4's 15 minutes: the requests are signed with the moved clock too.
        let mut moved = endpoint.clone();
        moved.signing_ahead_secs = skip;
        let req = rotate::Request {
            activation: unlock::Request {
                profile: &profile,
                paths: &paths,
                reason: Some("benchmark"),
                ticket: None,
                requested_by: "benchmark",
                endpoint: moved,
                now: &clock,
                rng: &SystemRandom::new(),
            },
            mode: rotate::Mode::Rotate { now: true },
            propagation_timeout: Duration::from_secs(10),
        };
        let t = Instant::now();
        rt.block_on(rotate::rotate(&req, &mut card, &mut answers()))
            .unwrap();
        times.push(t.elapsed());
    }
    let rotation = median(times);
    println!(
        "rotate --now, whole ceremony in-process against the embedded emulator (light KDF, no propagation delay): median {rotation:?} ({rotations} runs); excluding the KDF: {:?}",
        rotation.saturating_sub(light)
    );
}
