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
//! # Simplified
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
use super::{iam_api, signin, sts_api};

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
            clock_offset: AtomicI64::new(0),
            frozen_at: AtomicI64::new(0),
        });
        let handler: http::Handler = Arc::new({
            let shared = Arc::clone(&shared);
            move |request: &Request| answer(&shared, request)
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
    let mut account = shared.lock();
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
