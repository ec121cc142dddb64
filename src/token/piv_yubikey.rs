//! [`PivCard`] with the `yubikey` crate, for tokens in PC/SC readers.
//!
//! Two quirks of the crate shape this wrapper:
//! - `YubiKey::open` refuses to choose when two cards are present, so the reader is opened by
//!   name (the one the ceremony already chose);
//! - dropping a `YubiKey` disconnects with `SCARD_RESET_CARD`, which would drop the OATH
//!   application's unlocked state that the ceremony still needs; [`YubikeyPiv`] disconnects
//!   with `LeaveCard` instead.

use yubikey::piv::{self, AlgorithmId, RetiredSlotId, SlotId};
use yubikey::{MgmKey, PinPolicy, TouchPolicy, YubiKey};
use zeroize::Zeroizing;

use super::piv::{PinCheck, PivCard, SlotKey};
use super::Error;

/// A token's PIV application through the `yubikey` crate.
pub struct YubikeyPiv {
    yk: Option<YubiKey>,
}

fn refused(command: &'static str) -> impl Fn(yubikey::Error) -> Error {
    move |e| match e {
        yubikey::Error::PcscError { inner: Some(p) } => Error::from(p),
        yubikey::Error::PcscError { inner: None } => Error::PcscUnavailable,
        yubikey::Error::NotFound => Error::AppletMissing { applet: "PIV" },
        other => Error::PivRefused {
            command,
            reason: other.to_string(),
        },
    }
}

fn retired(slot: u8) -> Result<SlotId, Error> {
    RetiredSlotId::try_from(slot)
        .map(SlotId::Retired)
        .map_err(|_| Error::InvalidInput {
            what: "PIV slot",
            reason: format!("{slot:02x} is not a retired key-management slot (82 to 95)"),
        })
}

impl YubikeyPiv {
    /// Opens the PIV application of the token in the reader named exactly `reader`.
    pub fn open(reader: &str) -> Result<Self, Error> {
        let mut ctx = yubikey::reader::Context::open().map_err(refused("open"))?;
        let readers: Vec<_> = ctx.iter().map_err(refused("list readers"))?.collect();
        let Some(found) = readers.iter().find(|r| r.name() == reader) else {
            return Err(Error::ReaderNotFound {
                wanted: reader.to_owned(),
                readers: readers.iter().map(|r| r.name().into_owned()).collect(),
            });
        };
        let yk = found.open().map_err(refused("SELECT PIV"))?;
        Ok(Self { yk: Some(yk) })
    }

    fn yk(&mut self) -> Result<&mut YubiKey, Error> {
        self.yk.as_mut().ok_or(Error::TokenRemoved)
    }
}

impl Drop for YubikeyPiv {
    fn drop(&mut self) {
        if let Some(yk) = self.yk.take() {
            // On failure the crate's own Drop resets the card; nothing else can be done.
            let _ = yk.disconnect(pcsc::Disposition::LeaveCard);
        }
    }
}

impl PivCard for YubikeyPiv {
    fn serial(&mut self) -> Result<u32, Error> {
        Ok(self.yk()?.serial().0)
    }

    fn version(&mut self) -> Result<(u8, u8, u8), Error> {
        let v = self.yk()?.version();
        Ok((v.major, v.minor, v.patch))
    }

    fn pin_retries(&mut self) -> Result<u8, Error> {
        self.yk()?.get_pin_retries().map_err(refused("VERIFY PIN"))
    }

    fn verify_pin(&mut self, pin: &[u8]) -> Result<PinCheck, Error> {
        super::piv::check_pin_length(pin)?;
        match self.yk()?.verify_pin(pin) {
            Ok(()) => Ok(PinCheck::Verified),
            Err(yubikey::Error::WrongPin { tries: 0 }) | Err(yubikey::Error::PinLocked) => {
                Ok(PinCheck::Blocked)
            }
            Err(yubikey::Error::WrongPin { tries }) => Ok(PinCheck::Wrong { tries_left: tries }),
            Err(e) => Err(refused("VERIFY PIN")(e)),
        }
    }

    fn slot_key(&mut self, slot: u8) -> Result<Option<SlotKey>, Error> {
        let id = retired(slot)?;
        let meta = match piv::metadata(self.yk()?, id) {
            Ok(m) => m,
            Err(yubikey::Error::NotFound) => return Ok(None),
            Err(e) => return Err(refused("GET METADATA")(e)),
        };
        let (pin, touch) = meta
            .policy
            .unwrap_or((PinPolicy::Default, TouchPolicy::Default));
        let public_key = meta
            .public
            .map(|spki| spki.subject_public_key.raw_bytes().to_vec())
            .unwrap_or_default();
        let algorithm = match meta.algorithm {
            piv::SlotAlgorithmId::Asymmetric(a) => u8::from(a),
            _ => 0,
        };
        Ok(Some(SlotKey {
            algorithm,
            pin_policy: u8::from(pin),
            touch_policy: u8::from(touch),
            public_key,
        }))
    }

    fn authenticate_default(&mut self) -> Result<(), Error> {
        let yk = self.yk()?;
        let key = MgmKey::get_default(yk).map_err(refused("management key"))?;
        yk.authenticate(&key).map_err(|e| match e {
            yubikey::Error::AuthenticationError => Error::InvalidInput {
                what: "PIV management key",
                reason: "the token's management key is not the default one".into(),
            },
            e => refused("AUTHENTICATE (management key)")(e),
        })
    }

    fn generate_p256_always(&mut self, slot: u8) -> Result<Vec<u8>, Error> {
        let id = retired(slot)?;
        let spki = piv::generate(
            self.yk()?,
            id,
            AlgorithmId::EccP256,
            PinPolicy::Always,
            TouchPolicy::Always,
        )
        .map_err(refused("GENERATE"))?;
        Ok(spki.subject_public_key.raw_bytes().to_vec())
    }

    fn attest(&mut self, slot: u8) -> Result<Vec<u8>, Error> {
        let id = retired(slot)?;
        Ok(piv::attest(self.yk()?, id)
            .map_err(refused("ATTEST"))?
            .to_vec())
    }

    fn attestation_certificate(&mut self) -> Result<Vec<u8>, Error> {
        let object = self
            .yk()?
            .fetch_object(0x5F_FF01)
            .map_err(refused("GET DATA (F9)"))?;
        super::piv::certificate_from_object(&object)
    }

    fn ecdh(&mut self, slot: u8, peer: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        let id = retired(slot)?;
        match piv::decrypt_data(self.yk()?, peer, AlgorithmId::EccP256, id) {
            Ok(shared) => Ok(Zeroizing::new(shared.to_vec())),
            // Right after a good VERIFY, "security status" means the touch was not given.
            Err(yubikey::Error::AuthenticationError) => Err(Error::TouchNotGiven),
            Err(e) => Err(refused("ECDH")(e)),
        }
    }
}
