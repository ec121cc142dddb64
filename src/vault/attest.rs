//! PIV attestation: proof that the PIV seal key was generated on a genuine token, in the slot
//! it is used from, with PIN policy "always" and touch policy "always".
//!
//! At enrolment the token attests the slot: it signs a certificate for the slot's public key
//! with its attestation key (slot F9). That F9 certificate is in turn signed by the token's
//! maker. The chain checked here is
//!
//! ```text
//! attestation (slot 82–95) ← F9 certificate ← intermediates … ← root
//! ```
//!
//! where the intermediates and the root come from a bundle the user trusts (`load_roots`):
//!
//! - YubiKeys before firmware 5.7.4: root "Yubico PIV Root CA Serial 263751", no intermediate.
//! - From 5.7.4: root "Yubico Attestation Root 1", through the "Yubico Attestation
//!   Intermediate" and "Yubico PIV Attestation" intermediates, all in Yubico's bundle
//!   <https://developers.yubico.com/PKI/yubico-ca-certs.txt>.
//! - The sandbox soft token: the root it writes with `breakglass sandbox … --piv-root-out`,
//!   made for that card run alone.
//!
//! breakglass ships no Yubico certificate: the trust anchor is whatever the operator downloaded
//! from Yubico and checked, so a substituted root is the operator's choice, not ours.
//!
//! Dates: the attestation and F9 certificates are not checked against the clock. A YubiKey
//! copies its F9 certificate's fixed factory dates into every attestation, ykman and Yubico's
//! own tools do not check them, and a key generated today on a genuine token is no less
//! genuine once those dates pass. The certificates taken from the bundle (intermediates and
//! root) must be valid at `now`: an expired one means the bundle is stale and should be
//! fetched again.
//!
//! Basic constraints and key usage are not checked either: the bundle is an allowlist of the
//! maker's CA certificates, and Yubico's F9 certificates are signing certificates whose
//! markings have varied across firmware.

use std::path::Path;

use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use x509_cert::der::asn1::{AnyRef, ObjectIdentifier, PrintableStringRef, Utf8StringRef};
use x509_cert::der::{Decode, Encode, Reader, SliceReader};
use x509_cert::name::Name;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::Certificate;

use super::Error;

/// Where Yubico publishes its attestation roots and intermediates (PEM, with a description).
pub const YUBICO_CA_CERTS_URL: &str = "https://developers.yubico.com/PKI/yubico-ca-certs.txt";

/// Longest chain accepted, leaf and root included: attestation, F9, three intermediates, root
/// (Yubico's 5.7.4 chain has two intermediates).
const MAX_CHAIN: usize = 6;

const PEM_BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const PEM_END: &str = "-----END CERTIFICATE-----";

/// Yubico's attestation extensions (developers.yubico.com/PIV/Introduction/PIV_attestation.html).
const OID_YK_FIRMWARE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.41482.3.3");
const OID_YK_SERIAL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.41482.3.7");
const OID_YK_POLICY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.41482.3.8");

const OID_COMMON_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const OID_ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const OID_RSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const OID_RSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const OID_RSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");

/// PIN policy "always" in the attestation's policy extension.
pub const PIN_POLICY_ALWAYS: u8 = 3;
/// Touch policy "always" in the attestation's policy extension.
pub const TOUCH_POLICY_ALWAYS: u8 = 2;

/// Reads a bundle of trusted attestation certificates: PEM (any number of
/// `-----BEGIN CERTIFICATE-----` blocks, text around them allowed, as in Yubico's
/// `yubico-ca-certs.txt`) or a single DER certificate (as the sandbox writes its root).
/// Roots and intermediates may be mixed; `verify` tells them apart.
pub fn load_roots(path: &Path) -> Result<Vec<Certificate>, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        action: "cannot read the attestation roots",
        path: path.display().to_string(),
        source,
    })?;
    parse_bundle(&bytes).map_err(|reason| Error::InvalidInput {
        what: "attestation roots",
        reason: format!(
            "{}: {reason}; get Yubico's roots from {YUBICO_CA_CERTS_URL}",
            path.display()
        ),
    })
}

/// The certificates of a PEM bundle or one DER certificate; the reason when there is none.
fn parse_bundle(bytes: &[u8]) -> Result<Vec<Certificate>, String> {
    let text = std::str::from_utf8(bytes)
        .ok()
        .filter(|t| t.contains(PEM_BEGIN));
    let Some(text) = text else {
        return Certificate::from_der(bytes)
            .map(|c| vec![c])
            .map_err(|_| "it holds no certificate (PEM or DER)".to_string());
    };
    let mut certs = Vec::new();
    let mut body: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if line == PEM_BEGIN {
            body = Some(String::new());
        } else if line == PEM_END {
            let n = certs.len() + 1;
            let b64 = body
                .take()
                .ok_or_else(|| format!("certificate {n} ends before it begins"))?;
            let der = data_encoding::BASE64
                .decode(b64.as_bytes())
                .map_err(|e| format!("certificate {n} is not valid base64 ({e})"))?;
            let cert = Certificate::from_der(&der)
                .map_err(|e| format!("certificate {n} is not an X.509 certificate ({e})"))?;
            certs.push(cert);
        } else if let Some(b) = body.as_mut() {
            b.push_str(line);
        }
    }
    if body.is_some() {
        return Err(format!("certificate {} has no END line", certs.len() + 1));
    }
    if certs.is_empty() {
        return Err("it holds no certificate (PEM or DER)".to_string());
    }
    Ok(certs)
}

/// What the token said about the slot before attesting it; the attestation must agree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// The slot's public key as the token reported it at generation (uncompressed P-256 point).
    pub public_key_sec1: Vec<u8>,
    /// The token's serial number (GET SERIAL); `None` skips the check.
    pub serial: Option<u32>,
    /// The attested PIN policy must be "always".
    pub pin_policy_always: bool,
    /// The attested touch policy must be "always".
    pub touch_policy_always: bool,
}

/// What a verified attestation proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attested {
    /// The serial in the attestation (YubiKeys before firmware 5 omit it).
    pub serial: Option<u32>,
    /// Firmware version (major, minor, patch), from Yubico's firmware extension.
    pub firmware: (u8, u8, u8),
    /// 1 never, 2 once, 3 always.
    pub pin_policy: u8,
    /// 1 never, 2 always, 3 cached.
    pub touch_policy: u8,
    /// Subject common names from the attestation to the root.
    pub chain: Vec<String>,
    /// SHA-256 of the root certificate (DER), lowercase hex: for the enrolment record and for
    /// comparing with the fingerprint the maker publishes.
    pub root_sha256: String,
}

/// Verifies a PIV attestation (`attestation_der`, from ATTEST on the slot) and the token's F9
/// certificate (`f9_der`) against the trusted `bundle`, and that it attests what the token
/// reported (`expected`). `now_unix` is checked against the bundle certificates only (see the
/// module documentation for why).
pub fn verify(
    attestation_der: &[u8],
    f9_der: &[u8],
    bundle: &[Certificate],
    expected: &Expected,
    now_unix: u64,
) -> Result<Attested, Error> {
    let leaf = Certificate::from_der(attestation_der).map_err(|e| {
        fail(format!(
            "the token's attestation is not an X.509 certificate ({e})"
        ))
    })?;
    let f9 = Certificate::from_der(f9_der).map_err(|e| {
        fail(format!(
            "the token's attestation certificate (slot F9) is not an X.509 certificate ({e})"
        ))
    })?;
    let slot = slot_label(&leaf);
    check_signed_by_f9(attestation_der, &leaf, &f9)?;
    let bundle_der: Vec<Vec<u8>> = bundle
        .iter()
        .map(|c| c.to_der())
        .collect::<Result<_, _>>()
        .map_err(|e| fail(format!("cannot encode a certificate of the bundle ({e})")))?;
    let path = chain_to_root(&f9, f9_der, bundle, &bundle_der, now_unix)?;
    check_key(&leaf, expected, &slot)?;
    let yk = yubico_extensions(&leaf, expected, &slot)?;

    let mut chain = vec![
        common_name(leaf.tbs_certificate().subject()),
        common_name(f9.tbs_certificate().subject()),
    ];
    chain.extend(
        path.iter()
            .map(|&i| common_name(bundle[i].tbs_certificate().subject())),
    );
    let root_der = path
        .last()
        .and_then(|&i| bundle_der.get(i))
        .ok_or_else(|| fail("internal error: empty certificate path".to_string()))?;
    let root_sha256 = data_encoding::HEXLOWER
        .encode(ring::digest::digest(&ring::digest::SHA256, root_der).as_ref());
    Ok(Attested {
        serial: yk.serial,
        firmware: yk.firmware,
        pin_policy: yk.pin_policy,
        touch_policy: yk.touch_policy,
        chain,
        root_sha256,
    })
}

/// Step 1: the token's F9 key signed the attestation.
fn check_signed_by_f9(
    attestation_der: &[u8],
    leaf: &Certificate,
    f9: &Certificate,
) -> Result<(), Error> {
    if leaf.tbs_certificate().issuer() != f9.tbs_certificate().subject() {
        return Err(fail(format!(
            "the attestation is not signed by the token's F9 certificate (it names issuer \
             '{}', the F9 certificate is '{}')",
            leaf.tbs_certificate().issuer(),
            f9.tbs_certificate().subject()
        )));
    }
    match signed_by(attestation_der, leaf, f9) {
        Ok(()) => Ok(()),
        Err(SigError::Bad) => Err(fail(
            "the attestation is not signed by the token's F9 certificate (bad signature): \
             the token's attestation key does not match its F9 certificate"
                .to_string(),
        )),
        Err(SigError::Unsupported(what)) => Err(fail(format!(
            "cannot check the attestation's signature: {what}"
        ))),
    }
}

/// Step 2: the F9 certificate chains to a root of the bundle. Returns the path, as indexes
/// into the bundle, from F9's issuer up to the root.
fn chain_to_root(
    f9: &Certificate,
    f9_der: &[u8],
    bundle: &[Certificate],
    bundle_der: &[Vec<u8>],
    now_unix: u64,
) -> Result<Vec<usize>, Error> {
    let mut search = PathSearch {
        bundle,
        bundle_der,
        now_unix,
        notes: Vec::new(),
    };
    let mut path = Vec::new();
    if search.extend(f9, f9_der, &mut path) {
        return Ok(path);
    }
    let mut msg = format!(
        "no root in the attestation roots issued the token's F9 certificate '{}' (issuer \
         '{}')",
        f9.tbs_certificate().subject(),
        f9.tbs_certificate().issuer()
    );
    for note in &search.notes {
        msg.push_str("; ");
        msg.push_str(note);
    }
    msg.push_str(&format!(
        "; get Yubico's roots and intermediates from {YUBICO_CA_CERTS_URL} (for the sandbox \
         token: the root it writes with --piv-root-out)"
    ));
    Err(fail(msg))
}

/// Step 3: the attestation is for the slot's key.
fn check_key(leaf: &Certificate, expected: &Expected, slot: &str) -> Result<(), Error> {
    let spki = leaf.tbs_certificate().subject_public_key_info();
    let is_p256 = spki.algorithm.oid == OID_EC_PUBLIC_KEY
        && curve(spki).is_some_and(|c| c == OID_P256)
        && spki.subject_public_key.raw_bytes() == expected.public_key_sec1.as_slice();
    if is_p256 {
        return Ok(());
    }
    Err(fail(format!(
        "the attested key differs from the key in {slot}; generate the key again and enrol \
         again"
    )))
}

/// What Yubico's extensions of an attestation say.
struct YubicoExtensions {
    firmware: (u8, u8, u8),
    pin_policy: u8,
    touch_policy: u8,
    serial: Option<u32>,
}

/// Step 4: Yubico's extensions (firmware, serial, policies), checked against `expected`.
fn yubico_extensions(
    leaf: &Certificate,
    expected: &Expected,
    slot: &str,
) -> Result<YubicoExtensions, Error> {
    let firmware = match extension(leaf, OID_YK_FIRMWARE).map(|v| unwrap_octets(v, 3)) {
        Some(&[a, b, c]) => (a, b, c),
        _ => {
            return Err(fail(
                "the attestation has no valid firmware version (1.3.6.1.4.1.41482.3.3): it is \
                 not a YubiKey PIV attestation"
                    .to_string(),
            ))
        }
    };
    let (pin_policy, touch_policy) =
        match extension(leaf, OID_YK_POLICY).map(|v| unwrap_octets(v, 2)) {
            Some(&[p, t]) => (p, t),
            _ => {
                return Err(fail(
                    "the attestation has no valid PIN and touch policy (1.3.6.1.4.1.41482.3.8): \
                     it is not a YubiKey PIV attestation"
                        .to_string(),
                ))
            }
        };
    let serial = match extension(leaf, OID_YK_SERIAL) {
        None => None,
        Some(v) => Some(parse_serial(v).ok_or_else(|| {
            fail("the attestation's serial number (1.3.6.1.4.1.41482.3.7) is malformed".to_string())
        })?),
    };
    if let Some(want) = expected.serial {
        match serial {
            Some(got) if got == want => {}
            Some(got) => {
                return Err(fail(format!(
                    "attested serial {got}, token reports {want}: the attestation is from \
                     another token"
                )))
            }
            None => {
                return Err(fail(format!(
                    "the attestation carries no serial number, token reports {want} (YubiKeys \
                     before firmware 5 do not attest their serial)"
                )))
            }
        }
    }
    if expected.pin_policy_always && pin_policy != PIN_POLICY_ALWAYS {
        return Err(fail(format!(
            "the key in {slot} has PIN policy {} (attested), not always; generate it again with \
             PIN policy always",
            pin_policy_name(pin_policy)
        )));
    }
    if expected.touch_policy_always && touch_policy != TOUCH_POLICY_ALWAYS {
        return Err(fail(format!(
            "the key in {slot} has touch policy {} (attested), not always; generate it again \
             with touch policy always",
            touch_policy_name(touch_policy)
        )));
    }
    Ok(YubicoExtensions {
        firmware,
        pin_policy,
        touch_policy,
        serial,
    })
}

fn fail(msg: String) -> Error {
    Error::Attestation(msg)
}

/// Depth-first search for a path from a certificate up to a self-issued bundle certificate,
/// every link checked by name and signature. Backtracks, so a bundle holding both of Yubico's
/// "PIV Root CA Serial 263751" certificates (2016 and 2018, same name and key) or unrelated
/// certificates with a matching name still finds the right path.
struct PathSearch<'a> {
    bundle: &'a [Certificate],
    bundle_der: &'a [Vec<u8>],
    now_unix: u64,
    /// Why name-matching candidates were refused, for the error message.
    notes: Vec<String>,
}

impl PathSearch<'_> {
    /// Extends `path` (indices into the bundle) from `child` to a root; false if none is found.
    fn extend(&mut self, child: &Certificate, child_der: &[u8], path: &mut Vec<usize>) -> bool {
        // Attestation and F9 are already in the chain.
        if path.len() + 2 >= MAX_CHAIN {
            self.note(format!(
                "the chain is longer than {MAX_CHAIN} certificates at '{}'",
                child.tbs_certificate().subject()
            ));
            return false;
        }
        for (i, issuer) in self.bundle.iter().enumerate() {
            if path.contains(&i)
                || issuer.tbs_certificate().subject() != child.tbs_certificate().issuer()
            {
                continue;
            }
            let name = issuer.tbs_certificate().subject();
            match signed_by(child_der, child, issuer) {
                Ok(()) => {}
                Err(SigError::Bad) => {
                    self.note(format!(
                        "'{name}' in the attestation roots has the right name but did not sign \
                         '{}'",
                        child.tbs_certificate().subject()
                    ));
                    continue;
                }
                Err(SigError::Unsupported(what)) => {
                    self.note(format!("cannot check a signature by '{name}': {what}"));
                    continue;
                }
            }
            let validity = issuer.tbs_certificate().validity();
            let from = validity.not_before.to_unix_duration().as_secs();
            let to = validity.not_after.to_unix_duration().as_secs();
            if self.now_unix < from || self.now_unix > to {
                self.note(format!(
                    "'{name}' in the attestation roots is not valid now (valid from {} to {})",
                    validity.not_before, validity.not_after
                ));
                continue;
            }
            path.push(i);
            if issuer.tbs_certificate().issuer() == name {
                return true;
            }
            let der = self
                .bundle_der
                .get(i)
                .map(Vec::as_slice)
                .unwrap_or_default();
            if self.extend(issuer, der, path) {
                return true;
            }
            path.pop();
        }
        false
    }

    fn note(&mut self, note: String) {
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }
}

enum SigError {
    Bad,
    Unsupported(String),
}

/// Checks that `issuer`'s key made `child`'s signature over the TBS bytes exactly as they are
/// in `child_der` (not re-encoded, so a certificate is checked as it was signed).
fn signed_by(child_der: &[u8], child: &Certificate, issuer: &Certificate) -> Result<(), SigError> {
    let tbs = tbs_bytes(child_der).ok_or(SigError::Bad)?;
    let spki = issuer.tbs_certificate().subject_public_key_info();
    let alg = algorithm(&child.signature_algorithm().oid, spki)?;
    let sig = child.signature().as_bytes().ok_or(SigError::Bad)?;
    UnparsedPublicKey::new(alg, spki.subject_public_key.raw_bytes())
        .verify(tbs, sig)
        .map_err(|_| SigError::Bad)
}

/// The ring algorithm for a signature algorithm and an issuer key: ECDSA P-256/P-384 with
/// SHA-256/384 (sandbox and 5.7.4+ tokens) and RSA PKCS#1 v1.5 with SHA-256/384/512 (Yubico's
/// roots, intermediates and older F9 keys).
fn algorithm(
    sig_oid: &ObjectIdentifier,
    spki: &SubjectPublicKeyInfoOwned,
) -> Result<&'static dyn VerificationAlgorithm, SigError> {
    let key = spki.algorithm.oid;
    let alg: Option<&'static dyn VerificationAlgorithm> = if key == OID_EC_PUBLIC_KEY {
        match (curve(spki), *sig_oid) {
            (Some(c), s) if c == OID_P256 && s == OID_ECDSA_SHA256 => {
                Some(&signature::ECDSA_P256_SHA256_ASN1)
            }
            (Some(c), s) if c == OID_P256 && s == OID_ECDSA_SHA384 => {
                Some(&signature::ECDSA_P256_SHA384_ASN1)
            }
            (Some(c), s) if c == OID_P384 && s == OID_ECDSA_SHA256 => {
                Some(&signature::ECDSA_P384_SHA256_ASN1)
            }
            (Some(c), s) if c == OID_P384 && s == OID_ECDSA_SHA384 => {
                Some(&signature::ECDSA_P384_SHA384_ASN1)
            }
            _ => None,
        }
    } else if key == OID_RSA {
        match *sig_oid {
            s if s == OID_RSA_SHA256 => Some(&signature::RSA_PKCS1_2048_8192_SHA256),
            s if s == OID_RSA_SHA384 => Some(&signature::RSA_PKCS1_2048_8192_SHA384),
            s if s == OID_RSA_SHA512 => Some(&signature::RSA_PKCS1_2048_8192_SHA512),
            _ => None,
        }
    } else {
        None
    };
    alg.ok_or_else(|| {
        SigError::Unsupported(format!(
            "signature algorithm {sig_oid} with a {key} key is not supported (breakglass checks \
             ECDSA P-256/P-384 with SHA-256/384 and RSA PKCS#1 v1.5 with SHA-256/384/512)"
        ))
    })
}

/// The named curve of an EC key.
fn curve(spki: &SubjectPublicKeyInfoOwned) -> Option<ObjectIdentifier> {
    spki.algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
}

/// The TBSCertificate element of a DER certificate, as signed.
fn tbs_bytes(cert_der: &[u8]) -> Option<&[u8]> {
    let outer = AnyRef::from_der(cert_der).ok()?;
    let body = outer.value();
    let mut reader = SliceReader::new(body).ok()?;
    AnyRef::decode(&mut reader).ok()?;
    let len = usize::try_from(reader.position()).ok()?;
    body.get(..len)
}

/// The value of a certificate extension.
fn extension(cert: &Certificate, oid: ObjectIdentifier) -> Option<&[u8]> {
    cert.tbs_certificate()
        .extensions()?
        .iter()
        .find(|e| e.extn_id == oid)
        .map(|e| e.extn_value.as_bytes())
}

/// Yubico puts the firmware and policy bytes in the extension value as they are; an OCTET
/// STRING around them is accepted too (lengths tell the two apart).
fn unwrap_octets(v: &[u8], len: usize) -> &[u8] {
    match v {
        [0x04, l, rest @ ..] if usize::from(*l) == len && rest.len() == len => rest,
        _ => v,
    }
}

/// The serial extension: a DER INTEGER (non-negative, fits in 32 bits).
fn parse_serial(v: &[u8]) -> Option<u32> {
    let int = x509_cert::der::asn1::Uint::from_der(v).ok()?;
    let bytes = int.as_bytes();
    if bytes.len() > 4 {
        return None;
    }
    Some(bytes.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)))
}

/// "slot 82" from the attestation's subject ("YubiKey PIV Attestation 82"), else "the slot".
fn slot_label(leaf: &Certificate) -> String {
    let cn = common_name(leaf.tbs_certificate().subject());
    match cn.rsplit(' ').next() {
        Some(s) if s.len() == 2 && s.chars().all(|c| c.is_ascii_hexdigit()) => {
            format!("slot {}", s.to_ascii_lowercase())
        }
        _ => "the slot".to_string(),
    }
}

/// The first common name of a name, or the whole name when it has none readable.
fn common_name(name: &Name) -> String {
    name.iter()
        .filter(|atv| atv.oid == OID_COMMON_NAME)
        .find_map(|atv| {
            atv.value
                .decode_as::<Utf8StringRef<'_>>()
                .map(|s| s.as_str().to_string())
                .or_else(|_| {
                    atv.value
                        .decode_as::<PrintableStringRef<'_>>()
                        .map(|s| s.as_str().to_string())
                })
                .ok()
        })
        .unwrap_or_else(|| name.to_string())
}

fn pin_policy_name(p: u8) -> String {
    match p {
        0 => "default".to_string(),
        1 => "never".to_string(),
        2 => "once".to_string(),
        3 => "always".to_string(),
        other => format!("{other:#04x}"),
    }
}

fn touch_policy_name(t: u8) -> String {
    match t {
        0 => "default".to_string(),
        1 => "never".to_string(),
        2 => "always".to_string(),
        3 => "cached".to_string(),
        other => format!("{other:#04x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Yubico's pre-5.7.4 PIV attestation root, byte-identical in Debian's
    /// golang-github-go-piv-piv-go-dev 1.8.0 (piv/key.go), golang-pault-go-ykpiv-dev 1.3.4,
    /// npm @peculiar/attestation-yubico 2.0.0 and crates.io attestation-validator 0.2.0.
    /// RSA 2048, sha256WithRSAEncryption, self-signed.
    const YUBICO_PIV_ROOT_263751: &str = "\
-----BEGIN CERTIFICATE-----\n\
MIIDFzCCAf+gAwIBAgIDBAZHMA0GCSqGSIb3DQEBCwUAMCsxKTAnBgNVBAMMIFl1\n\
YmljbyBQSVYgUm9vdCBDQSBTZXJpYWwgMjYzNzUxMCAXDTE2MDMxNDAwMDAwMFoY\n\
DzIwNTIwNDE3MDAwMDAwWjArMSkwJwYDVQQDDCBZdWJpY28gUElWIFJvb3QgQ0Eg\n\
U2VyaWFsIDI2Mzc1MTCCASIwDQYJKoZIhvcNAQEBBQADggEPADCCAQoCggEBAMN2\n\
cMTNR6YCdcTFRxuPy31PabRn5m6pJ+nSE0HRWpoaM8fc8wHC+Tmb98jmNvhWNE2E\n\
ilU85uYKfEFP9d6Q2GmytqBnxZsAa3KqZiCCx2LwQ4iYEOb1llgotVr/whEpdVOq\n\
joU0P5e1j1y7OfwOvky/+AXIN/9Xp0VFlYRk2tQ9GcdYKDmqU+db9iKwpAzid4oH\n\
BVLIhmD3pvkWaRA2H3DA9t7H/HNq5v3OiO1jyLZeKqZoMbPObrxqDg+9fOdShzgf\n\
wCqgT3XVmTeiwvBSTctyi9mHQfYd2DwkaqxRnLbNVyK9zl+DzjSGp9IhVPiVtGet\n\
X02dxhQnGS7K6BO0Qe8CAwEAAaNCMEAwHQYDVR0OBBYEFMpfyvLEojGc6SJf8ez0\n\
1d8Cv4O/MA8GA1UdEwQIMAYBAf8CAQEwDgYDVR0PAQH/BAQDAgEGMA0GCSqGSIb3\n\
DQEBCwUAA4IBAQBc7Ih8Bc1fkC+FyN1fhjWioBCMr3vjneh7MLbA6kSoyWF70N3s\n\
XhbXvT4eRh0hvxqvMZNjPU/VlRn6gLVtoEikDLrYFXN6Hh6Wmyy1GTnspnOvMvz2\n\
lLKuym9KYdYLDgnj3BeAvzIhVzzYSeU77/Cupofj093OuAswW0jYvXsGTyix6B3d\n\
bW5yWvyS9zNXaqGaUmP3U9/b6DlHdDogMLu3VLpBB9bm5bjaKWWJYgWltCVgUbFq\n\
Fqyi4+JE014cSgR57Jcu3dZiehB6UtAPgad9L5cNvua/IWRmm+ANy3O2LH++Pyl8\n\
SREzU8onbBsjMg9QDiSf5oJLKvd/Ren+zGY7\n\
-----END CERTIFICATE-----\n\
";

    /// Yubico's root from firmware 5.7.4 on, from crates.io attestation-validator 0.2.0.
    /// RSA 2048, sha512WithRSAEncryption, self-signed.
    const YUBICO_ATTESTATION_ROOT_1: &str = "\
-----BEGIN CERTIFICATE-----\n\
MIIDPjCCAiagAwIBAgIUXzeiEDJEOTt14F5n0o6Zf/bBwiUwDQYJKoZIhvcNAQEN\n\
BQAwJDEiMCAGA1UEAwwZWXViaWNvIEF0dGVzdGF0aW9uIFJvb3QgMTAgFw0yNDEy\n\
MDEwMDAwMDBaGA85OTk5MTIzMTIzNTk1OVowJDEiMCAGA1UEAwwZWXViaWNvIEF0\n\
dGVzdGF0aW9uIFJvb3QgMTCCASIwDQYJKoZIhvcNAQEBBQADggEPADCCAQoCggEB\n\
AMZ6/TxM8rIT+EaoPvG81ontMOo/2mQ2RBwJHS0QZcxVaNXvl12LUhBZ5LmiBScI\n\
Zd1Rnx1od585h+/dhK7hEm7JAALkKKts1fO53KGNLZujz5h3wGncr4hyKF0G74b/\n\
U3K9hE5mGND6zqYchCRAHfrYMYRDF4YL0X4D5nGdxvppAy6nkEmtWmMnwO3i0TAu\n\
csrbE485HvGM4r0VpgVdJpvgQjiTJCTIq+D35hwtT8QDIv+nGvpcyi5wcIfCkzyC\n\
imJukhYy6KoqNMKQEdpNiSOvWyDMTMt1bwCvEzpw91u+msUt4rj0efnO9s0ZOwdw\n\
MRDnH4xgUl5ZLwrrPkfC1/0CAwEAAaNmMGQwHQYDVR0OBBYEFNLu71oijTptXCOX\n\
PfKF1SbxJXuSMB8GA1UdIwQYMBaAFNLu71oijTptXCOXPfKF1SbxJXuSMBIGA1Ud\n\
EwEB/wQIMAYBAf8CAQMwDgYDVR0PAQH/BAQDAgGGMA0GCSqGSIb3DQEBDQUAA4IB\n\
AQC3IW/sgB9pZ8apJNjxuGoX+FkILks0wMNrdXL/coUvsrhzsvl6mePMrbGJByJ1\n\
XnquB5sgcRENFxdQFma3mio8Upf1owM1ZreXrJ0mADG2BplqbJnxiyYa+R11reIF\n\
TWeIhMNcZKsDZrFAyPuFjCWSQvJmNWe9mFRYFgNhXJKkXIb5H1XgEDlwiedYRM7V\n\
olBNlld6pRFKlX8ust6OTMOeADl2xNF0m1LThSdeuXvDyC1g9+ILfz3S6OIYgc3i\n\
roRcFD354g7rKfu67qFAw9gC4yi0xBTPrY95rh4/HqaUYCA/L8ldRk6H7Xk35D+W\n\
Vpmq2Sh/xT5HiFuhf4wJb0bK\n\
-----END CERTIFICATE-----\n\
";

    fn pem_der(pem: &str) -> Vec<u8> {
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        data_encoding::BASE64.decode(b64.as_bytes()).unwrap()
    }

    fn fingerprint(der: &[u8]) -> String {
        data_encoding::HEXLOWER.encode(ring::digest::digest(&ring::digest::SHA256, der).as_ref())
    }

    #[test]
    fn pem_bundle_with_text_around_as_yubico_publishes_it() {
        let text = format!(
            "Yubico PIV root (firmware before 5.7.4)\n{YUBICO_PIV_ROOT_263751}\n\
             Yubico Attestation Root 1\r\n{}trailing words\n",
            YUBICO_ATTESTATION_ROOT_1.replace('\n', "\r\n")
        );
        let certs = parse_bundle(text.as_bytes()).unwrap();
        let names: Vec<String> = certs
            .iter()
            .map(|c| common_name(c.tbs_certificate().subject()))
            .collect();
        assert_eq!(
            names,
            [
                "Yubico PIV Root CA Serial 263751",
                "Yubico Attestation Root 1"
            ]
        );
    }

    #[test]
    fn real_yubico_root_fingerprints() {
        // The SHA-256 of the certificates as the packages above carry them.
        assert_eq!(
            fingerprint(&pem_der(YUBICO_PIV_ROOT_263751)),
            "63ece914e54dd87915f34033c85af4c0696ba1512f8add66ced738331207b546"
        );
        assert_eq!(
            fingerprint(&pem_der(YUBICO_ATTESTATION_ROOT_1)),
            "62760c6a6ef91679f454c8902b80fd009825b3f25da90f1fbace2ec6586cd5a8"
        );
    }

    #[test]
    fn single_der_certificate() {
        let der = pem_der(YUBICO_PIV_ROOT_263751);
        let certs = parse_bundle(&der).unwrap();
        assert_eq!(certs.len(), 1);
        assert_eq!(certs[0].to_der().unwrap(), der);
    }

    #[test]
    fn no_certificate_is_an_error() {
        for input in [&b""[..], b"hello\n", &[0x30, 0x03, 0x02, 0x01, 0x01]] {
            let e = parse_bundle(input).unwrap_err();
            assert!(e.contains("no certificate"), "{e}");
        }
        let e = parse_bundle(format!("{PEM_BEGIN}\nMIID\n").as_bytes()).unwrap_err();
        assert!(e.contains("no END line"), "{e}");
        let e = parse_bundle(format!("{PEM_BEGIN}\n!!!!\n{PEM_END}\n").as_bytes()).unwrap_err();
        assert!(e.contains("base64"), "{e}");
        let e = parse_bundle(format!("{PEM_BEGIN}\nMAMCAQE=\n{PEM_END}\n").as_bytes()).unwrap_err();
        assert!(e.contains("not an X.509 certificate"), "{e}");
        let e = parse_bundle(format!("{PEM_END}\n{PEM_BEGIN}\n").as_bytes()).unwrap_err();
        assert!(e.contains("ends before it begins"), "{e}");
    }

    #[test]
    fn rsa_pkcs1_sha256_and_sha512_on_real_roots() {
        for pem in [YUBICO_PIV_ROOT_263751, YUBICO_ATTESTATION_ROOT_1] {
            let der = pem_der(pem);
            let cert = Certificate::from_der(&der).unwrap();
            assert!(signed_by(&der, &cert, &cert).is_ok());
            // One bit of the signed part changed: the signature no longer holds.
            let mut bad = der.clone();
            let tbs = tbs_bytes(&der).unwrap();
            let tbs_end = tbs.as_ptr() as usize - der.as_ptr() as usize + tbs.len();
            bad[tbs_end - 1] ^= 0x01;
            let bad_cert = Certificate::from_der(&bad).unwrap();
            assert!(matches!(
                signed_by(&bad, &bad_cert, &cert),
                Err(SigError::Bad)
            ));
        }
        // Each root is its own (and only its own) issuer.
        let a_der = pem_der(YUBICO_PIV_ROOT_263751);
        let a = Certificate::from_der(&a_der).unwrap();
        let b = Certificate::from_der(&pem_der(YUBICO_ATTESTATION_ROOT_1)).unwrap();
        assert!(matches!(signed_by(&a_der, &a, &b), Err(SigError::Bad)));
    }

    #[test]
    fn mismatched_key_and_algorithm_is_unsupported() {
        let root = Certificate::from_der(&pem_der(YUBICO_PIV_ROOT_263751)).unwrap();
        let spki = root.tbs_certificate().subject_public_key_info();
        assert!(matches!(
            algorithm(&OID_ECDSA_SHA256, spki),
            Err(SigError::Unsupported(_))
        ));
        assert!(algorithm(&OID_RSA_SHA384, spki).is_ok());
    }

    #[test]
    fn tbs_bytes_are_the_signed_part() {
        let der = pem_der(YUBICO_ATTESTATION_ROOT_1);
        let cert = Certificate::from_der(&der).unwrap();
        assert_eq!(
            tbs_bytes(&der).unwrap(),
            cert.tbs_certificate().to_der().unwrap().as_slice()
        );
        assert!(tbs_bytes(&der[..10]).is_none());
        assert!(tbs_bytes(&[]).is_none());
    }

    #[test]
    fn serial_extension() {
        let enc = |v: &[u8]| {
            x509_cert::der::asn1::Uint::new(v)
                .unwrap()
                .to_der()
                .unwrap()
        };
        assert_eq!(
            parse_serial(&enc(&[0x01, 0x23, 0x45, 0x67])),
            Some(0x0123_4567)
        );
        assert_eq!(
            parse_serial(&enc(&[0xFF, 0xFF, 0xFF, 0xFF])),
            Some(u32::MAX)
        );
        assert_eq!(parse_serial(&enc(&[0x05])), Some(5));
        assert_eq!(
            parse_serial(&enc(&[1, 0, 0, 0, 0])),
            None,
            "wider than 32 bits"
        );
        assert_eq!(parse_serial(&[0x02, 0x01, 0xFF]), None, "negative");
        assert_eq!(parse_serial(&[0x04, 0x01, 0x05]), None, "not an INTEGER");
        assert_eq!(parse_serial(&[]), None);
    }

    #[test]
    fn raw_or_wrapped_extension_bytes() {
        assert_eq!(unwrap_octets(&[5, 7, 4], 3), &[5, 7, 4]);
        assert_eq!(unwrap_octets(&[0x04, 3, 5, 7, 4], 3), &[5, 7, 4]);
        assert_eq!(unwrap_octets(&[3, 2], 2), &[3, 2]);
        assert_eq!(unwrap_octets(&[0x04, 2, 3, 2], 2), &[3, 2]);
        // A wrong inner length is left as it is (and then refused by length).
        assert_eq!(unwrap_octets(&[0x04, 3, 3, 2], 2), &[0x04, 3, 3, 2]);
    }

    #[test]
    fn policy_names() {
        assert_eq!(pin_policy_name(PIN_POLICY_ALWAYS), "always");
        assert_eq!(pin_policy_name(2), "once");
        assert_eq!(touch_policy_name(TOUCH_POLICY_ALWAYS), "always");
        assert_eq!(touch_policy_name(3), "cached");
        assert_eq!(touch_policy_name(9), "0x09");
    }

    #[test]
    fn garbage_attestation_and_f9_are_refused() {
        let root = Certificate::from_der(&pem_der(YUBICO_PIV_ROOT_263751)).unwrap();
        let der = pem_der(YUBICO_PIV_ROOT_263751);
        let expected = Expected {
            public_key_sec1: vec![4; 65],
            serial: None,
            pin_policy_always: true,
            touch_policy_always: true,
        };
        let bundle = std::slice::from_ref(&root);
        let e = verify(b"junk", &der, bundle, &expected, 0).unwrap_err();
        assert!(e.to_string().contains("is not an X.509 certificate"), "{e}");
        let e = verify(&der, b"junk", bundle, &expected, 0).unwrap_err();
        assert!(e.to_string().contains("(slot F9)"), "{e}");
    }
}
