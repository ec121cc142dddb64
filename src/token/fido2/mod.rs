//! FIDO2 authenticators: the device boundary ([`Authenticator`]) that the `hmac-secret` seal
//! factor (`vault::fido2`) drives, its USB HID backend ([`hid`]) and a software authenticator
//! ([`soft`]) for tests and the sandbox.
//!
//! PIN rules of CTAP 2: a key blocks its PIN after 8 wrong tries in total (only a FIDO2 reset,
//! which erases every credential, gets it back), and after 3 wrong tries in a row it refuses
//! further tries until it is unplugged and plugged in again ("power cycle").

pub mod hid;
#[cfg(feature = "sandbox")]
pub mod soft;

use secrecy::SecretString;
use zeroize::Zeroizing;

/// `hmac-secret` takes one or two 32-byte salts; the factor sends one.
pub const SALT_LEN: usize = 32;
/// CTAP 2.1 allows credential ids up to 1023 bytes (`maxCredentialIdLength` is at most that).
pub const MAX_CREDENTIAL_ID: usize = 1023;
/// Wrong PINs in total before a FIDO2 PIN blocks.
pub const PIN_TRIES: u8 = 8;
/// Wrong PINs in a row before the key wants to be unplugged and plugged in again.
pub const PIN_TRIES_PER_POWER_CYCLE: u8 = 3;

/// What `authenticatorGetInfo` tells about a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// The model's AAGUID (the same for every key of a model; all zero for some).
    pub aaguid: [u8; 16],
    /// The `clientPin` option: `None` = the key has no PIN support, `Some(false)` = supported
    /// but no PIN set yet, `Some(true)` = a PIN is set.
    pub client_pin: Option<bool>,
    /// `hmac-secret` is among the key's extensions.
    pub hmac_secret: bool,
    /// The `uv` option (built-in verification such as a fingerprint). Informational: this
    /// factor verifies the user with the PIN.
    pub uv: Option<bool>,
}

/// Failures at the device boundary, in CTAP's terms. The factor turns them into
/// errors of the vault (`vault::Error`) that say what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// `CTAP2_ERR_PIN_INVALID`: wrong PIN, tries remain in this power cycle.
    #[error("wrong PIN")]
    PinInvalid,
    /// `CTAP2_ERR_PIN_AUTH_BLOCKED`: 3 wrong PINs in a row; no more tries until a power cycle.
    #[error("PIN tries refused until the key is unplugged and plugged in again")]
    PinAuthBlocked,
    /// `CTAP2_ERR_PIN_BLOCKED`: no tries left at all.
    #[error("PIN blocked")]
    PinBlocked,
    /// `CTAP2_ERR_PIN_NOT_SET`.
    #[error("no PIN set")]
    PinNotSet,
    /// The key has no `clientPin` at all, so it cannot verify a user with a PIN.
    #[error("no PIN support")]
    UvUnsupported,
    /// `hmac-secret` is not supported or was not answered.
    #[error("hmac-secret not supported")]
    HmacSecretUnsupported,
    /// `CTAP2_ERR_NO_CREDENTIALS` / `CTAP2_ERR_INVALID_CREDENTIAL`: the key does not hold it.
    #[error("credential not on this key")]
    NoCredential,
    /// No FIDO2 HID device is plugged in, or none this user may open.
    #[error(
        "no FIDO2 device found: plug in the key (and check that you may open /dev/hidraw*: the \
         udev rules of libfido2 or systemd grant it to the logged-in user)"
    )]
    NoDevice,
    /// `--fido2-device PATH` names no plugged-in device; `found` lists those that are.
    #[error("{}", not_at(path, found))]
    NotAt {
        /// The path asked for.
        path: String,
        /// The FIDO2 devices plugged in, as `PATH (product)`.
        found: Vec<String>,
    },
    /// Several devices are plugged in and none was chosen.
    #[error(
        "{} FIDO2 devices found: {}; pick one with --fido2-device PATH or {}=PATH, or unplug \
         the others",
        found.len(), found.join(", "), hid::DEVICE_ENV
    )]
    Several {
        /// The devices, as `PATH (product)`.
        found: Vec<String>,
    },
    /// The HID layer could not list devices.
    #[error("cannot list HID devices: {0}")]
    List(String),
    /// The device was found but could not be opened.
    #[error("cannot open the FIDO2 device {device}: {reason} (is it in use, or not readable by this user?)")]
    Open {
        /// The device, as `PATH (product)`.
        device: String,
        /// The HID layer's error.
        reason: String,
    },
    /// The token in use has no FIDO2 authenticator with it (`what` names the token).
    #[error("{what}")]
    NotPresent {
        /// What the token is, worded for the user.
        what: &'static str,
    },
    /// Anything else, worded for the user (device gone, touch timeout…).
    #[error("{0}")]
    Other(String),
}

fn not_at(path: &str, found: &[String]) -> String {
    if found.is_empty() {
        format!("no FIDO2 device at {path}: no FIDO2 device is plugged in")
    } else {
        format!("no FIDO2 device at {path} (found: {})", found.join(", "))
    }
}

/// What a silent probe tells about a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// The key holds it.
    Held,
    /// The key does not hold it.
    NotHeld,
    /// The key cannot be asked without the PIN (`alwaysUv`, or a CTAP 2.0 key that refuses
    /// `up = false`): only a verified request tells.
    Unknown,
}

impl<A: Authenticator + ?Sized> Authenticator for &mut A {
    fn info(&mut self) -> Result<Info, DeviceError> {
        (**self).info()
    }
    fn pin_retries(&mut self) -> Result<u8, DeviceError> {
        (**self).pin_retries()
    }
    fn make_credential(
        &mut self,
        rp_id: &str,
        user_id: &[u8],
        pin: &SecretString,
    ) -> Result<Vec<u8>, DeviceError> {
        (**self).make_credential(rp_id, user_id, pin)
    }
    fn probe_credential(
        &mut self,
        rp_id: &str,
        credential_id: &[u8],
    ) -> Result<Presence, DeviceError> {
        (**self).probe_credential(rp_id, credential_id)
    }
    fn hmac_secret(
        &mut self,
        rp_id: &str,
        credential_id: &[u8],
        salt: &[u8; SALT_LEN],
        pin: Option<&SecretString>,
    ) -> Result<Zeroizing<[u8; 32]>, DeviceError> {
        (**self).hmac_secret(rp_id, credential_id, salt, pin)
    }
}

/// A FIDO2 authenticator: the device boundary of the factor. Every call is one CTAP exchange
/// (or the few a PIN token needs); the factor holds the policy.
pub trait Authenticator {
    /// `authenticatorGetInfo`.
    fn info(&mut self) -> Result<Info, DeviceError>;
    /// PIN tries left (`clientPin getPinRetries`).
    fn pin_retries(&mut self) -> Result<u8, DeviceError>;
    /// Makes a non-discoverable ES256 credential with `hmac-secret` for `rp_id`, verifying the
    /// user with `pin` (the key also wants a touch). Returns the credential id.
    fn make_credential(
        &mut self,
        rp_id: &str,
        user_id: &[u8],
        pin: &SecretString,
    ) -> Result<Vec<u8>, DeviceError>;
    /// Whether the key holds `credential_id` for `rp_id`: a silent assertion (no touch, no PIN,
    /// `up = false`), the way systemd-cryptenroll finds its key. A key that cannot be asked
    /// silently answers [`Presence::Unknown`].
    fn probe_credential(
        &mut self,
        rp_id: &str,
        credential_id: &[u8],
    ) -> Result<Presence, DeviceError>;
    /// The `hmac-secret` output for `salt` (one touch). With `pin` the user is verified and the
    /// output comes from `CredRandomWithUV`; `None` gives the output without UV, which the
    /// factor never uses (tests use it to show that it differs).
    fn hmac_secret(
        &mut self,
        rp_id: &str,
        credential_id: &[u8],
        salt: &[u8; SALT_LEN],
        pin: Option<&SecretString>,
    ) -> Result<Zeroizing<[u8; 32]>, DeviceError>;
}
