//! `breakglass sandbox …`: the built-in sandbox (for now the soft token in vpcd).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};

use breakglass::sandbox::sts::Drift;
use breakglass::token::soft::{vpcd, SimulatedTouch, SoftCard, TouchPolicy, TOUCH_TIMEOUT};

use super::error::{exit, CliError};

#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Run the software token as a card in pcscd's vpcd virtual reader until killed.
    ///
    /// The token starts blank and keeps its accounts in memory only; ykman and `breakglass
    /// token` see it as a YubiKey in reader "Virtual PCD 00 00" (port 35963) or "Virtual PCD
    /// 00 01" (port 35964).
    Card(CardArgs),
    /// Run the strict STS/IAM emulator on loopback until killed.
    ///
    /// It checks SigV4 signatures and MFA codes and refuses reused codes. It prints its
    /// endpoint and a throw-away administrator key (for `breakglass enroll --create-key
    /// --create-mfa`), and creates the IAM user `breakglass`.
    Sts(StsArgs),
}

#[derive(Debug, Args)]
pub struct StsArgs {
    /// Address to listen on (loopback only; port 0 picks a free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Make the emulated account the management account of an organization of N member
    /// accounts, each with a sound BreakGlass role trusting the user `breakglass` (for `drill
    /// --organization`).
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=100_000))]
    accounts: u64,
    /// Break members' roles or accounts, `KIND` or `KIND:INDEX` (repeatable): no-role,
    /// trusts-account, no-mfa, denies-source-identity, long-sessions, suspended, silent.
    /// Without an index, member 1, 2, … in the order given.
    #[arg(long, value_name = "KIND[:INDEX]", requires = "accounts")]
    broken: Vec<String>,
    /// Limit STS to N requests a second (AWS's account limit is 600), answering Throttling
    /// beyond it.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    throttle: Option<u32>,
}

/// The drifts of `--broken`, each with its member index (1-based).
fn parse_broken(list: &[String], members: usize) -> Result<Vec<(usize, Drift)>, CliError> {
    let mut out = Vec::new();
    for (n, item) in list.iter().enumerate() {
        let (kind, index) = match item.split_once(':') {
            Some((k, i)) => (k, i.parse::<usize>().ok()),
            None => (item.as_str(), Some(n + 1)),
        };
        let drift = match kind {
            "no-role" => Drift::NoRole,
            "trusts-account" => Drift::TrustsAccount,
            "no-mfa" => Drift::NoMfaCondition,
            "denies-source-identity" => Drift::DeniesSourceIdentity,
            "long-sessions" => Drift::LongSessions,
            "suspended" => Drift::Suspended,
            "silent" => Drift::Silent,
            other => {
                return Err(CliError::usage(
                    format!("--broken {other:?} is not a kind of drift"),
                    "use no-role, trusts-account, no-mfa, denies-source-identity, long-sessions, suspended or silent",
                ))
            }
        };
        match index {
            Some(i) if (1..=members).contains(&i) => out.push((i, drift)),
            _ => {
                return Err(CliError::usage(
                    format!("--broken {item:?} names no member account"),
                    format!("give an index from 1 to {members}: KIND:INDEX"),
                ))
            }
        }
    }
    Ok(out)
}

#[derive(Debug, Args)]
pub struct CardArgs {
    /// vpcd's address (loopback only): port 35963 is reader slot 00, 35964 slot 01.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:35963")]
    vpcd: SocketAddr,
    /// What the simulated token holder does when a touch is needed.
    #[arg(long, value_name = "POLICY", default_value = "approve", value_parser = parse_policy)]
    touch: TouchPolicy,
    /// Seconds the token blinks before a touch times out (a YubiKey waits 15).
    #[arg(long, value_name = "SECS", default_value_t = TOUCH_TIMEOUT.as_secs())]
    touch_timeout: u64,
    /// Write the card's sandbox PIV attestation root certificate (DER) to PATH at start-up.
    ///
    /// The root is made for this card run alone; it signs the attestation (slot F9)
    /// certificate, which signs every PIV attestation the card gives.
    #[arg(long, value_name = "PATH")]
    piv_root_out: Option<std::path::PathBuf>,
    /// Seconds to keep trying to reach vpcd at start-up.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    wait: u64,
}

fn parse_policy(s: &str) -> Result<TouchPolicy, String> {
    s.parse()
}

impl SandboxCommand {
    pub fn run(self) -> Result<(), CliError> {
        match self {
            Self::Card(args) => card(args),
            Self::Sts(args) => sts(args),
        }
    }
}

fn sts(args: StsArgs) -> Result<(), CliError> {
    use secrecy::ExposeSecret;
    if !args.listen.ip().is_loopback() {
        return Err(CliError::usage(
            format!("{} is not a loopback address", args.listen),
            "use 127.0.0.1:PORT: the emulator holds sandbox secrets and serves this machine only",
        ));
    }
    let members = usize::try_from(args.accounts).unwrap_or(0);
    let broken = parse_broken(&args.broken, members)?;
    let emulator = breakglass::sandbox::sts::Sts::start(args.listen).map_err(|e| {
        CliError::new(
            format!("cannot listen on {}: {e}", args.listen),
            "choose another port with --listen 127.0.0.1:PORT",
            exit::UNAVAILABLE,
        )
    })?;
    let user = emulator.create_user("breakglass");
    let (id, secret) = emulator.admin_key();
    let role = emulator.create_role("BreakGlass", true);
    if members > 0 {
        let ids = emulator.create_organization(members, "BreakGlass", std::slice::from_ref(&user));
        for (i, drift) in &broken {
            emulator.drift(&ids[i - 1], "BreakGlass", *drift);
            outln!("member {} ({}): {drift:?}", i, ids[i - 1])?;
        }
        outln!(
            "organization: {members} member accounts {} to {}, role BreakGlass in each",
            ids[0],
            ids[members - 1]
        )?;
    }
    if let Some(rate) = args.throttle {
        emulator.throttle_sts(Some(rate));
        outln!("STS limited to {rate} requests a second")?;
    }
    outln!("endpoint {}", emulator.endpoint())?;
    outln!("signin-endpoint {}", emulator.federation_endpoint())?;
    outln!("user {user}")?;
    outln!("role {role}  (needs MFA: role_arn for profiles, --role-arn for console)")?;
    outln!("# throw-away sandbox administrator key, valid only for this emulator:")?;
    outln!("export AWS_ACCESS_KEY_ID={id}")?;
    outln!("export AWS_SECRET_ACCESS_KEY={}", secret.expose_secret())?;
    eprintln!("STS/IAM emulator running; stop it with Ctrl-C.");
    loop {
        std::thread::park();
    }
}

fn reader_name(addr: SocketAddr) -> String {
    let slot = addr.port().wrapping_sub(vpcd::DEFAULT_PORT);
    format!("Virtual PCD 00 {slot:02}")
}

fn card(args: CardArgs) -> Result<(), CliError> {
    if !args.vpcd.ip().is_loopback() {
        return Err(CliError::usage(
            format!("vpcd address {} is not on this machine", args.vpcd),
            "use 127.0.0.1:35963 (slot 00) or 127.0.0.1:35964 (slot 01)",
        ));
    }
    let touch = SimulatedTouch::new(args.touch.clone(), Duration::from_secs(args.touch_timeout));
    let mut card = SoftCard::new(Box::new(touch));
    if let Some(path) = &args.piv_root_out {
        std::fs::write(path, card.piv_attestation_root()).map_err(|e| {
            CliError::new(
                format!(
                    "cannot write the PIV attestation root to {}: {e}",
                    path.display()
                ),
                "choose a writable path for --piv-root-out",
                exit::FAILURE,
            )
        })?;
    }
    let reader = reader_name(args.vpcd);
    let deadline = Instant::now() + Duration::from_secs(args.wait);
    let mut ever_connected = false;
    loop {
        match vpcd::connect(args.vpcd, Duration::from_secs(2)) {
            Ok(mut stream) => {
                ever_connected = true;
                eprintln!(
                    "Soft token inserted in reader {reader:?} (vpcd {}), touch policy {:?}. \
                     Stop it with Ctrl-C.",
                    args.vpcd, args.touch
                );
                match vpcd::serve(&mut card, &mut stream) {
                    Ok(()) => {
                        eprintln!("vpcd closed the connection (pcscd stopped?); reconnecting…")
                    }
                    Err(e) => eprintln!("lost the connection to vpcd ({e}); reconnecting…"),
                }
                card.reset();
            }
            Err(e) if !ever_connected && Instant::now() >= deadline => {
                return Err(CliError::new(
                    format!("cannot reach vpcd at {}: {e}", args.vpcd),
                    "start pcscd with the vpcd driver: `sudo apt-get install pcscd \
                     vsmartcard-vpcd`, then `sudo pcscd` (or `sudo systemctl restart pcscd`)",
                    exit::UNAVAILABLE,
                ));
            }
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
