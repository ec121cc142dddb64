//! PIV attestation verification (`breakglass::vault::attest`): chains built here with P-256
//! keys, and the sandbox soft token's own chain.

use std::time::Duration;

use breakglass::token::apdu::{write_tlv, Command, Tlv};
use breakglass::token::soft::piv::{self, ins, pin_policy, touch_policy};
use breakglass::token::soft::{SimulatedTouch, SoftCard, TouchPolicy};
use breakglass::token::transceive;
use breakglass::vault::attest::{self, Expected};
use breakglass::vault::Error;
use p256::ecdsa::SigningKey;
use p256::elliptic_curve::sec1::ToSec1Point;
use p256::{PublicKey, SecretKey};
use ring::rand::{SecureRandom, SystemRandom};
use x509_cert::der::asn1::Uint;
use x509_cert::der::{Decode, Encode};
use x509_cert::ext::Extension;
use x509_cert::Certificate;

const YEAR: u64 = 365 * 24 * 3600;
const SERIAL: u32 = 12_345_678;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn new_key() -> SecretKey {
    let rng = SystemRandom::new();
    loop {
        let mut b = [0u8; 32];
        rng.fill(&mut b).unwrap();
        if let Ok(k) = SecretKey::from_slice(&b) {
            return k;
        }
    }
}

fn point(k: &PublicKey) -> Vec<u8> {
    k.as_affine().to_sec1_point(false).as_bytes().to_vec()
}

fn ext(oid: &str, value: Vec<u8>) -> Extension {
    piv::extension(oid, false, value).unwrap()
}

/// Yubico's attestation extensions: firmware, serial, PIN and touch policy.
fn yubico_extensions(firmware: [u8; 3], serial: Option<u32>, pin: u8, touch: u8) -> Vec<Extension> {
    let mut v = vec![ext("1.3.6.1.4.1.41482.3.3", firmware.to_vec())];
    if let Some(s) = serial {
        let int = Uint::new(&s.to_be_bytes()).unwrap().to_der().unwrap();
        v.push(ext("1.3.6.1.4.1.41482.3.7", int));
    }
    v.push(ext("1.3.6.1.4.1.41482.3.8", vec![pin, touch]));
    v
}

/// A certificate of `subject` for `public`, signed by `signer` in the name of `issuer`.
fn issue(
    issuer: &str,
    signer: &SecretKey,
    subject: &str,
    public: &PublicKey,
    extensions: Vec<Extension>,
    lifetime: Duration,
) -> Vec<u8> {
    piv::issue_certificate(
        &SystemRandom::new(),
        issuer,
        subject,
        public,
        extensions,
        &SigningKey::from(signer),
        lifetime,
    )
    .unwrap()
}

/// A CA: its name, key and certificate.
struct Ca {
    name: String,
    key: SecretKey,
    der: Vec<u8>,
}

impl Ca {
    fn root(name: &str) -> Self {
        let key = new_key();
        let der = issue(
            name,
            &key,
            name,
            &key.public_key(),
            vec![],
            Duration::from_secs(20 * YEAR),
        );
        Self {
            name: name.to_string(),
            key,
            der,
        }
    }

    fn sub(&self, name: &str, lifetime: Duration) -> Self {
        let key = new_key();
        let der = issue(
            &self.name,
            &self.key,
            name,
            &key.public_key(),
            vec![],
            lifetime,
        );
        Self {
            name: name.to_string(),
            key,
            der,
        }
    }

    fn cert(&self) -> Certificate {
        Certificate::from_der(&self.der).unwrap()
    }
}

/// A token: its F9 CA and a slot key with its attestation.
struct Token {
    f9: Ca,
    slot_key: SecretKey,
    attestation: Vec<u8>,
}

fn token(issuer: &Ca, pin: u8, touch: u8) -> Token {
    let f9 = issuer.sub("CN=Yubico PIV Attestation", Duration::from_secs(20 * YEAR));
    let slot_key = new_key();
    let attestation = issue(
        &f9.name,
        &f9.key,
        "CN=YubiKey PIV Attestation 82",
        &slot_key.public_key(),
        yubico_extensions([5, 7, 4], Some(SERIAL), pin, touch),
        Duration::from_secs(20 * YEAR),
    );
    Token {
        f9,
        slot_key,
        attestation,
    }
}

fn expected(t: &Token) -> Expected {
    Expected {
        public_key_sec1: point(&t.slot_key.public_key()),
        serial: Some(SERIAL),
        pin_policy_always: true,
        touch_policy_always: true,
    }
}

fn always(issuer: &Ca) -> Token {
    token(issuer, pin_policy::ALWAYS, touch_policy::ALWAYS)
}

fn refusal(r: Result<attest::Attested, Error>) -> String {
    match r {
        Err(Error::Attestation(m)) => m,
        other => panic!("expected an attestation error, got {other:?}"),
    }
}

fn sha256_hex(der: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(ring::digest::digest(&ring::digest::SHA256, der).as_ref())
}

#[test]
fn good_chain_root_f9_leaf() {
    let root = Ca::root("CN=Test PIV Root CA");
    let t = always(&root);
    let got = attest::verify(
        &t.attestation,
        &t.f9.der,
        &[root.cert()],
        &expected(&t),
        now(),
    )
    .expect("a good chain");
    assert_eq!(got.serial, Some(SERIAL));
    assert_eq!(got.firmware, (5, 7, 4));
    assert_eq!(got.pin_policy, attest::PIN_POLICY_ALWAYS);
    assert_eq!(got.touch_policy, attest::TOUCH_POLICY_ALWAYS);
    assert_eq!(
        got.chain,
        [
            "YubiKey PIV Attestation 82",
            "Yubico PIV Attestation",
            "Test PIV Root CA"
        ]
    );
    assert_eq!(got.root_sha256, sha256_hex(&root.der));
}

#[test]
fn chain_through_bundle_intermediates_in_any_order() {
    // The 5.7.4 shape: root → attestation intermediate → PIV intermediate → F9 → attestation.
    let root = Ca::root("CN=Test Attestation Root 1");
    let a = root.sub(
        "CN=Test Attestation Intermediate B 1",
        Duration::from_secs(20 * YEAR),
    );
    let b = a.sub(
        "CN=Test PIV Attestation B 1",
        Duration::from_secs(20 * YEAR),
    );
    let t = always(&b);
    let unrelated = Ca::root("CN=Unrelated Root");
    let bundle = [unrelated.cert(), b.cert(), root.cert(), a.cert()];
    let got = attest::verify(&t.attestation, &t.f9.der, &bundle, &expected(&t), now())
        .expect("chain through intermediates");
    assert_eq!(
        got.chain,
        [
            "YubiKey PIV Attestation 82",
            "Yubico PIV Attestation",
            "Test PIV Attestation B 1",
            "Test Attestation Intermediate B 1",
            "Test Attestation Root 1"
        ]
    );
    assert_eq!(got.root_sha256, sha256_hex(&root.der));

    // Without the PIV intermediate the chain stops short of the root.
    let m = refusal(attest::verify(
        &t.attestation,
        &t.f9.der,
        &[root.cert(), a.cert()],
        &expected(&t),
        now(),
    ));
    assert!(m.contains("no root in the attestation roots issued"), "{m}");
    assert!(m.contains("yubico-ca-certs.txt"), "{m}");
}

#[test]
fn chain_longer_than_the_limit_is_refused() {
    let mut ca = Ca::root("CN=Deep Root");
    let mut bundle = vec![ca.cert()];
    for i in 0..4 {
        ca = ca.sub(&format!("CN=Deep {i}"), Duration::from_secs(20 * YEAR));
        bundle.push(ca.cert());
    }
    let t = always(&ca);
    let m = refusal(attest::verify(
        &t.attestation,
        &t.f9.der,
        &bundle,
        &expected(&t),
        now(),
    ));
    assert!(m.contains("longer than 6 certificates"), "{m}");
}

#[test]
fn forged_attestation_is_refused() {
    let root = Ca::root("CN=Test PIV Root CA");
    let genuine = always(&root);
    // Another root's F9 key signs an attestation in the genuine F9's name.
    let other = Ca::root("CN=Other Root");
    let forger = always(&other);
    let forged = issue(
        &genuine.f9.name,
        &forger.f9.key,
        "CN=YubiKey PIV Attestation 82",
        &genuine.slot_key.public_key(),
        yubico_extensions([5, 7, 4], Some(SERIAL), 3, 2),
        Duration::from_secs(YEAR),
    );
    let m = refusal(attest::verify(
        &forged,
        &genuine.f9.der,
        &[root.cert()],
        &expected(&genuine),
        now(),
    ));
    assert!(
        m.contains("the attestation is not signed by the token's F9 certificate"),
        "{m}"
    );

    // The forger's own F9 with it: that F9 chains to no trusted root.
    let m = refusal(attest::verify(
        &forger.attestation,
        &forger.f9.der,
        &[root.cert()],
        &expected(&forger),
        now(),
    ));
    assert!(m.contains("no root in the attestation roots issued"), "{m}");
    assert!(
        m.contains("https://developers.yubico.com/PKI/yubico-ca-certs.txt"),
        "{m}"
    );

    // An attestation that names another issuer than the F9 certificate.
    let m = refusal(attest::verify(
        &genuine.attestation,
        &forger.f9.der,
        &[root.cert(), other.cert()],
        &expected(&genuine),
        now(),
    ));
    assert!(
        m.contains("the attestation is not signed by the token's F9 certificate"),
        "{m}"
    );
}

#[test]
fn impostor_root_with_the_same_name() {
    let root = Ca::root("CN=Test PIV Root CA");
    let t = always(&root);
    let impostor = Ca::root("CN=Test PIV Root CA");
    let m = refusal(attest::verify(
        &t.attestation,
        &t.f9.der,
        &[impostor.cert()],
        &expected(&t),
        now(),
    ));
    assert!(m.contains("has the right name but did not sign"), "{m}");
    // With the genuine root also in the bundle, the search goes past the impostor.
    let got = attest::verify(
        &t.attestation,
        &t.f9.der,
        &[impostor.cert(), root.cert()],
        &expected(&t),
        now(),
    )
    .expect("the genuine root is found");
    assert_eq!(got.root_sha256, sha256_hex(&root.der));
}

#[test]
fn attested_key_must_be_the_slot_key() {
    let root = Ca::root("CN=Test PIV Root CA");
    let t = always(&root);
    let mut want = expected(&t);
    want.public_key_sec1 = point(&new_key().public_key());
    let m = refusal(attest::verify(
        &t.attestation,
        &t.f9.der,
        &[root.cert()],
        &want,
        now(),
    ));
    assert!(
        m.contains("the attested key differs from the key in slot 82"),
        "{m}"
    );
}

#[test]
fn serial_must_be_the_tokens() {
    let root = Ca::root("CN=Test PIV Root CA");
    let t = always(&root);
    let mut want = expected(&t);
    want.serial = Some(SERIAL + 1);
    let m = refusal(attest::verify(
        &t.attestation,
        &t.f9.der,
        &[root.cert()],
        &want,
        now(),
    ));
    assert!(
        m.contains(&format!(
            "attested serial {SERIAL}, token reports {}",
            SERIAL + 1
        )),
        "{m}"
    );
    // No serial expected: any is reported.
    want.serial = None;
    let got = attest::verify(&t.attestation, &t.f9.der, &[root.cert()], &want, now()).unwrap();
    assert_eq!(got.serial, Some(SERIAL));

    // An attestation without a serial when the token reports one.
    let f9 = root.sub("CN=Old F9", Duration::from_secs(YEAR));
    let leaf = issue(
        &f9.name,
        &f9.key,
        "CN=YubiKey PIV Attestation 82",
        &t.slot_key.public_key(),
        yubico_extensions([4, 3, 5], None, 3, 2),
        Duration::from_secs(YEAR),
    );
    let m = refusal(attest::verify(
        &leaf,
        &f9.der,
        &[root.cert()],
        &expected(&t),
        now(),
    ));
    assert!(m.contains("carries no serial number"), "{m}");
}

#[test]
fn policies_must_be_always() {
    let root = Ca::root("CN=Test PIV Root CA");
    let once = token(&root, pin_policy::ONCE, touch_policy::ALWAYS);
    let m = refusal(attest::verify(
        &once.attestation,
        &once.f9.der,
        &[root.cert()],
        &expected(&once),
        now(),
    ));
    assert!(m.contains("PIN policy once (attested), not always"), "{m}");

    let cached = token(&root, pin_policy::ALWAYS, touch_policy::CACHED);
    let m = refusal(attest::verify(
        &cached.attestation,
        &cached.f9.der,
        &[root.cert()],
        &expected(&cached),
        now(),
    ));
    assert!(
        m.contains("touch policy cached (attested), not always"),
        "{m}"
    );

    // Not asked for: reported as they are.
    let never = token(&root, pin_policy::NEVER, touch_policy::NEVER);
    let mut want = expected(&never);
    want.pin_policy_always = false;
    want.touch_policy_always = false;
    let got = attest::verify(
        &never.attestation,
        &never.f9.der,
        &[root.cert()],
        &want,
        now(),
    )
    .unwrap();
    assert_eq!((got.pin_policy, got.touch_policy), (1, 1));
}

#[test]
fn missing_yubico_extensions_are_refused() {
    let root = Ca::root("CN=Test PIV Root CA");
    let t = always(&root);
    let bare = issue(
        &t.f9.name,
        &t.f9.key,
        "CN=YubiKey PIV Attestation 82",
        &t.slot_key.public_key(),
        vec![],
        Duration::from_secs(YEAR),
    );
    let m = refusal(attest::verify(
        &bare,
        &t.f9.der,
        &[root.cert()],
        &expected(&t),
        now(),
    ));
    assert!(m.contains("not a YubiKey PIV attestation"), "{m}");
}

#[test]
fn dates_bundle_checked_token_certificates_not() {
    // Root and intermediate valid 200 years; F9 and attestation for one day only.
    let root = {
        let key = new_key();
        let name = "CN=Long Root";
        let der = issue(
            name,
            &key,
            name,
            &key.public_key(),
            vec![],
            Duration::from_secs(200 * YEAR),
        );
        Ca {
            name: name.to_string(),
            key,
            der,
        }
    };
    let f9 = root.sub("CN=Short F9", Duration::from_secs(24 * 3600));
    let slot_key = new_key();
    let leaf = issue(
        &f9.name,
        &f9.key,
        "CN=YubiKey PIV Attestation 82",
        &slot_key.public_key(),
        yubico_extensions([5, 4, 3], Some(SERIAL), 3, 2),
        Duration::from_secs(24 * 3600),
    );
    let want = Expected {
        public_key_sec1: point(&slot_key.public_key()),
        serial: Some(SERIAL),
        pin_policy_always: true,
        touch_policy_always: true,
    };
    let in_ten_years = now() + 10 * YEAR;
    attest::verify(&leaf, &f9.der, &[root.cert()], &want, in_ten_years)
        .expect("expired F9 and attestation dates are not checked");

    // A bundle root past its notAfter is refused.
    let short_root = Ca::root("CN=Test PIV Root CA");
    let t = always(&short_root);
    let m = refusal(attest::verify(
        &t.attestation,
        &t.f9.der,
        &[short_root.cert()],
        &expected(&t),
        now() + 30 * YEAR,
    ));
    assert!(m.contains("is not valid now"), "{m}");
}

#[test]
fn load_roots_files() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    match attest::load_roots(&missing) {
        Err(e @ Error::Io { .. }) => {
            assert!(e.to_string().contains("missing.pem"), "{e}");
        }
        other => panic!("expected an I/O error, got {other:?}"),
    }

    for (name, bytes) in [
        ("empty.pem", &b""[..]),
        ("garbage.pem", b"\x00\x01 not a cert"),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let e = attest::load_roots(&path).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, Error::InvalidInput { .. }), "{msg}");
        assert!(
            msg.contains(name) && msg.contains("no certificate"),
            "{msg}"
        );
        assert!(msg.contains("yubico-ca-certs.txt"), "{msg}");
    }

    let root = Ca::root("CN=Test PIV Root CA");
    let inter = root.sub("CN=Test Intermediate", Duration::from_secs(YEAR));
    let pem = |der: &[u8]| {
        let b64 = data_encoding::BASE64.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            lines.join("\n")
        )
    };
    let bundle = dir.path().join("bundle.pem");
    std::fs::write(
        &bundle,
        format!("Test roots\n{}\n{}", pem(&root.der), pem(&inter.der)),
    )
    .unwrap();
    let certs = attest::load_roots(&bundle).unwrap();
    assert_eq!(certs, [root.cert(), inter.cert()]);

    let der = dir.path().join("root.der");
    std::fs::write(&der, &root.der).unwrap();
    assert_eq!(attest::load_roots(&der).unwrap(), [root.cert()]);
}

/// The sandbox soft token's attestation chains to the root it was made with.
#[test]
fn sandbox_token_attestation() {
    let touch = SimulatedTouch::new(TouchPolicy::Approve, Duration::from_millis(1));
    let mut card = SoftCard::new(Box::new(touch));
    let mut send = |cmd: Command| {
        let r = transceive(&mut card, &cmd, 0xC0, "test").unwrap();
        assert!(r.sw.is_ok(), "{cmd:?}: {:?}", r.sw);
        r.data.to_vec()
    };
    send(Command::new(0, 0xA4, 0x04, 0).with_data(piv::AID.to_vec()));

    // Management key (AES-192 default) mutual authentication.
    let dyn_auth = |items: &[(u32, &[u8])]| {
        let mut inner = Vec::new();
        for (t, v) in items {
            write_tlv(&mut inner, *t, v);
        }
        let mut out = Vec::new();
        write_tlv(&mut out, 0x7C, &inner);
        out
    };
    let inner = |data: &[u8], tag: u32| {
        let outer = Tlv::parse_all(data).unwrap();
        let items = Tlv::parse_all(Tlv::find(&outer, 0x7C).unwrap()).unwrap();
        Tlv::find(&items, tag).unwrap().to_vec()
    };
    let aes = |block: &mut [u8; 16], encrypt: bool| {
        use aes::cipher::{BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
        let c = aes::Aes192::new_from_slice(&piv::DEFAULT_MGM_KEY).unwrap();
        let b = <&mut aes::cipher::Block<aes::Aes192>>::try_from(&mut block[..]).unwrap();
        if encrypt {
            c.encrypt_block(b);
        } else {
            c.decrypt_block(b);
        }
    };
    let mgm = |d: Vec<u8>| Command::new(0, ins::AUTHENTICATE, piv::alg::AES192, 0x9B).with_data(d);
    let r = send(mgm(dyn_auth(&[(0x80, &[])])));
    let mut witness: [u8; 16] = inner(&r, 0x80).try_into().unwrap();
    aes(&mut witness, false);
    let challenge = [9u8; 16];
    let r = send(mgm(dyn_auth(&[(0x80, &witness), (0x81, &challenge)])));
    let mut answer = challenge;
    aes(&mut answer, true);
    assert_eq!(inner(&r, 0x82), answer);

    // Generate in slot 82 with PIN and touch always.
    let mut tmpl = Vec::new();
    write_tlv(&mut tmpl, 0x80, &[piv::alg::ECC_P256]);
    write_tlv(&mut tmpl, 0xAA, &[pin_policy::ALWAYS]);
    write_tlv(&mut tmpl, 0xAB, &[touch_policy::ALWAYS]);
    let mut gen = Vec::new();
    write_tlv(&mut gen, 0xAC, &tmpl);
    let r = send(Command::new(0, ins::GENERATE, 0, 0x82).with_data(gen));
    let outer = Tlv::parse_all(&r).unwrap();
    let items = Tlv::parse_all(Tlv::find(&outer, 0x7F49).unwrap()).unwrap();
    let slot_point = Tlv::find(&items, 0x86).unwrap().to_vec();

    let attestation = send(Command::new(0, ins::ATTEST, 0x82, 0));
    let mut get = Vec::new();
    write_tlv(&mut get, 0x5C, &[0x5F, 0xFF, 0x01]);
    let r = send(Command::new(0, ins::GET_DATA, 0x3F, 0xFF).with_data(get));
    let object = Tlv::find(&Tlv::parse_all(&r).unwrap(), 0x53).unwrap();
    let f9 = breakglass::token::piv::certificate_from_object(object).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let root_file = dir.path().join("sandbox-root.der");
    std::fs::write(&root_file, card.piv_attestation_root()).unwrap();
    let bundle = attest::load_roots(&root_file).unwrap();
    let want = Expected {
        public_key_sec1: slot_point,
        serial: Some(card.piv_serial()),
        pin_policy_always: true,
        touch_policy_always: true,
    };
    let got = attest::verify(&attestation, &f9, &bundle, &want, now()).expect("sandbox chain");
    assert_eq!(got.serial, Some(card.piv_serial()));
    assert_eq!(
        got.firmware,
        (piv::VERSION[0], piv::VERSION[1], piv::VERSION[2])
    );
    assert_eq!(got.chain.len(), 3);
    assert_eq!(got.root_sha256, sha256_hex(&card.piv_attestation_root()));

    // Another sandbox card's root does not vouch for this one.
    let other = SoftCard::new(Box::new(SimulatedTouch::new(
        TouchPolicy::Approve,
        Duration::from_millis(1),
    )));
    let other_root = Certificate::from_der(&other.piv_attestation_root()).unwrap();
    let m = refusal(attest::verify(
        &attestation,
        &f9,
        &[other_root],
        &want,
        now(),
    ));
    assert!(m.contains("no root in the attestation roots issued"), "{m}");
}
