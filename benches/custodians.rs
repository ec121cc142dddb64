//! `cargo bench --bench custodians`: figures of vaults with custodians, printed, never
//! asserted.
//!
//! - the machine time of opening a vault at the default Argon2id parameters with one
//!   passphrase (format 2), with 2 of 3 and with 3 of 5 custodians: one Argon2id per
//!   custodian present, then the token's answer, the shares and the payload;
//! - the wall time of a rekey ceremony in-process (scripted people, soft token, default KDF)
//!   that replaces one custodian of 2 of 3: two derivations to open, one for the newcomer.

use std::time::{Duration, Instant};

use secrecy::SecretString;
use zeroize::Zeroizing;

use breakglass::ceremony::rekey::{self, NoOtherTokens};
use breakglass::clock::SystemClock;
use breakglass::config::{Paths, Profile};
use breakglass::sandbox::Scripted;
use breakglass::secure::SystemRandom;
use breakglass::token::oath::{Kind, NewAccount, Seed, Session};
use breakglass::token::otp::Algorithm;
use breakglass::token::soft::SoftCard;
use breakglass::vault::{self, KdfParams, OathFactor, PassphraseKey, Payload, Vault};

const SEAL: &str = "breakglass-seal";
const PEOPLE: [(&str, &str); 5] = [
    ("Alice", "alice's bench passphrase"),
    ("Bob", "bob's bench passphrase"),
    ("Carol", "carol's bench passphrase"),
    ("Dan", "dan's bench passphrase"),
    ("Erin", "erin's bench passphrase"),
];

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn card() -> SoftCard {
    let mut card = SoftCard::new(Box::new(|| true));
    let mut s = Session::select(&mut card).unwrap();
    s.put(&NewAccount {
        name: SEAL.into(),
        kind: Kind::Totp,
        algorithm: Algorithm::Sha256,
        digits: 6,
        period: 30,
        touch: true,
        counter: 0,
        seed: Seed::new(Zeroizing::new(vec![9; 32])),
    })
    .unwrap();
    drop(s);
    card
}

fn payload(profile: Option<&str>) -> Payload {
    Payload {
        access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
        secret_access_key: SecretString::from(
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_owned(),
        ),
        mfa_serial: "arn:aws:iam::123456789012:mfa/breakglass".into(),
        user_arn: "arn:aws:iam::123456789012:user/breakglass".into(),
        created: 1_700_000_000,
        rotated: 1_700_000_000,
        profile: profile.map(str::to_owned),
    }
}

/// A vault of `n` custodians, `m` needed (`n == 0`: one passphrase, format 2).
fn sealed(card: &mut SoftCard, n: usize, m: u8, profile: Option<&str>) -> Vault {
    let rng = SystemRandom::new();
    let mut s = Session::select(card).unwrap();
    let mut f = OathFactor::new(&mut s, SEAL);
    if n == 0 {
        let p = SecretString::from(PEOPLE[0].1.to_owned());
        return Vault::create(
            &p,
            KdfParams::DEFAULT,
            &mut f,
            "primary",
            &payload(profile),
            &rng,
            1,
        )
        .unwrap();
    }
    let passes: Vec<SecretString> = PEOPLE[..n]
        .iter()
        .map(|(_, p)| SecretString::from((*p).to_owned()))
        .collect();
    let custodians: Vec<(&str, &SecretString)> = PEOPLE[..n]
        .iter()
        .zip(&passes)
        .map(|((name, _), p)| (*name, p))
        .collect();
    Vault::create_with_custodians(
        &custodians,
        m,
        KdfParams::DEFAULT,
        &mut f,
        "primary",
        &payload(profile),
        &rng,
        1,
    )
    .unwrap()
}

/// Opens `v` as the first `m` custodians (or with the one passphrase): derivations, then the
/// token and the payload.
fn open(card: &mut SoftCard, v: &Vault, m: usize) -> Duration {
    let t = Instant::now();
    let key = match v.custodians() {
        None => v
            .derive(&SecretString::from(PEOPLE[0].1.to_owned()))
            .unwrap(),
        Some((_, members)) => PassphraseKey::quorum(
            members[..m]
                .iter()
                .map(|c| {
                    let p = PEOPLE[usize::from(c.x) - 1].1;
                    v.derive_custodian(c.x, &SecretString::from(p.to_owned()))
                        .unwrap()
                })
                .collect(),
        ),
    };
    let mut s = Session::select(card).unwrap();
    let mut f = OathFactor::new(&mut s, SEAL);
    let opened = v.open_derived(&key, &mut f).unwrap();
    assert_eq!(opened.payload.access_key_id, "AKIAIOSFODNN7EXAMPLE");
    t.elapsed()
}

fn main() {
    let mut card = card();
    let runs = 3;
    let mut one = Duration::ZERO;
    for (label, n, m) in [
        ("one passphrase (format 2)", 0, 1u8),
        ("2 of 3 custodians", 3, 2),
        ("3 of 5 custodians", 5, 3),
    ] {
        let v = sealed(&mut card, n, m, None);
        let t = median(
            (0..runs)
                .map(|_| open(&mut card, &v, usize::from(m)))
                .collect(),
        );
        if n == 0 {
            one = t;
        }
        println!(
            "open at the default KDF, {label}: median {t:?} ({runs} runs, {:.2}× one passphrase)",
            t.as_secs_f64() / one.as_secs_f64()
        );
    }

    // A rekey ceremony replacing Carol by Dan in 2 of 3, in-process.
    let home = tempfile::tempdir().unwrap();
    let paths = Paths {
        config: home.path().join("config.toml"),
        data: home.path().join("data"),
        state: home.path().join("state"),
        runtime: home.path().join("run"),
    };
    let profile = Profile::defaults("bench", &paths);
    let mut times = Vec::new();
    for _ in 0..runs {
        let v = sealed(&mut card, 3, 2, Some("bench"));
        vault::file::write(&profile.vault, &v).unwrap();
        let req = rekey::Request {
            profile: &profile,
            paths: &paths,
            reason: Some("benchmark"),
            ticket: None,
            what: rekey::What::Custodians {
                names: vec!["Alice".into(), "Bob".into(), "Dan".into()],
                threshold: 2,
                upgrade: false,
                remove: Vec::new(),
            },
            now: &SystemClock,
            rng: &SystemRandom::new(),
        };
        let mut prompt =
            Scripted::new("-", "Trent", "-").custodians(&[PEOPLE[0], PEOPLE[1], PEOPLE[3]]);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let t = Instant::now();
        rt.block_on(rekey::rekey(
            &req,
            &mut card,
            &mut NoOtherTokens,
            &mut prompt,
        ))
        .unwrap();
        times.push(t.elapsed());
    }
    println!(
        "rekey (2 of 3, one custodian replaced) at the default KDF, in-process: median {:?} ({runs} runs; three Argon2id: two to open, one for the newcomer)",
        median(times)
    );
}
