//! The token's PIV application as the PIV seal factor needs it: serial, PIN, key metadata,
//! generation of a P-256 key with PIN and touch policies, attestation, and ECDH.
//!
//! Two backends implement [`PivCard`]:
//! - [`super::piv_yubikey::YubikeyPiv`], Yubico's protocol as the `yubikey` crate speaks it, for
//!   tokens in PC/SC readers (what `enroll` and `unlock` use);
//! - [`ApduPiv`], the same commands over this crate's [`Transport`], for the in-process soft
//!   token of `breakglass demo` (the `yubikey` crate only talks to PC/SC readers, and the demo
//!   must run on a machine without pcscd). CI checks both against the soft token.

use zeroize::Zeroizing;

use super::apdu::{write_tlv, Command, StatusWord, Tlv};
use super::{transceive, Error, Transport};

/// PIV's application id (NIST SP 800-73).
pub const AID: [u8; 5] = [0xA0, 0x00, 0x00, 0x03, 0x08];
/// Retired key-management slots: the ones a seal key may use (`82` to `95`).
pub const RETIRED_SLOTS: std::ops::RangeInclusive<u8> = 0x82..=0x95;
/// Yubico's PIN policy "always" (GET METADATA, GENERATE, attestation extension): every use of
/// the key needs VERIFY PIN right before it.
pub const PIN_POLICY_ALWAYS: u8 = 3;
/// Yubico's touch policy "always" (same places): every use of the key needs a touch.
pub const TOUCH_POLICY_ALWAYS: u8 = 2;
/// Yubico's default management key (AES-192 from firmware 5.7, 3DES before).
pub const DEFAULT_MGM_KEY: [u8; 24] = [
    1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8,
];

/// The outcome of VERIFY PIN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinCheck {
    /// The PIN is right; the PIN is verified for this session.
    Verified,
    /// The PIN is wrong (`63Cx`).
    Wrong {
        /// Tries left before the PIN blocks (at least 1).
        tries_left: u8,
    },
    /// No PIN tries are left (`63C0` or `6983`); the PUK must unblock it.
    Blocked,
}

/// A key in a PIV slot, from GET METADATA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotKey {
    /// PIV algorithm id (`0x11` = P-256).
    pub algorithm: u8,
    /// Yubico PIN policy ([`PIN_POLICY_ALWAYS`] is 3).
    pub pin_policy: u8,
    /// Yubico touch policy ([`TOUCH_POLICY_ALWAYS`] is 2).
    pub touch_policy: u8,
    /// Uncompressed SEC1 point (P-256: 65 bytes).
    pub public_key: Vec<u8>,
}

/// What the PIV factor asks of a token.
pub trait PivCard {
    /// The token's serial number (Yubico GET SERIAL `F8`).
    fn serial(&mut self) -> Result<u32, Error>;
    /// Firmware version (major, minor, patch).
    fn version(&mut self) -> Result<(u8, u8, u8), Error>;
    /// PIN tries left (VERIFY without data).
    fn pin_retries(&mut self) -> Result<u8, Error>;
    /// VERIFY PIN (padded to 8 bytes with `FF`); a PIN of the wrong length is refused before the
    /// card sees it, so it costs no try.
    fn verify_pin(&mut self, pin: &[u8]) -> Result<PinCheck, Error>;
    /// The key in `slot`, or `None` when the slot is empty.
    fn slot_key(&mut self, slot: u8) -> Result<Option<SlotKey>, Error>;
    /// Authenticates with the default management key (needed to generate).
    fn authenticate_default(&mut self) -> Result<(), Error>;
    /// Generates a P-256 key in `slot` with PIN policy "always" and touch policy "always";
    /// returns its public point.
    fn generate_p256_always(&mut self, slot: u8) -> Result<Vec<u8>, Error>;
    /// The attestation certificate (DER) of `slot`'s key, signed by the F9 key.
    fn attest(&mut self, slot: u8) -> Result<Vec<u8>, Error>;
    /// The F9 attestation certificate (DER), signed by the vendor's attestation CA.
    fn attestation_certificate(&mut self) -> Result<Vec<u8>, Error>;
    /// ECDH of `slot`'s key with `peer` (uncompressed point): the shared X coordinate. Needs
    /// VERIFY PIN immediately before (PIN policy "always") and a touch.
    fn ecdh(&mut self, slot: u8, peer: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error>;
}

mod ins {
    pub const VERIFY: u8 = 0x20;
    pub const GENERATE: u8 = 0x47;
    pub const AUTHENTICATE: u8 = 0x87;
    pub const GET_DATA: u8 = 0xCB;
    pub const GET_METADATA: u8 = 0xF7;
    pub const GET_SERIAL: u8 = 0xF8;
    pub const ATTEST: u8 = 0xF9;
    pub const GET_VERSION: u8 = 0xFD;
}

const ALG_AES192: u8 = 0x0A;
const ALG_P256: u8 = 0x11;
const SLOT_PIN: u8 = 0x80;
const SLOT_MANAGEMENT: u8 = 0x9B;
/// ISO GET RESPONSE, for `61xx` chaining.
const GET_RESPONSE: u8 = 0xC0;

/// PIV over this crate's transport (the in-process soft token).
pub struct ApduPiv<'t> {
    t: &'t mut dyn Transport,
}

impl<'t> ApduPiv<'t> {
    /// SELECTs the PIV application.
    pub fn select(t: &'t mut dyn Transport) -> Result<Self, Error> {
        let mut cmd = Command::new(0x00, 0xA4, 0x04, 0x00);
        cmd.data = Zeroizing::new(AID.to_vec());
        let r = transceive(t, &cmd, GET_RESPONSE, "SELECT PIV")?;
        match r.sw {
            StatusWord::OK => Ok(Self { t }),
            StatusWord::FILE_NOT_FOUND => Err(Error::AppletMissing { applet: "PIV" }),
            sw => Err(Error::Status {
                command: "SELECT PIV",
                sw,
            }),
        }
    }

    fn run(
        &mut self,
        name: &'static str,
        ins: u8,
        p1: u8,
        p2: u8,
        data: &[u8],
    ) -> Result<(Zeroizing<Vec<u8>>, StatusWord), Error> {
        let mut cmd = Command::new(0x00, ins, p1, p2);
        cmd.data = Zeroizing::new(data.to_vec());
        cmd.le = Some(0);
        let r = transceive(self.t, &cmd, GET_RESPONSE, name)?;
        Ok((r.data, r.sw))
    }

    fn ok(
        &mut self,
        name: &'static str,
        ins: u8,
        p1: u8,
        p2: u8,
        data: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        match self.run(name, ins, p1, p2, data)? {
            (d, StatusWord::OK) => Ok(d),
            (_, sw) => Err(Error::Status { command: name, sw }),
        }
    }

    fn malformed(command: &'static str) -> Error {
        Error::Malformed {
            command,
            source: super::apdu::ParseError::BadCommand {
                reason: "unexpected PIV answer",
            },
        }
    }

    /// `7C { items }` of GENERAL AUTHENTICATE.
    fn dynamic_auth(items: &[(u32, &[u8])]) -> Zeroizing<Vec<u8>> {
        let mut inner = Zeroizing::new(Vec::new());
        for (tag, value) in items {
            write_tlv(&mut inner, *tag, value);
        }
        let mut out = Zeroizing::new(Vec::new());
        write_tlv(&mut out, 0x7C, &inner);
        out
    }

    fn dynamic_auth_item(
        data: &[u8],
        tag: u32,
        name: &'static str,
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let outer = Tlv::parse_all(data).map_err(|_| Self::malformed(name))?;
        let inner = Tlv::find(&outer, 0x7C).map_err(|_| Self::malformed(name))?;
        let items = Tlv::parse_all(inner).map_err(|_| Self::malformed(name))?;
        let v = Tlv::find(&items, tag).map_err(|_| Self::malformed(name))?;
        Ok(Zeroizing::new(v.to_vec()))
    }

    fn aes192(block: &mut [u8; 16], encrypt: bool) {
        use aes::cipher::{BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
        let cipher = aes::Aes192::new(&DEFAULT_MGM_KEY.into());
        let b: &mut aes::Block = block.into();
        if encrypt {
            cipher.encrypt_block(b);
        } else {
            cipher.decrypt_block(b);
        }
    }
}

/// The certificate (DER) in a PIV certificate object: `70 cert 71 info FE lrc`, as YubiKeys
/// store every certificate, the F9 attestation certificate included. Bare DER is accepted too.
pub fn certificate_from_object(data: &[u8]) -> Result<Vec<u8>, Error> {
    let bad = |reason: &'static str| Error::Malformed {
        command: "GET DATA (certificate)",
        source: super::apdu::ParseError::BadCommand { reason },
    };
    if data.first() == Some(&0x30) {
        return Ok(data.to_vec());
    }
    let items = Tlv::parse_all(data).map_err(|_| bad("not a certificate object"))?;
    let cert = Tlv::find(&items, 0x70).map_err(|_| bad("no certificate (tag 70)"))?;
    if Tlv::find(&items, 0x71).is_ok_and(|info| info.first() == Some(&0x01)) {
        return Err(bad(
            "the certificate is compressed (gzip), which breakglass does not read",
        ));
    }
    Ok(cert.to_vec())
}

/// A PIV PIN has 6 to 8 characters.
pub fn check_pin_length(pin: &[u8]) -> Result<(), Error> {
    if (6..=8).contains(&pin.len()) {
        Ok(())
    } else {
        Err(Error::InvalidInput {
            what: "PIV PIN",
            reason: format!(
                "a PIV PIN has 6 to 8 characters, this one has {}",
                pin.len()
            ),
        })
    }
}

/// Reads the `SW 63Cx` family of VERIFY.
pub fn pin_check(sw: StatusWord) -> Option<PinCheck> {
    match sw {
        StatusWord::OK => Some(PinCheck::Verified),
        StatusWord::AUTH_METHOD_BLOCKED => Some(PinCheck::Blocked),
        StatusWord(0x63C0) => Some(PinCheck::Blocked),
        StatusWord(sw) if sw & 0xFFF0 == 0x63C0 => Some(PinCheck::Wrong {
            tries_left: (sw & 0x0F) as u8,
        }),
        _ => None,
    }
}

impl PivCard for ApduPiv<'_> {
    fn serial(&mut self) -> Result<u32, Error> {
        let d = self.ok("GET SERIAL", ins::GET_SERIAL, 0, 0, &[])?;
        let b: [u8; 4] = d[..]
            .try_into()
            .map_err(|_| Self::malformed("GET SERIAL"))?;
        Ok(u32::from_be_bytes(b))
    }

    fn version(&mut self) -> Result<(u8, u8, u8), Error> {
        let d = self.ok("GET VERSION", ins::GET_VERSION, 0, 0, &[])?;
        match d[..] {
            [a, b, c] => Ok((a, b, c)),
            _ => Err(Self::malformed("GET VERSION")),
        }
    }

    fn pin_retries(&mut self) -> Result<u8, Error> {
        let (_, sw) = self.run("VERIFY PIN", ins::VERIFY, 0, SLOT_PIN, &[])?;
        match pin_check(sw) {
            Some(PinCheck::Wrong { tries_left }) => Ok(tries_left),
            Some(PinCheck::Blocked) => Ok(0),
            // Already verified in this session: the counter is full.
            Some(PinCheck::Verified) => Ok(3),
            None => Err(Error::Status {
                command: "VERIFY PIN",
                sw,
            }),
        }
    }

    fn verify_pin(&mut self, pin: &[u8]) -> Result<PinCheck, Error> {
        // Checked before the card sees it: a malformed PIN must not cost a try.
        check_pin_length(pin)?;
        // PIV pads the PIN to 8 bytes with 0xFF.
        let mut padded = Zeroizing::new([0xFFu8; 8]);
        padded[..pin.len()].copy_from_slice(pin);
        let (_, sw) = self.run("VERIFY PIN", ins::VERIFY, 0, SLOT_PIN, &padded[..])?;
        pin_check(sw).ok_or(Error::Status {
            command: "VERIFY PIN",
            sw,
        })
    }

    fn slot_key(&mut self, slot: u8) -> Result<Option<SlotKey>, Error> {
        let (d, sw) = self.run("GET METADATA", ins::GET_METADATA, 0, slot, &[])?;
        match sw {
            StatusWord::OK => {}
            StatusWord::REFERENCE_NOT_FOUND => return Ok(None),
            sw => {
                return Err(Error::Status {
                    command: "GET METADATA",
                    sw,
                })
            }
        }
        parse_metadata(&d).map(Some)
    }

    fn authenticate_default(&mut self) -> Result<(), Error> {
        let name = "AUTHENTICATE (management key)";
        let step1 = Self::dynamic_auth(&[(0x80, &[])]);
        let d = self.ok(name, ins::AUTHENTICATE, ALG_AES192, SLOT_MANAGEMENT, &step1)?;
        let w = Self::dynamic_auth_item(&d, 0x80, name)?;
        let mut witness: [u8; 16] = w[..].try_into().map_err(|_| Self::malformed(name))?;
        Self::aes192(&mut witness, false);
        let mut challenge = [0u8; 16];
        crate::secure::Random::fill(&crate::secure::SystemRandom::new(), &mut challenge)
            .map_err(|_| Self::malformed(name))?;
        let step2 = Self::dynamic_auth(&[(0x80, &witness), (0x81, &challenge)]);
        let (d, sw) = self.run(name, ins::AUTHENTICATE, ALG_AES192, SLOT_MANAGEMENT, &step2)?;
        if sw == StatusWord::SECURITY_STATUS_NOT_SATISFIED {
            return Err(Error::InvalidInput {
                what: "PIV management key",
                reason: "the token's management key is not the default one".into(),
            });
        }
        if sw != StatusWord::OK {
            return Err(Error::Status { command: name, sw });
        }
        let answer = Self::dynamic_auth_item(&d, 0x82, name)?;
        Self::aes192(&mut challenge, true);
        if answer[..] != challenge[..] {
            return Err(Error::TokenAuthenticationFailed);
        }
        Ok(())
    }

    fn generate_p256_always(&mut self, slot: u8) -> Result<Vec<u8>, Error> {
        let mut template = Vec::new();
        write_tlv(&mut template, 0x80, &[ALG_P256]);
        write_tlv(&mut template, 0xAA, &[PIN_POLICY_ALWAYS]);
        write_tlv(&mut template, 0xAB, &[TOUCH_POLICY_ALWAYS]);
        let mut data = Vec::new();
        write_tlv(&mut data, 0xAC, &template);
        let d = self.ok("GENERATE", ins::GENERATE, 0, slot, &data)?;
        let outer = Tlv::parse_all(&d).map_err(|_| Self::malformed("GENERATE"))?;
        let inner = Tlv::find(&outer, 0x7F49).map_err(|_| Self::malformed("GENERATE"))?;
        let items = Tlv::parse_all(inner).map_err(|_| Self::malformed("GENERATE"))?;
        let point = Tlv::find(&items, 0x86).map_err(|_| Self::malformed("GENERATE"))?;
        Ok(point.to_vec())
    }

    fn attest(&mut self, slot: u8) -> Result<Vec<u8>, Error> {
        Ok(self.ok("ATTEST", ins::ATTEST, slot, 0, &[])?.to_vec())
    }

    fn attestation_certificate(&mut self) -> Result<Vec<u8>, Error> {
        let mut data = Vec::new();
        write_tlv(&mut data, 0x5C, &[0x5F, 0xFF, 0x01]);
        let d = self.ok("GET DATA (F9)", ins::GET_DATA, 0x3F, 0xFF, &data)?;
        let outer = Tlv::parse_all(&d).map_err(|_| Self::malformed("GET DATA (F9)"))?;
        let object = Tlv::find(&outer, 0x53).map_err(|_| Self::malformed("GET DATA (F9)"))?;
        certificate_from_object(object)
    }

    fn ecdh(&mut self, slot: u8, peer: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        let data = Self::dynamic_auth(&[(0x82, &[]), (0x85, peer)]);
        let (d, sw) = self.run("ECDH", ins::AUTHENTICATE, ALG_P256, slot, &data)?;
        match sw {
            StatusWord::OK => Self::dynamic_auth_item(&d, 0x82, "ECDH"),
            // Right after a good VERIFY, "security status" means the touch was not given.
            StatusWord::SECURITY_STATUS_NOT_SATISFIED => Err(Error::TouchNotGiven),
            sw => Err(Error::Status {
                command: "ECDH",
                sw,
            }),
        }
    }
}

/// GET METADATA of a key slot: `01 alg, 02 pin+touch, 03 origin, 04 { 86 point }`.
pub fn parse_metadata(d: &[u8]) -> Result<SlotKey, Error> {
    let bad = || ApduPiv::malformed("GET METADATA");
    let items = Tlv::parse_all(d).map_err(|_| bad())?;
    let algorithm = *Tlv::find(&items, 0x01)
        .map_err(|_| bad())?
        .first()
        .ok_or_else(bad)?;
    let (pin_policy, touch_policy) = match Tlv::find(&items, 0x02).map_err(|_| bad())? {
        [p, t] => (*p, *t),
        _ => return Err(bad()),
    };
    let key = Tlv::parse_all(Tlv::find(&items, 0x04).map_err(|_| bad())?).map_err(|_| bad())?;
    let public_key = Tlv::find(&key, 0x86).map_err(|_| bad())?.to_vec();
    Ok(SlotKey {
        algorithm,
        pin_policy,
        touch_policy,
        public_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_status_words() {
        assert_eq!(pin_check(StatusWord(0x9000)), Some(PinCheck::Verified));
        assert_eq!(
            pin_check(StatusWord(0x63C2)),
            Some(PinCheck::Wrong { tries_left: 2 })
        );
        assert_eq!(pin_check(StatusWord(0x63C0)), Some(PinCheck::Blocked));
        assert_eq!(pin_check(StatusWord(0x6983)), Some(PinCheck::Blocked));
        assert_eq!(pin_check(StatusWord(0x6A80)), None);
    }

    #[test]
    fn certificate_objects_unwrap() {
        let der = vec![0x30, 0x03, 1, 2, 3];
        let mut object = Vec::new();
        write_tlv(&mut object, 0x70, &der);
        write_tlv(&mut object, 0x71, &[0x00]);
        write_tlv(&mut object, 0xFE, &[]);
        assert_eq!(certificate_from_object(&object).unwrap(), der);
        assert_eq!(certificate_from_object(&der).unwrap(), der, "bare DER");
        let mut gzip = Vec::new();
        write_tlv(&mut gzip, 0x70, &der);
        write_tlv(&mut gzip, 0x71, &[0x01]);
        assert!(certificate_from_object(&gzip).is_err());
        assert!(certificate_from_object(&[0x71, 0x01, 0x00]).is_err());
        assert!(certificate_from_object(&[]).is_err());
    }

    #[test]
    fn metadata_parses_and_rejects_garbage() {
        let mut point = Vec::new();
        write_tlv(&mut point, 0x86, &[4; 65]);
        let mut d = Vec::new();
        write_tlv(&mut d, 0x01, &[0x11]);
        write_tlv(&mut d, 0x02, &[3, 2]);
        write_tlv(&mut d, 0x03, &[1]);
        write_tlv(&mut d, 0x04, &point);
        let k = parse_metadata(&d).unwrap();
        assert_eq!((k.algorithm, k.pin_policy, k.touch_policy), (0x11, 3, 2));
        assert_eq!(k.public_key, vec![4; 65]);
        assert!(parse_metadata(&d[..d.len() - 1]).is_err());
        assert!(parse_metadata(&[0x01, 0x01, 0x11]).is_err());
    }
}
