//! The browser hand-off: the two-person session → AssumeRole into the break-glass role (both
//! holders named) → the federation endpoint's `getSigninToken` → the `Action=login` URL,
//! audited. AWS's sign-in refuses GetSessionToken credentials, hence the role.

use zeroize::Zeroizing;

use crate::audit;
use crate::aws::console::{self, SIGNIN_TOKEN_LIFETIME_SECS};
use crate::aws::sts;
use crate::clock::Clock;
use crate::config::{Paths, Profile};

use crate::notify::{Event, Notice};

use super::handout::{assume, withheld_unless_notified, Assumption, Purpose};
use super::Error;

/// The Issuer of the sign-in URL: where the console sends people whose session ended.
const ISSUER: &str = "https://github.com/breakglass/breakglass#console";

/// A sign-in URL and what it grants.
pub struct SigninUrl {
    /// The URL itself: a secret, valid once, for 15 minutes.
    pub url: Zeroizing<String>,
    /// The role session's assumed-role ARN (`arn:aws:sts::…:assumed-role/NAME/SESSION`).
    pub assumed_role_arn: String,
    /// Unix seconds after which the link no longer signs in.
    pub link_expires: u64,
    /// Unix seconds when the console session ends (with the role session).
    pub console_ends: u64,
}

/// Where a sign-in URL is made, and for what.
pub struct SigninRequest<'a> {
    /// The profile whose two-person session assumes the role.
    pub profile: &'a Profile,
    /// Where the state and audit log live.
    pub paths: &'a Paths,
    /// The role to sign in as.
    pub role_arn: &'a str,
    /// The federation endpoint (`https://signin.aws.amazon.com/federation`, the sandbox's).
    pub federation: &'a str,
    /// The console page to land on.
    pub destination: &'a str,
    /// The clock (audit times, link expiry).
    pub clock: &'a dyn Clock,
    /// Says a notice that could not be delivered (to the terminal).
    pub warn: &'a dyn Fn(&str),
}

/// AssumeRole with the two-person session, a sign-in token for it, the login URL; audited and
/// notified. A URL whose audit record cannot be written, or whose notice a required channel
/// did not take, is discarded.
pub fn make_url(
    req: &SigninRequest<'_>,
    base: &sts::Session,
    holders: (&str, &str),
) -> Result<SigninUrl, Error> {
    // No DurationSeconds and no SessionDuration: AWS's federation endpoint refuses either for
    // role sessions made with temporary credentials. The role session lasts AWS's default
    // hour, and the console session with it.
    let role = assume(
        &Assumption {
            profile: req.profile,
            paths: req.paths,
            role_arn: req.role_arn,
            duration_secs: None,
            purpose: Purpose::Console,
            clock: req.clock,
            warn: req.warn,
        },
        base,
        holders,
    )?;
    let now = req.clock.now();
    let deadlines = crate::aws::Deadlines::of(req.profile);
    let token = console::get_signin_token(req.federation, &role.session, &deadlines)?;
    let url = console::login_url(req.federation, ISSUER, req.destination, &token);
    drop(token);
    let signed = SigninUrl {
        url,
        assumed_role_arn: role.assumed_role_arn,
        link_expires: now + SIGNIN_TOKEN_LIFETIME_SECS,
        console_ends: role.session.expiration,
    };
    let entry = audit::Entry {
        time: now,
        profile: &req.profile.name,
        record: audit::Record::ConsoleUrl {
            role_arn: req.role_arn.to_owned(),
            account: req.role_arn.split(':').nth(4).unwrap_or("").to_owned(),
            assumed_role_arn: signed.assumed_role_arn.clone(),
            password_holder: holders.0.to_owned(),
            token_holder: holders.1.to_owned(),
            link_expires: signed.link_expires,
            console_session_ends: signed.console_ends,
        },
        outcome: audit::Outcome::Success,
    };
    let log = req.paths.audit_log();
    let head = audit::Log::new(&log)
        .append_head(&entry, None)
        .map_err(Error::UrlDiscarded)?;
    let notice = Notice {
        detail: Some(format!(
            "Console sign-in URL for role {} as {}; the link signs in until {}, the console session ends at {}",
            req.role_arn,
            signed.assumed_role_arn,
            audit::rfc3339(signed.link_expires),
            audit::rfc3339(signed.console_ends)
        )),
        temporary_access_key_id: Some(role.session.access_key_id.clone()),
        expiration: Some(signed.console_ends),
        ..Notice::new(Event::ConsoleUrl, now, req.profile, head).by(holders)
    };
    let key = role.session.access_key_id.clone();
    withheld_unless_notified(req.profile, &log, &notice, Some(base), req.warn, key)?;
    Ok(signed)
}
