//! Vault v1 bytes: encoding and strict decoding (documented in docs/vault-format.md).
//!
//! Decoding checks the trailing SHA-256 first, so every truncation and every changed byte is
//! reported as damage before any key is derived; only then are fields parsed, and parsing
//! rejects trailing bytes, unknown kinds and out-of-range lengths.

use super::{Error, FactorKind, KdfParams, SlotInfo};

pub const MAGIC: [u8; 8] = *b"BRKGLASS";
pub const VERSION: u16 = 1;
pub const KDF_ARGON2ID_13: u8 = 1;
pub const VAULT_ID_LEN: usize = 16;
pub const SALT_LEN: usize = 32;
pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
pub const WRAPPED_KEY_LEN: usize = 32 + TAG_LEN;
pub const CHECKSUM_LEN: usize = 32;
pub const MAX_SLOTS: usize = 8;
pub const MAX_LABEL: usize = 32;
pub const MAX_PARAMS: usize = 4096;
pub const MAX_SERIAL: usize = 2048;
pub const MAX_PAYLOAD: usize = 16 * 1024;

/// One key slot as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct SlotRecord {
    pub info: SlotInfo,
    pub hkdf_salt: [u8; SALT_LEN],
    pub wrap_nonce: [u8; NONCE_LEN],
    pub wrapped_key: [u8; WRAPPED_KEY_LEN],
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
    pub vault_id: [u8; VAULT_ID_LEN],
    pub created: u64,
    pub kdf: KdfParams,
    pub kdf_salt: [u8; SALT_LEN],
    pub slots: Vec<SlotRecord>,
}

impl Header {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.slots.len() * 160);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_be_bytes());
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
        out
    }
}

/// A whole vault file: header, sealed payload, checksum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub header: Header,
    pub payload_nonce: [u8; NONCE_LEN],
    pub payload: Vec<u8>,
}

impl Sealed {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.header.encode();
        out.extend_from_slice(&self.payload_nonce);
        out.extend_from_slice(&(self.payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.payload);
        let sum = ring::digest::digest(&ring::digest::SHA256, &out);
        out.extend_from_slice(sum.as_ref());
        out
    }

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
        if version != VERSION {
            return Err(Error::UnsupportedVersion { version });
        }
        let mut r = Reader { buf: body, pos: 10 };
        let header = read_header(&mut r)?;
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

fn read_header(r: &mut Reader<'_>) -> Result<Header, Error> {
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
    kdf.check().map_err(|_| Error::Damaged)?;
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
        let slot = read_slot(&mut s)?;
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
    })
}

fn read_slot(s: &mut Reader<'_>) -> Result<SlotRecord, Error> {
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
        wrapped_key: s.array()?,
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
