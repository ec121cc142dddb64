//! A refused MFA code is retried once with a fresh time window, and a second refusal ends the
//! attempt (README, "Breaking the glass"). In process against the strict emulator, which
//! refuses a code already used: the test spends the window the unlock will pick, and the
//! ceremony's waits move the one clock (and the emulator's) instead of sleeping.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use secrecy::SecretString;

use breakglass::aws::{sts, Endpoint, Signer};
use breakglass::ceremony::{enroll, unlock, Error as CError, Prompt, Role};
use breakglass::clock::Clock;
use breakglass::config::{Paths, Profile};
use breakglass::sandbox::sts::Sts;
use breakglass::sandbox::Scripted;
use breakglass::secure::SystemRandom;
use breakglass::token::oath::Seed;
use breakglass::token::otp::{self, Algorithm};
use breakglass::token::soft::SoftCard;
use breakglass::vault::KdfParams;

const PASSPHRASE: &str = "one code refused, then";

/// A clock that stands still but for what the ceremony "waited", and the emulator's frozen
/// at the same time: no test step can race a window boundary.
struct Stepping {
    base: u64,
    ahead: AtomicU64,
}

impl Clock for Stepping {
    fn now(&self) -> u64 {
        self.base + self.ahead.load(Ordering::SeqCst)
    }
}

impl Stepping {
    fn skip(&self, secs: u64, sts: &Sts) {
        self.ahead.fetch_add(secs, Ordering::SeqCst);
        sts.freeze_clock(i64::try_from(self.now()).unwrap());
    }
}

/// Scripted holders whose waits skip the clock and the emulator's ahead, and who remember
/// every note.
struct Skipping<'a> {
    inner: Scripted,
    clock: &'a Stepping,
    sts: &'a Sts,
    notes: Vec<String>,
}

impl Prompt for Skipping<'_> {
    fn name(&mut self, role: Role) -> Result<String, CError> {
        self.inner.name(role)
    }
    fn passphrase(&mut self, confirm: bool) -> Result<SecretString, CError> {
        self.inner.passphrase(confirm)
    }
    fn access_code(&mut self) -> Result<SecretString, CError> {
        self.inner.access_code()
    }
    fn touch_start(&mut self, what: &str) {
        self.notes.push(format!("touch: {what}"));
        self.inner.touch_start(what);
    }
    fn touch_end(&mut self) {
        self.inner.touch_end();
    }
    fn wait(&mut self, secs: u64, why: &str) {
        self.notes.push(format!("waited {secs} s: {why}"));
        self.clock.skip(secs, self.sts);
    }
    fn note(&mut self, text: &str) {
        self.notes.push(text.to_owned());
    }
}

/// The 6-digit SHA-1 TOTP of `seed` for `step`, as the token and AWS compute it.
fn code(seed: &[u8], step: u64) -> String {
    let key = otp::token_key(Algorithm::Sha1, seed);
    let mac = otp::hmac(Algorithm::Sha1, &key, &step.to_be_bytes());
    otp::format_code(otp::dynamic_truncate(&mac), 6).to_string()
}

#[test]
fn a_refused_code_is_retried_once_with_a_fresh_window_and_a_second_refusal_ends_it() {
    let home = tempfile::tempdir().unwrap();
    let paths = Paths {
        config: home.path().join("config/breakglass/config.toml"),
        data: home.path().join("data/breakglass"),
        state: home.path().join("state/breakglass"),
        runtime: home.path().join("run/breakglass"),
    };
    let sts = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    sts.create_user("breakglass");
    let (key_id, key_secret) = sts.create_access_key("breakglass");
    let (serial, seed32) = sts.create_mfa_device("breakglass", "breakglass-token");
    let seed = data_encoding::BASE32_NOPAD
        .decode(seed32.trim_end_matches('=').as_bytes())
        .unwrap();
    let mut profile = Profile::defaults("prod", &paths);
    profile.sts_endpoint = Some(sts.endpoint());
    let endpoint = Endpoint::of(&profile);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Ten seconds into a window, here and at the emulator, and standing still.
    let start = breakglass::clock::SystemClock.now();
    let clock = Stepping {
        base: start - start % 30 + 10,
        ahead: AtomicU64::new(0),
    };
    clock.skip(0, &sts);
    let rng = SystemRandom::new();
    let mut card = SoftCard::new(Box::new(|| true));
    rt.block_on(enroll::enroll(
        enroll::Request {
            profile: &profile,
            factor: enroll::Factor::Oath,
            paths: &paths,
            kdf: KdfParams::LIGHT,
            custodians: None,
            key: enroll::KeySource::Import {
                access_key_id: key_id.clone(),
                secret_access_key: key_secret.clone(),
            },
            mfa: enroll::MfaSource::Import {
                serial: serial.clone(),
                seed: Seed::from_base32(&seed32).unwrap(),
            },
            admin: None,
            endpoint: endpoint.clone(),
            force: false,
            now: &clock,
        },
        &mut card,
        &mut Scripted::new("Alice", "Bob", PASSPHRASE),
        &rng,
    ))
    .unwrap();
    let signer = Signer {
        access_key_id: &key_id,
        secret_access_key: &key_secret,
        session_token: None,
    };
    // Someone else spends the window the unlock will pick (the current one), with its code.
    let spend = |step: u64| {
        rt.block_on(sts::get_session_token(
            &endpoint,
            &signer,
            &serial,
            &code(&seed, step),
            900,
            clock.now(),
        ))
        .unwrap();
    };
    let step = clock.now() / 30;
    spend(step);
    let req = unlock::Request {
        profile: &profile,
        paths: &paths,
        reason: Some("a code refused"),
        ticket: None,
        requested_by: "mfa retry test",
        endpoint: endpoint.clone(),
        now: &clock,
        rng: &rng,
    };
    let before = sts.counts();
    let mut prompt = Skipping {
        inner: Scripted::new("Alice", "Bob", PASSPHRASE),
        clock: &clock,
        sts: &sts,
        notes: Vec::new(),
    };
    let a = rt
        .block_on(unlock::unlock(&req, &mut card, &mut prompt))
        .unwrap_or_else(|e| panic!("{e}\n{:?}", prompt.notes));
    assert!(a.session.access_key_id.starts_with("ASIA"));
    let said = prompt.notes.join("\n");
    assert!(
        said.contains("AWS refused the MFA code; trying once more with a fresh time window"),
        "{said}"
    );
    let after = sts.counts();
    // One refused (the spent window), one granted (the next).
    assert_eq!(after.rejected_mfa - before.rejected_mfa, 1, "{said}");
    assert_eq!(
        after.get_session_token - before.get_session_token,
        1,
        "{said}"
    );
    assert_eq!(
        said.matches("Calling STS GetSessionToken").count(),
        2,
        "{said}"
    );

    // At once again: the last window used is the current one, so the next (which AWS also
    // takes) is used without a wait; once that is spent too, the countdown comes first,
    // before the token is asked to open the vault (nothing decrypted, the token free).
    let mut waited = Vec::new();
    for _ in 0..2 {
        let mut prompt = Skipping {
            inner: Scripted::new("Alice", "Bob", PASSPHRASE),
            clock: &clock,
            sts: &sts,
            notes: Vec::new(),
        };
        rt.block_on(unlock::unlock(&req, &mut card, &mut prompt))
            .unwrap_or_else(|e| panic!("{e}\n{:?}", prompt.notes));
        waited.push(prompt.notes);
    }
    assert!(
        !waited[0].iter().any(|n| n.starts_with("waited")),
        "the adjacent window needs no wait: {:?}",
        waited[0]
    );
    let notes = &waited[1];
    let at = |needle: &str| {
        notes
            .iter()
            .position(|n| n.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in {notes:?}"))
    };
    assert!(
        at("waiting for a fresh MFA time window") < at("touch: opening the vault"),
        "{notes:?}"
    );
    assert!(at("touch: opening the vault") < at("touch: the MFA code"));

    // Both the window it picks and the next one spent: refused twice, and said so.
    let step = clock.now() / 30 + 1;
    clock.skip(30, &sts);
    spend(step);
    spend(step + 1);
    let mut prompt = Skipping {
        inner: Scripted::new("Alice", "Bob", PASSPHRASE),
        clock: &clock,
        sts: &sts,
        notes: Vec::new(),
    };
    let e = rt
        .block_on(unlock::unlock(&req, &mut card, &mut prompt))
        .err()
        .unwrap_or_else(|| panic!("opened with spent codes: {:?}", prompt.notes));
    assert!(matches!(e, CError::CodeRefusedTwice { .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with("AWS refused the MFA code twice, with two fresh time windows"),
        "{e}"
    );
}
