//! Reading and writing vault files: private permissions, atomic replacement.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::{Error, Vault};
use crate::files;

fn io(action: &'static str, path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        action,
        path: path.display().to_string(),
        source,
    }
}

/// Reads a vault, refusing one that other users can write.
pub fn read(path: &Path) -> Result<Vault, Error> {
    let meta = std::fs::metadata(path).map_err(|e| io("cannot read vault", path, e))?;
    if meta.mode() & 0o022 != 0 {
        return Err(Error::UnsafePermissions {
            path: path.display().to_string(),
            mode: meta.mode() & 0o777,
        });
    }
    files::check_private_file(path).map_err(|e| io("cannot use vault", path, e))?;
    let bytes = std::fs::read(path).map_err(|e| io("cannot read vault", path, e))?;
    Vault::from_bytes(&bytes)
}

/// Writes a vault atomically (0600 file, 0700 directory). Problems of the directory (mode,
/// owner) come with the directory's path and the `chmod` to run.
pub fn write(path: &Path, vault: &Vault) -> Result<(), Error> {
    files::atomic_write(path, &vault.to_bytes()).map_err(|e| io("cannot write vault", path, e))
}
