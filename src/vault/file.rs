//! Reading and writing vault files: private permissions, atomic replacement.

use std::path::Path;

use super::{Error, Vault};
use crate::files;

fn io_err<'p>(action: &'static str, path: &'p Path) -> impl FnOnce(std::io::Error) -> Error + 'p {
    move |source| {
        if source.kind() == std::io::ErrorKind::PermissionDenied
            && source.to_string().contains("writable by other users")
        {
            use std::os::unix::fs::MetadataExt;
            let mode = std::fs::metadata(path)
                .map(|m| m.mode() & 0o777)
                .unwrap_or(0);
            return Error::UnsafePermissions {
                path: path.display().to_string(),
                mode,
            };
        }
        Error::Io {
            action,
            path: path.display().to_string(),
            source,
        }
    }
}

/// Reads a vault, refusing one that other users can write.
pub fn read(path: &Path) -> Result<Vault, Error> {
    files::check_private_file(path).map_err(io_err("cannot use vault", path))?;
    let bytes = std::fs::read(path).map_err(io_err("cannot read vault", path))?;
    Vault::from_bytes(&bytes)
}

/// Writes a vault atomically (0600 file, 0700 directory).
pub fn write(path: &Path, vault: &Vault) -> Result<(), Error> {
    files::atomic_write(path, &vault.to_bytes()).map_err(io_err("cannot write vault", path))
}
