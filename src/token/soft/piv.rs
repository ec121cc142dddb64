//! The soft token's PIV application, answering as a YubiKey 5.7 (NIST SP 800-73-4 plus the
//! Yubico extensions) closely enough for the `yubikey` crate and ykman.
//!
//! What it holds: a PIN (default `123456`, 3 tries), a PUK (default `12345678`, 3 tries), an
//! AES-192 management key (the factory default `010203…08` ×3), ECC P-256 keys generated in
//! slots 9A/9C/9D/9E and the retired slots 82–95, data objects written with PUT DATA, and an
//! attestation key (slot F9) whose certificate is signed by a root CA made for this card alone
//! ([`Applet::attestation_root`]; its private key is dropped once it has signed).
//!
//! Status words as a YubiKey: `63Cx` for a wrong PIN/PUK with `x` tries left, `6983` when
//! blocked, `6982` for a missing PIN, management key or touch, `6A80` for bad data, `6A82`
//! for an unknown object, `6A88` for an empty slot, `6B00` for a slot that cannot hold a key.
//!
//! PIN policy "always": the key operation must come right after a successful VERIFY (any other
//! command in between cancels it). Touch policy "always" and "cached" ask the card's
//! [`TouchSensor`] on every use (no caching).

use std::collections::BTreeMap;

use aes::cipher::{BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use p256::ecdsa::SigningKey;
use p256::elliptic_curve::sec1::ToSec1Point;
use p256::{PublicKey, SecretKey};
use ring::rand::SecureRandom;
use subtle::ConstantTimeEq;
use x509_cert::der::Encode;
use zeroize::Zeroizing;

use super::cert::{
    ca_extensions, cert_err, CERT_LIFETIME, OID_YK_FIRMWARE, OID_YK_FORM_FACTOR, OID_YK_POLICY,
    OID_YK_SERIAL,
};
pub use super::cert::{extension, issue_certificate, CertError};
use super::TouchSensor;
use crate::token::apdu::{write_tlv, Command, Response, StatusWord, Tlv};

/// The PIV application identifier (NIST RID and PIX prefix).
pub const AID: [u8; 5] = [0xA0, 0x00, 0x00, 0x03, 0x08];
/// Firmware version the soft applet reports (5.7: AES-192 default management key).
pub const VERSION: [u8; 3] = [5, 7, 1];
/// The factory default management key.
pub const DEFAULT_MGM_KEY: [u8; 24] = [
    1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8,
];
/// The factory default PIN.
pub const DEFAULT_PIN: &[u8] = b"123456";
/// The factory default PUK.
pub const DEFAULT_PUK: &[u8] = b"12345678";
/// PIN and PUK tries.
pub const MAX_TRIES: u8 = 3;
/// GET DATA object holding the attestation (slot F9) certificate.
pub const OBJ_ATTESTATION: u32 = 0x5F_FF01;

/// Instructions.
pub mod ins {
    /// VERIFY the PIN (no data: ask the tries left).
    pub const VERIFY: u8 = 0x20;
    /// CHANGE REFERENCE DATA: change the PIN or PUK.
    pub const CHANGE_REFERENCE: u8 = 0x24;
    /// RESET RETRY COUNTER: unblock the PIN with the PUK.
    pub const RESET_RETRY: u8 = 0x2C;
    /// GENERATE ASYMMETRIC KEY PAIR.
    pub const GENERATE: u8 = 0x47;
    /// GENERAL AUTHENTICATE: management-key challenge-response, or ECDH with a slot's key.
    pub const AUTHENTICATE: u8 = 0x87;
    /// GET DATA of an object.
    pub const GET_DATA: u8 = 0xCB;
    /// PUT DATA of an object.
    pub const PUT_DATA: u8 = 0xDB;
    /// Yubico GET METADATA of a slot.
    pub const GET_METADATA: u8 = 0xF7;
    /// Yubico GET SERIAL.
    pub const GET_SERIAL: u8 = 0xF8;
    /// Yubico ATTEST: certificate of a generated key, signed by slot F9.
    pub const ATTEST: u8 = 0xF9;
    /// Yubico GET VERSION.
    pub const GET_VERSION: u8 = 0xFD;
    /// Yubico SET MANAGEMENT KEY.
    pub const SET_MGM_KEY: u8 = 0xFF;
}

/// Algorithm identifiers.
pub mod alg {
    /// AES-128 management key.
    pub const AES128: u8 = 0x08;
    /// AES-192 management key (the default from firmware 5.7).
    pub const AES192: u8 = 0x0A;
    /// AES-256 management key.
    pub const AES256: u8 = 0x0C;
    /// ECC P-256 key.
    pub const ECC_P256: u8 = 0x11;
}

/// Key references.
pub mod slot {
    /// The PIN.
    pub const PIN: u8 = 0x80;
    /// The PUK.
    pub const PUK: u8 = 0x81;
    /// The management key.
    pub const MANAGEMENT: u8 = 0x9B;
    /// 9A, PIV authentication.
    pub const AUTHENTICATION: u8 = 0x9A;
    /// 9C, digital signature.
    pub const SIGNATURE: u8 = 0x9C;
    /// 9D, key management.
    pub const KEY_MANAGEMENT: u8 = 0x9D;
    /// 9E, card authentication.
    pub const CARD_AUTH: u8 = 0x9E;
    /// F9, the attestation key.
    pub const ATTESTATION: u8 = 0xF9;

    /// Slots that can hold a generated key.
    pub fn is_key_slot(s: u8) -> bool {
        matches!(s, 0x9A | 0x9C | 0x9D | 0x9E | 0x82..=0x95)
    }
}

/// PIN policy values (tag AA).
pub mod pin_policy {
    /// The slot's default: "always" for 9C, "never" for 9E, "once" elsewhere.
    pub const DEFAULT: u8 = 0;
    /// Never asks for the PIN.
    pub const NEVER: u8 = 1;
    /// PIN once per session.
    pub const ONCE: u8 = 2;
    /// PIN before every use.
    pub const ALWAYS: u8 = 3;
}

/// Touch policy values (tag AB).
pub mod touch_policy {
    /// The slot's default: "never".
    pub const DEFAULT: u8 = 0;
    /// Never asks for a touch.
    pub const NEVER: u8 = 1;
    /// A touch for every use.
    pub const ALWAYS: u8 = 2;
    /// A touch, cached for 15 s on a YubiKey; this soft token asks on every use.
    pub const CACHED: u8 = 3;
}

/// A management key (AES only: 3DES is not offered by this soft token).
struct MgmKey {
    algorithm: u8,
    key: Zeroizing<Vec<u8>>,
}

impl MgmKey {
    fn crypt(&self, block: &mut [u8; 16], encrypt: bool) -> bool {
        fn run<C>(key: &[u8], block: &mut [u8; 16], encrypt: bool) -> bool
        where
            C: KeyInit
                + BlockCipherEncrypt
                + BlockCipherDecrypt
                + aes::cipher::BlockSizeUser<BlockSize = aes::cipher::consts::U16>,
        {
            let Ok(c) = C::new_from_slice(key) else {
                return false;
            };
            let Ok(b) = <&mut aes::cipher::Block<C>>::try_from(&mut block[..]) else {
                return false;
            };
            if encrypt {
                c.encrypt_block(b);
            } else {
                c.decrypt_block(b);
            }
            true
        }
        match self.algorithm {
            alg::AES128 => run::<aes::Aes128>(&self.key, block, encrypt),
            alg::AES192 => run::<aes::Aes192>(&self.key, block, encrypt),
            alg::AES256 => run::<aes::Aes256>(&self.key, block, encrypt),
            _ => false,
        }
    }

    fn key_len(algorithm: u8) -> Option<usize> {
        match algorithm {
            alg::AES128 => Some(16),
            alg::AES192 => Some(24),
            alg::AES256 => Some(32),
            _ => None,
        }
    }
}

/// A key in a slot. `SecretKey` zeroizes itself on drop.
struct SlotKey {
    secret: SecretKey,
    pin_policy: u8,
    touch_policy: u8,
}

/// A PIN or PUK with its retry counter.
struct Reference {
    value: Zeroizing<[u8; 8]>,
    tries: u8,
    default: bool,
}

impl Reference {
    fn new(value: &[u8]) -> Self {
        Self {
            value: Zeroizing::new(pad8(value).unwrap_or([0xFF; 8])),
            tries: MAX_TRIES,
            default: true,
        }
    }

    /// Checks an 8-byte padded value; `Err` is the status word to answer.
    fn check(&mut self, given: &[u8]) -> Result<(), StatusWord> {
        if self.tries == 0 {
            return Err(StatusWord::AUTH_METHOD_BLOCKED);
        }
        if given.len() == 8 && bool::from(self.value[..].ct_eq(given)) {
            self.tries = MAX_TRIES;
            return Ok(());
        }
        self.tries -= 1;
        Err(tries_left(self.tries))
    }
}

fn tries_left(tries: u8) -> StatusWord {
    StatusWord::from_bytes(0x63, 0xC0 | tries.min(0x0F))
}

/// A PIN/PUK as sent on the wire: 6–8 bytes padded with FF.
fn pad8(v: &[u8]) -> Option<[u8; 8]> {
    if v.len() > 8 {
        return None;
    }
    let mut out = [0xFF; 8];
    out[..v.len()].copy_from_slice(v);
    Some(out)
}

/// A padded value is acceptable as a new PIN/PUK: 6 to 8 bytes before the padding.
fn valid_new_reference(v: &[u8]) -> bool {
    let len = v.iter().position(|&b| b == 0xFF).unwrap_or(v.len());
    v.len() == 8 && (6..=8).contains(&len) && v[len..].iter().all(|&b| b == 0xFF)
}

fn status(sw: StatusWord) -> Response {
    Response::status(sw)
}

/// A fresh P-256 key from the card's RNG.
fn generate_secret(rng: &dyn SecureRandom) -> SecretKey {
    loop {
        let mut bytes = Zeroizing::new([0u8; 32]);
        // SystemRandom does not fail on Linux; a failed fill gives an all-zero (invalid) scalar
        // and another round.
        let _ = rng.fill(&mut bytes[..]);
        if let Ok(k) = SecretKey::from_slice(&bytes[..]) {
            return k;
        }
    }
}

fn uncompressed_point(public: &PublicKey) -> Vec<u8> {
    public.as_affine().to_sec1_point(false).as_bytes().to_vec()
}

/// The Yubico public-key template: `7F49 { 86 point }`.
fn public_key_template(public: &PublicKey) -> Vec<u8> {
    let mut inner = Vec::new();
    write_tlv(&mut inner, 0x86, &uncompressed_point(public));
    let mut out = Vec::new();
    write_tlv(&mut out, 0x7F49, &inner);
    out
}

/// The applet's persistent state and its per-selection session state.
pub struct Applet {
    serial: u32,
    pin: Reference,
    puk: Reference,
    mgm: MgmKey,
    keys: BTreeMap<u8, SlotKey>,
    objects: BTreeMap<u32, Vec<u8>>,
    attestation_key: SigningKey,
    attestation_cert: Vec<u8>,
    root_cert: Vec<u8>,
    // Session state, lost on SELECT and reset.
    pin_verified: bool,
    /// The previous command was a successful VERIFY (for PIN policy "always").
    pin_just_verified: bool,
    mgm_authenticated: bool,
    /// Witness sent in step one of mutual authentication.
    witness: Option<Zeroizing<[u8; 16]>>,
}

impl std::fmt::Debug for Applet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("soft::piv::Applet")
            .field("serial", &self.serial)
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .field("pin_tries", &self.pin.tries)
            .finish()
    }
}

impl Applet {
    /// A factory-fresh applet with a new attestation key and sandbox root CA.
    pub fn new(rng: &dyn SecureRandom) -> Result<Self, CertError> {
        let mut s = [0u8; 4];
        let _ = rng.fill(&mut s);
        // Eight decimal digits, like a YubiKey 5 serial.
        let serial = 10_000_000 + u32::from_be_bytes(s) % 90_000_000;

        let root_secret = generate_secret(rng);
        let root_key = SigningKey::from(&root_secret);
        let root_name = format!("CN=Breakglass Sandbox PIV Root CA {serial},O=breakglass sandbox");
        let root_cert = issue_certificate(
            rng,
            &root_name,
            &root_name,
            &root_secret.public_key(),
            ca_extensions()?,
            &root_key,
            CERT_LIFETIME,
        )?;
        let attestation_secret = generate_secret(rng);
        let attestation_cert = issue_certificate(
            rng,
            &root_name,
            &Self::attestation_name(serial),
            &attestation_secret.public_key(),
            ca_extensions()?,
            &root_key,
            CERT_LIFETIME,
        )?;
        // The root key signs nothing else: it is dropped (and zeroized) here.
        drop(root_key);
        drop(root_secret);
        Ok(Self {
            serial,
            pin: Reference::new(DEFAULT_PIN),
            puk: Reference::new(DEFAULT_PUK),
            mgm: MgmKey {
                algorithm: alg::AES192,
                key: Zeroizing::new(DEFAULT_MGM_KEY.to_vec()),
            },
            keys: BTreeMap::new(),
            objects: BTreeMap::new(),
            attestation_key: SigningKey::from(&attestation_secret),
            attestation_cert,
            root_cert,
            pin_verified: false,
            pin_just_verified: false,
            mgm_authenticated: false,
            witness: None,
        })
    }

    fn attestation_name(serial: u32) -> String {
        format!("CN=Breakglass Sandbox PIV Attestation {serial},O=breakglass sandbox")
    }

    /// The serial number the applet reports.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// The sandbox attestation root certificate (DER): the trust anchor of this card only.
    pub fn attestation_root(&self) -> &[u8] {
        &self.root_cert
    }

    /// The attestation (slot F9) certificate (DER), signed by the root.
    pub fn attestation_certificate(&self) -> &[u8] {
        &self.attestation_cert
    }

    /// The card lost power or was reset, or another applet was selected.
    pub fn deselect(&mut self) {
        self.pin_verified = false;
        self.pin_just_verified = false;
        self.mgm_authenticated = false;
        self.witness = None;
    }

    /// SELECT: the application property template.
    pub fn select(&mut self) -> Response {
        self.deselect();
        let mut alloc = Vec::new();
        write_tlv(&mut alloc, 0x4F, &AID);
        let mut inner = Vec::new();
        write_tlv(&mut inner, 0x4F, &[0x00, 0x00, 0x10, 0x00, 0x01, 0x00]);
        write_tlv(&mut inner, 0x79, &alloc);
        let mut data = Vec::new();
        write_tlv(&mut data, 0x61, &inner);
        Response::new(data, StatusWord::OK)
    }

    /// One command for the selected applet (chaining is the card's job).
    pub fn process(
        &mut self,
        cmd: &Command,
        touch: &dyn TouchSensor,
        rng: &dyn SecureRandom,
    ) -> Response {
        // PIN policy "always" allows exactly the command after the VERIFY.
        let just_verified = std::mem::take(&mut self.pin_just_verified);
        if cmd.ins != ins::AUTHENTICATE || cmd.p2 != slot::MANAGEMENT {
            self.witness = None;
        }
        match cmd.ins {
            ins::GET_VERSION => Response::new(VERSION.to_vec(), StatusWord::OK),
            ins::GET_SERIAL => Response::new(self.serial.to_be_bytes().to_vec(), StatusWord::OK),
            ins::VERIFY => self.verify(cmd),
            ins::CHANGE_REFERENCE => self.change_reference(cmd),
            ins::RESET_RETRY => self.reset_retry(cmd),
            ins::AUTHENTICATE if cmd.p2 == slot::MANAGEMENT => self.mgm_authenticate(cmd, rng),
            ins::AUTHENTICATE => self.key_operation(cmd, touch, just_verified),
            ins::GENERATE => self.generate(cmd, rng),
            ins::GET_DATA => self.get_data(cmd),
            ins::PUT_DATA => self.put_data(cmd),
            ins::GET_METADATA => self.metadata(cmd),
            ins::ATTEST => self.attest(cmd, rng),
            ins::SET_MGM_KEY => self.set_mgm_key(cmd),
            _ => status(StatusWord::INS_NOT_SUPPORTED),
        }
    }

    fn verify(&mut self, cmd: &Command) -> Response {
        if cmd.p2 != slot::PIN {
            return status(StatusWord::REFERENCE_NOT_FOUND);
        }
        match (cmd.p1, cmd.data.is_empty()) {
            // Yubico extension: forget the verification.
            (0xFF, true) => {
                self.pin_verified = false;
                status(StatusWord::OK)
            }
            (0x00, true) if self.pin.tries == 0 => status(StatusWord::AUTH_METHOD_BLOCKED),
            (0x00, true) if self.pin_verified => status(StatusWord::OK),
            (0x00, true) => status(tries_left(self.pin.tries)),
            (0x00, false) => match self.pin.check(&cmd.data) {
                Ok(()) => {
                    self.pin_verified = true;
                    self.pin_just_verified = true;
                    status(StatusWord::OK)
                }
                Err(sw) => {
                    self.pin_verified = false;
                    status(sw)
                }
            },
            _ => status(StatusWord::WRONG_P1P2),
        }
    }

    /// CHANGE REFERENCE for the PIN (P2 80) or PUK (P2 81): old ‖ new, each padded to 8.
    fn change_reference(&mut self, cmd: &Command) -> Response {
        if cmd.data.len() != 16 || !valid_new_reference(&cmd.data[8..]) {
            return status(StatusWord::WRONG_DATA);
        }
        let reference = match cmd.p2 {
            slot::PIN => &mut self.pin,
            slot::PUK => &mut self.puk,
            _ => return status(StatusWord::REFERENCE_NOT_FOUND),
        };
        if let Err(sw) = reference.check(&cmd.data[..8]) {
            return status(sw);
        }
        reference.value.copy_from_slice(&cmd.data[8..]);
        reference.default = false;
        status(StatusWord::OK)
    }

    /// RESET RETRY COUNTER: PUK ‖ new PIN unblocks the PIN.
    fn reset_retry(&mut self, cmd: &Command) -> Response {
        if cmd.p2 != slot::PIN {
            return status(StatusWord::REFERENCE_NOT_FOUND);
        }
        if cmd.data.len() != 16 || !valid_new_reference(&cmd.data[8..]) {
            return status(StatusWord::WRONG_DATA);
        }
        if let Err(sw) = self.puk.check(&cmd.data[..8]) {
            return status(sw);
        }
        self.pin.value.copy_from_slice(&cmd.data[8..]);
        self.pin.tries = MAX_TRIES;
        self.pin.default = false;
        status(StatusWord::OK)
    }

    /// The dynamic authentication template `7C { … }` of a GENERAL AUTHENTICATE.
    fn dyn_auth(cmd: &Command) -> Option<Vec<Tlv<'_>>> {
        let outer = Tlv::parse_all(&cmd.data).ok()?;
        let [t] = outer[..] else { return None };
        if t.tag != 0x7C {
            return None;
        }
        Tlv::parse_all(t.value).ok()
    }

    /// Mutual authentication with the management key: step one sends an encrypted witness;
    /// step two checks the decrypted witness and answers the host's challenge.
    fn mgm_authenticate(&mut self, cmd: &Command, rng: &dyn SecureRandom) -> Response {
        let witness = self.witness.take();
        if cmd.p1 != self.mgm.algorithm {
            return status(StatusWord::WRONG_DATA);
        }
        let Some(items) = Self::dyn_auth(cmd) else {
            return status(StatusWord::WRONG_DATA);
        };
        let (Ok(w), challenge) = (Tlv::find(&items, 0x80), Tlv::find(&items, 0x81)) else {
            return status(StatusWord::WRONG_DATA);
        };
        if w.is_empty() {
            self.mgm_authenticated = false;
            let mut plain = Zeroizing::new([0u8; 16]);
            let _ = rng.fill(&mut plain[..]);
            let mut block = *plain;
            if !self.mgm.crypt(&mut block, true) {
                return status(StatusWord::WRONG_DATA);
            }
            self.witness = Some(plain);
            let mut inner = Vec::new();
            write_tlv(&mut inner, 0x80, &block);
            let mut out = Vec::new();
            write_tlv(&mut out, 0x7C, &inner);
            return Response::new(out, StatusWord::OK);
        }
        let Some(expected) = witness else {
            return status(StatusWord::CONDITIONS_NOT_SATISFIED);
        };
        let Ok(challenge) = challenge else {
            return status(StatusWord::WRONG_DATA);
        };
        if !bool::from(expected[..].ct_eq(w)) {
            return status(StatusWord::SECURITY_STATUS_NOT_SATISFIED);
        }
        let Ok(mut block) = <[u8; 16]>::try_from(challenge) else {
            return status(StatusWord::WRONG_DATA);
        };
        if !self.mgm.crypt(&mut block, true) {
            return status(StatusWord::WRONG_DATA);
        }
        self.mgm_authenticated = true;
        let mut inner = Vec::new();
        write_tlv(&mut inner, 0x82, &block);
        let mut out = Vec::new();
        write_tlv(&mut out, 0x7C, &inner);
        Response::new(out, StatusWord::OK)
    }

    /// GENERAL AUTHENTICATE with a slot key: ECDH (tag 85) or ECDSA of a prehash (tag 81).
    fn key_operation(
        &mut self,
        cmd: &Command,
        touch: &dyn TouchSensor,
        just_verified: bool,
    ) -> Response {
        let Some(key) = self.keys.get(&cmd.p2) else {
            return status(StatusWord::REFERENCE_NOT_FOUND);
        };
        if cmd.p1 != alg::ECC_P256 {
            return status(StatusWord::WRONG_DATA);
        }
        let Some(items) = Self::dyn_auth(cmd) else {
            return status(StatusWord::WRONG_DATA);
        };
        if Tlv::find(&items, 0x82).is_err() {
            return status(StatusWord::WRONG_DATA);
        }
        let allowed = match key.pin_policy {
            pin_policy::NEVER => true,
            pin_policy::ALWAYS => just_verified,
            _ => self.pin_verified,
        };
        if !allowed {
            return status(StatusWord::SECURITY_STATUS_NOT_SATISFIED);
        }
        let result: Zeroizing<Vec<u8>> = if let Ok(point) = Tlv::find(&items, 0x85) {
            let Ok(peer) = PublicKey::from_sec1_bytes(point) else {
                return status(StatusWord::WRONG_DATA);
            };
            if key.touch_policy != touch_policy::NEVER && !touch.wait_for_touch() {
                return status(StatusWord::SECURITY_STATUS_NOT_SATISFIED);
            }
            let shared = key.secret.diffie_hellman(&peer);
            Zeroizing::new(shared.raw_secret_bytes().to_vec())
        } else if let Ok(digest) = Tlv::find(&items, 0x81) {
            use p256::ecdsa::signature::hazmat::PrehashSigner;
            if digest.is_empty() || digest.len() > 32 {
                return status(StatusWord::WRONG_DATA);
            }
            if key.touch_policy != touch_policy::NEVER && !touch.wait_for_touch() {
                return status(StatusWord::SECURITY_STATUS_NOT_SATISFIED);
            }
            let mut prehash = [0u8; 32];
            prehash[32 - digest.len()..].copy_from_slice(digest);
            let signer = SigningKey::from(&key.secret);
            let sig: Result<p256::ecdsa::Signature, _> = signer.sign_prehash(&prehash);
            match sig {
                Ok(sig) => Zeroizing::new(sig.to_der().as_bytes().to_vec()),
                Err(_) => return status(StatusWord::WRONG_DATA),
            }
        } else {
            return status(StatusWord::WRONG_DATA);
        };
        let mut inner = Zeroizing::new(Vec::new());
        write_tlv(&mut inner, 0x82, &result);
        let mut out = Zeroizing::new(Vec::new());
        write_tlv(&mut out, 0x7C, &inner);
        Response {
            data: out,
            sw: StatusWord::OK,
        }
    }

    /// GENERATE ASYMMETRIC KEY PAIR: `AC { 80 alg, [AA pin policy], [AB touch policy] }`.
    fn generate(&mut self, cmd: &Command, rng: &dyn SecureRandom) -> Response {
        if !self.mgm_authenticated {
            return status(StatusWord::SECURITY_STATUS_NOT_SATISFIED);
        }
        if cmd.p1 != 0 || !slot::is_key_slot(cmd.p2) {
            return status(StatusWord::WRONG_P1P2);
        }
        let Ok(outer) = Tlv::parse_all(&cmd.data) else {
            return status(StatusWord::WRONG_DATA);
        };
        let Ok(template) = Tlv::find(&outer, 0xAC) else {
            return status(StatusWord::WRONG_DATA);
        };
        let Ok(items) = Tlv::parse_all(template) else {
            return status(StatusWord::WRONG_DATA);
        };
        if Tlv::find(&items, 0x80) != Ok(&[alg::ECC_P256][..]) {
            return status(StatusWord::WRONG_DATA);
        }
        let single = |tag, default| match Tlv::find(&items, tag) {
            Ok(&[v]) => Some(v),
            Ok(_) => None,
            Err(_) => Some(default),
        };
        let (Some(mut pin), Some(mut touch)) = (
            single(0xAA, pin_policy::DEFAULT),
            single(0xAB, touch_policy::DEFAULT),
        ) else {
            return status(StatusWord::WRONG_DATA);
        };
        if pin > pin_policy::ALWAYS || touch > touch_policy::CACHED {
            return status(StatusWord::WRONG_DATA);
        }
        if pin == pin_policy::DEFAULT {
            pin = match cmd.p2 {
                slot::SIGNATURE => pin_policy::ALWAYS,
                slot::CARD_AUTH => pin_policy::NEVER,
                _ => pin_policy::ONCE,
            };
        }
        if touch == touch_policy::DEFAULT {
            touch = touch_policy::NEVER;
        }
        let secret = generate_secret(rng);
        let template = public_key_template(&secret.public_key());
        self.keys.insert(
            cmd.p2,
            SlotKey {
                secret,
                pin_policy: pin,
                touch_policy: touch,
            },
        );
        Response::new(template, StatusWord::OK)
    }

    /// The object id of a GET/PUT DATA command: `5C len id`.
    fn object_id(list: &[Tlv<'_>]) -> Option<u32> {
        let id = Tlv::find(list, 0x5C).ok()?;
        if id.is_empty() || id.len() > 3 {
            return None;
        }
        Some(id.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b)))
    }

    fn get_data(&self, cmd: &Command) -> Response {
        if (cmd.p1, cmd.p2) != (0x3F, 0xFF) {
            return status(StatusWord::WRONG_P1P2);
        }
        let Some(id) = Tlv::parse_all(&cmd.data)
            .ok()
            .and_then(|l| Self::object_id(&l))
        else {
            return status(StatusWord::WRONG_DATA);
        };
        let attestation;
        let value = match id {
            // Stored as YubiKeys store certificates: `70 cert 71 00 FE`.
            OBJ_ATTESTATION => {
                let mut v = Vec::new();
                write_tlv(&mut v, 0x70, &self.attestation_cert);
                write_tlv(&mut v, 0x71, &[0x00]);
                write_tlv(&mut v, 0xFE, &[]);
                attestation = v;
                &attestation
            }
            _ => match self.objects.get(&id) {
                Some(v) => v,
                None => return status(StatusWord::FILE_NOT_FOUND),
            },
        };
        let mut out = Vec::new();
        write_tlv(&mut out, 0x53, value);
        Response::new(out, StatusWord::OK)
    }

    fn put_data(&mut self, cmd: &Command) -> Response {
        if !self.mgm_authenticated {
            return status(StatusWord::SECURITY_STATUS_NOT_SATISFIED);
        }
        if (cmd.p1, cmd.p2) != (0x3F, 0xFF) {
            return status(StatusWord::WRONG_P1P2);
        }
        let Ok(list) = Tlv::parse_all(&cmd.data) else {
            return status(StatusWord::WRONG_DATA);
        };
        let (Some(id), Ok(value)) = (Self::object_id(&list), Tlv::find(&list, 0x53)) else {
            return status(StatusWord::WRONG_DATA);
        };
        if id == OBJ_ATTESTATION {
            return status(StatusWord::SECURITY_STATUS_NOT_SATISFIED);
        }
        if value.is_empty() {
            self.objects.remove(&id);
        } else {
            self.objects.insert(id, value.to_vec());
        }
        status(StatusWord::OK)
    }

    /// GET METADATA (Yubico, firmware 5.3+): algorithm, policies, origin, public key,
    /// default flag, tries.
    fn metadata(&self, cmd: &Command) -> Response {
        let mut out = Vec::new();
        match cmd.p2 {
            slot::PIN | slot::PUK => {
                let r = if cmd.p2 == slot::PIN {
                    &self.pin
                } else {
                    &self.puk
                };
                write_tlv(&mut out, 0x01, &[0xFF]);
                write_tlv(&mut out, 0x05, &[u8::from(r.default)]);
                write_tlv(&mut out, 0x06, &[MAX_TRIES, r.tries]);
            }
            slot::MANAGEMENT => {
                let default = self.mgm.algorithm == alg::AES192
                    && bool::from(self.mgm.key[..].ct_eq(&DEFAULT_MGM_KEY[..]));
                write_tlv(&mut out, 0x01, &[self.mgm.algorithm]);
                write_tlv(&mut out, 0x02, &[pin_policy::NEVER, touch_policy::NEVER]);
                write_tlv(&mut out, 0x05, &[u8::from(default)]);
            }
            s => {
                let Some(key) = self.keys.get(&s) else {
                    return status(StatusWord::REFERENCE_NOT_FOUND);
                };
                let mut point = Vec::new();
                write_tlv(
                    &mut point,
                    0x86,
                    &uncompressed_point(&key.secret.public_key()),
                );
                write_tlv(&mut out, 0x01, &[alg::ECC_P256]);
                write_tlv(&mut out, 0x02, &[key.pin_policy, key.touch_policy]);
                write_tlv(&mut out, 0x03, &[0x01]); // generated on the card
                write_tlv(&mut out, 0x04, &point);
            }
        }
        Response::new(out, StatusWord::OK)
    }

    /// ATTEST (P1 = slot): a certificate for the slot's key, signed by the F9 key.
    fn attest(&self, cmd: &Command, rng: &dyn SecureRandom) -> Response {
        let Some(key) = self.keys.get(&cmd.p1) else {
            return status(StatusWord::REFERENCE_NOT_FOUND);
        };
        let cert = (|| -> Result<Vec<u8>, CertError> {
            let serial = x509_cert::der::asn1::Uint::new(&self.serial.to_be_bytes())
                .map_err(cert_err)?
                .to_der()
                .map_err(cert_err)?;
            let extensions = vec![
                extension(OID_YK_FIRMWARE, false, VERSION.to_vec())?,
                extension(OID_YK_SERIAL, false, serial)?,
                extension(OID_YK_POLICY, false, vec![key.pin_policy, key.touch_policy])?,
                // USB-A keychain.
                extension(OID_YK_FORM_FACTOR, false, vec![0x01])?,
            ];
            issue_certificate(
                rng,
                &Self::attestation_name(self.serial),
                &format!("CN=YubiKey PIV Attestation {:02x}", cmd.p1),
                &key.secret.public_key(),
                extensions,
                &self.attestation_key,
                CERT_LIFETIME,
            )
        })();
        match cert {
            Ok(der) => Response::new(der, StatusWord::OK),
            Err(_) => status(StatusWord::COMMAND_ABORTED),
        }
    }

    /// SET MANAGEMENT KEY (Yubico): `alg 9B len key`, AES only.
    fn set_mgm_key(&mut self, cmd: &Command) -> Response {
        if !self.mgm_authenticated {
            return status(StatusWord::SECURITY_STATUS_NOT_SATISFIED);
        }
        if cmd.p1 != 0xFF || !matches!(cmd.p2, 0xFE | 0xFF) {
            return status(StatusWord::WRONG_P1P2);
        }
        let d = &cmd.data;
        let Some(len) = d.first().and_then(|&a| MgmKey::key_len(a)) else {
            return status(StatusWord::WRONG_DATA);
        };
        if d.len() != 3 + len || d[1] != slot::MANAGEMENT || usize::from(d[2]) != len {
            return status(StatusWord::WRONG_DATA);
        }
        self.mgm = MgmKey {
            algorithm: d[0],
            key: Zeroizing::new(d[3..].to_vec()),
        };
        status(StatusWord::OK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::soft::{SimulatedTouch, TouchPolicy as Holder};
    use ring::rand::SystemRandom;
    use std::time::Duration;

    fn applet() -> (Applet, SystemRandom) {
        let rng = SystemRandom::new();
        let mut a = Applet::new(&rng).unwrap();
        assert!(a.select().sw.is_ok());
        (a, rng)
    }

    fn run(a: &mut Applet, rng: &SystemRandom, touch: &SimulatedTouch, cmd: Command) -> Response {
        a.process(&cmd, touch, rng)
    }

    fn approve() -> SimulatedTouch {
        SimulatedTouch::new(Holder::Approve, Duration::from_millis(1))
    }

    fn verify(pin: &[u8]) -> Command {
        Command::new(0, ins::VERIFY, 0, slot::PIN).with_data(pad8(pin).unwrap().to_vec())
    }

    fn dyn_auth(items: &[(u32, &[u8])]) -> Vec<u8> {
        let mut inner = Vec::new();
        for (t, v) in items {
            write_tlv(&mut inner, *t, v);
        }
        let mut out = Vec::new();
        write_tlv(&mut out, 0x7C, &inner);
        out
    }

    fn inner_value(resp: &Response, tag: u32) -> Vec<u8> {
        let outer = Tlv::parse_all(&resp.data).unwrap();
        let items = Tlv::parse_all(Tlv::find(&outer, 0x7C).unwrap()).unwrap();
        Tlv::find(&items, tag).unwrap().to_vec()
    }

    fn authenticate(a: &mut Applet, rng: &SystemRandom, t: &SimulatedTouch) {
        let mgm = MgmKey {
            algorithm: alg::AES192,
            key: Zeroizing::new(DEFAULT_MGM_KEY.to_vec()),
        };
        let step1 = Command::new(0, ins::AUTHENTICATE, alg::AES192, slot::MANAGEMENT)
            .with_data(dyn_auth(&[(0x80, &[])]));
        let r = run(a, rng, t, step1);
        assert!(r.sw.is_ok());
        let mut w: [u8; 16] = inner_value(&r, 0x80).try_into().unwrap();
        assert!(mgm.crypt(&mut w, false));
        let challenge = [7u8; 16];
        let step2 = Command::new(0, ins::AUTHENTICATE, alg::AES192, slot::MANAGEMENT)
            .with_data(dyn_auth(&[(0x80, &w), (0x81, &challenge)]));
        let r = run(a, rng, t, step2);
        assert!(r.sw.is_ok(), "{:?}", r.sw);
        let mut expect = challenge;
        assert!(mgm.crypt(&mut expect, true));
        assert_eq!(inner_value(&r, 0x82), expect.to_vec());
    }

    fn generate(
        a: &mut Applet,
        rng: &SystemRandom,
        t: &SimulatedTouch,
        pin: u8,
        touch: u8,
    ) -> PublicKey {
        let mut tmpl = Vec::new();
        write_tlv(&mut tmpl, 0x80, &[alg::ECC_P256]);
        write_tlv(&mut tmpl, 0xAA, &[pin]);
        write_tlv(&mut tmpl, 0xAB, &[touch]);
        let mut data = Vec::new();
        write_tlv(&mut data, 0xAC, &tmpl);
        let r = run(
            a,
            rng,
            t,
            Command::new(0, ins::GENERATE, 0, 0x82).with_data(data),
        );
        assert!(r.sw.is_ok(), "{:?}", r.sw);
        let outer = Tlv::parse_all(&r.data).unwrap();
        let items = Tlv::parse_all(Tlv::find(&outer, 0x7F49).unwrap()).unwrap();
        PublicKey::from_sec1_bytes(Tlv::find(&items, 0x86).unwrap()).unwrap()
    }

    fn ecdh_cmd(peer: &PublicKey) -> Command {
        Command::new(0, ins::AUTHENTICATE, alg::ECC_P256, 0x82)
            .with_data(dyn_auth(&[(0x82, &[]), (0x85, &uncompressed_point(peer))]))
    }

    #[test]
    fn version_and_serial() {
        let (mut a, rng) = applet();
        let t = approve();
        let v = run(&mut a, &rng, &t, Command::new(0, ins::GET_VERSION, 0, 0));
        assert_eq!(&v.data[..], &VERSION[..]);
        let s = run(&mut a, &rng, &t, Command::new(0, ins::GET_SERIAL, 0, 0));
        assert_eq!(&s.data[..], &a.serial().to_be_bytes()[..]);
    }

    #[test]
    fn pin_tries_block_and_reset() {
        let (mut a, rng) = applet();
        let t = approve();
        let query = || Command::new(0, ins::VERIFY, 0, slot::PIN);
        assert_eq!(run(&mut a, &rng, &t, query()).sw, StatusWord(0x63C3));
        assert_eq!(
            run(&mut a, &rng, &t, verify(b"000000")).sw,
            StatusWord(0x63C2)
        );
        assert!(run(&mut a, &rng, &t, verify(DEFAULT_PIN)).sw.is_ok());
        assert!(run(&mut a, &rng, &t, query()).sw.is_ok(), "verified");
        for sw in [0x63C2, 0x63C1, 0x63C0] {
            assert_eq!(run(&mut a, &rng, &t, verify(b"000000")).sw, StatusWord(sw));
        }
        assert_eq!(
            run(&mut a, &rng, &t, verify(DEFAULT_PIN)).sw,
            StatusWord::AUTH_METHOD_BLOCKED
        );
        assert_eq!(
            run(&mut a, &rng, &t, query()).sw,
            StatusWord::AUTH_METHOD_BLOCKED
        );
        let mut unblock = pad8(DEFAULT_PUK).unwrap().to_vec();
        unblock.extend_from_slice(&pad8(b"24682468").unwrap());
        let r = run(
            &mut a,
            &rng,
            &t,
            Command::new(0, ins::RESET_RETRY, 0, slot::PIN).with_data(unblock),
        );
        assert!(r.sw.is_ok());
        assert!(run(&mut a, &rng, &t, verify(b"24682468")).sw.is_ok());
    }

    #[test]
    fn generate_needs_management_key_and_ecdh_matches() {
        let (mut a, rng) = applet();
        let t = approve();
        let mut data = Vec::new();
        write_tlv(&mut data, 0xAC, &[0x80, 0x01, alg::ECC_P256]);
        let r = run(
            &mut a,
            &rng,
            &t,
            Command::new(0, ins::GENERATE, 0, 0x82).with_data(data),
        );
        assert_eq!(r.sw, StatusWord::SECURITY_STATUS_NOT_SATISFIED);
        authenticate(&mut a, &rng, &t);
        let card = generate(&mut a, &rng, &t, pin_policy::ONCE, touch_policy::NEVER);
        let host = generate_secret(&rng);
        let r = run(&mut a, &rng, &t, ecdh_cmd(&host.public_key()));
        assert_eq!(r.sw, StatusWord::SECURITY_STATUS_NOT_SATISFIED, "PIN once");
        assert!(run(&mut a, &rng, &t, verify(DEFAULT_PIN)).sw.is_ok());
        for _ in 0..2 {
            let r = run(&mut a, &rng, &t, ecdh_cmd(&host.public_key()));
            assert!(r.sw.is_ok());
            assert_eq!(
                inner_value(&r, 0x82),
                host.diffie_hellman(&card).raw_secret_bytes().to_vec()
            );
        }
        assert_eq!(t.times_asked(), 0);
    }

    #[test]
    fn pin_always_and_touch_always() {
        let (mut a, rng) = applet();
        let t = approve();
        authenticate(&mut a, &rng, &t);
        generate(&mut a, &rng, &t, pin_policy::ALWAYS, touch_policy::ALWAYS);
        let host = generate_secret(&rng).public_key();
        assert!(run(&mut a, &rng, &t, verify(DEFAULT_PIN)).sw.is_ok());
        assert!(run(&mut a, &rng, &t, ecdh_cmd(&host)).sw.is_ok());
        assert_eq!(t.times_asked(), 1);
        let r = run(&mut a, &rng, &t, ecdh_cmd(&host));
        assert_eq!(
            r.sw,
            StatusWord::SECURITY_STATUS_NOT_SATISFIED,
            "VERIFY used up"
        );
        // Another command between VERIFY and the key use cancels it.
        assert!(run(&mut a, &rng, &t, verify(DEFAULT_PIN)).sw.is_ok());
        run(&mut a, &rng, &t, Command::new(0, ins::GET_VERSION, 0, 0));
        let r = run(&mut a, &rng, &t, ecdh_cmd(&host));
        assert_eq!(r.sw, StatusWord::SECURITY_STATUS_NOT_SATISFIED);
        // A refused touch.
        let deny = SimulatedTouch::new(Holder::Deny, Duration::from_millis(1));
        assert!(run(&mut a, &rng, &deny, verify(DEFAULT_PIN)).sw.is_ok());
        let r = run(&mut a, &rng, &deny, ecdh_cmd(&host));
        assert_eq!(r.sw, StatusWord::SECURITY_STATUS_NOT_SATISFIED);
        assert_eq!(deny.times_asked(), 1);
    }

    #[test]
    fn attestation_and_f9_certificate() {
        use x509_cert::der::Decode;
        let (mut a, rng) = applet();
        let t = approve();
        let r = run(&mut a, &rng, &t, Command::new(0, ins::ATTEST, 0x82, 0));
        assert_eq!(r.sw, StatusWord::REFERENCE_NOT_FOUND);
        authenticate(&mut a, &rng, &t);
        let card = generate(&mut a, &rng, &t, pin_policy::ONCE, touch_policy::NEVER);
        let r = run(&mut a, &rng, &t, Command::new(0, ins::ATTEST, 0x82, 0));
        assert!(r.sw.is_ok());
        let cert = x509_cert::Certificate::from_der(&r.data).unwrap();
        assert_eq!(
            cert.tbs_certificate()
                .subject_public_key_info()
                .subject_public_key
                .raw_bytes(),
            &uncompressed_point(&card)[..]
        );
        let mut get = Vec::new();
        write_tlv(&mut get, 0x5C, &[0x5F, 0xFF, 0x01]);
        let r = run(
            &mut a,
            &rng,
            &t,
            Command::new(0, ins::GET_DATA, 0x3F, 0xFF).with_data(get),
        );
        assert!(r.sw.is_ok());
        let list = Tlv::parse_all(&r.data).unwrap();
        let object = Tlv::find(&list, 0x53).unwrap();
        assert_eq!(
            crate::token::piv::certificate_from_object(object).unwrap(),
            a.attestation_certificate()
        );
        let f9 = x509_cert::Certificate::from_der(a.attestation_certificate()).unwrap();
        assert_eq!(
            cert.tbs_certificate().issuer(),
            f9.tbs_certificate().subject()
        );
        let root = x509_cert::Certificate::from_der(a.attestation_root()).unwrap();
        assert_eq!(
            f9.tbs_certificate().issuer(),
            root.tbs_certificate().subject()
        );
    }

    #[test]
    fn wrong_management_key_is_refused() {
        let (mut a, rng) = applet();
        let t = approve();
        let step1 = Command::new(0, ins::AUTHENTICATE, alg::AES192, slot::MANAGEMENT)
            .with_data(dyn_auth(&[(0x80, &[])]));
        assert!(run(&mut a, &rng, &t, step1).sw.is_ok());
        let step2 = Command::new(0, ins::AUTHENTICATE, alg::AES192, slot::MANAGEMENT)
            .with_data(dyn_auth(&[(0x80, &[0u8; 16]), (0x81, &[1u8; 16])]));
        assert_eq!(
            run(&mut a, &rng, &t, step2).sw,
            StatusWord::SECURITY_STATUS_NOT_SATISFIED
        );
        let wrong_alg = Command::new(0, ins::AUTHENTICATE, 0x03, slot::MANAGEMENT)
            .with_data(dyn_auth(&[(0x80, &[])]));
        assert_eq!(run(&mut a, &rng, &t, wrong_alg).sw, StatusWord::WRONG_DATA);
    }
}
