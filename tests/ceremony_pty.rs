//! Enrolment and the two-person unlock driven through a real pseudo-terminal, with the soft
//! token behind the real pcscd (vpcd slot 00), against the embedded strict STS emulator and
//! against moto_server. Afterwards no secret may be found in any file written.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_credential_types::Credentials;
use rexpect::session::PtySession;
use secrecy::ExposeSecret;

use breakglass::sandbox::sts::Sts;
use common::*;

const SLOT: u16 = 0;
const PASSPHRASE: &str = "two people, one vault";

/// A temporary home with XDG directories.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env_remove("BREAKGLASS_CONFIG")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_ENDPOINT_URL")
            .env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env("XDG_DATA_HOME", self.dir.path().join("data"))
            .env("XDG_STATE_HOME", self.dir.path().join("state"))
            .env("AWS_CONFIG_FILE", self.dir.path().join("no-aws-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                self.dir.path().join("no-aws-credentials"),
            );
        cmd
    }

    fn vault(&self, profile: &str) -> PathBuf {
        self.dir
            .path()
            .join(format!("data/breakglass/vaults/{profile}.vault"))
    }

    fn audit(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("state/breakglass/audit.log"))
            .unwrap_or_default()
    }

    /// Every file under the home, as (path, bytes).
    fn files(&self) -> Vec<(PathBuf, Vec<u8>)> {
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

    fn assert_no_secret(&self, secrets: &[(&str, &str)]) {
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

fn pty(cmd: Command, timeout_ms: u64) -> PtySession {
    rexpect::session::spawn_command(cmd, Some(timeout_ms)).expect("spawn on a pty")
}

/// Answers the enrolment prompts: key lines first (stdin is the terminal here), then the
/// passphrase twice. Returns what it printed after the passphrase; asserts it enrolled.
fn enroll(home: &Home, args: &[&str], stdin_lines: &[&str], env: &[(&str, &str)]) -> String {
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
    let out = p.exp_eof().unwrap();
    assert!(out.contains("Enrolled "), "enrolment failed:\n{out}");
    out
}

/// Runs the unlock on a pty; returns everything it printed after the passphrase.
fn unlock(
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
        60_000,
    );
    p.exp_string("Password holder, type your name: ").unwrap();
    p.send_line(names.0).unwrap();
    p.exp_string("Token holder, type your name: ").unwrap();
    p.send_line(names.1).unwrap();
    if names.0.eq_ignore_ascii_case(names.1) {
        return p.exp_eof().unwrap();
    }
    p.exp_string("Password holder, type the vault passphrase (not shown): ")
        .unwrap();
    p.send_line(passphrase).unwrap();
    p.exp_eof().unwrap()
}

fn session_json(out: &str) -> serde_json::Value {
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("{\"Version\""))
        .unwrap_or_else(|| panic!("no JSON in:\n{out}"));
    serde_json::from_str(line.trim()).unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn sts_client(endpoint: &str, id: &str, secret: &str, token: Option<&str>) -> aws_sdk_sts::Client {
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

#[test]
fn enroll_and_two_person_unlock_against_the_embedded_sts() {
    if !pcsc_ready("enroll_and_two_person_unlock_against_the_embedded_sts") {
        return;
    }
    let token = SoftToken::approve(SLOT);
    let r = token.reader();
    let sts = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    sts.create_user("breakglass");
    let (key_id, key_secret) = sts.create_access_key("breakglass");
    let (admin_id, admin_secret) = sts.admin_key();
    let home = Home::new();
    enroll(
        &home,
        &[
            "prod",
            "--import-key",
            "--create-mfa",
            "--user",
            "breakglass",
            "--endpoint",
            &sts.endpoint(),
            "--kdf-memory",
            "1",
            "--kdf-passes",
            "1",
            "--kdf-lanes",
            "1",
            "--reader",
            &r,
        ],
        &[&key_id, key_secret.expose_secret()],
        &[
            ("AWS_ACCESS_KEY_ID", &admin_id),
            ("AWS_SECRET_ACCESS_KEY", admin_secret.expose_secret()),
        ],
    );
    let vault_before = std::fs::read(home.vault("prod")).unwrap();

    // Bad inputs first: same person twice, wrong passphrase. Nothing on disk changes.
    let out = unlock(&home, "prod", &r, ("Alice", "alice"), PASSPHRASE);
    assert!(out.contains("two different people must take part"), "{out}");
    let out = unlock(&home, "prod", &r, ("Alice", "Bob"), "not the passphrase");
    assert!(
        out.contains("passphrase or token did not open this vault"),
        "{out}"
    );
    assert!(out.contains("next: "), "{out}");
    assert_eq!(std::fs::read(home.vault("prod")).unwrap(), vault_before);

    // The activation. Enrolment used two windows, so it may wait for a fresh one (visibly).
    let out = unlock(&home, "prod", &r, ("Alice", "Bob"), PASSPHRASE);
    let json = session_json(&out);
    assert_eq!(json["Version"], 1);
    let tmp_id = json["AccessKeyId"].as_str().unwrap();
    assert!(tmp_id.starts_with("ASIA"), "{json}");
    let tmp_secret = json["SecretAccessKey"].as_str().unwrap().to_owned();
    let token_str = json["SessionToken"].as_str().unwrap().to_owned();
    assert!(json["Expiration"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        sts.counts().get_session_token,
        1,
        "exactly one STS call for one activation"
    );
    let who = rt()
        .block_on(
            sts_client(&sts.endpoint(), tmp_id, &tmp_secret, Some(&token_str))
                .get_caller_identity()
                .send(),
        )
        .unwrap();
    assert_eq!(who.arn(), Some("arn:aws:iam::123456789012:user/breakglass"));

    let audit = home.audit();
    assert_eq!(audit.lines().count(), 4, "{audit}"); // enrolment, two failures, success
    assert!(audit.contains("\"outcome\":\"failure: passphrase or token did not open this vault\""));
    let last = audit.lines().last().unwrap();
    assert!(
        last.contains("\"password_holder\":\"Alice\"") && last.contains("\"token_holder\":\"Bob\""),
        "{last}"
    );
    assert!(
        last.contains(tmp_id) && last.contains("\"outcome\":\"success\""),
        "{last}"
    );
    let v = home.command(&["audit", "verify"]).output().unwrap();
    assert!(String::from_utf8_lossy(&v.stdout).contains("4 records, hash chain intact"));

    home.assert_no_secret(&[
        ("secret access key", key_secret.expose_secret()),
        ("passphrase", PASSPHRASE),
        ("session secret", &tmp_secret),
        ("session token", &token_str),
    ]);
}

#[test]
fn unlock_refuses_an_empty_reason_and_unknown_profiles() {
    let home = Home::new();
    let o = run_with_input(home.command(&["unlock", "prod", "--reason", "  "]), None);
    fails(o, 2, &["reason is required", "--reason"]);
    let o = run_with_input(home.command(&["unlock", "prod", "--reason", "x"]), None);
    fails(o, 2, &["no profile named \"prod\"", "breakglass enroll"]);
    std::fs::create_dir_all(home.dir.path().join("config/breakglass")).unwrap();
    std::fs::write(
        home.dir.path().join("config/breakglass/config.toml"),
        "[profiles.prod]\nsession_duration = 5\n",
    )
    .unwrap();
    let o = run_with_input(home.command(&["unlock", "prod", "--reason", "x"]), None);
    fails(o, 2, &["config.toml:2: session_duration 5 is out of range"]);
}

/// moto_server on a free loopback port, stopped on drop.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    fn start(test: &str) -> Option<Self> {
        let exe = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join("moto_server"))
                .find(|p| p.is_file())
        });
        let Some(exe) = exe else {
            assert!(
                std::env::var("BREAKGLASS_REQUIRE_PCSC").as_deref() != Ok("1"),
                "moto_server is required in CI (pip install 'moto[server]')"
            );
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: moto_server is not installed"
            );
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(exe)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        })
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn enroll_with_an_existing_mfa_device_and_unlock_against_moto() {
    if !pcsc_ready("enroll_with_an_existing_mfa_device_and_unlock_against_moto") {
        return;
    }
    let Some(moto) = Moto::start("enroll_with_an_existing_mfa_device_and_unlock_against_moto")
    else {
        return;
    };
    let iam = aws_sdk_iam::Client::from_conf(
        aws_sdk_iam::Config::builder()
            .behavior_version(aws_sdk_iam::config::BehaviorVersion::latest())
            .region(aws_sdk_iam::config::Region::new("us-east-1"))
            .endpoint_url(&moto.endpoint)
            .credentials_provider(Credentials::new(
                "AKIAADMIN0000000000",
                "admin-secret-for-moto",
                None,
                None,
                "test",
            ))
            .build(),
    );
    let rt = rt();
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
    let serial = dev.serial_number;

    let token = SoftToken::approve(SLOT);
    let r = token.reader();
    let home = Home::new();
    enroll(
        &home,
        &[
            "moto",
            "--import-key",
            "--mfa-serial",
            &serial,
            "--endpoint",
            &moto.endpoint,
            "--kdf-memory",
            "1",
            "--kdf-passes",
            "1",
            "--kdf-lanes",
            "1",
            "--reader",
            &r,
        ],
        &[&key.access_key_id, &key.secret_access_key, &seed],
        &[],
    );
    // The token now computes the same codes as the seed IAM gave.
    let code = ok(bg(
        &[
            "token",
            "code",
            "breakglass:moto",
            "--at",
            "59",
            "--reader",
            &r,
        ],
        None,
    ));
    let raw_seed = data_encoding::BASE32_NOPAD
        .decode(seed.trim_end_matches('=').as_bytes())
        .unwrap();
    assert_eq!(
        code.trim(),
        &*breakglass::token::otp::totp(
            breakglass::token::otp::Algorithm::Sha1,
            &raw_seed,
            59,
            30,
            6
        )
    );

    let out = unlock(&home, "moto", &r, ("Carol", "Dave"), PASSPHRASE);
    let json = session_json(&out);
    let tmp_secret = json["SecretAccessKey"].as_str().unwrap().to_owned();
    let tmp_token = json["SessionToken"].as_str().unwrap().to_owned();
    assert!(!json["AccessKeyId"].as_str().unwrap().is_empty());
    let audit = home.audit();
    assert!(
        audit
            .lines()
            .last()
            .unwrap()
            .contains("\"outcome\":\"success\""),
        "{audit}"
    );
    let mut secrets = vec![
        ("secret access key", key.secret_access_key.as_str()),
        ("passphrase", PASSPHRASE),
        ("TOTP seed", seed.as_str()),
        ("session secret", tmp_secret.as_str()),
    ];
    if tmp_token.len() >= 8 {
        secrets.push(("session token", tmp_token.as_str()));
    }
    home.assert_no_secret(&secrets);
}

#[test]
fn a_backup_token_with_its_own_mfa_device_opens_the_vault_alone() {
    if !pcsc_ready("a_backup_token_with_its_own_mfa_device_opens_the_vault_alone") {
        return;
    }
    let mut primary = SoftToken::approve(0);
    let backup = SoftToken::approve(1);
    let sts = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    sts.create_user("breakglass");
    let (key_id, key_secret) = sts.create_access_key("breakglass");
    let (admin_id, admin_secret) = sts.admin_key();
    let admin = [
        ("AWS_ACCESS_KEY_ID", admin_id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", admin_secret.expose_secret()),
    ];
    let home = Home::new();
    let light = ["--kdf-memory", "1", "--kdf-passes", "1", "--kdf-lanes", "1"];
    let mut args = vec![
        "prod",
        "--import-key",
        "--create-mfa",
        "--user",
        "breakglass",
        "--endpoint",
    ];
    let endpoint = sts.endpoint();
    args.push(&endpoint);
    args.extend(light);
    let (pr, br) = (primary.reader(), backup.reader());
    args.extend(["--reader", &pr]);
    enroll(&home, &args, &[&key_id, key_secret.expose_secret()], &admin);

    // The same token cannot be added twice.
    let mut cmd = home.command(&[
        "enroll",
        "prod",
        "--add-token",
        "--create-mfa",
        "--user",
        "breakglass",
        "--reader",
        &pr,
        "--from-reader",
        &pr,
    ]);
    cmd.envs(admin);
    let mut p = pty(cmd, 30_000);
    p.exp_string("name the same reader").unwrap();
    p.exp_eof().unwrap();

    let mut cmd = home.command(&[
        "enroll",
        "prod",
        "--add-token",
        "--create-mfa",
        "--user",
        "breakglass",
        "--reader",
        &br,
        "--from-reader",
        &pr,
    ]);
    cmd.envs(admin);
    let mut p = pty(cmd, 30_000);
    p.exp_string("Password holder, type the vault passphrase (not shown): ")
        .unwrap();
    p.send_line(PASSPHRASE).unwrap();
    p.exp_string("Token added to ").unwrap();
    p.exp_eof().unwrap();
    let audit = home.audit();
    assert!(
        audit.contains("\"event\":\"token added\"") && audit.contains("mfa/breakglass-backup"),
        "{audit}"
    );

    // The primary goes back to its safe; the backup alone (with the passphrase) activates,
    // and STS checks its code against the backup's own MFA device.
    primary.pull();
    let before = sts.counts();
    let out = unlock(&home, "prod", &br, ("Erin", "Frank"), PASSPHRASE);
    assert!(
        out.contains("MFA device arn:aws:iam::123456789012:mfa/breakglass-backup"),
        "{out}"
    );
    let json = session_json(&out);
    assert!(json["AccessKeyId"].as_str().unwrap().starts_with("ASIA"));
    assert_eq!(sts.counts().get_session_token, before.get_session_token + 1);
}

#[test]
fn a_second_profile_reuses_the_sealing_credential_and_a_failed_enrolment_leaves_nothing() {
    if !pcsc_ready(
        "a_second_profile_reuses_the_sealing_credential_and_a_failed_enrolment_leaves_nothing",
    ) {
        return;
    }
    let token = SoftToken::approve(SLOT);
    let r = token.reader();
    let sts = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let (k1, s1) = sts.create_access_key("breakglass");
    let (k2, s2) = sts.create_access_key("breakglass-stage");
    let (admin_id, admin_secret) = sts.admin_key();
    let admin = [
        ("AWS_ACCESS_KEY_ID", admin_id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", admin_secret.expose_secret()),
    ];
    let home = Home::new();
    let endpoint = sts.endpoint();
    let common = [
        "--endpoint",
        endpoint.as_str(),
        "--kdf-memory",
        "1",
        "--kdf-passes",
        "1",
        "--kdf-lanes",
        "1",
        "--reader",
        r.as_str(),
    ];
    let mut prod = vec![
        "prod",
        "--import-key",
        "--create-mfa",
        "--user",
        "breakglass",
    ];
    prod.extend(common);
    enroll(&home, &prod, &[&k1, s1.expose_secret()], &admin);

    // A mistyped confirmation stops the ceremony before anything is written anywhere.
    let mut stage = vec![
        "enroll",
        "stage",
        "--import-key",
        "--create-mfa",
        "--user",
        "breakglass-stage",
    ];
    stage.extend(common);
    let mut cmd = home.command(&stage);
    cmd.envs(admin);
    let mut p = pty(cmd, 30_000);
    p.send_line(&k2).unwrap();
    p.send_line(s2.expose_secret()).unwrap();
    p.exp_string("type the vault passphrase (not shown): ")
        .unwrap();
    p.send_line(PASSPHRASE).unwrap();
    p.exp_string("type the passphrase again: ").unwrap();
    p.send_line("something else entirely").unwrap();
    p.exp_string("the two passphrases differ").unwrap();
    p.exp_eof().unwrap();
    let list = ok(bg(&["token", "list", "--reader", &r], None));
    assert!(!list.contains("breakglass:stage"), "{list}");
    assert!(!home.vault("stage").exists());

    // The second profile on the same token reuses its sealing credential; both vaults open.
    let out = enroll(&home, &stage[1..], &[&k2, s2.expose_secret()], &admin);
    assert!(
        out.contains("reusing its sealing credential \"breakglass-seal\""),
        "{out}"
    );
    for profile in ["prod", "stage"] {
        let out = unlock(&home, profile, &r, ("Alice", "Bob"), PASSPHRASE);
        assert!(
            session_json(&out)["AccessKeyId"]
                .as_str()
                .unwrap()
                .starts_with("ASIA"),
            "{profile}: {out}"
        );
    }
}

#[test]
fn an_unwritable_config_does_not_undo_a_working_vault() {
    if !pcsc_ready("an_unwritable_config_does_not_undo_a_working_vault") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let token = SoftToken::approve(SLOT);
    let r = token.reader();
    let sts = Sts::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let (k1, s1) = sts.create_access_key("breakglass");
    let (admin_id, admin_secret) = sts.admin_key();
    let home = Home::new();
    // A config directory made with umask 002: group-writable, so breakglass will not write there.
    let cfg = home.dir.path().join("config/breakglass");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o775)).unwrap();
    let endpoint = sts.endpoint();
    let out = enroll(
        &home,
        &[
            "prod",
            "--import-key",
            "--create-mfa",
            "--user",
            "breakglass",
            "--endpoint",
            &endpoint,
            "--kdf-memory",
            "1",
            "--kdf-passes",
            "1",
            "--kdf-lanes",
            "1",
            "--reader",
            &r,
        ],
        &[&k1, s1.expose_secret()],
        &[
            ("AWS_ACCESS_KEY_ID", admin_id.as_str()),
            ("AWS_SECRET_ACCESS_KEY", admin_secret.expose_secret()),
        ],
    );
    assert!(
        out.contains("WARNING: the vault is written, but the profile could not be added"),
        "{out}"
    );
    assert!(out.contains("[profiles.prod]"), "{out}");
    assert!(home.vault("prod").exists());
    let list = ok(bg(&["token", "list", "--reader", &r], None));
    assert!(
        list.contains("breakglass-seal") && list.contains("breakglass:prod"),
        "the token was rolled back: {list}"
    );
}
