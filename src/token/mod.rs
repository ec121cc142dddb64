//! Hardware tokens: APDU/TLV encoding, the PC/SC transport, the YKOATH and PIV clients, OTP
//! arithmetic, the FIDO2 authenticator over USB HID, and the software token that speaks the same
//! protocols.

pub mod apdu;
pub mod fido2;
pub mod oath;
pub mod otp;
pub mod pcsc;
pub mod piv;
pub mod piv_yubikey;
#[cfg(feature = "sandbox")]
pub mod soft;

use zeroize::Zeroizing;

/// How long a YubiKey blinks before giving up on a touch.
pub const TOUCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

use fido2::{Authenticator, DeviceError};

use apdu::{Command, ParseError, Response, StatusWord};

/// Errors from talking to a token. Messages say what happened; the binary adds what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// pcscd is not running (or not reachable).
    #[error("the smart card service (pcscd) is not running")]
    PcscUnavailable,
    /// pcscd runs but reports no reader at all.
    #[error("no smart card reader is connected")]
    NoReaders,
    /// Readers exist, none holds a token.
    #[error("no token is inserted (readers: {})", join(.readers))]
    NoToken {
        /// The readers pcscd lists, all empty.
        readers: Vec<String>,
    },
    /// `--reader` matched no reader.
    #[error("no reader matches {wanted:?} (readers: {})", join(.readers))]
    ReaderNotFound {
        /// The string given to `--reader`.
        wanted: String,
        /// The readers pcscd lists.
        readers: Vec<String>,
    },
    /// Several readers hold a token and none was chosen.
    #[error("several readers hold a token: {}", join(.readers))]
    SeveralTokens {
        /// The readers that hold a token.
        readers: Vec<String>,
    },
    /// The card went away (pulled, or the virtual card stopped) during a command.
    #[error("the token was removed or stopped answering during the command")]
    TokenRemoved,
    /// Another program reset the card or holds it exclusively.
    #[error("another program is using the token ({0})")]
    TokenBusy(::pcsc::Error),
    /// Any other PC/SC failure.
    #[error("smart card service error: {0}")]
    Pcsc(::pcsc::Error),
    /// The card answered something that is not a valid response.
    #[error("the token sent a malformed answer to {command}: {source}")]
    Malformed {
        /// The command whose answer was malformed (`"CALCULATE"`, `"PUT"`…).
        command: &'static str,
        /// What was wrong with the answer.
        source: ParseError,
    },
    /// The card refused a command with a status word no other variant covers.
    #[error("the token refused {command}: status {sw}")]
    Status {
        /// The command the card refused.
        command: &'static str,
        /// The status word it answered.
        sw: StatusWord,
    },
    /// SELECT of an applet answered "not found".
    #[error("this card has no {applet} application (is it a YubiKey?)")]
    AppletMissing {
        /// The applet's name (`"OATH"`, `"PIV"`).
        applet: &'static str,
    },
    /// The OATH application is protected and the session is not validated.
    #[error("the token's OATH application is protected by an access code")]
    AccessCodeRequired,
    /// VALIDATE failed.
    #[error("the access code is wrong")]
    WrongAccessCode,
    /// The token's answer to our VALIDATE challenge did not match: not the token we talked to.
    #[error("the token failed to prove it knows the access code")]
    TokenAuthenticationFailed,
    /// No OATH account has the name asked for (in the LIST answer, or CALCULATE / DELETE
    /// answered `6984`).
    #[error("no account named {name:?} on the token (accounts: {})", join(.available))]
    AccountNotFound {
        /// The account name asked for.
        name: String,
        /// The account names the token lists.
        available: Vec<String>,
    },
    /// PUT of a new OATH account whose name is already taken (refused before any write).
    #[error("an account named {name:?} already exists on the token")]
    AccountExists {
        /// The account name.
        name: String,
    },
    /// PUT answered `6A84` (not enough memory) or `6F00`: the OATH application is full.
    #[error("the token has no space left for another OATH account")]
    NoSpace,
    /// A touch-required credential was not touched in time (or touch was refused).
    #[error("the token was not touched in time")]
    TouchNotGiven,
    /// The PIV application refused an operation (the `yubikey` crate's reason).
    #[error("the token's PIV application refused {command}: {reason}")]
    PivRefused {
        /// The operation refused (`"GENERATE"`, `"ECDH"`, `"VERIFY PIN"`…).
        command: &'static str,
        /// The `yubikey` crate's error, as text.
        reason: String,
    },
    /// An argument failed validation before any I/O.
    #[error("invalid {what}: {reason}")]
    InvalidInput {
        /// What was checked (`"reader name"`, `"PIV PIN"`…).
        what: &'static str,
        /// Why it was refused.
        reason: String,
    },
}

fn join(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items
            .iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl From<::pcsc::Error> for Error {
    fn from(e: ::pcsc::Error) -> Self {
        use ::pcsc::Error as P;
        match e {
            P::NoService | P::ServiceStopped | P::CommError => Error::PcscUnavailable,
            P::NoReadersAvailable => Error::NoReaders,
            P::RemovedCard
            | P::NoSmartcard
            | P::UnpoweredCard
            | P::UnresponsiveCard
            | P::ReaderUnavailable
            | P::UnknownReader => Error::TokenRemoved,
            P::ResetCard | P::SharingViolation | P::ProtoMismatch => Error::TokenBusy(e),
            other => Error::Pcsc(other),
        }
    }
}

/// Moves raw APDUs to a card and back. Implemented by PC/SC and by the in-process soft token.
pub trait Transport {
    /// Sends one command APDU and returns the raw response (data followed by SW1 SW2).
    fn transmit_raw(&mut self, apdu: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error>;
}

impl<T: Transport + ?Sized> Transport for &mut T {
    fn transmit_raw(&mut self, apdu: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        (**self).transmit_raw(apdu)
    }
}

/// A token as the ceremonies use it: its OATH application (MFA codes, the OATH seal factor)
/// and its PIV application (the PIV seal factor).
///
/// The two are never open at once: a ceremony finishes with PIV before it opens OATH. Over
/// PC/SC the OATH transport is an exclusive transaction, and the `yubikey` crate opens its own
/// connection whose transactions would wait for it.
pub trait Token {
    /// A transport for the OATH application (exclusive while it lives).
    fn oath(&mut self) -> Result<Box<dyn Transport + '_>, Error>;
    /// The PIV application.
    fn piv(&mut self) -> Result<Box<dyn piv::PivCard + '_>, Error>;
    /// The FIDO2 authenticator that goes with this token (USB HID, not PC/SC).
    fn fido2(&mut self) -> Result<Box<dyn Authenticator + '_>, DeviceError> {
        Err(DeviceError::NotPresent {
            what: "no FIDO2 key goes with this token",
        })
    }
}

impl Token for pcsc::Card {
    fn oath(&mut self) -> Result<Box<dyn Transport + '_>, Error> {
        Ok(Box::new(self.transaction()?))
    }

    fn piv(&mut self) -> Result<Box<dyn piv::PivCard + '_>, Error> {
        Ok(Box::new(piv_yubikey::YubikeyPiv::open(self.reader())?))
    }
}

/// What the holders plugged in: a token in a PC/SC reader (OATH, PIV) and the FIDO2 key that
/// goes with it on USB HID. A YubiKey is both at once, but the two are found apart: the card by
/// its reader, the FIDO2 key by its hidraw path, `BREAKGLASS_FIDO2_DEVICE`, or as the only one
/// plugged in. The FIDO2 key is opened only when a FIDO2 slot is used.
#[derive(Debug)]
pub struct Device {
    card: pcsc::Card,
    fido2_path: Option<String>,
}

impl Device {
    /// Connects to the one token selected by `reader` (see [`pcsc::choose_reader`]);
    /// `fido2_path` names the FIDO2 key that goes with it (`--fido2-device`).
    pub fn open(reader: Option<&str>, fido2_path: Option<String>) -> Result<Self, Error> {
        Ok(Self {
            card: pcsc::Card::open(reader)?,
            fido2_path,
        })
    }

    /// The reader the token is in.
    pub fn reader(&self) -> &str {
        self.card.reader()
    }

    /// The FIDO2 key's hidraw path, when one was named.
    pub fn fido2_path(&self) -> Option<&str> {
        self.fido2_path.as_deref()
    }
}

impl Token for Device {
    fn oath(&mut self) -> Result<Box<dyn Transport + '_>, Error> {
        self.card.oath()
    }

    fn piv(&mut self) -> Result<Box<dyn piv::PivCard + '_>, Error> {
        self.card.piv()
    }

    fn fido2(&mut self) -> Result<Box<dyn Authenticator + '_>, DeviceError> {
        let path = self
            .fido2_path
            .clone()
            .or_else(|| std::env::var(fido2::hid::DEVICE_ENV).ok());
        Ok(Box::new(fido2::hid::HidAuthenticator::open(
            path.as_deref(),
        )?))
    }
}

#[cfg(feature = "sandbox")]
impl Token for soft::SoftCard {
    fn oath(&mut self) -> Result<Box<dyn Transport + '_>, Error> {
        Ok(Box::new(self))
    }

    fn piv(&mut self) -> Result<Box<dyn piv::PivCard + '_>, Error> {
        Ok(Box::new(piv::ApduPiv::select(self)?))
    }

    fn fido2(&mut self) -> Result<Box<dyn Authenticator + '_>, DeviceError> {
        match self.fido2_mut() {
            Some(key) => Ok(Box::new(key)),
            None => Err(DeviceError::NotPresent {
                what: "this soft token has no FIDO2 application",
            }),
        }
    }
}

/// Sends `cmd` and follows `61xx` response chaining with `remaining_ins` (YKOATH uses its own
/// SEND REMAINING `A5`; ISO applets use GET RESPONSE `C0`). Returns the joined data and the
/// final status word; `name` labels the command in errors.
pub fn transceive(
    t: &mut dyn Transport,
    cmd: &Command,
    remaining_ins: u8,
    name: &'static str,
) -> Result<Response, Error> {
    let malformed = |source| Error::Malformed {
        command: name,
        source,
    };
    let mut resp = Response::parse(&t.transmit_raw(&cmd.to_bytes())?).map_err(malformed)?;
    let mut data = Zeroizing::new(std::mem::take(&mut *resp.data));
    // A card that never stops chaining would loop forever; 64 KiB is far beyond any applet.
    while resp.sw.more_data().is_some() {
        if data.len() > apdu::EXTENDED_MAX {
            return Err(Error::Malformed {
                command: name,
                source: ParseError::BadCommand {
                    reason: "response chaining exceeded 64 KiB",
                },
            });
        }
        let more = Command::new(0, remaining_ins, 0, 0);
        resp = Response::parse(&t.transmit_raw(&more.to_bytes())?).map_err(malformed)?;
        data.extend_from_slice(&resp.data);
    }
    Ok(Response { data, sw: resp.sw })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A card that answers `parts` chained pieces of 255 bytes (`61 FF`), then `90 00`;
    /// `usize::MAX`: it never stops chaining.
    struct Chaining {
        parts: usize,
        sent: usize,
    }

    impl Transport for Chaining {
        fn transmit_raw(&mut self, _: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
            self.sent += 1;
            let mut out = vec![0xAB; 255];
            out.extend_from_slice(if self.sent < self.parts {
                &[0x61, 0xFF]
            } else {
                &[0x90, 0x00]
            });
            Ok(Zeroizing::new(out))
        }
    }

    #[test]
    fn chained_answers_are_joined_and_a_card_that_never_stops_is_cut_at_64_kib() {
        let cmd = Command::new(0, 0xA1, 0, 0);
        let mut three = Chaining { parts: 3, sent: 0 };
        let r = transceive(&mut three, &cmd, 0xA5, "LIST").unwrap();
        assert_eq!((r.data.len(), three.sent), (3 * 255, 3));
        assert_eq!(r.sw, apdu::StatusWord(0x9000));

        let mut endless = Chaining {
            parts: usize::MAX,
            sent: 0,
        };
        let e = transceive(&mut endless, &cmd, 0xA5, "LIST").unwrap_err();
        assert!(
            e.to_string().contains("response chaining exceeded 64 KiB"),
            "{e}"
        );
        // Stopped just past the cap, not after reading forever.
        assert!(
            endless.sent <= apdu::EXTENDED_MAX / 255 + 2,
            "{}",
            endless.sent
        );
    }
}
