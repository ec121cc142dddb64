//! YKOATH client: Yubico's OATH application (AID `A0 00 00 05 27 21 01`) over any
//! [`Transport`].
//!
//! Protocol quirks kept here, checked against the real applet and ykman:
//! - the touch property is sent as the bare pair `78 02`, without a length byte;
//! - truncated responses carry the digit count first, then the 31-bit dynamic truncation;
//! - `6982` means "validate first" before VALIDATE, and "not touched in time" after it;
//! - a TOTP credential with a period other than 30 s keeps its period only in its name
//!   (`"60/name"`), so CALCULATE ALL computes it with the 30 s challenge and it must be redone.

use std::fmt;
use std::num::NonZeroU32;

use secrecy::{ExposeSecret, SecretBox};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::apdu::{tlv, write_tlv, Command, StatusWord, Tlv};
use super::otp::{self, Algorithm};
use super::{transceive, Error, Transport};

/// The application identifier of YKOATH.
pub const AID: [u8; 7] = [0xA0, 0x00, 0x00, 0x05, 0x27, 0x21, 0x01];
/// The default TOTP period.
pub const DEFAULT_PERIOD: u32 = 30;
/// Longest credential id the applet stores, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// Iterations of PBKDF2-HMAC-SHA1 that turn an access code into an access key.
pub const ACCESS_KEY_ITERATIONS: u32 = 1000;
/// Length of the host and card challenges of VALIDATE / SET CODE.
const CHALLENGE_LEN: usize = 8;

/// TLV tags of YKOATH.
pub mod tag {
    /// Credential id (name with its period prefix), UTF-8.
    pub const NAME: u32 = 0x71;
    /// One entry of a LIST answer: the type/algorithm byte, then the id.
    pub const NAME_LIST: u32 = 0x72;
    /// Key: type/algorithm byte, digits, then the HMAC key (PUT); type/algorithm byte, then the
    /// access key (SET CODE; empty to remove the code).
    pub const KEY: u32 = 0x73;
    /// Challenge: the TOTP time step (CALCULATE, CALCULATE ALL), or a SELECT / VALIDATE / SET
    /// CODE challenge.
    pub const CHALLENGE: u32 = 0x74;
    /// Full response: an HMAC (CALCULATE with P2 `00`, VALIDATE).
    pub const RESPONSE: u32 = 0x75;
    /// Truncated response: digits, then the 31-bit dynamic truncation.
    pub const TRUNCATED: u32 = 0x76;
    /// In CALCULATE ALL: an HOTP credential, not computed (the digit count only).
    pub const HOTP: u32 = 0x77;
    /// Credential property byte; sent as the bare pair `78 02`, without a length.
    pub const PROPERTY: u32 = 0x78;
    /// Applet firmware version (SELECT).
    pub const VERSION: u32 = 0x79;
    /// Initial moving factor: the HOTP counter, big-endian (PUT).
    pub const IMF: u32 = 0x7A;
    /// Algorithm of the access key (SELECT answer).
    pub const ALGORITHM: u32 = 0x7B;
    /// In CALCULATE ALL: a TOTP credential that needs a touch, not computed.
    pub const TOUCH: u32 = 0x7C;
}

/// Instruction bytes of YKOATH.
pub mod ins {
    /// PUT: store a credential.
    pub const PUT: u8 = 0x01;
    /// DELETE a credential by id.
    pub const DELETE: u8 = 0x02;
    /// SET CODE: set or remove the access code.
    pub const SET_CODE: u8 = 0x03;
    /// RESET: wipes every credential and the access code.
    pub const RESET: u8 = 0x04;
    /// RENAME a credential.
    pub const RENAME: u8 = 0x05;
    /// ISO SELECT (with P1 `04`); same byte as CALCULATE ALL, told apart by P1.
    pub const SELECT: u8 = 0xA4;
    /// LIST the credentials.
    pub const LIST: u8 = 0xA1;
    /// CALCULATE one credential.
    pub const CALCULATE: u8 = 0xA2;
    /// VALIDATE: mutual authentication with the access key.
    pub const VALIDATE: u8 = 0xA3;
    /// CALCULATE ALL: every TOTP at one challenge (P1 `00`); same byte as SELECT.
    pub const CALCULATE_ALL: u8 = 0xA4;
    /// SEND REMAINING: YKOATH's own response chaining (not ISO GET RESPONSE `C0`).
    pub const SEND_REMAINING: u8 = 0xA5;
}

/// Credential property: the code needs a touch.
pub const PROP_REQUIRE_TOUCH: u8 = 0x02;
/// Credential property: HOTP counter only increases (unused by breakglass, accepted).
pub const PROP_INCREASING: u8 = 0x01;

/// Credential type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Counter-based (RFC 4226).
    Hotp,
    /// Time-based (RFC 6238).
    Totp,
}

impl Kind {
    /// The type nibble of the type/algorithm byte (`0x10` HOTP, `0x20` TOTP).
    pub fn code(self) -> u8 {
        match self {
            Self::Hotp => 0x10,
            Self::Totp => 0x20,
        }
    }

    /// The kind in the high nibble of a type/algorithm byte; `None` for another value.
    pub fn from_code(code: u8) -> Option<Self> {
        match code & 0xF0 {
            0x10 => Some(Self::Hotp),
            0x20 => Some(Self::Totp),
            _ => None,
        }
    }

    /// `"HOTP"` or `"TOTP"`, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Hotp => "HOTP",
            Self::Totp => "TOTP",
        }
    }
}

/// Firmware version of the applet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u8, pub u8, pub u8);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// The 16-byte key derived from an access code.
pub struct AccessKey(SecretBox<[u8; 16]>);

impl AccessKey {
    /// PBKDF2-HMAC-SHA1, 1000 rounds, with the salt the applet sent on SELECT.
    pub fn derive(access_code: &[u8], salt: &[u8]) -> Self {
        let mut key = Box::new([0u8; 16]);
        ring::pbkdf2::derive(
            ring::pbkdf2::PBKDF2_HMAC_SHA1,
            NonZeroU32::MIN.saturating_add(ACCESS_KEY_ITERATIONS - 1),
            salt,
            access_code,
            &mut key[..],
        );
        Self(SecretBox::new(key))
    }

    fn bytes(&self) -> &[u8] {
        &self.0.expose_secret()[..]
    }
}

/// An OATH seed (the shared secret of a credential).
pub struct Seed(SecretBox<Vec<u8>>);

impl Seed {
    /// Takes the bytes; the buffer moves into a `SecretBox`, no copy is left behind.
    pub fn new(mut bytes: Zeroizing<Vec<u8>>) -> Self {
        // Moves the heap buffer into the box; the emptied `Zeroizing` has nothing left to wipe.
        Self(SecretBox::new(Box::new(std::mem::take(&mut *bytes))))
    }

    /// Decodes base32 (any case, spaces and `=` padding ignored).
    pub fn from_base32(text: &str) -> Result<Self, Error> {
        let cleaned: Zeroizing<String> = Zeroizing::new(
            text.chars()
                .filter(|c| !c.is_whitespace() && *c != '=' && *c != '-')
                .map(|c| c.to_ascii_uppercase())
                .collect(),
        );
        let invalid = |reason: &str| Error::InvalidInput {
            what: "secret",
            reason: reason.to_owned(),
        };
        if cleaned.is_empty() {
            return Err(invalid("it is empty"));
        }
        let decoded = data_encoding::BASE32_NOPAD
            .decode(cleaned.as_bytes())
            .map_err(|_| invalid("it is not base32 (letters A-Z and digits 2-7)"))?;
        Ok(Self::new(Zeroizing::new(decoded)))
    }

    /// `n` random bytes.
    pub fn generate(n: usize, rng: &dyn crate::secure::Random) -> Result<Self, Error> {
        let mut bytes = Zeroizing::new(vec![0u8; n]);
        rng.fill(&mut bytes).map_err(|_| Error::InvalidInput {
            what: "random generator",
            reason: "the system random source failed".into(),
        })?;
        Ok(Self::new(bytes))
    }

    /// The seed as unpadded base32, as authenticator apps show it.
    pub fn to_base32(&self) -> Zeroizing<String> {
        Zeroizing::new(data_encoding::BASE32_NOPAD.encode(self.expose()))
    }

    /// The raw seed bytes.
    pub fn expose(&self) -> &[u8] {
        self.0.expose_secret()
    }

    /// Length of the seed, in bytes.
    pub fn len(&self) -> usize {
        self.expose().len()
    }

    /// True for an empty seed (never valid on a token: see [`MIN_SEED_LEN`]).
    pub fn is_empty(&self) -> bool {
        self.expose().is_empty()
    }
}

/// A one-time code. It is a credential for its window: no `Debug`, wiped on drop.
pub struct Code {
    value: Zeroizing<String>,
    /// First second the code is valid (TOTP), or the time it was made (HOTP).
    pub valid_from: u64,
    /// First second it is no longer valid (`u64::MAX` for HOTP).
    pub valid_to: u64,
}

impl Code {
    /// The code's digits, zero-padded to the credential's length.
    pub fn expose(&self) -> &str {
        &self.value
    }
}

/// A credential as the token lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The id stored on the token (`"60/issuer:name"` for a 60 s TOTP).
    pub id: String,
    /// HOTP or TOTP.
    pub kind: Kind,
    /// Known from LIST; `None` when only CALCULATE ALL was read.
    pub algorithm: Option<Algorithm>,
    /// TOTP period in seconds, from the id's prefix (30 without one); 0 for HOTP.
    pub period: u32,
    /// Known from CALCULATE ALL for TOTP; `None` when the token does not say (HOTP, LIST).
    pub touch: Option<bool>,
}

impl Account {
    fn from_id(id: String, kind: Kind) -> Self {
        let period = match kind {
            Kind::Totp => split_period(&id).0,
            Kind::Hotp => 0,
        };
        Self {
            id,
            kind,
            algorithm: None,
            period,
            touch: None,
        }
    }

    /// The name without the period prefix, as users type it.
    pub fn name(&self) -> &str {
        match self.kind {
            Kind::Totp => split_period(&self.id).1,
            Kind::Hotp => &self.id,
        }
    }
}

/// `"60/name"` → `(60, "name")`; `"name"` → `(30, "name")`.
fn split_period(id: &str) -> (u32, &str) {
    if let Some((p, rest)) = id.split_once('/') {
        if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(period) = p.parse::<u32>() {
                return (period, rest);
            }
        }
    }
    (DEFAULT_PERIOD, id)
}

/// The id a credential is stored under.
pub fn credential_id(name: &str, kind: Kind, period: u32) -> String {
    if kind == Kind::Totp && period != DEFAULT_PERIOD {
        format!("{period}/{name}")
    } else {
        name.to_owned()
    }
}

/// Finds an account by id or by name (the id without its period prefix); exact match only:
/// a break-glass tool must never pick a near namesake.
pub fn find<'a>(accounts: &'a [Account], name: &str) -> Result<&'a Account, Error> {
    accounts
        .iter()
        .find(|a| a.id == name)
        .or_else(|| accounts.iter().find(|a| a.name() == name))
        .ok_or_else(|| Error::AccountNotFound {
            name: name.to_owned(),
            available: accounts.iter().map(|a| a.name().to_owned()).collect(),
        })
}

/// A credential to store.
pub struct NewAccount {
    /// Name without the period prefix (`"issuer:name"`); the id adds `"60/"` for a 60 s TOTP.
    pub name: String,
    /// HOTP or TOTP.
    pub kind: Kind,
    /// HMAC algorithm.
    pub algorithm: Algorithm,
    /// Code length, 6 to 8 ([`DIGITS_RANGE`]).
    pub digits: u8,
    /// TOTP period in seconds ([`PERIOD_RANGE`]); ignored for HOTP.
    pub period: u32,
    /// Codes need a touch (property `02`).
    pub touch: bool,
    /// Initial HOTP counter.
    pub counter: u32,
    /// The shared secret, at least [`MIN_SEED_LEN`] bytes.
    pub seed: Seed,
}

/// Allowed TOTP periods, in seconds.
pub const PERIOD_RANGE: std::ops::RangeInclusive<u32> = 15..=300;
/// Allowed code lengths.
pub const DIGITS_RANGE: std::ops::RangeInclusive<u8> = 6..=8;
/// Shortest seed accepted (80 bits; RFC 4226 asks for at least 128, recommends 160).
pub const MIN_SEED_LEN: usize = 10;

impl NewAccount {
    /// The id it is stored under (see [`credential_id`]).
    pub fn id(&self) -> String {
        credential_id(&self.name, self.kind, self.period)
    }

    /// Checks every field before any I/O.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |what, reason: String| Err(Error::InvalidInput { what, reason });
        if self.name.is_empty() {
            return bad("account name", "it is empty".into());
        }
        if self.name.chars().any(char::is_control) {
            return bad("account name", "it contains control characters".into());
        }
        if self.id().len() > MAX_NAME_LEN {
            return bad(
                "account name",
                format!(
                    "{} bytes with its period prefix; the token stores at most {MAX_NAME_LEN}",
                    self.id().len()
                ),
            );
        }
        if !DIGITS_RANGE.contains(&self.digits) {
            return bad(
                "digits",
                format!("{} is out of range: use 6, 7 or 8", self.digits),
            );
        }
        if self.kind == Kind::Totp && !PERIOD_RANGE.contains(&self.period) {
            return bad(
                "period",
                format!(
                    "{} s is out of range: use {} to {} seconds (30 is standard)",
                    self.period,
                    PERIOD_RANGE.start(),
                    PERIOD_RANGE.end()
                ),
            );
        }
        if self.seed.len() < MIN_SEED_LEN {
            return bad(
                "secret",
                format!(
                    "{} bytes is too short: at least {MIN_SEED_LEN} bytes (16 base32 characters)",
                    self.seed.len()
                ),
            );
        }
        Ok(())
    }
}

/// What CALCULATE ALL says about one account.
pub enum Entry {
    /// A TOTP computed at the CALCULATE ALL challenge.
    Code(Code),
    /// A TOTP credential that needs a touch: not computed, CALCULATE it alone.
    TouchRequired {
        /// Code length.
        digits: u8,
    },
    /// An HOTP credential: not computed (that would move its counter).
    Hotp {
        /// Code length.
        digits: u8,
    },
}

/// An open session with the OATH application.
pub struct Session<'t> {
    transport: &'t mut dyn Transport,
    version: Version,
    salt: Vec<u8>,
    /// The card's pending challenge: `Some` while the session is locked.
    challenge: Option<Vec<u8>>,
    has_key: bool,
}

impl fmt::Debug for Session<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("oath::Session")
            .field("version", &self.version)
            .field("has_key", &self.has_key)
            .field("locked", &self.challenge.is_some())
            .finish()
    }
}

impl<'t> Session<'t> {
    /// SELECTs the applet.
    pub fn select(transport: &'t mut dyn Transport) -> Result<Self, Error> {
        let (version, salt, challenge) = select(transport)?;
        Ok(Self {
            transport,
            version,
            salt,
            has_key: challenge.is_some(),
            challenge,
        })
    }

    /// The applet's firmware version, from SELECT.
    pub fn version(&self) -> Version {
        self.version
    }

    /// True when an access code is set on the token.
    pub fn has_access_code(&self) -> bool {
        self.has_key
    }

    /// True until [`Session::validate`] succeeds on a protected token.
    pub fn is_locked(&self) -> bool {
        self.challenge.is_some()
    }

    /// The salt for [`AccessKey::derive`] (changes on RESET).
    pub fn salt(&self) -> &[u8] {
        &self.salt
    }

    /// A stable id of this applet instance: SHA-256 of the salt, 16 bytes, base64 (as ykman).
    pub fn device_id(&self) -> String {
        let d = ring::digest::digest(&ring::digest::SHA256, &self.salt);
        data_encoding::BASE64_NOPAD.encode(&d.as_ref()[..16])
    }

    fn send(
        &mut self,
        cmd: Command,
        name: &'static str,
    ) -> Result<(Zeroizing<Vec<u8>>, StatusWord), Error> {
        let r = transceive(self.transport, &cmd, ins::SEND_REMAINING, name)?;
        if r.sw == StatusWord::SECURITY_STATUS_NOT_SATISFIED && self.challenge.is_some() {
            return Err(Error::AccessCodeRequired);
        }
        Ok((r.data, r.sw))
    }

    fn send_ok(&mut self, cmd: Command, name: &'static str) -> Result<Zeroizing<Vec<u8>>, Error> {
        match self.send(cmd, name)? {
            (data, StatusWord::OK) => Ok(data),
            (_, sw) => Err(Error::Status { command: name, sw }),
        }
    }

    /// Mutual authentication with the access key: we answer the card's challenge, the card
    /// answers ours, and we check its answer (a token that cannot is not the one we think).
    pub fn validate(
        &mut self,
        key: &AccessKey,
        rng: &dyn crate::secure::Random,
    ) -> Result<(), Error> {
        let Some(card_challenge) = self.challenge.clone() else {
            return Ok(());
        };
        let ours = random_challenge(rng)?;
        let mut data = Zeroizing::new(Vec::new());
        write_tlv(
            &mut data,
            tag::RESPONSE,
            &otp::hmac(Algorithm::Sha1, key.bytes(), &card_challenge),
        );
        write_tlv(&mut data, tag::CHALLENGE, &ours);
        let cmd = Command::new(0, ins::VALIDATE, 0, 0).with_data(data.to_vec());
        let r = transceive(self.transport, &cmd, ins::SEND_REMAINING, "VALIDATE")?;
        match r.sw {
            StatusWord::OK => {}
            StatusWord::WRONG_DATA | StatusWord::SECURITY_STATUS_NOT_SATISFIED => {
                return Err(Error::WrongAccessCode)
            }
            sw => {
                return Err(Error::Status {
                    command: "VALIDATE",
                    sw,
                })
            }
        }
        let list = parse(&r.data, "VALIDATE")?;
        let theirs = Tlv::find(&list, tag::RESPONSE).map_err(|source| Error::Malformed {
            command: "VALIDATE",
            source,
        })?;
        let expected = otp::hmac(Algorithm::Sha1, key.bytes(), &ours);
        if !bool::from(theirs.ct_eq(&expected[..])) {
            return Err(Error::TokenAuthenticationFailed);
        }
        self.challenge = None;
        Ok(())
    }

    /// Derives the access key for this token from an access code and validates with it.
    pub fn unlock(
        &mut self,
        access_code: &[u8],
        rng: &dyn crate::secure::Random,
    ) -> Result<(), Error> {
        let key = AccessKey::derive(access_code, &self.salt);
        self.validate(&key, rng)
    }

    /// Sets (or replaces) the access code. The session stays unlocked.
    pub fn set_access_code(
        &mut self,
        access_code: &[u8],
        rng: &dyn crate::secure::Random,
    ) -> Result<(), Error> {
        let key = AccessKey::derive(access_code, &self.salt);
        let ours = random_challenge(rng)?;
        let mut key_field = Zeroizing::new(vec![Kind::Totp.code() | Algorithm::Sha1.code()]);
        key_field.extend_from_slice(key.bytes());
        let mut data = Zeroizing::new(Vec::new());
        write_tlv(&mut data, tag::KEY, &key_field);
        write_tlv(&mut data, tag::CHALLENGE, &ours);
        write_tlv(
            &mut data,
            tag::RESPONSE,
            &otp::hmac(Algorithm::Sha1, key.bytes(), &ours),
        );
        self.send_ok(
            Command::new(0, ins::SET_CODE, 0, 0).with_data(data.to_vec()),
            "SET CODE",
        )?;
        self.has_key = true;
        Ok(())
    }

    /// Removes the access code.
    pub fn clear_access_code(&mut self) -> Result<(), Error> {
        self.send_ok(
            Command::new(0, ins::SET_CODE, 0, 0).with_data(tlv(tag::KEY, &[]).to_vec()),
            "SET CODE",
        )?;
        self.has_key = false;
        Ok(())
    }

    /// LIST: ids, types and algorithms (touch is not reported by LIST).
    pub fn list(&mut self) -> Result<Vec<Account>, Error> {
        let data = self.send_ok(Command::new(0, ins::LIST, 0, 0), "LIST")?;
        let mut out = Vec::new();
        for item in parse(&data, "LIST")? {
            if item.tag != tag::NAME_LIST || item.value.is_empty() {
                return Err(malformed("LIST", "unexpected element"));
            }
            let kind = Kind::from_code(item.value[0])
                .ok_or_else(|| malformed("LIST", "unknown credential type"))?;
            let mut account =
                Account::from_id(String::from_utf8_lossy(&item.value[1..]).into_owned(), kind);
            account.algorithm = Algorithm::from_code(item.value[0] & 0x0F);
            out.push(account);
        }
        Ok(out)
    }

    /// LIST joined with CALCULATE ALL: every account with type, algorithm and (for TOTP)
    /// whether it needs touch. Computes no HOTP code and needs no touch.
    pub fn accounts(&mut self, unix_seconds: u64) -> Result<Vec<Account>, Error> {
        let mut listed = self.list()?;
        for (account, entry) in self.calculate_all(unix_seconds)? {
            if let Some(l) = listed.iter_mut().find(|l| l.id == account.id) {
                l.touch = match entry {
                    Entry::TouchRequired { .. } => Some(true),
                    Entry::Code(_) => Some(false),
                    Entry::Hotp { .. } => None,
                };
            }
        }
        Ok(listed)
    }

    /// CALCULATE ALL for a time: codes of TOTP accounts that need no touch (non-30 s periods
    /// recomputed), markers for the others.
    pub fn calculate_all(&mut self, unix_seconds: u64) -> Result<Vec<(Account, Entry)>, Error> {
        let challenge = otp::totp_challenge(unix_seconds, DEFAULT_PERIOD);
        let cmd = Command::new(0, ins::CALCULATE_ALL, 0, 0x01)
            .with_data(tlv(tag::CHALLENGE, &challenge).to_vec());
        let data = self.send_ok(cmd, "CALCULATE ALL")?;
        let items = parse(&data, "CALCULATE ALL")?;
        let mut out = Vec::new();
        for pair in items.chunks(2) {
            let [name, resp] = pair else {
                return Err(malformed("CALCULATE ALL", "a name without a response"));
            };
            if name.tag != tag::NAME {
                return Err(malformed("CALCULATE ALL", "expected a name"));
            }
            let id = String::from_utf8_lossy(name.value).into_owned();
            let digits = *resp
                .value
                .first()
                .ok_or_else(|| malformed("CALCULATE ALL", "empty response"))?;
            let (mut account, entry) = match resp.tag {
                tag::HOTP => (Account::from_id(id, Kind::Hotp), Entry::Hotp { digits }),
                tag::TOUCH => {
                    let mut a = Account::from_id(id, Kind::Totp);
                    a.touch = Some(true);
                    (a, Entry::TouchRequired { digits })
                }
                tag::TRUNCATED => {
                    let a = Account::from_id(id, Kind::Totp);
                    let entry = if a.period == DEFAULT_PERIOD {
                        Entry::Code(truncated_code(resp.value, unix_seconds, DEFAULT_PERIOD)?)
                    } else {
                        Entry::Code(self.totp(&a.id, a.period, unix_seconds)?)
                    };
                    (a, entry)
                }
                _ => return Err(malformed("CALCULATE ALL", "unknown response tag")),
            };
            if account.touch.is_none() && account.kind == Kind::Totp {
                account.touch = Some(false);
            }
            out.push((account, entry));
        }
        Ok(out)
    }

    fn calculate(
        &mut self,
        id: &str,
        challenge: &[u8],
        truncate: bool,
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let mut data = Zeroizing::new(Vec::new());
        write_tlv(&mut data, tag::NAME, id.as_bytes());
        write_tlv(&mut data, tag::CHALLENGE, challenge);
        let cmd = Command::new(0, ins::CALCULATE, 0, u8::from(truncate)).with_data(data.to_vec());
        match self.send(cmd, "CALCULATE")? {
            (data, StatusWord::OK) => {
                let list = parse(&data, "CALCULATE")?;
                let want = if truncate {
                    tag::TRUNCATED
                } else {
                    tag::RESPONSE
                };
                let value = Tlv::find(&list, want).map_err(|source| Error::Malformed {
                    command: "CALCULATE",
                    source,
                })?;
                if value.is_empty() {
                    return Err(malformed("CALCULATE", "empty response"));
                }
                Ok(Zeroizing::new(value.to_vec()))
            }
            (_, StatusWord::NO_SUCH_OBJECT) => Err(Error::AccountNotFound {
                name: id.to_owned(),
                available: Vec::new(),
            }),
            // Unlocked session: 6982 is the touch timeout (ykman reads it the same way).
            (_, StatusWord::SECURITY_STATUS_NOT_SATISFIED) => Err(Error::TouchNotGiven),
            (_, sw) => Err(Error::Status {
                command: "CALCULATE",
                sw,
            }),
        }
    }

    /// The TOTP code of `id` for the window containing `unix_seconds`. Blocks until touch for
    /// touch-required accounts.
    pub fn totp(&mut self, id: &str, period: u32, unix_seconds: u64) -> Result<Code, Error> {
        let value = self.calculate(id, &otp::totp_challenge(unix_seconds, period), true)?;
        truncated_code(&value, unix_seconds, period)
    }

    /// The next HOTP code of `id` (advances the token's counter).
    pub fn hotp(&mut self, id: &str, unix_seconds: u64) -> Result<Code, Error> {
        let value = self.calculate(id, &[], true)?;
        let mut code = truncated_code(&value, unix_seconds, 1)?;
        code.valid_from = unix_seconds;
        code.valid_to = u64::MAX;
        Ok(code)
    }

    /// The code of an account for a time, whatever its type.
    pub fn code(&mut self, account: &Account, unix_seconds: u64) -> Result<Code, Error> {
        match account.kind {
            Kind::Totp => self.totp(&account.id, account.period, unix_seconds),
            Kind::Hotp => self.hotp(&account.id, unix_seconds),
        }
    }

    /// The full, untruncated HMAC of `challenge` (at most 64 bytes) under credential `id`.
    pub fn hmac(&mut self, id: &str, challenge: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        if challenge.len() > 64 {
            return Err(Error::InvalidInput {
                what: "challenge",
                reason: "longer than 64 bytes".into(),
            });
        }
        let value = self.calculate(id, challenge, false)?;
        Ok(Zeroizing::new(value[1..].to_vec()))
    }

    /// PUT: stores a credential (the token overwrites a credential with the same id; callers
    /// that must not overwrite check [`Session::list`] first).
    pub fn put(&mut self, account: &NewAccount) -> Result<(), Error> {
        account.validate()?;
        if account.touch && self.version < Version(4, 2, 6) {
            return Err(Error::InvalidInput {
                what: "touch",
                reason: format!(
                    "this token's firmware {} cannot require touch",
                    self.version
                ),
            });
        }
        let id = account.id();
        let key = otp::token_key(account.algorithm, account.seed.expose());
        let mut key_field = Zeroizing::new(vec![
            account.kind.code() | account.algorithm.code(),
            account.digits,
        ]);
        key_field.extend_from_slice(&key);
        let mut data = Zeroizing::new(Vec::new());
        write_tlv(&mut data, tag::NAME, id.as_bytes());
        write_tlv(&mut data, tag::KEY, &key_field);
        if account.touch {
            // Bare tag and value: the applet reads this property without a length byte.
            data.extend_from_slice(&[tag::PROPERTY as u8, PROP_REQUIRE_TOUCH]);
        }
        if account.kind == Kind::Hotp && account.counter > 0 {
            write_tlv(&mut data, tag::IMF, &account.counter.to_be_bytes());
        }
        match self.send(
            Command::new(0, ins::PUT, 0, 0).with_data(data.to_vec()),
            "PUT",
        )? {
            (_, StatusWord::OK) => Ok(()),
            (_, StatusWord::NO_SPACE) | (_, StatusWord::COMMAND_ABORTED) => Err(Error::NoSpace),
            (_, sw) => Err(Error::Status { command: "PUT", sw }),
        }
    }

    /// DELETE a credential by id.
    pub fn delete(&mut self, id: &str) -> Result<(), Error> {
        let cmd =
            Command::new(0, ins::DELETE, 0, 0).with_data(tlv(tag::NAME, id.as_bytes()).to_vec());
        match self.send(cmd, "DELETE")? {
            (_, StatusWord::OK) => Ok(()),
            (_, StatusWord::NO_SUCH_OBJECT) => Err(Error::AccountNotFound {
                name: id.to_owned(),
                available: Vec::new(),
            }),
            (_, sw) => Err(Error::Status {
                command: "DELETE",
                sw,
            }),
        }
    }

    /// RESET: erases every credential and the access code, then reselects.
    pub fn reset(&mut self) -> Result<(), Error> {
        let r = transceive(
            self.transport,
            &Command::new(0, ins::RESET, 0xDE, 0xAD),
            ins::SEND_REMAINING,
            "RESET",
        )?;
        if !r.sw.is_ok() {
            return Err(Error::Status {
                command: "RESET",
                sw: r.sw,
            });
        }
        let (version, salt, challenge) = select(self.transport)?;
        self.version = version;
        self.salt = salt;
        self.has_key = challenge.is_some();
        self.challenge = challenge;
        Ok(())
    }
}

type SelectInfo = (Version, Vec<u8>, Option<Vec<u8>>);

fn select(transport: &mut dyn Transport) -> Result<SelectInfo, Error> {
    let cmd = Command::new(0, ins::SELECT, 0x04, 0x00).with_data(AID.to_vec());
    let r = transceive(transport, &cmd, ins::SEND_REMAINING, "SELECT OATH")?;
    match r.sw {
        StatusWord::OK => {}
        StatusWord::FILE_NOT_FOUND => return Err(Error::AppletMissing { applet: "OATH" }),
        sw => {
            return Err(Error::Status {
                command: "SELECT OATH",
                sw,
            })
        }
    }
    let list = parse(&r.data, "SELECT OATH")?;
    let version = match Tlv::find(&list, tag::VERSION) {
        Ok([a, b, c]) => Version(*a, *b, *c),
        _ => return Err(malformed("SELECT OATH", "no version")),
    };
    let salt = Tlv::find(&list, tag::NAME)
        .map_err(|_| malformed("SELECT OATH", "no salt"))?
        .to_vec();
    let challenge = Tlv::find(&list, tag::CHALLENGE).ok().map(<[u8]>::to_vec);
    Ok((version, salt, challenge))
}

fn parse<'a>(data: &'a [u8], command: &'static str) -> Result<Vec<Tlv<'a>>, Error> {
    Tlv::parse_all(data).map_err(|source| Error::Malformed { command, source })
}

fn malformed(command: &'static str, reason: &'static str) -> Error {
    Error::Malformed {
        command,
        source: super::apdu::ParseError::BadCommand { reason },
    }
}

fn random_challenge(rng: &dyn crate::secure::Random) -> Result<[u8; CHALLENGE_LEN], Error> {
    let mut c = [0u8; CHALLENGE_LEN];
    rng.fill(&mut c).map_err(|_| Error::InvalidInput {
        what: "random generator",
        reason: "the system random source failed".into(),
    })?;
    Ok(c)
}

/// `[digits][4 bytes]` → code valid for the window of `unix_seconds`.
fn truncated_code(value: &[u8], unix_seconds: u64, period: u32) -> Result<Code, Error> {
    let [digits, a, b, c, d] = value else {
        return Err(malformed("CALCULATE", "truncated response is not 5 bytes"));
    };
    if !(1..=10).contains(digits) {
        return Err(malformed("CALCULATE", "digit count out of range"));
    }
    let step = otp::time_step(unix_seconds, period);
    let period = u64::from(period.max(1));
    Ok(Code {
        value: otp::format_code(u32::from_be_bytes([*a, *b, *c, *d]), *digits),
        valid_from: step.saturating_mul(period),
        valid_to: step.saturating_add(1).saturating_mul(period),
    })
}
