//! The USB HID backend of the FIDO2 factor: [`Authenticator`] over `ctap-hid-fido2` (hidapi on
//! Linux hidraw).
//!
//! Untested here (these machines have no HID device and no `/dev/uhid`): the factor's logic is
//! tested against `token::fido2::soft`, and this file only translates. `tests/it/fido2_factor.rs`
//! has a hardware test gated on `BREAKGLASS_FIDO2_DEVICE`.
//!
//! Every library call runs under `guard`: the library reports CTAP status codes as text, which
//! is mapped back to [`DeviceError`] here, and it indexes device answers without bounds checks,
//! so a panic on a malformed answer is caught and reported as an error instead of ending the
//! ceremony.
//!
//! Limits of the library this code cannot fix: the PIN goes in as `&str` and the library keeps
//! copies of it and of the decrypted `hmac-secret` output in buffers it does not wipe.

use std::panic::{catch_unwind, AssertUnwindSafe};

use ctap_hid_fido2::fidokey::{
    AssertionExtension, CredentialExtension, GetAssertionArgsBuilder, MakeCredentialArgsBuilder,
};
use ctap_hid_fido2::public_key_credential_user_entity::PublicKeyCredentialUserEntity;
use ctap_hid_fido2::{FidoKeyHid, HidParam, LibCfg};
use secrecy::{ExposeSecret, SecretString};
use zeroize::{Zeroize, Zeroizing};

use super::{Authenticator, DeviceError, Info, Presence, SALT_LEN};

/// Names the HID path of the FIDO2 key to use when several are plugged in.
pub const DEVICE_ENV: &str = "BREAKGLASS_FIDO2_DEVICE";

/// A FIDO2 HID device found on the system.
#[derive(Clone)]
pub struct Device {
    /// The hidraw path (`/dev/hidraw3`), what `--fido2-device` / [`DEVICE_ENV`] take.
    pub path: String,
    /// The product string the device reports.
    pub product: String,
    param: HidParam,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("path", &self.path)
            .field("product", &self.product)
            .finish()
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.product.is_empty() {
            write!(f, "{}", self.path)
        } else {
            write!(f, "{} ({})", self.path, self.product)
        }
    }
}

/// Runs a library call, turning its errors and panics into [`DeviceError`].
fn guard<T, E: std::fmt::Display>(f: impl FnOnce() -> Result<T, E>) -> Result<T, DeviceError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(classify(&e.to_string())),
        Err(_) => Err(DeviceError::Other(
            "the FIDO2 library could not read the key's answer (malformed or cut short)".into(),
        )),
    }
}

/// Maps the library's error text (it embeds the CTAP status name) to a [`DeviceError`].
fn classify(msg: &str) -> DeviceError {
    let has = |name: &str| msg.contains(name);
    if has("CTAP2_ERR_PIN_INVALID") {
        DeviceError::PinInvalid
    } else if has("CTAP2_ERR_PIN_AUTH_BLOCKED") {
        DeviceError::PinAuthBlocked
    } else if has("CTAP2_ERR_PIN_BLOCKED") {
        DeviceError::PinBlocked
    } else if has("CTAP2_ERR_PIN_NOT_SET") {
        DeviceError::PinNotSet
    } else if has("CTAP2_ERR_NO_CREDENTIALS") || has("CTAP2_ERR_INVALID_CREDENTIAL") {
        DeviceError::NoCredential
    } else if has("CTAP2_ERR_UNSUPPORTED_EXTENSION") {
        DeviceError::HmacSecretUnsupported
    } else if has("CTAP2_ERR_USER_ACTION_TIMEOUT")
        || has("CTAP2_ERR_KEEPALIVE_CANCEL")
        || has("CTAP2_ERR_OPERATION_DENIED")
    {
        DeviceError::Other("the FIDO2 key was not touched in time (or refused)".into())
    } else if has("read err") || has("write error") {
        DeviceError::Other(format!("lost the FIDO2 key (unplugged?): {msg}"))
    } else {
        DeviceError::Other(format!("the FIDO2 key answered: {msg}"))
    }
}

fn challenge() -> Result<[u8; 32], DeviceError> {
    // The client data hash: breakglass checks no signature, so it only has to be fresh.
    let mut c = [0u8; 32];
    crate::secure::Random::fill(&crate::secure::SystemRandom::new(), &mut c)
        .map_err(|_| DeviceError::Other("the system random source failed".into()))?;
    Ok(c)
}

/// The FIDO2 HID devices plugged in (HID usage page 0xF1D0).
pub fn list() -> Result<Vec<Device>, DeviceError> {
    let infos = guard(|| Ok::<_, String>(ctap_hid_fido2::get_fidokey_devices()))
        .map_err(|e| DeviceError::List(e.to_string()))?;
    Ok(infos
        .into_iter()
        .map(|i| Device {
            path: match &i.param {
                HidParam::Path(p) => p.clone(),
                HidParam::VidPid { vid, pid } => format!("{vid:04x}:{pid:04x}"),
            },
            product: i.product_string,
            param: i.param,
        })
        .collect())
}

/// The device to use among those plugged in: the one at `path`, or the only one. None, several,
/// or none at `path` is an error that lists what is there and how to pick.
pub fn choose<'d>(devices: &'d [Device], path: Option<&str>) -> Result<&'d Device, DeviceError> {
    let found = || devices.iter().map(ToString::to_string).collect::<Vec<_>>();
    match (path, devices) {
        (Some(p), _) => devices
            .iter()
            .find(|d| d.path == p)
            .ok_or_else(|| DeviceError::NotAt {
                path: p.to_owned(),
                found: found(),
            }),
        (None, []) => Err(DeviceError::NoDevice),
        (None, [one]) => Ok(one),
        (None, _) => Err(DeviceError::Several { found: found() }),
    }
}

/// A FIDO2 key on USB HID.
pub struct HidAuthenticator {
    dev: FidoKeyHid,
    path: String,
}

impl std::fmt::Debug for HidAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HidAuthenticator")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl HidAuthenticator {
    /// Opens the key at `path` (a hidraw path from [`list`]), or the only one plugged in.
    /// The CLI passes its `--fido2-device` argument, which falls back to [`DEVICE_ENV`].
    pub fn open(path: Option<&str>) -> Result<Self, DeviceError> {
        let devices = list()?;
        let device = choose(&devices, path)?;
        let mut cfg = LibCfg::init();
        cfg.enable_log = false;
        // The ceremony prompts for touches itself; the library would print to stdout.
        cfg.enable_keep_alive_msg = false;
        let dev =
            guard(|| FidoKeyHid::new(std::slice::from_ref(&device.param), &cfg)).map_err(|e| {
                DeviceError::Open {
                    device: device.to_string(),
                    reason: e.to_string(),
                }
            })?;
        Ok(Self {
            dev,
            path: device.path.clone(),
        })
    }

    /// The hidraw path of the device opened (`/dev/hidrawN`).
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl Authenticator for HidAuthenticator {
    fn info(&mut self) -> Result<Info, DeviceError> {
        let info = guard(|| self.dev.get_info())?;
        let option = |name: &str| {
            info.options
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| *v)
        };
        Ok(Info {
            aaguid: info.aaguid.as_slice().try_into().unwrap_or([0; 16]),
            client_pin: option("clientPin"),
            hmac_secret: info.extensions.iter().any(|e| e == "hmac-secret"),
            uv: option("uv"),
        })
    }

    fn pin_retries(&mut self) -> Result<u8, DeviceError> {
        let n = guard(|| self.dev.get_pin_retries())?;
        u8::try_from(n)
            .map_err(|_| DeviceError::Other(format!("the key reports {n} PIN tries left")))
    }

    fn make_credential(
        &mut self,
        rp_id: &str,
        user_id: &[u8],
        pin: &SecretString,
    ) -> Result<Vec<u8>, DeviceError> {
        let challenge = challenge()?;
        let user = PublicKeyCredentialUserEntity::new(
            Some(user_id),
            Some("breakglass"),
            Some("breakglass vault"),
        );
        let args = MakeCredentialArgsBuilder::new(rp_id, &challenge)
            .pin(pin.expose_secret())
            .user_entity(&user)
            .extensions(&[CredentialExtension::HmacSecret(Some(true))])
            .build();
        let att = guard(|| self.dev.make_credential_with_args(&args))?;
        if !att
            .extensions
            .iter()
            .any(|e| matches!(e, CredentialExtension::HmacSecret(Some(true))))
        {
            return Err(DeviceError::HmacSecretUnsupported);
        }
        Ok(att.credential_descriptor.id)
    }

    fn probe_credential(
        &mut self,
        rp_id: &str,
        credential_id: &[u8],
    ) -> Result<Presence, DeviceError> {
        let challenge = challenge()?;
        let args = GetAssertionArgsBuilder::new(rp_id, &challenge)
            .credential_id(credential_id)
            .without_pin_and_uv()
            .without_up()
            .build();
        match guard(|| self.dev.get_assertion_with_args(&args)) {
            Ok(_) => Ok(Presence::Held),
            Err(DeviceError::NoCredential) => Ok(Presence::NotHeld),
            // A key that wants user verification for everything (`alwaysUv`), or a CTAP 2.0 key
            // that refuses `up = false`, cannot be asked silently: the factor then asks with
            // the PIN.
            Err(DeviceError::Other(m))
                if m.contains("CTAP2_ERR_PIN_REQUIRED")
                    || m.contains("CTAP2_ERR_INVALID_OPTION")
                    || m.contains("CTAP2_ERR_UNSUPPORTED_OPTION") =>
            {
                Ok(Presence::Unknown)
            }
            Err(e) => Err(e),
        }
    }

    fn hmac_secret(
        &mut self,
        rp_id: &str,
        credential_id: &[u8],
        salt: &[u8; SALT_LEN],
        pin: Option<&SecretString>,
    ) -> Result<Zeroizing<[u8; 32]>, DeviceError> {
        let challenge = challenge()?;
        let builder = GetAssertionArgsBuilder::new(rp_id, &challenge)
            .credential_id(credential_id)
            .extensions(&[AssertionExtension::HmacSecret(Some(*salt))]);
        let args = match pin {
            Some(p) => builder.pin(p.expose_secret()),
            None => builder.without_pin_and_uv(),
        }
        .build();
        let mut assertions = guard(|| self.dev.get_assertion_with_args(&args))?;
        let mut out = None;
        let mut verified = false;
        for a in &mut assertions {
            verified |= a.flags.user_verified_result;
            for e in &mut a.extensions {
                if let AssertionExtension::HmacSecret(Some(o)) = e {
                    out.get_or_insert_with(|| Zeroizing::new(*o));
                    o.zeroize();
                }
            }
        }
        let out = out.ok_or(DeviceError::HmacSecretUnsupported)?;
        if pin.is_some() && !verified {
            // Without the UV flag the output came from CredRandomWithoutUV: never a slot secret.
            return Err(DeviceError::Other(
                "the key answered without verifying the PIN; refusing its hmac-secret".into(),
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(path: &str, product: &str) -> Device {
        Device {
            path: path.into(),
            product: product.into(),
            param: HidParam::Path(path.into()),
        }
    }

    #[test]
    fn device_choice_absent_single_several_named() {
        let none: Vec<Device> = Vec::new();
        let e = choose(&none, None).unwrap_err().to_string();
        assert!(e.contains("no FIDO2 device found: plug in the key"), "{e}");
        let e = choose(&none, Some("/dev/hidraw3")).unwrap_err().to_string();
        assert!(e.contains("no FIDO2 device is plugged in"), "{e}");

        let one = vec![device("/dev/hidraw3", "YubiKey OTP+FIDO+CCID")];
        assert_eq!(choose(&one, None).unwrap().path, "/dev/hidraw3");

        let two = vec![
            device("/dev/hidraw3", "YubiKey OTP+FIDO+CCID"),
            device("/dev/hidraw5", "Solo 2"),
        ];
        let e = choose(&two, None).unwrap_err().to_string();
        assert!(
            e.contains("2 FIDO2 devices found")
                && e.contains("/dev/hidraw5 (Solo 2)")
                && e.contains("--fido2-device PATH")
                && e.contains(DEVICE_ENV),
            "{e}"
        );
        assert_eq!(
            choose(&two, Some("/dev/hidraw5")).unwrap().product,
            "Solo 2"
        );
        let e = choose(&two, Some("/dev/hidraw9")).unwrap_err().to_string();
        assert!(
            e.contains("no FIDO2 device at /dev/hidraw9 (found: "),
            "{e}"
        );
    }

    #[test]
    fn library_errors_map_to_device_errors() {
        let e = |code: &str| classify(&format!("response_status err = {code} something"));
        assert_eq!(e("0x31 CTAP2_ERR_PIN_INVALID"), DeviceError::PinInvalid);
        assert_eq!(e("0x32 CTAP2_ERR_PIN_BLOCKED"), DeviceError::PinBlocked);
        assert_eq!(
            e("0x34 CTAP2_ERR_PIN_AUTH_BLOCKED"),
            DeviceError::PinAuthBlocked
        );
        assert_eq!(e("0x35 CTAP2_ERR_PIN_NOT_SET"), DeviceError::PinNotSet);
        assert_eq!(
            e("0x2E CTAP2_ERR_NO_CREDENTIALS"),
            DeviceError::NoCredential
        );
        assert_eq!(
            e("0x16 CTAP2_ERR_UNSUPPORTED_EXTENSION"),
            DeviceError::HmacSecretUnsupported
        );
        assert!(
            matches!(e("0x2F CTAP2_ERR_USER_ACTION_TIMEOUT"), DeviceError::Other(m) if m.contains("touched"))
        );
    }

    #[test]
    fn a_panicking_library_call_is_an_error() {
        let r: Result<(), DeviceError> =
            guard(|| -> Result<(), String> { panic!("index out of range") });
        assert!(matches!(r, Err(DeviceError::Other(_))));
    }
}
