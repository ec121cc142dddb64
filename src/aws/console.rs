//! The browser hand-off: a console sign-in URL from role credentials, through AWS's federation
//! endpoint (`Action=getSigninToken`, then `Action=login`).
//!
//! The federation endpoint refuses GetSessionToken credentials, so the URL is always made from
//! an AssumeRole session (made with the two-person session; the caller does that). It refuses
//! `SessionDuration` for role sessions made with temporary credentials, which ours always are,
//! so none is sent: the console session ends when the role session does (at most 1 h).

use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use zeroize::Zeroizing;

use super::sts::Session;
use super::{net, Deadlines, Failure};

/// A sign-in token, and so the URL, is valid this long (AWS: 15 minutes).
pub const SIGNIN_TOKEN_LIFETIME_SECS: u64 = 15 * 60;

/// Why no sign-in token was obtained.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The endpoint breaks the endpoint policy ([`super::endpoint::allowed`]: https, or plain
    /// http only to this machine); nothing was sent.
    #[error("refusing to call the sign-in endpoint {endpoint}: plain http to a host other than this machine would put the role session's credentials on the network unencrypted")]
    InsecureEndpoint {
        /// The federation endpoint's URL.
        endpoint: String,
    },
    /// No answer from the federation endpoint within the deadlines, or the answer's body could
    /// not be read.
    #[error("the sign-in endpoint {endpoint} could not be reached: {failure} (after {})", net::secs(*elapsed))]
    Unreachable {
        /// The federation endpoint's URL.
        endpoint: String,
        /// What went wrong.
        failure: Failure,
        /// From the start of the request to the failure.
        elapsed: Duration,
    },
    /// The endpoint answered with an HTTP status other than 200.
    #[error("the sign-in endpoint {endpoint} refused the role session (HTTP {status}): {detail}")]
    Refused {
        /// The federation endpoint's URL.
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// The start of the answer's body, as one printable line.
        detail: String,
    },
    /// A 200 answer that is not JSON with a non-empty `SigninToken`.
    #[error("the sign-in endpoint {endpoint} answered with something other than a sign-in token (HTTP {status}, {what})")]
    NotAToken {
        /// The federation endpoint's URL.
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// What came instead (its content type, or JSON without the token).
        what: String,
    },
}

/// The AWS partition of a region: its sign-in and console domains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partition {
    /// The commercial partition (`aws`).
    Aws,
    /// China (`aws-cn`): regions `cn-*`.
    China,
    /// AWS GovCloud (US) (`aws-us-gov`): regions `us-gov-*`.
    GovCloud,
}

impl Partition {
    /// The partition of `region`, by its prefix; any region not `cn-` or `us-gov-` is `aws`.
    pub fn of_region(region: &str) -> Self {
        if region.starts_with("cn-") {
            Self::China
        } else if region.starts_with("us-gov-") {
            Self::GovCloud
        } else {
            Self::Aws
        }
    }

    /// The partition name in ARNs.
    pub fn arn_name(self) -> &'static str {
        match self {
            Self::Aws => "aws",
            Self::China => "aws-cn",
            Self::GovCloud => "aws-us-gov",
        }
    }

    fn console_domain(self) -> &'static str {
        match self {
            Self::Aws => "console.aws.amazon.com",
            Self::China => "console.amazonaws.cn",
            Self::GovCloud => "console.amazonaws-us-gov.com",
        }
    }
}

/// The federation endpoint: `signin.aws.amazon.com` (regional `REGION.signin.aws.amazon.com`
/// when a region is asked for), `signin.amazonaws.cn` for `cn-*`, `signin.amazonaws-us-gov.com`
/// for `us-gov-*`.
pub fn federation_endpoint(partition: Partition, region: Option<&str>) -> String {
    match (partition, region) {
        (Partition::Aws, Some(r)) => format!("https://{r}.signin.aws.amazon.com/federation"),
        (Partition::Aws, None) => "https://signin.aws.amazon.com/federation".into(),
        (Partition::China, _) => "https://signin.amazonaws.cn/federation".into(),
        (Partition::GovCloud, _) => "https://signin.amazonaws-us-gov.com/federation".into(),
    }
}

/// The console's home page in the partition (in `region` when given).
pub fn console_home(partition: Partition, region: Option<&str>) -> String {
    let domain = partition.console_domain();
    match region {
        Some(r) => format!("https://{domain}/console/home?region={r}"),
        None => format!("https://{domain}/"),
    }
}

/// A `--destination` that is not a page of the partition's console.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("destination {url:?} is not an https:// URL of the console ({domain} or a subdomain)")]
pub struct BadDestination {
    /// The URL given.
    pub url: String,
    /// The partition's console domain.
    pub domain: &'static str,
}

/// A destination must be an https URL on the partition's console domain (or a subdomain of
/// it, such as `us-east-1.console.aws.amazon.com`), so that the link cannot send the session
/// anywhere else.
pub fn check_destination(url: &str, partition: Partition) -> Result<(), BadDestination> {
    let domain = partition.console_domain();
    let bad = || {
        Err(BadDestination {
            url: url.to_owned(),
            domain,
        })
    };
    let Some(rest) = url.strip_prefix("https://") else {
        return bad();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') || authority.contains(':') {
        return bad();
    }
    let host = authority.to_ascii_lowercase();
    if host == domain || host.ends_with(&format!(".{domain}")) {
        Ok(())
    } else {
        bad()
    }
}

/// RFC 3986 percent-encoding of everything but the unreserved characters. Written here (ten
/// lines) rather than taken from a crate because the output goes into a secret buffer sized
/// up front.
fn encode_into(out: &mut Vec<u8>, text: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in text {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
}

/// Builds `base?k1=v1&k2=v2` with encoded values, in a wiped buffer sized for the worst case.
fn url_with(base: &str, params: &[(&str, &[u8])]) -> Zeroizing<String> {
    let cap = base.len()
        + params
            .iter()
            .map(|(k, v)| k.len() + 2 + 3 * v.len())
            .sum::<usize>();
    let mut out = Zeroizing::new(Vec::with_capacity(cap));
    out.extend_from_slice(base.as_bytes());
    for (i, (k, v)) in params.iter().enumerate() {
        out.push(if i == 0 { b'?' } else { b'&' });
        out.extend_from_slice(k.as_bytes());
        out.push(b'=');
        encode_into(&mut out, v);
    }
    // Only ASCII was written.
    Zeroizing::new(String::from_utf8_lossy(&out).into_owned())
}

/// The `Session` parameter: `{"sessionId":…,"sessionKey":…,"sessionToken":…}`.
pub fn session_json(s: &Session) -> Zeroizing<String> {
    let fields = [
        ("sessionId", s.access_key_id.as_str()),
        ("sessionKey", s.secret_access_key.expose_secret()),
        ("sessionToken", s.session_token.expose_secret()),
    ];
    let cap = 64 + fields.iter().map(|(_, v)| 6 * v.len()).sum::<usize>();
    let mut out = Zeroizing::new(Vec::with_capacity(cap));
    out.push(b'{');
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(format!("\"{k}\":").as_bytes());
        // Writing a &str into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, v);
    }
    out.push(b'}');
    Zeroizing::new(String::from_utf8_lossy(&out).into_owned())
}

/// The `getSigninToken` request URL.
pub fn token_request_url(endpoint: &str, s: &Session) -> Zeroizing<String> {
    let json = session_json(s);
    url_with(
        endpoint,
        &[("Action", b"getSigninToken"), ("Session", json.as_bytes())],
    )
}

/// The sign-in URL: `Action=login&Issuer=…&Destination=…&SigninToken=…`. A secret.
pub fn login_url(
    endpoint: &str,
    issuer: &str,
    destination: &str,
    token: &str,
) -> Zeroizing<String> {
    url_with(
        endpoint,
        &[
            ("Action", b"login"),
            ("Issuer", issuer.as_bytes()),
            ("Destination", destination.as_bytes()),
            ("SigninToken", token.as_bytes()),
        ],
    )
}

/// What went wrong in a ureq request.
fn failure_of(e: &ureq::Error, deadlines: &Deadlines) -> Failure {
    use ureq::Timeout as T;
    match e {
        ureq::Error::Timeout(T::Connect | T::Resolve) => Failure::ConnectTimeout {
            limit: deadlines.connect,
        },
        ureq::Error::Timeout(_) => Failure::CallTimeout {
            limit: deadlines.call,
        },
        ureq::Error::HostNotFound => Failure::Dns,
        ureq::Error::ConnectionFailed => Failure::Refused,
        ureq::Error::Io(io) => net::failure_of(io, deadlines),
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) => Failure::Tls {
            detail: net::one_line(&e.to_string()),
        },
        ureq::Error::Protocol(_) => Failure::NotHttp,
        _ => Failure::Io {
            detail: net::one_line(&e.to_string()),
        },
    }
}

/// Asks the federation endpoint for a sign-in token for role credentials, within `deadlines`
/// (the connection within `connect`, the whole exchange within `call`; not retried). The
/// endpoint must pass the endpoint policy ([`super::endpoint::allowed`]), else
/// [`Error::InsecureEndpoint`] before any connection; a redirect is not followed (the
/// federation endpoint answers this call directly), so the request goes nowhere else.
pub fn get_signin_token(
    endpoint: &str,
    s: &Session,
    deadlines: &Deadlines,
) -> Result<Zeroizing<String>, Error> {
    if !super::endpoint::allowed(endpoint) {
        return Err(Error::InsecureEndpoint {
            endpoint: endpoint.to_owned(),
        });
    }
    let started = Instant::now();
    let url = token_request_url(endpoint, s);
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(deadlines.connect))
            .timeout_global(Some(deadlines.call))
            .build(),
    );
    let unreachable = |e: ureq::Error| Error::Unreachable {
        endpoint: endpoint.to_owned(),
        failure: failure_of(&e, deadlines),
        elapsed: started.elapsed(),
    };
    let mut response = agent.get(url.as_str()).call().map_err(unreachable)?;
    drop(url);
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("no content type")
        .to_owned();
    let body = Zeroizing::new(
        response
            .body_mut()
            .with_config()
            .limit(64 * 1024)
            .read_to_vec()
            .map_err(unreachable)?,
    );
    if status != 200 {
        return Err(Error::Refused {
            endpoint: endpoint.to_owned(),
            status,
            detail: printable_excerpt(&body),
        });
    }
    let not_a_token = |what: String| Error::NotAToken {
        endpoint: endpoint.to_owned(),
        status,
        what,
    };
    let value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|_| not_a_token(format!("{content_type}, not JSON")))?;
    match value.get("SigninToken").and_then(|t| t.as_str()) {
        Some(t) if !t.is_empty() => Ok(Zeroizing::new(t.to_owned())),
        _ => Err(not_a_token("JSON without a SigninToken".into())),
    }
}

/// The start of an error body, as one printable line (an error page, never a token).
fn printable_excerpt(body: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(&body[..body.len().min(300)])
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        "no explanation given".into()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn session() -> Session {
        Session {
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: SecretString::from("wJalr/K7+MDENG=\"q".to_owned()),
            session_token: SecretString::from("FwoGZX&tok en".to_owned()),
            expiration: 0,
        }
    }

    #[test]
    fn partitions_and_hosts() {
        assert_eq!(Partition::of_region("eu-west-1"), Partition::Aws);
        assert_eq!(Partition::of_region("cn-north-1"), Partition::China);
        assert_eq!(Partition::of_region("us-gov-west-1"), Partition::GovCloud);
        assert_eq!(
            federation_endpoint(Partition::Aws, None),
            "https://signin.aws.amazon.com/federation"
        );
        assert_eq!(
            federation_endpoint(Partition::Aws, Some("eu-central-1")),
            "https://eu-central-1.signin.aws.amazon.com/federation"
        );
        assert_eq!(
            federation_endpoint(Partition::China, Some("cn-north-1")),
            "https://signin.amazonaws.cn/federation"
        );
        assert_eq!(
            federation_endpoint(Partition::GovCloud, Some("us-gov-west-1")),
            "https://signin.amazonaws-us-gov.com/federation"
        );
        assert_eq!(
            console_home(Partition::Aws, None),
            "https://console.aws.amazon.com/"
        );
        assert_eq!(
            console_home(Partition::China, Some("cn-north-1")),
            "https://console.amazonaws.cn/console/home?region=cn-north-1"
        );
        assert_eq!(Partition::GovCloud.arn_name(), "aws-us-gov");
    }

    #[test]
    fn destinations_stay_on_the_partitions_console() {
        let ok = |u| check_destination(u, Partition::Aws).is_ok();
        assert!(ok("https://console.aws.amazon.com/"));
        assert!(ok(
            "https://us-east-1.console.aws.amazon.com/ec2/home?region=us-east-1"
        ));
        assert!(!ok("http://console.aws.amazon.com/"));
        assert!(!ok("https://console.aws.amazon.com.evil.example/"));
        assert!(!ok("https://evilconsole.aws.amazon.com/"));
        assert!(!ok("https://user@console.aws.amazon.com/"));
        assert!(!ok("https://console.aws.amazon.com:8443/"));
        assert!(!ok("https://console.amazonaws.cn/"));
        assert!(check_destination("https://console.amazonaws.cn/", Partition::China).is_ok());
    }

    #[test]
    fn session_json_and_urls_are_encoded() {
        let s = session();
        let json = session_json(&s);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["sessionId"], "ASIAEXAMPLE");
        assert_eq!(v["sessionKey"], "wJalr/K7+MDENG=\"q");
        assert_eq!(v["sessionToken"], "FwoGZX&tok en");
        let url = token_request_url("https://signin.aws.amazon.com/federation", &s);
        assert_eq!(
            url.as_str(),
            "https://signin.aws.amazon.com/federation?Action=getSigninToken&Session=\
             %7B%22sessionId%22%3A%22ASIAEXAMPLE%22%2C%22sessionKey%22%3A%22wJalr%2FK7%2BMDENG%3D%5C%22q%22%2C\
             %22sessionToken%22%3A%22FwoGZX%26tok%20en%22%7D"
        );
        let login = login_url(
            "https://signin.aws.amazon.com/federation",
            "breakglass",
            "https://console.aws.amazon.com/",
            "tok+/=",
        );
        assert_eq!(
            login.as_str(),
            "https://signin.aws.amazon.com/federation?Action=login&Issuer=breakglass\
             &Destination=https%3A%2F%2Fconsole.aws.amazon.com%2F&SigninToken=tok%2B%2F%3D"
        );
    }

    #[test]
    fn an_insecure_signin_endpoint_is_refused_before_any_connection() {
        let e = get_signin_token(
            "http://10.0.0.1:9/federation",
            &session(),
            &Deadlines::default(),
        )
        .unwrap_err();
        assert!(
            matches!(&e, Error::InsecureEndpoint { endpoint } if endpoint == "http://10.0.0.1:9/federation"),
            "{e}"
        );
    }

    #[test]
    fn error_bodies_become_one_printable_line() {
        assert_eq!(
            printable_excerpt(b"<html>\n  Invalid\tcredentials\r\n</html>"),
            "<html> Invalid credentials </html>"
        );
        assert_eq!(printable_excerpt(b""), "no explanation given");
    }
}
