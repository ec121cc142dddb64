//! The AWS sign-in (federation) endpoint, on the emulator's own server: the "custom identity
//! broker" flow that turns a role session into a console sign-in link, and a stand-in console
//! page to land on, so that `breakglass console` can be exercised end to end in the sandbox.
//!
//! - `GET /federation?Action=getSigninToken&Session=JSON[&SessionDuration=N]`: `Session` is
//!   the JSON object `{"sessionId":…,"sessionKey":…,"sessionToken":…}` of an AssumeRole
//!   session. Answers `200`, `application/json`, `{"SigninToken":"…"}` (300 base64url
//!   characters).
//! - `GET /federation?Action=login&Issuer=URL&Destination=URL&SigninToken=TOKEN`: a valid, unused
//!   token opens a console session and answers `302 Found` to `/console?c=ID` (a relative
//!   `Location` on this server; `ID` is random and opaque). `Issuer` is optional and ignored.
//! - `GET /console?c=ID`: an HTML page showing, HTML-escaped, the account (`id="account"`),
//!   the assumed-role ARN (`id="role-arn"`), the role session name (`id="session-name"`), the
//!   SourceIdentity (`id="source-identity"`, `(none)` when unset), the requested Destination
//!   (`id="destination"`) and when the console session ends (`id="expires"`, ISO-8601).
//!
//! # As AWS documents
//! - Only role sessions (AssumeRole) may get a sign-in token; GetSessionToken credentials are
//!   refused. The key and token must match the session (compared in constant time) and the
//!   session must not have expired.
//! - `SessionDuration` is 900..=43200 seconds, and refused for a role session obtained with
//!   temporary credentials. A role session obtained with temporary credentials *and*
//!   `DurationSeconds` is refused whatever the parameters ("If you use DurationSeconds in an
//!   AssumeRole* operation, you must call it as an IAM user with long-term credentials.
//!   Otherwise, the call to the federation endpoint … fails").
//! - A sign-in token is valid for 15 minutes after its issue, by the emulator's clock.
//! - The console session ends when the role credentials expire, or `SessionDuration` seconds
//!   after the login when one was given.
//!
//! # Simplified
//! - Refusals are `400` with a short body in the emulator's words: plain text for
//!   `getSigninToken`, an HTML page for `login`. No refusal echoes the `Session` parameter,
//!   a key, a session token or a sign-in token.
//! - A sign-in token is single-use (a used one is refused like an unknown one). Tokens are
//!   kept only as SHA-256 digests.
//! - `login` does not redirect to `Destination`: it must be an `http://` or `https://` URL and
//!   is only shown. An ended console session answers `403`, an unknown one `404`.
//! - Only `GET` (`405` otherwise); a parameter given twice is refused.

use std::collections::BTreeMap;

use data_encoding::BASE64URL_NOPAD;
use ring::digest;
use secrecy::ExposeSecret;
use serde::Deserialize;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::auth::assumed_role_arn;
use super::http::{self, Request, Response};
use super::model::{http_date, iso8601, Account, Principal, Session, ACCOUNT_ID};
use super::wire::Params;

pub const FEDERATION_PATH: &str = "/federation";
pub const CONSOLE_PATH: &str = "/console";

/// Sign-in tokens: 225 random bytes, base64url without padding (300 characters).
const TOKEN_BYTES: usize = 225;
/// How long a sign-in token may be used after its issue.
const TOKEN_LIFETIME_SECS: i64 = 15 * 60;
/// `SessionDuration`'s range.
const SESSION_DURATION_SECS: (i64, i64) = (900, 43_200);
/// Console session ids: 24 random bytes, base64url (32 characters).
const CONSOLE_ID_BYTES: usize = 24;

const TITLE: &str = "AWS Management Console — breakglass sandbox";
const SIGNIN_FAILED: &str = "Sign-in failed — breakglass sandbox";
const INVALID_LINK: &str =
    "This sign-in link is invalid, expired or was already used. Run `breakglass console` again.";
const INCOMPLETE_LINK: &str = "This sign-in link has no Destination or no SigninToken. \
    Run `breakglass console` again.";
const BAD_DESTINATION: &str = "This sign-in link's Destination is not an http:// or https:// URL. \
    Run `breakglass console` again.";

const BAD_QUERY: &str = "The query string is not valid URL encoding.";
const DUPLICATE_PARAMETER: &str = "A parameter was given more than once.";
const UNKNOWN_ACTION: &str =
    "Unknown or missing Action: the federation endpoint answers getSigninToken and login.";
const MISSING_SESSION: &str = "Missing Session parameter.";
const BAD_SESSION: &str = "Invalid Session parameter: expected a JSON object with the strings \
    sessionId, sessionKey and sessionToken.";
const INVALID_CREDENTIALS: &str =
    "Invalid credentials: no session matches the Session parameter's id, key and token.";
const EXPIRED_CREDENTIALS: &str = "The credentials in the Session parameter have expired.";
const NOT_A_ROLE: &str = "Invalid credentials: only role sessions (from AssumeRole) can sign in \
    to the console; GetSessionToken credentials cannot.";
const BAD_SESSION_DURATION: &str =
    "Invalid SessionDuration: it must be a whole number of seconds from 900 to 43200.";
const SESSION_DURATION_WITH_TEMPORARY: &str = "Invalid credentials parameter: SessionDuration \
    cannot be used with a role session obtained with temporary credentials.";
const DURATION_WITH_TEMPORARY: &str = "Invalid credentials parameter: the role session was \
    obtained with temporary credentials and DurationSeconds; only IAM users with long-term \
    credentials may give DurationSeconds to AssumeRole for a console sign-in.";

/// The federation endpoint's state, kept in the [`Account`].
#[derive(Default)]
pub struct Federation {
    /// Unused sign-in tokens, by the SHA-256 digest of the token text.
    tokens: BTreeMap<[u8; 32], Grant>,
    /// Console sessions, by their id.
    consoles: BTreeMap<String, Console>,
}

/// What a sign-in token grants: a snapshot of the role session it was issued for.
struct Grant {
    issued: i64,
    assumed_role_arn: String,
    session_name: String,
    source_identity: Option<String>,
    credentials_expire: i64,
    session_duration: Option<i64>,
}

struct Console {
    assumed_role_arn: String,
    session_name: String,
    source_identity: Option<String>,
    destination: String,
    expires: i64,
}

/// The credentials in `getSigninToken`'s `Session` parameter; wiped on drop.
#[derive(Deserialize, Zeroize, ZeroizeOnDrop)]
struct SessionJson {
    #[serde(rename = "sessionId")]
    id: String,
    #[serde(rename = "sessionKey")]
    key: String,
    #[serde(rename = "sessionToken")]
    token: String,
}

/// True for the paths this module answers.
pub fn serves(path: &str) -> bool {
    path == FEDERATION_PATH || path == CONSOLE_PATH
}

/// Answers a request for [`FEDERATION_PATH`] or [`CONSOLE_PATH`] at the emulator's time `now`.
pub fn answer(account: &mut Account, request: &Request, now: i64) -> Response {
    let mut response = if request.method != "GET" {
        let mut response = Response::text(405, "Method Not Allowed");
        response.headers.push(("Allow".into(), "GET".into()));
        response
    } else if request.path() == CONSOLE_PATH {
        console(&account.federation, request, now)
    } else {
        federation(account, request, now)
    };
    response.headers.push(("Date".into(), http_date(now)));
    response
        .headers
        .push(("Cache-Control".into(), "no-store".into()));
    response
}

/// The query's parameters, wiped on drop; a parameter given twice is refused.
fn params(request: &Request) -> Result<Params, &'static str> {
    let pairs = http::parse_form(request.query()).ok_or(BAD_QUERY)?;
    let duplicate = pairs
        .iter()
        .enumerate()
        .any(|(i, (name, _))| pairs[..i].iter().any(|(seen, _)| seen == name));
    let params = Params::new(pairs);
    if duplicate {
        return Err(DUPLICATE_PARAMETER);
    }
    Ok(params)
}

fn federation(account: &mut Account, request: &Request, now: i64) -> Response {
    let params = match params(request) {
        Ok(params) => params,
        Err(message) => return Response::text(400, message),
    };
    match params.get("Action") {
        Some("getSigninToken") => get_signin_token(account, &params, now),
        Some("login") => login(account, &params, now),
        _ => Response::text(400, UNKNOWN_ACTION),
    }
}

fn get_signin_token(account: &mut Account, params: &Params, now: i64) -> Response {
    match issue_token(account, params, now) {
        Ok(token) => {
            account.counts.signin_tokens += 1;
            let body = format!("{{\"SigninToken\":\"{}\"}}", token.as_str());
            Response {
                status: 200,
                headers: vec![("Content-Type".into(), "application/json".into())],
                body: Zeroizing::new(body.into_bytes()),
            }
        }
        Err(message) => Response::text(400, message),
    }
}

fn issue_token(
    account: &mut Account,
    params: &Params,
    now: i64,
) -> Result<Zeroizing<String>, &'static str> {
    let duration = params
        .get("SessionDuration")
        .map(session_duration)
        .transpose()?;
    let json = params.get("Session").ok_or(MISSING_SESSION)?;
    let creds: SessionJson = serde_json::from_str(json).map_err(|_| BAD_SESSION)?;
    let session = account
        .sessions
        .get(&creds.id)
        .filter(|session| credentials_match(session, &creds))
        .ok_or(INVALID_CREDENTIALS)?;
    if now >= session.expires {
        return Err(EXPIRED_CREDENTIALS);
    }
    let Principal::Role {
        role_arn,
        session_name,
    } = &session.principal
    else {
        return Err(NOT_A_ROLE);
    };
    if session.origin.temporary_caller && session.origin.duration_given {
        return Err(DURATION_WITH_TEMPORARY);
    }
    if session.origin.temporary_caller && duration.is_some() {
        return Err(SESSION_DURATION_WITH_TEMPORARY);
    }
    let grant = Grant {
        issued: now,
        assumed_role_arn: assumed_role_arn(role_arn, session_name),
        session_name: session_name.clone(),
        source_identity: session.source_identity.clone(),
        credentials_expire: session.expires,
        session_duration: duration,
    };
    let token = Zeroizing::new(BASE64URL_NOPAD.encode(&account.rng.bytes(TOKEN_BYTES)));
    let tokens = &mut account.federation.tokens;
    tokens.retain(|_, grant| usable(grant, now));
    tokens.insert(token_digest(&token), grant);
    Ok(token)
}

/// Both the key and the token, compared in constant time (both always compared).
fn credentials_match(session: &Session, creds: &SessionJson) -> bool {
    let key = session
        .secret
        .expose_secret()
        .as_bytes()
        .ct_eq(creds.key.as_bytes());
    let token = session
        .token
        .expose_secret()
        .as_bytes()
        .ct_eq(creds.token.as_bytes());
    bool::from(key & token)
}

fn session_duration(raw: &str) -> Result<i64, &'static str> {
    let (min, max) = SESSION_DURATION_SECS;
    Some(raw)
        .filter(|r| !r.is_empty() && r.len() <= 10 && r.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|r| r.parse::<i64>().ok())
        .filter(|secs| (min..=max).contains(secs))
        .ok_or(BAD_SESSION_DURATION)
}

/// The lookup key of a sign-in token. Looking a digest up is not constant-time, but timing
/// can tell at most how a guess's digest compares with stored digests, not a token.
fn token_digest(token: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, token.as_bytes()).as_ref());
    out
}

fn usable(grant: &Grant, now: i64) -> bool {
    now < grant.issued.saturating_add(TOKEN_LIFETIME_SECS)
}

fn login(account: &mut Account, params: &Params, now: i64) -> Response {
    match open_console(account, params, now) {
        Ok(id) => {
            account.counts.logins += 1;
            Response {
                status: 302,
                headers: vec![("Location".into(), format!("{CONSOLE_PATH}?c={id}"))],
                body: Zeroizing::new(Vec::new()),
            }
        }
        Err(response) => {
            account.counts.refused_logins += 1;
            response
        }
    }
}

/// Uses up the sign-in token and opens a console session; returns its id.
fn open_console(account: &mut Account, params: &Params, now: i64) -> Result<String, Response> {
    let (Some(destination), Some(token)) = (params.get("Destination"), params.get("SigninToken"))
    else {
        return Err(message_page(400, SIGNIN_FAILED, INCOMPLETE_LINK));
    };
    if !is_http_url(destination) {
        return Err(message_page(400, SIGNIN_FAILED, BAD_DESTINATION));
    }
    let invalid = || message_page(400, SIGNIN_FAILED, INVALID_LINK);
    let grant = account
        .federation
        .tokens
        .remove(&token_digest(token))
        .filter(|grant| usable(grant, now))
        .ok_or_else(invalid)?;
    let expires = grant
        .session_duration
        .map_or(grant.credentials_expire, |secs| now.saturating_add(secs));
    if expires <= now {
        return Err(invalid());
    }
    let id = BASE64URL_NOPAD.encode(&account.rng.bytes(CONSOLE_ID_BYTES));
    let console = Console {
        assumed_role_arn: grant.assumed_role_arn,
        session_name: grant.session_name,
        source_identity: grant.source_identity,
        destination: destination.to_owned(),
        expires,
    };
    account.federation.consoles.insert(id.clone(), console);
    Ok(id)
}

fn is_http_url(url: &str) -> bool {
    ["https://", "http://"].iter().any(|scheme| {
        url.get(..scheme.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
            && url.len() > scheme.len()
    })
}

fn console(federation: &Federation, request: &Request, now: i64) -> Response {
    let params = params(request).ok();
    let found = params
        .as_ref()
        .and_then(|p| p.get("c"))
        .and_then(|id| federation.consoles.get(id));
    match found {
        None => message_page(
            404,
            "No such console session — breakglass sandbox",
            "There is no such console session. Run `breakglass console` to sign in.",
        ),
        Some(console) if now >= console.expires => message_page(
            403,
            "Console session ended — breakglass sandbox",
            &format!(
                "This console session ended at {}. Run `breakglass console` again.",
                iso8601(console.expires)
            ),
        ),
        Some(console) => console_page(console),
    }
}

fn console_page(console: &Console) -> Response {
    let fields = [
        ("account", "Account", ACCOUNT_ID),
        (
            "role-arn",
            "Assumed-role ARN",
            console.assumed_role_arn.as_str(),
        ),
        ("session-name", "Role session name", &console.session_name),
        (
            "source-identity",
            "SourceIdentity",
            console.source_identity.as_deref().unwrap_or("(none)"),
        ),
        ("destination", "Requested destination", &console.destination),
        ("expires", "Console session ends", &iso8601(console.expires)),
    ];
    let mut body = format!(
        "<h1>{}</h1>\n<p>Signed in through the sandbox's federation endpoint. This is the \
         breakglass sandbox, not AWS: nothing here can change a real account.</p>\n<dl>\n",
        escape(TITLE)
    );
    for (id, label, value) in fields {
        body.push_str(&format!(
            "<dt>{label}</dt><dd id=\"{id}\">{}</dd>\n",
            escape(value)
        ));
    }
    body.push_str("</dl>\n");
    html(200, TITLE, &body)
}

/// A page whose body is one paragraph of text.
fn message_page(status: u16, title: &str, text: &str) -> Response {
    let body = format!(
        "<h1>{}</h1>\n<p id=\"message\">{}</p>\n",
        escape(title),
        escape(text)
    );
    html(status, title, &body)
}

/// An HTML response; `body` is HTML already.
fn html(status: u16, title: &str, body: &str) -> Response {
    let page = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{}</title>\n<style>body{{font-family:sans-serif;margin:2em}}\
         dt{{font-weight:bold}}dd{{margin:0 0 .6em 0;font-family:monospace}}</style>\n\
         </head>\n<body>\n{body}</body>\n</html>\n",
        escape(title)
    );
    Response {
        status,
        headers: vec![
            ("Content-Type".into(), "text/html; charset=utf-8".into()),
            (
                "Content-Security-Policy".into(),
                "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; \
                 form-action 'none'; frame-ancestors 'none'"
                    .into(),
            ),
            ("X-Content-Type-Options".into(), "nosniff".into()),
            ("Referrer-Policy".into(), "no-referrer".into()),
        ],
        body: Zeroizing::new(page.into_bytes()),
    }
}

/// Escapes text for HTML element content and quoted attribute values (`&#39;` for the
/// apostrophe: valid in HTML 4 too, unlike `&apos;`).
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::model::{Origin, Rng, SessionSpec};

    const NOW: i64 = 1_700_000_000;
    const ROLE: &str = "arn:aws:iam::123456789012:role/breakglass-admin";
    const DEST: &str = "https://console.aws.amazon.com/";

    /// id, key, token of a session.
    struct Creds(String, String, String);

    impl Creds {
        fn json(&self) -> String {
            serde_json::json!({
                "sessionId": self.0,
                "sessionKey": self.1,
                "sessionToken": self.2,
            })
            .to_string()
        }
    }

    fn account() -> Account {
        let mut account = Account::new(Rng::from_os().unwrap(), NOW);
        account.create_role("breakglass-admin", crate::sandbox::model::Trust::Account);
        account
    }

    fn issue(account: &mut Account, principal: Principal, origin: Origin, secs: i64) -> Creds {
        let session = account.issue_session(SessionSpec {
            principal,
            mfa: true,
            source_identity: Some("alice+bob".into()),
            expires: NOW + secs,
            origin,
        });
        Creds(
            session.id.clone(),
            session.secret.expose_secret().to_owned(),
            session.token.expose_secret().to_owned(),
        )
    }

    fn role() -> Principal {
        Principal::Role {
            role_arn: ROLE.into(),
            session_name: "alice+bob".into(),
        }
    }

    /// A role session assumed with the long-term key, without DurationSeconds.
    fn role_session(account: &mut Account, secs: i64) -> Creds {
        issue(account, role(), Origin::default(), secs)
    }

    fn enc(s: &str) -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    }

    fn get(account: &mut Account, target: &str, now: i64) -> Response {
        let request = Request {
            method: "GET".into(),
            target: target.into(),
            headers: Vec::new(),
            body: Zeroizing::new(Vec::new()),
        };
        answer(account, &request, now)
    }

    fn body(response: &Response) -> String {
        String::from_utf8(response.body.to_vec()).unwrap()
    }

    fn header<'r>(response: &'r Response, name: &str) -> Option<&'r str> {
        response
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn token_request(
        account: &mut Account,
        creds: &Creds,
        duration: Option<&str>,
        now: i64,
    ) -> Response {
        let mut target = format!(
            "/federation?Action=getSigninToken&Session={}",
            enc(&creds.json())
        );
        if let Some(d) = duration {
            target.push_str(&format!("&SessionDuration={}", enc(d)));
        }
        get(account, &target, now)
    }

    fn token(account: &mut Account, creds: &Creds, duration: Option<&str>, now: i64) -> String {
        let response = token_request(account, creds, duration, now);
        assert_eq!(response.status, 200, "{}", body(&response));
        assert_eq!(header(&response, "content-type"), Some("application/json"));
        let json: serde_json::Value = serde_json::from_str(&body(&response)).unwrap();
        json["SigninToken"].as_str().unwrap().to_owned()
    }

    fn login(account: &mut Account, token: &str, destination: &str, now: i64) -> Response {
        let target = format!(
            "/federation?Action=login&Issuer={}&Destination={}&SigninToken={}",
            enc("https://example.com/"),
            enc(destination),
            enc(token)
        );
        get(account, &target, now)
    }

    /// Logs in and returns the console page's path.
    fn console_path(account: &mut Account, token: &str, now: i64) -> String {
        let response = login(account, token, DEST, now);
        assert_eq!(response.status, 302, "{}", body(&response));
        header(&response, "location").unwrap().to_owned()
    }

    fn refusal(response: &Response) -> String {
        assert_eq!(response.status, 400, "{}", body(response));
        body(response)
    }

    #[test]
    fn token_login_and_console_page() {
        let mut account = account();
        let creds = role_session(&mut account, 3600);
        let token = token(&mut account, &creds, None, NOW);
        assert_eq!(token.len(), 300);
        assert!(token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        let path = console_path(&mut account, &token, NOW + 5);
        assert!(path.starts_with("/console?c="), "{path}");
        let page = get(&mut account, &path, NOW + 10);
        assert_eq!(page.status, 200);
        assert_eq!(
            header(&page, "content-type"),
            Some("text/html; charset=utf-8")
        );
        let html = body(&page);
        assert!(html.contains(&format!("<title>{TITLE}</title>")), "{html}");
        for expected in [
            "<dd id=\"account\">123456789012</dd>",
            "<dd id=\"role-arn\">arn:aws:sts::123456789012:assumed-role/breakglass-admin/alice+bob</dd>",
            "<dd id=\"session-name\">alice+bob</dd>",
            "<dd id=\"source-identity\">alice+bob</dd>",
            "<dd id=\"destination\">https://console.aws.amazon.com/</dd>",
            &format!("<dd id=\"expires\">{}</dd>", iso8601(NOW + 3600)),
        ] {
            assert!(html.contains(expected), "{expected} not in {html}");
        }
        let counts = account.counts;
        assert_eq!((counts.signin_tokens, counts.logins), (1, 1));
        // Single use.
        let again = login(&mut account, &token, DEST, NOW + 20);
        assert!(refusal(&again).contains(&escape(INVALID_LINK)));
        assert_eq!(account.counts.refused_logins, 1);
    }

    #[test]
    fn user_sessions_and_wrong_or_expired_credentials_are_refused() {
        let mut account = account();
        let user = issue(
            &mut account,
            Principal::User { name: "u".into() },
            Origin::default(),
            3600,
        );
        let r = token_request(&mut account, &user, None, NOW);
        assert_eq!(refusal(&r).trim(), NOT_A_ROLE);

        let good = role_session(&mut account, 3600);
        let wrong_key = Creds(good.0.clone(), format!("{}x", good.1), good.2.clone());
        let wrong_token = Creds(good.0.clone(), good.1.clone(), good.1.clone());
        let unknown = Creds("ASIAUNKNOWN".into(), good.1.clone(), good.2.clone());
        for creds in [&wrong_key, &wrong_token, &unknown] {
            let text = refusal(&token_request(&mut account, creds, None, NOW));
            assert_eq!(text.trim(), INVALID_CREDENTIALS);
            assert!(!text.contains(&good.1) && !text.contains(&good.2));
        }
        let r = token_request(&mut account, &good, None, NOW + 3600);
        assert_eq!(refusal(&r).trim(), EXPIRED_CREDENTIALS);
        assert_eq!(account.counts.signin_tokens, 0);
    }

    #[test]
    fn malformed_session_parameters_are_refused() {
        let mut account = account();
        for target in [
            "/federation?Action=getSigninToken".to_owned(),
            format!("/federation?Action=getSigninToken&Session={}", enc("{")),
            format!(
                "/federation?Action=getSigninToken&Session={}",
                enc(r#"{"sessionId":"a","sessionKey":"b"}"#)
            ),
            format!(
                "/federation?Action=getSigninToken&Session={}",
                enc(r#"{"sessionId":1,"sessionKey":"b","sessionToken":"c"}"#)
            ),
        ] {
            let text = refusal(&get(&mut account, &target, NOW));
            assert!(
                [MISSING_SESSION, BAD_SESSION].contains(&text.trim()),
                "{text}"
            );
        }
        let r = get(
            &mut account,
            "/federation?Action=getSigninToken&Session=%zz",
            NOW,
        );
        assert_eq!(refusal(&r).trim(), BAD_QUERY);
        let r = get(&mut account, "/federation?Action=login&Action=login", NOW);
        assert_eq!(refusal(&r).trim(), DUPLICATE_PARAMETER);
        let r = get(&mut account, "/federation?Action=getFederationToken", NOW);
        assert_eq!(refusal(&r).trim(), UNKNOWN_ACTION);
        let r = get(&mut account, "/federation", NOW);
        assert_eq!(refusal(&r).trim(), UNKNOWN_ACTION);
        let post = Request {
            method: "POST".into(),
            target: "/federation?Action=getSigninToken".into(),
            headers: Vec::new(),
            body: Zeroizing::new(Vec::new()),
        };
        let r = answer(&mut account, &post, NOW);
        assert_eq!((r.status, header(&r, "allow")), (405, Some("GET")));
    }

    #[test]
    fn duration_seconds_from_temporary_credentials_is_refused() {
        let mut account = account();
        // Assumed with temporary credentials and DurationSeconds: refused, as AWS documents.
        let both = Origin {
            temporary_caller: true,
            duration_given: true,
        };
        let creds = issue(&mut account, role(), both, 3600);
        let r = token_request(&mut account, &creds, None, NOW);
        assert_eq!(refusal(&r).trim(), DURATION_WITH_TEMPORARY);
        // Temporary credentials without DurationSeconds: accepted, but not SessionDuration.
        let temporary = Origin {
            temporary_caller: true,
            duration_given: false,
        };
        let creds = issue(&mut account, role(), temporary, 3600);
        let r = token_request(&mut account, &creds, Some("900"), NOW);
        assert_eq!(refusal(&r).trim(), SESSION_DURATION_WITH_TEMPORARY);
        token(&mut account, &creds, None, NOW);
        // Long-term credentials with DurationSeconds: accepted, SessionDuration too.
        let long_term = Origin {
            temporary_caller: false,
            duration_given: true,
        };
        let creds = issue(&mut account, role(), long_term, 3600);
        token(&mut account, &creds, Some("43200"), NOW);
        assert_eq!(account.counts.signin_tokens, 2);
    }

    #[test]
    fn session_duration_range_and_console_expiry() {
        let mut account = account();
        let creds = role_session(&mut account, 3600);
        for bad in [
            "899",
            "43201",
            "",
            "abc",
            "+900",
            "900.0",
            "-900",
            "99999999999999",
        ] {
            let r = token_request(&mut account, &creds, Some(bad), NOW);
            assert_eq!(refusal(&r).trim(), BAD_SESSION_DURATION, "{bad:?}");
        }
        // SessionDuration outlives the credentials: the console session ends after it.
        let token = token(&mut account, &creds, Some("7200"), NOW);
        let path = console_path(&mut account, &token, NOW + 60);
        let html = body(&get(&mut account, &path, NOW + 61));
        let expires = format!("<dd id=\"expires\">{}</dd>", iso8601(NOW + 60 + 7200));
        assert!(html.contains(&expires), "{html}");
        // Still open after the credentials expired, ended after SessionDuration.
        assert_eq!(get(&mut account, &path, NOW + 3700).status, 200);
        let ended = get(&mut account, &path, NOW + 60 + 7200);
        assert_eq!(ended.status, 403);
        assert!(body(&ended).contains("This console session ended at"));
        assert_eq!(get(&mut account, "/console?c=nope", NOW).status, 404);
        assert_eq!(get(&mut account, "/console", NOW).status, 404);
    }

    #[test]
    fn tokens_last_fifteen_minutes_and_credentials_bound_the_console() {
        let mut account = account();
        let creds = role_session(&mut account, 3600);
        let first = token(&mut account, &creds, None, NOW);
        let second = token(&mut account, &creds, None, NOW);
        assert_ne!(first, second);
        let late = login(&mut account, &first, DEST, NOW + TOKEN_LIFETIME_SECS);
        assert!(refusal(&late).contains(&escape(INVALID_LINK)));
        console_path(&mut account, &second, NOW + TOKEN_LIFETIME_SECS - 1);
        // A token outliving its credentials opens nothing.
        let short = role_session(&mut account, 900);
        let token = token(&mut account, &short, None, NOW + 600);
        let r = login(&mut account, &token, DEST, NOW + 900);
        assert!(refusal(&r).contains(&escape(INVALID_LINK)));
        assert_eq!(
            (account.counts.logins, account.counts.refused_logins),
            (1, 2)
        );
    }

    #[test]
    fn incomplete_links_and_hostile_destinations() {
        let mut account = account();
        let creds = role_session(&mut account, 3600);
        let token = token(&mut account, &creds, None, NOW);
        let no_destination = format!("/federation?Action=login&SigninToken={}", enc(&token));
        let r = get(&mut account, &no_destination, NOW);
        assert!(refusal(&r).contains("has no Destination or no SigninToken"));
        assert!(!body(&r).contains(&token));
        let r = get(
            &mut account,
            &format!("/federation?Action=login&Destination={}", enc(DEST)),
            NOW,
        );
        assert!(refusal(&r).contains("has no Destination or no SigninToken"));
        let r = login(&mut account, &token, "javascript:alert(1)", NOW);
        assert!(refusal(&r).contains("is not an http:// or https:// URL"));
        assert_eq!(account.counts.refused_logins, 3);
        // The token survived the refusals; the hostile destination is shown escaped.
        let hostile = "https://x/?a=1&b=\"><script>alert('x')</script>";
        let r = login(&mut account, &token, hostile, NOW);
        let path = header(&r, "location").unwrap().to_owned();
        let html = body(&get(&mut account, &path, NOW));
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains(
            "<dd id=\"destination\">https://x/?a=1&amp;b=&quot;&gt;&lt;script&gt;alert(&#39;x&#39;)\
             &lt;/script&gt;</dd>"
        ));
    }

    #[test]
    fn escapes_html_specials() {
        assert_eq!(escape("a&<>\"'b"), "a&amp;&lt;&gt;&quot;&#39;b");
        assert_eq!(escape("plain — text"), "plain — text");
        assert!(is_http_url("HTTPS://console.aws.amazon.com/"));
        assert!(!is_http_url("https://"));
        assert!(!is_http_url("ftp://x"));
    }
}
