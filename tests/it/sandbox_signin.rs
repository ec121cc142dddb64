//! The emulator's sign-in (federation) endpoint over real HTTP (ureq): getSigninToken with
//! credentials from the crate's STS client and the AWS SDK, login's redirect, the console
//! page, and the refusals AWS documents.

use aws_sdk_sts::config::{BehaviorVersion, Region};
use breakglass::aws::sts::{self, AssumeRole, Session};
use breakglass::aws::Signer;
use secrecy::{ExposeSecret, SecretString};

use crate::common::emulator;

const DESTINATION: &str = "https://console.aws.amazon.com/";
const INVALID_LINK: &str = "This sign-in link is invalid, expired or was already used. \
    Run `breakglass console` again.";

fn unix_now() -> i64 {
    i64::try_from(emulator::unix_now()).unwrap()
}

/// The shared emulator rig with two roles.
struct Rig {
    base: emulator::Rig,
    /// Requires MFA, as a break-glass role does.
    admin: String,
    /// Trusts the account without MFA (assumable with the long-term key).
    ops: String,
}

impl std::ops::Deref for Rig {
    type Target = emulator::Rig;
    fn deref(&self) -> &emulator::Rig {
        &self.base
    }
}

impl Rig {
    fn new() -> Self {
        let base = emulator::Rig::new();
        let admin = base.sts.create_role("breakglass-admin", true);
        let ops = base.sts.create_role("ops", false);
        Self { base, admin, ops }
    }

    /// GetSessionToken with the code of the current window, as `unlock` does.
    async fn mfa_session(&self) -> Session {
        self.base.mfa_session(3600).await
    }

    /// The break-glass role assumed from an MFA session through the AWS SDK *without*
    /// DurationSeconds (the crate's client always sends it), with both holders' names.
    async fn admin_session(&self) -> Creds {
        let base = self.mfa_session().await;
        self.assume_admin(&base).await
    }

    /// The break-glass role assumed from `base` as [`Rig::admin_session`] does.
    async fn assume_admin(&self, base: &Session) -> Creds {
        let config = aws_sdk_sts::Config::builder()
            .endpoint_url(self.sts.endpoint())
            .region(Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sts::config::Credentials::new(
                &base.access_key_id,
                base.secret_access_key.expose_secret(),
                Some(base.session_token.expose_secret().to_owned()),
                None,
                "test",
            ))
            .behavior_version(BehaviorVersion::latest())
            .build();
        let out = aws_sdk_sts::Client::from_conf(config)
            .assume_role()
            .role_arn(&self.admin)
            .role_session_name("alice+bob")
            .source_identity("alice+bob")
            .send()
            .await
            .unwrap();
        let c = out.credentials().unwrap();
        Creds {
            id: c.access_key_id().to_owned(),
            key: c.secret_access_key().to_owned(),
            token: c.session_token().to_owned(),
        }
    }

    /// `ops` assumed with the crate's client signed by `signer`, with DurationSeconds if given.
    async fn ops_session(&self, signer: &Signer<'_>, secs: Option<u64>) -> Creds {
        let req = AssumeRole {
            role_arn: &self.ops,
            session_name: "incident-7",
            source_identity: "",
            duration_secs: secs,
        };
        let assumed = sts::assume_role(&self.endpoint, signer, &req, emulator::unix_now())
            .await
            .unwrap();
        Creds::from(&assumed.session)
    }

    fn get_signin_token(&self, creds: &Creds, duration: Option<&str>) -> Answer {
        let mut request = agent(false)
            .get(self.sts.federation_endpoint())
            .query("Action", "getSigninToken")
            .query("Session", creds.json());
        if let Some(duration) = duration {
            request = request.query("SessionDuration", duration);
        }
        Answer::of(request.call().unwrap())
    }

    /// A sign-in token for `creds`, asserting success.
    fn signin_token(&self, creds: &Creds, duration: Option<&str>) -> String {
        let answer = self.get_signin_token(creds, duration);
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.content_type(), "application/json");
        let json: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
        let token = json["SigninToken"].as_str().unwrap().to_owned();
        assert_eq!(json.as_object().unwrap().len(), 1, "{}", answer.body);
        token
    }

    fn login(&self, token: &str, destination: &str) -> Answer {
        let request = agent(false)
            .get(self.sts.federation_endpoint())
            .query("Action", "login")
            .query("Issuer", "https://breakglass.invalid/")
            .query("Destination", destination)
            .query("SigninToken", token);
        Answer::of(request.call().unwrap())
    }

    /// Logs in with `token`, asserting the redirect; returns the console page's URL.
    fn console_url(&self, token: &str, destination: &str) -> String {
        let answer = self.login(token, destination);
        assert_eq!(answer.status, 302, "{}", answer.body);
        let location = answer.location.expect("a Location header");
        assert!(location.starts_with("/console?c="), "{location}");
        format!("{}{location}", self.sts.endpoint())
    }
}

/// Temporary credentials as the federation endpoint's `Session` JSON wants them.
#[derive(Clone)]
struct Creds {
    id: String,
    key: String,
    token: String,
}

impl Creds {
    fn from(session: &Session) -> Self {
        Self {
            id: session.access_key_id.clone(),
            key: session.secret_access_key.expose_secret().to_owned(),
            token: session.session_token.expose_secret().to_owned(),
        }
    }

    fn json(&self) -> String {
        serde_json::json!({
            "sessionId": self.id,
            "sessionKey": self.key,
            "sessionToken": self.token,
        })
        .to_string()
    }

    fn signer(&self) -> (SecretString, SecretString) {
        (
            SecretString::from(self.key.as_str()),
            SecretString::from(self.token.as_str()),
        )
    }
}

/// An agent that reports every status as a response; `follow` follows redirects.
fn agent(follow: bool) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(if follow { 5 } else { 0 })
        .build()
        .new_agent()
}

struct Answer {
    status: u16,
    location: Option<String>,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn of(response: ureq::http::Response<ureq::Body>) -> Self {
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap().to_owned()))
            .collect();
        let location = response
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = response.into_body().read_to_string().unwrap();
        Self {
            status,
            location,
            headers,
            body,
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn content_type(&self) -> &str {
        self.header("content-type").unwrap_or_default()
    }

    /// Asserts a 400 and returns the body.
    fn refused(&self) -> &str {
        assert_eq!(self.status, 400, "{}", self.body);
        &self.body
    }
}

fn page(url: &str) -> Answer {
    Answer::of(agent(false).get(url).call().unwrap())
}

/// The text of the element with `id` on a console page.
fn field<'p>(html: &'p str, id: &str) -> &'p str {
    let open = format!("id=\"{id}\">");
    let start = html
        .find(&open)
        .unwrap_or_else(|| panic!("no #{id}: {html}"))
        + open.len();
    let end = start + html[start..].find('<').unwrap();
    &html[start..end]
}

#[tokio::test]
async fn full_flow_token_login_console_page() {
    let rig = Rig::new();
    let creds = rig.admin_session().await;
    let token = rig.signin_token(&creds, None);
    assert!((280..=320).contains(&token.len()), "{}", token.len());
    assert!(token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));

    let url = rig.console_url(&token, DESTINATION);
    let console = page(&url);
    assert_eq!(console.status, 200, "{}", console.body);
    assert_eq!(console.content_type(), "text/html; charset=utf-8");
    let html = &console.body;
    assert!(
        html.contains("<title>AWS Management Console — breakglass sandbox</title>"),
        "{html}"
    );
    assert_eq!(field(html, "account"), "123456789012");
    assert_eq!(
        field(html, "role-arn"),
        "arn:aws:sts::123456789012:assumed-role/breakglass-admin/alice+bob"
    );
    assert_eq!(field(html, "session-name"), "alice+bob");
    assert_eq!(field(html, "source-identity"), "alice+bob");
    assert_eq!(field(html, "destination"), DESTINATION);
    // AssumeRole's default duration: one hour from now.
    let expires = aws_smithy_types::DateTime::from_str(
        field(html, "expires"),
        aws_smithy_types::date_time::Format::DateTime,
    )
    .unwrap()
    .secs();
    let left = expires - unix_now();
    assert!((3590..=3600).contains(&left), "{left}");
    // Neither the credentials nor the token show anywhere.
    assert!(!html.contains(&creds.key) && !html.contains(&creds.token) && !html.contains(&token));

    let counts = rig.sts.counts();
    assert_eq!(
        (counts.signin_tokens, counts.logins, counts.refused_logins),
        (1, 1, 0)
    );

    // A browser-like client follows the redirect to the page itself.
    let token = rig.signin_token(&creds, None);
    let followed = agent(true)
        .get(rig.sts.federation_endpoint())
        .query("Action", "login")
        .query("Destination", DESTINATION)
        .query("SigninToken", &token)
        .call()
        .unwrap();
    let followed = Answer::of(followed);
    assert_eq!(followed.status, 200);
    assert_eq!(field(&followed.body, "session-name"), "alice+bob");

    // An unknown console id is a 404 page.
    let missing = page(&format!("{}/console?c=nope", rig.sts.endpoint()));
    assert_eq!(missing.status, 404);
}

#[tokio::test]
async fn get_session_token_credentials_are_refused() {
    let rig = Rig::new();
    let base = rig.mfa_session().await;
    let creds = Creds::from(&base);
    let answer = rig.get_signin_token(&creds, None);
    let text = answer.refused();
    assert!(answer.content_type().starts_with("text/plain"));
    assert!(
        text.contains("GetSessionToken credentials cannot"),
        "{text}"
    );
    assert!(!text.contains(&creds.key) && !text.contains(&creds.token));
    assert_eq!(rig.sts.counts().signin_tokens, 0);
}

#[tokio::test]
async fn wrong_key_or_token_is_refused() {
    let rig = Rig::new();
    let base = rig.mfa_session().await;
    let creds = rig.assume_admin(&base).await;
    let other = rig.assume_admin(&base).await;
    let wrong_key = Creds {
        key: other.key.clone(),
        ..creds.clone()
    };
    let wrong_token = Creds {
        token: other.token.clone(),
        ..creds.clone()
    };
    let unknown = Creds {
        id: "ASIAAAAAAAAAAAAAAAAA".into(),
        ..creds.clone()
    };
    for bad in [&wrong_key, &wrong_token, &unknown] {
        let answer = rig.get_signin_token(bad, None);
        let text = answer.refused();
        assert!(text.starts_with("Invalid credentials"), "{text}");
        for secret in [&creds.key, &creds.token, &other.key, &other.token] {
            assert!(!text.contains(secret.as_str()));
        }
    }
    let answer = agent(false)
        .get(rig.sts.federation_endpoint())
        .query("Action", "getSigninToken")
        .query("Session", "not json")
        .call()
        .unwrap();
    assert!(Answer::of(answer)
        .refused()
        .starts_with("Invalid Session parameter"));
    assert_eq!(rig.sts.counts().signin_tokens, 0);
    // The right credentials still work.
    rig.signin_token(&creds, None);
}

#[tokio::test]
async fn sign_in_tokens_are_single_use() {
    let rig = Rig::new();
    let creds = rig.admin_session().await;
    let token = rig.signin_token(&creds, None);
    rig.console_url(&token, DESTINATION);
    let again = rig.login(&token, DESTINATION);
    let html = again.refused();
    assert!(again.content_type().starts_with("text/html"));
    assert!(html.contains(INVALID_LINK), "{html}");
    assert!(!html.contains(&token));
    let made_up = rig.login("AAAA", DESTINATION);
    assert!(made_up.refused().contains(INVALID_LINK));
    let counts = rig.sts.counts();
    assert_eq!((counts.logins, counts.refused_logins), (1, 2));
}

#[tokio::test]
async fn sign_in_tokens_expire_after_fifteen_minutes() {
    let rig = Rig::new();
    let creds = rig.admin_session().await;
    let token = rig.signin_token(&creds, None);
    let fresh = rig.signin_token(&creds, None);
    rig.sts.set_clock_offset(16 * 60);
    assert!(rig
        .login(&token, DESTINATION)
        .refused()
        .contains(INVALID_LINK));
    // Back to 14 minutes after the issue: the other token still works.
    rig.sts.set_clock_offset(14 * 60);
    rig.console_url(&fresh, DESTINATION);
    let counts = rig.sts.counts();
    assert_eq!((counts.logins, counts.refused_logins), (1, 1));
}

#[tokio::test]
async fn session_duration_is_checked_and_bounds_the_console() {
    let rig = Rig::new();
    // Assumed with the long-term key: DurationSeconds and SessionDuration are both allowed.
    let creds = rig.ops_session(&rig.key(), Some(900)).await;
    for bad in ["899", "43201", "abc", "-900", ""] {
        let answer = rig.get_signin_token(&creds, Some(bad));
        let text = answer.refused();
        assert!(
            text.starts_with("Invalid SessionDuration"),
            "{bad:?}: {text}"
        );
    }
    let token = rig.signin_token(&creds, Some("43200"));
    let html = page(&rig.console_url(&token, DESTINATION)).body;
    assert_eq!(
        field(&html, "role-arn"),
        "arn:aws:sts::123456789012:assumed-role/ops/incident-7"
    );
    assert_eq!(field(&html, "source-identity"), "(none)");
    let expires = aws_smithy_types::DateTime::from_str(
        field(&html, "expires"),
        aws_smithy_types::date_time::Format::DateTime,
    )
    .unwrap()
    .secs();
    let left = expires - unix_now();
    assert!((43190..=43200).contains(&left), "{left}");

    // Assumed from the MFA session (temporary credentials) without DurationSeconds: a token,
    // but no SessionDuration.
    let chained = rig.admin_session().await;
    let text = rig
        .get_signin_token(&chained, Some("3600"))
        .refused()
        .to_owned();
    assert!(text.starts_with("Invalid credentials parameter"), "{text}");
    rig.signin_token(&chained, None);
}

#[tokio::test]
async fn duration_seconds_with_temporary_credentials_is_refused() {
    let rig = Rig::new();
    // DurationSeconds on an AssumeRole made with the MFA session (temporary credentials): AWS
    // documents that the federation endpoint then refuses the session.
    let base = rig.mfa_session().await;
    let base_creds = Creds::from(&base);
    let (secret, token) = base_creds.signer();
    let signer = Signer {
        access_key_id: &base_creds.id,
        secret_access_key: &secret,
        session_token: Some(&token),
    };
    let creds = rig.ops_session(&signer, Some(900)).await;
    let text = rig.get_signin_token(&creds, None).refused().to_owned();
    assert!(text.starts_with("Invalid credentials parameter"), "{text}");
    assert!(text.contains("DurationSeconds"), "{text}");
    assert_eq!(rig.sts.counts().signin_tokens, 0);
    // Without DurationSeconds, as `breakglass console` calls it, the same path gets a token.
    let creds = rig.ops_session(&signer, None).await;
    rig.signin_token(&creds, None);
    assert_eq!(rig.sts.counts().signin_tokens, 1);
}

#[tokio::test]
async fn hostile_destination_is_escaped() {
    let rig = Rig::new();
    let creds = rig.admin_session().await;
    let token = rig.signin_token(&creds, None);
    let hostile = "https://console.aws.amazon.com/?x=\"><script>alert('pwned')</script>&y=<b>";
    let console = page(&rig.console_url(&token, hostile));
    assert_eq!(console.status, 200);
    let html = &console.body;
    assert!(
        !html.contains("<script>") && !html.contains("<b>"),
        "{html}"
    );
    assert_eq!(
        field(html, "destination"),
        "https://console.aws.amazon.com/?x=&quot;&gt;&lt;script&gt;alert(&#39;pwned&#39;)\
         &lt;/script&gt;&amp;y=&lt;b&gt;"
    );
    let csp = console.header("content-security-policy").unwrap();
    assert!(csp.starts_with("default-src 'none'"), "{csp}");

    // Incomplete links are refused and leave the token usable.
    let token = rig.signin_token(&creds, None);
    let no_destination = agent(false)
        .get(rig.sts.federation_endpoint())
        .query("Action", "login")
        .query("SigninToken", &token)
        .call()
        .unwrap();
    let no_destination = Answer::of(no_destination);
    assert!(no_destination
        .refused()
        .contains("no Destination or no SigninToken"));
    let no_token = rig.login("", DESTINATION);
    no_token.refused();
    let not_http = rig.login(&token, "javascript:alert(1)");
    assert!(not_http
        .refused()
        .contains("not an http:// or https:// URL"));
    rig.console_url(&token, DESTINATION);
    let counts = rig.sts.counts();
    assert_eq!((counts.logins, counts.refused_logins), (2, 3));
}
