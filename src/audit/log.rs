//! The audit log on disk: appends, segments, torn lines, verification.
//!
//! **Append.** Under an exclusive lock on `audit.log.lock`, one `write(2)` of one whole line on
//! the live log opened `O_APPEND`, then `fdatasync`. The record is on disk when [`Log::append`]
//! returns.
//!
//! **The chain head is the log's own last line.** An append reads the log backwards from its
//! end, 4 KiB at a time, only as far as the start of the last line (one `pread` for a line of
//! usual length), so its cost does not grow with the log. A sidecar file holding the length and
//! hash of the last line would save nothing measurable over that one `pread` (the benchmark
//! `benches/audit.rs` shows the append flat at 100,000 records), and it would be one more file
//! that can disagree with the log after a crash; reading the tail also checks, on every
//! append, that the last line is whole.
//!
//! **Torn lines are set aside, never chained onto.** A crash in the middle of an append can
//! leave a last line without its newline, or (a file system that extended the file before its
//! data reached the disk) a last line that is not JSON. The next append moves those bytes to
//! `audit.log.torn-<unix seconds>` (0600, fsynced), truncates the log to its last whole record
//! and chains onto that. [`verify`] reports a torn last line as a break while it is there, and
//! lists the `torn-` files it finds afterwards. More damage than that (the line before a torn
//! one is no record either) is refused: [`Error::Damaged`], nothing appended.
//!
//! **Segments.** When a line would take the live log past its segment size ([`SEGMENT_BYTES`],
//! or `BREAKGLASS_AUDIT_SEGMENT_BYTES` for tests), the live log is renamed, under the lock and
//! without replacing anything (`renameat2(RENAME_NOREPLACE)`), to the next number: `audit.log.1`
//! is the oldest. Renaming one file is atomic; renumbering old ones would not be. The new live
//! log's first line carries the hash of the segment's last line as its `prev`: the chain goes
//! on, with no record of its own. A live log that is missing or empty chains onto the last line
//! of the highest segment, so a crash between the rename and the first write loses nothing.
//!
//! Permissions are checked as for every private file: the folder 0700 and the user's, every
//! file read or written here without write access for others.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{sha256_hex, Entry, Error, GENESIS};
use crate::clock::{Clock, SystemClock};
use crate::files;

/// The size past which the live log becomes a numbered segment: 16 MiB, about 45,000 records.
pub const SEGMENT_BYTES: u64 = 16 * 1024 * 1024;

/// Overrides [`SEGMENT_BYTES`] (tests of rotation through the binary). Not documented for users.
const SEGMENT_BYTES_ENV: &str = "BREAKGLASS_AUDIT_SEGMENT_BYTES";

/// How much of the log's end one read takes when looking for the last line.
const TAIL_CHUNK: u64 = 4096;

/// The audit log at one path (`audit.log`; its segments, lock and torn files beside it).
#[derive(Debug, Clone)]
pub struct Log {
    path: PathBuf,
    segment_bytes: u64,
}

/// What [`verify`] checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Records in the whole chain, segments and live log.
    pub records: usize,
    /// Closed segments (`audit.log.1` …) checked before the live log.
    pub segments: usize,
    /// Torn lines set aside by appends (`audit.log.torn-…`): writes a crash cut off, outside
    /// the chain.
    pub torn: Vec<PathBuf>,
    /// Activations that started and have no outcome record: killed, crashed, or still running.
    pub dangling: Vec<Dangling>,
    /// The chain's head: the hash of the last record ([`GENESIS`] for an empty log). Kept off
    /// the machine (a ticket, the alerts), it anchors the log: see [`Log::verify_anchored`].
    pub head: String,
    /// Where the anchor given to [`Log::verify_anchored`] is in the chain (its record number,
    /// 1-based; 0 for [`GENESIS`]); `None` when none was given or it is not there.
    pub anchor_at: Option<usize>,
    /// Records sealed with the key given to [`Log::check_seals`] whose seal holds.
    pub seals_held: usize,
    /// Records sealed with that key whose seal does not hold (their record numbers): the log
    /// was rewritten before them by someone without the key.
    pub seals_broken: Vec<usize>,
}

/// What a walk along the chain carries from record to record (and file to file).
struct Walk<'a> {
    prev: String,
    records: usize,
    started: Vec<Dangling>,
    anchor: Option<&'a str>,
    anchor_at: Option<usize>,
    seal: Option<(&'a super::Seal<'a>, String)>,
    seals_held: usize,
    seals_broken: Vec<usize>,
}

/// An `activation started` record without its `activation` outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dangling {
    /// The attempt's id.
    pub attempt: String,
    /// When it started, as logged (RFC 3339).
    pub time: String,
    /// The profile.
    pub profile: String,
    /// The process that ran it.
    pub pid: u64,
}

/// Appends `entry` to the log at `path`, chained to its last line (see [`Log::append`]).
pub fn append(path: &Path, entry: &Entry<'_>) -> Result<(), Error> {
    Log::new(path).append(entry)
}

/// Checks the whole chain at `path`: every segment in order, then the live log.
pub fn verify(path: &Path) -> Result<Verified, Error> {
    Log::new(path).verify()
}

impl Log {
    /// The log at `path`, with segments of [`SEGMENT_BYTES`] (or the size in
    /// `BREAKGLASS_AUDIT_SEGMENT_BYTES`).
    pub fn new(path: &Path) -> Self {
        let segment_bytes = std::env::var(SEGMENT_BYTES_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|n| *n > 0)
            .unwrap_or(SEGMENT_BYTES);
        Self {
            path: path.to_owned(),
            segment_bytes,
        }
    }

    /// The same log with segments of `bytes`.
    pub fn with_segment_bytes(mut self, bytes: u64) -> Self {
        self.segment_bytes = bytes.max(1);
        self
    }

    /// Appends `entry`, chained to the last record: sets a torn last line aside first, starts
    /// a new segment when this line would take the live log past the segment size, and
    /// returns once the line is on disk.
    pub fn append(&self, entry: &Entry<'_>) -> Result<(), Error> {
        self.append_with(entry, None).map(drop)
    }

    /// [`Log::append`], the record sealed with `seal` (see [`super::Seal`]).
    pub fn append_sealed(&self, entry: &Entry<'_>, seal: &super::Seal<'_>) -> Result<(), Error> {
        self.append_with(entry, Some(seal)).map(drop)
    }

    /// [`Log::append_sealed`] (unsealed when `seal` is `None`); returns the chain's head after
    /// the record: the hash that the notices of the event carry off the machine.
    pub fn append_head(
        &self,
        entry: &Entry<'_>,
        seal: Option<&super::Seal<'_>>,
    ) -> Result<String, Error> {
        self.append_with(entry, seal)
    }

    /// The chain's head now: the hash of the last record (what `append_head` returned for it).
    /// A notice sent after a ceremony's records carries it.
    pub fn head(&self) -> Result<String, Error> {
        let _guard = self.lock()?;
        let (file, _) = self.open_live()?;
        let len = file.metadata().map_err(|e| read_err(&self.path, e))?.len();
        let last = match last_record(&file, len).map_err(|e| read_err(&self.path, e))? {
            Tail::Clean { last } | Tail::Torn { last, .. } => last,
            Tail::Damaged { offset } => {
                return Err(Error::Damaged {
                    path: self.path.display().to_string(),
                    offset,
                })
            }
        };
        match last {
            Some(line) => Ok(sha256_hex(&line)),
            None => self.head_of_segments(),
        }
    }

    fn append_with(
        &self,
        entry: &Entry<'_>,
        seal: Option<&super::Seal<'_>>,
    ) -> Result<String, Error> {
        let _guard = self.lock()?;
        let (mut file, mut created) = self.open_live()?;
        let len = file.metadata().map_err(|e| read_err(&self.path, e))?.len();
        let tail = last_record(&file, len).map_err(|e| read_err(&self.path, e))?;
        let (keep, last) = match tail {
            Tail::Clean { last } => (len, last),
            Tail::Torn { from, last } => {
                self.set_aside(&file, from, len)?;
                (from, last)
            }
            Tail::Damaged { offset } => {
                return Err(Error::Damaged {
                    path: self.path.display().to_string(),
                    offset,
                })
            }
        };
        let prev = match last {
            Some(line) => sha256_hex(&line),
            None => self.head_of_segments()?,
        };
        let line = entry.line(&prev, seal);
        if keep > 0 && keep.saturating_add(line.len() as u64) > self.segment_bytes {
            file = self.rotate(file)?;
            created = true;
        }
        self.write_line(&mut file, line.as_bytes(), keep)?;
        if created {
            files::sync_dir(self.dir()).map_err(|e| write_err(&self.path, e))?;
        }
        Ok(sha256_hex(line.trim_end_matches('\n').as_bytes()))
    }

    /// The last record of `event` for `profile` (any outcome, or successes only), searching the
    /// live log, then the segments from the newest: its JSON object. Lines that are not JSON
    /// (a torn last line) are passed over; `verify` is the check of the chain.
    pub fn last(
        &self,
        event: &str,
        profile: &str,
        success_only: bool,
    ) -> Result<Option<serde_json::Map<String, Value>>, Error> {
        let mut files = vec![self.path.clone()];
        if self.dir().exists() {
            let mut numbers = self.segment_numbers()?;
            numbers.sort_unstable();
            files.extend(numbers.into_iter().rev().map(|n| self.segment(n)));
        }
        for path in files {
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(Error::Read {
                        path: path.display().to_string(),
                        source,
                    })
                }
            };
            let mut found = None;
            for line in BufReader::new(file).lines() {
                let Ok(line) = line else { break };
                let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                let matches = obj.get("event").and_then(Value::as_str) == Some(event)
                    && obj.get("profile").and_then(Value::as_str) == Some(profile)
                    && (!success_only
                        || obj.get("outcome").and_then(Value::as_str) == Some("success"));
                if matches {
                    found = Some(obj);
                }
            }
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// Checks every segment from `audit.log.1` on, then the live log: each line a JSON object
    /// with a newline, each `prev` the hash of the line before (across files), no segment
    /// number missing. The files are opened, and the live log's length taken, under the lock:
    /// an append that starts a segment meanwhile moves nothing under the check.
    pub fn verify(&self) -> Result<Verified, Error> {
        self.verify_anchored(None)
    }

    /// [`Log::verify`], also looking for `anchor`, a head exported earlier: found, the log
    /// still holds every record up to it, unchanged (a rewrite would change every hash after
    /// the first edit); not found, it was cut back (truncated, emptied) or rewritten.
    pub fn verify_anchored(&self, anchor: Option<&str>) -> Result<Verified, Error> {
        self.walk(anchor, None)
    }

    /// [`Log::verify`], also checking every record sealed with `seal`'s key (at each unlock,
    /// with the key the holders just opened the vault for).
    pub fn check_seals(&self, seal: &super::Seal<'_>) -> Result<Verified, Error> {
        self.walk(None, Some(seal))
    }

    fn walk(
        &self,
        anchor: Option<&str>,
        seal: Option<&super::Seal<'_>>,
    ) -> Result<Verified, Error> {
        let genesis_anchor = anchor.filter(|a| *a == GENESIS).map(|_| 0);
        if !self.dir().exists() {
            return Ok(Verified {
                records: 0,
                segments: 0,
                torn: Vec::new(),
                dangling: Vec::new(),
                head: GENESIS.to_owned(),
                anchor_at: genesis_anchor,
                seals_held: 0,
                seals_broken: Vec::new(),
            });
        }
        let (chain, segments, torn) = {
            let _guard = self.lock()?;
            let numbers = self.segment_numbers()?;
            let mut chain = Vec::with_capacity(numbers.len() + 1);
            for (i, n) in numbers.iter().enumerate() {
                let expected = i as u64 + 1;
                let path = self.segment(expected);
                if *n != expected {
                    return Err(Error::MissingSegment {
                        path: path.display().to_string(),
                    });
                }
                chain.push(open_to_check(path)?);
            }
            chain.push(open_to_check(self.path.clone())?);
            (chain, numbers.len(), self.torn_files()?)
        };
        let mut walk = Walk {
            prev: GENESIS.to_owned(),
            records: 0,
            started: Vec::new(),
            anchor,
            anchor_at: genesis_anchor,
            seal: seal.map(|s| (s, s.key_id())),
            seals_held: 0,
            seals_broken: Vec::new(),
        };
        let live = chain.len() - 1;
        for (i, (path, file)) in chain.into_iter().enumerate() {
            if let Some(file) = file {
                check_file(&path, file, i == live, &mut walk)?;
            }
        }
        Ok(Verified {
            records: walk.records,
            segments,
            torn,
            dangling: walk.started,
            head: walk.prev,
            anchor_at: walk.anchor_at,
            seals_held: walk.seals_held,
            seals_broken: walk.seals_broken,
        })
    }

    fn dir(&self) -> &Path {
        self.path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
    }

    fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    fn sibling(&self, suffix: &str) -> PathBuf {
        self.path
            .with_file_name(format!("{}.{suffix}", self.name()))
    }

    /// Closed segment `n` (1 is the oldest).
    fn segment(&self, n: u64) -> PathBuf {
        self.sibling(&n.to_string())
    }

    fn lock(&self) -> Result<File, Error> {
        let lock_path = self.sibling("lock");
        let err = |e| write_err(&lock_path, e);
        files::ensure_private_dir(self.dir()).map_err(err)?;
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(err)?;
        f.lock().map_err(err)?;
        Ok(f)
    }

    /// The live log, for reading and appending (created 0600 when missing: `true`).
    fn open_live(&self) -> Result<(File, bool), Error> {
        let open = |create_new| {
            OpenOptions::new()
                .read(true)
                .append(true)
                .create_new(create_new)
                .mode(0o600)
                .open(&self.path)
        };
        let (file, created) = match open(true) {
            Ok(f) => (f, true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                (open(false).map_err(|e| write_err(&self.path, e))?, false)
            }
            Err(e) => return Err(write_err(&self.path, e)),
        };
        files::check_private_open(&file, &self.path).map_err(|e| read_err(&self.path, e))?;
        Ok((file, created))
    }

    /// Writes `line` (one `write(2)`: the whole line, with its newline) and syncs it. A write
    /// that fails halfway is cut back off, as far as the disk allows.
    fn write_line(&self, file: &mut File, line: &[u8], keep: u64) -> Result<(), Error> {
        let written = file.write_all(line).and_then(|()| file.sync_data());
        if let Err(e) = written {
            let _ = file.set_len(keep);
            return Err(write_err(&self.path, e));
        }
        Ok(())
    }

    /// Moves the bytes `from..len` of the live log to `audit.log.torn-<unix seconds>` and cuts
    /// them off the log.
    fn set_aside(&self, file: &File, from: u64, len: u64) -> Result<(), Error> {
        let mut fragment = vec![0u8; usize::try_from(len - from).unwrap_or(0)];
        file.read_exact_at(&mut fragment, from)
            .map_err(|e| read_err(&self.path, e))?;
        let secs = SystemClock.now();
        let mut i = 0u32;
        let (mut out, torn_path) = loop {
            let p = match i {
                0 => self.sibling(&format!("torn-{secs}")),
                i => self.sibling(&format!("torn-{secs}-{i}")),
            };
            let opened = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&p);
            match opened {
                Ok(f) => break (f, p),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && i < 1000 => i += 1,
                Err(e) => return Err(write_err(&p, e)),
            }
        };
        out.write_all(&fragment)
            .and_then(|()| out.sync_all())
            .and_then(|()| files::sync_dir(self.dir()))
            .map_err(|e| write_err(&torn_path, e))?;
        file.set_len(from)
            .and_then(|()| file.sync_all())
            .map_err(|e| write_err(&self.path, e))
    }

    /// The `prev` of the first line of an empty live log: the hash of the highest segment's
    /// last line, or [`GENESIS`].
    fn head_of_segments(&self) -> Result<String, Error> {
        let Some(n) = self.segment_numbers()?.last().copied() else {
            return Ok(GENESIS.to_owned());
        };
        let path = self.segment(n);
        let file = File::open(&path).map_err(|e| read_err(&path, e))?;
        files::check_private_open(&file, &path).map_err(|e| read_err(&path, e))?;
        let len = file.metadata().map_err(|e| read_err(&path, e))?.len();
        match last_record(&file, len).map_err(|e| read_err(&path, e))? {
            Tail::Clean { last: Some(line) } => Ok(sha256_hex(&line)),
            Tail::Clean { last: None } => Err(Error::Damaged {
                path: path.display().to_string(),
                offset: 0,
            }),
            Tail::Torn { from: offset, .. } | Tail::Damaged { offset } => Err(Error::Damaged {
                path: path.display().to_string(),
                offset,
            }),
        }
    }

    /// Renames the live log to the next segment number (never over an existing file) and
    /// opens a new, empty live log.
    fn rotate(&self, old: File) -> Result<File, Error> {
        let n = self.segment_numbers()?.last().map_or(1, |n| n + 1);
        let segment = self.segment(n);
        drop(old);
        nix::fcntl::renameat2(
            nix::fcntl::AT_FDCWD,
            &self.path,
            nix::fcntl::AT_FDCWD,
            &segment,
            nix::fcntl::RenameFlags::RENAME_NOREPLACE,
        )
        .map_err(|e| write_err(&segment, io::Error::from(e)))?;
        files::sync_dir(self.dir()).map_err(|e| write_err(&segment, e))?;
        let (file, _) = self.open_live()?;
        Ok(file)
    }

    /// The numbers of the closed segments present, ascending.
    fn segment_numbers(&self) -> Result<Vec<u64>, Error> {
        let prefix = format!("{}.", self.name());
        let mut numbers: Vec<u64> = self
            .names_in_dir()?
            .iter()
            .filter_map(|name| name.strip_prefix(&prefix))
            .filter_map(|n| n.parse::<u64>().ok().filter(|v| v.to_string() == n))
            .filter(|n| *n > 0)
            .collect();
        numbers.sort_unstable();
        Ok(numbers)
    }

    fn torn_files(&self) -> Result<Vec<PathBuf>, Error> {
        let prefix = format!("{}.torn-", self.name());
        let mut torn: Vec<PathBuf> = self
            .names_in_dir()?
            .into_iter()
            .filter(|name| name.starts_with(&prefix))
            .map(|name| self.path.with_file_name(name))
            .collect();
        torn.sort();
        Ok(torn)
    }

    fn names_in_dir(&self) -> Result<Vec<String>, Error> {
        let entries = match fs::read_dir(self.dir()) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(read_err(self.dir(), e)),
        };
        Ok(entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect())
    }
}

fn write_err(path: &Path, source: io::Error) -> Error {
    Error::Write {
        path: path.display().to_string(),
        source,
    }
}

fn read_err(path: &Path, source: io::Error) -> Error {
    Error::Read {
        path: path.display().to_string(),
        source,
    }
}

/// A file of the chain, opened and checked private, with the length it has now; `None` when
/// it does not exist.
type ToCheck = (PathBuf, Option<io::Take<File>>);

fn open_to_check(path: PathBuf) -> Result<ToCheck, Error> {
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((path, None)),
        Err(e) => return Err(read_err(&path, e)),
    };
    files::check_private_open(&file, &path).map_err(|e| read_err(&path, e))?;
    let len = file.metadata().map_err(|e| read_err(&path, e))?.len();
    Ok((path, Some(file.take(len))))
}

/// Checks one file of the chain, continuing from `prev`; returns its record count. The `live`
/// log's last line may be torn ([`Error::Torn`]); anywhere else, a bad line is a break.
fn check_file(
    path: &Path,
    file: io::Take<File>,
    live: bool,
    walk: &mut Walk<'_>,
) -> Result<(), Error> {
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    let mut n = 0;
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| read_err(path, e))?;
        if read == 0 {
            return Ok(());
        }
        let broken = |problem: &str| Error::Broken {
            path: path.display().to_string(),
            line: n + 1,
            problem: problem.to_owned(),
        };
        let torn = |what| Error::Torn {
            path: path.display().to_string(),
            line: n + 1,
            what,
        };
        let Some(text) = line.strip_suffix(b"\n") else {
            // Only the very end can lack its newline.
            return Err(match live {
                true => torn("cut off (no newline)"),
                false => broken("cut off (no newline)"),
            });
        };
        let Ok(v) = serde_json::from_slice::<Value>(text) else {
            let last = reader.fill_buf().map_err(|e| read_err(path, e))?.is_empty();
            return Err(match live && last {
                true => torn("not a JSON object"),
                false => broken("not a JSON object"),
            });
        };
        if v.get("prev").and_then(Value::as_str) != Some(walk.prev.as_str()) {
            return Err(broken(
                "its hash link does not match the line before (edited, removed or reordered)",
            ));
        }
        if let Some((seal, key_id)) = &walk.seal {
            let field = |k: &str| v.get(k).and_then(Value::as_str);
            if field("seal_key") == Some(key_id.as_str()) {
                match field("seal") {
                    Some(s) if seal.holds(&walk.prev, s) => walk.seals_held += 1,
                    _ => walk.seals_broken.push(walk.records + 1),
                }
            }
        }
        walk.prev = sha256_hex(text);
        n += 1;
        walk.records += 1;
        if walk.anchor == Some(walk.prev.as_str()) {
            walk.anchor_at = Some(walk.records);
        }
        pair_attempts(&v, &mut walk.started);
    }
}

/// Keeps the `activation started` records whose outcome has not been seen yet.
fn pair_attempts(v: &Value, started: &mut Vec<Dangling>) {
    let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default();
    let attempt = text("attempt");
    if attempt.is_empty() {
        return;
    }
    match text("event") {
        "activation started" => started.push(Dangling {
            attempt: attempt.to_owned(),
            time: text("time").to_owned(),
            profile: text("profile").to_owned(),
            pid: v.get("pid").and_then(Value::as_u64).unwrap_or(0),
        }),
        "activation" => started.retain(|d| d.attempt != attempt),
        _ => {}
    }
}

/// The end of a log, as an append finds it.
#[derive(Debug, PartialEq, Eq)]
enum Tail {
    /// Every line whole; the last record, if any.
    Clean { last: Option<Vec<u8>> },
    /// The bytes from `from` on are a torn line (no newline, or not JSON); `last` is the
    /// record before them.
    Torn { from: u64, last: Option<Vec<u8>> },
    /// The line at `offset`, before a torn one, is no record either.
    Damaged { offset: u64 },
}

/// Reads the end of `file` (`len` bytes long) backwards to its last record. A crash leaves at
/// most one torn write (each append is synced before the next): bytes after the last newline,
/// or else one last line that is no record. Anything more is [`Tail::Damaged`].
fn last_record(file: &File, len: u64) -> io::Result<Tail> {
    let mut back = Backwards::new(file, len);
    let mut end = back.line_start(len)?;
    let mut torn_from = (end < len).then_some(end);
    let mut may_be_bad = torn_from.is_none();
    loop {
        if end == 0 {
            return Ok(tail(torn_from, None));
        }
        let start = back.line_start(end - 1)?;
        let line = back.bytes(start, end - 1);
        if is_record(line) {
            return Ok(tail(torn_from, Some(line.to_vec())));
        }
        if !may_be_bad {
            return Ok(Tail::Damaged { offset: start });
        }
        may_be_bad = false;
        torn_from = Some(start);
        end = start;
    }
}

fn tail(torn_from: Option<u64>, last: Option<Vec<u8>>) -> Tail {
    match torn_from {
        None => Tail::Clean { last },
        Some(from) => Tail::Torn { from, last },
    }
}

/// A line as an append wrote it: a JSON object with a `prev`.
fn is_record(line: &[u8]) -> bool {
    serde_json::from_slice::<Value>(line)
        .is_ok_and(|v| v.get("prev").and_then(Value::as_str).is_some())
}

/// The end of a file, read backwards in growing chunks: `buf` holds the bytes `start..len`.
struct Backwards<'f> {
    file: &'f File,
    start: u64,
    buf: Vec<u8>,
}

impl<'f> Backwards<'f> {
    fn new(file: &'f File, len: u64) -> Self {
        Self {
            file,
            start: len,
            buf: Vec::new(),
        }
    }

    /// The offset just after the last newline before `end` (0 if there is none).
    fn line_start(&mut self, end: u64) -> io::Result<u64> {
        loop {
            let upto = usize::try_from(end - self.start).unwrap_or(usize::MAX);
            if let Some(i) = self.buf[..upto].iter().rposition(|b| *b == b'\n') {
                return Ok(self.start + i as u64 + 1);
            }
            if self.start == 0 {
                return Ok(0);
            }
            self.grow()?;
        }
    }

    /// Reads the chunk before `start`: 4 KiB, then as much again as is held (doubling).
    fn grow(&mut self) -> io::Result<()> {
        let more = TAIL_CHUNK.max(self.buf.len() as u64).min(self.start);
        let from = self.start - more;
        let mut chunk = vec![0u8; usize::try_from(more).unwrap_or(0)];
        self.file.read_exact_at(&mut chunk, from)?;
        chunk.extend_from_slice(&self.buf);
        self.buf = chunk;
        self.start = from;
        Ok(())
    }

    /// The bytes `from..to`, both within what was read.
    fn bytes(&self, from: u64, to: u64) -> &[u8] {
        let at = |o: u64| usize::try_from(o - self.start).unwrap_or(0);
        &self.buf[at(from)..at(to)]
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::super::{Outcome, Record};
    use super::*;

    fn event(n: u64) -> Entry<'static> {
        Entry {
            time: 1_700_000_000 + n,
            profile: "prod",
            record: Record::SessionWiped {
                why: "locked",
                pid: i32::try_from(n).unwrap(),
            },
            outcome: Outcome::Success,
        }
    }

    #[test]
    fn a_rewrite_before_a_sealed_record_breaks_its_seal() {
        let dir = private_tempdir();
        let path = dir.path().join("audit.log");
        let log = Log::new(&path);
        let key = crate::secure::Key32::new([7u8; 32]);
        let other = crate::secure::Key32::new([8u8; 32]);
        let seal = super::super::Seal::new(&key);
        log.append(&event(0)).unwrap();
        log.append_sealed(&event(1), &seal).unwrap();
        log.append_sealed(&event(2), &super::super::Seal::new(&other))
            .unwrap();
        log.append_sealed(&event(3), &seal).unwrap();
        let v = log.check_seals(&seal).unwrap();
        assert_eq!((v.seals_held, v.seals_broken.len()), (2, 0));
        // The first record edited and every `prev` recomputed: the chain holds, the seals not.
        let mut prev = GENESIS.to_owned();
        let mut out = String::new();
        for (i, line) in fs::read_to_string(&path).unwrap().lines().enumerate() {
            let mut v: Value = serde_json::from_str(line).unwrap();
            v["prev"] = Value::String(prev.clone());
            if i == 0 {
                v["why"] = Value::String("expired".into());
            }
            let text = v.to_string();
            prev = sha256_hex(text.as_bytes());
            out += &text;
            out.push('\n');
        }
        write_private(&path, out.as_bytes());
        assert!(log.verify().is_ok(), "the rewrite keeps the chain");
        let v = log.check_seals(&seal).unwrap();
        assert_eq!(v.seals_held, 0);
        assert_eq!(v.seals_broken, vec![2, 4]);
        // Another vault's key checks only its own seals.
        let v = log.check_seals(&super::super::Seal::new(&other)).unwrap();
        assert_eq!(v.seals_broken, vec![3]);
    }

    #[test]
    fn a_started_activation_without_its_outcome_is_dangling() {
        let dir = private_tempdir();
        let log = Log::new(&dir.path().join("audit.log"));
        let started = |attempt: &str, pid| Entry {
            record: Record::ActivationStarted {
                attempt: attempt.into(),
                command: "breakglass unlock".into(),
                pid,
                parent_pid: 1,
                parent_exe: "/bin/sh".into(),
            },
            ..event(0)
        };
        let ended = |attempt: &str| Entry {
            record: Record::Activation {
                attempt: attempt.into(),
                password_holder: "alice".into(),
                custodians: Vec::new(),
                token_holder: "bob".into(),
                reason: "drill".into(),
                ticket: None,
                session: None,
            },
            outcome: Outcome::Failure {
                reason: "wrong passphrase".into(),
            },
            ..event(1)
        };
        log.append(&started("00000000000000aa", 10)).unwrap();
        log.append(&started("00000000000000bb", 11)).unwrap();
        log.append(&ended("00000000000000aa")).unwrap();
        log.append(&event(2)).unwrap();
        let v = log.verify().unwrap();
        assert_eq!(v.records, 4);
        assert_eq!(v.dangling.len(), 1, "{:?}", v.dangling);
        assert_eq!(v.dangling[0].attempt, "00000000000000bb");
        assert_eq!(v.dangling[0].pid, 11);
        assert_eq!(v.dangling[0].profile, "prod");
        log.append(&ended("00000000000000bb")).unwrap();
        assert!(log.verify().unwrap().dangling.is_empty());
    }

    /// A temporary directory as breakglass makes its own: 0700 (SECURITY.md's modes).
    fn private_tempdir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
        dir
    }

    /// `fs::write`, then 0600, as breakglass writes its files.
    fn write_private(path: &Path, bytes: impl AsRef<[u8]>) {
        fs::write(path, bytes).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
    }

    fn lines(path: &Path) -> Vec<String> {
        fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn prev_of(line: &str) -> String {
        let v: Value = serde_json::from_str(line).unwrap();
        v["prev"].as_str().unwrap().to_owned()
    }

    /// A log of `n` records in a fresh folder, with segments of `segment_bytes`.
    fn log_of(n: u64, segment_bytes: u64) -> (tempfile::TempDir, Log) {
        let dir = private_tempdir();
        let log = Log::new(&dir.path().join("state/audit.log")).with_segment_bytes(segment_bytes);
        for i in 0..n {
            log.append(&event(i)).unwrap();
        }
        (dir, log)
    }

    #[test]
    fn segments_chain_on_and_verify_counts_records_and_segments() {
        // About 200 bytes a record: three records a segment.
        let (_dir, log) = log_of(10, 700);
        let v = log.verify().unwrap();
        assert_eq!(v.records, 10);
        assert_eq!(v.segments, 3, "{v:?}");
        assert!(v.torn.is_empty());
        for n in 1..=3 {
            let seg = log.segment(n);
            assert!(fs::metadata(&seg).unwrap().len() <= 700);
            assert_eq!(fs::metadata(&seg).unwrap().mode() & 0o777, 0o600);
        }
        // The live log's first line carries the hash of the last segment's last line.
        let last = lines(&log.segment(3)).pop().unwrap();
        let first = lines(&log.path).remove(0);
        assert_eq!(prev_of(&first), sha256_hex(last.as_bytes()));
        assert_eq!(prev_of(&lines(&log.segment(1))[0]), GENESIS);
        // Concatenated, the files are one chain, as one log would be.
        let mut all = String::new();
        for n in 1..=3 {
            all += &fs::read_to_string(log.segment(n)).unwrap();
        }
        all += &fs::read_to_string(&log.path).unwrap();
        let single = private_tempdir();
        let one = single.path().join("audit.log");
        fs::write(&one, all).unwrap();
        fs::set_permissions(&one, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(verify(&one).unwrap().records, 10);
    }

    #[test]
    fn a_missing_or_edited_segment_breaks_the_chain() {
        let (_dir, log) = log_of(10, 700);
        let keep = |n| fs::read(log.segment(n)).unwrap();
        let (one, two, three) = (keep(1), keep(2), keep(3));

        fs::remove_file(log.segment(2)).unwrap();
        let e = log.verify().unwrap_err();
        assert!(
            matches!(&e, Error::MissingSegment { path } if path.ends_with("audit.log.2")),
            "{e}"
        );
        write_private(&log.segment(2), &two);

        // The first segment gone: the numbering starts at 2.
        fs::remove_file(log.segment(1)).unwrap();
        assert!(matches!(log.verify(), Err(Error::MissingSegment { .. })));
        write_private(&log.segment(1), &one);

        // The last segment gone: the live log's first line no longer links.
        fs::remove_file(log.segment(3)).unwrap();
        let e = log.verify().unwrap_err();
        assert!(
            matches!(&e, Error::Broken { path, line: 1, .. } if path.ends_with("audit.log")),
            "{e}"
        );
        write_private(&log.segment(3), &three);

        // One record of a segment edited.
        // The last record of a segment edited: the link into the next segment breaks.
        let mut edited = String::from_utf8(two.clone()).unwrap();
        let at = edited.rfind("\"pid\":").unwrap() + "\"pid\":".len();
        edited.insert(at, '1');
        write_private(&log.segment(2), edited);
        let e = log.verify().unwrap_err();
        assert!(
            matches!(&e, Error::Broken { path, .. } if path.ends_with("audit.log.3")),
            "the next segment's first link breaks: {e}"
        );
        write_private(&log.segment(2), &two);
        assert_eq!(log.verify().unwrap().records, 10);
    }

    #[test]
    fn a_live_log_lost_after_a_rotation_chains_onto_the_last_segment() {
        let (_dir, log) = log_of(2, 1 << 20);
        // As a crash right after the rename leaves it: a segment and no live log.
        fs::rename(&log.path, log.segment(1)).unwrap();
        log.append(&event(2)).unwrap();
        let v = log.verify().unwrap();
        assert_eq!((v.records, v.segments), (3, 1));
    }

    #[test]
    fn a_torn_last_line_is_set_aside_reported_and_never_chained_onto() {
        let (dir, log) = log_of(3, 1 << 20);
        let whole = fs::read(&log.path).unwrap();
        let fragment = br#"{"time":"2023-11-14T22:13:25Z","event":"sess"#;
        let mut torn = whole.clone();
        torn.extend_from_slice(fragment);
        fs::write(&log.path, &torn).unwrap();

        let e = log.verify().unwrap_err();
        assert!(
            matches!(&e, Error::Torn { line: 4, what, .. } if what.contains("cut off")),
            "{e}"
        );
        log.append(&event(3)).unwrap();
        let v = log.verify().unwrap();
        assert_eq!(v.records, 4);
        assert_eq!(v.torn.len(), 1, "{v:?}");
        assert_eq!(fs::read(&v.torn[0]).unwrap(), fragment);
        assert_eq!(fs::metadata(&v.torn[0]).unwrap().mode() & 0o777, 0o600);
        let name = v.torn[0]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(name.starts_with("audit.log.torn-"), "{name}");
        // The new record follows the third whole one.
        let now = lines(&log.path);
        assert!(fs::read(&log.path).unwrap().starts_with(&whole));
        assert_eq!(prev_of(&now[3]), sha256_hex(now[2].as_bytes()));
        drop(dir);
    }

    #[test]
    fn a_last_line_of_zeros_is_set_aside_too() {
        // A file system may extend the file before the data reaches the disk: zeros, then
        // the newline.
        let (_dir, log) = log_of(2, 1 << 20);
        let mut bytes = fs::read(&log.path).unwrap();
        bytes.extend_from_slice(&[0u8; 180]);
        bytes.push(b'\n');
        fs::write(&log.path, &bytes).unwrap();
        assert!(matches!(log.verify(), Err(Error::Torn { line: 3, .. })));
        log.append(&event(2)).unwrap();
        let v = log.verify().unwrap();
        assert_eq!((v.records, v.torn.len()), (3, 1));
    }

    #[test]
    fn more_damage_than_a_torn_line_is_refused_and_nothing_appended() {
        let (_dir, log) = log_of(2, 1 << 20);
        let mut bytes = fs::read(&log.path).unwrap();
        bytes.extend_from_slice(b"edited by hand\n{\"time\":\"2023-11-14T22:1");
        fs::write(&log.path, &bytes).unwrap();
        let e = log.append(&event(2)).unwrap_err();
        assert!(matches!(e, Error::Damaged { .. }), "{e}");
        assert_eq!(fs::read(&log.path).unwrap(), bytes);
        assert!(log.torn_files().unwrap().is_empty());
    }

    #[test]
    fn an_append_reads_the_end_of_the_log_only() {
        // A megabyte that is not even text, then one record: the append never reads that far
        // (the log used to be read whole, as text, on every append).
        let (_dir, log) = log_of(1, 1 << 30);
        let record = fs::read(&log.path).unwrap();
        let mut bytes = vec![0xffu8; 1 << 20];
        bytes.push(b'\n');
        bytes.extend_from_slice(&record);
        fs::write(&log.path, &bytes).unwrap();
        log.append(&event(1)).unwrap();
        let now = fs::read(&log.path).unwrap();
        assert!(now.starts_with(&bytes));
        let added = String::from_utf8(now[bytes.len()..].to_vec()).unwrap();
        let first = String::from_utf8(record).unwrap();
        assert_eq!(prev_of(&added), sha256_hex(first.trim_end().as_bytes()));
    }

    #[test]
    fn a_last_line_longer_than_one_read_is_found() {
        let dir = private_tempdir();
        let log = Log::new(&dir.path().join("audit.log"));
        let mut long = event(0);
        long.record = Record::Activation {
            attempt: String::new(),
            password_holder: "alice".into(),
            custodians: Vec::new(),
            token_holder: "bob".into(),
            reason: "r".repeat(3 * TAIL_CHUNK as usize),
            ticket: None,
            session: None,
        };
        log.append(&long).unwrap();
        log.append(&long).unwrap();
        log.append(&event(1)).unwrap();
        assert_eq!(log.verify().unwrap().records, 3);
    }

    #[test]
    fn logs_and_folders_other_users_can_write_are_refused() {
        let (dir, log) = log_of(1, 1 << 20);
        fs::set_permissions(&log.path, fs::Permissions::from_mode(0o666)).unwrap();
        let e = log.append(&event(1)).unwrap_err();
        assert!(
            matches!(e, Error::Read { .. }) && e.to_string().contains("chmod 600"),
            "{e}"
        );
        assert!(matches!(log.verify(), Err(Error::Read { .. })));
        fs::set_permissions(&log.path, fs::Permissions::from_mode(0o600)).unwrap();
        let state = dir.path().join("state");
        fs::set_permissions(&state, fs::Permissions::from_mode(0o777)).unwrap();
        let e = log.append(&event(1)).unwrap_err();
        assert!(e.to_string().contains("chmod 700"), "{e}");
        // A directory where the log should be: no write, whoever runs it (root included).
        fs::set_permissions(&state, fs::Permissions::from_mode(0o700)).unwrap();
        fs::remove_file(&log.path).unwrap();
        fs::create_dir(&log.path).unwrap();
        assert!(matches!(log.append(&event(1)), Err(Error::Write { .. })));
    }
}
