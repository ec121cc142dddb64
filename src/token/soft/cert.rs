//! Certificates of the soft token's PIV application: its per-card attestation root, the F9
//! attestation certificate and the attestations of generated keys, with Yubico's extensions.
//! Built with the `x509-cert` builder; tests use [`issue_certificate`] for chains of their own.

use std::str::FromStr;
use std::time::Duration;

use p256::ecdsa::{DerSignature, SigningKey};
use p256::PublicKey;
use ring::rand::SecureRandom;
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder, CertificateBuilder};
use x509_cert::der::asn1::OctetString;
use x509_cert::der::oid::ObjectIdentifier;
use x509_cert::der::Encode;
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{SubjectPublicKeyInfo, SubjectPublicKeyInfoRef};
use x509_cert::time::Validity;
use x509_cert::TbsCertificate;

/// Yubico attestation extensions (developers.yubico.com/PIV/Introduction/PIV_attestation.html).
pub const OID_YK_FIRMWARE: &str = "1.3.6.1.4.1.41482.3.3";
pub const OID_YK_SERIAL: &str = "1.3.6.1.4.1.41482.3.7";
pub const OID_YK_POLICY: &str = "1.3.6.1.4.1.41482.3.8";
pub const OID_YK_FORM_FACTOR: &str = "1.3.6.1.4.1.41482.3.9";
const OID_BASIC_CONSTRAINTS: &str = "2.5.29.19";
const OID_KEY_USAGE: &str = "2.5.29.15";

/// How long the sandbox certificates are valid.
pub const CERT_LIFETIME: Duration = Duration::from_secs(20 * 365 * 24 * 3600);

/// A certificate profile with fixed names and extensions.
struct Profile {
    issuer: Name,
    subject: Name,
    extensions: Vec<Extension>,
}

impl BuilderProfile for Profile {
    fn get_issuer(&self, _subject: &Name) -> Name {
        self.issuer.clone()
    }

    fn get_subject(&self) -> Name {
        self.subject.clone()
    }

    fn build_extensions(
        &self,
        _spk: SubjectPublicKeyInfoRef<'_>,
        _issuer_spk: SubjectPublicKeyInfoRef<'_>,
        _tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        Ok(self.extensions.clone())
    }
}

/// Certificate-building failures (none are expected: every input is built here).
#[derive(Debug, thiserror::Error)]
#[error("building a sandbox certificate failed: {0}")]
pub struct CertError(String);

pub fn cert_err(e: impl std::fmt::Display) -> CertError {
    CertError(e.to_string())
}

/// An X.509 extension from its dotted OID and DER value.
pub fn extension(oid: &str, critical: bool, value: Vec<u8>) -> Result<Extension, CertError> {
    Ok(Extension {
        extn_id: ObjectIdentifier::new(oid).map_err(cert_err)?,
        critical,
        extn_value: OctetString::new(value).map_err(cert_err)?,
    })
}

pub fn ca_extensions() -> Result<Vec<Extension>, CertError> {
    let bc = BasicConstraints {
        ca: true,
        path_len_constraint: None,
    };
    let ku = KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign);
    Ok(vec![
        extension(OID_BASIC_CONSTRAINTS, true, bc.to_der().map_err(cert_err)?)?,
        extension(OID_KEY_USAGE, true, ku.to_der().map_err(cert_err)?)?,
    ])
}

fn random_serial(rng: &dyn SecureRandom) -> Result<SerialNumber, CertError> {
    let mut b = [0u8; 16];
    let _ = rng.fill(&mut b);
    b[0] = (b[0] & 0x7F) | 0x01;
    SerialNumber::new(&b).map_err(cert_err)
}

/// Issues a certificate (DER) for `public` signed by `signer`, valid from now for `lifetime`
/// (tests use it to build chains of their own).
pub fn issue_certificate(
    rng: &dyn SecureRandom,
    issuer: &str,
    subject: &str,
    public: &PublicKey,
    extensions: Vec<Extension>,
    signer: &SigningKey,
    lifetime: Duration,
) -> Result<Vec<u8>, CertError> {
    let profile = Profile {
        issuer: Name::from_str(issuer).map_err(cert_err)?,
        subject: Name::from_str(subject).map_err(cert_err)?,
        extensions,
    };
    let spki = SubjectPublicKeyInfo::from_key(public).map_err(cert_err)?;
    let validity = Validity::from_now(lifetime).map_err(cert_err)?;
    let builder =
        CertificateBuilder::new(profile, random_serial(rng)?, validity, spki).map_err(cert_err)?;
    let cert = builder.build::<_, DerSignature>(signer).map_err(cert_err)?;
    cert.to_der().map_err(cert_err)
}
