//! The soft token's OATH application: the YKOATH state machine, answering as a YubiKey 5.
//!
//! Status words follow the real applet as ykman expects them: `6982` while locked (and for a
//! touch not given), `6A80` for a wrong VALIDATE response or bad data, `6984` for an unknown
//! credential, `6A84` when full. A credential with the same id is overwritten by PUT.

use ring::rand::SecureRandom;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::TouchSensor;
use crate::token::apdu::{write_tlv, Command, Response, StatusWord, Tlv};
use crate::token::oath::{ins, tag, Kind, MAX_NAME_LEN, PROP_REQUIRE_TOUCH};
use crate::token::otp::{self, Algorithm};

/// Firmware version the soft applet reports.
pub const VERSION: [u8; 3] = [5, 4, 3];
/// Credentials a YubiKey 5 (before 5.7) holds.
pub const CAPACITY: usize = 32;

struct Credential {
    id: Vec<u8>,
    kind: Kind,
    algorithm: Algorithm,
    digits: u8,
    key: Zeroizing<Vec<u8>>,
    touch: bool,
    counter: u64,
}

/// The applet's persistent state and its per-selection session state.
pub struct Applet {
    salt: [u8; 8],
    access_key: Option<Zeroizing<Vec<u8>>>,
    credentials: Vec<Credential>,
    /// Challenge sent on SELECT while an access key is set and not yet validated.
    pending_challenge: Option<[u8; 8]>,
    validated: bool,
}

impl std::fmt::Debug for Applet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("soft::oath::Applet")
            .field("credentials", &self.credentials.len())
            .field("has_key", &self.access_key.is_some())
            .finish()
    }
}

fn status(sw: StatusWord) -> Response {
    Response::status(sw)
}

fn random8(rng: &dyn SecureRandom) -> [u8; 8] {
    let mut b = [0u8; 8];
    // SystemRandom does not fail on Linux; an all-zero value is still a valid salt.
    let _ = rng.fill(&mut b);
    b
}

impl Applet {
    /// A blank applet: no credentials, no access code, a fresh random salt.
    pub fn new(rng: &dyn SecureRandom) -> Self {
        Self {
            salt: random8(rng),
            access_key: None,
            credentials: Vec::new(),
            pending_challenge: None,
            validated: false,
        }
    }

    fn locked(&self) -> bool {
        self.access_key.is_some() && !self.validated
    }

    /// The card lost power or was reset: authentication is gone.
    pub fn deselect(&mut self) {
        self.validated = false;
        self.pending_challenge = None;
    }

    /// SELECT: version, salt, and a fresh challenge when protected.
    pub fn select(&mut self, rng: &dyn SecureRandom) -> Response {
        self.deselect();
        let mut data = Vec::new();
        write_tlv(&mut data, tag::VERSION, &VERSION);
        write_tlv(&mut data, tag::NAME, &self.salt);
        if self.access_key.is_some() {
            let challenge = random8(rng);
            self.pending_challenge = Some(challenge);
            write_tlv(&mut data, tag::CHALLENGE, &challenge);
            write_tlv(&mut data, tag::ALGORITHM, &[Algorithm::Sha1.code()]);
        }
        Response::new(data, StatusWord::OK)
    }

    /// One command for the selected applet (chaining is the card's job).
    pub fn process(
        &mut self,
        cmd: &Command,
        touch: &dyn TouchSensor,
        rng: &dyn SecureRandom,
    ) -> Response {
        match cmd.ins {
            ins::VALIDATE => return self.validate(cmd),
            ins::RESET => return self.reset(cmd, rng),
            _ if self.locked() => return status(StatusWord::SECURITY_STATUS_NOT_SATISFIED),
            _ => {}
        }
        match cmd.ins {
            ins::PUT => self.put(cmd),
            ins::DELETE => self.delete(cmd),
            ins::SET_CODE => self.set_code(cmd),
            ins::RENAME => self.rename(cmd),
            ins::LIST => self.list(),
            ins::CALCULATE => self.calculate(cmd, touch),
            ins::CALCULATE_ALL => self.calculate_all(cmd),
            _ => status(StatusWord::INS_NOT_SUPPORTED),
        }
    }

    fn validate(&mut self, cmd: &Command) -> Response {
        let (Some(key), Some(challenge)) = (&self.access_key, self.pending_challenge) else {
            return status(StatusWord::NO_SUCH_OBJECT);
        };
        let Ok(list) = Tlv::parse_all(&cmd.data) else {
            return status(StatusWord::WRONG_DATA);
        };
        let (Ok(response), Ok(host_challenge)) = (
            Tlv::find(&list, tag::RESPONSE),
            Tlv::find(&list, tag::CHALLENGE),
        ) else {
            return status(StatusWord::WRONG_DATA);
        };
        let expected = otp::hmac(Algorithm::Sha1, key, &challenge);
        if !bool::from(expected[..].ct_eq(response)) {
            // The challenge stays valid: ykman retries with another key on the same session.
            return status(StatusWord::WRONG_DATA);
        }
        let mut out = Vec::new();
        write_tlv(
            &mut out,
            tag::RESPONSE,
            &otp::hmac(Algorithm::Sha1, key, host_challenge),
        );
        self.validated = true;
        self.pending_challenge = None;
        Response::new(out, StatusWord::OK)
    }

    fn reset(&mut self, cmd: &Command, rng: &dyn SecureRandom) -> Response {
        if (cmd.p1, cmd.p2) != (0xDE, 0xAD) {
            return status(StatusWord::WRONG_P1P2);
        }
        *self = Self::new(rng);
        status(StatusWord::OK)
    }

    fn put(&mut self, cmd: &Command) -> Response {
        let mut name = None;
        let mut key_field = None;
        let mut touch = false;
        let mut imf = 0u64;
        let mut rest: &[u8] = &cmd.data;
        while let Some(&first) = rest.first() {
            if u32::from(first) == tag::PROPERTY {
                // Bare property byte, no length.
                let Some(&prop) = rest.get(1) else {
                    return status(StatusWord::WRONG_DATA);
                };
                touch = prop & PROP_REQUIRE_TOUCH != 0;
                rest = &rest[2..];
                continue;
            }
            let Ok((item, next)) = Tlv::read(rest, 0) else {
                return status(StatusWord::WRONG_DATA);
            };
            match item.tag {
                tag::NAME => name = Some(item.value),
                tag::KEY => key_field = Some(item.value),
                tag::IMF => match <[u8; 4]>::try_from(item.value) {
                    Ok(b) => imf = u64::from(u32::from_be_bytes(b)),
                    Err(_) => return status(StatusWord::WRONG_DATA),
                },
                _ => return status(StatusWord::WRONG_DATA),
            }
            rest = next;
        }
        let (Some(name), Some(key_field)) = (name, key_field) else {
            return status(StatusWord::WRONG_DATA);
        };
        if name.is_empty() || name.len() > MAX_NAME_LEN || key_field.len() < 3 {
            return status(StatusWord::WRONG_DATA);
        }
        let (Some(kind), Some(algorithm)) = (
            Kind::from_code(key_field[0]),
            Algorithm::from_code(key_field[0] & 0x0F),
        ) else {
            return status(StatusWord::WRONG_DATA);
        };
        let digits = key_field[1];
        let key = &key_field[2..];
        if !(6..=8).contains(&digits) || key.len() > algorithm.block_len() {
            return status(StatusWord::WRONG_DATA);
        }
        let credential = Credential {
            id: name.to_vec(),
            kind,
            algorithm,
            digits,
            key: Zeroizing::new(key.to_vec()),
            touch,
            counter: imf,
        };
        if let Some(existing) = self.credentials.iter_mut().find(|c| c.id == name) {
            *existing = credential;
        } else if self.credentials.len() >= CAPACITY {
            return status(StatusWord::NO_SPACE);
        } else {
            self.credentials.push(credential);
        }
        status(StatusWord::OK)
    }

    fn name_arg<'c>(cmd: &'c Command) -> Option<Vec<Tlv<'c>>> {
        Tlv::parse_all(&cmd.data).ok()
    }

    fn delete(&mut self, cmd: &Command) -> Response {
        let Some(list) = Self::name_arg(cmd) else {
            return status(StatusWord::WRONG_DATA);
        };
        let Ok(name) = Tlv::find(&list, tag::NAME) else {
            return status(StatusWord::WRONG_DATA);
        };
        let before = self.credentials.len();
        self.credentials.retain(|c| c.id != name);
        if self.credentials.len() == before {
            return status(StatusWord::NO_SUCH_OBJECT);
        }
        status(StatusWord::OK)
    }

    fn rename(&mut self, cmd: &Command) -> Response {
        let Some(list) = Self::name_arg(cmd) else {
            return status(StatusWord::WRONG_DATA);
        };
        let names: Vec<&[u8]> = list
            .iter()
            .filter(|t| t.tag == tag::NAME)
            .map(|t| t.value)
            .collect();
        let [old, new] = names[..] else {
            return status(StatusWord::WRONG_DATA);
        };
        if new.is_empty()
            || new.len() > MAX_NAME_LEN
            || self.credentials.iter().any(|c| c.id == new)
        {
            return status(StatusWord::WRONG_DATA);
        }
        match self.credentials.iter_mut().find(|c| c.id == old) {
            Some(c) => {
                c.id = new.to_vec();
                status(StatusWord::OK)
            }
            None => status(StatusWord::NO_SUCH_OBJECT),
        }
    }

    fn set_code(&mut self, cmd: &Command) -> Response {
        let Some(list) = Self::name_arg(cmd) else {
            return status(StatusWord::WRONG_DATA);
        };
        let Ok(key_field) = Tlv::find(&list, tag::KEY) else {
            return status(StatusWord::WRONG_DATA);
        };
        if key_field.is_empty() {
            self.access_key = None;
            return status(StatusWord::OK);
        }
        if key_field[0] != (Kind::Totp.code() | Algorithm::Sha1.code()) || key_field.len() < 2 {
            return status(StatusWord::WRONG_DATA);
        }
        let key = &key_field[1..];
        let (Ok(challenge), Ok(response)) = (
            Tlv::find(&list, tag::CHALLENGE),
            Tlv::find(&list, tag::RESPONSE),
        ) else {
            return status(StatusWord::WRONG_DATA);
        };
        // The host proves it computed the key it sends (catches transmission mistakes).
        if !bool::from(otp::hmac(Algorithm::Sha1, key, challenge)[..].ct_eq(response)) {
            return status(StatusWord::WRONG_DATA);
        }
        self.access_key = Some(Zeroizing::new(key.to_vec()));
        self.validated = true;
        status(StatusWord::OK)
    }

    fn list(&self) -> Response {
        let mut out = Vec::new();
        for c in &self.credentials {
            let mut value = vec![c.kind.code() | c.algorithm.code()];
            value.extend_from_slice(&c.id);
            write_tlv(&mut out, tag::NAME_LIST, &value);
        }
        Response::new(out, StatusWord::OK)
    }

    fn respond(c: &Credential, challenge: &[u8], truncate: bool, out: &mut Vec<u8>) {
        let mac = otp::hmac(c.algorithm, &c.key, challenge);
        if truncate {
            let mut v = [0u8; 5];
            v[0] = c.digits;
            v[1..].copy_from_slice(&otp::dynamic_truncate(&mac).to_be_bytes());
            write_tlv(out, tag::TRUNCATED, &v);
        } else {
            let mut v = Zeroizing::new(vec![c.digits]);
            v.extend_from_slice(&mac);
            write_tlv(out, tag::RESPONSE, &v);
        }
    }

    fn calculate(&mut self, cmd: &Command, touch: &dyn TouchSensor) -> Response {
        let Some(list) = Self::name_arg(cmd) else {
            return status(StatusWord::WRONG_DATA);
        };
        let (Ok(name), Ok(challenge)) = (
            Tlv::find(&list, tag::NAME),
            Tlv::find(&list, tag::CHALLENGE),
        ) else {
            return status(StatusWord::WRONG_DATA);
        };
        if challenge.len() > 64 {
            return status(StatusWord::WRONG_DATA);
        }
        let Some(c) = self.credentials.iter_mut().find(|c| c.id == name) else {
            return status(StatusWord::NO_SUCH_OBJECT);
        };
        if c.touch && !touch.wait_for_touch() {
            return status(StatusWord::SECURITY_STATUS_NOT_SATISFIED);
        }
        let counter_bytes;
        let challenge = match c.kind {
            Kind::Totp => challenge,
            Kind::Hotp => {
                counter_bytes = c.counter.to_be_bytes();
                c.counter = c.counter.wrapping_add(1);
                &counter_bytes[..]
            }
        };
        let mut out = Vec::new();
        Self::respond(c, challenge, cmd.p2 & 0x01 != 0, &mut out);
        Response::new(out, StatusWord::OK)
    }

    fn calculate_all(&self, cmd: &Command) -> Response {
        let Some(list) = Self::name_arg(cmd) else {
            return status(StatusWord::WRONG_DATA);
        };
        let Ok(challenge) = Tlv::find(&list, tag::CHALLENGE) else {
            return status(StatusWord::WRONG_DATA);
        };
        let mut out = Vec::new();
        for c in &self.credentials {
            write_tlv(&mut out, tag::NAME, &c.id);
            match (c.kind, c.touch) {
                (Kind::Hotp, _) => write_tlv(&mut out, tag::HOTP, &[c.digits]),
                (Kind::Totp, true) => write_tlv(&mut out, tag::TOUCH, &[c.digits]),
                (Kind::Totp, false) => Self::respond(c, challenge, cmd.p2 & 0x01 != 0, &mut out),
            }
        }
        Response::new(out, StatusWord::OK)
    }
}
