//! The PIV factor: ECDH between a P-256 key generated **on** the token (PIN policy "always",
//! touch policy "always", in a retired key-management slot) and a host key made at enrolment.
//!
//! Enrolment: the token generates the key and attests it (the chain to the attestation root is
//! verified, so the key was born on the token and cannot be copied); the host makes a one-time
//! key pair, computes the shared secret with the token's public key, keeps only its public half
//! in the slot, and checks that the token computes the same secret (PIN and touch), so a vault
//! is never sealed with a token that could not open it. Unlock: VERIFY PIN, then ECDH on the
//! token with the stored host public key; `T` is the shared X coordinate.
//!
//! The PIN counter (3 tries, then the PUK) is what guards this factor: whoever holds the token
//! cannot guess the PIN, and whoever knows it cannot act without the token.

use p256::elliptic_curve::sec1::ToSec1Point;
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;
use x509_cert::Certificate;
use zeroize::Zeroizing;

use super::attest::{self, Expected};
use super::factor::PinEntry;
use super::{Error, FactorKind, SealFactor, SlotInfo};
use crate::secure::{random_bytes, Key32, Random};
use crate::token::piv::{PinCheck, PivCard, PIN_POLICY_ALWAYS, RETIRED_SLOTS, TOUCH_POLICY_ALWAYS};

/// Length of an uncompressed P-256 point.
pub const POINT_LEN: usize = 65;
const PARAMS_VERSION: u8 = 1;
const WHAT: &str = "PIV";

/// The public parameters of a PIV slot (see docs/vault-format.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PivParams {
    /// The token's key slot (`82`..`95`).
    pub slot: u8,
    /// The token's serial number.
    pub serial: u32,
    /// The token key's public point.
    pub card_public: [u8; POINT_LEN],
    /// The host key's public point (its private half was discarded at enrolment).
    pub host_public: [u8; POINT_LEN],
    /// The attestation certificate of the slot key (DER), as read at enrolment.
    pub attestation: Vec<u8>,
    /// The token's F9 certificate (DER) that signed it.
    pub attestation_issuer: Vec<u8>,
}

impl PivParams {
    /// The parameter bytes stored in the slot: version, slot, serial (big-endian), both points,
    /// then each certificate with a 2-byte length.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![PARAMS_VERSION, self.slot];
        out.extend_from_slice(&self.serial.to_be_bytes());
        out.extend_from_slice(&self.card_public);
        out.extend_from_slice(&self.host_public);
        for cert in [&self.attestation, &self.attestation_issuer] {
            out.extend_from_slice(&(cert.len() as u16).to_be_bytes());
            out.extend_from_slice(cert);
        }
        out
    }

    /// Strict: every length checked, nothing left over, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let mut pos = 0usize;
        let mut take = |n: usize| -> Result<&[u8], Error> {
            let end = pos.checked_add(n).ok_or(Error::Damaged)?;
            let v = bytes.get(pos..end).ok_or(Error::Damaged)?;
            pos = end;
            Ok(v)
        };
        if take(1)? != [PARAMS_VERSION] {
            return Err(Error::Damaged);
        }
        let slot = take(1)?[0];
        if !RETIRED_SLOTS.contains(&slot) {
            return Err(Error::Damaged);
        }
        let serial = u32::from_be_bytes(take(4)?.try_into().map_err(|_| Error::Damaged)?);
        let card_public: [u8; POINT_LEN] =
            take(POINT_LEN)?.try_into().map_err(|_| Error::Damaged)?;
        let host_public: [u8; POINT_LEN] =
            take(POINT_LEN)?.try_into().map_err(|_| Error::Damaged)?;
        let mut cert = || -> Result<Vec<u8>, Error> {
            let n = u16::from_be_bytes(take(2)?.try_into().map_err(|_| Error::Damaged)?);
            Ok(take(usize::from(n))?.to_vec())
        };
        let attestation = cert()?;
        let attestation_issuer = cert()?;
        if pos != bytes.len() {
            return Err(Error::Damaged);
        }
        Ok(Self {
            slot,
            serial,
            card_public,
            host_public,
            attestation,
            attestation_issuer,
        })
    }
}

/// How a PIV slot is enrolled.
pub struct PivEnrolment<'r> {
    /// The retired slot for the new key.
    pub slot: u8,
    /// Replace a key already in that slot (`--replace-piv-key`).
    pub replace: bool,
    /// Attestation roots (and intermediates) the token's attestation must chain to.
    pub roots: &'r [Certificate],
    /// Unix seconds (for the record only; see `attest::verify`).
    pub now: u64,
}

/// The PIV factor over a token's PIV application.
pub struct PivFactor<'a> {
    card: &'a mut dyn PivCard,
    pins: &'a mut dyn PinEntry,
    enrolment: Option<PivEnrolment<'a>>,
    /// What enrolment verified (for the ceremony's report).
    pub attested: Option<attest::Attested>,
    /// The slot where enrolment generated a key (it stays there even if enrolment fails).
    pub generated_in: Option<u8>,
}

impl<'a> PivFactor<'a> {
    /// For unlocking: the slot's parameters say which key to use.
    pub fn new(card: &'a mut dyn PivCard, pins: &'a mut dyn PinEntry) -> Self {
        Self {
            card,
            pins,
            enrolment: None,
            attested: None,
            generated_in: None,
        }
    }

    /// For enrolling a new slot.
    pub fn for_enrolment(
        card: &'a mut dyn PivCard,
        pins: &'a mut dyn PinEntry,
        enrolment: PivEnrolment<'a>,
    ) -> Self {
        Self {
            card,
            pins,
            enrolment: Some(enrolment),
            attested: None,
            generated_in: None,
        }
    }

    /// ECDH on the token with `peer`, after VERIFY PIN (asked until right, with the tries left
    /// shown; a try that would block the PIN is only made after the holder confirms).
    fn token_ecdh(&mut self, slot: u8, peer: &[u8], why: &str) -> Result<Key32, Error> {
        verify_pin(self.card, self.pins)?;
        self.pins.touch_start(why);
        let shared = self.card.ecdh(slot, peer);
        self.pins.touch_end();
        let shared = shared?;
        let bytes: Zeroizing<[u8; 32]> =
            Zeroizing::new(shared[..].try_into().map_err(|_| Error::InvalidInput {
                what: "token answer",
                reason: "the PIV ECDH result is not 32 bytes".into(),
            })?);
        Ok(Key32::new(*bytes))
    }
}

/// VERIFY PIN with the holder: stops at a blocked PIN (the PUK runbook), and never spends the
/// last try without asking.
pub fn verify_pin(card: &mut dyn PivCard, pins: &mut dyn PinEntry) -> Result<(), Error> {
    loop {
        let tries = card.pin_retries()?;
        if tries == 0 {
            return Err(Error::PinBlocked { what: WHAT });
        }
        if tries == 1 && !pins.confirm_last_try(WHAT) {
            return Err(Error::LastTryDeclined { what: WHAT });
        }
        let pin = pins.pin(WHAT, tries)?;
        match card.verify_pin(pin.expose_secret().as_bytes())? {
            PinCheck::Verified => return Ok(()),
            PinCheck::Blocked | PinCheck::Wrong { tries_left: 0 } => {
                return Err(Error::PinBlocked { what: WHAT })
            }
            // Asked again; the prompt shows how many tries are left.
            PinCheck::Wrong { .. } => {}
        }
    }
}

fn host_key(rng: &dyn Random) -> Result<p256::SecretKey, Error> {
    // A random 32-byte string is a valid scalar except with probability ~2^-128.
    for _ in 0..8 {
        let bytes = Zeroizing::new(random_bytes::<32>(rng)?);
        if let Ok(k) = p256::SecretKey::from_slice(&bytes[..]) {
            return Ok(k);
        }
    }
    Err(Error::Random(crate::secure::RandomFailed))
}

fn point(public: &p256::PublicKey) -> [u8; POINT_LEN] {
    let mut out = [0u8; POINT_LEN];
    out.copy_from_slice(public.as_affine().to_sec1_point(false).as_bytes());
    out
}

impl SealFactor for PivFactor<'_> {
    fn kind(&self) -> FactorKind {
        FactorKind::PivEcdh
    }

    fn enroll(&mut self, rng: &dyn Random) -> Result<(Vec<u8>, Key32), Error> {
        let Some(e) = self.enrolment.take() else {
            return Err(Error::InvalidInput {
                what: "PIV enrolment",
                reason: "no slot was chosen".into(),
            });
        };
        if !RETIRED_SLOTS.contains(&e.slot) {
            return Err(Error::InvalidInput {
                what: "PIV slot",
                reason: format!(
                    "{:02x} is not a retired key-management slot (82 to 95)",
                    e.slot
                ),
            });
        }
        let serial = self.card.serial()?;
        let (major, minor, patch) = self.card.version()?;
        if (major, minor) < (5, 3) {
            return Err(Error::InvalidInput {
                what: "token",
                reason: format!(
                    "token {serial} has firmware {major}.{minor}.{patch}; the PIV factor needs 5.3 or later (key metadata); use --factor oath or fido2 for this token"
                ),
            });
        }
        if self.card.slot_key(e.slot)?.is_some() && !e.replace {
            return Err(Error::Occupied {
                what: format!("PIV slot {:02x} of token {serial}", e.slot),
            });
        }
        self.card.authenticate_default()?;
        let card_public = self.card.generate_p256_always(e.slot)?;
        self.generated_in = Some(e.slot);
        let attestation = self.card.attest(e.slot)?;
        let issuer = self.card.attestation_certificate()?;
        let attested = attest::verify(
            &attestation,
            &issuer,
            e.roots,
            &Expected {
                public_key_sec1: card_public.clone(),
                serial: Some(serial),
                pin_policy_always: true,
                touch_policy_always: true,
            },
            e.now,
        )?;
        // The leaf names its slot ("YubiKey PIV Attestation 82"): it must be this one.
        let slot_name = format!("{:02x}", e.slot);
        if !attested
            .chain
            .first()
            .is_some_and(|cn| cn.to_ascii_lowercase().ends_with(&slot_name))
        {
            return Err(Error::Attestation(format!(
                "the attestation certificate ({}) is not for slot {slot_name}",
                attested.chain.first().map_or("no name", String::as_str)
            )));
        }
        // The attestation proves the policies; GET METADATA must agree (5.3+).
        if let Some(meta) = self.card.slot_key(e.slot)? {
            if (meta.pin_policy, meta.touch_policy) != (PIN_POLICY_ALWAYS, TOUCH_POLICY_ALWAYS)
                || meta.public_key != card_public
            {
                return Err(Error::Attestation(format!(
                    "the key in slot {:02x} does not have the generated key's policies",
                    e.slot
                )));
            }
        }
        let card_key = p256::PublicKey::from_sec1_bytes(&card_public).map_err(|_| {
            Error::Attestation("the token returned an invalid P-256 public key".into())
        })?;
        let host = host_key(rng)?;
        let expected = host.diffie_hellman(&card_key);
        let host_public = point(&host.public_key());
        drop(host);
        let t = self.token_ecdh(e.slot, &host_public, "sealing the vault with the PIV key")?;
        if !bool::from(t.expose()[..].ct_eq(&expected.raw_secret_bytes()[..])) {
            return Err(Error::InvalidInput {
                what: "token answer",
                reason: "the token's ECDH result differs from its public key's".into(),
            });
        }
        let params = PivParams {
            slot: e.slot,
            serial,
            card_public: card_public.as_slice().try_into().map_err(|_| {
                Error::Attestation("the token's public key is not an uncompressed point".into())
            })?,
            host_public,
            attestation,
            attestation_issuer: issuer,
        };
        self.attested = Some(attested);
        Ok((params.encode(), t))
    }

    fn matches(&mut self, slot: &SlotInfo) -> Result<bool, Error> {
        let params = PivParams::decode(&slot.params)?;
        if self.card.serial()? != params.serial {
            return Ok(false);
        }
        // Same token: its key must still be the enrolled one. A replaced key (a re-enrolment
        // in the same slot, a reset PIV application) is a dead slot, not this token's: another
        // slot may hold its new key.
        Ok(self
            .card
            .slot_key(params.slot)?
            .is_some_and(|k| k.public_key[..] == params.card_public[..]))
    }

    fn respond(&mut self, slot: &SlotInfo) -> Result<Key32, Error> {
        let params = PivParams::decode(&slot.params)?;
        self.token_ecdh(params.slot, &params.host_public, "opening the vault")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> PivParams {
        PivParams {
            slot: 0x82,
            serial: 12_345_678,
            card_public: [4; POINT_LEN],
            host_public: [5; POINT_LEN],
            attestation: vec![1, 2, 3],
            attestation_issuer: vec![9; 300],
        }
    }

    #[test]
    fn params_round_trip_and_reject_damage() {
        let p = sample();
        let bytes = p.encode();
        assert_eq!(PivParams::decode(&bytes).unwrap(), p);
        for n in 0..bytes.len() {
            assert!(PivParams::decode(&bytes[..n]).is_err(), "truncated at {n}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(PivParams::decode(&longer).is_err());
        let mut bad_slot = bytes.clone();
        bad_slot[1] = 0x9A;
        assert!(PivParams::decode(&bad_slot).is_err());
        let mut bad_version = bytes;
        bad_version[0] = 2;
        assert!(PivParams::decode(&bad_version).is_err());
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = PivParams::decode(&bytes);
        }
    }
}
