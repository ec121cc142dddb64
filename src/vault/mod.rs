//! The sealed vault: the IAM user's long-term key, openable only with both the passphrase and
//! an enrolled token.
//!
//! `P = Argon2id(passphrase)`, `T` = the token factor of a slot, `KEK = HKDF-SHA256(slot salt,
//! P ‖ T, "breakglass v1 kek" ‖ vault id ‖ slot id)`. A random data key is wrapped under each
//! slot's KEK (AES-256-GCM); the payload is sealed under the data key with the whole header as
//! associated data. Byte layout: docs/vault-format.md.

pub mod attest;
pub mod factor;
pub mod fido2;
pub mod file;
pub mod format;
pub mod piv;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::secure::{random_bytes, Key32, Random, RandomFailed};
use crate::token::apdu::{write_tlv, Tlv};
pub use factor::{OathFactor, PinEntry, SealFactor};
pub use format::KeyFacts;
use format::{Header, Sealed, SlotRecord, NONCE_LEN, SALT_LEN, WRAPPED_KEY_LEN};

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
    /// A vault of a format version other than 1.
    #[error(
        "vault format version {version} is not supported by this breakglass (it reads versions 1 and 2)"
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
    let prk = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, salt).extract(&*ikm);
    let info: [&[u8]; 3] = [b"breakglass v1 kek", vault_id, &[slot_id]];
    let mut out = Zeroizing::new([0u8; 32]);
    // HKDF-SHA256 can always expand 32 bytes; the error arm is unreachable by construction.
    if let Ok(okm) = prk.expand(&info, ring::hkdf::HKDF_SHA256) {
        let _ = okm.fill(&mut *out);
    }
    Key32::new(*out)
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
}

impl Payload {
    fn encode(&self) -> Zeroizing<Vec<u8>> {
        // Exact size first: growing the buffer would leave copies of the secret behind.
        let sizes = [
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
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, Error> {
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
        Ok(Self {
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
        })
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

/// The passphrase's key for one vault ([`Vault::derive`]); wiped on drop. No `Debug`.
pub struct PassphraseKey(Key32);

/// A vault opened with both factors: the payload, and what is needed to re-seal it.
pub struct Opened {
    vault: Vault,
    p: Key32,
    data_key: Key32,
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

    /// The key slots, in file order.
    pub fn slots(&self) -> impl Iterator<Item = &SlotInfo> {
        self.sealed.header.slots.iter().map(|s| &s.info)
    }

    /// The Argon2id parameters of the passphrase factor.
    pub fn kdf(&self) -> KdfParams {
        self.sealed.header.kdf
    }

    /// What the vault says in the clear about its key (version 2 vaults; `None` for version
    /// 1). Unauthenticated until the vault is opened: a hint for reports, never for a decision
    /// that needs the key.
    pub fn key_facts(&self) -> Option<&KeyFacts> {
        self.sealed.header.key.as_ref()
    }

    /// When the vault was first sealed (enrolment), Unix seconds.
    pub fn created(&self) -> u64 {
        self.sealed.header.created
    }

    /// The random vault id, 32 lowercase hex digits.
    pub fn vault_id_hex(&self) -> String {
        data_encoding::HEXLOWER.encode(&self.sealed.header.vault_id)
    }

    /// Seals a new vault with one slot for `factor`.
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
        let header = Header {
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
        };
        let p = passphrase_factor(passphrase, &header.kdf_salt, &kdf)?;
        let data_key = Key32::random(rng)?;
        let mut vault = Self {
            sealed: Sealed {
                header,
                payload_nonce: [0; NONCE_LEN],
                payload: Vec::new(),
            },
        };
        vault.push_slot(&p, &data_key, factor, label, &payload.mfa_serial, rng)?;
        vault.reseal(&data_key, payload, rng)?;
        Ok(vault)
    }

    fn push_slot(
        &mut self,
        p: &Key32,
        data_key: &Key32,
        factor: &mut dyn SealFactor,
        label: &str,
        mfa_serial: &str,
        rng: &dyn Random,
    ) -> Result<u8, Error> {
        let header = &mut self.sealed.header;
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
        let mut record = SlotRecord {
            info: SlotInfo {
                id,
                kind: factor.kind(),
                label: label.to_owned(),
                mfa_serial: mfa_serial.to_owned(),
                params,
            },
            hkdf_salt: random_bytes(rng)?,
            wrap_nonce: random_bytes(rng)?,
            wrapped_key: [0; WRAPPED_KEY_LEN],
        };
        let kek = kek(p, &t, &record.hkdf_salt, &header.vault_id, id);
        let wrapped = seal(
            &kek,
            record.wrap_nonce,
            &slot_aad(&header.vault_id, &record),
            data_key.expose(),
        );
        record.wrapped_key.copy_from_slice(&wrapped);
        header.slots.push(record);
        Ok(id)
    }

    fn reseal(
        &mut self,
        data_key: &Key32,
        payload: &Payload,
        rng: &dyn Random,
    ) -> Result<(), Error> {
        let nonce = random_bytes(rng)?;
        let aad = self.sealed.header.encode();
        self.sealed.payload = seal(data_key, nonce, &aad, &payload.encode());
        self.sealed.payload_nonce = nonce;
        Ok(())
    }

    /// Opens the vault with the passphrase and whichever enrolled token `factor` is.
    pub fn open(
        &self,
        passphrase: &SecretString,
        factor: &mut dyn SealFactor,
    ) -> Result<Opened, Error> {
        self.open_with(None, passphrase, factor)
    }

    /// The passphrase's key for this vault (Argon2id with the vault's salt and parameters,
    /// about a second at the defaults), to derive before a token is opened so that the token
    /// is not held while it runs: see [`Vault::open_derived`].
    pub fn derive(&self, passphrase: &SecretString) -> Result<PassphraseKey, Error> {
        let header = &self.sealed.header;
        Ok(PassphraseKey(passphrase_factor(
            passphrase,
            &header.kdf_salt,
            &header.kdf,
        )?))
    }

    /// [`Vault::open`] with the passphrase's key derived beforehand ([`Vault::derive`]).
    pub fn open_derived(
        &self,
        key: &PassphraseKey,
        factor: &mut dyn SealFactor,
    ) -> Result<Opened, Error> {
        self.open_with(Some(key), &SecretString::from(String::new()), factor)
    }

    fn open_with(
        &self,
        derived: Option<&PassphraseKey>,
        passphrase: &SecretString,
        factor: &mut dyn SealFactor,
    ) -> Result<Opened, Error> {
        let header = &self.sealed.header;
        let mut slot = None;
        for s in &header.slots {
            if s.info.kind == factor.kind() && factor.matches(&s.info)? {
                slot = Some(s);
                break;
            }
        }
        let Some(slot) = slot else {
            return Err(Error::NotEnrolled {
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
            });
        };
        // The KDF first (about a second), then the touch: the token holder acts last.
        let p = match derived {
            Some(key) => Key32::new(*key.0.expose()),
            None => passphrase_factor(passphrase, &header.kdf_salt, &header.kdf)?,
        };
        let t = factor.respond(&slot.info)?;
        let kek = kek(&p, &t, &slot.hkdf_salt, &header.vault_id, slot.info.id);
        let data_key = open(
            &kek,
            slot.wrap_nonce,
            &slot_aad(&header.vault_id, slot),
            &slot.wrapped_key,
        )
        .ok_or(Error::NotOpened)?;
        let data_key = Key32::new(data_key[..].try_into().map_err(|_| Error::Damaged)?);
        let plain = open(
            &data_key,
            self.sealed.payload_nonce,
            &header.encode(),
            &self.sealed.payload,
        )
        .ok_or(Error::Damaged)?;
        let payload = Payload::decode(&plain)?;
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
            p,
            data_key,
            payload,
            slot_id: slot.info.id,
        })
    }
}

impl Opened {
    /// The key that seals this profile's audit records (HKDF-SHA256 of the data key, with the
    /// vault id): only someone who opened the vault (the two holders) can make a seal, and
    /// only they can check one. See `audit::Seal`.
    pub fn audit_key(&self) -> Key32 {
        let prk =
            ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, &self.vault.sealed.header.vault_id)
                .extract(self.data_key.expose());
        let info: [&[u8]; 1] = [b"breakglass v1 audit seal"];
        let mut out = Zeroizing::new([0u8; 32]);
        // HKDF-SHA256 can always expand 32 bytes; the error arm is unreachable by construction.
        if let Ok(okm) = prk.expand(&info, ring::hkdf::HKDF_SHA256) {
            let _ = okm.fill(&mut *out);
        }
        Key32::new(*out)
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

    /// Adds a slot for another token (same passphrase) with its own MFA device; returns the new
    /// vault and slot id.
    pub fn add_slot(
        &self,
        factor: &mut dyn SealFactor,
        label: &str,
        mfa_serial: &str,
        rng: &dyn Random,
    ) -> Result<(Vault, u8), Error> {
        let mut v = self.vault.clone();
        let id = v.push_slot(&self.p, &self.data_key, factor, label, mfa_serial, rng)?;
        v.reseal(&self.data_key, &self.payload, rng)?;
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
        v.reseal(&self.data_key, &payload, rng)?;
        Ok(v)
    }

    /// Removes a slot; the last one cannot go.
    ///
    /// The data key stays the same: a removed token together with an *old copy* of the vault
    /// file can still open later versions. Revoking a lost token therefore also needs a rotated
    /// access key (the `rotate` ceremony) so that what the old copy holds is worthless.
    pub fn remove_slot(&self, id: u8, rng: &dyn Random) -> Result<Vault, Error> {
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
        v.reseal(&self.data_key, &self.payload, rng)?;
        Ok(v)
    }
}
