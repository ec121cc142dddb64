//! The ceremony transcript: a Markdown record for the witnesses of a key ceremony (`rotate
//! --transcript FILE`), with the people, the reason, the machine, every step with its time,
//! the token's slot, masked key ids and the audit chain's head before and after, and a
//! signature line for each person present. It never holds a secret: everything in it is
//! also in the audit log or public (key ids are masked all the same).

use std::fmt::Write as _;
use std::path::Path;

use crate::audit::rfc3339;

/// The audit chain's head at a moment: its hash and record count, or why it could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    /// The chain verified up to `hash`, after `records` records.
    At {
        /// The last record's hash.
        hash: String,
        /// How many records the chain holds.
        records: usize,
    },
    /// It could not be verified (the message says why).
    Unreadable(String),
}

impl Head {
    /// The head of the log at `path`, verified.
    pub fn of(path: &Path) -> Self {
        match crate::audit::verify(path) {
            Ok(v) => Self::At {
                hash: v.head,
                records: v.records,
            },
            Err(e) => Self::Unreadable(e.to_string()),
        }
    }

    fn line(&self) -> String {
        match self {
            Self::At { hash, records } => format!(
                "`{hash}` ({records} record{})",
                if *records == 1 { "" } else { "s" }
            ),
            Self::Unreadable(why) => format!("could not be verified: {why}"),
        }
    }
}

/// Everything a transcript says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transcript {
    /// The ceremony (`"Key rotation"`).
    pub ceremony: String,
    /// The profile.
    pub profile: String,
    /// When it began, Unix seconds.
    pub started: u64,
    /// When it ended, Unix seconds.
    pub ended: u64,
    /// Everyone present and their part: `("Alice", "password holder")`.
    pub people: Vec<(String, String)>,
    /// Why the ceremony was held.
    pub reason: String,
    /// The machine it ran on.
    pub host: String,
    /// The breakglass version.
    pub version: String,
    /// Facts of the ceremony: `("vault", "/path")`, `("token slot", "0 primary (oath) …")`.
    pub facts: Vec<(String, String)>,
    /// Every step with its time, in order.
    pub steps: Vec<(u64, String)>,
    /// How it ended: `"completed"`, or the error.
    pub result: String,
    /// The audit chain's head before the ceremony.
    pub head_before: Head,
    /// And after.
    pub head_after: Head,
}

/// The machine's host name (`/proc/sys/kernel/hostname`; `unknown` when unreadable).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Markdown table cells: no line breaks, no `|`, no control characters.
fn cell(s: &str) -> String {
    crate::ceremony::names::printable(s)
        .replace('|', "\\|")
        .replace(['\n', '\r'], " ")
}

impl Transcript {
    /// The transcript as Markdown.
    pub fn to_markdown(&self) -> String {
        let mut m = String::new();
        let _ = writeln!(
            m,
            "# {} — profile {}\n",
            cell(&self.ceremony),
            cell(&self.profile)
        );
        let _ = writeln!(m, "| | |\n|---|---|");
        let _ = writeln!(m, "| began | {} |", rfc3339(self.started));
        let _ = writeln!(m, "| ended | {} |", rfc3339(self.ended));
        let _ = writeln!(m, "| result | {} |", cell(&self.result));
        let _ = writeln!(m, "| reason | {} |", cell(&self.reason));
        for (who, part) in &self.people {
            let _ = writeln!(m, "| {} | {} |", cell(part), cell(who));
        }
        let _ = writeln!(m, "| host | {} |", cell(&self.host));
        let _ = writeln!(m, "| breakglass | {} |", cell(&self.version));
        for (k, v) in &self.facts {
            let _ = writeln!(m, "| {} | {} |", cell(k), cell(v));
        }
        let _ = writeln!(
            m,
            "| audit head before | {} |",
            cell(&self.head_before.line())
        );
        let _ = writeln!(
            m,
            "| audit head after | {} |",
            cell(&self.head_after.line())
        );
        let _ = writeln!(m, "\n## Steps\n\n| time | step |\n|---|---|");
        for (t, step) in &self.steps {
            let _ = writeln!(m, "| {} | {} |", rfc3339(*t), cell(step));
        }
        let _ = writeln!(
            m,
            "\nThe audit log holds the same facts (`breakglass audit verify --expect-head` checks it against the head above).\n\n## Signatures\n"
        );
        for (who, part) in &self.people {
            let _ = writeln!(
                m,
                "{} ({}): ______________________________  date: __________\n",
                cell(who),
                cell(part)
            );
        }
        if self.people.is_empty() {
            // A ceremony that asks no names (enrolment): each part signs with their name.
            for part in ["Password holder", "Token holder"] {
                let _ = writeln!(
                    m,
                    "{part}, name: ____________________  signature: ____________________  date: __________\n"
                );
            }
        }
        let _ = writeln!(
            m,
            "Witness: ______________________________  date: __________"
        );
        m
    }

    /// Writes the transcript to `path`: a new file, 0600, written whole and fsynced, then
    /// renamed into place (an existing file is replaced only once the new one is complete).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        crate::files::write_document(path, self.to_markdown().as_bytes())
    }
}

/// A prompt that passes everything on to `inner` and keeps, with their times, what a
/// transcript needs: every progress line, the names typed and the reason typed. Secrets
/// (passphrase, PINs, access code) pass through unseen.
pub struct Recorder<'p> {
    inner: &'p mut dyn super::Prompt,
    clock: &'p dyn crate::clock::Clock,
    /// Progress lines, with their times.
    pub steps: Vec<(u64, String)>,
    /// Names typed, with the part of who typed them.
    pub people: Vec<(String, String)>,
    /// The reason, when it was typed at the prompt.
    pub reason: Option<String>,
}

impl<'p> Recorder<'p> {
    /// Records what passes through to `inner`, timed by `clock`.
    pub fn new(inner: &'p mut dyn super::Prompt, clock: &'p dyn crate::clock::Clock) -> Self {
        Self {
            inner,
            clock,
            steps: Vec::new(),
            people: Vec::new(),
            reason: None,
        }
    }
}

impl super::Prompt for Recorder<'_> {
    fn name(&mut self, role: super::Role) -> Result<String, super::Error> {
        let name = self.inner.name(role)?;
        self.people
            .push((name.trim().to_owned(), role.label().to_owned()));
        Ok(name)
    }
    fn passphrase(&mut self, confirm: bool) -> Result<secrecy::SecretString, super::Error> {
        self.inner.passphrase(confirm)
    }
    fn access_code(&mut self) -> Result<secrecy::SecretString, super::Error> {
        self.inner.access_code()
    }
    fn touch_start(&mut self, what: &str) {
        self.steps.push((
            self.clock.now(),
            format!("Token holder touched the token ({what})."),
        ));
        self.inner.touch_start(what);
    }
    fn touch_end(&mut self) {
        self.inner.touch_end();
    }
    fn wait(&mut self, secs: u64, why: &str) {
        self.steps
            .push((self.clock.now(), format!("Waited {secs} s: {why}.")));
        self.inner.wait(secs, why);
    }
    fn note(&mut self, text: &str) {
        self.steps.push((self.clock.now(), text.to_owned()));
        self.inner.note(text);
    }
    fn line(&mut self, question: &str) -> Result<String, super::Error> {
        let answer = self.inner.line(question)?;
        if question.starts_with("Why") {
            self.reason = Some(answer.trim().to_owned());
        }
        Ok(answer)
    }
    fn pin(&mut self, what: &str, tries_left: u8) -> Result<secrecy::SecretString, super::Error> {
        self.inner.pin(what, tries_left)
    }
    fn confirm(&mut self, question: &str) -> Result<bool, super::Error> {
        self.inner.confirm(question)
    }
    fn custodian_name(&mut self, index: usize, needed: usize) -> Result<String, super::Error> {
        let name = self.inner.custodian_name(index, needed)?;
        self.people
            .push((name.trim().to_owned(), "custodian".to_owned()));
        Ok(name)
    }
    fn custodian_passphrase(
        &mut self,
        name: &str,
        confirm: bool,
    ) -> Result<secrecy::SecretString, super::Error> {
        let passphrase = self.inner.custodian_passphrase(name, confirm)?;
        // A custodian choosing a passphrase (enrolment, a new share) was not asked a name.
        if confirm && !self.people.iter().any(|(n, _)| n == name) {
            self.people.push((name.to_owned(), "custodian".to_owned()));
        }
        Ok(passphrase)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_names_everyone_every_step_and_escapes_cells() {
        let t = Transcript {
            ceremony: "Key rotation".into(),
            profile: "prod".into(),
            started: 1_700_000_000,
            ended: 1_700_000_060,
            people: vec![
                ("Alice".into(), "password holder".into()),
                ("Bob|\u{1b}[31m".into(), "token holder".into()),
            ],
            reason: "90-day\nrotation".into(),
            host: "ops-1".into(),
            version: "0.1.0".into(),
            facts: vec![("old key".into(), "****************ABCD".into())],
            steps: vec![(1_700_000_030, "Created the new access key".into())],
            result: "completed".into(),
            head_before: Head::At {
                hash: "ab".repeat(32),
                records: 3,
            },
            head_after: Head::Unreadable("torn".into()),
        };
        let m = t.to_markdown();
        assert!(m.starts_with("# Key rotation — profile prod\n"), "{m}");
        assert!(m.contains("| began | 2023-11-14T22:13:20Z |"), "{m}");
        assert!(
            m.contains("| 2023-11-14T22:13:50Z | Created the new access key |"),
            "{m}"
        );
        assert!(m.contains("| reason | 90-day\\u{a}rotation |"), "{m}");
        assert!(
            m.contains(&format!("`{}` (3 records)", "ab".repeat(32))),
            "{m}"
        );
        assert!(m.contains("could not be verified: torn"), "{m}");
        assert!(m.contains("Alice (password holder): ____"), "{m}");
        // A name cannot break the table or send an escape sequence to a viewer.
        assert!(!m.contains('\u{1b}'), "{m}");
        assert!(m.contains("Bob\\|"), "{m}");
    }
}
