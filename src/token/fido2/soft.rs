//! A software FIDO2 authenticator with the `hmac-secret` and `clientPin` semantics of CTAP 2.1,
//! for tests of the FIDO2 factor (these machines have no `/dev/uhid`, so no virtual HID key).
//!
//! What it keeps as a real key does: per credential two random 32-byte secrets,
//! `CredRandomWithUV` and `CredRandomWithoutUV`, and `hmac-secret` answers
//! `HMAC-SHA256(CredRandom, salt)` with the one matching whether the PIN verified the user. The
//! PIN has 8 tries; 3 wrong in a row put the key in a state that refuses PIN tries (without
//! spending any) until [`SoftFido2::power_cycle`]. A reset erases credentials and PIN.
//!
//! What it simplifies: credentials live in a map keyed by random ids (a real key wraps the
//! private key into the id), there is no signature, no attestation, no PIN/UV auth protocol
//! encryption (the PIN is handed over in memory), and the PIN is compared as SHA-256 (a real
//! key keeps its first 16 bytes).

use std::collections::HashMap;

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::{
    Authenticator, DeviceError, Info, Presence, PIN_TRIES, PIN_TRIES_PER_POWER_CYCLE, SALT_LEN,
};
use crate::token::soft::TouchSensor;

/// The soft authenticator's AAGUID ("breakglass-soft!").
pub const AAGUID: [u8; 16] = *b"breakglass-soft!";
/// Length of the random credential ids it hands out (a YubiKey 5's are 64 bytes too).
pub const CREDENTIAL_ID_LEN: usize = 64;
/// CTAP's minimum PIN length, in Unicode code points.
pub const MIN_PIN_LEN: usize = 4;

struct Credential {
    rp_id: String,
    cred_random_uv: Zeroizing<[u8; 32]>,
    cred_random_no_uv: Zeroizing<[u8; 32]>,
}

/// How a key can verify its user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PinSupport {
    /// No `clientPin` at all (a U2F-era key).
    None,
    /// `clientPin` supported; `pin` may be unset.
    ClientPin,
}

/// A software FIDO2 key. Not `Debug`-printed with its secrets.
pub struct SoftFido2 {
    pin_support: PinSupport,
    hmac_secret: bool,
    always_uv: bool,
    pin_hash: Option<Zeroizing<[u8; 32]>>,
    retries: u8,
    wrong_in_a_row: u8,
    credentials: HashMap<Vec<u8>, Credential>,
    touch: Option<Box<dyn TouchSensor>>,
    touches: u64,
    rng: SystemRandom,
}

impl std::fmt::Debug for SoftFido2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftFido2")
            .field("pin_set", &self.pin_hash.is_some())
            .field("retries", &self.retries)
            .field("credentials", &self.credentials.len())
            .finish_non_exhaustive()
    }
}

fn pin_hash(pin: &str) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, pin.as_bytes()).as_ref());
    out
}

impl SoftFido2 {
    fn build(pin_support: PinSupport) -> Self {
        Self {
            pin_support,
            hmac_secret: true,
            always_uv: false,
            pin_hash: None,
            retries: PIN_TRIES,
            wrong_in_a_row: 0,
            credentials: HashMap::new(),
            touch: None,
            touches: 0,
            rng: SystemRandom::new(),
        }
    }

    /// A key with `hmac-secret` and the PIN `pin` set.
    pub fn with_pin(pin: &str) -> Self {
        let mut k = Self::build(PinSupport::ClientPin);
        k.pin_hash = Some(pin_hash(pin));
        k
    }

    /// A key that supports a PIN but has none set (as a new key comes).
    pub fn without_pin() -> Self {
        Self::build(PinSupport::ClientPin)
    }

    /// A key without any PIN support: it cannot verify its user.
    pub fn without_uv() -> Self {
        Self::build(PinSupport::None)
    }

    /// Drops `hmac-secret` from the key's extensions.
    pub fn without_hmac_secret(mut self) -> Self {
        self.hmac_secret = false;
        self
    }

    /// A key that verifies its user for every request (`alwaysUv`), like a CTAP 2.0 key that
    /// refuses `up = false`: it cannot be probed silently, and it wants the touch before it
    /// says whether it holds a credential (so each wrong guess costs one).
    pub fn always_uv(mut self) -> Self {
        self.always_uv = true;
        self
    }

    /// Touches are answered by `touch` (default: always touched).
    pub fn with_touch(mut self, touch: Box<dyn TouchSensor>) -> Self {
        self.touch = Some(touch);
        self
    }

    /// `clientPin setPIN`: only when PINs are supported and none is set.
    pub fn set_pin(&mut self, pin: &str) -> Result<(), DeviceError> {
        if self.pin_support == PinSupport::None {
            return Err(DeviceError::UvUnsupported);
        }
        if self.pin_hash.is_some() {
            return Err(DeviceError::Other("a PIN is already set".into()));
        }
        if pin.chars().count() < MIN_PIN_LEN {
            return Err(DeviceError::Other(format!(
                "a FIDO2 PIN has at least {MIN_PIN_LEN} characters"
            )));
        }
        self.pin_hash = Some(pin_hash(pin));
        self.retries = PIN_TRIES;
        self.wrong_in_a_row = 0;
        Ok(())
    }

    /// Unplugged and plugged in again: PIN tries are accepted again after 3 wrong in a row.
    pub fn power_cycle(&mut self) {
        self.wrong_in_a_row = 0;
    }

    /// `authenticatorReset`: every credential and the PIN are gone (new CredRandoms for any
    /// new credential; the old ids mean nothing any more).
    pub fn reset(&mut self) {
        self.credentials.clear();
        self.pin_hash = None;
        self.retries = PIN_TRIES;
        self.wrong_in_a_row = 0;
    }

    /// Touches the key asked for so far.
    pub fn touches(&self) -> u64 {
        self.touches
    }

    /// Credentials the key holds.
    pub fn credential_count(&self) -> usize {
        self.credentials.len()
    }

    fn random32(&self) -> Result<Zeroizing<[u8; 32]>, DeviceError> {
        let mut b = Zeroizing::new([0u8; 32]);
        self.rng
            .fill(&mut *b)
            .map_err(|_| DeviceError::Other("the system random source failed".into()))?;
        Ok(b)
    }

    /// User presence: one touch.
    fn presence(&mut self) -> Result<(), DeviceError> {
        self.touches += 1;
        match &self.touch {
            Some(t) if !t.wait_for_touch() => {
                Err(DeviceError::Other("the key was not touched in time".into()))
            }
            _ => Ok(()),
        }
    }

    /// `getPinToken`: CTAP 2.1 §6.5.5.5 — the retry counter goes down before the comparison
    /// and back to 8 on a match.
    fn verify_pin(&mut self, pin: &SecretString) -> Result<(), DeviceError> {
        if self.pin_support == PinSupport::None {
            return Err(DeviceError::UvUnsupported);
        }
        let Some(stored) = &self.pin_hash else {
            return Err(DeviceError::PinNotSet);
        };
        if self.retries == 0 {
            return Err(DeviceError::PinBlocked);
        }
        if self.wrong_in_a_row >= PIN_TRIES_PER_POWER_CYCLE {
            return Err(DeviceError::PinAuthBlocked);
        }
        self.retries -= 1;
        let given = pin_hash(pin.expose_secret());
        if bool::from(given.ct_eq(&**stored)) {
            self.retries = PIN_TRIES;
            self.wrong_in_a_row = 0;
            return Ok(());
        }
        self.wrong_in_a_row += 1;
        if self.retries == 0 {
            Err(DeviceError::PinBlocked)
        } else if self.wrong_in_a_row >= PIN_TRIES_PER_POWER_CYCLE {
            Err(DeviceError::PinAuthBlocked)
        } else {
            Err(DeviceError::PinInvalid)
        }
    }

    fn credential(&self, rp_id: &str, id: &[u8]) -> Result<&Credential, DeviceError> {
        self.credentials
            .get(id)
            .filter(|c| c.rp_id == rp_id)
            .ok_or(DeviceError::NoCredential)
    }
}

impl Authenticator for SoftFido2 {
    fn info(&mut self) -> Result<Info, DeviceError> {
        Ok(Info {
            aaguid: AAGUID,
            client_pin: match self.pin_support {
                PinSupport::None => None,
                PinSupport::ClientPin => Some(self.pin_hash.is_some()),
            },
            hmac_secret: self.hmac_secret,
            uv: None,
        })
    }

    fn pin_retries(&mut self) -> Result<u8, DeviceError> {
        match self.pin_support {
            PinSupport::None => Err(DeviceError::UvUnsupported),
            PinSupport::ClientPin => Ok(self.retries),
        }
    }

    fn make_credential(
        &mut self,
        rp_id: &str,
        user_id: &[u8],
        pin: &SecretString,
    ) -> Result<Vec<u8>, DeviceError> {
        if rp_id.is_empty() || user_id.is_empty() || user_id.len() > 64 {
            return Err(DeviceError::Other(
                "invalid relying party or user id".into(),
            ));
        }
        if !self.hmac_secret {
            return Err(DeviceError::HmacSecretUnsupported);
        }
        self.verify_pin(pin)?;
        self.presence()?;
        let mut id = vec![0u8; CREDENTIAL_ID_LEN];
        self.rng
            .fill(&mut id)
            .map_err(|_| DeviceError::Other("the system random source failed".into()))?;
        let credential = Credential {
            rp_id: rp_id.to_owned(),
            cred_random_uv: self.random32()?,
            cred_random_no_uv: self.random32()?,
        };
        self.credentials.insert(id.clone(), credential);
        Ok(id)
    }

    fn probe_credential(
        &mut self,
        rp_id: &str,
        credential_id: &[u8],
    ) -> Result<Presence, DeviceError> {
        Ok(if self.always_uv {
            Presence::Unknown
        } else if self.credential(rp_id, credential_id).is_ok() {
            Presence::Held
        } else {
            Presence::NotHeld
        })
    }

    fn hmac_secret(
        &mut self,
        rp_id: &str,
        credential_id: &[u8],
        salt: &[u8; SALT_LEN],
        pin: Option<&SecretString>,
    ) -> Result<Zeroizing<[u8; 32]>, DeviceError> {
        // As on a real key: the PIN token comes first (its own command), then the assertion.
        match pin {
            Some(pin) => self.verify_pin(pin)?,
            None if self.always_uv => {
                return Err(DeviceError::Other(
                    "CTAP2_ERR_PUAT_REQUIRED: this key verifies the user for every request".into(),
                ))
            }
            None => {}
        }
        if self.always_uv {
            self.presence()?;
            self.credential(rp_id, credential_id)?;
        } else {
            self.credential(rp_id, credential_id)?;
            self.presence()?;
        }
        let c = self.credential(rp_id, credential_id)?;
        let cred_random = if pin.is_some() {
            &c.cred_random_uv
        } else {
            &c.cred_random_no_uv
        };
        let key = hmac::Key::new(hmac::HMAC_SHA256, &**cred_random);
        let tag = hmac::sign(&key, salt);
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    fn enrolled() -> (SoftFido2, Vec<u8>) {
        let mut k = SoftFido2::with_pin("1234");
        let id = k
            .make_credential("breakglass", &[1; 32], &pin("1234"))
            .unwrap();
        (k, id)
    }

    #[test]
    fn hmac_secret_is_hmac_sha256_of_the_salt_and_depends_on_uv() {
        let (mut k, id) = enrolled();
        assert_eq!(id.len(), CREDENTIAL_ID_LEN);
        let salt = [5u8; 32];
        let uv = k
            .hmac_secret("breakglass", &id, &salt, Some(&pin("1234")))
            .unwrap();
        let again = k
            .hmac_secret("breakglass", &id, &salt, Some(&pin("1234")))
            .unwrap();
        assert_eq!(*uv, *again, "deterministic per credential and salt");
        let no_uv = k.hmac_secret("breakglass", &id, &salt, None).unwrap();
        assert_ne!(*uv, *no_uv, "CredRandomWithUV differs from WithoutUV");
        let c = &k.credentials[&id];
        let expect = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &*c.cred_random_uv),
            &salt,
        );
        assert_eq!(&uv[..], expect.as_ref());
        let other_salt = k
            .hmac_secret("breakglass", &id, &[6u8; 32], Some(&pin("1234")))
            .unwrap();
        assert_ne!(*uv, *other_salt);
        assert_eq!(k.touches(), 5, "make_credential and each assertion touch");
    }

    #[test]
    fn credentials_are_per_id_and_relying_party() {
        let (mut k, id) = enrolled();
        let second = k
            .make_credential("breakglass", &[2; 32], &pin("1234"))
            .unwrap();
        assert_ne!(id, second);
        let salt = [0u8; 32];
        let a = k.hmac_secret("breakglass", &id, &salt, None).unwrap();
        let b = k.hmac_secret("breakglass", &second, &salt, None).unwrap();
        assert_ne!(*a, *b);
        assert_eq!(k.probe_credential("breakglass", &id), Ok(Presence::Held));
        assert_eq!(
            k.probe_credential("example.com", &id),
            Ok(Presence::NotHeld)
        );
        assert_eq!(
            k.probe_credential("breakglass", &[0; 64]),
            Ok(Presence::NotHeld)
        );
        assert_eq!(
            k.hmac_secret("example.com", &id, &salt, None),
            Err(DeviceError::NoCredential)
        );
    }

    #[test]
    fn pin_counters_power_cycle_and_block() {
        let (mut k, id) = enrolled();
        let salt = [0u8; 32];
        let wrong = |k: &mut SoftFido2| k.hmac_secret("breakglass", &id, &salt, Some(&pin("0000")));
        assert_eq!(wrong(&mut k), Err(DeviceError::PinInvalid));
        assert_eq!(wrong(&mut k), Err(DeviceError::PinInvalid));
        assert_eq!(wrong(&mut k), Err(DeviceError::PinAuthBlocked));
        assert_eq!(k.pin_retries().unwrap(), 5);
        // Refused without spending a try, even the right PIN, until a power cycle.
        assert_eq!(
            k.hmac_secret("breakglass", &id, &salt, Some(&pin("1234"))),
            Err(DeviceError::PinAuthBlocked)
        );
        assert_eq!(k.pin_retries().unwrap(), 5);
        k.power_cycle();
        k.hmac_secret("breakglass", &id, &salt, Some(&pin("1234")))
            .unwrap();
        assert_eq!(
            k.pin_retries().unwrap(),
            8,
            "a right PIN restores the tries"
        );
        for round in 0..3 {
            for _ in 0..(if round < 2 { 3 } else { 2 }) {
                let _ = wrong(&mut k);
            }
            k.power_cycle();
        }
        assert_eq!(k.pin_retries().unwrap(), 0);
        assert_eq!(wrong(&mut k), Err(DeviceError::PinBlocked));
        assert_eq!(
            k.hmac_secret("breakglass", &id, &salt, Some(&pin("1234"))),
            Err(DeviceError::PinBlocked)
        );
        // The output without UV needs no PIN and still works.
        assert!(k.hmac_secret("breakglass", &id, &salt, None).is_ok());
    }

    #[test]
    fn keys_without_pin_or_uv_or_hmac_secret() {
        let salt = [0u8; 32];
        let mut none = SoftFido2::without_pin();
        assert_eq!(none.info().unwrap().client_pin, Some(false));
        assert_eq!(
            none.make_credential("breakglass", &[1], &pin("1234")),
            Err(DeviceError::PinNotSet)
        );
        none.set_pin("123").unwrap_err();
        none.set_pin("1234").unwrap();
        assert_eq!(none.info().unwrap().client_pin, Some(true));
        none.set_pin("5678").unwrap_err();

        let mut u2f = SoftFido2::without_uv();
        assert_eq!(u2f.info().unwrap().client_pin, None);
        assert_eq!(u2f.pin_retries(), Err(DeviceError::UvUnsupported));
        assert_eq!(
            u2f.make_credential("breakglass", &[1], &pin("1234")),
            Err(DeviceError::UvUnsupported)
        );
        assert_eq!(
            u2f.hmac_secret("breakglass", &[1], &salt, Some(&pin("1234"))),
            Err(DeviceError::UvUnsupported)
        );

        let mut plain = SoftFido2::with_pin("1234").without_hmac_secret();
        assert!(!plain.info().unwrap().hmac_secret);
        assert_eq!(
            plain.make_credential("breakglass", &[1], &pin("1234")),
            Err(DeviceError::HmacSecretUnsupported)
        );
    }

    #[test]
    fn reset_erases_credentials_and_pin() {
        let (mut k, id) = enrolled();
        k.reset();
        assert_eq!(k.credential_count(), 0);
        assert_eq!(k.probe_credential("breakglass", &id), Ok(Presence::NotHeld));
        assert_eq!(k.info().unwrap().client_pin, Some(false));
        assert_eq!(
            k.hmac_secret("breakglass", &id, &[0; 32], None),
            Err(DeviceError::NoCredential)
        );
    }

    #[test]
    fn an_untouched_key_answers_nothing() {
        let mut k = SoftFido2::with_pin("1234").with_touch(Box::new(|| false));
        assert!(matches!(
            k.make_credential("breakglass", &[1], &pin("1234")),
            Err(DeviceError::Other(_))
        ));
        assert_eq!(k.credential_count(), 0);
        assert!(format!("{k:?}").contains("pin_set: true"));
    }
}
