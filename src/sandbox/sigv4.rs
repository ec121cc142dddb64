//! AWS Signature Version 4 verification for the sandbox emulators: parse the `Authorization`
//! header, compute the signature the claimed key gives the request with the `aws-sigv4`
//! crate, compare in constant time.
//!
//! Header-based signing only (`AWS4-HMAC-SHA256`); presigned query strings are not accepted.

use std::borrow::Cow;
use std::time::{Duration, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, SignableBody, SignableRequest, SigningParams, SigningSettings, UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use data_encoding::HEXLOWER;
use ring::digest;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

/// The only signing algorithm accepted.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The last element of every credential scope.
pub const TERMINATOR: &str = "aws4_request";

/// `DATE/REGION/SERVICE/aws4_request` from the `Credential=` element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub date: String,
    pub region: String,
    pub service: String,
    pub terminator: String,
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            date,
            region,
            service,
            terminator,
        } = self;
        write!(f, "{date}/{region}/{service}/{terminator}")
    }
}

/// A parsed `Authorization: AWS4-HMAC-SHA256 …` header.
#[derive(Debug, Clone)]
pub struct Authorization {
    pub access_key_id: String,
    pub scope: Scope,
    /// Lower-case header names, in the order the client listed them.
    pub signed_headers: Vec<String>,
    signature: Vec<u8>,
}

/// Why an `Authorization` header could not be parsed (AWS answers `IncompleteSignature`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    #[error("Unsupported AWS 'algorithm': '{0}'")]
    Algorithm(String),
    #[error("Authorization header requires '{0}' parameter.")]
    Missing(&'static str),
    #[error(
        "Credential must have exactly 5 slash-delimited elements, e.g. \
         keyid/date/region/service/term, got '{0}'"
    )]
    Credential(String),
    #[error("Signature must be 64 lower-case hexadecimal characters.")]
    Signature,
}

/// Parses `AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`.
pub fn parse_authorization(value: &str) -> Result<Authorization, ParseError> {
    let (algorithm, rest) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    if algorithm != ALGORITHM {
        return Err(ParseError::Algorithm(algorithm.to_owned()));
    }
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for element in rest.split(',') {
        match element.trim().split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => {}
        }
    }
    let credential = credential.ok_or(ParseError::Missing("Credential"))?;
    let signed = signed.ok_or(ParseError::Missing("SignedHeaders"))?;
    let signature = signature.ok_or(ParseError::Missing("Signature"))?;
    let parts: Vec<&str> = credential.split('/').collect();
    let [key, date, region, service, terminator] = parts[..] else {
        return Err(ParseError::Credential(credential.to_owned()));
    };
    if key.is_empty() || signed.is_empty() {
        return Err(ParseError::Credential(credential.to_owned()));
    }
    let signature = (signature.len() == 64)
        .then(|| HEXLOWER.decode(signature.as_bytes()).ok())
        .flatten()
        .ok_or(ParseError::Signature)?;
    Ok(Authorization {
        access_key_id: key.to_owned(),
        scope: Scope {
            date: date.to_owned(),
            region: region.to_owned(),
            service: service.to_owned(),
            terminator: terminator.to_owned(),
        },
        signed_headers: signed.split(';').map(str::to_ascii_lowercase).collect(),
        signature,
    })
}

/// The parts of a request that SigV4 covers.
pub struct Message<'a> {
    /// The method, as sent.
    pub method: &'a str,
    /// The request target as sent: path and optional `?query`, percent-encoded.
    pub target: &'a str,
    /// Lower-case names, as received.
    pub headers: &'a [(String, String)],
    /// Lower-case hex SHA-256 of the payload.
    pub payload_hash: &'a str,
}

/// Hex SHA-256 of `data`.
pub fn hex_sha256(data: &[u8]) -> String {
    HEXLOWER.encode(digest::digest(&digest::SHA256, data).as_ref())
}

/// True when `authorization` carries the signature that the holder of `secret` gives
/// `message` signed at `signed_at` (Unix seconds) in `authorization`'s scope, compared in
/// constant time.
pub fn verify(
    secret: &SecretString,
    authorization: &Authorization,
    signed_at: i64,
    message: &Message<'_>,
) -> bool {
    let expected = expected_signature(secret, authorization, signed_at, message)
        .and_then(|hex| HEXLOWER.decode(hex.as_bytes()).ok());
    expected.is_some_and(|expected| bool::from(expected.ct_eq(&authorization.signature)))
}

/// The signature `aws-sigv4` computes for `message`, over exactly the headers the client
/// listed in `SignedHeaders` and the payload hash given; `None` when it cannot sign it.
fn expected_signature(
    secret: &SecretString,
    authorization: &Authorization,
    signed_at: i64,
    message: &Message<'_>,
) -> Option<String> {
    let time = UNIX_EPOCH.checked_add(Duration::from_secs(u64::try_from(signed_at).ok()?))?;
    let identity = Credentials::new(
        &authorization.access_key_id,
        secret.expose_secret(),
        // A session token is signed as the header the client listed, if it did.
        None,
        None,
        "breakglass-sandbox",
    )
    .into();
    let mut settings = SigningSettings::default();
    // The client's list decides; aws-sigv4's default leaves out `user-agent` and others.
    settings.excluded_headers = None;
    // Non-S3 services sign the path as sent, encoded once more, and never normalised.
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    let params: SigningParams<'_> = v4::SigningParams::builder()
        .identity(&identity)
        .region(&authorization.scope.region)
        .name(&authorization.scope.service)
        .time(time)
        .settings(settings)
        .build()
        .ok()?
        .into();
    let headers = signed_header_values(authorization, message.headers);
    // Without a host header aws-sigv4 takes the URI's authority, and there is none here.
    if !headers.iter().any(|(name, _)| *name == "host") {
        return None;
    }
    let request = SignableRequest::new(
        message.method,
        signable_target(message.target),
        headers.iter().map(|(name, value)| (*name, value.as_str())),
        SignableBody::Precomputed(message.payload_hash.to_owned()),
    )
    .ok()?;
    sign(request, &params)
        .ok()
        .map(|output| output.signature().to_owned())
}

/// Every header the client listed, once, with each of its values' whitespace runs collapsed
/// into one space (SigV4's canonical form); a listed header that is absent signs as empty.
fn signed_header_values<'a>(
    authorization: &'a Authorization,
    headers: &[(String, String)],
) -> Vec<(&'a str, String)> {
    let mut out = Vec::new();
    for (i, name) in authorization.signed_headers.iter().enumerate() {
        if authorization.signed_headers[..i].contains(name) {
            continue;
        }
        let before = out.len();
        for (_, value) in headers.iter().filter(|(n, _)| n == name) {
            out.push((
                name.as_str(),
                value.split_whitespace().collect::<Vec<_>>().join(" "),
            ));
        }
        if out.len() == before {
            out.push((name.as_str(), String::new()));
        }
    }
    out
}

/// The target for aws-sigv4, which reads the query as form encoding: a literal `+` there is
/// signed as itself (`%2B`), not as a space.
fn signable_target(target: &str) -> Cow<'_, str> {
    match target.split_once('?') {
        Some((path, query)) if query.contains('+') => {
            Cow::Owned(format!("{path}?{}", query.replace('+', "%2B")))
        }
        _ => Cow::Borrowed(target),
    }
}

/// Parses an `X-Amz-Date` (`20150830T123600Z`) into Unix seconds.
pub fn parse_amz_date(value: &str) -> Option<i64> {
    let b = value.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' || !digits(0..8) || !digits(9..15) {
        return None;
    }
    let iso = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &value[0..4],
        &value[4..6],
        &value[6..8],
        &value[9..11],
        &value[11..13],
        &value[13..15]
    );
    aws_smithy_types::DateTime::from_str(&iso, aws_smithy_types::date_time::Format::DateTime)
        .ok()
        .map(|t| t.secs())
}

/// Formats Unix seconds as an `X-Amz-Date` (`20150830T123600Z`).
pub fn format_amz_date(unix_seconds: i64) -> String {
    aws_smithy_types::DateTime::from_secs(unix_seconds)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .map(|s| s.chars().filter(|c| *c != '-' && *c != ':').collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    //! Vectors from the AWS SigV4 test suite (as shipped in the `aws-sigv4` crate), and two
    //! computed apart from it.
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const DATE: &str = "20150830T123600Z";

    fn headers(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_owned()))
            .collect()
    }

    fn check(method: &str, target: &str, hdrs: &[(&str, &str)], body: &[u8], auth: &str) {
        let auth = parse_authorization(auth).unwrap();
        let headers = headers(hdrs);
        let hash = hex_sha256(body);
        let message = Message {
            method,
            target,
            headers: &headers,
            payload_hash: &hash,
        };
        let signed_at = parse_amz_date(DATE).unwrap();
        let secret = SecretString::from(SECRET);
        assert!(verify(&secret, &auth, signed_at, &message), "{target}");
        let wrong = SecretString::from("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEX");
        assert!(!verify(&wrong, &auth, signed_at, &message));
        assert!(!verify(&secret, &auth, signed_at + 1, &message));
    }

    #[test]
    fn post_x_www_form_urlencoded_vector() {
        check(
            "POST",
            "/",
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Host", "example.amazonaws.com"),
                ("Content-Length", "13"),
                ("X-Amz-Date", DATE),
                (
                    "x-amz-content-sha256",
                    "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
                ),
            ],
            b"Param1=value1",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=content-length;content-type;host;x-amz-content-sha256;x-amz-date, \
             Signature=d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b",
        );
    }

    #[test]
    fn get_vanilla_query_order_key_case_vector() {
        check(
            "GET",
            "/?Param2=value2&Param1=value1",
            &[("Host", "example.amazonaws.com"), ("X-Amz-Date", DATE)],
            b"",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        );
    }

    #[test]
    fn get_header_value_trim_vector() {
        check(
            "GET",
            "/",
            &[
                ("Host", "example.amazonaws.com"),
                ("My-Header1", " value1"),
                ("My-Header2", " \"a   b   c\""),
                ("X-Amz-Date", DATE),
            ],
            b"",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;my-header1;my-header2;x-amz-date, \
             Signature=acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
        );
    }

    #[test]
    fn get_vanilla_with_session_token_vector() {
        check(
            "GET",
            "/",
            &[
                ("Host", "example.amazonaws.com"),
                (
                    "X-Amz-Security-Token",
                    "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267",
                ),
                ("X-Amz-Date", DATE),
            ],
            b"",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date;x-amz-security-token, \
             Signature=07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8",
        );
    }

    /// The suite's `get-space` sends the path `/example space/` raw, which is no valid request
    /// target; on the wire it is `/example%20space/`, and the canonical path encodes that
    /// again. Signature computed independently (Python `hmac`) from that canonical request.
    #[test]
    fn get_space_vector_encodes_the_path() {
        check(
            "GET",
            "/example%20space/",
            &[("Host", "example.amazonaws.com"), ("X-Amz-Date", DATE)],
            b"",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=446b817944c553435b35e813c261ff4e161fff982d1bacdef1c87f6785dd1662",
        );
    }

    /// A literal `+` in the query signs as `%2B`, a signed `user-agent` is signed, and runs of
    /// whitespace in a value count as one space. Signature computed independently (Python
    /// `hmac`) from the canonical request.
    #[test]
    fn plus_in_query_and_signed_user_agent() {
        check(
            "GET",
            "/?a=b+c",
            &[
                ("Host", "example.amazonaws.com"),
                ("User-Agent", "x \t y"),
                ("X-Amz-Date", DATE),
            ],
            b"",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;user-agent;x-amz-date, \
             Signature=757f5c7121b49f612ee8d6616d8af207689f6ff63f87c64f038697acfe14ef88",
        );
    }

    #[test]
    fn malformed_authorization_headers_are_refused() {
        assert_eq!(
            parse_authorization("AWS4-HMAC-SHA1 Credential=a/b/c/d/e").unwrap_err(),
            ParseError::Algorithm("AWS4-HMAC-SHA1".into())
        );
        assert_eq!(
            parse_authorization("AWS4-HMAC-SHA256 SignedHeaders=host, Signature=00").unwrap_err(),
            ParseError::Missing("Credential")
        );
        let sig = "0".repeat(64);
        assert!(matches!(
            parse_authorization(&format!(
                "AWS4-HMAC-SHA256 Credential=a/b/c, SignedHeaders=host, Signature={sig}"
            )),
            Err(ParseError::Credential(_))
        ));
        assert_eq!(
            parse_authorization(
                "AWS4-HMAC-SHA256 Credential=a/b/c/d/e, SignedHeaders=host, Signature=XYZ"
            )
            .unwrap_err(),
            ParseError::Signature
        );
        assert!(parse_authorization("").is_err());
    }

    #[test]
    fn amz_dates_round_trip_and_garbage_is_refused() {
        let t = parse_amz_date(DATE).unwrap();
        assert_eq!(t, 1_440_938_160);
        assert_eq!(format_amz_date(t), DATE);
        for bad in [
            "",
            "2015-08-30T12:36:00Z",
            "20150830T123600",
            "2015083xT123600Z",
            "20151330T123600Z",
        ] {
            assert_eq!(parse_amz_date(bad), None, "{bad}");
        }
    }
}
