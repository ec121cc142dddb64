//! `breakglass demo`: the whole activation in a temporary home, with the in-process soft token
//! and the embedded STS/IAM emulator. Scripted answers by default (printed as typed), or two
//! real people with `--interactive`.

use std::net::SocketAddr;

use clap::Args;
use secrecy::SecretString;

use breakglass::aws::{self, sts, Endpoint, Signer};
use breakglass::ceremony::console::{make_url, SigninRequest};
use breakglass::ceremony::names::printable;
use breakglass::ceremony::rekey::{self, NoOtherTokens};
use breakglass::ceremony::transcript::{host_name, Head, Recorder, Transcript};
use breakglass::ceremony::{self, drill, enroll, mfa, rotate, runtime, unlock, Prompt};
use breakglass::clock::{Clock, SkewedClock, SystemClock};
use breakglass::config::{Paths, Profile};
use breakglass::sandbox::sts::Sts;
use breakglass::sandbox::Scripted;
use breakglass::secure::SystemRandom;
use breakglass::token::oath::Session;
use breakglass::token::soft::SoftCard;
use breakglass::vault::KdfParams;

use super::error::{exit, CliError};
use super::term::{open_browser, TtyPrompt};
use super::FactorArg;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// What to show: the activation (default), or `ceremonies`: the security team's key
    /// rotation, with its transcript, and the old key's retirement on days 100 and 110.
    #[arg(value_enum)]
    show: Option<Show>,
    /// Let two real people type the names and the passphrase at the prompts.
    #[arg(long)]
    interactive: bool,
    /// Open the sandbox console's sign-in URL with this browser command at the end (by
    /// default the demo fetches it itself, as a browser would, and prints the page).
    #[arg(long, value_name = "CMD")]
    browser: Option<String>,
    /// The seal factor of the demo vault: the PIV key (PIN and touch), FIDO2 hmac-secret (PIN
    /// and touch) or the OATH challenge-response credential (touch).
    #[arg(long, value_enum, default_value_t = FactorArg::Piv)]
    factor: FactorArg,
}

/// What `demo` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Show {
    /// The activation, hand-outs, refusals, the console and the audit log.
    Activation,
    /// Key ceremonies: enrolment, a rotation and its retirement steps, then custodians (a
    /// 2-of-3 rekey and an unlock by two of the three), then a drill of 50 accounts.
    Ceremonies,
}

/// The soft token's PIV and FIDO2 PIN (a new YubiKey's default PIV PIN).
const PIN: &str = "123456";

const PASSPHRASE: &str = "correct horse battery staple";

/// The passphrases of the demo's custodians Carol and Dan.
const CAROL: &str = "carol's own passphrase";
const DAN: &str = "dan's own passphrase";

fn step(n: u32, text: &str) -> Result<(), CliError> {
    outln!("\n{n}. {text}")
}

fn fail(what: String) -> CliError {
    CliError::new(
        what,
        "report this: the demo runs without any outside service",
        exit::FAILURE,
    )
}

pub fn demo_cmd(args: DemoArgs) -> Result<(), CliError> {
    let home =
        tempfile::tempdir().map_err(|e| fail(format!("cannot make a temporary home: {e}")))?;
    let paths = Paths {
        config: home.path().join("config/breakglass/config.toml"),
        data: home.path().join("data/breakglass"),
        state: home.path().join("state/breakglass"),
        runtime: home.path().join("run/breakglass"),
    };
    let emulator = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0)))
        .map_err(|e| fail(format!("cannot start the STS emulator: {e}")))?;
    introduce(&home, &emulator, args.factor)?;
    let mut demo = Demo::new(&paths, &emulator)?;
    if args.show == Some(Show::Ceremonies) {
        return ceremonies(&mut demo, &args, &emulator);
    }
    // Enrolment, then the activation with a typo first: the token counts the try.
    let script = Scripted::new("Alice", "Bob", PASSPHRASE)
        .passphrases(&[PASSPHRASE, PASSPHRASE, "Tr0ub4dor&3 wrong guess"])
        .pins(&[PIN, "123465", PIN]);
    let mut prompt = holders(args.interactive, script)?;
    let prompt: &mut dyn Prompt = &mut *prompt;
    demo.enrol(args.factor, prompt)?;
    let activation = demo.activate(prompt)?;
    demo.use_session(&activation.session)?;
    demo.wrong_passphrase(prompt)?;
    demo.reused_code(prompt)?;
    demo.console(&activation, args.browser.as_deref())?;
    demo.audit_log()?;
    let counts = emulator.counts();
    outln!(
        "\nDone. The emulator saw {} GetSessionToken calls and refused {} MFA codes. The temporary home is removed.",
        counts.get_session_token, counts.rejected_mfa
    )?;
    Ok(())
}

/// The demo's two holders: two real people at the terminal (`--interactive`), or `script`,
/// narrated on standard output as they type.
fn holders(interactive: bool, script: Scripted) -> Result<Box<dyn Prompt>, CliError> {
    if interactive {
        return Ok(TtyPrompt::boxed()?);
    }
    // The narration's sink cannot fail; a closed stdout stops the demo at its next line.
    Ok(Box::new(script.narrated(|line| {
        let _ = outln!("  {line}");
    })))
}

/// `demo ceremonies`: enrolment, a rotation with its transcript, the old key deactivated on
/// day 100 and deleted on day 110 (the demo's clock and the emulator's moved together).
fn ceremonies(demo: &mut Demo<'_>, args: &DemoArgs, emulator: &Sts) -> Result<(), CliError> {
    let mut prompt = holders(
        args.interactive,
        Scripted::new("Alice", "Bob", PASSPHRASE).pins(&[PIN]),
    )?;
    let prompt: &mut dyn Prompt = &mut *prompt;
    demo.enrol(args.factor, prompt)?;
    let keys = |e: &Sts| {
        e.access_keys("breakglass")
            .into_iter()
            .map(|(id, status, _)| format!("{} {status}", breakglass::secure::mask_key_id(&id)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    outln!("  IAM keys of the user: {}", keys(emulator))?;
    let day = breakglass::config::RotationPolicy::DAY;
    for (n, title, mode, skip) in [
        (
            2,
            "Rotation on day 90: breakglass rotate demo --reason \"90-day rotation\" --transcript FILE",
            rotate::Mode::Rotate { now: false },
            90 * day,
        ),
        (
            3,
            "Day 100: breakglass rotate demo --finish (the old key is deactivated)",
            rotate::Mode::Finish { now: false },
            10 * day,
        ),
        (
            4,
            "Day 110: breakglass rotate demo --finish (the old key is deleted)",
            rotate::Mode::Finish { now: false },
            10 * day,
        ),
    ] {
        demo.skip(skip);
        step(n, title)?;
        let transcript = demo.rotate(mode, prompt)?;
        outln!("  IAM keys of the user: {}", keys(emulator))?;
        if n == 2 {
            outln!("\n  The transcript for the witnesses:\n")?;
            for line in transcript.lines() {
                outln!("    {line}")?;
            }
        }
    }
    // Custodians: the one passphrase becomes Alice's share of 2 of 3, Carol and Dan choose
    // theirs; then Carol and Dan open the vault without Alice.
    step(
        5,
        "Custodians: breakglass rekey demo --upgrade --custodian Alice --custodian Carol --custodian Dan --threshold 2",
    )?;
    let mut prompt = holders(
        args.interactive,
        Scripted::new("Alice", "Bob", PASSPHRASE)
            .custodians(&[("Carol", CAROL), ("Dan", DAN)])
            .pins(&[PIN]),
    )?;
    let prompt: &mut dyn Prompt = &mut *prompt;
    let report = demo.rekey(
        rekey::What::Custodians {
            names: vec!["Alice".into(), "Carol".into(), "Dan".into()],
            threshold: 2,
            upgrade: true,
            remove: Vec::new(),
        },
        prompt,
    )?;
    for c in &report.changed {
        outln!("  changed:   {c}")?;
    }
    for u in &report.unchanged {
        outln!("  unchanged: {u}")?;
    }
    demo.skip(60);
    step(
        6,
        "Alice is on holiday: Carol and Dan (two of the three custodians) and Bob with the token unlock",
    )?;
    let activation = demo
        .unlock(prompt)
        .map_err(|e| fail(format!("the unlock with two custodians failed: {e}")))?;
    outln!(
        "  Unlocked by custodians {} with token holder {}: temporary key {}",
        activation.custodians.join(" and "),
        activation.token_holder,
        breakglass::secure::mask_key_id(&activation.session.access_key_id)
    )?;
    demo.skip(60);
    step(
        7,
        "The quarterly drill: breakglass drill demo --organization (50 accounts, three of them seeded with faults)",
    )?;
    let report = demo.drill(prompt)?;
    for line in report.markdown().lines() {
        outln!("    {line}")?;
    }
    step(
        8,
        "The audit log's rotation, rekey, activation and drill records",
    )?;
    let log = std::fs::read_to_string(demo.paths.audit_log()).unwrap_or_default();
    for line in log.lines().filter(|l| {
        l.contains("\"key rotation\"")
            || l.contains("\"rekey\"")
            || l.contains("\"custodians\"")
            || l.contains("\"event\":\"drill\"")
    }) {
        outln!("  {line}")?;
    }
    outln!("\nDone. The temporary home is removed.")?;
    Ok(())
}

/// What runs where, before the first step.
fn introduce(home: &tempfile::TempDir, emulator: &Sts, factor: FactorArg) -> Result<(), CliError> {
    outln!(
        "breakglass demo: everything below runs on this machine, in {}",
        home.path().display()
    )?;
    outln!(
        "  STS/IAM emulator (strict: checks signatures and MFA codes, refuses reused codes): {}",
        emulator.endpoint()
    )?;
    let factor_name = match factor {
        FactorArg::Piv => "its PIV application seals the vault (a P-256 key generated on it, PIN and touch for every use, attested)",
        FactorArg::Fido2 => "its FIDO2 application seals the vault (hmac-secret with PIN and touch)",
        FactorArg::Oath => "its OATH challenge-response credential seals the vault (touch)",
    };
    outln!("  soft token: an in-process software YubiKey; {factor_name}; its OATH application gives the MFA codes; PIN {PIN}")?;
    outln!(
        "  Argon2id uses LIGHT demo parameters (m={} KiB, t={}, p={}) so this takes seconds; real vaults use 64 MiB, t=3, p=4.",
        KdfParams::LIGHT.m_kib,
        KdfParams::LIGHT.t,
        KdfParams::LIGHT.p
    )
}

/// Enrolment sent the codes of the current and the next window; a new code must wait for the
/// window after. The demo moves its clock (and the emulator's) this far on instead.
const SKIP_SECS: u64 = 60;

/// The demo's world: the temporary home, the emulator, the profile and the soft token.
struct Demo<'a> {
    paths: &'a Paths,
    emulator: &'a Sts,
    profile: Profile,
    endpoint: Endpoint,
    card: SoftCard,
    rt: tokio::runtime::Runtime,
    /// The clock after enrolment: a minute ahead, like the emulator's.
    clock: SkewedClock,
}

impl<'a> Demo<'a> {
    fn new(paths: &'a Paths, emulator: &'a Sts) -> Result<Self, CliError> {
        let mut profile = Profile::defaults("demo", paths);
        profile.sts_endpoint = Some(emulator.endpoint());
        let endpoint = Endpoint::of(&profile);
        let card = SoftCard::new(Box::new(|| true))
            .with_fido2(breakglass::token::fido2::soft::SoftFido2::with_pin(PIN));
        Ok(Self {
            paths,
            emulator,
            profile,
            endpoint,
            card,
            rt: runtime()?,
            clock: SkewedClock { ahead_secs: 0 },
        })
    }

    /// Step 1: the enrolment ceremony, with a new IAM user, key and MFA device.
    fn enrol(&mut self, factor: FactorArg, prompt: &mut dyn Prompt) -> Result<(), CliError> {
        let user_arn = self.emulator.create_user("breakglass");
        let (admin_id, admin_secret) = self.emulator.admin_key();
        let roots = match factor {
            FactorArg::Piv => {
                vec![
                    x509_cert::der::Decode::from_der(&self.card.piv_attestation_root()).map_err(
                        |e| {
                            fail(format!(
                                "the soft token's attestation root does not parse: {e}"
                            ))
                        },
                    )?,
                ]
            }
            _ => Vec::new(),
        };
        let factor = match factor {
            FactorArg::Piv => enroll::Factor::Piv {
                slot: 0x82,
                roots: &roots,
                replace: false,
            },
            FactorArg::Fido2 => enroll::Factor::Fido2,
            FactorArg::Oath => enroll::Factor::Oath,
        };
        step(
            1,
            &format!(
                "Enrolment ceremony for IAM user {user_arn} (the security team, with both holders)"
            ),
        )?;
        let req = enroll::Request {
            profile: &self.profile,
            factor,
            paths: self.paths,
            kdf: KdfParams::LIGHT,
            custodians: None,
            key: enroll::KeySource::Create {
                user: "breakglass".into(),
            },
            mfa: enroll::MfaSource::Create {
                user: "breakglass".into(),
            },
            admin: Some((&admin_id, &admin_secret)),
            endpoint: self.endpoint.clone(),
            force: false,
            now: &SystemClock,
        };
        let report = self.rt.block_on(enroll::enroll(
            req,
            &mut self.card,
            prompt,
            &SystemRandom::new(),
        ))?;
        outln!(
            "  Enrolled: key {}, MFA device {}, vault {}",
            report.access_key_id_masked,
            report.mfa_serial,
            report.vault
        )?;
        self.emulator.set_clock_offset(SKIP_SECS as i64);
        self.clock = SkewedClock {
            ahead_secs: SKIP_SECS,
        };
        outln!("\n   (enrolment used the current and next MFA windows; the demo skips its clock a minute ahead instead of waiting)")?;
        Ok(())
    }

    /// Moves the demo's clock and the emulator's `secs` further ahead.
    fn skip(&mut self, secs: u64) {
        self.clock.ahead_secs += secs;
        self.endpoint.signing_ahead_secs = self.clock.ahead_secs;
        self.emulator
            .set_clock_offset(i64::try_from(self.clock.ahead_secs).unwrap_or(i64::MAX));
    }

    /// `rotate demo` (or `--finish`) with the demo's clock; returns the transcript.
    fn rotate(&mut self, mode: rotate::Mode, prompt: &mut dyn Prompt) -> Result<String, CliError> {
        let req = rotate::Request {
            activation: unlock::Request {
                profile: &self.profile,
                paths: self.paths,
                reason: Some("90-day rotation"),
                ticket: None,
                requested_by: "breakglass rotate",
                endpoint: self.endpoint.clone(),
                now: &self.clock,
                rng: &SystemRandom::new(),
            },
            mode,
            propagation_timeout: std::time::Duration::from_secs(30),
        };
        let head_before = Head::of(&self.paths.audit_log());
        let started = self.clock.now();
        let mut recorder = Recorder::new(prompt, &self.clock);
        let report = self
            .rt
            .block_on(rotate::rotate(&req, &mut self.card, &mut recorder))?;
        let t = Transcript {
            ceremony: "Key rotation".into(),
            profile: self.profile.name.clone(),
            started,
            ended: self.clock.now(),
            people: recorder.people,
            reason: "90-day rotation".into(),
            host: host_name(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            facts: vec![
                ("vault".into(), report.vault.clone()),
                (
                    "key at the end".into(),
                    breakglass::secure::mask_key_id(&report.vault_key),
                ),
                ("vault generation".into(), report.generation.to_string()),
            ],
            steps: recorder.steps,
            result: "completed".into(),
            head_before,
            head_after: Head::of(&self.paths.audit_log()),
        };
        Ok(t.to_markdown())
    }

    /// `rekey demo` with the demo's clock and token (one slot: no other token is needed).
    fn rekey(
        &mut self,
        what: rekey::What,
        prompt: &mut dyn Prompt,
    ) -> Result<rekey::Report, CliError> {
        let req = rekey::Request {
            profile: &self.profile,
            paths: self.paths,
            reason: Some("custodians for the holidays"),
            ticket: None,
            what,
            now: &self.clock,
            rng: &SystemRandom::new(),
        };
        Ok(self.rt.block_on(rekey::rekey(
            &req,
            &mut self.card,
            &mut NoOtherTokens,
            prompt,
        ))?)
    }

    /// `drill demo --organization` with the demo's clock, over 50 member accounts of which
    /// three have drifted (a deleted role, a trust policy without MFA, one trusting the whole
    /// account).
    fn drill(&mut self, prompt: &mut dyn Prompt) -> Result<drill::Report, CliError> {
        use breakglass::sandbox::sts::Drift;
        let user = self.emulator.create_user("breakglass");
        let ids = self
            .emulator
            .create_organization(50, "BreakGlass", std::slice::from_ref(&user));
        for (i, drift) in [
            (7, Drift::NoRole),
            (21, Drift::NoMfaCondition),
            (42, Drift::TrustsAccount),
        ] {
            self.emulator.drift(&ids[i - 1], "BreakGlass", drift);
        }
        let req = drill::Request {
            activation: unlock::Request {
                profile: &self.profile,
                paths: self.paths,
                reason: Some(drill::DEFAULT_REASON),
                ticket: None,
                requested_by: "breakglass drill",
                endpoint: self.endpoint.clone(),
                now: &self.clock,
                rng: &SystemRandom::new(),
            },
            accounts: drill::Accounts::Organization,
            role: "BreakGlass".into(),
            role_overrides: Default::default(),
            other_users: Vec::new(),
            concurrency: drill::DEFAULT_CONCURRENCY,
            max_session_secs: 3600,
            account_budget: std::time::Duration::from_secs(60),
            audit_keys: false,
            rule: None,
            role_policies: Vec::new(),
        };
        Ok(self.rt.block_on(drill::drill(
            &req,
            &mut self.card,
            prompt,
            &mut drill::Quiet,
            std::future::pending(),
        ))?)
    }

    /// `unlock demo --reason "IdP outage drill"` with the demo's clock.
    fn unlock(&mut self, prompt: &mut dyn Prompt) -> Result<unlock::Activation, ceremony::Error> {
        let req = unlock::Request {
            profile: &self.profile,
            paths: self.paths,
            reason: Some("IdP outage drill"),
            ticket: None,
            requested_by: "breakglass unlock",
            endpoint: self.endpoint.clone(),
            now: &self.clock,
            rng: &SystemRandom::new(),
        };
        self.rt
            .block_on(unlock::unlock(&req, &mut self.card, prompt))
    }

    /// Step 2: the two-person activation.
    fn activate(&mut self, prompt: &mut dyn Prompt) -> Result<unlock::Activation, CliError> {
        step(
            2,
            "Activation: breakglass unlock demo --reason \"IdP outage drill\"",
        )?;
        let activation = self.unlock(prompt)?;
        let s = &activation.session;
        outln!(
            "  Session for {} granted to {} and {}: temporary key {}, expires {}",
            activation.user_arn,
            printable(&activation.password_holder),
            printable(&activation.token_holder),
            s.access_key_id,
            breakglass::audit::rfc3339(s.expiration)
        )?;
        Ok(activation)
    }

    /// Step 3: the session works.
    fn use_session(&self, s: &sts::Session) -> Result<(), CliError> {
        step(3, "Using the session: sts get-caller-identity")?;
        let signer = Signer {
            access_key_id: &s.access_key_id,
            secret_access_key: &s.secret_access_key,
            session_token: Some(&s.session_token),
        };
        let id = self
            .rt
            .block_on(sts::get_caller_identity(&self.endpoint, &signer))
            .map_err(CliError::from)?;
        outln!("  Account {}, Arn {}", id.account, id.arn)?;
        Ok(())
    }

    /// Step 4: the scripted holders mistype the passphrase.
    fn wrong_passphrase(&mut self, prompt: &mut dyn Prompt) -> Result<(), CliError> {
        step(4, "A wrong passphrase fails cleanly (and is audited)")?;
        match self.unlock(prompt) {
            Err(e) => outln!("  refused: {e}")?,
            Ok(_) => return Err(fail("the wrong passphrase opened the vault".into())),
        }
        Ok(())
    }

    /// Step 5: the code of a window already used, sent again.
    fn reused_code(&mut self, prompt: &mut dyn Prompt) -> Result<(), CliError> {
        step(5, "A reused MFA code is refused by STS, as AWS does")?;
        let reused = self.reuse_attempt(prompt)?;
        outln!("  refused: {reused}")?;
        Ok(())
    }

    /// Step 6: a console sign-in URL, opened as a browser would (or with `browser`).
    fn console(
        &self,
        activation: &unlock::Activation,
        browser: Option<&str>,
    ) -> Result<(), CliError> {
        step(
            6,
            "The console: breakglass console demo (AssumeRole naming both holders, then the sign-in emulator)",
        )?;
        let role_arn = self.emulator.create_role("BreakGlass", true);
        let federation = self.emulator.federation_endpoint();
        let destination =
            breakglass::aws::console::console_home(breakglass::aws::console::Partition::Aws, None);
        let req = SigninRequest {
            profile: &self.profile,
            paths: self.paths,
            role_arn: &role_arn,
            federation: &federation,
            destination: &destination,
            clock: &self.clock,
            warn: &|w| eprintln!("  {w}"),
        };
        let holders = (
            activation.password_holder.as_str(),
            activation.token_holder.as_str(),
        );
        let signed = make_url(&req, &activation.session, holders)?;
        outln!(
            "  Sign-in URL made for {} (single use, valid until {}; not printed: it is a secret).",
            signed.assumed_role_arn,
            breakglass::audit::rfc3339(signed.link_expires)
        )?;
        match browser {
            Some(cmd) => {
                open_browser(Some(cmd), &signed.url, "demo")?;
                outln!("  Opened with {cmd}; the page shows the role and both holders' names.")?;
            }
            None => {
                let page = open_like_a_browser(&signed.url).map_err(fail)?;
                outln!(
                    "  Opened it as a browser would (login, then the redirect); the console page says:"
                )?;
                for (label, id) in [
                    ("account", "account"),
                    ("role", "role-arn"),
                    ("source identity", "source-identity"),
                    ("console session ends", "expires"),
                ] {
                    outln!("    {label:<21} {}", element_text(&page, id).unwrap_or("?"))?;
                }
            }
        }
        Ok(())
    }

    /// Step 7: the audit log, printed and verified.
    fn audit_log(&self) -> Result<(), CliError> {
        step(7, "The audit log")?;
        let log_path = self.paths.audit_log();
        let n = breakglass::audit::verify(&log_path)
            .map_err(|e| fail(e.to_string()))?
            .records;
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        for line in log.lines() {
            outln!("  {line}")?;
        }
        outln!("  {n} records, hash chain intact; no secret in them.")?;
        Ok(())
    }

    /// Re-sends the MFA code of the window the activation used, with the vault's key: STS refuses.
    fn reuse_attempt(&mut self, prompt: &mut dyn Prompt) -> Result<String, CliError> {
        let fail = |what: String| CliError::unexpected(what);
        let (card, profile, paths) = (&mut self.card, &self.profile, self.paths);
        let vault = breakglass::vault::file::read(&profile.vault)?;
        let passphrase = vault.derive(&SecretString::from(PASSPHRASE.to_owned()))?;
        let by_piv_or_fido2 = ceremony::open_before_oath(&vault, &passphrase, card, prompt)?;
        let mut session = Session::select(card)?;
        let opened = match by_piv_or_fido2 {
            Some(o) => o,
            None => {
                let mut f = breakglass::vault::OathFactor::new(&mut session, &profile.seal_account);
                vault.open_derived(&passphrase, &mut f)?
            }
        };
        let used = mfa::Windows::load(&paths.mfa_state())
            .last(opened.mfa_serial())
            .ok_or_else(|| fail("no MFA window recorded".into()))?;
        let mut quiet = Scripted::new("Alice", "Bob", PASSPHRASE);
        let code = mfa::code_for_step(&mut session, &profile.mfa_account, used, &mut quiet)?;
        outln!("  (re-sending the code of window {used}, which the activation already used; now is window {})", self.clock.now() / 30)?;
        let signer = Signer {
            access_key_id: &opened.payload.access_key_id,
            secret_access_key: &opened.payload.secret_access_key,
            session_token: None,
        };
        match self.rt.block_on(sts::get_session_token(
            &self.endpoint,
            &signer,
            opened.mfa_serial(),
            &code,
            900,
            self.clock.now(),
        )) {
            Err(aws::Error::BadCode { message }) => Ok(message),
            Err(e) => Err(e.into()),
            Ok(_) => Err(fail("STS accepted a reused MFA code".into())),
        }
    }
}
/// GETs the sign-in URL following the redirect, as a browser would; returns the page.
fn open_like_a_browser(url: &str) -> Result<String, String> {
    let mut response = ureq::get(url)
        .call()
        .map_err(|e| format!("the sandbox console did not open: {e}"))?;
    response
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("the sandbox console page could not be read: {e}"))
}

/// The text of the element with `id` in the sandbox console page (its values are escaped
/// text without markup).
fn element_text<'a>(page: &'a str, id: &str) -> Option<&'a str> {
    let start = page.find(&format!("id=\"{id}\""))?;
    let rest = &page[start..];
    let open = rest.find('>')? + 1;
    let close = rest[open..].find('<')?;
    Some(&rest[open..open + close])
}
