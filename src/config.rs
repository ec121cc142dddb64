//! Profiles and paths: `$BREAKGLASS_CONFIG` or `$XDG_CONFIG_HOME/breakglass/config.toml`;
//! data under `$XDG_DATA_HOME/breakglass/`, state (audit log) under `$XDG_STATE_HOME/breakglass/`.
//!
//! ```toml
//! [profiles.prod]
//! vault = "/var/lib/breakglass/prod.vault"   # default: DATA/vaults/prod.vault
//! mfa_account = "breakglass:prod"             # OATH account of the MFA code
//! seal_account = "breakglass-seal"            # OATH credential of the vault's token factor
//! mfa_serial = "arn:aws:iam::123456789012:mfa/breakglass"  # informational; the vault has it
//! region = "us-east-1"
//! sts_endpoint = "https://sts.us-east-1.amazonaws.com"     # else AWS_ENDPOINT_URL(_STS)
//! session_duration = 3600                     # 900..=129600 seconds
//! reader = "Yubico"                           # part of the reader name
//! role_arn = "arn:aws:iam::210987654321:role/BreakGlass"  # hand out this role's sessions
//! role_session_name = "{password_holder}+{token_holder}"    # RoleSessionName pattern
//! connect_timeout_secs = 3                    # per connection to AWS, 1..=60
//! call_timeout_secs = 10                      # per AWS call, retries included, 1..=300
//! rotate_after_days = 90                      # key age at which `rotate` is due
//! deactivate_after_days = 100                 # the old key is deactivated this much later
//! delete_after_days = 110                     #   (and deleted), counted like rotate_after_days
//! drill_role = "BreakGlass"                   # the role `drill` tries (default: role_arn's name)
//! drill_accounts = ["210987654321"]           # the accounts `drill` tries without --organization
//! drill_max_session = 3600                    # the roles' expected MaxSessionDuration, seconds
//! drill_other_users = ["arn:aws:iam::123456789012:user/breakglass-2"]  # also trusted
//!
//! drill_rule = "breakglass-activity"          # an EventBridge rule every account must have, enabled
//! drill_role_policies = ["arn:aws:iam::aws:policy/AdministratorAccess"]  # attached to the role
//!
//! [profiles.prod.drill_role_overrides]        # another role name in some accounts
//! "111122223333" = "EmergencyAccess"          #   by account id (wins), or by OU id: every
//! "ou-ab12-cdef3456" = "BreakGlassLegacy"     #   account under it, nested OUs included
//!
//! require_ticket = true                       # a ticket is needed (see `notify`)
//! ticket_pattern = "INC[0-9]{6}"
//!
//! [notify]                                    # where notices go: see the `notify` module
//! [[notify.webhooks]]
//! url = "https://hooks.slack.com/services/T000/B000/XXXX"
//!
//! [agent]
//! idle_timeout = 60                           # minutes without a hand-out before a wipe
//! ```

mod notify;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use notify::{
    topic_region, BadTicket, Notify, SnsChannel, TicketPolicy, Webhook,
    DEFAULT_NOTIFY_TIMEOUT_SECS, NOTIFY_TIMEOUT_SECS,
};

use serde::Deserialize;
use toml::Spanned;

/// Allowed GetSessionToken durations, seconds.
pub const SESSION_DURATION_SECS: std::ops::RangeInclusive<u64> = 900..=129_600;
/// GetSessionToken duration when the profile sets none, in seconds (1 h).
pub const DEFAULT_SESSION_DURATION_SECS: u64 = 3600;
/// The OATH credential of the vault's token factor when the profile names none.
pub const DEFAULT_SEAL_ACCOUNT: &str = "breakglass-seal";
/// The region when the profile sets none.
pub const DEFAULT_REGION: &str = "us-east-1";
/// Minutes without a hand-out after which the agent wipes a session.
pub const DEFAULT_IDLE_TIMEOUT_MINUTES: u64 = 60;
/// Allowed `[agent] idle_timeout`, in minutes (1 minute to 24 hours).
pub const IDLE_TIMEOUT_MINUTES: std::ops::RangeInclusive<u64> = 1..=1440;
/// Time to establish one connection to AWS when the profile sets none, in seconds.
pub const DEFAULT_CONNECT_TIMEOUT_SECS: u64 = 3;
/// Allowed `connect_timeout_secs`, in seconds.
pub const CONNECT_TIMEOUT_SECS: std::ops::RangeInclusive<u64> = 1..=60;
/// Time for a whole AWS call (every attempt and the waits between them) when the profile sets
/// none, in seconds.
pub const DEFAULT_CALL_TIMEOUT_SECS: u64 = 10;
/// Allowed `call_timeout_secs`, in seconds; never shorter than `connect_timeout_secs`.
pub const CALL_TIMEOUT_SECS: std::ops::RangeInclusive<u64> = 1..=300;

/// Key age, in days, at which a rotation is due when the profile sets none.
pub const DEFAULT_ROTATE_AFTER_DAYS: u32 = 90;
/// The old key's deactivation day when the profile sets none (see [`RotationPolicy`]).
pub const DEFAULT_DEACTIVATE_AFTER_DAYS: u32 = 100;
/// The old key's deletion day when the profile sets none (see [`RotationPolicy`]).
pub const DEFAULT_DELETE_AFTER_DAYS: u32 = 110;
/// Allowed rotation policy days (a day to ten years).
pub const POLICY_DAYS: std::ops::RangeInclusive<u32> = 1..=3650;

/// When a profile's access key is rotated, and when the old key is deactivated and deleted:
/// the AWS pattern of 90/100/110 days. The days count the key's age: a rotation is due when
/// the vault's key is `rotate_after_days` old; the old key is then deactivated
/// `deactivate_after_days - rotate_after_days` days after the rotation and deleted
/// `delete_after_days - rotate_after_days` days after it (10 and 20 by default), which gives
/// the holders of other copies of the vault time to replace theirs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationPolicy {
    /// Key age, in days, at which a rotation is due.
    pub rotate_after_days: u32,
    /// Key age of the old key, in days (as if rotated on time), at which it is deactivated.
    pub deactivate_after_days: u32,
    /// Key age of the old key, in days, at which it is deleted.
    pub delete_after_days: u32,
}

impl Default for RotationPolicy {
    fn default() -> Self {
        Self {
            rotate_after_days: DEFAULT_ROTATE_AFTER_DAYS,
            deactivate_after_days: DEFAULT_DEACTIVATE_AFTER_DAYS,
            delete_after_days: DEFAULT_DELETE_AFTER_DAYS,
        }
    }
}

impl RotationPolicy {
    /// Seconds in a day.
    pub const DAY: u64 = 86_400;

    /// When a key sealed at `sealed_at` is due for rotation, Unix seconds.
    pub fn rotation_due(&self, sealed_at: u64) -> u64 {
        sealed_at.saturating_add(u64::from(self.rotate_after_days) * Self::DAY)
    }

    /// When the old key of a rotation made at `rotated_at` is to be deactivated.
    pub fn deactivation_due(&self, rotated_at: u64) -> u64 {
        let days = self.deactivate_after_days - self.rotate_after_days;
        rotated_at.saturating_add(u64::from(days) * Self::DAY)
    }

    /// When the old key of a rotation made at `rotated_at` is to be deleted.
    pub fn deletion_due(&self, rotated_at: u64) -> u64 {
        let days = self.delete_after_days - self.rotate_after_days;
        rotated_at.saturating_add(u64::from(days) * Self::DAY)
    }
}

/// Errors of reading the config.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file is not valid TOML, has an unknown key, or a value is out of range.
    #[error("{path}:{line}: {message}")]
    Invalid {
        /// The config file's path.
        path: String,
        /// The line of the fault, 1-based.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The config file exists but cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The config file's path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The profile asked for is not in the config.
    #[error("no profile named {name:?} in {path} (profiles: {})", if known.is_empty() { "none".to_owned() } else { known.join(", ") })]
    NoProfile {
        /// The profile name asked for.
        name: String,
        /// The config file's path.
        path: String,
        /// The profiles the file has.
        known: Vec<String>,
    },
    /// Neither `HOME` nor the XDG variable of a needed folder is set.
    #[error("cannot find a home directory: set HOME or XDG_CONFIG_HOME")]
    NoHome,
}

/// Where breakglass keeps things.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// The config file: `$BREAKGLASS_CONFIG`, else `$XDG_CONFIG_HOME/breakglass/config.toml`.
    pub config: PathBuf,
    /// Data (vaults): `$XDG_DATA_HOME/breakglass`, else `~/.local/share/breakglass`.
    pub data: PathBuf,
    /// State (audit log, MFA windows, agent log): `$XDG_STATE_HOME/breakglass`, else
    /// `~/.local/state/breakglass`.
    pub state: PathBuf,
    /// The agent's socket directory: `$XDG_RUNTIME_DIR/breakglass`, else
    /// `/tmp/breakglass-UID` (created 0700 and checked by the agent).
    pub runtime: PathBuf,
}

impl Paths {
    /// From the environment (XDG base directories, `BREAKGLASS_CONFIG`).
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(|k| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
    }

    /// As [`Paths::from_env`], with `get` for the environment (empty values are the caller's to
    /// filter); tests pass their own.
    pub fn from_lookup(get: impl Fn(&str) -> Option<PathBuf>) -> Result<Self, Error> {
        let home = get("HOME");
        let base = |xdg: &str, fallback: &str| -> Result<PathBuf, Error> {
            get(xdg)
                .or_else(|| home.as_ref().map(|h| h.join(fallback)))
                .map(|p| p.join("breakglass"))
                .ok_or(Error::NoHome)
        };
        let config = match get("BREAKGLASS_CONFIG") {
            Some(p) => p,
            None => base("XDG_CONFIG_HOME", ".config")?.join("config.toml"),
        };
        // Without XDG_RUNTIME_DIR (su, cron, ssh without a systemd login), the systemd one
        // when it exists, so that such shells find the same agent; else a private /tmp dir.
        let uid = nix::unistd::geteuid();
        let systemd = PathBuf::from(format!("/run/user/{uid}"));
        let runtime = get("XDG_RUNTIME_DIR")
            .or_else(|| systemd.is_dir().then_some(systemd))
            .map(|p| p.join("breakglass"))
            .unwrap_or_else(|| std::env::temp_dir().join(format!("breakglass-{uid}")));
        Ok(Self {
            config,
            data: base("XDG_DATA_HOME", ".local/share")?,
            state: base("XDG_STATE_HOME", ".local/state")?,
            runtime,
        })
    }

    /// The hash-chained audit log, `STATE/audit.log`.
    pub fn audit_log(&self) -> PathBuf {
        self.state.join("audit.log")
    }

    /// The TOTP windows already sent, `STATE/mfa-windows.json`.
    pub fn mfa_state(&self) -> PathBuf {
        self.state.join("mfa-windows.json")
    }

    /// The rotation journal of `profile`, `STATE/rotations/PROFILE.json` (no secret in it).
    pub fn rotation_journal(&self, profile: &str) -> PathBuf {
        self.state.join("rotations").join(format!("{profile}.json"))
    }

    /// The agent's socket, `RUNTIME/agent.sock`.
    pub fn agent_socket(&self) -> PathBuf {
        self.runtime.join("agent.sock")
    }

    /// Where `enroll` puts a profile's vault by default: `DATA/vaults/PROFILE.vault`.
    pub fn default_vault(&self, profile: &str) -> PathBuf {
        self.data.join("vaults").join(format!("{profile}.vault"))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    profiles: BTreeMap<String, Spanned<RawProfile>>,
    agent: Option<RawAgent>,
    notify: Option<notify::RawNotify>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    idle_timeout: Option<Spanned<u64>>,
}

/// The agent's settings (`[agent]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSettings {
    /// Idle minutes after which the agent wipes a session ([`DEFAULT_IDLE_TIMEOUT_MINUTES`] unless
    /// set).
    pub idle_timeout_minutes: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    vault: Option<PathBuf>,
    mfa_account: Option<String>,
    seal_account: Option<String>,
    mfa_serial: Option<String>,
    region: Option<String>,
    sts_endpoint: Option<Spanned<String>>,
    session_duration: Option<Spanned<u64>>,
    reader: Option<String>,
    role_arn: Option<Spanned<String>>,
    role_session_name: Option<Spanned<String>>,
    connect_timeout_secs: Option<Spanned<u64>>,
    call_timeout_secs: Option<Spanned<u64>>,
    rotate_after_days: Option<Spanned<u32>>,
    deactivate_after_days: Option<Spanned<u32>>,
    delete_after_days: Option<Spanned<u32>>,
    drill_role: Option<Spanned<String>>,
    drill_accounts: Option<Spanned<Vec<String>>>,
    drill_max_session: Option<Spanned<u64>>,
    drill_other_users: Option<Spanned<Vec<String>>>,
    drill_role_overrides: Option<Spanned<BTreeMap<String, String>>>,
    drill_rule: Option<Spanned<String>>,
    drill_role_policies: Option<Spanned<Vec<String>>>,
    notify: Option<notify::RawNotify>,
    require_ticket: Option<bool>,
    ticket_pattern: Option<Spanned<String>>,
}

/// The drill's settings of a profile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrillSettings {
    /// The role name tried in every account; `None`: the name of `role_arn`'s role.
    pub role: Option<String>,
    /// The accounts tried without `--organization` or `--accounts`.
    pub accounts: Vec<String>,
    /// The roles' expected `MaxSessionDuration`, seconds ([`DEFAULT_DRILL_MAX_SESSION_SECS`]).
    pub max_session_secs: u64,
    /// Other break-glass users the roles may trust (IAM user ARNs).
    pub other_users: Vec<String>,
    /// Account id or OU id (`ou-…`: every account under it, down to the next OU named) → the
    /// role name tried there instead.
    pub role_overrides: BTreeMap<String, String>,
    /// An EventBridge rule every account must have, enabled (the alert rule).
    pub rule: Option<String>,
    /// Managed policies (ARNs) the role must have attached.
    pub role_policies: Vec<String>,
}

/// The roles' expected `MaxSessionDuration` when the profile sets none: one hour, the longest
/// a session chained from the two-person session can last anyway.
pub const DEFAULT_DRILL_MAX_SESSION_SECS: u64 = 3600;

/// Whether `id` is an AWS account id: exactly 12 digits.
pub fn is_account_id(id: &str) -> bool {
    id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit())
}

/// One profile with its defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The profile's name (`[profiles.NAME]`).
    pub name: String,
    /// The vault file (default `DATA/vaults/NAME.vault`).
    pub vault: PathBuf,
    /// The OATH account on the token that makes the MFA codes (default `breakglass:NAME`).
    pub mfa_account: String,
    /// The OATH credential of the OATH seal factor (default [`DEFAULT_SEAL_ACCOUNT`]).
    pub seal_account: String,
    /// The MFA device's ARN, informational: the vault's slots hold the real ones.
    pub mfa_serial: Option<String>,
    /// The region of the STS calls (default [`DEFAULT_REGION`]).
    pub region: String,
    /// An explicit STS endpoint URL; `None`: `AWS_ENDPOINT_URL_STS`, `AWS_ENDPOINT_URL`, else
    /// the region's ([`crate::aws::endpoint::resolve`]).
    pub sts_endpoint: Option<String>,
    /// GetSessionToken duration, in seconds, within [`SESSION_DURATION_SECS`].
    pub session_duration_secs: u64,
    /// Part of the reader's name (case-insensitive), to choose among several readers.
    pub reader: Option<String>,
    /// A role the agent assumes with the session; its sessions are handed out instead.
    pub role_arn: Option<String>,
    /// RoleSessionName pattern with `{password_holder}` and `{token_holder}`.
    pub role_session_name: Option<String>,
    /// Time to establish one connection to AWS (STS, IAM, the sign-in endpoint), seconds,
    /// within [`CONNECT_TIMEOUT_SECS`].
    pub connect_timeout_secs: u64,
    /// Time for a whole AWS call, every attempt and the waits between them included, seconds,
    /// within [`CALL_TIMEOUT_SECS`] and at least `connect_timeout_secs`.
    pub call_timeout_secs: u64,
    /// When the access key is rotated and the old one retired.
    pub rotation: RotationPolicy,
    /// What `drill` tries.
    pub drill: DrillSettings,
    /// Where notices go: the profile's `[profiles.NAME.notify]`, else the file's `[notify]`.
    pub notify: Notify,
    /// Whether a ticket is needed, and its pattern (`require_ticket`, `ticket_pattern`).
    pub ticket: TicketPolicy,
}

impl Profile {
    /// A profile with every default, for `enroll` of a profile not yet in the file.
    pub fn defaults(name: &str, paths: &Paths) -> Self {
        Self {
            name: name.to_owned(),
            vault: paths.default_vault(name),
            mfa_account: format!("breakglass:{name}"),
            seal_account: DEFAULT_SEAL_ACCOUNT.to_owned(),
            mfa_serial: None,
            region: DEFAULT_REGION.to_owned(),
            sts_endpoint: None,
            session_duration_secs: DEFAULT_SESSION_DURATION_SECS,
            reader: None,
            role_arn: None,
            role_session_name: None,
            connect_timeout_secs: DEFAULT_CONNECT_TIMEOUT_SECS,
            call_timeout_secs: DEFAULT_CALL_TIMEOUT_SECS,
            rotation: RotationPolicy::default(),
            drill: DrillSettings {
                max_session_secs: DEFAULT_DRILL_MAX_SESSION_SECS,
                ..DrillSettings::default()
            },
            notify: Notify::default(),
            ticket: TicketPolicy::default(),
        }
    }

    /// The TOML section that [`load`] reads back as this profile.
    pub fn to_toml(&self) -> String {
        let mut s = format!("[profiles.{}]\n", toml_key(&self.name));
        let q = |v: &str| toml::Value::String(v.to_owned()).to_string();
        s += &format!("vault = {}\n", q(&self.vault.to_string_lossy()));
        s += &format!("mfa_account = {}\n", q(&self.mfa_account));
        s += &format!("seal_account = {}\n", q(&self.seal_account));
        if let Some(serial) = &self.mfa_serial {
            s += &format!("mfa_serial = {}\n", q(serial));
        }
        s += &format!("region = {}\n", q(&self.region));
        if let Some(e) = &self.sts_endpoint {
            s += &format!("sts_endpoint = {}\n", q(e));
        }
        s += &format!("session_duration = {}\n", self.session_duration_secs);
        if let Some(r) = &self.reader {
            s += &format!("reader = {}\n", q(r));
        }
        if let Some(r) = &self.role_arn {
            s += &format!("role_arn = {}\n", q(r));
        }
        if let Some(r) = &self.role_session_name {
            s += &format!("role_session_name = {}\n", q(r));
        }
        if self.connect_timeout_secs != DEFAULT_CONNECT_TIMEOUT_SECS {
            s += &format!("connect_timeout_secs = {}\n", self.connect_timeout_secs);
        }
        if self.call_timeout_secs != DEFAULT_CALL_TIMEOUT_SECS {
            s += &format!("call_timeout_secs = {}\n", self.call_timeout_secs);
        }
        if self.rotation != RotationPolicy::default() {
            let r = self.rotation;
            s += &format!("rotate_after_days = {}\n", r.rotate_after_days);
            s += &format!("deactivate_after_days = {}\n", r.deactivate_after_days);
            s += &format!("delete_after_days = {}\n", r.delete_after_days);
        }
        s
    }
}

/// A value of the config file or of a flag that is not valid; the wording is what users read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BadValue {
    /// See [`check_profile_name`].
    #[error("profile name {0:?} must be 1-64 characters without '/' or control characters")]
    ProfileName(String),
    /// See [`check_endpoint`].
    #[error(
        "endpoint {0:?} must be https:// (or http:// to 127.0.0.1, [::1] or localhost for tests)"
    )]
    Endpoint(String),
    /// See [`check_role_arn`].
    #[error("role_arn {0:?} is not an IAM role ARN (arn:aws:iam::123456789012:role/NAME)")]
    RoleArn(String),
    /// See [`check_session_name_pattern`].
    #[error("role_session_name {0:?} may only use {{password_holder}} and {{token_holder}}")]
    SessionNamePattern(String),
}

/// A profile name: 1-64 characters, no `/` (it names the vault file), no control characters.
pub fn check_profile_name(name: &str) -> Result<(), BadValue> {
    if name.is_empty()
        || name.chars().count() > 64
        || name.contains('/')
        || name.chars().any(char::is_control)
        || name == "."
        || name == ".."
    {
        return Err(BadValue::ProfileName(name.to_owned()));
    }
    Ok(())
}

/// An STS endpoint: `https://…`, or `http://` to a loopback host (tests, the sandbox): the
/// endpoint policy of every AWS call ([`crate::aws::endpoint::allowed`]).
pub fn check_endpoint(url: &str) -> Result<(), BadValue> {
    if crate::aws::endpoint::allowed(url) {
        Ok(())
    } else {
        Err(BadValue::Endpoint(url.to_owned()))
    }
}

fn toml_key(k: &str) -> String {
    if !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        k.to_owned()
    } else {
        toml::Value::String(k.to_owned()).to_string()
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

/// An IAM role ARN: `arn:PARTITION:iam::ACCOUNT:role/PATH/NAME`.
pub fn check_role_arn(arn: &str) -> Result<(), BadValue> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "iam"
        && parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5]
            .strip_prefix("role/")
            .is_some_and(|n| !n.is_empty());
    if ok {
        Ok(())
    } else {
        Err(BadValue::RoleArn(arn.to_owned()))
    }
}

/// A RoleSessionName pattern: only the two known placeholders.
pub fn check_session_name_pattern(pattern: &str) -> Result<(), BadValue> {
    let rest = pattern
        .replace("{password_holder}", "")
        .replace("{token_holder}", "");
    if rest.contains('{') || rest.contains('}') {
        return Err(BadValue::SessionNamePattern(pattern.to_owned()));
    }
    Ok(())
}

fn read_file(text: &str, path: &Path) -> Result<File, Error> {
    toml::from_str(text).map_err(|e| Error::Invalid {
        path: path.display().to_string(),
        line: line_of(text, e.span().map_or(0, |s| s.start)),
        message: e.message().to_owned(),
    })
}

/// The `[agent]` settings of a config file's text.
pub fn parse_agent(text: &str, path: &Path) -> Result<AgentSettings, Error> {
    let file = read_file(text, path)?;
    let mut out = AgentSettings {
        idle_timeout_minutes: DEFAULT_IDLE_TIMEOUT_MINUTES,
    };
    if let Some(t) = file.agent.and_then(|a| a.idle_timeout) {
        if !IDLE_TIMEOUT_MINUTES.contains(t.get_ref()) {
            return Err(Error::Invalid {
                path: path.display().to_string(),
                line: line_of(text, t.span().start),
                message: format!(
                    "idle_timeout {} is out of range: use 1 to 1440 minutes",
                    t.get_ref()
                ),
            });
        }
        out.idle_timeout_minutes = *t.get_ref();
    }
    Ok(out)
}

/// Reads the `[agent]` settings; a missing file has the defaults.
pub fn load_agent(paths: &Paths) -> Result<AgentSettings, Error> {
    match std::fs::read_to_string(&paths.config) {
        Ok(text) => parse_agent(&text, &paths.config),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => parse_agent("", &paths.config),
        Err(source) => Err(Error::Read {
            path: paths.config.display().to_string(),
            source,
        }),
    }
}

/// Parses a config file's text; errors carry `path:line`.
pub fn parse(text: &str, path: &Path, paths: &Paths) -> Result<BTreeMap<String, Profile>, Error> {
    let invalid = |offset: usize, message: String| Error::Invalid {
        path: path.display().to_string(),
        line: line_of(text, offset),
        message,
    };
    let file = read_file(text, path)?;
    let global = match file.notify {
        Some(raw) => notify::notify(raw).map_err(|(pos, m)| invalid(pos, m))?,
        None => Notify::default(),
    };
    let mut out = BTreeMap::new();
    for (name, raw) in file.profiles {
        let at = raw.span().start;
        let raw = raw.into_inner();
        let mut p = Profile::defaults(&name, paths);
        check_profile_name(&name).map_err(|m| invalid(at, m.to_string()))?;
        if let Some(v) = raw.vault {
            p.vault = v;
        }
        if let Some(d) = raw.session_duration {
            if !SESSION_DURATION_SECS.contains(d.get_ref()) {
                return Err(invalid(
                    d.span().start,
                    format!(
                        "session_duration {} is out of range: use 900 to 129600 seconds",
                        d.get_ref()
                    ),
                ));
            }
            p.session_duration_secs = *d.get_ref();
        }
        if let Some(e) = raw.sts_endpoint {
            check_endpoint(e.get_ref()).map_err(|m| invalid(e.span().start, m.to_string()))?;
            p.sts_endpoint = Some(e.into_inner());
        }
        p.mfa_account = raw.mfa_account.unwrap_or(p.mfa_account);
        p.seal_account = raw.seal_account.unwrap_or(p.seal_account);
        p.mfa_serial = raw.mfa_serial;
        p.region = raw.region.unwrap_or(p.region);
        p.reader = raw.reader;
        if let Some(r) = raw.role_arn {
            check_role_arn(r.get_ref()).map_err(|m| invalid(r.span().start, m.to_string()))?;
            p.role_arn = Some(r.into_inner());
        }
        if let Some(n) = raw.role_session_name {
            check_session_name_pattern(n.get_ref())
                .map_err(|m| invalid(n.span().start, m.to_string()))?;
            p.role_session_name = Some(n.into_inner());
        }
        let timeout = |t: Option<Spanned<u64>>,
                       key: &str,
                       range: &std::ops::RangeInclusive<u64>,
                       default: u64|
         -> Result<(u64, usize), Error> {
            match t {
                None => Ok((default, at)),
                Some(t) if range.contains(t.get_ref()) => Ok((*t.get_ref(), t.span().start)),
                Some(t) => Err(invalid(
                    t.span().start,
                    format!(
                        "{key} {} is out of range: use {} to {} seconds",
                        t.get_ref(),
                        range.start(),
                        range.end()
                    ),
                )),
            }
        };
        let (connect, _) = timeout(
            raw.connect_timeout_secs,
            "connect_timeout_secs",
            &CONNECT_TIMEOUT_SECS,
            DEFAULT_CONNECT_TIMEOUT_SECS,
        )?;
        let (call, call_at) = timeout(
            raw.call_timeout_secs,
            "call_timeout_secs",
            &CALL_TIMEOUT_SECS,
            DEFAULT_CALL_TIMEOUT_SECS,
        )?;
        if call < connect {
            return Err(invalid(
                call_at,
                format!(
                    "call_timeout_secs {call} is shorter than connect_timeout_secs {connect}: a \
                     call needs at least one connection"
                ),
            ));
        }
        p.connect_timeout_secs = connect;
        p.call_timeout_secs = call;
        p.rotation = rotation_policy(
            at,
            raw.rotate_after_days,
            raw.deactivate_after_days,
            raw.delete_after_days,
        )
        .map_err(|(pos, m)| invalid(pos, m))?;
        if let Some(r) = raw.drill_role {
            check_role_name(r.get_ref()).map_err(|m| invalid(r.span().start, m))?;
            p.drill.role = Some(r.into_inner());
        }
        if let Some(a) = raw.drill_accounts {
            if let Some(bad) = a.get_ref().iter().find(|id| !is_account_id(id)) {
                return Err(invalid(
                    a.span().start,
                    format!("drill_accounts holds {bad:?}, which is not a 12-digit account id"),
                ));
            }
            p.drill.accounts = a.into_inner();
        }
        if let Some(m) = raw.drill_max_session {
            if !(3600..=43_200).contains(m.get_ref()) {
                return Err(invalid(
                    m.span().start,
                    format!(
                        "drill_max_session {} is out of range: use 3600 to 43200 seconds (IAM's limits)",
                        m.get_ref()
                    ),
                ));
            }
            p.drill.max_session_secs = *m.get_ref();
        }
        if let Some(u) = raw.drill_other_users {
            if let Some(bad) = u
                .get_ref()
                .iter()
                .find(|arn| crate::aws::iam::user_name(arn).is_none())
            {
                return Err(invalid(
                    u.span().start,
                    format!("drill_other_users holds {bad:?}, which is not an IAM user ARN"),
                ));
            }
            p.drill.other_users = u.into_inner();
        }
        if let Some(o) = raw.drill_role_overrides {
            for (id, role) in o.get_ref() {
                if !is_account_id(id) && !crate::aws::org::is_ou_id(id) {
                    return Err(invalid(
                        o.span().start,
                        format!(
                            "drill_role_overrides names {id:?}, which is neither a 12-digit account id nor an OU id (ou-…)"
                        ),
                    ));
                }
                check_role_name(role).map_err(|m| invalid(o.span().start, m))?;
            }
            p.drill.role_overrides = o.into_inner();
        }
        if let Some(r) = raw.drill_rule {
            let ok = (1..=64).contains(&r.get_ref().len())
                && r.get_ref()
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
            if !ok {
                return Err(invalid(
                    r.span().start,
                    format!(
                        "drill_rule {:?} is not an EventBridge rule name (1-64 of letters, digits, . _ -)",
                        r.get_ref()
                    ),
                ));
            }
            p.drill.rule = Some(r.into_inner());
        }
        if let Some(list) = raw.drill_role_policies {
            if let Some(bad) = list
                .get_ref()
                .iter()
                .find(|a| !a.starts_with("arn:") || !a.contains(":policy/"))
            {
                return Err(invalid(
                    list.span().start,
                    format!("drill_role_policies holds {bad:?}, which is not a policy ARN"),
                ));
            }
            p.drill.role_policies = list.into_inner();
        }
        p.notify = match raw.notify {
            Some(own) => notify::notify(own).map_err(|(pos, m)| invalid(pos, m))?,
            None => global.clone(),
        };
        p.ticket.required = raw.require_ticket.unwrap_or(false);
        if let Some(t) = raw.ticket_pattern {
            notify::check_ticket_pattern(t.get_ref()).map_err(|m| invalid(t.span().start, m))?;
            p.ticket.pattern = Some(t.into_inner());
        }
        out.insert(name, p);
    }
    Ok(out)
}

/// IAM's role names: 1-64 of `[\w+=,.@-]`.
fn check_role_name(name: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "role name {name:?} must be 1-64 letters, digits or _+=,.@- (IAM's role names)"
        ))
    }
}

/// The rotation policy of a profile: each day in [`POLICY_DAYS`], and rotation before
/// deactivation before deletion. Errors carry the offset of the value at fault.
fn rotation_policy(
    at: usize,
    rotate: Option<Spanned<u32>>,
    deactivate: Option<Spanned<u32>>,
    delete: Option<Spanned<u32>>,
) -> Result<RotationPolicy, (usize, String)> {
    let d = RotationPolicy::default();
    let day = |v: Option<Spanned<u32>>, key: &str, default: u32| match v {
        None => Ok((default, at)),
        Some(v) if POLICY_DAYS.contains(v.get_ref()) => Ok((*v.get_ref(), v.span().start)),
        Some(v) => Err((
            v.span().start,
            format!(
                "{key} {} is out of range: use {} to {} days",
                v.get_ref(),
                POLICY_DAYS.start(),
                POLICY_DAYS.end()
            ),
        )),
    };
    let (rotate, _) = day(rotate, "rotate_after_days", d.rotate_after_days)?;
    let (deactivate, deactivate_at) =
        day(deactivate, "deactivate_after_days", d.deactivate_after_days)?;
    let (delete, delete_at) = day(delete, "delete_after_days", d.delete_after_days)?;
    if deactivate <= rotate {
        return Err((deactivate_at, format!("deactivate_after_days {deactivate} must be more than rotate_after_days {rotate}: the old key must outlive the rotation")));
    }
    if delete <= deactivate {
        return Err((delete_at, format!("delete_after_days {delete} must be more than deactivate_after_days {deactivate}: a key is deactivated before it is deleted")));
    }
    Ok(RotationPolicy {
        rotate_after_days: rotate,
        deactivate_after_days: deactivate,
        delete_after_days: delete,
    })
}

/// Reads every profile; a missing file has none.
pub fn load_all(paths: &Paths) -> Result<BTreeMap<String, Profile>, Error> {
    match std::fs::read_to_string(&paths.config) {
        Ok(text) => parse(&text, &paths.config, paths),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(source) => Err(Error::Read {
            path: paths.config.display().to_string(),
            source,
        }),
    }
}

/// Reads one profile.
pub fn load(paths: &Paths, name: &str) -> Result<Profile, Error> {
    let mut all = load_all(paths)?;
    all.remove(name).ok_or_else(|| Error::NoProfile {
        name: name.to_owned(),
        path: paths.config.display().to_string(),
        known: all.keys().cloned().collect(),
    })
}

/// Appends a profile section to the config file (atomically; comments are kept).
pub fn add_profile(paths: &Paths, profile: &Profile) -> std::io::Result<()> {
    let mut text = match std::fs::read_to_string(&paths.config) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    if !text.is_empty() {
        text.push('\n');
    }
    text += &profile.to_toml();
    crate::files::atomic_write(&paths.config, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths() -> Paths {
        Paths::from_lookup(|k| (k == "HOME").then(|| PathBuf::from("/home/op"))).unwrap()
    }

    #[test]
    fn xdg_defaults_and_overrides() {
        let p = paths();
        assert_eq!(
            p.config,
            PathBuf::from("/home/op/.config/breakglass/config.toml")
        );
        assert_eq!(
            p.audit_log(),
            PathBuf::from("/home/op/.local/state/breakglass/audit.log")
        );
        let q = Paths::from_lookup(|k| match k {
            "BREAKGLASS_CONFIG" => Some("/etc/bg.toml".into()),
            "XDG_DATA_HOME" => Some("/d".into()),
            "XDG_STATE_HOME" => Some("/s".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(q.config, PathBuf::from("/etc/bg.toml"));
        assert_eq!(
            q.default_vault("x"),
            PathBuf::from("/d/breakglass/vaults/x.vault")
        );
        assert!(Paths::from_lookup(|_| None).is_err());
    }

    #[test]
    fn notify_is_global_unless_a_profile_has_its_own_and_bad_values_name_their_line() {
        let p = paths();
        let text = "[notify]\ntimeout_secs = 7\n[notify.sns]\ntopic = \"arn:aws:sns:eu-west-1:111122223333:alerts\"\nrequired = true\n[[notify.webhooks]]\nurl = \"https://hooks.example.com/services/X\"\n\n[profiles.a]\nrequire_ticket = true\nticket_pattern = \"INC[0-9]+\"\n\n[profiles.b]\n[[profiles.b.notify.webhooks]]\nname = \"teams\"\nurl = \"http://127.0.0.1:9/x\"\n";
        let parsed = parse(text, Path::new("/c.toml"), &p).unwrap();
        let a = &parsed["a"];
        assert_eq!(a.notify.timeout_secs, 7);
        let sns = a.notify.sns.as_ref().unwrap();
        assert_eq!((sns.region.as_str(), sns.required), ("eu-west-1", true));
        assert_eq!(a.notify.webhooks[0].name, "hooks.example.com");
        assert!(!a.notify.webhooks[0].required);
        assert!(a.ticket.required);
        assert_eq!(a.ticket.pattern.as_deref(), Some("INC[0-9]+"));
        let b = &parsed["b"];
        assert!(b.notify.sns.is_none());
        assert_eq!(b.notify.webhooks[0].name, "teams");
        assert_eq!(b.notify.timeout_secs, DEFAULT_NOTIFY_TIMEOUT_SECS);
        assert!(!b.ticket.required);

        let e = |text: &str| {
            parse(text, Path::new("/c.toml"), &p)
                .unwrap_err()
                .to_string()
        };
        let msg = e("[notify]\n[[notify.webhooks]]\nurl = \"http://hooks.example.com/x\"\n");
        assert!(
            msg.starts_with("/c.toml:3: webhook url") && msg.contains("https://"),
            "{msg}"
        );
        let msg = e("[notify.sns]\ntopic = \"arn:aws:sqs:us-east-1:111122223333:q\"\n");
        assert!(
            msg.starts_with("/c.toml:2: topic") && msg.contains("SNS topic ARN"),
            "{msg}"
        );
        let msg = e("[notify]\ntimeout_secs = 0\n");
        assert!(
            msg.starts_with("/c.toml:2: timeout_secs 0 is out of range"),
            "{msg}"
        );
        let msg = e("[profiles.a]\nticket_pattern = \"INC[\"\n");
        assert!(msg.starts_with("/c.toml:2: ticket_pattern"), "{msg}");
        let msg = e("[[notify.webhooks]]\nurl = \"https://a/1\"\n[[notify.webhooks]]\nurl = \"https://a/2\"\n");
        assert!(msg.contains("two webhooks are named \"a\""), "{msg}");
    }

    #[test]
    fn the_readme_config_sample_is_a_valid_config() {
        let readme = include_str!("../README.md");
        let section = readme.split("## Configuration").nth(1).unwrap();
        let sample = section
            .split("```toml\n")
            .nth(1)
            .and_then(|s| s.split("```").next())
            .unwrap();
        let parsed = parse(sample, Path::new("README.md"), &paths()).unwrap();
        let prod = &parsed["prod"];
        assert!(prod.ticket.required && prod.notify.sns.as_ref().unwrap().required);
        assert_eq!(prod.notify.webhooks.len(), 1);
    }

    #[test]
    fn round_trip_and_defaults() {
        let p = paths();
        let mut prof = Profile::defaults("prod", &p);
        prof.sts_endpoint = Some("http://127.0.0.1:4566".into());
        prof.reader = Some("Yubico".into());
        prof.role_arn = Some("arn:aws:iam::210987654321:role/BreakGlass".into());
        prof.role_session_name = Some("bg-{password_holder}-{token_holder}".into());
        let parsed = parse(&prof.to_toml(), Path::new("c.toml"), &p).unwrap();
        assert_eq!(parsed["prod"], prof);
        prof.connect_timeout_secs = 1;
        prof.call_timeout_secs = 2;
        let parsed = parse(&prof.to_toml(), Path::new("c.toml"), &p).unwrap();
        assert_eq!(parsed["prod"], prof);
    }

    #[test]
    fn network_timeouts_have_defaults_and_bounds() {
        let p = paths();
        let parsed = parse("[profiles.prod]\n", Path::new("/c.toml"), &p).unwrap();
        assert_eq!(
            (
                parsed["prod"].connect_timeout_secs,
                parsed["prod"].call_timeout_secs
            ),
            (3, 10)
        );
        let e = |text: &str| {
            parse(text, Path::new("/c.toml"), &p)
                .unwrap_err()
                .to_string()
        };
        let msg = e("[profiles.prod]\nconnect_timeout_secs = 0\n");
        assert!(
            msg.starts_with("/c.toml:2: connect_timeout_secs 0 is out of range"),
            "{msg}"
        );
        let msg = e("[profiles.prod]\ncall_timeout_secs = 301\n");
        assert!(
            msg.starts_with("/c.toml:2: call_timeout_secs 301 is out of range"),
            "{msg}"
        );
        let msg = e("[profiles.prod]\nconnect_timeout_secs = 20\n\ncall_timeout_secs = 5\n");
        assert!(
            msg.starts_with("/c.toml:4: call_timeout_secs 5 is shorter"),
            "{msg}"
        );
        assert!(parse(
            "[profiles.prod]\nconnect_timeout_secs = -1\n",
            Path::new("/c.toml"),
            &p
        )
        .is_err());
    }

    #[test]
    fn rotation_policy_defaults_bounds_order_and_round_trip() {
        let p = paths();
        let parsed = parse("[profiles.prod]\n", Path::new("/c.toml"), &p).unwrap();
        let r = parsed["prod"].rotation;
        assert_eq!(r, RotationPolicy::default());
        // Rotated on day 90: deactivated 10 days later (day 100), deleted 20 days later (110).
        let day = RotationPolicy::DAY;
        assert_eq!(r.rotation_due(0), 90 * day);
        assert_eq!(r.deactivation_due(90 * day), 100 * day);
        assert_eq!(r.deletion_due(90 * day), 110 * day);
        let text = "[profiles.prod]\nrotate_after_days = 30\ndeactivate_after_days = 31\ndelete_after_days = 45\n";
        let mut prof = parse(text, Path::new("/c.toml"), &p).unwrap()["prod"].clone();
        assert_eq!(
            (
                prof.rotation.deactivation_due(0),
                prof.rotation.deletion_due(0)
            ),
            (day, 15 * day)
        );
        prof.vault = p.default_vault("prod");
        let again = parse(&prof.to_toml(), Path::new("/c.toml"), &p).unwrap();
        assert_eq!(again["prod"], prof);
        let e = |text: &str| {
            parse(text, Path::new("/c.toml"), &p)
                .unwrap_err()
                .to_string()
        };
        let msg = e("[profiles.prod]\nrotate_after_days = 0\n");
        assert!(
            msg.starts_with("/c.toml:2: rotate_after_days 0 is out of range"),
            "{msg}"
        );
        let msg = e("[profiles.prod]\nrotate_after_days = 100\n");
        assert!(
            msg.starts_with(
                "/c.toml:1: deactivate_after_days 100 must be more than rotate_after_days 100"
            ),
            "{msg}"
        );
        let msg = e("[profiles.prod]\ndeactivate_after_days = 95\ndelete_after_days = 95\n");
        assert!(
            msg.starts_with(
                "/c.toml:3: delete_after_days 95 must be more than deactivate_after_days 95"
            ),
            "{msg}"
        );
    }

    #[test]
    fn session_duration_and_idle_timeout_accept_their_ranges_and_nothing_outside() {
        let p = paths();
        let duration = |d: u64| {
            parse(
                &format!("[profiles.prod]\nsession_duration = {d}\n"),
                Path::new("/c.toml"),
                &p,
            )
            .map(|m| m["prod"].session_duration_secs)
        };
        assert_eq!(duration(900).unwrap(), 900);
        assert_eq!(duration(129_600).unwrap(), 129_600);
        for bad in [899, 129_601] {
            let e = duration(bad).unwrap_err().to_string();
            assert!(
                e.contains(&format!("session_duration {bad} is out of range")),
                "{e}"
            );
        }
        assert_eq!(
            parse("[profiles.prod]\n", Path::new("/c.toml"), &p).unwrap()["prod"]
                .session_duration_secs,
            3600
        );
        let idle = |t: &str| parse_agent(t, Path::new("/c.toml"));
        assert_eq!(idle("").unwrap().idle_timeout_minutes, 60, "the default");
        assert_eq!(
            idle("[agent]\nidle_timeout = 1440\n")
                .unwrap()
                .idle_timeout_minutes,
            1440
        );
        let e = idle("[agent]\nidle_timeout = 1441\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("idle_timeout 1441 is out of range"), "{e}");
    }

    #[test]
    fn errors_name_file_and_line() {
        let p = paths();
        let text = "[profiles.prod]\nregion = \"eu-west-1\"\nsession_duration = 60\n";
        let e = parse(text, Path::new("/c.toml"), &p)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("/c.toml:3: session_duration 60 is out of range"),
            "{e}"
        );
        let e = parse(
            "[profiles.prod]\nregoin = \"x\"\n",
            Path::new("/c.toml"),
            &p,
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("/c.toml:2:") && e.contains("regoin"), "{e}");
        let e = parse(
            "[profiles.prod]\nsts_endpoint = \"http://evil.example\"\n",
            Path::new("/c.toml"),
            &p,
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("/c.toml:2:"), "{e}");
        let e = parse(
            "[profiles.prod]\n\nrole_arn = \"arn:aws:iam::12:role/x\"\n",
            Path::new("/c.toml"),
            &p,
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("/c.toml:3: role_arn"), "{e}");
        let e = parse(
            "[profiles.prod]\nrole_session_name = \"{user}\"\n",
            Path::new("/c.toml"),
            &p,
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("/c.toml:2: role_session_name"), "{e}");
        let e = parse_agent("[agent]\nidle_timeout = 0\n", Path::new("/c.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/c.toml:2: idle_timeout 0"), "{e}");
        assert_eq!(
            parse_agent("[agent]\nidle_timeout = 5\n", Path::new("/c.toml"))
                .unwrap()
                .idle_timeout_minutes,
            5
        );
        let e = parse("[profiles.prod\n", Path::new("/c.toml"), &p)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/c.toml:1:"), "{e}");
    }
}
