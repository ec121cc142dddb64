//! The software token: YubiKey applets as state machines over APDUs.
//!
//! It runs in-process (it is a [`Transport`]) for the sandbox and unit tests, and as a card in
//! the `vpcd` virtual reader ([`vpcd`]) so that tests cross the real pcscd. It keeps its state in
//! memory only: nothing it holds ever reaches a disk.

mod cert;
pub mod oath;
pub mod piv;
pub mod vpcd;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use super::apdu::{Command, Response, StatusWord, SHORT_MAX};
use super::{Error, Transport};

/// The ATR of a YubiKey NEO seen over NFC ("YubikeyNEOr3"). Its second byte marks an NFC
/// transport, so ykman accepts a reader whose name does not say "Yubico".
pub const ATR: [u8; 17] = [
    0x3B, 0x8C, 0x80, 0x01, 0x59, 0x75, 0x62, 0x69, 0x6B, 0x65, 0x79, 0x4E, 0x45, 0x4F, 0x72, 0x33,
    0x58,
];

/// ISO GET RESPONSE, accepted for chained responses besides YKOATH's SEND REMAINING.
const INS_GET_RESPONSE: u8 = 0xC0;

/// The button on the token.
pub trait TouchSensor: Send + Sync {
    /// Blocks until the holder touches the token (`true`) or the wait ends (`false`).
    fn wait_for_touch(&self) -> bool;
}

impl<F: Fn() -> bool + Send + Sync> TouchSensor for F {
    fn wait_for_touch(&self) -> bool {
        self()
    }
}

/// What the simulated holder does when the token blinks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TouchPolicy {
    /// Touches at once.
    Approve,
    /// Refuses at once (the card answers as for a timeout).
    Deny,
    /// Never touches: the card waits its timeout, then answers "not touched".
    Timeout,
    /// Touches once this file exists (looked at every 20 ms), within the timeout: a test's
    /// finger, so that the test can act while the token blinks (pull it, kill the ceremony).
    WhenFileExists(std::path::PathBuf),
}

impl std::str::FromStr for TouchPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "approve" => Ok(Self::Approve),
            "deny" => Ok(Self::Deny),
            "timeout" => Ok(Self::Timeout),
            _ => match s.strip_prefix("when-exists:") {
                Some(path) if !path.is_empty() => Ok(Self::WhenFileExists(path.into())),
                _ => Err(format!(
                    "unknown touch policy {s:?}: use approve, deny, timeout or when-exists:PATH"
                )),
            },
        }
    }
}

pub use crate::token::TOUCH_TIMEOUT;

/// A [`TouchSensor`] following a fixed [`TouchPolicy`]; counts the touches asked for.
#[derive(Debug)]
pub struct SimulatedTouch {
    /// What every touch request gets.
    pub policy: TouchPolicy,
    /// How long a [`TouchPolicy::Timeout`] request waits before it fails.
    pub timeout: Duration,
    asked: AtomicU64,
}

impl SimulatedTouch {
    /// A sensor answering every request by `policy`.
    pub fn new(policy: TouchPolicy, timeout: Duration) -> Self {
        Self {
            policy,
            timeout,
            asked: AtomicU64::new(0),
        }
    }

    /// How many times the card asked for a touch.
    pub fn times_asked(&self) -> u64 {
        self.asked.load(Ordering::Relaxed)
    }
}

impl TouchSensor for SimulatedTouch {
    fn wait_for_touch(&self) -> bool {
        self.asked.fetch_add(1, Ordering::Relaxed);
        match &self.policy {
            TouchPolicy::Approve => true,
            TouchPolicy::Deny => false,
            TouchPolicy::Timeout => {
                std::thread::sleep(self.timeout);
                false
            }
            TouchPolicy::WhenFileExists(path) => {
                let end = std::time::Instant::now() + self.timeout;
                while std::time::Instant::now() < end {
                    if path.exists() {
                        return true;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                false
            }
        }
    }
}

impl<T: TouchSensor + ?Sized> TouchSensor for Arc<T> {
    fn wait_for_touch(&self) -> bool {
        (**self).wait_for_touch()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Selected {
    None,
    Oath,
    Piv,
}

/// A software YubiKey.
pub struct SoftCard {
    oath: oath::Applet,
    piv: piv::Applet,
    selected: Selected,
    /// Rest of a chained response, handed out by SEND REMAINING / GET RESPONSE.
    pending: Option<Zeroizing<Vec<u8>>>,
    /// Data of a chained command (CLA bit 0x10) collected so far.
    chained: Option<Zeroizing<Vec<u8>>>,
    touch: Box<dyn TouchSensor>,
    rng: Box<dyn SecureRandom + Send + Sync>,
    /// The FIDO2 application, in process only (no HID device can exist on these machines).
    fido2: Option<crate::token::fido2::soft::SoftFido2>,
}

impl std::fmt::Debug for SoftCard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftCard")
            .field("oath", &self.oath)
            .field("piv", &self.piv)
            .field("selected", &self.selected)
            .finish()
    }
}

impl SoftCard {
    /// A blank token (no credentials, no access code) with the system RNG.
    pub fn new(touch: Box<dyn TouchSensor>) -> Self {
        Self::with_rng(touch, Box::new(SystemRandom::new()))
    }

    /// A blank token drawing its randomness (OATH salt, PIV keys and certificates) from `rng`;
    /// tests pass a fixed one.
    pub fn with_rng(touch: Box<dyn TouchSensor>, rng: Box<dyn SecureRandom + Send + Sync>) -> Self {
        let oath = oath::Applet::new(&*rng);
        // Only fixed, well-formed inputs go into the sandbox certificates.
        let piv = piv::Applet::new(&*rng).expect("building the sandbox PIV certificates");
        Self {
            oath,
            piv,
            selected: Selected::None,
            pending: None,
            chained: None,
            fido2: None,
            touch,
            rng,
        }
    }

    /// Power cycle or reset: every applet is deselected and loses its authentication.
    pub fn reset(&mut self) {
        self.selected = Selected::None;
        self.pending = None;
        self.chained = None;
        self.oath.deselect();
        self.piv.deselect();
    }

    /// Adds the FIDO2 application `key` (reachable in process only, through
    /// [`crate::token::Token::fido2`]).
    pub fn with_fido2(mut self, key: crate::token::fido2::soft::SoftFido2) -> Self {
        self.fido2 = Some(key);
        self
    }

    /// The FIDO2 application, when [`SoftCard::with_fido2`] added one.
    pub fn fido2_mut(&mut self) -> Option<&mut crate::token::fido2::soft::SoftFido2> {
        self.fido2.as_mut()
    }

    /// The serial number the PIV applet reports (GET SERIAL).
    pub fn piv_serial(&self) -> u32 {
        self.piv.serial()
    }

    /// The sandbox PIV attestation root certificate (DER), made for this card alone: it signs
    /// the attestation (slot F9) certificate, which signs every `ATTEST` answer.
    pub fn piv_attestation_root(&self) -> Vec<u8> {
        self.piv.attestation_root().to_vec()
    }

    /// Processes one raw command APDU; always answers with data ‖ SW.
    pub fn process(&mut self, raw: &[u8]) -> Zeroizing<Vec<u8>> {
        self.process_command(raw).to_bytes()
    }

    fn process_command(&mut self, raw: &[u8]) -> Response {
        let Ok(mut cmd) = Command::parse(raw) else {
            return Response::status(StatusWord::WRONG_LENGTH);
        };
        let continues = cmd.ins == INS_GET_RESPONSE
            || (cmd.ins == super::oath::ins::SEND_REMAINING && self.selected == Selected::Oath);
        if continues {
            return match self.pending.take() {
                Some(rest) => self.chunk(rest),
                None => Response::status(StatusWord::CONDITIONS_NOT_SATISFIED),
            };
        }
        self.pending = None;
        if cmd.cla & !0x10 != 0 {
            self.chained = None;
            return Response::status(StatusWord::CLA_NOT_SUPPORTED);
        }
        if cmd.cla & 0x10 != 0 {
            self.chained
                .get_or_insert_with(|| Zeroizing::new(Vec::new()))
                .extend_from_slice(&cmd.data);
            return Response::status(StatusWord::OK);
        }
        if let Some(mut head) = self.chained.take() {
            head.extend_from_slice(&cmd.data);
            cmd.data = head;
        }
        let response = if cmd.ins == 0xA4 && cmd.p1 == 0x04 {
            self.select(&cmd.data)
        } else {
            match self.selected {
                Selected::Oath => self.oath.process(&cmd, &*self.touch, &*self.rng),
                Selected::Piv => self.piv.process(&cmd, &*self.touch, &*self.rng),
                Selected::None => Response::status(StatusWord::INS_NOT_SUPPORTED),
            }
        };
        self.chunk(response.data).with_final_sw(response.sw)
    }

    fn select(&mut self, aid: &[u8]) -> Response {
        if aid.len() >= 5 && super::oath::AID.starts_with(aid) {
            self.piv.deselect();
            self.selected = Selected::Oath;
            return self.oath.select(&*self.rng);
        }
        if aid.starts_with(&piv::AID) {
            self.oath.deselect();
            self.selected = Selected::Piv;
            return self.piv.select();
        }
        Response::status(StatusWord::FILE_NOT_FOUND)
    }

    /// Splits long data: the first chunk with `61xx`, the rest kept for the next request.
    fn chunk(&mut self, mut data: Zeroizing<Vec<u8>>) -> Response {
        if data.len() <= SHORT_MAX {
            return Response {
                data,
                sw: StatusWord::OK,
            };
        }
        let rest = Zeroizing::new(data.split_off(SHORT_MAX));
        let more = u8::try_from(rest.len()).unwrap_or(0);
        self.pending = Some(rest);
        Response {
            data,
            sw: StatusWord::from_bytes(0x61, more),
        }
    }
}

trait FinalSw {
    fn with_final_sw(self, sw: StatusWord) -> Self;
}

impl FinalSw for Response {
    /// Keeps `61xx` for a chunked answer, else sets the applet's status word.
    fn with_final_sw(mut self, sw: StatusWord) -> Self {
        if self.sw.more_data().is_none() {
            self.sw = sw;
        }
        self
    }
}

impl Transport for SoftCard {
    fn transmit_raw(&mut self, apdu: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        Ok(self.process(apdu))
    }
}
