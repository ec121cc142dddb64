//! The sealed vault: the IAM user's long-term key, openable only with both the passphrase and
//! an enrolled token.
//!
//! `P = Argon2id(passphrase)`, `T` = the token factor of a slot, `KEK = HKDF-SHA256(slot salt,
//! P ‖ T, "breakglass v1 kek" ‖ vault id ‖ slot id)`. A random data key is wrapped under each
//! slot's KEK (AES-256-GCM); the payload is sealed under the data key with the whole header as
//! associated data. Byte layout: docs/vault-format.md.
//!
//! Version 3 replaces the one passphrase with M of N custodians: `P` is random and split into
//! shares ([`shares`]), each sealed under its custodian's Argon2id key *and* the token key `Q`,
//! so that the file alone never tells whether a guessed passphrase is right (as in version 1,
//! where the slot's wrap needs both factors). The slots wrap the token key `Q ‖ K` under
//! `HKDF(T)`, and the data key is `HKDF(P ‖ K)`: a new custodian set (fresh `P`) or a removed
//! token (fresh `K`) gives a new data key without touching the other factor. See
//! docs/vault-format.md, "Keys (version 3)".

pub mod attest;
pub mod factor;
pub mod fido2;
pub mod file;
pub mod format;
pub mod piv;
mod rekey;
pub mod shares;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::secure::{random_bytes, Key32, Random, RandomFailed};
use crate::token::apdu::{write_tlv, Tlv};
pub use factor::{OathFactor, PinEntry, SealFactor};
pub use format::CustodianRecord;
pub use format::KeyFacts;
use format::{CustodianSet, Header, Sealed, SlotRecord, NONCE_LEN, SALT_LEN};
pub use rekey::{Change, MemberKey, NewCustodians};
use shares::Share;

/// Errors of the vault. The wording of the variants is what users read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The slot's key did not unwrap: a wrong passphrase, or a token answer that is not the
    /// enrolled one. The two cannot be told apart, by design.
    #[error("passphrase or token did not open this vault")]
    NotOpened,
    /// No slot of the factor's kind matches the token presented.
    #[error("this token is not enrolled in this vault (enrolled slots: {})", slots.join(", "))]
    NotEnrolled {
        /// The vault's slots, as `id "label" (kind)`.
        slots: Vec<String>,
    },
    /// Checksum, authentication tag or structure wrong: the file was cut short, changed, or a field
    /// is out of range.
    #[error("the vault is damaged or was modified")]
    Damaged,
    /// The file (8 bytes or more) does not start with the `BRKGLASS` magic.
    #[error("this file is not a breakglass vault")]
    NotAVault,
    /// A vault of a format version this build does not read: a newer one (made by a newer
    /// breakglass) or one that never existed.
    #[error(
        "vault format version {version} is not supported by this breakglass (it reads versions 1 to {}){}", format::LATEST, if *.version > format::LATEST { ": it was made by a newer breakglass; upgrade breakglass to use it" } else { "" }
    )]
    UnsupportedVersion {
        /// The version in the file.
        version: u16,
    },
    /// Argon2id parameters refused by the argon2 crate.
    #[error("invalid Argon2id parameters: {0}")]
    BadKdf(String),
    /// An Argon2id parameter outside the bounds of [`KdfParams::check`]: asked at enrolment,
    /// or read from a vault's header, where it is refused before any key is derived (the
    /// header is authenticated only once a key opens the payload, so a tampered one must
    /// cost nothing).
    #[error("Argon2id {field} is {value}, outside the bounds {min} to {max}")]
    KdfOutOfBounds {
        /// Which parameter: `"memory (KiB)"`, `"passes"`, `"lanes"` or
        /// `"memory × passes (KiB)"`.
        field: &'static str,
        /// The value found.
        value: u64,
        /// The least allowed.
        min: u64,
        /// The most allowed.
        max: u64,
    },
    /// A vault file larger than any vault can be ([`format::MAX_FILE`]): refused before it is
    /// read.
    #[error("{path} is {size} bytes, larger than any vault ({max} bytes at most)")]
    TooLarge {
        /// The file's path.
        path: String,
        /// Its size, in bytes.
        size: u64,
        /// [`format::MAX_FILE`].
        max: u64,
    },
    /// Adding a slot to a vault that has [`format::MAX_SLOTS`] already.
    #[error("a vault has at most {max} key slots")]
    TooManySlots {
        /// The limit, [`format::MAX_SLOTS`].
        max: usize,
    },
    /// The vault opened, but its payload names another profile: it was copied over this
    /// profile's vault (or the profile's `vault` setting names another profile's).
    #[error("this vault was sealed for profile {sealed_for:?}, not for profile {profile:?}: refusing to use it")]
    WrongProfile {
        /// The profile named in the vault's sealed payload.
        sealed_for: String,
        /// The profile being opened.
        profile: String,
    },
    /// Removing a slot id the vault does not have.
    #[error("no key slot {id} in this vault")]
    NoSuchSlot {
        /// The slot id asked for.
        id: u8,
    },
    /// Removing the only slot left (the vault would open no more).
    #[error("the last key slot cannot be removed")]
    LastSlot,
    /// An argument, file or token answer failed validation (before any seal or write).
    #[error("invalid {what}: {reason}")]
    InvalidInput {
        /// What was checked (`"slot label"`, `"MFA serial"`, `"access key id"`…).
        what: &'static str,
        /// What is expected instead.
        reason: String,
    },
    /// A token failed during enrolment or unlock.
    #[error("token: {0}")]
    Token(#[from] crate::token::Error),
    /// The system random source failed.
    #[error(transparent)]
    Random(#[from] RandomFailed),
    /// Reading or writing a vault or attestation file failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done (`"cannot read vault"`…).
        action: &'static str,
        /// The file's path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A vault file with any permission for other users (not 0600), or a vault directory
    /// other users can enter, list or write (not 0700): refused before reading.
    #[error("{path} is accessible to other users (mode {mode:03o}); a vault {} must be {}, refusing to use it", if *.directory { "directory" } else { "file" }, if *.directory { "0700" } else { "0600" })]
    UnsafePermissions {
        /// The file's or directory's path.
        path: String,
        /// Its permission bits.
        mode: u32,
        /// The vault's directory, not the file.
        directory: bool,
    },
    /// The holder's PIN was refused.
    #[error("the {what} PIN is wrong: {tries_left} {} left before it blocks", if *.tries_left == 1 { "try" } else { "tries" })]
    WrongPin {
        /// Whose PIN (`"PIV"`, `"FIDO2"`).
        what: &'static str,
        /// Tries left before the PIN blocks.
        tries_left: u8,
    },
    /// The PIN has no tries left: unblock it with the PUK (PIV) or reset the key (FIDO2).
    #[error("the token's {what} PIN is blocked (no tries left)")]
    PinBlocked {
        /// Whose PIN (`"PIV"`, `"FIDO2"`).
        what: &'static str,
    },
    /// The holder declined to spend the last PIN try; no try was spent.
    #[error("the PIN entry was stopped before the last {what} PIN try")]
    LastTryDeclined {
        /// Whose PIN (`"PIV"`, `"FIDO2"`).
        what: &'static str,
    },
    /// The PIV attestation chain does not verify or does not prove the key (wrong policies, serial,
    /// public key, unknown root).
    #[error("the token's attestation does not prove its key: {0}")]
    Attestation(String),
    /// Enrolment would overwrite a key on the token (a used PIV slot without `--replace`).
    #[error("{what} is already in use on the token")]
    Occupied {
        /// What is in use, e.g. `PIV slot 82 of token 12345678`.
        what: String,
    },
    /// A PIN or confirmation could not be asked (no terminal, cancelled, a script ran out).
    #[error("the answer was cancelled or no terminal is available: {0}")]
    NoAnswer(String),
    /// The FIDO2 key failed or refused (no PIN set, no user verification, credential not held…).
    #[error("FIDO2: {0}")]
    Fido2(fido2::Fido2Problem),
    /// A custodian's passphrase (with the token key, which opened) did not open their share.
    /// Nothing is said of the other custodians' shares.
    #[error("custodian {name:?}'s passphrase did not open their share of this vault")]
    ShareNotOpened {
        /// The custodian, as the vault names them.
        name: String,
    },
    /// A version 3 slot matched the token, but the token's answer did not open it: the token
    /// answers differently from when the slot was sealed.
    #[error("the token did not open its key slot {id}: its answer differs from the one it gave when the slot was sealed (was its sealing credential replaced?)")]
    TokenKeyNotOpened {
        /// The slot.
        id: u8,
    },
    /// Fewer custodians than the vault's threshold, or custodians given for a vault that has
    /// one passphrase (or one passphrase for a vault with custodians).
    #[error("{}", if *.needed == 0 { "this vault has one passphrase, not custodians".to_owned() } else if *.present == 0 { format!("this vault opens with {} of its custodians' passphrases, not with one passphrase", .needed) } else { format!("{} custodian(s) present, {} needed to open this vault", .present, .needed) })]
    Quorum {
        /// Custodians who gave a passphrase (0: one passphrase was given).
        present: usize,
        /// The vault's threshold (0: the vault has no custodians).
        needed: usize,
    },
    /// No custodian with this x in the vault (or a custodian given twice).
    #[error("no custodian {x} in this vault, or the same custodian given twice")]
    NoSuchCustodian {
        /// The share's x asked for.
        x: u8,
    },
    /// The token presented for a slot that must be sealed again is not the slot's token.
    #[error("the token presented for key slot {id} ({label:?}) is not the one enrolled there")]
    WrongTokenForSlot {
        /// The slot.
        id: u8,
        /// Its label.
        label: String,
    },
    /// Removing the slot whose token opened the vault in this sitting.
    #[error("key slot {id} is the one whose token opened the vault in this sitting; open the vault with another enrolled token to remove it")]
    RemovingOpeningSlot {
        /// The slot.
        id: u8,
    },
    /// A change that needs the token key and the custodians of a version 3 vault, asked of a
    /// version 1 or 2 vault (one passphrase).
    #[error("this vault (format version {version}) has one passphrase and no custodians: `breakglass rekey --upgrade` converts it first")]
    NeedsUpgrade {
        /// The vault's version.
        version: u16,
    },
}

/// The kind of token factor of a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FactorKind {
    /// Full HMAC-SHA256 by a touch-required YKOATH credential over a per-slot challenge.
    OathHmac = 1,
    /// ECDH by a P-256 key generated on the token's PIV application (PIN and touch always)
    /// with a host key made at enrolment.
    PivEcdh = 2,
    /// FIDO2 `hmac-secret` of a per-slot salt, with user verification.
    Fido2HmacSecret = 3,
}

impl FactorKind {
    /// Every kind, in byte order.
    pub const ALL: [Self; 3] = [Self::OathHmac, Self::PivEcdh, Self::Fido2HmacSecret];

    /// The kind stored as byte `b`; `None` for an unknown byte.
    pub fn from_byte(b: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| *k as u8 == b)
    }

    /// The name users type (`--factor`) and read.
    pub fn name(self) -> &'static str {
        match self {
            Self::OathHmac => "oath",
            Self::PivEcdh => "piv",
            Self::Fido2HmacSecret => "fido2",
        }
    }

    /// The kind users call `name` (`"oath"`, `"piv"`, `"fido2"`).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// Public description of a key slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    /// Slot id, unique in the vault (the lowest free one at enrolment).
    pub id: u8,
    /// The token factor's kind.
    pub kind: FactorKind,
    /// The holder's label for the token (1 to 32 bytes, no control characters).
    pub label: String,
    /// The IAM MFA device whose TOTP account is on this slot's token (each token has its own).
    pub mfa_serial: String,
    /// Factor parameters (public: credential name, challenge, token id).
    pub params: Vec<u8>,
}

/// Argon2id cost parameters, stored in the vault.
///
/// Bounded ([`KdfParams::check`]) well above what an honest vault needs and well below what
/// would let a tampered header exhaust the machine: at most 1 GiB, 16 passes, 8 lanes, and
/// at most 4 GiB of memory passes (1 GiB at 4 passes, 256 MiB at 16) — about four times the
/// default's cost per pass at most, a few seconds on the reference machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory, in KiB (at least 8 per lane, at most [`KdfParams::MAX_MEMORY_KIB`]).
    pub m_kib: u32,
    /// Passes, 1 to [`KdfParams::MAX_PASSES`].
    pub t: u32,
    /// Lanes (parallelism), 1 to [`KdfParams::MAX_LANES`].
    pub p: u32,
}

impl KdfParams {
    /// RFC 9106's second recommended option: 64 MiB, 3 passes, 4 lanes.
    pub const DEFAULT: Self = Self {
        m_kib: 64 * 1024,
        t: 3,
        p: 4,
    };
    /// For the demo and tests only: fast, and said so on screen.
    pub const LIGHT: Self = Self {
        m_kib: 1024,
        t: 1,
        p: 1,
    };
    /// Most memory, in KiB: 1 GiB.
    pub const MAX_MEMORY_KIB: u32 = 1024 * 1024;
    /// Most passes.
    pub const MAX_PASSES: u32 = 16;
    /// Most lanes.
    pub const MAX_LANES: u32 = 8;
    /// Most memory × passes, in KiB: 4 GiB (the time one derivation takes grows with it).
    pub const MAX_WORK_KIB: u64 = 4 * 1024 * 1024;

    /// Checks [`KdfParams::p`], [`KdfParams::t`], [`KdfParams::m_kib`] and their product
    /// against the bounds, in that order: [`Error::KdfOutOfBounds`] names the first one out.
    /// Pure arithmetic: nothing is allocated or derived.
    pub fn check(&self) -> Result<(), Error> {
        let within = |field, value: u64, min: u64, max: u64| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(Error::KdfOutOfBounds {
                    field,
                    value,
                    min,
                    max,
                })
            }
        };
        within("lanes", self.p.into(), 1, Self::MAX_LANES.into())?;
        within("passes", self.t.into(), 1, Self::MAX_PASSES.into())?;
        within(
            "memory (KiB)",
            self.m_kib.into(),
            8 * u64::from(self.p),
            Self::MAX_MEMORY_KIB.into(),
        )?;
        within(
            "memory × passes (KiB)",
            u64::from(self.m_kib) * u64::from(self.t),
            1,
            Self::MAX_WORK_KIB,
        )
    }

    fn argon2(&self) -> Result<argon2::Argon2<'static>, Error> {
        self.check()?;
        let params = argon2::Params::new(self.m_kib, self.t, self.p, Some(32))
            .map_err(|e| Error::BadKdf(e.to_string()))?;
        Ok(argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            params,
        ))
    }
}

/// The passphrase factor `P`.
pub fn passphrase_factor(
    passphrase: &SecretString,
    salt: &[u8; SALT_LEN],
    kdf: &KdfParams,
) -> Result<Key32, Error> {
    let mut out = Zeroizing::new([0u8; 32]);
    kdf.argon2()?
        .hash_password_into(passphrase.expose_secret().as_bytes(), salt, &mut *out)
        .map_err(|e| Error::BadKdf(e.to_string()))?;
    Ok(Key32::new(*out))
}

fn kek(p: &Key32, t: &Key32, salt: &[u8; SALT_LEN], vault_id: &[u8], slot_id: u8) -> Key32 {
    let mut ikm = Zeroizing::new([0u8; 64]);
    ikm[..32].copy_from_slice(p.expose());
    ikm[32..].copy_from_slice(t.expose());
    hkdf(
        salt,
        &ikm[..],
        &[b"breakglass v1 kek", vault_id, &[slot_id]],
    )
}

/// HKDF-SHA256 to 32 bytes.
fn hkdf(salt: &[u8], ikm: &[u8], info: &[&[u8]]) -> Key32 {
    let prk = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, salt).extract(ikm);
    let mut out = Zeroizing::new([0u8; 32]);
    // HKDF-SHA256 can always expand 32 bytes; the error arm is unreachable by construction.
    if let Ok(okm) = prk.expand(info, ring::hkdf::HKDF_SHA256) {
        let _ = okm.fill(&mut *out);
    }
    Key32::new(*out)
}

/// Version 3: a slot's KEK, from the token factor alone (the passphrase side is in the
/// data key and the shares).
fn kek_v3(t: &Key32, salt: &[u8; SALT_LEN], vault_id: &[u8], slot_id: u8) -> Key32 {
    hkdf(
        salt,
        t.expose(),
        &[b"breakglass v3 kek", vault_id, &[slot_id]],
    )
}

/// Version 3: the key of a custodian's share, from their Argon2id key `C` and the token key's
/// first half `Q`: neither alone tells whether a share opens.
fn share_key(c: &Key32, q: &[u8], salt: &[u8; SALT_LEN], vault_id: &[u8], x: u8) -> Key32 {
    let mut ikm = Zeroizing::new([0u8; 64]);
    ikm[..32].copy_from_slice(c.expose());
    ikm[32..].copy_from_slice(&q[..32]);
    hkdf(salt, &ikm[..], &[b"breakglass v3 share", vault_id, &[x]])
}

/// Version 3: the data key, from `P` and the token key's second half `K`.
fn data_key_v3(p: &Key32, k: &[u8], salt: &[u8; SALT_LEN], vault_id: &[u8]) -> Key32 {
    let mut ikm = Zeroizing::new([0u8; 64]);
    ikm[..32].copy_from_slice(p.expose());
    ikm[32..].copy_from_slice(&k[..32]);
    hkdf(salt, &ikm[..], &[b"breakglass v3 data key", vault_id])
}

/// Versions 1 and 2: the slot's wrap of the data key under `HKDF(P ‖ T)`.
fn wrap_v1(vault_id: &[u8], record: &mut SlotRecord, p: &Key32, t: &Key32, data_key: &Key32) {
    let kek = kek(p, t, &record.hkdf_salt, vault_id, record.info.id);
    record.wrapped_key = seal(
        &kek,
        record.wrap_nonce,
        &slot_aad(vault_id, record),
        data_key.expose(),
    );
}

fn unwrap_v1(vault_id: &[u8], record: &SlotRecord, p: &Key32, t: &Key32) -> Option<Key32> {
    let kek = kek(p, t, &record.hkdf_salt, vault_id, record.info.id);
    let key = open(
        &kek,
        record.wrap_nonce,
        &slot_aad(vault_id, record),
        &record.wrapped_key,
    )?;
    Some(Key32::new(key[..].try_into().ok()?))
}

/// Version 3: the slot's wrap of the token key `Q ‖ K` under `HKDF(T)`.
fn wrap_v3(vault_id: &[u8], record: &mut SlotRecord, t: &Key32, tk: &[u8; 64]) {
    let kek = kek_v3(t, &record.hkdf_salt, vault_id, record.info.id);
    record.wrapped_key = seal(
        &kek,
        record.wrap_nonce,
        &slot_aad_v3(vault_id, record),
        &tk[..],
    );
}

fn unwrap_v3(vault_id: &[u8], record: &SlotRecord, t: &Key32) -> Option<Zeroizing<[u8; 64]>> {
    let kek = kek_v3(t, &record.hkdf_salt, vault_id, record.info.id);
    let key = open(
        &kek,
        record.wrap_nonce,
        &slot_aad_v3(vault_id, record),
        &record.wrapped_key,
    )?;
    let mut out = Zeroizing::new([0u8; 64]);
    if key.len() != 64 {
        return None;
    }
    out.copy_from_slice(&key);
    Some(out)
}

fn slot_aad_v3(vault_id: &[u8], record: &SlotRecord) -> Vec<u8> {
    let mut aad = b"breakglass v3 slot".to_vec();
    aad.extend_from_slice(vault_id);
    aad.extend_from_slice(&record.bound_fields());
    aad
}

fn share_aad(vault_id: &[u8], record: &CustodianRecord) -> Vec<u8> {
    let mut aad = b"breakglass v3 share".to_vec();
    aad.extend_from_slice(vault_id);
    aad.extend_from_slice(&record.bound_fields());
    aad
}

/// A custodian's share sealed under their key and `Q`, with a fresh nonce.
fn seal_share(
    vault_id: &[u8],
    q: &[u8],
    name: &str,
    share: &Share,
    salt: [u8; SALT_LEN],
    c: &Key32,
    rng: &dyn Random,
) -> Result<CustodianRecord, Error> {
    let x = share.x;
    let y = &share.y;
    let mut record = CustodianRecord {
        x,
        name: name.to_owned(),
        salt,
        nonce: random_bytes(rng)?,
        sealed_share: [0; format::SEALED_SHARE_LEN],
    };
    let key = share_key(c, q, &record.salt, vault_id, x);
    let sealed = seal(
        &key,
        record.nonce,
        &share_aad(vault_id, &record),
        y.expose(),
    );
    record.sealed_share.copy_from_slice(&sealed);
    Ok(record)
}

/// The audit key of a version 1 or 2 vault: HKDF of its data key. Version 3 vaults carry
/// theirs in the payload, so that it survives a new data key.
fn audit_key_of(data_key: &Key32, vault_id: &[u8]) -> Key32 {
    hkdf(vault_id, data_key.expose(), &[b"breakglass v1 audit seal"])
}

/// Checks a custodian set before it is sealed: M and N in range, names of 1 to
/// [`format::MAX_NAME`] bytes without control characters, no name twice (byte for byte; the
/// ceremony also refuses names that look alike).
fn check_custodians(threshold: u8, names: &[&str]) -> Result<(), Error> {
    let bad = |reason: String| {
        Err(Error::InvalidInput {
            what: "custodians",
            reason,
        })
    };
    if names.is_empty() || names.len() > shares::MAX_CUSTODIANS {
        return bad(format!(
            "a vault has 1 to {} custodians, not {}",
            shares::MAX_CUSTODIANS,
            names.len()
        ));
    }
    if threshold == 0 || usize::from(threshold) > names.len() {
        return bad(format!(
            "the number of custodians needed must be 1 to {} (the number of custodians), not {threshold}",
            names.len()
        ));
    }
    for (i, name) in names.iter().enumerate() {
        if name.is_empty() || name.len() > format::MAX_NAME || name.chars().any(char::is_control) {
            return bad(format!(
                "a custodian's name is 1 to {} bytes of printable text: {name:?}",
                format::MAX_NAME
            ));
        }
        if names[..i].contains(name) {
            return bad(format!("{name:?} is named twice"));
        }
    }
    Ok(())
}

fn aead_key(key: &Key32) -> LessSafeKey {
    // AES-256 takes exactly 32 bytes; construction cannot fail for a Key32.
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key.expose()).unwrap_or_else(|_| unreachable!()))
}

fn seal(key: &Key32, nonce: [u8; NONCE_LEN], aad: &[u8], plain: &[u8]) -> Vec<u8> {
    // Room for the tag up front: a reallocation would leave the plaintext in freed memory.
    let mut buf = Zeroizing::new(Vec::with_capacity(plain.len() + format::TAG_LEN));
    buf.extend_from_slice(plain);
    // Sealing only fails for inputs over 64 GiB.
    let _ = aead_key(key).seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut *buf,
    );
    // Now ciphertext: nothing secret left to wipe.
    std::mem::take(&mut *buf)
}

fn open(
    key: &Key32,
    nonce: [u8; NONCE_LEN],
    aad: &[u8],
    sealed: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(sealed.to_vec());
    let n = aead_key(key)
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut buf,
        )
        .ok()?
        .len();
    buf.truncate(n);
    Some(buf)
}

fn slot_aad(vault_id: &[u8], record: &SlotRecord) -> Vec<u8> {
    let mut aad = b"breakglass v1 slot".to_vec();
    aad.extend_from_slice(vault_id);
    aad.extend_from_slice(&record.bound_fields());
    aad
}

/// What the vault protects.
pub struct Payload {
    /// The IAM user's access key id (`AKIA…`).
    pub access_key_id: String,
    /// Its secret access key.
    pub secret_access_key: SecretString,
    /// The MFA device of the first slot's token (each slot names its own; see
    /// [`SlotInfo::mfa_serial`]).
    pub mfa_serial: String,
    /// The IAM user's ARN.
    pub user_arn: String,
    /// Unix seconds.
    pub created: u64,
    /// When the access key was last rotated, Unix seconds (the creation time until the first
    /// rotation).
    pub rotated: u64,
    /// The profile the vault was sealed for ([`Opened::check_profile`]): sealed with the key,
    /// so a vault copied over another profile's does not open there. `None` in vaults sealed
    /// before the field existed.
    pub profile: Option<String>,
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Payload")
            .field(
                "access_key_id",
                &crate::secure::mask_key_id(&self.access_key_id),
            )
            .field("mfa_serial", &self.mfa_serial)
            .field("user_arn", &self.user_arn)
            .finish_non_exhaustive()
    }
}

mod ptag {
    pub const KEY_ID: u32 = 0x01;
    pub const SECRET: u32 = 0x02;
    pub const MFA_SERIAL: u32 = 0x03;
    pub const USER_ARN: u32 = 0x04;
    pub const CREATED: u32 = 0x05;
    pub const ROTATED: u32 = 0x06;
    pub const PROFILE: u32 = 0x07;
    pub const AUDIT_KEY: u32 = 0x08;
}

impl Payload {
    /// The payload's TLV, with the audit key (version 3) last.
    fn encode(&self, audit: Option<&Key32>) -> Zeroizing<Vec<u8>> {
        // Exact size first: growing the buffer would leave copies of the secret behind.
        let sizes = [
            if audit.is_some() { 32 } else { 0 },
            self.access_key_id.len(),
            self.secret_access_key.expose_secret().len(),
            self.mfa_serial.len(),
            self.user_arn.len(),
            8,
            8,
            self.profile.as_ref().map_or(0, String::len),
        ];
        let mut out = Zeroizing::new(Vec::with_capacity(sizes.iter().map(|n| n + 4).sum()));
        write_tlv(&mut out, ptag::KEY_ID, self.access_key_id.as_bytes());
        write_tlv(
            &mut out,
            ptag::SECRET,
            self.secret_access_key.expose_secret().as_bytes(),
        );
        write_tlv(&mut out, ptag::MFA_SERIAL, self.mfa_serial.as_bytes());
        write_tlv(&mut out, ptag::USER_ARN, self.user_arn.as_bytes());
        write_tlv(&mut out, ptag::CREATED, &self.created.to_be_bytes());
        write_tlv(&mut out, ptag::ROTATED, &self.rotated.to_be_bytes());
        if let Some(profile) = &self.profile {
            write_tlv(&mut out, ptag::PROFILE, profile.as_bytes());
        }
        if let Some(key) = audit {
            write_tlv(&mut out, ptag::AUDIT_KEY, key.expose());
        }
        out
    }

    /// The payload, and its audit key when it has one (version 3).
    fn decode(bytes: &[u8]) -> Result<(Self, Option<Key32>), Error> {
        let list = Tlv::parse_all(bytes).map_err(|_| Error::Damaged)?;
        let text = |tag| {
            Tlv::find(&list, tag)
                .ok()
                .and_then(|v| std::str::from_utf8(v).ok())
                .ok_or(Error::Damaged)
        };
        let time = |tag| {
            Tlv::find(&list, tag)
                .ok()
                .and_then(|v| <[u8; 8]>::try_from(v).ok())
                .map(u64::from_be_bytes)
                .ok_or(Error::Damaged)
        };
        let audit = match Tlv::find(&list, ptag::AUDIT_KEY) {
            Ok(v) => Some(Key32::new(v.try_into().map_err(|_| Error::Damaged)?)),
            Err(_) => None,
        };
        let payload = Self {
            access_key_id: text(ptag::KEY_ID)?.to_owned(),
            secret_access_key: SecretString::from(text(ptag::SECRET)?.to_owned()),
            mfa_serial: text(ptag::MFA_SERIAL)?.to_owned(),
            user_arn: text(ptag::USER_ARN)?.to_owned(),
            created: time(ptag::CREATED)?,
            rotated: time(ptag::ROTATED)?,
            profile: match Tlv::find(&list, ptag::PROFILE) {
                Ok(_) => Some(text(ptag::PROFILE)?.to_owned()),
                Err(_) => None,
            },
        };
        Ok((payload, audit))
    }

    /// Checks the access key id, the secret, the MFA serial's and the profile's form before
    /// sealing.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |what, reason: &str| {
            Err(Error::InvalidInput {
                what,
                reason: reason.to_owned(),
            })
        };
        let id = &self.access_key_id;
        if id.len() < 16 || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return bad(
                "access key id",
                "expected 16-128 letters and digits (AKIA…)",
            );
        }
        let secret = self.secret_access_key.expose_secret();
        if secret.len() < 16 || secret.len() > 128 || secret.chars().any(char::is_whitespace) {
            return bad(
                "secret access key",
                "expected 16-128 characters without spaces",
            );
        }
        if !self.mfa_serial.starts_with("arn:") {
            return bad(
                "MFA serial",
                "expected an ARN such as arn:aws:iam::123456789012:mfa/NAME",
            );
        }
        if let Some(profile) = &self.profile {
            if crate::config::check_profile_name(profile).is_err() {
                return bad(
                    "profile name",
                    "1 to 64 characters, no `/`, no control characters",
                );
            }
        }
        Ok(())
    }
}

/// A vault as read from disk: public structure, sealed payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vault {
    sealed: Sealed,
}

/// The passphrase side of a vault, derived before the token is opened: the one passphrase's
/// key ([`Vault::derive`], versions 1 and 2) or the keys of the custodians present
/// ([`Vault::derive_custodian`], version 3). Wiped on drop. No `Debug`.
pub struct PassphraseKey(PassSide);

enum PassSide {
    Single(Key32),
    Quorum(Vec<CustodianKey>),
}

impl PassphraseKey {
    /// The custodians' keys, in the order they were given (the first shares the threshold
    /// needs are used).
    pub fn quorum(keys: Vec<CustodianKey>) -> Self {
        Self(PassSide::Quorum(keys))
    }
}

/// One custodian's Argon2id key for one vault ([`Vault::derive_custodian`]). No `Debug`.
pub struct CustodianKey {
    x: u8,
    c: Key32,
}

/// A custodian whose share opened in this sitting: their key and share, kept to seal again.
struct Present {
    x: u8,
    c: Key32,
    salt: [u8; SALT_LEN],
    share: Share,
}

/// What opened a vault on the passphrase side.
enum Keys {
    /// Versions 1 and 2: `P = Argon2id(passphrase)`.
    Single { p: Key32 },
    /// Version 3: the rebuilt `P`, the token key `Q ‖ K`, the custodians present.
    Custodians {
        p: Key32,
        tk: Zeroizing<[u8; 64]>,
        present: Vec<Present>,
    },
}

/// A vault opened with both factors: the payload, and what is needed to re-seal it.
pub struct Opened {
    vault: Vault,
    keys: Keys,
    /// The opening slot's token factor `T`: it seals that slot again without a second touch.
    t: Key32,
    data_key: Key32,
    audit: Key32,
    /// The opened payload.
    pub payload: Payload,
    /// The slot that opened it.
    pub slot_id: u8,
}

impl Vault {
    /// Decodes and checks a vault file's bytes (see [`format::Sealed::decode`]); opens nothing.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        Ok(Self {
            sealed: Sealed::decode(bytes)?,
        })
    }

    /// The vault file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.sealed.encode()
    }

    /// The format version the vault is written in (1, 2 or 3).
    pub fn version(&self) -> u16 {
        self.sealed.header.version()
    }

    /// The key slots, in file order.
    pub fn slots(&self) -> impl Iterator<Item = &SlotInfo> {
        self.sealed.header.slots.iter().map(|s| &s.info)
    }

    /// The Argon2id parameters of the passphrase factor (of every custodian, version 3).
    pub fn kdf(&self) -> KdfParams {
        self.sealed.header.kdf
    }

    /// What the vault says in the clear about its key (version 2 vaults; `None` for version
    /// 1). Unauthenticated until the vault is opened: a hint for reports, never for a decision
    /// that needs the key.
    pub fn key_facts(&self) -> Option<&KeyFacts> {
        self.sealed.header.key.as_ref()
    }

    /// The custodians (version 3): the threshold M and every custodian's record, in share
    /// order; `None` for a vault with one passphrase. Unauthenticated until the vault opens.
    pub fn custodians(&self) -> Option<(u8, &[CustodianRecord])> {
        self.sealed
            .header
            .custodians
            .as_ref()
            .map(|c| (c.threshold, c.members.as_slice()))
    }

    /// When the vault was first sealed (enrolment), Unix seconds.
    pub fn created(&self) -> u64 {
        self.sealed.header.created
    }

    /// The random vault id, 32 lowercase hex digits.
    pub fn vault_id_hex(&self) -> String {
        data_encoding::HEXLOWER.encode(&self.sealed.header.vault_id)
    }

    /// Seals a new vault (version 2) with one passphrase and one slot for `factor`.
    pub fn create(
        passphrase: &SecretString,
        kdf: KdfParams,
        factor: &mut dyn SealFactor,
        label: &str,
        payload: &Payload,
        rng: &dyn Random,
        now: u64,
    ) -> Result<Self, Error> {
        payload.validate()?;
        let header = Self::new_header(payload, kdf, rng, now)?;
        let p = passphrase_factor(passphrase, &header.kdf_salt, &kdf)?;
        let data_key = Key32::random(rng)?;
        let mut vault = Self::unsealed(header);
        let (mut record, t) = vault.new_slot(factor, label, &payload.mfa_serial, rng)?;
        wrap_v1(
            &vault.sealed.header.vault_id,
            &mut record,
            &p,
            &t,
            &data_key,
        );
        vault.sealed.header.slots.push(record);
        vault.reseal(&data_key, payload, None, rng)?;
        Ok(vault)
    }

    /// Seals a new vault (version 3) whose passphrase side is `custodians`, any `threshold` of
    /// whom open it with a token; one slot for `factor`. Each custodian's Argon2id runs here
    /// (the order of `custodians` is the shares' order, x = 1, 2, …).
    #[allow(clippy::too_many_arguments)]
    pub fn create_with_custodians(
        custodians: &[(&str, &SecretString)],
        threshold: u8,
        kdf: KdfParams,
        factor: &mut dyn SealFactor,
        label: &str,
        payload: &Payload,
        rng: &dyn Random,
        now: u64,
    ) -> Result<Self, Error> {
        payload.validate()?;
        let names: Vec<&str> = custodians.iter().map(|(n, _)| *n).collect();
        check_custodians(threshold, &names)?;
        kdf.check()?;
        let mut header = Self::new_header(payload, kdf, rng, now)?;
        let mut tk = Zeroizing::new([0u8; 64]);
        rng.fill(&mut tk[..])?;
        let p = Key32::random(rng)?;
        let split = shares::split(&p, threshold, custodians.len() as u8, rng)?;
        let mut members = Vec::with_capacity(custodians.len());
        for ((name, passphrase), share) in custodians.iter().zip(&split) {
            let salt = random_bytes(rng)?;
            let c = passphrase_factor(passphrase, &salt, &kdf)?;
            members.push(seal_share(
                &header.vault_id,
                &tk[..32],
                name,
                share,
                salt,
                &c,
                rng,
            )?);
        }
        header.custodians = Some(CustodianSet { threshold, members });
        let data_key = data_key_v3(&p, &tk[32..], &header.kdf_salt, &header.vault_id);
        let audit = Key32::random(rng)?;
        let mut vault = Self::unsealed(header);
        let (mut record, t) = vault.new_slot(factor, label, &payload.mfa_serial, rng)?;
        wrap_v3(&vault.sealed.header.vault_id, &mut record, &t, &tk);
        vault.sealed.header.slots.push(record);
        vault.reseal(&data_key, payload, Some(&audit), rng)?;
        Ok(vault)
    }

    /// The header of a new vault: a random vault id and salt (drawn in that order, which the
    /// known-answer vectors depend on), no slot yet, the key facts of generation 0.
    fn new_header(
        payload: &Payload,
        kdf: KdfParams,
        rng: &dyn Random,
        now: u64,
    ) -> Result<Header, Error> {
        Ok(Header {
            vault_id: random_bytes(rng)?,
            created: now,
            kdf,
            kdf_salt: random_bytes(rng)?,
            slots: Vec::new(),
            key: Some(KeyFacts {
                access_key_id: payload.access_key_id.clone(),
                sealed_at: payload.rotated,
                generation: 0,
            }),
            custodians: None,
        })
    }

    fn unsealed(header: Header) -> Self {
        Self {
            sealed: Sealed {
                header,
                payload_nonce: [0; NONCE_LEN],
                payload: Vec::new(),
            },
        }
    }

    /// A new slot's record for `factor` (not yet wrapped) and the token's factor `T`.
    fn new_slot(
        &self,
        factor: &mut dyn SealFactor,
        label: &str,
        mfa_serial: &str,
        rng: &dyn Random,
    ) -> Result<(SlotRecord, Key32), Error> {
        let header = &self.sealed.header;
        if header.slots.len() >= format::MAX_SLOTS {
            return Err(Error::TooManySlots {
                max: format::MAX_SLOTS,
            });
        }
        if label.is_empty()
            || label.len() > format::MAX_LABEL
            || label.chars().any(char::is_control)
        {
            return Err(Error::InvalidInput {
                what: "slot label",
                reason: format!("1 to {} printable characters", format::MAX_LABEL),
            });
        }
        if !mfa_serial.starts_with("arn:") || mfa_serial.len() > format::MAX_SERIAL {
            return Err(Error::InvalidInput {
                what: "MFA serial",
                reason: "expected an ARN such as arn:aws:iam::123456789012:mfa/NAME".into(),
            });
        }
        let id = (0..=u8::MAX)
            .find(|i| header.slots.iter().all(|s| s.info.id != *i))
            .unwrap_or(0);
        let (params, t) = factor.enroll(rng)?;
        if params.len() > format::MAX_PARAMS {
            return Err(Error::InvalidInput {
                what: "token factor",
                reason: format!(
                    "its public parameters take {} bytes, more than a key slot holds ({})",
                    params.len(),
                    format::MAX_PARAMS
                ),
            });
        }
        let record = SlotRecord {
            info: SlotInfo {
                id,
                kind: factor.kind(),
                label: label.to_owned(),
                mfa_serial: mfa_serial.to_owned(),
                params,
            },
            hkdf_salt: random_bytes(rng)?,
            wrap_nonce: random_bytes(rng)?,
            wrapped_key: Vec::new(),
        };
        Ok((record, t))
    }

    fn reseal(
        &mut self,
        data_key: &Key32,
        payload: &Payload,
        audit: Option<&Key32>,
        rng: &dyn Random,
    ) -> Result<(), Error> {
        let nonce = random_bytes(rng)?;
        let aad = self.sealed.header.encode();
        self.sealed.payload = seal(data_key, nonce, &aad, &payload.encode(audit));
        self.sealed.payload_nonce = nonce;
        Ok(())
    }

    /// Opens a vault with one passphrase (versions 1 and 2) and whichever enrolled token
    /// `factor` is.
    pub fn open(
        &self,
        passphrase: &SecretString,
        factor: &mut dyn SealFactor,
    ) -> Result<Opened, Error> {
        let key = self.derive(passphrase)?;
        self.open_derived(&key, factor)
    }

    /// The one passphrase's key for this vault (Argon2id with the vault's salt and
    /// parameters, about a second at the defaults), to derive before a token is opened so
    /// that the token is not held while it runs: see [`Vault::open_derived`]. A version 3
    /// vault has custodians instead ([`Vault::derive_custodian`]).
    pub fn derive(&self, passphrase: &SecretString) -> Result<PassphraseKey, Error> {
        let header = &self.sealed.header;
        if let Some(set) = &header.custodians {
            return Err(Error::Quorum {
                present: 0,
                needed: usize::from(set.threshold),
            });
        }
        Ok(PassphraseKey(PassSide::Single(passphrase_factor(
            passphrase,
            &header.kdf_salt,
            &header.kdf,
        )?)))
    }

    /// Custodian `x`'s key (Argon2id of their passphrase with their salt), before the token
    /// is opened; gather a quorum of them with [`PassphraseKey::quorum`]. Whether it is right
    /// is known only once a token opens the vault.
    pub fn derive_custodian(
        &self,
        x: u8,
        passphrase: &SecretString,
    ) -> Result<CustodianKey, Error> {
        let header = &self.sealed.header;
        let Some(set) = &header.custodians else {
            return Err(Error::Quorum {
                present: 1,
                needed: 0,
            });
        };
        let record = set
            .members
            .iter()
            .find(|m| m.x == x)
            .ok_or(Error::NoSuchCustodian { x })?;
        Ok(CustodianKey {
            x,
            c: passphrase_factor(passphrase, &record.salt, &header.kdf)?,
        })
    }

    /// [`Vault::open`] with the passphrase side derived beforehand ([`Vault::derive`], or a
    /// quorum of [`Vault::derive_custodian`]).
    pub fn open_derived(
        &self,
        key: &PassphraseKey,
        factor: &mut dyn SealFactor,
    ) -> Result<Opened, Error> {
        let header = &self.sealed.header;
        // The passphrase side must fit the vault before the token is asked anything.
        match (&key.0, &header.custodians) {
            (PassSide::Single(_), None) => {}
            (PassSide::Single(_), Some(set)) => {
                return Err(Error::Quorum {
                    present: 0,
                    needed: usize::from(set.threshold),
                })
            }
            (PassSide::Quorum(keys), None) => {
                return Err(Error::Quorum {
                    present: keys.len(),
                    needed: 0,
                })
            }
            (PassSide::Quorum(keys), Some(set)) => {
                for (i, k) in keys.iter().enumerate() {
                    if keys[..i].iter().any(|o| o.x == k.x)
                        || !set.members.iter().any(|m| m.x == k.x)
                    {
                        return Err(Error::NoSuchCustodian { x: k.x });
                    }
                }
                if keys.len() < usize::from(set.threshold) {
                    return Err(Error::Quorum {
                        present: keys.len(),
                        needed: usize::from(set.threshold),
                    });
                }
            }
        }
        let slot = self.find_slot(factor)?;
        let t = factor.respond(&slot.info)?;
        let vault_id = &header.vault_id;
        let (keys, data_key) = match &key.0 {
            PassSide::Single(p) => {
                let data_key = unwrap_v1(vault_id, slot, p, &t).ok_or(Error::NotOpened)?;
                (
                    Keys::Single {
                        p: Key32::new(*p.expose()),
                    },
                    data_key,
                )
            }
            PassSide::Quorum(keys) => {
                let set = header.custodians.as_ref().ok_or(Error::Damaged)?;
                let tk = unwrap_v3(vault_id, slot, &t)
                    .ok_or(Error::TokenKeyNotOpened { id: slot.info.id })?;
                let mut present = Vec::with_capacity(keys.len());
                for k in keys {
                    let record = set
                        .members
                        .iter()
                        .find(|m| m.x == k.x)
                        .ok_or(Error::NoSuchCustodian { x: k.x })?;
                    let key = share_key(&k.c, &tk[..32], &record.salt, vault_id, k.x);
                    let y = open(
                        &key,
                        record.nonce,
                        &share_aad(vault_id, record),
                        &record.sealed_share,
                    )
                    .ok_or_else(|| Error::ShareNotOpened {
                        name: record.name.clone(),
                    })?;
                    present.push(Present {
                        x: k.x,
                        c: Key32::new(*k.c.expose()),
                        salt: record.salt,
                        share: Share {
                            x: k.x,
                            y: Key32::new(y[..].try_into().map_err(|_| Error::Damaged)?),
                        },
                    });
                }
                let used: Vec<&Share> = present
                    .iter()
                    .take(usize::from(set.threshold))
                    .map(|p| &p.share)
                    .collect();
                let p = shares::combine(&used).ok_or(Error::Damaged)?;
                let data_key = data_key_v3(&p, &tk[32..], &header.kdf_salt, vault_id);
                (Keys::Custodians { p, tk, present }, data_key)
            }
        };
        let plain = open(
            &data_key,
            self.sealed.payload_nonce,
            &header.encode(),
            &self.sealed.payload,
        )
        .ok_or(Error::Damaged)?;
        let (payload, audit) = Payload::decode(&plain)?;
        let audit = match (&keys, audit) {
            (Keys::Custodians { .. }, Some(a)) => a,
            (Keys::Single { .. }, None) => audit_key_of(&data_key, vault_id),
            _ => return Err(Error::Damaged),
        };
        // The clear facts are authenticated (associated data) and must tell the truth.
        if header
            .key
            .as_ref()
            .is_some_and(|k| k.access_key_id != payload.access_key_id)
        {
            return Err(Error::Damaged);
        }
        Ok(Opened {
            vault: self.clone(),
            keys,
            t,
            data_key,
            audit,
            payload,
            slot_id: slot.info.id,
        })
    }

    /// The slot of `factor`'s token, or [`Error::NotEnrolled`] naming the slots.
    fn find_slot(&self, factor: &mut dyn SealFactor) -> Result<&SlotRecord, Error> {
        let header = &self.sealed.header;
        for s in &header.slots {
            if s.info.kind == factor.kind() && factor.matches(&s.info)? {
                return Ok(s);
            }
        }
        Err(Error::NotEnrolled {
            slots: header
                .slots
                .iter()
                .map(|s| {
                    format!(
                        "{} \"{}\" ({})",
                        s.info.id,
                        s.info.label,
                        s.info.kind.name()
                    )
                })
                .collect(),
        })
    }
}

impl Opened {
    /// The key that seals this profile's audit records: only someone who opened the vault
    /// (the holders) can make a seal, and only they can check one. See `audit::Seal`. In a
    /// version 1 or 2 vault it is HKDF-SHA256 of the data key, with the vault id; a version 3
    /// vault carries it in its payload, so that it survives a new data key (and an upgrade
    /// keeps the old one).
    pub fn audit_key(&self) -> Key32 {
        Key32::new(*self.audit.expose())
    }

    /// Checks that the vault was sealed for `profile`: `Ok(true)` when its payload names
    /// `profile`, `Ok(false)` when it names none (a vault sealed before vaults named their
    /// profile: it cannot be told), [`Error::WrongProfile`] when it names another.
    pub fn check_profile(&self, profile: &str) -> Result<bool, Error> {
        match &self.payload.profile {
            None => Ok(false),
            Some(p) if p == profile => Ok(true),
            Some(p) => Err(Error::WrongProfile {
                sealed_for: p.clone(),
                profile: profile.to_owned(),
            }),
        }
    }

    /// The vault as it was opened (before any change).
    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    /// The MFA device of the token that opened the vault.
    pub fn mfa_serial(&self) -> &str {
        self.vault
            .slots()
            .find(|s| s.id == self.slot_id)
            .map_or(self.payload.mfa_serial.as_str(), |s| s.mfa_serial.as_str())
    }

    /// The x of the custodians whose shares opened in this sitting (version 3), in the order
    /// they were given; empty for a vault with one passphrase.
    pub fn custodians_present(&self) -> Vec<u8> {
        match &self.keys {
            Keys::Custodians { present, .. } => present.iter().map(|p| p.x).collect(),
            Keys::Single { .. } => Vec::new(),
        }
    }

    fn audit_for_payload(&self) -> Option<&Key32> {
        match self.keys {
            Keys::Custodians { .. } => Some(&self.audit),
            Keys::Single { .. } => None,
        }
    }

    /// Adds a slot for another token (same passphrase side) with its own MFA device; returns
    /// the new vault and slot id.
    pub fn add_slot(
        &self,
        factor: &mut dyn SealFactor,
        label: &str,
        mfa_serial: &str,
        rng: &dyn Random,
    ) -> Result<(Vault, u8), Error> {
        let mut v = self.vault.clone();
        let (mut record, t) = v.new_slot(factor, label, mfa_serial, rng)?;
        let vault_id = v.sealed.header.vault_id;
        match &self.keys {
            Keys::Single { p } => wrap_v1(&vault_id, &mut record, p, &t, &self.data_key),
            Keys::Custodians { tk, .. } => wrap_v3(&vault_id, &mut record, &t, tk),
        }
        let id = record.info.id;
        v.sealed.header.slots.push(record);
        v.reseal(&self.data_key, &self.payload, self.audit_for_payload(), rng)?;
        Ok((v, id))
    }

    /// The vault holding another access key (a rotation): same slots, same data key (no token
    /// is needed to seal it), the payload's `rotated` set to `now`, and the key facts in the
    /// clear for the new key with the next generation. A version 1 vault becomes version 2.
    pub fn with_new_key(
        &self,
        access_key_id: &str,
        secret_access_key: &SecretString,
        now: u64,
        rng: &dyn Random,
    ) -> Result<Vault, Error> {
        let payload = Payload {
            access_key_id: access_key_id.to_owned(),
            secret_access_key: secret_access_key.clone(),
            mfa_serial: self.payload.mfa_serial.clone(),
            user_arn: self.payload.user_arn.clone(),
            created: self.payload.created,
            rotated: now,
            profile: self.payload.profile.clone(),
        };
        payload.validate()?;
        let mut v = self.vault.clone();
        let generation = v.key_facts().map_or(1, |k| k.generation.saturating_add(1));
        v.sealed.header.key = Some(KeyFacts {
            access_key_id: access_key_id.to_owned(),
            sealed_at: now,
            generation,
        });
        v.reseal(&self.data_key, &payload, self.audit_for_payload(), rng)?;
        Ok(v)
    }

    /// Removes a slot of a version 1 or 2 vault; the last one cannot go.
    ///
    /// The data key stays the same: a removed token together with an *old copy* of the vault
    /// file can still open later versions. [`Opened::rekey`] on a version 3 vault gives the
    /// remaining slots a new token key instead, which closes that; on a version 1 or 2 vault
    /// revoking a lost token also needs a rotated access key (the `rotate` ceremony) so that
    /// what the old copy holds is worthless.
    pub fn remove_slot(&self, id: u8, rng: &dyn Random) -> Result<Vault, Error> {
        if let Keys::Custodians { .. } = self.keys {
            return Err(Error::InvalidInput {
                what: "slot removal",
                reason: "a version 3 vault removes a slot with a new token key (Opened::rekey)"
                    .into(),
            });
        }
        let mut v = self.vault.clone();
        let slots = &mut v.sealed.header.slots;
        let before = slots.len();
        slots.retain(|s| s.info.id != id);
        if slots.len() == before {
            return Err(Error::NoSuchSlot { id });
        }
        if slots.is_empty() {
            return Err(Error::LastSlot);
        }
        v.reseal(&self.data_key, &self.payload, None, rng)?;
        Ok(v)
    }
}
