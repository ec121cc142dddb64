//! Token factors of key slots. A [`SealFactor`] turns public slot parameters into the 32-byte
//! secret `T` that only the enrolled token can produce.

use zeroize::Zeroizing;

use super::{Error, FactorKind, SlotInfo};
use crate::secure::{random_bytes, Key32, Random};
use crate::token::oath::Session;

/// Asks a holder for a token PIN (PIV or FIDO2): the password holder knows it, the token holder
/// has the token. Implemented by the ceremonies' prompt.
pub trait PinEntry {
    /// The PIN for `what` ("PIV", "FIDO2"); `tries_left` is what the token reports.
    fn pin(&mut self, what: &str, tries_left: u8) -> Result<secrecy::SecretString, Error>;
    /// Asked before a try that would block the PIN if wrong: true goes on, false stops.
    fn confirm_last_try(&mut self, what: &str) -> bool;
    /// The token needs a touch now (for `why`); `touch_end` follows when it answered.
    fn touch_start(&mut self, why: &str);
    /// The token answered (or the wait ended) after a [`PinEntry::touch_start`].
    fn touch_end(&mut self);
}

/// A hardware factor for key slots.
pub trait SealFactor {
    /// The kind of slot this factor opens and makes.
    fn kind(&self) -> FactorKind;
    /// Makes the public parameters of a new slot and returns the slot's secret for them.
    fn enroll(&mut self, rng: &dyn Random) -> Result<(Vec<u8>, Key32), Error>;
    /// True when this token is the one `slot` was enrolled with (asks for no touch or PIN).
    fn matches(&mut self, slot: &SlotInfo) -> Result<bool, Error>;
    /// Recomputes the secret of an enrolled slot (touch, PIN…).
    fn respond(&mut self, slot: &SlotInfo) -> Result<Key32, Error>;
}

/// The OATH challenge-response factor: the full HMAC-SHA256 of a per-slot 32-byte challenge by
/// a dedicated, touch-required YKOATH credential. The token is recognised by its OATH device id
/// (a hash of the applet's salt, readable without the access code; it changes on reset).
pub struct OathFactor<'a, 't> {
    session: &'a mut Session<'t>,
    credential: String,
}

const CHALLENGE_LEN: usize = 32;

struct OathParams {
    credential: String,
    challenge: [u8; CHALLENGE_LEN],
    device_id: String,
}

impl OathParams {
    fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.credential.len() as u8];
        out.extend_from_slice(self.credential.as_bytes());
        out.extend_from_slice(&self.challenge);
        out.push(self.device_id.len() as u8);
        out.extend_from_slice(self.device_id.as_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let n = usize::from(*bytes.first().ok_or(Error::Damaged)?);
        let credential = bytes.get(1..1 + n).ok_or(Error::Damaged)?;
        let challenge = bytes
            .get(1 + n..1 + n + CHALLENGE_LEN)
            .ok_or(Error::Damaged)?;
        let rest = &bytes[1 + n + CHALLENGE_LEN..];
        let m = usize::from(*rest.first().ok_or(Error::Damaged)?);
        let device = rest.get(1..1 + m).ok_or(Error::Damaged)?;
        if rest.len() != 1 + m {
            return Err(Error::Damaged);
        }
        Ok(Self {
            credential: String::from_utf8(credential.to_vec()).map_err(|_| Error::Damaged)?,
            challenge: challenge.try_into().map_err(|_| Error::Damaged)?,
            device_id: String::from_utf8(device.to_vec()).map_err(|_| Error::Damaged)?,
        })
    }
}

impl<'a, 't> OathFactor<'a, 't> {
    /// `credential`: the OATH account used for sealing (HMAC-SHA256, touch required), used by
    /// [`SealFactor::enroll`]; unlock reads the name from the slot.
    pub fn new(session: &'a mut Session<'t>, credential: &str) -> Self {
        Self {
            session,
            credential: credential.to_owned(),
        }
    }

    fn respond_to(&mut self, credential: &str, challenge: &[u8]) -> Result<Key32, Error> {
        let mac = self.session.hmac(credential, challenge)?;
        let bytes: Zeroizing<[u8; 32]> =
            Zeroizing::new(mac[..].try_into().map_err(|_| Error::InvalidInput {
                what: "sealing credential",
                reason: format!("{credential:?} must use HMAC-SHA256 (32-byte responses)"),
            })?);
        Ok(Key32::new(*bytes))
    }
}

impl SealFactor for OathFactor<'_, '_> {
    fn kind(&self) -> FactorKind {
        FactorKind::OathHmac
    }

    fn enroll(&mut self, rng: &dyn Random) -> Result<(Vec<u8>, Key32), Error> {
        let params = OathParams {
            credential: self.credential.clone(),
            challenge: random_bytes(rng)?,
            device_id: self.session.device_id(),
        };
        let credential = self.credential.clone();
        let t = self.respond_to(&credential, &params.challenge)?;
        Ok((params.encode(), t))
    }

    fn matches(&mut self, slot: &SlotInfo) -> Result<bool, Error> {
        Ok(OathParams::decode(&slot.params)?.device_id == self.session.device_id())
    }

    fn respond(&mut self, slot: &SlotInfo) -> Result<Key32, Error> {
        let params = OathParams::decode(&slot.params)?;
        self.respond_to(&params.credential, &params.challenge)
    }
}
