//! Locked memory for session secrets.
//!
//! One buffer of [`SLOTS`] × [`SLOT_SIZE`] bytes, allocated once when the agent starts and
//! locked into RAM with `mlock` (so it is never written to swap), for the agent's lifetime.
//! Each stored session takes one slot; wiping zeroes the slot. Locking one long-lived buffer
//! instead of each secret avoids the trap of `munlock` on a page that another secret shares.
//!
//! If the kernel refuses the lock (RLIMIT_MEMLOCK), the agent still runs and `status` says so.

use zeroize::Zeroize;

/// Bytes per stored session (secret key + session token). AWS documents no maximum for
/// session tokens; role sessions with tags reach about 3 KiB.
pub const SLOT_SIZE: usize = 8 * 1024;
/// Sessions held at once: plain and role sessions of 32 profiles.
pub const SLOTS: usize = 64;

/// Where one session's secrets live in the arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    slot: usize,
    secret_len: usize,
    token_len: usize,
}

/// Why a session could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Every one of the [`SLOTS`] slots holds a session.
    #[error("the agent holds {SLOTS} sessions already; lock some profiles first")]
    Full,
    /// Secret key and session token together are over [`SLOT_SIZE`]: their length, in bytes.
    #[error("the session is {0} bytes, over the agent's limit of {SLOT_SIZE}")]
    TooLarge(usize),
}

/// The locked buffer of session secrets: [`SLOTS`] slots of [`SLOT_SIZE`] bytes, wiped on drop.
pub struct Arena {
    // Dropped first (field order): unlock happens after the buffer has been wiped in Drop.
    lock: Result<region::LockGuard, String>,
    buf: Box<[u8]>,
    used: [bool; SLOTS],
}

impl Arena {
    /// Allocates the buffer and tries to `mlock` it; a refused lock is kept for
    /// [`Arena::lock_error`], not returned.
    pub fn new() -> Self {
        let buf = vec![0u8; SLOTS * SLOT_SIZE].into_boxed_slice();
        let lock = region::lock(buf.as_ptr(), buf.len()).map_err(|e| e.to_string());
        Self {
            lock,
            buf,
            used: [false; SLOTS],
        }
    }

    /// `None` when the memory is locked, else why not.
    pub fn lock_error(&self) -> Option<&str> {
        self.lock.as_ref().err().map(String::as_str)
    }

    /// Slots holding a session.
    pub fn in_use(&self) -> usize {
        self.used.iter().filter(|u| **u).count()
    }

    /// Copies a secret key and a session token into a free slot.
    pub fn store(&mut self, secret: &[u8], token: &[u8]) -> Result<Stored, Error> {
        let total = secret.len() + token.len();
        if total > SLOT_SIZE {
            return Err(Error::TooLarge(total));
        }
        let slot = self.used.iter().position(|u| !u).ok_or(Error::Full)?;
        self.used[slot] = true;
        let base = slot * SLOT_SIZE;
        self.buf[base..base + secret.len()].copy_from_slice(secret);
        self.buf[base + secret.len()..base + total].copy_from_slice(token);
        Ok(Stored {
            slot,
            secret_len: secret.len(),
            token_len: token.len(),
        })
    }

    /// The secret access key of a stored session.
    pub fn secret(&self, s: Stored) -> &[u8] {
        let base = s.slot * SLOT_SIZE;
        &self.buf[base..base + s.secret_len]
    }

    /// The session token of a stored session.
    pub fn token(&self, s: Stored) -> &[u8] {
        let base = s.slot * SLOT_SIZE + s.secret_len;
        &self.buf[base..base + s.token_len]
    }

    /// Zeroes the slot and frees it.
    pub fn wipe(&mut self, s: Stored) {
        let base = s.slot * SLOT_SIZE;
        self.buf[base..base + SLOT_SIZE].zeroize();
        self.used[s.slot] = false;
    }
}

impl Default for Arena {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        self.buf.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_read_wipe_reuse() {
        let mut a = Arena::new();
        let s = a.store(b"secret", b"token").unwrap();
        assert_eq!(a.secret(s), b"secret");
        assert_eq!(a.token(s), b"token");
        assert_eq!(a.in_use(), 1);
        a.wipe(s);
        assert_eq!(a.in_use(), 0);
        assert!(a.buf.iter().all(|b| *b == 0));
        let t = a.store(b"x", b"y").unwrap();
        assert_eq!(t.slot, s.slot);
        assert!(matches!(
            a.store(&[1; SLOT_SIZE], b"y"),
            Err(Error::TooLarge(_))
        ));
    }

    #[test]
    fn full() {
        let mut a = Arena::new();
        for _ in 0..SLOTS {
            a.store(b"s", b"t").unwrap();
        }
        assert!(matches!(a.store(b"s", b"t"), Err(Error::Full)));
    }
}
