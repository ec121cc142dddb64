//! Private, atomic file writes: temp file (0600) in the same directory, fsync, rename, fsync of
//! the directory. A crash leaves either the old file or the new one, never half of either.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Permission bits for anyone but the owner (group and others): none may be set on a private
/// file (0600) or directory (0700), as SECURITY.md promises.
pub const NOT_OWNER: u32 = 0o077;

/// Creates `dir` (and parents) as 0700 when missing; refuses an existing directory that grants
/// group or other users anything (not 0700) or that belongs to someone else.
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let meta = fs::metadata(dir)?;
    if let Some(me) = effective_uid() {
        if meta.uid() != me && meta.uid() != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} belongs to another user (uid {}); refusing to use it",
                    dir.display(),
                    meta.uid()
                ),
            ));
        }
    }
    if meta.mode() & NOT_OWNER != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is accessible to other users (mode {:03o}); run `chmod 700 {}`",
                dir.display(),
                meta.mode() & 0o777,
                dir.display()
            ),
        ));
    }
    Ok(())
}

/// This process's effective uid: the owner of `/proc/self` (no `unsafe` libc call needed).
fn effective_uid() -> Option<u32> {
    fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// Errors unless `path` is a regular file with no permission for group or others (0600).
pub fn check_private_file(path: &Path) -> io::Result<()> {
    check_private_meta(&fs::metadata(path)?, path)
}

/// [`check_private_file`] on a file already open (`fstat`: the file checked is the file used,
/// whatever is renamed over `path` meanwhile); `path` names it in the error.
pub fn check_private_open(file: &File, path: &Path) -> io::Result<()> {
    check_private_meta(&file.metadata()?, path)
}

fn check_private_meta(meta: &fs::Metadata, path: &Path) -> io::Result<()> {
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    if meta.mode() & NOT_OWNER != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is accessible to other users (mode {:03o}); run `chmod 600 {}`",
                path.display(),
                meta.mode() & 0o777,
                path.display()
            ),
        ));
    }
    Ok(())
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let nonce: u32 = std::process::id()
        ^ (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0));
    path.with_file_name(format!(".{name}.tmp-{nonce:08x}"))
}

/// Makes the entries of `dir` durable (a file created, renamed or removed in it).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The folder `path` is in (`.` for a bare name).
fn folder_of(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Writes `bytes` to a new temporary file beside `path` (mode 0600), fsyncs it, renames it over
/// `path` and fsyncs the folder; the temporary file is removed on any failure.
fn replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = temp_path(path);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        sync_dir(folder_of(path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes a document for people (a transcript, a report) to `path` atomically, mode 0600 (see
/// [`replace`]). Unlike [`atomic_write`] the folder may be any the user can write (a shared
/// ceremony folder): the document holds no secret.
pub fn write_document(path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace(path, bytes)
}

/// Replaces `path` with `bytes` atomically, mode 0600, in a private directory.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    ensure_private_dir(folder_of(path))?;
    replace(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_private_files_in_private_dirs_and_replaces_atomically() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("a/b/vault");
        atomic_write(&path, b"one").unwrap();
        atomic_write(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(
            fs::metadata(path.parent().unwrap()).unwrap().mode() & 0o777,
            0o700
        );
        let leftovers: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp file left behind");
        check_private_file(&path).unwrap();
    }

    #[test]
    fn refuses_shared_directories_and_files() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("shared");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let err = atomic_write(&dir.join("v"), b"x").unwrap_err();
        assert!(err.to_string().contains("chmod 700"), "{err}");
        let file = root.path().join("f");
        fs::write(&file, b"x").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o666)).unwrap();
        assert!(check_private_file(&file)
            .unwrap_err()
            .to_string()
            .contains("chmod 600"));
    }

    #[test]
    fn group_or_other_readable_files_and_directories_are_refused_too() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("f");
        fs::write(&file, b"x").unwrap();
        for mode in [0o640, 0o604, 0o610] {
            fs::set_permissions(&file, fs::Permissions::from_mode(mode)).unwrap();
            let e = check_private_file(&file).unwrap_err().to_string();
            assert!(
                e.contains(&format!("mode {mode:o}")) && e.contains("chmod 600"),
                "{e}"
            );
        }
        fs::set_permissions(&file, fs::Permissions::from_mode(0o400)).unwrap();
        check_private_file(&file).unwrap();
        let dir = root.path().join("d");
        fs::create_dir(&dir).unwrap();
        for mode in [0o755, 0o750, 0o701] {
            fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).unwrap();
            let e = ensure_private_dir(&dir).unwrap_err().to_string();
            assert!(e.contains("chmod 700"), "{e}");
        }
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        ensure_private_dir(&dir).unwrap();
    }
}
