//! HOTP (RFC 4226) and TOTP (RFC 6238) arithmetic, shared by the soft token and by tests that
//! check a token's answers. Hosts never compute codes for real tokens: the token does.

use ring::hmac;
use zeroize::Zeroizing;

/// The HMAC hash of an OATH credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// HMAC-SHA1, the RFC 4226 default and what authenticator apps assume.
    Sha1,
    /// HMAC-SHA256.
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

impl Algorithm {
    /// The YKOATH algorithm nibble.
    pub fn code(self) -> u8 {
        match self {
            Self::Sha1 => 0x01,
            Self::Sha256 => 0x02,
            Self::Sha512 => 0x03,
        }
    }

    /// The algorithm of a YKOATH algorithm nibble (the low nibble of the type/algorithm byte);
    /// `None` for another value.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0x01 => Some(Self::Sha1),
            0x02 => Some(Self::Sha256),
            0x03 => Some(Self::Sha512),
            _ => None,
        }
    }

    /// HMAC block size: keys longer than this are hashed first.
    pub fn block_len(self) -> usize {
        match self {
            Self::Sha1 | Self::Sha256 => 64,
            Self::Sha512 => 128,
        }
    }

    /// HMAC output length, in bytes.
    pub fn output_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }

    /// The name as `otpauth://` URIs and ykman write it (`"SHA1"`, `"SHA256"`, `"SHA512"`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
            Self::Sha512 => "SHA512",
        }
    }

    fn ring(self) -> hmac::Algorithm {
        match self {
            Self::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Self::Sha256 => hmac::HMAC_SHA256,
            Self::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn digest(self) -> &'static ring::digest::Algorithm {
        match self {
            Self::Sha1 => &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            Self::Sha256 => &ring::digest::SHA256,
            Self::Sha512 => &ring::digest::SHA512,
        }
    }
}

impl std::str::FromStr for Algorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "sha1" => Ok(Self::Sha1),
            "sha256" => Ok(Self::Sha256),
            "sha512" => Ok(Self::Sha512),
            _ => Err(format!(
                "unknown algorithm {s:?}: use sha1, sha256 or sha512"
            )),
        }
    }
}

/// The minimum key length YKOATH stores; shorter keys are zero-padded (HMAC-equivalent).
pub const MIN_KEY_LEN: usize = 14;

/// Prepares a seed for a token: hash it if longer than the HMAC block, pad it to 14 bytes.
/// The HMAC of the result equals the HMAC of the original key.
pub fn token_key(algorithm: Algorithm, seed: &[u8]) -> Zeroizing<Vec<u8>> {
    let digest;
    let bytes = if seed.len() > algorithm.block_len() {
        digest = ring::digest::digest(algorithm.digest(), seed);
        digest.as_ref()
    } else {
        seed
    };
    // Sized once: growing would leave a copy of the seed in freed memory.
    let mut key = Zeroizing::new(Vec::with_capacity(bytes.len().max(MIN_KEY_LEN)));
    key.extend_from_slice(bytes);
    key.resize(bytes.len().max(MIN_KEY_LEN), 0);
    key
}

/// HMAC over `message` with `key`.
pub fn hmac(algorithm: Algorithm, key: &[u8], message: &[u8]) -> Zeroizing<Vec<u8>> {
    let key = hmac::Key::new(algorithm.ring(), key);
    Zeroizing::new(hmac::sign(&key, message).as_ref().to_vec())
}

/// RFC 4226 §5.3 dynamic truncation: a 31-bit value from the MAC.
///
/// # Panics
/// Never for MACs of at least 20 bytes (every supported algorithm).
pub fn dynamic_truncate(mac: &[u8]) -> u32 {
    let offset = usize::from(mac[mac.len() - 1] & 0x0F);
    u32::from_be_bytes([
        mac[offset],
        mac[offset + 1],
        mac[offset + 2],
        mac[offset + 3],
    ]) & 0x7FFF_FFFF
}

/// Renders a truncated value as a zero-padded decimal code of `digits` digits.
pub fn format_code(truncated: u32, digits: u8) -> Zeroizing<String> {
    let modulus = 10u64.pow(u32::from(digits));
    let value = u64::from(truncated & 0x7FFF_FFFF) % modulus;
    Zeroizing::new(format!("{value:0width$}", width = usize::from(digits)))
}

/// The TOTP moving factor for a time and period.
pub fn time_step(unix_seconds: u64, period: u32) -> u64 {
    unix_seconds / u64::from(period.max(1))
}

/// The 8-byte challenge a host sends for a TOTP code at `unix_seconds`.
pub fn totp_challenge(unix_seconds: u64, period: u32) -> [u8; 8] {
    time_step(unix_seconds, period).to_be_bytes()
}

/// HOTP value for a counter.
pub fn hotp(algorithm: Algorithm, key: &[u8], counter: u64, digits: u8) -> Zeroizing<String> {
    let mac = hmac(algorithm, key, &counter.to_be_bytes());
    format_code(dynamic_truncate(&mac), digits)
}

/// TOTP value at a time.
pub fn totp(
    algorithm: Algorithm,
    key: &[u8],
    unix_seconds: u64,
    period: u32,
    digits: u8,
) -> Zeroizing<String> {
    hotp(algorithm, key, time_step(unix_seconds, period), digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(algorithm: Algorithm) -> Vec<u8> {
        b"1234567890"
            .iter()
            .copied()
            .cycle()
            .take(algorithm.output_len())
            .collect()
    }

    fn vectors(text: &str) -> impl Iterator<Item = Vec<&str>> {
        text.lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(|l| l.split_whitespace().collect())
    }

    #[test]
    fn rfc4226_hotp_vectors() {
        let key = seed(Algorithm::Sha1);
        let mut n = 0;
        for v in vectors(include_str!("../../tests/data/rfc4226-hotp.txt")) {
            let counter: u64 = v[0].parse().unwrap();
            assert_eq!(
                &*hotp(Algorithm::Sha1, &key, counter, 6),
                v[1],
                "counter {counter}"
            );
            n += 1;
        }
        assert_eq!(n, 10);
    }

    #[test]
    fn rfc6238_totp_vectors_all_algorithms_8_and_6_digits() {
        let mut n = 0;
        for v in vectors(include_str!("../../tests/data/rfc6238-totp.txt")) {
            let t: u64 = v[0].parse().unwrap();
            let alg: Algorithm = v[1].parse().unwrap();
            let key = seed(alg);
            assert_eq!(&*totp(alg, &key, t, 30, 8), v[2], "{t} {alg:?}");
            // Six digits are the last six of the eight-digit value (same truncated integer).
            assert_eq!(
                &*totp(alg, &key, t, 30, 6),
                &v[2][2..],
                "{t} {alg:?} 6 digits"
            );
            // The token-prepared key (padded or hashed) gives the same code.
            assert_eq!(&*totp(alg, &token_key(alg, &key), t, 30, 8), v[2]);
            n += 1;
        }
        assert_eq!(n, 18);
    }

    #[test]
    fn long_and_short_keys_are_hmac_equivalent_after_preparation() {
        for alg in [Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512] {
            for len in [1usize, 13, 14, 64, 65, 129, 300] {
                let key: Vec<u8> = (0..len).map(|i| i as u8).collect();
                assert_eq!(
                    hmac(alg, &key, b"msg"),
                    hmac(alg, &token_key(alg, &key), b"msg"),
                    "{alg:?} {len}"
                );
            }
        }
    }

    #[test]
    fn challenge_is_big_endian_time_step() {
        assert_eq!(totp_challenge(59, 30), [0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(
            totp_challenge(1_111_111_109, 30),
            0x023523EC_u64.to_be_bytes()
        );
        assert_eq!(totp_challenge(120, 60), 2u64.to_be_bytes());
    }
}
