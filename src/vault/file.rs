//! Reading and writing vault files: owner-only permissions, a size cap, atomic replacement.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::{format, Error, Vault};
use crate::files;

fn io(action: &'static str, path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        action,
        path: path.display().to_string(),
        source,
    }
}

/// The directory a vault path is in (`.` for a bare file name).
fn dir_of(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Reads a vault. Refused before a byte of it is read: a directory that other users can
/// enter, list or write (anything but owner-only, 0700), a file with any permission for
/// them (anything but 0600 or 0400), and a file larger than any vault
/// ([`format::MAX_FILE`]). The checks are made on the file opened (`fstat`), so the file
/// checked is the file read.
pub fn read(path: &Path) -> Result<Vault, Error> {
    let dir = dir_of(path);
    let dir_meta = std::fs::metadata(dir).map_err(|e| io("cannot read vault", path, e))?;
    if dir_meta.mode() & files::NOT_OWNER != 0 {
        return Err(Error::UnsafePermissions {
            path: dir.display().to_string(),
            mode: dir_meta.mode() & 0o777,
            directory: true,
        });
    }
    let file = std::fs::File::open(path).map_err(|e| io("cannot read vault", path, e))?;
    let meta = file
        .metadata()
        .map_err(|e| io("cannot read vault", path, e))?;
    if !meta.is_file() {
        return Err(io(
            "cannot use vault",
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file"),
        ));
    }
    if meta.mode() & files::NOT_OWNER != 0 {
        return Err(Error::UnsafePermissions {
            path: path.display().to_string(),
            mode: meta.mode() & 0o777,
            directory: false,
        });
    }
    let max = format::MAX_FILE as u64;
    if meta.len() > max {
        return Err(Error::TooLarge {
            path: path.display().to_string(),
            size: meta.len(),
            max,
        });
    }
    // One byte more than the cap: a file that grew since the `fstat` is still caught.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io("cannot read vault", path, e))?;
    if bytes.len() as u64 > max {
        return Err(Error::TooLarge {
            path: path.display().to_string(),
            size: bytes.len() as u64,
            max,
        });
    }
    Vault::from_bytes(&bytes)
}

/// Writes a vault atomically (0600 file, 0700 directory). Problems of the directory (mode,
/// owner) come with the directory's path and the `chmod` to run.
pub fn write(path: &Path, vault: &Vault) -> Result<(), Error> {
    files::atomic_write(path, &vault.to_bytes()).map_err(|e| io("cannot write vault", path, e))
}
