//! The FIDO2 `hmac-secret` factor: `T` is the output of a per-slot FIDO2 credential's
//! `hmac-secret` extension for a per-slot 32-byte salt, computed **with user verification**
//! (the FIDO2 PIN).
//!
//! An authenticator keeps two secrets per credential, `CredRandomWithUV` and
//! `CredRandomWithoutUV`, and answers `HMAC-SHA256(CredRandom…, salt)` with the one that fits
//! whether the request verified the user. The output without UV is therefore a *different*
//! secret that anyone holding the key can get by touching it: enrolment and unlock always send
//! the PIN, so only the UV output ever seals a slot.
//!
//! The device sits behind [`Authenticator`] so that the factor's logic (salt, UV, PIN retries,
//! a missing credential) is tested against the software authenticator in
//! `token::fido2::soft`; `token::fido2::hid` is the USB HID backend (`ctap-hid-fido2`). The
//! device boundary itself ([`Authenticator`], [`DeviceError`]) lives in `token::fido2`.
//!
//! PIN rules of CTAP 2: a key blocks its PIN after 8 wrong tries in total (only a FIDO2 reset,
//! which erases every credential, gets it back), and after 3 wrong tries in a row it refuses
//! further tries until it is unplugged and plugged in again ("power cycle").

use secrecy::SecretString;

use super::factor::{PinEntry, SealFactor};
use super::{Error, FactorKind, SlotInfo};
use crate::secure::{random_bytes, Key32, Random};
pub use crate::token::fido2::{
    Authenticator, DeviceError, Info, Presence, MAX_CREDENTIAL_ID, PIN_TRIES,
    PIN_TRIES_PER_POWER_CYCLE, SALT_LEN,
};

/// The relying party id of breakglass credentials. Not a web origin: no browser ever asks for
/// it, and the id keeps these credentials apart from the holder's web logins on the same key.
pub const RP_ID: &str = "breakglass";
/// The `what` of PIN prompts and PIN errors.
pub const WHAT: &str = "FIDO2";
/// Random user handle of the credential (WebAuthn allows up to 64 bytes). It identifies
/// nothing: the credential is found by its id, which the slot stores.
pub const USER_ID_LEN: usize = 32;
/// The only parameter version this code writes and reads.
pub const PARAMS_VERSION: u8 = 1;
/// The public parameters of a FIDO2 slot (layout in docs/vault-format.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fido2Params {
    /// Relying party id of the credential (`breakglass`); stored so that slots keep working
    /// should a later version use another.
    pub rp_id: String,
    /// The credential id the key returned (for non-discoverable credentials, the key's
    /// wrapped private key: useless without that key).
    pub credential_id: Vec<u8>,
    /// The `hmac-secret` salt (random, per slot).
    pub salt: [u8; SALT_LEN],
    /// AAGUID of the enrolling key's model, to name the model in listings. A FIDO2 key has no
    /// readable serial: the key is recognised by holding the credential, not by this.
    pub aaguid: [u8; 16],
}

impl Fido2Params {
    /// For a relying party id of 1 to 255 bytes and a credential id of 1 to 1023 bytes (what
    /// enrolment makes); anything else does not decode.
    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(4 + self.rp_id.len() + self.credential_id.len() + SALT_LEN + 16);
        out.push(PARAMS_VERSION);
        out.push(self.rp_id.len() as u8);
        out.extend_from_slice(self.rp_id.as_bytes());
        out.extend_from_slice(&(self.credential_id.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.credential_id);
        out.extend_from_slice(&self.salt);
        out.extend_from_slice(&self.aaguid);
        out
    }

    /// Strict: a wrong version, empty or non-UTF-8 relying party, a credential id of 0 or more
    /// than 1023 bytes, or trailing bytes are damage.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let (&version, rest) = bytes.split_first().ok_or(Error::Damaged)?;
        if version != PARAMS_VERSION {
            return Err(Error::Damaged);
        }
        let (&n, rest) = rest.split_first().ok_or(Error::Damaged)?;
        let n = usize::from(n);
        let rp = rest.get(..n).ok_or(Error::Damaged)?;
        let rest = &rest[n..];
        let len = rest.get(..2).ok_or(Error::Damaged)?;
        let c = usize::from(u16::from_be_bytes([len[0], len[1]]));
        let rest = &rest[2..];
        if n == 0 || c == 0 || c > MAX_CREDENTIAL_ID || rest.len() != c + SALT_LEN + 16 {
            return Err(Error::Damaged);
        }
        let (credential_id, rest) = rest.split_at(c);
        let (salt, aaguid) = rest.split_at(SALT_LEN);
        Ok(Self {
            rp_id: std::str::from_utf8(rp)
                .map_err(|_| Error::Damaged)?
                .to_owned(),
            credential_id: credential_id.to_vec(),
            salt: salt.try_into().map_err(|_| Error::Damaged)?,
            aaguid: aaguid.try_into().map_err(|_| Error::Damaged)?,
        })
    }
}

/// The FIDO2 factor over one authenticator; PINs come from `pins`, which is also told when
/// the key waits for a touch.
pub struct Fido2Factor<'a> {
    auth: &'a mut dyn Authenticator,
    pins: &'a mut dyn PinEntry,
    /// The PIN the key accepted in this ceremony: trying several slots asks it once.
    pin: Option<SecretString>,
    /// The verified output of a slot, got while matching it on a key that cannot be probed
    /// silently (the only way such a key tells whether it holds the credential).
    found: Option<(u8, Key32)>,
}

impl<'a> Fido2Factor<'a> {
    /// The factor over `auth`, asking PINs of `pins`; no PIN is asked until a slot needs one.
    pub fn new(auth: &'a mut dyn Authenticator, pins: &'a mut dyn PinEntry) -> Self {
        Self {
            auth,
            pins,
            pin: None,
            found: None,
        }
    }
}

/// What went wrong with a FIDO2 key, in the key's terms. The message says what happened; the
/// binary says what to do next (`src/cli/error.rs`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Fido2Problem {
    /// The key supports a PIN but has none set (breakglass always verifies the FIDO2 PIN).
    #[error("this key has no FIDO2 PIN")]
    NoPinSet,
    /// The key has no `clientPin` at all.
    #[error("this key cannot verify its user with a PIN (it has no FIDO2 PIN support)")]
    NoPinSupport,
    /// The key lacks the `hmac-secret` extension.
    #[error("this key does not support the FIDO2 hmac-secret extension")]
    NoHmacSecret,
    /// Three wrong PINs in a row: no more tries until the key is plugged in again.
    #[error(
        "after {PIN_TRIES_PER_POWER_CYCLE} wrong PINs in a row the key takes no more PIN tries \
         until it is unplugged and plugged in again ({tries_left} {} left before the PIN blocks)",
        if *tries_left == 1 { "try" } else { "tries" }
    )]
    PowerCycle {
        /// PIN tries left in total.
        tries_left: u8,
    },
    /// The key takes no PIN tries until it is plugged in again (it was already in that state).
    #[error("the key takes no more PIN tries until it is unplugged and plugged in again")]
    PinTriesPaused,
    /// The key refused the PIN outside the PIN loop.
    #[error("the key refused the PIN")]
    PinRefused,
    /// The key does not hold the credential of a slot it was matched with.
    #[error(
        "this key does not hold the FIDO2 credential of slot {slot} \"{label}\": it is another \
         key, or this key was reset (a FIDO2 reset erases every credential)"
    )]
    NotHeld {
        /// The slot's id.
        slot: u8,
        /// The slot's label.
        label: String,
    },
    /// The key does not hold the credential asked for.
    #[error("this key does not hold the credential (was it reset?)")]
    NoCredential,
    /// The device could not be found, opened or used.
    #[error(transparent)]
    Device(DeviceError),
}

fn fido2(p: Fido2Problem) -> Error {
    Error::Fido2(p)
}

fn not_held(slot: &SlotInfo) -> Error {
    fido2(Fido2Problem::NotHeld {
        slot: slot.id,
        label: slot.label.clone(),
    })
}

/// The [`Error`] for a device failure outside the PIN loop.
fn device(e: DeviceError) -> Error {
    match e {
        DeviceError::PinInvalid => fido2(Fido2Problem::PinRefused),
        DeviceError::PinAuthBlocked => fido2(Fido2Problem::PinTriesPaused),
        DeviceError::PinBlocked => Error::PinBlocked { what: WHAT },
        DeviceError::PinNotSet => fido2(Fido2Problem::NoPinSet),
        DeviceError::UvUnsupported => fido2(Fido2Problem::NoPinSupport),
        DeviceError::HmacSecretUnsupported => fido2(Fido2Problem::NoHmacSecret),
        DeviceError::NoCredential => fido2(Fido2Problem::NoCredential),
        e => fido2(Fido2Problem::Device(e)),
    }
}

impl From<DeviceError> for Error {
    fn from(e: DeviceError) -> Self {
        device(e)
    }
}

/// The key must be able to verify its user with a PIN, and have one set.
fn require_pin(info: &Info) -> Result<(), Error> {
    match info.client_pin {
        Some(true) => Ok(()),
        Some(false) => Err(fido2(Fido2Problem::NoPinSet)),
        None => Err(fido2(Fido2Problem::NoPinSupport)),
    }
}

/// Runs `op` with the holder's PIN, asking again after a wrong one while the key takes tries.
///
/// - 0 tries left: [`Error::PinBlocked`], nothing asked.
/// - 1 try left: `confirm_last_try` first; declined is [`Error::LastTryDeclined`] with no try
///   spent.
/// - The third wrong PIN in a row ends the asking with [`Error::WrongPin`] (the tries left): the
///   key now wants a power cycle. A key that was already in that state (the tries did not go
///   down) gives an error that says to unplug it.
///
/// `accepted` is the PIN the key took earlier in the ceremony, used before asking; a PIN the
/// key takes is left there.
fn with_pin<T>(
    auth: &mut dyn Authenticator,
    pins: &mut dyn PinEntry,
    accepted: &mut Option<SecretString>,
    why: &str,
    mut op: impl FnMut(&mut dyn Authenticator, &SecretString) -> Result<T, DeviceError>,
) -> Result<T, Error> {
    let mut wrong = 0;
    loop {
        let left = auth.pin_retries().map_err(device)?;
        if left == 0 {
            return Err(Error::PinBlocked { what: WHAT });
        }
        let pin = match accepted.take() {
            Some(pin) => pin,
            None => {
                if left == 1 && !pins.confirm_last_try(WHAT) {
                    return Err(Error::LastTryDeclined { what: WHAT });
                }
                pins.pin(WHAT, left)?
            }
        };
        pins.touch_start(why);
        let result = op(auth, &pin);
        pins.touch_end();
        match result {
            Ok(v) => {
                *accepted = Some(pin);
                return Ok(v);
            }
            Err(DeviceError::PinInvalid) => {
                wrong += 1;
                // The key answers PIN_AUTH_BLOCKED on the third; this bounds the asking should
                // one not.
                if wrong >= PIN_TRIES_PER_POWER_CYCLE {
                    return Err(Error::WrongPin {
                        what: WHAT,
                        tries_left: auth.pin_retries().map_err(device)?,
                    });
                }
            }
            Err(DeviceError::PinBlocked) => return Err(Error::PinBlocked { what: WHAT }),
            Err(DeviceError::PinAuthBlocked) => {
                let now = auth.pin_retries().map_err(device)?;
                return Err(if now < left {
                    Error::WrongPin {
                        what: WHAT,
                        tries_left: now,
                    }
                } else {
                    fido2(Fido2Problem::PowerCycle { tries_left: now })
                });
            }
            Err(e) => return Err(device(e)),
        }
    }
}

impl SealFactor for Fido2Factor<'_> {
    fn kind(&self) -> FactorKind {
        FactorKind::Fido2HmacSecret
    }

    /// Makes a credential (PIN, touch), then asks its `hmac-secret` for a fresh salt with the
    /// same PIN (touch). `T` is that output as is: it is already a uniform 32-byte HMAC-SHA256
    /// value, and the KEK's HKDF mixes it with the passphrase factor anyway.
    fn enroll(&mut self, rng: &dyn Random) -> Result<(Vec<u8>, Key32), Error> {
        let info = self.auth.info().map_err(device)?;
        if !info.hmac_secret {
            return Err(fido2(Fido2Problem::NoHmacSecret));
        }
        require_pin(&info)?;
        let user_id: [u8; USER_ID_LEN] = random_bytes(rng)?;
        let salt: [u8; SALT_LEN] = random_bytes(rng)?;
        let (credential_id, t) = with_pin(
            self.auth,
            self.pins,
            &mut self.pin,
            "create the FIDO2 credential, then derive the slot's secret (two touches)",
            |auth, pin| {
                let id = auth.make_credential(RP_ID, &user_id, pin)?;
                if id.is_empty() || id.len() > MAX_CREDENTIAL_ID {
                    return Err(DeviceError::Other(format!(
                        "the key returned a credential id of {} bytes (expected 1 to \
                         {MAX_CREDENTIAL_ID})",
                        id.len()
                    )));
                }
                let t = auth.hmac_secret(RP_ID, &id, &salt, Some(pin))?;
                Ok((id, t))
            },
        )?;
        let params = Fido2Params {
            rp_id: RP_ID.to_owned(),
            credential_id,
            salt,
            aaguid: info.aaguid,
        };
        Ok((params.encode(), Key32::new(*t)))
    }

    /// A silent probe; on a key that cannot be probed silently, the verified request itself
    /// (PIN, touch), whose output `respond` then hands out without asking again.
    fn matches(&mut self, slot: &SlotInfo) -> Result<bool, Error> {
        let params = Fido2Params::decode(&slot.params)?;
        match self
            .auth
            .probe_credential(&params.rp_id, &params.credential_id)
            .map_err(device)?
        {
            Presence::Held => Ok(true),
            Presence::NotHeld => Ok(false),
            Presence::Unknown => {
                require_pin(&self.auth.info().map_err(device)?)?;
                let why = format!(
                    "find slot {} \"{}\" on this FIDO2 key, which cannot be asked without its \
                     PIN",
                    slot.id, slot.label
                );
                let out = with_pin(self.auth, self.pins, &mut self.pin, &why, |auth, pin| {
                    match auth.hmac_secret(
                        &params.rp_id,
                        &params.credential_id,
                        &params.salt,
                        Some(pin),
                    ) {
                        Ok(t) => Ok(Some(t)),
                        // The PIN was taken (it comes first); the credential is not here.
                        Err(DeviceError::NoCredential) => Ok(None),
                        Err(e) => Err(e),
                    }
                })?;
                Ok(match out {
                    Some(t) => {
                        self.found = Some((slot.id, Key32::new(*t)));
                        true
                    }
                    None => false,
                })
            }
        }
    }

    fn respond(&mut self, slot: &SlotInfo) -> Result<Key32, Error> {
        if let Some((id, t)) = self.found.take() {
            if id == slot.id {
                return Ok(t);
            }
        }
        let params = Fido2Params::decode(&slot.params)?;
        // The credential first: after a reset the key has no PIN either, and "reset" is the
        // message that explains both.
        let presence = self
            .auth
            .probe_credential(&params.rp_id, &params.credential_id)
            .map_err(device)?;
        if presence == Presence::NotHeld {
            return Err(not_held(slot));
        }
        require_pin(&self.auth.info().map_err(device)?)?;
        let t = with_pin(
            self.auth,
            self.pins,
            &mut self.pin,
            "derive the slot's secret with the FIDO2 key",
            |auth, pin| {
                auth.hmac_secret(
                    &params.rp_id,
                    &params.credential_id,
                    &params.salt,
                    Some(pin),
                )
            },
        )
        .map_err(|e| match e {
            // A key that cannot be asked silently tells here.
            Error::Fido2(Fido2Problem::NoCredential) => not_held(slot),
            e => e,
        })?;
        Ok(Key32::new(*t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Fido2Params {
        Fido2Params {
            rp_id: RP_ID.into(),
            credential_id: (0..64).collect(),
            salt: [7; SALT_LEN],
            aaguid: [9; 16],
        }
    }

    #[test]
    fn params_round_trip_and_layout() {
        let p = sample();
        let bytes = p.encode();
        assert_eq!(bytes.len(), 1 + 1 + 10 + 2 + 64 + 32 + 16);
        assert_eq!(&bytes[..2], &[1, 10]);
        assert_eq!(&bytes[2..12], b"breakglass");
        assert_eq!(&bytes[12..14], &[0, 64]);
        assert_eq!(Fido2Params::decode(&bytes).unwrap(), p);
    }

    #[test]
    fn params_decode_is_strict() {
        let good = sample().encode();
        let damaged = |b: &[u8]| matches!(Fido2Params::decode(b), Err(Error::Damaged));
        assert!(damaged(&[]));
        for n in 0..good.len() {
            assert!(damaged(&good[..n]), "truncated to {n}");
        }
        let mut longer = good.clone();
        longer.push(0);
        assert!(damaged(&longer), "trailing byte");
        let mut v2 = good.clone();
        v2[0] = 2;
        assert!(damaged(&v2), "unknown version");
        let mut no_rp = sample();
        no_rp.rp_id.clear();
        assert!(damaged(&no_rp.encode()), "empty relying party");
        let mut no_cred = sample();
        no_cred.credential_id.clear();
        assert!(damaged(&no_cred.encode()), "empty credential id");
        let mut big = sample();
        big.credential_id = vec![1; MAX_CREDENTIAL_ID + 1];
        assert!(damaged(&big.encode()), "credential id over 1023 bytes");
        big.credential_id.pop();
        assert!(
            Fido2Params::decode(&big.encode()).is_ok(),
            "1023 bytes is fine"
        );
        let mut bad_utf8 = good;
        bad_utf8[2] = 0xFF;
        assert!(damaged(&bad_utf8), "relying party not UTF-8");
    }

    proptest! {
        #[test]
        fn params_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1400)) {
            if let Ok(p) = Fido2Params::decode(&bytes) {
                prop_assert_eq!(p.encode(), bytes);
            }
        }
    }
}
