//! Secret types and the randomness seam shared by the vault and the ceremonies.

use secrecy::{ExposeSecret, ExposeSecretMut, SecretBox};
use zeroize::Zeroizing;

/// A source of random bytes. Production uses the OS; tests pass a deterministic one so that
/// vault vectors are reproducible.
pub trait Random {
    /// Fills `dest` with random bytes.
    fn fill(&self, dest: &mut [u8]) -> Result<(), RandomFailed>;
}

/// The system random source failed (it does not on Linux; the type keeps callers honest).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the system random source failed")]
pub struct RandomFailed;

/// The operating system's CSPRNG (via ring).
#[derive(Debug)]
pub struct SystemRandom(ring::rand::SystemRandom);

impl SystemRandom {
    /// The OS source.
    pub fn new() -> Self {
        Self(ring::rand::SystemRandom::new())
    }
}

impl Default for SystemRandom {
    fn default() -> Self {
        Self::new()
    }
}

impl Random for SystemRandom {
    fn fill(&self, dest: &mut [u8]) -> Result<(), RandomFailed> {
        ring::rand::SecureRandom::fill(&self.0, dest).map_err(|_| RandomFailed)
    }
}

/// `N` random bytes, as a plain array (not wiped: for salts, nonces and ids, not keys).
pub fn random_bytes<const N: usize>(rng: &dyn Random) -> Result<[u8; N], RandomFailed> {
    let mut b = [0u8; N];
    rng.fill(&mut b)?;
    Ok(b)
}

/// A 32-byte key (KEK, data key, factor output). No `Debug`, wiped on drop.
pub struct Key32(SecretBox<[u8; 32]>);

impl Key32 {
    /// Moves `bytes` into a `SecretBox`; the local copy is wiped (the caller's is the caller's
    /// to wipe).
    pub fn new(bytes: [u8; 32]) -> Self {
        let mut b = Zeroizing::new(bytes);
        Self(SecretBox::new(Box::new(std::mem::take(&mut *b))))
    }

    /// A key of 32 random bytes.
    pub fn random(rng: &dyn Random) -> Result<Self, RandomFailed> {
        let mut k = Self::new([0u8; 32]);
        rng.fill(k.0.expose_secret_mut())?;
        Ok(k)
    }

    /// The key's bytes.
    pub fn expose(&self) -> &[u8; 32] {
        self.0.expose_secret()
    }
}

/// Shows the last 4 characters of an access key id only (`****************WXYZ`).
pub fn mask_key_id(id: &str) -> String {
    let n = id.chars().count();
    if n <= 4 {
        return "*".repeat(n);
    }
    let tail: String = id.chars().skip(n - 4).collect();
    format!("{}{tail}", "*".repeat(n - 4))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_all_but_the_last_four() {
        assert_eq!(mask_key_id("AKIAIOSFODNN7EXAMPLE"), "****************MPLE");
        assert_eq!(mask_key_id("ABC"), "***");
        assert_eq!(mask_key_id(""), "");
    }
}
