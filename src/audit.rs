//! The hash-chained audit log: one JSON object per line, each carrying the SHA-256 of the line
//! before it (`prev`), so that edits, removals and reordering break the chain. Never a secret:
//! names, reason, times, masked or temporary key ids, outcomes.
//!
//! Every append rewrites the file atomically (temp file, fsync, rename) under an exclusive lock
//! on `audit.log.lock`, so concurrent ceremonies never lose a record, and a crash leaves the
//! old log or the new one. Audit logs are small (one line per ceremony), so this costs nothing.
//!
//! The chain shows edits, removals inside the log and reordering. Cutting lines off the *end*
//! leaves a valid shorter chain: ship the log off the machine (or note its last hash) to catch
//! that.

use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::files;

/// The `prev` of the first line.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("cannot write the audit log {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot read the audit log {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("audit log {path} line {line}: {problem}")]
    Broken {
        path: String,
        line: usize,
        problem: String,
    },
}

/// One event. Fields are written in this order, then `prev`.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// RFC 3339, UTC.
    pub time: String,
    /// "activation", "enrolment", …
    pub event: String,
    pub profile: String,
    #[serde(flatten)]
    pub fields: Map<String, Value>,
    /// "success" or "failure: <reason>".
    pub outcome: String,
}

fn sha256_hex(line: &str) -> String {
    data_encoding::HEXLOWER
        .encode(ring::digest::digest(&ring::digest::SHA256, line.as_bytes()).as_ref())
}

fn read_existing(path: &Path) -> Result<String, Error> {
    match std::fs::read_to_string(path) {
        Ok(t) => {
            files::check_private_file(path).map_err(|source| Error::Read {
                path: path.display().to_string(),
                source,
            })?;
            Ok(t)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(Error::Read {
            path: path.display().to_string(),
            source,
        }),
    }
}

fn lock(path: &Path) -> Result<std::fs::File, Error> {
    let write_err = |source| Error::Write {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        files::ensure_private_dir(dir).map_err(write_err)?;
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path.with_extension("log.lock"))
        .map_err(write_err)?;
    f.lock().map_err(write_err)?;
    Ok(f)
}

/// Appends `event`, chained to the last line.
pub fn append(path: &Path, event: &Event) -> Result<(), Error> {
    let _guard = lock(path)?;
    let mut text = read_existing(path)?;
    let prev = text
        .lines()
        .last()
        .map_or_else(|| GENESIS.to_owned(), sha256_hex);
    let mut obj = match serde_json::to_value(event) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    obj.insert("prev".into(), Value::String(prev));
    let line = Value::Object(obj).to_string();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&line);
    text.push('\n');
    files::atomic_write(path, text.as_bytes()).map_err(|source| Error::Write {
        path: path.display().to_string(),
        source,
    })
}

/// Checks the whole chain; returns the number of records.
pub fn verify(path: &Path) -> Result<usize, Error> {
    let text = read_existing(path)?;
    let mut prev = GENESIS.to_owned();
    let mut n = 0;
    for (i, line) in text.lines().enumerate() {
        let broken = |problem: &str| Error::Broken {
            path: path.display().to_string(),
            line: i + 1,
            problem: problem.to_owned(),
        };
        let v: Value = serde_json::from_str(line).map_err(|_| broken("not a JSON object"))?;
        if v.get("prev").and_then(Value::as_str) != Some(prev.as_str()) {
            return Err(broken(
                "its hash link does not match the line before (edited, removed or reordered)",
            ));
        }
        prev = sha256_hex(line);
        n += 1;
    }
    Ok(n)
}

/// The current time as RFC 3339 (seconds, UTC).
pub fn rfc3339(unix_seconds: u64) -> String {
    let secs = i64::try_from(unix_seconds).unwrap_or(i64::MAX);
    aws_smithy_types::DateTime::from_secs(secs)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u64) -> Event {
        let mut fields = Map::new();
        fields.insert("reason".into(), Value::String(format!("drill {n}")));
        Event {
            time: rfc3339(1_700_000_000 + n),
            event: "activation".into(),
            profile: "prod".into(),
            fields,
            outcome: "success".into(),
        }
    }

    #[test]
    fn chain_detects_edits_removals_and_reordering() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/audit.log");
        for n in 0..3 {
            append(&path, &event(n)).unwrap();
        }
        assert_eq!(verify(&path).unwrap(), 3);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.lines().next().unwrap().contains(GENESIS));
        assert!(
            text.starts_with("{\"time\":\"2023-11-14T22:13:20Z\",\"event\":\"activation\""),
            "{text}"
        );
        let lines: Vec<&str> = text.lines().collect();
        let cases = [
            text.replace("drill 1", "drill 9"),
            format!("{}\n{}\n", lines[0], lines[2]),
            format!("{}\n{}\n{}\n", lines[1], lines[0], lines[2]),
        ];
        for bad in cases {
            std::fs::write(&path, &bad).unwrap();
            assert!(matches!(verify(&path), Err(Error::Broken { .. })), "{bad}");
        }
    }
}
