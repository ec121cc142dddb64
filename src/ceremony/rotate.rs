//! Key rotation (the 90/100/110-day ceremony): a two-person activation, then a new access key
//! made, proven and sealed into the vault, and the old key retired on the policy's days.
//!
//! Every step that changes something outside this process (an IAM call, a file replaced) is
//! preceded by a [`Journal`] entry, written atomically in the state directory; the journal
//! holds key ids, steps and times, never a secret. A run killed anywhere leaves a vault that
//! opens and holds a key that works, at most one orphan key in IAM (a new key never sealed,
//! whose secret died with the process), and a journal from which the next run tells what
//! happened and finishes or undoes it ([`recover`]).
//!
//! The order: ListAccessKeys (refuse a key the vault does not know) → journal `creating` →
//! CreateAccessKey (never retried: a retry could make a second key) → journal `created` →
//! GetCallerIdentity with the new key until IAM has propagated it → the old vault copied to
//! `VAULT.previous` → the vault replaced with the new key sealed under the same slots → audit
//! record → journal `sealed` → the old key staged (deactivated and deleted on the policy's
//! days, or at once with `--now`, each proven by ListAccessKeys) → the copy removed.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::unlock::{self, Plug};
use super::{Error, Prompt};
use crate::audit;
use crate::aws::{self, iam, sts, Signer};
use crate::config::RotationPolicy;
use crate::notify::{Event, Notice};
use crate::secure::mask_key_id;
use crate::vault;

/// The journal's format version.
const JOURNAL_VERSION: u32 = 1;

/// Where a rotation of one profile stands (`STATE/rotations/PROFILE.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// Format version ([`JOURNAL_VERSION`]).
    pub version: u32,
    /// The profile.
    pub profile: String,
    /// The vault file the rotation replaces.
    pub vault: PathBuf,
    /// The key the vault held when the rotation began.
    pub old_key: String,
    /// When the rotation began, Unix seconds.
    pub started: u64,
    /// The step reached.
    pub step: Step,
    /// Every step with its time, for the record and the transcript.
    pub history: Vec<(String, u64)>,
}

/// The steps of a rotation, in order. Each is written before the action it announces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum Step {
    /// CreateAccessKey is being sent: IAM may hold a new key whose secret no one has.
    Creating,
    /// IAM made `new_key`; it is not sealed yet (its secret is only in the rotating process).
    Created {
        /// The new key's id.
        new_key: String,
    },
    /// The vault holds `new_key` (generation `generation`); the old key is still active.
    Sealed {
        /// The new key's id.
        new_key: String,
        /// When it was sealed, Unix seconds.
        rotated_at: u64,
        /// The vault's generation.
        generation: u32,
    },
    /// The old key waits for its days (or is being retired).
    Staged {
        /// The new key's id (the vault's).
        new_key: String,
        /// When it was sealed.
        rotated_at: u64,
        /// The vault's generation.
        generation: u32,
        /// When the old key is to be deactivated.
        deactivate_at: u64,
        /// When the old key is to be deleted.
        delete_at: u64,
        /// Whether it was deactivated (proven).
        deactivated: bool,
        /// Whether it is retired at once (`--now`): a run of `rotate` after a kill goes on
        /// with it instead of waiting for its days.
        #[serde(default)]
        at_once: bool,
    },
    /// The old key is gone; `new_key` is the vault's.
    Done {
        /// The vault's key.
        new_key: String,
        /// When it was sealed.
        rotated_at: u64,
        /// The vault's generation after this rotation.
        generation: u32,
    },
}

impl Step {
    /// The step's name, as the journal and the transcript write it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Creating => "creating",
            Self::Created { .. } => "created",
            Self::Sealed { .. } => "sealed",
            Self::Staged { .. } => "staged",
            Self::Done { .. } => "done",
        }
    }
}

impl Journal {
    /// The journal of `profile` (`None`: no rotation was ever made here).
    pub fn load(path: &Path) -> Result<Option<Self>, Error> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(Error::Journal {
                    path: path.display().to_string(),
                    problem: source.to_string(),
                })
            }
        };
        let journal: Self = serde_json::from_str(&text).map_err(|e| Error::Journal {
            path: path.display().to_string(),
            problem: format!("not a rotation journal ({e})"),
        })?;
        if journal.version != JOURNAL_VERSION {
            return Err(Error::Journal {
                path: path.display().to_string(),
                problem: format!(
                    "journal version {} is not {JOURNAL_VERSION}",
                    journal.version
                ),
            });
        }
        Ok(Some(journal))
    }

    /// Moves to `step` at `now` and writes the journal (atomically, fsynced) before the
    /// caller acts on it.
    fn enter(&mut self, path: &Path, step: Step, now: u64) -> Result<(), Error> {
        self.history.push((step.name().to_owned(), now));
        self.step = step;
        self.save(path)
    }

    fn save(&self, path: &Path) -> Result<(), Error> {
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::Journal {
            path: path.display().to_string(),
            problem: e.to_string(),
        })?;
        crate::files::atomic_write(path, text.as_bytes()).map_err(|source| Error::Write {
            path: path.display().to_string(),
            source,
        })
    }

    /// The old key still waiting for retirement, when the journal says so.
    pub fn pending_retirement(&self) -> Option<(&str, u64, u64, bool)> {
        match &self.step {
            Step::Sealed { .. } => None,
            Step::Staged {
                deactivate_at,
                delete_at,
                deactivated,
                ..
            } => Some((&self.old_key, *deactivate_at, *delete_at, *deactivated)),
            _ => None,
        }
    }

    /// Whether a run was interrupted before the old key was staged (a crash, a kill, a
    /// failure that could not be undone).
    pub fn interrupted(&self) -> bool {
        matches!(
            self.step,
            Step::Creating | Step::Created { .. } | Step::Sealed { .. }
        )
    }
}

/// What `rotate` is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A new key; the old one staged by the policy, or retired at once (`now`).
    Rotate {
        /// Deactivate and delete the old key right after the new one is sealed.
        now: bool,
    },
    /// The staged steps of the last rotation whose day has come (all of them with `now`).
    Finish {
        /// Retire the old key now, whatever its days.
        now: bool,
    },
}

/// What `rotate` needs besides people and a token.
pub struct Request<'a> {
    /// The activation (profile, paths, reason, endpoint, clock, randomness).
    pub activation: unlock::Request<'a>,
    /// Rotate or finish.
    pub mode: Mode,
    /// How long to wait for IAM to propagate the new key.
    pub propagation_timeout: Duration,
}

impl Request<'_> {
    fn journal_path(&self) -> PathBuf {
        self.activation
            .paths
            .rotation_journal(&self.activation.profile.name)
    }

    fn now(&self) -> u64 {
        self.activation.now.now()
    }

    fn policy(&self) -> RotationPolicy {
        self.activation.profile.rotation
    }

    fn vault_path(&self) -> &Path {
        &self.activation.profile.vault
    }
}

/// What a run did, for the terminal and the transcript.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Steps done, in order, each with its time: `("new key AKIA…ABCD sealed", t)`.
    pub steps: Vec<(String, u64)>,
    /// The vault's key after the run.
    pub vault_key: String,
    /// The vault's generation after the run.
    pub generation: u32,
    /// The old key's retirement still to come: deactivation and deletion times.
    pub staged: Option<(String, u64, u64)>,
    /// The vault file, and whether it was replaced by this run.
    pub vault: String,
    /// Whether this run replaced the vault file (other copies now hold the old key).
    pub replaced: bool,
    /// Both holders.
    pub holders: (String, String),
    /// The MFA device of the token that opened the vault (its slot's).
    pub mfa_serial: String,
    /// The key the vault held when the ceremony opened it.
    pub opened_key: String,
}

/// The path of the copy of the vault kept while it is replaced.
pub fn previous_path(vault: &Path) -> PathBuf {
    let mut name = vault.file_name().unwrap_or_default().to_os_string();
    name.push(".previous");
    vault.with_file_name(name)
}

/// A place where a test may kill the ceremony, to prove that every step is recoverable
/// (`BREAKGLASS_CRASH_AT=NAME`, builds with the sandbox only). The process is killed with
/// SIGKILL: no destructor, no flush, like a power cut for everything but the disk.
pub const CRASH_POINTS: &[&str] = &[
    "before-create",
    "after-create",
    "after-created",
    "after-previous",
    "after-vault",
    "after-sealed",
    "after-deactivate",
    "after-delete",
];

pub(crate) fn crash_point(name: &str) {
    #[cfg(feature = "sandbox")]
    if std::env::var("BREAKGLASS_CRASH_AT").is_ok_and(|v| v == name) {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
    let _ = name;
}

/// Runs `rotate` (or `rotate --finish`). The caller has checked, before anyone was asked,
/// that there is something to do ([`plan`]).
pub async fn rotate<P: Plug + ?Sized>(
    req: &Request<'_>,
    token: &mut P,
    prompt: &mut dyn Prompt,
) -> Result<Report, Error> {
    let path = req.journal_path();
    // One rotation of a profile at a time: a second one (another terminal) would race the
    // first on the journal and IAM. Held until this run ends; the kernel drops it on a kill.
    let _lock = lock(&path)?;
    let journal = Journal::load(&path)?;
    let (activation, opened) = unlock::unlock_keeping_vault(&req.activation, token, prompt).await?;
    let told = (
        opened.payload.user_arn.clone(),
        activation.reason.clone(),
        activation.ticket.clone(),
    );
    let mut run = Run {
        req,
        prompt,
        path,
        session: activation.session,
        user: iam::user_name(&opened.payload.user_arn)
            .ok_or_else(|| {
                Error::Vault(vault::Error::InvalidInput {
                    what: "IAM user ARN",
                    reason: format!("{} names no user", opened.payload.user_arn),
                })
            })?
            .to_owned(),
        report: Report {
            vault: req.vault_path().display().to_string(),
            holders: (activation.password_holder, activation.token_holder),
            mfa_serial: activation.mfa_serial,
            opened_key: opened.payload.access_key_id.clone(),
            ..Report::default()
        },
    };
    let vault_key = opened.payload.access_key_id.clone();
    let generation = opened.vault().key_facts().map_or(0, |k| k.generation);
    run.report.vault_key = vault_key.clone();
    run.report.generation = generation;

    // Whatever an earlier run left unfinished comes first.
    let (journal, recovered) = match journal {
        Some(j) if j.interrupted() => (run.recover(j, &opened).await?, true),
        other => (other, false),
    };
    match req.mode {
        Mode::Finish { now } => {
            drop(opened);
            match journal {
                Some(j) if j.pending_retirement().is_some() => run.retire(j, now).await?,
                _ if recovered => {}
                _ => run.note("No rotation of this profile is waiting to be finished."),
            }
        }
        Mode::Rotate { now } => match journal {
            // The interrupted rotation went through: it is this run's rotation.
            Some(j) if recovered && j.pending_retirement().is_some() => {
                drop(opened);
                if now {
                    run.retire(j, true).await?;
                }
            }
            // A retirement at once that was killed goes on.
            Some(j) if matches!(j.step, Step::Staged { at_once: true, .. }) => {
                drop(opened);
                run.note("The last rotation was retiring its old key at once when it stopped; going on with it.");
                run.retire(j, true).await?;
            }
            Some(j) if j.pending_retirement().is_some() => {
                let (old, deactivate_at, delete_at, _) = j.pending_retirement().unwrap_or_default();
                return Err(Error::RotationUnfinished {
                    old_key: mask_key_id(old),
                    deactivate_at,
                    delete_at,
                });
            }
            last => {
                let j = run.fresh(&opened, last.as_ref()).await?;
                drop(opened);
                if now {
                    run.retire(j, true).await?;
                }
            }
        },
    }
    let (user_arn, reason, ticket) = told;
    let r = &run.report;
    let a = &req.activation;
    let notice = |head| Notice {
        user_arn,
        reason,
        ticket,
        detail: Some(format!(
            "The vault now holds key {} (generation {}){}. Steps: {}",
            mask_key_id(&r.vault_key),
            r.generation,
            match &r.staged {
                Some((old, deactivate, delete)) => format!(
                    "; the old key {} is deactivated at {} and deleted at {}",
                    mask_key_id(old),
                    audit::rfc3339(*deactivate),
                    audit::rfc3339(*delete)
                ),
                None => String::new(),
            },
            if r.steps.is_empty() {
                "none".to_owned()
            } else {
                r.steps
                    .iter()
                    .map(|(t, _)| t.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            }
        )),
        ..Notice::new(Event::Rotation, req.now(), a.profile, head).by((&r.holders.0, &r.holders.1))
    };
    let prompt = run.prompt;
    super::tell_outcome(
        a.paths,
        notice,
        a.profile,
        Some(&run.session),
        &a.endpoint,
        &mut |w| prompt.note(w),
    )
    .await;
    Ok(run.report)
}

/// Takes `JOURNAL.lock` (exclusive, not waiting).
pub(crate) fn lock(journal: &Path) -> Result<std::fs::File, Error> {
    let path = journal.with_extension("lock");
    let write = |source| Error::Write {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        crate::files::ensure_private_dir(dir).map_err(write)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(write)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::RotationRunning {
            lock: path.display().to_string(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(write(e)),
    }
}

/// One run of the ceremony after the activation: the MFA session, the user, what was done.
struct Run<'r, 'a> {
    req: &'r Request<'a>,
    prompt: &'r mut dyn Prompt,
    path: PathBuf,
    session: sts::Session,
    user: String,
    report: Report,
}

impl Run<'_, '_> {
    fn note(&mut self, text: &str) {
        self.prompt.note(text);
    }

    fn step(&mut self, text: String) {
        let now = self.req.now();
        self.prompt.note(&text);
        self.report.steps.push((text, now));
    }

    fn signer(&self) -> Signer<'_> {
        Signer {
            access_key_id: &self.session.access_key_id,
            secret_access_key: &self.session.secret_access_key,
            session_token: Some(&self.session.session_token),
        }
    }

    async fn keys(&self) -> Result<Vec<iam::KeyMeta>, Error> {
        let endpoint = &self.req.activation.endpoint;
        Ok(iam::list_access_keys(endpoint, &self.signer(), &self.user).await?)
    }

    fn record(&self, step: &'static str, key: &str, generation: u32) -> Result<(), Error> {
        let entry = audit::Entry {
            time: self.req.now(),
            profile: &self.req.activation.profile.name,
            record: audit::Record::KeyRotation {
                step,
                key: mask_key_id(key),
                vault_key: mask_key_id(&self.report.vault_key),
                generation,
                vault: self.report.vault.clone(),
            },
            outcome: audit::Outcome::Success,
        };
        Ok(audit::append(
            &self.req.activation.paths.audit_log(),
            &entry,
        )?)
    }

    /// Deletes `key` (an orphan of an interrupted rotation, or a new key that failed) and
    /// proves it gone.
    async fn delete_orphan(&mut self, key: &str) -> Result<(), Error> {
        let endpoint = &self.req.activation.endpoint;
        match iam::delete_access_key(endpoint, &self.signer(), &self.user, key).await {
            Ok(()) => {}
            Err(aws::Error::Denied { code, .. }) if code == "NoSuchEntity" => {}
            Err(e) => return Err(e.into()),
        }
        if self.keys().await?.iter().any(|k| k.access_key_id == key) {
            return Err(Error::NotProven {
                action: "DeleteAccessKey",
                key: mask_key_id(key),
            });
        }
        self.record("orphan key deleted", key, self.report.generation)?;
        self.step(format!(
            "Deleted the orphan key {} (made by an interrupted rotation, never sealed).",
            mask_key_id(key)
        ));
        Ok(())
    }

    /// Finishes or undoes what an interrupted run left, by its journal and what IAM and the
    /// vault now hold; returns the journal as it then is.
    async fn recover(
        &mut self,
        mut j: Journal,
        opened: &vault::Opened,
    ) -> Result<Option<Journal>, Error> {
        let at = audit::rfc3339(j.history.last().map_or(j.started, |h| h.1));
        self.note(&format!(
            "An earlier rotation of this profile stopped at step \"{}\" ({at}); finishing or undoing it first.",
            j.step.name()
        ));
        let vault_key = opened.payload.access_key_id.clone();
        let generation = self.report.generation;
        match j.step.clone() {
            Step::Creating => {
                if vault_key != j.old_key {
                    return Err(Error::JournalMismatch {
                        journal_key: mask_key_id(&j.old_key),
                        vault_key: mask_key_id(&vault_key),
                    });
                }
                // CreateAccessKey may have made a key no one has the secret of: any key
                // made since the run began is it. An older unknown key is someone else's.
                let keys = self.keys().await?;
                for k in keys.iter().filter(|k| k.access_key_id != vault_key) {
                    if k.created + 300 >= j.started {
                        let id = k.access_key_id.clone();
                        self.delete_orphan(&id).await?;
                    }
                }
                self.step("Nothing of the interrupted rotation is left in IAM.".into());
                self.abandon()
            }
            Step::Created { new_key } if new_key == vault_key => {
                // The vault was replaced before the run was killed: the rotation went through.
                self.record("new key sealed", &new_key, generation)?;
                let step = Step::Sealed {
                    new_key: new_key.clone(),
                    rotated_at: opened.payload.rotated,
                    generation,
                };
                j.enter(&self.path, step, self.req.now())?;
                self.step(format!(
                    "The interrupted rotation had sealed the new key {} into the vault.",
                    mask_key_id(&new_key)
                ));
                self.stage(j).map(Some)
            }
            Step::Created { new_key } => {
                if vault_key != j.old_key {
                    return Err(Error::JournalMismatch {
                        journal_key: mask_key_id(&j.old_key),
                        vault_key: mask_key_id(&vault_key),
                    });
                }
                // Made but never sealed: its secret is gone with the killed process.
                if self
                    .keys()
                    .await?
                    .iter()
                    .any(|k| k.access_key_id == new_key)
                {
                    self.delete_orphan(&new_key).await?;
                }
                self.abandon()
            }
            Step::Sealed { .. } => self.stage(j).map(Some),
            _ => Ok(Some(j)),
        }
    }

    /// An interrupted rotation undone: its journal removed (the vault and IAM are as before
    /// it began).
    fn abandon(&mut self) -> Result<Option<Journal>, Error> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(Error::Write {
                    path: self.path.display().to_string(),
                    source,
                })
            }
        }
        let _ = crate::files::sync_dir(self.path.parent().unwrap_or(Path::new(".")));
        Ok(None)
    }

    /// A new rotation from the vault as opened; returns the journal with the old key staged.
    async fn fresh(
        &mut self,
        opened: &vault::Opened,
        last: Option<&Journal>,
    ) -> Result<Journal, Error> {
        let old_key = opened.payload.access_key_id.clone();
        let keys = self.keys().await?;
        if let Some(other) = keys.iter().find(|k| k.access_key_id != old_key) {
            let rotated_here = last.and_then(|j| match &j.step {
                Step::Done { new_key, .. } | Step::Staged { new_key, .. } => {
                    (new_key == &other.access_key_id).then_some(())
                }
                _ => None,
            });
            return Err(Error::SecondKey {
                key: mask_key_id(&other.access_key_id),
                created: other.created,
                stale_copy: rotated_here.is_some(),
            });
        }
        if !keys.iter().any(|k| k.access_key_id == old_key) {
            return Err(Error::VaultKeyUnknown {
                key: mask_key_id(&old_key),
            });
        }
        let started = self.req.now();
        let mut j = Journal {
            version: JOURNAL_VERSION,
            profile: self.req.activation.profile.name.clone(),
            vault: self.req.vault_path().to_path_buf(),
            old_key: old_key.clone(),
            started,
            step: Step::Creating,
            history: vec![("creating".into(), started)],
        };
        j.save(&self.path)?;
        crash_point("before-create");

        // Never retried: a retry after a lost answer would make a second key.
        let mut endpoint = self.req.activation.endpoint.clone();
        endpoint.retries.max_attempts = 1;
        let created = iam::create_access_key(&endpoint, &self.signer(), &self.user).await;
        let (new_key, secret) = match created {
            Ok(k) => k,
            Err(e) => {
                let may_have_arrived = !matches!(
                    e,
                    aws::Error::Unreachable {
                        may_have_arrived: false,
                        ..
                    } | aws::Error::Denied { .. }
                        | aws::Error::BadKey { .. }
                        | aws::Error::Expired { .. }
                );
                if !may_have_arrived {
                    let _ = std::fs::remove_file(&self.path);
                }
                return Err(e.into());
            }
        };
        crash_point("after-create");
        j.enter(
            &self.path,
            Step::Created {
                new_key: new_key.clone(),
            },
            self.req.now(),
        )?;
        crash_point("after-created");
        self.step(format!(
            "Created the new access key {}.",
            mask_key_id(&new_key)
        ));

        let sealed = self.prove_and_seal(opened, &new_key, &secret).await;
        drop(secret);
        let (generation, rotated_at) = match sealed {
            Ok(sealed) => sealed,
            Err(e) => {
                // Undo: the new key goes, the vault and the old key stay as they were.
                self.note(&format!(
                    "The new key {} cannot be used ({e}); deleting it.",
                    mask_key_id(&new_key)
                ));
                self.delete_orphan(&new_key).await?;
                self.abandon()?;
                return Err(e);
            }
        };
        crash_point("after-vault");
        self.report.vault_key = new_key.clone();
        self.report.generation = generation;
        self.report.replaced = true;
        self.record("new key sealed", &new_key, generation)?;
        j.enter(
            &self.path,
            Step::Sealed {
                new_key: new_key.clone(),
                rotated_at,
                generation,
            },
            rotated_at,
        )?;
        crash_point("after-sealed");
        self.step(format!(
            "Sealed the new key {} into {} (generation {generation}).",
            mask_key_id(&new_key),
            self.report.vault
        ));
        self.stage(j)
    }

    /// Proves the new key works (waiting for IAM to propagate it), then replaces the vault
    /// with it sealed in, keeping the old file beside it. Returns the vault's generation and
    /// the time the key was sealed.
    async fn prove_and_seal(
        &mut self,
        opened: &vault::Opened,
        new_key: &str,
        secret: &SecretString,
    ) -> Result<(u32, u64), Error> {
        prove_new_key(
            &self.req.activation.endpoint,
            new_key,
            secret,
            self.req.propagation_timeout,
            self.prompt,
        )
        .await?;
        let path = self.req.vault_path();
        // The file must still be the vault that was opened: a copy put there meanwhile would
        // be overwritten by a vault it never held.
        let on_disk = vault::file::read(path)?;
        if &on_disk != opened.vault() {
            return Err(Error::Vault(vault::Error::Io {
                action: "cannot replace vault",
                path: path.display().to_string(),
                source: std::io::Error::other("the file changed since the ceremony opened it"),
            }));
        }
        let sealed_at = self.req.now();
        let new = opened.with_new_key(new_key, secret, sealed_at, self.req.activation.rng)?;
        let generation = new.key_facts().map_or(0, |k| k.generation);
        vault::file::write(&previous_path(path), opened.vault())?;
        crash_point("after-previous");
        vault::file::write(path, &new)?;
        Ok((generation, sealed_at))
    }

    /// The old key staged by the policy (or for retirement at once, `--now`); the copy of the
    /// old vault removed.
    fn stage(&mut self, mut j: Journal) -> Result<Journal, Error> {
        let at_once = matches!(self.req.mode, Mode::Rotate { now: true });
        let Step::Sealed {
            new_key,
            rotated_at,
            generation,
        } = j.step.clone()
        else {
            return Ok(j);
        };
        let policy = self.req.policy();
        let deactivate_at = policy.deactivation_due(rotated_at);
        let delete_at = policy.deletion_due(rotated_at);
        j.enter(
            &self.path,
            Step::Staged {
                new_key,
                rotated_at,
                generation,
                deactivate_at,
                delete_at,
                deactivated: false,
                at_once,
            },
            self.req.now(),
        )?;
        let previous = previous_path(self.req.vault_path());
        match std::fs::remove_file(&previous) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(Error::Write {
                    path: previous.display().to_string(),
                    source,
                })
            }
        }
        self.report.staged = Some((j.old_key.clone(), deactivate_at, delete_at));
        self.report.vault_key = match &j.step {
            Step::Staged { new_key, .. } => new_key.clone(),
            _ => self.report.vault_key.clone(),
        };
        self.report.generation = generation;
        Ok(j)
    }

    /// Deactivates, then deletes, the staged old key when its day has come (or at once with
    /// `now`), each proven with ListAccessKeys.
    async fn retire(&mut self, mut j: Journal, now: bool) -> Result<(), Error> {
        let Step::Staged {
            new_key,
            rotated_at,
            generation,
            deactivate_at,
            delete_at,
            deactivated,
            at_once,
        } = j.step.clone()
        else {
            return Ok(());
        };
        if self.report.vault_key != new_key {
            return Err(Error::StaleVault {
                vault_key: mask_key_id(&self.report.vault_key),
                current_key: mask_key_id(&new_key),
            });
        }
        let old = j.old_key.clone();
        let endpoint = self.req.activation.endpoint.clone();
        let t = self.req.now();
        if !deactivated && (now || t >= deactivate_at) {
            let keys = self.keys().await?;
            if keys.iter().any(|k| k.access_key_id == old) {
                iam::update_access_key(
                    &endpoint,
                    &self.signer(),
                    &self.user,
                    &old,
                    iam::KeyStatus::Inactive,
                )
                .await?;
                crash_point("after-deactivate");
                let keys = self.keys().await?;
                let status = keys
                    .iter()
                    .find(|k| k.access_key_id == old)
                    .map(|k| k.status);
                if status.is_some_and(|s| s != iam::KeyStatus::Inactive) {
                    return Err(Error::NotProven {
                        action: "UpdateAccessKey",
                        key: mask_key_id(&old),
                    });
                }
            }
            self.record("old key deactivated", &old, generation)?;
            j.enter(
                &self.path,
                Step::Staged {
                    new_key: new_key.clone(),
                    rotated_at,
                    generation,
                    deactivate_at,
                    delete_at,
                    deactivated: true,
                    at_once,
                },
                self.req.now(),
            )?;
            self.step(format!("Deactivated the old key {}.", mask_key_id(&old)));
        }
        let deactivated = matches!(
            j.step,
            Step::Staged {
                deactivated: true,
                ..
            }
        );
        if deactivated && (now || t >= delete_at) {
            match iam::delete_access_key(&endpoint, &self.signer(), &self.user, &old).await {
                Ok(()) => {}
                Err(aws::Error::Denied { code, .. }) if code == "NoSuchEntity" => {}
                Err(e) => return Err(e.into()),
            }
            crash_point("after-delete");
            if self.keys().await?.iter().any(|k| k.access_key_id == old) {
                return Err(Error::NotProven {
                    action: "DeleteAccessKey",
                    key: mask_key_id(&old),
                });
            }
            self.record("old key deleted", &old, generation)?;
            j.enter(
                &self.path,
                Step::Done {
                    new_key,
                    rotated_at,
                    generation,
                },
                self.req.now(),
            )?;
            self.step(format!("Deleted the old key {}.", mask_key_id(&old)));
            self.report.staged = None;
            return Ok(());
        }
        self.report.staged = Some((old, deactivate_at, delete_at));
        Ok(())
    }
}

/// Calls GetCallerIdentity with the new key until it works, IAM having propagated it, for at
/// most `timeout`: after 0.25 s, then twice as long each time (at most 4 s).
pub async fn prove_new_key(
    endpoint: &aws::Endpoint,
    key_id: &str,
    secret: &SecretString,
    timeout: Duration,
    prompt: &mut dyn Prompt,
) -> Result<sts::Identity, Error> {
    let signer = Signer {
        access_key_id: key_id,
        secret_access_key: secret,
        session_token: None,
    };
    let start = std::time::Instant::now();
    let mut pause = Duration::from_millis(250);
    loop {
        match sts::get_caller_identity(endpoint, &signer).await {
            Ok(id) => {
                prompt.note(&format!(
                    "The new key {} works: it is {}.",
                    mask_key_id(key_id),
                    id.arn
                ));
                return Ok(id);
            }
            Err(aws::Error::BadKey { message }) => {
                let waited = start.elapsed();
                if waited + pause > timeout {
                    return Err(Error::NewKeyNeverWorked {
                        key: mask_key_id(key_id),
                        waited_secs: waited.as_secs(),
                        message,
                    });
                }
                let left = timeout.saturating_sub(waited).as_secs();
                prompt.note(&format!(
                    "The new key does not work yet (IAM is propagating it); trying again ({left} s left)."
                ));
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(4));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// What is due for one profile, read without a ceremony or a secret (`rotate --check`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Due {
    /// The profile.
    pub profile: String,
    /// The vault file.
    pub vault: String,
    /// The vault's key, when the vault says (version 2).
    pub key: Option<String>,
    /// When the vault was enrolled, Unix seconds.
    pub created: u64,
    /// When its key was sealed (enrolment or the last rotation), Unix seconds.
    pub sealed_at: Option<u64>,
    /// The vault's generation.
    pub generation: Option<u32>,
    /// When the next rotation is due.
    pub rotation_due: Option<u64>,
    /// What is to be done now, most urgent first: `rotate`, `deactivate old key`,
    /// `delete old key`, `finish interrupted rotation`, `replace stale copy`.
    pub actions: Vec<String>,
    /// Findings that need a person (a stale copy, drift between the vault and IAM).
    pub problems: Vec<String>,
    /// The old key staged for retirement: its id, deactivation and deletion times.
    pub staged: Option<(String, u64, u64)>,
    /// The staged old key was being retired at once (`--now`) when its run stopped: the next
    /// `rotate` goes on with it.
    #[serde(skip)]
    pub retiring_at_once: bool,
    /// When AWS says the vault's key was last used, and for which service (`--check` with
    /// an auditor's credentials; `None`: not asked, or never used).
    pub last_used: Option<(u64, String)>,
}

/// What is due for `profile` at `now`, from the vault's clear facts and the journal.
pub fn plan(
    profile: &crate::config::Profile,
    paths: &crate::config::Paths,
    now: u64,
) -> Result<Due, Error> {
    let v = vault::file::read(&profile.vault)?;
    let journal = Journal::load(&paths.rotation_journal(&profile.name))?;
    let facts = v.key_facts();
    let sealed_at = facts.map(|k| k.sealed_at);
    let policy = profile.rotation;
    let mut due = Due {
        profile: profile.name.clone(),
        vault: profile.vault.display().to_string(),
        key: facts.map(|k| k.access_key_id.clone()),
        created: v.created(),
        sealed_at,
        generation: facts.map(|k| k.generation),
        rotation_due: Some(policy.rotation_due(sealed_at.unwrap_or(v.created()))),
        actions: Vec::new(),
        problems: Vec::new(),
        staged: None,
        retiring_at_once: false,
        last_used: None,
    };
    if let Some(j) = &journal {
        let (journal_key, journal_generation) = match &j.step {
            Step::Staged {
                new_key,
                generation,
                ..
            }
            | Step::Done {
                new_key,
                generation,
                ..
            } => (Some(new_key.as_str()), Some(*generation)),
            _ => (None, None),
        };
        if let (Some(key), Some(g)) = (journal_key, journal_generation) {
            let vg = due.generation.unwrap_or(0);
            if vg < g || (vg == g && due.key.as_deref() != Some(key)) {
                due.problems.push(format!(
                    "this vault is a stale copy: the rotation of {} sealed key {} (generation {g}) into {}; replace this file with that one",
                    audit::rfc3339(j.started),
                    mask_key_id(key),
                    j.vault.display()
                ));
                due.actions.push("replace stale copy".into());
            }
        }
        if j.interrupted() {
            due.actions.push("finish interrupted rotation".into());
            due.problems.push(format!(
                "a rotation stopped at step \"{}\": run `breakglass rotate {}` to finish or undo it",
                j.step.name(),
                profile.name
            ));
        }
        if let Some((old, deactivate_at, delete_at, deactivated)) = j.pending_retirement() {
            due.staged = Some((old.to_owned(), deactivate_at, delete_at));
            due.retiring_at_once = matches!(j.step, Step::Staged { at_once: true, .. });
            if !deactivated && now >= deactivate_at {
                due.actions.push("deactivate old key".into());
            } else if now >= delete_at {
                due.actions.push("delete old key".into());
            }
        }
    }
    if due.rotation_due.is_some_and(|d| now >= d) && due.staged.is_none() {
        due.actions.insert(0, "rotate".into());
    }
    Ok(due)
}

/// What IAM holds beside what the vault says, for `rotate --check` with an auditor's
/// credentials: problems found (a key the vault does not know, the vault's key missing or
/// inactive).
pub async fn drift(
    due: &Due,
    endpoint: &aws::Endpoint,
    signer: &Signer<'_>,
    user: &str,
) -> Result<Vec<String>, Error> {
    let keys = iam::list_access_keys(endpoint, signer, user).await?;
    let mut problems = Vec::new();
    let staged = due.staged.as_ref().map(|s| s.0.as_str());
    if let Some(vault_key) = &due.key {
        match keys.iter().find(|k| &k.access_key_id == vault_key) {
            None => problems.push(format!(
                "AWS has no key {} for user {user}: this vault's key was deleted (a stale copy?)",
                mask_key_id(vault_key)
            )),
            Some(k) if k.status == iam::KeyStatus::Inactive => problems.push(format!(
                "the vault's key {} is inactive in AWS: this vault cannot be unlocked",
                mask_key_id(vault_key)
            )),
            Some(_) => {}
        }
        for k in keys
            .iter()
            .filter(|k| &k.access_key_id != vault_key && Some(k.access_key_id.as_str()) != staged)
        {
            problems.push(format!(
                "AWS has a key {} ({}, created {}) that this vault does not hold",
                mask_key_id(&k.access_key_id),
                k.status.as_str(),
                audit::rfc3339(k.created)
            ));
        }
    }
    Ok(problems)
}
