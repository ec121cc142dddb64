//! The emulator's in-memory AWS account: IAM users, access keys, virtual MFA devices, roles and
//! the STS sessions issued from them. Nothing here ever touches the disk.

use std::collections::BTreeMap;
use std::io;

use data_encoding::{BASE32_NOPAD, BASE64};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::SecretString;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::signin::Federation;
use super::sts::Counts;
use crate::token::otp::{self, Algorithm};

/// The emulated account.
pub const ACCOUNT_ID: &str = "123456789012";
/// The only region the emulator accepts in credential scopes.
pub const REGION: &str = "us-east-1";
/// The user whose keys may call IAM for any user.
pub const ADMIN_USER: &str = "sandbox-admin";
pub const MAX_KEYS_PER_USER: usize = 2;
pub const MAX_MFA_DEVICES_PER_USER: usize = 8;
/// Virtual MFA devices: TOTP, SHA-1, 6 digits, 30-second steps, 20-byte seeds.
pub const TOTP_PERIOD_SECS: u32 = 30;
pub const TOTP_DIGITS: u8 = 6;
const SEED_BYTES: usize = 20;
/// Roles created through the Rust API allow sessions up to 12 hours.
pub const ROLE_MAX_SESSION_SECS: i64 = 43_200;

const BASE32_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const SECRET_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Randomness for ids and secrets: HMAC-SHA256 in counter mode under a key drawn once from the
/// OS, so that nothing after start-up can fail for want of entropy.
pub struct Rng {
    key: hmac::Key,
    counter: u64,
}

impl Rng {
    pub fn from_os() -> io::Result<Self> {
        let mut seed = Zeroizing::new([0u8; 32]);
        SystemRandom::new()
            .fill(&mut seed[..])
            .map_err(|_| io::Error::other("the operating system's random generator failed"))?;
        Ok(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &seed[..]),
            counter: 0,
        })
    }

    pub fn bytes(&mut self, len: usize) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(len + 32));
        while out.len() < len {
            let tag = hmac::sign(&self.key, &self.counter.to_be_bytes());
            self.counter = self.counter.wrapping_add(1);
            out.extend_from_slice(tag.as_ref());
        }
        out.truncate(len);
        out
    }

    /// `prefix` and `len` characters of the base32 alphabet (how AWS ids look).
    pub fn id(&mut self, prefix: &str, len: usize) -> String {
        let mut id = prefix.to_owned();
        id.extend(
            self.bytes(len)
                .iter()
                .map(|b| char::from(BASE32_ALPHABET[usize::from(b & 31)])),
        );
        id
    }

    /// A 40-character secret access key.
    pub fn secret_key(&mut self) -> SecretString {
        let text: Zeroizing<String> = Zeroizing::new(
            self.bytes(40)
                .iter()
                .map(|b| char::from(SECRET_ALPHABET[usize::from(b & 63)]))
                .collect(),
        );
        SecretString::from(text.as_str())
    }

    /// A session token: 240 random bytes, base64 (320 characters).
    pub fn session_token(&mut self) -> SecretString {
        SecretString::from(BASE64.encode(&self.bytes(240)))
    }

    /// A request id in UUID form.
    pub fn request_id(&mut self) -> String {
        let hex = data_encoding::HEXLOWER.encode(&self.bytes(16));
        format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        )
    }
}

pub struct User {
    pub name: String,
    pub id: String,
    pub arn: String,
    pub created: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    Active,
    Inactive,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "Active",
            Self::Inactive => "Inactive",
        }
    }
}

/// A long-term (`AKIA…`) access key.
pub struct AccessKey {
    pub id: String,
    pub user: String,
    pub secret: SecretString,
    pub status: KeyStatus,
    pub created: i64,
    /// When it last signed a request, and for which service (`sts`, `iam`).
    pub last_used: Option<(i64, &'static str)>,
    /// From when it works: IAM takes a while to propagate a new key.
    pub works_from: i64,
}

/// A virtual MFA device; `user` is set once enabled.
pub struct MfaDevice {
    seed: Zeroizing<Vec<u8>>,
    pub user: Option<String>,
    /// The last TOTP step accepted from this device: codes at or before it are refused.
    pub last_step: Option<u64>,
}

impl MfaDevice {
    /// True when `code` is this device's code for `step`, compared in constant time.
    pub fn code_matches(&self, code: &str, step: u64) -> bool {
        let expected = otp::hotp(Algorithm::Sha1, &self.seed, step, TOTP_DIGITS);
        bool::from(expected.as_bytes().ct_eq(code.as_bytes()))
    }

    /// The latest step among `steps` whose code is `code` and that is after the last used one.
    pub fn fresh_step(&self, code: &str, steps: impl Iterator<Item = u64>) -> Option<u64> {
        steps
            .filter(|&s| self.code_matches(code, s))
            .max()
            .filter(|&s| self.last_step.is_none_or(|last| s > last))
    }
}

pub struct Role {
    pub id: String,
    pub require_mfa: bool,
    /// A trust policy that admits no one: every AssumeRole of this role is refused.
    pub denies_all: bool,
    pub max_session_secs: i64,
    /// The principals the trust policy names (ARNs, `arn:aws:iam::ACCOUNT:root`); empty: any
    /// principal of the emulated account [`ACCOUNT_ID`].
    pub trusted: Vec<String>,
    /// The trust policy denies `sts:SetSourceIdentity`: AssumeRole with a SourceIdentity is
    /// refused.
    pub denies_source_identity: bool,
    /// The ARNs of the managed policies attached to it.
    pub attached: Vec<String>,
    pub created: i64,
}

impl Role {
    /// Whether the trust policy admits `caller_arn` (an IAM user or an assumed-role ARN).
    pub fn trusts(&self, caller_arn: &str) -> bool {
        if self.denies_all {
            return false;
        }
        let caller_account = caller_arn.split(':').nth(4).unwrap_or_default();
        if self.trusted.is_empty() {
            return caller_account == ACCOUNT_ID;
        }
        self.trusted.iter().any(|t| {
            t == "*"
                || t == caller_arn
                || t.strip_suffix(":root")
                    .and_then(|a| a.split(':').nth(4))
                    .is_some_and(|a| a == caller_account)
        })
    }

    /// The trust policy as IAM would hold it: the JSON that GetRole answers.
    pub fn trust_policy(&self) -> String {
        use serde_json::json;
        let principal = if self.denies_all {
            json!({ "AWS": format!("arn:aws:iam::{ACCOUNT_ID}:user/nobody") })
        } else if self.trusted.is_empty() {
            json!({ "AWS": format!("arn:aws:iam::{ACCOUNT_ID}:root") })
        } else if self.trusted.iter().any(|t| t == "*") {
            json!("*")
        } else {
            json!({ "AWS": self.trusted })
        };
        let mut allow = json!({
            "Effect": "Allow",
            "Principal": principal,
            "Action": ["sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession"],
        });
        if self.require_mfa {
            allow["Condition"] = json!({ "Bool": { "aws:MultiFactorAuthPresent": "true" } });
        }
        let mut statements = vec![allow];
        if self.denies_source_identity {
            statements.push(json!({
                "Effect": "Deny",
                "Principal": { "AWS": "*" },
                "Action": "sts:SetSourceIdentity",
            }));
        }
        json!({ "Version": "2012-10-17", "Statement": statements }).to_string()
    }
}

/// A member account of the emulated organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgAccount {
    pub id: String,
    pub name: String,
    /// `ACTIVE` or `SUSPENDED`.
    pub status: &'static str,
    /// The root's or an OU's id.
    pub parent: String,
}

/// An organizational unit of the emulated organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgUnit {
    /// `ou-sbx0-` and 8 characters.
    pub id: String,
    pub name: String,
    /// The root's or an OU's id.
    pub parent: String,
}

/// What a role's trust policy asks of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// Any principal of the account.
    Account,
    /// Any principal of the account whose session was created with MFA.
    AccountWithMfa,
    /// No one.
    Nobody,
}

/// Who an STS session acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A GetSessionToken session of an IAM user.
    User { name: String },
    /// An AssumeRole session.
    Role {
        role_arn: String,
        session_name: String,
    },
}

/// Temporary (`ASIA…`) credentials.
pub struct Session {
    pub id: String,
    pub secret: SecretString,
    pub token: SecretString,
    pub expires: i64,
    pub principal: Principal,
    /// Whether MFA was verified when this session (or the one it was chained from) was issued.
    pub mfa: bool,
    pub source_identity: Option<String>,
    /// How the session was asked for, which the federation endpoint looks at.
    pub origin: Origin,
}

/// How a session was asked for: the federation endpoint (`signin`) refuses some role sessions
/// by how they were obtained, as AWS documents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Origin {
    /// The caller signed with temporary credentials (a GetSessionToken or role session).
    pub temporary_caller: bool,
    /// The call carried `DurationSeconds`.
    pub duration_given: bool,
}

/// What [`Account::issue_session`] needs besides randomness.
pub struct SessionSpec {
    pub principal: Principal,
    pub mfa: bool,
    pub source_identity: Option<String>,
    pub expires: i64,
    pub origin: Origin,
}

/// The whole emulated account.
pub struct Account {
    pub rng: Rng,
    pub users: BTreeMap<String, User>,
    pub keys: BTreeMap<String, AccessKey>,
    pub devices: BTreeMap<String, MfaDevice>,
    /// By ARN.
    pub roles: BTreeMap<String, Role>,
    pub sessions: BTreeMap<String, Session>,
    pub counts: Counts,
    pub admin_key_id: String,
    /// Sign-in tokens and console sessions of the federation endpoint.
    pub federation: Federation,
    /// Seconds after its creation before a new access key works (IAM's propagation).
    pub key_propagation_secs: i64,
    /// Actions denied to a user by an explicit policy: (user, action such as `CreateAccessKey`).
    pub denied: std::collections::BTreeSet<(String, String)>,
    /// The organization's accounts (the emulated account is its management account); empty:
    /// no organization.
    pub organization: Vec<OrgAccount>,
    /// The organization's OUs.
    pub org_units: Vec<OrgUnit>,
    /// Users with a console password (a login profile).
    pub login_profiles: std::collections::BTreeSet<String>,
    /// Managed policies attached to users: user → policy ARNs.
    pub user_policies: BTreeMap<String, Vec<String>>,
    /// Accounts whose role sessions get no answer (a hung endpoint), for deadline tests.
    pub silent_accounts: std::collections::BTreeSet<String>,
    /// EventBridge rules on each account's default bus: (account, name) → enabled.
    pub rules: BTreeMap<(String, String), bool>,
}

impl Account {
    /// A fresh account holding the admin user and its key.
    pub fn new(rng: Rng, now: i64) -> Self {
        let mut account = Self {
            rng,
            users: BTreeMap::new(),
            keys: BTreeMap::new(),
            devices: BTreeMap::new(),
            roles: BTreeMap::new(),
            sessions: BTreeMap::new(),
            counts: Counts::default(),
            admin_key_id: String::new(),
            federation: Federation::default(),
            key_propagation_secs: 0,
            denied: std::collections::BTreeSet::new(),
            organization: Vec::new(),
            org_units: Vec::new(),
            login_profiles: std::collections::BTreeSet::new(),
            user_policies: BTreeMap::new(),
            silent_accounts: std::collections::BTreeSet::new(),
            rules: BTreeMap::new(),
        };
        account.admin_key_id = account.create_key(ADMIN_USER, now).id.clone();
        account
    }

    pub fn user_arn(name: &str) -> String {
        format!("arn:aws:iam::{ACCOUNT_ID}:user/{name}")
    }

    /// Creates user `name` unless it exists; either way returns it.
    pub fn create_user(&mut self, name: &str, now: i64) -> &User {
        if !self.users.contains_key(name) {
            let user = User {
                name: name.to_owned(),
                id: self.rng.id("AIDA", 17),
                arn: Self::user_arn(name),
                created: now,
            };
            self.users.insert(name.to_owned(), user);
        }
        &self.users[name]
    }

    /// Creates an active key for `user` (created if missing). Quotas are the caller's job.
    pub fn create_key(&mut self, user: &str, now: i64) -> &AccessKey {
        self.create_user(user, now);
        let id = loop {
            let id = self.rng.id("AKIA", 16);
            if !self.keys.contains_key(&id) {
                break id;
            }
        };
        let key = AccessKey {
            id: id.clone(),
            user: user.to_owned(),
            secret: self.rng.secret_key(),
            status: KeyStatus::Active,
            created: now,
            last_used: None,
            works_from: now.saturating_add(self.key_propagation_secs),
        };
        self.keys.entry(id).or_insert(key)
    }

    pub fn keys_of<'a>(&'a self, user: &'a str) -> impl Iterator<Item = &'a AccessKey> + 'a {
        self.keys.values().filter(move |k| k.user == user)
    }

    /// Creates role `name`, or updates its trust if it exists; returns its ARN.
    pub fn create_role(&mut self, name: &str, trust: Trust) -> String {
        let arn = format!("arn:aws:iam::{ACCOUNT_ID}:role/{name}");
        let require_mfa = trust == Trust::AccountWithMfa;
        let denies_all = trust == Trust::Nobody;
        if let Some(role) = self.roles.get_mut(&arn) {
            role.require_mfa = require_mfa;
            role.denies_all = denies_all;
        } else {
            let role = Role {
                id: self.rng.id("AROA", 17),
                require_mfa,
                denies_all,
                max_session_secs: ROLE_MAX_SESSION_SECS,
                trusted: Vec::new(),
                denies_source_identity: false,
                attached: Vec::new(),
                created: 0,
            };
            self.roles.insert(arn.clone(), role);
        }
        arn
    }

    /// Creates an unassigned virtual MFA device; returns its seed as base32 text.
    pub fn create_device(&mut self, serial: &str) -> Zeroizing<String> {
        let seed = self.rng.bytes(SEED_BYTES);
        let text = Zeroizing::new(BASE32_NOPAD.encode(&seed));
        let device = MfaDevice {
            seed,
            user: None,
            last_step: None,
        };
        self.devices.insert(serial.to_owned(), device);
        text
    }

    /// Creates virtual MFA device `serial` (replacing one of that serial) already enabled for
    /// `user` (created if missing), with no step used yet; returns its seed as base32 text.
    /// Quotas are the caller's job.
    pub fn create_enabled_device(
        &mut self,
        user: &str,
        serial: &str,
        now: i64,
    ) -> Zeroizing<String> {
        self.create_user(user, now);
        let seed = self.create_device(serial);
        if let Some(device) = self.devices.get_mut(serial) {
            device.user = Some(user.to_owned());
        }
        seed
    }

    pub fn devices_of<'a>(&'a self, user: &'a str) -> impl Iterator<Item = &'a MfaDevice> + 'a {
        self.devices
            .values()
            .filter(move |d| d.user.as_deref() == Some(user))
    }

    /// Issues fresh temporary credentials.
    pub fn issue_session(&mut self, spec: SessionSpec) -> &Session {
        let id = loop {
            let id = self.rng.id("ASIA", 16);
            if !self.sessions.contains_key(&id) {
                break id;
            }
        };
        let session = Session {
            id: id.clone(),
            secret: self.rng.secret_key(),
            token: self.rng.session_token(),
            expires: spec.expires,
            principal: spec.principal,
            mfa: spec.mfa,
            source_identity: spec.source_identity,
            origin: spec.origin,
        };
        self.sessions.entry(id).or_insert(session)
    }
}

/// Seconds since the epoch as ISO-8601 (`2026-11-23T12:00:00Z`).
pub fn iso8601(unix_seconds: i64) -> String {
    aws_smithy_types::DateTime::from_secs(unix_seconds)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_default()
}

/// Seconds since the epoch as an HTTP date (`Mon, 23 Nov 2026 12:00:00 GMT`).
pub fn http_date(unix_seconds: i64) -> String {
    aws_smithy_types::DateTime::from_secs(unix_seconds)
        .fmt(aws_smithy_types::date_time::Format::HttpDate)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn ids_and_secrets_have_aws_shapes() {
        let mut rng = Rng::from_os().unwrap();
        let id = rng.id("ASIA", 16);
        assert_eq!(id.len(), 20);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
        assert_eq!(rng.secret_key().expose_secret().len(), 40);
        assert_ne!(rng.id("AKIA", 16), rng.id("AKIA", 16));
        assert_eq!(rng.request_id().len(), 36);
    }

    #[test]
    fn device_refuses_steps_at_or_before_the_last_used_one() {
        let mut account = Account::new(Rng::from_os().unwrap(), 0);
        let seed = account.create_device("arn:aws:iam::123456789012:mfa/d");
        let key = BASE32_NOPAD.decode(seed.as_bytes()).unwrap();
        assert_eq!(key.len(), 20);
        let device = account
            .devices
            .get_mut("arn:aws:iam::123456789012:mfa/d")
            .unwrap();
        let code = otp::hotp(Algorithm::Sha1, &key, 100, 6);
        assert_eq!(device.fresh_step(&code, 99..=101), Some(100));
        device.last_step = Some(100);
        assert_eq!(device.fresh_step(&code, 99..=101), None);
    }
}
