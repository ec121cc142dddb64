//! AWS Signature Version 4 verification for the sandbox emulators: parse the `Authorization`
//! header, rebuild the canonical request and string to sign, compare in constant time.
//!
//! Header-based signing only (`AWS4-HMAC-SHA256`); presigned query strings are not accepted.

use data_encoding::HEXLOWER;
use ring::digest;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::token::otp::{self, Algorithm};

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
    pub method: &'a str,
    /// The path as sent (percent-encoded).
    pub path: &'a str,
    /// The raw query string, without `?`.
    pub query: &'a str,
    /// Lower-case names, as received.
    pub headers: &'a [(String, String)],
    /// Lower-case hex SHA-256 of the payload.
    pub payload_hash: &'a str,
}

/// Hex SHA-256 of `data`.
pub fn hex_sha256(data: &[u8]) -> String {
    HEXLOWER.encode(digest::digest(&digest::SHA256, data).as_ref())
}

/// RFC 3986 encoding as SigV4 wants it: everything but `A-Za-z0-9-._~` (and `/` if `keep_slash`).
pub fn uri_encode(bytes: &[u8], keep_slash: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn canonical_query(query: &str) -> Option<String> {
    let mut pairs = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = uri_encode(&super::http::percent_decode(k, false)?, false);
        let v = uri_encode(&super::http::percent_decode(v, false)?, false);
        pairs.push((k, v));
    }
    pairs.sort();
    let joined: Vec<String> = pairs.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    Some(joined.join("&"))
}

fn canonical_header_value(headers: &[(String, String)], name: &str) -> String {
    let values: Vec<String> = headers
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    values.join(",")
}

/// The canonical request; `None` when the query string has a bad escape.
pub fn canonical_request(message: &Message<'_>, signed_headers: &[String]) -> Option<String> {
    // Non-S3 services sign the path encoded twice: once on the wire, once here.
    let path = uri_encode(message.path.as_bytes(), true);
    let mut out = format!(
        "{}\n{path}\n{}\n",
        message.method,
        canonical_query(message.query)?
    );
    for name in signed_headers {
        out.push_str(&format!(
            "{name}:{}\n",
            canonical_header_value(message.headers, name)
        ));
    }
    out.push_str(&format!(
        "\n{}\n{}",
        signed_headers.join(";"),
        message.payload_hash
    ));
    Some(out)
}

/// The string to sign for `canonical_request`, signed at `amz_date` within `scope`.
pub fn string_to_sign(amz_date: &str, scope: &Scope, canonical_request: &str) -> String {
    let hash = hex_sha256(canonical_request.as_bytes());
    format!("{ALGORITHM}\n{amz_date}\n{scope}\n{hash}")
}

/// kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request").
pub fn signing_key(secret: &SecretString, scope: &Scope) -> Zeroizing<Vec<u8>> {
    let mut key = Zeroizing::new(format!("AWS4{}", secret.expose_secret()).into_bytes());
    for part in [
        &scope.date,
        &scope.region,
        &scope.service,
        &scope.terminator,
    ] {
        key = otp::hmac(Algorithm::Sha256, &key, part.as_bytes());
    }
    key
}

/// The signature a holder of `secret` computes.
pub fn sign(
    secret: &SecretString,
    scope: &Scope,
    amz_date: &str,
    canonical_request: &str,
) -> Zeroizing<Vec<u8>> {
    let key = signing_key(secret, scope);
    otp::hmac(
        Algorithm::Sha256,
        &key,
        string_to_sign(amz_date, scope, canonical_request).as_bytes(),
    )
}

/// True when `authorization` carries the signature `secret` gives, compared in constant time.
pub fn verify(
    secret: &SecretString,
    authorization: &Authorization,
    amz_date: &str,
    canonical_request: &str,
) -> bool {
    let expected = sign(secret, &authorization.scope, amz_date, canonical_request);
    bool::from(expected.as_slice().ct_eq(&authorization.signature))
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
    //! Vectors from the AWS SigV4 test suite (as shipped in the `aws-sigv4` crate).
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
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let hash = hex_sha256(body);
        let message = Message {
            method,
            path,
            query,
            headers: &headers,
            payload_hash: &hash,
        };
        let canonical = canonical_request(&message, &auth.signed_headers).unwrap();
        let secret = SecretString::from(SECRET);
        assert!(verify(&secret, &auth, DATE, &canonical), "{canonical}");
        let wrong = SecretString::from("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEX");
        assert!(!verify(&wrong, &auth, DATE, &canonical));
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

    #[test]
    fn get_space_vector_encodes_the_path() {
        check(
            "GET",
            "/example space/",
            &[("Host", "example.amazonaws.com"), ("X-Amz-Date", DATE)],
            b"",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741",
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
