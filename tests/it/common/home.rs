//! A temporary home for the command-line tests (XDG directories, its own agent socket), the
//! pty helpers for the ceremonies, and moto_server.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_credential_types::Credentials;
use rexpect::session::PtySession;

use super::BIN;

pub const PASSPHRASE: &str = "two people, one vault";

/// A temporary home with XDG directories.
pub struct Home {
    pub dir: tempfile::TempDir,
    /// Seconds every command's clock runs ahead (`BREAKGLASS_CLOCK_AHEAD_SECS`).
    ahead: std::sync::atomic::AtomicU64,
    /// The uid (and gid) every command runs as (`setpriv`); `None`: this process's.
    user: Option<u32>,
}

impl Home {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("run")).unwrap();
        Self {
            dir,
            ahead: Default::default(),
            user: None,
        }
    }

    /// A home owned by `uid`, whose commands all run as `uid` (root only: `setpriv`).
    pub fn of_user(uid: u32) -> Self {
        let mut home = Self::new();
        let status = Command::new("chown")
            .args(["-R", &format!("{uid}:{uid}")])
            .arg(home.dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "chown the home to {uid}");
        home.user = Some(uid);
        home
    }

    /// `program ARGS` in this home, as its user.
    pub fn run_as(&self, program: &str, args: &[&str]) -> Command {
        let mut cmd = match self.user {
            // The terminal (a pty the test made, as root) is handed to the user first, as a
            // login would: prompts reopen it.
            Some(uid) => {
                let mut c = Command::new("sh");
                c.args([
                    "-c",
                    &format!(
                        "chown {uid} \"$(tty)\" 2>/dev/null; exec setpriv --reuid={uid} --regid={uid} --clear-groups -- \"$0\" \"$@\""
                    ),
                    program,
                ]);
                c
            }
            None => Command::new(program),
        };
        cmd.args(args);
        self.env(&mut cmd);
        cmd
    }

    /// Moves the clock of every later command ahead by `secs`, and the emulator's with it:
    /// the next MFA windows are fresh at once, where a real run would wait for them.
    pub fn skip_ahead(&self, sts: Option<&breakglass::sandbox::sts::Sts>, secs: u64) {
        use std::sync::atomic::Ordering;
        let total = self.ahead.fetch_add(secs, Ordering::SeqCst) + secs;
        if let Some(sts) = sts {
            sts.set_clock_offset(i64::try_from(total).unwrap());
        }
    }

    /// `$XDG_RUNTIME_DIR/breakglass`: the agent's socket directory.
    pub fn runtime(&self) -> PathBuf {
        self.dir.path().join("run/breakglass")
    }

    pub fn config_file(&self) -> PathBuf {
        self.dir.path().join("config/breakglass/config.toml")
    }

    /// `breakglass ARGS` in this home.
    pub fn command(&self, args: &[&str]) -> Command {
        self.run_as(BIN, args)
    }

    /// Points `cmd` at this home: XDG directories, the agent socket, no AWS credentials.
    pub fn env(&self, cmd: &mut Command) {
        cmd.env_remove("BREAKGLASS_CONFIG")
            .env_remove("BREAKGLASS_PROFILE")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ENDPOINT_URL")
            .env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env("XDG_DATA_HOME", self.dir.path().join("data"))
            .env("XDG_STATE_HOME", self.dir.path().join("state"))
            .env("XDG_RUNTIME_DIR", self.dir.path().join("run"))
            .env("AWS_CONFIG_FILE", self.dir.path().join("no-aws-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                self.dir.path().join("no-aws-credentials"),
            );
        match self.ahead.load(std::sync::atomic::Ordering::SeqCst) {
            0 => cmd.env_remove("BREAKGLASS_CLOCK_AHEAD_SECS"),
            secs => cmd.env("BREAKGLASS_CLOCK_AHEAD_SECS", secs.to_string()),
        };
    }

    pub fn vault(&self, profile: &str) -> PathBuf {
        self.dir
            .path()
            .join(format!("data/breakglass/vaults/{profile}.vault"))
    }

    /// A file in the state directory (`STATE/breakglass/NAME`).
    pub fn state_file(&self, name: &str) -> PathBuf {
        self.dir.path().join("state/breakglass").join(name)
    }

    pub fn audit(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("state/breakglass/audit.log"))
            .unwrap_or_default()
    }

    /// The audit log once it holds `needle`, for the records the agent writes after it has
    /// answered (a refused connection's): a test that reads the log as soon as the client
    /// exits may be a few milliseconds early. Hand-out records are written before the
    /// credentials leave: read those with [`Home::audit`].
    pub fn audit_with(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let log = self.audit();
            if log.contains(needle) || std::time::Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Every file under the home, as (path, bytes).
    pub fn files(&self) -> Vec<(PathBuf, Vec<u8>)> {
        fn walk(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
            for e in std::fs::read_dir(dir).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else if let Ok(b) = std::fs::read(&p) {
                    out.push((p, b));
                }
            }
        }
        let mut out = Vec::new();
        walk(self.dir.path(), &mut out);
        out
    }

    pub fn assert_no_secret(&self, secrets: &[(&str, &str)]) {
        let files = self.files();
        assert!(
            files.len() >= 3,
            "expected config, vault, audit log: {files:?}",
            files = files.iter().map(|f| &f.0).collect::<Vec<_>>()
        );
        for (path, bytes) in &files {
            for (what, secret) in secrets {
                assert!(secret.len() >= 8, "{what} too short to scan for");
                let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
                assert!(!found, "{what} found in {}", path.display());
            }
        }
    }
}

impl Drop for Home {
    /// Stops this home's agent (it would otherwise wait ten minutes before leaving).
    fn drop(&mut self) {
        if self.runtime().exists() {
            let _ = self
                .command(&["agent", "--stop"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

pub fn pty(cmd: Command, timeout_ms: u64) -> PtySession {
    rexpect::session::spawn_command(cmd, Some(timeout_ms)).expect("spawn on a pty")
}

/// Starts `breakglass enroll ARGS` on a pty and answers its first prompts: key lines first
/// (stdin is the terminal here), then the passphrase twice. The caller answers the rest.
pub fn start_enroll(
    home: &Home,
    args: &[&str],
    stdin_lines: &[&str],
    env: &[(&str, &str)],
) -> PtySession {
    let mut all = vec!["enroll"];
    all.extend_from_slice(args);
    let mut cmd = home.command(&all);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut p = pty(cmd, 30_000);
    for line in stdin_lines {
        p.send_line(line).unwrap();
    }
    p.exp_string("Password holder, type the vault passphrase (not shown): ")
        .unwrap();
    p.send_line(PASSPHRASE).unwrap();
    p.exp_string("Password holder, type the passphrase again: ")
        .unwrap();
    p.send_line(PASSPHRASE).unwrap();
    p
}

/// [`start_enroll`] to the end. Returns what it printed after the passphrase; asserts it
/// enrolled.
pub fn enroll(home: &Home, args: &[&str], stdin_lines: &[&str], env: &[(&str, &str)]) -> String {
    let mut p = start_enroll(home, args, stdin_lines, env);
    let out = p.exp_eof().unwrap();
    assert!(out.contains("Enrolled "), "enrolment failed:\n{out}");
    out
}

/// Answers a ceremony's prompts on `p` as Alice and Bob: the reason (when it is asked), both
/// names, the passphrase.
pub fn answer_ceremony(p: &mut PtySession, reason: Option<&str>) {
    if let Some(reason) = reason {
        p.exp_string("Why is the glass broken? ").unwrap();
        p.send_line(reason).unwrap();
    }
    for (ask, answer) in [
        ("Password holder, type your name: ", "Alice"),
        ("Token holder, type your name: ", "Bob"),
        (
            "Password holder, type the vault passphrase (not shown): ",
            PASSPHRASE,
        ),
    ] {
        p.exp_string(ask).unwrap();
        p.send_line(answer).unwrap();
    }
}

/// Answers a ceremony's name and passphrase prompts on `p` as Alice and Bob, as far as the
/// command asks them (it may end before: a refusal), running `first` when the first prompt
/// appears, before it is answered; returns everything it printed, to its end.
pub fn answer_until_end(p: &mut PtySession, first: impl FnOnce()) -> String {
    let mut first = Some(first);
    let mut out = String::new();
    for (prompt, answer) in [
        ("Password holder, type your name: ", "Alice"),
        ("Token holder, type your name: ", "Bob"),
        (
            "Password holder, type the vault passphrase (not shown): ",
            PASSPHRASE,
        ),
    ] {
        match p.exp_string(prompt) {
            Ok(before) => {
                if let Some(f) = first.take() {
                    f();
                }
                out += &before;
                out += prompt;
                p.send_line(answer).unwrap();
            }
            Err(rexpect::error::Error::EOF { got, .. }) => return out + &got,
            Err(e) => panic!("{e}\n{out}"),
        }
    }
    out + &p.exp_eof().unwrap()
}

/// Runs the unlock on a pty; returns everything it printed after the passphrase.
pub fn unlock(
    home: &Home,
    profile: &str,
    reader: &str,
    names: (&str, &str),
    passphrase: &str,
) -> String {
    let mut p = pty(
        home.command(&[
            "unlock",
            profile,
            "--reason",
            "pty test of the activation",
            "--print-json",
            "--reader",
            reader,
        ]),
        // No MFA window is waited for: a test that used one skips ahead (`Home::skip_ahead`).
        30_000,
    );
    use breakglass::ceremony::{names, Role};
    p.exp_string("Password holder, type your name: ").unwrap();
    p.send_line(names.0).unwrap();
    // A refused name ends the ceremony at once.
    if names::checked(Role::PasswordHolder, names.0).is_err() {
        return p.exp_eof().unwrap();
    }
    p.exp_string("Token holder, type your name: ").unwrap();
    p.send_line(names.1).unwrap();
    if names::checked(Role::TokenHolder, names.1).is_err() || names::same_person(names.0, names.1) {
        return p.exp_eof().unwrap();
    }
    p.exp_string("Password holder, type the vault passphrase (not shown): ")
        .unwrap();
    p.send_line(passphrase).unwrap();
    let out = p.exp_eof().unwrap();
    assert!(
        !out.contains("waiting for a fresh MFA time window"),
        "the test waited for wall-clock time; skip ahead instead (Home::skip_ahead):\n{out}"
    );
    out
}

pub fn session_json(out: &str) -> serde_json::Value {
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("{\"Version\""))
        .unwrap_or_else(|| panic!("no JSON in:\n{out}"));
    serde_json::from_str(line.trim()).unwrap()
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub fn sts_client(
    endpoint: &str,
    id: &str,
    secret: &str,
    token: Option<&str>,
) -> aws_sdk_sts::Client {
    let conf = aws_sdk_sts::Config::builder()
        .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
        .region(aws_sdk_sts::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(
            id,
            secret,
            token.map(str::to_owned),
            None,
            "test",
        ))
        .build();
    aws_sdk_sts::Client::from_conf(conf)
}

/// moto_server on a free loopback port, stopped on drop.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Moto {
    pub fn start(test: &str) -> Option<Self> {
        let exe = super::tool(test, "moto_server", "pip install 'moto[server]'")?;
        // The port is free when picked but moto takes seconds to bind it; if another test
        // took it meanwhile, moto exits and we try another. Only moto's own answer counts.
        for _ in 0..3 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut child = Command::new(&exe)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                if moto_answers(port) {
                    return Some(Self {
                        child,
                        endpoint: format!("http://127.0.0.1:{port}"),
                    });
                }
                assert!(Instant::now() < deadline, "moto_server did not start");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        panic!("moto_server exited three times before answering (ports taken?)");
    }
}

/// Whether moto's own API answers on `port` (not merely something accepting connections).
fn moto_answers(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
    if c.write_all(b"GET /moto-api/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    c.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// moto's IAM with user `breakglass`, its access key and a virtual MFA device.
pub struct MotoUser {
    pub iam: aws_sdk_iam::Client,
    pub key_id: String,
    pub secret: String,
    pub mfa_serial: String,
    /// The MFA device's base32 seed.
    pub seed: String,
}

impl Moto {
    pub fn breakglass_user(&self, rt: &tokio::runtime::Runtime) -> MotoUser {
        let iam = aws_sdk_iam::Client::from_conf(
            aws_sdk_iam::Config::builder()
                .behavior_version(aws_sdk_iam::config::BehaviorVersion::latest())
                .region(aws_sdk_iam::config::Region::new("us-east-1"))
                .endpoint_url(&self.endpoint)
                .credentials_provider(Credentials::new(
                    "AKIAADMIN0000000000",
                    "admin-secret-for-moto",
                    None,
                    None,
                    "test",
                ))
                .build(),
        );
        rt.block_on(iam.create_user().user_name("breakglass").send())
            .unwrap();
        let key = rt
            .block_on(iam.create_access_key().user_name("breakglass").send())
            .unwrap()
            .access_key
            .unwrap();
        let dev = rt
            .block_on(
                iam.create_virtual_mfa_device()
                    .virtual_mfa_device_name("breakglass")
                    .send(),
            )
            .unwrap()
            .virtual_mfa_device
            .unwrap();
        let seed = String::from_utf8(dev.base32_string_seed.unwrap().into_inner()).unwrap();
        MotoUser {
            iam,
            key_id: key.access_key_id,
            secret: key.secret_access_key,
            mfa_serial: dev.serial_number,
            seed,
        }
    }
}

impl MotoUser {
    /// Enables the MFA device for `breakglass` with two consecutive HOTP codes of its seed.
    pub fn enable_mfa(&self, rt: &tokio::runtime::Runtime) {
        let key = data_encoding::BASE32_NOPAD
            .decode(self.seed.as_bytes())
            .unwrap();
        let code = |step| {
            breakglass::token::otp::hotp(breakglass::token::otp::Algorithm::Sha1, &key, step, 6)
        };
        rt.block_on(
            self.iam
                .enable_mfa_device()
                .user_name("breakglass")
                .serial_number(&self.mfa_serial)
                .authentication_code1(code(1).as_str())
                .authentication_code2(code(2).as_str())
                .send(),
        )
        .unwrap();
    }
}

/// Enrols `profile` on the token in `reader` with an imported access key and an imported MFA
/// device (its base32 seed), and the light KDF: no IAM call and no TOTP window used, so an
/// unlock can follow at once. Returns what enrolment printed.
pub fn enroll_imported(
    home: &Home,
    profile: &str,
    endpoint: &str,
    reader: &str,
    mfa_serial: &str,
    (key_id, secret, seed): (&str, &str, &str),
) -> String {
    enroll(
        home,
        &light_enrolment(
            &[profile, "--import-key", "--mfa-serial", mfa_serial],
            endpoint,
            reader,
        ),
        &[key_id, secret, seed],
        &[],
    )
}

/// Enrols `profile` on the token in `reader` with a new access key and an MFA device made at
/// the emulator for user `breakglass` ([`enroll_imported`]: no IAM call, no TOTP window used);
/// returns the key's id and secret.
pub fn enrol_at_emulator(
    home: &Home,
    sts: &breakglass::sandbox::sts::Sts,
    profile: &str,
    reader: &str,
) -> (String, String) {
    use secrecy::ExposeSecret;
    sts.create_user("breakglass");
    let (key_id, key_secret) = sts.create_access_key("breakglass");
    let (serial, seed) = sts.create_mfa_device("breakglass", "breakglass-token");
    enroll_imported(
        home,
        profile,
        &sts.endpoint(),
        reader,
        &serial,
        (&key_id, key_secret.expose_secret(), &seed),
    );
    (key_id, key_secret.expose_secret().to_owned())
}

/// The light Argon2id parameters tests enrol with (fast; real vaults use the defaults).
pub const LIGHT_KDF: [&str; 6] = ["--kdf-memory", "1", "--kdf-passes", "1", "--kdf-lanes", "1"];

/// The seal factor tests enrol with unless they name one: the soft token has PIV, which
/// `enroll` would choose by default (and then need the attestation roots).
pub const OATH_FACTOR: [&str; 2] = ["--factor", "oath"];

/// `enroll` arguments: `head`, then the endpoint, the light KDF (accepted without
/// `--force-weak-kdf`: the endpoint is on this machine), the reader and, unless `head` names
/// one, the OATH factor.
pub fn light_enrolment<'a>(head: &[&'a str], endpoint: &'a str, reader: &'a str) -> Vec<&'a str> {
    let mut args = head.to_vec();
    args.extend(["--endpoint", endpoint]);
    args.extend(LIGHT_KDF);
    args.extend(["--reader", reader]);
    if !head.contains(&"--factor") {
        args.extend(OATH_FACTOR);
    }
    args
}
