//! The soft token's PIV applet seen by the real `yubikey` crate through pcscd and vpcd.

use crate::common;

use common::{pcsc_ready, Slot, SoftToken};
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{DerSignature, VerifyingKey};
use p256::elliptic_curve::sec1::ToSec1Point;
use x509_cert::der::{Decode, Encode};
use x509_cert::Certificate;
use yubikey::piv::{self, AlgorithmId, RetiredSlotId, SlotId};
use yubikey::{reader::Context, Error, MgmKey, PinPolicy, TouchPolicy, YubiKey};

const PIN: &[u8] = b"123456";

/// Opens the YubiKey in the named reader (not `YubiKey::open`: another test run may have a
/// soft token in the other vpcd slot).
fn open(reader: &str) -> YubiKey {
    let mut ctx = Context::open().expect("pcsc context");
    let readers = ctx.iter().expect("list readers");
    let found = readers
        .into_iter()
        .find(|r| r.name() == reader)
        .unwrap_or_else(|| panic!("reader {reader:?} not found"));
    found
        .open()
        .expect("open the soft token with the yubikey crate")
}

/// `issuer` signed `cert` (ECDSA P-256 with SHA-256).
fn signed_by(cert: &Certificate, issuer: &Certificate) -> bool {
    let spki = issuer.tbs_certificate().subject_public_key_info();
    let Ok(key) = VerifyingKey::from_sec1_bytes(spki.subject_public_key.raw_bytes()) else {
        return false;
    };
    let Ok(sig) = DerSignature::try_from(cert.signature().raw_bytes()) else {
        return false;
    };
    let tbs = cert.tbs_certificate().to_der().expect("encode tbs");
    cert.tbs_certificate().issuer() == issuer.tbs_certificate().subject()
        && key.verify(&tbs, &sig).is_ok()
}

#[test]
fn pin_retries_block_and_unblock() {
    if !pcsc_ready("pin_retries_block_and_unblock") {
        return;
    }
    let token = SoftToken::approve(1);
    let mut yk = open(&token.reader());
    assert_eq!(yk.get_pin_retries().unwrap(), 3);
    assert!(matches!(
        yk.verify_pin(b"000000"),
        Err(Error::WrongPin { tries: 2 })
    ));
    assert_eq!(yk.get_pin_retries().unwrap(), 2);
    yk.verify_pin(PIN).expect("correct PIN");
    assert_eq!(yk.get_pin_retries().unwrap(), 3, "a correct PIN resets");
    for left in [2u8, 1, 0] {
        match yk.verify_pin(b"999999") {
            Err(Error::WrongPin { tries }) => assert_eq!(tries, left),
            other => panic!("expected a wrong PIN, got {other:?}"),
        }
    }
    // Blocked (6983): even the right PIN is refused.
    assert!(matches!(
        yk.verify_pin(PIN),
        Err(Error::WrongPin { tries: 0 })
    ));
    assert_eq!(yk.get_pin_retries().unwrap(), 0);
    yk.unblock_pin(b"12345678", b"654321")
        .expect("PUK unblocks");
    yk.verify_pin(b"654321").expect("new PIN");
    assert_eq!(yk.get_pin_retries().unwrap(), 3);
}

#[test]
fn generate_ecdh_and_attest_with_the_yubikey_crate() {
    if !pcsc_ready("generate_ecdh_and_attest_with_the_yubikey_crate") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root_path = dir.path().join("piv-root.der");
    let token = SoftToken::start_with(
        Slot::claim(0),
        "approve",
        15,
        &["--piv-root-out", root_path.to_str().unwrap()],
    );
    let mut yk = open(&token.reader());
    assert_eq!(yk.version().major, 5);
    assert_eq!(yk.version().minor, 7);
    let serial = yk.serial().0;
    assert!(
        (10_000_000..100_000_000).contains(&serial),
        "serial {serial}"
    );

    let slot = SlotId::Retired(RetiredSlotId::R1);
    // Generating needs the management key.
    assert!(piv::generate(
        &mut yk,
        slot,
        AlgorithmId::EccP256,
        PinPolicy::Always,
        TouchPolicy::Always
    )
    .is_err());
    let mgm = MgmKey::get_default(&yk).expect("default management key for 5.7");
    yk.authenticate(&mgm)
        .expect("authenticate with the default key");
    let spki = piv::generate(
        &mut yk,
        slot,
        AlgorithmId::EccP256,
        PinPolicy::Always,
        TouchPolicy::Always,
    )
    .expect("generate P-256 in slot 82");
    let card_public =
        p256::PublicKey::from_sec1_bytes(spki.subject_public_key.raw_bytes()).expect("point");

    let meta = piv::metadata(&mut yk, slot).expect("metadata");
    assert_eq!(meta.policy, Some((PinPolicy::Always, TouchPolicy::Always)));

    // ECDH: host ephemeral key, card computes the shared X coordinate.
    let host = p256::SecretKey::from_slice(&[0x42; 32]).unwrap();
    let host_point = host.public_key().as_affine().to_sec1_point(false);
    let expected = host.diffie_hellman(&card_public);

    // PIN policy "always": no VERIFY, no ECDH.
    assert!(matches!(
        piv::decrypt_data(&mut yk, host_point.as_bytes(), AlgorithmId::EccP256, slot),
        Err(Error::AuthenticationError)
    ));
    yk.verify_pin(PIN).unwrap();
    let shared = piv::decrypt_data(&mut yk, host_point.as_bytes(), AlgorithmId::EccP256, slot)
        .expect("ECDH right after VERIFY");
    assert_eq!(&shared[..], &expected.raw_secret_bytes()[..]);
    // The VERIFY was used up.
    assert!(piv::decrypt_data(&mut yk, host_point.as_bytes(), AlgorithmId::EccP256, slot).is_err());

    // Attestation chain: slot cert <- F9 cert <- sandbox root.
    let attestation = piv::attest(&mut yk, slot).expect("attest");
    let attestation = Certificate::from_der(&attestation).expect("attestation parses");
    // A certificate object as on a YubiKey: `70 cert 71 00 FE 00`.
    let object = yk.fetch_object(0x5F_FF01).expect("F9 certificate");
    assert_eq!(object[0], 0x70, "certificate object, not bare DER");
    let f9 = breakglass::token::piv::certificate_from_object(&object).unwrap();
    let f9 = Certificate::from_der(&f9).expect("F9 parses");
    let root = Certificate::from_der(&std::fs::read(&root_path).unwrap()).expect("root parses");
    assert!(signed_by(&attestation, &f9), "attestation signed by F9");
    assert!(signed_by(&f9, &root), "F9 signed by the root");
    assert!(signed_by(&root, &root), "root is self-signed");
    assert_eq!(
        attestation
            .tbs_certificate()
            .subject_public_key_info()
            .subject_public_key
            .raw_bytes(),
        spki.subject_public_key.raw_bytes(),
        "attestation is for the generated key"
    );
    // Yubico extensions: firmware version and PIN/touch policy.
    let exts = attestation
        .tbs_certificate()
        .extensions()
        .expect("extensions");
    let ext = |oid: &str| {
        exts.iter()
            .find(|e| e.extn_id.to_string() == oid)
            .map(|e| e.extn_value.as_bytes().to_vec())
    };
    assert_eq!(ext("1.3.6.1.4.1.41482.3.3").unwrap()[..2], [5, 7]);
    assert_eq!(ext("1.3.6.1.4.1.41482.3.8").unwrap(), vec![3, 2]);
}
