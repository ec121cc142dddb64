//! Shamir's secret sharing of the custodians' secret `P` (vault format version 3): a thin layer
//! over `blahaj` (GF(256) with the polynomial x⁸ + x⁴ + x³ + x² + 1, one polynomial per byte,
//! a share is its x and one y byte per secret byte) that feeds it the crate's random source
//! and keeps every byte of a share in wiped memory.
//!
//! Why `blahaj`: it is small enough to read in one sitting (about 600 lines), its coefficients
//! are drawn uniformly from all of GF(256) (the bias of `sharks`, RUSTSEC-2024-0398, is the
//! fix it was forked for), its shares zeroize on drop, and its arithmetic is the textbook one,
//! which `tests/tools/read_vault.py` reimplements from docs/vault-format.md. `vsss-rs` is the
//! other kept crate; it is generic over elliptic-curve fields and brings far more code for a
//! 32-byte secret.

use std::cell::Cell;
use std::convert::Infallible;

use zeroize::Zeroizing;

use crate::secure::{Key32, Random, RandomFailed};

/// Most custodians a vault holds (each one Argon2id at unlock, so a quorum of many is slow).
pub const MAX_CUSTODIANS: usize = 16;

/// One custodian's share of `P`: its x (1–255) and 32 y bytes. Wiped on drop; no `Debug`.
pub struct Share {
    /// The share's x, unique in the vault.
    pub x: u8,
    /// `f(x)` for each of the 32 byte polynomials.
    pub y: Key32,
}

/// The crate's [`Random`] as the `rand_core` generator blahaj draws coefficients from. The
/// trait cannot fail, so a failure of the source is remembered and reported by [`split`]
/// after the dealing, whose result is then thrown away.
struct Seam<'r> {
    rng: &'r dyn Random,
    failed: Cell<bool>,
}

impl rand_core::TryRng for Seam<'_> {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = Zeroizing::new([0u8; 4]);
        self.try_fill_bytes(&mut *b)?;
        Ok(u32::from_le_bytes(*b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = Zeroizing::new([0u8; 8]);
        self.try_fill_bytes(&mut *b)?;
        Ok(u64::from_le_bytes(*b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        if self.rng.fill(dst).is_err() {
            self.failed.set(true);
            dst.fill(0);
        }
        Ok(())
    }
}

impl rand_core::TryCryptoRng for Seam<'_> {}

/// Splits `secret` into `n` shares with x = 1 to `n`, any `threshold` of which rebuild it.
/// `1 ≤ threshold ≤ n ≤ MAX_CUSTODIANS` is the caller's to check (a panic-free clamp here).
pub fn split(
    secret: &Key32,
    threshold: u8,
    n: u8,
    rng: &dyn Random,
) -> Result<Vec<Share>, RandomFailed> {
    let mut seam = Seam {
        rng,
        failed: Cell::new(false),
    };
    let dealer = blahaj::Sharks(threshold.max(1)).dealer_rng(secret.expose(), &mut seam);
    let mut out = Vec::with_capacity(usize::from(n));
    for share in dealer.take(usize::from(n)) {
        let mut y = Zeroizing::new([0u8; 32]);
        for (dst, src) in y.iter_mut().zip(share.y.iter()) {
            *dst = src.0;
        }
        out.push(Share {
            x: share.x.0,
            y: Key32::new(*y),
        });
    }
    if seam.failed.get() {
        return Err(RandomFailed);
    }
    Ok(out)
}

/// Rebuilds the secret from shares with distinct x (Lagrange interpolation at 0). With fewer
/// than the threshold the result is a wrong secret, not an error: the caller opens the data
/// key with it, and that fails.
pub fn combine(shares: &[&Share]) -> Option<Key32> {
    let mut parsed = Vec::with_capacity(shares.len());
    for s in shares {
        let mut bytes = Zeroizing::new([0u8; 33]);
        bytes[0] = s.x;
        bytes[1..].copy_from_slice(s.y.expose());
        parsed.push(blahaj::Share::try_from(&bytes[..]).ok()?);
    }
    let n = u8::try_from(parsed.len()).ok()?;
    let secret = Zeroizing::new(blahaj::Sharks(n).recover(&parsed).ok()?);
    Some(Key32::new(secret.as_slice().try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secure::SystemRandom;

    fn secret() -> Key32 {
        Key32::new(core::array::from_fn(|i| i as u8 * 7 + 1))
    }

    #[test]
    fn any_threshold_of_the_shares_rebuilds_the_secret_and_fewer_do_not() {
        let rng = SystemRandom::new();
        for (m, n) in [(1u8, 1u8), (1, 3), (2, 3), (3, 5), (5, 5)] {
            let shares = split(&secret(), m, n, &rng).unwrap();
            assert_eq!(shares.len(), usize::from(n));
            assert_eq!(
                shares.iter().map(|s| s.x).collect::<Vec<_>>(),
                (1..=n).collect::<Vec<_>>()
            );
            // Every subset of size m rebuilds; every subset of size m - 1 (when m > 1) does not.
            for mask in 1u32..(1 << n) {
                let subset: Vec<&Share> = shares
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| mask & (1 << i) != 0)
                    .map(|(_, s)| s)
                    .collect();
                let got = combine(&subset).unwrap();
                if subset.len() >= usize::from(m) {
                    assert_eq!(got.expose(), secret().expose(), "{m} of {n}: {mask:b}");
                } else {
                    assert_ne!(got.expose(), secret().expose(), "{m} of {n}: {mask:b}");
                }
            }
        }
    }

    #[test]
    fn a_failing_random_source_deals_nothing() {
        struct Broken;
        impl Random for Broken {
            fn fill(&self, _: &mut [u8]) -> Result<(), RandomFailed> {
                Err(RandomFailed)
            }
        }
        assert!(split(&secret(), 2, 3, &Broken).is_err());
        // A threshold of one draws no coefficient: the shares are the secret itself.
        let one = split(&secret(), 1, 2, &Broken).unwrap();
        assert_eq!(one[0].y.expose(), secret().expose());
    }
}
