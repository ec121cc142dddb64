//! `breakglass token …`: list, code, add, delete, password.

use std::io::IsTerminal;
use std::time::{SystemTime, UNIX_EPOCH};

use breakglass::secure::SystemRandom;
use clap::{Args, Subcommand, ValueEnum};
use zeroize::Zeroizing;

use breakglass::token::oath::{self, Account, Kind, NewAccount, Seed, Session};
use breakglass::token::otp::Algorithm;
use breakglass::token::pcsc::{self, Card};
use breakglass::token::Error;
use breakglass::token::TOUCH_TIMEOUT;

use super::error::CliError;
use super::term::{self, SecretStdin, TouchPrompt};

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// List readers, tokens and their OATH accounts (name, type, algorithm, touch).
    List(ListArgs),
    /// Print the code of one account.
    Code(CodeArgs),
    /// Add an OATH account; the base32 secret is read from stdin, never from arguments.
    Add(AddArgs),
    /// Delete an OATH account.
    Delete(DeleteArgs),
    /// Set or clear the token's OATH access code (read from the terminal).
    #[command(subcommand)]
    Password(PasswordCommand),
}

/// How to reach the token, shared by every subcommand.
#[derive(Debug, Args)]
pub struct TokenOpts {
    /// Use the reader whose name contains this text (see `breakglass token list`).
    #[arg(long, short = 'r', value_name = "NAME")]
    reader: Option<String>,
    /// Read the token's access code from the first line of standard input instead of asking on
    /// the terminal.
    #[arg(long)]
    password_stdin: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    opts: TokenOpts,
}

#[derive(Debug, Args)]
pub struct CodeArgs {
    /// Account name, exactly as `breakglass token list` shows it.
    name: String,
    /// Compute the code for this time (Unix seconds) instead of now.
    #[arg(long, value_name = "UNIX_SECONDS", conflicts_with = "next")]
    at: Option<u64>,
    /// Compute the code of the next time window.
    #[arg(long)]
    next: bool,
    #[command(flatten)]
    opts: TokenOpts,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AccountType {
    Totp,
    Hotp,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("source").required(true))]
pub struct AddArgs {
    /// Account name (`issuer:name` is fine), at most 64 bytes.
    name: String,
    /// Read the base32 secret from standard input (after the access code line with
    /// --password-stdin).
    #[arg(long, group = "source")]
    secret_stdin: bool,
    /// Generate a random secret and print it once, in base32, to register with the service.
    #[arg(long, group = "source")]
    generate: bool,
    /// Require a touch of the token for every code.
    #[arg(long)]
    touch: bool,
    /// Digits per code: 6, 7 or 8.
    #[arg(long, default_value_t = 6)]
    digits: u8,
    /// HMAC algorithm.
    #[arg(long, default_value = "sha1", value_parser = parse_algorithm)]
    algorithm: Algorithm,
    /// TOTP period in seconds (15 to 300).
    #[arg(long, default_value_t = oath::DEFAULT_PERIOD)]
    period: u32,
    /// Account type.
    #[arg(long = "type", value_enum, default_value = "totp")]
    kind: AccountType,
    /// Initial HOTP counter.
    #[arg(long, default_value_t = 0)]
    counter: u32,
    #[command(flatten)]
    opts: TokenOpts,
}

fn parse_algorithm(s: &str) -> Result<Algorithm, String> {
    s.parse()
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Account name, exactly as `breakglass token list` shows it.
    name: String,
    #[command(flatten)]
    opts: TokenOpts,
}

#[derive(Debug, Subcommand)]
pub enum PasswordCommand {
    /// Set or change the access code (asked twice on the terminal).
    Set {
        #[command(flatten)]
        opts: TokenOpts,
    },
    /// Remove the access code.
    Clear {
        #[command(flatten)]
        opts: TokenOpts,
    },
}

impl TokenCommand {
    pub fn run(self) -> Result<(), CliError> {
        match self {
            Self::List(a) => list(a),
            Self::Code(a) => code(a),
            Self::Add(a) => add(a),
            Self::Delete(a) => delete(a),
            Self::Password(PasswordCommand::Set { opts }) => password_set(opts),
            Self::Password(PasswordCommand::Clear { opts }) => password_clear(opts),
        }
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Where the access code comes from, read at most once.
struct AccessCode {
    from_stdin: bool,
    cached: Option<Zeroizing<String>>,
}

impl AccessCode {
    fn new(opts: &TokenOpts) -> Self {
        Self {
            from_stdin: opts.password_stdin,
            cached: None,
        }
    }

    fn get(&mut self, stdin: &mut SecretStdin) -> Result<&Zeroizing<String>, CliError> {
        if self.cached.is_none() {
            let code = if self.from_stdin {
                stdin.line("access code")?
            } else if term::has_tty() {
                term::secret_from_tty("Token access code (OATH password): ")
                    .map_err(|_| CliError::from(Error::AccessCodeRequired))?
            } else {
                return Err(Error::AccessCodeRequired.into());
            };
            self.cached = Some(code);
        }
        self.cached
            .as_ref()
            .ok_or_else(|| CliError::from(Error::AccessCodeRequired))
    }

    /// Unlocks a protected session; reads the code only when needed (but always consumes the
    /// stdin line when --password-stdin was given, so later lines stay in place).
    fn unlock(
        &mut self,
        session: &mut Session<'_>,
        stdin: &mut SecretStdin,
    ) -> Result<(), CliError> {
        if self.from_stdin {
            self.get(stdin)?;
        }
        if session.is_locked() {
            let code = self.get(stdin)?;
            session.unlock(code.as_bytes(), &SystemRandom::new())?;
        }
        Ok(())
    }
}

fn list(args: ListArgs) -> Result<(), CliError> {
    let readers = pcsc::list_readers()?;
    if readers.is_empty() {
        return Err(Error::NoReaders.into());
    }
    let wanted = args.opts.reader.as_deref().map(str::to_lowercase);
    let shown: Vec<_> = readers
        .iter()
        .filter(|r| {
            wanted
                .as_ref()
                .is_none_or(|w| r.name.to_lowercase().contains(w))
        })
        .collect();
    if shown.is_empty() {
        return Err(Error::ReaderNotFound {
            wanted: args.opts.reader.unwrap_or_default(),
            readers: readers.into_iter().map(|r| r.name).collect(),
        }
        .into());
    }
    let mut access = AccessCode::new(&args.opts);
    let mut stdin = SecretStdin::new();
    for reader in shown {
        if !reader.card_present {
            outln!("Reader {:?}: no token", reader.name)?;
            continue;
        }
        let mut lines = Vec::new();
        let listed = list_one(&reader.name, &mut access, &mut stdin, &mut lines);
        for line in &lines {
            outln!("{line}")?;
        }
        match listed {
            Ok(()) => {}
            Err(Error::AppletMissing { .. }) => outln!(
                "Reader {:?}: a card without an OATH application",
                reader.name
            )?,
            Err(Error::AccessCodeRequired) => outln!(
                "  accounts hidden: the access code is required (run in a terminal, or use \
                 --password-stdin)"
            )?,
            Err(e) => return Err(e.into()),
        }
        list_piv(&reader.name)?;
    }
    list_fido2()
}

/// The PIV application: serial, firmware, PIN tries, and the keys in the retired slots (where
/// PIV seal keys live). Best effort: a card without PIV says so.
fn list_piv(reader: &str) -> Result<(), CliError> {
    use breakglass::token::piv::{PivCard, RETIRED_SLOTS};
    let mut piv = match breakglass::token::piv_yubikey::YubikeyPiv::open(reader) {
        Ok(p) => p,
        Err(e) => {
            return outln!("  PIV: not available ({e})");
        }
    };
    let (Ok(serial), Ok((a, b, c))) = (piv.serial(), piv.version()) else {
        return outln!("  PIV: serial or version unreadable");
    };
    let tries = piv
        .pin_retries()
        .map_or_else(|e| format!("unknown ({e})"), |t| t.to_string());
    outln!("  PIV: serial {serial}, firmware {a}.{b}.{c}, PIN tries left {tries}")?;
    let mut any = false;
    for slot in RETIRED_SLOTS {
        let key = match piv.slot_key(slot) {
            Ok(k) => k,
            Err(e) => {
                return outln!(
                    "    key metadata unreadable ({e}); the PIV factor needs firmware 5.3+"
                );
            }
        };
        if let Some(k) = key {
            any = true;
            let policy =
                |v: u8, names: &[&'static str]| names.get(usize::from(v)).copied().unwrap_or("?");
            outln!(
                "    slot {slot:02x}: {}, PIN {}, touch {}",
                if k.algorithm == 0x11 {
                    "P-256"
                } else {
                    "other algorithm"
                },
                policy(k.pin_policy, &["default", "never", "once", "always"]),
                policy(k.touch_policy, &["default", "never", "always", "cached"]),
            )?;
        }
    }
    if !any {
        outln!("    no keys in the retired slots 82-95")?;
    }
    Ok(())
}

/// FIDO2 keys on USB (HID), for the FIDO2 seal factor.
fn list_fido2() -> Result<(), CliError> {
    match breakglass::token::fido2::hid::list() {
        Ok(devices) if devices.is_empty() => outln!("FIDO2 (USB HID): no key found"),
        Ok(devices) => {
            for d in devices {
                outln!("FIDO2 (USB HID): {d}")?;
            }
            Ok(())
        }
        Err(e) => outln!("FIDO2 (USB HID): cannot list keys ({e})"),
    }
}

/// The OATH listing of one reader's token, into `lines` (printed by the caller, also when
/// the listing stops at the access code).
fn list_one(
    reader: &str,
    access: &mut AccessCode,
    stdin: &mut SecretStdin,
    lines: &mut Vec<String>,
) -> Result<(), Error> {
    let mut card = Card::open_exact(reader)?;
    let mut tx = card.transaction()?;
    let mut session = Session::select(&mut tx)?;
    lines.push(format!(
        "Reader {reader:?}: token with OATH {}, access code {}",
        session.version(),
        if session.has_access_code() {
            "set"
        } else {
            "not set"
        }
    ));
    if session.is_locked() {
        let code = access.get(stdin).map_err(|_| Error::AccessCodeRequired)?;
        session.unlock(code.as_bytes(), &SystemRandom::new())?;
    }
    let accounts = session.accounts(now())?;
    if accounts.is_empty() {
        lines.push("  no OATH accounts".into());
        return Ok(());
    }
    let width = accounts
        .iter()
        .map(|a| a.name().len())
        .max()
        .unwrap_or(4)
        .max(4);
    lines.push(format!(
        "  {:width$}  TYPE  ALGORITHM  PERIOD  TOUCH",
        "NAME"
    ));
    for a in &accounts {
        let period = match a.kind {
            Kind::Totp => format!("{} s", a.period),
            Kind::Hotp => "-".into(),
        };
        let touch = match a.touch {
            Some(true) => "yes",
            Some(false) => "no",
            None => "unknown",
        };
        lines.push(format!(
            "  {:width$}  {:4}  {:9}  {:>6}  {touch}",
            a.name(),
            a.kind.name(),
            a.algorithm.map_or("?", Algorithm::name),
            period
        ));
    }
    Ok(())
}

/// Opens the token and its OATH session, unlocking it, then runs `f`.
fn with_session<T>(
    opts: &TokenOpts,
    access: &mut AccessCode,
    stdin: &mut SecretStdin,
    f: impl FnOnce(&mut Session<'_>, &str) -> Result<T, CliError>,
) -> Result<T, CliError> {
    let mut card = Card::open(opts.reader.as_deref())?;
    let reader = card.reader().to_owned();
    let mut tx = card.transaction()?;
    let mut session = Session::select(&mut tx)?;
    access.unlock(&mut session, stdin)?;
    f(&mut session, &reader)
}

fn code(args: CodeArgs) -> Result<(), CliError> {
    let mut access = AccessCode::new(&args.opts);
    let mut stdin = SecretStdin::new();
    let (code, account) = with_session(&args.opts, &mut access, &mut stdin, |session, _| {
        let now = now();
        let accounts = session.accounts(now)?;
        let account = oath::find(&accounts, &args.name)?.clone();
        let at = match (account.kind, args.at, args.next) {
            (Kind::Hotp, Some(_), _) | (Kind::Hotp, _, true) => {
                return Err(CliError::usage(
                    format!(
                        "{:?} is an HOTP account: its codes have no time window",
                        args.name
                    ),
                    "run the command again without --at or --next",
                ))
            }
            (_, Some(at), _) => at,
            (_, None, true) => now + u64::from(account.period),
            (_, None, false) => now,
        };
        let _prompt = (account.touch != Some(false))
            .then(|| TouchPrompt::start(account.name(), TOUCH_TIMEOUT));
        Ok((session.code(&account, at)?, account))
    })?;
    outln!("{}", code.expose())?;
    if std::io::stderr().is_terminal() && account.kind == Kind::Totp {
        let left = code.valid_to.saturating_sub(now());
        eprintln!("(valid for {left} s more)");
    }
    Ok(())
}

fn add(args: AddArgs) -> Result<(), CliError> {
    let mut access = AccessCode::new(&args.opts);
    let mut stdin = SecretStdin::new();
    if args.opts.password_stdin {
        // The access code comes first on stdin, the secret after it.
        access.get(&mut stdin)?;
    }
    let seed = if args.secret_stdin {
        Seed::from_base32(&stdin.line("base32 secret")?)?
    } else {
        let len = args.algorithm.output_len();
        Seed::generate(len, &SystemRandom::new())?
    };
    let account = NewAccount {
        name: args.name.clone(),
        kind: match args.kind {
            AccountType::Totp => Kind::Totp,
            AccountType::Hotp => Kind::Hotp,
        },
        algorithm: args.algorithm,
        digits: args.digits,
        period: args.period,
        touch: args.touch,
        counter: args.counter,
        seed,
    };
    account.validate()?;
    let reader = with_session(&args.opts, &mut access, &mut stdin, |session, reader| {
        let existing = session.list()?;
        if existing
            .iter()
            .any(|a| a.id == account.id() || a.name() == account.name)
        {
            return Err(Error::AccountExists {
                name: account.name.clone(),
            }
            .into());
        }
        session.put(&account)?;
        Ok(reader.to_owned())
    })?;
    eprintln!(
        "Added {} account {:?} ({}, {} digits{}{}) to the token in {reader:?}.",
        account.kind.name(),
        account.name,
        account.algorithm.name(),
        account.digits,
        match account.kind {
            Kind::Totp => format!(", {} s", account.period),
            Kind::Hotp => String::new(),
        },
        if account.touch {
            ", touch required"
        } else {
            ""
        },
    );
    if args.generate {
        eprintln!(
            "The secret below is shown once. Register it with the service now, then clear the \
             screen; it is not stored anywhere else."
        );
        outln!("{}", &*account.seed.to_base32())?;
    }
    Ok(())
}

fn delete(args: DeleteArgs) -> Result<(), CliError> {
    let mut access = AccessCode::new(&args.opts);
    let mut stdin = SecretStdin::new();
    let account: Account = with_session(&args.opts, &mut access, &mut stdin, |session, _| {
        let accounts = session.list()?;
        let account = oath::find(&accounts, &args.name)?.clone();
        session.delete(&account.id)?;
        Ok(account)
    })?;
    eprintln!("Deleted account {:?} from the token.", account.name());
    Ok(())
}

fn new_code_from_tty() -> Result<Zeroizing<String>, CliError> {
    let no_tty = || {
        CliError::usage(
            "a new access code can only be typed on a terminal",
            "run `breakglass token password set` in an interactive terminal",
        )
    };
    let first = term::secret_from_tty("New access code: ").map_err(|_| no_tty())?;
    if first.is_empty() {
        return Err(CliError::usage(
            "the new access code is empty",
            "type a non-empty access code, or use `breakglass token password clear`",
        ));
    }
    let second = term::secret_from_tty("Repeat the new access code: ").map_err(|_| no_tty())?;
    if first != second {
        return Err(CliError::usage(
            "the two access codes differ; nothing was changed",
            "run `breakglass token password set` again",
        ));
    }
    Ok(first)
}

fn password_set(opts: TokenOpts) -> Result<(), CliError> {
    let mut access = AccessCode::new(&opts);
    let mut stdin = SecretStdin::new();
    with_session(&opts, &mut access, &mut stdin, |session, _| {
        let code = new_code_from_tty()?;
        session.set_access_code(code.as_bytes(), &SystemRandom::new())?;
        Ok(())
    })?;
    eprintln!("Access code set. Keep it with the password holder, apart from the token.");
    Ok(())
}

fn password_clear(opts: TokenOpts) -> Result<(), CliError> {
    let mut access = AccessCode::new(&opts);
    let mut stdin = SecretStdin::new();
    with_session(&opts, &mut access, &mut stdin, |session, _| {
        session.clear_access_code()?;
        Ok(())
    })?;
    eprintln!("Access code removed: anyone holding the token can now read its codes.");
    Ok(())
}
