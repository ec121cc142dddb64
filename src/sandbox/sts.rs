//! A strict STS + IAM emulator for the sandbox: an HTTP/1.1 server on loopback that speaks the
//! AWS Query protocol well enough for the real `aws-sdk-sts`, `aws-sdk-iam` and the AWS CLI,
//! and refuses what AWS refuses. All state is in memory; its secrets never touch the disk.
//!
//! Point a client at [`Sts::endpoint`] with region `us-east-1` and a key from
//! [`Sts::admin_key`] or [`Sts::create_access_key`].
//!
//! # Emulated strictly (AWS's codes, statuses and words)
//! - SigV4 on every request: the canonical request is rebuilt and the signature compared in
//!   constant time; unknown or inactive key → `InvalidClientTokenId`; wrong signature, wrong
//!   region (only `us-east-1`), wrong signing service (`sts` for STS actions, `iam` for IAM
//!   ones), scope date ≠ `X-Amz-Date` day, or `X-Amz-Date` more than 15 minutes from the
//!   emulator's clock (`Signature expired: …`) → `SignatureDoesNotMatch`; an
//!   `x-amz-content-sha256` that is not the body's hash → `XAmzContentSHA256Mismatch`.
//! - Temporary credentials need their own `X-Amz-Security-Token` (`InvalidClientTokenId`
//!   otherwise) and stop at their expiration (`ExpiredToken`); long-term keys must not carry one.
//! - Responses carry a `Date` header from the emulator's clock, so the SDK's clock-skew
//!   correction behaves as against AWS (it retries a skewed request once, re-signed).
//! - GetSessionToken: long-term keys only; `DurationSeconds` 900..=129600 (default 43200); with
//!   MFA, the serial must be one of the user's enabled devices and the code the TOTP (SHA-1,
//!   6 digits, 30 s) of the current step ±1, and a code for a step at or before the last one
//!   accepted from that device is refused (AWS refuses reused codes).
//! - GetSessionToken sessions without MFA cannot call IAM (`InvalidClientTokenId`, as AWS).
//! - AssumeRole: the role must exist and its trust admit the caller (`AccessDenied` naming the
//!   role otherwise); a role flagged "require MFA" needs an MFA session (or
//!   `SerialNumber` + `TokenCode` in the call); role chaining is limited to 3600 s;
//!   `SourceIdentity` is kept on the session and inherited (and fixed) along a chain.
//! - EnableMFADevice wants the codes of two consecutive steps `s`, `s+1` with `s` in
//!   `now-2..=now`; both steps then count as used. At most 2 access keys and 8 MFA devices per
//!   user (`LimitExceeded`).
//! - Unknown actions or API versions → `InvalidAction`; parameter constraints →
//!   `ValidationError` in AWS's "1 validation error detected" form.
//! - The sign-in (federation) endpoint at [`Sts::federation_endpoint`]: `getSigninToken` for
//!   AssumeRole sessions only (not GetSessionToken ones), single-use tokens valid 15 minutes,
//!   `SessionDuration` 900..=43200 and refused for roles assumed with temporary credentials,
//!   and role sessions assumed with temporary credentials *and* `DurationSeconds` refused, as
//!   AWS documents. `login` opens a console session on the emulator's own `/console` page.
//!
//! - The drill's reads: IAM `GetRole` (the trust policy URL-encoded, as IAM answers it),
//!   `ListAttachedRolePolicies`, `ListMFADevices`, `GetLoginProfile` (`NoSuchEntity` without a
//!   console password), `ListAttachedUserPolicies`, `ListUserPolicies`; AWS Organizations
//!   `ListAccounts`, `ListOrganizationalUnitsForParent` and `ListAccountsForParent` in the JSON
//!   protocol (`X-Amz-Target`), paged by 20, management account only,
//!   `AWSOrganizationsNotInUseException` without an organization, `ParentNotFoundException`
//!   for an unknown parent ([`Sts::create_ou`], [`Sts::move_account`]). Role sessions act in their
//!   role's account (GetCallerIdentity, GetRole).
//! - [`Sts::throttle_sts`]: a token bucket on STS answering `Throttling` ("Rate exceeded"),
//!   as AWS's account-level limit does.
//!
//! # Simplified
//! - Member accounts ([`Sts::create_organization`]) hold one role each and nothing else; their
//!   trust is a list of principals plus the MFA and SourceIdentity flags, rendered as a policy
//!   document for GetRole ([`Drift`] breaks them). [`Drift::Silent`] accounts never answer
//!   their role sessions (a hung endpoint).
//! - Policies: there are none. The admin key ([`Sts::admin_key`]) may call IAM for any user;
//!   an IAM user may call IAM for itself only; role sessions may not call IAM; any principal of
//!   the account may assume any role (trust policies are all "this account", plus the MFA flag),
//!   except roles made by [`Sts::create_role_denying`], which admit no one.
//! - Roles allow sessions up to 12 hours (`MaxSessionDuration` 43200).
//! - Only header-signed requests (no presigned URLs), only `X-Amz-Date` (not `Date`), only
//!   the path `/` (besides the sign-in endpoint's `/federation` and `/console`); one request
//!   per connection (`Connection: close`), no chunked bodies.
//! - Deactivating or deleting a key does not revoke the sessions issued from it; expired
//!   sessions are kept (they are refused, not forgotten).
//! - `CreateVirtualMFADevice` returns no QR code; `ListAccessKeys` is never truncated.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use secrecy::SecretString;
use zeroize::Zeroizing;

use super::auth::{self, Caller};
use super::http::{self, Request, Response, Server};
use super::model::{self, Account, Rng, Trust};
use super::wire::{self, Fault, Params, Service, Xml};
use super::{iam_api, org_api, signin, sts_api};

pub use super::model::OrgAccount;

pub use super::model::{ACCOUNT_ID, ADMIN_USER, REGION};

/// What the emulator has done, for tests. Only successful calls are counted, except
/// `rejected_mfa`: GetSessionToken or AssumeRole calls refused for a bad MFA serial or code
/// (unknown serial, wrong code, code out of window, reused code), and `refused_logins`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub get_session_token: u64,
    pub assume_role: u64,
    pub get_caller_identity: u64,
    pub rejected_mfa: u64,
    /// Sign-in tokens issued by the federation endpoint (`Action=getSigninToken`).
    pub signin_tokens: u64,
    /// Console sessions opened (`Action=login` with a valid, unused token).
    pub logins: u64,
    /// `Action=login` requests refused: incomplete, or an unknown, used or expired token.
    pub refused_logins: u64,
}

/// The emulator: a server handle. Stops accepting and joins its thread on drop.
pub struct Sts {
    server: Server,
    shared: Arc<Shared>,
}

struct Shared {
    account: Mutex<Account>,
    /// STS's request rate limit (the account-level limit AWS documents), when set.
    sts_limit: Mutex<Option<Bucket>>,
    /// Milliseconds every answer is held back: a network round trip to AWS.
    latency_ms: AtomicI64,
    clock_offset: AtomicI64,
    /// A time the clock stands still at (0: it runs).
    frozen_at: AtomicI64,
}

impl Shared {
    /// The emulator's clock: Unix seconds, system clock plus the offset, or the time it was
    /// frozen at.
    fn now(&self) -> i64 {
        match self.frozen_at.load(Ordering::SeqCst) {
            0 => system_now().saturating_add(self.clock_offset.load(Ordering::SeqCst)),
            at => at,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Account> {
        self.account.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn system_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl std::fmt::Debug for Sts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sts")
            .field("endpoint", &self.endpoint())
            .finish_non_exhaustive()
    }
}

impl Sts {
    /// Starts the emulator on `listen` (loopback only; port 0 picks a free port), with the
    /// admin user [`ADMIN_USER`] and its key already made.
    pub fn start(listen: SocketAddr) -> io::Result<Sts> {
        let shared = Arc::new(Shared {
            account: Mutex::new(Account::new(Rng::from_os()?, system_now())),
            sts_limit: Mutex::new(None),
            latency_ms: AtomicI64::new(0),
            clock_offset: AtomicI64::new(0),
            frozen_at: AtomicI64::new(0),
        });
        let handler: http::Handler = Arc::new({
            let shared = Arc::clone(&shared);
            move |request: &Request| {
                let mut response = answer(&shared, request);
                let latency = shared.latency_ms.load(Ordering::Relaxed);
                if latency > 0 && !response.headers.iter().any(|(n, _)| n == http::HOLD_HEADER) {
                    response
                        .headers
                        .push((http::HOLD_HEADER.into(), latency.to_string()));
                }
                response
            }
        });
        let server = Server::start(listen, handler)?;
        Ok(Sts { server, shared })
    }

    /// `http://127.0.0.1:PORT` (or `http://[::1]:PORT`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// The sign-in (federation) endpoint, `http://127.0.0.1:PORT/federation`: a stand-in for
    /// `https://signin.aws.amazon.com/federation` (see the `signin` module's doc). Its `login`
    /// redirects to the emulator's own console page, `/console` on the same server.
    pub fn federation_endpoint(&self) -> String {
        format!("{}{}", self.endpoint(), signin::FEDERATION_PATH)
    }

    /// The emulated account id, `123456789012`.
    pub fn account_id(&self) -> &str {
        ACCOUNT_ID
    }

    /// Creates IAM user `name` (idempotent); returns its ARN. Names are not validated here:
    /// keep to IAM's `[\w+=,.@-]`.
    pub fn create_user(&self, name: &str) -> String {
        let now = self.shared.now();
        self.shared.lock().create_user(name, now).arn.clone()
    }

    /// Creates an active access key for `user` (creating the user if needed). The operator's
    /// API skips IAM's quota of 2 keys per user.
    pub fn create_access_key(&self, user: &str) -> (String, SecretString) {
        let now = self.shared.now();
        let mut account = self.shared.lock();
        let key = account.create_key(user, now);
        (key.id.clone(), key.secret.clone())
    }

    /// The admin key, allowed to call IAM for any user (re-created if it was deleted).
    pub fn admin_key(&self) -> (String, SecretString) {
        let now = self.shared.now();
        let mut account = self.shared.lock();
        if !account.keys.contains_key(&account.admin_key_id) {
            account.admin_key_id = account.create_key(ADMIN_USER, now).id.clone();
        }
        let key = &account.keys[&account.admin_key_id];
        (key.id.clone(), key.secret.clone())
    }

    /// Creates role `name` (or sets its trust if it exists); returns its ARN. Any principal of
    /// the account may assume it; with `require_mfa`, only callers whose session was created
    /// with MFA (or who give `SerialNumber` and `TokenCode`).
    pub fn create_role(&self, name: &str, require_mfa: bool) -> String {
        let trust = if require_mfa {
            Trust::AccountWithMfa
        } else {
            Trust::Account
        };
        self.shared.lock().create_role(name, trust)
    }

    /// Creates role `name` (or sets its trust if it exists) with a trust policy that admits no
    /// one: every AssumeRole of it is `AccessDenied`, as AWS answers a trust policy that does
    /// not name the caller. Returns its ARN.
    pub fn create_role_denying(&self, name: &str) -> String {
        self.shared.lock().create_role(name, Trust::Nobody)
    }

    /// Creates virtual MFA device `name` already enabled for `user` (creating the user if
    /// needed; replacing a device of that name); returns its serial
    /// (`arn:aws:iam::123456789012:mfa/NAME`) and base32 seed. Unlike EnableMFADevice, no TOTP
    /// step is used up: the code of the current window is accepted at once. The operator's API
    /// skips IAM's quota of devices per user.
    pub fn create_mfa_device(&self, user: &str, name: &str) -> (String, Zeroizing<String>) {
        let serial = format!("arn:aws:iam::{ACCOUNT_ID}:mfa/{name}");
        let now = self.shared.now();
        let seed = self.shared.lock().create_enabled_device(user, &serial, now);
        (serial, seed)
    }

    pub fn counts(&self) -> Counts {
        self.shared.lock().counts
    }

    /// New access keys (made by CreateAccessKey or [`Sts::create_access_key`]) work only
    /// `secs` seconds after their creation, on the emulator's clock, as IAM takes seconds to
    /// propagate a new key; until then AWS's answer to them is `InvalidClientTokenId`.
    pub fn set_key_propagation(&self, secs: i64) {
        self.shared.lock().key_propagation_secs = secs;
    }

    /// Denies `action` (`CreateAccessKey`…) to `user`, as an explicit Deny in its policy would:
    /// AWS's `AccessDenied`, "User: … is not authorized to perform: iam:ACTION on resource: …".
    pub fn deny(&self, user: &str, action: &str) {
        self.shared
            .lock()
            .denied
            .insert((user.to_owned(), action.to_owned()));
    }

    /// Lifts every [`Sts::deny`].
    pub fn allow_all(&self) {
        self.shared.lock().denied.clear();
    }

    /// Deletes access key `id` (the operator's API: no signature, no quota).
    pub fn delete_access_key(&self, id: &str) {
        self.shared.lock().keys.remove(id);
    }

    /// The secret of access key `id` (tests scan files and memory for it).
    pub fn access_key_secret(&self, id: &str) -> Option<SecretString> {
        self.shared.lock().keys.get(id).map(|k| k.secret.clone())
    }

    /// The access keys of `user`: id, `Active`/`Inactive`, creation time.
    pub fn access_keys(&self, user: &str) -> Vec<(String, &'static str, i64)> {
        self.shared
            .lock()
            .keys_of(user)
            .map(|k| (k.id.clone(), k.status.as_str(), k.created))
            .collect()
    }

    /// Stops the emulator's clock at `unix_seconds` (until [`Sts::unfreeze_clock`]): a test can
    /// then compute a TOTP code for that time with no window boundary to race. Requests are
    /// still signed with the caller's clock, so keep it within SigV4's 15 minutes of it.
    pub fn freeze_clock(&self, unix_seconds: i64) {
        self.shared
            .frozen_at
            .store(unix_seconds.max(1), Ordering::SeqCst);
    }

    /// Lets the emulator's clock run again (the system clock plus the offset).
    pub fn unfreeze_clock(&self) {
        self.shared.frozen_at.store(0, Ordering::SeqCst);
    }

    /// Sets the emulator's clock to the system clock plus `secs` (for clock-skew tests); a
    /// frozen clock runs again.
    pub fn set_clock_offset(&self, secs: i64) {
        self.shared.frozen_at.store(0, Ordering::SeqCst);
        self.shared.clock_offset.store(secs, Ordering::SeqCst);
    }

    /// Makes the emulated account the management account of an organization of `members`
    /// member accounts ([`member_account_id`] 1..=members, named `member-NNNN`), each holding
    /// role `role_name` that trusts only `trusted` (IAM user ARNs), requires MFA, allows
    /// `sts:SetSourceIdentity`, lasts at most an hour and has `AdministratorAccess`: a sound
    /// break-glass role. [`Sts::drift`] then breaks some. Returns the member ids.
    pub fn create_organization(
        &self,
        members: usize,
        role_name: &str,
        trusted: &[String],
    ) -> Vec<String> {
        let now = self.shared.now();
        let mut account = self.shared.lock();
        let mut ids = Vec::with_capacity(members);
        for i in 1..=members {
            let id = member_account_id(i);
            let role = sound_role(&mut account, trusted, now);
            account
                .roles
                .insert(format!("arn:aws:iam::{id}:role/{role_name}"), role);
            account.organization.push(OrgAccount {
                id: id.clone(),
                name: format!("member-{i:04}"),
                status: "ACTIVE",
                parent: org_api::ROOT_ID.to_owned(),
            });
            ids.push(id);
        }
        ids
    }

    /// Adds an organizational unit named `name` under `parent` (the root,
    /// [`org_api::ROOT_ID`], or an OU); returns its id.
    pub fn create_ou(&self, name: &str, parent: &str) -> String {
        let mut account = self.shared.lock();
        let id = format!("ou-sbx0-{}", account.rng.id("", 8).to_ascii_lowercase());
        account.org_units.push(model::OrgUnit {
            id: id.clone(),
            name: name.to_owned(),
            parent: parent.to_owned(),
        });
        id
    }

    /// Moves member account `account_id` under `parent` (the root or an OU).
    pub fn move_account(&self, account_id: &str, parent: &str) {
        let mut account = self.shared.lock();
        if let Some(a) = account.organization.iter_mut().find(|a| a.id == account_id) {
            a.parent = parent.to_owned();
        }
    }

    /// Gives member account `account_id` a sound break-glass role named `role_name` (as
    /// [`Sts::create_organization`] makes them) trusting `trusted`.
    pub fn add_role(&self, account_id: &str, role_name: &str, trusted: &[String]) {
        let now = self.shared.now();
        let mut account = self.shared.lock();
        let role = sound_role(&mut account, trusted, now);
        account
            .roles
            .insert(format!("arn:aws:iam::{account_id}:role/{role_name}"), role);
    }

    /// Breaks member account `account_id`'s break-glass role `role_name` (or the account) as
    /// `drift` says.
    pub fn drift(&self, account_id: &str, role_name: &str, drift: Drift) {
        let arn = format!("arn:aws:iam::{account_id}:role/{role_name}");
        let mut account = self.shared.lock();
        let root = format!("arn:aws:iam::{ACCOUNT_ID}:root");
        match drift {
            Drift::NoRole => {
                account.roles.remove(&arn);
            }
            Drift::Suspended => {
                if let Some(a) = account.organization.iter_mut().find(|a| a.id == account_id) {
                    a.status = "SUSPENDED";
                }
            }
            Drift::Silent => {
                account.silent_accounts.insert(account_id.to_owned());
            }
            other => {
                if let Some(role) = account.roles.get_mut(&arn) {
                    match other {
                        Drift::TrustsAccount => role.trusted = vec![root],
                        Drift::NoMfaCondition => role.require_mfa = false,
                        Drift::DeniesSourceIdentity => role.denies_source_identity = true,
                        Drift::LongSessions => role.max_session_secs = 43_200,
                        Drift::NoRole | Drift::Suspended | Drift::Silent => {}
                    }
                }
            }
        }
    }

    /// Limits STS to `per_second` requests a second (with a second's burst), answering
    /// `Throttling` ("Rate exceeded") beyond it, as AWS's account-level limit does; `None`
    /// lifts the limit.
    pub fn throttle_sts(&self, per_second: Option<u32>) {
        *self
            .shared
            .sts_limit
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = per_second.map(|r| Bucket {
            rate: f64::from(r.max(1)),
            tokens: f64::from(r.max(1)),
            last: std::time::Instant::now(),
        });
    }

    /// Holds every answer back `ms` milliseconds (without blocking the server): the round trip
    /// to AWS that loopback lacks, for benchmarks of concurrency.
    pub fn set_latency_ms(&self, ms: u32) {
        self.shared
            .latency_ms
            .store(i64::from(ms), Ordering::Relaxed);
    }

    /// Puts EventBridge rule `name` on the default bus of `account` (enabled or not), or
    /// removes it (`None`).
    pub fn put_rule(&self, account: &str, name: &str, enabled: Option<bool>) {
        let mut a = self.shared.lock();
        let key = (account.to_owned(), name.to_owned());
        match enabled {
            Some(e) => {
                a.rules.insert(key, e);
            }
            None => {
                a.rules.remove(&key);
            }
        }
    }

    /// Sets the managed policies attached to `account`'s role `role`.
    pub fn set_role_policies(&self, account: &str, role: &str, arns: &[&str]) {
        let arn = format!("arn:aws:iam::{account}:role/{role}");
        if let Some(r) = self.shared.lock().roles.get_mut(&arn) {
            r.attached = arns.iter().map(|a| (*a).to_owned()).collect();
        }
    }

    /// Gives `user` a console password (a login profile), or takes it away.
    pub fn set_login_profile(&self, user: &str, present: bool) {
        let mut account = self.shared.lock();
        if present {
            account.login_profiles.insert(user.to_owned());
        } else {
            account.login_profiles.remove(user);
        }
    }

    /// Attaches managed policy `arn` to `user`.
    pub fn attach_user_policy(&self, user: &str, arn: &str) {
        self.shared
            .lock()
            .user_policies
            .entry(user.to_owned())
            .or_default()
            .push(arn.to_owned());
    }

    /// The SourceIdentity of the session whose access key id is `access_key_id`.
    pub fn session_source_identity(&self, access_key_id: &str) -> Option<String> {
        self.shared
            .lock()
            .sessions
            .get(access_key_id)
            .and_then(|s| s.source_identity.clone())
    }

    /// The secret key and session token of an issued session (tests scan memory and files
    /// for them).
    pub fn session_secrets(&self, access_key_id: &str) -> Option<(SecretString, SecretString)> {
        self.shared
            .lock()
            .sessions
            .get(access_key_id)
            .map(|s| (s.secret.clone(), s.token.clone()))
    }
}

/// The emulated organization's root id, the parent of every account until moved.
pub const ORG_ROOT_ID: &str = org_api::ROOT_ID;

/// A break-glass role as it should be: trusting only `trusted`, requiring MFA, allowing
/// `sts:SetSourceIdentity`, an hour at most, with `AdministratorAccess`.
fn sound_role(account: &mut model::Account, trusted: &[String], now: i64) -> model::Role {
    model::Role {
        id: account.rng.id("AROA", 17),
        require_mfa: true,
        denies_all: false,
        max_session_secs: 3600,
        trusted: trusted.to_vec(),
        denies_source_identity: false,
        attached: vec!["arn:aws:iam::aws:policy/AdministratorAccess".into()],
        created: now,
    }
}

/// The id of member account `i` of [`Sts::create_organization`]: `1000000000NN`.
pub fn member_account_id(i: usize) -> String {
    format!("{:012}", 100_000_000_000u64 + i as u64)
}

/// How a member account's break-glass role (or the account) has drifted, for
/// [`Sts::drift`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drift {
    /// The role was deleted.
    NoRole,
    /// The trust policy names the break-glass account's root: anyone there may assume it.
    TrustsAccount,
    /// The trust policy lost its MFA condition.
    NoMfaCondition,
    /// The trust policy denies `sts:SetSourceIdentity`.
    DeniesSourceIdentity,
    /// The role allows 12-hour sessions.
    LongSessions,
    /// The account is suspended.
    Suspended,
    /// Calls signed by the account's role sessions get no answer.
    Silent,
}

/// What an action handler gets.
pub(super) struct Cx<'a> {
    pub account: &'a mut Account,
    pub caller: &'a Caller,
    pub now: i64,
}

type Handler = fn(&mut Cx<'_>, &Params) -> Result<Option<Xml>, Fault>;

const ACTIONS: &[(&str, Service, Handler)] = &[
    ("GetSessionToken", Service::Sts, sts_api::get_session_token),
    (
        "GetCallerIdentity",
        Service::Sts,
        sts_api::get_caller_identity,
    ),
    ("AssumeRole", Service::Sts, sts_api::assume_role),
    ("CreateAccessKey", Service::Iam, iam_api::create_access_key),
    ("UpdateAccessKey", Service::Iam, iam_api::update_access_key),
    ("DeleteAccessKey", Service::Iam, iam_api::delete_access_key),
    ("ListAccessKeys", Service::Iam, iam_api::list_access_keys),
    (
        "GetAccessKeyLastUsed",
        Service::Iam,
        iam_api::get_access_key_last_used,
    ),
    ("GetUser", Service::Iam, iam_api::get_user),
    ("GetRole", Service::Iam, org_api::get_role),
    (
        "ListAttachedRolePolicies",
        Service::Iam,
        org_api::list_attached_role_policies,
    ),
    ("ListMFADevices", Service::Iam, org_api::list_mfa_devices),
    ("GetLoginProfile", Service::Iam, org_api::get_login_profile),
    (
        "ListAttachedUserPolicies",
        Service::Iam,
        org_api::list_attached_user_policies,
    ),
    (
        "ListUserPolicies",
        Service::Iam,
        org_api::list_user_policies,
    ),
    ("ListUsers", Service::Iam, org_api::list_users),
    (
        "CreateVirtualMFADevice",
        Service::Iam,
        iam_api::create_virtual_mfa_device,
    ),
    ("EnableMFADevice", Service::Iam, iam_api::enable_mfa_device),
    (
        "DeactivateMFADevice",
        Service::Iam,
        iam_api::deactivate_mfa_device,
    ),
];

fn answer(shared: &Shared, request: &Request) -> Response {
    if signin::serves(request.path()) {
        let now = shared.now();
        return signin::answer(&mut shared.lock(), request, now);
    }
    if request.path() != "/" {
        return Response::text(404, "Not Found");
    }
    if request.method != "POST" && request.method != "GET" {
        return Response::text(405, "Method Not Allowed");
    }
    let now = shared.now();
    if shared.throttles(request) {
        return query_error(Service::Sts, &Fault::Throttling, "throttled", now);
    }
    if request.header("x-amz-target").is_some() {
        return answer_json(shared, request, now);
    }
    let mut account = shared.lock();
    if silenced(&account, request) {
        return hold();
    }
    let request_id = account.rng.request_id();
    let (service, outcome) = dispatch(&mut account, request, now);
    drop(account);
    let (status, body) = match outcome {
        Ok((action, result)) => (
            200,
            wire::success(service, action, result.as_ref(), &request_id),
        ),
        Err(fault) => (
            fault.status(),
            Zeroizing::new(wire::error(service, &fault, &request_id)),
        ),
    };
    Response {
        status,
        headers: vec![
            ("Content-Type".into(), "text/xml".into()),
            ("x-amzn-RequestId".into(), request_id),
            ("Date".into(), model::http_date(now)),
        ],
        body: Zeroizing::new(body.as_bytes().to_vec()),
    }
}

fn query_error(service: Service, fault: &Fault, request_id: &str, now: i64) -> Response {
    Response {
        status: fault.status(),
        headers: vec![
            ("Content-Type".into(), "text/xml".into()),
            ("x-amzn-RequestId".into(), request_id.to_owned()),
            ("Date".into(), model::http_date(now)),
        ],
        body: Zeroizing::new(wire::error(service, fault, request_id).into_bytes()),
    }
}

/// No answer until the request's deadline: a hung endpoint.
fn hold() -> Response {
    let mut r = Response::text(503, "Service Unavailable");
    r.headers.push((http::HOLD_HEADER.into(), "600000".into()));
    r
}

/// The access key id of the request's `Authorization` header.
fn key_id(request: &Request) -> Option<&str> {
    let header = request.header("authorization")?;
    let (_, rest) = header.split_once("Credential=")?;
    rest.split('/').next()
}

/// Whether the request is signed by a session of a role in a silent account.
fn silenced(account: &Account, request: &Request) -> bool {
    if account.silent_accounts.is_empty() {
        return false;
    }
    let Some(session) = key_id(request).and_then(|id| account.sessions.get(id)) else {
        return false;
    };
    match &session.principal {
        model::Principal::Role { role_arn, .. } => role_arn
            .split(':')
            .nth(4)
            .is_some_and(|a| account.silent_accounts.contains(a)),
        model::Principal::User { .. } => false,
    }
}

/// A request in the JSON protocol (`X-Amz-Target`): Organizations.
fn answer_json(shared: &Shared, request: &Request, now: i64) -> Response {
    let mut account = shared.lock();
    let request_id = account.rng.request_id();
    let target = request.header("x-amz-target").unwrap_or_default();
    let result = match target {
        "AWSOrganizationsV20161128.ListAccounts" => {
            match auth::authenticate(&account, request, Some(Service::Organizations), now) {
                Ok((caller, _)) => org_api::list_accounts(&account, &caller, &request.body),
                Err(fault) => Err(org_api::JsonFault::of(&fault)),
            }
        }
        "AWSOrganizationsV20161128.ListOrganizationalUnitsForParent"
        | "AWSOrganizationsV20161128.ListAccountsForParent" => {
            let children = if target.ends_with("ListAccountsForParent") {
                org_api::Children::Accounts
            } else {
                org_api::Children::Units
            };
            match auth::authenticate(&account, request, Some(Service::Organizations), now) {
                Ok((caller, _)) => {
                    org_api::list_children(&account, &caller, &request.body, children)
                }
                Err(fault) => Err(org_api::JsonFault::of(&fault)),
            }
        }
        "AWSEvents.DescribeRule" => {
            match auth::authenticate(&account, request, Some(Service::Events), now) {
                Ok((caller, _)) => org_api::describe_rule(&account, &caller, &request.body),
                Err(fault) => Err(org_api::JsonFault::of(&fault)),
            }
        }
        other => Err(org_api::JsonFault {
            status: 400,
            kind: "UnknownOperationException",
            message: format!("the operation {other:?} is not known"),
        }),
    };
    drop(account);
    let (status, body, kind) = match result {
        Ok(value) => (200, value.to_string(), None),
        Err(fault) => (fault.status, fault.body(), Some(fault.kind)),
    };
    let mut headers = vec![
        ("Content-Type".into(), "application/x-amz-json-1.1".into()),
        ("x-amzn-RequestId".into(), request_id),
        ("Date".into(), model::http_date(now)),
    ];
    if let Some(kind) = kind {
        headers.push(("x-amzn-ErrorType".into(), kind.into()));
    }
    Response {
        status,
        headers,
        body: Zeroizing::new(body.into_bytes()),
    }
}

/// A token bucket: `rate` requests a second, a second's worth of burst.
struct Bucket {
    rate: f64,
    tokens: f64,
    last: std::time::Instant,
}

impl Shared {
    /// Takes a token for an STS request; true when there is none (the request is throttled).
    fn throttles(&self, request: &Request) -> bool {
        let mut limit = self
            .sts_limit
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(bucket) = limit.as_mut() else {
            return false;
        };
        let is_sts = request
            .header("authorization")
            .is_some_and(|h| h.contains("/sts/aws4_request"));
        if !is_sts {
            return false;
        }
        let now = std::time::Instant::now();
        let refill = now.duration_since(bucket.last).as_secs_f64() * bucket.rate;
        bucket.tokens = (bucket.tokens + refill).min(bucket.rate);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            false
        } else {
            true
        }
    }
}

type Outcome = Result<(&'static str, Option<Xml>), Fault>;

fn dispatch(account: &mut Account, request: &Request, now: i64) -> (Service, Outcome) {
    let params = match read_params(request) {
        Ok(params) => params,
        Err(fault) => return (Service::Sts, Err(fault)),
    };
    let action = params.get("Action").unwrap_or_default();
    let route = ACTIONS.iter().find(|(name, ..)| *name == action);
    let (caller, service) = match auth::authenticate(account, request, route.map(|r| r.1), now) {
        Ok(found) => found,
        Err(fault) => return (route.map_or(Service::Sts, |r| r.1), Err(fault)),
    };
    let version = params.get("Version").unwrap_or_default();
    let Some(&(name, _, handler)) = route.filter(|_| version == service.version()) else {
        let fault = Fault::InvalidAction(format!(
            "Could not find operation {action} for version {version}"
        ));
        return (service, Err(fault));
    };
    if let Some(user) = caller.user() {
        if account.denied.contains(&(user.to_owned(), name.to_owned())) {
            let fault = Fault::not_authorized(
                &caller.arn(),
                &format!("{}:{name}", service.signing_name()),
                &Account::user_arn(user),
            );
            return (service, Err(fault));
        }
    }
    if let Some(key) = caller
        .long_term_key
        .as_ref()
        .and_then(|id| account.keys.get_mut(id))
    {
        key.last_used = Some((now, service.signing_name()));
    }
    let mut cx = Cx {
        account,
        caller: &caller,
        now,
    };
    (
        service,
        handler(&mut cx, &params).map(|result| (name, result)),
    )
}

/// Query-string parameters, then the form body's (when the body is a form).
fn read_params(request: &Request) -> Result<Params, Fault> {
    let malformed = || {
        Fault::MalformedQueryString("The request parameters are not valid form encoding.".into())
    };
    let mut pairs = http::parse_form(request.query()).ok_or_else(malformed)?;
    let is_form = request.header("content-type").is_some_and(|t| {
        let media = t.split(';').next().unwrap_or_default().trim();
        media.eq_ignore_ascii_case("application/x-www-form-urlencoded")
    });
    if is_form && !request.body.is_empty() {
        let body = std::str::from_utf8(&request.body).map_err(|_| malformed())?;
        pairs.extend(http::parse_form(body).ok_or_else(malformed)?);
    }
    Ok(Params::new(pairs))
}
