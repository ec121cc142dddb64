//! Process hardening and the checks on the socket directory and peers.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::sys::resource::{setrlimit, Resource};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};

/// Who is on the other end of a Unix socket, from `SO_PEERCRED` (set by the kernel at
/// `connect`; it cannot be forged by the peer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Process id of the peer at `connect`.
    pub pid: i32,
    /// Effective uid of the peer at `connect`.
    pub uid: u32,
}

/// The peer of a connected Unix socket (`SO_PEERCRED`).
pub fn peer(stream: &UnixStream) -> io::Result<Peer> {
    let c = getsockopt(stream, PeerCredentials).map_err(io::Error::from)?;
    Ok(Peer {
        pid: c.pid(),
        uid: c.uid(),
    })
}

/// The executable of a process, for the audit record (`/proc/PID/exe`).
pub fn exe_of(pid: i32) -> String {
    fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

/// Whether process `pid` runs this very program (the agent's executable: same file, or the
/// same path when the file was replaced by an upgrade). Read while the caller is dumpable.
pub fn runs_this_program(pid: i32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let theirs = format!("/proc/{pid}/exe");
    if let (Ok(a), Ok(b)) = (fs::metadata(&theirs), fs::metadata("/proc/self/exe")) {
        if (a.dev(), a.ino()) == (b.dev(), b.ino()) {
            return true;
        }
    }
    let path = |p: &str| {
        fs::read_link(p).ok().map(|l| {
            l.display()
                .to_string()
                .trim_end_matches(" (deleted)")
                .to_owned()
        })
    };
    matches!((path(&theirs), path("/proc/self/exe")), (Some(a), Some(b)) if a == b)
}

/// The parent of a process (`/proc/PID/stat`, field 4): for `credential-process`, the AWS
/// CLI or SDK that asked.
pub fn parent_of(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The effective uid of this process.
pub fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// No core dumps and no ptrace by other processes of the same user, and no core file if the
/// process crashes anyway: `PR_SET_DUMPABLE 0` and `RLIMIT_CORE 0`. Returns what failed.
pub fn no_dumps() -> Vec<String> {
    let mut failed = Vec::new();
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        failed.push(format!("PR_SET_DUMPABLE: {e}"));
    }
    if let Err(e) = setrlimit(Resource::RLIMIT_CORE, 0, 0) {
        failed.push(format!("RLIMIT_CORE: {e}"));
    }
    failed
}

/// What is wrong with the socket directory, and the command that fixes it.
#[derive(Debug, thiserror::Error)]
#[error("{problem}")]
pub struct DirError {
    /// What is wrong, for the message.
    pub problem: String,
    /// What the user can run or do to fix it.
    pub fix: String,
}

/// Creates the socket directory (0700) when missing; refuses one that is not a directory,
/// belongs to another user, or that others can enter.
pub fn private_runtime_dir(dir: &Path, create: bool) -> Result<(), DirError> {
    if create && fs::symlink_metadata(dir).is_err() {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .map_err(|e| DirError {
                problem: format!("cannot create the agent's directory {}: {e}", dir.display()),
                fix: "set XDG_RUNTIME_DIR to a directory of yours (systemd sets /run/user/UID)"
                    .into(),
            })?;
    }
    let meta = fs::symlink_metadata(dir).map_err(|e| DirError {
        problem: format!("cannot read the agent's directory {}: {e}", dir.display()),
        fix: "run `breakglass unlock PROFILE` first, which starts the agent".into(),
    })?;
    let me = euid();
    if !meta.is_dir() {
        return Err(DirError {
            problem: format!(
                "{} is not a directory (a symlink or file is in the agent's place)",
                dir.display()
            ),
            fix: format!("inspect and remove it: `ls -la {0}; rm {0}`", dir.display()),
        });
    }
    if meta.uid() != me {
        return Err(DirError {
            problem: format!(
                "the agent's directory {} belongs to uid {}, not to you (uid {me}); refusing to use it",
                dir.display(),
                meta.uid()
            ),
            fix: "someone else made it: tell the security team; meanwhile set XDG_RUNTIME_DIR to a directory of yours".into(),
        });
    }
    if meta.mode() & 0o077 != 0 {
        return Err(DirError {
            problem: format!(
                "the agent's directory {} has mode {:o}: other users can reach the socket",
                dir.display(),
                meta.mode() & 0o777
            ),
            fix: format!("run `chmod 700 {}`", dir.display()),
        });
    }
    Ok(())
}

/// The socket file's state before the agent binds it.
#[derive(Debug, PartialEq, Eq)]
pub enum SocketFile {
    /// No file at the path: bind.
    Absent,
    /// A socket of ours that nobody listens on (the agent died): safe to replace.
    Stale,
    /// Another agent answers on it.
    Live,
}

/// Classifies the socket path before binding: refuses a file owned by another user or one that is
/// not a socket; tells a stale socket (nobody listens) from a live one by connecting.
pub fn socket_file(path: &Path) -> Result<SocketFile, DirError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(SocketFile::Absent),
        Err(e) => {
            return Err(DirError {
                problem: format!("cannot inspect {}: {e}", path.display()),
                fix: "check the directory's permissions".into(),
            })
        }
    };
    if meta.uid() != euid() {
        return Err(DirError {
            problem: format!(
                "the agent socket {} belongs to uid {}, not to you; refusing to replace or use it",
                path.display(),
                meta.uid()
            ),
            fix: "tell the security team: another user put a socket in your directory".into(),
        });
    }
    if !meta.file_type().is_socket() {
        return Err(DirError {
            problem: format!("{} is not a socket", path.display()),
            fix: format!("inspect and remove it: `rm {}`", path.display()),
        });
    }
    match UnixStream::connect(path) {
        Ok(_) => Ok(SocketFile::Live),
        Err(_) => Ok(SocketFile::Stale),
    }
}
