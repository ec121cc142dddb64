//! Vault v1 and v2: known-answer vectors, tamper and truncation rejection, wrong factors, key slots.

#![allow(deprecated)] // ring::test::rand gives the soft token a fixed device salt.

use crate::common;

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use breakglass::secure::{Random, RandomFailed};
use breakglass::token::oath::{Kind, NewAccount, Seed, Session};
use breakglass::token::otp::Algorithm;
use breakglass::token::soft::{SimulatedTouch, SoftCard, TouchPolicy};
use breakglass::vault::{self, Error, KdfParams, OathFactor, Payload, Vault};

pub(crate) const SEAL: &str = "breakglass-seal";
const VECTOR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/vault-v1-vector.bin"
);

/// Deterministic bytes: SHA-256(label ‖ counter) blocks.
pub(crate) struct TestRng(std::cell::Cell<u64>);

impl TestRng {
    pub(crate) fn new() -> Self {
        Self(std::cell::Cell::new(0))
    }
}

impl Random for TestRng {
    fn fill(&self, dest: &mut [u8]) -> Result<(), RandomFailed> {
        for chunk in dest.chunks_mut(32) {
            let n = self.0.get();
            self.0.set(n + 1);
            let block = ring::digest::digest(
                &ring::digest::SHA256,
                &[b"vault test rng".as_slice(), &n.to_be_bytes()].concat(),
            );
            chunk.copy_from_slice(&block.as_ref()[..chunk.len()]);
        }
        Ok(())
    }
}

/// A soft token whose device salt is fixed by `device` and whose sealing seed is `seed`.
pub(crate) fn token(device: u8, seed: u8) -> SoftCard {
    let touch = SimulatedTouch::new(TouchPolicy::Approve, Duration::ZERO);
    let mut card = SoftCard::with_rng(
        Box::new(touch),
        Box::new(ring::test::rand::FixedByteRandom { byte: device }),
    );
    let mut s = Session::select(&mut card).unwrap();
    s.put(&NewAccount {
        name: SEAL.into(),
        kind: Kind::Totp,
        algorithm: Algorithm::Sha256,
        digits: 6,
        period: 30,
        touch: true,
        counter: 0,
        seed: Seed::new(Zeroizing::new(vec![seed; 32])),
    })
    .unwrap();
    drop(s);
    card
}

pub(crate) fn payload() -> Payload {
    common::sample_payload()
}

pub(crate) fn pass(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

fn create(card: &mut SoftCard, rng: &dyn Random) -> Vault {
    let mut s = Session::select(card).unwrap();
    let mut f = OathFactor::new(&mut s, SEAL);
    Vault::create(
        &pass("correct horse battery staple"),
        KdfParams::LIGHT,
        &mut f,
        "primary",
        &payload(),
        rng,
        1_700_000_000,
    )
    .unwrap()
}

fn open(v: &Vault, card: &mut SoftCard, passphrase: &str) -> Result<vault::Opened, Error> {
    let mut s = Session::select(card).unwrap();
    let mut f = OathFactor::new(&mut s, SEAL);
    v.open(&pass(passphrase), &mut f)
}

pub(crate) const VECTOR_V2: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/vault-v2-vector.bin"
);

/// Checks what the vector's inputs sealed.
pub(crate) fn assert_vector_payload(opened: &vault::Opened) {
    assert_eq!(opened.payload.access_key_id, "AKIAIOSFODNN7EXAMPLE");
    assert_eq!(
        opened.payload.secret_access_key.expose_secret(),
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    );
    assert_eq!(
        opened.payload.mfa_serial,
        "arn:aws:iam::123456789012:mfa/breakglass"
    );
    assert_eq!(opened.payload.created, 1_700_000_000);
}

#[test]
fn known_answer_vector() {
    let v = create(&mut token(0x11, 0x22), &TestRng::new());
    let bytes = v.to_bytes();
    if std::env::var_os("BREAKGLASS_WRITE_VECTORS").is_some() {
        std::fs::write(VECTOR_V2, &bytes).unwrap();
    }
    let expected = std::fs::read(VECTOR_V2).expect("tests/data/vault-v2-vector.bin");
    assert_eq!(
        bytes, expected,
        "vault v2 encoding changed: the format is frozen"
    );
    assert_eq!(&expected[8..10], &[0, 2], "version 2");
    let v = Vault::from_bytes(&expected).unwrap();
    let facts = v.key_facts().expect("a v2 vault says which key it holds");
    assert_eq!(facts.access_key_id, "AKIAIOSFODNN7EXAMPLE");
    assert_eq!(facts.generation, 0);
    let opened = open(&v, &mut token(0x11, 0x22), "correct horse battery staple").unwrap();
    assert_vector_payload(&opened);
    assert_eq!(facts.sealed_at, opened.payload.rotated);
}

/// Version 1 vaults (sealed before key facts existed) keep opening, and re-encode to the
/// very bytes they were read from (their header is the payload's associated data).
#[test]
fn version_1_vector_still_opens_and_is_kept_byte_for_byte() {
    let expected = std::fs::read(VECTOR).expect("tests/data/vault-v1-vector.bin");
    assert_eq!(&expected[8..10], &[0, 1], "version 1");
    let v = Vault::from_bytes(&expected).unwrap();
    assert!(v.key_facts().is_none());
    assert_eq!(v.to_bytes(), expected, "a v1 vault re-encodes unchanged");
    let opened = open(&v, &mut token(0x11, 0x22), "correct horse battery staple").unwrap();
    assert_vector_payload(&opened);
}

/// A rotation reseals the same slots with another key: the old passphrase and token open it,
/// the key facts name the new key with the next generation, and a v1 vault becomes v2.
#[test]
fn a_new_key_is_sealed_under_the_same_slots() {
    let v1 = Vault::from_bytes(&std::fs::read(VECTOR).unwrap()).unwrap();
    let opened = open(&v1, &mut token(0x11, 0x22), "correct horse battery staple").unwrap();
    let secret = pass("NEWsecretNEWsecretNEWsecretNEWsecret0001");
    let rng = TestRng::new();
    let v2 = opened
        .with_new_key("AKIANEWKEYNEWKEY0001", &secret, 1_800_000_000, &rng)
        .unwrap();
    let bytes = v2.to_bytes();
    assert_eq!(&bytes[8..10], &[0, 2]);
    let v2 = Vault::from_bytes(&bytes).unwrap();
    let facts = v2.key_facts().unwrap().clone();
    assert_eq!(
        (
            facts.access_key_id.as_str(),
            facts.sealed_at,
            facts.generation
        ),
        ("AKIANEWKEYNEWKEY0001", 1_800_000_000, 1)
    );
    assert_eq!(
        v2.slots().collect::<Vec<_>>(),
        v1.slots().collect::<Vec<_>>()
    );
    let reopened = open(&v2, &mut token(0x11, 0x22), "correct horse battery staple").unwrap();
    assert_eq!(reopened.payload.access_key_id, "AKIANEWKEYNEWKEY0001");
    assert_eq!(
        reopened.payload.secret_access_key.expose_secret(),
        secret.expose_secret()
    );
    assert_eq!(reopened.payload.rotated, 1_800_000_000);
    assert_eq!(reopened.payload.created, 1_700_000_000);
    assert!(open(&v2, &mut token(0x11, 0x22), "wrong horse").is_err());
    // A second rotation counts on.
    let v3 = reopened
        .with_new_key("AKIANEWKEYNEWKEY0002", &secret, 1_800_000_100, &rng)
        .unwrap();
    assert_eq!(v3.key_facts().unwrap().generation, 2);
}

/// The key id in the clear is authenticated: a vault whose facts were edited to name another
/// key (checksum recomputed) does not open.
#[test]
fn edited_key_facts_never_open() {
    let mut bytes = std::fs::read(VECTOR_V2).unwrap();
    let at = bytes
        .windows(20)
        .position(|w| w == b"AKIAIOSFODNN7EXAMPLE")
        .expect("the key id is in the clear");
    bytes[at + 4] = b'X';
    let n = bytes.len() - 32;
    let sum = ring::digest::digest(&ring::digest::SHA256, &bytes[..n]);
    bytes[n..].copy_from_slice(sum.as_ref());
    let v = Vault::from_bytes(&bytes).unwrap();
    assert_eq!(v.key_facts().unwrap().access_key_id, "AKIAXOSFODNN7EXAMPLE");
    let e = open(&v, &mut token(0x11, 0x22), "correct horse battery staple").err();
    assert!(matches!(e, Some(Error::Damaged)), "{e:?}");
}

#[test]
fn every_byte_flip_and_truncation_is_damage() {
    for path in [VECTOR, VECTOR_V2] {
        every_flip_and_truncation_of(&std::fs::read(path).unwrap());
    }
}

pub(crate) fn every_flip_and_truncation_of(bytes: &[u8]) {
    let bytes = bytes.to_vec();
    // Every byte replaced by each of its 255 other values.
    let mut b = bytes.clone();
    for i in 0..bytes.len() {
        for delta in 1..=255u8 {
            b[i] = bytes[i] ^ delta;
            assert!(
                matches!(
                    Vault::from_bytes(&b),
                    Err(Error::Damaged | Error::NotAVault)
                ),
                "byte {i} xor {delta:#x}"
            );
        }
        b[i] = bytes[i];
    }
    for n in 0..bytes.len() {
        assert!(
            matches!(Vault::from_bytes(&bytes[..n]), Err(Error::Damaged)),
            "truncated to {n}"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(Vault::from_bytes(&longer).is_err());
}

#[test]
fn a_deliberate_edit_with_a_recomputed_checksum_never_opens() {
    // An attacker can recompute the plain checksum; the AEADs must still refuse every edit.
    let bytes = std::fs::read(VECTOR).unwrap();
    let body_len = bytes.len() - 32;
    let mut card = token(0x11, 0x22);
    for i in 10..body_len {
        let mut b = bytes[..body_len].to_vec();
        b[i] ^= 0x01;
        let sum = ring::digest::digest(&ring::digest::SHA256, &b);
        b.extend_from_slice(sum.as_ref());
        let result = Vault::from_bytes(&b)
            .and_then(|v| open(&v, &mut card, "correct horse battery staple").map(|_| ()));
        assert!(result.is_err(), "edited byte {i} still opened");
    }
}

#[test]
fn wrong_passphrase_and_wrong_tokens() {
    let rng = breakglass::secure::SystemRandom::new();
    let v = create(&mut token(1, 1), &rng);
    let e = open(&v, &mut token(1, 1), "Correct horse battery staple")
        .err()
        .unwrap();
    assert_eq!(e.to_string(), "passphrase or token did not open this vault");
    // Same device id, other sealing secret: indistinguishable from a wrong passphrase.
    assert!(matches!(
        open(&v, &mut token(1, 2), "correct horse battery staple"),
        Err(Error::NotOpened)
    ));
    // Another token: say which slots exist.
    let e = open(&v, &mut token(9, 1), "correct horse battery staple")
        .err()
        .unwrap();
    assert!(matches!(e, Error::NotEnrolled { .. }));
    assert!(e.to_string().contains("0 \"primary\" (oath)"), "{e}");
}

#[test]
fn backup_slot_opens_and_slot_removal_revokes() {
    let rng = breakglass::secure::SystemRandom::new();
    let mut primary = token(1, 1);
    let mut backup = token(2, 2);
    let v = create(&mut primary, &rng);
    let opened = open(&v, &mut primary, "correct horse battery staple").unwrap();
    let (v2, id) = {
        let mut s = Session::select(&mut backup).unwrap();
        let mut f = OathFactor::new(&mut s, SEAL);
        opened
            .add_slot(
                &mut f,
                "backup",
                "arn:aws:iam::123456789012:mfa/backup",
                &rng,
            )
            .unwrap()
    };
    assert_eq!(id, 1);
    assert_eq!(v2.slots().count(), 2);
    let via_backup = open(&v2, &mut backup, "correct horse battery staple").unwrap();
    assert_eq!(via_backup.slot_id, 1);
    assert_eq!(
        via_backup.mfa_serial(),
        "arn:aws:iam::123456789012:mfa/backup"
    );
    assert_eq!(via_backup.payload.access_key_id, "AKIAIOSFODNN7EXAMPLE");
    let via_primary = open(&v2, &mut primary, "correct horse battery staple").unwrap();
    assert_eq!(
        via_primary.mfa_serial(),
        "arn:aws:iam::123456789012:mfa/breakglass"
    );
    // Remove the primary slot: the primary token no longer opens the new vault.
    let v3 = via_backup.remove_slot(0, &rng).unwrap();
    assert!(matches!(
        open(&v3, &mut primary, "correct horse battery staple"),
        Err(Error::NotEnrolled { .. })
    ));
    let last = open(&v3, &mut backup, "correct horse battery staple").unwrap();
    assert!(matches!(last.remove_slot(1, &rng), Err(Error::LastSlot)));
    assert!(matches!(
        last.remove_slot(7, &rng),
        Err(Error::NoSuchSlot { id: 7 })
    ));
}

/// A slot added to or removed from a version 1 vault keeps it version 1 (its header as
/// before, but for the slot), and the other slots' records are byte for byte the same: each
/// wrap binds only its own record.
#[test]
fn a_slot_change_keeps_a_version_1_vault_version_1_and_the_other_slots_untouched() {
    let rng = breakglass::secure::SystemRandom::new();
    let v1 = Vault::from_bytes(&std::fs::read(VECTOR).unwrap()).unwrap();
    let opened = open(&v1, &mut token(0x11, 0x22), "correct horse battery staple").unwrap();
    let mut backup = token(3, 3);
    let (added, id) = {
        let mut s = Session::select(&mut backup).unwrap();
        let mut f = OathFactor::new(&mut s, SEAL);
        opened
            .add_slot(&mut f, "backup", "arn:aws:iam::123456789012:mfa/b", &rng)
            .unwrap()
    };
    let bytes = added.to_bytes();
    assert_eq!(&bytes[8..10], &[0, 1], "still version 1");
    assert!(added.key_facts().is_none());
    let old = std::fs::read(VECTOR).unwrap();
    // Slot 0's record (from offset 80, its length first) is unchanged.
    let len0 = 2 + usize::from(u16::from_be_bytes([old[80], old[81]]));
    assert_eq!(&bytes[80..80 + len0], &old[80..80 + len0]);
    assert_eq!(bytes[79], 2, "two slots");
    let reopened = open(&added, &mut backup, "correct horse battery staple").unwrap();
    let removed = reopened.remove_slot(0, &rng).unwrap();
    assert_eq!(&removed.to_bytes()[8..10], &[0, 1]);
    assert_eq!(removed.slots().map(|s| s.id).collect::<Vec<_>>(), [id]);
}

#[test]
fn unsupported_version_and_foreign_files() {
    let mut b = std::fs::read(VECTOR).unwrap();
    b[9] = 4;
    let n = b.len() - 32;
    let sum = ring::digest::digest(&ring::digest::SHA256, &b[..n]);
    b[n..].copy_from_slice(sum.as_ref());
    let e = Vault::from_bytes(&b).err();
    assert!(
        matches!(e, Some(Error::UnsupportedVersion { version: 4 })),
        "{e:?}"
    );
    let said = e.unwrap().to_string();
    assert!(
        said.contains("reads versions 1 to 3") && said.contains("upgrade breakglass"),
        "a vault from a newer release says to upgrade: {said}"
    );
    // A v1 vault relabelled v2 lacks the key facts (and relabelled v3 the custodians):
    // damage, not a newer vault.
    for version in [2, 3] {
        b[9] = version;
        let sum = ring::digest::digest(&ring::digest::SHA256, &b[..n]);
        b[n..].copy_from_slice(sum.as_ref());
        assert!(matches!(Vault::from_bytes(&b), Err(Error::Damaged)));
    }
    assert!(matches!(
        Vault::from_bytes(
            b"{\"json\": true, \"padding\": \"........................................\"}"
        ),
        Err(Error::NotAVault)
    ));
}

#[test]
fn vault_files_are_private_and_refused_when_shared() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vaults/prod.vault");
    let v = Vault::from_bytes(&std::fs::read(VECTOR).unwrap()).unwrap();
    vault::file::write(&path, &v).unwrap();
    assert_eq!(vault::file::read(&path).unwrap(), v);
    // Group or others may do nothing with the file: not write, not even read.
    for m in [0o664, 0o640, 0o604, 0o620] {
        mode(&path, m);
        let e = vault::file::read(&path).unwrap_err();
        assert!(
            matches!(&e, Error::UnsafePermissions { path: p, mode, directory: false }
                if *p == path.display().to_string() && *mode == m),
            "{m:o}: {e}"
        );
        assert!(e.to_string().contains(&format!("mode {m:o}")), "{e}");
    }
    mode(&path, 0o400);
    assert_eq!(
        vault::file::read(&path).unwrap(),
        v,
        "read-only for its owner"
    );
    mode(&path, 0o600);
    // Nor with its directory.
    let vaults = path.parent().unwrap();
    for m in [0o777, 0o755, 0o750, 0o701] {
        mode(vaults, m);
        let e = vault::file::read(&path).unwrap_err();
        assert!(
            matches!(&e, Error::UnsafePermissions { path: p, mode, directory: true }
                if *p == vaults.display().to_string() && *mode == m),
            "{m:o}: {e}"
        );
        assert!(vault::file::write(&path, &v).is_err(), "{m:o}");
    }
    mode(vaults, 0o700);
    assert_eq!(vault::file::read(&path).unwrap(), v);
}

/// The vector with the KDF fields replaced and the checksum recomputed, as an attacker with
/// write access to the file would make it.
fn with_kdf(m_kib: u32, t: u32, p: u32) -> Vec<u8> {
    let mut b = std::fs::read(VECTOR).unwrap();
    b.truncate(b.len() - 32);
    b[35..39].copy_from_slice(&m_kib.to_be_bytes());
    b[39..43].copy_from_slice(&t.to_be_bytes());
    b[43..47].copy_from_slice(&p.to_be_bytes());
    let sum = ring::digest::digest(&ring::digest::SHA256, &b);
    b.extend_from_slice(sum.as_ref());
    b
}

#[test]
fn huge_kdf_parameters_in_an_edited_header_are_refused_before_any_derivation() {
    const GIB: u32 = 1024 * 1024;
    let bound = |bytes: &[u8]| match Vault::from_bytes(bytes) {
        Err(Error::KdfOutOfBounds { field, value, .. }) => (field, value),
        other => panic!("expected the bound error, got {other:?}"),
    };
    // 4 GiB and 16 lanes: the format's old upper bounds, 8 s and 4 GiB per try.
    assert_eq!(bound(&with_kdf(4 * GIB - 1, 3, 16)), ("lanes", 16));
    assert_eq!(
        bound(&with_kdf(4 * GIB - 1, 3, 4)),
        ("memory (KiB)", u64::from(4 * GIB - 1))
    );
    assert_eq!(bound(&with_kdf(64 * 1024, 64, 4)), ("passes", 64));
    assert_eq!(
        bound(&with_kdf(GIB, 16, 8)),
        ("memory × passes (KiB)", 16 * u64::from(GIB))
    );
    assert_eq!(bound(&with_kdf(0, 1, 1)), ("memory (KiB)", 0));
    // At the bounds it parses (and only then would a key be derived).
    Vault::from_bytes(&with_kdf(GIB, 4, 8)).unwrap();
    Vault::from_bytes(&with_kdf(256 * 1024, 16, 8)).unwrap();
    // The message names the field.
    let e = Vault::from_bytes(&with_kdf(4 * GIB - 1, 3, 4)).unwrap_err();
    assert!(e.to_string().contains("Argon2id memory (KiB)"), "{e}");
    // Enrolment is held to the same bounds.
    assert!(KdfParams::DEFAULT.check().is_ok());
    assert!(KdfParams {
        m_kib: 2 * GIB,
        t: 1,
        p: 1
    }
    .check()
    .is_err());
}

#[test]
fn a_file_larger_than_any_vault_is_refused_unread() {
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(vault::format::MAX_FILE, 69_694);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vaults/prod.vault");
    let v = Vault::from_bytes(&std::fs::read(VECTOR).unwrap()).unwrap();
    vault::file::write(&path, &v).unwrap();
    // One byte over the cap, and a 1 GiB file (sparse: nothing is written, and nothing read).
    for size in [vault::format::MAX_FILE as u64 + 1, 1 << 30] {
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(size).unwrap();
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .unwrap();
        match vault::file::read(&path) {
            Err(Error::TooLarge { size: s, max, .. }) => {
                assert_eq!((s, max), (size, vault::format::MAX_FILE as u64))
            }
            other => panic!("{size}: expected TooLarge, got {other:?}"),
        }
    }
}

#[test]
fn a_vault_names_its_profile_and_opens_for_no_other() {
    let mut card = token(0x11, 0x22);
    let rng = TestRng::new();
    let mut s = Session::select(&mut card).unwrap();
    let mut f = OathFactor::new(&mut s, SEAL);
    let bound = Payload {
        profile: Some("prod".into()),
        ..payload()
    };
    let v = Vault::create(
        &pass("correct horse battery staple"),
        KdfParams::LIGHT,
        &mut f,
        "primary",
        &bound,
        &rng,
        1_700_000_000,
    )
    .unwrap();
    drop(s);
    let opened = open(&v, &mut card, "correct horse battery staple").unwrap();
    assert_eq!(opened.payload.profile.as_deref(), Some("prod"));
    assert!(opened.check_profile("prod").unwrap());
    let e = opened.check_profile("stage").unwrap_err();
    assert!(
        matches!(&e, Error::WrongProfile { sealed_for, profile } if sealed_for == "prod" && profile == "stage"),
        "{e}"
    );
    assert!(e.to_string().contains("\"prod\"") && e.to_string().contains("\"stage\""));
    // A slot added keeps the binding; the vector (sealed without one) opens, unchecked.
    let (v2, _) = opened
        .add_slot(
            &mut OathFactor::new(&mut Session::select(&mut token(0x33, 0x44)).unwrap(), SEAL),
            "backup",
            "arn:aws:iam::123456789012:mfa/backup",
            &rng,
        )
        .unwrap();
    let again = open(&v2, &mut card, "correct horse battery staple").unwrap();
    assert!(again.check_profile("stage").is_err());
    let old = Vault::from_bytes(&std::fs::read(VECTOR).unwrap()).unwrap();
    let old = open(&old, &mut card, "correct horse battery staple").unwrap();
    assert!(!old.check_profile("stage").unwrap(), "no profile to check");
    // A bad profile name is not sealed.
    let mut s = Session::select(&mut card).unwrap();
    let mut f = OathFactor::new(&mut s, SEAL);
    let bad = Payload {
        profile: Some("a/b".into()),
        ..payload()
    };
    assert!(matches!(
        Vault::create(
            &pass("x"),
            KdfParams::LIGHT,
            &mut f,
            "primary",
            &bad,
            &rng,
            0
        ),
        Err(Error::InvalidInput {
            what: "profile name",
            ..
        })
    ));
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Arbitrary bytes, and the real vector with arbitrary edits, only ever give errors.
        #[test]
        fn vault_parser(bytes in proptest::collection::vec(any::<u8>(), 0..700),
                        edits in proptest::collection::vec((0usize..532, any::<u8>()), 1..6)) {
            let _ = Vault::from_bytes(&bytes);
            let mut v = std::fs::read(VECTOR).unwrap();
            for (i, b) in edits {
                let n = v.len();
                v[i % n] = b;
            }
            // Recompute the checksum so the structural parser, not the checksum, is exercised.
            let n = v.len() - 32;
            let sum = ring::digest::digest(&ring::digest::SHA256, &v[..n]);
            v[n..].copy_from_slice(sum.as_ref());
            let _ = Vault::from_bytes(&v);
        }

        #[test]
        fn config_parser(text in "\\PC{0,300}") {
            let paths = breakglass::config::Paths::from_lookup(|k| (k == "HOME").then(|| std::path::PathBuf::from("/h"))).unwrap();
            let _ = breakglass::config::parse(&text, std::path::Path::new("c.toml"), &paths);
            let with_header = format!("[profiles.p]\n{text}");
            let _ = breakglass::config::parse(&with_header, std::path::Path::new("c.toml"), &paths);
        }
    }
}

/// The format document and the code agree: `tests/tools/read_vault.py`, written from
/// docs/vault-format.md with Python's `cryptography` and `argon2-cffi`, opens both vectors, a
/// vault sealed now with fresh randomness and a profile, and that vault after a rotation.
#[test]
fn an_independent_reader_of_the_format_opens_what_the_code_seals() {
    let test = "an_independent_reader_of_the_format_opens_what_the_code_seals";
    let Some(python) = common::tool(test, "python3", "apt-get install python3") else {
        return;
    };
    let modules = std::process::Command::new(&python)
        .args(["-c", "import cryptography, argon2"])
        .output()
        .unwrap();
    if !modules.status.success() {
        assert!(
            !crate::common::require_all(),
            "BREAKGLASS_REQUIRE_ALL=1 but {python:?} lacks cryptography or argon2-cffi (pip install cryptography argon2-cffi)"
        );
        eprintln!("SKIPPED {test}: pip install cryptography argon2-cffi");
        return;
    }
    let read_as = |bytes: &[u8], passphrases: &str| -> serde_json::Value {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault");
        std::fs::write(&path, bytes).unwrap();
        let mut child = std::process::Command::new(&python)
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/tools/read_vault.py"
            ))
            .arg(&path)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The passphrase and the sealing seed on stdin, never in argv.
        use std::io::Write;
        let seed = "22".repeat(32);
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{passphrases}\n{seed}\n").as_bytes())
            .unwrap();
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let read = |bytes: &[u8]| read_as(bytes, "correct horse battery staple");
    let v1 = read(&std::fs::read(VECTOR).unwrap());
    assert_eq!(v1["version"], 1);
    assert_eq!(v1["key_facts"], serde_json::Value::Null);
    assert_eq!(v1["access_key_id"], "AKIAIOSFODNN7EXAMPLE");
    assert_eq!(
        v1["secret_access_key"],
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    );
    assert_eq!(v1["created"], 1_700_000_000);
    let v2 = read(&std::fs::read(VECTOR_V2).unwrap());
    assert_eq!(v2["version"], 2);
    assert_eq!(v2["key_facts"]["access_key_id"], "AKIAIOSFODNN7EXAMPLE");
    assert_eq!(v2["key_facts"]["generation"], 0);

    // Fresh randomness, a profile, the default KDF's shape (light for speed).
    let mut card = token(0x11, 0x22);
    let mut payload = payload();
    payload.profile = Some("prod".into());
    let fresh = {
        let mut s = Session::select(&mut card).unwrap();
        let mut f = OathFactor::new(&mut s, SEAL);
        Vault::create(
            &pass("correct horse battery staple"),
            KdfParams {
                m_kib: 2048,
                t: 2,
                p: 2,
            },
            &mut f,
            "primary",
            &payload,
            &breakglass::secure::SystemRandom::new(),
            1_800_000_000,
        )
        .unwrap()
    };
    let got = read(&fresh.to_bytes());
    assert_eq!(got["profile"], "prod");
    assert_eq!(got["kdf"], serde_json::json!([2048, 2, 2]));
    assert_eq!(
        got["mfa_serial"],
        "arn:aws:iam::123456789012:mfa/breakglass"
    );
    let opened = open(&fresh, &mut card, "correct horse battery staple").unwrap();
    let secret = pass("ROTATEDsecretROTATEDsecretROTATED0001");
    let rotated = opened
        .with_new_key(
            "AKIAROTATEDKEY000001",
            &secret,
            1_800_000_100,
            &breakglass::secure::SystemRandom::new(),
        )
        .unwrap();
    let got = read(&rotated.to_bytes());
    assert_eq!(got["access_key_id"], "AKIAROTATEDKEY000001");
    assert_eq!(got["secret_access_key"], secret.expose_secret());
    assert_eq!(got["rotated"], 1_800_000_100);
    assert_eq!(got["payload_created"], 1_700_000_000);
    assert_eq!(
        got["key_facts"],
        serde_json::json!({"access_key_id": "AKIAROTATEDKEY000001", "sealed_at": 1_800_000_100u64, "generation": 1})
    );

    // Version 3: the vector with two of its three custodians, and the fresh vault upgraded
    // (its one passphrase now Alice's, Bob's new), whose audit key carries over.
    let v3 = read_as(
        &std::fs::read(super::custodians::VECTOR_V3).unwrap(),
        "Carol\tcarol purple monkey\tAlice\talice correct horse",
    );
    assert_eq!(v3["version"], 3);
    assert_eq!(v3["access_key_id"], "AKIAIOSFODNN7EXAMPLE");
    assert_eq!(
        v3["custodians"],
        serde_json::json!({"threshold": 2, "names": ["Alice", "Bob", "Carol"]})
    );
    let bob = pass("bob battery staple");
    let upgraded = opened
        .rekey(
            &vault::Change {
                custodians: Some(vault::NewCustodians {
                    threshold: 2,
                    members: vec![
                        ("Alice".into(), vault::MemberKey::Upgraded),
                        ("Bob".into(), vault::MemberKey::Passphrase(&bob)),
                    ],
                }),
                remove_slots: vec![],
            },
            &mut |_| Err(Error::Damaged),
            &breakglass::secure::SystemRandom::new(),
        )
        .unwrap();
    let got = read_as(
        &upgraded.to_bytes(),
        "Alice\tcorrect horse battery staple\tBob\tbob battery staple",
    );
    assert_eq!(got["version"], 3);
    assert_eq!(got["profile"], "prod");
    assert_eq!(
        got["audit_key"],
        data_encoding::HEXLOWER.encode(opened.audit_key().expose())
    );
}
