//! `breakglass enroll PROFILE …`: the enrolment ceremony, and `--add-token` for a backup token.

use std::path::PathBuf;

use clap::Args;
use secrecy::SecretString;

use breakglass::aws::endpoint::{self, Service};
use breakglass::aws::Endpoint;
use breakglass::ceremony::{enroll, runtime, Prompt};
use breakglass::config::{self, Paths, Profile};
use breakglass::secure::SystemRandom;
use breakglass::token::oath::Seed;
use breakglass::token::Device;
use breakglass::vault::{FactorKind, KdfParams};

use super::error::CliError;
use super::term::{SecretStdin, TtyPrompt};
use super::{paths, FactorArg};
use breakglass::ceremony::transcript::{host_name, Head, Recorder, Transcript};

/// The administrator's credentials for the IAM calls of a ceremony: the standard variables.
fn admin_from_env() -> (Option<String>, Option<SecretString>) {
    (
        std::env::var("AWS_ACCESS_KEY_ID").ok(),
        std::env::var("AWS_SECRET_ACCESS_KEY")
            .ok()
            .map(SecretString::from),
    )
}

#[derive(Debug, Args)]
pub struct EnrollArgs {
    /// The profile to enrol (added to the config file when missing).
    profile: String,
    /// Read the access key from stdin: key id on the first line, secret on the second.
    #[arg(long, conflicts_with = "create_key")]
    import_key: bool,
    /// Create the access key with IAM (administrator credentials from AWS_ACCESS_KEY_ID /
    /// AWS_SECRET_ACCESS_KEY) for --user.
    #[arg(long, requires = "user")]
    create_key: bool,
    /// Use this existing virtual MFA device; its base32 seed is read from stdin (after the key).
    #[arg(long, value_name = "ARN", conflicts_with = "create_mfa")]
    mfa_serial: Option<String>,
    /// Create and enable a virtual MFA device with IAM for --user.
    #[arg(long, requires = "user")]
    create_mfa: bool,
    /// The IAM user name (with --create-key / --create-mfa).
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// Argon2id memory in MiB (default 64, RFC 9106; at most 1024, and memory × passes at
    /// most 4096).
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    kdf_memory: u32,
    /// Argon2id passes (1 to 16).
    #[arg(long, value_name = "N", default_value_t = 3)]
    kdf_passes: u32,
    /// Argon2id lanes (1 to 8).
    #[arg(long, value_name = "N", default_value_t = 4)]
    kdf_lanes: u32,
    /// Accept Argon2id settings below RFC 9106's recommendation (64 MiB, 3 passes) for a
    /// vault whose AWS endpoints are not all on this machine (announced, every time).
    #[arg(long)]
    force_weak_kdf: bool,
    /// STS/IAM endpoint (tests, sandbox); else the SDK's resolution.
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
    /// AWS region (default: the profile's, else us-east-1).
    #[arg(long)]
    region: Option<String>,
    /// Vault file (default: DATA/vaults/PROFILE.vault).
    #[arg(long, value_name = "PATH")]
    vault: Option<PathBuf>,
    /// Overwrite an existing vault and token accounts of the same names.
    #[arg(long)]
    force: bool,
    /// A custodian of the passphrase side, by name (repeat for each, in order; at most 16):
    /// the vault opens with --threshold of them, each typing their own passphrase, and a
    /// token. Without it the vault has one passphrase.
    #[arg(long = "custodian", value_name = "NAME", conflicts_with = "add_token")]
    custodians: Vec<String>,
    /// With --custodian: how many custodians must be present to open the vault (1 to their
    /// number; required with two custodians or more).
    #[arg(long, value_name = "M", requires = "custodians")]
    threshold: Option<u8>,
    /// Write a Markdown transcript of the ceremony for the witnesses (no secret in it).
    #[arg(long, value_name = "FILE")]
    transcript: Option<std::path::PathBuf>,
    /// The token to program: the reader whose name contains this text.
    #[arg(long, value_name = "NAME")]
    reader: Option<String>,
    /// Add a backup token to the profile's vault instead of enrolling: the new token is in
    /// --reader, an enrolled one in --from-reader. The new token gets its own MFA device
    /// (--create-mfa --user NAME, or --mfa-serial ARN with its seed on stdin).
    #[arg(long, conflicts_with_all = ["import_key", "create_key"], requires_all = ["reader", "from_reader"])]
    add_token: bool,
    /// With --add-token: the reader holding a token already enrolled in the vault.
    #[arg(long, value_name = "NAME")]
    from_reader: Option<String>,
    /// With --add-token: the new key slot's label.
    #[arg(long, default_value = "backup")]
    label: String,
    /// The seal factor of the new key slot: `piv` (recommended: a P-256 key generated on the
    /// token, PIN and touch for every use, PIN blocks after 3 tries, attested), `fido2`
    /// (hmac-secret of a FIDO2 key, PIN and touch, 8 tries) or `oath` (challenge-response,
    /// touch only; the OATH access code has no retry counter). Default: `piv` when the token
    /// has a usable PIV application (firmware 5.3+), else `oath`, with a warning.
    #[arg(long, value_enum)]
    factor: Option<FactorArg>,
    /// With --factor piv: the retired slot for the new key, 82 to 95 (hex).
    #[arg(long, value_name = "HEX", default_value = "82", value_parser = parse_piv_slot)]
    piv_slot: u8,
    /// The FIDO2 key (hidraw path, see `breakglass token list`) that goes with the token in
    /// --reader; default: BREAKGLASS_FIDO2_DEVICE, or the only key plugged in.
    #[arg(long, value_name = "PATH")]
    fido2_device: Option<String>,
    /// With --add-token: the FIDO2 key that goes with the enrolled token in --from-reader.
    #[arg(long, value_name = "PATH", requires = "add_token")]
    from_fido2_device: Option<String>,
    /// With --factor piv: replace a key already in --piv-slot. Vaults sealed with that key stop
    /// opening with this token.
    #[arg(long)]
    replace_piv_key: bool,
    /// With --factor piv: the attestation roots the token's attestation must chain to (a PEM
    /// bundle or DER file). For YubiKeys: Yubico's bundle from
    /// https://developers.yubico.com/PKI/yubico-ca-certs.txt; for the sandbox's soft token:
    /// the file `breakglass sandbox card --piv-root-out FILE` writes.
    #[arg(long, value_name = "FILE")]
    attestation_roots: Option<PathBuf>,
}

/// `--custodian` and `--threshold` as a checked set, before any I/O.
fn custodian_set(args: &EnrollArgs) -> Result<Option<enroll::NewCustodianSet>, CliError> {
    if args.custodians.is_empty() {
        return Ok(None);
    }
    let threshold = match (args.threshold, args.custodians.len()) {
        (Some(m), _) => m,
        (None, 1) => 1,
        (None, n) => {
            return Err(CliError::usage(
                format!("{n} custodians were named but not how many must be present"),
                format!(
                    "add --threshold M, M from 1 to {n} (for example --threshold 2 for any two)"
                ),
            ))
        }
    };
    let set = enroll::NewCustodianSet {
        names: args
            .custodians
            .iter()
            .map(|n| n.trim().to_owned())
            .collect(),
        threshold,
    };
    enroll::check_custodians(&set).map_err(|e| {
        CliError::usage(
            e.to_string(),
            "name each custodian once with --custodian NAME, and --threshold from 1 to their number",
        )
    })?;
    Ok(Some(set))
}

fn parse_piv_slot(s: &str) -> Result<u8, String> {
    let v = u8::from_str_radix(s.trim_start_matches("0x"), 16)
        .map_err(|_| format!("{s:?} is not a hex slot number such as 82"))?;
    if breakglass::token::piv::RETIRED_SLOTS.contains(&v) {
        Ok(v)
    } else {
        Err(format!(
            "{s} is not a retired key-management slot: use 82 to 95 (9a-9e hold other keys)"
        ))
    }
}

/// The attestation roots for the PIV factor, or the reason there are none. `defaulted`: PIV
/// was chosen because the token has it, not by `--factor piv`.
fn attestation_roots(
    args: &EnrollArgs,
    defaulted: bool,
) -> Result<Vec<x509_cert::Certificate>, CliError> {
    let Some(path) = &args.attestation_roots else {
        let (what, or) = if defaulted {
            (
                "this token has a PIV application, so the vault is sealed with the PIV factor by default; it verifies that the key was generated on the token, and needs the attestation roots to check it against",
                ", or --factor oath to seal with OATH instead (weaker: the token holder alone, with a copy of the vault and one touch, can guess the passphrase offline)",
            )
        } else {
            (
                "--factor piv verifies that the key was generated on the token, and needs the attestation roots to check it against",
                "",
            )
        };
        return Err(CliError::usage(
            what,
            format!("pass --attestation-roots FILE: Yubico's roots from https://developers.yubico.com/PKI/yubico-ca-certs.txt (see docs/token.md), or for the sandbox's soft token the file from `breakglass sandbox card --piv-root-out FILE`{or}"),
        ));
    };
    Ok(breakglass::vault::attest::load_roots(path)?)
}

/// The attestation roots, read before any I/O when `--factor piv` asks for them.
fn early_roots(args: &EnrollArgs) -> Result<Option<Vec<x509_cert::Certificate>>, CliError> {
    match args.factor {
        Some(FactorArg::Piv) => Ok(Some(attestation_roots(args, false)?)),
        _ => Ok(None),
    }
}

/// The factor of the new slot: `--factor`, else [`enroll::default_factor`] of `card` (PIV
/// when it has it; OATH with [`enroll::OATH_DEFAULT_WARNING`] said). With the roots it needs.
fn choose_factor(
    args: &EnrollArgs,
    early: Option<Vec<x509_cert::Certificate>>,
    card: &mut Device,
    prompt: &mut dyn Prompt,
) -> Result<(FactorArg, Vec<x509_cert::Certificate>), CliError> {
    let chosen = match args.factor {
        Some(f) => f,
        None => match enroll::default_factor(card)? {
            FactorKind::PivEcdh => FactorArg::Piv,
            _ => {
                prompt.note(enroll::OATH_DEFAULT_WARNING);
                FactorArg::Oath
            }
        },
    };
    let roots = match (chosen, early) {
        (_, Some(roots)) => roots,
        (FactorArg::Piv, None) => attestation_roots(args, true)?,
        _ => Vec::new(),
    };
    Ok((chosen, roots))
}

fn factor<'r>(
    args: &EnrollArgs,
    chosen: FactorArg,
    roots: &'r [x509_cert::Certificate],
) -> enroll::Factor<'r> {
    match chosen {
        FactorArg::Piv => enroll::Factor::Piv {
            slot: args.piv_slot,
            roots,
            replace: args.replace_piv_key,
        },
        FactorArg::Fido2 => enroll::Factor::Fido2,
        FactorArg::Oath => enroll::Factor::Oath,
    }
}

/// The endpoint policy for the enrolment's STS and IAM calls, before anything is asked or
/// touched; and whether they all go to this machine (the sandbox: then light Argon2id
/// settings are accepted without `--force-weak-kdf`).
fn check_endpoints(endpoint: &Endpoint) -> Result<bool, CliError> {
    let mut sandbox = true;
    for service in [Service::Sts, Service::Iam] {
        let resolved = endpoint::resolve(endpoint, service);
        resolved.check(service)?;
        sandbox &= endpoint::is_loopback(&resolved.url);
    }
    Ok(sandbox)
}

/// Weak Argon2id settings are refused outside the sandbox unless `--force-weak-kdf`; then
/// returns the warning to say.
fn check_kdf(
    args: &EnrollArgs,
    kdf: &KdfParams,
    sandbox: bool,
) -> Result<Option<String>, CliError> {
    match enroll::check_kdf(kdf) {
        Ok(()) => Ok(None),
        Err(_) if sandbox => Ok(None),
        Err(weak) if args.force_weak_kdf => Ok(Some(format!(
            "WARNING: {weak}. Accepted because of --force-weak-kdf: a strong passphrase matters all the more."
        ))),
        Err(weak) => Err(weak.into()),
    }
}

fn key_source(args: &EnrollArgs, stdin: &mut SecretStdin) -> Result<enroll::KeySource, CliError> {
    if args.import_key {
        let id = stdin.line("access key id")?.trim().to_owned();
        let secret = stdin.line("secret access key")?;
        return Ok(enroll::KeySource::Import {
            access_key_id: id,
            secret_access_key: SecretString::from(secret.trim().to_owned()),
        });
    }
    match (&args.user, args.create_key) {
        (Some(user), true) => Ok(enroll::KeySource::Create { user: user.clone() }),
        _ => Err(CliError::usage(
            "no access key source",
            "pass --import-key (key id and secret on stdin) or --create-key --user NAME",
        )),
    }
}

fn mfa_source(args: &EnrollArgs, stdin: &mut SecretStdin) -> Result<enroll::MfaSource, CliError> {
    if let Some(serial) = &args.mfa_serial {
        let seed = Seed::from_base32(&stdin.line("MFA base32 seed")?)?;
        return Ok(enroll::MfaSource::Import {
            serial: serial.clone(),
            seed,
        });
    }
    match (&args.user, args.create_mfa) {
        (Some(user), true) => Ok(enroll::MfaSource::Create { user: user.clone() }),
        _ => Err(CliError::usage(
            "no MFA device source",
            "pass --mfa-serial ARN (seed on stdin) or --create-mfa --user NAME",
        )),
    }
}

pub fn enroll_cmd(args: EnrollArgs) -> Result<(), CliError> {
    let kdf = KdfParams {
        m_kib: args.kdf_memory.saturating_mul(1024),
        t: args.kdf_passes,
        p: args.kdf_lanes,
    };
    kdf.check()
        .map_err(|e| CliError::usage(e.to_string(), "see `breakglass enroll --help`"))?;
    config::check_profile_name(&args.profile).map_err(|m| {
        CliError::usage(
            m.to_string(),
            "choose a profile name such as prod or prod-eu",
        )
    })?;
    if let Some(url) = &args.endpoint {
        config::check_endpoint(url).map_err(|m| {
            CliError::usage(
                m.to_string(),
                "pass an https:// endpoint, or a loopback http:// one for tests",
            )
        })?;
    }
    if (args.create_key || args.create_mfa)
        && (std::env::var_os("AWS_ACCESS_KEY_ID").is_none()
            || std::env::var_os("AWS_SECRET_ACCESS_KEY").is_none())
    {
        return Err(CliError::usage(
            "--create-key and --create-mfa call IAM and need the administrator's credentials",
            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (the ceremony operator's own key) and run again",
        ));
    }
    super::check_transcript_path(args.transcript.as_deref())?;
    let custodians = custodian_set(&args)?;
    let paths = paths()?;
    let mut profile = match config::load(&paths, &args.profile) {
        Ok(p) => p,
        Err(config::Error::NoProfile { .. }) => Profile::defaults(&args.profile, &paths),
        Err(e) => return Err(e.into()),
    };
    if let Some(v) = &args.vault {
        profile.vault = v.clone();
    }
    if args.endpoint.is_some() {
        profile.sts_endpoint = args.endpoint.clone();
    }
    if let Some(region) = &args.region {
        profile.region = region.clone();
    }
    let endpoint = Endpoint::of(&profile);
    let sandbox = check_endpoints(&endpoint)?;
    let early = early_roots(&args)?;
    let mut stdin = SecretStdin::new();
    if args.add_token {
        return add_token_cmd(&args, &paths, &profile, early, &mut stdin);
    }
    let weak_kdf = check_kdf(&args, &kdf, sandbox)?;
    let key = key_source(&args, &mut stdin)?;
    let mfa = mfa_source(&args, &mut stdin)?;
    let (admin_id, admin_secret) = admin_from_env();
    let mut prompt = TtyPrompt::open()?;
    if let Some(warning) = &weak_kdf {
        prompt.note(warning);
    }
    let mut card = Device::open(
        args.reader.as_deref().or(profile.reader.as_deref()),
        args.fido2_device.clone(),
    )?;
    let (chosen, roots) = choose_factor(&args, early, &mut card, &mut prompt)?;
    let req = enroll::Request {
        profile: &profile,
        factor: factor(&args, chosen, &roots),
        paths: &paths,
        kdf,
        custodians,
        key,
        mfa,
        admin: admin_id.as_deref().zip(admin_secret.as_ref()),
        endpoint,
        force: args.force,
        now: super::clock(),
    };
    let head_before = Head::of(&paths.audit_log());
    let started = super::clock().now();
    let mut recorder = Recorder::new(&mut prompt, super::clock());
    let result = runtime()?.block_on(enroll::enroll(
        req,
        &mut card,
        &mut recorder,
        &SystemRandom::new(),
    ));
    let (steps, people) = (recorder.steps, recorder.people);
    if let Some(path) = &args.transcript {
        let mut t = enrol_transcript(
            "Enrolment",
            &profile,
            &paths,
            (started, head_before),
            steps,
            result.as_ref().map(|r| {
                (
                    r.user_arn.as_str(),
                    r.access_key_id_masked.as_str(),
                    r.mfa_serial.as_str(),
                )
            }),
        );
        t.people = people;
        super::save_transcript(path, &t, &mut prompt);
    }
    let report = result?;
    prompt.say(&format!(
        "Enrolled {}: key {}, MFA {}, vault {}{}.",
        report.user_arn,
        report.access_key_id_masked,
        report.mfa_serial,
        report.vault,
        if report.profile_added {
            ", profile added to the config"
        } else {
            ""
        }
    ));
    Ok(())
}

/// The transcript of an enrolment (or of a token added): the steps as the ceremony told
/// them (token serials, attestation, the root's SHA-256), and what it made.
fn enrol_transcript(
    ceremony: &str,
    profile: &Profile,
    paths: &Paths,
    (started, head_before): (u64, Head),
    steps: Vec<(u64, String)>,
    made: Result<(&str, &str, &str), &breakglass::ceremony::Error>,
) -> Transcript {
    let mut facts = vec![("vault".to_owned(), profile.vault.display().to_string())];
    if let Ok((user, key, mfa)) = made {
        facts.push(("IAM user".into(), user.to_owned()));
        facts.push(("access key".into(), key.to_owned()));
        facts.push(("MFA device".into(), mfa.to_owned()));
    }
    Transcript {
        ceremony: ceremony.to_owned(),
        profile: profile.name.clone(),
        started,
        ended: super::clock().now(),
        people: Vec::new(),
        reason: "enrolment".into(),
        host: host_name(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        facts,
        steps,
        result: match made {
            Ok(_) => "completed".into(),
            Err(e) => format!("failed: {e}"),
        },
        head_before,
        head_after: Head::of(&paths.audit_log()),
    }
}

fn add_token_cmd(
    args: &EnrollArgs,
    paths: &Paths,
    profile: &Profile,
    early: Option<Vec<x509_cert::Certificate>>,
    stdin: &mut SecretStdin,
) -> Result<(), CliError> {
    config::load(paths, &profile.name)?;
    let mfa = mfa_source(args, stdin)?;
    let (admin_id, admin_secret) = admin_from_env();
    let mut prompt = TtyPrompt::open()?;
    let mut old_card = Device::open(args.from_reader.as_deref(), args.from_fido2_device.clone())?;
    let mut new_card = Device::open(args.reader.as_deref(), args.fido2_device.clone())?;
    if args.factor == Some(FactorArg::Fido2)
        && args.fido2_device.is_some()
        && args.fido2_device == args.from_fido2_device
    {
        return Err(CliError::usage(
            "--fido2-device and --from-fido2-device name the same FIDO2 key",
            "plug in the new FIDO2 key and name it with --fido2-device (see `breakglass token list`)",
        ));
    }
    if old_card.reader() == new_card.reader() {
        return Err(CliError::usage(
            "--reader and --from-reader name the same reader",
            "put the enrolled token and the new token in two readers and name each",
        ));
    }
    let (chosen, roots) = choose_factor(args, early, &mut new_card, &mut prompt)?;
    let req = enroll::Request {
        profile,
        factor: factor(args, chosen, &roots),
        paths,
        kdf: KdfParams::DEFAULT,
        custodians: None,
        key: enroll::KeySource::Create {
            user: String::new(),
        },
        mfa,
        admin: admin_id.as_deref().zip(admin_secret.as_ref()),
        endpoint: Endpoint::of(profile),
        force: args.force,
        now: super::clock(),
    };
    let head_before = Head::of(&paths.audit_log());
    let started = super::clock().now();
    let mut recorder = Recorder::new(&mut prompt, super::clock());
    let result = runtime()?.block_on(enroll::add_token(
        req,
        &args.label,
        &mut old_card,
        &mut new_card,
        &mut recorder,
        &SystemRandom::new(),
    ));
    let steps = recorder.steps;
    if let Some(path) = &args.transcript {
        let t = enrol_transcript(
            "Enrolment of another token",
            profile,
            paths,
            (started, head_before),
            steps,
            result.as_ref().map(|r| {
                (
                    r.user_arn.as_str(),
                    r.access_key_id_masked.as_str(),
                    r.mfa_serial.as_str(),
                )
            }),
        );
        super::save_transcript(path, &t, &mut prompt);
    }
    let report = result?;
    prompt.say(&format!(
        "Token added to {} for {}: slot {:?} with MFA device {}.",
        report.vault, report.user_arn, args.label, report.mfa_serial
    ));
    Ok(())
}
