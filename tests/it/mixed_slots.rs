//! A vault with mixed key slots through the real ceremonies (in process, against the strict STS
//! emulator): a PIV primary, a FIDO2 backup added by opening with the PIV token, an OATH backup
//! added by opening with the FIDO2 key, and a FIDO2 key that cannot be probed silently. Each
//! token alone (with the passphrase) opens it and uses its own MFA device; a token that is in
//! no slot is refused and named as such.

use std::net::SocketAddr;

use secrecy::ExposeSecret;
use x509_cert::der::Decode;

use breakglass::aws::Endpoint;
use breakglass::ceremony::{enroll, unlock, Error as CError};
use breakglass::config::{Paths, Profile};
use breakglass::sandbox::sts::Sts;
use breakglass::sandbox::Scripted;
use breakglass::secure::SystemRandom;
use breakglass::token::fido2::soft::SoftFido2;
use breakglass::token::oath::Seed;
use breakglass::token::soft::SoftCard;
use breakglass::vault::{FactorKind, KdfParams};

const PASSPHRASE: &str = "mixed slots, one vault";
const PIN: &str = "123456";

fn answers() -> Scripted {
    Scripted::new("Alice", "Bob", PASSPHRASE).pins(&[PIN])
}

fn token() -> SoftCard {
    SoftCard::new(Box::new(|| true)).with_fido2(SoftFido2::with_pin(PIN))
}

#[test]
fn piv_fido2_and_oath_slots_each_open_the_vault() {
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
    let mut profile = Profile::defaults("prod", &paths);
    profile.sts_endpoint = Some(sts.endpoint());
    let endpoint = Endpoint::of(&profile);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let now = breakglass::clock::SystemClock;
    let mfa = |name: &str| {
        let (serial, seed) = sts.create_mfa_device("breakglass", name);
        enroll::MfaSource::Import {
            serial,
            seed: Seed::from_base32(&seed).unwrap(),
        }
    };
    let request = |factor, mfa| enroll::Request {
        profile: &profile,
        factor,
        paths: &paths,
        kdf: KdfParams::LIGHT,
        custodians: None,
        key: enroll::KeySource::Import {
            access_key_id: key_id.clone(),
            secret_access_key: key_secret.clone(),
        },
        mfa,
        admin: None,
        endpoint: endpoint.clone(),
        force: false,
        now: &now,
    };
    let rng = SystemRandom::new();

    let mut piv_token = token();
    let root = x509_cert::Certificate::from_der(&piv_token.piv_attestation_root()).unwrap();
    let roots = [root];
    let piv_factor = enroll::Factor::Piv {
        slot: 0x82,
        roots: &roots,
        replace: false,
    };
    rt.block_on(enroll::enroll(
        request(piv_factor, mfa("primary")),
        &mut piv_token,
        &mut answers(),
        &rng,
    ))
    .expect("PIV enrolment");

    let mut fido2_token = token();
    rt.block_on(enroll::add_token(
        request(enroll::Factor::Fido2, mfa("fido2")),
        "fido2-backup",
        &mut piv_token,
        &mut fido2_token,
        &mut answers(),
        &rng,
    ))
    .expect("FIDO2 backup added, the vault opened with the PIV token");

    let mut oath_token = token();
    rt.block_on(enroll::add_token(
        request(enroll::Factor::Oath, mfa("oath")),
        "oath-backup",
        &mut fido2_token,
        &mut oath_token,
        &mut answers(),
        &rng,
    ))
    .expect("OATH backup added, the vault opened with the FIDO2 key");

    // A FIDO2 key that cannot be probed silently (alwaysUv) is asked with its PIN whether it
    // holds the FIDO2 slot: it does not, so it is added, and it later finds its own slot.
    let mut quiet_token =
        SoftCard::new(Box::new(|| true)).with_fido2(SoftFido2::with_pin(PIN).always_uv());
    rt.block_on(enroll::add_token(
        request(enroll::Factor::Fido2, mfa("quiet")),
        "quiet-fido2-backup",
        &mut oath_token,
        &mut quiet_token,
        &mut answers(),
        &rng,
    ))
    .expect("a key that cannot be probed silently is not taken for an enrolled one");

    // A token already in a slot is not added twice.
    let e = rt
        .block_on(enroll::add_token(
            request(enroll::Factor::Oath, mfa("again")),
            "again",
            &mut oath_token,
            &mut piv_token,
            &mut answers(),
            &rng,
        ))
        .unwrap_err();
    assert!(matches!(e, CError::TokenAlreadyEnrolled { slot: 0 }), "{e}");

    let vault = breakglass::vault::file::read(&profile.vault).unwrap();
    let kinds: Vec<FactorKind> = vault.slots().map(|s| s.kind).collect();
    assert_eq!(
        kinds,
        [
            FactorKind::PivEcdh,
            FactorKind::Fido2HmacSecret,
            FactorKind::OathHmac,
            FactorKind::Fido2HmacSecret
        ]
    );
    let serials: Vec<String> = vault.slots().map(|s| s.mfa_serial.clone()).collect();

    let req = unlock::Request {
        profile: &profile,
        paths: &paths,
        reason: Some("mixed slots"),
        ticket: None,
        requested_by: "mixed slots test",
        endpoint: endpoint.clone(),
        now: &now,
        rng: &rng,
    };
    for (i, t) in [
        &mut piv_token,
        &mut fido2_token,
        &mut oath_token,
        &mut quiet_token,
    ]
    .into_iter()
    .enumerate()
    {
        let a = rt
            .block_on(unlock::unlock(&req, t, &mut answers()))
            .unwrap_or_else(|e| panic!("token {i} did not open the vault: {e}"));
        assert_eq!(
            a.mfa_serial, serials[i],
            "each token uses its own MFA device"
        );
        assert!(a.session.access_key_id.starts_with("ASIA"));
        assert!(!a.session.secret_access_key.expose_secret().is_empty());
    }
    assert_eq!(sts.counts().get_session_token, 4);

    // A fresh token is in no slot: refused, and the message lists the slots.
    let Err(e) = rt.block_on(unlock::unlock(&req, &mut token(), &mut answers())) else {
        panic!("a token in no slot opened the vault");
    };
    let e = e.to_string();
    assert!(
        e.contains("not enrolled") && e.contains("\"primary\" (piv)"),
        "{e}"
    );
}
