//! Enrolment: program the token (the MFA TOTP account and, for the OATH factor, the sealing
//! credential; both touch-required), register the virtual MFA device with two consecutive
//! codes, create or import the access key, prove it with GetCallerIdentity, seal the vault with
//! the chosen factor (OATH, PIV or FIDO2), record the profile. A failure removes what the
//! ceremony put on the token and writes no vault. [`add_token`] adds a key slot for another
//! token to an existing vault.

use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::mfa::{self, Windows};
use super::{open_oath, AccessCodeOnce, Error, PinPrompt, Prompt};
use crate::audit;
use crate::aws::{self, iam, sts, Endpoint, Signer};
use crate::clock::Clock;
use crate::config::{self, Paths, Profile};
use crate::secure::Key32;
use crate::secure::{mask_key_id, Random};
use crate::token::oath::{self, Kind, NewAccount, Seed, Session};
use crate::token::otp::Algorithm;
use crate::token::Token;
use crate::vault::{self, FactorKind, KdfParams, OathFactor, Payload, SealFactor, SlotInfo, Vault};

/// Shortest passphrase accepted.
pub const MIN_PASSPHRASE: usize = 12;

/// The weakest Argon2id accepted outside the sandbox: RFC 9106's second recommended option
/// (64 MiB, 3 passes, 4 lanes), [`KdfParams::DEFAULT`].
pub const KDF_FLOOR: KdfParams = KdfParams::DEFAULT;

/// Argon2id parameters that make an offline guess of the passphrase cheaper than
/// [`KDF_FLOOR`]: see [`check_kdf`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Argon2id with {} KiB and {} passes ({} lanes) is below RFC 9106's recommendation (64 MiB, 3 passes, 4 lanes): each offline guess of the passphrase would cost less", .kdf.m_kib, .kdf.t, .kdf.p)]
pub struct WeakKdf {
    /// The parameters asked for.
    pub kdf: KdfParams,
}

/// Whether `kdf` is at least as costly per guess as [`KDF_FLOOR`]: at least its memory, and
/// at least its memory × passes (so RFC 9106's first option, 2 GiB and 1 pass, passes too).
/// Lanes are not counted: they split the same work for parallel cores, and fewer of them make
/// no guess cheaper.
pub fn check_kdf(kdf: &KdfParams) -> Result<(), WeakKdf> {
    let cost = |k: &KdfParams| u64::from(k.m_kib) * u64::from(k.t);
    if kdf.m_kib < KDF_FLOOR.m_kib || cost(kdf) < cost(&KDF_FLOOR) {
        return Err(WeakKdf { kdf: *kdf });
    }
    Ok(())
}

/// The oldest YubiKey firmware whose PIV application the PIV factor can use (GET METADATA).
pub const PIV_MIN_FIRMWARE: (u8, u8, u8) = (5, 3, 0);

/// The factor a new key slot is sealed with when none is asked for: PIV when the token has a
/// PIV application the factor can use (firmware [`PIV_MIN_FIRMWARE`] or later), else OATH
/// (and the caller warns: see [`OATH_DEFAULT_WARNING`]). Opens the PIV application and
/// closes it again; a token without one (or whose PIV refuses) is OATH, a token that cannot
/// be reached at all is the error.
pub fn default_factor(token: &mut dyn Token) -> Result<FactorKind, crate::token::Error> {
    use crate::token::Error as E;
    match token.piv() {
        Ok(mut card) => Ok(match card.version() {
            Ok(version) if version >= PIV_MIN_FIRMWARE => FactorKind::PivEcdh,
            _ => FactorKind::OathHmac,
        }),
        Err(E::AppletMissing { .. } | E::PivRefused { .. }) => Ok(FactorKind::OathHmac),
        Err(e) => Err(e),
    }
}

/// What is said when [`default_factor`] falls back to OATH.
pub const OATH_DEFAULT_WARNING: &str = "WARNING: this token has no PIV application breakglass can use, so the vault is sealed with the OATH factor (challenge-response, touch only). With OATH the token holder alone, with a copy of the vault and one touch, can guess the passphrase offline: only its strength stands. To choose otherwise use a token with PIV (YubiKey 5, firmware 5.3 or later) and --factor piv, or a FIDO2 key with --factor fido2; pass --factor oath to choose OATH knowingly.";

/// Where the access key comes from.
pub enum KeySource {
    /// Read by the caller (stdin).
    Import {
        /// The access key id (`AKIA…`).
        access_key_id: String,
        /// Its secret access key.
        secret_access_key: SecretString,
    },
    /// IAM CreateAccessKey for this user, with the administrator's credentials.
    Create {
        /// The IAM user name.
        user: String,
    },
}

/// Where the MFA device comes from.
pub enum MfaSource {
    /// An existing virtual MFA device: its serial and base32 seed.
    Import {
        /// The device's ARN.
        serial: String,
        /// Its TOTP seed.
        seed: Seed,
    },
    /// IAM CreateVirtualMFADevice + EnableMFADevice for `user`.
    Create {
        /// The IAM user name.
        user: String,
    },
}

/// The seal factor of the new key slot.
pub enum Factor<'a> {
    /// The OATH challenge-response credential (`seal_account`).
    Oath,
    /// A P-256 key generated in this PIV slot, attested to one of `roots`; `replace` allows
    /// replacing a key already there (vaults sealed with that key stop opening with it).
    Piv {
        /// The retired PIV slot (`82` to `95`).
        slot: u8,
        /// The accepted attestation roots.
        roots: &'a [x509_cert::Certificate],
        /// Replace a key already in the slot.
        replace: bool,
    },
    /// A FIDO2 hmac-secret credential on the token's FIDO2 key.
    Fido2,
}

impl Factor<'_> {
    /// The vault factor kind this enrolment seals with.
    pub fn kind(&self) -> FactorKind {
        match self {
            Self::Oath => FactorKind::OathHmac,
            Self::Piv { .. } => FactorKind::PivEcdh,
            Self::Fido2 => FactorKind::Fido2HmacSecret,
        }
    }
}

/// What an enrolment needs: the profile, the token factor, where the key and MFA device come from.
pub struct Request<'a> {
    /// The profile being enrolled (its vault path, token accounts, region).
    pub profile: &'a Profile,
    /// The token factor of the first key slot.
    pub factor: Factor<'a>,
    /// Where the config, state and audit log live.
    pub paths: &'a Paths,
    /// Argon2id parameters for the passphrase factor.
    pub kdf: KdfParams,
    /// Custodians instead of one passphrase (a version 3 vault): any `threshold` of `names`
    /// open it. Checked with [`check_custodians`] before any I/O.
    pub custodians: Option<NewCustodianSet>,
    /// Where the access key comes from.
    pub key: KeySource,
    /// Where the MFA device comes from.
    pub mfa: MfaSource,
    /// Administrator credentials for the IAM calls (`Create` sources).
    pub admin: Option<(&'a str, &'a SecretString)>,
    /// The STS/IAM endpoints (the sandbox's in tests and the demo).
    pub endpoint: Endpoint,
    /// Replace an existing vault file and an existing MFA account on the token (never the sealing
    /// credential).
    pub force: bool,
    /// The clock (TOTP windows, audit times).
    pub now: &'a dyn Clock,
}

/// The custodians a vault is enrolled with: names in share order, and how many must be
/// present.
#[derive(Debug, Clone)]
pub struct NewCustodianSet {
    /// The custodians' names, as typed.
    pub names: Vec<String>,
    /// M, 1 to the number of names.
    pub threshold: u8,
}

/// Checks a custodian set before anything is asked or written: 1 to 16 names, each a
/// name as the holders' prompts accept it and at most 64 bytes, no two of them one person
/// (the same test as for the two holders), and M from 1 to N.
pub fn check_custodians(set: &NewCustodianSet) -> Result<(), Error> {
    let bad = |reason: String| {
        Err(Error::Vault(vault::Error::InvalidInput {
            what: "custodians",
            reason,
        }))
    };
    let n = set.names.len();
    if n == 0 || n > vault::shares::MAX_CUSTODIANS {
        return bad(format!(
            "a vault has 1 to {} custodians, not {n}",
            vault::shares::MAX_CUSTODIANS
        ));
    }
    if set.threshold == 0 || usize::from(set.threshold) > n {
        return bad(format!(
            "the number of custodians needed (--threshold) must be 1 to {n} (the number of custodians), not {}",
            set.threshold
        ));
    }
    for (i, name) in set.names.iter().enumerate() {
        let checked = super::names::checked(super::Role::PasswordHolder, name)?;
        if checked != *name || name.len() > vault::format::MAX_NAME {
            return bad(format!(
                "custodian name {} must be 1 to {} bytes without surrounding spaces",
                super::names::quoted(name),
                vault::format::MAX_NAME
            ));
        }
        if let Some(other) = set.names[..i]
            .iter()
            .find(|o| super::names::same_person(o, name))
        {
            return bad(format!(
                "{} and {} are one person once normalised: each custodian is a different person",
                super::names::quoted(other),
                super::names::quoted(name)
            ));
        }
    }
    Ok(())
}

/// What was enrolled (no secret).
#[derive(Debug, Clone)]
pub struct Report {
    /// The IAM user's ARN, from GetCallerIdentity.
    pub user_arn: String,
    /// The access key id, masked (all but its last 4 characters).
    pub access_key_id_masked: String,
    /// The MFA device's ARN.
    pub mfa_serial: String,
    /// The vault file's path.
    pub vault: String,
    /// True when the profile was added to the config (false when it was there already, or could not
    /// be written: a warning said so).
    pub profile_added: bool,
}

fn admin<'a>(req: &'a Request<'_>) -> Result<Signer<'a>, Error> {
    let (id, secret) = req.admin.ok_or(Error::NoAdminCredentials)?;
    Ok(Signer {
        access_key_id: id,
        secret_access_key: secret,
        session_token: None,
    })
}

/// Runs the enrolment.
pub async fn enroll(
    req: Request<'_>,
    token: &mut dyn Token,
    prompt: &mut dyn Prompt,
    rng: &dyn Random,
) -> Result<Report, Error> {
    if req.profile.vault.exists() && !req.force {
        return Err(Error::VaultExists {
            path: req.profile.vault.display().to_string(),
        });
    }
    if matches!(req.key, KeySource::Create { .. }) || matches!(req.mfa, MfaSource::Create { .. }) {
        admin(&req)?;
    }
    // The passphrase(s) first: a typo must not strand IAM resources or token accounts.
    let passphrase = match &req.custodians {
        None => NewPassphrases::One(ask_passphrase(prompt, None)?),
        Some(set) => {
            check_custodians(set)?;
            prompt.note(&format!(
                "The vault will open with {} of these {} custodians and a token: {}. Each custodian types a passphrase of their own now.",
                set.threshold,
                set.names.len(),
                set.names
                    .iter()
                    .map(|n| super::names::quoted(n))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            let mut each = Vec::with_capacity(set.names.len());
            for name in &set.names {
                each.push((name.clone(), ask_passphrase(prompt, Some(name))?));
            }
            NewPassphrases::Custodians(set.threshold, each)
        }
    };
    let mut prompt = AccessCodeOnce::new(prompt);
    // The token's OATH accounts are checked before a PIV key is generated, so that a refusal
    // leaves the token untouched.
    {
        let mut t = token.oath()?;
        let mut session = open_oath(&mut *t, &mut prompt, rng)?;
        check_token_accounts(&req, &session.list()?)?;
    }
    let prepared = prepare(&req, token, &mut prompt, rng);
    let result = match prepared {
        Ok(mut prepared) => {
            let mut t = token.oath()?;
            let mut session = open_oath(&mut *t, &mut prompt, rng)?;
            let existing = session.list()?;
            let sealed = program_and_seal(
                &req,
                &passphrase,
                &mut session,
                prepared.as_mut(),
                &mut prompt,
                rng,
            )
            .await;
            if let Err((_, written)) = &sealed {
                // Once the vault is on disk its sealing credential must stay, whatever failed after.
                if !written {
                    remove_new_accounts(&mut session, &existing, &req);
                    note_orphan_key(&req, &mut prompt);
                }
            }
            sealed.map_err(|(e, _)| e)
        }
        Err(e) => Err(e),
    };
    let rec = audit::Record::Enrolment {
        factor: req.factor.kind().name(),
        enrolled: result.as_ref().ok().map(|r| audit::Enrolled {
            access_key_id_masked: r.access_key_id_masked.clone(),
            mfa_serial: r.mfa_serial.clone(),
            user_arn: r.user_arn.clone(),
        }),
    };
    record(&req, rec, audit::Outcome::of(&result), &mut prompt);
    let report = result?;
    Ok(report)
}

/// A slot's factor made before the OATH session (PIV, FIDO2): its parameters and secret.
struct Prepared {
    kind: FactorKind,
    made: Option<(Vec<u8>, Key32)>,
}

impl SealFactor for Prepared {
    fn kind(&self) -> FactorKind {
        self.kind
    }

    fn enroll(&mut self, _rng: &dyn Random) -> Result<(Vec<u8>, Key32), vault::Error> {
        self.made.take().ok_or(vault::Error::InvalidInput {
            what: "key slot",
            reason: "the prepared factor was used twice".into(),
        })
    }

    fn matches(&mut self, _slot: &SlotInfo) -> Result<bool, vault::Error> {
        Ok(false)
    }

    fn respond(&mut self, _slot: &SlotInfo) -> Result<Key32, vault::Error> {
        Err(vault::Error::NotOpened)
    }
}

/// Makes the new slot's PIV or FIDO2 factor (PIN and touch); `None` for OATH, which is made
/// inside the OATH session.
fn prepare(
    req: &Request<'_>,
    token: &mut dyn Token,
    prompt: &mut dyn Prompt,
    rng: &dyn Random,
) -> Result<Option<Prepared>, Error> {
    let made = match &req.factor {
        Factor::Oath => return Ok(None),
        Factor::Piv {
            slot,
            roots,
            replace,
        } => {
            let mut card = token.piv()?;
            let serial = card.serial()?;
            prompt.note(&format!(
                "Token {serial}: generating a P-256 key in PIV slot {slot:02x} (PIN and touch always), then checking its attestation."
            ));
            let mut pins = PinPrompt(prompt);
            let mut f = vault::piv::PivFactor::for_enrolment(
                &mut *card,
                &mut pins,
                vault::piv::PivEnrolment {
                    slot: *slot,
                    replace: *replace,
                    roots,
                    now: req.now.now(),
                },
            );
            let made = f.enroll(rng);
            let generated = f.generated_in;
            let attested = f.attested.take();
            drop(f);
            if made.is_err() && generated.is_some() {
                note_orphan_key(req, prompt);
            }
            let made = made?;
            if let Some(a) = attested {
                prompt.note(&format!(
                    "Attestation verified: firmware {}.{}.{}, chain {}, root SHA-256 {}.",
                    a.firmware.0,
                    a.firmware.1,
                    a.firmware.2,
                    a.chain.join(" <- "),
                    a.root_sha256
                ));
            }
            made
        }
        Factor::Fido2 => {
            let mut key = token.fido2()?;
            prompt.note("FIDO2: making an hmac-secret credential for relying party \"breakglass\" (PIN, then touch).");
            let mut pins = PinPrompt(prompt);
            let mut f = vault::fido2::Fido2Factor::new(&mut *key, &mut pins);
            f.enroll(rng)?
        }
    };
    Ok(Some(Prepared {
        kind: req.factor.kind(),
        made: Some(made),
    }))
}

/// After a failed enrolment: a generated PIV key cannot be taken back (deleting a key needs
/// firmware 5.7 and is not done here); say so, so that the next attempt knows what to pass.
fn note_orphan_key(req: &Request<'_>, prompt: &mut dyn Prompt) {
    if let Factor::Piv { slot, .. } = req.factor {
        prompt.note(&format!(
            "The PIV key generated in slot {slot:02x} stays on the token, unused: the next enrolment in that slot needs --replace-piv-key (or choose another with --piv-slot)."
        ));
    }
}

/// Appends the ceremony's audit record. After a success the vault works, so a record that
/// cannot be written is a loud warning, not a failure (a retry with --force would be worse).
/// After a failure the ceremony's own error is what the operator must see; the audit problem
/// is added as a warning too.
fn record(
    req: &Request<'_>,
    record: audit::Record,
    outcome: audit::Outcome,
    prompt: &mut dyn Prompt,
) {
    let event = record.event();
    let what = match outcome {
        audit::Outcome::Success => "succeeded",
        audit::Outcome::Failure { .. } => "failed",
    };
    let logged = audit::append(
        &req.paths.audit_log(),
        &audit::Entry {
            time: req.now.now(),
            profile: &req.profile.name,
            record,
            outcome,
        },
    );
    if let Err(e) = logged {
        prompt.note(&format!(
            "WARNING: the {event} {what} but its audit record was not written: {e}"
        ));
    }
}

/// The passphrase side of a new vault.
enum NewPassphrases {
    One(SecretString),
    Custodians(u8, Vec<(String, SecretString)>),
}

impl NewPassphrases {
    #[allow(clippy::too_many_arguments)]
    fn create(
        &self,
        kdf: KdfParams,
        factor: &mut dyn vault::SealFactor,
        payload: &Payload,
        rng: &dyn Random,
        now: u64,
    ) -> Result<Vault, vault::Error> {
        match self {
            Self::One(p) => Vault::create(p, kdf, factor, "primary", payload, rng, now),
            Self::Custodians(threshold, each) => {
                let custodians: Vec<(&str, &SecretString)> =
                    each.iter().map(|(n, p)| (n.as_str(), p)).collect();
                Vault::create_with_custodians(
                    &custodians,
                    *threshold,
                    kdf,
                    factor,
                    "primary",
                    payload,
                    rng,
                    now,
                )
            }
        }
    }
}

/// A new passphrase, typed twice, at least [`MIN_PASSPHRASE`] characters: the one
/// passphrase's, or custodian `custodian`'s.
pub fn ask_passphrase(
    prompt: &mut dyn Prompt,
    custodian: Option<&str>,
) -> Result<SecretString, Error> {
    let passphrase = match custodian {
        None => prompt.passphrase(true)?,
        Some(name) => prompt.custodian_passphrase(name, true)?,
    };
    let len = passphrase.expose_secret().chars().count();
    if len < MIN_PASSPHRASE {
        return Err(Error::WeakPassphrase {
            len,
            min: MIN_PASSPHRASE,
        });
    }
    Ok(passphrase)
}

/// The MFA account must be new (unless --force); an existing sealing credential is reused,
/// never overwritten: other profiles' vaults may be sealed with it (each slot has its own
/// random challenge, so sharing the credential keeps vaults apart).
fn check_token_accounts(req: &Request<'_>, existing: &[oath::Account]) -> Result<(), Error> {
    if !req.force && oath::find(existing, &req.profile.mfa_account).is_ok() {
        return Err(Error::TokenAccountExists {
            name: req.profile.mfa_account.clone(),
        });
    }
    if !matches!(req.factor, Factor::Oath) {
        return Ok(());
    }
    if let Ok(seal) = oath::find(existing, &req.profile.seal_account) {
        if seal.algorithm != Some(Algorithm::Sha256) {
            return Err(Error::SealAccountUnfit {
                name: req.profile.seal_account.clone(),
            });
        }
    }
    Ok(())
}

/// Leaves the token as it was: removes the ceremony's accounts that were not there before.
fn remove_new_accounts(session: &mut Session<'_>, before: &[oath::Account], req: &Request<'_>) {
    let profile = req.profile;
    for name in [&profile.mfa_account, &profile.seal_account] {
        if oath::find(before, name).is_err() {
            // Best effort: the ceremony's own error is what the operator must see.
            let _ = session.delete(name);
        }
    }
}

fn mfa_account(name: &str, seed: Seed) -> NewAccount {
    NewAccount {
        name: name.to_owned(),
        kind: Kind::Totp,
        algorithm: Algorithm::Sha1,
        digits: 6,
        period: 30,
        touch: true,
        counter: 0,
        seed,
    }
}

/// Puts the MFA account and the sealing credential on a token, creating and enabling an IAM
/// virtual MFA device named `device_name` when asked; returns the device's serial.
async fn program_token(
    req: &Request<'_>,
    session: &mut Session<'_>,
    device_name: &str,
    prompt: &mut dyn Prompt,
    rng: &dyn Random,
) -> Result<String, Error> {
    let (serial, seed, enable_for) = match &req.mfa {
        MfaSource::Import { serial, seed } => (
            serial.clone(),
            Seed::new(Zeroizing::new(seed.expose().to_vec())),
            None,
        ),
        MfaSource::Create { user } => {
            prompt.note(&format!(
                "IAM: creating the virtual MFA device {device_name:?} for {user}."
            ));
            let (serial, b32) =
                iam::create_virtual_mfa(&req.endpoint, &admin(req)?, device_name).await?;
            (serial, Seed::from_base32(&b32)?, Some(user.clone()))
        }
    };
    prompt.note(&format!(
        "Token: storing the MFA account {:?} (touch required).",
        req.profile.mfa_account
    ));
    session.put(&mfa_account(&req.profile.mfa_account, seed))?;
    if !matches!(req.factor, Factor::Oath) {
        // The vault is sealed by the PIV or FIDO2 factor: no sealing credential.
    } else if oath::find(&session.list()?, &req.profile.seal_account).is_ok() {
        prompt.note(&format!(
            "Token: reusing its sealing credential {:?}.",
            req.profile.seal_account
        ));
    } else {
        let mut seal_seed = Zeroizing::new([0u8; 32]);
        rng.fill(&mut *seal_seed)
            .map_err(crate::vault::Error::from)?;
        prompt.note(&format!(
            "Token: storing the sealing credential {:?} (HMAC-SHA256, touch required).",
            req.profile.seal_account
        ));
        session.put(&NewAccount {
            algorithm: Algorithm::Sha256,
            ..mfa_account(
                &req.profile.seal_account,
                Seed::new(Zeroizing::new(seal_seed.to_vec())),
            )
        })?;
    }
    if let Some(user) = enable_for {
        // Two consecutive windows, read from the token at once (t and t+1): no waiting for the
        // clock, and no chance of straddling a window boundary between two manual readings.
        let step = req.now.now() / mfa::PERIOD;
        prompt.note("IAM: enabling the MFA device with the codes of two consecutive windows.");
        let c1 = mfa::code_for_step(session, &req.profile.mfa_account, step, prompt)?;
        let c2 = mfa::code_for_step(session, &req.profile.mfa_account, step + 1, prompt)?;
        iam::enable_mfa(&req.endpoint, &admin(req)?, &user, &serial, &c1, &c2).await?;
        let mut w = Windows::load(&req.paths.mfa_state());
        w.record(&serial, step + 1);
        w.save(&req.paths.mfa_state())?;
    }
    Ok(serial)
}

/// Programs the token, gets the key, seals and writes the vault. On failure, says whether the
/// vault was already written (then nothing may be rolled back).
async fn program_and_seal(
    req: &Request<'_>,
    passphrase: &NewPassphrases,
    session: &mut Session<'_>,
    prepared: Option<&mut Prepared>,
    prompt: &mut dyn Prompt,
    rng: &dyn Random,
) -> Result<Report, (Error, bool)> {
    let before = |e: Error| (e, false);
    let device_name = match &req.mfa {
        MfaSource::Create { user } => user.clone(),
        MfaSource::Import { .. } => String::new(),
    };
    let serial = program_token(req, session, &device_name, prompt, rng)
        .await
        .map_err(before)?;
    // The access key, proven with GetCallerIdentity.
    let (key_id, secret) = match &req.key {
        KeySource::Import {
            access_key_id,
            secret_access_key,
        } => (access_key_id.clone(), secret_access_key.clone()),
        KeySource::Create { user } => {
            prompt.note(&format!("IAM: creating an access key for {user}."));
            let signer = admin(req).map_err(before)?;
            iam::create_access_key(&req.endpoint, &signer, user)
                .await
                .map_err(|e| before(e.into()))?
        }
    };
    let identity = prove_key(req, &key_id, &secret, prompt)
        .await
        .map_err(before)?;
    let now = req.now.now();
    let payload = Payload {
        access_key_id: key_id.clone(),
        secret_access_key: secret,
        mfa_serial: serial.clone(),
        user_arn: identity.arn.clone(),
        created: now,
        rotated: now,
        profile: Some(req.profile.name.clone()),
    };
    prompt.note("Sealing the vault (passphrase key derivation, then the token's seal).");
    let vault = match prepared {
        Some(p) => passphrase.create(req.kdf, p, &payload, rng, now),
        None => {
            let mut factor = OathFactor::new(session, &req.profile.seal_account);
            prompt.touch_start("sealing the vault");
            let v = passphrase.create(req.kdf, &mut factor, &payload, rng, now);
            prompt.touch_end();
            v
        }
    }
    .map_err(|e| before(e.into()))?;
    vault::file::write(&req.profile.vault, &vault).map_err(|e| before(e.into()))?;
    // From here on the vault works: later problems are warnings, never a rollback.
    let profile_added = match add_profile_if_missing(req, &serial) {
        Ok(added) => added,
        Err(e) => {
            let mut p = req.profile.clone();
            p.mfa_serial = Some(serial.clone());
            prompt.note(&format!(
                "WARNING: the vault is written, but the profile could not be added to the config ({e}). Add this section to {} by hand:\n{}",
                req.paths.config.display(),
                p.to_toml()
            ));
            false
        }
    };
    Ok(Report {
        user_arn: identity.arn,
        access_key_id_masked: mask_key_id(&key_id),
        mfa_serial: serial,
        vault: req.profile.vault.display().to_string(),
        profile_added,
    })
}

/// Opens `vault` with an enrolled token, whatever its slot's factor.
pub(crate) async fn open_with(
    vault: &Vault,
    passphrase: &super::Passphrases,
    token: &mut dyn Token,
    seal_account: &str,
    prompt: &mut dyn Prompt,
    rng: &dyn Random,
) -> Result<vault::Opened, Error> {
    let passphrase = passphrase.derive(vault, prompt)?;
    if let Some(opened) = super::open_before_oath(vault, &passphrase, token, prompt)? {
        return Ok(opened);
    }
    let mut t = token.oath()?;
    let mut session = open_oath(&mut *t, prompt, rng)?;
    let mut factor = OathFactor::new(&mut session, seal_account);
    prompt.touch_start("opening the vault with the enrolled token");
    let r = vault.open_derived(&passphrase, &mut factor);
    prompt.touch_end();
    Ok(r?)
}

/// Refuses a new token that already holds one of the vault's slots (by any factor it has).
fn check_not_enrolled(
    vault: &Vault,
    token: &mut dyn Token,
    req: &Request<'_>,
    prompt: &mut dyn Prompt,
    rng: &dyn Random,
) -> Result<(), Error> {
    // A FIDO2 key is found by its credential (a silent probe): the new token's key must not
    // already hold one of the vault's (for instance the same key named twice). One factor for
    // every FIDO2 slot, so a key that cannot be probed silently is asked its PIN once.
    if vault.slots().any(|s| s.kind == FactorKind::Fido2HmacSecret) {
        if let Ok(mut key) = token.fido2() {
            let mut pins = PinPrompt(prompt);
            let mut f = vault::fido2::Fido2Factor::new(&mut *key, &mut pins);
            for slot in vault
                .slots()
                .filter(|s| s.kind == FactorKind::Fido2HmacSecret)
            {
                if f.matches(slot).unwrap_or(false) {
                    return Err(Error::TokenAlreadyEnrolled { slot: slot.id });
                }
            }
        }
    }
    for slot in vault.slots() {
        let mine = match slot.kind {
            FactorKind::PivEcdh => match token.piv() {
                Ok(mut card) => {
                    let mut pins = PinPrompt(prompt);
                    let mut f = vault::piv::PivFactor::new(&mut *card, &mut pins);
                    // A replaced key on an enrolled token is not "enrolled": it may be re-enrolled.
                    f.matches(slot).unwrap_or(false)
                }
                Err(_) => false,
            },
            FactorKind::OathHmac => {
                let mut t = token.oath()?;
                let mut session = open_oath(&mut *t, prompt, rng)?;
                let mut probe = OathFactor::new(&mut session, &req.profile.seal_account);
                probe.matches(slot)?
            }
            FactorKind::Fido2HmacSecret => false,
        };
        if mine {
            return Err(Error::TokenAlreadyEnrolled { slot: slot.id });
        }
    }
    Ok(())
}

/// Adds a backup token to an existing vault: the holders open it with an enrolled token
/// (`old`, any factor), the new token (`new`) gets its own MFA device and a key slot sealed with
/// `req.factor`. The vault file is replaced atomically; on failure it and the old token are
/// untouched and the new token's new OATH accounts are removed. `req.key` is ignored.
pub async fn add_token(
    req: Request<'_>,
    label: &str,
    old: &mut dyn Token,
    new: &mut dyn Token,
    prompt: &mut dyn Prompt,
    rng: &dyn Random,
) -> Result<Report, Error> {
    let vault = vault::file::read(&req.profile.vault)?;
    let passphrase = super::Passphrases::ask(prompt, &vault)?;
    let mut prompt = AccessCodeOnce::new(prompt);
    let opened = open_with(
        &vault,
        &passphrase,
        old,
        &req.profile.seal_account,
        &mut prompt,
        rng,
    )
    .await?;
    // The new token's access code is its own.
    let mut prompt = AccessCodeOnce::new(prompt.inner);
    check_not_enrolled(&vault, new, &req, &mut prompt, rng)?;
    {
        let mut t = new.oath()?;
        let mut session = open_oath(&mut *t, &mut prompt, rng)?;
        check_token_accounts(&req, &session.list()?)?;
    }
    let device_name = match &req.mfa {
        MfaSource::Create { user } => format!("{user}-{label}"),
        MfaSource::Import { .. } => String::new(),
    };
    let result = match prepare(&req, new, &mut prompt, rng) {
        Err(e) => Err(e),
        Ok(mut prepared) => {
            let mut t = new.oath()?;
            let mut session = open_oath(&mut *t, &mut prompt, rng)?;
            let existing = session.list()?;
            let r = async {
                let serial =
                    program_token(&req, &mut session, &device_name, &mut prompt, rng).await?;
                let (v2, id) = match prepared.as_mut() {
                    Some(p) => opened.add_slot(p, label, &serial, rng)?,
                    None => {
                        let mut factor = OathFactor::new(&mut session, &req.profile.seal_account);
                        prompt.touch_start("sealing the new key slot with the new token");
                        let r = opened.add_slot(&mut factor, label, &serial, rng);
                        prompt.touch_end();
                        r?
                    }
                };
                vault::file::write(&req.profile.vault, &v2)?;
                prompt.note(&format!(
                    "Key slot {id} ({label:?}, {}) added for the new token, with MFA device {serial}.",
                    req.factor.kind().name()
                ));
                Ok::<String, Error>(serial)
            }
            .await;
            if r.is_err() {
                remove_new_accounts(&mut session, &existing, &req);
                note_orphan_key(&req, &mut prompt);
            }
            r
        }
    };
    let rec = audit::Record::TokenAdded {
        label: label.to_owned(),
        factor: req.factor.kind().name(),
        mfa_serial: result.as_ref().ok().cloned(),
    };
    record(&req, rec, audit::Outcome::of(&result), &mut prompt);
    let serial = result?;
    Ok(Report {
        user_arn: opened.payload.user_arn.clone(),
        access_key_id_masked: mask_key_id(&opened.payload.access_key_id),
        mfa_serial: serial,
        vault: req.profile.vault.display().to_string(),
        profile_added: false,
    })
}

async fn prove_key(
    req: &Request<'_>,
    key_id: &str,
    secret: &SecretString,
    prompt: &mut dyn Prompt,
) -> Result<sts::Identity, Error> {
    let signer = Signer {
        access_key_id: key_id,
        secret_access_key: secret,
        session_token: None,
    };
    // A new IAM key can take a few seconds to be accepted everywhere.
    let mut last = None;
    for attempt in 0..5 {
        match sts::get_caller_identity(&req.endpoint, &signer).await {
            Ok(id) => {
                prompt.note(&format!(
                    "The key {} works: it is {}.",
                    mask_key_id(key_id),
                    id.arn
                ));
                return Ok(id);
            }
            Err(aws::Error::BadKey { message })
                if attempt < 4 && matches!(req.key, KeySource::Create { .. }) =>
            {
                last = Some(message);
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(aws::Error::BadKey {
        message: last.unwrap_or_default(),
    }
    .into())
}

fn add_profile_if_missing(req: &Request<'_>, serial: &str) -> Result<bool, Error> {
    if config::load_all(req.paths)?.contains_key(&req.profile.name) {
        return Ok(false);
    }
    let mut p = req.profile.clone();
    p.mfa_serial = Some(serial.to_owned());
    config::add_profile(req.paths, &p).map_err(|source| Error::Write {
        path: req.paths.config.display().to_string(),
        source,
    })?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::piv::{PinCheck, PivCard, SlotKey};
    use crate::token::{self, Transport};

    /// A token whose PIV application is missing, has this firmware, or cannot be reached.
    enum Piv {
        Missing,
        Firmware((u8, u8, u8)),
        Unreachable,
    }

    struct Card((u8, u8, u8));

    impl PivCard for Card {
        fn serial(&mut self) -> Result<u32, token::Error> {
            Ok(1)
        }
        fn version(&mut self) -> Result<(u8, u8, u8), token::Error> {
            Ok(self.0)
        }
        fn pin_retries(&mut self) -> Result<u8, token::Error> {
            unreachable!()
        }
        fn verify_pin(&mut self, _pin: &[u8]) -> Result<PinCheck, token::Error> {
            unreachable!()
        }
        fn slot_key(&mut self, _slot: u8) -> Result<Option<SlotKey>, token::Error> {
            unreachable!()
        }
        fn authenticate_default(&mut self) -> Result<(), token::Error> {
            unreachable!()
        }
        fn generate_p256_always(&mut self, _slot: u8) -> Result<Vec<u8>, token::Error> {
            unreachable!()
        }
        fn attest(&mut self, _slot: u8) -> Result<Vec<u8>, token::Error> {
            unreachable!()
        }
        fn attestation_certificate(&mut self) -> Result<Vec<u8>, token::Error> {
            unreachable!()
        }
        fn ecdh(&mut self, _slot: u8, _peer: &[u8]) -> Result<Zeroizing<Vec<u8>>, token::Error> {
            unreachable!()
        }
    }

    impl Token for Piv {
        fn oath(&mut self) -> Result<Box<dyn Transport + '_>, token::Error> {
            unreachable!("choosing the factor does not open OATH")
        }
        fn piv(&mut self) -> Result<Box<dyn PivCard + '_>, token::Error> {
            match self {
                Self::Missing => Err(token::Error::AppletMissing { applet: "PIV" }),
                Self::Firmware(v) => Ok(Box::new(Card(*v))),
                Self::Unreachable => Err(token::Error::PcscUnavailable),
            }
        }
    }

    #[test]
    fn the_default_factor_is_piv_when_the_token_has_it() {
        let kind = |mut t: Piv| default_factor(&mut t).map_err(|e| e.to_string());
        assert_eq!(kind(Piv::Firmware((5, 7, 1))), Ok(FactorKind::PivEcdh));
        assert_eq!(kind(Piv::Firmware((5, 3, 0))), Ok(FactorKind::PivEcdh));
        assert_eq!(kind(Piv::Firmware((5, 2, 7))), Ok(FactorKind::OathHmac));
        assert_eq!(kind(Piv::Missing), Ok(FactorKind::OathHmac));
        assert!(kind(Piv::Unreachable).is_err());
        // The warning says what OATH lets the token holder do alone, and how to choose.
        let w = OATH_DEFAULT_WARNING;
        for needle in [
            "token holder alone",
            "copy of the vault",
            "one touch",
            "guess the passphrase offline",
            "--factor piv",
            "--factor fido2",
            "--factor oath",
        ] {
            assert!(w.contains(needle), "{needle}: {w}");
        }
    }

    #[test]
    fn kdf_settings_below_rfc_9106_are_weak() {
        let kdf = |m_kib, t, p| check_kdf(&KdfParams { m_kib, t, p });
        assert_eq!(kdf(64 * 1024, 3, 4), Ok(()));
        assert_eq!(kdf(256 * 1024, 3, 4), Ok(()));
        // RFC 9106's first option: more memory, one pass.
        assert_eq!(kdf(2 * 1024 * 1024, 1, 4), Ok(()));
        // Lanes split the work; fewer make no guess cheaper.
        assert_eq!(kdf(64 * 1024, 3, 1), Ok(()));
        assert!(kdf(1024, 1, 1).is_err());
        assert!(kdf(64 * 1024 - 1, 3, 4).is_err());
        assert!(kdf(64 * 1024, 2, 4).is_err());
        assert!(kdf(96 * 1024, 1, 4).is_err());
        assert!(check_kdf(&KdfParams::LIGHT).is_err());
        let e = kdf(1024, 1, 1).unwrap_err().to_string();
        assert!(e.contains("1024 KiB") && e.contains("RFC 9106"), "{e}");
    }
}
