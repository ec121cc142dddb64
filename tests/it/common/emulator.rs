//! The embedded STS/IAM emulator with the break-glass user made: its long-term key and an
//! enabled virtual MFA device. Shared by the in-process AWS tests.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use secrecy::SecretString;

use breakglass::aws::sts::{self, Session};
use breakglass::aws::{Endpoint, Signer};
use breakglass::sandbox::sts::Sts;
use breakglass::token::otp::{self, Algorithm};

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The time to compute a TOTP code at, with the emulator's clock frozen at it: the code is for
/// the emulator's current step whenever it checks it (no window boundary to race, no wait).
pub fn steady_now(sts: &Sts) -> u64 {
    let now = unix_now();
    sts.freeze_clock(i64::try_from(now).unwrap());
    now
}

/// The emulator with user `breakglass`: its long-term key and an enabled MFA device.
pub struct Rig {
    pub sts: Sts,
    pub endpoint: Endpoint,
    pub key_id: String,
    pub secret: SecretString,
    pub serial: String,
    pub seed: Vec<u8>,
}

impl Rig {
    pub fn new() -> Self {
        let sts = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let (key_id, secret) = sts.create_access_key("breakglass");
        let (serial, seed) = sts.create_mfa_device("breakglass", "breakglass-token");
        let seed = data_encoding::BASE32_NOPAD.decode(seed.as_bytes()).unwrap();
        let endpoint = Endpoint::new("us-east-1", Some(sts.endpoint()));
        Self {
            sts,
            endpoint,
            key_id,
            secret,
            serial,
            seed,
        }
    }

    /// The long-term key as a signer.
    pub fn key(&self) -> Signer<'_> {
        Signer {
            access_key_id: &self.key_id,
            secret_access_key: &self.secret,
            session_token: None,
        }
    }

    /// GetSessionToken with the code of the current window, as `unlock` does.
    pub async fn mfa_session(&self, duration_secs: u64) -> Session {
        let t = steady_now(&self.sts);
        let code = otp::totp(Algorithm::Sha1, &self.seed, t, 30, 6);
        sts::get_session_token(
            &self.endpoint,
            &self.key(),
            &self.serial,
            &code,
            duration_secs,
            t,
        )
        .await
        .unwrap()
    }
}

/// A session's credentials as a signer.
pub fn signer(session: &Session) -> Signer<'_> {
    Signer {
        access_key_id: &session.access_key_id,
        secret_access_key: &session.secret_access_key,
        session_token: Some(&session.session_token),
    }
}
