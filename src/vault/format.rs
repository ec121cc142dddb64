//! Vault bytes, versions 1 to 3: encoding and strict decoding (documented in
//! docs/vault-format.md). Version 2 adds, after the key slots, the public facts of the key the
//! vault holds ([`KeyFacts`]), so that `rotate --check` can read them without a ceremony; a
//! header without them is written as version 1, byte for byte as before. Version 3 adds the
//! custodian set ([`CustodianSet`]) after the key facts: M of N custodians' shares instead of
//! one passphrase, and key slots that wrap the token key (64 bytes) instead of the data key.
//!
//! Decoding checks the trailing SHA-256 first, so every truncation and every changed byte is
//! reported as damage before any key is derived; only then are fields parsed, and parsing
//! rejects trailing bytes, unknown kinds and out-of-range lengths.

use super::{Error, FactorKind, KdfParams, SlotInfo};

/// The first 8 bytes of every vault file.
pub const MAGIC: [u8; 8] = *b"BRKGLASS";
/// The first format version (2 bytes, big-endian, after the magic): no key facts.
pub const VERSION_1: u16 = 1;
/// The format version with the key facts after the slots, written since key rotation.
pub const VERSION_2: u16 = 2;
/// The format version with custodians (M of N shares) and the token key in the slots.
pub const VERSION_3: u16 = 3;
/// The newest version this build reads; a file of a higher one was made by a newer breakglass.
pub const LATEST: u16 = VERSION_3;
/// Key facts tags (one byte, then a one-byte length).
mod ktag {
    pub const KEY_ID: u8 = 0x01;
    pub const SEALED_AT: u8 = 0x02;
    pub const GENERATION: u8 = 0x03;
}
/// Longest access key id the key facts hold, in bytes.
pub const MAX_KEY_ID: usize = 128;
/// Largest key facts section, without its 2-byte length.
const MAX_KEY_FACTS: usize = 2 + MAX_KEY_ID + 2 + 8 + 2 + 4;
/// KDF id of Argon2id v1.3, the only one.
pub const KDF_ARGON2ID_13: u8 = 1;
/// Length of the random vault id, in bytes.
pub const VAULT_ID_LEN: usize = 16;
/// Length of the KDF salt and of each slot's HKDF salt, in bytes.
pub const SALT_LEN: usize = 32;
/// Length of an AES-256-GCM nonce, in bytes.
pub const NONCE_LEN: usize = 12;
/// Length of an AES-256-GCM tag, in bytes.
pub const TAG_LEN: usize = 16;
/// Length of a wrapped data key (versions 1 and 2): the 32-byte key and its tag.
pub const WRAPPED_KEY_LEN: usize = 32 + TAG_LEN;
/// Length of a wrapped token key (version 3): the 64-byte token key and its tag.
pub const WRAPPED_TOKEN_KEY_LEN: usize = 64 + TAG_LEN;
/// Length of a sealed share (version 3): its 32 y bytes and the tag.
pub const SEALED_SHARE_LEN: usize = 32 + TAG_LEN;
/// Longest custodian name, in bytes.
pub const MAX_NAME: usize = 64;
/// Largest custodian record, with its 2-byte length.
const MAX_CUSTODIAN_RECORD: usize = 2 + 1 + 1 + MAX_NAME + SALT_LEN + NONCE_LEN + SEALED_SHARE_LEN;
/// Length of the trailing SHA-256 of the file, in bytes.
pub const CHECKSUM_LEN: usize = 32;
/// Most key slots a vault holds.
pub const MAX_SLOTS: usize = 8;
/// Longest slot label, in bytes.
pub const MAX_LABEL: usize = 32;
/// Largest factor parameters of a slot, in bytes (a PIV slot holds two certificates).
pub const MAX_PARAMS: usize = 4096;
/// Longest MFA serial (an ARN) of a slot, in bytes.
pub const MAX_SERIAL: usize = 2048;
/// Largest sealed payload (with its tag), in bytes.
pub const MAX_PAYLOAD: usize = 16 * 1024;
/// Largest slot record, with its 2-byte length, in bytes.
const MAX_SLOT_RECORD: usize = 2
    + 1
    + 1
    + 1
    + MAX_LABEL
    + 2
    + MAX_SERIAL
    + 2
    + MAX_PARAMS
    + SALT_LEN
    + NONCE_LEN
    + WRAPPED_TOKEN_KEY_LEN;
/// Largest vault file, in bytes (69 694): the fixed header, [`MAX_SLOTS`] records of the
/// largest size, the largest payload and the checksum. Anything larger is refused unread.
pub const MAX_FILE: usize = MAGIC.len()
    + 2
    + VAULT_ID_LEN
    + 8
    + 1
    + 12
    + SALT_LEN
    + 1
    + MAX_SLOTS * MAX_SLOT_RECORD
    + 2
    + MAX_KEY_FACTS
    + 2
    + crate::vault::shares::MAX_CUSTODIANS * MAX_CUSTODIAN_RECORD
    + NONCE_LEN
    + 4
    + MAX_PAYLOAD
    + CHECKSUM_LEN;

/// One key slot as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct SlotRecord {
    /// The slot's public description.
    pub info: SlotInfo,
    /// Salt of the slot's KEK derivation.
    pub hkdf_salt: [u8; SALT_LEN],
    /// Nonce of the data key's wrap.
    pub wrap_nonce: [u8; NONCE_LEN],
    /// The data key (versions 1 and 2, [`WRAPPED_KEY_LEN`] bytes) or the token key (version
    /// 3, [`WRAPPED_TOKEN_KEY_LEN`] bytes), wrapped under the slot's KEK (AES-256-GCM).
    pub wrapped_key: Vec<u8>,
}

impl std::fmt::Debug for SlotRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotRecord")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl SlotRecord {
    /// The record's fields that the slot's wrap authenticates (all but nonce and wrapped key).
    pub fn bound_fields(&self) -> Vec<u8> {
        let mut out = vec![self.info.id, self.info.kind as u8];
        out.push(self.info.label.len() as u8);
        out.extend_from_slice(self.info.label.as_bytes());
        out.extend_from_slice(&(self.info.mfa_serial.len() as u16).to_be_bytes());
        out.extend_from_slice(self.info.mfa_serial.as_bytes());
        out.extend_from_slice(&(self.info.params.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.info.params);
        out.extend_from_slice(&self.hkdf_salt);
        out
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let mut body = self.bound_fields();
        body.extend_from_slice(&self.wrap_nonce);
        body.extend_from_slice(&self.wrapped_key);
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(&body);
    }
}

/// Everything but the payload: authenticated as associated data of the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Random id of the vault, bound into every KEK.
    pub vault_id: [u8; VAULT_ID_LEN],
    /// When the vault was first sealed, Unix seconds.
    pub created: u64,
    /// Argon2id parameters of the passphrase factor.
    pub kdf: KdfParams,
    /// Argon2id salt of the passphrase factor.
    pub kdf_salt: [u8; SALT_LEN],
    /// The key slots, 1 to [`MAX_SLOTS`].
    pub slots: Vec<SlotRecord>,
    /// The key the vault holds, in the clear (versions 2 and 3); `None`: a version 1 vault.
    pub key: Option<KeyFacts>,
    /// The custodians (version 3, with `key`); `None`: one passphrase (versions 1 and 2).
    /// In version 3, [`Header::kdf_salt`] is the data key's HKDF salt, and each custodian has
    /// an Argon2id salt of their own.
    pub custodians: Option<CustodianSet>,
}

/// Who holds the shares of `P`, and how many must be present (version 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustodianSet {
    /// M: how many custodians' shares open the vault (1 to the number of custodians).
    pub threshold: u8,
    /// N custodians, 1 to [`crate::vault::shares::MAX_CUSTODIANS`], distinct x and names.
    pub members: Vec<CustodianRecord>,
}

/// One custodian: a name, and their share sealed under their passphrase and the token key.
#[derive(Clone, PartialEq, Eq)]
pub struct CustodianRecord {
    /// The share's x (1–255), unique in the vault.
    pub x: u8,
    /// The custodian's name as typed at the ceremony that made the share (1 to [`MAX_NAME`]
    /// bytes of UTF-8, no control character).
    pub name: String,
    /// The salt of the custodian's Argon2id and of the share key's HKDF.
    pub salt: [u8; SALT_LEN],
    /// Nonce of the share's seal.
    pub nonce: [u8; NONCE_LEN],
    /// The share's 32 y bytes, AES-256-GCM under the share key, tag included.
    pub sealed_share: [u8; SEALED_SHARE_LEN],
}

impl std::fmt::Debug for CustodianRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustodianRecord")
            .field("x", &self.x)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl CustodianRecord {
    /// The fields the share's seal authenticates: x, name, salt.
    pub fn bound_fields(&self) -> Vec<u8> {
        let mut out = vec![self.x, self.name.len() as u8];
        out.extend_from_slice(self.name.as_bytes());
        out.extend_from_slice(&self.salt);
        out
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let mut body = self.bound_fields();
        body.extend_from_slice(&self.nonce);
        body.extend_from_slice(&self.sealed_share);
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(&body);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, Error> {
        let len = usize::from(r.u16()?);
        let mut s = Reader {
            buf: r.take(len)?,
            pos: 0,
        };
        let x = s.u8()?;
        let name_len = usize::from(s.u8()?);
        if x == 0 || name_len == 0 || name_len > MAX_NAME {
            return Err(Error::Damaged);
        }
        let name = std::str::from_utf8(s.take(name_len)?).map_err(|_| Error::Damaged)?;
        if name.chars().any(char::is_control) {
            return Err(Error::Damaged);
        }
        let record = Self {
            x,
            name: name.to_owned(),
            salt: s.array()?,
            nonce: s.array()?,
            sealed_share: s.array()?,
        };
        if s.pos != s.buf.len() {
            return Err(Error::Damaged);
        }
        Ok(record)
    }
}

impl CustodianSet {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.threshold);
        out.push(self.members.len() as u8);
        for m in &self.members {
            m.encode(out);
        }
    }

    /// M and N in range, then N records with distinct x and distinct names.
    fn decode(r: &mut Reader<'_>) -> Result<Self, Error> {
        let threshold = r.u8()?;
        let n = usize::from(r.u8()?);
        if n == 0 || n > crate::vault::shares::MAX_CUSTODIANS || threshold == 0 {
            return Err(Error::Damaged);
        }
        if usize::from(threshold) > n {
            return Err(Error::Damaged);
        }
        let mut members: Vec<CustodianRecord> = Vec::with_capacity(n);
        for _ in 0..n {
            let m = CustodianRecord::decode(r)?;
            if members.iter().any(|o| o.x == m.x || o.name == m.name) {
                return Err(Error::Damaged);
            }
            members.push(m);
        }
        Ok(Self { threshold, members })
    }
}

/// What a version 2 vault says in the clear about the access key it holds: enough to tell,
/// without opening it, which key it is, how old, and whether another copy is newer. Part of
/// the header, so authenticated as the payload's associated data once the vault is opened
/// (and the key id checked against the payload's); before that, only a hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFacts {
    /// The access key id (`AKIA…`): not a secret, AWS logs it with every call.
    pub access_key_id: String,
    /// When this key was sealed into the vault (enrolment or rotation), Unix seconds.
    pub sealed_at: u64,
    /// 0 at enrolment, one more at each rotation: a copy with a lower number is stale.
    pub generation: u32,
}

impl KeyFacts {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut body = Vec::with_capacity(MAX_KEY_FACTS);
        for (tag, value) in [
            (ktag::KEY_ID, self.access_key_id.as_bytes()),
            (ktag::SEALED_AT, &self.sealed_at.to_be_bytes()[..]),
            (ktag::GENERATION, &self.generation.to_be_bytes()[..]),
        ] {
            body.push(tag);
            body.push(value.len() as u8);
            body.extend_from_slice(value);
        }
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(&body);
    }

    /// The three entries, in order, each exactly once; anything else is damage.
    fn decode(r: &mut Reader<'_>) -> Result<Self, Error> {
        let len = usize::from(r.u16()?);
        if len > MAX_KEY_FACTS {
            return Err(Error::Damaged);
        }
        let mut s = Reader {
            buf: r.take(len)?,
            pos: 0,
        };
        let mut entry = |tag: u8| -> Result<&[u8], Error> {
            if s.u8()? != tag {
                return Err(Error::Damaged);
            }
            let n = usize::from(s.u8()?);
            s.take(n)
        };
        let id = entry(ktag::KEY_ID)?;
        if id.is_empty() || id.len() > MAX_KEY_ID || !id.iter().all(u8::is_ascii_alphanumeric) {
            return Err(Error::Damaged);
        }
        let access_key_id = String::from_utf8(id.to_vec()).map_err(|_| Error::Damaged)?;
        let sealed_at = u64::from_be_bytes(
            entry(ktag::SEALED_AT)?
                .try_into()
                .map_err(|_| Error::Damaged)?,
        );
        let generation = u32::from_be_bytes(
            entry(ktag::GENERATION)?
                .try_into()
                .map_err(|_| Error::Damaged)?,
        );
        if s.pos != s.buf.len() {
            return Err(Error::Damaged);
        }
        Ok(Self {
            access_key_id,
            sealed_at,
            generation,
        })
    }
}

impl Header {
    /// The header's bytes, from the magic to the last slot: the payload's associated data.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.slots.len() * 160);
        out.extend_from_slice(&MAGIC);
        let version = self.version();
        out.extend_from_slice(&version.to_be_bytes());
        out.extend_from_slice(&self.vault_id);
        out.extend_from_slice(&self.created.to_be_bytes());
        out.push(KDF_ARGON2ID_13);
        out.extend_from_slice(&self.kdf.m_kib.to_be_bytes());
        out.extend_from_slice(&self.kdf.t.to_be_bytes());
        out.extend_from_slice(&self.kdf.p.to_be_bytes());
        out.extend_from_slice(&self.kdf_salt);
        out.push(self.slots.len() as u8);
        for s in &self.slots {
            s.encode(&mut out);
        }
        if let Some(key) = &self.key {
            key.encode(&mut out);
        }
        if let Some(set) = &self.custodians {
            set.encode(&mut out);
        }
        out
    }

    /// The format version the header is written in: 3 with custodians, 2 with key facts,
    /// 1 without either.
    pub fn version(&self) -> u16 {
        match (&self.key, &self.custodians) {
            (_, Some(_)) => VERSION_3,
            (Some(_), None) => VERSION_2,
            (None, None) => VERSION_1,
        }
    }
}

/// A whole vault file: header, sealed payload, checksum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The vault's public part.
    pub header: Header,
    /// Nonce of the payload's seal.
    pub payload_nonce: [u8; NONCE_LEN],
    /// The payload sealed under the data key (AES-256-GCM, tag included).
    pub payload: Vec<u8>,
}

impl Sealed {
    /// The file's bytes: header, payload nonce, payload length (4 bytes), payload, SHA-256 of all
    /// before.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.header.encode();
        out.extend_from_slice(&self.payload_nonce);
        out.extend_from_slice(&(self.payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.payload);
        let sum = ring::digest::digest(&ring::digest::SHA256, &out);
        out.extend_from_slice(sum.as_ref());
        out
    }

    /// Strict decoding: [`Error::NotAVault`] for 8 bytes or more without the magic,
    /// [`Error::Damaged`] for a shorter file, a wrong checksum or any field out of range,
    /// [`Error::UnsupportedVersion`] for another version (checked after the checksum),
    /// [`Error::KdfOutOfBounds`] for Argon2id parameters out of [`KdfParams::check`]'s bounds.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() < MAGIC.len() + 2 + CHECKSUM_LEN || bytes[..MAGIC.len()] != MAGIC {
            return Err(if bytes.starts_with(&MAGIC) || bytes.len() < MAGIC.len() {
                Error::Damaged
            } else {
                Error::NotAVault
            });
        }
        let version = u16::from_be_bytes([bytes[8], bytes[9]]);
        let (body, sum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
        let expected = ring::digest::digest(&ring::digest::SHA256, body);
        if expected.as_ref() != sum {
            return Err(Error::Damaged);
        }
        if !(VERSION_1..=LATEST).contains(&version) {
            return Err(Error::UnsupportedVersion { version });
        }
        let mut r = Reader { buf: body, pos: 10 };
        let mut header = read_header(&mut r, version)?;
        if version >= VERSION_2 {
            header.key = Some(KeyFacts::decode(&mut r)?);
        }
        if version >= VERSION_3 {
            header.custodians = Some(CustodianSet::decode(&mut r)?);
        }
        let payload_nonce = r.array()?;
        let len = r.u32()? as usize;
        if !(TAG_LEN..=MAX_PAYLOAD).contains(&len) {
            return Err(Error::Damaged);
        }
        let payload = r.take(len)?.to_vec();
        if r.pos != body.len() {
            return Err(Error::Damaged);
        }
        Ok(Self {
            header,
            payload_nonce,
            payload,
        })
    }
}

fn read_header(r: &mut Reader<'_>, version: u16) -> Result<Header, Error> {
    let vault_id = r.array()?;
    let created = r.u64()?;
    if r.u8()? != KDF_ARGON2ID_13 {
        return Err(Error::Damaged);
    }
    let kdf = KdfParams {
        m_kib: r.u32()?,
        t: r.u32()?,
        p: r.u32()?,
    };
    // Before anything is derived with them: the header is only authenticated by the payload's
    // tag, which needs the key they derive.
    kdf.check()?;
    let kdf_salt = r.array()?;
    let n = usize::from(r.u8()?);
    if n == 0 || n > MAX_SLOTS {
        return Err(Error::Damaged);
    }
    let mut slots: Vec<SlotRecord> = Vec::with_capacity(n);
    for _ in 0..n {
        let len = usize::from(r.u16()?);
        let mut s = Reader {
            buf: r.take(len)?,
            pos: 0,
        };
        let slot = read_slot(&mut s, version)?;
        if s.pos != s.buf.len() || slots.iter().any(|o| o.info.id == slot.info.id) {
            return Err(Error::Damaged);
        }
        slots.push(slot);
    }
    Ok(Header {
        vault_id,
        created,
        kdf,
        kdf_salt,
        slots,
        key: None,
        custodians: None,
    })
}

fn read_slot(s: &mut Reader<'_>, version: u16) -> Result<SlotRecord, Error> {
    let id = s.u8()?;
    let kind = FactorKind::from_byte(s.u8()?).ok_or(Error::Damaged)?;
    let label_len = usize::from(s.u8()?);
    if label_len > MAX_LABEL {
        return Err(Error::Damaged);
    }
    let label = std::str::from_utf8(s.take(label_len)?)
        .map_err(|_| Error::Damaged)?
        .to_owned();
    let serial_len = usize::from(s.u16()?);
    if serial_len > MAX_SERIAL {
        return Err(Error::Damaged);
    }
    let mfa_serial = std::str::from_utf8(s.take(serial_len)?)
        .map_err(|_| Error::Damaged)?
        .to_owned();
    let params_len = usize::from(s.u16()?);
    if params_len > MAX_PARAMS {
        return Err(Error::Damaged);
    }
    let params = s.take(params_len)?.to_vec();
    Ok(SlotRecord {
        info: SlotInfo {
            id,
            kind,
            label,
            mfa_serial,
            params,
        },
        hkdf_salt: s.array()?,
        wrap_nonce: s.array()?,
        wrapped_key: s
            .take(if version >= VERSION_3 {
                WRAPPED_TOKEN_KEY_LEN
            } else {
                WRAPPED_KEY_LEN
            })?
            .to_vec(),
    })
}

/// A bounds-checked cursor: every read past the end is damage, never a panic.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self.pos.checked_add(n).ok_or(Error::Damaged)?;
        let out = self.buf.get(self.pos..end).ok_or(Error::Damaged)?;
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        self.take(N)?.try_into().map_err(|_| Error::Damaged)
    }

    fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, Error> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, Error> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, Error> {
        Ok(u64::from_be_bytes(self.array()?))
    }
}
