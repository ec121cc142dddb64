//! Entry points for the coverage-guided fuzzers in `fuzz/` and for their corpus replay in CI.
//!
//! Each function takes arbitrary bytes, feeds them to one parser the way untrusted input
//! reaches it, and must return without panicking whatever the bytes are. A fuzz target is a
//! one-line call of one of them; `tests/it/fuzz_corpora.rs` replays every kept input through
//! the same functions. Not an API: the names and input layouts may change with the fuzzers.
//!
//! Inputs that carry several messages (card answers, APDUs, frames) are "scripts": each
//! message is a 2-byte big-endian length and that many bytes; a short last message takes what
//! is left. [`script`] builds one.

#![allow(missing_docs)] // every entry point is documented; the module itself is doc-hidden

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use zeroize::Zeroizing;

use crate::token::apdu::{Command, Response, Tlv};
use crate::token::piv::PivCard;
use crate::token::soft::SoftCard;
use crate::token::{Error as TokenError, Transport};

/// The fixed clock of the entry points that need one (2023-11-14T22:13:20Z).
pub const NOW: u64 = 1_700_000_000;

/// Splits a script into its messages.
pub fn messages(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while let [a, b, rest @ ..] = data {
        let len = usize::from(u16::from_be_bytes([*a, *b])).min(rest.len());
        let (message, tail) = rest.split_at(len);
        out.push(message);
        data = tail;
    }
    out
}

/// Joins messages into a script (the inverse of [`messages`] for messages under 64 KiB).
pub fn script<M: AsRef<[u8]>>(messages: &[M]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in messages {
        let m = m.as_ref();
        let len = u16::try_from(m.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&m[..usize::from(len)]);
    }
    out
}

/// A card that answers with the messages of a script, one per command, then is gone.
struct Scripted<'a> {
    answers: std::vec::IntoIter<&'a [u8]>,
}

impl Transport for Scripted<'_> {
    fn transmit_raw(&mut self, _apdu: &[u8]) -> Result<Zeroizing<Vec<u8>>, TokenError> {
        let answer = self.answers.next().ok_or(TokenError::TokenRemoved)?;
        Ok(Zeroizing::new(answer.to_vec()))
    }
}

/// A transport that records the answers of another, as a script (for seed corpora).
struct Recording<'t> {
    inner: &'t mut dyn Transport,
    answers: Vec<Vec<u8>>,
}

impl Transport for Recording<'_> {
    fn transmit_raw(&mut self, apdu: &[u8]) -> Result<Zeroizing<Vec<u8>>, TokenError> {
        let answer = self.inner.transmit_raw(apdu)?;
        self.answers.push(answer.to_vec());
        Ok(answer)
    }
}

/// Command and response APDUs and BER-TLV (src/token/apdu.rs): parse, and what parses must
/// encode again and parse to the same.
pub fn apdu(data: &[u8]) {
    if let Ok(cmd) = Command::parse(data) {
        let again = Command::parse(&cmd.to_bytes()).expect("an encoded command parses");
        assert_eq!(again.to_bytes(), cmd.to_bytes(), "command round trip");
    }
    if let Ok(r) = Response::parse(data) {
        let again = Response::parse(&r.to_bytes()).expect("an encoded response parses");
        assert_eq!(again.to_bytes(), r.to_bytes(), "response round trip");
    }
    if let Ok(list) = Tlv::parse_all(data) {
        for item in &list {
            let again = crate::token::apdu::tlv(item.tag, item.value);
            let parsed = Tlv::parse_all(&again).expect("an encoded TLV parses");
            assert_eq!(parsed.len(), 1, "one TLV encodes to one");
            assert_eq!((parsed[0].tag, parsed[0].value), (item.tag, item.value));
        }
        let _ = Tlv::find(&list, 0x71);
    }
}

/// What [`oath`] does with a card: SELECT, VALIDATE when locked, LIST, CALCULATE ALL,
/// CALCULATE (TOTP, HOTP, HMAC). Errors end nothing: every step is tried.
fn oath_steps(t: &mut dyn Transport) {
    let Ok(mut session) = crate::token::oath::Session::select(t) else {
        return;
    };
    let _ = session.device_id();
    if session.is_locked() {
        let key = crate::token::oath::AccessKey::derive(b"fuzz", session.salt());
        let _ = session.validate(&key, &crate::secure::SystemRandom::new());
    }
    let _ = session.list();
    let _ = session.calculate_all(NOW);
    let _ = session.totp("fuzz", 30, NOW);
    let _ = session.totp("60/fuzz", 60, NOW);
    let _ = session.hotp("hotp", NOW);
    let _ = session.hmac("hmac", &[7; 32]);
    let _ = session.accounts(NOW);
}

/// OATH answers (src/token/oath.rs): the input is a script of card answers (data ‖ SW) that a
/// session gets, in order, for SELECT, VALIDATE, LIST, CALCULATE ALL and CALCULATE.
pub fn oath(data: &[u8]) {
    let mut card = Scripted {
        answers: messages(data).into_iter(),
    };
    oath_steps(&mut card);
}

/// The answers a soft token gives to [`oath`]'s steps, as a script (a seed).
pub fn oath_seed(card: &mut SoftCard) -> Vec<u8> {
    let mut rec = Recording {
        inner: card,
        answers: Vec::new(),
    };
    oath_steps(&mut rec);
    script(&rec.answers)
}

/// What [`piv`] does with a card: SELECT, then every [`PivCard`] call the factor makes.
fn piv_steps(t: &mut dyn Transport) {
    let Ok(mut card) = crate::token::piv::ApduPiv::select(t) else {
        return;
    };
    let _ = card.serial();
    let _ = card.version();
    let _ = card.pin_retries();
    let _ = card.verify_pin(b"123456");
    let _ = card.slot_key(0x9D);
    let _ = card.authenticate_default();
    let _ = card.generate_p256_always(0x9D);
    let _ = card.attest(0x9D);
    let _ = card.attestation_certificate();
    let point = p256::PublicKey::from_sec1_bytes(&P256_G).map(|k| k.to_sec1_bytes());
    if let Ok(point) = point {
        let _ = card.ecdh(0x9D, &point);
    }
}

/// The uncompressed P-256 generator: a valid peer point for ECDH.
const P256_G: [u8; 65] = [
    0x04, 0x6B, 0x17, 0xD1, 0xF2, 0xE1, 0x2C, 0x42, 0x47, 0xF8, 0xBC, 0xE6, 0xE5, 0x63, 0xA4, 0x40,
    0xF2, 0x77, 0x03, 0x7D, 0x81, 0x2D, 0xEB, 0x33, 0xA0, 0xF4, 0xA1, 0x39, 0x45, 0xD8, 0x98, 0xC2,
    0x96, 0x4F, 0xE3, 0x42, 0xE2, 0xFE, 0x1A, 0x7F, 0x9B, 0x8E, 0xE7, 0xEB, 0x4A, 0x7C, 0x0F, 0x9E,
    0x16, 0x2B, 0xCE, 0x33, 0x57, 0x6B, 0x31, 0x5E, 0xCE, 0xCB, 0xB6, 0x40, 0x68, 0x37, 0xBF, 0x51,
    0xF5,
];

/// PIV answers (src/token/piv.rs): the input is a script of card answers for SELECT and the
/// calls of the PIV factor; the whole input is also parsed as a certificate object and as
/// GET METADATA data.
pub fn piv(data: &[u8]) {
    let _ = crate::token::piv::certificate_from_object(data);
    let _ = crate::token::piv::parse_metadata(data);
    let mut card = Scripted {
        answers: messages(data).into_iter(),
    };
    piv_steps(&mut card);
}

/// The answers a soft token gives to [`piv`]'s steps, as a script (a seed).
pub fn piv_seed(card: &mut SoftCard) -> Vec<u8> {
    let mut rec = Recording {
        inner: card,
        answers: Vec::new(),
    };
    piv_steps(&mut rec);
    script(&rec.answers)
}

/// The vault file (src/vault/): the whole file, the sealed container, and the factor
/// parameters of the PIV and FIDO2 slots; what decodes must encode to bytes that decode.
pub fn vault(data: &[u8]) {
    if let Ok(v) = crate::vault::Vault::from_bytes(data) {
        let _ = v.slots().count();
        let _ = v.kdf().check();
        let again = crate::vault::Vault::from_bytes(&v.to_bytes());
        assert!(again.is_ok(), "an encoded vault decodes");
    }
    if let Ok(s) = crate::vault::format::Sealed::decode(data) {
        let again = crate::vault::format::Sealed::decode(&s.encode());
        assert!(again.is_ok(), "an encoded sealed container decodes");
    }
    if let Ok(p) = crate::vault::piv::PivParams::decode(data) {
        assert!(crate::vault::piv::PivParams::decode(&p.encode()).is_ok());
    }
    if let Ok(p) = crate::vault::fido2::Fido2Params::decode(data) {
        assert!(crate::vault::fido2::Fido2Params::decode(&p.encode()).is_ok());
    }
}

/// The agent protocol (src/agent/): frames read from a byte stream, each decoded as a message,
/// a request and an answer; what decodes must encode again.
pub fn agent(data: &[u8]) {
    use crate::agent::protocol::{Answer, Request};
    use crate::agent::wire;
    let mut stream = data;
    let mut bodies = Vec::new();
    while let Ok(body) = wire::read_frame(&mut stream) {
        bodies.push(body);
    }
    bodies.push(Zeroizing::new(data.to_vec()));
    for body in &bodies {
        if let Ok(m) = wire::Message::parse(body) {
            for i in 0..4 {
                let _ = m.text(i);
                let _ = m.number(i);
            }
        }
        if let Ok(r) = Request::decode(body) {
            // A frame: 4 bytes of length, then the body.
            let encoded = r.encode().expect("a decoded request encodes");
            let again = Request::decode(&encoded[4..]).expect("an encoded request decodes");
            let twice = again.encode().expect("a decoded request encodes");
            assert_eq!(*twice, *encoded, "request encoding is stable");
        }
        if let Ok(a) = Answer::decode(body) {
            // A frame: 4 bytes of length, then the body.
            let encoded = a.encode().expect("a decoded answer encodes");
            let again = Answer::decode(&encoded[4..]).expect("an encoded answer decodes");
            let twice = again.encode().expect("a decoded answer encodes");
            assert_eq!(*twice, *encoded, "answer encoding is stable");
        }
    }
}

fn fixed_paths() -> &'static crate::config::Paths {
    static PATHS: OnceLock<crate::config::Paths> = OnceLock::new();
    PATHS.get_or_init(|| {
        crate::config::Paths::from_lookup(|k| match k {
            "HOME" => Some("/nonexistent/fuzz-home".into()),
            "XDG_RUNTIME_DIR" => Some("/nonexistent/fuzz-run".into()),
            _ => None,
        })
        .expect("paths from a fixed HOME")
    })
}

/// The config file (src/config.rs): profiles and `[agent]` settings from its text; every
/// profile parsed must render to TOML that parses to the same profile.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/fuzz/config.toml");
    let _ = crate::config::parse_agent(text, path);
    if let Ok(profiles) = crate::config::parse(text, path, fixed_paths()) {
        for p in profiles.values() {
            let _ = crate::config::parse(&p.to_toml(), path, fixed_paths());
        }
    }
}

/// The AWS CLI config reader (src/aws/config_file.rs).
pub fn aws_config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for p in crate::aws::config_file::parse(&text) {
        let _ = format!("{p:?}");
    }
}

thread_local! {
    static AUDIT_DIR: tempfile::TempDir = {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix("breakglass-fuzz-audit")
            .tempdir()
            .expect("a temporary directory");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .expect("a private temporary directory");
        dir
    };
}

/// The audit log reader (src/audit/log.rs): the input is the live log file; it is verified
/// as a chain (plain and anchored), then appended to, which reads its end backwards, and
/// verified again.
pub fn audit(data: &[u8]) {
    use std::os::unix::fs::OpenOptionsExt;
    AUDIT_DIR.with(|dir| {
        for entry in std::fs::read_dir(dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::remove_file(entry.path());
        }
        let path = dir.path().join("audit.log");
        let written = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| f.write_all(data));
        if written.is_err() {
            return;
        }
        let log = crate::audit::log::Log::new(&path);
        let before = log.verify();
        let _ = log.verify_anchored(Some("0000"));
        let entry = crate::audit::Entry {
            time: NOW,
            profile: "fuzz",
            record: crate::audit::Record::SessionWiped {
                why: "fuzz",
                pid: 1,
            },
            outcome: crate::audit::Outcome::Success,
        };
        let appended = log.append(&entry);
        if let (Ok(before), Ok(())) = (&before, &appended) {
            if before.torn.is_empty() {
                let after = log
                    .verify()
                    .expect("a verified log still verifies after an append");
                assert_eq!(after.records, before.records + 1, "one record appended");
            }
        }
    });
}

struct AttestFixture {
    bundle: Vec<x509_cert::Certificate>,
}

fn attest_fixture() -> &'static AttestFixture {
    static FIXTURE: OnceLock<AttestFixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        use x509_cert::der::Decode;
        let card = SoftCard::new(Box::new(|| true));
        let root = x509_cert::Certificate::from_der(&card.piv_attestation_root())
            .expect("the soft token's root is a certificate");
        AttestFixture { bundle: vec![root] }
    })
}

/// PIV attestation (src/vault/attest.rs): the input is a script of the attestation
/// certificate, the F9 certificate and optionally one more bundle certificate, all DER,
/// verified against the soft token's attestation root.
pub fn attest(data: &[u8]) {
    use x509_cert::der::Decode;
    let parts = messages(data);
    let (leaf, f9) = match parts.as_slice() {
        [leaf, f9, ..] => (*leaf, *f9),
        [one] => (*one, *one),
        [] => (data, data),
    };
    let mut bundle = attest_fixture().bundle.clone();
    if let Some(extra) = parts.get(2) {
        if let Ok(c) = x509_cert::Certificate::from_der(extra) {
            bundle.push(c);
        }
    }
    let expected = crate::vault::attest::Expected {
        public_key_sec1: P256_G.to_vec(),
        serial: None,
        pin_policy_always: true,
        touch_policy_always: true,
    };
    let _ = crate::vault::attest::verify(leaf, f9, &bundle, &expected, NOW);
}

/// STS answer checks (src/aws/sts.rs): the credentials of an answer, as the SDK hands them
/// over, from a script of access key id, secret, token and 8 bytes of expiration (Unix
/// seconds, big-endian), checked for a 3600 s session at [`NOW`].
pub fn sts_answer(data: &[u8]) {
    let parts = messages(data);
    let text = |i: usize| String::from_utf8_lossy(parts.get(i).copied().unwrap_or_default());
    let expiration = parts
        .get(3)
        .and_then(|b| b.get(..8))
        .map_or(0, |b| i64::from_be_bytes(b.try_into().unwrap_or_default()));
    let credentials = aws_sdk_sts::types::Credentials::builder()
        .access_key_id(text(0))
        .secret_access_key(text(1))
        .session_token(text(2))
        .expiration(aws_smithy_types::DateTime::from_secs(expiration))
        .build()
        .ok();
    let _ = crate::aws::sts::session("GetSessionToken", credentials, NOW, 3600);
}

fn sandbox_endpoint() -> &'static (crate::sandbox::sts::Sts, std::net::SocketAddr) {
    static STS: OnceLock<(crate::sandbox::sts::Sts, std::net::SocketAddr)> = OnceLock::new();
    STS.get_or_init(|| {
        let sts = crate::sandbox::sts::Sts::start(([127, 0, 0, 1], 0).into())
            .expect("the sandbox starts on loopback");
        let addr = sts
            .endpoint()
            .trim_start_matches("http://")
            .parse()
            .expect("the sandbox endpoint is an address");
        (sts, addr)
    })
}

/// The sandbox's HTTP server and everything behind it (src/sandbox/): the input is sent as
/// is, as one connection's bytes, to the sandbox STS/IAM endpoint; the answer is read to its
/// end. A panic in the server aborts the fuzzer (its panic hook); the replay sees it as an
/// answer that is not HTTP.
pub fn sandbox_http(data: &[u8]) {
    let (sts, addr) = sandbox_endpoint();
    // `S` or `I` first: the rest is the form body of a request to STS or IAM, signed with
    // the admin key as the SDK signs it, so that the actions behind the SigV4 check are reached.
    let signed = match data {
        [b'S', body @ ..] => signed_request(sts, addr, "sts", body),
        [b'I', body @ ..] => signed_request(sts, addr, "iam", body),
        _ => None,
    };
    let data = signed.as_deref().unwrap_or(data);
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
    let _ = stream.write_all(data);
    let _ = stream.shutdown(Shutdown::Write);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1."),
        "the sandbox answers HTTP"
    );
}

/// SigV4 (src/sandbox/sigv4.rs): the input is a request head (`METHOD TARGET`, then
/// `name: value` lines, an empty line, the body); its `Authorization` is parsed and checked
/// against a fixed secret, its `X-Amz-Date` parsed, its query and body decoded as forms.
pub fn sigv4(data: &[u8]) {
    sigv4_checks(data);
}

/// The soft token (src/token/soft/): the input is a script of command APDUs sent, in order,
/// to a blank soft token; every answer must end with a status word.
pub fn soft_card(data: &[u8]) {
    let mut card = SoftCard::new(Box::new(|| true));
    for apdu in messages(data) {
        let answer = card.process(apdu);
        assert!(answer.len() >= 2, "every answer has a status word");
    }
}

/// A raw HTTP request of `body` to `service`, signed now with the sandbox's admin key.
fn signed_request(
    sts: &crate::sandbox::sts::Sts,
    addr: &std::net::SocketAddr,
    service: &str,
    body: &[u8],
) -> Option<Vec<u8>> {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    use secrecy::ExposeSecret;
    let (key_id, secret) = sts.admin_key();
    let now = std::time::SystemTime::now();
    let secs = now.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    let amz_date = crate::sandbox::sigv4::format_amz_date(i64::try_from(secs).ok()?);
    let host = addr.to_string();
    let headers = [
        ("content-type", "application/x-www-form-urlencoded"),
        ("host", host.as_str()),
        ("x-amz-date", amz_date.as_str()),
    ];
    let identity =
        aws_credential_types::Credentials::new(&key_id, secret.expose_secret(), None, None, "fuzz")
            .into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name(service)
        .time(now)
        .settings(SigningSettings::default())
        .build()
        .ok()?
        .into();
    let request =
        SignableRequest::new("POST", "/", headers.into_iter(), SignableBody::Bytes(body)).ok()?;
    let signature = sign(request, &params).ok()?.signature().to_owned();
    let day = amz_date.get(..8)?;
    let mut raw = format!(
        "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         X-Amz-Date: {amz_date}\r\nAuthorization: AWS4-HMAC-SHA256 \
         Credential={key_id}/{day}/us-east-1/{service}/aws4_request, \
         SignedHeaders=content-type;host;x-amz-date, Signature={signature}\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    Some(raw)
}

fn vpcd_listener() -> &'static TcpListener {
    static LISTENER: OnceLock<TcpListener> = OnceLock::new();
    LISTENER.get_or_init(|| TcpListener::bind("127.0.0.1:0").expect("a loopback listener"))
}

/// vpcd framing (src/token/soft/vpcd.rs): the input is what vpcd sends on one connection
/// (length-prefixed control messages and APDUs), served by a blank soft token until vpcd
/// closes its side.
pub fn vpcd(data: &[u8]) {
    let listener = vpcd_listener();
    let Ok(addr) = listener.local_addr() else {
        return;
    };
    let Ok(mut card_side) = crate::token::soft::vpcd::connect(addr, Duration::from_secs(5)) else {
        return;
    };
    let Ok((mut vpcd_side, _)) = listener.accept() else {
        return;
    };
    let sent = data.to_vec();
    // vpcd: sends everything, closes its sending side, reads the answers to their end.
    let vpcd = std::thread::spawn(move || {
        let _ = vpcd_side.write_all(&sent);
        let _ = vpcd_side.shutdown(Shutdown::Write);
        let mut answers = Vec::new();
        let _ = vpcd_side.read_to_end(&mut answers);
    });
    let mut card = SoftCard::new(Box::new(|| true));
    let _ = crate::token::soft::vpcd::serve(&mut card, &mut card_side);
    drop(card_side);
    let _ = vpcd.join();
}

fn sigv4_checks(data: &[u8]) {
    use crate::sandbox::http::parse_form;
    use crate::sandbox::sigv4;
    let text = String::from_utf8_lossy(data);
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let start = lines.next().unwrap_or_default();
    let (method, target) = start.split_once(' ').unwrap_or((start, "/"));
    // What the server hands over (src/sandbox/http.rs `read_request`): an upper-case method and
    // an origin-form target that hyper parsed.
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return;
    }
    let Ok(uri) = target.parse::<hyper::Uri>() else {
        return;
    };
    let Some(target) = uri
        .path_and_query()
        .map(|t| t.as_str())
        .filter(|t| uri.scheme().is_none() && t.starts_with('/'))
    else {
        return;
    };
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let _ = parse_form(target.split_once('?').map_or("", |(_, q)| q));
    let _ = parse_form(body);
    let signed_at = header("x-amz-date").and_then(sigv4::parse_amz_date);
    if let Some(t) = signed_at {
        let formatted = sigv4::format_amz_date(t);
        assert_eq!(
            sigv4::parse_amz_date(&formatted),
            Some(t),
            "X-Amz-Date round trip"
        );
    }
    let Some(Ok(auth)) = header("authorization").map(sigv4::parse_authorization) else {
        return;
    };
    let payload_hash = sigv4::hex_sha256(body.as_bytes());
    let message = sigv4::Message {
        method,
        target,
        headers: &headers,
        payload_hash: &payload_hash,
    };
    let secret = secrecy::SecretString::from("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
    let _ = sigv4::verify(&secret, &auth, signed_at.unwrap_or(0), &message);
}
